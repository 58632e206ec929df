"""The specific tasks the image lessons fine-tune on: train, validation and test tensors.

``ClassificationTask`` holds one image-classification task split three ways. Every choice a
lesson makes (a learning rate, a depth, a head, a BatchNorm mode, an exercise's best answer) is
made on the validation set; the test set is read once per reported configuration.

The bird-species task (lessons 02-04, 06, 10, 12): tell the six bird species of the image world
apart (``BirdSpecies``) from a few labelled images per species. Its validation and test sets are
fixed and rendered with seeds no training set uses (``VAL_SEED``, ``TEST_SEED``).

Example:
    >>> task = species_data(labels_per_class=10, seed=0)
    >>> task.x_train.shape, task.x_val.shape, task.x_test.shape
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

from .checks import float_images
from .device import resolve_device
from .images import BirdSpecies
from .models import pretrained_image_size
from .modes import sizes

TEST_SEED = 990_001          # the test set's seed: no training set uses it
VAL_SEED = 990_002           # the validation set's seed: neither training nor test sets use it
SHIFT_SEED = 990_003         # the shifted test set's seed (lesson 04)
# Lesson 04's distribution shift: training, validation and test images show the birds on these
# backgrounds; the shifted test set shows the same species on the others, which lesson 01's
# pre-training saw but no fine-tuning image does.
SEEN_BACKGROUNDS = ("sky", "sea", "grass", "clouds")
SHIFTED_BACKGROUNDS = ("sunset", "noise")


@dataclass
class ClassificationTask:
    """An image classification task: train / validation / test images (N, 3, S, S) in [0, 1]
    and labels (N,) int64, with the class names the labels index."""
    classes: tuple[str, ...]
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    name: str = "task"
    x_shifted: torch.Tensor | None = None      # optional: a test set under a distribution shift
    y_shifted: torch.Tensor | None = None

    def __post_init__(self):
        if (self.x_shifted is None) != (self.y_shifted is None):
            raise ValueError("give both x_shifted and y_shifted, or neither")
        for split in ("train", "val", "test") + (("shifted",) if self.x_shifted is not None else ()):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            float_images(f"x_{split}", x, check_range=True)
            if x.ndim != 4 or x.shape[1] != 3:
                raise ValueError(f"x_{split} must be images of shape (N, 3, H, W); got {tuple(x.shape)}")
            if len(x) != len(y) or len(x) == 0:
                raise ValueError(f"x_{split} and y_{split} must be equally long and non-empty; "
                                 f"got {len(x)} images and {len(y)} labels")
            if y.dtype != torch.int64 or int(y.min()) < 0 or int(y.max()) >= len(self.classes):
                raise ValueError(f"y_{split} must hold int64 class indices from 0 to {len(self.classes) - 1}; "
                                 f"got {y.dtype} from {int(y.min())} to {int(y.max())}")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> int:
        return self.x_train.shape[-1]

    def to(self, device) -> "ClassificationTask":
        device = resolve_device(device)
        moved = {f: getattr(self, f).to(device) for f in
                 ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")}
        if self.x_shifted is not None:
            moved.update(x_shifted=self.x_shifted.to(device), y_shifted=self.y_shifted.to(device))
        return ClassificationTask(self.classes, name=self.name, **moved)


def species_task(backgrounds: tuple | None = None, mode: str | None = None, source: str | None = None) -> BirdSpecies:
    """The fine-grained species world, at the image size the pre-trained model expects
    (``pretrained_image_size``: lesson 01's, or timm's pretrained input size with ``source="timm"``
    or, when no source is given, ``COURSE_PRETRAINED=timm``); ``backgrounds``: only these
    backgrounds (default all). Every function below takes ``source`` the same way."""
    extra = {"backgrounds": tuple(backgrounds)} if backgrounds else {}
    return BirdSpecies(image_size=pretrained_image_size(mode, source), **extra)


@lru_cache(maxsize=16)
def _rendered_once(n: int, seed: int, image_size: int, device: str, backgrounds: tuple | None = None):
    """A fixed evaluation set, rendered once per process for each (size, seed, resolution, device)."""
    extra = {"backgrounds": backgrounds} if backgrounds else {}
    return BirdSpecies(image_size=image_size, **extra).render(n, seed=seed, device=device)


def _rendered(n: int, seed: int, image_size: int, device: str, backgrounds: tuple | None = None):
    """A copy of the cached set: an in-place edit by one caller (an exercise that normalises the
    images, say) must not reach the next run's validation or test set."""
    return tuple(t.clone() for t in _rendered_once(n, seed, image_size, device, backgrounds))


def species_test_set(n: int | None = None, device="auto", backgrounds: tuple | None = None, mode: str | None = None,
                     source: str | None = None):
    """The fixed test set: ``n`` images (default from the lesson sizes) and species labels."""
    n = n or sizes("finetune", mode).test_images
    return _rendered(n, TEST_SEED, species_task(mode=mode, source=source).image_size, str(resolve_device(device)),
                     backgrounds)


def species_val_set(n: int | None = None, device="auto", backgrounds: tuple | None = None, mode: str | None = None,
                    source: str | None = None):
    """The fixed validation set (its own seed): every selection is made on it, never on test."""
    n = n or sizes("finetune", mode).val_images
    return _rendered(n, VAL_SEED, species_task(mode=mode, source=source).image_size, str(resolve_device(device)),
                     backgrounds)


def species_shifted_set(n: int | None = None, device="auto", mode: str | None = None, source: str | None = None):
    """Lesson 04's shifted test set: the six species on ``SHIFTED_BACKGROUNDS`` (its own seed)."""
    n = n or sizes("finetune", mode).test_images
    return _rendered(n, SHIFT_SEED, species_task(mode=mode, source=source).image_size, str(resolve_device(device)),
                     SHIFTED_BACKGROUNDS)


def species_train_set(labels_per_class: int, seed: int = 0, device="auto", backgrounds: tuple | None = None,
                      mode: str | None = None, source: str | None = None):
    """A training set with exactly ``labels_per_class`` images of each species.

    Different seeds give different images; the same seed gives the same images, and a set with
    more labels per class is drawn independently of a smaller one.
    """
    if isinstance(labels_per_class, bool) or not isinstance(labels_per_class, int) or labels_per_class < 1:
        raise ValueError(f"labels_per_class must be a whole number of at least 1; got {labels_per_class!r}")
    return species_task(backgrounds, mode, source).balanced(labels_per_class, seed=1 + seed,
                                                            device=resolve_device(device))


def species_data(labels_per_class: int | None = None, seed: int = 0, device="auto",
                 mode: str | None = None, source: str | None = None) -> ClassificationTask:
    """The species task with ``labels_per_class`` training images per species (seed ``seed``) and
    the fixed validation and test sets."""
    labels_per_class = labels_per_class or sizes("finetune", mode).headline_labels
    x, y = species_train_set(labels_per_class, seed=seed, device=device, mode=mode, source=source)
    return ClassificationTask(species_task(mode=mode).species, x, y,
                              *species_val_set(device=device, mode=mode, source=source),
                              *species_test_set(device=device, mode=mode, source=source), name="bird species")


def species_shift_data(labels_per_class: int | None = None, seed: int = 0, device="auto",
                       mode: str | None = None, source: str | None = None) -> ClassificationTask:
    """Lesson 04's task with a distribution shift: train, validation and test images on
    ``SEEN_BACKGROUNDS``; ``x_shifted``/``y_shifted`` the same species on ``SHIFTED_BACKGROUNDS``."""
    labels_per_class = labels_per_class or sizes("finetune", mode).headline_labels
    x, y = species_train_set(labels_per_class, seed=seed, device=device, backgrounds=SEEN_BACKGROUNDS, mode=mode,
                             source=source)
    xs, ys = species_shifted_set(device=device, mode=mode, source=source)
    return ClassificationTask(species_task(mode=mode).species, x, y,
                              *species_val_set(device=device, backgrounds=SEEN_BACKGROUNDS, mode=mode, source=source),
                              *species_test_set(device=device, backgrounds=SEEN_BACKGROUNDS, mode=mode, source=source),
                              name="bird species, seen backgrounds", x_shifted=xs, y_shifted=ys)
