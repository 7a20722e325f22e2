"""Does classifier-free guidance make chapter 1's model draw the class it is asked for? Measured.

    python bench/class_guidance.py [--shipped | --preset cpu] [--n-per-class 20] [--steps 50] [--out output/figures]

1. trains the preset's class-conditioned UNet (or loads the checkpoint a previous run or the notebook left in the
   cache; training time is printed when it trains), on the `data_source` setting's data; --shipped: the class-unet
   shipped in course_lib;
2. trains (or loads) the judge, `course_lib.evaluation.fashion_classifier` (--shipped: the shipped judge), and prints
   its test accuracy;
3. samples `n_per_class` images of every class at guidance 0, 1, 2, 3, 5, 7.5 (DDIM, same seed) and prints class
   accuracy and FID (classifier features, against the whole test split) per scale;
4. the DDIM clipping trap at guidance 3: default step vs `use_clipped_model_output=True` vs `clip_sample=False`,
   and DPM-Solver++ at 20 steps;
5. writes the guidance grid, the accuracy/FID plot and `class_guidance.json` (the sweep's table, the command, the
   device) to `--out`. `--shipped --out bench/results` is the committed run: chapter 1b quotes it and plots it
   (its table also ships in the package, as `course_lib/assets/guidance_sweep.json`).
"""
import datetime, json, platform, shutil, sys, time
from pathlib import Path

import torch

from course_lib.conditioning import (N_CLASSES, checkpoint_path, generate_from_class, guidance_grid, make_class_unet,
                                     train_class_conditioned)
from course_lib.core import settings
from course_lib.data import fashion_tensors, load_fashion_mnist
from course_lib.evaluation import (FashionClassifier, class_accuracy, fashion_classifier, guidance_sweep,
                                   plot_guidance_sweep)
from course_lib.models import load_course_model, make_scheduler
from course_lib.training import unit_images
from diffusers import UNet2DModel
from common import bench_parser, parse_bench_args

ROOT = Path(__file__).resolve().parent.parent


def main():
    parser = bench_parser(__doc__, shipped="the class-unet and judge shipped in course_lib")
    parser.add_argument("--n-per-class", type=int, default=20)
    parser.add_argument("--steps", type=int, default=50)
    args, device, out = parse_bench_args(parser)
    precision = settings.preset(args.preset)["mixed_precision"] or "no"
    train_images, train_labels = fashion_tensors(load_fashion_mnist("train"), device)
    test_images, test_labels = fashion_tensors(load_fashion_mnist("test"), device)

    if args.shipped:
        model = load_course_model("class-unet", UNet2DModel, device)
        print("UNet: class-unet, shipped with course_lib", flush=True)
    else:
        model, path = make_class_unet(args.preset), checkpoint_path(args.preset, train_images, train_labels)
        record = train_class_conditioned(model, train_images, train_labels, args.preset, checkpoint=path, device=device)
        print(f"UNet ({args.preset}): {record['step']} steps; this call {record['seconds']:.0f} s "
              f"({record['images_per_second']:.0f} img/s); checkpoint {path}", flush=True)

    start = time.perf_counter()
    judge = (load_course_model("judge", FashionClassifier, device) if args.shipped
             else fashion_classifier(train_images, train_labels, device=device))
    reference = unit_images(test_images)
    print(f"judge: {class_accuracy(judge, reference, test_labels):.2%} on {len(test_images):,} test images "
          f"({time.perf_counter() - start:.0f} s to train or load)", flush=True)

    table = guidance_sweep(model, make_scheduler("ddim"), judge, reference, scales=(0, 1, 2, 3, 5, 7.5),
                           n_per_class=args.n_per_class, num_inference_steps=args.steps, mixed_precision=precision)
    print(f"\nDDIM {args.steps} steps, {precision}, {args.n_per_class} samples per class, "
          f"FID against {len(reference):,} test images")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"), flush=True)
    plot_guidance_sweep(table).savefig(out / "bench-guidance-sweep.png", dpi=120, bbox_inches="tight")
    labels = torch.arange(N_CLASSES).repeat_interleave(args.n_per_class)
    variants = {"DDIM 50, default step (use_clipped_model_output=False)": (make_scheduler("ddim"), 50,
                                                                           dict(use_clipped_model_output=False)),
                "DDIM 50, use_clipped_model_output=True": (make_scheduler("ddim"), 50, {}),
                "DDIM 50, clip_sample=False": (make_scheduler("ddim", clip_sample=False), 50, {}),
                "DPM-Solver++ 20": (make_scheduler("dpm++"), 20, {})}
    print("\nguidance 3, class accuracy:")
    variant_figures = {}
    for name, (scheduler, steps, extra) in variants.items():
        samples = generate_from_class(model, scheduler, list(range(N_CLASSES)), args.n_per_class, guidance_scale=3,
                                      num_inference_steps=steps, generator=torch.Generator(device).manual_seed(0),
                                      mixed_precision=precision, progress=False, **extra)
        accuracy = class_accuracy(judge, samples, labels)
        print(f"  {name:55s} {accuracy:.1%}", flush=True)
        variant_figures[f"class accuracy at guidance 3, {name}"] = f"{accuracy:.1%}"
    guidance_grid(model, make_scheduler("ddim"), mixed_precision=precision).savefig(out / "bench-guidance-grid.png",
                                                                                    dpi=120, bbox_inches="tight")
    print(f"\nfigures: {out / 'bench-guidance-sweep.png'}, {out / 'bench-guidance-grid.png'}")
    (out / "class_guidance.json").write_text(json.dumps(dict(
        command="python bench/class_guidance.py " + " ".join(sys.argv[1:]), date=datetime.date.today().isoformat(),
        device=f"{device} ({platform.machine()}, {torch.get_num_threads()} threads)", torch=torch.__version__,
        model=("class-unet and judge shipped with course_lib" if args.shipped
               else f"{args.preset} preset, trained or cached here"),
        sampler=f"DDIM {args.steps} steps, {precision}", reference=f"{len(reference):,} test images",
        table=table.to_dict(orient="list"),
        figures={f"{column} at guidance {scale:g}": (f"{row[column]:.1%}" if column == "class accuracy"
                                                     else f"{row[column]:.0f}")
                 for _, row in table.iterrows() for column, scale in [("class accuracy", row["guidance scale"]),
                                                                        ("FID", row["guidance scale"])]}
                | variant_figures),
        indent=1) + "\n")
    if (out / "class_guidance.json").resolve() == (ROOT / "bench" / "results" / "class_guidance.json").resolve():
        # what 01b plots
        shutil.copy(out / "class_guidance.json", ROOT / "course_lib" / "assets" / "guidance_sweep.json")


if __name__ == "__main__":
    sys.exit(main())
