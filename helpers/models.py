"""The course's image model and its pre-trained checkpoint (lesson 01).

The image model is a ResNet-18 built by timm at a quarter of the usual width, so a laptop CPU
trains it in minutes on 48-pixel scenes. Because it is an ordinary timm model, every timm
interface works on it (``get_classifier()``, ``reset_classifier(n)``, ``forward_features``,
``feature_info``), and every lesson's surgery also works on any other timm architecture.

``pretrained_image_model()`` is the one call later lessons use: it returns a fresh copy of
lesson 01's model, loaded from the cache, or trains it now if the cache has none. It is pre-trained
on the object world (``ImageWorld``); ``general_pretrained_model()`` pre-trains the same network
on the general world (``helpers.general_world.GeneralWorld``: the objects mixed with fractals, dead
leaves and 1/f textures) under its own cache entry, for the transfer benchmark.
"""
from __future__ import annotations

import copy
import os
from dataclasses import asdict, dataclass, replace

import timm
import torch.nn as nn

from .cache import cached_model
from .device import resolve_device, seed_everything, seeded
from .images import CLASSES, WORLD_VERSION, ImageWorld, WorldStream
from .losses import cross_entropy_loss
from .modes import SIZES, PretrainImage, Welcome, sizes
from .training import RECIPE, Monitor, Optimiser, accuracy, predict, train


@dataclass(frozen=True)
class ImageModelConfig:
    """Everything that determines lesson 01's checkpoint (its hash names the cache file)."""
    width: int                   # channels of the first stage; later stages double it
    image_size: int
    steps: int
    batch_size: int
    lr: float
    arch: str = "resnet18"
    num_classes: int = len(CLASSES)
    seed: int = 0
    world_version: int = WORLD_VERSION
    recipe: int = RECIPE

    @classmethod
    def from_sizes(cls, S: PretrainImage | Welcome) -> ImageModelConfig:
        """The config that a mode's pre-training sizes give (lesson 01's, or lesson 00's smaller
        model's). Every key field names the size field that feeds it, so renaming a size field
        raises an AttributeError here instead of quietly changing the cache key."""
        return cls(width=S.width, image_size=S.image_size, steps=S.steps, batch_size=S.batch_size, lr=S.lr)


def image_model_config(mode: str | None = None) -> ImageModelConfig:
    """The lesson-01 config of ``mode`` (default: the current mode), sizes from ``helpers.modes``."""
    return ImageModelConfig.from_sizes(SIZES.pretrain_image.in_mode(mode))


# timm's pretrained-configuration entries that describe downloadable ImageNet weights, which a
# course network does not have
_WEIGHTS_KEYS = ("url", "hf_hub_id", "tag", "license", "origin_url", "paper_ids", "pool_size")


def create_image_model(config: ImageModelConfig | None = None, num_classes: int | None = None,
                       seed: int = 0) -> nn.Module:
    """A fresh, randomly initialised course CNN (a narrow timm ResNet) for ``config``.

    The stem is timm's plain ResNet stem: a 7x7 stride-2 convolution with 64 channels (timm uses
    ``stem_width`` only for deep stems) and a max-pool; the four stages have ``width`` x 1, 2, 4, 8
    channels.
    """
    config = config or image_model_config()
    w = config.width
    with seeded(seed):          # the same seed gives the same weights; the global generator is left alone
        model = timm.create_model(config.arch, pretrained=False,
                                  num_classes=num_classes or config.num_classes,
                                  channels=(w, 2 * w, 4 * w, 8 * w), stem_width=w,
                                  replace_stem_pool=False)
    # timm hands every resnet18 the configuration of its ImageNet weights (224 px, their address).
    # This network learns at config.image_size from the course's worlds, and a runner given it as
    # a module (``source=model``) reads the size to show it images at from here.
    side = config.image_size
    model.pretrained_cfg = {**{k: v for k, v in model.pretrained_cfg.items() if k not in _WEIGHTS_KEYS},
                            "input_size": (3, side, side), "test_input_size": (3, side, side),
                            "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0),     # it takes [0, 1] images as they are
                            "num_classes": model.num_classes, "source": "course"}
    return model


def pretrain_image_model(model: nn.Module, config: ImageModelConfig, *, device="auto",
                         val_images: int = 2048, progress: bool = True, hook=None, world=None):
    """Train ``model`` from scratch on the object world (lesson 01), or on another ``world`` (any
    object with ``render(n, seed, device) -> (images, labels)``, e.g. ``FractalWorld`` or
    ``GeneralWorld``) with the same budget, rate and weight decay. A world with ``parts(labels)``
    (the general world) also gets each part's validation accuracy, ``val_acc_<part>``, in the
    history. Returns (history, val_acc)."""
    device = resolve_device(device)
    world = world or ImageWorld(image_size=config.image_size)
    x_val, y_val = world.render(val_images, seed=10_000 + config.seed, device=device)
    stream = WorldStream(world, config.batch_size, config.steps, seed=config.seed, device=device)
    seed_everything(config.seed)
    history = train(model, cross_entropy_loss, stream, optimiser=Optimiser(lr=config.lr, weight_decay=0.05),
                    device=device, monitor=Monitor(evaluate=_evaluator(world, x_val, y_val),
                                                   eval_every=max(1, config.steps // 6), desc="pre-training", hook=hook),
                    progress=progress)
    return history, history.last_eval("val_acc")


def _evaluator(world, x_val, y_val):
    """``evaluate(model) -> {"val_acc": ...}``, plus ``val_acc_<part>`` for each of the world's parts."""
    if not hasattr(world, "parts"):
        return lambda m: {"val_acc": accuracy(m, x_val, y_val)}
    parts = world.parts(y_val)

    def evaluate(m):
        right = (predict(m, x_val).argmax(1) == y_val.to(x_val.device)).float()
        return {"val_acc": right.mean().item(),
                **{f"val_acc_{name}": right[mask].mean().item() for name, mask in parts.items() if mask.any()}}
    return evaluate


def resolve_source(source=None, mode: str | None = None):
    """Where pre-trained image weights come from, in the course's one vocabulary, resolved here:

    - ``"course"``: lesson 01's checkpoint (offline; the default);
    - a timm model name (``"resnet18"``, ``"convnext_atto"``, ...): timm's published weights, online
      the first time; ``"timm"`` is short for the course architecture's name
      (``image_model_config(mode).arch``: resnet18 at full width);
    - an ``nn.Module``: that model (every builder copies it; it is never changed).

    ``None`` reads ``$COURSE_PRETRAINED`` (the one place that reads it; "course" when unset). The
    lessons' runners resolve their source once, at their entry (``helpers.runner.Setup.resolve``),
    and pass the result down, so nothing below them reads the environment.

    Returns "course", a timm model name, or the module. A resolved source resolves to itself.

    >>> resolve_source("course"), resolve_source("timm", "smoke"), resolve_source("convnext_atto")
    ('course', 'resnet18', 'convnext_atto')
    """
    if isinstance(source, nn.Module):
        return source
    given = source is not None
    name = source if given else os.environ.get("COURSE_PRETRAINED", "course")
    if not isinstance(name, str):
        raise TypeError(f"source must be 'course' (lesson 01's model), a timm model name such as 'resnet18', "
                        f"or an nn.Module; got {name!r}")
    if name.strip().lower() in ("", "course"):
        return "course"
    if name.strip().lower() == "timm":
        return image_model_config(mode).arch
    if timm.is_model(name.strip().split(".")[0]):
        return name.strip()
    where = "source" if given else "COURSE_PRETRAINED"
    raise ValueError(f"{where}={name!r}: choose 'course' (lesson 01's model, offline), 'timm' (timm's published "
                     f"weights for the course's architecture, {image_model_config(mode).arch}), a timm model name "
                     f"such as 'resnet18' or 'convnext_atto' (timm.list_models() has them all), or an nn.Module")


def backbone_key(mode: str | None = None, source=None) -> dict:
    """What a cached run's key records about its network: lesson 01's configuration in ``mode``,
    and, with timm's weights (a timm name, or ``"timm"``), that the network is timm's: the course
    architecture's name keeps the key it always had (``pretrained: "timm"``); another name is
    recorded as its ``arch``. So two networks never share a cache entry. Runs from your own
    ``nn.Module`` are not cached (the course cannot name its weights)."""
    source = resolve_source(source, mode)
    key = asdict(image_model_config(mode))
    if isinstance(source, nn.Module):
        raise ValueError("runs from your own nn.Module are not cached: give source='course' or a timm name")
    if source != "course":
        key["pretrained"] = "timm"
        if source != key["arch"]:
            key["arch"] = source
    return key


def pretrained_image_size(mode: str | None = None, source=None) -> int:
    """The side of the images the pre-trained model expects: lesson 01's size in ``mode``; for a timm
    name, the input size of its published pretrained configuration (224 for resnet18); for a
    module, its ``pretrained_cfg``'s (else lesson 01's): fine-tuning shows a network images at the
    resolution its features were learnt at."""
    source = resolve_source(source, mode)
    config = image_model_config(mode)
    if isinstance(source, nn.Module):
        cfg = getattr(source, "pretrained_cfg", None) or {}
        size = cfg.get("input_size") if isinstance(cfg, dict) else None
        return int(size[-1]) if size else config.image_size
    if source == "course":
        return config.image_size
    cfg = timm.get_pretrained_cfg(source)
    return int(cfg.input_size[-1]) if cfg is not None and getattr(cfg, "input_size", None) else 224


def scratch_image_model(config: ImageModelConfig | None = None, num_classes: int | None = None, *, seed: int = 0,
                        source=None) -> nn.Module:
    """Random weights in the architecture the pre-trained model has, so from scratch is a fair
    baseline: the narrow course CNN; timm's architecture of that name (full width); or a copy of
    your module with every layer re-initialised (``reset_parameters``)."""
    config = config or image_model_config()
    source = resolve_source(source)
    if source == "course":
        return create_image_model(config, num_classes=num_classes, seed=seed)
    with seeded(seed):
        if isinstance(source, str):
            return timm.create_model(source, pretrained=False, num_classes=num_classes or config.num_classes)
        twin = copy.deepcopy(source)
        for m in twin.modules():
            if hasattr(m, "reset_parameters") and m is not twin:
                m.reset_parameters()
        return twin


def pretrained_image_model(config: ImageModelConfig | None = None, *, device="auto", source: str | None = None,
                           rebuild: bool = False, verbose: bool = True, hook=None):
    """A fresh copy of lesson 01's pre-trained model: from the cache, or trained now.

    Every call returns new weights read from the checkpoint, so an experiment cell that calls
    it never starts from weights another cell changed. ``source``: ``resolve_source``'s vocabulary
    (a timm name gives timm's published weights, a module a copy of it).

    Returns:
        (model, info): the model on ``device`` (in train mode), and what was stored with it:
        ``val_acc``, ``images_per_s``, ``train_images``, the training ``history``.
    """
    config = config or image_model_config()
    device = resolve_device(device)
    source = resolve_source(source)
    if source != "course":
        if isinstance(source, nn.Module):
            model = copy.deepcopy(source)
        else:
            from .own_data import timm_pretrained
            model = timm_pretrained(source, config.num_classes)
            if verbose:
                print(f"Using timm's published ImageNet weights for {source}.")
        return model.to(device).train(), {"source": "timm" if isinstance(source, str) else "module", "val_acc": None,
                                          "images_per_s": None, "train_images": None, "history": None}
    val_images = sizes("pretrain_image").val_images

    def build(model):
        history, val_acc = pretrain_image_model(model, config, device=device,
                                                val_images=val_images, hook=hook)
        return {"val_acc": val_acc, "images_per_s": history.samples_per_s,
                "train_images": history.samples[-1] if history.samples else 0,
                "interrupted": history.interrupted, "history": history.as_dict(),
                "config": asdict(config)}

    model, info = cached_model("image_pretrained", config, lambda: create_image_model(config),
                               build, rebuild=rebuild, device=device, verbose=verbose)
    return model.train(), info


@dataclass(frozen=True)
class GeneralPretrainConfig:
    """Keys the cached general-world model: lesson 01's network and budget, and the world's
    parameters (its ``version`` included)."""
    arch: dict          # lesson 01's ImageModelConfig, its head sized for the general world
    world: dict         # the GeneralWorld


def general_pretrained_model(mode: str | None = None, *, config: ImageModelConfig | None = None, world=None,
                             device="auto", rebuild: bool = False, verbose: bool = True, hook=None):
    """Lesson 01's network pre-trained on the general world with lesson 01's budget (the same
    steps, batch, rate and weight decay as the object world's model), cached; built by
    ``benchmarks/transfer.py`` on first use (no lesson needs it yet). Its head names every class of the world: the 14 objects, then the fractals.

    Args:
        mode: whose lesson-01 config (default: the current mode); or give ``config``.
        world: a ``GeneralWorld`` (default: ``GeneralWorld`` at the config's image size).
    Returns:
        (model, info): the model on ``device`` (train mode); ``info`` holds ``val_acc`` on held-out
        world images, ``val_acc_objects`` and ``val_acc_fractals`` (each part's share right), the
        training ``history`` (per-part curves in its evals), ``images_per_s``, ``train_images``.
    """
    from .general_world import GeneralWorld
    config = config or image_model_config(mode)
    world = world or GeneralWorld(image_size=config.image_size)
    if world.image_size != config.image_size:
        raise ValueError(f"world.image_size={world.image_size} differs from the network's {config.image_size}")
    config = replace(config, num_classes=world.num_classes)
    device = resolve_device(device)
    val_images = sizes("pretrain_image", mode).val_images

    def build(model):
        history, val_acc = pretrain_image_model(model, config, device=device, world=world,
                                                val_images=val_images, hook=hook)
        last = {k: v for k, v in history.evals[-1].items() if k.startswith("val_acc_")} if history.evals else {}
        return {"val_acc": val_acc, **last, "images_per_s": history.samples_per_s,
                "train_images": history.samples[-1] if history.samples else 0,
                "interrupted": history.interrupted, "history": history.as_dict(),
                "config": asdict(config), "world": asdict(world)}

    key = GeneralPretrainConfig(arch=asdict(config), world=asdict(world))
    model, info = cached_model("image_general_pretrained", key,
                               lambda: create_image_model(config, num_classes=world.num_classes, seed=config.seed),
                               build, rebuild=rebuild, device=device, verbose=verbose)
    return model.train(), info
