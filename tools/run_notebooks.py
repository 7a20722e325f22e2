"""Execute the course notebooks headless and save what they show.

    python tools/run_notebooks.py [--out output] [notebooks ...]

Writes each executed notebook to <out>/notebooks/ and every figure it draws to <out>/figures/<notebook>-<n>.png.
Cells flagged `#| slow` or `#| gpu` are skipped, as in `nbdev-test`; set COURSE_RUN_FLAGS="slow" to run them.
"""
import argparse, base64, os, sys, time
from pathlib import Path

from fastcore.nbio import read_nb, write_nb
from execnb.shell import CaptureShell

ROOT = Path(__file__).resolve().parent.parent
SKIP_FLAGS = {"notest", "slow", "gpu"} - set(os.environ.get("COURSE_RUN_FLAGS", "").split())


def skipped(cell) -> bool:
    "A code cell carrying one of the `#| notest/slow/gpu` flags that this run leaves out."
    first_lines = [l.strip() for l in cell.source.splitlines() if l.strip().startswith("#|")]
    return any(flag in SKIP_FLAGS for line in first_lines for flag in line[2:].split())


def run_notebook(path: Path, out: Path) -> int:
    "Execute `path` in its own folder, write it to `out`/notebooks and its figures to `out`/figures; return the figure count."
    nb = read_nb(path)
    for cell in nb.cells:
        if cell.cell_type == "code" and skipped(cell): cell.source = "# (skipped by tools/run_notebooks.py)\n" + cell.source
    shell = CaptureShell(path=path.parent)
    cwd = os.getcwd(); os.chdir(path.parent)
    try: shell.run_all(nb, exc_stop=True, preproc=lambda c: c.cell_type == "code" and "(skipped by" in c.source)
    finally: os.chdir(cwd)
    write_nb(nb, out / "notebooks" / path.name)
    count = 0
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if png := output.get("data", {}).get("image/png"):
                count += 1
                (out / "figures" / f"{path.stem}-{count:02d}.png").write_bytes(base64.b64decode(png))
    return count


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "output"))
    parser.add_argument("notebooks", nargs="*")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    for sub in ("notebooks", "figures"): (out / sub).mkdir(parents=True, exist_ok=True)
    paths = [Path(p).resolve() for p in args.notebooks] or sorted((ROOT / "nbs").glob("[0-9]*.ipynb"))
    for path in paths:
        start = time.perf_counter()
        figures = run_notebook(path, out)
        print(f"{path.name}: ran in {time.perf_counter() - start:.1f} s, {figures} figures", flush=True)
    print(f"Executed notebooks: {out / 'notebooks'}\nFigures: {out / 'figures'}")


if __name__ == "__main__":
    sys.exit(main())
