"""cluster_agreement against hand-computed precision, recall and F1."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from xaibias.analysis import cluster_agreement, cluster_artifact_table

# 10 images in 3 clusters (sizes 3, 2, 5)
LABELS = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 2])
ARTIFACTS = pd.DataFrame({
    "frame": [1, 1, 0, 1, 0, 0, 0, 0, 0, 0],  # support 3
    "ruler": [False, False, False, False, False, True, True, True, True, False],  # support 4
    "ink": [0] * 10,  # nobody has ink
})


def test_hand_computed_precision_recall_f1():
    df = cluster_agreement(LABELS, ARTIFACTS).set_index("artifact")
    # frame: cluster 0 holds 2 of its 3 members -> P = 2/3, R = 2/3, F1 = 2/3
    #        (cluster 1: P = 1/2, R = 1/3, F1 = 0.4 -> worse)
    assert df.loc["frame", "best_cluster"] == 0
    assert df.loc["frame", "precision"] == pytest.approx(2 / 3)
    assert df.loc["frame", "recall"] == pytest.approx(2 / 3)
    assert df.loc["frame", "f1"] == pytest.approx(2 / 3)
    assert df.loc["frame", "support"] == 3
    assert df.loc["frame", "cluster_size"] == 3
    # ruler: cluster 2 holds all 4 rulers among its 5 members -> P = 4/5, R = 1, F1 = 8/9
    assert df.loc["ruler", "best_cluster"] == 2
    assert df.loc["ruler", "precision"] == pytest.approx(0.8)
    assert df.loc["ruler", "recall"] == pytest.approx(1.0)
    assert df.loc["ruler", "f1"] == pytest.approx(8 / 9)
    # an artifact nobody has: no best cluster, zero scores, no NaN
    assert df.loc["ink", "best_cluster"] == -1
    assert df.loc["ink", ["precision", "recall", "f1", "ari", "nmi"]].tolist() == [0.0] * 5
    assert not df.isna().any().any()
    assert list(df.reset_index().columns) == [
        "artifact", "best_cluster", "precision", "recall", "f1", "support", "cluster_size", "ari", "nmi"]


def test_perfect_clustering_has_f1_ari_nmi_one():
    flags = np.array([True, True, False, False, False, True])
    labels = np.where(flags, 5, 2)  # arbitrary cluster ids
    df = cluster_agreement(labels, {"frame": flags})
    row = df.iloc[0]
    assert (row.best_cluster, row.precision, row.recall, row.f1) == (5, 1.0, 1.0, 1.0)
    assert row.ari == pytest.approx(1.0) and row.nmi == pytest.approx(1.0)
    assert df.attrs["ari"] == pytest.approx(1.0)
    assert df.attrs["n"] == 6 and df.attrs["n_clusters"] == 2


def test_overall_ari_uses_artifact_combinations():
    frame = np.array([1, 1, 0, 0, 1, 1, 0, 0], bool)
    ruler = np.array([1, 1, 1, 1, 0, 0, 0, 0], bool)
    combo = frame * 2 + ruler  # 4 patterns
    df = cluster_agreement(combo + 10, pd.DataFrame({"frame": frame, "ruler": ruler}))
    assert df.attrs["ari"] == pytest.approx(1.0)
    # a clustering by frame only explains frame perfectly but not the combination
    df2 = cluster_agreement(frame.astype(int), pd.DataFrame({"frame": frame, "ruler": ruler}))
    assert df2.set_index("artifact").loc["frame", "f1"] == 1.0
    assert df2.attrs["ari"] < 0.6


def test_accepts_tensors_series_and_arrays():
    df = cluster_agreement(torch.as_tensor(LABELS), ARTIFACTS["ruler"])
    assert df.loc[0, "artifact"] == "ruler" and df.loc[0, "f1"] == pytest.approx(8 / 9)
    df = cluster_agreement(LABELS, ARTIFACTS[["frame", "ruler"]].to_numpy())
    assert list(df.artifact) == ["artifact_0", "artifact_1"]


def test_cluster_artifact_table_shares():
    t = cluster_artifact_table(LABELS, ARTIFACTS[["frame", "ruler"]])
    assert t.loc[0, "frame"] == pytest.approx(2 / 3)
    assert t.loc[2, "ruler"] == pytest.approx(0.8)
    assert t["size"].tolist() == [3, 2, 5]
    counts = cluster_artifact_table(LABELS, ARTIFACTS[["frame"]], normalize=False)
    assert counts["frame"].tolist() == [2, 1, 0]


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match=r"mismatched N: labels has N=10, artifacts has N=9"):
        cluster_agreement(LABELS, ARTIFACTS.iloc[:9])
    with pytest.raises(ValueError, match=r"artifacts column 'frame' must be bool or 0/1; got values such as \[2.0\]"):
        cluster_agreement(LABELS, pd.DataFrame({"frame": [2] * 10}))
    with pytest.raises(ValueError, match="labels must be a 1-D array"):
        cluster_agreement(LABELS.reshape(2, 5), ARTIFACTS)
    with pytest.raises(ValueError, match="labels must be integer cluster indices"):
        cluster_agreement(LABELS + 0.5, ARTIFACTS)
    with pytest.raises(ValueError, match="artifacts has no columns"):
        cluster_agreement(LABELS, pd.DataFrame(index=range(10)))


# ---------------------------------------------------------------- trivial baselines
from xaibias.analysis import agreement_baselines, pair_split_rate  # noqa: E402


def test_one_cluster_baseline_is_two_p_over_one_plus_p():
    # 89 % framed: one all-in-one cluster already scores 2 * 0.89 / 1.89 = 0.942
    flags = pd.DataFrame({"frame": [True] * 89 + [False] * 11})
    base = agreement_baselines(np.zeros(100, int), flags)
    assert base.loc["frame", "share"] == pytest.approx(0.89)
    assert base.loc["frame", "f1_one_cluster"] == pytest.approx(2 * 0.89 / 1.89)
    # with a single cluster, shuffling changes nothing: random = one cluster
    assert base.loc["frame", "f1_random"] == pytest.approx(2 * 0.89 / 1.89)
    # and the one-cluster F1 is exactly what cluster_agreement gives that clustering
    assert cluster_agreement(np.zeros(100, int), flags).loc[0, "f1"] == pytest.approx(2 * 0.89 / 1.89)


def test_random_baseline_keeps_cluster_sizes_and_sits_below_a_perfect_split():
    # 40 framed, 60 clean; a perfect 2-cluster split scores 1, random labels of sizes 40/60 far less
    flags = pd.DataFrame({"frame": [True] * 40 + [False] * 60, "ink": [False] * 100})
    labels = np.array([1] * 40 + [0] * 60)
    base = agreement_baselines(labels, flags, n_random=300, seed=1)
    # expected hits of the size-40 cluster under shuffling: 40 * 0.4 = 16 -> F1 = 32 / 80 = 0.4;
    # the size-60 cluster: 24 hits -> F1 = 48 / 100 = 0.48; the best of the two is about 0.48-0.5
    assert 0.45 < base.loc["frame", "f1_random"] < 0.56
    assert base.loc["frame", "f1_random"] <= base.loc["frame", "f1_random_high"] < 0.65
    assert base.loc["frame", "f1_one_cluster"] == pytest.approx(0.8 / 1.4)
    assert base.loc["ink"].tolist() == [0.0] * 4  # nobody has ink: zeros, no NaN
    assert cluster_agreement(labels, flags).loc[0, "f1"] == 1.0
    # same seed, same numbers
    again = agreement_baselines(labels, flags, n_random=300, seed=1)
    pd.testing.assert_frame_equal(base, again)


def test_baseline_bad_inputs():
    with pytest.raises(ValueError, match="n_random"):
        agreement_baselines(LABELS, ARTIFACTS, n_random=0)
    with pytest.raises(ValueError, match="mismatched N"):
        agreement_baselines(LABELS[:5], ARTIFACTS)


def test_pair_split_rate_and_its_chance_rate():
    # pairs (0,0) (0,1) (1,1) (1,1): one of four split; pooled shares 3/8 and 5/8
    split, chance = pair_split_rate([0, 0, 1, 1], [0, 1, 1, 1])
    assert split == 0.25
    assert chance == pytest.approx(1 - (3 / 8) ** 2 - (5 / 8) ** 2)
    # partners always apart in two equal clusters: split 1, chance 1/2
    assert pair_split_rate(np.array([0, 0, 0]), np.array([1, 1, 1])) == (1.0, 0.5)
    # one cluster: nothing can split
    assert pair_split_rate(torch.zeros(4, dtype=torch.long), [0, 0, 0, 0]) == (0.0, 0.0)
    with pytest.raises(ValueError, match="mismatched N"):
        pair_split_rate([0, 1], [0, 1, 1])


# ---- intervals, paired differences and the gate (notebook 02) --------------------------------------

def _f1_by_hand(labels, flags):
    """Best-cluster F1 through precision and recall of every cluster (not through 2 hits / (size + support))."""
    best = 0.0
    for c in np.unique(labels):
        members = labels == c
        hits = (members & flags).sum()
        if hits:
            p, r = hits / members.sum(), hits / flags.sum()
            best = max(best, 2 * p * r / (p + r))
    return best


def test_agreement_interval_matches_a_hand_bootstrap():
    from sklearn.metrics import adjusted_rand_score

    from xaibias.analysis.agreement import agreement_interval

    rng = np.random.default_rng(3)
    flags = rng.random(60) < 0.5
    labels = np.where(rng.random(60) < 0.8, flags, ~flags).astype(int)  # 80 % of images follow the flag
    v, lo, hi = agreement_interval(labels, flags, n_boot=200, seed=7)
    assert v == pytest.approx(cluster_agreement(labels, {"a": flags}).loc[0, "f1"])
    # the same draws by hand: per resample one index draw within the unflagged, then within the flagged
    # images (the artifact's share stays fixed), both arrays together; 2.5 / 97.5 percentiles
    draw = np.random.default_rng(7)
    groups = [np.flatnonzero(~flags), np.flatnonzero(flags)]
    boot = []
    for _ in range(200):
        i = np.concatenate([g[draw.integers(0, g.size, g.size)] for g in groups])
        assert flags[i].sum() == flags.sum()
        boot.append(_f1_by_hand(labels[i], flags[i]))
    assert (lo, hi) == pytest.approx(tuple(np.quantile(boot, [0.025, 0.975])))
    va, la, ha = agreement_interval(labels, flags.astype(int), score="ari", n_boot=200, seed=7)
    assert va == pytest.approx(adjusted_rand_score(flags, labels)) and la <= va <= ha
    assert agreement_interval([0, 0, 0, 1, 1, 1], [1, 1, 1, 0, 0, 0], n_boot=100) == (1.0, 1.0, 1.0)


def test_agreement_interval_errors():
    from xaibias.analysis.agreement import agreement_interval

    with pytest.raises(ValueError, match="with and without the artifact"):
        agreement_interval([0, 1, 1], [1, 1, 1])
    with pytest.raises(ValueError, match="one entry per clustered image \\(3\\)"):
        agreement_interval([0, 1, 1], [1, 0])
    with pytest.raises(ValueError, match="score must be one of"):
        agreement_interval([0, 1, 1], [1, 0, 0], score="nmi")
    with pytest.raises(ValueError, match="one artifact"):
        agreement_interval([0, 1, 1], pd.DataFrame({"a": [1, 0, 0], "b": [0, 1, 0]}))


def test_agreement_difference_is_paired():
    from xaibias.analysis.agreement import agreement_difference, agreement_interval

    rng = np.random.default_rng(0)
    flags = rng.random(80) < 0.5
    perfect = flags.astype(int)
    noisy = np.where(rng.random(80) < 0.7, flags, ~flags).astype(int)
    v, lo, hi = agreement_difference(perfect, noisy, flags, n_boot=300)
    assert v == pytest.approx(1.0 - _f1_by_hand(noisy, flags))
    assert lo > 0  # the perfect clustering is ahead on every resample
    # the same clustering twice: exactly no difference on every resample
    assert agreement_difference(noisy, noisy, flags, n_boot=100) == (0.0, 0.0, 0.0)
    # paired: two clusterings that differ on 4 of 80 images share their noise, so the interval of the
    # difference is narrower than either clustering's own interval
    close = noisy.copy()
    close[:4] = 1 - close[:4]
    _, dl, dh = agreement_difference(noisy, close, flags, n_boot=300)
    _, la, ha = agreement_interval(noisy, flags, n_boot=300)
    assert dh - dl < 0.75 * (ha - la)
    with pytest.raises(ValueError, match="mismatched N"):
        agreement_difference(perfect, noisy[:-1], flags)


def test_score_clustering_gates_against_both_baselines():
    from xaibias.analysis.agreement import score_clustering

    rng = np.random.default_rng(1)
    flags = np.r_[np.ones(50, bool), np.zeros(50, bool)]
    good = score_clustering("follows the flag", flags.astype(int), flags, artifact="frame", seed=0, quiet=True)
    assert good and good.f1 == (1.0, 1.0, 1.0)
    assert good.f1_one_cluster == pytest.approx(2 * 0.5 / 1.5) and good.share == 0.5
    assert "VALID clustering 'follows the flag'" in good.line() and good.row()["passes gate"]
    # labels drawn without looking at the flag: at its shuffled-label baseline, flagged
    random = score_clustering("random", rng.integers(0, 2, 100), flags, seed=0, quiet=True)
    assert not random and "shuffled labels" in random.gate.reason
    # 94 % of the images carry the artifact: splitting off a few images cannot beat one all-in-one cluster
    common = np.r_[np.ones(94, bool), np.zeros(6, bool)]
    split = np.r_[np.zeros(90, int), np.ones(10, int)]
    one = score_clustering("small split", split, common, seed=0, quiet=True)
    assert not one and "one all-in-one cluster" in one.gate.reason
    assert one.f1_one_cluster == pytest.approx(2 * 0.94 / 1.94)
    # the artifact name comes from a one-column DataFrame
    assert score_clustering("df", flags.astype(int), pd.DataFrame({"ruler": flags}), quiet=True).artifact == "ruler"


def test_score_clustering_family_shares_the_false_pass_rate():
    from xaibias.analysis.agreement import score_clustering

    flags = np.r_[np.ones(60, bool), np.zeros(60, bool)]
    # a weak clustering: 70 % of each cluster follows the flag
    rng = np.random.default_rng(3)
    labels = np.where(rng.random(120) < 0.7, flags, ~flags).astype(int)
    one = score_clustering("weak", labels, flags, n_boot=2000, n_random=1000, seed=0, quiet=True)
    default = score_clustering("weak", labels, flags, n_boot=2000, n_random=1000, seed=0, quiet=True, family=1)
    assert one.f1 == default.f1 and one.f1_random_high == default.f1_random_high and one.quantile == 0.95
    many = score_clustering("weak", labels, flags, n_boot=2000, n_random=1000, seed=0, quiet=True, family=14)
    assert many.quantile == pytest.approx(1 - 0.05 / 14)
    # the wider family: a lower interval end, a higher shuffled baseline, the same point value
    assert many.f1[0] == one.f1[0] and many.f1[1] < one.f1[1] and many.f1_random_high > one.f1_random_high
    assert "99.6th percentile" in many.line() and "shuffled F1 (99.6th pct)" in many.row()
    # the quantile computed another way: the shuffled F1s themselves
    from xaibias.analysis.agreement import agreement_baselines
    assert agreement_baselines(labels, {"a": flags}, n_random=1000, seed=0, quantile=0.5).loc["a", "f1_random_high"] \
        <= many.f1_random_high
    # under no structure, a 14-gate family passes no more often than single gates (12 independent draws)
    singles = families = 0
    for s in range(12):
        noise = np.random.default_rng(100 + s).integers(0, 2, 120)
        singles += bool(score_clustering("noise", noise, flags, n_boot=500, n_random=200, seed=s, quiet=True))
        families += bool(score_clustering("noise", noise, flags, n_boot=1000, n_random=500, seed=s, quiet=True,
                                          family=14))
    assert families <= singles and families <= 1
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="family"):
            score_clustering("x", labels, flags, quiet=True, family=bad)
    with pytest.raises(ValueError, match="quantile"):
        agreement_baselines(labels, {"a": flags}, quantile=1.0)
