"""The course's image model and its pre-trained checkpoint (lesson 01).

The image model is a ResNet-18 built by timm at a quarter of the usual width, so a laptop CPU
trains it in minutes on 48-pixel scenes. Because it is an ordinary timm model, every timm
interface works on it (``get_classifier()``, ``reset_classifier(n)``, ``forward_features``,
``feature_info``), and every lesson's surgery also works on any other timm architecture.

``pretrained_image_model()`` is the one call later lessons use: it returns a fresh copy of
lesson 01's model, loaded from the cache, or trains it now if the cache has none.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import timm
import torch.nn as nn

from .cache import cached_model
from .device import resolve_device, seed_everything, seeded
from .images import CLASSES, WORLD_VERSION, ImageWorld, WorldStream
from .losses import cross_entropy_loss
from .modes import SIZES, PretrainImage, Welcome, sizes
from .training import RECIPE, accuracy, train


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
        return timm.create_model(config.arch, pretrained=False,
                                 num_classes=num_classes or config.num_classes,
                                 channels=(w, 2 * w, 4 * w, 8 * w), stem_width=w,
                                 replace_stem_pool=False)


def pretrain_image_model(model: nn.Module, config: ImageModelConfig, *, device="auto",
                         val_images: int = 2048, progress: bool = True, hook=None, world=None):
    """Train ``model`` from scratch on the general world (lesson 01), or on another ``world`` (any
    object with ``render(n, seed, device) -> (images, labels)``, e.g. ``FractalWorld``) with the
    same budget, rate and weight decay. Returns (history, val_acc)."""
    device = resolve_device(device)
    world = world or ImageWorld(image_size=config.image_size)
    x_val, y_val = world.render(val_images, seed=10_000 + config.seed, device=device)
    stream = WorldStream(world, config.batch_size, config.steps, seed=config.seed, device=device)
    seed_everything(config.seed)
    history = train(model, cross_entropy_loss, stream, lr=config.lr, weight_decay=0.05,
                    device=device, evaluate=lambda m: {"val_acc": accuracy(m, x_val, y_val)},
                    eval_every=max(1, config.steps // 6),
                    progress=progress, desc="pre-training", hook=hook)
    return history, history.last_eval("val_acc")


PRETRAINED_SOURCES = ("course", "timm")


def pretrained_source(source: str | None = None) -> str:
    """Where pre-trained image weights come from: ``source`` when given, else ``$COURSE_PRETRAINED``
    (the one place that reads it); ``course`` (lesson 01's model, the default, offline) or ``timm``
    (timm's published ImageNet weights for the full-width architecture; needs the network once)."""
    import os
    given = source is not None
    source = (source if given else os.environ.get("COURSE_PRETRAINED", "course")).strip().lower() or "course"
    if source not in PRETRAINED_SOURCES:
        where = "source" if given else "COURSE_PRETRAINED"
        raise ValueError(f"{where}={source!r}: choose one of {list(PRETRAINED_SOURCES)}")
    return source


def backbone_key(mode: str | None = None, source: str | None = None) -> dict:
    """What a cached run's key records about its network: lesson 01's configuration in ``mode``,
    and, with timm's weights (``source``/``$COURSE_PRETRAINED``), that the network is timm's
    full-width ``arch`` (random or ImageNet weights), so the two never share a cache entry."""
    key = asdict(image_model_config(mode))
    if pretrained_source(source) == "timm":
        key["pretrained"] = "timm"
    return key


def pretrained_image_size(mode: str | None = None, source: str | None = None) -> int:
    """The side of the images the pre-trained model expects: lesson 01's size in ``mode``, or, with
    timm's weights (``source="timm"`` or ``$COURSE_PRETRAINED=timm``), the input size of the
    architecture's published pretrained configuration (224 for resnet18): fine-tuning shows a
    network images at the resolution its features were learnt at."""
    config = image_model_config(mode)
    if pretrained_source(source) != "timm":
        return config.image_size
    cfg = timm.get_pretrained_cfg(config.arch)
    return int(cfg.input_size[-1]) if cfg is not None and cfg.input_size else config.image_size


def scratch_image_model(config: ImageModelConfig | None = None, num_classes: int | None = None, *, seed: int = 0,
                        source: str | None = None) -> nn.Module:
    """Random weights in the architecture the pre-trained model has, so from scratch is a fair
    baseline: the narrow course CNN, or with timm's weights (``source``/``$COURSE_PRETRAINED``)
    timm's full-width ``config.arch``."""
    config = config or image_model_config()
    if pretrained_source(source) != "timm":
        return create_image_model(config, num_classes=num_classes, seed=seed)
    with seeded(seed):
        return timm.create_model(config.arch, pretrained=False, num_classes=num_classes or config.num_classes)


def pretrained_image_model(config: ImageModelConfig | None = None, *, device="auto", source: str | None = None,
                           rebuild: bool = False, verbose: bool = True, hook=None):
    """A fresh copy of lesson 01's pre-trained model: from the cache, or trained now.

    Every call returns new weights read from the checkpoint, so an experiment cell that calls
    it never starts from weights another cell changed. ``source`` (``"course"`` or ``"timm"``)
    defaults to ``$COURSE_PRETRAINED``, read here, at the lesson's call.

    Returns:
        (model, info): the model on ``device`` (in train mode), and what was stored with it:
        ``val_acc``, ``images_per_s``, ``train_images``, the training ``history``.
    """
    config = config or image_model_config()
    device = resolve_device(device)
    if pretrained_source(source) == "timm":
        from .own_data import timm_pretrained
        model = timm_pretrained(config.arch, config.num_classes).to(device)
        if verbose:
            print(f"Using timm's published ImageNet weights for {config.arch} (COURSE_PRETRAINED=timm).")
        return model.train(), {"source": "timm", "val_acc": None, "images_per_s": None,
                               "train_images": None, "history": None}
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
