"""Make the course's notebooks Colab-ready, from one setting: the `Repository` URL in pyproject.toml's [project.urls].

    python tools/colab.py          # write the badge and the install cell into nbs/[0-9]*.ipynb, and README's Colab
                                   # line
    python tools/colab.py --check  # exit 1 naming each notebook that is not Colab-ready or is out of date (`make test`)

Each numbered notebook gets, right after its title cell, an "Open in Colab" badge (a markdown cell) and an install
cell that runs `%pip install` only on Colab (`"google.colab" in sys.modules`), keeping Colab's own torch: course_lib
asks for `torch>=2.4`, which Colab's satisfies, and never for torchvision. The `notebooks` extra adds nbdev, whose
`show_doc` the notebooks call. The Colab paragraph of nbs/index.ipynb (README's source) names the same URL.
"""
import argparse, json, re, sys, tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BADGE_ID, INSTALL_ID = "colab-badge", "colab-install"
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"


def repository_url(root: Path = ROOT) -> str:
    "The course's repository on GitHub: pyproject.toml's [project.urls] Repository, the one place it is written."
    url = tomllib.loads((root / "pyproject.toml").read_text())["project"]["urls"]["Repository"].rstrip("/")
    if not re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url):
        raise ValueError(f"[project.urls] Repository must be https://github.com/<owner>/<repo>, got {url!r}")
    return url


def badge_source(url: str, notebook: str) -> str:
    "The markdown of `notebook`'s badge: it opens nbs/`notebook` of `url`'s main branch in Colab."
    colab = url.replace("https://github.com/", "https://colab.research.google.com/github/")
    return f"[![Open In Colab]({COLAB_BADGE})]({colab}/blob/main/nbs/{notebook})"


def install_source(url: str) -> str:
    "The install cell: a no-op outside Colab."
    return ("# On Colab only: install course_lib. pip keeps Colab's own libraries (its CUDA torch too) where they fit\n"
            "# course_lib's ranges and upgrades the rest; `import course_lib` names any still out of range. "
            "Elsewhere: nothing.\n"
            "import sys\n"
            "if \"google.colab\" in sys.modules:\n"
            f"    %pip install -q \"course_lib[notebooks] @ git+{url}\"")


def colab_paragraph(url: str) -> str:
    "README's Colab paragraph (in nbs/index.ipynb)."
    return ("**Colab**: every notebook opens in Colab from the \"Open in Colab\" badge under its title; "
            "its first code cell\n"
            f"installs the course there (`%pip install -q \"course_lib[notebooks] @ git+{url}\"`) and does nothing\n"
            "anywhere else. Colab's own CUDA torch is kept: the package asks for `torch>=2.4` "
            "and never for torchvision.\n"
            "**Which versions a Colab runtime gets**: its own wherever they fit the ranges in `pyproject.toml`, "
            "the newest\n"
            "in range where they do not (pip upgrades them). Each range is tested at both ends: "
            "`make test` at the lock\n"
            "(`requirements/constraints.txt`), `make test-lowest` at every lower bound "
            "(`requirements/lowest.txt`; the\n"
            "comment beside each bound says what broke below it). `import course_lib` checks what is installed and\n"
            "names each library outside its range in one warning line, or one that pip upgraded after the kernel had\n"
            "imported it (then restart the session); `course_lib.versions.version_table()` lists them all. ")


def cell(kind: str, cell_id: str, source: str) -> dict:
    lines = source.split("\n")
    c = {"cell_type": kind, "id": cell_id, "metadata": {},
         "source": [line + "\n" for line in lines[:-1]] + [lines[-1]]}
    return c | ({"execution_count": None, "outputs": []} if kind == "code" else {})


def colab_ready(nb: dict, notebook: str, url: str) -> dict:
    "`nb` with its badge and install cell (re)written right after the title cell; everything else as it was."
    cells = [c for c in nb["cells"] if c.get("id") not in (BADGE_ID, INSTALL_ID)]
    title = next(i for i, c in enumerate(cells)
                 if c["cell_type"] == "markdown" and "".join(c["source"]).startswith("# "))
    cells[title + 1:title + 1] = [cell("markdown", BADGE_ID, badge_source(url, notebook)),
                                  cell("code", INSTALL_ID, install_source(url))]
    return nb | {"cells": cells}


def readme_ready(nb: dict, url: str) -> dict:
    "nbs/index.ipynb with its Colab paragraph naming `url`."
    pattern = re.compile(r"\*\*Colab\*\*:.*?(?=\*\*Your own CUDA machine\*\*)", re.S)
    cells = []
    for c in nb["cells"]:
        text = "".join(c["source"])
        if c["cell_type"] == "markdown" and pattern.search(text):
            c = cell("markdown", c["id"], pattern.sub(lambda m: colab_paragraph(url), text))
        cells.append(c)
    if not any(pattern.search("".join(c["source"])) for c in cells):
        raise ValueError("nbs/index.ipynb has no '**Colab**: ... **Your own CUDA machine**' paragraph to update")
    return nb | {"cells": cells}


def planned(root: Path = ROOT) -> dict[Path, dict]:
    "Every notebook this tool owns a part of, as it should be, by path."
    url, nbs = repository_url(root), root / "nbs"
    out = {p: colab_ready(json.loads(p.read_text()), p.name, url) for p in sorted(nbs.glob("[0-9]*.ipynb"))}
    out[nbs / "index.ipynb"] = readme_ready(json.loads((nbs / "index.ipynb").read_text()), url)
    return out


def stale(root: Path = ROOT) -> list[str]:
    "The notebooks whose badge, install cell or Colab paragraph differ from what `planned` writes."
    return [p.name for p, nb in planned(root).items() if nb != json.loads(p.read_text())]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a notebook is not up to date")
    args = parser.parse_args()
    if args.check:
        if names := stale():
            print(f"Not Colab-ready or out of date (run `python tools/colab.py`): {', '.join(names)}"); return 1
        print(f"Every notebook is Colab-ready for {repository_url()}."); return 0
    for path, nb in planned().items():
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"Wrote the Colab badge and install cell for {repository_url()}; now run nbdev-clean and make readme.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
