"""Layer-wise relevance propagation written out by hand, to be read next to notebook 01.

This module is the *teaching* implementation of LRP: plain torch, no hooks, one short function per
rule, for sequential networks built from ``Linear``, ``Conv2d``, ``ReLU``, ``MaxPool2d``,
``AvgPool2d``/``AdaptiveAvgPool2d`` and ``Flatten`` (``Dropout`` and ``Identity`` pass relevance
through). The rules themselves are in :mod:`xaibias.explain.reference_rules` (re-exported here);
this module assigns them to layers and runs the backward pass. For real models use
:func:`xaibias.explain.attribute`, whose ``method="lrp"`` runs the prepared engine of
:mod:`xaibias.explain.lrp_engine` where it supports the model and zennit otherwise; the tests check
that every rule here gives the same numbers as zennit's hook-based rule (float64, max abs
difference 1e-6).

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
from torch import nn

from .reference_rules import (  # noqa: F401 - the rules are part of this module's interface
    AVG_POOL_TYPES,
    LINEAR_TYPES,
    LRP0,
    PASS_TYPES,
    RULES,
    STABILIZER,
    SUPPORTED,
    AlphaBeta,
    Epsilon,
    Flat,
    Gamma,
    Norm,
    Pass,
    Rule,
    WinnerTakesAll,
    WSquare,
    ZBox,
    ZPlus,
    default_rule,
    make_rule,
    stabilize,
)

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
        rule = default_rule(layer) if rule is None else rule
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
