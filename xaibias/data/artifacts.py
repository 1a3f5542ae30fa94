"""Artifact painters: the acquisition artifacts that create dataset bias in dermoscopy.

Each painter draws one artifact onto one image and returns the new image together with the
**exact** boolean mask of the pixels it drew: outside the mask the returned image is bit-identical
to the input, inside it the artifact was blended in. The same painters generate the synthetic
datasets (:class:`xaibias.data.SyntheticLesions`), insert artifacts counterfactually into any
batch (:func:`insert_artifact`, GEBI bias insertion) and serve as augmentation, so an artifact looks
the same wherever it appears.

Artifacts (:data:`ARTIFACTS`)
-----------------------------
``frame``
    Black microscope vignette. ``style="circle"`` (default): everything outside a circle of random
    radius (0.40-0.52 of the short side) and small random offset goes dark, with a soft ramp of a
    few pixels that is still exactly masked. ``style="square"``: a black border of random width on
    the four sides.
``ruler``
    A translucent light scale along one random edge with dark tick marks (longer every 5th and
    10th tick) and, from 96 px up, numbers drawn with PIL's default font. Scales with image size.
``ink``
    Purple/blue surgical-marker strokes and dots, placed around the lesion when ``lesion_mask`` is
    given. ``color=(r, g, b)`` overrides the marker colour (for example a brown, pigment-like
    colour to make ink harder to tell from the lesion).
``hair``
    Thin dark curves (quadratic Bezier curves) crossing the image.
``bubble``
    Gel bubbles: circles with a bright rim, a faint bright interior and a specular highlight.
``red_circle``
    A red ring sticker, as pasted in the GEBI insertion experiment (Mikolajczyk et al. 2021).
``patch``
    A coloured round sticker (yellow, green, blue, pink, orange or white); ``size=`` scales its
    radius (default 1.0; a small image may need a larger sticker for a model to notice it).

Every painter takes ``rng`` (a :class:`numpy.random.Generator` or an int seed), so the same seed
gives the same artifact. Painters accept their own keyword parameters (listed in each painter's
docstring and in :data:`PAINTER_PARAMS`); an unknown parameter raises ``ValueError``.

The ISIC "gel border" artifact (Bissoto et al. 2020) has no painter: it is a faint, irregular
brightening at the edge of the gel drop that a small synthetic image cannot show convincingly.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import ImageFont

from .._checks import as_images, as_masks, describe
from .drawing import (
    Canvas,
    as_rng,
    bezier,
    blend,
    disk_alpha,
    disk_box,
    distances,
    jitter_color,
    lesion_geometry,
    pixel_grid,
    place_disk,
    ring_alpha,
)

__all__ = ["ARTIFACTS", "PAINTER_PARAMS", "paint_artifact", "insert_artifact"]

ARTIFACTS: tuple[str, ...] = ("frame", "ruler", "ink", "hair", "bubble", "red_circle", "patch")

Array = np.ndarray


# ----------------------------------------------------------------------------------------------
# painters: each takes (img (3,H,W) float32 numpy, modified in place, rng, lesion_mask or None,
# **params) and returns the bool (H,W) mask of the pixels it drew.
# ----------------------------------------------------------------------------------------------
def _paint_frame(
    img: Array,
    rng: np.random.Generator,
    lesion_mask: Array | None,
    style: str = "circle",
    radius: float | None = None,
    softness: float | None = None,
    offset: tuple[float, float] | None = None,
    width: float | None = None,
    color: Any = None,
) -> Array:
    """Black microscope vignette.

    Parameters
    ----------
    style : "circle" (default) or "square"
    radius : circle radius as a fraction of the short side (default: uniform 0.40-0.52)
    softness : width of the dark ramp as a fraction of the short side (default: uniform 0.02-0.06)
    offset : (dy, dx) centre offset as fractions of the short side (default: uniform +-0.04)
    width : square border width as a fraction of the short side (default: uniform 0.04-0.09 per side)
    color : RGB of the dark surround (default: near-black)
    """
    _, h, w = img.shape
    s = min(h, w)
    col = jitter_color(rng, (0.02, 0.02, 0.02), 0.02) if color is None else np.asarray(color, np.float32)
    if style == "circle":
        r = (rng.uniform(0.40, 0.52) if radius is None else float(radius)) * s
        soft = max(1.0, (rng.uniform(0.02, 0.06) if softness is None else float(softness)) * s)
        off = rng.uniform(-0.04, 0.04, 2) * s if offset is None else np.asarray(offset, np.float32) * s
        cy, cx = h / 2 - 0.5 + off[0], w / 2 - 0.5 + off[1]
        d = distances(cy, cx, slice(None), slice(None), h, w)
        alpha = np.clip((d - r) / soft, 0.0, 1.0)
        alpha = alpha * (2.0 - alpha)  # ramps quickly to fully dark
    elif style == "square":
        if width is None:
            bw = np.maximum(1, np.round(rng.uniform(0.04, 0.09, 4) * s)).astype(int)
        else:
            bw = np.full(4, max(1, int(round(float(width) * s))))
        alpha = np.zeros((h, w), np.float32)
        alpha[: bw[0]] = 1
        alpha[h - bw[1] :] = 1
        alpha[:, : bw[2]] = 1
        alpha[:, w - bw[3] :] = 1
    else:
        raise ValueError(f"frame style must be 'circle' or 'square'; got {style!r}")
    alpha = alpha.astype(np.float32)
    blend(img, alpha, col)
    return alpha > 0


def _paint_ruler(
    img: Array,
    rng: np.random.Generator,
    lesion_mask: Array | None,
    edge: str | None = None,
    numbers: bool | None = None,
    color: Any = None,
) -> Array:
    """Ruler: a translucent light scale with dark ticks (and numbers from 96 px) along one edge.

    Parameters
    ----------
    edge : "top", "left", "bottom" or "right" (default: random)
    numbers : draw numbers at every 10th tick (default: when the short side is at least 96 px)
    color : RGB of the tick marks (default: near-black)
    """
    _, h, w = img.shape
    edges = ("top", "left", "bottom", "right")
    if edge is None:
        k = int(rng.integers(4))
    elif edge in edges:
        k = edges.index(edge)
    else:
        raise ValueError(f"ruler edge must be one of {edges}; got {edge!r}")
    # draw as if along the top edge of a canvas (ch, cw), then rotate by k*90 degrees
    ch, cw = (h, w) if k % 2 == 0 else (w, h)
    s = min(h, w)
    thick = max(5.0, rng.uniform(0.10, 0.15) * s)
    gap = rng.uniform(0.0, 0.03) * s
    length = rng.uniform(0.55, 1.0) * cw
    x0 = rng.uniform(0, cw - length)
    spacing = max(3.0, s / rng.uniform(14, 20))
    if numbers is None:
        numbers = s >= 96
    ss = 4 if s <= 128 else 2
    band = Canvas(ch, cw, ss)
    ticks = Canvas(ch, cw, ss)
    f = ss
    band.draw.rectangle([x0 * f, gap * f, (x0 + length) * f, (gap + thick) * f], fill=255)
    tick_w = max(1, int(round(f * max(1.0, s / 160))))
    font = None
    if numbers:
        font = ImageFont.load_default(size=max(6, int(0.42 * thick * f)))
    i, x = 0, x0 + spacing * rng.uniform(0.3, 1.0)
    while x < x0 + length - 1:
        frac = 0.85 if i % 10 == 0 else (0.6 if i % 5 == 0 else 0.35)
        ticks.draw.rectangle([x * f, gap * f, x * f + tick_w - 1, (gap + frac * thick) * f], fill=255)
        if font is not None and i % 10 == 0:
            ticks.draw.text((x * f + tick_w + 1, (gap + 0.5 * thick) * f), str(i // 10), fill=255, font=font)
        i += 1
        x += spacing
    a_band = np.rot90(band.alpha(), k) * rng.uniform(0.7, 0.9)
    a_tick = np.rot90(ticks.alpha(), k) * rng.uniform(0.85, 1.0)
    band_col = jitter_color(rng, (0.9, 0.9, 0.86), 0.05)
    tick_col = jitter_color(rng, (0.08, 0.08, 0.1), 0.06) if color is None else np.asarray(color, np.float32)
    a_band = np.ascontiguousarray(a_band, dtype=np.float32)
    a_tick = np.ascontiguousarray(a_tick, dtype=np.float32)
    blend(img, a_band, band_col)
    blend(img, a_tick, tick_col)
    return (a_band > 0) | (a_tick > 0)


_INK_COLORS = ((0.42, 0.18, 0.58), (0.32, 0.12, 0.5), (0.18, 0.2, 0.55), (0.25, 0.28, 0.65), (0.5, 0.25, 0.62))


def _paint_ink(
    img: Array,
    rng: np.random.Generator,
    lesion_mask: Array | None,
    color: Any = None,
    n_strokes: int | None = None,
    n_dots: int | None = None,
    width: float | None = None,
) -> Array:
    """Surgical-marker ink: strokes and dots around the lesion.

    Parameters
    ----------
    color : RGB triple of the ink (default: a random purple/blue marker colour)
    n_strokes : number of strokes (default: 1-3)
    n_dots : number of dots (default: 0-4)
    width : stroke width as a fraction of the short side (default: uniform 0.015-0.03)
    """
    _, h, w = img.shape
    s = min(h, w)
    cy, cx, rl = lesion_geometry(lesion_mask, h, w, rng)
    col = _INK_COLORS[int(rng.integers(len(_INK_COLORS)))] if color is None else color
    col = jitter_color(rng, col, 0.04) if color is None else np.asarray(color, np.float32)
    ns = int(rng.integers(1, 4)) if n_strokes is None else int(n_strokes)
    nd = int(rng.integers(0, 5)) if n_dots is None else int(n_dots)
    lw = max(1.5, (rng.uniform(0.015, 0.03) if width is None else float(width)) * s)
    cv = Canvas(h, w)
    f = cv.ss
    for _ in range(ns):
        theta = rng.uniform(0, 2 * np.pi)
        dist = rl + rng.uniform(0.05, 0.15) * s
        half = rng.uniform(0.2, 0.6)  # angular half length of the arc-like stroke
        angles = theta + np.array([-half, 0.0, half]) * rng.uniform(0.7, 1.3, 3)
        radii = dist * rng.uniform(0.85, 1.15, 3)
        p = np.stack([cy + radii * np.sin(angles), cx + radii * np.cos(angles)], axis=1)
        curve = bezier(p[0], p[1], p[2], 12)
        cv.draw.line(cv.pts(curve[:, 0], curve[:, 1]), fill=255, width=max(1, int(round(lw * f))), joint="curve")
    for _ in range(nd):
        theta = rng.uniform(0, 2 * np.pi)
        dist = rl + rng.uniform(0.04, 0.2) * s
        y, x = cy + dist * np.sin(theta), cx + dist * np.cos(theta)
        r = max(0.8, rng.uniform(0.6, 1.2) * lw)
        (px, py), = cv.pts([y], [x])
        cv.draw.ellipse([px - r * f, py - r * f, px + r * f, py + r * f], fill=255)
    alpha = cv.alpha() * rng.uniform(0.75, 0.95)
    blend(img, alpha, col)
    return alpha > 0


def _paint_hair(
    img: Array,
    rng: np.random.Generator,
    lesion_mask: Array | None,
    n: int | None = None,
    width: float | None = None,
    color: Any = None,
) -> Array:
    """Hair: thin dark curves.

    Parameters
    ----------
    n : number of hairs (default: 1-5)
    width : hair width in pixels (default: short side times uniform 0.004-0.009, at least 0.8)
    color : RGB of the hair (default: near-black brown)
    """
    _, h, w = img.shape
    s = min(h, w)
    nh = int(rng.integers(1, 6)) if n is None else int(n)
    cv = Canvas(h, w)
    f = cv.ss
    for _ in range(nh):
        lw = float(width) if width is not None else max(0.8, rng.uniform(0.004, 0.009) * s)
        p0 = np.array([rng.uniform(0, h), rng.uniform(0, w)], np.float32)
        ang = rng.uniform(0, 2 * np.pi)
        length = rng.uniform(0.4, 1.2) * s
        p2 = p0 + length * np.array([np.sin(ang), np.cos(ang)], np.float32)
        bend = rng.uniform(-0.3, 0.3) * length
        p1 = (p0 + p2) / 2 + bend * np.array([np.cos(ang), -np.sin(ang)], np.float32)
        curve = bezier(p0, p1, p2, max(8, int(length / 4)))
        cv.draw.line(cv.pts(curve[:, 0], curve[:, 1]), fill=255, width=max(1, int(round(lw * f))), joint="curve")
    alpha = cv.alpha() * rng.uniform(0.8, 0.95)
    col = jitter_color(rng, (0.1, 0.07, 0.05), 0.05) if color is None else np.asarray(color, np.float32)
    blend(img, alpha, col)
    return alpha > 0


def _paint_bubble(
    img: Array,
    rng: np.random.Generator,
    lesion_mask: Array | None,
    n: int | None = None,
    radius: float | None = None,
) -> Array:
    """Gel bubbles: bright rims, a faint bright interior and a specular highlight.

    Parameters
    ----------
    n : number of bubbles (default: 1-4)
    radius : bubble radius as a fraction of the short side (default: uniform 0.03-0.12 each)
    """
    _, h, w = img.shape
    s = min(h, w)
    nb = int(rng.integers(1, 5)) if n is None else int(n)
    mask = np.zeros((h, w), bool)
    white = np.ones(3, np.float32)
    for _ in range(nb):
        r = max(2.0, (rng.uniform(0.03, 0.12) if radius is None else float(radius)) * s)
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ys, xs = disk_box(cy, cx, r, h, w)
        d = distances(cy, cx, ys, xs, h, w)
        rim_w = max(0.8, 0.14 * r)
        a_in = disk_alpha(d, r) * rng.uniform(0.08, 0.18)
        a_rim = ring_alpha(d, r - rim_w / 2, rim_w) * rng.uniform(0.6, 0.85)
        hr = max(0.6, 0.18 * r)
        hd = np.sqrt((pixel_grid(h, w)[0][ys, xs] - (cy - 0.45 * r)) ** 2 + (pixel_grid(h, w)[1][ys, xs] - (cx - 0.45 * r)) ** 2)
        a_hi = disk_alpha(hd, hr) * 0.9
        for a in (a_in, a_rim, a_hi):
            a = a.astype(np.float32)
            blend(img, a, white, ys, xs)
            mask[ys, xs] |= a > 0
    return mask


def _paint_red_circle(
    img: Array,
    rng: np.random.Generator,
    lesion_mask: Array | None,
    radius: float | None = None,
    thickness: float | None = None,
    color: Any = None,
) -> Array:
    """Red ring sticker (GEBI bias insertion), placed away from the lesion when possible.

    Parameters
    ----------
    radius : outer radius as a fraction of the short side (default: uniform 0.06-0.10)
    thickness : ring thickness as a fraction of the radius (default: uniform 0.25-0.35)
    color : RGB (default: red)
    """
    _, h, w = img.shape
    s = min(h, w)
    r = max(3.0, (rng.uniform(0.06, 0.10) if radius is None else float(radius)) * s)
    t = max(1.5, (rng.uniform(0.25, 0.35) if thickness is None else float(thickness)) * r)
    cy, cx = place_disk(rng, h, w, r, lesion_mask, margin=1.0)
    ys, xs = disk_box(cy, cx, r, h, w)
    d = distances(cy, cx, ys, xs, h, w)
    alpha = ring_alpha(d, r - t / 2, t).astype(np.float32)
    col = jitter_color(rng, (0.88, 0.1, 0.12), 0.05) if color is None else np.asarray(color, np.float32)
    blend(img, alpha, col, ys, xs)
    mask = np.zeros((h, w), bool)
    mask[ys, xs] = alpha > 0
    return mask


_PATCH_COLORS = ((0.95, 0.85, 0.2), (0.3, 0.75, 0.35), (0.3, 0.55, 0.9), (0.95, 0.5, 0.7), (0.95, 0.6, 0.2), (0.96, 0.96, 0.96))


def _paint_patch(
    img: Array,
    rng: np.random.Generator,
    lesion_mask: Array | None,
    radius: float | None = None,
    color: Any = None,
    size: float = 1.0,
) -> Array:
    """Coloured round sticker with a slightly darker rim, placed away from the lesion when possible.

    Parameters
    ----------
    radius : radius as a fraction of the short side (default: uniform 0.06-0.12)
    color : RGB (default: one of yellow, green, blue, pink, orange, white)
    size : scale factor of the radius (default 1.0: the sizes above). At 32 px the default sticker
        is 5-8 px across, ``size=2.0`` makes it 8-15 px across; the radius is never below 2.5 px
    """
    if isinstance(size, bool) or not isinstance(size, (int, float, np.integer, np.floating)) or not 0 < size <= 4:
        raise ValueError(f"patch size must be a number in (0, 4] (a scale factor of the radius); got {size!r}")
    _, h, w = img.shape
    s = min(h, w)
    r = max(2.5, (rng.uniform(0.06, 0.12) if radius is None else float(radius)) * float(size) * s)
    cy, cx = place_disk(rng, h, w, r, lesion_mask, margin=0.0)
    ys, xs = disk_box(cy, cx, r, h, w)
    d = distances(cy, cx, ys, xs, h, w)
    base = _PATCH_COLORS[int(rng.integers(len(_PATCH_COLORS)))] if color is None else color
    base = jitter_color(rng, base, 0.04) if color is None else np.asarray(color, np.float32)
    shade = 1.0 - 0.25 * np.clip(d / r, 0, 1) ** 3  # darker towards the rim
    col = np.clip(base[:, None, None] * shade[None].astype(np.float32), 0, 1)
    alpha = (disk_alpha(d, r) * 0.97).astype(np.float32)
    blend(img, alpha, col, ys, xs)
    mask = np.zeros((h, w), bool)
    mask[ys, xs] = alpha > 0
    return mask


_PAINTERS: dict[str, Callable[..., Array]] = {
    "frame": _paint_frame,
    "ruler": _paint_ruler,
    "ink": _paint_ink,
    "hair": _paint_hair,
    "bubble": _paint_bubble,
    "red_circle": _paint_red_circle,
    "patch": _paint_patch,
}

#: The keyword parameters each painter accepts (all optional).
PAINTER_PARAMS: dict[str, tuple[str, ...]] = {
    name: tuple(list(inspect.signature(fn).parameters)[3:]) for name, fn in _PAINTERS.items()
}


def _check_name(name: Any) -> str:
    if name not in _PAINTERS:
        raise ValueError(f"unknown artifact {name!r}; valid names are {', '.join(ARTIFACTS)}")
    return name


def _check_params(name: str, params: dict[str, Any]) -> None:
    bad = sorted(set(params) - set(PAINTER_PARAMS[name]))
    if bad:
        raise ValueError(
            f"unknown parameter(s) {bad} for artifact {name!r}; it accepts {list(PAINTER_PARAMS[name])}"
        )


def paint_np(img: Array, name: str, rng: np.random.Generator, lesion_mask: Array | None, params: dict) -> Array:
    """Paint onto a float32 (3,H,W) numpy array in place; return the bool (H,W) mask."""
    mask = _PAINTERS[name](img, rng, lesion_mask, **params)
    return np.ascontiguousarray(mask, dtype=bool)


def paint_artifact(
    image: torch.Tensor | np.ndarray,
    name: str,
    rng: np.random.Generator | int,
    lesion_mask: torch.Tensor | np.ndarray | None = None,
    **params: Any,
) -> tuple[torch.Tensor | np.ndarray, torch.Tensor | np.ndarray]:
    """Paint one artifact onto one image.

    Parameters
    ----------
    image : float (3,H,W) tensor or array with values in [0,1]
    name : one of :data:`ARTIFACTS`
    rng : numpy Generator or int seed; the same seed gives the same artifact
    lesion_mask : optional bool (H,W); ``ink`` is placed around it, ``red_circle`` and ``patch``
        avoid it
    **params : painter-specific parameters (see :data:`PAINTER_PARAMS` and the module docstring)

    Returns
    -------
    (image, mask) : the new float32 image (same type as the input: tensor or array) and the
        bool (H,W) mask of the pixels the painter drew. Outside the mask the image is bit-identical
        to the input.
    """
    _check_name(name)
    _check_params(name, params)
    is_np = isinstance(image, np.ndarray)
    if getattr(image, "ndim", None) != 3:
        raise ValueError(
            f"image must be one float (3,H,W) image (use insert_artifact for a batch); got {describe(image)}"
        )
    t = as_images(image, name="image", allow_single=True)[0]
    img = t.detach().cpu().numpy().astype(np.float32, copy=True)
    lm = None
    if lesion_mask is not None:
        lmt = as_masks(lesion_mask[None] if getattr(lesion_mask, "ndim", 0) == 2 else lesion_mask, name="lesion_mask")
        if lmt.shape[0] != 1 or tuple(lmt.shape[1:]) != img.shape[1:]:
            raise ValueError(f"lesion_mask must be bool (H,W) = {img.shape[1:]}; got {describe(lesion_mask)}")
        lm = lmt[0].cpu().numpy()
    mask = paint_np(img, name, as_rng(rng), lm, params)
    if is_np:
        return img, mask
    return torch.from_numpy(img), torch.from_numpy(mask)


def insert_artifact(
    images: torch.Tensor | np.ndarray,
    name: str,
    seed: int = 0,
    p: float = 1.0,
    lesion_masks: torch.Tensor | np.ndarray | None = None,
    **params: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Insert one artifact into a batch of images (counterfactual insertion, augmentation).

    Image ``i`` gets the artifact with probability ``p``; the draw and the artifact's randomness
    come from ``np.random.default_rng([seed, i])``, so the result is deterministic and the artifact
    of image ``i`` does not depend on the other images.

    Parameters
    ----------
    images : float (N,3,H,W) in [0,1]
    name : one of :data:`ARTIFACTS`
    seed : non-negative int
    p : probability in [0,1] that an image gets the artifact
    lesion_masks : optional bool (N,H,W) (see :func:`paint_artifact`)
    **params : painter parameters

    Returns
    -------
    (images, masks) : float32 (N,3,H,W) tensor and bool (N,H,W) tensor; masks are all-False and
        images bit-identical where the artifact was not inserted.
    """
    _check_name(name)
    _check_params(name, params)
    if not isinstance(p, (int, float, np.floating, np.integer)) or isinstance(p, bool) or not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"p must be a probability in [0,1]; got {p!r}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int; got {seed!r}")
    t = as_images(images)
    n, _, h, w = t.shape
    lms = None
    if lesion_masks is not None:
        lmt = as_masks(lesion_masks, name="lesion_masks")
        if tuple(lmt.shape) != (n, h, w):
            raise ValueError(f"lesion_masks must be bool (N,H,W) = {(n, h, w)}; got {describe(lesion_masks)}")
        lms = lmt.cpu().numpy()
    out = t.detach().cpu().numpy().astype(np.float32, copy=True)
    masks = np.zeros((n, h, w), bool)
    for i in range(n):
        rng = np.random.default_rng([int(seed), i])
        if rng.random() >= p:
            continue
        masks[i] = paint_np(out[i], name, rng, None if lms is None else lms[i], params)
    return torch.from_numpy(out), torch.from_numpy(masks)
