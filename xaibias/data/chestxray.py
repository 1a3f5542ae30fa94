"""Synthetic chest radiographs with hospital-dependent lead markers and a bright border.

:class:`SyntheticChestXray` makes grey-scale frontal chest X-rays in which every pixel's origin is
known, for the CRP experiments of notebook 04 (Pawlik, Siennicki, Ziarko, *CRP and LRP on medical
images*: L/R markers and the image border as biases a model can learn instead of the lungs).

How an image is made (X-ray convention: dense tissue and bone bright, air dark)
--------------------------------------------------------------------------------
1. **Body**: a bright soft-tissue torso with shoulders on a dark background, with smooth
   intensity variation and fine grain; each image has its own position, scale and exposure.
2. **Lungs**: two dark fields left and right of the bright mediastinum, their lower edge cut by
   the two domes of the **diaphragm** (bright below).
3. **Heart shadow**: a bright oval over the lower middle, reaching into the left lung (the right
   side of the image).
4. **Ribs**: curved bright bands running across both lungs, sloping down to the sides.
5. **Disease** (the class): ``normal`` has clear lungs; ``pneumonia`` a focal opacity (a bright
   blob in the lower or middle zone of one lung); ``covid`` bilateral peripheral ground-glass
   opacity (a faint patchy haze along the outer edges of both lower lungs). Their contrast shrinks
   with ``difficulty`` (0: obvious, 1: absent).
6. **Lead marker**: a bright letter (``"L"`` or ``"R"``) placed by the technician. Each *hospital*
   has its own habit (hospital 0: ``"R"`` top left, 1: ``"L"`` top right, 2: ``"R"`` bottom left,
   3: ``"L"`` bottom right). Every image has one marker; which hospital it came from depends on
   the class as set by ``bias["markers"]``.
7. **Border** (optional): a bright band around the image edge (collimator / scanner frame),
   present with a class-dependent rate set by ``bias["border"]``.

Bias
----
``bias={"markers": s_m, "border": s_b}`` with strengths in [0, 1] (missing keys are 0):

* ``markers``: the image of class ``c`` comes from hospital ``c`` with probability
  ``s_m + (1 - s_m) / k`` (``k`` classes): with probability ``s_m`` it is its own hospital, else
  a uniformly drawn one (possibly its own). At 0 the
  marker tells nothing about the class; at 1 it gives the class away.
* ``border``: images of class ``border_class`` (default: the last class) have the border with
  probability ``(1 + s_b) / 2``, all other classes with ``(1 - s_b) / 2``. At 0 half of every class
  has it.

Masks (bool ``(N, H, W)``): ``"markers"`` (the letter's pixels, grown by one pixel), ``"border"``
(all-False where absent), ``"lungs"`` (the visible lung fields) and ``"disease"`` (the opacity;
all-False for normal images).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
import torch

from .._checks import check_int
from ._base import ArrayDataset

__all__ = ["SyntheticChestXray", "XRAY_CLASSES", "MARKER_SITES"]

GENERATOR_VERSION = 1
# the generator draws from default_rng([seed, _STREAM]): a stream of its own, so a chest X-ray set
# never repeats the draws another generator makes from the same seed (the value is arbitrary)
_STREAM = 0xC4E57

#: Class names in label order.
XRAY_CLASSES: tuple[str, ...] = ("normal", "pneumonia", "covid")

#: Hospital habits: (letter, corner) of the lead marker of hospital i.
MARKER_SITES: tuple[tuple[str, str], ...] = (
    ("R", "top-left"),
    ("L", "top-right"),
    ("R", "bottom-left"),
    ("L", "bottom-right"),
)

# 5 x 7 bitmaps of the marker letters
_LETTERS = {
    "L": ["10000", "10000", "10000", "10000", "10000", "10000", "11111"],
    "R": ["11110", "10001", "10001", "11110", "10100", "10010", "10001"],
}


def _check_unit(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not (
        0.0 <= float(value) <= 1.0
    ):
        raise ValueError(f"{name} must be a number in [0,1]; got {value!r}")
    return float(value)


def _resolve_bias(bias: Any) -> dict[str, float]:
    if bias is None:
        return {"markers": 0.0, "border": 0.0}
    if not isinstance(bias, dict):
        raise ValueError(f'bias must be None or a dict like {{"markers": 0.9, "border": 0.8}}; got {type(bias).__name__}')
    unknown = sorted(set(bias) - {"markers", "border"})
    if unknown:
        raise ValueError(f"bias has unknown key(s) {unknown}; valid keys are 'markers' and 'border'")
    return {k: _check_unit(bias.get(k, 0.0), f"bias[{k!r}]") for k in ("markers", "border")}


@lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centre coordinates in units of the image side, in [0, 1)."""
    c = (np.arange(size, dtype=np.float32) + 0.5) / size
    yy, xx = np.meshgrid(c, c, indexing="ij")
    yy.setflags(write=False)
    xx.setflags(write=False)
    return yy, xx


def _smooth(rng: np.random.Generator, b: int, size: int, g: int) -> np.ndarray:
    """Smooth random fields (b, size, size), roughly unit amplitude (bilinear from g x g grids)."""
    grid = torch.from_numpy(rng.standard_normal((b, 1, g, g)).astype(np.float32))
    up = torch.nn.functional.interpolate(grid, size=(size, size), mode="bilinear", align_corners=False)
    return up[:, 0].numpy()


def _col(v: np.ndarray) -> np.ndarray:
    return v.astype(np.float32)[:, None, None]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


def _render(rng: np.random.Generator, labels: np.ndarray, size: int, difficulty: float) -> tuple[np.ndarray, ...]:
    """Anatomy and disease for a batch: (grey (B,H,W), lungs mask, disease mask)."""
    b = len(labels)
    yy, xx = _grid(size)
    yy, xx = yy[None], xx[None]
    soft = 1.2 / size  # edge softness (about a pixel)

    # per-image geometry: position, scale, exposure
    cx = _col(0.5 + rng.uniform(-0.03, 0.03, b))
    cy = _col(0.5 + rng.uniform(-0.03, 0.03, b))
    sc = _col(rng.uniform(0.92, 1.06, b))
    x, y = (xx - cx) / sc, (yy - cy) / sc  # centred coordinates

    # torso with shoulders: a rounded box (superellipse) open at the bottom, dark air outside
    torso = _sigmoid((1.0 - (np.abs(x / 0.46) ** 4 + np.abs(np.minimum(y - 0.08, 0) / 0.52) ** 3)) / (6 * soft))
    tissue = 0.55 + 0.06 * _smooth(rng, b, size, 4)
    img = 0.08 + torso * (tissue - 0.08)

    # lungs: two ellipses beside the mediastinum, cut below by the diaphragm domes
    lx = _col(rng.uniform(0.155, 0.175, b))  # lateral offset of each lung centre
    ax = _col(rng.uniform(0.115, 0.135, b))
    ay = _col(rng.uniform(0.27, 0.31, b))
    ly = _col(rng.uniform(-0.05, -0.02, b))
    dome_l = _col(rng.uniform(0.18, 0.22, b))  # diaphragm height under each lung
    dome_r = dome_l + _col(rng.uniform(-0.04, 0.0, b))  # the image-left dome sits a bit higher
    lungs = np.zeros_like(img)
    for side, dome in ((-1.0, dome_r), (1.0, dome_l)):
        ex = (x - side * lx) / ax
        ey = (y - ly) / ay
        inside = _sigmoid((1.0 - np.sqrt(ex**2 + ey**2)) / (soft / 0.12))
        dia = dome + 0.9 * (x - side * lx) ** 2  # dome: lowest at the sides
        inside = inside * _sigmoid((dia - y) / soft)
        lungs = np.maximum(lungs, inside)
    # heart shadow over the lower middle, towards the image right (the patient's left)
    hx, hy = _col(rng.uniform(0.03, 0.06, b)), _col(rng.uniform(0.09, 0.13, b))
    heart = _sigmoid((1.0 - np.sqrt(((x - hx) / 0.14) ** 2 + ((y - hy) / 0.12) ** 2)) / 0.12)
    lungs = lungs * (1.0 - heart)
    img = img - lungs * (img - (0.16 + 0.04 * _smooth(rng, b, size, 6)))  # air in the lungs is dark
    img = img + 0.08 * heart * torso

    # ribs: bright curved bands across the lungs, sloping down to the sides
    period = _col(rng.uniform(0.085, 0.1, b))
    phase = _col(rng.uniform(0, 1, b))
    curve = y - 0.9 * x**2
    ribs = np.clip(np.cos(2 * np.pi * (curve / period + phase)) * 2.2 - 1.0, 0.0, 1.0)
    chest = _sigmoid((dome_l + 0.02 - y) / (3 * soft))  # no ribs over the abdomen
    img = img + 0.10 * ribs * np.maximum(lungs, 0.35 * torso * chest)

    # diaphragm/abdomen below the lungs is bright soft tissue already; add mediastinum brightness
    img = img + 0.05 * torso * np.exp(-((x / 0.06) ** 2)) * (y > -0.3)

    # disease
    amp = 1.0 - difficulty
    disease = np.zeros_like(img)
    lung_hard = lungs > 0.5
    for i in np.flatnonzero(labels == 1):  # pneumonia: one focal opacity in one lung
        side = rng.choice((-1.0, 1.0))
        px = side * lx[i, 0, 0] + rng.uniform(-0.04, 0.04)
        py = ly[i, 0, 0] + rng.uniform(0.0, 0.14)
        r = rng.uniform(0.07, 0.1)
        blob = np.exp(-((x[i] - px) ** 2 + (y[i] - py) ** 2) / (2 * r * r))
        blob = blob * (1 + 0.3 * _smooth(rng, 1, size, 5)[0])
        disease[i] = np.clip(blob, 0, None) * lungs[i]
        img[i] += amp * rng.uniform(0.28, 0.36) * disease[i]
    for i in np.flatnonzero(labels == 2):  # covid: bilateral peripheral lower ground glass
        periph = np.zeros((size, size), np.float32)
        for side in (-1.0, 1.0):
            dx = side * (x[i] - side * lx[i, 0, 0]) / ax[i, 0, 0]  # > 0 towards the outer edge
            periph += _sigmoid((dx - 0.25) / 0.15) * (side * x[i] > 0)
        lower = _sigmoid((y[i] - ly[i, 0, 0] + 0.02) / 0.06)
        patch = np.clip(0.75 + 0.5 * _smooth(rng, 1, size, 7)[0], 0.45, 1.0)  # patchy, never absent
        disease[i] = np.clip(periph, 0, 1) * lower * patch * lungs[i]
        img[i] += amp * rng.uniform(0.2, 0.26) * disease[i]

    img = img + 0.015 * rng.standard_normal(img.shape).astype(np.float32)  # quantum noise
    gain = _col(rng.uniform(0.9, 1.08, b))
    img = np.clip(img * gain, 0.0, 1.0)
    return img.astype(np.float32), lung_hard, (disease > 0.25) & lung_hard


def _paint_marker(img: np.ndarray, site: int, rng: np.random.Generator) -> np.ndarray:
    """Draw hospital ``site``'s lead marker into ``img`` (H,W), return the bool mask."""
    size = img.shape[0]
    letter, corner = MARKER_SITES[site]
    scale = max(1, int(round(size / 48)))
    bitmap = np.array([[c == "1" for c in row] for row in _LETTERS[letter]], bool)
    glyph = np.kron(bitmap, np.ones((scale, scale), bool))
    gh, gw = glyph.shape
    margin = max(2, size // 16)
    jit = max(1, size // 32)
    top = margin + rng.integers(0, jit + 1)
    left = margin + rng.integers(0, jit + 1)
    if corner.startswith("bottom"):
        top = size - top - gh
    if corner.endswith("right"):
        left = size - left - gw
    mask = np.zeros((size, size), bool)
    mask[top : top + gh, left : left + gw] = glyph
    img[mask] = rng.uniform(0.9, 0.98)
    # the mask is grown by one pixel: the letter's halo belongs to it
    grown = mask.copy()
    grown[1:] |= mask[:-1]
    grown[:-1] |= mask[1:]
    grown[:, 1:] |= mask[:, :-1]
    grown[:, :-1] |= mask[:, 1:]
    return grown


def _paint_border(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    size = img.shape[0]
    width = max(2, int(round(size * rng.uniform(0.04, 0.06))))
    mask = np.zeros((size, size), bool)
    mask[:width] = mask[-width:] = True
    mask[:, :width] = mask[:, -width:] = True
    img[mask] = rng.uniform(0.88, 0.96)
    return mask


class SyntheticChestXray(ArrayDataset):
    """Synthetic frontal chest X-rays: three diseases, hospital lead markers and a bright border.

    See the module docstring for how an image is made and what ``bias`` means.

    Parameters
    ----------
    n : int
        Number of images (>= 1); classes are balanced (counts differ by at most one).
    size : int
        Image side in pixels (>= 32).
    classes : int
        2 (normal, pneumonia) or 3 (normal, pneumonia, covid).
    bias : dict or None
        ``{"markers": strength, "border": strength}``, strengths in [0, 1]; None = no bias.
    difficulty : float
        In [0, 1]: 0 = obvious opacities, 1 = no disease signal at all.
    border_class : int or None
        The class the border goes with (default: the last class).
    seed : int
        The same arguments give the same bytes.

    Attributes
    ----------
    images : float32 tensor (N,3,H,W) in [0,1] (grey repeated on three channels)
    labels : long tensor (N,)
    class_names : list of str
    masks : dict of bool tensors (N,H,W): ``"markers"``, ``"border"``, ``"lungs"``, ``"disease"``
    sites : long tensor (N,) hospital (index into :data:`MARKER_SITES`) of each image
    artifacts : DataFrame with bool columns ``"border"`` and ``"marker_<letter>_<corner>"``
    bias : the bias as resolved
    spec : JSON-able dict of all constructor arguments (and the subset, if any)
    """

    _per_item = ("images", "labels", "sites", "masks", "artifacts")

    def __init__(
        self,
        n: int = 1200,
        size: int = 64,
        classes: int = 3,
        bias: dict[str, float] | None = None,
        difficulty: float = 0.0,
        border_class: int | None = None,
        seed: int = 0,
    ) -> None:
        n = check_int(n, "n", 1, "number of images")
        size = check_int(size, "size", 32, "image side in pixels")
        if isinstance(classes, bool) or classes not in (2, 3):
            raise ValueError(f"classes must be 2 (normal, pneumonia) or 3 (normal, pneumonia, covid); got {classes!r}")
        difficulty = _check_unit(difficulty, "difficulty")
        seed = check_int(seed, "seed", 0, "random seed")
        k = int(classes)
        if border_class is None:
            border_class = k - 1
        if isinstance(border_class, bool) or not isinstance(border_class, (int, np.integer)) or not 0 <= border_class < k:
            raise ValueError(f"border_class must be a class index in [0, {k}); got {border_class!r}")
        self.class_names = list(XRAY_CLASSES[:k])
        self.bias = _resolve_bias(bias)
        self.spec = {
            "generator": "SyntheticChestXray",
            "version": GENERATOR_VERSION,
            "n": n,
            "size": size,
            "classes": k,
            "bias": dict(self.bias),
            "difficulty": difficulty,
            "border_class": int(border_class),
            "seed": seed,
            "subset": None,
        }

        rng = np.random.default_rng([seed, _STREAM])
        labels = rng.permutation(np.arange(n) % k)
        s_m, s_b = self.bias["markers"], self.bias["border"]
        own = rng.random(n) < s_m  # else uniform: P(site = label) = s_m + (1 - s_m) / k
        sites = np.where(own, labels, rng.integers(0, k, n))
        p_border = np.where(labels == border_class, (1 + s_b) / 2, (1 - s_b) / 2)
        has_border = rng.random(n) < p_border

        images = np.empty((n, size, size), np.float32)
        lungs = np.empty((n, size, size), bool)
        disease = np.empty((n, size, size), bool)
        chunk = 256
        for ci, start in enumerate(range(0, n, chunk)):
            stop = min(n, start + chunk)
            crng = np.random.default_rng([seed, 1, ci])
            images[start:stop], lungs[start:stop], disease[start:stop] = _render(
                crng, labels[start:stop], size, difficulty
            )
        markers = np.zeros((n, size, size), bool)
        border = np.zeros((n, size, size), bool)
        for i in range(n):
            prng = np.random.default_rng([seed, 2, i])
            if has_border[i]:
                border[i] = _paint_border(images[i], prng)
            markers[i] = _paint_marker(images[i], int(sites[i]), prng)
        # the border covers the lung field's outermost pixels only when it overlaps them
        lungs &= ~border
        disease &= ~border

        self.images = torch.from_numpy(images)[:, None].repeat(1, 3, 1, 1).contiguous()
        self.labels = torch.from_numpy(labels.astype(np.int64))
        self.sites = torch.from_numpy(sites.astype(np.int64))
        self.masks = {
            "markers": torch.from_numpy(markers),
            "border": torch.from_numpy(border),
            "lungs": torch.from_numpy(lungs),
            "disease": torch.from_numpy(disease),
        }
        cols = {"border": has_border}
        for j, (letter, corner) in enumerate(MARKER_SITES[:k]):
            cols[f"marker_{letter}_{corner}"] = sites == j
        self.artifacts = pd.DataFrame(cols)

    def _repr_fields(self) -> dict[str, Any]:
        return {**super()._repr_fields(), "difficulty": self.spec["difficulty"], "bias": self.bias}
