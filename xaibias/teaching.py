"""Checks for the notebooks' exercises: say what is right or wrong, and why.

Every exercise in a notebook is three cells: a markdown cell tagged ``exercise`` (the task), a code
cell tagged ``solution`` (hidden in the student version that ``make student`` writes) and a code
cell tagged ``check`` that calls one function of this module with the student's answer and the
notebook's own numbers. A check

- prints ``Right: ...`` with a sentence on what the number means when the answer is right;
- raises :class:`NotYet` (an ``AssertionError``) whose message names the likely mistake when it is
  wrong (a swapped subtraction, a percentage given as a fraction, the LRP-0 result where the gamma
  rule was asked for, ...);
- prints ``Not answered yet: ...`` and returns ``None`` when the answer is still ``...`` (the stub of
  the student version) or ``None``, so a student notebook runs from top to bottom before any
  exercise is done.

Checks return ``None`` (so a check cell shows only its message). The reference values are computed here by an
independent route (the library function, or a formula written out), never copied from an output.

Import it as ``from xaibias import teaching`` (or ``xb.teaching``); it is not part of
``from xaibias import *``. It sits on top of the package, beside ``viz`` and ``widgets``.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
import torch

__all__ = [
    "NotYet", "isolated_rng",
    # 00
    "check_rule_accuracy", "check_group_accuracy", "check_reversed_drop",
    # 01
    "check_gamma_rule", "check_bias_absorbed", "check_stride2_share",
    # 02
    "check_one_cluster_f1", "check_eigengap", "check_image_share",
    # 03
    "check_peak_share", "check_interclass_variance",
    # 04
    "check_balanced_rates", "check_relevance_mass", "check_insertion_effect",
    # 05
    "check_aopc", "aopc_one", "check_welch_t",
    # 06
    "check_resample_size", "check_effect_ratio", "check_gap_by_method",
    # 07
    "check_one_group", "check_projection",
]


class NotYet(AssertionError):
    """A wrong answer to an exercise; the message says what is wrong and how to look for it."""


# --------------------------------------------------------------------------------------------------
# shared helpers

def _pending(what: str, *answers: Any) -> bool:
    """True (after printing a gentle note) when any answer is still ``...`` or ``None``."""
    if any(a is Ellipsis or a is None for a in answers):
        print(f"Not answered yet: {what}. Replace the `...` in the solution cell above with your code and run "
              "both cells again.")
        return True
    return False


def _wrong(message: str) -> None:
    raise NotYet("Not yet: " + message)


def _right(message: str) -> None:
    print("Right: " + message)


def _scalar(x: Any, name: str) -> float:
    """A single float from a number, 0-d/1-element tensor or array; NotYet otherwise."""
    if isinstance(x, (torch.Tensor, np.ndarray)):
        size = x.size if isinstance(x, np.ndarray) else x.numel()
        if size != 1:
            _wrong(f"`{name}` should be a single number; got an array of shape {tuple(x.shape)}. "
                   "Did you forget to take the mean (or pick one element)?")
        x = x.reshape(-1)[0].item()
    if isinstance(x, (bool, np.bool_)):
        _wrong(f"`{name}` should be a number; got the boolean {x!r}.")
    try:
        v = float(x)
    except (TypeError, ValueError):
        _wrong(f"`{name}` should be a number; got {type(x).__name__} {x!r}.")
    if math.isnan(v):
        _wrong(f"`{name}` is NaN: somewhere a 0/0 or a mean over an empty selection slipped in.")
    return v


def _close(a: float, b: float, tol: float) -> bool:
    return abs(a - b) <= tol


def _as_bool(x: Any, name: str) -> np.ndarray:
    if isinstance(x, pd.Series):
        x = x.to_numpy()
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.dtype != bool:
        if not np.isin(a, (0, 1)).all():
            raise ValueError(f"{name} must be bool flags (or 0/1); got values {np.unique(a)[:5]}")
        a = a.astype(bool)
    return a.reshape(-1)


def _as_float(x: Any, name: str) -> np.ndarray:
    if isinstance(x, pd.Series):
        x = x.to_numpy()
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    a = np.asarray(x, dtype=float).reshape(-1)
    if not len(a):
        raise ValueError(f"{name} is empty")
    return a


@contextmanager
def isolated_rng() -> Iterator[None]:
    """Run a block (an exercise that trains a model) without changing the global random state.

    Saves and restores the state of Python's ``random``, NumPy's global generator and torch's CPU
    generator (and CUDA's, when present), so the cells after an exercise compute exactly what they
    would without it.
    """
    py, npy, cpu = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        random.setstate(py)
        np.random.set_state(npy)
        torch.random.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


# --------------------------------------------------------------------------------------------------
# 00 · data and bias

def check_rule_accuracy(answer: Any, flags: Any, labels: Any) -> None:
    """Accuracy of the rule "frame -> malignant" (label 1) on a data set.

    ``flags``: bool per image (has a frame); ``labels``: 0/1 per image. The reference is the share
    of images where ``flag == (label == 1)``.
    """
    if _pending("the accuracy of the rule 'frame -> malignant'", answer):
        return None
    f, y = _as_bool(flags, "flags"), _as_float(labels, "labels")
    if len(f) != len(y):
        raise ValueError(f"flags ({len(f)}) and labels ({len(y)}) must have the same length")
    ref = float((f == (y == 1)).mean())
    a = _scalar(answer, "answer")
    if _close(a, ref, 1e-6):
        return _right(f"the frame rule is right on {ref:.1%} of these images. "
                      + ("Below 50 %: on this set the frame points the wrong way, which is what a model that "
                         "learned the rule will suffer from." if ref < 0.5 else
                         "Above 50 %: here the frame still carries the training set's information."))
    if _close(a, 1 - ref, 1e-6):
        _wrong(f"{a:.3f} is the accuracy of the opposite rule ('frame -> benign'). Compare the flag with "
               "`label == 1` (malignant), not with `label == 0`.")
    if _close(a, 100 * ref, 1e-4):
        _wrong(f"{a:.1f} looks like a percentage; give the accuracy as a fraction between 0 and 1.")
    if not 0 <= a <= 1:
        _wrong(f"an accuracy lies between 0 and 1; got {a:.3f}.")
    _wrong(f"your accuracy is {a:.3f}. Count the images where the rule's call (frame -> malignant, no frame -> "
           "benign) equals the true label, and divide by the number of images of *this* set.")
    return None


def check_group_accuracy(acc_framed: Any, acc_unframed: Any, correct: Any, flags: Any) -> None:
    """Accuracy on the framed and on the unframed images of one test set.

    ``correct``: 1.0/0.0 per image (was the model right); ``flags``: bool per image (has a frame).
    """
    if _pending("the accuracies on framed and on unframed images", acc_framed, acc_unframed):
        return None
    c, f = _as_float(correct, "correct"), _as_bool(flags, "flags")
    if len(c) != len(f):
        raise ValueError(f"correct ({len(c)}) and flags ({len(f)}) must have the same length")
    if f.all() or not f.any():
        raise ValueError("flags must mark some images and leave others unmarked")
    ref_f, ref_u = float(c[f].mean()), float(c[~f].mean())
    a_f, a_u = _scalar(acc_framed, "acc_framed"), _scalar(acc_unframed, "acc_unframed")
    if _close(a_f, ref_u, 1e-6) and _close(a_u, ref_f, 1e-6) and not _close(ref_f, ref_u, 1e-6):
        _wrong("the two numbers are swapped: `acc_framed` should be the accuracy on the images *with* a frame.")
    if max(a_f, a_u) > 1:
        _wrong("give the accuracies as fractions between 0 and 1, not percentages.")
    if _close(a_f, float(c.mean()), 1e-6) or _close(a_u, float(c.mean()), 1e-6):
        _wrong(f"one of your numbers ({a_f:.3f} / {a_u:.3f}) is the accuracy over all images; select the "
               "framed (`flags`) or unframed (`~flags`) images first.")
    if not (_close(a_f, ref_f, 1e-6) and _close(a_u, ref_u, 1e-6)):
        _wrong(f"your accuracies are {a_f:.3f} (framed) and {a_u:.3f} (unframed). Take the mean of the per-image "
               "`correct` values over the images with a frame, and over those without.")
    return _right(f"framed {ref_f:.1%}, unframed {ref_u:.1%} ({int(f.sum())} and {int((~f).sum())} images). "
                  + ("The framed images lose more: on them the frame now points to the wrong class."
                     if ref_f < ref_u else
                     "The framed images do not lose more here; look at how many of each there are."))


def check_reversed_drop(answer: Any, acc_same: Any, acc_reversed: Any, compare_to: Any = None,
                        prediction: str | None = None) -> None:
    """Accuracy drop when the co-occurrence is reversed: ``acc_same - acc_reversed``.

    ``compare_to``: another drop (the notebook's strong-bias model) to compare with;
    ``prediction``: the student's prediction before measuring, ``"smaller"``, ``"same"`` or ``"larger"``
    (a wrong prediction is not a wrong answer: the check says whether it held).
    """
    if _pending("the accuracy drop", answer, acc_same, acc_reversed):
        return None
    s, r = _scalar(acc_same, "acc_same"), _scalar(acc_reversed, "acc_reversed")
    ref = s - r
    a = _scalar(answer, "answer")
    if not _close(a, ref, 1e-6):
        if _close(a, -ref, 1e-6) and abs(ref) > 1e-9:
            _wrong(f"your drop is {a:+.3f}, the accuracies are {s:.3f} (same distribution) and {r:.3f} (reversed): "
                   "subtract in the other order, same minus reversed, so that a loss is positive.")
        if _close(a, 100 * ref, 1e-4):
            _wrong(f"{a:.1f} looks like percentage points; give the drop as a fraction (accuracies are fractions).")
        _wrong(f"your drop is {a:+.3f} but the two accuracies differ by {ref:+.3f} "
               f"({s:.3f} - {r:.3f}); did you take both from the same model?")
    msg = (f"the drop is {ref:+.3f}: accuracy {s:.3f} on the same distribution, {r:.3f} with the co-occurrence "
           "reversed (chance 0.5).")
    if s < 0.65:
        msg += " Careful: this model is close to chance even without the reversal; a model that learned little has little to lose."
    if compare_to is not None and compare_to is not Ellipsis:
        other = _scalar(compare_to, "compare_to")
        moved = "smaller" if ref < other - 0.02 else "larger" if ref > other + 0.02 else "same"
        msg += f" The other model's drop was {other:+.3f}: this one is {moved if moved != 'same' else 'about the same'}."
        if prediction is not None and prediction is not Ellipsis:
            p = str(prediction).strip().lower()
            if p not in ("smaller", "same", "larger"):
                raise ValueError(f"prediction must be 'smaller', 'same' or 'larger'; got {prediction!r}")
            msg += (" Your prediction held." if p == moved else
                    f" You predicted '{p}': worth a sentence on why the model did otherwise.")
    return _right(msg)


# --------------------------------------------------------------------------------------------------
# 01 · LRP rules

def _toy_lrp(net: torch.nn.Module, x: torch.Tensor, rules: Any, target: int) -> torch.Tensor:
    from .explain import reference as ref

    return ref.lrp(net, x, target=target, rules=rules).input


def _zennit_gamma(net: torch.nn.Module, x: torch.Tensor, gamma: float, target: int) -> torch.Tensor:
    from zennit.core import Composite
    from zennit.rules import Gamma, Pass
    from zennit.types import Activation, Linear

    def module_map(ctx, name, module):
        if isinstance(module, Activation):
            return Pass()
        if isinstance(module, Linear):
            return Gamma(gamma=gamma)
        return None

    xin = x.detach().clone().requires_grad_(True)
    with Composite(module_map=module_map).context(net) as hooked:
        out = hooked(xin)
        start = torch.zeros_like(out)
        start[:, target] = out[:, target].detach()
        (rel,) = torch.autograd.grad(out, xin, grad_outputs=start)
    return rel.detach()


def check_gamma_rule(answer: Any, net: torch.nn.Module, x: torch.Tensor, gamma: float = 0.25,
                     target: int = 0) -> None:
    """Input relevance of the gamma rule on every linear layer of a small sequential net.

    Compared with :mod:`xaibias.explain.reference` and with zennit's ``Gamma`` rule (which must
    agree with each other), and diagnosed against LRP-0 and a gamma applied to the wrong weights.
    """
    from .explain import reference as ref

    if _pending("the input relevance of the gamma rule", answer):
        return None
    x = torch.as_tensor(x, dtype=torch.float64)
    mine = _toy_lrp(net, x, ref.Gamma(gamma), target)
    theirs = _zennit_gamma(net, x, gamma, target)
    if not torch.allclose(mine, theirs, atol=1e-8):  # pragma: no cover - guards the reference itself
        raise RuntimeError(f"reference and zennit disagree on the gamma rule: {mine.tolist()} vs {theirs.tolist()}")
    a = torch.as_tensor(answer, dtype=torch.float64).detach()
    if a.numel() != mine.numel():
        _wrong(f"your relevance has {a.numel()} values; the input has {mine.numel()} (shape {tuple(mine.shape)}).")
    a = a.reshape(mine.shape)
    if torch.allclose(a, mine, atol=1e-6):
        r0 = _toy_lrp(net, x, "0", target)
        return _right(f"gamma = {gamma} gives {np.round(mine.numpy(), 4).tolist()} in both xaibias.explain.reference "
                      f"and zennit (LRP-0: {np.round(r0.numpy(), 4).tolist()}). Boosting the positive weights favours "
                      "positive contributions, so the counter-evidence (the negative relevance) shrinks.")
    if torch.allclose(a, _toy_lrp(net, x, "0", target), atol=1e-6):
        _wrong("this is the LRP-0 relevance. The gamma rule uses the weights w + gamma * w+ (only the positive "
               "weights grow) in both the forward step z and the backward step c.")
    boosted_negative = copy.deepcopy(net).double()
    with torch.no_grad():
        for m in boosted_negative.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.copy_(m.weight + gamma * m.weight.clamp(max=0))
    if torch.allclose(a, _toy_lrp(boosted_negative, x, "0", target), atol=1e-6):
        _wrong("you boosted the negative weights (w + gamma * w-); gamma favours the positive ones: w + gamma * w+.")
    if not torch.allclose(a.sum(), mine.sum(), atol=1e-6):
        _wrong(f"your relevance sums to {float(a.sum()):.4f}, the gamma rule's to {float(mine.sum()):.4f} (without "
               "biases it keeps the logit). Check that the same modified weights appear in z and in c in both layers.")
    _wrong("the total is right but the split over the inputs is not; check the last step, R_in = a * c, in layer 1.")
    return None


def check_bias_absorbed(answer: Any, net: torch.nn.Module, x: torch.Tensor, bias: Sequence[float],
                        target: int = 0) -> None:
    """Share of the logit that LRP-0 does *not* pass to the input once the last layer has ``bias``.

    The reference copies ``net`` (a Linear-ReLU-Linear net without biases), gives its last linear
    layer the bias, runs the reference LRP-0 and returns ``1 - sum(R_input) / logit``.
    """
    from .explain import reference as ref

    if _pending("the share of the logit absorbed by the bias", answer):
        return None
    x = torch.as_tensor(x, dtype=torch.float64)
    lin = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    b = torch.as_tensor(bias, dtype=torch.float64)
    layers = []
    for m in net:
        if m is lin[-1]:
            new = torch.nn.Linear(m.in_features, m.out_features, bias=True).double()
            with torch.no_grad():
                new.weight.copy_(m.weight)
                new.bias.copy_(b)
            layers.append(new)
        else:
            layers.append(m)
    biased = torch.nn.Sequential(*layers).double()
    res = ref.lrp(biased, x, target=target, rules="0")
    with torch.no_grad():
        logit = float(biased(x)[0, target])
    kept = float(res.input.sum()) / logit
    want = 1 - kept
    a = _scalar(answer, "answer")
    if _close(a, want, 1e-6):
        return _right(f"the bias takes {want:.1%} of the logit {logit:.3f}; the input keeps {float(res.input.sum()):.3f}. "
                      "A bias is an input that is always on; LRP-0 gives it its share b_k / z_k, and that share "
                      "never reaches the pixels.")
    if _close(a, -want, 1e-6):
        _wrong("the sign is flipped: compute 1 - (input relevance) / logit, the share that did *not* arrive.")
    if _close(a, kept, 1e-6):
        _wrong(f"{a:.3f} is the share the input *keeps*; the exercise asks for the share the bias absorbs (1 minus it).")
    if _close(a, 0.0, 1e-9):
        _wrong("zero: the bias is missing from your forward step. With a bias, z_k = sum_j a_j w_jk + b_k, and "
               "R_k is shared in proportion to a_j w_jk / z_k, so b_k / z_k of it stays behind.")
    _wrong(f"your share is {a:.4f}. Rebuild the net with the bias {b.tolist()} in its last layer, run LRP-0 and "
           "compare the sum of the input relevance with that net's logit.")
    return None


def check_stride2_share(answer: Any, relevance: Any) -> None:
    """Share of one map's energy at the period-2 frequencies (0, W/2), (H/2, 0), (H/2, W/2), mean removed."""
    from .analysis import checker as chk

    if _pending("the stride-2 energy share", answer):
        return None
    R = torch.as_tensor(relevance, dtype=torch.float64).detach()
    if R.ndim != 2:
        raise ValueError(f"relevance must be one (H,W) map; got shape {tuple(R.shape)}")
    ref = float(chk.stride2_share(R[None])[0])
    a = _scalar(answer, "answer")
    if _close(a, ref, 1e-6 + 1e-4 * ref):
        return _right(f"the map has {ref:.4f} of its energy at the three period-2 frequencies, "
                      f"{ref / chk.structureless_share(R.shape[-1]):.1f} times a map without structure.")
    H, W = R.shape
    P_raw = torch.fft.fft2(R).abs() ** 2
    at_raw = P_raw[0, W // 2] + P_raw[H // 2, 0] + P_raw[H // 2, W // 2]
    if _close(a, float(at_raw / P_raw.sum()), 1e-6 + 1e-4 * abs(a)):
        _wrong("the mean is still in: subtract R.mean() before the FFT, or the zero frequency holds most of the energy.")
    P = torch.fft.fft2(R - R.mean()).abs() ** 2
    if _close(a, float(P[H // 2, W // 2] / P.sum()), 1e-6 + 1e-4 * abs(a)):
        _wrong("you used only the (H/2, W/2) frequency; a period-2 pattern along rows or columns alone sits at "
               "(0, W/2) and (H/2, 0): add all three.")
    if _close(a, float(P[H // 2, W // 2] + P[0, W // 2] + P[H // 2, 0]), 1e-6 + 1e-4 * abs(a)):
        _wrong("that is the energy at the three frequencies, not its share: divide by the total energy of the spectrum.")
    _wrong(f"your share is {a:.5f}. Power spectrum: |fft2(R - mean)|^2; share = (P[0, W/2] + P[H/2, 0] + P[H/2, W/2]) "
           "/ P.sum().")
    return None


# --------------------------------------------------------------------------------------------------
# 02 · SpRAy vs GEBI

def check_one_cluster_f1(answer: Any, flags: Any) -> None:
    """F1 of one cluster that holds every image, against an artifact with per-image ``flags``."""
    if _pending("the F1 of one all-in-one cluster", answer):
        return None
    f = _as_bool(flags, "flags")
    if not f.any():
        raise ValueError("flags mark no image: the F1 of any cluster is undefined")
    p = float(f.mean())
    ref = 2 * p / (1 + p)
    a = _scalar(answer, "answer")
    if _close(a, ref, 1e-6):
        return _right(f"p = {p:.3f} of the images carry the artifact, so the single cluster has precision p and recall 1: "
                      f"F1 = 2p / (1 + p) = {ref:.3f}. The more common the artifact among the analysed images, the "
                      "higher this baseline; a clustering only finds the artifact where its F1 clears it.")
    if _close(a, p, 1e-6):
        _wrong(f"{a:.3f} is the precision (the artifact's share p). A cluster holding every image also has recall 1; "
               "F1 is the harmonic mean of the two.")
    if _close(a, 1.0, 1e-9):
        _wrong("1 is the recall of a cluster that holds everything; F1 also needs the precision p.")
    if _close(a, (p + 1) / 2, 1e-6):
        _wrong("that is the arithmetic mean of precision and recall; F1 is the harmonic mean, 2 P R / (P + R).")
    _wrong(f"your F1 is {a:.3f}. Precision = share of the cluster with the artifact, recall = share of the artifact's "
           "images in the cluster; F1 = 2 P R / (P + R).")
    return None


def check_eigengap(answer: Any, eigenvalues: Any, min_clusters: int = 2, max_clusters: int | None = None) -> None:
    """The number of clusters k with the largest gap ``eigenvalues[k] - eigenvalues[k-1]`` (ascending)."""
    from .analysis.spray import eigengap

    if _pending("the k suggested by the eigengap", answer):
        return None
    ev = _as_float(eigenvalues, "eigenvalues")
    max_clusters = min(len(ev) - 1, 20) if max_clusters is None else int(max_clusters)
    ref = eigengap(ev, min_clusters=min_clusters, max_clusters=max_clusters)
    a = _scalar(answer, "answer")
    if a != int(a):
        _wrong(f"a number of clusters is a whole number; got {a}.")
    a = int(a)
    gaps = {k: ev[k] - ev[k - 1] for k in range(min_clusters, max_clusters + 1)}
    if a == ref:
        return _right(f"the largest jump, {gaps[ref]:.4f}, comes after the first {ref} eigenvalues: {ref} groups that the "
                      "kNN graph hardly connects. Compare it with the next largest gaps before trusting it.")
    if a == ref - 1:
        _wrong(f"off by one: eigenvalues are numbered from 0, and k = {a} would mean the jump from eigenvalue "
               f"{a - 1} to {a}. k counts the eigenvalues *before* the jump.")
    if a == ref + 1:
        _wrong(f"off by one: with ev[k] - ev[k-1] the jump that ends at index {ref} gives k = {ref} "
               f"(the eigenvalues 0..{ref - 1} lie below it).")
    if a < min_clusters or a > max_clusters:
        _wrong(f"k = {a} lies outside the range searched, {min_clusters}..{max_clusters}.")
    _wrong(f"the gap after k = {a} is {gaps[a]:.4f}, not the largest in {min_clusters}..{max_clusters}. Use "
           "np.diff on the ascending eigenvalues and find its largest entry in that range.")
    return None


def check_image_share(answer: Any, weight: float, features: Any = None, relevance_dims: int | None = None) -> None:
    """Share of GEBI's feature variance carried by the image part at image weight ``weight``.

    Both parts are scaled to unit total variance before weighting, so the share is
    ``w^2 / (1 + w^2)``. With ``features`` (a fitted GEBI's ``features_``) and ``relevance_dims``
    (the columns of the heatmap part) the measured share is printed beside it.
    """
    if _pending("the image part's share of the variance", answer):
        return None
    w = float(weight)
    ref = w ** 2 / (1 + w ** 2)
    a = _scalar(answer, "answer")
    measured = ""
    if features is not None and relevance_dims is not None:
        F = np.asarray(features, dtype=float)
        v_r, v_i = F[:, :relevance_dims].var(0).sum(), F[:, relevance_dims:].var(0).sum()
        measured = f" The fitted features agree: {v_i / (v_r + v_i):.3f} of their variance is in the image part."
    if _close(a, ref, 1e-3):
        return _right(f"with weight {w:g} the image carries w^2 / (1 + w^2) = {ref:.3f} of the variance, the heatmap "
                      f"{1 - ref:.3f}.{measured} The kNN graph is built from distances, so the image then decides "
                      "most neighbourhoods.")
    if _close(a, w / (1 + w), 1e-3):
        _wrong(f"{a:.3f} = w / (1 + w). Multiplying features by w multiplies their variance by w^2.")
    if _close(a, 1 - ref, 1e-3):
        _wrong(f"{a:.3f} is the heatmap part's share; the question asks for the image part.")
    _wrong(f"your share is {a:.3f}. Each part has total variance 1 before weighting; after it the image part has w^2.")
    return None


# --------------------------------------------------------------------------------------------------
# 03 · global saliency on ink

def check_peak_share(answer: Any, relevance: Any, mask: Any, percentile: float = 98) -> None:
    """n_P of one map: the share of its top ``ceil(H*W*(100-P)/100)`` pixels that lie in ``mask``."""
    if _pending("n_P of one map", answer):
        return None
    from .analysis import peak_saliency

    R = torch.as_tensor(relevance, dtype=torch.float64).detach()
    m = torch.as_tensor(mask).bool()
    if R.ndim != 2 or R.shape != m.shape:
        raise ValueError(f"relevance and mask must be one (H,W) map each; got {tuple(R.shape)} and {tuple(m.shape)}")
    if not bool(m.any()):
        raise ValueError("the mask is empty: n_P is undefined for this image; pick an image with ink")
    ref = float(peak_saliency(R[None], m[None], percentile).iloc[0])
    k = max(1, math.ceil(R.numel() * (100 - percentile) / 100 - 1e-9))
    area = float(m.double().mean())
    a = _scalar(answer, "answer")
    if _close(a, ref, 1e-6):
        return _right(f"{ref:.3f} of the top {k} pixels lie on the ink, which covers {area:.1%} of the image: "
                      f"{ref / area:.1f} times what a map that ignores the ink would give.")
    order = R.flatten().argsort()
    low = float(m.flatten()[order[:k]].double().mean())  # the k least salient pixels
    if _close(a, ref * k, 1e-6):
        _wrong(f"that is the number of top pixels on the ink ({ref * k:.0f}); n_P is a share: divide by k = {k}.")
    if _close(a, low, 1e-6) and not _close(low, ref, 1e-6):
        _wrong("you took the k *least* salient pixels: sort in descending order (argsort(descending=True)).")
    if _close(a, area, 1e-6):
        _wrong("that is the ink's share of all pixels (the chance level), not the share among the top pixels.")
    k_wrong = max(1, math.ceil(R.numel() * percentile / 100))
    top_wrong = float(m.flatten()[order.flip(0)[:k_wrong]].double().mean())
    if _close(a, top_wrong, 1e-6):
        _wrong(f"you kept the top {percentile:g}% of the pixels ({k_wrong}); n_P{percentile:g} keeps the top "
               f"{100 - percentile:g}% ({k}).")
    _wrong(f"your n_P is {a:.4f}. Take k = ceil(H*W*(100-P)/100) = {k}, the k pixels with the largest saliency, "
           "and the share of them inside the mask.")
    return None


def check_interclass_variance(answer: Any, values: Any, labels: Any) -> None:
    """The inter-class variance: the variance (over classes, dividing by their number) of the class means."""
    if _pending("the inter-class variance", answer):
        return None
    v, y = _as_float(values, "values"), np.asarray(labels).reshape(-1)
    if len(v) != len(y):
        raise ValueError(f"values ({len(v)}) and labels ({len(y)}) must have the same length")
    means = pd.Series(v).groupby(y).mean()
    ref = float(((means - means.mean()) ** 2).mean())
    a = _scalar(answer, "answer")
    tol = max(1e-12, 1e-6 * abs(ref))
    if _close(a, ref, tol):
        return _right(f"{ref:.5f}: the {len(means)} class means spread with this variance; a model whose ink "
                      "saliency does not depend on the class would give (nearly) 0.")
    if _close(a, float(means.var(ddof=1)), tol):
        _wrong("you divided by (classes - 1): pandas' .var() does that by default. The inter-class variance "
               "here divides by the number of classes: .var(ddof=0).")
    if _close(a, float(means.std(ddof=0)), tol) or _close(a, float(means.std(ddof=1)), tol):
        _wrong("that is a standard deviation; square it (or use .var(ddof=0)).")
    if _close(a, float(np.var(v)), tol) or _close(a, float(np.var(v, ddof=1)), tol):
        _wrong("that is the variance of all per-image values; first average per class, then take the variance "
               "of those class means.")
    _wrong(f"your variance is {a:.6f}. Group the values by label, take each class's mean, then the mean "
           "squared deviation of those means from their average.")
    return None


# --------------------------------------------------------------------------------------------------
# 04 · CRP and robustness

def check_balanced_rates(q_malignant: Any, q_benign: Any, rates: Sequence[float], target: float) -> None:
    """Class-dependent pasting probabilities that bring both classes to the artifact rate ``target``.

    ``rates``: (rate among malignant, rate among benign) before augmentation. Pasting only changes
    images without the artifact, so ``q_c = (target - r_c) / (1 - r_c)``.
    """
    if _pending("the two pasting probabilities", q_malignant, q_benign):
        return None
    r_m, r_b = (float(r) for r in rates)
    t = float(target)
    if not (max(r_m, r_b) <= t < 1):
        raise ValueError(f"target must lie in [max(rates), 1); got {t} with rates {rates}")
    want_m, want_b = (t - r_m) / (1 - r_m), (t - r_b) / (1 - r_b)
    a_m, a_b = _scalar(q_malignant, "q_malignant"), _scalar(q_benign, "q_benign")
    if _close(a_m, want_m, 1e-3) and _close(a_b, want_b, 1e-3):
        return _right(f"q = {want_m:.3f} (malignant) and {want_b:.3f} (benign): after pasting, "
                      f"{r_m:.2f} + {1 - r_m:.2f} x {want_m:.3f} = {t:.2f} and {r_b:.2f} + {1 - r_b:.2f} x {want_b:.3f} = "
                      f"{t:.2f}, so the circle no longer tells the classes apart.")
    if _close(a_m, want_b, 1e-3) and _close(a_b, want_m, 1e-3):
        _wrong("the two probabilities are swapped: the class that already has fewer circles (benign) needs more pasted.")
    if _close(a_m, t - r_m, 1e-3) and _close(a_b, t - r_b, 1e-3):
        _wrong("t - r counts every image, but pasting changes only images without a circle (a share 1 - r of the class): "
               "divide by 1 - r.")
    after_m, after_b = r_m + (1 - r_m) * a_m, r_b + (1 - r_b) * a_b
    _wrong(f"with your probabilities the classes end at circle rates {after_m:.3f} (malignant) and {after_b:.3f} (benign), "
           f"not both {t:.2f}. A class with rate r reaches r + (1 - r) q.")
    return None


def check_relevance_mass(answer: Any, relevance: Any, mask: Any) -> None:
    """Relevance mass accuracy of one map: positive relevance inside ``mask`` over all positive relevance."""
    if _pending("the relevance mass on the mask", answer):
        return None
    R = torch.as_tensor(relevance, dtype=torch.float64).detach()
    m = torch.as_tensor(mask).bool()
    if R.shape != m.shape or R.ndim != 2:
        raise ValueError(f"relevance and mask must be one (H,W) map each; got {tuple(R.shape)} and {tuple(m.shape)}")
    pos = R.clamp(min=0)
    if float(pos.sum()) <= 0:
        raise ValueError("the map has no positive relevance: its mass is undefined")
    ref = float(pos[m].sum() / pos.sum())
    a = _scalar(answer, "answer")
    area = float(m.double().mean())
    if _close(a, ref, 1e-6):
        return _right(f"{ref:.3f} of the positive relevance lies on the mask, which covers {area:.1%} of the pixels: "
                      f"{ref / max(area, 1e-12):.1f} times what a uniform map would put there.")
    if float(R.sum()) != 0 and _close(a, float(R[m].sum() / R.sum()), 1e-6):
        _wrong("you used the signed relevance; RMA counts positive relevance only: clamp the map at 0 first.")
    if _close(a, float(R.abs()[m].sum() / R.abs().sum()), 1e-6):
        _wrong("you used |R|; RMA (Arras et al.) counts positive relevance only: R.clamp(min=0).")
    if _close(a, area, 1e-6):
        _wrong("that is the mask's share of the pixels (a uniform map's score), not the map's mass on it.")
    _wrong(f"your mass is {a:.4f}. RMA = sum of R+ inside the mask / sum of R+ over the image.")
    return None


def check_insertion_effect(answer: Any, model: Any, images: Any, labels: Any, seed: int,
                           artifact_params: dict | None = None, compare: dict | None = None) -> None:
    """Mean change (pp) of P(malignant) of *benign* images when a frame is pasted in.

    Recomputed with :func:`xaibias.analysis.bias_insertion` (artifact ``"frame"``, ``target_class=1``,
    the given ``seed`` and ``artifact_params``), so the student's number is checked against the
    library's counterfactuals. ``compare``: name -> effect of other models, printed beside it.
    """
    from .analysis import bias_insertion

    if _pending("the frame-insertion effect of your model", answer, model):
        return None
    params = {"frame": dict(artifact_params or {})}
    _, per = bias_insertion(model, images, labels, artifacts=("frame",), target_class=1, seed=seed,
                            artifact_params=params, progress=False, return_per_image=True)
    per = per[~per["skipped"]] if "skipped" in per else per
    benign = per[per["true_class"].isin([0, "benign"])]["change_pp"].to_numpy(float)
    ref = float(benign.mean())
    every = float(per["change_pp"].mean())
    a = _scalar(answer, "answer")
    if _close(a, ref, 1e-3):
        extra = ""
        if compare:
            extra = " Beside it: " + ", ".join(f"{k} {float(v):+.1f} pp" for k, v in compare.items()) + "."
        return _right(f"pasting the frame moves P(malignant) of the benign images by {ref:+.1f} pp on average "
                      f"({len(benign)} images).{extra}")
    if _close(a, -ref, 1e-3):
        _wrong("the sign is flipped: the change is after minus before.")
    if _close(a, ref / 100, 1e-5):
        _wrong("that is a change of probability; give it in percentage points (x 100).")
    if _close(a, every, 1e-3):
        _wrong("you averaged over all images; the effect asked for is on the benign ones (true class 0).")
    _wrong(f"your effect is {a:+.2f} pp. Use xb.analysis.bias_insertion(..., return_per_image=True) with the same "
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
    from .analysis import aopc

    if _pending(f"the AOPC with {replacement} regions", answer):
        return None
    target = int(target)
    ref = aopc_one(model, image, relevance, target, patch, replacement)
    if replacement == "black":
        n_regions = (image.shape[-2] // patch) * (image.shape[-1] // patch)
        lib = float(aopc(model, image[None], relevance[None], target=[target], steps=n_regions, patch=patch,
                         perturbation="black", progress=False)[0])
        if abs(lib - ref) > 1e-5:  # pragma: no cover - guards the hand version
            raise RuntimeError(f"aopc_one ({ref}) and xb.analysis.aopc ({lib}) disagree")
    a = _scalar(answer, "answer")
    if _close(a, ref, 1e-4):
        msg = f"AOPC with {replacement} regions is {ref:.4f}"
        if replacement != "black":
            black = aopc_one(model, image, relevance, target, patch, "black")
            msg += (f", with black regions {black:.4f}: "
                    + ("blurring removes less evidence than a black patch (the blurred region keeps its colours)."
                       if ref < black else "blurring removes at least as much as a black patch here."))
        else:
            msg += ", equal to xb.analysis.aopc(..., perturbation='black') on this image."
        return _right(msg)
    if _close(a, aopc_one(model, image, relevance, target, patch, replacement, output="logit"), 1e-4):
        _wrong("you tracked the logit; the score here is the softmax probability of the target class.")
    if _close(a, aopc_one(model, image, relevance, target, patch, replacement, include_zero=True), 1e-4):
        _wrong("you averaged over L + 1 steps (k = 0 included, Samek et al.'s form); this notebook averages over "
               "k = 1..L, as xb.analysis.aopc does.")
    if _close(a, aopc_one(model, image, relevance, target, patch, replacement, order="lerf"), 1e-4):
        _wrong("you removed the least relevant regions first; AOPC (MoRF) removes the most relevant first.")
    if _close(a, -ref, 1e-4):
        _wrong("the sign is flipped: the drop is f(original) - f(perturbed).")
    _wrong(f"your AOPC is {a:.4f}. Sum the relevance per {patch}x{patch} region, sort descending, replace regions "
           "cumulatively, and average the drops of the softmax score over the steps.")
    return None


def check_welch_t(answer: Any, a: Any, b: Any) -> None:
    """Welch's t statistic of sample ``a`` against ``b``: (mean_a - mean_b) / sqrt(s_a^2/n_a + s_b^2/n_b), ddof 1."""
    if _pending("Welch's t statistic", answer):
        return None
    x, y = _as_float(a, "a"), _as_float(b, "b")
    x, y = x[~np.isnan(x)], y[~np.isnan(y)]
    if len(x) < 2 or len(y) < 2:
        raise ValueError("each sample needs at least two values")
    from scipy import stats

    ref = float(stats.ttest_ind(x, y, equal_var=False).statistic)
    t = _scalar(answer, "answer")
    if _close(t, ref, 1e-4 * max(1, abs(ref))):
        return _right(f"t = {ref:.3f} (scipy agrees). Positive: the first sample has the larger mean.")
    if _close(t, -ref, 1e-4 * max(1, abs(ref))):
        _wrong("the sign is flipped: the notebook's convention is biased minus unbiased.")
    pooled = float(stats.ttest_ind(x, y, equal_var=True).statistic)
    if _close(t, pooled, 1e-4 * max(1, abs(ref))) and not _close(pooled, ref, 1e-6):
        _wrong("that is Student's t with a pooled variance; Welch's t divides by sqrt(s_a^2/n_a + s_b^2/n_b).")
    t0 = (x.mean() - y.mean()) / math.sqrt(x.var() / len(x) + y.var() / len(y))
    if _close(t, t0, 1e-4 * max(1, abs(ref))):
        _wrong("you used the population variance (ddof=0); the sample variance divides by n - 1 (np.var(..., ddof=1)).")
    _wrong(f"your t is {t:.3f}. t = (mean_a - mean_b) / sqrt(var_a / n_a + var_b / n_b), variances with ddof=1.")
    return None


# --------------------------------------------------------------------------------------------------
# 06 · reducing bias

def check_resample_size(answer: Any, flags: Any, labels: Any) -> None:
    """Images kept by cell resampling: in each artifact group (with / without), twice the rarer class's count."""
    if _pending("the number of images resampling keeps", answer):
        return None
    f, y = _as_bool(flags, "flags"), _as_float(labels, "labels")
    counts = pd.crosstab(f, y)
    ref = int(2 * counts.min(axis=1).sum())
    a = _scalar(answer, "answer")
    if a == ref:
        return _right(f"{ref} of {len(y)} images ({ref / len(y):.0%}): in each group the rarer class sets the size, "
                      "so a strong bias leaves little data.")
    if a == ref / 2:
        _wrong("that is one class per group; each group keeps as many malignant as benign images: twice the rarer count.")
    if a == 2 * int(counts.min().min()) * len(counts):
        _wrong("you used the smallest cell for both groups; each group keeps twice its *own* rarer class.")
    _wrong(f"your count is {a:g}. Cross-tabulate frame x class, take the smaller count in each row, double it, add.")
    return None


def check_effect_ratio(answer: Any, effect: Any, baseline: Any) -> None:
    """Insertion effect of a mitigated model as a share of the baseline's: ``effect / baseline``."""
    if _pending("the effect ratio", answer, effect, baseline):
        return None
    e, b = _scalar(effect, "effect"), _scalar(baseline, "baseline")
    if b == 0:
        raise ValueError("the baseline effect is 0: a ratio to it is undefined")
    ref = e / b
    a = _scalar(answer, "answer")
    if _close(a, ref, 1e-6):
        return _right(f"the mitigated model keeps {ref:.0%} of the baseline's frame effect ({e:+.1f} vs {b:+.1f} pp): "
                      + ("at most half, the target is met." if ref <= 0.5 else "more than half, the target is missed."))
    if e != 0 and _close(a, b / e, 1e-6):
        _wrong("the ratio is upside down: mitigated effect divided by the baseline's.")
    if _close(a, 1 - ref, 1e-6):
        _wrong(f"{a:.3f} is the share removed; the exercise asks for the share kept, effect / baseline.")
    if _close(a, 100 * ref, 1e-4):
        _wrong("give the ratio as a fraction, not a percentage.")
    _wrong(f"your ratio is {a:.3f}; effect / baseline = {e:.2f} / {b:.2f}.")
    return None


def check_gap_by_method(answer: Any, report: pd.DataFrame) -> None:
    """Mean over seeds of ``acc_same - acc_reversed`` per method, as a Series indexed by method."""
    if _pending("the same-minus-reversed accuracy gap per method", answer):
        return None
    need = {"method", "acc_same", "acc_reversed"}
    if not need <= set(report.columns):
        raise ValueError(f"report must have the columns {sorted(need)}; got {sorted(report.columns)}")
    ref = (report["acc_same"] - report["acc_reversed"]).groupby(report["method"], sort=False).mean()
    if not isinstance(answer, pd.Series):
        _wrong(f"give a pandas Series indexed by method (got {type(answer).__name__}); groupby('method').mean() gives one.")
    missing = set(ref.index) - set(answer.index)
    if missing:
        _wrong(f"methods missing from your Series: {sorted(missing)}.")
    a = answer.reindex(ref.index).astype(float)
    if np.allclose(a, ref, atol=1e-6):
        best = ref.abs().idxmin()
        return _right("gaps " + ", ".join(f"{k} {v:+.3f}" for k, v in ref.items())
                      + f". Smallest: {best}. A model that ignores the frame loses nothing when the correlation is "
                        "reversed, so its gap is near 0.")
    if np.allclose(a, -ref, atol=1e-6):
        _wrong("the signs are flipped: same minus reversed, so that a model hurt by the reversal has a positive gap.")
    if np.allclose(a, 100 * ref, atol=1e-4):
        _wrong("give the gaps as fractions (the accuracies are fractions), not points.")
    first = report.groupby("method", sort=False).first()
    if np.allclose(a, (first["acc_same"] - first["acc_reversed"]).reindex(ref.index), atol=1e-6):
        _wrong("these are the first seed's gaps; average over all seeds.")
    _wrong("compute (report.acc_same - report.acc_reversed) per row, then the mean per method.")
    return None


# --------------------------------------------------------------------------------------------------
# 07 · reveal to revise

def check_one_group(n_group: Any, acc_group: Any, labels: Any, preds: Any, flags_table: pd.DataFrame, cls: int,
                    present: Sequence[str]) -> None:
    """Size and accuracy of one group: true class ``cls`` with exactly the artifacts ``present`` (no others).

    ``flags_table``: one bool column per artifact; ``present``: the artifacts the group carries.
    """
    if _pending("the group's size and accuracy", n_group, acc_group):
        return None
    if not isinstance(flags_table, pd.DataFrame):
        raise ValueError(f"flags_table must be a DataFrame of bool artifact columns; got {type(flags_table).__name__}")
    unknown = [a for a in present if a not in flags_table.columns]
    if unknown:
        raise ValueError(f"present names artifacts {unknown} that flags_table lacks; it has {list(flags_table.columns)}")
    y, p = _as_float(labels, "labels"), _as_float(preds, "preds")
    flags = {a: _as_bool(flags_table[a], f"flags_table[{a!r}]") for a in flags_table.columns}
    if not (len(y) == len(p) == len(flags_table)):
        raise ValueError(f"labels ({len(y)}), preds ({len(p)}) and flags_table ({len(flags_table)}) must have the same length")
    pattern = np.ones(len(y), bool)
    for a, f in flags.items():
        pattern &= f if a in present else ~f
    member = (y == cls) & pattern
    if not member.any():
        raise ValueError(f"no image of class {cls} carries exactly {list(present) or 'no artifact'}")
    correct = p == y
    ref_n, ref_acc = int(member.sum()), float(correct[member].mean())
    n, acc = _scalar(n_group, "n_group"), _scalar(acc_group, "acc_group")
    loose = (y == cls) & np.all([flags[a] for a in present], axis=0) if present else (y == cls)
    if n == int(loose.sum()) and n != ref_n:
        _wrong(f"{n:g} images is every class-{cls} image that carries {'+'.join(present) or 'anything'}, whatever else "
               "it carries; the group has exactly this pattern, so the other artifacts must be absent (`~flags`).")
    if n == int(pattern.sum()) and n != ref_n:
        _wrong(f"{n:g} images is the pattern in both classes; a group is one class x one pattern: also select "
               f"`labels == {cls}`.")
    if n != ref_n:
        _wrong(f"your group has {n:g} images; count the images of class {cls} whose flags are True exactly for "
               f"{'+'.join(present) or 'no artifact'}.")
    if _close(acc, 100 * ref_acc, 1e-4) and ref_acc > 0.01:
        _wrong("give the accuracy as a fraction between 0 and 1, not a percentage.")
    if _close(acc, 1 - ref_acc, 1e-6) and not _close(ref_acc, 0.5, 1e-9):
        _wrong(f"{acc:.3f} is the error rate of the group; the accuracy is the share of correct predictions.")
    if _close(acc, float(correct.mean()), 1e-6) and not _close(ref_acc, float(correct.mean()), 1e-6):
        _wrong(f"{acc:.3f} is the accuracy over all images; take the mean of `preds == labels` inside the group only.")
    if _close(acc, float(correct[loose].mean()), 1e-6) and not _close(ref_acc, acc, 1e-6):
        _wrong("that accuracy is over every image of the class with these artifacts, whatever else it carries; "
               "use exactly the group's images.")
    if not _close(acc, ref_acc, 1e-6):
        _wrong(f"your accuracy is {acc:.3f}; it is the mean of `preds == labels` over the group's {ref_n} images.")
    overall = float(correct.mean())
    return _right(f"{ref_n} images, accuracy {ref_acc:.1%} (all images: {overall:.1%}). "
                  + ("The group is below the average: the shortcut misleads the model here."
                     if ref_acc < overall else "The group is not below the average for this model."))


def check_projection(answer: Any, a: Any, basis: Any, reference: Any) -> None:
    """P-ClArC's projection of one activation vector: ``a - Q Q^T (a - z)``.

    ``a``: (C,) activations, ``basis``: (C, K) orthonormal columns ``Q`` (the CAVs), ``reference``: (C,) ``z``.
    """
    if _pending("the projected activation vector", answer):
        return None
    av, z = _as_float(a, "a"), _as_float(reference, "reference")
    q = torch.as_tensor(basis).detach().cpu().double().numpy() if isinstance(basis, torch.Tensor) else np.asarray(basis, float)
    if q.ndim == 1:
        q = q[:, None]
    if q.ndim != 2 or q.shape[0] != len(av) or len(z) != len(av):
        raise ValueError(f"basis must be (C, K) and a, reference (C,) with the same C; got {q.shape}, {len(av)}, {len(z)}")
    if not np.allclose(q.T @ q, np.eye(q.shape[1]), atol=1e-4):
        raise ValueError("basis must have orthonormal columns (Projection.basis has them)")
    ans = _as_float(answer, "answer")
    if len(ans) != len(av):
        _wrong(f"the answer has {len(ans)} numbers; the projected vector has one per channel ({len(av)}).")
    removed = q @ (q.T @ (av - z))
    ref = av - removed
    tol = 1e-4 * max(1.0, float(np.abs(av).max()))
    if np.allclose(ans, ref, atol=tol):
        kept = float(np.linalg.norm(removed))
        return _right(f"the projection moved the vector by {kept:.3f} (norm of the removed part); along every CAV it now "
                      "has the clean mean's coordinate, Q^T a' = Q^T z, and every direction orthogonal to the CAVs is "
                      "unchanged.")
    if np.allclose(ans, av - q @ (q.T @ av), atol=tol):
        _wrong("you removed the whole component along the CAVs (a - Q Q^T a); P-ClArC moves it to the clean mean's "
               "value instead: subtract Q Q^T (a - z).")
    if np.allclose(ans, removed, atol=tol):
        _wrong("that is the removed part Q Q^T (a - z); the projected vector is a minus it.")
    if np.allclose(ans, av + removed, atol=tol):
        _wrong("the sign is flipped: a - Q Q^T (a - z), not a + ...")
    _wrong("compute a - Q @ (Q.T @ (a - z)), with Q the (C, K) basis and z the reference.")
    return None
