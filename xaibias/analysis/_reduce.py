"""Map reduction for SpRAy and GEBI: downsize, normalise, flatten, PCA / Isomap, unit total variance.

:class:`Reducer` turns relevance maps (or images) into the feature rows the kNN graph is built on,
in memory or chunk by chunk from an HDF5 dataset / memmap (:mod:`xaibias.analysis._chunked`); the
PCA basis is fitted on a seeded sample of at most ``_PCA_FIT_SAMPLES`` maps either way, so both
paths give the same features.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.decomposition import PCA

from ._chunked import ChunkSource

__all__ = ["Reducer", "downsize", "NORMALIZATIONS", "REDUCTIONS"]

# the values SpRAy / GEBI accept for normalize= and reduction=
NORMALIZATIONS = ("l2", "max", "sum", None)
REDUCTIONS = ("pca", "isomap", "none")
_PCA_FIT_SAMPLES = 5000  # the PCA basis is fitted on at most this many maps (then applied to all)
_CHUNK = 2048  # maps resized per step, bounds the temporary memory


def downsize(x: torch.Tensor, size: int, chunk: int = _CHUNK) -> np.ndarray:
    """Resize (N,C,H,W) or (N,H,W) to ``size`` x ``size`` and flatten to float32 (N, C*size*size).

    Area averaging when shrinking (every input pixel counts, thin structures such as a ruler are
    not skipped), bilinear interpolation when enlarging. Works in chunks so that 20,000 maps never
    need more than one chunk of temporary memory.

    Parameters
    ----------
    x : torch.Tensor
        Maps (N,H,W) or images (N,C,H,W).
    size : int
        Output height and width.
    chunk : int
        Items resized per step.
    """
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 1:
        raise ValueError(f"size must be a positive int; got {size!r}")
    x4 = x.unsqueeze(1) if x.ndim == 3 else x
    n, c, h, w = x4.shape
    out = np.empty((n, c * size * size), dtype=np.float32)
    for i in range(0, n, chunk):
        part = x4[i : i + chunk].float()
        if h == size and w == size:  # already the size: area averaging would copy each pixel unchanged
            pass
        elif h >= size and w >= size:
            part = F.adaptive_avg_pool2d(part, size)
        else:
            part = F.interpolate(part, size=(size, size), mode="bilinear", align_corners=False)
        out[i : i + chunk] = part.reshape(part.shape[0], -1).numpy()
    return out


def _normalize_rows(X: np.ndarray, how: str | None, name: str, offset: int = 0) -> np.ndarray:
    if how is None:
        return X
    if how == "l2":
        s = np.sqrt(np.einsum("ij,ij->i", X, X))
    elif how == "max":
        s = np.abs(X).max(axis=1)
    else:  # "sum"
        s = np.abs(X).sum(axis=1)
    zero = np.flatnonzero(s == 0) + offset
    if len(zero):
        raise ValueError(
            f"{name} has all-zero map(s) at index {zero[:10].tolist()}{' ...' if len(zero) > 10 else ''} "
            f"after downsizing; they cannot be normalised ({how!r}). Drop them before clustering."
        )
    X /= s[:, None]
    return X


class Reducer:
    """Downsize -> (normalise) -> flatten -> PCA / Isomap / none -> scale to unit total variance.

    The last step makes the *total* variance of the part 1, so that when two parts are
    concatenated (GEBI) their weights say how much each contributes: a part with weight w
    contributes w**2 / sum(w**2) of the total variance of the feature vector.
    """

    def __init__(self, name: str, size: int, normalize: str | None, absolute: bool, reduction: str,
                 n_components: int | None, random_state: int | None) -> None:
        self.name, self.size, self.normalize, self.absolute = name, size, normalize, absolute
        self.reduction, self.n_components, self.random_state = reduction, n_components, random_state

    def _prepare(self, x: torch.Tensor, offset: int = 0) -> np.ndarray:
        X = downsize(x, self.size)
        if self.absolute:
            np.abs(X, out=X)
        return _normalize_rows(X, self.normalize, self.name, offset)

    def _pca_sample(self, n: int) -> np.ndarray | slice:
        """Rows the PCA basis is fitted on: all, or a seeded sorted sample of ``_PCA_FIT_SAMPLES``."""
        rng = np.random.default_rng(self.random_state)
        return np.sort(rng.choice(n, _PCA_FIT_SAMPLES, replace=False)) if n > _PCA_FIT_SAMPLES else slice(None)

    def _uses_pca(self, n: int, d: int) -> bool:
        return self.reduction == "pca" and self.n_components is not None and self.n_components < min(n, d)

    def _finish_fit(self, Z: np.ndarray) -> np.ndarray:
        total = float(np.sum(np.var(Z, axis=0, dtype=np.float64)))
        self.scale_ = 1.0 / np.sqrt(total) if total > 0 else 1.0
        Z *= np.float32(self.scale_)
        return Z

    def fit_transform(self, x: torch.Tensor | ChunkSource) -> np.ndarray:
        if isinstance(x, ChunkSource):
            return self._fit_transform_chunked(x)
        X = self._prepare(x)
        n, d = X.shape
        if self._uses_pca(n, d):
            fit_rows = self._pca_sample(n)
            self.model_ = PCA(self.n_components, svd_solver="randomized", random_state=self.random_state)
            self.model_.fit(X[fit_rows])
            Z = self.model_.transform(X).astype(np.float32, copy=False)
        else:
            Z = self._fit_small(X)
        return self._finish_fit(Z)

    def _fit_small(self, X: np.ndarray) -> np.ndarray:
        """Isomap, or centring only ("none", or PCA with at least as many components as dimensions)."""
        n, d = X.shape
        if self.reduction == "isomap":
            from sklearn.manifold import Isomap  # dense geodesic distances: only for small N

            k = min(self.n_components or 2, d, n - 1)
            self.model_ = Isomap(n_components=k, n_neighbors=min(10, n - 1))
            return self.model_.fit_transform(X).astype(np.float32, copy=False)
        self.model_ = None
        self.mean_ = X.mean(axis=0, dtype=np.float64).astype(np.float32)
        return X - self.mean_

    def _fit_transform_chunked(self, src: ChunkSource) -> np.ndarray:
        """Out-of-core fit: the PCA basis from a seeded sample of rows, then one pass that reduces each chunk.

        Only the sample (5,000 maps) and one chunk are held at full size. The sample is the one the
        in-memory path draws, so both give the same basis. Without PCA the downsized maps are
        gathered chunk by chunk (N x size**2 floats) and reduced as in memory.
        """
        n = len(src)
        first = self._prepare(src.read(0, 1))
        d = first.shape[1]
        if not self._uses_pca(n, d):
            X = np.empty((n, d), dtype=np.float32)
            for start, stop, t in src.chunks():
                X[start:stop] = self._prepare(t, offset=start)
            return self._finish_fit(self._fit_small(X))
        fit_rows = self._pca_sample(n)
        rows = np.arange(n) if isinstance(fit_rows, slice) else fit_rows
        self.model_ = PCA(self.n_components, svd_solver="randomized", random_state=self.random_state)
        self.model_.fit(self._prepare_rows(src, rows))
        Z = np.empty((n, self.model_.n_components_), dtype=np.float32)
        for start, stop, t in src.chunks():
            Z[start:stop] = self.model_.transform(self._prepare(t, offset=start))
        return self._finish_fit(Z)

    def _prepare_rows(self, src: ChunkSource, rows: np.ndarray) -> np.ndarray:
        try:
            return self._prepare(src.rows(rows))
        except ValueError as err:  # name the rows of the file, not of the sample
            if "all-zero" not in str(err):
                raise
            X = downsize(src.rows(rows), self.size)
            bad = rows[np.abs(X).sum(axis=1) == 0][:10].tolist()
            raise ValueError(f"{self.name} has all-zero map(s) at index {bad} after downsizing; they cannot be "
                             f"normalised ({self.normalize!r}). Drop them before clustering.") from None

    def transform(self, x: torch.Tensor | ChunkSource) -> np.ndarray:
        if isinstance(x, ChunkSource):
            n = len(x)
            Z = None
            for start, stop, t in x.chunks():
                part = self._transform_prepared(self._prepare(t, offset=start))
                if Z is None:
                    Z = np.empty((n, part.shape[1]), dtype=np.float32)
                Z[start:stop] = part
            return Z
        return self._transform_prepared(self._prepare(x))

    def _transform_prepared(self, X: np.ndarray) -> np.ndarray:
        Z = (X - self.mean_) if self.model_ is None else self.model_.transform(X).astype(np.float32, copy=False)
        Z *= np.float32(self.scale_)
        return Z
