import numpy as np
import pytest
import torch

import xaibias as xb
from xaibias import config


@pytest.mark.parametrize(
    "env, cuda, expected",
    [
        ({}, True, False),            # a GPU and nothing set: the paper-scale setting
        ({}, False, True),            # a laptop or CPU Colab: FAST without knowing the switch
        ({"CI": "true"}, True, True),
        ({"XAIBIAS_FAST": "1"}, True, True),
        ({"XAIBIAS_FAST": "yes"}, True, True),
        ({"XAIBIAS_FAST": "0", "CI": "true"}, False, False),  # the variable always wins
        ({"XAIBIAS_FAST": "off"}, False, False),
        ({"CI": ""}, True, False),
    ],
)
def test_fast_flag_reads_environment(env, cuda, expected):
    assert config.is_fast(env, cuda=cuda) is expected


def test_fast_default_on_this_machine_follows_cuda():
    assert config.is_fast({}) is (not torch.cuda.is_available())


def test_seed_reads_environment():
    assert config.read_seed({}) == 0
    assert config.read_seed({"XAIBIAS_SEED": " 7 "}) == 7
    for bad in ("-1", "two", "1.5"):
        with pytest.raises(ValueError, match="XAIBIAS_SEED must be a non-negative integer"):
            config.read_seed({"XAIBIAS_SEED": bad})


def test_fast_flag_rejects_garbage():
    with pytest.raises(ValueError, match="XAIBIAS_FAST must be one of"):
        config.is_fast({"XAIBIAS_FAST": "maybe"})


def test_device_can_be_forced(monkeypatch):
    monkeypatch.setenv("XAIBIAS_DEVICE", "cpu")
    assert config.device() == "cpu"
    monkeypatch.delenv("XAIBIAS_DEVICE")
    assert config.device() in ("cpu", "cuda", "mps")


def test_seed_everything_repeats_draws():
    config.seed_everything(3)
    a = (np.random.rand(3), torch.rand(3))
    config.seed_everything(3)
    b = (np.random.rand(3), torch.rand(3))
    assert np.array_equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        config.seed_everything(-1)


def test_cache_dir_follows_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("XAIBIAS_CACHE", str(tmp_path / "c"))
    p = config.cache_dir("models")
    assert p == tmp_path / "c" / "models" and p.is_dir()
    monkeypatch.delenv("XAIBIAS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert config.cache_dir() == tmp_path / "xdg" / "xaibias"
    monkeypatch.setenv("XAIBIAS_DATA", str(tmp_path / "d"))
    assert config.data_dir("isic") == tmp_path / "d" / "isic"


def test_pick_follows_fast(monkeypatch):
    monkeypatch.setattr(config, "FAST", True)
    assert xb.config.pick(1, 2) == 1
    monkeypatch.setattr(config, "FAST", False)
    assert xb.config.pick(1, 2) == 2


def test_parse_seeds():
    from xaibias.config import parse_seeds

    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("0,3,7") == [0, 3, 7]
    assert parse_seeds(" 2 , 5-6 ") == [2, 5, 6]
    for bad in ("", "a-b", "-1", "3,x"):
        with pytest.raises(ValueError, match="non-negative seeds such as 0-4"):
            parse_seeds(bad)
