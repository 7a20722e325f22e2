"""Chapter 6's two ways to teach the shipped own SD a new colour word ("cerulean", from 16 example garments), side by
side: textual inversion, and LoRA at a few ranks, with 1,024 of the garments the model was trained on mixed into every
batch to keep what it knows (and once without), each trained from the shipped model with its `cpu` preset.

    python bench/new_words.py [--out bench/results]          # every method: about 20 minutes on 2 CPU cores
    python bench/new_words.py --method "LoRA rank 4" ...      # some of them (--list names them)
    python bench/new_words.py --smoke --out /tmp/x            # check the script in a minute
    python bench/new_words.py --table --out bench/results     # rewrite the .md and figures from the .json

For each method: the steps and seconds it trained, the bytes of what it learnt (the file diffusers loads), how often
the new word is drawn as asked (100 requests "a cerulean <garment>", 10 per class, colour measured from the pixels
among PALETTE's ten and cerulean, guidance 3, 30 steps of the shipped sampler, Euler ancestral), and what it forgot:
chapter 5's held-out table (class, colour, pattern on 200 held-out requests, seed 3, sample i seeded i, guidance 3,
chapter 5's judges) after, against the shipped model before, on the same seeds; how many of those 200 images changed
by more than one 8-bit level anywhere, and their mean change in 8-bit levels. Where a LoRA trained a word along,
"word alone %" is how often the word is drawn as asked with the LoRA switched off (`disable_adapters`): what the
embedding learnt by itself. Results go to --out/new_words.json and --out/new_words.md; with --out bench/results the
JSON and the learnt files ship in `course_lib/assets/` (new_words.json, new_words_cerulean.safetensors, and for "LoRA
rank 4 + word", the rank the lora `cpu` preset names, new_words_lora.safetensors with its word's embedding
new_words_lora_cerulean.safetensors), which chapter 6 loads.
"""
import datetime, json, platform, shutil, sys, tempfile
from pathlib import Path

import course_lib  # noqa: F401  (before diffusers: mutes transformers' torchvision advice)
import pandas as pd
import torch

from course_lib.colour_fashion import colour_captions, colour_tensors, load_colour_fashion
from course_lib.evaluation import FashionClassifier
from course_lib.models import load_course_model
from course_lib.new_words import (colour_hits, concept_captions, concept_examples, save_lora, save_textual_inversion,
                                  train_lora, train_textual_inversion)
from course_lib.own_sd import attribute_hits, colour_judges, colour_unit_images, held_out_requests, shipped_own_sd
from course_lib.sampling import generate
from course_lib.training import preset_values
from common import bench_parser, parse_bench_args

ROOT = Path(__file__).resolve().parent.parent
WORD, INIT_WORD, N_REQUESTS, REQUEST_SEED = "cerulean", "blue", 200, 3
LORA_RANK, PRIOR_N = preset_values("cpu", "lora")["rank"], 1024
SHIPPED_LORA = f"LoRA rank {LORA_RANK} + word"
METHODS = {  # name: (rank, or None for textual inversion; whether 1,024 training garments keep the old words;
    #                whether the new word's embedding trains along)
    "textual inversion": (None, False, True), f"LoRA rank {LORA_RANK}, examples only": (LORA_RANK, False, False),
    f"LoRA rank {LORA_RANK}": (LORA_RANK, True, False), "LoRA rank 1 + word": (1, True, True),
    SHIPPED_LORA: (LORA_RANK, True, True), "LoRA rank 16 + word": (16, True, True)}


def prior(n: int = PRIOR_N) -> dict:
    "The first `n` garments chapter 5's model trained on, with new true captions each epoch: what LoRA must keep."
    train = colour_tensors(load_colour_fashion("train"))
    return dict(prior_images=colour_unit_images(train["images"][:n]),
                prior_captions=lambda epoch: colour_captions(train["label"][:n], train["colour"][:n],
                                                             train["pattern"][:n], "train", seed=f"prior-{epoch}"))


def old_table(pipe, judges, n: int) -> tuple[dict, torch.Tensor]:
    "Chapter 5's held-out scores (class, colour, pattern %) at guidance 3, and the images they were measured on."
    requests = held_out_requests(n, REQUEST_SEED)
    images = generate(pipe, list(requests["prompt"]), guidance_scale=3.0, num_inference_steps=30, output_type="pt",
                      progress=False, generator=[torch.Generator().manual_seed(i) for i in range(n)])
    hits = attribute_hits(images, requests, judges).mean() * 100
    return {k: round(float(v), 1) for k, v in hits.items()}, images


def run_method(name: str, device, judges, before: torch.Tensor, folder: Path, smoke: bool) -> dict:
    "Train `name` on the shipped model, save what it learnt, measure it; its row of the table."
    pipe, examples = shipped_own_sd(device), concept_examples(16)
    captions, steps = concept_captions(examples, WORD), 3 if smoke else None
    rank, keep, word = METHODS[name]
    if rank is None:
        record = train_textual_inversion(pipe, examples["images"], captions, WORD, INIT_WORD, "cpu",
                                         max_steps=steps, device=device)
        saved = [save_textual_inversion(pipe, WORD, folder / "new_words_cerulean.safetensors")]
    else:
        record = train_lora(pipe, examples["images"], captions, rank, "cpu", max_steps=steps, device=device,
                            **(dict(word=WORD, init_word=INIT_WORD) if word else {}), **(prior() if keep else {}))
        lora_folder = folder / f"lora{len(list(folder.iterdir()))}"
        saved = [save_lora(pipe, lora_folder, "new_words_lora.safetensors")]
        if word: saved.append(save_textual_inversion(pipe, WORD, lora_folder / "new_words_lora_cerulean.safetensors"))
    share, _, _ = colour_hits(pipe, WORD, per_class=1 if smoke else 10)
    scores, after = old_table(pipe, judges, len(before))
    difference = (after - before).abs().flatten(1) * 255  # in 8-bit levels
    word_alone = share if rank is None else None
    if rank is not None and word:
        pipe.unet.disable_adapters()  # the LoRA off, the learnt word still in the tokenizer
        word_alone, _, _ = colour_hits(pipe, WORD, per_class=1 if smoke else 10)
    return {"method": name, "steps": record["step"], "train s": round(record["seconds"], 1),
            "bytes": sum(path.stat().st_size for path in saved), f"{WORD} %": round(100 * share, 1),
            "word alone %": None if word_alone is None else round(100 * word_alone, 1),
            **{f"{k} % after": v for k, v in scores.items()},
            "old images changed %": round(100 * (difference.amax(1) > 1).float().mean().item(), 1),
            "old images mean change": round(difference.mean().item(), 2), "files": [str(path) for path in saved]}


def markdown(table: pd.DataFrame) -> str:
    rows = [list(table.columns), ["---"] * len(table.columns), *table.fillna("–").astype(str).values.tolist()]
    return "\n".join("| " + " | ".join(map(str, row)) + " |" for row in rows)


def write_results(rows: list, before: dict, out: Path, run: dict | None = None):
    "new_words.json (the table, the scores before, one figure per number, the run's facts) and new_words.md, in `out`."
    table = pd.DataFrame(rows).drop(columns="files", errors="ignore")
    table = table.astype(object).where(table.notna(), None)  # no "word alone" for a LoRA without a word: null
    figures = {f"{row['method']}: {k}": v for row in table.to_dict(orient="records") for k, v in row.items()
               if k != "method" and v is not None} | {f"before: {k} %": v for k, v in before.items()}
    facts = dict(command="python bench/new_words.py", word=WORD, init_word=INIT_WORD, lora_rank_shipped=LORA_RANK,
                 requests=f"{N_REQUESTS} held-out requests (seed {REQUEST_SEED}), guidance 3, 30 Euler ancestral steps",
                 before={f"{k} %": v for k, v in before.items()}, table=table.to_dict(orient="list"), figures=figures,
                 **(run or dict(machine=f"{platform.machine()} CPU, {torch.get_num_threads()} threads",
                                date=datetime.date.today().isoformat())))
    (out / "new_words.json").write_text(json.dumps(facts, indent=1, ensure_ascii=False) + "\n")
    before_line = ", ".join(f"{k} {v} %" for k, v in before.items())
    (out / "new_words.md").write_text(f"# Chapter 6: a new word, two methods\n\n`{facts['command']}` on "
                                      f"{facts['machine']}, {facts['date']}. The shipped model before: "
                                      f"{before_line} ({facts['requests']}).\n\n{markdown(table)}\n")
    print(f"before: {before_line}\n{table.to_string(index=False)}")


def main():
    parser = bench_parser(__doc__)
    parser.add_argument("--method", action="append", choices=list(METHODS), default=[])
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="check the script: 3 training steps, 8 requests")
    parser.add_argument("--table", action="store_true", help="rewrite the outputs from --out/new_words.json's table")
    args, device, out = parse_bench_args(parser)
    if args.list: return print("\n".join(METHODS))
    if args.table:
        facts = json.loads((out / "new_words.json").read_text())
        before = {k.removesuffix(" %"): v for k, v in facts["before"].items()}
        write_results(pd.DataFrame(facts["table"]).to_dict(orient="records"), before, out,
                      {k: facts[k] for k in ("machine", "date")})
        if out.resolve() == (ROOT / "bench" / "results").resolve():
            shutil.copy(out / "new_words.json", ROOT / "course_lib" / "assets" / "new_words.json")
        return
    judges = colour_judges(load_course_model("judge", FashionClassifier, device), device=device)
    before, before_images = old_table(shipped_own_sd(device), judges, 8 if args.smoke else N_REQUESTS)
    folder, rows = Path(tempfile.mkdtemp()), []
    for name in args.method or list(METHODS):
        rows.append(run_method(name, device, judges, before_images, folder, args.smoke))
        write_results(rows, before, out)  # after each method: a long run keeps what it finished
    shipped = out.resolve() == (ROOT / "bench" / "results").resolve()
    for row in rows if shipped else []:
        if row["method"] in ("textual inversion", SHIPPED_LORA):  # the presets' recipes
            for path in map(Path, row["files"]): shutil.copy(path, ROOT / "course_lib" / "assets" / path.name)
    if shipped: shutil.copy(out / "new_words.json", ROOT / "course_lib" / "assets" / "new_words.json")


if __name__ == "__main__":
    sys.exit(main())
