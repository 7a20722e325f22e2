"""The house rules a newcomer relies on, read from the code: rooms of one job and a readable size, small export cells,
every public function shown where it is defined, every notebook ending with what you learned and where to go next.
The module map (who imports whom) prints with `python tests/test_house.py`."""
import ast, json, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "nbs").glob("[0-9]*.ipynb"))
MODULES = sorted(p for p in (ROOT / "course_lib").glob("*.py") if not p.name.startswith("_"))
MAX_MODULE_LINES, MAX_EXPORT_LINES = 350, 20


def cells(path: Path) -> list[tuple[str, str]]:
    return [(c["cell_type"], "".join(c["source"])) for c in json.loads(path.read_text())["cells"]]


def flags(source: str) -> set[str]:
    return {m for line in source.splitlines() if line.startswith("#|") for m in line[2:].split()}


def public_definitions(source: str) -> list[str]:
    "Names of the public functions and classes an export cell defines at top level."
    body = "\n".join(line for line in source.splitlines() if not line.startswith("#|"))
    return [node.name for node in ast.parse(body).body
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_")
            and not any(isinstance(d, ast.Call) and getattr(d.func, "id", "") == "patch"
                        or getattr(d, "id", "") == "patch" for d in node.decorator_list)]


def test_no_module_is_longer_than_a_reader_can_hold():
    long = {p.name: n for p in MODULES if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_no_export_cell_is_longer_than_a_screen():
    long = [(nb.name, src.splitlines()[1][:60], len(src.splitlines()) - 1)
            for nb in NOTEBOOKS for kind, src in cells(nb)
            if kind == "code" and "export" in flags(src) and len(src.splitlines()) - 1 > MAX_EXPORT_LINES]
    assert not long, f"export cells over {MAX_EXPORT_LINES} lines (notebook, first line, lines): {long}"


def test_every_public_function_is_shown_where_it_is_defined():
    "A visible `show_doc(name)` anywhere in its notebook, or a visible cell that calls it before the next export cell."
    missing = []
    for nb in NOTEBOOKS:
        all_cells = cells(nb)
        shown = {m for kind, src in all_cells if kind == "code" and "hide" not in flags(src)
                 for m in re.findall(r"show_doc\(([\w.]+)", src)}
        for i, (kind, src) in enumerate(all_cells):
            if kind != "code" or "export" not in flags(src): continue
            after = []
            for kind2, src2 in all_cells[i + 1:]:
                if kind2 == "code" and "export" in flags(src2): break
                if kind2 == "code" and "hide" not in flags(src2): after.append(src2)
            for name in public_definitions(src):
                if name not in shown and not any(re.search(rf"\b{name}\b", a) for a in after):
                    missing.append(f"{nb.name}: {name}")
    assert not missing, ("public functions neither shown (show_doc) nor used in a visible cell after them:\n"
                         + "\n".join(missing))


def test_every_notebook_ends_with_what_you_learned_and_where_to_go_next():
    "A summary after the notebook's last export cell (then, in a chapter, its exercises), and a last word on what next."
    bad = []
    for nb in NOTEBOOKS:
        all_cells = cells(nb)
        last_export = max(i for i, (kind, src) in enumerate(all_cells) if kind == "code" and "export" in flags(src))
        tail = [src for kind, src in all_cells[last_export:] if kind == "markdown"]
        summary = any(re.search(r"^## (Summary|What you learned)", src, re.M) for src in tail)
        if not (summary and re.search(r"\bnext\b", tail[-1], re.I) and "](" in tail[-1]): bad.append(nb.name)
    assert not bad, f"notebooks without a closing summary, or whose last markdown cell says nothing of what next: {bad}"


def imports_of(path: Path) -> dict[str, list[str]]:
    "course_lib module -> the names `path` imports from it."
    found = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            found.setdefault(node.module, []).extend(a.name for a in node.names)
    return found


def test_the_foundation_never_imports_a_chapter():
    foundation = {nb.stem.split("_", 1)[1] for nb in NOTEBOOKS if nb.name.startswith("00_")}
    wrong = {p.stem: sorted(set(imports_of(p)) - foundation) for p in MODULES if p.stem in foundation}
    assert not any(wrong.values()), f"foundation modules importing chapter modules: {wrong}"


def test_the_foundation_table_lists_each_module_below_what_it_imports():
    "The README's foundation table (from nbs/index.ipynb) is a reading order: a module imports only those above it."
    index = "".join(src for _, src in cells(ROOT / "nbs" / "index.ipynb"))
    order = re.findall(r"^\| `00_\w+` \| `course_lib\.(\w+)`", index, re.M)
    assert sorted(order) == sorted(nb.stem.split("_", 1)[1] for nb in NOTEBOOKS if nb.name.startswith("00_"))
    late = [(m, dep) for i, m in enumerate(order) for dep in imports_of(ROOT / "course_lib" / f"{m}.py")
            if dep in order[i:]]
    assert not late, f"foundation modules listed above a module they import (module, import): {late}"


if __name__ == "__main__":
    for p in MODULES:
        lines = len(p.read_text().splitlines())
        print(f"{p.stem} ({lines} lines)")
        for module, names in sorted(imports_of(p).items()): print(f"    <- {module}: {', '.join(names)}")
    sys.exit(0)
