"""Attribution: one call, :func:`attribute`, for every method, returning (N,H,W) relevance.

``METHODS`` lists the method names :func:`attribute` accepts and ``COMPOSITES`` the zennit
composite names for ``method="lrp"``. Methods implemented here beside zennit and captum register
themselves with :func:`register_method` (Score-CAM, competitive gradient x input). Also here: the
from-scratch LRP of ``reference``, the :class:`DenseNetCanonizer`, concept relevance in ``crp``
(zennit-crp) and :func:`attribute_dataset` for streaming whole datasets to HDF5.
"""

# What a notebook or a user calls; the rest stays importable from its module (for example
# ``xaibias.explain.attribution.make_composite``). Importing ``competitive`` and ``scorecam``
# registers their methods with :func:`attribute`.
from . import competitive, reference, scorecam  # noqa: F401
from .attribution import COMPOSITES, attribute, available_methods
from .canonizers import DenseNetCanonizer, find_densenet_batchnorms
from .dataset import attribute_dataset
from .lrp_engine import prepare_lrp
from .scorecam import score_cam

__all__ = [
    "attribute", "available_methods", "COMPOSITES", "METHODS", "DenseNetCanonizer",
    "find_densenet_batchnorms", "attribute_dataset", "score_cam", "prepare_lrp",
]


def __getattr__(name: str):
    # METHODS is read live, so a method added with register_method() is listed too.
    if name == "METHODS":
        return available_methods()
    # zennit-crp is imported only when concept relevance is used.
    if name == "crp":
        import importlib

        return importlib.import_module(".crp", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
