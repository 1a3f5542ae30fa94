"""ClArC corrections and DFR: what each changes, checked on models whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import xaibias as xb
from xaibias.mitigation.clarc import Projection, add_projection, dfr_last_layer, rrclarc_penalty


class _Tiny(nn.Module):
    """conv0 = identity 1x1 (its output is the image), then a linear read-out of every pixel."""

    def __init__(self, size=4, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv0 = nn.Conv2d(3, 3, 1, bias=False)
        with torch.no_grad():
            self.conv0.weight.copy_(torch.eye(3).reshape(3, 3, 1, 1))
        self.fc = nn.Linear(3 * size * size, 2)

    def forward(self, x):
        return self.fc(self.conv0(x).flatten(1))


V = torch.tensor([1.0, 1.0, 0.0]) / 2**0.5
Z = torch.tensor([0.5, 0.5, 0.5])


def test_projection_formula_by_hand():
    p = Projection(V.numpy(), Z.numpy())
    a = torch.tensor([[0.9, 0.1, 0.3]])
    # a - v v.(a - z): v.(a - z) = (0.4 - 0.4) / sqrt2 = 0 -> unchanged
    torch.testing.assert_close(p(a), a)
    b = torch.tensor([[0.9, 0.7, 0.3]])  # v.(b - z) = 0.6/sqrt2 -> subtract 0.3 from channels 0 and 1
    torch.testing.assert_close(p(b), torch.tensor([[0.6, 0.4, 0.3]]))
    # two directions are removed jointly (orthonormal basis of their span)
    p2 = Projection(np.array([[1.0, 0, 0], [1.0, 1.0, 0]]), Z.numpy())
    torch.testing.assert_close(p2(b), torch.tensor([[0.5, 0.5, 0.3]]))
    with pytest.raises(ValueError, match="linearly dependent"):
        Projection(np.array([[1.0, 1, 0], [2.0, 2, 0]]), Z.numpy())


def test_pclarc_keeps_orthogonal_images_and_removes_planted_direction():
    model = _Tiny()
    corrected = add_projection(model, "conv0", V.numpy(), Z.numpy())
    g = torch.Generator().manual_seed(0)
    t = 0.3 * torch.rand(5, 1, 4, 4, generator=g)
    # images without a component along v relative to z at any pixel: (0.5 + t, 0.5 - t, anything)
    x = torch.cat([0.5 + t, 0.5 - t, torch.rand(5, 1, 4, 4, generator=g)], 1)
    with torch.no_grad():
        torch.testing.assert_close(corrected(x), model(x))
        # adding the planted direction moves the original model's logits but not the corrected one's
        shifted = x + 0.15 * V.reshape(1, 3, 1, 1)
        assert (model(shifted) - model(x)).abs().max() > 1e-2
        torch.testing.assert_close(corrected(shifted), corrected(x))
    # the original is untouched and the module names are unchanged (plus the projection)
    assert not hasattr(model, "pclarc") and "conv0" in dict(corrected.named_modules())
    with pytest.raises(ValueError, match="unknown layer 'features.1'"):
        add_projection(model, "features.1", V.numpy(), Z.numpy())


def test_rrclarc_penalty_by_hand():
    model = _Tiny()
    x = torch.rand(3, 3, 4, 4)
    basis = V.reshape(3, 1)
    pen = rrclarc_penalty(model, x, "conv0", basis, create_graph=False)
    # the logits are linear in the activations: d logit_c / d a[:, h, w] = W_c reshaped (3, 4, 4)
    w = model.fc.weight.detach().reshape(2, 3, 4, 4)
    by_hand = (torch.einsum("kchw,c->khw", w, V) ** 2).sum()  # same for every image; mean over batch
    torch.testing.assert_close(pen, by_hand)
    y = torch.tensor([1, 1, 1])
    one = rrclarc_penalty(model, x, "conv0", basis, y=y, grad_of="target_logit", create_graph=False)
    torch.testing.assert_close(one, (torch.einsum("chw,c->hw", w[1], V) ** 2).sum())
    with torch.no_grad():  # read-out orthogonal to v (green weight = - red weight at every pixel): no penalty
        w3 = model.fc.weight.view(2, 3, 16)
        w3[:, 1] = -w3[:, 0]
    assert float(rrclarc_penalty(model, x, "conv0", basis, create_graph=False)) < 1e-10


def _spurious_data(n=600, seed=0):
    """Red = the class (noisy), green = a spurious flag that agrees with the class on 90 %."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    flag = np.where(rng.random(n) < 0.9, y, 1 - y).astype(bool)
    x = np.full((n, 3, 4, 4), 0.3, np.float32)
    x[:, 0] += (0.2 * y + 0.08 * rng.standard_normal(n))[:, None, None]
    x[:, 1] += 0.4 * flag[:, None, None]
    return torch.from_numpy(np.clip(x, 0, 1)), y, flag


class _Pooled(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 2, 1), nn.BatchNorm2d(2), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.head = nn.Linear(2, 2)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


def test_dfr_changes_only_last_layer_and_drops_the_shortcut():
    model = _Pooled().eval()
    with torch.no_grad():  # channel 0 reads red (core), channel 1 green (spurious); head uses green only
        model.features[0].weight.zero_()
        model.features[0].weight[0, 0] = 1.0
        model.features[0].weight[1, 1] = 1.0
        model.features[0].bias.zero_()
        model.head.weight.copy_(torch.tensor([[0.0, -5.0], [0.0, 5.0]]))
        model.head.bias.copy_(torch.tensor([2.5, -2.5]))
    x, y, flag = _spurious_data()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fixed = dfr_last_layer(model, x, y, flag, C=1.0, n_subsets=5, seed=0)
    after = fixed.state_dict()
    for k, v in before.items():
        if k.startswith("head."):
            assert not torch.equal(after[k], v), k
        else:
            assert torch.equal(after[k], v), k
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())  # the input model is untouched
    # worst group (flag disagrees with the class) before vs after
    xt, yt, ft = _spurious_data(seed=1)

    def worst(m):
        pred = xb.models.predict(m, xt).numpy()
        return xb.analysis.group_accuracy(yt, pred, ft).attrs["worst"]

    assert worst(model) < 0.05  # the shortcut model gets every disagreeing image wrong
    assert worst(fixed) > 0.75  # red alone separates the classes with ~89 % accuracy
    w = fixed.head.weight.detach()
    assert (w[1, 0] - w[0, 0]).abs() > 3 * (w[1, 1] - w[0, 1]).abs()  # weight moved to the core feature


@pytest.fixture(scope="module")
def lesions():
    return xb.data.SyntheticLesions(n=160, size=32, bias={"frame": (0.8, 0.1), "ruler": (0.6, 0.3)}, seed=3)


@pytest.mark.parametrize("method", ["pclarc", "aclarc", "rrclarc", "dfr"])
def test_fit_or_load_correction_corrections(lesions, method):
    kw = {"epochs": 1, "seed": 0, "progress": False}
    base = xb.mitigation.fit_or_load_correction("small_vgg", lesions, None, **kw)
    opts = {"artifacts": ["frame", "ruler"]}
    if method in ("aclarc", "rrclarc"):
        opts.update(finetune_epochs=1, layer="features.13")
    m1 = xb.mitigation.fit_or_load_correction("small_vgg", lesions, method, opts, **kw)
    assert m1.xaibias_correction["method"] == method
    b, s = base.state_dict(), m1.state_dict()
    changed = {k for k in b if not torch.equal(b[k], s[k])}
    if method == "pclarc":
        assert changed == set() and {"pclarc.basis", "pclarc.reference"} <= set(s)
    elif method == "dfr":
        assert changed == {"classifier.4.weight", "classifier.4.bias"}
    else:  # fine-tuned above the CAV layer only (batch-norm counters aside)
        assert changed and all(k.startswith(("features.14", "features.15", "classifier")) or
                               k.endswith("num_batches_tracked") for k in changed)
    m2 = xb.mitigation.fit_or_load_correction("small_vgg", lesions, method, opts, **kw)  # from the cache (or rebuilt)
    assert all(torch.equal(v, m2.state_dict()[k]) for k, v in s.items())


def test_correction_errors(lesions):
    with pytest.raises(TypeError, match=r"correction 'rrclarc' does not take the option 'lamda' \(did you mean 'lam'\?\)"):
        xb.mitigation.fit_or_load_correction("small_vgg", lesions, "rrclarc", {"lamda": 1.0}, epochs=1)
    with pytest.raises(ValueError, match="has no prepare step"):
        xb.mitigation.prepare("dfr", lesions)
    with pytest.raises(ValueError, match=r"artifacts must be distinct names from \['frame'"):
        xb.mitigation.fit_or_load_correction("small_vgg", lesions, "dfr", {"artifacts": ["dark_corner"]}, epochs=1)
    data = lesions.images, lesions.labels  # trains, but a correction needs the artifact flags
    with pytest.raises(ValueError, match="needs a dataset with .images, .labels and .artifacts; got tuple"):
        xb.mitigation.fit_or_load_correction("small_vgg", data, "pclarc", {}, epochs=1, progress=False)
