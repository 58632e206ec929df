"""How much does the course's training loop cost over a minimal hand-written PyTorch loop?

Both loops train the same model (lesson 01's CNN) on the same pre-rendered batches with the
same optimiser settings. Rounds are PAIRS: the two loops run back to back (alternating which
goes first), and each pair gives one ratio, helpers samples/s over raw samples/s. A busy machine
slows both halves of a pair alike, so the per-pair ratios are far steadier than the rates. Even
on a quiet virtual machine one pair's ratio varies by about +-0.05 (its IQR, the noise of a single
pair, does not shrink with more pairs), so pairs are added until the standard error of their
median is below ``--target-spread`` (or ``--max-rounds`` / ``--max-seconds`` is reached); the
median ratio, its standard error and the pairs' IQR are printed last:

    python benchmarks/loop_overhead.py [--device auto] [--steps 30] [--target-spread 0.02]

    ratio X.XX  (median of N paired ratios, standard error 0.0X, IQR 0.0X, MAD 0.0X; helpers over raw, ...)
"""
import argparse
import statistics
import time
from dataclasses import replace

import torch
import torch.nn.functional as F
from common import median_spread, median_standard_error

from helpers.device import autocast, autocast_dtype, prefers_channels_last, resolve_device, synchronize
from helpers.images import ImageWorld
from helpers.losses import cross_entropy_loss
from helpers.models import create_image_model, image_model_config
from helpers.training import Batches, Optimiser, train


def raw_loop(model, batches, device, lr, steps):
    """The smallest honest loop with the same work: AdamW, clipping, the same schedule shape."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr,
                            weight_decay=0.01, fused=device.type == "cuda")
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    scaler = torch.amp.GradScaler(device.type, enabled=autocast_dtype(device) == torch.float16)
    model.train()
    done = 0
    while done < steps:
        for x, y in batches:
            with autocast(device):
                loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(opt)
            scaler.update()
            sched.step()
            done += 1
            if done >= steps:
                break


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=30, help="optimiser steps per loop per round")
    parser.add_argument("--min-rounds", type=int, default=8)
    parser.add_argument("--max-rounds", type=int, default=100)
    parser.add_argument("--target-spread", type=float, default=0.02,
                        help="stop when the standard error of the median ratio is below this")
    parser.add_argument("--max-seconds", type=float, default=1800, help="add no pair after this long")
    parser.add_argument("--quiet", action="store_true", help="no line per pair")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--width", type=int, default=24)
    parser.add_argument("--image-size", type=int, default=48)
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    config = replace(image_model_config("class"), width=args.width, image_size=args.image_size)
    x, y = ImageWorld(image_size=args.image_size).render(args.batch_size * 8, seed=0, device=device)
    batches = Batches(x, y, batch_size=args.batch_size, shuffle=False)
    channels_last = prefers_channels_last(create_image_model(config), device)   # the layout train() picks
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    samples = args.steps * args.batch_size

    def rate(name):
        model = create_image_model(config, seed=0).to(device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        synchronize(device)
        start = time.perf_counter()
        if name == "raw":
            raw_loop(model, batches, device, 1e-3, args.steps)
        else:
            train(model, cross_entropy_loss, batches, steps=args.steps, optimiser=Optimiser(lr=1e-3), device=device,
                  progress=False)
        synchronize(device)
        return samples / (time.perf_counter() - start)

    began = time.perf_counter()
    rate("helpers"), rate("raw")                    # warm-up pair, not counted
    ratios, rates = [], {"helpers": [], "raw": []}
    spread = float("inf")
    while len(ratios) < args.max_rounds and (len(ratios) < args.min_rounds or spread >= args.target_spread) \
            and time.perf_counter() - began < args.max_seconds:
        order = ("raw", "helpers") if len(ratios) % 2 else ("helpers", "raw")
        pair = {name: rate(name) for name in order}
        for name in pair:
            rates[name].append(pair[name])
        ratios.append(pair["helpers"] / pair["raw"])
        median, iqr = median_spread(ratios)
        spread = median_standard_error(ratios)
        if not args.quiet:
            print(f"pair {len(ratios):2d}: helpers {pair['helpers']:7.1f}, raw {pair['raw']:7.1f} samples/s, "
                  f"ratio {ratios[-1]:.3f}; median so far {median:.3f} (standard error {spread:.3f}, IQR {iqr:.3f})",
                  flush=True)
    mad = statistics.median(abs(r - median) for r in ratios)
    for name, values in rates.items():
        print(f"{name:>8}: median {statistics.median(values):8.1f} samples/s over {len(values)} rounds "
              f"(min {min(values):.1f}, max {max(values):.1f})")
    print(f"device {device.type}, {torch.get_num_threads()} threads, model width {args.width}, "
          f"batch {args.batch_size}, {args.steps} steps a loop a round")
    note = "" if spread < args.target_spread else \
        f"; standard error above the target {args.target_spread} after {len(ratios)} pairs"
    print(f"ratio {median:.3f}  (median of {len(ratios)} paired ratios, standard error {spread:.3f}, IQR {iqr:.3f}, "
          f"MAD {mad:.3f}; helpers over raw, 1.00 = no overhead; goal >= 0.97{note})")
    return median, spread


if __name__ == "__main__":
    main()
