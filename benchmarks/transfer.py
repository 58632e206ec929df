"""Does the course's pre-training transfer to real images? Four arms on real tasks that ship inside
packages (``helpers.real_images``), for each pre-training world:

- fine-tuned: the world's network with a new linear head, every weight trained;
- from scratch: the same architecture (``create_image_model``, the same config) with random weights;
- linear probe: a linear head on the world's frozen features (computed once per draw);
- LP-FT (Kumar et al. 2022): the probe's head on the world's network, then every weight trained.

A seed draws the labelled images; every arm and world sees the same draw, so every comparison is
paired. Each arm's learning rate is chosen on the task's validation split from a small grid, extended
past its edge while a rate at the edge is the best (``search_rates``; on the first seed's draw; the
other seeds use the chosen rate), every run keeps its weights from the
evaluation with the best validation accuracy (early stopping: the budget, chosen on validation),
and the test split is read once per run, for those weights. From scratch does not depend on the
world, so it runs once per draw and is compared with every world's fine-tuning.

Tasks are marked "choose" (scikit-learn's digits: the one task a world's recipe may be chosen on)
or "judge" (all the others: they played no part in any choice, so they judge the recipe).

    python benchmarks/transfer.py [--tasks digits,mnist,faces,patches] [--labels 5,20] [--seeds 5]
                                  [--worlds object,fractal,general] [--mode class] [--out results.json]

The table prints mean test accuracy +- sd over seeds; the verdicts use the course's rule
(``helpers.stats.difference(a, b, paired=True)``: a paired t-test over seeds, 95%).
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from helpers.augment import flip_and_shift
from helpers.device import resolve_device, seed_everything, seeded
from helpers.lessons.your_own import transfer_table, transfer_verdicts
from helpers.losses import cross_entropy_loss
from helpers.models import create_image_model, image_model_config, pretrained_image_model
from helpers.real_images import REAL_TASKS, real_task
from helpers.training import Batches, KeepBest, Monitor, Optimiser, accuracy, train

ROLES = {"digits": "choose"}             # every other task judges
ARMS = ("fine-tuned", "from scratch", "linear probe", "LP-FT")


@dataclass(frozen=True)
class Budget:
    """The benchmark's sizes for one mode (the networks' own sizes are lesson 01's in that mode)."""
    steps: int             # the most optimiser steps of a fine-tuning or LP-FT run
    scratch_steps: int     # ... of a from-scratch run (longer: random weights need more steps to stop improving)
    evals: int             # validation evaluations along them; the best one's weights are kept
    batch_size: int
    ft_lrs: tuple          # peak AdamW rates tried for fine-tuning and LP-FT, on validation
    scratch_lrs: tuple     # ... for from scratch
    probe_lrs: tuple       # ... for the linear probe (full-batch AdamW on frozen features)
    probe_steps: int       # the probe's most steps
    probe_evals: int
    scratch_labels: int = 5    # labels per class at which scratch_steps holds; more labels get proportionally
                               # more steps (the same passes over the larger training set)

    def scratch_steps_at(self, labels: int) -> int:
        """From scratch's most steps at ``labels`` labelled images per class.

        >>> BUDGETS["class"].scratch_steps_at(5), BUDGETS["class"].scratch_steps_at(20)
        (240, 960)
        """
        return self.scratch_steps * max(1, round(labels / self.scratch_labels))


BUDGETS = {
    "smoke": Budget(steps=4, scratch_steps=8, evals=2, batch_size=16, ft_lrs=(1e-3, 1e-2), scratch_lrs=(3e-3, 1e-2),
                    probe_lrs=(1e-2, 1e-1), probe_steps=20, probe_evals=2),
    # class: every network arm gets 240 steps. At 80, from scratch was still improving: the same draws
    # and rates at 240 steps gained 4-12 points of validation accuracy (benchmarks/transfer_budget.py,
    # docs/transfer.md), and a cut-short baseline flatters fine-tuning
    # At 20 labels, 720 steps were still not enough: from scratch on the photo tiles gained 6.5
    # points of validation accuracy from 240 to 720 (p = 0.002; fine-tuning gained nothing real
    # anywhere), so from scratch's steps grow with the labelled images: 960 at 20 labels.
    # The rate grids reach one step past every edge that the two-rate grids' runs chose (fine-tuning
    # often chose 1e-3, their lowest; from scratch 3e-3 and 1e-2, both ends; the probe 1e-2): a
    # chosen rate at the edge of its grid may not be the best one, and the arm it belongs to is
    # then under-tuned.
    "class": Budget(steps=240, scratch_steps=240, evals=6, batch_size=16, ft_lrs=(3e-4, 1e-3, 3e-3),
                    scratch_lrs=(1e-3, 3e-3, 1e-2, 3e-2), probe_lrs=(3e-3, 1e-2, 1e-1), probe_steps=300, probe_evals=10),
    "full": Budget(steps=400, scratch_steps=1200, evals=10, batch_size=64, ft_lrs=(3e-4, 1e-3, 3e-3), scratch_lrs=(1e-3, 3e-3, 1e-2),
                   probe_lrs=(3e-3, 1e-2, 1e-1), probe_steps=500, probe_evals=10, scratch_labels=20),
}


# ---------------------------------------------------------------------------------------------
# The worlds: each a function (mode, device) -> the pre-trained network
# ---------------------------------------------------------------------------------------------

def _object_world(mode, device):
    return pretrained_image_model(image_model_config(mode), device=device, verbose=False)[0]


def _fractal_world(mode, device):
    from helpers.lessons.your_own import fractal_pretrained_model
    return fractal_pretrained_model(mode, device=device, verbose=False)[0]


def _general_pretrained():
    """``general_pretrained_model`` (issue 27's general world) wherever this checkout has it:
    ``helpers.general_world`` or ``helpers.models``; None when it has none."""
    import importlib
    for module in ("helpers.general_world", "helpers.models"):
        try:
            found = getattr(importlib.import_module(module), "general_pretrained_model", None)
        except ImportError:
            continue
        if found is not None:
            return found
    return None


def _general_world(mode, device):
    return _general_pretrained()(mode, device=device, verbose=False)[0]


WORLDS = {"object": _object_world, "fractal": _fractal_world, "general": _general_world}


def available_worlds(names) -> list[str]:
    """The worlds of ``names`` this checkout has; "general" only when ``helpers.general_world`` imports."""
    out = []
    for name in names:
        if name not in WORLDS:
            raise ValueError(f"unknown world {name!r}; choose from {list(WORLDS)}")
        if name == "general" and _general_pretrained() is None:
            print("note: the general world is skipped: this checkout has no general_pretrained_model "
                  "(helpers.general_world or helpers.models)")
            continue
        out.append(name)
    return out


# ---------------------------------------------------------------------------------------------
# One run of each arm: early stopping on validation, the test read once at the end
# ---------------------------------------------------------------------------------------------

def shift(batch, max_shift: int = 3):
    """Roll the batch by up to ``max_shift`` pixels each way (no mirror: a mirrored digit is another glyph)."""
    x, *rest = batch
    dx, dy = (int(v) for v in torch.randint(-max_shift, max_shift + 1, (2,)))
    return (torch.roll(x, shifts=(dy, dx), dims=(-2, -1)), *rest)


def fit_network(model, task, *, lr, steps, B: Budget, seed, flips, device):
    """Train every weight of ``model`` on ``task`` for at most ``steps``; keep the weights of the
    best validation evaluation. Returns (val_acc, best_step)."""
    keeper = KeepBest(lambda m: {"val_acc": accuracy(m, task.x_val, task.y_val)}, "val_acc")
    batches = Batches(task.x_train, task.y_train, batch_size=min(B.batch_size, len(task.x_train)), seed=seed,
                      augment=flip_and_shift if flips else shift)
    seed_everything(seed)
    history = train(model, cross_entropy_loss, batches, steps=steps, optimiser=Optimiser(lr=lr), device=device,
                    monitor=Monitor(evaluate=keeper, eval_every=max(1, steps // B.evals)), progress=False)
    keeper.restore(model, history)
    return keeper.best_value, history.best_step


@torch.no_grad()
def features(model, x, batch_size: int = 256):
    """The network's pooled features (N, C), in eval mode (BatchNorm's running statistics); plain
    tensors, not inference-mode ones, so a probe can train on them."""
    was_training = model.training
    model.eval()
    try:
        return torch.cat([model.forward_head(model.forward_features(x[i:i + batch_size]), pre_logits=True)
                          for i in range(0, len(x), batch_size)]).float()
    finally:
        model.train(was_training)


def _probe_accuracy(head, f, y) -> float:
    with torch.no_grad():
        return (head(f).argmax(1) == y).float().mean().item()


def fit_probe(feats, task, *, lr, B: Budget, seed, device):
    """A linear head on frozen features, full batch, the best validation evaluation kept.
    Returns (head, val_acc, best_step)."""
    f_train, f_val = feats["train"], feats["val"]
    with seeded(seed):
        head = nn.Linear(f_train.shape[1], task.num_classes)
    keeper = KeepBest(lambda m: {"val_acc": _probe_accuracy(m, f_val, task.y_val)}, "val_acc")
    seed_everything(seed)
    history = train(head, lambda m, b: F.cross_entropy(m(b[0]), b[1]), [(f_train, task.y_train)], steps=B.probe_steps,
                    optimiser=Optimiser(lr=lr), device=device,
                    monitor=Monitor(evaluate=keeper, eval_every=max(1, B.probe_steps // B.probe_evals)), progress=False)
    keeper.restore(head, history)
    return head, keeper.best_value, history.best_step


def with_new_head(model, num_classes, seed, probe_head=None):
    """``model`` with a fresh linear head (seeded), or the probe's head copied in (LP-FT)."""
    with seeded(seed):
        model.reset_classifier(num_classes)
    if probe_head is not None:
        model.get_classifier().load_state_dict(probe_head.state_dict())
    return model


# ---------------------------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------------------------

def run_draws(task_name, labels, seeds, worlds, mode, B: Budget, device):
    """Every arm on ``seeds`` draws of ``labels`` labelled images per class. Returns raw rows:
    one per (world, arm, seed) with the chosen lr, best step, val and test accuracy."""
    config = image_model_config(mode)
    flips = REAL_TASKS[task_name].flips
    rows, chosen = [], {}

    def tuned(key, lrs, seed, run):
        """``run(lr) -> (val_acc, step, test_fn)``; on the first seed try every lr of the grid and
        keep the best on validation (``search_rates``); after that, the chosen lr. The test is read once."""
        if key in chosen:
            lr, tried = chosen[key], {}
            val, step, read_test = run(lr)
        else:
            lr, tried, (val, step, read_test) = search_rates(lrs, run)
            chosen[key] = lr
        return {"lr": lr, "val_acc": val, "best_step": step, "test_acc": read_test(), "rates_tried": sorted(tried)}

    for seed in seeds:
        task = real_task(task_name, labels, seed, config.image_size).to(device)

        def scratch(lr):
            model = create_image_model(config, num_classes=task.num_classes, seed=seed).to(device)
            val, step = fit_network(model, task, lr=lr, steps=B.scratch_steps_at(labels), B=B, seed=seed, flips=flips,
                                    device=device)
            return val, step, lambda: accuracy(model, task.x_test, task.y_test)
        rows.append({"world": "-", "arm": "from scratch", "seed": seed, **tuned("scratch", B.scratch_lrs, seed, scratch)})

        for world in worlds:
            base = WORLDS[world](mode, device)
            feats = {s: features(base, getattr(task, f"x_{s}")) for s in ("train", "val", "test")}
            probe_heads = {}

            def probe(lr):
                head, val, step = fit_probe(feats, task, lr=lr, B=B, seed=seed, device=device)
                probe_heads[lr] = head
                return val, step, lambda: _probe_accuracy(head, feats["test"], task.y_test)
            row = tuned((world, "probe"), B.probe_lrs, seed, probe)
            rows.append({"world": world, "arm": "linear probe", "seed": seed, **row})
            head = probe_heads[row["lr"]]

            for arm, start in (("fine-tuned", None), ("LP-FT", head)):
                def finetune(lr, start=start):
                    model = with_new_head(WORLDS[world](mode, device), task.num_classes, seed, start)
                    val, step = fit_network(model, task, lr=lr, steps=B.steps, B=B, seed=seed, flips=flips,
                                            device=device)
                    return val, step, lambda: accuracy(model, task.x_test, task.y_test)
                rows.append({"world": world, "arm": arm, "seed": seed,
                             **tuned((world, arm), B.ft_lrs, seed, finetune)})
    for r in rows:
        r.update(task=task_name, labels=labels, role=ROLES.get(task_name, "judge"))
    return rows


def search_rates(lrs, run, beyond: int = 2):
    """The best rate on validation: every rate of the grid ``lrs`` (low to high), then, while the
    best sits at an edge of the rates tried, one more step past that edge (the grid's own ratio at
    that end), at most ``beyond`` times, kept only if strictly better: a rate chosen at the edge of
    a grid may not be the best one, and the arm it tunes would then be under-tuned. The first of
    equal rates wins. Returns (lr, {lr: val_acc for every rate tried}, run(lr)'s result).

    >>> def run(lr): return (-abs(lr - 0.1), 0, None)         # validation best at 0.1: 1.0 is tried and dropped
    >>> lr, tried, _ = search_rates((1e-3, 1e-2), run); round(lr, 6), sorted(round(r, 6) for r in tried)
    (0.1, [0.001, 0.01, 0.1, 1.0])
    """
    grid = sorted(lrs)
    results = {lr: run(lr) for lr in grid}
    best = max(grid, key=lambda lr: results[lr][0])                   # the first of equals
    for _ in range(beyond if len(grid) > 1 else 0):
        tried = sorted(results)
        if best == tried[0]:
            new = tried[0] * tried[0] / tried[1]
        elif best == tried[-1]:
            new = tried[-1] * tried[-1] / tried[-2]
        else:
            break
        results[new] = run(new)
        if results[new][0] <= results[best][0]:
            break
        best = new
    return best, {lr: r[0] for lr, r in results.items()}, results[best]


def roles_line(tasks) -> str:
    """Each task with its role and what it is."""
    return "; ".join(f"{t}: {ROLES.get(t, 'judge')} ({REAL_TASKS[t].about})" for t in tasks)


def _names(text, valid, what):
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in valid]
    if unknown or not names:
        raise SystemExit(f"--{what}: unknown {unknown or text!r}; choose from {list(valid)}")
    return names


def merge(paths, out=None):
    """Saved results of several runs (e.g. one per labels setting, run side by side) as one table."""
    parts = [json.load(open(p)) for p in paths]
    merged = {**parts[0], "rows": [r for p in parts for r in p["rows"]],
              "labels": sorted({n for p in parts for n in p["labels"]}),
              "seconds": sum(p["seconds"] for p in parts), "merged_from": len(parts),
              "tasks": {k: v for p in parts for k, v in p["tasks"].items()}}
    for line in transfer_table(merged["rows"]) + [""] + transfer_verdicts(merged["rows"]):
        print(line)
    print(f"{len(parts)} runs merged, {merged['seconds']:.0f} s of benchmark time together")
    if out:
        with open(out, "w") as f:
            json.dump(merged, f, indent=1)
    return merged["rows"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default=",".join(REAL_TASKS), help="comma-separated, from " + ",".join(REAL_TASKS))
    parser.add_argument("--labels", default="5,20", help="labelled images per class, comma-separated")
    parser.add_argument("--seeds", type=int, default=5, help="draws of the labelled images (seeds 0..n-1)")
    parser.add_argument("--worlds", default="object,fractal,general")
    parser.add_argument("--mode", default="class", choices=list(BUDGETS), help="sizes of the networks and budgets")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default=None, help="write the raw per-seed numbers here (json)")
    parser.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                        help="train nothing: print the table of these saved results together (and write --out)")
    args = parser.parse_args(argv)
    if args.merge:
        return merge(args.merge, args.out)
    tasks = _names(args.tasks, REAL_TASKS, "tasks")
    labels = [int(n) for n in args.labels.split(",")]
    worlds = available_worlds(_names(args.worlds, WORLDS, "worlds"))
    B, device = BUDGETS[args.mode], resolve_device(args.device)
    print(f"tasks: {roles_line(tasks)}")
    print(f"worlds: {', '.join(worlds)}; labels/class {labels}; seeds 0-{args.seeds - 1}; mode {args.mode}; "
          f"device {device}; budget {asdict(B)}")
    for w in worlds:                     # build or load every world first, so the timing below is the benchmark's
        WORLDS[w](args.mode, device)
    start, rows = time.perf_counter(), []

    def save():
        if args.out:
            with open(args.out, "w") as f:
                json.dump({"mode": args.mode, "device": str(device), "seconds": time.perf_counter() - start,
                           "worlds": worlds, "labels": labels, "seeds": args.seeds, "budget": asdict(B),
                           "tasks": {t: {"role": ROLES.get(t, "judge"), "about": REAL_TASKS[t].about} for t in tasks},
                           "rows": rows}, f, indent=1)

    for n in labels:                     # every task at the fewest labels first: the headline comes first
        for task in tasks:
            t0 = time.perf_counter()
            rows += run_draws(task, n, range(args.seeds), worlds, args.mode, B, device)
            save()                       # after every task and labels: a long run keeps what it has measured
            print(f"  {task}, {n}/class: {time.perf_counter() - t0:.0f} s", flush=True)
    seconds = time.perf_counter() - start
    for line in transfer_table(rows) + [""] + transfer_verdicts(rows):
        print(line)
    print(f"took {seconds:.0f} s ({seconds / 60:.1f} min) for {len(rows)} runs on {device}")
    return rows


if __name__ == "__main__":
    main()
