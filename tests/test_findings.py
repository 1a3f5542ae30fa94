import json

import numpy as np
import pytest
import torch

import xaibias as xb
from xaibias import findings


def test_check_passes_prints_margin_and_records(tmp_path, monkeypatch, capsys):
    out = tmp_path / "f.jsonl"
    monkeypatch.setenv("XAIBIAS_FINDINGS", str(out))
    monkeypatch.setenv("XAIBIAS_SEED", "3")
    f = findings.check("accuracy drop", 0.25, ">=", 0.10)
    assert f.passed and f.margin == pytest.approx(0.15)
    assert "PASS accuracy drop: 0.250 >= 0.100 (margin 0.150)" in capsys.readouterr().out
    row = json.loads(out.read_text())
    assert row["name"] == "accuracy drop" and row["seed"] == 3 and row["threads"] == torch.get_num_threads()


def test_check_uses_the_near_end_of_the_interval():
    # the point value clears the bound, the interval does not: the finding fails
    with pytest.raises(AssertionError, match="FAIL gap: 0.300 \\[-0.050, 0.600\\] > 0.000"):
        findings.check("gap", 0.3, ">", 0.0, low=-0.05, high=0.6, quiet=True)
    f = findings.check("small", 0.2, "<", 0.5, low=0.1, high=0.4, quiet=True)
    assert f.margin == pytest.approx(0.1)
    with pytest.raises(AssertionError):
        findings.check("small", 0.2, "<", 0.5, low=0.1, high=0.55, quiet=True)


def test_check_rejects_nan_bad_op_and_inverted_interval():
    with pytest.raises(ValueError, match="x: value is NaN"):
        findings.check("x", float("nan"), ">", 0)
    with pytest.raises(ValueError, match="op must be one of"):
        findings.check("x", 1, "=>", 0)
    with pytest.raises(ValueError, match="interval low 2.0 is above high 1.0"):
        findings.check("x", 1.5, ">", 0, low=2, high=1)
    with pytest.raises(ValueError, match="single number"):
        findings.check("x", torch.ones(2), ">", 0)


def test_all_hold_evaluates_every_check_before_failing(tmp_path, monkeypatch):
    out = tmp_path / "f.jsonl"
    monkeypatch.setenv("XAIBIAS_FINDINGS", str(out))
    with pytest.raises(AssertionError, match="2 finding\\(s\\) do not hold") as err:
        with findings.all_hold():
            findings.check("a", 0.0, ">", 1.0, quiet=True)
            findings.check("b", 2.0, ">", 1.0, quiet=True)
            findings.check("c", 5.0, "<", 1.0, quiet=True)
    assert "FAIL a" in str(err.value) and "FAIL c" in str(err.value) and "FAIL b" not in str(err.value)
    assert [json.loads(line)["name"] for line in out.read_text().splitlines()] == ["a", "b", "c"]
    # outside the block a failing check raises at once again
    with pytest.raises(AssertionError):
        findings.check("d", 0.0, ">", 1.0, quiet=True)


def test_observe_verdict_and_paper_table(capsys):
    f = findings.observe("variance ratio", 1.7, low=0.9, high=2.5)
    assert f.kind == "observation" and f.passed is None
    assert "OBSERVED variance ratio: 1.700 [0.900, 2.500] (not asserted)" in capsys.readouterr().out
    assert findings.verdict(np.float64(0.3) > 0.1, "above", "below") == "above"
    assert findings.verdict(False, "above", "below") == "below"
    t = findings.paper_vs_run([("frame, benign (pp)", 32.04, 48.3)], paper="GEBI Table 1")
    assert list(t.columns) == ["GEBI Table 1", "this run"] and t.loc["frame, benign (pp)", "this run"] == 48.3
    with pytest.raises(ValueError, match="row 0 must be"):
        findings.paper_vs_run([("only two", 1)])


def test_bootstrap_ci_covers_the_mean_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    small, large = rng.normal(1.0, 1.0, 30), rng.normal(1.0, 1.0, 3000)
    v, lo, hi = xb.analysis.bootstrap_ci(small, seed=0)
    assert lo < v < hi and v == pytest.approx(small.mean())
    _, lo2, hi2 = xb.analysis.bootstrap_ci(large, seed=0)
    assert lo2 < 1.0 < hi2 and (hi2 - lo2) < (hi - lo) / 5
    # two samples: difference of means, the same seed gives the same interval
    a, b = rng.normal(2, 1, 200), rng.normal(0, 1, 200)
    d1 = xb.analysis.bootstrap_ci(a, b, seed=1)
    assert d1 == xb.analysis.bootstrap_ci(a, b, seed=1) and d1[1] > 1.5
    med = xb.analysis.bootstrap_ci(torch.tensor(a), statistic=np.median, seed=0)
    assert med[0] == pytest.approx(np.median(a))


def test_bootstrap_ci_bad_input():
    with pytest.raises(ValueError, match="sample 0 must be 1-D"):
        xb.analysis.bootstrap_ci(np.ones((3, 3)))
    with pytest.raises(ValueError, match="sample 1 holds 1 NaN"):
        xb.analysis.bootstrap_ci(np.ones(3), np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="at least 2 values"):
        xb.analysis.bootstrap_ci(np.ones(1))
    with pytest.raises(ValueError, match="pass statistic="):
        xb.analysis.bootstrap_ci(np.ones(3), np.ones(3), np.ones(3))
