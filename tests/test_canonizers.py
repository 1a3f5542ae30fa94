"""DenseNetCanonizer: same function while applied, model restored afterwards, rules attached where documented."""

from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.densenet import DenseNet, _DenseLayer
from zennit.attribution import Gradient
from zennit.canonizers import SequentialMergeBatchNorm
from zennit.composites import EpsilonPlusFlat
from zennit.rules import Epsilon

import xaibias as xb
from xaibias.explain import DenseNetCanonizer, find_densenet_batchnorms


def small_densenet(num_classes: int = 2, memory_efficient: bool = False) -> DenseNet:
    """xaibias' small DenseNet (torchvision DenseNet, 3x3 stride-1 stem, no pool0)."""
    model = xb.models.make_model("small_densenet", num_classes=num_classes)
    assert isinstance(model, DenseNet)
    for m in model.modules():
        if isinstance(m, _DenseLayer):
            m.memory_efficient = memory_efficient
    return model


def randomize_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BatchNorm statistics (fresh ones are the identity, which would make every test pass)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.weight.data = 0.5 + torch.rand(c, generator=g)
            m.bias.data = 0.3 * torch.randn(c, generator=g)
            m.running_mean = 0.3 * torch.randn(c, generator=g)
            m.running_var = 0.5 + 1.5 * torch.rand(c, generator=g)
        elif isinstance(m, nn.Linear):
            m.bias.data = 0.1 * torch.randn(m.out_features, generator=g)
    return model.eval()


def images(n: int = 2, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


MODELS = {
    "small_densenet": (lambda: randomize_norms(small_densenet()), 32),
    "densenet121": (lambda: randomize_norms(torchvision.models.densenet121(weights=None, num_classes=5)), 64),
}


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


def test_batchnorms_sorted_by_structure():
    merge, after_concat = find_densenet_batchnorms(small_densenet())
    n_layers, n_transitions = 6, 2
    assert ("features.conv0", "features.norm0") in merge
    assert ("features.denseblock2.denselayer1.conv1", "features.denseblock2.denselayer1.norm2") in merge
    assert len(merge) == 1 + n_layers
    assert len(after_concat) == n_layers + n_transitions + 1
    assert {"features.norm5", "features.transition1.norm", "features.denseblock1.denselayer2.norm1"} <= set(after_concat)
    # every BatchNorm is handled exactly once
    all_norms = {n for n, m in small_densenet().named_modules() if isinstance(m, nn.BatchNorm2d)}
    assert sorted([b for _, b in merge] + after_concat) == sorted(all_norms)

    merge121, concat121 = find_densenet_batchnorms(torchvision.models.densenet121(weights=None))
    assert (len(merge121), len(concat121)) == (1 + 58, 58 + 3 + 1)  # 6+12+24+16 dense layers, 3 transitions


def test_sequential_merge_is_wrong_for_densenet():
    # The reason for a dedicated canonizer: merging by leaf order pairs conv2 of one dense layer
    # with norm1 of the next, which normalises a concatenation (more channels than conv2 makes);
    # zennit's SequentialMergeBatchNorm fails on it part-way, leaving a half-merged model.
    model = randomize_norms(small_densenet())
    with pytest.raises(RuntimeError, match="size of tensor"):
        SequentialMergeBatchNorm().apply(model)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_canonized_logits_equal_original(name):
    build, size = MODELS[name]
    model, x = build(), images(2, size)
    expected = model(x).detach()
    handles = DenseNetCanonizer().apply(model)
    try:
        got = model(x).detach()
        merged = [m for n, m in model.named_modules() if n.endswith("norm2")]
        assert all(float(m.weight.detach().sub(1).abs().max()) == 0 and m.eps == 0 for m in merged)  # emptied
        assert hasattr(model, "canonizer_pool") and "forward" in vars(model)
    finally:
        for h in handles:
            h.remove()
    assert relative_difference(got, expected) <= 1e-4


@pytest.mark.parametrize("name", sorted(MODELS))
def test_composite_with_canonizer_restores_model(name):
    build, size = MODELS[name]
    model, x = build(), images(2, size, seed=3)
    state = copy.deepcopy(model.state_dict())
    eps = {n: m.eps for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    expected = model(x).detach()
    n_hooks = hook_count(model)

    composite = EpsilonPlusFlat(canonizers=[DenseNetCanonizer()])
    with Gradient(model, composite) as attributor:
        out, relevance = attributor(x.clone().requires_grad_(True), torch.eye(out_dim(model))[[0, 1]])
        assert hook_count(model) > n_hooks
    assert relative_difference(out.detach(), expected) <= 1e-4
    assert bool(torch.isfinite(relevance).all()) and float(relevance.abs().sum()) > 0

    assert hook_count(model) == n_hooks
    assert "forward" not in vars(model)
    assert not any(k.startswith("canonizer_") for k in model._modules)
    after = model.state_dict()
    assert list(after) == list(state)
    assert all(torch.equal(after[k], state[k]) for k in state)
    assert eps == {n: m.eps for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    assert torch.equal(model(x).detach(), expected)


def out_dim(model: DenseNet) -> int:
    return model.classifier.out_features


def test_rules_attached_to_concat_norms_only():
    model = randomize_norms(small_densenet())
    handles = DenseNetCanonizer().apply(model)
    try:
        _, after_concat = find_densenet_batchnorms(model)
        hooked = {n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d) and m._forward_hooks}
        assert hooked == set(after_concat)
    finally:
        for h in handles:
            h.remove()
    assert hook_count(model) == 0
    handles = DenseNetCanonizer(concat_norm_rule=None).apply(model)
    assert hook_count(model) == 0
    for h in handles:
        h.remove()


def test_pass_rule_hands_relevance_through_concat_norm():
    # With Pass, the relevance at the input of a concat BatchNorm equals that at its output; the
    # plain gradient (concat_norm_rule=None) would scale it by gamma / sigma per channel.
    model, x = randomize_norms(small_densenet()), images(1)
    norm = model.features.norm5
    seen = {}

    def keep(key, t):
        t.retain_grad()
        seen[key] = t

    # registered before the composite, so these see the tensors outside zennit's wrapping
    handles = [norm.register_forward_pre_hook(lambda m, inp: keep("in", inp[0])),
               norm.register_forward_hook(lambda m, inp, out: keep("out", out))]
    results = {}
    for rule in ("pass", None):
        with Gradient(model, EpsilonPlusFlat(canonizers=[DenseNetCanonizer(rule)])) as attributor:
            attributor(x.clone().requires_grad_(True), torch.eye(2)[[1]])
        results[rule] = (seen["in"].grad, seen["out"].grad)
    for h in handles:
        h.remove()
    grad_in, grad_out = results["pass"]
    assert float(grad_out.abs().max()) > 0
    assert torch.allclose(grad_in, grad_out)
    scale = (norm.weight / (norm.running_var + norm.eps).sqrt()).detach()[None, :, None, None]
    grad_in, grad_out = results[None]
    assert torch.allclose(grad_in, grad_out * scale, atol=1e-7)


def test_memory_efficient_is_switched_off_and_restored():
    model = randomize_norms(small_densenet(memory_efficient=True))
    x = images()
    expected = model(x).detach()
    handles = DenseNetCanonizer().apply(model)
    assert not any(m.memory_efficient for m in model.modules() if isinstance(m, _DenseLayer))
    assert relative_difference(model(x).detach(), expected) <= 1e-4
    for h in handles:
        h.remove()
    assert all(m.memory_efficient for m in model.modules() if isinstance(m, _DenseLayer))


def test_epsilon_rule_for_concat_norms_differs_from_pass():
    model, x = randomize_norms(small_densenet()), images(1)
    maps = []
    for rule in ("pass", Epsilon()):
        with Gradient(model, EpsilonPlusFlat(canonizers=[DenseNetCanonizer(rule)])) as attributor:
            maps.append(attributor(x.clone().requires_grad_(True), torch.eye(2)[[0]])[1])
    assert relative_difference(maps[0], maps[1]) > 1e-3


def test_bad_inputs():
    model = randomize_norms(small_densenet()).train()
    state = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match="eval mode.*features.norm0"):
        DenseNetCanonizer().apply(model)
    assert hook_count(model) == 0 and "forward" not in vars(model)  # nothing changed on failure
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    with pytest.raises(ValueError, match="no torchvision DenseNet blocks"):
        DenseNetCanonizer().apply(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).eval())
    with pytest.raises(ValueError, match="concat_norm_rule must be"):
        DenseNetCanonizer(concat_norm_rule="epsilon")
    with pytest.raises(ValueError, match="concat_norm_rule must be a zennit rule"):
        DenseNetCanonizer(concat_norm_rule=3)
    model.eval()
    handles = DenseNetCanonizer().apply(model)
    with pytest.raises(ValueError, match="canonized twice"):
        DenseNetCanonizer().apply(model)
    for h in handles:
        h.remove()
    assert hook_count(model) == 0


@pytest.mark.slow
def test_canonizer_makes_lrp_more_faithful_on_trained_densenet():
    # Region perturbation (Samek et al. 2017): removing the most relevant regions first should make
    # the logit drop faster with the canonizer than without (the uncanonized head spreads the
    # pooled relevance evenly over all positions, and uncanonized BatchNorms scale it by gamma/sigma).
    data = xb.data.SyntheticLesions(n=320, size=32, bias={"frame": (0.8, 0.1)}, seed=0)
    train, test = data.split(test_fraction=0.25, seed=0)
    model = xb.models.fit_or_load("small_densenet", train, epochs=4, batch_size=16, seed=0, progress=False,
                                  device="cpu")
    assert xb.models.evaluate(model, test)["accuracy"] > 0.7  # the model has learned something to explain
    x = test.images[:32]
    scores = {}
    for name, canonizers in (("with", [DenseNetCanonizer()]), ("without", None)):
        relevance = xb.explain.attribute(model, x, method="lrp", composite="EpsilonPlusFlat", canonizers=canonizers)
        scores[name] = xb.analysis.aopc(model, x, relevance, steps=32, patch=4, output="logit", progress=False)
    random = xb.analysis.aopc(model, x, relevance, steps=32, patch=4, output="logit", order="random", progress=False)
    assert float(scores["with"].mean()) > float(scores["without"].mean())
    assert float(scores["with"].mean()) > float(random.mean())
