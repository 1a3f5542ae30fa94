"""Inputs of ``xaibias audit``: the data folder, the model file or zoo name, and their checks.

Every bad input raises :class:`AuditError` with a message that names the file or argument, what
was found and what was expected; nothing here writes under ``--out``.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from .. import config
from .._cache import content_hash
from ..data.annotations import ANNOTATION_COLUMNS, ANNOTATION_TO_ARTIFACT, load_artifact_annotations
from ..data.groundtruth import detect_layout
from ..data.images import IMAGE_EXTENSIONS, load_isic_image
from ..data.table import ImageTable

__all__ = ["AuditError", "AuditData", "load_data", "load_model", "DEMO_BIAS"]


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


# --------------------------------------------------------------------------------------------------
# a plain class_name/*.jpg tree


class FolderDataset(ImageTable):
    """Lazy dataset over ``root/<class name>/*.jpg|png`` (classes sorted by name).

    Images are decoded and resized one at a time with :func:`xaibias.data.images.load_isic_image`;
    ``annotations`` (a Bissoto et al. CSV) adds ``.artifacts`` by file stem, keeping only annotated
    images, as :class:`xaibias.data.ISICDataset` does.
    """

    def __init__(self, root: Path, size: int, annotations: Path | None = None) -> None:
        self.root, self.size, self.binary, self.dropped = Path(root), int(size), False, {}
        classes = sorted(d.name for d in self.root.iterdir() if d.is_dir() and not d.name.startswith("."))
        rows = []
        for c, name in enumerate(classes):
            for p in sorted((self.root / name).rglob("*")):
                if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS:
                    rows.append({"image_id": p.stem, "path": str(p), "diagnosis": name, "label": c})
        used = sorted({r["diagnosis"] for r in rows})
        if len(used) < 2:
            raise AuditError(
                f"DATA {self.root} has images in {len(used)} class folder(s) {used}; a class_name/*.jpg tree needs "
                f"at least two class folders with {', '.join(IMAGE_EXTENSIONS)} files"
            )
        lookup = {n: k for k, n in enumerate(used)}
        meta = pd.DataFrame(rows)
        meta["label"] = meta["diagnosis"].map(lookup)
        dup = meta["image_id"][meta["image_id"].duplicated()].unique()
        if len(dup):
            raise AuditError(f"DATA {self.root}: file name(s) {dup[:5].tolist()} occur in more than one class folder")
        self.artifacts = pd.DataFrame(index=range(len(meta)))
        if annotations is not None:
            ann = _read_annotations(annotations)
            has = meta["image_id"].isin(ann.index).to_numpy()
            if not has.any():
                raise AuditError(
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


# --------------------------------------------------------------------------------------------------
# finding out what DATA is


def _read_annotations(path: Path) -> pd.DataFrame:
    try:
        return load_artifact_annotations(path, rename=True)
    except (ValueError, FileNotFoundError, OSError, UnicodeDecodeError) as err:
        raise AuditError(f"cannot use --annotations {path}: {err}") from None


def _layouts(root: Path) -> list[tuple[Path, str]]:
    out = []
    for p in sorted(root.rglob("*.csv")):
        try:
            out.append((p, detect_layout(p)))
        except (ValueError, OSError, UnicodeDecodeError, StopIteration):
            continue
    return out


def _has_images(folder: Path) -> bool:
    return any(p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file() for p in folder.rglob("*"))


def _subset(ds: Any, n: int | None, seed: int) -> tuple[Any, np.ndarray | None]:
    """A stratified random subset of at most ``n`` items (labels kept in proportion)."""
    if n is None or n >= len(ds):
        return ds, None
    rng = np.random.default_rng([seed, 17])
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


def load_data(args: Any, seed: int, size: int, train_needed: bool) -> AuditData:
    """Read DATA (or make the demo set), split off a training part when a zoo model is trained."""
    from ..data import BIAS_PRESETS, DermaMNIST, ISICDataset, SyntheticLesions

    notes: list[str] = []
    if args.demo:
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
    if not path.exists():
        raise AuditError(f"DATA {path} does not exist")
    ann = Path(args.annotations).expanduser() if args.annotations else None
    if ann is not None and not ann.is_file():
        raise AuditError(f"--annotations {ann} does not exist or is not a file")

    npz = path if path.is_file() else None
    if path.is_dir() and any(path.glob("dermamnist*.npz")):
        npz = path
    if npz is not None:
        if path.is_file() and path.suffix.lower() != ".npz":
            raise AuditError(f"DATA {path} is a file but not a DermaMNIST .npz; give a folder or a .npz file")
        try:
            test = DermaMNIST(npz, split="test", size=size)
            train = DermaMNIST(npz, split="train", size=size) if train_needed else None
        except (ValueError, FileNotFoundError) as err:
            raise AuditError(f"cannot read DATA {path}: {err}") from None
        if train_needed:
            notes.append("the model was trained on the DermaMNIST train split and is audited on its test split")
        full = {"n": len(test), "class_names": list(test.class_names), "artifacts": _flags(test), "labels": test.labels}
        test, _ = _subset(test, args.max_images, seed)
        return AuditData(test, list(test.class_names), _flags(test), {}, None, train, "dermamnist", str(path), size,
                         test.cache_key(), notes, full)

    if not path.is_dir():
        raise AuditError(f"DATA {path} is neither a folder nor a .npz file")
    entries = [p for p in path.iterdir() if not p.name.startswith(".")]
    if not entries:
        raise AuditError(f"DATA folder {path} is empty; expected photographs with a ground-truth CSV, or "
                         f"class_name/*.jpg subfolders")
    layouts = _layouts(path)
    jsons = any(path.rglob("*.json"))
    if not _has_images(path):
        raise AuditError(f"DATA folder {path} holds no images ({', '.join(IMAGE_EXTENSIONS)}), searched recursively")

    if layouts or (jsons and not args.csv):
        csv = Path(args.csv).expanduser() if args.csv else None
        bissoto = [p for p, lay in layouts if lay == "bissoto"]
        truth = [p for p, lay in layouts if lay != "bissoto"]
        if ann is None and len(bissoto) == 1:
            ann = bissoto[0]
        if csv is None:
            if len(truth) > 1:
                raise AuditError(f"DATA {path} holds several ground-truth CSVs {[str(p) for p in truth]}; pick one "
                                 f"with --csv")
            csv = truth[0] if truth else (bissoto[0] if len(bissoto) == 1 else None)
            if csv is None and bissoto:
                raise AuditError(f"DATA {path} holds several artifact CSVs {[str(p) for p in bissoto]}; pick the "
                                 f"ground truth with --csv and the flags with --annotations")
        try:
            ds = ISICDataset(path, csv=csv, size=size, annotations=ann)
        except (ValueError, FileNotFoundError) as err:
            raise AuditError(f"cannot read DATA {path}: {err}") from None
        kind = "isic"
        source = f"{path} ({ds.layout} layout{', flags from ' + ann.name if ann is not None else ''})"
    else:
        subdirs = [p for p in entries if p.is_dir() and _has_images(p)]
        if not subdirs:
            raise AuditError(f"DATA {path} holds images but no ground truth: no CSV of a known ISIC layout, no "
                             f"ISIC-archive JSON and no class_name/ subfolders; put the images in one folder per "
                             f"class or add a ground-truth CSV")
        if ann is None:
            found = [p for p in sorted(path.glob("*.csv"))]
            ann = found[0] if len(found) == 1 else None
        ds = FolderDataset(path, size, annotations=ann)
        kind, source = "folder", f"{path} (class folders{', flags from ' + ann.name if ann is not None else ''})"
    full = {"n": len(ds), "class_names": list(ds.class_names), "artifacts": _flags(ds), "labels": ds.labels,
            "dropped": dict(ds.dropped)}
    train = None
    if train_needed:
        try:
            train, ds = ds.split(test_fraction=TEST_FRACTION, seed=seed)
        except ValueError as err:
            raise AuditError(f"cannot split DATA {path} into training and audit parts: {err}") from None
        notes.append("split")
    ds, _ = _subset(ds, args.max_images, seed)
    return AuditData(ds, list(ds.class_names), _flags(ds), {}, None, train, kind, source, size, ds.cache_key(),
                     notes, full)


# --------------------------------------------------------------------------------------------------
# the model


@dataclass
class ModelInfo:
    source: str  # "trained", "torchscript", "state_dict"
    name: str  # zoo name or file
    arch: str | None
    n_parameters: int
    hash: str


def _state_hash(model: nn.Module) -> str:
    return content_hash({k: v.reshape(-1) for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)})


def _unwrap_state(obj: Any) -> dict[str, torch.Tensor] | None:
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        return None
    return {(k[7:] if k.startswith("module.") else k): v for k, v in obj.items()}


def _mismatch(model: nn.Module, state: dict[str, torch.Tensor]) -> str | None:
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    parts = []
    if missing:
        parts.append(f"{len(missing)} key(s) missing from the file (e.g. {missing[:3]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s) (e.g. {unexpected[:3]})")
    if shapes:
        parts.append(f"{len(shapes)} tensor(s) of another shape (e.g. {shapes[:2]})")
    return "; ".join(parts) or None


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]


def _load_file(path: Path, arch: str | None, num_classes: int) -> tuple[nn.Module, ModelInfo]:
    from ..models import MODELS, make_model

    if not path.is_file():
        raise AuditError(f"--model {path} is not a file (and not a zoo name: {', '.join(MODELS)})")
    jit_err: Exception | None = None
    try:
        with warnings.catch_warnings():  # torch 2.9 marks TorchScript deprecated; it still loads
            warnings.simplefilter("ignore", FutureWarning)
            model = torch.jit.load(str(path), map_location="cpu")
    except Exception as err:  # noqa: BLE001 - any failure means "not TorchScript"
        jit_err = err
    if jit_err is None:
        if arch is not None:
            print(f"note: {path} is TorchScript; --arch {arch} is ignored")
        return model.eval(), ModelInfo("torchscript", path.name, None, _n_params(model), _state_hash(model))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as pt_err:  # noqa: BLE001
        raise AuditError(
            f"cannot read model file {path}: it is neither TorchScript (torch.jit.load said {_short(jit_err)}) "
            f"nor a state_dict that torch.load(weights_only=True) reads ({_short(pt_err)})"
        ) from None
    state = _unwrap_state(obj)
    if state is None:
        raise AuditError(f"model file {path} holds a {type(obj).__name__}, not a state_dict (a dict of tensors, "
                         f"optionally under 'state_dict'); save model.state_dict() or a TorchScript model")
    if arch is None:
        raise AuditError(f"model file {path} holds a state_dict (weights only); say which architecture it is "
                         f"with --arch NAME (one of {', '.join(MODELS)})")
    if arch not in MODELS:
        raise AuditError(f"--arch {arch!r} is not a zoo name; choose one of {', '.join(MODELS)}")
    model = make_model(arch, num_classes, pretrained=False)
    problem = _mismatch(model, state)
    if problem:
        raise AuditError(f"architecture/weights mismatch: {path} does not fit --arch {arch} with {num_classes} "
                         f"classes: {problem}")
    model.load_state_dict(state)
    return model.eval(), ModelInfo("state_dict", path.name, arch, _n_params(model), _state_hash(model))


def _n_params(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


class _KeyedData:
    """A training set whose cache key also names the local ImageNet weights it starts from."""

    def __init__(self, data: Any, extra: str) -> None:
        self.data, self.extra = data, extra

    @property
    def images(self) -> torch.Tensor:
        return self.data.images

    @property
    def labels(self) -> torch.Tensor:
        return self.data.labels

    def cache_key(self) -> str:
        from ..models import dataset_key

        return f"{dataset_key(self.data)}+{self.extra}"


def _hub_with_weights(name: str, weights: Path) -> tuple[str, str]:
    """A private torch hub folder where ``weights`` sits under the file name torchvision looks for.

    torchvision loads ``pretrained`` weights from ``<hub>/checkpoints/<file of the url>`` when that
    file exists (the hash is only checked on download), so the local file is linked there and
    ``make_model(name, pretrained=True)`` uses it without internet. Returns (hub folder, sha256).
    """
    import torchvision

    try:
        url = torchvision.models.get_model_weights(name).DEFAULT.url
    except Exception as err:  # noqa: BLE001
        raise AuditError(f"--weights: {name} has no torchvision ImageNet weights ({_short(err)})") from None
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001
        raise AuditError(f"cannot read --weights {weights}: {_short(err)}") from None
    state = _unwrap_state(state)
    if state is None:
        raise AuditError(f"--weights {weights} is not a state_dict (a dict of tensors)")
    reference = torchvision.models.get_model(name, weights=None)
    problem = _mismatch(reference, state)
    if problem:
        raise AuditError(f"architecture/weights mismatch: --weights {weights} is not an ImageNet checkpoint of {name}: "
                         f"{problem}")
    hub = Path(tempfile.mkdtemp(prefix="xaibias-hub-"))
    (hub / "checkpoints").mkdir()
    os.symlink(weights.resolve(), hub / "checkpoints" / Path(url).name)
    with open(weights, "rb") as fh:
        digest = hashlib.file_digest(fh, "sha256").hexdigest()[:16]
    return str(hub), digest


def load_model(args: Any, data: AuditData, seed: int, device: str) -> tuple[nn.Module, ModelInfo]:
    """The model to audit: a file (TorchScript or state_dict + --arch) or a zoo name trained on DATA."""
    from ..models import MODELS, fit_or_load

    spec = args.model or "small_vgg"
    n_classes = len(data.class_names)
    if spec not in MODELS:
        if args.weights:
            raise AuditError("--weights applies only to a zoo name trained on DATA, not to a model file")
        model, info = _load_file(Path(spec).expanduser(), args.arch, n_classes)
        return model.to(device), info
    if args.arch and args.arch != spec:
        raise AuditError(f"--arch {args.arch} contradicts --model {spec}; --arch is for state_dict files")
    pretrained = bool(args.pretrained or args.weights)
    if pretrained and spec.startswith("small_"):
        raise AuditError(f"{spec} has no ImageNet weights; drop --pretrained/--weights or choose a torchvision model")
    train = data.train
    assert train is not None
    epochs = args.epochs or config.pick(4, 10)
    old_hub = torch.hub.get_dir()
    hub = None
    if args.weights:
        wpath = Path(args.weights).expanduser()
        if not wpath.is_file():
            raise AuditError(f"--weights {wpath} does not exist")
        hub, digest = _hub_with_weights(spec, wpath)
        train = _KeyedData(train, f"imagenet-weights-{digest}")
        torch.hub.set_dir(hub)
    try:
        model = fit_or_load(spec, train, epochs=epochs, seed=seed, num_classes=n_classes, pretrained=pretrained,
                            device=device)
    except RuntimeError as err:
        if pretrained and "could not download" in str(err):
            raise AuditError(f"{err} Or pass --weights FILE with a local torchvision checkpoint.") from None
        raise
    finally:
        if hub is not None:
            torch.hub.set_dir(old_hub)
            import shutil

            shutil.rmtree(hub, ignore_errors=True)
    info = ModelInfo("trained", spec, spec, _n_params(model), _state_hash(model))
    return model, info


def probe(model: nn.Module, data: AuditData, info: ModelInfo, device: str) -> None:
    """Run two audit images through the model: a clear error for a wrong size or class count."""
    x0, _ = data.audit[0]
    x = torch.stack([x0, data.audit[min(1, len(data.audit) - 1)][0]]).to(device)
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as err:  # noqa: BLE001
        raise AuditError(f"model {info.name} fails on images of size {tuple(x0.shape)} from DATA (--size "
                         f"{data.size}): {_short(err)}; pass the --size the model was trained on") from None
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != 2:
        raise AuditError(f"model {info.name} returns {type(out).__name__} of shape "
                         f"{tuple(getattr(out, 'shape', ()))} for 2 images; expected class scores (2, classes)")
    if out.shape[1] != len(data.class_names):
        raise AuditError(f"model {info.name} gives {out.shape[1]} class scores but DATA has {len(data.class_names)} "
                         f"classes {data.class_names}; audit it on data with the classes it was trained for")


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
