"""Lesson 11's harness: fine-tuning the generator on a few orcas, and the judge that measures it."""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
import torch.nn as nn

from ..cache import cached_model
from ..claims import Claim
from ..device import resolve_device, seed_everything
from ..generator import (
    GENERATOR_BACKGROUNDS,
    GENERATOR_CLASSES,
    GENERATOR_ROTATION,
    GENERATOR_SCALE,
    flow_matching_loss,
    generator_world,
    training_layout,
    validation_loss,
)
from ..images import WORLD_VERSION, WorldStream
from ..losses import cross_entropy_loss
from ..models import ImageModelConfig, create_image_model
from ..modes import SIZES, Generator
from ..runner import Budget, Setup
from ..stats import exceeds
from ..training import RECIPE, Batches, Monitor, Optimiser, Speed, accuracy, train


def finetune_generator(model: nn.Module, images: torch.Tensor, *, budget: Budget, lr: float = 1e-3, seed: int = 0,
                       monitor: Monitor = Monitor(desc="fine-tuning"), setup: Setup = Setup()):
    """Train ``model`` in place with the flow-matching loss on a few ``images`` for ``budget.steps`` steps.

    The same function serves fine-tuning (a pre-trained model) and the from-scratch baseline
    (a fresh ``create_generator``), so both get the same budget. Returns the training History.

    Args:
        budget: ``Budget``: steps (required), batch_size (default 32, cut to the images),
            eval_every (or evals) for ``monitor.evaluate``.
        lr: peak learning rate (AdamW, no weight decay).
        seed: the batch order and the noise of the flow-matching loss.
        monitor: ``Monitor``: evaluate (e.g. the validation loss), desc, hook, log_every.
        setup: ``Setup``: device, progress.
    """
    if not isinstance(budget, Budget) or budget.steps is None:
        raise ValueError(f"finetune_generator needs a Budget with steps, e.g. Budget(steps=300); got {budget!r:.80}")
    if budget.keep_best or budget.test_curve or budget.augment or budget.stop_when is not None:
        raise ValueError("finetune_generator trains to the last step on the images as given: Budget.keep_best, "
                         "test_curve, augment and stop_when are other runners'")
    if monitor.eval_every is not None:
        raise ValueError("give finetune_generator's evaluation interval as Budget.eval_every, not Monitor.eval_every")
    eval_every = budget.eval_every or (max(1, budget.steps // budget.evals) if budget.evals else None)
    device = resolve_device(setup.device)
    batches = Batches(images.to(device), batch_size=min(budget.batch_size or 32, len(images)), seed=seed)
    seed_everything(seed)
    return train(model, flow_matching_loss, batches, steps=budget.steps, optimiser=Optimiser(lr=lr, weight_decay=0.0),
                 device=device, speed=Speed(channels_last=training_layout(device)),
                 monitor=replace(monitor, eval_every=eval_every), progress=setup.progress)


@dataclass(frozen=True)
class JudgeConfig:
    """Everything that determines the judge classifier (a narrow timm ResNet, as in lesson 01)."""
    image_size: int
    judge_steps: int
    width: int                   # the generator's width (lesson 11's sizes)
    batch_size: int = 64
    lr: float = 3e-3
    seed: int = 1
    classes: tuple[str, ...] = GENERATOR_CLASSES
    backgrounds: tuple[str, ...] = GENERATOR_BACKGROUNDS
    scale: tuple[float, float] = GENERATOR_SCALE
    max_rotation: float = GENERATOR_ROTATION
    noise: float = 0.02          # a little sensor noise, so the judge does not rely on clean pixels
    world_version: int = WORLD_VERSION
    recipe: int = RECIPE

    @classmethod
    def from_sizes(cls, S: Generator) -> JudgeConfig:
        """The judge's config for a mode's generator sizes: it judges at the generator's resolution,
        with the generator's width. Every key field names the size field that feeds it, so renaming
        a size field raises an AttributeError here instead of quietly changing the cache key."""
        return cls(image_size=S.image_size, judge_steps=S.judge_steps, width=S.width)


def judge_config(mode: str | None = None) -> JudgeConfig:
    """The judge's config of ``mode`` (default: the current mode)."""
    return JudgeConfig.from_sizes(SIZES.generator.in_mode(mode))


def orca_judge(config: JudgeConfig | None = None, *, device="auto", rebuild: bool = False, verbose: bool = True):
    """The classifier that names what a generated image shows: cached, or trained now (a minute).

    It is trained on the generator's world at the generator's resolution, so it judges images
    like the ones the generator is taught to draw. Returns (model in eval mode, info with
    ``val_acc`` on fresh scenes).
    """
    config = config or judge_config()
    device = resolve_device(device)
    arch = ImageModelConfig(width=config.width, image_size=config.image_size, steps=config.judge_steps,
                            batch_size=config.batch_size, lr=config.lr, num_classes=len(config.classes))

    def build(model):
        world = generator_world(config.image_size, classes=config.classes, backgrounds=config.backgrounds,
                                scale=config.scale, max_rotation=config.max_rotation, noise=config.noise)
        x_val, y_val = world.render(1024, seed=20_000 + config.seed, device=device)
        stream = WorldStream(world, config.batch_size, config.judge_steps, seed=config.seed + 7, device=device)
        seed_everything(config.seed)
        history = train(model, cross_entropy_loss, stream, optimiser=Optimiser(lr=config.lr, weight_decay=0.05),
                        device=device, monitor=Monitor(evaluate=lambda m: {"val_acc": accuracy(m, x_val, y_val)},
                                                       desc="training the judge"))
        return {"val_acc": history.last_eval("val_acc"), "interrupted": history.interrupted,
                "config": asdict(config)}

    model, info = cached_model("generator_judge", config, lambda: create_image_model(arch, seed=config.seed),
                               build, rebuild=rebuild, device=device, verbose=verbose)
    model.image_size = config.image_size          # judge_labels resizes other images to this
    model.classes = tuple(config.classes)         # what its outputs name, in order
    return model.eval(), info


# ---------------------------------------------------------------------------------------------
# Fair comparisons: each method's learning rate chosen on held-out orcas, then several seeds
# ---------------------------------------------------------------------------------------------

def choose_rate(make, images: torch.Tensor, val_images: torch.Tensor, *, rates, steps: int, batch_size: int,
                seed: int = 0, evals: int = 4, desc: str = "rate", device="auto"):
    """Train a fresh ``make()`` on ``images`` at every rate of ``rates`` for ``steps`` steps and
    score it by ``validation_loss`` on the held-out ``val_images`` (lower is better).

    Returns ``(rows, best, models)``: one row per rate (``lr``, ``val_loss`` at the end of the
    budget, ``best_val_loss`` and ``best_step`` along the way, ``curve``: [(step, val_loss)] from step 0),
    the row with the lowest final validation loss, and the trained models by rate.
    """
    from ..stats import best_by
    rows, models = [], {}
    every = max(1, steps // evals)
    for lr in rates:
        model = make()
        before = validation_loss(model, val_images)
        history = finetune_generator(model, images, budget=Budget(steps=steps, batch_size=batch_size, eval_every=every),
                                     lr=lr, seed=seed, setup=Setup(device=device),
                                     monitor=Monitor(evaluate=lambda m: {"val_loss": validation_loss(m, val_images)},
                                                     desc=f"{desc} lr={lr:g}"))
        curve = [(0, before)] + [(e["step"], e["val_loss"]) for e in history.evals]
        best_step, best_loss = min(curve, key=lambda c: c[1])
        rows.append({"lr": lr, "val_loss": curve[-1][1], "best_val_loss": best_loss, "best_step": best_step,
                     "curve": curve})
        models[lr] = model
    return rows, best_by(rows, "val_loss", higher_is_better=False), models


CLAIMS = [
    Claim("11", "the memorisation measure tells noisy copies of the training orcas (ratio below 0.5) "
                "from fresh real orcas (ratio between 0.7 and 1.3)",
          # a ratio of None (NaN: the judge called too few of the images orcas to measure) tells
          # nothing apart, so the claim does not hold
          lambda m: None not in (m["memorisation_ratio_copies"], m["memorisation_ratio_fresh"])
          and m["memorisation_ratio_copies"] < 0.5 and 0.7 <= m["memorisation_ratio_fresh"] <= 1.3),
    Claim("11", "the judge recognises most of the pre-trained generator's samples (some class at "
                "probability 0.5 or more for at least half of them)",
          lambda m: m["judge_confident_pretrained"] >= 0.5),
    Claim("11", "fine-tuned, the generator draws more orcas than the same network trained from scratch on the "
                "same orcas and budget, each at its own rate chosen on held-out orcas (real: a paired t-test "
                "over the seeds, 95%)",
          # paired: seed i fixes both arms' batch order and training noise, and both are measured
          # on the same sampling noise
          lambda m: exceeds(m["orca_rates_finetuned"], m["orca_rates_scratch"], paired=True)),
]


