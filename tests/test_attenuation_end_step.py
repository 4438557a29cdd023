"""The end-of-range extension across a change of reflectivity between its two windows (issue #11, session hot11).

A dimmer, slower tissue below a brighter, faster one (backscatter proportional to attenuation, as Vermeer's model
and the foreign generator's tissues: R / mu 0.11) entering the range 35 planes above its end: the two windows'
ratio ``W1 / W0`` reads the step down as a fast decay, the extension is too short and the planes above the end
are over-compensated (harsh B's grey A-lines 40-58 planes below the cut at 1.5-2.2x the truth). The last window's
own decay (its halves) reads the dim tissue's.
"""

from __future__ import annotations

import numpy as np
import pytest

from linumpy.intensity import attenuation

DZ_MM = 0.0015
N_Z, STEP_PX = 100, 65


def stepped_column(n_z: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """Signal ``R T`` (noise-free) and reflectivity of a column: R 1.0, mu 11 / mm over R 0.33, mu 3 / mm."""
    depth = np.arange(n_z)
    mu = np.where(depth < STEP_PX, 11.0, 3.0)
    reflectivity = mu * 0.11
    transmission = np.exp(-2 * DZ_MM * np.cumsum(mu))
    return (reflectivity * transmission).astype(np.float32), reflectivity


def deep_error(compensated: np.ndarray, reflectivity: np.ndarray) -> float:
    """Largest relative error of ``compensated / R`` over the dim tissue, against the bright tissue's top."""
    ratio = compensated / reflectivity[: compensated.shape[0]]
    return float(np.abs(ratio[STEP_PX:] / ratio[:10].mean() - 1).max())


def test_a_step_between_the_windows_does_not_shorten_the_tail():
    """The dim tissue's planes within 5 % of the bright tissue's level (measured 1.4 %, all of it the discrete
    column's own: the A-line seen whole, with its true tail, reads the same); the two windows' ratio alone
    over-compensated them up to 9.7x."""
    signal, reflectivity = stepped_column()
    line = signal[:N_Z]
    tails = attenuation.tail_sums(line)
    assert deep_error(attenuation.compensate_attenuation(line, tails), reflectivity) < 0.05
    whole = attenuation.compensate_attenuation(signal, attenuation.tail_sums(signal, N_Z))[:N_Z]
    assert deep_error(whole, reflectivity) < 0.02


def test_the_edge_aware_sums_extend_as_the_box():
    """The guided filter's extension reads the same planes: a speckled block of the column within 10 % too
    (measured 4.0 %; the two windows' ratio alone: 9.9x)."""
    signal, reflectivity = stepped_column()
    rng = np.random.default_rng(0)
    block = (signal[:N_Z, None, None] * rng.gamma(8.0, 1 / 8.0, (N_Z, 24, 24))).astype(np.float32)
    grid = attenuation.BinGrid.of(block.shape[1:])
    tails = attenuation.edge_aware_tails(block, attenuation.binned_tail_sums(block, grid), grid, 2.0)
    compensated = attenuation.compensate_attenuation(block, tails).mean(axis=(1, 2))
    assert deep_error(compensated, reflectivity) < 0.10


@pytest.mark.parametrize("mu", [1.0, 4.0, 11.0])
def test_an_exponential_decay_keeps_the_two_windows_ratio(mu):
    """Without a step both read the same ``q``: the extension is the true geometric tail (the same as before)."""
    line = np.exp(-2 * mu * DZ_MM * np.arange(N_Z)).astype(np.float32)
    window = N_Z // 4
    ends = attenuation.tail_sums(line)[attenuation.end_planes(N_Z, window)] - attenuation.tail_sums(line)[N_Z]
    q = np.exp(-2 * mu * DZ_MM * window)
    expected = ends[0] * min(q, attenuation.MAX_TAIL_RATIO) / (1 - min(q, attenuation.MAX_TAIL_RATIO))
    assert attenuation.tail_sums(line)[N_Z] == pytest.approx(expected, rel=1e-3)
