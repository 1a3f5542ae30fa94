"""Real-data loaders: ISIC challenges 2016-2020, HAM10000, ISIC-archive JSON, DermaMNIST, artifact CSVs.

Everything here is optional: the notebooks default to synthetic data, and switch to a real folder
when ``DATA`` is set to a path. Files are fetched with ``python data/download.py NAME`` (see
:data:`REGISTRY` and ``data/README.md``).

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

:class:`DermaMNIST`
    The MedMNIST ``dermamnist*.npz`` (HAM10000 at 28, 64, 128 or 224 px), held in memory.

:func:`load_artifact_annotations`
    The per-image artifact annotations of Bissoto, Valle & Avila, "Debiasing Skin Lesion Datasets
    and Models? Not So Fast", ISIC Skin Image Analysis Workshop (CVPR) 2020.

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

import copy
import csv as _csv
import hashlib
import json
import os
import re
import tempfile
import urllib.error
import urllib.request
import warnings
import zipfile
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from .. import config

__all__ = [
    "ISICDataset",
    "DermaMNIST",
    "load_artifact_annotations",
    "ANNOTATION_COLUMNS",
    "ANNOTATION_TO_ARTIFACT",
    "ISIC_LAYOUTS",
    "MALIGNANT_DIAGNOSES",
    "BENIGN_DIAGNOSES",
    "DERMAMNIST_CLASSES",
    "load_isic_image",
    "load_isic_mask",
    "download_dataset",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
MALIGNANT_DIAGNOSES = frozenset({"MEL", "BCC", "SCC", "AKIEC", "AK"})
BENIGN_DIAGNOSES = frozenset({"NV", "BKL", "SK", "DF", "VASC"})
BINARY_CLASSES = ("benign", "malignant")

# Free-text diagnoses (ISIC 2020, ISIC archive) that have a clear malignant/benign reading; used
# only when a record has no explicit benign/malignant field.
_TEXT_DIAGNOSIS = {
    "melanoma": "MEL",
    "nevus": "NV",
    "basal cell carcinoma": "BCC",
    "squamous cell carcinoma": "SCC",
    "actinic keratosis": "AK",
    "seborrheic keratosis": "SK",
    "pigmented benign keratosis": "BKL",
    "solar lentigo": "BKL",
    "lentigo nos": "BKL",
    "lichenoid keratosis": "BKL",
    "dermatofibroma": "DF",
    "vascular lesion": "VASC",
}
_UNKNOWN = {"", "unk", "unknown", "nan", "none", "other"}

ISIC_LAYOUTS: dict[str, tuple[str, ...]] = {
    # layout -> columns the ground-truth file must have
    "isic2016": ("<image id>", "<benign|malignant or 0|1>"),
    "isic2017": ("image_id", "melanoma", "seborrheic_keratosis"),
    "isic2018": ("image", "MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"),
    "isic2019": ("image", "MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC"),
    "isic2020": ("image_name", "target"),
    "ham10000": ("image_id", "dx"),
    "bissoto": ("image", "label"),
    "isic_archive": ("name", "meta.clinical.benign_malignant", "meta.clinical.diagnosis"),
}

_HAM_DX = {"akiec": "AKIEC", "bcc": "BCC", "bkl": "BKL", "df": "DF", "mel": "MEL", "nv": "NV", "vasc": "VASC"}
_ISIC2018_CLASSES = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")
_ISIC2019_CLASSES = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC")
_ISIC2017_CLASSES = ("MEL", "NV", "SK")

# ----------------------------------------------------------------------------------------------
# artifact annotations (Bissoto et al. 2020)
# ----------------------------------------------------------------------------------------------

ANNOTATION_COLUMNS = ("dark_corner", "hair", "gel_border", "gel_bubble", "ruler", "ink", "patches")
ANNOTATION_TO_ARTIFACT: dict[str, str | None] = {
    "dark_corner": "frame",
    "hair": "hair",
    "gel_bubble": "bubble",
    "ruler": "ruler",
    "ink": "ink",
    "patches": "patch",
    "gel_border": None,  # no painter in xaibias; kept under its own name
}


def _sniff_separator(path: Path) -> str:
    with open(path, encoding="utf-8-sig", newline="") as fh:
        first = fh.readline()
    return ";" if first.count(";") > first.count(",") else ","


def load_artifact_annotations(csv: str | os.PathLike, rename: bool = False) -> pd.DataFrame:
    """Read the artifact annotations of Bissoto et al. (2020).

    The published file is semicolon-separated with an unnamed index column first,
    ``;image;dark_corner;hair;gel_border;gel_bubble;ruler;ink;patches;label;label_string``, and
    names images ``ISIC_xxx.png`` although the photographs are usually ``.jpg``. The
    comma-separated variant (their "trap set" files, which may add more 0/1 columns) is read too.

    Parameters
    ----------
    csv : path
        The annotation file.
    rename : bool
        Rename the artifact columns to xaibias artifact names (:data:`ANNOTATION_TO_ARTIFACT`:
        dark_corner -> frame, gel_bubble -> bubble, patches -> patch; hair, ruler and ink keep
        their names; gel_border has no xaibias painter and keeps its name).

    Returns
    -------
    pandas.DataFrame
        Indexed by image id (the file name without extension, index name ``image_id``); one bool
        column per artifact, ``label`` (int, 1 = malignant) and ``label_string``. Extra columns of
        the file are kept as read.
    """
    path = Path(csv)
    if not path.is_file():
        raise FileNotFoundError(f"artifact annotation file not found: {path}")
    sep = _sniff_separator(path)
    df = pd.read_csv(path, sep=sep, dtype={"image": str})
    first = df.columns[0]
    if first == "" or str(first).startswith("Unnamed"):
        df = df.drop(columns=first)
    required = ("image", *ANNOTATION_COLUMNS, "label")
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(
            f"artifact annotation file {path} lacks column(s) {missing}; expected {list(required)} "
            f"(+ label_string), found {list(df.columns)}"
        )
    if len(df) == 0:
        raise ValueError(f"artifact annotation file {path} has no rows")
    for col in (*ANNOTATION_COLUMNS, "label"):
        values = pd.to_numeric(df[col], errors="coerce")
        bad = ~values.isin([0, 1])
        if bad.any():
            raise ValueError(
                f"column {col!r} of {path} must hold 0/1; got {df.loc[bad, col].unique()[:5].tolist()} "
                f"in {int(bad.sum())} row(s) (first at image {df.loc[bad, 'image'].iloc[0]!r})"
            )
        df[col] = values.astype(bool) if col != "label" else values.astype(np.int64)
    if "label_string" not in df.columns:
        df["label_string"] = np.where(df["label"] == 1, "malignant", "benign")
    df["image"] = df["image"].astype(str).map(lambda s: Path(s.strip()).stem)
    dup = df["image"][df["image"].duplicated()].unique()
    if len(dup):
        raise ValueError(f"artifact annotation file {path} lists image(s) more than once: {dup[:5].tolist()}")
    df = df.set_index("image")
    df.index.name = "image_id"
    if rename:
        df = df.rename(columns={k: v for k, v in ANNOTATION_TO_ARTIFACT.items() if v is not None})
    return df


# ----------------------------------------------------------------------------------------------
# ground-truth parsing
# ----------------------------------------------------------------------------------------------


def _read_header(path: Path) -> list[str]:
    sep = _sniff_separator(path)
    with open(path, encoding="utf-8-sig", newline="") as fh:
        row = next(_csv.reader(fh, delimiter=sep), [])
    return [c.strip() for c in row]


def _looks_like_id(cell: str) -> bool:
    return bool(re.match(r"^ISIC_\d+", cell.strip()))


def detect_layout(csv: str | os.PathLike) -> str:
    """Return the ISIC layout name of a ground-truth CSV from its header (see :data:`ISIC_LAYOUTS`)."""
    path = Path(csv)
    header = _read_header(path)
    cols = set(header)
    if header and _looks_like_id(header[0]):
        return "isic2016"
    if {"image_id", "melanoma", "seborrheic_keratosis"} <= cols:
        return "isic2017"
    if set(ISIC_LAYOUTS["isic2019"]) <= cols:
        return "isic2019"
    if set(ISIC_LAYOUTS["isic2018"]) <= cols:
        return "isic2018"
    if {"image_name", "target"} <= cols:
        return "isic2020"
    if {"image_id", "dx"} <= cols:
        return "ham10000"
    if {"image", "label", *ANNOTATION_COLUMNS} <= cols:
        return "bissoto"
    expected = "; ".join(f"{k}: {', '.join(v)}" for k, v in ISIC_LAYOUTS.items() if k != "isic_archive")
    raise ValueError(
        f"cannot tell the layout of {path}: its columns are {header}; expected one of {expected}. "
        f"Pass layout= to choose one."
    )


def _require(df: pd.DataFrame, cols: Iterable[str], path: Path, layout: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(
            f"ground-truth file {path} ({layout} layout) lacks column(s) {missing}; "
            f"expected {list(ISIC_LAYOUTS[layout])}, found {list(df.columns)}"
        )


def _as01(series: pd.Series, path: Path, col: str) -> np.ndarray:
    values = pd.to_numeric(series, errors="coerce")
    bad = ~values.isin([0, 1])
    if bad.any():
        raise ValueError(
            f"column {col!r} of {path} must hold 0/1 (or 0.0/1.0); got "
            f"{series[bad].unique()[:5].tolist()} in {int(bad.sum())} row(s)"
        )
    return values.to_numpy().astype(bool)


def _one_hot(df: pd.DataFrame, id_col: str, classes: Sequence[str], path: Path) -> list[str | None]:
    cols = [c for c in classes if c in df.columns]
    hot = np.stack([_as01(df[c], path, c) for c in cols], axis=1)
    many = hot.sum(axis=1) > 1
    if many.any():
        ids = df.loc[many, id_col].tolist()
        raise ValueError(f"{path}: image(s) {ids[:5]} have more than one diagnosis column set to 1")
    out: list[str | None] = []
    for row in hot:
        nz = np.flatnonzero(row)
        out.append(cols[nz[0]] if len(nz) else None)
    return out


def _text_to_code(text: Any) -> str | None:
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return None
    return _TEXT_DIAGNOSIS.get(str(text).strip().lower())


def _bm_to_bool(value: Any) -> bool | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    v = str(value).strip().lower()
    if v in ("malignant", "1", "1.0", "true"):
        return True
    if v in ("benign", "0", "0.0", "false"):
        return False
    return None  # indeterminate, indeterminate/benign, ... : no label


def _parse_csv(path: Path, layout: str) -> tuple[pd.DataFrame, tuple[str, ...] | None]:
    """Parse a ground-truth file into a frame with image_id, diagnosis, malignant (+ the file's columns).

    Returns the frame and the multi-class order (None: sorted distinct diagnoses).
    """
    if layout == "isic2016":
        raw = pd.read_csv(path, header=None, dtype=str)
        if raw.shape[1] < 2:
            raise ValueError(
                f"ground-truth file {path} (isic2016 layout) must have two columns "
                f"(image id, benign|malignant or 0|1); found {raw.shape[1]}"
            )
        raw = raw.iloc[:, :2]
        raw.columns = ["image_id", "benign_malignant"]
        mal = [_bm_to_bool(v) for v in raw["benign_malignant"]]
        bad = [v for v, m in zip(raw["benign_malignant"], mal) if m is None]
        if bad:
            raise ValueError(
                f"second column of {path} (isic2016 layout) must be benign/malignant or 0/1; got {bad[:5]}"
            )
        raw["diagnosis"] = ["malignant" if m else "benign" for m in mal]
        raw["malignant"] = mal
        return raw, BINARY_CLASSES
    if layout == "bissoto":
        ann = load_artifact_annotations(path).reset_index()
        ann["diagnosis"] = np.where(ann["label"] == 1, "malignant", "benign")
        ann["malignant"] = ann["label"].astype(bool)
        return ann, BINARY_CLASSES
    df = pd.read_csv(
        path, sep=_sniff_separator(path), dtype={"image": str, "image_id": str, "image_name": str}
    )
    df.columns = [str(c).strip() for c in df.columns]
    _require(df, ISIC_LAYOUTS[layout], path, layout)
    if layout == "isic2017":
        mel = _as01(df["melanoma"], path, "melanoma")
        sk = _as01(df["seborrheic_keratosis"], path, "seborrheic_keratosis")
        if (mel & sk).any():
            ids = df.loc[mel & sk, "image_id"].tolist()
            raise ValueError(f"{path}: image(s) {ids[:5]} are marked both melanoma and seborrheic_keratosis")
        df["diagnosis"] = np.where(mel, "MEL", np.where(sk, "SK", "NV"))
        df["malignant"] = mel
        return df, _ISIC2017_CLASSES
    if layout in ("isic2018", "isic2019"):
        classes = _ISIC2018_CLASSES if layout == "isic2018" else _ISIC2019_CLASSES
        scan = [*classes, "UNK"] if "UNK" in df.columns else list(classes)
        dx = _one_hot(df, "image", scan, path)
        df = df.rename(columns={"image": "image_id"})
        df["diagnosis"] = dx
        df["malignant"] = [None if d in (None, "UNK") else d in MALIGNANT_DIAGNOSES for d in dx]
        return df, classes
    if layout == "isic2020":
        df = df.rename(columns={"image_name": "image_id"})
        df["malignant"] = _as01(df["target"], path, "target")
        if "diagnosis" in df.columns:
            df["diagnosis"] = df["diagnosis"].fillna("unknown").astype(str)
        else:
            df["diagnosis"] = np.where(df["malignant"], "malignant", "benign")
        return df, None
    if layout == "ham10000":
        codes = df["dx"].astype(str).str.strip().str.lower()
        unknown = sorted(set(codes) - set(_HAM_DX))
        if unknown:
            raise ValueError(
                f"column 'dx' of {path} has unknown diagnoses {unknown[:5]}; expected {sorted(_HAM_DX)}"
            )
        df["diagnosis"] = codes.map(_HAM_DX)
        df["malignant"] = df["diagnosis"].isin(MALIGNANT_DIAGNOSES)
        return df, _ISIC2018_CLASSES
    raise ValueError(f"unknown layout {layout!r}; expected one of {list(ISIC_LAYOUTS)}")


def _parse_archive_json(files: Sequence[Path]) -> pd.DataFrame:
    rows = []
    for f in files:
        try:
            rec = json.loads(Path(f).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"cannot read ISIC archive metadata file {f}: {exc}") from exc
        if not isinstance(rec, dict):
            raise ValueError(
                f"ISIC archive metadata file {f} must hold a JSON object; got {type(rec).__name__}"
            )
        name = rec.get("name", rec.get("isic_id"))
        meta = rec.get("meta", rec.get("metadata"))
        if name is None or not isinstance(meta, dict):
            raise ValueError(
                f"ISIC archive metadata file {f} lacks 'name' or 'meta'; expected "
                f"{{'name': ..., 'meta': {{'clinical': {{'benign_malignant': ..., 'diagnosis': ...}}}}}}, "
                f"found keys {sorted(rec)}"
            )
        clinical = meta.get("clinical", {}) or {}
        bm, dx = clinical.get("benign_malignant"), clinical.get("diagnosis")
        mal = _bm_to_bool(bm)
        if mal is None:
            code = _text_to_code(dx)
            mal = None if code is None else code in MALIGNANT_DIAGNOSES
        diag = "unknown" if dx is None or str(dx).strip().lower() in _UNKNOWN else str(dx).strip()
        rows.append(
            {
                "image_id": str(name),
                "diagnosis": diag,
                "malignant": mal,
                "benign_malignant": bm,
                "json": str(f),
            }
        )
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------
# images: lookup, decoding, cache
# ----------------------------------------------------------------------------------------------


def _ext_rank(p: Path) -> tuple[int, int, str]:
    ext = p.suffix.lower()
    return (IMAGE_EXTENSIONS.index(ext), len(p.parts), str(p))


def _scan_images(folder: Path, recursive: bool) -> dict[str, Path]:
    found: dict[str, Path] = {}
    it = folder.rglob("*") if recursive else folder.iterdir()
    for p in it:
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file():
            old = found.get(p.stem)
            if old is None or _ext_rank(p) < _ext_rank(old):
                found[p.stem] = p
    return found


def _find_images(folder: Path, ids: Sequence[str]) -> dict[str, Path]:
    """Map ids to image files in ``folder`` (flat listing first, recursive when ids are missing)."""
    found = _scan_images(folder, recursive=False)
    if not found or any(i not in found for i in ids):
        deep = _scan_images(folder, recursive=True)
        for k, v in deep.items():
            if k not in found:
                found[k] = v
    if not found:
        raise ValueError(
            f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in {folder} (searched recursively); "
            f"is this the folder of the photographs? Pass images_dir= to point at it."
        )
    return found


def load_isic_image(path: str | os.PathLike, size: int, resize: str = "stretch") -> np.ndarray:
    """Decode one photograph to a uint8 array (size, size, 3).

    ``resize="stretch"`` resizes the whole image to a square; ``"crop"`` cuts the central square
    first (keeps the aspect ratio). JPEGs are decoded with PIL's draft mode (reduced DCT scale) so
    large photos decode fast. Raises ``ValueError`` naming the file when it cannot be read.
    """
    if resize not in ("stretch", "crop"):
        raise ValueError(f"resize must be 'stretch' or 'crop'; got {resize!r}")
    path = Path(path)
    try:
        with Image.open(path) as im:
            if im.format == "JPEG":
                w, h = im.size
                if resize == "crop":
                    s = min(w, h)
                    im.draft("RGB", (max(1, size * w // s), max(1, size * h // s)))
                else:
                    im.draft("RGB", (size, size))
            im = im.convert("RGB")
            if resize == "crop":
                w, h = im.size
                s = min(w, h)
                left, top = (w - s) // 2, (h - s) // 2
                im = im.crop((left, top, left + s, top + s))
            im = im.resize((size, size), Image.Resampling.BILINEAR)
            arr = np.array(im, dtype=np.uint8)  # a writable copy
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"cannot read image {path}: {type(exc).__name__}: {exc}") from exc
    return np.ascontiguousarray(arr)


def load_isic_mask(path: str | os.PathLike, size: int, resize: str = "stretch") -> np.ndarray:
    """Read a lesion segmentation (white lesion on black, as in ISIC Task 1) as bool (size, size).

    Same geometry as :func:`load_isic_image` (``stretch`` or central-square ``crop``), nearest-
    neighbour resampling, threshold at half intensity. Raises ``ValueError`` naming an unreadable file.
    """
    if resize not in ("stretch", "crop"):
        raise ValueError(f"resize must be 'stretch' or 'crop'; got {resize!r}")
    path = Path(path)
    try:
        with Image.open(path) as im:
            im = im.convert("L")
            if resize == "crop":
                w, h = im.size
                s = min(w, h)
                left, top = (w - s) // 2, (h - s) // 2
                im = im.crop((left, top, left + s, top + s))
            arr = np.array(im.resize((size, size), Image.Resampling.NEAREST), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"cannot read lesion mask {path}: {type(exc).__name__}: {exc}") from exc
    return arr > 127


def _atomic_save_npy(arr: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, arr, allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _load_npy(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception:  # noqa: BLE001 - missing or corrupt: recompute
        return None
    if arr.dtype != np.uint8 or arr.shape != shape:
        return None
    return arr


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _short_hash(*parts: Any, n: int = 16) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:n]


def _index_array(idx: Any, n: int, name: str = "idx") -> np.ndarray:
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


class _ImageTable:
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

    def _subset_fields(self, new: _ImageTable, idx: np.ndarray) -> None:
        new.image_ids = [self.image_ids[j] for j in idx]
        new.labels = self.labels[torch.as_tensor(idx, dtype=torch.long)]
        new.meta = self.meta.iloc[idx].reset_index(drop=True)
        new.artifacts = self.artifacts.iloc[idx].reset_index(drop=True)

    def subset(self, idx: Any) -> _ImageTable:
        """A dataset of the same type holding the items ``idx`` (int indices or a bool mask)."""
        idx = _index_array(idx, len(self))
        new = copy.copy(self)
        self._subset_fields(new, idx)
        return new

    def split(
        self, test_fraction: float = 0.25, seed: int = 0, stratify: bool = True, group: str | None = None
    ) -> tuple[_ImageTable, _ImageTable]:
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
        if (
            isinstance(test_fraction, bool)
            or not isinstance(test_fraction, (int, float))
            or not 0 < test_fraction < 1
        ):
            raise ValueError(f"test_fraction must be a number in (0,1); got {test_fraction!r}")
        rng = np.random.default_rng(seed)
        n = len(self)
        if group is not None:
            if group not in self.meta.columns:
                raise ValueError(f"group must be a column of meta {list(self.meta.columns)}; got {group!r}")
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
        else:
            labels = self.labels.numpy()
            pools = [np.flatnonzero(labels == c) for c in np.unique(labels)] if stratify else [np.arange(n)]
            test_idx = np.sort(
                np.concatenate([rng.permutation(p)[: int(round(test_fraction * len(p)))] for p in pools])
            )
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


class ISICDataset(_ImageTable):
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
            unknown = dx.isna() | dx.astype(str).str.strip().str.lower().isin(_UNKNOWN)
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
        found = _find_images(img_dir, table["image_id"].tolist())
        paths = table["image_id"].map(found)
        absent = paths.isna().to_numpy()
        if absent.any():
            ids = table.loc[absent, "image_id"].tolist()
            if missing == "error":
                raise ValueError(
                    f"{len(ids)} image id(s) of {self.source} have no .jpg/.jpeg/.png file under {img_dir}: "
                    f"{ids[:5]}{' ...' if len(ids) > 5 else ''} (pass missing='drop' to leave them out)"
                )
            self._drop("image file not found", len(ids))
            keep_rows = ~absent
            table, paths = table[keep_rows], paths[keep_rows]
            self.artifacts = self.artifacts[keep_rows].reset_index(drop=True)
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

    def _attach_masks(self, table: pd.DataFrame, folder: Path, missing: str) -> pd.DataFrame:
        if not folder.is_dir():
            raise FileNotFoundError(f"lesion masks folder not found: {folder}")
        found = _scan_images(folder, recursive=True)
        if not found:
            raise ValueError(f"no mask images ({', '.join(IMAGE_EXTENSIONS)}) found in {folder}")

        def lookup(i: str) -> str | None:
            for stem in (f"{i}_segmentation", f"{i}_Segmentation", i):
                if stem in found:
                    return str(found[stem])
            return None

        mp = table["image_id"].map(lookup)
        absent = mp.isna().to_numpy()
        if absent.any():
            ids = table.loc[absent, "image_id"].tolist()
            if missing == "error":
                raise ValueError(
                    f"{len(ids)} image(s) have no lesion mask (<id>_segmentation.png) under {folder}: "
                    f"{ids[:5]}{' ...' if len(ids) > 5 else ''} (pass missing='drop' to leave them out)"
                )
            self._drop("lesion mask not found", len(ids))
            self.artifacts = self.artifacts[~absent].reset_index(drop=True)
            table, mp = table[~absent].copy(), mp[~absent]
        table["mask_path"] = mp
        self.masks_dir = folder
        return table

    def _mask(self, i: int) -> np.ndarray:
        """Bool (size,size) lesion mask of item ``i`` (cached on disk like the images)."""
        src = Path(self.meta.at[i, "mask_path"])
        cp = None
        if self._cache_folder is not None:
            st = src.stat()
            token = _short_hash(str(src.resolve()), st.st_size, st.st_mtime_ns, n=12)
            cp = self._cache_folder / f"{self.image_ids[i]}-mask-{token}.npy"
            arr = _load_npy(cp, (self.size, self.size))
            if arr is not None:
                return arr.astype(bool)
        mask = load_isic_mask(src, self.size, self.resize)
        if cp is not None:
            _atomic_save_npy(mask.astype(np.uint8), cp)
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
            return _parse_archive_json(files), None, "isic_archive", self.root
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
        table, order = _parse_csv(path, lay)
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
        return _file_sha256(self.source)[:16]

    # -- images ----------------------------------------------------------------------------
    def _cache_path(self, i: int) -> Path | None:
        if self._cache_folder is None:
            return None
        p = Path(self.meta.at[i, "path"])
        st = p.stat()
        token = _short_hash(str(p.resolve()), st.st_size, st.st_mtime_ns, n=12)
        return self._cache_folder / f"{self.image_ids[i]}-{token}.npy"

    def _uint8(self, i: int) -> np.ndarray:
        cp = self._cache_path(i)
        if cp is not None:
            arr = _load_npy(cp, (self.size, self.size, 3))
            if arr is not None:
                return arr
        arr = load_isic_image(self.meta.at[i, "path"], self.size, self.resize)
        if cp is not None:
            _atomic_save_npy(arr, cp)
        return arr

    def prepare(self, progress: bool = True) -> ISICDataset:
        """Resize every photo not yet in the disk cache (once; a tqdm bar shows progress).

        Does nothing with ``cache=False``. Returns ``self``.
        """
        if self._cache_folder is None:
            return self
        todo = [i for i in range(len(self)) if _needs_compute(self._cache_path(i), self.size)]
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

    def _subset_fields(self, new: _ImageTable, idx: np.ndarray) -> None:
        super()._subset_fields(new, idx)
        new.dropped = dict(self.dropped)
        t = torch.as_tensor(idx, dtype=torch.long)
        new._images = None if self._images is None else self._images[t]
        new._masks = None if self._masks is None else self._masks[t]

    def cache_key(self) -> str:
        """A stable string identifying this data: root, ground-truth content hash, size, mode, ids."""
        ids = _short_hash(self.image_ids, self.labels.tolist(), n=12)
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
        return f"isic-{self.layout}-{mode}-{self.size}px-{self.resize}-n{len(self)}-{_short_hash(*parts)}"


def _needs_compute(path: Path | None, size: int) -> bool:
    """True when the cache entry at ``path`` is missing or too short to hold a (size,size,3) array.

    A cheap check for :meth:`ISICDataset.prepare`; a corrupt entry that passes it is still caught
    (and recomputed) when it is loaded.
    """
    if path is None:
        return False
    try:
        return os.path.getsize(path) < size * size * 3
    except OSError:
        return True


# ----------------------------------------------------------------------------------------------
# DermaMNIST
# ----------------------------------------------------------------------------------------------

# MedMNIST's label order for dermamnist (medmnist/info.py, INFO["dermamnist"]["label"]).
DERMAMNIST_CLASSES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
DERMAMNIST_DESCRIPTIONS = (
    "actinic keratoses and intraepithelial carcinoma",
    "basal cell carcinoma",
    "benign keratosis-like lesions",
    "dermatofibroma",
    "melanoma",
    "melanocytic nevi",
    "vascular lesions",
)
_DERMAMNIST_MALIGNANT = frozenset({"akiec", "bcc", "mel"})


class DermaMNIST(_ImageTable):
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

    def _subset_fields(self, new: _ImageTable, idx: np.ndarray) -> None:
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


# ----------------------------------------------------------------------------------------------
# download registry
# ----------------------------------------------------------------------------------------------

_S3 = "https://isic-challenge-data.s3.amazonaws.com"
_ZENODO = "https://zenodo.org/records/10519652/files"

#: name -> (url, checksum or None). A checksum is a sha256 hex digest, or ``"md5:<hex>"`` where the
#: publisher gives only MD5 (MedMNIST's info.py). ``None``: the publisher gives no checksum; the
#: file's sha256 is printed after download so it can be pinned.
REGISTRY: dict[str, tuple[str, str | None]] = {
    "dermamnist": (f"{_ZENODO}/dermamnist.npz?download=1", "md5:0744692d530f8e62ec473284d019b0c7"),
    "dermamnist_64": (f"{_ZENODO}/dermamnist_64.npz?download=1", "md5:b70a2f5635c6199aeaa28c31d7202e1f"),
    "dermamnist_128": (f"{_ZENODO}/dermamnist_128.npz?download=1", "md5:2defd784463fa5243564e855ed717de1"),
    "dermamnist_224": (f"{_ZENODO}/dermamnist_224.npz?download=1", "md5:8974907d8e169bef5f5b96bc506ae45d"),
    "isic_bias_annotations": (
        "https://raw.githubusercontent.com/alceubissoto/debiasing-skin/master/artefacts-annotation/isic_bias.csv",
        None,
    ),
    "isic2016_train_images": (f"{_S3}/2016/ISBI2016_ISIC_Part3_Training_Data.zip", None),
    "isic2016_train_labels": (f"{_S3}/2016/ISBI2016_ISIC_Part3_Training_GroundTruth.csv", None),
    "isic2017_train_images": (f"{_S3}/2017/ISIC-2017_Training_Data.zip", None),
    "isic2017_train_labels": (f"{_S3}/2017/ISIC-2017_Training_Part3_GroundTruth.csv", None),
    "isic2018_task12_train_images": (f"{_S3}/2018/ISIC2018_Task1-2_Training_Input.zip", None),
    "isic2018_task1_train_masks": (f"{_S3}/2018/ISIC2018_Task1_Training_GroundTruth.zip", None),
    "isic2018_task3_train_images": (f"{_S3}/2018/ISIC2018_Task3_Training_Input.zip", None),
    "isic2018_task3_train_labels": (f"{_S3}/2018/ISIC2018_Task3_Training_GroundTruth.zip", None),
    "isic2019_train_images": (f"{_S3}/2019/ISIC_2019_Training_Input.zip", None),
    "isic2019_train_labels": (f"{_S3}/2019/ISIC_2019_Training_GroundTruth.csv", None),
    "isic2020_train_images": (f"{_S3}/2020/ISIC_2020_Training_JPEG.zip", None),
    "isic2020_train_labels": (f"{_S3}/2020/ISIC_2020_Training_GroundTruth.csv", None),
}

#: Data that cannot be fetched by a plain URL: name -> what to do.
MANUAL: dict[str, str] = {
    "ham10000": (
        "HAM10000 (Tschandl et al. 2018) is on the Harvard Dataverse, https://doi.org/10.7910/DVN/DBW86T "
        "(accept the licence there). Download HAM10000_images_part_1.zip, HAM10000_images_part_2.zip and "
        "HAM10000_metadata.csv, unzip both image archives into one folder, put the CSV beside them, and "
        "load it with ISICDataset(folder). The same photos are the ISIC 2018 Task 3 training set "
        "(isic2018_task3_train_images)."
    ),
}


def _filename_from_url(url: str) -> str:
    return Path(urllib.request.url2pathname(url.split("?", 1)[0].rsplit("/", 1)[-1])).name


def _verify(path: Path, checksum: str | None) -> str:
    """Check ``path`` against ``checksum`` (sha256 hex or ``md5:<hex>``); return its sha256."""
    sha = _file_sha256(path)
    if checksum is None:
        return sha
    algo, _, want = checksum.partition(":") if ":" in checksum else ("sha256", "", checksum)
    if algo == "md5":
        h = hashlib.md5()  # noqa: S324 - the publisher's checksum, not a security measure
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        got = h.hexdigest()
    elif algo == "sha256":
        got = sha
    else:
        raise ValueError(
            f"unknown checksum algorithm {algo!r} in {checksum!r}; use sha256 hex or 'md5:<hex>'"
        )
    if got.lower() != want.lower():
        raise ValueError(f"checksum mismatch for {path}: expected {algo} {want}, got {got}")
    return sha


def _offline_message(name: str, url: str, dest: Path, reason: str) -> str:
    return (
        f"could not download {name!r} ({reason}).\n"
        f"Download it by hand from\n    {url}\n"
        f"and put the file at\n    {dest}\n"
        f"(folder from XAIBIAS_DATA or the user cache; zip archives may be unzipped in that folder)."
    )


def download_dataset(
    name: str,
    dest: str | os.PathLike | None = None,
    extract: bool = True,
    registry: dict[str, tuple[str, str | None]] | None = None,
    progress: bool = True,
) -> Path:
    """Fetch a registered file into ``xaibias.config.data_dir(name)`` and verify its checksum.

    An existing file that passes the check is not downloaded again. Zip archives are unzipped
    next to the file (``extract=True``; member paths are checked to stay inside the folder).

    Parameters
    ----------
    name : str
        A key of :data:`REGISTRY` (or of ``registry``).
    dest : path, optional
        Folder to download into (default ``data_dir(name)``).

    Returns
    -------
    pathlib.Path
        The folder holding the file (and its extracted content).

    Raises
    ------
    KeyError
        Unknown name (the message lists the known ones and the manual ones).
    ConnectionError
        Offline or the server refused; the message says what to download and where to put it.
    ValueError
        Checksum mismatch (the bad file is removed).
    """
    reg = REGISTRY if registry is None else registry
    if name not in reg:
        hint = f" {MANUAL[name]}" if name in MANUAL else ""
        raise KeyError(f"unknown dataset {name!r}; known: {sorted(reg)}; manual: {sorted(MANUAL)}.{hint}")
    url, checksum = reg[name]
    folder = Path(dest).expanduser() if dest is not None else config.data_dir(name)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / _filename_from_url(url)
    if target.is_file():
        try:
            _verify(target, checksum)
        except ValueError:
            target.unlink()
    if not target.is_file():
        fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".part", dir=folder)
        try:
            with os.fdopen(fd, "wb") as out:
                try:
                    with urllib.request.urlopen(url, timeout=60) as resp:  # noqa: S310 - registry URLs
                        total = int(resp.headers.get("Content-Length") or 0) or None
                        with tqdm(
                            total=total, unit="B", unit_scale=True, desc=name, disable=not progress
                        ) as bar:
                            for block in iter(lambda: resp.read(1 << 20), b""):
                                out.write(block)
                                bar.update(len(block))
                except (urllib.error.URLError, OSError, TimeoutError) as exc:
                    raise ConnectionError(_offline_message(name, url, target, str(exc))) from exc
            sha = _verify(Path(tmp), checksum)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        if checksum is None and progress:
            print(f"{name}: no published checksum; sha256 of the downloaded file is {sha}")
    if extract and target.suffix.lower() == ".zip":
        marker = folder / f".{target.name}.extracted"
        if not marker.is_file():
            with zipfile.ZipFile(target) as zf:
                base = folder.resolve()
                for member in zf.namelist():
                    dest_path = (folder / member).resolve()
                    if base not in dest_path.parents and dest_path != base:
                        raise ValueError(f"zip archive {target} has an unsafe member path {member!r}")
                zf.extractall(folder)
            marker.write_text(target.name)
    return folder
