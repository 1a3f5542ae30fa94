"""Analysis: numbers and DataFrames, never figures.

SpRAy and GEBI clustering (scikit-learn style estimators), :func:`cluster_agreement` against known
artifacts, counterfactual :func:`bias_insertion`, global saliency (Pfau et al. 2019), localisation
and faithfulness metrics (RMA, RRA, AOPC, Welch tests; Schaaf et al. 2021), HDF5 export in the
CoRelAy/ViRelAy layout and :func:`bias_report`.
"""

# What a notebook or a user calls; the rest stays importable from its module (for example
# ``xaibias.analysis.robustness.rank_correlation`` or ``xaibias.analysis.export.read_attribution_h5``).
from .agreement import agreement_baselines, cluster_agreement, cluster_artifact_table, pair_split_rate
from .cav import CAV, cav_retrieval
from .export import write_virelay_project
from .failure import ablation_table, aurrac, failure_table, response_rate_accuracy, rrac_kendall_tau
from .gebi import GEBI, spray_vs_gebi
from .groups import group_accuracy
from .insertion import GEBI_TABLE1, bias_insertion, insertion_ratio
from .metrics import aopc, enlarge_masks, relevance_mass_accuracy, relevance_rank_accuracy, welch_table
from .report import bias_report
from .robustness import robustness_table
from .saliency import global_saliency, global_table, mean_saliency, peak_saliency, saliency_table, zscore
from .spray import SpRAy
from .stats import bootstrap_ci, ratio_ci
from .variance import (
    compare_interclass_variance,
    interclass_variance,
    interclass_variance_ci,
    variance_table,
    wilcoxon_saliency,
)

__all__ = [
    "SpRAy", "GEBI", "GEBI_TABLE1", "spray_vs_gebi", "cluster_agreement", "cluster_artifact_table",
    "agreement_baselines", "pair_split_rate", "bias_insertion", "insertion_ratio",
    "mean_saliency", "peak_saliency", "zscore", "global_saliency", "interclass_variance",
    "compare_interclass_variance", "interclass_variance_ci", "wilcoxon_saliency",
    "response_rate_accuracy", "aurrac", "rrac_kendall_tau", "saliency_table", "global_table",
    "variance_table", "failure_table", "ablation_table",
    "relevance_mass_accuracy", "relevance_rank_accuracy", "aopc", "enlarge_masks", "welch_table",
    "robustness_table", "bias_report", "write_virelay_project", "bootstrap_ci", "ratio_ci", "CAV", "cav_retrieval", "group_accuracy",
]
