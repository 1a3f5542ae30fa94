"""SyntheticChestXray: images, masks (markers, border, lungs, disease), bias rates, errors."""

from __future__ import annotations

import pytest
import torch

import xaibias as xb
from xaibias.data.chestxray import MARKER_SITES, SyntheticChestXray


@pytest.fixture(scope="module")
def ds() -> SyntheticChestXray:
    return SyntheticChestXray(n=90, size=64, bias={"markers": 1.0, "border": 1.0}, seed=0)


def test_exported_from_the_data_package():
    assert xb.data.SyntheticChestXray is SyntheticChestXray


def test_images_labels_and_masks_have_the_documented_form(ds):
    assert ds.images.shape == (90, 3, 64, 64) and ds.images.dtype == torch.float32
    assert 0.0 <= float(ds.images.min()) and float(ds.images.max()) <= 1.0
    assert torch.equal(ds.images[:, 0], ds.images[:, 1]) and torch.equal(ds.images[:, 0], ds.images[:, 2])  # grey
    assert ds.class_names == ["normal", "pneumonia", "covid"]
    assert torch.bincount(ds.labels).tolist() == [30, 30, 30]
    assert set(ds.masks) == {"markers", "border", "lungs", "disease"}
    for m in ds.masks.values():
        assert m.shape == (90, 64, 64) and m.dtype == torch.bool
    img, label = ds[3]
    assert torch.equal(img, ds.images[3]) and int(label) == int(ds.labels[3])
    assert len(ds) == 90


def test_same_seed_same_bytes_other_seed_differs():
    a = SyntheticChestXray(n=12, seed=5, bias={"markers": 0.5})
    b = SyntheticChestXray(n=12, seed=5, bias={"markers": 0.5})
    c = SyntheticChestXray(n=12, seed=6, bias={"markers": 0.5})
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert all(torch.equal(a.masks[k], b.masks[k]) for k in a.masks)
    assert not torch.equal(a.images, c.images)
    assert a.cache_key() == b.cache_key() != c.cache_key()


def test_marker_mask_holds_the_bright_letter_in_the_hospital_corner(ds):
    grey = ds.images[:, 0]
    for i in range(len(ds)):
        m = ds.masks["markers"][i]
        assert 10 <= int(m.sum()) <= 120  # a letter, not a blob
        assert float(grey[i][m].max()) > 0.85
        ys, xs = m.nonzero(as_tuple=True)
        _, corner = MARKER_SITES[int(ds.sites[i])]
        top = corner.startswith("top")
        left = corner.endswith("left")
        assert (ys.float().mean() < 20) == top and (ys.float().mean() > 44) == (not top)
        assert (xs.float().mean() < 20) == left and (xs.float().mean() > 44) == (not left)
    # every bright pixel in the top/bottom corner boxes (inside the border band) is marker
    inner = ~ds.masks["border"]
    bright = (grey > 0.85) & inner
    corners = torch.zeros(64, 64, dtype=torch.bool)
    corners[:16, :16] = corners[:16, 48:] = corners[48:, :16] = corners[48:, 48:] = True
    assert not (bright & corners & ~ds.masks["markers"]).any()


def test_border_mask_is_the_bright_frame_band(ds):
    has = ds.artifacts["border"].to_numpy()
    assert has.any() and not has.all()
    grey = ds.images[:, 0]
    for i in range(len(ds)):
        m = ds.masks["border"][i]
        if has[i]:
            assert m[0].all() and m[-1].all() and m[:, 0].all() and m[:, -1].all()
            assert not m[32, 8:56].any()  # only a band
            assert float(grey[i][m].min()) > 0.85
        else:
            assert not m.any()


def test_lungs_are_dark_and_opacities_bright_within_them(ds):
    grey = ds.images[:, 0]
    lungs, disease = ds.masks["lungs"], ds.masks["disease"]
    for i in range(len(ds)):
        lung_mean = float(grey[i][lungs[i] & ~disease[i]].mean())
        centre = float(grey[i][28:40, 29:35].mean())  # mediastinum
        assert lung_mean < centre - 0.1
        assert not (lungs[i] & ds.masks["markers"][i]).any()
    normal = ds.labels == 0
    assert not disease[normal].any()
    gaps = {1: [], 2: []}
    for i in torch.nonzero(~normal).flatten().tolist():
        d = disease[i]
        assert d.sum() >= 4 and (d & ~lungs[i]).sum() == 0
        gaps[int(ds.labels[i])].append(float(grey[i][d].mean()) - float(grey[i][lungs[i] & ~d].mean()))
        halves = (int(d[:, :32].any()), int(d[:, 32:].any()))
        if int(ds.labels[i]) == 1:  # pneumonia: focal, one lung
            assert sum(halves) == 1
        else:  # covid: bilateral
            assert halves == (1, 1)
    assert min(gaps[1] + gaps[2]) > 0.01  # every opacity is brighter than the rest of its lungs
    assert sum(gaps[1]) / len(gaps[1]) > 0.1  # a focal consolidation: dense
    assert sum(gaps[2]) / len(gaps[2]) > 0.05  # ground glass: fainter


def test_difficulty_one_removes_the_disease_signal():
    easy = SyntheticChestXray(n=30, seed=2, difficulty=0.0)
    hard = SyntheticChestXray(n=30, seed=2, difficulty=1.0)
    sick = easy.labels > 0
    gap_easy = (easy.images - hard.images)[sick].abs().amax((1, 2, 3))
    assert (gap_easy > 0.1).all()  # the only difference is the opacity
    assert torch.equal(easy.images[~sick], hard.images[~sick])


def test_bias_strength_sets_the_marker_and_border_rates():
    full = SyntheticChestXray(n=300, seed=1, bias={"markers": 1.0, "border": 0.8}, border_class=1)
    assert torch.equal(full.sites, full.labels)
    rate = full.artifacts["border"].groupby(full.labels.numpy()).mean()
    assert rate[1] > 0.8 and rate[0] < 0.2 and rate[2] < 0.2  # (1 +- 0.8) / 2 = 0.9 / 0.1
    none = SyntheticChestXray(n=600, seed=1, bias=None)
    match = float((none.sites == none.labels).float().mean())
    assert 0.25 < match < 0.42  # chance is 1/3
    rate = none.artifacts["border"].groupby(none.labels.numpy()).mean()
    assert ((rate > 0.38) & (rate < 0.62)).all()
    part = SyntheticChestXray(n=600, seed=1, bias={"markers": 0.5})
    match = float((part.sites == part.labels).float().mean())
    assert 0.58 < match < 0.75  # 0.5 + 0.5 / 3
    cols = [c for c in part.artifacts.columns if c.startswith("marker_")]
    assert len(cols) == 3 and (part.artifacts[cols].sum(axis=1) == 1).all()


def test_two_classes_subset_and_split():
    two = SyntheticChestXray(n=40, classes=2, seed=3, bias={"markers": 1.0})
    assert two.class_names == ["normal", "pneumonia"] and set(two.sites.tolist()) == {0, 1}
    sub = two.subset([4, 1, 7])
    assert torch.equal(sub.images, two.images[[4, 1, 7]])
    assert torch.equal(sub.masks["markers"], two.masks["markers"][[4, 1, 7]])
    assert sub.cache_key() != two.cache_key() and len(sub.artifacts) == 3
    train, test = two.split(test_fraction=0.25, seed=0)
    assert len(train) == 30 and len(test) == 10
    assert torch.bincount(test.labels).tolist() == [5, 5]
    with pytest.raises(ValueError, match="idx out of range for a dataset of 40 images"):
        two.subset([40])
    with pytest.raises(ValueError, match=r"test_fraction must be a number in \(0,1\)"):
        two.split(test_fraction=1.5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 0}, r"n must be an int >= 1 \(number of images\); got 0"),
        ({"size": 16}, r"size must be an int >= 32 \(image side in pixels\); got 16"),
        ({"classes": 4}, r"classes must be 2 \(normal, pneumonia\) or 3"),
        ({"bias": {"ruler": 0.5}}, r"bias has unknown key\(s\) \['ruler'\]; valid keys are 'markers' and 'border'"),
        ({"bias": {"markers": 1.5}}, r"bias\['markers'\] must be a number in \[0,1\]; got 1.5"),
        ({"bias": 0.5}, "bias must be None or a dict"),
        ({"difficulty": -0.1}, r"difficulty must be a number in \[0,1\]"),
        ({"border_class": 3}, r"border_class must be a class index in \[0, 3\); got 3"),
        ({"seed": -1}, "seed must be an int >= 0"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SyntheticChestXray(**{"n": 6, **kwargs})

