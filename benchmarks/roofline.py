"""How close does training run to what this machine can compute?

For lesson 01's image model, lesson 07's GPT and lesson 11's U-Net (``--mode`` sizes), one
training step's forward plus backward FLOPs are counted with ``torch.utils.flop_counter``
(matrix multiplies and convolutions; the optimiser's elementwise work is not counted), and the
step is timed (forward, backward, AdamW). The machine's practical peak is measured in the same
run, on the same threads: a large matrix multiply in fp32 and, where the CPU computes bf16
natively (``helpers.device.cpu_supports_bf16``), in bf16. Model steps and peak measurements are
interleaved round by round and medians taken, so a busy machine slows both alike. Then one step
of each model is profiled (top operators by self CPU time: where the time goes). The fractions
of peak are printed last, one line each:

    python benchmarks/roofline.py [--device auto] [--mode class] [--rounds 5] [--steps 5]

    image model (lesson 01)   fraction of fp32 peak 0.XX
"""
import argparse
import statistics
import time

import torch
from common import model_cases
from torch.utils.flop_counter import FlopCounterMode

from helpers.device import cpu_supports_bf16, resolve_device, synchronize


def step_flops(model, loss_fn, batch):
    """Forward plus backward FLOPs of one training step."""
    with FlopCounterMode(display=False) as counter:
        loss_fn(model, batch).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def matmul_rate(n, dtype, device, repeats=3):
    """FLOP/s of an n x n x n matrix multiply (best of ``repeats``: what the machine can do)."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="auto")
    parser.add_argument("--mode", default="class", help="model sizes of which mode")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per model per round")
    parser.add_argument("--matmul", type=int, default=2048, help="side of the peak-measuring matrix multiply")
    parser.add_argument("--batch-scale", type=float, default=1.0, help="shrink the batches (tests)")
    parser.add_argument("--top", type=int, default=6, help="operators shown per profile")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    dtypes = {"fp32": torch.float32}
    if device.type == "cuda" or (device.type == "cpu" and cpu_supports_bf16()):
        dtypes["bf16"] = torch.bfloat16
    models = []
    for name, make, loss_fn, batch in model_cases(args.mode, device, batch_scale=args.batch_scale):
        model = make().to(device)
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        models.append((name, model, loss_fn, batch, opt, step_flops(model, loss_fn, batch)))

    def step(model, loss_fn, batch, opt):
        opt.zero_grad(set_to_none=True)
        loss_fn(model, batch).backward()
        opt.step()

    for _, model, loss_fn, batch, opt, _ in models:        # warm-up
        step(model, loss_fn, batch, opt)
    seconds = {name: [] for name, *_ in models}
    peak = {d: [] for d in dtypes}
    for r in range(args.rounds):
        for d, dtype in dtypes.items():
            peak[d].append(matmul_rate(args.matmul, dtype, device))
        for name, model, loss_fn, batch, opt, _ in (models if r % 2 == 0 else models[::-1]):
            synchronize(device)
            start = time.perf_counter()
            for _ in range(args.steps):
                step(model, loss_fn, batch, opt)
            synchronize(device)
            seconds[name].append((time.perf_counter() - start) / args.steps)
    peak = {d: statistics.median(v) for d, v in peak.items()}

    print(f"device {device.type}, {torch.get_num_threads()} threads, mode {args.mode}, {args.rounds} rounds "
          f"of {args.steps} steps, medians")
    for d, rate in peak.items():
        print(f"practical peak {d}: {rate / 1e9:8.1f} GFLOP/s ({args.matmul}^3 matrix multiply)")
    for name, model, loss_fn, batch, opt, flops in models:
        print(f"\n== where one training step of the {name} spends its time (torch.profiler, self CPU)")
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            step(model, loss_fn, batch, opt)
        events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
        total = sum(e.self_cpu_time_total for e in events) or 1
        for e in events[:args.top]:
            print(f"   {e.key:<40} {e.self_cpu_time_total / 1e3:8.1f} ms  {100 * e.self_cpu_time_total / total:5.1f}%")
    print()
    print(f"{'model':<26} {'GFLOP/step':>11} {'s/step':>8} {'GFLOP/s':>8}")
    rows = []
    for name, model, loss_fn, batch, opt, flops in models:
        s = statistics.median(seconds[name])
        rows.append((name, flops / s))
        print(f"{name:<26} {flops / 1e9:11.3f} {s:8.3f} {flops / s / 1e9:8.2f}")
    for name, achieved in rows:
        parts = [f"fraction of {d} peak {achieved / rate:.3f}" for d, rate in peak.items()]
        print(f"{name:<26} " + "   ".join(parts))


if __name__ == "__main__":
    main()
