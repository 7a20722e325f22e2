import math

import pytest
import torch

from course_lib.conditioning import (NULL_CLASS, checkpoint_path, diffusion_loss, generate_from_class, load_class_unet,
                                     make_class_unet, original_transform, class_run_settings, train_class_conditioned)
from course_lib.core import SOURCES_USED
from course_lib.data import fashion_dataset
from course_lib.garments import draw_fashion
from course_lib.models import make_scheduler, step_kwargs
from course_lib.training import fashion_batches, pick_preset, save_checkpoint


@pytest.fixture(scope="module")
def fashion():
    "600 drawn Fashion-like images (uint8 N×28×28) and labels."
    return draw_fashion(600, seed=0)


@pytest.fixture(scope="module")
def trained_smoke(fashion):
    "A smoke-preset UNet after its full (8-step) run, and the run's record."
    model = make_class_unet("smoke")
    return model, train_class_conditioned(model, *fashion, "smoke", progress=False, device="cpu")


def test_fast_batches_equal_the_original_transform(fashion):
    images, labels = fashion
    ds = fashion_dataset(images[:32].numpy(), labels[:32].numpy(), "test")
    generator = torch.Generator().manual_seed(3)
    x, y = next(fashion_batches(images[:32], labels[:32], batch_size=32, shuffle=False, generator=generator))
    assert x.shape == (32, 1, 32, 32) and x.dtype == torch.float32 and torch.equal(y, labels[:32])
    # generator seed 1 draws 0.76 first, so original_transform does not flip
    unflipped = torch.stack([original_transform(ds[i]["image"], torch.Generator().manual_seed(1)) for i in range(32)])
    flipped = unflipped.flip(-1)
    is_flipped = [torch.allclose(x[i], flipped[i], atol=1e-6) for i in range(32)]
    is_plain = [torch.allclose(x[i], unflipped[i], atol=1e-6) for i in range(32)]
    assert all(f or p for f, p in zip(is_flipped, is_plain))
    assert 8 <= sum(f and not p for f, p in zip(is_flipped, is_plain)) <= 24  # about half flipped
    assert x.min() == -1 and x[:, :, :2].eq(-1).all()  # padding is black


def test_presets_build_the_documented_unets():
    count = lambda m: sum(p.numel() for p in m.parameters())
    from diffusers import UNet2DModel
    # the original chapter's model, diffusers' default blocks
    original = UNet2DModel(in_channels=1, out_channels=1, sample_size=32, block_out_channels=(32, 64, 128, 256),
                           norm_num_groups=8, num_class_embeds=10)
    gpu = make_class_unet("gpu", num_class_embeds=10)
    assert count(gpu) == count(original) and 15.8e6 < count(gpu) < 16e6
    assert gpu.config.down_block_types == original.config.down_block_types
    assert gpu.config.up_block_types == original.config.up_block_types
    cpu = make_class_unet("cpu")
    assert 1.0e6 < count(cpu) < 1.2e6 and cpu.config.num_class_embeds == NULL_CLASS + 1
    assert cpu.config.down_block_types[-1] == "AttnDownBlock2D" and cpu.config.up_block_types[0] == "AttnUpBlock2D"
    with pytest.raises(ValueError, match="one down_block_types entry per block_out_channels"):
        make_class_unet({"block_out_channels": (16, 32), "down_block_types": ("DownBlock2D",), "layers_per_block": 1})
    assert pick_preset("auto", device="cpu") == "cpu"
    assert make_class_unet().config.block_out_channels == make_class_unet(pick_preset()).config.block_out_channels
    with pytest.raises(ValueError, match="`preset` must be one of"): pick_preset("huge")


def test_diffusion_loss_is_a_function_of_its_generator(fashion):
    model, scheduler = make_class_unet("smoke"), make_scheduler("ddpm")
    x, y = next(fashion_batches(*fashion, 16, generator=torch.Generator().manual_seed(0)))
    loss = lambda seed: diffusion_loss(model, scheduler, x, y, 0.1, torch.Generator().manual_seed(seed)).item()
    assert loss(0) == loss(0) != loss(1)
    assert 0.5 < loss(0) < 2.0  # an untrained model's noise prediction is about as wrong as predicting zero


def test_resumed_training_equals_an_uninterrupted_run(fashion, trained_smoke, tmp_path):
    model, record = trained_smoke
    assert record["step"] == record["total_steps"] == 8 and len(record["losses"]) == 8
    checkpoint = tmp_path / "run.safetensors"
    interrupted = make_class_unet("smoke")
    first = train_class_conditioned(interrupted, *fashion, "smoke", checkpoint=checkpoint, max_steps=3, progress=False,
                                    device="cpu")
    assert first["step"] == 3 and checkpoint.exists()
    fresh = make_class_unet("smoke", seed=99)  # different initial weights: everything must come from the checkpoint
    resumed = train_class_conditioned(fresh, *fashion, "smoke", checkpoint=checkpoint, progress=False, device="cpu")
    assert resumed["losses"] == record["losses"]
    for name, weight in model.state_dict().items(): assert torch.equal(fresh.state_dict()[name], weight), name
    again = train_class_conditioned(fresh, *fashion, "smoke", checkpoint=checkpoint, progress=False, device="cpu",
                                    what="test UNet")
    assert again["step"] == 8 and again["losses"] == record["losses"]  # a finished run does nothing more
    assert ("class UNet", "trained here (smoke preset, 8 steps)") in SOURCES_USED  # what the summary of a run lists
    assert ("test UNet", "trained earlier here (smoke preset, loaded from run.safetensors)") in SOURCES_USED
    with pytest.raises(ValueError, match="`checkpoint` .* was written by another run"):
        train_class_conditioned(make_class_unet("smoke"), *fashion, "smoke", checkpoint=checkpoint, batch_size=32,
                                progress=False)


def test_training_learns_something(fashion, trained_smoke):
    _, record = trained_smoke
    assert record["losses"][-1] < record["losses"][0]


def test_training_rejects_bad_settings(fashion):
    with pytest.raises(ValueError, match="`class_dropout`=0.1 needs a 'no class' embedding"):
        train_class_conditioned(make_class_unet("smoke", num_class_embeds=10), *fashion, "smoke", progress=False)
    with pytest.raises(ValueError, match="`class_dropout` must be in"):
        train_class_conditioned(make_class_unet("smoke"), *fashion, "smoke", class_dropout=1.0, progress=False)
    with pytest.raises(ValueError, match="`mixed_precision` must be one of 'no', 'bf16'"):
        train_class_conditioned(make_class_unet("smoke"), *fashion, "smoke", mixed_precision="fp8", progress=False)
    run = class_run_settings("smoke", fashion[0], epochs=2)
    assert (run["epochs"], run["steps_per_epoch"], run["adam_eps"], run["preset"]) == (2, 8, 1e-5, "smoke")


def test_class_unet_checkpoints_load_without_their_preset(trained_smoke, fashion, tmp_path):
    model, _ = trained_smoke
    path = save_checkpoint(tmp_path / "m.safetensors", model, step=8)
    loaded, state = load_class_unet(path, device="cpu")
    assert state == {"step": 8} and not loaded.training
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())
    cached = checkpoint_path("smoke", *fashion, cache_dir=tmp_path)
    assert cached.parent == tmp_path / "models"
    assert cached.name.startswith("class-unet-smoke-v") and cached.suffix == ".safetensors"
    assert cached != checkpoint_path("smoke", *fashion, cache_dir=tmp_path, epochs=2)


def test_generate_is_seeded_and_in_range(trained_smoke):
    model, _ = trained_smoke
    sample = lambda seed, **kw: generate_from_class(model, make_scheduler("ddpm"), [1, 7], n_samples=3,
                                                    num_inference_steps=5,
                                                    generator=torch.Generator().manual_seed(seed), progress=False, **kw)
    a = sample(0)
    assert a.shape == (6, 1, 32, 32) and 0 <= a.min() and a.max() <= 1
    assert torch.equal(a, sample(0)) and not torch.equal(a, sample(1))
    assert not torch.equal(a, sample(0, guidance_scale=3.0))


def test_guidance_combines_the_two_predictions_like_the_formula(trained_smoke):
    "One batched call per step must equal separate conditional and unconditional calls combined by hand."
    model, _ = trained_smoke
    scale, labels = 2.5, torch.tensor([4, 4])
    scheduler = make_scheduler("ddim")
    ours = generate_from_class(model, scheduler, 4, n_samples=2, guidance_scale=scale, num_inference_steps=4,
                               generator=torch.Generator().manual_seed(5), progress=False)
    scheduler.set_timesteps(4)
    x = torch.randn((2, 1, 32, 32), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        for t in scheduler.timesteps:
            cond = model(x, t, class_labels=labels).sample
            uncond = model(x, t, class_labels=torch.full_like(labels, NULL_CLASS)).sample
            x = scheduler.step(uncond + scale * (cond - uncond), t, x, use_clipped_model_output=True).prev_sample
    torch.testing.assert_close(ours, (x.clamp(-1, 1) + 1) / 2, atol=1e-5, rtol=0)
    # scale 0 is the unconditional model: the class asked for no longer matters
    uncond = lambda c: generate_from_class(model, make_scheduler("ddim"), c, 2, guidance_scale=0, num_inference_steps=3,
                                           generator=torch.Generator().manual_seed(5), progress=False)
    assert torch.equal(uncond(2), uncond(8))


@pytest.mark.parametrize("kwargs, message", [
    (dict(class_label=10), "`class_label` must be an int 0-9"), (dict(class_label=[1, -1]), "`class_label`"),
    (dict(class_label=True), "`class_label`"), (dict(class_label=[]), "`class_label`"),
    (dict(guidance_scale=-0.5), "`guidance_scale` must be a finite number >= 0"),
    (dict(guidance_scale=math.nan), "`guidance_scale` must be"),
    (dict(guidance_scale=math.inf), "`guidance_scale` must be"),
    (dict(num_inference_steps=0), "`num_inference_steps` must be an int from 1 to 1000"),
    (dict(num_inference_steps=1001), "`num_inference_steps`"),
    (dict(n_samples=0), "`n_samples` must be a positive int"),
    (dict(mixed_precision="fp16"), "`mixed_precision` must be one of")])
def test_generate_rejects_bad_input(trained_smoke, kwargs, message):
    model, _ = trained_smoke
    with pytest.raises(ValueError, match=message):
        generate_from_class(model, make_scheduler("ddim"), **({"class_label": 3} | kwargs), progress=False)


def test_generate_needs_class_embeddings_and_a_null_label():
    from diffusers import UNet2DModel
    plain = UNet2DModel(sample_size=32, in_channels=1, out_channels=1, block_out_channels=(8, 8), norm_num_groups=8,
                        down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2)
    with pytest.raises(ValueError, match="`model` has no class embeddings"):
        generate_from_class(plain, make_scheduler(), 3)
    no_null = make_class_unet("smoke", num_class_embeds=10)
    with pytest.raises(ValueError, match="`guidance_scale`=3.0 needs a model trained with the 'no class' label 10"):
        generate_from_class(no_null, make_scheduler(), 3, guidance_scale=3.0)
    out = generate_from_class(no_null, make_scheduler(), 3, n_samples=1, num_inference_steps=2, progress=False)
    assert out.shape == (1, 1, 32, 32)  # scale 1 needs no null label


def test_samplers_share_the_training_schedule():
    ddim, dpm = make_scheduler("ddim"), make_scheduler("dpm++")
    assert ddim.config.beta_end == dpm.config.beta_end == 0.02 and dpm.config.algorithm_type == "dpmsolver++"
    assert ddim.config.clip_sample  # inherited from the DDPM schedule: why generate_from_class recomputes the noise
    assert step_kwargs(ddim, None) == {"generator": None, "use_clipped_model_output": True}
    with pytest.raises(ValueError, match="`kind` must be one of"): make_scheduler("heun")
