"""Attribution: one call, :func:`attribute`, for every method, returning (N,H,W) relevance.

``METHODS`` lists the method names :func:`attribute` accepts and ``COMPOSITES`` the zennit
composite names for ``method="lrp"``. Methods implemented here beside zennit and captum register
themselves with :func:`register_method` (Score-CAM, competitive gradient x input). Also here: the
from-scratch LRP of ``reference``, the :class:`DenseNetCanonizer`, concept relevance in ``crp``
(zennit-crp) and :func:`attribute_dataset` for streaming whole datasets to HDF5.
"""

from . import reference  # noqa: F401
from .attribution import *  # noqa: F401,F403
from .attribution import available_methods
from .canonizers import *  # noqa: F401,F403
from .competitive import *  # noqa: F401,F403
from .dataset import *  # noqa: F401,F403
from .scorecam import *  # noqa: F401,F403


def __getattr__(name: str):
    # METHODS is read live, so a method added with register_method() is listed too.
    if name == "METHODS":
        return available_methods()
    # zennit-crp is imported only when concept relevance is used.
    if name == "crp":
        import importlib

        return importlib.import_module(".crp", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
