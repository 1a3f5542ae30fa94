import warnings

import numpy as np
import pytest
import torch

from xaibias._cache import atomic_save, content_hash, safe_load
from xaibias._checks import as_images, as_labels, as_masks, as_relevance, check_same_n


def test_atomic_save_roundtrip_and_corrupt_file(tmp_path):
    p = atomic_save({"w": torch.arange(3.0)}, tmp_path / "a" / "m.pt")
    assert torch.equal(safe_load(p)["w"], torch.arange(3.0))
    assert not list(p.parent.glob("*.tmp"))  # no temporary file left behind
    p.write_bytes(b"not a checkpoint")
    assert safe_load(p) is None  # unreadable -> a cache miss, not a crash
    assert safe_load(tmp_path / "missing.pt") is None


class _NotATensor:
    pass


def test_safe_load_refuses_pickled_objects(tmp_path):
    p = tmp_path / "e.pt"
    torch.save({"obj": _NotATensor()}, p)
    assert safe_load(p) is None  # weights_only=True refuses arbitrary objects


def test_content_hash_is_stable_and_sensitive():
    a = content_hash(torch.zeros(2, 2), {"b": 1, "a": 2})
    assert a == content_hash(torch.zeros(2, 2), {"a": 2, "b": 1})
    assert a != content_hash(torch.zeros(2, 2) + 1e-7, {"a": 2, "b": 1})
    assert a != content_hash(torch.zeros(4), {"a": 2, "b": 1})


def test_as_images_messages():
    with pytest.raises(ValueError, match=r"images must be \(N,3,H,W\)"):
        as_images(torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match=r"values in \[0,1\]"):
        as_images(torch.rand(1, 3, 8, 8) * 300)
    with pytest.raises(ValueError, match="NaN"):
        as_images(torch.full((1, 3, 4, 4), float("nan")))
    with pytest.raises(TypeError, match="torch.Tensor or numpy array"):
        as_images([[1, 2]])
    assert as_images(np.zeros((2, 3, 4, 4), dtype=np.uint8)).dtype == torch.float32
    assert as_images(torch.rand(2, 1, 4, 4)).shape == (2, 3, 4, 4)


def test_relevance_and_mask_checks():
    r = torch.rand(2, 5, 5)
    with pytest.raises(ValueError, match=r"relevance contains NaN .*item\(s\) \[1\]"):
        bad = r.clone()
        bad[1, 0, 0] = float("nan")
        as_relevance(bad)
    with pytest.raises(ValueError, match=r"all-zero map\(s\) at index \[0\]"):
        as_relevance(torch.stack([torch.zeros(5, 5), torch.ones(5, 5)]), allow_zero=False)
    with pytest.raises(ValueError, match=r"masks must be bool \(N,H,W\) matching relevance"):
        as_masks(torch.zeros(2, 4, 4, dtype=torch.bool), like=r)
    with pytest.raises(ValueError, match="masks must be bool"):
        as_masks(torch.zeros(2, 5, 5))
    with pytest.raises(ValueError, match="labels has 3 entries but 2 were expected"):
        as_labels([0, 1, 1], n=2)
    with pytest.raises(ValueError, match="mismatched N: a has N=2, b has N=3"):
        check_same_n(a=[1, 2], b=[1, 2, 3])


def test_content_hash_of_a_state_dict_with_scalar_tensors():
    sd = torch.nn.BatchNorm2d(2).state_dict()  # holds the 0-d num_batches_tracked
    assert content_hash(sd) == content_hash(torch.nn.BatchNorm2d(2).state_dict())
    sd["num_batches_tracked"] += 1
    assert content_hash(sd) != content_hash(torch.nn.BatchNorm2d(2).state_dict())


def test_read_only_arrays_are_copied_not_shared():
    a = np.arange(4)
    a.setflags(write=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns when it is handed a non-writable array
        t = as_labels(a)
    t[0] = 7
    assert a[0] == 0 and t.tolist() == [7, 1, 2, 3]
