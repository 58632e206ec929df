"""Lesson 11's harness: fine-tuning the generator on a few orcas, and the judge that measures it."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn

from ..cache import cached_model
from ..device import resolve_device, seed_everything
from ..generator import GENERATOR_BACKGROUNDS, flow_matching_loss, training_layout
from ..images import WORLD_VERSION, ImageWorld, WorldStream
from ..losses import cross_entropy_loss
from ..models import ImageModelConfig, create_image_model
from ..modes import checkpoint_config, sizes
from ..training import RECIPE, Batches, accuracy, train


def finetune_generator(model: nn.Module, images: torch.Tensor, *, steps: int, batch_size: int = 32,
                       lr: float = 1e-3, seed: int = 0, evaluate=None, eval_every: int | None = None,
                       desc: str = "fine-tuning", progress: bool = True, device="auto"):
    """Train ``model`` in place with the flow-matching loss on a few ``images`` for ``steps`` steps.

    The same function serves fine-tuning (a pre-trained model) and the from-scratch baseline
    (a fresh ``create_generator``), so both get the same budget. Returns the training History.
    """
    device = resolve_device(device)
    batches = Batches(images.to(device), batch_size=min(batch_size, len(images)), seed=seed)
    seed_everything(seed)
    return train(model, flow_matching_loss, batches, steps=steps, lr=lr,
                 weight_decay=0.0, device=device, channels_last=training_layout(device), evaluate=evaluate,
                 eval_every=eval_every, desc=desc, progress=progress)


@dataclass(frozen=True)
class JudgeConfig:
    """Everything that determines the judge classifier (a narrow timm ResNet, as in lesson 01)."""
    image_size: int
    judge_steps: int
    width: int = 16
    batch_size: int = 64
    lr: float = 3e-3
    seed: int = 1
    backgrounds: tuple[str, ...] = GENERATOR_BACKGROUNDS
    world_version: int = WORLD_VERSION
    recipe: int = RECIPE


def judge_config(mode: str | None = None) -> JudgeConfig:
    """The judge's config of ``mode`` (default: the current mode)."""
    return checkpoint_config(JudgeConfig, sizes("generator", mode))


def orca_judge(config: JudgeConfig | None = None, *, device="auto", rebuild: bool = False, verbose: bool = True):
    """The classifier that names what a generated image shows: cached, or trained now (a minute).

    It is trained on the generator's world at the generator's resolution, so it judges images
    like the ones the generator is taught to draw. Returns (model in eval mode, info with
    ``val_acc`` on fresh scenes).
    """
    config = config or judge_config()
    device = resolve_device(device)
    arch = ImageModelConfig(width=config.width, image_size=config.image_size, steps=config.judge_steps,
                            batch_size=config.batch_size, lr=config.lr)

    def build(model):
        world = ImageWorld(image_size=config.image_size, backgrounds=config.backgrounds, clutter=0.0, noise=0.02)
        x_val, y_val = world.render(1024, seed=20_000 + config.seed, device=device)
        stream = WorldStream(world, config.batch_size, config.judge_steps, seed=config.seed + 7, device=device)
        seed_everything(config.seed)
        history = train(model, cross_entropy_loss, stream, lr=config.lr, weight_decay=0.05, device=device,
                        evaluate=lambda m: {"val_acc": accuracy(m, x_val, y_val)}, desc="training the judge")
        return {"val_acc": history.last_eval("val_acc"), "interrupted": history.interrupted,
                "config": asdict(config)}

    model, info = cached_model("generator_judge", config, lambda: create_image_model(arch, seed=config.seed),
                               build, rebuild=rebuild, device=device, verbose=verbose)
    model.image_size = config.image_size          # judge_labels resizes other images to this
    return model.eval(), info
