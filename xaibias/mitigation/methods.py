"""Five ways to train a model that ignores a known artifact (notebook 06).

:func:`fit_or_load_correction` trains a model with one of :data:`CORRECTIONS` and JSON-able ``options``: it
calls :func:`prepare`, which returns the training data and the extra keyword arguments for
:func:`xaibias.models.train`, and hands both to :func:`xaibias.models.fit_or_load` (cached like any
model; the key names the correction, its options and this package's source). Mitigation uses
``models``; ``models`` knows nothing of mitigation.

``"resample"`` -- class/artifact balanced sampling
    Keep a subset of the training set in which the class no longer depends on the artifact:
    P(c | a) = P(c | not a) for every chosen artifact. ``strategy="cells"`` (default) groups the
    images by their pattern of chosen artifacts and keeps, in every group, the same number of
    images of each class (the size of the group's smallest class), which balances any number of
    artifacts jointly and also balances the classes. ``strategy="keep_artifact"`` (one artifact)
    is the "unbiased" set of Pfau et al. 2019 via :func:`xaibias.data.unbiased_resample`: every
    image with the artifact is kept and artifact-free images are drawn per class in proportion.
    Resampling throws data away; with a strong correlation (frame in 80 % of malignant but 10 % of
    benign images) little is left of the rare cells.

``"augment"`` -- artifact insertion during training
    Every batch, each chosen artifact is painted (by the same painters that made the data,
    :func:`xaibias.data.insert_artifact`) into images of every class at random. With
    ``balance=False`` every image gets it with probability ``p``; the artifact's correlation with
    the class is weakened but not removed (rates r_c become r_c + (1 - r_c) p). With
    ``balance=True`` the insertion probability depends on the class, q_c = (t - r_c) / (1 - r_c)
    with t = r_max + p (1 - r_max), so that after augmentation every class shows the artifact at
    the same rate t and the artifact carries no label information (r_c are the training set's
    artifact rates per class; the class with the highest rate gets probability ``p``). Labels are
    never changed. ``params={artifact: {painter parameter: value}}`` is passed to the painter, so
    the painted artifacts look like the data's (for example ``{"patch": {"size": 2.0}}``).

``"rrr"`` -- right for the right reasons (Ross, Hughes, Doshi-Velez 2017)
    The loss gets a penalty on the input gradient inside the artifact masks (the exact masks of the
    synthetic data, ``data.masks[artifact]``):
    ``lam * mean_over_batch( sum_{pixels, channels in mask} (d f(x) / d x)^2 )``.
    ``grad_of="log_probs"`` (default) differentiates the sum of the log-probabilities over the
    classes, as in Ross et al.; ``grad_of="target_logit"`` the logit of the true class. The
    gradient is taken with ``create_graph=True`` so the penalty itself is trained (double
    back-propagation); the batch goes through the model a second time for it, in training mode.
    The mean is over all images of the batch (images without the artifact contribute zero), so
    ``lam`` does not depend on the batch size.

``"rrr_lrp"`` -- right for the right reasons on the LRP map (issue 18)
    The penalty is on the LRP relevance of the true class (composite ``composite``, computed by
    :func:`xaibias.explain.prepare_lrp` with ``create_graph=True``, so training differentiates through
    the map) instead of the input gradient: per image, the share of the *squared* relevance that
    falls inside the artifact mask, ``sum_mask R^2 / sum R^2`` (in [0, 1]; it counts evidence for and
    against the class alike, and does not change when the logits are scaled), and
    ``lam * sum_over_framed_images(share) / B``. What it changes: the gradient penalty only constrains
    the model's local sensitivity to the mask pixels; this one constrains the layer-wise
    decomposition of the decision itself, which in notebook 06 is also what RMA and saliency measure.
    What it costs: the engine runs the forward twice (values and the rule's gradient path) and the
    map is differentiated a second time, on the framed images of the batch only: on a 2-core CPU
    (``small_vgg``, 600 images of 32 px, batch 32) an epoch took 6.0 s against 4.2 s with ``"rrr"``
    and 2.6 s without a penalty (one interleaved run on a shared machine); in two FAST runs of
    notebook 06 (3 seeds each, 6 epochs) its training took 1.03x and 1.31x rrr's seconds (the
    notebook prints the seconds of every model). The engine's batch norms use their running statistics (its eval
    semantics) even in training. A caveat: the map shows only part of how the output depends on
    the input (the z+ rule drops negative contributions, the biases absorb relevance), so a model
    trained to keep its map off the mask can still react to the artifact, through what the map omits
    (notebook 06 measures the insertion effect to see whether it does). The model must be one the engine supports
    (:mod:`xaibias.explain.lrp_engine`); otherwise the penalty falls back to ``"rrr"``'s gradient
    penalty (``grad_of="log_probs"``, the same ``lam``) with a :class:`UserWarning` saying so.

``"attention"`` -- a penalty on a learned attention gate (issue 18)
    For models with an ``attention(x, upsample=False)`` method (``"small_vgg_attention"``): the
    gate's mean value over the artifact area, per image, with the mask averaged down to the gate's
    grid (a cell half covered by the frame weighs one half), ``lam * sum_over_framed_images(mean) / B``.
    It trains the gate to close on the artifact, so the layers after the gate see it attenuated;
    the layers before the gate still see it, and their receptive fields reach beyond the mask, so
    closing the gate is no guarantee (notebook 06 re-measures with insertion). It costs one extra
    pass through the layers before the gate. ``lrp_lam > 0`` adds ``"rrr_lrp"``'s penalty with that
    weight (and ``composite``), training the attention and the LRP map together.

Warm start (``"rrr"``, ``"rrr_lrp"``, ``"attention"``)
    With ``warm_start=True`` the penalty does not train a model from scratch: the uncorrected model
    (:func:`xaibias.models.fit_or_load` with the same ``fit_kwargs``, so a notebook's cached baseline
    is reused) is fine-tuned, every layer, for ``finetune_epochs`` epochs at ``finetune_lr`` with the
    penalty added to the loss. From scratch a strong penalty can win before the lesion is learned:
    in FAST runs of notebook 06 (32 px, 6 epochs) ``"rrr"`` at ``lam=10`` or ``100`` ended at chance on
    frame-free images while still following the frame; started from the baseline, which has already
    learned the lesion, 3 epochs at ``lam=100`` kept most of its clean accuracy. Cached with a key
    of the base model's weights, the data, the options and this code.

``"pclarc"``, ``"aclarc"``, ``"rrclarc"``, ``"dfr"`` -- corrections of a trained model (notebook 07b)
    Registered here from :mod:`xaibias.mitigation.clarc` (see its docstring for what each changes
    and costs): :func:`fit_or_load_correction` trains (or loads) the plain baseline with the same arguments and
    corrects it; they have no :func:`prepare` step.

Public names: :data:`CORRECTIONS`, :data:`OPTIONS`, :func:`fit_or_load_correction`, :func:`prepare`,
:func:`matched_epochs`, :func:`balanced_indices`,
:func:`make_augment`, :func:`rrr_penalty`, :func:`make_rrr_hook`, :func:`rrr_lrp_penalty`,
:func:`attention_penalty`.
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from .. import config, models
from .._cache import atomic_save, content_hash, safe_load, source_hash, weights_key
from .._checks import as_images, as_labels, as_masks
from .._options import reject_unknown
from ..data import ARTIFACTS, insert_artifact, unbiased_resample
from ..data.sampling import balanced_indices
from .clarc import CLARC_CORRECTIONS, CLARC_OPTIONS, fit_correction
from .penalties import attention_penalty, make_rrr_hook, make_rrr_lrp_hook, rrr_lrp_penalty, rrr_penalty

__all__ = [
    "CORRECTIONS",
    "OPTIONS",
    "fit_or_load_correction",
    "prepare",
    "matched_epochs",
    "balanced_indices",
    "make_augment",
    "rrr_penalty",
    "make_rrr_hook",
    "rrr_lrp_penalty",
    "attention_penalty",
]

CORRECTIONS: tuple[str, ...] = ("resample", "augment", "rrr", "rrr_lrp", "attention") + CLARC_CORRECTIONS

#: The warm-start options of the three penalties (``"rrr"``, ``"rrr_lrp"``, ``"attention"``).
_WARM: dict[str, Any] = {"warm_start": False, "finetune_epochs": 3, "finetune_lr": 1e-3}
_PENALTIES = ("rrr", "rrr_lrp", "attention")

#: Options of each method and their defaults (``artifacts`` takes a name or a list of names).
OPTIONS: dict[str, dict[str, Any]] = {
    "resample": {"artifacts": ("frame",), "strategy": "cells", "ratio": None, "seed": 0},
    "augment": {"artifacts": ("frame",), "p": 0.5, "balance": True, "params": None},
    "rrr": {"artifacts": ("frame",), "lam": 10.0, "grad_of": "log_probs", **_WARM},
    "rrr_lrp": {"artifacts": ("frame",), "lam": 10.0, "composite": "EpsilonPlusFlat", **_WARM},
    "attention": {"artifacts": ("frame",), "lam": 10.0, "lrp_lam": 0.0, "composite": "EpsilonPlusFlat", **_WARM},
    **CLARC_OPTIONS,
}

_STRATEGIES = ("cells", "keep_artifact")
#: ``"augment"`` with ``balance=True`` paints class ``c`` of a batch with seed ``seed + _CLASS_SEED_STRIDE * c``
#: (a prime, far apart from the batch seeds' neighbours), so the classes do not draw the same artifacts.
_CLASS_SEED_STRIDE = 7919
#: The source that trains a corrected model, part of every cache key here: this file, its penalties, the ClArC module (its
#: options are registered here) and the package's __init__. The reporting helpers of assess.py make no model.
_TRAINING_SOURCE = ("mitigation/methods.py", "mitigation/penalties.py", "mitigation/clarc.py", "mitigation/__init__.py")


# --------------------------------------------------------------------------------------------------
# option checks


def _check_method(method: Any) -> str:
    if method not in CORRECTIONS:
        raise ValueError(f"unknown mitigation {method!r}; choose one of {', '.join(CORRECTIONS)}")
    return method


def _check_artifacts(artifacts: Any, where: str = "artifacts") -> tuple[str, ...]:
    if isinstance(artifacts, str):
        artifacts = (artifacts,)
    if not isinstance(artifacts, (list, tuple)) or len(artifacts) == 0:
        raise ValueError(f"{where} must be an artifact name or a non-empty list of names; got {artifacts!r}")
    bad = [a for a in artifacts if a not in ARTIFACTS]
    if bad:
        raise ValueError(f"{where}: unknown artifact(s) {bad}; valid names are {list(ARTIFACTS)}")
    if len(set(artifacts)) != len(artifacts):
        raise ValueError(f"{where} lists an artifact twice: {list(artifacts)}")
    return tuple(artifacts)


def _check_prob(p: Any, name: str) -> float:
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"{name} must be a probability in [0,1]; got {p!r}")
    return float(p)


def _resolve_options(method: str, options: dict[str, Any]) -> dict[str, Any]:
    defaults = OPTIONS[method]
    reject_unknown(options, defaults, f"correction {method!r}")  # a TypeError (and ValueError)
    return {**defaults, **options}


def _check_warm(opts: dict[str, Any]) -> None:
    if not isinstance(opts["warm_start"], bool):
        raise ValueError(f"warm_start must be True or False; got {opts['warm_start']!r}")
    e, lr = opts["finetune_epochs"], opts["finetune_lr"]
    if isinstance(e, bool) or not isinstance(e, (int, np.integer)) or e < 1:
        raise ValueError(f"finetune_epochs must be an int >= 1; got {e!r}")
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not lr > 0:
        raise ValueError(f"finetune_lr must be a positive number; got {lr!r}")


def _artifact_table(data: Any, method: str) -> pd.DataFrame:
    table = getattr(data, "artifacts", None)
    if not isinstance(table, pd.DataFrame):
        raise ValueError(
            f"mitigation {method!r} needs a training set with an .artifacts DataFrame (one bool column per "
            f"artifact, e.g. xb.data.SyntheticLesions); got {type(data).__name__}"
        )
    return table


def _flags(table: pd.DataFrame, artifact: str, n: int) -> np.ndarray:
    if artifact not in table.columns:
        raise ValueError(f"the training set has no artifact column {artifact!r}; it has {list(table.columns)}")
    flags = table[artifact].to_numpy()
    if flags.dtype != bool or len(flags) != n:
        raise ValueError(f"artifacts[{artifact!r}] must be {n} bools; got dtype {flags.dtype}, length {len(flags)}")
    return flags


# --------------------------------------------------------------------------------------------------
# resample


def _prepare_resample(data: Any, artifacts: tuple[str, ...], strategy: str, ratio: Any, seed: int) -> Any:
    if strategy not in _STRATEGIES:
        raise ValueError(f"resample strategy must be one of {_STRATEGIES}; got {strategy!r}")
    table = _artifact_table(data, "resample")
    if not hasattr(data, "subset"):
        raise ValueError(f"mitigation 'resample' needs a training set with .subset(idx); got {type(data).__name__}")
    labels = as_labels(data.labels).numpy()
    flags = np.stack([_flags(table, a, len(labels)) for a in artifacts], axis=1)
    if strategy == "cells":
        if ratio is not None:
            raise ValueError("ratio applies only to strategy='keep_artifact'; leave it None for 'cells'")
        idx = balanced_indices(labels, flags, seed=seed)
    else:
        if len(artifacts) != 1:
            raise ValueError(
                f"strategy='keep_artifact' balances one artifact; got {list(artifacts)} (use strategy='cells')"
            )
        fl = flags[:, 0]
        if ratio is None:  # the most artifact-free images per artifact image that every class can supply
            ratio = min((~fl & (labels == c)).sum() / max(1, (fl & (labels == c)).sum()) for c in np.unique(labels))
            ratio = float(np.floor(ratio * 1000) / 1000)
        idx = unbiased_resample(labels, fl, ratio=ratio, seed=seed)
    return data.subset(idx)


# --------------------------------------------------------------------------------------------------
# augment


def make_augment(
    artifacts: str | Sequence[str] = ("frame",),
    p: float = 0.5,
    class_probs: dict[str, Sequence[float]] | None = None,
    params: dict[str, dict[str, Any]] | None = None,
) -> Callable[[torch.Tensor, torch.Tensor, np.random.Generator], torch.Tensor]:
    """Build ``augment(images, labels, rng) -> images`` that paints artifacts into a batch.

    Parameters
    ----------
    artifacts : artifact name(s) from :data:`xaibias.data.ARTIFACTS`
    p : probability that an image gets each artifact (used for classes not in ``class_probs``)
    class_probs : optional ``{artifact: [q_0, q_1, ...]}``, the insertion probability per class
    params : optional ``{artifact: {painter parameter: value}}`` (for example
        ``{"patch": {"size": 2.0}}``), so that the painted artifacts look like the data's
        (``SyntheticLesions(artifact_params=...)``)

    The draws come from ``rng`` (one seed per artifact per batch, passed to
    :func:`xaibias.data.insert_artifact`), so a seeded training run is reproducible. Labels are not
    touched.
    """
    arts = _check_artifacts(artifacts)
    p = _check_prob(p, "p")
    probs: dict[str, list[float]] = {}
    for a, qs in (class_probs or {}).items():
        _check_artifacts(a, "class_probs")
        probs[a] = [_check_prob(q, f"class_probs[{a!r}]") for q in qs]
    paint = _check_params(params, arts)

    def augment(images: torch.Tensor, labels: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        x = as_images(images, name="augment images")
        y = as_labels(labels, n=len(x)).cpu()
        out = x.detach().cpu().clone()
        for a in arts:
            seed = int(rng.integers(2**31 - 1))
            if a not in probs:
                out, _ = insert_artifact(out, a, seed=seed, p=p, **paint.get(a, {}))
                continue
            for c in torch.unique(y).tolist():
                sel = (y == c).nonzero().flatten()
                q = probs[a][c] if c < len(probs[a]) else p
                if q > 0:
                    out[sel], _ = insert_artifact(out[sel], a, seed=seed + _CLASS_SEED_STRIDE * c, p=q, **paint.get(a, {}))
        return out

    augment.artifacts = arts  # type: ignore[attr-defined]
    augment.p = p  # type: ignore[attr-defined]
    augment.class_probs = probs  # type: ignore[attr-defined]
    augment.params = paint  # type: ignore[attr-defined]
    return augment


def _check_params(params: Any, arts: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """``{artifact: {painter parameter: value}}`` for the augmented artifacts ``arts``; a clear error otherwise."""
    from ..data.synthetic import painter_params

    return painter_params(params, arts, "params")


def _balanced_probs(labels: np.ndarray, flags: np.ndarray, p: float) -> list[float]:
    classes = int(labels.max()) + 1
    rates = np.array([flags[labels == c].mean() if (labels == c).any() else 0.0 for c in range(classes)])
    r_max = float(rates.max())
    target = r_max + p * (1.0 - r_max)
    return [float((target - r) / (1.0 - r)) if r < 1.0 else 0.0 for r in rates]


def _union_masks(train_set: Any, arts: tuple[str, ...], method: str) -> torch.Tensor:
    masks = getattr(train_set, "masks", None)
    if not isinstance(masks, dict):
        raise ValueError(
            f"mitigation {method!r} needs a training set with .masks (dict of bool (N,H,W) per artifact); "
            f"got {type(train_set).__name__}"
        )
    missing = [a for a in arts if a not in masks]
    if missing:
        raise ValueError(f"the training set has no masks for {missing}; it has {sorted(masks)}")
    union = as_masks(masks[arts[0]], name=f"masks[{arts[0]!r}]").clone()
    for a in arts[1:]:
        union |= as_masks(masks[a], name=f"masks[{a!r}]")
    if len(union) != len(train_set.labels):
        raise ValueError(f"masks have {len(union)} rows but the training set has {len(train_set.labels)} images")
    return union


# --------------------------------------------------------------------------------------------------
# entry points


def prepare(method: str, train_set: Any, **options: Any) -> tuple[Any, dict[str, Any]]:
    """Turn ``method`` with ``options`` into ``(data, extra_train_kwargs)``.

    Parameters
    ----------
    method : one of :data:`CORRECTIONS`
    train_set : the training set (a dataset with ``.images``, ``.labels`` and, depending on the
        method, ``.artifacts`` (resample; augment with ``balance=True``), ``.subset`` (resample)
        and ``.masks`` (rrr, rrr_lrp, attention)), e.g. :class:`xaibias.data.SyntheticLesions`
    **options : see :data:`OPTIONS` and the module docstring

    Returns
    -------
    data : the (for ``"resample"``: reduced) training set
    extra : keyword arguments for :func:`xaibias.models.train` (``augment=`` or ``loss_hook=``)

    Raises
    ------
    ValueError
        For an unknown method, an unknown artifact, an out-of-range value, or a training set that
        lacks what the method needs.
    UnknownOptionError
        A TypeError (and ValueError) naming an option the method does not take and its options.
    """
    method = _check_method(method)
    if method in CLARC_CORRECTIONS:
        raise ValueError(f"{method!r} corrects a trained model and has no prepare step; use fit_or_load_correction({method!r}, ...)")
    opts = _resolve_options(method, options)
    arts = _check_artifacts(opts["artifacts"])
    if not (hasattr(train_set, "images") and hasattr(train_set, "labels")):
        raise ValueError(f"mitigation {method!r} needs a training set with .images and .labels; got {type(train_set).__name__}")
    if method == "resample":
        seed = opts["seed"]
        ratio = opts["ratio"]
        if ratio is not None and (isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not ratio > 0):
            raise ValueError(f"ratio must be None or a positive number; got {ratio!r}")
        return _prepare_resample(train_set, arts, opts["strategy"], ratio, seed), {}
    if method == "augment":
        p = _check_prob(opts["p"], "p")
        if not isinstance(opts["balance"], bool):
            raise ValueError(f"balance must be True or False; got {opts['balance']!r}")
        class_probs = None
        if opts["balance"]:
            table = _artifact_table(train_set, "augment (balance=True)")
            labels = as_labels(train_set.labels).numpy()
            class_probs = {a: _balanced_probs(labels, _flags(table, a, len(labels)), p) for a in arts}
        return train_set, {"augment": make_augment(arts, p=p, class_probs=class_probs, params=opts["params"])}
    _check_warm(opts)
    union = _union_masks(train_set, arts, method)
    if method == "rrr":
        return train_set, {"loss_hook": make_rrr_hook(union, lam=opts["lam"], grad_of=opts["grad_of"])}
    if method == "rrr_lrp":
        return train_set, {"loss_hook": make_rrr_lrp_hook(union, lam=opts["lam"], composite=opts["composite"])}
    # attention: the gate's penalty, plus rrr_lrp's with lrp_lam
    return train_set, {"loss_hook": make_rrr_lrp_hook(union, lam=opts["lrp_lam"], composite=opts["composite"],
                                                      attention_lam=opts["lam"])}


def matched_epochs(method: str | None, train_set: Any, epochs: int, **options: Any) -> int:
    """The epochs that give ``method`` as many gradient steps as ``epochs`` of plain training on ``train_set``.

    ``"resample"`` trains on a subset (:func:`prepare`), so an epoch has fewer batches: its epochs
    are scaled by ``len(train_set) / len(subset)`` and rounded to the nearest int. Every other method
    (and None, plain training) trains on the full set and keeps ``epochs``. Notebooks 06 and 07b use
    it so the resampled model is not trained for fewer steps than the others.

    Parameters
    ----------
    method : one of :data:`CORRECTIONS`, or None
    train_set : the training set that :func:`fit_or_load_correction` is given
    epochs : the epochs of plain training on ``train_set``
    **options : the method's options (for ``"resample"``, those that choose the subset)

    Returns
    -------
    int
    """
    if method != "resample":
        return epochs
    kept, _ = prepare(method, train_set, **options)
    return int(round(epochs * len(train_set) / len(kept)))


def fit_or_load_correction(name: str, train_set: Any, method: str | None = None, options: dict | None = None,
                           **fit_kwargs: Any) -> nn.Module:
    """Train model ``name`` on ``train_set`` with the bias correction ``method`` (cached).

    Parameters
    ----------
    name : a model name of :data:`xaibias.models.MODELS`
    train_set : the training set (see :func:`prepare` for what each method needs)
    method : one of :data:`CORRECTIONS`, or None for plain training
    options : the method's options (:data:`OPTIONS`); JSON-able, they are part of the cache key; one
        the method does not take raises a ``TypeError`` (see :func:`prepare`)
    **fit_kwargs : passed on to :func:`xaibias.models.fit_or_load` (``epochs``, ``seed``, ``lr``,
        ``batch_size``, ``device``, ...); for the corrections of a trained model they define the
        baseline, and ``fit_set=`` names the data the correction is fitted on
        (:func:`xaibias.mitigation.clarc.fit_correction`)

    Returns
    -------
    The trained model in eval mode, as :func:`xaibias.models.fit_or_load` returns it.
    """
    if method is None:
        if options:
            raise ValueError(f"options {options!r} were given without a method; pick one of {', '.join(CORRECTIONS)}")
        return models.fit_or_load(name, train_set, **fit_kwargs)
    for taken in ("train_hooks", "hooks_key"):
        if taken in fit_kwargs:
            raise ValueError(f"{taken}= is set by mitigation.fit_or_load_correction itself; call xaibias.models.fit_or_load to pass it")
    opts = dict(options or {})
    if method == "attention" and not callable(getattr(models.make_model(name, seed=0), "attention", None)):
        raise ValueError(f"mitigation 'attention' needs a model with an attention gate, e.g. 'small_vgg_attention'; "
                         f"{name!r} has none")
    if _check_method(method) in CLARC_CORRECTIONS:  # baseline + correction, cached by xaibias.mitigation.clarc
        return fit_correction(name, train_set, method, opts, **fit_kwargs)
    data, hooks = prepare(method, train_set, **opts)
    if method in _PENALTIES and opts.get("warm_start"):
        return _fit_warm(name, train_set, method, _resolve_options(method, opts), hooks, fit_kwargs)
    key = content_hash("mitigation", method, opts, source_hash(*_TRAINING_SOURCE))
    return models.fit_or_load(name, data, train_hooks=hooks, hooks_key=key, **fit_kwargs)


def _fit_warm(name: str, train_set: Any, method: str, opts: dict[str, Any], hooks: dict[str, Any],
              fit_kwargs: dict[str, Any]) -> nn.Module:
    """The uncorrected model (``fit_kwargs``, cached) fine-tuned with the penalty ``hooks`` (cached too).

    Every layer is fine-tuned for ``finetune_epochs`` epochs at ``finetune_lr``. The key hashes the
    base model's weights, the training data, the resolved options, ``batch_size``/``seed``, the source
    that trains corrected models (:data:`_TRAINING_SOURCE`) and :func:`xaibias.models.training_code_version`.
    """
    base = models.fit_or_load(name, train_set, **fit_kwargs)
    seed = int(fit_kwargs.get("seed", 0))
    common = {k: fit_kwargs[k] for k in ("batch_size", "device", "progress") if k in fit_kwargs}
    key = content_hash("mitigation-warm", method, opts, weights_key(base), models.dataset_key(train_set),
                       fit_kwargs.get("batch_size", 64), seed, source_hash(*_TRAINING_SOURCE), models.training_code_version())
    path = config.cache_dir("models") / f"{name}-{method}-warm-{key}.pt"
    model = copy.deepcopy(base)
    state = safe_load(path) if fit_kwargs.get("cache", True) else None
    if state is not None:
        try:
            model.load_state_dict(state)
            return model.eval()
        except (RuntimeError, KeyError):
            model = copy.deepcopy(base)
    models.train(model, train_set, epochs=int(opts["finetune_epochs"]), lr=float(opts["finetune_lr"]), seed=seed,
                 **common, **hooks)
    if fit_kwargs.get("cache", True):
        atomic_save({k: v.detach().cpu() for k, v in model.state_dict().items()}, path)
    return model.eval()
