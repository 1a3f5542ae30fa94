"""attribute_dataset: HDF5 layout, equality with attribute(), resume after a crash, sharding, errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import xaibias as xb
from xaibias.explain import dataset as dsmod

ROOT = Path(__file__).resolve().parents[1]


class TinyNet(nn.Module):
    """A small conv net: fast enough for many runs, with BatchNorm so canonizers matter."""

    def __init__(self, fail_after: int | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                                      nn.MaxPool2d(2), nn.Conv2d(6, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))
        with torch.no_grad():  # non-trivial BN statistics
            self.features[1].running_mean.uniform_(-0.1, 0.1)
            self.features[1].running_var.uniform_(0.5, 1.5)
        self.calls = 0
        self.fail_after = fail_after

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt("simulated interruption")
        return self.head(self.features(x))


class Pairs:
    """A minimal map-style dataset that counts which items were read."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels
        self.reads: list[int] = []

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        self.reads.append(int(i))
        return self.images[i], int(self.labels[i])


@pytest.fixture
def data() -> Pairs:
    g = torch.Generator().manual_seed(1)
    return Pairs(torch.rand(23, 3, 16, 16, generator=g), torch.randint(0, 3, (23,), generator=g))


def read(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in f} | {"attrs": dict(f.attrs)}


def assert_same_rows(a: dict, b: dict) -> None:
    for key in ("attribution", "prediction", "label", "index", "done"):
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


# --------------------------------------------------------------------------------------------------
# layout and values


def test_layout_and_values_match_attribute(data: Pairs, tmp_path: Path) -> None:
    model = TinyNet()
    out = xb.explain.attribute_dataset(model, data, out=tmp_path / "sub" / "r.h5", batch_size=5, progress=False)
    f = read(out)
    assert f["attribution"].shape == (23, 1, 16, 16) and f["attribution"].dtype == np.float32
    assert f["prediction"].shape == (23, 3) and f["prediction"].dtype == np.float32
    assert f["label"].dtype == np.uint32 and f["index"].dtype == np.uint32
    assert f["done"].shape == (5,) and f["done"].all() and f["attrs"]["complete"]
    assert f["attrs"]["attribution_strategy"] == "model" and f["attrs"]["prediction_kind"] == "logits"
    np.testing.assert_array_equal(f["label"], data.labels.numpy())
    np.testing.assert_array_equal(f["index"], np.arange(23))
    with torch.no_grad():
        logits = model.eval()(data.images)
    np.testing.assert_allclose(f["prediction"], logits.numpy(), rtol=1e-5, atol=1e-6)
    ref = xb.explain.attribute(model, data.images, batch_size=5)  # same chunks -> same numbers
    assert ref.abs().max() > 0
    np.testing.assert_array_equal(f["attribution"][:, 0], ref.numpy())


def test_file_reads_back_through_the_virelay_exporter(data: Pairs, tmp_path: Path) -> None:
    # the analysis worker's reader for ViRelAy attribution files must accept this file unchanged
    out = xb.explain.attribute_dataset(TinyNet(), data, method="gradient", out=tmp_path / "a.h5", batch_size=8,
                                       progress=False)
    back = xb.analysis.export.read_attribution_h5(out)
    assert back["attribution"].shape == (23, 1, 16, 16)
    assert back["prediction"].shape == (23, 3)
    np.testing.assert_array_equal(back["label"], data.labels.numpy())


def test_true_label_target_pool_none_and_downsize(data: Pairs, tmp_path: Path) -> None:
    model = TinyNet()
    out = xb.explain.attribute_dataset(model, data, method="input_x_gradient", out=tmp_path / "t.h5", batch_size=8,
                                       target="label", pool=None, progress=False)
    f = read(out)
    assert f["attribution"].shape == (23, 3, 16, 16) and f["attrs"]["attribution_strategy"] == "true"
    ref = xb.explain.attribute(model, data.images, target=data.labels, method="input_x_gradient", pool=None)
    np.testing.assert_allclose(f["attribution"], ref.numpy(), rtol=1e-6, atol=1e-9)

    out = xb.explain.attribute_dataset(model, data, method="gradient", out=tmp_path / "d.h5", batch_size=8,
                                       downsize=4, target=2, progress=False)
    f = read(out)
    assert f["attribution"].shape == (23, 1, 4, 4) and f["attrs"]["attribution_strategy"] == "2"
    full = xb.explain.attribute(model, data.images, target=2, method="gradient")
    np.testing.assert_allclose(f["attribution"], F.avg_pool2d(full[:, None], 4).numpy(), rtol=1e-5, atol=1e-9)


def test_streams_in_chunks_and_never_reads_everything_at_once(data: Pairs, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    sizes: list[int] = []
    real = dsmod.attribute

    def spy(model, images, **kw):
        sizes.append(len(images))
        return real(model, images, **kw)

    monkeypatch.setattr(dsmod, "attribute", spy)
    xb.explain.attribute_dataset(TinyNet(), data, method="gradient", out=tmp_path / "s.h5", batch_size=4,
                                 progress=False)
    assert sizes == [4, 4, 4, 4, 4, 3]


def test_synthetic_lesions_dataset(tmp_path: Path) -> None:
    ds = xb.data.SyntheticLesions(n=10, size=32, seed=0)
    model = xb.models.make_model("small_vgg", num_classes=2)
    out = xb.explain.attribute_dataset(model, ds, out=tmp_path / "l.h5", batch_size=4, downsize=8, progress=False)
    f = read(out)
    assert f["attribution"].shape == (10, 1, 8, 8)
    np.testing.assert_array_equal(f["label"], ds.labels.numpy())


# --------------------------------------------------------------------------------------------------
# resume


def test_resume_after_interruption_equals_uninterrupted_run(data: Pairs, tmp_path: Path) -> None:
    # zennit's hooked LRP: one forward for the logits and one inside the attributor per chunk, so the
    # model's forward calls count the chunks (the prepared engine would not call forward again)
    full = read(xb.explain.attribute_dataset(TinyNet(), data, out=tmp_path / "full.h5", batch_size=5,
                                             progress=False, engine="zennit"))
    broken = TinyNet(fail_after=5)  # dies in chunk 3
    with pytest.raises(KeyboardInterrupt):
        xb.explain.attribute_dataset(broken, data, out=tmp_path / "part.h5", batch_size=5, progress=False,
                                     engine="zennit")
    part = read(tmp_path / "part.h5")
    assert part["done"].tolist() == [True, True, False, False, False] and not part["attrs"]["complete"]

    again = TinyNet()
    data.reads.clear()
    out = xb.explain.attribute_dataset(again, data, out=tmp_path / "part.h5", batch_size=5, progress=False,
                                       engine="zennit")
    assert again.calls == 2 * 3  # only the three unfinished chunks ran
    assert min(data.reads[1:]) >= 10  # reads after the probe of item 0 skip the finished chunks
    assert_same_rows(read(out), full)


def test_resume_after_sigkill_equals_uninterrupted_run(tmp_path: Path) -> None:
    # a separate process is killed (SIGKILL, no clean-up) while it computes chunk 3 of 5
    script = tmp_path / "worker.py"
    flag = tmp_path / "chunk3.started"
    script.write_text(textwrap.dedent(f"""
        import time, torch, xaibias as xb
        torch.set_num_threads(1)
        model = xb.models.make_model("small_vgg", num_classes=2, seed=0)
        ds = xb.data.SyntheticLesions(n=18, size=32, seed=3)
        calls = 0
        def hook(module, args):
            global calls
            calls += 1
            if calls == 5:  # two forwards per chunk: the 5th is the first of chunk 3
                open({str(flag)!r}, "w").close()
                time.sleep(600)
        model.register_forward_pre_hook(hook)
        xb.explain.attribute_dataset(model, ds, out={str(tmp_path / 'k.h5')!r}, batch_size=4, progress=False,
                                     engine="zennit")
    """))
    proc = subprocess.Popen([sys.executable, str(script)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 300
        while not flag.exists():
            if proc.poll() is not None:
                raise AssertionError(f"worker ended early: {proc.stdout.read().decode()[-2000:]}")
            if time.time() > deadline:
                raise AssertionError("worker did not reach chunk 3 in 300 s")
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    part = read(tmp_path / "k.h5")
    assert part["done"].tolist() == [True, True, False, False, False]

    torch.set_num_threads(1)
    model = xb.models.make_model("small_vgg", num_classes=2, seed=0)
    ds = xb.data.SyntheticLesions(n=18, size=32, seed=3)
    resumed = read(xb.explain.attribute_dataset(model, ds, out=tmp_path / "k.h5", batch_size=4, progress=False,
                                                engine="zennit"))
    full = read(xb.explain.attribute_dataset(model, ds, out=tmp_path / "f.h5", batch_size=4, progress=False,
                                             engine="zennit"))
    assert resumed["attrs"]["complete"]
    assert_same_rows(resumed, full)


def test_resume_refuses_other_settings_and_resume_false_restarts(data: Pairs, tmp_path: Path) -> None:
    path = tmp_path / "r.h5"
    xb.explain.attribute_dataset(TinyNet(), data, method="gradient", out=path, batch_size=8, progress=False)
    with pytest.raises(ValueError, match="was written with method='gradient' but this run has method='lrp'"):
        xb.explain.attribute_dataset(TinyNet(), data, method="lrp", out=path, batch_size=8, progress=False)
    with pytest.raises(ValueError, match="was written with batch_size=8 but this run has batch_size=4"):
        xb.explain.attribute_dataset(TinyNet(), data, method="gradient", out=path, batch_size=4, progress=False)
    other = TinyNet()
    with torch.no_grad():
        other.head[2].weight.add_(1.0)
    with pytest.raises(ValueError, match="model_hash"):
        xb.explain.attribute_dataset(other, data, method="gradient", out=path, batch_size=8, progress=False)
    xb.explain.attribute_dataset(TinyNet(), data, method="lrp", out=path, batch_size=4, resume=False, progress=False)
    assert read(path)["attrs"]["method"] == "lrp"


def test_resume_refuses_foreign_and_corrupt_files(data: Pairs, tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(ValueError, match="not written by attribute_dataset"):
        xb.explain.attribute_dataset(TinyNet(), data, out=foreign, progress=False)
    corrupt = tmp_path / "corrupt.h5"
    corrupt.write_bytes(b"not hdf5 at all")
    with pytest.raises(ValueError, match="not readable HDF5.*resume=False"):
        xb.explain.attribute_dataset(TinyNet(), data, out=corrupt, progress=False)


# --------------------------------------------------------------------------------------------------
# sharding


def test_shards_merge_to_the_single_process_result(data: Pairs, tmp_path: Path) -> None:
    single = read(xb.explain.attribute_dataset(TinyNet(), data, out=tmp_path / "one.h5", batch_size=4,
                                               progress=False))
    paths = [xb.explain.attribute_dataset(TinyNet(), data, out=tmp_path / "r.h5", batch_size=4, shard=(r, 3),
                                          progress=False) for r in range(3)]
    assert [p.name for p in paths] == ["r.shard0of3.h5", "r.shard1of3.h5", "r.shard2of3.h5"]
    s1 = read(paths[1])
    np.testing.assert_array_equal(s1["index"], [4, 5, 6, 7, 16, 17, 18, 19])  # chunks 1 and 4 of 0..5
    merged = read(xb.explain.dataset.merge_shards(paths[::-1], tmp_path / "merged.h5"))
    assert_same_rows(merged, single)
    for key in ("method", "batch_size", "model_hash", "n_total", "shard", "complete"):
        assert merged["attrs"][key] == single["attrs"][key]


def test_merge_errors(data: Pairs, tmp_path: Path) -> None:
    paths = [xb.explain.attribute_dataset(TinyNet(), data, method="gradient", out=tmp_path / "r.h5", batch_size=8,
                                          shard=(r, 2), progress=False) for r in range(2)]
    with pytest.raises(ValueError, match=r"missing shard rank\(s\) \[1\] of 2"):
        xb.explain.dataset.merge_shards(paths[:1], tmp_path / "m.h5")
    with pytest.raises(ValueError, match="paths is empty"):
        xb.explain.dataset.merge_shards([], tmp_path / "m.h5")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        xb.explain.dataset.merge_shards([tmp_path / "nope.h5"], tmp_path / "m.h5")
    other = xb.explain.attribute_dataset(TinyNet(), data, method="lrp", out=tmp_path / "o.h5", batch_size=8,
                                         shard=(1, 2), progress=False)
    with pytest.raises(ValueError, match="shards of different runs cannot be merged"):
        xb.explain.dataset.merge_shards([paths[0], other], tmp_path / "m.h5")
    with pytest.raises(ValueError, match="not a shard"):
        xb.explain.dataset.merge_shards([xb.explain.attribute_dataset(TinyNet(), data, method="gradient",
                                                               out=tmp_path / "full.h5", progress=False)],
                                tmp_path / "m.h5")
    with pytest.raises(KeyboardInterrupt):
        xb.explain.attribute_dataset(TinyNet(fail_after=1), data, method="gradient", out=tmp_path / "i.h5",
                                     batch_size=8, shard=(1, 2), progress=False)
    with pytest.raises(ValueError, match="is incomplete"):
        xb.explain.dataset.merge_shards([paths[0], tmp_path / "i.shard1of2.h5"], tmp_path / "m.h5")
    assert not (tmp_path / "m.h5").exists()


def test_two_process_gloo_run_equals_single_process(tmp_path: Path) -> None:
    script = tmp_path / "dist.py"
    script.write_text(textwrap.dedent(f"""
        import os, torch, torch.distributed as dist, torch.multiprocessing as mp
        import xaibias as xb

        OUT = {str(tmp_path)!r}

        def setup():
            torch.set_num_threads(1)
            return xb.models.make_model("small_vgg", num_classes=2, seed=0), xb.data.SyntheticLesions(n=19, size=32, seed=5)

        def worker(rank, world):
            os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=os.environ["PORT"])
            dist.init_process_group("gloo", rank=rank, world_size=world)
            model, ds = setup()
            xb.explain.attribute_dataset(model, ds, out=OUT + "/rel.h5", batch_size=4, shard="auto", progress=False)
            dist.barrier()
            if rank == 0:
                xb.explain.dataset.merge_shards([xb.explain.dataset.shard_path(OUT + "/rel.h5", r, world) for r in range(world)],
                                        OUT + "/merged.h5")
            dist.barrier()
            dist.destroy_process_group()

        if __name__ == "__main__":
            mp.spawn(worker, args=(2,), nprocs=2, join=True)
            model, ds = setup()
            xb.explain.attribute_dataset(model, ds, out=OUT + "/single.h5", batch_size=4, progress=False)
    """))
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, PORT=str(port))
    res = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / "rel.shard0of2.h5").exists() and (tmp_path / "rel.shard1of2.h5").exists()
    assert read(tmp_path / "rel.shard1of2.h5")["index"].tolist() == [4, 5, 6, 7, 12, 13, 14, 15]
    assert_same_rows(read(tmp_path / "merged.h5"), read(tmp_path / "single.h5"))


def test_shard_auto_reads_torchrun_environment(data: Pairs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    out = xb.explain.attribute_dataset(TinyNet(), data, method="gradient", out=tmp_path / "e.h5", batch_size=8,
                                       shard="auto", progress=False)
    assert out.name == "e.shard1of2.h5" and read(out)["index"].tolist() == list(range(8, 16))
    monkeypatch.delenv("RANK")
    with pytest.raises(ValueError, match="shard='auto' needs"):
        xb.explain.attribute_dataset(TinyNet(), data, out=tmp_path / "e.h5", shard="auto", progress=False)


# --------------------------------------------------------------------------------------------------
# bad input


class _Empty:
    def __len__(self) -> int:
        return 0

    def __getitem__(self, i: int):
        raise IndexError(i)


class _Bare:
    def __len__(self) -> int:
        return 3

    def __getitem__(self, i: int):
        return torch.rand(3, 8, 8)


@pytest.mark.parametrize(
    ("kwargs", "dataset", "match"),
    [
        ({}, _Empty(), "dataset is empty"),
        ({}, [1, 2, 3], r"dataset\[0\] must return \(image, label\)"),
        ({}, _Bare(), r"dataset\[0\] must return \(image, label\)"),
        ({}, [(torch.rand(8, 8), 0)], r"dataset\[0\] image must be a \(3,H,W\) tensor"),
        ({}, [(torch.rand(3, 8, 8), -1)], r"dataset\[0\] label must be one non-negative integer"),
        ({}, [(torch.rand(3, 8, 8), 0.5)], r"dataset\[0\] label must be one non-negative integer"),
        ({"method": "magic"}, None, "unknown method 'magic'"),
        ({"batch_size": 0}, None, "batch_size must be a positive int"),
        ({"num_workers": -1}, None, "num_workers must be an int >= 0"),
        ({"downsize": 32}, None, r"downsize must be between 1 and the image size \(16, 16\)"),
        ({"downsize": (4, 0)}, None, "downsize must be between 1"),
        ({"downsize": "small"}, None, "downsize must be None, an int or"),
        ({"shard": (2, 2)}, None, r"shard must be \(rank, world\) with 0 <= rank < world"),
        ({"shard": 3}, None, r"shard must be None, 'auto' or \(rank, world\)"),
        ({"target": "truth"}, None, "target must be None .*'label'"),
        ({"images": 1}, None, "'images' is not an attribute\\(\\) keyword here"),
    ],
)
def test_bad_input_messages(kwargs: dict, dataset, match: str, data: Pairs, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=match):
        xb.explain.attribute_dataset(TinyNet(), data if dataset is None else dataset, out=tmp_path / "x.h5",
                                     progress=False, **kwargs)
    assert not (tmp_path / "x.h5").exists()  # nothing is written before the arguments are checked


def test_not_a_dataset_and_mixed_sizes(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="dataset must have __len__ and __getitem__"):
        xb.explain.attribute_dataset(TinyNet(), 42, out=tmp_path / "x.h5")
    mixed = [(torch.rand(3, 8, 8), 0), (torch.rand(3, 10, 10), 1)]
    with pytest.raises(ValueError, match="differ in size within one chunk"):
        xb.explain.attribute_dataset(TinyNet(), mixed, method="gradient", out=tmp_path / "m.h5", progress=False)
