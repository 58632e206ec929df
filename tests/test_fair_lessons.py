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
    rows = full_finetuning.labels_curve_rows(ft, sc, cv)
    assert [r["labels_per_class"] for r in rows] == [5, 50]
    assert abs(rows[0]["finetuned_acc"] - 0.85) < 1e-9 and abs(rows[1]["scratch_converged_acc"] - 0.91) < 1e-9
    assert rows[0]["seeds"] == 2
    assert full_finetuning.gap(rows[1]).diff < full_finetuning.gap(rows[0]).diff


def test_lesson_02_claims_need_a_real_difference():
    base = {"finetuned_acc": 0.86, "scratch_acc": 0.30, "scratch_converged_acc": 0.8,
            "finetuned_accs": [0.85, 0.86, 0.87], "scratch_accs": [0.29, 0.30, 0.31],
            "scratch_converged_accs": [0.79, 0.80, 0.81], "finetune_steps": 30, "scratch_converged_steps": 450,
            "scratch_converged_budget": 600}
    assert all(c.verdict(base) for c in full_finetuning.CLAIMS)
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
