"""Concept Relevance Propagation (CRP) over zennit-crp: which channel concepts of a layer matter.

CRP (Achtibat et al. 2023, *From attribution maps to human-understandable explanations through
Concept Relevance Propagation*) splits an LRP explanation by the channels ("concepts") of a hidden
layer. Three questions, three functions:

* :func:`concept_relevance` -- how much of the class relevance passes through each channel of
  ``layer``? An ``(N, C)`` table (one LRP pass per image, relevance recorded at the layer).
* :func:`conditional_heatmaps` -- *where in the image* is each concept's share? ``(N, k, H, W)``
  heatmaps, one per concept, from LRP passes whose relevance is masked at ``layer`` to one channel.
* :func:`reference_images` -- *what* does a concept encode? The images of a dataset on which the
  concept carries the most relevance (relevance maximisation) or fires most (activation
  maximisation), found with zennit-crp's ``FeatureVisualization`` and cached under
  :func:`xaibias.config.cache_dir` (``"crp"``).

Residual networks and exact conditioning
----------------------------------------
zennit-crp conditions on a concept by zeroing the relevance of all other channels at ``layer``.
In a residual block the relevance can also reach the input through the shortcut, which bypasses
``layer`` and is not masked, so every conditional heatmap of a concept inside a residual branch
also contains the full shortcut relevance. :func:`conditional_heatmaps` (``exact=True``) therefore
computes one more pass per image conditioned on the *empty* concept set at the same layer (every
channel masked: only the shortcut relevance is left) and subtracts it. LRP relevance is linear in
the relevance it starts from, so after the subtraction the heatmaps of all channels of a layer add
up to exactly the relevance that flows *through* the layer; for a plain (VGG-style) network the
subtracted map is zero and nothing changes.

All functions take ``composite`` as a name in :data:`xaibias.explain.COMPOSITES` (default
``"EpsilonPlusFlat"``) or a zennit composite instance, and ``canonizers`` as in
:func:`xaibias.explain.attribute` (``"auto"`` picks zennit's ``ResNetCanonizer`` for torchvision
residual blocks and merges batch norms elsewhere).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from crp.attribution import CondAttribution
from crp.concepts import ChannelConcept
from crp.helper import load_maximization
from crp.visualization import FeatureVisualization
from tqdm.auto import tqdm
from zennit.canonizers import Canonizer
from zennit.core import Composite

from .. import config
from .._cache import content_hash
from .._checks import as_images, as_labels, describe
from .._options import reject_unknown
from .attribution import make_composite, resolve_target

__all__ = [
    "concept_relevance",
    "top_concepts",
    "conditional_heatmaps",
    "reference_images",
    "concept_layers",
    "TopConcepts",
    "References",
]

_OUT = "y"  # zennit-crp's name for the model output in condition dicts


class TopConcepts(NamedTuple):
    """Result of :func:`top_concepts`: concept ids and their (normalised) relevance, best first."""

    ids: torch.Tensor
    relevance: torch.Tensor


class References(NamedTuple):
    """Result of :func:`reference_images`.

    ``images`` (k, n_ref, 3, H, W) dataset images, ``indices`` (k, n_ref) their dataset indices,
    ``scores`` (k, n_ref) the normalised relevance (or activation) share of the concept on them, and
    ``heatmaps`` (k, n_ref, H, W) the concept's own heatmap on each reference (relevance started at
    ``layer`` from the concept's activation) or ``None`` when not requested.
    """

    images: torch.Tensor
    indices: torch.Tensor
    scores: torch.Tensor
    heatmaps: torch.Tensor | None


# --------------------------------------------------------------------------------------------------
# model, layer, composite and target handling


def concept_layers(model: torch.nn.Module) -> list[str]:
    """Names of the layers whose channels can serve as concepts (every ``Conv2d`` and ``Linear``)."""
    return [n for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]


def _check_layer(model: torch.nn.Module, layer: str) -> torch.nn.Module:
    if not isinstance(layer, str):
        raise TypeError(f"layer must be a module name (str); got {type(layer).__name__}")
    modules = dict(model.named_modules())
    if layer == _OUT:
        raise ValueError(f"layer {layer!r} clashes with zennit-crp's name for the model output")
    if layer not in modules or layer == "":
        names = concept_layers(model)
        shown = ", ".join(repr(n) for n in names[:12]) + (" ..." if len(names) > 12 else "")
        raise ValueError(f"layer {layer!r} is not a module of the model; concept layers are: {shown}")
    return modules[layer]


def _composite(
    model: torch.nn.Module,
    composite: str | Composite,
    canonizers: str | Sequence[Canonizer] | None,
    images: torch.Tensor,
) -> Composite:
    """The same composites and canonizers as :func:`xaibias.explain.attribute` uses."""
    if not isinstance(composite, (str, Composite)):
        raise TypeError(f"composite must be a name or a zennit Composite; got {type(composite).__name__}")
    return make_composite(composite, canonizers, model=model, input_shape=(1, *images.shape[1:]))


@contextlib.contextmanager
def _prepared(model: torch.nn.Module) -> Iterator[torch.device]:
    """Eval mode and frozen parameters for the duration; restores both afterwards."""
    was_training = model.training
    flags = [p.requires_grad for p in model.parameters()]
    model.eval()
    model.requires_grad_(False)
    try:
        params = list(model.parameters())
        yield params[0].device if params else torch.device("cpu")
    finally:
        for p, f in zip(model.parameters(), flags):
            p.requires_grad_(f)
        model.train(was_training)


def _attribution(model: torch.nn.Module, dev: torch.device) -> CondAttribution:
    return CondAttribution(model, device=dev, no_param_grad=False)


def _targets(model: torch.nn.Module, images: torch.Tensor, target: Any, dev: torch.device, batch_size: int) -> torch.Tensor:
    """None -> predicted class, int -> that class for every image, sequence -> one per image."""
    with torch.no_grad():
        if target is None:
            logits = torch.cat([model(images[s : s + batch_size].to(dev)).cpu()
                                for s in range(0, images.shape[0], batch_size)])
        else:
            logits = model(images[:1].to(dev)).cpu()
    return resolve_target(target, images.shape[0], logits).cpu()


def _check_batch_size(batch_size: int) -> int:
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
    return int(batch_size)


def _n_channels(model: torch.nn.Module, layer: str, images: torch.Tensor, dev: torch.device) -> int:
    module = _check_layer(model, layer)
    out: dict[str, int] = {}

    def hook(_m, _i, o):
        out["c"] = o.shape[1]

    h = module.register_forward_hook(hook)
    try:
        with torch.no_grad():
            model(images[:1].to(dev))
    finally:
        h.remove()
    return out["c"]


# --------------------------------------------------------------------------------------------------
# concept relevance


def concept_relevance(
    model: torch.nn.Module,
    images: Any,
    layer: str,
    target: int | Sequence[int] | torch.Tensor | None = None,
    composite: str | Composite = "EpsilonPlusFlat",
    canonizers: str | Sequence[Canonizer] | None = "auto",
    batch_size: int = 32,
    normalize: bool = False,
    progress: bool = False,
) -> torch.Tensor:
    """Relevance of each channel concept of ``layer`` for the explained class: ``(N, C)``.

    One LRP pass per image starting at the target logit; the relevance arriving at the output of
    ``layer`` is summed over space per channel. In a residual network this is the relevance that
    passes *through* ``layer``; what takes the shortcut around it is not included.

    Parameters
    ----------
    model : torch.nn.Module
        Classifier returning logits (N, classes).
    images : tensor (N,3,H,W) in [0,1]
        The images to explain.
    layer : str
        Name of the layer (``dict(model.named_modules())`` key), see :func:`concept_layers`.
    target : None, int or sequence of int
        Class to explain: None = predicted class, an int for every image, or one per image.
    composite, canonizers
        LRP rules, as for :func:`xaibias.explain.attribute`.
    batch_size : int
        Images per pass.
    normalize : bool
        Divide each row by the sum of its absolute values (CRP's relative concept relevance).
    progress : bool
        Show a progress bar.

    Returns
    -------
    torch.Tensor
        float32 (N, C) on the CPU.
    """
    images = as_images(images)
    batch_size = _check_batch_size(batch_size)
    _check_layer(model, layer)
    comp = _composite(model, composite, canonizers, images)
    rows = []
    with _prepared(model) as dev:
        tgt = _targets(model, images, target, dev, batch_size)
        attr = _attribution(model, dev)
        starts = range(0, images.shape[0], batch_size)
        for s in tqdm(starts, desc="concept relevance", disable=not progress):
            x = images[s : s + batch_size].to(dev).clone().requires_grad_(True)
            conds = [{_OUT: [int(t)]} for t in tgt[s : s + batch_size]]
            res = attr(x, conds, comp, record_layer=[layer], exclude_parallel=False)
            rel = res.relevances[layer]
            rows.append(rel.reshape(*rel.shape[:2], -1).sum(-1).detach().float().cpu())
    out = torch.cat(rows)
    if normalize:
        out = out / (out.abs().sum(1, keepdim=True) + 1e-12)
    return out


def top_concepts(
    model: torch.nn.Module | None = None,
    images: Any = None,
    layer: str | None = None,
    target: int | Sequence[int] | torch.Tensor | None = None,
    k: int = 5,
    per_image: bool = True,
    relevance: torch.Tensor | None = None,
    **kwargs: Any,
) -> TopConcepts:
    """The ``k`` most relevant concepts of ``layer``, per image or over all images.

    Parameters
    ----------
    model, images, layer, target
        As for :func:`concept_relevance` (not needed when ``relevance`` is given).
    k : int
        How many concepts.
    per_image : bool
        True: ids (N, k) per image. False: ids (k,) ranked by the mean normalised relevance over
        the images (CRP's relative relevance, so every image weighs the same).
    relevance : tensor (N, C), optional
        A precomputed :func:`concept_relevance` table; saves the LRP passes.
    **kwargs
        Passed to :func:`concept_relevance` (composite, canonizers, batch_size); with
        ``relevance`` given they would go unused and raise a ``TypeError``.

    Returns
    -------
    TopConcepts
        ``ids`` (long) and ``relevance`` (their normalised relevance share), best first.
    """
    if relevance is None:
        if model is None or images is None or layer is None:
            raise ValueError("top_concepts needs either relevance=(N,C) or model, images and layer")
        relevance = concept_relevance(model, images, layer, target, **kwargs)
    else:  # the options of concept_relevance would go unused
        reject_unknown(kwargs, (), "top_concepts() with a precomputed relevance table")
    rel = torch.as_tensor(relevance)
    if rel.ndim != 2 or not rel.is_floating_point():
        raise ValueError(f"relevance must be a float (N, C) concept table; got {describe(rel)}")
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or not 1 <= k <= rel.shape[1]:
        raise ValueError(f"k must be an int between 1 and the number of concepts ({rel.shape[1]}); got {k!r}")
    share = rel / (rel.abs().sum(1, keepdim=True) + 1e-12)
    if per_image:
        vals, ids = share.topk(int(k), dim=1)
    else:
        vals, ids = share.mean(0).topk(int(k))
    return TopConcepts(ids, vals)


# --------------------------------------------------------------------------------------------------
# conditional heatmaps


def _concept_matrix(concepts: Any, n: int, n_channels: int) -> torch.Tensor:
    if isinstance(concepts, (int, np.integer)) and not isinstance(concepts, bool):
        concepts = [int(concepts)]
    c = torch.as_tensor(np.asarray(concepts) if isinstance(concepts, (list, tuple)) else concepts)
    if c.is_floating_point() or c.dtype == torch.bool or c.numel() == 0 or c.ndim not in (1, 2):
        raise ValueError(
            f"concepts must be channel ids: an int, a list of ints or an (N, k) int tensor; got {describe(c)}"
        )
    c = c.long()
    if c.ndim == 1:
        c = c.unsqueeze(0).expand(n, -1)
    elif c.shape[0] != n:
        raise ValueError(f"concepts of shape (N, k) must have one row per image (N={n}); got {tuple(c.shape)}")
    if int(c.min()) < 0 or int(c.max()) >= n_channels:
        raise ValueError(
            f"concepts must be channel ids in [0, {n_channels}) for this layer; got range "
            f"[{int(c.min())}, {int(c.max())}]"
        )
    return c


def conditional_heatmaps(
    model: torch.nn.Module,
    images: Any,
    layer: str,
    concepts: int | Sequence[int] | torch.Tensor,
    target: int | Sequence[int] | torch.Tensor | None = None,
    composite: str | Composite = "EpsilonPlusFlat",
    canonizers: str | Sequence[Canonizer] | None = "auto",
    batch_size: int = 32,
    exact: bool = True,
    progress: bool = False,
) -> torch.Tensor:
    """Input heatmaps of the class relevance that flows through single concepts: ``(N, k, H, W)``.

    For every image and concept one LRP pass starts at the target logit and, at ``layer``, keeps
    only the relevance of that channel (zennit-crp's ``CondAttribution``). With ``exact=True`` the
    pass conditioned on *no* channel of ``layer`` (the relevance that bypasses the layer through
    residual shortcuts) is subtracted, so that summed over all channels the heatmaps give exactly
    the relevance flowing through ``layer``.

    Parameters
    ----------
    model, images, layer, target, composite, canonizers
        As for :func:`concept_relevance`.
    concepts : int, list of int, or (N, k) int tensor
        Channel ids, the same for every image or one row per image (for example
        ``top_concepts(...).ids``).
    batch_size : int
        Backward passes per batch (images x (k + 1) rows).
    exact : bool
        Subtract the shortcut-only heatmap (see module docstring). False returns zennit-crp's
        plain conditional heatmaps.
    progress : bool
        Show a progress bar.

    Returns
    -------
    torch.Tensor
        float32 (N, k, H, W) on the CPU, summed over colour channels.
    """
    images = as_images(images)
    batch_size = _check_batch_size(batch_size)
    _check_layer(model, layer)
    comp = _composite(model, composite, canonizers, images)
    n, _, h, w = images.shape
    out = []
    with _prepared(model) as dev:
        cmat = _concept_matrix(concepts, n, _n_channels(model, layer, images, dev))
        k = cmat.shape[1]
        rows_per_image = k + (1 if exact else 0)
        per_batch = max(1, batch_size // rows_per_image)
        tgt = _targets(model, images, target, dev, batch_size)
        attr = _attribution(model, dev)
        for s in tqdm(range(0, n, per_batch), desc="conditional heatmaps", disable=not progress):
            idx = range(s, min(n, s + per_batch))
            x = images[s : idx.stop].to(dev).repeat_interleave(rows_per_image, dim=0)
            x = x.clone().requires_grad_(True)
            conds = []
            for i in idx:
                t = int(tgt[i])
                conds += [{layer: [int(c)], _OUT: [t]} for c in cmat[i]]
                if exact:
                    conds.append({layer: [], _OUT: [t]})
            res = attr(x, conds, comp, exclude_parallel=False)
            hm = res.heatmap.detach().float().cpu().reshape(len(idx), rows_per_image, h, w)
            if exact:
                hm = hm[:, :k] - hm[:, k:]
            out.append(hm)
    return torch.cat(out)


# --------------------------------------------------------------------------------------------------
# reference images (relevance / activation maximisation)


class _IndexedImages(torch.utils.data.Dataset):
    """(image, target) pairs for zennit-crp's FeatureVisualization."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor):
        self.images, self.targets = images, targets

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i].clone(), int(self.targets[i])


def _dataset_arrays(dataset: Any) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(dataset, (tuple, list)) and len(dataset) == 2:
        images, labels = dataset
    elif hasattr(dataset, "images") and hasattr(dataset, "labels"):
        images, labels = dataset.images, dataset.labels
    else:
        raise ValueError(
            f"dataset must have .images and .labels or be an (images, labels) tuple; got {type(dataset).__name__}"
        )
    images = as_images(images, name="dataset images")
    labels = as_labels(labels, n=images.shape[0], name="dataset labels")
    return images, labels


def _model_key(model: torch.nn.Module) -> str:
    state = model.state_dict()
    # flattened (content_hash cannot view 0-d tensors such as num_batches_tracked), shapes kept
    flat = {k: v.reshape(-1) for k, v in state.items() if torch.is_tensor(v)}
    shapes = {k: list(v.shape) for k, v in state.items() if torch.is_tensor(v)}
    return content_hash(type(model).__name__, flat, shapes)


def _composite_key(comp: Composite) -> list[str]:
    return [type(comp).__name__] + [type(c).__name__ for c in getattr(comp, "canonizers", [])]


def _run_feature_visualization(
    model: torch.nn.Module,
    data: _IndexedImages,
    layer: str,
    comp: Composite,
    folder: os.PathLike,
    dev: torch.device,
    batch_size: int,
) -> None:
    attr = _attribution(model, dev)
    fv = FeatureVisualization(attr, data, {layer: ChannelConcept()}, path=str(folder), device=dev)
    try:
        # zennit-crp prints progress messages; keep the notebook output quiet.
        with contextlib.redirect_stdout(io.StringIO()):
            fv.run(comp, 0, len(data), batch_size=batch_size, checkpoint=10**9)
    finally:
        comp.remove()  # FeatureVisualization registers the composite itself; be sure it is gone


def reference_images(
    model: torch.nn.Module,
    dataset: Any,
    layer: str,
    concepts: int | Sequence[int] | torch.Tensor,
    mode: str = "relevance",
    n_ref: int = 8,
    target: int | Sequence[int] | torch.Tensor | None = None,
    composite: str | Composite = "EpsilonPlusFlat",
    canonizers: str | Sequence[Canonizer] | None = "auto",
    batch_size: int = 32,
    heatmaps: bool = False,
    cache: bool = True,
) -> References:
    """Reference images of concepts: where each concept is most relevant (or most active).

    Runs zennit-crp's ``FeatureVisualization`` once over ``dataset`` for ``layer`` (relevance with
    respect to each image's label, or ``target``) and keeps, per channel, the images with the
    largest *normalised* channel relevance (``mode="relevance"``, relevance maximisation) or
    activation (``mode="activation"``; with canonizers, a convolution's activation includes the
    batch norm merged into it). The ranking is cached under
    ``xb.config.cache_dir("crp")``, keyed by the model weights, the data, the layer and the
    composite; it is written to a temporary folder and renamed when complete.

    Parameters
    ----------
    model : torch.nn.Module
        The classifier.
    dataset : object with ``.images``/``.labels`` or an ``(images, labels)`` tuple
        The pool the references are drawn from.
    layer : str
        Concept layer.
    concepts : int or list of int
        Channel ids.
    mode : "relevance" or "activation"
        Relevance maximisation or activation maximisation.
    n_ref : int
        References per concept, at most 40 (zennit-crp keeps the top 40).
    target : None, int or sequence
        Class whose relevance is maximised: None = each image's label.
    composite, canonizers, batch_size
        As for :func:`concept_relevance`.
    heatmaps : bool
        Also return each reference's concept heatmap (relevance started at ``layer`` from the
        concept's activation, as zennit-crp draws reference images).
    cache : bool
        Use and write the cache.

    Returns
    -------
    References
        images (k, n_ref, 3, H, W), indices (k, n_ref), scores (k, n_ref), heatmaps or None.
    """
    if mode not in ("relevance", "activation"):
        raise ValueError(f"mode must be 'relevance' or 'activation'; got {mode!r}")
    images, labels = _dataset_arrays(dataset)
    batch_size = _check_batch_size(batch_size)
    _check_layer(model, layer)
    if not isinstance(n_ref, (int, np.integer)) or isinstance(n_ref, bool) or not 1 <= n_ref <= 40:
        raise ValueError(f"n_ref must be an int between 1 and 40 (zennit-crp keeps the top 40); got {n_ref!r}")
    n_ref = min(int(n_ref), len(images))
    comp = _composite(model, composite, canonizers, images)
    with _prepared(model) as dev:
        n_channels = _n_channels(model, layer, images, dev)
        ids = _concept_matrix(concepts, 1, n_channels)[0]
        tgt = labels if target is None else _targets(model, images, target, dev, batch_size)
        key = content_hash(_model_key(model), images, tgt, layer, _composite_key(comp))
        root = config.cache_dir("crp")
        final = root / f"fv-{key}"
        if not cache or not final.is_dir():
            tmp = Path(tempfile.mkdtemp(prefix=f"fv-{key}.", suffix=".tmp", dir=root))
            try:
                _run_feature_visualization(model, _IndexedImages(images, tgt), layer, comp, tmp, dev, batch_size)
                if cache:
                    try:
                        os.replace(tmp, final)
                    except OSError:  # another process finished first: keep theirs
                        pass
                    else:
                        tmp = None
                folder = final if cache else tmp
                sub = "RelMax_sum_normed" if mode == "relevance" else "ActMax_sum_normed"
                d_sorted, r_sorted, _ = (np.array(a) for a in load_maximization(folder / sub, layer))
            finally:
                if tmp is not None and Path(tmp).exists():
                    shutil.rmtree(tmp, ignore_errors=True)
        else:
            sub = "RelMax_sum_normed" if mode == "relevance" else "ActMax_sum_normed"
            d_sorted, r_sorted, _ = (np.array(a) for a in load_maximization(final / sub, layer))
        idx = torch.from_numpy(d_sorted[:n_ref, ids.numpy()].T.copy()).long()
        scores = torch.from_numpy(r_sorted[:n_ref, ids.numpy()].T.copy()).float()
        refs = images[idx.reshape(-1)].reshape(len(ids), n_ref, *images.shape[1:])
        hms = None
        if heatmaps:
            hms = _concept_heatmaps(model, refs.reshape(-1, *images.shape[1:]), layer,
                                    ids.repeat_interleave(n_ref), comp, dev, batch_size)
            hms = hms.reshape(len(ids), n_ref, *images.shape[2:])
    return References(refs, idx, scores, hms)


def _concept_heatmaps(model, images, layer, concept_per_image, comp, dev, batch_size) -> torch.Tensor:
    """Heatmaps of one concept per image, relevance started at ``layer`` from the activation."""
    attr = _attribution(model, dev)
    out = []
    for s in range(0, images.shape[0], batch_size):
        x = images[s : s + batch_size].to(dev).clone().requires_grad_(True)
        conds = [{layer: [int(c)]} for c in concept_per_image[s : s + batch_size]]
        res = attr(x, conds, comp, start_layer=layer, exclude_parallel=False)
        out.append(res.heatmap.detach().float().cpu())
    return torch.cat(out)

