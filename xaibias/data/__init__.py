"""Data: artifact painters, synthetic datasets with known biases, and real-data loaders.

Every image tensor is float (N,3,H,W) in [0,1]; every mask is bool (N,H,W). The same painters
generate the synthetic datasets, insert artifacts counterfactually (:func:`insert_artifact`) and
augment training data, so an artifact looks the same wherever it appears.

Modules: ``artifacts`` (painters and masks), ``synthetic`` (:class:`SyntheticLesions`),
``sampling`` (:func:`unbiased_resample`), ``isic`` (ISIC, HAM10000, DermaMNIST and artifact
annotation loaders), ``objects`` (:class:`SyntheticObjects`), ``chestxray``
(:class:`SyntheticChestXray`) and ``ink`` (:func:`segment_ink`).
"""

from .artifacts import *  # noqa: F401,F403
from .chestxray import *  # noqa: F401,F403
from .ink import *  # noqa: F401,F403
from .isic import *  # noqa: F401,F403
from .objects import *  # noqa: F401,F403
from .sampling import *  # noqa: F401,F403
from .synthetic import *  # noqa: F401,F403
