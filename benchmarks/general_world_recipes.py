"""Choose the general world's recipe on a validation task: scikit-learn's digits, validation split.

Pre-trains lesson 01's network on each candidate recipe of ``GeneralWorld`` (lesson 01's budget,
cached like ``general_pretrained_model``), then measures on the real digits (``digits_task``, a
few labels per class) a linear probe and full fine-tuning, each arm's rate chosen on seed 0's
validation accuracy from a small grid, over seeds, on the VALIDATION split only: the test split is
never read here (the transfer benchmark judges the chosen world on other tasks).

    python benchmarks/general_world_recipes.py [--recipes balanced fractal-heavy] [--seeds 3] [--steps N]
        [--baseline data/cache/image_pretrained-<key>.safetensors]

Prints, per recipe, the pre-training time and world accuracy, then each arm's mean validation
accuracy over the seeds (and its spread), and writes them as JSON with ``--out``.
"""
import argparse
import json
import statistics
import time
from dataclasses import replace

import torch

from helpers.cache import read_checkpoint
from helpers.general_world import GeneralWorld
from helpers.lessons.your_own import digits_task
from helpers.models import create_image_model, general_pretrained_model, image_model_config
from helpers.modes import sizes
from helpers.own_tasks import finetune_task
from helpers.runner import Budget, Report, Setup
from helpers.surgery import stages

RECIPES = {
    "balanced": {},                                             # GeneralWorld's defaults: half objects, 64 fractals
    "fractal-heavy": {"object_share": 0.25, "num_fractals": 128},
    "objects-on-textures": {"object_textures": 0.6},
    "simpler-fractals": {"instances": (1, 2), "fractal_size": (0.6, 0.9), "texture_weights": (0.25, 0.25, 0.5)},
    # after the first round (fractal half near chance at 1200 steps): lesson 13's FractalWorld, whose
    # fractals are learnt and whose probe on the digits is the best, draws one upright instance of
    # 1600 points on a plain background; these move the general world's fractal images towards it
    "upright": {"rotate": False, "points": 1600, "instances": (1, 2), "fractal_size": (0.5, 0.9),
                "texture_weights": (0.3, 0.3, 0.4), "contrast": True},
    "upright-32": {"rotate": False, "points": 1600, "instances": (1, 2), "fractal_size": (0.5, 0.9),
                   "texture_weights": (0.3, 0.3, 0.4), "contrast": True, "num_fractals": 32},
    # third round: the real tasks are scans and photographs in shades of grey; a network that never
    # saw a grey image may lean on colour its targets do not have
    "upright-grey": {"rotate": False, "points": 1600, "instances": (1, 2), "fractal_size": (0.5, 0.9),
                     "texture_weights": (0.3, 0.3, 0.4), "contrast": True, "grey": 0.5},
    "upright-heavy": {"rotate": False, "points": 1600, "instances": (1, 2), "fractal_size": (0.5, 0.9),
                      "texture_weights": (0.3, 0.3, 0.4), "contrast": True, "object_share": 0.25},
    "upright-128": {"rotate": False, "points": 1600, "instances": (1, 2), "fractal_size": (0.5, 0.9),
                    "texture_weights": (0.3, 0.3, 0.4), "contrast": True, "num_fractals": 128},
    "upright-crop": {"rotate": False, "points": 1600, "instances": (1, 2), "fractal_size": (0.5, 0.9),
                     "texture_weights": (0.3, 0.3, 0.4), "contrast": True, "crop": 0.35},
    "plain-fractals": {"rotate": False, "points": 1600, "instances": (1, 1), "fractal_size": (0.5, 0.9),
                       "texture_weights": (0.0, 0.0, 1.0), "contrast": True},
}


def probe_and_finetune(model, seeds: int, labels: int, steps: int, lrs, device) -> dict:
    """{arm: {"lr", "val": [per seed]}} for the linear probe and full fine-tuning on the digits."""
    arms = {"linear probe": len(stages(model)), "fine-tuned": 0}
    tasks = [digits_task(labels, seed) for seed in range(seeds)]
    out = {}
    for arm, frozen in arms.items():
        def run(task, lr, seed):
            return finetune_task(task, source=model, frozen_stages=frozen, lr=lr, seed=seed,
                                 budget=Budget(steps=steps, evals=1), report=Report(read_test=False),
                                 setup=Setup(device=device, progress=False)).val_acc
        tuning = {lr: run(tasks[0], lr, 0) for lr in lrs}
        lr = max(tuning, key=tuning.get)
        out[arm] = {"lr": lr, "val": [tuning[lr]] + [run(tasks[s], lr, s) for s in range(1, seeds)]}
    return out


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipes", nargs="+", default=["balanced", "fractal-heavy"], choices=list(RECIPES))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--mode", default="class", help="lesson 01's sizes of which mode")
    parser.add_argument("--steps", type=int, help="pre-training steps (default: lesson 01's in --mode)")
    parser.add_argument("--baseline", help="an object-world checkpoint to measure the same way")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", help="write the numbers here as JSON")
    args = parser.parse_args(argv)
    Y = sizes("your_own", args.mode)
    config = image_model_config(args.mode)
    config = replace(config, steps=args.steps or config.steps)
    results = {}

    def measure(name, model, meta):
        """Probe and fine-tune ``model`` on the digits; print and keep the validation numbers."""
        arms = probe_and_finetune(model, args.seeds, Y.transfer_labels, Y.transfer_steps, Y.transfer_lrs, args.device)
        results[name] = {**meta, **arms}
        for arm, r in arms.items():
            print(f"{name:>24} {arm:>13}: digits val {statistics.mean(r['val']):.3f} "
                  f"± {statistics.stdev(r['val']) if len(r['val']) > 1 else 0:.3f} (lr {r['lr']:g}, "
                  f"{args.seeds} seeds, {Y.transfer_labels} labels/class, {Y.transfer_steps} steps)", flush=True)
        if args.out:                                    # after every model, so a stopped run keeps what it measured
            with open(args.out, "w") as f:
                json.dump(results, f, indent=1)

    if args.baseline:
        model = create_image_model(config)
        model.load_state_dict(read_checkpoint(args.baseline)[0])
        measure("object world (baseline)", model, {})
    for name in args.recipes:
        world = replace(GeneralWorld(image_size=config.image_size), **RECIPES[name])
        start = time.perf_counter()
        model, info = general_pretrained_model(args.mode, config=config, world=world, device=args.device)
        meta = {"build_s": time.perf_counter() - start, "steps": config.steps, "world_val_acc": info["val_acc"],
                "val_acc_objects": info.get("val_acc_objects"), "val_acc_fractals": info.get("val_acc_fractals"),
                "world": RECIPES[name]}
        print(f"{name}: built or loaded in {meta['build_s']:.0f} s ({config.steps} steps); world val acc "
              f"{info['val_acc']:.3f} (objects {info.get('val_acc_objects', float('nan')):.3f}, "
              f"fractals {info.get('val_acc_fractals', float('nan')):.3f})", flush=True)
        measure(name, model, meta)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
