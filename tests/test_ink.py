"""Rule-based ink segmentation against the exact masks of the ink painter."""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
import pytest
import torch

import xaibias as xb
from xaibias.data.ink import mask_iou, rgb_to_hsv, segment_ink

ISIC = Path(__file__).resolve().parents[1] / ".." / "shared" / "isic_sample"


def _skin_with_lesions(n: int = 24, size: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Skin-coloured images with a brown lesion in the middle (independent of the data module)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    imgs = np.empty((n, 3, size, size), np.float32)
    les = np.empty((n, size, size), bool)
    for i in range(n):
        skin = np.array([0.85, 0.63, 0.53]) + rng.normal(0, 0.03, 3)
        imgs[i] = skin[:, None, None] + rng.normal(0, 0.015, (3, size, size))
        r = rng.uniform(0.12, 0.25) * size
        les[i] = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < r * r
        imgs[i][:, les[i]] = (np.array([0.45, 0.28, 0.18]) + rng.normal(0, 0.03, 3))[:, None]
    return torch.from_numpy(imgs.clip(0, 1)), torch.from_numpy(les)


def test_rgb_to_hsv_matches_colorsys():
    rng = np.random.default_rng(0)
    px = rng.random((50, 3))
    hsv = rgb_to_hsv(torch.from_numpy(px.T.reshape(1, 3, 5, 10))).numpy().reshape(3, 50).T
    for (r, g, b), (h, s, v) in zip(px, hsv):
        eh, es, ev = colorsys.rgb_to_hsv(r, g, b)
        assert h == pytest.approx(eh * 360, abs=1e-3) and s == pytest.approx(es, abs=1e-5)
        assert v == pytest.approx(ev, abs=1e-6)


def test_segment_ink_finds_painted_marker_ink():
    imgs, les = _skin_with_lesions()
    inked, truth = xb.data.insert_artifact(imgs, "ink", seed=3, lesion_masks=les)
    seg = segment_ink(inked)
    assert seg.dtype == torch.bool and seg.shape == truth.shape
    iou = mask_iou(seg, truth)
    # exact masks include the faint anti-aliased rim, so a colour rule cannot reach 1
    assert iou.mean() > 0.6
    precision = (seg & truth).sum() / seg.sum()
    assert precision > 0.85
    # no ink on clean skin with a brown lesion
    assert segment_ink(imgs).sum() == 0


def test_pigment_coloured_ink_is_missed():
    imgs, les = _skin_with_lesions(8)
    brown, truth = xb.data.insert_artifact(imgs, "ink", seed=3, lesion_masks=les, color=(0.4, 0.25, 0.15))
    assert truth.sum() > 0
    assert mask_iou(segment_ink(brown), truth).mean() < 0.1


def test_grow_and_min_size_change_the_mask_as_documented():
    imgs, les = _skin_with_lesions(8)
    inked, truth = xb.data.insert_artifact(imgs, "ink", seed=5, lesion_masks=les)
    core = segment_ink(inked, grow=None)
    grown = segment_ink(inked)
    assert (grown & ~core).any() and not (core & ~grown).any()  # growth only adds pixels
    assert segment_ink(inked, min_size=10_000).sum() == 0  # every component smaller than that


def test_mask_iou_hand_values():
    a = torch.zeros(3, 2, 2, dtype=torch.bool)
    b = torch.zeros(3, 2, 2, dtype=torch.bool)
    a[0, 0] = True  # 2 pixels
    b[0, 0, 0] = True  # 1 of them
    a[1, 0, 0] = True
    b[1, 1, 1] = True
    assert mask_iou(a, b).tolist() == [0.5, 0.0, 1.0]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"hue": (300.0, 200.0)}, "hue must be"),
        ({"value": (0.1, 1.5)}, "value must be"),
        ({"min_saturation": 2.0}, "min_saturation must be"),
        ({"closing": -1}, "closing must be a non-negative int"),
        ({"min_size": 2.5}, "min_size must be a non-negative int"),
    ],
)
def test_segment_ink_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        segment_ink(torch.zeros(1, 3, 8, 8), **kwargs)


def test_segment_ink_bad_images():
    with pytest.raises(ValueError, match=r"images must be \(N,3,H,W\)"):
        segment_ink(torch.zeros(8, 8))
    with pytest.raises(ValueError, match=r"images must have values in \[0,1\]"):
        segment_ink(torch.full((1, 3, 4, 4), 2.0))


@pytest.mark.isic_sample
def test_segment_ink_on_real_photos_annotated_with_ink():
    if not (ISIC / "isic_bias.csv").exists():
        pytest.skip("../shared/isic_sample is not available")
    import pandas as pd
    from PIL import Image
    from sklearn.metrics import roc_auc_score

    ann = pd.read_csv(ISIC / "isic_bias.csv", sep=";", index_col=0)
    imgs = []
    for name in ann["image"]:
        im = Image.open(ISIC / "images" / name.replace(".png", ".jpg")).convert("RGB").resize((128, 128))
        imgs.append(torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1))
    share = segment_ink(torch.stack(imgs)).flatten(1).float().mean(1).numpy()
    has_ink = ann["ink"].to_numpy() == 1
    assert has_ink.sum() >= 5
    # photos annotated with ink are found far more often than photos without (purple lesions and
    # blue-grey veils give some false alarms); the share of ink pixels ranks them well above chance
    found = share > 0.005
    assert found[has_ink].mean() >= 2 * found[~has_ink].mean()
    assert roc_auc_score(has_ink, share) > 0.65


def test_ink_by_class_rates_colours_and_exact_masks():
    from xaibias.data.ink import PIGMENT_INK, ink_by_class

    imgs, les = _skin_with_lesions(60, size=32)
    labels = torch.arange(60) % 3
    names = ["A", "B", "C"]
    out, masks, flags = ink_by_class(imgs, labels, {"A": 1.0, "B": 0.0, "C": 1.0}, names,
                                     colors={"C": PIGMENT_INK}, lesion_masks=les, seed=0)
    lab = labels.numpy()
    assert flags[lab == 0].all() and not flags[lab == 1].any() and flags[lab == 2].all()
    assert (masks.flatten(1).any(1).numpy() == flags).all()  # a mask exactly where ink was painted
    # outside the masks the images are untouched
    assert torch.equal(out.permute(0, 2, 3, 1)[~masks], imgs.permute(0, 2, 3, 1)[~masks])
    # class C got the pigment colour (red above blue), class A purple/blue marker ink (blue above green)
    pigment = out.permute(0, 2, 3, 1)[masks & torch.from_numpy(lab == 2)[:, None, None]].mean(0)
    marker = out.permute(0, 2, 3, 1)[masks & torch.from_numpy(lab == 0)[:, None, None]].mean(0)
    assert pigment[0] > pigment[2] + 0.1
    assert marker[2] > marker[1] + 0.1 and marker[2] - marker[1] > pigment[2] - pigment[1] + 0.1
    again = ink_by_class(imgs, labels, {"A": 1.0, "B": 0.0, "C": 1.0}, names, colors={"C": PIGMENT_INK},
                         lesion_masks=les, seed=0)
    assert torch.equal(again[0], out) and torch.equal(again[1], masks)


def test_ink_by_class_bad_inputs():
    from xaibias.data.ink import ink_by_class

    imgs, _ = _skin_with_lesions(4, size=32)
    labels = torch.tensor([0, 1, 0, 1])
    with pytest.raises(ValueError, match="rates names unknown class"):
        ink_by_class(imgs, labels, {"X": 0.5}, ["A", "B"])
    with pytest.raises(ValueError, match="need class_names"):
        ink_by_class(imgs, labels, {"A": 0.5})
    with pytest.raises(ValueError, match=r"rates must be probabilities in \[0,1\]"):
        ink_by_class(imgs, labels, [0.5, 1.5])
    with pytest.raises(ValueError, match="labels has 3 entries"):
        ink_by_class(imgs, labels[:3], [0.5, 0.5])


def test_ablate_to_ink_keeps_only_ink():
    from xaibias.data.ink import ablate_to_ink

    x = torch.rand(2, 3, 4, 4)
    m = torch.zeros(2, 4, 4, dtype=torch.bool)
    m[0, 1, 2] = True
    out = ablate_to_ink(x, m)
    assert torch.equal(out[0, :, 1, 2], x[0, :, 1, 2])
    assert torch.allclose(out[0, :, 0, 0], x[0].mean(dim=(1, 2)))
    assert torch.allclose(out[1], x[1].mean(dim=(1, 2))[:, None, None].expand(3, 4, 4))  # no ink: flat
    with pytest.raises(ValueError, match="ink_masks must be bool"):
        ablate_to_ink(x, m.float())
