"""lesion_sets: the held-out sets of a training seed at their named seed offsets."""

import pytest
import torch

import xaibias as xb
from xaibias.data import lesion_sets
from xaibias.data.lesion_sets import (
    CLEAN_SEED_OFFSET,
    GROUPS_SEED_OFFSET,
    REVERSED_SEED_OFFSET,
    SAME_SEED_OFFSET,
    SET_SEED_OFFSETS,
    VAL_SEED_OFFSET,
)

BIAS = {"frame": (0.8, 0.1), "ruler": (0.6, 0.3)}


def test_each_set_is_drawn_at_its_named_offset():
    assert SET_SEED_OFFSETS == {"val": VAL_SEED_OFFSET, "same": SAME_SEED_OFFSET, "groups": GROUPS_SEED_OFFSET,
                                "clean": CLEAN_SEED_OFFSET, "reversed": REVERSED_SEED_OFFSET}
    assert len(set(SET_SEED_OFFSETS.values())) == len(SET_SEED_OFFSETS)   # no two sets share images
    sizes = {"reversed": 6, "val": 5, "same": 7, "groups": 8, "clean": 9}
    sets = lesion_sets(BIAS, 3, sizes, size=32, difficulty=0.3)
    assert list(sets) == list(sizes)                                       # the order asked for
    expected = {"val": BIAS, "same": BIAS, "groups": {"frame": (0.5, 0.5), "ruler": (0.5, 0.5)}, "clean": None,
                "reversed": xb.data.reverse_bias(BIAS)}
    for name, ds in sets.items():
        assert len(ds) == sizes[name]
        again = xb.data.SyntheticLesions(n=sizes[name], size=32, bias=expected[name], difficulty=0.3,
                                         seed=3 + SET_SEED_OFFSETS[name])
        assert torch.equal(ds.images, again.images), name
        assert torch.equal(ds.labels, again.labels), name


def test_clean_has_no_artifact_and_reversed_swaps_the_rates():
    sets = lesion_sets(BIAS, 0, {"clean": 200, "reversed": 400}, size=32)
    assert not sets["clean"].artifacts.to_numpy().any()
    rev = sets["reversed"]
    y = rev.labels.numpy()
    frame = rev.artifacts["frame"].to_numpy()
    assert frame[y == 0].mean() > frame[y == 1].mean() + 0.4             # the frame now goes with benign


def test_bad_names_and_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="'test'.*choose from val, same, groups, clean, reversed"):
        lesion_sets(BIAS, 0, {"test": 5}, size=32)
    with pytest.raises(ValueError, match="non-empty dict"):
        lesion_sets(BIAS, 0, {}, size=32)
    with pytest.raises(ValueError, match="bias must be a dict"):
        lesion_sets("isic2018", 0, {"same": 5}, size=32)


def test_clean_without_removes_only_the_named_artifacts():
    sets = lesion_sets(BIAS, 2, {"clean": 600, "same": 10}, clean_without=["frame"], size=32)
    clean = sets["clean"]
    assert not clean.artifacts["frame"].to_numpy().any()
    y = clean.labels.numpy()
    ruler = clean.artifacts["ruler"].to_numpy()
    # the ruler keeps its training rates, 0.6 on malignant and 0.3 on benign (binomial bands, n ~ 300 each)
    assert 0.5 < ruler[y == 1].mean() < 0.7
    assert 0.2 < ruler[y == 0].mean() < 0.4
    # a string is one artifact, not a sequence of letters; the other sets do not change
    again = lesion_sets(BIAS, 2, {"clean": 600, "same": 10}, clean_without="frame", size=32)
    assert torch.equal(again["clean"].images, clean.images)
    plain = lesion_sets(BIAS, 2, {"same": 10}, size=32)
    assert torch.equal(plain["same"].images, sets["same"].images)


def test_clean_without_errors_name_the_problem():
    with pytest.raises(ValueError, match="clean_without must name artifacts of bias.*'hair'"):
        lesion_sets(BIAS, 0, {"clean": 5}, clean_without=["hair"], size=32)
    with pytest.raises(ValueError, match="clean_without must name"):
        lesion_sets(BIAS, 0, {"clean": 5}, clean_without=[], size=32)
    with pytest.raises(ValueError, match="'clean' set only.*asks for same, reversed"):
        lesion_sets(BIAS, 0, {"same": 5, "reversed": 5}, clean_without=["frame"], size=32)
