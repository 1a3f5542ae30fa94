"""xaibias: detecting and reducing dataset bias with explainable AI.

A thin helper package behind the notebooks in ``notebooks/``. Import it as ``import xaibias as xb``;
the sub-modules are ``config``, ``findings``, ``data``, ``models``, ``explain``, ``analysis``, ``mitigation``,
``viz`` and ``widgets``. Dependencies run one way: ``config`` is a leaf; ``data``, ``models`` and
``explain`` use only ``config``; ``analysis`` uses those three; ``viz`` and ``widgets`` sit on top.
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
