"""The compensation's tail sums floored at the noise's (issue #11, session tail11).

The guided average of the tail sums (``edge_aware_tails``) is a linear model in each A-line's level; an
A-line its box does not hold (a bright top over a fast decay among slower ones) can read sums near 0 deep
down, whose gain ``T[0] / T[k]`` then multiplies the noise by thousands. The sums of the signal clipped at
0 are never below those of the clipped noise alone (``noise_sum_floor``): raised to it, the gain stays
within what the data measure.
"""

import numpy as np
import pytest

from linumpy.intensity import attenuation
from linumpy.intensity.qc_summary import AxialQc

DZ_MM = 0.0015
SCALE = 100.0
NOISE_SD = 5.0


def test_floor_is_the_tail_sum_of_the_clipped_noise_alone():
    """Zero-mean Gaussian noise whose sd grows away from a focus (as divided by a focus profile), clipped at
    0: its mean tail sums over 40000 A-lines are the floor's within 1.5% on every plane."""
    rng = np.random.default_rng(3)
    n_z = 60
    sd = NOISE_SD / (1.0 / (1.0 + ((np.arange(n_z) - 40.0) / 15.0) ** 2))
    noise = np.maximum(rng.normal(0.0, 1.0, (n_z, 40000)) * sd[:, None], 0.0)
    measured = np.cumsum(noise[::-1], axis=0)[::-1].mean(axis=1)
    floor = attenuation.noise_sum_floor(sd)
    assert floor.shape == (n_z + 1,) and floor[-1] == 0
    np.testing.assert_allclose(floor[:-1], measured, rtol=0.015)


def mixed_block(seed: int = 1, n_z: int = 100, size: int = 24) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Speckled A-lines, half of them (at random) 4x brighter at the top and decaying at 25 mm^-1 among
    others at 3 mm^-1, with Gaussian noise (sd ``NOISE_SD``) clipped at 0: ``(signal, reflectivity, fast)``."""
    rng = np.random.default_rng(seed)
    fast = rng.random((size, size)) < 0.5
    mu = np.where(fast, 25.0, 3.0)[None]
    reflectivity = np.where(fast, 4.0, 1.0) * rng.gamma(2.0, 0.5, (size, size))
    clean = reflectivity[None] * np.exp(-2 * mu * DZ_MM * np.arange(n_z)[:, None, None]) * SCALE
    signal = np.maximum(clean + rng.normal(0.0, NOISE_SD, clean.shape), 0).astype(np.float32)
    return signal, reflectivity, fast


def compensated(signal: np.ndarray, floor: np.ndarray | None, floored: np.ndarray | None = None) -> np.ndarray:
    grid = attenuation.BinGrid.of(signal.shape[1:])
    sums = attenuation.binned_tail_sums(signal, grid)
    return attenuation.compensate_edge_aware(signal.copy(), sums, grid, 2.0, floor=floor, floored=floored)


def test_floor_bounds_the_gain_where_the_guided_sums_collapse():
    """Against the truth (compensated signal / (reflectivity x scale), 1 where the compensation is right):
    without the floor the guided sums of some A-lines collapse and their voxels read up to thousands of
    times the truth (measured 8584 on the fast A-lines, 699 on the slow ones); with it at most 150 (measured
    28 / 108), and the slow A-lines' planes 40-60 come nearer the truth (measured 3.14 -> 1.48)."""
    signal, reflectivity, fast = mixed_block()
    floor = attenuation.noise_sum_floor(np.full(signal.shape[0], NOISE_SD))
    before, after = (compensated(signal, f) / (reflectivity[None] * SCALE) for f in (None, floor))
    assert before.max() > 500
    assert after.max() < 150
    slow_before, slow_after = (abs(values[40:60][:, ~fast].mean() - 1) for values in (before, after))
    assert slow_after < 0.5 * slow_before, (slow_before, slow_after)


@pytest.mark.parametrize("planes", [None, (5, 70)])
def test_floored_kernel_keeps_the_bits_of_numpys_floored_division(planes):
    """The compiled compensation with the floor: the bits of ``compensate_attenuation(..., floor=)`` of the
    same guided sums; it counts the voxels it changed (sums below the floor, signal other than 0)."""
    signal, _, _ = mixed_block(seed=2, n_z=80, size=20)
    floor = attenuation.noise_sum_floor(np.full(signal.shape[0], NOISE_SD))
    grid = attenuation.BinGrid.of(signal.shape[1:])
    sums = attenuation.binned_tail_sums(signal, grid)
    tails = attenuation.edge_aware_tails(signal, sums, grid, 2.0, planes=planes)
    expected = attenuation.compensate_attenuation(signal, tails, planes=planes, floor=floor)
    floored = np.zeros(1, np.int64)
    result = attenuation.compensate_edge_aware(signal.copy(), sums, grid, 2.0, planes=planes, floor=floor,
                                               floored=floored)
    start, stop = planes or (0, signal.shape[0])
    np.testing.assert_array_equal(result[start:stop].view(np.uint32), expected[start:stop].view(np.uint32))
    changed = (tails[start:stop] < floor[start:stop, None, None]) & (signal[start:stop] != 0)
    assert floored[0] == np.count_nonzero(changed) > 0


def test_qc_states_the_floored_fraction():
    """The QC record's ``attenuation_floored_fraction``: the voxels raised over those compensated."""
    qc = AxialQc(10)
    qc.add_floored(3, 1000)
    qc.add_floored(1, 1000)
    assert qc.floored / qc.compensated == pytest.approx(0.002)


def layer_over_cavity(seed: int = 5, n_z: int = 100, size: int = 24, bottom: int = 45) -> np.ndarray:
    """A bright layer (speckled, 11 mm^-1) from the surface down to ``bottom`` over a cavity (nothing scatters):
    Gaussian noise (sd ``NOISE_SD``) clipped at 0; the signal over ``SCALE`` is 1 at the surface."""
    rng = np.random.default_rng(seed)
    depth = np.arange(n_z)[:, None, None]
    clean = np.where(depth < bottom, np.exp(-2 * 11.0 * DZ_MM * depth), 0.0) * rng.gamma(4.0, 0.25, (n_z, size, size))
    return np.maximum(clean * SCALE * 20 + rng.normal(0.0, NOISE_SD, clean.shape), 0).astype(np.float32)


def test_range_ended_in_the_noise_keeps_the_layer_above_a_cavity_flat():
    """Vermeer's sums above a cavity hold only the layer's last planes and the noise: its bottom reads several
    times its top (planes 35-45 over 5-15: > 2, measured 2.3; every 5th plane 2096 ... 6978 at plane 40). Ended
    where the signal falls to 4x the noise's mean, within 25% (measured 1.04: 2096 ... 2105), planes 5-15 within
    10% of the surface's; the cavity's noise is no longer multiplied (71-111 -> 9-11 for a noise mean of 2)."""
    signal = layer_over_cavity()
    floor = attenuation.noise_sum_floor(np.full(signal.shape[0], NOISE_SD))
    grid = attenuation.BinGrid.of(signal.shape[1:])
    sums = attenuation.binned_tail_sums(signal, grid)
    inside = (slice(None), slice(4, -4), slice(4, -4))
    plain, ended = (attenuation.compensate_edge_aware(signal.copy(), sums, grid, 2.0, floor=floor, noise_end=factor)
                    [inside].mean(axis=(1, 2)) for factor in (0.0, 4.0))
    for values, low, high in ((plain, 2.0, np.inf), (ended, 0.75, 1.25)):
        assert low < values[35:45].mean() / values[5:15].mean() < high, values[::5].round(0)
    assert abs(ended[5:15].mean() / ended[:5].mean() - 1) < 0.1


def test_noise_end_in_the_kernel_is_the_sums_ended_then_divided():
    """The compiled compensation with ended ranges: the bits of numpy's division of the guided sums ended as
    ``ended_sums`` says (``T[k] + offset`` above the end, ``beyond`` from it on), floored; it counts the ended
    A-lines."""
    signal = layer_over_cavity(n_z=80, size=20)
    signal[:, :, :6] *= 0.02  # A-lines in the noise from the surface: ended at the least plane
    floor = attenuation.noise_sum_floor(np.full(signal.shape[0], NOISE_SD))
    grid = attenuation.BinGrid.of(signal.shape[1:])
    sums = attenuation.binned_tail_sums(signal, grid)
    inner = (slice(0, 20), slice(0, 20))
    fitted = attenuation._guided_filter(signal, sums, grid, 2.0, None, attenuation.EDGE_EPSILON, inner, None)
    boxed = attenuation.box_mean(sums, attenuation.box_width(2.0) // attenuation.EDGE_BIN | 1)
    end = attenuation.noise_ends(boxed, floor, 4.0)[fitted.bins[0][:, None], fitted.bins[1][None, :]]
    end, offset, beyond = attenuation.ended_sums(fitted, end, fitted.within)
    tails = attenuation.edge_aware_tails(signal, sums, grid, 2.0)
    k = np.arange(tails.shape[0])[:, None, None]
    tails = np.where(k < end[None], tails + offset[None], beyond[None]).astype(np.float32)
    expected = attenuation.compensate_attenuation(signal, tails, floor=floor)
    counts = np.zeros(2, np.int64)
    result = attenuation.compensate_edge_aware(signal.copy(), sums, grid, 2.0, floor=floor, floored=counts,
                                               noise_end=4.0)
    np.testing.assert_array_equal(result.view(np.uint32), expected.view(np.uint32))
    assert counts[1] == np.count_nonzero(end < signal.shape[0]) > 0
