"""Checks for notebooks 04 (CRP and robustness) and 05 (measuring bias)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ._common import as_float, close, map_and_mask, pending, right, scalar, wrong

__all__ = ["check_balanced_rates", "check_relevance_mass", "check_insertion_effect", "check_aopc", "aopc_one", "check_welch_t",
           "masked_lrp", "check_rest_of_layer"]


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
                           artifact_params: dict | None = None, compare: dict | None = None, *,
                           clean: Any = None, reversed: Any = None, chance: float = 0.5) -> None:
    """Mean change (pp) of P(malignant) of *benign* images when a frame is pasted in.

    Recomputed with :func:`xaibias.analysis.bias_insertion` (artifact ``"frame"``, ``target_class=1``,
    the given ``seed`` and ``artifact_params``), so the student's number is checked against the
    library's counterfactuals. ``compare``: name -> effect of other models, printed beside it (numbers
    only, no verdict). ``clean`` / ``reversed``: test sets (with ``images`` and ``labels``) for the
    model's validity gate (:func:`xaibias.findings.model_gate`, ``chance`` the majority rate): a right
    number from a flagged model is confirmed as arithmetic, but its effect is not read.
    """
    from ..analysis import bias_insertion
    from ..models import predict
    from ..validity import model_gate

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
        gate = None
        if clean is not None:
            def correct(d: Any) -> np.ndarray:
                return (predict(model, d.images) == d.labels).numpy().astype(float)

            gate = model_gate("your model", correct(clean), chance=chance, quiet=True,
                              reversed=correct(reversed) if reversed is not None else None)
        if gate is not None and not gate:
            return right(f"{ref:+.1f} pp is the number, but the model is not interpretable ({gate.line()}): a model "
                          "that did not learn the lesion has no insertion effect worth reading.")
        extra = ""
        if compare:
            extra = " Beside it: " + ", ".join(f"{k} {float(v):+.1f} pp" for k, v in compare.items()) + "."
        passed = f" The model passed its gate ({gate.evidence})." if gate is not None else ""
        return right(f"pasting the frame moves P(malignant) of the benign images by {ref:+.1f} pp on average "
                      f"({len(benign)} images).{extra}{passed}")
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
            msg += (f", with black regions {black:.4f}, on this one image. Which replacement removes more evidence "
                    "in general is a question for many images and an interval (homework), not for one.")
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
        sign = ("positive: the first sample's mean is the larger" if ref > 0 else
                "negative: the first sample's mean is the smaller" if ref < 0 else "zero: the two means are equal")
        return right(f"t = {ref:.3f} (scipy agrees), {sign} ({len(x)} and {len(y)} values). Whether the "
                      "difference is more than chance is the test's p-value, not the sign.")
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


# --------------------------------------------------------------------------------------------------
# 04 · CRP by hand

def masked_lrp(model: torch.nn.Module, image: Any, layer: str, keep: Any, target: int,
               composite: str = "EpsilonPlusFlat") -> torch.Tensor:
    """LRP heatmap (H,W) of one image with the relevance at ``layer`` kept only in the channels ``keep``.

    Written with zennit alone, without zennit-crp: the composite's rules turn the backward pass
    into LRP (the gradient at every module output *is* its relevance), and a forward hook on
    ``layer`` multiplies the relevance arriving at its output by a 0/1 channel mask. ``keep=None``
    keeps every channel (ordinary LRP). Summed over colour channels.
    """
    from ..explain.attribution import make_composite

    modules = dict(model.named_modules())
    if layer not in modules or not layer:
        raise ValueError(f"layer {layer!r} is not a module of the model")
    x = torch.as_tensor(image, dtype=torch.float32).detach()
    if x.ndim != 3:
        raise ValueError(f"image must be one (3,H,W) image; got shape {tuple(x.shape)}")
    x = x[None].clone().requires_grad_(True)
    comp = make_composite(composite, "auto", model=model, input_shape=tuple(x.shape))

    def mask_relevance(_module, _inputs, out):
        if keep is None:
            return None
        mask = torch.zeros_like(out)
        mask[:, list(keep)] = 1.0
        out.register_hook(lambda grad: grad * mask)
        return None

    was_training = model.training
    model.eval()
    handle = modules[layer].register_forward_hook(mask_relevance)
    try:
        with comp.context(model) as hooked:
            out = hooked(x)
            start = torch.zeros_like(out)
            start[:, int(target)] = out[:, int(target)].detach()
            (rel,) = torch.autograd.grad(out, x, grad_outputs=start)
    finally:
        handle.remove()
        model.train(was_training)
    return rel[0].sum(0).detach()


def check_rest_of_layer(answer: Any, model: torch.nn.Module, image: Any, layer: str, concept: int, target: int,
                        composite: str = "EpsilonPlusFlat") -> None:
    """The conditional heatmap of every channel of ``layer`` except ``concept`` (CRP by hand).

    The reference is :func:`masked_lrp` (zennit with a hand-made channel mask, not zennit-crp). The
    feedback shows that the concept's heatmap and the rest-of-layer heatmap add up to the plain
    LRP heatmap: the rules are linear in the relevance they pass on, so conditioning on disjoint
    channel sets splits the explanation (in a network without a shortcut around ``layer``).
    """
    if pending("the heatmap of the rest of the layer", answer):
        return None
    c = int(concept)
    modules = dict(model.named_modules())
    if layer not in modules or not layer:
        raise ValueError(f"layer {layer!r} is not a module of the model")
    captured: dict[str, int] = {}

    def count_channels(_module, _inputs, out):
        captured["channels"] = int(out.shape[1])

    h = modules[layer].register_forward_hook(count_channels)
    was_training = model.training
    try:
        with torch.no_grad():
            n_classes = int(model.eval()(torch.as_tensor(image, dtype=torch.float32)[None]).shape[1])
    finally:
        h.remove()
        model.train(was_training)
    n_channels = captured["channels"]
    if not 0 <= c < n_channels:
        raise ValueError(f"concept must be a channel of {layer} (0..{n_channels - 1}); got {concept}")
    others = [i for i in range(n_channels) if i != c]
    ref = masked_lrp(model, image, layer, others, target, composite)
    a = torch.as_tensor(answer, dtype=torch.float64).detach().cpu()
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 3 and a.shape[0] == 3 and tuple(a.shape[1:]) == tuple(ref.shape):
        wrong("your map still has 3 colour channels; a heatmap sums the relevance over them (`.sum(0)`), as "
               "CondAttribution's `heatmap` does.")
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if tuple(a.shape) != tuple(ref.shape):
        wrong(f"your heatmap has shape {tuple(a.shape)}; one image's heatmap is (H, W) = {tuple(ref.shape)}: "
               "take `res.heatmap[0]`.")
    ref = ref.double()
    scale = float(ref.abs().max()) or 1.0
    tol = 1e-4 * scale

    def same(b: torch.Tensor) -> bool:
        return float((a - b.double()).abs().max()) <= tol

    if same(ref):
        own = masked_lrp(model, image, layer, [c], target, composite).double()
        plain = masked_lrp(model, image, layer, None, target, composite).double()
        gap = float((own + ref - plain).abs().max()) / max(float(plain.abs().max()), 1e-12)
        return right(f"the other {len(others)} channels' heatmap. Concept {c}'s heatmap plus yours gives the plain LRP "
                      f"heatmap to {gap:.1e} of its largest value: conditioning on disjoint channel sets splits the "
                      f"explanation without losing or adding relevance (no shortcut bypasses {layer}). On this image concept "
                      f"{c}'s heatmap sums to {float(own.sum()):.3f} and the plain heatmap to {float(plain.sum()):.3f} "
                      "(relevance for and against the class summed: either can be negative).")
    if same(masked_lrp(model, image, layer, [c], target, composite)):
        wrong(f"this is concept {c}'s own heatmap. The rest of the layer is every channel *except* {c}: list them in "
               "the condition for the layer.")
    if same(masked_lrp(model, image, layer, None, target, composite)):
        wrong("this is the plain LRP heatmap: the condition on the layer is missing (or lists every channel, c included).")
    for t in range(n_classes):
        if t != int(target) and same(masked_lrp(model, image, layer, others, t, composite)):
            wrong(f"you explained class {t}; start the backward pass at the class asked for, 'y': [{int(target)}].")
    if same(-ref):
        wrong("the sign is flipped.")
    wrong(f"your heatmap differs from the rest-of-layer heatmap by up to {float((a - ref).abs().max()):.2e} "
           f"(its largest |value| is {scale:.2e}). Condition on {{'y': [{int(target)}], layer: [every channel but {c}]}} "
           f"with the composite {composite!r}.")
    return None
