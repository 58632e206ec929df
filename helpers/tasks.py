"""The specific tasks the image lessons fine-tune on, drawn from the image world.

The bird-species task (lessons 02-04, 06, 10, 12): tell the six bird species of the image world
apart (``BirdSpecies``) from a few labelled images per species. A fixed test set, rendered with
its own seed (``TEST_SEED``), measures every run.
"""
from __future__ import annotations

from .device import resolve_device
from .images import BirdSpecies
from .models import image_model_config
from .modes import sizes

TEST_SEED = 990_001          # the test set's seed: no training set uses it


def species_task() -> BirdSpecies:
    """The fine-grained task, at the image size of lesson 01's model."""
    return BirdSpecies(image_size=image_model_config().image_size)


_test_sets: dict = {}


def species_test_set(n: int | None = None, device="auto"):
    """The fixed test set: ``n`` images (default from the lesson sizes) and species labels.

    Rendered once per process and kept (it never changes: its seed is ``TEST_SEED``).
    """
    n = n or sizes("finetune").test_images
    device = resolve_device(device)
    task = species_task()
    key = (n, task, str(device))
    if key not in _test_sets:
        _test_sets[key] = task.render(n, seed=TEST_SEED, device=device)
    return _test_sets[key]


def species_train_set(labels_per_class: int, seed: int = 0, device="auto"):
    """A training set with exactly ``labels_per_class`` images of each species.

    Different seeds give different images; the same seed gives the same images, and a set with
    more labels per class is drawn independently of a smaller one.
    """
    return species_task().balanced(labels_per_class, seed=1 + seed, device=resolve_device(device))
