"""One table of bias evidence per model: accuracy, insertion effect, saliency and relevance mass.

:func:`bias_report` gathers what notebooks 02-05 measure one at a time, so that models trained with
and without a mitigation (notebook 06) can be compared side by side:

- **accuracy** on every test set given (typically the same-distribution test set, one with the
  artifact/class correlation reversed, and a clean one without the artifact);
- **insertion effect** per artifact: the mean change of the target-class (malignant) probability,
  in percentage points, when the artifact is pasted into test images that do not have it
  (:func:`xaibias.analysis.bias_insertion`, GEBI), its mean absolute change, and the share of
  images whose prediction flips;
- **mean saliency** on the artifact mask (Pfau et al. 2019, :func:`xaibias.analysis.mean_saliency`)
  of the target-class explanation, on test images that carry the artifact. The saliency is the
  absolute relevance (attention regardless of sign), divided per image by its mean over the image,
  so the number is comparable between models whose explanations differ in scale: 1 means "as
  salient as the average pixel", 0 "ignored";
- **relevance mass accuracy** on the artifact mask (Schaaf et al. 2021,
  :func:`xaibias.analysis.relevance_mass_accuracy`): the share of positive relevance that falls on
  the artifact, next to the artifact's share of the image area (what a model that spreads its
  relevance evenly would score).

With ``return_per_image=True`` it also returns the per-image numbers behind every mean (whether
each test image is classified correctly, each image's insertion change, each explained image's
saliency and relevance mass), so a notebook can put a bootstrap interval over images around any
column, or around the difference between two models on the same images
(:func:`xaibias.analysis.bootstrap_ci`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from .._checks import as_masks, describe
from .insertion import bias_insertion
from .metrics import relevance_mass_accuracy
from .saliency import mean_saliency

__all__ = ["bias_report"]

def _as_models(models: Any) -> dict[Any, torch.nn.Module]:
    if isinstance(models, torch.nn.Module):
        return {"model": models}
    if isinstance(models, Mapping):
        if not models:
            raise ValueError("models is empty; give a model or a dict {name: model}")
        bad = [k for k, m in models.items() if not isinstance(m, torch.nn.Module)]
        if bad:
            raise ValueError(f"models must map names to torch.nn.Module; not a module: {bad}")
        return dict(models)
    raise ValueError(f"models must be a torch.nn.Module or a dict {{name: model}}; got {describe(models)}")


def _as_sets(test_sets: Any) -> dict[str, Any]:
    if not isinstance(test_sets, Mapping):
        test_sets = {"test": test_sets}
    if not test_sets:
        raise ValueError("test_sets is empty; give a dataset or a dict {name: dataset}")
    for name, ds in test_sets.items():
        if not (hasattr(ds, "images") and hasattr(ds, "labels")):
            raise ValueError(f"test_sets[{name!r}] must have .images and .labels; got {describe(ds)}")
    return dict(test_sets)


def _pick_set(sets: dict[str, Any], name: str | None, what: str) -> Any:
    if name is None:
        return next(iter(sets.values()))
    if name not in sets:
        raise ValueError(f"{what}={name!r} is not a key of test_sets; choose one of {list(sets)}")
    return sets[name]


def bias_report(
    models: torch.nn.Module | Mapping[Any, torch.nn.Module],
    test_sets: Any | Mapping[str, Any],
    artifacts: str | Sequence[str] = ("frame",),
    insertion_set: str | None = None,
    explain_set: str | None = None,
    target_class: int = 1,
    method: str = "lrp",
    n_explain: int = 64,
    n_insert: int | None = None,
    seed: int = 0,
    progress: bool = False,
    return_per_image: bool = False,
    **method_kwargs: Any,
) -> pd.DataFrame | tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Accuracy, insertion effect, mean saliency and relevance mass on artifacts, one row per model.

    Parameters
    ----------
    models : a model or ``{name: model}`` (rows of the table, in this order)
    test_sets : a dataset or ``{name: dataset}``; each needs ``.images``/``.labels``. Accuracy is
        reported on every set as ``acc_<name>``
    artifacts : artifact name(s) from :data:`xaibias.data.ARTIFACTS`
    insertion_set : name of the set to insert into (default: the first); images that already carry
        the artifact (its ``.artifacts`` column) are left out
    explain_set : name of the set to explain (default: the first); it needs ``.masks[artifact]``,
        and its images with the artifact are used (the first ``n_explain``)
    target_class : the class whose score and explanation are tracked (1 = malignant)
    method : attribution method for :func:`xaibias.explain.attribute` (default ``"lrp"`` with its
        default composite); ``method_kwargs`` are passed on
    n_explain : images with the artifact explained per model (>= 1)
    n_insert : images used for insertion (default: all of the insertion set)
    seed : painter seed of the insertion (the same counterfactuals for every model)
    progress : show progress bars
    return_per_image : also return the per-image values behind the table's means (see below)

    Returns
    -------
    pandas.DataFrame indexed by model name, with columns ``acc_<set>`` for every test set and, for
    every artifact ``a``: ``insertion_<a>_pp`` (mean change of the target-class probability in pp
    over all inserted images), ``insertion_<a>_abs_pp`` (mean absolute change: a model that moves
    some images up and others down has a small signed but a large absolute effect),
    ``flip_<a>`` (share of those whose predicted class changed),
    ``saliency_<a>`` (mean over images of the mean of |R| / mean(|R|) on the mask),
    ``rma_<a>`` (mean relevance mass accuracy) and ``area_<a>`` (mean share of the image the mask
    covers). ``attrs`` records the settings.

    per_image : dict of DataFrames (only with ``return_per_image=True``)
        ``"accuracy"``: one row per model, test set and image (``model, set, index, label, pred,
        correct``); ``"insertion"``: one row per model, artifact and insertion image that did not
        already carry the artifact (``model, artifact, index, true_class, score_before,
        score_after, change_pp, flipped``; ``index`` is the row in the insertion set, so two models
        are paired on the same counterfactual image); ``"explanation"``: one row per model,
        artifact and explained image (``model, artifact, index, saliency, rma, area``; ``index``
        is the row in the explain set, ``rma`` is NaN for an image without positive relevance).
        The table's columns are the means of these (``acc_<set>``, ``insertion_<a>_pp``,
        ``flip_<a>``, ``saliency_<a>``, ``rma_<a>`` (NaN-mean), ``area_<a>``).

    Raises
    ------
    ValueError
        For an empty or malformed ``models``/``test_sets``, an unknown artifact or set name, an
        explain set without masks for an artifact or without any image carrying it, or
        ``n_explain < 1``.
    """
    from ..data import ARTIFACTS
    from ..explain import attribute
    from ..models import as_tensors, evaluate, predict

    mods = _as_models(models)
    sets = _as_sets(test_sets)
    arts = (artifacts,) if isinstance(artifacts, str) else tuple(artifacts)
    if not arts:
        raise ValueError(f"artifacts is empty; give at least one of {list(ARTIFACTS)}")
    unknown = [a for a in arts if a not in ARTIFACTS]
    if unknown:
        raise ValueError(f"unknown artifact(s) {unknown}; choose from {list(ARTIFACTS)}")
    if isinstance(n_explain, bool) or not isinstance(n_explain, (int, np.integer)) or n_explain < 1:
        raise ValueError(f"n_explain must be an int >= 1; got {n_explain!r}")
    if n_insert is not None and (isinstance(n_insert, bool) or not isinstance(n_insert, (int, np.integer)) or n_insert < 1):
        raise ValueError(f"n_insert must be None or an int >= 1; got {n_insert!r}")

    ins = _pick_set(sets, insertion_set, "insertion_set")
    ins_x, ins_y = as_tensors(ins)
    present = getattr(ins, "artifacts", None)
    if n_insert is not None:
        ins_x, ins_y = ins_x[:n_insert], ins_y[:n_insert]
        present = present.iloc[:n_insert] if isinstance(present, pd.DataFrame) else None

    exp = _pick_set(sets, explain_set, "explain_set")
    masks_of = getattr(exp, "masks", None)
    explain: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for a in arts:
        if not isinstance(masks_of, Mapping) or a not in masks_of:
            raise ValueError(f"the explain set has no masks[{a!r}]; it needs bool (N,H,W) artifact masks (e.g. SyntheticLesions)")
        m = as_masks(masks_of[a], name=f"masks[{a!r}]")
        has = m.flatten(1).any(1).nonzero().flatten()[:n_explain]
        if len(has) == 0:
            raise ValueError(f"no image of the explain set carries {a!r}; saliency on its mask is undefined")
        explain[a] = (as_tensors(exp)[0][has], m[has], has)

    rows = {}
    per_acc: list[pd.DataFrame] = []
    per_ins: list[pd.DataFrame] = []
    per_exp: list[pd.DataFrame] = []
    for name, model in mods.items():
        row: dict[str, float] = {}
        for sname, ds in sets.items():
            if return_per_image:
                xs, ys = as_tensors(ds)
                pred = predict(model, xs).cpu().numpy()
                lab = ys.cpu().numpy()
                per_acc.append(pd.DataFrame({"model": name, "set": sname, "index": np.arange(len(lab)), "label": lab,
                                             "pred": pred, "correct": pred == lab}))
                row[f"acc_{sname}"] = float((pred == lab).mean())
            else:
                row[f"acc_{sname}"] = evaluate(model, ds)["accuracy"]
        _, per = bias_insertion(model, ins_x, ins_y, artifacts=arts, target_class=target_class, seed=seed,
                                present=present, return_per_image=True, progress=progress)
        for a in arts:
            used = per[(per["artifact"] == a) & ~per["skipped"]]
            if len(used) == 0:
                raise ValueError(f"every image of the insertion set already carries {a!r}; nothing to insert into")
            row[f"insertion_{a}_pp"] = float(used["change_pp"].mean())
            row[f"insertion_{a}_abs_pp"] = float(used["change_pp"].abs().mean())
            row[f"flip_{a}"] = float(used["flipped"].mean())
            if return_per_image:
                keep = ["index", "artifact", "true_class", "score_before", "score_after", "change_pp", "flipped"]
                per_ins.append(used[keep].assign(model=name)[["model", *keep]])
        for a in arts:
            x, m, idx = explain[a]
            R = attribute(model, x, target=target_class, method=method, progress=progress, **method_kwargs).double()
            A = R.abs()
            A = A / A.flatten(1).mean(1).clamp_min(1e-12)[:, None, None]
            sal = mean_saliency(A, m)
            rma = relevance_mass_accuracy(R, m, on_invalid="nan")
            area = m.flatten(1).float().mean(1)
            row[f"saliency_{a}"] = float(sal.mean())
            row[f"rma_{a}"] = float(rma.nanmean())
            row[f"area_{a}"] = float(area.mean())
            if return_per_image:
                per_exp.append(pd.DataFrame({"model": name, "artifact": a, "index": idx.numpy(),
                                             "saliency": np.asarray(sal, dtype=float),
                                             "rma": np.asarray(rma, dtype=float), "area": area.numpy().astype(float)}))
        rows[name] = row
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "model"
    out.attrs.update(artifacts=list(arts), target_class=int(target_class), method=method, n_explain=int(n_explain),
                     seed=int(seed), test_sets=list(sets))
    if return_per_image:
        per_image = {"accuracy": pd.concat(per_acc, ignore_index=True),
                     "insertion": pd.concat(per_ins, ignore_index=True),
                     "explanation": pd.concat(per_exp, ignore_index=True)}
        return out, per_image
    return out
