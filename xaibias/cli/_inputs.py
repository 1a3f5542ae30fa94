"""Inputs of ``xaibias audit``: the data folder, the model file or zoo name, and their checks.

Every bad input raises :class:`AuditError` with a message that names the file or argument, what
was found and what was expected; nothing here writes under ``--out``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .. import config
from ..data.folder import FolderDataset
from ..data.groundtruth import detect_layout
from ..data.images import IMAGE_EXTENSIONS

__all__ = ["AuditError", "AuditData", "load_data", "data_facts", "target_index", "DEMO_BIAS"]


class AuditError(Exception):
    """A bad input of ``xaibias audit`` (printed without a traceback, exit status 2)."""


#: The demo's planted bias: ISIC 2018 artifact rates, with the frame strongly tied to malignant.
DEMO_BIAS: dict[str, tuple[float, float]] = {"frame": (0.8, 0.1)}

#: Share of DATA held out for the audit when a zoo model is trained on the rest.
TEST_FRACTION = 0.3

_MALIGNANT_NAMES = ("malignant", "melanoma", "mel", "cancer", "positive")


@dataclass
class AuditData:
    """What the audit runs on (``audit``) and, when a zoo model is trained, what it trains on."""

    audit: Any  # len() and [i] -> (image (3,H,W) in [0,1], label)
    class_names: list[str]
    artifacts: pd.DataFrame  # bool flags per image of ``audit`` (may have no columns)
    masks: dict[str, torch.Tensor]  # full-resolution artifact masks per image of ``audit`` (demo only)
    lesion: torch.Tensor | None  # lesion masks of ``audit`` (demo only), for the painters
    train: Any | None  # training part when a zoo model is trained on DATA
    kind: str  # "demo", "isic", "dermamnist", "folder"
    source: str
    size: int
    key: str  # content key of ``audit`` (for the relevance cache)
    notes: list[str] = field(default_factory=list)  # plain sentences; "split" stands for the held-out split
    full: dict[str, Any] = field(default_factory=dict)  # facts about all of DATA (before split/subset)
    annotations: str | None = None  # the Bissoto et al. CSV the flags come from
    train_source: str | None = None  # --train FOLDER (or the DermaMNIST train split) when not a split of DATA


# --------------------------------------------------------------------------------------------------
# finding out what DATA is


def _layouts(root: Path) -> list[tuple[Path, str]]:
    out = []
    for p in sorted(root.rglob("*.csv")):
        try:
            out.append((p, detect_layout(p)))
        except (ValueError, OSError, UnicodeDecodeError, StopIteration):
            continue
    return out


#: The subset draw of :func:`_subset` uses the random stream ``default_rng([seed, _SUBSET_STREAM])``:
#: its own stream for the audit's seed, independent of every other draw made from that seed.
_SUBSET_STREAM = 17


def _has_images(folder: Path) -> bool:
    return any(p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file() for p in folder.rglob("*"))


def _subset(ds: Any, n: int | None, seed: int) -> tuple[Any, np.ndarray | None]:
    """A stratified random subset of at most ``n`` items (labels kept in proportion)."""
    if n is None or n >= len(ds):
        return ds, None
    rng = np.random.default_rng([seed, _SUBSET_STREAM])
    labels = ds.labels.numpy()
    pick = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        k = max(1, int(round(n * len(members) / len(labels))))
        pick.append(rng.permutation(members)[:k])
    idx = np.concatenate(pick)
    if len(idx) > n:
        idx = rng.permutation(idx)[:n]
    idx = np.sort(idx)
    return ds.subset(idx), idx


def _flags(ds: Any) -> pd.DataFrame:
    art = getattr(ds, "artifacts", None)
    if not isinstance(art, pd.DataFrame):
        return pd.DataFrame(index=range(len(ds)))
    return art.reset_index(drop=True).astype(bool)


def _read(path: Path, role: str, size: int, ann: Path | None, csv: Path | None, npz_split: str
          ) -> tuple[Any, str, str, Path | None]:
    """Read one image source (DATA or the --train folder): (dataset, kind, source text, annotation CSV used)."""
    from ..data import DermaMNIST, ISICDataset

    if not path.exists():
        raise AuditError(f"{role} {path} does not exist")
    npz = path if path.is_file() else None
    if path.is_dir() and any(path.glob("dermamnist*.npz")):
        npz = path
    if npz is not None:
        if path.is_file() and path.suffix.lower() != ".npz":
            raise AuditError(f"{role} {path} is a file but not a DermaMNIST .npz; give a folder or a .npz file")
        try:
            ds = DermaMNIST(npz, split=npz_split, size=size)
        except (ValueError, FileNotFoundError) as err:
            raise AuditError(f"cannot read {role} {path}: {err}") from None
        return ds, "dermamnist", f"{path} (DermaMNIST {npz_split} split)", None
    if not path.is_dir():
        raise AuditError(f"{role} {path} is neither a folder nor a .npz file")
    entries = [p for p in path.iterdir() if not p.name.startswith(".")]
    if not entries:
        raise AuditError(f"{role} folder {path} is empty; expected photographs with a ground-truth CSV, or "
                         f"class_name/*.jpg subfolders")
    layouts = _layouts(path)
    jsons = any(path.rglob("*.json"))
    if not _has_images(path):
        raise AuditError(f"{role} folder {path} holds no images ({', '.join(IMAGE_EXTENSIONS)}), searched recursively")
    if layouts or (jsons and csv is None):
        bissoto = [p for p, lay in layouts if lay == "bissoto"]
        truth = [p for p, lay in layouts if lay != "bissoto"]
        if ann is None and len(bissoto) == 1:
            ann = bissoto[0]
        if csv is None:
            if len(truth) > 1:
                raise AuditError(f"{role} {path} holds several ground-truth CSVs {[str(p) for p in truth]}; pick one "
                                 f"with --csv" + (" (for DATA) or keep one in the --train folder" if role != "DATA"
                                                  else ""))
            csv = truth[0] if truth else (bissoto[0] if len(bissoto) == 1 else None)
            if csv is None and bissoto:
                raise AuditError(f"{role} {path} holds several artifact CSVs {[str(p) for p in bissoto]}; pick the "
                                 f"ground truth with --csv and the flags with --annotations")
        try:
            ds = ISICDataset(path, csv=csv, size=size, annotations=ann)
        except (ValueError, FileNotFoundError) as err:
            raise AuditError(f"cannot read {role} {path}: {err}") from None
        return ds, "isic", f"{path} ({ds.layout} layout{', flags from ' + ann.name if ann is not None else ''})", ann
    subdirs = [p for p in entries if p.is_dir() and _has_images(p)]
    if not subdirs:
        raise AuditError(f"{role} {path} holds images but no ground truth: no CSV of a known ISIC layout, no "
                         f"ISIC-archive JSON and no class_name/ subfolders; put the images in one folder per "
                         f"class or add a ground-truth CSV")
    if ann is None:
        found = sorted(path.glob("*.csv"))
        ann = found[0] if len(found) == 1 else None
    try:
        ds = FolderDataset(path, size, annotations=ann)
    except ValueError as err:  # its messages name the folder or the CSV
        raise AuditError(str(err)) from None
    return ds, "folder", f"{path} (class folders{', flags from ' + ann.name if ann is not None else ''})", ann


def load_data(args: Any, seed: int, size: int, train_needed: bool) -> AuditData:
    """Read DATA (or make the demo set); the training part is ``--train FOLDER``, else a split of DATA."""
    from ..data import BIAS_PRESETS, SyntheticLesions

    notes: list[str] = []
    train_arg = getattr(args, "train", None)
    if train_arg and not train_needed:
        raise AuditError(f"--train {train_arg} trains a zoo model on that folder; --model {args.model} is a model "
                         f"file that is already trained (drop --train, or give a zoo name to --model)")
    if args.demo:
        if train_arg:
            raise AuditError("--train needs DATA to audit; --demo makes its own training and audit images")
        n = args.demo_images or config.pick(1600, 6000)
        bias = dict(BIAS_PRESETS["isic2018"], **DEMO_BIAS)
        try:
            ds = SyntheticLesions(n=n, size=size, bias=bias, seed=seed)
        except ValueError as err:
            raise AuditError(f"--demo cannot make its images: {err}") from None
        full = {"n": len(ds), "class_names": list(ds.class_names), "artifacts": _flags(ds), "labels": ds.labels}
        train, test = ds.split(test_fraction=TEST_FRACTION, seed=seed) if train_needed else (None, ds)
        if train_needed:
            notes.append("split")
        test, _ = _subset(test, args.max_images, seed)
        return AuditData(test, list(ds.class_names), _flags(test), {a: test.masks[a] for a in test.artifacts.columns},
                         test.masks["lesion"], train, "demo", "synthetic lesions (frame tied to malignant)", size,
                         test.cache_key(), notes, full)

    path = Path(args.data).expanduser()
    ann = Path(args.annotations).expanduser() if args.annotations else None
    if ann is not None and not ann.is_file():
        raise AuditError(f"--annotations {ann} does not exist or is not a file")
    csv = Path(args.csv).expanduser() if args.csv else None
    ds, kind, source, ann = _read(path, "DATA", size, ann, csv, npz_split="test")
    full = {"n": len(ds), "class_names": list(ds.class_names), "artifacts": _flags(ds), "labels": ds.labels,
            "dropped": dict(getattr(ds, "dropped", {}) or {})}
    train, train_source = None, None
    if train_arg:
        tpath = Path(train_arg).expanduser()
        if tpath.resolve() == path.resolve():
            raise AuditError(f"--train {tpath} is DATA itself; give another folder, or drop --train to train on a "
                             f"held-out part of DATA")
        train, _, train_source, _ = _read(tpath, "--train", size, None, None, npz_split="train")
        if [str(c) for c in train.class_names] != [str(c) for c in ds.class_names]:
            raise AuditError(f"--train {tpath} has classes {list(train.class_names)} but DATA {path} has "
                             f"{list(ds.class_names)}; both need the same classes in the same order")
        overlap = set(getattr(train, "image_ids", [])) & set(getattr(ds, "image_ids", []))
        if overlap:
            raise AuditError(f"--train {tpath} and DATA {path} share {len(overlap)} image(s) (e.g. "
                             f"{sorted(overlap)[:3]}); the audited images must be unseen in training")
        notes.append("the model was trained on the --train folder (named in the training-set line below) and is "
                     "audited on all of DATA, which it has not seen")
    elif train_needed and kind == "dermamnist":
        train, _, train_source, _ = _read(path, "DATA", size, None, None, npz_split="train")
        notes.append("the model was trained on the DermaMNIST train split and is audited on its test split")
    elif train_needed:
        try:
            train, ds = ds.split(test_fraction=TEST_FRACTION, seed=seed)
        except ValueError as err:
            raise AuditError(f"cannot split DATA {path} into training and audit parts: {err}") from None
        notes.append("split")
    ds, _ = _subset(ds, args.max_images, seed)
    return AuditData(ds, list(ds.class_names), _flags(ds), {}, None, train, kind, source, size, ds.cache_key(),
                     notes, full, annotations=str(ann) if ann is not None else None, train_source=train_source)


def _f(x: Any, digits: int = 6) -> float | None:
    if x is None:
        return None
    v = float(x)
    return None if not np.isfinite(v) else round(v, digits)


def _rates_by_class(flags: pd.DataFrame, labels: np.ndarray, class_names: list) -> dict:
    return {a: {str(c): _f(flags[a].to_numpy(bool)[labels == i].mean()) if (labels == i).any() else None
                for i, c in enumerate(class_names)} for a in flags.columns}


def data_facts(data: AuditData) -> dict:
    """What report.json says about the data: sizes, classes, artifact rates, names, the training set."""
    from ..data.annotations import ARTIFACT_NAMES

    full_flags = data.full["artifacts"]
    full_labels = data.full["labels"].numpy()
    counts = np.bincount(data.audit.labels.numpy(), minlength=len(data.class_names))
    out = {
        "kind": data.kind, "source": data.source, "n_total": int(data.full["n"]), "n_audited": int(len(data.audit)),
        "n_train": int(len(data.train)) if data.train is not None else None,
        "class_names": [str(c) for c in data.class_names],
        "class_counts": {str(c): int(k) for c, k in zip(data.class_names, counts)},
        "artifact_rates": {a: _f(full_flags[a].mean()) for a in full_flags.columns},
        "artifact_rates_by_class": _rates_by_class(full_flags, full_labels, data.full["class_names"]),
        "notes": [n for n in data.notes if n != "split"],
        "held_out": {"train_share": _f(1 - TEST_FRACTION), "audit_share": TEST_FRACTION} if "split" in data.notes
        else None,
        "dropped": {str(k): int(v) for k, v in data.full.get("dropped", {}).items()},
        "annotations": data.annotations,
        "artifact_names": None,
        "train": None,
    }
    if data.annotations is not None:  # flags from a Bissoto et al. CSV: say which name is which
        cols = set(full_flags.columns)
        out["artifact_names"] = [dict(r) for r in ARTIFACT_NAMES if r["column"] in cols or r["annotation"] is None]
    if data.train is not None and data.train_source is not None:
        tflags, tlabels = _flags(data.train), data.train.labels.numpy()
        tcounts = np.bincount(tlabels, minlength=len(data.class_names))
        out["train"] = {"source": data.train_source, "n": int(len(data.train)),
                        "class_counts": {str(c): int(k) for c, k in zip(data.class_names, tcounts)},
                        "artifact_rates_by_class": _rates_by_class(tflags, tlabels, data.class_names)}
    return out


def target_index(data: AuditData, name: str | None) -> int:
    """Index of the class that insertion tracks and relevance explains."""
    names = [str(c) for c in data.class_names]
    if name is not None:
        if name not in names:
            raise AuditError(f"--target-class {name!r} is not a class of DATA; classes: {names}")
        return names.index(name)
    for cand in _MALIGNANT_NAMES:
        for i, n in enumerate(names):
            if n.lower() == cand:
                return i
    return 1 if len(names) > 1 else 0
