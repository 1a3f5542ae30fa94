"""Synthetic dermoscopy-like lesions with artifacts whose co-occurrence with the class is known.

:class:`SyntheticLesions` is the embedded default dataset of the notebooks: it needs no download,
generates 2,000 images of 64 px in seconds, and every pixel's origin is known (a lesion mask and
one mask per artifact), so explanation methods can be scored against the truth.

How an image is made
--------------------
1. **Skin**: a tone drawn from ``skin_tones`` (Fitzpatrick-like types I-VI under dermoscope light),
   with smooth illumination changes, a slight dermoscope fall-off and fine texture noise.
2. **Lesion**: an ellipse whose border is perturbed by Fourier harmonics, coloured by multiplying
   the skin with a brown (or pink/red) pigment, darker towards an (off-)centre point, with optional
   colour blobs, vessels, keratin scale and dots. Its appearance is controlled by eleven features
   in [0, 1] (:data:`FEATURES`), drawn per image from class-dependent distributions
   (:data:`CLASS_PROTOTYPES`).
3. **Artifacts**: each artifact of :data:`xaibias.data.ARTIFACTS` is painted with probability
   ``bias[artifact][class]`` by the same painters as :func:`xaibias.data.insert_artifact`, in the
   order hair, bubble, ink, ruler, patch, red_circle, frame (the microscope frame last, on top).

Classes and their clinical meaning
----------------------------------
Binary (default, ``class_names == ["benign", "malignant"]``, label 1 = malignant): *benign* is a
common nevus: small, round, symmetric, regular sharp-ish border, one uniform brown. *Malignant* is
a melanoma: larger, elongated and asymmetric (lopsided outline, eccentric dark centre), irregular
border, several colours (black, blue-grey, red, white regression, dark brown blobs). The ABCD rule
of dermoscopy in miniature.

Seven ISIC-like classes (``classes=7``; ``classes=k`` takes the first ``k`` of this order):

- ``MEL`` melanoma: as *malignant* above.
- ``NV`` nevus: as *benign* above.
- ``BCC`` basal cell carcinoma: pink, pearly, little pigment, arborising red vessels.
- ``SCC`` squamous cell carcinoma: pink-red, blurred border, white-yellow keratin scale, some vessels.
- ``AK`` actinic keratosis: small, faint pink-red, very ill-defined border, some scale.
- ``SK`` seborrhoeic keratosis: dark brown, sharply demarcated ("stuck on"), white milia-like
  cysts and dark comedo-like openings.
- ``Other`` vascular-like lesion: small, round, dark red-purple.

The ``difficulty`` knob
-----------------------
Each feature ``j`` of an image of class ``c`` is drawn as
``clip(mean_j + (1 - difficulty) * (proto[c, j] - mean_j) + sigma(difficulty) * z, 0, 1)`` with
``z ~ N(0, 1)``, ``mean_j`` the average prototype over the classes in use and
``sigma(d) = 0.06 + 0.42 * d``. At ``difficulty=0`` the classes' feature distributions barely
overlap (clearly separable by eye); as it grows the class means move together and the spread
grows; at ``difficulty=1`` every class draws from the same distribution and the lesion carries no
label information at all. Skin tone, lesion position, rotation and pigment darkness (binary case)
never depend on the class.

**Recommended difficulty for bias experiments, and the default: 0.5** (:data:`RECOMMENDED_DIFFICULTY`): the lesion
signal is informative but imperfect, so an artifact that co-occurs with a class is an attractive
shortcut. Measured with ``small_vgg`` (5 epochs, 1,500 training / 500 test images of 64 px,
seeds 0 and 1): without artifacts it reaches 79 % / 79 % (logistic regression on the true
features: 92 %); with ``bias={"frame": (0.8, 0.1)}`` it reaches 88 % / 88 % on the same
distribution (the frame alone would give 85 %), 44 % / 46 % with the correlation reversed, and
calls 82 % / 87 % of benign images malignant once a frame is inserted. At difficulty 0.45 the
lesion-only accuracy is 85 % and the frame-biased model scores 91 % / 57 % (seed 1): use it when a
wider margin above 85 % on the biased test set matters more than a strong shortcut.

Bias
----
``bias={artifact: (P(a | malignant), P(a | benign))}`` (binary) or
``{artifact: {class_name: rate}}`` (any class set; missing classes get rate 0).
``bias="isic2018"`` uses the co-occurrence rates measured on 2,594 ISIC 2018 images by Bissoto et
al. 2020 ("Debiasing skin lesion datasets and models? Not so fast", Table 1), mapped to painters:
dark corner -> ``frame`` .451/.350, hair .509/.604, gel bubble -> ``bubble`` .495/.487, ruler
.595/.470, ink .121/.183, patches -> ``patch`` .004/.089. Their *gel border* (.171/.284) has no
painter and is left out. With more classes, MEL, BCC and SCC get the malignant rate and the others
the benign rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from .._checks import as_images, as_masks, describe
from ._base import ArrayDataset
from .artifacts import ARTIFACTS, PAINTER_PARAMS, paint_np
from .lesion_render import BINARY_CLASSES, CLASS_PROTOTYPES, FEATURES, draw_features, render_batch

__all__ = [
    "SyntheticLesions",
    "reverse_bias",
    "hide_lesion",
    "BIAS_PRESETS",
    "SKIN_TONES",
    "FEATURES",
    "CLASS_PROTOTYPES",
    "ISIC_CLASSES",
    "MALIGNANT_CLASSES",
    "RECOMMENDED_DIFFICULTY",
]

#: Bump when the generator changes, so cached models trained on old images are not reused.
GENERATOR_VERSION = 2

RECOMMENDED_DIFFICULTY = 0.5

ISIC_CLASSES: tuple[str, ...] = ("MEL", "NV", "BCC", "SCC", "AK", "SK", "Other")
MALIGNANT_CLASSES: frozenset[str] = frozenset({"malignant", "MEL", "BCC", "SCC"})

#: Skin tones (RGB under dermoscope light), roughly Fitzpatrick types I-VI.
SKIN_TONES: dict[str, tuple[float, float, float]] = {
    "I": (0.96, 0.84, 0.78),
    "II": (0.92, 0.76, 0.66),
    "III": (0.85, 0.66, 0.54),
    "IV": (0.73, 0.53, 0.39),
    "V": (0.56, 0.39, 0.27),
    "VI": (0.40, 0.27, 0.19),
}

#: P(artifact | malignant), P(artifact | benign) on ISIC 2018 (Bissoto et al. 2020, Table 1).
BIAS_PRESETS: dict[str, dict[str, tuple[float, float]]] = {
    "isic2018": {
        "frame": (0.451, 0.350),  # "dark corner"
        "hair": (0.509, 0.604),
        "bubble": (0.495, 0.487),  # "gel bubble"
        "ruler": (0.595, 0.470),
        "ink": (0.121, 0.183),
        "patch": (0.004, 0.089),  # "patches"
        # "gel border" (.171/.284) has no painter and is left out
    }
}

_PAINT_ORDER = ("hair", "bubble", "ink", "ruler", "patch", "red_circle", "frame")


# ----------------------------------------------------------------------------------------------
# argument resolution
# ----------------------------------------------------------------------------------------------
def _resolve_classes(classes: Any) -> list[str]:
    if isinstance(classes, (int, np.integer)) and not isinstance(classes, bool):
        k = int(classes)
        if k == 2:
            return list(BINARY_CLASSES)
        if 3 <= k <= len(ISIC_CLASSES):
            return list(ISIC_CLASSES[:k])
        raise ValueError(f"classes must be an int in 2..{len(ISIC_CLASSES)} or a list of class names; got {k}")
    if isinstance(classes, (list, tuple)) and all(isinstance(c, str) for c in classes):
        names = list(classes)
        if len(names) < 2 or len(set(names)) != len(names):
            raise ValueError(f"classes must list at least two distinct class names; got {names}")
        if sorted(names) == sorted(BINARY_CLASSES):
            if names != list(BINARY_CLASSES):
                raise ValueError(f"binary classes must be in the order {list(BINARY_CLASSES)}; got {names}")
            return names
        bad = [c for c in names if c not in ISIC_CLASSES]
        if bad:
            raise ValueError(
                f"classes contains unknown class name(s) {bad}; valid names are {list(ISIC_CLASSES)} "
                f"or exactly {list(BINARY_CLASSES)}"
            )
        return names
    raise ValueError(f"classes must be an int in 2..{len(ISIC_CLASSES)} or a list of class names; got {classes!r}")


def _check_rate(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"bias rate for {where} must be a number in [0,1]; got {value!r}")
    v = float(value)
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"bias rate for {where} must be in [0,1]; got {v}")
    return v


def _resolve_bias(bias: Any, class_names: list[str]) -> tuple[dict, dict[str, np.ndarray]]:
    """Return (bias as resolved, {artifact: rate per class index})."""
    binary = class_names == list(BINARY_CLASSES)
    if bias is None:
        return {}, {}
    if isinstance(bias, str):
        if bias not in BIAS_PRESETS:
            raise ValueError(f"unknown bias preset {bias!r}; valid presets are {list(BIAS_PRESETS)}")
        preset = BIAS_PRESETS[bias]
        if binary:
            bias = dict(preset)
        else:
            bias = {
                a: {c: (pm if c in MALIGNANT_CLASSES else pb) for c in class_names} for a, (pm, pb) in preset.items()
            }
    if not isinstance(bias, dict):
        raise ValueError(
            "bias must be None, a preset name, {artifact: (P(a|malignant), P(a|benign))} or "
            f"{{artifact: {{class_name: rate}}}}; got {type(bias).__name__}"
        )
    resolved: dict[str, Any] = {}
    rates: dict[str, np.ndarray] = {}
    for art, spec in bias.items():
        if art not in ARTIFACTS:
            raise ValueError(f"bias names unknown artifact {art!r}; valid artifacts are {', '.join(ARTIFACTS)}")
        if isinstance(spec, dict):
            bad = [c for c in spec if c not in class_names]
            if bad:
                raise ValueError(f"bias[{art!r}] names unknown class(es) {bad}; the classes are {class_names}")
            r = np.array([_check_rate(spec.get(c, 0.0), f"bias[{art!r}][{c!r}]") for c in class_names])
            if binary:
                resolved[art] = (float(r[1]), float(r[0]))
            else:
                resolved[art] = {c: float(v) for c, v in zip(class_names, r)}
        elif isinstance(spec, (tuple, list)):
            if not binary:
                raise ValueError(
                    f"bias[{art!r}] is a (P(a|malignant), P(a|benign)) pair, which needs binary classes; "
                    f"with classes {class_names} give {{class_name: rate}}"
                )
            if len(spec) != 2:
                raise ValueError(
                    f"bias[{art!r}] must be a pair (P(a|malignant), P(a|benign)); got {len(spec)} value(s)"
                )
            pm = _check_rate(spec[0], f"bias[{art!r}] P(a|malignant)")
            pb = _check_rate(spec[1], f"bias[{art!r}] P(a|benign)")
            resolved[art] = (pm, pb)
            r = np.array([pb, pm])
        else:
            raise ValueError(
                f"bias[{art!r}] must be a pair (P(a|malignant), P(a|benign)) or a {{class_name: rate}} dict; "
                f"got {type(spec).__name__}"
            )
        rates[art] = r
    return resolved, rates


def _resolve_skin(skin_tones: Any) -> tuple[list, np.ndarray]:
    if isinstance(skin_tones, str):
        skin_tones = [skin_tones]
    if not isinstance(skin_tones, (list, tuple)) or len(skin_tones) == 0:
        raise ValueError(f"skin_tones must be a non-empty list of names {list(SKIN_TONES)} or RGB triples; got {skin_tones!r}")
    spec, rgb = [], []
    for t in skin_tones:
        if isinstance(t, str):
            if t not in SKIN_TONES:
                raise ValueError(f"skin_tones has unknown tone {t!r}; valid names are {list(SKIN_TONES)} (or RGB triples)")
            spec.append(t)
            rgb.append(SKIN_TONES[t])
        else:
            c = np.asarray(t, dtype=float)
            if c.shape != (3,) or not np.all((c >= 0) & (c <= 1)):
                raise ValueError(f"skin_tones entries must be names or RGB triples in [0,1]; got {t!r}")
            spec.append([float(v) for v in c])
            rgb.append(tuple(c))
    return spec, np.asarray(rgb, np.float32)


def painter_params(params: Any, allowed: Any = None, what: str = "artifact_params") -> dict[str, dict[str, Any]]:
    """Check ``{artifact: {painter parameter: value}}`` and return a copy; a clear error otherwise.

    Parameters
    ----------
    params : dict or None
        Painter options per artifact, e.g. ``{"patch": {"size": 2.0}}``; ``None`` is ``{}``.
    allowed : sequence of str, optional
        The artifacts that may be named (default: every painter, :data:`ARTIFACTS`).
    what : str
        The argument's name in the error messages.

    Raises
    ------
    ValueError
        Naming ``what``, the artifact and the parameters its painter takes.
    """
    allowed = tuple(ARTIFACTS if allowed is None else allowed)
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise ValueError(f"{what} must be {{artifact: {{painter parameter: value}}}}; got {type(params).__name__}")
    out = {}
    for art, kw in params.items():
        if art not in allowed:
            raise ValueError(f"{what} names artifact {art!r}, which is not one of {', '.join(allowed)}")
        if not isinstance(kw, dict):
            raise ValueError(f"{what}[{art!r}] must be a dict of painter parameters; got {kw!r}")
        bad = sorted(set(kw) - set(PAINTER_PARAMS[art]))
        if bad:
            raise ValueError(f"{what}[{art!r}] has unknown painter parameter(s) {bad}; {art} accepts {list(PAINTER_PARAMS[art])}")
        out[art] = dict(kw)
    return out


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x


class SyntheticLesions(ArrayDataset):
    """Synthetic dermoscopy images with known lesions, artifacts and artifact/class co-occurrence.

    Parameters
    ----------
    n : number of images (>= 1); classes are balanced (counts differ by at most one)
    size : image side in pixels (>= 32)
    classes : 2 (benign/malignant, label 1 = malignant), 3..7 (the first ISIC-like classes of
        :data:`ISIC_CLASSES`) or a list of class names
    bias : None (no artifacts), a preset name (``"isic2018"``), ``{artifact: (P(a|malignant),
        P(a|benign))}`` (binary) or ``{artifact: {class_name: rate}}``
    difficulty : in [0, 1]; 0 = lesion classes clearly separable, 1 = indistinguishable (see the
        module docstring); :data:`RECOMMENDED_DIFFICULTY` (the default) for bias experiments
    seed : non-negative int; the same arguments give the same bytes
    skin_tones : names from :data:`SKIN_TONES` and/or RGB triples, drawn uniformly per image
    artifact_params : ``{artifact: {param: value}}`` passed to the painters (for example
        ``{"frame": {"style": "square"}}``, ``{"ink": {"color": (0.35, 0.2, 0.12)}}``)

    Attributes
    ----------
    images : float32 tensor (N,3,H,W) in [0,1]
    labels : long tensor (N,)
    artifacts : DataFrame with one bool column per entry of :data:`xaibias.data.ARTIFACTS`
    masks : dict of bool tensors (N,H,W): ``"lesion"`` and every artifact (all-False where absent)
    features : DataFrame of the lesion features (:data:`FEATURES`) of each image
    skin_tone : ndarray (N,) index into ``skin_tones``
    class_names : list of str
    bias : the bias as resolved (binary: ``{artifact: (P(a|malignant), P(a|benign))}``, else
        ``{artifact: {class_name: rate}}``)
    spec : JSON-able dict of all constructor arguments (and the subset, if any)
    """

    _per_item = ("images", "labels", "masks", "artifacts", "features", "skin_tone")

    def __init__(
        self,
        n: int = 2000,
        size: int = 64,
        classes: int | Sequence[str] = 2,
        bias: dict | str | None = None,
        difficulty: float = RECOMMENDED_DIFFICULTY,
        seed: int = 0,
        skin_tones: Sequence[str | Sequence[float]] = tuple(SKIN_TONES),
        artifact_params: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n must be an int >= 1 (number of images); got {n!r}")
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 32:
            raise ValueError(f"size must be an int >= 32 (image side in pixels); got {size!r}")
        if isinstance(difficulty, bool) or not isinstance(difficulty, (int, float, np.integer, np.floating)) or not (
            0.0 <= float(difficulty) <= 1.0
        ):
            raise ValueError(f"difficulty must be a number in [0,1]; got {difficulty!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative int; got {seed!r}")
        n, size, difficulty, seed = int(n), int(size), float(difficulty), int(seed)
        self.class_names = _resolve_classes(classes)
        self.bias, rates = _resolve_bias(bias, self.class_names)
        skin_spec, skin_rgb = _resolve_skin(skin_tones)
        params = painter_params(artifact_params)
        self.spec = {
            "generator": "SyntheticLesions",
            "version": GENERATOR_VERSION,
            "n": n,
            "size": size,
            "classes": list(self.class_names),
            "bias": _jsonable(self.bias),
            "difficulty": difficulty,
            "seed": seed,
            "skin_tones": skin_spec,
            "artifact_params": _jsonable(params),
            "subset": None,
        }

        k = len(self.class_names)
        rng = np.random.default_rng([seed, 0x5EED])
        labels = rng.permutation(np.arange(n) % k)
        feats = draw_features(rng, self.class_names, labels, difficulty)
        tones = rng.integers(len(skin_rgb), size=n)
        present = {a: rng.random(n) < rates[a][labels] if a in rates else np.zeros(n, bool) for a in ARTIFACTS}

        images = np.empty((n, 3, size, size), np.float32)
        masks = {name: np.zeros((n, size, size), bool) for name in ("lesion", *ARTIFACTS)}
        chunk = max(1, (1 << 19) // (size * size))
        for ci, start in enumerate(range(0, n, chunk)):
            stop = min(n, start + chunk)
            crng = np.random.default_rng([seed, 1, ci])
            images[start:stop], masks["lesion"][start:stop] = render_batch(
                feats[start:stop], skin_rgb[tones[start:stop]], size, crng
            )
        for i in range(n):
            for a in _PAINT_ORDER:
                if present[a][i]:
                    arng = np.random.default_rng([seed, 2, i, ARTIFACTS.index(a)])
                    masks[a][i] = paint_np(images[i], a, arng, masks["lesion"][i], params.get(a, {}))

        self.images = torch.from_numpy(images)
        self.labels = torch.from_numpy(labels.astype(np.int64))
        self.artifacts = pd.DataFrame({a: present[a] for a in ARTIFACTS})
        self.masks = {k_: torch.from_numpy(v) for k_, v in masks.items()}
        self.features = pd.DataFrame(feats, columns=list(FEATURES))
        self.skin_tone = tones

    def _repr_fields(self) -> dict[str, Any]:
        return {**super()._repr_fields(), "difficulty": self.spec["difficulty"], "bias": self.bias}

    # -- helpers -------------------------------------------------------------------------------
    @property
    def binary(self) -> bool:
        """Whether the classes are benign/malignant."""
        return self.class_names == list(BINARY_CLASSES)


def reverse_bias(bias: dict | str) -> dict[str, tuple[float, float]]:
    """Swap P(a|malignant) and P(a|benign) of every artifact (binary bias only).

    Accepts the pair form, the ``{"malignant": p, "benign": q}`` form or a preset name; returns the
    pair form. A model that learned the shortcut loses accuracy on data generated with the result.
    """
    resolved, _ = _resolve_bias(bias, list(BINARY_CLASSES))
    return {a: (pb, pm) for a, (pm, pb) in resolved.items()}


def _skin_estimate(img: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median colour and per-channel spread of the pixels in ``keep`` (all pixels if too few)."""
    px = img[:, keep] if keep.sum() >= 16 else img.reshape(3, -1)
    med = np.median(px, axis=1)
    mad = np.median(np.abs(px - med[:, None]), axis=1) * 1.4826
    return med.astype(np.float32), mad.astype(np.float32)


def hide_lesion(
    dataset_or_images: SyntheticLesions | torch.Tensor | np.ndarray,
    lesion_masks: torch.Tensor | np.ndarray | None = None,
    enlarge: float = 1.0,
    seed: int = 0,
    artifact_masks: torch.Tensor | np.ndarray | None = None,
    side: float | None = None,
) -> SyntheticLesions | torch.Tensor:
    """Hide each lesion under a box of skin colour (Bissoto et al. 2019, "(De)Constructing bias").

    The lesion's bounding box, scaled about its centre so that its **area** grows by ``enlarge``
    (1.0: the tight box; 1.7: the paper's 70 % larger box), is filled with the image's skin colour
    (median of the pixels outside the lesion and the artifacts) plus noise of the skin's own spread.

    Parameters
    ----------
    dataset_or_images : a :class:`SyntheticLesions` (its lesion and artifact masks are used) or
        images (N,3,H,W)
    lesion_masks : bool (N,H,W), required with plain images; every image needs a non-empty mask
    enlarge : area factor >= 1
    seed : seed of the noise
    artifact_masks : optional bool (N,H,W) of pixels to exclude from the skin estimate (images only)
    side : optional box side as a fraction of the image side. The paper's box follows the lesion,
        so its size still tells the class where lesion size does (malignant lesions are larger);
        with ``side`` every image gets a square of the same size centred on its lesion (grown to
        cover the enlarged bounding box where that is larger), which removes that leak.

    Returns
    -------
    A new dataset (images replaced; labels, masks and artifacts kept) or a float32 tensor.
    """
    if isinstance(enlarge, bool) or not isinstance(enlarge, (int, float)) or enlarge < 1.0:
        raise ValueError(f"enlarge must be an area factor >= 1 (1.7 = a 70% larger box); got {enlarge!r}")
    if side is not None and (isinstance(side, bool) or not isinstance(side, (int, float)) or not 0 < side <= 1):
        raise ValueError(f"side must be None or a fraction of the image side in (0,1]; got {side!r}")
    ds = dataset_or_images if isinstance(dataset_or_images, SyntheticLesions) else None
    if ds is not None:
        images = ds.images
        lm = ds.masks["lesion"] if lesion_masks is None else as_masks(lesion_masks, name="lesion_masks")
        am = torch.stack([ds.masks[a] for a in ARTIFACTS]).any(0)
    else:
        images = as_images(dataset_or_images)
        if lesion_masks is None:
            raise ValueError("lesion_masks is required when hide_lesion gets images rather than a SyntheticLesions")
        lm = as_masks(lesion_masks, name="lesion_masks")
        am = torch.zeros_like(lm) if artifact_masks is None else as_masks(artifact_masks, name="artifact_masks")
    n, _, h, w = images.shape
    for nm, m in (("lesion_masks", lm), ("artifact_masks", am)):
        if tuple(m.shape) != (n, h, w):
            raise ValueError(f"{nm} must be bool (N,H,W) = {(n, h, w)}; got {describe(m)}")
    empty = (~lm.reshape(n, -1).any(1)).nonzero().flatten()
    if len(empty):
        raise ValueError(f"lesion_masks is empty for image(s) {empty[:10].tolist()}; there is no lesion to hide")
    out = images.detach().cpu().numpy().astype(np.float32, copy=True)
    lmn, amn = lm.cpu().numpy(), am.cpu().numpy()
    grow = float(np.sqrt(enlarge))
    for i in range(n):
        rows, cols = np.flatnonzero(lmn[i].any(1)), np.flatnonzero(lmn[i].any(0))
        y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        cy, cx, hh, hw = (y0 + y1) / 2, (x0 + x1) / 2, (y1 - y0) / 2 * grow, (x1 - x0) / 2 * grow
        if side is None:
            ys = slice(max(0, int(round(cy - hh))), min(h, int(round(cy + hh))))
            xs = slice(max(0, int(round(cx - hw))), min(w, int(round(cx + hw))))
        else:  # same-size box for every image, shifted (not clipped) to stay inside
            bh = min(h, max(int(round(side * h)), int(np.ceil(2 * hh))))
            bw = min(w, max(int(round(side * w)), int(np.ceil(2 * hw))))
            top = int(np.clip(round(cy - bh / 2), 0, h - bh))
            left = int(np.clip(round(cx - bw / 2), 0, w - bw))
            ys, xs = slice(top, top + bh), slice(left, left + bw)
        med, mad = _skin_estimate(out[i], ~(lmn[i] | amn[i]))
        box = out[i][:, ys, xs]
        rng = np.random.default_rng([int(seed), i])
        fill = med[:, None, None] + mad[:, None, None] * 0.5 * rng.standard_normal(box.shape).astype(np.float32)
        out[i][:, ys, xs] = np.clip(fill, 0.0, 1.0)
    result = torch.from_numpy(out)
    if ds is None:
        return result
    new = ds.subset(np.arange(len(ds)))
    new.images = result
    new.spec = dict(ds.spec, hide_lesion={"enlarge": float(enlarge), "seed": int(seed), "side": side})
    return new
