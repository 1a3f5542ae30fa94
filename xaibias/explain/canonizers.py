"""Canonizers: temporary, exactly output-preserving rewrites of a model so that LRP rules apply.

zennit ships canonizers for VGG-style networks (``SequentialMergeBatchNorm``) and ResNets
(``ResNetCanonizer``) but none for DenseNets. :class:`DenseNetCanonizer` fills that gap for
torchvision's :class:`~torchvision.models.DenseNet` (``densenet121`` and the small variant
``xaibias.models.make_model("small_densenet")``). Use it like any zennit canonizer::

    from zennit.composites import EpsilonPlusFlat
    composite = EpsilonPlusFlat(canonizers=[DenseNetCanonizer()])

or through ``xaibias.explain.attribute(model, images, method="lrp", canonizers="auto")``.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn
from torchvision.models.densenet import DenseNet, _DenseBlock, _DenseLayer, _Transition
from torchvision.models.resnet import BasicBlock, Bottleneck
from zennit.canonizers import Canonizer, CompositeCanonizer, MergeBatchNorm, SequentialMergeBatchNorm
from zennit.core import Hook, RemovableHandleList
from zennit.rules import Pass
from zennit.torchvision import ResNetCanonizer

__all__ = ["DenseNetCanonizer", "auto_canonizers", "find_densenet_batchnorms"]

_LINEAR = (nn.Conv2d, nn.Linear)


def _check_eval(name: str, norm: nn.Module) -> None:
    if norm.training:
        raise ValueError(
            f"DenseNetCanonizer needs the model in eval mode (call model.eval()); BatchNorm {name!r} is in "
            "training mode, where it normalises with batch statistics and cannot be merged"
        )


def find_densenet_batchnorms(root: nn.Module) -> tuple[list[tuple[str, str]], list[str]]:
    """Sort the BatchNorms of a DenseNet into the two kinds the canonizer treats differently.

    Returns
    -------
    merge : list of (linear_name, norm_name)
        BatchNorms that directly follow a linear layer (``features.conv0 -> norm0`` and
        ``denselayerM.conv1 -> norm2``); they are folded into that layer.
    after_concat : list of str
        BatchNorms whose input is a concatenation of several earlier feature maps (``norm1`` of every
        dense layer, ``transitionN.norm`` and ``features.norm5``); they stay as channel-wise affine
        layers with their own rule.
    """
    merge: list[tuple[str, str]] = []
    after_concat: list[str] = []
    for name, module in root.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(module, _DenseLayer):
            merge.append((f"{prefix}conv1", f"{prefix}norm2"))
            after_concat.append(f"{prefix}norm1")
        elif isinstance(module, _Transition):
            after_concat.append(f"{prefix}norm")
        elif isinstance(module, nn.Sequential):
            children = list(module.named_children())
            for (previous_name, previous), (child_name, child) in zip(children, children[1:]):
                if isinstance(child, nn.BatchNorm2d):
                    if isinstance(previous, _LINEAR):
                        merge.append((f"{prefix}{previous_name}", f"{prefix}{child_name}"))
                    elif isinstance(previous, _DenseBlock):
                        after_concat.append(f"{prefix}{child_name}")
    return merge, after_concat


class _MergeBatchNormExact(MergeBatchNorm):
    """zennit's batch-norm merge, plus ``eps = 0`` on the emptied BatchNorm so it is exactly the identity.

    (zennit leaves ``eps`` in place, so the emptied BatchNorm still divides by ``sqrt(1 + eps)``.)
    """

    def __init__(self) -> None:
        super().__init__()
        self.batch_norm_eps: float | None = None

    def register(self, linears, batch_norm) -> None:  # noqa: D102
        super().register(linears, batch_norm)
        self.batch_norm_eps = batch_norm.eps
        batch_norm.eps = 0.0

    def remove(self) -> None:  # noqa: D102
        super().remove()
        self.batch_norm.eps = self.batch_norm_eps

    def apply(self, root_module):  # not used: _DenseNetMerge finds the pairs
        return []


class _DenseNetMerge(Canonizer):
    """Fold every BatchNorm that directly follows a linear layer into that layer."""

    def apply(self, root_module: nn.Module) -> list:
        modules = dict(root_module.named_modules())
        merge, _ = find_densenet_batchnorms(root_module)
        instances = []
        for linear_name, norm_name in merge:
            _check_eval(norm_name, modules[norm_name])
            instance = _MergeBatchNormExact()
            instance.register((modules[linear_name],), modules[norm_name])
            instances.append(instance)
        return instances

    def register(self) -> None:  # instances are made by apply()
        pass

    def remove(self) -> None:
        pass


class _RuleOnModule(Canonizer):
    """Attach a zennit rule to one module for the duration of the canonization."""

    def __init__(self, rule: Hook | None = None) -> None:
        self.rule = rule
        self.handles = RemovableHandleList()

    def apply(self, root_module: nn.Module) -> list:
        if self.rule is None:
            return []
        modules = dict(root_module.named_modules())
        _, after_concat = find_densenet_batchnorms(root_module)
        instances = []
        for name in after_concat:
            _check_eval(name, modules[name])
            instance = _RuleOnModule(self.rule)
            instance.register(modules[name])
            instances.append(instance)
        return instances

    def register(self, module: nn.Module) -> None:  # noqa: D102
        self.handles.append(self.rule.copy().register(module))

    def remove(self) -> None:  # noqa: D102
        self.handles.remove()

    def copy(self) -> _RuleOnModule:  # noqa: D102
        return _RuleOnModule(self.rule)


def _explicit_head_forward(self: DenseNet, x: torch.Tensor) -> torch.Tensor:
    """DenseNet.forward with the head's ReLU, pooling and flattening as modules (zennit can hook them)."""
    features = self.features(x)
    out = self.canonizer_relu(features)
    out = self.canonizer_pool(out)
    out = self.canonizer_flatten(out)
    return self.classifier(out)


class _DenseNetHead(Canonizer):
    """Give DenseNet's functional head (``F.relu``, ``F.adaptive_avg_pool2d``, ``flatten``) modules."""

    ATTRIBUTES = ("forward", "canonizer_relu", "canonizer_pool", "canonizer_flatten")

    def __init__(self) -> None:
        self.module: DenseNet | None = None

    def apply(self, root_module: nn.Module) -> list:
        instances = []
        for name, module in root_module.named_modules():
            if not isinstance(module, DenseNet):
                continue
            if type(module).forward is not DenseNet.forward:
                warnings.warn(
                    f"DenseNetCanonizer: {name or 'the model'} ({type(module).__name__}) overrides "
                    "DenseNet.forward, so its head is left as it is; relevance through a functional ReLU "
                    "or pooling in that forward is the plain gradient",
                    stacklevel=3,
                )
                continue
            instance = _DenseNetHead()
            instance.register(module)
            instances.append(instance)
        return instances

    def register(self, module: DenseNet) -> None:  # noqa: D102
        clash = [key for key in self.ATTRIBUTES if key in vars(module) or key in module._modules]
        if clash:
            raise ValueError(f"DenseNetCanonizer: the model already has {clash}; is it canonized twice?")
        self.module = module
        module.forward = _explicit_head_forward.__get__(module)
        module.canonizer_relu = nn.ReLU()
        module.canonizer_pool = nn.AdaptiveAvgPool2d((1, 1))
        module.canonizer_flatten = nn.Flatten(1)

    def remove(self) -> None:  # noqa: D102
        if self.module is not None:
            for key in self.ATTRIBUTES:
                delattr(self.module, key)
            self.module = None


class _NoCheckpointing(Canonizer):
    """Switch off torchvision's ``memory_efficient`` checkpointing, which would re-run hooked layers."""

    def __init__(self) -> None:
        self.layer: _DenseLayer | None = None

    def apply(self, root_module: nn.Module) -> list:
        instances = []
        for module in root_module.modules():
            if isinstance(module, _DenseLayer) and module.memory_efficient:
                instance = _NoCheckpointing()
                instance.register(module)
                instances.append(instance)
        return instances

    def register(self, layer: _DenseLayer) -> None:  # noqa: D102
        self.layer = layer
        layer.memory_efficient = False

    def remove(self) -> None:  # noqa: D102
        if self.layer is not None:
            self.layer.memory_efficient = True
            self.layer = None


class DenseNetCanonizer(CompositeCanonizer):
    """Canonizer for torchvision DenseNets (``densenet121/161/169/201`` and ``small_densenet``).

    A DenseNet layer is BN-ReLU-Conv(1x1)-BN-ReLU-Conv(3x3), and its input is the concatenation of
    all earlier feature maps of the block. The canonizer makes four changes, all reverted by
    ``remove()`` (the model's parameters, buffers, attributes and forward come back unchanged):

    1. **BatchNorm directly after a linear layer is merged into it** (``features.conv0 -> norm0``
       and ``conv1 -> norm2`` in every dense layer), as zennit's ``SequentialMergeBatchNorm`` does
       for VGG: the convolution gets weight ``w * gamma / sigma`` and bias
       ``beta - mu * gamma / sigma``, and the emptied BatchNorm becomes the exact identity (its
       ``eps`` is set to 0 as well). The pairs are found from the module *structure*, not from the
       order of leaves: ``SequentialMergeBatchNorm`` on a DenseNet would wrongly merge the ``conv2``
       of one dense layer into the ``norm1`` of the next, which normalises a concatenation.
    2. **BatchNorm after a concatenation stays an explicit channel-wise affine layer with its own
       rule** (``norm1`` of every dense layer, ``transitionN.norm``, ``features.norm5``). It cannot
       be merged backwards: its channels come from many producers (``conv0``/transition outputs and
       every earlier ``conv2``), each producer feeds several such BatchNorms with different
       parameters, and the first block's input comes after a ReLU. Splitting it per producer
       would need a copy of every producer per consumer. Instead the BatchNorm keeps its place
       and gets ``concat_norm_rule`` (default zennit ``Pass``): the layer is diagonal, one input
       per output, so relevance of channel ``c`` belongs to input channel ``c``; ``Pass`` hands it
       over unchanged (the LRP-0 rule on a diagonal layer with the bias given no share). The
       alternative, the epsilon rule with the shift as a bias, divides by ``gamma x + beta``,
       which flips sign or explodes where the shift cancels the input, and lets the constant
       shift absorb relevance. (Without any rule zennit would use the gradient, which multiplies
       relevance by ``gamma / sigma``: not conserving.) The composites shipped with zennit assign
       no rule to BatchNorm, so there is no clash; a custom composite that maps BatchNorm should
       use ``concat_norm_rule=None``.
    3. **The head is made explicit.** ``DenseNet.forward`` applies ``F.relu``,
       ``F.adaptive_avg_pool2d`` and ``torch.flatten`` as functions, which zennit cannot hook, so the
       average pooling would pass the plain gradient (relevance spread evenly over all positions,
       whatever their activation). The canonizer adds ``canonizer_relu``, ``canonizer_pool`` and
       ``canonizer_flatten`` modules and a forward that uses them, so composites give the ReLU
       ``Pass`` and the pooling the ``Norm`` rule.
    4. ``memory_efficient`` checkpointing is switched off while canonized (it would re-run hooked
       layers in the backward pass).

    The canonized model computes the same function (checked in ``tests/test_canonizers.py``: logits
    equal to 1e-4 relative for ``small_densenet`` and ``densenet121``). The model must be in eval
    mode.

    Parameters
    ----------
    concat_norm_rule : zennit Hook or None, optional
        Rule for the BatchNorms after a concatenation; default ``zennit.rules.Pass()``; ``None``
        attaches no rule (the gradient is used; for comparisons only).
    """

    def __init__(self, concat_norm_rule: Hook | None | str = "pass") -> None:
        if isinstance(concat_norm_rule, str):
            if concat_norm_rule != "pass":
                raise ValueError(f"concat_norm_rule must be a zennit rule, None or 'pass'; got {concat_norm_rule!r}")
            concat_norm_rule = Pass()
        if concat_norm_rule is not None and not isinstance(concat_norm_rule, Hook):
            raise ValueError(
                f"concat_norm_rule must be a zennit rule (zennit.core.Hook) or None; got {type(concat_norm_rule).__name__}"
            )
        self.concat_norm_rule = concat_norm_rule
        super().__init__([_NoCheckpointing(), _DenseNetMerge(), _RuleOnModule(concat_norm_rule), _DenseNetHead()])

    def apply(self, root_module: nn.Module) -> list:
        """Apply to every DenseNet part of ``root_module``; returns the handles to remove."""
        if not any(isinstance(m, _DenseBlock) for m in root_module.modules()):
            raise ValueError(
                f"DenseNetCanonizer: the model ({type(root_module).__name__}) has no torchvision DenseNet "
                "blocks (_DenseBlock); use zennit's SequentialMergeBatchNorm or ResNetCanonizer instead"
            )
        # check everything before changing anything, so a failure leaves the model untouched
        modules = dict(root_module.named_modules())
        merge, after_concat = find_densenet_batchnorms(root_module)
        for name in [norm for _, norm in merge] + after_concat:
            _check_eval(name, modules[name])
        for name, module in modules.items():
            clash = [key for key in _DenseNetHead.ATTRIBUTES[1:] if key in module._modules]
            if isinstance(module, DenseNet) and clash:
                raise ValueError(f"DenseNetCanonizer: {name or 'the model'} already has {clash}; is it canonized twice?")
        instances = super().apply(root_module)
        # undo in reverse order of application (the head is restored before the merges)
        return instances[::-1]

    def copy(self) -> DenseNetCanonizer:
        """A fresh canonizer with the same settings."""
        return DenseNetCanonizer(self.concat_norm_rule)


def _has(model: nn.Module, kinds: tuple[type, ...]) -> bool:
    return any(isinstance(m, kinds) for m in model.modules())


def auto_canonizers(model: nn.Module) -> list:
    """Pick canonizers from the architecture.

    DenseNet (torchvision ``_DenseBlock``) -> :class:`DenseNetCanonizer`;
    ResNet (torchvision ``BasicBlock``/``Bottleneck``) -> zennit's ``ResNetCanonizer``; everything
    else -> zennit's ``SequentialMergeBatchNorm`` (merges each BatchNorm into the linear layer before
    it; a no-op without BatchNorm).
    """
    if _has(model, (_DenseBlock,)):
        return [DenseNetCanonizer()]
    if _has(model, (BasicBlock, Bottleneck)):
        return [ResNetCanonizer()]
    return [SequentialMergeBatchNorm()]
