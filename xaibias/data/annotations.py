"""Artifact annotations of Bissoto, Valle & Avila 2020 ("Debiasing Skin Lesion Datasets and Models? Not So
Fast", ISIC workshop at CVPR 2020): the semicolon CSV ``;image;dark_corner;hair;gel_border;gel_bubble;
ruler;ink;patches;label;label_string`` read into a DataFrame with bool flag columns.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "load_artifact_annotations", "ANNOTATION_COLUMNS", "ANNOTATION_TO_ARTIFACT", "ARTIFACT_NAMES",
    "artifact_names", "annotation_name", "resolve_artifact",
]


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


#: One row per artifact: the column of the Bissoto et al. CSV (``annotation``), the flag column that
#: xaibias datasets use (``column``: ``dataset.artifacts[column]``), the painter that inserts it
#: (``painter``, a name of :data:`xaibias.data.ARTIFACTS`, or None) and what it is. Reports and
#: messages print the annotation's name beside the painter's, so "frame" is never a riddle.
ARTIFACT_NAMES: tuple[dict[str, str | None], ...] = (
    {"annotation": "dark_corner", "column": "frame", "painter": "frame",
     "description": "dark corners / microscope vignette (painted as a black circular frame)"},
    {"annotation": "hair", "column": "hair", "painter": "hair", "description": "hair crossing the image"},
    {"annotation": "gel_border", "column": "gel_border", "painter": None,
     "description": "edge of the immersion-gel drop (no painter)"},
    {"annotation": "gel_bubble", "column": "bubble", "painter": "bubble", "description": "air bubbles in the gel"},
    {"annotation": "ruler", "column": "ruler", "painter": "ruler", "description": "ruler or scale marks"},
    {"annotation": "ink", "column": "ink", "painter": "ink", "description": "surgical-marker ink"},
    {"annotation": "patches", "column": "patch", "painter": "patch",
     "description": "coloured round stickers / calibration patches"},
    {"annotation": None, "column": "red_circle", "painter": "red_circle",
     "description": "red ring sticker of the GEBI insertion experiment (not annotated by Bissoto et al.)"},
)


def artifact_names() -> pd.DataFrame:
    """:data:`ARTIFACT_NAMES` as a DataFrame (columns annotation, column, painter, description)."""
    return pd.DataFrame(list(ARTIFACT_NAMES), columns=["annotation", "column", "painter", "description"])


def annotation_name(name: str) -> str | None:
    """The Bissoto et al. column for a flag column or painter name (``"frame"`` -> ``"dark_corner"``)."""
    for row in ARTIFACT_NAMES:
        if name in (row["column"], row["painter"], row["annotation"]):
            return row["annotation"]
    return None


def resolve_artifact(name: str, columns: list[str] | pd.Index, owner: str = "the dataset") -> str:
    """The flag column among ``columns`` meant by ``name`` (an annotation, column or painter name).

    ``"dark_corner"``, ``"frame"`` both find the column ``frame`` of an :class:`ISICDataset` or a
    :class:`SyntheticLesions`; a column named as the annotation (``dark_corner`` in a raw
    annotation table) is found too. Raises a ValueError listing the columns otherwise.
    """
    cols = [str(c) for c in columns]
    if name in cols:
        return name
    for row in ARTIFACT_NAMES:
        if name in (row["column"], row["painter"], row["annotation"]):
            for cand in (row["column"], row["annotation"], row["painter"]):
                if cand is not None and cand in cols:
                    return cand
    known = ", ".join(f"{r['annotation']} = {r['column']}" for r in ARTIFACT_NAMES if r["annotation"])
    raise ValueError(f"artifact {name!r} is not a flag column of {owner}; its columns are {cols} "
                     f"(annotation names are accepted too: {known})")


def sniff_separator(path: Path) -> str:
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
    sep = sniff_separator(path)
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
