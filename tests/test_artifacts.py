"""Artifact painters: exact masks, determinism, appearance, batch insertion, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from xaibias.data import ARTIFACTS, insert_artifact, paint_artifact

ISIC_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "isic_sample"


def skin_image(h: int = 64, w: int | None = None, seed: int = 0) -> torch.Tensor:
    """A mid-tone skin-like image with texture, so every painter has something to change."""
    w = h if w is None else w
    g = torch.Generator().manual_seed(seed)
    base = torch.tensor([0.8, 0.62, 0.5])[:, None, None]
    return (base + 0.05 * torch.rand(3, h, w, generator=g)).clamp(0, 1)


def lesion_at(h: int, w: int, cy: float, cx: float, r: float) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2


def check_exact(before: torch.Tensor, after: torch.Tensor, mask: torch.Tensor) -> None:
    assert after.dtype == torch.float32 and after.shape == before.shape
    assert mask.dtype == torch.bool and mask.shape == before.shape[1:]
    assert mask.any(), "painter drew nothing"
    assert torch.equal(after[:, ~mask], before[:, ~mask]), "pixels outside the mask changed"
    changed = (after != before).any(0)
    assert changed[mask].float().mean() > 0.9, "most masked pixels should actually change"
    assert float(after.min()) >= 0 and float(after.max()) <= 1


@pytest.mark.parametrize("name", ARTIFACTS)
@pytest.mark.parametrize("hw", [(64, 64), (97, 97), (64, 96), (256, 256), (512, 512)])
def test_painter_mask_is_exact_at_any_size(name, hw):
    img = skin_image(*hw)
    out, mask = paint_artifact(img, name, rng=3)
    check_exact(img, out, mask)
    assert mask.float().mean() < 0.6, f"{name} covers too much of the image"
    assert torch.equal(img, skin_image(*hw)), "the input image must not be modified"


@pytest.mark.parametrize("name", ARTIFACTS)
def test_same_seed_same_artifact_different_seed_different(name):
    img = skin_image(80)
    a, ma = paint_artifact(img, name, 7)
    b, mb = paint_artifact(img, name, np.random.default_rng(7))
    c, mc = paint_artifact(img, name, 8)
    assert torch.equal(a, b) and torch.equal(ma, mb)
    assert not torch.equal(a, c)


def test_numpy_in_numpy_out():
    img = skin_image(64).numpy()
    out, mask = paint_artifact(img, "hair", 0)
    assert isinstance(out, np.ndarray) and isinstance(mask, np.ndarray)
    assert out.dtype == np.float32 and mask.dtype == bool
    assert np.array_equal(out[:, ~mask], img[:, ~mask])


def test_frame_circle_darkens_corners_not_centre():
    img = skin_image(128)
    out, mask = paint_artifact(img, "frame", 0, style="circle")
    for y, x in [(0, 0), (0, 127), (127, 0), (127, 127)]:
        assert mask[y, x] and float(out[:, y, x].max()) < 0.1
    assert not mask[48:80, 48:80].any()


def test_frame_square_is_a_border():
    img = skin_image(100)
    out, mask = paint_artifact(img, "frame", 0, style="square", width=0.05)
    assert mask[:5].all() and mask[-5:].all() and mask[:, :5].all() and mask[:, -5:].all()
    assert not mask[5:-5, 5:-5].any()
    assert float(out[:, mask].max()) < 0.1


def test_frame_bad_style():
    with pytest.raises(ValueError, match="frame style must be 'circle' or 'square'"):
        paint_artifact(skin_image(64), "frame", 0, style="hexagon")


def test_ruler_lies_along_one_edge_and_numbers_show_at_large_size():
    img = skin_image(256)
    for edge in ("top", "left", "bottom", "right"):
        _, mask = paint_artifact(img, "ruler", 1, edge=edge)
        ys, xs = torch.nonzero(mask, as_tuple=True)
        dist = {"top": ys, "left": xs, "bottom": 255 - ys, "right": 255 - xs}[edge]
        assert int(dist.max()) < 0.2 * 256, f"ruler on the {edge} edge reaches into the image"
    # numbers are drawn in the tick colour on the light band: more dark pixels with them
    with_numbers = (paint_artifact(img, "ruler", 1, edge="top", numbers=True)[0].mean(0) < 0.4).sum()
    without = (paint_artifact(img, "ruler", 1, edge="top", numbers=False)[0].mean(0) < 0.4).sum()
    assert with_numbers > without


def test_ink_is_purple_blue_near_the_lesion_and_takes_a_colour():
    img = skin_image(128)
    lesion = lesion_at(128, 128, 35, 35, 15)
    out, mask = paint_artifact(img, "ink", 2, lesion_mask=lesion, n_strokes=3, n_dots=2)
    ys, xs = torch.nonzero(mask, as_tuple=True)
    d = torch.sqrt((ys - 35.0) ** 2 + (xs - 35.0) ** 2)
    assert float(d.median()) < 45, "ink should be drawn around the lesion"
    strong = (out - img).abs().sum(0) > 0.5
    px = out[:, strong]
    assert float((px[2] - px[1]).mean()) > 0.1, "marker ink is purple/blue (blue above green)"
    brown = (0.4, 0.25, 0.12)
    out2, mask2 = paint_artifact(img, "ink", 2, lesion_mask=lesion, color=brown)
    strong2 = (out2 - img).abs().sum(0) > 0.3
    assert float((out2[0, strong2] - out2[2, strong2]).mean()) > 0.1, "color= gives brown ink"


def test_hair_is_dark_and_bubble_is_bright():
    img = skin_image(128)
    out, mask = paint_artifact(img, "hair", 0, n=3)
    assert float(out[:, mask].mean()) < float(img[:, mask].mean()) - 0.2
    out, mask = paint_artifact(img, "bubble", 0, n=2)
    assert float(out[:, mask].mean()) > float(img[:, mask].mean()) + 0.05


@pytest.mark.parametrize("name", ["red_circle", "patch"])
def test_stickers_avoid_the_lesion(name):
    img = skin_image(128)
    lesion = lesion_at(128, 128, 64, 64, 30)
    for seed in range(10):
        _, mask = paint_artifact(img, name, seed, lesion_mask=lesion)
        assert not (mask & lesion).any()


def test_red_circle_is_a_red_ring():
    img = skin_image(128)
    out, mask = paint_artifact(img, "red_circle", 4, radius=0.1, thickness=0.3)
    strong = (out - img).abs().sum(0) > 0.5
    px = out[:, strong]
    assert float((px[0] - px[1]).mean()) > 0.5, "the ring is red"
    ys, xs = torch.nonzero(mask, as_tuple=True)
    cy, cx = int(ys.float().mean().round()), int(xs.float().mean().round())
    assert not mask[cy, cx], "a ring has a hole in the middle"


def test_unknown_artifact_lists_valid_names():
    with pytest.raises(ValueError, match="unknown artifact 'sticker'.*frame, ruler, ink, hair"):
        paint_artifact(skin_image(64), "sticker", 0)
    with pytest.raises(ValueError, match="unknown artifact"):
        insert_artifact(skin_image(64)[None], "sticker")


def test_unknown_parameter_is_named():
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['colour'\] for artifact 'ink'"):
        paint_artifact(skin_image(64), "ink", 0, colour=(1, 0, 0))


def test_bad_image_and_rng():
    with pytest.raises(ValueError, match="use insert_artifact for a batch"):
        paint_artifact(skin_image(64)[None], "hair", 0)
    with pytest.raises(ValueError, match=r"values in \[0,1\]"):
        paint_artifact(skin_image(64) * 3, "hair", 0)
    with pytest.raises(ValueError, match="rng must be an int seed or a numpy.random.Generator"):
        paint_artifact(skin_image(64), "hair", "seed")
    with pytest.raises(ValueError, match="lesion_mask must be bool"):
        paint_artifact(skin_image(64), "ink", 0, lesion_mask=torch.zeros(32, 32, dtype=torch.bool))


def test_insert_artifact_probability_and_untouched_images():
    imgs = torch.stack([skin_image(64, seed=i) for i in range(200)])
    out, masks = insert_artifact(imgs, "ruler", seed=1, p=0.5)
    assert out.shape == imgs.shape and masks.shape == (200, 64, 64) and masks.dtype == torch.bool
    got = masks.flatten(1).any(1)
    assert 70 < int(got.sum()) < 130
    assert torch.equal(out[~got], imgs[~got]), "images without the artifact are bit-identical"
    for i in torch.nonzero(got).flatten()[:20]:
        check_exact(imgs[i], out[i], masks[i])
    again = insert_artifact(imgs, "ruler", seed=1, p=0.5)
    assert torch.equal(again[0], out) and torch.equal(again[1], masks)
    assert not torch.equal(insert_artifact(imgs, "ruler", seed=2, p=0.5)[0], out)


def test_insert_artifact_p_zero_and_one():
    imgs = torch.stack([skin_image(64, seed=i) for i in range(6)])
    out, masks = insert_artifact(imgs, "frame", p=0.0)
    assert torch.equal(out, imgs) and not masks.any()
    out, masks = insert_artifact(imgs, "frame", p=1.0)
    assert masks.flatten(1).any(1).all()


def test_insert_artifact_is_per_image_deterministic():
    imgs = torch.stack([skin_image(64, seed=i) for i in range(8)])
    full = insert_artifact(imgs, "bubble", seed=5)
    part = insert_artifact(imgs[:3], "bubble", seed=5)
    assert torch.equal(full[0][:3], part[0]) and torch.equal(full[1][:3], part[1])


def test_insert_artifact_with_lesion_masks_and_params():
    imgs = torch.stack([skin_image(96, seed=i) for i in range(4)])
    lesions = torch.stack([lesion_at(96, 96, 48, 48, 20)] * 4)
    _, masks = insert_artifact(imgs, "patch", seed=0, lesion_masks=lesions, radius=0.08)
    assert not (masks & lesions).any()


def test_patch_size_scales_the_sticker_and_leaves_the_default_alone():
    img = skin_image(128)
    # default: size=1.0 is the same draw as no size at all, bit for bit
    out0, m0 = paint_artifact(img, "patch", 3)
    out1, m1 = paint_artifact(img, "patch", 3, size=1.0)
    assert torch.equal(out0, out1) and torch.equal(m0, m1)
    # a fixed radius of 0.08 * 128 = 10.24 px: the disk covers about pi r^2 pixels, four times that at size 2
    for size, r in ((1.0, 10.24), (2.0, 20.48)):
        _, m = paint_artifact(img, "patch", 5, radius=0.08, size=size)
        assert abs(int(m.sum()) - np.pi * r**2) < 0.15 * np.pi * r**2, (size, int(m.sum()))
    # through insert_artifact and over random radii: the mean area grows about fourfold
    imgs = torch.stack([skin_image(64, seed=i) for i in range(12)])
    small = insert_artifact(imgs, "patch", seed=1)[1].flatten(1).sum(1).double().mean()
    large = insert_artifact(imgs, "patch", seed=1, size=2.0)[1].flatten(1).sum(1).double().mean()
    assert 3.0 < float(large / small) < 5.0
    for bad in (0, -1.0, 5.0, True, "2"):
        with pytest.raises(ValueError, match="patch size must be a number in"):
            paint_artifact(img, "patch", 0, size=bad)


def test_insert_artifact_bad_input():
    imgs = torch.stack([skin_image(64, seed=i) for i in range(3)])
    with pytest.raises(ValueError, match=r"p must be a probability in \[0,1\]; got 1.5"):
        insert_artifact(imgs, "hair", p=1.5)
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        insert_artifact(imgs, "hair", seed=-1)
    with pytest.raises(ValueError, match=r"images must be \(N,3,H,W\)"):
        insert_artifact(imgs[0, 0], "hair")
    with pytest.raises(ValueError, match="lesion_masks must be bool"):
        insert_artifact(imgs, "ink", lesion_masks=torch.zeros(2, 64, 64, dtype=torch.bool))


@pytest.mark.isic_sample
@pytest.mark.skipif(not (ISIC_SAMPLE / "images").is_dir(), reason="needs ../shared/isic_sample (real ISIC photos)")
def test_painters_on_real_photographs():
    from PIL import Image

    files = sorted((ISIC_SAMPLE / "images").glob("*.jpg"))[:3]
    assert files, "isic_sample/images holds no .jpg"
    for k, f in enumerate(files):
        with Image.open(f) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
        img = torch.from_numpy(arr).permute(2, 0, 1).contiguous()
        for name in ARTIFACTS:
            out, mask = paint_artifact(img, name, k)
            assert torch.equal(out[:, ~mask], img[:, ~mask])
            assert mask.any()
        small = torch.nn.functional.interpolate(img[None], size=(128, 128), mode="area")
        out, masks = insert_artifact(small.clamp(0, 1), "frame", seed=k)
        assert masks.any() and torch.equal(out[:, :, ~masks[0]], small.clamp(0, 1)[:, :, ~masks[0]])
