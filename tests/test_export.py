"""HDF5 export in the CoRelAy/ViRelAy layout: exact names, round trip, clear errors."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from xaibias.analysis import SpRAy, write_virelay_project
from xaibias.analysis.export import (
    read_analysis_h5,
    read_attribution_h5,
    write_analysis_h5,
    write_attribution_h5,
)


def _data(n=60, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    R = torch.randn(n, 16, 16, generator=g)
    R[: n // 2, :8, :8] += 3  # two planted strategies per class
    R[n // 2 :, 8:, 8:] += 3
    images = torch.rand(n, 3, 16, 16, generator=g)
    pred = torch.softmax(torch.randn(n, 2, generator=g), dim=1)
    return R, images, pred, y


def test_attribution_round_trip_and_layout(tmp_path):
    R, _, pred, y = _data()
    path = write_attribution_h5(tmp_path / "attribution.h5", R, pred, y, index=np.arange(60) + 100)
    with h5py.File(path, "r") as fh:
        assert set(fh.keys()) == {"attribution", "prediction", "label", "index"}
        assert fh["attribution"].shape == (60, 1, 16, 16) and fh["attribution"].dtype == np.float32
        assert fh["prediction"].shape == (60, 2) and fh["label"].dtype == np.uint32
    back = read_attribution_h5(path)
    np.testing.assert_array_equal(back["attribution"][:, 0], R.numpy())
    np.testing.assert_array_equal(back["prediction"], pred.numpy())
    np.testing.assert_array_equal(back["label"], y.numpy())
    np.testing.assert_array_equal(back["index"], np.arange(60) + 100)
    # channel maps keep their channels
    R3 = torch.rand(60, 3, 16, 16)
    back3 = read_attribution_h5(write_attribution_h5(tmp_path / "a3.h5", R3, pred, y))
    np.testing.assert_array_equal(back3["attribution"], R3.numpy())
    assert "index" not in back3


def test_analysis_round_trip_per_class(tmp_path):
    R, _, _, y = _data()
    fits = {}
    for c in (0, 1):
        idx = np.flatnonzero(y.numpy() == c)
        fits[c] = (SpRAy(n_clusters=2, n_neighbors=5, random_state=0).fit(R[idx]), idx)
    path = write_analysis_h5(tmp_path / "analysis.h5", fits, ks=[2, 3, 5])
    with h5py.File(path, "r") as fh:
        assert sorted(fh.keys()) == ["00000000", "00000001"]
        g = fh["00000001"]
        assert set(g.keys()) == {"index", "embedding", "cluster"}
        assert set(g["embedding"].keys()) == {"spectral", "tsne"}
        assert set(g["cluster"].keys()) == {"kmeans-02", "kmeans-03", "kmeans-05"}
        assert g["cluster/kmeans-03"].attrs["k"] == 3
        assert g["cluster/kmeans-03"].attrs["embedding"] == "spectral"
        assert g["embedding/spectral"].attrs["eigenvalue"].dtype == np.float32
    back = read_analysis_h5(path)
    for c, (est, idx) in fits.items():
        b = back[f"{c:08d}"]
        np.testing.assert_array_equal(b["index"], idx)
        np.testing.assert_array_equal(b["embedding"]["spectral"], est.embedding_)
        np.testing.assert_allclose(b["eigenvalue"], est.eigenvalues_, rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(b["cluster"]["kmeans-02"], est.labels_)
        np.testing.assert_array_equal(b["cluster"]["kmeans-05"], est.labels_for(5))
        np.testing.assert_array_equal(b["embedding"]["tsne"], est.embedding_2d_)


def test_virelay_project_files(tmp_path):
    R, images, pred, y = _data()
    idx = np.arange(60)
    fit = SpRAy(n_clusters=2, n_neighbors=5, random_state=0).fit(R)
    project = write_virelay_project(tmp_path / "proj", images, R, pred, y, {"all": (fit, idx)},
                                    class_names=["benign", "malignant"], model_name="small_vgg")
    lines = [ln.strip() for ln in project.read_text().splitlines()]  # (no YAML parser needed)
    for expected in ("project:", "label_map: label-map.json", "type: hdf5", "path: dataset.h5",
                     "input_width: 16", "attribution_strategy: predicted_label", "- attribution.h5",
                     "- analysis_method: \"Spectral\"", "- analysis.h5", 'model: "small_vgg"'):
        assert expected in lines, expected
    label_map = json.loads((tmp_path / "proj" / "label-map.json").read_text())
    assert label_map[1] == {"index": 1, "word_net_id": "00000001", "name": "malignant"}
    with h5py.File(tmp_path / "proj" / "dataset.h5", "r") as fh:
        np.testing.assert_array_equal(fh["data"][()], images.numpy())
        np.testing.assert_array_equal(fh["label"][()], y.numpy())
    assert "all" in read_analysis_h5(tmp_path / "proj" / "analysis.h5")


def test_bad_inputs_are_clear_errors(tmp_path):
    R, _, pred, y = _data()
    with pytest.raises(ValueError, match=r"mismatched N: relevance has N=60, prediction has N=59"):
        write_attribution_h5(tmp_path / "a.h5", R, pred[:59], y)
    R[3, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="relevance contains NaN"):
        write_attribution_h5(tmp_path / "a.h5", R, pred, y)
    assert not (tmp_path / "a.h5").exists() and not (tmp_path / "a.h5.tmp").exists()
    with pytest.raises(FileNotFoundError, match="attribution file not found"):
        read_attribution_h5(tmp_path / "missing.h5")
    with h5py.File(tmp_path / "other.h5", "w") as fh:
        fh["attribution"] = np.zeros((2, 1, 2, 2))
    with pytest.raises(ValueError, match=r"missing dataset\(s\) \['prediction', 'label'\]"):
        read_attribution_h5(tmp_path / "other.h5")
    with pytest.raises(ValueError, match="not fitted"):
        write_analysis_h5(tmp_path / "b.h5", {0: (SpRAy(), np.arange(3))})
    fit = SpRAy(n_clusters=2, n_neighbors=5).fit(torch.randn(20, 8, 8))
    with pytest.raises(ValueError, match=r"index must have one entry per fitted map \(n=20\)"):
        write_analysis_h5(tmp_path / "b.h5", {0: (fit, np.arange(19))})


def test_analysis_of_a_landmark_fit_writes_the_landmark_maps(tmp_path):
    # from large_n maps on, SpRAy embeds a sample of landmarks and labels the rest by vote: the
    # ViRelAy file must pair each embedded row with its own map index and label
    g = torch.Generator().manual_seed(1)
    R = torch.randn(600, 16, 16, generator=g) * 0.3
    R[:300, :8, :8] += 3
    R[300:, 8:, 8:] += 3
    fit = SpRAy(n_clusters=2, n_neighbors=5, random_state=0, large_n=400, landmarks=450).fit(R)
    keep = fit.landmark_indices_
    assert keep is not None and len(keep) == 450 and len(fit.embedding_) == 450 and len(fit.labels_) == 600
    positions = np.arange(1000, 1600)
    path = write_analysis_h5(tmp_path / "landmarks.h5", {0: (fit, positions)}, ks=[2, 3])
    back = read_analysis_h5(path)["00000000"]
    np.testing.assert_array_equal(back["index"], positions[keep])
    np.testing.assert_array_equal(back["embedding"]["spectral"], fit.embedding_)
    np.testing.assert_array_equal(back["cluster"]["kmeans-02"], fit.labels_[keep])
    np.testing.assert_array_equal(back["cluster"]["kmeans-03"], fit.labels_for(3)[keep])
    with pytest.raises(ValueError, match=r"index must have one entry per fitted map \(n=600\)"):
        write_analysis_h5(tmp_path / "bad.h5", {0: (fit, np.arange(450))})
