"""The steps of ``xaibias audit``: read inputs, measure, and write the report atomically.

:func:`run_audit` builds ``report`` (a JSON-able dict holding every number of the page) and a few
figures, renders ``report.html`` from them (:mod:`xaibias.cli.report`), and writes everything into
a temporary folder beside ``--out`` that is renamed to ``--out`` only when complete. The relevance
maps live in a resumable HDF5 file in a cache folder keyed by model and data, so a killed audit
continues where it stopped, and its ``report.json`` equals that of an uninterrupted run (the
``run`` entry, with times and paths, aside).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .. import __version__, config
from .._cache import content_hash
from ..analysis.groups import group_accuracy
from ..comparison import estimate
from ..validity import model_gate
from ._inputs import DEMO_BIAS, AuditData, AuditError, data_facts, load_data, target_index
from ._model import load_model, probe, trainable

__all__ = ["run_audit", "PARTS", "AuditError"]

#: The parts ``--methods`` can choose from, in the order they run.
PARTS = ("accuracy", "insertion", "relevance", "clusters", "saliency", "virelay")
_NEEDS_RELEVANCE = ("clusters", "saliency", "virelay")
_MIN_GROUP = 5  # smallest artifact group whose accuracy can be the "worst group"
_MAX_K = 8  # largest cluster count the eigengap may choose
_REACT_PP = 2.0  # a reaction: insertion moves the target score by at least this much (and the CI excludes 0)
_PEAK_PERCENTILE = 98
_N_BOOT = 1000


def _f(x: Any, digits: int = 6) -> float | None:
    """A JSON-safe float (None for NaN), rounded so that reruns print the same text."""
    if x is None:
        return None
    v = float(x)
    return None if not np.isfinite(v) else round(v, digits)


def _ci(values: np.ndarray, seed: int) -> tuple[float | None, float | None, float | None]:
    from ..analysis import bootstrap_ci

    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return None, None, None
    if v.size < 2 or np.all(v == v[0]):
        return _f(v.mean()), _f(v.mean()), _f(v.mean())
    value, lo, hi = bootstrap_ci(v, n_boot=_N_BOOT, seed=seed)
    return _f(value), _f(lo), _f(hi)


def _say(msg: str) -> None:
    print(f"[xaibias audit] {msg}", flush=True)


# --------------------------------------------------------------------------------------------------
# distributed helpers (torchrun)


def _dist() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")
    return dist.get_rank(), dist.get_world_size()


def _leave(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


# --------------------------------------------------------------------------------------------------
# the output folder


def _check_out(out: Path) -> None:
    if out.exists():
        if not out.is_dir():
            raise AuditError(f"--out {out} exists and is a file; give a folder")
        names = sorted(p.name for p in out.iterdir())
        if names and "report.json" not in names:
            raise AuditError(f"--out {out} exists and holds files that are not an earlier audit ({names[:3]}); "
                             f"choose a new or empty folder")
    parent = out.resolve().parent
    if not parent.is_dir():
        raise AuditError(f"--out {out}: its parent folder {parent} does not exist")


def _publish(tmp: Path, out: Path) -> None:
    """Replace ``out`` by the finished ``tmp`` (a rename; an earlier audit is removed after)."""
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


# --------------------------------------------------------------------------------------------------
# measurements


def _stream(model: torch.nn.Module, data: AuditData, batch_size: int, map_size: int, device: str
            ) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """One pass over the audited images: class probabilities, labels and small uint8 thumbnails."""
    loader = torch.utils.data.DataLoader(data.audit, batch_size=batch_size, shuffle=False, num_workers=0)
    probs, labels, thumbs = [], [], []
    with torch.no_grad():
        for x, y in tqdm(loader, desc="predict", unit="batch"):
            x = x.float()
            probs.append(F.softmax(model(x.to(device)).float(), dim=1).cpu())
            labels.append(torch.as_tensor(y).long())
            t = F.adaptive_avg_pool2d(x, map_size) if x.shape[-1] != map_size else x
            thumbs.append((t.clamp(0, 1) * 255).round().to(torch.uint8))
    return torch.cat(probs).numpy().astype(np.float64), torch.cat(labels).numpy(), torch.cat(thumbs)


def _scores(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    pred = p.argmax(1)
    out: dict[str, Any] = {"n": int(len(y)), "accuracy": _f((pred == y).mean())}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["balanced_accuracy"] = _f(balanced_accuracy_score(y, pred))
    present = np.unique(y)
    if len(present) < 2:
        out["auroc"] = None
    elif p.shape[1] == 2:
        out["auroc"] = _f(roc_auc_score(y, p[:, 1]))
    else:
        q = p[:, present] / p[:, present].sum(1, keepdims=True)
        out["auroc"] = _f(roc_auc_score(y, q, multi_class="ovr", labels=present))
    counts = np.bincount(y, minlength=p.shape[1])
    out["majority_rate"] = _f(counts.max() / len(y))
    return out


def _skill_gate(y: np.ndarray, pred: np.ndarray, n_classes: int, seed: int) -> dict[str, Any]:
    """The package's model gate (:func:`xaibias.validity.model_gate`, as in the notebooks) on the balanced
    accuracy: its chance is 1/C whatever the class shares, so a melanoma model on photos with 13 %
    melanomas is not called skill-less because it loses to "always benign" in plain accuracy."""
    from sklearn.metrics import balanced_accuracy_score

    if len(np.unique(y)) < 2:
        return {"gate_ok": None, "gate": "not gated: the audited images hold a single class"}

    def bacc(pr: np.ndarray, t: np.ndarray) -> float:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(balanced_accuracy_score(t, pr))

    est = estimate(pred.astype(float), y.astype(float), statistic=bacc, strata=y, n_boot=_N_BOOT, seed=seed,
                   name="balanced accuracy")
    gate = model_gate("audited model", est, chance=1.0 / n_classes, measure="balanced accuracy", seed=seed,
                      set_names={"clean": "folder"}, quiet=True)
    return {"balanced_accuracy_ci_low": _f(est.low), "balanced_accuracy_ci_high": _f(est.high),
            "balanced_accuracy_chance": _f(1.0 / n_classes), "gate_ok": bool(gate), "gate": gate.line()}


def _accuracy(y: np.ndarray, p: np.ndarray, flags: pd.DataFrame, class_names: list[str], seed: int) -> dict:
    overall = _scores(y, p)
    pred = p.argmax(1)
    correct = (pred == y).astype(float)
    _, lo, hi = _ci(correct, seed)
    overall.update(accuracy_ci_low=lo, accuracy_ci_high=hi, chance=_f(1.0 / p.shape[1]), auroc_chance=0.5)
    overall.update(_skill_gate(y, pred, p.shape[1], seed))
    by_artifact, groups = [], []
    for a in flags.columns:
        f = flags[a].to_numpy(bool)
        if not f.any() or f.all():
            continue
        # the groups of one artifact: class x (with, without), measured by the package's group_accuracy
        table = group_accuracy(y, pred, flags[[a]].astype(bool), class_names=class_names)
        for present in (True, False):
            sel = f == present
            by_artifact.append({"artifact": a, "present": present, **_scores(y[sel], p[sel])})
            groups += [{"artifact": a, "present": present, "class": row["class"], "n": int(row["n"]),
                        "accuracy": _f(row["accuracy"])} for _, row in table[table[a] == present].iterrows()]
    # the worst group over every artifact's groups (a tie goes to the larger group)
    big = [g for g in groups if g["n"] >= _MIN_GROUP]
    worst = min(big, key=lambda g: (g["accuracy"], -g["n"])) if big else None
    return {"overall": overall, "by_artifact": by_artifact, "groups": groups, "worst_group": worst,
            "min_group_size": _MIN_GROUP}


def _insertion(model: torch.nn.Module, data: AuditData, target: int, seed: int, batch_size: int) -> dict:
    from ..analysis import GEBI_TABLE1, bias_insertion
    from ..data import ARTIFACTS

    n = len(data.audit)
    step = max(batch_size, 128)
    per = []
    for ci, lo in enumerate(tqdm(range(0, n, step), desc="insert artifacts", unit="chunk")):
        idx = np.arange(lo, min(n, lo + step))
        x = torch.stack([data.audit[int(i)][0] for i in idx])
        y = torch.as_tensor([int(data.audit[int(i)][1]) for i in idx])
        present = data.artifacts.iloc[idx].reset_index(drop=True) if len(data.artifacts.columns) else None
        lesion = data.lesion[torch.as_tensor(idx)] if data.lesion is not None else None
        _, pi = bias_insertion(model, x, y, artifacts=ARTIFACTS, target_class=target, seed=seed + ci,
                               present=present, lesion_masks=lesion, class_names=data.class_names,
                               batch_size=batch_size, return_per_image=True, progress=False)
        pi["index"] += lo
        per.append(pi)
    per_image = pd.concat(per, ignore_index=True)
    rows = []
    for a in ARTIFACTS:
        pa = per_image[per_image["artifact"] == a]
        for cls in ["all", *data.class_names]:
            sub = pa if cls == "all" else pa[pa["true_class"] == cls]
            used = sub[~sub["skipped"]]
            ch = used["change_pp"].to_numpy(float)
            mean, lo_, hi_ = _ci(ch, seed)
            k = len(used)
            rows.append({
                "artifact": a, "true_class": cls, "n": int(k), "n_skipped": int(sub["skipped"].sum()),
                "mean_change_pp": mean, "ci_low": lo_, "ci_high": hi_,
                "max_change_pp": _f(np.abs(ch).max()) if k else None,
                "flip_rate": _f(used["flipped"].mean()) if k else None,
                "to_target_rate": _f(((used["pred_before"] != target) & (used["pred_after"] == target)).mean())
                if k else None,
                "score_before": _f(used["score_before"].mean()) if k else None,
            })
    paper = [{"artifact": a, "true_class": c, "mean_change_pp": m, "max_change_pp": mx}
             for (a, c), (m, mx) in GEBI_TABLE1.items()]
    return {"target_class": data.class_names[target], "painters": list(ARTIFACTS), "rows": rows, "paper": paper,
            "baseline_pp": 0.0, "n_images": int(n)}


def _relevance(model: torch.nn.Module, data: AuditData, method: str, target: int, map_size: int,
               batch_size: int, cache_root: Path, model_hash: str, world: int, rank: int) -> Path:
    from ..explain.dataset import attribute_dataset, merge_shards, shard_path

    kwargs: dict[str, Any] = {"composite": "EpsilonPlusFlat"} if method == "lrp" else {}
    downsize = None if data.size == map_size else map_size
    key = content_hash(data.key, model_hash, method, kwargs, target, map_size, batch_size)
    folder = cache_root / f"relevance-{key}"
    folder.mkdir(parents=True, exist_ok=True)
    h5 = folder / "relevance.h5"
    state = "new"
    if h5.is_file():
        import h5py

        try:
            with h5py.File(h5, "r") as fh:
                done = fh["done"][:]
                state = "finished" if done.all() else ("partial" if done.any() else "new")
        except (OSError, KeyError):
            state = "new"
    if state == "finished":
        _say(f"reusing the finished relevance maps in {h5}")
    elif state == "partial":
        _say(f"resuming the relevance maps in {h5} ({int(done.sum())} of {len(done)} chunks done)")
    if world > 1:
        if not _complete(h5):
            attribute_dataset(model, data.audit, method=method, out=h5, batch_size=batch_size, downsize=downsize,
                              shard="auto", target=target, **kwargs)
        _barrier(world)
        if rank == 0 and not _complete(h5):
            merge_shards([shard_path(h5, r, world) for r in range(world)], h5)
    else:
        attribute_dataset(model, data.audit, method=method, out=h5, batch_size=batch_size, downsize=downsize,
                          target=target, **kwargs)
    return h5


def _complete(h5: Path) -> bool:
    if not h5.is_file():
        return False
    import h5py

    try:
        with h5py.File(h5, "r") as fh:
            return bool(fh.attrs.get("complete"))
    except OSError:
        return False


def _read_maps(h5: Path) -> np.ndarray:
    import h5py

    with h5py.File(h5, "r") as fh:
        return fh["attribution"][:, 0].astype(np.float32)


def _clusters(R: np.ndarray, thumbs: torch.Tensor, flags: pd.DataFrame, target: int,
              class_names: list[str], seed: int) -> tuple[dict, dict]:
    from ..analysis import GEBI, SpRAy, agreement_baselines, cluster_agreement, cluster_artifact_table

    # every audited image, explained for the target class: a strategy tied to an artifact shows as a
    # cluster of images that carry it (restricting to images predicted as the target class, as SpRAy
    # per class does, leaves little contrast when the artifact decides that prediction)
    sel, scope = np.arange(len(R)), f"audited images (relevance for {class_names[target]})"
    nonzero = np.abs(R[sel]).reshape(len(sel), -1).max(1) > 0
    n_zero = int((~nonzero).sum())
    sel = sel[nonzero]
    if len(sel) < 3:
        raise _Skip(f"only {len(sel)} non-zero relevance maps; clustering needs at least 3")
    Rs = torch.from_numpy(R[sel])
    Xs = thumbs[torch.as_tensor(sel)].float() / 255.0
    art = flags.iloc[sel].reset_index(drop=True)
    cols = [a for a in art.columns if art[a].any()]
    n_neighbors = min(10, len(sel) - 1)
    out: dict[str, Any] = {"scope": scope, "n": int(len(sel)), "n_zero_maps": n_zero, "n_neighbors": n_neighbors,
                           "max_k": _MAX_K, "methods": {}}
    fitted: dict[str, Any] = {"index": sel, "images": Xs, "relevance": Rs}
    for name, est in tqdm((("SpRAy", SpRAy(n_clusters=2, n_neighbors=n_neighbors, random_state=seed)),
                           ("GEBI", GEBI(n_clusters=2, image_weight=1.0, n_neighbors=n_neighbors, random_state=seed))),
                          desc="cluster relevance", unit="method"):
        est.fit(Rs, Xs)
        k = est.suggest_n_clusters(2, max(2, min(_MAX_K, len(est.eigenvalues_) - 1)))
        labels = est.labels_for(k)
        entry: dict[str, Any] = {"k": int(k), "eigenvalues": [_f(v) for v in est.eigenvalues_[:12]],
                                 "sizes": np.bincount(labels, minlength=k).astype(int).tolist()}
        if cols:
            agree = cluster_agreement(labels, art[cols])
            base = agreement_baselines(labels, art[cols], seed=seed)
            comp = cluster_artifact_table(labels, art[cols])
            entry["agreement"] = [
                {"artifact": r.artifact, "best_cluster": int(r.best_cluster), "precision": _f(r.precision),
                 "recall": _f(r.recall), "f1": _f(r.f1), "baseline_f1": _f(base.loc[r.artifact, "f1_one_cluster"]),
                 "random_f1": _f(base.loc[r.artifact, "f1_random"]),
                 "random_f1_high": _f(base.loc[r.artifact, "f1_random_high"]), "support": int(r.support)}
                for r in agree.itertuples()
            ]
            entry["composition"] = [
                {"cluster": int(c), "size": int(row["size"]), **{a: _f(row[a]) for a in cols}}
                for c, row in comp.iterrows()
            ]
            entry["overall_rates"] = {a: _f(art[a].mean()) for a in cols}
            big = comp[comp["size"] >= min(_MIN_GROUP, len(labels))]
            entry["richest"] = [
                {"artifact": a, "cluster": int(big[a].idxmax()), "size": int(big.loc[big[a].idxmax(), "size"]),
                 "share": _f(big[a].max()), "overall": _f(art[a].mean()), "lift": _f(big[a].max() - art[a].mean())}
                for a in cols
            ]
        out["methods"][name] = entry
        fitted[name] = (est, labels)
    out["artifacts"] = cols
    return out, fitted


class _Skip(Exception):
    """A part cannot run on these inputs; the message says why (shown in the report)."""


def _saliency(R: np.ndarray, thumbs: torch.Tensor, data: AuditData, labels: np.ndarray, seed: int) -> dict:
    from ..analysis import global_saliency, mean_saliency, peak_saliency
    from ..data import segment_ink

    h = R.shape[-1]
    masks: dict[str, tuple[torch.Tensor, str]] = {}
    for a, m in data.masks.items():
        if m.shape[-1] != h:
            m = F.adaptive_avg_pool2d(m.float().unsqueeze(1), h).squeeze(1) > 0.5
        masks[a] = (m.bool(), "painted (synthetic ground truth)")
    if "ink" not in masks:
        ink = segment_ink(thumbs.float() / 255.0)
        if "ink" in data.artifacts.columns:
            ink = ink & torch.from_numpy(np.array(data.artifacts["ink"], dtype=bool))[:, None, None]
        masks["ink"] = (ink, "segment_ink (colour thresholds)")
    rows, skipped = [], {}
    Rt = torch.from_numpy(R).double()
    nonzero = Rt.abs().flatten(1).amax(1) > 0
    for a, (m, how) in masks.items():
        use = (m.flatten(1).any(1) & nonzero).nonzero().flatten()
        if len(use) < 2:
            skipped[a] = f"{len(use)} audited image(s) with a non-empty {a} mask; need at least 2"
            continue
        r, mm = Rt[use], m[use]
        A = r.abs() / r.abs().flatten(1).mean(1)[:, None, None]
        ms = mean_saliency(A, mm)
        ps = peak_saliency(r, mm, percentile=_PEAK_PERCENTILE, absolute=True)
        area = mm.flatten(1).float().mean(1).numpy()
        m_v, m_lo, m_hi = _ci(ms.to_numpy(), seed)
        p_v, p_lo, p_hi = _ci(ps.to_numpy(), seed)
        by_class = global_saliency(ms.to_numpy(), labels[use.numpy()][ms.index.to_numpy()],
                                   class_names=data.class_names, seed=seed)
        rows.append({
            "artifact": a, "mask_source": how, "n": int(len(ms)), "mean_saliency": m_v, "mean_ci_low": m_lo,
            "mean_ci_high": m_hi, "mean_baseline": 1.0, "peak_share": p_v, "peak_ci_low": p_lo,
            "peak_ci_high": p_hi, "peak_baseline": _f(area.mean()),
            "by_class": [{"class": r_.class_name, "n": int(r_.n), "mean_saliency": _f(r_.mean),
                          "ci_low": _f(r_.ci_low), "ci_high": _f(r_.ci_high)} for r_ in by_class.itertuples()],
        })
    skipped["concept heatmaps"] = "xaibias.analysis has no concept activation vectors (notebook 07) in this version"
    return {"rows": rows, "skipped": skipped, "percentile": _PEAK_PERCENTILE}


def _verdict(report: dict) -> dict:
    out: dict[str, Any] = {"threshold_pp": _REACT_PP, "reacts_to": [], "ignores": [], "clusters": None,
                           "worst_group": report.get("accuracy", {}).get("worst_group"), "no_skill": None}
    acc = report.get("accuracy", {}).get("overall")
    if acc and acc.get("gate_ok") is not None:
        out["no_skill"] = not acc["gate_ok"]
    ins = report.get("insertion")
    if ins:
        heads = [r for r in ins["rows"] if r["true_class"] == "all" and r["mean_change_pp"] is not None]
        heads.sort(key=lambda r: -abs(r["mean_change_pp"]))
        for r in heads:
            clear = abs(r["mean_change_pp"]) >= _REACT_PP and (r["ci_low"] > 0 or r["ci_high"] < 0)
            (out["reacts_to"] if clear else out["ignores"]).append(
                {k: r[k] for k in ("artifact", "mean_change_pp", "ci_low", "ci_high", "flip_rate", "to_target_rate",
                                   "n")} if clear else r["artifact"])
    cl = report.get("clusters")
    if cl and cl.get("methods"):
        best = None
        for method, entry in cl["methods"].items():
            for r in entry.get("richest", []):
                if best is None or r["lift"] > best["lift"]:
                    best = {"method": method, **r}
        out["clusters"] = best
    return out


# --------------------------------------------------------------------------------------------------
# the command


def _parts(text: str) -> list[str]:
    chosen = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in chosen if p not in PARTS]
    if unknown or not chosen:
        raise AuditError(f"--methods {text!r}: unknown part(s) {unknown}; choose from {', '.join(PARTS)}")
    return [p for p in PARTS if p in chosen]


def run_audit(args: Any, argv: list[str] | None = None) -> Path | None:
    """Run the audit described by parsed ``args``; return the output folder (None on other ranks)."""
    from . import report as _report

    t0, c0 = time.time(), time.process_time()
    started = _dt.datetime.now().isoformat(timespec="seconds")
    parts = _parts(args.methods)
    seed = config.SEED if args.seed is None else int(args.seed)
    rank, world = _dist()
    device = args.device or config.device()
    if world > 1 and device == "cuda":
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', rank))}"
    spec = args.model or "small_vgg"
    size = args.size or (64 if args.demo or spec.startswith("small_") else 224)
    out = Path(args.out).expanduser()
    _check_out(out)
    config.seed_everything(seed)

    train_needed = trainable(spec)
    _say(f"reading {'the demo data' if args.demo else args.data} at {size} px")
    data = load_data(args, seed, size, train_needed)
    if len(data.audit) < 2:
        raise AuditError(f"only {len(data.audit)} image(s) to audit; need at least 2")
    _say(f"model: {spec}")
    if train_needed and world > 1 and rank != 0:
        _barrier(world)  # rank 0 trains (and caches) first
    model, info = load_model(args, data, seed, device)
    if train_needed and world > 1 and rank == 0:
        _barrier(world)
    probe(model, data, info, device)
    target = target_index(data, args.target_class)
    method = args.explainer or ("input_x_gradient" if info.source == "torchscript" else "lrp")
    from .. import explain

    known = explain.available_methods() if hasattr(explain, "available_methods") else explain.METHODS
    if method not in known:
        raise AuditError(f"--explainer {method!r} is not an attribution method; choose from {', '.join(known)}")
    map_size = min(size, 64)
    cache_root = Path(args.cache_dir).expanduser() if args.cache_dir else config.cache_dir("audit")
    skipped: dict[str, str] = {}
    for p in _NEEDS_RELEVANCE:
        if p in parts and "relevance" not in parts:
            parts.remove(p)
            skipped[p] = "needs the relevance maps, and relevance is not in --methods"
    for p in PARTS:
        if p not in parts and p not in skipped:
            skipped[p] = "not chosen in --methods"

    if world > 1 and rank != 0:
        if "relevance" in parts:
            _relevance(model, data, method, target, map_size, args.batch_size, cache_root, info.hash, world, rank)
        _leave(world)
        return None

    for stale in out.resolve().parent.glob(f".{out.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)  # left by a killed audit into the same --out
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.resolve().parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes a private folder; the report is meant to be shared
    try:
        report: dict[str, Any] = {
            "format": "xaibias-audit", "version": 1, "xaibias_version": __version__,
            "settings": {"seed": seed, "size": size, "map_size": map_size, "fast": bool(config.FAST),
                         "explainer": method, "composite": "EpsilonPlusFlat" if method == "lrp" else None,
                         "target_class": data.class_names[target], "batch_size": args.batch_size,
                         "max_images": args.max_images, "parts": parts,
                         "demo_bias": {a: list(v) for a, v in DEMO_BIAS.items()} if args.demo else None},
            "model": {"source": info.source, "name": info.name, "arch": info.arch, "n_parameters": info.n_parameters,
                      "hash": info.hash},
            "data": data_facts(data),
            "skipped": skipped,
        }
        figures: dict[str, str] = {}
        _say(f"auditing {len(data.audit)} images on {device}")
        probs, labels, thumbs = _stream(model, data, args.batch_size, map_size, device)
        y_pred = probs.argmax(1)
        if "accuracy" in parts:
            report["accuracy"] = _accuracy(labels, probs, data.artifacts, data.class_names, seed)
        if "insertion" in parts:
            report["insertion"] = _insertion(model, data, target, seed, args.batch_size)
        R = None
        if "relevance" in parts:
            h5 = _relevance(model, data, method, target, map_size, args.batch_size, cache_root, info.hash, world,
                            rank)
            R = _read_maps(h5)
            report["relevance"] = {"n": int(len(R)), "map_size": int(R.shape[-1])}
            figures["relevance"] = _report.relevance_figure(thumbs, R, labels, y_pred, data, target, seed)
            cache_file = str(h5)
        else:
            cache_file = None
        fitted = None
        if "clusters" in parts and R is not None:
            try:
                report["clusters"], fitted = _clusters(R, thumbs, data.artifacts, target, data.class_names, seed)
                figures.update(_report.cluster_figures(report["clusters"], fitted, data.artifacts, seed))
            except _Skip as why:
                skipped["clusters"] = str(why)
        if "saliency" in parts and R is not None:
            report["saliency"] = _saliency(R, thumbs, data, labels, seed)
            if not report["saliency"]["rows"]:
                skipped["saliency"] = "no artifact mask with at least two images"
        if "virelay" in parts and R is not None:
            if fitted is None:
                skipped["virelay"] = "needs the clusters"
            else:
                report["virelay"] = _virelay(tmp / "virelay", thumbs, R, probs, labels, fitted, data, info, method,
                                              target)
        report["verdict"] = _verdict(report)
        report["run"] = {
            "started": started, "wall_s": _f(time.time() - t0, 1), "cpu_s": _f(time.process_time() - c0, 1),
            "argv": argv or [], "out": str(out), "relevance_file": cache_file, "device": device,
            "torch_threads": torch.get_num_threads(), "world_size": world,
        }
        (tmp / "report.json").write_text(json.dumps(report, indent=1, sort_keys=False))
        (tmp / "report.html").write_text(_report.render(report, figures), encoding="utf-8")
        _publish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _leave(world)
    _say(_report.verdict_text(report))
    _say(f"wrote {out / 'report.html'} and {out / 'report.json'} in {report['run']['wall_s']} s "
         f"({report['run']['cpu_s']} s CPU)")
    return out


def _virelay(folder: Path, thumbs: torch.Tensor, R: np.ndarray, probs: np.ndarray, labels: np.ndarray,
             fitted: dict, data: AuditData, info: Any, method: str, target: int) -> dict:
    from ..analysis import write_virelay_project

    est, _ = fitted["SpRAy"]
    kmax = min(_MAX_K, est.embedding_.shape[1], len(fitted["index"]))
    write_virelay_project(folder, thumbs.float() / 255.0, torch.from_numpy(R), torch.from_numpy(probs).float(),
                          torch.from_numpy(labels), {target: (est, fitted["index"])},
                          class_names=[str(c) for c in data.class_names], ks=range(2, kmax + 1),
                          model_name=info.name, attribution_method=method, analysis_method="SpRAy")
    return {"folder": "virelay", "files": sorted(p.name for p in folder.iterdir()), "analysis": "SpRAy",
            "ks": list(range(2, kmax + 1))}
