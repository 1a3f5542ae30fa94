"""Checks for notebooks 00 (data and bias) and 01 (LRP rules)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ._common import as_bool, as_float, close, pending, right, scalar, wrong

__all__ = ["check_rule_accuracy", "check_group_accuracy", "check_reversed_drop", "check_gamma_rule", "check_bias_absorbed", "check_stride2_share"]


# --------------------------------------------------------------------------------------------------
# 00 · data and bias

def check_rule_accuracy(answer: Any, flags: Any, labels: Any) -> None:
    """Accuracy of the rule "frame -> malignant" (label 1) on a data set.

    ``flags``: bool per image (has a frame); ``labels``: 0/1 per image. The reference is the share
    of images where ``flag == (label == 1)``.
    """
    if pending("the accuracy of the rule 'frame -> malignant'", answer):
        return None
    f, y = as_bool(flags, "flags"), as_float(labels, "labels")
    if len(f) != len(y):
        raise ValueError(f"flags ({len(f)}) and labels ({len(y)}) must have the same length")
    ref = float((f == (y == 1)).mean())
    a = scalar(answer, "answer")
    if close(a, ref, 1e-6):
        return right(f"the frame rule is right on {ref:.1%} of these images. "
                      + ("Below 50 %: on this set the frame points the wrong way, which is what a model that "
                         "learned the rule will suffer from." if ref < 0.5 else
                         "Above 50 %: here the frame still carries the training set's information."))
    if close(a, 1 - ref, 1e-6):
        wrong(f"{a:.3f} is the accuracy of the opposite rule ('frame -> benign'). Compare the flag with "
               "`label == 1` (malignant), not with `label == 0`.")
    if close(a, 100 * ref, 1e-4):
        wrong(f"{a:.1f} looks like a percentage; give the accuracy as a fraction between 0 and 1.")
    if not 0 <= a <= 1:
        wrong(f"an accuracy lies between 0 and 1; got {a:.3f}.")
    wrong(f"your accuracy is {a:.3f}. Count the images where the rule's call (frame -> malignant, no frame -> "
           "benign) equals the true label, and divide by the number of images of *this* set.")
    return None


def check_group_accuracy(acc_framed: Any, acc_unframed: Any, correct: Any, flags: Any, gate: Any = None) -> None:
    """Accuracy on the framed and on the unframed images of one test set.

    ``correct``: 1.0/0.0 per image (was the model right); ``flags``: bool per image (has a frame);
    ``gate``: the model's validity gate (:func:`xaibias.findings.model_gate`), optional. With a right
    answer, the two groups are compared through :func:`xaibias.findings.compare` (unpaired: different
    images), so the sentence about which group loses comes from an interval, and only when the gate
    passed.
    """
    from ..comparison import compare

    if pending("the accuracies on framed and on unframed images", acc_framed, acc_unframed):
        return None
    c, f = as_float(correct, "correct"), as_bool(flags, "flags")
    if len(c) != len(f):
        raise ValueError(f"correct ({len(c)}) and flags ({len(f)}) must have the same length")
    if f.all() or not f.any():
        raise ValueError("flags must mark some images and leave others unmarked")
    ref_f, ref_u = float(c[f].mean()), float(c[~f].mean())
    a_f, a_u = scalar(acc_framed, "acc_framed"), scalar(acc_unframed, "acc_unframed")
    if close(a_f, ref_u, 1e-6) and close(a_u, ref_f, 1e-6) and not close(ref_f, ref_u, 1e-6):
        wrong("the two numbers are swapped: `acc_framed` should be the accuracy on the images *with* a frame.")
    if max(a_f, a_u) > 1:
        wrong("give the accuracies as fractions between 0 and 1, not percentages.")
    if close(a_f, float(c.mean()), 1e-6) or close(a_u, float(c.mean()), 1e-6):
        wrong(f"one of your numbers ({a_f:.3f} / {a_u:.3f}) is the accuracy over all images; select the "
               "framed (`flags`) or unframed (`~flags`) images first.")
    if not (close(a_f, ref_f, 1e-6) and close(a_u, ref_u, 1e-6)):
        wrong(f"your accuracies are {a_f:.3f} (framed) and {a_u:.3f} (unframed). Take the mean of the per-image "
               "`correct` values over the images with a frame, and over those without.")
    msg = f"framed {ref_f:.1%}, unframed {ref_u:.1%} ({int(f.sum())} and {int((~f).sum())} images)."
    if gate is not None and not gate:
        return right(msg + f" Your arithmetic is right, but the model is not interpretable ({gate.line()}), so "
                           "the two groups say nothing about what it learned.")
    if f.sum() < 2 or (~f).sum() < 2:
        return right(msg + " One group has fewer than two images: too few to compare the groups.")
    cmp = compare(c[f], c[~f], name="accuracy, framed minus unframed images", a_label="framed", b_label="unframed",
                  quiet=True)
    return right(msg + " " + cmp.pick(
        "The unframed images lose more here; look at how many of each there are.",
        "The framed images lose more: on them the frame now points to the wrong class.",
        "The two groups are not distinguishable at this size.") + f" ({cmp.sentence()})")


def _correct(model: Any, data: Any) -> np.ndarray:
    """Per-image correctness (1.0 / 0.0) of ``model`` on a dataset with ``images`` and ``labels``."""
    from ..models import predict

    return (predict(model, data.images) == data.labels).numpy().astype(float)


def check_reversed_drop(answer: Any, acc_same: Any, acc_reversed: Any, compare_to: Any = None,
                        prediction: str | None = None, *, model: Any = None, same: Any = None,
                        reversed: Any = None, clean: Any = None, chance: float = 0.5) -> None:
    """Accuracy drop when the co-occurrence is reversed: ``acc_same - acc_reversed``.

    Parameters
    ----------
    answer, acc_same, acc_reversed : float
        The student's drop and the two accuracies it comes from.
    compare_to : Comparison, Estimate or (value, low, high), optional
        Another drop with its interval (the notebook's strong-bias model), compared with this one
        through :func:`xaibias.findings.compare`. A plain number is printed beside it, without a verdict.
    prediction : {"smaller", "same", "larger"}, optional
        The student's prediction before measuring (a wrong prediction is not a wrong answer: the check
        says whether the comparison bore it out).
    model, same, reversed : optional
        The student's model and its two test sets (datasets with ``images`` and ``labels``). Given,
        the check recomputes both accuracies from the model's predictions and gives the drop an
        interval (bootstrap over images, unpaired: the sets hold different images).
    clean : dataset, optional
        A test set without the artifact-label tie: the model's validity gate
        (:func:`xaibias.findings.model_gate`). A model whose clean accuracy reaches ``chance`` has
        learned nothing to lose; its drop is not compared with anything.
    """
    from ..comparison import compare
    from ..validity import model_gate

    if pending("the accuracy drop", answer, acc_same, acc_reversed):
        return None
    if model is not None and pending("the model and its test sets", model, same, reversed):
        return None
    s, r = scalar(acc_same, "acc_same"), scalar(acc_reversed, "acc_reversed")
    ref = s - r
    a = scalar(answer, "answer")
    if not close(a, ref, 1e-6):
        if close(a, -ref, 1e-6) and abs(ref) > 1e-9:
            wrong(f"your drop is {a:+.3f}, the accuracies are {s:.3f} (same distribution) and {r:.3f} (reversed): "
                   "subtract in the other order, same minus reversed, so that a loss is positive.")
        if close(a, 100 * ref, 1e-4):
            wrong(f"{a:.1f} looks like percentage points; give the drop as a fraction (accuracies are fractions).")
        wrong(f"your drop is {a:+.3f} but the two accuracies differ by {ref:+.3f} "
               f"({s:.3f} - {r:.3f}); did you take both from the same model?")
    drop = None
    gate = None
    if model is not None:
        c_same, c_rev = _correct(model, same), _correct(model, reversed)
        for name, mine, theirs in (("acc_same", s, c_same.mean()), ("acc_reversed", r, c_rev.mean())):
            if not close(mine, float(theirs), 1e-6):
                wrong(f"`{name}` is {mine:.4f}, but the model's accuracy on that test set is {float(theirs):.4f}: "
                       "take both accuracies from this model on its own two test sets.")
        drop = compare(c_same, c_rev, name="your model: accuracy, same distribution minus reversed",
                       a_label="same", b_label="reversed", quiet=True)
        if clean is not None:
            gate = model_gate("your model", _correct(model, clean), chance=chance, quiet=True)
    msg = (f"the drop is {ref:+.3f}: accuracy {s:.3f} on the same distribution, {r:.3f} with the co-occurrence "
           f"reversed (chance {chance:.1f}).")
    if drop is not None:
        # the interval alone: its point value is the same drop, and a second rounding could print it 0.001 apart
        msg += f" Its 95 % interval (bootstrap over images): [{drop.low:+.3f}, {drop.high:+.3f}]."
    if gate is not None and not gate:
        return right(msg + f" But the model is not interpretable ({gate.line()}): a model that learned nothing "
                           "has nothing to lose, so its drop is not compared with the other model's.")
    if gate is not None:
        msg += f" The model passed its gate ({gate.evidence})."
    if compare_to is None or compare_to is Ellipsis:
        return right(msg)
    if prediction is not None and prediction is not Ellipsis:
        p = str(prediction).strip().lower()
        if p not in ("smaller", "same", "larger"):
            raise ValueError(f"prediction must be 'smaller', 'same' or 'larger'; got {prediction!r}")
    else:
        p = None
    other = compare_to
    if not hasattr(other, "low") and not isinstance(other, tuple):
        msg += (f" The other model's drop was {scalar(other, 'compare_to'):+.3f}; without intervals on both drops "
                "the two are not compared.")
        return right(msg)
    if drop is None:
        return right(msg + " Pass model=, same= and reversed= to the check to compare the two drops with an interval.")
    cmp = compare(drop, other, name="drop of your model minus the other model's", a_label="your drop",
                  b_label="the other drop", quiet=True)
    moved = cmp.pick("larger", "smaller", "same")
    msg += " " + cmp.pick("Your model's drop is clearly larger than the other model's.",
                          "Your model's drop is clearly smaller than the other model's.",
                          "The two drops are not distinguishable at this size.") + f" ({cmp.sentence()})"
    if p is not None:
        msg += (" Your prediction held." if p == moved else
                f" You predicted '{p}': worth a sentence on why the measurement came out otherwise.")
    return right(msg)


# --------------------------------------------------------------------------------------------------
# 01 · LRP rules

def _toy_lrp(net: torch.nn.Module, x: torch.Tensor, rules: Any, target: int) -> torch.Tensor:
    from ..explain import reference as ref

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
    from ..explain import reference as ref

    if pending("the input relevance of the gamma rule", answer):
        return None
    x = torch.as_tensor(x, dtype=torch.float64)
    mine = _toy_lrp(net, x, ref.Gamma(gamma), target)
    theirs = _zennit_gamma(net, x, gamma, target)
    if not torch.allclose(mine, theirs, atol=1e-8):  # pragma: no cover - guards the reference itself
        raise RuntimeError(f"reference and zennit disagree on the gamma rule: {mine.tolist()} vs {theirs.tolist()}")
    a = torch.as_tensor(answer, dtype=torch.float64).detach()
    if a.numel() != mine.numel():
        wrong(f"your relevance has {a.numel()} values; the input has {mine.numel()} (shape {tuple(mine.shape)}).")
    a = a.reshape(mine.shape)
    if torch.allclose(a, mine, atol=1e-6):
        r0 = _toy_lrp(net, x, "0", target)
        return right(f"gamma = {gamma} gives {np.round(mine.numpy(), 4).tolist()} in both xaibias.explain.reference "
                      f"and zennit (LRP-0: {np.round(r0.numpy(), 4).tolist()}). Boosting the positive weights favours "
                      "positive contributions, so the counter-evidence (the negative relevance) shrinks.")
    if torch.allclose(a, _toy_lrp(net, x, "0", target), atol=1e-6):
        wrong("this is the LRP-0 relevance. The gamma rule uses the weights w + gamma * w+ (only the positive "
               "weights grow) in both the forward step z and the backward step c.")
    boosted_negative = copy.deepcopy(net).double()
    with torch.no_grad():
        for m in boosted_negative.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.copy_(m.weight + gamma * m.weight.clamp(max=0))
    if torch.allclose(a, _toy_lrp(boosted_negative, x, "0", target), atol=1e-6):
        wrong("you boosted the negative weights (w + gamma * w-); gamma favours the positive ones: w + gamma * w+.")
    if not torch.allclose(a.sum(), mine.sum(), atol=1e-6):
        wrong(f"your relevance sums to {float(a.sum()):.4f}, the gamma rule's to {float(mine.sum()):.4f} (without "
               "biases it keeps the logit). Check that the same modified weights appear in z and in c in both layers.")
    wrong("the total is right but the split over the inputs is not; check the last step, R_in = a * c, in layer 1.")
    return None


def check_bias_absorbed(answer: Any, net: torch.nn.Module, x: torch.Tensor, bias: Sequence[float],
                        target: int = 0) -> None:
    """Share of the logit that LRP-0 does *not* pass to the input once the last layer has ``bias``.

    The reference copies ``net`` (a Linear-ReLU-Linear net without biases), gives its last linear
    layer the bias, runs the reference LRP-0 and returns ``1 - sum(R_input) / logit``.
    """
    from ..explain import reference as ref

    if pending("the share of the logit absorbed by the bias", answer):
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
    a = scalar(answer, "answer")
    if close(a, want, 1e-6):
        return right(f"the bias takes {want:.1%} of the logit {logit:.3f}; the input keeps {float(res.input.sum()):.3f}. "
                      "A bias is an input that is always on; LRP-0 gives it its share b_k / z_k, and that share "
                      "never reaches the pixels.")
    if close(a, -want, 1e-6):
        wrong("the sign is flipped: compute 1 - (input relevance) / logit, the share that did *not* arrive.")
    if close(a, kept, 1e-6):
        wrong(f"{a:.3f} is the share the input *keeps*; the exercise asks for the share the bias absorbs (1 minus it).")
    if close(a, 0.0, 1e-9):
        wrong("zero: the bias is missing from your forward step. With a bias, z_k = sum_j a_j w_jk + b_k, and "
               "R_k is shared in proportion to a_j w_jk / z_k, so b_k / z_k of it stays behind.")
    wrong(f"your share is {a:.4f}. Rebuild the net with the bias {b.tolist()} in its last layer, run LRP-0 and "
           "compare the sum of the input relevance with that net's logit.")
    return None


def check_stride2_share(answer: Any, relevance: Any) -> None:
    """Share of one map's energy at the period-2 frequencies (0, W/2), (H/2, 0), (H/2, W/2), mean removed."""
    from ..analysis import stride_grid

    if pending("the stride-2 energy share", answer):
        return None
    R = torch.as_tensor(relevance, dtype=torch.float64).detach()
    if R.ndim != 2:
        raise ValueError(f"relevance must be one (H,W) map; got shape {tuple(R.shape)}")
    ref = float(stride_grid.stride2_share(R[None])[0])
    a = scalar(answer, "answer")
    if close(a, ref, 1e-6 + 1e-4 * ref):
        return right(f"the map has {ref:.4f} of its energy at the three period-2 frequencies, "
                      f"{ref / stride_grid.structureless_share(R.shape[-1]):.1f} times a map without structure.")
    H, W = R.shape
    P_raw = torch.fft.fft2(R).abs() ** 2
    at_raw = P_raw[0, W // 2] + P_raw[H // 2, 0] + P_raw[H // 2, W // 2]
    if close(a, float(at_raw / P_raw.sum()), 1e-6 + 1e-4 * abs(a)):
        wrong("the mean is still in: subtract R.mean() before the FFT, or the zero frequency holds most of the energy.")
    P = torch.fft.fft2(R - R.mean()).abs() ** 2
    if close(a, float(P[H // 2, W // 2] / P.sum()), 1e-6 + 1e-4 * abs(a)):
        wrong("you used only the (H/2, W/2) frequency; a period-2 pattern along rows or columns alone sits at "
               "(0, W/2) and (H/2, 0): add all three.")
    if close(a, float(P[H // 2, W // 2] + P[0, W // 2] + P[H // 2, 0]), 1e-6 + 1e-4 * abs(a)):
        wrong("that is the energy at the three frequencies, not its share: divide by the total energy of the spectrum.")
    wrong(f"your share is {a:.5f}. Power spectrum: |fft2(R - mean)|^2; share = (P[0, W/2] + P[H/2, 0] + P[H/2, W/2]) "
           "/ P.sum().")
    return None
