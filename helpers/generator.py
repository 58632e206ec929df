"""Lesson 11's image generator: flow matching with a small U-Net.

Why this design: a flow-matching model learns one thing, the velocity that carries a noise image
to a data image along a straight line, so its loss is one line of mean squared error and its
sampler is a plain loop of Euler steps. Sampling is deterministic once the starting noise is
drawn (seeded), needs a few dozen steps rather than a diffusion model's hundreds, and the U-Net
is the same kind of network diffusion models use. On a CPU at 32 pixels it learns the world's
backgrounds and shapes in minutes.

The training objective, for a data image ``x1`` and noise ``x0 ~ N(0, I)``:

    t ~ U(0, 1);  xt = (1 - t) * x0 + t * x1;  loss = || model(xt, t) - (x1 - x0) ||^2

The generator is unconditional: it draws whatever the images it was trained on look like. That
makes the fine-tuning story plain: pre-trained on the general world it draws rough scenes of
every kind (in class mode the judge finds hardly any orcas among them); fine-tuned on a few
orcas it should draw orcas. ``Guided`` samples a fine-tuned model steered away from the
pre-trained one (classifier-free guidance with the pre-trained model as the unprompted one).

Example:
    >>> model, info = pretrained_generator()                   # cached, or trained now
    >>> images = sample(model, 16, seed=0)                      # (16, 3, 32, 32) in [0, 1]
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from .cache import cached_model
from .device import resolve_device, seed_everything, seeded
from .images import WORLD_VERSION, ImageWorld, WorldStream
from .modes import SIZES, Generator
from .training import RECIPE, Monitor, Optimiser, Speed, evaluating, train

# The world the generator learns: a simpler version of the general world (six kinds of object
# on three plain backgrounds, larger objects, no clutter and no sensor noise), so that a small
# generator pre-trained for minutes on a CPU can learn to draw it. The orcas for fine-tuning and
# the judge that names what a sample shows come from the same world.
GENERATOR_CLASSES = ("orca", "bird", "boat", "tree", "sun", "house")
GENERATOR_BACKGROUNDS = ("sky", "sea", "grass")
GENERATOR_SCALE = (0.6, 0.9)          # object half-size as a share of the half-image (world: 0.45-0.8)
GENERATOR_ROTATION = 0.25             # radians either way (world: 0.4)
GENERATOR_NOISE = 0.0                 # sensor noise (world: 0.04)


def generator_world(image_size: int = 32, classes: tuple[str, ...] = GENERATOR_CLASSES,
                    backgrounds: tuple[str, ...] = GENERATOR_BACKGROUNDS, scale=GENERATOR_SCALE,
                    max_rotation: float = GENERATOR_ROTATION, noise: float = GENERATOR_NOISE) -> ImageWorld:
    """The image world as the generator sees it (see ``GENERATOR_CLASSES`` and the lines below it)."""
    return ImageWorld(image_size=image_size, classes=tuple(classes), backgrounds=tuple(backgrounds),
                      scale=tuple(scale), max_rotation=max_rotation, noise=noise, clutter=0.0)


def orca_images(n: int, seed: int, image_size: int = 32, device="cpu", **world) -> torch.Tensor:
    """``n`` orca scenes (n, 3, S, S) in [0, 1] from the generator's world (``world``: its fields)."""
    world = generator_world(image_size, **world)
    orca_only = ImageWorld(**{**asdict(world), "classes": ("orca",)})
    return orca_only.render(n, seed, device)[0]


# ---------------------------------------------------------------------------------------------
# The U-Net
# ---------------------------------------------------------------------------------------------

def time_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of the time ``t`` (B,) in [0, 1] -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=t.device) / half)
    angles = 1000.0 * t.float().view(-1, 1) * freqs.view(1, -1)                   # (B, half)
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class ResBlock(nn.Module):
    """Two 3x3 convolutions with GroupNorm and SiLU; the time embedding shifts the features."""

    def __init__(self, c_in: int, c_out: int, t_dim: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(8, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.time = nn.Linear(t_dim, c_out)
        self.norm2 = nn.GroupNorm(8, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x, t_emb):
        h = self.conv1(F.silu(self.norm1(x)))                     # (B, C_out, H, W)
        h = h + self.time(t_emb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


class UNet(nn.Module):
    """A small U-Net on 2x2 patches: 32 pixels are folded into a 16x16 grid of patches, then
    16 -> 8 -> 4 and back, with skip connections, then unfolded to 32 pixels.

    Folding 2x2 pixels into channels first (``pixel_unshuffle``, as diffusion transformers do with
    patches) cuts the work of the full-resolution layers by four, which is what makes CPU
    training take minutes rather than hours.

    ``forward(x, t)``: x (B, 3, S, S) the noisy image in data units ([-1, 1] for data, N(0, 1)
    for noise), t (B,) in [0, 1]; returns the predicted velocity (B, 3, S, S).
    """

    def __init__(self, width: int = 32, image_size: int = 32):
        super().__init__()
        w, t_dim = width, 4 * width
        self.t_dim, self.image_size = t_dim, image_size
        self.time_mlp = nn.Sequential(nn.Linear(t_dim, t_dim), nn.SiLU(), nn.Linear(t_dim, t_dim))
        self.stem = nn.Conv2d(12, w, 3, padding=1)                # 2x2 patches of 3 colours
        self.down1 = ResBlock(w, w, t_dim)                        # S/2
        self.down2 = ResBlock(w, 2 * w, t_dim)                    # S/4
        self.down3 = ResBlock(2 * w, 2 * w, t_dim)                # S/8
        self.mid = ResBlock(2 * w, 2 * w, t_dim)                  # S/8
        self.up3 = ResBlock(4 * w, 2 * w, t_dim)                  # S/8, with the skip from down3
        self.up2 = ResBlock(4 * w, w, t_dim)                      # S/4, with the skip from down2
        self.up1 = ResBlock(2 * w, w, t_dim)                      # S/2, with the skip from down1
        self.out = nn.Sequential(nn.GroupNorm(8, w), nn.SiLU(), nn.Conv2d(w, 12, 3, padding=1))

    def forward(self, x, t):
        e = self.time_mlp(time_embedding(t, self.t_dim))          # (B, t_dim)
        p = F.pixel_unshuffle(x, 2)                               # (B, 12, S/2, S/2)
        h1 = self.down1(self.stem(p), e)                          # (B, w, S/2, S/2)
        h2 = self.down2(F.avg_pool2d(h1, 2), e)                   # (B, 2w, S/4, S/4)
        h3 = self.down3(F.avg_pool2d(h2, 2), e)                   # (B, 2w, S/8, S/8)
        h = self.mid(h3, e)
        h = self.up3(torch.cat([h, h3], 1), e)                    # (B, 2w, S/8, S/8)
        h = F.interpolate(h, scale_factor=2, mode="nearest")
        h = self.up2(torch.cat([h, h2], 1), e)                    # (B, w, S/4, S/4)
        h = F.interpolate(h, scale_factor=2, mode="nearest")
        h = self.up1(torch.cat([h, h1], 1), e)                    # (B, w, S/2, S/2)
        return F.pixel_shuffle(self.out(h), 2)                    # (B, 3, S, S)


# ---------------------------------------------------------------------------------------------
# Flow matching: the loss and the sampler
# ---------------------------------------------------------------------------------------------

def flow_matching_loss(model, batch):
    """The training loss; ``batch = (images,)`` or ``(images, labels)``, images in [0, 1]."""
    x1 = batch[0] * 2 - 1                                         # data in [-1, 1]
    x0 = torch.randn_like(x1)                                     # noise
    t = torch.rand(len(x1), device=x1.device)
    tt = t.view(-1, 1, 1, 1)
    xt = (1 - tt) * x0 + tt * x1                                  # a point on the straight path
    return F.mse_loss(model(xt, t), x1 - x0)                      # its velocity is x1 - x0


@torch.no_grad()
def validation_loss(model, images: torch.Tensor, seed: int = 0, repeats: int = 4, batch_size: int = 256) -> float:
    """The flow-matching loss on held-out ``images``, with noise and times fixed by ``seed``.

    The same images, seed and repeats give the same draws for every model, so the number compares
    models (and learning rates) fairly: a validation criterion that needs no sampling. Times are
    spread evenly over (0, 1) rather than drawn, for a steadier estimate.
    """
    from .training import evaluating
    device = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)
    total, count = 0.0, 0
    with evaluating(model):
        for r in range(repeats):
            for b in range(0, len(images), batch_size):
                x1 = images[b:b + batch_size].to(device) * 2 - 1
                n = len(x1)
                x0 = torch.randn(x1.shape, generator=g).to(device)
                t = ((torch.arange(n) + (r + 0.5) / repeats) / n).to(device)      # even times in (0, 1)
                t = t[torch.randperm(n, generator=g).to(device)]
                tt = t.view(-1, 1, 1, 1)
                v = model((1 - tt) * x0 + tt * x1, t).float()
                total += float(((v - (x1 - x0)) ** 2).mean()) * n
                count += n
    return total / count


class Guided(nn.Module):
    """Sample from ``model`` steered away from ``base``: ``v = v_model + weight * (v_model - v_base)``.

    This is classifier-free guidance with the pre-trained generator in the role of the
    "unconditional" model: the difference between the fine-tuned and the pre-trained velocity is
    what fine-tuning added ("more orca"), and ``weight`` > 0 exaggerates it. ``weight=0`` is the
    fine-tuned model alone. Neither model is changed; both are needed at every sampling step.
    """

    def __init__(self, model: nn.Module, base: nn.Module, weight: float = 1.0):
        super().__init__()
        self.model, self.base, self.weight = model, base, weight
        self.image_size = model.image_size

    def forward(self, x, t):
        v = self.model(x, t)
        if self.weight == 0:
            return v
        return v + self.weight * (v - self.base(x, t))


@torch.no_grad()
def sample(model: nn.Module, n: int, seed: int = 0, steps: int = 24, batch_size: int = 256,
           progress: bool = True, device=None) -> torch.Tensor:
    """``n`` images (n, 3, S, S) in [0, 1], from noise drawn with ``seed``, by ``steps`` Euler steps.

    The same model, seed and step count give the same images (the noise comes from a CPU
    generator, so also on a GPU up to float rounding).
    """
    device = resolve_device(device) if device is not None else next(model.parameters()).device
    size = model.image_size
    x = torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed)).to(device)
    dt = 1.0 / steps
    with evaluating(model):
        for i in tqdm(range(steps), desc="sampling", disable=not progress, leave=False):
            t = torch.full((n,), i * dt, device=device)
            for b in range(0, n, batch_size):
                x[b:b + batch_size] += dt * model(x[b:b + batch_size], t[b:b + batch_size]).float()
    return ((x + 1) / 2).clamp(0, 1).cpu()


# ---------------------------------------------------------------------------------------------
# Configs, building, pre-training (cached) and fine-tuning
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GeneratorConfig:
    """Everything that determines the pre-trained generator (its hash names the cache file)."""
    image_size: int
    width: int                   # channels at full resolution; 2x at 16 and 8 pixels
    pretrain_steps: int          # pre-training steps, each on a fresh batch from the world
    pretrain_batch: int
    pretrain_lr: float
    ema_decay: float             # the kept weights are this exponential average of the trained ones
    seed: int = 0
    classes: tuple[str, ...] = GENERATOR_CLASSES
    backgrounds: tuple[str, ...] = GENERATOR_BACKGROUNDS
    scale: tuple[float, float] = GENERATOR_SCALE
    max_rotation: float = GENERATOR_ROTATION
    noise: float = GENERATOR_NOISE
    world_version: int = WORLD_VERSION
    recipe: int = RECIPE

    @classmethod
    def from_sizes(cls, S: Generator) -> GeneratorConfig:
        """The config that a mode's generator sizes give. Every key field names the size field that
        feeds it, so renaming a size field raises an AttributeError here instead of quietly changing
        the cache key."""
        return cls(image_size=S.image_size, width=S.width, pretrain_steps=S.pretrain_steps,
                   pretrain_batch=S.pretrain_batch, pretrain_lr=S.pretrain_lr, ema_decay=S.ema_decay)

    def world(self) -> ImageWorld:
        """The world this generator learns from."""
        return generator_world(self.image_size, **world_fields(self))


def world_fields(config) -> dict:
    """The generator-world fields of a config (``classes``, ``backgrounds``, ``scale``, ...)."""
    names = ("classes", "backgrounds", "scale", "max_rotation", "noise")
    return {f.name: getattr(config, f.name) for f in fields(config) if f.name in names}


class EMA:
    """An exponential moving average of a model's weights (Polyak averaging), as diffusion and
    flow-matching models keep it: ``avg <- d * avg + (1 - d) * weights`` after every step.

    The average smooths out the noise of the last optimiser steps, so it samples cleaner images
    than the raw weights for the same training. ``d`` ramps up from 0.1 as ``(1 + n) / (10 + n)``
    to ``decay``, so the random initial weights are forgotten quickly.
    """

    def __init__(self, decay: float):
        self.decay, self.updates, self.average = decay, 0, None

    @torch.no_grad()
    def update(self, model: nn.Module):
        state = model.state_dict()
        if self.average is None:
            self.average = {k: v.detach().clone() for k, v in state.items()}
            return
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for k, v in state.items():
            if v.dtype.is_floating_point:
                self.average[k].lerp_(v.detach(), 1 - d)
            else:
                self.average[k].copy_(v)

    def copy_to(self, model: nn.Module):
        model.load_state_dict(self.average)


class Averaged:
    """Batches of ``data`` that update ``ema`` from ``model`` whenever the next batch is asked for,
    that is right after each optimiser step of ``train`` (and once before the first)."""

    def __init__(self, data, model: nn.Module, ema: EMA):
        self.data, self.model, self.ema = data, model, ema

    def __len__(self):
        return len(self.data)

    def __iter__(self):
        for batch in self.data:
            self.ema.update(self.model)
            yield batch


def training_layout(device) -> bool:
    """Whether the U-Net trains channels_last: on CUDA only. Unlike the ResNets, it gains
    nothing from NHWC on a CPU (``benchmarks/channels_last.py`` measured 0.98x to 1.03x on an x86 CPU)."""
    return torch.device(device).type == "cuda"


def create_generator(config: GeneratorConfig | None = None, seed: int = 0) -> UNet:
    """A fresh, randomly initialised U-Net for ``config`` (same ``seed``, same weights)."""
    config = config or generator_config()
    with seeded(seed):                 # the global generator is left alone
        return UNet(config.width, config.image_size)


def generator_config(mode: str | None = None) -> GeneratorConfig:
    """The pre-trained generator's config of ``mode`` (default: the current mode)."""
    return GeneratorConfig.from_sizes(SIZES.generator.in_mode(mode))


def pretrained_generator(config: GeneratorConfig | None = None, *, device="auto", rebuild: bool = False,
                         verbose: bool = True):
    """A fresh copy of the generator pre-trained on the general world: cached, or trained now.

    Returns:
        (model, info): the model on ``device`` and what was stored with it (``history``,
        ``images_per_s``, ``train_images``, ``config``).
    """
    config = config or generator_config()
    device = resolve_device(device)

    def build(model):
        stream = WorldStream(config.world(), config.pretrain_batch, config.pretrain_steps, seed=config.seed,
                             device=device)
        seed_everything(config.seed)
        ema = EMA(config.ema_decay)
        history = train(model, flow_matching_loss, Averaged(stream, model, ema),
                        optimiser=Optimiser(lr=config.pretrain_lr, weight_decay=0.0), device=device,
                        speed=Speed(channels_last=training_layout(device)),
                        monitor=Monitor(desc="pre-training the generator"))
        ema.update(model)                       # the last step's weights
        ema.copy_to(model)                      # keep the average
        return {"images_per_s": history.samples_per_s, "interrupted": history.interrupted,
                "train_s": history.train_s,
                "train_images": history.samples[-1] if history.samples else 0,
                "history": history.as_dict(), "config": asdict(config)}

    model, info = cached_model("generator_pretrained", config, lambda: create_generator(config),
                               build, rebuild=rebuild, device=device, verbose=verbose)
    return model.train(), info

