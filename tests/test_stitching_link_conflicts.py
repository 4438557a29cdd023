"""The least certain weak link of a loop that does not close is dropped (linumpy.stitching.link_conflicts)."""

from __future__ import annotations

import numpy as np

from linumpy.stitching.global_solve import PairOffset, solve_positions
from linumpy.stitching.link_conflicts import (broad_broken_links, broken_loop_culprit, drop_broken_loop_links,
                                             swap_least_certain)

STEP = (10.0, 10.0)
#: A 2 x 3 grid: two loops, (0, 0)-(0, 1)-(1, 1)-(1, 0) and (0, 1)-(0, 2)-(1, 2)-(1, 1).
TILES = [(r, c) for r in range(2) for c in range(3)]
EDGES = [((0, 0), (0, 1)), ((0, 1), (0, 2)), ((1, 0), (1, 1)), ((1, 1), (1, 2)),
         ((0, 0), (1, 0)), ((0, 1), (1, 1)), ((0, 2), (1, 2))]


def _pairs(wrong: dict, weight: float = 4.0) -> list[PairOffset]:
    """Pairs at the true offsets of a regular grid (``STEP``), ``wrong`` ones moved by their error."""
    pairs = []
    for a, b in EDGES:
        true = np.multiply(np.subtract(b, a), STEP)
        pairs.append(PairOffset(a, b, tuple(float(v) for v in true + wrong.get((a, b), (0.0, 0.0))), weight))
    return pairs


def _spreads(broad: dict) -> dict:
    return {pair: broad.get(pair, (0.2, 0.2)) for pair in EDGES}


def test_the_broad_pair_of_a_loop_that_misses_is_named():
    # (1, 0)-(1, 1) is 2.5 px off; sigma 0.5 px for all, its peak spread 2.5 px: the loop misses
    # by 2.5 px, each residual ~0.6-1.3 px (below the solve's 1.5 px bar).
    wrong = {((1, 0), (1, 1)): (2.5, 0.0)}
    pairs = _pairs(wrong)
    assert len(solve_positions(TILES, pairs, STEP)[2]) == len(pairs)
    culprit = broken_loop_culprit(TILES, pairs, _spreads({((1, 0), (1, 1)): (2.5, 2.0)}), STEP)
    assert (pairs[culprit].a, pairs[culprit].b) == ((1, 0), (1, 1))
    # Two pairs of similar spread: a coin flip, nothing named.
    similar = _spreads({((1, 0), (1, 1)): (2.5, 2.0), ((0, 0), (1, 0)): (2.0, 1.5)})
    assert broken_loop_culprit(TILES, pairs, similar, STEP) is None
    # Loops that close: nothing named, however broad a pair.
    assert broken_loop_culprit(TILES, _pairs({}), _spreads({((1, 0), (1, 1)): (2.5, 2.0)}), STEP) is None


def test_the_culprit_is_dropped_and_the_tiles_placed_by_the_others():
    wrong = {((1, 0), (1, 1)): (2.5, 0.0)}
    pairs = _pairs(wrong)
    spreads = _spreads({((1, 0), (1, 1)): (2.5, 2.0)})
    significance = {pair: 5.0 for pair in EDGES} | {((1, 0), (1, 1)): 0.6}
    (positions, _, kept), dropped, _ = drop_broken_loop_links(
        TILES, solve_positions(TILES, pairs, STEP), spreads, significance, 3.0, STEP)
    assert dropped == [((1, 0), (1, 1))]
    assert len(kept) == len(pairs) - 1
    origin = positions[(0, 0)]
    for tile in TILES:  # every tile within 0.01 px of the truth
        assert np.allclose(positions[tile] - origin, np.multiply(tile, STEP), atol=0.01)
    # A culprit as significant as an anchor is kept.
    (_, _, kept), dropped, _ = drop_broken_loop_links(
        TILES, solve_positions(TILES, pairs, STEP), spreads, {pair: 5.0 for pair in EDGES}, 3.0, STEP)
    assert not dropped and len(kept) == len(pairs)


def test_a_drop_that_would_cost_another_pair_is_refused():
    # Without (1, 0)-(1, 1), the weak pair (0, 0)-(1, 0) would be left outside any loop.
    wrong = {((1, 0), (1, 1)): (2.5, 0.0)}
    pairs = [p if (p.a, p.b) != ((0, 0), (1, 0)) else PairOffset(p.a, p.b, p.offset, p.weight, strong=False)
             for p in _pairs(wrong)]
    significance = {pair: 5.0 for pair in EDGES} | {((1, 0), (1, 1)): 0.6}
    (_, _, kept), dropped, _ = drop_broken_loop_links(
        TILES, solve_positions(TILES, pairs, STEP), _spreads({((1, 0), (1, 1)): (2.5, 2.0)}), significance,
        3.0, STEP)
    assert not dropped and len(kept) == len(pairs)


def test_broad_links_of_a_loop_without_a_clear_culprit_are_named_and_dropped_only_if_no_tile_is_lost():
    # (0, 2)-(1, 2) is 2.5 px off; it and (1, 1)-(1, 2) have broad peaks of similar honest error:
    # no clear culprit, but both are named as broad links of the loop that misses.
    pairs = _pairs({((0, 2), (1, 2)): (2.5, 0.0)})
    spreads = _spreads({((0, 2), (1, 2)): (2.5, 2.0), ((1, 1), (1, 2)): (2.0, 1.5)})
    assert broken_loop_culprit(TILES, pairs, spreads, STEP) is None
    named = broad_broken_links(TILES, pairs, spreads, STEP)
    assert sorted((pairs[k].a, pairs[k].b) for k in named) == [((0, 2), (1, 2)), ((1, 1), (1, 2))]
    left = broad_broken_links(TILES, pairs, spreads, STEP, excluded=[((1, 1), (1, 2))])
    assert [(pairs[k].a, pairs[k].b) for k in left] == [((0, 2), (1, 2))]
    # Dropping both would leave (1, 2) without a pair: all are kept.
    significance = {pair: 5.0 for pair in EDGES} | {((0, 2), (1, 2)): 0.6, ((1, 1), (1, 2)): 0.8}
    (_, _, kept), dropped, broad = drop_broken_loop_links(
        TILES, solve_positions(TILES, pairs, STEP), spreads, significance, 3.0, STEP)
    assert not dropped and not broad and len(kept) == len(pairs)


def _swap_case(wrong_spread: tuple, right_spread: tuple):
    """Rows joined by an edge link (0, 0)-(1, 0) free along y, a weak (0, 1)-(1, 1) 2.5 px off in y (kept: its
    loop closes through the edge link's ridge), and the right weak (0, 2)-(1, 2) the solve dropped."""
    pairs = {(p.a, p.b): p for p in _pairs({((0, 1), (1, 1)): (2.5, 0.0)})}
    pairs[((0, 0), (1, 0))] = PairOffset((0, 0), (1, 0), (13.0, 0.0), 4.0, free_direction=(1.0, 0.0))
    for key in (((0, 1), (1, 1)), ((0, 2), (1, 2))):
        pairs[key] = PairOffset(*key, pairs[key].offset, 4.0, strong=False)
    right = pairs.pop(((0, 2), (1, 2)))
    solved = solve_positions(TILES, list(pairs.values()), STEP)
    assert len(solved[2]) == len(pairs)  # the wrong weak pair stands: nothing checks it
    spreads = _spreads({((0, 1), (1, 1)): wrong_spread, ((0, 2), (1, 2)): right_spread})
    significance = {pair: 5.0 for pair in EDGES} | {((0, 1), (1, 1)): 0.9, ((0, 2), (1, 2)): 1.8}
    return swap_least_certain(TILES, solved, [right], spreads, significance, 3.0, STEP)


def test_a_dropped_weak_pair_replaces_the_least_certain_pair_of_its_loop():
    (positions, _, kept), swaps = _swap_case(wrong_spread=(2.0, 1.5), right_spread=(0.3, 0.3))
    assert swaps == [(((0, 2), (1, 2)), ((0, 1), (1, 1)))]
    assert ((0, 1), (1, 1)) not in {(p.a, p.b) for p in kept}
    origin = positions[(0, 0)]
    for tile in TILES:  # the second row in y by the right pair, within 0.01 px of the truth
        assert np.allclose(positions[tile] - origin, np.multiply(tile, STEP), atol=0.01)
    # The dropped pair the least certain of its loop, or two of like honest error: nothing changes.
    for wrong_spread, right_spread in (((0.3, 0.3), (2.0, 1.5)), ((1.0, 1.0), (0.8, 0.8))):
        (_, _, kept), swaps = _swap_case(wrong_spread, right_spread)
        assert not swaps and ((0, 1), (1, 1)) in {(p.a, p.b) for p in kept}
