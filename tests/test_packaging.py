"Packaging: `pip install course_lib` gives everything course_lib imports, and nothing for authoring the notebooks."
import importlib.metadata as md, json, os, re, subprocess, sys, tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
AUTHORING = ("nbdev", "execnb", "jupyterlab", "jupyter_book", "sphinx", "playwright", "pytest")


def canonical(name: str) -> str: return re.sub(r"[-_.]+", "-", name).lower()


def runtime_distributions() -> set[str]:
    "The installed distributions that course_lib's runtime dependencies need, transitively (no extras)."
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    todo = [Requirement(r).name for r in project["dependencies"]]
    seen = set()
    while todo:
        name = canonical(todo.pop())
        if name in seen: continue
        try: dist = md.distribution(name)
        except md.PackageNotFoundError: continue  # an optional or platform-only requirement not installed here
        seen.add(name)
        todo += [r.name for r in map(Requirement, dist.requires or [])
                 if r.marker is None or r.marker.evaluate({"extra": ""})]
    return seen


def test_importing_every_module_needs_only_the_runtime_dependencies(tmp_path):
    # A site-packages that holds only the runtime set (links to what is installed here), and Python without its own.
    site = tmp_path / "site"; site.mkdir()
    for name in runtime_distributions():
        for file in md.distribution(name).files or []:
            top = file.parts[0]
            if top != ".." and not top.endswith(".pth") and not (site / top).exists():
                (site / top).symlink_to(md.distribution(name).locate_file(top))
    code = ("import importlib, pkgutil, course_lib\n"
            "modules = [m.name for m in pkgutil.iter_modules(course_lib.__path__, 'course_lib.')]\n"
            "for m in modules: importlib.import_module(m)\n"
            f"missing = [a for a in {AUTHORING!r} if importlib.util.find_spec(a) is None]\n"
            "print(len(modules), 'modules;', 'absent:', ' '.join(missing))")
    env = ({k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
           | {"PYTHONPATH": f"{site}{os.pathsep}{ROOT}"})
    result = subprocess.run([sys.executable, "-S", "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    count, absent = result.stdout.strip().split(" modules; absent: ")
    assert int(count) >= 12
    assert absent.split() == list(AUTHORING)  # the check really ran without them


def test_authoring_tools_are_extras_not_runtime_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {canonical(Requirement(r).name) for r in project["dependencies"]}
    assert not runtime & {"nbdev", "jupyterlab", "jupyter-book", "playwright", "pytest", "torchvision"}
    extras = project["optional-dependencies"]
    assert "nbdev" in {canonical(Requirement(r).name) for r in extras["notebooks"]}  # show_doc, for Colab
    assert {canonical(Requirement(r).name) for r in extras["lab"] + extras["docs"] + extras["notebooks"]} <= \
        {canonical(Requirement(r).name) for r in extras["dev"]}


def colab_tool():
    sys.path.insert(0, str(ROOT / "tools"))
    import colab
    return colab


def test_every_notebook_opens_in_colab_from_the_one_repository_setting():
    colab, url = colab_tool(), colab_tool().repository_url()
    assert url == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
    notebooks = sorted((ROOT / "nbs").glob("[0-9]*.ipynb"))
    assert {"01_conditioning.ipynb", "02_latents.ipynb", "03_text.ipynb", "04_sampling.ipynb",
            "05_own_sd.ipynb"} <= {p.name for p in notebooks}
    for path in notebooks:
        cells = json.loads(path.read_text())["cells"]
        title = next(i for i, c in enumerate(cells) if c["cell_type"] == "markdown")
        assert "".join(cells[title]["source"]).startswith("# "), path.name
        badge, install = ("".join(c["source"]) for c in cells[title + 1:title + 3])
        colab_url = url.replace("https://github.com/", "https://colab.research.google.com/github/")
        assert f"({colab_url}/blob/main/nbs/{path.name})" in badge and "colab-badge.svg" in badge, path.name
        assert cells[title + 2]["cell_type"] == "code" and f'git+{url}"' in install, path.name
        first_code = next(c for c in cells if c["cell_type"] == "code")
        assert first_code is cells[title + 2], f"{path.name}: install cell first"
    assert colab.stale() == []
    assert f"git+{url}" in (ROOT / "README.md").read_text()


def test_the_install_cell_installs_on_colab_only(monkeypatch):
    from IPython.core.inputtransformer2 import TransformerManager
    code = TransformerManager().transform_cell(colab_tool().install_source("https://github.com/owner/repo"))
    calls = []
    shell = type("Shell", (), {"run_line_magic": lambda self, name, line: calls.append((name, line))})()
    exec(code, {"get_ipython": lambda: shell})
    assert calls == []  # not on Colab: nothing happens
    monkeypatch.setitem(sys.modules, "google.colab", type(sys)("google.colab"))
    exec(code, {"get_ipython": lambda: shell})
    assert calls == [("pip", 'install -q "course_lib[notebooks] @ git+https://github.com/owner/repo"')]


def test_colab_tool_refuses_a_repository_that_is_not_on_github(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project.urls]\nRepository = "https://example.com/x"\n')
    with pytest.raises(ValueError, match="Repository must be https://github.com/<owner>/<repo>"):
        colab_tool().repository_url(tmp_path)
