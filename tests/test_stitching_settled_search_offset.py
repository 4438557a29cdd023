"""A kept searched link left at a whole pixel its sub-pixel fit leaves is settled from the pair's evidence, once every
search has run (sessions flat10, flat10b; issue #10; ``pairwise.settled_search_offset``,
``settle.settle_kept_searches``)."""

from __future__ import annotations

import numpy as np
from pair_flags import assert_pair_flag_round_trips
from test_stitching_ridge_refit import SHORT, TRUE_OFFSET, _offset, _tiles

from linumpy.stitching.global_solve import solve_positions
from linumpy.stitching.pair_terms import pair_offset
from linumpy.stitching.pairwise import PairRegistration, local_maxima, refine_subpixel, settled_search_offset
from linumpy.stitching.settle import settle_kept_searches
from linumpy.stitching.transform import PairRecord

#: The truth, below a pixel from :data:`TRUE_OFFSET`.
TRUTH = (TRUE_OFFSET[0] + 0.3, TRUE_OFFSET[1] - 0.2)
PAIR = ((0, 0), (1, 0))
STEP = (84.0, 84.0)


def _searched(offset: tuple[float, float], significance: float = 5.0) -> PairRegistration:
    """The pair as a search refined it at ``offset``, with the short ridge's evidence map."""
    return PairRegistration(tuple(float(v) for v in offset), 0.6, significance, (1.0, 1.0), scores=(SHORT,))


def _flat_top() -> tuple[int, int]:
    """The evidence's whole-pixel maximum: toward the larger overlap, more than 1.5 px from the truth, the fit from
    it leaving its box (the premise)."""
    whole = _offset(local_maxima(SHORT.values)[0])
    tile_a, tile_b = _tiles(TRUTH)
    assert refine_subpixel(tile_a, tile_b, whole)[0] == tuple(float(v) for v in whole)
    assert np.hypot(*np.subtract(whole, TRUTH)) > 1.5
    return whole


def _solved(registration: PairRegistration) -> tuple:
    """The two tiles solved on the pair as the search left it."""
    return solve_positions(list(PAIR), [pair_offset(*PAIR, registration, True)], STEP)


def test_a_whole_pixel_the_fit_leaves_is_settled_on_the_truth():
    tile_a, tile_b = _tiles(TRUTH)
    settled = settled_search_offset(tile_a, tile_b, _searched(_flat_top()))
    assert settled is not None
    assert np.hypot(*np.subtract(settled[0], TRUTH)) < 0.1
    assert max(settled[1]) < 0.2


def test_an_offset_the_fit_refined_or_a_whole_pixel_it_keeps_is_not_settled():
    tile_a, tile_b = _tiles(TRUTH)
    fitted = refine_subpixel(tile_a, tile_b, TRUE_OFFSET)[0]
    assert np.hypot(*np.subtract(fitted, TRUTH)) < 0.1  # premise: the fit stays in its box there
    assert settled_search_offset(tile_a, tile_b, _searched(fitted)) is None
    assert settled_search_offset(tile_a, tile_b, _searched(TRUE_OFFSET)) is None


def test_the_kept_link_is_settled_and_its_tile_solved_on_the_truth():
    tile_a, tile_b = _tiles(TRUTH)
    searched = _searched(_flat_top())
    solved = _solved(searched)
    before = solved[0][PAIR[1]] - solved[0][PAIR[0]]
    assert np.hypot(*np.subtract(before, TRUTH)) > 1.5
    (positions, _, kept), settled = settle_kept_searches(list(PAIR), solved, {PAIR: searched},
                                                         dict(zip(PAIR, (tile_a, tile_b))), STEP)
    assert set(settled) == {PAIR} and settled[PAIR].settled
    assert [(p.a, p.b) for p in kept] == [PAIR]
    assert np.hypot(*np.subtract(positions[PAIR[1]] - positions[PAIR[0]], TRUTH)) < 0.1


def test_a_link_not_kept_at_the_searchs_offset_leaves_the_solve_as_it_was():
    """A kept link at its own registration's offset (the search's not kept) is not touched: the same solve."""
    tile_a, tile_b = _tiles(TRUTH)
    own = PairRegistration(TRUTH, 0.6, 5.0, (0.05, 0.05), scores=(SHORT,))
    solved = _solved(own)
    result, settled = settle_kept_searches(list(PAIR), solved, {PAIR: _searched(_flat_top())},
                                           dict(zip(PAIR, (tile_a, tile_b))), STEP)
    assert result is solved and settled == {}


def test_settled_survives_the_transform_json():
    """``settled`` is written with each pair and read back (missing in older files: False)."""
    records = (PairRecord((0, 0), (1, 0), TRUTH, 0.6, True, settled=True),
               PairRecord((0, 0), (0, 1), (0.0, 84.0), 0.9, True))
    assert_pair_flag_round_trips(records, "settled", {(0, 0): (0.0, 0.0), (1, 0): TRUTH, (0, 1): (0.0, 84.0)},
                                 STEP, (96, 96))
