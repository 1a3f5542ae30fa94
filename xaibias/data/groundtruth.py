"""Ground-truth files of the ISIC challenges 2016-2020, HAM10000 and the ISIC archive: layout detection
and parsing into one table (``image_id``, ``diagnosis``, ``label_bm``, extra columns).

The layouts are listed in :data:`ISIC_LAYOUTS`; the benign/malignant reading of the diagnoses is
described in :mod:`xaibias.data.isic`.
"""

from __future__ import annotations

import csv as _csv
import json
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .annotations import ANNOTATION_COLUMNS, load_artifact_annotations, sniff_separator

__all__ = ["ISIC_LAYOUTS", "MALIGNANT_DIAGNOSES", "detect_layout"]

MALIGNANT_DIAGNOSES = frozenset({"MEL", "BCC", "SCC", "AKIEC", "AK"})
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
UNKNOWN_DIAGNOSES = {"", "unk", "unknown", "nan", "none", "other"}

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




def _read_header(path: Path) -> list[str]:
    sep = sniff_separator(path)
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


def _binary_column(series: pd.Series, path: Path, col: str) -> np.ndarray:
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
    hot = np.stack([_binary_column(df[c], path, c) for c in cols], axis=1)
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


def _is_malignant_text(value: Any) -> bool | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    v = str(value).strip().lower()
    if v in ("malignant", "1", "1.0", "true"):
        return True
    if v in ("benign", "0", "0.0", "false"):
        return False
    return None  # indeterminate, indeterminate/benign, ... : no label


def parse_ground_truth_csv(path: Path, layout: str) -> tuple[pd.DataFrame, tuple[str, ...] | None]:
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
        mal = [_is_malignant_text(v) for v in raw["benign_malignant"]]
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
        path, sep=sniff_separator(path), dtype={"image": str, "image_id": str, "image_name": str}
    )
    df.columns = [str(c).strip() for c in df.columns]
    _require(df, ISIC_LAYOUTS[layout], path, layout)
    if layout == "isic2017":
        mel = _binary_column(df["melanoma"], path, "melanoma")
        sk = _binary_column(df["seborrheic_keratosis"], path, "seborrheic_keratosis")
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
        df["malignant"] = _binary_column(df["target"], path, "target")
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


def parse_archive_json(files: Sequence[Path]) -> pd.DataFrame:
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
        mal = _is_malignant_text(bm)
        if mal is None:
            code = _text_to_code(dx)
            mal = None if code is None else code in MALIGNANT_DIAGNOSES
        diag = "unknown" if dx is None or str(dx).strip().lower() in UNKNOWN_DIAGNOSES else str(dx).strip()
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
