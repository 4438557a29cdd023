"""A corroborated weak peak that an edge link holds only along its ridge, no link on its own peak, or that puts
back a joint placement dropped before, is refused (session stitch54, issue #10)."""

from __future__ import annotations

import numpy as np
from test_stitching_beyond_ridges import ALONG_X, ALONG_Y, RADIUS, _edge
from test_stitching_matrix import NEVER_WORSE_TOLERANCE_PX, stitch_errors

from linumpy.simulate.stitch_matrix import get_condition
from linumpy.stitching.estimate import _corroboration_refused
from linumpy.stitching.pairwise import EvidenceMap, PairRegistration
from linumpy.stitching.tile_search import Placement

#: Tile (1, 0)'s placement by two links: the edge link ``ALONG_X`` (ridge along x) and ``ALONG_Y``, not an edge.
PLACED = {ALONG_X: (100, 0), ALONG_Y: (0, 100)}


def _peak(own: tuple[int, int]) -> PairRegistration:
    """A link whose evidence is one round peak (3 x 3 offsets) at ``own``, nominal ``(0, 100)``."""
    values = np.full((2 * RADIUS + 1, 2 * RADIUS + 1), 0.1)
    centre = np.array([RADIUS + own[0], RADIUS + own[1] - 100])
    values[centre[0] - 1:centre[0] + 2, centre[1] - 1:centre[1] + 2] = 3.0
    return PairRegistration(own, 0.3, significance=0.8,
                            scores=(EvidenceMap(1.5, (0, 100), values, fisher=values / 10),))


def _refused(edge_slide: int, own: tuple[int, int], dropped_before: dict | None = None) -> bool:
    registrations = {ALONG_X: _edge((100, 0), (0, 1), edge_slide), ALONG_Y: _peak(own)}
    placement = Placement((1, 0), 1.2, 1.5, PLACED, (100, 0))
    return _corroboration_refused(placement, registrations, dropped_before or {})


def test_an_edge_link_off_its_peak_with_no_link_on_its_own_does_not_corroborate():
    """The edge link's peak 3 px along its ridge, the other link's 4 px away: refused."""
    assert _refused(3, (0, 104))


def test_a_link_on_its_own_peak_locates_the_tile_along_the_ridge():
    """The other link's peak at the placement, or the edge link's own peak 1 px along: kept."""
    assert not _refused(3, (0, 100))
    assert not _refused(1, (0, 104))


def test_the_repeat_of_a_dropped_placement_is_refused():
    """The same links at the same offsets as a placement whose pairs were dropped: refused; one offset 3 px
    away or a link the dropped placement did not have: kept."""
    assert _refused(0, (0, 100), {(1, 0): {ALONG_X: (100.2, 0.4), ALONG_Y: (0.0, 99.6)}})
    assert not _refused(0, (0, 100), {(1, 0): {ALONG_X: (100.0, 0.0), ALONG_Y: (0.0, 103.0)}})
    assert not _refused(0, (0, 100), {(1, 0): {ALONG_X: (100.0, 0.0)}})


def test_the_dropped_placement_of_tissue_seed_141_is_not_put_back():
    """``tissue changing with depth`` seed 141 (held out, session stitch52): (1, 2), placed 5.6 px off by three
    links, one lost in the solve and the two others dropped, was put back on the same three by the
    corroborated search, 5.04 px from the truth, 2.39 px farther than its stage position. Refused, flagged;
    no tile of the slice worse than the stage."""
    errors, excess, textured, transform = stitch_errors(get_condition("tissue changing with depth"), 141)
    assert transform.tiles[(1, 2)].corroboration_refused and transform.tiles[(1, 2)].unsupported_placement_dropped
    assert sum(record.corroboration_refused for record in transform.tiles.values()) == 1
    assert transform.tiles[(1, 2)].source == "stage"
    assert excess[(1, 2)] <= NEVER_WORSE_TOLERANCE_PX, excess[(1, 2)]  # +2.39 before
    assert max(excess.values()) <= NEVER_WORSE_TOLERANCE_PX, excess
    assert np.mean([errors[t] for t in textured]) <= 0.5  # 0.93 before
