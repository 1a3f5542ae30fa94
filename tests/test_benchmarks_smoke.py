"""Every benchmark script runs with --quick, prints its table and writes the JSON structure.

Timings are never asserted (they depend on the machine and its load); the structure is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
MACHINE_KEYS = {"date_utc", "cpu", "cores", "cores_usable", "torch_threads", "device", "python", "torch",
                "load_average", "load_average_end"}


def run_bench(name: str, tmp_path: Path, *extra: str, env: dict | None = None) -> tuple[dict, str]:
    out = tmp_path / "deep" / "folder" / f"{name}.json"  # parent folders are created by the script
    res = subprocess.run([sys.executable, str(BENCH / f"{name}.py"), "--quick", "--json", str(out), *extra],
                         cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    payload = json.loads(out.read_text())
    assert payload["benchmark"] == name and payload["quick"] is True
    assert MACHINE_KEYS <= set(payload["machine"])
    assert payload["rows"], "no rows"
    keys = [c["key"] for c in payload["columns"]]
    headers = [c["header"] for c in payload["columns"]]
    # the printed Markdown table has the headers in order and one line per row
    header_line = next(ln for ln in res.stdout.splitlines() if ln.startswith("| ") and headers[0] in ln)
    assert [h.strip() for h in header_line.strip("|").split("|")] == headers
    table_lines = [ln for ln in res.stdout.splitlines() if ln.startswith("| ")]
    assert len(table_lines) == 1 + len(payload["rows"])
    assert "machine: " in res.stdout and "load average" in res.stdout
    for row in payload["rows"]:
        assert set(row) <= set(keys) | {"median_s", "error"}, set(row) - set(keys)
    return payload, res.stdout


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@pytest.mark.slow
def test_bench_attribution_quick(tmp_path: Path) -> None:
    payload, _ = run_bench("bench_attribution", tmp_path)
    methods = {(r["model"], r["method"]) for r in payload["rows"]}
    for model in ("small_vgg", "small_densenet"):
        for m in ("input gradient (floor)", "zennit Gradient loop", "xaibias attribute()", "attribute_dataset (HDF5)",
                  "zennit Gradient loop per image", "xaibias attribute() per image"):
            assert (model, m) in methods
    assert ("small_vgg", "captum LRP (epsilon)") in methods
    assert any("captum LRP does not apply to small_densenet" in n for n in payload["notes"])
    for r in payload["rows"]:
        assert all(_is_number(r[k]) for k in ("images_per_s", "ms_per_image", "x_floor", "x_zennit"))
        if r["method"] == "input gradient (floor)":
            assert r["x_floor"] == 1.0
    assert "small_vgg: attribute() overhead over bare zennit (%)" in payload["summary"]


@pytest.mark.slow
def test_bench_clustering_quick(tmp_path: Path) -> None:
    payload, _ = run_bench("bench_clustering", tmp_path)
    methods = {r["method"] for r in payload["rows"]}
    assert {"xaibias SpRAy", "xaibias GEBI", "sklearn kNN + eigsh + k-means"} <= methods
    for r in payload["rows"]:
        if "fit_s" in r:
            assert _is_number(r["fit_s"]) and 0 <= r["ari"] <= 1
    assert "xaibias SpRAy: growth exponent b (time ~ N^b)" in payload["summary"]


@pytest.mark.slow
def test_bench_clustering_without_corelay_says_so(tmp_path: Path) -> None:
    # a module named corelay that fails to import stands in for a missing installation
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "corelay.py").write_text("raise ImportError('corelay blocked for this test')\n")
    env = dict(os.environ, PYTHONPATH=str(blocker) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    payload, out = run_bench("bench_clustering", tmp_path, "--sizes", "120", env=env)
    assert not any(r["method"].startswith("CoRelAy") for r in payload["rows"])
    assert any("CoRelAy rows skipped: corelay is not installed" in n for n in payload["notes"])
    assert "CoRelAy rows skipped" in out


@pytest.mark.slow
def test_bench_metrics_quick(tmp_path: Path) -> None:
    payload, _ = run_bench("bench_metrics", tmp_path)
    assert [r["metric"] for r in payload["rows"]] == ["RMA", "RRA", "AOPC (region perturbation)"]
    for r in payload["rows"]:
        assert r["max_abs_diff"] < 1e-4  # the values agree with Quantus
    assert set(payload["summary"]) >= {"RMA: >= 100x faster than Quantus", "AOPC: <= 1.2x its forward passes"}


@pytest.mark.slow
def test_bench_notebooks_quick(tmp_path: Path) -> None:
    payload, _ = run_bench("bench_notebooks", tmp_path)
    assert [r["notebook"] for r in payload["rows"]] == ["00_quick_check.ipynb", "total"]
    assert payload["rows"][0]["status"] == "ok" and payload["summary"]["all ok"] is True


@pytest.mark.slow
def test_bench_features_quick(tmp_path: Path) -> None:
    payload, _ = run_bench("bench_features", tmp_path)
    rows = {(r["method"], r["batch"]) for r in payload["rows"]}
    assert ("plain eager loop", 32) in rows and any(m == "xb.models.extract_features()" for m, _ in rows)
    for r in payload["rows"]:
        assert all(_is_number(r[k]) and r[k] > 0 for k in ("photos_per_s", "photos_per_cpu_s", "x_eager"))
        assert r["max_rel_diff"] < 1e-3  # every faster route computes the same features as the eager loop
        if (r["method"], r["batch"]) == ("plain eager loop", 32):
            assert r["x_eager"] == 1.0
    assert "extract_features / plain eager loop (wall)" in payload["summary"]
    assert any("quick run" in n for n in payload["notes"])
