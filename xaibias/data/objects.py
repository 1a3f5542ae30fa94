"""Synthetic object- and background-bias datasets with pixel-exact ground truth (Schaaf et al. 2021).

Schaaf et al., *Towards measuring bias in image classification* (2021), measure whether attribution
maps reveal a bias that was built into the training data on purpose. Their data are not public, so
:class:`SyntheticObjects` draws procedural stand-ins offline, fully vectorised in torch:

``kind="object"`` (object bias)
    Two animal-like classes, ``"cat"`` (pointed ears, tabby stripes, long raised tail) and
    ``"dog"`` (hanging ears, snout, patchy spots), in the same fur colours, posed at random on
    natural-looking backgrounds (meadow, sky over a horizon, sand, forest). In the biased set every
    dog image also shows a ball, at a random position that never touches the animal; cats never
    do. In the unbiased set every image shows a ball with probability 0.5 whatever its class.
    Masks: ``"object"`` (the animal) and ``"ball"`` (all False where there is no ball).

``kind="background"`` (background bias)
    Five fruit-like classes (apple, banana, orange, pear, grapes: shapes with class colours and
    textures, overlapping colour ranges for apple and orange) on five background types (apple
    tree foliage, sky, wooden table, grass, checked cloth). In the biased set every apple lies on
    apple-tree foliage and no other fruit does ("apple on apple trees"); the other fruits are spread
    evenly over the other four backgrounds. In the unbiased set the background is drawn uniformly
    for every image, independent of the class. Masks: ``"object"`` and ``"background"`` (its
    complement).

The same ``n``, ``size``, ``kind`` and ``seed`` with ``biased=True`` and ``biased=False`` give
*matching* sets: the same labels, animals/fruits, poses, textures and ball positions; only whether
the ball is drawn (object kind) or which background type is drawn (background kind) differs. An
accuracy difference between the two sets is therefore caused by the bias alone.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .._checks import check_int
from ._base import ArrayDataset

__all__ = ["SyntheticObjects", "OBJECT_CLASSES", "FRUIT_CLASSES", "OBJECT_BACKGROUNDS", "FRUIT_BACKGROUNDS"]

GENERATOR_VERSION = 1
#: classes of ``kind="object"``; the ball goes with :data:`OBJECT_CLASSES` [1] ("dog") when biased
OBJECT_CLASSES = ("cat", "dog")
#: background types of ``kind="object"`` (independent of the class in both sets)
OBJECT_BACKGROUNDS = ("meadow", "sky", "sand", "forest")
#: classes of ``kind="background"``; the first ("apple") is tied to the first background when biased
FRUIT_CLASSES = ("apple", "banana", "orange", "pear", "grapes")
#: background types of ``kind="background"``
FRUIT_BACKGROUNDS = ("tree", "sky", "table", "grass", "cloth")

_CHUNK = 256  # images generated per block; fixed so that results do not depend on memory
_KIND_ID = {"object": 1, "background": 2}


def _gen(*key: int) -> torch.Generator:
    state = np.random.SeedSequence([int(k) for k in key]).generate_state(2, dtype=np.uint64)
    return torch.Generator().manual_seed(int(state[0] % (2**63 - 1)))


def _u(gen: torch.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
    """n uniform draws in [lo, hi) shaped (n,1,1) for broadcasting over (n,H,W)."""
    return (lo + (hi - lo) * torch.rand(n, generator=gen)).view(n, 1, 1)


def _smooth(gen: torch.Generator, n: int, size: int, grid: int | tuple[int, int], channels: int = 1,
            sel: torch.Tensor | None = None) -> torch.Tensor:
    """Smooth noise, (n, channels, size, size): uniform noise on a coarse grid, upsampled bilinearly.

    ``sel`` (bool (n,)) upsamples only the selected images (the draw still covers all n, so the
    random stream does not depend on the selection) and returns (sel.sum(), channels, size, size).
    """
    gh, gw = (grid, grid) if isinstance(grid, int) else grid
    low = torch.rand(n, channels, gh, gw, generator=gen)
    if sel is not None:
        low = low[sel]
    return F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)


def _rgb(*c: float) -> torch.Tensor:
    return torch.tensor(c, dtype=torch.float32).view(1, 3, 1, 1)


def _mix(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Blend colours/images a -> b by t (broadcast; t (n,1,H,W) or (n,1,1,1))."""
    return a + (b - a) * t


def _ellipse(x, y, cx, cy, ax, ay, theta=None) -> torch.Tensor:
    dx, dy = x - cx, y - cy
    if theta is not None:
        c, s = torch.cos(theta), torch.sin(theta)
        dx, dy = c * dx + s * dy, -s * dx + c * dy
    return (dx / ax) ** 2 + (dy / ay) ** 2 <= 1.0


def _triangle(x, y, p1, p2, p3) -> torch.Tensor:
    def edge(a, b):
        return (x - b[0]) * (a[1] - b[1]) - (a[0] - b[0]) * (y - b[1])

    d1, d2, d3 = edge(p1, p2), edge(p2, p3), edge(p3, p1)
    neg = (d1 < 0) | (d2 < 0) | (d3 < 0)
    pos = (d1 > 0) | (d2 > 0) | (d3 > 0)
    return ~(neg & pos)


def _rect(x, y, x0, x1, y0, y1) -> torch.Tensor:
    return (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)


# ------------------------------------------------------------------------------------ backgrounds
# Each painter draws its random numbers for all n images (so the random stream does not depend on
# which images get which background type) and paints only the images selected by ``sel``.


def _param(gen, n, lo, hi, sel):
    return _u(gen, n, lo, hi)[sel].unsqueeze(1)


def _bg_meadow(gen, n, size, y, x, sel):
    var = _smooth(gen, n, size, 5, sel=sel)
    blades = _smooth(gen, n, size, (max(4, size // 6), max(8, size // 2)), sel=sel)
    base = _mix(_rgb(0.25, 0.5, 0.15), _rgb(0.55, 0.65, 0.25), var)
    return base * (0.75 + 0.45 * blades)


def _bg_sky(gen, n, size, y, x, sel):
    clouds = _smooth(gen, n, size, 5, sel=sel)
    horizon = _param(gen, n, 0.72, 0.86, sel)
    ground_var = _smooth(gen, n, size, 8, sel=sel)
    yy = y.unsqueeze(1)
    sky = _mix(_rgb(0.35, 0.55, 0.9), _rgb(0.75, 0.85, 0.97), yy)
    sky = _mix(sky, _rgb(0.97, 0.97, 0.97), ((clouds - 0.55) * 4).clamp(0, 1))
    ground = _mix(_rgb(0.35, 0.45, 0.2), _rgb(0.5, 0.45, 0.3), ground_var)
    return torch.where(yy > horizon, ground, sky)


def _bg_sand(gen, n, size, y, x, sel):
    dunes = _smooth(gen, n, size, 3, sel=sel)
    grain = _smooth(gen, n, size, size, sel=sel)
    base = _mix(_rgb(0.78, 0.66, 0.45), _rgb(0.92, 0.83, 0.62), dunes)
    return base + 0.08 * (grain - 0.5)


def _bg_forest(gen, n, size, y, x, sel):
    leaves = _smooth(gen, n, size, 10, sel=sel)
    freq = _param(gen, n, 3.0, 6.0, sel)
    phase = _param(gen, n, 0.0, 6.3, sel)
    base = _mix(_rgb(0.06, 0.2, 0.07), _rgb(0.25, 0.45, 0.18), leaves)
    trunks = torch.sin(2 * math.pi * freq * x.unsqueeze(1) + phase) > 0.85
    return torch.where(trunks, _rgb(0.3, 0.2, 0.12) * (0.8 + 0.4 * leaves), base)


def _bg_tree(gen, n, size, y, x, sel):
    leaves = _smooth(gen, n, size, max(8, size // 4), sel=sel)
    light = _smooth(gen, n, size, 4, sel=sel)
    phase = _param(gen, n, 0.0, 6.3, sel)
    base = torch.where(leaves > 0.5, _rgb(0.12, 0.38, 0.1), _rgb(0.3, 0.58, 0.2)) * (0.8 + 0.4 * light)
    branch = torch.sin(2 * math.pi * 2.5 * (x.unsqueeze(1) + 0.6 * y.unsqueeze(1)) + phase).abs() < 0.12
    return torch.where(branch, _rgb(0.38, 0.26, 0.14), base)


def _bg_table(gen, n, size, y, x, sel):
    warp = _smooth(gen, n, size, 4, sel=sel)
    freq = _param(gen, n, 5.0, 9.0, sel)
    t = 0.5 + 0.5 * torch.sin(2 * math.pi * (freq * y.unsqueeze(1) + 0.6 * warp))
    return _mix(_rgb(0.5, 0.33, 0.18), _rgb(0.72, 0.52, 0.32), t)


def _bg_cloth(gen, n, size, y, x, sel):
    k = _param(gen, n, 4.0, 7.0, sel)
    hue = _param(gen, n, 0.0, 1.0, sel)
    shade = _smooth(gen, n, size, 3, sel=sel)
    check = ((torch.floor(x.unsqueeze(1) * k) + torch.floor(y.unsqueeze(1) * k)) % 2) == 0
    colour = _mix(_rgb(0.2, 0.3, 0.75), _rgb(0.2, 0.6, 0.6), hue)
    return torch.where(check, colour, _rgb(0.92, 0.92, 0.9)) * (0.85 + 0.2 * shade)


_BG = {
    "meadow": _bg_meadow, "sky": _bg_sky, "sand": _bg_sand, "forest": _bg_forest,
    "tree": _bg_tree, "table": _bg_table, "cloth": _bg_cloth, "grass": _bg_meadow,
}


def _backgrounds(names, types: torch.Tensor, gen, size, y, x) -> torch.Tensor:
    """Every image gets the background ``names[types[i]]``."""
    n = len(types)
    out = torch.empty(n, 3, size, size)
    for t, name in enumerate(names):
        sel = types == t
        img = _BG[name](gen, n, size, y, x, sel)
        if bool(sel.any()):
            out[sel] = img.expand(-1, 3, -1, -1).clamp(0, 1)
    return out


# ------------------------------------------------------------------------------------ animals


def _fur_colours(gen, n):
    palette = torch.tensor([[0.85, 0.55, 0.25], [0.55, 0.55, 0.55], [0.45, 0.3, 0.2], [0.9, 0.85, 0.7]])
    w = -torch.log(torch.rand(n, 4, generator=gen))  # Dirichlet(1,...) weights
    w = w / w.sum(1, keepdim=True)
    return (w @ palette).view(n, 3, 1, 1)


def _animals(labels: torch.Tensor, gen, size, y, x):
    """Cats (label 0) and dogs (label 1); returns colours (n,3,H,W) and the bool mask (n,H,W)."""
    n = len(labels)
    cx, cy = _u(gen, n, 0.4, 0.6), _u(gen, n, 0.44, 0.56)
    sc = _u(gen, n, 0.75, 1.0)
    f = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0).view(n, 1, 1)
    fur = _fur_colours(gen, n)
    dark = fur * 0.45
    stripe_f = _u(gen, n, 16.0, 22.0)
    stripe_a = _u(gen, n, -0.4, 0.4)
    spots = _smooth(gen, n, size, max(5, size // 8)).squeeze(1)
    spot_white = torch.rand(n, generator=gen).view(n, 1, 1) < 0.5
    shade = _smooth(gen, n, size, 6).squeeze(1)
    is_dog = (labels == 1).view(n, 1, 1)

    bx, by, bax, bay = cx, cy + 0.04 * sc, 0.19 * sc, 0.11 * sc
    body = _ellipse(x, y, bx, by, bax, bay)
    hx, hy, hr = cx + f * 0.19 * sc, cy - 0.07 * sc, 0.085 * sc
    head = _ellipse(x, y, hx, hy, hr, hr)
    legs = torch.zeros_like(body)
    for off in (-0.14, -0.06, 0.06, 0.14):
        lx = cx + off * sc
        legs |= _rect(x, y, lx - 0.018 * sc, lx + 0.018 * sc, by, by + bay + 0.09 * sc)
    # cat: pointed ears and a long raised tail
    ear1 = _triangle(x, y, (hx - 0.075 * sc, hy - 0.04 * sc), (hx - 0.01 * sc, hy - 0.06 * sc), (hx - 0.055 * sc, hy - 0.16 * sc))
    ear2 = _triangle(x, y, (hx + 0.075 * sc, hy - 0.04 * sc), (hx + 0.01 * sc, hy - 0.06 * sc), (hx + 0.055 * sc, hy - 0.16 * sc))
    cat_tail = _ellipse(x, y, cx - f * 0.22 * sc, cy - 0.07 * sc, 0.022 * sc, 0.11 * sc, theta=f * 0.45)
    # dog: hanging ears, snout, short tail
    dear1 = _ellipse(x, y, hx - 0.08 * sc, hy + 0.02 * sc, 0.03 * sc, 0.07 * sc)
    dear2 = _ellipse(x, y, hx + 0.08 * sc, hy + 0.02 * sc, 0.03 * sc, 0.07 * sc)
    snout = _ellipse(x, y, hx + f * 0.08 * sc, hy + 0.035 * sc, 0.065 * sc, 0.04 * sc)
    dog_tail = _ellipse(x, y, cx - f * 0.22 * sc, cy - 0.015 * sc, 0.07 * sc, 0.022 * sc, theta=-f * 0.6)
    eye = _ellipse(x, y, hx + f * 0.035 * sc, hy - 0.02 * sc, 0.016 * sc, 0.016 * sc)

    cat_mask = body | head | legs | ear1 | ear2 | cat_tail
    dog_mask = body | head | legs | snout | dog_tail | dear1 | dear2
    mask = torch.where(is_dog, dog_mask, cat_mask)

    u = (x - cx) * torch.cos(stripe_a) + (y - cy) * torch.sin(stripe_a)
    stripes = (torch.sin(2 * math.pi * stripe_f * u) > 0.3).unsqueeze(1)
    cat_col = torch.where(stripes, dark, fur)
    spot = (spots > 0.6).unsqueeze(1)
    spot_col = torch.where(spot_white.unsqueeze(1), _rgb(0.95, 0.93, 0.9).expand(n, -1, -1, -1), dark)
    dog_col = torch.where(spot, spot_col, fur)
    dog_col = torch.where((dear1 | dear2).unsqueeze(1), dark, dog_col)
    col = torch.where(is_dog.unsqueeze(1), dog_col, cat_col)
    col = col * (0.8 + 0.3 * shade.unsqueeze(1))
    col = torch.where(eye.unsqueeze(1), _rgb(0.05, 0.05, 0.05), col)
    return col, mask


def _ball(gen, n, size, y, x, forbidden: torch.Tensor):
    """A shaded ball per image at a random position whose disc (plus a 1 px gap) avoids ``forbidden``."""
    r_px = max(3, int(round(0.075 * size)))
    palette = torch.tensor([[0.9, 0.12, 0.12], [0.15, 0.35, 0.92], [0.95, 0.85, 0.1]])
    col = palette[torch.randint(0, 3, (n,), generator=gen)].view(n, 3, 1, 1)
    score = torch.rand(n, size, size, generator=gen)
    k = 2 * (r_px + 1) + 1
    near = forbidden.float().unsqueeze(1)  # square dilation, separable: rows then columns
    near = F.max_pool2d(near, (k, 1), stride=1, padding=(k // 2, 0))
    near = F.max_pool2d(near, (1, k), stride=1, padding=(0, k // 2)).squeeze(1) > 0
    inside = torch.zeros(size, size, dtype=torch.bool)
    inside[r_px : size - r_px, r_px : size - r_px] = True
    valid = ~near & inside
    none = ~valid.reshape(n, -1).any(1)
    if bool(none.any()):
        raise RuntimeError(f"no free place for the ball in image(s) {none.nonzero().flatten()[:10].tolist()}")
    pos = torch.where(valid, score, torch.full_like(score, -1.0)).reshape(n, -1).argmax(1)
    py = ((pos // size).float() + 0.5).view(n, 1, 1) / size
    px = ((pos % size).float() + 0.5).view(n, 1, 1) / size
    r = r_px / size
    d2 = ((x - px) ** 2 + (y - py) ** 2) / r**2
    mask = d2 <= 1.0
    light = torch.sqrt((1 - d2).clamp(min=0)).unsqueeze(1)
    hl = torch.exp(-(((x - px + 0.35 * r) ** 2 + (y - py + 0.35 * r) ** 2) / (0.3 * r) ** 2)).unsqueeze(1)
    colour = col * (0.55 + 0.45 * light) + hl * 0.6
    return colour.clamp(0, 1), mask


# ------------------------------------------------------------------------------------ fruits


def _fruits(labels: torch.Tensor, gen, size, y, x):
    """Apple, banana, orange, pear and grapes (labels 0..4): colours (n,3,H,W), mask (n,H,W)."""
    n = len(labels)
    cx, cy = _u(gen, n, 0.4, 0.6), _u(gen, n, 0.42, 0.58)
    r = _u(gen, n, 0.17, 0.23)
    th = _u(gen, n, -0.5, 0.5)
    c, s = torch.cos(th), torch.sin(th)
    dx, dy = x - cx, y - cy
    u, v = (c * dx + s * dy) / r, (-s * dx + c * dy) / r  # rotated coordinates in units of r
    z = torch.zeros_like(cx)
    tint = _u(gen, n, 0.0, 1.0).unsqueeze(1)
    grain = torch.rand(n, 1, size, size, generator=gen)
    blotch = _smooth(gen, n, size, 6)

    def disc(u0, v0, rad):
        return (u - u0) ** 2 + (v - v0) ** 2 <= rad**2

    stem = (u.abs() <= 0.06) & (v >= -1.3) & (v <= -0.8)
    leaf = _ellipse(u, v, z + 0.25, z - 1.08, z + 0.22, z + 0.09)
    # apple: round, notch at the top, stem and leaf
    apple = (disc(-0.22, 0.02, 0.82) | disc(0.22, 0.02, 0.82) | disc(0, 0.15, 0.85)) & ~disc(0, -0.98, 0.22)
    # orange: a disc with a small green calyx
    orange = disc(0, 0, 0.95)
    calyx = disc(0, -0.82, 0.1)
    # banana: crescent, the difference of two discs
    banana = disc(0, -0.45, 1.15) & ~disc(0, -0.95, 1.15) & (u.abs() <= 1.05)
    banana_tip = banana & (u.abs() > 0.88)
    # pear: big disc at the bottom, small at the top, joined
    pear = disc(0, 0.35, 0.68) | disc(0, -0.35, 0.42) | _ellipse(u, v, z, z, z + 0.5, z + 0.6)
    pear_stem = (u.abs() <= 0.05) & (v >= -1.05) & (v <= -0.7)
    # grapes: a triangular cluster of berries
    grapes = torch.zeros_like(apple)
    berry_rim = torch.zeros_like(apple)
    for gv, row in ((-0.6, (-0.6, -0.2, 0.2, 0.6)), (-0.2, (-0.4, 0.0, 0.4)), (0.2, (-0.2, 0.2)), (0.6, (0.0,))):
        for gu in row:
            d = (u - gu) ** 2 + (v - gv) ** 2
            grapes |= d <= 0.24**2
            berry_rim |= (d <= 0.24**2) & (d > 0.17**2)
    grape_stem = (u.abs() <= 0.05) & (v >= -1.05) & (v <= -0.75)

    lab = labels.view(n, 1, 1)
    masks = [apple | stem | leaf, banana, orange | calyx, pear | pear_stem, grapes | grape_stem]
    mask = torch.zeros_like(apple)
    for k, m in enumerate(masks):
        mask = torch.where(lab == k, m, mask)

    # colours; apple and orange share part of their hue range (red-orange), so shape matters
    apple_col = _mix(_rgb(0.78, 0.08, 0.08), _rgb(0.9, 0.42, 0.1), tint * 0.7)
    orange_col = _mix(_rgb(0.95, 0.58, 0.08), _rgb(0.88, 0.36, 0.08), tint * 0.7)
    banana_col = _mix(_rgb(0.95, 0.85, 0.2), _rgb(0.85, 0.9, 0.3), tint)
    pear_col = _mix(_rgb(0.6, 0.78, 0.2), _rgb(0.85, 0.8, 0.3), tint)
    grape_col = _mix(_rgb(0.4, 0.12, 0.45), _rgb(0.25, 0.1, 0.35), tint)
    rr = (u**2 + v**2).sqrt().unsqueeze(1)
    sphere = (1.05 - 0.35 * rr).clamp(0.6, 1.1)
    cols = [
        apple_col * sphere * (0.9 + 0.2 * blotch),
        banana_col * (0.9 + 0.15 * blotch),
        orange_col * sphere * (0.88 + 0.24 * grain),
        pear_col * sphere * (0.85 + 0.3 * blotch),
        grape_col * (1.0 + 0.25 * blotch),
    ]
    col = torch.zeros(n, 3, size, size)
    lab4 = lab.unsqueeze(1)
    for k, ck in enumerate(cols):
        col = torch.where(lab4 == k, ck.expand(n, -1, -1, -1), col)
    brown, green = _rgb(0.35, 0.22, 0.1), _rgb(0.2, 0.55, 0.15)
    col = torch.where(((lab == 0) & stem).unsqueeze(1), brown, col)
    col = torch.where(((lab == 0) & leaf & ~stem).unsqueeze(1), green, col)
    col = torch.where(((lab == 1) & banana_tip).unsqueeze(1), brown, col)
    col = torch.where(((lab == 2) & calyx).unsqueeze(1), green, col)
    col = torch.where(((lab == 3) & pear_stem).unsqueeze(1), brown, col)
    col = torch.where(((lab == 4) & grape_stem).unsqueeze(1), brown, col)
    col = torch.where(((lab == 4) & berry_rim).unsqueeze(1), col * 0.6, col)
    return col, mask


# ------------------------------------------------------------------------------------ dataset


class SyntheticObjects(ArrayDataset):
    """Object-bias or background-bias images with known ground truth (Schaaf et al. 2021).

    Parameters
    ----------
    n : int
        Number of images (>= 1); classes are balanced (counts differ by at most one).
    size : int
        Image side in pixels (>= 32).
    kind : {"object", "background"}
        ``"object"``: cats and dogs, a ball with every dog when biased. ``"background"``: five
        fruits, apples always on apple-tree foliage when biased. See the module docstring.
    biased : bool
        The biased set, or its unbiased reference (ball with probability 0.5 in every class;
        background uniform in every class). The same ``n``, ``size``, ``kind`` and ``seed`` give
        matching sets that differ only in the biased factor.
    seed : int
        Non-negative; the same arguments give the same images.

    Attributes
    ----------
    images : float32 tensor (N,3,H,W) in [0,1]
    labels : long tensor (N,)
    class_names : list of str (:data:`OBJECT_CLASSES` or :data:`FRUIT_CLASSES`)
    masks : dict of bool tensors (N,H,W): ``"object"`` and ``"ball"`` (object kind) or ``"object"``
        and ``"background"`` (background kind)
    meta : DataFrame, one row per image: ``label``, ``class_name``, ``background`` (type name) and,
        for the object kind, ``ball`` (bool)
    background_names : tuple of the background type names of this kind
    bias_class : the class that carries the bias (``"dog"`` or ``"apple"``)
    spec : JSON-able dict of the constructor arguments (and the subset, if any)
    """

    _per_item = ("images", "labels", "masks", "meta")

    def __init__(self, n: int = 2000, size: int = 64, kind: str = "object", biased: bool = True, seed: int = 0) -> None:
        n = check_int(n, "n", 1)
        size = check_int(size, "size", 32)
        seed = check_int(seed, "seed", 0)
        if kind not in _KIND_ID:
            raise ValueError(f"kind must be 'object' or 'background'; got {kind!r}")
        if not isinstance(biased, (bool, np.bool_)):
            raise ValueError(f"biased must be True or False; got {biased!r}")
        biased = bool(biased)
        self.kind = kind
        self.biased = biased
        self.class_names = list(OBJECT_CLASSES if kind == "object" else FRUIT_CLASSES)
        self.background_names = OBJECT_BACKGROUNDS if kind == "object" else FRUIT_BACKGROUNDS
        self.bias_class = self.class_names[1] if kind == "object" else self.class_names[0]
        self.spec = {
            "generator": "SyntheticObjects", "version": GENERATOR_VERSION, "n": n, "size": size,
            "kind": kind, "biased": biased, "seed": seed, "subset": None,
        }
        kid = _KIND_ID[kind]
        k = len(self.class_names)
        labels = torch.from_numpy(np.random.default_rng([seed, kid, 0]).permutation(np.arange(n) % k))
        # the biased factor has its own streams, so the matching sets share everything else
        fgen = _gen(seed, kid, 1, int(biased))
        if kind == "object":
            ball = labels == 1 if biased else torch.rand(n, generator=fgen) < 0.5
            bg = torch.randint(0, len(self.background_names), (n,), generator=_gen(seed, kid, 2))
        else:
            ball = torch.zeros(n, dtype=torch.bool)
            nb = len(self.background_names)
            if biased:  # apples on trees (type 0); the others evenly on types 1..nb-1
                other = 1 + torch.randint(0, nb - 1, (n,), generator=fgen)
                bg = torch.where(labels == 0, torch.zeros_like(other), other)
            else:
                bg = torch.randint(0, nb, (n,), generator=fgen)

        coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size
        y, x = torch.meshgrid(coords, coords, indexing="ij")
        y, x = y.unsqueeze(0), x.unsqueeze(0)
        images = torch.empty(n, 3, size, size)
        obj_mask = torch.empty(n, size, size, dtype=torch.bool)
        ball_mask = torch.zeros(n, size, size, dtype=torch.bool)
        for c, s in enumerate(range(0, n, _CHUNK)):
            sl = slice(s, min(n, s + _CHUNK))
            m = sl.stop - sl.start
            gen = _gen(seed, kid, 3, c)
            img = _backgrounds(self.background_names, bg[sl], gen, size, y, x)
            if kind == "object":
                col, om = _animals(labels[sl], gen, size, y, x)
                img = torch.where(om.unsqueeze(1), col, img)
                bcol, bm = _ball(gen, m, size, y, x, om)
                bm = bm & ball[sl].view(m, 1, 1)
                img = torch.where(bm.unsqueeze(1), bcol, img)
                ball_mask[sl] = bm
            else:
                col, om = _fruits(labels[sl], gen, size, y, x)
                img = torch.where(om.unsqueeze(1), col, img)
            img = img + 0.03 * (torch.rand(img.shape, generator=gen) - 0.5)
            images[sl] = img.clamp(0, 1)
            obj_mask[sl] = om

        self.images = images
        self.labels = labels.long()
        if kind == "object":
            self.masks = {"object": obj_mask, "ball": ball_mask}
        else:
            self.masks = {"object": obj_mask, "background": ~obj_mask}
        meta = {
            "label": self.labels.numpy(),
            "class_name": np.asarray(self.class_names)[self.labels.numpy()],
            "background": np.asarray(self.background_names)[bg.numpy()],
        }
        if kind == "object":
            meta["ball"] = ball.numpy()
        self.meta = pd.DataFrame(meta)

    def _repr_fields(self) -> dict[str, Any]:
        return {"kind": self.kind, "biased": self.biased, **super()._repr_fields()}
