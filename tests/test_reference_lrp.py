"""The from-scratch LRP in xaibias.explain.reference equals zennit's hook-based rules.

Each rule is compared on a tiny MLP and a tiny CNN (with max and average pooling and a strided
convolution) in float64; the maximum absolute difference must be at most 1e-6.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from zennit import composites as zc
from zennit import rules as zr
from zennit.core import Composite
from zennit.types import Activation, AvgPool
from zennit.types import Linear as ZLinear

from xaibias.explain import reference as ref

TOL = 1e-6


def tiny_mlp(bias: bool = True, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Flatten(),
        nn.Linear(12, 10, bias=bias), nn.ReLU(),
        nn.Linear(10, 8, bias=bias), nn.ReLU(),
        nn.Linear(8, 3, bias=bias),
    )
    return _init(model, bias)


def tiny_cnn(bias: bool = True, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=bias), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1, stride=2, bias=bias), nn.ReLU(),
        nn.Conv2d(6, 6, 1, bias=bias), nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(6, 5, bias=bias), nn.ReLU(),
        nn.Linear(5, 3, bias=bias),
    )
    return _init(model, bias)


def _init(model: nn.Sequential, bias: bool) -> nn.Sequential:
    """He-initialised weights (activations of order one) and biases that matter but do not dominate."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight)
            if bias:
                nn.init.uniform_(m.bias, -0.2, 0.2)
    return model.double().eval()


def inputs(shape, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g, dtype=torch.float64)


MODELS = {
    "mlp": (tiny_mlp, (4, 3, 2, 2)),
    "cnn": (tiny_cnn, (4, 3, 8, 8)),
}


def start_relevance(model, x, target=None):
    logits = model(x).detach()
    target = logits.argmax(1) if target is None else torch.full((len(x),), target)
    out = torch.zeros_like(logits)
    out[torch.arange(len(x)), target] = logits[torch.arange(len(x)), target]
    return out


def zennit_relevance(model, x, composite, output_relevance):
    """Input relevance from zennit: register the composite, backpropagate the output relevance."""
    x = x.clone().requires_grad_(True)
    with composite.context(model) as modified:
        out = modified(x)
        (relevance,) = torch.autograd.grad(out, x, grad_outputs=output_relevance)
    return relevance


def zennit_single_rule(rule_factory, first_factory=None):
    """A zennit composite with one rule for every Linear/Conv (optionally another for the first)."""

    def module_map(ctx, name, module):
        if isinstance(module, Activation):
            return zr.Pass()
        if isinstance(module, AvgPool):
            return zr.Norm()
        if isinstance(module, ZLinear):
            if first_factory is not None and not ctx.get("first"):
                ctx["first"] = True
                return first_factory()
            return rule_factory()
        return None

    return Composite(module_map=module_map)


# (reference rule, zennit rule) pairs; each applied to every Linear/Conv2d layer
RULE_PAIRS = {
    "lrp0": (lambda: ref.LRP0(), lambda: zr.Epsilon(epsilon=0.0)),
    "epsilon_1e-6": (lambda: ref.Epsilon(), lambda: zr.Epsilon()),
    "epsilon_0.25": (lambda: ref.Epsilon(0.25), lambda: zr.Epsilon(epsilon=0.25)),
    "gamma": (lambda: ref.Gamma(0.25), lambda: zr.Gamma(gamma=0.25)),
    "gamma_1": (lambda: ref.Gamma(1.0), lambda: zr.Gamma(gamma=1.0)),
    "alpha2beta1": (lambda: ref.AlphaBeta(2, 1), lambda: zr.AlphaBeta(alpha=2, beta=1)),
    "alpha1beta0": (lambda: ref.AlphaBeta(1, 0), lambda: zr.AlphaBeta(alpha=1, beta=0)),
    "zplus": (lambda: ref.ZPlus(), lambda: zr.ZPlus()),
    "flat": (lambda: ref.Flat(), lambda: zr.Flat()),
    "wsquare": (lambda: ref.WSquare(), lambda: zr.WSquare()),
}


@pytest.mark.parametrize("model_name", sorted(MODELS))
@pytest.mark.parametrize("rule_name", sorted(RULE_PAIRS))
def test_rule_equals_zennit(model_name, rule_name):
    build, shape = MODELS[model_name]
    model, x = build(), inputs(shape)
    ours, theirs = RULE_PAIRS[rule_name]
    out_rel = start_relevance(model, x)
    expected = zennit_relevance(model, x, zennit_single_rule(theirs), out_rel)
    got = ref.lrp(model, x, rules=ours(), output_relevance=out_rel).input
    assert got.shape == x.shape
    assert float(expected.abs().max()) > 1e-3, "zennit gave an all-zero map; the comparison would be empty"
    assert float((got - expected).abs().max()) <= TOL


@pytest.mark.parametrize("model_name", sorted(MODELS))
@pytest.mark.parametrize("bounds", ["scalar", "per_channel"])
def test_zbox_first_layer_equals_zennit(model_name, bounds):
    build, shape = MODELS[model_name]
    model, x = build(), inputs(shape)
    if bounds == "scalar" or model_name == "mlp":
        low, high = 0.0, 1.0
    else:  # per-channel bounds, as for normalised images
        low = torch.tensor([-0.1, -0.2, 0.0], dtype=torch.float64).reshape(1, 3, 1, 1)
        high = torch.tensor([1.1, 1.0, 1.3], dtype=torch.float64).reshape(1, 3, 1, 1)
    if model_name == "mlp":
        x_flat_model = nn.Sequential(*list(model)[1:])  # z^B needs the pixels as the first layer's input
        model, x = x_flat_model, x.flatten(1)
    out_rel = start_relevance(model, x)
    composite = zennit_single_rule(lambda: zr.Epsilon(), lambda: zr.ZBox(low=low, high=high))
    expected = zennit_relevance(model, x, composite, out_rel)
    rules = {"first": ref.ZBox(low, high), nn.Conv2d: ref.Epsilon(), nn.Linear: ref.Epsilon()}
    got = ref.lrp(model, x, rules=rules, output_relevance=out_rel).input
    assert float((got - expected).abs().max()) <= TOL
    # z^B gives relevance to black pixels too (unlike rules that multiply by the input)
    x0 = x.clone()
    x0[0] = 0.0
    got0 = ref.lrp(model, x0, rules=rules, output_relevance=start_relevance(model, x0)).input
    assert float(got0[0].abs().sum()) > 0


PRESET_COMPOSITES = {
    "EpsilonPlus": lambda: zc.EpsilonPlus(),
    "EpsilonPlusFlat": lambda: zc.EpsilonPlusFlat(),
    "EpsilonAlpha2Beta1": lambda: zc.EpsilonAlpha2Beta1(),
    "EpsilonAlpha2Beta1Flat": lambda: zc.EpsilonAlpha2Beta1Flat(),
    "EpsilonGammaBox": lambda: zc.EpsilonGammaBox(low=0.0, high=1.0),
}


@pytest.mark.parametrize("preset", sorted(PRESET_COMPOSITES))
def test_presets_equal_zennit_composites(preset):
    model, x = tiny_cnn(), inputs((3, 3, 8, 8), seed=5)
    out_rel = start_relevance(model, x, target=1)
    expected = zennit_relevance(model, x, PRESET_COMPOSITES[preset](), out_rel)
    params = {"low": 0.0, "high": 1.0} if preset == "EpsilonGammaBox" else {}
    result = ref.lrp(model, x, target=1, rules=preset, **params)
    assert torch.equal(result.output, out_rel)
    assert float((result.input - expected).abs().max()) <= TOL


def test_lrp0_is_gradient_times_input_without_bias():
    # on a bias-free ReLU network LRP-0 equals gradient x input (Montavon et al. 2019, sec. 10.2.1)
    model, x = tiny_cnn(bias=False), inputs((2, 3, 8, 8))
    x_ = x.clone().requires_grad_(True)
    out = model(x_)
    (grad,) = torch.autograd.grad(out[:, 0].sum(), x_)
    result = ref.lrp(model, x, target=0, rules="0")
    assert torch.allclose(result.input, grad * x, atol=1e-6)  # 1e-6: the Norm stabiliser at pooling


CONSERVING = {
    "lrp0": lambda: ref.LRP0(),
    "gamma": lambda: ref.Gamma(0.25),
    "zplus": lambda: ref.ZPlus(),
}
FIRST_LAYER = {"flat": lambda: ref.Flat(), "wsquare": lambda: ref.WSquare(), "zbox": lambda: ref.ZBox(0.0, 1.0)}


@pytest.mark.parametrize("rule_name", sorted(CONSERVING) + sorted(FIRST_LAYER))
@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_conservation_without_bias(model_name, rule_name):
    # The top layer uses LRP-0 so that a negative logit is conserved too (z+ has nothing to
    # distribute when every contribution to the output is negative); below it, every active ReLU
    # unit has a positive pre-activation, so z+ and the other rules always find contributions.
    build, shape = MODELS[model_name]
    model, x = build(bias=False), inputs(shape)
    n_layers = len(ref.sequential_layers(model))
    if rule_name in CONSERVING:
        rules = {nn.Conv2d: CONSERVING[rule_name](), nn.Linear: CONSERVING[rule_name](), n_layers - 1: ref.LRP0()}
    else:  # input-independent rules belong to the first layer (see test_flat_everywhere_loses_relevance)
        rules = {"first": FIRST_LAYER[rule_name](), nn.Conv2d: ref.ZPlus(), nn.Linear: ref.LRP0()}
    result = ref.lrp(model, x, rules=rules)
    sums = ref.relevance_sums(result)
    logit = result.logits.max(dim=1).values
    assert float(logit.abs().min()) > 1e-3
    # every layer holds the full target logit (the 1e-6 stabilisers cost a relative ~1e-6 each)
    assert torch.allclose(sums, logit[:, None].expand_as(sums), rtol=1e-4, atol=0)
    assert float(ref.conservation_error(result).abs().max()) < 1e-4


def test_conservation_breaks_with_bias_and_large_epsilon():
    model, x = tiny_cnn(bias=True), inputs((4, 3, 8, 8))
    with_bias = ref.conservation_error(ref.lrp(model, x, rules="0")).abs()
    assert float(with_bias.max()) > 1e-3  # biases absorb (or inject) relevance
    small = ref.conservation_error(ref.lrp(tiny_cnn(bias=False), x, rules=ref.Epsilon(1e-9))).abs()
    large = ref.conservation_error(ref.lrp(tiny_cnn(bias=False), x, rules=ref.Epsilon(1.0))).abs()
    assert float(small.max()) < 1e-6
    assert bool((large > small).all()) and float(large.min()) > 1e-3  # epsilon absorbs relevance


def test_flat_everywhere_loses_relevance():
    # Flat ignores the activations, so it hands relevance to dead (zero) units; the Norm rule of the
    # average pooling below then has nothing to divide it by and the relevance is lost.
    model, x = tiny_cnn(bias=False), inputs((4, 3, 8, 8))
    result = ref.lrp(model, x, rules={nn.Conv2d: ref.Flat(), nn.Linear: ref.Flat()})
    sums = ref.relevance_sums(result)
    pool = 7  # index of the AvgPool2d layer
    assert isinstance(ref.sequential_layers(model)[pool], nn.AvgPool2d)
    assert torch.allclose(sums[:, pool + 1], sums[:, -1], rtol=1e-6)  # conserved down to the pooling
    assert bool((sums[:, pool].abs() < 0.99 * sums[:, -1].abs()).all())  # lost at the pooling


def test_result_layers_and_rules():
    model, x = tiny_cnn(), inputs((2, 3, 8, 8))
    result = ref.lrp(model, x, rules="EpsilonPlusFlat")
    layers = ref.sequential_layers(model)
    assert len(result.layers) == len(layers) == len(result.rules)
    assert result.layers[0] is result.input
    assert isinstance(result.rules[0], ref.Flat) and isinstance(result.rules[3], ref.ZPlus)
    assert isinstance(result.rules[-1], ref.Epsilon) and isinstance(result.rules[1], ref.Pass)
    assert isinstance(result.rules[2], ref.WinnerTakesAll) and isinstance(result.rules[7], ref.Norm)
    for r, a in zip(result.layers, result.activations):
        assert r.shape == a.shape


def test_rule_per_layer_forms_agree():
    model, x = tiny_mlp(), inputs((3, 3, 2, 2))
    by_type = ref.lrp(model, x, rules={nn.Linear: ref.Gamma(0.5), 5: ref.Epsilon(0.1)}).input
    by_list = ref.lrp(model, x, rules=[None, ref.Gamma(0.5), None, ref.Gamma(0.5), None, ref.Epsilon(0.1)]).input
    by_fn = ref.lrp(model, x, rules=lambda i, m: ref.Epsilon(0.1) if i == 5 else (
        ref.Gamma(0.5) if isinstance(m, nn.Linear) else None)).input
    assert torch.equal(by_type, by_list) and torch.equal(by_type, by_fn)
    assert not torch.allclose(by_type, ref.lrp(model, x, rules="gamma").input)


def test_make_rule_and_registry():
    assert isinstance(ref.make_rule("epsilon", epsilon=0.5), ref.Epsilon)
    assert ref.make_rule("alpha2beta1").alpha == 2.0
    assert set(ref.RULES) >= {"0", "epsilon", "gamma", "alpha2beta1", "alpha1beta0", "zbox", "flat", "wsquare"}
    with pytest.raises(ValueError, match="unknown rule 'nope'"):
        ref.make_rule("nope")


def test_bad_inputs_have_clear_messages():
    model, x = tiny_cnn(), inputs((2, 3, 8, 8))
    with pytest.raises(ValueError, match="BatchNorm2d.*not support"):
        ref.lrp(nn.Sequential(nn.Conv2d(3, 2, 3), nn.BatchNorm2d(2)).double(), x)
    with pytest.raises(ValueError, match="model must be an nn.Sequential.*got Conv2d"):
        ref.lrp(nn.Conv2d(3, 2, 3), x)
    with pytest.raises(ValueError, match="alpha - beta must equal 1"):
        ref.AlphaBeta(2, 2)
    with pytest.raises(ValueError, match="alpha and beta must be >= 0"):
        ref.AlphaBeta(-1, -2)
    with pytest.raises(ValueError, match="epsilon must be >= 0"):
        ref.Epsilon(-0.1)
    with pytest.raises(ValueError, match="gamma must be >= 0"):
        ref.Gamma(-1)
    with pytest.raises(ValueError, match="ZBox needs low <= high"):
        ref.ZBox(1.0, 0.0)
    with pytest.raises(ValueError, match=r"target must be class indices in \[0, 3\)"):
        ref.lrp(model, x, target=3)
    with pytest.raises(ValueError, match="target has 3 entries but x has 2"):
        ref.lrp(model, x, target=[0, 1, 2])
    with pytest.raises(ValueError, match="unknown rules 'Nope'"):
        ref.lrp(model, x, rules="Nope")
    with pytest.raises(ValueError, match="rules has 2 entries but the model has 12 layers"):
        ref.lrp(model, x, rules=[None, None])
    with pytest.raises(ValueError, match="rule 'flat' cannot be used for layer 1"):
        ref.lrp(model, x, rules={1: ref.Flat()})
    with pytest.raises(ValueError, match="output_relevance must have the output's shape"):
        ref.lrp(model, x, output_relevance=torch.zeros(2, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="x must be a float tensor"):
        ref.lrp(model, torch.zeros(2, 3, 8, 8, dtype=torch.long))


def test_layer_relevance_matches_reference_at_every_conv():
    # xb.widgets.layer_relevance reads zennit's relevance at a module's input; on a sequential
    # model it must equal the reference LRP's relevance at the same layer.
    import xaibias as xb

    model, x = tiny_cnn(), inputs((1, 3, 8, 8), seed=7)
    result = ref.lrp(model, x, rules="EpsilonPlusFlat")
    target = int(result.logits.argmax())
    layers = ref.sequential_layers(model)
    for index, layer in enumerate(layers):
        if not isinstance(layer, nn.Conv2d):
            continue
        name = str(index)
        got = xb.widgets.layer_relevance(model, x[0], target, zc.EpsilonPlusFlat(), name if index else None)
        assert torch.allclose(got.double(), result.layers[index][0].sum(0), atol=TOL)
    with pytest.raises(ValueError, match="layer 'nope' not found"):
        xb.widgets.layer_relevance(model, x[0], target, zc.EpsilonPlusFlat(), "nope")


def test_lrp_explorer_draws_default_view_headless():
    import matplotlib

    matplotlib.use("Agg")
    import xaibias as xb

    images = inputs((3, 3, 8, 8), seed=2).float()
    fig = xb.widgets.lrp_explorer({}, images, reference_models={"tiny": tiny_cnn()}, headless=True)
    titles = " ".join(ax.get_title() for ax in fig.axes)
    assert "tiny: rule 0" in titles and "image 0" in titles
    with pytest.raises(ValueError, match="at least one model"):
        xb.widgets.lrp_explorer({}, images, headless=True)
    with pytest.raises(ValueError, match="unknown reference rules"):
        xb.widgets.lrp_explorer({}, images, reference_models={"tiny": tiny_cnn()}, rules=["nope"], headless=True)
