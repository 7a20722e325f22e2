"""Latent diffusion on a laptop: chapter 2's Fashion VAE and the class-conditioned UNet in its latent space.

    python bench/latent_diffusion.py [--shipped | --preset cpu] [--repeats 3] [--n-per-class 20] [--device cpu]
                                     [--out output/figures]

1. trains the preset's Fashion VAE (or loads it from the cache; the time is printed when it trains; --shipped: the one
   shipped in course_lib) and prints its PSNR on the 10,000 held-out test images (4x8x8 latents) and its scaling
   factor next to SD's 0.18215;
2. times, alternately and side by side, a training step (batch 64) and the sampling of 10 images (DDIM 50, guidance
   3, VAE decoding included) for chapter 1's pixel UNet and the same architecture on latents, and prints the speed-up
   (`latent_speedup` below); precision "auto": bf16 autocast only where it pays (not on a CPU without bf16 units);
3. encodes the training set once (timed), trains the latent UNet (or loads its checkpoint) and chapter 1's pixel UNet
   (or loads it; --shipped: the shipped latent-unet and class-unet, and the shipped judge), then compares class
   accuracy and FID of `n_per_class` samples per class from each, and of as many VAE reconstructions of test images.

Writes the figure and `latent_diffusion.json` (the measured figures, the command, the device) into --out;
`--shipped --out bench/results` is the committed run that chapter 2 quotes.
"""
import copy, datetime, json, platform, sys, time

import pandas as pd
import torch

from course_lib.conditioning import (N_CLASSES, checkpoint_path, diffusion_loss, generate_from_class, make_class_unet,
                                     train_class_conditioned)
from course_lib.core import settings
from course_lib.images import show_images
from course_lib.data import FASHION_CLASSES, fashion_tensors, load_fashion_mnist
from course_lib.evaluation import FashionClassifier, class_accuracy, fashion_classifier, fid
from course_lib.latents import decode
from course_lib.latent_diffusion import (encode_fashion, fashion_vae, fashion_vae_path, generate_latent_class,
                                         make_latent_unet, reconstruction_psnr)
from course_lib.models import load_course_model, make_scheduler
from diffusers import AutoencoderKL, UNet2DModel
from course_lib.training import unit_images, uses_bf16
from common import bench_parser, parse_bench_args
from timing import side_by_side_seconds


def latent_speedup(pixel_model, latent_model, vae, batch_size: int = 64, repeats: int = 3, n_images: int = 10,
                   num_inference_steps: int = 50, guidance_scale: float = 3.0,
                   mixed_precision: str = "auto") -> pd.DataFrame:
    "Seconds per training step and per sampled image in pixel and latent space, measured alternately on this machine."
    noise_scheduler = make_scheduler("ddpm")
    def train_step(model):
        model = copy.deepcopy(model).train(); optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        dev, c = model.device, model.config
        x = torch.randn(batch_size, c.in_channels, c.sample_size, c.sample_size, device=dev)
        labels = torch.arange(batch_size, device=dev) % N_CLASSES
        def step():
            diffusion_loss(model, noise_scheduler, x, labels, 0.1, bf16=uses_bf16(mixed_precision, dev)).backward()
            optimizer.step(); optimizer.zero_grad()
        return step
    options = dict(guidance_scale=guidance_scale, num_inference_steps=num_inference_steps, progress=False,
                   mixed_precision=mixed_precision)
    sample = lambda generate, *args: lambda: generate(*args, list(range(n_images)), 1, **options,
                                                       generator=torch.Generator(vae.device).manual_seed(0))
    pixel_steps, latent_steps = train_step(pixel_model), train_step(latent_model)
    pixel_sampling = sample(generate_from_class, pixel_model, make_scheduler("ddim"))
    latent_sampling = sample(generate_latent_class, latent_model, vae, make_scheduler("ddim", clip_sample=False))
    per_image = [s / n_images for s in side_by_side_seconds(pixel_sampling, latent_sampling, repeats=repeats)]
    rows = [(f"training step (batch {batch_size})", *side_by_side_seconds(pixel_steps, latent_steps, repeats=repeats)),
            (f"sampling, per image ({num_inference_steps} DDIM steps, guidance {guidance_scale}, decoding included)",
             *per_image)]
    table = pd.DataFrame(rows, columns=["measure", "pixel s", "latent s"])
    return table.assign(**{"speed-up": table["pixel s"] / table["latent s"], "device": str(vae.device)})


def main():
    parser = bench_parser(__doc__, shipped="the models shipped in course_lib instead of training")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-per-class", type=int, default=20)
    args, device, out = parse_bench_args(parser)
    train_images, train_labels = fashion_tensors(load_fashion_mnist("train"), device)
    test_images, test_labels = fashion_tensors(load_fashion_mnist("test"), device)

    figures = {}
    cached = args.shipped or (fashion_vae_path(train_images, args.preset) / "config.json").exists()
    start = time.perf_counter()
    vae = (load_course_model("fashion-vae", AutoencoderKL, device) if args.shipped
           else fashion_vae(train_images, args.preset, device=device))
    psnr = reconstruction_psnr(vae, test_images)
    print(f"VAE ({'shipped' if args.shipped else args.preset}): {'loaded' if cached else 'trained'} "
          f"in {time.perf_counter() - start:.0f} s; "
          f"held-out PSNR {psnr:.2f} dB on {len(test_images):,} test images; "
          f"scaling factor {vae.config.scaling_factor:.4f} (SD 1/2: 0.18215)", flush=True)

    latent_run = settings.preset(args.preset, "latent")
    pixel_model, latent_model = make_class_unet(args.preset).to(device), make_latent_unet(vae, latent_run).to(device)
    speed = latent_speedup(pixel_model, latent_model, vae, repeats=args.repeats)
    print(f"\nspeed, pixel UNet {settings.preset(args.preset)['block_out_channels']} on 1x32x32 vs latent UNet "
          f"{latent_run['block_out_channels']} on 4x8x8, best of {args.repeats}, alternating, precision auto "
          f"({'bf16' if uses_bf16('auto', device) else 'fp32'} here):")
    print(speed.to_string(index=False, float_format=lambda v: f"{v:.4g}"), flush=True)
    for what, row in zip(("training step (batch 64)", "sampling, per image (DDIM 50, guidance 3, decoding included)"),
                         speed.itertuples()):
        figures |= {f"{what}, pixel space": f"{row[2]:.3f} s", f"{what}, latent space": f"{row[3]:.3f} s",
                    f"{what}, speed-up": f"{row[4]:.1f}×"}

    start = time.perf_counter()
    train_latents = encode_fashion(vae, train_images)
    figures[f"encoding the {len(train_latents):,} training images once"] = f"{time.perf_counter() - start:.0f} s"
    print(f"\nencoding the {len(train_latents):,} training images once: {time.perf_counter() - start:.1f} s",
          flush=True)
    if args.shipped:
        latent_model, pixel_model = (load_course_model(name, UNet2DModel, device)
                                     for name in ("latent-unet", "class-unet"))
        judge = load_course_model("judge", FashionClassifier, device)
    else:
        path = checkpoint_path(latent_run, train_latents, train_labels, kind=f"latent-unet-{args.preset}")
        record = train_class_conditioned(latent_model, train_latents, train_labels, latent_run, checkpoint=path,
                                         device=device)
        print(f"latent UNet: {record['step']} steps; this call {record['seconds']:.0f} s "
              f"({record['images_per_second']:.0f} img/s)")
        record = train_class_conditioned(pixel_model, train_images, train_labels, args.preset, device=device,
                                         checkpoint=checkpoint_path(args.preset, train_images, train_labels))
        print(f"pixel UNet: {record['step']} steps; this call {record['seconds']:.0f} s "
              f"({record['images_per_second']:.0f} img/s)")
        judge = fashion_classifier(train_images, train_labels, device=device)

    reference = unit_images(test_images)
    labels, options = torch.arange(N_CLASSES).repeat_interleave(args.n_per_class), dict(
        guidance_scale=3, num_inference_steps=50, mixed_precision="auto", progress=False)
    pixel = generate_from_class(pixel_model, make_scheduler("ddim"), list(range(N_CLASSES)), args.n_per_class,
                                generator=torch.Generator(device).manual_seed(0), **options)
    latent = generate_latent_class(latent_model, vae, make_scheduler("ddim", clip_sample=False), list(range(N_CLASSES)),
                                   args.n_per_class, generator=torch.Generator(device).manual_seed(0), **options)
    reconstructed = decode(vae, encode_fashion(vae, test_images[:len(labels)], progress=False))
    print(f"\nguidance 3, DDIM 50, {len(labels)} samples; FID on the judge's features "
          f"against {len(reference):,} test images")
    for name, images, truth in [("pixel-space samples", pixel, labels),
                                ("latent-space samples, decoded", latent, labels),
                                (f"VAE reconstructions of {len(labels)} test images", reconstructed,
                                 test_labels[:len(labels)])]:
        accuracy, distance = class_accuracy(judge, images, truth), fid(judge, images, reference)
        figures |= {f"class accuracy, {name}": f"{accuracy:.1%}", f"FID, {name}": f"{distance:.1f}"}
        print(f"  {name:42s} class accuracy {accuracy:6.1%}   FID {distance:6.1f}")
    grid = torch.cat([pixel.view(N_CLASSES, -1, 1, 32, 32)[:, :4], latent.view(N_CLASSES, -1, 1, 32, 32)[:, :4]], 1)
    show_images(grid.flatten(0, 1), nrows=N_CLASSES, row_labels=FASHION_CLASSES,
                col_labels=["pixel"] * 4 + ["latent"] * 4,
                title="guidance 3, DDIM 50: pixel-space samples (left), latent-space samples decoded (right)").savefig(
        out / "bench-latent-vs-pixel.png", dpi=120, bbox_inches="tight")
    print(f"\nfigure (left 4: pixel, right 4: latent): {out / 'bench-latent-vs-pixel.png'}")
    (out / "latent_diffusion.json").write_text(json.dumps(dict(
        command="python bench/latent_diffusion.py " + " ".join(sys.argv[1:]), date=datetime.date.today().isoformat(),
        device=f"{device} ({platform.machine()}, {torch.get_num_threads()} threads)", torch=torch.__version__,
        models="shipped with course_lib" if args.shipped else f"{args.preset} preset, trained or cached here",
        n_samples=len(labels), figures=figures), indent=1) + "\n")
    print(f"figures: {out / 'latent_diffusion.json'}")


if __name__ == "__main__":
    sys.exit(main())
