"""A tile that no kept link holds on its peak, every one of them an edge link the solve puts beyond half its ridge
from its own peak, leaves the solve (session stitch51, issue #10)."""

from __future__ import annotations

import numpy as np
from test_stitching_matrix import NEVER_WORSE_TOLERANCE_PX, stitch_errors

from linumpy.simulate.stitch_matrix import get_condition
from linumpy.stitching.pair_terms import pair_offset
from linumpy.stitching.ridges import tiles_beyond_edge_ridges
from linumpy.stitching.global_solve import PairOffset, solve_positions
from linumpy.stitching.pairwise import EvidenceMap, PairRegistration

STEP = (100.0, 100.0)
RADIUS = 12
#: Half the number of offsets on each synthetic ridge: 9 offsets, a ridge 8.9 px long (half 4.5 px).
HALF_RIDGE = 4
TILES = [(r, c) for r in range(2) for c in range(2)]
#: Tile (1, 0)'s two edge links: (0, 0)-(1, 0) with its ridge along x, (1, 0)-(1, 1) along y.
ALONG_X = ((0, 0), (1, 0))
ALONG_Y = ((1, 0), (1, 1))


def _edge(nominal: tuple[int, int], direction: tuple[int, int], slide: int) -> PairRegistration:
    """An edge link: evidence 3 on a ridge of ``2 HALF_RIDGE + 1`` offsets along ``direction`` around its peak,
    ``slide`` px from ``nominal`` along the ridge, 0.1 elsewhere (Fisher NCC a tenth of the evidence)."""
    values = np.full((2 * RADIUS + 1, 2 * RADIUS + 1), 0.1)
    for k in range(-HALF_RIDGE, HALF_RIDGE + 1):
        values[RADIUS + (slide + k) * direction[0], RADIUS + (slide + k) * direction[1]] = 3.0
    peak = (nominal[0] + slide * direction[0], nominal[1] + slide * direction[1])
    return PairRegistration(peak, 0.3, significance=0.8,
                            scores=(EvidenceMap(1.5, nominal, values, fisher=values / 10),))


def _crossed_edges(slide_x: int, slide_y: int):
    """A 2 x 2 grid, (0, 0)-(0, 1)-(1, 1) joined by strong pairs on the nominal step, (1, 0) only by two weak
    edge links with crossed ridges whose peaks slid ``slide_x`` and ``slide_y`` px along them: the solve
    puts (1, 0) where their ridges' lines cross, on the nominal grid."""
    strong = [PairOffset((0, 0), (0, 1), (0.0, 100.0), 1.0), PairOffset((0, 1), (1, 1), (100.0, 0.0), 1.0)]
    registrations = {ALONG_X: _edge((100, 0), (0, 1), slide_x), ALONG_Y: _edge((0, 100), (1, 0), slide_y)}
    edges = [pair_offset(a, b, registrations[(a, b)], False) for a, b in (ALONG_X, ALONG_Y)]
    return solve_positions(TILES, strong + edges, STEP), registrations


def test_a_tile_beyond_the_ridges_of_all_its_edge_links_leaves_the_solve():
    """Both peaks 8 px along their ridges from where the tile lies (half-ridges 4.5 px): its links dropped."""
    solved, registrations = _crossed_edges(8, 8)
    assert len(solved[2]) == 4
    (positions, model, kept), dropped = tiles_beyond_edge_ridges(TILES, solved, registrations, STEP)
    assert dropped == {ALONG_X: (1, 0), ALONG_Y: (1, 0)}
    assert len(kept) == 2 and all((1, 0) not in (p.a, p.b) for p in kept)


def test_a_tile_one_edge_link_holds_on_its_ridge_stays():
    """The second peak 2 px along its ridge from the tile, within its half-ridge: nothing changes."""
    solved, registrations = _crossed_edges(8, 2)
    result, dropped = tiles_beyond_edge_ridges(TILES, solved, registrations, STEP)
    assert not dropped and result is solved


def test_the_crossed_edge_links_of_stage_seed_127_are_not_kept():
    """``stage +-8 + drift`` seed 127 (held out, session stitch49): (1, 0) held by two weak edge links with
    crossed ridges, (0, 0)-(1, 0) wrong (18 px off, at the nominal step); the first solve put the tile 13.44
    and 17.00 px along their ridges from their peaks (half-ridges 4.96, 6.21 px), 15.16 px from the truth,
    6.67 px farther than its stage position; dropped by this rule. Since the speckle has no bright tile border
    (session wrapspk) neither link is kept at all ((0, 0)-(1, 0) significance 0.92, weak outside any loop;
    (1, 0)-(1, 1) 0.20): (1, 0) keeps its stage position (8.49 px, its stage error) and the rule has no case on
    this seed (its cases: the two tests above). No tile of the slice worse than the stage."""
    _, excess, _, transform = stitch_errors(get_condition("stage error"), 127)
    kept = {(p.a, p.b) for p in transform.pairs if p.accepted}
    assert not kept & {((0, 0), (1, 0)), ((1, 0), (1, 1))}
    assert transform.tiles[(1, 0)].source == "stage"
    assert excess[(1, 0)] <= NEVER_WORSE_TOLERANCE_PX, excess[(1, 0)]  # +6.67 before stitch49
    assert max(excess.values()) <= NEVER_WORSE_TOLERANCE_PX, excess
