"""The general image world: the object scenes mixed with generators whose statistics are those of
natural images, in one label space.

What transfers from synthetic pre-training to real photographs is diversity plus a few properties
of natural images, not realism (Baradad et al. 2021, "Learning to see by looking at noise"):

- **1/f amplitude spectra**: in photographs, the amplitude of a spatial frequency f falls as about
  1/f (big smooth regions, ever finer detail). ``pink_noise`` makes coloured textures with exactly
  that spectrum.
- **occlusion**: near things hide far things, at every size. ``dead_leaves`` paints discs and
  rectangles over one another, their sizes drawn from a power law (many small, few large).
- **many distinct shapes, with edges**: fractals (FractalDB, Kataoka et al. 2020), the more
  distinct systems the better, sometimes several instances per image, each its own colour, over
  random backgrounds (Anderson and Farrell, WACV 2022).

The first 14 classes are the object world's (``helpers.images.CLASSES``: lessons 02-06 and 10 use
them, its bird species and its counts); then ``num_fractals`` fractal classes, one iterated function
system each (``helpers.fractals``), its image holding 1 or 2 instances of the system, upright
(mirrored half the time), sized and coloured independently, each colour picked to stand out from
its background. Object scenes sometimes stand on a dead-leaves or 1/f background instead of the
world's sky or sea.

The recipe was chosen on the validation split of one real task, scikit-learn's digits
(``benchmarks/general_world_recipes.py``, ``docs/general_world.md``): the first version (1 to 4
instances turned at random, sparser and in any colour) left the fractal half unlearnt (5% held-out
accuracy after lesson 01's budget); upright, denser, contrasting ones are learnt (59%) and the
network's frozen features serve the digits far better.

    >>> world = GeneralWorld(image_size=32, num_fractals=16)
    >>> x, y = world.render(8, seed=0)           # (8, 3, 32, 32) in [0, 1], labels (8,) in 0..29
    >>> world.num_classes, world.classes[14]
    (30, 'fractal 00')

Every random choice comes from a CPU generator seeded by you; the textures and fractal point sets
come from fixed banks built once per device from fixed seeds, then rolled and recoloured per
image, so rendering is a few gathers and scatters on the training device.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

from .fractals import _chaos_game, _systems
from .images import BIRD_SPECIES, CLASSES, ImageWorld, _choose, _finish, _paint_objects, _uniform, render_backgrounds

# Bump when the drawings change, so models pre-trained on the old world are rebuilt.
GENERAL_WORLD_VERSION = 2       # 2: upright, denser, contrasting fractals (docs/general_world.md)
TEXTURES = ("dead leaves", "1/f noise", "plain")
BANK = 512              # fixed texture fields per kind (each image takes one, rolled)
FRACTAL_BANK = 16       # fixed jittered instances per fractal class
LEAVES = 64             # leaves per dead-leaves field
LEAF_POWER = 3.0        # leaf radii r in [1.5 px, S / 3] drawn with density ~ r^-3 (scale invariance)


@dataclass(frozen=True)
class GeneralWorld:
    """Object scenes and coloured fractals over natural-statistics backgrounds (module docstring).

    Args:
        image_size: side of the square images, in pixels.
        num_fractals: fractal classes (IFS systems), labelled after the 14 object classes.
        object_share: share of the images that are object scenes (the rest are fractal images).
        object_textures: share of the object scenes drawn over a dead-leaves or 1/f background
            instead of the object world's own (sky, sea, grass, ...).
        instances: (fewest, most) fractal instances in one fractal image.
        fractal_size: (low, high) an instance's size as a share of the image side.
        rotate: turn each instance by a random angle (False: upright, as lesson 13's
            ``FractalWorld`` draws them); either way mirrored left-right half of the time.
        points: points of the chaos game plotted per instance (more: denser, easier to see).
        contrast: colour each instance against its image's mean brightness (dark on a bright
            scene, bright on a dark one), so no fractal vanishes into its background; False: any
            colour.
        texture_weights: how often a fractal image's background is dead leaves, 1/f noise or a
            plain colour (``TEXTURES``), relative weights.
        systems_seed: which systems the fractal classes are (``helpers.fractals``).
        noise: standard deviation of the sensor noise, in [0, 1] intensity units.
        grey: share of the images shown in shades of grey (each pixel's luminance in all three
            channels), as the real tasks' scans and photographs often are; 0 keeps every colour.
        crop: the smallest share of the image's area that a random crop keeps, each image cropped
            to a square of its own size and place and stretched back to the full size (the random
            resized crop of "Scaling Backwards", Nakamura et al. 2024); 1 crops nothing.
    """
    image_size: int = 48
    num_fractals: int = 64
    object_share: float = 0.5
    object_textures: float = 0.3
    instances: tuple[int, int] = (1, 2)
    fractal_size: tuple[float, float] = (0.5, 0.9)
    rotate: bool = False
    points: int = 1600
    contrast: bool = True
    texture_weights: tuple[float, float, float] = (0.3, 0.3, 0.4)
    systems_seed: int = 0
    noise: float = 0.04
    grey: float = 0.0
    crop: float = 1.0
    version: int = GENERAL_WORLD_VERSION

    def __post_init__(self):
        if not (isinstance(self.num_fractals, int) and self.num_fractals >= 1):
            raise ValueError(f"num_fractals must be a whole number >= 1; got {self.num_fractals!r}")
        for name in ("object_share", "object_textures", "grey"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1]; got {getattr(self, name)!r}")
        if not 0 < self.crop <= 1:
            raise ValueError(f"crop must be in (0, 1] (the smallest share of the area kept); got {self.crop!r}")
        lo, hi = self.instances
        if not (isinstance(self.points, int) and self.points >= 16):
            raise ValueError(f"points must be a whole number >= 16; got {self.points!r}")
        if not 1 <= lo <= hi:
            raise ValueError(f"instances must be (fewest, most) with 1 <= fewest <= most; got {self.instances!r}")
        if len(self.texture_weights) != len(TEXTURES) or min(self.texture_weights) < 0 or sum(self.texture_weights) <= 0:
            raise ValueError(f"texture_weights: {len(TEXTURES)} weights >= 0 for {TEXTURES}, not all 0; "
                             f"got {self.texture_weights!r}")

    @property
    def classes(self) -> tuple[str, ...]:
        return CLASSES + tuple(f"fractal {i:02d}" for i in range(self.num_fractals))

    @property
    def num_classes(self) -> int:
        return len(CLASSES) + self.num_fractals

    def parts(self, labels: torch.Tensor) -> dict:
        """Which images of ``labels`` (n,) belong to each part of the mix: {"objects": mask, "fractals": mask}."""
        objects = labels < len(CLASSES)
        return {"objects": objects, "fractals": ~objects}

    def render(self, n: int, seed: int, device="cpu"):
        """Images (n, 3, S, S) in [0, 1] and class labels (n,) int64, on ``device``."""
        g = torch.Generator().manual_seed(seed)
        s = self.image_size
        is_object = torch.rand(n, generator=g) < self.object_share
        order = torch.cat([is_object.nonzero().flatten(), (~is_object).nonzero().flatten()])
        m = int(is_object.sum())                       # scenes [0, m) hold objects, [m, n) fractals
        y_object = torch.randint(0, len(CLASSES), (m,), generator=g)
        y_fractal = torch.randint(0, self.num_fractals, (n - m,), generator=g)
        own = torch.rand(m, generator=g) >= self.object_textures       # on the object world's backgrounds
        look = ImageWorld(image_size=s, noise=self.noise)
        scene = torch.empty(n, 3, s, s, device=device)
        if own.any():
            rows = own.nonzero().flatten()
            scene[rows.to(device)] = render_backgrounds(_choose(g, len(rows), look.backgrounds), s, g, device)
        rows = torch.cat([(~own).nonzero().flatten(), torch.arange(m, n)])
        if len(rows):
            scene[rows.to(device)] = textures(_choose_textures(g, len(rows), self.texture_weights), s, g, device)
        if m:                                           # as ImageWorld draws them: clutter, then the main object
            look._add_clutter(scene[:m], y_object, g, device)
            _objects_over(scene[:m], y_object, g)
        if n > m:
            _fractals_over(scene, torch.arange(m, n), y_fractal, self, g)
        scene = _finish(scene, g, self.noise, device)
        if self.grey > 0:                               # drawn last: a world without grey renders as before
            rows = (torch.rand(n, generator=g) < self.grey).nonzero().flatten().to(device)
            scene[rows] = _luminance(scene[rows])
        if self.crop < 1:                               # drawn last too
            scene = _random_crops(scene, self.crop, g)
        images = torch.empty_like(scene).index_copy_(0, order.to(device), scene)
        labels = torch.empty(n, dtype=torch.int64).index_copy_(0, order, torch.cat([y_object, len(CLASSES) + y_fractal]))
        return images, labels.to(device)

    def showcase(self, per_part: int = 4, seed: int = 0, device="cpu"):
        """A few images of each ingredient, for a picture: object scenes, objects over textures,
        fractal images, and the bare dead-leaves and 1/f textures. Returns (images (m, 3, S, S),
        titles (m,))."""
        g = torch.Generator().manual_seed(seed)
        s = self.image_size
        rows, titles = [], []
        x, y = ImageWorld(image_size=s, noise=self.noise).render(per_part, seed=seed, device=device)
        rows.append(x)
        titles += [CLASSES[i] for i in y.tolist()]
        scene = textures([TEXTURES[i % 2] for i in range(per_part)], s, g, device)
        y = torch.randint(0, len(CLASSES), (per_part,), generator=g)
        rows.append(_finish(_objects_over(scene, y, g), g, self.noise, device))
        titles += [f"{CLASSES[i]} on {TEXTURES[k % 2]}" for k, i in enumerate(y.tolist())]
        scene = textures(_choose_textures(g, per_part, self.texture_weights), s, g, device)
        y = torch.randint(0, self.num_fractals, (per_part,), generator=g)
        rows.append(_finish(_fractals_over(scene, torch.arange(per_part), y, self, g), g, self.noise, device))
        titles += [self.classes[len(CLASSES) + i] for i in y.tolist()]
        for kind in TEXTURES[:2]:
            rows.append(textures([kind] * per_part, s, g, device))
            titles += [kind] * per_part
        return torch.cat(rows).clamp(0, 1), titles


def _luminance(x: torch.Tensor) -> torch.Tensor:
    """Images (n, 3, S, S) in shades of grey: each pixel's luma (ITU-R BT.601) in all three channels."""
    weights = torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)
    return (x * weights).sum(1, keepdim=True).expand_as(x).clone()


def _random_crops(x: torch.Tensor, smallest: float, g) -> torch.Tensor:
    """Each image of ``x`` (n, 3, S, S) cropped to a random square holding between ``smallest`` and
    all of its area, anywhere inside it, and stretched back to S x S (bilinear)."""
    n = x.shape[0]
    side = torch.sqrt(smallest + (1 - smallest) * torch.rand(n, generator=g))       # the crop's side / S
    centre = (1 - side).unsqueeze(1) * (2 * torch.rand(n, 2, generator=g) - 1)      # in [-1, 1] coordinates
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = side
    theta[:, :, 2] = centre
    grid = torch.nn.functional.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
    return torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _choose_textures(g, n, weights) -> list[str]:
    picks = torch.multinomial(torch.tensor(weights, dtype=torch.float), n, replacement=True, generator=g)
    return [TEXTURES[i] for i in picks.tolist()]


# ---------------------------------------------------------------------------------------------
# Textures: fixed banks, each image a rolled and recoloured field of one
# ---------------------------------------------------------------------------------------------

def textures(kinds, image_size: int, g, device="cpu") -> torch.Tensor:
    """(n, 3, S, S) backgrounds in [0, 1], one of ``TEXTURES`` per image as ``kinds`` names."""
    unknown = sorted(set(kinds) - set(TEXTURES))
    if unknown:
        raise ValueError(f"unknown textures {unknown}; valid textures are {list(TEXTURES)}")
    n, s = len(kinds), image_size
    out = torch.empty(n, 3, s, s, device=device)
    for kind in TEXTURES:
        idx = [i for i, k in enumerate(kinds) if k == kind]
        if not idx:
            continue
        m, rows = len(idx), torch.tensor(idx, device=device)
        if kind == "dead leaves":
            out[rows] = dead_leaves(m, s, g, device)
        elif kind == "1/f noise":
            out[rows] = pink_noise(m, s, g, device)
        else:
            out[rows] = torch.rand(m, 3, 1, 1, generator=g).to(device).expand(m, 3, s, s)
    return out


def dead_leaves(n: int, image_size: int, g, device="cpu") -> torch.Tensor:
    """(n, 3, S, S) dead-leaves images: ``LEAVES`` discs and rectangles in flat random colours,
    each hiding the ones painted before it, radii from a power law (``LEAF_POWER``), wrapping
    around the edges. Each image takes one of ``BANK`` fixed layouts and draws its own colours."""
    layout = _moved(_leaves_bank(image_size, str(device))[_pick(g, n)], g)         # (n, 1, S, S) leaf ids
    colours = torch.rand(n, LEAVES + 1, 3, generator=g).to(device)                 # leaf 0: what lies under all
    flat = layout.view(n, -1)
    return torch.gather(colours, 1, flat[..., None].expand(-1, -1, 3)).transpose(1, 2).reshape(n, 3, image_size, image_size)


def pink_noise(n: int, image_size: int, g, device="cpu") -> torch.Tensor:
    """(n, 3, S, S) coloured noise whose amplitude spectrum falls as 1/f: three fixed 1/f fields
    (``BANK`` sets) mixed by a random colour matrix around a random mean colour, so every colour
    channel keeps the 1/f spectrum."""
    field = _moved(_pink_bank(image_size, str(device))[_pick(g, n)], g)            # (n, 3, S, S), unit sd
    mean = (0.25 + 0.5 * torch.rand(n, 3, 1, generator=g)).to(device)
    mix = (torch.randn(n, 3, 3, generator=g) * (0.04 + 0.1 * torch.rand(n, 1, 1, generator=g))).to(device)
    out = torch.baddbmm(mean, mix, field.view(n, 3, -1))                          # colour = mean + mix @ field
    return out.view(n, 3, image_size, image_size).clamp_(0, 1)


def _pick(g, n):
    return torch.randint(0, BANK, (n,), generator=g)


def _moved(fields, g):
    """``fields`` (n, C, S, S), each rolled by a random offset: the fields are periodic, so no
    seam shows, and a field gives S^2 different images."""
    n, c, s, _ = fields.shape
    axis = torch.arange(s)
    dy, dx = torch.randint(0, s, (2, n, 1), generator=g)
    source = (((axis + dy) % s) * s).view(n, s, 1) + ((axis + dx) % s).view(n, 1, s)     # (n, S, S)
    index = source.view(n, 1, -1).to(fields.device).expand(-1, c, -1)
    return torch.gather(fields.reshape(n, c, -1), 2, index).view_as(fields)


@functools.lru_cache(maxsize=8)
def _leaves_bank(size: int, device: str) -> torch.Tensor:
    """(BANK, 1, S, S) int64 leaf ids (0 under every leaf), painted back to front with periodic
    distances, so any roll of a layout is seamless."""
    g = torch.Generator().manual_seed(2021)
    axis = torch.arange(size, dtype=torch.float32) + 0.5
    low, high, a = 1.5, size / 3, 1 - LEAF_POWER
    ids = torch.zeros(BANK, size, size, dtype=torch.int64)
    for leaf in range(1, LEAVES + 1):
        u = torch.rand(BANK, 1, 1, generator=g)
        r = (low ** a + u * (high ** a - low ** a)) ** (1 / a)                     # inverse of the power-law CDF
        cx, cy = torch.rand(2, BANK, 1, 1, generator=g) * size
        dx = (axis.view(1, 1, size) - cx).abs()
        dy = (axis.view(1, size, 1) - cy).abs()
        dx, dy = torch.minimum(dx, size - dx), torch.minimum(dy, size - dy)          # periodic
        aspect = 0.5 + torch.rand(BANK, 1, 1, generator=g)                         # rectangles' width / height
        disc = torch.rand(BANK, 1, 1, generator=g) < 0.5
        inside = torch.where(disc, dx.square() + dy.square() < r.square(),
                             (dx < r * aspect.sqrt()) & (dy < r / aspect.sqrt()))
        ids[inside] = leaf
    return ids[:, None].to(device)


@functools.lru_cache(maxsize=8)
def _pink_bank(size: int, device: str) -> torch.Tensor:
    """(BANK, 3, S, S) fields with a 1/f amplitude spectrum and random phases, each channel with
    mean 0 and standard deviation 1 (periodic, as an inverse FFT is)."""
    g = torch.Generator().manual_seed(1996)
    white = torch.randn(BANK, 3, size, size, generator=g)
    f = torch.fft.fftfreq(size) * size                                              # cycles per image
    radius = (f.view(-1, 1).square() + f.view(1, -1).square()).sqrt()
    gain = torch.where(radius > 0, 1 / radius.clamp_min(1), torch.zeros(()))        # 1/f, no mean
    field = torch.fft.ifft2(torch.fft.fft2(white) * gain).real
    field = (field - field.mean((2, 3), keepdim=True)) / field.std(dim=(2, 3), keepdim=True)
    return field.to(device)


# ---------------------------------------------------------------------------------------------
# What stands on the textures: objects (the object world's drawings) and coloured fractals
# ---------------------------------------------------------------------------------------------

def _objects_over(scene, labels, g):
    """Paint one object of class ``labels[i]`` over ``scene[i]`` (the first len(labels) images), in
    place, posed as ``ImageWorld`` poses its main objects. Returns ``scene``."""
    m = len(labels)
    look = ImageWorld(image_size=scene.shape[-1])
    species = torch.randint(0, len(BIRD_SPECIES), (m,), generator=g)
    span = 1 - look.scale[1] * 0.7
    cx, cy = _uniform(g, m, -span, span), _uniform(g, m, -span, span)
    scale = _uniform(g, m, *look.scale)
    angle = _uniform(g, m, -look.max_rotation, look.max_rotation)
    flip = torch.rand(m, generator=g) < 0.5
    names = [CLASSES[i] for i in labels.tolist()]
    return _paint_objects(scene, np.arange(m), names, cx, cy, scale, angle, flip, species, g)


def _fractals_over(scene, rows, labels, world: GeneralWorld, g):
    """Paint over ``scene[rows[i]]`` ``world.instances`` instances of fractal class ``labels[i]``,
    each a jittered copy of the class's system from the bank, turned (if ``world.rotate``),
    mirrored, sized, placed and coloured at random; later instances hide earlier ones. In place;
    returns ``scene``."""
    m, s, device = len(labels), scene.shape[-1], scene.device
    lo, hi = world.instances
    count = torch.randint(lo, hi + 1, (m,), generator=g)
    bank = _fractal_bank(world.num_fractals, world.systems_seed, world.points, str(device))  # (C, B, P, 2) in [-0.5, 0.5]
    # A turned instance reaches at most 0.71 of its size from its centre, which stays half its
    # size inside the image: it is painted into a canvas with a margin that holds what sticks out,
    # and the margin is cut off (no points pile up at the border).
    pad = math.ceil(0.21 * world.fractal_size[1] * s) + 1
    side = s + 2 * pad
    # one byte per canvas pixel: the number of the instance painted there (0: none), so that
    # clearing and cropping the canvas moves an eighth of the memory an int64 one would
    canvas = torch.zeros(m * side * side, dtype=torch.uint8, device=device)
    for slot in range(hi):
        who = (count > slot).nonzero().flatten()
        k = len(who)
        if not k:
            break
        points = bank[labels[who].to(device), torch.randint(0, FRACTAL_BANK, (k,), generator=g).to(device)]
        angle = torch.rand(k, generator=g) * (2 * math.pi) if world.rotate else torch.zeros(k)
        turn = torch.stack([torch.cos(angle), -torch.sin(angle), torch.sin(angle), torch.cos(angle)], 1).view(k, 2, 2)
        mirror = torch.where(torch.rand(k, generator=g) < 0.5, -1.0, 1.0)            # x -> -x half the time
        turn = turn * torch.stack([mirror, torch.ones(k)], 1).view(k, 1, 2)            # turn @ diag(mirror, 1)
        size = _uniform(g, k, *world.fractal_size).view(k, 1, 1) * s
        centre = (pad + size[:, :, 0] / 2 + torch.rand(k, 2, generator=g) * (s - size[:, :, 0])).view(k, 1, 2)
        pixel = torch.baddbmm(centre.to(device), points, (turn * size).transpose(1, 2).to(device))   # (k, P, 2)
        pixel = pixel.clamp_(0, side - 1).long()
        where = pixel[..., 1] * side + pixel[..., 0] + (who.to(device) * (side * side)).view(k, 1)     # (k, P) flat
        # paint the slot's number into the canvas (later instances hide earlier ones), colour once
        canvas.index_fill_(0, where.flatten(), slot + 1)
    canvas = canvas.view(m, side, side)[:, pad:pad + s, pad:pad + s].reshape(m, s * s)
    colours = torch.rand(m, hi + 1, 3, generator=g).to(device)                     # one per instance
    rows = rows.to(device)
    # the images painted on: a view of ``scene`` when ``rows`` are consecutive (as ``render`` passes
    # them), else a copy written back at the end
    first = int(rows[0]) if m else 0
    consecutive = m > 0 and bool((rows == torch.arange(first, first + m, device=device)).all())
    target = scene[first:first + m] if consecutive else scene[rows]
    if world.contrast:                                   # the dark or the bright half of the colour cube
        bright = target.mean((1, 2, 3)).view(m, 1, 1) > 0.5
        colours = torch.where(bright, 0.45 * colours, 0.55 + 0.45 * colours)
    colours = colours.transpose(1, 2).contiguous()                                  # (m, 3, instances + 1)
    flat = target.view(m, 3, s * s)
    for i in range(0, m, _CHUNK):                        # a chunk's numbers stay in the processor's cache
        ids = canvas[i:i + _CHUNK]
        painted = torch.gather(colours[i:i + _CHUNK], 2, ids.long().unsqueeze(1).expand(-1, 3, -1))
        flat[i:i + _CHUNK] = torch.where((ids > 0).unsqueeze(1), painted, flat[i:i + _CHUNK])
    if not consecutive:
        scene[rows] = target
    return scene


_CHUNK = 64              # images painted at a time


@functools.lru_cache(maxsize=8)
def _fractal_bank(num_classes: int, systems_seed: int, points: int, device: str) -> torch.Tensor:
    """(C, FRACTAL_BANK, points, 2): for each class, jittered instances of its system (one
    map scaled by a factor in [0.9, 1.1], FractalDB's instances) drawn by ``helpers.fractals``'s
    chaos game, centred and scaled so the larger side of the bounding box is 1."""
    g = torch.Generator().manual_seed(7 + systems_seed)
    maps, probs = _systems(num_classes, systems_seed, 0.2)
    maps = maps.repeat_interleave(FRACTAL_BANK, 0).clone()
    probs = probs.repeat_interleave(FRACTAL_BANK, 0)
    n = len(maps)
    which = (torch.rand(n, generator=g) * (probs > 0).sum(1)).long()
    maps[torch.arange(n), which] *= (0.9 + 0.2 * torch.rand(n, generator=g))[:, None, None]
    xy = _chaos_game(maps, probs, points, g)                                          # (n, P, 2)
    low, high = xy.amin(1, keepdim=True), xy.amax(1, keepdim=True)
    xy = (xy - (low + high) / 2) / (high - low).amax(2, keepdim=True).clamp_min(1e-6)
    return xy.view(num_classes, FRACTAL_BANK, points, 2).to(device)
