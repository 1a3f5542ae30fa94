"""Corrections that start from a trained (biased) model: the ClArC family and last-layer retraining.

Reveal-to-Revise (Pahde et al. 2023) revises a model once its artifacts are found: a concept
activation vector (:class:`xaibias.analysis.CAV`) per artifact at one layer tells the correction
*which direction* of the layer's activations carries the artifact. Deep Feature Reweighting
(Kirichenko et al. 2023) needs no direction, only the group labels. All four take the plain model
that :func:`xaibias.models.fit_or_load` trains on the same data with the same ``fit_kwargs`` (so the
notebook's baseline is reused from the cache) and change it:

``"pclarc"`` -- projective ClArC (Anders et al. 2022), no training
    A projection is inserted at the CAV layer at inference. At every position of the layer's output
    the activation vector ``a`` loses its component along the artifact directions relative to a
    reference ``z``, the mean pooled activation of the clean (unflagged) training images:
    ``a' = a - Q Q^T (a - z)`` with ``Q`` an orthonormal basis of the CAVs (one artifact: ``Q = v``).
    Changes: nothing in the weights; one extra module (:class:`Projection`, also registered as the
    model's child ``"pclarc"``) called by a forward hook on the layer. Costs: one forward pass over
    the training set to fit the CAVs; a matrix product per position at inference. It removes only
    what is linear along ``v`` at that layer; whatever the artifact changed in other directions stays.

``"aclarc"`` -- augmentative ClArC (Anders et al. 2022), fine-tuning
    During fine-tuning each training image, with probability ``p``, gets the artifact *added in
    latent space*: at every position ``a' = a + Q Q^T (z_art - a)`` (the component along the CAVs
    is moved to that of the mean artifact image ``z_art``), independently of its class, so the
    layers after the CAV layer learn that the direction carries no label information. Changes: the
    parameters after the CAV layer (those registered before it stay frozen and their batch-norm
    statistics are kept); nothing at inference. Costs: ``finetune_epochs`` epochs of ordinary
    training.

``"rrclarc"`` -- right-reason ClArC (Dreyer et al. 2024), fine-tuning with a latent gradient penalty
    The loss gets ``lam * mean_batch sum_positions sum_classes (v . d logit_c / d a)^2``: the
    derivative of the logits along the CAV at every position of the layer is pushed to zero
    (``grad_of="target_logit"``: only the true class's logit). Changes: the parameters after the
    CAV layer, as for A-ClArC. Costs: ``finetune_epochs`` epochs with double back-propagation (about
    three times an ordinary epoch).

``"dfr"`` -- Deep Feature Reweighting (Kirichenko et al. 2023), last layer only
    The embeddings (inputs of the last ``nn.Linear``) of a group-balanced subset (every pattern of
    the chosen artifacts holds the same number of images of each class,
    :func:`xaibias.mitigation.balanced_indices`) are standardised and a logistic regression
    (``C``, L1 penalty as in the paper) is fitted on them; the weights averaged over
    ``n_subsets`` random balanced subsets replace the last layer. Changes: the last ``nn.Linear``
    only. Costs: one forward pass and ``n_subsets`` small logistic regressions, seconds on a CPU.
    Kirichenko et al. fit it on held-out data: pass ``fit_set=`` (a dataset with ``.artifacts``)
    for that; the default is the training set.

Caching: the fine-tuned models (``aclarc``, ``rrclarc``, ``dfr``) are cached under
``xaibias.config.cache_dir("models")`` with a key of the method, its resolved options, a hash of
the *base model's weights* (so any change in how the baseline is trained, including the code of
:mod:`xaibias.models` and :mod:`xaibias.data`, gives a new key), the data the correction is fitted
on, ``batch_size``/``seed``, the source of this module and of :mod:`xaibias.analysis.cav`, and
:func:`xaibias.models.training_code_version`. ``pclarc`` trains nothing and is rebuilt each time.

Public names: :data:`CLARC_CORRECTIONS`, :data:`CLARC_OPTIONS`, :func:`fit_correction`,
:class:`Projection`, :func:`add_projection`, :func:`fit_cavs`, :func:`dfr_last_layer`,
:func:`rrclarc_penalty`.
"""

from __future__ import annotations

import contextlib
import copy
import numbers
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import config, models
from .._cache import atomic_save, content_hash, safe_load, source_hash, weights_key
from .._checks import as_labels, describe
from .._options import reject_unknown
from ..analysis.cav import CAV, find_layer
from ..data import ARTIFACTS
from ..data.sampling import balanced_indices

__all__ = [
    "CLARC_CORRECTIONS",
    "CLARC_OPTIONS",
    "fit_correction",
    "Projection",
    "add_projection",
    "fit_cavs",
    "dfr_last_layer",
    "rrclarc_penalty",
]

CLARC_CORRECTIONS: tuple[str, ...] = ("pclarc", "aclarc", "rrclarc", "dfr")

#: Options of each correction and their defaults. ``layer=None`` is the model's last Conv2d.
CLARC_OPTIONS: dict[str, dict[str, Any]] = {
    "pclarc": {"artifacts": ("frame",), "layer": None, "cav": "signal"},
    "aclarc": {"artifacts": ("frame",), "layer": None, "cav": "signal", "p": 0.5, "finetune_epochs": 2,
               "finetune_lr": 5e-4},
    "rrclarc": {"artifacts": ("frame",), "layer": None, "cav": "signal", "lam": 1.0, "grad_of": "all_logits",
                "finetune_epochs": 2, "finetune_lr": 5e-4},
    "dfr": {"artifacts": ("frame",), "C": 1.0, "n_subsets": 10, "seed": 0},
}
_GRAD_OF = ("all_logits", "target_logit")
# A-ClArC picks the images that get the latent artifact with a generator seeded seed + this offset,
# apart from the training's own draws from seed
_ACLARC_SEED_OFFSET = 7


# --------------------------------------------------------------------------------------------------
# option checks


def _resolve(method: str, options: dict[str, Any]) -> dict[str, Any]:
    if method not in CLARC_CORRECTIONS:
        raise ValueError(f"unknown correction {method!r}; choose one of {', '.join(CLARC_CORRECTIONS)}")
    defaults = CLARC_OPTIONS[method]
    reject_unknown(options, defaults, f"correction {method!r}")  # a TypeError (and ValueError)
    opts = {**defaults, **options}
    arts = opts["artifacts"]
    arts = (arts,) if isinstance(arts, str) else arts
    if not isinstance(arts, (list, tuple)) or not arts or any(a not in ARTIFACTS for a in arts) or len(set(arts)) != len(arts):
        raise ValueError(f"artifacts must be distinct names from {list(ARTIFACTS)}; got {opts['artifacts']!r}")
    opts["artifacts"] = tuple(arts)
    if "cav" in opts and opts["cav"] not in ("signal", "svm", "ridge"):
        raise ValueError(f"cav must be 'signal', 'svm' or 'ridge'; got {opts['cav']!r}")
    for k in ("finetune_lr", "C", "lam"):
        if k in opts and (isinstance(opts[k], bool) or not isinstance(opts[k], numbers.Real) or not opts[k] > 0):
            raise ValueError(f"{k} must be a positive number; got {opts[k]!r}")
    for k in ("finetune_epochs", "n_subsets"):
        if k in opts and (isinstance(opts[k], bool) or not isinstance(opts[k], (int, np.integer)) or opts[k] < 1):
            raise ValueError(f"{k} must be an int >= 1; got {opts[k]!r}")
    if "p" in opts and (isinstance(opts["p"], bool) or not isinstance(opts["p"], numbers.Real) or not 0 < opts["p"] <= 1):
        raise ValueError(f"p must be a probability in (0, 1]; got {opts['p']!r}")
    if "grad_of" in opts and opts["grad_of"] not in _GRAD_OF:
        raise ValueError(f"grad_of must be one of {_GRAD_OF}; got {opts['grad_of']!r}")
    return opts


def _flags(data: Any, artifacts: Sequence[str], where: str) -> np.ndarray:
    table = getattr(data, "artifacts", None)
    if table is None or not hasattr(table, "columns"):
        raise ValueError(f"{where} needs a dataset with an .artifacts DataFrame (one bool column per artifact); "
                         f"got {type(data).__name__}")
    missing = [a for a in artifacts if a not in table.columns]
    if missing:
        raise ValueError(f"{where}: the dataset has no artifact column(s) {missing}; it has {list(table.columns)}")
    return np.stack([table[a].to_numpy(bool) for a in artifacts], axis=1)


# --------------------------------------------------------------------------------------------------
# projection (P-ClArC) and latent insertion (A-ClArC)


def _basis(directions: Any) -> torch.Tensor:
    d = torch.as_tensor(np.asarray(directions, dtype=np.float32))
    if d.ndim == 1:
        d = d[None]
    if d.ndim != 2 or not bool(torch.isfinite(d).all()) or bool((d.norm(dim=1) == 0).any()):
        raise ValueError(f"directions must be finite non-zero (K, C) or (C,) vectors; got {describe(d)}")
    q, r = torch.linalg.qr(d.T.double())
    if bool((r.diagonal().abs() < 1e-8 * r.diagonal().abs().max()).any()):
        raise ValueError("directions are linearly dependent; pass independent CAVs")
    return q.float()  # (C, K), orthonormal columns


class Projection(nn.Module):
    """``a -> a - Q Q^T (a - z)`` at every position (``mode="remove"``, P-ClArC), or
    ``a -> a + Q Q^T (target - a)`` (``mode="insert"``, A-ClArC's latent artifact).

    ``directions`` (K, C) are the CAVs, ``reference`` (C,) is ``z`` (clean mean) or the artifact
    mean. ``Q`` is an orthonormal basis of the directions, so several artifacts are removed jointly.
    Works on (N, C) and (N, C, H, W) activations.
    """

    def __init__(self, directions: Any, reference: Any, mode: str = "remove") -> None:
        super().__init__()
        if mode not in ("remove", "insert"):
            raise ValueError(f"mode must be 'remove' or 'insert'; got {mode!r}")
        q = _basis(directions)
        z = torch.as_tensor(np.asarray(reference, dtype=np.float32))
        if z.shape != (q.shape[0],):
            raise ValueError(f"reference must be a ({q.shape[0]},) vector like the directions; got {describe(z)}")
        self.mode = mode
        self.register_buffer("basis", q)
        self.register_buffer("reference", z)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        if a.shape[1] != self.basis.shape[0]:
            raise ValueError(f"the projection has {self.basis.shape[0]} channels; the activations have {a.shape[1]}")
        shape = (1, -1) + (1,) * (a.ndim - 2)
        d = a - self.reference.reshape(shape)
        coef = torch.einsum("nc...,ck->nk...", d, self.basis)  # (N, K, ...)
        along = torch.einsum("nk...,ck->nc...", coef, self.basis)
        return a - along  # insert: a + QQ^T(target - a) is the same formula with reference = target


def add_projection(model: nn.Module, layer: str, directions: Any, reference: Any) -> nn.Module:
    """A deep copy of ``model`` whose ``layer`` output passes through a P-ClArC :class:`Projection`.

    The projection is the copy's child module ``"pclarc"`` (so it is in ``state_dict`` and moves
    with ``.to()``) and is called by a forward hook on ``layer``; every other module and weight is
    unchanged, and module names stay the same.
    """
    out = copy.deepcopy(model)
    module = find_layer(out, layer)
    if hasattr(out, "pclarc"):
        raise ValueError("the model already has a 'pclarc' projection; start from the uncorrected model")
    proj = Projection(directions, reference, mode="remove")
    dev = next(out.parameters()).device
    out.add_module("pclarc", proj.to(dev))
    module.register_forward_hook(lambda _m, _i, o: out.pclarc(o))
    return out.eval()


# --------------------------------------------------------------------------------------------------
# CAVs, freezing, RR penalty, DFR


def fit_cavs(model: nn.Module, data: Any, artifacts: Sequence[str], layer: str, method: str = "signal",
             random_state: int = 0) -> dict[str, CAV]:
    """One :class:`xaibias.analysis.CAV` per artifact at ``layer``, fitted on ``data.images`` with
    ``data.artifacts[artifact]`` (one forward pass for all of them), within class
    (``groups=data.labels``): an artifact that comes mostly with one class would otherwise carry the
    class difference in its direction, and removing that direction would remove the class."""
    flags = _flags(data, artifacts, "fit_cavs")
    base = CAV(layer, method=method, random_state=random_state)
    acts = base.activations(model, data.images)
    groups = as_labels(data.labels).numpy()
    return {a: CAV(layer, method=method, random_state=random_state).fit_activations(acts, flags[:, k], groups=groups)
            for k, a in enumerate(artifacts)}


def _split_at(model: nn.Module, layer: str) -> tuple[set[str], list[str]]:
    """Modules registered up to ``layer`` (taken to run before it, as in VGG/ResNet-style models)
    and the names of the parameters of the modules registered after it."""
    names = [n for n, _ in model.named_modules()]
    pos = names.index(layer)
    before = set(names[: pos + 1])
    later = [n for n in names[pos + 1 :] if n not in before and not layer.startswith(n + ".") and n != ""]
    params = []
    for mname, m in model.named_modules():
        if mname in later:
            params += [f"{mname}.{p}" for p, _ in m.named_parameters(recurse=False)]
    return before, params


@contextlib.contextmanager
def _frozen_below(model: nn.Module, layer: str) -> Iterator[None]:
    before, train = _split_at(model, layer)
    if not train:
        raise ValueError(f"no parameters after layer {layer!r}: nothing to fine-tune; pick an earlier layer")
    train_set = set(train)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    bn_momentum = {}
    for n, p in model.named_parameters():
        p.requires_grad_(n in train_set)
    for n, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and n in before:
            bn_momentum[n] = m.momentum
            m.momentum = 0.0  # batch statistics still normalise in training mode; the running ones stay
    try:
        yield
    finally:
        for n, p in model.named_parameters():
            p.requires_grad_(flags[n])
        mods = dict(model.named_modules())
        for n, mom in bn_momentum.items():
            mods[n].momentum = mom


def rrclarc_penalty(model: nn.Module, x: torch.Tensor, layer: str, basis: torch.Tensor, y: torch.Tensor | None = None,
                    grad_of: str = "all_logits", create_graph: bool = True) -> torch.Tensor:
    """``mean_batch sum_positions sum_k sum_classes (q_k . d logit / d a)^2`` at ``layer`` (unweighted).

    ``basis`` (C, K) holds orthonormal CAVs; ``grad_of="target_logit"`` takes only the logit of the
    true class ``y``. Runs its own forward pass (in the model's current mode).
    """
    if grad_of not in _GRAD_OF:
        raise ValueError(f"grad_of must be one of {_GRAD_OF}; got {grad_of!r}")
    module = find_layer(model, layer)
    store: dict[str, torch.Tensor] = {}

    def keep(_m: nn.Module, _i: Any, o: torch.Tensor) -> torch.Tensor:
        if not o.requires_grad:  # frozen layers below and a plain input: differentiate from here
            o = o.detach().requires_grad_(True)
        store["a"] = o
        return o

    handle = module.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            logits = model(x)
    finally:
        handle.remove()
    a = store["a"]
    with torch.enable_grad():
        if grad_of == "target_logit":
            if y is None:
                raise ValueError("grad_of='target_logit' needs the true classes y")
            outs = [logits.gather(1, y[:, None]).sum()]
        else:
            outs = [logits[:, c].sum() for c in range(logits.shape[1])]
        total = x.new_zeros(())
        for o in outs:
            (g,) = torch.autograd.grad(o, a, create_graph=create_graph, retain_graph=True)
            dd = torch.einsum("nc...,ck->nk...", g, basis.to(g.device))
            total = total + dd.pow(2).sum() / x.shape[0]
    return total


def _embeddings(model: nn.Module, images: torch.Tensor, last: nn.Linear, batch_size: int = 256) -> np.ndarray:
    feats = []
    store: dict[str, torch.Tensor] = {}
    h = last.register_forward_pre_hook(lambda _m, inp: store.__setitem__("h", inp[0]))
    dev = next(model.parameters()).device
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            for b in images.split(batch_size):
                model(b.to(dev))
                feats.append(store["h"].flatten(1).double().cpu())
    finally:
        h.remove()
        model.train(was)
    return torch.cat(feats).numpy()


def _l1_argument() -> dict[str, Any]:
    import sklearn

    major, minor = (int(v) for v in sklearn.__version__.split(".")[:2])
    return {"l1_ratio": 1.0} if (major, minor) >= (1, 8) else {"penalty": "l1"}  # 'penalty' is deprecated in 1.8


_L1 = _l1_argument()


def _last_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not found:
        raise ValueError(f"{type(model).__name__} has no nn.Linear layer for DFR to retrain")
    return found[-1]


def dfr_last_layer(model: nn.Module, images: Any, labels: Any, flags: Any, C: float = 1.0, n_subsets: int = 10,
                   seed: int = 0) -> nn.Module:
    """A copy of ``model`` whose last ``nn.Linear`` is refitted on group-balanced embeddings (DFR).

    ``flags`` bool (N,) or (N,K) define the groups (with the class). Every other parameter and
    buffer is bit-identical to ``model``'s.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    y = as_labels(labels).numpy()
    out = copy.deepcopy(model)
    name, last = _last_linear(out)
    emb = _embeddings(out, torch.as_tensor(images), last)
    if len(emb) != len(y):
        raise ValueError(f"mismatched lengths: {len(emb)} images but {len(y)} labels")
    classes = last.out_features
    weights, biases = [], []
    for k in range(int(n_subsets)):
        idx = balanced_indices(y, flags, seed=int(seed) + k)
        if len(np.unique(y[idx])) < 2:
            raise ValueError("the group-balanced subset holds a single class; DFR needs every class")
        sc = StandardScaler().fit(emb[idx])
        clf = LogisticRegression(C=float(C), solver="liblinear", max_iter=1000, random_state=int(seed) + k, **_L1)
        clf.fit(sc.transform(emb[idx]), y[idx])
        sd = np.where(sc.scale_ > 0, sc.scale_, 1.0)
        w = clf.coef_ / sd  # the same function of the raw embeddings
        b = clf.intercept_ - w @ sc.mean_
        if classes == 2 and w.shape[0] == 1:  # binary: logit difference w.h + b, split symmetrically
            w = np.concatenate([-w / 2, w / 2])
            b = np.concatenate([-b / 2, b / 2])
        elif w.shape[0] != classes:
            raise ValueError(f"DFR saw {w.shape[0]} classes in the balanced subset but the model has {classes} outputs")
        weights.append(w)
        biases.append(b)
    with torch.no_grad():
        last.weight.copy_(torch.as_tensor(np.mean(weights, 0), dtype=last.weight.dtype))
        if last.bias is not None:
            last.bias.copy_(torch.as_tensor(np.mean(biases, 0), dtype=last.bias.dtype))
    out.xaibias_dfr_layer = name  # type: ignore[attr-defined]
    return out.eval()


# --------------------------------------------------------------------------------------------------
# entry point


def fit_correction(name: str, train_set: Any, method: str, options: dict | None = None, fit_set: Any = None,
                   **fit_kwargs: Any) -> nn.Module:
    """Train (or load) the baseline ``name`` on ``train_set`` and correct it with ``method``.

    Parameters
    ----------
    name, train_set, **fit_kwargs
        As for :func:`xaibias.models.fit_or_load`: they define the baseline (cached, shared with a
        plain ``fit_or_load`` call with the same arguments). ``seed``, ``batch_size``, ``device`` and
        ``progress`` are also used by the fine-tuning.
    method : one of :data:`CLARC_CORRECTIONS`
    options : see :data:`CLARC_OPTIONS` and the module docstring
    fit_set : dataset with ``.images``, ``.labels``, ``.artifacts``
        The data the CAVs, the fine-tuning and DFR use (default ``train_set``); DFR as in
        Kirichenko et al. uses held-out data here.

    Returns
    -------
    The corrected model in eval mode. ``model.xaibias_correction`` records the method, the resolved
    options and the layer.
    """
    opts = _resolve(method, dict(options or {}))
    base = models.fit_or_load(name, train_set, **fit_kwargs)
    data = train_set if fit_set is None else fit_set
    for attr in ("images", "labels"):
        if not hasattr(data, attr):
            raise ValueError(f"correction {method!r} needs a dataset with .images, .labels and .artifacts; "
                             f"got {type(data).__name__}")
    flags = _flags(data, opts["artifacts"], f"correction {method!r}")
    seed = int(fit_kwargs.get("seed", 0))
    layer = opts.get("layer") or models.last_conv_layer(base)
    if method != "dfr":
        find_layer(base, layer)
        opts["layer"] = layer
    info = {"method": method, "options": opts}
    if method == "pclarc":
        cavs = fit_cavs(base, data, opts["artifacts"], layer, opts["cav"], random_state=seed)
        model = add_projection(base, layer, np.stack([c.direction_ for c in cavs.values()]),
                               _clean_mean(base, data, flags, layer))
        model.xaibias_correction = info  # type: ignore[attr-defined]
        return model
    key = content_hash("mitigation", method, opts, weights_key(base), models.dataset_key(data),
                       fit_kwargs.get("batch_size", 64), seed, source_hash("mitigation/clarc.py", "analysis/cav.py"),
                       models.training_code_version())
    dev = next(base.parameters()).device
    path = config.cache_dir("models") / f"{name}-{method}-{key}.pt"
    model = copy.deepcopy(base)
    state = safe_load(path)
    if state is not None:
        try:
            model.load_state_dict(state)
            model.xaibias_correction = info  # type: ignore[attr-defined]
            return model.to(dev).eval()
        except (RuntimeError, KeyError):
            model = copy.deepcopy(base)
    if method == "dfr":
        model = dfr_last_layer(base, data.images, data.labels, flags, C=opts["C"], n_subsets=opts["n_subsets"],
                               seed=opts["seed"])
    else:
        cavs = fit_cavs(base, data, opts["artifacts"], layer, opts["cav"], random_state=seed)
        dirs = np.stack([c.direction_ for c in cavs.values()])
        _finetune(model, data, method, opts, layer, dirs, flags, fit_kwargs, seed)
    atomic_save({k: v.detach().cpu() for k, v in model.state_dict().items()}, path)
    model.xaibias_correction = info  # type: ignore[attr-defined]
    return model.eval()


def _clean_mean(model: nn.Module, data: Any, flags: np.ndarray, layer: str) -> np.ndarray:
    acts = CAV(layer).activations(model, data.images).double().numpy()
    clean = ~flags.any(1)
    if not clean.any():
        raise ValueError("every image carries one of the artifacts; P-ClArC needs clean images for its reference")
    return acts[clean].mean(0)


def _finetune(model: nn.Module, data: Any, method: str, opts: dict, layer: str, dirs: np.ndarray, flags: np.ndarray,
              fit_kwargs: dict, seed: int) -> None:
    module = find_layer(model, layer)
    basis = _basis(dirs)
    common = {k: fit_kwargs[k] for k in ("batch_size", "device", "progress") if k in fit_kwargs}
    handle = None
    hook = None
    if method == "aclarc":
        acts = CAV(layer).activations(model, data.images).double().numpy()
        target = acts[flags.any(1)].mean(0) if flags.any() else acts.mean(0)
        insert = Projection(dirs, target, mode="insert").to(next(model.parameters()).device)
        gen = torch.Generator().manual_seed(seed + _ACLARC_SEED_OFFSET)

        def latent_artifact(m: nn.Module, _i: Any, o: torch.Tensor) -> torch.Tensor | None:
            if not m.training:
                return None
            pick = (torch.rand(o.shape[0], generator=gen) < opts["p"]).to(o.device)
            pick = pick.reshape(-1, *([1] * (o.ndim - 1)))
            return torch.where(pick, insert(o), o)

        handle = module.register_forward_hook(latent_artifact)
    else:
        lam, grad_of = float(opts["lam"]), opts["grad_of"]

        def hook(m: nn.Module, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
            return lam * rrclarc_penalty(m, x, layer, basis, y=y, grad_of=grad_of)

    try:
        with _frozen_below(model, layer):
            models.train(model, data, epochs=int(opts["finetune_epochs"]), lr=float(opts["finetune_lr"]), seed=seed,
                         loss_hook=hook, **common)
    finally:
        if handle is not None:
            handle.remove()
