"""Global saliency (Pfau et al. 2019): aggregation over masks, per-class statistics, failure curves."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from xaibias.analysis.failure import aurrac, response_rate_accuracy, rrac_kendall_tau
from xaibias.analysis.saliency import class_means, global_saliency, mean_saliency, peak_saliency, zscore
from xaibias.analysis.variance import (
    compare_interclass_variance,
    interclass_variance,
    interclass_variance_ci,
    wilcoxon_saliency,
)

# ---------------------------------------------------------------------------------------------
# m and n_P on hand-built maps


def _hand_maps():
    R = torch.tensor(
        [
            [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]],
            [[0.0, -1.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 4.0]],
            [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]],
        ]
    )
    M = torch.zeros(3, 3, 3, dtype=torch.bool)
    M[0, 0, :] = True  # top row: 1, 2, 3
    M[1, 0, 1] = True  # the -1
    M[1, 1, 0] = True  # the 2
    # image 2: empty mask
    return R, M


def test_mean_saliency_hand_values_and_empty_mask_excluded():
    R, M = _hand_maps()
    m = mean_saliency(R, M)
    assert isinstance(m, pd.Series)
    assert list(m.index) == [0, 1]  # image 2 has no mask pixel: left out, not NaN
    assert m.loc[0] == pytest.approx((1 + 2 + 3) / 3)
    assert m.loc[1] == pytest.approx((-1 + 2) / 2)
    assert m.attrs["n_empty"] == 1 and m.attrs["empty_index"] == [2] and m.attrs["n_total"] == 3
    assert not m.isna().any()


def test_mean_saliency_accepts_numpy_and_channel_maps():
    R, M = _hand_maps()
    R4 = torch.stack([R, R], dim=1) / 2  # (N,2,H,W) summed over channels gives R back
    assert np.allclose(mean_saliency(R4.numpy(), M.numpy()).values, mean_saliency(R, M).values)


def test_peak_saliency_top_two_percent_hand_value():
    # 10x10 map with distinct values 0..99: the top 2% (P98) are the pixels holding 99 and 98
    rng = np.random.default_rng(0)
    vals = rng.permutation(100).astype(np.float32).reshape(1, 10, 10)
    mask = np.zeros((1, 10, 10), dtype=bool)
    mask[vals == 99] = True
    mask[vals == 5] = True
    n = peak_saliency(vals, mask, percentile=98)
    assert n.loc[0] == pytest.approx(0.5)  # one of the two peak pixels is inside
    assert n.attrs["k"] == 2
    # P90: the top 10 pixels are 90..99; put 3 of them in the mask
    mask2 = np.isin(vals, [99, 93, 90, 12])
    assert peak_saliency(vals, mask2, percentile=90).loc[0] == pytest.approx(3 / 10)


def test_peak_saliency_ties_share_slots_and_flat_map_gives_chance():
    R, M = _hand_maps()
    # image 1, P=80 -> k = ceil(9*0.2) = 2; top values 4 (outside) and 2 (inside) -> 0.5
    n = peak_saliency(R, M, percentile=80)
    assert n.loc[1] == pytest.approx(0.5)
    # constant map: all 9 pixels tie, 3 of them in the mask -> chance level 3/9
    flat = torch.zeros(1, 3, 3)
    n_flat = peak_saliency(flat, M[:1], percentile=80)
    assert n_flat.loc[0] == pytest.approx(3 / 9)
    assert n_flat.attrs["n_flat_maps"] == 1


def test_peak_saliency_absolute_ranks_by_magnitude():
    R = torch.tensor([[[-9.0, 1.0], [2.0, 0.0]]])
    M = torch.tensor([[[True, False], [False, False]]])
    assert peak_saliency(R, M, percentile=75).loc[0] == 0.0  # top pixel by value is 2
    assert peak_saliency(R, M, percentile=75, absolute=True).loc[0] == 1.0  # by |R| it is -9


@pytest.mark.parametrize(
    "R, masks, match",
    [
        (torch.zeros(2, 4, 4), torch.zeros(2, 4, 4), "masks must be bool"),
        (torch.zeros(2, 4, 4), torch.zeros(2, 4, 5, dtype=torch.bool), "masks must be bool .* matching"),
        (torch.zeros(2, 4), torch.zeros(2, 4, 4, dtype=torch.bool), r"R must be \(N,H,W\)"),
        (torch.full((1, 2, 2), float("nan")), torch.ones(1, 2, 2, dtype=torch.bool), "R contains NaN"),
        (torch.zeros(2, 4, 4), torch.zeros(2, 4, 4, dtype=torch.bool), "masks are all empty"),
    ],
)
def test_bad_maps_and_masks_raise_named_errors(R, masks, match):
    with pytest.raises(ValueError, match=match):
        mean_saliency(R, masks)
    with pytest.raises(ValueError, match=match):
        peak_saliency(R, masks)


@pytest.mark.parametrize("p", [0, 100, -5, 120, "98"])
def test_peak_saliency_bad_percentile(p):
    R, M = _hand_maps()
    with pytest.raises(ValueError, match="percentile must be"):
        peak_saliency(R, M, percentile=p)


# ---------------------------------------------------------------------------------------------
# z-scoring and per-class aggregation


def test_zscore_within_each_dataset():
    v = np.array([1.0, 2.0, 3.0, 10.0, 20.0, 30.0])
    z = zscore(v, groups=["a", "a", "a", "b", "b", "b"])
    expected = np.array([-1, 0, 1]) / np.sqrt(2 / 3)
    assert np.allclose(z[:3], expected) and np.allclose(z[3:], expected)
    s = pd.Series(v, index=[4, 5, 6, 7, 8, 9])
    s.attrs["n_empty"] = 2
    zs = zscore(s)
    assert list(zs.index) == [4, 5, 6, 7, 8, 9] and zs.attrs["n_empty"] == 2
    assert zs.mean() == pytest.approx(0) and zs.std(ddof=0) == pytest.approx(1)


def test_zscore_constant_group_raises():
    with pytest.raises(ValueError, match="cannot z-score group 'b'"):
        zscore([1.0, 2.0, 5.0, 5.0], groups=["a", "a", "b", "b"])


def test_global_saliency_means_cis_and_labels_from_series_index():
    R, M = _hand_maps()
    m = mean_saliency(R, M)  # images 0 and 1 kept
    labels = [1, 0, 1]  # one per image; image 2 is dropped with its mask
    df = global_saliency(m, labels, class_names=["NV", "MEL"])
    assert list(df["class_name"]) == ["NV", "MEL"]
    assert df.set_index("class")["mean"].to_dict() == pytest.approx({0: 0.5, 1: 2.0})
    assert df["n"].tolist() == [1, 1]
    assert df.attrs["n_empty"] == 1


def test_global_saliency_bootstrap_interval_covers_the_mean_and_shrinks_with_n():
    rng = np.random.default_rng(1)
    v = np.concatenate([rng.normal(0, 1, 30), rng.normal(2, 1, 3000)])
    lab = np.array([0] * 30 + [1] * 3000)
    df = global_saliency(v, lab, n_boot=500, seed=3).set_index("class")
    for c in (0, 1):
        assert df.loc[c, "ci_low"] < df.loc[c, "mean"] < df.loc[c, "ci_high"]
    width = df["ci_high"] - df["ci_low"]
    assert width.loc[1] < width.loc[0] / 5  # ~sqrt(100) = 10x narrower
    # 95% normal-theory half width 1.96*sd/sqrt(n) as a band for the bootstrap
    half = 1.96 * v[lab == 1].std() / np.sqrt(3000)
    assert width.loc[1] / 2 == pytest.approx(half, rel=0.2)
    again = global_saliency(v, lab, n_boot=500, seed=3).set_index("class")
    pd.testing.assert_frame_equal(df, again)


def test_global_saliency_bad_inputs():
    with pytest.raises(ValueError, match="labels has 3 entries but values has 2"):
        global_saliency([1.0, 2.0], [0, 1, 1])
    with pytest.raises(ValueError, match="values contains NaN"):
        global_saliency([1.0, float("nan")], [0, 1])
    with pytest.raises(ValueError, match="class_names has 1 names but labels contain class 1"):
        global_saliency([1.0, 2.0], [0, 1], class_names=["a"])
    with pytest.raises(ValueError, match="n_boot must be a positive int"):
        global_saliency([1.0, 2.0], [0, 1], n_boot=0)


def test_interclass_variance_and_levene_against_scipy():
    lab = np.repeat(np.arange(4), 5)
    spread = np.repeat([0.0, 1.0, 2.0, 3.0], 5)
    assert interclass_variance(spread, lab) == pytest.approx(np.var([0, 1, 2, 3]))
    tight = np.repeat([1.4, 1.5, 1.5, 1.6], 5)
    res = compare_interclass_variance(spread, lab, tight, lab)
    assert res.variance_a == pytest.approx(1.25) and res.variance_b == pytest.approx(0.005)
    ref = stats.levene([0, 1, 2, 3], [1.4, 1.5, 1.5, 1.6], center="median")
    assert res.levene_statistic == pytest.approx(ref.statistic) and res.p_value == pytest.approx(ref.pvalue)
    assert class_means(spread, lab).tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="center must be"):
        compare_interclass_variance(spread, lab, tight, lab, center="mode")
    with pytest.raises(ValueError, match="at least 2 classes"):
        compare_interclass_variance([1.0, 2.0], [0, 0], tight, lab)


def test_wilcoxon_detects_a_shift_and_aligns_series():
    rng = np.random.default_rng(0)
    a = rng.normal(size=60)
    b = a + 0.5 + rng.normal(0, 0.1, 60)
    res = wilcoxon_saliency(a, b)
    assert res.p_value < 1e-6 and res.median_difference == pytest.approx(-0.5, abs=0.05)
    sa = pd.Series(a, index=np.arange(60))
    sb = pd.Series(b[5:], index=np.arange(5, 60))  # images 0..4 had an empty mask for b
    res2 = wilcoxon_saliency(sa, sb)
    assert res2.n == 55 and res2.n_dropped == 5
    with pytest.raises(ValueError, match="mismatched N"):
        wilcoxon_saliency(a, b[:10])
    with pytest.raises(ValueError, match="identical on every pair"):
        wilcoxon_saliency(a, a)


# ---------------------------------------------------------------------------------------------
# response-rate accuracy


def test_response_rate_accuracy_hand_values():
    sal = [0.4, 0.1, 0.3, 0.2]
    correct = [True, True, False, True]
    df = response_rate_accuracy(correct, sal, percentiles=[25, 50, 75, 100])
    assert df["n"].tolist() == [1, 2, 3, 4]
    assert df["response_rate"].tolist() == [0.25, 0.5, 0.75, 1.0]
    assert df["accuracy"].tolist() == pytest.approx([1, 1, 2 / 3, 3 / 4])
    assert df["threshold"].tolist() == [0.1, 0.2, 0.3, 0.4]


def test_response_rate_accuracy_keeps_ties_together():
    df = response_rate_accuracy([1, 0, 1, 1], [0.0, 0.0, 0.0, 1.0], percentiles=[10, 100])
    assert df["n"].tolist() == [3, 4]  # the three tied images enter together
    assert df["accuracy"].tolist() == pytest.approx([2 / 3, 3 / 4])


def test_aurrac_perfect_ranking_hand_value():
    # 7 correct, 3 errors, errors most salient; percentiles 10..100 -> n = 1..10
    correct = np.array([True] * 7 + [False] * 3)
    sal = np.arange(10.0)
    q = np.arange(10, 101, 10)
    x = np.arange(1, 11) / 10
    y = np.minimum(1.0, 7 / np.arange(1, 11))
    expected = sum((y[i] + y[i + 1]) / 2 * 0.1 for i in range(9)) / 0.9
    assert aurrac(correct, sal, percentiles=q) == pytest.approx(expected)
    curve = response_rate_accuracy(correct, sal, percentiles=q)
    assert np.allclose(curve["response_rate"], x)
    assert aurrac(curve) == pytest.approx(expected)


def test_aurrac_perfect_beats_random_beats_reversed():
    rng = np.random.default_rng(0)
    n, a = 20_000, 0.7
    correct = rng.random(n) < a
    acc = correct.mean()
    q = np.linspace(0.5, 100, 200)
    perfect = (~correct) + rng.random(n) * 0.5  # every error above every correct prediction
    random = rng.random(n)
    reverse = -perfect.astype(float)
    au_p, au_r, au_v = (aurrac(correct, s, percentiles=q) for s in (perfect, random, reverse))
    assert au_r == pytest.approx(acc, abs=0.02)  # random ranking: flat curve at the accuracy
    assert au_p == pytest.approx(acc + acc * np.log(1 / acc), abs=0.02)  # continuous-limit value
    assert au_p > au_r + 0.15 and au_v < au_r - 0.15
    tau_p, p_p = rrac_kendall_tau(response_rate_accuracy(correct, perfect, q))
    assert tau_p < -0.5 and p_p < 1e-3  # accuracy falls as more salient images are answered
    tau_v, _ = rrac_kendall_tau(response_rate_accuracy(correct, reverse, q))
    assert tau_v > 0.5


def test_response_rate_accuracy_bad_inputs():
    with pytest.raises(ValueError, match="correct must be bool"):
        response_rate_accuracy([0.5, 1.0], [0.1, 0.2])
    with pytest.raises(ValueError, match="correct has 3 entries but saliency has 2"):
        response_rate_accuracy([True, False, True], [0.1, 0.2])
    with pytest.raises(ValueError, match="percentiles must be"):
        response_rate_accuracy([True, False], [0.1, 0.2], percentiles=[0, 50])
    with pytest.raises(ValueError, match="saliency contains NaN"):
        response_rate_accuracy([True, False], [0.1, float("nan")])
    with pytest.raises(ValueError, match="curve is missing column"):
        aurrac(pd.DataFrame({"accuracy": [1.0, 0.5]}))
    with pytest.raises(ValueError, match="single response rate"):
        aurrac([True, False], [0.3, 0.3])


def test_pandas_labels_and_values_from_a_dataframe():
    df = pd.DataFrame({"value": [0.0, 1.0, 2.0, 3.0], "label": [0, 0, 1, 1]})
    assert interclass_variance(df["value"], df["label"]) == pytest.approx(1.0)
    gs = global_saliency(df["value"], df["label"], n_boot=10)
    assert gs["mean"].tolist() == [0.5, 2.5]


# ---------------------------------------------------------------------------------------------
# interclass_variance_ci: stratified (and paired) bootstrap of inter-class variances


def _spread_and_flat(n_per_class=60, k=5, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(k), n_per_class)
    spread = 0.2 * labels + rng.normal(0, 0.1, len(labels))  # class means 0, .2, .4, ... : variance 0.08
    flat = 0.3 + rng.normal(0, 0.1, len(labels))  # one mean for every class
    idx = pd.Index(np.arange(len(labels)), name="image")
    return pd.Series(spread, index=idx), pd.Series(flat, index=idx), labels


def test_interclass_variance_ci_single_model_matches_point_value():
    a, _, y = _spread_and_flat()
    value, low, high = interclass_variance_ci(a, y)
    assert value == pytest.approx(interclass_variance(a, y))
    assert low < value < high
    assert low > 0.05  # true variance of the class means is 0.08; noise in the means is ~0.0002


def test_interclass_variance_ci_difference_detects_the_spread_model_in_both_orders():
    a, b, y = _spread_and_flat()
    d, lo, hi = interclass_variance_ci(a, y, b, y)
    assert d == pytest.approx(interclass_variance(a, y) - interclass_variance(b, y))
    assert lo > 0.05
    d2, lo2, hi2 = interclass_variance_ci(b, y, a, y)
    assert d2 == pytest.approx(-d)
    assert hi2 < -0.05


def test_interclass_variance_ci_ratio():
    a, b, y = _spread_and_flat()
    r, lo, hi = interclass_variance_ci(a, y, b, y, statistic="ratio")
    assert r == pytest.approx(interclass_variance(a, y) / interclass_variance(b, y))
    assert 1 < lo < r < hi


def test_interclass_variance_ci_paired_is_narrower_than_independent_for_the_same_images():
    # b is a plus a little noise: on the same images the two variances move together
    a, _, y = _spread_and_flat(n_per_class=30, seed=1)
    b = a + np.random.default_rng(2).normal(0, 0.01, len(a))
    _, lo_p, hi_p = interclass_variance_ci(a, y, b, y)
    _, lo_i, hi_i = interclass_variance_ci(a.to_numpy(), y, b.to_numpy(), y)  # arrays: independent
    assert (hi_p - lo_p) < 0.2 * (hi_i - lo_i)
    assert lo_p < 0 < hi_p or abs(lo_p) < 1e-3


def test_interclass_variance_ci_identical_models_give_zero_difference():
    a, _, y = _spread_and_flat()
    assert interclass_variance_ci(a, y, a.copy(), y) == (0.0, 0.0, 0.0)


def test_interclass_variance_ci_is_deterministic_and_seeded():
    a, b, y = _spread_and_flat()
    assert interclass_variance_ci(a, y, b, y, seed=3) == interclass_variance_ci(a, y, b, y, seed=3)
    assert interclass_variance_ci(a, y, b, y, seed=3)[1] != interclass_variance_ci(a, y, b, y, seed=4)[1]


def test_interclass_variance_ci_takes_series_with_excluded_images_and_labels_for_all():
    R = torch.rand(12, 4, 4)
    M = torch.zeros(12, 4, 4, dtype=torch.bool)
    M[:, 0, 0] = True
    M[5] = False  # image 5 has no mask: excluded from the Series
    labels = np.arange(12) % 3
    a = mean_saliency(R, M)
    b = mean_saliency(R * 2 + 1, M)
    v, lo, hi = interclass_variance_ci(a, labels, b, labels, n_boot=200)
    assert v == pytest.approx(interclass_variance(a, labels) - interclass_variance(b, labels))
    assert lo <= v <= hi


def test_interclass_variance_ci_errors():
    a, b, y = _spread_and_flat()
    with pytest.raises(ValueError, match="statistic"):
        interclass_variance_ci(a, y, b, y, statistic="sum")
    with pytest.raises(ValueError, match="n_boot"):
        interclass_variance_ci(a, y, n_boot=10)
    with pytest.raises(ValueError, match="level"):
        interclass_variance_ci(a, y, level=1.5)
    with pytest.raises(ValueError, match="both values_b and labels_b"):
        interclass_variance_ci(a, y, b)
    with pytest.raises(ValueError, match="same classes"):
        keep = y < 4
        interclass_variance_ci(a, y, b[keep].reset_index(drop=True), y[keep])
    with pytest.raises(ValueError, match="labels differ"):
        interclass_variance_ci(a, y, b, np.roll(y, 1))
    with pytest.raises(ValueError, match="at least 2 classes"):
        interclass_variance_ci(a[y == 0], y[y == 0])
    const = pd.Series(np.ones(len(y)), index=a.index)
    with pytest.raises(ValueError, match="variance is 0"):
        interclass_variance_ci(a, y, const, y, statistic="ratio")
