"""Tests for xaibias.mitigation: resampling, artifact augmentation and the RRR penalty."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import xaibias as xb
from xaibias.mitigation import attention_penalty, prepare, rrr_lrp_penalty, rrr_penalty
from xaibias.mitigation.methods import (
    OPTIONS,
    balanced_indices,
    make_augment,
    make_rrr_hook,
    make_rrr_lrp_hook,
)


@pytest.fixture(scope="module")
def biased():
    # frame strongly tied to malignant, ruler mildly: as in notebook 06, small
    return xb.data.SyntheticLesions(n=240, size=32, bias={"frame": (0.8, 0.1), "ruler": (0.6, 0.3)}, seed=3)


def _p_malignant(labels: np.ndarray, flags: np.ndarray) -> tuple[float, float]:
    return float(labels[flags].mean()), float(labels[~flags].mean())


def test_methods_constant():
    from xaibias.mitigation.clarc import CLARC_CORRECTIONS

    corrections = xb.mitigation.CORRECTIONS
    assert set(OPTIONS) == set(corrections) and len(set(corrections)) == len(corrections)
    # the package docstring states the tuple; it must say what the code has
    assert "CORRECTIONS == (" + ", ".join(f'"{c}"' for c in corrections) + ")" in xb.mitigation.__doc__
    # the ClArC family corrects a trained model and has no prepare step; every other one prepares training
    assert set(CLARC_CORRECTIONS) <= set(corrections)
    for method in CLARC_CORRECTIONS:
        with pytest.raises(ValueError):
            prepare(method, (torch.zeros(2, 3, 8, 8), torch.tensor([0, 1])))


# --------------------------------------------------------------------------------------------------
# resample


def test_resample_makes_class_independent_of_frame(biased):
    lab = biased.labels.numpy()
    fl = biased.artifacts["frame"].to_numpy()
    before = _p_malignant(lab, fl)
    assert before[0] - before[1] > 0.5  # the fixture really is biased
    data, extra = prepare("resample", biased, artifacts="frame")
    assert extra == {}
    lab2, fl2 = data.labels.numpy(), data.artifacts["frame"].to_numpy()
    with_frame, without = _p_malignant(lab2, fl2)
    assert with_frame == without == 0.5
    # every kept image is a real image of the original set, with its own label and mask
    assert len(data) < len(biased)
    assert torch.equal(data.masks["frame"].flatten(1).any(1), torch.from_numpy(fl2.copy()))


def test_matched_epochs_give_resample_as_many_steps(biased):
    from xaibias.mitigation import matched_epochs

    kept, _ = prepare("resample", biased, artifacts=["frame", "ruler"], seed=1)
    # what notebooks 06 and 07b computed by hand before issue 26
    assert matched_epochs("resample", biased, 6, artifacts=["frame", "ruler"], seed=1) == int(round(6 * len(biased) / len(kept)))
    assert matched_epochs("resample", biased, 6, artifacts=["frame", "ruler"], seed=1) > 6
    for method in (None, "augment", "rrr", "pclarc"):
        assert matched_epochs(method, biased, 6, artifacts=["frame"]) == 6
    with pytest.raises(TypeError, match="strategy"):
        matched_epochs("resample", biased, 6, strategi="cells")


def test_resample_joint_balancing_of_two_artifacts(biased):
    data, _ = prepare("resample", biased, artifacts=["frame", "ruler"], seed=1)
    lab = data.labels.numpy()
    for a in ("frame", "ruler"):
        fl = data.artifacts[a].to_numpy()
        p_with, p_without = _p_malignant(lab, fl)
        assert p_with == pytest.approx(p_without, abs=1e-12), a
    # deterministic with the seed, different with another seed
    again, _ = prepare("resample", biased, artifacts=["frame", "ruler"], seed=1)
    other, _ = prepare("resample", biased, artifacts=["frame", "ruler"], seed=2)
    assert torch.equal(again.images, data.images)
    assert not torch.equal(other.images, data.images)


def test_resample_keep_artifact_uses_unbiased_resample(biased):
    data, _ = prepare("resample", biased, artifacts="frame", strategy="keep_artifact")
    fl = data.artifacts["frame"].to_numpy()
    # every framed image is kept (Pfau et al.'s "unbiased" set)
    assert fl.sum() == biased.artifacts["frame"].sum()
    p_with, p_without = _p_malignant(data.labels.numpy(), fl)
    # equal up to rounding of the per-class counts (one image)
    assert abs(p_with - p_without) < 1.0 / (~fl).sum() + 1e-9


def test_balanced_indices_flags_forms():
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 0])
    flags = np.array([True, False, False, True, True, True, False, False])
    idx = balanced_indices(labels, flags, seed=0)
    # group "flag": 1 benign, 3 malignant -> 1 + 1; group "no flag": 3 benign, 1 malignant -> 1 + 1
    assert len(idx) == 4
    assert labels[idx].sum() == 2
    assert np.array_equal(np.sort(idx), idx)
    with pytest.raises(ValueError, match="flags must be bool"):
        balanced_indices(labels, flags.astype(int))
    with pytest.raises(ValueError, match="no artifact pattern occurs in every class"):
        balanced_indices(labels, labels == 1)


# --------------------------------------------------------------------------------------------------
# augment


def test_augment_keeps_labels_and_inserts_with_probability_p():
    n, p = 1000, 0.3
    images = torch.full((n, 3, 32, 32), 0.6)
    labels = torch.arange(n) % 2
    labels_before = labels.clone()
    augment = make_augment("frame", p=p)
    out = augment(images, labels, np.random.default_rng(0))
    assert torch.equal(labels, labels_before)  # the label is never touched
    assert out.shape == images.shape and torch.equal(images, torch.full_like(images, 0.6))  # input unchanged
    changed = (out != images).flatten(1).any(1).float()
    # binomial: sd = sqrt(p (1-p) / n) = 0.0145; allow 4 sd
    assert changed.mean().item() == pytest.approx(p, abs=0.06)
    for c in (0, 1):  # every class gets it at the same rate
        assert changed[labels == c].mean().item() == pytest.approx(p, abs=0.09)
    again = augment(images, labels, np.random.default_rng(0))
    assert torch.equal(out, again)  # seeded by the rng passed in
    assert not torch.equal(out, augment(images, labels, np.random.default_rng(1)))


def test_augment_p_zero_and_one():
    images = torch.full((20, 3, 32, 32), 0.6)
    labels = torch.zeros(20, dtype=torch.long)
    assert torch.equal(make_augment("frame", p=0.0)(images, labels, np.random.default_rng(0)), images)
    out = make_augment("frame", p=1.0)(images, labels, np.random.default_rng(0))
    assert bool((out != images).flatten(1).any(1).all())


def test_augment_balance_equalises_artifact_rates(biased):
    data, extra = prepare("augment", biased, artifacts="frame", p=0.4, balance=True)
    assert data is biased
    augment = extra["augment"]
    lab = biased.labels.numpy()
    rates = np.array([biased.artifacts["frame"].to_numpy()[lab == c].mean() for c in (0, 1)])
    q = np.array(augment.class_probs["frame"])
    after = rates + (1 - rates) * q
    assert after[0] == pytest.approx(after[1])  # the frame no longer tells the classes apart
    assert q[int(np.argmax(rates))] == pytest.approx(0.4)  # the most-framed class gets p
    # empirically, on blank images: class c gets the frame with probability q_c
    n = 800
    images = torch.full((n, 3, 32, 32), 0.6)
    labels = torch.arange(n) % 2
    out = augment(images, labels, np.random.default_rng(0))
    changed = (out != images).flatten(1).any(1).float()
    for c in (0, 1):
        assert changed[labels == c].mean().item() == pytest.approx(q[c], abs=0.08)


def test_augment_unbalanced_mode_needs_no_artifact_table():
    data = (torch.rand(8, 3, 32, 32), torch.arange(8) % 2)

    class Plain:
        images, labels = data

    _, extra = prepare("augment", Plain(), balance=False, p=0.5)
    assert extra["augment"].class_probs == {}
    with pytest.raises(ValueError, match="needs a training set with an .artifacts DataFrame"):
        prepare("augment", Plain(), balance=True)


# --------------------------------------------------------------------------------------------------
# rrr


class CentreOnly(nn.Module):
    """Looks only at the central 16x16 pixels of a 32x32 image: zero input gradient elsewhere."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(3 * 16 * 16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.tanh(x[:, :, 8:24, 8:24]).flatten(1))


def _border_and_centre(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    centre = torch.zeros(n, 32, 32, dtype=torch.bool)
    centre[:, 8:24, 8:24] = True
    return ~centre, centre


@pytest.mark.parametrize("grad_of", ["log_probs", "target_logit"])
def test_rrr_penalty_zero_where_gradient_vanishes_positive_otherwise(grad_of):
    model = CentreOnly()
    x = torch.rand(6, 3, 32, 32)
    y = torch.tensor([0, 1, 0, 1, 0, 1])
    border, centre = _border_and_centre(6)
    zero = rrr_penalty(model, x, border, y=y, lam=5.0, grad_of=grad_of)
    assert zero.item() == 0.0
    pos = rrr_penalty(model, x, centre, y=y, lam=5.0, grad_of=grad_of)
    assert pos.item() > 0
    # the penalty is differentiable in the weights (double back-propagation)
    pos.backward()
    assert model.fc.weight.grad is not None and model.fc.weight.grad.abs().sum() > 0
    # lam scales it linearly, lam=0 switches it off
    assert rrr_penalty(model, x, centre, y=y, lam=10.0, grad_of=grad_of).item() == pytest.approx(2 * pos.item(), rel=1e-5)
    assert rrr_penalty(model, x, centre, y=y, lam=0.0, grad_of=grad_of).item() == 0.0


def test_rrr_penalty_matches_closed_form_for_a_linear_model():
    # f(x) = W x + b: the gradient of the target logit is W[y]; the penalty is
    # lam * sum over the batch of sum_{mask} W[y]^2 / B
    torch.manual_seed(1)
    lin = nn.Linear(3 * 8 * 8, 2)
    model = nn.Sequential(nn.Flatten(), lin)
    x = torch.rand(4, 3, 8, 8)
    y = torch.tensor([0, 1, 1, 0])
    masks = torch.rand(4, 8, 8) > 0.5
    masks[3] = False  # an image without the artifact contributes nothing
    w = lin.weight.detach().reshape(2, 3, 8, 8)
    expected = sum(((w[y[i]] * masks[i]) ** 2).sum() for i in range(4)) / 4 * 3.0
    got = rrr_penalty(model, x, masks, y=y, lam=3.0, grad_of="target_logit")
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


def test_rrr_hook_looks_up_masks_by_index():
    model = CentreOnly()
    border, centre = _border_and_centre(4)
    masks = torch.cat([border[:2], centre[:2]])  # rows 0,1: border only; rows 2,3: centre
    hook = make_rrr_hook(masks, lam=1.0)
    x = torch.rand(2, 3, 32, 32)
    y = torch.tensor([0, 1])
    assert hook(model, x, y, torch.tensor([0, 1])).item() == 0.0
    assert hook(model, x, y, torch.tensor([2, 3])).item() > 0


def test_rrr_prepare_uses_dataset_masks(biased):
    data, extra = prepare("rrr", biased, artifacts=["frame", "ruler"], lam=2.0)
    assert data is biased
    hook = extra["loss_hook"]
    assert hook.lam == 2.0
    model = xb.models.make_model("small_vgg").train()
    framed = np.flatnonzero(biased.artifacts["frame"].to_numpy())[:4]
    clean = np.flatnonzero(~(biased.artifacts["frame"] | biased.artifacts["ruler"]).to_numpy())[:4]
    idx = torch.from_numpy(framed)
    assert hook(model, biased.images[idx], biased.labels[idx], idx).item() > 0
    idx = torch.from_numpy(clean)
    assert hook(model, biased.images[idx], biased.labels[idx], idx).item() == 0.0


def test_fit_or_load_correction_trains_on_what_prepare_returns(biased, monkeypatch):
    # mitigation.fit_or_load_correction must hand models.train exactly the prepared data and hooks: the resampled
    # subset (class independent of the frame), the augment callable, the rrr loss hook on the masks
    small = biased.subset(np.arange(120))
    seen = {}

    def fake_train(model, data, **kw):
        seen["data"], seen["kw"] = data, kw
        return model

    monkeypatch.setattr(xb.models, "train", fake_train)
    xb.mitigation.fit_or_load_correction("small_vgg", small, "resample", {"artifacts": ["frame"]}, epochs=1, cache=False,
                                         progress=False, device="cpu")
    expected, _ = prepare("resample", small, artifacts=["frame"])
    assert torch.equal(seen["data"].labels, expected.labels) and len(seen["data"]) < len(small)
    assert "augment" not in seen["kw"] and "loss_hook" not in seen["kw"]

    xb.mitigation.fit_or_load_correction("small_vgg", small, "augment", {"p": 0.5}, epochs=1, cache=False, progress=False)
    assert seen["data"] is small and seen["kw"]["augment"].class_probs is not None

    xb.mitigation.fit_or_load_correction("small_vgg", small, "rrr", {"lam": 3.0}, epochs=1, cache=False, progress=False)
    hook = seen["kw"]["loss_hook"]
    assert seen["data"] is small and hook.lam == 3.0
    framed = np.flatnonzero(small.artifacts["frame"].to_numpy())[:4]
    idx = torch.from_numpy(framed)
    assert hook(xb.models.make_model("small_vgg"), small.images[idx], small.labels[idx], idx).item() > 0

    xb.mitigation.fit_or_load_correction("small_vgg", small, None, epochs=1, cache=False, progress=False)
    assert "loss_hook" not in seen["kw"] and "augment" not in seen["kw"]
    with pytest.raises(ValueError, match="without a method"):
        xb.mitigation.fit_or_load_correction("small_vgg", small, None, {"lam": 1.0}, epochs=1)
    with pytest.raises(ValueError, match="hooks_key= is set by mitigation.fit_or_load_correction"):
        xb.mitigation.fit_or_load_correction("small_vgg", small, "rrr", hooks_key="x", epochs=1)


def test_fit_or_load_correction_caches_per_correction(biased):
    # one cache entry per correction and options; the same call again loads instead of training
    small = biased.subset(np.arange(64))
    kw = dict(epochs=1, batch_size=16, progress=False, device="cpu")
    folder = xb.config.cache_dir("models")
    before = set(folder.glob("small_vgg-*.pt"))
    a = xb.mitigation.fit_or_load_correction("small_vgg", small, "rrr", {"lam": 1.0}, **kw)
    b = xb.mitigation.fit_or_load_correction("small_vgg", small, "rrr", {"lam": 1.0}, **kw)
    xb.mitigation.fit_or_load_correction("small_vgg", small, "rrr", {"lam": 2.0}, **kw)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert len(set(folder.glob("small_vgg-*.pt")) - before) == 2


# --------------------------------------------------------------------------------------------------
# rrr_lrp


def _tiny(dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(4 * 8 * 8, 2)).to(dtype)


def _share(R, masks):
    r2 = R.pow(2).flatten(1)
    return (r2 * masks.flatten(1)).sum(1) / r2.sum(1)


def test_rrr_lrp_penalty_equals_the_squared_relevance_share_of_the_reference_lrp():
    # The expected value comes from the hand-written LRP of xaibias.explain.reference (plain torch,
    # no engine, no hooks), image by image with a Python loop, not from the engine the penalty uses.
    from xaibias.explain import reference

    model = _tiny()
    x = torch.rand(4, 3, 8, 8, dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 0])
    masks = torch.zeros(4, 8, 8, dtype=torch.bool)
    masks[:, :2] = True
    masks[2] = False  # no artifact: adds nothing, but still counts in B
    shares = []
    for i in range(4):
        R = reference.lrp(model, x[i:i + 1], target=int(y[i]), rules="EpsilonPlus").input[0].sum(0)  # (H,W)
        inside = sum(float(R[r, c]) ** 2 for r in range(8) for c in range(8) if masks[i, r, c])
        total = sum(float(v) ** 2 for v in R.flatten())
        shares.append(inside / total)
    assert shares[2] == 0.0 and all(0.0 < s < 1.0 for s in shares[:2] + shares[3:])
    expected = 3.0 * sum(shares) / 4
    got = rrr_lrp_penalty(model, x, masks, y=y, lam=3.0, composite="EpsilonPlus")
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # per image: each image's share times lam, 0 for the image without a mask
    each = rrr_lrp_penalty(model, x, masks, y=y, lam=3.0, composite="EpsilonPlus", per_image=True, create_graph=False)
    assert each.shape == (4,) and each.tolist() == pytest.approx([3.0 * v for v in shares], rel=1e-6)
    assert rrr_lrp_penalty(model, x, torch.zeros_like(masks), y=y, per_image=True).tolist() == [0.0] * 4
    # empty masks: exactly zero, and lam = 0 switches it off
    assert rrr_lrp_penalty(model, x, torch.zeros_like(masks), y=y).item() == 0.0
    assert rrr_lrp_penalty(model, x, masks, y=y, lam=0.0).item() == 0.0
    # y=None explains the predicted classes
    pred = model(x).argmax(1)
    assert rrr_lrp_penalty(model, x, masks, lam=3.0, composite="EpsilonPlus").item() == pytest.approx(
        rrr_lrp_penalty(model, x, masks, y=pred, lam=3.0, composite="EpsilonPlus").item(), rel=1e-12)


@pytest.mark.parametrize("composite", ["EpsilonPlus", "EpsilonPlusFlat"])
def test_rrr_lrp_penalty_gradient_matches_finite_differences(composite):
    # training goes through the map: d penalty / d parameters from autograd equals the central
    # difference of the penalty along random directions in parameter space (float64)
    model = _tiny(seed=1)
    x = torch.rand(3, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    y = torch.tensor([1, 0, 1])
    masks = torch.zeros(3, 8, 8, dtype=torch.bool)
    masks[:, :, :3] = True
    params = list(model.parameters())
    pen = rrr_lrp_penalty(model, x, masks, y=y, lam=2.0, composite=composite)
    grads = torch.autograd.grad(pen, params)
    assert all(g.abs().sum() > 0 for g in grads[-2:])  # the last layer's weight and bias get a gradient
    gen = torch.Generator().manual_seed(3)
    h = 1e-6
    for _ in range(3):
        dirs = [torch.randn(p.shape, dtype=p.dtype, generator=gen) for p in params]
        analytic = sum((g * d).sum() for g, d in zip(grads, dirs)).item()
        with torch.no_grad():
            for p, d in zip(params, dirs):
                p.add_(h * d)
            up = rrr_lrp_penalty(model, x, masks, y=y, lam=2.0, composite=composite, create_graph=False).item()
            for p, d in zip(params, dirs):
                p.sub_(2 * h * d)
            down = rrr_lrp_penalty(model, x, masks, y=y, lam=2.0, composite=composite, create_graph=False).item()
            for p, d in zip(params, dirs):
                p.add_(h * d)
        assert analytic == pytest.approx((up - down) / (2 * h), rel=1e-5, abs=1e-9)


def test_rrr_lrp_lowers_the_relevance_inside_the_mask_on_a_planted_problem():
    # class 1 is marked twice: a bright left border (the artifact, in the mask) and a bright centre
    # block. A model trained on the cross-entropy alone puts relevance on the border; with the
    # penalty, the same training from the same start puts much less there.
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 3, 8, 8, generator=g) * 0.3
    y = torch.arange(64) % 2
    x[y == 1, :, :, :2] += 0.7
    x[y == 1, :, 3:5, 3:5] += 0.7
    masks = torch.zeros(64, 8, 8, dtype=torch.bool)
    masks[:, :, :2] = True

    def train(lam):
        model = _tiny(torch.float32, seed=4)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(40):
            loss = nn.functional.cross_entropy(model(x), y) + rrr_lrp_penalty(model, x, masks, y=y, lam=lam)
            opt.zero_grad()
            loss.backward()
            opt.step()
        R = xb.explain.prepare_lrp(model, "EpsilonPlusFlat")(x, target=y)
        acc = (model(x).argmax(1) == y).float().mean().item()
        return _share(R, masks).mean().item(), acc

    plain, plain_acc = train(0.0)
    penalised, pen_acc = train(10.0)
    assert plain > 0.3  # the planted border is used (it covers 25 % of the pixels)
    assert penalised < plain / 3
    assert plain_acc == 1.0 and pen_acc == 1.0  # the centre block suffices


def test_rrr_lrp_hook_prepares_once_and_falls_back_with_a_warning():
    model = _tiny(torch.float32)
    masks = torch.zeros(4, 8, 8, dtype=torch.bool)
    masks[2:, :2] = True
    hook = make_rrr_lrp_hook(masks, lam=1.0, composite="EpsilonPlus")
    x, y = torch.rand(2, 3, 8, 8), torch.tensor([0, 1])
    assert hook(model, x, y, torch.tensor([0, 1])).item() == 0.0
    got = hook(model, x, y, torch.tensor([2, 3]))
    assert got.item() == pytest.approx(rrr_lrp_penalty(model, x, masks[2:], y=y, lam=1.0, composite="EpsilonPlus").item())
    # a model the engine cannot explain (tanh): one warning, then rrr's gradient penalty
    other = CentreOnly()
    centre = torch.zeros(2, 32, 32, dtype=torch.bool)
    centre[:, 8:24, 8:24] = True
    hook = make_rrr_lrp_hook(centre, lam=2.0)
    xb32 = torch.rand(2, 3, 32, 32)
    with pytest.warns(UserWarning, match="cannot explain CentreOnly.*gradient penalty of 'rrr'"):
        got = hook(other, xb32, y, torch.tensor([0, 1]))
    assert got.item() == pytest.approx(rrr_penalty(other, xb32, centre, lam=2.0).item())


def test_rrr_lrp_trains_the_attention_model_through_its_gate():
    # the prepared engine explains x * sigmoid(g): the penalty reaches the gate's weights, and the
    # "attention" correction with lrp_lam adds exactly the rrr_lrp penalty to the gate's
    import warnings

    model = xb.models.make_model("small_vgg_attention").double()
    torch.nn.init.normal_(model.gate.weight, std=0.3, generator=torch.Generator().manual_seed(0))
    x = torch.rand(4, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 0, 1])
    border, _ = _border_and_centre(4)
    pen = rrr_lrp_penalty(model, x, border, y=y, lam=1.0)
    (g,) = torch.autograd.grad(pen, [model.gate.weight])
    assert g.abs().sum() > 0
    hook = make_rrr_lrp_hook(border, lam=2.0, attention_lam=3.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback to the gradient penalty
        got = hook(model, x, y, torch.arange(4))
    expected = 2.0 * pen + attention_penalty(model, x, border, lam=3.0)
    assert got.item() == pytest.approx(expected.item(), rel=1e-9)


# --------------------------------------------------------------------------------------------------
# attention


class FirstChannelGate(nn.Module):
    """The gate is the image's first channel on a grid of 2x2 cells (its top-left pixels)."""

    def attention(self, x, upsample=True):
        return x[:, 0, ::2, ::2]


def test_attention_penalty_is_the_mean_gate_over_the_mask_area():
    gate = torch.tensor([[[0.2, 0.4], [0.6, 0.8]], [[1.0, 1.0], [1.0, 1.0]], [[0.5, 0.5], [0.5, 0.5]]])
    masks = torch.zeros(3, 4, 4, dtype=torch.bool)
    masks[0, :2, :2] = True      # the whole top-left cell: mean gate 0.2
    masks[0, 2, 3] = True        # a quarter of the bottom-right cell (0.8)
    masks[1] = False             # no artifact: adds nothing
    masks[2, 0, 0] = True        # one pixel: 0.5
    x = torch.rand(3, 3, 4, 4)
    x[:, 0] = gate.repeat_interleave(2, 1).repeat_interleave(2, 2)
    expected = ((0.2 * 1 + 0.8 * 0.25) / 1.25 + 0.5) / 3 * 4.0
    got = attention_penalty(FirstChannelGate(), x, masks, lam=4.0)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    assert attention_penalty(FirstChannelGate(), x, torch.zeros_like(masks)).item() == 0.0


def test_attention_training_closes_the_gate_on_the_frame(biased):
    small = biased.subset(np.arange(96))
    framed = torch.from_numpy(np.flatnonzero(small.artifacts["frame"].to_numpy()))
    kw = dict(epochs=4, batch_size=16, lr=1e-2, progress=False, device="cpu", cache=False)

    def gate_on_frame(model):
        with torch.no_grad():
            att = model.attention(small.images[framed])
        m = small.masks["frame"][framed].float()
        return ((att * m).flatten(1).sum(1) / m.flatten(1).sum(1)).mean().item()

    plain = xb.mitigation.fit_or_load_correction("small_vgg_attention", small, None, **kw)
    closed = xb.mitigation.fit_or_load_correction("small_vgg_attention", small, "attention", {"lam": 10.0}, **kw)
    assert gate_on_frame(closed) < gate_on_frame(plain) - 0.2
    with pytest.raises(ValueError, match="needs a model with an attention gate, e.g. 'small_vgg_attention'; "
                                         "'small_vgg' has none"):
        xb.mitigation.fit_or_load_correction("small_vgg", small, "attention", **kw)


# --------------------------------------------------------------------------------------------------
# bad inputs


def test_bad_inputs_give_clear_errors(biased):
    with pytest.raises(ValueError, match="unknown mitigation 'dropout'; choose one of resample, augment, rrr"):
        prepare("dropout", biased)
    with pytest.raises(TypeError, match=r"correction 'rrr' does not take the option 'lambda' \(did you mean 'lam'\?\)"):
        prepare("rrr", biased, **{"lambda": 1.0})
    with pytest.raises(ValueError, match=r"unknown artifact\(s\) \['scar'\]"):
        prepare("augment", biased, artifacts="scar")
    with pytest.raises(ValueError, match="non-empty list"):
        prepare("augment", biased, artifacts=[])
    with pytest.raises(ValueError, match=r"p must be a probability in \[0,1\]; got 1.5"):
        prepare("augment", biased, p=1.5)
    with pytest.raises(ValueError, match="balance must be True or False"):
        prepare("augment", biased, balance="yes")
    with pytest.raises(ValueError, match="lam must be a number >= 0; got -1"):
        prepare("rrr", biased, lam=-1)
    with pytest.raises(ValueError, match="grad_of must be one of"):
        prepare("rrr", biased, grad_of="saliency")
    with pytest.raises(ValueError, match="resample strategy must be one of"):
        prepare("resample", biased, strategy="oversample")
    with pytest.raises(ValueError, match="balances one artifact"):
        prepare("resample", biased, artifacts=["frame", "ruler"], strategy="keep_artifact")
    with pytest.raises(ValueError, match="ratio applies only to strategy='keep_artifact'"):
        prepare("resample", biased, ratio=0.5)
    with pytest.raises(ValueError, match="needs a training set with .images and .labels"):
        prepare("rrr", [1, 2, 3])
    tup = (biased.images, biased.labels)

    class NoMasks:
        images, labels = tup

    with pytest.raises(ValueError, match="'rrr' needs a training set with .masks"):
        prepare("rrr", NoMasks())
    with pytest.raises(ValueError, match="'resample' needs a training set with an .artifacts DataFrame"):
        prepare("resample", NoMasks())
    with pytest.raises(ValueError, match="the training set has no masks for"):
        biased_no_ruler = biased.subset(np.arange(10))
        biased_no_ruler.masks = {"frame": biased_no_ruler.masks["frame"]}
        prepare("rrr", biased_no_ruler, artifacts="ruler")
    with pytest.raises(ValueError, match="masks must be bool"):
        rrr_penalty(CentreOnly(), torch.rand(2, 3, 32, 32), torch.ones(2, 16, 16, dtype=torch.bool))
    with pytest.raises(ValueError, match="grad_of='target_logit' needs the true classes y"):
        rrr_penalty(CentreOnly(), torch.rand(2, 3, 32, 32), torch.ones(2, 32, 32, dtype=torch.bool), grad_of="target_logit")
    with pytest.raises(ValueError, match=r"composite must be one of the prepared LRP engine's .*got 'Gradient'"):
        prepare("rrr_lrp", biased, composite="Gradient")
    with pytest.raises(ValueError, match="lam must be a finite number >= 0; got -2"):
        prepare("rrr_lrp", biased, lam=-2)
    with pytest.raises(ValueError, match="lam must be a finite number >= 0; got nan"):
        prepare("attention", biased, lrp_lam=float("nan"))
    with pytest.raises(ValueError, match="'rrr_lrp' needs a training set with .masks"):
        prepare("rrr_lrp", NoMasks())
    with pytest.raises(ValueError, match=r"rrr_lrp_penalty: masks must be bool \(B,H,W\)"):
        rrr_lrp_penalty(_tiny(), torch.rand(2, 3, 8, 8, dtype=torch.float64), torch.ones(2, 4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="rrr_lrp_penalty: x must be a float tensor"):
        rrr_lrp_penalty(_tiny(), torch.ones(2, 8, 8), torch.ones(2, 8, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match="pass engine=None or prepare_lrp"):
        rrr_lrp_penalty(_tiny(), torch.rand(2, 3, 8, 8, dtype=torch.float64), torch.ones(2, 8, 8, dtype=torch.bool),
                        engine=xb.explain.prepare_lrp(_tiny()))
    with pytest.raises(ValueError, match="needs a model with an attention"):
        attention_penalty(CentreOnly(), torch.rand(2, 3, 32, 32), torch.ones(2, 32, 32, dtype=torch.bool))
    # through fit_or_load_correction the same messages reach the user
    with pytest.raises(ValueError, match="unknown mitigation"):
        xb.mitigation.fit_or_load_correction("small_vgg", biased, "nope", epochs=1, cache=False, progress=False)


# --------------------------------------------------------------------------------------------------
# warm start, painter parameters, per-image penalty


def test_rrr_penalty_per_image_sums_to_the_batch_penalty(biased):
    model = xb.models.make_model("small_vgg", seed=0).eval()
    has = biased.artifacts["frame"].to_numpy()
    pick = np.r_[np.flatnonzero(has)[:4], np.flatnonzero(~has)[:2]]
    x, masks = biased.images[pick], biased.masks["frame"][pick]
    per = rrr_penalty(model, x, masks, lam=2.0, create_graph=False, per_image=True)
    total = rrr_penalty(model, x, masks, lam=2.0, create_graph=False)
    assert per.shape == (6,) and float(per.mean()) == pytest.approx(float(total), rel=1e-5)
    assert bool((per[~masks.flatten(1).any(1)] == 0).all())
    # one image alone gives its own value: in eval mode the images do not interact
    k = int(np.flatnonzero(masks.flatten(1).any(1).numpy())[0])
    alone = rrr_penalty(model, x[k:k + 1], masks[k:k + 1], lam=2.0, create_graph=False)
    assert float(per[k]) == pytest.approx(float(alone), rel=1e-5)


def test_warm_start_fine_tunes_the_cached_baseline(biased, monkeypatch):
    small = biased.subset(np.arange(64))
    kw = dict(epochs=1, batch_size=16, progress=False, device="cpu", seed=4)
    base = xb.mitigation.fit_or_load_correction("small_vgg", small, None, **kw)
    seen = {}
    real_train = xb.models.train

    def spy(model, data, **k):
        seen["start"] = {n: p.detach().clone() for n, p in model.state_dict().items()}
        seen["kw"] = k
        return real_train(model, data, **k)

    monkeypatch.setattr(xb.models, "train", spy)
    opts = {"lam": 5.0, "warm_start": True, "finetune_epochs": 2, "finetune_lr": 3e-4}
    warm = xb.mitigation.fit_or_load_correction("small_vgg", small, "rrr", opts, **kw)
    # the fine-tuning started from the baseline's weights, with the penalty hook and the fine-tuning settings
    assert all(torch.equal(seen["start"][n], v) for n, v in base.state_dict().items())
    assert seen["kw"]["epochs"] == 2 and seen["kw"]["lr"] == 3e-4 and seen["kw"]["loss_hook"].lam == 5.0
    assert any(not torch.equal(v, warm.state_dict()[n]) for n, v in base.state_dict().items())
    # the second call loads it from the cache without training
    seen.clear()
    again = xb.mitigation.fit_or_load_correction("small_vgg", small, "rrr", opts, **kw)
    assert not seen and all(torch.equal(v, again.state_dict()[n]) for n, v in warm.state_dict().items())
    with pytest.raises(ValueError, match="finetune_epochs must be an int >= 1"):
        prepare("rrr", small, warm_start=True, finetune_epochs=0)
    with pytest.raises(ValueError, match="warm_start must be True or False"):
        prepare("rrr_lrp", small, warm_start="yes")


def test_augment_passes_painter_parameters():
    images = torch.full((60, 3, 32, 32), 0.6)
    labels = torch.zeros(60, dtype=torch.long)
    small = make_augment("patch", p=1.0)
    large = make_augment("patch", p=1.0, params={"patch": {"size": 2.0}})
    changed = [float(((aug(images, labels, np.random.default_rng(0)) - images).abs().sum(1) > 0).flatten(1).sum(1).double().mean())
               for aug in (small, large)]
    # the radius doubles (32 px: 1.9-3.8 px clipped at 2.5, doubled 3.8-7.7 px): the painted area grows about 3-5x
    assert 2.5 < changed[1] / changed[0] < 6
    with pytest.raises(ValueError, match="params names artifact 'frame', which is not one of"):
        make_augment("patch", params={"frame": {}})
    with pytest.raises(ValueError, match=r"params\['patch'\] has unknown painter parameter"):
        make_augment("patch", params={"patch": {"width": 3}})


# --------------------------------------------------------------------------------------------------
# assess: gates and comparisons with the uncorrected model


def _accuracy_rows(rates: dict, n: int = 300, seed: int = 0):
    """Per-image correctness with given accuracy per (model, set), labels balanced, two seeds."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    rows = []
    for (m, s), p in rates.items():
        for sd in (0, 1):
            rows.append(pd.DataFrame({"method": m, "set": s, "index": np.arange(n), "label": np.arange(n) % 2,
                                      "correct": rng.random(n) < p, "seed": sd}))
    return pd.concat(rows, ignore_index=True)


def test_model_gates_flag_collapsed_and_rule_explained_corrections():
    rates = {("none", "clean"): 0.75, ("none", "same"): 0.9, ("none", "reversed"): 0.4,   # a biased baseline
             ("good", "clean"): 0.8, ("good", "same"): 0.8, ("good", "reversed"): 0.78,
             ("chance", "clean"): 0.5, ("chance", "same"): 0.7, ("chance", "reversed"): 0.55,
             ("rule", "clean"): 0.62, ("rule", "same"): 0.85, ("rule", "reversed"): 0.2}
    acc = _accuracy_rows(rates)
    rule = {"clean": 0.6, "same": 0.85, "reversed": 0.15}
    gates = xb.mitigation.model_gates(acc, corrected=["good", "chance", "rule"], rule=rule, quiet=True)
    assert list(gates) == ["none", "good", "chance", "rule"]
    assert gates["none"] and gates["good"]        # the baseline is not judged on the reversed set
    assert not gates["chance"] and "reaches chance" in gates["chance"].reason
    assert not gates["rule"] and "single-artifact rule explains it" in gates["rule"].reason
    assert xb.mitigation.print_failed(gates, ["good", "chance", "rule"]) == ["chance", "rule"]
    table = xb.mitigation.accuracy_table(acc, ["clean", "reversed"], gates=gates)
    assert table.loc["chance", "clean"] == "0.500" and table.loc["rule", "gate"] == "FLAGGED"
    clean_good = acc[(acc.method == "good") & (acc.set == "clean")]["correct"].mean()
    assert table.loc["good", "clean"].startswith(f"{clean_good:.3f} [")
    with pytest.raises(ValueError, match="corrected names model"):
        xb.mitigation.model_gates(acc, corrected=["nope"], quiet=True)


def test_rule_accuracies_pool_the_seeds():
    a = xb.data.SyntheticLesions(n=60, size=32, bias={"frame": (0.8, 0.1)}, seed=1)
    b = xb.data.SyntheticLesions(n=40, size=32, bias={"frame": (0.8, 0.1)}, seed=2)
    f = np.r_[a.artifacts["frame"].to_numpy(), b.artifacts["frame"].to_numpy()]
    y = np.r_[a.labels.numpy(), b.labels.numpy()]
    got = xb.mitigation.rule_accuracies({"same": [a, b]}, "frame")
    assert got["same"] == pytest.approx(float((f.astype(int) == y).mean()))


def test_versus_reference_pairs_images_and_respects_gates():
    import pandas as pd

    rng = np.random.default_rng(0)
    base = rng.normal(40, 10, 200)
    rows = [pd.DataFrame({"method": m, "seed": 0, "index": np.arange(200), "change": v})
            for m, v in (("none", base), ("half", 0.5 * base), ("bad", 0.1 * base))]
    values = pd.concat(rows[::-1], ignore_index=True)   # the order of rows does not matter: images are matched by key
    good = xb.findings.model_gate("none", np.ones(50), quiet=True)
    bad = xb.findings.model_gate("bad", np.r_[np.ones(25), np.zeros(25)], quiet=True)
    t = xb.mitigation.versus_reference(values, "change", "none", ratio=True, what="effect",
                                       gates={"none": good, "half": good, "bad": bad})
    assert t.loc["half", "effect"] == pytest.approx(0.5) and t.loc["half", "verdict"] == "clearly lower"
    assert t.loc["half", "low"] == pytest.approx(0.5) and t.loc["half", "high"] == pytest.approx(0.5)
    assert t.loc["bad", "verdict"] == "not interpretable" and np.isnan(t.loc["bad", "effect"])
    d = xb.mitigation.versus_reference(values, "change", "none", names=["half"], what="effect")
    assert d.loc["half", "effect"] == pytest.approx(0.5 * base.mean() - base.mean())
    size = xb.mitigation.versus_reference(values.assign(change=-values["change"]), "change", "none", names=["half"],
                                          statistic=xb.mitigation.abs_mean, what="size")
    assert size.loc["half", "effect"] == pytest.approx(-0.5 * base.mean()) and size.loc["half", "verdict"] == "clearly lower"
    with pytest.raises(ValueError, match="reference 'nope' is not a model"):
        xb.mitigation.versus_reference(values, "change", "nope", what="x")


def test_artifact_effects_find_used_halved_and_worsened_artifacts():
    import pandas as pd

    rng = np.random.default_rng(1)
    n = 300
    effects = {("none", "frame"): 30.0, ("none", "patch"): 0.0, ("fix", "frame"): 3.0, ("fix", "patch"): 12.0,
               ("flip", "frame"): -15.0, ("flip", "patch"): 0.0}
    rows = [pd.DataFrame({"method": m, "artifact": a, "seed": 0, "index": np.arange(n),
                          "change_pp": rng.normal(mu, 4, n)}) for (m, a), mu in effects.items()]
    t = xb.mitigation.artifact_effects(pd.concat(rows, ignore_index=True), "none")
    assert t.attrs["used"]["frame"].higher and not t.attrs["used"]["patch"].distinguishable
    assert t.loc[("fix", "frame"), "size vs reference"] == "clearly lower" and t.loc[("fix", "frame"), "halved"] == 1
    assert t.loc[("fix", "frame"), "share of reference"] == pytest.approx(0.1, abs=0.03)
    # the patch was not used by the uncorrected model: no share, but a stronger effect is seen
    assert t.loc[("fix", "patch"), "size vs reference"] == "clearly higher"
    assert np.isnan(t.loc[("fix", "patch"), "halved"])
    # a frame effect that turned around is smaller in size but reversed in sign: flagged as such
    assert t.loc[("flip", "frame"), "size vs reference"] == "clearly lower" and t.loc[("flip", "frame"), "sign reversed"] == 1
    assert t.loc[("fix", "frame"), "sign reversed"] == 0 and t.loc[("flip", "frame"), "effect vs 0"] == "clearly lower"


class _Constant(nn.Module):
    def forward(self, x):
        return torch.stack([torch.zeros(len(x)), torch.ones(len(x))], 1)   # always 'malignant'


def test_outcomes_of_a_constant_model():
    ds = xb.data.SyntheticLesions(n=30, size=32, bias={"frame": (0.5, 0.5), "ruler": (0.5, 0.5)}, seed=0)
    x, _ = xb.data.insert_artifact(ds.images, "frame", seed=0)
    out = xb.mitigation.outcomes({"c": _Constant()}, {"clean": ds, "groups": ds}, inserted={"frame": x}, poisoned=x,
                                 groups="groups", artifacts=["frame", "ruler"], seed=5)
    acc = out["accuracy"]
    assert set(acc["set"]) == {"clean", "groups", "poisoned"} and (acc["seed"] == 5).all()
    assert acc[acc.set == "clean"]["correct"].mean() == pytest.approx(ds.labels.float().mean().item())
    assert (out["insertion"]["change_pp"] == 0).all()
    ids = xb.analysis.groups.group_ids(ds.labels, ds.artifacts[["frame", "ruler"]])
    assert out["groups"]["group"].tolist() == ids.tolist()
