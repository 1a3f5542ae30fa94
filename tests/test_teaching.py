"""Every exercise check: a right answer passes, a wrong one fails naming the mistake, `...` is not an error."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from xaibias import teaching
from xaibias.analysis import stride_grid
from xaibias.explain import reference as ref

NOT_ANSWERED = "Not answered yet"


def assert_pending(capsys, fn, *args, **kwargs):
    """Ellipsis answers print a note and return None (no error)."""
    assert fn(*args, **kwargs) is None
    assert NOT_ANSWERED in capsys.readouterr().out


def assert_wrong(fn, *args, match: str, **kwargs):
    with pytest.raises(teaching.NotYet, match=match) as err:
        fn(*args, **kwargs)
    assert str(err.value).startswith("Not yet: ")
    assert isinstance(err.value, AssertionError)  # a notebook's nbval run fails on it like on an assert


def assert_right(capsys, fn, *args, **kwargs) -> str:
    assert fn(*args, **kwargs) is None
    out = capsys.readouterr().out
    assert out.startswith("Right: ")
    return out


# --------------------------------------------------------------------------------------------------
# 00

FLAGS = np.array([True, True, False, False, True, False, False, False])
LABELS = np.array([1, 0, 0, 1, 1, 0, 0, 1])
# rule frame -> malignant right on images 0, 2, 4, 5, 6: 5 of 8


def test_rule_accuracy(capsys):
    assert_right(capsys, teaching.check_rule_accuracy, 5 / 8, FLAGS, LABELS)
    assert_wrong(teaching.check_rule_accuracy, 3 / 8, FLAGS, LABELS, match="opposite rule")
    assert_wrong(teaching.check_rule_accuracy, 62.5, FLAGS, LABELS, match="percentage")
    assert_wrong(teaching.check_rule_accuracy, 0.4, FLAGS, LABELS, match="your accuracy is 0.400")
    assert_wrong(teaching.check_rule_accuracy, np.array([0.5, 0.6]), FLAGS, LABELS, match="single number")
    assert_pending(capsys, teaching.check_rule_accuracy, ..., FLAGS, LABELS)
    assert_pending(capsys, teaching.check_rule_accuracy, None, FLAGS, LABELS)


def test_group_accuracy(capsys):
    correct = np.array([1, 0, 1, 1, 0, 1, 1, 1], float)   # framed 0,1,4: 1/3; unframed: 5/5
    assert_right(capsys, teaching.check_group_accuracy, 1 / 3, 1.0, correct, FLAGS)
    assert_wrong(teaching.check_group_accuracy, 1.0, 1 / 3, correct, FLAGS, match="swapped")
    assert_wrong(teaching.check_group_accuracy, 0.75, 1.0, correct, FLAGS, match="over all images")
    assert_wrong(teaching.check_group_accuracy, 33.3, 100.0, correct, FLAGS, match="fractions")
    assert_wrong(teaching.check_group_accuracy, 0.5, 1.0, correct, FLAGS, match="mean of the per-image")
    assert_pending(capsys, teaching.check_group_accuracy, ..., ..., correct, FLAGS)


def test_group_accuracy_words_come_from_an_interval(capsys):
    from xaibias import findings

    flags = np.r_[np.ones(200, bool), np.zeros(200, bool)]
    far = np.r_[np.tile([1.0, 0.0, 0.0, 0.0], 50), np.ones(200)]    # 25 % vs 100 %: clearly apart
    out = assert_right(capsys, teaching.check_group_accuracy, 0.25, 1.0, far, flags)
    assert "framed images lose more" in out and "clearly lower" in out
    near = np.r_[np.tile([1.0, 0.0], 100), np.tile(np.r_[np.ones(11), np.zeros(9)], 10)]  # 50 % vs 55 %, 200 each
    out = assert_right(capsys, teaching.check_group_accuracy, 0.5, 0.55, near, flags)
    assert "not distinguishable" in out and "lose more" not in out
    # a flagged model: the arithmetic is right, the groups are not read
    gate = findings.model_gate("m", (0.5, 0.45, 0.55), quiet=True)
    out = assert_right(capsys, teaching.check_group_accuracy, 0.25, 1.0, far, flags, gate=gate)
    assert "not interpretable" in out and "lose more" not in out


class Threshold(nn.Module):
    """Class 1 when the mean of the red channel is above 0.5: a model whose accuracies are known."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        v = 50 * (x[:, 0].mean((1, 2)) - 0.5)
        return torch.stack([-v, v], 1)


def toy_set(n_right, n_wrong):
    """A set on which Threshold is right on n_right images and wrong on n_wrong (labels alternate)."""
    from types import SimpleNamespace

    n = n_right + n_wrong
    labels = torch.arange(n) % 2
    bright = torch.where(torch.arange(n) < n_right, labels, 1 - labels).float()   # red above 0.5 <=> predicted 1
    images = (0.3 + 0.4 * bright).view(n, 1, 1, 1).expand(n, 3, 4, 4).clone()
    return SimpleNamespace(images=images, labels=labels)


def test_reversed_drop(capsys):
    assert_right(capsys, teaching.check_reversed_drop, 0.31, 0.90, 0.59)
    assert_wrong(teaching.check_reversed_drop, -0.31, 0.90, 0.59, match="other order")
    assert_wrong(teaching.check_reversed_drop, 31.0, 0.90, 0.59, match="percentage points")
    assert_wrong(teaching.check_reversed_drop, 0.05, 0.90, 0.59, match="differ by \\+0.310")
    assert_pending(capsys, teaching.check_reversed_drop, ..., ..., ...)
    # a plain number to compare with gives no verdict word
    out = assert_right(capsys, teaching.check_reversed_drop, 0.1, 0.8, 0.7, compare_to=0.31, prediction="smaller")
    assert "not compared" in out and "prediction held" not in out
    with pytest.raises(ValueError, match="prediction must be"):
        teaching.check_reversed_drop(0.1, 0.8, 0.7, compare_to=(0.31, 0.25, 0.37), prediction="lower")


def test_reversed_drop_compares_intervals_and_gates_the_model(capsys):
    model = Threshold()
    same, reversed_ = toy_set(360, 40), toy_set(280, 120)        # 0.90 and 0.70: drop 0.20
    clean = toy_set(320, 80)                                       # 0.80, clearly above chance
    kw = dict(model=model, same=same, reversed=reversed_, clean=clean)
    # the other model's drop 0.50 +- 0.03: clearly larger than 0.20 (interval about +-0.05)
    out = assert_right(capsys, teaching.check_reversed_drop, 0.2, 0.9, 0.7, compare_to=(0.5, 0.47, 0.53),
                       prediction="smaller", **kw)
    assert "clearly smaller" in out and "Your prediction held" in out
    out = assert_right(capsys, teaching.check_reversed_drop, 0.2, 0.9, 0.7, compare_to=(0.5, 0.47, 0.53),
                       prediction="larger", **kw)
    assert "You predicted 'larger'" in out
    # a drop inside the other's interval: not distinguishable, whatever the point values say
    out = assert_right(capsys, teaching.check_reversed_drop, 0.2, 0.9, 0.7, compare_to=(0.22, 0.17, 0.27),
                       prediction="smaller", **kw)
    assert "not distinguishable" in out and "You predicted 'smaller'" in out
    # accuracies that are not this model's
    assert_wrong(teaching.check_reversed_drop, 0.1, 0.8, 0.7, compare_to=(0.5, 0.47, 0.53), match="acc_same", **kw)
    # a model at chance on the clean set: its drop is not compared
    out = assert_right(capsys, teaching.check_reversed_drop, 0.2, 0.9, 0.7, compare_to=(0.5, 0.47, 0.53),
                       prediction="smaller", model=model, same=same, reversed=reversed_, clean=toy_set(205, 195))
    assert "not interpretable" in out and "prediction held" not in out
    assert_pending(capsys, teaching.check_reversed_drop, 0.2, 0.9, 0.7, model=..., same=..., reversed=...)


# --------------------------------------------------------------------------------------------------
# 01

@pytest.fixture
def toy():
    net = nn.Sequential(nn.Linear(3, 2, bias=False), nn.ReLU(), nn.Linear(2, 2, bias=False)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, -1.0, 0.5], [0.5, 1.0, -1.0]]))
        net[2].weight.copy_(torch.tensor([[1.0, 1.5], [-1.0, 0.5]]))
    return net, torch.tensor([[1.0, 0.5, 2.0]], dtype=torch.float64)


def gamma_by_hand(net, x, gamma):
    """The gamma rule written out (independent of xaibias.explain.reference)."""
    W1, W2 = net[0].weight.detach(), net[2].weight.detach()
    a1 = torch.relu(x @ W1.T)
    out = a1 @ W2.T
    R = torch.tensor([[out[0, 0].item(), 0.0]], dtype=torch.float64)
    G2, G1 = W2 + gamma * W2.clamp(min=0), W1 + gamma * W1.clamp(min=0)
    z = a1 @ G2.T
    R1 = a1 * (torch.where(z != 0, R / z, 0.0) @ G2)
    z = x @ G1.T
    return x * (torch.where(z != 0, R1 / z, 0.0) @ G1)


def test_gamma_rule(capsys, toy):
    net, x = toy
    right = gamma_by_hand(net, x, 0.25)
    assert_right(capsys, teaching.check_gamma_rule, right, net, x, gamma=0.25)
    assert_wrong(teaching.check_gamma_rule, gamma_by_hand(net, x, 0.0), net, x, gamma=0.25, match="LRP-0")
    wrong_split = right.clone()
    wrong_split[0, 0] += 0.1
    wrong_split[0, 1] -= 0.1
    assert_wrong(teaching.check_gamma_rule, wrong_split, net, x, gamma=0.25, match="split over the inputs")
    assert_wrong(teaching.check_gamma_rule, right * 2, net, x, gamma=0.25, match="sums to")
    assert_wrong(teaching.check_gamma_rule, right[0, :2], net, x, gamma=0.25, match="has 2 values")
    assert_pending(capsys, teaching.check_gamma_rule, ..., net, x)


def test_bias_absorbed(capsys, toy):
    net, x = toy
    # by hand: hidden a1 = relu([1-0.5+1, 0.5+0.5-2]) = [1.5, 0]; logit 0 = 1.5*1 + 0*1.5 + 0.5 = 2.0
    # LRP-0 passes a1*w / z = 1.5 / 2.0 of it on: the bias keeps 0.5 / 2.0 = 0.25
    assert_right(capsys, teaching.check_bias_absorbed, 0.25, net, x, bias=(0.5, -0.5))
    assert_wrong(teaching.check_bias_absorbed, 0.75, net, x, bias=(0.5, -0.5), match="keeps")
    assert_wrong(teaching.check_bias_absorbed, -0.25, net, x, bias=(0.5, -0.5), match="sign is flipped")
    assert_wrong(teaching.check_bias_absorbed, 0.0, net, x, bias=(0.5, -0.5), match="bias is missing")
    assert_wrong(teaching.check_bias_absorbed, 0.3, net, x, bias=(0.5, -0.5), match="your share is 0.3000")
    assert_pending(capsys, teaching.check_bias_absorbed, ..., net, x, bias=(0.5, -0.5))


def test_stride2_share(capsys):
    g = torch.Generator().manual_seed(0)
    R = torch.rand(16, 16, generator=g, dtype=torch.float64) + 0.5 * (torch.arange(16) % 2)[None, :]
    right = float(stride_grid.stride2_share(R[None])[0])
    P = torch.fft.fft2(R - R.mean()).abs() ** 2
    assert right == pytest.approx(float((P[0, 8] + P[8, 0] + P[8, 8]) / P.sum()))
    assert_right(capsys, teaching.check_stride2_share, right, R)
    P_raw = torch.fft.fft2(R).abs() ** 2
    assert_wrong(teaching.check_stride2_share, float((P_raw[0, 8] + P_raw[8, 0] + P_raw[8, 8]) / P_raw.sum()), R,
                 match="mean is still in")
    assert_wrong(teaching.check_stride2_share, float(P[8, 8] / P.sum()), R, match="only the \\(H/2, W/2\\)")
    assert_wrong(teaching.check_stride2_share, float(P[0, 8] + P[8, 0] + P[8, 8]), R, match="not its share")
    assert_wrong(teaching.check_stride2_share, right / 2, R, match="your share")
    assert_pending(capsys, teaching.check_stride2_share, ..., R)


# --------------------------------------------------------------------------------------------------
# 02

def test_one_cluster_f1(capsys):
    flags = pd.Series([True] * 3 + [False] * 7)
    assert_right(capsys, teaching.check_one_cluster_f1, 2 * 0.3 / 1.3, flags)
    assert_wrong(teaching.check_one_cluster_f1, 0.3, flags, match="precision")
    assert_wrong(teaching.check_one_cluster_f1, 1.0, flags, match="recall")
    assert_wrong(teaching.check_one_cluster_f1, 0.65, flags, match="arithmetic mean")
    assert_wrong(teaching.check_one_cluster_f1, 0.5, flags, match="your F1 is 0.500")
    assert_pending(capsys, teaching.check_one_cluster_f1, ..., flags)


def test_eigengap(capsys):
    ev = np.array([0.0, 0.01, 0.02, 0.5, 0.55, 0.6, 0.62])   # three eigenvalues near 0, then the jump: k = 3
    assert "largest k searched" not in assert_right(capsys, teaching.check_eigengap, 3, ev)
    # the jump lies at the end of the searched range: right, but read as "at least 3", not as a count
    assert "largest k searched (3)" in assert_right(capsys, teaching.check_eigengap, 3, ev, max_clusters=3)
    assert_wrong(teaching.check_eigengap, 2, ev, match="off by one: eigenvalues are numbered from 0")
    assert_wrong(teaching.check_eigengap, 4, ev, match="off by one: with ev")
    assert_wrong(teaching.check_eigengap, 6, ev, match="not the largest")
    assert_wrong(teaching.check_eigengap, 9, ev, match="outside the range")
    assert_wrong(teaching.check_eigengap, 2.5, ev, match="whole number")
    assert_pending(capsys, teaching.check_eigengap, ..., ev)


def test_image_share(capsys):
    rng = np.random.default_rng(0)
    Fr, Fi = rng.normal(size=(50, 4)), rng.normal(size=(50, 3))
    Fr /= np.sqrt(Fr.var(0).sum())
    Fi /= np.sqrt(Fi.var(0).sum())
    features = np.hstack([Fr, 2.0 * Fi])      # unit total variance each, image part weighted by 2
    out = assert_right(capsys, teaching.check_image_share, 0.8, 2.0, features=features, relevance_dims=4)
    assert "agree: 0.800 of their variance" in out
    assert_wrong(teaching.check_image_share, 2 / 3, 2.0, match="w / \\(1 \\+ w\\)")
    assert_wrong(teaching.check_image_share, 0.2, 2.0, match="heatmap part")
    assert_wrong(teaching.check_image_share, 0.5, 2.0, match="your share is 0.500")
    assert_pending(capsys, teaching.check_image_share, ..., 2.0)


# --------------------------------------------------------------------------------------------------
# 04

def test_balanced_rates(capsys):
    # malignant 0.8 -> 0.9 needs q = 0.1 / 0.2 = 0.5; benign 0.1 -> 0.9 needs q = 0.8 / 0.9
    assert_right(capsys, teaching.check_balanced_rates, 0.5, 8 / 9, rates=(0.8, 0.1), target=0.9)
    assert_wrong(teaching.check_balanced_rates, 8 / 9, 0.5, rates=(0.8, 0.1), target=0.9, match="swapped")
    assert_wrong(teaching.check_balanced_rates, 0.1, 0.8, rates=(0.8, 0.1), target=0.9, match="divide by 1 - r")
    assert_wrong(teaching.check_balanced_rates, 0.5, 0.5, rates=(0.8, 0.1), target=0.9, match="0.550 \\(benign\\)")
    assert_pending(capsys, teaching.check_balanced_rates, ..., ..., rates=(0.8, 0.1), target=0.9)
    with pytest.raises(ValueError, match="target must lie"):
        teaching.check_balanced_rates(0.5, 0.5, rates=(0.8, 0.1), target=0.5)


def test_relevance_mass(capsys):
    R = torch.tensor([[1.0, -1.0], [2.0, 0.5]])
    mask = torch.tensor([[True, True], [False, False]])
    # positive relevance 1 + 2 + 0.5 = 3.5, inside the mask 1
    assert_right(capsys, teaching.check_relevance_mass, 1 / 3.5, R, mask)
    assert_wrong(teaching.check_relevance_mass, 0.0 / 2.5, R, mask, match="signed relevance")
    assert_wrong(teaching.check_relevance_mass, 2 / 4.5, R, mask, match="\\|R\\|")
    assert_wrong(teaching.check_relevance_mass, 0.5, R, mask, match="mask's share of the pixels")
    assert_wrong(teaching.check_relevance_mass, 0.9, R, mask, match="your mass")
    assert_pending(capsys, teaching.check_relevance_mass, ..., R, mask)


class MeanRed(nn.Module):
    """Logits (0, 20 * (mean red - mean of the other channels)): a frame (dark) changes its score."""

    def forward(self, x):
        v = 20 * (x[:, 0].mean((1, 2)) - x[:, 1:].mean((1, 2, 3)))
        return torch.stack([torch.zeros_like(v), v], 1)


def test_insertion_effect(capsys):
    from xaibias.analysis import bias_insertion
    from xaibias.data import SyntheticLesions

    ds = SyntheticLesions(n=12, size=32, seed=0)
    model = MeanRed()
    model.dummy = nn.Parameter(torch.zeros(1))   # a parameter, so device lookups work
    _, per = bias_insertion(model, ds.images, ds.labels, artifacts=("frame",), target_class=1, seed=3,
                            artifact_params={"frame": {"style": "circle"}}, progress=False, return_per_image=True)
    benign = float(per[per.true_class == 0].change_pp.mean())
    every = float(per.change_pp.mean())
    assert abs(benign) > 0.01 and abs(benign - every) > 1e-3
    kw = dict(images=ds.images, labels=ds.labels, seed=3, artifact_params={"style": "circle"})
    assert_right(capsys, teaching.check_insertion_effect, benign, model, compare={"plain": 10.0}, **kw)
    assert_wrong(teaching.check_insertion_effect, -benign, model, match="sign is flipped", **kw)
    assert_wrong(teaching.check_insertion_effect, benign / 100, model, match="percentage points", **kw)
    assert_wrong(teaching.check_insertion_effect, every, model, match="benign ones", **kw)
    assert_wrong(teaching.check_insertion_effect, benign + 5, model, match="your effect", **kw)
    assert_pending(capsys, teaching.check_insertion_effect, ..., ..., **kw)
    # the gate: on a set where the red channel tells the class MeanRed is always right, on one where it is
    # not, at chance; a right number from a model at chance is confirmed, but its effect is not read
    from types import SimpleNamespace

    y = torch.arange(200) % 2
    red = torch.full((200, 3, 4, 4), 0.5)
    red[:, 0] = (0.2 + 0.6 * y.float()).view(200, 1, 1)   # red below the other channels for class 0, above for 1
    learnable = SimpleNamespace(images=red, labels=y)
    out = assert_right(capsys, teaching.check_insertion_effect, benign, model, clean=learnable, **kw)
    assert "passed its gate" in out
    blind = SimpleNamespace(images=torch.full((200, 3, 4, 4), 0.5), labels=y)   # every image the same call
    out = assert_right(capsys, teaching.check_insertion_effect, benign, model, clean=blind, **kw)
    assert "not interpretable" in out and "Beside it" not in out


@pytest.fixture
def conv_net():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 5, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(20, 3)).eval()
    image = torch.rand(3, 12, 12, generator=torch.Generator().manual_seed(3))
    return model, image


def crp_heatmap(model, image, layer, channels, target):
    """zennit-crp's CondAttribution: the route a student takes (the check uses zennit with its own mask)."""
    from crp.attribution import CondAttribution

    from xaibias.explain.attribution import make_composite

    comp = make_composite("EpsilonPlusFlat", "auto", model=model, input_shape=(1, *image.shape))
    cond = {"y": [target]} if channels is None else {"y": [target], layer: list(channels)}
    res = CondAttribution(model)(image[None].clone().requires_grad_(True), [cond], comp)
    return res.heatmap[0].detach()


def test_rest_of_layer(capsys, conv_net):
    model, image = conv_net
    layer, c, target = "2", 1, 2
    rest = crp_heatmap(model, image, layer, [i for i in range(5) if i != c], target)
    own = crp_heatmap(model, image, layer, [c], target)
    plain = crp_heatmap(model, image, layer, None, target)
    # the two conditional heatmaps split the plain one (no shortcut around the layer)
    assert torch.allclose(own + rest, plain, atol=1e-5 * float(plain.abs().max()))
    assert float((own - rest).abs().max()) > 1e-3 * float(plain.abs().max())
    out = assert_right(capsys, teaching.check_rest_of_layer, rest, model, image, layer, c, target)
    assert "plain LRP heatmap" in out
    assert f"sums to {float(own.sum()):.3f} and the plain heatmap to {float(plain.sum()):.3f}" in out
    assert_wrong(teaching.check_rest_of_layer, own, model, image, layer, c, target, match="own heatmap")
    assert_wrong(teaching.check_rest_of_layer, plain, model, image, layer, c, target, match="condition on the layer is missing")
    other = crp_heatmap(model, image, layer, [i for i in range(5) if i != c], 0)
    assert_wrong(teaching.check_rest_of_layer, other, model, image, layer, c, target, match="you explained class 0")
    assert_wrong(teaching.check_rest_of_layer, rest[None].repeat(3, 1, 1) / 3, model, image, layer, c, target,
                 match="3 colour channels")
    assert_wrong(teaching.check_rest_of_layer, rest + 0.1 * float(plain.abs().max()), model, image, layer, c, target,
                 match="differs from the rest-of-layer heatmap")
    assert_pending(capsys, teaching.check_rest_of_layer, ..., model, image, layer, c, target)
    with pytest.raises(ValueError, match="not a module"):
        teaching.check_rest_of_layer(rest, model, image, "nope", c, target)
    with pytest.raises(ValueError, match="concept must be a channel"):
        teaching.check_rest_of_layer(rest, model, image, layer, 9, target)


# --------------------------------------------------------------------------------------------------
# 05

@pytest.fixture
def small_classifier():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                          nn.Linear(16, 2)).eval()
    g = torch.Generator().manual_seed(1)
    image = torch.rand(3, 16, 16, generator=g)
    R = torch.randn(16, 16, generator=g)
    return model, image, R


def test_aopc_one_matches_the_library(small_classifier):
    from xaibias.analysis import aopc

    model, image, R = small_classifier
    lib = float(aopc(model, image[None], R[None], target=[1], steps=16, patch=4, perturbation="black",
                     progress=False)[0])
    assert teaching.aopc_one(model, image, R, 1, 4, "black") == pytest.approx(lib, abs=1e-6)
    with pytest.raises(ValueError, match="must divide"):
        teaching.aopc_one(model, image, R, 1, 5)


def test_aopc(capsys, small_classifier):
    model, image, R = small_classifier
    for rep in ("black", "blur"):
        right = teaching.aopc_one(model, image, R, 1, 4, rep)
        assert_right(capsys, teaching.check_aopc, right, model, image, R, 1, 4, replacement=rep)
        assert_wrong(teaching.check_aopc, teaching.aopc_one(model, image, R, 1, 4, rep, output="logit"), model, image,
                     R, 1, 4, replacement=rep, match="logit")
        assert_wrong(teaching.check_aopc, teaching.aopc_one(model, image, R, 1, 4, rep, include_zero=True), model,
                     image, R, 1, 4, replacement=rep, match="L \\+ 1 steps")
        assert_wrong(teaching.check_aopc, teaching.aopc_one(model, image, R, 1, 4, rep, order="lerf"), model, image,
                     R, 1, 4, replacement=rep, match="least relevant")
        assert_wrong(teaching.check_aopc, right + 0.5, model, image, R, 1, 4, replacement=rep, match="your AOPC")
        assert_pending(capsys, teaching.check_aopc, ..., model, image, R, 1, 4, replacement=rep)
    blurred = teaching.aopc_one(model, image, R, 1, 4, "blur")
    assert blurred != pytest.approx(teaching.aopc_one(model, image, R, 1, 4, "black"))


def test_welch_t(capsys):
    a = np.array([0.5, 0.6, 0.7, 0.65, 0.55])
    b = np.array([0.3, 0.35, 0.5, 0.2, 0.4, 0.45, 0.3])
    va, vb = a.var(ddof=1), b.var(ddof=1)
    right = (a.mean() - b.mean()) / np.sqrt(va / len(a) + vb / len(b))
    assert_right(capsys, teaching.check_welch_t, right, a, b)
    assert_wrong(teaching.check_welch_t, -right, a, b, match="sign is flipped")
    sp = ((len(a) - 1) * va + (len(b) - 1) * vb) / (len(a) + len(b) - 2)
    pooled = (a.mean() - b.mean()) / np.sqrt(sp * (1 / len(a) + 1 / len(b)))
    assert_wrong(teaching.check_welch_t, pooled, a, b, match="pooled")
    ddof0 = (a.mean() - b.mean()) / np.sqrt(a.var() / len(a) + b.var() / len(b))
    assert_wrong(teaching.check_welch_t, ddof0, a, b, match="ddof=0")
    assert_wrong(teaching.check_welch_t, 1.0, a, b, match="your t")
    assert_pending(capsys, teaching.check_welch_t, ..., a, b)


# --------------------------------------------------------------------------------------------------
# 06

def test_resample_size(capsys):
    flags = np.array([True] * 10 + [False] * 10)
    labels = np.array([1] * 8 + [0] * 2 + [1] * 3 + [0] * 7)   # frame: 8 mal / 2 ben; none: 3 / 7
    assert_right(capsys, teaching.check_resample_size, 2 * 2 + 2 * 3, flags, labels)
    assert_wrong(teaching.check_resample_size, 5, flags, labels, match="one class per group")
    assert_wrong(teaching.check_resample_size, 8, flags, labels, match="smallest cell for both")
    assert_wrong(teaching.check_resample_size, 20, flags, labels, match="your count")
    assert_pending(capsys, teaching.check_resample_size, ..., flags, labels)


def test_effect_ratio(capsys):
    assert "keeps 25%" in assert_right(capsys, teaching.check_effect_ratio, 0.25, 5.0, 20.0)
    assert "one point value" in assert_right(capsys, teaching.check_effect_ratio, 0.75, 15.0, 20.0)
    assert_wrong(teaching.check_effect_ratio, 4.0, 5.0, 20.0, match="upside down")
    assert_wrong(teaching.check_effect_ratio, 0.75, 5.0, 20.0, match="share removed")
    assert_wrong(teaching.check_effect_ratio, 25.0, 5.0, 20.0, match="percentage")
    assert_wrong(teaching.check_effect_ratio, 0.3, 5.0, 20.0, match="your ratio")
    assert_pending(capsys, teaching.check_effect_ratio, ..., ..., 20.0)


def test_gap_by_method(capsys):
    report = pd.DataFrame({"method": ["baseline", "rrr", "baseline", "rrr"], "seed": [0, 0, 1, 1],
                           "acc_same": [0.9, 0.8, 0.85, 0.78], "acc_reversed": [0.6, 0.79, 0.65, 0.74]})
    right = pd.Series({"baseline": 0.25, "rrr": 0.025})
    assert_right(capsys, teaching.check_gap_by_method, right, report)
    assert_wrong(teaching.check_gap_by_method, -right, report, match="signs are flipped")
    assert_wrong(teaching.check_gap_by_method, 100 * right, report, match="fractions")
    assert_wrong(teaching.check_gap_by_method, pd.Series({"baseline": 0.3, "rrr": 0.01}), report, match="first seed")
    assert_wrong(teaching.check_gap_by_method, pd.Series({"baseline": 0.25}), report, match="missing")
    assert_wrong(teaching.check_gap_by_method, 0.25, report, match="pandas Series")
    assert_wrong(teaching.check_gap_by_method, pd.Series({"baseline": 0.2, "rrr": 0.0}), report, match="per row")
    assert_pending(capsys, teaching.check_gap_by_method, ..., report)


def _red_sets(n=200):
    """clean / same / reversed sets in which the red channel tells the class and a 'frame' flag follows the tie."""
    from types import SimpleNamespace

    y = torch.arange(n) % 2
    red = torch.full((n, 3, 4, 4), 0.5)
    red[:, 0] = (0.2 + 0.6 * y.float()).view(n, 1, 1)
    frame = {"clean": np.zeros(n, bool), "same": (y.numpy() == 1), "reversed": (y.numpy() == 0)}
    return {k: SimpleNamespace(images=red, labels=y, artifacts=pd.DataFrame({"frame": f})) for k, f in frame.items()}


class _Always(nn.Module):
    def forward(self, x):
        return torch.stack([torch.zeros(len(x)), torch.ones(len(x))], 1)


def test_effect_ratio_grades_only_a_model_that_passes_the_gate(capsys):
    sets = _red_sets()
    out = assert_right(capsys, teaching.check_effect_ratio, 0.25, 5.0, 20.0, model=MeanRed(), tests=sets)
    assert "keeps 25%" in out
    # a model that always says malignant is at chance on the clean set: its ratio is not graded, not even a wrong one
    assert teaching.check_effect_ratio(0.9, 5.0, 20.0, model=_Always(), tests=sets) is None
    assert "Not graded" in capsys.readouterr().out
    assert_pending(capsys, teaching.check_effect_ratio, 0.25, 5.0, 20.0, model=..., tests=sets)
    with pytest.raises(ValueError, match="pass tests="):
        teaching.check_effect_ratio(0.25, 5.0, 20.0, model=MeanRed())


def test_gap_by_method_names_flagged_models(capsys):
    from xaibias.findings import model_gate

    report = pd.DataFrame({"method": ["baseline", "rrr", "baseline", "rrr"], "seed": [0, 0, 1, 1],
                           "acc_same": [0.9, 0.8, 0.85, 0.78], "acc_reversed": [0.6, 0.79, 0.65, 0.74]})
    gates = {"baseline": model_gate("baseline", np.ones(40), quiet=True),
             "rrr": model_gate("rrr", np.r_[np.ones(20), np.zeros(20)], quiet=True)}
    out = assert_right(capsys, teaching.check_gap_by_method, pd.Series({"baseline": 0.25, "rrr": 0.025}), report, gates=gates)
    assert "rrr +0.025" in out and "flagged by the gate" in out and "Smallest" not in out


def test_cav_direction_by_hand(capsys):
    from xaibias.findings import cav_gate

    rng = np.random.default_rng(0)
    n, c = 300, 6
    y = np.arange(n) % 2
    flags = (rng.random(n) < np.where(y == 1, 0.7, 0.2))          # the concept comes mostly with class 1
    acts = rng.normal(0, 0.3, (n, c)) + 2.0 * y[:, None] * np.eye(c)[1] + 1.5 * flags[:, None] * np.eye(c)[3]
    centred = acts.copy()
    for k in (0, 1):
        centred[y == k] -= centred[y == k].mean(0)
    v = centred[flags].mean(0) - centred[~flags].mean(0)
    v /= np.linalg.norm(v)
    assert abs(v[3]) > 0.95                                       # the concept's channel, not the class's
    gate = cav_gate("concept", acts @ v, flags, quiet=True)
    check = teaching.check_cav_direction
    assert "cosine" in assert_right(capsys, check, v, acts, flags, y, gate=gate)
    plain = acts[flags].mean(0) - acts[~flags].mean(0)
    assert_wrong(check, plain / np.linalg.norm(plain), acts, flags, y, match="plain means")
    assert_wrong(check, -v, acts, flags, y, match="sign is flipped")
    assert_wrong(check, 3 * v, acts, flags, y, match="length is 3.000")
    assert_wrong(check, np.ones(c) / np.sqrt(c), acts, flags, y, match="centre each class")
    assert_wrong(check, v[:3], acts, flags, y, match="one number per channel")
    assert_pending(capsys, check, ..., acts, flags, y)
    noise = rng.random(n) < 0.5
    flagged = cav_gate("noise", rng.normal(size=n), noise, quiet=True)
    assert not flagged
    assert check(v, acts, noise, y, gate=flagged) is None and "Not graded" in capsys.readouterr().out




def _red_net(w):
    """Identity 1x1 conv (layer '1' is its ReLU), mean pooling, then logits = w @ (mean r, g, b)."""
    net = nn.Sequential(nn.Conv2d(3, 3, 1, bias=False), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(3, 2, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.eye(3).reshape(3, 3, 1, 1))
        net[4].weight.copy_(torch.tensor(w))
    return net.eval()


def test_tcav_by_hand(capsys):
    from xaibias.analysis import CAV
    from xaibias.findings import cav_gate

    g = torch.Generator().manual_seed(0)
    x = 0.2 + 0.1 * torch.rand(40, 3, 6, 6, generator=g)
    flags = (torch.arange(40) % 2 == 0).numpy()
    x[flags, 0, 1:4, 1:4] = 0.9                                   # a red square: the concept
    favours = _red_net([[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])       # red raises the log-odds of class 1 everywhere
    cav = CAV("1").fit(favours, x, flags)
    gate = cav_gate("red", cav.cv_scores_, flags, quiet=True)
    assert gate
    out = assert_right(capsys, teaching.check_tcav, 1.0, cav, favours, x, gate=gate)
    assert "TCAV 1.000" in out
    assert_wrong(teaching.check_tcav, 0.0, cav, favours, x, match="where the log-odds fall")
    assert_wrong(teaching.check_tcav, 100.0, cav, favours, x, match="percentage")
    assert_wrong(teaching.check_tcav, 0.4, cav, favours, x, match="your score is 0.400")
    # red raises both logits but class 0's more: TCAV of the log-odds 0, of the malignant logit alone 1
    both = _red_net([[2.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    assert_right(capsys, teaching.check_tcav, 0.0, cav, both, x)
    assert_wrong(teaching.check_tcav, 1.0, cav, both, x, match="malignant logit alone")
    assert_pending(capsys, teaching.check_tcav, ..., cav, both, x)
    flagged = cav_gate("noise", np.random.default_rng(0).normal(size=40), flags, quiet=True)
    assert not flagged
    assert teaching.check_tcav(1.0, cav, favours, x, gate=flagged) is None
    assert "Not graded" in capsys.readouterr().out


def test_isolated_rng_restores_every_generator():
    import random

    torch.manual_seed(5)
    np.random.seed(5)
    random.seed(5)
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(5)
    np.random.seed(5)
    random.seed(5)
    with teaching.isolated_rng():
        torch.manual_seed(99)
        torch.rand(10)
        np.random.rand(10)
        random.random()
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1]) and got[2] == expected[2]


def test_reference_lrp_used_by_the_checks_is_the_hand_rule(toy):
    """The gamma check's reference equals the rule written out independently above."""
    net, x = toy
    assert torch.allclose(ref.lrp(net, x, target=0, rules=ref.Gamma(0.25)).input, gamma_by_hand(net, x, 0.25))


# --------------------------------------------------------------------------------------------------
# 03

def test_peak_share(capsys):
    R = torch.zeros(10, 10)
    R[0, :5] = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0])  # the two most salient pixels: (0,0) and (0,1)
    mask = torch.zeros(10, 10, dtype=torch.bool)
    mask[0, 0] = True
    mask[9, 9] = True
    # k = ceil(100 * 2 / 100) = 2 top pixels, one of them on the mask: n_P98 = 0.5
    out = assert_right(capsys, teaching.check_peak_share, 0.5, R, mask, 98)
    assert "top 2 pixels" in out
    assert_wrong(teaching.check_peak_share, 1.0, R, mask, 98, match="number of top pixels on the ink")
    assert_wrong(teaching.check_peak_share, 0.02, R, mask, 98, match="chance level")
    assert_wrong(teaching.check_peak_share, 0.25, R, mask, 98, match="an unexpected|your n_P is")
    assert_pending(capsys, teaching.check_peak_share, ..., R, mask, 98)
    low = torch.zeros(10, 10, dtype=torch.bool)
    low[9, 8:] = True  # the two least salient pixels (ties at 0 sorted last)
    R2 = torch.arange(100, dtype=torch.float32).view(10, 10).flip(0).flip(1)  # largest at (0,0), smallest at (9,9)
    assert_wrong(teaching.check_peak_share, 1.0, R2, low, 98, match="least")
    with pytest.raises(ValueError, match="mask is empty"):
        teaching.check_peak_share(0.5, R, torch.zeros(10, 10, dtype=torch.bool), 98)
    # a flat map: every pixel ties, so any whole count of top pixels on the mask is a valid n_P
    flat = torch.zeros(10, 10)
    out = assert_right(capsys, teaching.check_peak_share, 0.0, flat, mask, 98)  # argsort picked two off-mask pixels
    assert "tie" in out
    assert_right(capsys, teaching.check_peak_share, 0.5, flat, mask, 98)
    assert_wrong(teaching.check_peak_share, 0.3, flat, mask, 98, match="your n_P is")  # not a share of 2 pixels


def test_interclass_variance(capsys):
    values = np.array([0.1, 0.3, 0.5, 0.7, 0.2, 0.2])
    labels = np.array([0, 0, 1, 1, 2, 2])  # class means 0.2, 0.6, 0.2
    means = np.array([0.2, 0.6, 0.2])
    assert_right(capsys, teaching.check_interclass_variance, float(np.var(means)), values, labels)
    assert_wrong(teaching.check_interclass_variance, float(np.var(means, ddof=1)), values, labels, match="ddof=0")
    assert_wrong(teaching.check_interclass_variance, float(np.std(means)), values, labels, match="standard deviation")
    assert_wrong(teaching.check_interclass_variance, float(np.var(values)), values, labels, match="per-image values")
    assert_wrong(teaching.check_interclass_variance, 1.0, values, labels, match="your variance is")
    assert_pending(capsys, teaching.check_interclass_variance, None, values, labels)


def test_one_group(capsys):
    # 8 images; group: class 0 with exactly the frame (rows 0, 1, 2); row 3 is class 0 with frame + ruler
    labels = np.array([0, 0, 0, 0, 1, 1, 0, 1])
    preds = np.array([1, 0, 1, 1, 1, 1, 0, 0])
    flags = pd.DataFrame({"frame": [True, True, True, True, True, False, False, False],
                          "ruler": [False, False, False, True, False, False, False, True]})
    # group rows 0-2: correct 0, 1, 0 -> 1/3; all images correct: rows 1, 4, 5, 6 -> 0.5
    out = assert_right(capsys, teaching.check_one_group, 3, 1 / 3, labels, preds, flags, 0, ["frame"])
    # two binomial standard errors of 1/3 on 3 images: 2 * sqrt(1/3 * 2/3 / 3) = 0.544 -> "±54%"; no verdict word
    assert "3 images" in out and "±54%" in out and "below the average" not in out
    assert_wrong(teaching.check_one_group, 4, 1 / 4, labels, preds, flags, 0, ["frame"], match="whatever else")
    assert_wrong(teaching.check_one_group, 4, 1 / 2, labels, preds, flags, 1, ["frame"], match="both classes")
    assert_wrong(teaching.check_one_group, 2, 1 / 3, labels, preds, flags, 0, ["frame"], match="your group has 2")
    assert_wrong(teaching.check_one_group, 3, 100 / 3, labels, preds, flags, 0, ["frame"], match="percentage")
    assert_wrong(teaching.check_one_group, 3, 2 / 3, labels, preds, flags, 0, ["frame"], match="error rate")
    assert_wrong(teaching.check_one_group, 3, 0.5, labels, preds, flags, 0, ["frame"], match="over all images")
    assert_wrong(teaching.check_one_group, 3, 0.9, labels, preds, flags, 0, ["frame"], match="your accuracy is 0.900")
    assert_pending(capsys, teaching.check_one_group, 3, ..., labels, preds, flags, 0, ["frame"])
    with pytest.raises(ValueError, match="lacks"):
        teaching.check_one_group(3, 0.5, labels, preds, flags, 0, ["patch"])
    # the empty pattern: class 0 without any artifact is row 6 alone (correct)
    assert_right(capsys, teaching.check_one_group, 1, 1.0, labels, preds, flags, 0, [])


def test_projection(capsys):
    q = np.array([[1.0], [0.0], [0.0]])      # one CAV along channel 0
    a = np.array([3.0, 1.0, 2.0])
    z = np.array([0.5, 9.0, 9.0])            # clean mean: only its channel-0 value matters
    out = assert_right(capsys, teaching.check_projection, np.array([0.5, 1.0, 2.0]), a, q, z)
    assert "2.500" in out
    assert_right(capsys, teaching.check_projection, torch.tensor([0.5, 1.0, 2.0]), torch.tensor(a), torch.tensor(q), z)
    assert_wrong(teaching.check_projection, np.array([0.0, 1.0, 2.0]), a, q, z, match="whole component")
    assert_wrong(teaching.check_projection, np.array([2.5, 0.0, 0.0]), a, q, z, match="removed part")
    assert_wrong(teaching.check_projection, np.array([5.5, 1.0, 2.0]), a, q, z, match="sign is flipped")
    assert_wrong(teaching.check_projection, np.array([1.0, 2.0]), a, q, z, match="one per channel")
    assert_wrong(teaching.check_projection, np.array([1.0, 1.0, 2.0]), a, q, z, match="compute a - Q")
    assert_pending(capsys, teaching.check_projection, None, a, q, z)
    with pytest.raises(ValueError, match="orthonormal"):
        teaching.check_projection(a, a, 2 * q, z)
