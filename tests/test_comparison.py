"""xb.findings.compare and the validity gates on constructed cases whose answer is known."""

import json
import math

import numpy as np
import pytest
import torch
from scipy import stats

import xaibias as xb
from xaibias import findings


def test_overlapping_intervals_are_not_distinguishable():
    c = findings.compare((0.52, 0.45, 0.59), (0.50, 0.45, 0.55), name="acc", a_label="x", b_label="y", quiet=True)
    assert c.word == "not distinguishable at this size" and not c.distinguishable
    assert c.low < 0 < c.high and c.value == pytest.approx(0.02)
    # the same two point values with narrow intervals are clearly apart
    c = findings.compare((0.52, 0.515, 0.525), (0.50, 0.495, 0.505), name="acc", quiet=True)
    assert c.word == "clearly higher" and c.higher


def test_two_intervals_combine_in_quadrature():
    # standard errors 0.1 / 1.96 each: the difference's half-width is 1.96 * sqrt(2) * 0.1 / 1.96
    c = findings.compare((1.0, 0.9, 1.1), (0.5, 0.4, 0.6), name="d", quiet=True)
    assert c.value == pytest.approx(0.5)
    assert (c.low, c.high) == pytest.approx((0.5 - 0.1 * math.sqrt(2), 0.5 + 0.1 * math.sqrt(2)), abs=1e-3)
    # a ratio combines on the log scale
    r = findings.compare((2.0, 1.6, 2.5), (1.0, 0.8, 1.25), name="r", ratio=True, quiet=True)
    half = math.hypot(math.log(2.5 / 1.6), math.log(1.25 / 0.8)) / 2
    assert (r.low, r.high) == pytest.approx((2 * math.exp(-half), 2 * math.exp(half)), rel=2e-3)
    with pytest.raises(ValueError, match="level must be one of"):
        findings.compare((1.0, 0.9, 1.1), (0.5, 0.4, 0.6), name="d", level=0.8, quiet=True)


def test_a_fixed_baseline_shifts_the_estimate_interval():
    c = findings.compare((0.62, 0.55, 0.69), 0.5, name="acc vs chance", a_label="accuracy", b_label="chance",
                         quiet=True)
    assert (c.value, c.low, c.high) == pytest.approx((0.12, 0.05, 0.19))
    assert c.higher and "clearly higher than chance 0.500" in c.sentence()
    # a format that signs already is used as it is (the notebooks pass fmt="+.2f")
    assert "(difference +0.12, 95 % interval [+0.05, +0.19]" in c.sentence("+.2f")
    c = findings.compare((0.55, 0.48, 0.62), 0.5, name="acc vs chance", quiet=True)
    assert c.word == "not distinguishable at this size"
    r = findings.compare((0.30, 0.20, 0.40), 0.6, name="share", ratio=True, quiet=True)
    assert (r.value, r.low, r.high) == pytest.approx((0.5, 1 / 3, 2 / 3)) and r.lower


def test_pairing_sees_a_small_consistent_shift_that_unpaired_samples_hide():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, 300)   # large spread between images
    b = a + 0.05 + rng.normal(0, 0.01, 300)  # every image 0.05 higher under b
    unpaired = findings.compare(a, b, name="u", quiet=True)
    paired = findings.compare(a, b, name="p", paired=True, quiet=True)
    assert unpaired.word == "not distinguishable at this size"
    assert paired.word == "clearly lower" and paired.high < 0
    # the paired interval agrees with a t interval of the per-image differences
    d = a - b
    half = stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size)
    assert paired.low == pytest.approx(d.mean() - half, abs=2e-4)
    assert paired.high == pytest.approx(d.mean() + half, abs=2e-4)


def test_ratio_versus_difference_of_samples():
    rng = np.random.default_rng(1)
    b = rng.uniform(1, 2, 400)
    a = 0.5 * b  # half of b on every unit
    r = findings.compare(a, b, name="r", ratio=True, paired=True, quiet=True)
    assert r.value == pytest.approx(0.5) and r.low == pytest.approx(0.5) and r.high == pytest.approx(0.5)
    assert r.lower and r.null == 1.0 and "ratio 0.500" in r.sentence()
    d = findings.compare(a, b, name="d", paired=True, quiet=True)
    assert d.value == pytest.approx(a.mean() - b.mean()) and d.null == 0.0 and d.lower


def test_pick_and_sentence_follow_the_word():
    c = findings.compare((0.9, 0.85, 0.95), 0.5, name="q", quiet=True)
    assert c.pick("up", "down", "same") == "up"
    c = findings.compare((0.5, 0.4, 0.6), 0.5, name="q", quiet=True)
    assert c.pick("up", "down", "same") == "same"
    assert "is not distinguishable at this size from" in c.sentence()


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="single number has no interval"):
        findings.compare(0.7, 0.5, name="x", quiet=True)
    with pytest.raises(ValueError, match="paired=True needs samples"):
        findings.compare((0.7, 0.6, 0.8), [0.5, 0.4, 0.6], name="x", paired=True, quiet=True)
    with pytest.raises(ValueError, match="same length"):
        findings.compare([1, 2, 3.0], [1, 2.0], name="x", paired=True, quiet=True)
    with pytest.raises(ValueError, match="NaN"):
        findings.compare([1, np.nan, 3.0], 0.5, name="x", quiet=True)
    with pytest.raises(ValueError, match="low 0.8 is above high 0.6"):
        findings.compare((0.7, 0.8, 0.6), 0.5, name="x", quiet=True)
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        findings.compare([1, 2.0], 0.5, name="", quiet=True)
    with pytest.raises(ValueError, match="positive baseline"):
        findings.compare((0.7, 0.6, 0.8), 0.0, name="x", ratio=True, quiet=True)


def test_comparisons_are_recorded_for_the_verdict_sheet(tmp_path, monkeypatch, capsys):
    out = tmp_path / "f.jsonl"
    monkeypatch.setenv("XAIBIAS_FINDINGS", str(out))
    monkeypatch.setenv("XAIBIAS_SEED", "7")
    c = findings.compare((0.8, 0.7, 0.9), 0.5, name="acc vs chance", a_label="model", b_label="chance")
    assert c.sentence() in capsys.readouterr().out
    row = json.loads(out.read_text())
    assert row["kind"] == "comparison" and row["word"] == "clearly higher" and row["seed"] == 7
    assert row["sentence"] == c.sentence() and row["b"] == 0.5


# ---------------------------------------------------------------------------------------------
# gates


class FrameDetector(torch.nn.Module):
    """Says 'malignant' exactly when the image's corners are dark: a model collapsed onto the frame."""

    def forward(self, x):
        g = x.mean(1)
        corners = torch.stack([g[:, :3, :3], g[:, :3, -3:], g[:, -3:, :3], g[:, -3:, -3:]], 1)
        dark = corners.mean((1, 2, 3)) < 0.3
        return torch.stack([(~dark).float(), dark.float()], 1) * 4 - 2


def _correct(model, ds):
    return (xb.models.predict(model, ds.images) == ds.labels).double().numpy()


def test_a_model_collapsed_onto_an_artifact_is_flagged():
    sets = {k: xb.data.SyntheticLesions(n=300, size=32, bias={"frame": p}, seed=s)
            for k, p, s in (("clean", (0.5, 0.5), 1), ("same", (0.8, 0.1), 2), ("reversed", (0.1, 0.8), 3))}
    model = FrameDetector()
    correct = {k: _correct(model, ds) for k, ds in sets.items()}
    rule = {k: xb.findings.artifact_rule_accuracy(ds.artifacts["frame"], ds.labels, positive=1)
            for k, ds in sets.items()}
    g = xb.findings.model_gate("frame detector", correct["clean"], same=correct["same"],
                               reversed=correct["reversed"], rule=rule, quiet=True)
    assert not g and "collapsed" in g.line()
    assert any("reaches chance" in r for r in g.reasons)
    assert any("below chance" in r for r in g.reasons)
    assert any("single-artifact rule explains it" in r for r in g.reasons)
    # above chance everywhere, but the rule accounts for it: named as such, not as collapsed
    only_rule = xb.findings.model_gate("frame detector, clean set framed", correct["same"], same=correct["same"],
                                       rule={"same": rule["same"]}, quiet=True)
    assert not only_rule and "(explained by one artifact)" in only_rule.line()
    assert "collapsed" not in only_rule.line()
    # numbers resting on it are not interpretable, whatever their interval says
    c = xb.findings.compare((0.4, 0.35, 0.45), 0.1, name="insertion effect", gates=[g], quiet=True)
    assert c.word == "not interpretable" and c.sentence().startswith("NOT INTERPRETABLE insertion effect")
    assert "frame detector" in xb.findings.guard("it reacts to the frame", g)


def test_a_model_that_learned_the_class_passes_and_rule_needs_its_sets():
    rng = np.random.default_rng(0)
    good = (rng.random(400) < 0.85).astype(float)
    g = xb.findings.model_gate("lesion model", good, reversed=(rng.random(400) < 0.7).astype(float), quiet=True)
    assert g and g.line().startswith("VALID model 'lesion model'")
    assert xb.findings.guard("text", g) == "text"
    with pytest.raises(ValueError, match="was not passed"):
        xb.findings.model_gate("m", good, rule={"same": 0.8}, quiet=True)
    with pytest.raises(ValueError, match="correctness \\(0 or 1\\)"):
        xb.findings.model_gate("m", rng.random(50), quiet=True)


def test_rule_accuracy_counts_both_directions():
    flags = np.array([1, 1, 0, 0, 1, 0])
    labels = np.array([1, 1, 0, 0, 0, 1])
    assert xb.findings.artifact_rule_accuracy(flags, labels, positive=1) == pytest.approx(4 / 6)
    assert xb.findings.artifact_rule_accuracy(flags, labels, positive=0) == pytest.approx(2 / 6)
    assert xb.findings.artifact_rule_accuracy(1 - flags, labels) == pytest.approx(4 / 6)


def test_a_chance_level_cav_is_flagged_and_a_real_one_passes():
    rng = np.random.default_rng(3)
    flags = rng.random(200) < 0.4
    g = xb.findings.cav_gate("patch CAV", rng.normal(size=200), flags, quiet=True)
    assert not g and "reaches 0.5" in g.reason
    found = xb.findings.cav_gate("frame CAV", rng.normal(size=200) + 2 * flags, flags, quiet=True)
    assert found and "detection AUROC" in found.line()
    with pytest.raises(ValueError, match="both present and absent"):
        xb.findings.cav_gate("c", rng.normal(size=20), np.ones(20, bool), quiet=True)


def test_a_clustering_at_its_baseline_is_flagged():
    g = xb.findings.clustering_gate("GEBI, patch", 0.254, {"one cluster": 0.20, "shuffled labels, 95th pct": 0.305},
                                    quiet=True)
    assert not g and "shuffled labels, 95th pct 0.305" in g.reason and "one cluster" not in g.reason
    ok = xb.findings.clustering_gate("GEBI, frame", (0.9, 0.85, 0.95), {"one cluster": (0.6, 0.55, 0.65)}, quiet=True)
    assert ok
    with pytest.raises(ValueError, match="at least one baseline"):
        xb.findings.clustering_gate("x", 0.5, {}, quiet=True)


def test_model_gate_names_the_measure_it_was_given(capsys):
    # a balanced accuracy is gated like an accuracy, and the line says which one it read
    g = findings.model_gate("head on features", (0.55, 0.47, 0.63), measure="balanced accuracy")
    line = capsys.readouterr().out
    assert not g and "clean balanced accuracy 0.550 [0.470, 0.630] reaches chance 0.500" in line
    assert "clean accuracy" in findings.model_gate("plain", (0.8, 0.75, 0.85), quiet=True).line()
    with pytest.raises(ValueError, match="measure must be a non-empty string"):
        findings.model_gate("m", (0.8, 0.75, 0.85), measure="")


def test_model_gate_names_the_set_it_was_measured_on():
    # real photos keep their artifacts: the line must not call their test set "clean"
    g = findings.model_gate("plain model", (0.72, 0.67, 0.77), measure="balanced accuracy",
                            set_names={"clean": "held-out"}, quiet=True)
    assert g and "held-out balanced accuracy 0.720 [0.670, 0.770]" in g.line() and "clean" not in g.line()
    low = findings.model_gate("m", (0.52, 0.45, 0.6), same=(0.9, 0.85, 0.95), reversed=(0.3, 0.25, 0.35), quiet=True,
                              set_names={"clean": "held-out", "same": "agreeing", "reversed": "disagreeing"})
    assert not low and "held-out accuracy 0.520 [0.450, 0.600] reaches chance" in low.reason
    assert "disagreeing accuracy 0.300 [0.250, 0.350] is below chance" in low.reason
    assert low.evidence.startswith("held-out accuracy 0.520") and "agreeing accuracy 0.900" in low.evidence
    ruled = findings.model_gate("r", (0.8, 0.75, 0.85), same=(0.9, 0.85, 0.95), rule={"clean": 0.78, "same": 0.92},
                                set_names={"same": "agreeing"}, quiet=True)
    assert "clean 0.800 vs rule 0.780, agreeing 0.900 vs rule 0.920" in ruled.reason
    # the FLAGGED word comes from which test failed, not from the words in the reason
    worded = findings.model_gate("w", (0.8, 0.75, 0.85), same=(0.9, 0.85, 0.95), rule={"same": 0.92},
                                 set_names={"same": "above-chance subset"}, quiet=True)
    assert not worded and "(explained by one artifact)" in worded.line() and "collapsed" not in worded.line()
    with pytest.raises(ValueError, match="set_names\\['clean'\\] must be a non-empty string"):
        findings.model_gate("m", (0.8, 0.75, 0.85), set_names={"clean": " "})
    with pytest.raises(ValueError, match="unknown set 'test'; the sets are clean, same, reversed"):
        findings.model_gate("m", (0.8, 0.75, 0.85), set_names={"test": "x"})
