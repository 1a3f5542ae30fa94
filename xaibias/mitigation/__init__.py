"""Bias mitigation: ``CORRECTIONS == ("resample", "augment", "rrr", "pclarc", "aclarc", "rrclarc", "dfr")``.

Train with ``xaibias.mitigation.fit_or_load(name, train_set, method, options, epochs=..., ...)``.
The first three change the training (``"resample"``: the data, ``"augment"``: every batch,
``"rrr"``: the loss): for them it prepares the data and training hooks and calls
:func:`xaibias.models.fit_or_load`. The other four correct a trained (cached) uncorrected model with
the artifacts' concept activation vectors or group labels (:mod:`xaibias.mitigation.clarc`):
``"pclarc"`` projects the CAV directions out at inference, ``"aclarc"`` fine-tunes with the artifact
added along the CAV, ``"rrclarc"`` fine-tunes with a penalty on the output gradient along the CAV,
and ``"dfr"`` refits the last layer on a group-balanced set.
"""

from .methods import CORRECTIONS, fit_or_load, prepare, rrr_penalty

__all__ = ["CORRECTIONS", "fit_or_load", "prepare", "rrr_penalty"]
