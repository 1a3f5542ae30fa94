"""Intervals for the findings a notebook states: bootstrap over images, or over seeds.

A finding such as "the biased model puts more relevance on the ball" is a claim about a
population, measured on a sample. :func:`bootstrap_ci` gives a percentile interval for any statistic
of one or more samples (each resampled with replacement, independently), so a check can ask that
the whole interval clears its bound instead of comparing two noisy point values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

__all__ = ["bootstrap_ci"]


def _as_1d(x: Any, i: int) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    a = np.asarray(x, dtype=float)
    if a.ndim != 1:
        raise ValueError(f"bootstrap_ci: sample {i} must be 1-D (one value per image or seed); got shape {a.shape}")
    if a.size < 2:
        raise ValueError(f"bootstrap_ci: sample {i} needs at least 2 values to resample; got {a.size}")
    if np.isnan(a).any():
        raise ValueError(f"bootstrap_ci: sample {i} holds {int(np.isnan(a).sum())} NaN value(s)")
    return a


def bootstrap_ci(
    *samples: Any,
    statistic: Callable[..., float] | None = None,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
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
    arrays = [_as_1d(s, i) for i, s in enumerate(samples)]
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
    for k in range(int(n_boot)):
        draws[k] = statistic(*(a[rng.integers(0, a.size, a.size)] for a in arrays))
    if np.isnan(draws).any() or np.isnan(value):
        raise ValueError("bootstrap_ci: the statistic returned NaN on the data or a resample")
    alpha = (1 - level) / 2
    low, high = np.quantile(draws, [alpha, 1 - alpha])
    return value, float(low), float(high)
