"""Re-measuring corrections: a validity gate on every model, every change read against the uncorrected model.

Notebooks 06 and 07b train several corrected models per seed and ask of each: did it learn the
lesion at all, and what changed compared with the model trained without a correction? The helpers
here do the bookkeeping of that reading, so a notebook shows the method and the table, not the loops:

- :func:`rule_accuracies`: the accuracy of the single-artifact rule ("malignant when the artifact is
  there") on each test set, pooled over seeds: the reference of the collapse gate.
- :func:`model_gates`: one :func:`xaibias.validity.model_gate` per model, from per-image
  correctness pooled over seeds; corrected models are also gated on the reversed set and against
  the rule.
- :func:`accuracy_table`: accuracy with its interval per model and test set, beside chance, the
  majority-class rate and the gate.
- :func:`versus_reference`: per model, :func:`xaibias.findings.compare` of a per-image quantity
  (an insertion change, a correctness, a relevance share) with the same images under a reference
  model, paired, as a difference or a ratio, with both models' gates: a flagged model's row is
  "not interpretable" and carries no number.
- :func:`print_failed`: the line that names each flagged correction as a failed correction.

Every comparison is made by :func:`xaibias.findings.compare`, so its verdict word comes from its
interval alone and it is recorded in the verdict sheet when ``XAIBIAS_FINDINGS`` is set.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["rule_accuracies", "model_gates", "accuracy_table", "versus_reference", "print_failed", "abs_mean",
           "outcomes", "artifact_effects"]


def abs_mean(x: np.ndarray) -> float:
    """``|mean(x)|``: the size of a mean effect, whatever its sign (a statistic for :func:`versus_reference`)."""
    return float(abs(np.mean(x)))


def _need(table: Any, columns: Sequence[str], what: str) -> pd.DataFrame:
    if not isinstance(table, pd.DataFrame):
        raise ValueError(f"{what} must be a pandas DataFrame; got {type(table).__name__}")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{what} lacks the column(s) {missing}; it has {list(table.columns)}")
    return table


def rule_accuracies(test_sets: Mapping[str, Sequence[Any]], artifact: str, positive: int = 1) -> dict[str, float]:
    """Accuracy of "class ``positive`` when ``artifact`` is there" on each test set, pooled over seeds.

    Parameters
    ----------
    test_sets : ``{set name: [dataset of seed 1, dataset of seed 2, ...]}``; each dataset has
        ``.labels`` and an ``.artifacts`` DataFrame with the artifact's column
    artifact : the artifact the rule follows
    positive : the class the rule says when the artifact is there (the class the artifact came with
        in training)

    Returns
    -------
    dict set name -> accuracy (:func:`xaibias.findings.artifact_rule_accuracy` of the pooled images)
    """
    from ..validity import artifact_rule_accuracy

    if not isinstance(test_sets, Mapping) or not test_sets:
        raise ValueError(f"test_sets must be a non-empty dict {{set name: [datasets]}}; got {type(test_sets).__name__}")
    out = {}
    for name, sets in test_sets.items():
        sets = list(sets) if isinstance(sets, (list, tuple)) else [sets]
        for ds in sets:
            table = getattr(ds, "artifacts", None)
            if not isinstance(table, pd.DataFrame) or artifact not in table.columns:
                raise ValueError(f"test_sets[{name!r}]: every dataset needs an .artifacts column {artifact!r}")
        flags = np.concatenate([ds.artifacts[artifact].to_numpy(bool) for ds in sets])
        labels = np.concatenate([np.asarray(ds.labels).reshape(-1) for ds in sets])
        out[name] = artifact_rule_accuracy(flags, labels, positive=positive)
    return out


def model_gates(accuracy: pd.DataFrame, *, corrected: Sequence[str] = (), rule: Mapping[str, float] | None = None,
                chance: float = 0.5, clean: str = "clean", same: str = "same", reversed: str = "reversed",
                method_col: str = "method", seed: int = 0, quiet: bool = False) -> dict[str, Any]:
    """A :func:`xaibias.findings.model_gate` per model, from per-image correctness pooled over seeds.

    Parameters
    ----------
    accuracy : DataFrame with one row per model, test set and image: columns ``method_col``, ``set``
        and ``correct`` (bool or 0/1), as ``bias_report(..., return_per_image=True)["accuracy"]``
        (with ``model`` renamed to ``method``), concatenated over seeds
    corrected : the models that claim to use the lesion (corrections): gated also on the ``reversed``
        set (worse than chance there: the artifact outweighs what they learned of the lesion) and,
        with ``rule``, against the single-artifact rule on every set given. The others (a
        deliberately biased baseline) are gated on ``clean`` alone.
    rule : ``{set name: rule accuracy}`` (:func:`rule_accuracies`), optional
    chance : accuracy of guessing
    clean, same, reversed : names of the sets in ``accuracy["set"]``

    Returns
    -------
    dict model name -> :class:`xaibias.validity.Gate`, in the order the models first appear. Each
    gate's line is printed unless ``quiet``.
    """
    from ..validity import model_gate

    _need(accuracy, [method_col, "set", "correct"], "accuracy")
    sets = set(accuracy["set"])
    if clean not in sets:
        raise ValueError(f"accuracy has no rows of the clean set {clean!r}; its sets are {sorted(sets)}")
    unknown = [m for m in corrected if m not in set(accuracy[method_col])]
    if unknown:
        raise ValueError(f"corrected names model(s) {unknown} that accuracy does not hold")
    gates = {}
    for name, rows in accuracy.groupby(method_col, sort=False):
        got = {s: rows.loc[rows["set"] == s, "correct"].to_numpy(float) for s in (clean, same, reversed) if s in sets}
        kw: dict[str, Any] = {}
        if name in corrected:
            if reversed in got:
                kw["reversed"] = got[reversed]
            if rule:
                role = {clean: "clean", same: "same", reversed: "reversed"}
                kw["rule"] = {role[k]: float(v) for k, v in rule.items() if k in role and k in got}
                if "same" in kw["rule"]:
                    kw["same"] = got[same]
        gates[name] = model_gate(str(name), got[clean], chance=chance, seed=seed, quiet=quiet, **kw)
    return gates


def accuracy_table(accuracy: pd.DataFrame, sets: Sequence[str] | None = None, *, chance: float = 0.5,
                   gates: Mapping[str, Any] | None = None, method_col: str = "method", seed: int = 0,
                   fmt: str = ".3f") -> pd.DataFrame:
    """Accuracy ``value [low, high]`` (95 % bootstrap over the pooled images) per model and test set.

    Two rows are added below the models: ``chance`` and the ``majority-class rate`` of each set
    (from the first model's labels); with ``gates`` a column says ``valid`` or ``FLAGGED``.
    """
    from ..analysis.stats import bootstrap_ci

    _need(accuracy, [method_col, "set", "correct", "label"], "accuracy")
    sets = list(dict.fromkeys(accuracy["set"])) if sets is None else list(sets)
    rows: dict[Any, dict[str, str]] = {}
    for (name, sname), g in accuracy.groupby([method_col, "set"], sort=False):
        if sname not in sets:
            continue
        v, lo, hi = bootstrap_ci(g["correct"].to_numpy(float), seed=seed)
        rows.setdefault(name, {})[sname] = f"{format(v, fmt)} [{format(lo, fmt)}, {format(hi, fmt)}]"
    table = pd.DataFrame(rows).T.reindex(columns=sets)
    first = accuracy[accuracy[method_col] == accuracy[method_col].iloc[0]]
    majority = first.groupby("set")["label"].apply(lambda s: max(s.mean(), 1 - s.mean()))
    if gates is not None:
        table["gate"] = ["valid" if gates.get(n, True) else "FLAGGED" for n in table.index]
    table.loc["chance"] = [format(chance, fmt) for _ in sets] + ([""] if gates is not None else [])
    table.loc["majority-class rate"] = [format(majority[s], fmt) for s in sets] + ([""] if gates is not None else [])
    return table


def versus_reference(values: pd.DataFrame, column: str, reference: str, *, what: str,
                     names: Sequence[str] | None = None, ratio: bool = False, statistic: Callable | None = None,
                     gates: Mapping[str, Any] | None = None, key: Sequence[str] = ("seed", "index"),
                     method_col: str = "method", seed: int = 0, n_boot: int = 2000, quiet: bool = True,
                     fmt: str = ".3f") -> pd.DataFrame:
    """Compare a per-image quantity of each model with the same images under ``reference`` (paired).

    Parameters
    ----------
    values : DataFrame with columns ``method_col``, ``column`` and the ``key`` columns that identify
        an image (for example ``seed`` and ``index``: the same counterfactual image for every model)
    column : the per-image quantity (``change_pp``, ``correct``, ``rma``, ...)
    reference : the model every other one is compared with (the uncorrected model)
    what : what is compared, in words (it names each comparison: ``"{what}: {name} vs {reference}"``)
    names : the models to compare (default: every other model, in order)
    ratio : compare ``statistic(model) / statistic(reference)`` (no effect 1) instead of the difference
    statistic : of one sample (default the mean; :func:`abs_mean` compares effect sizes whatever their sign)
    gates : ``{model: Gate}``: a comparison whose model or reference is flagged is "not interpretable"

    Returns
    -------
    DataFrame indexed by model: ``reference`` and ``value`` (the statistic of each side), ``effect``,
    ``low``, ``high`` (the difference or ratio and its paired bootstrap interval), ``verdict`` (the
    compare word) and ``reason`` (why not interpretable). The numbers of a not-interpretable row are
    NaN. ``attrs["comparisons"]`` holds the :class:`xaibias.findings.Comparison` objects.
    """
    from ..comparison import compare

    key = list(key)
    _need(values, [method_col, column, *key], "values")
    present = list(dict.fromkeys(values[method_col]))
    if reference not in present:
        raise ValueError(f"reference {reference!r} is not a model in values; models: {present}")
    names = [n for n in present if n != reference] if names is None else list(names)
    missing = [n for n in names if n not in present]
    if missing:
        raise ValueError(f"names {missing} are not models in values; models: {present}")
    ref = values[values[method_col] == reference].set_index(key)[column]
    if ref.index.has_duplicates:
        raise ValueError(f"values has several rows of {reference!r} for the same {key}; each image must appear once")
    stat = statistic if statistic is not None else np.mean
    rows, comps = {}, {}
    for name in names:
        mine = values[values[method_col] == name].set_index(key)[column]
        pair = pd.concat([mine, ref], axis=1, keys=["a", "b"], join="inner").dropna()
        if len(pair) < 2:
            raise ValueError(f"{name!r} and {reference!r} share {len(pair)} image(s) on {key}; need at least 2")
        g = [gates[n] for n in (name, reference) if gates is not None and n in gates]
        c = compare(pair["a"].to_numpy(float), pair["b"].to_numpy(float), name=f"{what}: {name} vs {reference}",
                    a_label=str(name), b_label=str(reference), paired=True, ratio=ratio, statistic=statistic,
                    gates=g, seed=seed, n_boot=n_boot, quiet=quiet, fmt=fmt)
        comps[name] = c
        ok = c.interpretable
        rows[name] = {"reference": stat(pair["b"].to_numpy(float)) if ok else np.nan,
                      "value": stat(pair["a"].to_numpy(float)) if ok else np.nan,
                      "effect": c.value if ok else np.nan, "low": c.low if ok else np.nan,
                      "high": c.high if ok else np.nan, "verdict": c.word, "n": len(pair), "reason": c.reason}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = method_col
    out.attrs["comparisons"] = comps
    out.attrs["kind"] = "ratio" if ratio else "difference"
    return out


def print_failed(gates: Mapping[str, Any], candidates: Sequence[str] | None = None) -> list[str]:
    """Print one line per flagged model among ``candidates``: a failed correction, no metric read from it.

    Returns the names of the flagged models.
    """
    names = list(gates) if candidates is None else list(candidates)
    failed = [n for n in names if n in gates and not gates[n]]
    for n in failed:
        print(f"FAILED CORRECTION {n}: {gates[n].reason}. No metric of this model is read below; its rows say "
              "'not interpretable'.")
    return failed


def outcomes(models: Mapping[str, Any], sets: Mapping[str, Any], *, inserted: Mapping[str, Any] | None = None,
             base: str = "clean", poisoned: Any = None, groups: str | None = None,
             artifacts: Sequence[str] | None = None, seed: int | None = None) -> dict[str, pd.DataFrame]:
    """Per-image outcomes of every model, the raw material of :func:`model_gates` and :func:`versus_reference`.

    Parameters
    ----------
    models : ``{name: model}``
    sets : ``{set name: dataset}`` (``.images``, ``.labels``); accuracy is recorded on each
    inserted : ``{artifact: images}``, the ``base`` set's images with that artifact pasted in (the
        same counterfactual images for every model); the change of P(class 1) is recorded, in points
    base : the set the insertions and ``poisoned`` were made from
    poisoned : images of the ``base`` set with every artifact pasted in; accuracy against the
        ``base`` labels is recorded as set ``"poisoned"``
    groups : the name of a set whose images are grouped by class x pattern of ``artifacts``
        (:func:`xaibias.analysis.groups.group_ids`) for worst-group accuracy
    seed : written into a ``seed`` column of every table when given

    Returns
    -------
    dict with ``"accuracy"`` (method, set, index, label, correct), ``"insertion"`` (method, artifact,
    index, change_pp) and, with ``groups``, ``"groups"`` (method, index, group, correct).
    """
    from ..analysis.groups import group_ids
    from ..models import predict, predict_proba

    if base not in sets:
        raise ValueError(f"base={base!r} is not a key of sets; sets are {list(sets)}")
    if groups is not None and (groups not in sets or artifacts is None):
        raise ValueError("groups= must name a key of sets, and artifacts= must list the artifacts that define the groups")
    acc, ins, grp = [], [], []
    labels = {k: np.asarray(ds.labels).reshape(-1) for k, ds in sets.items()}
    gid = group_ids(sets[groups].labels, sets[groups].artifacts[list(artifacts)]) if groups is not None else None
    for name, model in models.items():
        for k, ds in sets.items():
            correct = predict(model, ds.images).cpu().numpy() == labels[k]
            acc.append(pd.DataFrame({"method": name, "set": k, "index": np.arange(len(correct)), "label": labels[k],
                                     "correct": correct}))
            if k == groups:
                grp.append(pd.DataFrame({"method": name, "index": np.arange(len(correct)), "group": gid,
                                         "correct": correct}))
        if poisoned is not None:
            correct = predict(model, poisoned).cpu().numpy() == labels[base]
            acc.append(pd.DataFrame({"method": name, "set": "poisoned", "index": np.arange(len(correct)),
                                     "label": labels[base], "correct": correct}))
        if inserted:
            p0 = predict_proba(model, sets[base].images)[:, 1].cpu().numpy()
            for a, x in inserted.items():
                change = 100 * (predict_proba(model, x)[:, 1].cpu().numpy() - p0)
                ins.append(pd.DataFrame({"method": name, "artifact": a, "index": np.arange(len(change)),
                                         "change_pp": change}))
    out = {"accuracy": pd.concat(acc, ignore_index=True)}
    if ins:
        out["insertion"] = pd.concat(ins, ignore_index=True)
    if grp:
        out["groups"] = pd.concat(grp, ignore_index=True)
    if seed is not None:
        out = {k: v.assign(seed=seed) for k, v in out.items()}
    return out


def artifact_effects(insertion: pd.DataFrame, reference: str, *, gates: Mapping[str, Any] | None = None,
                     names: Sequence[str] | None = None, seed: int = 0, n_boot: int = 2000) -> pd.DataFrame:
    """Each model's insertion effect per artifact against ``reference``'s on the same images.

    For every artifact the reference's own effect is compared with no effect (0): an artifact whose
    effect is distinguishable from 0 is *used* by the reference. Then for every model and artifact the
    size of the effect, ``|mean change|``, is compared with the reference's (paired, a difference in
    points: "clearly lower" = a smaller effect, "clearly higher" = a larger one), its sign is checked
    against the reference's (an effect can shrink in size by turning around), and for the used
    artifacts also as a ratio (the share of the reference's effect that is left) and against half
    (``halved``: the ratio's interval lies wholly below 0.5, a :func:`xaibias.findings.compare` against 0.5).

    Parameters
    ----------
    insertion : DataFrame with columns ``method``, ``artifact``, ``seed``, ``index``, ``change_pp``
        (:func:`outcomes` concatenated over seeds)
    reference : the uncorrected model
    gates : ``{model: Gate}``; a row resting on a flagged model is "not interpretable", without numbers

    Returns
    -------
    DataFrame indexed by (method, artifact): ``effect (pp)`` (the signed mean change), ``reference (pp)``,
    ``size vs reference`` (the compare word of the difference of sizes), ``size diff low``/``high``,
    ``effect vs 0`` (the model's own effect against no effect), ``sign reversed`` (1.0 when the
    reference uses the artifact and the model's effect is distinguishable from 0 in the other
    direction: a smaller size can then be a new shortcut the other way; else 0.0, NaN when flagged),
    ``share of reference`` with ``share low``/``high`` (used artifacts only), ``halved`` (1.0 / 0.0, used
    artifacts only, else NaN) and ``used by reference`` (bool). ``attrs["used"]`` holds the reference's
    comparisons with 0 per artifact.
    """
    from ..comparison import compare

    _need(insertion, ["method", "artifact", "seed", "index", "change_pp"], "insertion")
    g = {} if gates is None else gates
    used: dict[str, Any] = {}
    rows = []
    for a, sub in insertion.groupby("artifact", sort=False):
        ref = sub[sub["method"] == reference]
        if len(ref) < 2:
            raise ValueError(f"reference {reference!r} has no insertion rows for {a!r}")
        used[a] = compare(ref["change_pp"].to_numpy(float), 0.0, name=f"{a} insertion effect of {reference} (pp)",
                          a_label=reference, b_label="no effect", gates=[g[reference]] if reference in g else [],
                          seed=seed, n_boot=n_boot, quiet=True, fmt=".1f")
        is_used = used[a].distinguishable
        size = versus_reference(sub, "change_pp", reference, names=names, statistic=abs_mean, gates=gates, seed=seed,
                                n_boot=n_boot, what=f"size of the {a} insertion effect (pp)")
        share = versus_reference(sub, "change_pp", reference, names=names, statistic=abs_mean, ratio=True, gates=gates,
                                 seed=seed, n_boot=n_boot, what=f"size of the {a} insertion effect / {reference}'s") \
            if is_used else None
        means = sub.groupby("method")["change_pp"].mean().astype(float)
        for m, r in size.iterrows():
            ok = r["verdict"] != "not interpretable"
            own = compare(sub.loc[sub["method"] == m, "change_pp"].to_numpy(float), 0.0, name=f"{a} insertion effect of {m} (pp)",
                          a_label=str(m), b_label="no effect", gates=[g[k] for k in (m, reference) if k in g],
                          seed=seed, n_boot=n_boot, quiet=True, fmt=".1f")
            flipped = is_used and own.distinguishable and (own.higher != used[a].higher)
            row = {"method": m, "artifact": a, "effect (pp)": means[m] if ok else np.nan,
                   "reference (pp)": means[reference], "size vs reference": r["verdict"],
                   "size diff low": r["low"], "size diff high": r["high"], "effect vs 0": own.word,
                   "sign reversed": float(flipped) if ok else np.nan, "used by reference": is_used,
                   "share of reference": np.nan, "share low": np.nan, "share high": np.nan, "halved": np.nan}
            if share is not None and ok:
                s = share.loc[m]
                half = compare((s["effect"], s["low"], s["high"]), 0.5, name=f"{a} effect share left by {m}, vs half",
                               a_label="share", b_label="half", quiet=True)
                row.update({"share of reference": s["effect"], "share low": s["low"], "share high": s["high"],
                            "halved": float(half.lower)})
            rows.append(row)
    out = pd.DataFrame(rows).set_index(["method", "artifact"])
    out.attrs["used"] = used
    return out
