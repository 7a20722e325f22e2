"""The dependency ranges are true: requirements/lowest.txt pins every declared lower bound (make test-lowest runs the
tests on it), and importing course_lib names a library outside its range in one warning."""
import re, subprocess, sys, types
from pathlib import Path

import pytest
from packaging.version import Version

import course_lib.versions as versions

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from lowest import declared_floors  # noqa: E402


def pinned(path: Path) -> dict[str, str]:
    "{normalised name: version} of a pip requirements file of `name==version` lines."
    pins = {}
    for line in path.read_text().splitlines():
        if match := re.fullmatch(r"([A-Za-z0-9_.-]+)==([^\s;#]+).*", line.strip()):
            pins[re.sub(r"[-_.]+", "-", match[1]).lower()] = match[2]
    return pins


def test_lowest_file_pins_every_declared_lower_bound_exactly():
    floors, pins = declared_floors(), pinned(ROOT / "requirements/lowest.txt")
    assert {"diffusers", "transformers", "datasets", "accelerate", "numpy", "pandas", "pyarrow"} <= set(floors)
    wrong = {name: (floor, pins.get(name)) for name, floor in floors.items()
             if name not in pins or Version(pins[name]) != Version(floor)}
    assert not wrong, f"pyproject.toml's lower bound vs requirements/lowest.txt (run `make lock-lowest`): {wrong}"
    torch_in_makefile = re.search(r"^TORCH \?= torch==(\S+)", (ROOT / "Makefile").read_text(), re.M)[1]
    assert pins["torch"] == torch_in_makefile  # the lock's torch: older CPU builds are a separate download
    assert not [name for name in pins if name.startswith(("nvidia-", "cuda-"))], "a CUDA torch was frozen into the file"


def test_the_lowest_bounds_are_read_from_pyproject(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\ndependencies = ["torch>=2.4", '
                                              '"Foo_Bar[x]>=1.2,<2 ; python_version>\'3\'", "baz<3", "qux"]\n'
                                              '[project.optional-dependencies]\ntest = ["pytest>=8"]\n')
    assert declared_floors(tmp_path / "pyproject.toml") == {"foo-bar": "1.2", "pytest": "8"}  # torch left out


def test_this_environment_meets_every_range_with_every_module_imported():
    import course_lib.conditioning, course_lib.own_sd, course_lib.widgets  # noqa: F401 (loads every library)
    assert versions.declared_requirements(), "course_lib's metadata is missing: install it (make install)"
    assert versions.version_problems() == []


def test_a_library_upgraded_after_its_import_is_named_as_stale(monkeypatch):
    installed = versions.installed_version("diffusers")
    monkeypatch.setitem(sys.modules, "diffusers", types.SimpleNamespace(__version__="0.1.0"))
    problems = versions.version_problems()
    assert problems == [f"diffusers 0.1.0 is loaded but {installed} is installed (pip ran after it was imported): "
                        "restart the kernel (Colab: Runtime > Restart session) and run the notebook again."]


def test_a_local_build_tag_is_not_a_stale_module():
    "PyPI's CUDA torch: `torch.__version__` 2.11.0+cu130, metadata 2.11.0 (seen on the GPU machine); the same build."
    assert versions.stale_problem("torch", "2.11.0+cu130", "2.11.0") is None
    stale = versions.stale_problem("torch", "2.10.0+cu130", "2.11.0")
    assert stale.startswith("torch 2.10.0+cu130 is loaded but 2.11.0")


def fake_distribution(folder: Path, name: str, version: str):
    "A dist-info folder that `importlib.metadata` finds before the real one when `folder` comes first on sys.path."
    info = folder / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


def import_course_lib(pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home())} | ({"PYTHONPATH": str(pythonpath)} if pythonpath else {})
    return subprocess.run([sys.executable, "-c", "import course_lib"], capture_output=True, text=True, env=env,
                          timeout=120)


def test_importing_course_lib_warns_once_naming_a_library_outside_its_range(tmp_path):
    clean = import_course_lib()
    assert clean.returncode == 0 and "DependencyWarning" not in clean.stderr, clean.stderr
    fake_distribution(tmp_path, "diffusers", "0.30.0")
    result = import_course_lib(tmp_path)
    assert result.returncode == 0, result.stderr
    declared = next(r for r in versions.declared_requirements() if r.name == "diffusers").specifier
    assert result.stderr.splitlines() == [
        f"course_lib:0: DependencyWarning: diffusers 0.30.0 is outside the range course_lib is tested with "
        f"({declared}): pip install -U 'diffusers{declared}', then restart the kernel."]


@pytest.mark.parametrize("installed, expected", [(None, "transformers is not installed"), ("5.6.0", None),
                                                  ("4.57.6", "transformers 4.57.6 is outside")])
def test_each_version_problem_in_one_sentence(installed, expected):
    from packaging.requirements import Requirement
    problem = versions.version_problem(Requirement("transformers>=5.6"), installed)
    assert problem == expected if expected is None else problem.startswith(expected)
