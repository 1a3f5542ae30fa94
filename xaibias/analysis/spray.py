"""SpRAy: spectral relevance analysis (Lapuschkin et al. 2019, *Unmasking Clever Hans predictors*).

SpRAy looks for the *prediction strategies* of a classifier by clustering its explanations. Each
relevance map is summed over colour channels, downsized (default 32 x 32), normalised and
flattened. A sparse symmetric k-nearest-neighbour graph joins similar maps; the leading
eigenvectors of its normalised graph Laplacian form the spectral embedding, and k-means on that
embedding gives the clusters. Large gaps between consecutive Laplacian eigenvalues ("eigengap")
hint at the number of well separated strategies, which :meth:`SpRAy.suggest_n_clusters` turns into
a number (neither CoRelAy nor ViRelAy picks it automatically).

The pipeline is built to scale: the maps are reduced to ``relevance_components`` principal components
(fitted on at most 5,000 of them) before the neighbour search, the affinity and Laplacian are
``scipy.sparse`` matrices with about ``N * n_neighbors`` entries, and the eigenvectors come from
ARPACK (:func:`scipy.sparse.linalg.eigsh`). Nothing of size N x N is ever formed, except a dense
eigensolver (only the wanted eigenpairs) for N <= 200 maps, where ARPACK would be asked for nearly
as many eigenpairs as there are maps. 20,000 maps of 32 x 32 take a few seconds and well under 1 GB.
Up to issue 19 the dense solver ran up to 1,000 maps and computed all eigenpairs; ARPACK gives the
same eigenvalues (to 1e-5) and the same labels for every k at least the number of connected
components of the graph (for smaller k every solver picks an arbitrary basis of the repeated
eigenvalue 0, so those labels were never determined by the data), at a third of the CPU time at
N = 1,000 (tests/test_clustering.py).

At archive scale (issue 19; numbers in benchmarks/README.md, clustering section):

- *Chunked input.* ``fit``/``predict``/``transform`` also take an ``h5py.Dataset`` (for example
  ``f["attribution"]`` as :func:`xaibias.explain.attribute_dataset` writes it), a ``numpy.memmap``
  or any array-like with ``.shape`` that slices along axis 0. It is read in chunks of about 64 MB
  (:mod:`xaibias.analysis._chunked`); the PCA basis is fitted on the same seeded sample of 5,000 maps
  the in-memory path uses, then every chunk is downsized, normalised and projected, so only the
  reduced features (N x ``relevance_components``) are held. Labels equal those of in-memory input.
  Sample-based PCA was kept over :class:`~sklearn.decomposition.IncrementalPCA` because it reads the
  file once (plus the sample) where IncrementalPCA needs a fitting pass and a transform pass, and it
  keeps the in-memory results.
- *Approximate neighbours* from ``large_n`` maps on (default 50,000): a faiss IVF index
  (:mod:`xaibias.analysis._neighbors`); below it the exact scikit-learn search as before. The
  recall of the approximate graph against exact search on 500 sampled maps is ``knn_recall_``.
- *Mini-batch k-means* on the spectral embedding from ``large_n`` maps on (3 initialisations,
  batches of 8,192 rows) instead of ``n_init`` full k-means runs.
- *Landmarks* from ``large_n`` maps on (``landmarks="auto"``, default): the spectral step (kNN
  graph, Laplacian eigenvectors, k-means) runs on a seeded sample of :data:`LANDMARKS_AUTO`
  (20,000) maps, and every other map takes the distance-weighted vote of its ``n_neighbors``
  nearest landmarks in the reduced feature space, the rule :meth:`SpectralBase.predict` applies to
  new maps (one faiss IVF index over the landmarks serves both). This is the landmark / Nystrom
  route to large-scale spectral clustering (Fowlkes, Belongie, Chung & Malik 2004, *Spectral
  grouping using the Nystrom method*; Chen & Cai 2011, *Large scale spectral clustering with
  landmark-based representation*), here in its simplest form: the landmark graph is clustered
  exactly as a 20,000-map set would be, and the assignment is a nearest-landmark vote rather
  than an extension of the eigenvectors. Hence ``eigenvalues_``, ``embedding_``,
  ``embedding_2d_``, ``affinity_`` and the eigengap describe the *landmark graph*
  (``n_landmarks_`` rows), while ``labels_`` and ``features_`` cover all N maps. A strategy held
  by a share p of the maps gets about p x 20,000 landmarks (20 at p = 0.1 %, more than the 10
  neighbours of the graph). At N = 1,000,000 planted maps every count from 5,000 to 50,000 gave
  ARI 1.00; 20,000 costs 12 CPU-s after the features (benchmarks/README.md). ``landmarks=None``
  turns the path off (every map in the graph, as before), an int sets the sample size.

The private :class:`SpectralBase` holds everything; :class:`SpRAy` feeds it one part (the
relevance), :class:`xaibias.analysis.GEBI` two weighted parts (relevance and input image).

Examples
--------
>>> sp = SpRAy(n_clusters=4, random_state=0).fit(R)            # doctest: +SKIP
>>> sp.labels_, sp.eigenvalues_, sp.suggest_n_clusters()        # doctest: +SKIP
>>> sp.predict(R_new)                                           # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from scipy.linalg import eigh as dense_eigh
from scipy.sparse.linalg import ArpackNoConvergence, eigsh
from sklearn.base import BaseEstimator
from sklearn.cluster import KMeans, MiniBatchKMeans
from threadpoolctl import threadpool_limits

from .._checks import as_relevance, check_same_n, describe
from .._options import checked_init
from ._chunked import as_source, is_chunked
from ._neighbors import APPROX_MIN_N, KNN, import_faiss, sampled_recall
from ._reduce import NORMALIZATIONS, REDUCTIONS, Reducer, downsize

__all__ = ["SpRAy", "downsize", "eigengap", "LANDMARKS_AUTO"]

_AFFINITIES = ("connectivity", "heat")
_EMBED_2D = ("spectral", "tsne", None)
_NEIGHBORS = ("auto", "exact", "approx")
_DENSE_EIG_MAX_N = 200  # up to this many maps a dense eigensolver (ARPACK needs k well below N)
#: ``landmarks="auto"``: maps in the landmark sample from ``large_n`` on (benchmarks/README.md, clustering)
LANDMARKS_AUTO = 20_000
#: fits of at most this many maps run their BLAS/OpenMP work on one thread (benchmarks/README.md, clustering)
_ONE_THREAD_MAX_N = 20_000


def eigengap(eigenvalues: np.ndarray, min_clusters: int = 2, max_clusters: int | None = None) -> int:
    """Number of clusters k with the largest gap ``eigenvalues[k] - eigenvalues[k-1]``.

    With ascending Laplacian eigenvalues, k well separated groups give k eigenvalues near 0 and a
    jump to the (k+1)-th one (von Luxburg 2007, *A tutorial on spectral clustering*, section 8.3).

    Parameters
    ----------
    eigenvalues : array (m,)
        Ascending eigenvalues of the normalised Laplacian.
    min_clusters, max_clusters : int
        Range of k considered (``max_clusters`` defaults to ``m - 1``).
    """
    ev = np.asarray(eigenvalues, dtype=float)
    if ev.ndim != 1 or len(ev) < 2:
        raise ValueError(f"eigenvalues must be a 1-D array with at least 2 values; got {describe(ev)}")
    max_clusters = len(ev) - 1 if max_clusters is None else int(max_clusters)
    if not 1 <= min_clusters <= max_clusters <= len(ev) - 1:
        raise ValueError(
            f"need 1 <= min_clusters <= max_clusters <= {len(ev) - 1} (number of eigenvalues - 1); "
            f"got min_clusters={min_clusters}, max_clusters={max_clusters}"
        )
    ks = np.arange(min_clusters, max_clusters + 1)
    gaps = ev[ks] - ev[ks - 1]
    return int(ks[int(np.argmax(gaps))])


def _relabel_by_size(raw: np.ndarray, k: int) -> np.ndarray:
    """Relabel by size (0 = largest cluster, ties by first occurrence) so labels are reproducible."""
    sizes = np.bincount(raw, minlength=k)
    first = np.array([np.argmax(raw == c) if sizes[c] else len(raw) for c in range(k)])
    order = np.lexsort((first, -sizes))
    remap = np.empty(k, dtype=np.int64)
    remap[order] = np.arange(k)
    return remap[raw]


def _vote(dist: np.ndarray, ind: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Distance-weighted vote (weights 1 / distance) of the labels of each row's neighbours ``ind``."""
    w = 1.0 / (dist + 1e-9 * (1.0 + dist.max()))
    votes = np.zeros((len(ind), k))
    np.add.at(votes, (np.repeat(np.arange(len(ind)), ind.shape[1]), labels[ind].ravel()), w.ravel())
    return votes.argmax(axis=1)


class SpectralBase(BaseEstimator):
    """Shared machinery of SpRAy and GEBI: features -> sparse kNN graph -> Laplacian -> k-means.

    Subclasses implement ``_parts()`` (list of ``(key, reducer, weight)``) and ``_inputs(R, images)``
    (validated tensors by key). Everything after the feature vector lives here.
    """

    # ------------------------------------------------------------------ subclass hooks
    def _parts(self) -> list[tuple[str, Reducer, float]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _inputs(self, relevance: Any, images: Any, fitting: bool) -> dict[str, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    # ------------------------------------------------------------------ checks
    def _check_params(self) -> None:
        k = self.n_clusters
        if not (k == "auto" or (isinstance(k, (int, np.integer)) and not isinstance(k, bool) and k >= 1)):
            raise ValueError(f"n_clusters must be a positive int or 'auto'; got {k!r}")
        if not isinstance(self.n_neighbors, (int, np.integer)) or self.n_neighbors < 1:
            raise ValueError(f"n_neighbors must be a positive int; got {self.n_neighbors!r}")
        if self.normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {NORMALIZATIONS}; got {self.normalize!r}")
        if self.reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}; got {self.reduction!r}")
        if self.affinity not in _AFFINITIES:
            raise ValueError(f"affinity must be one of {_AFFINITIES}; got {self.affinity!r}")
        if self.embedding_2d not in _EMBED_2D:
            raise ValueError(f"embedding_2d must be one of {_EMBED_2D}; got {self.embedding_2d!r}")
        if not isinstance(self.n_eigenvalues, (int, np.integer)) or self.n_eigenvalues < 2:
            raise ValueError(f"n_eigenvalues must be an int >= 2; got {self.n_eigenvalues!r}")
        if self.neighbors not in _NEIGHBORS:
            raise ValueError(f"neighbors must be one of {_NEIGHBORS}; got {self.neighbors!r}")
        if isinstance(self.large_n, bool) or not isinstance(self.large_n, (int, np.integer)) or self.large_n < 1:
            raise ValueError(f"large_n must be a positive int; got {self.large_n!r}")
        lm = self.landmarks
        is_count = isinstance(lm, (int, np.integer)) and not isinstance(lm, bool) and lm >= 2
        if not (lm is None or (isinstance(lm, str) and lm == "auto") or is_count):
            raise ValueError(f"landmarks must be None (off), 'auto' or an int >= 2 (maps in the landmark sample); "
                             f"got {lm!r}")

    def _check_n(self, n: int) -> None:
        if n < 3:
            raise ValueError(f"need at least 3 maps to cluster; got N={n}")
        if self.n_clusters != "auto" and self.n_clusters > n:
            raise ValueError(
                f"n_clusters={self.n_clusters} is larger than the number of maps N={n}; "
                "use fewer clusters or more maps"
            )
        if self.n_neighbors >= n:
            raise ValueError(
                f"n_neighbors={self.n_neighbors} must be smaller than the number of maps N={n}"
            )

    def _check_fitted(self) -> None:
        if not hasattr(self, "labels_"):
            raise RuntimeError(f"this {type(self).__name__} is not fitted yet; call fit(...) first")

    # ------------------------------------------------------------------ features
    def _features(self, inputs: dict[str, torch.Tensor], fit: bool) -> np.ndarray:
        blocks, slices, start = [], {}, 0
        for key, reducer, weight in self._parts():
            Z = reducer.fit_transform(inputs[key]) if fit else reducer.transform(inputs[key])
            blocks.append(Z * np.float32(weight))
            slices[key] = slice(start, start + Z.shape[1])
            start += Z.shape[1]
        if fit:
            self.feature_slices_ = slices
        return blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=1)

    def transform(self, relevance: Any, images: Any = None) -> np.ndarray:
        """Feature vectors (N, d) of new maps in the fitted feature space (used by :meth:`predict`)."""
        self._check_fitted()
        return self._features(self._inputs(relevance, images, fitting=False), fit=False)

    # ------------------------------------------------------------------ graph and spectrum
    def _knn_method(self, n: int) -> str:
        if self.neighbors == "auto":
            return "approx" if n >= self.large_n else "exact"
        return self.neighbors

    def _affinity(self, X: np.ndarray) -> sp.csr_matrix:
        n, k = len(X), self.n_neighbors
        method = self._knn_method(n)
        nn = KNN(method, random_state=self.random_state).fit(X, k + 1)
        dist, ind = nn.kneighbors(X, n_neighbors=k + 1)
        # drop each point itself (with duplicates it need not come first)
        is_self = ind == np.arange(n)[:, None]
        drop = np.where(is_self.any(axis=1), is_self.argmax(axis=1), k)
        keep = np.ones_like(ind, dtype=bool)
        keep[np.arange(n), drop] = False
        ind = ind[keep].reshape(n, k)
        dist = dist[keep].reshape(n, k)
        self.knn_method_ = "exact" if method == "exact" else f"faiss IVF ({nn.nlist_} cells, {nn.nprobe} probed)"
        self.knn_recall_ = 1.0 if method == "exact" else sampled_recall(X, ind, k, random_state=self.random_state)
        if self.affinity == "connectivity":
            w = np.ones(n * k, dtype=np.float64)
        else:  # self-tuning heat kernel (Zelnik-Manor & Perona 2004): sigma_i = distance to k-th neighbour
            sigma = np.maximum(dist[:, -1], 1e-12)
            w = np.exp(-(dist**2) / (sigma[:, None] * sigma[ind])).ravel()
        A = sp.csr_matrix((w, (np.repeat(np.arange(n), k), ind.ravel())), shape=(n, n))
        self._nn = nn
        return A.maximum(A.T).tocsr()

    def _spectrum(self, A: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = A.shape[0]
        deg = np.asarray(A.sum(axis=1)).ravel()
        d_inv_sqrt = 1.0 / np.sqrt(deg)
        Dm = sp.diags(d_inv_sqrt)
        # normalised affinity; L_sym = I - M shares its eigenvectors. float32 halves the memory
        # traffic of ARPACK's matrix-vector products; clustering needs no more precision.
        M = (Dm @ A @ Dm).tocsr().astype(np.float32)
        m = min(int(self.n_eigenvalues), n - 1)
        if n <= _DENSE_EIG_MAX_N:  # small N only: only the m largest eigenpairs of the dense matrix
            mu, U = dense_eigh(M.toarray().astype(np.float64), subset_by_index=[n - m, n - 1], driver="evr")
            mu, U = mu[::-1], U[:, ::-1]
        else:
            v0 = np.random.default_rng(self.random_state).standard_normal(n).astype(np.float32)
            try:
                # from large_n on a looser tolerance: measured at 200,000 maps (32 eigenpairs) 16 s of CPU
                # instead of 23 s, the same eigenvalues to 5 decimals and the same clusters
                tol = 1e-3 if n >= self.large_n else 1e-5
                mu, U = eigsh(M, k=m, which="LA", v0=v0, tol=tol, maxiter=20 * n)
            except ArpackNoConvergence as err:  # keep what converged, say so
                warnings.warn(f"ARPACK converged for {len(err.eigenvalues)} of {m} eigenvalues", stacklevel=3)
                mu, U = err.eigenvalues, err.eigenvectors
            order = np.argsort(-mu)
            mu, U = mu[order].astype(np.float64), U[:, order].astype(np.float64)
        lam = np.clip(1.0 - mu, 0.0, 2.0)
        # deterministic signs: largest-magnitude entry of each eigenvector positive
        flip = np.sign(U[np.abs(U).argmax(axis=0), np.arange(U.shape[1])])
        U = U * np.where(flip == 0, 1.0, flip)
        return lam, U, deg

    def _kmeans_input(self, k: int) -> np.ndarray:
        V = np.asarray(self.embedding_[:, :k], dtype=np.float64)
        norms = np.linalg.norm(V, axis=1, keepdims=True)
        return V / np.maximum(norms, 1e-12)  # Ng, Jordan & Weiss 2002: rows on the unit sphere

    def _cluster(self, k: int) -> np.ndarray:
        V = self._kmeans_input(k)
        if len(V) >= self.large_n:  # mini-batch k-means: a few passes of 8,192-row batches, not n_init full ones
            km = MiniBatchKMeans(n_clusters=k, n_init=3, batch_size=8192, random_state=self.random_state)
        else:
            km = KMeans(n_clusters=k, n_init=self.n_init, random_state=self.random_state)
        return _relabel_by_size(km.fit_predict(V), k)

    # ------------------------------------------------------------------ public API
    def fit(self, relevance: Any, images: Any = None) -> SpectralBase:
        """Cluster the maps (and images, for GEBI); sets ``labels_``, ``eigenvalues_``, ``embedding_``.

        Parameters
        ----------
        relevance : tensor, array or chunked array-like (N,H,W) or (N,C,H,W)
            Relevance maps (summed over C). NaN/inf or all-zero maps raise ``ValueError``. An
            ``h5py.Dataset``, memmap or other sliceable array-like is read in chunks.
        images : tensor, array or chunked array-like (N,3,H,W) in [0,1] (uint8 scaled by 1/255), optional
            Input images; required by GEBI, optional (only checked for N) for SpRAy.

        Returns
        -------
        self
        """
        self._check_params()
        inputs = self._inputs(relevance, images, fitting=True)
        n = len(next(iter(inputs.values())))
        self._check_n(n)
        if self._knn_method(n) == "approx":  # fail now, not after the reduction, without xaibias[scale]
            import_faiss(f"{type(self).__name__}.fit on {n:,} maps (neighbors={self.neighbors!r}, "
                         f"large_n={self.large_n:,})")
        # up to _ONE_THREAD_MAX_N maps the BLAS/OpenMP work (PCA, k-means) is too small to share
        # between threads: measured on 2 cores, one thread was 1.3-8x faster from 1,000 to 20,000 maps
        with threadpool_limits(1) if n <= _ONE_THREAD_MAX_N else contextlib.nullcontext():
            return self._fit_inputs(inputs, n)

    def _fit_inputs(self, inputs: dict[str, Any], n: int) -> SpectralBase:
        X = self._features(inputs, fit=True)
        L = self._landmark_rows(n)
        self.landmark_indices_ = L
        self.n_landmarks_ = None if L is None else len(L)
        self.landmark_knn_method_ = None
        if L is None:
            A = self._affinity(X)
        else:  # spectral clustering of the landmarks only; every map is assigned by vote below
            A = self._affinity(np.ascontiguousarray(X[L]))
        lam, U, deg = self._spectrum(A)
        self.features_ = X
        self.affinity_ = A
        self.degree_ = deg
        self.eigenvalues_ = lam.astype(np.float64)
        self.embedding_ = U.astype(np.float32)
        k = self.suggest_n_clusters() if self.n_clusters == "auto" else int(self.n_clusters)
        if k > U.shape[1]:
            raise ValueError(
                f"n_clusters={k} needs at least as many eigenvectors; n_eigenvalues={self.n_eigenvalues} "
                f"(capped at N-1={len(U) - 1}) gives {U.shape[1]}"
            )
        if L is not None:
            self._fit_assignment(X, L)
        self.n_clusters_ = k
        self._label_cache: dict[int, np.ndarray] = {}
        self.labels_ = self.labels_for(k)
        self.embedding_2d_ = self._embed_2d(k)
        return self

    def _landmark_rows(self, n: int) -> np.ndarray | None:
        """Sorted seeded sample of landmark rows, or None when every map goes through the spectral step."""
        if self.landmarks is None or n < self.large_n:
            return None
        m = LANDMARKS_AUTO if self.landmarks == "auto" else int(self.landmarks)
        if m >= n:
            return None
        if m <= self.n_neighbors or (self.n_clusters != "auto" and m < self.n_clusters):
            raise ValueError(
                f"landmarks={self.landmarks!r} gives {m} landmark maps; they must be more than n_neighbors="
                f"{self.n_neighbors} and at least n_clusters={self.n_clusters}"
            )
        seed = None if self.random_state is None else [int(self.random_state), 19]
        return np.sort(np.random.default_rng(seed).choice(n, m, replace=False))

    def _fit_assignment(self, X: np.ndarray, L: np.ndarray) -> None:
        """Index the landmark features and find every map's ``n_neighbors`` nearest landmarks (predict's rule).

        The index replaces the landmark graph's one as the index :meth:`predict` searches, so a map of
        the fitted set that is not a landmark gets the label ``predict`` would give it.
        """
        n, k = len(X), self.n_neighbors
        method = self._knn_method(n)
        nn = KNN(method, random_state=self.random_state).fit(np.ascontiguousarray(X[L]), k)
        ind = np.empty((n, k), dtype=np.int32)
        dist = np.empty((n, k), dtype=np.float64)
        step = 65_536  # bounds the temporaries of the search
        for s in range(0, n, step):
            d, i = nn.kneighbors(X[s:s + step], n_neighbors=k)
            dist[s:s + step], ind[s:s + step] = d, i
        self._nn = nn
        self._assign = (dist, ind)
        self.landmark_knn_method_ = "exact" if method == "exact" else f"faiss IVF ({nn.nlist_} cells, {nn.nprobe} probed)"

    def fit_predict(self, relevance: Any, images: Any = None) -> np.ndarray:
        """:meth:`fit` and return ``labels_`` (N,)."""
        return self.fit(relevance, images).labels_

    def labels_for(self, k: int) -> np.ndarray:
        """Cluster labels for ``k`` clusters on the fitted spectral embedding (cached, no refit).

        Cheap: k-means on the first ``k`` eigenvectors only (on the landmark path: k-means on the
        landmarks, then the stored nearest-landmark vote for the other maps). Used for exports with several k
        (``cluster/kmeans-K``) and for widgets that switch the number of clusters.
        """
        if not hasattr(self, "embedding_"):
            raise RuntimeError(f"this {type(self).__name__} is not fitted yet; call fit(...) first")
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or not 1 <= k <= self.embedding_.shape[1]:
            raise ValueError(
                f"k must be an int in [1, {self.embedding_.shape[1]}] (number of fitted eigenvectors); got {k!r}"
            )
        if k > len(self.embedding_):
            raise ValueError(f"k={k} is larger than the number of maps N={len(self.embedding_)}")
        k = int(k)
        if k not in self._label_cache:
            raw = self._cluster(k)
            if getattr(self, "landmark_indices_", None) is not None:  # every other map: its nearest landmarks' vote
                dist, ind = self._assign
                full = _vote(dist, ind, raw, k)
                full[self.landmark_indices_] = raw
                raw = _relabel_by_size(full, k)
            self._label_cache[k] = raw
        return self._label_cache[k].copy()

    def suggest_n_clusters(self, min_clusters: int = 2, max_clusters: int | None = None) -> int:
        """Eigengap heuristic on ``eigenvalues_``: the k after which the spectrum jumps most.

        See :func:`eigengap`. ``max_clusters`` defaults to ``min(len(eigenvalues_) - 1, 20)``.
        """
        if not hasattr(self, "eigenvalues_"):
            raise RuntimeError(f"this {type(self).__name__} is not fitted yet; call fit(...) first")
        if max_clusters is None:
            max_clusters = min(len(self.eigenvalues_) - 1, 20)
        return eigengap(self.eigenvalues_, min_clusters=min_clusters, max_clusters=max_clusters)

    def predict(self, relevance: Any, images: Any = None) -> np.ndarray:
        """Assign new maps to the fitted clusters (out of sample).

        Each new map goes through the fitted reduction (same downsizing, normalisation, PCA and
        scaling), then takes a distance-weighted vote of the cluster labels of its
        ``n_neighbors`` nearest fitted maps. Maps from the fitted set get (almost always) their own
        label back. On the landmark path the fitted maps searched are the landmarks, and the maps of
        the fitted set that are not landmarks got their ``labels_`` by this same vote.

        Returns
        -------
        np.ndarray (M,) of int cluster labels.
        """
        self._check_fitted()
        Xn = self.transform(relevance, images)
        dist, ind = self._nn.kneighbors(Xn, n_neighbors=self.n_neighbors)
        L = getattr(self, "landmark_indices_", None)
        indexed = self.labels_ if L is None else self.labels_[L]  # labels of the maps the index holds
        return _vote(dist, ind, indexed, self.n_clusters_)

    def _embed_2d(self, k: int) -> np.ndarray | None:
        if self.embedding_2d is None:
            return None
        V = self._kmeans_input(max(k, 2) if self.embedding_.shape[1] >= 2 else 1)
        if self.embedding_2d == "tsne":
            from sklearn.manifold import TSNE

            perplexity = float(min(30.0, max(2.0, (len(V) - 1) / 3.0)))
            Z = TSNE(2, init="pca", perplexity=perplexity, random_state=self.random_state).fit_transform(V)
        else:  # principal plane of the (row-normalised) spectral embedding that k-means sees
            Vc = V - V.mean(axis=0)
            if Vc.shape[1] < 2:
                Vc = np.c_[Vc, np.zeros(len(Vc))]
            _, _, Vt = np.linalg.svd(Vc, full_matrices=False)
            Z = Vc @ Vt[:2].T
        return Z.astype(np.float32)

    @property
    def n_features_(self) -> int:
        self._check_fitted()
        return int(self.features_.shape[1])


class SpRAy(SpectralBase):
    """Spectral relevance analysis: spectral clustering of downsized, normalised relevance maps.

    Parameters
    ----------
    n_clusters : int or "auto"
        Number of clusters for k-means; ``"auto"`` uses the eigengap (:meth:`suggest_n_clusters`).
    n_neighbors : int
        Neighbours per map in the kNN graph (default 10, as in CoRelAy's ``SparseKNN``). Also the
        number of votes in :meth:`predict`.
    relevance_size : int
        Maps are area-downsized to ``relevance_size`` x ``relevance_size`` (default 32).
    normalize : {"l2", "max", "sum", None}
        Per-map scaling after downsizing: unit L2 norm (default; Euclidean distance then ranks
        like cosine similarity), max |R| = 1, sum |R| = 1, or none.
    absolute : bool
        Cluster |R| instead of signed relevance.
    reduction : {"pca", "isomap", "none"}
        Reduction before the neighbour search. PCA (default) keeps distances nearly unchanged and
        makes the search fast; Isomap builds dense N x N geodesic distances (small N only).
    relevance_components : int
        Components kept by the reduction (default 50; skipped when the maps have fewer dimensions).
    n_eigenvalues : int
        Laplacian eigenpairs computed (default 32, capped at N-1): the spectral embedding and the
        range of the eigengap search.
    affinity : {"connectivity", "heat"}
        Edge weights of the symmetric kNN graph: 1 (default, as CoRelAy) or a self-tuning Gaussian.
    embedding_2d : {"spectral", "tsne", None}
        2-D coordinates for plots in ``embedding_2d_``: principal plane of the spectral embedding
        that k-means sees (default, instant) or t-SNE of it (slower, nicer for N of a few thousand).
    n_init : int
        k-means restarts.
    random_state : int or None
        Seed for PCA, ARPACK's start vector, k-means, t-SNE and the approximate index.
    neighbors : {"auto", "exact", "approx"}
        Neighbour search: exact scikit-learn search, a faiss IVF index, or (default) exact below
        ``large_n`` maps and approximate from there on.
    large_n : int
        From this many maps on, ``neighbors="auto"`` searches approximately, k-means runs in
        mini-batches and the landmark path is taken (default 50,000: below it exact search is fast
        enough and keeps the results of earlier versions; see the module docstring).
    landmarks : "auto", int or None
        From ``large_n`` maps on, cluster a seeded sample of this many landmark maps spectrally and
        assign every other map by the vote of its nearest landmarks (the rule of :meth:`predict`);
        ``"auto"`` (default) is 20,000 landmarks, ``None`` switches the path off. With at least as
        many landmarks as maps the full path runs. The landmark sample (at its own size) follows
        the same size rules as any fit: below ``large_n`` landmarks its graph is searched exactly.

    Attributes
    ----------
    labels_ : np.ndarray (N,)
        Cluster per map; 0 is the largest cluster.
    eigenvalues_ : np.ndarray (m,)
        Ascending eigenvalues of the normalised Laplacian ``I - D^-1/2 A D^-1/2``.
    embedding_ : np.ndarray (N, m)
        Matching eigenvectors (the "spectral" embedding ViRelAy shows).
    embedding_2d_ : np.ndarray (N, 2)
        Coordinates for scatter plots.
    n_clusters_ : int
        Number of clusters used (resolved from "auto").
    features_ : np.ndarray (N, d)
        Reduced feature vectors the graph was built on.
    feature_slices_ : dict of str -> slice
        Where each part lies in the columns of ``features_``: ``{"relevance": slice(0, d)}`` here;
        GEBI adds ``"images"`` after the relevance block.
    affinity_ : scipy.sparse.csr_matrix (N, N)
        Symmetric kNN affinity.
    knn_method_ : str
        ``"exact"`` or the approximate index used (``"faiss IVF (cells, probed)"``).
    knn_recall_ : float
        Share of the exact ``n_neighbors`` nearest neighbours the graph holds, measured on 500
        sampled maps (1.0 for exact search).
    landmark_indices_ : np.ndarray (n_landmarks_,) or None
        Sorted rows of the landmark maps, or None when every map went through the spectral step.
        With landmarks, ``eigenvalues_``, ``embedding_``, ``embedding_2d_``, ``affinity_`` and
        ``knn_method_`` / ``knn_recall_`` describe the landmark graph; ``labels_`` covers all maps.
    n_landmarks_ : int or None
        Number of landmarks used (None: the full path).
    landmark_knn_method_ : str or None
        Search that assigns the other maps (and :meth:`predict`) to their nearest landmarks.
    """

    @checked_init  # an unknown keyword names itself and the parameters below
    def __init__(self, n_clusters: int | str = 4, *, n_neighbors: int = 10, relevance_size: int = 32,
                 normalize: str | None = "l2", absolute: bool = False, reduction: str = "pca",
                 relevance_components: int = 50, n_eigenvalues: int = 32, affinity: str = "connectivity",
                 embedding_2d: str | None = "spectral", n_init: int = 10, random_state: int | None = 0,
                 neighbors: str = "auto", large_n: int = APPROX_MIN_N, landmarks: int | str | None = "auto") -> None:
        self.n_clusters = n_clusters
        self.n_neighbors = n_neighbors
        self.relevance_size = relevance_size
        self.normalize = normalize
        self.absolute = absolute
        self.reduction = reduction
        self.relevance_components = relevance_components
        self.n_eigenvalues = n_eigenvalues
        self.affinity = affinity
        self.embedding_2d = embedding_2d
        self.n_init = n_init
        self.random_state = random_state
        self.neighbors = neighbors
        self.large_n = large_n
        self.landmarks = landmarks

    def _parts(self) -> list[tuple[str, Reducer, float]]:
        if not hasattr(self, "_reducers"):
            self._reducers = {"relevance": Reducer("relevance", self.relevance_size, self.normalize, self.absolute,
                                                    self.reduction, self.relevance_components, self.random_state)}
        return [("relevance", self._reducers["relevance"], 1.0)]

    def _inputs(self, relevance: Any, images: Any, fitting: bool) -> dict[str, torch.Tensor]:
        R = as_source(relevance, "relevance", "relevance") if is_chunked(relevance) else as_relevance(relevance, "relevance")
        if images is not None:
            check_same_n(relevance=R, images=images)
        if fitting:
            self.__dict__.pop("_reducers", None)  # a refit starts from fresh reductions
        return {"relevance": R}
