"""What changes to chapter 5's UNet buy: one trial = the shipped own-sd's VAE and text tower, a UNet trained with the
first shipped recipe (the `text_unet` cpu preset with plain MSE at lr 2e-3: 3 epochs, batch 64) and one change, then
measured on 200 held-out requests. The trials up to "min-SNR 5, 2-epoch VAE" ran on the text tower shipped then (CLIP
towers trained 2 epochs); "min-SNR 5, CLIP 6 epochs" is the UNet of "min-SNR 5" reading the text tower of CLIP towers
trained 6 epochs (the `clip` cpu preset since 2026-12-05), and so do the rows after it. Those up to "min-SNR 5, CLIP 6
epochs, 2-epoch VAE" ran on the VAE shipped until 2026-12-06 (one epoch in batches of 64) or a candidate named in it;
the model shipped since then trains its VAE in batches of 32 (`colour_vae.cpu`), and `bench/own_sd.py --shipped`
measures that model. The rows after, from "min-SNR 5, 4 epochs, shipped parts" on, run on its VAE and text tower; those
from "min-SNR 20, shipped parts" on also record the pattern drawn at guidance 3 split by the pattern asked. Every row is
measured with 30 DDIM steps, the sampler shipped until 2026-12-06; the shipped pipeline now samples with Euler ancestral
(bench/own_sd_samplers.py compares the two on one UNet).

    python bench/own_sd_trials.py --trial NAME [--trial NAME ...] [--out bench/results]
    python bench/own_sd_trials.py --list          # the trials and what each changes
    python bench/own_sd_trials.py --table         # rebuild the table from the results already in --out
    python bench/own_sd_trials.py --smoke --trial NAME --out /tmp/x   # check the script in a minute

Each trial trains from nothing on the shipped colour VAE's latents (or a VAE candidate's), reading the shipped text
tower (or that of CLIP towers trained by another recipe; frozen, except in the trial that trains its layers), then
scores 200 held-out requests (`held_out_requests(200, seed=3)`, sample i seeded i) at guidance 2, 3 and 5 with chapter
5's judges, and times 8 images by `generate` (30 DDIM steps, guidance 3, best of 3). A trial takes 10 to 30 minutes
on 2 CPU cores (its training time is printed and recorded). Results go to --out/own_sd_trials.json (one entry per
trial, replaced when the trial runs again) and --out/own_sd_trials.md; with --out bench/results the JSON's copy ships
as `course_lib/assets/own_sd_trials.json`, which chapter 5b shows.
"""
import datetime, json, platform, shutil, sys, time
from pathlib import Path

import course_lib  # noqa: F401  (before diffusers: mutes transformers' torchvision advice)
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import WeightedRandomSampler
from diffusers import DDPMScheduler, UNet2DConditionModel
from diffusers.training_utils import compute_density_for_timestep_sampling, compute_snr
from transformers import CLIPModel

from course_lib.colour_fashion import colour_tensors, load_colour_fashion
from course_lib.core import derived_generator, seeded
from course_lib.evaluation import FashionClassifier
from course_lib.latents import encode
from course_lib.models import FASHION_SCHEDULE, course_model_facts, load_course_model, make_scheduler
from course_lib.own_sd import (attribute_hits, colour_judges, colour_unit_images, held_out_requests, make_text_unet,
                               own_sd_pipeline, shipped_own_sd, text_diffusion_loss, train_text_unet)
from course_lib.sampling import generate
from course_lib.text import tokenize
from course_lib.text_encoders import (caption_batches, clip_towers_path, make_clip_towers, text_tower,
                                      train_clip_towers)
from course_lib.training import preset_values, run_settings, train
from colour_vae_candidates import CANDIDATES as VAE_CANDIDATES, candidate_vae
from common import bench_parser, parse_bench_args, pattern_by_asked
from timing import side_by_side_seconds

CROSS, PLAIN = "CrossAttnDownBlock2D", "DownBlock2D"
TRIALS = {  # name: (what it changes, text_unet preset changes, UNet config changes, trainer[, other parts])
    "first recipe": ("the first shipped recipe: 3 epochs, plain MSE", {}, {}, "unet"),
    "4 epochs": ("one more epoch", {"epochs": 4}, {}, "unet"),
    "6 epochs": ("three more epochs", {"epochs": 6}, {}, "unet"),
    "8 epochs": ("five more epochs", {"epochs": 8}, {}, "unet"),
    "narrow": ("16 and 32 channels at 16×16 and 8×8 (not 32 and 64)", {"block_out_channels": [16, 32, 64, 64]}, {},
               "unet"),
    "attention at 8×8": ("cross-attention at 8×8 too", {"down_block_types": [PLAIN, CROSS, CROSS, CROSS]}, {}, "unet"),
    "pooled text": ("the text states pooled into the time embedding, so every block hears the prompt "
                    "(DeepFloyd IF's addition_embed_type='text')", {},
                    {"addition_embed_type": "text", "addition_embed_type_num_heads": 4}, "unet"),
    "text layers trained": ("the text tower's layers trained with the UNet (GLIDE-style; token embeddings frozen)", {},
                            {}, "text layers"),
    "batch 32": ("half the batch: twice the updates in the same 3 epochs", {"batch_size": 32}, {}, "unet"),
    "min-SNR 5": ("Min-SNR-γ loss weights (γ = 5, as diffusers' train_text_to_image --snr_gamma): the near-clean "
                  "steps, which teach detail but not the prompt, weigh less (shipped until γ = 20)",
                  {"snr_gamma": 5.0}, {}, "unet"),
    "min-SNR 5, batch 128, 6 epochs": ("min-SNR 5 with twice the batch and twice the epochs (the steps of 3 epochs, "
                                       "each seeing 128 garments)", {"snr_gamma": 5.0, "batch_size": 128, "epochs": 6},
                                       {}, "unet"),
    "min-SNR 5, middle timesteps": ("min-SNR 5, with timesteps drawn logit-normal(0, 1) as SD 3 trains (diffusers' "
                                    "compute_density_for_timestep_sampling): more steps in the middle band, fewer "
                                    "near 0 and 999", {"snr_gamma": 5.0}, {}, "middle timesteps"),
    "min-SNR 5, batch 128, lr 4e-3, 4 epochs": ("min-SNR 5, twice the batch at twice the learning rate (the "
                                                "linear scaling rule), 4 epochs",
                                                {"snr_gamma": 5.0, "batch_size": 128, "learning_rate": 4e-3,
                                                 "epochs": 4}, {}, "unet"),
    "min-SNR 5, batch 128, lr 4e-3, 5 epochs": ("the same, 5 epochs",
                                                {"snr_gamma": 5.0, "batch_size": 128, "learning_rate": 4e-3,
                                                 "epochs": 5}, {}, "unet"),
    "min-SNR 5, 2-epoch VAE": ("min-SNR 5 on the latents of the VAE trained 2 epochs, not 1 (the pattern judge reads "
                               "96.5 % of test garments through it, not 81.5 %: bench/colour_vae_candidates.py)",
                               {"snr_gamma": 5.0}, {}, "unet", {"vae": "4×16×16 2 epochs"}),
    "min-SNR 5, CLIP 6 epochs": ("min-SNR 5, reading the text tower of CLIP towers trained 6 epochs, not 2 (their "
                                 "zero-shot pattern accuracy rises from 48 % to 81 %, and the pattern words' states "
                                 "move apart)", {"snr_gamma": 5.0}, {}, "unet", {"clip": {"epochs": 6}}),
    "min-SNR 5, CLIP 6 epochs, 2-epoch VAE": ("the two together: min-SNR 5 on the 2-epoch VAE's latents, reading the "
                                              "text tower of CLIP towers trained 6 epochs (the tower shipped now)",
                                              {"snr_gamma": 5.0}, {}, "unet", {"vae": "4×16×16 2 epochs"}),
    "min-SNR 5, 4 epochs, shipped parts": ("min-SNR 5 with one more epoch (4, not 3), on the parts shipped since "
                                           "2026-12-06: the VAE trained in batches of 32 and the 6-epoch CLIP towers "
                                           "(the UNet shipped until γ = 20 was this recipe with 3 epochs: 840 s of "
                                           "training, the pattern on 74.5 % at guidance 3 with DDIM)",
                                           {"snr_gamma": 5.0, "epochs": 4}, {}, "unet"),
    "min-SNR 20, shipped parts": ("min-SNR with γ = 20, not 5, on the shipped parts, 3 epochs: the near-clean steps, "
                                  "where the finest detail is settled, weigh up to 4 times more",
                                  {"snr_gamma": 20.0}, {}, "unet"),
    "min-SNR 20, 45,000 garments": ("min-SNR 20 on the shipped parts, 3 epochs of 45,000 garments, not 60,000: a "
                                    "quarter fewer steps, to fit all parts in 30 minutes", {"snr_gamma": 20.0,
                                    "train_samples": 45000}, {}, "unet"),
    "min-SNR 20, 4 epochs, shipped parts": ("min-SNR 20 with one more epoch (4, not 3) on the shipped parts: the two "
                                            "changes that each bought pattern, together", {"snr_gamma": 20.0,
                                            "epochs": 4}, {}, "unet"),
    "plain MSE, shipped parts": ("plain MSE (no min-SNR) on the shipped parts, 3 epochs: every timestep weighs "
                                 "the same, so the near-clean steps get most of the gradient", {}, {}, "unet"),
    "min-SNR 20, lr 4e-3, shipped parts": ("min-SNR 20 on the shipped parts, 3 epochs at twice the learning rate "
                                           "(4e-3, not 2e-3): speckle came with more steps; does it come with bigger "
                                           "ones? (shipped since 2026-12-06)",
                                           {"snr_gamma": 20.0, "learning_rate": 4e-3}, {}, "unet"),
    "min-SNR 20, lr 8e-3, shipped parts": ("min-SNR 20 on the shipped parts, 3 epochs at four times the learning "
                                           "rate (8e-3): doubling it once bought pattern; does doubling it again? (its "
                                           "training shared the 2 cores with a 3-minute test for part of the run: "
                                           "its seconds read high)",
                                           {"snr_gamma": 20.0, "learning_rate": 8e-3}, {}, "unet"),
    "min-SNR 20, lr 4e-3, 4 epochs, shipped parts": ("the shipped recipe (min-SNR 20, lr 4e-3) with one more epoch "
                                                     "(4, not 3), captions encoded once: what a fourth epoch buys now",
                                                     {"snr_gamma": 20.0, "learning_rate": 4e-3, "epochs": 4}, {},
                                                     "unet"),
    "min-SNR 20, lr 4e-3, balanced patterns": ("the shipped recipe (min-SNR 20, lr 4e-3, 3 epochs) on epochs drawn "
                                               "with each pattern equally often (20 %), as the requests ask them: the "
                                               "colour set is 40 % plain and 15 % each other pattern",
                                               {"snr_gamma": 20.0, "learning_rate": 4e-3}, {}, "balanced patterns"),
}
SCALES, N_REQUESTS, REQUEST_SEED = (2, 3, 5), 200, 3
ROOT = Path(__file__).resolve().parents[1]


def trial_text_tower(clip_change: dict, tokenizer, colour: dict) -> tuple[torch.nn.Module, float]:
    """The text tower of CLIP towers trained by the cpu preset | `clip_change` (cached in the course's cache, with
    their training seconds), rounded through fp16 as a shipped tower is; and those seconds."""
    preset = preset_values("cpu", "clip") | clip_change
    folder = clip_towers_path(preset)
    if not (folder / "config.json").exists():
        towers, start = make_clip_towers(preset), time.perf_counter()
        train_clip_towers(towers, tokenizer, colour, preset, progress=False)
        towers.save_pretrained(folder)
        (folder / "seconds.json").write_text(json.dumps({"seconds": time.perf_counter() - start}))
    towers = CLIPModel.from_pretrained(folder).eval()
    return (text_tower(towers).to(torch.float16).float(),
            json.loads((folder / "seconds.json").read_text())["seconds"])


def trial_batches(vae, tokenizer, colour: dict, p: dict) -> tuple[dict, object]:
    "What both trial trainers below start from, as `train_text_unet` does: the run's settings and its caption batches."
    latents = encode(vae, colour_unit_images(colour["images"]), mode="mean", batch_size=500, progress=False)
    return (run_settings(p, len(colour["images"]), "text_unet"),
            caption_batches(tokenizer, colour | {"images": latents}, p["batch_size"], 0))


def dropped_captions(ids: torch.Tensor, empty: torch.Tensor, share: float, generator) -> torch.Tensor:
    "`ids` with a random `share` of the captions made the empty one: the unconditional half of CFG."
    return torch.where((torch.rand(len(ids), generator=generator) < share)[:, None], empty, ids)


def train_with_text_layers(unet, vae, text_encoder, tokenizer, colour, p, max_steps=None):
    "Train `unet` and `text_encoder`'s layers together: `train_text_unet`'s loss, without the text tower's no_grad."
    text_encoder.requires_grad_(True).get_input_embeddings().requires_grad_(False)
    run, batches = trial_batches(vae, tokenizer, colour, p)
    empty, scheduler = tokenize(tokenizer, [""]).input_ids, DDPMScheduler(**FASHION_SCHEDULE)
    def loss(model, batch, generator, bf16):
        x, ids = batch
        ids = dropped_captions(ids, empty, p["caption_dropout"], generator)
        noise = torch.randn(x.shape, generator=generator)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (len(x),), generator=generator)
        states = model["text_encoder"](ids).last_hidden_state
        return F.mse_loss(model["unet"](scheduler.add_noise(x, noise, t), t, encoder_hidden_states=states).sample,
                          noise)
    model = torch.nn.ModuleDict({"unet": unet, "text_encoder": text_encoder})
    record = train(model, loss, batches, run, max_steps=max_steps, progress=False, what="UNet and text layers")
    text_encoder.eval().requires_grad_(False)
    return record


def train_with_middle_timesteps(unet, vae, text_encoder, tokenizer, colour, p, max_steps=None):
    "`train_text_unet` with timesteps drawn logit-normal(0, 1) (SD 3's sampling) instead of uniformly; min-SNR kept."
    run, batches = trial_batches(vae, tokenizer, colour, p)
    empty, scheduler = tokenize(tokenizer, [""]).input_ids, DDPMScheduler(**FASHION_SCHEDULE)
    steps = scheduler.config.num_train_timesteps
    def loss(model, batch, generator, bf16):
        x, ids = batch
        ids = dropped_captions(ids, empty, p["caption_dropout"], generator)
        with torch.no_grad(): states = text_encoder(ids).last_hidden_state
        noise = torch.randn(x.shape, generator=generator)
        u = compute_density_for_timestep_sampling("logit_normal", len(x), 0.0, 1.0, generator=generator)
        t = (u * steps).long().clamp(max=steps - 1)
        per_sample = F.mse_loss(model(scheduler.add_noise(x, noise, t), t, encoder_hidden_states=states).sample, noise,
                                reduction="none").mean(dim=(1, 2, 3))
        snr = compute_snr(scheduler, t)
        return (per_sample * snr.clamp(max=p["snr_gamma"]) / snr).mean()
    return train(unet, loss, batches, run, max_steps=max_steps, progress=False,
                 what="UNet, logit-normal timesteps")


def train_with_balanced_patterns(unet, vae, text_encoder, tokenizer, colour, p, max_steps=None):
    """`train_text_unet` on epochs drawn with each pattern equally often (PyTorch's `WeightedRandomSampler`, with
    replacement): the colour set is 40 % plain and 15 % each other pattern; the held-out requests ask each 20 %."""
    run = run_settings(p, len(colour["images"]), "text_unet")
    data = colour | {"images": encode(vae, colour_unit_images(colour["images"]), mode="mean", batch_size=500,
                                      progress=False)}
    weights = (1 / torch.bincount(colour["pattern"]).double())[colour["pattern"]]  # each pattern weighs the same
    def batches(epoch: int, first_batch: int = 0):
        # key (epoch, 1): a draw of its own, apart from the epoch's order that caption_batches shuffles next
        sampler = WeightedRandomSampler(weights, len(weights), generator=derived_generator(0, "epoch", epoch, 1))
        rows = torch.tensor(list(sampler))
        return caption_batches(tokenizer, {k: v[rows] for k, v in data.items()}, p["batch_size"], 0)(epoch, first_batch)
    loss = text_diffusion_loss(text_encoder, tokenize(tokenizer, [""]).input_ids, p["caption_dropout"],
                               snr_gamma=p.get("snr_gamma"))
    return train(unet, loss, batches, run, max_steps=max_steps, progress=False, what="UNet, balanced patterns")


def run_trial(name: str, max_steps: int | None = None, n: int = N_REQUESTS) -> dict:
    what, preset_change, unet_change, trainer, *others = TRIALS[name]
    other_parts = others[0] if others else {}
    first_recipe = {"snr_gamma": None, "learning_rate": 2e-3}  # what the cpu preset said before min-SNR and lr 4e-3
    p = preset_values("cpu", "text_unet") | first_recipe | preset_change
    shipped = shipped_own_sd(device="cpu")
    vae, text_encoder, tokenizer = shipped.vae, shipped.text_encoder, shipped.tokenizer
    colour = colour_tensors(load_colour_fashion("train"))
    parts = course_model_facts("own-sd")["parts"]
    vae_seconds, clip_seconds = parts["colour VAE"]["seconds"], parts["CLIP towers (text encoder)"]["seconds"]
    if "vae" in other_parts:  # another VAE's latents: trained once by bench/colour_vae_candidates.py's recipe
        vae, vae_seconds = candidate_vae(other_parts["vae"], VAE_CANDIDATES[other_parts["vae"]], colour["images"],
                                         "cpu")
    if "clip" in other_parts:
        text_encoder, clip_seconds = trial_text_tower(other_parts["clip"], tokenizer, colour)
    unet = make_text_unet(text_encoder, vae, p)
    if unet_change:
        with seeded(0): unet = UNet2DConditionModel.from_config(unet.config, **unet_change)
    print(f"{name}: {what}; {sum(q.numel() for q in unet.parameters()) / 1e6:.2f} M parameters", flush=True)
    if trainer == "unet":
        record = train_text_unet(unet, vae, text_encoder, tokenizer, colour, p, max_steps=max_steps, progress=False)
    else:
        trainers = {"text layers": train_with_text_layers, "middle timesteps": train_with_middle_timesteps,
                    "balanced patterns": train_with_balanced_patterns}
        record = trainers[trainer](unet, vae, text_encoder, tokenizer, colour, p, max_steps)
    print(f"{name}: trained {record['step']} steps in {record['seconds']:.0f} s", flush=True)
    pipe, judges = own_sd_pipeline(vae, text_encoder, tokenizer, unet), colour_judges(
        load_course_model("judge", FashionClassifier, "cpu"), progress=False)
    pipe.scheduler = make_scheduler("ddim", pipe.scheduler.config)  # every row is measured with DDIM, as the first were
    requests, scores = held_out_requests(n, seed=REQUEST_SEED), {}
    for scale in SCALES:
        samples = generate(pipe, list(requests["prompt"]), guidance_scale=scale, num_inference_steps=30,
                           output_type="pt", progress=False,
                           generator=[torch.Generator().manual_seed(i) for i in range(n)])
        hits = attribute_hits(samples, requests, judges)
        scores[str(scale)] = {k: round(100 * v, 1) for k, v in hits.mean().items()}
        if scale == 3:  # which patterns it draws: speckle is the one the shipped UNet hardly ever does
            by_pattern = pattern_by_asked(hits, requests)
        print(f"{name}: guidance {scale}: {scores[str(scale)]}", flush=True)
    eight_images, = side_by_side_seconds(lambda: generate(pipe, ["a red dress"] * 8, guidance_scale=3, seed=0,
                                                          num_inference_steps=30, output_type="pt", progress=False))
    return dict(what=what, preset_change=preset_change, unet_change=unet_change,
                text_layers_trained=trainer == "text layers", balanced_patterns=trainer == "balanced patterns",
                timesteps="logit-normal(0, 1)" if trainer == "middle timesteps" else "uniform",
                vae=other_parts.get("vae", "shipped"), vae_seconds=round(vae_seconds),
                clip_change=other_parts.get("clip", {}), clip_seconds=round(clip_seconds),
                parameters_m=round(sum(q.numel() for q in unet.parameters()) / 1e6, 2), steps=record["step"],
                train_seconds=round(record["seconds"]), scores=scores, pattern_by_asked_g3=by_pattern,
                eight_images_s=round(eight_images, 2),
                date=datetime.date.today().isoformat(),
                machine=f"{platform.machine()}, {torch.get_num_threads()} threads")


def table_of(results: dict) -> pd.DataFrame:
    """One row per trial: its change, UNet training seconds, all parts' minutes (the VAE's and the CLIP towers'
    seconds as recorded with the trial: their cards' when it ran on the shipped ones), class/colour/pattern % at
    guidance 3, pattern % at 5."""
    return pd.DataFrame([{"trial": name, "what it changes": r["what"], "UNet train s": r["train_seconds"],
                          "all parts min": round((r["clip_seconds"] + r["vae_seconds"] + r["train_seconds"]) / 60, 1),
                          **{f"{k} % (g3)": r["scores"]["3"][k] for k in ("class", "colour", "pattern")},
                          "pattern % (g5)": r["scores"]["5"]["pattern"], "8 images s": r["eight_images_s"]}
                         for name, r in results.items()])


def markdown(table: pd.DataFrame) -> str:
    rows = [list(table.columns), ["---"] * len(table.columns), *table.astype(str).values.tolist()]
    return "\n".join("| " + " | ".join(map(str, row)) + " |" for row in rows)


def write_results(results: dict, out: Path):
    "own_sd_trials.json (the trials, their table and one figure per number) and own_sd_trials.md, under `out`."
    results = {k: results[k] for k in TRIALS if k in results}
    if not results: raise SystemExit(f"no trial has run yet: nothing to tabulate in {out}")
    table = table_of(results)
    figures = {f"{name}: {k} at guidance {s}": v for name, r in results.items()
               for s, scores in r["scores"].items() for k, v in scores.items()}
    figures |= {f"{name}: pattern at guidance 3, {pattern} asked": v for name, r in results.items()
                for pattern, v in r.get("pattern_by_asked_g3", {}).items()}  # recorded since 2026-12-06
    figures |= {f"{name}: UNet train s": r["train_seconds"] for name, r in results.items()}
    figures |= {f"{name}: all parts min": m for name, m in zip(table["trial"], table["all parts min"])}
    facts = dict(command="python bench/own_sd_trials.py --trial NAME",
                 requests=f"{N_REQUESTS} held-out requests (seed {REQUEST_SEED}), DDIM 30, shipped VAE and text tower",
                 trials=results, table=table.to_dict(orient="list"), figures=figures)
    (out / "own_sd_trials.json").write_text(json.dumps(facts, indent=1, ensure_ascii=False) + "\n")
    (out / "own_sd_trials.md").write_text(f"# Chapter 5's UNet: what each change buys\n\n`{facts['command']}`: "
                                          f"{facts['requests']}.\n\n{markdown(table)}\n")
    if out.resolve() == (ROOT / "bench" / "results").resolve():
        shutil.copy(out / "own_sd_trials.json", ROOT / "course_lib" / "assets" / "own_sd_trials.json")
    print(table.to_string(index=False))


def main():
    parser = bench_parser(__doc__)
    parser.add_argument("--trial", action="append", choices=list(TRIALS), default=[])
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--table", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="check the script: 3 training steps, 8 requests")
    args, _, out = parse_bench_args(parser)
    if args.list or not (args.trial or args.table):
        for name, (what, *_) in TRIALS.items(): print(f"{name!r}: {what}")
        return
    path = out / "own_sd_trials.json"
    results = json.loads(path.read_text())["trials"] if path.exists() else {}
    for name in args.trial:
        results[name] = run_trial(name, 3, 8) if args.smoke else run_trial(name)
        write_results(results, out)  # after each trial: a long run keeps what it finished
    if args.table: write_results(results, out)


if __name__ == "__main__":
    sys.exit(main())
