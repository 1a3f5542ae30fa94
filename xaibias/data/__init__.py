"""Data: artifact painters, synthetic datasets with known biases, and real-data loaders.

Every image tensor is float (N,3,H,W) in [0,1]; every mask is bool (N,H,W). The same painters
generate the synthetic datasets, insert artifacts counterfactually (:func:`insert_artifact`) and
augment training data, so an artifact looks the same wherever it appears.

Modules: ``artifacts`` (painters and masks), ``synthetic`` (:class:`SyntheticLesions`),
``sampling`` (:func:`unbiased_resample`), ``lesion_sets`` (:func:`lesion_sets`: the same / reversed /
clean ... sets of a training seed, at named seed offsets); the real-data loaders, one job a module: ``isic``
(:class:`ISICDataset`), ``dermamnist`` (:class:`DermaMNIST`), ``folder`` (:class:`FolderDataset`, a
class_name/*.jpg tree), ``annotations`` (the Bissoto et al.
artifact CSV), ``groundtruth`` (challenge CSV layouts), ``images`` (decoding and the resized-image
cache), ``table`` (their shared dataset behaviour), ``registry`` (downloads with checksums); ``objects`` (:class:`SyntheticObjects`), ``chestxray``
(:class:`SyntheticChestXray`) and ``ink`` (:func:`segment_ink`); ``trap`` (:func:`trap_split`, an
artifact tied to a class in training and reversed in test, and :func:`load_trap_set`, the published
trap sets of Bissoto et al. 2020); ``fetch`` (:func:`fetch_isic_annotated`: the annotation CSVs and
the annotated ISIC 2018 photos, for users with internet).

The artifact names: ``annotations.ARTIFACT_NAMES`` (also :func:`artifact_names`) maps each column of
the Bissoto et al. CSV to the flag column xaibias uses and the painter that inserts it
(``dark_corner`` -> ``frame``, ``gel_bubble`` -> ``bubble``, ``patches`` -> ``patch``; ``gel_border``
has no painter).
"""

# What a notebook or a user calls; everything else stays importable from its module
# (for example ``xaibias.data.ink.ink_by_class`` or ``xaibias.data.isic.detect_layout``).
from .annotations import ARTIFACT_NAMES, artifact_names, load_artifact_annotations
from .artifacts import ARTIFACTS, insert_artifact, paint_artifact
from .chestxray import SyntheticChestXray
from .dermamnist import DermaMNIST
from .fetch import fetch_isic_annotated
from .folder import FolderDataset
from .ink import segment_ink
from .isic import ISICDataset
from .lesion_sets import SET_SEED_OFFSETS, lesion_sets
from .objects import SyntheticObjects
from .sampling import unbiased_resample
from .synthetic import (
    BIAS_PRESETS,
    ISIC_CLASSES,
    RECOMMENDED_DIFFICULTY,
    SyntheticLesions,
    hide_lesion,
    reverse_bias,
)
from .trap import load_trap_set, trap_split

__all__ = [
    "ARTIFACTS", "BIAS_PRESETS", "RECOMMENDED_DIFFICULTY", "ISIC_CLASSES",
    "SyntheticLesions", "SyntheticObjects", "SyntheticChestXray", "ISICDataset", "DermaMNIST", "FolderDataset",
    "insert_artifact", "paint_artifact", "hide_lesion", "reverse_bias", "unbiased_resample",
    "load_artifact_annotations", "segment_ink", "trap_split", "load_trap_set", "fetch_isic_annotated",
    "ARTIFACT_NAMES", "artifact_names", "lesion_sets", "SET_SEED_OFFSETS",
]
