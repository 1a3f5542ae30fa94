"""Fine-tuning an ImageNet-pretrained backbone in minutes on a CPU, in full on a GPU.

Used as :func:`xaibias.models.extract_features` and :func:`xaibias.models.finetune`.

Three modes, chosen by :func:`finetune`'s ``last_block`` and ``full``:

- **head** (default in FAST mode): the backbone is frozen; its pooled features are computed once
  by :func:`extract_features` and cached on disk, and only the classifier's linear layer is fitted
  on them, as an L2-penalised logistic regression on standardised features by full-batch L-BFGS
  (under a second; the standardisation is folded into the layer afterwards);
- **last block** (``last_block=True``): the features *before* the last MBConv stage are cached,
  and that stage, the 1x1 head convolution (``features[-2:]``) and the classifier are trained on
  them (minutes on 2 cores);
- **full** (``full=True``, default when FAST is off, i.e. with a GPU): every layer but the stem is
  trained on the images, with random flips (Lite0's stem carries the input normalisation, see
  :mod:`xaibias._lite0`).

In every mode the batch norms keep their ImageNet running statistics (eval mode while training:
the batches are small and the statistics of 2,000 photos are no better), dropout is active when
layers are trained by AdamW (last block, full), and the
result is a complete model, backbone and trained head, that takes [0,1] images of any size, so
:func:`~xaibias.models.predict_proba`, :func:`~xaibias.explain.attribute` and insertion work on it
unchanged. Train, predict and explain at one resolution: pass 224 px images (the ImageNet size).

Caching. Features are stored under ``config.cache_dir("features")`` keyed by a content hash of
the frozen layers' weights, the image bytes, the preprocessing (BN folding, channels-last, float32)
and :func:`finetune_code_version`; trained models under ``config.cache_dir("models")`` keyed by
all of those plus the labels and every hyper-parameter. Files are written atomically and loaded
with ``weights_only=True``; an unreadable file is recomputed. A model file holds only the layers
the mode trains.

Speed of the feature pass: the frozen layers run with their batch norms folded into the
convolutions (``torch.fx`` ``fuse``), channels-last memory and ``torch.inference_mode`` (features
within about 2e-6, relative, of the eager model's), on batches of 2 images, and on a CPU each core
runs its own batches single-threaded. Against the plain eager loop (batches of 32, intra-op
threads) that was 3.6x the photos per second on 2 shared cores (3.8x per CPU-second);
``benchmarks/bench_features.py`` measures each step.

Determinism: the same inputs and seed give the same model on a CPU (the order of the batches, the
dropout masks and the flips are drawn from the seed); on a GPU up to cuDNN's own nondeterminism.
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import config
from ._cache import atomic_save, content_hash, safe_load, source_hash
from ._checks import as_images, as_labels, check_int, describe
from ._zoo import make_model

__all__ = ["FINETUNE_MODELS", "extract_features", "finetune", "finetune_code_version", "images_digest"]

# zoo models with the layout features -> avgpool -> flatten -> classifier[-1] (a Linear)
FINETUNE_MODELS: tuple[str, ...] = ("efficientnet_lite0", "efficientnet_b0")
PREPROCESS = {"fold_batchnorm": True, "memory_format": "channels_last", "dtype": "float32"}
# per mode: (epochs in FAST mode, epochs otherwise, learning rate, weight decay); head: L-BFGS iterations,
# no learning rate, an L2 penalty (chosen on the ISIC photos, see finetune's docstring)
DEFAULTS = {"head": (200, 200, None, 1.0), "last_block": (8, 20, 1e-3, 1e-2), "full": (3, 15, 3e-4, 1e-2)}


def finetune_code_version() -> str:
    """Digest of the code that computes features and fine-tunes, and the torch version (part of every key)."""
    return f"{source_hash('_lite0.py', '_finetune.py', '_zoo.py', '_checks.py', '_cache.py')}-torch{torch.__version__}"


def _features_code_version() -> str:
    return f"{source_hash('_lite0.py', '_finetune.py', '_checks.py')}-torch{torch.__version__}"


def images_digest(images: torch.Tensor) -> str:
    """sha256 of an image tensor's dtype, shape and bytes, read in slices (no copy of the whole tensor)."""
    t = images.detach().cpu()
    h = hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode())
    for chunk in t.split(64):
        h.update(memoryview(chunk.contiguous().view(torch.uint8).numpy()))
    return h.hexdigest()[:32]


def _state_digest(modules: Sequence[nn.Module]) -> str:
    h = hashlib.sha256()
    for m in modules:
        for k, v in m.state_dict().items():
            t = v.detach().cpu().contiguous()
            h.update(f"{k}{t.dtype}{tuple(t.shape)}".encode())
            if t.numel():
                h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    return h.hexdigest()[:32]


def _check_layout(model: Any, what: str = "model") -> None:
    ok = (isinstance(model, nn.Module) and isinstance(getattr(model, "features", None), nn.Sequential)
          and isinstance(getattr(model, "avgpool", None), nn.AdaptiveAvgPool2d)
          and model.avgpool.output_size in (1, (1, 1))
          and isinstance(getattr(model, "classifier", None), nn.Sequential)
          and isinstance(model.classifier[-1], nn.Linear) and len(model.features) >= 3)
    if not ok:
        raise ValueError(f"{what} must be a network with .features (nn.Sequential), a global .avgpool and .classifier ending "
                         f"in nn.Linear, as make_model({' or '.join(map(repr, FINETUNE_MODELS))}) builds; got "
                         f"{describe(model)}")


def _frozen(model: nn.Module, last_block: bool) -> list[nn.Module]:
    """The frozen layers, in order: all of ``features`` and the pooling, or ``features[:-2]``."""
    return list(model.features[:-2]) if last_block else [*model.features, model.avgpool, nn.Flatten()]


def _fast(layers: list[nn.Module], device: str) -> nn.Module:
    """A copy of ``layers`` for inference: batch norms folded into the convolutions, channels-last."""
    part = copy.deepcopy(nn.Sequential(*layers)).eval()
    try:
        from torch.fx.experimental.optimization import fuse

        part = fuse(part)
    except Exception:  # noqa: BLE001 - a layout fx cannot trace runs unfolded (same values)
        pass
    return part.to(device=device, memory_format=torch.channels_last)


def _check_images(images: Any) -> torch.Tensor:
    """Images as given (uint8 or float, (N,3,H,W)), checked once without a float copy of uint8 data."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    if isinstance(images, torch.Tensor) and images.dtype == torch.uint8:
        as_images(images[:1])  # shape and channels (uint8 holds no NaN and nothing outside [0, 255])
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        return images
    return as_images(images)


def _features(model: nn.Module, images: torch.Tensor, digest: str, last_block: bool, batch_size: int,
              cache: bool, device: str, progress: bool) -> torch.Tensor:
    layers = _frozen(model, last_block)
    name = getattr(model, "xaibias_name", type(model).__name__)
    if cache:
        key = content_hash("features", _state_digest(layers), digest, last_block, PREPROCESS, _features_code_version())
        path = config.cache_dir("features") / f"{name}-{'before-last-block' if last_block else 'pooled'}-{key}.pt"
        hit = safe_load(path)
        if isinstance(hit, torch.Tensor) and len(hit) == len(images) and torch.isfinite(hit).all():
            return hit
    part = _fast(layers, device)
    bar = tqdm(total=len(images), desc=f"features {name}", unit="img", disable=not progress, leave=False)

    def run(batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            x = batch.to(device)
            x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
            y = part(x.contiguous(memory_format=torch.channels_last)).float().cpu().contiguous()
        bar.update(len(batch))
        return y

    batches = images.split(batch_size)
    workers = torch.get_num_threads() if torch.device(device).type == "cpu" else 1
    if workers > 1 and len(batches) > 1:
        # one single-threaded forward per core on its own small batch: the activations of a few
        # 224 px images stay in the caches, and no core waits at another's barrier (intra-op threads
        # on small tensors spend most of their time there, worst on a shared machine); each batch
        # is computed the same way whichever thread runs it, so the result does not depend on them
        from concurrent.futures import ThreadPoolExecutor

        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(workers) as pool:
                out = list(pool.map(run, batches))
        finally:
            torch.set_num_threads(workers)
    else:
        out = [run(b) for b in batches]
    bar.close()
    feats = torch.cat(out)
    if cache:
        atomic_save(feats, path)
    return feats


def _feature_batch(device: str) -> int:
    return 2 if torch.device(device).type == "cpu" else 64


def extract_features(model: nn.Module, images: Any, *, batch_size: int | None = None, cache: bool = True,
                     last_block: bool = False, device: str | None = None, progress: bool = True) -> torch.Tensor:
    """Features of ``model``'s frozen backbone for every image, computed once and cached on disk.

    Parameters
    ----------
    model : nn.Module
        A network with ``features``, ``avgpool`` and ``classifier`` (``make_model("efficientnet_lite0",
        pretrained=True)``, or torchvision's EfficientNet); it is not changed.
    images : tensor or array (N,3,H,W)
        Float in [0,1] or uint8, any size (the network is fully convolutional; pass the resolution
        the model will see later, 224 px for the ImageNet weights).
    batch_size : int, optional
        Images per forward pass; default 2 on a CPU (small batches keep the activations in the
        caches: on one core 56 photos/s at batch 1, 31 at batch 32, ``benchmarks/bench_features.py``),
        64 on a GPU. On a CPU each of ``torch.get_num_threads()`` threads runs its own batches
        single-threaded.
    cache : bool
        Load the features from / save them to ``config.cache_dir("features")``, keyed by the frozen
        layers' weights, the image bytes, the preprocessing and the code.
    last_block : bool
        False: the globally pooled output of ``features`` (N, D), D = 1280 for Lite0. True: the input
        of the last stage, ``features[:-2](images)``, a (N, C, h, w) map (C = 192, h = w = 7 at 224 px),
        for training the last stage with :func:`finetune` ``(last_block=True)``.
    device : str, optional
        Where the forward passes run (default :func:`xaibias.config.device`).
    progress : bool
        Show a progress bar.

    Returns
    -------
    torch.Tensor
        float32 on the CPU.
    """
    _check_layout(model)
    dev = device or config.device()
    batch_size = check_int(_feature_batch(dev) if batch_size is None else batch_size, "batch_size", 1)
    images = _check_images(images)
    return _features(model, images, images_digest(images), bool(last_block), batch_size, cache, dev, progress)


# --------------------------------------------------------------------------------------------------
# training


def _class_weights(labels: torch.Tensor, num_classes: int, class_weight: Any) -> torch.Tensor | None:
    if class_weight is None:
        return None
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise ValueError(f"class_weight must be 'balanced', None or one weight per class; got {class_weight!r}")
        counts = torch.bincount(labels, minlength=num_classes).double()
        return (len(labels) / (num_classes * counts.clamp(min=1))).float()
    w = torch.as_tensor(class_weight, dtype=torch.float32)
    if w.shape != (num_classes,) or not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
        raise ValueError(f"class_weight must be 'balanced', None or {num_classes} non-negative weights; got {class_weight!r}")
    return w


def _freeze_batchnorm(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def _fit(part: nn.Module, source: Any, labels: torch.Tensor, weight: torch.Tensor | None, epochs: int, lr: float,
         weight_decay: float, batch_size: int, gen: torch.Generator, device: str, progress: bool, desc: str,
         augment: bool = False) -> None:
    """AdamW with a one-cycle schedule on ``part(source[idx])``; ``source`` is a tensor on the CPU."""
    params = [p for p in part.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    n = len(labels)
    steps = max(1, epochs * math.ceil(n / batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    w = None if weight is None else weight.to(device)
    bar = tqdm(total=steps, desc=desc, disable=not progress, leave=False)
    for epoch in range(epochs):
        part.train()
        _freeze_batchnorm(part)
        loss_sum, seen = 0.0, 0
        for idx in torch.randperm(n, generator=gen).split(batch_size):
            x = source[idx]
            if augment:  # dermoscopy has no up or left: random flips of each image, drawn from the seed
                x = x.float().div_(255.0) if x.dtype == torch.uint8 else x
                flips = torch.rand(len(idx), 2, generator=gen) < 0.5
                x = torch.where(flips[:, 0, None, None, None], x.flip(-1), x)
                x = torch.where(flips[:, 1, None, None, None], x.flip(-2), x)
            x, y = x.to(device), labels[idx].to(device)
            loss = F.cross_entropy(part(x), y, weight=w)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"fine-tuning loss became {loss.item()} in epoch {epoch + 1}; lower lr={lr}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item() * len(idx)
            seen += len(idx)
            bar.update(1)
        bar.set_postfix(epoch=epoch + 1, loss=f"{loss_sum / max(seen, 1):.3f}")
    bar.close()
    part.eval()


def _train_head(model: nn.Module, feats: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None,
                iterations: int, l2: float, device: str, progress: bool) -> None:
    """Fit ``model.classifier[-1]`` as an L2-penalised logistic regression on the standardised pooled
    features (full batch, L-BFGS from the seeded initial weights), then fold the standardisation into it."""
    mean = feats.mean(0)
    std = feats.std(0).clamp(min=1e-3)
    z = ((feats - mean) / std).to(device)
    y = labels.to(device)
    w = None if weight is None else weight.to(device)
    lin = model.classifier[-1].to(device)
    opt = torch.optim.LBFGS(lin.parameters(), lr=1.0, max_iter=iterations, history_size=20,
                            line_search_fn="strong_wolfe", tolerance_grad=1e-6, tolerance_change=1e-9)
    bar = tqdm(total=iterations, desc="train head (L-BFGS)", disable=not progress, leave=False)

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(lin(z), y, weight=w) + 0.5 * l2 * lin.weight.pow(2).sum()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the head's loss became {loss.item()}; the features hold extreme values")
        loss.backward()
        if bar.n < bar.total:
            bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        return loss

    opt.step(closure)
    bar.close()
    with torch.no_grad():  # linear((f - mean) / std) = (W / std) f + b - W mean / std, exactly
        scaled = lin.weight / std.to(device)
        lin.bias.sub_(scaled @ mean.to(device))
        lin.weight.copy_(scaled)


def _trained_prefixes(model: nn.Module, mode: str) -> list[str]:
    n = len(model.features)
    if mode == "head":
        return ["classifier."]
    if mode == "last_block":
        return [f"features.{n - 2}.", f"features.{n - 1}.", "classifier."]
    return [""]


def finetune(name: str, images: Any, labels: Any, *, num_classes: int = 2, epochs: int | None = None, seed: int = 0,
             last_block: bool = False, full: bool | None = None, class_weight: Any = "balanced",
             batch_size: int | None = None, lr: float | None = None, weight_decay: float | None = None,
             device: str | None = None, cache: bool = True, progress: bool = True) -> nn.Module:
    """Fine-tune an ImageNet-pretrained zoo model on ``images``; the same call later loads the cached result.

    Parameters
    ----------
    name : str
        One of :data:`FINETUNE_MODELS` (``"efficientnet_lite0"`` needs no network).
    images : tensor or array (N,3,H,W)
        Float in [0,1] or uint8, any size; use the resolution you will predict and explain at (224 px).
    labels : sequence of int (N,)
        Class indices below ``num_classes``.
    num_classes : int
        Outputs of the new classifier.
    epochs : int, optional
        Passes over the data: last block 8 (FAST) / 20, full 3 (FAST) / 15. Head alone: the most L-BFGS
        iterations, 200 (it converges in 20-90 on the ISIC photos).
    seed : int
        Seeds the new classifier, the batch order, dropout and flips. The head alone is a convex
        problem, so other seeds give (nearly) the same head; they still get their own cache entry.
    last_block : bool
        Also train the last stage and the 1x1 head convolution, on cached features taken before them.
    full : bool, optional
        Train every layer but the stem on the images (no feature cache). Default: ``not config.FAST``
        (a GPU). Takes precedence over ``last_block``.
    class_weight : "balanced", None or sequence
        Cross-entropy class weights; ``"balanced"``: ``n / (classes * n_c)``, so a rare class (melanoma,
        13 % of ISIC 2018) counts as much as a common one.
    batch_size : int, optional
        Training batch (default 64; 32 in full mode); the feature pass uses :func:`extract_features`'s default.
    lr : float, optional
        Peak AdamW learning rate of the one-cycle schedule: last block 1e-3, full 3e-4 (default). Not
        for the head alone (a ValueError says so).
    weight_decay : float, optional
        Head alone: the L2 penalty ``weight_decay / 2 * |W|^2`` added to the mean (class-weighted)
        cross-entropy, on standardised features; default 1.0, chosen on the 2,114 ISIC 2018 photos:
        held-out melanoma AUROC, mean of 5 stratified 75/25 splits, 0.70 at 0.003, 0.75 at 0.1, 0.78 at
        1-3, 0.75 at 30. Last block and full: AdamW's decoupled weight decay, default 1e-2.
    device : str, optional
        Default :func:`xaibias.config.device`.
    cache : bool
        Cache features and the trained layers (keyed by content and code, see the module docstring).
    progress : bool
        Progress bars for the feature pass and the training.

    Returns
    -------
    nn.Module
        The complete model (make_model's layout) in eval mode on ``device``, with
        ``xaibias_finetune`` (a dict: mode, epochs, lr, weight_decay, batch_size, key) attached.
    """
    if name not in FINETUNE_MODELS:
        raise ValueError(f"finetune needs a pretrained zoo model with a features/classifier split; name must be one "
                         f"of {', '.join(FINETUNE_MODELS)}; got {name!r}")
    num_classes = check_int(num_classes, "num_classes", 2)
    images = _check_images(images)
    labels = as_labels(labels, n=len(images))
    if int(labels.max()) >= num_classes:
        raise ValueError(f"labels must be below num_classes={num_classes}; got a label {int(labels.max())}")
    if len(torch.unique(labels)) < 2:
        raise ValueError(f"labels hold a single class ({int(labels[0])}); fine-tuning needs at least two")
    full = (not config.FAST) if full is None else bool(full)
    mode = "full" if full else ("last_block" if last_block else "head")
    fast_epochs, full_epochs, default_lr, default_decay = DEFAULTS[mode]
    epochs = check_int(config.pick(fast_epochs, full_epochs) if epochs is None else epochs, "epochs", 1)
    if mode == "head":
        if lr is not None:
            raise ValueError("lr does not apply to the head alone (a logistic regression fitted by L-BFGS); "
                             "set weight_decay (its L2 penalty) instead, or last_block=True / full=True")
    else:
        lr = float(default_lr if lr is None else lr)
        if not (lr > 0 and math.isfinite(lr)):
            raise ValueError(f"lr must be a positive number; got {lr!r}")
    weight_decay = float(default_decay if weight_decay is None else weight_decay)
    if not (weight_decay >= 0 and math.isfinite(weight_decay)):
        raise ValueError(f"weight_decay must be a non-negative number; got {weight_decay!r}")
    batch_size = check_int(batch_size if batch_size is not None else (32 if full else 64), "batch_size", 1)
    weight = _class_weights(labels, num_classes, class_weight)
    dev = device or config.device()
    digest = images_digest(images)

    model = make_model(name, num_classes, pretrained=True, seed=seed)
    key = content_hash("finetune", name, digest, labels, num_classes, mode, epochs, seed, lr, batch_size,
                       weight_decay, None if weight is None else weight.tolist(), PREPROCESS,
                       _state_digest([model.features]), finetune_code_version())
    path = config.cache_dir("models") / f"{name}-finetune-{mode}-{key}.pt"
    prefixes = _trained_prefixes(model, mode)
    info = {"mode": mode, "epochs": epochs, "lr": lr, "weight_decay": weight_decay, "batch_size": batch_size,
            "key": key}
    if cache:
        state = safe_load(path)
        if isinstance(state, dict) and state:
            expected = {k for k in model.state_dict() if k.startswith(tuple(prefixes))}
            if set(state) == expected:
                model.load_state_dict(state, strict=False)
                model.xaibias_finetune = info  # type: ignore[attr-defined]
                return model.to(dev).eval()

    gen = config.seed_everything(seed)
    if mode == "head":
        feats = _features(model, images, digest, False, _feature_batch(dev), cache, dev, progress)
        _train_head(model, feats, labels, weight, epochs, weight_decay, dev, progress)
    elif mode == "last_block":
        feats = _features(model, images, digest, True, _feature_batch(dev), cache, dev, progress)
        part = nn.Sequential(model.features[-2], model.features[-1], model.avgpool, nn.Flatten(), model.classifier)
        _fit(part.to(dev), feats, labels, weight, epochs, lr, weight_decay, batch_size, gen, dev, progress,
             "train last block")
    else:
        model.to(dev)
        stem = list(model.features[0].parameters())
        flags = [p.requires_grad for p in stem]
        for p in stem:  # the stem holds the input normalisation (see xaibias._lite0)
            p.requires_grad_(False)
        _fit(model, images, labels, weight, epochs, lr, weight_decay, batch_size, gen, dev, progress,
             f"fine-tune {name}", augment=True)
        for p, flag in zip(stem, flags):
            p.requires_grad_(flag)
    model.eval()
    if cache:
        atomic_save({k: v.detach().cpu() for k, v in model.state_dict().items() if k.startswith(tuple(prefixes))}, path)
    model.xaibias_finetune = info  # type: ignore[attr-defined]
    return model.to(dev).eval()
