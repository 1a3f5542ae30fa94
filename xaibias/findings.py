"""Findings about the current run: checks with their margins, observations, and paper-vs-run tables.

A notebook's prose holds the method, the expectation and the papers' numbers; what *this run*
measured is printed from variables. This module is the small vocabulary for that:

- :func:`check` asserts one finding and prints it with its margin, e.g.
  ``check("drop when the correlation is reversed", drop, ">=", 0.10, low=lo)`` prints
  ``PASS drop when the correlation is reversed: 0.215 [0.17, 0.26] >= 0.100 (margin 0.070)``.
  With ``low``/``high`` (an interval, from :func:`xaibias.analysis.bootstrap_ci`) the margin is
  measured from the near end of the interval, not from the point value.
- :func:`observe` prints and records a number that is *not* asserted, because it does not hold
  with a margin over seeds; the notebook says so.
- :func:`verdict` picks the sentence that matches a measured condition.
- :func:`paper_vs_run` lays out a paper's numbers beside this run's.
- :func:`compare` (from :mod:`xaibias.comparison`) compares two estimates, or an estimate and a
  named baseline, and picks the verdict word from the interval alone; every comparative word a
  notebook prints about its run comes from it.
- :func:`model_gate`, :func:`cav_gate`, :func:`clustering_gate` (from :mod:`xaibias.validity`) flag a
  collapsed model, a CAV at chance and a clustering at its baselines; numbers resting on a flagged
  object are printed as not interpretable (:func:`guard`, or ``compare(..., gates=[...])``).
- ``with all_hold():`` around a notebook's closing checks evaluates (and records) every check
  before it raises one AssertionError listing all that failed.

When the environment variable ``XAIBIAS_FINDINGS`` names a file, every check and observation is
appended to it as one JSON line (name, value, interval, bound, margin, seed, torch threads).
``tools/check_margins.py`` runs the notebooks over seeds and thread counts and turns those lines
into the margins table in ``benchmarks/margins.md``.

This module imports only :mod:`xaibias.comparison` and :mod:`xaibias.validity` from the package.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from .comparison import WORDS, Comparison, Estimate, compare, estimate, run_context, to_number
from .validity import Gate, artifact_rule_accuracy, cav_gate, clustering_gate, guard, model_gate

__all__ = ["Finding", "check", "observe", "verdict", "paper_vs_run", "all_hold", "OPS",
           "Estimate", "estimate", "Comparison", "compare", "WORDS",
           "Gate", "model_gate", "cav_gate", "clustering_gate", "artifact_rule_accuracy", "guard"]

OPS = (">", ">=", "<", "<=")
_DEFERRED: list[list[str]] = []  # one list of failed lines per open all_hold() block


@dataclass
class Finding:
    """One checked or observed quantity of the current run."""

    name: str
    value: float
    kind: str = "check"  # "check" or "observation"
    op: str | None = None
    bound: float | None = None
    low: float | None = None
    high: float | None = None
    margin: float | None = None
    passed: bool | None = None
    seed: int = 0
    threads: int = 1
    notebook: str = ""

    def line(self, fmt: str = ".3f") -> str:
        """The one-line text printed for this finding."""
        interval = ""
        if self.low is not None or self.high is not None:
            lo = "-inf" if self.low is None else format(self.low, fmt)
            hi = "inf" if self.high is None else format(self.high, fmt)
            interval = f" [{lo}, {hi}]"
        text = f"{self.name}: {format(self.value, fmt)}{interval}"
        if self.kind == "observation":
            return f"OBSERVED {text} (not asserted)"
        status = "PASS" if self.passed else "FAIL"
        return f"{status} {text} {self.op} {format(self.bound, fmt)} (margin {format(self.margin, fmt)})"


def _record(f: Finding) -> None:
    path = os.environ.get("XAIBIAS_FINDINGS", "").strip()
    if not path:
        return
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(asdict(f)) + "\n")


def check(
    name: str,
    value: Any,
    op: str,
    bound: Any,
    *,
    low: Any = None,
    high: Any = None,
    fmt: str = ".3f",
    quiet: bool = False,
) -> Finding:
    """Assert ``value op bound`` and print the finding with its margin.

    Parameters
    ----------
    name : str
        What is checked, in words (it is the row name of the margins table, so keep it stable).
    value : float
        The measured point value.
    op : {">", ">=", "<", "<="}
        The direction of the finding.
    bound : float
        The threshold the finding must clear.
    low, high : float, optional
        An interval around ``value`` (for example a bootstrap 95 % interval). For ``>``/``>=`` the
        check uses ``low`` when given, for ``<``/``<=`` it uses ``high``: the whole interval must
        clear the bound, not just the point value.
    fmt : str
        Number format of the printed line.
    quiet : bool
        Do not print the line (it is still recorded and still asserted).

    Returns
    -------
    Finding
        With ``margin``: how far the tested end clears the bound (positive when it passes).

    Raises
    ------
    AssertionError
        When the finding does not hold; the message is the printed line.
    """
    if op not in OPS:
        raise ValueError(f"{name}: op must be one of {OPS}; got {op!r}")
    v = to_number(name, "value", value)
    b = to_number(name, "bound", bound)
    lo = to_number(name, "low", low)
    hi = to_number(name, "high", high)
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"{name}: interval low {lo} is above high {hi}")
    if op in (">", ">="):
        tested = lo if lo is not None else v
        margin = tested - b
        passed = margin > 0 if op == ">" else margin >= 0
    else:
        tested = hi if hi is not None else v
        margin = b - tested
        passed = margin > 0 if op == "<" else margin >= 0
    f = Finding(name=name, value=v, op=op, bound=b, low=lo, high=hi, margin=margin, passed=bool(passed),
                **run_context())
    _record(f)
    line = f.line(fmt)
    if not quiet:
        print(line)
    if not passed:
        if _DEFERRED:
            _DEFERRED[-1].append(line)
        else:
            raise AssertionError(line)
    return f


@contextmanager
def all_hold() -> Iterator[None]:
    """Evaluate every :func:`check` in the block, then raise one AssertionError if any failed."""
    _DEFERRED.append([])
    try:
        yield
    finally:
        failed = _DEFERRED.pop()
    if failed:
        raise AssertionError(f"{len(failed)} finding(s) do not hold:\n" + "\n".join(failed))


def observe(name: str, value: Any, *, low: Any = None, high: Any = None, fmt: str = ".3f",
            quiet: bool = False) -> Finding:
    """Print and record a measured number that the notebook does not assert."""
    f = Finding(name=name, value=to_number(name, "value", value), kind="observation",
                low=to_number(name, "low", low), high=to_number(name, "high", high), **run_context())
    _record(f)
    if not quiet:
        print(f.line(fmt))
    return f


def verdict(condition: Any, if_true: str, if_false: str) -> str:
    """Return the sentence that matches a measured condition (``bool(condition)``)."""
    return if_true if bool(condition) else if_false


def paper_vs_run(rows: Sequence[Sequence[Any]], paper: str = "paper", run: str = "this run") -> pd.DataFrame:
    """A table of ``(quantity, paper value, this run's value)`` rows, for display beside the text.

    The paper column is labelled with ``paper`` (for example ``"Mikolajczyk et al. 2021, Table 1"``);
    values are kept as given (numbers or short strings such as ``"0.007 (n.s.)"``).
    """
    for i, r in enumerate(rows):
        if len(r) != 3:
            raise ValueError(f"paper_vs_run: row {i} must be (quantity, paper, run); got {len(r)} items")
    return pd.DataFrame([list(r) for r in rows], columns=["quantity", paper, run]).set_index("quantity")
