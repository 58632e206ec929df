"""The image lessons' fair-comparison tables and claims (02-06, 10): pure bookkeeping, no training."""
from types import SimpleNamespace

import torch

from helpers.lessons import adding_layers, distillation, full_finetuning, partial, peft


def run(**metrics):
    return SimpleNamespace(trainable_params=10, steps=30, train_s=1.0, **metrics)


def test_labels_curve_rows_average_each_arm_over_seeds():
    ft = {5: [run(test_acc=0.8), run(test_acc=0.9)], 50: [run(test_acc=0.95), run(test_acc=0.97)]}
    sc = {5: [run(test_acc=0.3), run(test_acc=0.3)], 50: [run(test_acc=0.4), run(test_acc=0.5)]}
    cv = {5: [run(test_acc=0.4), run(test_acc=0.5)], 50: [run(test_acc=0.9), run(test_acc=0.92)]}
    fc = {5: [run(test_acc=0.86), run(test_acc=0.9)], 50: [run(test_acc=0.96), run(test_acc=0.98)]}
    rows = full_finetuning.labels_curve_rows(ft, sc, cv, fc)
    assert [r["labels_per_class"] for r in rows] == [5, 50]
    assert abs(rows[0]["finetuned_acc"] - 0.85) < 1e-9 and abs(rows[1]["scratch_converged_acc"] - 0.91) < 1e-9
    assert abs(rows[0]["finetuned_converged_acc"] - 0.88) < 1e-9 and rows[0]["finetuned_converged_accs"] == [0.86, 0.9]
    assert rows[0]["seeds"] == 2
    # the fair gap compares each side at its own budget, not the same-budget fine-tuning
    assert abs(full_finetuning.gap(rows[0]).diff - (0.88 - 0.45)) < 1e-9
    assert full_finetuning.gap(rows[1]).diff < full_finetuning.gap(rows[0]).diff


def test_lesson_02_claims_need_a_real_difference():
    base = {"finetuned_acc": 0.86, "scratch_acc": 0.30, "scratch_converged_acc": 0.8,
            "finetuned_accs": [0.85, 0.86, 0.87], "scratch_accs": [0.29, 0.30, 0.31],
            "scratch_converged_accs": [0.79, 0.80, 0.81], "finetune_steps": 30, "scratch_converged_steps": 450,
            "scratch_converged_budget": 600, "finetuned_converged_acc": 0.95,
            "finetuned_converged_accs": [0.94, 0.95, 0.96],
            "labels_curve": [{"finetuned_converged_acc": 0.75, "scratch_converged_acc": 0.53,
                              "finetuned_converged_accs": [0.74, 0.75, 0.77],
                              "scratch_converged_accs": [0.52, 0.53, 0.54]},
                             {"finetuned_converged_acc": 0.99, "scratch_converged_acc": 0.98,
                              "finetuned_converged_accs": [0.99, 0.99, 0.99],
                              "scratch_converged_accs": [0.98, 0.98, 0.98]}]}
    assert all(c.verdict(base) for c in full_finetuning.CLAIMS)
    fewest = dict(base["labels_curve"][0], finetuned_converged_accs=[0.80, 0.50, 0.80])
    fair_tie = dict(base, labels_curve=[fewest, base["labels_curve"][1]])
    assert full_finetuning.CLAIMS[4].verdict(fair_tie) is False         # inside the noise: no claim
    widening = dict(base, labels_curve=[base["labels_curve"][1], base["labels_curve"][0]])
    assert full_finetuning.CLAIMS[5].verdict(widening) is False
    noisy = dict(base, scratch_converged_accs=[0.2, 0.9, 0.95], scratch_converged_acc=0.68)
    assert full_finetuning.CLAIMS[1].verdict(noisy) is False           # inside the noise: a tie
    early = dict(base, scratch_converged_steps=200)
    assert full_finetuning.CLAIMS[3].verdict(early) is False


def test_seed_rows_and_method_rows_keep_val_and_test_apart():
    runs = {0: [run(val_acc=0.8, test_acc=0.7), run(val_acc=0.9, test_acc=0.6)]}
    row = partial.seed_rows(runs, "frozen_stages")[0]
    assert abs(row["val_acc"] - 0.85) < 1e-9 and abs(row["test_acc"] - 0.65) < 1e-9 and row["seeds"] == 2
    m = adding_layers.method_rows({"LP-FT": [run(val_acc=0.8, test_acc=0.7, shifted_acc=0.5)] * 3})[0]
    assert m["shifted_accs"] == [0.5] * 3 and m["steps"] == 30
    table = [{"trainable_params": 100, "sec_per_epoch": 2.0, "seeds": 3},
             {"trainable_params": 10, "sec_per_epoch": 1.0, "seeds": 3}]
    assert all(c.verdict({"freeze_table": table}) for c in partial.CLAIMS)


def test_background_task_labels_the_background():
    task = peft.background_task(12, 12)
    assert task.num_classes == 6 and len(task.x_train) == 12 and len(task.x_test) == 12
    assert set(task.y_train.tolist()) <= set(range(6))
    assert not torch.equal(task.x_train[:4], task.x_test[:4])


def test_distillation_factorial_has_the_four_students():
    names = [s[0] for s in distillation.STUDENTS]
    assert len(names) == 4 and len(set(names)) == 4
    assert {(kind, unl, hard) for _, kind, unl, hard in distillation.STUDENTS} == {
        ("labels", False, False), ("kd", False, False), ("labels", True, True), ("kd", True, False)}


def test_digits_verdict_compares_each_arm_at_the_budget_validation_prefers():
    from helpers.lessons.your_own import transfer_metrics, transfer_verdict

    def arm(steps, val, test):
        return {"lr": 0.01, "steps": steps, "val": val, "test": test}
    summary = {"fine-tuned": arm(60, [0.80, 0.82, 0.81], [0.80, 0.81, 0.82]),
               "linear probe": arm(60, [0.5] * 3, [0.48, 0.49, 0.47]),
               "from scratch": arm(60, [0.80, 0.81, 0.80], [0.82, 0.83, 0.81]),
               "fine-tuned, 3x budget": arm(180, [0.90, 0.91, 0.92], [0.90, 0.91, 0.92]),
               "from scratch, 3x budget": arm(180, [0.88, 0.89, 0.88], [0.87, 0.885, 0.885])}
    m = transfer_metrics(summary)
    assert m["digits_ft_best_steps"] == m["digits_scratch_best_steps"] == 180
    assert abs(m["digits_ft_long_test"] - 0.91) < 1e-9 and abs(m["digits_scratch_test"] - 0.82) < 1e-9
    assert abs(m["digits_ft_minus_scratch"] - (0.91 - 0.88)) < 1e-9 and m["digits_ft_minus_scratch_real"]
    assert "helps: fine-tuned 91.0% vs from scratch 88.0% (180 and 180 steps" in transfer_verdict(summary)
    # the same means, but seed 2 disagrees: a paired t-test over 3 seeds calls it a tie
    noisy = dict(summary, **{"from scratch, 3x budget": arm(180, [0.88, 0.89, 0.88], [0.88, 0.89, 0.87])})
    assert not transfer_metrics(noisy)["digits_ft_minus_scratch_real"]
    assert "tie" in transfer_verdict(noisy) and "paired t-test over the seeds, p = 0.095" in transfer_verdict(noisy)
    # a short fine-tuning run is not held against a long from-scratch one
    short = {k: v for k, v in summary.items() if k != "fine-tuned, 3x budget"}
    assert transfer_metrics(short)["digits_ft_best_steps"] == 60


def test_lesson_05_fair_claim_says_the_same_budget_overstates_the_gap():
    """The registered claim: each at its own long budget, the gap is under half the same-budget gap
    (true in both quiet runs of 2026-12-02); whether the long-budget gap itself is real is printed by
    the lesson, not registered, since it was beyond 2 SE in one run and within it in the other."""
    from helpers.lessons.bird_counter import CLAIMS
    fair = CLAIMS[-1]
    run = {"mae_finetuned": 0.3715, "mae_scratch": 0.6770, "mae_finetuned_long": 0.2068, "mae_scratch_converged": 0.2466}
    assert fair.verdict(run) is True
    caught_up_less = dict(run, mae_scratch_converged=0.2068 + 0.6 * (0.6770 - 0.3715))
    assert fair.verdict(caught_up_less) is False
    from helpers.stats import difference
    assert "tie at this budget (0.04 ± 0.02 birds" in difference([0.2345, 0.2178, 0.2875], [0.2157, 0.2040, 0.2006]).describe(
        "fine-tuned", "from scratch", scale=1, unit="birds", digits=2)
