"""FolderDataset: a class_name/*.jpg tree as a dataset (xaibias.data.folder)."""

import numpy as np
import pytest
from PIL import Image

from xaibias.data import FolderDataset


def _tree(root, classes):
    rng = np.random.default_rng(0)
    for name, stems in classes.items():
        (root / name).mkdir(parents=True)
        for stem in stems:
            Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(root / name / f"{stem}.png")
    return root


def test_classes_sorted_by_name_labels_and_images(tmp_path):
    root = _tree(tmp_path / "data", {"malignant": ["m1", "m2"], "benign": ["b1", "b2", "b3"]})
    ds = FolderDataset(root, size=8)
    assert ds.class_names == ("benign", "malignant")
    assert ds.labels.tolist() == [0, 0, 0, 1, 1]
    assert ds.image_ids == ["b1", "b2", "b3", "m1", "m2"]
    assert ds.images.shape == (5, 3, 8, 8) and 0 <= ds.images.min() and ds.images.max() <= 1
    assert ds.cache_key() == FolderDataset(root, size=8).cache_key() != FolderDataset(root, size=6).cache_key()


def test_bad_trees_name_the_folder(tmp_path):
    one = _tree(tmp_path / "one", {"benign": ["b1"]})
    with pytest.raises(ValueError, match=r"folder .*one has images in 1 class folder\(s\) \['benign'\]"):
        FolderDataset(one, size=8)
    twice = _tree(tmp_path / "twice", {"benign": ["x"], "malignant": ["x"]})
    with pytest.raises(ValueError, match=r"file name\(s\) \['x'\] occur in more than one class folder"):
        FolderDataset(twice, size=8)
    ok = _tree(tmp_path / "ok", {"benign": ["b1"], "malignant": ["m1"]})
    with pytest.raises(ValueError, match="cannot use the annotations .*missing.csv"):
        FolderDataset(ok, size=8, annotations=tmp_path / "missing.csv")
