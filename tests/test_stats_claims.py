"""Fair comparisons: the statistics the lessons use, and registered claims checked by make course."""
import math

import pytest

from helpers.claims import Claim, check_claims
from helpers.course import registered_claims, report_claims
from helpers.results import record_results
from helpers.stats import (
    best_by,
    difference,
    difference_of_proportions,
    exceeds,
    mean_and_spread,
    standard_error,
    t_critical,
    t_test_p,
)


def test_mean_spread_and_standard_error():
    m, s = mean_and_spread([0.5, 0.7, 0.9])
    assert m == pytest.approx(0.7) and s == pytest.approx(0.2)
    assert standard_error([0.5, 0.7, 0.9]) == pytest.approx(0.2 / 3 ** 0.5)
    assert mean_and_spread([0.4]) == (pytest.approx(0.4), 0.0)
    with pytest.raises(ValueError):
        mean_and_spread([])


# Two-sided 95% critical values of Student's t (any printed t-table) and the normal limit.
T_TABLE = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 10: 2.228, 20: 2.086, 30: 2.042, 120: 1.980}


@pytest.mark.parametrize("df, t", sorted(T_TABLE.items()))
def test_t_test_p_matches_the_t_table(df, t):
    assert t_test_p(t, df) == pytest.approx(0.05, abs=2e-4)
    assert t_critical(df) == pytest.approx(t, abs=1e-3)


def test_t_test_p_at_other_points():
    assert t_test_p(0.0, 3) == pytest.approx(1.0)
    assert t_test_p(1.0, 1) == pytest.approx(0.5)                     # Cauchy: P(|T| > 1) = 1/2
    assert t_test_p(2.0, 2) == pytest.approx(1 - 2 / 6 ** 0.5)        # closed form for 2 df: 1 - t/sqrt(2 + t²)
    assert t_test_p(9.925, 2) == pytest.approx(0.01, abs=1e-4)        # the 99% column
    assert t_test_p(1.96, math.inf) == pytest.approx(0.05, abs=1e-3)
    assert t_test_p(-3.0, 7) == t_test_p(3.0, 7)
    assert t_test_p(2.5, 3.5) < t_test_p(2.5, 3.0)                    # fractional df: between the whole ones
    with pytest.raises(ValueError):
        t_test_p(1.0, 0)


def test_welch_uses_each_sides_variance_and_satterthwaites_degrees_of_freedom():
    a, b = [0.86, 0.84, 0.88, 0.85], [0.61, 0.66, 0.70]
    d = difference(a, b)
    va, vb = standard_error(a) ** 2, standard_error(b) ** 2
    assert d.test == "Welch's t-test" and d.se == pytest.approx(math.sqrt(va + vb))
    assert d.df == pytest.approx((va + vb) ** 2 / (va ** 2 / 3 + vb ** 2 / 2))
    assert 2 <= d.df <= 5 and d.p == pytest.approx(t_test_p(d.diff / d.se, d.df))
    assert d.real and "beats" in d.describe("a", "b")


def test_a_paired_test_sees_what_welch_misses_and_the_reverse():
    # each seed drew an easy or a hard set of labelled images for both methods: a is always 1 point
    # ahead, while the seeds spread 10 points. Welch sees only the spread; the paired test the pairs.
    a, b = [0.71, 0.81, 0.91], [0.70, 0.80, 0.90]
    assert not difference(a, b).real
    paired = difference(a, b, paired=True)
    assert paired.real and paired.df == 2 and paired.test == "paired t-test"
    # three seeds: a gap of 3.8 standard errors is "beyond 2 SE" but not real with 2 degrees of freedom
    d = difference([0.03, 0.02, 0.05], [0.0, 0.0, 0.0], paired=True)
    t = d.diff / d.se
    assert t > 3.7 and not d.real and d.p == pytest.approx(1 - t / math.sqrt(2 + t * t))
    with pytest.raises(ValueError, match="one run of each method per seed"):
        difference([0.1, 0.2], [0.1], paired=True)


def test_describe_names_the_test_the_p_value_and_the_degrees_of_freedom():
    clear = difference([0.86, 0.84, 0.88], [0.61, 0.63, 0.60])
    assert clear.real
    text = clear.describe("a", "b")
    assert text.startswith("a beats b by 24.7 ± 1.5 points (real: Welch's t-test, p < 0.001 with ")
    assert "degrees of freedom" in text
    noisy = difference([0.79, 0.86, 0.74], [0.80, 0.72, 0.83], paired=True)       # 0.013 apart, spread ~0.06
    assert not noisy.real
    assert noisy.describe("a", "b") == ("a and b tie at this budget (1.3 ± 6.7 points apart; paired t-test, "
                                        "p = 0.861 with 2 degrees of freedom, not below 0.05: not significant at 95%)")
    single = difference([0.9], [0.3])                                  # one seed: never "real"
    assert not single.real and single.p is None and "single seed" in single.describe("a", "b")
    assert difference([0.3, 0.31], [0.9, 0.91]).describe("a", "b").startswith("b beats a")
    same = difference([0.5, 0.5], [0.5, 0.5])                          # no spread, no gap: a tie
    assert not same.real and same.p == 1.0
    assert exceeds([0.9, 0.91, 0.92], [0.5, 0.52, 0.51]) and not exceeds([0.5, 0.52, 0.51], [0.9, 0.91, 0.92])


def test_proportions_on_the_same_items():
    d = difference_of_proportions(0.45, 0.135, 200)
    assert d.real and d.df == math.inf and "z-test on 200 items" in d.describe("a", "b")
    assert d.se == pytest.approx(math.sqrt(0.45 * 0.55 / 200 + 0.135 * 0.865 / 200))
    assert not difference_of_proportions(0.10, 0.08, 200).real         # 2 points on 200 items: a tie
    assert not difference_of_proportions(0.0, 0.0, 200).real
    assert difference_of_proportions(0.02, 0.0, 200).p == pytest.approx(t_test_p(0.02 / math.sqrt(0.02 * 0.98 / 200), math.inf))


def test_best_by_selects_on_validation_not_test():
    rows = [{"depth": 0, "val_acc": 0.80, "test_acc": 0.90}, {"depth": 2, "val_acc": 0.85, "test_acc": 0.70}]
    assert best_by(rows, "val_acc")["depth"] == 2
    assert best_by(rows, "test_acc")["depth"] == 0        # reading test would pick another depth
    with pytest.raises(ValueError):
        best_by([], "val_acc")


def test_claims_are_checked_against_the_results_file(data_dir, capsys):
    claims = [Claim("98", "a beats b", lambda m: m["a"] > m["b"]),
              Claim("98", "a is small", lambda m: m["a"] < 0.1),
              Claim("98", "c exists", lambda m: m["c"] > 0)]
    record_results("98", {"a": 0.5, "b": 0.2}, wall_s=1.0, mode="class")
    from helpers.results import load_results
    verdicts = [ok for _, ok in check_claims(claims, load_results("class"))]
    assert verdicts == [True, False, None]


def test_make_course_fails_on_a_broken_claim_outside_smoke_mode(data_dir, monkeypatch, capsys):
    import helpers.course as course
    monkeypatch.setattr(course, "registered_claims",
                        lambda: [Claim("98", "a beats b", lambda m: m["a"] > m["b"])])
    record_results("98", {"a": 0.1, "b": 0.2}, wall_s=1.0, mode="class")
    record_results("98", {"a": 0.1, "b": 0.2}, wall_s=1.0, mode="smoke")
    assert report_claims("class") == 1
    assert report_claims("smoke") == 0
    assert "DOES NOT HOLD" in capsys.readouterr().out


def test_registered_claims_belong_to_lessons():
    for claim in registered_claims():
        assert len(claim.lesson) == 2 and claim.lesson.isdigit() and claim.text


def test_keyword_checks_on_methods_and_numpy_integers():
    import numpy as np

    from helpers.checks import keywords_checked, whole_number

    class Thing:
        @keywords_checked
        def run(self, *, seed: int = 0):
            return seed
    with pytest.raises(TypeError, match=r"Thing.run\(\) got unknown keyword argument\(s\) 'sed' \(did you mean 'seed'\?\)"):
        Thing().run(sed=1)
    assert whole_number("steps", np.int64(3)) == 3 and type(whole_number("steps", np.int64(3))) is int
    with pytest.raises(ValueError):
        whole_number("steps", np.float32(3))


def test_claims_on_an_interrupted_lesson_are_not_measured(data_dir):
    from helpers.results import load_results
    record_results("97", {"a": 0.5}, wall_s=1.0, mode="class", interrupted=True)
    [(_, verdict)] = check_claims([Claim("97", "a is positive", lambda m: m["a"] > 0)], load_results("class"))
    assert verdict is None
