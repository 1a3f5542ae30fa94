"""spray_vs_gebi: both methods on the same maps, each F1 beside its trivial baselines."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from xaibias.analysis import GEBI, SpRAy, agreement_baselines, cluster_agreement, spray_vs_gebi
from xaibias.analysis.gebi import SPRAY_VS_GEBI_COLUMNS


def image_only_structure(n: int = 240, seed: int = 1):
    """Noise relevance; a quarter of the images (the "framed" ones) have a dark border."""
    g = torch.Generator().manual_seed(seed)
    framed = np.arange(n) % 4 == 0
    images = torch.rand(n, 3, 24, 24, generator=g) * 0.2 + 0.5
    border = torch.ones(24, 24, dtype=torch.bool)
    border[4:-4, 4:-4] = False
    mask = (torch.as_tensor(framed)[:, None, None] & border).unsqueeze(1).expand(-1, 3, -1, -1)
    images[mask] = 0.05
    R = torch.randn(n, 24, 24, generator=g)
    return R, images, pd.DataFrame({"frame": framed, "ink": np.zeros(n, bool)})


def test_gebi_finds_an_image_artifact_that_spray_cannot_and_baselines_sit_beside():
    R, images, flags = image_only_structure()
    df = spray_vs_gebi(R, images, flags, ks=(2, 3), random_state=0, n_random=50)
    assert list(df.columns) == list(SPRAY_VS_GEBI_COLUMNS)
    assert len(df) == 2 * 2 * 2  # methods x ks x artifacts
    t = df.set_index(["method", "k", "artifact"])
    # the frame is only in the image: GEBI isolates it, SpRAy (noise maps) cannot beat its baseline by much
    assert t.loc[("GEBI", 2, "frame"), "f1"] > 0.95
    assert t.loc[("SpRAy", 2, "frame"), "f1"] < t.loc[("SpRAy", 2, "frame"), "f1_random_high"] + 0.1
    # one all-in-one cluster: share 1/4 -> F1 = 0.5 / 1.25 = 0.4
    assert t.xs("frame", level="artifact")["f1_one_cluster"].tolist() == pytest.approx([0.4] * 4)
    assert (t["n"] == len(R)).all()
    # an artifact no image has: zeros, no NaN
    assert (t.xs("ink", level="artifact")[["f1", "f1_one_cluster", "f1_random"]] == 0).all().all()
    assert not df.isna().any().any()


def test_rows_equal_the_estimators_fitted_by_hand():
    R, images, flags = image_only_structure(n=120, seed=3)
    df = spray_vs_gebi(R, images, flags[["frame"]], ks=(2, 4), random_state=5, n_random=20)
    t = df.set_index(["method", "k"])
    for name, est in (("SpRAy", SpRAy(n_clusters=4, random_state=5)), ("GEBI", GEBI(n_clusters=4, random_state=5))):
        est.fit(R, images)
        for k in (2, 4):
            labels = est.labels_for(k)  # the fit's own n_clusters does not change labels_for(k)
            assert t.loc[(name, k), "f1"] == pytest.approx(cluster_agreement(labels, flags[["frame"]]).loc[0, "f1"])
            base = agreement_baselines(labels, flags[["frame"]], n_random=20, seed=5)
            assert t.loc[(name, k), "f1_random"] == pytest.approx(base.loc["frame", "f1_random"])
        assert (t.loc[name, "eigengap_k"] == est.suggest_n_clusters()).all()
    # same seed, same table
    pd.testing.assert_frame_equal(df, spray_vs_gebi(R, images, flags[["frame"]], ks=(2, 4), random_state=5, n_random=20))


def test_tiny_sets_cap_the_neighbours_and_bad_ks_are_clear_errors():
    R, images, flags = image_only_structure(n=8)
    df = spray_vs_gebi(R, images, flags, ks=2, n_neighbors=10, n_random=10)  # 10 neighbours > N - 1 = 7
    assert set(df["k"]) == {2}
    with pytest.raises(ValueError, match="ks must be positive ints"):
        spray_vs_gebi(R, images, flags, ks=(0,))
    with pytest.raises(ValueError, match="GEBI needs the input images"):
        spray_vs_gebi(R, None, flags)
    with pytest.raises(ValueError, match="mismatched N"):
        spray_vs_gebi(R, images, flags.iloc[:5])


def test_intervals_gate_and_paired_difference_match_the_agreement_helpers():
    from xaibias.analysis.agreement import agreement_difference, agreement_interval, score_clustering
    from xaibias.analysis.gebi import SPRAY_VS_GEBI_INTERVAL_COLUMNS

    R, images, flags = image_only_structure(n=120, seed=3)
    df = spray_vs_gebi(R, images, flags, ks=(2,), random_state=5, n_random=50, n_boot=200)
    assert list(df.columns) == list(SPRAY_VS_GEBI_COLUMNS) + list(SPRAY_VS_GEBI_INTERVAL_COLUMNS)
    t = df.set_index(["method", "artifact"])
    frame = flags["frame"].to_numpy()
    labels = {}
    for name, est in (("SpRAy", SpRAy(n_clusters=2, random_state=5)), ("GEBI", GEBI(n_clusters=2, random_state=5))):
        labels[name] = est.fit(R, images).labels_
        lo, hi = agreement_interval(labels[name], frame, n_boot=200, seed=5)[1:]
        assert (t.loc[(name, "frame"), "f1_low"], t.loc[(name, "frame"), "f1_high"]) == pytest.approx((lo, hi))
        gate = score_clustering(name, labels[name], frame, n_random=50, n_boot=200, seed=5, quiet=True)
        assert t.loc[(name, "frame"), "passes_gate"] == bool(gate)
    d = agreement_difference(labels["GEBI"], labels["SpRAy"], frame, n_boot=200, seed=5)
    for name in ("SpRAy", "GEBI"):
        assert tuple(t.loc[(name, "frame"), ["gebi_minus_spray", "diff_low", "diff_high"]]) == pytest.approx(d)
    # the frame is only in the image: GEBI passes, SpRAy on noise maps does not
    assert t.loc[("GEBI", "frame"), "passes_gate"] and not t.loc[("SpRAy", "frame"), "passes_gate"]
    assert t.loc[("GEBI", "frame"), "diff_low"] > 0
    # an artifact no map has: no interval, never passes
    assert t.loc[("GEBI", "ink"), ["f1_low", "diff_low"]].isna().all() and not t.loc[("GEBI", "ink"), "passes_gate"]
    with pytest.raises(ValueError, match="n_boot must be an int >= 100"):
        spray_vs_gebi(R, images, flags, ks=(2,), n_boot=10)


def test_seed_summary_lays_out_one_line_per_seed():
    from xaibias.analysis.gebi import seed_summary

    R, images, flags = image_only_structure(n=80, seed=2)
    rows = pd.concat([spray_vs_gebi(R, images, flags[["frame"]], ks=(2,), random_state=s, n_random=20, n_boot=100)
                      .assign(seed=s) for s in (0, 1)], ignore_index=True)
    out = seed_summary(rows, k=2)
    assert out.index.tolist() == [0, 1] and (out["n"] == 80).all()
    g = rows[(rows.seed == 1) & (rows.method == "GEBI")].iloc[0]
    assert out.loc[1, "GEBI F1"] == f"{g.f1:.2f} [{g.f1_low:.2f}, {g.f1_high:.2f}]"
    assert out.loc[1, "GEBI passes"] == bool(g.passes_gate)
    assert out.loc[1, "one cluster F1"] == pytest.approx(0.4, abs=1e-3)  # a quarter framed: 0.5 / 1.25
    with pytest.raises(ValueError, match="no line for k = 3"):
        seed_summary(rows, k=3)
    with pytest.raises(ValueError, match="missing"):
        seed_summary(rows.drop(columns="passes_gate"), k=2)
