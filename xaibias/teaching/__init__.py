"""Checks for the notebooks' exercises: say what is right or wrong, and why.

Every exercise in a notebook is three cells: a markdown cell tagged ``exercise`` (the task), a code
cell tagged ``solution`` (hidden in the student version that ``make student`` writes) and a code
cell tagged ``check`` that calls one function of this module with the student's answer and the
notebook's own numbers. A check

- prints ``Right: ...`` with a sentence on what the number means when the answer is right;
- raises :class:`NotYet` (an ``AssertionError``) whose message names the likely mistake when it is
  wrong (a swapped subtraction, a percentage given as a fraction, the LRP-0 result where the gamma
  rule was asked for, ...);
- prints ``Not answered yet: ...`` and returns ``None`` when the answer is still ``...`` (the stub of
  the student version) or ``None``, so a student notebook runs from top to bottom before any
  exercise is done.

Checks return ``None`` (so a check cell shows only its message). The reference values are computed here by an
independent route (the library function, or a formula written out), never copied from an output.

Import it as ``from xaibias import teaching`` (or ``xb.teaching``); the checks live in
``teaching.data_and_lrp`` (00, 01), ``clusters_and_saliency`` (02, 03), ``measuring`` (04, 05) and
``revising`` (06, 07a, 07b); it is not part of
``from xaibias import *``. It sits on top of the package, beside ``viz`` and ``widgets``.
"""

from ._common import NotYet, isolated_rng
from .clusters_and_saliency import (
    check_eigengap,
    check_image_share,
    check_interclass_variance,
    check_one_cluster_f1,
    check_peak_share,
)
from .data_and_lrp import (
    check_bias_absorbed,
    check_gamma_rule,
    check_group_accuracy,
    check_reversed_drop,
    check_rule_accuracy,
    check_stride2_share,
)
from .measuring import (
    aopc_one,
    check_aopc,
    check_balanced_rates,
    check_insertion_effect,
    check_relevance_mass,
    check_rest_of_layer,
    check_welch_t,
    masked_lrp,
)
from .revising import (
    check_cav_direction,
    check_effect_ratio,
    check_gap_by_method,
    check_one_group,
    check_projection,
    check_resample_size,
    check_tcav,
)

__all__ = [
    "NotYet", "isolated_rng",
    # 00
    "check_rule_accuracy", "check_group_accuracy", "check_reversed_drop",
    # 01
    "check_gamma_rule", "check_bias_absorbed", "check_stride2_share",
    # 02
    "check_one_cluster_f1", "check_eigengap", "check_image_share",
    # 03
    "check_peak_share", "check_interclass_variance",
    # 04
    "check_balanced_rates", "check_relevance_mass", "check_insertion_effect", "check_rest_of_layer", "masked_lrp",
    # 05
    "check_aopc", "aopc_one", "check_welch_t",
    # 06
    "check_resample_size", "check_effect_ratio", "check_gap_by_method",
    # 07a, 07b
    "check_cav_direction", "check_tcav", "check_one_group", "check_projection",
]
