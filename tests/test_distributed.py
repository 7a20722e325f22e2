"""The course's one trainer on two processes under `accelerate launch` (the CPU and the gloo backend here; the same
command runs on two GPUs with NCCL): each process trains on its own share of every batch, the copies stay equal, one
saves."""
import json, os, socket, subprocess, sys, textwrap

import pytest
import torch
from diffusers import UNet2DModel

from course_lib.conditioning import generate_from_class
from course_lib.models import make_scheduler
from course_lib.training import epoch_batches

pytestmark = pytest.mark.slow  # two processes that import torch and diffusers: about half a minute each


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accelerate_launch(*args, cwd) -> subprocess.CompletedProcess:
    "`accelerate launch` on 2 processes, as the README shows it, on a free port; fails with the launcher's output."
    command = [sys.executable, "-m", "accelerate.commands.accelerate_cli", "launch", "--multi_gpu",
               "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(free_port()), *map(str, args)]
    env = os.environ | {"COURSE_DATA_SOURCE": "offline", "COURSE_DEVICE": "cpu"}
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return done


SHARES = textwrap.dedent('''
    "Train a one-weight model for 3 steps of 32 images whose labels are their indices; write what this process saw."
    import json, sys, torch
    from accelerate import PartialState
    from course_lib.training import epoch_batches, train
    state = PartialState(cpu=True)
    seen, model = [], torch.nn.Linear(1, 1)
    start = model.weight.item()
    def loss(model, batch, generator, bf16):
        seen.append(batch[1].tolist())  # the indices of the images this process trains on at this step
        return (model(batch[0].mean((1, 2, 3))[:, None]) - 1).pow(2).mean()
    images = torch.arange(96, dtype=torch.uint8)[:, None, None].expand(96, 28, 28).contiguous()
    run = dict(epochs=1, steps_per_epoch=3, batch_size=32, learning_rate=0.1, lr_schedule="constant",
               mixed_precision="no")
    record = train(model, loss, epoch_batches(images, torch.arange(96), 32), run, device="cpu", progress=False)
    json.dump({"seen": seen, "steps": record["step"], "start": start, "weight": model.weight.item(),
               "bias": model.bias.item()}, open(sys.argv[1].format(rank=state.process_index), "w"))
''')


def test_each_process_trains_on_its_own_share_of_every_batch(tmp_path):
    (tmp_path / "shares.py").write_text(SHARES)
    accelerate_launch("shares.py", tmp_path / "rank{rank}.json", cwd=tmp_path)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    batches = epoch_batches(torch.zeros(96, 28, 28, dtype=torch.uint8), torch.arange(96), 32)
    whole = [batch[1].tolist() for batch in batches(0)]
    assert [r["steps"] for r in ranks] == [3, 3]
    for step, batch in enumerate(whole):  # what one process would train on at this step, split between the two
        mine, theirs = ranks[0]["seen"][step], ranks[1]["seen"][step]
        assert (mine, theirs) == (batch[0::2], batch[1::2])  # disjoint halves, together the whole batch
    assert ranks[0]["weight"] == ranks[1]["weight"] and ranks[0]["bias"] == ranks[1]["bias"]  # gradients were averaged
    assert ranks[0]["weight"] != ranks[0]["start"]  # and it did train


def test_two_processes_train_chapter_1s_unet_one_saves_and_it_samples(tmp_path):
    done = accelerate_launch("-m", "course_lib.conditioning", "--preset", "smoke", "--out", tmp_path / "unet",
                             "--record", tmp_path / "rank{rank}.json", cwd=tmp_path)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [(r["rank"], r["processes"], r["saved"]) for r in ranks] == [(0, 2, True), (1, 2, False)]
    # 8 steps (smoke: 512/64)
    assert ranks[0]["steps"] == ranks[1]["steps"] == 8 == len(ranks[0]["losses"]) == len(ranks[1]["losses"])
    assert ranks[0]["losses"] != ranks[1]["losses"]  # each its own half of the batch and its own noise
    assert ranks[1]["losses"][-1] < ranks[1]["losses"][0] and ranks[0]["losses"][-1] < ranks[0]["losses"][0]
    assert sorted(p.name for p in (tmp_path / "unet").iterdir()) == ["config.json",
                                                                     "diffusion_pytorch_model.safetensors"]
    # the main process speaks
    assert done.stdout.count("Fashion-MNIST train") + done.stderr.count("Fashion-MNIST train") == 1
    unet = UNet2DModel.from_pretrained(tmp_path / "unet")
    images = generate_from_class(unet, make_scheduler("ddim"), [0, 9], 2, guidance_scale=3, num_inference_steps=4,
                                 progress=False, generator=torch.Generator().manual_seed(0))
    assert images.shape == (4, 1, 32, 32) and torch.isfinite(images).all() and 0 <= images.min() and images.max() <= 1
