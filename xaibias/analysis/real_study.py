"""The numbers of notebook 08 (real ISIC photos): co-occurrence, heads on cached features, trap-set AUROCs.

Notebook 08 studies real dermoscopy photos with the artifact annotations of Bissoto et al. 2020
and an ImageNet-pretrained EfficientNet-Lite0 whose backbone stays frozen in FAST mode. Its
features are computed once for every photo (:func:`xaibias.models.extract_features`, cached), so
every classifier of the notebook (the plain model, the trap-set model, the resampled and the DFR
corrections) is a *head* trained on rows of that one feature table, in seconds. This module holds
the plumbing behind those cells; it returns numbers, :class:`~xaibias.comparison.Estimate` objects
and DataFrames, never figures.

- :func:`locate_data`: the photo folder from an environment variable or the first candidate that
  exists.
- :func:`cooccurrence`: P(artifact | melanoma) and P(artifact | other) per annotated artifact, with
  intervals.
- :func:`stratified_split`: a train/test split that keeps the class shares.
- :func:`head_model`, :func:`head_scores`: :func:`xaibias.models.finetune`'s head training
  (``last_block=False, full=False``), run on cached features instead of images; the result is the
  complete model (backbone and head), so attribution and insertion work on it unchanged.
- :func:`auroc`, :func:`balanced_accuracy`: estimates with bootstrap intervals stratified by label.
- :func:`agreement`, :func:`auroc_gap`, :func:`gap_difference`: the trap-set reading (Bissoto et al.
  2020): AUROC where the artifact agrees with the label minus where it disagrees.
- :func:`group_balanced_indices`, :func:`project_out`: the data correction and P-ClArC on pooled
  features.
- :func:`corner_darkness`, :func:`central_disk`: a pixel rule for dark corners, and a stand-in lesion
  mask for the painters.
- :func:`insertion_summary`: GEBI's Table 1 layout (mean / max change, flip rate) with intervals.
- :func:`inference_copy`, :func:`pooled_activations`, :func:`with_head`: a batch-norm-folded copy for
  fast predictions, pooled activations of several layers in one pass, a model with another head.
- :func:`auroc_parts`, :func:`worst_group`: AUROC on all / agreeing / disagreeing photos, and the
  worst group's accuracy, each with an interval.
- :func:`within_class`, :func:`retrieval_difference`: concept scores centred per class, and the
  paired AUROC difference of two detectors of the same artifact on the same photos.
- :func:`cluster_table`: clusterings scored against artifacts (``score_clustering``), one row each.

Agreement, precisely: the trap model is trained where the artifact comes with class
``positive`` (melanoma). A photo *agrees* when its flag says what that tie says: class ``positive``
with the artifact, or another class without it. It *disagrees* otherwise (melanoma without the
artifact, benign with it). A model that follows the artifact ranks the agreeing photos well and the
disagreeing ones badly.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from .. import config
from .._checks import as_images, as_labels, check_int, describe
from ..comparison import Estimate, estimate

__all__ = [
    "locate_data", "cooccurrence", "stratified_split", "head_model", "head_scores", "auroc", "balanced_accuracy",
    "agreement", "auroc_gap", "gap_difference", "group_balanced_indices", "project_out", "corner_darkness",
    "central_disk", "insertion_summary", "inference_copy", "pooled_activations", "with_head", "auroc_parts",
    "worst_group", "within_class", "retrieval_difference", "cluster_table",
]


def locate_data(candidates: Sequence[str | os.PathLike], env: str = "XAIBIAS_ISIC_REAL",
                marker: str = "isic_bias.csv") -> Path | None:
    """The photo folder: ``$env`` when set (even if it lacks the photos), else the first candidate holding ``marker``.

    Returns ``None`` when no folder holds ``marker`` (the annotation CSV), so a notebook can skip its
    real-photo cells with one flag.
    """
    value = os.environ.get(env, "").strip()
    folders = [Path(value).expanduser()] if value else [Path(c).expanduser() for c in candidates]
    for f in folders:
        if (f / marker).is_file():
            return f.resolve()
    return None


def _flags_frame(flags: Any, n: int, name: str = "flags") -> pd.DataFrame:
    if isinstance(flags, pd.Series):
        flags = flags.to_frame()
    if not isinstance(flags, pd.DataFrame):
        raise ValueError(f"{name} must be a DataFrame of bool columns (one per artifact); got {describe(flags)}")
    if len(flags) != n:
        raise ValueError(f"{name} has {len(flags)} rows but there are {n} labels")
    bad = [c for c in flags.columns if flags[c].dtype != bool]
    if bad:
        raise ValueError(f"{name} columns must be bool; {bad} are not")
    return flags.reset_index(drop=True)


def _binary(labels: Any, n: int | None = None) -> np.ndarray:
    y = as_labels(labels, n=n).numpy()
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"labels must be 0/1 (1 = melanoma); got values {sorted(set(y.tolist()))[:5]}")
    return y


def cooccurrence(flags: Any, labels: Any, names: Mapping[str, str] | None = None, *, n_boot: int = 1000,
                 seed: int = 0) -> pd.DataFrame:
    """P(artifact | melanoma) and P(artifact | other) per artifact, each with a bootstrap 95 % interval.

    Parameters
    ----------
    flags : DataFrame of bool columns, one row per photo
    labels : 0/1 per photo (1 = melanoma)
    names : optional mapping column -> printed name (e.g. ``{"frame": "dark_corner"}``)
    n_boot, seed : bootstrap draws and seed (each class resampled on its own)

    Returns
    -------
    DataFrame indexed by artifact: ``n_melanoma``, ``n_other`` (photos with the artifact),
    ``p_melanoma``, ``p_melanoma_low``, ``p_melanoma_high``, ``p_other``, ``p_other_low``,
    ``p_other_high`` and ``ratio`` (p_melanoma / p_other).
    """
    y = _binary(labels)
    f = _flags_frame(flags, len(y))
    if y.min() == y.max():
        raise ValueError("labels hold a single class; the co-occurrence table needs melanoma and other photos")
    rows = []
    for c in f.columns:
        v = f[c].to_numpy()
        row = {"artifact": (names or {}).get(c, c)}
        for tag, sel in (("melanoma", y == 1), ("other", y == 0)):
            e = estimate(v[sel].astype(float), n_boot=n_boot, seed=seed, name=f"P({c} | {tag})")
            row.update({f"n_{tag}": int(v[sel].sum()), f"p_{tag}": e.value, f"p_{tag}_low": e.low,
                        f"p_{tag}_high": e.high})
        row["ratio"] = row["p_melanoma"] / row["p_other"] if row["p_other"] > 0 else np.inf
        rows.append(row)
    return pd.DataFrame(rows).set_index("artifact")


def stratified_split(labels: Any, test_fraction: float, seed: int = 0,
                     among: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test) with each class split ``1 - test_fraction`` / ``test_fraction`` at random.

    ``among``: optional indices to split (default all); the result indexes ``labels``.
    """
    y = as_labels(labels).numpy()
    if not 0 < float(test_fraction) < 1:
        raise ValueError(f"test_fraction must lie in (0, 1); got {test_fraction!r}")
    pool = np.arange(len(y)) if among is None else np.asarray(among, dtype=np.int64).reshape(-1)
    rng = np.random.default_rng(int(seed))
    train, test = [], []
    for c in np.unique(y[pool]):
        members = rng.permutation(pool[y[pool] == c])
        k = int(round(len(members) * float(test_fraction)))
        test.append(members[:k])
        train.append(members[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def head_model(name: str, features: Any, labels: Any, *, seed: int = 0, epochs: int | None = None,
               weight_decay: float | None = None, class_weight: Any = "balanced", device: str | None = None) -> nn.Module:
    """A pretrained zoo model whose new head is fitted on cached pooled features, as ``finetune`` fits it.

    ``xb.models.finetune(name, images, labels)`` in head mode computes the frozen backbone's pooled
    features of ``images`` and fits the classifier's linear layer on them (an L2-penalised logistic
    regression on standardised features, by L-BFGS). This function takes those features directly
    (rows of one table computed once for every photo), so a head on any subset costs no forward
    pass: same initialisation (``make_model(name, 2, pretrained=True, seed=seed)``), same class
    weights, same fit and defaults (``xaibias._finetune.DEFAULTS["head"]``); the test suite checks
    that both give the same head.

    Parameters
    ----------
    name : a model of :data:`xaibias.models.FINETUNE_MODELS` (``"efficientnet_lite0"``)
    features : (N, D) float, ``extract_features(make_model(name, pretrained=True), images)[rows]``
    labels : (N,) class indices (0/1)
    seed, epochs, weight_decay, class_weight, device
        As in :func:`xaibias.models.finetune` (``epochs``: the most L-BFGS iterations;
        ``weight_decay``: the L2 penalty).

    Returns
    -------
    nn.Module
        The complete model (backbone and fitted head) in eval mode; ``predict_proba``, attribution
        and insertion work on it; :func:`head_scores` scores cached features with it.
    """
    from .. import _finetune as ft
    from ..models import make_model

    if name not in ft.FINETUNE_MODELS:
        raise ValueError(f"name must be one of {ft.FINETUNE_MODELS}; got {name!r}")
    feats = torch.as_tensor(features).float()
    if feats.ndim != 2 or not bool(torch.isfinite(feats).all()):
        raise ValueError(f"features must be finite (N, D) pooled features; got {describe(feats)}")
    y = as_labels(labels, n=len(feats))
    if len(torch.unique(y)) < 2:
        raise ValueError("labels hold a single class; a head needs photos of both classes")
    iterations, _, _, decay = ft.DEFAULTS["head"]
    iterations = check_int(iterations if epochs is None else epochs, "epochs", 1)
    decay = float(decay if weight_decay is None else weight_decay)
    if not decay >= 0:
        raise ValueError(f"weight_decay must be a non-negative number; got {weight_decay!r}")
    dev = device or config.device()
    model = make_model(name, 2, pretrained=True, seed=seed)
    if feats.shape[1] != model.classifier[-1].in_features:
        raise ValueError(f"features have {feats.shape[1]} columns; {name}'s head takes {model.classifier[-1].in_features}")
    weight = ft._class_weights(y, 2, class_weight)
    config.seed_everything(seed)
    ft._train_head(model, feats, y, weight, iterations, decay, dev, False)
    model.xaibias_head = {"rows": len(feats), "iterations": iterations, "weight_decay": decay}  # type: ignore[attr-defined]
    return model.to(dev).eval()


@torch.no_grad()
def head_scores(model: nn.Module, features: Any) -> np.ndarray:
    """P(class 1) from pooled features: the model's classifier (dropout off) and a softmax."""
    feats = torch.as_tensor(features).float()
    head = model.classifier
    was = head.training
    head.eval()
    dev = next(head.parameters()).device
    p = torch.softmax(head(feats.to(dev)).float(), 1)[:, 1].cpu().numpy().astype(np.float64)
    head.train(was)
    return p


def auroc(scores: Any, labels: Any, *, n_boot: int = 1000, seed: int = 0, name: str = "AUROC") -> Estimate:
    """AUROC with a percentile bootstrap interval; photos are resampled within their class."""
    from sklearn.metrics import roc_auc_score

    y = _binary(labels)
    s = np.asarray(scores, dtype=float).reshape(-1)
    if len(s) != len(y):
        raise ValueError(f"{name}: {len(s)} scores but {len(y)} labels")
    if y.min() == y.max():
        raise ValueError(f"{name}: the labels hold a single class; an AUROC needs both")
    return estimate(s, y.astype(float), statistic=lambda a, b: roc_auc_score(b, a), strata=y, n_boot=n_boot,
                    seed=seed, name=name)


def _bacc(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean([np.mean(pred[y == c] == c) for c in (0, 1)]))


def balanced_accuracy(scores: Any, labels: Any, *, threshold: float = 0.5, n_boot: int = 1000, seed: int = 0,
                      name: str = "balanced accuracy") -> Estimate:
    """Mean of the two classes' recalls (chance 0.5 whatever the class shares), interval stratified by class.

    ``scores`` are P(class 1) (thresholded at ``threshold``) or 0/1 predictions.
    """
    y = _binary(labels)
    pred = (np.asarray(scores, dtype=float).reshape(-1) >= threshold).astype(float)
    if len(pred) != len(y):
        raise ValueError(f"{name}: {len(pred)} scores but {len(y)} labels")
    if y.min() == y.max():
        raise ValueError(f"{name}: the labels hold a single class; a balanced accuracy needs both")
    return estimate(pred, y.astype(float), statistic=lambda p, t: _bacc(p, t), strata=y, n_boot=n_boot, seed=seed,
                    name=name)


def agreement(flags: Any, labels: Any, positive: int = 1) -> np.ndarray:
    """True where the artifact flag agrees with the training tie: class ``positive`` with it, other classes without."""
    y = _binary(labels)
    f = np.asarray(flags.cpu() if isinstance(flags, torch.Tensor) else flags).reshape(-1)
    if f.dtype != bool:
        if not np.isin(f, (0, 1)).all():
            raise ValueError(f"flags must be bool or 0/1; got values {np.unique(f)[:5].tolist()}")
        f = f.astype(bool)
    if len(f) != len(y):
        raise ValueError(f"{len(f)} flags but {len(y)} labels")
    if positive not in (0, 1):
        raise ValueError(f"positive must be 0 or 1; got {positive!r}")
    return f == (y == positive)


def _gap(s: np.ndarray, y: np.ndarray, a: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    a = a.astype(bool)
    return float(roc_auc_score(y[a], s[a]) - roc_auc_score(y[~a], s[~a]))


def _gap_strata(y: np.ndarray, agree: np.ndarray, name: str) -> np.ndarray:
    strata = 2 * agree.astype(int) + y
    counts = np.bincount(strata, minlength=4)
    if (counts < 2).any():
        raise ValueError(f"{name}: every cell of agree/disagree x class needs at least 2 photos; got "
                         f"{dict(zip(('disagree, other', 'disagree, melanoma', 'agree, other', 'agree, melanoma'), counts.tolist()))}")
    return strata


def auroc_gap(scores: Any, labels: Any, agree: Any, *, n_boot: int = 1000, seed: int = 0,
              name: str = "AUROC gap") -> Estimate:
    """AUROC among the agreeing photos minus AUROC among the disagreeing ones, bootstrap over photos.

    Photos are resampled within the four cells agree/disagree x class, so both AUROCs stay defined and
    each part keeps its size. No effect is 0; a model that follows the artifact has a positive gap.
    """
    y = _binary(labels)
    s = np.asarray(scores, dtype=float).reshape(-1)
    a = np.asarray(agree, dtype=bool).reshape(-1)
    if not len(s) == len(a) == len(y):
        raise ValueError(f"{name}: scores ({len(s)}), labels ({len(y)}) and agree ({len(a)}) differ in length")
    strata = _gap_strata(y, a, name)
    return estimate(s, y.astype(float), a.astype(float), statistic=lambda s_, y_, a_: _gap(s_, y_.astype(int), a_),
                    strata=strata, n_boot=n_boot, seed=seed, name=name)


def gap_difference(scores_a: Any, scores_b: Any, labels: Any, agree: Any, *, n_boot: int = 1000, seed: int = 0,
                   name: str = "AUROC gap difference") -> Estimate:
    """Model a's AUROC gap minus model b's, on the same photos (one resample for both: paired)."""
    y = _binary(labels)
    sa = np.asarray(scores_a, dtype=float).reshape(-1)
    sb = np.asarray(scores_b, dtype=float).reshape(-1)
    a = np.asarray(agree, dtype=bool).reshape(-1)
    if not len(sa) == len(sb) == len(a) == len(y):
        raise ValueError(f"{name}: scores_a, scores_b, labels and agree must have one entry per photo")
    strata = _gap_strata(y, a, name)

    def diff(x: np.ndarray, z: np.ndarray, y_: np.ndarray, a_: np.ndarray) -> float:
        return _gap(x, y_.astype(int), a_) - _gap(z, y_.astype(int), a_)

    return estimate(sa, sb, y.astype(float), a.astype(float), statistic=diff, strata=strata, n_boot=n_boot,
                    seed=seed, name=name)


def group_balanced_indices(labels: Any, flags: Any, n_per_group: int | None = None, seed: int = 0) -> np.ndarray:
    """Indices drawn with replacement so that every group (class x artifact flag) holds ``n_per_group`` photos.

    Group-balanced resampling (the data correction): the artifact then says nothing about the class
    in the resampled set, P(melanoma | artifact) = P(melanoma | no artifact) = 1/2. Default
    ``n_per_group``: a quarter of the photos. Raises when a group is empty (it cannot be resampled).
    """
    y = _binary(labels)
    f = np.asarray(flags, dtype=bool).reshape(-1)
    if len(f) != len(y):
        raise ValueError(f"{len(f)} flags but {len(y)} labels")
    n = len(y) // 4 if n_per_group is None else check_int(n_per_group, "n_per_group", 1)
    rng = np.random.default_rng(int(seed))
    out = []
    for c in (0, 1):
        for flag in (False, True):
            members = np.flatnonzero((y == c) & (f == flag))
            if len(members) == 0:
                raise ValueError(f"group class {c} x artifact {'present' if flag else 'absent'} is empty; "
                                 "it cannot be resampled")
            out.append(rng.choice(members, size=n, replace=True))
    return np.concatenate(out)


def project_out(features: Any, direction: Any, reference: Any) -> torch.Tensor:
    """P-ClArC on pooled features: ``f - v v^T (f - z)`` for a unit direction ``v`` and reference ``z``.

    The projection at the last feature layer commutes with global average pooling (it is affine), so
    projecting the pooled features equals pooling the projected maps
    (:func:`xaibias.mitigation.clarc.add_projection` at that layer).
    """
    f = torch.as_tensor(features).double()
    v = torch.as_tensor(np.asarray(direction, dtype=np.float64)).reshape(-1)
    z = torch.as_tensor(np.asarray(reference, dtype=np.float64)).reshape(-1)
    if f.ndim != 2 or f.shape[1] != len(v) or len(z) != len(v):
        raise ValueError(f"features must be (N, D) with D = len(direction) = len(reference); got "
                         f"{describe(f)}, {len(v)} and {len(z)}")
    norm = float(v.norm())
    if not norm > 0:
        raise ValueError("direction is zero")
    v = v / norm
    return (f - torch.outer((f - z) @ v, v)).float()


def corner_darkness(images: Any, fraction: float = 0.125) -> np.ndarray:
    """Mean darkness (1 - brightness) of the four corner squares (side ``fraction`` of the image): a pixel rule for dark corners."""
    x = as_images(images)
    if not 0 < fraction <= 0.5:
        raise ValueError(f"fraction must lie in (0, 0.5]; got {fraction!r}")
    k = max(1, int(round(x.shape[-1] * fraction)))
    corners = torch.stack([x[..., :k, :k], x[..., :k, -k:], x[..., -k:, :k], x[..., -k:, -k:]])
    return (1.0 - corners.mean(dim=(0, 2, 3, 4))).double().numpy()


def central_disk(n: int, size: int, radius: float = 0.3) -> torch.Tensor:
    """Bool masks (n, size, size) of a centred disk (radius as a share of the side): a stand-in lesion mask.

    Dermoscopy photos centre the lesion; without a segmentation, this tells the painters (patch, red
    circle, ink) where the lesion roughly is, so a pasted patch lands beside it, not on it.
    """
    n = check_int(n, "n", 1)
    size = check_int(size, "size", 1)
    if not 0 < radius <= 0.5:
        raise ValueError(f"radius must lie in (0, 0.5]; got {radius!r}")
    c = (size - 1) / 2
    yy, xx = np.mgrid[:size, :size]
    disk = (yy - c) ** 2 + (xx - c) ** 2 <= (radius * size) ** 2
    return torch.from_numpy(np.broadcast_to(disk, (n, size, size)).copy())


def insertion_summary(per_image: pd.DataFrame, *, target: int = 1, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """GEBI Table 1 layout from :func:`xaibias.analysis.bias_insertion`'s per-image table, with intervals.

    One row per (artifact, true class) over the photos that did not carry the artifact: ``n``,
    ``mean_change_pp`` with ``mean_low`` / ``mean_high`` (bootstrap over photos), ``max_change_pp``
    (largest absolute change), ``flip_rate`` with ``flip_low`` / ``flip_high`` (any change of the
    predicted class) and ``to_target_rate`` (predicted class ``target`` after, not before: GEBI's
    "benign images classified malignant after the frame was added").
    """
    need = {"artifact", "true_class", "change_pp", "flipped", "skipped", "pred_before", "pred_after"}
    if not isinstance(per_image, pd.DataFrame) or not need <= set(per_image.columns):
        raise ValueError(f"per_image must be bias_insertion's per-image table with columns {sorted(need)}")
    rows = []
    used = per_image[~per_image["skipped"].astype(bool)]
    for (a, c), g in used.groupby(["artifact", "true_class"], sort=False):
        ch = g["change_pp"].to_numpy(float)
        fl = g["flipped"].to_numpy(float)
        row = {"artifact": a, "true_class": c, "n": len(ch), "mean_change_pp": float(ch.mean()),
               "mean_low": np.nan, "mean_high": np.nan, "max_change_pp": float(np.abs(ch).max()),
               "flip_rate": float(fl.mean()), "flip_low": np.nan, "flip_high": np.nan,
               "to_target_rate": float(((g["pred_before"] != target) & (g["pred_after"] == target)).mean())}
        if len(ch) >= 2:
            e = estimate(ch, n_boot=n_boot, seed=seed, name=f"{a}, {c}: mean change")
            f = estimate(fl, n_boot=n_boot, seed=seed, name=f"{a}, {c}: flip rate")
            row.update(mean_low=e.low, mean_high=e.high, flip_low=f.low, flip_high=f.high)
        rows.append(row)
    return pd.DataFrame(rows).set_index(["artifact", "true_class"])


class _Fast(nn.Module):
    """Frozen layers with batch norms folded, fed channels-last; then the classifier (same logits, ~1e-6)."""

    def __init__(self, body: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.body, self.head = body, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x.contiguous(memory_format=torch.channels_last)).float())


def inference_copy(model: nn.Module, device: str | None = None) -> nn.Module:
    """A copy of a ``features -> avgpool -> classifier`` model for predictions only, about twice as fast on a CPU.

    The batch norms are folded into the convolutions and the activations kept channels-last, as
    :func:`xaibias.models.extract_features` computes its features; the logits agree with the model's
    to float32 rounding. Use it where only predictions are needed (insertion); explain the model itself.
    """
    from .. import _finetune as ft

    ft._check_layout(model)
    dev = device or str(next(model.parameters()).device)
    body = ft._fast([*model.features, model.avgpool, nn.Flatten()], dev)
    return _Fast(body, copy.deepcopy(model.classifier).to(dev)).eval()


def _layer_index(model: nn.Module, layer: str) -> int:
    parts = str(layer).split(".")
    if len(parts) != 2 or parts[0] != "features" or not parts[1].isdigit() or int(parts[1]) >= len(model.features):
        raise ValueError(f"layer must be 'features.<i>' with i < {len(model.features)}; got {layer!r}")
    return int(parts[1])


@torch.no_grad()
def pooled_activations(model: nn.Module, images: Any, layers: Sequence[str], *, batch_size: int = 32,
                       device: str | None = None) -> dict[str, torch.Tensor]:
    """Spatially averaged outputs of ``model.features[i]`` for each layer ``"features.<i>"``, in one pass.

    The pass stops after the deepest layer asked for and runs batch-norm-folded copies of the layers
    (as :func:`xaibias.models.extract_features`), so ``"features.8"`` of EfficientNet-Lite0 equals its
    cached pooled features. Returns ``{layer: (N, C) float32 CPU tensor}``.
    """
    from .. import _finetune as ft

    if isinstance(layers, str) or not len(layers):
        raise ValueError(f"layers must be a non-empty list such as ['features.5', 'features.8']; got {layers!r}")
    idx = sorted({_layer_index(model, la) for la in layers})
    x_all = as_images(images)
    dev = device or str(next(model.parameters()).device)
    parts, start = [], 0
    for i in idx:
        parts.append(ft._fast(list(model.features[start:i + 1]), dev))
        start = i + 1
    out: dict[int, list[torch.Tensor]] = {i: [] for i in idx}
    for batch in x_all.split(check_int(batch_size, "batch_size", 1)):
        a = batch.to(dev).contiguous(memory_format=torch.channels_last)
        for i, part in zip(idx, parts):
            a = part(a)
            out[i].append(a.float().mean(dim=(2, 3)).cpu())
    return {f"features.{i}": torch.cat(out[i]) for i in idx if f"features.{i}" in set(layers)}


def with_head(model: nn.Module, head: nn.Module) -> nn.Module:
    """A deep copy of ``model`` whose ``classifier`` is ``head`` (a copy), e.g. a DFR-refitted classifier."""
    out = copy.deepcopy(model)
    out.classifier = copy.deepcopy(head).to(next(model.parameters()).device)
    return out.eval()


def auroc_parts(scores: Any, labels: Any, agree: Any, *, n_boot: int = 1000, seed: int = 0) -> dict[str, Estimate]:
    """AUROC with an interval on all photos, on the agreeing and on the disagreeing ones (:func:`agreement`)."""
    y = _binary(labels)
    s = np.asarray(scores, dtype=float).reshape(-1)
    a = np.asarray(agree, dtype=bool).reshape(-1)
    if not len(s) == len(a) == len(y):
        raise ValueError(f"scores ({len(s)}), labels ({len(y)}) and agree ({len(a)}) differ in length")
    return {"all": auroc(s, y, n_boot=n_boot, seed=seed, name="AUROC, all photos"),
            "agree": auroc(s[a], y[a], n_boot=n_boot, seed=seed, name="AUROC, artifact agrees"),
            "disagree": auroc(s[~a], y[~a], n_boot=n_boot, seed=seed, name="AUROC, artifact disagrees")}


def worst_group(correct: Any, groups: Any, *, min_count: int = 1, n_boot: int = 1000, seed: int = 0) -> Estimate:
    """The lowest group accuracy, with a bootstrap interval (photos resampled within their group)."""
    c = np.asarray(correct, dtype=float).reshape(-1)
    g = np.asarray(groups).reshape(-1)
    if len(c) != len(g) or not np.isin(c, (0.0, 1.0)).all():
        raise ValueError("correct must be 0/1 per photo and groups one id per photo, of the same length")
    keep = np.isin(g, [k for k in np.unique(g) if (g == k).sum() >= check_int(min_count, "min_count", 1)])
    if not keep.any():
        raise ValueError(f"no group has at least min_count={min_count} photos")
    c, g = c[keep], g[keep]
    ids = np.unique(g, return_inverse=True)[1]

    def low(cc: np.ndarray, gg: np.ndarray) -> float:
        gi = gg.astype(int)
        return float((np.bincount(gi, weights=cc) / np.bincount(gi)).min())

    return estimate(c, ids.astype(float), statistic=low, strata=ids, n_boot=n_boot, seed=seed, name="worst group")


def within_class(scores: Any, labels: Any) -> np.ndarray:
    """``scores`` minus their class's mean: a detector's score with the class difference taken out."""
    s = np.asarray(scores, dtype=float).reshape(-1).copy()
    y = as_labels(labels, n=len(s)).numpy()
    for c in np.unique(y):
        s[y == c] -= s[y == c].mean()
    return s


def retrieval_difference(scores_a: Any, scores_b: Any, flags: Any, *, n_boot: int = 1000, seed: int = 0,
                         name: str = "retrieval AUROC difference") -> Estimate:
    """AUROC of ``scores_a`` minus AUROC of ``scores_b`` for the same artifact flags, paired over photos.

    Photos are resampled within the flagged and the unflagged ones (both AUROCs stay defined).
    """
    from sklearn.metrics import roc_auc_score

    f = np.asarray(flags, dtype=bool).reshape(-1)
    a = np.asarray(scores_a, dtype=float).reshape(-1)
    b = np.asarray(scores_b, dtype=float).reshape(-1)
    if not len(a) == len(b) == len(f):
        raise ValueError(f"{name}: scores_a ({len(a)}), scores_b ({len(b)}) and flags ({len(f)}) differ in length")
    if f.all() or not f.any():
        raise ValueError(f"{name}: flags must hold photos with and without the artifact")
    return estimate(a, b, f.astype(float), statistic=lambda x, z, ff: roc_auc_score(ff, x) - roc_auc_score(ff, z),
                    strata=f, n_boot=n_boot, seed=seed, name=name)


def cluster_table(scores: Mapping[tuple[str, str], Any]) -> pd.DataFrame:
    """One row per (artifact, method) from ``{(method, artifact): score_clustering(...)}``.

    Columns: ``share`` of photos with the artifact, ``F1`` with ``F1 low`` / ``F1 high``, the baselines
    ``one cluster F1`` and ``shuffled F1 (95th pct)`` (the percentile the scores used), ``margin`` (F1 low minus the higher baseline:
    positive when the clustering passes its gate), ``ARI`` and ``passes gate``.
    """
    rows = []
    for (method, artifact), s in scores.items():
        rows.append({"artifact": artifact, "method": method, "share": s.share, "F1": s.f1[0], "F1 low": s.f1[1],
                     "F1 high": s.f1[2], "one cluster F1": s.f1_one_cluster,
                     s.random_column: s.f1_random_high,
                     "margin": s.f1[1] - max(s.f1_one_cluster, s.f1_random_high), "ARI": s.ari[0],
                     "passes gate": bool(s.gate)})
    if not rows:
        raise ValueError("scores is empty; pass {(method, artifact): score_clustering(...)}")
    return pd.DataFrame(rows).set_index(["artifact", "method"])
