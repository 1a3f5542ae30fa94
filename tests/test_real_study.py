"""xaibias.analysis.real_study: every number computed another way (by hand, sklearn, pandas or the package's own path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

import xaibias as xb
from xaibias.analysis import real_study as rs

RNG = np.random.default_rng(0)


def _toy(n: int = 200, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    flags = pd.DataFrame({"frame": rng.random(n) < np.where(y == 1, 0.6, 0.2), "patch": rng.random(n) < np.where(y == 1, 0.02, 0.2)})
    scores = np.clip(0.3 * y + 0.3 * flags["frame"].to_numpy() + rng.normal(0, 0.25, n), 0, 1)
    return y, flags, scores


# --------------------------------------------------------------------------------------------------
# data helpers


def test_locate_data_env_wins_then_first_candidate(tmp_path, monkeypatch):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for f in (b, c):
        f.mkdir()
        (f / "isic_bias.csv").write_text("x")
    a.mkdir()
    monkeypatch.delenv("XAIBIAS_ISIC_REAL", raising=False)
    assert rs.locate_data([a, b, c]) == b.resolve()
    assert rs.locate_data([a]) is None
    monkeypatch.setenv("XAIBIAS_ISIC_REAL", str(c))
    assert rs.locate_data([a, b]) == c.resolve()
    monkeypatch.setenv("XAIBIAS_ISIC_REAL", str(a))   # set, but without the annotation file: no data
    assert rs.locate_data([b]) is None


def test_cooccurrence_matches_a_crosstab():
    y, flags, _ = _toy()
    co = rs.cooccurrence(flags, y, {"frame": "dark_corner"}, n_boot=200, seed=1)
    tab = pd.crosstab(flags["frame"], y, normalize="columns")
    assert co.loc["dark_corner", "p_melanoma"] == pytest.approx(tab.loc[True, 1])
    assert co.loc["dark_corner", "p_other"] == pytest.approx(tab.loc[True, 0])
    assert co.loc["patch", "n_melanoma"] == int((flags["patch"] & (y == 1)).sum())
    assert co.loc["dark_corner", "ratio"] == pytest.approx(tab.loc[True, 1] / tab.loc[True, 0])
    assert (co["p_melanoma_low"] <= co["p_melanoma_high"]).all()
    with pytest.raises(ValueError, match="bool"):
        rs.cooccurrence(flags.astype(int), y)
    with pytest.raises(ValueError, match="single class"):
        rs.cooccurrence(flags, np.zeros(len(y), int))


def test_stratified_split_keeps_class_shares_and_is_disjoint():
    y, _, _ = _toy(300)
    tr, te = rs.stratified_split(y, 0.4, seed=3)
    assert len(np.intersect1d(tr, te)) == 0 and len(tr) + len(te) == len(y)
    for c in (0, 1):
        assert (y[te] == c).sum() == round(0.4 * (y == c).sum())
    among = np.arange(0, 300, 2)
    tr2, te2 = rs.stratified_split(y, 0.5, seed=3, among=among)
    assert set(tr2) | set(te2) == set(among)
    with pytest.raises(ValueError, match="test_fraction"):
        rs.stratified_split(y, 1.0)


# --------------------------------------------------------------------------------------------------
# heads on cached features


@pytest.fixture(scope="module")
def small_photos():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(12, 3, 64, 64, generator=g)
    x[6:, 0] = x[6:, 0] * 0.5 + 0.5          # a colour difference the head can pick up
    labels = torch.tensor([0] * 6 + [1] * 6)
    return x, labels


def test_head_model_equals_finetune_head(small_photos):
    x, labels = small_photos
    reference = xb.models.finetune("efficientnet_lite0", x, labels, seed=0, full=False, progress=False)
    feats = xb.models.extract_features(xb.models.make_model("efficientnet_lite0", 2, pretrained=True), x, progress=False)
    mine = rs.head_model("efficientnet_lite0", feats, labels, seed=0, device="cpu")
    for k, v in reference.classifier.state_dict().items():
        torch.testing.assert_close(mine.classifier.state_dict()[k].cpu(), v.cpu(), rtol=1e-4, atol=1e-5)
    # the complete model: scoring the images through the network equals scoring their cached features
    p_images = xb.models.predict_proba(mine, x)[:, 1].numpy()
    np.testing.assert_allclose(rs.head_scores(mine, feats), p_images, atol=1e-4)
    with pytest.raises(ValueError, match="single class"):
        rs.head_model("efficientnet_lite0", feats, torch.zeros(12, dtype=torch.long))
    with pytest.raises(ValueError, match="columns"):
        rs.head_model("efficientnet_lite0", feats[:, :10], labels)


def test_inference_copy_and_pooled_activations_agree_with_the_model(small_photos):
    x, _ = small_photos
    model = xb.models.make_model("efficientnet_lite0", 2, pretrained=True, seed=0)
    with torch.no_grad():
        ref = model(x)
        fast = rs.inference_copy(model)(x)
    torch.testing.assert_close(fast, ref, rtol=1e-3, atol=1e-4)
    acts = rs.pooled_activations(model, x, ["features.8", "features.5"], batch_size=5)
    assert set(acts) == {"features.5", "features.8"} and acts["features.5"].shape == (12, 112)
    feats = xb.models.extract_features(model, x, cache=False, progress=False)
    torch.testing.assert_close(acts["features.8"], feats, rtol=1e-4, atol=1e-5)
    hooked = xb.analysis.CAV("features.5").activations(model, x)       # unfused network, forward hook
    torch.testing.assert_close(acts["features.5"], hooked, rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match="features"):
        rs.pooled_activations(model, x, ["classifier.1"])


def test_with_head_swaps_only_the_classifier():
    model = xb.models.make_model("efficientnet_lite0", 2, pretrained=True, seed=0)
    head = torch.nn.Sequential(torch.nn.Dropout(0.2), torch.nn.Linear(1280, 2))
    out = rs.with_head(model, head)
    torch.testing.assert_close(out.classifier[1].weight, head[1].weight)
    assert out.classifier[1].weight.data_ptr() != head[1].weight.data_ptr()
    torch.testing.assert_close(out.features[0].conv.weight, model.features[0].conv.weight)
    assert model.classifier[1].weight.data_ptr() != out.classifier[1].weight.data_ptr()


# --------------------------------------------------------------------------------------------------
# estimates


def test_auroc_balanced_accuracy_and_worst_group_values():
    y, flags, s = _toy(300, seed=2)
    e = rs.auroc(s, y, n_boot=200, seed=0)
    assert e.value == pytest.approx(roc_auc_score(y, s)) and e.low <= e.value <= e.high
    b = rs.balanced_accuracy(s, y, n_boot=200)
    assert b.value == pytest.approx(balanced_accuracy_score(y, (s >= 0.5).astype(int)))
    groups = 2 * y + flags["frame"].to_numpy()
    correct = ((s >= 0.5) == (y == 1)).astype(float)
    w = rs.worst_group(correct, groups, n_boot=200)
    assert w.value == pytest.approx(min(correct[groups == g].mean() for g in range(4)))
    with pytest.raises(ValueError, match="single class"):
        rs.auroc(s, np.ones(len(s), int))


def test_agreement_and_the_auroc_gap():
    y = np.array([1, 1, 0, 0])
    f = np.array([True, False, True, False])
    assert rs.agreement(f, y).tolist() == [True, False, False, True]
    assert rs.agreement(f, y, positive=0).tolist() == [False, True, True, False]
    y, flags, s = _toy(400, seed=4)
    f = flags["frame"].to_numpy()
    a = rs.agreement(f, y)
    gap = rs.auroc_gap(s, y, a, n_boot=200, seed=0)
    assert gap.value == pytest.approx(roc_auc_score(y[a], s[a]) - roc_auc_score(y[~a], s[~a]))
    assert gap.value > 0     # the toy score adds the artifact: it ranks the agreeing photos better
    parts = rs.auroc_parts(s, y, a, n_boot=100)
    assert parts["agree"].value - parts["disagree"].value == pytest.approx(gap.value)
    other = np.random.default_rng(9).random(len(s))
    d = rs.gap_difference(s, other, y, a, n_boot=200, seed=0)
    other_gap = roc_auc_score(y[a], other[a]) - roc_auc_score(y[~a], other[~a])
    assert d.value == pytest.approx(gap.value - other_gap)
    with pytest.raises(ValueError, match="at least 2"):
        rs.auroc_gap(s[:5], y[:5], a[:5])


def test_retrieval_difference_and_within_class():
    y, flags, s = _toy(300, seed=5)
    f = flags["frame"].to_numpy()
    noise = np.random.default_rng(1).random(300)
    d = rs.retrieval_difference(s, noise, f, n_boot=200)
    assert d.value == pytest.approx(roc_auc_score(f, s) - roc_auc_score(f, noise))
    w = rs.within_class(s, y)
    assert abs(w[y == 1].mean()) < 1e-12 and abs(w[y == 0].mean()) < 1e-12
    np.testing.assert_allclose(w[y == 1] - s[y == 1], -s[y == 1].mean())


# --------------------------------------------------------------------------------------------------
# corrections and pixels


def test_group_balanced_indices_fill_every_group_equally():
    y, flags, _ = _toy(300, seed=6)
    f = flags["frame"].to_numpy()
    idx = rs.group_balanced_indices(y, f, n_per_group=50, seed=0)
    counts = pd.crosstab(y[idx], f[idx])
    assert (counts.to_numpy() == 50).all()
    assert len(idx) == 200
    with pytest.raises(ValueError, match="empty"):
        rs.group_balanced_indices(y, y == 1)     # the flag is the class: two groups are empty


def test_project_out_equals_the_packages_projection_module():
    from xaibias.mitigation.clarc import Projection

    f = torch.as_tensor(RNG.normal(size=(20, 6)), dtype=torch.float32)
    v, z = RNG.normal(size=6), RNG.normal(size=6)
    mine = rs.project_out(f, v, z)
    ref = Projection(v / np.linalg.norm(v), z)(f)
    torch.testing.assert_close(mine, ref, rtol=1e-5, atol=1e-5)
    u = v / np.linalg.norm(v)
    np.testing.assert_allclose(mine.double().numpy() @ u, np.full(20, z @ u), atol=1e-5)   # every photo at z along v
    with pytest.raises(ValueError, match="zero"):
        rs.project_out(f, np.zeros(6), z)


def test_corner_darkness_and_central_disk():
    x = torch.full((2, 3, 16, 16), 0.8)
    x[0, :, :2, :2] = 0.0                         # one dark corner square (side 2 = 16 / 8)
    got = rs.corner_darkness(x)
    assert got[1] == pytest.approx(0.2) and got[0] == pytest.approx(0.2 * 3 / 4 + 1.0 / 4)
    m = rs.central_disk(3, 100, radius=0.3)
    assert m.shape == (3, 100, 100) and m.dtype == torch.bool
    assert float(m[0].float().mean()) == pytest.approx(np.pi * 0.3 ** 2, rel=0.03)
    assert bool(m[0, 50, 50]) and not bool(m[0, 0, 0])


def test_insertion_summary_matches_a_groupby():
    per = pd.DataFrame({"artifact": ["patch"] * 6 + ["frame"] * 6, "true_class": ["a", "a", "b", "b", "b", "a"] * 2,
                        "change_pp": [-10.0, -20, 5, -5, 30, 0, 1, 2, 3, 4, 5, 6],
                        "flipped": [True, False, False, True, True, False] * 2, "skipped": [False] * 5 + [True] + [False] * 6,
                        "pred_before": [0, 0, 1, 0, 0, 0] * 2, "pred_after": [1, 0, 0, 1, 1, 0] * 2})
    s = rs.insertion_summary(per, n_boot=200)
    assert s.loc[("patch", "a"), "to_target_rate"] == pytest.approx(0.5)    # photo 0 went 0 -> 1, photo 1 stayed
    assert s.loc[("patch", "b"), "to_target_rate"] == pytest.approx(2 / 3)  # photos 3 and 4; photo 2 left class 1
    assert s.loc[("patch", "a"), "n"] == 2 and s.loc[("patch", "a"), "mean_change_pp"] == pytest.approx(-15)
    assert s.loc[("patch", "b"), "max_change_pp"] == pytest.approx(30)
    assert s.loc[("patch", "b"), "flip_rate"] == pytest.approx(2 / 3)
    assert s.loc[("frame", "a"), "mean_change_pp"] == pytest.approx(np.mean([1, 2, 6]))
    with pytest.raises(ValueError, match="per-image"):
        rs.insertion_summary(per.drop(columns=["skipped"]))


# --------------------------------------------------------------------------------------------------
# on the real photos (../shared/isic_real; skipped without it)


def test_real_cooccurrence_equals_the_annotation_file(isic_real: Path):
    csv = isic_real / "isic_bias.csv"
    ds = xb.data.ISICDataset(isic_real, csv=csv, annotations=csv, size=32)
    co = rs.cooccurrence(ds.artifacts, ds.labels.numpy(), n_boot=100)
    raw = xb.data.load_artifact_annotations(csv)
    raw = raw.loc[ds.image_ids]
    for col, ann in (("patch", "patches"), ("frame", "dark_corner")):
        assert co.loc[col, "p_melanoma"] == pytest.approx(raw.loc[raw["label"] == 1, ann].mean())
        assert co.loc[col, "p_other"] == pytest.approx(raw.loc[raw["label"] == 0, ann].mean())
    # the shortcut of the notebook: patches almost only on the other lesions
    assert co.loc["patch", "p_other_low"] > co.loc["patch", "p_melanoma_high"]
