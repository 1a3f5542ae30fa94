"""Tests for xaibias.analysis.metrics: RMA, RRA, mask enlargement, AOPC and Welch tables.

The Quantus cross-checks run Quantus 0.6 on the same inputs (a test dependency in pyproject).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from xaibias.analysis.metrics import (
    aopc,
    enlarge_masks,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
    welch_table,
)

# ----------------------------------------------------------------------------- hand-built cases


def _square_mask(n=1, size=8, rows=slice(2, 4), cols=slice(2, 4)):
    m = torch.zeros(n, size, size, dtype=torch.bool)
    m[:, rows, cols] = True
    return m


def test_rma_hand_built():
    mask = _square_mask()  # 4 pixels of 64
    uniform = torch.ones(1, 8, 8)
    assert relevance_mass_accuracy(uniform, mask).item() == pytest.approx(4 / 64)
    inside_only = mask.float()
    assert relevance_mass_accuracy(inside_only, mask).item() == pytest.approx(1.0)
    # 3 units inside, 1 unit outside, -2 outside
    r = torch.zeros(1, 8, 8)
    r[0, 2, 2] = 3.0
    r[0, 6, 6] = 1.0
    r[0, 7, 7] = -2.0
    assert relevance_mass_accuracy(r, mask).item() == pytest.approx(3 / 4)  # negatives dropped
    assert relevance_mass_accuracy(r, mask, relevance_mode="absolute").item() == pytest.approx(3 / 6)
    assert relevance_mass_accuracy(r, mask, relevance_mode="signed").item() == pytest.approx(3 / 2)


def test_rma_is_vectorised_and_accepts_channels():
    g = torch.Generator().manual_seed(0)
    r = torch.rand(5, 3, 10, 10, generator=g)
    m = torch.rand(5, 10, 10, generator=g) > 0.6
    batch = relevance_mass_accuracy(r, m)
    one_by_one = torch.cat([relevance_mass_accuracy(r[i : i + 1], m[i : i + 1]) for i in range(5)])
    torch.testing.assert_close(batch, one_by_one)
    summed = r.sum(1)
    expected = (summed * m).sum((1, 2)) / summed.sum((1, 2))
    torch.testing.assert_close(batch, expected.double())


def test_rra_hand_built():
    mask = _square_mask()  # K = 4
    r = torch.zeros(1, 8, 8)
    r[0, 2, 2], r[0, 2, 3], r[0, 3, 2] = 9.0, 8.0, 7.0  # three of the top four inside
    r[0, 0, 0] = 6.0  # the fourth outside
    r[0, 3, 3] = 5.0  # inside, but fifth
    assert relevance_rank_accuracy(r, mask).item() == pytest.approx(3 / 4)
    # negative values: ranking by |R| moves a strongly negative inside pixel into the top 4
    r[0, 3, 3] = -10.0
    assert relevance_rank_accuracy(r, mask).item() == pytest.approx(3 / 4)
    assert relevance_rank_accuracy(r, mask, relevance_mode="absolute").item() == pytest.approx(1.0)


def test_rra_ties_use_expected_value():
    mask = _square_mask()  # K = 4
    r = torch.zeros(1, 8, 8)
    r[0, 2, 2] = 2.0  # one sure hit; 3 places left for the 63 pixels tied at 0, 3 of them inside
    got = relevance_rank_accuracy(r, mask).item()
    assert got == pytest.approx((1 + 3 * 3 / 63) / 4)
    # the value must not depend on where the tied pixels are in raster order
    flipped = relevance_rank_accuracy(r.flip(-1).flip(-2), mask.flip(-1).flip(-2)).item()
    assert flipped == pytest.approx(got)


def test_rra_small_and_large_masks_match_a_per_image_count():
    # masks below half the image go through a partial top-k, larger ones through a full sort;
    # both must give the plain count "how many of the K largest lie in the mask" (no ties here)
    g = torch.Generator().manual_seed(3)
    r = torch.randn(6, 8, 8, generator=g)
    sizes = [1, 5, 20, 32, 40, 63]
    masks = torch.zeros(6, 64, dtype=torch.bool)
    for i, k in enumerate(sizes):
        masks[i, torch.randperm(64, generator=g)[:k]] = True
    masks = masks.view(6, 8, 8)
    got = relevance_rank_accuracy(r, masks)
    for i, k in enumerate(sizes):
        top = r[i].flatten().argsort(descending=True)[:k]
        expected = masks[i].flatten()[top].sum().item() / k
        assert got[i].item() == pytest.approx(expected)
    # one batch mixing both paths equals the images scored one by one
    for i in range(6):
        assert relevance_rank_accuracy(r[i:i + 1], masks[i:i + 1]).item() == pytest.approx(got[i].item())


def test_enlarge_masks_hits_area_within_one_ring():
    g = torch.Generator().manual_seed(1)
    n, size = 12, 40
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    cy = torch.randint(5, 35, (n, 1, 1), generator=g)
    cx = torch.randint(5, 35, (n, 1, 1), generator=g)
    rad = torch.randint(2, 8, (n, 1, 1), generator=g)
    masks = ((yy - cy) ** 2 + (xx - cx) ** 2) <= rad**2
    from scipy import ndimage

    structures = {4: ndimage.generate_binary_structure(2, 1), 8: ndimage.generate_binary_structure(2, 2)}
    for connectivity in (4, 8):
        for factor in (1.5, 2.0, 3.7):
            big = enlarge_masks(masks, area_factor=factor, connectivity=connectivity)
            assert bool((big | ~masks).all()), "the original mask must stay inside the enlarged one"
            for i in range(n):
                m0 = masks[i].numpy()
                target = np.ceil(m0.sum() * factor)
                # independent reference: count scipy dilation rings until the target is reached
                rings, prev, cur = 0, m0, m0
                while cur.sum() < target:
                    prev, cur = cur, ndimage.binary_dilation(cur, structures[connectivity])
                    rings += 1
                assert big[i].sum() >= target
                assert prev.sum() < target  # one ring less misses the target
                assert np.array_equal(big[i].numpy(), cur)


def test_enlarge_masks_edge_cases():
    empty = torch.zeros(1, 6, 6, dtype=torch.bool)
    assert not enlarge_masks(empty).any()  # documented: nothing to grow
    full_target = _square_mask(size=6, rows=slice(0, 5), cols=slice(0, 5))  # 25 px, target 38 > 36
    assert enlarge_masks(full_target).all()
    m = _square_mask()
    assert torch.equal(enlarge_masks(m, area_factor=1), m)
    with pytest.raises(ValueError, match="area_factor must be a number >= 1"):
        enlarge_masks(m, area_factor=0.5)
    with pytest.raises(ValueError, match="connectivity must be 4 or 8"):
        enlarge_masks(m, connectivity=6)
    with pytest.raises(ValueError, match="masks must be bool"):
        enlarge_masks(m.float())


# ----------------------------------------------------------------------------- bad inputs


def test_empty_masks_and_zero_maps_raise_or_nan():
    r = torch.rand(3, 8, 8)
    m = _square_mask(3)
    m[1] = False
    for fn in (relevance_mass_accuracy, relevance_rank_accuracy):
        with pytest.raises(ValueError, match=r"masks are empty .* at index \[1\]"):
            fn(r, m)
        out = fn(r, m, on_invalid="nan")
        assert torch.isnan(out[1]) and torch.isfinite(out[[0, 2]]).all()
    m = _square_mask(3)
    r[2] = 0
    with pytest.raises(ValueError, match=r"relevance map has no positive relevance at index \[2\]"):
        relevance_mass_accuracy(r, m)
    with pytest.raises(ValueError, match=r"relevance map is all zero at index \[2\]"):
        relevance_rank_accuracy(r, m)
    r[2] = -1.0  # only negative evidence: no positive mass
    with pytest.raises(ValueError, match="no positive relevance"):
        relevance_mass_accuracy(r, m)
    assert torch.isnan(relevance_mass_accuracy(r, m, on_invalid="nan")[2])


def test_bad_shapes_and_types():
    r = torch.rand(2, 8, 8)
    with pytest.raises(ValueError, match=r"masks must be bool \(N,H,W\) matching relevance"):
        relevance_mass_accuracy(r, torch.ones(2, 8, 9, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"masks must be bool \(N,H,W\); got Tensor of dtype torch.float32"):
        relevance_rank_accuracy(r, torch.ones(2, 8, 8))
    with pytest.raises(ValueError, match=r"matching relevance \(2, 8, 8\); got .* shape \(3, 8, 8\)"):
        relevance_mass_accuracy(r, torch.ones(3, 8, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match="relevance contains NaN"):
        relevance_mass_accuracy(torch.full((1, 8, 8), float("nan")), _square_mask())
    with pytest.raises(ValueError, match="relevance_mode must be one of"):
        relevance_mass_accuracy(r, _square_mask(2), relevance_mode="pos")
    with pytest.raises(ValueError, match="on_invalid must be one of"):
        relevance_rank_accuracy(r, _square_mask(2), on_invalid="ignore")


# ----------------------------------------------------------------------------- Quantus cross-checks


@pytest.fixture(scope="module")
def quantus():
    warnings.filterwarnings("ignore")
    return pytest.importorskip("quantus")


def _quantus_inputs(n=8, size=24, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 3, size, size)).astype(np.float32)
    a = rng.normal(size=(n, 1, size, size))  # float64 so Quantus does not round
    s = np.zeros((n, 1, size, size), dtype=bool)
    for i in range(n):
        r0, c0 = rng.integers(0, size - 8, 2)
        h, w = rng.integers(3, 8, 2)
        s[i, 0, r0 : r0 + h, c0 : c0 + w] = True
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * size * size, 2))
    return model, x, np.zeros(n, dtype=int), a, s


def test_rma_equals_quantus(quantus):
    model, x, y, a, s = _quantus_inputs()
    kw = dict(model=model, x_batch=x, y_batch=y, s_batch=s)
    q_signed = np.array(quantus.RelevanceMassAccuracy(abs=False, disable_warnings=True)(a_batch=a, **kw))
    q_abs = np.array(quantus.RelevanceMassAccuracy(abs=True, disable_warnings=True)(a_batch=a, **kw))
    q_pos = np.array(
        quantus.RelevanceMassAccuracy(abs=False, disable_warnings=True)(a_batch=np.clip(a, 0, None), **kw)
    )
    ours = {m: relevance_mass_accuracy(a[:, 0], s[:, 0], relevance_mode=m).numpy()
            for m in ("signed", "absolute", "positive")}
    np.testing.assert_allclose(ours["signed"], q_signed, atol=1e-6, rtol=0)
    np.testing.assert_allclose(ours["absolute"], q_abs, atol=1e-6, rtol=0)
    np.testing.assert_allclose(ours["positive"], q_pos, atol=1e-6, rtol=0)


def test_rra_equals_quantus(quantus):
    model, x, y, a, s = _quantus_inputs(seed=1)
    kw = dict(model=model, x_batch=x, y_batch=y, s_batch=s)
    for mode, use_abs in (("signed", False), ("absolute", True)):
        q = np.array(quantus.RelevanceRankAccuracy(abs=use_abs, disable_warnings=True)(a_batch=a, **kw))
        ours = relevance_rank_accuracy(a[:, 0], s[:, 0], relevance_mode=mode).numpy()
        np.testing.assert_allclose(ours, q, atol=1e-6, rtol=0)
    # enlarged ground truth as in Schaaf et al.: same agreement
    big = enlarge_masks(torch.from_numpy(s[:, 0])).numpy()
    q = np.array(quantus.RelevanceRankAccuracy(abs=False, disable_warnings=True)(a_batch=a, **{**kw, "s_batch": big[:, None]}))
    np.testing.assert_allclose(relevance_rank_accuracy(a[:, 0], big).numpy(), q, atol=1e-6, rtol=0)


@pytest.mark.parametrize("order", ["morf", "lerf"])
@pytest.mark.parametrize("softmax", [False, True])
def test_aopc_equals_quantus_region_perturbation(quantus, order, softmax):
    # 64 px with 9 px patches: 8 x 8 = 64 regions < 100 steps, so both stop after 64 steps
    rng = np.random.default_rng(3)
    n, size = 4, 64
    x = rng.random((n, 3, size, size)).astype(np.float32)
    a = rng.normal(size=(n, 1, size, size)).astype(np.float32)
    y = np.array([0, 1, 2, 1])
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 5, stride=2), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(4),
        torch.nn.Flatten(), torch.nn.Linear(64, 3),
    ).eval()
    metric = quantus.RegionPerturbation(
        patch_size=9, order=order, regions_evaluation=100, perturb_baseline=0.0, disable_warnings=True
    )
    q = np.array(metric(model=model, x_batch=x, y_batch=y, a_batch=a, softmax=softmax, device="cpu"))
    ours, curves = aopc(model, x, a, target=y, steps=100, patch=9, perturbation=0.0, order=order,
                        output="softmax" if softmax else "logit", return_curves=True)
    assert q.shape == (n, 64) and tuple(curves.shape) == (n, 64)
    np.testing.assert_allclose(curves.numpy(), q, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(ours.numpy(), q.mean(axis=1), atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- AOPC behaviour


class _PatchModel(torch.nn.Module):
    """Class-0 logit rises with the brightness of one known 8x8 region; class 1 is its negative."""

    def __init__(self, rows=slice(16, 24), cols=slice(40, 48)):
        super().__init__()
        self.rows, self.cols = rows, cols
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        s = 12.0 * (x[:, :, self.rows, self.cols].mean(dim=(1, 2, 3)) - 0.5) + self.dummy
        return torch.stack([s, -s], dim=1)


def _patch_setup(n=16, size=64):
    g = torch.Generator().manual_seed(5)
    x = torch.rand(n, 3, size, size, generator=g) * 0.5
    model = _PatchModel()
    x[:, :, model.rows, model.cols] = 1.0  # every image is confidently class 0
    oracle = torch.zeros(n, size, size)
    oracle[:, model.rows, model.cols] = 1.0
    return model, x, oracle


def test_aopc_oracle_beats_random():
    model, x, oracle = _patch_setup()
    morf = aopc(model, x, oracle, target=0, steps=100, patch=9, order="morf", seed=0)
    rand = aopc(model, x, oracle, target=0, steps=100, patch=9, order="random", seed=0)
    lerf = aopc(model, x, oracle, target=0, steps=100, patch=9, order="lerf", seed=0)
    assert float(morf.mean()) > float(rand.mean()) + 0.1
    assert float(rand.mean()) > float(lerf.mean())
    assert bool((morf >= rand - 1e-9).all())
    # relevance that points elsewhere does worse than the oracle
    wrong = oracle.roll(shifts=(30, -30), dims=(1, 2))
    assert float(aopc(model, x, wrong, target=0).mean()) < float(morf.mean())


def test_aopc_curves_clip_deterministic_and_batch_independent():
    model, x, oracle = _patch_setup(n=5)
    a1, c1 = aopc(model, x, oracle, target=0, order="random", seed=3, batch_size=7, return_curves=True)
    a2, c2 = aopc(model, x, oracle, target=0, order="random", seed=3, batch_size=256, return_curves=True)
    torch.testing.assert_close(c1, c2)
    assert c1.shape == (5, 64)  # 100 steps clipped to the 64 regions of a 64 px image
    torch.testing.assert_close(a1, c1.mean(1))
    a3 = aopc(model, x, oracle, target=0, order="random", seed=4)
    assert not torch.equal(a1, a3)
    # after every region is replaced, the image is pure noise: the last step is the same drop
    # for every order that uses the same seed
    _, cm = aopc(model, x, oracle, target=0, order="morf", seed=3, return_curves=True)
    torch.testing.assert_close(cm[:, -1], c1[:, -1])
    # target=None uses the prediction (class 0 here)
    torch.testing.assert_close(aopc(model, x, oracle, seed=3), aopc(model, x, oracle, target=0, seed=3))


def test_aopc_bad_inputs():
    model, x, oracle = _patch_setup(n=2)
    with pytest.raises(ValueError, match="order must be 'morf', 'random' or 'lerf'"):
        aopc(model, x, oracle, order="best")
    with pytest.raises(ValueError, match="perturbation must be 'uniform', 'black' or a float"):
        aopc(model, x, oracle, perturbation="gaussian")
    with pytest.raises(ValueError, match="steps must be a positive int"):
        aopc(model, x, oracle, steps=0)
    with pytest.raises(ValueError, match=r"relevance must have the spatial size of images \(64, 64\)"):
        aopc(model, x, oracle[:, :32, :32])
    with pytest.raises(ValueError, match="mismatched N: images has N=2, relevance has N=1"):
        aopc(model, x, oracle[:1])
    with pytest.raises(ValueError, match=r"images must have values in \[0,1\]"):
        aopc(model, x * 3, oracle)
    with pytest.raises(ValueError, match=r"target must be class indices in \[0, 2\)"):
        aopc(model, x, oracle, target=5)
    with pytest.raises(ValueError, match="patch .* must not exceed the image size"):
        aopc(model, x, oracle, patch=65)


# ----------------------------------------------------------------------------- Welch tables


def _scores(seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for method in ("lrp", "gradcam"):
        for model, mu in (("biased", 0.6), ("unbiased", 0.2)):
            shift = 0.0 if method == "gradcam" else mu  # gradcam: no difference
            for v in rng.normal(0.3 + shift, 0.1, size=30):
                rows.append({"object": "ball", "metric": "rma", "method": method, "model": model, "value": v})
    return pd.DataFrame(rows)


def test_welch_table_matches_scipy_and_direction():
    from scipy import stats

    df = _scores()
    tab = welch_table(df)
    assert list(tab.columns[:3]) == ["object", "metric", "method"]
    assert len(tab) == 2
    row = tab.set_index("method").loc["lrp"]
    a = df.query("method == 'lrp' and model == 'biased'")["value"]
    b = df.query("method == 'lrp' and model == 'unbiased'")["value"]
    ref = stats.ttest_ind(a, b, equal_var=False)
    assert row["t"] == pytest.approx(ref.statistic) and row["p"] == pytest.approx(ref.pvalue)
    assert row["t"] > 0 and row["p"] < 1e-6
    assert row["mean_biased"] == pytest.approx(a.mean()) and row["n_unbiased"] == 30
    assert tab.set_index("method").loc["gradcam", "p"] > 1e-3
    one_sided = welch_table(df, alternative="greater").set_index("method").loc["lrp", "p"]
    assert one_sided == pytest.approx(ref.pvalue / 2)


def test_welch_table_nan_and_degenerate_cells():
    df = _scores()
    df.loc[df.index[:5], "value"] = np.nan  # first five lrp/biased rows
    tab = welch_table(df).set_index("method")
    assert tab.loc["lrp", "n_biased"] == 25 and tab.loc["gradcam", "n_biased"] == 30
    tiny = df.groupby(["method", "model"]).head(1)
    assert welch_table(tiny)["p"].isna().all()  # one value per group: no test


def test_welch_table_bad_inputs():
    df = _scores()
    with pytest.raises(ValueError, match=r"scores is missing column\(s\) \['object'\]"):
        welch_table(df.drop(columns="object"))
    with pytest.raises(ValueError, match=r"column 'model' has no rows for \['debiased'\]"):
        welch_table(df, groups=("biased", "debiased"))
    with pytest.raises(TypeError, match="scores must be a pandas DataFrame"):
        welch_table(df.to_dict())
