"""Checked exercises: a check cell tells the learner whether the answer is right.

Each exercise in a lesson has three cells: a starter the learner edits (it runs as given and
leaves the answer as ``None`` or an obvious placeholder), a check cell that calls ``check``, and
the solution, a markdown cell folded in a ``<details>`` element, which "Run All" never runs. A
check computes what it needs itself and judges the learner's variables, so after "Run All" with
the exercise untouched it says "not yet"; it uses a tolerance where a correct answer may differ
(a seed of the learner's choice), so any correct answer passes.

Example:
    >>> check("frozen stem", lambda: frozen_params(model) > 0, hint="call freeze_stages(model, 1)")
"""
from __future__ import annotations

from typing import Callable


class CheckFailed(AssertionError):
    pass


class Verdict:
    """The outcome of a ``check``: true when the exercise is solved, false when not yet.

    It behaves like a bool (``if check(...)``, ``check(...) == True``), but as a cell's last value
    it displays nothing: the printed line is the verdict, shown once (no ``Out: True`` under it).
    """

    __slots__ = ("name", "ok")

    def __init__(self, name: str, ok: bool):
        self.name, self.ok = name, bool(ok)

    def __bool__(self) -> bool:
        return self.ok

    def __eq__(self, other) -> bool:
        return self.ok == bool(other) if isinstance(other, (bool, Verdict)) else NotImplemented

    def __hash__(self) -> int:
        return hash(self.ok)

    def __repr__(self) -> str:
        return f"Verdict({self.name!r}, ok={self.ok})"

    def _ipython_display_(self):
        """IPython shows nothing for this value: the check already printed its verdict."""


def check(name: str, condition: Callable[[], bool], hint: str = "", strict: bool = False) -> Verdict:
    """Print whether exercise ``name`` is solved; return a ``Verdict`` (true or false like a bool).

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
    return Verdict(name, ok)


def keeps_pretrained_backbone(model) -> bool:
    """Whether every parameter of ``model`` outside its head equals the cached pre-trained
    checkpoint's (lesson 01's model): what a check asks of "a fresh pre-trained model with a new
    head", and what a randomly initialised model fails."""
    import torch

    from .models import pretrained_image_model

    reference, _ = pretrained_image_model(verbose=False)
    head = {id(p) for p in reference.get_classifier().parameters()}
    mine = dict(model.named_parameters())
    return all(name in mine and torch.equal(mine[name].detach().cpu(), p.detach().cpu())
               for name, p in reference.named_parameters() if id(p) not in head)
