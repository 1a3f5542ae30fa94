"""unbiased_resample: P(class | flag) = P(class | no flag) on the result, clear errors."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from xaibias.data import SyntheticLesions, unbiased_resample


def class_given_flag(labels: np.ndarray, flags: np.ndarray, idx: np.ndarray) -> tuple[dict, dict]:
    lab, fl = labels[idx], flags[idx]
    classes = np.unique(labels)
    p_flag = {int(c): Fraction(int(((lab == c) & fl).sum()), int(fl.sum())) for c in classes}
    p_none = {int(c): Fraction(int(((lab == c) & ~fl).sum()), int((~fl).sum())) for c in classes}
    return p_flag, p_none


def test_class_balance_equal_with_and_without_flag_exactly():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], [300, 300, 300])
    # strongly biased: the flag is common in class 1 and rare in class 0 (counts chosen even)
    flags = np.zeros(900, bool)
    flags[rng.choice(300, 20, replace=False)] = True
    flags[300 + rng.choice(300, 180, replace=False)] = True
    flags[600 + rng.choice(300, 60, replace=False)] = True
    before = class_given_flag(labels, flags, np.arange(900))
    assert before[0] != before[1]
    idx = unbiased_resample(labels, flags, ratio=0.5, seed=1)
    p_flag, p_none = class_given_flag(labels, flags, idx)
    assert p_flag == p_none  # exact equality of the fractions
    assert flags[idx].sum() == flags.sum(), "every flagged image is kept"
    assert (~flags[idx]).sum() == 130
    assert len(np.unique(idx)) == len(idx) and np.all(np.diff(idx) > 0)


def test_deterministic_and_seed_dependent():
    labels = np.repeat([0, 1], 200)
    flags = np.zeros(400, bool)
    flags[:40] = True
    flags[200:220] = True
    a = unbiased_resample(labels, flags, ratio=1.0, seed=3)
    assert np.array_equal(a, unbiased_resample(torch.tensor(labels), torch.tensor(flags), ratio=1.0, seed=3))
    assert not np.array_equal(a, unbiased_resample(labels, flags, ratio=1.0, seed=4))


def test_on_a_biased_synthetic_set():
    ds = SyntheticLesions(n=800, size=32, bias={"ink": (0.1, 0.4)}, seed=0)
    idx = unbiased_resample(ds.labels, ds.artifacts["ink"], ratio=1.0, seed=0)
    sub = ds.subset(idx)
    y, ink = sub.labels.numpy(), sub.artifacts["ink"].to_numpy()
    assert abs(y[ink].mean() - y[~ink].mean()) <= 1 / (~ink).sum()  # equal up to rounding


def test_too_few_unflagged_names_the_class():
    labels = np.repeat([0, 1], [50, 50])
    flags = np.zeros(100, bool)
    flags[50:90] = True  # class 1: 40 flagged, only 10 unflagged
    with pytest.raises(ValueError, match="class 1 has 40 flagged images and needs 40 unflagged ones .* only 10 are available"):
        unbiased_resample(labels, flags, ratio=1.0)


def test_bad_input():
    labels = np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match="flags must be a 1-D bool sequence"):
        unbiased_resample(labels, np.array([0, 1, 0, 1]))
    with pytest.raises(ValueError, match="flags has 3 entries but labels has 4"):
        unbiased_resample(labels, np.array([True, False, True]))
    with pytest.raises(ValueError, match="flags has no flagged image"):
        unbiased_resample(labels, np.zeros(4, bool))
    with pytest.raises(ValueError, match="ratio must be a positive number"):
        unbiased_resample(labels, np.array([True, False, False, False]), ratio=0)
