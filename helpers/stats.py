"""Comparing runs fairly: means over seeds, their spread, and when a difference is real.

The course calls a difference between two methods real only when it exceeds twice its standard
error (about a 95% interval); otherwise the methods tie at this budget, and the lessons say so.

Example:
    >>> d = difference([0.86, 0.84, 0.88], [0.81, 0.83, 0.80])
    >>> d.real, d.describe("fine-tuning", "from scratch")
    (True, 'fine-tuning beats from scratch by 4.7 ± 1.5 points (real: more than twice its standard error)')
"""
from __future__ import annotations

import math
from dataclasses import dataclass


def _floats(values) -> list[float]:
    values = [float(v) for v in values]
    if not values:
        raise ValueError("need at least one value")
    return values


def mean_and_spread(values) -> tuple[float, float]:
    """(mean, sample standard deviation) of a list of numbers (spread 0 for a single value)."""
    values = _floats(values)
    mean = sum(values) / len(values)
    if len(values) == 1:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def standard_error(values) -> float:
    """Standard error of the mean: spread / sqrt(n) (0 for a single value)."""
    values = _floats(values)
    return mean_and_spread(values)[1] / math.sqrt(len(values))


@dataclass(frozen=True)
class Difference:
    """``mean(a) - mean(b)`` with its standard error; ``real`` when it exceeds twice that."""
    diff: float
    se: float
    n_a: int
    n_b: int

    @property
    def real(self) -> bool:
        return self.n_a > 1 and self.n_b > 1 and abs(self.diff) > 2 * self.se

    def describe(self, a: str, b: str, scale: float = 100, unit: str = "points", digits: int = 1) -> str:
        """A sentence that follows from the numbers: who wins, by how much (``digits`` decimals), or a tie."""
        size = f"{abs(self.diff) * scale:.{digits}f} ± {self.se * scale:.{digits}f} {unit}"
        if self.n_a < 2 or self.n_b < 2:
            return f"{a} and {b} differ by {size}, from a single seed: too few runs to call it"
        if not self.real:
            return f"{a} and {b} tie at this budget ({size} apart, within twice the standard error)"
        winner, loser = (a, b) if self.diff > 0 else (b, a)
        return f"{winner} beats {loser} by {size} (real: more than twice its standard error)"


def difference(a, b) -> Difference:
    """The difference of the means of two independent sets of runs (e.g. two methods over seeds),
    with the standard error sqrt(se_a² + se_b²)."""
    a, b = _floats(a), _floats(b)
    se = math.sqrt(standard_error(a) ** 2 + standard_error(b) ** 2)
    return Difference(sum(a) / len(a) - sum(b) / len(b), se, len(a), len(b))


def exceeds(a, b) -> bool:
    """Whether the mean of ``a`` is above the mean of ``b`` by more than twice the standard error
    of their difference: the test behind every "beats ... (beyond twice the standard error)" claim."""
    d = difference(a, b)
    return d.real and d.diff > 0


def best_by(rows, metric: str, *, higher_is_better: bool = True):
    """The row (dict or object) with the best validation ``metric``: selection never looks at
    test numbers. Ties go to the first row."""
    rows = list(rows)
    if not rows:
        raise ValueError("best_by needs at least one row")

    def value(r):
        v = r[metric] if isinstance(r, dict) else getattr(r, metric)
        if v is None:
            raise ValueError(f"a row has no {metric!r}")
        return v if higher_is_better else -v
    return max(rows, key=value)
