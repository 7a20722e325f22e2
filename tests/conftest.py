import os
from pathlib import Path

import pytest

from course_lib.models import PACKAGED_CLIP_BPE

ROOT = Path(__file__).resolve().parent.parent
LABELS_VAR = "FASHION_MNIST_LABELS_DIR"  # .ci/run sets it to ../shared/data/fashion-mnist


def fashion_label_file(name: str) -> Path:
    "An official Fashion-MNIST label file from the folder `$FASHION_MNIST_LABELS_DIR` names; skipped when it is unset."
    folder = os.environ.get(LABELS_VAR)
    if not folder:
        pytest.skip(f"needs the official Fashion-MNIST label files (train-labels-idx1-ubyte.gz and "
                    f"t10k-labels-idx1-ubyte.gz from github.com/zalandoresearch/fashion-mnist): set {LABELS_VAR} "
                    "to their folder")
    path = Path(folder) / name
    if not path.is_file(): pytest.fail(f"{LABELS_VAR}={folder} holds no {name}")  # named but wrong: never a skip
    return path


@pytest.fixture(scope="session")
def bpe_path() -> Path:
    "CLIP's merge list as shipped inside course_lib."
    return PACKAGED_CLIP_BPE


@pytest.fixture
def offline_hub(monkeypatch):
    "The Hub switched off the way a learner without network would: HF_HUB_OFFLINE=1."
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true",
                     help="also run the tests marked slow (CI does: COURSE_RUN_SLOW_TESTS=1)")


def pytest_collection_modifyitems(config, items):
    "Tests marked slow run with --run-slow or COURSE_RUN_SLOW_TESTS=1, else they are skipped, saying how to run them."
    if config.getoption("--run-slow") or os.environ.get("COURSE_RUN_SLOW_TESTS") == "1": return
    skip = pytest.mark.skip(reason="slow: run with `pytest --run-slow` (or COURSE_RUN_SLOW_TESTS=1)")
    for item in items:
        if "slow" in item.keywords: item.add_marker(skip)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    "Keep each phase's report on the test (`item.report_call`), so a fixture's teardown knows whether the test failed."
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report
