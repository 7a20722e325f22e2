import math

import pytest
import torch

from course_lib.conditioning import checkpoint_path, generate_from_class, make_class_unet, train_class_conditioned
from course_lib.core import settings
from course_lib.garments import draw_fashion
from course_lib.latents import decode, draw_sample_scene, encode, load_sample_scene, psnr
from course_lib.attention import attention_block, attention_cost, peak_memory
from course_lib.latent_diffusion import (encode_fashion, fashion_vae, fashion_vae_path, generate_latent_class,
                                         latent_scaling_factor, make_fashion_vae, make_latent_unet,
                                         reconstruction_psnr, train_vae)
from course_lib.models import downsampling_factor, load_vae, make_scheduler, tiny_sd_components, tiny_sd_pipeline
from course_lib.training import fashion_batches, unit_images


@pytest.fixture(scope="module")
def tiny_vae():
    return tiny_sd_components()["vae"]


@pytest.fixture(scope="module")
def fashion():
    "A small procedural Fashion-like set: (train images, train labels, held-out images)."
    images, labels = draw_fashion(4608, seed=11)
    return images[:4096], labels[:4096], images[4096:]


def test_encode_applies_the_scaling_factor_and_decode_inverts_it(tiny_vae):
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    latents = encode(tiny_vae, x, mode="mean")
    assert latents.shape == (2, 4, 8, 8)
    with torch.no_grad():
        raw = tiny_vae.encode(x * 2 - 1).latent_dist.mode()
        torch.testing.assert_close(latents, raw * tiny_vae.config.scaling_factor)
        expected = ((tiny_vae.decode(raw).sample + 1) / 2).clamp(0, 1)
    torch.testing.assert_close(decode(tiny_vae, latents), expected, atol=1e-5, rtol=1e-5)


def test_encode_sample_is_seeded_and_differs_from_the_mean(tiny_vae):
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    a = encode(tiny_vae, x, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, encode(tiny_vae, x, generator=torch.Generator().manual_seed(5)))
    assert not torch.equal(a, encode(tiny_vae, x, generator=torch.Generator().manual_seed(6)))
    assert not torch.equal(a, encode(tiny_vae, x, mode="mean"))


def test_encode_in_batches_equals_one_batch(tiny_vae):
    x = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(encode(tiny_vae, x, mode="mean", batch_size=2), encode(tiny_vae, x, mode="mean"))


def test_bad_images_and_latents_raise_naming_the_argument(tiny_vae):
    fashion = make_fashion_vae("smoke")
    assert downsampling_factor(tiny_vae) == 8 and downsampling_factor(fashion) == 4  # from block_out_channels
    with pytest.raises(ValueError, match="`images` must have 3 channels"): encode(tiny_vae, torch.rand(1, 1, 64, 64))
    with pytest.raises(ValueError, match="`images` must have 1 channels"): encode(fashion, torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="downsampling factor 8"): encode(tiny_vae, torch.rand(1, 3, 36, 64))
    with pytest.raises(ValueError, match="downsampling factor 4"): encode(fashion, torch.rand(1, 1, 30, 32))
    encode(fashion, torch.rand(1, 1, 36, 36))  # 36 is fine for a factor of 4
    with pytest.raises(ValueError, match=r"`images` must be in \[0, 1\]"):
        encode(tiny_vae, torch.rand(1, 3, 64, 64) * 255)
    with pytest.raises(ValueError, match="`images` must be a C×H×W or B×C×H×W tensor"): encode(tiny_vae, [[0.5]])
    with pytest.raises(ValueError, match="`mode` must be one of 'sample', 'mean'"):
        encode(tiny_vae, torch.rand(1, 3, 8, 8), mode="max")
    with pytest.raises(ValueError, match="`latents` must be B×4×h×w"): decode(tiny_vae, torch.randn(1, 8, 8))


def test_load_vae_reads_save_pretrained_folders(tiny_vae, tmp_path, offline_hub, capsys):
    tiny_vae.save_pretrained(tmp_path / "vae")
    loaded = load_vae(tmp_path / "vae", device="cpu")
    assert "VAE from" in capsys.readouterr().out
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(encode(loaded, x, mode="mean"), encode(tiny_vae, x, mode="mean"))
    tiny_sd_pipeline().save_pretrained(tmp_path / "sd")  # a whole SD checkpoint: the vae/ subfolder is found
    assert load_vae(tmp_path / "sd", dtype=torch.float16, verbose=False).dtype == torch.float16


def test_load_vae_offline_names_the_alternatives(offline_hub):
    from course_lib.core import HubUnavailableError
    with pytest.raises(HubUnavailableError, match="fashion_vae"): load_vae("stabilityai/sd-vae-ft-ema", verbose=False)


def test_latent_scaling_factor():
    z = torch.randn(20_000, generator=torch.Generator().manual_seed(0))
    assert latent_scaling_factor(z * 4) == pytest.approx(0.25, rel=0.02)
    with pytest.raises(ValueError, match="`latents` must vary"): latent_scaling_factor(torch.zeros(8))


def test_psnr():
    assert psnr(torch.zeros(10), torch.full((10,), 0.01)) == pytest.approx(40.0)
    assert psnr(torch.ones(3), torch.ones(3)) == pytest.approx(120.0)  # capped, not infinite


def test_trained_fashion_vae_beats_the_mean_image_and_sets_its_scaling_factor(fashion):
    # 128 steps of a narrow VAE: far from the cpu preset's ~30 dB, but it must clearly beat the best image-independent
    # guess, the mean training image (~16 dB here), or its latents carry little about their image.
    train, _, held_out = fashion
    preset = settings.preset("cpu", "vae") | {"block_out_channels": (16, 32, 32), "train_samples": 4096, "epochs": 2}
    vae = make_fashion_vae(preset)
    record = train_vae(vae, train, preset, device="cpu", progress=False)
    assert record["step"] == 128 and record["reconstruction"][-1] < record["reconstruction"][0] / 2
    mean_image = unit_images(train).mean(0, keepdim=True).expand(len(held_out), -1, -1, -1)
    baseline = psnr(unit_images(held_out), mean_image)
    assert reconstruction_psnr(vae, held_out) > baseline + 5, (reconstruction_psnr(vae, held_out), baseline)
    latents = encode_fashion(vae, held_out, progress=False)
    assert latents.shape == (len(held_out), 4, 8, 8)
    assert 0.7 < latents.std().item() < 1.4  # scaled by 1 / std of training latents: about unit variance
    torch.testing.assert_close(latents, encode(vae, unit_images(held_out), mode="mean"))


def test_fashion_vae_is_cached_as_a_save_pretrained_folder(fashion, tmp_path):
    train = fashion[0][:512]
    first = fashion_vae(train, "smoke", cache_dir=tmp_path, device="cpu", progress=False)
    folder = fashion_vae_path(train, "smoke", cache_dir=tmp_path)
    assert (folder / "config.json").exists() and (folder / "diffusion_pytorch_model.safetensors").exists()
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no temporary folder left behind
    again = load_vae(folder, verbose=False)
    assert again.config.scaling_factor == first.config.scaling_factor != 0.18215
    assert fashion_vae_path(train, "smoke", seed=1, cache_dir=tmp_path) != folder


def test_latent_class_model_trains_and_samples_latents(fashion):
    images, labels, _ = fashion
    vae = make_fashion_vae("smoke")
    latents = encode_fashion(vae, images[:256], progress=False)
    model = make_latent_unet(vae, "smoke")
    assert (model.config.in_channels, model.config.sample_size) == (4, 8)
    preset = settings.preset("smoke", "latent")
    record = train_class_conditioned(model, latents, labels[:256], preset, device="cpu", progress=False)
    assert record["step"] == 4 and all(math.isfinite(loss) for loss in record["losses"])
    raw = generate_from_class(model, make_scheduler("ddim", clip_sample=False), [1, 2], 2, guidance_scale=2,
                              num_inference_steps=3, generator=torch.Generator().manual_seed(0), progress=False,
                              output_type="latent")
    assert raw.shape == (4, 4, 8, 8) and raw.abs().max() > 1  # not clamped to [-1, 1] like images
    images_out = generate_latent_class(model, vae, make_scheduler("ddim", clip_sample=False), [1, 2], 2,
                                       guidance_scale=2, num_inference_steps=3,
                                       generator=torch.Generator().manual_seed(0), progress=False)
    torch.testing.assert_close(images_out, decode(vae, raw))
    assert images_out.shape == (4, 1, 32, 32)


def test_fashion_batches_pass_latents_through_unflipped():
    latents, labels = torch.randn(10, 4, 8, 8), torch.arange(10)
    batches = list(fashion_batches(latents, labels, 4, generator=torch.Generator().manual_seed(0)))
    x, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    torch.testing.assert_close(x, latents[y])  # the same rows, shuffled, not mirrored
    with pytest.raises(ValueError, match="or float latents"): next(fashion_batches(torch.zeros(4, 8, 8), labels[:4]))


def test_make_scheduler_overrides_and_checkpoint_names():
    assert make_scheduler("ddim").config.clip_sample is True
    assert make_scheduler("ddim", clip_sample=False).config.clip_sample is False
    images, labels = torch.zeros(8, 4, 8, 8), torch.zeros(8, dtype=torch.long)
    preset = settings.preset("smoke", "latent")
    path = checkpoint_path(preset, images, labels, kind="latent-unet-smoke")
    assert path.name.startswith("latent-unet-smoke-smoke-v")  # a named preset passed as its values
    wider = preset | {"block_out_channels": (32, 64, 64)}
    # another architecture, another file
    assert checkpoint_path(wider, images, labels, kind="latent-unet-smoke") != path
    assert make_class_unet(preset, in_channels=4, sample_size=8).config.out_channels == 4


def test_attention_block_kernels_agree_and_sizes_are_checked():
    x = torch.randn(1, 32, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(attention_block(32, kind="classic")(x), attention_block(32, kind="sdpa")(x),
                                   atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="`kind` must be one of 'classic', 'sdpa'"): attention_block(kind="xformers")
    with pytest.raises(ValueError, match="`sizes` must be positive ints"): attention_cost(sizes=(16, 0), progress=False)


def test_peak_memory_counts_live_tensors_on_cpu():
    assert peak_memory(lambda: torch.empty(512, 1024), "cpu") == 2 * 2**20
    def temporary_then_small():
        big = torch.empty(1024, 1024); del big
        return torch.empty(256, 1024)
    assert peak_memory(temporary_then_small, "cpu") == 4 * 2**20  # the peak, not what is left at the end


def test_attention_cost_memory_grows_with_the_score_matrix():
    table = attention_cost(sizes=(32, 64), channels=32, min_run_time=0.05, progress=False)
    classic = table[table["kernel"] == "classic"].set_index("size")
    assert list(classic["score matrix MiB"]) == [4.0, 64.0]  # (32²)² and (64²)² fp32 values
    assert (classic["peak MiB"] >= classic["score matrix MiB"]).all()  # the classic kernel holds the whole matrix
    assert 12 < classic.loc[64, "peak MiB ×"] < 20
    sdpa = table[table["kernel"] == "sdpa"].set_index("size")
    assert sdpa.loc[64, "peak MiB"] < classic.loc[64, "peak MiB"] / 4


def test_sample_scene_file_is_the_drawing():
    scene = load_sample_scene()
    assert scene.shape == (3, 512, 512)
    torch.testing.assert_close(scene, draw_sample_scene(), atol=1.5 / 255, rtol=0)
