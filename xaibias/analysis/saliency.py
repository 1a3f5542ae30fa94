"""Global saliency: aggregate per-image saliency over an artifact mask (Pfau et al. 2019).

Pfau, Young, Wei and Keiser (2019), *Global Saliency: Aggregating Saliency Maps to Assess Dataset
Artefact Bias*, ask how much a classifier looks at surgical-marker ink. Every heatmap is reduced to
one number per image over the ink mask, and those numbers are aggregated per class and per training
set:

- :func:`mean_saliency` -- ``m``: the mean saliency over the mask pixels of each image;
- :func:`peak_saliency` -- ``n_P``: the share of the image's top-(100-P)% most salient pixels that
  fall inside the mask (P = 98: the top 2%);
- :func:`zscore` -- standardise values within each dataset (training set / model), so that models
  whose heatmaps live on different scales can be compared;
- :func:`global_saliency` -- per-class mean with a bootstrap 95% confidence interval (tidy
  DataFrame, one row per class);
- :func:`saliency_table` and :func:`global_table` -- the same for several models and saliency
  methods at once, as notebook 03 compares them.

The comparison of class means between models lives in :mod:`xaibias.analysis.variance`, saliency
as a failure predictor in :mod:`xaibias.analysis.failure`.

Images whose mask is empty have no ``m`` or ``n_P``. They are *excluded*, never turned into NaN:
the per-image functions return a :class:`pandas.Series` indexed by the position of each kept image,
and report the exclusions in ``series.attrs`` (``n_total``, ``n_empty``, ``empty_index``). The
aggregating functions accept such a Series together with labels for all ``n_total`` images and pick
the labels at the Series index.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from .._checks import as_labels, as_masks, as_relevance
from ..explain import attribute
from ._values import as_values, check_class_names, check_methods, check_models, plain, values_and_labels

__all__ = [
    "mean_saliency",
    "peak_saliency",
    "zscore",
    "global_saliency",
    "class_means",
    "saliency_table",
    "global_table",
]


# ----------------------------------------------------------------------------------------------
# per-image aggregation
# ----------------------------------------------------------------------------------------------


def _relevance_and_masks(R: Any, masks: Any) -> tuple[torch.Tensor, torch.Tensor]:
    rel = as_relevance(R, name="R").double()
    m = as_masks(masks, like=rel, name="masks")
    return rel, m


def _kept_series(values: torch.Tensor, keep: torch.Tensor, name: str, **extra: Any) -> pd.Series:
    idx = keep.nonzero().flatten().numpy()
    empty = (~keep).nonzero().flatten().numpy()
    out = pd.Series(values[keep].numpy().astype(np.float64), index=pd.Index(idx, name="image"), name=name)
    out.attrs.update(
        {"n_total": int(len(keep)), "n_empty": int(len(empty)), "empty_index": empty.tolist(), **extra}
    )
    return out


def mean_saliency(R: Any, masks: Any) -> pd.Series:
    """Mean saliency ``m`` over the mask pixels of each image.

    Parameters
    ----------
    R : tensor or array (N,H,W)
        Saliency maps ((N,C,H,W) maps are summed over C). NaN or infinite values raise.
    masks : bool tensor or array (N,H,W)
        Artifact (ink) masks, one per map.

    Returns
    -------
    pandas.Series
        ``m`` for every image whose mask is non-empty, indexed by the image position (0..N-1),
        named ``"m"``. Images with an empty mask are left out; ``attrs`` holds ``n_total``,
        ``n_empty`` and ``empty_index``.

    Raises
    ------
    ValueError
        When shapes or dtypes do not match (the message names ``R`` or ``masks``), or when every
        mask is empty.
    """
    rel, m = _relevance_and_masks(R, masks)
    area = m.flatten(1).sum(1)
    keep = area > 0
    if not bool(keep.any()):
        raise ValueError(f"masks are all empty ({len(keep)} images); mean saliency is undefined")
    total = (rel * m).flatten(1).sum(1)
    values = total / area.clamp_min(1)
    return _kept_series(values, keep, "m")


def peak_saliency(R: Any, masks: Any, percentile: float = 98, absolute: bool = False) -> pd.Series:
    """Peak saliency ``n_P``: the share of each image's most salient pixels that lie in the mask.

    The top ``k = ceil(H*W*(100 - percentile)/100)`` pixels by saliency are selected (``k`` is at
    least 1). Pixels tied at the k-th largest value share the remaining slots in proportion, so the
    result does not depend on an arbitrary tie order: an all-zero (or constant) map gets the mask's
    area fraction, the chance level. ``n_P`` is then (pixels of the top-k inside the mask) / k,
    a number in [0, 1].

    Parameters
    ----------
    R : tensor or array (N,H,W)
        Saliency maps ((N,C,H,W) maps are summed over C).
    masks : bool tensor or array (N,H,W)
        Artifact masks.
    percentile : float, default 98
        P in (0, 100): the top (100 - P)% pixels count as peak pixels (Pfau et al. use P = 98).
    absolute : bool, default False
        Rank pixels by ``|R|`` instead of ``R`` (for signed maps where negative evidence counts).

    Returns
    -------
    pandas.Series
        ``n_P`` per image with a non-empty mask, indexed by image position, named ``"n_P<P>"``;
        ``attrs`` holds ``n_total``, ``n_empty``, ``empty_index``, ``k`` and ``n_flat_maps`` (the
        number of constant maps, which got the chance level).
    """
    if isinstance(percentile, bool) or not isinstance(percentile, (int, float, np.integer, np.floating)):
        raise ValueError(f"percentile must be a number in (0, 100); got {percentile!r}")
    if not 0 < float(percentile) < 100:
        raise ValueError(f"percentile must be in (0, 100) (exclusive); got {percentile!r}")
    rel, m = _relevance_and_masks(R, masks)
    n = rel.shape[0]
    flat = rel.flatten(1)
    if absolute:
        flat = flat.abs()
    mflat = m.flatten(1)
    hw = flat.shape[1]
    k = max(1, int(np.ceil(hw * (100.0 - float(percentile)) / 100.0 - 1e-9)))
    kth = torch.topk(flat, k, dim=1).values[:, -1:]  # k-th largest value per image
    above = flat > kth
    tied = flat == kth
    n_above = above.sum(1).double()
    n_tied = tied.sum(1).double()
    inside_above = (above & mflat).sum(1).double()
    inside_tied = (tied & mflat).sum(1).double()
    # Slots left for the tied pixels are filled in proportion to how many of them lie in the mask.
    inside = inside_above + (k - n_above) * inside_tied / n_tied
    values = inside / k
    keep = mflat.sum(1) > 0
    if not bool(keep.any()):
        raise ValueError(f"masks are all empty ({n} images); peak saliency is undefined")
    n_flat = int((flat.amax(1) == flat.amin(1)).sum())
    name = f"n_P{float(percentile):g}"
    return _kept_series(values, keep, name, k=k, n_flat_maps=n_flat, percentile=float(percentile))


# ----------------------------------------------------------------------------------------------


def zscore(values: Any, groups: Any = None, ddof: int = 0) -> pd.Series | np.ndarray:
    """Standardise saliency values to mean 0 and standard deviation 1 within each dataset.

    Pfau et al. z-score the per-image saliency of each dataset, so that models whose maps have
    different scales (a property of the model, not of its bias) can be compared class by class.

    Parameters
    ----------
    values : Series or 1-D array
        Per-image saliency values (for example from :func:`mean_saliency`).
    groups : 1-D array-like, optional
        Dataset (or model) of each value; values are standardised within each group. ``None``
        treats all values as one dataset.
    ddof : int, default 0
        Delta degrees of freedom of the standard deviation.

    Returns
    -------
    Series or ndarray
        Same type, index and attrs as ``values`` (an ndarray for array input).

    Raises
    ------
    ValueError
        When a group has constant values (its standard deviation is 0), naming the group.
    """
    v = as_values(values)
    g = np.zeros(len(v), dtype=np.int64) if groups is None else np.asarray(groups)
    if g.ndim != 1 or len(g) != len(v):
        raise ValueError(f"groups must be 1-D with one entry per value ({len(v)}); got shape {g.shape}")
    keys, inv = np.unique(g, return_inverse=True)
    out = np.empty_like(v)
    for j, key in enumerate(keys):
        sel = inv == j
        sd = v[sel].std(ddof=ddof) if sel.sum() > ddof else 0.0
        if not sd > 0:
            raise ValueError(
                f"cannot z-score group {plain(key)!r}: its {int(sel.sum())} value(s) have zero "
                "standard deviation"
            )
        out[sel] = (v[sel] - v[sel].mean()) / sd
    if isinstance(values, pd.Series):
        res = pd.Series(out, index=values.index, name=values.name)
        res.attrs.update(values.attrs)
        return res
    return out


# ----------------------------------------------------------------------------------------------
# per-class aggregation
# ----------------------------------------------------------------------------------------------


def global_saliency(
    values: Any,
    labels: Any,
    class_names: Sequence[str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> pd.DataFrame:
    """Global saliency: the per-class mean of per-image saliency with a bootstrap confidence interval.

    Parameters
    ----------
    values : Series or 1-D array
        Per-image values (``m`` or ``n_P``, z-scored or not).
    labels : 1-D int array-like
        Class per value, or class per image when ``values`` is a Series from
        :func:`mean_saliency` / :func:`peak_saliency` (its index picks the labels).
    class_names : sequence of str, optional
        Name of each class index.
    n_boot : int, default 1000
        Bootstrap resamples per class (percentile interval).
    seed : int, default 0
        Seed of the bootstrap.
    ci : float, default 0.95
        Coverage of the interval.

    Returns
    -------
    pandas.DataFrame
        One row per class that has at least one value, columns ``class``, ``class_name``, ``n``,
        ``mean``, ``ci_low``, ``ci_high``. ``attrs`` carries ``n_empty`` (images left out for an
        empty mask, from the input Series) and ``missing_classes`` (named classes without values).
    """
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive int; got {n_boot!r}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1); got {ci!r}")
    v, lab = values_and_labels(values, labels)
    names = check_class_names(class_names, lab)
    rng = np.random.default_rng(seed)
    alpha = (1 - ci) / 2
    rows = []
    for c in np.unique(lab):
        x = v[lab == c]
        n = len(x)
        # vectorised bootstrap, in chunks so that n_boot x n stays small in memory
        means = np.empty(n_boot)
        step = max(1, 2_000_000 // n)
        for s in range(0, n_boot, step):
            b = min(step, n_boot - s)
            means[s : s + b] = x[rng.integers(0, n, size=(b, n))].mean(axis=1)
        lo, hi = np.quantile(means, [alpha, 1 - alpha])
        rows.append(
            {
                "class": int(c),
                "class_name": names[c] if names is not None else str(int(c)),
                "n": n,
                "mean": float(x.mean()),
                "ci_low": float(lo),
                "ci_high": float(hi),
            }
        )
    out = pd.DataFrame(rows, columns=["class", "class_name", "n", "mean", "ci_low", "ci_high"])
    present = set(out["class"].tolist())
    out.attrs["n_empty"] = int(getattr(values, "attrs", {}).get("n_empty", 0))
    out.attrs["missing_classes"] = (
        [nm for i, nm in enumerate(names) if i not in present] if names is not None else []
    )
    return out


def class_means(values: Any, labels: Any) -> pd.Series:
    """Mean value per class (index: class index), for classes that have at least one value."""
    v, lab = values_and_labels(values, labels)
    return pd.Series(v).groupby(lab).mean().rename_axis("class").rename("mean")


# ----------------------------------------------------------------------------------------------
# several models and methods at once
# ----------------------------------------------------------------------------------------------


def saliency_table(
    models: Mapping[str, torch.nn.Module],
    images: Any,
    labels: Any,
    masks: Any,
    methods: Mapping[str, dict],
    percentile: float = 98,
    target: str = "true",
    batch_size: int = 64,
) -> tuple[pd.DataFrame, dict[tuple[str, str], torch.Tensor]]:
    """Mask saliency of several models under several saliency methods, one row per image.

    For every model (``models``: name -> model, e.g. one per training set) and method (``methods``:
    method name -> keyword arguments of :func:`xaibias.explain.attribute`), explain ``images`` and
    reduce each map over ``masks`` twice: ``m (z)`` (:func:`mean_saliency`, z-scored within the
    model and method) and ``n_P<percentile>`` (:func:`peak_saliency`).

    Parameters
    ----------
    target : ``"true"`` (explain the labelled class) or ``"predicted"``.

    Returns
    -------
    (table, maps)
        ``table`` has columns ``train_set, method, aggregation, image, label, value`` (``image`` is
        the position in ``images``; images with an empty mask are left out); ``maps[name, method]``
        is the (N,H,W) relevance.
    """
    models, methods = check_models(models), check_methods(methods)
    if target not in ("true", "predicted"):
        raise ValueError(f"target must be 'true' or 'predicted'; got {target!r}")
    y = as_labels(labels, name="labels")
    rows, maps = [], {}
    for name, model in models.items():
        tgt = y if target == "true" else None
        for method, kw in methods.items():
            R = attribute(model, images, target=tgt, method=method, batch_size=batch_size, **kw)
            maps[name, method] = R
            for agg, values in (("m (z)", zscore(mean_saliency(R, masks))),
                                (f"n_P{percentile:g}", peak_saliency(R, masks, percentile))):
                rows.append(pd.DataFrame({"train_set": name, "method": method, "aggregation": agg,
                                          "image": values.index, "label": y.numpy()[values.index],
                                          "value": values.to_numpy()}))
    return pd.concat(rows, ignore_index=True), maps


def global_table(table: pd.DataFrame, class_names: Sequence[str] | None = None, n_boot: int = 1000,
                 seed: int = 0) -> pd.DataFrame:
    """:func:`global_saliency` for every (train_set, method, aggregation) of a :func:`saliency_table`.

    Returns the global-saliency rows (one per class) with the three key columns added.
    """
    missing = {"train_set", "method", "aggregation", "value", "label"} - set(getattr(table, "columns", []))
    if missing:
        raise ValueError(f"table lacks column(s) {sorted(missing)}; pass the table from saliency_table()")
    out = []
    for (name, method, agg), g in table.groupby(["train_set", "method", "aggregation"], sort=False):
        gs = global_saliency(g["value"].to_numpy(), g["label"].to_numpy(), class_names, n_boot=n_boot, seed=seed)
        out.append(gs.assign(train_set=name, method=method, aggregation=agg))
    return pd.concat(out, ignore_index=True)
