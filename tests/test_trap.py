"""Trap sets (Bissoto et al. 2020): trap_split on any annotated dataset, the published trap-set CSVs,
and fetch_isic_annotated without network (offline message, id lists, resuming, checksums)."""

from __future__ import annotations

import hashlib
import io
import json
import sys
import urllib.error
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import isic_fixtures as fx  # noqa: E402

import xaibias as xb  # noqa: E402
from xaibias.data import fetch as fetch_mod  # noqa: E402
from xaibias.data.annotations import ARTIFACT_NAMES, annotation_name, resolve_artifact  # noqa: E402
from xaibias.data.trap import TrapInfo, load_trap_set, trap_split  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("XAIBIAS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("XAIBIAS_DATA", str(tmp_path / "data"))


class Flags:
    """The smallest dataset trap_split accepts: labels, artifacts, class_names, subset."""

    class_names = ("benign", "malignant")

    def __init__(self, cells: dict[tuple[int, bool], int], seed: int = 0) -> None:
        labels, frame = [], []
        for (c, f), n in cells.items():
            labels += [c] * n
            frame += [f] * n
        order = np.random.default_rng(seed).permutation(len(labels))
        self.labels = torch.tensor(np.array(labels)[order])
        self.artifacts = pd.DataFrame({"frame": np.array(frame)[order], "ruler": np.zeros(len(labels), bool)})

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx):
        new = object.__new__(Flags)
        new.labels = self.labels[torch.as_tensor(idx)]
        new.artifacts = self.artifacts.iloc[idx].reset_index(drop=True)
        return new


def _rate(ds, cls: int) -> float:
    y = ds.labels.numpy()
    return float(ds.artifacts["frame"].to_numpy()[y == cls].mean())


# --------------------------------------------------------------------------------------------------
# trap_split


def test_rates_sizes_and_disjointness():
    ds = Flags({(1, True): 100, (1, False): 100, (0, True): 200, (0, False): 400})
    tr, te = trap_split(ds, "frame", strength=(0.92, 0.05), seed=0)
    # strength is (P(frame | class 1), P(frame | rest)); the test set reverses it by default
    assert tr.trap.target == (0.92, 0.05) and te.trap.target == (0.05, 0.92)
    assert abs(_rate(tr, 1) - 0.92) <= 0.05 and abs(_rate(tr, 0) - 0.05) <= 0.05
    assert abs(_rate(te, 1) - 0.05) <= 0.05 and abs(_rate(te, 0) - 0.92) <= 0.05
    assert tr.trap.achieved == pytest.approx((_rate(tr, 1), _rate(tr, 0)))
    assert te.trap.achieved == pytest.approx((_rate(te, 1), _rate(te, 0)))
    assert not set(tr.trap.index) & set(te.trap.index)
    # class shares of the dataset (1/4 class 1) and test = 0.3 of both
    assert tr.labels.float().mean().item() == pytest.approx(0.25, abs=0.01)
    assert len(te) == round(len(tr) * 0.3 / 0.7)
    # the largest split: one more training image would not fit
    with pytest.raises(ValueError, match="cannot tie"):
        trap_split(ds, "frame", strength=(0.92, 0.05), n_train=len(tr) + 1)
    # counts tables: per class group, with/without; sums match the sizes
    assert int(tr.trap.counts.to_numpy().sum()) == len(tr)
    assert tr.trap.available.loc["malignant", "with"] == 100
    assert isinstance(tr.trap, TrapInfo) and "target 0.920" in str(tr.trap)


def test_float_strength_fixed_size_and_seed():
    ds = Flags({(1, True): 60, (1, False): 60, (0, True): 60, (0, False): 60})
    tr, te = trap_split(ds, "frame", strength=0.8, n_train=60, seed=3)
    assert tr.trap.target == (0.8, pytest.approx(0.2)) and te.trap.target == (pytest.approx(0.2), 0.8)
    assert len(tr) == 60 and len(te) == round(60 * 0.3 / 0.7)
    again, _ = trap_split(ds, "frame", strength=0.8, n_train=60, seed=3)
    other, _ = trap_split(ds, "frame", strength=0.8, n_train=60, seed=4)
    assert np.array_equal(tr.trap.index, again.trap.index)
    assert not np.array_equal(tr.trap.index, other.trap.index)
    # a number as test_strength means the reversed tie (1 - t, t); a pair is taken literally
    _, te2 = trap_split(ds, "frame", strength=0.8, test_strength=0.6, n_train=40, n_test=40)
    assert te2.trap.target == (pytest.approx(0.4), 0.6) and len(te2) == 40
    _, te3 = trap_split(ds, "frame", strength=0.8, test_strength=(0.5, 0.5), n_train=40, n_test=40)
    assert te3.trap.achieved == (0.5, 0.5)


def test_impossible_rates_name_the_artifact_and_counts():
    ds = Flags({(1, True): 3, (1, False): 100, (0, True): 100, (0, False): 100})
    with pytest.raises(ValueError, match=r"(?s)cannot tie 'dark_corner \(column frame\)' to malignant.*"
                                         r"malignant with: need \d+ .*have 3.*tolerance"):
        trap_split(ds, "frame", strength=(0.92, 0.05))
    ok = Flags({(1, True): 50, (1, False): 50, (0, True): 50, (0, False): 50})
    with pytest.raises(ValueError, match=r"n_train=500.*have 50.*largest n_train at these rates is \d+"):
        trap_split(ok, "frame", strength=0.9, n_train=500)


def test_bad_arguments():
    ds = Flags({(1, True): 20, (1, False): 20, (0, True): 20, (0, False): 20})
    with pytest.raises(ValueError, match=r"artifact 'tattoo' is not a flag column of Flags.*\['frame', 'ruler'\]"):
        trap_split(ds, "tattoo")
    for bad in (1.5, (0.9,), "strong", True):
        with pytest.raises(ValueError, match="strength"):
            trap_split(ds, "frame", strength=bad)
    with pytest.raises(ValueError, match="class 3"):
        trap_split(ds, "frame", positive_class=3)
    with pytest.raises(ValueError, match="n_train must be an int"):
        trap_split(ds, "frame", n_train=1)
    with pytest.raises(ValueError, match="test_fraction"):
        trap_split(ds, "frame", test_fraction=1.0)
    with pytest.raises(ValueError, match=r"\.artifacts"):
        trap_split(type("NoFlags", (), {"labels": torch.zeros(3)})(), "frame")


def test_synthetic_lesions():
    ds = xb.data.SyntheticLesions(n=160, size=32, bias={"frame": (0.5, 0.5), "ruler": (0.3, 0.3)}, seed=0)
    tr, te = trap_split(ds, "dark_corner", strength=(0.85, 0.15), seed=0)
    assert isinstance(tr, xb.data.SyntheticLesions) and tr.trap.column == "frame"
    assert tr.trap.annotation == "dark_corner"
    for side, (a, b) in ((tr, (0.85, 0.15)), (te, (0.15, 0.85))):
        assert abs(side.trap.achieved[0] - a) <= 0.05 and abs(side.trap.achieved[1] - b) <= 0.05
        assert side.images.shape[0] == len(side) == side.masks["frame"].shape[0]
    # the other flags ride along and are reported
    assert {"frame", "ruler"} <= set(tr.trap.rates.index)
    assert tr.trap.rates.loc["frame"].iloc[0] == pytest.approx(tr.trap.achieved[0])
    assert tr.cache_key() != te.cache_key() != ds.cache_key()


def test_isic_dataset_with_annotations(tmp_path):
    root = tmp_path / "isic"
    ids = fx.ids_for(80)
    fx.write_images(root / "images", ids)
    rng = np.random.default_rng(0)
    labels = [k % 2 for k in range(80)]
    flags = (rng.random((80, 7)) < 0.5).astype(int)
    fx.write_bissoto(root / "isic_bias.csv", ids, flags, labels)
    ds = xb.data.ISICDataset(root, size=8, annotations="isic_bias.csv")
    tr, te = trap_split(ds, "patches", strength=0.75, seed=0)
    assert isinstance(tr, xb.data.ISICDataset) and tr.trap.column == "patch"
    assert not set(tr.image_ids) & set(te.image_ids)
    assert tr[0][0].shape == (3, 8, 8)


def test_artifact_name_table():
    table = xb.data.artifact_names()
    assert list(table.columns) == ["annotation", "column", "painter", "description"]
    by_ann = {r["annotation"]: r for r in ARTIFACT_NAMES if r["annotation"]}
    assert set(by_ann) == set(xb.data.annotations.ANNOTATION_COLUMNS)
    for ann, row in by_ann.items():  # the same mapping the loaders use
        assert row["column"] == (xb.data.annotations.ANNOTATION_TO_ARTIFACT[ann] or ann)
        assert row["painter"] is None or row["painter"] in xb.data.ARTIFACTS
    assert annotation_name("frame") == "dark_corner" and annotation_name("red_circle") is None
    assert resolve_artifact("dark_corner", ["frame", "hair"]) == "frame"
    assert resolve_artifact("frame", ["dark_corner", "hair"]) == "dark_corner"  # a raw annotation table


# --------------------------------------------------------------------------------------------------
# the published trap-set files


def _trap_folder(tmp_path: Path, n: int = 12, absent: int = 3) -> tuple[Path, list[str]]:
    root = tmp_path / "isic_annotated"
    ids = fx.ids_for(n)
    fx.write_images(root / "images", ids[absent:])  # the first `absent` photos are missing
    flags = np.eye(7, dtype=int)[np.arange(n) % 7]
    labels = [k % 3 == 0 for k in range(n)]
    fx.write_bissoto(root / "isic_bias.csv", ids, flags, [int(v) for v in labels])
    tdir = root / "trap-sets"
    tdir.mkdir()
    fx.write_bissoto(tdir / "isic_annotated_train1.csv", ids[:9], flags[:9], [int(v) for v in labels[:9]], sep=",",
                     extra={"vasc": [0] * 9})
    fx.write_bissoto(tdir / "isic_annotated_val1.csv", ids[6:9], flags[6:9], [int(v) for v in labels[6:9]], sep=",",
                     extra={"vasc": [1, 0, 0]})
    fx.write_bissoto(tdir / "isic_annotated_test1.csv", ids[9:], flags[9:], [int(v) for v in labels[9:]], sep=",",
                     extra={"vasc": [0] * (n - 9)})
    return root, ids


def test_load_trap_set_counts_the_absent_photos(tmp_path):
    root, ids = _trap_folder(tmp_path)
    with pytest.warns(UserWarning, match=r"trap set train1 \(.*isic_annotated_train1\.csv\): 3 of the 9 photos it "
                                         r"lists are not in .*isic_annotated and were skipped; 6 loaded") as rec:
        ds = load_trap_set(root, "train", 1, size=8)
    assert len([w for w in rec if "trap set" in str(w.message)]) == 1
    assert isinstance(ds, xb.data.ISICDataset)
    assert ds.n_missing == 3 and ds.missing_ids == ids[:3] and ds.image_ids == ids[3:9]
    assert ds.trap_split == "train1" and ds.trap_file.name == "isic_annotated_train1.csv"
    assert list(ds.artifacts.columns)[0] == "frame" and "vasc" in ds.meta.columns
    # the published val{k} is inside train{k}; exclude_val drops it
    with pytest.warns(UserWarning, match="3 validation photos left out"):
        no_val = load_trap_set(root, "train", 1, size=8, exclude_val=True)
    assert no_val.image_ids == ids[3:6] and no_val.n_val_excluded == 3 and no_val.n_missing == 3
    # a CSV path works too, its name gives split and index; nothing missing, no warning
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        test = load_trap_set(root / "trap-sets" / "isic_annotated_test1.csv", size=8)
    assert test.trap_split == "test1" and test.n_missing == 0 and len(test) == 3


def test_load_trap_set_errors(tmp_path):
    root, _ = _trap_folder(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"isic_annotated_train4\.csv not found in .*found \['isic_annotated_"):
        load_trap_set(root, "train", 4)
    with pytest.raises(ValueError, match="split must be one of"):
        load_trap_set(root, "validation", 1)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_trap_set(tmp_path / "nowhere")


def test_real_trap_sets(isic_real):
    """The five published splits on the 2,114 photos at hand: every listed photo is loaded or counted."""
    for split, k in (("train", 1), ("val", 1), ("test", 1), ("test", 5)):
        listed = len(pd.read_csv(isic_real / "trap-sets" / f"isic_annotated_{split}{k}.csv"))
        with pytest.warns(UserWarning, match=rf"trap set {split}{k} .* of the {listed} photos"):
            ds = load_trap_set(isic_real, split, k, size=16, cache=False)
        assert len(ds) + ds.n_missing == listed and ds.n_missing > 0
    # the reference point: dark corners tied to melanoma at 0.92 vs 0.05 in training
    full = xb.data.ISICDataset(isic_real, csv="isic_bias.csv", annotations="isic_bias.csv", size=16, cache=False)
    tr, te = trap_split(full, "dark_corner", strength=(0.92, 0.05), seed=0)
    assert tr.trap.achieved == pytest.approx((0.92, 0.05), abs=0.01)
    assert te.trap.achieved == pytest.approx((0.05, 0.92), abs=0.01)
    assert len(tr) > 900 and not set(tr.image_ids) & set(te.image_ids)


# --------------------------------------------------------------------------------------------------
# fetch_isic_annotated, without network


class FakeNet:
    """Serves fake CSVs, archive records and photos; counts the requests."""

    def __init__(self, files: dict[str, bytes], records: dict[str, dict]) -> None:
        self.files, self.records, self.calls = files, records, []

    def __call__(self, url: str, timeout: float):
        self.calls.append(url)
        if url.startswith(fetch_mod.ISIC_API):
            isic_id = url.rstrip("/").rsplit("/", 1)[-1]
            if isic_id not in self.records:
                raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)
            return io.BytesIO(json.dumps(self.records[isic_id]).encode())
        for path, data in self.files.items():
            if url.endswith(path):
                return io.BytesIO(data)
        raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)


@pytest.fixture
def fake_net(monkeypatch, tmp_path):
    ids = fx.ids_for(4)
    fx.write_bissoto(tmp_path / "ann.csv", ids, np.zeros((4, 7), int), [0, 1, 0, 1])
    ann = (tmp_path / "ann.csv").read_bytes()
    trap = b",image,dark_corner,hair,gel_border,gel_bubble,ruler,ink,patches,vasc,label,label_string\n"
    files = {"artefacts-annotation/isic_bias.csv": ann, "trap-sets/isic_annotated_train1.csv": trap}
    monkeypatch.setattr(fetch_mod, "BISSOTO_FILES", {p: hashlib.sha256(d).hexdigest() for p, d in files.items()})
    photo = {}
    records = {}
    for i in ids[:3]:  # the last id is not in the archive
        data = f"jpeg bytes of {i}".encode()
        photo[f"/full/{i}.JPG"] = data
        records[i] = {"isic_id": i, "files": {"full": {"url": f"https://content.example/full/{i}.JPG",
                                                       "size": len(data)}}}
    net = FakeNet({**files, **photo}, records)
    monkeypatch.setattr(fetch_mod, "_urlopen", net)
    return net, ids


def test_fetch_offline_says_what_to_get_and_where(monkeypatch, tmp_path):
    def offline(url, timeout):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(fetch_mod, "_urlopen", offline)
    dest = tmp_path / "data" / "isic_annotated"
    with pytest.raises(ConnectionError) as err:
        xb.data.fetch_isic_annotated(progress=False)
    msg = str(err.value)
    for part in ("name resolution", str(dest), "isic_bias.csv", "raw.githubusercontent.com/alceubissoto/debiasing-skin",
                 "trap-sets/", "images/ISIC_xxxxxxx.jpg", "ISIC2018_Task1-2_Training_Input.zip", "XAIBIAS_DATA",
                 "load_trap_set"):
        assert part in msg, part


def test_fetch_downloads_skips_present_and_reports_failures(fake_net, tmp_path):
    net, ids = fake_net
    dest = tmp_path / "isic_annotated"
    with pytest.warns(UserWarning, match=r"1 of 4 photos could not be fetched .*not in the ISIC archive"):
        got = xb.data.fetch_isic_annotated(dest, progress=False, workers=2)
    assert got.downloaded == 3 and got.present == 0 and list(got.failed) == [ids[3]]
    assert sorted(p.name for p in (dest / "images").iterdir()) == [f"{i}.jpg" for i in ids[:3]]
    assert (dest / "images" / f"{ids[0]}.jpg").read_bytes() == f"jpeg bytes of {ids[0]}".encode()
    assert (dest / "isic_bias.csv").is_file() and (dest / "trap-sets" / "isic_annotated_train1.csv").is_file()
    assert Path(got) == dest  # os.fspath works on the summary
    # a second call fetches nothing that is there: one record request for the id still missing
    net.calls.clear()
    (dest / "images" / ".ISIC_0000000.jpg.abc.part").write_bytes(b"half")  # left by a killed run
    with pytest.warns(UserWarning, match="1 of 4"):
        again = xb.data.fetch_isic_annotated(dest, progress=False)
    assert again.downloaded == 0 and again.present == 3
    assert net.calls == [f"{fetch_mod.ISIC_API}/images/{ids[3]}/"]
    assert not list((dest / "images").glob(".*.part"))
    # an id list: only those, and CSVs only with images=False
    only = xb.data.fetch_isic_annotated(tmp_path / "two", ids=[f"{ids[1]}.png"], progress=False)
    assert only.downloaded == 1 and [p.name for p in (tmp_path / "two" / "images").iterdir()] == [f"{ids[1]}.jpg"]
    none = xb.data.fetch_isic_annotated(tmp_path / "csvs", images=False, trap_sets=False, progress=False)
    assert not (tmp_path / "csvs" / "images").exists() and none.trap_sets == []


def test_fetch_checks_sizes_and_checksums(fake_net, tmp_path, monkeypatch):
    net, ids = fake_net
    net.records[ids[0]]["files"]["full"]["size"] += 1  # the archive promises another size
    with pytest.warns(UserWarning, match=rf"{ids[0]}.*gave \d+ bytes, the archive says"):
        got = xb.data.fetch_isic_annotated(tmp_path / "a", ids=ids[:1], progress=False)
    assert got.downloaded == 0 and not list((tmp_path / "a" / "images").iterdir())
    bad = dict(fetch_mod.BISSOTO_FILES, **{"artefacts-annotation/isic_bias.csv": "0" * 64})
    monkeypatch.setattr(fetch_mod, "BISSOTO_FILES", bad)
    with pytest.raises(ValueError, match=r"checksum mismatch"):
        xb.data.fetch_isic_annotated(tmp_path / "b", images=False, progress=False)
    assert not (tmp_path / "b" / "isic_bias.csv").exists()


def test_parse_isic_ids(tmp_path):
    from xaibias.data.fetch import parse_isic_ids

    assert parse_isic_ids([" ISIC_0000001.png", "ISIC_0000002.JPG", "ISIC_0000001"]) == ["ISIC_0000001",
                                                                                         "ISIC_0000002"]
    ids = fx.ids_for(3)
    semi = fx.write_bissoto(tmp_path / "a.csv", ids, np.zeros((3, 7), int), [0, 1, 0])
    comma = fx.write_bissoto(tmp_path / "b.csv", ids[:2], np.zeros((2, 7), int), [0, 1], sep=",",
                             extra={"vasc": [0, 0]})
    assert parse_isic_ids(semi) == ids and parse_isic_ids(str(comma)) == ids[:2]
    with pytest.raises(ValueError, match=r"1 entry is not ISIC ids.*\['ISIC_12'\]"):
        parse_isic_ids(["ISIC_0000001", "ISIC_12"])
    (tmp_path / "c.csv").write_text("name,label\nx,1\n")
    with pytest.raises(ValueError, match=r"c\.csv has no image, image_id or isic_id column"):
        parse_isic_ids(tmp_path / "c.csv")
