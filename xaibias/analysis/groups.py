"""Accuracy per group: class x pattern of artifact flags, and the worst group.

With several artifacts correlated with the class, the average accuracy hides the images the
shortcut misleads: a malignant lesion without the "malignant" artifact, a benign one with it.
:func:`group_accuracy` splits the test set into groups (true class x which artifacts are present)
and reports each group's size and accuracy; the worst group's accuracy is the number group-robust
methods (for example Deep Feature Reweighting, Kirichenko et al. 2023) optimise.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .._checks import as_labels, describe

__all__ = ["group_accuracy"]


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
