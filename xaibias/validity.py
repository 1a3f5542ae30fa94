"""Validity gates: is a model, a concept vector or a clustering fit to be read at all?

A number about a model that learned nothing but an artifact, a concept vector that does not find its
concept, or a clustering no better than its trivial baselines is not evidence of anything, however
precisely it is measured. Each gate here checks one such object against its trivial reference and
returns a :class:`Gate`: true when the object may be read, false (with the reason) when it is
flagged. Numbers resting on a flagged object are printed as "not interpretable" and never enter a
verdict (pass the gates to :func:`xaibias.findings.compare`), a ranking or an exercise check.

- :func:`model_gate`: a classifier whose clean-accuracy interval reaches chance, that is worse than
  chance on the reversed set, or whose accuracies a single-artifact rule reproduces, is collapsed.
- :func:`cav_gate`: a concept activation vector whose (within-class) detection AUROC interval
  reaches 0.5 has not found its concept.
- :func:`clustering_gate`: a clustering whose score does not clear every trivial baseline (one
  all-in-one cluster, shuffled labels with the same cluster sizes) found no structure.
- :func:`artifact_rule_accuracy`: the accuracy of "the class is the artifact's" on a test set,
  the reference for the single-artifact rule.

This module uses only :mod:`xaibias.comparison` (estimates). The gates are re-exported by
:mod:`xaibias.findings` (``xb.findings.model_gate``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .comparison import Estimate, as_estimate, as_samples, estimate, record, to_number

__all__ = ["Gate", "model_gate", "cav_gate", "clustering_gate", "artifact_rule_accuracy", "guard"]


@dataclass
class Gate:
    """The verdict of a validity gate. ``bool(gate)`` is True when the object may be interpreted."""

    name: str
    what: str  # "model", "CAV" or "clustering"
    ok: bool
    reasons: list[str] = field(default_factory=list)
    evidence: str = ""
    flagged_as: str = ""  # the word of a FLAGGED line; "" = the default of ``what`` ("collapsed" for a model)

    def __bool__(self) -> bool:
        return self.ok

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)

    def line(self) -> str:
        """The printed line: ``VALID ...`` or ``FLAGGED ...`` with the numbers it rests on."""
        if self.ok:
            return f"VALID {self.what} '{self.name}': {self.evidence}"
        label = {"model": "collapsed", "CAV": "concept not found", "clustering": "no structure beyond its baselines"}
        word = self.flagged_as or label.get(self.what, "flagged")
        return f"FLAGGED {self.what} '{self.name}' ({word}): {self.reason}"

    def guard(self, text: str) -> str:
        """``text`` when the gate passed, else the not-interpretable line that replaces it."""
        return text if self.ok else f"not interpretable ({self.line()})"

    def __str__(self) -> str:
        return self.line()

    def _announce(self, quiet: bool) -> Gate:
        record({"kind": "gate", "name": self.name, "what": self.what, "ok": self.ok, "line": self.line()})
        if not quiet:
            print(self.line())
        return self


def guard(text: str, *gates: Gate) -> str:
    """``text`` when every gate passed, else one not-interpretable line naming the failed gates."""
    failed = [g for g in gates if not g]
    if not failed:
        return text
    return "not interpretable: " + "; ".join(g.line() for g in failed)


def _accuracy(x: Any, name: str, what: str, seed: int) -> Estimate:
    e = as_estimate(x, name, what)
    if e is not None:
        return e
    s = as_samples(x, name, what)
    if s is None:
        raise ValueError(f"{name}: {what} must be per-image correctness (0/1, 1-D) or (value, low, high); "
                         f"got {type(x).__name__}")
    if not np.isin(s, (0.0, 1.0)).all():
        raise ValueError(f"{name}: {what} must hold per-image correctness (0 or 1); got values such as "
                         f"{sorted(set(np.round(s, 3)) - {0.0, 1.0})[:3]}")
    return estimate(s, seed=seed, name=f"{name}: {what}")


def artifact_rule_accuracy(flags: Any, labels: Any, positive: int | None = None) -> float:
    """Accuracy of the single-artifact rule "class 1 if the artifact is there, else class 0".

    ``positive=None`` takes the better of the two directions (the artifact meaning class 1 or class 0),
    as a model that follows the artifact would learn whichever direction its training data showed.
    Binary labels only.
    """
    f = np.asarray(flags.cpu() if isinstance(flags, torch.Tensor) else flags).reshape(-1).astype(bool)
    y = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels).reshape(-1)
    if f.size != y.size or f.size == 0:
        raise ValueError(f"artifact_rule_accuracy: flags ({f.size}) and labels ({y.size}) must be non-empty and "
                         "of the same length")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"artifact_rule_accuracy: labels must be 0/1; got {sorted(set(y.tolist()))[:5]}")
    acc1 = float((f.astype(int) == y).mean())
    if positive is None:
        return max(acc1, 1 - acc1)
    if positive not in (0, 1):
        raise ValueError(f"artifact_rule_accuracy: positive must be 0, 1 or None; got {positive!r}")
    return acc1 if positive == 1 else 1 - acc1


def model_gate(name: str, clean: Any, *, chance: float = 0.5, reversed: Any = None, same: Any = None,
               rule: Mapping[str, float] | None = None, rule_tol: float = 0.10, seed: int = 0,
               measure: str = "accuracy", set_names: Mapping[str, str] | None = None, quiet: bool = False) -> Gate:
    """Flag a classifier as collapsed, or pass it.

    Parameters
    ----------
    name : str
        The model, as the notebook calls it.
    clean : per-image correctness (0/1) on a test set without the artifact-label tie, or an Estimate
        Flagged when its interval reaches ``chance`` (the majority-class rate or 1/C).
    chance : float
        The accuracy of guessing: 0.5 for two balanced classes, the majority rate otherwise.
    reversed : per-image correctness on a set where the tie is reversed, optional
        Flagged when its whole interval lies below ``chance``: what the model learned of the lesion
        is outweighed by the artifact. Pass it for models whose use of the lesion is read (a
        correction, a "debiased" model); a deliberately biased baseline that loses to chance there is
        what its notebook demonstrates and is gated on ``clean`` alone.
    same : per-image correctness on a set with the training tie, optional
        Only used with ``rule``.
    rule : mapping of set name ("clean", "same", "reversed") -> accuracy, optional
        The single-artifact rule's accuracies on the same sets (:func:`artifact_rule_accuracy`).
        Flagged when the model's accuracy is within ``rule_tol`` of the rule's on every set given:
        the rule explains the model.
    measure : str
        What the per-set numbers are, as the gate line names them: ``"accuracy"``, or for example
        ``"balanced accuracy"`` when ``clean`` is one (its chance is then 0.5 whatever the classes).
    set_names : mapping of "clean" / "same" / "reversed" -> str, optional
        What the gate line calls each set, by default its own key. For example ``{"clean":
        "held-out"}`` for real photos that keep their artifacts, or ``{"same": "agreeing photos"}``
        for a subset where the artifact agrees with the class.
    """
    chance = to_number(name, "chance", chance)
    if not isinstance(measure, str) or not measure.strip():
        raise ValueError(f"{name}: measure must be a non-empty string such as 'balanced accuracy'; got {measure!r}")
    shown = {"clean": "clean", "same": "same", "reversed": "reversed"}
    for k, v in (set_names or {}).items():
        if k not in shown:
            raise ValueError(f"{name}: set_names has unknown set {k!r}; the sets are clean, same, reversed")
        if not isinstance(v, str) or not v.strip():
            raise ValueError(f"{name}: set_names[{k!r}] must be a non-empty string such as 'held-out'; got {v!r}")
        shown[k] = v
    reasons: list[str] = []   # the chance reasons first: a model that fails one of them has collapsed
    acc = {"clean": _accuracy(clean, name, f"{shown['clean']} {measure}", seed)}
    if reversed is not None:
        acc["reversed"] = _accuracy(reversed, name, f"{shown['reversed']} {measure}", seed)
    if same is not None:
        acc["same"] = _accuracy(same, name, f"{shown['same']} {measure}", seed)
    c = acc["clean"]
    if c.low <= chance:
        reasons.append(f"{shown['clean']} {measure} {c.text()} reaches chance {chance:.3f}")
    if "reversed" in acc and acc["reversed"].high < chance:
        reasons.append(f"{shown['reversed']} {measure} {acc['reversed'].text()} is below chance {chance:.3f}")
    collapsed = bool(reasons)
    if rule:
        missing = [k for k in rule if k not in acc]
        if missing:
            raise ValueError(f"{name}: rule accuracies given for {missing} but the model's accuracy on those sets "
                             f"was not passed (clean=, same=, reversed=)")
        gaps = {k: abs(acc[k].value - to_number(name, f"rule[{k!r}]", v)) for k, v in rule.items()}
        if max(gaps.values()) <= rule_tol:
            pairs = ", ".join(f"{shown[k]} {acc[k].value:.3f} vs rule {rule[k]:.3f}" for k in rule)
            reasons.append(f"a single-artifact rule explains it ({pairs}; all within {rule_tol:.2f})")
    evidence = ", ".join(f"{shown[k]} {measure} {e.text()}" for k, e in acc.items()) + f"; chance {chance:.3f}"
    # above chance, but the single-artifact rule accounts for the accuracies: not "collapsed"
    g = Gate(name=name, what="model", ok=not reasons, reasons=reasons, evidence=evidence,
             flagged_as="" if collapsed or not reasons else "explained by one artifact")
    return g._announce(quiet)


def cav_gate(name: str, scores: Any, flags: Any, *, seed: int = 0, quiet: bool = False) -> Gate:
    """Flag a concept activation vector whose detection AUROC interval reaches 0.5.

    ``scores`` are held-out scores (``CAV.cv_scores_``, fitted within class when ``groups`` was
    given, so the AUROC is the within-class one) and ``flags`` the artifact's presence per image.
    The interval is a bootstrap over images, stratified by flag.
    """
    from sklearn.metrics import roc_auc_score

    s = as_samples(scores, name, "scores")
    f = np.asarray(flags.cpu() if isinstance(flags, torch.Tensor) else flags).reshape(-1)
    if s is None:
        raise ValueError(f"{name}: scores must be 1-D, one per image; got {type(scores).__name__}")
    if f.size != s.size:
        raise ValueError(f"{name}: {s.size} scores but {f.size} flags")
    f = f.astype(bool)
    if f.all() or not f.any():
        raise ValueError(f"{name}: flags must hold both present and absent images; got {int(f.sum())} of {f.size}")
    e = estimate(s, f.astype(float), statistic=lambda a, b: roc_auc_score(b, a), strata=f, seed=seed,
                 name=f"{name}: AUROC")
    ok = e.low > 0.5
    reasons = [] if ok else [f"detection AUROC {e.text()} reaches 0.5 (a random direction)"]
    g = Gate(name=name, what="CAV", ok=ok, reasons=reasons,
             evidence=f"detection AUROC {e.text()} above 0.5 ({int(f.sum())} of {f.size} images flagged)")
    return g._announce(quiet)


def clustering_gate(name: str, score: Any, baselines: Mapping[str, Any], *, quiet: bool = False) -> Gate:
    """Flag a clustering whose score does not clear every trivial baseline.

    ``score`` is a number or an Estimate (its low end is used); each baseline is a number (one
    all-in-one cluster's score, the shuffled-label 95th percentile) or an Estimate (its high end).
    """
    if not baselines:
        raise ValueError(f"{name}: clustering_gate needs at least one baseline (e.g. one all-in-one cluster)")
    est = as_estimate(score, name, "score")
    low = est.low if est is not None else to_number(name, "score", score)
    shown = est.text() if est is not None else f"{low:.3f}"
    reasons = []
    for k, b in baselines.items():
        eb = as_estimate(b, name, f"baseline {k!r}")
        top = eb.high if eb is not None else to_number(name, f"baseline {k!r}", b)
        if low <= top:
            reasons.append(f"score {shown} does not clear {k} {top:.3f}")
    ev = ", ".join(f"{k} {(as_estimate(b, name, k).high if as_estimate(b, name, k) else float(b)):.3f}"
                   for k, b in baselines.items())
    g = Gate(name=name, what="clustering", ok=not reasons, reasons=reasons, evidence=f"score {shown} clears {ev}")
    return g._announce(quiet)
