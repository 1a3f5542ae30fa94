"""Drawing primitives of the artifact painters: antialiased disks, rings and strokes on (3,H,W) arrays.

A leaf below :mod:`xaibias.data.artifacts` (the painters) and :mod:`xaibias.data.lesion_render`
(the synthetic lesions), which draw with the same primitives. Images are float32 numpy arrays
(3,H,W) in [0, 1], modified in place; an alpha map says how much of a colour covers each pixel, and
pixels with alpha 0 keep their exact bytes.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["Array", "as_rng", "pixel_grid", "disk_box", "distances", "blend", "disk_alpha", "ring_alpha",
           "jitter_color", "lesion_geometry", "place_disk", "Canvas", "bezier"]

Array = np.ndarray


def as_rng(rng: Any, name: str = "rng") -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        if rng < 0:
            raise ValueError(f"{name} must be a non-negative int seed or np.random.Generator; got {rng}")
        return np.random.default_rng(int(rng))
    raise ValueError(f"{name} must be an int seed or a numpy.random.Generator; got {type(rng).__name__}")


@lru_cache(maxsize=32)
def pixel_grid(h: int, w: int) -> tuple[Array, Array]:
    """Pixel-centre coordinates (yy, xx) as read-only float32 (H,W) arrays."""
    yy, xx = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
    yy.setflags(write=False)
    xx.setflags(write=False)
    return yy, xx


def disk_box(cy: float, cx: float, r: float, h: int, w: int) -> tuple[slice, slice]:
    """The pixel box that can be touched by a disk of radius ``r`` (plus antialiasing) at (cy, cx)."""
    y0 = max(0, int(np.floor(cy - r - 2)))
    y1 = min(h, int(np.ceil(cy + r + 3)))
    x0 = max(0, int(np.floor(cx - r - 2)))
    x1 = min(w, int(np.ceil(cx + r + 3)))
    return slice(y0, max(y0, y1)), slice(x0, max(x0, x1))


def distances(cy: float, cx: float, ys: slice, xs: slice, h: int, w: int) -> Array:
    yy, xx = pixel_grid(h, w)
    return np.sqrt((yy[ys, xs] - cy) ** 2 + (xx[ys, xs] - cx) ** 2)


def blend(img: Array, alpha: Array, color: Any, ys: slice = slice(None), xs: slice = slice(None)) -> None:
    """In place: ``img[:, ys, xs] = img*(1-alpha) + color*alpha`` where ``alpha > 0``.

    ``color`` is an RGB triple or a (3,h,w) array for the box. Pixels with alpha 0 keep their
    exact bytes.
    """
    region = img[:, ys, xs]
    on = alpha > 0
    rows, cols = np.flatnonzero(on.any(axis=1)), np.flatnonzero(on.any(axis=0))
    if len(rows) == 0:
        return
    cy, cx = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
    region, on, a = region[:, cy, cx], on[cy, cx], alpha[cy, cx].astype(np.float32, copy=False)
    col = np.asarray(color, dtype=np.float32)
    col = col[:, None, None] if col.ndim == 1 else col[:, cy, cx]
    mixed = region * (1.0 - a) + col * a
    np.clip(mixed, 0.0, 1.0, out=mixed)
    np.copyto(region, mixed, where=on[None])


def disk_alpha(d: Array, r: float) -> Array:
    """Antialiased coverage of a disk of radius ``r`` given distances ``d`` to its centre."""
    return np.clip(r + 0.5 - d, 0.0, 1.0)


def ring_alpha(d: Array, r: float, width: float) -> Array:
    return np.clip(width / 2 + 0.5 - np.abs(d - r), 0.0, 1.0)


def jitter_color(rng: np.random.Generator, color: Any, amount: float) -> Array:
    c = np.asarray(color, dtype=np.float32) + rng.uniform(-amount, amount, 3).astype(np.float32)
    return np.clip(c, 0.0, 1.0)


def lesion_geometry(lesion_mask: Array | None, h: int, w: int, rng: np.random.Generator) -> tuple[float, float, float]:
    """Centroid (y, x) and equivalent radius of the lesion; a plausible guess without a mask."""
    s = min(h, w)
    if lesion_mask is not None and lesion_mask.any():
        ys, xs = np.nonzero(lesion_mask)
        return float(ys.mean()), float(xs.mean()), float(np.sqrt(len(ys) / np.pi))
    return (h / 2 + rng.uniform(-0.05, 0.05) * s, w / 2 + rng.uniform(-0.05, 0.05) * s, 0.2 * s)


def place_disk(
    rng: np.random.Generator, h: int, w: int, r: float, lesion_mask: Array | None, margin: float = 0.0, tries: int = 25
) -> tuple[float, float]:
    """A centre for a disk of radius ``r`` inside the image, avoiding the lesion when possible."""
    lo_y, hi_y = r + margin, h - r - margin
    lo_x, hi_x = r + margin, w - r - margin
    if hi_y <= lo_y:
        lo_y = hi_y = h / 2
    if hi_x <= lo_x:
        lo_x = hi_x = w / 2
    best, best_overlap = None, None
    for _ in range(tries):
        cy, cx = rng.uniform(lo_y, hi_y), rng.uniform(lo_x, hi_x)
        if lesion_mask is None:
            return cy, cx
        ys, xs = disk_box(cy, cx, r, h, w)
        inside = distances(cy, cx, ys, xs, h, w) <= r + 1
        overlap = int((lesion_mask[ys, xs] & inside).sum())
        if overlap == 0:
            return cy, cx
        if best_overlap is None or overlap < best_overlap:
            best, best_overlap = (cy, cx), overlap
    return best  # type: ignore[return-value]


class Canvas:
    """A supersampled greyscale PIL canvas whose coverage becomes an antialiased alpha map."""

    def __init__(self, h: int, w: int, ss: int | None = None):
        self.h, self.w = h, w
        self.ss = ss if ss is not None else (4 if max(h, w) <= 128 else 2)
        self.im = Image.new("L", (w * self.ss, h * self.ss), 0)
        self.draw = ImageDraw.Draw(self.im)

    def pts(self, ys: Array, xs: Array) -> list[tuple[float, float]]:
        f = self.ss
        return [(float(x) * f + f / 2, float(y) * f + f / 2) for y, x in zip(ys, xs)]

    def alpha(self) -> Array:
        im = self.im.reduce(self.ss) if self.ss > 1 else self.im
        return np.asarray(im, dtype=np.float32) / 255.0


def bezier(p0: Array, p1: Array, p2: Array, n: int) -> Array:
    """``n`` points of the quadratic Bezier curve from ``p0`` to ``p2`` with control point ``p1``."""
    t = np.linspace(0.0, 1.0, n, dtype=np.float32)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2
