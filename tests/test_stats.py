"""ratio_ci: the one ratio-with-interval of the package, checked by hand and against its former copies."""

import numpy as np
import pandas as pd
import pytest
import torch

import xaibias as xb
from xaibias.analysis.stats import bootstrap_ci, ratio_ci


def test_paired_ratio_ci_is_the_percentile_interval_of_a_hand_loop():
    rng = np.random.default_rng(3)
    a, b = rng.lognormal(size=40), rng.lognormal(size=40)
    value, low, high = ratio_ci(a, b, paired=True, n_boot=300, level=0.9, seed=7)
    draws = np.random.default_rng(7)
    by_hand = []
    for _ in range(300):
        idx = draws.integers(0, 40, 40)
        by_hand.append(np.mean(a[idx]) / np.mean(b[idx]))
    assert value == a.mean() / b.mean()
    assert (low, high) == tuple(np.quantile(by_hand, [0.05, 0.95]))


def test_unpaired_ratio_ci_resamples_each_side_on_its_own():
    rng = np.random.default_rng(4)
    a, b = rng.normal(3, 1, 30), rng.normal(-2, 1, 25)
    value, low, high = ratio_ci(a, b, denominator=lambda x: np.abs(x).mean(), n_boot=200, seed=1)
    draws = np.random.default_rng(1)
    by_hand = []
    for _ in range(200):
        x = a[draws.integers(0, 30, 30)]
        y = b[draws.integers(0, 25, 25)]
        by_hand.append(x.mean() / np.abs(y).mean())
    assert value == a.mean() / np.abs(b).mean()
    assert (low, high) == tuple(np.quantile(by_hand, [0.025, 0.975]))


def test_a_known_ratio_is_found_and_pairing_narrows_it():
    rng = np.random.default_rng(0)
    base = rng.lognormal(size=60)                     # large variation between images
    a, b = 2.0 * base * rng.uniform(0.95, 1.05, 60), base
    value, low, high = ratio_ci(a, b, paired=True, seed=0)
    assert value == pytest.approx(a.mean() / b.mean())
    assert 1.85 < low <= value <= high < 2.15           # paired: tight around 2
    _, ulow, uhigh = ratio_ci(a, b, seed=0)
    assert uhigh - ulow > 3 * (high - low)
    assert ratio_ci(2 * b, b, paired=True, seed=0) == pytest.approx((2.0, 2.0, 2.0))


def test_ratio_ci_bad_inputs():
    with pytest.raises(ValueError, match="same length"):
        ratio_ci(np.ones(5), np.ones(4), paired=True)
    with pytest.raises(ValueError, match="denominator of b is 0"):
        ratio_ci(np.ones(5), np.zeros(5))


# The former implementations, written out here, give the same numbers as their callers now.

def test_same_numbers_as_the_former_checker_paired_ratio():
    rng = np.random.default_rng(11)
    a, b = rng.uniform(0, 1, 50), rng.uniform(0.1, 1, 50)

    def former(idx):                                   # resampled image indices, one draw for both
        i = idx.astype(int)
        return a[i].mean() / b[i].mean()

    before = bootstrap_ci(np.arange(50, dtype=float), statistic=former, n_boot=500, seed=5)
    assert ratio_ci(a, b, paired=True, n_boot=500, seed=5) == before


def test_same_numbers_as_the_former_insertion_ratio():
    from xaibias.analysis import insertion_ratio

    rng = np.random.default_rng(12)
    frame, ruler = rng.normal(20, 8, 30), rng.normal(0.5, 3, 40)
    per = pd.DataFrame({
        "artifact": ["frame"] * 30 + ["ruler"] * 40, "true_class": "benign",
        "change_pp": np.r_[frame, ruler], "skipped": False,
    })
    before = bootstrap_ci(frame, ruler, statistic=lambda x, y: float(x.mean() / max(np.abs(y).mean(), 1e-12)),
                          n_boot=400, seed=2)
    assert insertion_ratio(per, "frame", "ruler", n_boot=400, seed=2) == before


@pytest.mark.parametrize("paired", [False, True])
def test_same_numbers_as_the_former_compare_ratio(paired):
    from xaibias.findings import compare

    rng = np.random.default_rng(13)
    a, b = rng.lognormal(size=35), rng.lognormal(size=35)
    c = compare(a, b, name="ratio", paired=paired, ratio=True, quiet=True, n_boot=300, seed=4)
    before = bootstrap_ci(a, b, statistic=lambda x, y: np.mean(x) / np.mean(y), paired=paired, n_boot=300, seed=4)
    assert (c.value, c.low, c.high) == before


@pytest.mark.parametrize("bad, message", [
    (np.ones((3, 2)), r"must be 1-D \(one value per image or seed\); got shape \(3, 2\)"),
    ([0.5], r"needs at least 2 values for an interval; got 1"),
    (torch.tensor([0.1, float("nan"), 0.3]), r"holds 1 NaN value\(s\)"),
])
def test_every_interval_rejects_the_same_bad_samples_and_says_where(bad, message):
    """bootstrap_ci, ratio_ci and compare check their samples in one place and name the argument."""
    good = np.linspace(0.2, 0.8, 5)
    with pytest.raises(ValueError, match=r"^bootstrap_ci: sample 1 " + message):
        bootstrap_ci(good, bad)
    with pytest.raises(ValueError, match=r"^ratio_ci: b " + message):
        ratio_ci(good, bad)
    with pytest.raises(ValueError, match=r"^gap: b " + message):
        xb.findings.compare(good, bad, name="gap")
