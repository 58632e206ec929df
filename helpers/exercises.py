"""Checked exercises: a check cell tells the learner whether the answer is right.

Each exercise in a lesson has three cells: a starter the learner edits (it runs as given and
leaves the answer as ``None`` or an obvious placeholder), a folded solution, and a check cell
that calls ``check``. Checks use tolerances, not exact outputs, so any correct answer passes.

Example:
    >>> check("frozen stem", lambda: frozen_params(model) > 0, hint="call freeze_stages(model, 1)")
"""
from __future__ import annotations

from typing import Callable


class CheckFailed(AssertionError):
    pass


def check(name: str, condition: Callable[[], bool], hint: str = "", strict: bool = False) -> bool:
    """Print whether exercise ``name`` is solved; return True or False.

    ``condition`` is a function so that an unfinished answer (``None``, a missing variable)
    counts as "not yet" instead of crashing the notebook. With ``strict=True`` a failed check
    raises ``CheckFailed`` (the test suite uses that).
    """
    try:
        ok = bool(condition())
        why = ""
    except Exception as err:          # an unfinished answer: report it, don't crash the lesson
        ok, why = False, f" ({type(err).__name__}: {err})"
    if ok:
        print(f"✅ {name}: correct.")
    else:
        print(f"❌ {name}: not yet{why}." + (f" Hint: {hint}" if hint else ""))
        if strict:
            raise CheckFailed(name)
    return ok
