"""The lowest versions course_lib declares, as pins: one `name==version` line per `>=` bound in pyproject.toml's
dependencies and its `test` extra (torch left out: the tests use the lock's torch, see the Makefile).

    python tools/lowest.py  # print the pins
    make lock-lowest        # install them (the rest at its newest) in a venv of their own -> requirements/lowest.txt
    make test-lowest        # install requirements/lowest.txt in .venv-lowest and run the library's tests

tests/test_versions.py checks that requirements/lowest.txt pins every one of these at exactly its declared bound.
"""
import re, sys, tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LEFT_OUT = {"torch"}  # older CPU builds are a separate download: tested at the lock's version only


def declared_floors(pyproject: Path = ROOT / "pyproject.toml", extras=("test",)) -> dict[str, str]:
    "{name: lower bound} of every requirement with a `>=` bound in `dependencies` and `extras` (names normalised)."
    project = tomllib.loads(pyproject.read_text())["project"]
    lines = project["dependencies"] + [line for extra in extras for line in project["optional-dependencies"][extra]]
    floors = {}
    for line in lines:  # `name[extras]>=1.2,<2 ; marker`: read with a pattern, so that any Python can run this file
        name, specifiers = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*(?:\[[^]]*\])?\s*([^;]*)(?:;.*)?", line).groups()
        bounds = [spec.strip()[2:].strip() for spec in specifiers.split(",") if spec.strip().startswith(">=")]
        name = re.sub(r"[-_.]+", "-", name).lower()
        if bounds and name not in LEFT_OUT: floors[name] = bounds[0]
    return floors


if __name__ == "__main__":
    sys.stdout.write("".join(f"{name}=={version}\n" for name, version in declared_floors().items()))
