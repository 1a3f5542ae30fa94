"""Concept relevance (xaibias.explain.crp): conservation over concepts, residual shortcuts, shapes,
reference images and their cache, and the error messages."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.models.resnet import BasicBlock

import xaibias as xb
from xaibias.explain import crp

SIZE = 16


class TinyVGG(torch.nn.Module):
    """conv-BN-ReLU(inplace)-pool twice, then two linear layers (the layout of a small VGG)."""

    def __init__(self) -> None:
        super().__init__()
        nn = torch.nn
        self.features = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(4, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(6 * 4 * 4, 8), nn.ReLU(), nn.Linear(8, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class TinyResNet(torch.nn.Module):
    """A stem and two torchvision BasicBlocks, the second with a stride-2 1x1 shortcut conv."""

    def __init__(self) -> None:
        super().__init__()
        nn = torch.nn
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        self.layer1 = nn.Sequential(BasicBlock(4, 4))
        down = nn.Sequential(nn.Conv2d(4, 8, 1, stride=2, bias=False), nn.BatchNorm2d(8))
        self.layer2 = nn.Sequential(BasicBlock(4, 8, stride=2, downsample=down))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer2(self.layer1(self.relu(self.bn1(self.conv1(x)))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _vgg(bias: bool = True) -> torch.nn.Module:
    torch.manual_seed(0)
    m = TinyVGG().eval()
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):  # non-trivial batch norms to merge
            mod.weight.data.uniform_(0.5, 1.5)
            mod.running_var.uniform_(0.5, 2.0)
            if bias:
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.bias.data.uniform_(-0.1, 0.1)
        if not bias and isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)) and mod.bias is not None:
            mod.bias.data.zero_()
    return m


def _resnet() -> torch.nn.Module:
    # torchvision BasicBlocks (zennit's ResNetCanonizer applies); convolutions have no bias and the
    # batch norms keep mean 0 / shift 0, so LRP conserves relevance up to epsilon.
    torch.manual_seed(0)
    m = TinyResNet().eval()
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.weight.data.uniform_(0.5, 1.5)
            mod.running_var.uniform_(0.5, 2.0)
        if isinstance(mod, torch.nn.Linear):
            mod.bias.data.zero_()
    return m


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


def _all(model, images, layer):
    c = crp.concept_relevance(model, images[:1], layer).shape[1]
    return list(range(c))


def test_vgg_concept_heatmaps_add_up_to_the_lrp_heatmap(images):
    model = _vgg()
    layer = "features.4"
    hm = crp.conditional_heatmaps(model, images, layer, _all(model, images, layer), target=2, batch_size=64)
    plain = xb.explain.attribute(model, images, target=2, method="lrp", composite="EpsilonPlusFlat")
    assert hm.shape == (3, 6, SIZE, SIZE)
    # no shortcut around the layer: every bit of relevance passes through one of its channels
    torch.testing.assert_close(hm.sum(1), plain, rtol=1e-4, atol=1e-6 * plain.abs().max().item())


def test_vgg_concept_relevance_is_conserved_to_the_input(images):
    # without biases LRP (EpsilonPlusFlat) conserves: the relevance of a concept at the layer
    # equals the total of its input heatmap, and the concepts add up to the layer's total
    model = _vgg(bias=False)
    layer = "features.4"
    rel = crp.concept_relevance(model, images, layer, target=0)
    hm = crp.conditional_heatmaps(model, images, layer, _all(model, images, layer), target=0, batch_size=64)
    torch.testing.assert_close(hm.sum((2, 3)), rel, rtol=1e-3, atol=1e-4 * rel.abs().max().item())
    torch.testing.assert_close(hm.sum((1, 2, 3)), rel.sum(1), rtol=1e-3, atol=0.0)


@pytest.mark.parametrize("layer", ["layer2.0.conv2", "layer2.0.conv1"])
def test_residual_exact_conditioning_removes_the_shortcut(images, layer):
    model = _resnet()
    concepts = _all(model, images, layer)
    rel = crp.concept_relevance(model, images, layer, target=1)
    exact = crp.conditional_heatmaps(model, images, layer, concepts, target=1, batch_size=128)
    naive = crp.conditional_heatmaps(model, images, layer, concepts, target=1, batch_size=128, exact=False)
    plain = xb.explain.attribute(model, images, target=1, method="lrp", composite="EpsilonPlusFlat")

    # with the subtraction, the concepts of a branch layer add up to the relevance through it
    scale = rel.abs().sum(1)
    torch.testing.assert_close(exact.sum((1, 2, 3)), rel.sum(1), rtol=1e-3, atol=1e-3 * scale.max().item())
    torch.testing.assert_close(exact.sum((2, 3)), rel, rtol=1e-3, atol=1e-3 * scale.max().item())
    # the plain zennit-crp heatmaps each carry the whole shortcut relevance ...
    shortcut = naive[:, 0] - exact[:, 0]
    assert torch.allclose(naive - exact, shortcut[:, None].expand_as(naive), atol=1e-7)
    assert (shortcut.sum((1, 2)).abs() > 0.5 * rel.sum(1).abs()).all()
    assert (naive.sum((1, 2, 3)) - rel.sum(1)).abs().min() > 2 * (exact.sum((1, 2, 3)) - rel.sum(1)).abs().max()
    # ... and through-layer plus shortcut is the ordinary LRP heatmap, pixel by pixel
    torch.testing.assert_close(exact.sum(1) + shortcut, plain, rtol=1e-3, atol=1e-4 * plain.abs().max().item())


def test_residual_block_output_has_no_bypass(images):
    model = _resnet()
    layer = "layer1.0"  # everything flows through a block's output
    concepts = _all(model, images, layer)
    exact = crp.conditional_heatmaps(model, images, layer, concepts, target=0, batch_size=128)
    naive = crp.conditional_heatmaps(model, images, layer, concepts, target=0, batch_size=128, exact=False)
    torch.testing.assert_close(exact, naive)


def test_shapes_top_concepts_and_per_image_concepts(images):
    model = _vgg()
    rel = crp.concept_relevance(model, images, "features.0", target=[0, 1, 2])
    assert rel.shape == (3, 4) and rel.dtype == torch.float32
    top = crp.top_concepts(relevance=rel, k=2)
    assert top.ids.shape == (3, 2) and top.relevance.shape == (3, 2)
    share = rel / rel.abs().sum(1, keepdim=True)
    assert torch.equal(top.ids[:, 0], share.argmax(1))
    assert (top.relevance[:, 0] >= top.relevance[:, 1]).all()
    overall = crp.top_concepts(relevance=rel, k=3, per_image=False)
    assert overall.ids.shape == (3,) and int(overall.ids[0]) == int(share.mean(0).argmax())
    normed = crp.concept_relevance(model, images, "features.0", target=[0, 1, 2], normalize=True)
    torch.testing.assert_close(normed.abs().sum(1), torch.ones(3))
    # per-image concept ids: row i of the result belongs to image i
    hm = crp.conditional_heatmaps(model, images, "features.0", top.ids, target=[0, 1, 2])
    assert hm.shape == (3, 2, SIZE, SIZE)
    one = crp.conditional_heatmaps(model, images[1:2], "features.0", [int(top.ids[1, 1])], target=1)
    torch.testing.assert_close(hm[1:2, 1:2], one)
    # linear layers are concepts too
    assert crp.concept_relevance(model, images, "classifier.1").shape == (3, 8)


def test_deterministic_and_model_left_as_it_was(images):
    model = _vgg()
    model.train()
    model.features[0].weight.requires_grad_(True)
    a = crp.concept_relevance(model, images, "features.4", target=1)
    b = crp.concept_relevance(model, images, "features.4", target=1)
    assert torch.equal(a, b)
    assert model.training and model.features[0].weight.requires_grad
    # the training-mode batch norm was not used: same as in eval mode
    torch.testing.assert_close(crp.concept_relevance(model.eval(), images, "features.4", target=1), a)
    assert not any(m._forward_hooks or m._backward_hooks for m in model.modules())


def test_predicted_class_is_the_default_target(images):
    model = _vgg()
    pred = xb.models.predict_proba(model, images).argmax(1)
    torch.testing.assert_close(crp.concept_relevance(model, images, "features.4"),
                               crp.concept_relevance(model, images, "features.4", target=pred))


def test_bad_inputs_name_the_argument(images):
    model = _vgg()
    with pytest.raises(ValueError, match=r"layer 'features\.99' is not a module.*'features\.0'"):
        crp.concept_relevance(model, images, "features.99")
    with pytest.raises(ValueError, match=r"concepts must be channel ids in \[0, 4\).*\[0, 7\]"):
        crp.conditional_heatmaps(model, images, "features.0", [0, 7])
    with pytest.raises(ValueError, match=r"concepts of shape \(N, k\) must have one row per image \(N=3\)"):
        crp.conditional_heatmaps(model, images, "features.0", torch.zeros(2, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="concepts must be channel ids"):
        crp.conditional_heatmaps(model, images, "features.0", [0.5])
    with pytest.raises(ValueError, match="target class out of range: the model has 3 outputs"):
        crp.concept_relevance(model, images, "features.0", target=5)
    with pytest.raises(ValueError, match=r"images must be \(N,3,H,W\)"):
        crp.concept_relevance(model, images[0], "features.0")
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        crp.concept_relevance(model, images, "features.0", batch_size=0)
    with pytest.raises(ValueError, match="unknown composite 'Nope'"):
        crp.concept_relevance(model, images, "features.0", composite="Nope")
    with pytest.raises(ValueError, match=r"k must be an int between 1 and the number of concepts \(4\)"):
        crp.top_concepts(model, images, "features.0", k=9)
    with pytest.raises(ValueError, match="needs either relevance"):
        crp.top_concepts(k=2)
    ds = (images, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="mode must be 'relevance' or 'activation'; got 'max'"):
        crp.reference_images(model, ds, "features.0", [0], mode="max")
    with pytest.raises(ValueError, match="n_ref must be an int between 1 and 40"):
        crp.reference_images(model, ds, "features.0", [0], n_ref=41)
    with pytest.raises(ValueError, match="dataset must have .images and .labels"):
        crp.reference_images(model, images, "features.0", [0])
    with pytest.raises(ValueError, match="dataset labels has 2 entries but 3 were expected"):
        crp.reference_images(model, (images, torch.tensor([0, 1])), "features.0", [0])


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("XAIBIAS_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_reference_images_rank_by_normalised_activation_and_relevance(cache):
    model = _vgg()
    g = torch.Generator().manual_seed(3)
    imgs = torch.rand(24, 3, SIZE, SIZE, generator=g)
    imgs[:6] *= 0.2  # some dim images, so the rankings are not all alike
    labels = torch.randint(0, 3, (24,), generator=g)
    layer = "features.4"
    rel = crp.concept_relevance(model, imgs, layer, target=labels, normalize=True)
    concepts = rel.mean(0).topk(2).indices.tolist()  # the two most relevant channels

    # the canonizer merges the batch norm features.5 into the convolution features.4, so the
    # concept's activation is the batch norm's output
    acts = {}
    h = dict(model.named_modules())["features.5"].register_forward_hook(lambda m, i, o: acts.update(a=o.detach().clone()))
    with torch.no_grad():
        model(imgs)
    h.remove()
    a = acts["a"].sum((2, 3))
    a = a / (a.abs().sum(1, keepdim=True) + 1e-10)
    ref = crp.reference_images(model, (imgs, labels), layer, concepts, mode="activation", n_ref=5)
    assert ref.images.shape == (2, 5, 3, SIZE, SIZE) and ref.indices.shape == (2, 5)
    for j, c in enumerate(concepts):
        assert ref.indices[j].tolist() == a[:, c].argsort(descending=True)[:5].tolist()
        torch.testing.assert_close(ref.images[j], imgs[ref.indices[j]])
        torch.testing.assert_close(ref.scores[j], a[ref.indices[j], c], rtol=1e-4, atol=1e-6)

    ref = crp.reference_images(model, (imgs, labels), layer, concepts, mode="relevance", n_ref=5, heatmaps=True)
    for j, c in enumerate(concepts):
        # compare values, not indices: images where the concept gets no relevance tie at zero
        best = rel[:, c].sort(descending=True).values[:5]
        torch.testing.assert_close(ref.scores[j], best, rtol=1e-3, atol=1e-5)
        torch.testing.assert_close(rel[ref.indices[j], c], best, rtol=1e-3, atol=1e-5)
    assert (ref.scores[:, 0] > 0).all()
    assert ref.heatmaps.shape == (2, 5, SIZE, SIZE)
    assert (ref.heatmaps.abs().sum((2, 3)) > 0).all()


def test_reference_images_are_cached_in_the_xaibias_cache(cache, monkeypatch):
    model = _vgg()
    imgs = torch.rand(10, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(4))
    labels = torch.arange(10) % 3
    first = crp.reference_images(model, (imgs, labels), "features.0", [1], n_ref=3)
    folders = list((cache / "cache" / "crp").iterdir())
    assert len(folders) == 1 and folders[0].name.startswith("fv-") and not folders[0].name.endswith(".tmp")
    assert not (cache / "FeatureVisualization").exists()  # zennit-crp's default folder in the cwd

    def boom(*a, **k):
        raise AssertionError("FeatureVisualization ran again despite the cache")

    monkeypatch.setattr(crp, "_run_feature_visualization", boom)
    again = crp.reference_images(model, (imgs, labels), "features.0", [1], n_ref=3)
    assert torch.equal(first.indices, again.indices)
    # different weights -> a different cache entry, computed afresh
    other = _vgg()
    other.features[0].weight.data.mul_(-1)
    with pytest.raises(AssertionError, match="ran again"):
        crp.reference_images(other, (imgs, labels), "features.0", [1], n_ref=3)
