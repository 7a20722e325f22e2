"`make demo`'s runner: every notebook runs even after one fails, each is saved, and the summary says what happened."
import json
import subprocess
import sys

import pytest

from conftest import ROOT


def notebook(path, *sources):
    cells = [{"cell_type": "code", "id": f"c{i}", "metadata": {}, "execution_count": None, "outputs": [], "source": s}
             for i, s in enumerate(sources)]
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return path


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_runner_goes_on_after_a_failure_and_reports_each_notebook(tmp_path, jobs):
    nbs, out = tmp_path / "nbs", tmp_path / "out"
    nbs.mkdir(); (out / "figures").mkdir(parents=True)
    (out / "figures" / "a_fails-01.png").write_bytes(b"an earlier run's figure")
    notebook(nbs / "a_fails.ipynb", "print('before')", "raise ValueError('broken on purpose')", "print('never')")
    notebook(nbs / "b_draws.ipynb",
             "from course_lib.core import note_source\nnote_source('example model', 'random weights')",
             "import matplotlib.pyplot as plt\nfig, ax = plt.subplots(); ax.plot([0, 1]); plt.close(fig); fig",
             "#| slow\nraise RuntimeError('slow cells are skipped')")
    notebook(nbs / "c_plain.ipynb",  # three notebooks for two workers: one of them runs two in turn
             "from tqdm.auto import tqdm\nimport sys\n"
             "for i in tqdm(range(3), desc='counting'): print('warned', file=sys.stderr)\n"
             "print('\\x1b[A', file=sys.stderr)")
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "run_notebooks.py"), "--out", str(out), "--jobs", jobs,
                           str(nbs / "a_fails.ipynb"), str(nbs / "b_draws.ipynb"), str(nbs / "c_plain.ipynb")],
                          capture_output=True, text=True, timeout=300,
                          env={"MPLBACKEND": "Agg", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 1, done.stdout + done.stderr
    summary = (out / "summary.md").read_text()
    assert ("| a_fails | FAILED (cell 2 (raise ValueError('broken on purpose')): ValueError: broken on purpose) |"
            in summary)
    assert "| b_draws | ok |" in summary and "| 1 | example model: random weights |" in summary
    assert "| c_plain | ok |" in summary and "2 of 3 notebooks ran" in summary
    assert summary.split("# make demo\n\n", 1)[1] in done.stdout
    failed = json.loads((out / "notebooks" / "a_fails.ipynb").read_text())["cells"]
    assert failed[0]["outputs"][0]["text"] == ["before\n"]
    assert failed[1]["outputs"][0]["output_type"] == "error" and failed[2]["outputs"] == []  # stopped at the error
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["b_draws-01.png"]  # the stale figure is gone
    plain = json.loads((out / "notebooks" / "c_plain.ipynb").read_text())["cells"][0]["outputs"]
    saved = "".join(t for o in plain for t in o["text"])
    # bars go, the rest stays
    assert saved.count("warned") == 3 and "counting" not in saved and "\x1b" not in saved, saved
    assert (out / "figures" / "b_draws-01.png").read_bytes()[:4] == b"\x89PNG"


def test_alone_runs_each_notebook_from_the_wheel_in_an_empty_folder(tmp_path):
    """--alone, as on Colab: course_lib from a wheel installed apart, nothing of the checkout on sys.path or in the
    folder."""
    nbs, out = tmp_path / "nbs", tmp_path / "out"
    nbs.mkdir()
    (nbs / "beside.txt").write_text("a file of the checkout, beside the notebook")
    notebook(nbs / "a_alone.ipynb",
             "import os, sys, course_lib\nfrom pathlib import Path\nfrom course_lib.core import settings",
             f"root = Path({str(ROOT)!r})\n"
             "assert not Path(course_lib.__file__).resolve().is_relative_to(root), course_lib.__file__\n"
             "assert not [p for p in sys.path if p and Path(p).resolve() == root], sys.path\n"
             "assert sorted(os.listdir()) == ['a_alone.ipynb'] and settings.file is None, "
             "(os.listdir(), settings.file)\n"
             "assert settings.get_path('data_dir') == Path.cwd() / 'data'  # its own empty data folder",
             "from course_lib.latents import load_sample_scene\n"
             "assert load_sample_scene().shape == (3, 512, 512)  # package data")
    notebook(nbs / "b_reads_beside.ipynb", "x = 1", "# reads a file of the checkout\nopen('beside.txt').read()")
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "run_notebooks.py"), "--alone", "--out", str(out),
                           "--jobs", "2", str(nbs / "a_alone.ipynb"), str(nbs / "b_reads_beside.ipynb")],
                          capture_output=True, text=True, timeout=300,
                          env={"MPLBACKEND": "Agg", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 1, done.stdout + done.stderr
    summary = (out / "summary.md").read_text()
    assert "| a_alone | ok |" in summary, summary
    assert ("| b_reads_beside | FAILED (cell 2 (open('beside.txt').read()): FileNotFoundError: [Errno 2] "
            "No such file or directory: 'beside.txt') |") in summary, summary
    assert not (ROOT / "build").exists()  # building the wheel left nothing in the checkout
