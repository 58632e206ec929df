"""Lesson 06's harness: one parameter-efficient tuning experiment on the species task."""
from __future__ import annotations

import math
import time

from ..augment import flip_and_shift
from ..device import resolve_device, seed_everything
from ..experiments import build_model
from ..lora import DEFAULT, RESNET_TARGETS, memory_report, prepare_peft
from ..losses import cross_entropy_loss
from ..modes import sizes
from ..tasks import species_test_set, species_train_set
from ..training import Batches, accuracy, train


def run_peft(method: str, *, rank: int = 4, alpha: float | None = None, targets=RESNET_TARGETS,
             labels_per_class: int | None = None, lr: float | None = None, steps: int | None = None,
             seed: int = 0, name: str = DEFAULT, data=None, bn: str = "update", progress: bool = True,
             keep_model: bool = False, log=None, device="auto") -> dict:
    """Tune a FRESH copy of lesson 01's model on the species task with one method. Returns a dict.

    The data, the head, the budget (optimiser steps, batch size) and the test set are those of
    ``helpers.experiments.run_finetune``, so numbers compare with lessons 02-04. The learning rate
    defaults to the lesson's rate for the method (``sizes("peft")``): a few new parameters want a
    larger rate than a whole network. ``data=(x_train, y_train, x_test, y_test)`` trains on
    another classification task with as many classes as species instead (same head size).

    Returns:
        dict with method, rank, test_acc, trainable_params, total_params, trainable_frac,
        optimizer_bytes (AdamW state), sec_per_epoch, history, and "model" if ``keep_model``.
    """
    S, P = sizes("finetune"), sizes("peft")
    device = resolve_device(device)
    labels_per_class = labels_per_class or S.headline_labels
    steps = steps or S.steps
    lr = lr or {"full": S.lr, "probe": S.probe_lr, "bitfit": P.bitfit_lr, "lora": P.lora_lr}[method]
    model = build_model(seed=seed, device=device)
    prepare_peft(model, method, rank=rank, alpha=alpha, targets=targets, name=name, seed=seed, bn=bn)
    model.to(device)
    report = memory_report(model)
    if data is None:
        x_train, y_train = species_train_set(labels_per_class, seed=seed, device=device)
        x_test, y_test = species_test_set(device=device)
    else:
        x_train, y_train, x_test, y_test = (t.to(device) for t in data)
    batches = Batches(x_train, y_train, batch_size=min(S.batch_size, len(x_train)), seed=seed,
                      augment=flip_and_shift)
    seed_everything(seed)
    history = train(model, cross_entropy_loss, batches, epochs=math.ceil(steps / len(batches)),
                    max_steps=steps, lr=lr, device=device, log_every=max(1, steps // 10),
                    progress=progress, desc=f"{method}" + (f" r={rank}" if method == "lora" else ""))
    start = time.perf_counter()
    acc = accuracy(model, x_test, y_test)
    result = {"method": method, "rank": rank if method == "lora" else None, "lr": lr, "seed": seed,
              "test_acc": acc, "trainable_params": report["trainable_params"],
              "total_params": report["total_params"], "trainable_frac": report["trainable_frac"],
              "optimizer_bytes": report["optimizer_bytes"],
              "sec_per_epoch": history.seconds[-1] / max(1e-9, history.steps_done / len(batches)),
              "eval_s": time.perf_counter() - start, "history": history}
    if keep_model:
        result["model"] = model
    if log is not None:
        log.add(**{k: v for k, v in result.items() if k not in ("history", "model")})
    return result
