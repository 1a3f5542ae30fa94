"""Run-time settings shared by every notebook: FAST mode, device, seeds and the cache folder.

This module is a leaf: it imports nothing from the rest of :mod:`xaibias`.

``FAST`` follows ``XAIBIAS_FAST`` when it is set (``1``/``true``/``yes``/``on`` or
``0``/``false``/``no``/``off``; it always wins). When it is unset, FAST is on under CI (``CI`` set to
anything non-empty) and on any machine without a CUDA GPU, so a student on a laptop or a CPU Colab
gets the few-minute setting without knowing the switch; with a GPU the paper-scale setting runs.

``SEED`` is ``XAIBIAS_SEED`` (default 0). Every notebook's settings cell reads it, so any notebook
can be rerun at another seed without editing it (``tools/check_margins.py`` does that).
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

__all__ = ["FAST", "SEED", "is_fast", "read_seed", "parse_seeds", "device", "seed_everything", "cache_dir", "data_dir", "pick"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def is_fast(environ: dict[str, str] | None = None, cuda: bool | None = None) -> bool:
    """Return whether FAST mode is on for the given environment (default: ``os.environ``).

    ``cuda`` says whether a CUDA GPU is present (default: ``torch.cuda.is_available()``); it only
    matters when neither ``XAIBIAS_FAST`` nor ``CI`` decides.
    """
    env = os.environ if environ is None else environ
    flag = env.get("XAIBIAS_FAST", "").strip().lower()
    if flag in _TRUE:
        return True
    if flag in _FALSE:
        return False
    if flag:
        raise ValueError(f"XAIBIAS_FAST must be one of 1/0/true/false/yes/no/on/off; got {flag!r}")
    if env.get("CI", "").strip():
        return True
    return not (torch.cuda.is_available() if cuda is None else cuda)


def read_seed(environ: dict[str, str] | None = None) -> int:
    """Return ``XAIBIAS_SEED`` as a non-negative int (default 0); anything else is a clear error."""
    env = os.environ if environ is None else environ
    raw = env.get("XAIBIAS_SEED", "").strip()
    if not raw:
        return 0
    try:
        seed = int(raw)
    except ValueError:
        seed = -1
    if seed < 0:
        raise ValueError(f"XAIBIAS_SEED must be a non-negative integer; got {raw!r}")
    return seed


FAST: bool = is_fast()
SEED: int = read_seed()

def parse_seeds(text: str) -> list[int]:
    """A list of seeds from ``"0-4"`` (-> [0, 1, 2, 3, 4]) or ``"0,3,7"``, as the tools' ``--seeds`` take it."""
    seeds: list[int] = []
    try:
        for part in str(text).split(","):
            part = part.strip()
            if "-" in part:
                a, b = part.split("-", 1)
                seeds.extend(range(int(a), int(b) + 1))
            elif part:
                seeds.append(int(part))
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 0:
        raise ValueError(f"seeds must name non-negative seeds such as 0-4 or 0,2,5; got {text!r}")
    return seeds


T = TypeVar("T")
U = TypeVar("U")


def pick(fast: T, full: U) -> T | U:
    """Return ``fast`` in FAST mode and ``full`` otherwise (reads ``FAST`` at call time)."""
    return fast if FAST else full


def device() -> str:
    """Return ``"cuda"`` when a CUDA GPU is usable, else ``"mps"`` on Apple silicon, else ``"cpu"``.

    ``XAIBIAS_DEVICE`` overrides the choice (for example ``XAIBIAS_DEVICE=cpu`` on a GPU machine).
    """
    forced = os.environ.get("XAIBIAS_DEVICE", "").strip()
    if forced:
        return forced
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA) and return a torch generator seeded the same.

    Parameters
    ----------
    seed : int
        A non-negative integer.
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int; got {seed!r}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return torch.Generator().manual_seed(seed)


def _user_cache_root() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    if xdg:
        return Path(xdg)
    if os.name == "nt":  # pragma: no cover - Windows only
        return Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    return Path.home() / ".cache"


def cache_dir(*parts: str) -> Path:
    """Return (and create) the cache folder, optionally a sub-folder of it.

    The root is ``XAIBIAS_CACHE`` when set, else ``<user cache dir>/xaibias``. Everything in it is
    safe to delete: models are retrained and resized images recomputed.
    """
    root = os.environ.get("XAIBIAS_CACHE", "").strip()
    path = Path(root).expanduser() if root else _user_cache_root() / "xaibias"
    path = path.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir(*parts: str) -> Path:
    """Return (and create) the folder for downloaded datasets.

    ``XAIBIAS_DATA`` when set, else ``<user cache dir>/xaibias/data``; never relative to the
    working directory.
    """
    root = os.environ.get("XAIBIAS_DATA", "").strip()
    path = Path(root).expanduser() if root else _user_cache_root() / "xaibias" / "data"
    path = path.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
