"""tools/spray_vs_gebi_seeds.py: notebook 02's settings, and a tiny end-to-end run that prints the table."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

import xaibias as xb

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("spray_vs_gebi_seeds", ROOT / "tools" / "spray_vs_gebi_seeds.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _settings_cell() -> str:
    nb = json.loads((ROOT / "notebooks" / "02_spray_vs_gebi.ipynb").read_text())
    return next("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code" and "N_IMAGES" in "".join(c["source"]))


def test_settings_match_the_notebook():
    s, cell = _script(), _settings_cell()
    assert re.search(rf"N_IMAGES = xb\.config\.pick\({s.N_IMAGES[True]}, {s.N_IMAGES[False]}\)", cell)
    assert re.search(rf"EPOCHS = xb\.config\.pick\({s.EPOCHS[True]}, {s.EPOCHS[False]}\)", cell)
    assert re.search(rf'MODEL, SIZE = "{s.MODEL}", {s.SIZE}', cell)
    assert re.search(rf"N_CLUSTERS = {s.N_CLUSTERS}\b", cell)
    assert re.search(rf"N_NEIGHBORS = {s.N_NEIGHBORS}\b", cell)
    assert re.search(rf"IMAGE_WEIGHT = {s.IMAGE_WEIGHT}\b", cell)
    assert f"frame=({s.FRAME_BIAS[0]}, {s.FRAME_BIAS[1]})" in cell
    assert f"frame=({s.NO_FRAME_BIAS[0]}, {s.NO_FRAME_BIAS[1]})" in cell
    assert re.search(rf"DIFFICULTY = xb\.config\.pick\({s.DIFFICULTY[True]}, xb\.data\.RECOMMENDED_DIFFICULTY\)", cell)
    assert s.DIFFICULTY[False] == xb.data.RECOMMENDED_DIFFICULTY
    assert re.search(rf"N_BOOT = xb\.config\.pick\({s.N_BOOT[True]}, {s.N_BOOT[False]}\)", cell)
    code = "".join("".join(c["source"]) for c in json.loads((ROOT / "notebooks" / "02_spray_vs_gebi.ipynb").read_text())["cells"])
    assert "test_fraction=0.3" in code
    # the notebook clusters the malignant test images, as the script does, with intervals and gates
    assert "(y_test == 1).nonzero()" in code and "(yt == 1).nonzero()" in code
    assert "n_boot=N_BOOT).assign(seed=seed)" in code


def test_parse_seeds_reads_ranges_and_lists():
    s = _script()
    assert s.parse_seeds("0-2,9") == [0, 1, 2, 9]
    with pytest.raises(ValueError, match="seeds must name"):
        s.parse_seeds("0-")
    # the script uses the package's parser rather than a copy of its own
    assert "def parse_seeds" not in (ROOT / "tools" / "spray_vs_gebi_seeds.py").read_text()


def test_tiny_run_prints_the_table(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XAIBIAS_CACHE", str(tmp_path / "cache"))
    s = _script()
    csv = tmp_path / "rows.csv"
    assert s.main(["--seeds", "0,1", "--fast", "--n-images", "240", "--epochs", "1", "--size", "32",
                   "--csv", str(csv)]) == 0
    out = capsys.readouterr().out
    assert "frame F1 of the best cluster at k = 2 per seed" in out and "one cluster F1" in out
    assert "k = 2: gate passed in" in out and "k = 4: gate passed in" in out and "clean accuracy" in out
    import pandas as pd

    rows = pd.read_csv(csv)
    assert set(rows["seed"]) == {0, 1} and set(rows["method"]) == {"SpRAy", "GEBI"} and set(rows["k"]) == {2, 4}
    assert rows["f1"].between(0, 1).all() and rows["f1_one_cluster"].between(0, 1).all()
    assert (rows["f1_low"] <= rows["f1"] + 1e-9).all() and rows["passes_gate"].isin([True, False]).all()
