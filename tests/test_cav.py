"""Concept activation vectors: planted directions recovered, scores, localisation, TCAV, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from xaibias.analysis import CAV


def _planted(n=400, c=16, shift=3.0, seed=0):
    rng = np.random.default_rng(seed)
    v = rng.standard_normal(c)
    v /= np.linalg.norm(v)
    flags = rng.random(n) < 0.4
    acts = rng.standard_normal((n, c)) + shift * flags[:, None] * v
    return acts, flags, v


@pytest.mark.parametrize("method", ["signal", "svm", "ridge"])
def test_planted_direction_recovered(method):
    acts, flags, v = _planted()
    cav = CAV(None, method=method).fit_activations(acts, flags)
    assert float(cav.direction_ @ v) > 0.95  # cosine: direction_ is a unit vector
    assert np.isclose(np.linalg.norm(cav.direction_), 1.0)
    assert cav.auroc_ > 0.97  # held-out AUROC; d' = 3 gives 0.983 in theory
    # the held-out AUROC is not the in-sample one: a random direction on noise stays near 0.5
    rng = np.random.default_rng(1)
    null = CAV(None, method=method).fit_activations(rng.standard_normal((400, 16)), rng.random(400) < 0.4)
    assert 0.35 < null.auroc_ < 0.65
    np.testing.assert_allclose(cav.mean_concept_, acts[flags].mean(0))
    np.testing.assert_allclose(cav.score_activations(acts), acts @ cav.direction_)


def test_cross_validated_scores_and_average_precision():
    from sklearn.metrics import average_precision_score, roc_auc_score

    acts, flags, v = _planted(shift=1.5)
    cav = CAV(None, method="ridge", cv=4).fit_activations(acts, flags)
    # auroc_ and ap_ are computed from the out-of-fold scores, which differ from in-sample scores
    assert cav.cv_scores_.shape == (len(flags),) and np.isfinite(cav.cv_scores_).all()
    assert cav.auroc_ == pytest.approx(roc_auc_score(flags, cav.cv_scores_))
    assert cav.ap_ == pytest.approx(average_precision_score(flags, cav.cv_scores_))
    assert not np.allclose(cav.cv_scores_, acts @ cav.direction_)
    assert cav.ap_ > flags.mean() + 0.3  # chance AP is the prevalence (0.4 here)
    # with groups the scores are those of the centred activations: a group offset does not leak in
    g = np.arange(len(flags)) % 2
    shifted = acts + 10.0 * g[:, None]
    within = CAV(None, method="ridge", cv=4).fit_activations(shifted, flags, groups=g)
    assert within.auroc_ > 0.8
    one = CAV(None).fit_activations(acts[:20], np.r_[True, np.zeros(19, bool)])
    assert np.isnan(one.ap_) and np.isnan(one.cv_scores_).all()


def test_signal_is_pattern_not_filter():
    # a distractor channel shared by both groups: the SVM filter uses channel 1 to cancel it, the
    # signal (pattern) direction does not, because the concept never moves channel 1
    rng = np.random.default_rng(0)
    n = 2000
    flags = rng.random(n) < 0.5
    d = rng.standard_normal(n) * 3
    d[flags] -= d[flags].mean()  # the distractor has the same mean with and without the concept
    d[~flags] -= d[~flags].mean()
    acts = np.stack([flags * 1.0 + d + 0.1 * rng.standard_normal(n), d], 1)
    sig = CAV(None, method="signal").fit_activations(acts, flags).direction_
    svm = CAV(None, method="svm").fit_activations(acts, flags).direction_
    assert abs(sig[1]) < 0.1 and sig[0] > 0.99
    assert svm[1] < -0.5  # the filter subtracts the distractor


class _RedModel(nn.Module):
    """conv0 copies the input (identity 1x1), relu, then the class-1 logit is the mean red value."""

    def __init__(self):
        super().__init__()
        self.conv0 = nn.Conv2d(3, 3, 1, bias=False)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(3, 2, bias=False)
        with torch.no_grad():
            self.conv0.weight.copy_(torch.eye(3).reshape(3, 3, 1, 1))
            self.fc.weight.copy_(torch.tensor([[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]))

    def forward(self, x):
        return self.fc(self.pool(self.relu(self.conv0(x))).flatten(1))


def _red_images(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = 0.2 + 0.1 * torch.rand(n, 3, 8, 8, generator=g)
    flags = torch.arange(n) % 2 == 0
    x[flags, 0, 2:5, 2:5] = 0.9  # a red square on every other image
    return x, flags.numpy()


def test_fit_on_model_localize_and_tcav():
    model = _RedModel()
    x, flags = _red_images()
    cav = CAV("relu", method="signal").fit(model, x, flags)
    assert cav.direction_[0] > 0.95 and cav.auroc_ == 1.0
    s = cav.score(model, x)
    assert s[flags].min() > s[~flags].max()
    np.testing.assert_allclose(s, (x.mean((2, 3)).numpy().astype(np.float64) @ cav.direction_), rtol=1e-5)
    r = cav.localize(model, x[:4])
    assert r.shape == (4, 8, 8)
    # conservation: the map sums to the relevance put in at the layer, sum over positions of a . v
    np.testing.assert_allclose(r.sum((1, 2)).numpy(), s[:4] * 64, rtol=1e-3)
    # the identity conv is the first layer (flat rule): each pixel keeps exactly its own a . v
    expected = torch.einsum("nchw,c->nhw", x[:4].double(), torch.as_tensor(cav.direction_))
    np.testing.assert_allclose(r.numpy(), expected.numpy(), rtol=1e-4, atol=1e-6)
    assert r[0, 2:5, 2:5].mean() > 2.5 * r[0].mean()  # the red square stands out
    assert cav.tcav(model, x, target=1) == 1.0  # red raises the class-1 logit on every image
    assert cav.tcav(model, x, target=0) == 0.0
    dd = cav.directional_derivatives(model, x[:3], target=1)
    np.testing.assert_allclose(dd, np.full(3, cav.direction_[0]), rtol=1e-5)  # d mean(red) / d eps = v_0


def test_bad_inputs():
    acts, flags, _ = _planted(n=50)
    with pytest.raises(ValueError, match="all False"):
        CAV(None).fit_activations(acts, np.zeros(50, bool))
    with pytest.raises(ValueError, match="all True"):
        CAV(None).fit_activations(acts, np.ones(50, bool))
    bad = acts.copy()
    bad[7, 3] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinite values in row\(s\) \[7\]"):
        CAV(None).fit_activations(bad, flags)
    with pytest.raises(ValueError, match="mismatched lengths: 50 activation rows / images but 49 flags"):
        CAV(None).fit_activations(acts, flags[:49])
    with pytest.raises(ValueError, match="method must be one of"):
        CAV("relu", method="lda").fit_activations(acts, flags)
    with pytest.raises(RuntimeError, match="not fitted"):
        CAV("relu").score_activations(acts)
    model = _RedModel()
    x, fl = _red_images(n=6)
    with pytest.raises(ValueError, match=r"unknown layer 'features.3'.*valid names include 'conv0', 'relu'"):
        CAV("features.3").fit(model, x, fl)
    with pytest.raises(ValueError, match="mismatched lengths: 6 activation rows / images but 5 flags"):
        CAV("relu").fit(model, x, fl[:5])
    cav = CAV(None).fit_activations(acts, flags)
    with pytest.raises(ValueError, match="layer=None"):
        cav.score(model, x)


def test_groups_remove_the_class_from_a_correlated_concept():
    # the class moves channel 0, the concept channel 1; the concept comes with class 1 in 90 % of images
    rng = np.random.default_rng(0)
    n = 2000
    y = rng.integers(0, 2, n)
    flags = np.where(rng.random(n) < 0.9, y, 1 - y).astype(bool)
    acts = rng.standard_normal((n, 3)) * 0.3
    acts[:, 0] += 2.0 * y
    acts[:, 1] += 1.0 * flags
    plain = CAV(None).fit_activations(acts, flags).direction_
    within = CAV(None).fit_activations(acts, flags, groups=y).direction_
    assert plain[0] > 0.7  # the plain mean difference is mostly the class
    assert within[1] > 0.99 and abs(within[0]) < 0.05
    with pytest.raises(ValueError, match="mismatched lengths: 2000 activation rows but 3 groups"):
        CAV(None).fit_activations(acts, flags, groups=[0, 1, 0])


def test_tcav_counts_a_blind_model_as_half():
    from xaibias.mitigation.clarc import add_projection

    model = _RedModel()
    x, flags = _red_images()
    cav = CAV("relu").fit(model, x, flags)
    blind = add_projection(model, "relu", cav.direction_, cav.mean_clean_)
    np.testing.assert_allclose(cav.directional_derivatives(blind, x, target=1), 0.0, atol=1e-7)
    assert cav.tcav(blind, x, target=1) == 0.5 and cav.tcav(model, x, target=1) == 1.0


def test_tcav_versus_ignores_what_raises_every_logit():
    # both logits grow with the red channel, the malignant one (1) less than the other: red raises
    # logit 1 on every image (plain TCAV 1) but favours class 0 (TCAV of the log-odds 0)
    model = _RedModel()
    with torch.no_grad():
        model.fc.weight.copy_(torch.tensor([[2.0, 0.0, 0.0], [1.0, 0.0, 0.0]]))
    x, flags = _red_images()
    cav = CAV("relu").fit(model, x, flags)
    assert cav.tcav(model, x, target=1) == 1.0
    assert cav.tcav(model, x, target=1, versus=0) == 0.0
    np.testing.assert_allclose(cav.directional_derivatives(model, x[:3], target=1, versus=0),
                               np.full(3, -cav.direction_[0]), rtol=1e-5)  # d(red - 2 red)/d eps = -v_0
    with pytest.raises(ValueError, match="versus must be a class index"):
        cav.tcav(model, x, target=1, versus=-1)
    with pytest.raises(ValueError, match="versus=2 but the model has 2 outputs"):
        cav.tcav(model, x, target=1, versus=2)


def test_cav_retrieval_table_and_errors():
    import pandas as pd

    from xaibias.analysis import cav_retrieval

    model = _RedModel()
    x, flags = _red_images(n=60)
    noise = np.random.default_rng(0).random(60) < 0.5
    table = cav_retrieval(model, x, {"red": flags, "noise": noise}, layers=["relu"], methods=["signal", "ridge"], cv=3)
    assert list(table.index.names) == ["artifact", "layer", "method"] and len(table) == 4
    assert table.loc[("red", "relu", "signal"), "auroc"] == 1.0
    assert table.loc[("red", "relu", "ridge"), "auroc"] > 0.75  # alpha=1 shrinks a pooled difference of ~0.08
    assert (table.loc["noise", "auroc"] < 0.7).all()  # flags unrelated to the images: near chance
    assert table.loc[("red", "relu", "signal"), "ap_chance"] == pytest.approx(flags.mean())
    # the same number as a CAV fitted by hand with the same folds
    by_hand = CAV("relu", method="ridge", cv=3).fit(model, x, flags)
    assert table.loc[("red", "relu", "ridge"), "ap"] == pytest.approx(by_hand.ap_)
    with pytest.raises(ValueError, match="artifact 'none': flags are all False"):
        cav_retrieval(model, x, pd.DataFrame({"none": np.zeros(60, bool)}), layers=["relu"])
    with pytest.raises(ValueError, match="methods must be a non-empty subset"):
        cav_retrieval(model, x, {"red": flags}, layers=["relu"], methods=["pca"])
    with pytest.raises(ValueError, match="layers must be a non-empty list"):
        cav_retrieval(model, x, {"red": flags}, layers="relu")


def test_cav_retrieval_on_real_isic_photos(isic_sample):
    """Bissoto et al.'s dark-corner and ruler flags on the 120 real photos: a CAV of a small model
    trained on them retrieves both above chance (cross-validated, within class)."""
    import xaibias as xb
    from xaibias.analysis import cav_retrieval

    csv = isic_sample / "isic_bias.csv"
    ds = xb.data.ISICDataset(isic_sample, csv=csv, annotations=csv, size=64, cache=False)
    torch.manual_seed(0)
    model = xb.models.train(xb.models.make_model("small_vgg", 2, seed=0), (ds.images, ds.labels), epochs=10, seed=0,
                            batch_size=16, progress=False)
    table = cav_retrieval(model, ds.images, ds.artifacts[["frame", "ruler"]], layers=["features.13"], groups=ds.labels)
    best = table.groupby("artifact")[["auroc", "ap"]].max()
    chance = table.groupby("artifact")["ap_chance"].first()
    assert chance["frame"] == pytest.approx(51 / 120) and chance["ruler"] == pytest.approx(67 / 120)
    assert (best["auroc"] > 0.6).all(), best
    assert (best["ap"] > chance + 0.05).all(), (best, chance)


def test_tcav_per_image_counts_and_random_concepts():
    from xaibias.analysis.cav import random_concept_cavs

    model = _RedModel()
    x, flags = _red_images()
    cav = CAV("relu").fit(model, x, flags)
    per = cav.tcav(model, x, target=1, per_image=True)
    assert per.shape == (len(x),) and set(np.unique(per)) <= {0.0, 0.5, 1.0} and per.mean() == cav.tcav(model, x, target=1)
    # random concepts: the flags shuffled within each group keep each group's count of flagged images
    acts, fl, _ = _planted(n=200)
    groups = np.arange(200) % 2
    rand = random_concept_cavs(acts, fl, groups=groups, n=3, random_state=1)
    assert len(rand) == 3 and all(r.n_concept_ == fl.sum() for r in rand)
    assert all(0.3 < r.auroc_ < 0.7 for r in rand)   # a shuffled concept is not found
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        random_concept_cavs(acts, fl, n=0)


def test_cav_report_retrieval_and_gates():
    import pandas as pd

    from xaibias.analysis.cav import cav_report

    model = _RedModel()
    x, flags = _red_images()
    noise = (np.arange(len(x)) // 2) % 2 == 0          # half of the red and half of the other images: no concept
    table, fitted = cav_report(model, x, pd.DataFrame({"red": flags, "noise": noise}), x,
                               pd.DataFrame({"red": flags, "noise": noise}), ["relu"], methods=["signal"],
                               train_groups=np.zeros(len(x), int), test_groups=np.zeros(len(x), int))
    assert table.loc[("red", "relu", "signal"), "test AUROC"] == 1.0
    assert table.loc[("red", "relu", "signal"), "gate"] == "valid" and fitted[("red", "relu", "signal")]["gate"]
    assert table.loc[("noise", "relu", "signal"), "gate"] == "FLAGGED"
    assert table.loc[("red", "relu", "signal"), "AP chance"] == pytest.approx(flags.mean())
    # only the listed (layer, method) pairs are gated
    table2, fitted2 = cav_report(model, x, pd.DataFrame({"red": flags}), x, pd.DataFrame({"red": flags}), ["relu"],
                                 methods=["signal", "ridge"], gate=[("relu", "signal")])
    assert table2.loc[("red", "relu", "ridge"), "gate"] == "" and fitted2[("red", "relu", "ridge")]["gate"] is None


def test_cav_is_a_scikit_learn_estimator_get_params_and_clone():
    from sklearn.base import clone

    cav = CAV("relu", method="ridge", random_state=np.int64(3), C=2, alpha=0.5, cv=4, batch_size=16)
    params = cav.get_params()
    assert params == {"layer": "relu", "method": "ridge", "random_state": 3, "C": 2, "alpha": 0.5, "cv": 4,
                      "batch_size": 16}
    assert type(params["random_state"]) is np.int64 and type(params["C"]) is int   # stored unchanged
    twin = clone(cav)
    assert twin is not cav and twin.get_params() == params and not hasattr(twin, "direction_")
    acts, flags, _ = _planted(n=60)
    fitted = cav.fit_activations(acts, flags)
    again = clone(fitted)                                    # clone drops the fitted state
    assert not hasattr(again, "direction_")
    np.testing.assert_array_equal(again.fit_activations(acts, flags).direction_, fitted.direction_)
    assert cav.set_params(method="signal") is cav and cav.method == "signal"


@pytest.mark.parametrize("bad, match", [
    ({"method": "lda"}, "method must be one of"),
    ({"C": 0}, "C must be a positive number"),
    ({"alpha": -1.0}, "alpha must be a positive number"),
    ({"cv": 1}, "cv must be an int >= 2"),
    ({"batch_size": 0}, "batch_size must be an int >= 1"),
    ({"random_state": 1.5}, "random_state must be an int >= 0"),
    ({"layer": ""}, "layer must be a module name"),
])
def test_cav_checks_its_parameters_when_used_not_when_built(bad, match):
    cav = CAV("relu", **{k: v for k, v in bad.items() if k != "layer"}) if "layer" not in bad else CAV(bad["layer"])
    acts, flags, _ = _planted(n=40)
    with pytest.raises(ValueError, match=match):
        cav.fit_activations(acts, flags)
    with pytest.raises(ValueError, match=match):
        cav.activations(_RedModel(), _red_images(n=4)[0])
