"""Checks for notebooks 02 (SpRAy vs GEBI) and 03 (global saliency on ink)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import torch

from ._common import as_bool, as_float, close, map_and_mask, pending, right, scalar, wrong

__all__ = ["check_one_cluster_f1", "check_eigengap", "check_image_share", "check_peak_share", "check_interclass_variance"]


# --------------------------------------------------------------------------------------------------
# 02 · SpRAy vs GEBI

def check_one_cluster_f1(answer: Any, flags: Any) -> None:
    """F1 of one cluster that holds every image, against an artifact with per-image ``flags``."""
    if pending("the F1 of one all-in-one cluster", answer):
        return None
    f = as_bool(flags, "flags")
    if not f.any():
        raise ValueError("flags mark no image: the F1 of any cluster is undefined")
    p = float(f.mean())
    ref = 2 * p / (1 + p)
    a = scalar(answer, "answer")
    if close(a, ref, 1e-6):
        return right(f"p = {p:.3f} of the images carry the artifact, so the single cluster has precision p and recall 1: "
                      f"F1 = 2p / (1 + p) = {ref:.3f}. The more common the artifact among the analysed images, the "
                      "higher this baseline; a clustering only finds the artifact where its F1 clears it.")
    if close(a, p, 1e-6):
        wrong(f"{a:.3f} is the precision (the artifact's share p). A cluster holding every image also has recall 1; "
               "F1 is the harmonic mean of the two.")
    if close(a, 1.0, 1e-9):
        wrong("1 is the recall of a cluster that holds everything; F1 also needs the precision p.")
    if close(a, (p + 1) / 2, 1e-6):
        wrong("that is the arithmetic mean of precision and recall; F1 is the harmonic mean, 2 P R / (P + R).")
    wrong(f"your F1 is {a:.3f}. Precision = share of the cluster with the artifact, recall = share of the artifact's "
           "images in the cluster; F1 = 2 P R / (P + R).")
    return None


def check_eigengap(answer: Any, eigenvalues: Any, min_clusters: int = 2, max_clusters: int | None = None) -> None:
    """The number of clusters k with the largest gap ``eigenvalues[k] - eigenvalues[k-1]`` (ascending)."""
    from ..analysis.spray import eigengap

    if pending("the k suggested by the eigengap", answer):
        return None
    ev = as_float(eigenvalues, "eigenvalues")
    max_clusters = min(len(ev) - 1, 20) if max_clusters is None else int(max_clusters)
    ref = eigengap(ev, min_clusters=min_clusters, max_clusters=max_clusters)
    a = scalar(answer, "answer")
    if a != int(a):
        wrong(f"a number of clusters is a whole number; got {a}.")
    a = int(a)
    gaps = {k: ev[k] - ev[k - 1] for k in range(min_clusters, max_clusters + 1)}
    if a == ref:
        edge = (f" It is also the largest k searched ({max_clusters}): the jump may continue beyond the range, "
                "so read it as 'at least this many', not as a count.") if ref == max_clusters else ""
        return right(f"the largest jump, {gaps[ref]:.4f}, comes after the first {ref} eigenvalues: the spectrum "
                      f"hints at {ref} groups. A hint, not a finding: compare this gap with the next largest ones, and "
                      "a smooth rise without a clear jump means the number of groups is a choice." + edge)
    if a == ref - 1:
        wrong(f"off by one: eigenvalues are numbered from 0, and k = {a} would mean the jump from eigenvalue "
               f"{a - 1} to {a}. k counts the eigenvalues *before* the jump.")
    if a == ref + 1:
        wrong(f"off by one: with ev[k] - ev[k-1] the jump that ends at index {ref} gives k = {ref} "
               f"(the eigenvalues 0..{ref - 1} lie below it).")
    if a < min_clusters or a > max_clusters:
        wrong(f"k = {a} lies outside the range searched, {min_clusters}..{max_clusters}.")
    wrong(f"the gap after k = {a} is {gaps[a]:.4f}, not the largest in {min_clusters}..{max_clusters}. Use "
           "np.diff on the ascending eigenvalues and find its largest entry in that range.")
    return None


def check_image_share(answer: Any, weight: float, features: Any = None, relevance_dims: int | None = None) -> None:
    """Share of GEBI's feature variance carried by the image part at image weight ``weight``.

    Both parts are scaled to unit total variance before weighting, so the share is
    ``w^2 / (1 + w^2)``. With ``features`` (a fitted GEBI's ``features_``) and ``relevance_dims``
    (the columns of the heatmap part) the measured share is printed beside it.
    """
    if pending("the image part's share of the variance", answer):
        return None
    w = float(weight)
    ref = w ** 2 / (1 + w ** 2)
    a = scalar(answer, "answer")
    measured = ""
    if features is not None and relevance_dims is not None:
        F = np.asarray(features, dtype=float)
        v_r, v_i = F[:, :relevance_dims].var(0).sum(), F[:, relevance_dims:].var(0).sum()
        measured = f" The fitted features agree: {v_i / (v_r + v_i):.3f} of their variance is in the image part."
    if close(a, ref, 1e-3):
        return right(f"with weight {w:g} the image carries w^2 / (1 + w^2) = {ref:.3f} of the variance, the heatmap "
                      f"{1 - ref:.3f}.{measured} The kNN graph is built from distances, so the image "
                      "part then weighs more in who is whose neighbour; whether that changes the clusters is what the "
                      "explorer and the scores show.")
    if close(a, w / (1 + w), 1e-3):
        wrong(f"{a:.3f} = w / (1 + w). Multiplying features by w multiplies their variance by w^2.")
    if close(a, 1 - ref, 1e-3):
        wrong(f"{a:.3f} is the heatmap part's share; the question asks for the image part.")
    wrong(f"your share is {a:.3f}. Each part has total variance 1 before weighting; after it the image part has w^2.")
    return None


# --------------------------------------------------------------------------------------------------
# 03 · global saliency on ink

def check_peak_share(answer: Any, relevance: Any, mask: Any, percentile: float = 98) -> None:
    """n_P of one map: the share of its top ``ceil(H*W*(100-P)/100)`` pixels that lie in ``mask``."""
    if pending("n_P of one map", answer):
        return None
    from ..analysis import peak_saliency

    R, m = map_and_mask(relevance, mask)
    if not bool(m.any()):
        raise ValueError("the mask is empty: n_P is undefined for this image; pick an image with ink")
    ref = float(peak_saliency(R[None], m[None], percentile).iloc[0])
    k = max(1, math.ceil(R.numel() * (100 - percentile) / 100 - 1e-9))
    area = float(m.double().mean())
    a = scalar(answer, "answer")
    if close(a, ref, 1e-6):
        return right(f"{ref:.3f} of the top {k} pixels lie on the ink, which covers {area:.1%} of the image: "
                      f"{ref / area:.1f} times what a map that ignores the ink would give.")
    # pixels tied at the k-th largest value: any order of them gives a valid top-k (peak_saliency
    # splits them in proportion instead), so every whole count between the extremes is right
    flat, mflat = R.flatten(), m.flatten()
    kth = torch.topk(flat, k).values[-1]
    above, tied = flat > kth, flat == kth
    slots = k - int(above.sum())
    inside_above, inside_tied = int((above & mflat).sum()), int((tied & mflat).sum())
    lo = inside_above + max(0, slots - (int(tied.sum()) - inside_tied))
    hi = inside_above + min(slots, inside_tied)
    count = a * k
    if int(tied.sum()) > 1 and lo - 1e-6 <= count <= hi + 1e-6 and close(count, round(count), 1e-6):
        return right(f"{a:.3f}: your top {k} pixels are right; {int(tied.sum())} pixels tie at the k-th largest "
                      f"value, so orderings give {lo / k:.3f} to {hi / k:.3f}, and peak_saliency splits the ties in "
                      f"proportion ({ref:.3f}). The ink covers {area:.1%} of the image.")
    order = R.flatten().argsort()
    low = float(m.flatten()[order[:k]].double().mean())  # the k least salient pixels
    if close(a, ref * k, 1e-6):
        wrong(f"that is the number of top pixels on the ink ({ref * k:.0f}); n_P is a share: divide by k = {k}.")
    if close(a, low, 1e-6) and not close(low, ref, 1e-6):
        wrong("you took the k *least* salient pixels: sort in descending order (argsort(descending=True)).")
    if close(a, area, 1e-6):
        wrong("that is the ink's share of all pixels (the chance level), not the share among the top pixels.")
    k_wrong = max(1, math.ceil(R.numel() * percentile / 100))
    top_wrong = float(m.flatten()[order.flip(0)[:k_wrong]].double().mean())
    if close(a, top_wrong, 1e-6):
        wrong(f"you kept the top {percentile:g}% of the pixels ({k_wrong}); n_P{percentile:g} keeps the top "
               f"{100 - percentile:g}% ({k}).")
    wrong(f"your n_P is {a:.4f}. Take k = ceil(H*W*(100-P)/100) = {k}, the k pixels with the largest saliency, "
           "and the share of them inside the mask.")
    return None


def check_interclass_variance(answer: Any, values: Any, labels: Any) -> None:
    """The inter-class variance: the variance (over classes, dividing by their number) of the class means."""
    if pending("the inter-class variance", answer):
        return None
    v, y = as_float(values, "values"), np.asarray(labels).reshape(-1)
    if len(v) != len(y):
        raise ValueError(f"values ({len(v)}) and labels ({len(y)}) must have the same length")
    means = pd.Series(v).groupby(y).mean()
    ref = float(((means - means.mean()) ** 2).mean())
    a = scalar(answer, "answer")
    tol = max(1e-12, 1e-6 * abs(ref))
    if close(a, ref, tol):
        return right(f"{ref:.5f}: the {len(means)} class means spread with this variance; a model whose ink "
                      "saliency does not depend on the class would give 0 plus the sampling noise of the class means, "
                      "so read it beside the unbiased model's value and the bootstrap interval of their difference.")
    if close(a, float(means.var(ddof=1)), tol):
        wrong("you divided by (classes - 1): pandas' .var() does that by default. The inter-class variance "
               "here divides by the number of classes: .var(ddof=0).")
    if close(a, float(means.std(ddof=0)), tol) or close(a, float(means.std(ddof=1)), tol):
        wrong("that is a standard deviation; square it (or use .var(ddof=0)).")
    if close(a, float(np.var(v)), tol) or close(a, float(np.var(v, ddof=1)), tol):
        wrong("that is the variance of all per-image values; first average per class, then take the variance "
               "of those class means.")
    wrong(f"your variance is {a:.6f}. Group the values by label, take each class's mean, then the mean "
           "squared deviation of those means from their average.")
    return None
