import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from xaibias import viz  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _colorbars(fig):
    # a colour bar lives in an axes of its own whose label is set by relevance_colorbar()
    return [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]


def test_to_numpy_image_layouts_and_clipping():
    chw = torch.full((3, 4, 5), 2.0)
    assert viz.to_numpy_image(chw).shape == (4, 5, 3) and viz.to_numpy_image(chw).max() == 1.0
    gray = np.zeros((4, 5, 1))
    assert viz.to_numpy_image(gray).shape == (4, 5, 3)
    hwc = np.full((4, 5, 3), -1.0)
    assert viz.to_numpy_image(hwc).min() == 0.0


def test_symmetric_limit_is_a_percentile_of_the_magnitude_and_never_zero():
    r = torch.linspace(-4, 2, 1001)
    assert viz.symmetric_limit(r, percentile=100) == pytest.approx(4.0)
    assert viz.symmetric_limit(torch.zeros(3, 3)) == 1.0
    assert viz.symmetric_limit(np.array([])) == 1.0


def test_heatmap_is_centred_at_zero_and_keeps_axis_labels():
    r = torch.tensor([[3.0, -1.0], [0.0, 0.5]])
    fig = viz.heatmap(r, title="lrp", colorbar=True)
    ax = fig.axes[0]
    im = ax.images[0]
    assert im.norm.vmin == -im.norm.vmax  # white is exactly zero
    assert im.get_cmap().name == viz.CMAP
    ax.set_ylabel("EpsilonPlus")
    assert ax.yaxis.label.get_visible() and ax.axison  # unlike set_axis_off(), labels show
    assert ax.get_xticks().size == 0 and len(fig.axes) == 2  # no ticks; one colour bar


def test_overlay_is_transparent_where_relevance_is_zero():
    img = torch.rand(3, 8, 8)
    r = torch.zeros(8, 8)
    r[2, 3] = 1.0
    fig = viz.overlay(img, r, alpha=0.6)
    rgba = fig.axes[0].images[1].get_array()
    alpha = np.asarray(rgba)[..., 3]
    assert alpha[2, 3] == pytest.approx(0.6) and np.count_nonzero(alpha) == 1


def test_heatmap_grid_has_one_colour_bar_with_the_right_scale():
    r = torch.randn(5, 8, 8)
    fig = viz.heatmap_grid(r, ncols=3)
    bars = _colorbars(fig)
    assert len(bars) == 1 and "own limit" in bars[0].get_ylabel()
    assert bars[0].get_ylim() == pytest.approx((-1.0, 1.0))
    shared = viz.heatmap_grid(r, ncols=3, shared_scale=True)
    (bar,) = _colorbars(shared)
    assert bar.get_ylim() == pytest.approx((-viz.symmetric_limit(r), viz.symmetric_limit(r)))
    assert _colorbars(viz.heatmap_grid(r, colorbar=False)) == []
    # the unused cells of a 2x3 grid are hidden
    assert sum(ax.axison for ax in shared.axes if ax.get_label() != "<colorbar>") == 5


def test_method_panel_columns_share_a_limit_and_check_lengths():
    imgs = torch.rand(2, 3, 8, 8)
    maps = {"a": torch.randn(2, 8, 8), "b": 10 * torch.randn(2, 8, 8)}
    fig = viz.method_panel(imgs, maps, notes={"b": "x10"})
    axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    col_b = [axes[i * 3 + 2].images[0].norm.vmax for i in range(2)]
    assert col_b[0] == col_b[1] == pytest.approx(viz.symmetric_limit(maps["b"]))
    assert axes[2].get_title() == "b\nx10" and len(_colorbars(fig)) == 1
    with pytest.raises(ValueError, match="maps\\['a'\\] has 1 maps but there are 2 images"):
        viz.method_panel(imgs, {"a": torch.randn(1, 8, 8)})


def test_cluster_gallery_rows_and_notes():
    imgs, r = torch.rand(10, 3, 8, 8), torch.randn(10, 8, 8)
    labels = np.array([0] * 7 + [1] * 3)
    fig = viz.cluster_gallery(imgs, r, labels, n=4, notes={1: "90% framed"})
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert "cluster 0\n7 maps" in texts and "cluster 1\n3 maps\n90% framed" in texts
    assert len(_colorbars(fig)) == 1


def test_eigenvalue_plot_marks_the_gap():
    fig = viz.eigenvalue_plot(np.array([0, 0.01, 0.02, 0.5, 0.6]), k=3)
    ax = fig.axes[0]
    assert ax.lines[1].get_xdata()[0] == pytest.approx(3.5)
    assert "largest gap after 3" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_public_names_are_the_module_functions():
    # __all__ lists every public function defined in xaibias.viz (none missing, none stale)
    defined = {n for n, f in vars(viz).items()
               if not n.startswith("_") and callable(f) and getattr(f, "__module__", None) == viz.__name__}
    assert {n for n in viz.__all__ if callable(getattr(viz, n))} == defined
    assert all(n in vars(viz) for n in viz.__all__)  # the rest (constants such as CMAP) live here too
