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
        CAV("relu", method="lda")
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
