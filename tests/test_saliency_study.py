"""The notebook-03 study helpers: training sets, saliency/variance/failure/ablation tables, the plot."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from scipy import stats  # noqa: E402
from torch import nn  # noqa: E402

import xaibias as xb  # noqa: E402
from xaibias.analysis import (  # noqa: E402
    ablation_table,
    failure_table,
    global_table,
    peak_saliency,
    saliency_table,
    variance_table,
)
from xaibias.data.ink import ablate_to_ink, ink_training_sets, scale_rates  # noqa: E402

CLASSES = ["MEL", "NV", "BCC"]


class ColourNet(nn.Module):
    """Logit k = mean of colour channel k to the ``power`` (a 1x1 conv holds the identity)."""

    def __init__(self, power: int = 1):
        super().__init__()
        self.power = power
        self.conv = nn.Conv2d(3, 3, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))

    def forward(self, x):
        return (self.conv(x) ** self.power).mean((2, 3))


def test_scale_rates():
    rates = {"a": 0.5, "b": 0.76, "c": 0.66}
    assert scale_rates(rates, 1) == pytest.approx(rates)
    assert scale_rates(rates, 0) == pytest.approx({k: 0.66 for k in rates})
    assert scale_rates(rates, 2) == pytest.approx({"a": 0.34, "b": 0.86, "c": 0.66})
    assert scale_rates(rates, 10)["a"] == 0 and scale_rates(rates, 10)["b"] == 1  # clipped
    with pytest.raises(ValueError, match="strength"):
        scale_rates(rates, -1)
    with pytest.raises(TypeError, match="rates"):
        scale_rates([0.5], 1)


def test_ink_training_sets_follow_table_1():
    def lesions(n, seed):
        return xb.data.SyntheticLesions(n=n, size=32, classes=CLASSES, difficulty=0.3, seed=seed)

    rates = {"MEL": 0.9, "NV": 0.4, "BCC": 0.66}
    sets = ink_training_sets(lesions(300, 0), lesions(300, 1), rates, CLASSES, seed=3)
    assert list(sets) == ["baseline", "unbiased", "ink-only", "ablated"]
    x, y, f = sets["baseline"]
    got = {c: f[y.numpy() == i].mean() for i, c in enumerate(CLASSES)}
    assert got["MEL"] > 0.8 and got["NV"] < 0.55  # the per-class rates shape the baseline
    xu, yu, fu = sets["unbiased"]
    for i in range(len(CLASSES)):  # resampled so that 66% of every class carries ink
        assert fu[yu.numpy() == i].mean() == pytest.approx(0.66, abs=0.03)
    assert sets["ink-only"][2].all() and sets["ablated"][2].all()
    # ablated images: everything but the ink is one colour per image
    xa = sets["ablated"][0]
    colours = xa.flatten(2).transpose(1, 2)  # (N, pixels, 3)
    most = torch.mode(colours[:, :, 0], dim=1).values
    assert ((colours[:, :, 0] == most[:, None]).float().mean(1) > 0.5).all()
    with pytest.raises(ValueError, match="unbiased_rate"):
        ink_training_sets(lesions(30, 0), lesions(30, 1), rates, CLASSES, unbiased_rate=1.0)


def _tiny_study(n=12, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=g)
    y = torch.arange(n) % 3
    masks = torch.zeros(n, size, size, dtype=torch.bool)
    masks[:, :3, :3] = True
    masks[0] = False  # one image without ink is left out, not NaN
    return x, y, masks


def test_saliency_table_rows_match_the_per_image_functions():
    x, y, masks = _tiny_study()
    models = {"baseline": ColourNet(2).eval(), "unbiased": ColourNet(3).eval()}  # gradients vary by pixel
    methods = {"gradient": {}, "input_x_gradient": {}}
    table, maps = saliency_table(models, x, y, masks, methods, percentile=90)
    assert set(table.aggregation) == {"m (z)", "n_P90"}
    assert len(table) == 2 * 2 * 2 * (len(x) - 1) and 0 not in set(table.image)
    sub = table[(table.train_set == "baseline") & (table.method == "gradient") & (table.aggregation == "n_P90")]
    direct = peak_saliency(maps["baseline", "gradient"], masks, 90)
    np.testing.assert_allclose(sub.value.to_numpy(), direct.to_numpy())
    np.testing.assert_array_equal(sub.label.to_numpy(), y.numpy()[sub.image.to_numpy()])
    z = table[(table.aggregation == "m (z)") & (table.train_set == "unbiased") & (table.method == "gradient")].value
    assert abs(z.mean()) < 1e-9 and z.std(ddof=0) == pytest.approx(1)
    with pytest.raises(ValueError, match="target"):
        saliency_table(models, x, y, masks, methods, target="other")
    with pytest.raises(TypeError, match="methods"):
        saliency_table(models, x, y, masks, ["gradient"])


def _hand_table():
    # two training sets, two classes, values chosen so that the class means are easy
    rows = []
    for name, means in (("baseline", (0.1, 0.5)), ("unbiased", (0.2, 0.3))):
        for img in range(8):
            label = img % 2
            rows.append({"train_set": name, "method": "m1", "aggregation": "n_P98", "image": img, "label": label,
                         "value": means[label] + (0.01 if img < 4 else -0.01)})
    return pd.DataFrame(rows)


def test_variance_table_by_hand():
    table = _hand_table()
    out = variance_table(table, seed=7, also=())
    row = out.iloc[0]
    assert row.seed == 7 and row.method == "m1"
    assert row.var_baseline == pytest.approx(np.var([0.1, 0.5]))  # variance of the two class means
    assert row.var_unbiased == pytest.approx(np.var([0.2, 0.3]))
    a = table[table.train_set == "baseline"].value.to_numpy()
    b = table[table.train_set == "unbiased"].value.to_numpy()
    assert row["wilcoxon_p(baseline>unbiased)"] == pytest.approx(stats.wilcoxon(a, b, alternative="greater").pvalue)
    with pytest.raises(ValueError, match="'ink-only' is not in the table"):
        variance_table(table, a="ink-only")
    with pytest.raises(ValueError, match="lacks column"):
        variance_table(table.drop(columns="label"))


def test_global_table_and_plot():
    gs = global_table(_hand_table(), ["benign", "malignant"], n_boot=50)
    base = gs[gs.train_set == "baseline"].set_index("class_name")["mean"]
    assert base["benign"] == pytest.approx(0.1) and base["malignant"] == pytest.approx(0.5)
    fig, ax = plt.subplots()
    xb.viz.global_saliency_plot(gs, "m1", "n_P98", ["benign", "malignant"], ax=ax, highlight="malignant")
    assert len(ax.get_legend_handles_labels()[1]) == 2 and [t.get_text() for t in ax.get_xticklabels()] == [
        "benign", "malignant"]
    with pytest.raises(ValueError, match="no rows"):
        xb.viz.global_saliency_plot(gs, "m2", "n_P98", ["benign", "malignant"], ax=ax)
    with pytest.raises(ValueError, match="highlight"):
        xb.viz.global_saliency_plot(gs, "m1", "n_P98", ["benign", "malignant"], ax=ax, highlight="x")
    plt.close(fig)


def test_failure_table_groups_and_counts():
    x, y, masks = _tiny_study(n=30)
    models = {"baseline": ColourNet(2).eval()}
    look = (y == 0).numpy()
    table, curves = failure_table(models, x, y, masks, {"gradient": {}}, {"a": look, "b": ~look}, percentile=90)
    pred = xb.models.predict_proba(models["baseline"], x).argmax(1)
    kept = masks.flatten(1).any(1).numpy()  # images with ink
    for _, r in table.iterrows():
        sel = (look if r.group == "a" else ~look) & kept
        assert r.n == sel.sum()
        assert r.accuracy == pytest.approx((pred == y).numpy()[sel].mean())
        assert r["AURRAC - accuracy"] == pytest.approx(r.AURRAC - r.accuracy)
    assert set(curves) == {("baseline", "gradient", "a"), ("baseline", "gradient", "b")}
    with pytest.raises(ValueError, match="groups\\['a'\\] must be a bool array"):
        failure_table(models, x, y, masks, {"gradient": {}}, {"a": look.astype(int)})


def test_ablation_table_by_hand():
    # constant-colour images: keeping only the ink changes nothing, so every prediction stays
    colours = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [0, 1.0, 0]])
    x = colours[:, :, None, None].expand(4, 3, 6, 6).clone()
    masks = torch.zeros(4, 6, 6, dtype=torch.bool)
    masks[:, 2:4, 2:4] = True
    assert torch.allclose(ablate_to_ink(x, masks), x)
    out = ablation_table({"m": ColourNet().eval()}, x, masks, CLASSES)
    row = out.loc["m"]
    assert row.unchanged == 1.0
    assert row["unchanged by chance"] == pytest.approx(0.25**2 + 0.5**2 + 0.25**2)  # sum of squared shares
    assert [row["-> MEL"], row["-> NV"], row["-> BCC"]] == pytest.approx([0.25, 0.5, 0.25])
    with pytest.raises(ValueError, match="class_names has 2 names"):
        ablation_table({"m": ColourNet().eval()}, x, masks, CLASSES[:2])


def test_aurrac_gain_against_random_and_perfect_rankings():
    from xaibias.analysis import aurrac, response_rate_accuracy
    from xaibias.analysis.failure import aurrac_gain

    rng = np.random.default_rng(0)
    correct = rng.random(400) < 0.6
    # the errors are the most salient images: the least salient are answered perfectly first
    perfect = np.where(correct, rng.random(400), 1 + rng.random(400))
    v, lo, hi = aurrac_gain(correct, perfect, n_boot=200, seed=1)
    assert v == pytest.approx(aurrac(response_rate_accuracy(correct, perfect)) - correct.mean())
    assert lo > 0.2  # a + a ln(1/a) - a = 0.6 ln(1/0.6) = 0.31 on a fine grid
    # a saliency drawn without looking at the errors: its interval holds the random-ranking baseline 0
    v0, lo0, hi0 = aurrac_gain(correct, rng.random(400), n_boot=200, seed=1)
    assert lo0 < 0 < hi0 and abs(v0) < 0.05
    # the errors are the least salient: below 0
    assert aurrac_gain(correct, -perfect, n_boot=200, seed=1)[2] < 0
    with pytest.raises(ValueError, match="all tied"):
        aurrac_gain(correct, np.ones(400))
    with pytest.raises(ValueError, match="400 entries but saliency has 3"):
        aurrac_gain(correct, [1.0, 2.0, 3.0])


def test_failure_table_intervals_and_ablation_per_image():
    x, y, masks = _tiny_study(n=30)
    models = {"baseline": ColourNet(2).eval()}
    look = (y == 0).numpy()
    table, _ = failure_table(models, x, y, masks, {"gradient": {}}, {"all": np.ones(len(y), bool)}, percentile=90,
                             n_boot=200, seed=2)
    r = table.iloc[0]
    assert r.gain_low <= r["AURRAC - accuracy"] <= r.gain_high
    plain, _ = failure_table(models, x, y, masks, {"gradient": {}}, {"a": look}, percentile=90)
    assert "gain_low" not in plain.columns
    out, per = ablation_table({"m": ColourNet().eval(), "n": ColourNet(2).eval()}, x, masks, CLASSES,
                              return_per_image=True)
    assert len(per) == len(x) and per["image"].tolist() == list(range(len(x)))
    for name in ("m", "n"):
        assert per[name].mean() == pytest.approx(out.loc[name, "unchanged"])
        for c in CLASSES:
            assert per[f"{name} -> {c}"].mean() == pytest.approx(out.loc[name, f"-> {c}"])
