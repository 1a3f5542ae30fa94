"""Input validation shared by the whole package: clear errors instead of silent NaNs.

Every public function that takes images, relevance maps or masks runs them through these helpers,
so the same mistake gets the same message everywhere. Each message names the argument, what was
expected and what was given.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["as_images", "as_relevance", "as_masks", "as_labels", "check_same_n", "describe", "model_device"]


def describe(x: Any) -> str:
    """A short description of an array-like for error messages: type, dtype and shape."""
    if isinstance(x, (torch.Tensor, np.ndarray)):
        return f"{type(x).__name__} of dtype {x.dtype} and shape {tuple(x.shape)}"
    return type(x).__name__


def _to_tensor(x: Any, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray):
        # torch shares the memory; a read-only array (a pandas view, a broadcast) is copied first
        return torch.from_numpy(np.ascontiguousarray(x) if x.flags.writeable else np.array(x))
    raise TypeError(f"{name} must be a torch.Tensor or numpy array; got {describe(x)}")


def _check_finite(t: torch.Tensor, name: str) -> None:
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        bad = (~torch.isfinite(t)).reshape(t.shape[0], -1).any(dim=1).nonzero().flatten()
        raise ValueError(
            f"{name} contains NaN or infinite values (in item(s) {bad[:10].tolist()}"
            f"{' ...' if len(bad) > 10 else ''} of {t.shape[0]})"
        )


def as_images(images: Any, name: str = "images", allow_single: bool = False) -> torch.Tensor:
    """Check and return images as a float tensor (N,3,H,W) with values in [0,1].

    ``allow_single`` also accepts one image (3,H,W) and adds the batch axis. Grey-scale (N,1,H,W)
    images are repeated to three channels. Integer images (uint8) are scaled by 1/255.
    """
    t = _to_tensor(images, name)
    if allow_single and t.ndim == 3:
        t = t.unsqueeze(0)
    if t.ndim != 4 or t.shape[1] not in (1, 3):
        raise ValueError(f"{name} must be (N,3,H,W) float in [0,1]; got {describe(t)}")
    if t.dtype == torch.uint8:
        t = t.float() / 255.0
    elif not t.is_floating_point():
        raise ValueError(f"{name} must be float (or uint8) images; got {describe(t)}")
    if t.shape[0] == 0:
        raise ValueError(f"{name} is empty (N=0); expected at least one image")
    _check_finite(t, name)
    lo, hi = float(t.min()), float(t.max())
    if lo < -1e-4 or hi > 1 + 1e-4:
        raise ValueError(f"{name} must have values in [0,1]; got range [{lo:.4g}, {hi:.4g}]")
    if t.shape[1] == 1:
        t = t.expand(-1, 3, -1, -1)
    return t


def as_relevance(relevance: Any, name: str = "relevance", allow_zero: bool = True) -> torch.Tensor:
    """Check and return relevance maps as a float tensor (N,H,W) (a (N,C,H,W) map is summed over C).

    NaN or infinite values raise. ``allow_zero=False`` raises for an all-zero map, naming it.
    """
    t = _to_tensor(relevance, name)
    if t.ndim == 4:
        t = t.sum(dim=1)
    if t.ndim != 3:
        raise ValueError(f"{name} must be (N,H,W) (or (N,C,H,W)) maps; got {describe(t)}")
    if not t.is_floating_point():
        t = t.float()
    if t.shape[0] == 0:
        raise ValueError(f"{name} is empty (N=0); expected at least one map")
    _check_finite(t, name)
    if not allow_zero:
        zero = (t.reshape(t.shape[0], -1).abs().amax(dim=1) == 0).nonzero().flatten()
        if len(zero):
            raise ValueError(f"{name} has all-zero map(s) at index {zero[:10].tolist()}")
    return t


def as_masks(masks: Any, like: torch.Tensor | None = None, name: str = "masks") -> torch.Tensor:
    """Check and return masks as bool (N,H,W), matching ``like`` (N,H,W) when given."""
    t = _to_tensor(masks, name)
    if t.dtype != torch.bool:
        raise ValueError(f"{name} must be bool (N,H,W); got {describe(t)}")
    if t.ndim != 3:
        raise ValueError(f"{name} must be bool (N,H,W); got {describe(t)}")
    if like is not None and tuple(t.shape) != tuple(like.shape[-3:] if like.ndim == 3 else (like.shape[0], *like.shape[-2:])):
        raise ValueError(
            f"{name} must be bool (N,H,W) matching relevance {tuple(like.shape)}; got {describe(t)}"
        )
    return t


def as_labels(labels: Any, n: int | None = None, name: str = "labels") -> torch.Tensor:
    """Check and return integer class labels as a long tensor (N,)."""
    if isinstance(labels, (list, tuple)):
        labels = np.asarray(labels)
    t = _to_tensor(labels, name)
    if t.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of class indices; got {describe(t)}")
    if t.is_floating_point():
        if not bool((t == t.round()).all()):
            raise ValueError(f"{name} must be integer class indices; got non-integer floats")
    t = t.long()
    if n is not None and len(t) != n:
        raise ValueError(f"{name} has {len(t)} entries but {n} were expected (one per image)")
    if len(t) and int(t.min()) < 0:
        raise ValueError(f"{name} must be non-negative class indices; got minimum {int(t.min())}")
    return t


def check_int(value: Any, name: str, minimum: int, what: str | None = None) -> int:
    """``value`` as an int >= ``minimum``; bools, floats and smaller ints raise a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        meaning = f" ({what})" if what else ""
        raise ValueError(f"{name} must be an int >= {minimum}{meaning}; got {value!r}")
    return int(value)


def check_same_n(**arrays: Any) -> int:
    """Raise unless all given arrays have the same first dimension; return it."""
    sizes = {k: len(v) for k, v in arrays.items()}
    if len(set(sizes.values())) > 1:
        parts = ", ".join(f"{k} has N={v}" for k, v in sizes.items())
        raise ValueError(f"mismatched N: {parts}; all must describe the same images")
    return next(iter(sizes.values()))


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of a model's first parameter (CPU for a model without parameters)."""
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")
