"""k-nearest-neighbour search for SpRAy and GEBI: exact below a size threshold, faiss IVF above it.

Exact search is scikit-learn's :class:`~sklearn.neighbors.NearestNeighbors` (the pipeline's search
since the start, so results below the threshold are unchanged). Above ``APPROX_MIN_N`` maps the
search is approximate: a faiss ``IndexIVFFlat`` (inverted file over a k-means partition of the
feature space, exact distances inside the probed cells). Its parameters, chosen by measurement on
planted 32 x 32 maps reduced to 50 PCA components (benchmarks/README.md, clustering section):

- ``nlist = sqrt(N)`` cells (at least 16, at most N / 32), coarse k-means of 8 iterations trained
  on ``32 * nlist`` sampled rows;
- ``nprobe`` cells visited per query (default :data:`NPROBE` = 4).

At N = 1,000,000 (2 shared cores): 1,024 cells / 8 probed took 137 s at recall 0.977, 1,024 / 2
29 s at 0.740; sqrt(N) cells / 4 probed took 61 s in a full fit at recall 0.893 (ARI 1.00: spectral
clustering needs neighbours from the same group, not the very nearest ones). On small noisy maps
(16 x 16, isotropic noise) the recall is lower (about 0.67 at N = 3,000), on smooth planted maps
close to 1.

The recall of the approximate graph (share of the true k nearest neighbours found, self excluded)
is measured against exact search on a seeded sample of rows (:func:`sampled_recall`) and exposed
by the estimators as ``knn_recall_``.

faiss was chosen over pynndescent by measurement (200,000 planted maps, 50 components, k = 11,
2 shared cores): faiss IVF 1024 cells / 16 probes 8.9 s at recall 0.997; faiss HNSW (M 16, ef 40)
26.5 s at 0.969; pynndescent 162 s (numba compilation included) at 0.911; exact scikit-learn 228 s.

faiss (the ``faiss-cpu`` wheel) is an optional dependency, the extra ``xaibias[scale]``: the core
install, which Colab and Binder repeat on every start, never needs it below ``APPROX_MIN_N`` maps.
It is imported only when an approximate search runs (:func:`import_faiss`), and a fit that needs
it and cannot import it fails at its start with :class:`MissingExtraError` naming the extra.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.neighbors import NearestNeighbors

__all__ = ["APPROX_MIN_N", "NPROBE", "KNN", "sampled_recall", "MissingExtraError", "import_faiss"]

#: From this many maps on, ``neighbors="auto"`` uses the approximate (faiss) search.
APPROX_MIN_N = 50_000
#: Cells probed per query by the IVF index.
NPROBE = 4
#: Rows of the recall sample.
RECALL_SAMPLE = 500


class MissingExtraError(ImportError):
    """An optional dependency that the requested computation needs is not installed."""


def import_faiss(why: str = "approximate neighbour search") -> Any:
    """Import and return the ``faiss`` module, or raise :class:`MissingExtraError` naming the extra.

    Parameters
    ----------
    why : str
        What needs faiss, for the message (e.g. ``"SpRAy.fit on 60,000 maps (neighbors='auto' ...)"``).

    Raises
    ------
    MissingExtraError
        An ``ImportError`` saying ``pip install "xaibias[scale]"`` (or ``faiss-cpu``) and how to do
        without it (``neighbors='exact'``).
    """
    try:
        import faiss
    except ImportError as err:
        raise MissingExtraError(
            f"{why} needs faiss, which the core install of xaibias leaves out: install the extra with "
            f"pip install \"xaibias[scale]\" (or pip install faiss-cpu), or pass neighbors='exact' "
            f"(exact scikit-learn search, slower from {APPROX_MIN_N:,} maps on)"
        ) from err
    return faiss


class KNN:
    """Nearest neighbours of float32 feature rows, exact or approximate.

    Parameters
    ----------
    method : {"exact", "approx"}
        scikit-learn exact search, or a faiss IVF index.
    nprobe : int
        Cells probed per query (approximate search only).
    random_state : int or None
        Seed of the coarse k-means sample and of faiss's k-means.
    """

    def __init__(self, method: str, nprobe: int = NPROBE, random_state: int | None = 0) -> None:
        if method not in ("exact", "approx"):
            raise ValueError(f"method must be 'exact' or 'approx'; got {method!r}")
        self.method, self.nprobe, self.random_state = method, int(nprobe), random_state

    def fit(self, X: np.ndarray, k: int) -> KNN:
        X = np.ascontiguousarray(X, dtype=np.float32)
        self.n_, self.d_ = X.shape
        self.X_ = X  # the caller's features (no copy when already float32): for the rare exact fallback
        if self.method == "exact":
            self.index_ = NearestNeighbors(n_neighbors=k).fit(X)
            return self
        faiss = import_faiss()
        n, d = X.shape
        self.nlist_ = int(max(16, min(round(np.sqrt(n)), n // 32)))
        rng = np.random.default_rng(self.random_state)
        train = X[np.sort(rng.choice(n, min(n, 32 * self.nlist_), replace=False))]
        quant = faiss.IndexFlatL2(d)
        index = faiss.IndexIVFFlat(quant, d, self.nlist_)
        index.cp.niter = 8
        index.cp.seed = 0 if self.random_state is None else int(self.random_state)
        index.cp.min_points_per_centroid = 1
        index.train(train)
        index.add(X)
        index.nprobe = self.nprobe
        self.index_ = index
        return self

    def kneighbors(self, X: np.ndarray, n_neighbors: int) -> tuple[np.ndarray, np.ndarray]:
        """Euclidean distances and indices (M, n_neighbors), nearest first."""
        X = np.ascontiguousarray(X, dtype=np.float32)
        if self.method == "exact":
            return self.index_.kneighbors(X, n_neighbors=n_neighbors)
        d2, ind = self.index_.search(X, n_neighbors)
        missing = ind < 0  # fewer than n_neighbors points in the probed cells
        if missing.any():
            rows = np.flatnonzero(missing.any(axis=1))
            flat = import_faiss().IndexFlatL2(self.d_)
            flat.add(self.X_)  # rare: exact search for those rows only
            d2[rows], ind[rows] = flat.search(X[rows], n_neighbors)
        return np.sqrt(np.maximum(d2, 0)).astype(np.float64), ind.astype(np.int64)


def exact_neighbors(X: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """Indices (len(rows), k) of the exact k nearest neighbours of ``X[rows]`` among all rows, self excluded."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    try:
        faiss = import_faiss()
        flat = faiss.IndexFlatL2(X.shape[1])
        flat.add(X)
        _, ind = flat.search(X[rows], k + 1)
    except ImportError:  # without the scale extra: the same neighbours, by scikit-learn
        _, ind = NearestNeighbors(n_neighbors=k + 1).fit(X).kneighbors(X[rows])
    return _drop_self(ind, rows, k)


def _drop_self(ind: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    out = np.empty((len(rows), k), dtype=np.int64)
    for j, (r, nb) in enumerate(zip(rows, ind)):
        nb = nb[nb != r]
        out[j] = nb[:k]
    return out


def sampled_recall(X: np.ndarray, graph_ind: np.ndarray, k: int, n_sample: int = RECALL_SAMPLE,
                   random_state: int | None = 0) -> float:
    """Mean share of the exact k nearest neighbours (self excluded) that ``graph_ind`` holds, on a seeded sample.

    ``graph_ind`` (N, k) are the neighbours each row got in the graph (self already dropped).
    Distance ties can make a correct neighbour look missed, so the value is a lower bound.
    """
    n = len(X)
    rng = np.random.default_rng(random_state)
    rows = np.sort(rng.choice(n, min(n, n_sample), replace=False))
    truth = exact_neighbors(X, rows, k)
    hits = [len(np.intersect1d(truth[j], graph_ind[r])) for j, r in enumerate(rows)]
    return float(np.sum(hits) / (len(rows) * k))
