import urllib.error

import pytest
import torch

import xaibias as xb
from xaibias import models


def _toy(n=64, size=32, seed=0):
    # class 1 has a bright square in the top-left corner: trivially learnable
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=g) * 0.5
    y = torch.arange(n) % 2
    x[y == 1, :, :8, :8] = 1.0
    return x, y


@pytest.mark.parametrize("name", [m for m in models.MODELS])
def test_every_model_builds_and_runs_on_small_inputs(name):
    m = models.make_model(name, num_classes=3)
    with torch.no_grad():
        out = m(torch.rand(1, 3, 64, 64))
    assert out.shape == (1, 3)
    assert not m.training


def test_make_model_is_seeded_and_validates():
    a = models.make_model("small_vgg", seed=1).state_dict()
    b = models.make_model("small_vgg", seed=1).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="unknown model 'tiny'"):
        models.make_model("tiny")
    with pytest.raises(ValueError, match="num_classes must be an int >= 2"):
        models.make_model("small_vgg", num_classes=1)
    with pytest.raises(ValueError, match="has no pretrained weights"):
        models.make_model("small_vgg", pretrained=True)


def test_pretrained_offline_gives_clear_message(monkeypatch):
    def offline(*a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(RuntimeError, match="could not download ImageNet weights for 'resnet50'.*pretrained=False"):
        models.make_model("resnet50", pretrained=True)


def test_train_learns_toy_task_and_evaluate_reports():
    x, y = _toy()
    m = models.train(models.make_model("small_vgg"), (x, y), epochs=4, lr=5e-3, batch_size=16, progress=False)
    res = models.evaluate(m, (x, y))
    assert res["accuracy"] >= 0.9 and res["auroc"] >= 0.9 and res["n"] == 64
    p = models.predict_proba(m, x[:5])
    assert p.shape == (5, 2) and torch.allclose(p.sum(1), torch.ones(5))
    one = models.evaluate(m, (x[y == 1], y[y == 1]))
    assert "single class" in one["note"]


def test_augment_and_loss_hook_are_called():
    x, y = _toy(n=32)
    calls = {"aug": 0, "hook": 0}

    def aug(images, labels, rng):
        calls["aug"] += 1
        return images.flip(-1)

    def hook(model, xb_, yb, idx):
        calls["hook"] += 1
        assert len(idx) == len(xb_)
        return torch.zeros(())

    models.train(models.make_model("small_vgg"), (x, y), epochs=1, batch_size=16, augment=aug, loss_hook=hook,
                 progress=False)
    assert calls == {"aug": 2, "hook": 2}
    with pytest.raises(ValueError, match=r"augment\(images\) output must have values in \[0,1\]"):
        models.train(models.make_model("small_vgg"), (x, y), epochs=1, augment=lambda a, b, r: a * 5, progress=False)


def test_fit_or_load_caches_and_survives_corrupt_file(monkeypatch):
    x, y = _toy(n=32)
    earlier = set(xb.config.cache_dir("models").glob("small_vgg-*.pt"))  # other tests share the cache
    m1 = models.fit_or_load("small_vgg", (x, y), epochs=1, batch_size=16, progress=False)
    files = list(set(xb.config.cache_dir("models").glob("small_vgg-*.pt")) - earlier)
    assert len(files) == 1

    def boom(*a, **k):
        raise AssertionError("should have loaded from the cache")

    with monkeypatch.context() as mp:  # (a plain undo() would also drop the private cache folder)
        mp.setattr(models, "train", boom)
        m2 = models.fit_or_load("small_vgg", (x, y), epochs=1, batch_size=16, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))
    files[0].write_bytes(b"garbage")
    m3 = models.fit_or_load("small_vgg", (x, y), epochs=1, batch_size=16, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m3.state_dict().values()))
    # another hyper-parameter -> another cache entry
    models.fit_or_load("small_vgg", (x, y), epochs=1, batch_size=8, progress=False)
    assert len(set(xb.config.cache_dir("models").glob("small_vgg-*.pt")) - earlier) == 2


def test_as_tensors_accepts_torch_dataset_and_rejects_garbage():
    x, y = _toy(n=4)
    ds = torch.utils.data.TensorDataset(x, y)
    a, b = models.as_tensors(ds)
    assert torch.equal(a, x) and torch.equal(b, y)
    with pytest.raises(TypeError, match="expected a dataset with .images and .labels"):
        models.as_tensors(42)
    with pytest.raises(ValueError, match="labels has 3 entries but 4 were expected"):
        models.as_tensors((x, y[:3]))


def test_last_conv_layer():
    assert models.last_conv_layer(models.make_model("small_vgg")) == "features.14"
    with pytest.raises(ValueError, match="has no Conv2d layer"):
        models.last_conv_layer(torch.nn.Linear(2, 2))


def test_cache_key_follows_the_training_code(tmp_path, monkeypatch):
    # a copy of the package sources: editing a file in TRAINING_CODE changes the digest, editing a
    # file outside it (plotting) does not, and a missing part is an error, not a constant key
    import shutil

    from xaibias import _cache

    src = tmp_path / "pkg"
    shutil.copytree(_cache.PACKAGE_ROOT, src, ignore=shutil.ignore_patterns("__pycache__"))
    before = _cache.source_hash(*models.TRAINING_CODE, root=src)
    assert before == _cache.source_hash(*models.TRAINING_CODE, root=src)
    (src / "viz.py").write_text((src / "viz.py").read_text() + "\n# a comment\n")
    assert _cache.source_hash(*models.TRAINING_CODE, root=src) == before
    painter = src / "data" / "artifacts.py"
    painter.write_text(painter.read_text() + "\n# a painter changed\n")
    assert _cache.source_hash(*models.TRAINING_CODE, root=src) != before
    with pytest.raises(FileNotFoundError, match="neither a file nor a folder"):
        _cache.source_hash("no_such_module.py", root=src)

    # and fit_or_load: a model cached under one code version is not loaded under another
    x, y = _toy(n=32, seed=5)
    models.fit_or_load("small_vgg", (x, y), epochs=1, batch_size=16, progress=False)
    cached = set(xb.config.cache_dir("models").glob("small_vgg-*.pt"))
    monkeypatch.setattr(models, "training_code_version", lambda: "another-version")
    calls = []
    real_train = models.train
    monkeypatch.setattr(models, "train", lambda *a, **k: calls.append(1) or real_train(*a, **k))
    models.fit_or_load("small_vgg", (x, y), epochs=1, batch_size=16, progress=False)
    assert calls == [1]
    assert len(set(xb.config.cache_dir("models").glob("small_vgg-*.pt")) - cached) == 1


def test_readme_example_learns_the_frame():
    # the README's first example, as written there; the model must lean on the frame
    import numpy as np

    ds = xb.data.SyntheticLesions(n=2000, size=64, bias={"frame": (0.8, 0.1)}, seed=0)
    train, test = ds.split(test_fraction=0.25, seed=0)
    model = xb.models.fit_or_load("small_vgg", train, epochs=5, seed=0, progress=False)
    reversed_set = xb.data.SyntheticLesions(n=500, size=64, bias=xb.data.reverse_bias({"frame": (0.8, 0.1)}), seed=1)
    same = xb.models.evaluate(model, test)["accuracy"]
    rev = xb.models.evaluate(model, reversed_set)["accuracy"]
    assert same >= 0.8 and same - rev >= 0.2, (same, rev)
    benign = test.subset(np.where((test.labels.numpy() == 0) & ~test.artifacts["frame"].values)[0])
    framed, _ = xb.data.insert_artifact(benign.images, "frame", seed=0)
    shift = (xb.models.predict_proba(model, framed)[:, 1] - xb.models.predict_proba(model, benign.images)[:, 1]).mean()
    assert shift >= 0.25, f"a pasted frame moved P(malignant) by only {shift:.3f}"


# --------------------------------------------------------------------------------------------------
# small_vgg_attention


def test_attention_model_gate_starts_uniform_and_gates_the_features():
    m = models.make_model("small_vgg_attention")
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        att, cells = m.attention(x), m.attention(x, upsample=False)
        # zero-initialised 1x1 gate: sigmoid(0) = 0.5 at every cell
        assert cells.shape == (3, 8, 8) and torch.all(cells == 0.5)
        assert att.shape == (3, 32, 32)
        # by hand: the forward is the gated features through the rest of the network
        h = m.features(x)
        gate = torch.sigmoid(m.gate(h))
        expected = m.classifier(m.avgpool(m.deep(h * gate)))
        assert torch.allclose(m(x), expected)
        # a trained-looking gate: each upsampled pixel carries the value of its 4x4 cell
        torch.nn.init.normal_(m.gate.weight, std=0.5)
        cells, att = m.attention(x, upsample=False), m.attention(x)
        assert torch.equal(att, cells.repeat_interleave(4, 1).repeat_interleave(4, 2))
        assert float(cells.min()) >= 0 and float(cells.max()) <= 1 and cells.std() > 0
        # a closed gate (sigmoid(-60) ~ 1e-26) silences the features: every image gets the same logits
        torch.nn.init.zeros_(m.gate.weight)
        torch.nn.init.constant_(m.gate.bias, -60.0)
        out = m(x)
        assert torch.allclose(out, out[:1].expand_as(out), atol=1e-6)
    with pytest.raises(ValueError, match=r"attention\(x\) needs images \(N,3,H,W\)"):
        m.attention(torch.rand(3, 32, 32))
