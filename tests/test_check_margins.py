import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("check_margins", ROOT / "tools" / "check_margins.py")
cm = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cm)


def _write(path, rows, ok=True):
    lines = [json.dumps(r) for r in rows] + [json.dumps({"kind": "run", "ok": ok, "status": "done"})]
    path.write_text("\n".join(lines) + "\n")


def test_parse_seeds_is_the_shared_one():
    from xaibias.config import parse_seeds

    assert cm.parse_seeds is parse_seeds


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

