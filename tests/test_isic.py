"""Tests of the real-data loaders on fixtures written in the exact formats, and on ../shared/isic_sample."""

from __future__ import annotations

import importlib.util
import sys
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
import isic_fixtures as fx  # noqa: E402

from xaibias.data import DermaMNIST, ISICDataset, images, isic, load_artifact_annotations, registry  # noqa: E402  # noqa: E402
from xaibias.data.annotations import ANNOTATION_TO_ARTIFACT  # noqa: E402
from xaibias.data.dermamnist import DERMAMNIST_CLASSES  # noqa: E402
from xaibias.data.registry import download_dataset  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared" / "isic_sample"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XAIBIAS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("XAIBIAS_DATA", str(tmp_path / "data"))


def _mean_rgb(img: torch.Tensor) -> np.ndarray:
    return (img.mean(dim=(1, 2)) * 255).numpy()


def _folder(tmp_path: Path, n: int = 6, ext: str = ".jpg") -> tuple[Path, list[str]]:
    root = tmp_path / "isic"
    ids = fx.ids_for(n)
    fx.write_images(root / "images", ids, ext)
    return root, ids


# --------------------------------------------------------------------------- layouts and labels

DX2018 = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
DX2019 = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC"]


def test_isic2016_headerless_text_and_numeric(tmp_path):
    root, ids = _folder(tmp_path, 4)
    mal = [True, False, False, True]
    for numeric in (False, True):
        csv = fx.write_2016(root / f"gt{int(numeric)}.csv", ids, mal, numeric=numeric)
        ds = ISICDataset(root, csv=csv, size=16)
        assert ds.layout == "isic2016"
        assert ds.labels.tolist() == [1, 0, 0, 1]
        assert ds.class_names == ("benign", "malignant")
        assert ds.image_ids == ids


def test_isic2017_binary_and_multiclass(tmp_path):
    root, ids = _folder(tmp_path, 6)
    dx = ["MEL", "NV", "SK", "MEL", "SK", "NV"]
    csv = fx.write_2017(root / "ISIC-2017_Training_Part3_GroundTruth.csv", ids, dx)
    ds = ISICDataset(root, size=16)  # the CSV is found and its layout detected
    assert ds.layout == "isic2017" and ds.source == csv
    assert ds.labels.tolist() == [1, 0, 0, 1, 0, 0]  # only melanoma is malignant in 2017
    multi = ISICDataset(root, size=16, binary=False)
    assert multi.class_names == ("MEL", "NV", "SK")
    assert [multi.class_names[k] for k in multi.labels] == dx


def test_isic2018_onehot_binary_mapping(tmp_path):
    root, ids = _folder(tmp_path, 7)
    fx.write_onehot(root / "gt.csv", [f"{i}.jpg" for i in ids], DX2018, DX2018)  # ids with extension too
    ds = ISICDataset(root, size=16)
    assert ds.layout == "isic2018"
    # MEL, BCC, AKIEC malignant; NV, BKL, DF, VASC benign
    assert ds.labels.tolist() == [1, 0, 1, 1, 0, 0, 0]
    multi = ISICDataset(root, size=16, binary=False)
    assert multi.class_names == tuple(DX2018)
    assert multi.labels.tolist() == list(range(7))
    assert multi.meta["diagnosis"].tolist() == DX2018
    assert multi.image_ids == ids


def test_isic2019_unk_dropped_with_count(tmp_path):
    root, ids = _folder(tmp_path, 10)
    dx = [*DX2019, "UNK", "UNK"]
    fx.write_onehot(root / "ISIC_2019_Training_GroundTruth.csv", ids, dx, [*DX2019, "UNK"])
    with pytest.warns(UserWarning, match=r"UNK"):
        ds = ISICDataset(root, size=16)
    assert ds.layout == "isic2019"
    assert len(ds) == 8 and ds.dropped == {"no benign/malignant label (UNK)": 2}
    assert ds.labels.tolist() == [1, 0, 1, 1, 0, 0, 0, 1]  # SCC and AK malignant
    with pytest.warns(UserWarning, match="unknown diagnosis"):
        multi = ISICDataset(root, size=16, binary=False)
    assert multi.class_names == tuple(DX2019) and multi.dropped == {"unknown diagnosis": 2}
    assert "UNK" not in multi.meta["diagnosis"].tolist()


def test_isic2020_target_and_multiclass_diagnosis(tmp_path):
    root, ids = _folder(tmp_path, 5)
    diag = ["unknown", "melanoma", "nevus", "unknown", "seborrheic keratosis"]
    fx.write_2020(root / "ISIC_2020_Training_GroundTruth.csv", ids, diag, [0, 1, 0, 0, 0])
    ds = ISICDataset(root, size=16)
    assert ds.layout == "isic2020"
    assert ds.labels.tolist() == [0, 1, 0, 0, 0]  # 'unknown' diagnosis is still benign by target
    assert ds.meta["patient_id"].tolist()[1] == "IP_0000001"
    with pytest.warns(UserWarning, match="unknown diagnosis"):
        multi = ISICDataset(root, size=16, binary=False)
    assert multi.class_names == ("melanoma", "nevus", "seborrheic keratosis")
    assert multi.image_ids == [ids[1], ids[2], ids[4]]


def test_ham10000_metadata(tmp_path):
    root, ids = _folder(tmp_path, 7)
    codes = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
    fx.write_ham(root / "HAM10000_metadata.csv", ids, codes)
    ds = ISICDataset(root, size=16)
    assert ds.layout == "ham10000"
    assert ds.labels.tolist() == [1, 1, 0, 0, 1, 0, 0]
    multi = ISICDataset(root, size=16, binary=False)
    assert multi.class_names == tuple(DX2018)  # same classes and order as ISIC 2018 Task 3
    assert [multi.class_names[k] for k in multi.labels] == [c.upper() for c in codes]
    assert multi.meta["lesion_id"].iloc[0] == "HAM_0000000"


def test_isic_archive_json(tmp_path):
    root, ids = _folder(tmp_path, 5)
    fx.write_archive_json(
        root / "meta",
        ids,
        ["malignant", "benign", None, "indeterminate", "benign"],
        ["melanoma", "nevus", "basal cell carcinoma", None, "nevus"],
    )
    with pytest.warns(UserWarning, match="no benign/malignant label"):
        ds = ISICDataset(root, size=16)
    assert ds.layout == "isic_archive"
    # the third record has no benign_malignant: its diagnosis (BCC) decides; the fourth has none
    assert ds.image_ids == [ids[0], ids[1], ids[2], ids[4]]
    assert ds.labels.tolist() == [1, 0, 1, 0]
    assert sum(ds.dropped.values()) == 1
    with pytest.warns(UserWarning, match="unknown diagnosis"):
        multi = ISICDataset(root, size=16, binary=False)
    assert multi.class_names == ("basal cell carcinoma", "melanoma", "nevus")


def test_isic_archive_api_v2_records_and_bad_json(tmp_path):
    import json

    root, ids = _folder(tmp_path, 2)
    (root / "meta").mkdir()
    for i, bm in zip(ids, ["benign", "malignant"]):
        rec = {"isic_id": i, "metadata": {"clinical": {"benign_malignant": bm, "diagnosis": "nevus"}}}
        (root / "meta" / f"{i}.json").write_text(json.dumps(rec))
    assert ISICDataset(root, size=8).labels.tolist() == [0, 1]
    (root / "meta" / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"cannot read ISIC archive metadata file .*broken\.json"):
        ISICDataset(root, size=8)
    (root / "meta" / "broken.json").write_text('{"id": 3}')
    with pytest.raises(ValueError, match=r"broken\.json lacks 'name' or 'meta'.*found keys \['id'\]"):
        ISICDataset(root, size=8)


def test_bissoto_csv_as_ground_truth_and_annotations_join(tmp_path):
    root, ids = _folder(tmp_path, 4)
    flags = np.array(
        [[1, 0, 0, 0, 1, 0, 0], [0, 1, 0, 0, 0, 0, 1], [1, 1, 1, 1, 1, 1, 0], [0, 0, 0, 0, 0, 0, 0]]
    )
    ann = fx.write_bissoto(tmp_path / "bias.csv", ids[:3], flags[:3], [1, 0, 1])
    ds = ISICDataset(root, csv=ann, size=16, images_dir=root / "images")
    assert ds.layout == "bissoto" and ds.labels.tolist() == [1, 0, 1]
    fx.write_2016(root / "gt.csv", ids, [True, False, True, False])
    with pytest.warns(UserWarning, match="no artifact annotation"):
        joined = ISICDataset(root, csv="gt.csv", size=16, annotations=ann)
    assert joined.image_ids == ids[:3] and joined.dropped == {"no artifact annotation": 1}
    assert list(joined.artifacts.columns) == [
        "frame",
        "hair",
        "gel_border",
        "bubble",
        "ruler",
        "ink",
        "patch",
    ]
    assert joined.artifacts.to_numpy().astype(int).tolist() == flags[:3].tolist()
    sub = joined.subset([2, 0])
    assert sub.artifacts["gel_border"].tolist() == [True, False]


def test_explicit_layout_overrides_detection(tmp_path):
    root = tmp_path / "isic"
    fx.write_images(root, ["img_a", "img_b"], ".png")
    (root / "labels.csv").write_text("img_a,malignant\nimg_b,benign\n")  # ids without the ISIC_ prefix
    with pytest.raises(ValueError, match="cannot tell the layout"):
        ISICDataset(root, csv="labels.csv", size=16)
    ds = ISICDataset(root, csv="labels.csv", size=16, layout="isic2016")
    assert ds.layout == "isic2016" and ds.image_ids == ["img_a", "img_b"] and ds.labels.tolist() == [1, 0]


# --------------------------------------------------------------------------- images and cache


def test_items_are_the_right_photos_in_range(tmp_path):
    root, ids = _folder(tmp_path, 5)
    fx.write_2016(root / "gt.csv", ids, [True] * 5)
    ds = ISICDataset(root, size=24)
    for k in range(5):
        img, lab = ds[k]
        assert img.shape == (3, 24, 24) and img.dtype == torch.float32
        assert 0.0 <= float(img.min()) and float(img.max()) <= 1.0
        np.testing.assert_allclose(_mean_rgb(img), fx.colour(k), atol=3)
        assert lab == 1
    assert ds[-1][0].shape == (3, 24, 24)
    imgs = ds.images
    assert imgs.shape == (5, 3, 24, 24)
    assert torch.equal(imgs[3], ds[3][0])
    with pytest.raises(IndexError, match="out of range"):
        ds[5]


def test_dataloader_batches_and_package_exports(tmp_path):
    import xaibias as xb

    assert xb.data.ISICDataset is ISICDataset and xb.data.DermaMNIST is DermaMNIST
    assert xb.data.load_artifact_annotations is load_artifact_annotations
    root, ids = _folder(tmp_path, 5)
    fx.write_2016(root / "gt.csv", ids, [True, False, True, False, True])
    ds = ISICDataset(root, size=16)
    batches = list(torch.utils.data.DataLoader(ds, batch_size=2))
    assert [tuple(b[0].shape) for b in batches] == [(2, 3, 16, 16), (2, 3, 16, 16), (1, 3, 16, 16)]
    assert torch.cat([b[1] for b in batches]).tolist() == [1, 0, 1, 0, 1]
    assert torch.equal(torch.cat([b[0] for b in batches]), ds.images)


def test_png_jpeg_extensions_and_recursive_lookup(tmp_path):
    root = tmp_path / "isic"
    ids = fx.ids_for(3)
    fx.write_image(root / "a" / f"{ids[0]}.png", 0)
    fx.write_image(root / "b" / "c" / f"{ids[1]}.jpeg", 1)
    fx.write_image(root / f"{ids[2]}.JPG", 2)
    fx.write_image(root / f"{ids[2]}_segmentation.png", 9)  # a mask beside it is not the photo
    fx.write_2016(root / "gt.csv", ids, [False, True, False])
    ds = ISICDataset(root, size=16)
    assert [Path(p).name for p in ds.meta["path"]] == [f"{ids[0]}.png", f"{ids[1]}.jpeg", f"{ids[2]}.JPG"]
    for k in range(3):
        np.testing.assert_allclose(_mean_rgb(ds[k][0]), fx.colour(k), atol=3)


def test_resize_stretch_versus_crop(tmp_path):
    root = tmp_path / "isic"
    arr = np.zeros((40, 80, 3), dtype=np.uint8)  # wide photo: blue | green (centre) | red
    arr[:, :20] = (0, 0, 255)
    arr[:, 20:60] = (0, 255, 0)
    arr[:, 60:] = (255, 0, 0)
    (root / "images").mkdir(parents=True)
    Image.fromarray(arr).save(root / "images" / "ISIC_0000000.png")
    fx.write_2016(root / "gt.csv", ["ISIC_0000000"], [False])
    stretch = ISICDataset(root, size=16)[0][0]
    crop = ISICDataset(root, size=16, resize="crop")[0][0]
    assert stretch[2, :, 0].min() > 0.9 and stretch[0, :, -1].min() > 0.9  # blue left, red right kept
    assert crop[1].min() > 0.9 and crop[0].max() < 0.1 and crop[2].max() < 0.1  # only the green centre


def test_jpeg_draft_matches_full_decode(tmp_path):
    rng = np.random.default_rng(0)
    big = np.kron(rng.integers(0, 256, (12, 16, 3)), np.ones((50, 50, 1))).astype(np.uint8)  # 600x800
    path = tmp_path / "big.jpg"
    Image.fromarray(big).save(path, quality=95)
    fast = images.load_isic_image(path, 32).astype(float)
    full = np.asarray(
        Image.open(path).convert("RGB").resize((32, 32), Image.Resampling.BILINEAR), dtype=float
    )
    assert fast.shape == (32, 32, 3)
    assert np.abs(fast - full).mean() < 4.0  # draft (reduced DCT) decode changes pixels only slightly


def test_disk_cache_is_used_and_corrupt_entry_recomputed(tmp_path, monkeypatch):
    root, ids = _folder(tmp_path, 4)
    fx.write_2016(root / "gt.csv", ids, [True, False, True, False])
    ds = ISICDataset(root, size=20)
    ref = ds.images.clone()
    folder = tmp_path / "cache" / "isic" / "20px-stretch"
    entries = sorted(folder.glob("*.npy"))
    assert len(entries) == 4 and not list(folder.glob("*.tmp"))
    assert np.load(entries[0]).dtype == np.uint8

    calls = []
    real = isic.load_isic_image
    monkeypatch.setattr(isic, "load_isic_image", lambda *a, **k: calls.append(a) or real(*a, **k))
    again = ISICDataset(root, size=20)
    assert torch.equal(again.images, ref) and calls == []  # everything came from the cache

    victim = next(p for p in entries if p.name.startswith(ids[2]))
    victim.write_bytes(b"not a numpy file")
    third = ISICDataset(root, size=20)
    assert torch.equal(third[2][0], ref[2]) and len(calls) == 1
    assert np.load(victim).shape == (20, 20, 3)  # rewritten


def test_changed_photo_gets_a_new_cache_entry(tmp_path):
    root, ids = _folder(tmp_path, 2)
    fx.write_2016(root / "gt.csv", ids, [True, False])
    before = ISICDataset(root, size=12)[0][0]
    fx.write_image(root / "images" / f"{ids[0]}.jpg", 7)
    import os

    st = os.stat(root / "images" / f"{ids[0]}.jpg")
    os.utime(root / "images" / f"{ids[0]}.jpg", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    after = ISICDataset(root, size=12)[0][0]
    np.testing.assert_allclose(_mean_rgb(before), fx.colour(0), atol=3)
    np.testing.assert_allclose(_mean_rgb(after), fx.colour(7), atol=3)


def test_cache_false_writes_nothing(tmp_path):
    root, ids = _folder(tmp_path, 3)
    fx.write_2016(root / "gt.csv", ids, [True, False, True])
    ds = ISICDataset(root, size=12, cache=False)
    assert ds.images.shape == (3, 3, 12, 12)
    assert not list((tmp_path / "cache").rglob("*.npy"))


def test_cache_key_stable_and_sensitive(tmp_path):
    root, ids = _folder(tmp_path, 4)
    csv = fx.write_2017(root / "gt.csv", ids, ["MEL", "NV", "SK", "NV"])
    key = ISICDataset(root, size=16).cache_key()
    assert key == ISICDataset(root, size=16).cache_key()
    assert key != ISICDataset(root, size=32).cache_key()
    assert key != ISICDataset(root, size=16, binary=False).cache_key()
    assert key != ISICDataset(root, size=16).subset([0, 1]).cache_key()
    fx.write_2017(csv, ids, ["MEL", "MEL", "SK", "NV"])
    assert key != ISICDataset(root, size=16).cache_key()


def test_subset_with_indices_and_mask(tmp_path):
    root, ids = _folder(tmp_path, 6)
    fx.write_2016(root / "gt.csv", ids, [True, False, True, False, True, False])
    ds = ISICDataset(root, size=12)
    sub = ds.subset([4, 1])
    assert isinstance(sub, ISICDataset) and len(sub) == 2
    assert sub.image_ids == [ids[4], ids[1]] and sub.labels.tolist() == [1, 0]
    assert sub.meta["image_id"].tolist() == sub.image_ids
    np.testing.assert_allclose(_mean_rgb(sub[0][0]), fx.colour(4), atol=3)
    mask = ds.labels == 1
    assert ds.subset(mask).image_ids == [ids[0], ids[2], ids[4]]
    assert len(ds) == 6  # the original is unchanged
    with pytest.raises(IndexError, match="out of range"):
        ds.subset([6])


def test_split_stratified_and_grouped(tmp_path):
    root, ids = _folder(tmp_path, 12)
    dx = ["mel", "nv", "nv", "bcc"] * 3
    fx.write_ham(root / "HAM10000_metadata.csv", ids, dx)
    meta = pd.read_csv(root / "HAM10000_metadata.csv")
    meta["lesion_id"] = [f"HAM_{k // 3}" for k in range(12)]  # four lesions, three photos each
    meta.to_csv(root / "HAM10000_metadata.csv", index=False)
    ds = ISICDataset(root, size=8)
    train, test = ds.split(test_fraction=0.5, seed=1)
    assert sorted(train.image_ids + test.image_ids) == sorted(ids)
    assert test.class_counts() == train.class_counts() == {"benign": 3, "malignant": 3}
    again = ds.split(test_fraction=0.5, seed=1)[1]
    assert again.image_ids == test.image_ids
    g_train, g_test = ds.split(test_fraction=0.3, seed=0, group="lesion_id")
    shared = set(g_train.meta["lesion_id"]) & set(g_test.meta["lesion_id"])
    assert not shared and len(g_test) % 3 == 0 and 0 < len(g_test) < 12
    with pytest.raises(ValueError, match=r"group must be a column of meta .*got 'patient'"):
        ds.split(group="patient")
    with pytest.raises(ValueError, match=r"test_fraction must be a number in \(0,1\); got 1.5"):
        ds.split(test_fraction=1.5)


def test_lesion_masks_follow_the_image_geometry(tmp_path):
    root, ids = _folder(tmp_path, 3)
    fx.write_2016(root / "gt.csv", ids, [True, False, True])
    seg = root / "ISIC2018_Task1_Training_GroundTruth"
    seg.mkdir()
    for k, i in enumerate(ids[:2]):
        m = np.zeros((36, 48), dtype=np.uint8)  # same 4:3 size as the photos
        m[:, : 12 * (k + 1)] = 255  # lesion on the left quarter (k=0) or left half (k=1)
        Image.fromarray(m).save(seg / f"{i}_segmentation.png")
    with pytest.raises(ValueError, match=rf"1 image\(s\) have no lesion mask .*{ids[2]}"):
        ISICDataset(root, size=16, masks_dir=seg.name)
    with pytest.warns(UserWarning, match="lesion mask not found"):
        ds = ISICDataset(root, size=16, masks_dir=seg.name, missing="drop")
    lesion = ds.masks["lesion"]
    assert lesion.dtype == torch.bool and lesion.shape == (2, 16, 16)
    assert lesion[0, :, :4].all() and not lesion[0, :, 4:].any()  # stretch: a quarter stays a quarter
    assert lesion[1, :, :8].all() and not lesion[1, :, 8:].any()
    with pytest.warns(UserWarning, match="lesion mask not found"):
        crop = ISICDataset(root, size=12, masks_dir=seg.name, missing="drop", resize="crop").masks["lesion"]
    # crop keeps columns 6..42 of 48: the lesion (columns 0..12 / 0..24) covers 1/6 / 1/2 of them
    assert crop[0, :, :2].all() and not crop[0, :, 2:].any()
    assert crop[1, :, :6].all() and not crop[1, :, 6:].any()
    assert torch.equal(ds.subset([1]).masks["lesion"][0], lesion[1])
    assert len(list((tmp_path / "cache" / "isic" / "16px-stretch").glob("*-mask-*.npy"))) == 2
    assert ISICDataset(root, size=16, csv="gt.csv").masks == {}


# --------------------------------------------------------------------------- errors


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"ISIC folder not found: .*nowhere"):
        ISICDataset(tmp_path / "nowhere")


def test_missing_csv_file(tmp_path):
    root, _ = _folder(tmp_path, 1)
    with pytest.raises(FileNotFoundError, match=r"ground-truth file not found: .*nope\.csv"):
        ISICDataset(root, csv="nope.csv")


def test_missing_column_names_file_and_columns(tmp_path):
    root, ids = _folder(tmp_path, 2)
    (root / "gt.csv").write_text("image,MEL,NV,BCC\nISIC_0000000,1,0,0\nISIC_0000001,0,1,0\n")
    with pytest.raises(
        ValueError,
        match=r"gt\.csv \(isic2018 layout\) lacks column\(s\) \['AKIEC', 'BKL', 'DF', 'VASC'\].*found \['image', 'MEL', 'NV', 'BCC'\]",
    ):
        ISICDataset(root, csv="gt.csv", layout="isic2018")


def test_unknown_header_names_columns(tmp_path):
    root, _ = _folder(tmp_path, 1)
    (root / "odd.csv").write_text("file,klass\nISIC_0000000,1\n")
    with pytest.raises(
        ValueError, match=r"cannot tell the layout of .*odd\.csv: its columns are \['file', 'klass'\]"
    ):
        ISICDataset(root, csv="odd.csv")


def test_bad_label_values(tmp_path):
    root, ids = _folder(tmp_path, 2)
    (root / "gt.csv").write_text(
        "image_id,melanoma,seborrheic_keratosis\nISIC_0000000,2,0\nISIC_0000001,0,0\n"
    )
    with pytest.raises(ValueError, match=r"column 'melanoma' of .*gt\.csv must hold 0/1"):
        ISICDataset(root, csv="gt.csv")


def test_unreadable_image_names_file(tmp_path):
    root, ids = _folder(tmp_path, 3)
    (root / "images" / f"{ids[1]}.jpg").write_bytes(b"\xff\xd8 this is not really a jpeg")
    fx.write_2016(root / "gt.csv", ids, [True, False, True])
    ds = ISICDataset(root, size=12)
    assert ds[0][0].shape == (3, 12, 12)
    with pytest.raises(ValueError, match=rf"cannot read image .*{ids[1]}\.jpg"):
        ds[1]
    with pytest.raises(ValueError, match=rf"cannot read image .*{ids[1]}\.jpg"):
        _ = ds.images


def test_empty_images_folder(tmp_path):
    root = tmp_path / "isic"
    (root / "images").mkdir(parents=True)
    fx.write_2016(root / "gt.csv", fx.ids_for(2), [True, False])
    with pytest.raises(ValueError, match=r"no images \(\.jpg, \.jpeg, \.png\) found in .*images"):
        ISICDataset(root, images_dir="images")


def test_no_ground_truth_at_all(tmp_path):
    root, _ = _folder(tmp_path, 1)
    with pytest.raises(FileNotFoundError, match=r"no ground truth found in .*isic"):
        ISICDataset(root)


def test_several_csvs_need_a_choice(tmp_path):
    root, ids = _folder(tmp_path, 2)
    fx.write_2016(root / "a.csv", ids, [True, False])
    fx.write_2017(root / "b.csv", ids, ["MEL", "NV"])
    with pytest.raises(ValueError, match=r"several ground-truth CSVs .*a\.csv.*b\.csv.*pass csv="):
        ISICDataset(root)


def test_ids_without_images_named_and_counted(tmp_path):
    root, ids = _folder(tmp_path, 3)
    extra = fx.ids_for(7, start=100)
    fx.write_2016(root / "gt.csv", ids + extra, [True] * 10)
    with pytest.raises(
        ValueError, match=r"7 image id\(s\) of .*gt\.csv have no .*file.*ISIC_0000100.*ISIC_0000104'\] \.\.\."
    ):
        ISICDataset(root)
    with pytest.raises(ValueError) as info:
        ISICDataset(root)
    assert "ISIC_0000105" not in str(info.value)  # at most five named
    with pytest.warns(UserWarning, match="image file not found"):
        ds = ISICDataset(root, missing="drop")
    assert ds.image_ids == ids and ds.dropped == {"image file not found": 7}
    assert ds.missing_ids == extra and ds.subset([0]).missing_ids == extra


def test_bad_arguments(tmp_path):
    root, ids = _folder(tmp_path, 1)
    fx.write_2016(root / "gt.csv", ids, [True])
    with pytest.raises(ValueError, match="size must be a positive int"):
        ISICDataset(root, size=0)
    with pytest.raises(ValueError, match="resize must be 'stretch' or 'crop'"):
        ISICDataset(root, resize="pad")
    with pytest.raises(ValueError, match="layout must be one of"):
        ISICDataset(root, layout="isic2021")
    fx.write_2016(root / "gt.csv", ids * 2, [True, True])
    with pytest.raises(ValueError, match=r"gt\.csv lists image\(s\) more than once: \['ISIC_0000000'\]"):
        ISICDataset(root)


# --------------------------------------------------------------------------- DermaMNIST


def test_dermamnist_classes_and_binary_mapping(tmp_path):
    arrays = fx.write_dermamnist(tmp_path / "dermamnist.npz", {"train": 14, "val": 7, "test": 7})
    ds = DermaMNIST(tmp_path / "dermamnist.npz", split="train", binary=False)
    assert ds.class_names == DERMAMNIST_CLASSES == ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
    assert ds.labels.tolist() == arrays["train_labels"].reshape(-1).tolist()
    binary = DermaMNIST(tmp_path, split="train")  # a folder with one dermamnist*.npz
    assert binary.class_names == ("benign", "malignant")
    assert binary.labels[:7].tolist() == [1, 1, 0, 0, 1, 0, 0]  # akiec, bcc, mel malignant
    img, lab = binary[3]
    assert img.shape == (3, 28, 28) and lab == 0
    np.testing.assert_allclose(img.permute(1, 2, 0).numpy() * 255, arrays["train_images"][3], atol=1e-3)
    assert binary.images.shape == (14, 3, 28, 28)
    assert len(DermaMNIST(tmp_path / "dermamnist.npz", split="test")) == 7
    assert binary.meta["diagnosis"].iloc[4] == "mel"


def test_dermamnist_resize_subset_and_key(tmp_path):
    fx.write_dermamnist(tmp_path / "dermamnist_64.npz", {"train": 7, "val": 7, "test": 7}, size=64)
    ds = DermaMNIST(tmp_path / "dermamnist_64.npz", size=32)
    assert ds.images.shape == (7, 3, 32, 32) and ds.size == 32
    sub = ds.subset([6, 0])
    assert sub.labels.tolist() == [0, 1] and torch.equal(sub.images[0], ds.images[6])
    assert ds.cache_key() == DermaMNIST(tmp_path / "dermamnist_64.npz", size=32).cache_key()
    assert ds.cache_key() != DermaMNIST(tmp_path / "dermamnist_64.npz", split="val", size=32).cache_key()


def test_dermamnist_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"DermaMNIST file not found: .*missing\.npz.*download"):
        DermaMNIST(tmp_path / "missing.npz")
    np.savez(tmp_path / "bad.npz", train_images=np.zeros((2, 28, 28, 3), np.uint8))
    with pytest.raises(
        ValueError, match=r"bad\.npz lacks array\(s\) \['train_labels'\].*found \['train_images'\]"
    ):
        DermaMNIST(tmp_path / "bad.npz")
    np.savez(
        tmp_path / "range.npz",
        train_images=np.zeros((2, 28, 28, 3), np.uint8),
        train_labels=np.array([[0], [7]]),
    )
    with pytest.raises(ValueError, match=r"train_labels in .*range\.npz must lie in 0\.\.6"):
        DermaMNIST(tmp_path / "range.npz")
    with pytest.raises(ValueError, match="split must be 'train', 'val' or 'test'"):
        DermaMNIST(tmp_path / "range.npz", split="valid")


# --------------------------------------------------------------------------- artifact annotations


def test_artifact_annotations_semicolon(tmp_path):
    flags = np.array([[1, 0, 1, 0, 1, 0, 0], [0, 1, 0, 1, 0, 1, 1]])
    path = fx.write_bissoto(tmp_path / "isic_bias.csv", ["ISIC_0000001", "ISIC_0000002"], flags, [1, 0])
    ann = load_artifact_annotations(path)
    assert ann.index.tolist() == ["ISIC_0000001", "ISIC_0000002"] and ann.index.name == "image_id"
    cols = ["dark_corner", "hair", "gel_border", "gel_bubble", "ruler", "ink", "patches"]
    assert all(ann[c].dtype == bool for c in cols)
    assert ann[cols].to_numpy().astype(int).tolist() == flags.tolist()
    assert ann["label"].dtype == np.int64 and ann["label"].tolist() == [1, 0]
    assert ann["label_string"].tolist() == ["malignant", "benign"]
    renamed = load_artifact_annotations(path, rename=True)
    assert list(renamed.columns[:7]) == ["frame", "hair", "gel_border", "bubble", "ruler", "ink", "patch"]
    assert ANNOTATION_TO_ARTIFACT["gel_border"] is None


def test_artifact_annotations_comma_variant_with_extra_column(tmp_path):
    flags = np.array([[0, 0, 0, 0, 1, 0, 0]])
    path = fx.write_bissoto(tmp_path / "trap.csv", ["ISIC_0000009"], flags, [0], sep=",", extra={"vasc": [1]})
    ann = load_artifact_annotations(path)
    assert ann.loc["ISIC_0000009", "ruler"] and not ann.loc["ISIC_0000009", "hair"]
    assert ann.loc["ISIC_0000009", "vasc"] == 1


def test_artifact_annotations_errors(tmp_path):
    path = tmp_path / "short.csv"
    path.write_text(";image;dark_corner;hair;label\n0;ISIC_0000001.png;1;0;1\n")
    with pytest.raises(
        ValueError,
        match=r"short\.csv lacks column\(s\) \['gel_border', 'gel_bubble', 'ruler', 'ink', 'patches'\]",
    ):
        load_artifact_annotations(path)
    bad = fx.write_bissoto(tmp_path / "bad.csv", ["ISIC_0000001"], np.array([[2, 0, 0, 0, 0, 0, 0]]), [1])
    with pytest.raises(ValueError, match=r"column 'dark_corner' of .*bad\.csv must hold 0/1"):
        load_artifact_annotations(bad)
    with pytest.raises(FileNotFoundError, match="artifact annotation file not found"):
        load_artifact_annotations(tmp_path / "none.csv")


# --------------------------------------------------------------------------- downloads


def _load_script():
    spec = importlib.util.spec_from_file_location("xaibias_download_script", REPO / "data" / "download.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_download_verifies_sha256_and_md5(tmp_path):
    src = tmp_path / "src" / "file.csv"
    src.parent.mkdir()
    src.write_bytes(b"a,b\n1,2\n")
    import hashlib

    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    md5 = hashlib.md5(src.read_bytes()).hexdigest()  # noqa: S324
    reg = {
        "good": (src.as_uri(), sha),
        "good_md5": (src.as_uri(), f"md5:{md5}"),
        "bad": (src.as_uri(), "0" * 64),
    }
    out = download_dataset("good", registry=reg, progress=False)
    assert out == tmp_path / "data" / "good" and (out / "file.csv").read_bytes() == src.read_bytes()
    assert (download_dataset("good_md5", registry=reg, progress=False) / "file.csv").is_file()
    with pytest.raises(ValueError, match=r"checksum mismatch for .*file\.csv"):
        download_dataset("bad", registry=reg, progress=False)
    assert not list((tmp_path / "data" / "bad").iterdir())  # no partial or bad file left
    with pytest.raises(KeyError, match="unknown dataset 'nope'"):
        download_dataset("nope", registry=reg)


def test_download_extracts_zip(tmp_path):
    z = tmp_path / "pack.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("inner/ISIC_0000000.jpg", b"x")
    out = download_dataset("pack", registry={"pack": (z.as_uri(), None)}, progress=False)
    assert (out / "inner" / "ISIC_0000000.jpg").read_bytes() == b"x"


def test_download_offline_message(tmp_path, monkeypatch, capsys):
    def offline(*a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(registry.urllib.request, "urlopen", offline)
    with pytest.raises(
        ConnectionError,
        match=r"(?s)could not download 'dermamnist'.*zenodo\.org.*dermamnist\.npz.*put the file at.*data.dermamnist.dermamnist\.npz",
    ):
        download_dataset("dermamnist", progress=False)
    script = _load_script()
    assert script.main(["dermamnist"]) == 1
    err = capsys.readouterr().err
    assert (
        "Download it by hand from" in err and str(tmp_path / "data" / "dermamnist" / "dermamnist.npz") in err
    )
    assert script.main(["ham10000"]) == 1
    assert "10.7910/DVN/DBW86T" in capsys.readouterr().out
    assert script.main(["--list"]) == 0
    listing = capsys.readouterr().out
    assert "isic2019_train_labels" in listing and "md5:0744692d530f8e62ec473284d019b0c7" in listing


def test_registry_entries_are_well_formed():
    for name, (url, checksum) in registry.REGISTRY.items():
        assert url.startswith("https://"), name
        assert checksum is None or checksum.startswith("md5:") and len(checksum) == 36 or len(checksum) == 64


# --------------------------------------------------------------------------- the real sample

needs_sample = pytest.mark.skipif(not SAMPLE.is_dir(), reason=f"real ISIC sample not present at {SAMPLE}")


@pytest.mark.isic_sample
@needs_sample
def test_sample_loads_and_labels_agree():
    ds = ISICDataset(SAMPLE, csv="ISIC-2017_Training_Part3_GroundTruth.csv", size=64)
    ann = load_artifact_annotations(SAMPLE / "isic_bias.csv")
    assert len(ds) == 120 and ds.class_counts() == {"benign": 60, "malignant": 60}
    assert set(ds.image_ids) == set(ann.index)
    assert ann.loc[ds.image_ids, "label"].tolist() == ds.labels.tolist()
    x = ds.images
    assert x.shape == (120, 3, 64, 64) and torch.isfinite(x).all() and 0 <= x.min() and x.max() <= 1
    assert x.std() > 0.05  # real photos, not blank


@pytest.mark.isic_sample
@needs_sample
def test_sample_artifact_cooccurrence_matches_readme():
    ann = load_artifact_annotations(SAMPLE / "isic_bias.csv", rename=True)
    counts = ann.groupby("label")[["frame", "ruler", "patch"]].sum()
    # facts of the sample stated in its README: dark corners 30 vs 21, rulers 42 vs 25, patches 0 vs 8
    assert counts.loc[1, "frame"] == 30 and counts.loc[0, "frame"] == 21
    assert counts.loc[1, "ruler"] == 42 and counts.loc[0, "ruler"] == 25
    assert counts.loc[1, "patch"] == 0 and counts.loc[0, "patch"] == 8
    ds = ISICDataset(
        SAMPLE, csv="ISIC-2017_Training_Part3_GroundTruth.csv", size=32, annotations="isic_bias.csv"
    )
    table = pd.crosstab(ds.artifacts["frame"], ds.labels.numpy())
    assert table.loc[True, 1] == 30 and table.loc[True, 0] == 21


FOUNDATION = REPO / ".dev" / "FOUNDATION_READY"


@pytest.mark.isic_sample
@needs_sample
def test_sample_painters_and_attribution_on_real_photos():
    import xaibias as xb

    ds = ISICDataset(SAMPLE, csv="ISIC-2017_Training_Part3_GroundTruth.csv", size=64).subset([0, 1, 60, 61])
    images = ds.images
    for name in xb.data.ARTIFACTS:  # every painter works on real photos
        out, masks = xb.data.insert_artifact(images, name, seed=0)
        assert out.shape == images.shape and masks.shape == (4, 64, 64) and masks.dtype == torch.bool, name
        assert masks.any() and torch.isfinite(out).all() and 0 <= out.min() and out.max() <= 1, name
        changed = (out - images).abs().sum(dim=1) > 1e-6
        assert changed.any() and not (changed & ~masks).any(), name  # changes only inside the mask
    painted, _ = xb.data.insert_artifact(images, "frame", seed=0)
    xb.config.seed_everything(0)
    model = xb.models.make_model("small_vgg", num_classes=2).eval()
    relevance = xb.explain.attribute(model, painted, method="lrp")
    assert relevance.shape == (4, 64, 64) and torch.isfinite(relevance).all()
    assert relevance.abs().sum() > 0
