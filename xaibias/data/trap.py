"""Trap sets: training data where an artifact is tied to a class, test data where the tie is reversed.

Bissoto, Valle & Avila (2020, "Debiasing Skin Lesion Datasets and Models? Not So Fast", ISIC
workshop at CVPR 2020) test whether a skin-lesion classifier relies on artifacts with *trap sets*:
the annotated ISIC 2018 Task 1/2 photos are divided into a training set in which the artifacts'
correlation with the label is amplified and a test set in which it is reversed, so a model that
learned the shortcut is caught out on the test set. Their repository
(github.com/alceubissoto/debiasing-skin, folder ``trap-sets``) publishes the result, not the code
that chose the images: five splits ``isic_annotated_{train,val,test}{1..5}.csv`` in the comma
variant of their annotation CSV, with one more 0/1 column, ``vasc``. Measured on those files
(:func:`load_trap_set` reads them):

- all seven annotated artifacts are tied at once, each leaning towards one class in training and
  towards the other in test. P(artifact | melanoma) / P(artifact | other) in ``train1`` and then
  ``test1``: dark_corner .61/.26 and .06/.55, ruler .81/.31 and .08/.86, ink .17/.04 and .00/.52,
  gel_border .24/.13 and .00/.64, hair .41/.72 and .75/.34, gel_bubble .35/.58 and .84/.27,
  patches .01/.08 and .00/.12 (over all 2,594 photos the ties are weak, e.g. dark_corner .45/.35,
  and ink and gel_border lean the other way: .12/.18 and .17/.28);
- training and test sets are disjoint and together hold all 2,594 annotated photos (1,822 + 772),
  both with about 20% melanoma; the five splits differ by some 100 photos in each part;
- every photo of ``val{k}`` (259) is also listed in ``train{k}``: drop them from training before
  selecting a model on the validation part (``load_trap_set(..., exclude_val=True)``).

:func:`trap_split` builds the same kind of split for **one** annotated artifact of any xaibias
dataset (:class:`ISICDataset` with annotations, :class:`SyntheticLesions`, ...) at rates the user
chooses and the split reports, where the published sets tie every artifact at strengths that
nobody chose. The issue's reference point, dark corners tied to melanoma at P = 0.92 vs 0.05 in
training, is ``trap_split(ds, "dark_corner", strength=(0.92, 0.05))``.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .annotations import annotation_name, resolve_artifact

__all__ = ["trap_split", "load_trap_set", "TrapInfo", "TRAP_SPLITS"]

TRAP_SPLITS = ("train", "val", "test")
_TRAP_NAME = re.compile(r"isic_annotated_(train|val|test)(\d+)\.csv$")


# --------------------------------------------------------------------------------------------------
# a trap split of any annotated dataset


@dataclass
class TrapInfo:
    """What :func:`trap_split` asked for and what it got, attached to each side as ``.trap``.

    Attributes
    ----------
    artifact : str
        The name asked for (``"dark_corner"`` or ``"frame"``).
    column : str
        The dataset's flag column used.
    annotation : str or None
        The Bissoto et al. name of that column (``dark_corner`` for ``frame``).
    side : {"train", "test"}
    positive_class : int
        The class the artifact is tied to in training ("class 1" below).
    target : tuple of float
        Requested (P(artifact | class 1), P(artifact | other classes)) on this side.
    achieved : tuple of float
        The same rates in the images drawn (they differ from ``target`` only by rounding to whole
        images: at most 0.5 / the number of images of the class).
    counts : pandas.DataFrame
        Images per class group (rows ``class 1 name`` and ``rest``) with and without the artifact.
    available : pandas.DataFrame
        The same counts in the whole dataset (what both sides were drawn from).
    rates : pandas.DataFrame
        P(flag | class 1) and P(flag | rest) of **every** flag column on this side: other artifacts
        correlated with the chosen one come along, and this table shows how far.
    index : numpy.ndarray
        Indices of this side's images in the dataset given (sorted).
    seed : int
    """

    artifact: str
    column: str
    annotation: str | None
    side: str
    positive_class: int
    target: tuple[float, float]
    achieved: tuple[float, float]
    counts: pd.DataFrame
    available: pd.DataFrame
    rates: pd.DataFrame
    index: np.ndarray = field(repr=False)
    seed: int = 0

    def __str__(self) -> str:
        t, a = self.target, self.achieved
        name = self.column if self.annotation in (None, self.column) else f"{self.annotation} ({self.column})"
        return (f"{self.side}: {name}, P(artifact | class {self.positive_class}) = {a[0]:.3f} "
                f"(target {t[0]:.3f}), P(artifact | rest) = {a[1]:.3f} (target {t[1]:.3f}), n = {len(self.index)}")


def _pair(value: Any, name: str, reverse: bool) -> tuple[float, float]:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number in [0,1] or a pair (P(artifact | class 1), P(artifact | rest)); "
                         f"got {value!r}")
    if isinstance(value, (int, float, np.integer, np.floating)):
        s = float(value)
        pair = (1.0 - s, s) if reverse else (s, 1.0 - s)
    else:
        try:
            pair = tuple(float(v) for v in value)
        except (TypeError, ValueError):
            pair = ()
        if len(pair) != 2:
            raise ValueError(f"{name} must be a number in [0,1] or a pair (P(artifact | class 1), "
                             f"P(artifact | rest)); got {value!r}")
    if not all(0.0 <= p <= 1.0 for p in pair):
        raise ValueError(f"{name} must hold probabilities in [0,1]; got {value!r}")
    return pair  # type: ignore[return-value]


def _labels(dataset: Any) -> np.ndarray:
    labels = getattr(dataset, "labels", None)
    if labels is None:
        raise ValueError(f"trap_split needs a dataset with .labels and .artifacts; {type(dataset).__name__} has no "
                         f".labels")
    if hasattr(labels, "detach"):
        labels = labels.detach().cpu().numpy()
    return np.asarray(labels).astype(np.int64).reshape(-1)


def _cells(n_pos: int, n_rest: int, p: tuple[float, float]) -> np.ndarray:
    """Whole-image counts [[pos with, pos without], [rest with, rest without]] for these class sizes."""
    w_pos, w_rest = int(round(n_pos * p[0])), int(round(n_rest * p[1]))
    return np.array([[w_pos, n_pos - w_pos], [w_rest, n_rest - w_rest]], dtype=np.int64)


def _plan(n_train: int, n_test: int, share: float, p: tuple, q: tuple) -> tuple[np.ndarray, np.ndarray]:
    tr_pos = int(round(n_train * share))
    te_pos = int(round(n_test * share))
    return _cells(tr_pos, n_train - tr_pos, p), _cells(te_pos, n_test - te_pos, q)


def _table(cells: np.ndarray, pos_name: str) -> pd.DataFrame:
    return pd.DataFrame(cells, index=[pos_name, "rest"], columns=["with", "without"])


def _rates(flags: pd.DataFrame, pos: np.ndarray, pos_name: str) -> pd.DataFrame:
    out = {}
    for c in flags.columns:
        f = flags[c].to_numpy(dtype=bool)
        out[c] = {f"P(flag | {pos_name})": float(f[pos].mean()) if pos.any() else np.nan,
                  "P(flag | rest)": float(f[~pos].mean()) if (~pos).any() else np.nan}
    return pd.DataFrame.from_dict(out, orient="index").rename_axis("flag")


def trap_split(
    dataset: Any,
    artifact: str,
    *,
    strength: float | tuple[float, float] = 0.9,
    test_strength: float | tuple[float, float] | None = None,
    n_train: int | None = None,
    n_test: int | None = None,
    test_fraction: float = 0.3,
    positive_class: int = 1,
    tolerance: float = 0.05,
    seed: int = 0,
) -> tuple[Any, Any]:
    """Split ``dataset`` into a training set that ties ``artifact`` to a class and a test set that reverses it.

    Rates are conditional on the class. "Class 1" is ``positive_class`` (malignant in every binary
    xaibias dataset) and "rest" every other class:

    - ``strength`` is the training set's target **(P(artifact | class 1), P(artifact | rest))**. A
      single number ``s`` stands for ``(s, 1 - s)``: ``0.9`` puts the artifact on 90% of the
      malignant and 10% of the benign training images. ``(0.92, 0.05)`` is the issue's dark-corner
      example. Equal rates give an unbiased set.
    - ``test_strength`` is the test set's target, as a pair in the same order, or a number ``t``
      for the reversed tie ``(1 - t, t)``. Default: ``strength`` reversed, ``(0.05, 0.92)`` for the
      example, so the artifact now marks the *other* class.

    Both sets keep the class proportions of ``dataset``; within each class the images with and
    without the artifact are drawn at random (``seed``) without replacement, so the two sets are
    disjoint. Achieved rates differ from the targets only by rounding to whole images, and by at most
    ``tolerance``.

    Like the published trap sets of Bissoto et al. 2020 (module docstring), the training tie is
    amplified and the test tie reversed; unlike them, one artifact is tied at rates the user
    chooses, and the other artifacts fall where they fall (``.trap.rates`` shows them).

    Parameters
    ----------
    dataset : ISICDataset, SyntheticLesions, ...
        Anything with ``.labels`` (N,), ``.artifacts`` (a DataFrame of bool flag columns) and
        ``.subset(indices)``.
    artifact : str
        A flag column of ``dataset.artifacts``, or its annotation name (``"dark_corner"`` finds the
        column ``frame``; see :data:`xaibias.data.annotations.ARTIFACT_NAMES`).
    strength, test_strength : float or (float, float)
        Target rates (above).
    n_train, n_test : int, optional
        Sizes of the two sets. Default: the largest training set the images allow, with
        ``n_test = round(n_train * test_fraction / (1 - test_fraction))``; ``n_train`` alone fixes
        the training size and derives ``n_test`` the same way.
    test_fraction : float
        The test set's share of both when ``n_test`` is not given (0.3, about that of the
        published trap sets: 772 of 2,594).
    positive_class : int
        The class the artifact is tied to in training.
    tolerance : float
        Largest accepted difference between an achieved and a target rate (rounding to whole
        images: a class needs about ``0.5 / tolerance`` images on each side, 10 by default).
    seed : int
        Seed of the random draw.

    Returns
    -------
    (train, test)
        Subsets of ``dataset`` (same type), each with a ``.trap`` attribute (:class:`TrapInfo`):
        ``.trap.achieved``, ``.trap.target``, ``.trap.counts``, ``.trap.rates``, ``.trap.index``.

    Raises
    ------
    ValueError
        When the rates cannot be met with the images available: the message names the artifact,
        the images with and without it per class, what the split needs, and the largest
        ``n_train`` these rates allow. Also for an unknown artifact, a class that is absent, or
        rates outside [0,1].
    """
    labels = _labels(dataset)
    flags_all = getattr(dataset, "artifacts", None)
    if not isinstance(flags_all, pd.DataFrame) or len(flags_all) != len(labels):
        raise ValueError(f"trap_split needs .artifacts as a DataFrame of one bool column per artifact and one row per "
                         f"image; {type(dataset).__name__} has {type(flags_all).__name__}")
    if not hasattr(dataset, "subset"):
        raise ValueError(f"trap_split needs a dataset with .subset(indices); {type(dataset).__name__} has none")
    owner = f"{type(dataset).__name__} (n={len(labels)})"
    column = resolve_artifact(artifact, flags_all.columns, owner)
    flags = flags_all[column].to_numpy(dtype=bool)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int; got {seed!r}")
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be a number in (0,1); got {test_fraction!r}")
    p = _pair(strength, "strength", reverse=False)
    q = (p[1], p[0]) if test_strength is None else _pair(test_strength, "test_strength", reverse=True)
    pos = labels == int(positive_class)
    names = list(getattr(dataset, "class_names", []))
    pos_name = str(names[positive_class]) if 0 <= positive_class < len(names) else f"class {positive_class}"
    if not pos.any() or pos.all():
        raise ValueError(f"trap_split needs images of class {positive_class} ({pos_name}) and of other classes; "
                         f"{owner} has {int(pos.sum())} of class {positive_class} and {int((~pos).sum())} others")
    avail = np.array([[np.sum(pos & flags), np.sum(pos & ~flags)], [np.sum(~pos & flags), np.sum(~pos & ~flags)]])
    share = float(pos.mean())
    ratio = test_fraction / (1.0 - test_fraction)
    for name, v in (("n_train", n_train), ("n_test", n_test)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 2):
            raise ValueError(f"{name} must be an int >= 2 (or None for the largest the images allow); got {v!r}")

    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 0 < tolerance <= 1:
        raise ValueError(f"tolerance must be a number in (0,1]; got {tolerance!r}")

    def off(plan: np.ndarray, target: tuple) -> float:
        n = plan.sum(1)
        if n.min() < 1:
            return np.inf
        return float(np.max(np.abs(plan[:, 0] / n - np.asarray(target))))

    def fits(ntr: int, nte: int, rounding: bool = True) -> bool:
        a, b = _plan(ntr, nte, share, p, q)
        ok = bool(np.all(a + b <= avail))
        return ok and (not rounding or max(off(a, p), off(b, q)) <= tolerance + 1e-12)

    def largest(fixed_test: int | None, rounding: bool = True) -> int:
        # the largest n_train with n_test = fixed_test, or n_test = ratio * n_train
        demand = np.array([[share * p[0], share * (1 - p[0])], [(1 - share) * p[1], (1 - share) * (1 - p[1])]])
        t_demand = np.array([[share * q[0], share * (1 - q[0])], [(1 - share) * q[1], (1 - share) * (1 - q[1])]])
        with np.errstate(divide="ignore", invalid="ignore"):
            if fixed_test is None:
                bound = np.where(demand + ratio * t_demand > 0, avail / (demand + ratio * t_demand), np.inf)
            else:
                bound = np.where(demand > 0, (avail - fixed_test * t_demand) / demand, np.inf)
        # rounding to whole images can let a few more fit than the continuous bound: start above it
        slack = int(np.ceil(4.0 / demand[demand > 0].min()))
        n = int(min(np.floor(bound.min()) + slack, len(labels)))
        while n > 0 and not fits(n, fixed_test if fixed_test is not None else int(round(ratio * n)), rounding):
            n -= 1
        return n

    best = largest(n_test)
    sizes_given = n_train is not None
    if n_train is None:
        # with too few images for the tolerance, describe the largest split the counts allow
        n_train = best if best >= 2 else largest(n_test, rounding=False)
    if n_test is None:
        n_test = int(round(ratio * n_train))
    plan_tr, plan_te = _plan(n_train, n_test, share, p, q)
    if best < 2 or not fits(n_train, n_test):
        label = column if annotation_name(column) in (None, column) else f"{annotation_name(column)} (column {column})"
        need = plan_tr + plan_te
        rows = []
        for g, gname in enumerate((pos_name, "rest")):
            for f, fname in enumerate(("with", "without")):
                rows.append(f"{gname} {fname}: need {need[g, f]} ({plan_tr[g, f]} train + {plan_te[g, f]} test), "
                            f"have {avail[g, f]}")
        worst = max(off(plan_tr, p), off(plan_te, q))
        if np.isfinite(worst) and worst > tolerance:
            rows.append(f"whole images miss a target rate by {worst:.3f} > tolerance {tolerance}")
        hint = (f"the largest n_train at these rates is {best}" if best >= 2 else
                f"no split meets these rates within tolerance {tolerance}")
        raise ValueError(
            f"trap_split cannot tie {label!r} to {pos_name} at P(artifact | {pos_name}), P(artifact | rest) = "
            f"{p[0]:.3f}, {p[1]:.3f} in training and {q[0]:.3f}, {q[1]:.3f} in test with n_train={n_train}, "
            f"n_test={n_test}{'' if sizes_given else ' (the most the counts allow)'} from {owner}: " + "; ".join(rows)
            + f". {hint}; lower the strengths, change n_train/n_test, or raise tolerance"
        )

    rng = np.random.default_rng(int(seed))
    picks: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    for g, gsel in enumerate((pos, ~pos)):
        for f, fsel in enumerate((flags, ~flags)):
            pool = rng.permutation(np.flatnonzero(gsel & fsel))
            k_tr, k_te = int(plan_tr[g, f]), int(plan_te[g, f])
            picks["train"].append(pool[:k_tr])
            picks["test"].append(pool[k_tr:k_tr + k_te])
    available = _table(avail, pos_name)
    out = []
    for side, plan, target in (("train", plan_tr, p), ("test", plan_te, q)):
        idx = np.sort(np.concatenate(picks[side])).astype(np.int64)
        sub = dataset.subset(idx)
        sel_pos, sel_f = pos[idx], flags[idx]
        achieved = (float(sel_f[sel_pos].mean()), float(sel_f[~sel_pos].mean()))
        sub.trap = TrapInfo(
            artifact=artifact, column=column, annotation=annotation_name(column), side=side,
            positive_class=int(positive_class), target=(float(target[0]), float(target[1])), achieved=achieved,
            counts=_table(plan, pos_name), available=available,
            rates=_rates(flags_all.iloc[idx].reset_index(drop=True), sel_pos, pos_name), index=idx, seed=int(seed),
        )
        out.append(sub)
    return out[0], out[1]


# --------------------------------------------------------------------------------------------------
# the published trap sets


def _find_csv(source: Path, split: str, index: int) -> Path:
    name = f"isic_annotated_{split}{index}.csv"
    for cand in (source / name, source / "trap-sets" / name):
        if cand.is_file():
            return cand
    deep = sorted(source.rglob(name))
    if deep:
        return deep[0]
    have = sorted(p.name for p in source.rglob("isic_annotated_*.csv"))[:6]
    raise FileNotFoundError(
        f"trap-set file {name} not found in {source} (searched recursively; found {have or 'no trap-set CSVs'}). "
        f"xaibias.data.fetch_isic_annotated() downloads them, or get them from "
        f"https://github.com/alceubissoto/debiasing-skin/tree/master/trap-sets"
    )


def load_trap_set(
    source: str | os.PathLike,
    split: str = "train",
    index: int = 1,
    *,
    images: str | os.PathLike | None = None,
    size: int = 224,
    exclude_val: bool = False,
    resize: str = "stretch",
    cache: bool = True,
    num_workers: int = 2,
) -> Any:
    """One published trap set of Bissoto et al. 2020 as an :class:`ISICDataset` with artifact flags.

    Photos the CSV lists but ``images`` lacks are skipped and counted: the count is
    ``dataset.n_missing`` (ids in ``dataset.missing_ids``), and one warning says it, naming the
    CSV and the images folder. Nothing is skipped silently.

    Parameters
    ----------
    source : path
        A folder holding ``isic_annotated_{split}{index}.csv`` (directly, in ``trap-sets/``, or
        deeper), or the path of such a CSV (then ``split`` and ``index`` are read from its name).
    split : {"train", "val", "test"}
    index : int
        Which of the five published splits (1-5).
    images : path, optional
        Folder of the photographs ``ISIC_xxxxxxx.jpg`` (searched recursively). Default: ``source``
        (for a CSV path: the folder above ``trap-sets/``, else the CSV's folder).
    size : int
        Side of the square images (pixels).
    exclude_val : bool
        For ``split="train"``: leave out the photos of ``val{index}``, which the published
        ``train{index}`` also lists (all 259 of them).
    resize, cache, num_workers
        As in :class:`ISICDataset`.

    Returns
    -------
    ISICDataset
        Binary labels (1 = malignant, from the CSV's ``label``), ``.artifacts`` under xaibias names
        (``frame`` = dark_corner, ``bubble`` = gel_bubble, ``patch`` = patches, ...), the CSV's
        ``vasc`` column in ``.meta``, and ``.n_missing``, ``.missing_ids``, ``.trap_file``,
        ``.trap_split`` (``"train1"``, ...) and ``.n_val_excluded``.
    """
    from .isic import ISICDataset

    src = Path(source).expanduser()
    if src.is_file():
        m = _TRAP_NAME.search(src.name)
        if m:
            split, index = m.group(1), int(m.group(2))
        csv = src
        root = src.parent.parent if src.parent.name == "trap-sets" else src.parent
    else:
        if not src.is_dir():
            raise FileNotFoundError(f"trap-set source {src} does not exist (give the folder holding trap-sets/ or a "
                                    f"isic_annotated_<split><k>.csv file)")
        if split not in TRAP_SPLITS:
            raise ValueError(f"split must be one of {TRAP_SPLITS}; got {split!r}")
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 1:
            raise ValueError(f"index must be a positive int (the published splits are 1-5); got {index!r}")
        csv = _find_csv(src, split, int(index))
        root = src
    img_dir = Path(images).expanduser() if images is not None else root
    if not img_dir.is_dir():
        raise FileNotFoundError(f"images folder for the trap set not found: {img_dir}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = ISICDataset(root, csv=csv, size=size, layout="bissoto", annotations=csv, missing="drop",
                         images_dir=img_dir, resize=resize, cache=cache, num_workers=num_workers)
    for w in caught:  # ISICDataset's own note on left-out rows; said once below instead
        if not str(w.message).startswith("ISICDataset("):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    ds.trap_file = csv
    ds.trap_split = f"{split}{index}"
    ds.n_missing = len(ds.missing_ids)
    ds.n_val_excluded = 0
    listed = len(ds) + sum(ds.dropped.values())
    if exclude_val and split == "train":
        val_ids = set(pd.read_csv(_find_csv(csv.parent, "val", int(index)), usecols=["image"])["image"]
                      .astype(str).map(lambda s: Path(s.strip()).stem))
        keep = np.array([i not in val_ids for i in ds.image_ids])
        ds_sub = ds.subset(keep)
        for attr in ("trap_file", "trap_split", "n_missing"):
            setattr(ds_sub, attr, getattr(ds, attr))
        ds_sub.n_val_excluded = int((~keep).sum())
        ds = ds_sub
    if ds.n_missing:
        warnings.warn(
            f"trap set {ds.trap_split} ({csv}): {ds.n_missing} of the {listed} photos it lists are not in "
            f"{img_dir} and were skipped; {len(ds)} loaded"
            + (f" ({ds.n_val_excluded} validation photos left out)" if ds.n_val_excluded else ""),
            UserWarning, stacklevel=2)
    return ds
