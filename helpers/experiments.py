"""The bird-species task of lessons 02-04, and one-call fine-tuning experiments.

The task: tell the six bird species of the image world apart (``BirdSpecies``) from a few
labelled images per species; a fixed, larger test set (its own seed) measures every run.

``run_finetune(labels_per_class, frozen_stages=..., head=..., lr=..., seed=...)`` is one whole
experiment: it builds its model FRESH inside the call (lesson 01's checkpoint via
``pretrained_image_model()``, or a random initialisation with ``from_scratch=True``), does the
surgery, trains a fixed number of optimiser steps and measures the test accuracy. Re-running a
cell that calls it never continues from weights another run changed; ``start_state_hash`` in the
result proves it (two runs with the same seed start from identical weights).

Example:
    >>> log = RunLog("03_freeze")
    >>> r = run_finetune(10, frozen_stages=2, log=log)      # 10 labels per species
    >>> r["test_acc"], r["trainable_params"], r["sec_per_epoch"]
    >>> log.table()
"""
from __future__ import annotations

import hashlib
import math

import torch.nn as nn

from .augment import flip_and_shift
from .device import resolve_device, seed_everything
from .losses import cross_entropy_loss
from .models import create_image_model, pretrained_image_model
from .modes import sizes
from .surgery import add_block, freeze_stages, layerwise_lr_groups, replace_head, stages, trainable_params, unfreeze
from .tasks import species_task, species_test_set, species_train_set
from .training import Batches, accuracy, train

HEADS = ("linear", "mlp", "block")












def state_hash(model: nn.Module) -> str:
    """A short fingerprint of every weight and buffer: equal hashes mean equal models."""
    h = hashlib.sha1()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def build_model(*, from_scratch: bool = False, head: str = "linear", hidden: int = 64, seed: int = 0,
                device="auto") -> nn.Module:
    """A fresh model for the species task: lesson 01's weights (or random ones) and a new head.

    ``head``: "linear" (one new linear layer), "mlp" (a hidden layer of ``hidden`` units) or
    "block" (an extra residual block after the last stage, then a linear head).
    """
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}; got {head!r}")
    device = resolve_device(device)
    task = species_task()
    if from_scratch:
        model = create_image_model(num_classes=task.num_classes, seed=seed).to(device)
    else:
        model, _ = pretrained_image_model(device=device, verbose=False)
    seed_everything(seed)
    if head == "block":
        add_block(model, seed=seed)
    replace_head(model, task.num_classes, hidden=hidden if head == "mlp" else None, seed=seed)
    return model.to(device)


def run_finetune(labels_per_class: int | None = None, *, frozen_stages: int = 0, bn: str = "frozen",
                 head: str = "linear", hidden: int = 64, lr: float | None = None,
                 lr_decay: float | None = None, linear_probe_steps: int = 0, seed: int = 0,
                 from_scratch: bool = False, steps: int | None = None, batch_size: int | None = None,
                 augment: bool = True, evals: int | None = None, log=None, hook=None,
                 progress: bool = True, keep_model: bool = False, device="auto", **log_extra) -> dict:
    """One fine-tuning experiment on the species task, from a fresh model. Returns a dict.

    Args:
        labels_per_class: labelled training images per species (default: the lesson's headline).
        frozen_stages: freeze the first k stages nearest the input (0 = tune everything,
            ``len(stages(model))`` = only the head trains: a linear probe with ``head="linear"``).
        bn: BatchNorm statistics in frozen stages: "frozen" (kept) or "update" (adapt to the data).
        head: "linear", "mlp" (``hidden`` units) or "block" (extra residual block + linear).
        lr: peak learning rate (default from the sizes: fine-tuning or from-scratch rate).
        lr_decay: layer-wise learning rates: the head gets ``lr``, each stage nearer the input
            ``lr_decay`` times the rate of the stage after it (None: one rate for all).
        linear_probe_steps: LP-FT: first train only the head this many steps (backbone frozen),
            then fine-tune with ``frozen_stages`` for ``steps`` more steps.
        seed: chooses the training images, the head's initialisation and the batch order.
        from_scratch: start from random weights instead of lesson 01's checkpoint.
        steps, batch_size: optimiser steps and batch size (default from the sizes); the number of
            steps is fixed whatever the training-set size, so every run gets the same budget.
        log: a ``RunLog``; the run's settings and results are appended to it. Extra keyword
            arguments (``**log_extra``) are added to that row (e.g. ``note="my idea"``).
        hook: ``hook(history)`` during training, e.g. a ``LiveCurve``.
        keep_model: also return the trained model under "model".
    Returns:
        dict with test_acc, trainable_params, total_params, sec_per_epoch (training seconds per
        pass over the training set), train_s, steps, epochs, backbone_change (how far the
        backbone's weights moved: ||w - w0|| / ||w0||), start_state_hash (fingerprint of the
        weights before training), history (a ``History``), and the settings.
    """
    S = sizes("finetune")
    device = resolve_device(device)
    labels_per_class = labels_per_class or S.headline_labels
    steps = steps or S.steps
    lr = lr or (S.scratch_lr if from_scratch else S.lr)
    evals = S.evals if evals is None else evals

    model = build_model(from_scratch=from_scratch, head=head, hidden=hidden, seed=seed, device=device)
    start_state_hash = state_hash(model)
    start_backbone = [p.detach().clone() for _, st in stages(model) for p in st.parameters()]
    n_stages = len(stages(model))
    if not 0 <= frozen_stages <= n_stages:
        freeze_stages(model, frozen_stages, bn=bn)          # raises, listing the valid depths

    x_train, y_train = species_train_set(labels_per_class, seed=seed, device=device)
    x_test, y_test = species_test_set(device=device)
    batch_size = min(batch_size or S.batch_size, len(x_train))
    batches = Batches(x_train, y_train, batch_size=batch_size, seed=seed,
                      augment=flip_and_shift if augment else None)

    def evaluate(m):
        return {"test_acc": accuracy(m, x_test, y_test)}

    seed_everything(seed)
    lp_history = None
    if linear_probe_steps:
        freeze_stages(model, n_stages, bn="frozen")           # stage 1 of LP-FT: the head alone
        lp_history = train(model, cross_entropy_loss, batches, epochs=math.ceil(linear_probe_steps / len(batches)),
                           max_steps=linear_probe_steps, lr=S.probe_lr, device=device,
                           progress=progress, desc="linear probe", log_every=max(1, linear_probe_steps // 10))
        unfreeze(model)
    freeze_stages(model, frozen_stages, bn=bn)
    if head == "block":
        unfreeze(model, "*.extra")        # new layers always train, even inside a frozen stage
    groups = layerwise_lr_groups(model, lr, decay=lr_decay) if lr_decay else None
    desc = ("scratch" if from_scratch else f"freeze {frozen_stages}") + f", {labels_per_class}/class"
    history = train(model, cross_entropy_loss, batches, epochs=math.ceil(steps / len(batches)),
                    max_steps=steps, lr=lr, param_groups=groups, device=device,
                    evaluate=evaluate, eval_every=max(1, steps // evals) if evals else None,
                    log_every=max(1, steps // 20), progress=progress, desc=desc, hook=hook)
    train_s = history.seconds[-1] if history.seconds else float("nan")
    epochs = history.steps_done / len(batches)
    # Seconds per epoch from the fastest stretch of steps between progress refreshes: a shared
    # CPU slows some stretches down at random, the fastest is the model's own cost.
    t, k = [0.0] + history.seconds, [0] + history.step
    per_step = [(t[i + 1] - t[i]) / (k[i + 1] - k[i]) for i in range(1, len(t) - 1) if k[i + 1] > k[i]]
    sec_per_step = min(per_step) if per_step else train_s / max(1, history.steps_done)
    moved = [(p.detach() - p0).norm() ** 2 for p0, p in
             zip(start_backbone, (p for _, st in stages(model) for p in st.parameters()))]
    backbone_change = (sum(moved) ** 0.5 / sum(p0.norm() ** 2 for p0 in start_backbone) ** 0.5).item()
    result = {
        "labels_per_class": labels_per_class, "frozen_stages": frozen_stages, "bn": bn, "head": head,
        "lr": lr, "lr_decay": lr_decay, "linear_probe_steps": linear_probe_steps, "seed": seed,
        "from_scratch": from_scratch, "steps": history.steps_done, "batch_size": batch_size,
        "test_acc": history.last_eval("test_acc"),
        "trainable_params": trainable_params(model),
        "total_params": sum(p.numel() for p in model.parameters()),
        "augment": augment, "train_s": train_s, "epochs": epochs,
        "sec_per_epoch": sec_per_step * len(batches), "sec_per_step": sec_per_step,
        "backbone_change": backbone_change,
        "start_state_hash": start_state_hash,
        "history": history, "linear_probe_history": lp_history,
    }
    if keep_model:
        result["model"] = model
    if log is not None:
        log.add(**summary(result), **log_extra)
    return result


SUMMARY = ("labels_per_class", "frozen_stages", "bn", "head", "lr", "lr_decay", "linear_probe_steps",
           "from_scratch", "seed", "trainable_params", "sec_per_epoch", "test_acc")


def summary(result: dict, columns=SUMMARY) -> dict:
    """The scalar settings and results of a run (for a RunLog row or a table)."""
    return {k: result[k] for k in columns if k in result}
