"""Export relevance maps and SpRAy/GEBI results as HDF5 files that CoRelAy and ViRelAy read.

The layout follows ViRelAy's database specification and the files CoRelAy's example
``virelay_analysis.py`` writes (both at github.com/virelay). Four files make a ViRelAy project:

Input file (``dataset.h5``, :func:`write_input_h5`)
    ``data``   float32 (N, C, H, W)  model inputs
    ``label``  uint32 (N,)           true class index

Attribution file (``attribution.h5``, :func:`write_attribution_h5`)
    ``attribution``  float32 (N, C, H, W)  relevance; (N,H,W) maps are stored with C=1
    ``prediction``   float32 (N, classes)  model outputs (scores or probabilities)
    ``label``        uint32 (N,)           true class index
    ``index``        uint32 (N,)           optional: positions of these samples in the input file

Analysis file (``analysis.h5``, :func:`write_analysis_h5`), one group per category (usually a
class, named by the label map's ``word_net_id``; here ``f"{class_index:08d}"`` by default)::

    <category>/index                  uint32 (n,)    rows of the attribution file in this analysis
    <category>/name                   attribute      verbose name of the analysis
    <category>/embedding/spectral     float32 (n, m) Laplacian eigenvectors (``embedding_``),
                                      attrs: eigenvalue float32 (m,) ascending (``eigenvalues_``)
    <category>/embedding/tsne         float32 (n, 2) 2-D embedding (``embedding_2d_``, when present),
                                      attrs: embedding="spectral", index=[0, 1]
    <category>/cluster/kmeans-KK      uint32 (n,)    k-means labels for K clusters (two digits),
                                      attrs: embedding="spectral", k=K, index=arange(m)

:func:`write_virelay_project` writes all four plus ``label-map.json`` and ``project.yaml``, so
``virelay project.yaml`` opens the result. :func:`read_attribution_h5` and
:func:`read_analysis_h5` read the files back into plain dicts of numpy arrays (round trip).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from .._checks import as_images, as_labels, as_relevance, check_same_n, describe
from ..explain.dataset import attribution_dataset

__all__ = [
    "write_input_h5",
    "write_attribution_h5",
    "write_analysis_h5",
    "write_virelay_project",
    "read_attribution_h5",
    "read_analysis_h5",
    "category_name",
]


def category_name(class_index: int) -> str:
    """Default analysis group name of a class (zero-padded to 8 digits, as CoRelAy's example)."""
    return f"{int(class_index):08d}"


def _np(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _tmp_then_replace(path: Path):
    """Context helper: write to ``path.tmp`` and rename on success (atomic, no half files)."""

    class _Ctx:
        def __enter__(self) -> h5py.File:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.tmp = path.with_name(path.name + ".tmp")
            self.fh = h5py.File(self.tmp, "w")
            return self.fh

        def __exit__(self, exc_type, exc, tb) -> None:
            self.fh.close()
            if exc_type is None:
                os.replace(self.tmp, path)
            elif self.tmp.exists():
                self.tmp.unlink()

    return _Ctx()


def write_input_h5(path: str | os.PathLike, images: Any, labels: Any) -> Path:
    """Write the model inputs as ViRelAy's HDF5 dataset file (``data``, ``label``)."""
    X = as_images(images, "images")
    y = as_labels(labels, n=len(X), name="labels")
    path = Path(path)
    with _tmp_then_replace(path) as fh:
        fh.create_dataset("data", data=X.numpy().astype(np.float32), chunks=(1, *X.shape[1:]))
        fh.create_dataset("label", data=y.numpy().astype(np.uint32))
    return path


def write_attribution_h5(path: str | os.PathLike, relevance: Any, prediction: Any, labels: Any,
                         index: Any = None) -> Path:
    """Write relevance maps in CoRelAy/ViRelAy's attribution layout.

    Parameters
    ----------
    path : path
        Output ``.h5`` file (replaced atomically).
    relevance : (N,H,W) or (N,C,H,W)
        Relevance; (N,H,W) is stored as (N,1,H,W) because ViRelAy expects a channel axis.
    prediction : (N, classes)
        Model outputs per sample.
    labels : (N,)
        True class indices.
    index : (N,), optional
        Positions of the samples in the input file (default: 0..N-1, not stored).
    """
    R = relevance if isinstance(relevance, (torch.Tensor, np.ndarray)) else np.asarray(relevance)
    R = torch.as_tensor(_np(R))
    if R.ndim == 3:
        as_relevance(R, "relevance")
        R = R.unsqueeze(1)
    elif R.ndim == 4:
        as_relevance(R.sum(1), "relevance")
    else:
        raise ValueError(f"relevance must be (N,H,W) or (N,C,H,W); got {describe(R)}")
    P = _np(prediction)
    if P.ndim != 2:
        raise ValueError(f"prediction must be (N, classes); got {describe(P)}")
    if not np.isfinite(P).all():
        raise ValueError("prediction contains NaN or infinite values")
    y = as_labels(labels, name="labels")
    check_same_n(relevance=R, prediction=P, labels=y)
    path = Path(path)
    with _tmp_then_replace(path) as fh:
        attribution_dataset(fh, "attribution", data=R.numpy())
        attribution_dataset(fh, "prediction", data=P)
        attribution_dataset(fh, "label", data=y.numpy())
        if index is not None:
            idx = _np(index).astype(np.int64)
            if idx.shape != (len(R),) or (idx < 0).any():
                raise ValueError(f"index must be (N,)={len(R)} non-negative positions; got {describe(idx)}")
            attribution_dataset(fh, "index", data=idx)
    return path


def write_analysis_h5(path: str | os.PathLike, analyses: Mapping[Any, tuple[Any, Any]],
                      ks: Iterable[int] | None = None, name: str = "spectral") -> Path:
    """Write fitted SpRAy/GEBI estimators as a ViRelAy analysis file.

    Parameters
    ----------
    path : path
        Output ``.h5`` file (replaced atomically).
    analyses : mapping category -> (fitted estimator, index)
        One entry per category (an int class index becomes :func:`category_name`, a str is used
        as is). ``index``: positions (n,) of the estimator's maps in the attribution file. An
        estimator fitted with landmarks (``landmark_indices_`` set: SpRAy/GEBI on ``large_n`` maps
        or more) has a spectral embedding for its landmark maps only; those are written.
    ks : iterable of int, optional
        Cluster counts to store as ``cluster/kmeans-KK`` (default: the fitted ``n_clusters_``);
        extra k come from :meth:`labels_for` on the fitted embedding (no refit).
    name : str
        Verbose analysis name stored as the ``name`` attribute.
    """
    if not analyses:
        raise ValueError("analyses is empty; expected {category: (fitted estimator, index)}")
    path = Path(path)
    with _tmp_then_replace(path) as fh:
        for cat, entry in analyses.items():
            if not (isinstance(entry, tuple) and len(entry) == 2):
                raise ValueError(f"analyses[{cat!r}] must be a (fitted estimator, index) pair; got {type(entry).__name__}")
            est, index = entry
            if not hasattr(est, "embedding_"):
                raise ValueError(f"analyses[{cat!r}]: the estimator is not fitted (no embedding_); call fit first")
            idx = _np(index).astype(np.int64)
            n = len(est.labels_)
            if idx.shape != (n,):
                raise ValueError(f"analyses[{cat!r}]: index must have one entry per fitted map (n={n}); got {describe(idx)}")
            # with landmarks (SpRAy/GEBI from large_n maps on) the spectral embedding exists for the
            # landmark maps only: ViRelAy gets those, with their labels
            keep = getattr(est, "landmark_indices_", None)
            if keep is not None:
                idx = idx[keep]
            g = fh.create_group(category_name(cat) if isinstance(cat, (int, np.integer)) else str(cat))
            g.attrs["name"] = name
            g.create_dataset("index", data=idx.astype(np.uint32))
            emb = g.create_group("embedding")
            ds = emb.create_dataset("spectral", data=np.asarray(est.embedding_, dtype=np.float32))
            ds.attrs["eigenvalue"] = np.asarray(est.eigenvalues_, dtype=np.float32)
            if getattr(est, "embedding_2d_", None) is not None:
                t = emb.create_dataset("tsne", data=np.asarray(est.embedding_2d_, dtype=np.float32))
                t.attrs["embedding"] = "spectral"
                t.attrs["index"] = np.array([0, 1])
            cl = g.create_group("cluster")
            for k in sorted({int(est.n_clusters_), *(ks or ())}):
                lab = est.labels_ if k == est.n_clusters_ else est.labels_for(k)
                if keep is not None:
                    lab = np.asarray(lab)[keep]
                d = cl.create_dataset(f"kmeans-{k:02d}", data=np.asarray(lab, dtype=np.uint32))
                d.attrs["embedding"] = "spectral"
                d.attrs["k"] = k
                d.attrs["index"] = np.arange(est.embedding_.shape[1], dtype=np.uint32)
    return path


def write_virelay_project(folder: str | os.PathLike, images: Any, relevance: Any, prediction: Any,
                          labels: Any, analyses: Mapping[Any, tuple[Any, Any]],
                          class_names: list[str] | None = None, ks: Iterable[int] | None = None,
                          project_name: str = "xaibias", model_name: str = "model",
                          attribution_method: str = "LRP", analysis_method: str = "Spectral",
                          attribution_strategy: str = "predicted_label") -> Path:
    """Write a complete ViRelAy project (inputs, attributions, analysis, label map, project.yaml).

    Returns the path of ``project.yaml``; open it with ``virelay <folder>/project.yaml``.
    """
    if attribution_strategy not in ("true_label", "predicted_label"):
        raise ValueError(f"attribution_strategy must be 'true_label' or 'predicted_label'; got {attribution_strategy!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    X = as_images(images, "images")
    P = _np(prediction)
    n_classes = P.shape[1] if P.ndim == 2 else int(_np(labels).max()) + 1
    class_names = class_names or [f"class {c}" for c in range(n_classes)]
    if len(class_names) != n_classes:
        raise ValueError(f"class_names has {len(class_names)} names but prediction has {n_classes} classes")
    write_input_h5(folder / "dataset.h5", X, labels)
    write_attribution_h5(folder / "attribution.h5", relevance, P, labels)
    write_analysis_h5(folder / "analysis.h5", analyses, ks=ks, name=analysis_method)
    label_map = [{"index": c, "word_net_id": category_name(c), "name": str(nm)} for c, nm in enumerate(class_names)]
    (folder / "label-map.json").write_text(json.dumps(label_map, indent=2))
    h, w = X.shape[-2:]
    yaml = (
        "project:\n"
        f"  name: {json.dumps(project_name)}\n"
        f"  model: {json.dumps(model_name)}\n"
        "  label_map: label-map.json\n"
        "  dataset:\n"
        "    name: dataset\n"
        "    type: hdf5\n"
        "    path: dataset.h5\n"
        f"    input_width: {w}\n"
        f"    input_height: {h}\n"
        "    up_sampling_method: none\n"
        "    down_sampling_method: none\n"
        "  attributions:\n"
        f"    attribution_method: {json.dumps(attribution_method)}\n"
        f"    attribution_strategy: {attribution_strategy}\n"
        "    sources:\n"
        "    - attribution.h5\n"
        "  analyses:\n"
        f"  - analysis_method: {json.dumps(analysis_method)}\n"
        "    sources:\n"
        "    - analysis.h5\n"
    )
    (folder / "project.yaml").write_text(yaml)
    return folder / "project.yaml"


def _open(path: str | os.PathLike, required: tuple[str, ...], what: str) -> h5py.File:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    try:
        fh = h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"{path} is not a readable HDF5 file ({err})") from None
    missing = [k for k in required if k not in fh]
    if missing:
        fh.close()
        raise ValueError(f"{path} is not a {what} file: missing dataset(s) {missing}; expected {list(required)}")
    return fh


def read_attribution_h5(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read an attribution file: dict with ``attribution``, ``prediction``, ``label`` (and ``index``)."""
    with _open(path, ("attribution", "prediction", "label"), "attribution") as fh:
        return {k: fh[k][()] for k in ("attribution", "prediction", "label", "index") if k in fh}


def read_analysis_h5(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Read an analysis file into ``{category: {"index", "name", "eigenvalue", "embedding": {...}, "cluster": {...}}}``."""
    out: dict[str, dict[str, Any]] = {}
    with _open(path, (), "analysis") as fh:
        for cat, g in fh.items():
            for key in ("index", "embedding", "cluster"):
                if key not in g:
                    raise ValueError(f"{path}: group {cat!r} has no {key!r}; not a ViRelAy analysis file")
            emb = {k: v[()] for k, v in g["embedding"].items()}
            spectral = g["embedding"].get("spectral")
            out[cat] = {
                "index": g["index"][()],
                "name": g.attrs.get("name", ""),
                "embedding": emb,
                "eigenvalue": spectral.attrs["eigenvalue"][()] if spectral is not None and "eigenvalue" in spectral.attrs else None,
                "cluster": {k: v[()] for k, v in g["cluster"].items()},
            }
    return out
