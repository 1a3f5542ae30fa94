"""DermaMNIST (MedMNIST): HAM10000 photographs at 28, 64, 128 or 224 px in one ``.npz``, held in memory."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .groundtruth import BINARY_CLASSES
from .table import ImageTable

__all__ = ["DermaMNIST", "DERMAMNIST_CLASSES"]


# MedMNIST's label order for dermamnist (medmnist/info.py, INFO["dermamnist"]["label"]).
DERMAMNIST_CLASSES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
_DERMAMNIST_MALIGNANT = frozenset({"akiec", "bcc", "mel"})


class DermaMNIST(ImageTable):
    """The MedMNIST DermaMNIST split (HAM10000 photos at 28, 64, 128 or 224 px), held in memory.

    Parameters
    ----------
    path : path
        The ``.npz`` file (``dermamnist.npz``, ``dermamnist_224.npz``, ...), or a folder holding
        exactly one ``dermamnist*.npz``. Get it with ``python data/download.py dermamnist``.
    split : {"train", "val", "test"}
    binary : bool
        Malignant (akiec, bcc, mel -> 1) vs benign (bkl, df, nv, vasc -> 0); ``False`` keeps the seven
        classes in MedMNIST's order :data:`DERMAMNIST_CLASSES`.
    size : int, optional
        Resize (bilinear, antialiased) to ``size x size``; ``None`` keeps the file's resolution.

    Attributes are those of :class:`ISICDataset`; ``images`` is the whole split as float
    (N,3,H,W) in [0,1], built on each access from the uint8 copy held in memory (the 28 px
    training split is 66 MB as float; at 224 px it is 4.2 GB, so index items or use a
    ``DataLoader`` there).
    """

    def __init__(
        self, path: str | os.PathLike, split: str = "train", binary: bool = True, size: int | None = None
    ) -> None:
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test'; got {split!r}")
        if size is not None and (
            not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 1
        ):
            raise ValueError(f"size must be a positive int or None; got {size!r}")
        path = Path(path).expanduser()
        if path.is_dir():
            files = sorted(path.glob("dermamnist*.npz"))
            if len(files) != 1:
                raise FileNotFoundError(
                    f"expected exactly one dermamnist*.npz in {path}; found {[f.name for f in files]} "
                    f"(python data/download.py dermamnist fetches it)"
                )
            path = files[0]
        if not path.is_file():
            raise FileNotFoundError(
                f"DermaMNIST file not found: {path} (python data/download.py dermamnist downloads it "
                f"into xaibias.config.data_dir('dermamnist'); see data/README.md)"
            )
        try:
            data = np.load(path, allow_pickle=False)
        except Exception as exc:  # noqa: BLE001
            raise ValueError(f"cannot read DermaMNIST file {path}: {exc}") from exc
        with data:
            keys = set(data.files)
            need = (f"{split}_images", f"{split}_labels")
            missing = [k for k in need if k not in keys]
            if missing:
                raise ValueError(
                    f"DermaMNIST file {path} lacks array(s) {missing}; expected "
                    f"train_images, train_labels, val_images, val_labels, test_images, test_labels; "
                    f"found {sorted(keys)}"
                )
            images, labels = data[need[0]], data[need[1]]
        if images.ndim == 3:  # grey (N,H,W)
            images = np.repeat(images[..., None], 3, axis=-1)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(
                f"{split}_images in {path} must be uint8 (N,H,W,3); got dtype {images.dtype} shape {images.shape}"
            )
        labels = np.asarray(labels).reshape(-1)
        if labels.shape[0] != images.shape[0]:
            raise ValueError(
                f"{split}_labels in {path} has {labels.shape[0]} entries for {images.shape[0]} images"
            )
        if labels.size and (labels.min() < 0 or labels.max() >= len(DERMAMNIST_CLASSES)):
            raise ValueError(
                f"{split}_labels in {path} must lie in 0..{len(DERMAMNIST_CLASSES) - 1}; "
                f"got {labels.min()}..{labels.max()}"
            )
        if images.shape[0] == 0:
            raise ValueError(f"split {split!r} of {path} is empty")
        t = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
        if size is not None and tuple(t.shape[-2:]) != (size, size):
            t = torch.nn.functional.interpolate(
                t.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False
            )
            t = t.round_().clamp_(0, 255).to(torch.uint8)
        self._u8 = t.contiguous()  # (N,3,H,W) uint8
        self.path, self.split, self.binary = path, split, bool(binary)
        self.size = int(self._u8.shape[-1])
        self.dropped = {}
        codes = [DERMAMNIST_CLASSES[k] for k in labels.astype(np.int64)]
        if self.binary:
            self.class_names = BINARY_CLASSES
            lab = np.array([int(c in _DERMAMNIST_MALIGNANT) for c in codes], dtype=np.int64)
        else:
            self.class_names = DERMAMNIST_CLASSES
            lab = labels.astype(np.int64)
        self.labels = torch.as_tensor(lab, dtype=torch.long)
        self.image_ids = [f"dermamnist_{split}_{k:05d}" for k in range(len(codes))]
        self.meta = pd.DataFrame(
            {"image_id": self.image_ids, "index": np.arange(len(codes)), "diagnosis": codes, "label": lab}
        )
        self.artifacts = pd.DataFrame(index=range(len(codes)))

    def _uint8(self, i: int) -> np.ndarray:
        return self._u8[i].permute(1, 2, 0).numpy()

    @property
    def images(self) -> torch.Tensor:
        """The whole split as float (N,3,H,W) in [0,1]."""
        return self._u8.float().div_(255.0)

    def _subset_fields(self, new: ImageTable, idx: np.ndarray) -> None:
        super()._subset_fields(new, idx)
        new._u8 = self._u8[torch.as_tensor(idx, dtype=torch.long)]
        new.dropped = dict(self.dropped)

    def cache_key(self) -> str:
        """A stable string from the file, split, size, mode and the content of this split."""
        digest = hashlib.sha256()
        digest.update(self._u8.numpy().tobytes())
        digest.update(self.labels.numpy().tobytes())
        mode = "binary" if self.binary else "multiclass"
        return f"dermamnist-{self.split}-{mode}-{self.size}px-n{len(self)}-{digest.hexdigest()[:16]}"
