"""Figures: images, relevance heatmaps and overlays, on one convention.

Relevance is drawn in a diverging colormap (``"bwr"``: red positive, blue negative) centred at 0
with symmetric limits, so white always means "no relevance", and every figure that shows relevance
carries a colour bar that says what the colours mean. Heatmap axes hide their ticks but keep their
labels, so a caller can name rows with ``ax.set_ylabel``. Every function returns the matplotlib
Figure and draws nothing else; titles are set by the caller or the ``title=`` argument.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.colors import Normalize

__all__ = [
    "CMAP",
    "to_numpy_image",
    "symmetric_limit",
    "relevance_colorbar",
    "heatmap",
    "overlay",
    "image_grid",
    "heatmap_grid",
    "method_panel",
    "relevance_by_layer",
    "metric_bars",
    "eigenvalue_plot",
    "embedding_plot",
    "cluster_gallery",
    "explanation_card",
    "tradeoff_plot",
    "global_saliency_plot",
]

CMAP = "bwr"


def to_numpy_image(image: Any) -> np.ndarray:
    """(3,H,W) or (H,W,3) tensor/array in [0,1] -> (H,W,3) float numpy array for ``imshow``."""
    a = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = np.moveaxis(a, 0, -1)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    return np.clip(a.astype(np.float32), 0, 1)


def symmetric_limit(relevance: Any, percentile: float = 99.5) -> float:
    """A symmetric colour limit: the given percentile of |relevance| (never 0)."""
    a = relevance.detach().cpu().numpy() if isinstance(relevance, torch.Tensor) else np.asarray(relevance)
    v = float(np.percentile(np.abs(a), percentile)) if a.size else 0.0
    return v if v > 0 else 1.0


def relevance_colorbar(fig: plt.Figure, axes: Any, vmax: float = 1.0, label: str = "relevance",
                       orientation: str = "vertical") -> Any:
    """Add one colour bar for relevance drawn with :data:`CMAP` in ``[-vmax, vmax]`` beside ``axes``.

    Use ``vmax=1`` with a label such as "relevance / each map's limit" when every map has its own
    symmetric scale. Returns the matplotlib Colorbar.
    """
    mappable = plt.cm.ScalarMappable(norm=Normalize(-vmax, vmax), cmap=CMAP)
    cb = fig.colorbar(mappable, ax=axes, fraction=0.025 if orientation == "vertical" else 0.05, pad=0.02,
                      orientation=orientation)
    cb.set_label(label, fontsize=7)
    cb.ax.tick_params(labelsize=6)
    return cb


def _bare(ax: plt.Axes) -> None:
    # no ticks or frame, but unlike set_axis_off() the axis labels stay visible
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def heatmap(relevance: Any, ax: plt.Axes | None = None, vmax: float | None = None, title: str | None = None,
            colorbar: bool = False) -> plt.Figure:
    """Draw one (H,W) relevance map centred at 0 (``colorbar=True`` adds its colour bar)."""
    r = relevance.detach().cpu().numpy() if isinstance(relevance, torch.Tensor) else np.asarray(relevance)
    if ax is None:
        _, ax = plt.subplots(figsize=(3, 3))
    v = vmax if vmax is not None else symmetric_limit(r)
    im = ax.imshow(r, cmap=CMAP, vmin=-v, vmax=v, interpolation="nearest")
    _bare(ax)
    if title:
        ax.set_title(title, fontsize=9)
    if colorbar:
        cb = ax.figure.colorbar(im, ax=ax, fraction=0.046)
        cb.ax.tick_params(labelsize=6)
    return ax.figure


def overlay(image: Any, relevance: Any, ax: plt.Axes | None = None, alpha: float = 0.6, vmax: float | None = None,
            title: str | None = None) -> plt.Figure:
    """Draw a grey version of ``image`` with ``relevance`` on top (transparent where relevance is small)."""
    img = to_numpy_image(image)
    r = relevance.detach().cpu().numpy() if isinstance(relevance, torch.Tensor) else np.asarray(relevance)
    if ax is None:
        _, ax = plt.subplots(figsize=(3, 3))
    v = vmax if vmax is not None else symmetric_limit(r)
    ax.imshow(img.mean(-1), cmap="gray", vmin=0, vmax=1)
    rgba = plt.get_cmap(CMAP)(np.clip(r / (2 * v) + 0.5, 0, 1))
    rgba[..., 3] = alpha * np.clip(np.abs(r) / v, 0, 1)
    ax.imshow(rgba)
    _bare(ax)
    if title:
        ax.set_title(title, fontsize=9)
    return ax.figure


def _grid(n: int, ncols: int, size: float) -> tuple[plt.Figure, np.ndarray]:
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_axis_off()
    return fig, axes


def image_grid(images: Any, titles: Sequence[str] | None = None, ncols: int = 8, size: float = 1.6,
               suptitle: str | None = None) -> plt.Figure:
    """Draw (N,3,H,W) images in a grid."""
    n = len(images)
    fig, axes = _grid(n, ncols, size)
    for i in range(n):
        ax = axes.flat[i]
        ax.imshow(to_numpy_image(images[i]))
        ax.set_axis_off()
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def heatmap_grid(relevance: Any, images: Any | None = None, titles: Sequence[str] | None = None, ncols: int = 8,
                 size: float = 1.6, shared_scale: bool = False, suptitle: str | None = None,
                 colorbar: bool = True) -> plt.Figure:
    """Draw (N,H,W) relevance maps in a grid, as overlays on ``images`` when given.

    Each map gets its own symmetric scale unless ``shared_scale=True`` (one scale for all, for
    comparing magnitudes). The colour bar shows that scale: relevance itself with a shared scale,
    relevance as a fraction of each map's own limit otherwise.
    """
    n = len(relevance)
    fig, axes = _grid(n, ncols, size)
    vmax = symmetric_limit(relevance) if shared_scale else None
    for i in range(n):
        ax = axes.flat[i]
        t = None if titles is None else str(titles[i])
        if images is not None:
            overlay(images[i], relevance[i], ax=ax, vmax=vmax, title=t)
        else:
            heatmap(relevance[i], ax=ax, vmax=vmax, title=t)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    if colorbar:
        if shared_scale:
            relevance_colorbar(fig, axes, vmax, "relevance")
        else:
            relevance_colorbar(fig, axes, 1.0, "relevance / each map's own limit")
    return fig


# --------------------------------------------------------------------------------------------------
# method comparison and layer-wise relevance (notebook 01)

def method_panel(images: Any, maps: dict[str, Any], notes: dict[str, str] | None = None, size: float = 1.5,
                 suptitle: str | None = None) -> plt.Figure:
    """Rows: images; columns: the image, then one relevance map per method in ``maps`` ((N,H,W) each).

    One colour rule for every column: ``bwr`` centred at 0, the limit shared by all images of a
    column (the 99.5th percentile of |relevance| over that method's maps), so the rows of a column
    are comparable and white always means zero. ``notes`` adds a short caption under a column title.
    """
    names = list(maps)
    n = len(images)
    for k in names:
        if len(maps[k]) != n:
            raise ValueError(f"maps[{k!r}] has {len(maps[k])} maps but there are {n} images")
    fig, axes = plt.subplots(n, len(names) + 1, figsize=(size * (len(names) + 1), size * n + 0.6), squeeze=False)
    for i in range(n):
        axes[i, 0].imshow(to_numpy_image(images[i]))
        axes[i, 0].set_axis_off()
    axes[0, 0].set_title("image", fontsize=8)
    for j, k in enumerate(names, start=1):
        vmax = symmetric_limit(maps[k])
        for i in range(n):
            heatmap(maps[k][i], ax=axes[i, j], vmax=vmax)
        title = k if not notes or k not in notes else f"{k}\n{notes[k]}"
        axes[0, j].set_title(title, fontsize=7)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    relevance_colorbar(fig, axes[:, 1:], 1.0, "relevance / column's limit")
    return fig


def relevance_by_layer(sums: dict[str, Any], layer_names: Sequence[str] | None = None,
                       title: str = "total relevance per layer") -> plt.Figure:
    """Line plot of total relevance at each layer (x: layer, output on the right), one line per
    setting in ``sums`` (each a 1-D sequence, e.g. a row of ``reference.relevance_sums``)."""
    fig, ax = plt.subplots(figsize=(6, 3))
    for label, values in sums.items():
        v = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
        ax.plot(np.arange(len(v)), v, marker="o", label=label)
    if layer_names is not None:
        ax.set_xticks(np.arange(len(layer_names)))
        ax.set_xticklabels(layer_names, rotation=45, ha="right", fontsize=7)
    ax.set_xlabel("relevance at the input of layer ... (right: output)")
    ax.set_ylabel("sum of relevance")
    ax.axhline(0, color="grey", lw=0.5)
    ax.legend(fontsize=7)
    ax.set_title(title)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------------
# localisation metrics per object (notebook 05, Schaaf et al. 2021 Figures 1-4)

def metric_bars(scores: Any, group: str = "object", metrics: Sequence[str] = ("RMA", "RRA"),
                x: str = "method", hue: str = "model", title: str | None = None, ylim: tuple = (0, 1),
                size: float = 3.2) -> plt.Figure:
    """Bar plots of per-image scores with 95 % confidence intervals (1.96 standard errors).

    ``scores`` is a tidy DataFrame with columns ``group``, ``"metric"``, ``x``, ``hue`` and
    ``"value"`` (NaN values are left out). One panel per (group value, metric), bars over ``x``,
    one colour per ``hue`` value (red for ``"biased"``, blue for ``"unbiased"`` when present).
    """
    import pandas as pd

    if not isinstance(scores, pd.DataFrame):
        raise TypeError(f"scores must be a pandas DataFrame; got {type(scores).__name__}")
    missing = [c for c in (group, "metric", x, hue, "value") if c not in scores.columns]
    if missing:
        raise ValueError(f"scores is missing column(s) {missing}; has {list(scores.columns)}")
    cells = [(g, m) for g in sorted(scores[group].unique()) for m in metrics]
    fig, axes = plt.subplots(1, len(cells), figsize=(size * len(cells), 3), squeeze=False)
    palette = {"biased": "tab:red", "unbiased": "tab:blue"}
    for j, (g, m) in enumerate(cells):
        ax = axes[0, j]
        sub = scores[(scores[group] == g) & (scores["metric"] == m)].dropna(subset=["value"])
        stats = sub.groupby([x, hue])["value"].agg(["mean", "sem"]).unstack(hue)
        colors = [palette.get(str(c), None) for c in stats["mean"].columns]
        stats["mean"].plot.bar(ax=ax, yerr=1.96 * stats["sem"].fillna(0), capsize=2, rot=30, legend=j == 0,
                               color=colors if all(colors) else None)
        ax.set_title(f"{m} on {g}", fontsize=9)
        ax.set_xlabel("")
        ax.set_ylim(*ylim)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------------
# SpRAy / GEBI clusters and explanation cards (notebook 02)

def eigenvalue_plot(eigenvalues: Any, ax: plt.Axes | None = None, k: int | None = None, n: int = 16,
                    title: str | None = None) -> plt.Figure:
    """The first ``n`` Laplacian eigenvalues (ascending); a dashed line marks the eigengap after ``k``.

    ``k`` well separated groups show as ``k`` eigenvalues near 0 followed by a jump.
    """
    ev = np.asarray(eigenvalues, dtype=float)[:n]
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 2.8))
    ax.plot(np.arange(1, len(ev) + 1), ev, "o-", ms=4)
    if k is not None and 1 <= k < len(ev):
        ax.axvline(k + 0.5, color="crimson", ls="--", lw=1, label=f"largest gap after {k}")
        ax.legend(fontsize=7, loc="lower right")
    ax.set_xlabel("index")
    ax.set_ylabel("eigenvalue of $L_{sym}$")
    ax.set_title(title or "Laplacian eigenvalues", fontsize=9)
    return ax.figure


def embedding_plot(coords: Any, color: Any, ax: plt.Axes | None = None, title: str | None = None,
                   names: dict[Any, str] | None = None, s: float = 12) -> plt.Figure:
    """Scatter a 2-D embedding, coloured by a categorical ``color`` (cluster id or bool flag)."""
    xy = coords.detach().cpu().numpy() if isinstance(coords, torch.Tensor) else np.asarray(coords)
    c = np.asarray(color)
    if ax is None:
        _, ax = plt.subplots(figsize=(3.6, 3.4))
    cats = np.unique(c)
    palette = plt.get_cmap("tab10")
    for j, v in enumerate(cats):
        sel = c == v
        label = (names or {}).get(v.item() if hasattr(v, "item") else v, str(v))
        col = ("lightgrey" if not v else "crimson") if c.dtype == bool else palette(j % 10)
        ax.scatter(xy[sel, 0], xy[sel, 1], s=s, color=col, label=f"{label} ({int(sel.sum())})",
                   edgecolors="none", alpha=0.85)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=6, markerscale=1.2, loc="best", framealpha=0.7)
    ax.set_title(title or "embedding", fontsize=9)
    return ax.figure


def cluster_gallery(images: Any, relevance: Any, labels: Any, n: int = 6, clusters: Sequence[int] | None = None,
                    notes: dict[int, str] | None = None, size: float = 1.25, suptitle: str | None = None,
                    seed: int = 0) -> plt.Figure:
    """One row per cluster: ``n`` random members as relevance overlays (bwr, centred at 0).

    ``notes[c]`` is printed beside row ``c`` (for example the share of frames in the cluster).
    """
    lab = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    clusters = list(np.unique(lab)) if clusters is None else list(clusters)
    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(len(clusters), n, figsize=(size * n + 1.6, size * len(clusters) + 0.5), squeeze=False)
    for r, c in enumerate(clusters):
        members = np.flatnonzero(lab == c)
        pick = rng.choice(members, min(n, len(members)), replace=False) if len(members) else []
        for j in range(n):
            ax = axes[r, j]
            ax.set_axis_off()
            if j < len(pick):
                overlay(images[int(pick[j])], relevance[int(pick[j])], ax=ax)
        text = f"cluster {c}\n{len(members)} maps"
        if notes and c in notes:
            text += f"\n{notes[c]}"
        axes[r, 0].text(-0.15, 0.5, text, transform=axes[r, 0].transAxes, ha="right", va="center", fontsize=7)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    relevance_colorbar(fig, axes, 1.0, "relevance / each map's own limit")
    return fig


def explanation_card(image: Any, relevance: Any, prototype: Any, text: str, title: str | None = None,
                     size: float = 2.2) -> plt.Figure:
    """A local explanation with its global context: image, its heatmap, the mean heatmap of the
    cluster (strategy) it belongs to, and a text panel (cluster, artifacts, insertion verdict)."""
    fig, axes = plt.subplots(1, 4, figsize=(size * 4 + 1.5, size), gridspec_kw={"width_ratios": [1, 1, 1, 1.7]})
    axes[0].imshow(to_numpy_image(image))
    axes[0].set_axis_off()
    axes[0].set_title("image", fontsize=8)
    overlay(image, relevance, ax=axes[1], title="its relevance")
    heatmap(prototype, ax=axes[2], title="cluster mean relevance")
    axes[3].set_axis_off()
    axes[3].text(0.0, 0.5, text, va="center", ha="left", fontsize=7.5, family="monospace", wrap=True)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------------
# mitigation trade-off (notebook 06)

def tradeoff_plot(report: Any, x: str = "insertion_frame_pp", y: str = "acc_clean", group: str = "method",
                  ax: plt.Axes | None = None, title: str | None = None, reference: str | None = None,
                  xlabel: str | None = None, ylabel: str | None = None) -> plt.Figure:
    """Scatter of one row per (model, seed) with each group's mean and standard deviation as a cross.

    ``report`` is a DataFrame with columns ``x``, ``y`` and ``group`` (for example the
    concatenated :func:`xaibias.analysis.bias_report` tables of several seeds with a ``"method"``
    column). ``reference`` names a group (the baseline) whose mean gets dotted guide lines: half
    its ``x`` and its ``y`` minus 0.03, the "cut by half, within 3 points" target region.
    """
    import pandas as pd

    if not isinstance(report, pd.DataFrame):
        raise TypeError(f"report must be a pandas DataFrame; got {type(report).__name__}")
    missing = [c for c in (x, y, group) if c not in report.columns]
    if missing:
        raise ValueError(f"report is missing column(s) {missing}; has {list(report.columns)}")
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.2, 3.8))
    else:
        fig = ax.figure
    for i, (name, sub) in enumerate(report.groupby(group, sort=False)):
        color = f"C{i}"
        ax.scatter(sub[x], sub[y], color=color, alpha=0.35, s=18)
        ax.errorbar(sub[x].mean(), sub[y].mean(), xerr=sub[x].std(ddof=1) if len(sub) > 1 else None,
                    yerr=sub[y].std(ddof=1) if len(sub) > 1 else None, fmt="o", color=color, capsize=3,
                    label=str(name))
    if reference is not None:
        ref = report[report[group] == reference]
        if len(ref) == 0:
            raise ValueError(f"reference={reference!r} is not a value of report[{group!r}]")
        ax.axvline(ref[x].mean() / 2, color="grey", ls=":", lw=1)
        ax.axhline(ref[y].mean() - 0.03, color="grey", ls=":", lw=1)
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(ylabel or y)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def global_saliency_plot(table: Any, method: str, aggregation: str, class_names: Sequence[str],
                         train_sets: Sequence[str] | None = None, ax: plt.Axes | None = None,
                         highlight: str | None = None) -> plt.Axes:
    """Class means with their bootstrap intervals, one marker series per training set (Pfau et al., Fig. 1).

    ``table`` is :func:`xaibias.analysis.global_table` output; the rows of ``method`` and
    ``aggregation`` are drawn, the training sets side by side at each class (in ``train_sets``
    order, default: as they appear). ``highlight`` shades one class.
    """
    sub = table[(table["method"] == method) & (table["aggregation"] == aggregation)]
    if sub.empty:
        raise ValueError(f"no rows for method={method!r}, aggregation={aggregation!r}; the table has "
                         f"{sorted(set(zip(table['method'], table['aggregation'])))}")
    names = list(class_names)
    sets = list(train_sets) if train_sets is not None else list(dict.fromkeys(sub["train_set"]))
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3.5))
    width = 0.72 / max(len(sets), 1)
    for k, name in enumerate(sets):
        d = sub[sub["train_set"] == name].set_index("class_name").reindex(names)
        pos = np.arange(len(names)) + (k - (len(sets) - 1) / 2) * width
        ax.errorbar(pos, d["mean"], yerr=[d["mean"] - d["ci_low"], d["ci_high"] - d["mean"]], fmt="o", ms=4,
                    capsize=2, label=name)
    ax.set_xticks(range(len(names)), names)
    if highlight is not None:
        if highlight not in names:
            raise ValueError(f"highlight {highlight!r} is not one of the classes {names}")
        i = names.index(highlight)
        ax.axvspan(i - 0.45, i + 0.45, color="gold", alpha=0.2)
    ax.set_title(f"{method}, {aggregation}", fontsize=10)
    ax.axhline(0, color="grey", lw=0.5)
    return ax
