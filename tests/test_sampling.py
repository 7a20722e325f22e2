import numpy as np
import pytest
import torch

from course_lib.models import clip_tokenizer_from_bpe, tiny_sd_pipeline
from course_lib.models import SCHEDULERS, make_scheduler
from course_lib.sampling import cross_attention_map, generate, guide, meta_unet, sd_parts
from course_lib.text import encode_prompt

SIZE = dict(height=64, width=64, num_inference_steps=6)


@pytest.fixture(scope="module")
def pipe(bpe_path): return tiny_sd_pipeline(seed=0, tokenizer=clip_tokenizer_from_bpe(bpe_path), device="cpu")


def pipeline_images(pipe, prompt, seed=1, negative_prompt=None, **kwargs):
    generator = ([torch.Generator().manual_seed(s) for s in seed] if isinstance(seed, list)
                 else torch.Generator().manual_seed(seed))
    return pipe(prompt, negative_prompt=negative_prompt, generator=generator, output_type="pt", **SIZE, **kwargs).images


@pytest.mark.parametrize("kind", ["pndm", "ddim", "euler_a", "dpm++", "euler", "lms"])
@pytest.mark.parametrize("case", [dict(guidance_scale=7.5), dict(guidance_scale=1.0),
                                  dict(guidance_scale=5.0, negative_prompt="blurry"),
                                  dict(guidance_scale=7.5, guidance_rescale=0.7)])
def test_generate_equals_the_pipeline(pipe, kind, case):
    pipe.scheduler = make_scheduler(kind, pipe.scheduler.config)
    negative = case.get("negative_prompt", "")
    ours = generate(pipe, ["a red cube", "a blue sphere"], negative, guidance_scale=case["guidance_scale"],
                    guidance_rescale=case.get("guidance_rescale", 0.0), seed=1, output_type="pt", progress=False,
                    **SIZE)
    theirs = pipeline_images(pipe, ["a red cube", "a blue sphere"], negative_prompt=[negative] * 2,
                             guidance_scale=case["guidance_scale"], guidance_rescale=case.get("guidance_rescale", 0.0))
    assert ours.shape == theirs.shape == (2, 3, 64, 64)
    assert (ours - theirs).abs().max() <= 1e-6


def test_generator_lists_and_prompt_embeds(pipe):
    pipe.scheduler = make_scheduler("euler_a", pipe.scheduler.config)
    generators = [torch.Generator().manual_seed(s) for s in (3, 4)]
    ours = generate(pipe, ["a cat", "a dog"], generator=generators, output_type="pt", progress=False, **SIZE)
    assert (ours - pipeline_images(pipe, ["a cat", "a dog"], seed=[3, 4])).abs().max() <= 1e-6
    embeds = encode_prompt(pipe.tokenizer, pipe.text_encoder, "a cat", "ugly")
    a = generate(pipe, "ignored when embeddings are given", prompt_embeds=embeds, seed=5, output_type="pt",
                 progress=False, **SIZE)
    b = generate(pipe, "a cat", "ugly", seed=5, output_type="pt", progress=False, **SIZE)
    assert torch.equal(a, b)


def test_guidance_below_one_follows_the_formula(pipe):
    pipe.scheduler = make_scheduler("ddim", pipe.scheduler.config)
    run = lambda prompt, scale: generate(pipe, prompt, guidance_scale=scale, seed=2, output_type="pt", progress=False,
                                         **SIZE)
    assert (run("a red cube", 0.0) - run("", 1.0)).abs().max() <= 1e-5  # batched vs single UNet call: float noise only
    half, one = run("a red cube", 0.5), run("a red cube", 1.0)
    assert (half - one).abs().max() > 1e-3  # unlike the pipeline, which treats every scale <= 1 as 1
    noise_uncond, noise_cond = torch.randn(2, 2, 4, 8, 8)
    assert torch.equal(guide(noise_uncond, noise_cond, 0.0), noise_uncond)
    assert torch.allclose(guide(noise_uncond, noise_cond, 3.0), noise_uncond + 3 * (noise_cond - noise_uncond))


def test_seeds_and_output_types(pipe):
    pipe.scheduler = make_scheduler("euler_a", pipe.scheduler.config)
    kwargs = dict(seed=7, progress=False, **SIZE)
    a, b = (generate(pipe, "a cat", output_type="pt", **kwargs) for _ in range(2))
    assert torch.equal(a, b) and not torch.equal(a, generate(pipe, "a cat", output_type="pt", **(kwargs | {"seed": 8})))
    images = generate(pipe, ["a cat", "a dog"], **kwargs)
    assert len(images) == 2 and images[0].size == (64, 64)
    assert generate(pipe, "a cat", output_type="np", **kwargs).shape == (1, 64, 64, 3)
    latents = generate(pipe, "a cat", output_type="latent", **kwargs)
    assert latents.shape == (1, 4, 8, 8)
    assert np.allclose(generate(pipe, "a cat", output_type="np", **kwargs), a.permute(0, 2, 3, 1).numpy(), atol=1e-6)


def test_callback_sees_every_step(pipe):
    pipe.scheduler = make_scheduler("pndm", pipe.scheduler.config)
    seen = []
    final = generate(pipe, "a cat", seed=1, output_type="latent", progress=False,
                     callback=lambda i, t, latents: seen.append((i, int(t), latents.clone())), **SIZE)
    assert [i for i, _, _ in seen] == list(range(len(seen))) and len(seen) == SIZE["num_inference_steps"] + 1  # PNDM
    assert torch.equal(seen[-1][2], final)


@pytest.mark.parametrize("kwargs,message", [
    (dict(height=60), "`height` must be a positive multiple of the VAE's factor 8"),
    (dict(width=0), "`width` must be"),
    (dict(num_inference_steps=0), "`num_inference_steps` must be an int >= 1"),
    (dict(num_inference_steps=2.5), "`num_inference_steps`"),
    (dict(guidance_scale=float("nan")), "`guidance_scale` must be a finite number >= 0"),
    (dict(guidance_scale=-0.5), "`guidance_scale`"),
    (dict(guidance_rescale=1.5), "`guidance_rescale` must be a number in \\[0, 1\\]"),
    (dict(output_type="jpeg"), "`output_type` must be one of 'pil', 'np', 'pt', 'latent'"),
    (dict(generator=[torch.Generator()]), "`generator` is a list of 1; it must hold one generator per image \\(2\\)"),
    (dict(negative_prompt=["x"]), "`negative_prompt` has 1 prompts and `prompt` has 2"),
    (dict(scheduler=None, pipe={"unet": 1}), "`pipe` must be a StableDiffusionPipeline or a dict"),
])
def test_bad_arguments_are_value_errors(pipe, kwargs, message):
    target = kwargs.pop("pipe", pipe)
    with pytest.raises(ValueError, match=message): generate(target, ["a cat", "a dog"], progress=False, **kwargs)


def test_scheduler_configs_keep_sd_settings(pipe):
    for kind in SCHEDULERS:
        scheduler = make_scheduler(kind, pipe.scheduler.config)
        assert scheduler.config.beta_schedule == "scaled_linear" and scheduler.config.steps_offset == 1
    assert make_scheduler("ddim", pipe.scheduler.config).config.clip_sample is False
    with pytest.raises(ValueError, match="`kind` must be one of"): make_scheduler("heun", pipe.scheduler.config)
    assert set(sd_parts(pipe)) == {"unet", "vae", "text_encoder", "tokenizer", "scheduler"}


def test_unet_sizes_and_cross_attention_map():
    sizes = {kind: sum(p.numel() for p in meta_unet(kind).parameters()) for kind in ("sd1", "sd2", "sdxl")}
    assert sizes == {"sd1": 859_520_964, "sd2": 865_910_724, "sdxl": 2_567_463_684}
    table = cross_attention_map(meta_unet("sd1"), image_size=512)
    assert table["cross-attention layers"].tolist() == [2, 2, 2, 0, 1, 0, 3, 3, 3]
    assert cross_attention_map(meta_unet("sdxl"), image_size=1024)["cross-attention layers"].sum() == 70
