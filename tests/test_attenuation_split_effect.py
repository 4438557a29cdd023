"""The map's split test asks a change of a given size, whatever the frames averaged (issue #11, session grey48).

A region over a brighter one (the foreign generator's grey 3 /mm, reflectivity 0.35, over grey 5 /mm, 0.55) is
read across both as less attenuating unless the window stops at the change. The split was accepted on its
statistic ``F = (SSE_1 - SSE_2) / (SSE_2 / (n - 4))`` alone, which is the change's size over the speckle's
variance: one frame (twice the log variance of two) halved it, and the same change went unsplit (the harsh
foreign acquisitions of one frame read grey 3 at -28 %). The test now asks the explained mean square
``(SSE_1 - SSE_2) / n`` (the change's size in log units) and an ``F`` beyond the noise.
"""

from __future__ import annotations

import numpy as np
import pytest

from linumpy.intensity import attenuation, attenuation_map

DZ_MM = 0.0015
N_Z = 90
SIZE = 24
BOUNDARY = 45


def layered(top_planes: int, mu_top: float, mu_bottom: float, brightness: float) -> np.ndarray:
    """Noise-free A-line: a region (reflectivity 1) over one ``brightness`` times brighter, round-trip decay."""
    k = np.arange(N_Z, dtype=float)
    mu = np.where(k < top_planes, mu_top, mu_bottom)
    transmission = np.exp(-2 * DZ_MM * np.concatenate([[0.0], np.cumsum(mu)[:-1]]))
    return np.where(k < top_planes, 1.0, brightness) * transmission


def read(clean: np.ndarray, frames: int, seed: int) -> attenuation_map.WindowedAttenuation:
    """The map of ``clean`` under speckle averaged over ``frames`` frames (gamma), box of 7 x 7 A-lines."""
    rng = np.random.default_rng(seed)
    block = (clean[:, None, None] * rng.gamma(frames, 1.0 / frames, (N_Z, SIZE, SIZE))).astype(np.float32)
    tails = attenuation.tail_sums(block, lateral_sigma_px=1.5)
    return attenuation_map.window_attenuation(tails, np.zeros((SIZE, SIZE)), N_Z, DZ_MM)


@pytest.mark.parametrize("frames", [1, 2])
@pytest.mark.parametrize("seed", [0, 1])
def test_grey_over_a_brighter_grey_reads_its_own_attenuation_at_one_frame_or_two(frames, seed):
    """Stated tolerance: median within 15% of the upper region's 3 /mm; > 80% of the A-lines stopped, 95% of
    those within 6 planes of the change.

    Before (``F > 100``): two frames 2.6-2.9 /mm (57-64% stopped), one frame 1.2-1.3 (7-10% stopped).
    """
    result = read(layered(BOUNDARY, 3.0, 5.0, 1.6), frames, seed)
    assert abs(np.median(result.mu) / 3.0 - 1) < 0.15
    assert result.shortened.mean() > 0.8
    assert np.mean(np.abs(result.window_px[result.shortened] - (BOUNDARY - 3)) <= 6) > 0.95  # window from 3 below


@pytest.mark.parametrize("frames", [1, 2])
def test_homogeneous_tissue_keeps_its_whole_range_at_one_frame_or_two(frames):
    """Stated tolerance: median within 5% of 3 /mm; at most 5% of the A-lines stopped (the noise splits none)."""
    result = read(layered(N_Z, 3.0, 3.0, 1.0), frames, seed=7)
    assert abs(np.median(result.mu) / 3.0 - 1) < 0.05
    assert result.shortened.mean() <= 0.05


@pytest.mark.parametrize("fraction", [0.3, 0.5, 0.7])
def test_explained_mean_square_of_a_step(fraction):
    """Noise-free log signal with a step ``s`` at ``fraction`` of the range: ``s^2 p (1 - p) (1 - 3 p (1 - p))``.

    (The variance of a step of ``s`` less the part a line absorbs.) Stated tolerance: 5%.
    """
    step, n = 0.4, 90
    split = int(round(fraction * n))
    log_signal = np.where(np.arange(n) < split, 0.0, step)
    signal = np.exp(log_signal)
    tails = np.concatenate([np.cumsum(signal[::-1])[::-1], [0.0]])[:, None]
    first, stop = np.zeros(1), np.full(1, float(n))
    sums = attenuation.cumulated_sums(tails, first, stop, 1)
    _, explained, found = attenuation_map.SplitSums(np.arange(1), first, stop, sums).statistic(np.arange(1), 8, 8)
    p = split / n
    assert found[0] == split
    assert explained[0] == pytest.approx(step**2 * p * (1 - p) * (1 - 3 * p * (1 - p)), rel=0.05)


def ramped(centre: int, width: int) -> np.ndarray:
    """The boundary of :func:`layered` (grey 3 over a 1.6x brighter grey 5) spread evenly over ``width`` planes.

    The fit's box over an oblique boundary, or the mosaic's blur, sees the change as a ramp (the foreign
    acquisitions' grey 3 over grey 5: 7-9 planes, session grey49).
    """
    return np.mean([layered(b, 3.0, 5.0, 1.6) for b in range(centre - width // 2, centre + width // 2 + 1)], axis=0)


@pytest.mark.parametrize("frames", [1, 2])
@pytest.mark.parametrize("width", [6, 8])
def test_grey_over_a_ramp_into_a_brighter_grey_stops_where_the_ramp_starts(frames, width):
    """Stated tolerance: median within 8% of 3 /mm; the median window ends within 6 planes above the ramp's start.

    Before (the split's own depth): the window ends inside the ramp (at its centre) and reads 2.4-2.7 /mm
    (-10 to -20%).
    """
    mus, windows = [], []
    for seed in range(2):
        result = read(ramped(BOUNDARY, width), frames, seed)
        mus.append(np.median(result.mu))
        windows.append(np.median(result.window_px[result.shortened]))
    start = BOUNDARY - width // 2 - 3  # the ramp's first plane, in planes of the window (from 3 below the start)
    assert abs(np.mean(mus) / 3.0 - 1) < 0.08
    assert start - 6 <= np.mean(windows) <= start


def test_ramp_start_of_a_noise_free_ramp():
    """A noise-free log signal falling at one slope, rising over planes [45, 54), falling again: the window stops
    at the ramp's first plane (the candidates every ``SPLIT_STEP_PX`` planes), where the two-line split does not.
    """
    k = np.arange(90.0)
    log_signal = -0.01 * k + np.clip((k - 45) / 9, 0, 1) * 0.5 - 0.005 * np.clip(k - 54, 0, None)
    signal = np.exp(log_signal)
    tails = np.concatenate([np.cumsum(signal[::-1])[::-1], [0.0]])[:, None]
    first, stop = np.zeros(1), np.full(1, 90.0)
    sums = attenuation_map.SplitSums(np.arange(1), first, stop,
                                     attenuation.cumulated_sums(tails, first, stop, attenuation_map.SPLIT_STEP_PX))
    _, _, split = sums.statistic(np.arange(1), 20, 10)
    assert split[0] > 45
    assert sums.ramp_start(np.arange(1), split, 20, None)[0] == 45


@pytest.mark.parametrize("share", [0.3, 0.24])
def test_a_change_under_a_third_of_the_wide_box_stops_the_window(share):
    """Grey 3 /mm over a 1.6x brighter grey 5 in the fit's box, the change under ``share`` of the wide box only.

    The foreign grey classes are blobs: the change below an A-line lies under part of the split's wide box (its
    other A-lines homogeneous there), which dilutes the wide box's explained mean square: between
    ``SPLIT_EFFECT`` 0.0015 and grey48's 0.002 at 30 %, between 0.001 and 0.0015 at 24 % (the harsh foreign
    seeds' grey 3 A-lines left unstopped, session grey57). Noise-free: the window stops 3 planes above the
    change and reads 3 /mm (unstopped, 1.34 /mm: with 0.002 at 30 %, with 0.0015 at 24 %). Stated tolerance: 1 %.
    """
    own = layered(BOUNDARY, 3.0, 5.0, 1.6)
    wide = share * own + (1 - share) * layered(N_Z, 3.0, 3.0, 1.0)
    tails, split_tails = (attenuation.tail_sums(np.broadcast_to(line[:, None, None], (N_Z, 4, 4)).astype(np.float32))
                          for line in (own, wide))
    result = attenuation_map.window_attenuation(tails, np.zeros((4, 4)), N_Z, DZ_MM, split_tails=split_tails)
    assert np.allclose(result.mu, 3.0, rtol=0.01)
    assert np.all(result.window_px == BOUNDARY - 3)
