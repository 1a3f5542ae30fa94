"""Atomic cache files: written to a temporary file and renamed, loaded with ``weights_only=True``.

A crash half way never leaves a truncated file under the final name, and a file that cannot be
read is reported as missing (the caller recomputes) instead of crashing.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

__all__ = ["atomic_write", "atomic_save", "safe_load", "content_hash", "weights_key", "source_hash", "file_sha256"]


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> Path:
    """Call ``write(fh)`` on a temporary file in ``path``'s folder, then ``os.replace`` it to ``path``.

    A crash half way leaves no file under the final name (the temporary file is removed).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    return atomic_write(path, lambda fh: torch.save(obj, fh))


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 hex digest of a file's bytes (read in blocks, never whole into memory)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def safe_load(path: str | os.PathLike) -> Any | None:
    """Load a file written by :func:`atomic_save` with ``weights_only=True``.

    Returns ``None`` when the file is missing or unreadable (truncated, corrupt, or holding
    objects that ``weights_only`` refuses), so the caller recomputes it.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any unreadable cache is treated as a miss
        return None


def _update(h: hashlib._Hash, obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"tensor{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(obj, np.ndarray):
        a = np.ascontiguousarray(obj)
        h.update(f"ndarray{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    elif isinstance(obj, dict):
        h.update(b"dict")
        for k in sorted(obj, key=str):
            _update(h, str(k))
            _update(h, obj[k])
    elif isinstance(obj, (list, tuple)):
        h.update(f"seq{len(obj)}".encode())
        for v in obj:
            _update(h, v)
    else:
        h.update(json.dumps(obj, sort_keys=True, default=repr).encode())


def content_hash(*objs: Any, length: int = 16) -> str:
    """A stable hex digest of tensors, arrays and JSON-able values (dict order does not matter)."""
    h = hashlib.sha256()
    for obj in objs:
        _update(h, obj)
    return h.hexdigest()[:length]


PACKAGE_ROOT = Path(__file__).resolve().parent


def weights_key(model: torch.nn.Module) -> str:
    """A content key of a model's weights: every tensor of its ``state_dict`` (values and shapes).

    Part of the cache key of anything made from a trained model (a correction, a fine-tuned copy),
    so a retrained base model never loads a result made from the old one.
    """
    state = model.state_dict()
    return content_hash({k: v.reshape(-1) for k, v in state.items() if torch.is_tensor(v)},
                        {k: list(v.shape) for k, v in state.items() if torch.is_tensor(v)})


def source_hash(*parts: str, root: str | os.PathLike | None = None, length: int = 16) -> str:
    """A digest of the source files that make a cached result, so the cache follows the code.

    Each part is a ``.py`` file or a folder (all ``.py`` files below it, in sorted order) relative
    to ``root`` (default: the :mod:`xaibias` package folder). Paths and bytes both enter the
    digest; a part that does not exist is an error rather than a silently constant key.
    """
    base = Path(root) if root is not None else PACKAGE_ROOT
    h = hashlib.sha256()
    for part in parts:
        path = base / part
        if path.is_dir():
            files = sorted(f for f in path.rglob("*.py") if "__pycache__" not in f.parts)
        elif path.is_file():
            files = [path]
        else:
            raise FileNotFoundError(f"source_hash: {path} is neither a file nor a folder")
        for f in files:
            h.update(f.relative_to(base).as_posix().encode() + b"\0")
            h.update(bytes.fromhex(file_sha256(f)))
    return h.hexdigest()[:length]
