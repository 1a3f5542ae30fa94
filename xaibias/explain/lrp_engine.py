"""A prepared, hook-free LRP engine: zennit's numbers from one autograd pass, differentiable in the parameters.

:func:`prepare_lrp` reads a model once: it traces the forward with ``torch.fx``, finds the batch
norms zennit's canonizers would merge (``SequentialMergeBatchNorm``, ``ResNetCanonizer``) and assigns
each layer the rule the composite gives it (zennit's order: the first layer in ``named_modules``
gets the first-layer rule). The user's model is never changed: the engine keeps references to its
modules and computes the merged, rule-modified parameters from the live parameters.

:class:`PreparedLRP` then explains a batch with a modified forward whose values are the canonized
model's outputs and whose gradient is the LRP rule of every layer (see
:mod:`xaibias.explain.lrp_rules`), followed by one ``torch.autograd.grad``. No hooks are attached.

- ``create_graph=False`` (default): the folded and modified parameters are computed once and
  reused until a parameter or buffer changes (their version counters are checked on every call).
- ``create_graph=True``: the parameters are folded inside the call from the live tensors, and the
  map keeps its graph, so a loss on it can be back-propagated to the model's parameters (batch-norm
  ``weight``/``bias`` included). This runs the forward twice (once for the values, once for the
  gradient path).

Supported: ``Conv2d`` (zero padding), ``Linear``, ``BatchNorm1d/2d`` directly after one of them,
``ReLU`` (module or function), ``MaxPool2d``, ``AvgPool2d``/``AdaptiveAvgPool2d`` (Norm rule),
``Flatten``/``torch.flatten``/``view``/``reshape``, ``Dropout``/``Identity``, and torchvision
``BasicBlock``/``Bottleneck`` residual sums (Norm rule, as zennit's ``ResNetCanonizer``). That covers
``small_vgg``, ``small_resnet``, ``vgg*`` and ``resnet*``. Anything else raises
:class:`LRPEngineUnsupported` naming the layer; :func:`xaibias.explain.attribute` then uses zennit.

Batch norm always uses its running statistics and dropout is off (eval semantics) whatever the
model's mode, as :func:`~xaibias.explain.attribute` does; running statistics are never updated.
"""

from __future__ import annotations

import math
import operator
import weakref
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from .lrp_rules import (
    STABILIZER,
    AlphaBetaRule,
    EpsilonRule,
    FlatRule,
    GammaRule,
    LinearRule,
    Relay,
    ZBoxRule,
    ZPlusRule,
    ratio,
)

__all__ = ["prepare_lrp", "PreparedLRP", "LRPEngineUnsupported", "ENGINE_COMPOSITES"]

ENGINE_COMPOSITES: tuple[str, ...] = (
    "EpsilonPlus", "EpsilonPlusFlat", "EpsilonAlpha2Beta1", "EpsilonAlpha2Beta1Flat", "EpsilonGammaBox", "Epsilon",
)
_LINEAR = (nn.Conv2d, nn.Linear)
_BN = (nn.BatchNorm1d, nn.BatchNorm2d)


class LRPEngineUnsupported(ValueError):
    """The prepared engine cannot reproduce zennit on this model (the message names the layer)."""


def _rules(composite: str, epsilon: float, low, high) -> tuple[LinearRule, LinearRule, LinearRule | None, tuple]:
    """(conv rule, linear rule, first-layer rule, module types the first-layer rule applies to)."""
    from zennit.types import Convolution, Linear

    eps = EpsilonRule(STABILIZER)
    if composite == "Epsilon":
        e = EpsilonRule(epsilon)
        return e, e, None, ()
    if composite in ("EpsilonPlus", "EpsilonPlusFlat"):
        first = (FlatRule(), Linear) if composite.endswith("Flat") else (None, ())
        return ZPlusRule(), eps, *first
    if composite in ("EpsilonAlpha2Beta1", "EpsilonAlpha2Beta1Flat"):
        first = (FlatRule(), Linear) if composite.endswith("Flat") else (None, ())
        return AlphaBetaRule(2.0, 1.0), eps, *first
    if composite == "EpsilonGammaBox":
        return GammaRule(0.25), eps, ZBoxRule(low, high), Convolution
    raise LRPEngineUnsupported(f"the prepared engine has no composite {composite!r}; it knows {ENGINE_COMPOSITES}")


class _Tracer(fx.Tracer):
    """fx tracer that records which torchvision residual block each node was created in."""

    def __init__(self) -> None:
        super().__init__()
        self._blocks: list[str] = []

    def call_module(self, m, forward, args, kwargs):  # noqa: D102
        from torchvision.models.resnet import BasicBlock, Bottleneck

        block = isinstance(m, (BasicBlock, Bottleneck))
        if block:
            if type(m).forward not in (BasicBlock.forward, Bottleneck.forward):
                raise LRPEngineUnsupported(f"{self.path_of_module(m)!r} ({type(m).__name__}) overrides the "
                                           "torchvision block's forward, which zennit's ResNetCanonizer replaces")
            self._blocks.append(self.path_of_module(m))
        try:
            return super().call_module(m, forward, args, kwargs)
        finally:
            if block:
                self._blocks.pop()

    def create_node(self, *args, **kwargs):  # noqa: D102
        node = super().create_node(*args, **kwargs)
        node.meta["xb_block"] = self._blocks[-1] if self._blocks else None
        return node


def _merge_pairs(model: nn.Module) -> dict[str, str]:
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


def _unsupported(node: fx.Node, what: str) -> LRPEngineUnsupported:
    return LRPEngineUnsupported(f"prepare_lrp cannot handle {what} at node {node.name!r}; use engine='zennit' "
                                "(attribute() falls back to zennit by itself with engine='auto')")


class PreparedLRP:
    """LRP for one model and composite; call it as ``engine(x, target)``. Made by :func:`prepare_lrp`."""

    def __init__(self, model: nn.Module, composite: str = "EpsilonPlusFlat", canonizers: str | None = "auto",
                 epsilon: float = 1e-6, low: float | torch.Tensor = 0.0, high: float | torch.Tensor = 1.0) -> None:
        from .attribution import COMPOSITES, auto_canonizers

        if not isinstance(composite, str):
            raise LRPEngineUnsupported(f"the prepared engine takes a composite name, not {type(composite).__name__}")
        if composite not in COMPOSITES:
            raise ValueError(f"unknown composite {composite!r}; choose one of {', '.join(COMPOSITES)}")
        if canonizers not in ("auto", None):
            raise LRPEngineUnsupported("the prepared engine supports canonizers='auto' or None, not a custom list")
        # a weak reference: attribute() caches engines in a WeakKeyDictionary keyed by the model, which
        # a strong reference from the value would keep alive forever
        self._model = weakref.ref(model)
        self._model_type = type(model).__name__
        self.composite, self.epsilon = composite, float(epsilon)
        self.low, self.high = low, high
        conv_rule, lin_rule, first_rule, first_types = _rules(composite, epsilon, low, high)
        resnet = False
        if canonizers == "auto":
            kinds = {type(c).__name__ for c in auto_canonizers(model)}
            if "DenseNetCanonizer" in kinds:
                raise LRPEngineUnsupported("prepare_lrp does not handle DenseNet yet (concatenations and batch norms "
                                           "after them); use engine='zennit'")
            resnet = "ResNetCanonizer" in kinds
        pairs = _merge_pairs(model) if canonizers == "auto" else {}
        modules = dict(model.named_modules())
        first_name = next((n for n, m in modules.items() if first_types and isinstance(m, first_types)), None)
        try:
            tracer = _Tracer()
            graph = tracer.trace(model)
        except LRPEngineUnsupported:
            raise
        except Exception as exc:  # noqa: BLE001 - fx raises many kinds of errors on untraceable code
            raise LRPEngineUnsupported(f"prepare_lrp could not trace {type(model).__name__} with torch.fx "
                                       f"({type(exc).__name__}: {str(exc)[:200]})") from exc
        self.steps: list[tuple] = []
        self.rules: dict[str, str] = {}
        users = {n.name: len(n.users) for n in graph.nodes}
        seen_linear: set[str] = set()
        self.input_name = None
        for node in graph.nodes:
            op, tgt = node.op, node.target
            args = [a.name if isinstance(a, fx.Node) else a for a in node.args]
            if op == "placeholder":
                if self.input_name is not None:
                    raise _unsupported(node, "a second forward argument")
                self.input_name = node.name
                self.steps.append(("input", node.name))
            elif op == "output":
                if not isinstance(node.args[0], fx.Node):
                    raise _unsupported(node, "an output that is not a single tensor")
                self.steps.append(("output", node.args[0].name))
            elif op == "call_module":
                mod = modules[tgt]
                if isinstance(mod, _LINEAR):
                    if tgt in seen_linear:
                        raise _unsupported(node, f"the layer {tgt!r} used twice")
                    seen_linear.add(tgt)
                    if isinstance(mod, nn.Conv2d) and mod.padding_mode != "zeros":
                        raise _unsupported(node, f"Conv2d {tgt!r} with padding_mode={mod.padding_mode!r}")
                    if type(mod) not in _LINEAR:
                        raise _unsupported(node, f"the layer {tgt!r} of type {type(mod).__name__}")
                    if tgt == first_name:
                        rule = first_rule
                        if rule.probe != "input" and args[0] != self.input_name:
                            raise _unsupported(node, f"the first layer {tgt!r} not reading the model input")
                    else:
                        rule = conv_rule if isinstance(mod, nn.Conv2d) else lin_rule
                    self.rules[tgt] = repr(rule)
                    self.steps.append(["linear", node.name, args[0], mod, None, rule])
                elif isinstance(mod, _BN):
                    src = self._step(args[0])
                    if pairs.get(tgt) is None or src is None or src[0] != "linear" or src[3] is not modules[pairs[tgt]]:
                        raise _unsupported(node, f"BatchNorm {tgt!r} that does not directly follow a linear layer "
                                                 "(zennit would leave it unmerged)")
                    if users[args[0]] != 1:
                        raise _unsupported(node, f"the output of {pairs[tgt]!r} used besides BatchNorm {tgt!r}")
                    if mod.running_mean is None or mod.weight is None:
                        raise _unsupported(node, f"BatchNorm {tgt!r} without running statistics or affine parameters")
                    src[4] = mod
                    self.steps.append(("alias", node.name, args[0]))
                elif type(mod) is nn.ReLU:
                    self.steps.append(("grad", node.name, args[0], F.relu, (), True))
                elif type(mod) in (nn.MaxPool2d, nn.Flatten):
                    if getattr(mod, "return_indices", False):
                        raise _unsupported(node, f"MaxPool2d {tgt!r} with return_indices=True")
                    self.steps.append(("grad", node.name, args[0], mod, (), None))
                elif type(mod) in (nn.AvgPool2d, nn.AdaptiveAvgPool2d):
                    self.steps.append(("norm", node.name, [args[0]], mod))
                elif type(mod) in (nn.Dropout, nn.Identity):
                    self.steps.append(("alias", node.name, args[0]))
                else:
                    raise _unsupported(node, f"the layer {tgt!r} of type {type(mod).__name__}")
            elif op == "call_function" and tgt in (operator.add, torch.add, operator.iadd):
                if not (resnet and node.meta.get("xb_block") and len(args) == 2 and not node.kwargs
                        and all(isinstance(a, fx.Node) for a in node.args)):
                    raise _unsupported(node, "an addition outside a torchvision residual block (zennit passes the "
                                             "plain gradient there)")
                self.steps.append(("norm", node.name, args, None))
            elif op == "call_function" and tgt in (F.relu, torch.relu):
                self.steps.append(("grad", node.name, args[0], F.relu, (), True))
            elif (op == "call_function" and tgt is torch.flatten) or (op == "call_method" and tgt in (
                    "flatten", "view", "reshape")):
                if any(isinstance(a, fx.Node) for a in node.args[1:]) or node.kwargs:
                    raise _unsupported(node, f"{tgt} with computed arguments")
                fn = torch.flatten if tgt in (torch.flatten, "flatten") else getattr(torch.Tensor, tgt)
                self.steps.append(("grad", node.name, args[0], fn, tuple(args[1:]), None))
            else:
                name = getattr(tgt, "__name__", str(tgt))
                raise _unsupported(node, f"the operation {op} {name!r}")
        if first_name is not None and first_name not in self.rules:
            raise LRPEngineUnsupported(f"the first layer {first_name!r} is not called in the forward")
        self._params = self._collect()
        self._signature = self._current_signature()
        self._cache_key: tuple | None = None
        self._cache: list[dict] | None = None

    # -- bookkeeping -----------------------------------------------------------------------------
    def _step(self, name: str):
        return next((s for s in self.steps if s[1] == name), None)

    def _collect(self) -> list[torch.Tensor]:
        out = []
        for s in self.steps:
            if s[0] == "linear":
                for m in (s[3], s[4]):
                    if m is not None:
                        out += [t for t in (*m.parameters(recurse=False), *m.buffers(recurse=False)) if t is not None]
        return out

    @property
    def model(self) -> nn.Module | None:
        """The explained model (None once it has been deleted; the engine keeps its layers)."""
        return self._model()

    def _current_signature(self) -> tuple | None:
        model = self.model
        return None if model is None else tuple(id(m) for m in model.modules())

    def _check_unchanged(self) -> None:
        current = self._current_signature()
        if current is not None and current != self._signature:
            raise RuntimeError("the model's modules changed since prepare_lrp(); call prepare_lrp(model) again")

    def _params_key(self) -> tuple:
        ts = self._collect()
        return tuple((id(t), t._version, t.data_ptr(), t.dtype, t.device) for t in ts)

    def _derive(self) -> list[dict]:
        """Folded weight/bias, emptied-batch-norm scale ``k`` and the rule's parameters, per linear step."""
        out = []
        for s in self.steps:
            if s[0] != "linear":
                continue
            _, _, _, mod, bn, rule = s
            w, b = mod.weight, mod.bias
            k = 1.0
            if bn is not None:  # zennit's MergeBatchNorm.merge_batch_norm, from the live tensors
                scale = bn.weight / (bn.running_var + bn.eps) ** 0.5
                index = (slice(None), *((None,) * (w.ndim - 1)))
                b0 = torch.zeros(1, dtype=w.dtype, device=w.device) if b is None else b
                w, b = w * scale[index], (b0 - bn.running_mean) * scale + bn.bias
                k = 1.0 / math.sqrt(1.0 + bn.eps)  # the emptied batch norm keeps its eps
            out.append({"w": w, "b": b, "k": k, "p": rule.derive(w, b)})
        return out

    def derived(self, live: bool = False) -> list[dict]:
        """The per-layer derived parameters; cached (detached) unless ``live`` (then with the graph)."""
        if live:
            return self._derive()
        key = self._params_key()
        if key != self._cache_key:
            with torch.no_grad():
                self._cache = self._derive()
            self._cache_key = key
        return self._cache

    def __repr__(self) -> str:
        return (f"PreparedLRP({self._model_type}, composite={self.composite!r}, "
                f"{len(self.rules)} linear layers, rules={self.rules})")

    # -- the modified forward --------------------------------------------------------------------
    @staticmethod
    def _lin(mod: nn.Module):
        if isinstance(mod, nn.Linear):
            return F.linear

        def conv(a, w, b):
            return F.conv2d(a, w, b, mod.stride, mod.padding, mod.dilation, mod.groups)

        return conv

    def _run(self, x: torch.Tensor, cg: bool):
        """Return (real logits, relay logits, probes). ``real`` carries the parameter graph, ``relay``
        the gradient path to the probes; without ``create_graph`` (``cg``) they are the same tensors."""
        derived = self.derived(live=cg)
        real: dict[str, Any] = {}
        relay: dict[str, Any] = {}
        nonneg: dict[str, bool] = {}
        p = x.detach().requires_grad_(True)
        probes: list[torch.Tensor] = [p]
        i = 0
        for s in self.steps:
            kind, name = s[0], s[1]
            if kind == "input":
                real[name], relay[name], nonneg[name] = (x if cg else p), p, bool(x.min() >= 0)
            elif kind == "alias":
                real[name], relay[name], nonneg[name] = real[s[2]], relay[s[2]], nonneg[s[2]]
            elif kind == "grad":
                _, _, src, fn, extra, positive = s
                real[name] = fn(real[src], *extra)
                relay[name] = fn(relay[src], *extra) if cg else real[name]
                nonneg[name] = bool(positive) or nonneg[src]
            elif kind == "norm":  # zennit's Norm rule on average pooling and residual sums
                _, _, srcs, mod = s
                z_relay = relay[srcs[0]] + relay[srcs[1]] if mod is None else mod(relay[srcs[0]])
                if cg:
                    z_real = real[srcs[0]] + real[srcs[1]] if mod is None else mod(real[srcs[0]])
                else:
                    z_real = z_relay.detach()
                nonneg[name] = all(nonneg[a] for a in srcs)
                with torch.set_grad_enabled(cg):
                    r = ratio(z_real, z_real, STABILIZER, 1.0, nonneg[name], inplace=not cg)
                relay[name] = Relay.apply(z_real, z_relay, r)
                real[name] = z_real if cg else relay[name]
            elif kind == "linear":
                _, _, src, mod, bn, rule = s
                d = derived[i]
                i += 1
                lin = self._lin(mod)
                a_real, a_relay, box_real, box_relay = real[src], relay[src], None, None
                if src == self.input_name and rule.probe != "input":
                    a_real, a_relay, box_real, box_relay = self._probe(rule, x, p, probes)
                groups = rule.groups(a_relay, d["p"], lin, nonneg[src], box_relay)
                with torch.set_grad_enabled(cg):
                    if cg:
                        zs = [g[0] for g in rule.groups(a_real, d["p"], lin, nonneg[src], box_real)]
                    else:
                        zs = [g[0].detach() for g in groups]
                    # the epsilon rule's z is the layer's output itself
                    y = zs[0] if isinstance(rule, EpsilonRule) else lin(real[src], d["w"], d["b"])
                    val = y * d["k"] if d["k"] != 1.0 else y
                    rs = [ratio(val, z, eps, coef * d["k"], positive, inplace=not cg)
                          for z, (_, eps, coef, positive) in zip(zs, groups)]
                relay[name] = Relay.apply(val, *(g[0] for g in groups), *rs)
                real[name] = val if cg else relay[name]
                nonneg[name] = False
            elif kind == "output":
                return real[s[1]], relay[s[1]], probes
        raise RuntimeError("the traced graph has no output")

    @staticmethod
    def _probe(rule: LinearRule, x: torch.Tensor, p: torch.Tensor, probes: list):
        """First-layer inputs of Flat and ZBox: (real input, probe input, real box, probe box)."""
        if rule.probe == "ones":
            ones = torch.ones_like(x)
            q = ones.clone().requires_grad_(True)
            probes.append(q)
            return ones, q, None, None
        low = torch.as_tensor(rule.low, dtype=x.dtype, device=x.device).expand_as(x)
        high = torch.as_tensor(rule.high, dtype=x.dtype, device=x.device).expand_as(x)
        qs = [t.detach().clone().requires_grad_(True) for t in (low, high)]
        probes.extend(qs)
        return x, p, (low, high), tuple(qs)

    def __call__(self, x: torch.Tensor, target: Any = None, create_graph: bool = False, init: str = "logit",
                 pool: str | None = "sum") -> torch.Tensor:
        """Relevance of ``x`` (N,C,H,W) for ``target``: (N,H,W) (``pool="sum"``) or (N,C,H,W) (``pool=None``).

        Same conventions as :func:`xaibias.explain.attribute` (``target=None``: the prediction;
        ``init="logit"``: start from the target logit, ``"one"``: from 1). The result is on the
        model's device in the parameters' dtype; with ``create_graph=True`` it is differentiable with
        respect to the model's parameters.
        """
        from .attribution import resolve_target

        if init not in ("logit", "one"):
            raise ValueError(f"init must be 'logit' or 'one'; got {init!r}")
        if pool not in ("sum", None):
            raise ValueError(f"pool must be 'sum' or None; got {pool!r}")
        if not isinstance(x, torch.Tensor) or x.ndim < 2 or not x.is_floating_point():
            raise ValueError(f"x must be a float tensor (N,C,H,W); got {type(x).__name__} "
                             f"{tuple(getattr(x, 'shape', ()))}")
        self._check_unchanged()
        ref = self._params[0] if self._params else None
        if ref is not None:
            x = x.to(ref.device, ref.dtype)
        x = x.detach()
        with torch.enable_grad():
            logits, out, probes = self._run(x, create_graph)
            if logits.ndim != 2:
                raise LRPEngineUnsupported(f"the model output must be (N, classes); got {tuple(logits.shape)}")
            t = resolve_target(target, len(x), logits.detach()).to(logits.device)
            onehot = F.one_hot(t, logits.shape[1]).to(logits.dtype)
            if init == "one":
                sel = logits.detach().gather(1, t[:, None])
                if bool((sel == 0).any()):
                    raise LRPEngineUnsupported("init='one' with a target logit of exactly 0")
                onehot = onehot / sel
            grads = torch.autograd.grad(out, probes, grad_outputs=onehot, create_graph=create_graph,
                                        allow_unused=True)
        rel = sum(p.detach() * g for p, g in zip(probes, grads) if g is not None)
        return rel.sum(1) if pool == "sum" else rel


def prepare_lrp(model: nn.Module, composite: str = "EpsilonPlusFlat", canonizers: str | None = "auto",
                epsilon: float = 1e-6, low: float | torch.Tensor = 0.0, high: float | torch.Tensor = 1.0) -> PreparedLRP:
    """Prepare LRP for ``model`` once; the result explains batches like ``attribute(method="lrp")``.

    Parameters
    ----------
    model : nn.Module
        A network of supported layers (see :mod:`xaibias.explain.lrp_engine`); it is not modified.
    composite : str
        One of :data:`ENGINE_COMPOSITES` (zennit's composites of the same name, and xaibias's
        ``"Epsilon"`` with ``epsilon``).
    canonizers : "auto" or None
        ``"auto"`` merges batch norms and treats residual sums as :func:`auto_canonizers` would.
    low, high : float or tensor
        Input bounds for the ZBox rule of ``"EpsilonGammaBox"``.

    Raises
    ------
    LRPEngineUnsupported
        When a layer or operation has no exact equivalent here (the message names it).

    Examples
    --------
    >>> engine = prepare_lrp(model, "EpsilonPlusFlat")                       # doctest: +SKIP
    >>> R = engine(images, target=1)                                           # (N,H,W)
    >>> loss = (engine(x, y, create_graph=True) * mask).abs().sum(); loss.backward()
    """
    return PreparedLRP(model, composite, canonizers, epsilon=epsilon, low=low, high=high)

