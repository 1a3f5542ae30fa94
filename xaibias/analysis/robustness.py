"""How stable are heatmaps under small image changes? Blur, sharpen and rotation.

A trustworthy explanation should not change much when the image changes in a way that does not
change what it shows (Pawlik, Siennicki, Ziarko: LRP on medical images under augmentation). For
each image we explain the original and a transformed copy for the *same* class, map the second
heatmap back onto the original pixel grid (a rotation is undone; blur and sharpen keep the grid)
and compare the two maps by

* **rank correlation** (Spearman's rho over the pixels): 1 = the same ordering of pixels, 0 = no
  relation, -1 = reversed; insensitive to any monotone rescaling of the relevance;
* **top-k IoU**: intersection over union of the ``k`` most relevant pixels of the two maps (``k``
  a fraction of the compared pixels or a count): do both maps highlight the same region?

Only pixels that stay inside the frame under the transform are compared (the corners a rotation
cuts off are left out). :func:`robustness_table` does this for several models, LRP composites and
transforms and returns one row per combination with the mean and standard deviation over images;
with ``baseline=True`` it adds the similarity of two *different* images' heatmaps, the trivial
baseline a transform's similarity should be read against.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.stats import rankdata
from torchvision.transforms.functional import InterpolationMode
from torchvision.transforms.functional import gaussian_blur as _tv_gaussian_blur
from torchvision.transforms.functional import rotate as _tv_rotate

from .._checks import as_images, as_relevance, describe
from ..explain import attribute
from ..models import predict_proba

__all__ = [
    "rank_correlation",
    "topk_iou",
    "heatmap_similarity",
    "blur",
    "sharpen",
    "rotate",
    "Transform",
    "TRANSFORMS",
    "BASELINE",
    "get_transform",
    "robustness_table",
]


# --------------------------------------------------------------------------------------------------
# similarity measures


def _pair(a: Any, b: Any, valid: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    a = as_relevance(a, name="heatmaps a")
    b = as_relevance(b, name="heatmaps b")
    if a.shape != b.shape:
        raise ValueError(f"heatmaps a and b must have the same shape (N,H,W); got {tuple(a.shape)} and {tuple(b.shape)}")
    if valid is None:
        v = torch.ones(a.shape[1:], dtype=torch.bool)
    else:
        v = torch.as_tensor(valid)
        if v.dtype != torch.bool or v.shape not in (a.shape[1:], a.shape):
            raise ValueError(
                f"valid must be a bool mask (H,W) or (N,H,W) matching the heatmaps {tuple(a.shape)}; got {describe(v)}"
            )
    if v.ndim == 2:
        v = v.expand_as(a)
    if (v.reshape(len(v), -1).sum(1) < 2).any():
        raise ValueError("valid must keep at least two pixels of every heatmap")
    return a.float(), b.float(), v


def _ranks(x: np.ndarray) -> np.ndarray:
    return rankdata(x, method="average")


def rank_correlation(a: Any, b: Any, valid: Any = None) -> torch.Tensor:
    """Spearman rank correlation between paired heatmaps, one value per image.

    Parameters
    ----------
    a, b : (N,H,W) (or (N,C,H,W), summed over C) relevance maps
    valid : optional bool (H,W) or (N,H,W)
        Pixels to compare (default: all).

    Returns
    -------
    torch.Tensor
        (N,) float64 in [-1, 1]; ties get average ranks.

    Raises
    ------
    ValueError
        When a map is constant on the compared pixels (the correlation is undefined), naming it.
    """
    a, b, v = _pair(a, b, valid)
    out = np.empty(len(a))
    for i in range(len(a)):
        x = a[i][v[i]].double().numpy()
        y = b[i][v[i]].double().numpy()
        for name, z in (("a", x), ("b", y)):
            if np.ptp(z) == 0:
                raise ValueError(
                    f"heatmaps {name}[{i}] is constant on the compared pixels; rank correlation is undefined"
                )
        rx, ry = _ranks(x), _ranks(y)
        rx -= rx.mean()
        ry -= ry.mean()
        out[i] = float((rx * ry).sum() / np.sqrt((rx**2).sum() * (ry**2).sum()))
    return torch.from_numpy(np.clip(out, -1.0, 1.0))


def _k_count(k: float | int, n_pixels: int) -> int:
    if isinstance(k, (int, np.integer)) and not isinstance(k, bool) and k >= 1:
        count = int(k)
    elif isinstance(k, (float, np.floating)) and 0 < float(k) <= 1:
        count = int(round(float(k) * n_pixels))
    else:
        raise ValueError(f"k must be a fraction (float) in (0,1] or a pixel count (int) >= 1; got {k!r}")
    return max(1, min(count, n_pixels))


def topk_iou(a: Any, b: Any, k: float | int = 0.1, valid: Any = None, absolute: bool = False) -> torch.Tensor:
    """Intersection over union of the ``k`` highest-relevance pixels of paired heatmaps.

    Parameters
    ----------
    a, b : (N,H,W) relevance maps
    k : float or int
        A fraction (float) in (0, 1] of the compared pixels (default 0.1) or a pixel count (int).
    valid : optional bool (H,W) or (N,H,W)
        Pixels to compare (default: all).
    absolute : bool
        Rank by ``|relevance|`` instead of signed relevance.

    Returns
    -------
    torch.Tensor
        (N,) float64 in [0, 1]. Ties at the threshold are broken by pixel order (stable).
    """
    a, b, v = _pair(a, b, valid)
    out = np.empty(len(a))
    for i in range(len(a)):
        x, y = a[i][v[i]], b[i][v[i]]
        if absolute:
            x, y = x.abs(), y.abs()
        c = _k_count(k, x.numel())
        top_x = set(torch.sort(x, descending=True, stable=True).indices[:c].tolist())
        top_y = set(torch.sort(y, descending=True, stable=True).indices[:c].tolist())
        out[i] = len(top_x & top_y) / len(top_x | top_y)
    return torch.from_numpy(out)


def heatmap_similarity(a: Any, b: Any, valid: Any = None, k: float | int = 0.1) -> pd.DataFrame:
    """Both measures per image: a DataFrame with columns ``rank_corr`` and ``topk_iou``."""
    return pd.DataFrame(
        {"rank_corr": rank_correlation(a, b, valid).numpy(), "topk_iou": topk_iou(a, b, k=k, valid=valid).numpy()}
    )


# --------------------------------------------------------------------------------------------------
# transforms


def _check_positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not value > 0:
        raise ValueError(f"{name} must be a positive number; got {value!r}")
    return float(value)


def _gauss(images: torch.Tensor, sigma: float) -> torch.Tensor:
    # torchvision's Gaussian blur, truncated at 3 sigma (edges reflected)
    radius = max(1, int(np.ceil(3 * sigma)))
    if radius >= min(images.shape[-2:]):
        raise ValueError(f"sigma {sigma:g} is too large for {tuple(images.shape[-2:])} images: the blur "
                         f"reaches 3 sigma = {radius} pixels, which must be less than the image side")
    return _tv_gaussian_blur(images, kernel_size=[2 * radius + 1] * 2, sigma=[sigma, sigma])


def blur(images: Any, sigma: float = 1.0) -> torch.Tensor:
    """Gaussian blur with standard deviation ``sigma`` pixels (torchvision's, edges reflected)."""
    t = as_images(images)
    return _gauss(t, _check_positive(sigma, "sigma")).clamp(0, 1)


def sharpen(images: Any, amount: float = 1.0, sigma: float = 1.0) -> torch.Tensor:
    """Unsharp masking: ``image + amount * (image - blur(image, sigma))``, clipped to [0, 1]."""
    t = as_images(images)
    amount = _check_positive(amount, "amount")
    return (t + amount * (t - _gauss(t, _check_positive(sigma, "sigma")))).clamp(0, 1)


def rotate(x: Any, angle: float) -> torch.Tensor:
    """Rotate images or maps (N,C,H,W) or (N,H,W) by ``angle`` degrees (counter-clockwise) about the
    centre, bilinear, zero outside. ``rotate(rotate(x, a), -a)`` undoes it up to interpolation."""
    if isinstance(angle, bool) or not isinstance(angle, (int, float, np.integer, np.floating)):
        raise ValueError(f"angle must be a number of degrees; got {angle!r}")
    t = torch.as_tensor(x).float()
    if t.ndim not in (3, 4):
        raise ValueError(f"rotate needs (N,C,H,W) images or (N,H,W) maps; got {describe(t)}")
    flat = t.unsqueeze(1) if t.ndim == 3 else t
    out = _tv_rotate(flat, float(angle), interpolation=InterpolationMode.BILINEAR, fill=0.0)
    return out[:, 0] if t.ndim == 3 else out


@dataclass(frozen=True)
class Transform:
    """An image transform, how to map a heatmap of the transformed image back, and which pixels
    survive it. ``apply(images) -> images``; ``undo(maps (N,H,W)) -> maps``; ``valid(H, W) -> bool
    (H,W)``."""

    name: str
    apply: Callable[[torch.Tensor], torch.Tensor]
    undo: Callable[[torch.Tensor], torch.Tensor]
    valid: Callable[[int, int], torch.Tensor]


def _all_valid(h: int, w: int) -> torch.Tensor:
    return torch.ones(h, w, dtype=torch.bool)


def _rotation(angle: float) -> Transform:
    def valid(h: int, w: int) -> torch.Tensor:
        ones = torch.ones(1, h, w)
        return rotate(rotate(ones, angle), -angle)[0] > 0.999

    return Transform(f"rotate({angle:g})", lambda im: rotate(im, angle).clamp(0, 1), lambda r: rotate(r, -angle), valid)


def get_transform(name: str | Transform, **params: Any) -> Transform:
    """A :class:`Transform` by name: ``"identity"``, ``"blur"`` (``sigma``), ``"sharpen"``
    (``amount``, ``sigma``) or ``"rotate"`` (``angle``, default 15 degrees)."""
    if isinstance(name, Transform):
        return name
    if name == "identity":
        return Transform("identity", lambda im: im.clone(), lambda r: r, _all_valid)
    if name == "blur":
        sigma = params.pop("sigma", 1.0)
        tr = Transform("blur", lambda im: blur(im, sigma), lambda r: r, _all_valid)
    elif name == "sharpen":
        amount, sigma = params.pop("amount", 1.0), params.pop("sigma", 1.0)
        tr = Transform("sharpen", lambda im: sharpen(im, amount, sigma), lambda r: r, _all_valid)
    elif name == "rotate":
        tr = _rotation(params.pop("angle", 15.0))
        tr = Transform("rotate", tr.apply, tr.undo, tr.valid)
    else:
        raise ValueError(f"unknown transform {name!r}; choose one of {list(TRANSFORMS)} or pass a Transform")
    if params:
        raise ValueError(f"unknown parameter(s) {sorted(params)} for transform {name!r}")
    return tr


#: Names accepted by :func:`get_transform` and :func:`robustness_table`.
TRANSFORMS: tuple[str, ...] = ("identity", "blur", "sharpen", "rotate")

#: The ``transform`` value of the baseline rows of :func:`robustness_table` (``baseline=True``).
BASELINE = "other image"


# --------------------------------------------------------------------------------------------------
# the table


def robustness_table(
    models: Mapping[str, torch.nn.Module],
    images: Any,
    composites: Sequence[str] = ("EpsilonPlusFlat", "EpsilonAlpha2Beta1Flat"),
    transforms: Sequence[str | Transform] = ("blur", "sharpen", "rotate"),
    target: Any = None,
    k: float | int = 0.1,
    transform_params: Mapping[str, Mapping[str, Any]] | None = None,
    per_image: bool = False,
    batch_size: int = 32,
    baseline: bool = False,
    **attribute_kwargs: Any,
) -> pd.DataFrame:
    """LRP heatmap similarity under image transforms, per model x composite x transform.

    For every model the class explained is fixed on the original images (``target``, default the
    predicted class), so the transformed image is explained for the same class.

    Parameters
    ----------
    models : dict name -> model
    images : (N,3,H,W) in [0,1]
    composites : LRP composite names (see :data:`xaibias.explain.COMPOSITES`)
    transforms : names of :data:`TRANSFORMS` or :class:`Transform` objects
    target : None (predicted class of the original image), int or one per image
    k : top-k for :func:`topk_iou`
    transform_params : ``{"blur": {"sigma": 1.5}, "rotate": {"angle": 10}}``
    per_image : bool
        Return one row per image (columns model, composite, transform, image, rank_corr, topk_iou)
        instead of the summary.
    batch_size : int
    baseline : bool
        Also add, per model and composite, the row ``transform == BASELINE`` (``"other image"``):
        the similarity of each image's heatmap with the heatmap of *another* image (image ``i``
        with image ``i + 1``, cyclically), both untransformed. It is what two unrelated heatmaps
        share through the common layout of the data alone (a centred lesion, a dark border), the
        trivial baseline the transform rows should be read against. Needs at least two images;
        costs no extra attribution.
    **attribute_kwargs
        Passed to :func:`xaibias.explain.attribute` (for example ``canonizers``).

    Returns
    -------
    pandas.DataFrame
        Summary columns: model, composite, transform, rank_corr_mean, rank_corr_std,
        topk_iou_mean, topk_iou_std, n (std is the spread over images, ddof=1).
    """
    if not isinstance(models, Mapping) or not models:
        raise ValueError(f"models must be a non-empty dict name -> model; got {type(models).__name__}")
    if isinstance(composites, str) or not composites:
        raise ValueError(f"composites must be a non-empty list of composite names; got {composites!r}")
    imgs = as_images(images)
    if baseline and len(imgs) < 2:
        raise ValueError(f"baseline=True compares each heatmap with another image's; give at least 2 images, got {len(imgs)}")
    params = dict(transform_params or {})
    trs = [get_transform(t, **dict(params.get(t, {})) if isinstance(t, str) else {}) for t in transforms]
    rows = []
    h, w = imgs.shape[-2:]
    for mname, model in models.items():
        if target is None:
            tgt = predict_proba(model, imgs).argmax(1)
        else:
            tgt = target
        transformed = {tr.name: tr.apply(imgs) for tr in trs}
        for comp in composites:
            ref = attribute(model, imgs, target=tgt, method="lrp", composite=comp, batch_size=batch_size, **attribute_kwargs)
            for tr in trs:
                r_t = attribute(model, transformed[tr.name], target=tgt, method="lrp", composite=comp,
                                batch_size=batch_size, **attribute_kwargs)
                sim = heatmap_similarity(ref, tr.undo(r_t), valid=tr.valid(h, w), k=k)
                sim.insert(0, "image", np.arange(len(sim)))
                sim.insert(0, "transform", tr.name)
                sim.insert(0, "composite", comp)
                sim.insert(0, "model", mname)
                rows.append(sim)
            if baseline:
                other = torch.roll(ref, shifts=-1, dims=0)
                sim = heatmap_similarity(ref, other, valid=_all_valid(h, w), k=k)
                sim.insert(0, "image", np.arange(len(sim)))
                sim.insert(0, "transform", BASELINE)
                sim.insert(0, "composite", comp)
                sim.insert(0, "model", mname)
                rows.append(sim)
    long = pd.concat(rows, ignore_index=True)
    if per_image:
        return long
    summary = (
        long.groupby(["model", "composite", "transform"], sort=False)
        .agg(
            rank_corr_mean=("rank_corr", "mean"),
            rank_corr_std=("rank_corr", "std"),
            topk_iou_mean=("topk_iou", "mean"),
            topk_iou_std=("topk_iou", "std"),
            n=("rank_corr", "size"),
        )
        .reset_index()
    )
    return summary
