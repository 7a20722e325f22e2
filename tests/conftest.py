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
