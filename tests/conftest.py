import os
from pathlib import Path

import pytest

from course_lib.core import settings

ROOT = Path(__file__).resolve().parent.parent


def reference_file(*parts) -> Path:
    "A file under the reference folder (settings: reference_dir); skipped locally when absent, a failure on CI."
    path = settings.get_path("reference_dir").joinpath(*parts)
    if not path.is_file():
        message = f"reference file {path} is missing: set COURSE_REFERENCE_DIR to the shared data folder"
        if os.environ.get("CI"): pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def bpe_path() -> Path:
    path = settings.get_path("clip_bpe")
    return path if path.is_file() else reference_file("clip", "bpe_simple_vocab_16e6.txt.gz")


@pytest.fixture
def offline_hub(monkeypatch):
    "The Hub switched off the way a learner without network would: HF_HUB_OFFLINE=1."
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
