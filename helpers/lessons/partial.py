"""Lesson 03's harness: partial fine-tuning, timed fairly across freeze depths, over seeds."""
from __future__ import annotations

import math
import time

import torch

from ..claims import Claim
from ..device import resolve_device
from ..experiments import build_model
from ..losses import cross_entropy_loss
from ..modes import sizes
from ..stats import mean_and_spread
from ..surgery import BN_DEFAULT, freeze_stages
from ..tasks import species_train_set


def time_per_epoch(depths, labels_per_class: int | None = None, *, rounds: int = 5, steps: int = 2,
                   bn: str = BN_DEFAULT, seed: int = 0, device="auto") -> dict:
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


def seed_rows(runs_by_key: dict, key_name: str) -> list[dict]:
    """One row per key ({key: [RunResult, ...]} over seeds): mean validation accuracy, mean test
    accuracy and the spreads, the trainable parameters, and how many seeds."""
    rows = []
    for key, runs in runs_by_key.items():
        val, val_spread = mean_and_spread([r.val_acc for r in runs])
        test, test_spread = mean_and_spread([r.test_acc for r in runs])
        rows.append({key_name: key, "trainable_params": int(runs[0].trainable_params), "val_acc": val,
                     "val_spread": val_spread, "test_acc": test, "test_spread": test_spread, "seeds": len(runs),
                     "val_accs": [float(r.val_acc) for r in runs], "test_accs": [float(r.test_acc) for r in runs]})
    return rows


# "The more stages are frozen, the fewer parameters train" and "the depth table is a mean over at
# least 3 seeds" are true by construction, so they are unit tests (tests/test_claim_cases.py), not
# claims about the lesson's measurements.
CLAIMS = [
    Claim("03", "an epoch with every stage frozen (only the head trains) takes less time than with nothing frozen",
          lambda m: m["freeze_table"][-1]["sec_per_epoch"] < m["freeze_table"][0]["sec_per_epoch"]),
]
