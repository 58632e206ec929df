"""Fair comparisons: the statistics the lessons use, and registered claims checked by make course."""
import pytest

from helpers.claims import Claim, check_claims
from helpers.course import registered_claims, report_claims
from helpers.results import record_results
from helpers.stats import best_by, difference, mean_and_spread, standard_error


def test_mean_spread_and_standard_error():
    m, s = mean_and_spread([0.5, 0.7, 0.9])
    assert m == pytest.approx(0.7) and s == pytest.approx(0.2)
    assert standard_error([0.5, 0.7, 0.9]) == pytest.approx(0.2 / 3 ** 0.5)
    assert mean_and_spread([0.4]) == (pytest.approx(0.4), 0.0)
    with pytest.raises(ValueError):
        mean_and_spread([])


def test_a_difference_is_real_only_beyond_twice_its_standard_error():
    clear = difference([0.86, 0.84, 0.88], [0.61, 0.63, 0.60])
    assert clear.real and "beats" in clear.describe("a", "b")
    noisy = difference([0.79, 0.86, 0.74], [0.80, 0.72, 0.83])       # 0.013 apart, spread ~0.06
    assert not noisy.real and "tie" in noisy.describe("a", "b")
    single = difference([0.9], [0.3])                                  # one seed: never "real"
    assert not single.real and "single seed" in single.describe("a", "b")
    assert difference([0.3, 0.31], [0.9, 0.91]).describe("a", "b").startswith("b beats a")


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
