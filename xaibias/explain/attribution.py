"""One call for every attribution method: :func:`attribute` returns (N,H,W) relevance.

Built-in methods: ``gradient``, ``input_x_gradient``, ``integrated_gradients`` (captum),
``gradcam`` (captum's LayerGradCam, upsampled) and ``lrp`` (zennit composites and canonizers; where
the prepared engine of :mod:`xaibias.explain.lrp_engine` handles the model, it computes the same
numbers without hooks, see ``engine=``).
Other modules add methods with :func:`register_method` (Score-CAM, competitive gradient x input).

Conventions
-----------
- ``target=None`` explains the predicted class; an int explains that class for every image; a
  sequence or tensor gives one class per image.
- LRP starts from the target logit (``init="logit"``, so under conservation the input relevance sums
  to the logit) or from 1 (``init="one"``, zennit's common one-hot convention).
- ``pool="sum"`` sums the channel relevance, ``pool="l2"`` takes the squared L2 norm over channels,
  ``pool=None`` returns (N,3,H,W). Grad-CAM and Score-CAM have no channel axis: pooling does not
  apply to them.
- The result is always a float32 CPU tensor; the model stays where it is (its device is used).
- A method takes the keyword parameters of its function after ``(model, x, target)``; any other
  option (``n_steps`` for ``steps``, a ``composite`` given to ``gradient``) raises
  :class:`~xaibias._options.UnknownOptionError`, a ``TypeError`` naming the option, the method and
  the options it takes (:func:`check_options`).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .._checks import as_images, model_device
from .._options import keyword_names, reject_unknown
from ._shared import COMPOSITES, resolve_target
from .canonizers import auto_canonizers
from .lrp_engine import LRPEngineUnsupported, PreparedLRP

__all__ = [
    "attribute",
    "register_method",
    "COMPOSITES",
    "make_composite",
    "auto_canonizers",
    "resolve_target",
    "get_layer",
]

# name -> fn(model, x, target, **kwargs) -> (B,C,H,W) or (B,H,W); filled below and by other modules
_REGISTRY: dict[str, Callable[..., torch.Tensor]] = {}
_NO_CHANNELS: set[str] = set()


def available_methods() -> tuple[str, ...]:
    """The method names :func:`attribute` accepts now (built-in and registered ones)."""
    return tuple(_REGISTRY)


def check_method(method: str) -> str:
    """Return ``method`` when :func:`attribute` knows it, else raise a ValueError listing the choices."""
    if method not in _REGISTRY:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(_REGISTRY)}")
    return method


def method_options(method: str) -> tuple[str, ...] | None:
    """The options ``attribute(method=method)`` passes on: the keyword parameters of the method's
    function after ``(model, x, target)``, or None when that function takes ``**kwargs``."""
    return keyword_names(_REGISTRY[check_method(method)], skip=3)


def check_options(method: str, options: Mapping[str, Any]) -> None:
    """Raise for an option in ``options`` that ``attribute(method=method)`` would not use.

    Parameters
    ----------
    method : str
        A registered method name.
    options : mapping
        The keywords meant for the method (``composite`` and ``canonizers`` included when given);
        ``pool``, which :func:`attribute` applies itself, may be among them.

    Raises
    ------
    ValueError
        For an unknown method.
    UnknownOptionError
        A ``TypeError`` naming the option, the method and the options the method takes, e.g.
        ``attribute(method='integrated_gradients') does not take the option 'n_steps' (did you mean
        'steps'?); it takes: steps, baseline, internal_batch_size``.
    """
    taken = method_options(method)
    if taken is not None:
        reject_unknown([k for k in options if k != "pool"], taken, f"attribute(method={method!r})")


def register_method(name: str, channels: bool = True) -> Callable[[Callable[..., torch.Tensor]], Callable[..., torch.Tensor]]:
    """Register ``fn(model, x, target, <options>) -> relevance`` as ``attribute(method=name)``.

    ``x`` is a (B,3,H,W) batch on the model's device, ``target`` a (B,) long tensor. The function
    returns (B,C,H,W) per-channel relevance (``channels=True``) or a (B,H,W) map at input
    resolution (``channels=False``, for CAM-type methods). Its keyword parameters after ``target``
    are the method's options: :func:`attribute` rejects any other option before computing
    anything. A function with ``**kwargs`` receives every option given and must reject the ones it
    does not use itself.
    """

    def deco(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        _REGISTRY[name] = fn
        if not channels:
            _NO_CHANNELS.add(name)
        else:
            _NO_CHANNELS.discard(name)
        return fn

    return deco


# --------------------------------------------------------------------------------------------------
# helpers


def get_layer(model: nn.Module, layer: str | nn.Module | None) -> nn.Module:
    """Return the sub-module named ``layer`` (default: the last Conv2d)."""
    if isinstance(layer, nn.Module):
        return layer
    modules = dict(model.named_modules())
    if layer is None:
        convs = [n for n, m in modules.items() if isinstance(m, nn.Conv2d)]
        if not convs:
            raise ValueError(f"{type(model).__name__} has no Conv2d layer; pass layer= explicitly")
        layer = convs[-1]
    if layer not in modules:
        names = [n for n in modules if n][-8:]
        raise ValueError(f"layer {layer!r} not found in {type(model).__name__}; last module names: {names}")
    return modules[layer]


def make_composite(
    composite: str | Any = "EpsilonPlusFlat",
    canonizers: str | Sequence | None = "auto",
    model: nn.Module | None = None,
    epsilon: float = 1e-6,
    low: float | torch.Tensor = 0.0,
    high: float | torch.Tensor = 1.0,
    input_shape: Sequence[int] | None = None,
):
    """Build a zennit composite by name (see :data:`COMPOSITES`) with the chosen canonizers.

    ``"Epsilon"`` applies the epsilon rule with ``epsilon`` to every linear and convolutional layer
    (Schaaf et al. use eps=10). ``"EpsilonGammaBox"`` needs the input range ``low``/``high``
    (defaults 0 and 1, the range of every xaibias image) and ``input_shape`` to expand them.
    A zennit ``Composite`` instance is passed through unchanged (its own canonizers apply).
    """
    from zennit import composites as zc
    from zennit.core import Composite
    from zennit.rules import Epsilon, Norm, Pass
    from zennit.types import Activation, AvgPool, Convolution

    if isinstance(composite, Composite):
        return composite
    if isinstance(canonizers, str):
        if canonizers != "auto":
            raise ValueError(f"canonizers must be 'auto', None or a list of zennit canonizers; got {canonizers!r}")
        if model is None:
            raise ValueError("canonizers='auto' needs the model")
        canon = auto_canonizers(model)
    elif canonizers is None:
        canon = None
    else:
        canon = list(canonizers)
    if composite == "Epsilon":
        from zennit.layer import Sum

        layer_map = [
            (Activation, Pass()),
            (Sum, Norm()),
            (AvgPool, Norm()),
            (Convolution, Epsilon(epsilon=epsilon)),
            (nn.Linear, Epsilon(epsilon=epsilon)),
        ]
        return zc.LayerMapComposite(layer_map=layer_map, canonizers=canon)
    if composite == "EpsilonGammaBox":
        if input_shape is None:
            raise ValueError("EpsilonGammaBox needs input_shape to build the low/high bounds")
        lo = torch.as_tensor(low, dtype=torch.float32).expand(*input_shape).clone()
        hi = torch.as_tensor(high, dtype=torch.float32).expand(*input_shape).clone()
        return zc.EpsilonGammaBox(low=lo, high=hi, canonizers=canon)
    if composite not in COMPOSITES:
        raise ValueError(f"unknown composite {composite!r}; choose one of {', '.join(COMPOSITES)}")
    return getattr(zc, composite)(canonizers=canon)


def _logits_grad(model: nn.Module, x: torch.Tensor, target: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        out = model(x)
        t = resolve_target(target, len(x), out)
        sel = out.gather(1, t.to(out.device)[:, None]).sum()
        (grad,) = torch.autograd.grad(sel, x)
    return grad, t


# --------------------------------------------------------------------------------------------------
# built-in methods


@register_method("gradient")
def _gradient(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    grad, _t = _logits_grad(model, x, target)
    return grad


@register_method("input_x_gradient")
def _input_x_gradient(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    grad, _t = _logits_grad(model, x, target)
    return grad * x


@register_method("integrated_gradients")
def _integrated_gradients(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, steps: int = 32, baseline: float | torch.Tensor = 0.0,
    internal_batch_size: int | None = None,
) -> torch.Tensor:
    from captum.attr import IntegratedGradients

    if steps < 2:
        raise ValueError(f"integrated_gradients needs steps >= 2; got {steps}")
    base = torch.as_tensor(baseline, dtype=x.dtype, device=x.device)
    base = base.expand_as(x) if base.ndim <= 1 or base.shape != x.shape else base
    ig = IntegratedGradients(model)
    return ig.attribute(x, baselines=base, target=target.to(x.device), n_steps=steps,
                        internal_batch_size=internal_batch_size or len(x) * min(steps, 16))


@register_method("gradcam", channels=False)
def _gradcam(model: nn.Module, x: torch.Tensor, target: torch.Tensor, layer: str | nn.Module | None = None,
             relu: bool = True) -> torch.Tensor:
    from captum.attr import LayerAttribution, LayerGradCam

    cam = LayerGradCam(model, get_layer(model, layer))
    a = cam.attribute(x, target=target.to(x.device), relu_attributions=relu)
    a = LayerAttribution.interpolate(a, tuple(x.shape[-2:]), interpolate_mode="bilinear")
    return a.sum(dim=1)


# prepared engines per model (weak keys: a deleted model frees its engine); each entry is checked
# against the model's module structure before use, and the engine itself re-derives its parameters
# when any parameter or buffer changes (version counters), so a cached engine never goes stale
_ENGINES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _prepared_engine(model: nn.Module, composite: Any, canonizers: Any, epsilon: float, low: Any, high: Any):
    """The cached :class:`~xaibias.explain.lrp_engine.PreparedLRP` for these settings (or raise
    :class:`~xaibias.explain.lrp_engine.LRPEngineUnsupported`)."""
    if not isinstance(composite, str):
        raise LRPEngineUnsupported("a zennit Composite instance is run by zennit itself")
    if not (canonizers is None or isinstance(canonizers, str)):
        raise LRPEngineUnsupported("a custom list of canonizers is run by zennit itself")
    if not all(isinstance(v, (int, float)) for v in (low, high)):  # tensor bounds: prepare, do not cache
        return PreparedLRP(model, composite, canonizers, epsilon=epsilon, low=low, high=high)
    key = (composite, canonizers, float(epsilon), float(low), float(high))
    signature = tuple(id(m) for m in model.modules())
    try:
        per_model = _ENGINES.setdefault(model, {})
    except TypeError:  # a model that cannot be weakly referenced
        return PreparedLRP(model, composite, canonizers, epsilon=epsilon, low=low, high=high)
    hit = per_model.get(key)
    if hit is None or hit[0] != signature:
        try:
            hit = (signature, PreparedLRP(model, composite, canonizers, epsilon=epsilon, low=low, high=high))
        except LRPEngineUnsupported as exc:
            hit = (signature, exc)
        per_model[key] = hit
    if isinstance(hit[1], Exception):
        raise hit[1]
    return hit[1]


def _lrp(model: nn.Module, x: torch.Tensor, target: torch.Tensor | None, composite: str | Any = "EpsilonPlusFlat",
         canonizers: str | Sequence | None = "auto", epsilon: float = 1e-6, init: str = "logit",
         low: float | torch.Tensor = 0.0, high: float | torch.Tensor = 1.0, engine: str = "auto") -> torch.Tensor:
    from zennit.attribution import Gradient

    if init not in ("logit", "one"):
        raise ValueError(f"init must be 'logit' or 'one'; got {init!r}")
    if engine not in ("auto", "prepared", "zennit"):
        raise ValueError(f"engine must be 'auto', 'prepared' or 'zennit'; got {engine!r}")
    if engine != "zennit":
        try:
            prepared = _prepared_engine(model, composite, canonizers, epsilon, low, high)
            return prepared(x, target, init=init, pool=None)
        except LRPEngineUnsupported:
            if engine == "prepared":
                raise
    comp = make_composite(composite, canonizers, model=model, epsilon=epsilon, low=low, high=high,
                          input_shape=tuple(x.shape))
    chosen: dict[str, torch.Tensor] = {}

    def attr_output(out: torch.Tensor) -> torch.Tensor:
        t = resolve_target(target, len(out), out).to(out.device)
        chosen["t"] = t
        onehot = F.one_hot(t, out.shape[1]).to(out.dtype)
        return onehot * out if init == "logit" else onehot

    with Gradient(model=model, composite=comp) as attributor:
        _out, rel = attributor(x.detach(), attr_output)
    return rel


register_method("lrp")(_lrp)


# --------------------------------------------------------------------------------------------------
# the public call


class _Default(str):
    """A default of :func:`attribute` that it tells apart from the same string given explicitly.

    ``composite`` and ``canonizers`` are options of the LRP method; given to a method that does not
    take them they must raise, while their defaults must not. An instance equals, hashes and
    prints as its plain string, so the signature still reads ``composite='EpsilonPlusFlat'``.
    """


_DEFAULT_COMPOSITE = _Default("EpsilonPlusFlat")
_DEFAULT_CANONIZERS = _Default("auto")


def attribute(
    model: nn.Module,
    images: Any,
    target: int | Sequence[int] | torch.Tensor | None = None,
    method: str = "lrp",
    composite: str | Any = _DEFAULT_COMPOSITE,
    canonizers: str | Sequence | None = _DEFAULT_CANONIZERS,
    pool: str | None = "sum",
    batch_size: int = 32,
    progress: bool | None = None,
    **kwargs: Any,
) -> torch.Tensor:
    """Explain ``model`` on ``images``: relevance at input resolution, (N,H,W) float32 on the CPU.

    Parameters
    ----------
    model : nn.Module
        Any classifier taking (N,3,H,W) images in [0,1]; it is used in eval mode on its own device.
    images : tensor (N,3,H,W) or (3,H,W)
        Float images in [0,1].
    target : None, int, sequence or tensor
        Class to explain: the prediction (None), one class for all, or one per image.
    method : str
        One of ``xaibias.explain.METHODS``.
    composite, canonizers
        For ``method="lrp"``: a name from :data:`COMPOSITES` (or a zennit Composite) and
        ``"auto"`` (chosen from the architecture, see :func:`auto_canonizers`), ``None`` or a list.
        Passed to any method that takes them; given to one that does not, they raise.
    pool : "sum", "l2" or None
        Channel pooling: sum, squared L2 norm, or none (returns (N,3,H,W)).
    batch_size : int
        Images per forward/backward pass.
    **kwargs
        Passed to the method: ``steps``/``baseline`` (integrated gradients), ``layer`` (Grad-CAM),
        ``epsilon``/``init``/``low``/``high`` (LRP), and those of registered methods. For LRP,
        ``engine="auto"`` (default) uses the prepared, hook-free engine
        (:func:`xaibias.explain.prepare_lrp`, equal to zennit) where it handles the model and
        composite and zennit elsewhere; ``engine="zennit"`` always uses zennit, ``engine="prepared"``
        raises :class:`~xaibias.explain.lrp_engine.LRPEngineUnsupported` instead of falling back.

    Raises
    ------
    UnknownOptionError
        A ``TypeError``, before anything is computed, for an option the method does not take (see
        :func:`check_options`), e.g. ``method="integrated_gradients", n_steps=64`` or
        ``method="gradient", composite="EpsilonPlus"``.
    """
    check_method(method)
    # given explicitly, composite and canonizers are options like any other (LRP takes them, the
    # check rejects them for the rest); left at their defaults they are not passed, and the LRP
    # function's own defaults, the same two values, apply
    if composite is not _DEFAULT_COMPOSITE:
        kwargs["composite"] = composite
    if canonizers is not _DEFAULT_CANONIZERS:
        kwargs["canonizers"] = canonizers
    check_options(method, kwargs)
    if pool not in ("sum", "l2", None):
        raise ValueError(f"pool must be 'sum', 'l2' or None; got {pool!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    x_all = as_images(images, allow_single=True)
    n = len(x_all)
    tgt = None if target is None else resolve_target(target, n)
    fn = _REGISTRY[method]
    dev = model_device(model)
    was_training = model.training
    model.eval()
    show = (n > batch_size) if progress is None else progress
    out: list[torch.Tensor] = []
    try:
        with torch.enable_grad():
            for start in tqdm(range(0, n, batch_size), desc=f"attribute {method}", disable=not show, leave=False):
                x = x_all[start:start + batch_size].to(dev, torch.float32)
                t = None if tgt is None else tgt[start:start + batch_size]
                if t is None and method != "lrp":
                    with torch.no_grad():
                        t = model(x).argmax(dim=1)
                rel = fn(model, x, t if method == "lrp" else t.to(dev), **kwargs)
                rel = rel.detach().float()
                if rel.ndim == 4 and method not in _NO_CHANNELS:
                    if pool == "sum":
                        rel = rel.sum(dim=1)
                    elif pool == "l2":
                        rel = rel.pow(2).sum(dim=1)
                elif rel.ndim == 4:
                    rel = rel.sum(dim=1)
                if rel.shape[-2:] != x.shape[-2:]:
                    raise RuntimeError(f"method {method!r} returned maps of size {tuple(rel.shape[-2:])}, "
                                       f"expected the input size {tuple(x.shape[-2:])}")
                out.append(rel.cpu())
    finally:
        model.train(was_training)
    rel = torch.cat(out)
    if not bool(torch.isfinite(rel).all()):
        bad = (~torch.isfinite(rel)).reshape(n, -1).any(1).nonzero().flatten()[:10].tolist()
        raise FloatingPointError(f"{method} produced NaN/inf relevance for image(s) {bad}; "
                                 f"for LRP try a larger epsilon or another composite")
    return rel
