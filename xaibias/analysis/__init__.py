"""Analysis: numbers and DataFrames, never figures.

SpRAy and GEBI clustering (scikit-learn style estimators), :func:`cluster_agreement` against known
artifacts, counterfactual :func:`bias_insertion`, global saliency (Pfau et al. 2019), localisation
and faithfulness metrics (RMA, RRA, AOPC, Welch tests; Schaaf et al. 2021), HDF5 export in the
CoRelAy/ViRelAy layout and :func:`bias_report`.
"""

from .agreement import *  # noqa: F401,F403
from .export import *  # noqa: F401,F403
from .gebi import *  # noqa: F401,F403
from .insertion import *  # noqa: F401,F403
from .metrics import *  # noqa: F401,F403
from .report import *  # noqa: F401,F403
from .robustness import *  # noqa: F401,F403
from .saliency import *  # noqa: F401,F403
from .spray import *  # noqa: F401,F403
from .stats import *  # noqa: F401,F403
