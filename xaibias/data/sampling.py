"""Resampling helpers that remove an artifact's correlation with the class.

:func:`unbiased_resample` builds the "unbiased" training set of Pfau et al. 2019 (Global
Saliency): every image with the artifact is kept and, per class, a random subset of images without
it is added in proportion, so that P(class | artifact) = P(class | no artifact).
:func:`balanced_indices` balances the classes within every joint pattern of several artifacts (the
``"resample"`` correction of :mod:`xaibias.mitigation` and the group-balanced set of ``"dfr"``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .._checks import as_labels, describe

__all__ = ["unbiased_resample", "balanced_indices"]


def _as_flags(flags: Any, n: int) -> np.ndarray:
    if isinstance(flags, torch.Tensor):
        flags = flags.detach().cpu().numpy()
    elif hasattr(flags, "to_numpy"):  # pandas Series
        flags = flags.to_numpy()
    arr = np.asarray(flags)
    if arr.ndim != 1 or arr.dtype != bool:
        raise ValueError(f"flags must be a 1-D bool sequence (one per image); got {describe(arr)}")
    if len(arr) != n:
        raise ValueError(f"flags has {len(arr)} entries but labels has {n}; they must describe the same images")
    return arr


def unbiased_resample(labels: Any, flags: Any, ratio: float = 0.5, seed: int = 0) -> np.ndarray:
    """Indices of a subset in which the class no longer depends on the flag.

    All flagged images are kept. For every class ``c`` with ``f_c`` flagged images,
    ``k_c = round(ratio * f_c)`` unflagged images of class ``c`` are drawn at random (without
    replacement), so the unflagged part has the same class proportions as the flagged part:
    P(c | flag) = P(c | no flag). The equality is exact when every ``ratio * f_c`` is an integer,
    otherwise it holds up to that rounding.

    Parameters
    ----------
    labels : int class labels (N,)
    flags : bool (N,), e.g. ``ds.artifacts["ink"]``
    ratio : number of unflagged images per flagged image (> 0)
    seed : seed of the random choice

    Returns
    -------
    np.ndarray of int64 indices into the original images, sorted ascending.

    Raises
    ------
    ValueError
        When a class has fewer unflagged images than needed (the message names the class and the
        numbers needed and available), when nothing is flagged, or on malformed input.
    """
    lab = as_labels(labels).numpy()
    fl = _as_flags(flags, len(lab))
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float, np.integer, np.floating)) or not ratio > 0:
        raise ValueError(f"ratio must be a positive number (unflagged images per flagged image); got {ratio!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int; got {seed!r}")
    if not fl.any():
        raise ValueError("flags has no flagged image; there is nothing to balance")
    rng = np.random.default_rng(int(seed))
    chosen = [np.flatnonzero(fl)]
    for c in np.unique(lab):
        f_c = int((fl & (lab == c)).sum())
        k_c = int(np.floor(ratio * f_c + 0.5))
        pool = np.flatnonzero(~fl & (lab == c))
        if k_c > len(pool):
            raise ValueError(
                f"class {int(c)} has {f_c} flagged images and needs {k_c} unflagged ones (ratio={ratio}), "
                f"but only {len(pool)} are available; lower ratio or add unflagged images of class {int(c)}"
            )
        chosen.append(rng.choice(pool, size=k_c, replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def check_test_fraction(test_fraction: Any) -> float:
    """``test_fraction`` as a float in (0, 1), or a ValueError naming it."""
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be a number in (0,1); got {test_fraction!r}")
    return float(test_fraction)


def split_indices(labels: Any, test_fraction: float = 0.25, seed: int = 0, stratify: bool = True) -> np.ndarray:
    """Sorted test indices of a random split, stratified by label unless ``stratify=False``.

    Per class (or over all items), a random ``round(test_fraction * n_class)`` items go to the test
    part. The result depends only on the labels and ``seed``, so two datasets with the same labels
    split into matching halves. Every dataset's ``split()`` uses this one function.
    """
    test_fraction = check_test_fraction(test_fraction)
    y = as_labels(labels).numpy()
    rng = np.random.default_rng(seed)
    pools = [np.flatnonzero(y == c) for c in np.unique(y)] if stratify else [np.arange(len(y))]
    test_idx = np.sort(np.concatenate([rng.permutation(p)[: int(round(test_fraction * len(p)))] for p in pools]))
    if len(test_idx) == 0 or len(test_idx) == len(y):
        raise ValueError(f"test_fraction={test_fraction} leaves an empty train or test set for {len(y)} images")
    return test_idx


def balanced_indices(labels: Any, flags: Any, seed: int = 0) -> np.ndarray:
    """Indices of a subset in which the class is independent of a joint pattern of artifact flags.

    The images are grouped by their row of ``flags`` (one column per artifact); in every group the
    same number of images of each class is drawn at random (the count of the group's rarest class),
    so P(c | pattern) = 1 / n_classes for every pattern and hence P(c | a) = P(c | not a) for every
    column ``a`` exactly. Groups that lack a class are dropped (they cannot be balanced).

    Parameters
    ----------
    labels : int class labels (N,)
    flags : bool (N,) or (N,K) array, or a DataFrame of K bool columns
    seed : seed of the random choice

    Returns
    -------
    np.ndarray of int64 indices, sorted ascending.

    Raises
    ------
    ValueError
        On malformed input or when no group contains every class.
    """
    lab = as_labels(labels).numpy()
    f = flags.to_numpy() if hasattr(flags, "to_numpy") else np.asarray(flags)  # a DataFrame
    if f.ndim == 1:
        f = f[:, None]
    if f.dtype != bool or f.ndim != 2 or len(f) != len(lab):
        raise ValueError(f"flags must be bool (N,) or (N,K) with N={len(lab)} (one row per label); got {describe(f)}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int; got {seed!r}")
    rng = np.random.default_rng(int(seed))
    classes = np.unique(lab)
    patterns, group = np.unique(f, axis=0, return_inverse=True)
    group = np.asarray(group).reshape(-1)
    chosen = []
    for g in range(len(patterns)):
        pools = [np.flatnonzero((group == g) & (lab == c)) for c in classes]
        k = min(len(p) for p in pools)
        chosen += [rng.choice(p, size=k, replace=False) for p in pools if k > 0]
    if not chosen:
        raise ValueError("no artifact pattern occurs in every class; the classes cannot be balanced against the flags")
    return np.sort(np.concatenate(chosen)).astype(np.int64)
