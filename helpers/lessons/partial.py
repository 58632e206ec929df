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
from ..stats import best_by, difference, mean_and_spread
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


def choose_rates(runs_by_depth_and_rate: dict) -> tuple[dict, dict]:
    """Each depth's learning rate, chosen on validation.

    A frozen backbone under a new head wants another rate than a fully tuned one (lesson 04's
    linear probe trains at ``S.probe_lr``), so comparing depths at one shared rate would compare
    rates as much as depths. Each depth gets the rate of its grid with the best mean validation
    accuracy over the seeds (ties: the first rate); test accuracy plays no part.

    Args:
        runs_by_depth_and_rate: ``{(depth, lr): [RunResult, ...]}`` over seeds.
    Returns:
        ``({depth: chosen lr}, {depth: [the RunResults at that lr]})``.

    Example:
        >>> rates, runs = choose_rates({(k, lr): [run_finetune(frozen_stages=k, lr=lr, seed=s) for s in range(3)]
        ...                             for k in range(6) for lr in (1e-3, 1e-2)})
    """
    by_depth = {}
    for (depth, lr), runs in runs_by_depth_and_rate.items():
        by_depth.setdefault(depth, []).append(
            {"lr": lr, "val_acc": mean_and_spread([r.val_acc for r in runs])[0], "runs": runs})
    chosen = {depth: best_by(rows, "val_acc") for depth, rows in by_depth.items()}
    return {d: row["lr"] for d, row in chosen.items()}, {d: row["runs"] for d, row in chosen.items()}


def freezing_finding(test_accs_by_depth: dict, trainable_by_depth: dict) -> str:
    """What the depth table says about the lesson's hypothesis, in words chosen from the numbers.

    The hypothesis: the stages nearest the input compute general features, so they can stay
    frozen at little cost in accuracy. Each depth is compared with nothing frozen over the seeds
    (``helpers.stats.difference``, paired by seed: "real" when a paired t-test at 95% says so).

    Args:
        test_accs_by_depth: ``{depth: [test accuracy per seed]}``, depth 0 = nothing frozen.
        trainable_by_depth: ``{depth: trainable parameters}``.
    Returns:
        a paragraph: which depths tie with full fine-tuning, which lose for real, whether the
        hypothesis is borne out, and what Yosinski et al. (2014) and Kumar et al. (2022) found.
    """
    depths = sorted(test_accs_by_depth)
    full = test_accs_by_depth[depths[0]]
    diffs = {k: difference(test_accs_by_depth[k], full, paired=True) for k in depths[1:]}   # same seeds, same images
    ties = [k for k, d in diffs.items() if not d.real]
    losses = [k for k, d in diffs.items() if d.real and d.diff < 0]
    gains = [k for k, d in diffs.items() if d.real and d.diff > 0]
    deepest = depths[-1]
    head = diffs[deepest]
    share = trainable_by_depth[deepest] / trainable_by_depth[depths[0]]
    parts = [f"Only the head ({share:.1%} of the parameters) is {100 * abs(head.diff):.1f} points "
             f"{'below' if head.diff < 0 else 'above'} full fine-tuning"]
    if min(len(accs) for accs in test_accs_by_depth.values()) < 2:
        return parts[0] + (", from a single seed per depth: no spread to judge a difference by, so this run "
                           "cannot test the hypothesis (it needs at least 2 seeds).")
    parts[0] += " (real: a paired t-test at 95%)." if head.real else " (not significant by a paired t-test at 95%: a tie)."
    if ties:
        parts.append(f"Depths that tie with full fine-tuning: {', '.join(map(str, ties))}.")
    if gains:
        parts.append(f"Depths that beat it for real: {', '.join(map(str, gains))}.")
    shallow_tie = depths[1] in ties or depths[1] in gains
    if losses and not shallow_tie:
        parts.append(
            "The hypothesis is not borne out here: freezing only the stage nearest the input already "
            f"costs accuracy for real, and depths {', '.join(map(str, losses))} all lose against tuning "
            "everything. Yosinski et al. (2014) found the first layers general and the last specific, "
            "transfer falling as the pre-training and the target task grow apart, and tuning the "
            "transferred layers doing at least as well as keeping them frozen, at every depth. Our "
            "pre-training names one object among 14 kinds of flat-coloured shapes; telling six bird "
            "species apart by colour, crest and tail length is far from it, and in a network this small "
            "even the stem's filters were shaped by the general task and may have to change. Kumar et "
            "al. (2022) also report full fine-tuning ahead of frozen features on data like the training "
            "set (lesson 04 measures the other side: data unlike it).")
    elif losses:
        parts.append(
            "The hypothesis holds near the input only: the shallow depths cost nothing measurable, "
            f"while depths {', '.join(map(str, losses))} lose for real. That is Yosinski et al.'s (2014) picture: early features are general, "
            f"later ones specific to the pre-training task, and freezing the specific ones costs accuracy "
            f"when the target task differs.")
    else:
        parts.append(
            "The hypothesis is borne out here: no depth loses to full fine-tuning by a paired t-test at "
            "95%, so freezing saves time and memory at no measurable cost. Yosinski et al. (2014) found the "
            "same when pre-training and target tasks are close.")
    return " ".join(parts)


CLAIMS = [
    Claim("03", "an epoch with every stage frozen (only the head trains) takes less time than with nothing frozen",
          lambda m: m["freeze_table"][-1]["sec_per_epoch"] < m["freeze_table"][0]["sec_per_epoch"]),
]
