"""Names that :mod:`~xaibias.explain.attribution` and :mod:`~xaibias.explain.lrp_engine` share.

A leaf of the ``explain`` package: the LRP composite names both accept and the rule that turns a
``target`` argument into one class per image. Both are re-exported by ``attribution`` (and
``COMPOSITES`` by :mod:`xaibias.explain`), where the notebooks import them.
"""

from __future__ import annotations

from typing import Any

import torch

from .._checks import describe

__all__ = ["COMPOSITES", "resolve_target"]

# the zennit composite names attribute(method="lrp") takes; the prepared engine runs each of them
COMPOSITES: tuple[str, ...] = (
    "EpsilonPlus",
    "EpsilonPlusFlat",
    "EpsilonGammaBox",
    "EpsilonAlpha2Beta1",
    "EpsilonAlpha2Beta1Flat",
    "Epsilon",
)


def resolve_target(target: Any, n: int, logits: torch.Tensor | None = None) -> torch.Tensor:
    """Turn ``target`` (None, int, sequence, tensor) into a (n,) long tensor; None needs ``logits``."""
    if target is None:
        if logits is None:
            raise ValueError("target=None needs the model's output to pick the predicted class")
        return logits.argmax(dim=1)
    if isinstance(target, bool):
        raise ValueError(f"target must be None, an int or one int per image; got {target!r}")
    if isinstance(target, int):
        t = torch.full((n,), target, dtype=torch.long)
    else:
        t = torch.as_tensor(target)
        if t.ndim == 0:
            t = t.reshape(1).expand(n)
        if t.ndim != 1 or len(t) != n:
            raise ValueError(f"target must be None, an int or one int per image (N={n}); got {describe(t)}")
        if t.is_floating_point():
            raise ValueError(f"target must hold integer class indices; got {describe(t)}")
        t = t.long()
    if logits is not None:
        c = logits.shape[1]
        if int(t.min()) < 0 or int(t.max()) >= c:
            raise ValueError(f"target class out of range: the model has {c} outputs; got {t.unique().tolist()}")
    return t
