"""Checks for notebooks 06 (reducing bias) and 07 (reveal to revise)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from ._common import as_bool, as_float, close, pending, right, scalar, wrong

__all__ = ["check_resample_size", "check_effect_ratio", "check_gap_by_method", "check_one_group", "check_projection",
           "check_cav_direction", "check_tcav"]


# --------------------------------------------------------------------------------------------------
# 06 · reducing bias

def check_resample_size(answer: Any, flags: Any, labels: Any) -> None:
    """Images kept by cell resampling: in each artifact group (with / without), twice the rarer class's count."""
    if pending("the number of images resampling keeps", answer):
        return None
    f, y = as_bool(flags, "flags"), as_float(labels, "labels")
    counts = pd.crosstab(f, y)
    ref = int(2 * counts.min(axis=1).sum())
    a = scalar(answer, "answer")
    if a == ref:
        return right(f"{ref} of {len(y)} images ({ref / len(y):.0%}): in each group the rarer class sets the size, "
                      "so a strong bias leaves little data.")
    if a == ref / 2:
        wrong("that is one class per group; each group keeps as many malignant as benign images: twice the rarer count.")
    if a == 2 * int(counts.min().min()) * len(counts):
        wrong("you used the smallest cell for both groups; each group keeps twice its *own* rarer class.")
    wrong(f"your count is {a:g}. Cross-tabulate frame x class, take the smaller count in each row, double it, add.")
    return None


def _correction_gate(model: Any, tests: Any, artifact: str) -> Any:
    """The collapse gate of a corrected model on ``tests`` (``clean``, ``same``, ``reversed``), quietly."""
    from ..models import predict
    from ..validity import artifact_rule_accuracy, model_gate

    need = ("clean", "same", "reversed")
    if not hasattr(tests, "get") or any(k not in tests for k in need):
        raise ValueError(f"tests must be a dict with the test sets {need}; got {type(tests).__name__}")
    correct = {k: (predict(model, tests[k].images).cpu() == tests[k].labels.cpu()).double().numpy() for k in need}
    rule = {k: artifact_rule_accuracy(tests[k].artifacts[artifact].to_numpy(bool), tests[k].labels, positive=1)
            for k in need}
    return model_gate("your model", correct["clean"], reversed=correct["reversed"], same=correct["same"], rule=rule,
                      quiet=True)


def check_effect_ratio(answer: Any, effect: Any, baseline: Any, model: Any = None, tests: Any = None,
                       artifact: str = "frame") -> None:
    """Insertion effect of a mitigated model as a share of the baseline's: ``effect / baseline``.

    With ``model`` and ``tests`` (``{"clean", "same", "reversed"}`` test sets) the model is gated first
    (:func:`xaibias.findings.model_gate` with the reversed set and the ``artifact`` rule): a collapsed
    model's ratio is not graded, since its effect says nothing about a correction.
    """
    if pending("the effect ratio", answer, effect, baseline) or (model is not None and pending("the model", model)):
        return None
    if model is not None:
        if tests is None:
            raise ValueError("check_effect_ratio: pass tests= (the clean, same and reversed test sets) with model=")
        gate = _correction_gate(model, tests, artifact)
        if not gate:
            print(f"Not graded: {gate.line()}. A model that learned no more than the {artifact} rule (or nothing) "
                  f"also reacts little to a pasted {artifact}: its ratio is not the effect of a correction. Look at its "
                  "clean and reversed accuracy: what did the penalty do to the lesion it had learned?")
            return None
    e, b = scalar(effect, "effect"), scalar(baseline, "baseline")
    if b == 0:
        raise ValueError("the baseline effect is 0: a ratio to it is undefined")
    ref = e / b
    a = scalar(answer, "answer")
    if close(a, ref, 1e-6):
        return right(f"the mitigated model keeps {ref:.0%} of the baseline's frame effect ({e:+.1f} vs {b:+.1f} pp) at "
                      "this seed. That is one point value: whether it halves the effect is read from the upper end of "
                      "an interval over images (as in the table above), not from this number alone.")
    if e != 0 and close(a, b / e, 1e-6):
        wrong("the ratio is upside down: mitigated effect divided by the baseline's.")
    if close(a, 1 - ref, 1e-6):
        wrong(f"{a:.3f} is the share removed; the exercise asks for the share kept, effect / baseline.")
    if close(a, 100 * ref, 1e-4):
        wrong("give the ratio as a fraction, not a percentage.")
    wrong(f"your ratio is {a:.3f}; effect / baseline = {e:.2f} / {b:.2f}.")
    return None


def check_gap_by_method(answer: Any, report: pd.DataFrame, gates: Any = None) -> None:
    """Mean over seeds of ``acc_same - acc_reversed`` per method, as a Series indexed by method.

    ``gates`` (``{method: Gate}``, optional): flagged methods are named as such in the feedback.
    """
    if pending("the same-minus-reversed accuracy gap per method", answer):
        return None
    need = {"method", "acc_same", "acc_reversed"}
    if not need <= set(report.columns):
        raise ValueError(f"report must have the columns {sorted(need)}; got {sorted(report.columns)}")
    ref = (report["acc_same"] - report["acc_reversed"]).groupby(report["method"], sort=False).mean()
    if not isinstance(answer, pd.Series):
        wrong(f"give a pandas Series indexed by method (got {type(answer).__name__}); groupby('method').mean() gives one.")
    missing = set(ref.index) - set(answer.index)
    if missing:
        wrong(f"methods missing from your Series: {sorted(missing)}.")
    a = answer.reindex(ref.index).astype(float)
    if np.allclose(a, ref, atol=1e-6):
        sd = (report["acc_same"] - report["acc_reversed"]).groupby(report["method"], sort=False).std()
        flagged = [k for k in ref.index if gates is not None and k in gates and not gates[k]]
        return right("gaps (mean ± sd over seeds) " + ", ".join(
            f"{k} {v:+.3f} ± {sd[k]:.3f}" + (" (flagged by the gate: not interpretable)" if k in flagged else "")
            for k, v in ref.items())
            + ". A model that ignores the frame loses nothing when the correlation is reversed, so its gap is near 0; "
              "a collapsed model can have a small gap too, which is why the gate comes first. Before ranking two gaps, "
              "compare their difference with the spread over seeds.")
    if np.allclose(a, -ref, atol=1e-6):
        wrong("the signs are flipped: same minus reversed, so that a model hurt by the reversal has a positive gap.")
    if np.allclose(a, 100 * ref, atol=1e-4):
        wrong("give the gaps as fractions (the accuracies are fractions), not points.")
    first = report.groupby("method", sort=False).first()
    if np.allclose(a, (first["acc_same"] - first["acc_reversed"]).reindex(ref.index), atol=1e-6):
        wrong("these are the first seed's gaps; average over all seeds.")
    wrong("compute (report.acc_same - report.acc_reversed) per row, then the mean per method.")
    return None


# --------------------------------------------------------------------------------------------------
# 07 · reveal to revise

def check_one_group(n_group: Any, acc_group: Any, labels: Any, preds: Any, flags_table: pd.DataFrame, cls: int,
                    present: Sequence[str]) -> None:
    """Size and accuracy of one group: true class ``cls`` with exactly the artifacts ``present`` (no others).

    ``flags_table``: one bool column per artifact; ``present``: the artifacts the group carries.
    """
    if pending("the group's size and accuracy", n_group, acc_group):
        return None
    if not isinstance(flags_table, pd.DataFrame):
        raise ValueError(f"flags_table must be a DataFrame of bool artifact columns; got {type(flags_table).__name__}")
    unknown = [a for a in present if a not in flags_table.columns]
    if unknown:
        raise ValueError(f"present names artifacts {unknown} that flags_table lacks; it has {list(flags_table.columns)}")
    y, p = as_float(labels, "labels"), as_float(preds, "preds")
    flags = {a: as_bool(flags_table[a], f"flags_table[{a!r}]") for a in flags_table.columns}
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
    n, acc = scalar(n_group, "n_group"), scalar(acc_group, "acc_group")
    loose = (y == cls) & np.all([flags[a] for a in present], axis=0) if present else (y == cls)
    if n == int(loose.sum()) and n != ref_n:
        wrong(f"{n:g} images is every class-{cls} image that carries {'+'.join(present) or 'anything'}, whatever else "
               "it carries; the group has exactly this pattern, so the other artifacts must be absent (`~flags`).")
    if n == int(pattern.sum()) and n != ref_n:
        wrong(f"{n:g} images is the pattern in both classes; a group is one class x one pattern: also select "
               f"`labels == {cls}`.")
    if n != ref_n:
        wrong(f"your group has {n:g} images; count the images of class {cls} whose flags are True exactly for "
               f"{'+'.join(present) or 'no artifact'}.")
    if close(acc, 100 * ref_acc, 1e-4) and ref_acc > 0.01:
        wrong("give the accuracy as a fraction between 0 and 1, not a percentage.")
    if close(acc, 1 - ref_acc, 1e-6) and not close(ref_acc, 0.5, 1e-9):
        wrong(f"{acc:.3f} is the error rate of the group; the accuracy is the share of correct predictions.")
    if close(acc, float(correct.mean()), 1e-6) and not close(ref_acc, float(correct.mean()), 1e-6):
        wrong(f"{acc:.3f} is the accuracy over all images; take the mean of `preds == labels` inside the group only.")
    if close(acc, float(correct[loose].mean()), 1e-6) and not close(ref_acc, acc, 1e-6):
        wrong("that accuracy is over every image of the class with these artifacts, whatever else it carries; "
               "use exactly the group's images.")
    if not close(acc, ref_acc, 1e-6):
        wrong(f"your accuracy is {acc:.3f}; it is the mean of `preds == labels` over the group's {ref_n} images.")
    overall = float(correct.mean())
    half = 2 * float(np.sqrt(max(ref_acc * (1 - ref_acc), 1e-12) / ref_n))
    return right(f"{ref_n} images, accuracy {ref_acc:.1%} (all images: {overall:.1%}). With {ref_n} images the group's "
                  f"accuracy is uncertain by about ±{half:.0%} (two binomial standard errors), so read the gap to the "
                  "average only where it is larger than that; a group the shortcut misleads is where a gap is expected.")


def check_projection(answer: Any, a: Any, basis: Any, reference: Any) -> None:
    """P-ClArC's projection of one activation vector: ``a - Q Q^T (a - z)``.

    ``a``: (C,) activations, ``basis``: (C, K) orthonormal columns ``Q`` (the CAVs), ``reference``: (C,) ``z``.
    """
    if pending("the projected activation vector", answer):
        return None
    av, z = as_float(a, "a"), as_float(reference, "reference")
    q = torch.as_tensor(basis).detach().cpu().double().numpy() if isinstance(basis, torch.Tensor) else np.asarray(basis, float)
    if q.ndim == 1:
        q = q[:, None]
    if q.ndim != 2 or q.shape[0] != len(av) or len(z) != len(av):
        raise ValueError(f"basis must be (C, K) and a, reference (C,) with the same C; got {q.shape}, {len(av)}, {len(z)}")
    if not np.allclose(q.T @ q, np.eye(q.shape[1]), atol=1e-4):
        raise ValueError("basis must have orthonormal columns (Projection.basis has them)")
    ans = as_float(answer, "answer")
    if len(ans) != len(av):
        wrong(f"the answer has {len(ans)} numbers; the projected vector has one per channel ({len(av)}).")
    removed = q @ (q.T @ (av - z))
    ref = av - removed
    tol = 1e-4 * max(1.0, float(np.abs(av).max()))
    if np.allclose(ans, ref, atol=tol):
        kept = float(np.linalg.norm(removed))
        return right(f"the projection moved the vector by {kept:.3f} (norm of the removed part); along every CAV it now "
                      "has the clean mean's coordinate, Q^T a' = Q^T z, and every direction orthogonal to the CAVs is "
                      "unchanged.")
    if np.allclose(ans, av - q @ (q.T @ av), atol=tol):
        wrong("you removed the whole component along the CAVs (a - Q Q^T a); P-ClArC moves it to the clean mean's "
               "value instead: subtract Q Q^T (a - z).")
    if np.allclose(ans, removed, atol=tol):
        wrong("that is the removed part Q Q^T (a - z); the projected vector is a minus it.")
    if np.allclose(ans, av + removed, atol=tol):
        wrong("the sign is flipped: a - Q Q^T (a - z), not a + ...")
    wrong("compute a - Q @ (Q.T @ (a - z)), with Q the (C, K) basis and z the reference.")
    return None


def check_cav_direction(answer: Any, acts: Any, flags: Any, labels: Any, gate: Any = None) -> None:
    """A within-class signal CAV by hand: the unit difference of the class-centred means of flagged and unflagged rows.

    ``acts``: (N, C) pooled activations; ``flags``: (N,) concept flags; ``labels``: (N,) classes;
    ``gate``: the CAV's validity gate (:func:`xaibias.findings.cav_gate`): a flagged CAV is not graded.
    """
    if pending("the CAV direction", answer):
        return None
    a = np.asarray(acts.detach().cpu() if isinstance(acts, torch.Tensor) else acts, dtype=float)
    f, y = as_bool(flags, "flags"), as_float(labels, "labels")
    if a.ndim != 2 or len(a) != len(f) or len(f) != len(y):
        raise ValueError(f"acts must be (N, C) with N = len(flags) = len(labels); got {a.shape}, {len(f)}, {len(y)}")
    if gate is not None and not gate:
        print(f"Not graded: {gate.line()}. A direction can be computed for any flags, even a concept the layer does not "
              "encode; this one does not find its concept, so there is nothing to grade.")
        return None
    ans = as_float(answer, "answer")
    if ans.shape != (a.shape[1],):
        wrong(f"the CAV has one number per channel ({a.shape[1]}); yours has shape {ans.shape}.")
    centred = a.copy()
    for c in np.unique(y):
        centred[y == c] -= centred[y == c].mean(0)

    def unit(w: np.ndarray) -> np.ndarray:
        return w / np.linalg.norm(w)

    ref = unit(centred[f].mean(0) - centred[~f].mean(0))
    plain = unit(a[f].mean(0) - a[~f].mean(0))
    norm = float(np.linalg.norm(ans))
    if not close(norm, 1.0, 1e-4):
        if norm > 0 and np.allclose(ans / norm, ref, atol=1e-5):
            wrong(f"the direction is right but its length is {norm:.3f}; divide by its norm (a unit vector).")
        wrong(f"a CAV is a unit vector; yours has length {norm:.3f}.")
    if np.allclose(ans, ref, atol=1e-5):
        cos = float(plain @ ref)
        return right(f"the within-class signal CAV. Without the centring the direction would have cosine {cos:.3f} with it: "
                      "the rest of the plain difference of means is the class difference that comes with the concept.")
    if np.allclose(ans, -ref, atol=1e-5):
        wrong("the sign is flipped: flagged minus unflagged, so the CAV points towards the concept.")
    if np.allclose(ans, plain, atol=1e-5):
        wrong("that is the difference of the plain means: subtract each class's mean from its rows first (within class), "
              "or the direction also carries the class.")
    wrong("centre each class's rows on their class mean, then take mean(flagged) - mean(unflagged) and divide by its norm.")
    return None


def check_tcav(answer: Any, cav: Any, model: Any, images: Any, gate: Any = None) -> None:
    """TCAV by hand: the share of ``images`` whose malignant-vs-benign log-odds rise along ``cav`` (target 1, versus 0).

    ``cav``: a fitted :class:`xaibias.analysis.CAV` with its layer; ``gate``: its validity gate (a flagged CAV's
    score is not graded).
    """
    if pending("the TCAV score", answer):
        return None
    if gate is not None and not gate:
        print(f"Not graded: {gate.line()}. The TCAV score of a direction that does not find its concept says nothing "
              "about the concept.")
        return None
    ref = float(cav.tcav(model, images, target=1, versus=0))
    a = scalar(answer, "answer")
    if close(a, ref, 1e-6):
        return right(f"TCAV {ref:.3f}: on {ref:.0%} of the images moving along the CAV raises the log-odds of malignant. "
                      "It counts images, not how far the log-odds move; judge it only against random concepts.")
    plain = float(cav.tcav(model, images, target=1))
    if close(a, plain, 1e-6) and not close(plain, ref, 1e-6):
        wrong("that is the share for the malignant logit alone; differentiate logit[:, 1] - logit[:, 0] (the log-odds), "
              "or a direction that raises every logit scores high for every class.")
    if close(a, 1 - ref, 1e-6):
        wrong("you counted the images where the log-odds fall; TCAV counts those where they rise (derivative > 0).")
    if close(a, 100 * ref, 1e-4):
        wrong("give the share as a fraction between 0 and 1, not a percentage.")
    wrong(f"your score is {a:.3f}; sum the gradient of the log-odds times v over channels and positions per image, "
          "then take the share of images where it is positive.")
    return None
