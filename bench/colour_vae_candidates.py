"""Which latent shape keeps what a prompt asks for? Chapter 5's colour VAE against candidates of other shapes, each
trained with the colour VAE's cpu preset but for the one change its name says, all judged side by side in one run:
test garments go through each VAE (encode the latents' mean, decode) and the judges read the reconstructions: class
(chapter 1b's judge), pattern (`colour_judges`' pattern judge), colour (`garment_colours`), PSNR, and the pattern
judge on plain garments alone (does plain cloth stay plain?), and a colour no training garment has (chapter 6's
cerulean, 64 garments): how many come back in it. The originals give the judges' ceiling. A candidate
trains once (minutes on 2 cores; its seconds are kept beside it) and is loaded from the cache afterwards. Writes
`colour_vae_candidates.md` and `.json` under --out; with --out bench/results the JSON also ships as
`course_lib/assets/colour_vae_candidates.json`, the table chapter 5 shows.

    python bench/colour_vae_candidates.py [--candidates "8×8×8,4×16×16"] [--n 2000] [--out bench/results]

Candidates not named in --candidates keep their rows from an earlier table in --out (same --n), so one new
candidate adds its row without training the others again.
"""
import datetime, json, platform, shlex, shutil, sys, time
from pathlib import Path

import pandas as pd
import torch
from diffusers import AutoencoderKL

from course_lib.colour_fashion import PALETTE, colour_tensors, garment_colours, load_colour_fashion
from course_lib.core import check_choice
from course_lib.evaluation import FashionClassifier, classifier_outputs
from course_lib.garments import PATTERNS
from course_lib.latent_diffusion import make_small_vae
from course_lib.latents import decode, encode, psnr
from course_lib.models import load_course_model
from course_lib.new_words import colour_kept
from course_lib.own_sd import colour_judges, colour_unit_images, garment_gray, train_colour_vae
from course_lib.training import cache_path
from common import bench_parser, parse_bench_args

ROOT = Path(__file__).resolve().parents[1]
BASE = {"block_out_channels": (32, 64, 64), "layers_per_block": 1, "train_samples": 60000, "epochs": 1,
        "batch_size": 64, "learning_rate": 2e-3, "kl_weight": 1e-4, "mixed_precision": False}  # the first cpu recipe
CANDIDATES = {  # name (latent channels × side × side) -> what changes from BASE
    "4×8×8": {},
    "8×8×8": {"latent_channels": 8},
    "16×8×8": {"latent_channels": 16},  # SD 3's channels
    "4×16×16": {"block_out_channels": [32, 64]},  # one halving fewer: factor 2 (the cpu shape since issue 27)
    "8×16×16": {"block_out_channels": [32, 64], "latent_channels": 8},
    "4×16×16 L1 KL 1e-6": {"block_out_channels": [32, 64], "kl_weight": 1e-6, "reconstruction": "l1"},  # SD's loss
    "4×16×16 2 epochs": {"block_out_channels": [32, 64], "epochs": 2},  # trained twice as long
    "4×16×16 half the steps": {"block_out_channels": [32, 64], "train_samples": 30000},  # and half as long
    "4×16×16 lr 4e-3": {"block_out_channels": [32, 64], "learning_rate": 4e-3},  # the same steps, bigger ones
    "4×16×16 lr 4e-3 batch 32": {"block_out_channels": [32, 64], "learning_rate": 4e-3, "batch_size": 32,
                                  "train_samples": 30000},  # the same steps, each of half the garments
    "4×16×16 batch 32": {"block_out_channels": [32, 64], "batch_size": 32},  # one epoch in twice the steps
    "4×16×16 batch 32 lr 1e-3": {"block_out_channels": [32, 64], "batch_size": 32,
                                 "learning_rate": 1e-3},  # the linear scaling rule: the cpu preset since 2026-12-06
}


def candidate_vae(name: str, change: dict, images: torch.Tensor, device) -> tuple[AutoencoderKL, float]:
    "The VAE `name` and its training seconds: trained once (`BASE` | `change`), then loaded from the cache."
    preset = BASE | change
    folder = cache_path("colour-vae-candidate", preset)
    if not (folder / "config.json").exists():
        vae = make_small_vae(preset, "colour_vae", image_channels=3)
        start = time.perf_counter()
        train_colour_vae(vae, images, preset, device=device)
        vae.save_pretrained(folder)
        (folder / "seconds.json").write_text(json.dumps({"seconds": time.perf_counter() - start}))
    return (AutoencoderKL.from_pretrained(folder).to(device).eval(),
            json.loads((folder / "seconds.json").read_text())["seconds"])


def earlier_rows(path: Path, names: list[str], n: int) -> tuple[list[dict], str]:
    "The rows of candidates not run now from an earlier table at `path` (same number of garments), and its date."
    if not path.exists(): return [], ""
    earlier = json.loads(path.read_text())
    if earlier.get("garments") != n: return [], ""
    rows = pd.DataFrame(earlier["table"]).replace("", float("nan")).to_dict(orient="records")
    return [row for row in rows if row["VAE"] in CANDIDATES and row["VAE"] not in names], earlier["date"]


def judged(pictures: torch.Tensor, test: dict, judges: dict) -> dict:
    "Accuracy of each judge on `pictures` (N×3×32×32 in [0, 1]) against the test garments' own attributes."
    gray, pixels = garment_gray(pictures), (pictures.permute(0, 2, 3, 1) * 255).round().to(torch.uint8)
    pattern = classifier_outputs(judges["pattern"], gray)[0] == test["pattern"]
    plain = test["pattern"] == PATTERNS.index("plain")
    return {"class %": (classifier_outputs(judges["class"], gray)[0] == test["label"]).float().mean().item() * 100,
            "pattern %": pattern.float().mean().item() * 100,
            "plain stays plain %": pattern[plain].float().mean().item() * 100,
            "colour %": (garment_colours(pixels) == test["colour"]).float().mean().item() * 100}


def main():
    parser = bench_parser(__doc__)
    parser.add_argument("--candidates", default=",".join(CANDIDATES))
    parser.add_argument("--n", type=int, default=2000, help="test garments judged")
    args, device, out = parse_bench_args(parser)
    names = [check_choice("--candidates", name.strip(), tuple(CANDIDATES)) for name in args.candidates.split(",")]
    judges = colour_judges(load_course_model("judge", FashionClassifier, "cpu"), device="cpu")
    train_images = colour_tensors(load_colour_fashion("train"))["images"]
    test = colour_tensors(load_colour_fashion("test"))
    test = {k: v[:args.n] for k, v in test.items()}
    originals = colour_unit_images(test["images"])
    rows = [{"VAE": "none (the originals)", "latent numbers": 3 * 32 * 32, "cerulean kept %": 100.0}
            | judged(originals, test, judges)]
    kept, kept_date = earlier_rows(out / "colour_vae_candidates.json", names, args.n)
    for name in names:
        vae, seconds = candidate_vae(name, CANDIDATES[name], train_images, device)
        latents = encode(vae, originals.to(device), mode="mean")
        pictures = decode(vae, latents).cpu()
        rows.append({"VAE": name, "latent numbers": latents[0].numel(),
                     "parameters (M)": sum(p.numel() for p in vae.parameters()) / 1e6,
                     "train s": seconds, "PSNR dB": psnr(originals, pictures),
                     "cerulean kept %": colour_kept(vae) * 100} | judged(pictures, test, judges))
        print(pd.DataFrame(rows[-1:]).to_string(index=False, float_format="%.1f"), flush=True)
    shipped = load_course_model("own-sd", AutoencoderKL, device, subfolder="vae")
    shipped_kept = colour_kept(shipped) * 100
    print(f"the shipped own-sd VAE gives back {shipped_kept:.1f} % of the cerulean garments", flush=True)
    order = {name: i for i, name in enumerate(["none (the originals)", *CANDIDATES])}
    rows = sorted(rows + kept, key=lambda row: order.get(row["VAE"], len(order)))
    table = pd.DataFrame(rows)
    table = table.astype(object).where(table.notna(), "")  # the originals have no parameters and no time
    markdown = table.to_markdown(index=False, floatfmt=".1f")
    print(markdown)
    command = "python bench/colour_vae_candidates.py " + shlex.join(sys.argv[1:])
    (out / "colour_vae_candidates.md").write_text(
        f"# Colour VAE candidates ({time.strftime('%Y-%m-%d')}, {torch.get_num_threads()} CPU threads)\n\n"
        f"`{command}`; train s: each candidate's training time, kept in its cache folder when it trained (4×8×8's: "
        f"the card of the own-sd VAE shipped before issue 27, trained by the same recipe)."
        + (f" Rows kept from the table of {kept_date}: {', '.join(row['VAE'] for row in kept)}." if kept else "")
        + f"\n\n{markdown}\n")
    figures = {f"{row['VAE']}: {column}": f"{row[column]:.1f}" for row in rows
               for column in ("class %", "pattern %", "plain stays plain %", "colour %", "PSNR dB", "train s",
                              "cerulean kept %")
               if isinstance(row.get(column), float)} | {"shipped own-sd VAE: cerulean kept %": f"{shipped_kept:.1f}"}
    (out / "colour_vae_candidates.json").write_text(json.dumps(dict(
        command=command, date=datetime.date.today().isoformat(), garments=args.n,
        kept_from_earlier={"date": kept_date, "rows": [row["VAE"] for row in kept]} if kept else None,
        torch=torch.__version__,
        device=f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)", changes=CANDIDATES,
        table=table.to_dict(orient="list"), figures=figures), indent=1, ensure_ascii=False) + "\n")
    if out.resolve() == (ROOT / "bench" / "results").resolve():  # what chapter 5 shows
        shutil.copy(out / "colour_vae_candidates.json", ROOT / "course_lib" / "assets" / "colour_vae_candidates.json")
    print(f"\n{len(PALETTE)} colours, {len(PATTERNS)} patterns; {args.n} test garments; table: "
          f"{out / 'colour_vae_candidates.md'}")


if __name__ == "__main__":
    main()
