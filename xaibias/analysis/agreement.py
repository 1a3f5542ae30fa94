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

Intervals and gates, so that a clustering is read only where it clears its baselines:

- :func:`agreement_interval`: the best-cluster F1 (or the ARI) of a fixed clustering against one
  artifact, with a percentile bootstrap interval over the clustered images;
- :func:`agreement_difference`: the difference of that score between two clusterings of the same
  images (SpRAy vs GEBI), resampling the images once for both (paired);
- :func:`score_clustering`: the F1 interval, the ARI interval, both trivial baselines and the
  validity gate (:func:`xaibias.validity.clustering_gate`) of one clustering, as a
  :class:`ClusteringScore` whose ``line()`` is the printed sentence.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from .._checks import describe

__all__ = ["cluster_agreement", "cluster_artifact_table", "agreement_baselines", "pair_split_rate",
           "agreement_interval", "agreement_difference", "score_clustering", "ClusteringScore", "AGREEMENT_SCORES"]

#: Scores :func:`agreement_interval` and :func:`agreement_difference` compute.
AGREEMENT_SCORES = ("f1", "ari")
#: The chance of a false pass that :func:`score_clustering` allows, shared among ``family`` gates.
FAMILY_ERROR = 0.05

def _percentile_label(q: float) -> str:
    """How a quantile of the shuffled F1s is named in gate lines: ``95th percentile``, ``99.6th percentile``."""
    return f"{100 * q:.3g}th percentile"


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


def agreement_baselines(labels: Any, artifacts: Any, n_random: int = 200, seed: int = 0,
                        quantile: float = 0.95) -> pd.DataFrame:
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
    quantile : float in (0, 1)
        Which quantile of the shuffled F1s is ``f1_random_high``.

    Returns
    -------
    pandas.DataFrame
        Index ``artifact``; columns ``share`` (of images with the artifact), ``f1_one_cluster``
        (``2 * share / (1 + share)``: precision ``share``, recall 1), ``f1_random`` (mean best-cluster
        F1 over the shuffles) and ``f1_random_high`` (their ``quantile``, by default the 95th
        percentile). An artifact no image has gets zeros.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> agreement_baselines(np.array([0, 0, 1, 1]), pd.DataFrame({"frame": [1, 1, 1, 0]}))["f1_one_cluster"].round(3).tolist()
    [0.857]
    """
    if isinstance(n_random, bool) or not isinstance(n_random, (int, np.integer)) or n_random < 1:
        raise ValueError(f"n_random must be a positive int; got {n_random!r}")
    if isinstance(quantile, bool) or not isinstance(quantile, (int, float)) or not 0 < quantile < 1:
        raise ValueError(f"agreement_baselines: quantile must lie in (0, 1); got {quantile!r}")
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
        rows.append([col, share, 2 * share / (1 + share), float(rand.mean()), float(np.quantile(rand, quantile))])
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


def _as_flag(flags: Any, n: int, name: str = "flags") -> np.ndarray:
    f = np.asarray(flags.detach().cpu() if isinstance(flags, torch.Tensor) else flags)
    if isinstance(flags, pd.DataFrame):
        if flags.shape[1] != 1:
            raise ValueError(f"{name} must be one artifact (a 1-D bool array or a one-column DataFrame); "
                             f"got {flags.shape[1]} columns")
        f = flags.iloc[:, 0].to_numpy()
    f = f.reshape(-1) if f.ndim == 2 and 1 in f.shape else f
    if f.ndim != 1 or len(f) != n:
        raise ValueError(f"{name} must be 1-D with one entry per clustered image ({n}); got shape {np.shape(f)}")
    if f.dtype != bool:
        if not np.isin(f.astype(float), (0.0, 1.0)).all():
            raise ValueError(f"{name} must be bool or 0/1; got values such as {np.unique(f)[:5].tolist()}")
        f = f.astype(bool)
    if f.all() or not f.any():
        raise ValueError(f"{name} must hold images with and without the artifact; got {int(f.sum())} of {n} flagged")
    return f


def _score_function(score: str):
    if score == "f1":
        def f1(lab: np.ndarray, flag: np.ndarray) -> float:
            _, inverse = np.unique(lab, return_inverse=True)
            return _best_f1(inverse, np.bincount(inverse), flag.astype(bool))
        return f1
    if score == "ari":
        def ari(lab: np.ndarray, flag: np.ndarray) -> float:
            return float(adjusted_rand_score(flag.astype(bool), lab))
        return ari
    raise ValueError(f"score must be one of {AGREEMENT_SCORES}; got {score!r}")


def agreement_interval(labels: Any, flags: Any, *, score: str = "f1", n_boot: int = 1000, level: float = 0.95,
                       seed: int = 0) -> tuple[float, float, float]:
    """Score of a fixed clustering against one artifact, with a bootstrap interval over images.

    The images are resampled with replacement (each keeping its cluster and its flag), within the
    images with and without the artifact, so every resample keeps the artifact's share (and the
    one-cluster baseline ``2p / (1 + p)`` stays what it is), and the score is recomputed: ``"f1"`` is the best cluster's F1 (as ``cluster_agreement``'s ``f1``), ``"ari"``
    the adjusted Rand index between the clustering and the split artifact / no artifact. The
    interval says how much the score depends on which images happened to be clustered; it does not
    refit the clustering.

    Parameters
    ----------
    labels : array-like (N,)
        Cluster index per image.
    flags : array-like (N,) of bool or 0/1, or a one-column DataFrame
        Whether each image has the artifact; both values must occur.
    score : {"f1", "ari"}
    n_boot, level, seed
        Bootstrap draws, coverage and seed (:func:`xaibias.analysis.bootstrap_ci`).

    Returns
    -------
    (value, low, high) : tuple of float

    Examples
    --------
    >>> v, lo, hi = agreement_interval([0, 0, 0, 1, 1, 1], [1, 1, 1, 0, 0, 0])
    >>> v, lo, hi
    (1.0, 1.0, 1.0)
    """
    from .stats import bootstrap_ci

    lab = _as_cluster_labels(labels)
    flag = _as_flag(flags, len(lab))
    fn = _score_function(score)
    return bootstrap_ci(lab, flag.astype(float), statistic=fn, n_boot=n_boot, level=level, seed=seed, paired=True,
                        strata=flag)


def agreement_difference(labels_a: Any, labels_b: Any, flags: Any, *, score: str = "f1", n_boot: int = 1000,
                         level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """``score(labels_a) - score(labels_b)`` for two clusterings of the same images, paired bootstrap.

    Every resample draws the images once (within the images with and without the artifact, as in
    :func:`agreement_interval`) and scores both clusterings on them, so what the two clusterings
    share (the same easy and hard images) cancels. Use it for SpRAy vs GEBI on the same
    maps; pass the interval to :func:`xaibias.findings.compare` against no effect (0).

    Parameters
    ----------
    labels_a, labels_b : array-like (N,)
        Cluster index per image under each clustering.
    flags, score, n_boot, level, seed
        As in :func:`agreement_interval`.

    Returns
    -------
    (value, low, high) : tuple of float
    """
    from .stats import bootstrap_ci

    a = _as_cluster_labels(labels_a)
    b = _as_cluster_labels(labels_b)
    if len(a) != len(b):
        raise ValueError(f"mismatched N: labels_a has N={len(a)}, labels_b has N={len(b)}; both must cluster the "
                         "same images")
    flag = _as_flag(flags, len(a)).astype(float)
    fn = _score_function(score)
    return bootstrap_ci(a, b, flag, statistic=lambda x, y, f: fn(x, f) - fn(y, f), n_boot=n_boot, level=level,
                        seed=seed, paired=True, strata=flag)


@dataclass
class ClusteringScore:
    """One clustering scored against one artifact: intervals, trivial baselines and the validity gate.

    ``f1`` and ``ari`` are ``(value, low, high)``; ``f1_one_cluster`` is one all-in-one cluster's F1,
    ``f1_random_high`` the 95th percentile of shuffled labels with the same cluster sizes (their ARI
    is about 0, the one cluster's exactly 0). ``gate`` is true when the F1 interval's low end clears
    both F1 baselines; ``bool(score)`` is the gate.
    """

    name: str
    artifact: str
    share: float
    f1: tuple[float, float, float]
    ari: tuple[float, float, float]
    f1_one_cluster: float
    f1_random: float
    f1_random_high: float
    n: int
    n_clusters: int
    gate: Any
    quantile: float = 0.95   # of the shuffled F1s (f1_random_high) and the coverage of the F1 interval

    @property
    def random_label(self) -> str:
        """How the shuffled-label baseline is named in lines (``95th percentile`` by default)."""
        return _percentile_label(self.quantile)

    @property
    def random_column(self) -> str:
        """The shuffled-label baseline's column name in tables (``shuffled F1 (95th pct)`` by default)."""
        return f"shuffled F1 ({self.random_label.replace('percentile', 'pct')})"

    def __bool__(self) -> bool:
        return bool(self.gate)

    def row(self) -> dict:
        """The numbers as one table row (for a DataFrame of several clusterings)."""
        return {"clustering": self.name, "n": self.n, "k": self.n_clusters, f"{self.artifact} share": self.share,
                "F1": self.f1[0], "F1 low": self.f1[1], "F1 high": self.f1[2],
                "one cluster F1": self.f1_one_cluster, self.random_column: self.f1_random_high,
                "ARI": self.ari[0], "ARI low": self.ari[1], "ARI high": self.ari[2], "passes gate": bool(self.gate)}

    def line(self, fmt: str = ".3f") -> str:
        """The printed sentence: the scores with their intervals beside both baselines, and the gate."""
        f1, ari = self.f1, self.ari
        return (f"{self.name}: {self.artifact} F1 {f1[0]:{fmt}} [{f1[1]:{fmt}}, {f1[2]:{fmt}}], ARI {ari[0]:{fmt}} "
                f"[{ari[1]:{fmt}}, {ari[2]:{fmt}}]; one all-in-one cluster F1 {self.f1_one_cluster:{fmt}}, shuffled "
                f"labels ({self.random_label}) {self.f1_random_high:{fmt}} -> {self.gate.line()}")

    def __str__(self) -> str:
        return self.line()


def score_clustering(name: str, labels: Any, flags: Any, *, artifact: str = "artifact", n_random: int = 200,
                     n_boot: int = 1000, seed: int = 0, quiet: bool = False, family: int = 1) -> ClusteringScore:
    """Score a clustering against one artifact and gate it against its trivial baselines.

    The best-cluster F1 and the ARI get bootstrap intervals over images (:func:`agreement_interval`);
    the baselines are one all-in-one cluster's F1 and the 95th percentile of the F1 of shuffled
    labels with the same cluster sizes (:func:`agreement_baselines`). The clustering passes
    (:func:`xaibias.validity.clustering_gate`) only when the F1 interval's low end lies above both;
    otherwise nothing about its clusters should be read (pass ``score.gate`` to
    :func:`xaibias.findings.compare` or :func:`xaibias.findings.guard`).

    Parameters
    ----------
    name : str
        The clustering, as printed (for example ``"GEBI, k = 2"``).
    labels : array-like (N,)
        Cluster index per image.
    flags : array-like (N,) or a one-column DataFrame
        The artifact per image (both values must occur).
    artifact : str
        The artifact's name, as printed (taken from a one-column DataFrame when not given).
    n_random, n_boot, seed
        Shuffles of the random baseline, bootstrap draws, and the seed of both.
    family : int
        How many gates are read together (for example one per annotated artifact and method). The 5 %
        chance of a false pass is shared among them (Bonferroni): the F1 interval has coverage
        ``1 - 0.05 / family`` and the shuffled baseline is that quantile of the shuffled F1s. With
        14 gates at 95 % each, about 0.7 of them would pass on clusterings with no structure at all.
        Give ``n_boot`` and ``n_random`` enough draws for the tail (a few thousand).
    quiet : bool
        Do not print the line (the gate is still recorded when ``XAIBIAS_FINDINGS`` is set).

    Returns
    -------
    ClusteringScore
    """
    from ..validity import clustering_gate

    if not isinstance(name, str) or not name:
        raise ValueError("score_clustering: name must be a non-empty string (it names the clustering in the gate)")
    if artifact == "artifact" and isinstance(flags, pd.DataFrame) and flags.shape[1] == 1:
        artifact = str(flags.columns[0])
    if isinstance(family, bool) or not isinstance(family, (int, np.integer)) or family < 1:
        raise ValueError(f"score_clustering: family must be a positive int (the number of gates read together); "
                         f"got {family!r}")
    level = 1 - FAMILY_ERROR / int(family)
    lab = _as_cluster_labels(labels)
    flag = _as_flag(flags, len(lab))
    base = agreement_baselines(lab, {artifact: flag}, n_random=n_random, seed=seed, quantile=level).loc[artifact]
    f1 = agreement_interval(lab, flag, score="f1", n_boot=n_boot, level=level, seed=seed)
    ari = agreement_interval(lab, flag, score="ari", n_boot=n_boot, level=level, seed=seed)
    gate = clustering_gate(name, f1, {"one all-in-one cluster": float(base["f1_one_cluster"]),
                                      f"shuffled labels ({_percentile_label(level)})": float(base["f1_random_high"])},
                           quiet=True)
    out = ClusteringScore(name=name, artifact=artifact, share=float(base["share"]), f1=f1, ari=ari,
                          f1_one_cluster=float(base["f1_one_cluster"]), f1_random=float(base["f1_random"]),
                          f1_random_high=float(base["f1_random_high"]), n=len(lab),
                          n_clusters=len(np.unique(lab)), gate=gate, quantile=level)
    if not quiet:
        print(out.line())
    return out
