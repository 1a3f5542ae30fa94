"""Unknown options are errors (issue 26, item 1): every attribution method, every correction, CAV,
SpRAy and GEBI raise a TypeError naming the option, the receiver and the options it takes."""

from __future__ import annotations

import inspect
import re

import pytest
import torch
from sklearn.base import clone

import xaibias as xb
from xaibias._options import UnknownOptionError
from xaibias.explain.attribution import _REGISTRY

BOGUS = "bogus_option"

# the options of the built-in methods, written out here rather than read from the code; a method
# registered later is checked against its function's keyword parameters instead
BUILT_IN = {
    "gradient": (),
    "input_x_gradient": (),
    "integrated_gradients": ("steps", "baseline", "internal_batch_size"),
    "gradcam": ("layer", "relu"),
    "lrp": ("composite", "canonizers", "epsilon", "init", "low", "high", "engine"),
    "scorecam": ("layer", "mask_batch_size", "channels"),
    "competitive_gxi": ("sign", "per_pixel"),
}


def _expected_options(method: str) -> tuple[str, ...]:
    if method in BUILT_IN:
        return BUILT_IN[method]
    params = list(inspect.signature(_REGISTRY[method]).parameters.values())[3:]
    return tuple(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


def _listed(message: str) -> tuple[str, ...]:
    """The option names after "it takes: " in an error message (() for "it takes no options")."""
    if message.endswith("it takes no options"):
        return ()
    return tuple(message.split("it takes: ", 1)[1].split(", "))


@pytest.fixture(scope="module")
def model():
    return xb.models.make_model("small_vgg", num_classes=3, seed=0).eval()


@pytest.fixture(scope="module")
def x():
    return torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


class _Exploding(torch.nn.Module):
    """A model whose forward pass fails: an option error must come before any computation."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 2, 3)

    def forward(self, x):
        raise AssertionError("the model ran although an option was unknown")


# --------------------------------------------------------------------------------------------------
# attribute(): parametrised over the live registry, so a newly registered method is covered too


def test_the_table_of_built_in_options_names_registered_methods():
    assert set(BUILT_IN) <= set(xb.explain.METHODS)


@pytest.mark.parametrize("method", xb.explain.METHODS)
def test_every_method_rejects_an_unknown_option(method):
    with pytest.raises(TypeError) as err:
        xb.explain.attribute(_Exploding(), torch.rand(1, 3, 8, 8), target=0, method=method, **{BOGUS: 1})
    msg = str(err.value)
    assert isinstance(err.value, UnknownOptionError)
    assert f"attribute(method={method!r})" in msg and repr(BOGUS) in msg
    assert _listed(msg) == _expected_options(method)


@pytest.mark.parametrize("method", xb.explain.METHODS)
def test_every_listed_option_is_taken_and_its_default_changes_nothing(method, model, x):
    params = inspect.signature(_REGISTRY[method]).parameters
    defaults = {k: params[k].default for k in _expected_options(method) if params[k].default is not inspect.Parameter.empty}
    plain = xb.explain.attribute(model, x, target=1, method=method)
    spelled_out = xb.explain.attribute(model, x, target=1, method=method, **defaults)
    torch.testing.assert_close(spelled_out, plain, rtol=0, atol=0)


def test_the_cases_of_the_issue_raise_naming_the_option(model, x):
    with pytest.raises(TypeError, match=r"attribute\(method='integrated_gradients'\) does not take the option "
                                        r"'n_steps' \(did you mean 'steps'\?\); it takes: steps, baseline"):
        xb.explain.attribute(model, x, method="integrated_gradients", n_steps=64)
    with pytest.raises(TypeError, match=r"attribute\(method='gradient'\) does not take the option 'composite'; "
                                        r"it takes no options"):
        xb.explain.attribute(model, x, method="gradient", composite="EpsilonPlus")
    # the default value given explicitly is still an option the method does not take
    with pytest.raises(TypeError, match="'composite'"):
        xb.explain.attribute(model, x, method="input_x_gradient", composite="EpsilonPlusFlat")
    with pytest.raises(TypeError, match=r"attribute\(method='gradcam'\) does not take the option 'canonizers'"):
        xb.explain.attribute(model, x, method="gradcam", canonizers=None)
    with pytest.raises(TypeError, match=r"the options 'n_steps', 'composite' \(did you mean 'steps' for 'n_steps'\?\)"):
        xb.explain.attribute(model, x, method="integrated_gradients", n_steps=8, composite="Epsilon")
    # pool is attribute()'s own and applies to every method
    assert xb.explain.attribute(model, x, method="gradient", pool="l2").shape == (2, 32, 32)


def test_lrp_takes_composite_and_canonizers_given_or_not(model, x):
    default = xb.explain.attribute(model, x, target=0, method="lrp")
    explicit = xb.explain.attribute(model, x, target=0, method="lrp", composite="EpsilonPlusFlat", canonizers="auto")
    assert torch.equal(default, explicit)
    other = xb.explain.attribute(model, x, target=0, method="lrp", composite="EpsilonAlpha2Beta1")
    assert not torch.equal(default, other)
    assert inspect.signature(xb.explain.attribute).parameters["composite"].default == "EpsilonPlusFlat"


def test_a_method_with_var_keywords_gets_every_option_it_is_given(model, x):
    seen = {}

    @xb.explain.attribution.register_method("options_test", channels=False)
    def _record(model, xx, target, **kwargs):
        seen.update(kwargs)
        return torch.zeros(len(xx), *xx.shape[-2:])

    try:
        xb.explain.attribute(model, x, method="options_test", composite="Epsilon", anything=3)
        assert seen == {"composite": "Epsilon", "anything": 3}
    finally:
        _REGISTRY.pop("options_test")


def test_attribute_dataset_rejects_before_writing(tmp_path):
    data = xb.data.SyntheticLesions(n=8, size=32, seed=0)
    out = tmp_path / "r.h5"
    with pytest.raises(TypeError, match=r"attribute\(method='integrated_gradients'\) does not take the option 'n_steps'"):
        xb.explain.attribute_dataset(_Exploding(), data, method="integrated_gradients", out=out, n_steps=8,
                                     progress=False)
    assert not out.exists()


def test_top_concepts_with_a_table_rejects_the_options_it_would_not_use():
    from xaibias.explain import crp

    rel = torch.rand(3, 5)
    with pytest.raises(TypeError, match=r"top_concepts\(\) with a precomputed relevance table does not take the "
                                        r"option 'composite'; it takes no options"):
        crp.top_concepts(relevance=rel, k=2, composite="EpsilonPlus")
    assert crp.top_concepts(relevance=rel, k=2).ids.shape == (3, 2)


# --------------------------------------------------------------------------------------------------
# the corrections' options


@pytest.fixture(scope="module")
def lesions():
    return xb.data.SyntheticLesions(n=16, size=32, bias={"frame": (0.8, 0.1)}, seed=0)


@pytest.mark.parametrize("method", xb.mitigation.CORRECTIONS)
def test_every_correction_rejects_an_unknown_option(method, lesions, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("a model was trained although an option was unknown")

    monkeypatch.setattr(xb.models, "fit_or_load", no_training)
    name = "small_vgg_attention" if method == "attention" else "small_vgg"
    with pytest.raises(TypeError) as err:
        xb.mitigation.fit_or_load_correction(name, lesions, method, {"artifacts": ["frame"], BOGUS: 1}, epochs=1)
    msg = str(err.value)
    assert isinstance(err.value, ValueError)  # what the corrections raised before: callers catching it still do
    assert msg.startswith(f"correction {method!r} does not take the option {BOGUS!r}")
    assert _listed(msg) == tuple(xb.mitigation.methods.OPTIONS[method])


def test_prepare_names_the_option_and_a_close_one(lesions):
    with pytest.raises(TypeError, match=re.escape("correction 'augment' does not take the option 'prob'; it takes: "
                                                  "artifacts, p, balance, params")):
        xb.mitigation.prepare("augment", lesions, prob=0.5)
    with pytest.raises(TypeError, match=re.escape("correction 'rrr' does not take the option 'grad' (did you mean "
                                                  "'grad_of'?)")):
        xb.mitigation.prepare("rrr", lesions, grad="log_probs")


# --------------------------------------------------------------------------------------------------
# the estimators

ESTIMATORS = {
    "CAV": (lambda **kw: xb.analysis.CAV("features.0", **kw),
            ("layer", "method", "random_state", "C", "alpha", "cv", "batch_size")),
    "SpRAy": (lambda **kw: xb.analysis.SpRAy(**kw), None),
    "GEBI": (lambda **kw: xb.analysis.GEBI(**kw), None),
}


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_every_estimator_rejects_an_unknown_option(name):
    make, expected = ESTIMATORS[name]
    if expected is None:  # scikit-learn's own reading of the constructor
        expected = tuple(make().get_params())
    with pytest.raises(TypeError) as err:
        make(**{BOGUS: 1})
    msg = str(err.value)
    assert msg.startswith(f"{name}() does not take the option {BOGUS!r}")
    assert sorted(_listed(msg)) == sorted(expected)


def test_estimators_name_the_close_option_and_stay_scikit_learn_estimators():
    with pytest.raises(TypeError, match=re.escape("SpRAy() does not take the option 'n_components' (did you mean "
                                                  "'relevance_components'?)")):
        xb.analysis.SpRAy(n_clusters=3, n_components=10)
    with pytest.raises(TypeError, match=re.escape("GEBI() does not take the option 'size'; it takes: n_clusters, ")):
        xb.analysis.GEBI(size=16)
    with pytest.raises(TypeError, match=re.escape("CAV() does not take the option 'lr'; it takes: layer, method")):
        xb.analysis.CAV("features.0", lr=0.1)
    sp = xb.analysis.SpRAy(n_clusters=3, n_neighbors=7)
    assert clone(sp).get_params() == sp.get_params() and sp.get_params()["n_neighbors"] == 7
    gb = clone(xb.analysis.GEBI(n_clusters=2, image_weight=0.5))
    assert gb.image_weight == 0.5 and "image_weight=0.5" in repr(gb)
    assert xb.analysis.CAV("features.0", method="ridge", alpha=2.0).alpha == 2.0
