"""Execute the course notebooks headless and save what they show.

    python tools/run_notebooks.py [--out output] [--jobs 2] [notebooks ...]

Runs every notebook, even after one fails. Writes each executed notebook to <out>/notebooks/ (a failed one with its
error cell), every figure it draws to <out>/figures/<notebook>-<n>.png, and a summary table (result, seconds,
figures, and the data and models each notebook used) to the terminal and to <out>/summary.md. Exits with 1 if any
notebook failed. Cells flagged `#| slow` or `#| gpu` are skipped, as in `nbdev-test`; set COURSE_RUN_FLAGS="slow"
to run them. Notebooks run in --jobs processes side by side (default 2, or COURSE_DEMO_JOBS), each with one torch
thread: on 2 cores that beats one process with two threads, since most of a notebook's time is small tensors, Python
and PNG decoding. As under nbdev-test (IN_TEST=1), a notebook's own `nbdev_export()` cell does nothing here.
"""
import argparse, base64, multiprocessing, os, sys, time
from functools import partial
from pathlib import Path

from fastcore.nbio import read_nb, write_nb
from execnb.shell import CaptureShell

from course_lib.core import SOURCES_USED

ROOT = Path(__file__).resolve().parent.parent
SKIP_FLAGS = {"notest", "slow", "gpu"} - set(os.environ.get("COURSE_RUN_FLAGS", "").split())


def skipped(cell) -> bool:
    "A code cell carrying one of the `#| notest/slow/gpu` flags that this run leaves out."
    first_lines = [l.strip() for l in cell.source.splitlines() if l.strip().startswith("#|")]
    return any(flag in SKIP_FLAGS for line in first_lines for flag in line[2:].split())


def save_figures(nb, stem: str, folder: Path) -> int:
    "Write every PNG output of `nb` to `folder`/`stem`-NN.png (after removing an earlier run's); return how many."
    for old in folder.glob(f"{stem}-[0-9][0-9].png"): old.unlink()
    pngs = [o["data"]["image/png"] for cell in nb.cells for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    for i, png in enumerate(pngs, 1): (folder / f"{stem}-{i:02d}.png").write_bytes(base64.b64decode(png))
    return len(pngs)


def run_notebook(path: Path, out: Path) -> dict:
    "Execute `path` in its own folder; save it and its figures under `out` whatever happens; return its summary row."
    nb = read_nb(path)
    for cell in nb.cells:
        if cell.cell_type == "code" and skipped(cell): cell.source = "# (skipped by tools/run_notebooks.py)\n" + cell.source
    SOURCES_USED.clear()  # each notebook's own sources (course_lib runs in this process)
    main = sys.modules["__main__"]  # IPython's shell makes its namespace __main__; a pool worker needs its own back
    shell, cwd, error, start = CaptureShell(path=path.parent), os.getcwd(), None, time.perf_counter()
    os.chdir(path.parent)
    try: shell.run_all(nb, exc_stop=True, preproc=lambda c: c.cell_type == "code" and "(skipped by" in c.source)
    except Exception as e: error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    finally: os.chdir(cwd); sys.modules["__main__"] = main
    seconds = time.perf_counter() - start
    write_nb(nb, out / "notebooks" / path.name)
    return dict(notebook=path.stem, result="ok" if error is None else "FAILED", seconds=seconds,
                figures=save_figures(nb, path.stem, out / "figures"), error=error, sources=list(SOURCES_USED))


def one_thread():
    "A worker's setup: one torch thread (the workers share the cores) and nbdev's test mode (no exporting)."
    import torch
    torch.set_num_threads(1)
    os.environ["IN_TEST"] = "1"


def run_all(paths, out: Path, jobs: int):
    "Yield each notebook's summary row as it finishes, `jobs` notebooks at a time."
    if jobs <= 1:
        os.environ["IN_TEST"] = "1"
        yield from (run_notebook(path, out) for path in paths)
        return
    with multiprocessing.get_context("spawn").Pool(jobs, initializer=one_thread) as pool:
        yield from pool.imap_unordered(partial(run_notebook, out=out), paths)


def summary_table(rows) -> str:
    "The rows as a markdown table, readable in a terminal too."
    lines = ["| notebook | result | seconds | figures | sources used |", "|---|---|---:|---:|---|"]
    for r in rows:
        by_what = {}
        for what, source in r["sources"]: by_what.setdefault(what, []).append(source)
        sources = "; ".join(f"{what}: {' + '.join(found)}" for what, found in by_what.items()) or "none"
        result = r["result"] + (f" ({r['error']})" if r["error"] else "")
        lines.append(f"| {r['notebook']} | {result} | {r['seconds']:.1f} | {r['figures']} | {sources} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "output"))
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("COURSE_DEMO_JOBS", 2)),
                        help="notebooks run side by side (default 2, or COURSE_DEMO_JOBS)")
    parser.add_argument("notebooks", nargs="*")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    for sub in ("notebooks", "figures"): (out / sub).mkdir(parents=True, exist_ok=True)
    paths = [Path(p).resolve() for p in args.notebooks] or sorted((ROOT / "nbs").glob("[0-9]*.ipynb"))
    print(f"Running {len(paths)} notebooks headless (data source: {os.environ.get('COURSE_DATA_SOURCE') or 'settings.ini'}; "
          f"skipping cells flagged {', '.join(sorted(SKIP_FLAGS))})", flush=True)
    rows, start = [], time.perf_counter()
    for row in run_all(paths, out, args.jobs):
        rows.append(row)
        print(f"{row['notebook']}.ipynb: {row['result']} in {row['seconds']:.1f} s, {row['figures']} figure{'' if row['figures'] == 1 else 's'}"
              + (f" -- {row['error']}" if row["error"] else ""), flush=True)
    wall = time.perf_counter() - start
    rows.sort(key=lambda r: [p.stem for p in paths].index(r["notebook"]))
    failed = [r["notebook"] for r in rows if r["error"]]
    table = summary_table(rows)
    total = (f"{len(rows) - len(failed)} of {len(rows)} notebooks ran in {wall:.0f} s "
             f"({sum(r['seconds'] for r in rows):.0f} s of notebook time, {args.jobs} at a time)") + (
        f"; failed: {', '.join(failed)} (see their error cells in {out / 'notebooks'})" if failed else ".")
    (out / "summary.md").write_text(f"# make demo\n\n{table}\n\n{total}\n", encoding="utf-8")
    print(f"\n{table}\n\n{total}\nExecuted notebooks: {out / 'notebooks'}\nFigures: {out / 'figures'}\n"
          f"This table: {out / 'summary.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
