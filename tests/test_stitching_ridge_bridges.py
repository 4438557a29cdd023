"""A weak pair that alone places an edge link's tiles along its ridge, the solve putting that edge link beyond its
ridge, is refused before the searches (session empty10, issue #10)."""

from __future__ import annotations

from test_stitching_matrix import stitch_errors

from linumpy.simulate.stitch_matrix import get_condition
from linumpy.stitching.global_solve import PairOffset
from linumpy.stitching.ridge_bridges import measures_along, ridge_contradicted_bridges


def test_the_weak_link_of_8x8_harsh_seed_173_no_longer_carries_row_7_off():
    """``8x8 harsh`` seed 173: (7, 1)-(7, 2), significance 0.99 between two empty tiles, 16 px off along x, was the
    only link placing (7, 2) along x (the edge link (6, 2)-(7, 2) is free along x, solved 11.6 px beyond its peak
    there); the piece {(7, 2), (7, 3)} lay 17 px off and the empty (7, 4) was searched onto it: the textured (7, 3)
    ended 17.22 px from the truth, its stage position 5.31 (+11.90). Refused, the tiles are flagged, (7, 3) is
    placed within its stage error and no tile is worse than the stage."""
    ours, excess, _, transform = stitch_errors(get_condition("8x8 harsh"), 173)
    assert transform.tiles[(7, 1)].ridge_contradicted_link_refused
    assert transform.tiles[(7, 2)].ridge_contradicted_link_refused
    assert ours[(7, 3)] <= 1.0  # measured 0.28 (17.22 before)
    assert ours[(7, 3)] - excess[(7, 3)] >= 5.0  # its stage error in the same frame: 5.37 (5.31 before)
    assert max(excess.values()) <= 0.0, excess  # measured 0.00 (+14.81 before, (7, 2))


def test_a_weak_link_only_a_ridge_checks_is_blamed_and_a_checked_one_is_not():
    """Square (0, 0), (0, 1), (1, 0), (1, 1) and (0, 2), (1, 2): two strong rows, the edge link (0, 0)-(1, 0) free
    along x (beyond its ridge) and a weak (0, 1)-(1, 1). Along x only the weak link joins the rows: blamed. With a
    second link measuring x between the rows, (0, 2)-(1, 2), a loop checks it along x: not blamed; nor is a weak
    link when the edge link is not beyond its ridge."""
    tiles = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    rows = [PairOffset((r, c), (r, c + 1), (0.0, 90.0), 10.0) for r in (0, 1) for c in (0, 1)]
    edge = PairOffset((0, 0), (1, 0), (90.0, 0.0), 1.0, strong=False, free_direction=(0.0, 1.0))
    weak = PairOffset((0, 1), (1, 1), (90.0, 10.0), 1.0, strong=False)
    other = PairOffset((0, 2), (1, 2), (90.0, 0.0), 1.0, strong=False)
    assert not measures_along(edge, (0.0, 1.0)) and measures_along(edge, (1.0, 0.0))
    assert ridge_contradicted_bridges(tiles, rows + [edge, weak], [edge], {((0, 1), (1, 1))}) == {((0, 1), (1, 1))}
    assert not ridge_contradicted_bridges(tiles, rows + [edge, weak, other], [edge], {((0, 1), (1, 1))})
    assert not ridge_contradicted_bridges(tiles, rows + [edge, weak], [], {((0, 1), (1, 1))})
