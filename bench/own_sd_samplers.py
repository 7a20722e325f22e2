"""Which sampler draws what chapter 5's model learnt: one shipped UNet, six diffusers schedulers, the same requests.

    python bench/own_sd_samplers.py [--n 200] [--out output/figures]

The shipped own-sd pipeline draws `held_out_requests(n, seed=3)` (the trials' requests, sample i seeded i) with 30
steps of each scheduler, built by `make_scheduler` on the schedule the UNet was trained on, at guidance 2, 3, 4 and 5,
through diffusers' own `StableDiffusionPipeline.__call__` (DDIM's `eta` is one of its arguments). Chapter 5's judges
score class, colour and pattern; at guidance 3 the pattern is also split by the pattern asked for. Deterministic
samplers (DDIM with eta 0, DPM++ 2M, Euler) follow one path from the starting noise; the stochastic ones (DDIM with
eta 1, SDE-DPM++ 2M, Euler ancestral) add fresh noise at every step. Results go to --out/own_sd_samplers.json and .md;
with --out bench/results the JSON's copy ships as `course_lib/assets/own_sd_samplers.json`, which chapter 5 shows.
About 8 minutes on 2 CPU cores.
"""
import datetime, json, platform, shutil, sys
from pathlib import Path

import course_lib  # noqa: F401  (before diffusers: mutes transformers' torchvision advice)
import pandas as pd
import torch

from course_lib.evaluation import FashionClassifier
from course_lib.garments import PATTERNS
from course_lib.models import load_course_model, make_scheduler
from course_lib.own_sd import attribute_hits, colour_judges, held_out_requests, shipped_own_sd
from common import bench_parser, parse_bench_args, pattern_by_asked

SAMPLERS = {  # name: (make_scheduler kind, its overrides, DDIM's eta, stochastic)
    "DDIM": ("ddim", dict(clip_sample=False, set_alpha_to_one=False, steps_offset=1), 0.0, False),
    "DDIM, eta 1": ("ddim", dict(clip_sample=False, set_alpha_to_one=False, steps_offset=1), 1.0, True),
    "DPM++ 2M": ("dpm++", {}, 0.0, False),
    "SDE-DPM++ 2M": ("dpm++", dict(algorithm_type="sde-dpmsolver++"), 0.0, True),
    "Euler": ("euler", {}, 0.0, False),
    "Euler ancestral": ("euler_a", {}, 0.0, True),
}
SCALES, REQUEST_SEED = (2, 3, 4, 5), 3  # the requests of bench/own_sd_trials.py
ROOT = Path(__file__).resolve().parents[1]


def figures_of(table: pd.DataFrame, asked: pd.DataFrame) -> dict:
    "Figures prose may quote: '<sampler> <attribute> at guidance <g>', '<sampler> <pattern asked> at guidance 3'."
    figures = {f"{row['sampler']} {name} at guidance {row['guidance']}": f"{row[f'{name} %']:.1f} %"
               for _, row in table.iterrows() for name in ("class", "colour", "pattern")}
    return figures | {f"{row['sampler']} {pattern} asked, at guidance 3": f"{row[pattern]:.1f} %"
                      for _, row in asked.iterrows() for pattern in PATTERNS}


def main():
    parser = bench_parser(__doc__)
    parser.add_argument("--n", type=int, default=200)
    args, _, out = parse_bench_args(parser)
    pipe = shipped_own_sd(device="cpu")
    judges = colour_judges(load_course_model("judge", FashionClassifier, "cpu"), progress=False)
    requests, rows, by_pattern = held_out_requests(args.n, seed=REQUEST_SEED), [], {}
    for name, (kind, overrides, eta, stochastic) in SAMPLERS.items():
        pipe.scheduler = make_scheduler(kind, **overrides)
        for scale in SCALES:
            images = pipe(list(requests["prompt"]), guidance_scale=scale, num_inference_steps=30, eta=eta,
                          output_type="pt", generator=[torch.Generator().manual_seed(i) for i in range(args.n)]).images
            hits = attribute_hits(images, requests, judges)
            rows.append({"sampler": name, "stochastic": stochastic, "guidance": scale,
                         **{f"{k} %": round(100 * v, 1) for k, v in hits.mean().items()}})
            if scale == 3:
                by_pattern[name] = pattern_by_asked(hits, requests)
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    asked = pd.DataFrame(by_pattern).T.rename_axis("sampler").reset_index()
    print("\n" + table.to_string(index=False) + "\n\npattern % at guidance 3, by the pattern asked for:\n"
          + asked.to_string(index=False))
    facts = dict(command="python bench/own_sd_samplers.py " + " ".join(sys.argv[1:]),
                 date=datetime.date.today().isoformat(),
                 device=f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)", torch=torch.__version__,
                 requests=f"held_out_requests({args.n}, seed={REQUEST_SEED}), sample i seeded i, 30 steps",
                 table=table.to_dict(orient="list"), by_pattern_at_3=asked.to_dict(orient="list"),
                 figures=figures_of(table, asked))
    (out / "own_sd_samplers.json").write_text(json.dumps(facts, indent=1) + "\n")
    (out / "own_sd_samplers.md").write_text(
        f"# Chapter 5's model: which sampler draws the pattern\n\n`{facts['command']}` ({facts['date']}, "
        f"{facts['device']}): {facts['requests']}.\n\n" + table.to_markdown(index=False)
        + "\n\nPattern % at guidance 3, by the pattern asked for:\n\n" + asked.to_markdown(index=False) + "\n")
    if (out / "own_sd_samplers.json").resolve() == (ROOT / "bench" / "results" / "own_sd_samplers.json").resolve():
        shutil.copy(out / "own_sd_samplers.json", ROOT / "course_lib" / "assets" / "own_sd_samplers.json")
    print(f"results: {out}/own_sd_samplers.json, own_sd_samplers.md")


if __name__ == "__main__":
    main()
