"""Competitive gradient x input (Gupta & Arora 2019), registered as ``attribute(method="competitive_gxi")``.

Gupta and Arora (2019), *A Simple Saliency Method That Passes the Sanity Checks*, let the class
labels compete for every input feature. Gradient x input of class k at feature i is

    c[k, i] = x[i] * d logit_k / d x[i].

A feature keeps its score in the map of the target class t only when t wins the competition for it;
everywhere else the map is 0:

- positive part: kept where ``c[t, i] > 0`` and ``c[t, i] >= c[k, i]`` for every class k (t's
  positive contribution is the largest of all classes);
- negative part (``sign="both"``, the default): kept where ``c[t, i] < 0`` and
  ``c[t, i] <= c[k, i]`` for every k (t's negative contribution is the most negative);
- ``sign="positive"`` keeps only the positive part (evidence *for* t, as used for global
  saliency).

Ties keep the feature for every tied class. A feature is an input element (channel, row, column) by
default, and the (B,3,H,W) result is pooled over channels by :func:`~xaibias.explain.attribute`;
``per_pixel=True`` first sums the contributions over channels and lets the classes compete for
whole pixels, returning (B,H,W).

For a linear model ``logit = W x + b`` the gradient is ``W`` itself, so the method equals the closed
form ``x * W[t]`` masked by the rule above (tested). :func:`competitive_completeness` checks the
completeness of gradient x input (its sum equals ``logit(x) - logit(0)`` for linear models and
bias-free ReLU networks) and how much of it the competition keeps.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch
from torch import nn

from .._checks import as_images, model_device
from .attribution import register_method, resolve_target

__all__ = ["class_contributions", "competitive_completeness"]

_SIGNS = ("both", "positive")


def class_contributions(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient x input of every class: ``(contributions (B,K,C,H,W), logits (B,K))``.

    One backward pass per class; the model should be in eval mode (images must not influence each
    other, as with batch norm in training mode).
    """
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        out = model(x)
        if out.ndim != 2:
            raise ValueError(f"model must return logits (B,K); got shape {tuple(out.shape)}")
        grads = []
        for k in range(out.shape[1]):
            (g,) = torch.autograd.grad(out[:, k].sum(), x, retain_graph=k < out.shape[1] - 1)
            grads.append(g)
    contrib = torch.stack(grads, dim=1) * x.detach()[:, None]
    return contrib.detach(), out.detach()


def _compete(contrib: torch.Tensor, target: torch.Tensor, sign: str) -> torch.Tensor:
    """Apply the competition to (B,K,...) contributions for (B,) targets."""
    idx = target.to(contrib.device).view(-1, *([1] * (contrib.ndim - 1)))
    idx = idx.expand(-1, 1, *contrib.shape[2:])
    ct = contrib.gather(1, idx).squeeze(1)
    keep = (ct > 0) & (ct >= contrib.amax(dim=1))
    if sign == "both":
        keep |= (ct < 0) & (ct <= contrib.amin(dim=1))
    return torch.where(keep, ct, torch.zeros_like(ct))


def _model_dtype(model: nn.Module) -> torch.dtype:
    p = next(model.parameters(), None)
    return p.dtype if p is not None and p.is_floating_point() else torch.float32


def _check_sign(sign: str) -> None:
    if sign not in _SIGNS:
        raise ValueError(f"sign must be one of {_SIGNS}; got {sign!r}")


@register_method("competitive_gxi")
def _competitive_gxi(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, sign: str = "both", per_pixel: bool = False
) -> torch.Tensor:
    _check_sign(sign)
    contrib, logits = class_contributions(model, x)
    t = resolve_target(target, len(x), logits)
    if per_pixel:
        contrib = contrib.sum(dim=2)
    return _compete(contrib, t, sign)


def _prepare(model: nn.Module, images: Any, target: Any, per_pixel: bool):
    """Images on the model's device, per-class contributions (summed over channels when
    ``per_pixel``), logits and the resolved (B,) target."""
    x = as_images(images, allow_single=True).to(model_device(model), _model_dtype(model))
    tgt = None if target is None else resolve_target(target, len(x))
    contrib, logits = class_contributions(model, x)
    t = resolve_target(tgt, len(x), logits)
    if per_pixel:
        contrib = contrib.sum(dim=2)
    return x, contrib, logits, t


def competitive_completeness(
    model: nn.Module, images: Any, target: Any = None, sign: str = "positive", per_pixel: bool = False
) -> pd.DataFrame:
    """Empirical completeness of gradient x input and the share kept by the competition.

    For each image and target class t:

    - ``logit`` and ``logit_at_zero``: ``f_t(x)`` and ``f_t(0)`` (black image);
    - ``gxi_sum``: the sum of plain gradient x input for t;
    - ``completeness_gap``: ``(logit - logit_at_zero) - gxi_sum``; exactly 0 (up to float error)
      for linear models and bias-free ReLU networks, non-zero when biases and non-linearities
      move the linear region;
    - ``cgi_sum``: the sum of the competitive map;
    - ``kept_share``: the share of t's positive gradient x input mass (``sum of c[t] > 0``) that
      the competition keeps (1 when t wins every feature it supports);
    - ``partition_gap``: ``sum_k sum_i cgi^+[k, i] - sum_i max(0, max_k c[k, i])``: with
      ``sign="positive"`` the positive competitive maps of all classes split the per-feature
      winning evidence between them, so the gap is 0 when there are no exact ties.

    Returns
    -------
    pandas.DataFrame
        One row per image with the columns above.
    """
    _check_sign(sign)
    x, contrib, logits, t = _prepare(model, images, target, per_pixel)
    with torch.no_grad():
        zero_logits = model(torch.zeros_like(x))
    k = contrib.shape[1]
    flat = contrib.flatten(2)  # (B,K,F)
    ct = flat[torch.arange(len(x)), t.to(flat.device)]
    cgi = _compete(contrib, t, sign).flatten(1)
    all_pos = torch.stack(
        [_compete(contrib, torch.full_like(t, j), "positive").flatten(1) for j in range(k)], dim=1
    )
    winning = flat.amax(dim=1).clamp_min(0)
    lt = logits.gather(1, t.to(logits.device)[:, None]).squeeze(1)
    lz = zero_logits.gather(1, t.to(logits.device)[:, None]).squeeze(1)
    pos_mass = ct.clamp_min(0).sum(1)
    kept = cgi.clamp_min(0).sum(1)
    df = pd.DataFrame(
        {
            "target": t.cpu().numpy(),
            "logit": lt.double().cpu().numpy(),
            "logit_at_zero": lz.double().cpu().numpy(),
            "gxi_sum": ct.sum(1).double().cpu().numpy(),
            "cgi_sum": cgi.sum(1).double().cpu().numpy(),
            "kept_share": torch.where(pos_mass > 0, kept / pos_mass.clamp_min(1e-30), torch.zeros_like(kept))
            .double()
            .cpu()
            .numpy(),
            "partition_gap": (all_pos.sum(dim=(1, 2)) - winning.sum(1)).double().cpu().numpy(),
        }
    )
    df["completeness_gap"] = (df["logit"] - df["logit_at_zero"]) - df["gxi_sum"]
    return df
