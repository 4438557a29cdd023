"""The end-of-range extension of the compensation's tail sums, measured on the unclipped signal.

Vermeer's gain ``T[0] / T[k]`` (:mod:`linumpy.intensity.attenuation`) adds to every tail sum the signal
beyond the last sample, ``W1 q / (1 - q)`` with ``q = W1 / W0`` the ratio of the sums of the last two
windows of the A-line. The compensation's sums are those of the signal **clipped at 0** (noise floor
subtracted, over the focus profile): where the tissue's light has decayed into the noise by the end of
the A-line (fast attenuation, a deep focus), both windows hold only the clipped noise's mean, which is
positive (an exponential noise of mean ``n``: ``n / e`` a voxel) and divided by a focus profile that
falls below the focus, so ``q`` reads ~1 (clipped to 0.95) and the extension adds about 19 ``W1`` of
noise to every sum. A sum too large at depth is a gain too small: the tissue that decays fastest is
under-compensated, more so the deeper the voxel (``docs/intensity.md``, *The extension measured on the
clipped noise*).

The attenuation map's sums (:class:`linumpy.intensity.attenuation.BlockPass`) are taken **before** the
clip: their noise averages to 0, and so does a window of it. The extension here is measured on them,
averaged by the same guided filter as the compensation's sums (each tissue keeps its own tail).
"""

from __future__ import annotations

import numpy as np

from linumpy.intensity import attenuation


def unclipped_extension(
    signal: np.ndarray, unclipped_sums: np.ndarray, grid: attenuation.BinGrid, sigma_px: float,
    tail_window_px: int | None, inner: tuple[slice, slice], guide: np.ndarray,
) -> np.ndarray:
    """The end-of-range extension of the ``inner`` A-lines, from the guided sums of the unclipped signal.

    Parameters
    ----------
    signal : ndarray, shape (z, y, x)
        The block's signal (only its shape is read: the guide is given).
    unclipped_sums : ndarray, shape (z + 1, y', x')
        :func:`linumpy.intensity.attenuation.binned_tail_sums` of the signal before its clip at 0.
    grid : BinGrid
    sigma_px, tail_window_px
        As for :func:`linumpy.intensity.attenuation.edge_aware_tails`.
    inner : (slice, slice)
        The A-lines compensated (the block without its halo).
    guide : ndarray, shape (y, x)
        :func:`linumpy.intensity.attenuation.level_guide` of the clipped signal (the compensation's guide).

    Returns
    -------
    ndarray, shape of the ``inner`` A-lines, float32
        ``W1 q / (1 - q)`` of :func:`linumpy.intensity.attenuation.tail_sums`, its windows' sums guided
        averages of the unclipped signal's (clipped at 0 as sums; an A-line whose last window sums to 0
        or less has no extension).
    """
    n_z = unclipped_sums.shape[0] - 1
    last = attenuation.edge_aware_tails(signal, unclipped_sums, grid, sigma_px, tail_window_px, inner=inner,
                                        planes=(n_z, n_z + 1), guide=guide)
    return np.ascontiguousarray(last[n_z], np.float32)  # the last plane holds no signal: the extension alone
