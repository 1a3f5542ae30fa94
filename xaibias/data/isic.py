"""The ISIC loader: :class:`ISICDataset` over ISIC challenges 2016-2020, HAM10000 and ISIC-archive JSON.

Everything here is optional: the notebooks default to synthetic data, and switch to a real folder
when ``DATA`` is set to a path. Files are fetched with ``python data/download.py NAME`` (see
``xaibias.data.registry.REGISTRY`` and ``data/README.md``). The ground-truth layouts are parsed in
:mod:`xaibias.data.groundtruth`, images decoded and cached by :mod:`xaibias.data.images`; the other
real-data loaders have modules of their own: :class:`~xaibias.data.DermaMNIST` (MedMNIST's
``dermamnist*.npz``) in :mod:`xaibias.data.dermamnist` and
:func:`~xaibias.data.load_artifact_annotations` (the per-image artifact annotations of Bissoto,
Valle & Avila, "Debiasing Skin Lesion Datasets and Models? Not So Fast", ISIC Skin Image Analysis
Workshop (CVPR) 2020) in :mod:`xaibias.data.annotations`.

:class:`ISICDataset`
    A lazy torch ``Dataset`` over a folder of dermoscopy photographs and one ground-truth file.
    The layout of the ground truth is detected from the CSV header (or given as ``layout=``):

    ============== ==========================================================================
    layout         ground-truth file
    ============== ==========================================================================
    ``isic2016``   headerless ``ISIC_xxx,benign|malignant`` (or ``0``/``1``)
    ``isic2017``   ``image_id,melanoma,seborrheic_keratosis`` (nevus when both are 0)
    ``isic2018``   one-hot ``image,MEL,NV,BCC,AKIEC,BKL,DF,VASC`` (Task 3)
    ``isic2019``   one-hot ``image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC[,UNK]``
    ``isic2020``   ``image_name,patient_id,...,diagnosis,benign_malignant,target``
    ``ham10000``   ``HAM10000_metadata.csv``: ``lesion_id,image_id,dx,dx_type,age,sex,localization``
    ``bissoto``    the artifact CSV of Bissoto et al. 2020 (its ``label`` column)
    ``isic_archive`` a folder of per-image JSON files from the ISIC archive,
                   ``{"name": ..., "meta": {"clinical": {"benign_malignant": ..., "diagnosis": ...}}}``
    ============== ==========================================================================

Binary labels (``binary=True``, the default): 1 = malignant, 0 = benign
--------------------------------------------------------------------------
Malignant: melanoma (MEL), basal cell carcinoma (BCC), squamous cell carcinoma (SCC) and actinic
keratosis / intraepithelial carcinoma (AKIEC in ISIC 2018 / HAM10000, AK in ISIC 2019). Benign:
melanocytic nevus (NV), benign keratosis-like lesions (BKL; seborrheic keratosis, SK, in ISIC 2017),
dermatofibroma (DF) and vascular lesions (VASC). This is the usual malignant/benign split of the
seven HAM10000 classes: AKIEC covers actinic keratoses and Bowen's disease, which Tschandl, Rosendahl
& Kittler (2018, "The HAM10000 dataset", Sci. Data 5:180161) describe as non-invasive variants of
squamous cell carcinoma, and BCC and MEL are cancers. Where a file states the answer itself it is
used as is: ISIC 2016 (``benign``/``malignant``), ISIC 2020 (``target``), the ISIC archive
(``benign_malignant``) and the Bissoto CSV (``label``). Images of unknown diagnosis (``UNK`` in ISIC
2019, an indeterminate or missing ``benign_malignant`` in the archive) carry no label: they are
dropped, and the count is kept in ``dataset.dropped`` (and reported in a warning).

Multi-class (``binary=False``) keeps the diagnosis classes of the file, in the challenge's column
order (ISIC 2018 and HAM10000: MEL, NV, BCC, AKIEC, BKL, DF, VASC; ISIC 2019: MEL, NV, BCC, AK,
BKL, DF, VASC, SCC; ISIC 2017: MEL, NV, SK); for free-text diagnoses (ISIC 2020, archive JSON) the
sorted distinct diagnoses, without ``unknown`` (most ISIC 2020 training photos have diagnosis
``unknown`` and are benign by ``target``: they stay in binary mode and leave in multi-class mode). ISIC 2016 and the Bissoto CSV only know
benign/malignant, so both modes give the same two classes there.

Extras: ``annotations=`` joins the Bissoto et al. flags as ``dataset.artifacts`` (bool columns under
xaibias artifact names), ``masks_dir=`` adds ISIC Task 1 lesion segmentations as
``dataset.masks["lesion"]``, and ``dataset.split(test_fraction, seed, group="lesion_id")`` keeps all
photos of one lesion (or patient) on one side.

Resizing and the disk cache
---------------------------
Each photograph is decoded once (JPEGs with PIL's draft mode, which lets libjpeg decode at 1/2,
1/4 or 1/8 scale, so a 6000 x 4000 photo is not decoded at full size), brought to ``size x size``
and stored as a uint8 ``.npy`` under ``xaibias.config.cache_dir("isic", "<size>px-<resize>")``.
``resize="stretch"`` (default) resizes the whole photo to a square, as many ISIC pipelines do; it
keeps rulers and dark corners at the border in view but squeezes a 4:3 photo.
``resize="crop"`` keeps the aspect ratio by cutting the central square first (it loses the sides
of a wide photo). Cache files are written atomically (temporary file + rename), named by a hash of
the source file's path, size and modification time (a changed photo is recomputed), loaded with
``allow_pickle=False``, and recomputed when unreadable or of the wrong shape. Deleting the cache is
always safe.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .. import config
from .._cache import content_hash, file_sha256
from .annotations import ANNOTATION_COLUMNS, ANNOTATION_TO_ARTIFACT, load_artifact_annotations
from .groundtruth import (
    BINARY_CLASSES,
    ISIC_LAYOUTS,
    UNKNOWN_DIAGNOSES,
    detect_layout,
    parse_archive_json,
    parse_ground_truth_csv,
)
from .images import (
    IMAGE_EXTENSIONS,
    find_images,
    load_array,
    load_isic_image,
    load_isic_mask,
    needs_compute,
    save_array,
    scan_images,
)
from .table import ImageTable

__all__ = ["ISICDataset"]

class ISICDataset(ImageTable):
    """Lazy dataset over an ISIC challenge / HAM10000 / ISIC-archive folder.

    Parameters
    ----------
    root : path
        The dataset folder. Images are looked up by id (``<id>.jpg``, ``.jpeg`` or ``.png``) in
        ``images_dir`` (default: ``root``), first directly, then recursively.
    csv : path, optional
        The ground-truth file (absolute, or relative to ``root``). Default: the one CSV in ``root``
        (searched recursively) whose header matches a known layout; without one, the ISIC-archive
        JSON files under ``root``.
    size : int
        Side of the square images returned (pixels).
    binary : bool
        Malignant (1) vs benign (0) labels (see the module docstring for the mapping); ``False``
        keeps the diagnosis classes.
    images_dir : path, optional
        Folder of the photographs (absolute, or relative to ``root``).
    cache : bool
        Keep resized images on disk under ``xaibias.config.cache_dir("isic", ...)``.
    layout : str, optional
        Force a layout (one of :data:`ISIC_LAYOUTS`) instead of detecting it from the header.
    resize : {"stretch", "crop"}
        How a non-square photo becomes square (module docstring).
    missing : {"error", "drop"}
        What to do with ground-truth ids that have no image file.
    annotations : path, optional
        A Bissoto et al. artifact CSV. Only annotated images are kept, and ``.artifacts`` holds their
        flags under xaibias artifact names (``frame``, ``hair``, ``bubble``, ``ruler``, ``ink``,
        ``patch``, ``gel_border``).
    masks_dir : path, optional
        Folder of lesion segmentations (ISIC Task 1 style, ``<id>_segmentation.png``; also
        ``<id>_Segmentation.png`` or ``<id>.png``), absolute or relative to ``root``. Then
        ``.masks["lesion"]`` holds bool (N,size,size) masks with the images' geometry.
    num_workers : int
        Threads used by :meth:`prepare` (PIL decodes outside the GIL).

    Attributes
    ----------
    labels : torch.LongTensor (N,)
    image_ids : list of str
    class_names : tuple of str
    meta : pandas.DataFrame
        One row per image: ``image_id``, ``path``, ``diagnosis``, ``label`` and the columns of the
        ground-truth file.
    artifacts : pandas.DataFrame
        Bool artifact flags per image (no columns without ``annotations``).
    masks : dict
        ``{"lesion": bool (N,size,size)}`` with ``masks_dir``, else empty.
    dropped : dict
        Reason -> number of ground-truth rows left out (unknown diagnosis, missing image, ...).
    missing_ids : list of str
        Ids of the ground truth whose photo was not found (with ``missing="drop"``; counted in
        ``dropped["image file not found"]``).
    layout : str

    Notes
    -----
    ``dataset[i]`` returns ``(image float (3,size,size) in [0,1], label int)`` and decodes (or reads
    from the cache) one photo; :attr:`images` materialises all of them as one (N,3,size,size)
    float tensor (N x 3 x size^2 x 4 bytes: 120 photos at 224 px are 72 MB, 25,000 are 15 GB, so
    use a ``DataLoader`` over the dataset for large sets).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        csv: str | os.PathLike | None = None,
        size: int = 224,
        binary: bool = True,
        images_dir: str | os.PathLike | None = None,
        cache: bool = True,
        layout: str | None = None,
        resize: str = "stretch",
        missing: str = "error",
        annotations: str | os.PathLike | None = None,
        masks_dir: str | os.PathLike | None = None,
        num_workers: int = 2,
    ) -> None:
        if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 1:
            raise ValueError(f"size must be a positive int; got {size!r}")
        if resize not in ("stretch", "crop"):
            raise ValueError(f"resize must be 'stretch' or 'crop'; got {resize!r}")
        if missing not in ("error", "drop"):
            raise ValueError(f"missing must be 'error' or 'drop'; got {missing!r}")
        if layout is not None and layout not in ISIC_LAYOUTS:
            raise ValueError(f"layout must be one of {list(ISIC_LAYOUTS)}; got {layout!r}")
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"ISIC folder not found: {self.root} (root must be a folder holding the photographs "
                f"and the ground-truth file; see data/README.md for how to get them)"
            )
        self.size, self.binary, self.cache, self.resize = int(size), bool(binary), bool(cache), resize
        self.num_workers = max(1, int(num_workers))
        self.dropped: dict[str, int] = {}
        self.missing_ids: list[str] = []
        self._images: torch.Tensor | None = None
        self._masks: torch.Tensor | None = None

        table, order, self.layout, self.source = self._read_ground_truth(csv, layout)
        self._source_hash = self._hash_source()

        dup = table["image_id"][table["image_id"].duplicated()].unique()
        if len(dup):
            raise ValueError(f"ground truth {self.source} lists image(s) more than once: {dup[:5].tolist()}")

        # labels
        if self.binary:
            keep = table["malignant"].notna()
            for dx, n in Counter(table.loc[~keep, "diagnosis"].fillna("unknown").astype(str)).items():
                self._drop(f"no benign/malignant label ({dx})", n)
            table = table[keep].copy()
            self.class_names = BINARY_CLASSES
            table["label"] = table["malignant"].astype(bool).astype(np.int64)
        else:
            dx = table["diagnosis"].astype(object)
            unknown = dx.isna() | dx.astype(str).str.strip().str.lower().isin(UNKNOWN_DIAGNOSES)
            if unknown.any():
                self._drop("unknown diagnosis", int(unknown.sum()))
            table = table[~unknown].copy()
            classes = (
                tuple(order) if order is not None else tuple(sorted(table["diagnosis"].astype(str).unique()))
            )
            self.class_names = classes
            lookup = {c: k for k, c in enumerate(classes)}
            table["label"] = table["diagnosis"].map(lookup).astype(np.int64)

        # artifact annotations
        self.artifacts = pd.DataFrame(index=range(len(table)))
        if annotations is not None:
            ann_path = self._resolve(annotations)
            ann = load_artifact_annotations(ann_path, rename=True)
            has = table["image_id"].isin(ann.index)
            if not has.any():
                raise ValueError(
                    f"none of the {len(table)} images of {self.source} is annotated in {ann_path} "
                    f"(first ids: {table['image_id'].head(3).tolist()} vs {ann.index[:3].tolist()})"
                )
            if (~has).any():
                self._drop("no artifact annotation", int((~has).sum()))
            table = table[has].copy()
            art_cols = [ANNOTATION_TO_ARTIFACT[c] or c for c in ANNOTATION_COLUMNS]
            self.artifacts = ann.loc[table["image_id"], art_cols].reset_index(drop=True)

        # image files
        img_dir = self.root if images_dir is None else self._resolve(images_dir)
        if not img_dir.is_dir():
            raise FileNotFoundError(f"images folder not found: {img_dir}")
        found = find_images(img_dir, table["image_id"].tolist())
        paths = table["image_id"].map(found)
        keep = self._keep_found(table, paths, missing, "image file not found",
                                f"image id(s) of {self.source} have no .jpg/.jpeg/.png file under {img_dir}")
        table, paths = table[keep], paths[keep]
        if len(table) == 0:
            raise ValueError(f"no labelled images left from {self.source} (dropped: {self.dropped})")
        table = table.copy()
        table["path"] = paths.map(str)
        self.images_dir = img_dir
        self.masks_dir = None
        if masks_dir is not None:
            table = self._attach_masks(table, self._resolve(masks_dir), missing)

        first = ["image_id", "path", *(["mask_path"] if masks_dir is not None else []), "diagnosis", "label"]
        rest = [c for c in table.columns if c not in first and c != "malignant"]
        self.meta = table[first + rest].reset_index(drop=True)
        self.image_ids = self.meta["image_id"].astype(str).tolist()
        self.labels = torch.tensor(self.meta["label"].to_numpy(dtype=np.int64), dtype=torch.long)
        self._cache_folder = config.cache_dir("isic", f"{self.size}px-{self.resize}") if self.cache else None
        if self.dropped:
            warnings.warn(f"ISICDataset({self.source}): left out {self.dropped}", UserWarning, stacklevel=2)

    # -- construction helpers --------------------------------------------------------------
    def _resolve(self, p: str | os.PathLike) -> Path:
        path = Path(p).expanduser()
        if not path.is_absolute() and not path.exists():
            path = self.root / path
        return path

    def _keep_found(self, table: pd.DataFrame, found: pd.Series, missing: str, reason: str, problem: str) -> np.ndarray:
        """Rows whose file was found; the others raise (``missing="error"``) or are dropped and counted."""
        absent = found.isna().to_numpy()
        if absent.any():
            ids = table.loc[absent, "image_id"].tolist()
            if missing == "error":
                raise ValueError(f"{len(ids)} {problem}: {ids[:5]}{' ...' if len(ids) > 5 else ''} "
                                 f"(pass missing='drop' to leave them out)")
            self._drop(reason, len(ids))
            if reason == "image file not found":
                self.missing_ids.extend(str(i) for i in ids)
            self.artifacts = self.artifacts[~absent].reset_index(drop=True)
        return ~absent

    def _attach_masks(self, table: pd.DataFrame, folder: Path, missing: str) -> pd.DataFrame:
        if not folder.is_dir():
            raise FileNotFoundError(f"lesion masks folder not found: {folder}")
        found = scan_images(folder, recursive=True)
        if not found:
            raise ValueError(f"no mask images ({', '.join(IMAGE_EXTENSIONS)}) found in {folder}")

        def lookup(i: str) -> str | None:
            for stem in (f"{i}_segmentation", f"{i}_Segmentation", i):
                if stem in found:
                    return str(found[stem])
            return None

        mask_paths = table["image_id"].map(lookup)
        keep = self._keep_found(table, mask_paths, missing, "lesion mask not found",
                                f"image(s) have no lesion mask (<id>_segmentation.png) under {folder}")
        table, mask_paths = table[keep].copy(), mask_paths[keep]
        table["mask_path"] = mask_paths
        self.masks_dir = folder
        return table

    def _mask(self, i: int) -> np.ndarray:
        """Bool (size,size) lesion mask of item ``i`` (cached on disk like the images)."""
        src = Path(self.meta.at[i, "mask_path"])
        cp = None
        if self._cache_folder is not None:
            st = src.stat()
            token = content_hash(str(src.resolve()), st.st_size, st.st_mtime_ns, length=12)
            cp = self._cache_folder / f"{self.image_ids[i]}-mask-{token}.npy"
            arr = load_array(cp, (self.size, self.size))
            if arr is not None:
                return arr.astype(bool)
        mask = load_isic_mask(src, self.size, self.resize)
        if cp is not None:
            save_array(mask.astype(np.uint8), cp)
        return mask

    @property
    def masks(self) -> dict[str, torch.Tensor]:
        """``{"lesion": bool (N,size,size)}`` when ``masks_dir`` was given, else ``{}``."""
        if self.masks_dir is None:
            return {}
        if self._masks is None:
            it = tqdm(range(len(self)), desc="lesion masks", disable=len(self) < 200)
            self._masks = torch.from_numpy(np.stack([self._mask(i) for i in it]))
        return {"lesion": self._masks}

    def _drop(self, reason: str, n: int) -> None:
        if n:
            self.dropped[reason] = self.dropped.get(reason, 0) + int(n)

    def _read_ground_truth(
        self, csv: str | os.PathLike | None, layout: str | None
    ) -> tuple[pd.DataFrame, tuple[str, ...] | None, str, Path]:
        if layout == "isic_archive" or (csv is None and layout is None and not self._find_csvs()):
            files = sorted(self.root.rglob("*.json"))
            if not files:
                raise FileNotFoundError(
                    f"no ground truth found in {self.root}: no CSV with a known header "
                    f"({', '.join(k for k in ISIC_LAYOUTS if k != 'isic_archive')}) and no ISIC-archive "
                    f"JSON metadata files; pass csv= (and layout=) or see data/README.md"
                )
            self._json_files = files
            return parse_archive_json(files), None, "isic_archive", self.root
        if csv is None:
            found = self._find_csvs()
            if layout is not None:
                found = [(p, lay) for p, lay in found if lay == layout] or found
            if len(found) > 1:
                raise ValueError(
                    f"several ground-truth CSVs in {self.root}: {[str(p) for p, _ in found]}; pass csv= to pick one"
                )
            path = found[0][0]
        else:
            path = self._resolve(csv)
            if not path.is_file():
                raise FileNotFoundError(f"ground-truth file not found: {path}")
        lay = layout or detect_layout(path)
        table, order = parse_ground_truth_csv(path, lay)
        table["image_id"] = (
            table["image_id"]
            .astype(str)
            .str.strip()
            .str.replace(r"\.(jpe?g|png)$", "", regex=True, case=False)
        )
        return table, order, lay, path

    def _find_csvs(self) -> list[tuple[Path, str]]:
        if not hasattr(self, "_csv_candidates"):
            out = []
            for p in sorted(self.root.rglob("*.csv")):
                try:
                    out.append((p, detect_layout(p)))
                except (ValueError, OSError, UnicodeDecodeError):
                    continue
            self._csv_candidates = out
        return self._csv_candidates

    def _hash_source(self) -> str:
        if self.layout == "isic_archive":
            h = hashlib.sha256()
            for f in self._json_files:
                h.update(f.name.encode())
                h.update(f.read_bytes())
            return h.hexdigest()[:16]
        return file_sha256(self.source)[:16]

    # -- images ----------------------------------------------------------------------------
    def _cache_path(self, i: int) -> Path | None:
        if self._cache_folder is None:
            return None
        p = Path(self.meta.at[i, "path"])
        st = p.stat()
        token = content_hash(str(p.resolve()), st.st_size, st.st_mtime_ns, length=12)
        return self._cache_folder / f"{self.image_ids[i]}-{token}.npy"

    def _uint8(self, i: int) -> np.ndarray:
        cp = self._cache_path(i)
        if cp is not None:
            arr = load_array(cp, (self.size, self.size, 3))
            if arr is not None:
                return arr
        arr = load_isic_image(self.meta.at[i, "path"], self.size, self.resize)
        if cp is not None:
            save_array(arr, cp)
        return arr

    def prepare(self, progress: bool = True) -> ISICDataset:
        """Resize every photo not yet in the disk cache (once; a tqdm bar shows progress).

        Does nothing with ``cache=False``. Returns ``self``.
        """
        if self._cache_folder is None:
            return self
        todo = [i for i in range(len(self)) if needs_compute(self._cache_path(i), self.size)]
        if not todo:
            return self
        bar = tqdm(total=len(todo), desc=f"resizing ISIC images to {self.size}px", disable=not progress)
        if self.num_workers > 1 and len(todo) > 1:
            with ThreadPoolExecutor(self.num_workers) as pool:
                for _ in pool.map(self._uint8, todo):
                    bar.update(1)
        else:
            for i in todo:
                self._uint8(i)
                bar.update(1)
        bar.close()
        return self

    @property
    def images(self) -> torch.Tensor:
        """All images as one float tensor (N,3,size,size) in [0,1] (kept in memory after the first call).

        Fine for small sets (120 images at 224 px: 72 MB); for large ones iterate ``dataset[i]``
        or a ``DataLoader``.
        """
        if self._images is None:
            self.prepare()
            u8 = np.empty((len(self), self.size, self.size, 3), dtype=np.uint8)
            it = range(len(self))
            if self._cache_folder is None:
                it = tqdm(it, desc=f"loading ISIC images at {self.size}px", disable=len(self) < 50)
            for i in it:
                u8[i] = self._uint8(i)
            # one conversion for the whole stack (per-image float ops are slow on busy CPUs)
            self._images = torch.from_numpy(u8).permute(0, 3, 1, 2).contiguous().float().div_(255.0)
        return self._images

    def _subset_fields(self, new: ImageTable, idx: np.ndarray) -> None:
        super()._subset_fields(new, idx)
        new.dropped = dict(self.dropped)
        new.missing_ids = list(self.missing_ids)
        t = torch.as_tensor(idx, dtype=torch.long)
        new._images = None if self._images is None else self._images[t]
        new._masks = None if self._masks is None else self._masks[t]

    def cache_key(self) -> str:
        """A stable string identifying this data: root, ground-truth content hash, size, mode, ids."""
        ids = content_hash(self.image_ids, self.labels.tolist(), length=12)
        parts = (
            str(self.root.resolve()),
            self._source_hash,
            self.size,
            self.resize,
            self.binary,
            self.layout,
            ids,
        )
        mode = "binary" if self.binary else "multiclass"
        return f"isic-{self.layout}-{mode}-{self.size}px-{self.resize}-n{len(self)}-{content_hash(*parts)}"
