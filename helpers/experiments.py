"""One-call fine-tuning experiments on an image classification task, and their one result type.

``run_finetune(labels_per_class, frozen_stages=..., head=..., lr=..., seed=...)`` is one whole
experiment: it builds its model FRESH inside the call (lesson 01's checkpoint via
``pretrained_image_model()``, or a random initialisation with ``from_scratch=True``), does the
surgery, trains a stated budget of optimiser steps, and measures validation and test accuracy.
The task is the bird-species task (``helpers.tasks.species_data``) unless ``task=`` gives another
``ClassificationTask``. Re-running a cell that calls it never continues from weights another run
changed; ``start_state_hash`` proves it (two runs with the same seed start from equal weights).

Every experiment runner in the course (this one, lesson 05's counter, lesson 06's PEFT methods,
lesson 10's students) returns a ``RunResult``: the settings, the metrics (``val_...`` for
selection, ``test_...`` for reporting), the cost (trainable parameters, steps, seconds), the
History, and the model when asked for (``keep_model=True``).

Example:
    >>> log = lesson.run_log("03_freeze")
    >>> r = run_finetune(10, frozen_stages=2, log=log)      # 10 labels per species
    >>> r.val_acc, r.test_acc, r.trainable_params, r.sec_per_epoch
    >>> log.table()
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch.nn as nn

from .augment import flip_and_shift
from .cache import data_fingerprint
from .checks import keywords_checked, one_of, whole_number
from .device import resolve_device, seed_everything
from .losses import cross_entropy_loss
from .models import backbone_key, image_model_config, pretrained_image_model, scratch_image_model
from .modes import current_mode, sizes
from .runner import (
    Objective,
    Recipe,
    RunResult,
    Setup,
    cached_run,
    kept_value,
    run,
)
from .surgery import (
    BN_CHOICES,
    BN_DEFAULT,
    add_block,
    check_depth,
    count_params,
    freeze_stages,
    layerwise_lr_groups,
    replace_head,
    stages,
    trainable_params,
    unfreeze,
)
from .tasks import ClassificationTask, species_data, species_task
from .training import RECIPE, accuracy

HEADS = ("linear", "mlp", "block")


def build_model(*, from_scratch: bool = False, head: str = "linear", hidden: int = 64, seed: int = 0,
                num_classes: int | None = None, device="auto", mode: str | None = None,
                source: str | None = None) -> nn.Module:
    """A fresh model for the species task: lesson 01's weights (or random ones) and a new head.

    ``head``: "linear" (one new linear layer), "mlp" (a hidden layer of ``hidden`` units) or
    "block" (an extra residual block after the last stage, then a linear head).
    ``num_classes``: the head's outputs (default: the six species).
    ``source``: ``helpers.models.resolve_source``'s vocabulary: "course", a timm name, a module.
    """
    one_of("head", head, HEADS)
    device = resolve_device(device)
    num_classes = num_classes or species_task().num_classes
    config = image_model_config(mode)
    if from_scratch:        # the pre-trained model's architecture and width (timm's with source "timm")
        model = scratch_image_model(config, num_classes=num_classes, seed=seed, source=source).to(device)
    else:
        model, _ = pretrained_image_model(config, device=device, verbose=False, source=source)
    seed_everything(seed)
    if head == "block":
        add_block(model, seed=seed)
    replace_head(model, num_classes, hidden=hidden if head == "mlp" else None, seed=seed)
    return model.to(device)


@keywords_checked
def run_finetune(labels_per_class: int | None = None, *, task: ClassificationTask | None = None,
                 frozen_stages: int = 0, bn: str = BN_DEFAULT, head: str = "linear", hidden: int = 64,
                 lr: float | None = None, lr_decay: float | None = None, linear_probe_steps: int = 0,
                 seed: int = 0, from_scratch: bool = False, steps: int | None = None,
                 batch_size: int | None = None, augment: bool = True, evals: int | None = None,
                 keep_best: bool = False, test_curve: bool = False,
                 log=None, note: str | None = None, hook=None, progress: bool = True,
                 keep_model: bool = False, device="auto", mode: str | None = None,
                 source=None) -> RunResult:
    """One fine-tuning experiment from a fresh model. Returns a ``RunResult``.

    Args:
        labels_per_class: labelled training images per species (default: the lesson's headline);
            ignored when ``task`` is given.
        task: another ``ClassificationTask`` (e.g. your own images); default the species task.
        frozen_stages: freeze the first k stages nearest the input (0 = tune everything,
            ``len(stages(model))`` = only the head trains: a linear probe with ``head="linear"``).
        bn: BatchNorm statistics in frozen stages (``helpers.surgery.BN_CHOICES``): "update"
            (the default: they adapt to the data) or "frozen" (kept).
        head: "linear", "mlp" (``hidden`` units) or "block" (extra residual block + linear).
        lr: peak learning rate (default from the sizes: fine-tuning or from-scratch rate).
        lr_decay: layer-wise learning rates: the head gets ``lr``, each stage nearer the input
            ``lr_decay`` times the rate of the stage after it (None: one rate for all).
        linear_probe_steps: LP-FT: first train only the head this many steps (backbone frozen),
            then fine-tune with ``frozen_stages`` for the rest of the budget: the probe's steps
            count in ``steps``, so LP-FT and full fine-tuning get the same budget.
        seed: chooses the training images, the head's initialisation and the batch order.
        from_scratch: start from random weights instead of lesson 01's checkpoint.
        steps, batch_size: the budget in optimiser steps, and the batch size (default from the
            sizes); fixed whatever the training-set size, so compared runs get the same budget.
        evals: validation evaluations along the run (for curves; the last is at the end).
        keep_best: early stopping on validation: keep the weights of the evaluation with the best
            validation accuracy (``extra["best_step"]`` says when), not the last ones.
        test_curve: the evaluations along the run also measure test accuracy (for a curve that
            is shown; never for a choice).
        log: a ``RunLog``; the run's row is appended to it (``note`` adds a column).
        hook: ``hook(history)`` during training, e.g. a ``LiveCurve`` (metric ``val_acc``).
        keep_model: also return the trained model (``result.model``).
        mode: the course mode whose sizes and checkpoint to use (default: the current one).
        source: the pre-trained weights: "course", a timm model name ("timm": the course
            architecture's) or an ``nn.Module`` (``helpers.models.resolve_source``; None reads
            ``$COURSE_PRETRAINED`` once, here); the species images follow its input size.
    Returns:
        RunResult with metrics val_acc and test_acc (and shifted_acc when the task has a shifted
        test set); extra: best_step (the step whose weights were kept), sec_per_epoch (training seconds per
        pass over the training set), sec_per_step, epochs, backbone_change (how far the
        backbone's weights moved: ||w - w0|| / ||w0||), linear_probe_history; and
        ``start_state_hash`` (fingerprint of the weights before training).
    """
    setup = Setup.resolve(mode, source, device, progress)        # the edge: nothing below reads the environment
    mode, source, device = setup.mode, setup.source, setup.device
    S = sizes("finetune", mode)
    steps = whole_number("steps", steps, allow_none=True) or S.steps
    whole_number("labels_per_class", labels_per_class, allow_none=True)
    whole_number("linear_probe_steps", linear_probe_steps, minimum=0)
    whole_number("batch_size", batch_size, allow_none=True)
    one_of("bn", bn, BN_CHOICES)
    one_of("head", head, HEADS)
    if linear_probe_steps >= steps:
        raise ValueError(f"linear_probe_steps={linear_probe_steps} leaves nothing of the budget steps={steps} for "
                         f"fine-tuning: the probe's steps count in the budget")
    if lr is not None and (isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not 0 < lr < math.inf):
        raise ValueError(f"lr must be a positive number; got {lr!r}")
    if lr_decay is not None and (isinstance(lr_decay, bool) or not isinstance(lr_decay, numbers.Real)
                                 or not 0 < lr_decay <= 1):
        raise ValueError(f"lr_decay must be None (one rate for all) or a number in (0, 1], each stage's rate "
                         f"as a share of the next one's (e.g. 0.5); got {lr_decay!r}")
    lr = lr or (S.scratch_lr if from_scratch else S.lr)
    evals = S.evals if evals is None else whole_number("evals", evals, minimum=0)
    if keep_best and not evals:
        raise ValueError("keep_best=True needs evaluations along the run (evals >= 1) to choose from")
    if task is None:
        labels_per_class = labels_per_class or S.headline_labels
        task = species_data(labels_per_class, seed=seed, device=device, mode=mode, source=source)
    else:
        task = task.to(device)
        labels_per_class = None

    start_backbone = []

    def make():
        model = build_model(from_scratch=from_scratch, head=head, hidden=hidden, seed=seed,
                            num_classes=task.num_classes, device=device, mode=mode, source=source)
        check_depth(model, frozen_stages, "frozen_stages")  # raises, naming this model's valid depths and stages
        start_backbone.extend(p.detach().clone() for _, st in stages(model) for p in st.parameters())
        return model

    def surgery(model):
        freeze_stages(model, frozen_stages, bn=bn)
        if head == "block":
            unfreeze(model, "*.extra")        # new layers always train, even inside a frozen stage
        return layerwise_lr_groups(model, lr, decay=lr_decay) if lr_decay else None

    def validate(m):
        out = {"val_acc": accuracy(m, task.x_val, task.y_val)}
        if test_curve:
            out["test_acc"] = accuracy(m, task.x_test, task.y_test)
        return out

    def measure(model, history):
        metrics = {"val_acc": kept_value(history, "val_acc"), "test_acc": accuracy(model, task.x_test, task.y_test)}
        if metrics["val_acc"] is None:
            metrics["val_acc"] = accuracy(model, task.x_val, task.y_val)
        if task.x_shifted is not None:
            metrics["shifted_acc"] = accuracy(model, task.x_shifted, task.y_shifted)
        return metrics

    tune_steps = steps - linear_probe_steps
    batch_size = min(batch_size or S.batch_size, len(task.x_train))
    recipe = Recipe(steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                    augment=flip_and_shift if augment else None,
                    eval_every=max(1, tune_steps // evals) if evals else None, keep_best=keep_best,
                    probe_steps=linear_probe_steps, probe_lr=S.probe_lr, probe_bn=bn)
    settings = {"task": task.name, "labels_per_class": labels_per_class, "frozen_stages": frozen_stages, "bn": bn,
                "head": head, "lr": lr, "lr_decay": lr_decay, "linear_probe_steps": linear_probe_steps,
                "from_scratch": from_scratch, "seed": seed, "batch_size": batch_size, "augment": augment}
    if note is not None:
        settings["note"] = note
    desc = ("scratch" if from_scratch else f"freeze {frozen_stages}") + \
        (f", {labels_per_class}/class" if labels_per_class else f", {task.name}")
    result = run(make, (task.x_train, task.y_train), recipe, Objective(cross_entropy_loss, validate, "val_acc",
                                                                        measure=measure),
                 setup=setup, surgery=surgery, settings=settings, desc=desc, hook=hook, keep_model=True)
    trained = [p.detach() for _, st in stages(result.model) for p in st.parameters()]
    moved = [(p - p0).norm() ** 2 for p0, p in zip(start_backbone, trained)]
    backbone_change = (sum(moved) ** 0.5 / sum(p0.norm() ** 2 for p0 in start_backbone) ** 0.5).item()
    x = result.extra
    result.extra = {"best_step": x["best_step"], "epochs": x["epochs"], "sec_per_step": x["sec_per_step"],
                    "sec_per_epoch": x["sec_per_epoch"], "backbone_change": backbone_change,
                    "linear_probe_history": x.get("linear_probe_history")}
    if not keep_model:
        result.model = None
    if log is not None:
        log.add(**summary(result))
    return result


SUMMARY = ("labels_per_class", "frozen_stages", "bn", "head", "lr", "lr_decay", "linear_probe_steps",
           "from_scratch", "seed", "note", "trainable_params", "steps", "sec_per_epoch", "val_acc", "test_acc",
           "interrupted")


def summary(result: RunResult, columns=SUMMARY) -> dict:
    """The scalar settings and results of a run (for a RunLog row or a table)."""
    row = result.row()
    return {k: row[k] for k in columns if k in row}


# ---------------------------------------------------------------------------------------------
# From-scratch baselines trained to convergence (cached; ``make prepare`` builds them)
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ScratchConfig:
    """Everything that determines one converged from-scratch species model (its hash names the
    cache file). ``data`` fingerprints the exact training and validation images and labels."""
    arch: dict
    data: str
    labels_per_class: int
    seed: int
    steps: int
    evals: int
    lr: float
    batch_size: int
    augment: bool
    recipe: int = RECIPE


def scratch_config(task: ClassificationTask, labels_per_class: int, *, seed: int, lr: float, mode: str | None = None,
                   source=None) -> ScratchConfig:
    """The cache key's config of the converged from-scratch run on ``task`` (its exact training and
    validation data, ``mode``'s budget and ``source``'s network). Renaming a field here changes
    every key: ``tests/test_runner.py`` holds keys that main's code computed, to catch it."""
    S = sizes("finetune", mode)
    return ScratchConfig(arch=backbone_key(mode, source),
                         data=data_fingerprint(task.x_train, task.y_train, task.x_val, task.y_val),
                         labels_per_class=labels_per_class, seed=seed, steps=S.scratch_steps,
                         evals=S.scratch_evals, lr=lr, batch_size=min(S.batch_size, len(task.x_train)), augment=True)


def scratch_converged(labels_per_class: int | None = None, *, seed: int = 0, lr: float | None = None,
                      mode: str | None = None, progress: bool = True, device="auto",
                      source: str | None = None) -> RunResult:
    """From scratch with its own budget: ``S.scratch_steps`` steps at its own rate (default the
    rate ``tuned_scratch_lr`` chose on validation), keeping the weights of the best validation
    evaluation (early stopping). Every class repeats these runs identically, so the trained model
    is cached, keyed by ``ScratchConfig``; ``make prepare`` builds them.

    Returns a RunResult like ``run_finetune``'s; ``steps`` is the budget, ``best_step`` the step
    whose weights were kept (after it validation accuracy stopped improving); the History holds
    validation and test accuracy along the run.
    """
    setup = Setup.resolve(mode, source, device, progress)
    mode, source, device = setup.mode, setup.source, setup.device
    S = sizes("finetune", mode)
    labels_per_class = labels_per_class or S.headline_labels
    lr = lr or tuned_scratch_lr(setup)
    task = species_data(labels_per_class, seed=seed, device=device, mode=mode, source=source)
    batch_size = min(S.batch_size, len(task.x_train))
    config = scratch_config(task, labels_per_class, seed=seed, lr=lr, mode=mode, source=source)

    def make():
        return build_model(from_scratch=True, seed=seed, num_classes=task.num_classes, device=device, mode=mode,
                           source=source)

    def train_it():
        return run_finetune(labels_per_class, from_scratch=True, lr=lr, seed=seed, steps=S.scratch_steps,
                            evals=S.scratch_evals, keep_best=True, test_curve=True, keep_model=True,
                            progress=progress, device=device, mode=mode, source=source)

    model, history, info, cached = cached_run("species_scratch", config, make, train_it, device=device)
    if cached and progress:
        print(f"from scratch, {labels_per_class}/class, seed {seed}, lr {lr:g}: loaded from the cache "
              f"(trained earlier, {S.scratch_steps} steps in {info['train_s']:.0f} s)")
    return RunResult(
        settings={"task": task.name, "labels_per_class": labels_per_class, "frozen_stages": 0, "bn": BN_DEFAULT,
                  "head": "linear", "lr": lr, "lr_decay": None, "linear_probe_steps": 0, "from_scratch": True,
                  "seed": seed, "batch_size": batch_size, "augment": True, "note": "converged"},
        metrics={"val_acc": accuracy(model, task.x_val, task.y_val),
                 "test_acc": accuracy(model, task.x_test, task.y_test)},
        trainable_params=trainable_params(model),
        total_params=count_params(model), steps=S.scratch_steps,
        train_s=info["train_s"], history=history, cached=cached, extra={"best_step": info["best_step"]})


def scratch_lr_runs(setup: Setup | None = None) -> list[RunResult]:
    """The from-scratch learning-rate grid ``S.scratch_lr_grid``: one converged run per rate at
    the headline labels, seed 0 (cached). ``setup``: mode, source, device, progress (default:
    ``Setup.resolve()``, the environment's)."""
    setup = setup or Setup.resolve()
    S = sizes("finetune", setup.mode)
    return [scratch_converged(S.headline_labels, seed=0, lr=lr, mode=setup.mode, progress=setup.progress,
                              device=setup.device, source=setup.source)
            for lr in S.scratch_lr_grid]


def tuned_scratch_lr(setup: Setup | None = None) -> float:
    """From scratch's own learning rate: the rate of ``S.scratch_lr_grid`` with the best
    validation accuracy (``scratch_lr_runs``)."""
    from .stats import best_by
    return best_by(scratch_lr_runs(setup), "val_acc").lr


def prepare_scratch_baselines(mode: str | None = None) -> list[RunResult]:
    """``make prepare``: every converged from-scratch run lesson 02 shows in ``mode`` (the rate
    grid, then each labels-per-class point over ``S.seeds`` seeds), trained or found in the cache."""
    mode = mode or current_mode()
    S = sizes("finetune", mode)
    lr = tuned_scratch_lr(Setup.resolve(mode))
    return [scratch_converged(n, seed=seed, lr=lr, mode=mode) for n in S.labels_per_class for seed in range(S.seeds)]
