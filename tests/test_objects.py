"""Tests for xaibias.data.SyntheticObjects (object- and background-bias sets, Schaaf et al. 2021)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from xaibias.data.objects import FRUIT_BACKGROUNDS, SyntheticObjects


@pytest.fixture(scope="module")
def obj_pair():
    return (SyntheticObjects(300, 64, kind="object", biased=True, seed=3),
            SyntheticObjects(300, 64, kind="object", biased=False, seed=3))


@pytest.fixture(scope="module")
def bg_pair():
    return (SyntheticObjects(200, 48, kind="background", biased=True, seed=4),
            SyntheticObjects(200, 48, kind="background", biased=False, seed=4))


def _check_basic(ds, n, size, n_classes):
    assert ds.images.shape == (n, 3, size, size) and ds.images.dtype == torch.float32
    assert float(ds.images.min()) >= 0 and float(ds.images.max()) <= 1
    assert ds.labels.dtype == torch.long and len(ds) == n
    counts = torch.bincount(ds.labels, minlength=n_classes)
    assert int(counts.max() - counts.min()) <= 1
    for m in ds.masks.values():
        assert m.shape == (n, size, size) and m.dtype == torch.bool
    assert ds.masks["object"].reshape(n, -1).any(1).all(), "every image shows its object"
    img, lab = ds[0]
    assert torch.equal(img, ds.images[0]) and int(lab) == int(ds.labels[0])


def test_object_bias_set(obj_pair):
    biased, unbiased = obj_pair
    for ds in obj_pair:
        _check_basic(ds, 300, 64, 2)
        assert set(ds.masks) == {"object", "ball"}
        ball, obj = ds.masks["ball"], ds.masks["object"]
        has = ball.reshape(len(ds), -1).any(1)
        assert torch.equal(has, torch.tensor(ds.meta["ball"].to_numpy()))
        # never overlapping, not even touching: dilate the ball by one pixel
        grown = F.max_pool2d(ball.float().unsqueeze(1), 3, stride=1, padding=1).squeeze(1) > 0
        assert not (grown & obj).any()
        # a ball is a disc of a fixed radius: same area in every image that has one
        areas = ball.reshape(len(ds), -1).sum(1)[has]
        assert int(areas.min()) == int(areas.max()) > 20
    # biased: every dog has a ball, no cat has one
    assert torch.equal(biased.masks["ball"].reshape(300, -1).any(1), biased.labels == 1)
    assert biased.bias_class == "dog"
    # unbiased: about half of each class, independent of the class
    has_u = unbiased.masks["ball"].reshape(300, -1).any(1)
    for c in (0, 1):
        rate = float(has_u[unbiased.labels == c].float().mean())
        assert 0.35 < rate < 0.65


def test_object_sets_match(obj_pair):
    biased, unbiased = obj_pair
    assert torch.equal(biased.labels, unbiased.labels)
    assert torch.equal(biased.masks["object"], unbiased.masks["object"])
    # pixels outside both balls are identical: only the ball differs
    either = (biased.masks["ball"] | unbiased.masks["ball"]).unsqueeze(1).expand_as(biased.images)
    assert torch.equal(biased.images[~either], unbiased.images[~either])
    assert (biased.images != unbiased.images).any()
    assert (biased.meta["background"] == unbiased.meta["background"]).all()


def test_background_bias_set(bg_pair):
    biased, unbiased = bg_pair
    for ds in bg_pair:
        _check_basic(ds, 200, 48, 5)
        assert set(ds.masks) == {"object", "background"}
        assert torch.equal(ds.masks["background"], ~ds.masks["object"])
        assert ds.class_names == ["apple", "banana", "orange", "pear", "grapes"]
    tree = FRUIT_BACKGROUNDS[0]
    on_tree = biased.meta["background"] == tree
    assert biased.bias_class == "apple"
    assert (on_tree == (biased.meta["class_name"] == "apple")).all(), "apples always and only on trees"
    assert biased.meta.loc[~on_tree, "background"].nunique() == 4
    # unbiased: every class on several backgrounds, and trees for more than just apples
    per_class = unbiased.meta.groupby("class_name")["background"].nunique()
    assert (per_class >= 3).all()
    assert unbiased.meta.loc[unbiased.meta["background"] == tree, "class_name"].nunique() >= 3
    # matching: same labels and fruit, different backgrounds
    assert torch.equal(biased.labels, unbiased.labels)
    assert torch.equal(biased.masks["object"], unbiased.masks["object"])
    obj = biased.masks["object"].unsqueeze(1).expand_as(biased.images)
    assert torch.equal(biased.images[obj], unbiased.images[obj])
    differs = (biased.meta["background"] != unbiased.meta["background"]).to_numpy().copy()
    assert differs.mean() > 0.5
    diff = (biased.images - unbiased.images).abs()[torch.from_numpy(differs)]
    assert float(diff[~obj[torch.from_numpy(differs)]].mean()) > 0.05


def test_deterministic_and_seeded():
    a = SyntheticObjects(40, 32, kind="object", seed=7)
    b = SyntheticObjects(40, 32, kind="object", seed=7)
    c = SyntheticObjects(40, 32, kind="object", seed=8)
    assert torch.equal(a.images, b.images) and torch.equal(a.masks["ball"], b.masks["ball"])
    assert not torch.equal(a.images, c.images)
    assert a.cache_key() == b.cache_key() != c.cache_key()
    assert a.cache_key() != SyntheticObjects(40, 32, kind="object", seed=7, biased=False).cache_key()


def test_subset_and_split(obj_pair):
    biased, unbiased = obj_pair
    sub = biased.subset([5, 1, 2])
    assert torch.equal(sub.images, biased.images[[5, 1, 2]])
    assert torch.equal(sub.masks["ball"], biased.masks["ball"][[5, 1, 2]])
    assert list(sub.meta["label"]) == biased.labels[[5, 1, 2]].tolist()
    assert sub.cache_key() != biased.cache_key()
    tr_b, te_b = biased.split(0.25, seed=0)
    tr_u, te_u = unbiased.split(0.25, seed=0)
    assert len(te_b) + len(tr_b) == 300 and abs(len(te_b) - 75) <= 2
    assert torch.equal(te_b.masks["object"], te_u.masks["object"]), "matching sets split into matching halves"
    assert isinstance(tr_b, SyntheticObjects)
    boolsub = biased.subset(biased.labels == 0)
    assert (boolsub.labels == 0).all() and len(boolsub) == 150


def test_bad_inputs():
    with pytest.raises(ValueError, match="kind must be 'object' or 'background'; got 'scene'"):
        SyntheticObjects(10, 32, kind="scene")
    with pytest.raises(ValueError, match="n must be an int >= 1; got 0"):
        SyntheticObjects(0)
    with pytest.raises(ValueError, match="size must be an int >= 32; got 16"):
        SyntheticObjects(10, 16)
    with pytest.raises(ValueError, match="seed must be an int >= 0; got -1"):
        SyntheticObjects(10, 32, seed=-1)
    with pytest.raises(ValueError, match="biased must be True or False; got 'yes'"):
        SyntheticObjects(10, 32, biased="yes")
    ds = SyntheticObjects(10, 32)
    with pytest.raises(ValueError, match="idx out of range for a dataset of 10 images"):
        ds.subset([12])
    with pytest.raises(ValueError, match=r"a bool idx must have shape \(10,\)"):
        ds.subset(np.ones(3, bool))
    with pytest.raises(ValueError, match=r"test_fraction must be a number in \(0,1\)"):
        ds.split(1.5)
