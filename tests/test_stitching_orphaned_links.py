"""A searched link whose piece lost pairs to the broken-loop step counts as weak (refusals.orphaned_searches)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from linumpy.stitching.refusals import orphaned_searches
from linumpy.stitching.global_solve import PairOffset, StageModel, solve_positions

STEP = (10.0, 10.0)
TILES = [(r, c) for r in range(2) for c in range(3)]
#: A square of right pairs, the searched link (0, 1)-(0, 2) 4 px off, and (0, 2)-(1, 2): the piece
#: {(0, 2), (1, 2)} hangs on the searched link once (1, 1)-(1, 2) is dropped.
SEARCHED = ((0, 1), (0, 2))


def _solved(searched_significance: float):
    offsets = {((0, 0), (0, 1)): (0.0, 10.0), ((0, 0), (1, 0)): (10.0, 0.0), ((0, 1), (1, 1)): (10.0, 0.0),
               ((1, 0), (1, 1)): (0.0, 10.0), SEARCHED: (4.0, 10.0), ((0, 2), (1, 2)): (10.0, 0.0)}
    pairs = [PairOffset(a, b, offset, 4.0) for (a, b), offset in offsets.items()]
    significance = {key: 6.0 for key in offsets} | {SEARCHED: searched_significance}
    registrations = {key: SimpleNamespace(significance=value) for key, value in significance.items()}
    return solve_positions(TILES, pairs, STEP), registrations


def test_a_searched_link_left_holding_a_piece_whose_pairs_were_dropped_goes():
    solved, registrations = _solved(0.8)
    positions, _, kept = orphaned_searches(TILES, solved, {((1, 1), (1, 2))}, {SEARCHED}, registrations, STEP)
    assert {(p.a, p.b) for p in kept} == {(p.a, p.b) for p in solved[2]} - {SEARCHED, ((0, 2), (1, 2))}
    nominal = StageModel.nominal(STEP)
    for tile in ((0, 2), (1, 2)):  # back on the stage model, not 4 px off with the searched link
        assert np.allclose(positions[tile] - positions[(0, 0)], nominal.position(tile), atol=0.01)


def test_nothing_changes_for_a_strong_link_or_a_piece_that_lost_nothing():
    solved, registrations = _solved(3.5)
    assert orphaned_searches(TILES, solved, {((1, 1), (1, 2))}, {SEARCHED}, registrations, STEP) is solved
    solved, registrations = _solved(0.8)
    assert orphaned_searches(TILES, solved, {((0, 0), (1, 0))}, {SEARCHED}, registrations, STEP) is solved
    assert orphaned_searches(TILES, solved, set(), {SEARCHED}, registrations, STEP) is solved
