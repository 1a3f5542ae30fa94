"""Heatmap similarity (rank correlation, top-k IoU), transforms, and the robustness table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import spearmanr

import xaibias as xb
from xaibias.analysis import robustness as rb


@pytest.fixture(scope="module")
def maps() -> torch.Tensor:
    return torch.randn(4, 16, 16, generator=torch.Generator().manual_seed(0))


def test_identity_gives_one(maps):
    torch.testing.assert_close(rb.rank_correlation(maps, maps), torch.ones(4, dtype=torch.float64))
    torch.testing.assert_close(rb.topk_iou(maps, maps, k=0.1), torch.ones(4, dtype=torch.float64))
    # any monotone rescaling keeps the ranks and the top-k set
    torch.testing.assert_close(rb.rank_correlation(maps, torch.exp(3 * maps)), torch.ones(4, dtype=torch.float64))
    torch.testing.assert_close(rb.topk_iou(maps, 2 * maps + 5, k=20), torch.ones(4, dtype=torch.float64))


def test_reversal_and_independence(maps):
    torch.testing.assert_close(rb.rank_correlation(maps, -maps), -torch.ones(4, dtype=torch.float64))
    assert (rb.topk_iou(maps, -maps, k=0.1) == 0).all()
    other = torch.randn(4, 16, 16, generator=torch.Generator().manual_seed(1))
    assert rb.rank_correlation(maps, other).abs().max() < 0.2


def test_rank_correlation_matches_scipy_with_ties():
    g = torch.Generator().manual_seed(2)
    a = torch.randint(0, 4, (3, 8, 8), generator=g).float()  # many ties
    b = a + torch.randn(3, 8, 8, generator=g)
    ours = rb.rank_correlation(a, b)
    for i in range(3):
        ref = spearmanr(a[i].flatten().numpy(), b[i].flatten().numpy()).statistic
        assert ours[i].item() == pytest.approx(ref, abs=1e-12)


def test_topk_iou_counts_the_overlap():
    a = torch.zeros(1, 4, 4)
    b = torch.zeros(1, 4, 4)
    a[0, 0, :4] = torch.tensor([4.0, 3.0, 2.0, 1.0])  # top 4 of a: the first row
    b[0, 0, 2:4] = 5.0  # top 4 of b: two of a's and two of the second row
    b[0, 1, 0:2] = 4.0
    assert rb.topk_iou(a, b, k=4).item() == pytest.approx(2 / 6)  # 2 shared of 6 distinct
    assert rb.topk_iou(a, b, k=2).item() == 0.0
    assert rb.topk_iou(a, b, k=0.25).item() == pytest.approx(2 / 6)  # 0.25 * 16 = 4 pixels
    assert rb.topk_iou(a, -b, k=4, absolute=True).item() == pytest.approx(2 / 6)


def test_valid_mask_restricts_the_comparison(maps):
    b = maps.clone()
    b[:, :, :8] = torch.randn(4, 16, 8, generator=torch.Generator().manual_seed(3))  # left half differs
    valid = torch.zeros(16, 16, dtype=torch.bool)
    valid[:, 8:] = True
    torch.testing.assert_close(rb.rank_correlation(maps, b, valid=valid), torch.ones(4, dtype=torch.float64))
    assert (rb.rank_correlation(maps, b) < 0.8).all()


def test_blur_and_sharpen_behave():
    img = torch.zeros(1, 3, 21, 21)
    img[:, :, 10, 10] = 1.0
    out = rb.blur(img, sigma=1.5)
    assert out[0, 0, 10, 10] < 0.2 and out[0, 0].sum().item() == pytest.approx(1.0, abs=1e-4)  # mass kept
    assert out[0, 0, 10, 11] > out[0, 0, 10, 13] > 0  # decays with distance
    flat = torch.full((1, 3, 6, 6), 0.3)
    torch.testing.assert_close(rb.blur(flat, sigma=1.0), flat)  # reflected edges: a flat image stays flat
    with pytest.raises(ValueError, match="sigma 3 is too large for \\(6, 6\\) images"):
        rb.blur(flat, sigma=3.0)
    step = torch.zeros(1, 3, 8, 8)
    step[..., 4:] = 0.6
    step += 0.2
    sharp = rb.sharpen(step, amount=1.0)
    assert sharp[0, 0, 0, 4] > 0.8 and sharp[0, 0, 0, 3] < 0.2 + 1e-6  # overshoot at the edge
    torch.testing.assert_close(sharp[..., :1], step[..., :1])  # flat parts (beyond the kernel) unchanged
    assert 0 <= float(sharp.min()) and float(sharp.max()) <= 1


def test_rotation_is_undone_inside_the_valid_region():
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    r = torch.exp(-((yy - 10) ** 2 + (xx - 21) ** 2) / 12.0)[None]  # a smooth off-centre blob
    tr = rb.get_transform("rotate", angle=30)
    moved = rb.rotate(r, 30)
    assert rb.topk_iou(r, moved, k=0.05).item() < 0.3  # rotation moves the blob ...
    back = tr.undo(moved)
    valid = tr.valid(32, 32)
    assert 0.5 < valid.float().mean() < 1.0 and not valid[0, 0]  # corners are lost
    assert rb.rank_correlation(r, back, valid=valid).item() > 0.95  # ... and undoing brings it back
    assert rb.topk_iou(r, back, k=0.05, valid=valid).item() > 0.7
    torch.testing.assert_close(rb.rotate(rb.rotate(r, 90), -90), r, atol=1e-5, rtol=0)


def test_heatmap_similarity_frame(maps):
    df = rb.heatmap_similarity(maps, maps)
    assert list(df.columns) == ["rank_corr", "topk_iou"] and len(df) == 4
    assert (df.to_numpy() == 1).all()
    # a map against its negation: ranks reversed, the top 10 % of one is the bottom 10 % of the other
    neg = rb.heatmap_similarity(maps, -maps)
    assert np.allclose(neg["rank_corr"], -1.0) and (neg["topk_iou"] == 0).all()


def test_heatmap_similarity_known_answer():
    # ranks 1..6 against 1,2,3,6,5,4: Spearman 1 - 6 * sum(d^2) / (n (n^2 - 1)) = 1 - 6 * 8 / 210 = 27/35;
    # top 2 pixels {5, 4} against {3, 4}: one shared of three, IoU 1/3
    a = torch.tensor([[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]])
    b = torch.tensor([[[1.0, 2.0, 3.0], [6.0, 5.0, 4.0]]])
    df = rb.heatmap_similarity(a, b, k=2)
    assert df["rank_corr"].item() == pytest.approx(27 / 35, abs=1e-12)
    assert df["topk_iou"].item() == pytest.approx(1 / 3, abs=1e-12)
    # an "orthogonal" pair: a checkerboard against horizontal stripes (uncorrelated ranks, ties averaged)
    yy, xx = torch.meshgrid(torch.arange(4), torch.arange(4), indexing="ij")
    checker = ((yy + xx) % 2).float()[None]
    stripes = (yy % 2).float()[None]
    assert rb.heatmap_similarity(checker, stripes)["rank_corr"].item() == pytest.approx(0.0, abs=1e-12)


class _Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.relu = torch.nn.ReLU()
        self.pool = torch.nn.AdaptiveAvgPool2d(2)
        self.fc = torch.nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.relu(self.conv(x))), 1))


def test_robustness_table_rows_and_identity():
    torch.manual_seed(0)
    models = {"a": _Tiny().eval(), "b": _Tiny().eval()}
    imgs = torch.rand(5, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    table = rb.robustness_table(models, imgs, composites=["EpsilonPlusFlat"],
                                transforms=["identity", "blur", "rotate"], transform_params={"blur": {"sigma": 2.0}})
    assert list(table.columns) == ["model", "composite", "transform", "rank_corr_mean", "rank_corr_std",
                                   "topk_iou_mean", "topk_iou_std", "n"]
    assert len(table) == 2 * 1 * 3 and (table["n"] == 5).all()
    ident = table[table["transform"] == "identity"]
    assert np.allclose(ident.rank_corr_mean, 1.0) and np.allclose(ident.topk_iou_mean, 1.0)
    assert np.allclose(ident.rank_corr_std, 0.0)
    others = table[table["transform"] != "identity"]
    assert (others.rank_corr_mean < 0.999).all() and (others.rank_corr_std > 0).all()
    long = rb.robustness_table({"a": models["a"]}, imgs, composites=["EpsilonPlusFlat"], transforms=["blur"],
                               per_image=True)
    assert len(long) == 5 and set(long.columns) >= {"image", "rank_corr", "topk_iou"}
    summary_a = table[(table["model"] == "a") & (table["transform"] == "blur")]
    # the same transform with another sigma gives another number: the parameters are used
    assert summary_a.rank_corr_mean.item() != pytest.approx(long.rank_corr.mean())


def test_baseline_rows_compare_different_images():
    torch.manual_seed(0)
    model = _Tiny().eval()
    imgs = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    plain = rb.robustness_table({"a": model}, imgs, composites=["EpsilonPlusFlat"], transforms=["identity"])
    table = rb.robustness_table({"a": model}, imgs, composites=["EpsilonPlusFlat"], transforms=["identity"],
                                baseline=True)
    # the old rows are unchanged; one baseline row per model and composite is added
    assert list(table["transform"]) == ["identity", rb.BASELINE] and rb.BASELINE == "other image"
    pd.testing.assert_frame_equal(table.iloc[:1].reset_index(drop=True), plain)
    # the baseline is the similarity of heatmap i with heatmap i+1 (cyclically), computed by hand
    ref = xb.explain.attribute(model, imgs, target=model(imgs).argmax(1), method="lrp", composite="EpsilonPlusFlat")
    by_hand = rb.rank_correlation(ref, torch.roll(ref, -1, 0)).mean().item()
    row = table[table["transform"] == rb.BASELINE].iloc[0]
    assert row.rank_corr_mean == pytest.approx(by_hand) and row.rank_corr_mean < 0.999
    assert row.n == 4
    long = rb.robustness_table({"a": model}, imgs, composites=["EpsilonPlusFlat"], transforms=["blur"],
                               baseline=True, per_image=True)
    assert set(long["transform"]) == {"blur", rb.BASELINE} and len(long) == 8
    with pytest.raises(ValueError, match="baseline=True .* at least 2 images, got 1"):
        rb.robustness_table({"a": model}, imgs[:1], composites=["EpsilonPlusFlat"], baseline=True)


def test_bad_inputs_are_named(maps):
    with pytest.raises(ValueError, match=r"heatmaps a and b must have the same shape \(N,H,W\)"):
        rb.rank_correlation(maps, maps[:, :8])
    const = maps.clone()
    const[2] = 0.0
    with pytest.raises(ValueError, match=r"heatmaps b\[2\] is constant on the compared pixels"):
        rb.rank_correlation(maps, const)
    with pytest.raises(ValueError, match=r"k must be a fraction \(float\) in \(0,1\] or a pixel count"):
        rb.topk_iou(maps, maps, k=0)
    with pytest.raises(ValueError, match=r"k must be a fraction"):
        rb.topk_iou(maps, maps, k=1.5)
    with pytest.raises(ValueError, match=r"valid must be a bool mask \(H,W\) or \(N,H,W\)"):
        rb.rank_correlation(maps, maps, valid=torch.ones(8, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match="heatmaps a contains NaN"):
        rb.rank_correlation(torch.full((1, 4, 4), float("nan")), torch.ones(1, 4, 4))
    with pytest.raises(ValueError, match="unknown transform 'flip'"):
        rb.get_transform("flip")
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['radius'\] for transform 'blur'"):
        rb.get_transform("blur", radius=3)
    with pytest.raises(ValueError, match="sigma must be a positive number; got 0"):
        rb.blur(torch.rand(1, 3, 8, 8), sigma=0)
    with pytest.raises(ValueError, match="models must be a non-empty dict"):
        rb.robustness_table([], torch.rand(1, 3, 8, 8))


def test_exported_from_analysis():
    assert xb.analysis.robustness_table is rb.robustness_table
