"""Execute the course notebooks headless and save what they show.

    python tools/run_notebooks.py [--out output] [--jobs 2] [--alone] [notebooks ...]

Runs every notebook, even after one fails. Writes each executed notebook to <out>/notebooks/ (a failed one with its
error cell), every figure it draws to <out>/figures/<notebook>-<n>.png, and a summary table (result, seconds,
figures, and the data and models each notebook used) to the terminal and to <out>/summary.md. Exits with 1 if any
notebook failed. Cells flagged `#| slow` or `#| gpu` are skipped, as in `nbdev-test`; set COURSE_RUN_FLAGS="slow"
to run them. Notebooks run in --jobs processes side by side (default 2, or COURSE_DEMO_JOBS), each with one torch
thread: on 2 cores that beats one process with two threads, since most of a notebook's time is small tensors, Python
and PNG decoding. As under nbdev-test (IN_TEST=1), a notebook's own `nbdev_export()` cell does nothing here.

--alone runs each notebook the way a learner on Colab gets it (`make test` does): course_lib is built as a wheel and
installed into a folder of its own, nothing of the checkout is on `sys.path`, and each notebook is copied alone into an
empty folder and run there. Whatever it reads must then come from the package: a file of the checkout is not there.
A failure names the notebook, the cell and the error.
"""
import argparse, atexit, base64, multiprocessing, os, re, shutil, subprocess, sys, tempfile, time
from functools import partial
from pathlib import Path

from fastcore.nbio import read_nb, write_nb
from execnb.shell import CaptureShell

ROOT = Path(__file__).resolve().parent.parent
SKIP_FLAGS = {"notest", "slow", "gpu"} - set(os.environ.get("COURSE_RUN_FLAGS", "").split())


def skipped(cell) -> bool:
    "A code cell carrying one of the `#| notest/slow/gpu` flags that this run leaves out."
    first_lines = [line.strip() for line in cell.source.splitlines() if line.strip().startswith("#|")]
    return any(flag in SKIP_FLAGS for line in first_lines for flag in line[2:].split())


def save_figures(nb, stem: str, folder: Path) -> int:
    "Write every PNG output of `nb` to `folder`/`stem`-NN.png (after removing an earlier run's); return how many."
    for old in folder.glob(f"{stem}-[0-9][0-9].png"): old.unlink()
    pngs = [o["data"]["image/png"] for cell in nb.cells for o in cell.get("outputs", [])
            if "image/png" in o.get("data", {})]
    for i, png in enumerate(pngs, 1): (folder / f"{stem}-{i:02d}.png").write_bytes(base64.b64decode(png))
    return len(pngs)


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
PROGRESS_BAR = re.compile(r"\d+%\||\|\s*[\d.]+[kMG]?/[\d.]+[kMG]?\s*\[")  # tqdm's " 40%|####  | 4/10 [00:01<..."


def without_progress_bars(text: str) -> str:
    "`text` of a stream output without tqdm's bars (each redraw a `\\r`-separated segment); every other line is kept."
    def rest(segment):  # a line printed right after a bar shares its segment: keep what follows the bar's "]"
        bar = PROGRESS_BAR.search(segment)
        return (segment if bar is None else segment[segment.find("]", bar.end()) + 1:] if "]" in segment[bar.end():]
                else "")
    lines = []
    for line in text.split("\n"):
        kept = [r for r in map(rest, line.split("\r")) if ANSI_ESCAPE.sub("", r).strip()]  # a bar leaves "\x1b[A" too
        if kept or (line.strip() == "" and "\r" not in line): lines.append("\r".join(kept))
    return "\n".join(lines)


def strip_progress_bars(nb):
    """Remove progress bars from `nb`'s saved outputs: live they help, saved they are walls of text (the docs show
    these)."""
    for cell in nb.cells:
        if cell.cell_type != "code": continue
        outputs = []
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream":
                o["text"] = without_progress_bars("".join(o["text"]))
                if not o["text"].strip(): continue
            outputs.append(o)
        cell["outputs"] = outputs


def failed_cell(nb) -> str:
    "Which cell of `nb` holds an error output: its number among the code cells and its first line of code."
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    for number, cell in enumerate(code_cells, 1):
        if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            first = next((line.strip() for line in cell.source.splitlines()
                          if line.strip() and not line.lstrip().startswith("#")), "")
            return f"cell {number} ({first[:60]}{'...' if len(first) > 60 else ''})"
    return "no cell (the run itself)"


def run_notebook(path: Path, out: Path, alone: Path | None = None) -> dict:
    """Execute `path` in its own folder, or, with `alone` set, copied alone into the empty folder `alone`/<stem>;
    save it and its figures under `out` whatever happens; return its summary row."""
    nb = read_nb(path)
    for cell in nb.cells:
        if cell.cell_type == "code" and skipped(cell):
            cell.source = "# (skipped by tools/run_notebooks.py)\n" + cell.source
    if alone is not None:  # a fresh runtime's view: the notebook alone in an empty folder, course_lib not yet imported
        folder = alone / path.stem
        shutil.rmtree(folder, ignore_errors=True); folder.mkdir(parents=True)
        path = Path(shutil.copy(path, folder))
        os.chdir(folder)  # before course_lib's import: its settings take this folder as their root (data/, the cache)
    from course_lib.core import SOURCES_USED  # here, not above: an --alone worker imports the installed wheel, and here
    SOURCES_USED.clear()  # each notebook's own sources (course_lib runs in this process)
    main = sys.modules["__main__"]  # IPython's shell makes its namespace __main__; a pool worker needs its own back
    shell, cwd, error, start = CaptureShell(path=path.parent), os.getcwd(), None, time.perf_counter()
    os.chdir(path.parent)
    try: shell.run_all(nb, exc_stop=True, preproc=lambda c: c.cell_type == "code" and "(skipped by" in c.source)
    except Exception as e: error = f"{failed_cell(nb)}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    finally: os.chdir(cwd); sys.modules["__main__"] = main
    seconds = time.perf_counter() - start
    strip_progress_bars(nb)
    write_nb(nb, out / "notebooks" / path.name)
    return dict(notebook=path.stem, result="ok" if error is None else "FAILED", seconds=seconds,
                figures=save_figures(nb, path.stem, out / "figures"), error=error, sources=list(SOURCES_USED))


def one_thread():
    "A worker's setup: one torch thread (the workers share the cores) and nbdev's test mode (no exporting)."
    import torch
    torch.set_num_threads(1)
    os.environ["IN_TEST"] = "1"


def install_wheel(folder: Path) -> Path:
    """Build course_lib's wheel from this checkout and install it, without its dependencies (they are here), into
    `folder`/site."""
    def pip(*args):
        done = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, cwd=folder)
        if done.returncode: sys.exit(f"pip {args[0]} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    leftovers = [p for p in (ROOT / "build", ROOT / "course_lib.egg-info") if not p.exists()]
    try: pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(folder / "dist"), str(ROOT))
    finally:  # setuptools builds in the checkout: leave it as it was
        for p in leftovers: shutil.rmtree(p, ignore_errors=True)
    pip("install", "--no-deps", "--no-compile", "--target", str(folder / "site"),
        *map(str, (folder / "dist").glob("course_lib-*.whl")))
    return folder / "site"


def use_only_the_wheel(site: Path):
    """Put the installed wheel first on `sys.path` and nothing of the checkout on it (spawned workers inherit this
    path); the editable install's finder comes after `sys.path` on `sys.meta_path`, so the wheel is what `import`
    finds."""
    # the checkout, tools/ (this script)... but not .venv
    inside_checkout = lambda p: (Path(p or ".").resolve().is_relative_to(ROOT)
                                 and not Path(p).resolve().is_relative_to(Path(sys.prefix).resolve()))
    sys.path[:] = [str(site)] + [p for p in sys.path if not inside_checkout(p)]
    os.chdir(site.parent)  # and no settings.ini of the checkout's above the working folder (workers start here too)
    import course_lib
    if not Path(course_lib.__file__).resolve().is_relative_to(site):
        sys.exit(f"--alone: course_lib was imported from {course_lib.__file__}, not from the wheel in {site}")


def run_all(paths, out: Path, jobs: int, alone: Path | None = None):
    """Yield each notebook's summary row as it finishes, `jobs` notebooks at a time (--alone: each in a process of its
    own)."""
    run = partial(run_notebook, out=out, alone=alone)
    if jobs <= 1 and alone is None:
        os.environ["IN_TEST"] = "1"
        yield from map(run, paths)
        return
    with multiprocessing.get_context("spawn").Pool(max(jobs, 1), initializer=one_thread,
                                                   maxtasksperchild=1 if alone else None) as pool:
        yield from pool.imap_unordered(run, paths)


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
    parser.add_argument("--alone", action="store_true",
                        help="as on Colab: the wheel installed apart, each notebook alone in an empty folder")
    parser.add_argument("notebooks", nargs="*")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    for sub in ("notebooks", "figures"): (out / sub).mkdir(parents=True, exist_ok=True)
    paths = [Path(p).resolve() for p in args.notebooks] or sorted((ROOT / "nbs").glob("[0-9]*.ipynb"))
    alone = Path(tempfile.mkdtemp(prefix="course-alone-")) if args.alone else None
    if alone:
        atexit.register(shutil.rmtree, alone, True)  # the wheel and the notebooks' folders go, however the run ends
        start = time.perf_counter()
        use_only_the_wheel(install_wheel(alone))
        print(f"--alone: course_lib's wheel installed apart in {time.perf_counter() - start:.0f} s "
              f"({alone / 'site'}); each notebook runs alone in an empty folder", flush=True)
    print(f"Running {len(paths)} notebooks headless "
          f"(data source: {os.environ.get('COURSE_DATA_SOURCE') or 'settings.ini'}; "
          f"skipping cells flagged {', '.join(sorted(SKIP_FLAGS))})", flush=True)
    rows, start = [], time.perf_counter()
    for row in run_all(paths, out, args.jobs, alone):
        rows.append(row)
        print(f"{row['notebook']}.ipynb: {row['result']} in {row['seconds']:.1f} s, "
              f"{row['figures']} figure{'' if row['figures'] == 1 else 's'}"
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
