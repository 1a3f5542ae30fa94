"""group_accuracy against a hand count."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xaibias.analysis import group_accuracy


def test_hand_computed_groups():
    labels = [0, 0, 0, 0, 1, 1, 1, 1, 1, 0]
    preds = [0, 1, 0, 1, 1, 1, 0, 1, 0, 0]
    flags = pd.DataFrame({
        "frame": [False, True, False, True, True, True, False, True, False, False],
        "ruler": [False, False, True, True, False, False, False, True, False, False],
    })
    df = group_accuracy(labels, preds, flags)
    # by hand: (class, frame, ruler) -> images, correct
    # (0, F, F): idx 0, 9       -> 2 images, 2 correct
    # (0, F, T): idx 2          -> 1, 1
    # (0, T, F): idx 1          -> 1, 0
    # (0, T, T): idx 3          -> 1, 0
    # (1, F, F): idx 6, 8       -> 2, 0
    # (1, T, F): idx 4, 5       -> 2, 2
    # (1, T, T): idx 7          -> 1, 1
    assert df["pattern"].tolist() == ["none", "ruler", "frame", "frame+ruler", "none", "frame", "frame+ruler"]
    assert df["class"].tolist() == [0, 0, 0, 0, 1, 1, 1]
    assert df["n"].tolist() == [2, 1, 1, 1, 2, 2, 1]
    assert df["correct"].tolist() == [2, 1, 0, 0, 0, 2, 1]
    np.testing.assert_allclose(df["accuracy"], [1, 1, 0, 0, 0, 1, 1])
    # worst: three groups at 0; the first in row order is (0, frame)
    assert df["worst"].tolist() == [False, False, True, False, False, False, False]
    assert df.attrs["worst"] == 0.0 and df.attrs["worst_group"] == "0: frame"
    assert df.attrs["average"] == pytest.approx(6 / 10)
    assert df.attrs["mean_group"] == pytest.approx(4 / 7)
    # groups of one image excluded from the worst: (1, none) with 0/2 is left
    df2 = group_accuracy(labels, preds, flags, min_count=2, class_names=["benign", "malignant"])
    assert df2.attrs["worst_group"] == "malignant: none" and df2.attrs["worst"] == 0.0
    assert df2.attrs["mean_group"] == pytest.approx((1 + 0 + 1) / 3)


def test_array_flags_and_errors():
    df = group_accuracy(np.array([0, 1, 1]), np.array([0, 0, 1]), np.array([True, True, False]))
    assert df["pattern"].tolist() == ["a0", "none", "a0"] and df.attrs["worst"] == 0.0
    with pytest.raises(ValueError, match="mismatched lengths: 3 labels and preds but 2 rows of flags"):
        group_accuracy([0, 1, 1], [0, 0, 1], np.array([True, False]))
    with pytest.raises(ValueError, match="preds has 2 entries but 3 were expected"):
        group_accuracy([0, 1, 1], [0, 0], np.array([True, True, False]))
    with pytest.raises(ValueError, match=r"columns must be bool; \['frame'\] are \['int64'\]"):
        group_accuracy([0, 1], [0, 1], pd.DataFrame({"frame": [0, 1]}))
    with pytest.raises(ValueError, match="no group has at least min_count=5"):
        group_accuracy([0, 1], [0, 1], np.array([True, False]), min_count=5)


def test_group_ids_by_hand():
    from xaibias.analysis.groups import group_ids

    flags = pd.DataFrame({"frame": [False, True, False, True], "ruler": [False, False, True, True]})
    # class * 2**2 + frame * 1 + ruler * 2
    assert group_ids([0, 0, 1, 1], flags).tolist() == [0, 1, 6, 7]
    with pytest.raises(ValueError, match="flags_table must be bool"):
        group_ids([0, 1], np.array([[1, 0], [0, 1]]))


def test_worst_group_gain_by_hand_and_within_blocks():
    from xaibias.analysis.groups import worst_group_gain

    # four groups of 10 images; accuracies a: 1.0, 0.5, 0.8, 0.9 (worst 0.5); b: 0.6, 0.7, 0.2, 0.9 (worst 0.2)
    groups = np.repeat(np.arange(4), 10)

    def correct(rates):
        return np.concatenate([np.arange(10) < round(10 * r) for r in rates]).astype(float)

    a, b = correct([1.0, 0.5, 0.8, 0.9]), correct([0.6, 0.7, 0.2, 0.9])
    v, lo, hi = worst_group_gain(a, b, groups, n_boot=300, seed=1)
    assert v == pytest.approx(0.3) and lo <= v <= hi
    # a tiny fifth group where a is always wrong does not count with min_count=5
    a2, b2, g2 = np.r_[a, 0, 0], np.r_[b, 1, 1], np.r_[groups, 4, 4]
    assert worst_group_gain(a2, b2, g2, min_count=5, n_boot=10)[0] == pytest.approx(0.3)
    assert worst_group_gain(a2, b2, g2, min_count=1, n_boot=10)[0] == pytest.approx(0.0 - 0.2)
    # two blocks (seeds): the gain is the mean of each block's gain; groups of different blocks are not merged
    a3, b3 = correct([1.0, 0.9, 0.8, 0.9]), correct([0.6, 0.7, 0.8, 0.9])   # gain 0.8 - 0.6 = 0.2
    v2, _, _ = worst_group_gain(np.r_[a, a3], np.r_[b, b3], np.r_[groups, groups], blocks=np.repeat([7, 9], 40),
                                n_boot=50)
    assert v2 == pytest.approx((0.3 + 0.2) / 2)
    with pytest.raises(ValueError, match="must have the same length"):
        worst_group_gain(a, b[:-1], groups)
    with pytest.raises(ValueError, match="0/1"):
        worst_group_gain(a * 0.5, b, groups)
    with pytest.raises(ValueError, match="no group has at least min_count=50"):
        worst_group_gain(a, b, groups, min_count=50)
