"""Distillation: the loss's properties, the notebook's loss equals helpers', students are small."""
import math
from dataclasses import replace
from pathlib import Path

import nbformat
import pytest
import torch
import torch.nn.functional as F

from helpers.device import prefers_channels_last
from helpers.lessons.distillation import Student, create_student, run_student
from helpers.losses import distillation_loss
from helpers.models import create_image_model, image_model_config
from helpers.runner import QUIET, Budget, Report, Setup
from helpers.surgery import count_params
from helpers.training import inference_seconds, predict


def logits(seed, n=8, k=6):
    return torch.randn(n, k, generator=torch.Generator().manual_seed(seed)) * 3


def test_soft_loss_is_zero_when_student_equals_teacher():
    t = logits(0)
    assert distillation_loss(t, t, temperature=4.0).item() == pytest.approx(0.0, abs=1e-6)
    assert distillation_loss(logits(1), t, temperature=4.0).item() > 0


def test_soft_loss_pulls_student_towards_teacher():
    s, t = logits(1).requires_grad_(), logits(0)
    distillation_loss(s, t, temperature=2.0).backward()
    with torch.no_grad():
        moved = s - 0.5 * s.grad
        assert distillation_loss(moved, t, temperature=2.0) < distillation_loss(s, t, temperature=2.0)


def test_unlabelled_rows_only_get_the_soft_term():
    s, t = logits(1), logits(0)
    y = torch.tensor([0, 1, 2, 3, -1, -1, -1, -1])
    soft_all = distillation_loss(s, t, temperature=3.0)
    expected = 0.7 * soft_all + 0.3 * F.cross_entropy(s[:4], y[:4])
    torch.testing.assert_close(distillation_loss(s, t, y, temperature=3.0, soft_weight=0.7), expected)
    none = torch.full((8,), -1)
    torch.testing.assert_close(distillation_loss(s, t, none, temperature=3.0, soft_weight=0.7), 0.7 * soft_all)


def test_temperature_squared_keeps_gradient_scale():
    """With T² the soft term's gradient keeps its size as T grows (without, it shrinks as 1/T²)."""
    s, t = logits(1) * 0.1, logits(0) * 0.1
    norms = []
    for T in (4.0, 16.0):
        x = s.clone().requires_grad_()
        distillation_loss(x, t, temperature=T).backward()
        norms.append(x.grad.norm().item())   # d/ds T²·KL = T·(p_s - p_t) ≈ (s - t)/classes for large T
    assert norms[0] == pytest.approx(norms[1], rel=0.1)


def test_notebook_loss_matches_helpers():
    path = Path(__file__).parent.parent / "notebooks" / "10_distillation.ipynb"
    cells = [c.source for c in nbformat.read(path, as_version=4).cells
             if c.cell_type == "code" and "def kd_loss" in c.source]
    assert len(cells) == 1, "lesson 10 must write out the distillation loss in exactly one cell"
    ns = {"torch": torch, "F": F, "math": math}
    exec(cells[0], ns)
    s, t, y = logits(1), logits(0), torch.tensor([0, 1, 2, 3, 4, 5, 0, 1])
    for T, w in [(1.0, 0.5), (4.0, 0.9), (2.0, 1.0)]:
        torch.testing.assert_close(ns["kd_loss"](s, t, y, T, w), distillation_loss(s, t, y, T, w))


def test_class_mode_student_is_at_most_a_quarter_of_the_teacher():
    from helpers.modes import sizes
    teacher = create_image_model(image_model_config("class"), num_classes=6)
    student = create_image_model(replace(image_model_config("class"), width=sizes("distill", "class").student_width),
                                 num_classes=6)
    assert count_params(student) <= count_params(teacher) / 4


def test_students_start_fresh_and_train():
    x = torch.rand(24, 3, 32, 32)
    y = torch.arange(24) % 6
    y[12:] = -1                                             # half unlabelled
    soft = torch.randn(24, 6)
    a = run_student("kd", x, y, soft, budget=Budget(steps=20), setup=QUIET, report=Report(keep_model=True))
    b = run_student("labels", x, y, budget=Budget(steps=20), setup=QUIET)
    assert a.images == 24 and b.images == 12
    assert a.history.steps_done == 20 and 0 <= a.val_acc <= 1 and 0 <= a.test_acc <= 1
    for r in (a, b):                       # they learn: the training loss falls
        assert sum(r.history.loss[-3:]) < sum(r.history.loss[:3])
    fresh = create_student(seed=0)
    assert count_params(fresh) == a.trainable_params
    with pytest.raises(ValueError, match="teacher"):
        run_student("kd", x, y, budget=Budget(steps=1), setup=QUIET)


def test_inference_is_timed_in_the_training_layout_whatever_the_model_came_with():
    x = torch.rand(4, 3, 32, 32)
    for start in (torch.channels_last, torch.contiguous_format):
        model = create_student(width=8).to(memory_format=start)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        assert inference_seconds(model, x, repeats=1) > 0
        conv = model.conv1.weight
        assert conv.is_contiguous(memory_format=torch.channels_last) == prefers_channels_last(model, "cpu")
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_teacher_scores_exactly_the_views_the_student_trains_on():
    from helpers.lessons.distillation import augmented_views, pseudo_labelled, transfer_set
    teacher = create_student(width=4, seed=1)
    x, logits, y = transfer_set(teacher, labels_per_class=2, unlabelled=6, views=3)
    assert len(x) == len(logits) == len(y) == 3 * (12 + 6)
    torch.testing.assert_close(logits, predict(teacher, x))               # the views themselves
    assert int((y < 0).sum()) == 3 * 6
    again = augmented_views(x[:5], 2, seed=0)
    assert torch.equal(again, augmented_views(x[:5], 2, seed=0))         # drawn once, repeatable
    hard = pseudo_labelled(y, logits)
    assert bool((hard >= 0).all()) and torch.equal(hard[y >= 0], y[y >= 0])
    assert torch.equal(hard[y < 0], logits[y < 0].argmax(1))


def test_the_pretrained_student_starts_from_the_small_pretrained_model_with_a_new_head():
    """Lesson 10's fine-tuning arm: the student's architecture pre-trained (lesson 01's recipe at the
    student's width), a new species head, then the same training as the labels-only student."""
    from helpers.lessons.distillation import pretrained_student
    from helpers.modes import sizes
    small, info = pretrained_student(device="cpu", verbose=False)
    assert small.get_classifier().in_features == 8 * sizes("distill").student_width and info["val_acc"] is not None
    x, y = torch.rand(12, 3, 32, 32), torch.arange(12) % 6
    r = run_student("labels", x, y, budget=Budget(steps=1), lr=1e-12, student=Student(pretrained=True),
                    report=Report(keep_model=True), setup=Setup(device="cpu", progress=False))
    assert r.model.get_classifier().out_features == 6 and r.settings["pretrained"]
    body = {k: v for k, v in small.state_dict().items()      # the weights (a step in train mode moves BN statistics)
            if not k.startswith("fc.") and "running_" not in k and "num_batches" not in k}
    got = r.model.state_dict()
    assert all(torch.allclose(got[k].float(), v.float(), atol=1e-6) for k, v in body.items())   # it started there
    scratch = create_student(seed=0).state_dict()
    assert not torch.equal(scratch["conv1.weight"], got["conv1.weight"])
    with pytest.raises(ValueError, match="width"):
        run_student("labels", x, y, budget=Budget(steps=1), setup=QUIET,
                    student=Student(pretrained=True, width=sizes("distill").student_width + 4))
