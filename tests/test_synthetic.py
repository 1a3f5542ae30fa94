"""SyntheticLesions: shapes, determinism, class meaning, difficulty, bias rates, splits, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from xaibias.data import ARTIFACTS, SyntheticLesions, hide_lesion, reverse_bias
from xaibias.data.synthetic import BIAS_PRESETS, ISIC_CLASSES


@pytest.fixture(scope="module")
def biased():
    return SyntheticLesions(n=400, size=64, bias={"frame": (0.8, 0.1), "ruler": (0.5, 0.5)}, difficulty=0.5, seed=3)


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Mann-Whitney estimate of P(score of a positive > score of a negative)."""
    pos, neg = scores[positive], scores[~positive]
    greater = (pos[:, None] > neg[None]).mean()
    ties = (pos[:, None] == neg[None]).mean()
    return float(greater + 0.5 * ties)


def boundary_pixels(masks: torch.Tensor) -> torch.Tensor:
    """Number of mask pixels with a 4-neighbour outside the mask, per image."""
    m = torch.nn.functional.pad(masks, (1, 1, 1, 1))
    inner = m[:, 1:-1, 1:-1] & m[:, :-2, 1:-1] & m[:, 2:, 1:-1] & m[:, 1:-1, :-2] & m[:, 1:-1, 2:]
    return (masks & ~inner).flatten(1).sum(1)


def test_attributes_shapes_and_types(biased):
    ds = biased
    assert len(ds) == 400 and ds.images.shape == (400, 3, 64, 64) and ds.images.dtype == torch.float32
    assert float(ds.images.min()) >= 0 and float(ds.images.max()) <= 1
    assert ds.labels.dtype == torch.long and set(ds.labels.tolist()) == {0, 1}
    assert ds.class_names == ["benign", "malignant"]
    assert list(ds.artifacts.columns) == list(ARTIFACTS) and all(dt == np.dtype(bool) for dt in ds.artifacts.dtypes)
    assert set(ds.masks) == {"lesion", *ARTIFACTS}
    for m in ds.masks.values():
        assert m.dtype == torch.bool and m.shape == (400, 64, 64)
    assert ds.masks["lesion"].flatten(1).any(1).all(), "every image has a lesion"
    for a in ARTIFACTS:
        has = torch.tensor(ds.artifacts[a].to_numpy())
        drawn = ds.masks[a].flatten(1).any(1)
        assert torch.equal(drawn, has), f"mask of {a} must be non-empty exactly where the artifact is present"
    assert torch.bincount(ds.labels).tolist() == [200, 200]
    image, label = ds[5]
    assert torch.equal(image, ds.images[5]) and int(label) == int(ds.labels[5])
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=8)))
    assert batch[0].shape == (8, 3, 64, 64) and batch[1].shape == (8,)


def test_same_seed_same_bytes_and_other_seed_differs():
    kw = dict(n=60, size=48, bias="isic2018", difficulty=0.3)
    a, b = SyntheticLesions(seed=1, **kw), SyntheticLesions(seed=1, **kw)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert all(torch.equal(a.masks[k], b.masks[k]) for k in a.masks)
    assert a.artifacts.equals(b.artifacts)
    assert a.cache_key() == b.cache_key()
    c = SyntheticLesions(seed=2, **kw)
    assert not torch.equal(a.images, c.images) and a.cache_key() != c.cache_key()


def test_bias_rates_are_respected():
    ds = SyntheticLesions(n=2000, size=32, bias={"frame": (0.8, 0.1)}, difficulty=0.5, seed=0)
    frame, y = ds.artifacts["frame"].to_numpy(), ds.labels.numpy()
    # binomial sd ~0.013 with 1000 images per class: 4 sd bands
    assert abs(frame[y == 1].mean() - 0.8) < 0.05
    assert abs(frame[y == 0].mean() - 0.1) < 0.04
    others = ds.artifacts.drop(columns="frame").to_numpy()
    assert not others.any()
    assert ds.bias == {"frame": (0.8, 0.1)}


def test_no_bias_means_no_artifacts():
    ds = SyntheticLesions(n=50, size=32, seed=0)
    assert not ds.artifacts.to_numpy().any()
    assert not any(ds.masks[a].any() for a in ARTIFACTS)


# Bissoto et al. 2020, "Debiasing skin lesion datasets and models? Not so fast", Table 1 (ISIC 2018):
# P(artifact | malignant), P(artifact | benign), under their names; "gel border" has no painter.
BISSOTO_TABLE1 = {"dark corner": (0.451, 0.350), "hair": (0.509, 0.604), "gel bubble": (0.495, 0.487),
                  "ruler": (0.595, 0.470), "ink": (0.121, 0.183), "patches": (0.004, 0.089)}
PAINTER_OF = {"dark corner": "frame", "hair": "hair", "gel bubble": "bubble", "ruler": "ruler", "ink": "ink",
              "patches": "patch"}


def test_isic2018_preset_follows_bissoto_rates():
    preset = BIAS_PRESETS["isic2018"]
    assert set(preset) == set(PAINTER_OF.values())
    for paper_name, rates in BISSOTO_TABLE1.items():
        assert preset[PAINTER_OF[paper_name]] == pytest.approx(rates, abs=5e-4), paper_name
    ds = SyntheticLesions(n=1200, size=32, bias="isic2018", seed=0)
    assert ds.bias == preset and "gel_border" not in ds.bias
    y = ds.labels.numpy()
    for paper_name, (p_mal, p_ben) in BISSOTO_TABLE1.items():
        flags = ds.artifacts[PAINTER_OF[paper_name]].to_numpy()
        got_mal, got_ben = flags[y == 1].mean(), flags[y == 0].mean()
        # each rate within 4 binomial standard errors of the paper's (about 600 images per class)
        for got, want, n in ((got_mal, p_mal, (y == 1).sum()), (got_ben, p_ben, (y == 0).sum())):
            assert abs(got - want) <= 4 * np.sqrt(max(want * (1 - want), 0.01) / n), (paper_name, got, want)
        if abs(p_mal - p_ben) >= 0.05:  # a clear difference in the paper keeps its direction
            assert np.sign(got_mal - got_ben) == np.sign(p_mal - p_ben), paper_name


def test_multiclass_names_and_per_class_bias():
    ds = SyntheticLesions(n=140, size=48, classes=7, bias={"ink": {"SCC": 1.0}, "frame": {"MEL": 0.5, "NV": 0.5}}, seed=0)
    assert ds.class_names == list(ISIC_CLASSES)
    assert torch.bincount(ds.labels, minlength=7).tolist() == [20] * 7
    ink = ds.artifacts["ink"].to_numpy()
    scc = ds.labels.numpy() == ISIC_CLASSES.index("SCC")
    assert ink[scc].all() and not ink[~scc].any()
    assert ds.bias["ink"]["SCC"] == 1.0 and ds.bias["ink"]["MEL"] == 0.0
    three = SyntheticLesions(n=30, size=32, classes=3, seed=0)
    assert three.class_names == ["MEL", "NV", "BCC"]
    named = SyntheticLesions(n=30, size=32, classes=["NV", "SK"], bias="isic2018", seed=0)
    assert named.class_names == ["NV", "SK"] and named.bias["ruler"] == {"NV": 0.47, "SK": 0.47}


def test_multiclass_appearance_is_distinct():
    ds = SyntheticLesions(n=700, size=64, classes=7, difficulty=0.0, seed=1)
    les = ds.masks["lesion"]
    mean_rgb = torch.stack([ds.images[i][:, les[i]].mean(1) for i in range(len(ds))])
    redness = (mean_rgb[:, 0] - mean_rgb[:, 2]).numpy()
    darkness = (1 - mean_rgb.mean(1)).numpy()
    y = np.array([ds.class_names[i] for i in ds.labels])
    # BCC/SCC/Other are pink-red, NV brown: red-minus-blue is not the discriminating bit, the
    # lesion/skin contrast is: NV and SK are darker than BCC, SCC and AK
    assert darkness[y == "SK"].mean() > darkness[y == "BCC"].mean()
    assert darkness[y == "NV"].mean() > darkness[y == "AK"].mean()
    assert redness[y == "Other"].mean() > 0
    area = les.flatten(1).sum(1).float().numpy()
    assert area[y == "MEL"].mean() > area[y == "NV"].mean()


def test_malignant_lesions_are_larger_irregular_and_multicoloured():
    ds = SyntheticLesions(n=400, size=64, difficulty=0.0, seed=2)
    les, y = ds.masks["lesion"], ds.labels.numpy() == 1
    area = les.flatten(1).sum(1).float()
    compact = (boundary_pixels(les).float() ** 2 / area).numpy()  # grows with an irregular border
    colour_sd = torch.stack([ds.images[i][:, les[i]].std(1).mean() for i in range(len(ds))]).numpy()
    assert auroc(area.numpy(), y) > 0.9
    assert auroc(compact, y) > 0.9
    assert auroc(colour_sd, y) > 0.8


def test_difficulty_controls_the_overlap():
    def size_auc(d: float) -> float:
        ds = SyntheticLesions(n=600, size=48, difficulty=d, seed=4)
        area = ds.masks["lesion"].flatten(1).sum(1).float().numpy()
        return auroc(area, ds.labels.numpy() == 1)

    easy, mid, same = size_auc(0.0), size_auc(0.5), size_auc(1.0)
    assert easy > 0.95
    assert 0.6 < mid < easy
    assert abs(same - 0.5) < 0.08, "difficulty=1 must make lesion appearance uninformative"


def test_artifact_params_reach_the_painters():
    ds = SyntheticLesions(n=20, size=64, bias={"frame": (1.0, 1.0)}, artifact_params={"frame": {"style": "square", "width": 0.1}}, seed=0)
    m = ds.masks["frame"]
    assert m[:, :6].all() and m[:, :, :6].all() and not m[:, 10:-10, 10:-10].any()


def test_other_sizes_and_skin_tones():
    ds = SyntheticLesions(n=6, size=128, skin_tones=["VI"], bias={"hair": (1.0, 1.0)}, seed=0)
    assert ds.images.shape == (6, 3, 128, 128)
    skin = torch.stack([ds.images[i][:, ~(ds.masks["lesion"][i] | ds.masks["hair"][i])].mean(1) for i in range(6)])
    light = SyntheticLesions(n=6, size=128, skin_tones=["I"], seed=0)
    skin_l = torch.stack([light.images[i][:, ~light.masks["lesion"][i]].mean(1) for i in range(6)])
    assert float(skin.mean()) < float(skin_l.mean()) - 0.3
    rgb = SyntheticLesions(n=4, size=32, skin_tones=[(0.5, 0.5, 0.5)], seed=0)
    assert rgb.spec["skin_tones"] == [[0.5, 0.5, 0.5]]


def test_spec_is_jsonable_and_subset_split(biased):
    ds = biased
    assert json.loads(json.dumps(ds.spec))["bias"]["frame"] == [0.8, 0.1]
    train, test = ds.split(test_fraction=0.25, seed=0)
    assert len(train) == 300 and len(test) == 100
    assert torch.bincount(test.labels).tolist() == [50, 50], "stratified"
    keys = {ds.cache_key(), train.cache_key(), test.cache_key()}
    assert len(keys) == 3
    assert train.cache_key() == ds.split(test_fraction=0.25, seed=0)[0].cache_key()
    # train and test together are the whole set, without overlap
    both = torch.cat([train.images, test.images]).flatten(1)
    assert len(torch.unique(both, dim=0)) == 400
    sub = ds.subset([3, 1])
    assert isinstance(sub, SyntheticLesions) and torch.equal(sub.images[0], ds.images[3])
    assert torch.equal(sub.masks["frame"][1], ds.masks["frame"][1])
    assert sub.artifacts.iloc[0].equals(ds.artifacts.iloc[3].rename(0))
    sub_b = ds.subset(ds.labels == 1)
    assert len(sub_b) == 200 and (sub_b.labels == 1).all()
    with pytest.raises(ValueError, match="test_fraction must be a number in"):
        ds.split(test_fraction=1.5)
    with pytest.raises(ValueError, match="idx out of range"):
        ds.subset([400])


def test_reverse_bias():
    assert reverse_bias({"frame": (0.8, 0.1), "ruler": (0.3, 0.6)}) == {"frame": (0.1, 0.8), "ruler": (0.6, 0.3)}
    assert reverse_bias(reverse_bias("isic2018")) == BIAS_PRESETS["isic2018"]
    assert reverse_bias({"ink": {"malignant": 0.2, "benign": 0.7}}) == {"ink": (0.7, 0.2)}
    rev = SyntheticLesions(n=1000, size=32, bias=reverse_bias({"frame": (0.8, 0.1)}), seed=0)
    fr, y = rev.artifacts["frame"].to_numpy(), rev.labels.numpy()
    assert fr[y == 0].mean() > 0.7 and fr[y == 1].mean() < 0.2
    with pytest.raises(ValueError, match="unknown artifact 'stain'"):
        reverse_bias({"stain": (0.1, 0.2)})


def test_hide_lesion_fills_the_box_with_skin(biased):
    ds = biased.subset(range(40))
    hidden = hide_lesion(ds, enlarge=1.0)
    assert isinstance(hidden, SyntheticLesions) and torch.equal(hidden.labels, ds.labels)
    for i in range(40):
        les = ds.masks["lesion"][i]
        rows, cols = torch.nonzero(les.any(1)).flatten(), torch.nonzero(les.any(0)).flatten()
        box = torch.zeros_like(les)
        box[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] = True
        assert torch.equal(hidden.images[i][:, ~box], ds.images[i][:, ~box]), "outside the box nothing changes"
        skin = ds.images[i][:, ~(les | ds.masks["frame"][i] | ds.masks["ruler"][i])].median(1).values
        lesion_px = hidden.images[i][:, les]
        assert float((lesion_px.mean(1) - skin).abs().max()) < 0.05, "the lesion now looks like skin"
    bigger = hide_lesion(ds.images, ds.masks["lesion"], enlarge=1.7)
    changed_small = (hidden.images != ds.images).any(1).flatten(1).sum(1).float()
    changed_big = (bigger != ds.images).any(1).flatten(1).sum(1).float()
    ratio = (changed_big / changed_small).median()
    assert 1.4 < float(ratio) < 2.0, "a 70% larger box (area), up to pixel rounding and image borders"


def test_hide_lesion_fixed_side_removes_the_box_size_cue():
    ds = SyntheticLesions(n=300, size=48, difficulty=0.3, seed=6)
    y = ds.labels.numpy() == 1

    def changed_area(images: torch.Tensor) -> np.ndarray:
        return (images != ds.images).any(1).flatten(1).sum(1).float().numpy()

    tight = changed_area(hide_lesion(ds).images)
    fixed = changed_area(hide_lesion(ds, side=0.9).images)
    assert auroc(tight, y) > 0.75, "the lesion's own box is larger for malignant lesions"
    assert abs(auroc(fixed, y) - 0.5) < 0.1, "a fixed-size box carries no class information"


def test_hide_lesion_bad_input(biased):
    with pytest.raises(ValueError, match=r"side must be None or a fraction of the image side in \(0,1\]"):
        hide_lesion(biased, side=1.5)
    with pytest.raises(ValueError, match="enlarge must be an area factor >= 1"):
        hide_lesion(biased, enlarge=0.5)
    with pytest.raises(ValueError, match="lesion_masks is required"):
        hide_lesion(biased.images[:2])
    empty = torch.zeros(2, 64, 64, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"lesion_masks is empty for image\(s\) \[0, 1\]"):
        hide_lesion(biased.images[:2], empty)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(bias={"sticker": (0.5, 0.5)}), "bias names unknown artifact 'sticker'; valid artifacts are frame"),
        (dict(bias={"frame": (1.2, 0.1)}), r"bias rate for bias\['frame'\] P\(a\|malignant\) must be in \[0,1\]; got 1.2"),
        (dict(bias={"frame": (0.5, -0.1)}), r"P\(a\|benign\) must be in \[0,1\]"),
        (dict(bias={"frame": (0.8, 0.1, 0.3)}), r"bias\['frame'\] must be a pair .* got 3 value"),
        (dict(bias={"frame": 0.5}), r"bias\['frame'\] must be a pair"),
        (dict(bias="isic2020"), "unknown bias preset 'isic2020'"),
        (dict(bias={"frame": {"XYZ": 0.5}}), r"bias\['frame'\] names unknown class"),
        (dict(classes=7, bias={"frame": (0.5, 0.1)}), "needs binary classes"),
        (dict(n=0), "n must be an int >= 1"),
        (dict(size=16), "size must be an int >= 32"),
        (dict(classes=1), r"classes must be an int in 2..7"),
        (dict(classes=8), r"classes must be an int in 2..7"),
        (dict(classes=["NV", "XYZ"]), r"classes contains unknown class name\(s\) \['XYZ'\]"),
        (dict(classes=["malignant", "benign"]), "binary classes must be in the order"),
        (dict(difficulty=1.5), r"difficulty must be a number in \[0,1\]"),
        (dict(seed=-1), "seed must be a non-negative int"),
        (dict(skin_tones=["VII"]), "skin_tones has unknown tone 'VII'"),
        (dict(artifact_params={"frame": {"colour": 1}}), r"artifact_params\['frame'\] has unknown painter parameter"),
    ],
)
def test_bad_arguments_name_the_problem(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SyntheticLesions(**{"n": 4, "size": 32, **kwargs})


def test_co_occurrence_counts_by_hand():
    ds = SyntheticLesions(n=120, size=32, bias={"frame": (0.7, 0.2)}, seed=4)
    t = ds.co_occurrence("frame")
    flags, y = ds.artifacts["frame"].to_numpy(), ds.labels.numpy()
    assert t.loc["frame", "malignant"] == int((flags & (y == 1)).sum())
    assert t.loc["no frame", "benign"] == int((~flags & (y == 0)).sum())
    assert int(t[["benign", "malignant"]].to_numpy().sum()) == len(ds)
    assert t.loc["frame", "P(malignant)"] == round((flags & (y == 1)).sum() / flags.sum(), 3)
    sub = ds.subset(np.flatnonzero(flags))  # subsets keep the method
    assert sub.co_occurrence("frame").loc["no frame"].iloc[:2].sum() == 0
    with pytest.raises(ValueError, match="no artifact column 'ink_blot'"):
        ds.co_occurrence("ink_blot")
