"""A pair's evidence peak slid toward the larger overlap, the true offset a second local maximum within the peak
radius that matches better on their common overlap: the registration moves there, with an honest significance,
and the pair record says so (session slide10, issue #10)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from linumpy.stitching.global_solve import StageModel
from linumpy.stitching.pairwise import (PEAK_RADIUS_PX, RIDGE_MOVE_MARGIN, _common_gain, local_maxima,
                                        locating_scale, peak_significance, register_pair)
from linumpy.stitching.transform import PairRecord, TileTransform, transform_from_dict, transform_to_dict

#: The stage's offset of the pair (a 12 px overlap of 64 px wide tiles), the true one (an 8 px overlap) and the
#: offset of the second texture (a 12 px overlap, 5 px from the truth: within the peak radius).
NOMINAL, TRUTH, SLID = (0, 52), (0, 56), (-3, 52)
#: Tile height (pixels): long overlaps, many independent pixels.
HEIGHT = 384
#: Amplitude of the second texture relative to the first.
SECOND_AMPLITUDE = 0.9


def _split_pair(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two tiles whose overlap holds two fine textures: the first at the true offset, the second, slightly
    weaker, at :data:`SLID`, where the overlap is wider (a depth-constant structure the tiles share elsewhere).

    The true offset matches better per pixel; the wider overlap gives the slid one more evidence.
    """
    rng = np.random.default_rng(seed)
    canvas = (HEIGHT + 40, 64 + 80)
    first = ndimage.gaussian_filter(rng.standard_normal(canvas), 0.7)
    second = SECOND_AMPLITUDE * ndimage.gaussian_filter(rng.standard_normal(canvas), 0.7)

    def crop(image: np.ndarray, offset: tuple[int, int]) -> np.ndarray:
        return image[20 + offset[0]:20 + offset[0] + HEIGHT, 10 + offset[1]:10 + offset[1] + 64]

    tile_a = crop(first, (0, 0)) + crop(second, (0, 0))
    tile_b = crop(first, TRUTH) + crop(second, SLID)
    return np.exp(0.3 * tile_a), np.exp(0.3 * tile_b)


def _evidence_peak(registration) -> tuple[tuple[int, int], float]:
    """The offset of the evidence peak ``register_pair`` starts from (the locating scale's best local maximum)
    and its significance there."""
    maps = list(registration.scores)
    peaks = [local_maxima(m.values)[0] for m in maps]
    significances = [peak_significance(m.values, p) for m, p in zip(maps, peaks)]
    chosen = locating_scale(maps, peaks, significances)
    peak = peaks[chosen]
    offset = tuple(int(c + p - maps[chosen].radius) for c, p in zip(maps[chosen].centre, peak))
    return offset, significances[chosen]


@pytest.fixture(scope="module")
def registrations():
    """Seeds 0-3 of the split pair, registered as the pipeline does (search within 8 px)."""
    pairs = {seed: _split_pair(seed) for seed in range(4)}
    return {seed: (tiles, register_pair(*tiles, NOMINAL, 8)) for seed, tiles in pairs.items()}


def test_a_slid_peak_moves_to_the_true_offset_beside_it(registrations):
    """Of the four seeds, those whose evidence peak slid to the wider overlap (more than 4 px from the truth) and
    whose true offset beats it on their common overlap by more than the margin end at the truth, marked
    ``split_peak``; every marked pair ends within 0.5 px of the truth. Main: those pairs stay 5 px off."""
    moved = 0
    for (tile_a, tile_b), registration in registrations.values():
        peak, _ = _evidence_peak(registration)
        error = float(np.hypot(*np.subtract(registration.offset, TRUTH)))
        if registration.split_peak:
            moved += 1
            assert error < 0.5
            assert np.hypot(*np.subtract(peak, TRUTH)) > 4.0
        elif np.hypot(*np.subtract(peak, TRUTH)) > 4.0:
            # The slid peak stays only where the truth does not beat it by the margin on their common overlap.
            assert _common_gain(tile_a, tile_b, peak, TRUTH, 0.7) <= RIDGE_MOVE_MARGIN + 0.5
    assert moved >= 2


def test_a_moved_peak_is_no_more_significant_than_its_gain_over_the_peak_it_left(registrations):
    """The significance of a moved pair is at most its gain over the left peak on their common overlap (the
    moved offset is within the peak radius of the left one: no rival there), and below the left peak's."""
    for (tile_a, tile_b), registration in registrations.values():
        if not registration.split_peak:
            continue
        peak, left_significance = _evidence_peak(registration)
        whole = tuple(int(v) for v in np.rint(registration.offset))
        assert np.hypot(*np.subtract(whole, peak)) <= PEAK_RADIUS_PX
        gain = max(_common_gain(tile_a, tile_b, peak, whole, speckle) for speckle in (0.7, 1.5))
        assert RIDGE_MOVE_MARGIN < registration.significance <= gain + 1e-9
        assert registration.significance < left_significance


def test_a_single_peak_does_not_move():
    """One texture at the true offset: one peak, at the truth, not marked."""
    scene = ndimage.gaussian_filter(np.random.default_rng(5).standard_normal((HEIGHT + 40, 200)), 0.7)
    tile_a, tile_b = np.exp(0.3 * scene[:HEIGHT, :64]), np.exp(0.3 * scene[:HEIGHT, 56:120])
    registration = register_pair(tile_a, tile_b, NOMINAL, 8)
    assert not registration.split_peak
    assert np.hypot(*np.subtract(registration.offset, TRUTH)) < 0.5


def test_the_pair_record_keeps_split_peak_through_json():
    """``split_peak`` survives the transform's JSON; transforms written before it read ``False``."""
    records = (PairRecord((0, 0), (0, 1), (0.0, 56.0), 0.6, True, significance=2.4, split_peak=True),
               PairRecord((0, 0), (1, 0), (52.0, 0.0), 0.9, True))
    transform = TileTransform((64, 64), (52, 52), {(0, 0): (0.0, 0.0), (0, 1): (0.0, 56.0), (1, 0): (52.0, 0.0)},
                              StageModel.nominal((52, 52)), pairs=records)
    data = transform_to_dict(transform)
    assert [p["split_peak"] for p in data["pairs"]] == [True, False]
    assert [p.split_peak for p in transform_from_dict(data).pairs] == [True, False]
    for p in data["pairs"]:
        del p["split_peak"]
    assert not any(p.split_peak for p in transform_from_dict(data).pairs)
