"""Bias mitigation for training: ``CORRECTIONS == ("resample", "augment", "rrr")``.

Train with ``xaibias.mitigation.fit_or_load(name, train_set, method, options, epochs=..., ...)``; it
prepares the data and training hooks and calls :func:`xaibias.models.fit_or_load`.
"""

from .methods import CORRECTIONS, fit_or_load, prepare, rrr_penalty

__all__ = ["CORRECTIONS", "fit_or_load", "prepare", "rrr_penalty"]
