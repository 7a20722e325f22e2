"""The course's exercises with their solutions, one module per chapter module, each with a dict `EXERCISES`.

Plain Python files, not notebooks: a notebook is a page, and the solutions must not be on one. A chapter asks for an
exercise with `course_lib.exercises.exercise("<chapter module>.<name>")`; `tests/test_exercises.py` checks every one
with its solution, each of its slips and its stub."""
