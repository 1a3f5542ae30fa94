"""How :class:`xaibias.data.SyntheticLesions` draws a lesion: class feature prototypes and the renderer.

Each image gets a feature vector (:data:`FEATURES`, each in [0, 1]) drawn around its class's
prototype (:data:`CLASS_PROTOTYPES`) with a spread set by the difficulty; :func:`render_batch` turns
feature vectors into skin, lesion and lesion mask. The artifacts are painted afterwards by
:mod:`xaibias.data.artifacts`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from .drawing import Canvas, bezier

__all__ = ["FEATURES", "CLASS_PROTOTYPES", "BINARY_CLASSES", "draw_features", "render_batch"]

BINARY_CLASSES: tuple[str, str] = ("benign", "malignant")

#: Lesion appearance features, each in [0, 1].
FEATURES: tuple[str, ...] = (
    "size",  # radius 0.12-0.30 of the image side
    "elongation",  # axis ratio 1 - 0.45 * u
    "asymmetry",  # low-order border harmonics and an eccentric dark centre
    "irregularity",  # high-order border harmonics (notches, jagged edge)
    "blur",  # width of the border transition
    "variegation",  # number and strength of extra colour blobs
    "darkness",  # pigment darkness
    "pink",  # pink/red instead of brown pigment
    "vessels",  # thin red vessels inside the lesion
    "scale",  # white-yellow keratin flecks
    "dots",  # white milia-like cysts and dark comedo-like openings
)

#: Mean feature vector of each class (order of :data:`FEATURES`); binary uses NV and MEL.
CLASS_PROTOTYPES: dict[str, tuple[float, ...]] = {
    #        size  elong asym  irreg blur  vari  dark  pink  vess  scale dots
    "NV": (0.25, 0.20, 0.10, 0.10, 0.30, 0.08, 0.55, 0.05, 0.00, 0.00, 0.00),
    "MEL": (0.80, 0.60, 0.85, 0.85, 0.45, 0.85, 0.55, 0.10, 0.05, 0.05, 0.00),
    "BCC": (0.50, 0.40, 0.45, 0.40, 0.55, 0.25, 0.15, 0.80, 0.85, 0.10, 0.05),
    "SCC": (0.55, 0.35, 0.50, 0.55, 0.60, 0.15, 0.10, 0.85, 0.35, 0.85, 0.00),
    "AK": (0.35, 0.45, 0.40, 0.50, 0.90, 0.10, 0.05, 0.60, 0.15, 0.50, 0.00),
    "SK": (0.50, 0.50, 0.30, 0.30, 0.05, 0.30, 0.85, 0.00, 0.00, 0.20, 0.85),
    "Other": (0.20, 0.15, 0.15, 0.15, 0.30, 0.15, 0.55, 0.95, 0.10, 0.00, 0.00),
}
_BINARY_PROTO = {"benign": "NV", "malignant": "MEL"}
#: Features that never depend on the class in the binary case (nuisance), with their spread.
_BINARY_NUISANCE = {"darkness": 0.22}

_BLOB_COLORS = np.array(
    [(0.08, 0.05, 0.05), (0.36, 0.42, 0.56), (0.72, 0.22, 0.22), (0.86, 0.82, 0.82), (0.26, 0.13, 0.07)],
    np.float32,
)


def _sigma(difficulty: float) -> float:
    return 0.06 + 0.42 * difficulty


# ----------------------------------------------------------------------------------------------
# rendering
# ----------------------------------------------------------------------------------------------
@lru_cache(maxsize=16)
def _interp_matrix(n: int, g: int) -> np.ndarray:
    """(n, g) bilinear interpolation matrix from a g-point grid to n pixels."""
    pos = (np.arange(n) + 0.5) / n * (g - 1)
    i0 = np.clip(np.floor(pos).astype(int), 0, g - 2)
    t = pos - i0
    m = np.zeros((n, g), np.float32)
    m[np.arange(n), i0] = 1 - t
    m[np.arange(n), i0 + 1] = t
    m.setflags(write=False)
    return m


def _smooth_noise(rng: np.random.Generator, b: int, h: int, w: int, g: int) -> np.ndarray:
    """Smooth random fields (b, h, w) with roughly unit amplitude, bilinear from g x g grids."""
    grid = rng.standard_normal((b, g, g), dtype=np.float32)
    tmp = (grid.reshape(b * g, g) @ _interp_matrix(w, g).T).reshape(b, g, w)
    return np.matmul(_interp_matrix(h, g), tmp)


@lru_cache(maxsize=16)
def _coords(h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    yy, xx = np.meshgrid(
        np.arange(h, dtype=np.float32) + 0.5 - h / 2, np.arange(w, dtype=np.float32) + 0.5 - w / 2, indexing="ij"
    )
    r2 = (yy**2 + xx**2) / np.float32((min(h, w) / 2) ** 2)
    for arr in (yy, xx, r2):
        arr.setflags(write=False)
    return yy, xx, r2


_NBINS = 1024  # angular resolution of the border function
_KMAX = 16  # highest border harmonic


@lru_cache(maxsize=1)
def _harmonic_basis() -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(_NBINS) / _NBINS * 2 * np.pi
    k = np.arange(1, _KMAX + 1)[:, None]
    return np.cos(k * t).astype(np.float32), np.sin(k * t).astype(np.float32)


def _f32(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def render_batch(
    u: np.ndarray, skin_rgb: np.ndarray, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Images (B,3,H,W) float32 and lesion masks (B,H,W) from features ``u`` (B, len(FEATURES))."""
    bsz, h, w = len(u), size, size
    s = np.float32(size)
    f = {name: _f32(u[:, j]) for j, name in enumerate(FEATURES)}
    yy, xx, r2 = _coords(h, w)

    def col3(v: np.ndarray) -> np.ndarray:  # (B,3) -> (B,3,1,1)
        return v[:, :, None, None]

    def b1(v: np.ndarray) -> np.ndarray:  # (B,) -> (B,1,1)
        return v[:, None, None]

    # skin: tone, smooth illumination, dermoscope fall-off, fine texture
    skin = _f32(skin_rgb * rng.uniform(0.94, 1.04, (bsz, 3)))
    light = 1.0 + 0.05 * _smooth_noise(rng, bsz, h, w, 4) - 0.07 * r2
    img = col3(skin) * light[:, None]
    img *= 1.0 + 0.014 * rng.standard_normal((bsz, 1, h, w), dtype=np.float32)
    img += 0.025 * col3(skin) * _smooth_noise(rng, bsz * 3, h, w, 9).reshape(bsz, 3, h, w)

    # lesion shape: ellipse + Fourier border perturbation, in a rotated, scaled frame
    radius = (0.12 + 0.18 * f["size"]) * s
    q = 1.0 - 0.45 * f["elongation"]
    ax, bx_ = radius / np.sqrt(q), radius * np.sqrt(q)
    cy, cx = _f32(rng.uniform(-0.07, 0.07, (2, bsz)) * s)
    phi = _f32(rng.uniform(0, np.pi, bsz))
    c, sn = np.cos(phi), np.sin(phi)
    dy, dx = yy[None] - b1(cy), xx[None] - b1(cx)
    xr = (dx * b1(c) + dy * b1(sn)) / b1(ax)
    yr = (dy * b1(c) - dx * b1(sn)) / b1(bx_)
    rho = np.sqrt(xr * xr + yr * yr)
    theta = np.arctan2(yr, xr)
    amp = np.zeros((bsz, _KMAX), np.float32)
    amp[:, 0] = 0.13 * f["asymmetry"]
    amp[:, 1] = 0.10 * f["asymmetry"]
    ks = np.arange(3, _KMAX + 1, dtype=np.float32)
    amp[:, 2:] = (0.11 * f["irregularity"])[:, None] * np.abs(rng.normal(1.0, 0.35, (bsz, len(ks)))) * (ks / 3.0) ** -0.8
    ph = rng.uniform(0, 2 * np.pi, (bsz, _KMAX))
    cosb, sinb = _harmonic_basis()
    table = np.einsum("bk,kn->bn", _f32(amp * np.cos(ph)), cosb) - np.einsum("bk,kn->bn", _f32(amp * np.sin(ph)), sinb)
    idx = ((theta + np.float32(np.pi)) * np.float32(_NBINS / (2 * np.pi))).astype(np.int32) % _NBINS
    idx = (idx + _NBINS // 2) % _NBINS  # theta in [-pi, pi) -> bins of [0, 2 pi)
    border = np.take_along_axis(table, idx.reshape(bsz, -1), axis=1).reshape(bsz, h, w)
    edge = (0.7 + 3.2 * f["blur"]) * s / 64.0
    sd = (1.0 + border - rho) * b1(radius)  # ~ signed distance to the border in pixels
    alpha = np.clip(0.5 + sd / b1(edge), 0.0, 1.0)
    lesion = sd >= 0

    # pigment: skin times a brown (or pink/red) tint, darker towards an (eccentric) centre
    dark, pink = f["darkness"][:, None], f["pink"][:, None]
    brown = _f32([0.80, 0.62, 0.52]) * (1 - dark) + _f32([0.30, 0.19, 0.13]) * dark
    pinkc = _f32([1.0, 0.62, 0.64]) * (1 - 0.5 * dark) + _f32([0.55, 0.18, 0.3]) * 0.5 * dark
    tint = brown * (1 - pink) + pinkc * pink
    off = 0.45 * f["asymmetry"] * radius
    oang = _f32(rng.uniform(0, 2 * np.pi, bsz))
    oy, ox = cy + off * np.sin(oang), cx + off * np.cos(oang)
    dc = np.sqrt((yy[None] - b1(oy)) ** 2 + (xx[None] - b1(ox)) ** 2) / b1(radius)
    depth = _f32(rng.uniform(0.15, 0.3, bsz))
    shade = (1.0 - b1(depth) * np.clip(1.0 - dc, 0.0, 1.0)) * light * (1.0 + 0.04 * _smooth_noise(rng, bsz, h, w, 12))
    col = col3(skin * tint) * shade[:, None]

    # variegation: up to four extra colour blobs inside the lesion
    nblob = np.clip(np.round(4 * f["variegation"] + rng.uniform(-0.3, 0.3, bsz)), 0, 4).astype(int)
    bright = 0.6 + 0.4 * skin.mean(1)
    strength = 0.45 + 0.45 * f["variegation"]
    for j in range(4):
        on = nblob > j
        k = rng.integers(len(_BLOB_COLORS), size=bsz)
        t = _f32(rng.uniform(0, 2 * np.pi, bsz))
        rr = _f32(rng.uniform(0, 0.65, bsz)) * radius
        sig = _f32(rng.uniform(0.2, 0.4, bsz)) * radius
        if not on.any():
            continue
        sel = np.flatnonzero(on)
        by, bxx = (cy + rr * np.sin(t))[sel], (cx + rr * np.cos(t))[sel]
        d2 = (yy[None] - b1(by)) ** 2 + (xx[None] - b1(bxx)) ** 2
        wgt = b1(strength[sel]) * np.exp(-d2 / b1(2 * sig[sel] ** 2))
        bc = _BLOB_COLORS[k[sel]] * bright[sel, None]
        col[sel] = col[sel] * (1 - wgt[:, None]) + col3(bc) * wgt[:, None]

    # keratin scale: white-yellow flecks where a smooth noise field is high
    has_scale = np.flatnonzero(f["scale"] > 0.05)
    if len(has_scale):
        field = _smooth_noise(rng, len(has_scale), h, w, 10)
        thr = 1.4 - 1.6 * f["scale"][has_scale]
        sc = np.clip((field - b1(thr)) * 2.0, 0.0, 0.85) * (rho[has_scale] < 0.85)
        col[has_scale] = col[has_scale] * (1 - sc[:, None]) + _f32([0.95, 0.92, 0.8])[:, None, None] * sc[:, None]

    img = img * (1 - alpha[:, None]) + col * alpha[:, None]

    # vessels and dots (few images): drawn per image on top, inside the lesion
    nves = np.round(6 * f["vessels"] + rng.uniform(-0.4, 0.4, bsz)).astype(int)
    ndots = np.round(10 * f["dots"] + rng.uniform(-0.5, 0.5, bsz)).astype(int)
    for i in np.flatnonzero((nves > 0) | (ndots > 0)):
        irng = np.random.default_rng(rng.integers(2**63))
        _vessels_dots(img[i], alpha[i], int(nves[i]), int(ndots[i]), float(cy[i]), float(cx[i]), float(radius[i]), irng)

    np.clip(img, 0.0, 1.0, out=img)
    return img, lesion


def _vessels_dots(
    img: np.ndarray, alpha: np.ndarray, nves: int, ndots: int, cy: float, cx: float, radius: float, rng: np.random.Generator
) -> None:
    """In place: thin red vessels and white/dark dots inside one lesion (weighted by its alpha)."""
    _, h, w = img.shape
    s = float(min(h, w))
    if nves > 0:
        cv = Canvas(h, w)
        for _ in range(nves):
            t = rng.uniform(0, 2 * np.pi)
            p0 = np.array([h / 2 + cy, w / 2 + cx]) + rng.uniform(0, 0.5) * radius * np.array([np.sin(t), np.cos(t)])
            t2 = t + rng.uniform(-1.5, 1.5)
            p2 = p0 + rng.uniform(0.4, 0.9) * radius * np.array([np.sin(t2), np.cos(t2)])
            p1 = (p0 + p2) / 2 + rng.normal(0, 0.2 * radius, 2)
            curve = bezier(p0 - 0.5, p1 - 0.5, p2 - 0.5, 8)
            lw = max(1, int(round(max(0.7, s / 90) * cv.ss)))
            cv.draw.line(cv.pts(curve[:, 0], curve[:, 1]), fill=255, width=lw)
        va = cv.alpha() * 0.8 * alpha
        img[:] = img * (1 - va[None]) + _f32([0.72, 0.12, 0.18])[:, None, None] * va[None]
    yy, xx, _ = _coords(h, w)
    for i in range(max(0, ndots)):
        t = rng.uniform(0, 2 * np.pi)
        rr = np.sqrt(rng.uniform(0, 0.6)) * radius
        dy, dx = cy + rr * np.sin(t), cx + rr * np.cos(t)
        dr = max(0.8, rng.uniform(0.02, 0.035) * s)
        da = np.clip(dr + 0.5 - np.sqrt((yy - dy) ** 2 + (xx - dx) ** 2), 0, 1) * 0.85 * alpha
        dcol = _f32([0.95, 0.93, 0.85] if i % 2 == 0 else [0.12, 0.08, 0.06])
        img[:] = img * (1 - da[None]) + dcol[:, None, None] * da[None]


def draw_features(
    rng: np.random.Generator, class_names: list[str], labels: np.ndarray, difficulty: float
) -> np.ndarray:
    """(N, len(FEATURES)) features in [0,1] from the class-dependent distributions."""
    binary = class_names == list(BINARY_CLASSES)
    protos = np.array([CLASS_PROTOTYPES[_BINARY_PROTO.get(c, c)] for c in class_names])
    mean = protos.mean(axis=0)
    mu = mean + (1.0 - difficulty) * (protos - mean)
    sig = np.full(len(FEATURES), _sigma(difficulty))
    if binary:
        for name, spread in _BINARY_NUISANCE.items():
            j = FEATURES.index(name)
            mu[:, j] = mean[j]
            sig[j] = spread
    u = mu[labels] + sig * rng.standard_normal((len(labels), len(FEATURES)))
    return np.clip(u, 0.0, 1.0)


# ----------------------------------------------------------------------------------------------
# the dataset
# ----------------------------------------------------------------------------------------------
