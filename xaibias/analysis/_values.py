"""Checks shared by the saliency, variance and failure-curve functions: values with labels, models, methods."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from .._checks import as_labels, describe

__all__ = ["as_values", "values_and_labels", "check_class_names", "plain", "check_models", "check_methods"]


def as_values(values: Any, name: str = "values") -> np.ndarray:
    if isinstance(values, torch.Tensor):
        arr = values.detach().cpu().numpy()
    elif isinstance(values, (pd.Series, np.ndarray, list, tuple)):
        arr = np.asarray(values)
    else:
        raise TypeError(f"{name} must be a pandas Series, numpy array, tensor or list; got {describe(values)}")
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one saliency value per image); got shape {arr.shape}")
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name} must be numeric; got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if len(arr) == 0:
        raise ValueError(f"{name} is empty; expected at least one saliency value")
    if not np.isfinite(arr).all():
        bad = np.flatnonzero(~np.isfinite(arr))
        raise ValueError(
            f"{name} contains NaN or infinite values at position(s) {bad[:10].tolist()}; drop images "
            "without a mask instead (mean_saliency/peak_saliency already do)"
        )
    return arr


def values_and_labels(values: Any, labels: Any, vname: str = "values") -> tuple[np.ndarray, np.ndarray]:
    """Values and the labels that go with them (labels for all images are picked at a Series index)."""
    v = as_values(values, vname)
    if isinstance(labels, (pd.Series, pd.Index)):
        labels = labels.to_numpy()
    lab = as_labels(labels, name="labels").numpy()
    if len(lab) != len(v):
        if isinstance(values, pd.Series) and len(values) and pd.api.types.is_integer_dtype(values.index):
            idx = values.index.to_numpy()
            if idx.min() < 0 or idx.max() >= len(lab):
                raise ValueError(
                    f"labels has {len(lab)} entries but {vname} is indexed up to image {idx.max()}; "
                    "give one label per image"
                )
            lab = lab[idx]
        else:
            raise ValueError(
                f"labels has {len(lab)} entries but {vname} has {len(v)}; give one label per value, or "
                "one per image together with the Series returned by mean_saliency/peak_saliency"
            )
    return v, lab


def check_class_names(class_names: Sequence[str] | None, labels: np.ndarray) -> list[str] | None:
    if class_names is None:
        return None
    names = list(class_names)
    if len(labels) and labels.max() >= len(names):
        raise ValueError(
            f"class_names has {len(names)} names but labels contain class {int(labels.max())}; "
            "give one name per class index"
        )
    return names


def plain(x: Any) -> Any:
    return x.item() if isinstance(x, np.generic) else x


def check_models(models: Any) -> dict:
    if not isinstance(models, Mapping) or not models:
        raise TypeError(f"models must be a non-empty dict name -> model; got {describe(models)}")
    return dict(models)


def check_methods(methods: Any) -> dict[str, dict]:
    if not isinstance(methods, Mapping) or not methods:
        raise TypeError(
            "methods must be a non-empty dict method -> keyword arguments of attribute(), e.g. "
            f"{{'gradcam': {{}}}}; got {describe(methods)}"
        )
    return {str(k): dict(v or {}) for k, v in methods.items()}
