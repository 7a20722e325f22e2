"""Chapter 5's own Stable Diffusion, trained from nothing and measured: the table of the chapter
and of its closing note.

    python bench/own_sd.py [--shipped | --preset cpu [--cache-dir DIR]] [--n 500] [--out output/figures]

With --shipped, measures the pipeline and CLIP towers shipped in course_lib (trained by `make models`). Otherwise
trains (or loads, when --cache-dir already holds them) the colour VAE, chapter 3's CLIP towers and the text-conditioned
UNet with one preset, timing each. The judges: chapter 1b's (the shipped one, else trained on the grayscale set) for
the class, its recipe trained on the colour set's patterns for the pattern, and the pixels for the colour. It prints
- the judges' accuracy on held-out garments and on the same garments through the VAE (the ceiling),
- chapter 3's zero-shot accuracy of the CLIP towers,
- for every guidance scale from 0 to 10 on --n held-out requests: class, colour and pattern accuracy (a pattern the
  prompt allows: "striped" allows either direction), FID on the class judge's features against held-out garments,
  CLIP score, and seconds,
- the time of 8 images by `generate` (30 steps of the pipeline's scheduler, guidance 3), best of 5,
and saves under --out the guidance plot, the Figure 4 strips (without and with a negative prompt), the pattern strip
(one dress, each pattern word) and `own_sd.json` (every figure above; with --out bench/results its copy ships as
`course_lib/assets/own_sd_sweep.json`, which chapter 5 shows).
"""
import datetime, json, os, platform, shutil, sys, tempfile, time
from pathlib import Path

import course_lib  # noqa: F401  (before diffusers: mutes transformers' torchvision advice)
import torch

from course_lib.core import PRESET_FAMILIES
from course_lib.data import fashion_tensors, load_offline_fashion
from course_lib.colour_fashion import colour_tensors, load_colour_fashion
from course_lib.evaluation import FashionClassifier, fashion_classifier
from course_lib.models import course_model_facts, load_course_model
from transformers import CLIPModel
from course_lib.latents import decode, encode
from course_lib.models import load_clip_tokenizer
from course_lib.own_sd import (attribute_hits, colour_judges, colour_unit_images, colour_vae, guidance_strip,
                               guidance_table, make_text_unet, own_sd_path, own_sd_pipeline, plot_guidance_table,
                               prompt_strip, shipped_own_sd, train_text_unet, vae_psnr)
from course_lib.sampling import generate
from course_lib.text_encoders import clip_towers, text_tower, zero_shot_table
from course_lib.training import save_pretrained_atomic
import pandas as pd
from common import bench_parser

ROOT = Path(__file__).resolve().parents[1]
PATTERN_PROMPTS = [f"a {word} red dress" for word in ("plain", "horizontally striped", "vertically striped", "checked",
                                                      "speckled")]


def class_judge():
    "Chapter 1b's judge: the shipped one, else trained (and cached) on the offline grayscale set as 01b does."
    try: return load_course_model("judge", FashionClassifier)
    except FileNotFoundError:
        images, labels = fashion_tensors(load_offline_fashion("train"))
        return fashion_classifier(images, labels, progress=False)


def timed(what, fn):
    start = time.perf_counter()
    value = fn()
    seconds = time.perf_counter() - start
    print(f"{what}: {seconds:.0f} s", flush=True)
    return value, seconds


def preset_overrides() -> list:
    "This run's `COURSE_<FAMILY>_<PRESET>_<KEY>=value` variables: they change what trains, so its command names them."
    families = tuple(f"COURSE_{family.upper()}_" for family in PRESET_FAMILIES if family != "preset")
    return [f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith(families)]


def main():
    parser = bench_parser(__doc__, shipped="measure the models shipped in course_lib")
    parser.add_argument("--cache-dir", default=None,
                        help="default: a new temporary folder, so everything trains from nothing")
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--out", default="output/figures")
    args = parser.parse_args()
    cache_dir = args.cache_dir or tempfile.mkdtemp(prefix="own-sd-")
    out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
    tokenizer = load_clip_tokenizer(verbose=False)
    train = colour_tensors(load_colour_fashion("train"))
    test = colour_tensors(load_colour_fashion("test"))
    if args.shipped:
        pipe, towers = shipped_own_sd(), load_course_model("clip-towers", CLIPModel)
        vae, text_encoder, unet = pipe.vae, pipe.text_encoder, pipe.unet
        parts = {k: v["seconds"] for k, v in course_model_facts("own-sd")["parts"].items()}
        print("the shipped own-sd and clip-towers:", course_model_facts("own-sd")["parts"])
    else:
        vae, vae_s = timed("colour VAE", lambda: colour_vae(args.preset, cache_dir=cache_dir, progress=False))
        towers, clip_s = timed("CLIP towers", lambda: clip_towers(tokenizer, args.preset, cache_dir=cache_dir,
                                                                  progress=False))
        text_encoder = text_tower(towers)
        unet = make_text_unet(text_encoder, vae, args.preset)
        record, unet_s = timed("text-conditioned UNet (latents encoded first)", lambda: train_text_unet(
            unet, vae, text_encoder, tokenizer, train, args.preset, progress=False))
        pipe = own_sd_pipeline(vae, text_encoder, tokenizer, unet)
        save_pretrained_atomic(pipe, own_sd_path(args.preset, cache_dir=cache_dir))
        parts = {"colour VAE": vae_s, "CLIP towers (text encoder)": clip_s, "UNet": unet_s}
        print(f"\ntraining from nothing, {args.preset} preset: VAE {vae_s:.0f} s + CLIP {clip_s:.0f} s "
              f"+ UNet {unet_s:.0f} s = {(vae_s + clip_s + unet_s) / 60:.1f} min; UNet {record['step']} steps, "
              f"mean loss of the last 100 {sum(record['losses'][-100:]) / 100:.4f}")
    print(f"parameters: VAE {sum(p.numel() for p in vae.parameters()) / 1e6:.2f} M, text encoder "
          f"{sum(p.numel() for p in text_encoder.parameters()) / 1e6:.2f} M, "
          f"UNet {sum(p.numel() for p in unet.parameters()) / 1e6:.2f} M")
    print(f"VAE: held-out PSNR {vae_psnr(vae, test['images'][:2000]):.2f} dB, "
          f"scaling factor {vae.config.scaling_factor:.4f}")
    print("\nCLIP towers, zero-shot on 1,000 held-out garments:\n"
          + zero_shot_table(towers, tokenizer, test).to_string(index=False))
    judges, _ = timed("\njudges (class: chapter 1b's; pattern: its recipe on the colour set)",
                      lambda: colour_judges(class_judge(), progress=False))
    real = colour_unit_images(test["images"][:2000])
    truth = pd.DataFrame({"label": test["label"][:2000].numpy(), "colour": test["colour"][:2000].numpy(),
                          "pattern": test["pattern"][:2000].numpy()})
    ceiling = pd.DataFrame({"held-out garments": attribute_hits(real, truth, judges).mean(),
                            "through the VAE": attribute_hits(decode(vae, encode(vae, real, mode="mean")), truth,
                                                              judges).mean()})
    print("judges' accuracy (2,000 held-out garments):\n" + ceiling.to_string())
    sampler = type(pipe.scheduler).__name__
    table = guidance_table(pipe, judges, towers, scales=tuple(range(11)), n=args.n, reference=real, progress=False)
    print(f"\nguidance sweep, {args.n} held-out requests per scale, 30 steps of {sampler}:\n"
          + table.round(3).to_string(index=False))
    plot_guidance_table(table, title=f"own Stable Diffusion ({args.preset} preset), held-out prompts").savefig(
        out / "own_sd_guidance.png", dpi=120)
    prompts = ["a red dress", "a blue striped coat", "a yellow checked bag", "a green sneaker",
               "white trousers", "a pink speckled pullover", "a grey ankle boot", "an orange shirt"]
    generate(pipe, prompts, guidance_scale=3.0, num_inference_steps=30, seed=0, progress=False)  # warm-up
    times = []
    for _ in range(5):
        start = time.perf_counter()
        generate(pipe, prompts, guidance_scale=3.0, num_inference_steps=30, seed=0, output_type="pt", progress=False)
        times.append(time.perf_counter() - start)
    print(f"\n8 images by generate (30 steps of {sampler}, guidance 3): best of 5 {min(times):.2f} s, "
          f"median {sorted(times)[2]:.2f} s ({torch.get_num_threads()} threads)")
    guidance_strip(pipe, "a red striped dress").savefig(out / "own_sd_figure4.png", dpi=120)
    guidance_strip(pipe, "a red striped dress", negative_prompt="a striped garment").savefig(
        out / "own_sd_figure4_negative.png", dpi=120)
    prompt_strip(pipe, PATTERN_PROMPTS, title="one dress, each pattern word, guidance 3").savefig(
        out / "own_sd_patterns.png", dpi=120)
    best = table.loc[table["FID"].idxmin()]
    figures = {f"{name} accuracy at guidance {row['guidance scale']:g}": f"{row[f'{name} accuracy']:.1%}"
               for _, row in table.iterrows() for name in ("class", "colour", "pattern")}
    figures |= {f"FID at guidance {row['guidance scale']:g}": f"{row['FID']:.0f}" for _, row in table.iterrows()}
    figures |= {"best FID scale": f"{best['guidance scale']:g}", "8 images by generate": f"{min(times):.2f} s",
                "training time, VAE + CLIP + UNet": f"{sum(parts.values()) / 60:.1f} min"}
    figures |= {f"{judge} through the VAE": f"{value:.1%}" for judge, value in ceiling["through the VAE"].items()}
    (out / "own_sd.json").write_text(json.dumps(dict(
        command=" ".join([*preset_overrides(), "python bench/own_sd.py", *sys.argv[1:]]),
        date=datetime.date.today().isoformat(),
        device=f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)", torch=torch.__version__,
        model="own-sd shipped with course_lib" if args.shipped else f"{args.preset} preset, trained here",
        requests=f"{args.n} held-out requests per scale, 30 steps of {sampler}", training_seconds=parts,
        table=table.to_dict(orient="list"), ceiling=ceiling.to_dict(), figures=figures), indent=1) + "\n")
    if (out / "own_sd.json").resolve() == (ROOT / "bench" / "results" / "own_sd.json").resolve():
        shutil.copy(out / "own_sd.json", ROOT / "course_lib" / "assets" / "own_sd_sweep.json")  # what chapter 5 shows
    print(f"figures: {out}/own_sd_guidance.png, own_sd_figure4.png, own_sd_figure4_negative.png, own_sd_patterns.png, "
          f"own_sd.json; models in {cache_dir}")


if __name__ == "__main__":
    main()
