"""The models shipped inside course_lib (`make models`): present, within the size budget, loadable, and as good as the
course says, measured in seconds on held-out data."""

import subprocess, sys

import pytest
import torch
from safetensors import safe_open
from diffusers import AutoencoderKL, UNet2DModel
from transformers import CLIPModel

from course_lib.conditioning import generate_from_class
from course_lib.garments import draw_fashion
from course_lib.evaluation import FashionClassifier, class_accuracy
from course_lib.latent_diffusion import generate_latent_class, reconstruction_psnr
from course_lib.models import COURSE_MODELS, course_model_facts, course_model_folder, load_course_model, make_scheduler
from course_lib.own_sd import attribute_hits, colour_judges, held_out_requests, own_sd_pipeline, shipped_own_sd
from course_lib.pattern_words import predicted_garments, word_similarity
from course_lib.colour_fashion import colour_tensors, load_colour_fashion
from course_lib.new_words import colour_kept
from course_lib.sampling import generate


@pytest.fixture(scope="module")
def judge(): return load_course_model("judge", FashionClassifier, "cpu")


def test_every_model_ships_in_fp16_with_its_card_within_25_mb():
    total = 0
    for name in COURSE_MODELS:
        folder, facts = course_model_folder(name), course_model_facts(name)
        assert (folder / "README.md").read_text().startswith(f"# {name}: ")
        assert facts["name"] == name and facts["steps"] > 0 and facts["seconds"] > 0 and facts["figures"]
        weights = list(folder.rglob("*.safetensors"))
        assert weights
        for path in weights:
            with safe_open(str(path), "pt") as f:  # every float in fp16 (BatchNorm's step counter stays an int)
                assert {f.get_slice(k).get_dtype() for k in f.keys()} - {"I64"} == {"F16"}, path
        total += sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    assert total <= 25e6, f"{total / 1e6:.1f} MB"


def test_shipped_models_load_in_float32_and_note_their_source():
    from course_lib.core import SOURCES_USED
    towers = load_course_model("clip-towers", CLIPModel, "cpu")
    assert towers.dtype == torch.float32 and not towers.training
    assert any("shipped with course_lib" in source for _, source in SOURCES_USED)
    with pytest.raises(ValueError, match="`name` must be one of"): load_course_model("sd-xl", CLIPModel)


def test_shipped_judge_names_unseen_garments():
    images, labels = draw_fashion(1000, seed=987)  # a seed the training set never used
    judge = load_course_model("judge", FashionClassifier, "cpu")
    assert class_accuracy(judge, torch.nn.functional.pad(images[:, None], (2, 2, 2, 2)).float() / 255, labels) >= 0.98


def test_shipped_class_unet_draws_the_asked_class(judge):
    model = load_course_model("class-unet", UNet2DModel, "cpu")
    samples = generate_from_class(model, make_scheduler("ddim"), list(range(10)), 10, guidance_scale=3,
                                  num_inference_steps=20, generator=torch.Generator().manual_seed(5), progress=False)
    assert class_accuracy(judge, samples, torch.arange(10).repeat_interleave(10)) >= 0.9


def test_shipped_fashion_vae_reconstructs_unseen_garments():
    vae = load_course_model("fashion-vae", AutoencoderKL, "cpu")
    images, _ = draw_fashion(1000, seed=987)  # a seed the training set never used
    assert reconstruction_psnr(vae, images) >= 26


def test_shipped_latent_unet_draws_the_asked_class_through_the_shipped_vae(judge):
    vae = load_course_model("fashion-vae", AutoencoderKL, "cpu")
    model = load_course_model("latent-unet", UNet2DModel, "cpu")
    assert (model.config.in_channels, model.config.sample_size) == (vae.config.latent_channels, 8)  # 4×8×8 latents
    samples = generate_latent_class(model, vae, make_scheduler("ddim", clip_sample=False), list(range(10)), 10,
                                    guidance_scale=3, num_inference_steps=20,
                                    generator=torch.Generator().manual_seed(5), progress=False)
    assert samples.shape == (100, 1, 32, 32)
    assert class_accuracy(judge, samples, torch.arange(10).repeat_interleave(10)) >= 0.9


def test_shipped_own_sd_vae_gives_back_a_colour_it_never_saw():
    # chapter 6 teaches the model cerulean, a colour of no training garment: the VAE must carry it. A VAE trained at
    # lr 4e-3 kept more patterns but gave a third of these garments back blue (bench/colour_vae_candidates.py)
    assert colour_kept(shipped_own_sd("cpu").vae) >= 0.95  # measured: 64 of 64 (the lr 4e-3 VAE: 41)


def test_shipped_own_sd_draws_the_asked_class_colour_and_pattern(judge):
    judges = colour_judges(judge, progress=False)  # its pattern judge trains once (about 100 s), then is cached
    requests = held_out_requests(100, seed=7)  # issue 27 asks for 50; 100 halve the noise, in seconds still
    samples = generate(shipped_own_sd("cpu"), list(requests["prompt"]), guidance_scale=3.0, num_inference_steps=30,
                       output_type="pt", generator=[torch.Generator().manual_seed(i) for i in range(100)],
                       progress=False)
    hits = attribute_hits(samples, requests, judges).mean()
    # Guidance 3: the card's and chapter 5's scale; on 500 held-out requests (bench/own_sd.py) the shipped sampler,
    # Euler ancestral, draws the pattern as often there as at 2 (75.4 % at both), class 97.4 % (2: 97.6 %). Measured
    # here: class 94 %, colour 100 %, pattern 79 % (the first 50: 96, 100, 76). At guidance 2 these 100 come out
    # 95 / 100 / 75 (DDIM: 98 / 100 / 79 at 2, 99 / 98 / 76 at 3).
    assert hits["class"] >= 0.9 and hits["colour"] >= 0.9, hits.to_dict()
    # issue 27's 75 % of patterns (a pattern drawn at random: 24 %). The pattern judge is trained where the test runs
    # and reads a few points differently from machine to machine: 4 samples of slack here.
    assert hits["pattern"] >= 0.75, hits.to_dict()


def test_shipped_own_sd_samples_as_own_sd_pipeline_does_and_a_ddim_made_from_it_does_not_clip():
    pipe, public = shipped_own_sd("cpu"), lambda config: {k: v for k, v in config.items() if not k.startswith("_")}
    assert type(pipe.scheduler).__name__ == "EulerAncestralDiscreteScheduler"  # what `make models` writes today
    rebuilt = own_sd_pipeline(pipe.vae, pipe.text_encoder, pipe.tokenizer, pipe.unet).scheduler
    assert public(rebuilt.config) == public(pipe.scheduler.config)
    ddim = make_scheduler("ddim", pipe.scheduler.config)  # SD's keys ride along in the folder's config
    assert (ddim.config.clip_sample, ddim.config.set_alpha_to_one, ddim.config.steps_offset) == (False, False, 1)


def test_shipped_text_tower_keeps_colour_words_and_pattern_words_apart():
    # chapter 5b: what the text tower hands the UNet (its pooled state), per word of "a ___ dress". The 2-epoch towers
    # shipped before put the pattern words 0.94 to 0.98 apart; these (6 epochs) 0.58 to 0.80, the colours 0.32 to 0.72
    pipe, patterns, colours = shipped_own_sd("cpu"), ["horizontally striped", "vertically striped", "checked",
                                                      "speckled"], ["red", "yellow", "green", "blue"]
    table = word_similarity(pipe.text_encoder, pipe.tokenizer, "a {} dress", patterns + colours)
    between = lambda words: table.loc[words, words].values[~torch.eye(len(words), dtype=torch.bool).numpy()]
    assert between(patterns).max() < 0.85 and between(colours).max() < 0.8, table.round(2)
    assert table.loc[patterns, colours].values.max() < 0.5, table.round(2)  # a pattern word is no colour word


def test_shipped_unet_guesses_the_same_garment_for_every_pattern_word_at_high_noise():
    # chapter 5b: at t = 500 the guess (x̂0) is the average, whatever the pattern word says
    test = colour_tensors(load_colour_fashion("test"))
    garment = test["images"][0].permute(2, 0, 1).float() / 255
    pipe = shipped_own_sd("cpu")
    def spread(prompts):  # how far the guesses for `prompts` lie from their mean, per pixel, in [0, 1]
        guesses = predicted_garments(pipe, garment, prompts, timesteps=(500,))[1:]
        return (guesses - guesses.mean(0)).abs().mean().item()
    patterns = spread([f"a red {word} dress" for word in ("plain", "horizontally striped", "checked", "speckled")])
    colours = spread([f"a {colour} dress" for colour in ("red", "yellow", "green", "blue")])
    assert patterns < 0.02 < colours, (patterns, colours)  # measured: 0.004 and 0.066 (2-epoch towers: 0.011, 0.065)


def test_shipped_clip_text_tower_is_the_own_sd_text_encoder_stored_once():
    towers = load_course_model("clip-towers", CLIPModel, "cpu")
    pipe = shipped_own_sd("cpu")
    assert all(torch.equal(a, b) for a, b in zip(towers.text_model.state_dict().values(),
                                                 pipe.text_encoder.state_dict().values()))
    with safe_open(str(course_model_folder("clip-towers") / "model.safetensors"), "pt") as f:
        assert not [k for k in f.keys() if k.startswith("text_model.")] and "visual_projection.weight" in f.keys()


def test_own_sd_folder_loads_with_plain_diffusers_in_a_fresh_process_and_draws_what_generate_draws(tmp_path):
    prompts, out = ["a red striped dress", "a blue checked bag"], tmp_path / "images.pt"
    script = f"""
import sys, torch, diffusers, transformers
pipe = diffusers.StableDiffusionPipeline.from_pretrained({str(course_model_folder("own-sd"))!r})
pipe.set_progress_bar_config(disable=True)
images = pipe({prompts!r}, num_inference_steps=30, guidance_scale=3.0, generator=torch.Generator().manual_seed(0),
              output_type="pt").images
assert not [name for name in sys.modules if name.startswith("course_lib")]
torch.save(images, {str(out)!r})
"""
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)
    expected = generate(shipped_own_sd("cpu"), prompts, guidance_scale=3.0, num_inference_steps=30, seed=0,
                        output_type="pt", progress=False)
    assert torch.equal(torch.load(out), expected)
