"""Competitive gradient x input (Gupta & Arora 2019) against its closed form on linear models."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import xaibias as xb
from xaibias.explain.competitive import class_contributions, competitive_completeness

C, H, W, K = 3, 4, 5, 4


def _linear_model(seed: int = 0, bias: bool = True) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(C * H * W, K, bias=bias))
    with torch.no_grad():
        model[1].weight.normal_()
        if bias:
            model[1].bias.normal_()
    return model.eval().double()


def _cgxi(model: nn.Module, x: torch.Tensor, **options) -> torch.Tensor:
    """attribute(method="competitive_gxi") without channel pooling (it runs in float32)."""
    return xb.explain.attribute(copy.deepcopy(model).float(), x.float(), method="competitive_gxi", pool=None,
                                **options)


def _images(n: int = 6, seed: int = 1) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).random((n, C, H, W)))


def _closed_form(model: nn.Module, x: torch.Tensor, t: np.ndarray, sign: str, per_pixel: bool) -> np.ndarray:
    """Numpy closed form for logit = W x + b: c[k] = x * W[k]; keep c[t] where t wins."""
    Wt = model[1].weight.detach().numpy().reshape(K, C, H, W)
    xn = x.numpy()
    c = xn[:, None] * Wt[None]  # (N,K,C,H,W)
    if per_pixel:
        c = c.sum(axis=2)
    out = np.zeros((len(xn),) + c.shape[2:])
    for i, ti in enumerate(t):
        ct = c[i, ti]
        keep = (ct > 0) & (ct >= c[i].max(axis=0))
        if sign == "both":
            keep |= (ct < 0) & (ct <= c[i].min(axis=0))
        out[i] = np.where(keep, ct, 0.0)
    return out


@pytest.mark.parametrize("sign", ["both", "positive"])
@pytest.mark.parametrize("per_pixel", [False, True])
def test_linear_model_equals_closed_form(sign, per_pixel):
    model = _linear_model()
    x = _images()
    t = np.array([0, 1, 2, 3, 1, 0])
    got = _cgxi(model, x, target=torch.tensor(t), sign=sign, per_pixel=per_pixel)
    want = _closed_form(model, x, t, sign, per_pixel)
    assert got.shape == want.shape
    assert np.allclose(got.numpy(), want, atol=1e-5)
    # the competition really removes something and keeps something
    assert (got != 0).any() and (got == 0).any()


def test_attribute_method_registered_and_pooled_over_channels():
    assert "competitive_gxi" in xb.explain.METHODS
    model = _linear_model().float()
    x = _images().float()
    t = np.array([3, 2, 1, 0, 0, 1])
    R = xb.explain.attribute(model, x, target=torch.tensor(t), method="competitive_gxi", sign="positive")
    want = _closed_form(model.double(), x.double(), t, "positive", False).sum(axis=1)
    assert R.shape == (6, H, W)
    assert np.allclose(R.numpy(), want, atol=1e-5)
    assert (R >= 0).all()  # only positive evidence survives with sign="positive"


def test_predicted_class_is_default_target():
    model = _linear_model()
    x = _images()
    pred = model(x).argmax(1)
    a = _cgxi(model, x)
    b = _cgxi(model, x, target=pred)
    assert torch.equal(a, b)


def test_contributions_are_gradient_times_input_of_every_class():
    model = _linear_model()
    x = _images(2)
    contrib, logits = class_contributions(model, x)
    Wt = model[1].weight.detach().reshape(K, C, H, W)
    assert torch.allclose(contrib, x[:, None] * Wt[None])
    assert torch.allclose(logits, model(x))


def test_completeness_exact_for_linear_and_bias_free_relu_nets():
    lin = competitive_completeness(_linear_model(), _images())
    # sum of gradient x input = logit(x) - logit(0) (= W x) for a linear model
    assert np.allclose(lin["completeness_gap"], 0, atol=1e-9)
    # positive competitive maps of all classes partition the per-feature winning evidence
    assert np.allclose(lin["partition_gap"], 0, atol=1e-9)
    assert ((lin["kept_share"] > 0) & (lin["kept_share"] <= 1 + 1e-12)).all()
    assert (lin["kept_share"] < 1).any()  # competition drops features other classes win
    # a bias-free ReLU network is positively homogeneous: Euler's theorem makes gxi complete
    torch.manual_seed(0)
    relu = nn.Sequential(nn.Flatten(), nn.Linear(C * H * W, 16, bias=False), nn.ReLU(),
                         nn.Linear(16, K, bias=False)).double().eval()
    df = competitive_completeness(relu, _images())
    assert np.allclose(df["completeness_gap"], 0, atol=1e-9)
    # with biases the identity breaks: the check must be able to fail
    torch.manual_seed(0)
    biased = nn.Sequential(nn.Flatten(), nn.Linear(C * H * W, 16), nn.ReLU(), nn.Linear(16, K)).double().eval()
    with torch.no_grad():
        biased[1].bias.fill_(0.3)
    assert not np.allclose(competitive_completeness(biased, _images())["completeness_gap"], 0, atol=1e-6)


def test_bad_inputs():
    model = _linear_model()
    with pytest.raises(ValueError, match="sign must be one of"):
        _cgxi(model, _images(), sign="negative")
    with pytest.raises(ValueError, match=r"images must be \(N,3,H,W\)"):
        _cgxi(model, torch.zeros(2, 5, H, W))
    with pytest.raises(ValueError, match="target class out of range"):
        _cgxi(model, _images(), target=K)
