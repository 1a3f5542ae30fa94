"""Intervals for the findings a notebook states: bootstrap over images, or over seeds.

A finding such as "the biased model puts more relevance on the ball" is a claim about a
population, measured on a sample. :func:`bootstrap_ci` gives a percentile interval for any statistic
of one or more samples (each resampled with replacement, independently), so a check can ask that
the whole interval clears its bound instead of comparing two noisy point values.
:func:`ratio_ci` is the one ratio of two samples with such an interval (``mean(a) / mean(b)`` or
other statistics of each side), paired or not; every ratio with an interval in the package and the
notebooks goes through it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

__all__ = ["bootstrap_ci", "ratio_ci", "resamplable"]


def resamplable(x: Any, where: str) -> np.ndarray:
    """``x`` (tensor, array, list, Series) as a 1-D float array a bootstrap can resample.

    One value per image or seed, at least two of them, none NaN; otherwise a ``ValueError`` that
    starts with ``where`` (for example ``"bootstrap_ci: sample 0"``) and says what was wrong.
    """
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    a = np.asarray(x, dtype=float)
    if a.ndim != 1:
        raise ValueError(f"{where} must be 1-D (one value per image or seed); got shape {a.shape}")
    if a.size < 2:
        raise ValueError(f"{where} needs at least 2 values for an interval; got {a.size}")
    if np.isnan(a).any():
        raise ValueError(f"{where} holds {int(np.isnan(a).sum())} NaN value(s)")
    return a


def bootstrap_ci(
    *samples: Any,
    statistic: Callable[..., float] | None = None,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    paired: bool = False,
    strata: Any = None,
) -> tuple[float, float, float]:
    """Point value and percentile bootstrap interval of ``statistic(*samples)``.

    Parameters
    ----------
    *samples : 1-D arrays or tensors
        One value per unit (image, seed). Each sample is resampled with replacement on its own.
    statistic : callable, optional
        Takes as many 1-D arrays as there are samples and returns a number. Default: the mean of a
        single sample, or the difference of means ``mean(a) - mean(b)`` of two samples.
    n_boot : int
        Number of bootstrap draws.
    level : float
        Coverage of the interval, in (0, 1).
    seed : int
        Seed of the resampling (same seed, same interval).
    paired : bool
        Resample the samples together (one index draw for all of them): they must have the same
        length, entry ``i`` of each belonging to the same unit (for example a score and a label of
        image ``i``, or two models' correctness on image ``i``). Default: each sample on its own.
    strata : 1-D array, optional
        Only with ``paired``: a group id per unit; units are resampled within their group, so each
        resample keeps the group sizes (for an AUROC, pass the labels, so no resample lacks a class).

    Returns
    -------
    (value, low, high) : tuple of float
        The statistic on the full samples and the ``level`` percentile interval.
    """
    if not samples:
        raise ValueError("bootstrap_ci needs at least one sample")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1); got {level!r}")
    if int(n_boot) < 100:
        raise ValueError(f"n_boot must be at least 100 for a percentile interval; got {n_boot!r}")
    arrays = [resamplable(s, f"bootstrap_ci: sample {i}") for i, s in enumerate(samples)]
    if strata is not None and not paired:
        raise ValueError("bootstrap_ci: strata= needs paired=True (one index draw for all samples)")
    if paired and len({a.size for a in arrays}) > 1:
        raise ValueError(f"bootstrap_ci: paired samples must have the same length; got {[a.size for a in arrays]}")
    groups = None
    if strata is not None:
        st = np.asarray(strata.detach().cpu() if isinstance(strata, torch.Tensor) else strata).reshape(-1)
        if st.size != arrays[0].size:
            raise ValueError(f"bootstrap_ci: strata has {st.size} entries for samples of length {arrays[0].size}")
        groups = [np.flatnonzero(st == g) for g in np.unique(st)]
    if statistic is None:
        if len(arrays) == 1:
            statistic = np.mean
        elif len(arrays) == 2:
            def statistic(a, b):
                return a.mean() - b.mean()
        else:
            raise ValueError("with more than two samples, pass statistic=")
    value = float(statistic(*arrays))
    rng = np.random.default_rng(seed)
    draws = np.empty(int(n_boot))
    n = arrays[0].size
    for k in range(int(n_boot)):
        if groups is not None:
            idx = np.concatenate([g[rng.integers(0, g.size, g.size)] for g in groups])
            draws[k] = statistic(*(a[idx] for a in arrays))
        elif paired:
            idx = rng.integers(0, n, n)
            draws[k] = statistic(*(a[idx] for a in arrays))
        else:
            draws[k] = statistic(*(a[rng.integers(0, a.size, a.size)] for a in arrays))
    if np.isnan(draws).any() or np.isnan(value):
        raise ValueError("bootstrap_ci: the statistic returned NaN on the data or a resample")
    alpha = (1 - level) / 2
    low, high = np.quantile(draws, [alpha, 1 - alpha])
    return value, float(low), float(high)


def ratio_ci(
    a: Any,
    b: Any,
    *,
    paired: bool = False,
    numerator: Callable[[np.ndarray], float] | None = None,
    denominator: Callable[[np.ndarray], float] | None = None,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """``numerator(a) / denominator(b)`` with a percentile bootstrap interval (:func:`bootstrap_ci`).

    Parameters
    ----------
    a, b : 1-D arrays or tensors
        One value per unit (image, seed).
    paired : bool
        ``a[i]`` and ``b[i]`` belong to the same unit (two models' values on the same image): one
        index draw resamples both, so the variation the two share cancels in the ratio. Default:
        each sample is resampled on its own.
    numerator, denominator : callable, optional
        Statistic of one sample for each side; default the mean (for example
        ``denominator=lambda b: np.abs(b).mean()`` for a mean absolute change).
    n_boot, level, seed
        As in :func:`bootstrap_ci` (the same seed draws the same resamples).

    Returns
    -------
    (value, low, high) : tuple of float
        A resample whose denominator is 0 counts as an infinite ratio (signed as its numerator).

    Raises
    ------
    ValueError
        When the denominator of the full sample ``b`` is 0 (the ratio is undefined), or as
        :func:`bootstrap_ci`.
    """
    num = np.mean if numerator is None else numerator
    den = np.mean if denominator is None else denominator
    if den(resamplable(b, "ratio_ci: b")) == 0:
        raise ValueError("ratio_ci: the denominator of b is 0, so the ratio is undefined")

    def ratio(x: np.ndarray, y: np.ndarray) -> float:
        top, bottom = num(x), den(y)
        if bottom == 0:
            return -np.inf if top < 0 else np.inf
        return top / bottom

    return bootstrap_ci(a, b, statistic=ratio, paired=paired, n_boot=n_boot, level=level, seed=seed)
