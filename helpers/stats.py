"""Comparing runs fairly: means over seeds, their spread, and when a difference is real.

The course calls a difference between two methods real only when a two-sided t-test at the 95%
level says so (p below 0.05), with the degrees of freedom the runs really have; otherwise the
methods tie at this budget, and the lessons say so. Two tests, one helper (``difference``):

- **paired** (``paired=True``): the two methods ran on the same seeds, and a seed fixes what the
  two runs share (the labelled images drawn, the batch order). The test looks at the per-seed
  differences: n seeds give n - 1 degrees of freedom, and luck that both runs of a seed share
  (an easy draw of images) cancels.
- **Welch's** (the default): two independent sets of runs. Each side's variance is its own, and
  the degrees of freedom come from the Welch-Satterthwaite formula (between min(n_a, n_b) - 1
  and n_a + n_b - 2).

With 3 seeds a paired test has 2 degrees of freedom: the difference must exceed 4.3 standard
errors to be called real, not 2 (2 is the large-sample value, about 1.96).

Example:
    >>> d = difference([0.86, 0.84, 0.88], [0.81, 0.83, 0.80])
    >>> d.real, d.describe("fine-tuning", "from scratch")
    (True, "fine-tuning beats from scratch by 4.7 ± 1.5 points (real: Welch's t-test, p = 0.036 with 3.7 degrees of freedom, below 0.05)")
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .checks import known_name

LEVEL = 0.05        # two-sided: a difference is real when p < LEVEL (95% confidence)


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
    """Standard error of the mean: spread / sqrt(n) (0 for a single value).

    How far the mean of n runs would typically move if the whole set of runs were repeated with
    new seeds: the spread of single runs shrinks by sqrt(n) when n of them are averaged."""
    values = _floats(values)
    return mean_and_spread(values)[1] / math.sqrt(len(values))


def _incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b), by its continued fraction (modified
    Lentz), which converges fast for x < (a + 1) / (a + b + 2); the symmetry
    I_x(a, b) = 1 - I_{1-x}(b, a) covers the rest."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > (a + 1) / (a + b + 2):
        return 1.0 - _incomplete_beta(b, a, 1.0 - x)
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    fraction = d
    for m in range(1, 500):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),                 # even term
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):    # odd term
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            fraction *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return math.exp(log_front) * fraction / a


def t_test_p(t: float, df: float) -> float:
    """Two-sided p-value of Student's t statistic ``t`` with ``df`` degrees of freedom (any df > 0,
    not only whole numbers: Welch's are not): P(|T| >= |t|) = I_{df/(df+t²)}(df/2, 1/2).

    >>> round(t_test_p(4.303, 2), 4), round(t_test_p(2.228, 10), 4)
    (0.05, 0.05)
    """
    if not df > 0:
        raise ValueError(f"degrees of freedom must be positive, got {df!r}")
    if math.isinf(t):
        return 0.0
    if math.isinf(df):                 # the normal limit
        return math.erfc(abs(t) / math.sqrt(2))
    return _incomplete_beta(df / 2, 0.5, df / (df + t * t))


def t_critical(df: float, level: float = LEVEL) -> float:
    """The |t| above which a two-sided test at ``level`` calls a difference real (bisection on
    ``t_test_p``): 12.71 for 1 degree of freedom, 4.30 for 2, 2.23 for 10, 1.96 in the limit."""
    lo, hi = 0.0, 1.0
    while t_test_p(hi, df) > level:
        hi *= 2
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_test_p(mid, df) > level else (lo, mid)
    return (lo + hi) / 2


def _number(x: float) -> str:
    return "infinite" if math.isinf(x) else f"{x:.1f}".rstrip("0").rstrip(".")


@dataclass(frozen=True)
class Difference:
    """``mean(a) - mean(b)`` with its standard error, and the test that says whether it is real.

    ``test`` names the test ("Welch's t-test", "paired t-test", "two-proportion z-test"), ``df``
    its degrees of freedom (infinite for the z-test), ``p`` its two-sided p-value (None when there
    are too few runs to test: one seed on a side)."""
    diff: float
    se: float
    n_a: int
    n_b: int
    test: str = "Welch's t-test"
    df: float | None = None
    p: float | None = None

    @property
    def real(self) -> bool:
        """Significant at 95%, two-sided: p below 0.05."""
        return self.p is not None and self.p < LEVEL

    def verdict(self) -> str:
        """The test in plain words: its name, p-value and degrees of freedom."""
        if self.p is None:
            return "too few runs to test it"
        p = "p < 0.001" if self.p < 0.001 else f"p = {self.p:.3f}"
        df = "" if self.df is None or math.isinf(self.df) else f" with {_number(self.df)} degrees of freedom"
        return f"{self.test}, {p}{df}"

    def describe(self, a: str, b: str, scale: float = 100, unit: str = "points", digits: int = 1) -> str:
        """A sentence that follows from the numbers: who wins, by how much (``digits`` decimals) and
        by which test, or a tie."""
        size = f"{abs(self.diff) * scale:.{digits}f} ± {self.se * scale:.{digits}f} {unit}"
        if self.p is None:
            return f"{a} and {b} differ by {size}, from a single seed: too few runs to call it"
        if not self.real:
            return (f"{a} and {b} tie at this budget ({size} apart; {self.verdict()}, "
                    f"not below 0.05: not significant at 95%)")
        winner, loser = (a, b) if self.diff > 0 else (b, a)
        return f"{winner} beats {loser} by {size} (real: {self.verdict()}, below 0.05)"


def _p_from(diff: float, se: float, df: float) -> float:
    if se == 0:                       # every run agrees exactly: any gap at all is certain
        return 0.0 if diff != 0 else 1.0
    return t_test_p(diff / se, df)


def difference(a, b, *, paired: bool = False) -> Difference:
    """``mean(a) - mean(b)`` over two sets of runs (e.g. two methods over seeds), tested two-sided
    at 95%.

    Args:
        a, b: one number per run (per seed).
        paired: True when ``a[i]`` and ``b[i]`` ran on the same seed ``i`` with the same data (the
            same labelled images, the same batch order): a paired t-test on the per-seed differences,
            n - 1 degrees of freedom. False (the default) for independent runs: Welch's t-test, whose
            standard error is sqrt(se_a² + se_b²) and whose degrees of freedom are Welch-Satterthwaite's.

    With one run on a side there is nothing to test: ``p`` is None and ``real`` is False.
    """
    a, b = _floats(a), _floats(b)
    n_a, n_b = len(a), len(b)
    diff = sum(a) / n_a - sum(b) / n_b
    if paired:
        if n_a != n_b:
            raise ValueError(f"a paired test needs one run of each method per seed; got {n_a} and {n_b} runs")
        per_seed = [x - y for x, y in zip(a, b)]
        se = standard_error(per_seed)
        if n_a < 2:
            return Difference(diff, se, n_a, n_b, "paired t-test")
        return Difference(diff, se, n_a, n_b, "paired t-test", n_a - 1, _p_from(diff, se, n_a - 1))
    va, vb = standard_error(a) ** 2, standard_error(b) ** 2       # squared standard errors
    se = math.sqrt(va + vb)
    if n_a < 2 or n_b < 2:
        return Difference(diff, se, n_a, n_b, "Welch's t-test")
    if va + vb == 0:
        df = float(n_a + n_b - 2)
    else:                             # Welch-Satterthwaite
        df = (va + vb) ** 2 / (va ** 2 / (n_a - 1) + vb ** 2 / (n_b - 1))
    return Difference(diff, se, n_a, n_b, "Welch's t-test", df, _p_from(diff, se, df))


def difference_of_proportions(acc_a: float, acc_b: float, items: int) -> Difference:
    """Two accuracies, each a share of the same ``items`` test items (one run each): a
    two-proportion z-test (large-sample, two-sided, 95%), standard error
    sqrt(a(1-a)/n + b(1-b)/n). Treating the two shares as independent ignores that they were
    measured on the same items, which only makes the test stricter when methods agree on the
    easy items, as they do."""
    if not (isinstance(items, int) and items > 0):
        raise ValueError(f"items must be a positive whole number, got {items!r}")
    a, b = float(acc_a), float(acc_b)
    se = math.sqrt(a * (1 - a) / items + b * (1 - b) / items)
    return Difference(a - b, se, items, items, f"two-proportion z-test on {items} items",
                      math.inf, _p_from(a - b, se, math.inf))


def exceeds(a, b, *, paired: bool = False) -> bool:
    """Whether the mean of ``a`` is above the mean of ``b`` and the difference is real
    (``difference(a, b, paired=paired).real``): the test behind every "beats ... (real at 95%)"
    claim."""
    d = difference(a, b, paired=paired)
    return d.real and d.diff > 0


def best_by(rows, metric: str, *, higher_is_better: bool = True):
    """The row (dict or object) with the best validation ``metric``: selection never looks at
    test numbers. Ties go to the first row."""
    rows = list(rows)
    if not rows:
        raise ValueError("best_by needs at least one row")

    def value(r):
        if isinstance(r, dict):
            known_name("metric", metric, list(r))       # lists the row's columns
        v = r[metric] if isinstance(r, dict) else getattr(r, metric)
        if v is None:
            raise ValueError(f"a row has no {metric!r}")
        return v if higher_is_better else -v
    return max(rows, key=value)
