"""Where does the image world's render time go? A profile of lesson 01's chunks.

Renders ``--chunks`` chunks of ``--chunk`` images at lesson 01's image size, then prints the time
spent in each stage of ``ImageWorld.render`` (backgrounds, clutter, main objects, compositing and
camera effects) and the tensor operations that took the most time (torch.profiler):

    python benchmarks/profile_render.py [--chunks 3] [--chunk 1024] [--mode class] [--top 25] [--threads N] [--size S]

``--size 8`` leaves almost no pixels to compute, so what remains is Python and per-operation overhead.
"""
import argparse
import time
from collections import defaultdict

import numpy as np
import torch

from helpers import images
from helpers.images import ImageWorld
from helpers.models import image_model_config


def _timed(stages, name, fn):
    """``fn`` wrapped to add its wall time and this process's CPU time to ``stages[name]``."""
    def wrapper(*args, **kwargs):
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            stages[name] += np.array([time.perf_counter() - wall, time.process_time() - cpu])
    return wrapper


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=1024)
    parser.add_argument("--mode", default="class")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's own)")
    parser.add_argument("--size", type=int, default=0, help="image size (default: lesson 01's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    world = ImageWorld(image_size=args.size or image_model_config(args.mode).image_size)
    world.render(args.chunk, seed=0)                                    # warm up (grain bank)

    stages = defaultdict(lambda: np.zeros(2))
    wrapped = {"render_backgrounds": "backgrounds", "render_objects": "objects (main and clutter)",
               "_paint_objects": "objects (main and clutter)", "_finish": "finish (camera effects)"}
    originals = {name: getattr(images, name) for name in wrapped if hasattr(images, name)}
    clutter = ImageWorld._add_clutter
    try:
        for name, fn in originals.items():
            setattr(images, name, _timed(stages, wrapped[name], fn))
        ImageWorld._add_clutter = _timed(stages, "clutter (with its objects)", clutter)
        start, cpu = time.perf_counter(), time.process_time()
        for seed in range(1, args.chunks + 1):
            world.render(args.chunk, seed=seed)
        total, cpu = time.perf_counter() - start, time.process_time() - cpu
    finally:
        for name, fn in originals.items():
            setattr(images, name, fn)
        ImageWorld._add_clutter = clutter
    print(f"{args.chunks} chunks of {args.chunk} images at {world.image_size} px, "
          f"{torch.get_num_threads()} threads: {args.chunks * args.chunk / total:.0f} images/s")
    print(f"  {'whole render':30s} {1000 * total / args.chunks:7.1f} ms/chunk wall {1000 * cpu / args.chunks:7.1f} ms/chunk CPU")
    for name, (wall, cpu_s) in sorted(stages.items(), key=lambda kv: -kv[1][1]):
        print(f"  {name:30s} {1000 * wall / args.chunks:7.1f} ms/chunk wall {1000 * cpu_s / args.chunks:7.1f} ms/chunk CPU"
              f" {100 * cpu_s / cpu:5.1f}%")
    print("  (objects include the clutter's; clutter includes its compositing)")

    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for seed in range(1, args.chunks + 1):
            world.render(args.chunk, seed=seed)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top))


if __name__ == "__main__":
    main()
