"""Accuracy per group: class x pattern of artifact flags, and the worst group.

With several artifacts correlated with the class, the average accuracy hides the images the
shortcut misleads: a malignant lesion without the "malignant" artifact, a benign one with it.
:func:`group_accuracy` splits the test set into groups (true class x which artifacts are present)
and reports each group's size and accuracy; the worst group's accuracy is the number group-robust
methods (for example Deep Feature Reweighting, Kirichenko et al. 2023) optimise.
:func:`worst_group_gain` puts a paired bootstrap interval around the difference of two models'
worst-group accuracies on the same images (averaged over seeds), so that "a correction raises the
worst group" can be read from an interval rather than from two noisy minima.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .._checks import as_labels, describe

__all__ = ["group_accuracy", "group_ids", "worst_group_gain"]


def group_accuracy(labels: Any, preds: Any, flags_table: Any, min_count: int = 1,
                   class_names: Any = None) -> pd.DataFrame:
    """Accuracy of every group (true class x pattern of artifact flags), worst group marked.

    Parameters
    ----------
    labels : int class labels (N,)
    preds : predicted class labels (N,)
    flags_table : DataFrame of K bool columns (one per artifact, e.g. ``ds.artifacts[["frame", "ruler"]]``),
        or a bool array (N,) / (N,K) (columns named ``a0, a1, ...``)
    min_count : groups with fewer images are listed but cannot be the worst group (their accuracy
        is too noisy); 1 = every group counts
    class_names : optional names for the class column (``class_names[label]``)

    Returns
    -------
    pd.DataFrame
        One row per group that occurs, sorted by class then pattern: ``class`` (label or name), one
        bool column per artifact, ``pattern`` (the present artifacts joined by ``+``, ``"none"``
        when there are none), ``n`` (images), ``correct``, ``accuracy`` (correct / n) and ``worst``
        (True on the one group of at least ``min_count`` images with the lowest accuracy; the
        first in row order on a tie). ``df.attrs`` holds ``"worst"`` (that group's accuracy),
        ``"worst_group"`` (its ``class: pattern`` label), ``"average"`` (accuracy over all images)
        and ``"mean_group"`` (unweighted mean of the counted groups' accuracies).

    Raises
    ------
    ValueError
        On mismatched lengths, non-bool flags, or when no group has ``min_count`` images.
    """
    y = as_labels(labels, name="labels").numpy()
    p = as_labels(preds, n=len(y), name="preds").numpy()
    if isinstance(flags_table, pd.DataFrame):
        table = flags_table.reset_index(drop=True)
    else:
        f = np.asarray(flags_table)
        if f.ndim == 1:
            f = f[:, None]
        if f.ndim != 2:
            raise ValueError(f"flags_table must be a DataFrame of bool columns or a bool (N,)/(N,K) array; got {describe(f)}")
        table = pd.DataFrame(f, columns=[f"a{k}" for k in range(f.shape[1])])
    if len(table) != len(y):
        raise ValueError(f"mismatched lengths: {len(y)} labels and preds but {len(table)} rows of flags")
    bad = [c for c in table.columns if table[c].dtype != bool]
    if bad:
        raise ValueError(f"flags_table columns must be bool; {bad} are {[str(table[c].dtype) for c in bad]}")
    if isinstance(min_count, bool) or not isinstance(min_count, (int, np.integer)) or min_count < 1:
        raise ValueError(f"min_count must be an int >= 1; got {min_count!r}")
    arts = [str(c) for c in table.columns]
    frame = table.copy()
    frame.columns = arts
    frame.insert(0, "class", y)
    frame["correct"] = (p == y).astype(int)
    out = frame.groupby(["class", *arts], sort=True).agg(n=("correct", "size"), correct=("correct", "sum")).reset_index()
    out["accuracy"] = out["correct"] / out["n"]
    out.insert(1 + len(arts), "pattern", ["+".join(a for a in arts if r[a]) or "none" for _, r in out.iterrows()])
    if class_names is not None:
        names = list(class_names)
        out["class"] = [names[c] if 0 <= c < len(names) else c for c in out["class"]]
    counted = out["n"] >= min_count
    if not counted.any():
        raise ValueError(f"no group has at least min_count={min_count} images (largest: {int(out['n'].max())})")
    worst = out.loc[counted, "accuracy"].idxmin()
    out["worst"] = False
    out.loc[worst, "worst"] = True
    out.attrs["worst"] = float(out.loc[worst, "accuracy"])
    out.attrs["worst_group"] = f"{out.loc[worst, 'class']}: {out.loc[worst, 'pattern']}"
    out.attrs["average"] = float((p == y).mean())
    out.attrs["mean_group"] = float(out.loc[counted, "accuracy"].mean())
    return out


def group_ids(labels: Any, flags_table: Any) -> np.ndarray:
    """One integer per image for its group (class x pattern of artifact flags): ``class * 2**K + pattern``.

    ``flags_table``: a DataFrame of K bool columns or a bool (N,K) array; bit k of the pattern is
    column k.
    """
    y = as_labels(labels, name="labels").numpy()
    f = flags_table.to_numpy() if isinstance(flags_table, pd.DataFrame) else np.asarray(flags_table)
    if f.ndim == 1:
        f = f[:, None]
    if f.ndim != 2 or len(f) != len(y) or f.dtype != bool:
        raise ValueError(f"flags_table must be bool (N,K) with N={len(y)} (one row per label); got {describe(f)}")
    return y.astype(np.int64) * 2 ** f.shape[1] + f.astype(np.int64) @ (2 ** np.arange(f.shape[1]))


def _worst(correct: np.ndarray, groups: np.ndarray, min_count: int) -> float:
    n = np.bincount(groups)
    hit = np.bincount(groups, weights=correct)
    keep = n >= min_count
    if not keep.any():
        raise ValueError(f"no group has at least min_count={min_count} images (largest: {int(n.max())})")
    return float((hit[keep] / n[keep]).min())


def worst_group_gain(correct_a: Any, correct_b: Any, groups: Any, blocks: Any = None, min_count: int = 1,
                     n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """Worst-group accuracy of model a minus model b on the same images, with a paired bootstrap interval.

    Parameters
    ----------
    correct_a, correct_b : per-image correctness (N,) of the two models on the same images
    groups : (N,) integer group of each image (:func:`group_ids`)
    blocks : (N,) optional, for example the seed each image belongs to: the gain is computed within
        each block (groups of different seeds are not merged) and averaged over the blocks, and the
        images are resampled within their block
    min_count : groups with fewer images (in a resample) cannot be the worst group
    n_boot, level, seed : bootstrap draws, interval coverage and the seed of the resampling

    Returns
    -------
    (value, low, high) : the mean over blocks of ``worst(a) - worst(b)`` and its percentile interval
        (both models judged on the same resampled images)
    """
    a = np.asarray(correct_a, dtype=float).reshape(-1)
    b = np.asarray(correct_b, dtype=float).reshape(-1)
    g = np.asarray(groups).reshape(-1)
    if not (len(a) == len(b) == len(g)) or len(a) < 2:
        raise ValueError(f"correct_a ({len(a)}), correct_b ({len(b)}) and groups ({len(g)}) must have the same "
                         "length (at least 2)")
    if not np.isin(a, (0.0, 1.0)).all() or not np.isin(b, (0.0, 1.0)).all():
        raise ValueError("correct_a and correct_b must hold 0/1 (or bool) correctness per image")
    if not np.issubdtype(g.dtype, np.integer) or (g < 0).any():
        raise ValueError(f"groups must be non-negative integers (group_ids); got dtype {g.dtype}")
    if isinstance(min_count, bool) or not isinstance(min_count, (int, np.integer)) or min_count < 1:
        raise ValueError(f"min_count must be an int >= 1; got {min_count!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1); got {level!r}")
    blk = np.zeros(len(a), np.int64) if blocks is None else np.unique(np.asarray(blocks).reshape(-1), return_inverse=True)[1]
    if len(blk) != len(a):
        raise ValueError(f"blocks has {len(blk)} entries; the images are {len(a)}")
    members = [np.flatnonzero(blk == k) for k in range(int(blk.max()) + 1)]

    def gain(picks: list[np.ndarray]) -> float:
        return float(np.mean([_worst(a[i], g[i], min_count) - _worst(b[i], g[i], min_count) for i in picks]))

    value = gain(members)
    rng = np.random.default_rng(seed)
    draws = np.array([gain([rng.choice(m, size=len(m), replace=True) for m in members]) for _ in range(int(n_boot))])
    tail = 100 * (1 - level) / 2
    return value, float(np.percentile(draws, tail)), float(np.percentile(draws, 100 - tail))
