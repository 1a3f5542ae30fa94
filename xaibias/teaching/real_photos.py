"""Checks for notebook 08 (real ISIC photos): co-occurrence, the trap-set AUROCs, a pixel rule for dark corners.

Import as ``from xaibias.teaching import real_photos as teaching`` (the notebook calls
``teaching.check_...``). Each check prints ``Right: ...``, raises :class:`~xaibias.teaching.NotYet`
naming the likely mistake, or prints ``Not answered yet`` for ``...`` / ``None``. Reference values are
computed here from the raw flags, labels, scores and pixels, never copied from a notebook's output.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ._common import as_bool, as_float, close, pending, right, scalar, wrong

__all__ = ["check_cooccurrence", "check_agreement_auroc", "check_corner_rule"]


def _auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def check_cooccurrence(p_melanoma: Any, p_other: Any, flags: Any, labels: Any, artifact: str = "patches") -> None:
    """P(artifact | melanoma) and P(artifact | other): the share of each class's photos that carry it."""
    if pending(f"P({artifact} | melanoma) and P({artifact} | other)", p_melanoma, p_other):
        return None
    f, y = as_bool(flags, "flags"), as_float(labels, "labels")
    if len(f) != len(y) or not np.isin(y, (0, 1)).all() or y.min() == y.max():
        raise ValueError("flags and labels must have one entry per photo, labels 0/1 with both classes present")
    mel, oth = y == 1, y == 0
    ref_m, ref_o = float(f[mel].mean()), float(f[oth].mean())
    a, b = scalar(p_melanoma, "p_melanoma"), scalar(p_other, "p_other")
    if close(a, ref_o, 1e-9) and close(b, ref_m, 1e-9) and not close(ref_m, ref_o, 1e-9):
        wrong("the two are swapped: p_melanoma is the share of the *melanoma* photos that carry the artifact.")
    if f.any():
        inv_m = float(mel[f].mean())
        if close(a, inv_m, 1e-9) and not close(inv_m, ref_m, 1e-9):
            wrong(f"{a:.3f} is P(melanoma | {artifact}), the share of melanomas among the photos with the artifact. "
                  f"Condition on the class instead: among the melanoma photos, which share carries it?")
    if close(a, float(f[mel].sum()), 1e-9) and f[mel].sum() > 1:
        wrong("that is a count of photos; divide by the number of photos of the class.")
    if (close(a, 100 * ref_m, 1e-6) and ref_m > 0.01) or (close(b, 100 * ref_o, 1e-6) and ref_o > 0.01):
        wrong("give shares as fractions between 0 and 1, not percentages.")
    if close(a, float((f & mel).mean()), 1e-9) and not close(ref_m, float((f & mel).mean()), 1e-9):
        wrong(f"{a:.4f} is P({artifact} and melanoma), a share of *all* photos; divide by the melanoma photos only.")
    if not (close(a, ref_m, 1e-6) and close(b, ref_o, 1e-6)):
        wrong(f"your shares are {a:.4f} and {b:.4f}; take the mean of the flags over the melanoma photos and over the "
              "other photos.")
    lean = ("melanoma" if ref_m > ref_o else "the other lesions") if not close(ref_m, ref_o, 1e-12) else "neither class"
    # no ratio of the two shares: with a handful of photos in one class it is as uncertain as that count
    return right(f"P({artifact} | melanoma) = {ref_m:.3f} ({int(f[mel].sum())} of {int(mel.sum())}), P({artifact} | other) "
                 f"= {ref_o:.3f} ({int(f[oth].sum())} of {int(oth.sum())}): in these photos the artifact leans to {lean} "
                 f"(P(melanoma) - P(other) = {ref_m - ref_o:+.3f}, as section 2 prints it). A model can learn that tie as a shortcut; whether "
                 "the difference is more than chance at these counts is what its compare line (section 2) says.")


def check_agreement_auroc(auc_agree: Any, auc_disagree: Any, scores: Any, labels: Any, flags: Any,
                          gate: Any = None) -> None:
    """AUROC of ``scores`` among the photos where the artifact agrees with the training tie, and where it does not.

    Agree: melanoma with the artifact, or another lesion without it (the tie of the trap training set,
    artifact -> melanoma). ``gate``: the model's validity gate; a flagged model is not graded.
    """
    if pending("the AUROCs where the artifact agrees and where it disagrees", auc_agree, auc_disagree):
        return None
    if gate is not None and not bool(gate):
        print("Not graded: the model is flagged by its validity gate "
              f"({gate.line() if hasattr(gate, 'line') else gate}); AUROCs of a collapsed model say nothing.")
        return None
    s, y, f = as_float(scores, "scores"), as_float(labels, "labels"), as_bool(flags, "flags")
    if not len(s) == len(y) == len(f):
        raise ValueError(f"scores ({len(s)}), labels ({len(y)}) and flags ({len(f)}) must have one entry per photo")
    agree = f == (y == 1)
    ref_a, ref_d = _auroc(y[agree], s[agree]), _auroc(y[~agree], s[~agree])
    a, d = scalar(auc_agree, "auc_agree"), scalar(auc_disagree, "auc_disagree")
    if close(a, ref_d, 1e-9) and close(d, ref_a, 1e-9) and not close(ref_a, ref_d, 1e-9):
        wrong("agree and disagree are swapped: the artifact *agrees* when it says what it said in training "
              "(melanoma with dark corners, other lesions without).")
    present, absent = f, ~f
    if len(np.unique(y[present])) == 2 and len(np.unique(y[absent])) == 2:
        by_flag = (_auroc(y[present], s[present]), _auroc(y[absent], s[absent]))
        if (close(a, by_flag[0], 1e-9) and close(d, by_flag[1], 1e-9)) or (close(a, by_flag[1], 1e-9)
                                                                             and close(d, by_flag[0], 1e-9)):
            wrong("you split the photos by whether they *have* the artifact; agreement depends on the label too: "
                  "agree = (flag == (label == 1)).")
    overall = _auroc(y, s)
    if close(a, overall, 1e-9) or close(d, overall, 1e-9):
        wrong(f"{overall:.3f} is the AUROC over all photos; compute it separately on the two parts.")
    for val, ref, part in ((a, ref_a, "agreeing"), (d, ref_d, "disagreeing")):
        mask = agree if part == "agreeing" else ~agree
        acc = float(((s[mask] >= 0.5) == (y[mask] == 1)).mean())
        if close(val, acc, 1e-9) and not close(acc, ref, 1e-9):
            wrong(f"{val:.3f} is the accuracy on the {part} photos; the task asks for the AUROC "
                  "(`roc_auc_score(labels, scores)` on that part).")
        if close(val, 1 - ref, 1e-9) and not close(ref, 0.5, 1e-9):
            wrong(f"your AUROC on the {part} photos is 1 - the right one: roc_auc_score takes (labels, scores), in "
                  "that order, and the score must be P(melanoma).")
    if not (close(a, ref_a, 1e-6) and close(d, ref_d, 1e-6)):
        wrong(f"your AUROCs are {a:.3f} and {d:.3f}; build agree = (flags == (labels == 1)) and compute "
              "roc_auc_score on each part.")
    return right(f"AUROC {ref_a:.3f} where the artifact agrees ({int(agree.sum())} photos) and {ref_d:.3f} where it "
                 f"disagrees ({int((~agree).sum())} photos). A model that ranks by the artifact does well on the first "
                 "part and badly on the second; the interval of the difference (the gap, printed above the exercise) "
                 "says whether this model does.")


def _corners(x: torch.Tensor, k: int) -> torch.Tensor:
    return torch.stack([x[..., :k, :k], x[..., :k, -k:], x[..., -k:, :k], x[..., -k:, -k:]])


def check_corner_rule(corner_scores: Any, auc_corner: Any, images: Any, flags: Any, fraction: float = 0.125) -> None:
    """Per-photo darkness of the four corner squares (side ``fraction`` of the image) and its AUROC for the flags."""
    if pending("the corner darkness of every photo and its AUROC", corner_scores, auc_corner):
        return None
    x = torch.as_tensor(images).float()
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"images must be (N,3,H,W); got shape {tuple(x.shape)}")
    f = as_bool(flags, "flags")
    k = max(1, int(round(x.shape[-1] * fraction)))
    ref = (1.0 - _corners(x, k).mean(dim=(0, 2, 3, 4))).double().numpy()
    s = as_float(corner_scores, "corner_scores")
    if len(s) != len(ref):
        wrong(f"corner_scores needs one number per photo ({len(ref)}); got {len(s)}.")
    if np.allclose(s, 1.0 - ref, atol=1e-5) and not np.allclose(ref, 0.5, atol=1e-5):
        wrong("those are the corners' brightness; the rule scores darkness, 1 - brightness (dark corners score high).")
    if np.allclose(s, (1.0 - x.mean(dim=(1, 2, 3))).double().numpy(), atol=1e-5):
        wrong("that is the darkness of the whole photo; average only the four corner squares.")
    one = (1.0 - x[..., :k, :k].mean(dim=(1, 2, 3))).double().numpy()
    if np.allclose(s, one, atol=1e-5) and not np.allclose(one, ref, atol=1e-5):
        wrong("that is the top-left corner alone; average all four corner squares.")
    if not np.allclose(s, ref, atol=1e-4):
        wrong(f"your scores differ from the mean of 1 - pixel over the four {k} x {k} px corner squares (side "
              f"{fraction:g} of the image) by up to {float(np.abs(s - ref).max()):.3f}.")
    ref_auc = _auroc(f.astype(int), ref)
    a = scalar(auc_corner, "auc_corner")
    if close(a, 1 - ref_auc, 1e-6) and not close(ref_auc, 0.5, 1e-9):
        wrong("your AUROC is 1 - the right one: roc_auc_score takes (flags, scores), in that order.")
    if not close(a, ref_auc, 1e-6):
        wrong(f"your AUROC is {a:.3f}; compute roc_auc_score(flags, corner_scores).")
    return right(f"the corner rule finds the annotated dark corners with AUROC {ref_auc:.3f} (a random score: 0.5). "
                 "One line of pixel arithmetic is the baseline a concept vector has to beat before we credit the "
                 "network with *knowing* the artifact.")
