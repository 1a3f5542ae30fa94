"""How well do clusters match known artifacts? Turns "cluster 3 has the frames" into a number.

:func:`cluster_agreement` scores a clustering (SpRAy, GEBI, anything with integer labels) against
known artifact flags, one row per artifact:

- ``best_cluster``: the cluster that best matches the artifact (highest F1),
- ``precision``: share of that cluster's members that have the artifact,
- ``recall``: share of the images with the artifact that fall into that cluster,
- ``f1``: harmonic mean of the two, ``support``: number of images with the artifact,
- ``cluster_size``: size of the best cluster,
- ``ari`` / ``nmi``: adjusted Rand index and normalised mutual information between the whole
  clustering and the binary split artifact / no artifact (how much of the clustering the
  artifact explains).

An artifact that no image has gets ``support`` 0, ``best_cluster`` -1 and zeros for the scores.
``df.attrs["ari"]`` and ``df.attrs["nmi"]`` hold the overall agreement between the clustering and
the *combination* of artifacts (each distinct pattern of flags, e.g. frame+ruler, is one class);
``df.attrs["n"]`` and ``df.attrs["n_clusters"]`` the sizes. :func:`cluster_artifact_table` gives the
full cluster x artifact share table for galleries and heatmap plots.

Trivial baselines, to print beside every cluster score (:func:`agreement_baselines`):

- ``f1_one_cluster``: the F1 of one cluster holding every image, ``2p / (1 + p)`` for an artifact
  on a share ``p`` of the images. When 89 % of the clustered images have a frame this is already
  0.94, so a frame F1 of 1.00 says little unless it is read next to it.
- ``f1_random``: the mean best-cluster F1 of random clusterings with the *same cluster sizes*
  (the labels shuffled), and ``f1_random_high`` its 95th percentile.

:func:`pair_split_rate` scores a clustering on pairs (an image and its copy with a pasted
artifact): how often the two land in different clusters, beside the chance rate of two images
drawn at random from the same cluster sizes landing apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from .._checks import describe

__all__ = ["cluster_agreement", "cluster_artifact_table", "agreement_baselines", "pair_split_rate"]

_COLUMNS = ["artifact", "best_cluster", "precision", "recall", "f1", "support", "cluster_size", "ari", "nmi"]


def _as_cluster_labels(labels: Any) -> np.ndarray:
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"labels must be a 1-D array of cluster indices; got {describe(arr)}")
    if len(arr) == 0:
        raise ValueError("labels is empty (N=0); expected one cluster index per image")
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or not (arr == np.round(arr)).all():
            raise ValueError("labels must be integer cluster indices; got non-integer or NaN floats")
    elif arr.dtype.kind not in "iub":
        raise ValueError(f"labels must be integer cluster indices; got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.min() < -1:
        raise ValueError(f"labels must be >= 0 (or -1 for noise); got minimum {arr.min()}")
    return arr


def as_artifact_frame(artifacts: Any, n: int) -> pd.DataFrame:
    if isinstance(artifacts, pd.Series):
        df = artifacts.to_frame(name=artifacts.name or "artifact")
    elif isinstance(artifacts, pd.DataFrame):
        df = artifacts
    elif isinstance(artifacts, Mapping):
        df = pd.DataFrame({k: np.asarray(v.detach().cpu() if isinstance(v, torch.Tensor) else v) for k, v in artifacts.items()})
    else:
        arr = np.asarray(artifacts.detach().cpu() if isinstance(artifacts, torch.Tensor) else artifacts)
        if arr.ndim == 1:
            df = pd.DataFrame({"artifact": arr})
        elif arr.ndim == 2:
            df = pd.DataFrame(arr, columns=[f"artifact_{j}" for j in range(arr.shape[1])])
        else:
            raise ValueError(f"artifacts must be a DataFrame of bool columns, a dict or a (N,) / (N,A) array; got {describe(arr)}")
    if df.shape[1] == 0:
        raise ValueError("artifacts has no columns; expected one bool column per artifact")
    if len(df) != n:
        raise ValueError(f"mismatched N: labels has N={n}, artifacts has N={len(df)}; both must describe the same images")
    out = {}
    for col in df.columns:
        v = df[col].to_numpy()
        if v.dtype == bool:
            out[str(col)] = v
            continue
        try:
            vf = v.astype(float)
        except (TypeError, ValueError):
            raise ValueError(f"artifacts column {col!r} must be bool or 0/1; got dtype {v.dtype}") from None
        if not np.isin(vf, (0.0, 1.0)).all():
            bad = np.unique(vf[~np.isin(vf, (0.0, 1.0))])[:5]
            raise ValueError(f"artifacts column {col!r} must be bool or 0/1; got values such as {bad.tolist()}")
        out[str(col)] = vf.astype(bool)
    return pd.DataFrame(out)


def cluster_agreement(labels: Any, artifacts: Any) -> pd.DataFrame:
    """Best-matching cluster per known artifact with precision, recall, F1, ARI and NMI.

    Parameters
    ----------
    labels : array-like (N,)
        Cluster index per image (for example ``SpRAy(...).labels_``).
    artifacts : DataFrame, Series, dict or array (N,) / (N,A)
        Known artifacts, one bool (or 0/1) column per artifact, such as ``ds.artifacts``.

    Returns
    -------
    pandas.DataFrame
        One row per artifact with columns ``artifact, best_cluster, precision, recall, f1,
        support, cluster_size, ari, nmi`` (see the module docstring). ``attrs`` holds ``ari`` and
        ``nmi`` against the combination of artifacts, ``n`` and ``n_clusters``.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> cluster_agreement(np.array([0, 0, 1, 1]), pd.DataFrame({"frame": [1, 1, 1, 0]}))[["best_cluster", "f1"]]
       best_cluster   f1
    0             0  0.8
    """
    lab = _as_cluster_labels(labels)
    art = as_artifact_frame(artifacts, len(lab))
    clusters, inverse = np.unique(lab, return_inverse=True)
    sizes = np.bincount(inverse, minlength=len(clusters))
    rows = []
    for col in art.columns:
        flag = art[col].to_numpy()
        support = int(flag.sum())
        if support == 0:
            rows.append([col, -1, 0.0, 0.0, 0.0, 0, 0, 0.0, 0.0])
            continue
        hits = np.bincount(inverse[flag], minlength=len(clusters)).astype(float)
        precision = hits / sizes
        recall = hits / support
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = np.where(hits > 0, 2 * precision * recall / (precision + recall), 0.0)
        # ties: higher precision first, then the smaller cluster index
        best = int(np.lexsort((np.arange(len(clusters)), -precision, -f1))[0])
        rows.append([
            col, int(clusters[best]), float(precision[best]), float(recall[best]), float(f1[best]), support,
            int(sizes[best]), float(adjusted_rand_score(flag, lab)), float(normalized_mutual_info_score(flag, lab)),
        ])
    df = pd.DataFrame(rows, columns=_COLUMNS)
    pattern = np.zeros(len(lab), dtype=np.int64)
    for j, col in enumerate(art.columns):
        pattern |= art[col].to_numpy().astype(np.int64) << j
    df.attrs["ari"] = float(adjusted_rand_score(pattern, lab))
    df.attrs["nmi"] = float(normalized_mutual_info_score(pattern, lab))
    df.attrs["n"] = len(lab)
    df.attrs["n_clusters"] = len(clusters)
    return df


def cluster_artifact_table(labels: Any, artifacts: Any, normalize: bool = True) -> pd.DataFrame:
    """Cluster x artifact table: share (or count) of each cluster's images that have each artifact.

    Parameters
    ----------
    labels, artifacts
        As in :func:`cluster_agreement`.
    normalize : bool
        Shares in [0, 1] (default) or counts.

    Returns
    -------
    pandas.DataFrame
        Index: cluster; columns: the artifacts plus ``size`` (number of images in the cluster).
    """
    lab = _as_cluster_labels(labels)
    art = as_artifact_frame(artifacts, len(lab))
    g = art.astype(float).groupby(lab)
    table = g.mean() if normalize else g.sum().astype(int)
    table.insert(len(table.columns), "size", g.size())
    table.index.name = "cluster"
    return table


def _best_f1(inverse: np.ndarray, sizes: np.ndarray, flag: np.ndarray) -> float:
    """Best-cluster F1 of ``flag`` for cluster indices ``inverse`` (0..C-1) with cluster ``sizes``."""
    support = flag.sum()
    if support == 0:
        return 0.0
    hits = np.bincount(inverse[flag], minlength=len(sizes)).astype(float)
    # F1 = 2 * hits / (cluster size + support)
    return float((2 * hits / (sizes + support)).max())


def agreement_baselines(labels: Any, artifacts: Any, n_random: int = 200, seed: int = 0) -> pd.DataFrame:
    """F1 that trivial clusterings reach, per artifact: one all-in-one cluster, and random labels.

    Parameters
    ----------
    labels : array-like (N,)
        Cluster index per image; only its cluster sizes matter for the random baseline.
    artifacts : DataFrame, Series, dict or array (N,) / (N,A)
        Known artifacts, as in :func:`cluster_agreement`.
    n_random : int
        Random clusterings drawn (the labels shuffled, so every one has the same cluster sizes).
    seed : int
        Seed of the shuffles.

    Returns
    -------
    pandas.DataFrame
        Index ``artifact``; columns ``share`` (of images with the artifact), ``f1_one_cluster``
        (``2 * share / (1 + share)``: precision ``share``, recall 1), ``f1_random`` (mean best-cluster
        F1 over the shuffles) and ``f1_random_high`` (their 95th percentile). An artifact no image
        has gets zeros.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> agreement_baselines(np.array([0, 0, 1, 1]), pd.DataFrame({"frame": [1, 1, 1, 0]}))["f1_one_cluster"].round(3).tolist()
    [0.857]
    """
    if isinstance(n_random, bool) or not isinstance(n_random, (int, np.integer)) or n_random < 1:
        raise ValueError(f"n_random must be a positive int; got {n_random!r}")
    lab = _as_cluster_labels(labels)
    art = as_artifact_frame(artifacts, len(lab))
    _, inverse = np.unique(lab, return_inverse=True)
    sizes = np.bincount(inverse)
    rng = np.random.default_rng(seed)
    shuffles = [rng.permutation(inverse) for _ in range(int(n_random))]
    rows = []
    for col in art.columns:
        flag = art[col].to_numpy()
        share = float(flag.mean())
        if share == 0:
            rows.append([col, 0.0, 0.0, 0.0, 0.0])
            continue
        rand = np.array([_best_f1(perm, sizes, flag) for perm in shuffles])
        rows.append([col, share, 2 * share / (1 + share), float(rand.mean()), float(np.quantile(rand, 0.95))])
    return pd.DataFrame(rows, columns=["artifact", "share", "f1_one_cluster", "f1_random", "f1_random_high"]
                        ).set_index("artifact")


def pair_split_rate(labels_a: Any, labels_b: Any) -> tuple[float, float]:
    """How often pair members land in different clusters, and the chance rate for the same sizes.

    Parameters
    ----------
    labels_a, labels_b : array-like (N,)
        Cluster of each image and of its partner (for example an image and its copy with a pasted
        frame, clustered or predicted together).

    Returns
    -------
    (split, chance) : tuple of float
        ``split``: share of pairs whose two members have different clusters. ``chance``: the share
        expected when partners are unrelated, ``1 - sum_c s_c**2`` with ``s_c`` the share of
        cluster ``c`` among all 2N labels (two independent draws from the pooled cluster sizes).

    Examples
    --------
    >>> pair_split_rate([0, 0, 1, 1], [0, 1, 1, 1])
    (0.25, 0.46875)
    """
    a = _as_cluster_labels(labels_a)
    b = _as_cluster_labels(labels_b)
    if len(a) != len(b):
        raise ValueError(f"mismatched N: labels_a has N={len(a)}, labels_b has N={len(b)}; they must be pairs")
    _, counts = np.unique(np.concatenate([a, b]), return_counts=True)
    shares = counts / counts.sum()
    return float((a != b).mean()), float(1.0 - (shares**2).sum())
