"""Tiles placed through a loop of kept pairs that does not close, none of its pairs clearly the culprit, are
named in the tile records and the report warns of them (session link209, issue #10); a piece of them placed
beyond the stage's error goes onto the stage model (stop 63)."""

from __future__ import annotations

import numpy as np

from linumpy.qc.flags import open_loop_warnings, record_flags
from linumpy.stitching.global_solve import PairOffset, StageModel, solve_positions
from linumpy.stitching.tile_records import far_open_loop_pieces_to_stage, open_loop_tiles

STEP = (86.0, 86.0)
#: The pairs kept on foreign ``c185`` seed 209, slice 0 (4 x 4, 10 % overlap), with their own significance.
KEPT = {((0, 0), (1, 0)): 3.29, ((0, 0), (0, 1)): 14.08, ((0, 1), (1, 1)): 16.85, ((0, 1), (0, 2)): 9.00,
        ((0, 2), (0, 3)): 7.25, ((0, 3), (1, 3)): 7.43, ((1, 0), (2, 0)): 19.77, ((1, 2), (2, 2)): 9.37,
        ((1, 2), (1, 3)): 6.64, ((1, 3), (2, 3)): 13.02, ((2, 0), (3, 0)): 18.68, ((2, 0), (2, 1)): 5.83,
        ((2, 2), (2, 3)): 11.73, ((2, 3), (3, 3)): 4.01, ((3, 0), (3, 1)): 20.65, ((3, 1), (3, 2)): 2.32,
        ((3, 2), (3, 3)): 17.48}
#: Their errors there (pixels, ``(y, x)``): (0, 0)-(1, 0) read a peak between tiles that do not overlap, and
#: (3, 1)-(3, 2) one over a 0.4 px overlap; (2, 3)-(3, 3) is right, its peak broad across a 3.4 px overlap.
WRONG = {((0, 0), (1, 0)): (-4.47, 1.10), ((3, 1), (3, 2)): (3.84, -4.59), ((2, 3), (3, 3)): (0.67, -0.12)}
#: Their peak spreads (pixels, ``(y, x)``); 0 for the others. Their sub-pixel fits failed (standard error
#: 1 px, the default); the others' standard error is about 1 / significance (``pair_sigma``).
SPREADS = {((0, 0), (1, 0)): (2.85, 0.01), ((3, 1), (3, 2)): (0.17, 0.41), ((2, 3), (3, 3)): (3.09, 1.0)}


def _slice(errors: dict) -> tuple[list, dict, dict]:
    """The tiles, the solve of the kept pairs with ``errors`` and the truth (the stage errs by up to 8 px)."""
    tiles = [(r, c) for r in range(4) for c in range(4)]
    rng = np.random.default_rng(209)
    truth = {t: np.array([t[0] * STEP[0], t[1] * STEP[1]]) + rng.uniform(-8, 8, 2) for t in tiles}
    pairs = [PairOffset(a, b, tuple(truth[b] - truth[a] + errors.get((a, b), (0.0, 0.0))),
                        weight=1.0 if (a, b) in SPREADS else significance**2, strong=significance >= 3)
             for (a, b), significance in KEPT.items()]
    solved = solve_positions(tiles, pairs, STEP)
    assert len(solved[2]) == len(pairs)  # the loop's miss spread over its pairs, each residual under the bar
    return tiles, solved, truth


def _off(positions: dict, truth: dict, frame: list) -> dict:
    """Distance of each tile to the truth once the frame's mean translation is removed."""
    translation = np.mean([positions[t] - truth[t] for t in frame], axis=0)
    return {t: float(np.linalg.norm(positions[t] - translation - truth[t])) for t in truth}


def test_the_tiles_behind_a_loop_that_does_not_close_are_named_and_warned_of():
    """209 slice 0: the loop through the wrong (0, 0)-(1, 0) misses by 3.5 px, its two broad links of like
    honest error (3.0, 3.3 px) a coin flip: the tiles named are those the suspects alone hold, the piece
    {(1, 0), (2, 0), (2, 1), (3, 0), (3, 1)} (4.6 px off) and (3, 2), (3, 3) (1.3 px), every one off by more
    than any other tile (< 0.1 px), and the report warns of the slice, naming the miss (a warning, not a red
    flag). Main: nothing named, no warning."""
    tiles, (positions, _, kept), truth = _slice(WRONG)
    named = open_loop_tiles(tiles, kept, STEP, {(p.a, p.b): SPREADS.get((p.a, p.b), (0.0, 0.0)) for p in kept})
    piece = {(1, 0), (2, 0), (2, 1), (3, 0), (3, 1)}
    assert set(named) == piece | {(3, 2), (3, 3)}
    off = _off(positions, truth, [t for t in tiles if t not in named])
    assert min(off[t] for t in piece) > 4.0 and min(off[t] for t in named) > 1.0
    assert max(off[t] for t in tiles if t not in named) < 0.1
    assert all(3.0 < miss < 4.5 for miss in named.values())
    record = {"step": "stitch_3d", "slice_id": 0,
              "metrics": {"tiles": {str(t): {"source": "pairs", "open_loop_px": named.get(t)} for t in tiles}}}
    assert record_flags(record) == []  # a warning: half the loops named on the foreign runs held right tiles
    (warning,) = open_loop_warnings([record])
    assert warning.slice_id == 0 and "7 tile(s) placed through a loop of pairs that misses by 3." in warning.message


def test_loops_that_close_name_no_tile():
    """The same slice with every pair right: no loop misses, nothing named, no warning."""
    tiles, (_, _, kept), _ = _slice({})
    assert open_loop_tiles(tiles, kept, STEP, {(p.a, p.b): SPREADS.get((p.a, p.b), (0.0, 0.0)) for p in kept}) == {}


def test_a_piece_of_an_open_loop_within_the_stage_error_stays_where_its_loop_put_it():
    """209 slice 0's named tiles (4.6 and 1.3 px off) depart from the stage model no farther than the others
    (the stage errs by up to 8 px): nothing moves, no pair is dropped."""
    tiles, (positions, model, kept), _ = _slice(WRONG)
    named = open_loop_tiles(tiles, kept, STEP, {(p.a, p.b): SPREADS.get((p.a, p.b), (0.0, 0.0)) for p in kept})
    moved_positions, moved_kept, moved = far_open_loop_pieces_to_stage(positions, model, kept, named)
    assert moved == set() and moved_kept == list(kept)
    assert all(np.array_equal(moved_positions[t], positions[t]) for t in tiles)


def test_a_piece_an_open_loop_places_beyond_the_stage_error_goes_onto_the_stage_model():
    """Foreign c185 238 slice 1's shape: the stage errs by up to 4 px a tile, a wrong link holds a right-shaped
    piece of five tiles (16, -17) px off, the loop through it open. The piece goes onto its stage-model mean as
    one (within the stage's mean error of the truth, its shape kept), the pairs joining it to the others are
    dropped, the other tiles do not move."""
    tiles = [(r, c) for r in range(4) for c in range(4)]
    rng = np.random.default_rng(238)
    truth = {t: np.array([t[0] * STEP[0], t[1] * STEP[1]]) + rng.uniform(-4, 4, 2) for t in tiles}
    piece = {(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)}
    positions = {t: truth[t] + (np.array([16.0, -17.0]) if t in piece else 0.0) for t in tiles}
    kept = [PairOffset(a, b, tuple(positions[b] - positions[a]), 1.0) for a in tiles for b in tiles
            if (b[0] - a[0], b[1] - a[1]) in ((0, 1), (1, 0))]
    moved_positions, moved_kept, moved = far_open_loop_pieces_to_stage(
        positions, StageModel.nominal(STEP), kept, {t: 20.1 for t in piece})
    assert moved == piece
    assert {(p.a, p.b) for p in kept} - {(p.a, p.b) for p in moved_kept} == {
        (a, b) for a, b in ((p.a, p.b) for p in kept) if (a in piece) != (b in piece)}
    frame = [t for t in tiles if t not in piece]
    assert all(np.array_equal(moved_positions[t], positions[t]) for t in frame)
    before, after = _off(positions, truth, frame), _off(moved_positions, truth, frame)
    assert min(before[t] for t in piece) > 20.0 and max(after[t] for t in piece) < 4.0
    shape = [moved_positions[t] - positions[t] for t in piece]
    assert np.ptp(shape, axis=0).max() < 1e-9  # moved as one
