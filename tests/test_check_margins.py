import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("check_margins", ROOT / "tools" / "check_margins.py")
cm = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cm)


def _write(path, rows, ok=True):
    lines = [json.dumps(r) for r in rows] + [json.dumps({"kind": "run", "ok": ok, "status": "done"})]
    path.write_text("\n".join(lines) + "\n")


def test_parse_seeds_reads_ranges_and_lists():
    assert cm.parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert cm.parse_seeds("0,3,7") == [0, 3, 7]
    assert cm.parse_seeds("1-2, 5") == [1, 2, 5]
    for bad in ("", "a", "-1", "3-x"):
        with pytest.raises(ValueError, match="seeds must name"):
            cm.parse_seeds(bad)
    # the tool uses the package's parser rather than a copy of its own
    assert "def parse_seeds" not in (ROOT / "tools" / "check_margins.py").read_text()


def test_margins_table_takes_the_worst_run(tmp_path):
    def chk(v, margin, passed=True):
        return {"kind": "check", "name": "drop", "value": v, "op": ">=", "bound": 0.1, "margin": margin,
                "passed": passed, "notebook": "00_x"}
    _write(tmp_path / "00_x-s0-t1.jsonl", [chk(0.3, 0.2), {"kind": "observation", "name": "tau", "value": -0.4,
                                                          "notebook": "00_x"}])
    _write(tmp_path / "00_x-s1-t1.jsonl", [chk(0.12, 0.02), {"kind": "observation", "name": "tau", "value": 0.1,
                                                           "notebook": "00_x"}])
    _write(tmp_path / "00_x-s2-t2.jsonl", [chk(0.05, -0.05, passed=False)], ok=False)
    table = cm.margins_table(cm.load_findings(tmp_path), cm.load_runs(tmp_path))
    assert "| 00_x | drop | >= 0.1 | 0.05 | 0.3 | -0.05 | 2/3 |" in table
    assert "| 00_x | tau | observed, not asserted | -0.4 | 0.1 | | 2 runs |" in table
    assert "runs that did not finish** | | | | | 00_x-s2-t2" in table


def test_pipes_in_names_are_escaped(tmp_path):
    row = {"kind": "check", "name": "largest |x - 1|", "value": 0.1, "op": "<", "bound": 0.5, "margin": 0.4,
           "passed": True, "notebook": "03_x"}
    _write(tmp_path / "03_x-s0-t1.jsonl", [row])
    table = cm.margins_table(cm.load_findings(tmp_path), cm.load_runs(tmp_path))
    assert "| 03_x | largest \\|x - 1\\| | < 0.5 |" in table



def test_verdict_sheet_lists_every_recorded_verdict_and_gate(tmp_path, monkeypatch):
    import torch

    import xaibias as xb

    for seed, acc in ((0, (0.62, 0.55, 0.69)), (1, (0.53, 0.46, 0.60))):
        f = tmp_path / f"02_x-s{seed}-t1.jsonl"
        monkeypatch.setenv("XAIBIAS_FINDINGS", str(f))
        monkeypatch.setenv("XAIBIAS_SEED", str(seed))
        xb.findings.compare(acc, 0.5, name="accuracy vs chance", a_label="model", b_label="chance", quiet=True)
        xb.findings.clustering_gate("GEBI | frame", acc, {"one cluster": 0.58}, quiet=True)
        with open(f, "a") as fh:
            fh.write(json.dumps({"kind": "run", "ok": True, "status": "done"}) + "\n")
    rows = cm.load_verdicts(tmp_path)
    assert [r["kind"] for r in rows] == ["comparison", "gate", "comparison", "gate"]
    sheet = cm.verdict_sheet(rows)
    # the word changes between the two seeds, and the summary says so
    assert "| 02_x | accuracy vs chance | clearly higher (1), not distinguishable at this size (1) |" in sheet
    assert "| 02_x | GEBI \\| frame (gate) | flagged (2) |" in sheet
    threads = torch.get_num_threads()  # recorded from the run, not from the file name
    assert (f"| 02_x | seed 1, {threads} thr. | accuracy vs chance | not distinguishable at this size | "
            "difference 0.03 [-0.04, 0.1] | model 0.53 [0.46, 0.6] | chance 0.5 |") in sheet
    assert cm.verdict_sheet([]).startswith("No verdicts were recorded")


def test_table_only_names_the_runs_it_was_built_from(tmp_path):
    # --table-only must not claim the default seeds and threads: it names the runs found in --out
    for name in ("05_measuring_bias-s0-t2.jsonl", "08_real_isic-s3-t1.jsonl", "08_real_isic-s0-t2.jsonl"):
        (tmp_path / name).write_text(json.dumps({"kind": "run", "ok": True, "seconds": 1.0}) + "\n")
    (tmp_path / "notes.jsonl").write_text("")   # not a run file: ignored
    sheet, table = tmp_path / "sheet.md", tmp_path / "table.md"
    cm.main(["--table-only", "--out", str(tmp_path), "--verdicts", str(sheet), "--table", str(table)])
    head = sheet.read_text().splitlines()[2]
    assert head.startswith("Written by `python tools/check_margins.py --table-only --verdicts")
    assert "05_measuring_bias: seed 0 x 2 thread(s); 08_real_isic: seed 0 x 2 thread(s), seed 3 x 1 thread(s)" in head
    assert "--seeds" not in head and "--seeds" not in table.read_text().splitlines()[2]
