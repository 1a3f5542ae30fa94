"""Comparisons about the current run: an effect, its interval, and one verdict word from the interval.

A comparative word about a run (higher, halves, beats, no longer) is a claim about an interval, not
about two point values. :func:`compare` takes two estimates (samples to bootstrap, paired or not,
or intervals already computed) or an estimate and a named fixed baseline (chance, a rule's rate, a
paper's number), returns the difference or the ratio with its interval and chooses the word from
that interval alone:

- "clearly higher" / "clearly lower": the whole interval lies above / below no effect (0 for a
  difference, 1 for a ratio);
- "not distinguishable at this size": the interval contains no effect;
- "not interpretable": a validity gate (:mod:`xaibias.validity`) of what the numbers rest on failed.

``Comparison.sentence()`` renders the printed line; ``Comparison.pick(higher, lower, same)`` picks a
notebook's own sentence by the word. With ``XAIBIAS_FINDINGS`` set, every comparison is appended to
that file as a JSON line (kind "comparison"), which ``tools/check_margins.py`` turns into the
verdict sheet. The names are re-exported by :mod:`xaibias.findings` (``xb.findings.compare``).

This module uses :mod:`xaibias.config` and :mod:`xaibias.analysis.stats` only.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from . import config
from .analysis.stats import bootstrap_ci, ratio_ci, resamplable

__all__ = ["WORDS", "Estimate", "estimate", "Comparison", "compare", "as_estimate", "as_samples", "to_number",
           "run_context", "record"]

def to_number(name: str, what: str, x: Any) -> float | None:
    """``x`` as a float (None stays None); a clear error for a non-number, a tensor of many values or NaN."""
    if x is None:
        return None
    if isinstance(x, torch.Tensor):
        if x.numel() != 1:
            raise ValueError(f"{name}: {what} must be a single number; got a tensor of shape {tuple(x.shape)}")
        x = x.item()
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: {what} must be a number; got {type(x).__name__} {x!r}") from None
    if math.isnan(v):
        raise ValueError(f"{name}: {what} is NaN; a finding cannot rest on a NaN")
    return v



def run_context() -> dict:
    """Seed, torch threads and notebook name of this run, stored beside every recorded finding."""
    return {"seed": config.read_seed(), "threads": torch.get_num_threads(),
            "notebook": os.environ.get("XAIBIAS_NOTEBOOK", "")}


WORDS = ("clearly higher", "clearly lower", "not distinguishable at this size", "not interpretable")
_Z = {0.90: 1.6449, 0.95: 1.9600, 0.99: 2.5758}


@dataclass(frozen=True)
class Estimate:
    """A measured number with its interval (``low <= value <= high`` is not required of a bootstrap)."""

    value: float
    low: float
    high: float
    n: int | None = None  # units behind it (images, seeds), when known

    def text(self, fmt: str = ".3f") -> str:
        return f"{format(self.value, fmt)} [{format(self.low, fmt)}, {format(self.high, fmt)}]"


def estimate(*samples: Any, statistic: Any = None, paired: bool = True, strata: Any = None,
             n_boot: int = 2000, level: float = 0.95, seed: int = 0, name: str = "estimate") -> Estimate:
    """Point value and percentile bootstrap interval of ``statistic(*samples)`` as an :class:`Estimate`.

    One sample: its mean by default. Several samples (for example scores and labels of the same
    images, with ``statistic=roc_auc_score``) are resampled together (``paired``); ``strata`` keeps
    group sizes fixed in every resample (pass the labels for an AUROC).
    """
    if len(samples) > 1 and statistic is None:
        raise ValueError(f"{name}: with {len(samples)} samples, pass statistic= (a function of all of them)")
    try:
        v, lo, hi = bootstrap_ci(*samples, statistic=statistic, n_boot=n_boot, level=level, seed=seed,
                                 paired=paired and len(samples) > 1, strata=strata)
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None
    return Estimate(v, lo, hi, n=len(np.asarray(samples[0]).reshape(-1)))


def as_estimate(x: Any, name: str, what: str) -> Estimate | None:
    """An Estimate from an Estimate / (value, low, high) / Finding; None for samples or a plain number."""
    if isinstance(x, Estimate):
        return x
    if all(hasattr(x, k) for k in ("value", "low", "high")) and not isinstance(x, tuple):  # a Finding
        if x.low is None or x.high is None:
            raise ValueError(f"{name}: {what} ({getattr(x, 'name', '?')}) has no interval; a comparison needs one")
        return Estimate(x.value, x.low, x.high)
    if isinstance(x, tuple) and len(x) == 3 and all(np.ndim(e) == 0 for e in x):
        v, lo, hi = (to_number(name, what, e) for e in x)
        if lo > hi:
            raise ValueError(f"{name}: {what} interval low {lo} is above high {hi}")
        return Estimate(v, lo, hi)
    return None


def as_samples(x: Any, name: str, what: str) -> np.ndarray | None:
    """``x`` as per-image (or per-seed) values when it is a tensor, array, list or Series, else None."""
    if isinstance(x, (torch.Tensor, list, np.ndarray, pd.Series)):
        return resamplable(x, f"{name}: {what}")
    return None


@dataclass
class Comparison:
    """The outcome of :func:`compare`: an effect (difference or ratio), its interval and one verdict word.

    ``word`` is chosen from the interval alone: "clearly higher" when the whole interval lies above
    the no-effect value (0 for a difference, 1 for a ratio), "clearly lower" when it lies below,
    "not distinguishable at this size" otherwise, and "not interpretable" when a validity gate
    passed to :func:`compare` failed (then ``reason`` says which, and no number is read).
    """

    name: str
    a_label: str
    b_label: str
    a: Estimate | None
    b: Estimate | float | None
    kind: str  # "difference" or "ratio"
    value: float
    low: float
    high: float
    word: str
    paired: bool = False
    level: float = 0.95
    reason: str = ""

    @property
    def null(self) -> float:
        return 1.0 if self.kind == "ratio" else 0.0

    @property
    def interpretable(self) -> bool:
        return self.word != "not interpretable"

    @property
    def higher(self) -> bool:
        return self.word == "clearly higher"

    @property
    def lower(self) -> bool:
        return self.word == "clearly lower"

    @property
    def distinguishable(self) -> bool:
        return self.higher or self.lower

    def pick(self, higher: str, lower: str, same: str, invalid: str | None = None) -> str:
        """The sentence that matches the verdict (``invalid`` defaults to the not-interpretable line)."""
        if not self.interpretable:
            return invalid if invalid is not None else self.sentence()
        return higher if self.higher else lower if self.lower else same

    def sentence(self, fmt: str = ".3f") -> str:
        """The one-line verdict with its numbers, as printed."""
        if not self.interpretable:
            return f"NOT INTERPRETABLE {self.name}: {self.reason}"
        a = self.a.text(fmt) if self.a is not None else ""
        b = (self.b.text(fmt) if isinstance(self.b, Estimate) else format(self.b, fmt)) if self.b is not None else ""
        effect = "ratio" if self.kind == "ratio" else "difference"
        sign = "" if self.kind == "ratio" or fmt.startswith(("+", "-", " ")) else "+"   # "+.2f" signs already
        pct = f"{round(100 * self.level)} %"
        how = "paired, " if self.paired else ""
        word = {"clearly higher": "is clearly higher than", "clearly lower": "is clearly lower than",
                }.get(self.word, "is not distinguishable at this size from")
        return (f"{self.name}: {self.a_label} {a} {word} {self.b_label} {b} "
                f"({effect} {format(self.value, sign + fmt)}, {pct} interval "
                f"[{format(self.low, fmt)}, {format(self.high, fmt)}], {how}no effect = {format(self.null, 'g')})")

    def __str__(self) -> str:
        return self.sentence()


def _combine(a: Estimate, b: Estimate | float, ratio: bool, level: float, name: str) -> tuple[float, float, float]:
    """Effect and interval of two independent estimates from their intervals (normal approximation).

    Each interval gives a standard error (width / 2z); the effect's error adds them in quadrature,
    on the log scale for a ratio. A plain number ``b`` is a fixed baseline without error.
    """
    z = _Z.get(round(level, 2))
    if z is None:
        raise ValueError(f"{name}: level must be one of {sorted(_Z)} when intervals are combined; got {level}")
    if ratio:
        vals = [a.value, a.low, a.high] + ([b.value, b.low, b.high] if isinstance(b, Estimate) else [b])
        if min(vals) <= 0:
            raise ValueError(f"{name}: a ratio of intervals needs positive numbers (log scale); got {vals}")
        la = (np.log(a.high) - np.log(a.low)) / (2 * z)
        lb = (np.log(b.high) - np.log(b.low)) / (2 * z) if isinstance(b, Estimate) else 0.0
        bv = b.value if isinstance(b, Estimate) else b
        r = a.value / bv
        se = float(np.hypot(la, lb))
        return r, float(r * np.exp(-z * se)), float(r * np.exp(z * se))
    sa = (a.high - a.low) / (2 * z)
    sb = (b.high - b.low) / (2 * z) if isinstance(b, Estimate) else 0.0
    bv = b.value if isinstance(b, Estimate) else b
    d = a.value - bv
    if isinstance(b, Estimate):
        se = float(np.hypot(sa, sb))
        return d, d - z * se, d + z * se
    return d, a.low - bv, a.high - bv  # a fixed baseline shifts a's own interval


def compare(
    a: Any,
    b: Any,
    *,
    name: str,
    a_label: str = "A",
    b_label: str = "B",
    paired: bool = False,
    ratio: bool = False,
    statistic: Any = None,
    gates: Sequence[Any] = (),
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    fmt: str = ".3f",
    quiet: bool = False,
) -> Comparison:
    """Compare two estimates, or an estimate with a named baseline, and say so from the interval alone.

    Parameters
    ----------
    a : 1-D samples, :class:`Estimate` or ``(value, low, high)``
        Samples are one value per unit (image, seed), bootstrapped here; an Estimate carries its own
        interval.
    b : 1-D samples, :class:`Estimate`, ``(value, low, high)`` or a number
        A plain number is a fixed baseline without error (chance, a paper's number, a rule's rate):
        the interval is then ``a``'s own, shifted (or scaled, for a ratio).
    name, a_label, b_label : str
        What is compared, and the two sides' names, used in the printed sentence.
    paired : bool
        ``a`` and ``b`` are samples of the same units (the same images under two models): the
        bootstrap resamples units, so the pairing's correlation is kept. Needs samples on both sides.
    ratio : bool
        The effect is ``statistic(a) / statistic(b)`` (no effect = 1) instead of the difference.
    statistic : callable, optional
        Of one sample (default: the mean).
    gates : sequence of :class:`xaibias.validity.Gate`
        The validity gates of what the numbers rest on (the models, CAVs, clusterings). If any
        failed, the comparison is "not interpretable" and its numbers are not stated as a verdict.
    level, n_boot, seed
        Interval coverage, bootstrap draws and their seed. Two intervals given as estimates are
        combined by a normal approximation, which needs level 0.90, 0.95 or 0.99.
    quiet : bool
        Do not print the sentence (it is still recorded when ``XAIBIAS_FINDINGS`` is set).

    Returns
    -------
    Comparison
        ``.word`` is one of :data:`WORDS`; ``.sentence()`` is the line printed.
    """
    if not name or not isinstance(name, str):
        raise ValueError("compare: name must be a non-empty string (it names the comparison in the verdict sheet)")
    if not 0 < level < 1:
        raise ValueError(f"{name}: level must lie in (0, 1); got {level!r}")
    stat = statistic if statistic is not None else np.mean
    sa, sb = as_samples(a, name, "a"), as_samples(b, name, "b")
    ea, eb = as_estimate(a, name, "a"), as_estimate(b, name, "b")
    fixed = None
    if sb is None and eb is None:
        if isinstance(b, (list, tuple, np.ndarray, pd.Series, torch.Tensor)):
            raise ValueError(f"{name}: b must be samples, an Estimate, (value, low, high) or a number; got {b!r}")
        fixed = to_number(name, "b", b)
    if sa is None and ea is None:
        raise ValueError(f"{name}: a must be samples (1-D) or an estimate with an interval; got {type(a).__name__}. "
                         "A single number has no interval to compare")
    if paired and (sa is None or sb is None):
        raise ValueError(f"{name}: paired=True needs samples of the same units on both sides")
    if sa is not None and sb is not None:
        if paired and sa.size != sb.size:
            raise ValueError(f"{name}: paired samples must have the same length; got {sa.size} and {sb.size}")
        if ratio and stat(sb) == 0:
            raise ValueError(f"{name}: the ratio's baseline {b_label} is 0")
        if ratio:
            value, low, high = ratio_ci(sa, sb, paired=paired, numerator=stat, denominator=stat, n_boot=n_boot,
                                        level=level, seed=seed)
        else:
            value, low, high = bootstrap_ci(sa, sb, statistic=lambda x, y: stat(x) - stat(y), n_boot=n_boot,
                                            level=level, seed=seed, paired=paired)
        ea = Estimate(*bootstrap_ci(sa, statistic=stat, n_boot=n_boot, level=level, seed=seed), n=sa.size)
        eb = Estimate(*bootstrap_ci(sb, statistic=stat, n_boot=n_boot, level=level, seed=seed), n=sb.size)
        bside: Estimate | float = eb
    else:
        if sa is not None:
            ea = Estimate(*bootstrap_ci(sa, statistic=stat, n_boot=n_boot, level=level, seed=seed), n=sa.size)
        if sb is not None:
            eb = Estimate(*bootstrap_ci(sb, statistic=stat, n_boot=n_boot, level=level, seed=seed), n=sb.size)
        bside = fixed if fixed is not None else eb
        if ratio and fixed is not None:
            if fixed <= 0:
                raise ValueError(f"{name}: a ratio needs a positive baseline; got {b_label} = {fixed}")
            value, low, high = ea.value / fixed, ea.low / fixed, ea.high / fixed
        else:
            value, low, high = _combine(ea, bside, ratio, level, name)
    null = 1.0 if ratio else 0.0
    word = "clearly higher" if low > null else "clearly lower" if high < null else WORDS[2]
    failed = [g for g in gates if not bool(g)]
    reason = "; ".join(g.line() if hasattr(g, "line") else str(g) for g in failed)
    if failed:
        word = "not interpretable"
    c = Comparison(name=name, a_label=a_label, b_label=b_label, a=ea, b=bside, kind="ratio" if ratio else "difference",
                   value=float(value), low=float(low), high=float(high), word=word, paired=paired, level=level,
                   reason=reason)
    _record_comparison(c)
    if not quiet:
        print(c.sentence(fmt))
    return c


def record(row: dict) -> None:
    """Append ``row`` (with this run's seed, threads and notebook) to the ``XAIBIAS_FINDINGS`` file, if set."""
    path = os.environ.get("XAIBIAS_FINDINGS", "").strip()
    if not path:
        return
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({**row, **run_context()}) + "\n")


def _record_comparison(c: Comparison) -> None:
    record({"kind": "comparison", "name": c.name, "word": c.word, "value": c.value, "low": c.low, "high": c.high,
            "effect": c.kind, "a_label": c.a_label, "b_label": c.b_label,
            "a": None if c.a is None else [c.a.value, c.a.low, c.a.high],
            "b": [c.b.value, c.b.low, c.b.high] if isinstance(c.b, Estimate) else c.b,
            "paired": c.paired, "reason": c.reason, "sentence": c.sentence()})
