"""Measures of a generator's samples: what they show, how varied they are, whether they are copies.

- ``class_rate``: the share of samples a classifier (the judge) labels as one class, e.g. orca.
- ``diversity``: the mean distance between two different samples; copies of one image score 0.
- ``memorisation_ratio``: how close samples sit to their nearest training image, relative to how
  close *new* real images sit to theirs, in pixels. About 1: the samples are as new as fresh real
  orcas; near 0: the generator hands back its training images. The background fills most of a
  scene, so in pixels a sample with the right sky but no orca can look "new".
- ``feature_memorisation_ratio``: the same ratio in the judge's feature space and only over the
  samples the judge calls orcas: where copying an *object* shows (the lesson's headline).
- ``confident_share``: how many samples the judge recognises as anything (probability >= 0.5).

Pixel distances are root-mean-square differences (images in [0, 1]), so 0.1 means a typical
pixel differs by about a tenth of the intensity range.

Example:
    >>> rate = class_rate(judge, samples, "orca")
    >>> ratio = feature_memorisation_ratio(judge, samples, train_orcas, fresh_orcas)
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


def _judge_input(judge: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Images resized to the judge's ``image_size`` attribute, if it has one and they differ."""
    size = getattr(judge, "image_size", None)
    if size and images.shape[-1] != size:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    return images


def judge_classes(judge: nn.Module, classes=None) -> tuple[str, ...]:
    """The class names the judge's outputs stand for: ``classes``, else its ``classes`` attribute
    (``orca_judge`` sets it), else the general world's ``CLASSES``."""
    return tuple(classes or getattr(judge, "classes", None) or CLASSES)


def judge_probabilities(judge: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The judge's class probabilities (N, classes) for images in [0, 1]."""
    return predict(judge, _judge_input(judge, images)).softmax(1).cpu()


def judge_labels(judge: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The judge's predicted class ids (N,) for images in [0, 1].

    If the judge carries an ``image_size`` attribute (``orca_judge`` sets it) and the images
    differ, they are resized to it first, so a 48-pixel classifier can judge 32-pixel samples.
    """
    return predict(judge, _judge_input(judge, images)).argmax(1).cpu()


def confident_share(judge: nn.Module, images: torch.Tensor, threshold: float = 0.5) -> float:
    """The share of ``images`` for which the judge gives some class a probability of at least
    ``threshold``: how many samples show *something* the judge recognises."""
    return float((judge_probabilities(judge, images).max(1).values >= threshold).float().mean())


def class_rate(judge: nn.Module, images: torch.Tensor, name: str = "orca", classes=None) -> float:
    """The share of ``images`` that ``judge`` labels as class ``name``."""
    classes = judge_classes(judge, classes)
    if name not in classes:
        raise ValueError(f"unknown class {name!r}; valid classes are {list(classes)}")
    return float((judge_labels(judge, images) == classes.index(name)).float().mean())


def class_shares(judge: nn.Module, images: torch.Tensor, classes=None) -> dict[str, float]:
    """{class name: share of images labelled so}, for every class, largest first."""
    classes = judge_classes(judge, classes)
    labels = judge_labels(judge, images)
    counts = torch.bincount(labels, minlength=len(classes)).float() / max(1, len(labels))
    return dict(sorted(((c, float(v)) for c, v in zip(classes, counts)), key=lambda kv: -kv[1]))


# ---------------------------------------------------------------------------------------------
# Memorisation where copying shows: in the judge's feature space, among the samples it calls orcas
# ---------------------------------------------------------------------------------------------

@torch.no_grad()
def judge_features(judge: nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """The judge's penultimate features (N, D) of images in [0, 1], each scaled to unit length.

    These are what the judge's last layer reads to name the object, so two images are close here
    when their objects look alike (shape, pose, colour), whatever the background does; the raw
    pixel distance, by contrast, is dominated by the background, which fills most of the image.
    """
    from .training import evaluating
    device = next(judge.parameters()).device
    images = _judge_input(judge, images)
    out = []
    with evaluating(judge):
        for i in range(0, len(images), batch_size):
            x = images[i:i + batch_size].to(device)
            out.append(judge.forward_head(judge.forward_features(x), pre_logits=True).float().cpu())
    return F.normalize(torch.cat(out), dim=1)


def feature_memorisation_ratio(judge: nn.Module, samples: torch.Tensor, train_images: torch.Tensor,
                               real_images: torch.Tensor, name: str | None = "orca", min_samples: int = 8) -> float:
    """``memorisation_ratio`` measured in the judge's feature space, on the samples it labels ``name``.

    Only the samples the judge calls orcas count: a generator that draws no orcas is not a
    "non-copier", it has nothing to compare, and the ratio is NaN (fewer than ``min_samples``).
    About 1: its orcas are as new as fresh real orcas; near 0: they are its training orcas.
    ``name=None`` keeps every sample.
    """
    if name is not None:
        keep = judge_labels(judge, samples) == judge_classes(judge).index(name)
        if int(keep.sum()) < min_samples:
            return float("nan")
        samples = samples[keep]
    f_train = judge_features(judge, train_images)
    d_samples = torch.cdist(judge_features(judge, samples), f_train).min(dim=1).values
    d_real = torch.cdist(judge_features(judge, real_images), f_train).min(dim=1).values
    return float(d_samples.median() / d_real.median().clamp(min=1e-8))


def feature_nearest(judge: nn.Module, samples: torch.Tensor, references: torch.Tensor):
    """Each sample's distance to its nearest reference in the judge's feature space, and that
    reference's index: (N,), (N,)."""
    return torch.cdist(judge_features(judge, samples), judge_features(judge, references)).min(dim=1)
