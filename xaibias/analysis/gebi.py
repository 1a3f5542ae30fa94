"""GEBI: global explanations for bias identification (Mikolajczyk, Grochowski & Kwasigroch 2021).

SpRAy clusters heatmaps only, so two strategies that look at the *same place* (say the lesion
centre) land in one cluster even when one of them reacts to something that is only visible in
the image (a colour patch, a ruler lying over the lesion). GEBI clusters the concatenation of the
reduced relevance map and the reduced input image::

    x_i = [ w_R * reduce(R_i) , w_I * reduce(image_i) ]

and then runs the same spectral clustering as SpRAy (shared code in
:class:`xaibias.analysis.spray.SpectralBase`). The GEBI code reduced heatmaps and images separately
before clustering; here each part is downsized, reduced (PCA by default, or Isomap / none) and
scaled to unit *total* variance, so ``image_weight`` means what it says: the image part
contributes ``w_I**2 / (w_R**2 + w_I**2)`` of the variance of the feature vector. ``image_weight=0``
gives SpRAy on the same relevance reduction.

Examples
--------
>>> gb = GEBI(n_clusters=4, image_weight=1.0, random_state=0).fit(R, images)   # doctest: +SKIP
>>> gb.predict(R_new, images_new)                                                # doctest: +SKIP
>>> spray_vs_gebi(R, images, ds.artifacts[["frame"]], ks=(2, 4), random_state=0)  # doctest: +SKIP

:func:`spray_vs_gebi` is the comparison notebook 02 runs once per seed (over other seeds:
``python tools/check_margins.py --seeds 0-4 notebooks/02_spray_vs_gebi.ipynb``): fit both methods on
the same maps, score each clustering against the known artifacts, and put the trivial baselines of
:func:`xaibias.analysis.agreement_baselines` beside every F1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from .._checks import as_images, as_relevance, check_same_n
from .._options import checked_init
from ._chunked import as_source, is_chunked
from ._neighbors import APPROX_MIN_N
from ._reduce import Reducer
from .agreement import (
    agreement_baselines,
    agreement_difference,
    agreement_interval,
    as_artifact_frame,
    cluster_agreement,
)
from .spray import SpectralBase, SpRAy

__all__ = ["GEBI", "spray_vs_gebi", "seed_summary", "SPRAY_VS_GEBI_COLUMNS", "SPRAY_VS_GEBI_INTERVAL_COLUMNS"]

#: Columns of the table returned by :func:`spray_vs_gebi`.
SPRAY_VS_GEBI_COLUMNS = (
    "method", "k", "artifact", "f1", "precision", "recall", "ari",
    "f1_one_cluster", "f1_random", "f1_random_high", "eigengap_k", "n",
)

#: Columns :func:`spray_vs_gebi` adds with ``n_boot``: intervals, the gate, and GEBI - SpRAy (paired).
SPRAY_VS_GEBI_INTERVAL_COLUMNS = (
    "f1_low", "f1_high", "ari_low", "ari_high", "passes_gate", "gebi_minus_spray", "diff_low", "diff_high",
)


class GEBI(SpectralBase):
    """Spectral clustering of [reduced relevance map, reduced input image] (GEBI).

    Parameters
    ----------
    n_clusters : int or "auto"
        Number of clusters; ``"auto"`` uses the eigengap.
    image_weight, relevance_weight : float
        Weights of the two parts after each is scaled to unit total variance (default 1 and 1:
        equal say). ``image_weight=0`` reduces GEBI to SpRAy.
    n_neighbors : int
        Neighbours in the kNN graph and votes in :meth:`predict` (default 10).
    relevance_size, image_size : int
        Side length the maps and the images are area-downsized to (default 32 and 32); the same
        ``relevance_*`` settings as :class:`xaibias.analysis.SpRAy`.
    normalize : {"l2", "max", "sum", None}
        Per-map scaling of the relevance (the images are not rescaled per image).
    absolute : bool
        Use |R|.
    reduction : {"pca", "isomap", "none"}
        Reduction of each part (default PCA; Isomap is dense N x N, small N only).
    relevance_components, image_components : int
        Components kept per part (default 32 and 32).
    n_eigenvalues, affinity, embedding_2d, n_init, random_state, neighbors, large_n, landmarks
        As in :class:`xaibias.analysis.SpRAy`.

    Attributes
    ----------
    labels_, eigenvalues_, embedding_, embedding_2d_, n_clusters_, features_, affinity_, knn_method_, knn_recall_,
    landmark_indices_, n_landmarks_, landmark_knn_method_
        As in :class:`xaibias.analysis.SpRAy`; ``features_`` holds the weighted concatenation
        (the relevance part, then the image part).
    feature_slices_ : dict of str -> slice
        Where each part lies in the columns of ``features_``: ``F[:, gb.feature_slices_["relevance"]]``
        and ``F[:, gb.feature_slices_["images"]]`` (each part has ``*_components`` columns, or fewer
        when there are fewer maps or dimensions than that).
    """

    @checked_init  # an unknown keyword names itself and the parameters below
    def __init__(self, n_clusters: int | str = 4, *, image_weight: float = 1.0, relevance_weight: float = 1.0,
                 n_neighbors: int = 10, relevance_size: int = 32, image_size: int = 32,
                 normalize: str | None = "l2", absolute: bool = False, reduction: str = "pca",
                 relevance_components: int = 32, image_components: int = 32, n_eigenvalues: int = 32,
                 affinity: str = "connectivity", embedding_2d: str | None = "spectral", n_init: int = 10,
                 random_state: int | None = 0, neighbors: str = "auto", large_n: int = APPROX_MIN_N,
                 landmarks: int | str | None = "auto") -> None:
        self.n_clusters = n_clusters
        self.image_weight = image_weight
        self.relevance_weight = relevance_weight
        self.n_neighbors = n_neighbors
        self.relevance_size = relevance_size
        self.image_size = image_size
        self.normalize = normalize
        self.absolute = absolute
        self.reduction = reduction
        self.relevance_components = relevance_components
        self.image_components = image_components
        self.n_eigenvalues = n_eigenvalues
        self.affinity = affinity
        self.embedding_2d = embedding_2d
        self.n_init = n_init
        self.random_state = random_state
        self.neighbors = neighbors
        self.large_n = large_n
        self.landmarks = landmarks

    def _check_params(self) -> None:
        super()._check_params()
        for name in ("image_weight", "relevance_weight"):
            w = getattr(self, name)
            if not isinstance(w, (int, float, np.floating, np.integer)) or isinstance(w, bool) or not np.isfinite(w) or w < 0:
                raise ValueError(f"{name} must be a finite number >= 0; got {w!r}")
        if self.image_weight == 0 and self.relevance_weight == 0:
            raise ValueError("image_weight and relevance_weight are both 0; at least one part must count")

    def _parts(self) -> list[tuple[str, Reducer, float]]:
        if not hasattr(self, "_reducers"):
            self._reducers = {
                "relevance": Reducer("relevance", self.relevance_size, self.normalize, self.absolute,
                                      self.reduction, self.relevance_components, self.random_state),
                "images": Reducer("images", self.image_size, None, False, self.reduction,
                                   self.image_components, self.random_state),
            }
        return [("relevance", self._reducers["relevance"], float(self.relevance_weight)),
                ("images", self._reducers["images"], float(self.image_weight))]

    def _inputs(self, relevance: Any, images: Any, fitting: bool) -> dict[str, torch.Tensor]:
        if images is None:
            raise ValueError(
                "GEBI needs the input images as well as the relevance maps: call "
                f"{'fit' if fitting else 'predict'}(relevance, images) with images (N,3,H,W) in [0,1]"
            )
        R = as_source(relevance, "relevance", "relevance") if is_chunked(relevance) else as_relevance(relevance, "relevance")
        X = as_source(images, "images", "images") if is_chunked(images) else as_images(images, "images")
        check_same_n(relevance=R, images=X)
        if fitting:
            self.__dict__.pop("_reducers", None)
        return {"relevance": R, "images": X}


def spray_vs_gebi(
    relevance: Any,
    images: Any,
    artifacts: Any,
    *,
    ks: Sequence[int] = (2, 4),
    n_neighbors: int = 10,
    image_weight: float = 1.0,
    random_state: int | None = 0,
    n_random: int = 200,
    n_boot: int | None = None,
) -> pd.DataFrame:
    """Cluster the same maps with SpRAy and GEBI and score both against known artifacts.

    Both estimators are fitted once (``random_state`` for PCA, ARPACK and k-means); each ``k`` in
    ``ks`` is read from the same spectral embedding (:meth:`~xaibias.analysis.SpRAy.labels_for`).
    Every F1 comes with the F1 of one all-in-one cluster and of random clusterings with the same
    cluster sizes (:func:`~xaibias.analysis.agreement_baselines`), since a high share of images
    with the artifact makes a high F1 cheap.

    Parameters
    ----------
    relevance : (N,H,W) or (N,C,H,W)
        Relevance maps.
    images : (N,3,H,W) in [0,1]
        The explained images (GEBI's image part).
    artifacts : DataFrame, Series, dict or array
        Known artifact flags (as in :func:`~xaibias.analysis.cluster_agreement`); every column is scored.
    ks : sequence of int
        Numbers of clusters to score.
    n_neighbors : int
        Neighbours in the kNN graph (capped at N - 1 for tiny sets).
    image_weight : float
        GEBI's weight of the image part.
    random_state : int or None
        Seed of both estimators.
    n_random : int
        Shuffles for the random-clustering baseline (seeded by ``random_state``).
    n_boot : int, optional
        When given, also the columns :data:`SPRAY_VS_GEBI_INTERVAL_COLUMNS`: bootstrap intervals over
        the maps of ``f1`` and ``ari`` (:func:`~xaibias.analysis.agreement.agreement_interval`),
        ``passes_gate`` (the F1 interval's low end clears both ``f1_one_cluster`` and
        ``f1_random_high``, as :func:`~xaibias.analysis.agreement.score_clustering` gates), and on both
        methods' rows ``gebi_minus_spray`` with its paired interval ``diff_low`` / ``diff_high``
        (:func:`~xaibias.analysis.agreement.agreement_difference`). An artifact on none or on all
        of the maps gets NaN intervals and fails the gate.

    Returns
    -------
    pandas.DataFrame
        One row per method (``"SpRAy"``, ``"GEBI"``), ``k`` and artifact, columns
        :data:`SPRAY_VS_GEBI_COLUMNS`: the best cluster's ``f1``, ``precision``, ``recall``, the
        ``ari`` of the artifact split, the baselines ``f1_one_cluster``, ``f1_random``,
        ``f1_random_high``, the method's eigengap suggestion ``eigengap_k`` and ``n`` maps (then the
        interval columns, with ``n_boot``).
    """
    ks = [ks] if isinstance(ks, (int, np.integer)) else list(ks)
    if not ks or any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 for k in ks):
        raise ValueError(f"ks must be positive ints such as (2, 4); got {ks!r}")
    R = as_relevance(relevance, "relevance")
    n = len(R)
    art = as_artifact_frame(artifacts, n)
    nn = min(int(n_neighbors), n - 1)
    estimators = {
        "SpRAy": SpRAy(n_clusters=ks[0], n_neighbors=nn, random_state=random_state),
        "GEBI": GEBI(n_clusters=ks[0], image_weight=image_weight, n_neighbors=nn, random_state=random_state),
    }
    if n_boot is not None and (isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 100):
        raise ValueError(f"n_boot must be an int >= 100 (bootstrap draws) or None; got {n_boot!r}")
    seed = 0 if random_state is None else int(random_state)
    rows, labels_of = [], {}
    for method, est in estimators.items():
        est.fit(R, images)
        gap = est.suggest_n_clusters()
        for k in ks:
            labels = labels_of[method, int(k)] = est.labels_for(int(k))
            agree = cluster_agreement(labels, art).set_index("artifact")
            base = agreement_baselines(labels, art, n_random=n_random, seed=seed)
            for a in art.columns:
                rows.append([method, int(k), a, *agree.loc[a, ["f1", "precision", "recall", "ari"]].astype(float),
                             *base.loc[a, ["f1_one_cluster", "f1_random", "f1_random_high"]].astype(float), gap, n])
    df = pd.DataFrame(rows, columns=list(SPRAY_VS_GEBI_COLUMNS))
    if n_boot is None:
        return df
    extra = []
    for _, r in df.iterrows():
        flag = art[r.artifact].to_numpy()
        if flag.all() or not flag.any():
            extra.append([np.nan] * 4 + [False] + [np.nan] * 3)
            continue
        lab = labels_of[r.method, r.k]
        _, f_lo, f_hi = agreement_interval(lab, flag, n_boot=n_boot, seed=seed)
        _, a_lo, a_hi = agreement_interval(lab, flag, score="ari", n_boot=n_boot, seed=seed)
        d = agreement_difference(labels_of["GEBI", r.k], labels_of["SpRAy", r.k], flag, n_boot=n_boot, seed=seed)
        extra.append([f_lo, f_hi, a_lo, a_hi, bool(f_lo > max(r.f1_one_cluster, r.f1_random_high)), *d])
    return pd.concat([df, pd.DataFrame(extra, columns=list(SPRAY_VS_GEBI_INTERVAL_COLUMNS))], axis=1)


def seed_summary(rows: pd.DataFrame, k: int, artifact: str = "frame", fmt: str = ".2f") -> pd.DataFrame:
    """One line per seed of :func:`spray_vs_gebi` tables (with ``n_boot``): F1 intervals, gates, baselines.

    Parameters
    ----------
    rows : pandas.DataFrame
        ``spray_vs_gebi(..., n_boot=...)`` tables of several seeds, concatenated, with a ``seed`` column.
    k : int
        The number of clusters to show.
    artifact : str
        The artifact to show.
    fmt : str
        Number format of the printed intervals.

    Returns
    -------
    pandas.DataFrame
        Index ``seed``; columns ``n`` (maps), ``SpRAy F1`` and ``GEBI F1`` as "value [low, high]",
        ``SpRAy passes`` / ``GEBI passes`` (the gate), ``one cluster F1``, ``shuffled F1 (95th pct)``
        (the larger of the two methods' shuffled baselines) and ``GEBI - SpRAy`` as "value [low, high]".
    """
    need = {"seed", "method", "k", "artifact", *SPRAY_VS_GEBI_INTERVAL_COLUMNS}
    if not isinstance(rows, pd.DataFrame) or not need <= set(rows.columns):
        missing = sorted(need - set(rows.columns)) if isinstance(rows, pd.DataFrame) else sorted(need)
        raise ValueError(f"rows must be spray_vs_gebi(..., n_boot=...) tables with a seed column; missing {missing}")
    sel = rows[(rows.k == k) & (rows.artifact == artifact)]
    if sel.empty:
        raise ValueError(f"rows hold no line for k = {k} and artifact {artifact!r}; "
                         f"k values {sorted(set(rows.k))}, artifacts {sorted(set(rows.artifact))}")

    def iv(v: float, lo: float, hi: float) -> str:
        return f"{v:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]"

    out = {}
    for seed, g in sel.groupby("seed"):
        m = g.set_index("method")
        sp, gb = m.loc["SpRAy"], m.loc["GEBI"]
        out[seed] = {"n": int(gb.n), "SpRAy F1": iv(sp.f1, sp.f1_low, sp.f1_high), "SpRAy passes": bool(sp.passes_gate),
                     "GEBI F1": iv(gb.f1, gb.f1_low, gb.f1_high), "GEBI passes": bool(gb.passes_gate),
                     "one cluster F1": round(float(gb.f1_one_cluster), 3),
                     "shuffled F1 (95th pct)": round(float(max(sp.f1_random_high, gb.f1_random_high)), 3),
                     "GEBI - SpRAy": iv(gb.gebi_minus_spray, gb.diff_low, gb.diff_high)}
    return pd.DataFrame(out).T.rename_axis("seed")
