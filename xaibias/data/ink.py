"""Rule-based segmentation of surgical-marker ink (notebook 03).

Pfau et al. (2019) bootstrapped their ink segmentation network from simple colour rules. Surgical
markers are purple or blue, skin and pigment are red-brown: in HSV the two are far apart in hue.
:func:`segment_ink` keeps pixels whose hue lies in the purple/blue range with enough saturation and
a moderate brightness, closes small gaps along strokes, and removes specks smaller than
``min_size`` pixels (scipy.ndimage). It needs no training, so global saliency can run on real
photos without ink masks; it misses ink that is coloured like pigment (by design of that test case).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy import ndimage

from .._checks import as_images, as_labels, as_masks, describe
from .sampling import unbiased_resample

__all__ = [
    "rgb_to_hsv", "segment_ink", "mask_iou", "ink_by_class", "ablate_to_ink", "PIGMENT_INK",
    "scale_rates", "ink_training_sets",
]

#: A dark brown-mauve ink colour close to lesion pigment (for "ink that looks like the disease").
PIGMENT_INK: tuple[float, float, float] = (0.33, 0.19, 0.2)
# which images of ink_by_class get ink is drawn from default_rng([seed, _INK_STREAM]): a random stream
# of its own, so the choice does not repeat the painter's draws made from the same seed
_INK_STREAM = 7


def rgb_to_hsv(images: Any) -> torch.Tensor:
    """Convert (N,3,H,W) RGB in [0,1] to HSV (N,3,H,W): hue in degrees [0,360), saturation, value."""
    x = as_images(images, allow_single=True).double()
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    mx, _ = x.max(dim=1)
    mn, _ = x.min(dim=1)
    d = mx - mn
    safe = torch.where(d > 0, d, torch.ones_like(d))
    h = torch.where(
        mx == r,
        ((g - b) / safe) % 6,
        torch.where(mx == g, (b - r) / safe + 2, (r - g) / safe + 4),
    )
    h = torch.where(d > 0, h * 60.0, torch.zeros_like(h)) % 360.0
    s = torch.where(mx > 0, d / torch.where(mx > 0, mx, torch.ones_like(mx)), torch.zeros_like(mx))
    return torch.stack([h, s, mx], dim=1).float()


def _check_range(name: str, lo: float, hi: float, lo_ok: float, hi_ok: float) -> None:
    if not (lo_ok <= lo < hi <= hi_ok):
        raise ValueError(f"{name} must be (low, high) with {lo_ok} <= low < high <= {hi_ok}; got ({lo}, {hi})")


def segment_ink(
    images: Any,
    hue: tuple[float, float] = (200.0, 345.0),
    min_saturation: float = 0.22,
    value: tuple[float, float] = (0.12, 0.75),
    min_blue_excess: float = 0.02,
    min_excess: float = 0.06,
    grow: float | None = 0.06,
    closing: int = 1,
    dilation: int = 0,
    min_size: int | None = None,
) -> torch.Tensor:
    """Segment purple/blue marker ink by colour thresholds and a little morphology.

    A pixel is ink when

    - its hue lies in ``hue`` (degrees; default 195-335: blue through violet to purple; skin and
      pigment sit near 0-40),
    - its saturation is at least ``min_saturation`` (grey and white pixels have arbitrary hue),
    - its value (max channel) lies in ``value`` (very dark pixels are too noisy to judge),
    - blue exceeds green by at least ``min_blue_excess`` (marker ink absorbs green).

    The anti-aliased rim of a stroke is too faint to pass these colour rules, so the mask is grown
    by hysteresis (``grow``): a pixel whose ``b - g`` exceeds the image's median ``b - g`` (the skin)
    by at least ``grow`` is added when it is connected (8-neighbourhood) to a pixel that passed the
    rules. Brown pigment does not raise ``b - g``, so the growth does not leak into the lesion.

    The mask is then closed with a 3x3 structuring element ``closing`` times (bridges one-pixel
    gaps in strokes), optionally dilated ``dilation`` times (to take in the faint anti-aliased rim),
    and connected components smaller than ``min_size`` pixels are removed.

    Parameters
    ----------
    images : tensor or array (N,3,H,W) or (3,H,W)
        RGB images in [0,1] (uint8 is scaled).
    hue : (float, float)
        Hue range in degrees, within [0, 360].
    min_saturation : float
        Minimum HSV saturation in [0, 1].
    value : (float, float)
        HSV value range within [0, 1].
    min_blue_excess : float
        Minimum ``b - g``.
    grow : float or None
        Hysteresis threshold on ``b - g`` above the image median; ``None`` disables growing.
    closing, dilation : int
        Iterations of binary closing / dilation (0 disables).
    min_size : int, optional
        Smallest component kept, in pixels; default ``max(2, H*W // 1500)``.

    Returns
    -------
    torch.Tensor
        bool (N,H,W).
    """
    _check_range("hue", float(hue[0]), float(hue[1]), 0.0, 360.0)
    _check_range("value", float(value[0]), float(value[1]), 0.0, 1.0)
    if not 0 <= min_saturation <= 1:
        raise ValueError(f"min_saturation must be in [0, 1]; got {min_saturation!r}")
    for name, it in (("closing", closing), ("dilation", dilation)):
        if isinstance(it, bool) or not isinstance(it, (int, np.integer)) or it < 0:
            raise ValueError(f"{name} must be a non-negative int (iterations); got {it!r}")
    x = as_images(images, allow_single=True)
    n, _, h, w = x.shape
    if min_size is None:
        min_size = max(2, (h * w) // 1500)
    if isinstance(min_size, bool) or not isinstance(min_size, (int, np.integer)) or min_size < 0:
        raise ValueError(f"min_size must be a non-negative int (pixels); got {min_size!r}")
    hsv = rgb_to_hsv(x)
    bg = (x[:, 2] - x[:, 1]).double()
    excess = bg - bg.flatten(1).median(dim=1).values[:, None, None]
    hh, ss, vv = hsv[:, 0], hsv[:, 1], hsv[:, 2]
    raw = (
        (hh >= hue[0])
        & (hh <= hue[1])
        & (ss >= min_saturation)
        & (vv >= value[0])
        & (vv <= value[1])
        & (bg >= min_blue_excess)
        & (excess >= min_excess)
    ).numpy()
    conn = np.zeros((3, 3, 3), dtype=bool)
    conn[1] = ndimage.generate_binary_structure(2, 2)
    if grow is not None and raw.any():
        weak = (excess >= float(grow)).numpy() | raw
        lab, nlab = ndimage.label(weak, structure=conn)
        has_strong = np.zeros(nlab + 1, dtype=bool)
        has_strong[np.unique(lab[raw])] = True
        has_strong[0] = False
        raw = has_strong[lab]
    # 2-D structuring elements stacked along a singleton batch axis: images never touch each other
    st = np.zeros((3, 3, 3), dtype=bool)
    st[1] = True
    out = raw
    if closing:
        # pad so that closing does not erode at the border
        padded = np.pad(out, ((0, 0), (closing, closing), (closing, closing)), mode="edge")
        padded = ndimage.binary_closing(padded, structure=st, iterations=int(closing))
        out = padded[:, closing:-closing, closing:-closing]
    if dilation:
        out = ndimage.binary_dilation(out, structure=st, iterations=int(dilation))
    if min_size > 1 and out.any():
        lab, nlab = ndimage.label(out, structure=conn)
        sizes = np.bincount(lab.ravel(), minlength=nlab + 1)
        small = sizes < min_size
        small[0] = False
        out = out & ~small[lab]
    return torch.from_numpy(np.ascontiguousarray(out))


def mask_iou(pred: Any, truth: Any, empty: float = 1.0) -> torch.Tensor:
    """Intersection over union per image of two bool mask stacks (N,H,W).

    ``empty`` is returned where both masks are empty (default 1: both agree there is nothing).
    """
    p = as_masks(pred, name="pred")
    t = as_masks(truth, like=p, name="truth")
    inter = (p & t).flatten(1).sum(1).double()
    union = (p | t).flatten(1).sum(1).double()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.full_like(inter, float(empty)))


def ink_by_class(
    images: Any,
    labels: Any,
    rates: dict[str, float] | Any,
    class_names: list[str] | None = None,
    colors: dict[str, tuple[float, float, float]] | None = None,
    lesion_masks: Any = None,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Paint marker ink with a per-class rate and an optional per-class colour.

    Each image of class ``c`` gets ink with probability ``rates[c]`` (drawn from
    ``default_rng([seed, 7])``, 7 being ``_INK_STREAM``); the strokes come from :func:`xaibias.data.insert_artifact`, with
    ``colors[c]`` as the ink colour where given (for example :data:`PIGMENT_INK` to make ink look
    like lesion pigment) and the painter's purple/blue marker otherwise.

    Parameters
    ----------
    images : (N,3,H,W) float in [0,1]
    labels : (N,) int class indices
    rates : ``{class_name: rate}`` (needs ``class_names``; missing classes get 0) or one rate per
        class index
    class_names : names of the class indices
    colors : ``{class_name: (r, g, b)}`` for classes whose ink has a special colour
    lesion_masks : optional bool (N,H,W); ink is drawn around the lesion
    seed : non-negative int

    Returns
    -------
    (images, ink_masks, flags) : float32 (N,3,H,W), exact bool (N,H,W) ink masks, bool (N,) numpy
    """
    x = as_images(images)
    lab = as_labels(labels, n=len(x)).numpy()
    k = int(lab.max()) + 1 if class_names is None else len(class_names)
    if isinstance(rates, dict):
        if class_names is None:
            raise ValueError("rates given as {class_name: rate} need class_names")
        bad = sorted(set(rates) - set(class_names))
        if bad:
            raise ValueError(f"rates names unknown class(es) {bad}; the classes are {list(class_names)}")
        per_class = np.array([float(rates.get(c, 0.0)) for c in class_names])
    else:
        per_class = np.asarray(rates, dtype=np.float64)
        if per_class.ndim != 1 or len(per_class) < k:
            raise ValueError(f"rates must give one rate per class ({k}); got {describe(per_class)}")
    if not np.all((per_class >= 0) & (per_class <= 1)):
        raise ValueError(f"rates must be probabilities in [0,1]; got {per_class.tolist()}")
    if lab.max() >= len(per_class):
        raise ValueError(f"labels contain class {int(lab.max())} but rates cover {len(per_class)} classes")
    colors = dict(colors or {})
    if colors and class_names is None:
        raise ValueError("colors given as {class_name: rgb} need class_names")
    bad = sorted(set(colors) - set(class_names or []))
    if bad:
        raise ValueError(f"colors names unknown class(es) {bad}; the classes are {list(class_names or [])}")
    lm = None if lesion_masks is None else as_masks(lesion_masks, like=x[:, 0], name="lesion_masks")
    flags = np.random.default_rng([int(seed), _INK_STREAM]).random(len(x)) < per_class[lab]
    out = x.clone().float()
    masks = torch.zeros(x.shape[0], *x.shape[-2:], dtype=torch.bool)
    groups: dict[Any, list[int]] = {}
    for c in np.unique(lab[flags]):
        key = tuple(colors[class_names[c]]) if class_names is not None and class_names[c] in colors else None
        groups.setdefault(key, []).extend(np.flatnonzero(flags & (lab == c)).tolist())
    from .artifacts import insert_artifact

    for key, idx_list in groups.items():
        idx = torch.as_tensor(sorted(idx_list))
        params = {} if key is None else {"color": key}
        sub_lm = None if lm is None else lm[idx]
        imgs, m = insert_artifact(out[idx], "ink", seed=int(seed), lesion_masks=sub_lm, **params)
        out[idx], masks[idx] = imgs, m
    return out, masks, flags


def ablate_to_ink(images: Any, ink_masks: Any) -> torch.Tensor:
    """Keep only the ink: every pixel outside ``ink_masks`` becomes the image's mean colour.

    The "ablated" training set of Pfau et al. (2019): a model trained on it can use nothing but
    the ink, so its accuracy above chance measures how much the ink alone reveals about the class.
    """
    x = as_images(images)
    m = as_masks(ink_masks, like=x[:, 0], name="ink_masks")
    mean = x.mean(dim=(2, 3), keepdim=True).expand_as(x)
    return torch.where(m[:, None], x, mean).float()


def scale_rates(rates: dict[str, float], strength: float, centre: float = 0.66) -> dict[str, float]:
    """Per-class ink rates whose distance from ``centre`` is multiplied by ``strength``, clipped to [0, 1].

    ``strength`` 1 returns ``rates``; 0 gives every class ``centre`` (no bias); 5 pushes the rates
    five times as far apart (the dose-response check of notebook 03).
    """
    if not isinstance(rates, dict) or not rates:
        raise TypeError(f"rates must be a non-empty dict class name -> rate; got {describe(rates)}")
    if not np.isfinite(strength) or strength < 0:
        raise ValueError(f"strength must be a finite number >= 0; got {strength!r}")
    if not 0 <= centre <= 1:
        raise ValueError(f"centre must lie in [0, 1]; got {centre!r}")
    return {c: float(np.clip(centre + strength * (r - centre), 0, 1)) for c, r in rates.items()}


def ink_training_sets(
    base: Any,
    extra: Any,
    rates: dict[str, float],
    class_names: list[str],
    colors: dict[str, tuple[float, float, float]] | None = None,
    unbiased_rate: float = 0.66,
    seed: int = 0,
) -> dict[str, tuple[torch.Tensor, torch.Tensor, np.ndarray]]:
    """The four training sets of Pfau et al. (2019, Table 1), built from lesion datasets with masks.

    ``base`` and ``extra`` are datasets with ``images``, ``labels`` and ``masks["lesion"]`` (for
    example two :class:`xaibias.data.SyntheticLesions` with different seeds). Returns
    ``{name: (images, labels, ink_flags)}`` for

    - ``baseline``: ``base`` inked with the per-class ``rates`` (:func:`ink_by_class`);
    - ``unbiased``: the baseline pooled with the uninked ``extra`` images, resampled
      (:func:`xaibias.data.unbiased_resample`) so that ``unbiased_rate`` of every class is inked:
      P(class | ink) = P(class | no ink); the extra pool is needed because the classes with the
      highest ink rates have too few uninked images;
    - ``ink-only``: every ``base`` image inked (new strokes, ``seed + 1``);
    - ``ablated``: the ink-only images with every pixel but the ink replaced by the mean colour.
    """
    if not 0 < unbiased_rate < 1:
        raise ValueError(f"unbiased_rate must lie strictly between 0 and 1; got {unbiased_rate!r}")
    y, lesion = base.labels, base.masks["lesion"]
    x_base, _, f_base = ink_by_class(base.images, y, rates, class_names, colors, lesion, seed=seed)
    pool_x, pool_y = torch.cat([x_base, extra.images]), torch.cat([y, extra.labels])
    pool_f = np.concatenate([f_base, np.zeros(len(extra.labels), bool)])
    keep = unbiased_resample(pool_y, pool_f, ratio=(1 - unbiased_rate) / unbiased_rate, seed=seed)
    x_ink, m_ink, _ = ink_by_class(base.images, y, {c: 1.0 for c in class_names}, class_names, colors, lesion,
                                   seed=seed + 1)
    return {
        "baseline": (x_base, y, f_base),
        "unbiased": (pool_x[keep], pool_y[keep], pool_f[keep]),
        "ink-only": (x_ink, y, np.ones(len(y), bool)),
        "ablated": (ablate_to_ink(x_ink, m_ink), y, np.ones(len(y), bool)),
    }
