"""Bias mitigation for training: ``METHODS == ("resample", "augment", "rrr")``.

Used through ``xaibias.models.fit_or_load(..., mitigation=...)``.
"""

from .methods import *  # noqa: F401,F403
