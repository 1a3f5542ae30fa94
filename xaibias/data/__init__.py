"""Data: artifact painters, synthetic datasets with known biases, and real-data loaders.

Every image tensor is float (N,3,H,W) in [0,1]; every mask is bool (N,H,W). The same painters
generate the synthetic datasets, insert artifacts counterfactually (:func:`insert_artifact`) and
augment training data, so an artifact looks the same wherever it appears.

Modules: ``artifacts`` (painters and masks), ``synthetic`` (:class:`SyntheticLesions`),
``sampling`` (:func:`unbiased_resample`); the real-data loaders, one job a module: ``isic``
(:class:`ISICDataset`), ``dermamnist`` (:class:`DermaMNIST`), ``annotations`` (the Bissoto et al.
artifact CSV), ``groundtruth`` (challenge CSV layouts), ``images`` (decoding and the resized-image
cache), ``table`` (their shared dataset behaviour), ``registry`` (downloads with checksums); ``objects`` (:class:`SyntheticObjects`), ``chestxray``
(:class:`SyntheticChestXray`) and ``ink`` (:func:`segment_ink`).
"""

from .annotations import *  # noqa: F401,F403
from .artifacts import *  # noqa: F401,F403
from .chestxray import *  # noqa: F401,F403
from .dermamnist import *  # noqa: F401,F403
from .groundtruth import *  # noqa: F401,F403
from .images import *  # noqa: F401,F403
from .ink import *  # noqa: F401,F403
from .isic import *  # noqa: F401,F403
from .objects import *  # noqa: F401,F403
from .registry import *  # noqa: F401,F403
from .sampling import *  # noqa: F401,F403
from .synthetic import *  # noqa: F401,F403
