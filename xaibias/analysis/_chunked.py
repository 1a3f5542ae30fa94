"""Out-of-core input for SpRAy and GEBI: relevance maps and images read in chunks of rows.

A :class:`ChunkSource` wraps anything that has a ``.shape`` and can be sliced along axis 0 without
loading the rest: an ``h5py.Dataset`` (for example ``f["attribution"]`` as written by
:func:`xaibias.explain.attribute_dataset`, (N, C, H, W) float32 with C = 1 for pooled maps), a
``numpy.memmap``, a zarr array. Each chunk goes through the same checks as in-memory input
(:func:`xaibias._checks.as_relevance` / :func:`~xaibias._checks.as_images`); an error names the
chunk and its rows, so a NaN in row 734,512 of a file is found without a search.

In-memory tensors and arrays are *not* wrapped: they keep the in-memory path and its results.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from .._checks import as_images, as_relevance

__all__ = ["ChunkSource", "is_chunked", "as_source"]

#: Bytes of one chunk read at a time (the rows are read, converted to float32 and downsized; the
#: temporary memory is a small multiple of this).
CHUNK_BYTES = 64 * 2**20
#: Fewest rows per read (very large maps still come in batches).
_MIN_CHUNK_ROWS = 256


def is_chunked(x: Any) -> bool:
    """True for array-likes read in chunks: not a tensor and not an in-memory ndarray (a memmap is chunked)."""
    if isinstance(x, torch.Tensor):
        return False
    if isinstance(x, np.memmap):
        return True
    if isinstance(x, np.ndarray):
        return False
    if isinstance(x, ChunkSource):
        return True
    return hasattr(x, "shape") and hasattr(x, "__getitem__") and not isinstance(x, (list, tuple))


class ChunkSource:
    """Rows of an array-like read ``chunk_rows`` at a time and checked as relevance or images.

    Parameters
    ----------
    data : array-like with ``.shape`` and slicing along axis 0
        (N, H, W) or (N, C, H, W) relevance, or (N, 3 or 1, H, W) images (uint8 is scaled by 1/255).
    kind : {"relevance", "images"}
        Which check every chunk passes.
    name : str
        Argument name used in error messages.
    chunk_rows : int or None
        Rows per read; default: as many as fit in :data:`CHUNK_BYTES` (at least ``_MIN_CHUNK_ROWS``).
    """

    def __init__(self, data: Any, kind: str, name: str, chunk_rows: int | None = None) -> None:
        if isinstance(data, ChunkSource):
            data = data.data
        shape = tuple(int(s) for s in getattr(data, "shape", ()))
        if kind == "relevance" and len(shape) not in (3, 4):
            raise ValueError(f"{name} must be (N,H,W) or (N,C,H,W) maps; got {type(data).__name__} of shape {shape}")
        if kind == "images" and (len(shape) != 4 or shape[1] not in (1, 3)):
            raise ValueError(f"{name} must be (N,3,H,W) images; got {type(data).__name__} of shape {shape}")
        if shape[0] == 0:
            raise ValueError(f"{name} is empty (N=0); expected at least one map")
        self.data, self.kind, self.name, self.shape = data, kind, name, shape
        row_bytes = 4 * int(np.prod(shape[1:]))
        self.chunk_rows = int(chunk_rows) if chunk_rows else max(_MIN_CHUNK_ROWS, CHUNK_BYTES // max(row_bytes, 1))
        if self.chunk_rows < 1:
            raise ValueError(f"chunk_rows must be >= 1; got {chunk_rows!r}")

    def __len__(self) -> int:
        return self.shape[0]

    def _convert(self, block: Any) -> torch.Tensor:
        arr = np.asarray(block)
        if self.kind == "images" and arr.dtype == np.uint8 and arr.ndim == 4 and len(arr):
            # uint8 holds no NaN and nothing outside [0, 255], so as_images' finiteness and range checks
            # cannot fail (at 1,000,000 images of 3 x 32 x 32 they cost 15 of GEBI's 69 CPU-s): scale
            # directly, by the same operations (float, then / 255), to the same values
            t = torch.from_numpy(np.ascontiguousarray(arr)).float() / 255.0
            return t.expand(-1, 3, -1, -1) if t.shape[1] == 1 else t
        if self.kind == "relevance" and arr.ndim == 4 and arr.shape[1] == 1:
            arr = arr[:, 0]  # one channel: the channel sum is the channel itself, without a copy
        if self.kind == "relevance":
            return as_relevance(arr, self.name)
        return as_images(arr, self.name)

    def _check(self, block: Any, start: int, stop: int, index: int) -> torch.Tensor:
        try:
            return self._convert(block)
        except ValueError as err:
            raise ValueError(f"{self.name}: chunk {index} (rows {start}-{stop - 1}; item i there is row {start} + i): "
                             f"{err}") from None

    def read(self, start: int, stop: int, index: int = 0) -> torch.Tensor:
        """Rows ``start:stop`` as a checked float tensor."""
        return self._check(self.data[start:stop], start, stop, index)

    def chunks(self) -> Iterator[tuple[int, int, torch.Tensor]]:
        """Yield ``(start, stop, tensor)`` for consecutive chunks covering all rows."""
        n = len(self)
        for index, start in enumerate(range(0, n, self.chunk_rows)):
            stop = min(n, start + self.chunk_rows)
            yield start, stop, self.read(start, stop, index)

    def rows(self, idx: np.ndarray) -> torch.Tensor:
        """Sorted rows ``idx`` (a sample), read row-range by row-range so any sliceable input works."""
        idx = np.asarray(idx)
        try:  # h5py, zarr and numpy read a sorted index list in one call
            block = np.asarray(self.data[idx])
            if len(block) != len(idx):
                raise TypeError
        except (TypeError, ValueError, IndexError):
            # contiguous runs of the sorted indices, one slice each
            breaks = np.flatnonzero(np.diff(idx) != 1) + 1
            block = np.concatenate([np.asarray(self.data[int(r[0]):int(r[-1]) + 1]) for r in np.split(idx, breaks)
                                    if len(r)])
        try:
            return self._convert(block)
        except ValueError:
            for _ in self.chunks():  # find the bad chunk and raise its error, which names the rows
                pass
            raise


def as_source(x: Any, kind: str, name: str) -> ChunkSource:
    """Wrap ``x`` in a :class:`ChunkSource` (a source passes through)."""
    if isinstance(x, ChunkSource):
        return x
    return ChunkSource(x, kind, name)
