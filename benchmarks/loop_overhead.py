"""How much does the course's training loop cost over a minimal hand-written PyTorch loop?

Both loops train the same model (lesson 01's CNN) on the same pre-rendered batches with the
same optimiser settings. They run interleaved, round after round, so a noisy shared machine
slows both alike; the ratio of the medians is printed last:

    python benchmarks/loop_overhead.py [--device auto] [--rounds 5] [--steps 30]

    ratio X.XX   (helpers samples/s over raw samples/s; 1.00 means no overhead)
"""
import argparse
import statistics
import time
from dataclasses import replace

import torch
import torch.nn.functional as F

from helpers.device import autocast, autocast_dtype, prefers_channels_last, resolve_device, synchronize
from helpers.images import ImageWorld
from helpers.losses import cross_entropy_loss
from helpers.models import create_image_model, image_model_config
from helpers.training import Batches, train


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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="auto")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--width", type=int, default=24)
    args = parser.parse_args()
    device = resolve_device(args.device)
    config = replace(image_model_config("class"), width=args.width, image_size=48)
    x, y = ImageWorld(image_size=48).render(args.batch_size * 8, seed=0, device=device)
    batches = Batches(x, y, batch_size=args.batch_size, shuffle=False)
    channels_last = prefers_channels_last(create_image_model(config), device)   # the layout train() picks
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    samples = args.steps * args.batch_size
    rates = {"helpers": [], "raw": []}
    for r in range(args.rounds + 1):                   # round 0 warms both up and is not counted
        for name in ("raw", "helpers") if r % 2 else ("helpers", "raw"):
            model = create_image_model(config, seed=0).to(device)
            if channels_last:
                model = model.to(memory_format=torch.channels_last)
            synchronize(device)
            start = time.perf_counter()
            if name == "raw":
                raw_loop(model, batches, device, 1e-3, args.steps)
            else:
                train(model, cross_entropy_loss, batches, steps=args.steps, lr=1e-3, device=device, progress=False, log_every=10)
            synchronize(device)
            if r > 0:
                rates[name].append(samples / (time.perf_counter() - start))
    for name, values in rates.items():
        print(f"{name:>8}: median {statistics.median(values):8.1f} samples/s over {len(values)} rounds "
              f"(min {min(values):.1f}, max {max(values):.1f})")
    print(f"device {device.type}, model width {args.width}, batch {args.batch_size}, {args.steps} steps a round")
    print(f"ratio {statistics.median(rates['helpers']) / statistics.median(rates['raw']):.2f}")


if __name__ == "__main__":
    main()
