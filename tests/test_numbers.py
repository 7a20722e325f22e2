"""One source for each number: a figure the prose quotes carries a marker naming where it comes from, and equals it.

In a notebook's markdown (or README.md), right after the number and its unit:

    **96.8 %**<!-- from card class-unet: class accuracy at guidance 3 -->   a model card's figure (a unique key prefix)
    10 min<!-- from card class-unet: seconds -->   a card's training time (`seconds`, in min when the prose says min)
        or `steps`
    0.371 s<!-- from gpu_report: SD 1.5 architecture / generate's fast path -->   bench/results/gpu_report.json: a
        group-name prefix / a variant prefix; the row's seconds (prose in ms is converted)
    62 s<!-- from gpu_report notes: SD 1.5 architecture -->   a number in that group's notes (row notes included),
        rounded as the prose; gpu_report_first_run instead of gpu_report: the report's first run (bench/results/)
    9.0×<!-- from bench latent_diffusion: training step speed-up -->   bench/results/latent_diffusion.json's figures
    525 ms<!-- from output -->   the text output of the nearest code cell above that has one, in the executed copy

The prose may round: it must equal the source rounded to the decimals it shows. `python tests/test_numbers.py` lists
every marker with its source's value.
"""
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXECUTED = ROOT / "output" / "notebooks"  # make demo's / make test's executed copies
MARKER = re.compile(r"<!-- from (?P<source>[^>]*?) -->")
NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")
UNIT = re.compile(r"\s*(ms|s|min|%|dB|×|x)?\**$")


def quoted_figures(text: str) -> list[tuple[str, str, str]]:
    "Each marker in `text`: (the number before it, its unit or '', the source the marker names)."
    found = []
    for m in MARKER.finditer(text):
        before = text[max(0, m.start() - 60):m.start()]
        numbers = list(NUMBER.finditer(before))
        if not numbers: raise ValueError(f"no number before the marker <!-- from {m['source']} -->: ...{before}")
        unit = UNIT.match(before[numbers[-1].end():])
        found.append((numbers[-1].group(), unit.group(1) or "" if unit else "", m["source"].strip()))
    return found


def first_number(value) -> float:
    if isinstance(value, (int, float)): return float(value)
    return float(NUMBER.search(str(value)).group().replace(",", ""))


def key_of(keys, key: str, what: str) -> str:
    "The one key of `keys` that is `key`, or else that starts with it."
    return unique([k for k in keys if k == key] or [k for k in keys if k.startswith(key)], f"{what} {key!r}")


def unique(items: list, what: str):
    if len(items) != 1: raise KeyError(f"{what} matches {len(items)} entries, not one")
    return items[0]


def source_value(source: str, unit: str, notebook: str | None = None, cell_id: str | None = None) -> float | str:
    "The value `source` names (a float, or for `output` the text the number must appear in)."
    kind, _, key = source.partition(":")
    kind, key = kind.strip(), key.strip()
    if kind.startswith("card "):
        card = json.loads((ROOT / "course_lib" / "pretrained" / kind[5:].strip() / "course_model.json").read_text())
        if key in ("seconds", "steps"): return card[key] / (60 if unit == "min" else 1)  # the card's training run
        return first_number(card["figures"][key_of(card["figures"], key, "card key")])
    if kind.startswith("bench "):
        figures = json.loads((ROOT / "bench" / "results" / f"{kind[6:].strip()}.json").read_text())["figures"]
        return first_number(figures[key_of(figures, key, "bench key")])
    if kind.split()[0] in ("gpu_report", "gpu_report_first_run"):
        group_name, _, variant = (s.strip() for s in key.partition("/"))
        report = json.loads((ROOT / "bench" / "results" / f"{kind.split()[0]}.json").read_text())
        group = unique([g for g in report["groups"] if g["name"].startswith(group_name)], f"group {group_name!r}")
        # a figure the report states in words: one of the numbers there, rounded as the prose
        if kind.endswith(" notes"):
            words = " ".join(group.get("notes", []) + [r.get("note") or "" for r in group["rows"]])
            return [first_number(n.group()) for n in NUMBER.finditer(words)]
        row = unique([r for r in group["rows"] if r["variant"].startswith(variant)], f"variant {variant!r}")
        return row["seconds"] * (1000 if unit == "ms" else 1)
    if kind == "output":
        return output_above(notebook, cell_id)
    raise ValueError(f"unknown source {source!r}: use `card NAME: KEY`, `bench NAME: KEY`, "
                     "`gpu_report: GROUP / VARIANT` or `output`")


def output_above(notebook: str | None, cell_id: str | None) -> str:
    """The text output of the nearest code cell above markdown cell `cell_id` that has one, in `notebook`'s executed
    copy."""
    if notebook is None: raise ValueError("`output` is a source only in a notebook")
    executed = EXECUTED / notebook
    if not executed.exists(): pytest.skip(f"no executed copy of {notebook} (make demo writes {EXECUTED})")
    cells = json.loads(executed.read_text())["cells"]
    index = next(i for i, c in enumerate(cells) if c["id"] == cell_id)
    for cell in reversed(cells[:index]):
        texts = ["".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", ""))
                 for o in cell.get("outputs", [])]
        if cell["cell_type"] == "code" and "".join(texts).strip(): return "".join(texts)
    raise ValueError(f"no code cell with output above cell {cell_id}")


def problem(number: str, unit: str, source: str, notebook=None, cell_id=None) -> str | None:
    "What is wrong with one quoted figure, or None when it equals its source."
    try: value = source_value(source, unit, notebook, cell_id)
    except (KeyError, ValueError, FileNotFoundError) as e: return f"{number}{unit}: source {source!r}: {e}"
    if isinstance(value, str):
        where = "the output above" if source == "output" else "that text"
        return None if re.search(rf"(?<![\d.]){re.escape(number)}(?![\d])", value) else \
            f"{number}{unit}: not in {where} ({value.strip()[:200]!r})"
    decimals = len(number.partition(".")[2])
    if isinstance(value, list):  # the numbers of a text: one of them must round to the prose's
        return None if any(f"{v:.{decimals}f}" == number.replace(",", "") for v in value) else \
            f"{number}{unit}: no number of {source!r} rounds to it ({value})"
    if f"{value:.{decimals}f}" == number.replace(",", ""): return None
    return f"{number}{unit}: its source {source!r} says {value:.{max(decimals, 2)}f}"


def prose() -> list[tuple[str, str | None, str | None, str]]:
    "Every markdown text of the course: (file, notebook name or None, cell id or None, text)."
    texts = [("README.md", None, None, (ROOT / "README.md").read_text())]
    for path in sorted((ROOT / "nbs").glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "markdown":
                texts.append((path.name, path.name, cell["id"], "".join(cell["source"])))
    return texts


def all_problems() -> tuple[int, list[str]]:
    count, problems = 0, []
    for file, notebook, cell_id, text in prose():
        for number, unit, source in quoted_figures(text):
            count += 1
            if (p := problem(number, unit, source, notebook, cell_id)): problems.append(f"{file} cell {cell_id}: {p}")
    return count, problems


def test_every_quoted_figure_equals_its_source():
    count, problems = all_problems()
    assert count >= 20, f"only {count} quoted figures carry a source marker"
    assert not problems, "\n".join(problems)


def test_a_changed_figure_or_a_wrong_key_fails():
    assert quoted_figures("at guidance 3: **96.8 %**<!-- from card class-unet: class accuracy at guidance 3 -->") == \
        [("96.8", "%", "card class-unet: class accuracy at guidance 3")]
    card = json.loads((ROOT / "course_lib" / "pretrained" / "class-unet" / "course_model.json").read_text())
    true = card["figures"]["class accuracy at guidance 3 (500 samples, DDIM 50, by the shipped judge)"].rstrip("%")
    source = "card class-unet: class accuracy at guidance 3"
    assert problem(true, "%", source) is None
    assert problem(f"{float(true):.0f}", "%", source) is None  # rounded
    assert "says" in problem(f"{float(true) + 0.1:.1f}", "%", source)  # changed
    assert "matches 2 entries" in problem(true, "%", "card class-unet: class accuracy")  # ambiguous
    assert "unknown source" in problem(true, "%", "the book")
    minutes = card["seconds"] / 60
    assert problem(f"{minutes:.0f}", "min", "card class-unet: seconds") is None
    assert problem(f"{minutes + 1:.0f}", "min", "card class-unet: seconds") is not None
    fast = "gpu_report: SD 1.5 architecture / generate's fast path"
    seconds = source_value(fast, "s")
    assert problem(f"{seconds:.3f}", "s", fast) is None and problem(f"{seconds * 1000:.0f}", "ms", fast) is None
    assert problem(f"{seconds + 0.01:.3f}", "s", fast) is not None
    assert problem("6.5", "ms", "gpu_report notes: SD 1.5 architecture") is None  # "6.50 ms per denoising step"
    assert problem("6.51", "ms", "gpu_report notes: SD 1.5 architecture") is not None


if __name__ == "__main__":
    for file, notebook, cell_id, text in prose():
        for number, unit, source in quoted_figures(text):
            p = problem(number, unit, source, notebook, cell_id)
            print(f"{'FAIL' if p else 'ok  '} {file} {cell_id or ''}: {number}{unit} <- {source}"
                  + (f"  ({p})" if p else ""))
    sys.exit(bool(all_problems()[1]))
