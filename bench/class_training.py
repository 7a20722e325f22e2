"""Training throughput of chapter 1's class-conditioned UNet: the course's loop against the original chapter's.

    python bench/class_training.py [--preset cpu] [--steps 8] [--rounds 3] [--device cpu]

Same model (the preset's UNet, same initial weights), same machine, one process, alternating rounds so that a
busy neighbour slows all alike:

- original, batch 256: the original chapter's loop as written: a DataLoader over the `datasets.Dataset` with its
                    per-image PIL transform, batch 256, fp32
- original, batch B: the same loop at the preset's batch size B
- course, fp32:     `train_class_conditioned` at batch B: the whole uint8 set on the device, batched
                    flip/pad/normalize, accelerate
- course:           the same with the preset's mixed precision (`auto` for `cpu`: bf16 autocast only on a CPU with
                    bf16 units; `no` for `gpu`)

Prints images/s per round and each median's ratio to the original chapter's loop as written.
Data: the `data_source` setting.
"""
import copy, statistics, sys, time

import torch
import torch.nn.functional as F

from course_lib.conditioning import make_class_unet, original_loader, train_class_conditioned
from course_lib.models import make_scheduler
from course_lib.core import get_device, settings
from course_lib.data import fashion_tensors, load_fashion_mnist
from common import bench_parser


def original_loop(model, loader, steps, device) -> float:
    """Images per second of `steps` steps of the original chapter's training loop (with `loss.backward()`, not
    `backward(loss)`)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, eps=1e-5)
    scheduler = make_scheduler("ddpm")
    batches, seen, start = iter(loader), 0, time.perf_counter()
    for _ in range(steps):
        images, labels = next(batches)
        images, labels = images.to(device), labels.to(device)
        noise = torch.randn_like(images)
        timesteps = torch.randint(0, 1000, (len(images),), device=device)
        prediction = model(scheduler.add_noise(images, noise, timesteps), timesteps, class_labels=labels).sample
        loss = F.mse_loss(prediction, noise)
        loss.backward(); optimizer.step(); optimizer.zero_grad()
        seen += len(images)
    if device.type == "cuda": torch.cuda.synchronize()
    return seen / (time.perf_counter() - start)


def course_loop(model, images, labels, preset, steps, device, mixed_precision) -> float:
    record = train_class_conditioned(model, images, labels, preset, max_steps=steps, device=device, progress=False,
                                     mixed_precision=mixed_precision)
    if device.type == "cuda": torch.cuda.synchronize()
    return record["images_per_second"]


def main():
    parser = bench_parser(__doc__)
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--steps", type=int, default=8,
                        help="course steps per round (the original batch-256 loop runs fewer, same images)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    device = get_device(args.device)
    preset = settings.preset(args.preset)
    ds = load_fashion_mnist("train")
    images, labels = fashion_tensors(ds, device)
    batch = preset["batch_size"]
    original_steps = max(1, args.steps * batch // 256)
    base = make_class_unet(args.preset, num_class_embeds=11)
    print(f"preset {args.preset}: {sum(p.numel() for p in base.parameters()) / 1e6:.2f} M parameters, batch {batch}, "
          f"{args.steps * batch} images per round, device {device}, {torch.get_num_threads()} threads")
    original = lambda m, batch_size, steps: original_loop(m, original_loader(ds, batch_size=batch_size), steps, device)
    course = lambda m, precision: course_loop(m, images, labels, args.preset, args.steps, device, precision)
    runs = {"original, batch 256": lambda m: original(m, 256, original_steps),
            f"original, batch {batch}": lambda m: original(m, batch, args.steps),
            "course, fp32": lambda m: course(m, "no"),
            f"course, {preset['mixed_precision'] or 'no'}": lambda m: course(m, None)}
    for run in runs.values(): run(copy.deepcopy(base).to(device).train())  # warm-up: allocator, kernels, file cache
    speeds = {name: [] for name in runs}
    for r in range(args.rounds):
        for name, run in runs.items():
            speeds[name].append(run(copy.deepcopy(base).to(device).train()))
        print(f"round {r + 1}: " + ", ".join(f"{n} {s[-1]:.0f} img/s" for n, s in speeds.items()), flush=True)
    baseline = statistics.median(speeds["original, batch 256"])
    for name, values in speeds.items():
        print(f"{name:20s} median {statistics.median(values):7.1f} img/s   "
              f"ratio to the original loop {statistics.median(values) / baseline:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
