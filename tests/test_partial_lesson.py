"""Lesson 03's harness: each depth's rate chosen on validation, and the finding printed from the numbers."""
from types import SimpleNamespace

from helpers.lessons.partial import choose_rates, freezing_finding
from helpers.modes import MODES, sizes


def run(val_acc, test_acc=0.5):
    return SimpleNamespace(val_acc=val_acc, test_acc=test_acc)


def test_each_depth_gets_the_rate_with_the_best_mean_validation_accuracy_never_test():
    grid = {(0, 1e-3): [run(0.80, test_acc=0.10), run(0.82, test_acc=0.10)],
            (0, 1e-2): [run(0.70, test_acc=0.99), run(0.72, test_acc=0.99)],     # best on test: must not win
            (5, 1e-3): [run(0.50), run(0.52)],
            (5, 1e-2): [run(0.70), run(0.74)]}
    rates, runs = choose_rates(grid)
    assert rates == {0: 1e-3, 5: 1e-2}
    assert runs[0] is grid[(0, 1e-3)] and runs[5] is grid[(5, 1e-2)]


def test_a_tie_on_validation_goes_to_the_first_rate_of_the_grid():
    rates, _ = choose_rates({(2, 3e-3): [run(0.6)], (2, 1e-3): [run(0.6)]})
    assert rates == {2: 3e-3}


def test_every_mode_has_a_rate_grid_for_the_depths_smoke_included():
    for mode in MODES:
        grid = sizes("finetune", mode).depth_lr_grid
        assert len(grid) >= 2 and len(set(grid)) == len(grid) and all(lr > 0 for lr in grid), (mode, grid)
    assert len(sizes("finetune", "smoke").depth_lr_grid) == 2


TRAINABLE = {0: 1000, 1: 990, 2: 900, 3: 700, 4: 400, 5: 10}


def test_finding_says_the_hypothesis_fails_when_freezing_the_first_stage_already_costs():
    accs = {0: [0.85, 0.86, 0.84], 1: [0.79, 0.80, 0.78], 2: [0.75, 0.76, 0.74], 3: [0.70, 0.71, 0.69],
            4: [0.69, 0.70, 0.68], 5: [0.58, 0.59, 0.57]}
    text = freezing_finding(accs, TRAINABLE)
    assert "not borne out" in text and "Yosinski" in text and "Kumar" in text
    assert "Only the head (1.0% of the parameters) is 27.0 points below full fine-tuning (real" in text
    assert "depths 1, 2, 3, 4, 5 all lose" in text


def test_finding_says_the_hypothesis_holds_when_no_depth_loses():
    accs = {k: [0.80, 0.85, 0.90] for k in TRAINABLE}
    text = freezing_finding(accs, TRAINABLE)
    assert "borne out" in text and "not borne out" not in text
    assert "Depths that tie with full fine-tuning: 1, 2, 3, 4, 5." in text and "a tie" in text


def test_finding_separates_shallow_ties_from_deep_losses():
    accs = {0: [0.85, 0.86, 0.84], 1: [0.80, 0.86, 0.88], 2: [0.82, 0.86, 0.85], 3: [0.70, 0.71, 0.69],
            4: [0.69, 0.70, 0.68], 5: [0.58, 0.59, 0.57]}
    text = freezing_finding(accs, TRAINABLE)
    assert "holds near the input only" in text and "depths 3, 4, 5 lose for real" in text
    assert "Depths that tie with full fine-tuning: 1, 2." in text


def test_finding_with_one_seed_per_depth_calls_nothing():
    text = freezing_finding({0: [0.9], 1: [0.5], 5: [0.2]}, {0: 100, 1: 90, 5: 1})
    assert "single seed" in text and "cannot test the hypothesis" in text
    assert "borne out" not in text and "tie" not in text
