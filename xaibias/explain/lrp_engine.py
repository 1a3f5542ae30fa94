"""A prepared, hook-free LRP engine: zennit's numbers from one autograd pass, differentiable in the parameters.

:func:`prepare_lrp` reads a model once: it traces the forward with ``torch.fx``, finds the batch
norms zennit's canonizers would merge (``SequentialMergeBatchNorm``, ``ResNetCanonizer``,
:class:`~xaibias.explain.DenseNetCanonizer`) and assigns each layer the rule the composite gives it
(zennit's order: the first layer in ``named_modules`` gets the first-layer rule). The user's model
is never changed: the engine keeps references to its modules and computes the merged,
rule-modified parameters from the live parameters.

:class:`PreparedLRP` then explains a batch with a modified forward whose values are the canonized
model's outputs and whose gradient is zennit's backward pass (see :mod:`xaibias.explain.lrp_rules`),
followed by one ``torch.autograd.grad``. No hooks are attached.

- ``create_graph=False`` (default): one forward; the folded and modified parameters are computed
  once and reused until a parameter or buffer changes (their version counters are checked on every
  call).
- ``create_graph=True``: the parameters are folded inside the call from the live tensors, and the
  map keeps its graph, so a loss on it can be back-propagated to the model's parameters (batch-norm
  ``weight``/``bias`` included). This runs the forward twice (once for the values, once for the
  gradient path).

What zennit does, the engine does:

- ``Conv2d`` (zero padding, any groups) and ``Linear`` get the composite's rules, with a batch norm
  merged in where zennit's canonizer merges one;
- modules zennit calls activations (``ReLU``, ``ReLU6``, ``SiLU``, ``Sigmoid``, ``Hardswish``,
  ``Hardsigmoid``, ``Tanh``, ``GELU``, ...) get ``Pass``: the relevance goes through unchanged;
- ``AvgPool2d``/``AdaptiveAvgPool2d`` modules, the residual sums of torchvision's
  ``BasicBlock``/``Bottleneck`` (zennit's ``ResNetCanonizer``) and DenseNet's head pooling get
  ``Norm``; DenseNet's batch norms after a concatenation get ``Pass`` (as the canonizer sets);
- everything zennit leaves without a rule passes the ordinary gradient: max-pooling, reshapes,
  ``torch.cat``, additions outside torchvision blocks (MobileNet, EfficientNet), element-wise
  products such as squeeze-and-excitation's ``scale * x`` or an attention gate
  ``x * torch.sigmoid(g)``, functional activations (``torch.sigmoid``, ``F.silu``, ``F.relu``, ...),
  functional pooling and batch norms no canonizer merges.

That covers the zoo (``small_vgg``, ``small_resnet``, ``small_densenet``, ``small_efficientnet``,
``small_mobilenet``, ``vgg16``, ``resnet50``, ``densenet121``, ``efficientnet_b0``,
``mobilenet_v2``) and torchvision's ``mobilenet_v3``. Anything else raises
:class:`LRPEngineUnsupported` naming the layer; :func:`xaibias.explain.attribute` then uses zennit.

Batch norm always uses its running statistics and dropout is off (eval semantics) whatever the
model's mode, as :func:`~xaibias.explain.attribute` does; running statistics are never updated.

``torch.compile(engine)`` works on the CPU (inductor; graph breaks where the engine reads a value,
e.g. whether the input is non-negative) and gives the same maps, but it was not faster than eager
mode here (small_vgg, batch 64: 1.0-1.2x the eager time, after about a minute of compilation), so
the engine runs eagerly.
"""

from __future__ import annotations

import math
import operator
import weakref
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from ._lrp_trace import (
    LRPEngineUnsupported,
    Ref,
    eval_bn,
    is_densenet_head,
    is_stochastic_depth,
    merge_pairs,
    node_refs,
    refuse_hooks,
    resolve,
    template,
    template_call,
    tensor_method,
    trace_model,
    unsupported,
    without_inplace,
)
from ._shared import COMPOSITES, resolve_target
from .canonizers import auto_canonizers, find_densenet_batchnorms
from .lrp_rules import (
    STABILIZER,
    AlphaBetaRule,
    EpsilonRule,
    FlatRule,
    GammaRule,
    LinearRule,
    PassThrough,
    Relay,
    ZBoxRule,
    ZPlusRule,
    inverse,
)

__all__ = ["prepare_lrp", "PreparedLRP", "LRPEngineUnsupported"]

_LINEAR = (nn.Conv2d, nn.Linear)
_BN = (nn.BatchNorm1d, nn.BatchNorm2d)
_DROP = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity)
_POSITIVE_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.Sigmoid, nn.Hardsigmoid, nn.Softplus)

# operations zennit leaves without a rule whose Jacobian is constant or piecewise constant: the
# ordinary gradient, on the gradient path as on the value path. value: does a non-negative input stay
# non-negative (True: the output is always >= 0; None: when all tensor inputs are; False: unknown)
_GRAD_FUNCTIONS: dict[Any, bool | None] = {
    operator.add: None, operator.iadd: None, torch.add: None, operator.sub: False, operator.isub: False,
    torch.sub: False, operator.neg: False, torch.cat: None, torch.concat: None, torch.flatten: None,
    torch.reshape: None, torch.mean: None, torch.sum: None, torch.amax: None, torch.permute: None,
    torch.squeeze: None, torch.unsqueeze: None, torch.transpose: None, operator.getitem: None,
    F.relu: True, torch.relu: True, F.relu6: True, F.hardtanh: False, F.max_pool2d: None, F.avg_pool2d: None,
    F.adaptive_avg_pool2d: None, F.adaptive_max_pool2d: None,
}
_GRAD_METHODS: dict[str, bool | None] = {
    "add": None, "add_": None, "sub": False, "sub_": False, "flatten": None, "view": None, "reshape": None,
    "mean": None, "sum": None, "amax": None, "permute": None, "squeeze": None, "unsqueeze": None,
    "contiguous": None, "transpose": None, "relu": True, "relu_": True, "expand": None, "expand_as": None,
}
# element-wise functions with a smooth Jacobian (the parameter gradient needs its derivative); value:
# the output is always >= 0
_SMOOTH_FUNCTIONS: dict[Any, bool] = {
    torch.sigmoid: True, F.sigmoid: True, F.silu: False, F.hardsigmoid: True, F.hardswish: False,
    torch.tanh: False, F.tanh: False, F.gelu: False, F.elu: False, F.softplus: True, F.leaky_relu: False,
    F.mish: False,
}
_SMOOTH_METHODS: dict[str, bool] = {"sigmoid": True, "sigmoid_": True, "tanh": False, "tanh_": False}
_MUL = (operator.mul, operator.imul, torch.mul)
_MUL_METHODS = ("mul", "mul_")
_DIV = (operator.truediv, operator.itruediv, torch.div)
_META_METHODS = ("size", "dim")


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
    raise LRPEngineUnsupported(f"the prepared engine has no composite {composite!r}; it knows {COMPOSITES}")


class PreparedLRP:
    """LRP for one model and composite; call it as ``engine(x, target)``. Made by :func:`prepare_lrp`."""

    def __init__(self, model: nn.Module, composite: str = "EpsilonPlusFlat", canonizers: str | None = "auto",
                 epsilon: float = 1e-6, low: float | torch.Tensor = 0.0, high: float | torch.Tensor = 1.0) -> None:
        from zennit.types import Activation

        if not isinstance(composite, str):
            raise LRPEngineUnsupported(f"the prepared engine takes a composite name, not {type(composite).__name__}")
        if composite not in COMPOSITES:
            raise ValueError(f"unknown composite {composite!r}; choose one of {', '.join(COMPOSITES)}")
        if canonizers not in ("auto", None):
            raise LRPEngineUnsupported("the prepared engine supports canonizers='auto' or None, not a custom list")
        refuse_hooks(model)
        # a weak reference: attribute() caches engines in a WeakKeyDictionary keyed by the model, which
        # a strong reference from the value would keep alive forever
        self._model = weakref.ref(model)
        self._model_type = type(model).__name__
        self.composite, self.epsilon = composite, float(epsilon)
        self.low, self.high = low, high
        conv_rule, lin_rule, first_rule, first_types = _rules(composite, epsilon, low, high)
        kinds = {type(c).__name__ for c in auto_canonizers(model)} if canonizers == "auto" else set()
        resnet, densenet = "ResNetCanonizer" in kinds, "DenseNetCanonizer" in kinds
        after_concat: set[str] = set()
        if densenet:  # DenseNetCanonizer: structural pairs, the emptied batch norm gets eps = 0 (k = 1)
            merge, concat_norms = find_densenet_batchnorms(model)
            pairs, after_concat, exact = {bn: lin for lin, bn in merge}, set(concat_norms), True
        else:
            pairs, exact = (merge_pairs(model) if canonizers == "auto" else {}), False
        modules = dict(model.named_modules())
        first_name = next((n for n, m in modules.items() if first_types and isinstance(m, first_types)), None)
        graph = trace_model(model)
        self.steps: list[list] = []
        self.rules: dict[str, str] = {}
        by_name: dict[str, list] = {}
        users = {n.name: len(n.users) for n in graph.nodes}
        seen_linear: set[str] = set()
        meta: set[str] = set()  # nodes whose values are not tensors (sizes)
        self.input_name = None

        def add(step: list) -> None:
            self.steps.append(step)
            by_name[step[1]] = step

        for node in graph.nodes:
            op, tgt, name = node.op, node.target, node.name
            args = [a.name if isinstance(a, fx.Node) else a for a in node.args]
            tensor_args = [a for a in node.args if isinstance(a, fx.Node)]
            if op == "placeholder":
                if self.input_name is not None:
                    raise unsupported(node, "a second forward argument")
                self.input_name = name
                add(["input", name])
            elif op == "output":
                if not isinstance(node.args[0], fx.Node):
                    raise unsupported(node, "an output that is not a single tensor")
                add(["output", node.args[0].name])
            elif op == "get_attr":
                raise unsupported(node, f"the tensor {tgt!r} used directly in the forward (no layer holds it)")
            elif op == "call_module":
                mod = modules[tgt]
                if len(node.args) != 1 or node.kwargs or not isinstance(node.args[0], fx.Node):
                    raise unsupported(node, f"the layer {tgt!r} called with other than one tensor")
                src = args[0]
                if isinstance(mod, _LINEAR):
                    if tgt in seen_linear:
                        raise unsupported(node, f"the layer {tgt!r} used twice")
                    seen_linear.add(tgt)
                    if type(mod) not in _LINEAR:
                        raise unsupported(node, f"the layer {tgt!r} of type {type(mod).__name__}")
                    if isinstance(mod, nn.Conv2d) and mod.padding_mode != "zeros":
                        raise unsupported(node, f"Conv2d {tgt!r} with padding_mode={mod.padding_mode!r}")
                    if tgt == first_name:
                        rule = first_rule
                        if rule.probe != "input" and src != self.input_name:
                            raise unsupported(node, f"the first layer {tgt!r} not reading the model input")
                    else:
                        rule = conv_rule if isinstance(mod, nn.Conv2d) else lin_rule
                    self.rules[tgt] = repr(rule)
                    add(["linear", name, src, mod, None, rule, exact])
                elif isinstance(mod, _BN) and type(mod) in _BN:
                    if mod.running_mean is None:
                        raise unsupported(node, f"BatchNorm {tgt!r} without running statistics")
                    if tgt in pairs:
                        prev = by_name.get(src)
                        if prev is None or prev[0] != "linear" or prev[3] is not modules[pairs[tgt]]:
                            raise unsupported(node, f"BatchNorm {tgt!r} that zennit merges into {pairs[tgt]!r} "
                                                     "but that does not directly follow it here")
                        if users[src] != 1:
                            raise unsupported(node, f"the output of {pairs[tgt]!r} used besides BatchNorm {tgt!r}")
                        if mod.weight is None:
                            raise unsupported(node, f"BatchNorm {tgt!r} without affine parameters")
                        prev[4] = mod
                        add(["alias", name, src])
                    elif tgt in after_concat:  # DenseNetCanonizer gives it Pass
                        add(["pass", name, src, eval_bn(mod), False])
                    else:  # no canonizer merges it: zennit passes the ordinary gradient
                        add(["grad", name, eval_bn(mod), (Ref(src),), {}, False, [src]])
                elif isinstance(mod, Activation) and not isinstance(mod, nn.MultiheadAttention):
                    add(["pass", name, src, without_inplace(mod), isinstance(mod, _POSITIVE_ACTIVATIONS)])
                elif type(mod) in (nn.MaxPool2d, nn.AdaptiveMaxPool2d, nn.Flatten):
                    if getattr(mod, "return_indices", False):
                        raise unsupported(node, f"{type(mod).__name__} {tgt!r} with return_indices=True")
                    add(["grad", name, mod, (Ref(src),), {}, None, [src]])
                elif type(mod) in (nn.AvgPool2d, nn.AdaptiveAvgPool2d):
                    add(["norm", name, [src], mod])
                elif type(mod) in _DROP:
                    add(["alias", name, src])
                else:
                    raise unsupported(node, f"the layer {tgt!r} of type {type(mod).__name__}")
            elif op in ("call_function", "call_method"):
                fname = getattr(tgt, "__name__", str(tgt))
                fn = tgt if op == "call_function" else None
                method = tgt if op == "call_method" else None
                refs = node_refs((node.args, node.kwargs))
                kwargs = {k: v for k, v in node.kwargs.items() if k != "inplace"}
                tmpl_args, tmpl_kwargs = template(tuple(node.args)), template(kwargs)
                if method is not None:  # in-place methods (add_, relu_, ...) computed out of place
                    fn = tensor_method(method.rstrip("_"))
                if op == "call_method" and tgt in _META_METHODS or (
                        op == "call_function" and tgt is getattr and len(node.args) == 2
                        and node.args[1] in ("shape", "ndim", "dtype", "device")) or (
                        op == "call_function" and tgt is operator.getitem and args[0] in meta):
                    meta.add(name)
                    add(["meta", name, fn, tmpl_args, tmpl_kwargs])
                elif any(r in meta for r in refs) and not (
                        (op == "call_function" and tgt in _GRAD_FUNCTIONS) or (op == "call_method" and tgt in _GRAD_METHODS)):
                    raise unsupported(node, f"the operation {op} {fname!r} with computed sizes")
                elif op == "call_function" and fname == "stochastic_depth" and is_stochastic_depth(tgt):
                    add(["alias", name, args[0]])  # the identity in eval mode (EfficientNet's MBConv)
                elif (op == "call_function" and tgt in (operator.add, torch.add, operator.iadd)) and resnet \
                        and node.meta.get("xb_block") and len(tensor_args) == 2 and not node.kwargs:
                    add(["norm", name, [a.name for a in tensor_args], None])  # ResNetCanonizer's Sum: Norm
                elif densenet and op == "call_function" and tgt in (F.relu, torch.relu) and is_densenet_head(node):
                    add(["pass", name, args[0], F.relu, True])  # DenseNetCanonizer's head ReLU module
                elif densenet and op == "call_function" and tgt is F.adaptive_avg_pool2d and is_densenet_head(node):
                    add(["norm", name, [args[0]], template_call(F.adaptive_avg_pool2d, tmpl_args, tmpl_kwargs)])
                elif (op == "call_function" and tgt in _MUL) or (op == "call_method" and tgt in _MUL_METHODS):
                    if len(tensor_args) == 2 and not kwargs:
                        add(["mul", name, tensor_args[0].name, tensor_args[1].name])
                    elif len(tensor_args) == 1:  # a constant factor
                        add(["grad", name, operator.mul, tmpl_args, tmpl_kwargs, False, refs])
                    else:
                        raise unsupported(node, f"the product {fname!r} of these arguments")
                elif op == "call_function" and tgt in _DIV and len(tensor_args) == 1 \
                        and isinstance(node.args[0], fx.Node) and not kwargs:
                    add(["grad", name, operator.truediv, tmpl_args, {}, False, refs])
                elif (op == "call_function" and tgt in _GRAD_FUNCTIONS) or (op == "call_method" and tgt in _GRAD_METHODS):
                    positive = _GRAD_FUNCTIONS[tgt] if op == "call_function" else _GRAD_METHODS[tgt]
                    if op == "call_function" and tgt in (operator.iadd, operator.isub):
                        fn = operator.add if tgt is operator.iadd else operator.sub
                    add(["grad", name, fn, tmpl_args, tmpl_kwargs, positive, [r for r in refs if r not in meta]])
                elif (op == "call_function" and tgt in _SMOOTH_FUNCTIONS) or (op == "call_method" and tgt in _SMOOTH_METHODS):
                    if len(tensor_args) != 1 or not isinstance(node.args[0], fx.Node) or len(refs) != 1:
                        raise unsupported(node, f"the function {fname!r} of more than one tensor")
                    positive = _SMOOTH_FUNCTIONS[tgt] if op == "call_function" else _SMOOTH_METHODS[tgt]
                    add(["smooth", name, fn, tmpl_args, tmpl_kwargs, positive, args[0]])
                else:
                    raise unsupported(node, f"the operation {op} {fname!r}")
            else:
                raise unsupported(node, f"the node kind {op!r}")
        if first_name is not None and first_name not in self.rules:
            raise LRPEngineUnsupported(f"the first layer {first_name!r} is not called in the forward")
        self._lins = {s[1]: self._lin(s[3]) for s in self.steps if s[0] == "linear"}
        self._params = self._collect()
        self._signature = self._current_signature()
        self._cache_key: tuple | None = None
        self._cache: list[dict] | None = None

    # -- bookkeeping -----------------------------------------------------------------------------
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
            _, _, _, mod, bn, rule, exact = s
            w, b = mod.weight, mod.bias
            k = 1.0
            if bn is not None:  # zennit's MergeBatchNorm.merge_batch_norm, from the live tensors
                scale = bn.weight / (bn.running_var + bn.eps) ** 0.5
                index = (slice(None), *((None,) * (w.ndim - 1)))
                b0 = torch.zeros(1, dtype=w.dtype, device=w.device) if b is None else b
                w, b = w * scale[index], (b0 - bn.running_mean) * scale + bn.bias
                # zennit's emptied batch norm keeps its eps; the DenseNet canonizer sets it to 0
                k = 1.0 if exact else 1.0 / math.sqrt(1.0 + bn.eps)
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

        def times(name: str) -> torch.Tensor:  # the rule's final "a *": gradient times the input
            return Relay.apply(relay[name], relay[name], real[name] if cg else relay[name].detach())

        for s in self.steps:
            kind, name = s[0], s[1]
            if kind == "input":
                real[name], relay[name], nonneg[name] = (x if cg else p), p, bool(x.min() >= 0)
            elif kind == "alias":
                real[name], relay[name], nonneg[name] = real[s[2]], relay[s[2]], nonneg[s[2]]
            elif kind == "meta":
                _, _, fn, a, kw = s
                real[name] = relay[name] = fn(*resolve(a, real), **resolve(kw, real))
                nonneg[name] = False
            elif kind == "grad":  # ordinary gradient, (piecewise) constant Jacobian
                _, _, fn, a, kw, positive, srcs = s
                relay[name] = fn(*resolve(a, relay), **resolve(kw, relay))
                real[name] = fn(*resolve(a, real), **resolve(kw, real)) if cg else relay[name]
                nonneg[name] = positive is True or (positive is None and all(nonneg[n] for n in srcs))
            elif kind == "smooth":  # ordinary gradient of an element-wise function
                _, _, fn, a, kw, positive, src = s
                if not cg:
                    relay[name] = real[name] = fn(*resolve(a, relay), **resolve(kw, relay))
                else:  # the derivative at the real values, with their parameter graph
                    xr = real[src] if real[src].requires_grad else real[src].detach().requires_grad_(True)
                    y = fn(*resolve(a, {**real, src: xr}), **resolve(kw, real))
                    (d,) = torch.autograd.grad(y.sum(), xr, create_graph=True)
                    real[name], relay[name] = y, Relay.apply(y, relay[src], d)
                nonneg[name] = positive
            elif kind == "mul":  # ordinary gradient of a product (gates, squeeze-and-excitation)
                _, _, a, b = s
                if not cg:
                    relay[name] = real[name] = relay[a] * relay[b]
                else:
                    y = real[a] * real[b]
                    real[name] = y
                    relay[name] = Relay.apply(y, relay[a].expand_as(y), relay[b].expand_as(y),
                                              real[b].expand_as(y), real[a].expand_as(y))
                nonneg[name] = nonneg[a] and nonneg[b]
            elif kind == "pass":  # zennit's Pass rule: the gradient goes through unchanged
                _, _, src, fn, positive = s
                if cg:
                    y = fn(real[src])
                else:
                    with torch.no_grad():
                        y = fn(relay[src])
                relay[name] = PassThrough.apply(y, relay[src])
                real[name] = y if cg else relay[name]
                nonneg[name] = positive
            elif kind == "norm":  # zennit's Norm rule on average pooling and residual sums
                _, _, srcs, mod = s
                ins = [times(a) for a in srcs]
                z_relay = ins[0] + ins[1] if mod is None else mod(ins[0])
                if cg:
                    z_real = real[srcs[0]] + real[srcs[1]] if mod is None else mod(real[srcs[0]])
                else:
                    z_real = z_relay.detach()
                nonneg[name] = all(nonneg[a] for a in srcs)
                with torch.set_grad_enabled(cg):
                    r = inverse(z_real, STABILIZER, 1.0, nonneg[name], inplace=not cg)
                relay[name] = Relay.apply(z_real, z_relay, r)
                real[name] = z_real if cg else relay[name]
            elif kind == "linear":
                _, _, src, mod, bn, rule, _exact = s
                d = derived[i]
                i += 1
                lin = self._lins[name]
                if src == self.input_name and rule.probe != "input":
                    a_real, a_relay, box_real, box_relay = self._probe(rule, x, p, probes, cg)
                else:
                    a_real, a_relay, box_real, box_relay = real[src], times(src), None, None
                groups = rule.groups(a_relay, d["p"], lin, nonneg[src], box_relay)
                with torch.set_grad_enabled(cg):
                    if cg:
                        zs = [g[0] for g in rule.groups(a_real, d["p"], lin, nonneg[src], box_real)]
                    else:
                        zs = [g[0].detach() for g in groups]
                    # the epsilon rule's z is the layer's output itself
                    y = zs[0] if isinstance(rule, EpsilonRule) else lin(real[src], d["w"], d["b"])
                    val = y * d["k"] if d["k"] != 1.0 else y
                    rs = [inverse(z, eps, coef * d["k"], positive, inplace=not cg)
                          for z, (_, eps, coef, positive) in zip(zs, groups)]
                relay[name] = Relay.apply(val, *(g[0] for g in groups), *rs)
                real[name] = val if cg else relay[name]
                nonneg[name] = False
            elif kind == "output":
                return real[s[1]], relay[s[1]], probes
        raise RuntimeError("the traced graph has no output")

    @staticmethod
    def _probe(rule: LinearRule, x: torch.Tensor, p: torch.Tensor, probes: list, cg: bool):
        """First-layer inputs of Flat and ZBox: (real input, probe input, real box, probe box)."""
        if rule.probe == "ones":  # Flat: relevance = ones * gradient, the gradient of a ones probe
            ones = torch.ones_like(x)
            q = ones.clone().requires_grad_(True)
            probes.append(q)
            return ones, q, None, None
        low = torch.as_tensor(rule.low, dtype=x.dtype, device=x.device).expand_as(x)
        high = torch.as_tensor(rule.high, dtype=x.dtype, device=x.device).expand_as(x)
        qs = [t.detach().clone().requires_grad_(True) for t in (low, high)]
        probes.extend(qs)
        # ZBox's reducer: input * grad + low * grad_low + high * grad_high
        box = tuple(Relay.apply(q, q, t) for q, t in zip(qs, (low, high)))
        return x, Relay.apply(p, p, x), (low, high), box

    def __call__(self, x: torch.Tensor, target: Any = None, create_graph: bool = False, init: str = "logit",
                 pool: str | None = "sum") -> torch.Tensor:
        """Relevance of ``x`` (N,C,H,W) for ``target``: (N,H,W) (``pool="sum"``) or (N,C,H,W) (``pool=None``).

        Same conventions as :func:`xaibias.explain.attribute` (``target=None``: the prediction;
        ``init="logit"``: start from the target logit, ``"one"``: from 1). The result is on the
        model's device in the parameters' dtype; with ``create_graph=True`` it is differentiable with
        respect to the model's parameters.
        """
        if init not in ("logit", "one"):
            raise ValueError(f"init must be 'logit' or 'one'; got {init!r}")
        if pool not in ("sum", None):
            raise ValueError(f"pool must be 'sum' or None; got {pool!r}")
        if not isinstance(x, torch.Tensor) or x.ndim < 2 or not x.is_floating_point():
            raise ValueError(f"x must be a float tensor (N,C,H,W); got {type(x).__name__} "
                             f"{tuple(getattr(x, 'shape', ()))}")
        self._check_unchanged()
        model = self._model()
        if model is not None:
            refuse_hooks(model)  # hooks added after prepare_lrp()
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
            # zennit's output relevance; with create_graph the logit's own parameter dependence counts too
            start = onehot * (logits if create_graph else logits.detach()) if init == "logit" else onehot
            grads = torch.autograd.grad(out, probes, grad_outputs=start, create_graph=create_graph,
                                        allow_unused=True)
        used = [g for g in grads if g is not None]
        rel = sum(used[1:], used[0]) if used else torch.zeros_like(x)
        return rel.sum(1) if pool == "sum" else rel


def prepare_lrp(model: nn.Module, composite: str = "EpsilonPlusFlat", canonizers: str | None = "auto",
                epsilon: float = 1e-6, low: float | torch.Tensor = 0.0, high: float | torch.Tensor = 1.0) -> PreparedLRP:
    """Prepare LRP for ``model`` once; the result explains batches like ``attribute(method="lrp")``.

    Parameters
    ----------
    model : nn.Module
        A network of supported layers (see :mod:`xaibias.explain.lrp_engine`); it is not modified.
    composite : str
        One of :data:`~xaibias.explain.COMPOSITES` (zennit's composites of the same name, and xaibias's
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

