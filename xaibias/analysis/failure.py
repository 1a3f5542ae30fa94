"""Saliency as a failure predictor, and lesion ablation (Pfau et al. 2019, Figure 2 and Section 4).

- :func:`response_rate_accuracy` -- accuracy on the images whose saliency lies at or below each
  percentile (answer the least salient images first);
- :func:`aurrac` -- the area under that curve; :func:`rrac_kendall_tau` -- Kendall's tau of the
  curve (negative: accuracy falls as more salient images are answered);
- :func:`aurrac_gain` -- ``AURRAC - accuracy`` with a bootstrap interval over images: a ranking at
  random gives 0, so this is the number to compare with its random-ranking baseline;
- :func:`failure_table` -- all three for several models, saliency methods and image groups;
- :func:`ablation_table` -- what each model predicts when everything but the mask (the ink) is
  replaced by the image's mean colour.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import stats

from .._checks import as_labels, describe
from ..data.ink import ablate_to_ink
from ..explain import attribute
from ..models import predict_proba
from ._values import as_values, check_methods, check_models
from .saliency import peak_saliency

__all__ = ["response_rate_accuracy", "aurrac", "aurrac_gain", "rrac_kendall_tau", "failure_table", "ablation_table"]


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
    s = as_values(saliency, "saliency")
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


def aurrac_gain(correct: Any, saliency: Any, *, n_boot: int = 1000, level: float = 0.95,
                seed: int = 0) -> tuple[float, float, float]:
    """``AURRAC - accuracy`` with a percentile bootstrap interval over images.

    A saliency that ranks the images at random gives an AURRAC equal, in expectation, to the overall
    accuracy, so the random-ranking baseline of this difference is 0: above 0, the least salient
    images are answered more accurately (the saliency predicts errors); below 0, the errors lie
    among the least salient images. Each resample draws images (their correctness and saliency
    together) and recomputes both the curve and the accuracy.

    Parameters
    ----------
    correct : 1-D bool array-like
        Whether each prediction is correct.
    saliency : 1-D array-like
        Saliency value of each image (same length; a Series is taken by position).
    n_boot, level, seed
        Bootstrap draws, coverage and seed (:func:`xaibias.analysis.bootstrap_ci`).

    Returns
    -------
    (value, low, high) : tuple of float
    """
    from .stats import bootstrap_ci

    c = _as_correct(correct)
    s = as_values(saliency, "saliency")
    if len(c) != len(s):
        raise ValueError(f"correct has {len(c)} entries but saliency has {len(s)}; give one per image")
    if len(c) < 2:
        raise ValueError(f"aurrac_gain needs at least 2 images; got {len(c)}")
    if np.ptp(s) == 0:
        raise ValueError("saliency has a single value (all tied): the images cannot be ranked, AURRAC is undefined")

    def gain(cc: np.ndarray, ss: np.ndarray) -> float:
        if np.ptp(ss) == 0:  # a resample of tied values: no ranking, no gain
            return 0.0
        return aurrac(response_rate_accuracy(cc.astype(bool), ss)) - float(cc.mean())

    return bootstrap_ci(c, s, statistic=gain, n_boot=n_boot, level=level, seed=seed, paired=True)


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


def failure_table(
    models: Mapping[str, torch.nn.Module],
    images: Any,
    labels: Any,
    masks: Any,
    methods: Mapping[str, dict],
    groups: Mapping[str, Any],
    percentile: float = 98,
    batch_size: int = 64,
    n_boot: int | None = None,
    seed: int = 0,
) -> tuple[pd.DataFrame, dict[tuple[str, str, str], pd.DataFrame]]:
    """Does mask saliency predict each model's errors? One row per model, method and image group.

    Each model explains its *predicted* class with each method (``methods``: name -> keyword
    arguments of :func:`xaibias.explain.attribute`); the maps are reduced with
    :func:`peak_saliency` over ``masks``; within each group (``groups``: name -> bool array over
    the images) the response-rate accuracy curve gives ``AURRAC``, ``AURRAC - accuracy`` (0 for a
    saliency that ranks images at random) and Kendall's tau with its p-value. With ``n_boot``, the
    columns ``gain_low`` and ``gain_high`` hold the bootstrap interval of ``AURRAC - accuracy``
    (:func:`aurrac_gain`, seeded by ``seed``).

    Returns ``(table, curves)`` with ``curves[model, method, group]`` the curve DataFrame.
    """
    models, methods = check_models(models), check_methods(methods)
    y = as_labels(labels, name="labels")
    sel = {}
    for group, mask in groups.items():
        m = np.asarray(mask)
        if m.dtype != bool or m.shape != (len(y),):
            raise ValueError(f"groups[{group!r}] must be a bool array with one entry per image ({len(y)}); "
                             f"got {describe(mask)}")
        sel[group] = m
    rows, curves = [], {}
    for name, model in models.items():
        pred = predict_proba(model, images).argmax(1)
        correct = (pred == y).numpy()
        for method, kw in methods.items():
            R = attribute(model, images, target=pred, method=method, batch_size=batch_size, **kw)
            s = peak_saliency(R, masks, percentile)
            for group, m in sel.items():
                idx = np.flatnonzero(m[s.index])
                c = correct[s.index][idx]
                curve = response_rate_accuracy(c, s.to_numpy()[idx])
                tau, p = rrac_kendall_tau(curve)
                curves[name, method, group] = curve
                area = aurrac(curve)
                row = {"train_set": name, "method": method, "group": group, "n": len(idx),
                       "accuracy": c.mean(), "AURRAC": area, "AURRAC - accuracy": area - c.mean(),
                       "kendall_tau": tau, "tau_p": p}
                if n_boot is not None:
                    _, row["gain_low"], row["gain_high"] = aurrac_gain(c, s.to_numpy()[idx], n_boot=n_boot, seed=seed)
                rows.append(row)
    return pd.DataFrame(rows), curves


def ablation_table(models: Mapping[str, torch.nn.Module], images: Any, masks: Any,
                   class_names: Sequence[str], return_per_image: bool = False
                   ) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Predictions when only the masked pixels remain (:func:`xaibias.data.ink.ablate_to_ink`).

    One row per model: ``unchanged`` (share of predictions that stay the same), ``unchanged by
    chance`` (that share if the ablated prediction were drawn independently of the original one,
    from the two prediction histograms) and ``-> <class>`` (where the ablated images go).

    With ``return_per_image=True`` also a per-image table (columns ``image``, one ``unchanged`` 0/1
    column per model, and ``-> <class>`` 0/1 columns named ``<model> -> <class>``), for intervals
    and paired comparisons of the shares over the same images.
    """
    names = list(class_names)
    x_abl = ablate_to_ink(images, masks)
    rows, per_image = [], {}
    for name, model in models.items():
        before = predict_proba(model, images).argmax(1)
        after = predict_proba(model, x_abl).argmax(1)
        if int(max(before.max(), after.max())) >= len(names):
            raise ValueError(f"model {name!r} predicts class {int(max(before.max(), after.max()))} but "
                             f"class_names has {len(names)} names")
        counts = torch.bincount(after, minlength=len(names)).float() / len(after)
        counts_before = torch.bincount(before, minlength=len(names)).float() / len(before)
        rows.append({"train_set": name, "unchanged": float((before == after).float().mean()),
                     "unchanged by chance": float((counts * counts_before).sum()),
                     **{f"-> {c}": float(counts[i]) for i, c in enumerate(names)}})
        per_image[name] = (before == after).numpy().astype(float)
        for i, c in enumerate(names):
            per_image[f"{name} -> {c}"] = (after == i).numpy().astype(float)
    table = pd.DataFrame(rows).set_index("train_set")
    if not return_per_image:
        return table
    return table, pd.DataFrame({"image": np.arange(len(x_abl)), **per_image})
