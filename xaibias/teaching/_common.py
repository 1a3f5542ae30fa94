"""What every exercise check shares: the three outcomes (right, not yet, not answered) and input checks."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
import torch

__all__ = ["NotYet", "isolated_rng", "pending", "wrong", "right", "scalar", "close", "as_bool", "as_float", "map_and_mask"]


class NotYet(AssertionError):
    """A wrong answer to an exercise; the message says what is wrong and how to look for it."""


def pending(what: str, *answers: Any) -> bool:
    """True (after printing a gentle note) when any answer is still ``...`` or ``None``."""
    if any(a is Ellipsis or a is None for a in answers):
        print(f"Not answered yet: {what}. Replace the `...` in the solution cell above with your code and run "
              "both cells again.")
        return True
    return False


def wrong(message: str) -> None:
    raise NotYet("Not yet: " + message)


def right(message: str) -> None:
    print("Right: " + message)


def scalar(x: Any, name: str) -> float:
    """A single float from a number, 0-d/1-element tensor or array; NotYet otherwise."""
    if isinstance(x, (torch.Tensor, np.ndarray)):
        size = x.size if isinstance(x, np.ndarray) else x.numel()
        if size != 1:
            wrong(f"`{name}` should be a single number; got an array of shape {tuple(x.shape)}. "
                   "Did you forget to take the mean (or pick one element)?")
        x = x.reshape(-1)[0].item()
    if isinstance(x, (bool, np.bool_)):
        wrong(f"`{name}` should be a number; got the boolean {x!r}.")
    try:
        v = float(x)
    except (TypeError, ValueError):
        wrong(f"`{name}` should be a number; got {type(x).__name__} {x!r}.")
    if math.isnan(v):
        wrong(f"`{name}` is NaN: somewhere a 0/0 or a mean over an empty selection slipped in.")
    return v


def close(a: float, b: float, tol: float) -> bool:
    return abs(a - b) <= tol


def as_bool(x: Any, name: str) -> np.ndarray:
    if isinstance(x, pd.Series):
        x = x.to_numpy()
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.dtype != bool:
        if not np.isin(a, (0, 1)).all():
            raise ValueError(f"{name} must be bool flags (or 0/1); got values {np.unique(a)[:5]}")
        a = a.astype(bool)
    return a.reshape(-1)


def as_float(x: Any, name: str) -> np.ndarray:
    if isinstance(x, pd.Series):
        x = x.to_numpy()
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    a = np.asarray(x, dtype=float).reshape(-1)
    if not len(a):
        raise ValueError(f"{name} is empty")
    return a


@contextmanager
def isolated_rng() -> Iterator[None]:
    """Run a block (an exercise that trains a model) without changing the global random state.

    Saves and restores the state of Python's ``random``, NumPy's global generator and torch's CPU
    generator (and CUDA's, when present), so the cells after an exercise compute exactly what they
    would without it.
    """
    py, npy, cpu = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        random.setstate(py)
        np.random.set_state(npy)
        torch.random.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


def map_and_mask(relevance: Any, mask: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """One (H,W) map as float64 and its (H,W) bool mask; a ValueError names the shapes otherwise."""
    R = torch.as_tensor(relevance, dtype=torch.float64).detach()
    m = torch.as_tensor(mask).bool()
    if R.ndim != 2 or R.shape != m.shape:
        raise ValueError(f"relevance and mask must be one (H,W) map each; got {tuple(R.shape)} and {tuple(m.shape)}")
    return R, m
