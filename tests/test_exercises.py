"""Every exercise of the course, checked the way a learner meets it: its solution passes, each slip it lists fails with
its own message, and the stub as shipped is "not attempted yet". Challenges measure a model, so theirs are slow tests.
How long each check takes is measured by `python bench/exercises.py`, not here: these machines are shared and noisy."""
import importlib, re
from pathlib import Path

import pytest

from course_lib.exercises import Exercise, exercise, exercise_keys

KEYS = exercise_keys()
CHAPTERS = sorted({key.split(".")[0] for key in KEYS})
QUICK = [key for key in KEYS if exercise(key).kind != "challenge"]
CHALLENGES = [key for key in KEYS if exercise(key).kind == "challenge"]


def stubs(ex: Exercise) -> list:
    "What a learner leaves untouched: `...`, and for a function, a body of `...` or `raise NotImplementedError`."
    if ex.kind != "write": return [...]
    def ellipsis_body(*args): ...
    def not_implemented(*args): raise NotImplementedError("write me")
    return [..., ellipsis_body, not_implemented]


def test_the_course_has_exercises_and_each_key_finds_its_own():
    assert len(KEYS) >= 21
    for chapter in CHAPTERS: importlib.import_module(f"course_lib.{chapter}")  # each is named for its chapter's module
    for key in KEYS: assert exercise(key).key == key


CHAPTER_NOTEBOOKS = sorted(Path(__file__).resolve().parent.parent.glob("nbs/0[1-9]*.ipynb"))


@pytest.mark.parametrize("notebook", CHAPTER_NOTEBOOKS, ids=lambda path: path.stem)
def test_every_chapter_asks_each_kind_and_shows_each_of_its_exercises(notebook):
    text = notebook.read_text()
    module = re.search(r"#\| default_exp (\w+)", text).group(1)
    keys = [key for key in KEYS if key.split(".")[0] == module]
    assert {exercise(key).kind for key in keys} == {"write", "predict", "challenge"}, (module, keys)
    for key in keys: assert f'exercise(\\"{key}\\")' in text, f"{notebook.name} never asks {key}"


@pytest.mark.parametrize("key", QUICK)
def test_a_solution_passes_each_slip_is_named_and_a_stub_is_not_attempted(key):
    ex = exercise(key)
    feedback = ex.check(ex.reference)
    assert feedback.ok, feedback
    assert ex.slips, f"{key} names no slip"
    for slip in ex.slips:
        feedback = ex.check(slip.answer)
        assert (feedback.status, feedback.slip, feedback.message) == ("wrong", slip.name, slip.message), feedback
    for stub in stubs(ex):
        assert ex.check(stub).status == "not attempted"


@pytest.mark.slow
@pytest.mark.parametrize("key", CHALLENGES)
def test_a_challenge_is_met_by_its_solution_and_each_rule_is_named(key):
    ex = exercise(key)
    feedback = ex.check(ex.reference)
    assert feedback.ok, feedback
    for slip in ex.slips:
        assert ex.check(slip.answer).slip == slip.name
    assert ex.check(...).status == "not attempted"


def test_hints_come_one_per_call_and_a_solution_shows_its_code_and_why():
    ex = exercise(QUICK[0])
    shown = [ex.hint().text for _ in range(len(ex.hints) + 1)]
    n = len(ex.hints)
    assert [text.split(":")[0] for text in shown] == [f"Hint {i + 1} of {n}" for i in range(n)] + [f"Hint {n} of {n}"]
    assert exercise(QUICK[0]).hint().text.startswith("Hint 1")  # a fresh copy starts again
    solution = ex.solution().text
    assert "```python" in solution and ex.why in solution


def test_an_exercise_shows_its_question_with_the_hints_folded():
    ex = exercise(QUICK[0])
    shown = ex._repr_markdown_()
    assert ex.question in shown and shown.count("<details>") == len(ex.hints)
    assert "def " not in shown and ex.why not in shown  # no solution on the page
