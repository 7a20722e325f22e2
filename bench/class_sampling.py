"""Sampling time of chapter 1's class-conditioned UNet: 8 samples, 50 steps, against the original chapter's
1000 DDPM steps.

    python bench/class_sampling.py [--preset cpu] [--repeats 3] [--device cpu]

Uses the preset's trained checkpoint when `bench/class_guidance.py` or the notebook has made one (else the same
architecture with random weights: the time does not depend on the weights). Times `generate_from_class` for one
class, 8 samples, DDIM 50 steps at guidance 1 (one prediction per step) and 3 (two, batched), in fp32 and bf16
autocast, and the original chapter's 1000-step DDPM once. Median of `--repeats`, measured in one process.
"""
import sys

import torch

from course_lib.conditioning import checkpoint_path, generate_from_class, load_class_unet, make_class_unet
from course_lib.models import make_scheduler
from course_lib.core import get_device
from course_lib.data import fashion_tensors, load_fashion_mnist
from common import bench_parser
from timing import timed


def main():
    parser = bench_parser(__doc__)
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    device = get_device(args.device)
    path = checkpoint_path(args.preset, *fashion_tensors(load_fashion_mnist("train"), "cpu"))
    model = load_class_unet(path, device)[0] if path.exists() else make_class_unet(args.preset).to(device).eval()
    print(f"model: {path if path.exists() else 'random weights, ' + args.preset + ' preset'}; device {device}, "
          f"{torch.get_num_threads()} threads")
    sample = lambda kind, steps, scale, precision: generate_from_class(
        model, make_scheduler(kind), 9, n_samples=8, guidance_scale=scale, num_inference_steps=steps,
        generator=torch.Generator(device).manual_seed(0), mixed_precision=precision, progress=False)
    sample("ddim", 5, 3, "bf16"); sample("ddim", 5, 3, "no")  # warm-up
    for precision in ("no", "bf16"):
        for scale in (1, 3):
            seconds = timed(lambda scale=scale, precision=precision: sample("ddim", 50, scale, precision), args.repeats)
            print(f"8 samples, DDIM 50 steps, guidance {scale}, {precision:4s}: {seconds:5.2f} s", flush=True)
    seconds = timed(lambda: sample("ddpm", 1000, 1, "no"), 1)
    print(f"8 samples, DDPM 1000 steps (the original), guidance 1, no  : {seconds:5.2f} s")


if __name__ == "__main__":
    sys.exit(main())
