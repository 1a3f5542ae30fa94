"""Tracing for the prepared LRP engine: the model's forward as a ``torch.fx`` graph, whose leaf
modules are the layers zennit gives rules to, and the checks that decide whether the engine may run
it (unsupported nodes, forward hooks) before :mod:`xaibias.explain.lrp_engine` builds the modified
forward from it.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

__all__ = [
    "LRPEngineUnsupported",
    "Ref",
    "Tracer",
    "eval_bn",
    "forward_hooks",
    "is_densenet_head",
    "is_stochastic_depth",
    "merge_pairs",
    "node_refs",
    "refuse_hooks",
    "resolve",
    "template",
    "template_call",
    "tensor_method",
    "trace_model",
    "unsupported",
    "without_inplace",
]


class LRPEngineUnsupported(ValueError):
    """The prepared engine cannot reproduce zennit on this model (the message names the layer)."""


class Ref:
    """A reference to an earlier step's result inside a call's arguments."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


def template(a: Any) -> Any:
    return fx.node.map_arg(a, lambda n: Ref(n.name))


def resolve(t: Any, env: dict) -> Any:
    if isinstance(t, Ref):
        return env[t.name]
    if isinstance(t, tuple):
        return tuple(resolve(v, env) for v in t)
    if isinstance(t, list):
        return [resolve(v, env) for v in t]
    if isinstance(t, dict):
        return {k: resolve(v, env) for k, v in t.items()}
    return t


def node_refs(t: Any) -> list[str]:
    out: list[str] = []
    fx.node.map_arg(t, lambda n: out.append(n.name) or n)
    return out


class Tracer(fx.Tracer):
    """fx tracer that records, per node, the torchvision residual block and the module it was created in."""

    def __init__(self) -> None:
        super().__init__()
        self._blocks: list[str] = []
        self._owners: list[nn.Module] = []

    def call_module(self, m, forward, args, kwargs):  # noqa: D102
        from torchvision.models.resnet import BasicBlock, Bottleneck

        block = isinstance(m, (BasicBlock, Bottleneck))
        if block:
            if type(m).forward not in (BasicBlock.forward, Bottleneck.forward):
                raise LRPEngineUnsupported(f"{self.path_of_module(m)!r} ({type(m).__name__}) overrides the "
                                           "torchvision block's forward, which zennit's ResNetCanonizer replaces")
            self._blocks.append(self.path_of_module(m))
        self._owners.append(m)
        try:
            return super().call_module(m, forward, args, kwargs)
        finally:
            self._owners.pop()
            if block:
                self._blocks.pop()

    def create_node(self, *args, **kwargs):  # noqa: D102
        node = super().create_node(*args, **kwargs)
        node.meta["xb_block"] = self._blocks[-1] if self._blocks else None
        node.meta["xb_owner"] = self._owners[-1] if self._owners else self.root
        return node


def trace_model(model: nn.Module) -> fx.Graph:
    """Trace in eval mode with DenseNet checkpointing off (both leave the function unchanged), then restore."""
    from torchvision.models.densenet import _DenseLayer

    modes = [(m, m.training) for m in model.modules()]
    dense = [(m, m.memory_efficient) for m in model.modules() if isinstance(m, _DenseLayer)]
    try:
        model.eval()
        for m, _ in dense:
            m.memory_efficient = False
        return Tracer().trace(model)
    except LRPEngineUnsupported:
        raise
    except Exception as exc:  # noqa: BLE001 - fx raises many kinds of errors on untraceable code
        raise LRPEngineUnsupported(f"prepare_lrp could not trace {type(model).__name__} with torch.fx "
                                   f"({type(exc).__name__}: {str(exc)[:200]})") from exc
    finally:
        for m, mode in modes:
            m.training = mode
        for m, flag in dense:
            m.memory_efficient = flag


def merge_pairs(model: nn.Module) -> dict[str, str]:
    """{batch-norm name: linear name} exactly as zennit's SequentialMergeBatchNorm pairs them (leaf order)."""
    from zennit.core import collect_leaves
    from zennit.types import BatchNorm, Linear

    names = {id(m): n for n, m in model.named_modules()}
    pairs, last = {}, None
    for leaf in collect_leaves(model):
        if isinstance(last, Linear) and isinstance(leaf, BatchNorm):
            pairs[names[id(leaf)]] = names[id(last)]
        last = leaf
    return pairs


def unsupported(node: fx.Node, what: str) -> LRPEngineUnsupported:
    return LRPEngineUnsupported(f"prepare_lrp cannot handle {what} at node {node.name!r}; use engine='zennit' "
                                "(attribute() falls back to zennit by itself with engine='auto')")


def eval_bn(mod: nn.Module):
    """The batch norm with its running statistics (eval semantics in any mode), live parameters."""

    def bn(a: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(a, mod.running_mean, mod.running_var, mod.weight, mod.bias, False, 0.0, mod.eps)

    return bn


def without_inplace(mod: nn.Module) -> nn.Module:
    if getattr(mod, "inplace", False):
        mod = copy.copy(mod)  # shares the parameters; only the flag differs
        mod.inplace = False
    return mod


def is_densenet_head(node: fx.Node) -> bool:
    """Is ``node`` an operation of torchvision's ``DenseNet.forward`` (the head DenseNetCanonizer rewrites)?"""
    from torchvision.models.densenet import DenseNet

    owner = node.meta.get("xb_owner")
    return isinstance(owner, DenseNet) and type(owner).forward is DenseNet.forward


def forward_hooks(model: nn.Module) -> list[str]:
    """Names of the modules whose forward has hooks (and ``"<global>"`` for hooks on every module).

    The engine recomputes the forward from the traced graph and never calls the modules, so a hook
    that changes an output (a P-ClArC projection, for example) would silently be skipped."""
    from torch.nn.modules import module as _module

    names = [name or "<model>" for name, m in model.named_modules() if m._forward_hooks or m._forward_pre_hooks]
    if _module._global_forward_hooks or _module._global_forward_pre_hooks:
        names.append("<global>")
    return names


def refuse_hooks(model: nn.Module) -> None:
    hooked = forward_hooks(model)
    if hooked:
        raise LRPEngineUnsupported(f"forward hooks on {', '.join(repr(n) for n in hooked[:5])}"
                                   f"{' ...' if len(hooked) > 5 else ''}: the prepared engine does not run module "
                                   "forwards, so a hook that changes an output would be skipped; zennit runs them")


def is_stochastic_depth(fn) -> bool:
    from torchvision.ops import stochastic_depth

    return fn is stochastic_depth


def tensor_method(name: str):
    """``Tensor.<name>`` as a function of the tensor and the call's other arguments."""
    attr = getattr(torch.Tensor, name)

    def call(t, *args, **kwargs):
        return attr(t, *args, **kwargs)

    call.__name__ = name
    return call


def template_call(fn, tmpl_args: tuple, tmpl_kwargs: dict):
    """``fn`` applied to one tensor with the call's other (constant) arguments."""

    def call(t):
        return fn(t, *tmpl_args[1:], **tmpl_kwargs)

    return call
