"""The checker pattern of strided layers in relevance maps, measured where it lives.

A convolution with stride 2 reads its input on a grid of every other pixel (a 1x1 stride-2 shortcut
reads only the even positions; a 3x3 stride-2 convolution reads the odd positions twice as often as
the even ones). LRP hands relevance back along the same connections, so the heatmap can carry a
pattern of period 2 in each direction: a *checker pattern*. A period-2 pattern lives at exactly three
frequencies of the map's 2-D Fourier spectrum, ``(0, W/2)``, ``(H/2, 0)`` and ``(H/2, W/2)``, and
its strength there is the difference between the mean relevance of the four pixel phases
``(row mod 2, column mod 2)``. :func:`stride2_share` measures each map's share of energy at those
three frequencies; :func:`structureless_share` is what a map without structure gets;
:func:`phase_means` shows the same thing in pixel space; :func:`cell_means_2x2` and
:func:`residual_2x2` split a map into its 2x2-cell part and the within-cell rest (where the
pattern shows). Two models' shares on the same images are compared with
:func:`xaibias.analysis.stats.ratio_ci` (``paired=True``).

Numbers only, no figures (see ``xaibias.viz`` for drawing).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = [
    "stride2_share",
    "structureless_share",
    "phase_means",
    "cell_means_2x2",
    "residual_2x2",
]


def _maps(R: Any, name: str = "R") -> torch.Tensor:
    if not isinstance(R, torch.Tensor):
        R = torch.as_tensor(np.asarray(R))
    if R.ndim == 2:
        R = R[None]
    if R.ndim != 3:
        raise ValueError(f"{name} must be relevance maps of shape (N,H,W) or (H,W); got shape {tuple(R.shape)}")
    H, W = R.shape[-2:]
    if H < 2 or W < 2 or H % 2 or W % 2:
        raise ValueError(f"{name}: height and width must be even and at least 2 for a period-2 pattern; got {H}x{W}")
    if not torch.is_floating_point(R):
        R = R.double()
    if torch.isnan(R).any():
        raise ValueError(f"{name} holds {int(torch.isnan(R).sum())} NaN value(s)")
    return R


def _power(R: torch.Tensor) -> torch.Tensor:
    R = R.double()
    R = R - R.mean(dim=(-2, -1), keepdim=True)
    return torch.fft.fft2(R).abs() ** 2


def stride2_share(R: Any) -> torch.Tensor:
    """Share of each map's energy at the three period-2 frequencies, ``(0, W/2)``, ``(H/2, 0)``, ``(H/2, W/2)``.

    The map's mean is removed first. A map without structure has about
    :func:`structureless_share` there; a map with a grid of period 2 has more. An all-constant map
    (no energy after removing the mean) gets 0.

    Parameters
    ----------
    R : (N,H,W) or (H,W) tensor or array
        Relevance maps with even height and width.

    Returns
    -------
    (N,) float64 tensor in [0, 1]
    """
    R = _maps(R)
    P = _power(R)
    H, W = R.shape[-2:]
    at = P[:, 0, W // 2] + P[:, H // 2, 0] + P[:, H // 2, W // 2]
    total = P.sum(dim=(-2, -1))
    return torch.where(total > 0, at / total.clamp(min=1e-300), torch.zeros_like(total))


def structureless_share(height: int, width: int | None = None) -> float:
    """:func:`stride2_share` of a map without structure: 3 of its ``H W - 1`` non-constant frequencies."""
    width = height if width is None else width
    if height < 2 or width < 2 or height % 2 or width % 2:
        raise ValueError(f"height and width must be even and at least 2; got {height}x{width}")
    return 3.0 / (height * width - 1)


def phase_means(R: Any) -> torch.Tensor:
    """Mean relevance on each of the four pixel phases, as a share of the mean absolute relevance.

    Returns an ``(N, 2, 2)`` tensor whose entry ``[n, p, q]`` is the mean of ``R[n]`` over the pixels
    with ``row % 2 == p`` and ``column % 2 == q``, divided by the mean of ``|R[n]|`` (0 for an all-zero
    map). Without a grid the four entries agree up to noise; a stride-2 shortcut that reads only even
    positions lifts ``[0, 0]``.
    """
    R = _maps(R).double()
    H, W = R.shape[-2:]
    cells = R.reshape(R.shape[0], H // 2, 2, W // 2, 2).mean(dim=(1, 3))
    scale = R.abs().mean(dim=(-2, -1))
    return torch.where(scale[:, None, None] > 0, cells / scale.clamp(min=1e-300)[:, None, None],
                       torch.zeros_like(cells))


def cell_means_2x2(R: Any) -> torch.Tensor:
    """Spread the relevance of each 2x2 cell evenly over its four pixels (conservative: totals are kept).

    This gives up the finest factor 2 of resolution and removes every period-2 structure:
    ``stride2_share(cell_means_2x2(R))`` is 0.
    """
    R = _maps(R)
    cells = torch.nn.functional.avg_pool2d(R[:, None], 2)
    return cells.repeat_interleave(2, -1).repeat_interleave(2, -2)[:, 0]


def residual_2x2(R: Any) -> torch.Tensor:
    """``R - cell_means_2x2(R)``: the structure inside each 2x2 cell, where a checker pattern shows as a repeated tile."""
    R = _maps(R)
    return R - cell_means_2x2(R)
