"""Layer-wise relevance propagation written out by hand, to be read next to notebook 01.

This module is the *teaching* implementation of LRP: plain torch, no hooks, one short function per
rule, for sequential networks built from ``Linear``, ``Conv2d``, ``ReLU``, ``MaxPool2d``,
``AvgPool2d``/``AdaptiveAvgPool2d`` and ``Flatten`` (``Dropout`` and ``Identity`` pass relevance
through). For real models use :func:`xaibias.explain.attribute` (zennit); the tests check that every
rule here gives the same numbers as zennit's hook-based rule (float64, max abs difference 1e-6).

Every rule for a linear layer (``Linear`` or ``Conv2d``) follows the same four steps
(Montavon et al. 2019, "Layer-wise relevance propagation: an overview"):

1. ``z = layer(a)`` with the rule's modified input and parameters (the "contributions"),
2. ``s = R / stabilize(z)`` (relevance per unit of output),
3. ``c = W^T s`` (send it back through the transposed weights; for a convolution the transposed
   convolution, computed here as a vector-Jacobian product),
4. ``R_in = a * c`` (each input gets its share in proportion to its contribution).

Conventions copied from zennit 0.4 so that the numbers agree exactly:

- ``stabilize(z, eps) = z + eps * sign(z)`` with ``sign(0) := +1``; every rule except
  :class:`Epsilon` uses ``eps = 1e-6`` as a pure stabiliser.
- Biases stay in the denominator (they absorb relevance) for LRP-0, epsilon and gamma (gamma also
  boosts the positive part of the bias); alpha-beta puts ``b+`` into the positive and ``b-`` into the
  negative denominator; in z^B the bias cancels; flat ignores it; w^2 uses ``b**2`` in the
  denominator (zennit squares every parameter).
- ``ReLU`` passes relevance through unchanged (zennit's ``Pass``), average pooling uses the ``Norm``
  rule (the epsilon rule of the pooling map with ``eps = 1e-6``), max pooling sends relevance to
  the winning input (zennit assigns no rule to max pooling, so the gradient is used).

Main entry points: :func:`lrp` (explain a batch), :func:`assign_rules` (one rule per layer, like a
zennit composite; ``PRESETS`` mirror zennit's composites), :func:`relevance_sums` and
:func:`conservation_error` (how much relevance is kept from layer to layer).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "stabilize",
    "Rule",
    "LRP0",
    "Epsilon",
    "Gamma",
    "AlphaBeta",
    "ZPlus",
    "ZBox",
    "Flat",
    "WSquare",
    "Pass",
    "Norm",
    "WinnerTakesAll",
    "RULES",
    "PRESETS",
    "make_rule",
    "sequential_layers",
    "assign_rules",
    "ReferenceResult",
    "lrp",
    "relevance_sums",
    "conservation_error",
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


def _default_rule(layer: nn.Module) -> Rule:
    if isinstance(layer, PASS_TYPES):
        return Pass()
    if isinstance(layer, AVG_POOL_TYPES):
        return Norm()
    if isinstance(layer, nn.MaxPool2d):
        return WinnerTakesAll()
    if isinstance(layer, nn.Flatten):
        return _Reshape()
    return Epsilon()


# ---------------------------------------------------------------------------------------------
# presets: the zennit composites, written as "which rule for which layer"
# ---------------------------------------------------------------------------------------------
def _preset(conv: Callable[[], Rule], dense: Callable[[], Rule], first: Callable[[], Rule] | None = None,
            first_types: tuple[type, ...] = LINEAR_TYPES):
    def spec(**kw: Any) -> dict:
        out: dict = {nn.Conv2d: conv(), nn.Linear: dense()}
        if first is not None:
            out["first"] = (first_types, first(**kw) if kw else first())
        return out

    return spec


PRESETS: dict[str, Callable[..., dict]] = {
    "EpsilonPlus": _preset(ZPlus, Epsilon),
    "EpsilonPlusFlat": _preset(ZPlus, Epsilon, Flat),
    "EpsilonAlpha2Beta1": _preset(lambda: AlphaBeta(2.0, 1.0), Epsilon),
    "EpsilonAlpha2Beta1Flat": _preset(lambda: AlphaBeta(2.0, 1.0), Epsilon, Flat),
    "EpsilonGammaBox": _preset(Gamma, Epsilon, ZBox, first_types=(nn.Conv2d,)),
}
"""zennit's composites as rule maps (``PRESETS[name](**first_rule_params)``); ``EpsilonGammaBox``
takes ``low`` and ``high`` for its first-layer z^B rule."""


RuleSpec = str | Rule | Sequence | Mapping | Callable


def sequential_layers(model: nn.Module) -> list[nn.Module]:
    """The layers of a (possibly nested) ``nn.Sequential`` in order; raises for anything else."""
    if not isinstance(model, nn.Sequential):
        raise ValueError(
            f"model must be an nn.Sequential of {', '.join(t.__name__ for t in SUPPORTED)}; "
            f"got {type(model).__name__} (use xaibias.explain.attribute for other models)"
        )
    layers: list[nn.Module] = []
    for name, child in model.named_children():
        if isinstance(child, nn.Sequential):
            layers.extend(sequential_layers(child))
        elif isinstance(child, SUPPORTED):
            if isinstance(child, nn.Conv2d) and child.padding_mode != "zeros":
                raise ValueError(f"layer {name!r}: only zero padding is supported; got {child.padding_mode!r}")
            layers.append(child)
        else:
            raise ValueError(
                f"layer {name!r} is a {type(child).__name__}, which the reference LRP does not support; "
                f"expected one of {', '.join(t.__name__ for t in SUPPORTED)} (merge BatchNorm into the "
                "preceding layer first)"
            )
    if not layers:
        raise ValueError("model has no layers")
    return layers


def assign_rules(model: nn.Module, rules: RuleSpec = "EpsilonPlusFlat", **preset_params: Any) -> list[Rule]:
    """One rule per layer of a sequential ``model``, like a zennit composite.

    Parameters
    ----------
    model : nn.Sequential
        The network (see :func:`sequential_layers`).
    rules : str, Rule, sequence, mapping or callable
        - a preset name from :data:`PRESETS` (``preset_params`` go to its first-layer rule, e.g.
          ``low``/``high`` for ``EpsilonGammaBox``) or a rule name from :data:`RULES` (that rule
          for every ``Linear``/``Conv2d`` layer);
        - a :class:`Rule` for every ``Linear``/``Conv2d`` layer;
        - a sequence with one entry per layer (``None`` = the default for that layer type);
        - a mapping whose keys are layer indices, layer types, or ``"first"`` (value: a rule for
          the first ``Linear``/``Conv2d`` layer, or ``(types, rule)`` for the first layer of those
          types); the most specific key wins: index, then ``"first"``, then type;
        - a callable ``(index, layer) -> Rule or None``.

    Element-wise layers, pooling and flatten get their fixed treatment (:class:`Pass`,
    :class:`Norm`, :class:`WinnerTakesAll`) unless a rule is given for them explicitly.
    """
    layers = sequential_layers(model)
    if isinstance(rules, str):
        if rules in PRESETS:
            rules = PRESETS[rules](**preset_params)
        elif rules in RULES:
            rule = make_rule(rules, **preset_params)
            rules = {nn.Conv2d: rule, nn.Linear: rule}
        else:
            raise ValueError(f"unknown rules {rules!r}; expected a preset {sorted(PRESETS)} or a rule {sorted(RULES)}")
    if isinstance(rules, Rule):
        rules = {nn.Conv2d: rules, nn.Linear: rules}

    chosen: list[Rule | None]
    if callable(rules) and not isinstance(rules, Mapping):
        chosen = [rules(i, layer) for i, layer in enumerate(layers)]
    elif isinstance(rules, Mapping):
        chosen = [None] * len(layers)
        first = rules.get("first")
        if first is not None:
            types, first_rule = first if isinstance(first, tuple) else (LINEAR_TYPES, first)
            index = next((i for i, layer in enumerate(layers) if isinstance(layer, types)), None)
            if index is not None:
                chosen[index] = first_rule
        for i, layer in enumerate(layers):
            if i in rules:
                chosen[i] = rules[i]
            elif chosen[i] is None:
                chosen[i] = next((r for k, r in rules.items() if isinstance(k, type) and isinstance(layer, k)), None)
    elif isinstance(rules, Sequence):
        if len(rules) != len(layers):
            raise ValueError(f"rules has {len(rules)} entries but the model has {len(layers)} layers")
        chosen = list(rules)
    else:
        raise ValueError(f"rules must be a name, Rule, sequence, mapping or callable; got {type(rules).__name__}")

    out: list[Rule] = []
    for i, (layer, rule) in enumerate(zip(layers, chosen)):
        rule = _default_rule(layer) if rule is None else rule
        if not isinstance(rule, Rule):
            raise ValueError(f"rule for layer {i} must be a Rule; got {type(rule).__name__}")
        if not isinstance(layer, rule.applies_to) and not isinstance(rule, Pass):
            raise ValueError(f"rule {rule.name!r} cannot be used for layer {i} ({type(layer).__name__})")
        out.append(rule)
    return out


# ---------------------------------------------------------------------------------------------
# the backward pass
# ---------------------------------------------------------------------------------------------
@dataclass
class ReferenceResult:
    """What :func:`lrp` returns.

    Attributes
    ----------
    input : Tensor
        Relevance of the input, same shape as ``x``.
    layers : list of Tensor
        ``layers[i]`` is the relevance at the *input* of layer ``i`` (so ``layers[0] is input``).
    output : Tensor
        The relevance put on the output (by default the target logit, zero elsewhere).
    logits : Tensor
        The model output.
    rules : list of Rule
        The rule used at each layer.
    activations : list of Tensor
        ``activations[i]`` is the input of layer ``i``; the last entry is the output.
    """

    input: torch.Tensor
    layers: list[torch.Tensor]
    output: torch.Tensor
    logits: torch.Tensor
    rules: list[Rule]
    activations: list[torch.Tensor] = field(repr=False)


@torch.no_grad()
def lrp(
    model: nn.Module,
    x: torch.Tensor,
    target: int | Sequence[int] | torch.Tensor | None = None,
    rules: RuleSpec = "EpsilonPlusFlat",
    output_relevance: torch.Tensor | None = None,
    **preset_params: Any,
) -> ReferenceResult:
    """Explain ``model(x)`` with LRP, layer by layer, from the output back to the input.

    Parameters
    ----------
    model : nn.Sequential
        A sequential network of supported layers (see :func:`sequential_layers`).
    x : Tensor
        A batch of inputs, (N, ...) as the model expects.
    target : int, sequence of int or Tensor, optional
        Class to explain, one for all or one per input; ``None`` = the predicted class.
    rules : see :func:`assign_rules`
        Default ``"EpsilonPlusFlat"``.
    output_relevance : Tensor, optional
        The relevance to start from, same shape as the output. Default: the target logit for the
        target class and zero for the others (so the input relevance sums to about the logit).

    Returns
    -------
    ReferenceResult
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim < 2:
        raise ValueError(f"x must be a float tensor (N, ...) with a batch axis; got {x!r:.80}")
    layers = sequential_layers(model)
    chosen = assign_rules(model, rules, **preset_params)

    activations = [x]
    for layer in layers:
        activations.append(layer(activations[-1]))
    logits = activations[-1]

    if output_relevance is None:
        if target is None:
            target = logits.argmax(dim=1)
        target = torch.as_tensor(target, device=logits.device).long().reshape(-1)
        if len(target) == 1:
            target = target.expand(len(logits))
        if len(target) != len(logits):
            raise ValueError(f"target has {len(target)} entries but x has {len(logits)} inputs")
        if bool((target < 0).any()) or bool((target >= logits.shape[1]).any()):
            raise ValueError(f"target must be class indices in [0, {logits.shape[1]}); got {target.tolist()}")
        output_relevance = torch.zeros_like(logits)
        output_relevance[torch.arange(len(logits)), target] = logits[torch.arange(len(logits)), target]
    elif output_relevance.shape != logits.shape:
        raise ValueError(
            f"output_relevance must have the output's shape {tuple(logits.shape)}; got {tuple(output_relevance.shape)}"
        )

    relevance = output_relevance
    per_layer: list[torch.Tensor] = [torch.empty(0)] * len(layers)
    for i in reversed(range(len(layers))):
        relevance = chosen[i](layers[i], activations[i], relevance)
        per_layer[i] = relevance
    return ReferenceResult(per_layer[0], per_layer, output_relevance, logits, chosen, activations)


def relevance_sums(result: ReferenceResult) -> torch.Tensor:
    """Total relevance per input at every layer: (N, L+1), column ``i`` the input of layer ``i``,
    the last column the output. With conserving rules all columns are equal."""
    sums = [r.reshape(len(r), -1).sum(dim=1) for r in result.layers]
    sums.append(result.output.reshape(len(result.output), -1).sum(dim=1))
    return torch.stack(sums, dim=1)


def conservation_error(result: ReferenceResult) -> torch.Tensor:
    """Relative relevance lost (or gained) from output to input, per input:
    ``(sum R_input - sum R_output) / |sum R_output|``."""
    sums = relevance_sums(result)
    return (sums[:, 0] - sums[:, -1]) / sums[:, -1].abs().clamp(min=1e-12)
