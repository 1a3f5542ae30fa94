"""Counterfactual bias insertion (Mikolajczyk, Grochowski & Kwasigroch 2021, GEBI, section 3.3).

Clustering explanations (SpRAy, GEBI) only *suggests* that a model uses an artifact. Insertion
tests it: paste the artifact into images that do not have it, with the same painters that made
the data (:func:`xaibias.data.insert_artifact`), and measure how much the score of the target
class (malignant) moves. A model that ignores the artifact barely moves; a model that learned the
shortcut jumps, and some benign images flip to malignant.

GEBI paper, Table 1 (DenseNet-121 on ISIC 2019, average / maximum change of the malignant score in
percentage points, malignant / benign images):

=============  ===============  ===============
artifact       malignant        benign
=============  ===============  ===============
ruler          2.21 / 22.01     1.23 / 19.91
frame          30.77 / 62.43    32.04 / 63.66
red circle     2.27 / 15.51     1.50 / 12.78
=============  ===============  ===============

and about 22 % of the benign images were classified malignant after a frame was added.

:func:`insertion_ratio` turns "the frame moves predictions several times more than a ruler" into a
number with a bootstrap interval over images, from the per-image table of :func:`bias_insertion`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .._checks import as_images, as_labels, as_masks, describe

__all__ = ["bias_insertion", "insertion_ratio", "INSERTION_COLUMNS", "GEBI_TABLE1"]

#: Columns of the table returned by :func:`bias_insertion` (GEBI Table 1 layout plus extras).
INSERTION_COLUMNS = (
    "artifact", "true_class", "mean_change_pp", "max_change_pp", "flip_rate",
    "mean_abs_change_pp", "min_change_pp", "to_target_rate", "from_target_rate",
    "score_before", "score_after", "mask_area", "n", "n_skipped",
)

#: GEBI paper Table 1 (DenseNet-121, ISIC): (artifact, true class) -> (average, maximum) change in pp.
GEBI_TABLE1: dict[tuple[str, str], tuple[float, float]] = {
    ("ruler", "malignant"): (2.21, 22.01),
    ("ruler", "benign"): (1.23, 19.91),
    ("frame", "malignant"): (30.77, 62.43),
    ("frame", "benign"): (32.04, 63.66),
    ("red_circle", "malignant"): (2.27, 15.51),
    ("red_circle", "benign"): (1.50, 12.78),
}


def _proba(model: Any, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    from ..models import predict_proba

    return predict_proba(model, images, batch_size=batch_size)


def _present_flags(present: Any, artifacts: Sequence[str], n: int) -> dict[str, np.ndarray]:
    if present is None:
        return {a: np.zeros(n, bool) for a in artifacts}
    if isinstance(present, pd.DataFrame):
        cols = {str(c): present[c].to_numpy() for c in present.columns}
    elif isinstance(present, Mapping):
        cols = {str(k): np.asarray(v.cpu() if isinstance(v, torch.Tensor) else v) for k, v in present.items()}
    else:
        raise ValueError(f"present must be a DataFrame or dict of bool flags per artifact; got {describe(present)}")
    out = {}
    for a in artifacts:
        v = cols.get(a)
        if v is None:
            out[a] = np.zeros(n, bool)
            continue
        if len(v) != n:
            raise ValueError(f"mismatched N: images has N={n}, present[{a!r}] has N={len(v)}")
        out[a] = v.astype(bool)
    return out


def bias_insertion(
    model: Any,
    images: Any,
    labels: Any,
    artifacts: Sequence[str] = ("frame", "ruler", "red_circle"),
    target_class: int = 1,
    seed: int = 0,
    present: Any = None,
    lesion_masks: Any = None,
    class_names: Sequence[str] | None = None,
    artifact_params: Mapping[str, Mapping[str, Any]] | None = None,
    batch_size: int = 256,
    return_per_image: bool = False,
    progress: bool = True,
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Paste artifacts into images and measure how the target-class score changes.

    Parameters
    ----------
    model : torch.nn.Module
        Classifier taking (N,3,H,W) images in [0,1]; scored with softmax probabilities.
    images : (N,3,H,W) float in [0,1]
        Images to insert into (not modified).
    labels : (N,)
        True classes; the table has one row per artifact and true class.
    artifacts : sequence of str
        Names from :data:`xaibias.data.ARTIFACTS`.
    target_class : int
        The class whose score is tracked (1 = malignant).
    seed : int
        Seed of the painters: image ``i`` gets the same artifact for every model, so two models
        are compared on identical counterfactuals.
    present : DataFrame or dict of bool (N,), optional
        Artifacts the images already have (e.g. ``ds.artifacts``); those images are left out of that
        artifact's row (``n_skipped``), as in the paper, which inserted into clean images.
    lesion_masks : bool (N,H,W), optional
        Passed to the painters (red circle and patch avoid the lesion, ink surrounds it).
    class_names : sequence of str, optional
        Names for ``true_class`` (default: the integer class).
    artifact_params : {artifact: {param: value}}, optional
        Painter parameters, e.g. ``{"frame": {"style": "square"}}``.
    batch_size : int
        Images per forward pass.
    return_per_image : bool
        Also return the per-image table.
    progress : bool
        Show a progress bar over the artifacts.

    Returns
    -------
    table : pandas.DataFrame
        One row per (artifact, true class), columns :data:`INSERTION_COLUMNS`:

        - ``mean_change_pp``: mean change of the target-class probability, in percentage points
          (after - before; positive = towards the target class),
        - ``max_change_pp``: the largest absolute change (the paper's "maximum change"),
        - ``flip_rate``: share of images whose predicted class changed,
        - ``mean_abs_change_pp``, ``min_change_pp`` (most negative change),
        - ``to_target_rate`` / ``from_target_rate``: share flipping into / out of the target class
          (e.g. benign -> malignant),
        - ``score_before`` / ``score_after``: mean target-class probability,
        - ``mask_area``: mean share of pixels the painter changed,
        - ``n``: images used, ``n_skipped``: images left out because they had the artifact.
    per_image : pandas.DataFrame (only with ``return_per_image=True``)
        One row per image and artifact: ``index, artifact, true_class, score_before, score_after,
        change_pp, pred_before, pred_after, flipped, mask_area, skipped``.
    """
    from ..data import ARTIFACTS, insert_artifact

    X = as_images(images, "images")
    n = len(X)
    y = as_labels(labels, n=n, name="labels").numpy()
    if isinstance(artifacts, str):
        artifacts = (artifacts,)
    artifacts = tuple(artifacts)
    if not artifacts:
        raise ValueError("artifacts is empty; give at least one of " + ", ".join(ARTIFACTS))
    unknown = [a for a in artifacts if a not in ARTIFACTS]
    if unknown:
        raise ValueError(f"unknown artifact(s) {unknown}; choose from {list(ARTIFACTS)}")
    if lesion_masks is not None:
        lesion_masks = as_masks(lesion_masks, name="lesion_masks")
        if tuple(lesion_masks.shape) != (n, *X.shape[-2:]):
            raise ValueError(f"lesion_masks must be bool (N,H,W) = {(n, *X.shape[-2:])}; got {describe(lesion_masks)}")
    params = {a: dict((artifact_params or {}).get(a, {})) for a in artifacts}
    flags = _present_flags(present, artifacts, n)

    before = _proba(model, X, batch_size)
    n_classes = before.shape[1]
    if isinstance(target_class, bool) or not isinstance(target_class, (int, np.integer)) or not 0 <= target_class < n_classes:
        raise ValueError(f"target_class must be an int in [0, {n_classes - 1}] (the model has {n_classes} outputs); got {target_class!r}")
    if class_names is not None and len(class_names) < int(y.max()) + 1:
        raise ValueError(f"class_names has {len(class_names)} names but labels go up to {int(y.max())}")
    s_before = before[:, target_class].numpy().astype(np.float64)
    pred_before = before.argmax(1).numpy()
    name_of = (lambda c: class_names[c]) if class_names is not None else (lambda c: int(c))

    rows, per = [], []
    for a in tqdm(artifacts, desc="bias insertion", disable=not progress, leave=False):
        Xa, masks = insert_artifact(X, a, seed=seed, lesion_masks=lesion_masks, **params[a])
        after = _proba(model, Xa, batch_size)
        del Xa
        s_after = after[:, target_class].numpy().astype(np.float64)
        pred_after = after.argmax(1).numpy()
        change = 100.0 * (s_after - s_before)
        area = masks.reshape(n, -1).float().mean(1).numpy()
        skipped = flags[a]
        flipped = pred_after != pred_before
        per.append(pd.DataFrame({
            "index": np.arange(n), "artifact": a, "true_class": [name_of(c) for c in y],
            "score_before": s_before, "score_after": s_after, "change_pp": change,
            "pred_before": pred_before, "pred_after": pred_after, "flipped": flipped,
            "mask_area": area, "skipped": skipped,
        }))
        for c in np.unique(y):
            cls = y == c
            use = cls & ~skipped
            k = int(use.sum())
            if k == 0:
                rows.append([a, name_of(c), 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0, int(cls.sum())])
                continue
            ch = change[use]
            rows.append([
                a, name_of(c), float(ch.mean()), float(np.abs(ch).max()), float(flipped[use].mean()),
                float(np.abs(ch).mean()), float(ch.min()),
                float(((pred_before[use] != target_class) & (pred_after[use] == target_class)).mean()),
                float(((pred_before[use] == target_class) & (pred_after[use] != target_class)).mean()),
                float(s_before[use].mean()), float(s_after[use].mean()), float(area[use].mean()),
                k, int((cls & skipped).sum()),
            ])
    table = pd.DataFrame(rows, columns=list(INSERTION_COLUMNS))
    table.attrs.update(target_class=int(target_class), seed=int(seed), n=n)
    if return_per_image:
        return table, pd.concat(per, ignore_index=True)
    return table


def insertion_ratio(
    per_image: pd.DataFrame,
    artifact: str,
    reference: str,
    true_class: Any = None,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """How many times more one pasted artifact moves the score than another, with an interval.

    The ratio is ``mean(change_pp of artifact) / mean(|change_pp| of reference)``: the signed mean
    change of ``artifact`` (as ``mean_change_pp`` in the table) over the mean *absolute* change of
    ``reference`` (``mean_abs_change_pp``), so a reference that moves scores both ways is not
    credited with cancelling itself. Each artifact's images are those it was inserted into (rows
    with ``skipped`` False) of class ``true_class``; the two samples are resampled independently
    (percentile bootstrap over images, :func:`xaibias.analysis.ratio_ci`).

    Parameters
    ----------
    per_image : pandas.DataFrame
        The per-image table of ``bias_insertion(..., return_per_image=True)``.
    artifact, reference : str
        Artifacts in ``per_image["artifact"]`` (for example ``"frame"`` and ``"ruler"``).
    true_class : optional
        Keep only images of this ``true_class`` (for example ``"benign"``); None keeps all.
    n_boot, level, seed
        As in :func:`xaibias.analysis.bootstrap_ci`.

    Returns
    -------
    (value, low, high) : tuple of float
    """
    from .stats import ratio_ci

    need = {"artifact", "true_class", "change_pp", "skipped"}
    if not isinstance(per_image, pd.DataFrame) or not need <= set(per_image.columns):
        raise ValueError(
            "per_image must be the per-image table of bias_insertion(..., return_per_image=True) with columns "
            f"{sorted(need)}; got {describe(per_image) if not isinstance(per_image, pd.DataFrame) else sorted(per_image.columns)}"
        )
    samples = []
    for a in (artifact, reference):
        rows = per_image[(per_image["artifact"] == a) & ~per_image["skipped"].astype(bool)]
        if true_class is not None:
            rows = rows[rows["true_class"] == true_class]
        if len(rows) < 2:
            have = sorted(per_image["artifact"].unique().tolist())
            raise ValueError(f"artifact {a!r} has {len(rows)} inserted image(s) of true_class={true_class!r} "
                             f"in per_image (artifacts there: {have}); need at least 2")
        samples.append(rows["change_pp"].to_numpy(dtype=float))
    if np.abs(samples[1]).mean() == 0:
        raise ValueError(f"{reference!r} changed no score at all; the ratio {artifact!r} / {reference!r} is undefined")
    return ratio_ci(samples[0], samples[1], denominator=lambda b: max(np.abs(b).mean(), 1e-12),
                    n_boot=n_boot, level=level, seed=seed)
