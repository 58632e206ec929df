"""Lesson 02's harness: fine-tuned vs from scratch (same budget, and converged), over seeds.

The converged from-scratch runs themselves are a mechanism (``helpers.experiments.
scratch_converged``, cached and built by ``make prepare``); this module holds the lesson's table
and its registered claims.
"""
from __future__ import annotations

from ..claims import Claim
from ..stats import difference, exceeds, mean_and_spread


def seed_summary(runs, metric: str = "test_acc") -> dict:
    """Mean, spread and the per-seed values of ``metric`` over ``runs``."""
    values = [float(getattr(r, metric)) for r in runs]
    mean, spread = mean_and_spread(values)
    return {"mean": mean, "spread": spread, "values": values}


def labels_curve_rows(finetuned: dict, scratch: dict, converged: dict, finetuned_converged: dict) -> list[dict]:
    """One row per labels-per-species point: each arm's mean test accuracy and spread over seeds.

    ``finetuned``, ``scratch`` (both at fine-tuning's budget), ``converged`` (from scratch at its
    own budget) and ``finetuned_converged`` (fine-tuning at its own budget), each
    {labels_per_class: [RunResult, ...]}."""
    arms = {"finetuned": finetuned, "scratch": scratch, "scratch_converged": converged,
            "finetuned_converged": finetuned_converged}
    rows = []
    for n in finetuned:
        row = {"labels_per_class": int(n)}
        for arm, runs in arms.items():
            summary = seed_summary(runs[n])
            row.update({f"{arm}_acc": summary["mean"], f"{arm}_spread": summary["spread"],
                        f"{arm}_accs": summary["values"]})
        row["seeds"] = len(row["finetuned_accs"])
        rows.append(row)
    return rows


def gap(row):
    """The fair gap at one labels-curve row: fine-tuned minus from scratch, each at its own budget
    (early-stopped on validation), as a ``Difference``. Paired by seed: seed i draws the same
    labelled images (and batch order) for both arms, so the per-seed differences are the evidence."""
    return difference(row["finetuned_converged_accs"], row["scratch_converged_accs"], paired=True)


# Every "real" below is a paired t-test over the seeds (two-sided, 95%): each arm ran on the same
# seeds, and a seed fixes the labelled images drawn and the batch order, which both arms share.
CLAIMS = [
    Claim("02", "fine-tuning beats from scratch at the same budget of steps (real: a paired t-test over the "
                "seeds, 95%)",
          lambda m: exceeds(m["finetuned_accs"], m["scratch_accs"], paired=True)),
    Claim("02", "from scratch with its own rate and a converged budget beats from scratch at fine-tuning's "
                "budget (real: a paired t-test over the seeds, 95%): the same-budget baseline is under-trained",
          lambda m: exceeds(m["scratch_converged_accs"], m["scratch_accs"], paired=True)),
    Claim("02", "the same-budget from-scratch run understates from scratch by more than 20 points of test "
                "accuracy at the headline labels",
          lambda m: m["scratch_converged_acc"] - m["scratch_acc"] > 0.20),
    Claim("02", "from scratch reaches its best validation accuracy only after at least ten times "
                "fine-tuning's budget of steps (mean over seeds)",
          lambda m: m["scratch_converged_steps"] >= 10 * m["finetune_steps"]),
    # At the headline labels the lesson prints "real" or "tie" from the numbers: with 3 seeds the
    # class run of 2026-12-07 had fine-tuning ahead on every seed but tied (p = 0.105, 2 degrees
    # of freedom), so the registered claim is at the fewest labels, where the lesson's argument is.
    Claim("02", "each at its own budget (early-stopped on validation), fine-tuning beats from scratch at the "
                "fewest labels per species (real: a paired t-test over the seeds, 95%)",
          lambda m: _beats(gap(m["labels_curve"][0]))),
    Claim("02", "each at its own budget, fine-tuning's lead over from scratch is smaller at the largest label "
                "count than at the smallest",
          lambda m: _fair_gap(m["labels_curve"][-1]) < _fair_gap(m["labels_curve"][0])),
]


def _beats(d) -> bool:
    return bool(d.real and d.diff > 0)


def _fair_gap(row) -> float:
    return row["finetuned_converged_acc"] - row["scratch_converged_acc"]
