"""Registered claims: sentences about a lesson's results, checked against the results file.

A lesson that says "fine-tuning beats training from scratch" registers that sentence as a
``Claim`` with a predicate on the lesson's recorded metrics. The lesson prints each claim's
verdict beside its table (``show_claims``), and ``make course`` checks every claim after running
the notebooks: in ``class`` and ``full`` mode a claim that does not hold fails the run; in
``smoke`` mode (meaningless numbers) it is only reported.

Claims live in the lesson harnesses (``helpers/lessons/*.py``), in a module-level list named
``CLAIMS``, so that the notebook and ``make course`` read the same ones.

Example:
    >>> CLAIMS = [Claim("02", "fine-tuned beats from scratch at the same budget",
    ...                 lambda m: m["finetuned_acc"] > m["scratch_acc"])]
    >>> show_claims(CLAIMS, {"finetuned_acc": 0.8, "scratch_acc": 0.3})
    ✅ fine-tuned beats from scratch at the same budget
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Claim:
    """``text`` holds for lesson ``lesson`` when ``holds(metrics)`` is true."""
    lesson: str
    text: str
    holds: Callable[[dict], bool]

    def verdict(self, metrics: dict) -> bool | None:
        """True or False, or None when a metric it needs is missing (the lesson did not record it)."""
        try:
            return bool(self.holds(metrics))
        except (KeyError, TypeError, IndexError, ZeroDivisionError):
            return None


def check_claims(claims, results: dict) -> list[tuple[Claim, bool | None]]:
    """Each claim with its verdict against a results file's entries ({lesson: entry}); None
    (not measured) when the lesson has no entry or its entry was interrupted."""
    out = []
    for claim in claims:
        entry = results.get(claim.lesson)
        finished = entry is not None and not entry.get("interrupted", False)
        out.append((claim, claim.verdict(entry["metrics"]) if finished else None))
    return out


def show_claims(claims, metrics: dict) -> None:
    """Print each claim with its verdict on ``metrics`` (a lesson's, before or after recording)."""
    for claim in claims:
        v = claim.verdict(metrics)
        mark = "✅" if v else "❌ does not hold:" if v is False else "… not measured:"
        print(f"{mark} {claim.text}")
