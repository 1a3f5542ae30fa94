"""Tests for xaibias.analysis.bias_report."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import xaibias as xb


class Region(nn.Module):
    """Scores 'malignant' by the darkness of a fixed region: the centre or the border of a 32 px image."""

    def __init__(self, where: str) -> None:
        super().__init__()
        m = torch.zeros(32, 32, dtype=torch.bool)
        m[10:22, 10:22] = True
        self.register_buffer("region", m if where == "centre" else ~m)
        self.scale = nn.Parameter(torch.tensor(20.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dark = 1 - (x * self.region).sum((1, 2, 3)) / (3 * self.region.sum())
        z = self.scale * (dark - 0.5)
        return torch.stack([-z, z], dim=1)


@pytest.fixture(scope="module")
def sets():
    bias = {"frame": (0.8, 0.1)}
    same = xb.data.SyntheticLesions(n=48, size=32, bias=bias, seed=11)
    rev = xb.data.SyntheticLesions(n=48, size=32, bias=xb.data.reverse_bias(bias), seed=12)
    return {"same": same, "reversed": rev}


def test_columns_and_ranges_on_a_small_case(sets):
    models = {"a": xb.models.make_model("small_vgg", seed=0), "b": xb.models.make_model("small_vgg", seed=1)}
    rep = xb.analysis.bias_report(models, sets, artifacts="frame", n_explain=6)
    assert list(rep.index) == ["a", "b"] and rep.index.name == "model"
    assert list(rep.columns) == [
        "acc_same", "acc_reversed", "insertion_frame_pp", "insertion_frame_abs_pp", "flip_frame", "saliency_frame", "rma_frame", "area_frame",
    ]
    assert rep[["acc_same", "acc_reversed", "flip_frame", "rma_frame", "area_frame"]].apply(
        lambda s: s.between(0, 1).all()).all()
    assert rep["insertion_frame_pp"].abs().le(100).all()
    assert (rep["insertion_frame_abs_pp"] >= rep["insertion_frame_pp"].abs() - 1e-9).all()
    # the frame is a big artifact: on these images it covers a large share of the pixels
    assert rep["area_frame"].gt(0.2).all()
    assert rep.attrs["artifacts"] == ["frame"] and rep.attrs["test_sets"] == ["same", "reversed"]
    # a single model and a single test set work too, deterministically
    one = xb.analysis.bias_report(models["a"], sets["same"], n_explain=6)
    assert list(one.index) == ["model"]
    assert one.loc["model", "acc_test"] == pytest.approx(rep.loc["a", "acc_same"])
    assert one.loc["model", "insertion_frame_pp"] == pytest.approx(rep.loc["a", "insertion_frame_pp"])


def test_report_separates_a_frame_reader_from_a_lesion_reader(sets):
    # the centre model never sees the frame (the frame darkens only outside a circle of radius >= 0.4
    # of the side), the border model reads nothing else
    models = {"centre": Region("centre"), "border": Region("border")}
    rep = xb.analysis.bias_report(models, sets, artifacts="frame", method="gradient", n_explain=8)
    assert rep.loc["centre", "insertion_frame_pp"] == pytest.approx(0.0, abs=1e-6)
    assert rep.loc["centre", "insertion_frame_abs_pp"] == pytest.approx(0.0, abs=1e-6)
    assert rep.loc["centre", "flip_frame"] == 0.0
    assert rep.loc["centre", "saliency_frame"] == pytest.approx(0.0, abs=1e-9)
    assert rep.loc["border", "insertion_frame_pp"] > 10  # a frame darkens the border: "malignant" rises
    assert rep.loc["border", "saliency_frame"] > 0.5
    assert rep.loc["border", "acc_same"] > rep.loc["border", "acc_reversed"]


def test_per_image_values_are_the_rows_behind_the_means(sets):
    models = {"centre": Region("centre"), "border": Region("border")}
    plain = xb.analysis.bias_report(models, sets, artifacts="frame", method="gradient", n_explain=8)
    rep, per = xb.analysis.bias_report(models, sets, artifacts="frame", method="gradient", n_explain=8,
                                       return_per_image=True)
    # the table itself does not change with the flag
    pd.testing.assert_frame_equal(rep, plain, check_dtype=False, rtol=1e-6, atol=1e-9)
    assert sorted(per) == ["accuracy", "explanation", "insertion"]
    acc, ins, exp = per["accuracy"], per["insertion"], per["explanation"]
    n_same, n_rev = len(sets["same"]), len(sets["reversed"])
    assert len(acc) == 2 * (n_same + n_rev)
    for (name, sname), g in acc.groupby(["model", "set"]):
        assert g["correct"].mean() == pytest.approx(rep.loc[name, f"acc_{sname}"])
        assert (g["label"].to_numpy() == sets[sname].labels.numpy()).all()
    # insertion: only the images of the first set that had no frame, the same images for both models
    no_frame = np.flatnonzero(~sets["same"].artifacts["frame"].to_numpy())
    for name, g in ins.groupby("model"):
        assert (g["index"].to_numpy() == no_frame).all()
        assert g["change_pp"].mean() == pytest.approx(rep.loc[name, "insertion_frame_pp"])
        assert g["change_pp"].abs().mean() == pytest.approx(rep.loc[name, "insertion_frame_abs_pp"])
        assert g["flipped"].mean() == pytest.approx(rep.loc[name, "flip_frame"])
    # a paired difference on the same counterfactuals: the border reader moves every image more
    diff = (ins[ins.model == "border"]["change_pp"].to_numpy() - ins[ins.model == "centre"]["change_pp"].to_numpy())
    assert (diff > 0).all()
    framed = np.flatnonzero(sets["same"].artifacts["frame"].to_numpy())[:8]
    for name, g in exp.groupby("model"):
        assert len(g) == 8 and (g["index"].to_numpy() == framed).all()
        assert g["saliency"].mean() == pytest.approx(rep.loc[name, "saliency_frame"])
        assert g["area"].mean() == pytest.approx(rep.loc[name, "area_frame"])
        assert np.nanmean(g["rma"].to_numpy()) == pytest.approx(rep.loc[name, "rma_frame"], nan_ok=True)
    assert (exp[exp.model == "centre"]["saliency"] == 0).all()


def test_bad_inputs_give_clear_errors(sets):
    model = xb.models.make_model("small_vgg")
    with pytest.raises(ValueError, match="models is empty"):
        xb.analysis.bias_report({}, sets)
    with pytest.raises(ValueError, match="models must be a torch.nn.Module or a dict"):
        xb.analysis.bias_report("small_vgg", sets)
    with pytest.raises(ValueError, match=r"not a module: \['x'\]"):
        xb.analysis.bias_report({"x": 3}, sets)
    with pytest.raises(ValueError, match="test_sets is empty"):
        xb.analysis.bias_report(model, {})
    with pytest.raises(ValueError, match=r"test_sets\['bad'\] must have .images and .labels"):
        xb.analysis.bias_report(model, {"bad": np.zeros(3)})
    with pytest.raises(ValueError, match=r"unknown artifact\(s\) \['scar'\]"):
        xb.analysis.bias_report(model, sets, artifacts="scar")
    with pytest.raises(ValueError, match="insertion_set='clean' is not a key of test_sets"):
        xb.analysis.bias_report(model, sets, insertion_set="clean")
    with pytest.raises(ValueError, match="n_explain must be an int >= 1; got 0"):
        xb.analysis.bias_report(model, sets, n_explain=0)
    with pytest.raises(ValueError, match="no image of the explain set carries 'red_circle'"):
        xb.analysis.bias_report(model, sets, artifacts="red_circle")
    plain = (sets["same"].images, sets["same"].labels)
    with pytest.raises(ValueError, match=r"the explain set has no masks\['frame'\]"):
        xb.analysis.bias_report(model, {"plain": _Plain(*plain)})


class _Plain:
    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels
