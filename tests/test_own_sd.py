"Chapter 5 (own Stable Diffusion) and chapter 3's CLIP towers, on smoke presets: behaviour, not quality."
import math

import pytest
import torch

from course_lib.colour_fashion import draw_colour_fashion, garment_colours, PALETTE
from course_lib.core import derived_generator
from course_lib.models import clip_tokenizer_from_bpe, load_sd_pipeline
from course_lib.own_sd import (colour_unit_images, colour_vae, colour_vae_path, garment_gray, held_out_requests,
                               make_colour_vae, make_text_unet, own_sd_pipeline, text_diffusion_loss, train_colour_vae,
                               train_text_unet)
from course_lib.sampling import generate
from course_lib.text import tokenize
from course_lib.text_encoders import (caption_batches, clip_loss, clip_score, make_clip_towers, text_tower,
                                      train_clip_towers, zero_shot_accuracy)
from course_lib.training import save_pretrained_atomic


@pytest.fixture(scope="module")
def tokenizer(bpe_path): return clip_tokenizer_from_bpe(bpe_path)


@pytest.fixture(scope="module")
def colour():
    images, labels, attributes = draw_colour_fashion(128, seed=5)
    return {"images": images, "label": labels, "colour": attributes["colour"], "pattern": attributes["pattern"]}


@pytest.fixture(scope="module")
def parts(tokenizer, colour):
    towers = make_clip_towers("smoke")
    vae = make_colour_vae("smoke")
    train_colour_vae(vae, colour["images"], "smoke", device="cpu", progress=False)
    text_encoder = text_tower(towers)
    unet = make_text_unet(text_encoder, vae, "smoke")
    return dict(towers=towers, vae=vae, text_encoder=text_encoder, unet=unet)


def test_caption_batches_are_true_and_new_each_epoch(tokenizer, colour):
    make = caption_batches(tokenizer, colour, 16)
    x, ids = next(make(0))
    assert x.shape == (16, 3, 32, 32) and ids.shape == (16, 77) and -1 <= x.min() and x.max() <= 1
    order = torch.randperm(128, generator=derived_generator(0, "epoch", 0))[:16]
    captions = tokenizer.batch_decode(ids, skip_special_tokens=True)
    names = list(PALETTE)
    for caption, i in zip(captions, order):  # every colour a caption names is the garment's own
        named = [c for c in names if f" {c} " in f" {caption} "]
        assert named in ([], [names[colour["colour"][i]]]), (caption, names[colour["colour"][i]])
    assert tokenizer.batch_decode(next(make(1))[1], skip_special_tokens=True) != captions


def test_clip_towers_learn_on_the_smoke_preset_and_score(tokenizer, colour):
    towers = make_clip_towers("smoke", seed=1)
    record = train_clip_towers(towers, tokenizer, colour,
                               {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                "num_attention_heads": 2, "patch_size": 8, "projection_dim": 32, "train_samples": 128,
                                "epochs": 6, "batch_size": 32, "learning_rate": 2e-3, "mixed_precision": "no"},
                               device="cpu", progress=False)
    assert record["step"] == 24 and record["losses"][-1] < record["losses"][0]
    images = colour_unit_images(colour["images"][:8])
    scores = clip_score(towers, tokenizer, images, ["a red dress"] * 8)
    assert scores.shape == (8,) and (scores >= 0).all() and (scores <= 100).all()
    assert 0 <= zero_shot_accuracy(towers, tokenizer, images, colour["colour"][:8],
                                   [f"a {c} garment" for c in PALETTE]) <= 1


def test_clip_loss_is_clips_own(tokenizer, colour):
    towers = make_clip_towers("smoke")
    x, ids = next(caption_batches(tokenizer, colour, 8)(0))
    expected = towers(input_ids=ids, pixel_values=x, return_loss=True).loss
    assert torch.allclose(clip_loss(towers, (x, ids)), expected)


def test_longest_padding_cuts_only_what_clip_never_reads(tokenizer, colour):
    x, ids = next(caption_batches(tokenizer, colour, 8)(0))
    same_x, short = next(caption_batches(tokenizer, colour, 8, padding="longest")(0))
    assert torch.equal(x, same_x) and short.shape[1] < 20 and torch.equal(short, ids[:, :short.shape[1]])
    towers = make_clip_towers("smoke").eval()
    with torch.no_grad():  # the same loss and pooled text vectors: the padding comes after each caption's end token
        assert torch.allclose(clip_loss(towers, (x, short)), clip_loss(towers, (x, ids)), atol=1e-5)
        assert torch.allclose(towers.get_text_features(input_ids=short).pooler_output,
                              towers.get_text_features(input_ids=ids).pooler_output, atol=1e-5)
    with pytest.raises(ValueError, match="padding"): caption_batches(tokenizer, colour, 8, padding="shortest")


def test_text_tower_is_a_frozen_copy(tokenizer):
    towers = make_clip_towers("smoke")
    tower = text_tower(towers)
    ids = tokenize(tokenizer, ["a blue checked coat"]).input_ids
    assert torch.equal(tower(ids).last_hidden_state, towers.text_model(ids).last_hidden_state)
    assert not any(p.requires_grad for p in tower.parameters())
    with torch.no_grad(): next(tower.parameters()).add_(1)
    assert not torch.equal(tower(ids).last_hidden_state, towers.text_model(ids).last_hidden_state)  # a copy


def test_colour_vae_measures_its_scaling_factor_and_caches(tmp_path, parts):
    vae = parts["vae"]
    assert vae.config.in_channels == 3 and vae.config.latent_channels == 4 and vae.config.scaling_factor != 0.18215
    save_pretrained_atomic(vae, colour_vae_path("smoke", cache_dir=tmp_path))
    again = colour_vae("smoke", cache_dir=tmp_path)
    assert again.config.scaling_factor == vae.config.scaling_factor


def test_text_diffusion_loss_drops_captions_to_the_empty_prompt(tokenizer, parts):
    seen = []
    class Spy(torch.nn.Module):
        def forward(self, ids): seen.append(ids.clone()); return parts["text_encoder"](ids)
    empty = tokenize(tokenizer, [""]).input_ids
    ids = tokenize(tokenizer, ["a red dress"] * 200).input_ids
    loss = text_diffusion_loss(Spy(), empty, caption_dropout=0.1, max_captions=0)  # no memo: the tower sees all ids
    value = loss(parts["unet"], (torch.randn(200, 4, 8, 8), ids), torch.Generator().manual_seed(0), False)
    dropped = (seen[0] == empty).all(1).float().mean().item()
    assert math.isfinite(value.item()) and 0.04 < dropped < 0.18
    assert (text_diffusion_loss(Spy(), empty, 0.0, max_captions=0)(
        parts["unet"], (torch.randn(50, 4, 8, 8), ids[:50]), torch.Generator().manual_seed(0), False) > 0)
    assert not (seen[-1] == empty).all(1).any()


def test_text_diffusion_loss_encodes_each_distinct_caption_once_and_changes_no_value(tokenizer, parts):
    seen = []
    class Spy(torch.nn.Module):
        def forward(self, ids): seen.append(len(ids)); return parts["text_encoder"](ids)
    empty = tokenize(tokenizer, [""]).input_ids
    ids = tokenize(tokenizer, ["a red dress", "a blue coat", "a red dress", "a striped bag"] * 8).input_ids
    latents = torch.randn(32, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    values = {}
    for memo in (0, 50_000):
        loss = text_diffusion_loss(Spy(), empty, 0.25, max_captions=memo)
        values[memo] = [loss(parts["unet"], (latents, ids), torch.Generator().manual_seed(step), False).item()
                        for step in range(3)]
    assert values[0] == values[50_000]  # bit for bit
    assert seen[:3] == [32, 32, 32] and sum(seen[3:]) <= 4 + 1  # the memo: 3 captions and "", each once


def test_own_pipeline_trains_saves_loads_and_generates_the_same(tmp_path, tokenizer, colour, parts):
    record = train_text_unet(parts["unet"], parts["vae"], parts["text_encoder"], tokenizer, colour, "smoke",
                             device="cpu", progress=False)
    assert record["step"] == 2  # 128 images in batches of 64
    pipe = own_sd_pipeline(parts["vae"], parts["text_encoder"], tokenizer, parts["unet"])
    sample = lambda pipe: generate(pipe, ["a red dress", "a grey bag"], num_inference_steps=3, seed=1, output_type="pt",
                                   progress=False)
    images = sample(pipe)
    assert images.shape == (2, 3, 32, 32)
    pipe.save_pretrained(tmp_path)
    again = load_sd_pipeline(tmp_path, device="cpu", verbose=False)
    assert torch.equal(sample(again), images)


def test_held_out_requests_name_every_attribute_truthfully():
    requests = held_out_requests(200, seed=3)
    assert requests.equals(held_out_requests(200, seed=3))
    names = list(PALETTE)
    for row in requests.itertuples():
        assert names[row.colour] in row.prompt.split()
        assert row.prompt.split()[0] in ("an", "here", "my")
        assert " a a" not in row.prompt and " a o" not in row.prompt


def test_garment_gray_keeps_shape_and_pattern_whatever_the_hue():
    images, _, attributes = draw_colour_fashion(20, seed=2)
    gray = garment_gray(images)
    assert gray.shape == (20, 1, 32, 32) and torch.equal(gray, garment_gray(colour_unit_images(images)))
    assert torch.equal(gray > 0.05, images.amax(-1)[:, None] > 12)  # the garment's pixels, and only those
    assert torch.equal(garment_colours(images), attributes["colour"])
