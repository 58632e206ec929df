"""Measures of a generator's samples: what they show, how varied they are, whether they are copies.

- ``class_rate``: the share of samples a classifier (the judge) labels as one class, e.g. orca.
- ``diversity``: the mean distance between two different samples; copies of one image score 0.
- ``memorisation_ratio``: how close samples sit to their nearest training image, relative to how
  close *new* real images sit to theirs. About 1: the samples are as new as fresh real orcas;
  near 0: the generator hands back its training images.

Distances are root-mean-square pixel differences (images in [0, 1]), so 0.1 means a typical
pixel differs by about a tenth of the intensity range.

Example:
    >>> rate = class_rate(judge, samples, "orca")
    >>> ratio = memorisation_ratio(samples, train_orcas, fresh_orcas)
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .images import CLASSES
from .training import predict


def pixel_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """RMS pixel distance between every image of ``a`` (N, C, H, W) and of ``b`` (M, C, H, W) -> (N, M)."""
    a, b = a.flatten(1).float().cpu(), b.flatten(1).float().cpu()
    return torch.cdist(a, b) / a.shape[1] ** 0.5


def nearest(samples: torch.Tensor, references: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each sample's distance to its nearest reference image, and that image's index: (N,), (N,)."""
    return pixel_distances(samples, references).min(dim=1)


def memorisation_ratio(samples: torch.Tensor, train_images: torch.Tensor, real_images: torch.Tensor) -> float:
    """Median nearest-training-image distance of the samples over that of fresh real images.

    ``real_images`` must be images of the same kind that were NOT in the training set: their
    distance to the training set is what "a new orca" looks like. A ratio well below 1 means the
    samples are closer to the training images than new real ones are: copies.
    """
    d_samples, _ = nearest(samples, train_images)
    d_real, _ = nearest(real_images, train_images)
    return float(d_samples.median() / d_real.median().clamp(min=1e-8))


def diversity(images: torch.Tensor) -> float:
    """Mean RMS pixel distance between two different images of the set (0 if all are equal)."""
    n = len(images)
    if n < 2:
        return 0.0
    d = pixel_distances(images, images)
    return float(d.sum() / (n * (n - 1)))


def judge_labels(judge: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The judge's predicted class ids (N,) for images in [0, 1].

    If the judge carries an ``image_size`` attribute (``orca_judge`` sets it) and the images
    differ, they are resized to it first, so a 48-pixel classifier can judge 32-pixel samples.
    """
    size = getattr(judge, "image_size", None)
    if size and images.shape[-1] != size:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    return predict(judge, images).argmax(1).cpu()


def class_rate(judge: nn.Module, images: torch.Tensor, name: str = "orca", classes=CLASSES) -> float:
    """The share of ``images`` that ``judge`` labels as class ``name``."""
    if name not in classes:
        raise ValueError(f"unknown class {name!r}; valid classes are {list(classes)}")
    return float((judge_labels(judge, images) == classes.index(name)).float().mean())


def class_shares(judge: nn.Module, images: torch.Tensor, classes=CLASSES) -> dict[str, float]:
    """{class name: share of images labelled so}, for every class, largest first."""
    labels = judge_labels(judge, images)
    counts = torch.bincount(labels, minlength=len(classes)).float() / max(1, len(labels))
    return dict(sorted(((c, float(v)) for c, v in zip(classes, counts)), key=lambda kv: -kv[1]))
