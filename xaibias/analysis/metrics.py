"""Localisation and faithfulness metrics with a known ground truth (Schaaf et al. 2021).

Schaaf, Wiese, Gerber, Abdel-Aal, Bender: *Towards measuring bias in image classification* (2021)
train models on data with a known bias (an object added to one class, or one class always on one
background) and ask whether attribution maps reveal it. They use three numbers:

- :func:`relevance_mass_accuracy` (RMA, Arras et al. 2022): the share of the relevance mass that
  falls inside a ground-truth mask;
- :func:`relevance_rank_accuracy` (RRA, Arras et al. 2022): the share of the K most relevant pixels
  that lie inside the mask, with K the mask's size; the paper enlarges the ground truth by 50 % of
  its area first (:func:`enlarge_masks`);
- :func:`aopc` (area over the perturbation curve, Samek et al. 2017): replace image patches in
  order of their relevance by noise and average the drop of the target score;

and compare a biased with an unbiased model by Welch's t-test (:func:`welch_table`).

All functions are vectorised over the batch and return per-image values (torch tensors) or tidy
DataFrames. Relevance is one map per image, (N,H,W) (a (N,C,H,W) map is summed over channels
first), masks are bool (N,H,W). The implementations are checked against Quantus 0.6
(``tests/test_metrics.py``); the docstrings list where our conventions differ from Quantus's
defaults and which Quantus settings reproduce our numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .._checks import as_images, as_labels, as_masks, as_relevance, check_same_n, describe

__all__ = [
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
    "enlarge_masks",
    "aopc",
    "welch_table",
]

_RELEVANCE_MODES = ("positive", "absolute", "signed")
_INVALID = ("raise", "nan")


def _prepare(relevance: Any, masks: Any, mode: str, on_invalid: str, fn: str) -> tuple[torch.Tensor, torch.Tensor]:
    if mode not in _RELEVANCE_MODES:
        raise ValueError(f"{fn}: relevance_mode must be one of {_RELEVANCE_MODES}; got {mode!r}")
    if on_invalid not in _INVALID:
        raise ValueError(f"{fn}: on_invalid must be one of {_INVALID}; got {on_invalid!r}")
    R = as_relevance(relevance, name="relevance")
    M = as_masks(masks, like=R, name="masks")
    check_same_n(relevance=R, masks=M)
    R = R.double()
    if mode == "positive":
        R = R.clamp(min=0)
    elif mode == "absolute":
        R = R.abs()
    return R.reshape(R.shape[0], -1), M.reshape(M.shape[0], -1)


def _invalid(values: torch.Tensor, bad: torch.Tensor, on_invalid: str, message: str) -> torch.Tensor:
    if bool(bad.any()):
        idx = bad.nonzero().flatten()
        if on_invalid == "raise":
            more = " ..." if len(idx) > 10 else ""
            raise ValueError(
                f"{message} at index {idx[:10].tolist()}{more} ({len(idx)} of {len(bad)}); "
                "pass on_invalid='nan' to get NaN for these images instead"
            )
        values = values.clone()
        values[bad] = float("nan")
    return values


def relevance_mass_accuracy(
    relevance: torch.Tensor | np.ndarray,
    masks: torch.Tensor | np.ndarray,
    relevance_mode: Literal["positive", "absolute", "signed"] = "positive",
    on_invalid: Literal["raise", "nan"] = "raise",
) -> torch.Tensor:
    """Relevance Mass Accuracy: the share of relevance that falls inside the ground-truth mask.

    ``RMA = sum(R[mask]) / sum(R)`` per image (Arras, Osman, Samek 2022, "CLEVR-XAI").

    Parameters
    ----------
    relevance : tensor or array (N,H,W) or (N,C,H,W)
        One relevance map per image; a channel axis is summed first.
    masks : bool tensor or array (N,H,W)
        Ground truth (for example ``ds.masks["ball"]``).
    relevance_mode : {"positive", "absolute", "signed"}
        How negative relevance enters. ``"positive"`` (default, as in Arras et al., who count only
        positive evidence) sets negative values to zero, so RMA lies in [0, 1]. ``"absolute"``
        uses ``|R|`` (Quantus ``abs=True``). ``"signed"`` uses the raw values (Quantus's default,
        ``abs=False``); then RMA can leave [0, 1] when the map has negative mass.
    on_invalid : {"raise", "nan"}
        What to do with an empty mask (no ground truth) or a map without mass (all zero, or no
        positive value in ``"positive"`` mode): raise a ``ValueError`` naming the images
        (default) or return NaN for them. Quantus returns NaN with a warning for empty masks and
        NaN (0/0) for all-zero maps.

    Returns
    -------
    torch.Tensor
        (N,) float64 scores.

    Notes
    -----
    Quantus's ``RelevanceMassAccuracy`` normalises each map by its maximum absolute value
    (``normalise=True``); a positive factor cancels in the ratio, so the numbers are the same.
    ``RelevanceMassAccuracy(abs=False)`` on ``clip(R, 0)`` equals our default; on ``R`` it equals
    ``relevance_mode="signed"``, and ``abs=True`` equals ``"absolute"``.
    """
    R, M = _prepare(relevance, masks, relevance_mode, on_invalid, "relevance_mass_accuracy")
    total = R.sum(dim=1)
    inside = (R * M).sum(dim=1)
    empty = M.sum(dim=1) == 0
    zero = total == 0
    safe = torch.where(zero, torch.ones_like(total), total)
    rma = inside / safe
    rma = _invalid(rma, empty, on_invalid, "relevance_mass_accuracy: masks are empty (no ground-truth pixel)")
    what = "has no positive relevance" if relevance_mode == "positive" else "sums to zero"
    return _invalid(rma, zero & ~empty, on_invalid, f"relevance_mass_accuracy: relevance map {what}")


def relevance_rank_accuracy(
    relevance: torch.Tensor | np.ndarray,
    masks: torch.Tensor | np.ndarray,
    relevance_mode: Literal["positive", "absolute", "signed"] = "signed",
    on_invalid: Literal["raise", "nan"] = "raise",
) -> torch.Tensor:
    """Relevance Rank Accuracy: the share of the K most relevant pixels inside a mask of K pixels.

    ``RRA = |top_K(R) & mask| / K`` with ``K = mask.sum()`` per image (Arras et al. 2022). Schaaf
    et al. apply it to ground truth enlarged by 50 % of its area (:func:`enlarge_masks`).

    Parameters
    ----------
    relevance : tensor or array (N,H,W) or (N,C,H,W)
        One relevance map per image; a channel axis is summed first.
    masks : bool tensor or array (N,H,W)
        Ground truth.
    relevance_mode : {"signed", "positive", "absolute"}
        Values that are ranked. ``"signed"`` (default, Quantus ``abs=False``) ranks the raw
        values, ``"absolute"`` ranks ``|R|`` (Quantus ``abs=True``), ``"positive"`` ranks
        ``max(R, 0)`` (all negative pixels then tie at zero).
    on_invalid : {"raise", "nan"}
        What to do with an empty mask or an all-zero map: raise (default) or return NaN.

    Returns
    -------
    torch.Tensor
        (N,) float64 scores in [0, 1].

    Notes
    -----
    Ties at the K-th value are resolved by their expected value: if ``m`` pixels share the
    K-th value, ``s`` of them lie in the mask and ``k`` top-K places are left for them, they add
    ``k * s / m`` hits. The score therefore does not depend on pixel order; Quantus sorts with
    ``np.argsort`` and counts whichever tied pixels come first. Without ties (continuous maps) the
    two agree exactly. Quantus's max-normalisation does not change the ranking.
    """
    R, M = _prepare(relevance, masks, relevance_mode, on_invalid, "relevance_rank_accuracy")
    n, d = R.shape
    k = M.sum(dim=1)
    empty = k == 0
    zero = R.abs().amax(dim=1) == 0
    kk = k.clamp(min=1)
    kmax = int(kk.max())
    # the K-th largest value per image; a partial top-k is several times cheaper than a full sort
    # when the masks cover less than half of the image (the usual case)
    if 2 * kmax <= d:
        top = R.topk(kmax, dim=1, sorted=True).values
    else:
        top = R.sort(dim=1, descending=True).values
    v = top.gather(1, (kk - 1).unsqueeze(1))
    above = R > v
    tied = R == v
    hits_above = (above & M).sum(dim=1).double()
    n_above = above.sum(dim=1).double()
    n_tied = tied.sum(dim=1).double()
    tied_in = (tied & M).sum(dim=1).double()
    hits = hits_above + (kk.double() - n_above) * tied_in / n_tied
    rra = hits / kk.double()
    rra = _invalid(rra, empty, on_invalid, "relevance_rank_accuracy: masks are empty (no ground-truth pixel)")
    return _invalid(rra, zero & ~empty, on_invalid, "relevance_rank_accuracy: relevance map is all zero")


def _dilate(m: torch.Tensor, connectivity: int) -> torch.Tensor:
    x = m.unsqueeze(1).float()
    if connectivity == 8:
        return F.max_pool2d(x, 3, stride=1, padding=1).squeeze(1) > 0
    out = m.clone()
    out[:, 1:, :] |= m[:, :-1, :]
    out[:, :-1, :] |= m[:, 1:, :]
    out[:, :, 1:] |= m[:, :, :-1]
    out[:, :, :-1] |= m[:, :, 1:]
    return out


def enlarge_masks(
    masks: torch.Tensor | np.ndarray,
    area_factor: float = 1.5,
    connectivity: Literal[4, 8] = 4,
) -> torch.Tensor:
    """Grow each mask by one-pixel dilation rings until its area reaches ``area_factor`` times the original.

    Schaaf et al. enlarge the ground truth by 50 % of its area before RRA, so that a heatmap that
    marks the object plus its immediate surroundings is not punished.

    Parameters
    ----------
    masks : bool tensor or array (N,H,W)
        Masks to enlarge; each is grown independently.
    area_factor : float
        Target area as a multiple of the original, >= 1 (1 returns the masks unchanged).
    connectivity : {4, 8}
        Neighbourhood of one dilation step: 4 (a diamond ring, the finer steps; default) or 8
        (a square ring).

    Returns
    -------
    torch.Tensor
        Bool (N,H,W). Each mask is the smallest number of dilation rings around the original whose
        area is at least ``ceil(area_factor * area)``, so it overshoots the target by less than one
        ring. A mask whose target exceeds the image is returned as the whole image; an empty mask
        stays empty (there is nothing to grow).
    """
    if isinstance(area_factor, bool) or not isinstance(area_factor, (int, float)) or not area_factor >= 1:
        raise ValueError(f"area_factor must be a number >= 1; got {area_factor!r}")
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8; got {connectivity!r}")
    M = as_masks(masks, name="masks").clone()
    n, h, w = M.shape
    area = M.reshape(n, -1).sum(dim=1)
    target = torch.ceil(area.double() * float(area_factor) - 1e-9).long().clamp(max=h * w)
    active = (area > 0) & (area < target)
    while bool(active.any()):
        grown = _dilate(M[active], connectivity)
        M[active] = grown
        area = M.reshape(n, -1).sum(dim=1)
        active = active & (area < target)
    return M


def _patch_index(h: int, w: int, patch: int) -> tuple[torch.Tensor, int]:
    """Patch id of every pixel on a grid of ``patch`` x ``patch`` cells centred on the image."""

    def axis(size: int) -> tuple[torch.Tensor, int]:
        rem = size % patch
        pad = 0 if rem == 0 else (patch - rem) // 2
        idx = (torch.arange(size) + pad) // patch
        return idx, int(idx[-1]) + 1

    rows, nr = axis(h)
    cols, nc = axis(w)
    return rows[:, None] * nc + cols[None, :], nr * nc


def aopc(
    model: torch.nn.Module,
    images: torch.Tensor | np.ndarray,
    relevance: torch.Tensor | np.ndarray,
    target: int | Sequence[int] | torch.Tensor | np.ndarray | None = None,
    steps: int = 100,
    patch: int = 9,
    perturbation: Literal["uniform", "black"] | float = "uniform",
    order: Literal["morf", "random", "lerf"] = "morf",
    seed: int = 0,
    batch_size: int = 256,
    output: Literal["softmax", "logit"] = "softmax",
    return_curves: bool = False,
    progress: bool = True,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Area over the perturbation curve by region perturbation (Samek et al. 2017).

    The image is cut into non-overlapping ``patch`` x ``patch`` regions, ranked by their summed
    relevance (``order="morf"``: most relevant first). Step k replaces the first k regions by
    noise, cumulatively, and records the drop ``f(x_0) - f(x_k)`` of the target score. AOPC is the
    mean drop over the steps: a heatmap that finds the evidence the model uses makes the score
    fall fast and AOPC large. ``order="random"`` gives the baseline a heatmap has to beat.

    Parameters
    ----------
    model : torch.nn.Module
        Classifier returning logits (B, C); evaluated in eval mode without gradients on the device
        of its parameters.
    images : tensor or array (N,3,H,W) in [0,1]
        The explained images.
    relevance : tensor or array (N,H,W) or (N,C,H,W)
        Their relevance maps (signed; a channel axis is summed).
    target : None, int or sequence of N ints
        Class whose score is tracked; ``None`` takes the model's prediction on the clean image.
    steps : int
        Number of perturbation steps (the paper: 100). When the image has fewer regions than steps
        (a 64 x 64 image has 8 x 8 = 64 regions of 9 x 9), the curve stops when every region is
        replaced and ``steps`` is clipped to the number of regions, as Quantus does; the curve's
        length (``return_curves=True``) shows the number used.
    patch : int
        Region side in pixels (the paper: 9). When the side does not divide the image, the grid is
        centred and the border regions are cut (Quantus pads half the remainder on each side).
    perturbation : "uniform", "black" or float
        Replacement values: independent uniform noise in [0,1] per pixel and channel (the paper;
        one noise image per input, drawn from ``seed``, so a region keeps its noise once replaced
        and every ``order`` sees the same noise), ``"black"`` (0) or a constant. Quantus's
        ``"black"`` is the minimum of the batch instead of 0; pass ``perturb_baseline=0.0`` there.
    order : {"morf", "random", "lerf"}
        Most relevant first, a random permutation per image (seeded), or least relevant first.
        Ties keep raster order.
    seed : int
        Seed for the noise and the random order.
    batch_size : int
        Perturbed images per forward pass. All (image, step) pairs are built by one comparison of a
        per-pixel rank map with the step number and sent through the model in chunks.
    output : {"softmax", "logit"}
        Score f: the class probability (default; bounded, so comparable across models) or the
        logit (Quantus's default, ``softmax=False``).
    return_curves : bool
        Also return the (N, steps) perturbation curves ``f(x_0) - f(x_k)``, k = 1..steps.
    progress : bool
        Show a tqdm progress bar over the forward passes.

    Returns
    -------
    torch.Tensor or (torch.Tensor, torch.Tensor)
        (N,) AOPC per image, and the curves when asked.

    Notes
    -----
    Samek et al. write AOPC as ``1/(L+1) * sum_{k=0..L}``; the k=0 term is zero, so their value is
    ours times ``L/(L+1)``. Quantus's ``RegionPerturbation`` returns the curves; their mean equals
    ours with ``perturbation=0.0`` and matched patch size, steps, order and softmax setting (tested).
    """
    from tqdm.auto import tqdm

    x = as_images(images, name="images")
    R = as_relevance(relevance, name="relevance")
    n = check_same_n(images=x, relevance=R)
    if tuple(R.shape[-2:]) != tuple(x.shape[-2:]):
        raise ValueError(
            f"relevance must have the spatial size of images {tuple(x.shape[-2:])}; got {describe(R)}"
        )
    for name, val in (("steps", steps), ("patch", patch), ("batch_size", batch_size)):
        if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < 1:
            raise ValueError(f"{name} must be a positive int; got {val!r}")
    if order not in ("morf", "random", "lerf"):
        raise ValueError(f"order must be 'morf', 'random' or 'lerf'; got {order!r}")
    if output not in ("softmax", "logit"):
        raise ValueError(f"output must be 'softmax' or 'logit'; got {output!r}")
    if isinstance(perturbation, str):
        if perturbation not in ("uniform", "black"):
            raise ValueError(f"perturbation must be 'uniform', 'black' or a float; got {perturbation!r}")
    elif isinstance(perturbation, bool) or not isinstance(perturbation, (int, float)):
        raise ValueError(f"perturbation must be 'uniform', 'black' or a float; got {perturbation!r}")
    h, w = x.shape[-2:]
    if patch > max(h, w):
        raise ValueError(f"patch ({patch}) must not exceed the image size {h}x{w}")

    try:
        dev = next(model.parameters()).device
    except StopIteration:
        dev = torch.device("cpu")
    was_training = model.training
    model.eval()

    def score(batch: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        out = model(batch.to(dev))
        if out.ndim != 2:
            raise ValueError(f"model must return (B, classes) logits; got shape {tuple(out.shape)}")
        if output == "softmax":
            out = out.softmax(dim=1)
        return out.gather(1, tgt.to(dev).unsqueeze(1)).squeeze(1).double().cpu()

    try:
        with torch.no_grad():
            # clean scores and targets
            f0_parts, pred_parts = [], []
            for s in range(0, n, batch_size):
                out = model(x[s : s + batch_size].to(dev))
                if out.ndim != 2:
                    raise ValueError(f"model must return (B, classes) logits; got shape {tuple(out.shape)}")
                pred_parts.append(out.argmax(dim=1).cpu())
                f0_parts.append(out.cpu())
            logits0 = torch.cat(f0_parts)
            n_classes = logits0.shape[1]
            if target is None:
                tgt = torch.cat(pred_parts)
            elif isinstance(target, (int, np.integer)) and not isinstance(target, bool):
                tgt = torch.full((n,), int(target), dtype=torch.long)
            else:
                tgt = as_labels(target, n=n, name="target")
            if int(tgt.max()) >= n_classes or int(tgt.min()) < 0:
                raise ValueError(f"target must be class indices in [0, {n_classes}); got range "
                                 f"[{int(tgt.min())}, {int(tgt.max())}]")
            f0 = logits0.softmax(dim=1) if output == "softmax" else logits0
            f0 = f0.gather(1, tgt.unsqueeze(1)).squeeze(1).double()

            # rank every region, then every pixel by the rank of its region
            pid, n_regions = _patch_index(h, w, patch)
            onehot = F.one_hot(pid.reshape(-1), n_regions).double()
            region_rel = R.reshape(n, -1).double() @ onehot  # (N, regions)
            gen = torch.Generator().manual_seed(int(seed))
            if order == "morf":
                ordering = torch.argsort(-region_rel, dim=1, stable=True)
            elif order == "lerf":
                ordering = torch.argsort(region_rel, dim=1, stable=True)
            else:
                ordering = torch.argsort(torch.rand(n, n_regions, generator=gen), dim=1)
            rank = torch.empty_like(ordering)
            rank.scatter_(1, ordering, torch.arange(n_regions).expand(n, -1).contiguous())
            pixel_rank = rank[:, pid.reshape(-1)].reshape(n, 1, h, w)

            noise_gen = torch.Generator().manual_seed(int(seed) + 1)
            if perturbation == "uniform":
                noise = torch.rand(x.shape, generator=noise_gen, dtype=x.dtype)
            else:
                value = 0.0 if perturbation == "black" else float(perturbation)
                noise = torch.full_like(x, value)

            n_steps = min(int(steps), n_regions)
            pairs = n * n_steps
            img_idx = torch.arange(n).repeat_interleave(n_steps)
            step_idx = torch.arange(1, n_steps + 1).repeat(n)
            drops = torch.empty(pairs, dtype=torch.float64)
            chunks = range(0, pairs, batch_size)
            for s in tqdm(chunks, desc=f"AOPC ({order})", leave=False,
                          disable=not progress or len(chunks) < 2):
                ii, kk = img_idx[s : s + batch_size], step_idx[s : s + batch_size]
                replaced = pixel_rank[ii] < kk.view(-1, 1, 1, 1)
                xb = torch.where(replaced, noise[ii], x[ii])
                drops[s : s + batch_size] = f0[ii] - score(xb, tgt[ii])
    finally:
        model.train(was_training)
    curves = drops.reshape(n, n_steps)
    result = curves.mean(dim=1)
    return (result, curves) if return_curves else result


def welch_table(
    scores: pd.DataFrame,
    by: Sequence[str] = ("object", "metric", "method"),
    group: str = "model",
    groups: tuple[str, str] = ("biased", "unbiased"),
    value: str = "value",
    alternative: Literal["two-sided", "greater", "less"] = "two-sided",
) -> pd.DataFrame:
    """Welch's t-test (unequal variances) between two models for every cell of ``by``.

    Schaaf et al. (Tables 2 and 4) test, per object (or class), metric and attribution method,
    whether the per-image scores of the biased model differ from those of the unbiased model.

    Parameters
    ----------
    scores : DataFrame
        Tidy, one row per image and condition: the columns in ``by``, ``group`` and ``value``.
    by : sequence of str
        Columns that define one test (for example object, metric, method, architecture).
    group : str
        Column naming the model; its two compared values are ``groups``.
    groups : (str, str)
        ``(a, b)``: t > 0 means a larger mean for ``a``.
    value : str
        Column with the per-image score. NaN values (see ``on_invalid="nan"``) are dropped and
        left out of the counts ``n_<a>`` / ``n_<b>``.
    alternative : {"two-sided", "greater", "less"}
        Passed to :func:`scipy.stats.ttest_ind`; "greater" tests mean(a) > mean(b).

    Returns
    -------
    DataFrame
        One row per cell of ``by``: the ``by`` columns, ``mean_<a>``, ``mean_<b>``, ``std_<a>``,
        ``std_<b>``, ``n_<a>``, ``n_<b>`` (``<a>``, ``<b>`` the two ``groups``, for example
        ``mean_biased``), ``t`` and ``p``. A cell with fewer than two values in a group, or zero
        variance in both, gets NaN t and p.
    """
    from scipy import stats

    if not isinstance(scores, pd.DataFrame):
        raise TypeError(f"scores must be a pandas DataFrame; got {type(scores).__name__}")
    by = list(by)
    need = [*by, group, value]
    missing = [c for c in need if c not in scores.columns]
    if missing:
        raise ValueError(f"scores is missing column(s) {missing}; has {list(scores.columns)}")
    if len(groups) != 2 or groups[0] == groups[1]:
        raise ValueError(f"groups must be two different values of column {group!r}; got {groups!r}")
    present = set(scores[group].unique())
    absent = [g for g in groups if g not in present]
    if absent:
        raise ValueError(f"column {group!r} has no rows for {absent}; values present: {sorted(map(str, present))}")
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError(f"alternative must be 'two-sided', 'greater' or 'less'; got {alternative!r}")
    a_name, b_name = groups
    rows = []
    keys_iter = scores.groupby(by, sort=True, dropna=False) if by else [((), scores)]
    for key, cell in keys_iter:
        key = key if isinstance(key, tuple) else (key,)
        a = pd.to_numeric(cell.loc[cell[group] == a_name, value], errors="raise").dropna().to_numpy(float)
        b = pd.to_numeric(cell.loc[cell[group] == b_name, value], errors="raise").dropna().to_numpy(float)
        t = p = math.nan
        if len(a) >= 2 and len(b) >= 2 and (a.std() > 0 or b.std() > 0):
            res = stats.ttest_ind(a, b, equal_var=False, alternative=alternative)
            t, p = float(res.statistic), float(res.pvalue)
        rows.append({
            **dict(zip(by, key)),
            f"mean_{a_name}": a.mean() if len(a) else math.nan,
            f"mean_{b_name}": b.mean() if len(b) else math.nan,
            f"std_{a_name}": a.std(ddof=1) if len(a) > 1 else math.nan,
            f"std_{b_name}": b.std(ddof=1) if len(b) > 1 else math.nan,
            f"n_{a_name}": len(a),
            f"n_{b_name}": len(b),
            "t": t,
            "p": p,
        })
    out = pd.DataFrame(rows)
    out.attrs["groups"] = (a_name, b_name)
    return out
