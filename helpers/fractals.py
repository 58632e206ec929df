"""A second procedural pre-training world, without objects: fractals (FractalDB, Kataoka et al.
2020, pre-trains networks on images of iterated function systems, with no real photo).

Each class is an iterated function system (IFS): 2 to 4 contracting affine maps ``x -> A x + b``
with parameters drawn from [-1, 1]. An image of a class is the attractor of a jittered copy of its
system (one map's parameters scaled by a factor near 1, FractalDB's "instances"), drawn by the
chaos game (apply a map chosen at random, with probability proportional to its area factor
``|det A|``, and plot the point), placed at a random size and position, in a random colour over a
random plain background, flipped or not, with the image world's sensor noise.

    >>> world = FractalWorld(image_size=48, num_classes=64)
    >>> x, y = world.render(8, seed=0)          # (8, 3, 48, 48) in [0, 1], labels (8,) in 0..63

Lesson 13 pre-trains lesson 01's network on it, at lesson 01's budget, and asks whether these
features transfer to real digits better than the object world's (``helpers.lessons.your_own``).
Nothing here was chosen by looking at the digits: the parameters are FractalDB's recipe, scaled to
the course's image size.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class FractalWorld:
    """Fractal classes (see the module docstring).

    Args:
        image_size: side of the square images, in pixels.
        num_classes: how many IFS systems (classes).
        points: points plotted per image (chains x steps of the chaos game).
        jitter: an instance scales one map's parameters by a factor in [1 - jitter, 1 + jitter].
        min_fill: a system is kept only if its attractor covers at least this share of its
            bounding box at 32 x 32 (FractalDB's filling-rate filter against lines and dots).
        systems_seed: which systems the classes are.
        noise: standard deviation of the sensor noise, in [0, 1] intensity units.
    """
    image_size: int = 48
    num_classes: int = 64
    points: int = 1600
    jitter: float = 0.1
    min_fill: float = 0.2
    systems_seed: int = 0
    noise: float = 0.04

    def __post_init__(self):
        if not (isinstance(self.num_classes, int) and self.num_classes >= 2):
            raise ValueError(f"num_classes must be a whole number >= 2; got {self.num_classes!r}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter must be in [0, 1); got {self.jitter!r}")

    def systems(self):
        """The classes' systems: maps (C, 4, 2, 3) as [A | b], probabilities (C, 4) (0 for unused maps)."""
        return _systems(self.num_classes, self.systems_seed, self.min_fill)

    def render(self, n: int, seed: int, device="cpu"):
        """Images (n, 3, S, S) in [0, 1] and class labels (n,) int64."""
        g = torch.Generator().manual_seed(seed)
        maps, probs = self.systems()
        labels = torch.randint(0, self.num_classes, (n,), generator=g)
        maps, probs = maps[labels].clone(), probs[labels]
        used = (probs > 0).sum(1)
        which = (torch.rand(n, generator=g) * used).long()                    # the map each instance jitters
        factor = 1 + (torch.rand(n, generator=g) * 2 - 1) * self.jitter
        maps[torch.arange(n), which] *= factor[:, None, None]
        points = _chaos_game(maps, probs, self.points, g)                   # (n, P, 2)
        occupancy = _plot(points, self.image_size, g)                       # (n, S, S) in {0, 1}
        background = torch.rand(n, 3, 1, 1, generator=g) * 0.6
        colour = torch.rand(n, 3, 1, 1, generator=g) * 0.6 + 0.4
        images = background + (colour - background) * occupancy[:, None]
        images = images + torch.randn(images.shape, generator=g) * self.noise
        return images.clamp(0, 1).to(device), labels.to(device)


CHAINS = 16          # independent chaos-game chains per image (points = CHAINS x steps)
WARM_UP = 8          # steps each chain runs before it plots (it starts off the attractor)


def _chaos_game(maps, probs, points: int, g) -> torch.Tensor:
    """``points`` points of each system's attractor (n, points, 2): CHAINS chains per image, each
    applying a map chosen with ``probs`` at every step."""
    n = len(maps)
    steps = -(-points // CHAINS)
    choice = torch.multinomial(probs.repeat_interleave(CHAINS, 0), WARM_UP + steps, replacement=True, generator=g)
    chain_maps = maps.repeat_interleave(CHAINS, 0)                          # (n * CHAINS, 4, 2, 3)
    rows = torch.arange(n * CHAINS)
    x = torch.rand(n * CHAINS, 2, generator=g) * 2 - 1
    out = torch.empty(n * CHAINS, steps, 2)
    for t in range(WARM_UP + steps):
        m = chain_maps[rows, choice[:, t]]                                  # (n * CHAINS, 2, 3)
        x = torch.baddbmm(m[:, :, 2:], m[:, :, :2], x[:, :, None])[:, :, 0]
        if t >= WARM_UP:
            out[:, t - WARM_UP] = x
    return out.view(n, CHAINS * steps, 2)[:, :points]


def _plot(points, size: int, g=None) -> torch.Tensor:
    """Occupancy images (n, size, size): each attractor scaled to fit a random share (0.6-1.0) of
    the image, at a random position, mirrored left-right half of the time (``g`` draws them; without
    it, centred and filling the image)."""
    n = len(points)
    low, high = points.amin(1, keepdim=True), points.amax(1, keepdim=True)
    extent = (high - low).amax(2, keepdim=True).clamp_min(1e-6)
    unit = (points - low) / extent                                          # in [0, 1], aspect kept
    if g is None:
        scale, offset = torch.ones(n, 1, 1), torch.zeros(n, 1, 2)
    else:
        scale = 0.6 + 0.4 * torch.rand(n, 1, 1, generator=g)
        offset = torch.rand(n, 1, 2, generator=g) * (1 - scale)
        flip = torch.rand(n, generator=g) < 0.5
        unit[flip, :, 0] = 1 - unit[flip, :, 0]
    pixel = ((unit * scale + offset) * (size - 1)).round().long().clamp(0, size - 1)
    flat = pixel[..., 1] * size + pixel[..., 0] + torch.arange(n)[:, None] * size * size
    occupancy = torch.zeros(n * size * size)
    occupancy[flat.reshape(-1)] = 1.0
    return occupancy.view(n, size, size)


@functools.lru_cache(maxsize=8)
def _systems(num_classes: int, seed: int, min_fill: float):
    """Draw systems until ``num_classes`` pass the filters: every map contracting (largest
    singular value below 1, so the attractor exists) and the attractor filling at least
    ``min_fill`` of its bounding box."""
    g = torch.Generator().manual_seed(seed)
    maps, probs = torch.zeros(num_classes, 4, 2, 3), torch.zeros(num_classes, 4)
    found = 0
    while found < num_classes:
        k = int(torch.randint(2, 5, (1,), generator=g))
        m = torch.rand(k, 2, 3, generator=g) * 2 - 1
        if torch.linalg.matrix_norm(m[:, :, :2], ord=2).max() >= 1:
            continue
        p = torch.linalg.det(m[:, :, :2]).abs().clamp_min(1e-3)
        candidate, weights = torch.zeros(1, 4, 2, 3), torch.zeros(1, 4)
        candidate[0, :k], weights[0, :k] = m, p / p.sum()
        points = _chaos_game(candidate, weights, 4000, g)
        if _plot(points, 32).mean() < min_fill:
            continue
        maps[found], probs[found] = candidate[0], weights[0]
        found += 1
    return maps, probs
