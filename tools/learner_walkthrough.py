"""Three exercises done as a learner does them, in JupyterLab in Chromium: open a chapter (a copy), Run All, then in the
chapter's Exercises answer wrong first, read the feedback, answer right. Screenshots and what each check said go to
output/browser/walkthrough-*.png and output/browser/walkthrough.json. Not a test (minutes of notebook runs); the
browser test `test_an_exercise_answers_a_wrong_answer_with_its_slip_then_a_right_one_in_green` is the one CI runs.

    python tools/learner_walkthrough.py
"""
import json, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from test_browser import SHOTS, CHROMIUM, Steps, answer_and_run, jupyterlab, kernel_ready, run_all  # noqa: E402

# (chapter, the check cell's first line, then (code, what the feedback starts with) wrong first, right last)
WALK_ALL = [
    ("03_text", "def sd_ids(word_ids):", [
        ("def sd_ids(word_ids):\n    ids = [49406] + list(word_ids) + [49407]\n"
         "    return ids + [49407] * (77 - len(ids))\n\npadding.check(sd_ids)", "✗"),
        ("def sd_ids(word_ids):\n    ids = [49406] + list(word_ids)[:75] + [49407]\n"
         "    return ids + [49407] * (77 - len(ids))\n\npadding.check(sd_ids)", "✓")]),
    ("02b_attention", "# how many times", [
        ("my_prediction = 0.125  # eight heads of 8 features: an eighth?\nheads.check(my_prediction)", "✗"),
        ("my_prediction = 8\nheads.check(my_prediction)", "✓")]),
    ("04b_widgets", "my_settings = ...", [
        ('my_settings = {"guidance_scale": 3.0, "negative_prompt": ""}\nsandals.check(my_settings)', "✗"),
        ('my_settings = {"guidance_scale": 2.0, "negative_prompt": "an ankle boot"}\n'
         'sandals.check(my_settings)', "✓")]),
]

WALK = [w for w in WALK_ALL if w[0] in sys.argv[1:]] or WALK_ALL  # chapters named on the command line, or all


class Folders:
    "What `jupyterlab` asks of pytest's tmp_path_factory: new folders."
    def mktemp(self, name: str) -> Path: return Path(tempfile.mkdtemp(prefix=f"{name}-"))


def every_cell_has_run(page, timeout_s: float = 900):
    "Wait until every code cell has a number, or a cell's error stopped Run All."
    page.wait_for_function("""() => {
        const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')].map(e => e.textContent);
        const failed = [...document.querySelectorAll('.jp-OutputArea-output')]
            .some(e => e.dataset.mimeType === 'application/vnd.jupyter.stderr' && e.innerText.includes('Traceback'));
        return failed || (prompts.length > 0 && prompts.every(t => /\\[\\d+\\]/.test(t))); }""",
                           timeout=timeout_s * 1000)


def main():
    from playwright.sync_api import sync_playwright
    said = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        for name, first_line, answers in WALK:  # a lab of its own each: no lab reopens the chapter before
            notebook = json.loads((ROOT / "nbs" / f"{name}.ipynb").read_text())
            with jupyterlab(Folders(), "walkthrough", {f"{name}.ipynb": notebook}) as (url, token):
                said += walk(browser, url, token, name, first_line, answers)
        browser.close()
    record = SHOTS / "walkthrough.json"  # the chapters not walked this time keep what they said before
    walked = {name for name, _, _ in WALK}
    before = [s for s in json.loads(record.read_text()) if s["chapter"] not in walked] if record.exists() else []
    record.write_text(json.dumps(before + said, indent=1, ensure_ascii=False))


def walk(browser, url: str, token: str, name: str, first_line: str, answers: list) -> list[dict]:
    "Open chapter `name`, Run All, then answer the exercise whose cell starts with `first_line`, one answer at a time."
    page, step, said = browser.new_page(viewport={"width": 1400, "height": 1000}), Steps(f"walkthrough_{name}"), []
    with step("open, Run All, every cell has run", 900):
        page.goto(f"{url}/lab/tree/{name}.ipynb?token={token}", timeout=90_000)
        page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=90_000)
        kernel_ready(page, step)
        start = time.time(); run_all(page); every_cell_has_run(page)
        print(f"{name}: Run All took {time.time() - start:.0f} s", flush=True)
        errors = [e for e in page.locator(".jp-OutputArea-output[data-mime-type="
                                          "'application/vnd.jupyter.stderr']").all_inner_texts() if "Traceback" in e]
        if errors:
            page.screenshot(path=SHOTS / f"walkthrough-{name}-stopped.png", full_page=True)
            raise RuntimeError(f"{name} stopped before its last cell: {errors[0][-500:]}")
    cells = page.locator(".jp-Notebook .jp-Cell")  # pinned by position: the answer will change its text
    cell = cells.nth(next(i for i, text in enumerate(cells.all_inner_texts()) if first_line in text))
    cell.scroll_into_view_if_needed()
    cell.screenshot(path=SHOTS / f"walkthrough-{name}-0-stub.png")
    for i, (code, expect) in enumerate(answers, 1):
        with step(f"answer {i}", 120):
            feedback = answer_and_run(page, cell, code, expect, timeout_s=120)
            cell.scroll_into_view_if_needed()
            cell.screenshot(path=SHOTS / f"walkthrough-{name}-{i}-{'wrong' if expect == '✗' else 'right'}.png")
        said.append({"chapter": name, "answer": code, "feedback": feedback})
        print(f"{name} answer {i}: {feedback}", flush=True)
    page.close()
    return said

if __name__ == "__main__":
    main()
