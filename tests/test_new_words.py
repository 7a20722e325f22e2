"""Chapter 6's new words: textual inversion and LoRA train on a smoke pipeline, save in diffusers' formats and load with
plain diffusers; the files that ship (learnt by `bench/new_words.py`) load into the shipped model and change what it
draws for the new word only."""
from importlib.resources import files

import pytest
import torch

import course_lib  # noqa: F401
from diffusers import DDPMScheduler
from course_lib.colour_fashion import CLASS_NOUNS
from course_lib.models import load_clip_tokenizer, tiny_sd_pipeline
from course_lib.new_words import (adaptation_loss, add_lora, add_word, colour_hits, concept_captions, concept_examples,
                                  save_lora, save_textual_inversion, train_lora, train_textual_inversion)
from course_lib.own_sd import make_colour_vae, make_text_unet, own_sd_pipeline, shipped_own_sd
from course_lib.sampling import generate
from course_lib.text_encoders import make_clip_towers, text_tower

ASSETS = files("course_lib") / "assets"


def smoke_pipe():
    torch.manual_seed(0)
    text_encoder, vae = text_tower(make_clip_towers("smoke")), make_colour_vae("smoke")
    return own_sd_pipeline(vae, text_encoder, load_clip_tokenizer(), make_text_unet(text_encoder, vae, "smoke"))


def sample(pipe, prompt: str, n: int = 2, steps: int = 5) -> torch.Tensor:
    return generate(pipe, [prompt] * n, guidance_scale=3.0, num_inference_steps=steps, output_type="pt",
                    progress=False, generator=[torch.Generator().manual_seed(i) for i in range(n)])


@pytest.fixture(scope="module")
def examples(): return concept_examples(16)


def test_textual_inversion_trains_one_row_and_loads_with_plain_diffusers(examples, tmp_path):
    pipe = smoke_pipe()
    before = pipe.text_encoder.get_input_embeddings().weight.detach().clone()
    record = train_textual_inversion(pipe, examples["images"], concept_captions(examples, "cerulean"), "cerulean",
                                     "blue", "smoke", progress=False)
    table = pipe.text_encoder.get_input_embeddings().weight
    assert record["step"] == 2 and torch.equal(table[:-1], before) and not torch.equal(table[-1], before[-1])
    path = save_textual_inversion(pipe, "cerulean", tmp_path / "cerulean.safetensors")
    fresh = smoke_pipe()
    old = sample(fresh, "a red dress")
    fresh.load_textual_inversion(str(path), token="cerulean")
    assert torch.equal(sample(fresh, "a red dress"), old)
    assert torch.equal(sample(fresh, "a cerulean dress"), sample(pipe, "a cerulean dress"))


def test_lora_trains_saves_loads_fuses_and_unloads(examples, tmp_path):
    pipe = smoke_pipe()
    train_lora(pipe, examples["images"], concept_captions(examples, "cerulean"), 2, "smoke", progress=False)
    save_lora(pipe, tmp_path / "lora")
    fresh = smoke_pipe()
    old = sample(fresh, "a red dress")
    fresh.load_lora_weights(tmp_path / "lora", weight_name="pytorch_lora_weights.safetensors")  # offline: by name
    torch.testing.assert_close(sample(fresh, "a cerulean dress"), sample(pipe, "a cerulean dress"))
    fresh.fuse_lora()
    torch.testing.assert_close(sample(fresh, "a cerulean dress"), sample(pipe, "a cerulean dress"), atol=1e-4, rtol=0)
    fresh.unfuse_lora(); fresh.unload_lora_weights()
    torch.testing.assert_close(sample(fresh, "a red dress"), old, atol=1e-5, rtol=0)


def test_lora_with_its_word_keeps_every_old_embedding_and_loads_with_plain_diffusers(examples, tmp_path):
    pipe = smoke_pipe()
    before = pipe.text_encoder.get_input_embeddings().weight.detach().clone()
    train_lora(pipe, examples["images"], concept_captions(examples, "cerulean"), 2, "smoke", word="cerulean",
               init_word="blue", progress=False)
    table = pipe.text_encoder.get_input_embeddings().weight
    assert torch.equal(table[:-1], before) and not table.requires_grad  # weight decay 0, gradient masked
    lora = save_lora(pipe, tmp_path / "lora", "lora.safetensors")
    word = save_textual_inversion(pipe, "cerulean", tmp_path / "lora" / "cerulean.safetensors")
    fresh = smoke_pipe()
    fresh.load_textual_inversion(str(word), token="cerulean")
    fresh.load_lora_weights(lora.parent, weight_name=lora.name)
    torch.testing.assert_close(sample(fresh, "a cerulean dress"), sample(pipe, "a cerulean dress"))


def test_the_gpu_cells_recipe_runs_on_sd_15s_architecture(tmp_path):
    "Chapter 6's `#| gpu` cell, on SD 1.5's parts made tiny and random: its preset, LoRA saved and loaded back."
    sd = tiny_sd_pipeline(seed=0, device="cpu")
    photos = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    record = train_lora(sd, photos, lambda epoch: ["a photo of sks"] * 3, preset="gpu", max_steps=2, device="cpu",
                        progress=False)
    assert record["step"] == 2
    save_lora(sd, tmp_path, "sd.safetensors")
    fresh = tiny_sd_pipeline(seed=0, device="cpu")
    before = sample(fresh, "a photo of sks")
    fresh.load_lora_weights(tmp_path, weight_name="sd.safetensors")
    after = sample(fresh, "a photo of sks")
    torch.testing.assert_close(after, sample(sd, "a photo of sks"))
    assert not torch.equal(after, before)


def test_bad_input_is_named():
    pipe = smoke_pipe()
    for call, name in [(lambda: add_word(pipe, "blue", "red"), "`word`"),
                       (lambda: add_word(pipe, "zorbly", "navy blue"), "`init_word`"),
                       (lambda: add_lora(pipe.unet, 0), "`rank`"),
                       (lambda: save_lora(pipe, "unused"), "LoRA"),
                       (lambda: adaptation_loss(pipe.unet, pipe.text_encoder, DDPMScheduler(), caption_dropout=0.1),
                        "`caption_dropout`"),
                       (lambda: save_textual_inversion(pipe, "cerulean", "unused.safetensors"), "`word`")]:
        with pytest.raises(ValueError, match=name): call()


@pytest.fixture
def shipped(): return shipped_own_sd("cpu")  # a fresh one per test: what a test loads into it stays there


def test_shipped_textual_inversion_draws_the_new_colour_and_leaves_old_prompts_exactly(shipped):
    old_prompts = [f"a red {nouns[0]}" for nouns in CLASS_NOUNS]
    old = sample(shipped, old_prompts[3], n=4, steps=10)
    shipped.load_textual_inversion(str(ASSETS / "new_words_cerulean.safetensors"), token="cerulean")
    assert torch.equal(sample(shipped, old_prompts[3], n=4, steps=10), old)  # the new word absent: bit for bit
    share, _, _ = colour_hits(shipped, "cerulean", per_class=2)
    assert share >= 0.8, share  # 20 requests, 2 per class (bench/new_words.py measures 100)


def test_shipped_lora_draws_the_new_colour_and_moves_old_prompts_a_little(shipped):
    old = sample(shipped, "a red dress", n=4, steps=10)
    shipped.load_textual_inversion(str(ASSETS / "new_words_lora_cerulean.safetensors"), token="cerulean")
    shipped.load_lora_weights(str(ASSETS), weight_name="new_words_lora.safetensors")
    change = (sample(shipped, "a red dress", n=4, steps=10) - old).abs().mean().item() * 255
    assert 0 < change < LORA_OLD_PROMPT_TOLERANCE, change  # in 8-bit levels
    share, _, _ = colour_hits(shipped, "cerulean", per_class=2)
    assert share >= 0.8, share  # 20 requests, 2 per class (bench/new_words.py measures 100)


LORA_OLD_PROMPT_TOLERANCE = 10  # mean change of an old prompt's pixels in 8-bit levels (bench, 200 old images: 4.04)
