"""tools/spray_vs_gebi_seeds.py: notebook 02's settings, and a tiny end-to-end run that prints the table."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

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
    assert "test_fraction=0.3" in "".join(
        "".join(c["source"]) for c in json.loads((ROOT / "notebooks" / "02_spray_vs_gebi.ipynb").read_text())["cells"])


def test_parse_seeds_is_the_shared_one():
    from xaibias.config import parse_seeds

    assert _script().parse_seeds is parse_seeds


def test_tiny_run_prints_the_table(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XAIBIAS_CACHE", str(tmp_path / "cache"))
    s = _script()
    csv = tmp_path / "rows.csv"
    assert s.main(["--seeds", "0,1", "--fast", "--n-images", "240", "--epochs", "1", "--size", "32",
                   "--csv", str(csv)]) == 0
    out = capsys.readouterr().out
    assert "frame F1 of the best cluster per seed" in out and "one cluster" in out
    assert "k = 2: SpRAy" in out and "k = 4: SpRAy" in out
    import pandas as pd

    rows = pd.read_csv(csv)
    assert set(rows["seed"]) == {0, 1} and set(rows["method"]) == {"SpRAy", "GEBI"} and set(rows["k"]) == {2, 4}
    assert rows["f1"].between(0, 1).all() and rows["f1_one_cluster"].between(0, 1).all()
