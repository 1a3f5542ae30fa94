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
