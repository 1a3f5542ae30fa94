"""The rules of the hand-written LRP (:mod:`xaibias.explain.reference`): one class per rule.

Every rule for a linear layer follows the four steps described in :mod:`xaibias.explain.reference`
(contributions, ``s = R / stabilize(z)``, ``c = W^T s``, ``R_in = a * c``); the two linear-algebra
helpers every rule needs come first. :data:`RULES` names them, :func:`make_rule` builds one by name
and :func:`default_rule` is the rule a layer gets when a preset says nothing about it. Every public
name here is also importable from :mod:`xaibias.explain.reference`, where notebook 01 finds it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "STABILIZER", "LINEAR_TYPES", "PASS_TYPES", "AVG_POOL_TYPES", "SUPPORTED", "stabilize", "Rule", "LRP0", "Epsilon",
    "Gamma", "AlphaBeta", "ZPlus", "ZBox", "Flat", "WSquare", "Pass", "Norm", "WinnerTakesAll", "RULES", "make_rule",
    "default_rule",
]


STABILIZER = 1e-6  # zennit's default stabiliser for every rule that is not epsilon itself

LINEAR_TYPES = (nn.Linear, nn.Conv2d)
PASS_TYPES = (nn.ReLU, nn.Dropout, nn.Identity)
AVG_POOL_TYPES = (nn.AvgPool2d, nn.AdaptiveAvgPool2d)
SUPPORTED = LINEAR_TYPES + PASS_TYPES + AVG_POOL_TYPES + (nn.MaxPool2d, nn.Flatten)


# ---------------------------------------------------------------------------------------------
# the two linear-algebra steps every rule needs
# ---------------------------------------------------------------------------------------------
def stabilize(z: torch.Tensor, epsilon: float = STABILIZER) -> torch.Tensor:
    """Move ``z`` away from zero by ``epsilon`` in the direction of its sign (``sign(0) = +1``)."""
    return z + epsilon * torch.where(z >= 0, 1.0, -1.0).to(z)


def _divide(relevance: torch.Tensor, z: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Step 2, ``s = R / stabilize(z)``; with ``epsilon == 0`` a zero ``z`` passes nothing on."""
    if epsilon == 0:
        return torch.where(z == 0, torch.zeros_like(z), relevance / torch.where(z == 0, 1.0, z))
    return relevance / stabilize(z, epsilon)


def _forward(layer: nn.Module, a: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Step 1: the layer's linear map with (possibly modified) ``weight`` and ``bias``."""
    if isinstance(layer, nn.Linear):
        return F.linear(a, weight, bias)
    return F.conv2d(a, weight, bias, layer.stride, layer.padding, layer.dilation, layer.groups)


def _backward(layer: nn.Module, a: torch.Tensor, weight: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Step 3: ``c = W^T s``, the transposed linear map (for a convolution: transposed convolution)."""
    if isinstance(layer, nn.Linear):
        return s @ weight
    with torch.enable_grad():
        a = a.detach().requires_grad_(True)
        z = F.conv2d(a, weight, None, layer.stride, layer.padding, layer.dilation, layer.groups)
        (c,) = torch.autograd.grad(z, a, grad_outputs=s)
    return c


def _parts(x: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Positive and negative part of a tensor (``None`` stays ``None``)."""
    if x is None:
        return None, None
    return x.clamp(min=0), x.clamp(max=0)


# ---------------------------------------------------------------------------------------------
# rules
# ---------------------------------------------------------------------------------------------
class Rule:
    """A relevance rule: ``rule(layer, a, R) -> R_in`` for the layer's input ``a``.

    ``a`` is the input the layer saw in the forward pass and ``R`` the relevance of its output; the
    result has the shape of ``a``. ``name`` is a short label used in figures and widgets.
    """

    name = "rule"
    applies_to: tuple[type, ...] = LINEAR_TYPES

    def __call__(self, layer: nn.Module, a: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"


class Epsilon(Rule):
    """LRP-epsilon: ``R_j = sum_k a_j w_jk / (z_k + eps sign(z_k)) R_k`` with ``z_k = sum_j a_j w_jk + b_k``.

    ``epsilon`` absorbs the relevance of weak or contradictory outputs (the bigger, the sparser and
    less noisy the map, and the less relevance is conserved). ``epsilon=0`` is LRP-0.
    """

    name = "epsilon"

    def __init__(self, epsilon: float = 1e-6) -> None:
        if not epsilon >= 0:
            raise ValueError(f"epsilon must be >= 0; got {epsilon!r}")
        self.epsilon = float(epsilon)

    def __call__(self, layer: nn.Module, a: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
        z = _forward(layer, a, layer.weight, layer.bias)
        s = _divide(relevance, z, self.epsilon)
        c = _backward(layer, a, layer.weight, s)
        return a * c


class LRP0(Epsilon):
    """LRP-0: relevance in proportion to the contributions ``a_j w_jk`` (epsilon rule with ``eps=0``).

    On a network of linear layers and ReLUs this equals gradient x input.
    """

    name = "0"

    def __init__(self) -> None:
        super().__init__(0.0)


class Gamma(Rule):
    """LRP-gamma: like LRP-0 with positive weights boosted, ``w + gamma * w+`` (and ``b + gamma * b+``).

    Favouring positive contributions makes the maps more stable and less noisy than LRP-0.
    """

    name = "gamma"

    def __init__(self, gamma: float = 0.25) -> None:
        if not gamma >= 0:
            raise ValueError(f"gamma must be >= 0; got {gamma!r}")
        self.gamma = float(gamma)

    def __call__(self, layer: nn.Module, a: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
        weight = layer.weight + self.gamma * layer.weight.clamp(min=0)
        bias = None if layer.bias is None else layer.bias + self.gamma * layer.bias.clamp(min=0)
        z = _forward(layer, a, weight, bias)
        s = _divide(relevance, z, STABILIZER)
        return a * _backward(layer, a, weight, s)


class AlphaBeta(Rule):
    """LRP-alpha-beta: positive and negative contributions normalised separately.

    ``R_j = alpha * (a w)+_jk / z+_k R_k - beta * (a w)-_jk / z-_k R_k``, where the positive part
    ``(a w)+`` is ``a+ w+`` plus ``a- w-`` (both give positive products), ``z+`` its sum plus ``b+``,
    and the negative part likewise. ``alpha - beta = 1`` keeps the total. ``alpha=1, beta=0``
    (z+) keeps only the evidence for the output; ``alpha=2, beta=1`` also shows counter-evidence.
    """

    def __init__(self, alpha: float = 2.0, beta: float = 1.0) -> None:
        if alpha < 0 or beta < 0:
            raise ValueError(f"alpha and beta must be >= 0; got alpha={alpha!r}, beta={beta!r}")
        if abs(alpha - beta - 1.0) > 1e-12:
            raise ValueError(f"alpha - beta must equal 1 (relevance is conserved); got {alpha} - {beta}")
        self.alpha, self.beta = float(alpha), float(beta)
        self.name = f"alpha{alpha:g}beta{beta:g}"

    def _part(self, layer, a_pos, a_neg, w_for_pos_a, w_for_neg_a, bias, relevance):
        z = _forward(layer, a_pos, w_for_pos_a, bias) + _forward(layer, a_neg, w_for_neg_a, None)
        s = _divide(relevance, z, STABILIZER)
        return a_pos * _backward(layer, a_pos, w_for_pos_a, s) + a_neg * _backward(layer, a_neg, w_for_neg_a, s)

    def __call__(self, layer: nn.Module, a: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
        a_pos, a_neg = _parts(a)
        w_pos, w_neg = _parts(layer.weight)
        b_pos, b_neg = _parts(layer.bias)
        positive = self._part(layer, a_pos, a_neg, w_pos, w_neg, b_pos, relevance)
        negative = self._part(layer, a_pos, a_neg, w_neg, w_pos, b_neg, relevance)
        return self.alpha * positive - self.beta * negative


class ZPlus(AlphaBeta):
    """LRP-z+ (alpha=1, beta=0): only positive contributions, so relevance stays positive."""

    def __init__(self) -> None:
        super().__init__(1.0, 0.0)
        self.name = "zplus"


class ZBox(Rule):
    """z^B for the first layer, whose inputs are bounded pixels ``low <= x <= high``.

    ``z_jk = x_j w_jk - low_j w+_jk - high_j w-_jk``: the contribution is measured from the
    "darkest" input the neuron could see (a root point on the box), so every pixel gets relevance,
    also black ones. ``low`` and ``high`` are numbers or tensors broadcastable to the input, e.g.
    ``(1, 3, 1, 1)`` per-channel bounds after normalisation. The bias cancels out.
    """

    name = "zbox"

    def __init__(self, low: float | torch.Tensor = 0.0, high: float | torch.Tensor = 1.0) -> None:
        lo, hi = torch.as_tensor(low, dtype=torch.float64), torch.as_tensor(high, dtype=torch.float64)
        if bool((lo > hi).any()):
            raise ValueError(f"ZBox needs low <= high; got low={low!r}, high={high!r}")
        self.low, self.high = low, high

    def __call__(self, layer: nn.Module, a: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
        low = torch.as_tensor(self.low).to(a).expand_as(a)
        high = torch.as_tensor(self.high).to(a).expand_as(a)
        w_pos, w_neg = _parts(layer.weight)
        z = (_forward(layer, a, layer.weight, None) - _forward(layer, low, w_pos, None)
             - _forward(layer, high, w_neg, None))
        s = _divide(relevance, z, STABILIZER)
        return (a * _backward(layer, a, layer.weight, s) - low * _backward(layer, a, w_pos, s)
                - high * _backward(layer, a, w_neg, s))


class Flat(Rule):
    """Flat: every input in the receptive field gets an equal share, ignoring weights and inputs.

    Used in the first layer (EpsilonPlusFlat) to spread relevance evenly over the pixels each
    first-layer neuron sees; the heatmap then shows *where* the evidence is at the first layer's
    resolution, without pixel-level texture.
    """

    name = "flat"

    def __call__(self, layer: nn.Module, a: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
        ones = torch.ones_like(a)
        weight = torch.ones_like(layer.weight)
        z = _forward(layer, ones, weight, None)  # number of inputs in each receptive field
        s = _divide(relevance, z, STABILIZER)
        return _backward(layer, ones, weight, s)


class WSquare(Rule):
    """w^2: shares in proportion to the squared weights, independent of the input (unbounded inputs).

    ``include_bias=True`` follows zennit 0.4, which squares the bias too and keeps ``b**2`` in the
    denominator (so some relevance goes to the bias); ``False`` is the textbook rule.
    """

    name = "wsquare"

    def __init__(self, include_bias: bool = True) -> None:
        self.include_bias = bool(include_bias)

    def __call__(self, layer: nn.Module, a: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
        ones = torch.ones_like(a)
        weight = layer.weight**2
        bias = layer.bias**2 if (self.include_bias and layer.bias is not None) else None
        z = _forward(layer, ones, weight, bias)
        s = _divide(relevance, z, STABILIZER)
        return _backward(layer, ones, weight, s)


class Pass(Rule):
    """Element-wise layers (ReLU, dropout at test time): relevance passes through unchanged."""

    name = "pass"
    applies_to = PASS_TYPES

    def __call__(self, layer: nn.Module, a: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
        return relevance


class Norm(Rule):
    """Average pooling: the epsilon rule of the pooling map (every input weighted by its value)."""

    name = "norm"
    applies_to = AVG_POOL_TYPES

    def __call__(self, layer: nn.Module, a: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            a_ = a.detach().requires_grad_(True)
            z = layer(a_)
            (c,) = torch.autograd.grad(z, a_, grad_outputs=_divide(relevance, z.detach(), STABILIZER))
        return a * c


class WinnerTakesAll(Rule):
    """Max pooling: all relevance of a pooled output goes to the input that won the max."""

    name = "winner"
    applies_to = (nn.MaxPool2d,)

    def __call__(self, layer: nn.Module, a: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            a_ = a.detach().requires_grad_(True)
            (c,) = torch.autograd.grad(layer(a_), a_, grad_outputs=relevance)
        return c


class _Reshape(Rule):
    name = "reshape"
    applies_to = (nn.Flatten,)

    def __call__(self, layer: nn.Module, a: torch.Tensor, relevance: torch.Tensor) -> torch.Tensor:
        return relevance.reshape(a.shape)


RULES: dict[str, Callable[..., Rule]] = {
    "0": LRP0,
    "epsilon": Epsilon,
    "gamma": Gamma,
    "alpha2beta1": lambda: AlphaBeta(2.0, 1.0),
    "alpha1beta0": lambda: AlphaBeta(1.0, 0.0),
    "zplus": ZPlus,
    "zbox": ZBox,
    "flat": Flat,
    "wsquare": WSquare,
}
"""Rule names for linear layers (used by widgets): name -> constructor."""


def make_rule(name: str, **params: Any) -> Rule:
    """Build a rule from its name in :data:`RULES` (``"epsilon"``, ``"gamma"``, ...) and parameters."""
    if name not in RULES:
        raise ValueError(f"unknown rule {name!r}; expected one of {sorted(RULES)}")
    return RULES[name](**params)


def default_rule(layer: nn.Module) -> Rule:
    if isinstance(layer, PASS_TYPES):
        return Pass()
    if isinstance(layer, AVG_POOL_TYPES):
        return Norm()
    if isinstance(layer, nn.MaxPool2d):
        return WinnerTakesAll()
    if isinstance(layer, nn.Flatten):
        return _Reshape()
    return Epsilon()
