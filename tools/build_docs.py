"""Build the course's docs site with Jupyter Book from the notebooks as `make demo` executed them (figures included).

    python tools/build_docs.py [--notebooks output/notebooks] [--out _docs]

Pages, in the README's reading order: the README as the home page, the chapters, the foundation (00_*) as reference,
then one API reference page per module, written by Sphinx's autodoc from the docstrings of everything in its `__all__`.
Search comes with the theme. The notebooks are taken as executed (nothing is run again); nbdev's `#|` directives are
stripped the way nbdev does (fastcore's `remove_directives`), and the cells nbdev hides from its docs (`#| hide`,
`#| default_exp`) are left out. Every Sphinx warning, a broken link between pages included, fails the build. The site:
<out>/html/index.html.
"""
import argparse, json, re, shutil, subprocess, sys, time, tomllib
from pathlib import Path

from fastcore.nbio import read_nb, write_nb

ROOT = Path(__file__).resolve().parent.parent
HIDDEN = {"hide", "default_exp"}  # what nbdev leaves out of its docs


def notebook_module(path: Path) -> str | None:
    "The module a notebook exports (its `#| default_exp`), or None."
    for cell in read_nb(path).cells:
        if cell.cell_type == "code" and "default_exp" in cell.directives:
            return cell.directives["default_exp"].split()[0]
    return None


def docs_notebook(executed: Path, dest: Path):
    "Copy an executed notebook for the docs: directives stripped, hidden cells left out; refuse one that failed."
    nb = read_nb(executed)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    if errors:
        raise SystemExit(f"{executed.name} failed when it was executed ({errors[0]['ename']}): run `make demo` again")
    kept = []
    for cell in nb.cells:
        if cell.cell_type == "code":
            if HIDDEN & set(cell.directives): continue
            cell.remove_directives()
            for output in cell.get("outputs", []):
                markdown = output.get("data", {}).get("text/markdown")
                if markdown:  # show_doc's rule above each entry: docutils allows rules only between sections
                    text = "".join(markdown)
                    output["data"]["text/markdown"] = text[3:].lstrip("\n") if text.startswith("---\n") else text
        elif "(index.ipynb)" in cell.source:  # the course's home page is README.md, rendered from index.ipynb
            cell.set_source(cell.source.replace("(index.ipynb)", "(index.md)"))
        kept.append(cell)
    nb.cells = kept
    write_nb(nb, dest)


def book_config(title: str, repository: str) -> str:
    return json.dumps({
        "title": title, "author": "the course's authors", "only_build_toc_files": True,
        "execute": {"execute_notebooks": "off"},  # the notebooks come executed, by `make demo`
        "repository": {"url": repository, "branch": "main"},
        "html": {"use_repository_button": True, "home_page_in_navbar": True},
        "sphinx": {"extra_extensions": ["sphinx.ext.autodoc"],
                   "config": {"autodoc_member_order": "bysource", "autodoc_typehints": "signature",
                              "html_show_copyright": False, "nb_merge_streams": True,
                              # show_doc's source links carry Quarto attributes ({target=...}): read them as attributes
                              "myst_enable_extensions": ["attrs_inline", "colon_fence", "dollarmath"]}}},
        indent=1)


def reading_order(sources: list[Path]) -> list[Path]:
    """The chapters by name, then the foundation in the order of the README's table (nbs/index.ipynb), as the README
    reads."""
    index = "".join("".join(c["source"]) for c in json.loads((ROOT / "nbs" / "index.ipynb").read_text())["cells"])
    table = re.findall(r"^\| `(00_\w+)` \|", index, re.M)
    rank = lambda p: (p.name.startswith("00_"), table.index(p.stem) if p.stem in table else len(table), p.name)
    return sorted(sources, key=rank)


def build(notebooks: Path, out: Path) -> Path:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    src = out / "src"
    shutil.rmtree(src, ignore_errors=True); (src / "api").mkdir(parents=True)
    (src / "index.md").write_text((ROOT / "README.md").read_text(encoding="utf-8"), encoding="utf-8")
    sources = reading_order(sorted((ROOT / "nbs").glob("[0-9]*.ipynb")))
    missing = [p.name for p in sources if not (notebooks / p.name).exists()]
    if missing: raise SystemExit(f"No executed copy of {', '.join(missing)} in {notebooks}: run `make demo` first")
    parts = {"The chapters (start here)": [], "The foundation (reference)": [], "API reference": []}
    for path in sources:
        docs_notebook(notebooks / path.name, src / path.name)
        part = "The foundation (reference)" if path.name.startswith("00_") else "The chapters (start here)"
        parts[part].append(path.stem)
        if module := notebook_module(path):
            (src / "api" / f"{module}.md").write_text(
                f"# course_lib.{module}\n\nFrom the notebook [{path.stem}](../{path.name}).\n\n"
                f"```{{eval-rst}}\n.. automodule:: course_lib.{module}\n   :members:\n```\n", encoding="utf-8")
            parts["API reference"].append(f"api/{module}")
    toc = ["format: jb-book", "root: index", "parts:"]
    for caption, files in parts.items():
        toc += [f"- caption: {caption}", "  chapters:"] + [f"  - file: {f}" for f in files]
    (src / "_toc.yml").write_text("\n".join(toc) + "\n")
    (src / "_config.yml").write_text(book_config(project["tool"]["nbdev"]["title"],
                                                 project["project"]["urls"]["Repository"]))
    shutil.rmtree(out / "html", ignore_errors=True)
    build_dir = out / "build"
    command = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(src), "--path-output", str(build_dir),
               "--warningiserror", "--keep-going", "--quiet"]
    result = subprocess.run(command, cwd=ROOT, text=True, capture_output=True)
    if result.returncode != 0:
        print(result.stdout[-6000:], result.stderr[-6000:], sep="\n")
        raise SystemExit("The docs build failed (warnings count as failures): see above")
    shutil.move(build_dir / "_build" / "html", out / "html")
    return out / "html"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--notebooks", default=str(ROOT / "output" / "notebooks"),
                        help="the executed notebooks (make demo)")
    parser.add_argument("--out", default=str(ROOT / "_docs"))
    args = parser.parse_args()
    start = time.perf_counter()
    site = build(Path(args.notebooks).resolve(), Path(args.out).resolve())
    pages = sorted(p.relative_to(site) for p in site.rglob("*.html")
                   if p.parent.name != "_static" and p.name not in ("genindex.html", "search.html"))
    print(f"Docs site: {site / 'index.html'} ({len(pages)} pages, built in {time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
