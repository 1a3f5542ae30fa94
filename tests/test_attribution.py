import pytest
import torch
from zennit.attribution import Gradient
from zennit.canonizers import SequentialMergeBatchNorm
from zennit.composites import EpsilonAlpha2Beta1Flat, EpsilonGammaBox, EpsilonPlusFlat
from zennit.torchvision import ResNetCanonizer

import xaibias as xb
from xaibias.explain import attribute


def _model(name, seed=0):
    m = xb.models.make_model(name, num_classes=3, seed=seed)
    # non-trivial batch-norm statistics, so that merging them matters
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            g = torch.Generator().manual_seed(seed)
            mod.running_mean.uniform_(-0.2, 0.2, generator=g)
            mod.running_var.uniform_(0.5, 1.5, generator=g)
    return m.eval()


@pytest.fixture(scope="module")
def x():
    return torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(
    "name, composite, canon",
    [
        ("small_vgg", EpsilonPlusFlat, SequentialMergeBatchNorm),
        ("small_vgg", EpsilonAlpha2Beta1Flat, SequentialMergeBatchNorm),
        ("small_resnet", EpsilonPlusFlat, ResNetCanonizer),
    ],
)
def test_lrp_equals_zennit_gradient_attributor(x, name, composite, canon):
    m = _model(name)
    target = torch.tensor([0, 1, 2, 0, 1, 2])
    ours = attribute(m, x, target=target, method="lrp", composite=composite.__name__, init="one", batch_size=4)
    with Gradient(model=m, composite=composite(canonizers=[canon()])) as attributor:
        _, ref = attributor(x, torch.eye(3)[target])
    assert (ours - ref.sum(1)).abs().max() <= 1e-5


def test_lrp_logit_init_and_gamma_box(x):
    m = _model("small_vgg")
    with torch.no_grad():
        logits = m(x)
    pred = logits.argmax(1)
    r_one = attribute(m, x, method="lrp", composite="EpsilonGammaBox", init="one")
    r_logit = attribute(m, x, method="lrp", composite="EpsilonGammaBox", init="logit")
    scale = logits.gather(1, pred[:, None]).squeeze(1)
    assert torch.allclose(r_logit, r_one * scale[:, None, None], atol=1e-5, rtol=1e-4)
    comp = EpsilonGammaBox(low=torch.zeros(6, 3, 32, 32), high=torch.ones(6, 3, 32, 32),
                           canonizers=[SequentialMergeBatchNorm()])
    with Gradient(model=m, composite=comp) as attributor:
        _, ref = attributor(x, torch.eye(3)[pred])
    assert (r_one - ref.sum(1)).abs().max() <= 1e-5


def test_plain_epsilon_composite_conserves_on_bias_free_net():
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 16, bias=False), torch.nn.ReLU(),
                            torch.nn.Linear(16, 2, bias=False))
    x = torch.rand(4, 3, 4, 4)
    r = attribute(m, x, method="lrp", composite="Epsilon", epsilon=1e-9, canonizers=None, target=1)
    with torch.no_grad():
        logit = m(x)[:, 1]
    assert torch.allclose(r.sum((1, 2)), logit, atol=1e-4)


def test_gradient_methods_match_autograd(x):
    m = _model("small_vgg")
    xx = x.clone().requires_grad_(True)
    m(xx)[:, 2].sum().backward()
    g = attribute(m, x, target=2, method="gradient", pool=None)
    assert torch.allclose(g, xx.grad, atol=1e-6)
    ixg = attribute(m, x, target=2, method="input_x_gradient")
    assert torch.allclose(ixg, (xx.grad * x).sum(1), atol=1e-6)
    l2 = attribute(m, x, target=2, method="gradient", pool="l2")
    assert torch.allclose(l2, xx.grad.pow(2).sum(1), atol=1e-8)


def test_integrated_gradients_completeness(x):
    m = _model("small_vgg")
    r = attribute(m, x, target=1, method="integrated_gradients", steps=64)
    with torch.no_grad():
        diff = m(x)[:, 1] - m(torch.zeros_like(x))[:, 1]
    assert torch.allclose(r.sum((1, 2)), diff, atol=0.05 * diff.abs().max().item() + 1e-3)


def test_gradcam_shapes_and_layer_choice(x):
    m = _model("small_resnet")
    r = attribute(m, x, method="gradcam")
    assert r.shape == (6, 32, 32) and (r >= 0).all()
    r2 = attribute(m, x, method="gradcam", layer="layer2")
    assert r2.shape == (6, 32, 32)
    with pytest.raises(ValueError, match="layer 'nope' not found"):
        attribute(m, x, method="gradcam", layer="nope")


def test_gradcam_equals_the_formula_by_hand(x):
    # Selvaraju et al. (2017): weights = spatial mean of d logit_t / d A_k at the last convolution,
    # map = ReLU(sum_k weight_k A_k), upsampled bilinearly to the input size
    m = _model("small_vgg").eval()
    layer = dict(m.named_modules())[xb.models.last_conv_layer(m)]
    acts = {}
    handle = layer.register_forward_hook(lambda mod, inp, out: acts.__setitem__("A", out))
    target = torch.tensor([0, 1, 2, 0, 1, 2])
    logits = m(x)
    handle.remove()
    A = acts["A"]
    grads = torch.autograd.grad(logits[torch.arange(6), target].sum(), A)[0]
    cam = torch.relu((grads.mean((2, 3), keepdim=True) * A).sum(1, keepdim=True))
    by_hand = torch.nn.functional.interpolate(cam, size=(32, 32), mode="bilinear", align_corners=False)[:, 0]
    ours = attribute(m, x, target=target, method="gradcam")
    torch.testing.assert_close(ours, by_hand.detach(), rtol=1e-4, atol=1e-6)
    assert (by_hand > 0).any()  # the comparison is not between two zero maps
    raw = attribute(m, x, target=target, method="gradcam", relu=False)  # without the ReLU, negatives stay
    raw_by_hand = torch.nn.functional.interpolate((grads.mean((2, 3), keepdim=True) * A).sum(1, keepdim=True),
                                                  size=(32, 32), mode="bilinear", align_corners=False)[:, 0]
    torch.testing.assert_close(raw, raw_by_hand.detach(), rtol=1e-4, atol=1e-6)
    assert (raw < 0).any()


def test_target_variants_and_single_image(x):
    m = _model("small_vgg")
    with torch.no_grad():
        pred = m(x).argmax(1)
    a = attribute(m, x, method="gradient")
    b = attribute(m, x, method="gradient", target=pred)
    assert torch.equal(a, b)
    assert attribute(m, x[0], method="gradient").shape == (1, 32, 32)
    with pytest.raises(ValueError, match="one int per image"):
        attribute(m, x, method="gradient", target=[0, 1])
    with pytest.raises(ValueError, match="target class out of range: the model has 3 outputs"):
        attribute(m, x, method="lrp", target=5)


def test_bad_inputs_have_clear_messages(x):
    m = _model("small_vgg")
    with pytest.raises(ValueError, match="unknown method 'shap'; choose one of"):
        attribute(m, x, method="shap")
    with pytest.raises(ValueError, match="unknown composite 'Fancy'"):
        attribute(m, x, method="lrp", composite="Fancy")
    with pytest.raises(ValueError, match="pool must be"):
        attribute(m, x, pool="max")
    bad = x.clone()
    bad[2] = float("nan")
    with pytest.raises(ValueError, match=r"images contains NaN .*\[2\]"):
        attribute(m, bad)


def test_register_method_extends_attribute(x):
    from xaibias.explain.attribution import _REGISTRY, register_method

    @register_method("constant_test", channels=False)
    def _const(model, xx, target, value=1.0, **_):
        return torch.full((len(xx), *xx.shape[-2:]), value)

    try:
        r = attribute(_model("small_vgg"), x, method="constant_test", value=2.0)
        assert torch.equal(r, torch.full((6, 32, 32), 2.0))
    finally:
        _REGISTRY.pop("constant_test")


def test_methods_list_is_complete():
    for name in ("gradient", "input_x_gradient", "integrated_gradients", "gradcam", "lrp"):
        assert name in xb.explain.METHODS
    # every composite name builds zennit's composite of that name ("Epsilon": Schaaf et al.'s epsilon
    # rule on every linear and convolutional layer, which zennit has no class for)
    from zennit import composites as zc
    from zennit import rules as zr
    from zennit import types as zt

    from xaibias.explain.attribution import make_composite

    for name in xb.explain.COMPOSITES:
        comp = make_composite(name, canonizers=None, input_shape=(1, 3, 4, 4))
        if name == "Epsilon":
            eps_layers = {kind for kind, rule in comp.layer_map if isinstance(rule, zr.Epsilon)}
            assert type(comp) is zc.LayerMapComposite and eps_layers == {zt.Convolution, torch.nn.Linear}
        else:
            assert type(comp) is getattr(zc, name), name
    with pytest.raises(ValueError, match="unknown composite"):
        make_composite("EpsilonPlusFlatt", canonizers=None)
