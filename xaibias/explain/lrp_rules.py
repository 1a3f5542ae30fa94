"""Rules of the prepared LRP engine (:mod:`xaibias.explain.lrp_engine`), written as modified forwards.

The engine back-propagates zennit's own quantity with autograd: the "gradient" ``G`` at a tensor
is what zennit's hooked backward pass holds there (at the output of a layer with a rule it is that
layer's relevance; at the input it is the input relevance). Between layers with rules zennit lets
the ordinary gradient flow (max-pooling, reshapes, concatenations, multiplications, functional
activations), and so does the engine; modules with the ``Pass`` rule (activations, and DenseNet's
batch norms after concatenations) hand ``G`` over unchanged (:class:`PassThrough`).

For a linear layer (``Linear`` or ``Conv2d``, batch norm folded in) every zennit rule has the form

    G_in = a * sum_g coef_g * sum_t J_t^T (G_out / stabilize(z_g))

with "groups" ``z_g`` (one for most rules, two for alpha-beta), each a sum of terms
``z_t = lin(m_t(a), W_t, b_t)`` with an input modifier ``m_t`` (identity, positive or negative part).
The engine writes it as a modified forward: ``a`` passes :class:`Relay` with multiplier ``a``
(the final ``a *``), then the groups ``z_g`` are computed from it, and a :class:`Relay` whose value
is the layer's normal output sends ``G_out * coef_g * k / stabilize(z_g)`` to each ``z_g``. One
autograd backward through these nodes computes LRP. ``k`` is the scale of the emptied batch norm
that zennit's ``MergeBatchNorm`` leaves behind (``1 / sqrt(1 + eps)``; 1 for the DenseNet merge,
which sets its ``eps`` to 0).

The numbers follow zennit 0.4/0.5 exactly (same stabiliser ``z + ((z == 0) + sign(z)) * eps``,
same bias handling); the first-layer rules that do not multiply by the input (``Flat``) or add box
terms (``ZBox``) take their own inputs ("probes") whose gradients are the relevance.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["stabilize", "inverse", "Relay", "PassThrough", "LinearRule", "EpsilonRule", "GammaRule", "ZPlusRule", "AlphaBetaRule",
           "FlatRule", "ZBoxRule", "STABILIZER"]

STABILIZER = 1e-6  # zennit's default stabiliser

Lin = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


def stabilize(z: torch.Tensor, epsilon: float = STABILIZER, positive: bool = False) -> torch.Tensor:
    """zennit's stabiliser: ``z + ((z == 0) + sign(z)) * epsilon`` (zero moves to ``+epsilon``).

    ``positive=True`` promises ``z >= 0``, where the same value is ``z + epsilon`` (one operation).
    """
    if positive:
        return z + epsilon
    return z + ((z == 0).to(z) + z.sign()) * epsilon


def inverse(z: torch.Tensor, epsilon: float, scale: float, positive: bool, inplace: bool) -> torch.Tensor:
    """``scale / stabilize(z, epsilon)``; ``inplace`` (no graph) reuses the denominator's memory."""
    den = stabilize(z, epsilon, positive)
    if inplace:
        out = den.reciprocal_()
        return out.mul_(scale) if scale != 1.0 else out
    out = den.reciprocal()
    return out * scale if scale != 1.0 else out


class Relay(torch.autograd.Function):
    """``Relay(value, z_1..z_m, r_1..r_m)``: returns ``value``; its gradient goes to ``z_g`` times ``r_g``.

    ``value`` receives no gradient (its graph still carries the parameters for ``create_graph``);
    the ratios ``r_g`` receive none in the first-order pass either, but the backward is written in
    differentiable operations, so with ``create_graph=True`` the map's dependence on the ratios
    (and through them on the parameters) is kept.
    """

    @staticmethod
    def forward(ctx, value: torch.Tensor, *zr: torch.Tensor) -> torch.Tensor:  # noqa: D102
        ctx.m = len(zr) // 2
        ctx.save_for_backward(*zr[ctx.m:])
        return value.view_as(value)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: D102
        ratios = ctx.saved_tensors
        return (None, *(grad * r for r in ratios), *(None,) * ctx.m)


class PassThrough(torch.autograd.Function):
    """``PassThrough(value, source)``: returns ``value``; the gradient goes to ``source`` unchanged
    (zennit's ``Pass`` rule; ``value`` and ``source`` have the same shape)."""

    @staticmethod
    def forward(ctx, value: torch.Tensor, source: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return value.view_as(value)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: D102
        return None, grad


class LinearRule:
    """A rule for a linear layer: derived parameters once, groups ``(z, epsilon, coef)`` per call.

    ``probe`` names what the rule reads in the first layer: ``"input"`` (the input itself; the
    relevance is ``input * gradient``), ``"ones"`` (Flat: relevance is the gradient of a ones
    tensor) or ``"box"`` (ZBox: the input and the bounds ``low``/``high``).
    """

    name = "rule"
    probe = "input"

    def derive(self, w: torch.Tensor, b: torch.Tensor | None) -> dict:
        """Rule-modified parameters from the (batch-norm folded) weight and bias."""
        return {"w": w, "b": b}

    def groups(self, a: torch.Tensor, p: dict, lin: Lin, nonneg: bool, box=None) -> list[tuple]:
        """``[(z, epsilon, coef, positive), ...]``: the modified outputs, differentiable in ``a``
        (``positive``: ``z >= 0`` is certain, so the stabiliser is one addition)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.name


class EpsilonRule(LinearRule):
    def __init__(self, epsilon: float = STABILIZER) -> None:
        self.epsilon = float(epsilon)
        self.name = f"Epsilon({self.epsilon:g})"

    def groups(self, a, p, lin, nonneg, box=None):  # noqa: D102
        return [(lin(a, p["w"], p["b"]), self.epsilon, 1.0, False)]


class GammaRule(LinearRule):
    def __init__(self, gamma: float = 0.25) -> None:
        self.gamma = float(gamma)
        self.name = f"Gamma({self.gamma:g})"

    def derive(self, w, b):  # noqa: D102
        g = self.gamma
        return {"w": w + g * w.clamp(min=0), "b": None if b is None else b + g * b.clamp(min=0)}

    def groups(self, a, p, lin, nonneg, box=None):  # noqa: D102
        return [(lin(a, p["w"], p["b"]), STABILIZER, 1.0, False)]


def _signed(w, b):
    return {"wp": w.clamp(min=0), "wn": w.clamp(max=0),
            "bp": None if b is None else b.clamp(min=0), "bn": None if b is None else b.clamp(max=0)}


def _two_sided(a, lin, nonneg, w_pos_in, w_neg_in, bias):
    # zennit: lin(a+, W_1, b_1) + lin(a-, W_2, 0); the second term is exactly 0 for a >= 0
    if nonneg:
        return lin(a, w_pos_in, bias)
    return lin(a.clamp(min=0), w_pos_in, bias) + lin(a.clamp(max=0), w_neg_in, None)


class ZPlusRule(LinearRule):
    name = "ZPlus"

    def derive(self, w, b):  # noqa: D102
        return _signed(w, b)

    def groups(self, a, p, lin, nonneg, box=None):  # noqa: D102
        # W+ a + b+ with a >= 0 is a sum of non-negative terms
        return [(_two_sided(a, lin, nonneg, p["wp"], p["wn"], p["bp"]), STABILIZER, 1.0, nonneg)]


class AlphaBetaRule(LinearRule):
    def __init__(self, alpha: float = 2.0, beta: float = 1.0) -> None:
        self.alpha, self.beta = float(alpha), float(beta)
        self.name = f"AlphaBeta({self.alpha:g},{self.beta:g})"

    def derive(self, w, b):  # noqa: D102
        return _signed(w, b)

    def groups(self, a, p, lin, nonneg, box=None):  # noqa: D102
        zp = _two_sided(a, lin, nonneg, p["wp"], p["wn"], p["bp"])
        zn = _two_sided(a, lin, nonneg, p["wn"], p["wp"], p["bn"])
        return [(zp, STABILIZER, self.alpha, nonneg), (zn, STABILIZER, -self.beta, False)]


class FlatRule(LinearRule):
    name = "Flat"
    probe = "ones"

    def derive(self, w, b):  # noqa: D102
        return {"w": torch.ones_like(w)}

    def groups(self, a, p, lin, nonneg, box=None):  # noqa: D102
        # ``a`` is the ones probe; zennit's zero bias adds nothing
        return [(lin(a, p["w"], None), STABILIZER, 1.0, True)]


class ZBoxRule(LinearRule):
    probe = "box"

    def __init__(self, low, high) -> None:
        self.low, self.high = low, high
        self.name = "ZBox"

    def derive(self, w, b):  # noqa: D102
        return {"w": w, "b": b, **_signed(w, b)}

    def groups(self, a, p, lin, nonneg, box=None):  # noqa: D102
        low, high = box
        z = lin(a, p["w"], p["b"]) - (lin(low, p["wp"], p["bp"]) + lin(high, p["wn"], p["bn"]))
        return [(z, STABILIZER, 1.0, False)]
