"""The behaviour shared by the real-data sets (:class:`ISICDataset`, :class:`DermaMNIST`): labels, ids,
metadata, ``subset``, a stratified or grouped ``split`` and the torch Dataset protocol."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pandas as pd
import torch

from .sampling import check_test_fraction, split_indices

__all__: list[str] = []

def index_array(idx: Any, n: int, name: str = "idx") -> np.ndarray:
    if isinstance(idx, torch.Tensor):
        idx = idx.detach().cpu().numpy()
    arr = np.asarray(idx)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise ValueError(f"{name} as a bool mask must have shape ({n},); got {arr.shape}")
        return np.flatnonzero(arr)
    if arr.ndim == 0:
        arr = arr[None]
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be integer indices or a bool mask; got dtype {arr.dtype}")
    arr = arr.astype(np.int64).reshape(-1)
    if arr.size and (arr.min() < -n or arr.max() >= n):
        raise IndexError(f"{name} out of range for a dataset of {n} images: {arr.min()}..{arr.max()}")
    return np.where(arr < 0, arr + n, arr)


class ImageTable:
    """Shared behaviour of the real-data sets: labels, ids, meta, subset, images, Dataset protocol."""

    image_ids: list[str]
    labels: torch.Tensor
    class_names: tuple[str, ...]
    meta: pd.DataFrame
    artifacts: pd.DataFrame
    binary: bool
    dropped: dict[str, int]

    def __len__(self) -> int:
        return len(self.image_ids)

    def _uint8(self, i: int) -> np.ndarray:  # (H,W,3) uint8
        raise NotImplementedError

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        n = len(self)
        if isinstance(i, (np.integer, torch.Tensor)):
            i = int(i)
        if not isinstance(i, int):
            raise TypeError(f"index must be an int; got {type(i).__name__} (use .subset(idx) for many)")
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for a dataset of {n} images")
        i %= n
        img = torch.from_numpy(self._uint8(i)).permute(2, 0, 1).float().div_(255.0)
        return img, int(self.labels[i])

    def _subset_fields(self, new: ImageTable, idx: np.ndarray) -> None:
        new.image_ids = [self.image_ids[j] for j in idx]
        new.labels = self.labels[torch.as_tensor(idx, dtype=torch.long)]
        new.meta = self.meta.iloc[idx].reset_index(drop=True)
        new.artifacts = self.artifacts.iloc[idx].reset_index(drop=True)

    def subset(self, idx: Any) -> ImageTable:
        """A dataset of the same type holding the items ``idx`` (int indices or a bool mask)."""
        idx = index_array(idx, len(self))
        new = copy.copy(self)
        self._subset_fields(new, idx)
        return new

    def split(
        self, test_fraction: float = 0.25, seed: int = 0, stratify: bool = True, group: str | None = None
    ) -> tuple[ImageTable, ImageTable]:
        """Random split into ``(train, test)`` subsets of the same type.

        Parameters
        ----------
        test_fraction : float
            Share of images in the test part, in (0, 1).
        seed : int
            Same seed, same split.
        stratify : bool
            Keep the class proportions in both parts (ignored with ``group``).
        group : str, optional
            A column of :attr:`meta` (``"lesion_id"`` in HAM10000, ``"patient_id"`` in ISIC 2020)
            whose groups must not be split: all images of one lesion or patient land on the same
            side, so a test image never has a near-duplicate in training.
        """
        n = len(self)
        if group is None:
            test_idx = split_indices(self.labels, test_fraction, seed, stratify)
            return self.subset(np.setdiff1d(np.arange(n), test_idx)), self.subset(test_idx)
        test_fraction = check_test_fraction(test_fraction)
        if group not in self.meta.columns:
            raise ValueError(f"group must be a column of meta {list(self.meta.columns)}; got {group!r}")
        rng = np.random.default_rng(seed)
        keys = self.meta[group].astype(str).to_numpy()
        uniq = rng.permutation(np.unique(keys))
        sizes = pd.Series(keys).value_counts()
        chosen, total = [], 0
        for g in uniq:
            if total >= test_fraction * n:
                break
            chosen.append(g)
            total += int(sizes[g])
        test_idx = np.flatnonzero(np.isin(keys, chosen))
        if len(test_idx) == 0 or len(test_idx) == n:
            raise ValueError(
                f"test_fraction={test_fraction} leaves an empty train or test set for {n} images"
            )
        return self.subset(np.setdiff1d(np.arange(n), test_idx)), self.subset(test_idx)

    @property
    def masks(self) -> dict[str, torch.Tensor]:
        """Named bool (N,H,W) masks (none here; :class:`ISICDataset` adds ``"lesion"``)."""
        return {}

    def class_counts(self) -> dict[str, int]:
        """Number of images per class name."""
        counts = torch.bincount(self.labels, minlength=len(self.class_names)).tolist()
        return dict(zip(self.class_names, counts))

    def __repr__(self) -> str:
        extra = f", dropped={self.dropped}" if self.dropped else ""
        return f"{type(self).__name__}(n={len(self)}, classes={self.class_counts()}{extra})"
