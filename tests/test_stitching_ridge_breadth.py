"""An edge link is judged broad by its peak's spread across its ridge, not along it
(linumpy.stitching.link_conflicts.spread_across_ridge)."""

from __future__ import annotations

import numpy as np

from linumpy.simulate.stitch_matrix import aligned_errors
from linumpy.stitching.global_solve import PairOffset, solve_positions
from linumpy.stitching.link_conflicts import broad_broken_links, drop_broken_loop_links

STEP = (10.0, 10.0)
#: One loop, (0, 0)-(0, 1)-(1, 1)-(1, 0).
TILES = [(0, 0), (0, 1), (1, 0), (1, 1)]
TRUTH = {tile: np.multiply(tile, STEP) for tile in TILES}
#: ``8x8 harsh`` seed 3's shape: the right edge link (0, 1)-(1, 1), free along x (4.0 px off along its
#: ridge, where its peak spreads 1.5 px; 0.0 off across it, where it spreads 0.3 px), and its wrong
#: parallel (0, 0)-(1, 0), 3.0 px off along y with a spread of 0.9 px.
EDGE = ((0, 1), (1, 1))
WRONG = ((0, 0), (1, 0))
SPREADS = {((0, 0), (0, 1)): (0.2, 0.2), WRONG: (0.9, 0.9), EDGE: (0.3, 1.5), ((1, 0), (1, 1)): (0.2, 0.2)}


def _pairs() -> list[PairOffset]:
    """The loop's pairs: the true offsets, but the wrong link's 3.0 px and the edge link's 4.0 px along its ridge."""
    pairs = []
    for a, b in SPREADS:
        offset = TRUTH[b] - TRUTH[a] + {WRONG: (3.0, 0.0), EDGE: (0.0, 4.0)}.get((a, b), (0.0, 0.0))
        free = (0.0, 1.0) if (a, b) == EDGE else None
        pairs.append(PairOffset(a, b, tuple(float(v) for v in offset), 4.0, free_direction=free))
    return pairs


def _errors(positions: dict) -> dict:
    return aligned_errors(positions, TRUTH, TILES)


def test_an_edge_link_sharp_across_its_ridge_is_not_a_broad_suspect():
    pairs = _pairs()
    solved = solve_positions(TILES, pairs, STEP)
    assert len(solved[2]) == len(pairs)
    assert broad_broken_links(TILES, pairs, SPREADS, STEP) == []
    significance = {pair: 0.85 for pair in SPREADS}
    (positions, _, kept), dropped, broad = drop_broken_loop_links(TILES, solved, SPREADS, significance, 3.0, STEP)
    assert not dropped and not broad and len(kept) == len(pairs)
    # Kept, the right edge link holds the tiles nearer their truth than the wrong link alone would:
    # dropped, (1, 0) and (1, 1) hang 3.0 px off from (0, 0) and (0, 1).
    without = solve_positions(TILES, [p for p in pairs if (p.a, p.b) != EDGE], STEP)[0]
    errors, hung = _errors(positions), _errors(without)
    assert max(hung.values()) > 1.4
    assert max(errors.values()) < 0.8 * max(hung.values())
    assert np.mean(list(errors.values())) < 0.8 * np.mean(list(hung.values()))


def test_an_edge_link_broad_across_its_ridge_is_still_a_suspect():
    pairs = _pairs()
    spreads = SPREADS | {EDGE: (1.5, 0.3)}
    assert [(pairs[k].a, pairs[k].b) for k in broad_broken_links(TILES, pairs, spreads, STEP)] == [EDGE]
