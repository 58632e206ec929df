"""What would the in-world lessons pay if lesson 01's model were pre-trained on the general world?

Lesson 02's headline fine-tuning (its labels per species and its step budget, ``run_finetune``)
started from lesson 01's object-world model and from the general world's model
(``general_pretrained_model``), each at its own rate chosen on seed 0's validation accuracy from
``--lrs``, then over ``--seeds`` seeds at that rate; the verdict is a paired t-test over the seeds
(the course's rule). The general world's object half is learnt less well at the same budget (0.90
held out against the object world's 0.996), and this measures what that costs a lesson.

    python benchmarks/general_world_cost.py [--mode class] [--seeds 5] [--lrs 3e-4 1e-3 3e-3 1e-2]
"""
import argparse
import statistics
import time

import torch

from helpers.experiments import run_finetune
from helpers.models import general_pretrained_model, image_model_config, pretrained_image_model
from helpers.modes import sizes
from helpers.runner import Setup
from helpers.stats import difference


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", default="class", help="whose sizes and checkpoints")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--lrs", type=float, nargs="+", default=[3e-4, 1e-3, 3e-3, 1e-2])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    S = sizes("finetune", args.mode)
    starts = {"object world": pretrained_image_model(image_model_config(args.mode), device=args.device, verbose=False)[0],
              "general world": general_pretrained_model(args.mode, device=args.device, verbose=False)[0]}
    start, tests = time.perf_counter(), {}
    for name, model in starts.items():
        setup = Setup(mode=args.mode, source=model, device=args.device, progress=False)
        val = {lr: run_finetune(S.headline_labels, lr=lr, seed=0, setup=setup).val_acc for lr in args.lrs}
        lr = max(val, key=val.get)                      # the first of equals
        tests[name] = [run_finetune(S.headline_labels, lr=lr, seed=s, setup=setup).test_acc for s in range(args.seeds)]
        print(f"{name}: validation {', '.join(f'{r:g} {v:.3f}' for r, v in val.items())}; chose {lr:g}; "
              f"test {statistics.mean(tests[name]):.3f} over {args.seeds} seeds", flush=True)
    d = difference(tests["general world"], tests["object world"], paired=True)
    verdict = "a tie" if d.p >= 0.05 else "real"
    print(f"general minus object world: {d.diff * 100:+.1f} points ({verdict}, paired t-test p = {d.p:.3f}); "
          f"lesson 02's task, {S.headline_labels} labels per species, {S.steps} steps, {args.mode} mode; "
          f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
