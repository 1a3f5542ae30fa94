"""The training penalties of ``"rrr"``, ``"rrr_lrp"`` and ``"attention"`` and their loss hooks.

Each penalty is a differentiable loss term on a batch and the artifact masks of its images:
:func:`rrr_penalty` on the input gradient (Ross et al. 2017), :func:`rrr_lrp_penalty` on the LRP map
of the prepared engine, :func:`attention_penalty` on a learned attention gate. The ``make_*_hook``
functions turn them into the ``loss_hook(model, x, y, idx)`` of :func:`xaibias.models.train`.
What each one changes and costs is in :mod:`xaibias.mitigation.methods`, which trains with them;
every name here is also importable from there.
"""

from __future__ import annotations

import numbers
import warnings
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._checks import as_labels, as_masks, describe
from ..explain import COMPOSITES, prepare_lrp
from ..explain.lrp_engine import LRPEngineUnsupported

__all__ = ["rrr_penalty", "make_rrr_hook", "rrr_lrp_penalty", "attention_penalty", "make_rrr_lrp_hook"]

_GRAD_OF = ("log_probs", "target_logit")


# --------------------------------------------------------------------------------------------------
# rrr


def _check_rrr_args(lam: Any, grad_of: Any) -> None:
    if grad_of not in _GRAD_OF:
        raise ValueError(f"grad_of must be one of {_GRAD_OF}; got {grad_of!r}")
    if isinstance(lam, bool) or not isinstance(lam, numbers.Real) or not float(lam) >= 0:
        raise ValueError(f"lam must be a number >= 0; got {lam!r}")


def rrr_penalty(
    model: nn.Module,
    x: torch.Tensor,
    masks: torch.Tensor,
    y: torch.Tensor | None = None,
    lam: float = 1.0,
    grad_of: str = "log_probs",
    create_graph: bool = True,
    per_image: bool = False,
) -> torch.Tensor:
    """The "right for the right reasons" penalty: ``lam`` times the squared input gradient in the masks.

    Parameters
    ----------
    model : the classifier (its mode is left as it is)
    x : float (B,3,H,W) inputs on the model's device
    masks : bool (B,H,W); where the model must not look (broadcast over the colour channels)
    y : long (B,) true classes, needed for ``grad_of="target_logit"``
    lam : weight (>= 0)
    grad_of : ``"log_probs"`` (sum of the log-probabilities over classes, Ross et al. 2017) or
        ``"target_logit"`` (the logit of the true class)
    create_graph : keep the graph of the gradient so the penalty can be back-propagated (training)
    per_image : return one value per image, ``lam * sum((mask_i * dF/dx_i)^2)`` (B,), 0 for an empty
        mask, instead of their mean (in eval mode the images do not interact, so the mean of these
        is the scalar penalty)

    Returns
    -------
    A scalar tensor: ``lam * sum((mask * dF/dx)^2) / B``; with ``per_image`` a (B,) tensor.
    """
    _check_rrr_args(lam, grad_of)
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
        raise ValueError(f"x must be a float tensor (B,3,H,W); got {describe(x)}")
    m = as_masks(masks, name="masks")
    if tuple(m.shape) != (x.shape[0], *x.shape[-2:]):
        raise ValueError(f"masks must be bool (B,H,W) = {(x.shape[0], *x.shape[-2:])} matching x; got {describe(masks)}")
    if grad_of == "target_logit" and y is None:
        raise ValueError("grad_of='target_logit' needs the true classes y")
    m = m.to(x.device)
    keep = m.flatten(1).any(1)
    if not bool(keep.any()):
        return x.new_zeros((x.shape[0],) if per_image else ())
    xi = x[keep].detach().clone().requires_grad_(True)
    with torch.enable_grad():
        logits = model(xi)
        if grad_of == "log_probs":
            out = F.log_softmax(logits, dim=1).sum()
        else:
            yk = y.to(x.device)[keep]
            out = logits.gather(1, yk[:, None]).sum()
        (grad,) = torch.autograd.grad(out, xi, create_graph=create_graph)
    inside = grad * m[keep][:, None].to(grad.dtype)
    if per_image:
        out = x.new_zeros(x.shape[0], dtype=inside.dtype)
        out[keep] = float(lam) * inside.pow(2).flatten(1).sum(1)
        return out
    return float(lam) * inside.pow(2).sum() / x.shape[0]


def make_rrr_hook(
    masks: torch.Tensor, lam: float = 10.0, grad_of: str = "log_probs"
) -> Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """Build ``loss_hook(model, x, y, idx)`` for :func:`xaibias.models.train` from training-set masks.

    ``masks`` is bool (N,H,W) over the whole training set; ``idx`` selects the batch's rows.
    """
    m = as_masks(masks, name="masks").cpu()
    _check_rrr_args(lam, grad_of)

    def loss_hook(model: nn.Module, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return rrr_penalty(model, x, m[idx.cpu()], y=y, lam=lam, grad_of=grad_of)

    loss_hook.lam = lam  # type: ignore[attr-defined]
    loss_hook.grad_of = grad_of  # type: ignore[attr-defined]
    return loss_hook


# --------------------------------------------------------------------------------------------------
# rrr_lrp and attention


def _check_lam(lam: Any, name: str = "lam") -> float:
    if isinstance(lam, bool) or not isinstance(lam, numbers.Real) or not float(lam) >= 0 or not np.isfinite(lam):
        raise ValueError(f"{name} must be a finite number >= 0; got {lam!r}")
    return float(lam)


def _check_composite(composite: Any) -> str:
    if composite not in COMPOSITES:
        raise ValueError(f"composite must be one of the prepared LRP engine's {COMPOSITES}; got {composite!r}")
    return composite


def _batch_masks(x: Any, masks: Any, what: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
        raise ValueError(f"{what}: x must be a float tensor (B,3,H,W); got {describe(x)}")
    m = as_masks(masks, name="masks")
    if tuple(m.shape) != (x.shape[0], *x.shape[-2:]):
        raise ValueError(f"{what}: masks must be bool (B,H,W) = {(x.shape[0], *x.shape[-2:])} matching x; "
                         f"got {describe(masks)}")
    return m.to(x.device)


def rrr_lrp_penalty(
    model: nn.Module,
    x: torch.Tensor,
    masks: torch.Tensor,
    y: torch.Tensor | None = None,
    lam: float = 1.0,
    composite: str = "EpsilonPlusFlat",
    engine: Any = None,
    create_graph: bool = True,
    per_image: bool = False,
) -> torch.Tensor:
    """The LRP "right for the right reasons" penalty: ``lam`` times the squared-relevance share in the masks.

    Parameters
    ----------
    model : a classifier the prepared LRP engine supports (its mode is left as it is)
    x : float (B,3,H,W) inputs on the model's device
    masks : bool (B,H,W); where the model must not look
    y : long (B,) classes whose relevance is penalised (the true classes in training); None: the
        predicted classes
    lam : weight (>= 0)
    composite : one of :data:`xaibias.explain.COMPOSITES`
    engine : a :class:`~xaibias.explain.lrp_engine.PreparedLRP` of ``model`` to reuse (default:
        prepared here, once per call)
    create_graph : keep the map's graph so the penalty can be back-propagated to the parameters
    per_image : return one value per image, ``lam * sum_{mask_i} R_i^2 / sum R_i^2`` (B,), 0 for an
        empty mask (with ``lam=1`` and ``create_graph=False``: the share a model puts on the mask)

    Returns
    -------
    A scalar tensor: ``lam * sum_i (sum_{mask_i} R_i^2 / sum R_i^2) / B`` over the images ``i`` whose
    mask is not empty (the others add 0); with ``per_image`` a (B,) tensor. A map without relevance
    (all zero) adds 0.

    Raises
    ------
    ValueError
        On malformed inputs; :class:`~xaibias.explain.lrp_engine.LRPEngineUnsupported` when the
        engine cannot explain ``model`` (the message names the layer).
    """
    lam = _check_lam(lam)
    composite = _check_composite(composite)
    m = _batch_masks(x, masks, "rrr_lrp_penalty")
    if y is not None:
        y = as_labels(y, n=len(x)).to(x.device)
    keep = m.flatten(1).any(1)
    if not bool(keep.any()):
        return x.new_zeros((x.shape[0],) if per_image else ())
    if engine is None:
        engine = prepare_lrp(model, composite)
    elif engine.model is not model or engine.composite != composite:
        raise ValueError(f"engine explains {engine.model!r:.40} with {engine.composite!r}, not this model with "
                         f"{composite!r}; pass engine=None or prepare_lrp(model, composite)")
    target = None if y is None else y[keep]
    R = engine(x[keep], target=target, create_graph=create_graph)
    r2 = R.pow(2).flatten(1)
    inside = (r2 * m[keep].flatten(1).to(r2.dtype)).sum(1)
    share = inside / r2.sum(1).clamp_min(torch.finfo(r2.dtype).tiny)
    if per_image:
        return x.new_zeros(x.shape[0]).masked_scatter(keep, lam * share)
    return lam * share.sum() / x.shape[0]


def attention_penalty(model: nn.Module, x: torch.Tensor, masks: torch.Tensor, lam: float = 1.0) -> torch.Tensor:
    """``lam`` times the attention gate's mean value over the masked area, summed over images, over B.

    ``model.attention(x, upsample=False)`` must return the gate (B,h,w) in [0,1]; each mask is
    averaged down to (h,w) (the share of each cell that the mask covers), and the mean gate over the
    artifact area is ``sum(gate * cover) / sum(cover)``. Images with an empty mask add 0.
    """
    lam = _check_lam(lam)
    m = _batch_masks(x, masks, "attention_penalty")
    att = getattr(model, "attention", None)
    if not callable(att):
        raise ValueError(f"the 'attention' penalty needs a model with an attention(x) method (e.g. "
                         f"'small_vgg_attention'); {type(model).__name__} has none")
    keep = m.flatten(1).any(1)
    if not bool(keep.any()):
        return x.new_zeros(())
    gate = att(x[keep], upsample=False)
    cover = F.adaptive_avg_pool2d(m[keep][:, None].to(gate.dtype), gate.shape[-2:])[:, 0]
    mean = (gate * cover).flatten(1).sum(1) / cover.flatten(1).sum(1)
    return lam * mean.sum() / x.shape[0]


def make_rrr_lrp_hook(masks: torch.Tensor, lam: float = 10.0, composite: str = "EpsilonPlusFlat",
                      attention_lam: float | None = None) -> Callable:
    """``loss_hook(model, x, y, idx)`` for ``"rrr_lrp"`` (and ``"attention"`` with ``attention_lam``).

    The engine is prepared once per trained model. When it cannot explain the model, the hook warns
    once and uses :func:`rrr_penalty` (``grad_of="log_probs"``, the same ``lam``) instead.
    """
    m = as_masks(masks, name="masks").cpu()
    lam = _check_lam(lam)
    composite = _check_composite(composite)
    a_lam = None if attention_lam is None else _check_lam(attention_lam, "attention lam")
    state: dict[str, Any] = {"model": None, "engine": None}

    def loss_hook(model: nn.Module, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        mb = m[idx.cpu()]
        loss = x.new_zeros(())
        if a_lam is not None:
            loss = loss + attention_penalty(model, x, mb, lam=a_lam)
        if lam == 0:
            return loss
        ref = state["model"]
        if ref is None or ref() is not model:
            state["model"] = weakref.ref(model)
            try:
                state["engine"] = prepare_lrp(model, composite)
            except LRPEngineUnsupported as exc:
                state["engine"] = None
                warnings.warn(f"rrr_lrp: the prepared LRP engine cannot explain {type(model).__name__} ({exc}); "
                              f"training with the gradient penalty of 'rrr' (grad_of='log_probs', lam={lam}) instead",
                              UserWarning, stacklevel=2)
        if state["engine"] is None:
            return loss + rrr_penalty(model, x, mb, y=y, lam=lam)
        return loss + rrr_lrp_penalty(model, x, mb, y=y, lam=lam, composite=composite, engine=state["engine"])

    loss_hook.lam = lam  # type: ignore[attr-defined]
    loss_hook.composite = composite  # type: ignore[attr-defined]
    loss_hook.attention_lam = a_lam  # type: ignore[attr-defined]
    return loss_hook
