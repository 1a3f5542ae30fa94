import pytest
import torch

from xaibias.analysis import stride_grid


def _grid(n=4, size=16, strength=1.0, seed=0):
    # smooth blobs plus relevance that lands only on even (row, column) positions
    g = torch.Generator().manual_seed(seed)
    smooth = torch.nn.functional.avg_pool2d(torch.rand(n, 1, size, size, generator=g), 5, 1, 2)[:, 0]
    grid = torch.zeros(size, size)
    grid[::2, ::2] = 1.0
    return smooth + strength * grid * smooth.mean()


def test_structureless_share_matches_white_noise():
    R = torch.randn(400, 16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    share = stride_grid.stride2_share(R)
    assert share.shape == (400,)
    assert share.mean().item() == pytest.approx(stride_grid.structureless_share(16), rel=0.15)
    assert stride_grid.structureless_share(16, 8) == pytest.approx(3 / 127)


def test_even_grid_puts_its_energy_at_the_stride2_frequencies():
    pure = torch.zeros(1, 8, 8)
    pure[0, ::2, ::2] = 1.0
    assert stride_grid.stride2_share(pure).item() == pytest.approx(1.0)
    with_grid = stride_grid.stride2_share(_grid(strength=1.0)).mean()
    without = stride_grid.stride2_share(_grid(strength=0.0)).mean()
    assert with_grid > 20 * without
    assert with_grid > 10 * stride_grid.structureless_share(16)


def test_stride2_share_is_scale_free_and_ignores_a_constant():
    R = _grid()
    assert torch.allclose(stride_grid.stride2_share(3 * R + 7), stride_grid.stride2_share(R))
    assert stride_grid.stride2_share(torch.ones(2, 4, 4)).tolist() == [0.0, 0.0]


def test_stride2_share_ignores_sparse_maps_without_a_grid():
    # isolated spikes at random positions: broadband, no fixed grid
    g = torch.Generator().manual_seed(1)
    R = (torch.rand(50, 16, 16, generator=g) > 0.97).double()
    assert stride_grid.stride2_share(R).mean() < 2 * stride_grid.structureless_share(16)


def test_cell_means_2x2_keeps_totals_and_removes_the_pattern():
    R = _grid(strength=2.0)
    S = stride_grid.cell_means_2x2(R)
    assert torch.allclose(S.sum((1, 2)), R.sum((1, 2)), atol=1e-5)
    assert stride_grid.stride2_share(S).abs().max() < 1e-12
    assert torch.allclose(stride_grid.residual_2x2(R) + S, R)


def test_phase_means_lift_the_even_phase():
    pm = stride_grid.phase_means(_grid(strength=2.0))
    assert pm.shape == (4, 2, 2)
    assert (pm[:, 0, 0] > pm[:, 1, 1] + 0.5).all()
    flat = stride_grid.phase_means(_grid(strength=0.0))
    assert (flat.amax((1, 2)) - flat.amin((1, 2)) < 0.2).all()
    assert stride_grid.phase_means(torch.zeros(1, 4, 4)).abs().sum() == 0


@pytest.mark.parametrize("bad, match", [
    (torch.zeros(2, 2, 5, 4), "shape"),
    (torch.zeros(1, 5, 4), "even"),
    (torch.full((1, 4, 4), float("nan")), "NaN"),
])
def test_bad_maps_raise(bad, match):
    with pytest.raises(ValueError, match=match):
        stride_grid.stride2_share(bad)
