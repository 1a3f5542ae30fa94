"""Tests for Score-CAM (xaibias.explain.scorecam), registered as attribute(method="scorecam")."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import xaibias as xb
from xaibias.explain.scorecam import score_cam


def _cnn(seed=0, k=6):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, k, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(k, 3),
    ).eval()


def _naive_score_cam(model, x, target, layer):
    """The paper's recipe, one image and one channel at a time (independent reference)."""
    acts = {}
    handle = layer.register_forward_hook(lambda m, i, o: acts.__setitem__("a", o.detach()))
    out = []
    with torch.no_grad():
        for i in range(len(x)):
            model(x[i : i + 1])
            a = acts["a"][0]
            cam = torch.zeros(x.shape[-2:])
            for k in range(a.shape[0]):
                up = F.interpolate(a[k][None, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
                if a[k].max() == a[k].min():
                    continue
                mask = (up - up.min()) / (up.max() - up.min())
                score = model(x[i : i + 1] * mask).softmax(1)[0, target[i]]
                cam += score * up
            out.append(cam.clamp(min=0))
    handle.remove()
    return torch.stack(out)


def test_equals_naive_loop_and_is_batch_independent():
    model = _cnn()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(5, 3, 16, 16, generator=g)
    target = torch.tensor([0, 1, 2, 0, 1])
    ref = _naive_score_cam(model, x, target, model[2])
    for bs in (1, 7, 256):
        got = score_cam(model, x, target, batch_size=bs)  # default layer: the last Conv2d
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-4)
    assert (ref >= 0).all() and ref.abs().sum() > 0


def test_constant_maps_get_zero_weight():
    # a channel that is dead everywhere (bias -inf after ReLU -> 0) must not change the result
    model = _cnn(k=4)
    with torch.no_grad():
        model[2].bias[0] = -1e4
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([0, 1, 2])
    torch.testing.assert_close(score_cam(model, x, t), _naive_score_cam(model, x, t, model[2]),
                               atol=1e-5, rtol=1e-4)


class _BrightSpot(nn.Module):
    """Class 0 when the brightest spot is bright: the evidence is exactly that spot."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 1)
        with torch.no_grad():
            self.conv.weight.fill_(1 / 3)
            self.conv.bias.zero_()

    def forward(self, x):
        a = F.relu(self.conv(x))
        s = 10 * (F.adaptive_max_pool2d(a, 1).flatten(1) - 0.5)
        return torch.cat([s, -s], dim=1)


def test_localises_the_evidence():
    n, size = 6, 32
    x = torch.zeros(n, 3, size, size)
    masks = torch.zeros(n, size, size, dtype=torch.bool)
    g = torch.Generator().manual_seed(3)
    for i in range(n):
        r, c = torch.randint(2, 24, (2,), generator=g).tolist()
        x[i, :, r : r + 6, c : c + 6] = 1.0
        masks[i, r : r + 6, c : c + 6] = True
    cam = score_cam(_BrightSpot(), x, 0)
    rma = xb.analysis.relevance_mass_accuracy(cam, masks)
    assert (rma > 0.99).all()


def test_registered_with_attribute():
    assert "scorecam" in xb.explain.METHODS
    model = _cnn()
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    r = xb.explain.attribute(model, x, target=1, method="scorecam", batch_size=3, mask_batch_size=5)
    assert r.shape == (4, 16, 16) and r.dtype == torch.float32
    torch.testing.assert_close(r, score_cam(model, x, 1).cpu())
    # channels keeps only the most active maps: all of them reproduces the default, one does not
    k = model[2].out_channels
    torch.testing.assert_close(score_cam(model, x, 1, channels=k), score_cam(model, x, 1))
    assert not torch.allclose(score_cam(model, x, 1, channels=1), score_cam(model, x, 1))


def test_bad_inputs():
    model = _cnn()
    x = torch.rand(2, 3, 16, 16)
    with pytest.raises(ValueError, match="layer 'nope' not found"):
        score_cam(model, x, layer="nope")
    with pytest.raises(ValueError, match=r"layer '6' must output \(B,K,h,w\) activation maps"):
        score_cam(model, x, layer="6")  # the Linear head
    with pytest.raises(ValueError, match="batch_size must be a positive int; got 0"):
        score_cam(model, x, batch_size=0)
    with pytest.raises(ValueError, match="channels must be None or a positive int; got 0"):
        score_cam(model, x, channels=0)
    with pytest.raises(ValueError, match=r"images must have values in \[0,1\]"):
        score_cam(model, x + 2)
