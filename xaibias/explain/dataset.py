"""Attribution for whole datasets: stream images through :func:`attribute` into a resumable HDF5 file.

:func:`attribute_dataset` reads a dataset (anything with ``__len__`` and ``__getitem__`` returning
``(image, label)``) in chunks through a :class:`torch.utils.data.DataLoader`, explains each chunk on
the model's device and appends the result to an HDF5 file, one chunk at a time. Nothing of size N
beyond a few index vectors is kept in memory, so 30,000 ISIC photos need no more memory than 32.

File layout
-----------
The datasets follow ViRelAy's database specification for attribution files (the same layout that
:func:`xaibias.analysis.export.write_attribution_h5` writes and CoRelAy's ``virelay_analysis.py`` example
produces), so a finished file is a valid ``attributions`` source of a ViRelAy project:

``attribution``  float32 (N, C, h, w)
    Relevance; C = 1 for pooled maps (``pool="sum"``/``"l2"``, the default), C = 3 with
    ``pool=None``. ViRelAy reads one sample as a (C, h, w) array and needs the channel axis, so
    (N, H, W) maps are stored as (N, 1, H, W); ``f["attribution"][:, 0]`` gives them back.
``prediction``   float32 (N, classes)
    The model's outputs (logits, before any softmax), as ViRelAy's "original output of the model".
``label``        uint32 (N,)
    True class index from the dataset.
``index``        uint32 (N,)
    Position of each row in the dataset (0..N-1 in a full file; the rows a shard holds in a shard).
``done``         bool (chunks,)
    One flag per chunk of ``batch_size`` rows, set after the chunk's rows are written and flushed.
    A rerun skips every chunk whose flag is set; attrs ``complete`` is True once all are.

File attributes record the settings (method, target strategy, attribute keyword arguments,
``batch_size``, ``downsize``, the model's class and a hash of its weights, the dataset length and
the shard). A rerun whose settings differ from the file's stops with an error instead of mixing
two runs; ``resume=False`` starts the file afresh.

Sharding
--------
``shard=(rank, world)`` (or ``"auto"``: taken from an initialised ``torch.distributed`` process
group, else from the ``RANK``/``WORLD_SIZE`` variables ``torchrun`` sets) gives rank r the chunks
k with ``k % world == r`` and writes them to ``<out stem>.shard<r>of<world>.h5``;
:func:`merge_shards` joins the shard files into one file equal to a single-process run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .._cache import content_hash
from .._checks import as_images, describe, model_device
from .attribution import attribute, check_method, check_options

__all__ = ["attribute_dataset", "merge_shards", "shard_path"]

_FORMAT = "xaibias-attribution"
_VERSION = 1
# settings that must agree between a file and a run that resumes it (or shards that are merged)
_SETTINGS = ("format", "version", "n_total", "method", "attribution_strategy", "attribute_kwargs",
             "batch_size", "downsize", "model", "model_hash")


# --------------------------------------------------------------------------------------------------
# argument checks


def _check_dataset(dataset: Any) -> int:
    if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
        raise TypeError(f"dataset must have __len__ and __getitem__ returning (image, label); got {type(dataset).__name__}")
    n = len(dataset)
    if n == 0:
        raise ValueError("dataset is empty (len(dataset) == 0); nothing to attribute")
    return n


def _split_item(item: Any, i: int) -> tuple[torch.Tensor, int]:
    if not isinstance(item, (tuple, list)) or len(item) < 2:
        raise ValueError(f"dataset[{i}] must return (image, label); got {type(item).__name__}")
    image, label = item[0], item[1]
    if isinstance(image, np.ndarray):
        image = torch.from_numpy(np.ascontiguousarray(image))
    if not isinstance(image, torch.Tensor) or image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"dataset[{i}] image must be a (3,H,W) tensor in [0,1]; got {describe(image)}")
    lab = torch.as_tensor(label)
    if lab.numel() != 1 or lab.is_floating_point() or int(lab) < 0:
        raise ValueError(f"dataset[{i}] label must be one non-negative integer class index; got {label!r}")
    return image, int(lab)


def _collate(items: list[Any]) -> tuple[torch.Tensor, torch.Tensor]:
    pairs = [_split_item(it, -1) for it in items]
    shapes = {tuple(p[0].shape) for p in pairs}
    if len(shapes) > 1:
        raise ValueError(f"dataset images differ in size within one chunk: {sorted(shapes)}; resize them to one size")
    return torch.stack([p[0] for p in pairs]).float(), torch.tensor([p[1] for p in pairs], dtype=torch.long)


def _check_downsize(downsize: Any, hw: tuple[int, int]) -> tuple[int, int] | None:
    if downsize is None:
        return None
    if isinstance(downsize, bool):
        raise ValueError(f"downsize must be None, an int or (height, width); got {downsize!r}")
    size = (downsize, downsize) if isinstance(downsize, (int, np.integer)) else tuple(downsize)
    if len(size) != 2 or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in size):
        raise ValueError(f"downsize must be None, an int or (height, width); got {downsize!r}")
    if min(size) < 1 or size[0] > hw[0] or size[1] > hw[1]:
        raise ValueError(f"downsize must be between 1 and the image size {hw}; got {downsize!r} "
                         f"(it shrinks maps by area averaging, it does not enlarge them)")
    return (int(size[0]), int(size[1]))


def _resolve_shard(shard: Any) -> tuple[int, int] | None:
    if shard is None:
        return None
    if shard == "auto":
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            rank, world = dist.get_rank(), dist.get_world_size()
        elif "RANK" in os.environ and "WORLD_SIZE" in os.environ:
            rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        else:
            raise ValueError("shard='auto' needs an initialised torch.distributed process group or the RANK and "
                             "WORLD_SIZE environment variables (torchrun sets them)")
    else:
        try:
            rank, world = shard
        except (TypeError, ValueError):
            raise ValueError(f"shard must be None, 'auto' or (rank, world); got {shard!r}") from None
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (rank, world)) or world < 1 \
            or not 0 <= rank < world:
        raise ValueError(f"shard must be (rank, world) with 0 <= rank < world; got {shard!r}")
    return int(rank), int(world)


def shard_path(out: str | os.PathLike, rank: int, world: int) -> Path:
    """File that rank ``rank`` of ``world`` writes for ``out``: ``relevance.h5`` -> ``relevance.shard0of2.h5``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.shard{rank}of{world}{out.suffix or '.h5'}")


def _strategy(target: Any) -> str:
    # ViRelAy's names for the attribution strategy: "model" (prediction), "true" (label), or a class
    if target is None:
        return "model"
    if isinstance(target, str):
        if target != "label":
            raise ValueError(f"target must be None (predicted class), 'label' (true class) or an int; got {target!r}")
        return "true"
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool) and target >= 0:
        return str(int(target))
    raise ValueError(f"target must be None (predicted class), 'label' (true class) or an int; got {target!r}")


def _kwargs_key(kwargs: dict[str, Any]) -> str:
    return json.dumps(kwargs, sort_keys=True, default=lambda o: type(o).__name__)


def _model_hash(model: nn.Module) -> str:
    # 0-d buffers (BatchNorm's num_batches_tracked) become 1-d so that every tensor can be hashed
    return content_hash({k: v.reshape(-1) for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)})


# --------------------------------------------------------------------------------------------------
# the file


# The CoRelAy/ViRelAy attribution layout: one definition for attribute_dataset, the shard merge and
# xaibias.analysis.export.write_attribution_h5.
ATTRIBUTION_DTYPES: dict[str, type] = {"attribution": np.float32, "prediction": np.float32, "label": np.uint32,
                                       "index": np.uint32}


def attribution_dataset(fh: h5py.File, name: str, shape: tuple[int, ...] | None = None, data: Any = None) -> h5py.Dataset:
    """Create dataset ``name`` of the attribution layout (its dtype; one map per chunk for ``attribution``)."""
    dtype = ATTRIBUTION_DTYPES[name]
    if data is not None:
        data = np.asarray(data).astype(dtype, copy=False)
        shape = data.shape
    chunks = (1, *shape[1:]) if name == "attribution" else None
    return fh.create_dataset(name, shape=shape, dtype=dtype, data=data, chunks=chunks)


def _open_file(path: Path, settings: dict[str, Any], n_rows: int, n_chunks: int, resume: bool) -> h5py.File:
    if path.exists() and resume:
        try:
            fh = h5py.File(path, "a")
        except OSError as exc:
            raise ValueError(f"cannot resume from {path}: the file is not readable HDF5 ({exc}); delete it or "
                             f"pass resume=False") from None
        if fh.attrs.get("format") != _FORMAT:
            fh.close()
            raise ValueError(f"{path} exists but was not written by attribute_dataset (no format={_FORMAT!r} "
                             f"attribute); choose another out= or pass resume=False to overwrite it")
        for key in (*_SETTINGS, "shard"):
            have = fh.attrs.get(key)
            have = have.item() if isinstance(have, np.generic) else have
            want = settings[key]
            if str(have) != str(want):
                fh.close()
                raise ValueError(f"{path} was written with {key}={have!r} but this run has {key}={want!r}; "
                                 f"pass resume=False to start afresh or choose another out=")
        return fh
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    fh = h5py.File(path, "w")
    for key, value in settings.items():
        fh.attrs[key] = value
    fh.attrs["complete"] = False
    fh.create_dataset("done", data=np.zeros(n_chunks, dtype=bool))
    attribution_dataset(fh, "index", (n_rows,))
    attribution_dataset(fh, "label", (n_rows,))
    fh.flush()
    return fh


def _ensure_datasets(fh: h5py.File, n_rows: int, maps: torch.Tensor, logits: torch.Tensor) -> None:
    shape = (n_rows, *maps.shape[1:])
    if "attribution" not in fh:
        attribution_dataset(fh, "attribution", shape)
        attribution_dataset(fh, "prediction", (n_rows, logits.shape[1]))
    elif fh["attribution"].shape != shape or fh["prediction"].shape[1] != logits.shape[1]:
        raise ValueError(f"{fh.filename} holds attribution {fh['attribution'].shape} and prediction "
                         f"{fh['prediction'].shape} but this run gives {shape} and {tuple(logits.shape)} per chunk; "
                         f"pass resume=False to start afresh")


def attribute_dataset(
    model: nn.Module,
    dataset: Any,
    method: str = "lrp",
    out: str | os.PathLike = "relevance.h5",
    batch_size: int = 32,
    num_workers: int = 0,
    downsize: int | tuple[int, int] | None = None,
    resume: bool = True,
    progress: bool = True,
    shard: tuple[int, int] | str | None = None,
    target: int | str | None = None,
    **attribute_kwargs: Any,
) -> Path:
    """Explain every image of ``dataset`` and write the maps to HDF5, chunk by chunk, resumably.

    Parameters
    ----------
    model : nn.Module
        Classifier on its device (CUDA is used when the model is there); used in eval mode.
    dataset : sequence-like
        ``len(dataset)`` and ``dataset[i] -> (image (3,H,W) in [0,1], label int)``, e.g.
        :class:`xaibias.data.SyntheticLesions` or the lazy :class:`xaibias.data.ISICDataset`.
        Extra items after the label are ignored.
    method : str
        One of :data:`xaibias.explain.METHODS`.
    out : path
        The HDF5 file (see the module docstring for its layout). With ``shard`` the rank's own file
        :func:`shard_path` ``(out, rank, world)`` is written instead.
    batch_size : int
        Images per chunk: one DataLoader batch, one :func:`attribute` call, one ``done`` flag.
    num_workers : int
        DataLoader worker processes for reading images (0 reads in this process).
    downsize : int or (int, int), optional
        Shrink every map to this size by area averaging before writing (e.g. 32 for SpRAy).
    resume : bool
        Continue an existing file written with the same settings, skipping finished chunks
        (default). False deletes the file and starts afresh.
    progress : bool
        Show a tqdm progress bar over chunks.
    shard : (rank, world), "auto" or None
        Process only every ``world``-th chunk starting at ``rank`` (see :func:`merge_shards`).
    target : None, "label" or int
        Class to explain: the predicted class (None), the true label, or one class for all.
    **attribute_kwargs
        Passed to :func:`xaibias.explain.attribute` (``composite``, ``canonizers``, ``pool``,
        ``steps``, ``layer``, ...); an option the method does not take raises a ``TypeError``
        before any file is written.

    Returns
    -------
    Path
        The file written (the shard file when sharded).

    Notes
    -----
    The model's outputs come from a separate no-grad forward pass per chunk (they are stored as
    ``prediction`` and give the predicted class), which adds one forward pass to each chunk.
    """
    n = _check_dataset(dataset)
    check_method(method)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
    if isinstance(num_workers, bool) or not isinstance(num_workers, (int, np.integer)) or num_workers < 0:
        raise ValueError(f"num_workers must be an int >= 0; got {num_workers!r}")
    for bad in ("images", "batch_size", "progress"):
        if bad in attribute_kwargs:
            raise ValueError(f"{bad!r} is not an attribute() keyword here; attribute_dataset sets it")
    check_options(method, attribute_kwargs)  # before any file is written
    strategy = _strategy(target)
    sh = _resolve_shard(shard)
    rank, world = sh if sh is not None else (0, 1)
    first, _ = _split_item(dataset[0], 0)
    size = _check_downsize(downsize, tuple(first.shape[-2:]))

    n_chunks_total = -(-n // batch_size)
    my_chunks = list(range(rank, n_chunks_total, world))
    bounds = [(k * batch_size, min(n, (k + 1) * batch_size)) for k in my_chunks]
    n_rows = sum(hi - lo for lo, hi in bounds)
    path = shard_path(out, rank, world) if sh is not None else Path(out)
    settings: dict[str, Any] = {
        "format": _FORMAT,
        "version": _VERSION,
        "n_total": n,
        "method": method,
        "attribution_strategy": strategy,
        "attribute_kwargs": _kwargs_key(attribute_kwargs),
        "batch_size": int(batch_size),
        "downsize": "none" if size is None else f"{size[0]}x{size[1]}",
        "model": type(model).__name__,
        "model_hash": _model_hash(model),
        "shard": "none" if sh is None else f"{rank}/{world}",
        "prediction_kind": "logits",
    }
    if not my_chunks:  # more ranks than chunks: an empty, complete shard
        fh = _open_file(path, settings, 0, 0, resume)
        fh.attrs["complete"] = True
        fh.close()
        return path

    fh = _open_file(path, settings, n_rows, len(my_chunks), resume)
    dev = model_device(model)
    was_training = model.training
    model.eval()
    try:
        done = fh["done"][:]
        pending = [j for j in range(len(my_chunks)) if not done[j]]
        offsets = np.concatenate([[0], np.cumsum([hi - lo for lo, hi in bounds])]).astype(np.int64)
        loader = DataLoader(dataset, batch_sampler=[list(range(*bounds[j])) for j in pending],
                            num_workers=int(num_workers), collate_fn=_collate,
                            pin_memory=dev.type == "cuda" and num_workers > 0)
        bar = tqdm(total=len(my_chunks), initial=len(my_chunks) - len(pending), disable=not progress,
                   desc=f"attribute_dataset {method}" + ("" if sh is None else f" [shard {rank}/{world}]"),
                   unit="chunk")
        for j, (x, y) in zip(pending, loader):
            x = as_images(x, "dataset images").to(dev, non_blocking=True)
            with torch.no_grad():
                logits = model(x).float()
            if strategy == "model":
                t = logits.argmax(dim=1).cpu()
            elif strategy == "true":
                t = y
            else:
                t = int(strategy)
            rel = attribute(model, x, target=t, method=method, batch_size=len(x), progress=False, **attribute_kwargs)
            maps = rel.unsqueeze(1) if rel.ndim == 3 else rel
            if size is not None and tuple(maps.shape[-2:]) != size:
                maps = F.adaptive_avg_pool2d(maps, size)
            _ensure_datasets(fh, n_rows, maps, logits)
            lo, hi = int(offsets[j]), int(offsets[j + 1])
            g_lo = bounds[j][0]
            fh["attribution"][lo:hi] = maps.numpy().astype(np.float32, copy=False)
            fh["prediction"][lo:hi] = logits.cpu().numpy()
            fh["label"][lo:hi] = y.numpy().astype(np.uint32)
            fh["index"][lo:hi] = np.arange(g_lo, g_lo + (hi - lo), dtype=np.uint32)
            fh.flush()
            fh["done"][j] = True
            fh.flush()
            bar.update(1)
        bar.close()
        fh.attrs["complete"] = bool(fh["done"][:].all())
    finally:
        model.train(was_training)
        fh.close()
    return path


def merge_shards(paths: Sequence[str | os.PathLike], out: str | os.PathLike, chunk_rows: int = 4096) -> Path:
    """Join the shard files of one sharded :func:`attribute_dataset` run into one file.

    The result has the rows in dataset order and the same datasets and settings as a
    single-process run. Rows are copied ``chunk_rows`` at a time, so memory stays flat.

    Parameters
    ----------
    paths : sequence of paths
        One complete shard file per rank (any order).
    out : path
        The merged file (written to a temporary name and renamed when complete).
    chunk_rows : int
        Rows copied per step.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("paths is empty; pass the shard files written by attribute_dataset(shard=...)")
    files: dict[int, h5py.File] = {}
    try:
        world = None
        ref: h5py.File | None = None
        for p in paths:
            if not p.is_file():
                raise FileNotFoundError(f"shard file {p} does not exist")
            fh = h5py.File(p, "r")
            shard = fh.attrs.get("shard")
            if fh.attrs.get("format") != _FORMAT or not isinstance(shard, str) or "/" not in shard:
                fh.close()
                raise ValueError(f"{p} is not a shard written by attribute_dataset(shard=...) (shard attribute {shard!r})")
            rank, w = (int(v) for v in shard.split("/"))
            if rank in files:
                fh.close()
                raise ValueError(f"two files for shard rank {rank}: {files[rank].filename} and {p}")
            files[rank] = fh
            world = w if world is None else world
            if w != world:
                raise ValueError(f"{p} belongs to a run with {w} shards but {paths[0]} to one with {world}")
            if not bool(fh.attrs.get("complete")):
                raise ValueError(f"shard {p} is incomplete ({int(fh['done'][:].sum())}/{len(fh['done'])} chunks "
                                 f"done); rerun that rank (it resumes) before merging")
            if ref is None:
                ref = fh
            for key in _SETTINGS:
                if str(fh.attrs.get(key)) != str(ref.attrs.get(key)):
                    raise ValueError(f"{p} has {key}={fh.attrs.get(key)!r} but {ref.filename} has "
                                     f"{ref.attrs.get(key)!r}; shards of different runs cannot be merged")
        assert ref is not None and world is not None
        missing = sorted(set(range(world)) - set(files))
        if missing:
            raise ValueError(f"missing shard rank(s) {missing} of {world}; got files for {sorted(files)}")
        n = int(ref.attrs["n_total"])
        shaped = [f for f in files.values() if "attribution" in f]
        if not shaped:
            raise ValueError("no shard holds any attribution rows")
        a_shape = shaped[0]["attribution"].shape[1:]
        p_cols = shaped[0]["prediction"].shape[1]
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        n_chunks = -(-n // int(ref.attrs["batch_size"]))
        with h5py.File(tmp, "w") as dst:
            for key, value in ref.attrs.items():
                dst.attrs[key] = value
            dst.attrs["shard"] = "none"
            dst.attrs["complete"] = True
            dst.attrs["merged_from"] = world
            dst.create_dataset("done", data=np.ones(n_chunks, dtype=bool))
            att = attribution_dataset(dst, "attribution", (n, *a_shape))
            pred = attribution_dataset(dst, "prediction", (n, p_cols))
            lab = attribution_dataset(dst, "label", (n,))
            idx = attribution_dataset(dst, "index", (n,))
            seen = np.zeros(n, dtype=bool)
            for fh in shaped:
                rows = len(fh["index"])
                for lo in range(0, rows, chunk_rows):
                    hi = min(rows, lo + chunk_rows)
                    where = fh["index"][lo:hi].astype(np.int64)
                    # a shard's rows are runs of consecutive dataset positions: write each run as a slice
                    breaks = np.flatnonzero(np.diff(where) != 1) + 1
                    for a, b in zip(np.r_[0, breaks], np.r_[breaks, len(where)]):
                        g0, g1 = int(where[a]), int(where[b - 1]) + 1
                        att[g0:g1] = fh["attribution"][lo + a:lo + b]
                        pred[g0:g1] = fh["prediction"][lo + a:lo + b]
                        lab[g0:g1] = fh["label"][lo + a:lo + b]
                        idx[g0:g1] = where[a:b]
                    seen[where] = True
            if not seen.all():
                raise ValueError(f"the shards cover {int(seen.sum())} of {n} rows; they do not belong together")
        os.replace(tmp, out)
    finally:
        for fh in files.values():
            fh.close()
        tmp_path = Path(out).with_name(Path(out).name + ".tmp")
        if tmp_path.exists():
            tmp_path.unlink()
    return Path(out)
