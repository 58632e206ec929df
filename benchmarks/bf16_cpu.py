"""Does bf16 autocast (and torch.compile) speed up the course's training steps on this CPU?

For lesson 01's image model, lesson 07's GPT and lesson 11's U-Net (``--mode`` sizes), training
steps (forward, backward, AdamW) run in up to four variants: fp32, bf16 autocast
(``torch.autocast("cpu", dtype=torch.bfloat16)``), and each of those under ``torch.compile``.
The variants run interleaved round by round (the order rotates), so a busy machine slows them
alike, and each one's median steps/s is compared with fp32's. ``torch.compile``'s compile time
(the first step's wall time minus a normal step's) is reported separately: it counts in a
lesson's time. bf16 is only measured where the CPU computes it natively
(``helpers.device.cpu_supports_bf16``: AVX512-BF16 or AMX); elsewhere autocast emulates it slowly.

    python benchmarks/bf16_cpu.py [--mode class] [--rounds 5] [--steps 5] [--no-compile]

    GPT (lesson 07)   bf16/fp32 X.XX   compiled/fp32 X.XX   compiled bf16/fp32 X.XX   compile XX s
"""
import argparse
import contextlib
import time

import torch
from common import median_spread, model_cases

from helpers.device import cpu_supports_bf16


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", default="class", help="model sizes of which mode")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per variant per round")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile variants")
    parser.add_argument("--only", default="", help="models whose name contains this (e.g. GPT)")
    parser.add_argument("--batch-scale", type=float, default=1.0, help="shrink the batches (tests)")
    args = parser.parse_args(argv)
    device = torch.device("cpu")
    bf16 = cpu_supports_bf16()
    print(f"cpu, {torch.get_num_threads()} threads, native bf16: {bf16}, mode {args.mode}, "
          f"{args.rounds} rounds of {args.steps} steps, variants interleaved, medians")
    results = []
    for name, make, loss_fn, batch in model_cases(args.mode, device, batch_scale=args.batch_scale):
        if args.only and args.only not in name:
            continue
        variants = {}
        for compiled in ((False,) if args.no_compile else (False, True)):
            for dtype in ((torch.float32, torch.bfloat16) if bf16 else (torch.float32,)):
                model = make()
                model.train()
                net = torch.compile(model) if compiled else model
                opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
                label = ("compiled " if compiled else "") + ("bf16" if dtype == torch.bfloat16 else "fp32")
                variants[label] = (net, opt, dtype)

        def step(net, opt, dtype):
            ctx = torch.autocast("cpu", dtype=dtype) if dtype != torch.float32 else contextlib.nullcontext()
            opt.zero_grad(set_to_none=True)
            with ctx:
                loss = loss_fn(net, batch)
            loss.backward()
            opt.step()

        first = {}
        for label, v in variants.items():                   # warm-up; compiles the compiled ones
            start = time.perf_counter()
            step(*v)
            first[label] = time.perf_counter() - start
            step(*v)
        rates = {label: [] for label in variants}
        labels = list(variants)
        for r in range(args.rounds):
            for label in labels[r % len(labels):] + labels[:r % len(labels)]:
                start = time.perf_counter()
                for _ in range(args.steps):
                    step(*variants[label])
                rates[label].append(args.steps / (time.perf_counter() - start))
        med = {label: median_spread(v) for label, v in rates.items()}
        print(f"\n{name}")
        for label, (m, iqr) in med.items():
            extra = ""
            if label.startswith("compiled"):
                extra = f"   compile {max(0.0, first[label] - 1 / m):.1f} s (first step {first[label]:.1f} s)"
            print(f"   {label:<14} {m:7.2f} steps/s (IQR {iqr:.2f})   vs fp32 {m / med['fp32'][0]:.2f}{extra}")
        results.append((name, med, first))
    print()
    for name, med, first in results:
        parts = [f"{label}/fp32 {m / med['fp32'][0]:.2f}" for label, (m, _) in med.items() if label != "fp32"]
        compile_s = [max(0.0, first[label] - 1 / med[label][0]) for label in med if label.startswith("compiled")]
        if compile_s:
            parts.append(f"compile {max(compile_s):.0f} s")
        print(f"{name:<26} " + "   ".join(parts))


if __name__ == "__main__":
    main()
