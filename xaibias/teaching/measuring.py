"""Checks for notebooks 04 (CRP and robustness) and 05 (measuring bias)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ._common import as_float, close, map_and_mask, pending, right, scalar, wrong

__all__ = ["check_balanced_rates", "check_relevance_mass", "check_insertion_effect", "check_aopc", "aopc_one", "check_welch_t"]


# --------------------------------------------------------------------------------------------------
# 04 · CRP and robustness

def check_balanced_rates(q_malignant: Any, q_benign: Any, rates: Sequence[float], target: float) -> None:
    """Class-dependent pasting probabilities that bring both classes to the artifact rate ``target``.

    ``rates``: (rate among malignant, rate among benign) before augmentation. Pasting only changes
    images without the artifact, so ``q_c = (target - r_c) / (1 - r_c)``.
    """
    if pending("the two pasting probabilities", q_malignant, q_benign):
        return None
    r_m, r_b = (float(r) for r in rates)
    t = float(target)
    if not (max(r_m, r_b) <= t < 1):
        raise ValueError(f"target must lie in [max(rates), 1); got {t} with rates {rates}")
    want_m, want_b = (t - r_m) / (1 - r_m), (t - r_b) / (1 - r_b)
    a_m, a_b = scalar(q_malignant, "q_malignant"), scalar(q_benign, "q_benign")
    if close(a_m, want_m, 1e-3) and close(a_b, want_b, 1e-3):
        return right(f"q = {want_m:.3f} (malignant) and {want_b:.3f} (benign): after pasting, "
                      f"{r_m:.2f} + {1 - r_m:.2f} x {want_m:.3f} = {t:.2f} and {r_b:.2f} + {1 - r_b:.2f} x {want_b:.3f} = "
                      f"{t:.2f}, so the circle no longer tells the classes apart.")
    if close(a_m, want_b, 1e-3) and close(a_b, want_m, 1e-3):
        wrong("the two probabilities are swapped: the class that already has fewer circles (benign) needs more pasted.")
    if close(a_m, t - r_m, 1e-3) and close(a_b, t - r_b, 1e-3):
        wrong("t - r counts every image, but pasting changes only images without a circle (a share 1 - r of the class): "
               "divide by 1 - r.")
    after_m, after_b = r_m + (1 - r_m) * a_m, r_b + (1 - r_b) * a_b
    wrong(f"with your probabilities the classes end at circle rates {after_m:.3f} (malignant) and {after_b:.3f} (benign), "
           f"not both {t:.2f}. A class with rate r reaches r + (1 - r) q.")
    return None


def check_relevance_mass(answer: Any, relevance: Any, mask: Any) -> None:
    """Relevance mass accuracy of one map: positive relevance inside ``mask`` over all positive relevance."""
    if pending("the relevance mass on the mask", answer):
        return None
    R, m = map_and_mask(relevance, mask)
    pos = R.clamp(min=0)
    if float(pos.sum()) <= 0:
        raise ValueError("the map has no positive relevance: its mass is undefined")
    ref = float(pos[m].sum() / pos.sum())
    a = scalar(answer, "answer")
    area = float(m.double().mean())
    if close(a, ref, 1e-6):
        return right(f"{ref:.3f} of the positive relevance lies on the mask, which covers {area:.1%} of the pixels: "
                      f"{ref / max(area, 1e-12):.1f} times what a uniform map would put there.")
    if float(R.sum()) != 0 and close(a, float(R[m].sum() / R.sum()), 1e-6):
        wrong("you used the signed relevance; RMA counts positive relevance only: clamp the map at 0 first.")
    if close(a, float(R.abs()[m].sum() / R.abs().sum()), 1e-6):
        wrong("you used |R|; RMA (Arras et al.) counts positive relevance only: R.clamp(min=0).")
    if close(a, area, 1e-6):
        wrong("that is the mask's share of the pixels (a uniform map's score), not the map's mass on it.")
    wrong(f"your mass is {a:.4f}. RMA = sum of R+ inside the mask / sum of R+ over the image.")
    return None


def check_insertion_effect(answer: Any, model: Any, images: Any, labels: Any, seed: int,
                           artifact_params: dict | None = None, compare: dict | None = None) -> None:
    """Mean change (pp) of P(malignant) of *benign* images when a frame is pasted in.

    Recomputed with :func:`xaibias.analysis.bias_insertion` (artifact ``"frame"``, ``target_class=1``,
    the given ``seed`` and ``artifact_params``), so the student's number is checked against the
    library's counterfactuals. ``compare``: name -> effect of other models, printed beside it.
    """
    from ..analysis import bias_insertion

    if pending("the frame-insertion effect of your model", answer, model):
        return None
    params = {"frame": dict(artifact_params or {})}
    _, per = bias_insertion(model, images, labels, artifacts=("frame",), target_class=1, seed=seed,
                            artifact_params=params, progress=False, return_per_image=True)
    per = per[~per["skipped"]] if "skipped" in per else per
    benign = per[per["true_class"].isin([0, "benign"])]["change_pp"].to_numpy(float)
    ref = float(benign.mean())
    every = float(per["change_pp"].mean())
    a = scalar(answer, "answer")
    if close(a, ref, 1e-3):
        extra = ""
        if compare:
            extra = " Beside it: " + ", ".join(f"{k} {float(v):+.1f} pp" for k, v in compare.items()) + "."
        return right(f"pasting the frame moves P(malignant) of the benign images by {ref:+.1f} pp on average "
                      f"({len(benign)} images).{extra}")
    if close(a, -ref, 1e-3):
        wrong("the sign is flipped: the change is after minus before.")
    if close(a, ref / 100, 1e-5):
        wrong("that is a change of probability; give it in percentage points (x 100).")
    if close(a, every, 1e-3):
        wrong("you averaged over all images; the effect asked for is on the benign ones (true class 0).")
    wrong(f"your effect is {a:+.2f} pp. Use xb.analysis.bias_insertion(..., return_per_image=True) with the same "
           "seed and painter options, keep the benign rows and average change_pp.")
    return None


# --------------------------------------------------------------------------------------------------
# 05 · measuring bias

def _blur(image: torch.Tensor) -> torch.Tensor:
    from torchvision.transforms.functional import gaussian_blur

    return gaussian_blur(image, kernel_size=9, sigma=3.0)


def aopc_one(model: torch.nn.Module, image: torch.Tensor, relevance: torch.Tensor, target: int, patch: int,
             replacement: torch.Tensor | str = "black", output: str = "softmax", include_zero: bool = False,
             order: str = "morf") -> float:
    """AOPC of one image with ``patch`` x ``patch`` regions that tile it exactly, written out plainly.

    Regions ranked by summed relevance (``order="morf"``: most relevant first, ties in raster order);
    step k replaces the first k regions by ``replacement`` (``"black"``, ``"blur"``: a Gaussian blur
    with kernel 9 and sigma 3 of the image, or a (3,H,W) tensor); AOPC is the mean over k = 1..L of
    ``f(x) - f(x_k)``. ``include_zero`` averages over k = 0..L (Samek et al.'s 1/(L+1)).
    """
    x = torch.as_tensor(image, dtype=torch.float32)
    H, W = x.shape[-2:]
    if H % patch or W % patch:
        raise ValueError(f"patch {patch} must divide the image size {H}x{W}")
    if isinstance(replacement, str):
        if replacement == "black":
            fill = torch.zeros_like(x)
        elif replacement == "blur":
            fill = _blur(x)
        else:
            raise ValueError(f"replacement must be 'black', 'blur' or an image; got {replacement!r}")
    else:
        fill = torch.as_tensor(replacement, dtype=x.dtype)
    R = torch.as_tensor(relevance, dtype=torch.float64)
    gh, gw = H // patch, W // patch
    region_sum = R.reshape(gh, patch, gw, patch).sum((1, 3)).reshape(-1)
    ranked = torch.argsort(-region_sum if order == "morf" else region_sum, stable=True)
    dev = next(model.parameters()).device
    batch, cur = [], x.clone()
    for r in ranked.tolist():
        i, j = divmod(r, gw)
        cur[:, i * patch:(i + 1) * patch, j * patch:(j + 1) * patch] = fill[:, i * patch:(i + 1) * patch, j * patch:(j + 1) * patch]
        batch.append(cur.clone())
    model.eval()
    with torch.no_grad():
        out = model(torch.stack([x, *batch]).to(dev)).double().cpu()
    f = out.softmax(1)[:, target] if output == "softmax" else out[:, target]
    drops = f[0] - f[1:]
    return float(drops.sum() / (len(drops) + 1)) if include_zero else float(drops.mean())


def check_aopc(answer: Any, model: torch.nn.Module, image: torch.Tensor, relevance: torch.Tensor, target: int,
               patch: int, replacement: str = "black") -> None:
    """AOPC of one image by hand (softmax score, most relevant first, k = 1..L).

    ``replacement="black"`` is checked against :func:`xaibias.analysis.aopc` as well;
    ``"blur"`` (kernel 9, sigma 3) against :func:`aopc_one`, with the black-fill value beside it.
    """
    from ..analysis import aopc

    if pending(f"the AOPC with {replacement} regions", answer):
        return None
    target = int(target)
    ref = aopc_one(model, image, relevance, target, patch, replacement)
    if replacement == "black":
        n_regions = (image.shape[-2] // patch) * (image.shape[-1] // patch)
        lib = float(aopc(model, image[None], relevance[None], target=[target], steps=n_regions, patch=patch,
                         perturbation="black", progress=False)[0])
        if abs(lib - ref) > 1e-5:  # pragma: no cover - guards the hand version
            raise RuntimeError(f"aopc_one ({ref}) and xb.analysis.aopc ({lib}) disagree")
    a = scalar(answer, "answer")
    if close(a, ref, 1e-4):
        msg = f"AOPC with {replacement} regions is {ref:.4f}"
        if replacement != "black":
            black = aopc_one(model, image, relevance, target, patch, "black")
            msg += (f", with black regions {black:.4f}: "
                    + ("blurring removes less evidence than a black patch (the blurred region keeps its colours)."
                       if ref < black else "blurring removes at least as much as a black patch here."))
        else:
            msg += ", equal to xb.analysis.aopc(..., perturbation='black') on this image."
        return right(msg)
    if close(a, aopc_one(model, image, relevance, target, patch, replacement, output="logit"), 1e-4):
        wrong("you tracked the logit; the score here is the softmax probability of the target class.")
    if close(a, aopc_one(model, image, relevance, target, patch, replacement, include_zero=True), 1e-4):
        wrong("you averaged over L + 1 steps (k = 0 included, Samek et al.'s form); this notebook averages over "
               "k = 1..L, as xb.analysis.aopc does.")
    if close(a, aopc_one(model, image, relevance, target, patch, replacement, order="lerf"), 1e-4):
        wrong("you removed the least relevant regions first; AOPC (MoRF) removes the most relevant first.")
    if close(a, -ref, 1e-4):
        wrong("the sign is flipped: the drop is f(original) - f(perturbed).")
    wrong(f"your AOPC is {a:.4f}. Sum the relevance per {patch}x{patch} region, sort descending, replace regions "
           "cumulatively, and average the drops of the softmax score over the steps.")
    return None


def check_welch_t(answer: Any, a: Any, b: Any) -> None:
    """Welch's t statistic of sample ``a`` against ``b``: (mean_a - mean_b) / sqrt(s_a^2/n_a + s_b^2/n_b), ddof 1."""
    if pending("Welch's t statistic", answer):
        return None
    x, y = as_float(a, "a"), as_float(b, "b")
    x, y = x[~np.isnan(x)], y[~np.isnan(y)]
    if len(x) < 2 or len(y) < 2:
        raise ValueError("each sample needs at least two values")
    from scipy import stats

    ref = float(stats.ttest_ind(x, y, equal_var=False).statistic)
    t = scalar(answer, "answer")
    if close(t, ref, 1e-4 * max(1, abs(ref))):
        return right(f"t = {ref:.3f} (scipy agrees). Positive: the first sample has the larger mean.")
    if close(t, -ref, 1e-4 * max(1, abs(ref))):
        wrong("the sign is flipped: the notebook's convention is biased minus unbiased.")
    pooled = float(stats.ttest_ind(x, y, equal_var=True).statistic)
    if close(t, pooled, 1e-4 * max(1, abs(ref))) and not close(pooled, ref, 1e-6):
        wrong("that is Student's t with a pooled variance; Welch's t divides by sqrt(s_a^2/n_a + s_b^2/n_b).")
    t0 = (x.mean() - y.mean()) / math.sqrt(x.var() / len(x) + y.var() / len(y))
    if close(t, t0, 1e-4 * max(1, abs(ref))):
        wrong("you used the population variance (ddof=0); the sample variance divides by n - 1 (np.var(..., ddof=1)).")
    wrong(f"your t is {t:.3f}. t = (mean_a - mean_b) / sqrt(var_a / n_a + var_b / n_b), variances with ddof=1.")
    return None
