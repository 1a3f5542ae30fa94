"""ipywidgets explorers that also work headless.

Computation happens in plain notebook cells; an explorer only lets a reader browse the results.
:func:`explorer` wraps a drawing function ``fn(**choices)``: with a live Jupyter frontend it shows
dropdowns/sliders and redraws on change; without one (FAST/CI runs, nbval, ``make notebooks``,
``XAIBIAS_HEADLESS=1``) it calls ``fn`` once with the default values and shows that figure, so an
executed notebook always contains the default view.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["explorer", "is_headless", "default_value", "LAYER_DEPTHS", "layer_relevance", "lrp_explorer",
           "cluster_explorer"]


def is_headless() -> bool:
    """True when no one is there to move a widget: ``XAIBIAS_HEADLESS=1``, ``CI``, or no frontend.

    ``XAIBIAS_HEADLESS=0`` forces live widgets. FAST mode plays no part: a student on a laptop runs
    FAST and still gets live explorers. "No frontend" means no IPython kernel (a plain script);
    executed notebooks (nbval, ``make notebooks``) set ``XAIBIAS_HEADLESS=1``.
    """
    flag = os.environ.get("XAIBIAS_HEADLESS", "").strip().lower()
    if flag in ("1", "true", "yes", "on"):
        return True
    if flag in ("0", "false", "no", "off"):
        return False
    if os.environ.get("CI", "").strip():
        return True
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with the lab extra
        return True
    shell = get_ipython()
    return shell is None or getattr(shell, "kernel", None) is None


def default_value(choice: Any) -> Any:
    """The value a headless explorer uses: the first option of a list, the middle of a
    ``(min, max[, step])`` range, the value itself otherwise (bool, str, number)."""
    if isinstance(choice, list):
        if not choice:
            raise ValueError("an explorer choice list must not be empty")
        first = choice[0]
        return first[1] if isinstance(first, tuple) and len(first) == 2 else first
    if isinstance(choice, dict):
        if not choice:
            raise ValueError("an explorer choice dict must not be empty")
        return next(iter(choice.values()))
    if isinstance(choice, tuple) and 2 <= len(choice) <= 3 and all(isinstance(v, (int, float)) for v in choice):
        lo, hi = choice[0], choice[1]
        mid = (lo + hi) / 2
        return int(round(mid)) if all(isinstance(v, int) for v in choice) else mid
    return choice


def explorer(fn: Callable[..., Any], defaults: dict[str, Any] | None = None, headless: bool | None = None,
             **choices: Any) -> Any:
    """Explore ``fn`` over ``choices`` (ipywidgets ``interact`` abbreviations: a list gives a
    dropdown, ``(min, max, step)`` a slider, a bool a checkbox).

    ``defaults`` overrides the value used for the first/headless view. Returns ``fn``'s result
    for the default view when headless, the ``ipywidgets.interactive`` object otherwise.
    """
    defaults = dict(defaults or {})
    unknown = set(defaults) - set(choices)
    if unknown:
        raise ValueError(f"defaults given for unknown choices {sorted(unknown)}; choices are {sorted(choices)}")
    values = {k: defaults.get(k, default_value(v)) for k, v in choices.items()}
    if headless if headless is not None else is_headless():
        import matplotlib.pyplot as plt

        result = fn(**values)
        plt.show()
        return result
    import ipywidgets as w
    from IPython.display import display

    controls: dict[str, Any] = {}
    for k, v in choices.items():
        if isinstance(v, (list, dict)):
            controls[k] = w.Dropdown(options=v, value=values[k], description=k)
        elif isinstance(v, bool):
            controls[k] = w.Checkbox(value=bool(values[k]), description=k)
        elif isinstance(v, tuple):
            slider = w.IntSlider if all(isinstance(x, int) for x in v) else w.FloatSlider
            step = v[2] if len(v) == 3 else (1 if slider is w.IntSlider else (v[1] - v[0]) / 20)
            controls[k] = slider(min=v[0], max=v[1], step=step, value=values[k], description=k)
        else:
            controls[k] = w.fixed(v)
    ui = w.interactive(fn, **controls)
    display(ui)
    return ui


# --------------------------------------------------------------------------------------------------
# LRP explorer (notebook 01)

LAYER_DEPTHS: dict[str, float] = {"input": 0.0, "early": 0.25, "middle": 0.5, "late": 0.75}
"""Layer choices of :func:`lrp_explorer`: relative depth among the model's convolutions."""


def _conv_names(model: Any) -> list[str]:
    import torch.nn as nn

    return [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def layer_relevance(model: Any, x: Any, target: int, composite: Any, layer: str | None = None) -> Any:
    """Relevance at the *input* of module ``layer`` (the model input when ``None``) under a zennit
    ``composite``, summed over channels: a (h, w) tensor for one image ``x`` (3,H,W).

    In zennit the backward pass carries relevance itself, so the gradient that reaches a tensor is
    its relevance; a hook registered before the composite keeps the untouched input tensor.
    """
    import torch

    if layer is not None:
        modules = dict(model.named_modules())
        if layer not in modules:
            raise ValueError(f"layer {layer!r} not found in {type(model).__name__}")
    param = next(model.parameters())
    x = x.detach().to(param.device, param.dtype)[None].requires_grad_(True)
    seen: dict[str, Any] = {}
    handle = None
    if layer is not None:
        def keep(module, inputs):
            inputs[0].retain_grad()
            seen["a"] = inputs[0]

        handle = modules[layer].register_forward_pre_hook(keep)
    try:
        with composite.context(model) as modified, torch.enable_grad():
            out = modified(x)
            start = torch.zeros_like(out)
            start[0, target] = out[0, target].detach()  # start from the logit, as the reference does
            out.backward(start)
    finally:
        if handle is not None:
            handle.remove()
    rel = x.grad if layer is None else seen["a"].grad
    return rel[0].sum(0).detach().cpu()


def lrp_explorer(models: dict[str, Any], images: Any, composites: Sequence[str] | None = None,
                 reference_models: dict[str, Any] | None = None, rules: Sequence[str] | None = None,
                 n_images: int | None = None, headless: bool | None = None) -> Any:
    """Browse LRP heatmaps: dropdowns for model, composite, reference rule, layer and image.

    Parameters
    ----------
    models : dict name -> model
        Models explained with zennit (``composite`` + automatic canonizers).
    images : (N,3,H,W) tensor in [0,1]
    composites : names from ``xaibias.explain.COMPOSITES`` (default: all)
    reference_models : dict name -> nn.Sequential, optional
        Models explained with the hand-written :mod:`xaibias.explain.reference` LRP, where the
        ``rule`` dropdown picks the rule for every layer (the composite is ignored).
    rules : names from ``xaibias.explain.reference.RULES`` (default: all but ``zbox``, which only
        suits the first layer); the first is the headless default
    n_images : how many images to offer (default all)

    The layer dropdown picks the relative depth (:data:`LAYER_DEPTHS`) among the model's
    convolutions; the map shown is the relevance at that convolution's input, in the diverging
    colormap centred at 0. Headless, the default view (first model, composite, rule, image;
    ``input``) is drawn once.
    """
    import matplotlib.pyplot as plt
    import torch

    from . import viz
    from .explain import reference as ref
    from .explain.attribution import COMPOSITES, make_composite

    reference_models = dict(reference_models or {})
    all_models = {**models, **reference_models}
    if not all_models:
        raise ValueError("lrp_explorer needs at least one model in models or reference_models")
    composites = list(composites or COMPOSITES)
    rules = list(rules or [r for r in ref.RULES if r != "zbox"])
    unknown = [r for r in rules if r not in ref.RULES]
    if unknown:
        raise ValueError(f"unknown reference rules {unknown}; choose from {sorted(ref.RULES)}")
    n = len(images) if n_images is None else min(int(n_images), len(images))
    if n < 1:
        raise ValueError("lrp_explorer needs at least one image")

    def draw(model: str, composite: str, rule: str, layer: str, image: int):
        net = all_models[model]
        x = images[image]
        fig, axes = plt.subplots(1, 2, figsize=(6, 3))
        axes[0].imshow(viz.to_numpy_image(x))
        axes[0].set_axis_off()
        if model in reference_models:
            layers = ref.sequential_layers(net)
            convs = [i for i, m in enumerate(layers) if isinstance(m, torch.nn.Conv2d)]
            idx = convs[int(LAYER_DEPTHS[layer] * len(convs))] if convs else 0
            dtype = next(net.parameters()).dtype
            result = ref.lrp(net, x[None].to(dtype), rules=rule)
            target = int(result.logits.argmax())
            r = result.layers[idx][0]
            r = r.sum(0) if r.ndim == 3 else r.reshape(1, -1)
            what, where = f"rule {rule}", f"input of layer {idx} ({type(layers[idx]).__name__})"
        else:
            convs = _conv_names(net)
            name = None if LAYER_DEPTHS[layer] == 0 else convs[int(LAYER_DEPTHS[layer] * len(convs))]
            with torch.no_grad():
                target = int(net(x[None].to(next(net.parameters()).device)).argmax())
            comp = make_composite(composite, canonizers="auto", model=net, input_shape=(1, *x.shape))
            r = layer_relevance(net, x, target, comp, name)
            what, where = composite, "input" if name is None else f"input of {name}"
        axes[0].set_title(f"image {image} (explaining class {target})", fontsize=9)
        viz.heatmap(r, ax=axes[1], title=f"{model}: {what}\n{where}", colorbar=True)
        fig.suptitle("LRP relevance (red: for the class, blue: against)", fontsize=10)
        fig.tight_layout()
        return fig

    return explorer(draw, defaults={"image": 0}, headless=headless, model=list(all_models), composite=composites, rule=rules,
                    layer=list(LAYER_DEPTHS), image=(0, n - 1, 1) if n > 1 else 0)


# --------------------------------------------------------------------------------------------------
# SpRAy / GEBI cluster explorer (notebook 02)

def cluster_explorer(fits: dict[str, Any], images: Any, relevance: Any, artifacts: Any = None,
                     k: tuple[int, int] = (2, 8), n: int = 6, default_k: int | None = None,
                     headless: bool | None = None) -> Any:
    """Browse cluster galleries of fitted SpRAy/GEBI estimators: dropdown for the fit, slider for k.

    Parameters
    ----------
    fits : dict name -> fitted :class:`~xaibias.analysis.SpRAy` / :class:`~xaibias.analysis.GEBI`
        All fitted on the same ``images``/``relevance`` (e.g. SpRAy and GEBI at several image
        weights). Changing k re-runs only k-means on the stored spectral embedding
        (``labels_for``), so the explorer reacts instantly.
    images, relevance : (N,3,H,W) and (N,H,W)
    artifacts : DataFrame of bool flags, optional
        Known artifacts; each gallery row then lists the artifacts most frequent in that cluster.
    k : (min, max) of the slider (max is capped by the fitted eigenvectors)
    n : images per cluster row
    default_k : k of the first/headless view (default: each fit's own ``n_clusters_``, else the middle)
    """
    from . import viz
    from .analysis import cluster_artifact_table

    if not fits:
        raise ValueError("cluster_explorer needs at least one fitted estimator in fits")
    for name, est in fits.items():
        if not hasattr(est, "labels_"):
            raise ValueError(f"fits[{name!r}] is not fitted; call fit(relevance, images) first")
        if len(est.labels_) != len(images):
            raise ValueError(f"fits[{name!r}] was fitted on {len(est.labels_)} maps but {len(images)} images were given")
    first = next(iter(fits.values()))
    kmax = min(int(k[1]), first.embedding_.shape[1])
    kmin = max(1, min(int(k[0]), kmax))
    dk = default_k if default_k is not None else min(max(first.n_clusters_, kmin), kmax)

    def draw(method: str, n_clusters: int):
        est = fits[method]
        lab = est.labels_for(int(n_clusters))
        notes = None
        if artifacts is not None:
            table = cluster_artifact_table(lab, artifacts)
            notes = {}
            for c, row in table.drop(columns="size").iterrows():
                top = row[row > 0].sort_values(ascending=False).head(2)
                notes[c] = "\n".join(f"{a} {v:.0%}" for a, v in top.items())
        return viz.cluster_gallery(images, relevance, lab, n=n, notes=notes,
                                   suptitle=f"{method}: {n_clusters} clusters (rows), random members")

    return explorer(draw, defaults={"n_clusters": dk}, headless=headless, method=list(fits), n_clusters=(kmin, kmax, 1))
