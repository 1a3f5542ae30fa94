"""Concept activation vectors (CAVs): a direction in a layer's channel space that marks a concept.

A CAV is fitted on the spatially pooled activations of one layer (``dict(model.named_modules())``
names) for images with and without a concept, here an artifact whose flags are known. It serves four
purposes in the Reveal-to-Revise loop (Pahde et al. 2023):

* **retrieval**: :meth:`CAV.score` projects an image's pooled activations on the direction, one
  number per image; unlabelled images with a high score probably carry the artifact;
* **localisation**: :meth:`CAV.localize` starts an LRP pass (zennit composite) at the layer with
  the relevance ``a * v`` (activation times CAV weight, per channel and position) and propagates it
  to the input: an (N,H,W) map of where the concept is;
* **testing**: :meth:`CAV.tcav` is the TCAV score (Kim et al. 2018), the share of images whose
  target logit increases when the activations move along the CAV;
* **correction**: the direction and the mean activations of clean / artifact images feed the
  ClArC corrections of :mod:`xaibias.mitigation.clarc`.

Methods (``method=``)
---------------------
``"signal"`` (default)
    The class-mean difference ``mean(a | concept) - mean(a | no concept)``: the activation *pattern*
    (Haufe et al. 2014) of the whitened, LDA-like filter, and up to scale the pattern CAV of Pahde
    et al. ("Navigating neural space", 2025). It points where the concept moves the activations,
    not where a classifier best separates them, and is not distracted by channels that only cancel
    noise, which makes it the better direction to localise and to remove.
``"svm"``
    The normal of a linear SVM (scikit-learn ``LinearSVC``) on standardised activations, mapped
    back to the raw channel space (the filter direction of the original TCAV).
``"ridge"``
    The weight vector of a ridge classifier (``RidgeClassifier``) on standardised activations,
    mapped back likewise.

``direction_`` is always a unit vector in the *raw* activation space, so it can be used directly
on activations (projections, P-ClArC). ``auroc_`` is the detection AUROC of held-out images in a
stratified k-fold cross-validation (the direction is refitted on each training fold and the held-out
images are scored by their projection on it); it is never computed on the images the direction was
fitted on.
"""

from __future__ import annotations

import contextlib
import numbers
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator
from torch import nn

from .._checks import as_images, describe, model_device
from .._options import checked_init

__all__ = ["CAV", "cav_retrieval", "cav_report", "random_concept_cavs"]

_METHODS = ("signal", "svm", "ridge")
_LISTED = (nn.Conv2d, nn.Linear, nn.ReLU, nn.BatchNorm2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d)


# --------------------------------------------------------------------------------------------------
# activations at a named layer


def find_layer(model: nn.Module, layer: Any) -> nn.Module:
    """The sub-module named ``layer``; an unknown name raises a ValueError listing valid names."""
    if not isinstance(layer, str) or not layer:
        raise ValueError(f"layer must be a non-empty module name (a key of dict(model.named_modules())); got {layer!r}")
    modules = dict(model.named_modules())
    if layer not in modules:
        names = [n for n, m in modules.items() if n and isinstance(m, _LISTED)]
        shown = ", ".join(repr(n) for n in names[-10:])
        raise ValueError(
            f"unknown layer {layer!r}: {type(model).__name__} has no module of that name; valid names include {shown} "
            f"(all names: dict(model.named_modules()).keys())"
        )
    return modules[layer]


@contextlib.contextmanager
def capture_output(module: nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    """Within the block, ``store["a"]`` holds the module's latest output.

    The hook runs before any other forward hook of the module, so it sees the module's own output
    (before, for example, a P-ClArC projection changes it); gradients taken with respect to it
    therefore pass through such a projection.
    """
    store: dict[str, torch.Tensor] = {}

    def hook(_m: nn.Module, _i: Any, out: torch.Tensor) -> None:
        store["a"] = out

    handle = module.register_forward_hook(hook, prepend=True)
    try:
        yield store
    finally:
        handle.remove()


def _pool(a: torch.Tensor) -> torch.Tensor:
    return a.flatten(2).mean(2) if a.ndim > 2 else a


@contextlib.contextmanager
def _eval(model: nn.Module) -> Iterator[torch.device]:
    was = model.training
    model.eval()
    try:
        yield model_device(model)
    finally:
        model.train(was)


def _check_flags(flags: Any, n: int | None = None) -> np.ndarray:
    f = flags.to_numpy() if hasattr(flags, "to_numpy") else np.asarray(flags.cpu() if torch.is_tensor(flags) else flags)
    if f.ndim != 1:
        raise ValueError(f"flags must be a 1-D bool array (one flag per image); got {describe(f)}")
    if f.dtype != bool:
        if np.issubdtype(f.dtype, np.number) and np.isin(f, (0, 1)).all():
            f = f.astype(bool)
        else:
            raise ValueError(f"flags must be bool (or 0/1); got dtype {f.dtype}")
    if n is not None and len(f) != n:
        raise ValueError(f"mismatched lengths: {n} activation rows / images but {len(f)} flags")
    if f.all() or not f.any():
        raise ValueError(
            f"flags are all {bool(f[0]) if len(f) else '?'} ({int(f.sum())} of {len(f)} flagged); a CAV needs images with "
            "and without the concept"
        )
    return f


def _check_acts(acts: Any, name: str = "activations") -> np.ndarray:
    a = acts.detach().cpu().numpy() if torch.is_tensor(acts) else np.asarray(acts)
    if a.ndim == 4:
        a = a.reshape(*a.shape[:2], -1).mean(2)
    if a.ndim != 2 or not np.issubdtype(a.dtype, np.number):
        raise ValueError(f"{name} must be numeric (N, C) pooled activations (or (N,C,H,W) maps); got {describe(a)}")
    bad = ~np.isfinite(a).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ValueError(
            f"{name} contain NaN or infinite values in row(s) {rows[:10].tolist()}{' ...' if len(rows) > 10 else ''} "
            f"of {len(a)}"
        )
    return a.astype(np.float64)


def _auroc(scores: np.ndarray, flags: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(flags, scores))


def _ap(scores: np.ndarray, flags: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(flags, scores))


# --------------------------------------------------------------------------------------------------
# the estimator


class CAV(BaseEstimator):
    """A concept activation vector at one layer of a model (scikit-learn style estimator).

    As in scikit-learn, the constructor only stores its parameters (so ``get_params`` and
    ``sklearn.base.clone`` work); they are checked when the CAV is used (``fit``, ``activations``).

    Parameters
    ----------
    layer : str
        Module name (``dict(model.named_modules())`` key) whose output is pooled over space.
        For a VGG-style network a ReLU after a convolution (non-negative, spatial) works well.
    method : ``"signal"``, ``"svm"`` or ``"ridge"``
        How the direction is found (module docstring).
    random_state : int
        Seed of the cross-validation split (and of LinearSVC).
    C : float
        Inverse regularisation of ``"svm"``.
    alpha : float
        Regularisation of ``"ridge"``.
    cv : int
        Folds for ``auroc_`` (reduced to the size of the rarer group when that is smaller, at least 2).
    batch_size : int
        Images per forward pass.

    Attributes (after fitting)
    --------------------------
    direction_ : np.ndarray (C,)
        Unit vector in the raw channel space, pointing towards the concept.
    auroc_ : float
        Cross-validated detection AUROC of the projection on the direction.
    ap_ : float
        Cross-validated average precision of the same scores (chance: the share of flagged images,
        ``n_concept_ / len(flags)``).
    cv_scores_ : np.ndarray (N,)
        The out-of-fold scores behind ``auroc_`` and ``ap_``: image i's projection on a direction
        fitted without it (after the per-group centring when ``groups`` was given). NaN when the
        rarer group has a single image.
    mean_concept_, mean_clean_ : np.ndarray (C,)
        Mean pooled activations of the flagged and of the unflagged images.
    n_features_in_ : int
        Number of channels.

    Examples
    --------
    >>> cav = CAV("features.13").fit(model, ds.images, ds.artifacts["frame"])
    >>> cav.auroc_, cav.score(model, test.images), cav.localize(model, test.images[:8])
    """

    @checked_init  # an unknown keyword names itself and the parameters below
    def __init__(self, layer: str | None, method: str = "signal", random_state: int = 0, C: float = 1.0,
                 alpha: float = 1.0, cv: int = 5, batch_size: int = 128) -> None:
        self.layer = layer
        self.method = method
        self.random_state = random_state
        self.C = C
        self.alpha = alpha
        self.cv = cv
        self.batch_size = batch_size

    def _check_params(self) -> None:
        """Raise a ValueError naming the first parameter that is out of range (called by every use)."""
        if self.method not in _METHODS:
            raise ValueError(f"method must be one of {_METHODS}; got {self.method!r}")
        if self.layer is not None and (not isinstance(self.layer, str) or not self.layer):
            raise ValueError(f"layer must be a module name (str) or None for fit_activations only; got {self.layer!r}")
        for name in ("C", "alpha"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not v > 0:
                raise ValueError(f"{name} must be a positive number; got {v!r}")
        for name, lo in (("cv", 2), ("batch_size", 1), ("random_state", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                raise ValueError(f"{name} must be an int >= {lo}; got {v!r}")

    def __repr__(self) -> str:
        return f"CAV(layer={self.layer!r}, method={self.method!r}, random_state={self.random_state})"

    # ---------------------------------------------------------------------------- activations
    def _need_layer(self) -> str:
        if self.layer is None:
            raise ValueError("this CAV has layer=None (fitted from activations); pass layer= to use it on a model")
        return self.layer

    def activations(self, model: nn.Module, images: Any, pooled: bool = True) -> torch.Tensor:
        """Activations of ``layer`` for ``images``: (N, C) pooled over space, or the raw maps.

        Runs the model in eval mode without gradients, ``batch_size`` images at a time; returns a
        float CPU tensor.
        """
        self._check_params()
        module = find_layer(model, self._need_layer())
        x = as_images(images)
        out = []
        with _eval(model) as dev, torch.no_grad(), capture_output(module) as store:
            for b in x.split(int(self.batch_size)):
                model(b.to(dev))
                a = store["a"]
                out.append((_pool(a) if pooled else a).float().cpu())
        return torch.cat(out)

    # ---------------------------------------------------------------------------- fitting
    def _direction(self, a: np.ndarray, f: np.ndarray) -> np.ndarray:
        if self.method == "signal":
            w = a[f].mean(0) - a[~f].mean(0)
        else:
            mu, sd = a.mean(0), a.std(0)
            sd = np.where(sd > 1e-12, sd, 1.0)
            z = (a - mu) / sd
            if self.method == "svm":
                from sklearn.svm import LinearSVC

                clf = LinearSVC(C=float(self.C), random_state=int(self.random_state), dual="auto", max_iter=5000)
            else:
                from sklearn.linear_model import RidgeClassifier

                clf = RidgeClassifier(alpha=float(self.alpha))
            clf.fit(z, f)
            w = clf.coef_.reshape(-1) / sd  # the same linear function of the raw activations
        norm = float(np.linalg.norm(w))
        if not norm > 0:
            raise ValueError(
                "the concept direction is zero: the activations do not differ between flagged and unflagged images "
                f"(layer {self.layer!r}); pick another layer"
            )
        return w / norm

    def fit_activations(self, acts: Any, flags: Any, groups: Any = None) -> CAV:
        """Fit from precomputed pooled activations ``acts`` (N, C) (or (N,C,H,W) maps) and flags (N,).

        ``groups`` (N,), optional, for example the class labels: the activations are centred within
        each group before the direction is fitted, so a concept that co-occurs with a class does
        not absorb the class difference into its direction (the direction then contrasts images
        with and without the concept *of the same group*). ``mean_concept_``/``mean_clean_`` stay
        the plain means.
        """
        self._check_params()
        a = _check_acts(acts)
        f = _check_flags(flags, n=len(a))
        raw = a
        if groups is not None:
            g = np.asarray(groups.cpu() if torch.is_tensor(groups) else groups).reshape(-1)
            if len(g) != len(a):
                raise ValueError(f"mismatched lengths: {len(a)} activation rows but {len(g)} groups")
            a = a.copy()
            for k in np.unique(g):
                a[g == k] -= a[g == k].mean(0)
        from sklearn.model_selection import StratifiedKFold

        k = max(2, min(int(self.cv), int(f.sum()), int((~f).sum())))
        oof = np.empty(len(a))
        if min(int(f.sum()), int((~f).sum())) >= 2:
            folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=int(self.random_state))
            for tr, te in folds.split(a, f):
                oof[te] = a[te] @ self._direction(a[tr], f[tr])
            self.auroc_, self.ap_ = _auroc(oof, f), _ap(oof, f)
        else:  # one image in the rarer group: nothing to hold out
            oof[:] = np.nan
            self.auroc_ = self.ap_ = float("nan")
        self.cv_scores_ = oof
        self.direction_ = self._direction(a, f)
        self.mean_concept_ = raw[f].mean(0)
        self.mean_clean_ = raw[~f].mean(0)
        self.n_features_in_ = a.shape[1]
        self.n_concept_ = int(f.sum())
        return self

    def fit(self, model: nn.Module, images: Any, flags: Any, groups: Any = None) -> CAV:
        """Fit on the pooled activations of ``layer`` for ``images`` with bool concept ``flags`` (N,)
        (``groups``: see :meth:`fit_activations`)."""
        self._check_params()
        x = as_images(images)
        _check_flags(flags, n=len(x))
        return self.fit_activations(self.activations(model, x), flags, groups=groups)

    def _fitted(self) -> np.ndarray:
        if not hasattr(self, "direction_"):
            raise RuntimeError("this CAV is not fitted yet; call .fit(model, images, flags) or .fit_activations(acts, flags)")
        return self.direction_

    def _v(self, c: int) -> torch.Tensor:
        v = self._fitted()
        if c != len(v):
            raise ValueError(f"layer {self.layer!r} has {c} channels but the CAV was fitted on {len(v)}")
        return torch.as_tensor(v, dtype=torch.float32)

    # ---------------------------------------------------------------------------- use
    def score_activations(self, acts: Any) -> np.ndarray:
        """Projection of pooled activations (N, C) on ``direction_``: one score per row."""
        a = _check_acts(acts)
        self._v(a.shape[1])  # checks the channel count
        return a @ self.direction_

    def score(self, model: nn.Module, images: Any) -> np.ndarray:
        """One concept score per image: its pooled activations projected on ``direction_`` (N,)."""
        self._fitted()
        return self.score_activations(self.activations(model, images))

    def localize(self, model: nn.Module, images: Any, composite: str | Any = "EpsilonPlusFlat",
                 canonizers: str | Sequence | None = "auto", batch_size: int = 32) -> torch.Tensor:
        """Where the concept is: LRP relevance of the CAV direction at ``layer``, propagated to the input.

        The backward pass starts at the layer's output with the relevance ``a[c,h,w] * v[c]``
        (activation times CAV weight; their sum over positions is the image's :meth:`score` times
        H*W) and runs down through the zennit ``composite`` (any name of
        :data:`xaibias.explain.COMPOSITES`, with the same canonizers as
        :func:`xaibias.explain.attribute`). Returns float (N,H,W) maps on the CPU, summed over colour
        channels; positive where the input makes the concept score larger.
        """
        from ..explain.attribution import make_composite

        module = find_layer(model, self._need_layer())
        self._fitted()
        x = as_images(images)
        comp = make_composite(composite, canonizers, model=model, input_shape=(1, *x.shape[1:]))
        out = []
        flags = [p.requires_grad for p in model.parameters()]
        with _eval(model) as dev:
            model.requires_grad_(False)
            try:
                with comp.context(model) as modified, capture_output(module) as store:
                    for b in x.split(int(batch_size)):
                        xb = b.to(dev).clone().requires_grad_(True)
                        with torch.enable_grad():
                            modified(xb)
                            a = store["a"]
                            v = self._v(a.shape[1]).to(dev).reshape(1, -1, *([1] * (a.ndim - 2)))
                            (rel,) = torch.autograd.grad(a, xb, grad_outputs=(a * v).detach())
                        out.append(rel.sum(1).detach().float().cpu())
            finally:
                for p, fl in zip(model.parameters(), flags):
                    p.requires_grad_(fl)
        return torch.cat(out)

    def directional_derivatives(self, model: nn.Module, images: Any, target: int | Sequence[int],
                                versus: int | None = None) -> np.ndarray:
        """d logit_target / d epsilon when every position's activation moves by ``epsilon * v`` (N,).

        With ``versus`` (a class index), the derivative of ``logit_target - logit_versus`` (for two
        classes: the log-odds of ``target``), which ignores what moves every logit alike.
        """
        from ..explain.attribution import resolve_target

        module = find_layer(model, self._need_layer())
        self._fitted()
        if versus is not None and (not isinstance(versus, (int, np.integer)) or isinstance(versus, bool) or versus < 0):
            raise ValueError(f"versus must be a class index (int >= 0) or None; got {versus!r}")
        x = as_images(images)
        out = []
        with _eval(model) as dev, capture_output(module) as store:
            step = int(self.batch_size)
            for s in range(0, len(x), step):
                b = x[s : s + step].to(dev)
                with torch.enable_grad():
                    logits = model(b)
                    t = resolve_target(target if isinstance(target, int) else torch.as_tensor(target)[s : s + len(b)],
                                       len(b), logits.detach()).to(dev)
                    a = store["a"]
                    out_t = logits.gather(1, t[:, None])
                    if versus is not None:
                        if versus >= logits.shape[1]:
                            raise ValueError(f"versus={versus} but the model has {logits.shape[1]} outputs")
                        out_t = out_t - logits[:, versus : versus + 1]
                    (g,) = torch.autograd.grad(out_t.sum(), a)
                v = self._v(a.shape[1]).to(dev)
                out.append(torch.einsum("nc...,c->n", g, v).detach().double().cpu())
        return torch.cat(out).numpy()

    def tcav(self, model: nn.Module, images: Any, target: int | Sequence[int], atol: float = 1e-7,
             versus: int | None = None, per_image: bool = False) -> float | np.ndarray:
        """TCAV score: the share of ``images`` whose ``target`` logit rises along the CAV (Kim et al. 2018).

        ``versus`` (a class index) scores ``logit_target - logit_versus`` instead: in a ReLU network a
        direction with non-negative components often raises *every* logit, and then the plain score
        is 1 for every concept and class; the difference asks whether the concept favours ``target``
        over ``versus``.

        0.5 means the concept pushes the class up as often as down. A derivative within ``atol`` of
        zero (a model that cannot see the direction at all, such as one with a P-ClArC projection
        at this layer) counts half, so such a model scores 0.5 rather than 0; see
        :meth:`directional_derivatives` for the size of the effect. ``per_image=True`` returns each
        image's count (1 up, 0 down, 0.5 flat) instead of their mean, for an interval over images.
        """
        dd = self.directional_derivatives(model, images, target, versus=versus)
        counts = np.where(np.abs(dd) <= atol, 0.5, (dd > 0).astype(float))
        return counts if per_image else float(counts.mean())


def cav_retrieval(model: nn.Module, images: Any, flags: Any, layers: Sequence[str],
                  methods: Sequence[str] = ("signal", "ridge"), groups: Any = None, cv: int = 5,
                  random_state: int = 0) -> pd.DataFrame:
    """Cross-validated retrieval of flagged images by a CAV, per artifact, layer and method.

    For data where the artifact flags are known for every image (annotations such as Bissoto et
    al.'s for ISIC), each image is scored by a CAV fitted on the other folds (``CAV.cv_scores_``),
    so the scores are those of images the CAV never saw, as when it retrieves unlabelled images.

    Parameters
    ----------
    flags : pandas.DataFrame (N, artifacts) of bool, or a dict of name -> (N,) flags
    layers : module names (one activation pass per layer)
    groups : (N,), optional
        For example the class labels: the CAV is fitted within groups (see
        :meth:`CAV.fit_activations`), so it cannot retrieve an artifact by the class it comes with.

    Returns
    -------
    pandas.DataFrame with one row per (artifact, layer, method): ``n``, ``n_flagged``, ``auroc``,
    ``ap`` and ``ap_chance`` (the share of flagged images, what a random ranking scores). AUROC's
    chance is 0.5.
    """
    if isinstance(flags, dict):
        flags = pd.DataFrame({k: np.asarray(v.cpu() if torch.is_tensor(v) else v) for k, v in flags.items()})
    if not isinstance(flags, pd.DataFrame) or flags.shape[1] == 0:
        raise ValueError(f"flags must be a non-empty DataFrame or dict of artifact -> flags; got {type(flags).__name__}")
    if isinstance(layers, str) or not len(layers):
        raise ValueError(f"layers must be a non-empty list of module names; got {layers!r}")
    bad = [m for m in methods if m not in _METHODS]
    if bad or not len(methods):
        raise ValueError(f"methods must be a non-empty subset of {_METHODS}; got {list(methods)!r}")
    rows = []
    for layer in layers:
        acts = CAV(layer).activations(model, images)
        for name in flags.columns:
            try:
                f = _check_flags(flags[name].to_numpy(), n=len(acts))
            except ValueError as e:
                raise ValueError(f"artifact {name!r}: {e}") from None
            for method in methods:
                cav = CAV(layer, method=method, cv=cv, random_state=random_state).fit_activations(acts, f, groups=groups)
                rows.append({"artifact": name, "layer": layer, "method": method, "n": len(f), "n_flagged": int(f.sum()),
                             "auroc": cav.auroc_, "ap": cav.ap_, "ap_chance": float(f.mean())})
    return pd.DataFrame(rows).set_index(["artifact", "layer", "method"]).sort_index()


def random_concept_cavs(acts: Any, flags: Any, groups: Any = None, n: int = 5, method: str = "signal",
                        layer: str | None = None, random_state: int = 0) -> list[CAV]:
    """CAVs of random concepts: ``flags`` shuffled (within each group, when given), ``n`` times.

    TCAV's baseline (Kim et al. 2018): a concept's score means something only where it differs
    from the scores of directions that mark nothing. Shuffling the flags within each class keeps
    the concept's prevalence per class, so the random directions are fitted exactly like the real one.
    """
    f = _check_flags(flags)
    a = _check_acts(acts)
    if len(a) != len(f):
        raise ValueError(f"mismatched lengths: {len(a)} activation rows but {len(f)} flags")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an int >= 1; got {n!r}")
    g = np.zeros(len(f), int) if groups is None else np.asarray(groups.cpu() if torch.is_tensor(groups) else groups)
    g = g.reshape(-1)
    if len(g) != len(f):
        raise ValueError(f"mismatched lengths: {len(f)} flags but {len(g)} groups")
    rng = np.random.default_rng(random_state)
    out = []
    for _ in range(int(n)):
        shuffled = f.copy()
        for k in np.unique(g):
            shuffled[g == k] = rng.permutation(f[g == k])
        out.append(CAV(layer, method=method, random_state=random_state).fit_activations(
            a, shuffled, groups=None if groups is None else g))
    return out


def cav_report(model: nn.Module, train_images: Any, train_flags: pd.DataFrame, test_images: Any,
               test_flags: pd.DataFrame, layers: Sequence[str], methods: Sequence[str] = ("signal", "ridge"),
               train_groups: Any = None, test_groups: Any = None, gate: Any = None,
               random_state: int = 0) -> tuple[pd.DataFrame, dict]:
    """Retrieval of every artifact by a CAV at every layer and method, beside chance, with its validity gate.

    Two CAVs per (artifact, layer, method), both fitted on the training images: one on all of them
    (as Pahde et al. retrieve; the class can help it) scores the test images (``test AUROC``, and
    ``test AUROC within class``: the mean of the AUROCs among the test images of each group, where
    the class cannot help), and one fitted within class (``groups=train_groups``), whose held-out
    cross-validation scores (``cv_scores_``) are gated by :func:`xaibias.validity.cav_gate`: its
    detection AUROC interval must lie above 0.5. The within-class CAV is the one the corrections use.

    ``gate``: the (layer, method) pairs whose within-class CAVs are gated (a bootstrap of the AUROC,
    seconds per CAV on a CPU); default every pair. The gate line of each is printed.

    Returns
    -------
    table : DataFrame indexed by (artifact, layer, CAV) with ``test AUROC``, ``test AUROC within class``,
        ``test AP``, ``AP chance`` (the test prevalence), ``CV AUROC within class`` and ``gate``
        (``valid``, ``FLAGGED``, or empty where not gated)
    fitted : dict (artifact, layer, method) -> {"cav": the within-class CAV, "gate": its Gate or None,
        "scores": the all-images CAV's test scores}
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    from ..validity import cav_gate

    if not isinstance(train_flags, pd.DataFrame) or not isinstance(test_flags, pd.DataFrame):
        raise ValueError("train_flags and test_flags must be DataFrames with one bool column per artifact")
    missing = [a for a in train_flags.columns if a not in test_flags.columns]
    if missing:
        raise ValueError(f"test_flags lacks the artifact column(s) {missing}")
    yt = None if test_groups is None else np.asarray(test_groups.cpu() if torch.is_tensor(test_groups) else test_groups)
    rows, fitted = [], {}
    for layer in layers:
        base = CAV(layer)
        acts_train, acts_test = base.activations(model, train_images), base.activations(model, test_images)
        for a in train_flags.columns:
            f_train, f_test = _check_flags(train_flags[a].to_numpy()), _check_flags(test_flags[a].to_numpy())
            for method in methods:
                plain = CAV(layer, method=method, random_state=random_state).fit_activations(acts_train, f_train)
                within = CAV(layer, method=method, random_state=random_state).fit_activations(
                    acts_train, f_train, groups=train_groups)
                s = plain.score_activations(acts_test)
                g = None
                if gate is None or (layer, method) in set(map(tuple, gate)):
                    g = cav_gate(f"{a} CAV at {layer} ({method}, within class)", within.cv_scores_, f_train,
                                 seed=random_state)
                per_class = [roc_auc_score(f_test[yt == c], s[yt == c]) for c in np.unique(yt)
                             if 0 < f_test[yt == c].sum() < (yt == c).sum()] if yt is not None else []
                rows.append({"artifact": a, "layer": layer, "CAV": method, "test AUROC": roc_auc_score(f_test, s),
                             "test AUROC within class": float(np.mean(per_class)) if per_class else np.nan,
                             "test AP": average_precision_score(f_test, s), "AP chance": float(f_test.mean()),
                             "CV AUROC within class": within.auroc_,
                             "gate": "" if g is None else "valid" if g else "FLAGGED"})
                fitted[(a, layer, method)] = {"cav": within, "gate": g, "scores": s}
    table = pd.DataFrame(rows).set_index(["artifact", "layer", "CAV"]).sort_index()
    return table, fitted

