"""A plain ``class_name/*.jpg`` tree as a dataset (:class:`FolderDataset`).

The simplest layout a researcher has: one folder per class, images inside. ``xaibias audit`` reads
DATA and ``--train`` folders without a ground-truth CSV with it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .._cache import content_hash
from .annotations import ANNOTATION_COLUMNS, ANNOTATION_TO_ARTIFACT, load_artifact_annotations
from .images import IMAGE_EXTENSIONS, load_isic_image
from .table import ImageTable

__all__ = ["FolderDataset"]


class FolderDataset(ImageTable):
    """Lazy dataset over ``root/<class name>/*.jpg|png`` (classes sorted by name).

    Images are decoded and resized one at a time with :func:`xaibias.data.images.load_isic_image`;
    ``annotations`` (a Bissoto et al. CSV) adds ``.artifacts`` by file stem, keeping only annotated
    images, as :class:`xaibias.data.ISICDataset` does.

    Raises
    ------
    ValueError
        Fewer than two class folders with images, a file name in two class folders, an annotation
        CSV that cannot be read or that names none of the images (each message names the folder or
        the CSV).
    """

    def __init__(self, root: str | os.PathLike, size: int, annotations: str | os.PathLike | None = None) -> None:
        self.root, self.size, self.binary, self.dropped = Path(root), int(size), False, {}
        classes = sorted(d.name for d in self.root.iterdir() if d.is_dir() and not d.name.startswith("."))
        rows = []
        for c, name in enumerate(classes):
            for p in sorted((self.root / name).rglob("*")):
                if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS:
                    rows.append({"image_id": p.stem, "path": str(p), "diagnosis": name, "label": c})
        used = sorted({r["diagnosis"] for r in rows})
        if len(used) < 2:
            raise ValueError(
                f"folder {self.root} has images in {len(used)} class folder(s) {used}; a class_name/*.jpg tree needs "
                f"at least two class folders with {', '.join(IMAGE_EXTENSIONS)} files"
            )
        lookup = {n: k for k, n in enumerate(used)}
        meta = pd.DataFrame(rows)
        meta["label"] = meta["diagnosis"].map(lookup)
        dup = meta["image_id"][meta["image_id"].duplicated()].unique()
        if len(dup):
            raise ValueError(f"folder {self.root}: file name(s) {dup[:5].tolist()} occur in more than one class folder")
        self.artifacts = pd.DataFrame(index=range(len(meta)))
        if annotations is not None:
            try:
                ann = load_artifact_annotations(annotations, rename=True)
            except (ValueError, FileNotFoundError, OSError, UnicodeDecodeError) as err:
                raise ValueError(f"cannot use the annotations {annotations}: {err}") from None
            has = meta["image_id"].isin(ann.index).to_numpy()
            if not has.any():
                raise ValueError(
                    f"none of the {len(meta)} images under {self.root} is named in {annotations} "
                    f"(first images: {meta['image_id'].head(3).tolist()}; first CSV rows: {ann.index[:3].tolist()})"
                )
            if (~has).any():
                self.dropped["no artifact annotation"] = int((~has).sum())
            meta = meta[has].reset_index(drop=True)
            cols = [ANNOTATION_TO_ARTIFACT[c] or c for c in ANNOTATION_COLUMNS]
            self.artifacts = ann.loc[meta["image_id"], cols].reset_index(drop=True).astype(bool)
        self.meta = meta
        self.class_names = tuple(used)
        self.image_ids = meta["image_id"].astype(str).tolist()
        self.labels = torch.from_numpy(np.array(meta["label"], dtype=np.int64))

    def _uint8(self, i: int) -> np.ndarray:
        return load_isic_image(self.meta.at[i, "path"], self.size)

    @property
    def images(self) -> torch.Tensor:
        """All images as float (N,3,size,size) in [0,1] (for training a zoo model on the folder)."""
        u8 = np.stack([self._uint8(i) for i in range(len(self))])
        return torch.from_numpy(u8).permute(0, 3, 1, 2).float().div_(255.0)

    def cache_key(self) -> str:
        """Paths, sizes and modification times of the images, the labels and the size."""
        stats = []
        for p in self.meta["path"]:
            st = os.stat(p)
            stats.append((p, st.st_size, st.st_mtime_ns))
        return f"folder-{self.size}px-n{len(self)}-{content_hash(stats, self.labels.tolist())}"
