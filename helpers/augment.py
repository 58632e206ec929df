"""Augmentations for few-label training, as pure tensor functions on a batch (on any device).

Each takes a batch ``(images, *targets)`` and returns it with the images changed and the targets
as they were: the labels these tasks ask for (a species, a count) do not depend on direction or
position, so flips and small shifts make new examples for free.
"""
from __future__ import annotations

import torch


def flip(batch):
    """Mirror a random half of the images left-right."""
    x, *rest = batch
    mirrored = torch.rand(len(x), device=x.device) < 0.5
    return (torch.where(mirrored.view(-1, 1, 1, 1), x.flip(-1), x), *rest)


def flip_and_shift(batch, max_shift: int = 3):
    """``flip``, then roll the whole batch by up to ``max_shift`` pixels in each direction."""
    x, *rest = flip(batch)
    dx, dy = (int(v) for v in torch.randint(-max_shift, max_shift + 1, (2,)))
    return (torch.roll(x, shifts=(dy, dx), dims=(-2, -1)), *rest)
