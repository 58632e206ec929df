"""The procedural image world: scenes rendered in batches with tensor operations.

Everything is drawn with signed distance functions on a coordinate grid, so a batch of
thousands of scenes is a few dozen tensor operations on whatever device you pass. The random
choices (class, pose, colours) come from a CPU generator seeded by you, so the same seed gives
the same scenes on every device. Labels are exact by construction: the renderer knows what it drew.

Three tasks draw from the same world:

- ``ImageWorld``: the general pre-training task, name the main object (14 classes).
- ``BirdSpecies``: fine-grained bird species (6 species told apart by colour and shape details).
- ``CountWorld``: count the birds in a scene that also holds planes, kites, balloons and leaves.

Example:
    >>> world = ImageWorld(image_size=48)
    >>> x, y = world.render(8, seed=0)          # x: (8, 3, 48, 48) in [0, 1], y: (8,) class ids
    >>> world.classes[int(y[0])]
    'sun'
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F

CLASSES = ("bird", "orca", "fish", "whale", "boat", "plane", "balloon",
           "kite", "tree", "house", "sun", "leaf", "car", "flower")
BIRD_SPECIES = ("robin", "bluejay", "cardinal", "goldfinch", "crow", "gull")
BACKGROUNDS = ("sky", "sea", "grass", "clouds", "sunset", "noise")
DISTRACTORS = ("plane", "kite", "balloon", "leaf")
# Bump when the drawings change, so cached checkpoints trained on the old world are rebuilt.
WORLD_VERSION = 2


# ---------------------------------------------------------------------------------------------
# Drawing: signed distances in an object's own frame, composited with premultiplied alpha.
# ---------------------------------------------------------------------------------------------

def _col(x):
    """A scalar, or a per-object tensor (n,) shaped to broadcast over (n, H, W)."""
    return x.view(-1, 1, 1) if torch.is_tensor(x) else x


def _np(x):
    """A scalar, or a per-object tensor (n,) as a float64 array, for window arithmetic."""
    return np.asarray(x.detach().cpu().numpy(), dtype=np.float64) if torch.is_tensor(x) else x


_OWN_WINDOW_SAVES = 20_000   # pixels (all objects) a part must save to be computed over its own window


@functools.lru_cache(maxsize=256)
def _row_starts(size, channels, h, device):
    """(channels, h): where each row of an h-row window starts, counted from the window's first
    pixel, in images of ``channels`` x (S, S) pixels."""
    return (torch.arange(channels, device=device).view(-1, 1) * (size * size)
            + torch.arange(h, device=device) * size)


def _rows(image, w):
    """``image`` as rows of ``w`` pixels that start at every pixel: a (numel - w + 1, w) view.
    Windows are taken (``index_select``) and written back (``index_copy_``) a row at a time, far
    faster than pixel by pixel; the rows of the windows taken or written at once never overlap."""
    flat = image.view(-1)
    return flat.as_strided((flat.numel() - w + 1, w), (1, 1))


def _span(lo, hi, size):
    """One window size for all objects: lo, hi (2, m) the first and last pixel (x, then y) each
    object needs. Returns the windows' first pixels (2, m), inside the image, and (width, height)."""
    lo, hi = np.clip(lo, 0, size - 1), np.clip(hi, 0, size - 1)
    count = np.maximum(hi - lo, 0).max(axis=1) + 1
    start = np.maximum(np.minimum(lo, size - count[:, None]), 0)
    return start, (int(count[0]), int(count[1]))


def _paint_end(color, device):
    """What painting ``color`` (n, 3) or (3,) lerps a layer's pixels towards: (n or 1, 4, 1, 1),
    the colour and full coverage."""
    color = torch.as_tensor(color, dtype=torch.float32).to(device)
    return F.pad(color.view(-1, 3), (0, 1), value=1.0).view(-1, 4, 1, 1)


_constant_paint_end = functools.lru_cache(maxsize=256)(_paint_end)     # for colours given as tuples


def _ellipse_reach(r, other, reach):
    """How far from its centre along its axis of radius ``r`` an ellipse can paint: ``r`` plus
    ``reach`` (half a pixel) times a factor, as its signed distance is an estimate that is exact on
    the axes and falls below the true distance elsewhere: where the estimate is ``reach``, a point
    is at most r + B * reach along the axis, B = q^2 / (2 sqrt(q^2 - 1)) for q = r / other >= sqrt 2,
    else 1."""
    q2 = (np.asarray(r, dtype=np.float64) / other) ** 2
    return r + reach * np.where(q2 >= 2, q2 / (2 * np.sqrt(np.maximum(q2 - 1, 1.0))), 1.0)


def _rotated_box(cx, cy, reach_x, reach_y, angle):
    """(lo_u, hi_u, lo_v, hi_v): the local box around a shape centred at (cx, cy) that reaches
    reach_x, reach_y along its own axes, turned by ``angle`` (floats or (m,) arrays)."""
    c, s = np.abs(np.cos(angle)), np.abs(np.sin(angle))
    eu, ev = c * reach_x + s * reach_y, s * reach_x + c * reach_y
    return cx - eu, cx + eu, cy - ev, cy + ev


def _ellipse_box(cx, cy, rx, ry, angle, reach):
    """The local box of the pixels an ellipse can cover, ``reach`` being half a pixel."""
    return _rotated_box(cx, cy, _ellipse_reach(rx, ry, reach), _ellipse_reach(ry, rx, reach), angle)


def _rectangle_box(cx, cy, hx, hy, angle, reach):
    """The local box of the pixels a box can cover (its signed distance is exact)."""
    return _rotated_box(cx, cy, hx + reach, hy + reach, angle)


def _polygon_corners(points, reach):
    """The corners (xs, ys) of what a convex polygon can cover: its distance is the largest of the
    distances to its edges' lines, so it covers the polygon grown by ``reach`` with every edge
    moved out along its normal; a corner between edges with outward unit normals a, b moves by
    reach * (a + b) / (1 + a.b)."""
    mx = sum(p[0] for p in points) / len(points)
    my = sum(p[1] for p in points) / len(points)
    normals = []
    for (x0, y0), (x1, y1) in zip(points, points[1:] + points[:1]):
        ex, ey = x1 - x0, y1 - y0
        length = np.sqrt(ex * ex + ey * ey)
        nx, ny = ey / length, -ex / length
        out = np.where(nx * (mx - x0) + ny * (my - y0) > 0, -1.0, 1.0)      # outward
        normals.append((out * nx, out * ny))
    xs, ys = [], []
    for i, (px, py) in enumerate(points):
        (ax, ay), (bx, by) = normals[i - 1], normals[i]            # the edges ending, starting here
        k = reach / (1 + ax * bx + ay * by)
        xs.append(px + k * (ax + bx))
        ys.append(py + k * (ay + by))
    return xs, ys


def _polygon_box(points, reach):
    """The local box of the pixels a convex polygon can cover."""
    xs, ys = _polygon_corners(points, reach)
    return (functools.reduce(np.minimum, xs), functools.reduce(np.maximum, xs),
            functools.reduce(np.minimum, ys), functools.reduce(np.maximum, ys))


@functools.lru_cache(maxsize=1024)
def _constant_box(kind, params):
    """The local box of a part whose parameters are all numbers, as base + reach * slope, (4,)
    arrays each (lo_u, hi_u, lo_v, hi_v). An ellipse's or a box's bounds grow linearly with the
    reach; a polygon's are bounded by its lowest and highest corner at reach 0 plus the least and
    most any corner moves per unit of reach."""
    if kind == "poly":
        (xs, ys), (xs1, ys1) = _polygon_corners(params, 0.0), _polygon_corners(params, 1.0)
        kx, ky = np.subtract(xs1, xs), np.subtract(ys1, ys)
        return (np.array([min(xs), max(xs), min(ys), max(ys)], dtype=float),
                np.array([kx.min(), kx.max(), ky.min(), ky.max()]))
    box = {"ellipse": _ellipse_box, "box": _rectangle_box}[kind]
    base = np.array(box(*params, 0.0), dtype=float)
    return base, np.array(box(*params, 1.0), dtype=float) - base


class _Pen:
    """Paints parts of m objects into an RGBA layer, in each object's local frame.

    Parts are recorded as the drawing calls them (with the colours it has drawn) and painted by
    ``paint``, over one window per object: a box of pixels that holds every pixel any part can
    cover, the same size for all m objects. A part covers a pixel only where its signed distance
    is below half a pixel, so the box follows from each part's shape and the object's pose (plus a
    pixel of margin); outside it nothing is painted, and painting with coverage 0 would leave a
    pixel as it was anyway (``lerp`` with weight 0 returns its start). A part much smaller than
    the window (an eye) has its signed distance and coverage computed only over its own window,
    the coverage being 0 elsewhere. Every pixel that is computed goes through the same operations
    as when the whole image is painted, so the layer is the same bit for bit, for a fraction of
    the work.

    After ``paint``: ``layer`` (m, 4, h, w), premultiplied colour (channels 0-2) and coverage of
    the whole object (3) over the windows, whose first pixels (x, then y) are ``start`` (2, m).
    While painting: ``uv`` (m, 2, h, w) the local coordinates u, v of the windows' pixels (the
    object faces +u, "up" is -v, it spans about [-1, 1]); ``pix`` (m, 1, 1) the size of one pixel
    in local units, for anti-aliased edges.
    """

    def __init__(self, cx, cy, scale, angle, flip, image_size, device):
        """Pose of the m objects, (m,) each: centre in [-1, 1] image units (y down), half-size as
        a fraction of the half-image, rotation in radians, mirrored left-right (bool)."""
        s = image_size
        self.size, self.device = s, device
        self._pose = cx, cy, scale, angle, flip
        self._parts = []
        self.pix = (2.0 / s) / scale.to(device).view(-1, 1, 1)
        self._minus_pix = -self.pix
        # The pose in float64 for the windows, in pixels: a local point (u, v) is at pixel
        # centre + to_pixels @ (u, v) (x, then y; pixel j's centre is at (j + 0.5) / S * 2 - 1).
        sc64, a64 = _np(scale), _np(angle)
        f = np.where(flip.cpu().numpy(), -1.0, 1.0)
        cos, sin = np.cos(a64), np.sin(a64)
        self._centre = (np.stack([_np(cx), _np(cy)]) + 1) * (s / 2) - 0.5                 # (2, m)
        self._to_pixels = np.array([[sc64 * cos * f, -sc64 * sin], [sc64 * sin * f, sc64 * cos]]) * (s / 2)
        self._spread = np.abs(self._to_pixels)                               # (2, 2, m)
        self._reach = 1.0 / (s * sc64)                 # half a pixel in local units, (m,)
        self._boxes = []

    def _to(self, x):
        """A scalar, or a per-object tensor shaped to broadcast over (m, H, W) on the pen's device."""
        return _col(x).to(self.device) if torch.is_tensor(x) else x

    # Recording: what each part may cover.

    def ellipse(self, cx, cy, rx, ry, color, angle=0.0, on=None):
        params = (cx, cy, rx, ry, angle)
        self._record(self._ellipse, params, color, on, self._local_box("ellipse", params, _ellipse_box))

    def box(self, cx, cy, hx, hy, color, angle=0.0, on=None):
        params = (cx, cy, hx, hy, angle)
        self._record(self._box, params, color, on, self._local_box("box", params, _rectangle_box))

    def poly(self, points, color, on=None):
        """A convex polygon through ``points`` [(x, y), ...], in either winding order."""
        points = [tuple(p) for p in points]
        if any(torch.is_tensor(c) for p in points for c in p):
            box = _polygon_box([(_np(px), _np(py)) for px, py in points], self._reach)
        else:
            box = self._local_box("poly", tuple(points), None)
        self._record(self._poly, (points,), color, on, box)

    def _local_box(self, kind, params, box):
        """(lo_u, hi_u, lo_v, hi_v), each (m,): the local box of the pixels a part can cover."""
        if any(torch.is_tensor(p) for p in params):                 # per-object parameters
            return box(*map(_np, params), self._reach)
        base, slope = _constant_box(kind, params)
        return base[:, None] + slope[:, None] * self._reach

    def _record(self, shape, args, color, on, local_box):
        """Keep a part for ``paint``, with the local box [lo_u, hi_u] x [lo_v, hi_v] (floats or
        (m,) arrays) of the pixels it may cover."""
        self._parts.append((shape, args, color, on))
        self._boxes.append(np.broadcast_to(np.asarray(local_box, dtype=float), (4, len(self._reach))))

    def _pixels(self):
        """The first and last pixels (x, y) each part may cover, (P, 2, m) each, with one pixel of
        margin each side: those of the parts' local boxes, all parts at once."""
        lo_u, hi_u, lo_v, hi_v = np.moveaxis(np.stack(self._boxes), 1, 0)         # (P, m) each
        pu, eu = (lo_u + hi_u) / 2, (hi_u - lo_u) / 2
        pv, ev = (lo_v + hi_v) / 2, (hi_v - lo_v) / 2
        centre = self._centre + self._to_pixels[:, 0] * pu[:, None] + self._to_pixels[:, 1] * pv[:, None]
        half = self._spread[:, 0] * eu[:, None] + self._spread[:, 1] * ev[:, None]
        s = self.size
        lo = np.clip(np.ceil(centre - half) - 1, 0, s - 1).astype(np.int64)
        hi = np.clip(np.floor(centre + half) + 1, 0, s - 1).astype(np.int64)
        return lo, hi

    # Painting.

    @torch.inference_mode()         # no autograd: cheaper operations; the layer stays internal
    def paint(self):
        """Paint the recorded parts into ``layer``, in the order they were drawn."""
        s, device = self.size, self.device
        cx, cy, scale, angle, flip = self._pose
        lo, hi = self._pixels()
        self.start, (w, h) = _span(lo.min(axis=0), hi.max(axis=0), s)
        coords = (torch.arange(s, device=device, dtype=torch.float32) + 0.5) / s * 2 - 1
        cols = torch.from_numpy(self.start[0][:, None] + np.arange(w)).to(device)
        rows = torch.from_numpy(self.start[1][:, None] + np.arange(h)).to(device)
        dx = coords[cols].view(-1, 1, w) - cx.to(device).view(-1, 1, 1)       # (m, 1, w)
        dy = coords[rows].view(-1, h, 1) - cy.to(device).view(-1, 1, 1)       # (m, h, 1)
        c, sn = torch.cos(angle).to(device).view(-1, 1, 1), torch.sin(angle).to(device).view(-1, 1, 1)
        sc = scale.to(device).view(-1, 1, 1)
        # u = (c dx + sn dy) / sc, negated for mirrored objects by negating c and sn: the same
        # numbers (rounding is symmetric), up to the sign of an exact zero, which no part's
        # coverage depends on.
        mirror = flip.to(device).view(-1, 1, 1)
        self.uv = torch.empty(len(cx), 2, h, w, device=device)
        torch.add(torch.where(mirror, -c, c) * dx, torch.where(mirror, -sn, sn) * dy, out=self.uv[:, 0]).div_(sc)
        torch.add(-sn * dx, c * dy, out=self.uv[:, 1]).div_(sc)
        self.layer = torch.zeros(len(cx), 4, h, w, device=device)
        for part, part_lo, part_hi in zip(self._parts, lo, hi):
            self._paint_part(*part, part_lo, part_hi)
        del self.uv
        self._parts, self._boxes = [], []

    def _paint_part(self, shape, args, color, on, lo, hi):
        """Paint where the part's signed distance < 0 with ``color`` (n, 3) or (3,). ``lo``, ``hi``:
        (2, m) the first and last pixels (x, y) it may cover."""
        m, _, h, w = self.layer.shape
        ow, oh = (hi - lo).max(axis=1) + 1                       # the part's own window
        if (h * w - ow * oh) * m < _OWN_WINDOW_SAVES:
            a = self._coverage(shape(self.uv[:, 0], self.uv[:, 1], *args), on)
        else:       # placed inside the object's window, which holds every pixel the part may cover
            offset = np.minimum(lo, self.start + np.array([[w], [h]]) - np.array([[ow], [oh]])) - self.start
            first = offset[1] * w + offset[0]                    # in each object's (h, w) window
            row = np.arange(oh) * w
            uv_rows = (np.arange(m) * (2 * h * w) + first)[:, None, None] + np.array([0, h * w])[:, None] + row
            uv = _rows(self.uv, ow).index_select(0, torch.from_numpy(uv_rows.reshape(-1)).to(self.device))
            uv = uv.view(m, 2, oh, ow)
            plane = torch.from_numpy(((np.arange(m) * (h * w) + first)[:, None] + row).reshape(-1)).to(self.device)
            own = self._coverage(shape(uv[:, 0], uv[:, 1], *args), on)
            a = torch.zeros(m, h, w, device=self.device)
            _rows(a, ow).index_copy_(0, plane, own.view(-1, ow))
        end = (_constant_paint_end if isinstance(color, tuple) else _paint_end)(color, self.device)
        self.layer.lerp_(end.expand_as(self.layer), a.unsqueeze(1))          # paint over

    def _coverage(self, d, on):
        """(m, h, w) coverage of each pixel by a part whose signed distance is ``d`` (m, h, w)."""
        # 0.5 - d / pix, with -(d / pix) as d / -pix (the same number, sign of zero included)
        a = d.div_(self._minus_pix).add_(0.5).clamp_(0, 1)
        if on is not None:                       # per-object switch (n,), e.g. "has a crest"
            a.mul_(on.to(device=a.device, dtype=a.dtype).view(-1, 1, 1))
        return a

    def _frame(self, u, v, cx, cy, angle):
        """Fresh tensors: the pixels' coordinates in a part's frame, centred at (cx, cy) and turned
        by ``angle``."""
        x, y = u - self._to(cx), v - self._to(cy)
        if isinstance(angle, (int, float)) and angle == 0:
            return x, y
        c, s = (torch.cos(angle), torch.sin(angle)) if torch.is_tensor(angle) else (math.cos(angle), math.sin(angle))
        c, s = self._to(c), self._to(s)
        return (c * x).add_(s * y), (-s * x).add_(c * y)

    # Each signed distance below is the same sequence of operations as its plain formula, written
    # in place where a temporary is not used again.

    def _ellipse(self, u, v, cx, cy, rx, ry, angle):
        x, y = self._frame(u, v, cx, cy, angle)
        rx, ry = self._to(rx), self._to(ry)
        # k = sqrt((x / rx)^2 + (y / ry)^2 + 1e-12); grad = sqrt((x / rx^2)^2 + (y / ry^2)^2 + 1e-12) / k
        k = (x / rx).square_().add_((y / ry).square_()).add_(1e-12).sqrt_()
        grad = x.div_(rx**2).square_().add_(y.div_(ry**2).square_()).add_(1e-12).sqrt_().div_(k)
        return k.sub_(1).div_(grad)                                               # (k - 1) / grad

    def _box(self, u, v, cx, cy, hx, hy, angle):
        x, y = self._frame(u, v, cx, cy, angle)
        qx, qy = x.abs_().sub_(self._to(hx)), y.abs_().sub_(self._to(hy))
        # outside: sqrt(max(qx, 0)^2 + max(qy, 0)^2); inside: min(max(qx, qy), 0)
        outside = qx.clamp(min=0).square_().add_(qy.clamp(min=0).square_()).sqrt_()
        return outside.add_(torch.maximum(qx, qy).clamp_(max=0))

    def _poly(self, u, v, points):
        pts = [(self._to(px), self._to(py)) for px, py in points]
        mx = sum(p[0] for p in pts) / len(pts)
        my = sum(p[1] for p in pts) / len(pts)
        d = None
        for (x0, y0), (x1, y1) in zip(pts, pts[1:] + pts[:1]):
            ex, ey = x1 - x0, y1 - y0
            length = (ex * ex + ey * ey) ** 0.5 + 1e-9
            nx, ny = ey / length, -ex / length
            side = nx * (mx - x0) + ny * (my - y0)                 # > 0: the centre is on the normal's side
            if torch.is_tensor(side):
                sign = -torch.sign(side + 1e-12)
            else:                           # as the float32 tensor it would be: the same sign
                sign = -float(np.sign(np.float32(side) + np.float32(1e-12)))
            # the signed distance to the edge, sign * (nx (u - x0) + ny (v - y0)), as (sign nx) (u - x0)
            # + (sign ny) (v - y0): the same number up to the sign of an exact zero, which no
            # coverage depends on (0.5 - 0 / pix is 0.5 either way)
            dist = (u - x0).mul_(sign * nx).add_((v - y0).mul_(sign * ny))
            d = dist if d is None else torch.maximum(d, dist, out=d)
        return d

    # Using the layer.

    def _window_rows(self, channels, images=None):
        """Where each row of every object's window starts in (N, channels, S, S) images, object i
        in image ``images[i]`` (default: image i): (m, channels, h)."""
        s, h = self.size, self.layer.shape[-2]
        image = np.arange(self.layer.shape[0]) if images is None else np.asarray(images)
        first = image * (channels * s * s) + self.start[1] * s + self.start[0]
        return torch.from_numpy(first).to(self.device).view(-1, 1, 1) + _row_starts(s, channels, h, self.device)

    def full_layer(self):
        """The layer over whole images: (m, 4, S, S)."""
        s, w = self.size, self.layer.shape[-1]
        out = torch.zeros(self.layer.shape[0], 4, s, s, device=self.device)
        _rows(out, w).index_copy_(0, self._window_rows(4).view(-1), self.layer.view(-1, w))
        return out

    @torch.inference_mode()         # writes into ``scene``, which stays an ordinary tensor
    def paint_over(self, scene, rows):
        """Composite the layer over ``scene`` (N, 3, S, S): object i over scene ``rows[i]``
        (``scene * (1 - alpha) + rgb``), inside the windows (outside them alpha and rgb are 0 and
        the scene stays as it is)."""
        h, w = self.layer.shape[-2:]
        theirs = self._window_rows(3, rows).view(-1)
        under = _rows(scene, w).index_select(0, theirs).view(-1, 3, h, w)
        under.mul_(1 - self.layer[:, 3:]).add_(self.layer[:, :3])
        _rows(scene, w).index_copy_(0, theirs, under.view(-1, w))


def _palette(g, n, base, jitter):
    """(n, 3) colours: ``base`` (3,) or (n, 3) plus uniform jitter, clipped to [0, 1]."""
    base = torch.as_tensor(base, dtype=torch.float32)
    noise = (torch.rand(n, 3, generator=g) * 2 - 1) * jitter
    return (base + noise).clamp(0, 1)


# Bird species: body, breast, wing, beak colours, then shape details.
#                  body               breast             wing               beak
_SPECIES_COLOURS = {
    "robin":     [(0.45, 0.32, 0.22), (0.95, 0.50, 0.15), (0.35, 0.25, 0.18), (0.20, 0.18, 0.15)],
    "bluejay":   [(0.25, 0.45, 0.90), (0.92, 0.92, 0.95), (0.15, 0.30, 0.75), (0.15, 0.15, 0.18)],
    "cardinal":  [(0.85, 0.10, 0.10), (0.80, 0.12, 0.12), (0.65, 0.08, 0.08), (0.95, 0.60, 0.20)],
    "goldfinch": [(0.98, 0.85, 0.10), (0.98, 0.88, 0.25), (0.10, 0.10, 0.10), (0.95, 0.60, 0.30)],
    "crow":      [(0.10, 0.10, 0.12), (0.14, 0.14, 0.16), (0.06, 0.06, 0.08), (0.08, 0.08, 0.08)],
    "gull":      [(0.95, 0.95, 0.95), (0.98, 0.98, 0.98), (0.60, 0.62, 0.66), (0.98, 0.80, 0.15)],
}
#                  crest  mask  tail length  beak length
_SPECIES_SHAPES = {
    "robin":     (0, 0, 0.40, 0.22),
    "bluejay":   (1, 0, 0.55, 0.22),
    "cardinal":  (1, 1, 0.40, 0.20),
    "goldfinch": (0, 0, 0.25, 0.16),
    "crow":      (0, 0, 0.55, 0.34),
    "gull":      (0, 0, 0.30, 0.30),
}


def _draw_bird(pen, g, n, species):
    """species: (n,) indices into BIRD_SPECIES."""
    cols = torch.tensor([_SPECIES_COLOURS[s] for s in BIRD_SPECIES])        # (S, 4, 3)
    shapes = torch.tensor([_SPECIES_SHAPES[s] for s in BIRD_SPECIES])       # (S, 4)
    body, breast, wing, beak = (_palette(g, n, cols[species, i], 0.07) for i in range(4))
    crest, mask, tail, beak_len = (shapes[species, i] for i in range(4))
    tail = tail * (1 + 0.1 * (torch.rand(n, generator=g) * 2 - 1))
    wing_up = torch.rand(n, generator=g) * 0.8 - 0.4                         # wing pose, radians
    pen.poly([(-0.45, -0.05), (-0.45 - tail, -0.22), (-0.45 - tail, 0.18)], body)          # tail
    pen.ellipse(0.0, 0.0, 0.52, 0.28, body)                                                # body
    pen.ellipse(0.08, 0.12, 0.36, 0.15, breast)                                            # breast
    pen.poly([(0.40, -0.38), (0.52, -0.36), (0.30, -0.62)], body, on=crest)                # crest
    pen.ellipse(0.45, -0.22, 0.22, 0.20, body)                                             # head
    pen.ellipse(0.50, -0.20, 0.14, 0.09, (0.05, 0.05, 0.05), on=mask)                      # mask
    pen.poly([(0.62, -0.28), (0.62, -0.14), (0.62 + beak_len, -0.21)], beak)               # beak
    pen.ellipse(0.52, -0.27, 0.05, 0.05, (0.02, 0.02, 0.02))                               # eye
    pen.ellipse(-0.08, -0.08, 0.34, 0.13, wing, angle=wing_up)                             # wing


def _draw_orca(pen, g, n):
    black = _palette(g, n, (0.06, 0.06, 0.08), 0.04)
    white = _palette(g, n, (0.95, 0.95, 0.95), 0.04)
    pen.poly([(-0.7, 0.0), (-1.0, -0.25), (-0.92, 0.0)], black)                           # flukes
    pen.poly([(-0.7, 0.0), (-0.92, 0.0), (-1.0, 0.22)], black)
    pen.poly([(-0.15, -0.2), (0.12, -0.2), (-0.12, -0.78)], black)                        # tall fin
    pen.ellipse(0.0, 0.0, 0.85, 0.28, black)                                               # body
    pen.ellipse(0.15, 0.14, 0.55, 0.11, white)                                             # belly
    pen.ellipse(0.50, -0.09, 0.13, 0.055, white, angle=-0.2)                               # eye patch
    pen.ellipse(-0.2, -0.14, 0.16, 0.05, (0.55, 0.55, 0.58), angle=0.2)                    # saddle


def _draw_whale(pen, g, n):
    body = _palette(g, n, (0.35, 0.45, 0.60), 0.08)
    belly = _palette(g, n, (0.70, 0.75, 0.80), 0.06)
    pen.poly([(-0.75, 0.0), (-1.0, -0.3), (-0.9, 0.0)], body)                             # flukes
    pen.poly([(-0.75, 0.0), (-0.9, 0.0), (-1.0, 0.3)], body)
    pen.ellipse(0.0, 0.0, 0.9, 0.36, body)
    pen.ellipse(0.1, 0.2, 0.65, 0.13, belly)
    pen.poly([(-0.45, -0.3), (-0.3, -0.3), (-0.42, -0.45)], body)                          # small fin
    pen.ellipse(0.6, -0.05, 0.05, 0.05, (0.05, 0.05, 0.05))                                # eye


def _draw_fish(pen, g, n):
    body = _palette(g, n, (0.95, 0.55, 0.15), 0.35)
    stripe = _palette(g, n, (0.95, 0.95, 0.95), 0.2)
    pen.poly([(-0.3, 0.0), (-0.8, -0.4), (-0.8, 0.4)], body)                               # tail
    pen.ellipse(0.1, 0.0, 0.55, 0.33, body)
    pen.box(0.05, 0.0, 0.06, 0.3, stripe)
    pen.ellipse(0.45, -0.08, 0.06, 0.06, (0.02, 0.02, 0.02))


def _draw_boat(pen, g, n):
    hull = _palette(g, n, (0.55, 0.30, 0.15), 0.25)
    sail = _palette(g, n, (0.95, 0.95, 0.90), 0.08)
    pen.box(0.0, -0.25, 0.03, 0.55, (0.30, 0.20, 0.10))                                   # mast
    pen.poly([(0.05, -0.75), (0.05, 0.15), (0.6, 0.15)], sail)                             # sail
    pen.poly([(-0.75, 0.2), (0.8, 0.2), (0.55, 0.5), (-0.55, 0.5)], hull)                  # hull


def _draw_plane(pen, g, n):
    body = _palette(g, n, (0.80, 0.82, 0.85), 0.12)
    accent = _palette(g, n, (0.80, 0.15, 0.15), 0.3)
    pen.poly([(0.1, 0.0), (-0.25, 0.0), (-0.45, 0.7), (-0.3, 0.7)], body)                  # wing
    pen.poly([(0.1, 0.0), (-0.25, 0.0), (-0.45, -0.7), (-0.3, -0.7)], body)                # wing
    pen.poly([(-0.7, 0.0), (-0.9, -0.35), (-0.78, -0.35), (-0.55, 0.0)], accent)           # tail fin
    pen.ellipse(0.0, 0.0, 0.9, 0.11, body)                                                 # fuselage
    pen.ellipse(0.72, -0.03, 0.1, 0.05, (0.2, 0.3, 0.45))                                  # cockpit


def _draw_balloon(pen, g, n):
    top = _palette(g, n, (0.85, 0.25, 0.25), 0.4)
    band = _palette(g, n, (0.95, 0.85, 0.2), 0.35)
    pen.box(-0.12, 0.42, 0.012, 0.18, (0.3, 0.25, 0.2), angle=0.2)                        # ropes
    pen.box(0.12, 0.42, 0.012, 0.18, (0.3, 0.25, 0.2), angle=-0.2)
    pen.ellipse(0.0, -0.2, 0.45, 0.55, top)                                                # envelope
    pen.box(0.0, -0.15, 0.45, 0.08, band)
    pen.box(0.0, 0.65, 0.13, 0.1, (0.45, 0.3, 0.15))                                       # basket


def _draw_kite(pen, g, n):
    a = _palette(g, n, (0.9, 0.2, 0.6), 0.4)
    b = _palette(g, n, (0.2, 0.6, 0.9), 0.4)
    pen.box(-0.05, 0.65, 0.01, 0.3, (0.2, 0.2, 0.2), angle=0.15)                          # tail string
    pen.poly([(0.0, -0.7), (0.4, -0.1), (0.0, 0.45), (-0.4, -0.1)], a)                     # diamond
    pen.poly([(0.0, -0.7), (0.4, -0.1), (0.0, -0.1)], b)
    pen.poly([(0.0, 0.45), (-0.4, -0.1), (0.0, -0.1)], b)
    for y in (0.65, 0.85):
        pen.poly([(-0.05, y - 0.06), (0.07, y), (-0.05, y + 0.06)], b)                     # bows


def _draw_tree(pen, g, n):
    leaves = _palette(g, n, (0.15, 0.55, 0.15), 0.12)
    pen.box(0.0, 0.45, 0.1, 0.4, (0.40, 0.25, 0.12))
    pen.ellipse(0.0, -0.25, 0.55, 0.5, leaves)
    pen.ellipse(-0.3, 0.0, 0.3, 0.28, leaves)
    pen.ellipse(0.3, 0.0, 0.3, 0.28, leaves)


def _draw_house(pen, g, n):
    wall = _palette(g, n, (0.90, 0.80, 0.60), 0.15)
    roof = _palette(g, n, (0.65, 0.15, 0.10), 0.2)
    pen.box(0.0, 0.25, 0.55, 0.45, wall)
    pen.poly([(-0.7, -0.2), (0.7, -0.2), (0.0, -0.8)], roof)
    pen.box(-0.2, 0.45, 0.12, 0.25, (0.35, 0.2, 0.1))                                      # door
    pen.box(0.27, 0.15, 0.12, 0.12, (0.55, 0.75, 0.95))                                    # window


def _draw_sun(pen, g, n):
    disc = _palette(g, n, (1.0, 0.82, 0.1), 0.08)
    for k in range(8):
        ang = k * math.pi / 4
        pen.box(0.7 * math.cos(ang), 0.7 * math.sin(ang), 0.2, 0.035, disc, angle=ang)
    pen.ellipse(0.0, 0.0, 0.45, 0.45, disc)


def _draw_leaf(pen, g, n):
    colour = _palette(g, n, (0.55, 0.6, 0.15), 0.3)
    pen.box(-0.75, 0.0, 0.2, 0.025, (0.35, 0.25, 0.1))                                     # stem
    pen.ellipse(0.0, 0.0, 0.65, 0.3, colour)
    pen.poly([(0.55, -0.12), (0.95, 0.0), (0.55, 0.12)], colour)                           # tip
    pen.box(0.0, 0.0, 0.55, 0.015, colour * 0.6)                                           # midrib


def _draw_car(pen, g, n):
    paint = _palette(g, n, (0.2, 0.35, 0.8), 0.4)
    pen.box(-0.05, -0.25, 0.4, 0.2, paint)                                                 # cabin
    pen.box(-0.05, -0.25, 0.3, 0.12, (0.6, 0.8, 0.95))                                     # windows
    pen.box(0.0, 0.08, 0.8, 0.2, paint)                                                    # body
    for x in (-0.5, 0.5):
        pen.ellipse(x, 0.3, 0.18, 0.18, (0.08, 0.08, 0.08))
        pen.ellipse(x, 0.3, 0.07, 0.07, (0.7, 0.7, 0.7))


def _draw_flower(pen, g, n):
    petal = _palette(g, n, (0.85, 0.35, 0.75), 0.35)
    pen.box(0.0, 0.5, 0.04, 0.45, (0.2, 0.55, 0.2))                                       # stem
    pen.ellipse(0.2, 0.55, 0.18, 0.07, (0.2, 0.55, 0.2), angle=-0.5)                       # leaf
    for k in range(6):
        ang = k * math.pi / 3
        pen.ellipse(0.3 * math.cos(ang), -0.3 + 0.3 * math.sin(ang), 0.2, 0.13, petal, angle=ang)
    pen.ellipse(0.0, -0.3, 0.15, 0.15, (0.98, 0.8, 0.1))


_DRAW = {"orca": _draw_orca, "whale": _draw_whale, "fish": _draw_fish, "boat": _draw_boat,
         "plane": _draw_plane, "balloon": _draw_balloon, "kite": _draw_kite, "tree": _draw_tree,
         "house": _draw_house, "sun": _draw_sun, "leaf": _draw_leaf, "car": _draw_car,
         "flower": _draw_flower}


def _groups(names):
    """[(name, indices of its entries as an int64 tensor)] for each distinct name, sorted."""
    names = np.asarray(names)
    return [(name, torch.from_numpy(np.flatnonzero(names == name))) for name in sorted(set(names.tolist()))]


def _draw_objects(names, cx, cy, scale, angle, flip, species, image_size, g, device):
    """Draw the objects class by class, in sorted order (the order the random colours are drawn
    in). Yields each class's indices into ``names`` (m,) and the pen holding their layer."""
    for name, idx in _groups(names):
        pen = _Pen(cx[idx], cy[idx], scale[idx], angle[idx], flip[idx], image_size, device)
        if name == "bird":
            _draw_bird(pen, g, len(idx), species[idx])
        else:
            _DRAW[name](pen, g, len(idx))
        pen.paint()
        yield idx, pen


def render_objects(names, cx, cy, scale, angle, flip, species, image_size, g, device):
    """Draw one object per scene into an RGBA layer.

    Args:
        names: list of n class names (any of CLASSES).
        cx, cy, scale, angle: (n,) pose: centre in [-1, 1] image units (y down), half-size as a
            fraction of the half-image, rotation in radians.
        flip: (n,) bool, mirror left-right. species: (n,) bird species ids (used for birds).
    Returns:
        rgb (n, 3, S, S) premultiplied colour and alpha (n, S, S), on ``device``.
    """
    n, s = len(names), image_size
    rgb = torch.zeros(n, 3, s, s, device=device)
    alpha = torch.zeros(n, s, s, device=device)
    for idx, pen in _draw_objects(names, cx, cy, scale, angle, flip, species, image_size, g, device):
        layer = pen.full_layer()
        rgb[idx.to(device)] = layer[:, :3]
        alpha[idx.to(device)] = layer[:, 3]
    return rgb, alpha


def _paint_objects(scene, rows, names, cx, cy, scale, angle, flip, species, g):
    """Draw one object over each of the scenes ``rows`` (n,) of ``scene`` (N, 3, S, S), in place:
    the same pixels as compositing ``render_objects``'s layer (``scene * (1 - alpha) + rgb``),
    without full-size layers. The other arguments are ``render_objects``'s."""
    rows = np.asarray(rows)
    for idx, pen in _draw_objects(names, cx, cy, scale, angle, flip, species, scene.shape[-1], g, scene.device):
        pen.paint_over(scene, rows[idx.numpy()])
    return scene


def render_backgrounds(kinds, image_size, g, device):
    """(n, 3, S, S) backgrounds, one of BACKGROUNDS per scene."""
    out = torch.empty(len(kinds), 3, image_size, image_size, device=device)   # every scene gets one
    with torch.inference_mode():          # no autograd: cheaper; ``out`` stays an ordinary tensor
        _paint_backgrounds(out, kinds, g)
    return out


def _paint_backgrounds(out, kinds, g):
    """Paint into each image of ``out`` (n, 3, S, S) the background ``kinds`` names for it."""
    s, device = out.shape[-1], out.device
    y = ((torch.arange(s, device=device, dtype=torch.float32) + 0.5) / s).view(1, 1, s, 1)
    x = ((torch.arange(s, device=device, dtype=torch.float32) + 0.5) / s).view(1, 1, 1, s)
    y_everywhere = y.expand(1, 1, s, s).contiguous()
    for kind, idx in _groups(kinds):
        m = len(idx)
        top_bottom = {
            "sky": ((0.35, 0.60, 0.95), (0.75, 0.88, 1.00)),
            "sea": ((0.10, 0.35, 0.55), (0.02, 0.15, 0.35)),
            "grass": ((0.55, 0.75, 0.35), (0.20, 0.50, 0.15)),
            "clouds": ((0.45, 0.65, 0.90), (0.70, 0.82, 0.95)),
            "sunset": ((0.45, 0.25, 0.55), (0.98, 0.60, 0.25)),
            "noise": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
        }[kind]
        top = _palette(g, m, top_bottom[0], 0.08).to(device).view(m, 3, 1, 1)
        bottom = _palette(g, m, top_bottom[1], 0.08).to(device).view(m, 3, 1, 1)
        # The vertical gradient top + (bottom - top) * y: spread over x where nothing is added to
        # it, else written out at every pixel (the same sums), and the terms added in place.
        if kind in ("sky", "sunset"):
            bg = (top + (bottom - top) * y).expand(m, 3, s, s)
        elif kind != "noise":
            bg = ((bottom - top) * y_everywhere).add_(top)
        if kind == "sea":
            phase = (torch.rand(m, 1, 1, 1, generator=g) * 6.28).to(device)
            freq = (20 + torch.rand(m, 1, 1, 1, generator=g) * 20).to(device)
            bg.add_(torch.sin(freq * y + 3 * torch.sin(6 * x + phase) + phase).mul_(0.05))
        elif kind == "grass":
            blades = torch.rand(m, 1, s // 2, s, generator=g).to(device)
            bg.add_(F.interpolate(blades, size=(s, s), mode="bilinear").sub_(0.5).mul_(0.12).mul_(y))
        elif kind == "clouds":
            for _ in range(3):
                ccx = (torch.rand(m, 1, 1, 1, generator=g)).to(device)
                ccy = (torch.rand(m, 1, 1, 1, generator=g) * 0.6).to(device)
                r = ((x - ccx) / 0.25) ** 2 + ((y - ccy) / 0.1) ** 2
                bg.add_((0.9 - bg).mul_(torch.exp(-r)).mul_(0.9))       # bg + (0.9 - bg) * exp(-r) * 0.9
        elif kind == "noise":                 # (the gradient is not used)
            low = torch.rand(m, 3, 5, 5, generator=g).to(device)
            bg = F.interpolate(low, size=(s, s), mode="bicubic", align_corners=False).mul_(0.5).add_(0.25)
        out.index_copy_(0, idx.to(device), bg)
    out.clamp_(0, 1)


def _finish(scene, g, noise, device, chunk=64):
    """Camera effects: brightness and contrast jitter, sensor noise; result in [0, 1].

    Works in place on ``scene`` and returns it, ``chunk`` images at a time so that each step's
    numbers stay in the processor's cache (the same operations on every pixel as all at once)."""
    n = scene.shape[0]
    gain = (0.85 + 0.3 * torch.rand(n, 1, 1, 1, generator=g)).to(device)
    shift = (0.08 * (torch.rand(n, 1, 1, 1, generator=g) * 2 - 1)).to(device)
    # Sensor grain: drawing fresh random numbers for every pixel costs more than drawing the
    # scene, so each image takes one of 512 fixed grain fields, shifted by a random offset.
    bank = _grain_bank(scene.shape[-1], device)
    pick = torch.randint(0, len(bank), (n,), generator=g).to(device)
    offset = int(torch.randint(0, scene.shape[-1], (1,), generator=g))
    with torch.inference_mode():          # no autograd: cheaper; ``scene`` stays an ordinary tensor
        if n >= len(bank):                # then rolling the fields once moves fewer numbers
            bank, offset = torch.roll(bank, shifts=offset, dims=-1), 0
        for i in range(0, n, chunk):
            part = scene[i:i + chunk]
            grain = bank[pick[i:i + chunk]]
            grain = (torch.roll(grain, shifts=offset, dims=-1) if offset else grain).mul_(noise)
            torch.addcmul(grain, part, gain[i:i + chunk], out=part).add_(shift[i:i + chunk]).clamp_(0, 1)
    return scene


_GRAIN = {}


def _grain_bank(size, device):
    key = (size, str(device))
    if key not in _GRAIN:
        g = torch.Generator().manual_seed(1234)
        _GRAIN[key] = torch.randn(512, 3, size, size, generator=g).to(device)   # unit variance
    return _GRAIN[key]


def _choose(g, n, options):
    return [options[i] for i in torch.randint(0, len(options), (n,), generator=g).tolist()]


def _uniform(g, n, low, high):
    return low + (high - low) * torch.rand(n, generator=g)


# ---------------------------------------------------------------------------------------------
# The tasks
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Scenes:
    """How the scenes of ``ImageWorld`` and ``BirdSpecies`` look (both tasks extend it).

    Args:
        image_size: side of the square images, in pixels.
        backgrounds: background kinds drawn.
        scale: (low, high) object half-size as a fraction of the half-image.
        max_rotation: objects are rotated by up to this many radians either way.
        noise: standard deviation of the sensor noise, in [0, 1] intensity units.
        clutter: probability that a small object of another class sits behind the main one,
            so the model must learn which object the label is about.
    """
    image_size: int = 48
    backgrounds: tuple[str, ...] = BACKGROUNDS
    scale: tuple[float, float] = (0.45, 0.8)
    max_rotation: float = 0.4
    noise: float = 0.04
    clutter: float = 0.5

    def __post_init__(self):
        _check_backgrounds(self.backgrounds)

    def scene_fields(self) -> dict:
        """This task's ``Scenes`` fields by name (to build another task with the same look)."""
        return {f.name: getattr(self, f.name) for f in fields(Scenes)}


@dataclass(frozen=True)
class ImageWorld(Scenes):
    """The general pre-training task: one main object per scene; the label is its class.

    Args:
        classes: the object classes drawn (labels index into this tuple).
        The other fields, the look of the scenes, are ``Scenes``'.
    """
    classes: tuple[str, ...] = CLASSES

    def __post_init__(self):
        unknown = [c for c in self.classes if c not in CLASSES]
        if unknown:
            raise ValueError(f"unknown classes {unknown}; valid classes are {list(CLASSES)}")
        super().__post_init__()

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def render(self, n: int, seed: int, device="cpu", species=None):
        """Render ``n`` scenes. Returns images (n, 3, S, S) in [0, 1] and labels (n,) int64."""
        g = torch.Generator().manual_seed(seed)
        labels = torch.randint(0, len(self.classes), (n,), generator=g)
        names = [self.classes[i] for i in labels.tolist()]
        if species is None:
            species = torch.randint(0, len(BIRD_SPECIES), (n,), generator=g)
        bg = render_backgrounds(_choose(g, n, self.backgrounds), self.image_size, g, device)
        if self.clutter > 0:
            bg = self._add_clutter(bg, labels, g, device)
        span = 1 - self.scale[1] * 0.7
        cx, cy = _uniform(g, n, -span, span), _uniform(g, n, -span, span)
        scale = _uniform(g, n, *self.scale)
        angle = _uniform(g, n, -self.max_rotation, self.max_rotation)
        flip = torch.rand(n, generator=g) < 0.5
        scene = _paint_objects(bg, np.arange(n), names, cx, cy, scale, angle, flip, species, g)  # over the background
        return _finish(scene, g, self.noise, device), labels.to(device)


    def _add_clutter(self, scene, labels, g, device):
        """Small objects of other classes (from all of CLASSES), behind the main object."""
        n = len(labels)
        has = (torch.rand(n, generator=g) < self.clutter).tolist()
        other = torch.randint(0, len(CLASSES), (n,), generator=g).tolist()
        main = [CLASSES.index(self.classes[i]) for i in labels.tolist()]
        who = [i for i in range(n) if has[i] and other[i] != main[i]]
        if not who:
            return scene
        m = len(who)
        names = [CLASSES[other[i]] for i in who]
        corner = torch.randint(0, 4, (m,), generator=g)
        cx = torch.where(corner % 2 == 0, -0.65, 0.65) + _uniform(g, m, -0.15, 0.15)
        cy = torch.where(corner < 2, -0.65, 0.65) + _uniform(g, m, -0.15, 0.15)
        return _paint_objects(scene, np.array(who), names, cx, cy, _uniform(g, m, 0.15, 0.28), _uniform(g, m, -0.4, 0.4),
                              torch.rand(m, generator=g) < 0.5,
                              torch.randint(0, len(BIRD_SPECIES), (m,), generator=g), g)


@dataclass(frozen=True)
class BirdSpecies(Scenes):
    """Fine-grained task: which species is the bird? Labels index into ``species``.

    The species differ in colours (body, breast, wing, beak) and in shape details (crest,
    face mask, tail and beak length); pose, scale, background and lighting vary as in the
    general world (the same ``Scenes`` fields), so colour alone under one light is not enough.
    """
    species: tuple[str, ...] = BIRD_SPECIES

    def __post_init__(self):
        unknown = [s for s in self.species if s not in BIRD_SPECIES]
        if unknown:
            raise ValueError(f"unknown species {unknown}; valid species are {list(BIRD_SPECIES)}")
        super().__post_init__()

    @property
    def num_classes(self) -> int:
        return len(self.species)

    def render(self, n: int, seed: int, device="cpu"):
        """Images (n, 3, S, S) in [0, 1] and species labels (n,) int64."""
        g = torch.Generator().manual_seed(seed)
        labels = torch.randint(0, len(self.species), (n,), generator=g)
        ids = torch.tensor([BIRD_SPECIES.index(s) for s in self.species])[labels]
        world = ImageWorld(classes=("bird",), **self.scene_fields())
        images, _ = world.render(n, seed=int(torch.randint(0, 2**62, (1,), generator=g)),
                                 device=device, species=ids)
        return images, labels.to(device)

    def balanced(self, per_class: int, seed: int, device="cpu"):
        """Exactly ``per_class`` images of each species (few-label training sets)."""
        xs, ys, batch = [], [], 0
        counts = torch.zeros(self.num_classes, dtype=torch.long)
        while int(counts.min()) < per_class:
            x, y = self.render(max(64, 2 * per_class * self.num_classes), seed * 7919 + batch, device)
            batch += 1
            for k in range(self.num_classes):
                need = per_class - int(counts[k])
                if need > 0:
                    take = (y == k).nonzero().flatten()[:need]
                    xs.append(x[take]), ys.append(y[take])
                    counts[k] += len(take)
        x, y = torch.cat(xs), torch.cat(ys)
        order = torch.argsort(y.cpu() * 10**6 + torch.arange(len(y)))          # stable: by class
        return x[order.to(x.device)], y[order.to(y.device)]


@dataclass(frozen=True)
class CountWorld:
    """Bird-counting scenes: 0..``max_birds`` birds of all species among distractors.

    Objects sit in distinct cells of a ``grid`` x ``grid`` layout with jittered positions, so
    neighbours may overlap partly but never hide a bird: the label is the number of birds
    drawn, and each of them stays mostly visible (``render(..., visibility=True)`` returns the
    visible share of every bird so tests can check it).
    """
    image_size: int = 64
    min_birds: int = 0
    max_birds: int = 9
    distractors: tuple[str, ...] = DISTRACTORS
    max_distractors: int = 5
    backgrounds: tuple[str, ...] = ("sky", "clouds", "grass", "sea", "noise")
    grid: int = 4
    scale: tuple[float, float] = (0.11, 0.16)
    jitter: float = 0.45           # fraction of a cell a centre may move from the cell's centre
    noise: float = 0.04

    def __post_init__(self):
        if not 0 <= self.min_birds <= self.max_birds:
            raise ValueError(f"need 0 <= min_birds <= max_birds, got {self.min_birds}, {self.max_birds}")
        if self.max_birds + self.max_distractors > self.grid ** 2:
            raise ValueError(f"max_birds + max_distractors = {self.max_birds + self.max_distractors} "
                             f"does not fit a {self.grid}x{self.grid} grid ({self.grid ** 2} cells)")
        unknown = [d for d in self.distractors if d not in CLASSES or d == "bird"]
        if unknown:
            raise ValueError(f"unknown distractors {unknown}; valid ones are {list(CLASSES[1:])}")
        _check_backgrounds(self.backgrounds)

    def render(self, n: int, seed: int, device="cpu", visibility: bool = False):
        """Images (n, 3, S, S) in [0, 1] and counts (n,) float32; with ``visibility=True`` also
        a list of n tensors with the visible share (0..1) of each bird in that scene."""
        g = torch.Generator().manual_seed(seed)
        s, cells = self.image_size, self.grid ** 2
        birds = torch.randint(self.min_birds, self.max_birds + 1, (n,), generator=g)
        extra = torch.randint(0, self.max_distractors + 1, (n,), generator=g)
        scene = render_backgrounds(_choose(g, n, self.backgrounds), s, g, device)
        cell_of = torch.argsort(torch.rand(n, cells, generator=g), dim=1)      # distinct cells
        slots = (birds + extra).tolist()
        layers = []                                     # per slot: scene index, alpha, is_bird
        for k in range(max(slots, default=0)):
            who = torch.tensor([i for i in range(n) if slots[i] > k])
            m = len(who)
            is_bird = birds[who] > k
            names = ["bird" if b else d for b, d in zip(is_bird.tolist(), _choose(g, m, self.distractors))]
            cell = cell_of[who, k]
            size = 2.0 / self.grid
            cx = -1 + size * (cell % self.grid + 0.5) + _uniform(g, m, -1, 1) * self.jitter * size / 2
            cy = -1 + size * (cell // self.grid + 0.5) + _uniform(g, m, -1, 1) * self.jitter * size / 2
            scale = _uniform(g, m, *self.scale)
            angle = _uniform(g, m, -0.4, 0.4)
            flip = torch.rand(m, generator=g) < 0.5
            species = torch.randint(0, len(BIRD_SPECIES), (m,), generator=g)
            rgb, alpha = render_objects(names, cx, cy, scale, angle, flip, species, s, g, device)
            who_d = who.to(device)
            scene[who_d] = scene[who_d] * (1 - alpha.unsqueeze(1)) + rgb
            layers.append((who, alpha, is_bird))
        images = _finish(scene, g, self.noise, device)
        counts = birds.to(torch.float32).to(device)
        if not visibility:
            return images, counts
        shares = [[] for _ in range(n)]
        for k, (who, alpha, is_bird) in enumerate(layers):
            visible = alpha.clone()
            for who_later, alpha_later, _ in layers[k + 1:]:   # later objects are drawn on top
                pos = {int(i): j for j, i in enumerate(who_later)}
                for j, i in enumerate(who.tolist()):
                    if i in pos:
                        visible[j] = visible[j] * (1 - alpha_later[pos[i]])
            for j, i in enumerate(who.tolist()):
                if is_bird[j]:
                    shares[i].append(float(visible[j].sum() / alpha[j].sum().clamp(min=1e-6)))
        return images, counts, [torch.tensor(v) for v in shares]


def render_class(name: str, n: int, seed: int, image_size: int = 32, device="cpu", **world_kwargs):
    """``n`` scenes whose main object is ``name`` (e.g. orcas for the generator lesson)."""
    if name not in CLASSES:
        raise ValueError(f"unknown class {name!r}; valid classes are {list(CLASSES)}")
    return ImageWorld(image_size=image_size, classes=(name,), **world_kwargs).render(n, seed, device)[0]


def _check_backgrounds(backgrounds):
    unknown = [b for b in backgrounds if b not in BACKGROUNDS]
    if unknown or not backgrounds:
        raise ValueError(f"unknown backgrounds {unknown or '(none given)'}; valid backgrounds are {list(BACKGROUNDS)}")


class WorldStream:
    """Fresh batches from a world, for a fixed number of steps; never the same scene twice.

    Scenes are rendered on ``device`` (the training device, so data never wait on the host) in
    chunks of about ``chunk`` images, since one large render costs far less per image than many
    small ones; chunk ``i`` uses seed ``seed * 1_000_003 + i``, so a stream is repeatable.
    """

    def __init__(self, world, batch_size: int, steps: int, seed: int = 0, device="cpu", chunk: int = 1024):
        self.world, self.batch_size, self.steps, self.seed, self.device = world, batch_size, steps, seed, device
        self.per_chunk = max(1, chunk // batch_size)        # batches per render call

    def __len__(self):
        return self.steps

    def __iter__(self):
        for start in range(0, self.steps, self.per_chunk):
            k = min(self.per_chunk, self.steps - start)
            x, y = self.world.render(k * self.batch_size, seed=self.seed * 1_000_003 + start, device=self.device)
            for j in range(k):
                yield x[j * self.batch_size:(j + 1) * self.batch_size], y[j * self.batch_size:(j + 1) * self.batch_size]
