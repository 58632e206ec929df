"""Should `make prepare` and `make course` run two jobs at a time on this CPU?

For each of the course's three models (lesson 01's ResNet, lesson 07's GPT, lesson 11's U-Net),
interleaved round by round: one process training with all the CPU threads, then ``--jobs``
processes at once, each training the same number of steps with its share of the threads. Prints
training throughput (steps/s over all processes) of the parallel runs over the single one, per
model, last:

    python benchmarks/parallel_jobs.py [--mode class] [--jobs 2] [--rounds 3] [--steps 20]

    ratio X.XX  image model (lesson 01)  (N jobs of T thread(s) over 1 job of 2T; > 1: parallel is faster)

A ratio above 1 is what `make`'s ``JOBS=2`` banks on. CPU only: on a GPU the jobs share one device.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def worker(case: int, mode: str, steps: int) -> None:
    """Train model ``case`` of ``common.model_cases`` for ``steps`` steps (after two warm-up
    steps; AdamW, the loss the lesson uses) and print the seconds the timed steps took."""
    import torch
    from common import model_cases
    name, make_model, loss_fn, batch = list(model_cases(mode))[case]
    model = make_model()
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model, batch).backward()
        optimizer.step()

    for _ in range(2):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    print(time.perf_counter() - start)


def launch(case: int, mode: str, steps: int, jobs: int, threads: int) -> float:
    """Start ``jobs`` workers at once with ``threads`` threads each; return steps/s over all."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": os.pathsep.join(
        [str(HERE), str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, __file__, "--worker", str(case), "--mode", mode, "--steps", str(steps)]
    processes = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) for _ in range(jobs)]
    seconds = []
    for process in processes:
        out, _ = process.communicate()
        if process.returncode:
            raise RuntimeError(f"worker for case {case} failed with exit status {process.returncode}")
        seconds.append(float(out.strip().splitlines()[-1]))
    return jobs * steps / max(seconds)        # all steps done when the slowest job ends


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", default="class", help="the models at which mode's sizes")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per job and round")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads of the single job")
    parser.add_argument("--only", default="", help="only the models whose name contains this (e.g. GPT)")
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        return worker(args.worker, args.mode, args.steps)
    if args.jobs < 2:
        parser.error(f"--jobs must be at least 2 (one job is the reference); got {args.jobs}")
    sys.path.insert(0, str(HERE))
    from common import model_cases
    names = [case[0] for case in model_cases(args.mode, batch_scale=0.01)]
    share = max(1, args.threads // args.jobs)
    print(f"{args.jobs} jobs of {share} thread(s) against 1 job of {args.threads}, {args.steps} steps each, "
          f"{args.rounds} interleaved rounds, {args.mode} sizes")
    ratios = {}
    for case, name in enumerate(names):
        if args.only not in name:
            continue
        single, parallel = [], []
        for r in range(args.rounds):
            order = [("single", 1, args.threads), ("parallel", args.jobs, share)]
            for label, jobs, threads in (order if r % 2 == 0 else order[::-1]):
                rate = launch(case, args.mode, args.steps, jobs, threads)
                (single if label == "single" else parallel).append(rate)
        ratios[name] = statistics.median(p / s for p, s in zip(parallel, single))
        print(f"{name:<26} 1 job {statistics.median(single):7.2f} steps/s   "
              f"{args.jobs} jobs {statistics.median(parallel):7.2f} steps/s (all jobs together)")
    for name, ratio in ratios.items():
        print(f"ratio {ratio:.2f}  {name}  ({args.jobs} jobs of {share} thread(s) over 1 job of {args.threads}; "
              f"> 1: parallel is faster)")


if __name__ == "__main__":
    main()
