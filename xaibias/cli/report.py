"""``report.html`` of ``xaibias audit``: one self-contained page rendered from ``report.json``.

Every number in the page's text is read from the report dict (the same dict written to
``report.json``) and printed with a fixed rounding; the page computes nothing itself. Figures are
PNG data URIs; tables sort on a click on their header through a few lines of inline script, so the
file needs no server and no external script or style sheet.
"""

from __future__ import annotations

import base64
import html
import io
import os
from typing import Any

import numpy as np
import pandas as pd
import torch

os.environ.setdefault("MPLBACKEND", "Agg")

__all__ = ["render", "verdict_text", "relevance_figure", "cluster_figures", "SECTIONS"]

#: Section ids of the page, in order (a test checks that a browser shows each of them).
SECTIONS = ("verdict", "data", "accuracy", "insertion", "relevance", "clusters", "saliency", "virelay", "run")

_TITLES = {
    "verdict": "Verdict", "data": "Data", "accuracy": "Accuracy and artifact groups",
    "insertion": "Counterfactual insertion", "relevance": "Relevance maps", "clusters": "Clusters of explanations",
    "saliency": "Global saliency on artifact masks", "virelay": "ViRelAy project", "run": "Run and settings",
}


# --------------------------------------------------------------------------------------------------
# figures


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=72, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


#: The sixteen images of :func:`relevance_figure` are drawn from ``default_rng([seed, _FIGURE_STREAM])``,
#: a random stream of their own for the audit's seed.
_FIGURE_STREAM = 3


def relevance_figure(thumbs: torch.Tensor, R: np.ndarray, labels: np.ndarray, y_pred: np.ndarray, data: Any,
                     target: int, seed: int) -> str:
    """Sixteen random audited images with their relevance for the target class (red: for, blue: against)."""
    from .. import viz

    rng = np.random.default_rng([seed, _FIGURE_STREAM])
    idx = np.sort(rng.permutation(len(R))[: min(16, len(R))])
    names = data.class_names
    titles = []
    for i in idx:
        flags = [a for a in data.artifacts.columns if bool(data.artifacts[a].iloc[i])][:2]
        titles.append(f"{names[labels[i]]}->{names[y_pred[i]]}" + (f"\n{'+'.join(flags)}" if flags else ""))
    fig = viz.heatmap_grid(torch.from_numpy(R[idx]), thumbs[torch.as_tensor(idx)].float() / 255.0, titles=titles,
                           ncols=8, size=1.5)
    return _png(fig)


def cluster_figures(summary: dict, fitted: dict, flags: pd.DataFrame, seed: int) -> dict[str, str]:
    """Eigenvalue plots of SpRAy and GEBI and one gallery per method (six members per cluster)."""
    import matplotlib.pyplot as plt

    from .. import viz

    out = {}
    fig, axes = plt.subplots(1, 2, figsize=(8, 2.8))
    for ax, name in zip(axes, ("SpRAy", "GEBI")):
        est, _ = fitted[name]
        viz.eigenvalue_plot(est.eigenvalues_, ax=ax, k=summary["methods"][name]["k"],
                            title=f"{name}: Laplacian eigenvalues")
    fig.tight_layout()
    out["eigenvalues"] = _png(fig)
    art = flags.iloc[fitted["index"]].reset_index(drop=True)
    for name in ("SpRAy", "GEBI"):
        _, labels = fitted[name]
        notes = {}
        for c in np.unique(labels):
            members = art[labels == c]
            top = members.mean().sort_values(ascending=False).head(2) if len(members.columns) else pd.Series()
            notes[int(c)] = ", ".join(f"{a} {v:.0%}" for a, v in top.items() if v > 0)
        fig = viz.cluster_gallery(fitted["images"], fitted["relevance"], labels, n=6, notes=notes, seed=seed)
        out[f"gallery_{name}"] = _png(fig)
    return out


# --------------------------------------------------------------------------------------------------
# formatting: every number goes through one of these


def _e(x: Any) -> str:
    return html.escape(str(x))


def _num(v: Any, d: int = 3) -> str:
    return "&ndash;" if v is None else f"{v:.{d}f}"


def _pp(v: Any) -> str:
    if v is None:
        return "&ndash;"
    text = f"{v:+.1f}"
    return "0.0" if text in ("+0.0", "-0.0") else text


def _pct(v: Any) -> str:
    return "&ndash;" if v is None else f"{100 * v:.1f}%"


def _int(v: Any) -> str:
    return "&ndash;" if v is None else str(int(v))


def _ci(lo: Any, hi: Any, f: Any = _pp) -> str:
    return "" if lo is None else f'<span class="ci">[{f(lo)}, {f(hi)}]</span>'


def _cell(text: str, value: Any = None) -> str:
    attr = f' data-v="{float(value)!r}"' if isinstance(value, (int, float)) and not isinstance(value, bool) else ""
    return f"<td{attr}>{text}</td>"


def _table(head: list[str], rows: list[list[str]], cls: str = "sortable") -> str:
    th = "".join(f'<th title="sort">{h}</th>' for h in head)
    body = "".join("<tr>" + "".join(r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def _img(figures: dict, key: str, alt: str) -> str:
    src = figures.get(key)
    return f'<figure><img src="{src}" alt="{_e(alt)}"><figcaption>{_e(alt)}</figcaption></figure>' if src else ""


def _annotated_as(report: dict) -> dict[str, str]:
    """Flag column or painter -> the annotation CSV's name for it (only when the flags come from such a CSV)."""
    out = {}
    for r in report.get("data", {}).get("artifact_names") or []:
        if r.get("annotation"):
            out[r["column"]] = r["annotation"]
            if r.get("painter"):
                out[r["painter"]] = r["annotation"]
    return out


def _art(report: dict, name: str) -> str:
    """An artifact as the annotation names it, with the painter / flag name beside it (``dark_corner (frame)``)."""
    ann = _annotated_as(report).get(name)
    return _e(name) if ann is None or ann == name else f'{_e(ann)} <span class="ci">({_e(name)})</span>'


def _skip(report: dict, part: str) -> str:
    why = report.get("skipped", {}).get(part)
    return f'<p class="skip">Not run: {_e(why)}.</p>' if why else ""


# --------------------------------------------------------------------------------------------------
# sections


def verdict_text(report: dict) -> str:
    """The verdict as plain text (printed on the console at the end of an audit)."""
    v = report.get("verdict", {})
    target = report["settings"]["target_class"]
    if "insertion" not in report:
        return "no verdict: counterfactual insertion was not run"
    if v.get("no_skill"):
        o = report.get("accuracy", {}).get("overall", {})
        return f"not interpretable: {o.get('gate', 'the model failed its gate')} (the insertion table is in the report)"
    if not v.get("reacts_to"):
        return (f"the model reacts to none of the painted artifacts (no mean change of P({target}) of "
                f"{v['threshold_pp']:.1f} pp or more with an interval excluding zero)")
    names = _annotated_as(report)
    parts = [f"{r['artifact']}{' (annotated as ' + names[r['artifact']] + ')' if r['artifact'] in names else ''} "
             f"{r['mean_change_pp']:+.1f} pp [{r['ci_low']:+.1f}, {r['ci_high']:+.1f}]" for r in v["reacts_to"]]
    return f"the model reacts to: {'; '.join(parts)} (mean change of P({target}) when the artifact is pasted in)"


def _verdict(report: dict) -> str:
    v = report.get("verdict", {})
    target = _e(report["settings"]["target_class"])
    out = []
    o = report.get("accuracy", {}).get("overall")
    if v.get("no_skill") and o:
        interval = _ci(o["balanced_accuracy_ci_low"], o["balanced_accuracy_ci_high"], _num)
        out.append(f'<p class="skip">Not interpretable: the balanced accuracy {_num(o["balanced_accuracy"])} {interval} '
                   f'reaches chance ({_num(o["balanced_accuracy_chance"])}), so the model has not shown that it learned '
                   f'the classes, and what it reacts to is not read. The numbers are in the tables below.</p>')
        return "".join(out)
    if "insertion" not in report:
        out.append("<p>No verdict on artifacts: counterfactual insertion was not run.</p>")
    elif v.get("reacts_to"):
        items = "".join(
            f"<li><b>{_art(report, r['artifact'])}</b>: pasting it moves P({target}) by <b>{_pp(r['mean_change_pp'])} pp</b> "
            f"{_ci(r['ci_low'], r['ci_high'])} on average and changes {_pct(r['flip_rate'])} of the predictions "
            f"({_pct(r['to_target_rate'])} now say {target}); {_int(r['n'])} images.</li>"
            for r in v["reacts_to"])
        out.append(f"<p>The model <b>reacts to</b> these artifacts (mean change of at least "
                   f"{_num(v['threshold_pp'], 1)} pp, interval excluding zero), strongest first:</p><ul>{items}</ul>")
    else:
        out.append(f"<p>The model reacts to <b>none</b> of the painted artifacts (no mean change of "
                   f"{_num(v['threshold_pp'], 1)} pp or more with an interval excluding zero).</p>")
    if v.get("ignores"):
        out.append(f"<p>No clear reaction to: {', '.join(_art(report, a) for a in v['ignores'])}.</p>")
    c = v.get("clusters")
    if c:
        out.append(f"<p>Explanation clusters: {_pct(c['share'])} of the {_int(c['size'])} images of {_e(c['method'])} "
                   f"cluster {_int(c['cluster'])} carry <b>{_art(report, c['artifact'])}</b>, against {_pct(c['overall'])} of all "
                   f"clustered images: the model explains them alike.</p>")
    w = v.get("worst_group")
    if w:
        out.append(f"<p>Worst artifact group: {_e(w['class'])} images {'with' if w['present'] else 'without'} "
                   f"{_art(report, w['artifact'])}, accuracy {_pct(w['accuracy'])} on {_int(w['n'])} images.</p>")
    return "".join(out)


def _data(report: dict) -> str:
    d = report["data"]
    m = report["model"]
    counts = ", ".join(f"{_e(c)} {_int(n)}" for c, n in d["class_counts"].items())
    out = [f"<p>Source: <code>{_e(d['source'])}</code> ({_e(d['kind'])}). {_int(d['n_total'])} labelled images; "
           f"{_int(d['n_audited'])} audited ({counts})"
           + (f"; {_int(d['n_train'])} used for training." if d.get("n_train") else ".") + "</p>"]
    out.append(f"<p>Model: <code>{_e(m['name'])}</code> ({_e(m['source'])}"
               + (f", architecture <code>{_e(m['arch'])}</code>" if m.get("arch") else "")
               + f"), {_int(m['n_parameters'])} parameters, weights hash <code>{_e(m['hash'])}</code>.</p>")
    held = d.get("held_out")
    if held:
        out.append(f'<p class="note">The model was trained on {_pct(held["train_share"])} of the images (stratified '
                   f'by class) and is audited on the other {_pct(held["audit_share"])}, which it has not seen.</p>')
    for note in d.get("notes", []):
        out.append(f'<p class="note">{_e(note)}.</p>')
    if d.get("dropped"):
        out.append('<p class="note">Left out of DATA: '
                   + "; ".join(f"{_int(n)} image(s): {_e(why)}" for why, n in d["dropped"].items()) + ".</p>")
    rates = d.get("artifact_rates", {})
    if d.get("artifact_names"):
        rows = [[_cell(_e(r["annotation"]) if r["annotation"] else "&ndash; (not annotated)"), _cell(_e(r["column"])),
                 _cell(_e(r["painter"]) if r["painter"] else "&ndash; (no painter)"), _cell(_e(r["description"]))]
                for r in d["artifact_names"]]
        out.append("<p>Artifact names. The annotation CSV names each artifact by its column; the tables below give "
                   "that name, with the flag or painter name of xaibias beside it in grey. Insertion pastes the "
                   "painter's imitation of the artifact.</p>")
        out.append(_table(["annotation column", "flag column", "painter used for insertion", "what it is"], rows))
    if rates:
        classes = list(next(iter(d["artifact_rates_by_class"].values())).keys())
        rows = [[_cell(_art(report, a)), _cell(_pct(r), r)] + [_cell(_pct(d["artifact_rates_by_class"][a][c]),
                                                                     d["artifact_rates_by_class"][a][c])
                                                               for c in classes]
                for a, r in rates.items()]
        out.append("<p>Artifact flags over all labelled images of DATA (share of images that have each artifact), "
                   "overall and by class. An artifact much more common in one class is a shortcut a model can "
                   "learn.</p>")
        out.append(_table(["artifact", "all images", *[f"{_e(c)}" for c in classes]], rows))
    tr = d.get("train")
    if tr:
        counts = ", ".join(f"{_e(c)} {_int(n)}" for c, n in tr["class_counts"].items())
        out.append(f"<p>Training set: <code>{_e(tr['source'])}</code>, {_int(tr['n'])} images ({counts}).</p>")
        by = tr["artifact_rates_by_class"]
        if by:
            classes = list(next(iter(by.values())).keys())
            rows = [[_cell(_art(report, a))] + [_cell(_pct(v[c]), v[c]) for c in classes] for a, v in by.items()]
            out.append("<p>Artifact flags of the training images by class: the shortcuts the model could learn. "
                       "Compare them with DATA's table above: a tie that holds in training and not in DATA is what "
                       "the audit below should catch.</p>")
            out.append(_table(["artifact", *[_e(c) for c in classes]], rows))
    else:
        out.append("<p>No artifact flags for this data (no annotation CSV): group accuracy and cluster agreement "
                   "need them; insertion and saliency still run.</p>")
    return "".join(out)


def _accuracy(report: dict) -> str:
    a = report.get("accuracy")
    if not a:
        return _skip(report, "accuracy")
    o = a["overall"]
    rows = [[_cell("accuracy"), _cell(_num(o["accuracy"]) + " " + _ci(o["accuracy_ci_low"], o["accuracy_ci_high"],
                                                                        _num), o["accuracy"]),
             _cell(f"majority class {_num(o['majority_rate'])}, chance {_num(o['chance'])}", o["majority_rate"])],
            [_cell("balanced accuracy"), _cell(_num(o["balanced_accuracy"]), o["balanced_accuracy"]),
             _cell(f"chance {_num(o['chance'])}", o["chance"])],
            [_cell("AUROC"), _cell(_num(o["auroc"]), o["auroc"]), _cell(f"chance {_num(o['auroc_chance'])}",
                                                                         o["auroc_chance"])]]
    out = [f"<p>On {_int(o['n'])} audited images, each score beside what a model without any skill gets.</p>",
           _table(["score", "model", "trivial baseline"], rows)]
    if a["by_artifact"]:
        rows = [[_cell(_art(report, r["artifact"])), _cell("with" if r["present"] else "without"),
                 _cell(_int(r["n"]), r["n"]),
                 _cell(_num(r["accuracy"]), r["accuracy"]), _cell(_num(r["balanced_accuracy"]), r["balanced_accuracy"]),
                 _cell(_num(r["auroc"]), r["auroc"]), _cell(_num(r["majority_rate"]), r["majority_rate"])]
                for r in a["by_artifact"]]
        out.append("<p>By artifact: the images with and without each artifact. A model that leans on an artifact "
                   "scores well where artifact and class go together and badly where they do not.</p>")
        out.append(_table(["artifact", "images", "n", "accuracy", "balanced accuracy", "AUROC", "majority rate"],
                          rows))
        rows = [[_cell(_art(report, g["artifact"])), _cell("with" if g["present"] else "without"), _cell(_e(g["class"])),
                 _cell(_int(g["n"]), g["n"]), _cell(_num(g["accuracy"]), g["accuracy"])] for g in a["groups"]]
        w = a.get("worst_group")
        if w:
            out.append(f"<p>Worst group of one class with or without one artifact (among groups of at least "
                       f"{_int(a['min_group_size'])} images): <b>{_e(w['class'])} {'with' if w['present'] else 'without'} "
                       f"{_art(report, w['artifact'])}</b>, accuracy {_num(w['accuracy'])} on {_int(w['n'])} images.</p>")
        out.append("<details><summary>All groups of one class with or without one artifact</summary>"
                   + _table(["artifact", "images", "class", "n", "accuracy"], rows) + "</details>")
    return "".join(out)


def _insertion(report: dict) -> str:
    ins = report.get("insertion")
    if not ins:
        return _skip(report, "insertion")
    t = _e(ins["target_class"])
    names = _annotated_as(report)
    rows = []
    for r in ins["rows"]:
        named = [_cell(_e(names[r["artifact"]]) if r["artifact"] in names else "&ndash;")] if names else []
        rows.append([_cell(_e(r["artifact"])), *named, _cell(_e(r["true_class"])), _cell(_int(r["n"]), r["n"]),
                     _cell(_pp(r["mean_change_pp"]) + " " + _ci(r["ci_low"], r["ci_high"]), r["mean_change_pp"]),
                     _cell(_num(r["max_change_pp"], 1), r["max_change_pp"]), _cell(_pct(r["flip_rate"]), r["flip_rate"]),
                     _cell(_pct(r["to_target_rate"]), r["to_target_rate"]),
                     _cell(_int(r["n_skipped"]), r["n_skipped"])])
    out = [f"<p>Each painter pastes its artifact into every audited image that does not already have it, and the "
           f"change of P({t}) is measured (GEBI, Mikolajczyk et al.; their Table layout, plus an interval). A model "
           f"that ignores an artifact scores the trivial baseline of {_num(ins['baseline_pp'], 1)} pp and flips "
           f"nothing. Mean change in percentage points with a bootstrap interval over images; max change is the "
           f"largest absolute change; flips are changed predictions; 'to {t}' the share that now predicts {t}; "
           f"skipped images had the artifact already."
           + (" 'annotated as' is the annotation CSV's name for what each painter imitates." if names else "")
           + "</p>",
           _table(["painter", *(["annotated as"] if names else []), "true class", "n", "mean change (pp)", "max change (pp)", "flips", f"to {t}",
                   "skipped"], rows)]
    rows = [[_cell(_e(p["artifact"])), _cell(_e(p["true_class"])), _cell(_pp(p["mean_change_pp"]), p["mean_change_pp"]),
             _cell(_num(p["max_change_pp"], 2), p["max_change_pp"])] for p in ins["paper"]]
    out.append("<details><summary>For comparison: the GEBI paper's numbers (DenseNet on ISIC, P(malignant))"
               "</summary>" + _table(["artifact", "true class", "mean change (pp)", "max change (pp)"], rows)
               + "</details>")
    return "".join(out)


def _relevance(report: dict, figures: dict) -> str:
    r = report.get("relevance")
    if not r:
        return _skip(report, "relevance")
    s = report["settings"]
    comp = f" with the <code>{_e(s['composite'])}</code> composite" if s.get("composite") else ""
    return (f"<p>{_int(r['n'])} relevance maps for the class <b>{_e(s['target_class'])}</b> by "
            f"<code>{_e(s['explainer'])}</code>{comp}, stored at {_int(r['map_size'])} px in a resumable file. "
            f"Red pixels speak for {_e(s['target_class'])}, blue against; a model that uses an artifact lights it "
            f"up. Titles: true class, then predicted class, then the image's artifacts.</p>"
            + _img(figures, "relevance", "Random audited images with their relevance overlaid"))


def _clusters(report: dict, figures: dict) -> str:
    cl = report.get("clusters")
    if not cl:
        return _skip(report, "clusters")
    out = [f"<p>SpRAy clusters the relevance maps; GEBI clusters each map together with its image, so it also "
           f"separates strategies that look at the same place. Both cluster the {_int(cl['n'])} {_e(cl['scope'])} "
           f"with a {_int(cl['n_neighbors'])}-nearest-neighbour graph; the number of clusters k is the eigengap's "
           f"choice (at most {_int(cl['max_k'])}). A cluster much richer in one artifact than the whole set is a "
           f"strategy tied to that artifact.</p>"]
    if cl.get("n_zero_maps"):
        out.append(f"<p class=note>{_int(cl['n_zero_maps'])} all-zero maps were left out.</p>")
    out.append(_img(figures, "eigenvalues", "Laplacian eigenvalues; the dashed line marks the eigengap's k"))
    for name, e in cl["methods"].items():
        out.append(f"<h3>{_e(name)}: k = {_int(e['k'])}, cluster sizes {', '.join(_int(s) for s in e['sizes'])}</h3>")
        if e.get("agreement"):
            rows = [[_cell(_art(report, r["artifact"])), _cell(_int(r["support"]), r["support"]),
                     _cell(_int(r["best_cluster"]), r["best_cluster"]), _cell(_num(r["precision"]), r["precision"]),
                     _cell(_num(r["recall"]), r["recall"]), _cell(_num(r["f1"]), r["f1"]),
                     _cell(_num(r["baseline_f1"]), r["baseline_f1"]),
                     _cell(_num(r["random_f1"]) + f' <span class="ci">(high {_num(r["random_f1_high"])})</span>',
                           r["random_f1"])] for r in e["agreement"]]
            out.append("<p>Best-matching cluster per annotated artifact, beside two trivial clusterings: one cluster "
                       "holding every image (precision = the artifact's rate, recall = one), and the same cluster "
                       "sizes filled at random (mean, and high = the 95th percentile of the shuffles).</p>")
            out.append(_table(["artifact", "images with it", "best cluster", "precision", "recall", "F1",
                               "one-cluster F1", "random F1"], rows))
            arts = list(e["overall_rates"])
            rows = [[_cell(_int(c["cluster"]), c["cluster"]), _cell(_int(c["size"]), c["size"])]
                    + [_cell(_pct(c[a]), c[a]) for a in arts] for c in e["composition"]]
            rows.append([_cell("all"), _cell(_int(cl["n"]), cl["n"])]
                        + [_cell(_pct(e["overall_rates"][a]), e["overall_rates"][a]) for a in arts])
            out.append("<p>Share of each cluster's images that have each artifact; the last row is the whole set. "
                       "A cluster far above the last row gathers one artifact.</p>")
            out.append(_table(["cluster", "size", *[_art(report, a) for a in arts]], rows))
        out.append(_img(figures, f"gallery_{name}", f"{name}: six random members per cluster, relevance overlaid"))
    return "".join(out)


def _saliency(report: dict) -> str:
    s = report.get("saliency")
    if not s or not s["rows"]:
        extra = "".join(f"<li>{_e(a)}: {_e(w)}</li>" for a, w in (s or {}).get("skipped", {}).items())
        return _skip(report, "saliency") + (f"<ul>{extra}</ul>" if extra else "")
    rows, cls_rows = [], []
    for r in s["rows"]:
        rows.append([_cell(_art(report, r["artifact"])), _cell(_e(r["mask_source"])), _cell(_int(r["n"]), r["n"]),
                     _cell(_num(r["mean_saliency"], 2) + " " + _ci(r["mean_ci_low"], r["mean_ci_high"],
                                                                   lambda v: _num(v, 2)), r["mean_saliency"]),
                     _cell(_num(r["mean_baseline"], 2), r["mean_baseline"]),
                     _cell(_pct(r["peak_share"]) + " " + _ci(r["peak_ci_low"], r["peak_ci_high"], _pct),
                           r["peak_share"]),
                     _cell(_pct(r["peak_baseline"]), r["peak_baseline"])])
        for c in r["by_class"]:
            cls_rows.append([_cell(_e(r["artifact"])), _cell(_e(c["class"])), _cell(_int(c["n"]), c["n"]),
                             _cell(_num(c["mean_saliency"], 2) + " " + _ci(c["ci_low"], c["ci_high"],
                                                                           lambda v: _num(v, 2)), c["mean_saliency"])])
    out = [f"<p>Global saliency (Pfau et al.) on the images whose artifact mask is not empty. Mean saliency: "
           f"the mean absolute relevance on the mask relative to the image's mean (baseline: a model that looks "
           f"everywhere alike). Peak share: the share of the pixels above the {_int(s['percentile'])}th percentile "
           f"of relevance that fall on the mask (baseline: the mask's share of the image, what a map blind to the "
           f"artifact gets).</p>",
           _table(["artifact", "mask", "images", "mean saliency", "baseline", "peak share", "baseline"], rows),
           "<p>Mean saliency by class, with bootstrap intervals: a model that uses the artifact for one class "
           "looks at it more in that class.</p>",
           _table(["artifact", "class", "images", "mean saliency"], cls_rows)]
    if s.get("skipped"):
        out.append("<p>Not measured:</p><ul>" + "".join(f"<li>{_e(a)}: {_e(w)}</li>" for a, w in s["skipped"].items())
                   + "</ul>")
    return "".join(out)


def _virelay(report: dict) -> str:
    v = report.get("virelay")
    if not v:
        return _skip(report, "virelay")
    files = ", ".join(f"<code>{_e(f)}</code>" for f in v["files"])
    return (f"<p>The folder <code>{_e(v['folder'])}</code> beside this page is a ViRelAy project ({files}) with the "
            f"audited images, their relevance and the {_e(v['analysis'])} clustering for k from "
            f"{_int(v['ks'][0])} to {_int(v['ks'][-1])}. Explore it interactively with "
            f"<code>virelay virelay/project.yaml</code>.</p>")


def _run(report: dict) -> str:
    r, s = report["run"], report["settings"]
    skipped = report.get("skipped", {})
    out = [f"<p>Seed {_int(s['seed'])}, images at {_int(s['size'])} px, batch size {_int(s['batch_size'])}, FAST "
           f"mode {'on' if s['fast'] else 'off'}, device <code>{_e(r['device'])}</code> with "
           f"{_int(r['torch_threads'])} torch threads. The audit took {_num(r['wall_s'], 1)} s "
           f"({_num(r['cpu_s'], 1)} s of CPU time in the main process).</p>",
           f"<p>Command: <code>xaibias {_e(' '.join(r['argv']))}</code></p>"]
    if r.get("relevance_file"):
        out.append(f"<p>Relevance file (resumable, safe to delete): <code>{_e(r['relevance_file'])}</code></p>")
    if skipped:
        out.append("<p>Parts not run:</p><ul>" + "".join(f"<li>{_e(k)}: {_e(v)}</li>" for k, v in skipped.items())
                   + "</ul>")
    return "".join(out)


_CSS = """
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1180px;margin:0 auto;padding:0 18px 40px;color:#1d1d1f}
header{border-bottom:2px solid #c0392b;margin-bottom:8px}h1{margin:18px 0 4px;font-size:26px}
nav{position:sticky;top:0;background:#fff;padding:6px 0;border-bottom:1px solid #ddd;z-index:2}
nav a{margin-right:14px;color:#2c5d8f;text-decoration:none;font-size:14px}
section{margin-top:22px}h2{font-size:20px;border-bottom:1px solid #e3e3e3;padding-bottom:3px}h3{font-size:16px;margin-bottom:4px}
#verdict{background:#fdf3f2;border-left:5px solid #c0392b;padding:4px 16px 8px}
table{border-collapse:collapse;margin:8px 0 14px;font-size:13.5px}th,td{padding:3px 9px;border-bottom:1px solid #e6e6e6;text-align:left}
th{background:#f4f4f6;cursor:pointer;user-select:none;white-space:nowrap}th:hover{background:#e6e9f0}
td[data-v]{font-variant-numeric:tabular-nums}.ci{color:#666;font-size:12px}
figure{margin:8px 0}figure img{max-width:100%;border:1px solid #eee}figcaption{font-size:13px;color:#555}
.skip{color:#8a6d3b;background:#fcf8e3;padding:6px 10px}.note{color:#555;font-style:italic}
code{background:#f3f3f3;padding:0 3px;border-radius:3px;font-size:13px;word-break:break-all}
"""

_JS = """
window.addEventListener("error", function (e) { document.body.setAttribute("data-error", String(e.message)); });
function sortBy(th) {
  var table = th.closest("table"), body = table.tBodies[0];
  var col = Array.prototype.indexOf.call(th.parentNode.children, th);
  var asc = th.getAttribute("data-order") !== "asc";
  th.setAttribute("data-order", asc ? "asc" : "desc");
  function key(row) {
    var cell = row.children[col];
    if (!cell) return "";
    var v = cell.getAttribute("data-v");
    return v === null ? cell.textContent : parseFloat(v);
  }
  var rows = Array.prototype.slice.call(body.rows);
  rows.sort(function (a, b) {
    var x = key(a), y = key(b);
    var r = (typeof x === "number" && typeof y === "number") ? x - y : String(x).localeCompare(String(y));
    return asc ? r : -r;
  });
  rows.forEach(function (r) { body.appendChild(r); });
}
document.querySelectorAll("table.sortable th").forEach(function (th) {
  th.addEventListener("click", function () { sortBy(th); });
});
document.body.setAttribute("data-ready", "yes");
"""


def render(report: dict, figures: dict[str, str]) -> str:
    """The HTML page for ``report`` (the dict written to report.json) and ``figures`` (data URIs)."""
    bodies = {
        "verdict": _verdict(report), "data": _data(report), "accuracy": _accuracy(report),
        "insertion": _insertion(report), "relevance": _relevance(report, figures),
        "clusters": _clusters(report, figures), "saliency": _saliency(report), "virelay": _virelay(report),
        "run": _run(report),
    }
    nav = "".join(f'<a href="#{s}">{_TITLES[s]}</a>' for s in SECTIONS)
    sections = "".join(f'<section id="{s}"><h2>{_TITLES[s]}</h2>{bodies[s]}</section>' for s in SECTIONS)
    m, d = report["model"], report["data"]
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width, initial-scale=1'>"
        f"<title>xaibias audit: {_e(m['name'])}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>Bias audit of <code>{_e(m['name'])}</code></h1>"
        f"<p>Data: <code>{_e(d['source'])}</code>. Made by <code>xaibias audit</code>; every number on this page is "
        f"in <code>report.json</code> beside it. Click a table header to sort.</p></header>"
        f"<nav>{nav}</nav>{sections}<script>{_JS}</script></body></html>"
    )
