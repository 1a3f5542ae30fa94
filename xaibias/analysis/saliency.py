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
- :func:`interclass_variance` and :func:`compare_interclass_variance` -- the variance of the class
  means, and Levene's test between two models' class means;
- :func:`interclass_variance_ci` -- a bootstrap interval over images (resampled within each class)
  for one model's inter-class variance, or for the difference or ratio of two models' variances
  (paired when both hold the same images);
- :func:`wilcoxon_saliency` -- Wilcoxon signed-rank test between two paired saliency distributions
  (the same images under two models or two methods);
- :func:`response_rate_accuracy`, :func:`aurrac` and :func:`rrac_kendall_tau` -- the accuracy on
  the images whose ink saliency lies below each percentile threshold, the area under that curve,
  and Kendall's tau of the curve (negative: accuracy falls as more ink-salient images are answered).

Images whose mask is empty have no ``m`` or ``n_P``. They are *excluded*, never turned into NaN:
the per-image functions return a :class:`pandas.Series` indexed by the position of each kept image,
and report the exclusions in ``series.attrs`` (``n_total``, ``n_empty``, ``empty_index``). The
aggregating functions accept such a Series together with labels for all ``n_total`` images and pick
the labels at the Series index.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import stats

from .._checks import as_labels, as_masks, as_relevance, check_same_n, describe

__all__ = [
    "mean_saliency",
    "peak_saliency",
    "zscore",
    "global_saliency",
    "class_means",
    "interclass_variance",
    "compare_interclass_variance",
    "interclass_variance_ci",
    "VarianceComparison",
    "wilcoxon_saliency",
    "WilcoxonResult",
    "response_rate_accuracy",
    "aurrac",
    "rrac_kendall_tau",
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
# helpers for values + labels
# ----------------------------------------------------------------------------------------------


def _as_values(values: Any, name: str = "values") -> np.ndarray:
    if isinstance(values, torch.Tensor):
        arr = values.detach().cpu().numpy()
    elif isinstance(values, (pd.Series, np.ndarray, list, tuple)):
        arr = np.asarray(values)
    else:
        raise TypeError(f"{name} must be a pandas Series, numpy array, tensor or list; got {describe(values)}")
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one saliency value per image); got shape {arr.shape}")
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name} must be numeric; got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if len(arr) == 0:
        raise ValueError(f"{name} is empty; expected at least one saliency value")
    if not np.isfinite(arr).all():
        bad = np.flatnonzero(~np.isfinite(arr))
        raise ValueError(
            f"{name} contains NaN or infinite values at position(s) {bad[:10].tolist()}; drop images "
            "without a mask instead (mean_saliency/peak_saliency already do)"
        )
    return arr


def _values_and_labels(values: Any, labels: Any, vname: str = "values") -> tuple[np.ndarray, np.ndarray]:
    """Values and the labels that go with them (labels for all images are picked at a Series index)."""
    v = _as_values(values, vname)
    if isinstance(labels, (pd.Series, pd.Index)):
        labels = labels.to_numpy()
    lab = as_labels(labels, name="labels").numpy()
    if len(lab) != len(v):
        if isinstance(values, pd.Series) and len(values) and pd.api.types.is_integer_dtype(values.index):
            idx = values.index.to_numpy()
            if idx.min() < 0 or idx.max() >= len(lab):
                raise ValueError(
                    f"labels has {len(lab)} entries but {vname} is indexed up to image {idx.max()}; "
                    "give one label per image"
                )
            lab = lab[idx]
        else:
            raise ValueError(
                f"labels has {len(lab)} entries but {vname} has {len(v)}; give one label per value, or "
                "one per image together with the Series returned by mean_saliency/peak_saliency"
            )
    return v, lab


def _check_class_names(class_names: Sequence[str] | None, labels: np.ndarray) -> list[str] | None:
    if class_names is None:
        return None
    names = list(class_names)
    if len(labels) and labels.max() >= len(names):
        raise ValueError(
            f"class_names has {len(names)} names but labels contain class {int(labels.max())}; "
            "give one name per class index"
        )
    return names


def _plain(x: Any) -> Any:
    return x.item() if isinstance(x, np.generic) else x


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
    v = _as_values(values)
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
                f"cannot z-score group {_plain(key)!r}: its {int(sel.sum())} value(s) have zero "
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
    v, lab = _values_and_labels(values, labels)
    names = _check_class_names(class_names, lab)
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
    v, lab = _values_and_labels(values, labels)
    return pd.Series(v).groupby(lab).mean().rename_axis("class").rename("mean")


def interclass_variance(values: Any, labels: Any, ddof: int = 0) -> float:
    """Variance of the per-class mean saliency across classes.

    A model that uses ink as evidence for some classes and against others spreads its class means
    apart; Pfau et al. report 0.007 for the baseline and 0.003 for the unbiased model.

    Parameters
    ----------
    values, labels
        As in :func:`global_saliency`.
    ddof : int, default 0
        Delta degrees of freedom (0: population variance of the class means).
    """
    means = class_means(values, labels).to_numpy()
    if len(means) <= ddof:
        raise ValueError(f"need more than {ddof} classes with values for the variance; got {len(means)}")
    return float(np.var(means, ddof=ddof))


@dataclass(frozen=True)
class VarianceComparison:
    """Result of :func:`compare_interclass_variance`."""

    variance_a: float
    variance_b: float
    levene_statistic: float
    p_value: float
    n_classes_a: int
    n_classes_b: int
    center: str

    @property
    def significant(self) -> bool:
        """Whether the variances differ at the 5% level."""
        return self.p_value < 0.05

    def as_dict(self) -> dict[str, Any]:
        """Fields as a plain dict."""
        return asdict(self)


def compare_interclass_variance(
    values_a: Any,
    labels_a: Any,
    values_b: Any,
    labels_b: Any,
    center: str = "median",
    ddof: int = 0,
) -> VarianceComparison:
    """Inter-class variance of two models and Levene's test for equal variance of their class means.

    Levene's test is applied to the two vectors of per-class mean saliency (one entry per class),
    so it asks whether the classes are spread further apart under model ``a`` than under ``b``.
    With seven classes the test has little power (Pfau et al. found 0.007 vs 0.003 not
    significant).

    Parameters
    ----------
    values_a, labels_a, values_b, labels_b
        Per-image values and labels of each model (as in :func:`global_saliency`).
    center : {"median", "mean", "trimmed"}, default "median"
        Centre of Levene's test (``"median"``: the Brown-Forsythe variant).
    ddof : int, default 0
        Delta degrees of freedom of the reported variances.
    """
    if center not in ("median", "mean", "trimmed"):
        raise ValueError(f"center must be 'median', 'mean' or 'trimmed'; got {center!r}")
    ma = class_means(values_a, labels_a).to_numpy()
    mb = class_means(values_b, labels_b).to_numpy()
    if len(ma) < 2 or len(mb) < 2:
        raise ValueError(
            f"Levene's test needs at least 2 classes with values per model; got {len(ma)} and {len(mb)}"
        )
    stat, p = stats.levene(ma, mb, center=center)
    return VarianceComparison(
        variance_a=float(np.var(ma, ddof=ddof)),
        variance_b=float(np.var(mb, ddof=ddof)),
        levene_statistic=float(stat),
        p_value=float(p),
        n_classes_a=len(ma),
        n_classes_b=len(mb),
        center=center,
    )


def _class_groups(lab: np.ndarray) -> dict[int, np.ndarray]:
    return {int(c): np.flatnonzero(lab == c) for c in np.unique(lab)}


def _boot_class_means(v: np.ndarray, groups: dict[int, np.ndarray], draws: dict[int, np.ndarray]) -> np.ndarray:
    """(n_boot, n_classes) class means of ``v`` under the resampled positions ``draws``."""
    return np.stack([v[groups[c][draws[c]]].mean(axis=1) for c in sorted(groups)], axis=1)


def interclass_variance_ci(
    values_a: Any,
    labels_a: Any,
    values_b: Any = None,
    labels_b: Any = None,
    statistic: str = "difference",
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    ddof: int = 0,
) -> tuple[float, float, float]:
    """Inter-class variance with a bootstrap interval over images, alone or against a second model.

    Images are resampled with replacement *within each class* (every class keeps its count, so no
    class drops out of a resample), and the inter-class variance is recomputed on each resample.
    With a second model the statistic is ``var_a - var_b`` (``statistic="difference"``) or
    ``var_a / var_b`` (``"ratio"``). When both inputs are Series over the same images (same index,
    as returned by :func:`mean_saliency` / :func:`peak_saliency` for two models on one test set),
    each resample draws the *same* images for both models (a paired bootstrap), so the interval
    reflects how the two models differ on the images rather than which images were drawn.
    Otherwise the two samples are resampled independently.

    Parameters
    ----------
    values_a, labels_a
        Per-image values and labels of the first model (as in :func:`global_saliency`).
    values_b, labels_b : optional
        The same for the second model; ``None`` gives the interval of ``var_a`` alone.
    statistic : {"difference", "ratio"}, default "difference"
        How the two variances are compared (ignored without a second model).
    n_boot : int, default 1000
        Bootstrap resamples (at least 100).
    level : float, default 0.95
        Coverage of the percentile interval.
    seed : int, default 0
        Seed of the resampling.
    ddof : int, default 0
        Delta degrees of freedom of the variance of the class means.

    Returns
    -------
    (value, low, high) : tuple of float
        The statistic on all images and its percentile interval.

    Raises
    ------
    ValueError
        When the two models do not cover the same classes, when paired labels disagree, when a
        ratio has a zero denominator, or for a bad ``statistic``, ``n_boot`` or ``level``.
    """
    if statistic not in ("difference", "ratio"):
        raise ValueError(f"statistic must be 'difference' or 'ratio'; got {statistic!r}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 100:
        raise ValueError(f"n_boot must be an int >= 100; got {n_boot!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1); got {level!r}")
    if (values_b is None) != (labels_b is None):
        raise ValueError("give both values_b and labels_b, or neither")
    va, la = _values_and_labels(values_a, labels_a, "values_a")
    ga = _class_groups(la)
    if len(ga) <= ddof or len(ga) < 2:
        raise ValueError(f"need at least 2 classes with values (and more than ddof={ddof}); got {len(ga)}")
    rng = np.random.default_rng(seed)
    n_boot = int(n_boot)
    draws_a = {c: rng.integers(0, len(idx), size=(n_boot, len(idx))) for c, idx in ga.items()}
    boot_a = np.var(_boot_class_means(va, ga, draws_a), axis=1, ddof=ddof)
    point_a = float(np.var([va[idx].mean() for _, idx in sorted(ga.items())], ddof=ddof))
    if values_b is None:
        value, draws = point_a, boot_a
    else:
        vb, lb = _values_and_labels(values_b, labels_b, "values_b")
        gb = _class_groups(lb)
        if sorted(ga) != sorted(gb):
            raise ValueError(
                f"the two models must cover the same classes; got {sorted(ga)} and {sorted(gb)}"
            )
        paired = (
            isinstance(values_a, pd.Series)
            and isinstance(values_b, pd.Series)
            and values_a.index.equals(values_b.index)
        )
        if paired:
            if not np.array_equal(la, lb):
                raise ValueError("values_a and values_b share their image index but their labels differ")
            draws_b = draws_a
        else:
            draws_b = {c: rng.integers(0, len(idx), size=(n_boot, len(idx))) for c, idx in gb.items()}
        boot_b = np.var(_boot_class_means(vb, gb, draws_b), axis=1, ddof=ddof)
        point_b = float(np.var([vb[idx].mean() for _, idx in sorted(gb.items())], ddof=ddof))
        if statistic == "difference":
            value, draws = point_a - point_b, boot_a - boot_b
        else:
            if point_b == 0 or np.any(boot_b == 0):
                raise ValueError("the second model's inter-class variance is 0 (on the data or a resample); "
                                 "use statistic='difference'")
            value, draws = point_a / point_b, boot_a / boot_b
    alpha = (1 - level) / 2
    low, high = np.quantile(draws, [alpha, 1 - alpha])
    return float(value), float(low), float(high)


@dataclass(frozen=True)
class WilcoxonResult:
    """Result of :func:`wilcoxon_saliency`."""

    statistic: float
    p_value: float
    n: int
    n_dropped: int
    median_difference: float

    def as_dict(self) -> dict[str, Any]:
        """Fields as a plain dict."""
        return asdict(self)


def wilcoxon_saliency(a: Any, b: Any, alternative: str = "two-sided") -> WilcoxonResult:
    """Wilcoxon signed-rank test between two paired saliency distributions.

    Pairs are the same images under two models or two methods. When both inputs are Series (from
    :func:`mean_saliency` / :func:`peak_saliency`) they are aligned on their index, so an image that
    was excluded in either is dropped (counted in ``n_dropped``); arrays must have equal length.

    Parameters
    ----------
    a, b : Series or 1-D array
        Paired values.
    alternative : {"two-sided", "greater", "less"}
        Alternative hypothesis on ``a - b``.
    """
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError(f"alternative must be 'two-sided', 'greater' or 'less'; got {alternative!r}")
    if isinstance(a, pd.Series) and isinstance(b, pd.Series):
        common = a.index.intersection(b.index)
        dropped = len(a.index.union(b.index)) - len(common)
        x, y = _as_values(a.loc[common], "a"), _as_values(b.loc[common], "b")
    else:
        x, y = _as_values(a, "a"), _as_values(b, "b")
        check_same_n(a=x, b=y)
        dropped = 0
    d = x - y
    if not np.any(d != 0):
        raise ValueError("a and b are identical on every pair; the signed-rank test is undefined")
    res = stats.wilcoxon(x, y, alternative=alternative)
    return WilcoxonResult(
        statistic=float(res.statistic),
        p_value=float(res.pvalue),
        n=len(x),
        n_dropped=int(dropped),
        median_difference=float(np.median(d)),
    )


# ----------------------------------------------------------------------------------------------
# saliency as a failure predictor
# ----------------------------------------------------------------------------------------------


def response_rate_accuracy(
    correct: Any, saliency: Any, percentiles: Any = None
) -> pd.DataFrame:
    """Accuracy on the images whose (ink) saliency is at most each percentile threshold.

    If a model errs when it looks at ink, answering only the images with little ink saliency
    should be more accurate: the curve falls as the response rate grows.

    For each percentile q the threshold is the smallest observed saliency value with at least q% of
    the values at or below it (the inverted-CDF percentile, so thresholds are data values); the
    subset is every image with saliency <= threshold (ties are kept together), the response rate is
    the subset's share of all images and the accuracy is its share of correct predictions.

    Parameters
    ----------
    correct : 1-D bool array-like
        Whether each prediction is correct.
    saliency : Series or 1-D array
        Saliency value of each image (same length as ``correct``, or a Series from
        :func:`mean_saliency` whose index picks the entries of ``correct``).
    percentiles : 1-D array-like, optional
        Percentiles in (0, 100]; default 1, 2, ..., 100.

    Returns
    -------
    pandas.DataFrame
        Columns ``percentile``, ``threshold``, ``n``, ``response_rate``, ``accuracy``.
    """
    s = _as_values(saliency, "saliency")
    c = _as_correct(correct)
    if len(c) != len(s):
        if isinstance(saliency, pd.Series) and pd.api.types.is_integer_dtype(saliency.index) and saliency.index.max() < len(c):
            c = c[saliency.index.to_numpy()]
        else:
            raise ValueError(
                f"correct has {len(c)} entries but saliency has {len(s)}; give one per image"
            )
    q = np.arange(1, 101, dtype=np.float64) if percentiles is None else np.asarray(percentiles, np.float64)
    if q.ndim != 1 or len(q) == 0 or not np.all((q > 0) & (q <= 100)):
        raise ValueError(f"percentiles must be a non-empty 1-D sequence in (0, 100]; got {percentiles!r}")
    thr = np.percentile(s, q, method="inverted_cdf")
    order = np.argsort(s, kind="stable")
    s_sorted = s[order]
    cum_correct = np.cumsum(c[order])
    n_in = np.searchsorted(s_sorted, thr, side="right")  # >= 1 because thr is a data value
    acc = cum_correct[n_in - 1] / n_in
    return pd.DataFrame(
        {
            "percentile": q,
            "threshold": thr,
            "n": n_in.astype(np.int64),
            "response_rate": n_in / len(s),
            "accuracy": acc,
        }
    )


def _as_correct(correct: Any) -> np.ndarray:
    if isinstance(correct, torch.Tensor):
        arr = correct.detach().cpu().numpy()
    else:
        arr = np.asarray(correct)
    if arr.ndim != 1:
        raise ValueError(f"correct must be 1-D (one bool per prediction); got shape {arr.shape}")
    if arr.dtype != bool:
        if np.issubdtype(arr.dtype, np.number) and np.isin(arr, (0, 1)).all():
            arr = arr.astype(bool)
        else:
            raise ValueError(f"correct must be bool (or 0/1); got dtype {arr.dtype}")
    if len(arr) == 0:
        raise ValueError("correct is empty; expected one entry per prediction")
    return arr.astype(np.float64)


def _as_curve(curve: Any) -> pd.DataFrame:
    if not isinstance(curve, pd.DataFrame):
        raise TypeError(f"curve must be the DataFrame from response_rate_accuracy; got {describe(curve)}")
    missing = {"response_rate", "accuracy"} - set(curve.columns)
    if missing:
        raise ValueError(f"curve is missing column(s) {sorted(missing)}; use response_rate_accuracy()")
    if len(curve) < 2:
        raise ValueError(f"curve needs at least 2 points; got {len(curve)}")
    return curve


def aurrac(curve: Any, saliency: Any = None, percentiles: Any = None) -> float:
    """Area under the response-rate accuracy curve, normalised by the range of response rates.

    The result is in accuracy units: a saliency that ranks images at random gives about the overall
    accuracy ``a``; a perfect failure predictor (every error more ink-salient than every correct
    prediction) gives more, tending to ``a + a*ln(1/a)`` on a fine grid. Lower than ``a`` means the
    errors have *low* saliency.

    Parameters
    ----------
    curve : DataFrame or 1-D bool array-like
        The output of :func:`response_rate_accuracy`, or ``correct`` when ``saliency`` is given.
    saliency : optional
        Saliency per image; then ``curve`` is taken as ``correct`` and the curve is computed here.
    percentiles : optional
        Passed to :func:`response_rate_accuracy` when the curve is computed here.
    """
    if saliency is not None:
        curve = response_rate_accuracy(curve, saliency, percentiles)
    df = _as_curve(curve)
    x = df["response_rate"].to_numpy(np.float64)
    y = df["accuracy"].to_numpy(np.float64)
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    span = x[-1] - x[0]
    if span <= 0:
        raise ValueError("curve has a single response rate (all saliency values tied); AURRAC is undefined")
    return float(np.trapezoid(y, x) / span)


def rrac_kendall_tau(curve: Any) -> tuple[float, float]:
    """Kendall's tau (and its p-value) between response rate and accuracy along the curve.

    Negative tau: accuracy falls as more ink-salient images are answered (ink saliency predicts
    failure). Duplicate points (percentiles that give the same subset) are counted once.
    """
    df = _as_curve(curve)[["response_rate", "accuracy"]].drop_duplicates()
    if len(df) < 2:
        raise ValueError("curve has fewer than 2 distinct points; Kendall's tau is undefined")
    res = stats.kendalltau(df["response_rate"].to_numpy(), df["accuracy"].to_numpy())
    tau = float(res.statistic)
    if not np.isfinite(tau):
        # constant accuracy: no association at all
        return 0.0, 1.0
    return tau, float(res.pvalue)
