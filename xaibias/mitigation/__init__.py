"""Bias mitigation: ``CORRECTIONS == ("resample", "augment", "rrr", "rrr_lrp", "attention", "pclarc", "aclarc", "rrclarc", "dfr")``.

Train with ``xaibias.mitigation.fit_or_load_correction(name, train_set, method, options, epochs=..., ...)``.
The first five change the training (``"resample"``: the data, ``"augment"``: every batch,
``"rrr"``: the loss, with the input gradient in the artifact masks; ``"rrr_lrp"``: the loss, with
the LRP relevance in the masks, trained through the map; ``"attention"``: the loss, with the
attention gate of ``"small_vgg_attention"`` in the masks): for them it prepares the data and training hooks and calls
:func:`xaibias.models.fit_or_load`; :func:`matched_epochs` gives ``"resample"``'s smaller set as many
gradient steps as plain training. The other four correct a trained (cached) uncorrected model with
the artifacts' concept activation vectors or group labels (:mod:`xaibias.mitigation.clarc`):
``"pclarc"`` projects the CAV directions out at inference, ``"aclarc"`` fine-tunes with the artifact
added along the CAV, ``"rrclarc"`` fine-tunes with a penalty on the output gradient along the CAV,
and ``"dfr"`` refits the last layer on a group-balanced set. ``"rrr"``, ``"rrr_lrp"`` and
``"attention"`` can also fine-tune the uncorrected model instead (``warm_start=True``).

Re-measuring (:mod:`xaibias.mitigation.assess`): :func:`model_gates` flags every collapsed model,
:func:`versus_reference` compares each model with the uncorrected one on the same images,
:func:`accuracy_table` and :func:`rule_accuracies` give the tables and the rule beside them.
"""

from .assess import (
    abs_mean,
    accuracy_table,
    artifact_effects,
    model_gates,
    outcomes,
    print_failed,
    rule_accuracies,
    versus_reference,
)
from .methods import (
    CORRECTIONS,
    attention_penalty,
    fit_or_load_correction,
    matched_epochs,
    prepare,
    rrr_lrp_penalty,
    rrr_penalty,
)

__all__ = ["CORRECTIONS", "fit_or_load_correction", "prepare", "matched_epochs", "rrr_penalty", "rrr_lrp_penalty", "attention_penalty",
           "rule_accuracies", "model_gates", "accuracy_table", "versus_reference", "print_failed", "abs_mean", "outcomes",
           "artifact_effects"]
