"""What several chapters' checks share: numbers compared within a tolerance, predictions that fall in a range, answers
that break a challenge's rule, and the rules of a sampler recipe, the dict `{"scheduler", "steps", "guidance_scale"}`
that four challenges ask for."""
import math

import numpy as np
import torch

from course_lib.exercises import Slip
from course_lib.models import SCHEDULERS


def is_number(x) -> bool: return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def is_count(x) -> bool: return isinstance(x, int) and not isinstance(x, bool) and x >= 1


def as_number(got) -> float | None:
    "`got` as a Python float if it is a real number (a NumPy or one-element torch scalar too), else None."
    if isinstance(got, torch.Tensor) and got.numel() == 1: got = got.item()
    if isinstance(got, np.ndarray) and got.size == 1: got = got.item()
    return float(got) if isinstance(got, (int, float, np.integer, np.floating)) and not isinstance(got, bool) else None


def scalar_difference(expected, got, rtol: float = 1e-4) -> str | None:
    "A `compare` for a function that returns one number: None if `got` is `expected` within `rtol`, else how it differs."
    if isinstance(got, torch.Tensor) and got.numel() != 1:
        return f"expected one number, got a tensor of shape {tuple(got.shape)}"
    if (value := as_number(got)) is None: return f"expected a number, got {type(got).__name__}"
    expected = float(expected)
    if math.isclose(value, expected, rel_tol=rtol, abs_tol=1e-9): return None
    return f"expected {expected:.5g}, got {value:.5g} ({value / expected:.3g} times the right value)"


def absolute_difference(tolerance: float):
    "A `compare` for a predicted number: None within `tolerance` of the expected one, else which way it is off."
    return lambda expected, got: (f"expected a number, got {type(got).__name__}" if not is_number(got)
                                  else None if abs(got - expected) <= tolerance
                                  else f"{got:g} is too {'high' if got > expected else 'low'}")


def number_in(low: float, high: float):
    "A slip's `detect`: the prediction is a number from `low` to `high`."
    return lambda got, expected: is_number(got) and low <= got <= high


def pair_difference(names: tuple[str, str], answer_with: str):
    "A `compare` for a predicted pair of counts named `names`: None if it is the expected pair, else which is off."
    def difference(expected, got) -> str | None:
        if not isinstance(got, (tuple, list)) or len(got) != 2 or not all(is_number(n) for n in got):
            return f"answer with {answer_with}; got {got!r}"
        wrong = [f"{name}: {n:g} is too {'high' if n > e else 'low'}"
                 for name, n, e in zip(names, got, expected) if n != e]
        return "; ".join(wrong) or None
    return difference


def breaks(rule, malformed):
    "A challenge slip's `detect`: a well-formed answer (not `malformed`) for which `rule(answer)` is true."
    return lambda answer, expected=None: not malformed(answer) and bool(rule(answer))


def not_a_recipe(answer, expected=None) -> bool:
    "Not a dict with the keys 'scheduler', 'steps' and 'guidance_scale'."
    return not (isinstance(answer, dict) and {"scheduler", "steps", "guidance_scale"} <= set(answer))


def valid_recipe(answer, max_steps: int) -> bool:
    "A recipe within the rules that need no sampling: a known scheduler, 1 to `max_steps` steps, a scale of 0 or more."
    return (not not_a_recipe(answer) and answer["scheduler"] in SCHEDULERS and is_count(answer["steps"])
            and answer["steps"] <= max_steps and is_number(answer["guidance_scale"]) and answer["guidance_scale"] >= 0)


def recipe_slips(max_steps: int, enough_steps: int, why_fewer: str) -> tuple[Slip, ...]:
    """The rules of a sampler-recipe challenge, as slips in the order they are checked: a dict, a whole number of
    steps, a scale, at most `max_steps` steps (`enough_steps` and `why_fewer` make the example and say why), a
    scheduler `make_scheduler` knows."""
    return (Slip("not a dict", "answer with a dict with the keys 'scheduler', 'steps' and 'guidance_scale'",
                 {"steps": max_steps}, not_a_recipe),
            Slip("steps not a count", "'steps' must be a whole number of steps, 1 or more",
                 {"scheduler": "ddim", "steps": max_steps - 0.5, "guidance_scale": 1.5},
                 breaks(lambda answer: not is_count(answer["steps"]), not_a_recipe)),
            Slip("guidance not a scale", "'guidance_scale' must be a number, 0 or more (1: no guidance)",
                 {"scheduler": "ddim", "steps": max_steps, "guidance_scale": "low"},
                 breaks(lambda answer: not (is_number(answer["guidance_scale"]) and answer["guidance_scale"] >= 0),
                        not_a_recipe)),
            Slip("too many steps", f"the challenge allows at most {max_steps} steps ({why_fewer})",
                 {"scheduler": "ddim", "steps": enough_steps, "guidance_scale": 3.0},
                 breaks(lambda answer: is_count(answer["steps"]) and answer["steps"] > max_steps, not_a_recipe)),
            Slip("unknown scheduler", f"the scheduler must be one of {', '.join(SCHEDULERS)} (`make_scheduler`'s names)",
                 {"scheduler": "karras", "steps": max_steps, "guidance_scale": 3.0},
                 breaks(lambda answer: answer["scheduler"] not in SCHEDULERS, not_a_recipe)))
