"""Lesson 03's harness: partial fine-tuning, timed fairly across freeze depths."""
from __future__ import annotations

import math
import time

import torch

from ..device import resolve_device
from ..experiments import build_model
from ..losses import cross_entropy_loss
from ..modes import sizes
from ..surgery import freeze_stages
from ..tasks import species_train_set


def time_per_epoch(depths, labels_per_class: int | None = None, *, rounds: int = 5, steps: int = 2,
                   bn: str = "frozen", seed: int = 0, device="auto") -> dict:
    """Seconds per training epoch at each freeze depth, measured fairly on a busy machine.

    Other programs slow a shared CPU down at random moments, so timing one run after another
    compares moments more than depths. Here every depth gets a fresh model; the depths take
    turns (``rounds`` rounds of ``steps`` training steps each), and each keeps its fastest round.

    Returns:
        {depth: seconds per epoch} for the training set of ``labels_per_class`` per species.
    """
    S = sizes("finetune")
    device = resolve_device(device)
    labels_per_class = labels_per_class or S.headline_labels
    x, y = species_train_set(labels_per_class, seed=seed, device=device)
    batch_size = min(S.batch_size, len(x))
    xb, yb = x[:batch_size], y[:batch_size]
    setups = {}
    for k in depths:
        model = freeze_stages(build_model(seed=seed, device=device), k, bn=bn).train()
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=S.lr)
        setups[k] = (model, opt)

    def step(model, opt):
        loss = cross_entropy_loss(model, (xb, yb))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for model, opt in setups.values():      # warm-up: first steps allocate memory
        step(model, opt)
    best = {k: float("inf") for k in setups}
    for _ in range(rounds):
        for k, (model, opt) in setups.items():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            for _ in range(steps):
                step(model, opt)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            best[k] = min(best[k], (time.perf_counter() - start) / steps)
    return {k: best[k] * math.ceil(len(x) / batch_size) for k in setups}
