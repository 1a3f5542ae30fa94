"""Counterfactual bias insertion: untouched pixels, exact changes for a model that reads corners."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch import nn

import xaibias as xb
from xaibias.analysis import bias_insertion
from xaibias.analysis.insertion import INSERTION_COLUMNS


class CornerModel(nn.Module):
    """Reads only the four 3x3 corners: malignant logit = 12 * darkness - 6 (darkness = 1 - mean)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return corner_logits(x)


def corner_logits(x: torch.Tensor) -> torch.Tensor:
    c = torch.cat([x[..., :3, :3], x[..., :3, -3:], x[..., -3:, :3], x[..., -3:, -3:]], dim=-1)
    z = 12.0 * (1.0 - c.mean(dim=(1, 2, 3))) - 6.0
    return torch.stack([torch.zeros_like(z), z], dim=1)


class Recorder(nn.Module):
    """Wraps a model and keeps a copy of every batch it sees."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.seen = inner, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.inner(x)


def _bright_images(n: int = 12, size: int = 48, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (0.75 + 0.1 * torch.rand(n, 3, size, size, generator=g)).clamp(0, 1)


def test_insertion_changes_nothing_outside_the_artifact_mask():
    images = _bright_images()
    original = images.clone()
    model = Recorder(CornerModel())
    bias_insertion(model, images, torch.zeros(12, dtype=torch.long), artifacts=("frame", "ruler"), seed=3,
                   batch_size=100, progress=False)
    assert torch.equal(images, original), "bias_insertion must not modify its input"
    assert len(model.seen) == 3  # clean pass, frame pass, ruler pass
    assert torch.equal(model.seen[0], original)
    for seen, name in zip(model.seen[1:], ("frame", "ruler")):
        _, masks = xb.data.insert_artifact(original, name, seed=3)
        outside = (~masks).unsqueeze(1).expand_as(original)
        assert masks.any(dim=(1, 2)).all(), f"every image must get a {name}"
        assert torch.equal(seen[outside], original[outside]), f"{name}: pixels outside the mask changed"
        assert not torch.equal(seen, original)


def test_corner_model_gives_the_expected_changes():
    images = _bright_images(n=16)
    labels = torch.tensor([0, 1] * 8)
    table, per = bias_insertion(CornerModel(), images, labels, artifacts=("frame", "ruler", "red_circle"),
                                seed=0, class_names=["benign", "malignant"], return_per_image=True,
                                progress=False)
    assert list(table.columns) == list(INSERTION_COLUMNS)
    assert len(table) == 6 and set(table.true_class) == {"benign", "malignant"}
    # expected values computed independently from the painted images and the model's formula
    p0 = torch.softmax(corner_logits(images), 1)[:, 1].double()
    for name in ("frame", "ruler", "red_circle"):
        painted, _ = xb.data.insert_artifact(images, name, seed=0)
        change = 100 * (torch.softmax(corner_logits(painted), 1)[:, 1].double() - p0)
        for c, cname in enumerate(["benign", "malignant"]):
            row = table[(table.artifact == name) & (table.true_class == cname)].iloc[0]
            ch = change[labels == c]
            assert row.mean_change_pp == pytest.approx(float(ch.mean()), abs=1e-4)
            assert row.max_change_pp == pytest.approx(float(ch.abs().max()), abs=1e-4)
            assert row.n == 8 and row.n_skipped == 0
    frame = table[table.artifact == "frame"].set_index("true_class")
    # a frame darkens every corner: from p ~ 0.03 to ~ 1, every image flips to malignant
    assert (frame.mean_change_pp > 90).all()
    assert (frame.flip_rate == 1.0).all() and (frame.to_target_rate == 1.0).all()
    # the model reads no other pixel, so rulers/red circles move it far less than frames
    other = table[table.artifact != "frame"]
    assert (other.mean_abs_change_pp < frame.mean_abs_change_pp.min() / 3).all()
    # per-image rows: one per image and artifact, consistent with the table
    assert len(per) == 48
    fb = per[(per.artifact == "frame") & (per.true_class == "benign")]
    assert fb.change_pp.mean() == pytest.approx(frame.loc["benign", "mean_change_pp"])


def test_present_flags_skip_images_that_already_have_the_artifact():
    images = _bright_images(n=10)
    labels = torch.tensor([0] * 5 + [1] * 5)
    present = pd.DataFrame({"frame": [True, False, False, False, False, True, True, False, False, False]})
    table = bias_insertion(CornerModel(), images, labels, artifacts=["frame"], present=present, progress=False)
    t = table.set_index("true_class")
    assert t.loc[0, "n"] == 4 and t.loc[0, "n_skipped"] == 1
    assert t.loc[1, "n"] == 3 and t.loc[1, "n_skipped"] == 2


def test_same_seed_same_table():
    images, labels = _bright_images(n=8), torch.tensor([0, 1] * 4)
    a = bias_insertion(CornerModel(), images, labels, seed=5, progress=False)
    b = bias_insertion(CornerModel(), images, labels, seed=5, progress=False)
    pd.testing.assert_frame_equal(a, b)


def test_bad_inputs_are_clear_errors():
    images, labels = _bright_images(n=6), torch.tensor([0, 1] * 3)
    with pytest.raises(ValueError, match="labels has 5 entries but 6 were expected"):
        bias_insertion(CornerModel(), images, labels[:5], progress=False)
    with pytest.raises(ValueError, match=r"unknown artifact\(s\) \['sticker'\]"):
        bias_insertion(CornerModel(), images, labels, artifacts=("frame", "sticker"), progress=False)
    with pytest.raises(ValueError, match=r"target_class must be an int in \[0, 1\]"):
        bias_insertion(CornerModel(), images, labels, target_class=2, progress=False)
    bad = images.clone()
    bad[2, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="images contains NaN"):
        bias_insertion(CornerModel(), bad, labels, progress=False)
    with pytest.raises(ValueError, match=r"mismatched N: images has N=6, present\['frame'\] has N=4"):
        bias_insertion(CornerModel(), images, labels, present={"frame": [True] * 4}, progress=False)


@pytest.mark.slow
@pytest.mark.isic_sample
def test_notebook_real_isic_path_end_to_end(isic_sample, tmp_path):
    """Notebook 02 with DATA pointed at real ISIC photos: ISICDataset + artifact CSV, notebook 08's
    pretrained EfficientNet-Lite0 fine-tuned offline by xb.models.finetune, LRP, SpRAy/GEBI,
    agreement with the annotations, frame/ruler/red-circle insertion into real photos and the
    ViRelAy export."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "notebooks" / "02_spray_vs_gebi.ipynb"
    nb = nbformat.read(path, as_version=4)
    settings = [c for c in nb.cells if c.cell_type == "code" and 'DATA = "synthetic"' in c.source]
    assert len(settings) == 1, "the settings cell must set DATA = \"synthetic\" exactly once"
    settings[0].source = settings[0].source.replace('DATA = "synthetic"', f"DATA = {str(isic_sample)!r}") + "\nSEEDS = [SEED]"
    nb.cells = [c for c in nb.cells if "google.colab" not in c.source]
    nb.cells.append(nbformat.v4.new_code_cell(
        "assert DATA != 'synthetic' and MODEL == 'efficientnet_lite0' and SIZE == 224\n"
        "assert getattr(model, 'xaibias_finetune', {}).get('mode') == ('head' if FAST else 'full')\n"
        "assert list(models) == ['frame-biased']\n"
        "assert 'frame' in art.columns and agree['GEBI'].loc['frame', 'support'] > 0\n"
        "assert spray.labels_.shape == gebi.labels_.shape == (len(X),)\n"
        "t = insertion['frame-biased']\n"
        "assert set(t.artifact) == {'frame', 'ruler', 'red_circle'} and set(t.true_class) == {'benign', 'malignant'}\n"
        "assert (t.n + t.n_skipped > 0).all() and np.isfinite(t.mean_change_pp).all()\n"
        "assert (project.parent / 'analysis.h5').is_file()\n"
        "print('real path ok')\n"))
    client = nbclient.NotebookClient(nb, timeout=1200, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    assert "real path ok" in nb.cells[-1].outputs[0]["text"]


# ---------------------------------------------------------------- insertion_ratio
def _per_image_table(frame_changes, ruler_changes, skipped_frame=None):
    rows = []
    for a, ch in (("frame", frame_changes), ("ruler", ruler_changes)):
        for i, c in enumerate(ch):
            skip = bool(skipped_frame[i]) if (a == "frame" and skipped_frame is not None) else False
            rows.append({"index": i, "artifact": a, "true_class": "benign" if i % 2 == 0 else "malignant",
                         "change_pp": float(c), "skipped": skip})
    return pd.DataFrame(rows)


def test_insertion_ratio_matches_the_table_and_its_interval_covers_it():
    from xaibias.analysis import insertion_ratio

    images = _bright_images(n=16)
    labels = torch.tensor([0, 1] * 8)
    table, per = bias_insertion(CornerModel(), images, labels, artifacts=("frame", "ruler"), seed=0,
                                class_names=["benign", "malignant"], return_per_image=True, progress=False)
    t = table.set_index(["artifact", "true_class"])
    value, low, high = insertion_ratio(per, "frame", "ruler", true_class="benign", n_boot=500)
    # the point value is the table's mean change over the reference's mean absolute change
    expected = t.loc[("frame", "benign"), "mean_change_pp"] / t.loc[("ruler", "benign"), "mean_abs_change_pp"]
    assert value == pytest.approx(expected)
    assert low <= value <= high
    assert low > 3  # the corner model reads frames, barely rulers


def test_insertion_ratio_uses_absolute_reference_changes_and_skips():
    from xaibias.analysis import insertion_ratio

    # ruler changes +2 / -2 cancel in the mean; the ratio must use |change| = 2, not 0
    per = _per_image_table([40, 10, 40, 10, 40, 10, 1000, 10], [2, 0, -2, 0, 2, 0, -2, 0],
                           skipped_frame=[0, 0, 0, 0, 0, 0, 1, 0])
    value, low, high = insertion_ratio(per, "frame", "ruler", true_class="benign", n_boot=300)
    assert value == pytest.approx(40 / 2)  # the skipped image (1000 pp) does not count
    assert low == pytest.approx(20) and high == pytest.approx(20)  # no spread: every draw gives 40 / 2
    # all classes together: frame mean (40*3 + 10*4) / 7, ruler mean |change| 1
    value_all, _, _ = insertion_ratio(per, "frame", "ruler", n_boot=300)
    assert value_all == pytest.approx((120 + 40) / 7 / 1.0)


def test_insertion_ratio_bad_inputs():
    from xaibias.analysis import insertion_ratio

    per = _per_image_table([5, 5, 5, 5], [0, 0, 0, 0])
    with pytest.raises(ValueError, match="changed no score"):
        insertion_ratio(per, "frame", "ruler")
    with pytest.raises(ValueError, match="'red_circle' has 0 inserted"):
        insertion_ratio(per, "red_circle", "frame")
    with pytest.raises(ValueError, match="per_image must be"):
        insertion_ratio(per.drop(columns="skipped"), "frame", "ruler")
