"The training foundation: presets, batches, schedules, checkpoints, the cache, and the one trainer."
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from course_lib.core import SOURCES_USED, seeded
from course_lib.garments import draw_fashion
from course_lib.training import (CACHE_VERSION, cache_path, epoch_batches, fashion_batches, learning_rate_schedule,
                                 pick_preset, plot_losses, preset_label, preset_values, read_checkpoint,
                                 save_checkpoint, save_pretrained_atomic, train, unit_images)


@pytest.fixture(scope="module")
def fashion():
    "600 drawn Fashion-like images (uint8 N×28×28) and labels."
    return draw_fashion(600, seed=0)


def test_fast_batches_cover_the_epoch_and_resume_mid_epoch(fashion):
    images, labels = fashion
    batches = list(fashion_batches(images, labels, 64, generator=torch.Generator().manual_seed(0)))
    assert [len(y) for _, y in batches] == [64] * 9 + [24]
    assert sorted(torch.cat([y for _, y in batches]).tolist()) == sorted(labels.tolist())
    later = list(fashion_batches(images, labels, 64, generator=torch.Generator().manual_seed(0), start=7))
    assert len(later) == 3 and all(torch.equal(a[0], b[0]) for a, b in zip(later, batches[7:]))
    unlabelled = next(fashion_batches(images, None, 64, generator=torch.Generator().manual_seed(0)))
    assert len(unlabelled) == 1 and torch.equal(unlabelled[0], batches[0][0])  # labels draw no random numbers
    assert batches[0][0].min() == -1 and batches[0][0][:, :, :2].eq(-1).all()  # padding is black


@pytest.mark.parametrize("images, batch_size, message", [
    (torch.zeros(4, 28, 28), 2, "`images` must be uint8"),
    (torch.zeros(4, 1, 28, 28, dtype=torch.uint8), 2, "`images` must be uint8"),
    (torch.zeros(4, 28, 28, dtype=torch.uint8), 0, "`batch_size` must be a positive int")])
def test_fast_batches_reject_bad_input(images, batch_size, message):
    with pytest.raises(ValueError, match=message): next(fashion_batches(images, torch.zeros(4), batch_size))


def test_latents_pass_through_unflipped():
    latents, labels = torch.randn(10, 4, 8, 8), torch.arange(10)
    x, y = next(fashion_batches(latents, labels, 10, shuffle=False))
    assert torch.equal(x, latents) and torch.equal(y, labels)


def test_epoch_batches_name_their_stream(fashion):
    images, labels = fashion
    one = epoch_batches(images, labels, 64, seed=0)
    judge = epoch_batches(images, labels, 64, seed=0, stream="judge epoch")
    assert torch.equal(next(one(3))[1], next(one(3))[1]) and not torch.equal(next(one(3))[1], next(judge(3))[1])
    assert unit_images(images[:2]).shape == (2, 1, 32, 32) and unit_images(images).max() <= 1


def test_presets():
    assert pick_preset("auto", device="cpu") == "cpu"
    with pytest.raises(ValueError, match="`preset` must be one of"): pick_preset("huge")
    assert preset_values("smoke", "vae")["block_out_channels"] == (8, 16, 16)
    assert preset_label(preset_values("cpu", "latent")) == "cpu" and preset_label({"epochs": 9}) == "custom"


def rates(kind, total=100, done=0, warmup_steps=None):
    optimizer = torch.optim.AdamW([torch.zeros(1, requires_grad=True)], lr=1e-3)
    schedule = learning_rate_schedule(optimizer, kind, total, done, warmup_steps)
    out = [schedule.get_last_lr()[0]]
    for _ in range(total - done - 1): optimizer.step(); schedule.step(); out.append(schedule.get_last_lr()[0])
    return out


def test_learning_rate_schedules_resume_and_warm_up():
    cosine = rates("cosine")
    assert cosine[0] < cosine[5] == pytest.approx(1e-3) and cosine[-1] < 1e-5  # 5 steps of warm-up, then decay
    assert rates("cosine", warmup_steps=0)[0] == pytest.approx(1e-3)
    assert rates("cosine", done=40) == pytest.approx(cosine[40:])
    assert rates("one-cycle", done=40) == pytest.approx(rates("one-cycle")[40:])
    assert set(rates("constant")) == {1e-3}
    with pytest.raises(ValueError, match="`lr_schedule` must be one of"): rates("linear")


def test_checkpoints_are_atomic_and_typed(tmp_path):
    layer = torch.nn.Linear(3, 2)
    path = save_checkpoint(tmp_path / "m.safetensors", layer, step=8)
    before = path.read_bytes()
    assert path.stat().st_mode & 0o777 == 0o644  # an ordinary file, not mkstemp's private one
    shared = torch.zeros(4)
    broken = type("Broken", (), {"state_dict": lambda self: {"a": shared, "b": shared}, "config": {}})()
    # safetensors refuses tensors that share memory
    with pytest.raises(RuntimeError, match="share memory"): save_checkpoint(path, broken)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]
    tensors, metadata = read_checkpoint(path, "cpu")
    assert metadata["state"] == {"step": 8} and torch.equal(tensors["model.weight"], layer.weight.detach())
    save_file({"x": torch.zeros(1)}, tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="is not a course_lib checkpoint"):
        read_checkpoint(tmp_path / "other.safetensors")


def test_save_pretrained_atomic_leaves_nothing_half_written(tmp_path):
    class Failing:
        def save_pretrained(self, folder): (folder / "part.bin").write_text("x"); raise OSError("disk full")
    with pytest.raises(OSError, match="disk full"): save_pretrained_atomic(Failing(), tmp_path / "model")
    assert list(tmp_path.iterdir()) == []


def test_cache_names_change_with_recipe_and_data(fashion, tmp_path):
    images, labels = fashion
    path = cache_path("class-unet-smoke", {"epochs": 1}, (images, labels), ".safetensors", tmp_path)
    assert path.parent == tmp_path / "models" and path.name.startswith(f"class-unet-smoke-v{CACHE_VERSION}-data")
    assert path == cache_path("class-unet-smoke", {"epochs": 1}, (images, labels), ".safetensors", tmp_path)
    assert path != cache_path("class-unet-smoke", {"epochs": 2}, (images, labels), ".safetensors", tmp_path)
    assert path != cache_path("class-unet-smoke", {"epochs": 1}, (images, labels.flip(0)), ".safetensors", tmp_path)
    assert "-data" not in cache_path("caption-encoder", {"steps": 400}, cache_dir=tmp_path).name


def brightness_loss(model, batch, generator, bf16):
    x, = batch
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        prediction = model((x + 0.1 * torch.randn(x.shape, generator=generator)).flatten(1)).squeeze(1)
    return F.mse_loss(prediction.float(), x.mean((1, 2, 3))), prediction.float().mean()


def new_model():
    with seeded(0): return torch.nn.Linear(32 * 32, 1)


RUN = dict(epochs=2, steps_per_epoch=10, batch_size=64, learning_rate=3e-3, lr_schedule="cosine", mixed_precision="no",
           preset="test")


def test_the_trainer_learns_logs_and_resumes_exactly(fashion, tmp_path):
    images, _ = fashion
    whole = new_model()
    record = train(whole, brightness_loss, epoch_batches(images, None, 64), RUN, progress=False, what="test model",
                   logged=("mean prediction",))
    assert record["step"] == record["total_steps"] == 20 and len(record["mean prediction"]) == 20
    assert record["losses"][-1] < record["losses"][0] / 5 and record["images_per_second"] > 0 and not whole.training
    assert ("test model", "trained here (test preset, 20 steps)") in SOURCES_USED
    checkpoint, interrupted = tmp_path / "run.safetensors", new_model()
    assert train(interrupted, brightness_loss, epoch_batches(images, None, 64), RUN, checkpoint=checkpoint,
                 max_steps=13, progress=False)["step"] == 13  # stopped mid-epoch
    resumed = train(interrupted, brightness_loss, epoch_batches(images, None, 64), RUN, checkpoint=checkpoint,
                    progress=False, what="resumed model")
    assert resumed["losses"] == record["losses"] and torch.equal(interrupted.weight, whole.weight)
    again = train(interrupted, brightness_loss, epoch_batches(images, None, 64), RUN, checkpoint=checkpoint,
                  progress=False, what="finished model")
    assert again["step"] == 20
    assert ("finished model", "trained earlier here (test preset, loaded from run.safetensors)") in SOURCES_USED
    with pytest.raises(ValueError, match="was written by another run"):
        train(new_model(), brightness_loss, epoch_batches(images, None, 64), RUN | {"learning_rate": 0.1},
              checkpoint=checkpoint, progress=False)


def test_the_trainer_checks_its_run_and_runs_bf16(fashion):
    images, _ = fashion
    with pytest.raises(ValueError, match="`run` lacks steps_per_epoch"):
        train(new_model(), brightness_loss, epoch_batches(images, None, 64), {"epochs": 1}, progress=False)
    with pytest.raises(ValueError, match="`mixed_precision` must be one of"):
        train(new_model(), brightness_loss, epoch_batches(images, None, 64), RUN | {"mixed_precision": "fp8"},
              progress=False)
    record = train(new_model(), brightness_loss, epoch_batches(images, None, 64), RUN | {"mixed_precision": "bf16"},
                   max_steps=5, progress=False)
    assert record["step"] == 5 and all(torch.isfinite(torch.tensor(record["losses"])))


def test_plot_losses_draws_a_mean_only_when_it_is_a_line():
    assert len(plot_losses([1.0] * 8, window=8).axes[0].lines) == 1
    assert len(plot_losses([1.0] * 60, window=8, title="t").axes[0].lines) == 2
