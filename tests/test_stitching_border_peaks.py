"""A pair's peak on the border of its scored window is no local maximum of the match:
recorded per pair and counted per slice, and its tiles' stated errors carry the search window's variance
(session edgepeak, issue #10)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from pair_flags import assert_pair_flag_round_trips
from test_stitching_open_loops import KEPT, SPREADS, STEP, WRONG, _off, _slice

from linumpy.qc.flags import uncertain_tiles
from linumpy.stitching.pair_terms import link_variance, pair_sigma
from linumpy.stitching.pairwise import PairRegistration, register_pair
from linumpy.stitching.transform import PairRecord
from linumpy.stitching.uncertainty import stage_scatter, tile_sigmas

#: The search window of the pipeline's estimate (pixels).
MAX_SHIFT_PX = 20.0


def _tiles(gap_px: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Two 64 px tiles of one smooth scene, side by side with ``gap_px`` between them (negative: an overlap),
    and the true x offset of the second."""
    scene = ndimage.gaussian_filter(np.random.default_rng(0).random((80, 200)), 2.0)
    x = 64 + gap_px
    return scene[:64, :64], scene[:64, x:x + 64], float(x)


def test_a_peak_on_the_last_scored_column_between_tiles_that_do_not_overlap_is_a_border_peak():
    """Tiles 2 px apart (no overlap), searched within 8 px of an 8 px overlap: the peak lands on the last
    scored column (a 2 px overlap, the narrowest scored), the sub-pixel fit cannot run there, and it is 4.5 px
    off. It is marked; the same tiles overlapping by 8 px are registered at the truth and not marked. Main: no
    ``border_peak``."""
    a, b, truth = _tiles(2)
    wrong = register_pair(a, b, (0, 56), 8)
    assert wrong.border_peak and wrong.offset[1] == 62.0
    assert np.hypot(wrong.offset[0], wrong.offset[1] - truth) > 4.0
    a, b, truth = _tiles(-8)
    right = register_pair(a, b, (0, 56), 8)
    assert not right.border_peak
    assert np.hypot(right.offset[0], right.offset[1] - truth) < 0.1


def _stated_errors(border: bool) -> tuple[dict, dict, dict, list]:
    """209 slice 0's kept pairs as records, (0, 0)-(1, 0) marked as a border peak if ``border``: their tiles'
    stated errors, the solved positions, the truth and the tiles."""
    tiles, (positions, model, kept), truth = _slice(WRONG)
    records = []
    for (a, b), significance in KEPT.items():
        fitted = (1.0, 1.0) if (a, b) in SPREADS else (1 / significance,) * 2
        registration = PairRegistration((0.0, 0.0), 0.5, significance=significance, sigma_px=fitted)
        records.append(PairRecord(a, b, registration.offset, 0.5, True, significance=significance,
                                  sigma_px=pair_sigma(registration), spread_px=SPREADS.get((a, b), (0.0, 0.0)),
                                  border_peak=border and (a, b) == ((0, 0), (1, 0))))
    scatter = stage_scatter(positions, model, tiles, MAX_SHIFT_PX)
    sigmas = tile_sigmas(tiles, [(r.a, r.b, link_variance(r, MAX_SHIFT_PX)) for r in records], scatter)
    return sigmas, positions, truth, tiles


def _flagged(sigmas: dict) -> list:
    """The tile-bar flag's tiles (:func:`uncertain_tiles`) of a slice placed by overlaps with these stated errors."""
    return uncertain_tiles({str(t): {"source": "pairs", "weak": False, "sigma_px": s} for t, s in sigmas.items()})


def test_the_tiles_a_border_peak_places_are_over_the_tile_bar():
    """209 slice 0: the five tiles (0, 0)-(1, 0) places (through a loop with the wrong (3, 1)-(3, 2)) are
    4.6 px off and (3, 2), (3, 3) 1.3 px, with stated errors under the 1.5 px tile bar: silent. With the
    link's peak on its border, their stated errors carry the search window's variance and the tile-bar flag
    names them, every one off by more than 1 px; the tiles it names are the only ones off by more than 0.1 px
    (measured on the run: the same seven, 2.1-3.3 px off, stated 1.82-1.92 px; the others 1.42-1.43)."""
    silent = _stated_errors(border=False)[0]
    sigmas, positions, truth, tiles = _stated_errors(border=True)
    flagged = {t for t in tiles if str(t) in dict(_flagged(sigmas))}
    off = _off(positions, truth, [t for t in tiles if t not in flagged])
    assert not _flagged(silent)
    assert flagged == {(1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2), (3, 3)}
    assert min(off[t] for t in flagged) > 1.0
    assert max(off[t] for t in tiles if t not in flagged) < 0.1
    assert all(sigmas[t] >= silent[t] for t in tiles)


def test_the_border_peak_survives_the_transform_json():
    """``border_peak`` is written with each pair and read back (missing in older files: False)."""
    records = (PairRecord((0, 0), (1, 0), (94.0, 3.0), 0.9, True, border_peak=True),
               PairRecord((0, 0), (0, 1), (0.0, 86.0), 0.9, True))
    assert_pair_flag_round_trips(records, "border_peak", {(0, 0): (0.0, 0.0), (1, 0): (94.0, 3.0),
                                                          (0, 1): (0.0, 86.0)}, STEP, (96, 96))
