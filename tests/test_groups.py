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
