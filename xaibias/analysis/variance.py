"""Do two models' class means of saliency spread differently? (Pfau et al. 2019, Table 2)

- :func:`interclass_variance` -- the variance of the class means of one model's saliency values;
- :func:`compare_interclass_variance` -- the same for two models, with Levene's test between their
  class means (the paper's test; seven values a side give it little power);
- :func:`interclass_variance_ci` -- a bootstrap interval over images (resampled within each class)
  for one model's inter-class variance, or for the difference or ratio of two models' variances
  (paired when both hold the same images);
- :func:`wilcoxon_saliency` -- Wilcoxon signed-rank test between two paired saliency distributions
  (the same images under two models or two methods);
- :func:`variance_table` -- all of these for every method and aggregation of a
  :func:`xaibias.analysis.saliency.saliency_table`.

Values come one per image, as :func:`~xaibias.analysis.saliency.mean_saliency` and
:func:`~xaibias.analysis.saliency.peak_saliency` return them (images without a mask are left out).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from .._checks import check_same_n
from ._values import as_values, values_and_labels
from .saliency import class_means

__all__ = [
    "interclass_variance",
    "compare_interclass_variance",
    "interclass_variance_ci",
    "VarianceComparison",
    "wilcoxon_saliency",
    "WilcoxonResult",
    "variance_table",
]


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
    va, la = values_and_labels(values_a, labels_a, "values_a")
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
        vb, lb = values_and_labels(values_b, labels_b, "values_b")
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
        x, y = as_values(a.loc[common], "a"), as_values(b.loc[common], "b")
    else:
        x, y = as_values(a, "a"), as_values(b, "b")
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


def variance_table(table: pd.DataFrame, seed: int = 0, a: str = "baseline", b: str = "unbiased",
                   also: Sequence[str] = ("ink-only", "ablated")) -> pd.DataFrame:
    """Compare the inter-class variance of training sets ``a`` and ``b`` for every method and aggregation.

    ``table`` is a :func:`xaibias.analysis.saliency.saliency_table` (columns ``train_set, method,
    aggregation, image, label, value``). One row per (method, aggregation): ``var_<a>``,
    ``var_<b>``, Levene's ``levene_W`` and ``p_value`` (:func:`compare_interclass_variance`), the
    inter-class variance of each training set in ``also`` that the table holds, and the paired
    Wilcoxon p-value of ``a`` > ``b`` on the same images. ``seed`` is recorded in the ``seed`` column.
    """
    missing = {"train_set", "method", "aggregation", "image", "label", "value"} - set(getattr(table, "columns", []))
    if missing:
        raise ValueError(f"table lacks column(s) {sorted(missing)}; pass the table from saliency_table()")
    present = set(table["train_set"])
    for name in (a, b):
        if name not in present:
            raise ValueError(f"training set {name!r} is not in the table; it holds {sorted(present)}")
    rows = []
    for (method, agg), g in table.groupby(["method", "aggregation"], sort=False):
        ga, gb = g[g.train_set == a], g[g.train_set == b]
        res = compare_interclass_variance(ga["value"], ga["label"], gb["value"], gb["label"])
        row = {"seed": seed, "method": method, "aggregation": agg, f"var_{a}": res.variance_a,
               f"var_{b}": res.variance_b, "levene_W": res.levene_statistic, "p_value": res.p_value}
        for name in also:
            d = g[g.train_set == name]
            if len(d):
                row[f"var_{name}"] = interclass_variance(d["value"], d["label"])
        paired = wilcoxon_saliency(ga.set_index("image")["value"], gb.set_index("image")["value"],
                                   alternative="greater")
        row[f"wilcoxon_p({a}>{b})"] = paired.p_value
        rows.append(row)
    return pd.DataFrame(rows)
