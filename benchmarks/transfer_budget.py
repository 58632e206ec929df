"""Had the transfer benchmark's runs stopped improving? The same runs at a longer budget.

``benchmarks/transfer.py`` gives fine-tuning and from scratch a fixed budget per mode (80 steps in
class mode) and keeps each run's best validation evaluation. If a run's validation accuracy still
rises with more steps, its budget was too short, and a from-scratch baseline that is cut short
flatters fine-tuning. This script re-runs, for the same draws (seeds) and the rates the benchmark
chose (read from its saved results), from scratch and the fine-tuned arm of one world at ``--steps``
(default 3x the benchmark's), and compares each with the benchmark's own run on VALIDATION accuracy
(a paired t-test over seeds, the course's rule). Test accuracy is printed beside it, not used.

    python benchmarks/transfer_budget.py --results docs/transfer_results.json [--world general]
        [--tasks digits,mnist,faces,patches] [--labels 5,20] [--steps 240] [--out check.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

from transfer import BUDGETS, WORLDS, Budget, fit_network, with_new_head

from helpers.device import resolve_device
from helpers.models import create_image_model, image_model_config
from helpers.real_images import REAL_TASKS, real_task
from helpers.stats import difference
from helpers.training import accuracy


def rerun(task_name, labels, seed, arm, world, lr, steps, mode, B, device):
    """(val_acc, test_acc, kept step) of one run of ``arm`` at ``steps``, the benchmark's rate."""
    config = image_model_config(mode)
    task = real_task(task_name, labels, seed, config.image_size).to(device)
    if arm == "from scratch":
        model = create_image_model(config, num_classes=task.num_classes, seed=seed).to(device)
    else:
        model = with_new_head(WORLDS[world](mode, device), task.num_classes, seed)
    val, step = fit_network(model, task, lr=lr, steps=steps, B=B, seed=seed, flips=REAL_TASKS[task_name].flips,
                            device=device)
    return val, accuracy(model, task.x_test, task.y_test), step


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", required=True, help="the benchmark's saved results (json)")
    parser.add_argument("--world", default="general")
    parser.add_argument("--tasks", default=None, help="comma-separated (default: the results' tasks)")
    parser.add_argument("--labels", default=None, help="comma-separated (default: the results' labels)")
    parser.add_argument("--steps", type=int, default=None, help="the longer budget (default 3x the results')")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    saved = json.load(open(args.results))
    mode, B, device = saved["mode"], BUDGETS[saved["mode"]], resolve_device(args.device)
    tasks = args.tasks.split(",") if args.tasks else list(saved["tasks"])
    labels = [int(n) for n in args.labels.split(",")] if args.labels else saved["labels"]
    # results saved before from scratch's steps grew with the labels gave every label count the same steps
    saved_budget = Budget(**{"scratch_labels": 10**9,
                             **{k: tuple(v) if isinstance(v, list) else v for k, v in saved["budget"].items()}})
    rows, start = [], time.perf_counter()
    for n in labels:
        short = {"from scratch": saved_budget.scratch_steps_at(n), "fine-tuned": saved_budget.steps}
        for task in tasks:
            for arm, world in (("from scratch", "-"), ("fine-tuned", args.world)):
                before = sorted((r for r in saved["rows"] if (r["task"], r["labels"], r["arm"], r["world"])
                                 == (task, n, arm, world)), key=lambda r: r["seed"])
                if not before:
                    continue
                steps = args.steps or 3 * short[arm]
                after = [rerun(task, n, r["seed"], arm, world, r["lr"], steps, mode, B, device) for r in before]
                d = difference([a[0] for a in after], [r["val_acc"] for r in before], paired=True)
                rows.append({"task": task, "labels": n, "arm": arm, "world": world, "lr": before[0]["lr"],
                             "short_steps": short[arm], "long_steps": steps,
                             "short_val": [r["val_acc"] for r in before], "long_val": [a[0] for a in after],
                             "short_test": [r["test_acc"] for r in before], "long_test": [a[1] for a in after],
                             "long_kept_step": [a[2] for a in after], "val_gain": d.diff, "val_gain_p": d.p})
                verdict = "still improving" if d.p < 0.05 and d.diff > 0 else "no real gain" if d.diff >= 0 or d.p >= 0.05 else "worse"
                print(f"{task:8} {n:>3}/class {arm:13} {world:8} val {statistics.mean(rows[-1]['short_val']):.3f} at "
                      f"{short[arm]} -> {statistics.mean(rows[-1]['long_val']):.3f} at {steps} ({d.diff * 100:+.1f} points, "
                      f"p = {d.p:.3f}: {verdict}); test {statistics.mean(rows[-1]['short_test']):.3f} -> "
                      f"{statistics.mean(rows[-1]['long_test']):.3f}", flush=True)
                if args.out:
                    with open(args.out, "w") as f:
                        json.dump({"results": args.results, "mode": mode, "seconds": time.perf_counter() - start,
                                   "rows": rows}, f, indent=1)
    print(f"took {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
