"""Notebook 08's exercise checks: a right answer passes, a wrong one fails naming the mistake, `...` is not an error."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from xaibias.findings import Gate
from xaibias.teaching import NotYet
from xaibias.teaching import real_photos as teaching

NOT_ANSWERED = "Not answered yet"


def assert_pending(capsys, fn, *args, **kwargs):
    assert fn(*args, **kwargs) is None
    assert NOT_ANSWERED in capsys.readouterr().out


def assert_wrong(fn, *args, match: str, **kwargs):
    with pytest.raises(NotYet, match=match) as err:
        fn(*args, **kwargs)
    assert str(err.value).startswith("Not yet: ")
    assert isinstance(err.value, AssertionError)


def assert_right(capsys, fn, *args, **kwargs) -> str:
    assert fn(*args, **kwargs) is None
    out = capsys.readouterr().out
    assert out.startswith("Right: ")
    return out


# 15 photos: melanomas 0-4 (two with a patch), others 5-14 (six with a patch)
LABELS = np.array([1] * 5 + [0] * 10)
PATCH = np.array([True, True, False, False, False] + [True] * 6 + [False] * 4)


def test_cooccurrence(capsys):
    out = assert_right(capsys, teaching.check_cooccurrence, 0.4, 0.6, PATCH, LABELS)
    assert "0.400" in out and "0.600" in out and "leans to the other lesions" in out and "P(melanoma) - P(other) = -0.200" in out
    assert_wrong(teaching.check_cooccurrence, 0.6, 0.4, PATCH, LABELS, match="swapped")
    assert_wrong(teaching.check_cooccurrence, 0.25, 0.6, PATCH, LABELS, match="P\\(melanoma \\| patches\\)")
    assert_wrong(teaching.check_cooccurrence, 2, 6, PATCH, LABELS, match="count")
    assert_wrong(teaching.check_cooccurrence, 40.0, 60.0, PATCH, LABELS, match="percentages")
    assert_wrong(teaching.check_cooccurrence, 2 / 15, 0.6, PATCH, LABELS, match="all\\* photos")
    assert_wrong(teaching.check_cooccurrence, 0.4, 0.5, PATCH, LABELS, match="your shares")
    assert_pending(capsys, teaching.check_cooccurrence, ..., 0.6, PATCH, LABELS)
    assert_pending(capsys, teaching.check_cooccurrence, 0.4, None, PATCH, LABELS)
    with pytest.raises(ValueError, match="both classes"):
        teaching.check_cooccurrence(0.1, 0.1, PATCH, np.zeros(15))


def _trap_case():
    rng = np.random.default_rng(0)
    n = 200
    y = (np.arange(n) % 2).astype(int)
    f = rng.random(n) < 0.5
    s = np.clip(0.25 * y + 0.45 * f + rng.normal(0, 0.2, n), 0, 1)    # ranks by the artifact as much as by the label
    return s, y, f


def test_agreement_auroc(capsys):
    s, y, f = _trap_case()
    agree = f == (y == 1)
    a, d = roc_auc_score(y[agree], s[agree]), roc_auc_score(y[~agree], s[~agree])
    assert a > d
    out = assert_right(capsys, teaching.check_agreement_auroc, a, d, s, y, f)
    assert f"{a:.3f}" in out
    assert_wrong(teaching.check_agreement_auroc, d, a, s, y, f, match="swapped")
    by_flag = roc_auc_score(y[f], s[f]), roc_auc_score(y[~f], s[~f])
    assert_wrong(teaching.check_agreement_auroc, *by_flag, s, y, f, match="have\\* the artifact")
    assert_wrong(teaching.check_agreement_auroc, roc_auc_score(y, s), d, s, y, f, match="over all photos")
    acc = float(((s[agree] >= 0.5) == (y[agree] == 1)).mean())
    assert_wrong(teaching.check_agreement_auroc, acc, d, s, y, f, match="accuracy")
    assert_wrong(teaching.check_agreement_auroc, 1 - a, d, s, y, f, match="1 - the right one")
    assert_wrong(teaching.check_agreement_auroc, 0.9, 0.1, s, y, f, match="your AUROCs")
    assert_pending(capsys, teaching.check_agreement_auroc, ..., d, s, y, f)
    # a flagged model is not graded: neither right nor wrong
    flagged = Gate(name="trap model", what="model", ok=False, reasons=["clean accuracy reaches chance"])
    assert teaching.check_agreement_auroc(0.9, 0.1, s, y, f, gate=flagged) is None
    assert "Not graded" in capsys.readouterr().out
    passed = Gate(name="trap model", what="model", ok=True, evidence="fine")
    assert_right(capsys, teaching.check_agreement_auroc, a, d, s, y, f, gate=passed)


def test_corner_rule(capsys):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(12, 3, 32, 32, generator=g) * 0.5 + 0.4
    flags = np.zeros(12, bool)
    flags[:5] = True
    x[:5, :, :6, :6] *= 0.3                           # darker corners on the flagged photos (beyond the 4-px squares too)
    x[2, :, -4:, -4:] = 0.0
    k = 4
    sq = torch.stack([x[..., :k, :k], x[..., :k, -k:], x[..., -k:, :k], x[..., -k:, -k:]])
    ref = (1 - sq.mean(dim=(0, 2, 3, 4))).numpy()
    auc = roc_auc_score(flags, ref)
    out = assert_right(capsys, teaching.check_corner_rule, ref, auc, x, flags)
    assert f"{auc:.3f}" in out
    assert_wrong(teaching.check_corner_rule, 1 - ref, auc, x, flags, match="brightness")
    assert_wrong(teaching.check_corner_rule, (1 - x.mean(dim=(1, 2, 3))).numpy(), auc, x, flags, match="whole photo")
    assert_wrong(teaching.check_corner_rule, (1 - x[..., :k, :k].mean(dim=(1, 2, 3))).numpy(), auc, x, flags,
                 match="top-left")
    assert_wrong(teaching.check_corner_rule, ref[:5], auc, x, flags, match="one number per photo")
    assert_wrong(teaching.check_corner_rule, ref + 0.05, auc, x, flags, match="differ")
    if not np.isclose(auc, 0.5):
        assert_wrong(teaching.check_corner_rule, ref, 1 - auc, x, flags, match="1 - the right one")
    assert_wrong(teaching.check_corner_rule, ref, 0.123, x, flags, match="your AUROC is 0.123")
    assert_pending(capsys, teaching.check_corner_rule, ..., auc, x, flags)
    with pytest.raises(ValueError, match="N,3,H,W"):
        teaching.check_corner_rule(ref, auc, x[:, 0], flags)
