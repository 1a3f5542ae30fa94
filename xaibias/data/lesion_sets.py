"""The held-out lesion sets of one seed, each drawn with its own named seed offset.

A notebook that trains on ``SyntheticLesions(..., seed=seed)`` tests on sets drawn from the same
generator at ``seed + offset``: a different offset per set, so no set repeats another's images, and
the same offsets in every notebook (00, 01, 04, 06, 07a and 07b draw their held-out sets here).
:func:`lesion_sets` draws them by name:

``"val"``       biased like training (``bias``): a held-out set, for example DFR's reweighting set
``"same"``      biased like training: accuracy where the shortcut still works
``"groups"``    every artifact of ``bias`` in half of each class: every class x artifact pattern
                is populated, so worst-group accuracy can be read
``"clean"``     no artifact at all: only the lesion tells the class (or, with ``clean_without``,
                none of the artifacts named there while the others keep the training rates)
``"reversed"``  :func:`reverse_bias` of ``bias``: the shortcut now points to the other class
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .synthetic import SyntheticLesions, reverse_bias

__all__ = [
    "lesion_sets", "SET_SEED_OFFSETS", "VAL_SEED_OFFSET", "SAME_SEED_OFFSET", "GROUPS_SEED_OFFSET",
    "CLEAN_SEED_OFFSET", "REVERSED_SEED_OFFSET",
]

VAL_SEED_OFFSET = 500
SAME_SEED_OFFSET = 1000
GROUPS_SEED_OFFSET = 2000
CLEAN_SEED_OFFSET = 3000
REVERSED_SEED_OFFSET = 4000
#: set name -> what is added to the training seed to draw it
SET_SEED_OFFSETS: dict[str, int] = {
    "val": VAL_SEED_OFFSET, "same": SAME_SEED_OFFSET, "groups": GROUPS_SEED_OFFSET,
    "clean": CLEAN_SEED_OFFSET, "reversed": REVERSED_SEED_OFFSET,
}


def _set_bias(name: str, bias: dict[str, Any], clean_without: tuple[str, ...] | None) -> dict[str, Any] | None:
    if name in ("val", "same"):
        return bias
    if name == "groups":
        return {a: (0.5, 0.5) for a in bias}
    if name == "clean":
        if clean_without is None:
            return None
        return {a: ((0.0, 0.0) if a in clean_without else spec) for a, spec in bias.items()}
    return reverse_bias(bias)


def lesion_sets(bias: dict[str, Any], seed: int, n: dict[str, int], *,
                clean_without: Iterable[str] | None = None, **options: Any) -> dict[str, SyntheticLesions]:
    """Draw the named held-out sets of a training set ``SyntheticLesions(bias=bias, seed=seed)``.

    Parameters
    ----------
    bias : dict
        The training set's bias, ``{artifact: (P(a | malignant), P(a | benign))}``.
    seed : int
        The training set's seed; set ``name`` is drawn at ``seed + SET_SEED_OFFSETS[name]``.
    n : dict
        ``{set name: number of images}``, names from :data:`SET_SEED_OFFSETS`; the result has the
        same names in the same order.
    clean_without : iterable of str, optional
        The artifacts the ``"clean"`` set is drawn without; the other artifacts of ``bias`` keep
        their training rates there. Default: every artifact (only the lesion is left). Use it when a
        correction targets one artifact and "clean" should mean "without that one", as in notebook 06.
    **options
        Passed to every :class:`SyntheticLesions` (``size``, ``difficulty``, ``artifact_params``, ...).

    Returns
    -------
    dict of str -> SyntheticLesions

    Raises
    ------
    ValueError
        For a name that is not a set (the message lists the sets), a bias that is not a dict, or a
        ``clean_without`` that names an artifact outside ``bias`` or comes without a ``"clean"`` set.
    """
    if not isinstance(n, dict) or not n:
        raise ValueError(f"lesion_sets: n must be a non-empty dict {{set name: size}}; got {n!r}")
    unknown = [k for k in n if k not in SET_SEED_OFFSETS]
    if unknown:
        raise ValueError(f"lesion_sets: unknown set name(s) {', '.join(map(repr, unknown))} in n; "
                         f"choose from {', '.join(SET_SEED_OFFSETS)}")
    if not isinstance(bias, dict):
        raise ValueError(f"lesion_sets: bias must be a dict {{artifact: (P(a | malignant), P(a | benign))}}; got {bias!r}")
    without = None
    if clean_without is not None:
        without = (clean_without,) if isinstance(clean_without, str) else tuple(clean_without)
        outside = [a for a in without if a not in bias]
        if outside or not without:
            raise ValueError(f"lesion_sets: clean_without must name artifacts of bias ({', '.join(bias)}); "
                             f"got {list(without)!r}")
        if "clean" not in n:
            raise ValueError("lesion_sets: clean_without is used by the 'clean' set only, and n asks for no "
                             f"'clean' set (it asks for {', '.join(n)})")
    return {name: SyntheticLesions(n=size, bias=_set_bias(name, bias, without), seed=seed + SET_SEED_OFFSETS[name],
                                   **options)
            for name, size in n.items()}
