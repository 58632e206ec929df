"""One-call fine-tuning experiments on an image classification task, and their one result type.

``run_finetune(labels_per_class, frozen_stages=..., lr=..., seed=...)`` is one whole experiment
(``adaptation=Adaptation(head=...)`` and the other groups for the rest): it builds its model FRESH inside the call (lesson 01's checkpoint via
``pretrained_image_model()``, or a random initialisation with ``from_scratch=True``), does the
surgery, trains a stated budget of optimiser steps, and measures validation and test accuracy.
The task is the bird-species task (``helpers.tasks.species_data``) unless ``task=`` gives another
``ClassificationTask``. Re-running a cell that calls it never continues from weights another run
changed; ``start_state_hash`` proves it (two runs with the same seed start from equal weights).

Every experiment runner in the course (this one, lesson 05's counter, lesson 06's PEFT methods,
lesson 10's students) returns a ``RunResult``: the settings, the metrics (``val_...`` for
selection, ``test_...`` for reporting), the cost (trainable parameters, steps, seconds), the
History, and the model when asked for (``report=Report(keep_model=True)``). The knobs the
lessons' cells vary are arguments of their own; the rest comes in typed groups of
``helpers.runner`` (``Adaptation``, ``Budget``, ``Report``, ``Setup``).

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
from .checks import check_seed, keywords_checked, one_of, whole_number
from .device import resolve_device, seed_everything
from .losses import cross_entropy_loss
from .models import backbone_key, image_model_config, pretrained_image_model, scratch_image_model
from .modes import current_mode, sizes
from .runner import (
    HEADS,
    Adaptation,
    Budget,
    Objective,
    Recipe,
    Report,
    RunResult,
    Setup,
    cached_run,
    kept_value,
    resolve_setup,
    run,
)
from .surgery import (
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
                 frozen_stages: int = 0, lr: float | None = None, seed: int = 0, from_scratch: bool = False,
                 log=None, adaptation: Adaptation = Adaptation(), budget: Budget = Budget(),
                 report: Report = Report(), setup: Setup = Setup()) -> RunResult:
    """One fine-tuning experiment from a fresh model. Returns a ``RunResult``.

    The knobs the lessons' cells vary are arguments of their own; the rest comes in typed groups
    (``helpers.runner``): ``adaptation`` (head, BatchNorm, layer-wise rates, LP-FT), ``budget``
    (steps, batch size, augmentation, evaluations, early stopping), ``report`` (note, hook,
    keep_model, read_test) and ``setup`` (mode, source, device, progress).

    Args:
        labels_per_class: labelled training images per species (default: the lesson's headline);
            ignored when ``task`` is given.
        task: another ``ClassificationTask`` (e.g. your own images); default the species task.
        frozen_stages: freeze the first k stages nearest the input (0 = tune everything,
            ``len(stages(model))`` = only the head trains: a linear probe with a linear head).
        lr: peak learning rate (default from the sizes: fine-tuning or from-scratch rate).
        seed: chooses the training images, the head's initialisation and the batch order.
        from_scratch: start from random weights instead of lesson 01's checkpoint.
        log: a ``RunLog``; the run's row is appended to it (``report.note`` adds a column).
        adaptation: ``Adaptation``: bn (BatchNorm statistics in frozen stages), head ("linear",
            "mlp" of ``hidden`` units, "block"), lr_decay (layer-wise rates: the head gets ``lr``,
            each stage nearer the input ``lr_decay`` times the next one's), linear_probe_steps
            (LP-FT: first train only the head this many steps; they count in the budget's steps,
            so LP-FT and full fine-tuning get the same budget). LoRA is ``finetune_task``'s.
        budget: ``Budget``: steps and batch_size (default from the sizes; fixed whatever the
            training-set size), augment, evals (validation evaluations along the run, the last at
            the end), keep_best (early stopping on validation accuracy; ``extra["best_step"]``
            says when), test_curve (the evaluations also measure test accuracy, for a curve).
        report: ``Report``: note, hook (e.g. a ``LiveCurve``, metric ``val_acc``), keep_model
            (also return the trained model), read_test (False: no test accuracy).
        setup: ``Setup``: mode (whose sizes and checkpoint), source (the pre-trained weights:
            "course", a timm model name, an ``nn.Module``; None reads ``$COURSE_PRETRAINED``
            once, here; the species images follow its input size), device, progress.
    Returns:
        RunResult with metrics val_acc and test_acc (and shifted_acc when the task has a shifted
        test set); extra: best_step (the step whose weights were kept), sec_per_epoch (training seconds per
        pass over the training set), sec_per_step, epochs, backbone_change (how far the
        backbone's weights moved: ||w - w0|| / ||w0||), linear_probe_history; and
        ``start_state_hash`` (fingerprint of the weights before training).

    Example (a quiet run in the smoke mode's sizes):
        >>> r = run_finetune(2, frozen_stages=2, budget=Budget(steps=2, evals=0),
        ...                  setup=Setup(mode="smoke", device="cpu", progress=False))
        >>> r.steps, r.frozen_stages, r.head
        (2, 2, 'linear')
    """
    for name, value, kind in (("adaptation", adaptation, Adaptation), ("budget", budget, Budget),
                              ("report", report, Report)):
        if not isinstance(value, kind):
            raise TypeError(f"{name} must be a helpers.runner.{kind.__name__}, e.g. {kind.__name__}(); got {value!r:.80}")
    if budget.stop_when is not None:
        raise ValueError("run_finetune stops early on the best validation accuracy (Budget.keep_best); "
                         "Budget.stop_when is finetune_qa's")
    if adaptation.lora_rank is not None or adaptation.lora_targets is not None:
        raise ValueError("run_finetune has no LoRA: Adaptation.lora_rank and lora_targets are finetune_task's "
                         "(or lesson 06's run_peft)")
    setup = resolve_setup(setup)        # the edge: nothing below reads the environment
    mode, source, device = setup.mode, setup.source, setup.device
    bn, head, hidden, lr_decay = adaptation.bn, adaptation.head, adaptation.hidden, adaptation.lr_decay
    linear_probe_steps = adaptation.linear_probe_steps
    augment, keep_best, test_curve = budget.augment is not False, bool(budget.keep_best), budget.test_curve
    note, hook, keep_model = report.note, report.hook, report.keep_model
    S = sizes("finetune", mode)
    steps = budget.steps or S.steps
    whole_number("labels_per_class", labels_per_class, allow_none=True)
    check_seed(seed)
    if linear_probe_steps >= steps:
        raise ValueError(f"linear_probe_steps={linear_probe_steps} leaves nothing of the budget steps={steps} for "
                         f"fine-tuning: the probe's steps count in the budget")
    if lr is not None and (isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not 0 < lr < math.inf):
        raise ValueError(f"lr must be a positive number; got {lr!r}")
    lr = lr or (S.scratch_lr if from_scratch else S.lr)
    evals = S.evals if budget.evals is None else budget.evals
    if keep_best and not (evals or budget.eval_every):
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
        metrics = {"val_acc": kept_value(history, "val_acc")}
        if report.read_test:
            metrics["test_acc"] = accuracy(model, task.x_test, task.y_test)
        if metrics["val_acc"] is None:
            metrics["val_acc"] = accuracy(model, task.x_val, task.y_val)
        if task.x_shifted is not None and report.read_test:
            metrics["shifted_acc"] = accuracy(model, task.x_shifted, task.y_shifted)
        return metrics

    tune_steps = steps - linear_probe_steps
    batch_size = min(budget.batch_size or S.batch_size, len(task.x_train))
    recipe = Recipe(steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                    augment=flip_and_shift if augment else None,
                    eval_every=budget.eval_every or (max(1, tune_steps // evals) if evals else None),
                    keep_best=keep_best,
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
        return run_finetune(labels_per_class, from_scratch=True, lr=lr, seed=seed,
                            budget=Budget(steps=S.scratch_steps, evals=S.scratch_evals, keep_best=True,
                                          test_curve=True),
                            report=Report(keep_model=True), setup=setup)

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
