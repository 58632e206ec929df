"""Lesson 04's harness: new layers on a frozen backbone, LP-FT and full fine-tuning, measured in
and out of distribution (the species on unseen backgrounds), over seeds."""
from __future__ import annotations

from ..claims import Claim
from ..stats import mean_and_spread


def method_rows(runs: dict) -> list[dict]:
    """One row per method ({method: [RunResult, ...]} over seeds): mean validation, test and
    shifted accuracy with spreads, the per-seed values, trainable parameters, steps, seconds."""
    rows = []
    for name, rs in runs.items():
        row = {"method": name, "trainable_params": int(rs[0].trainable_params), "steps": int(rs[0].steps),
               "train_s": sum(r.train_s for r in rs) / len(rs), "seeds": len(rs)}
        for metric in ("val_acc", "test_acc", "shifted_acc"):
            values = [float(getattr(r, metric)) for r in rs]
            mean, spread = mean_and_spread(values)
            short = metric[:-4]
            row.update({metric: mean, f"{short}_spread": spread, f"{short}_accs": values})
        rows.append(row)
    return rows


# That LP-FT and full fine-tuning get the same budget of optimiser steps, the probe's steps
# included, is true by construction (run_finetune counts them): a unit test
# (tests/test_finetune.py::test_lp_ft_counts_its_probe_steps_in_the_budget), not a claim.
CLAIMS = [
    Claim("04", "the unseen backgrounds are a real shift: LP-FT and full fine-tuning both lose accuracy on them",
          lambda m: m["lp_ft_shifted_acc"] < m["lp_ft_acc"] and m["full_ft_shifted_acc"] < m["full_ft_acc"]),
]
