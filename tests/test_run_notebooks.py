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
    notebook(nbs / "c_plain.ipynb", "x = 1")  # three notebooks for two workers: one of them runs two in turn
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "run_notebooks.py"), "--out", str(out), "--jobs", jobs,
                           str(nbs / "a_fails.ipynb"), str(nbs / "b_draws.ipynb"), str(nbs / "c_plain.ipynb")],
                          capture_output=True, text=True, timeout=300, env={"MPLBACKEND": "Agg", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 1, done.stdout + done.stderr
    summary = (out / "summary.md").read_text()
    assert "| a_fails | FAILED (ValueError: broken on purpose) |" in summary
    assert "| b_draws | ok |" in summary and "| 1 | example model: random weights |" in summary
    assert "| c_plain | ok |" in summary and "2 of 3 notebooks ran" in summary and summary.split("# make demo\n\n", 1)[1] in done.stdout
    failed = json.loads((out / "notebooks" / "a_fails.ipynb").read_text())["cells"]
    assert failed[0]["outputs"][0]["text"] == ["before\n"]
    assert failed[1]["outputs"][0]["output_type"] == "error" and failed[2]["outputs"] == []  # stopped at the error
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["b_draws-01.png"]  # the stale figure is gone
    assert (out / "figures" / "b_draws-01.png").read_bytes()[:4] == b"\x89PNG"
