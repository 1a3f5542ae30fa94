"""The in-memory dataset protocol shared by the synthetic datasets.

:class:`ArrayDataset` holds every image in memory (``images`` (N,3,H,W), ``labels`` (N,)) plus
per-image fields named in ``_per_item`` (mask dicts, DataFrames, arrays). It provides the torch
Dataset protocol, ``cache_key()`` (a hash of ``spec``), ``subset()`` and a stratified ``split()``,
so that :class:`SyntheticLesions`, :class:`SyntheticObjects` and :class:`SyntheticChestXray`
behave the same way.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pandas as pd
import torch

from .._cache import content_hash
from .._checks import describe
from .sampling import split_indices


class ArrayDataset(torch.utils.data.Dataset):
    """Base class: subclasses set ``images``, ``labels``, ``class_names``, ``spec`` and the fields
    listed in ``_per_item`` (each indexed along its first axis by :meth:`subset`)."""

    _per_item: tuple[str, ...] = ("images", "labels", "masks")

    # -- torch Dataset protocol ----------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.labels[i]

    def class_counts(self) -> dict[str, int]:
        """Number of images per class name."""
        counts = torch.bincount(self.labels, minlength=len(self.class_names)).tolist()
        return dict(zip(self.class_names, counts))

    def co_occurrence(self, artifact: str) -> pd.DataFrame:
        """Images with and without ``artifact`` per class: the bias a model can learn from this set.

        Rows ``"<artifact>"`` and ``"no <artifact>"``, one column of counts per class name; with two
        classes also ``P(<second class>)``, the share of the second class (malignant) in each row (NaN
        for a row without images: the share is undefined there).
        """
        table = getattr(self, "artifacts", None)
        if table is None or artifact not in table.columns:
            have = [] if table is None else list(table.columns)
            raise ValueError(f"{type(self).__name__} has no artifact column {artifact!r}; it has {have}")
        flags = table[artifact].to_numpy(dtype=bool)
        labels = self.labels.numpy()
        rows = {}
        for name, sel in ((artifact, flags), (f"no {artifact}", ~flags)):
            rows[name] = {c: int((labels[sel] == k).sum()) for k, c in enumerate(self.class_names)}
        out = pd.DataFrame.from_dict(rows, orient="index").rename_axis("artifact").rename_axis("class", axis=1)
        if len(self.class_names) == 2:
            second = self.class_names[1]
            out[f"P({second})"] = (out[second] / out[list(self.class_names)].sum(axis=1)).round(3)
        return out

    def _repr_fields(self) -> dict[str, Any]:
        # subclasses add their own constructor settings
        return {"n": len(self), "size": int(self.images.shape[-1]), "classes": self.class_counts()}

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self._repr_fields().items())
        return f"{type(self).__name__}({fields})"

    # -- helpers -------------------------------------------------------------------------------
    def cache_key(self) -> str:
        """A content hash of :attr:`spec` (all constructor arguments and the subset), for caches."""
        return content_hash(self.spec)

    def subset(self, idx: Any) -> ArrayDataset:
        """A new dataset holding images ``idx`` (int indices or a bool mask), in that order."""
        ix = torch.as_tensor(np.asarray(idx))
        if ix.dtype == torch.bool:
            if ix.shape != (len(self),):
                raise ValueError(f"a bool idx must have shape ({len(self)},); got {describe(ix)}")
            ix = ix.nonzero().flatten()
        if ix.ndim != 1 or (ix.numel() and ix.is_floating_point()):
            raise ValueError(f"idx must be a 1-D sequence of int indices or a bool mask; got {describe(ix)}")
        ix = ix.long()
        if ix.numel() and (int(ix.min()) < -len(self) or int(ix.max()) >= len(self)):
            raise ValueError(f"idx out of range for a dataset of {len(self)} images")
        npi = ix.numpy()
        out = object.__new__(type(self))
        out.__dict__.update(self.__dict__)
        for name in self._per_item:
            out.__dict__[name] = _take(getattr(self, name), ix, npi)
        out.class_names = list(self.class_names)
        if hasattr(self, "bias"):
            out.bias = copy.deepcopy(self.bias)
        out.spec = dict(self.spec, subset={"of": self.cache_key(), "index": content_hash(npi.astype(np.int64))})
        return out

    def split(self, test_fraction: float = 0.25, seed: int = 0, stratify: bool = True) -> tuple[Any, Any]:
        """Random split into (train, test) subsets, stratified by label unless ``stratify=False``.

        The split depends only on the labels and ``seed``, so two datasets with the same labels
        (a biased set and its unbiased twin) split into matching halves.
        """
        test_idx = split_indices(self.labels, test_fraction, seed, stratify)
        return self.subset(np.setdiff1d(np.arange(len(self)), test_idx)), self.subset(test_idx)


def _take(value: Any, ix: torch.Tensor, npi: np.ndarray) -> Any:
    if isinstance(value, dict):
        return {k: _take(v, ix, npi) for k, v in value.items()}
    if isinstance(value, pd.DataFrame):
        return value.iloc[npi].reset_index(drop=True)
    if isinstance(value, torch.Tensor):
        return value[ix]
    if isinstance(value, np.ndarray):
        return value[npi]
    raise TypeError(f"cannot index a per-item field of type {type(value).__name__}")
