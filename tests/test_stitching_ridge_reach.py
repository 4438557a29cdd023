"""An edge link on no loop kept across its ridge only, its tiles put beyond half its ridge from its own peak along
it, is refused and its side goes to the stage model (session ridge10b, issue #10)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from test_stitching_beyond_ridges import STEP, _edge

from linumpy.stitching.global_solve import PairOffset, solve_positions
from linumpy.stitching.pair_terms import pair_offset
from linumpy.stitching.ridge_reach import beyond_reach_edge_links_to_stage
from linumpy.stitching.transform import TileRecord, TileTransform, transform_from_dict, transform_to_dict

TILES = [(r, c) for r in range(2) for c in range(2)]
#: The edge link joining the bottom row to the top one, its ridge along x.
BRIDGE = ((0, 0), (1, 0))
ROWS = [PairOffset((0, 0), (0, 1), (0.0, 100.0), 1.0), PairOffset((1, 0), (1, 1), (0.0, 100.0), 1.0)]


def _bottom_row_on(slide: int, across_only: bool = True, loop: bool = False):
    """Two rows of strong pairs on the nominal step, the bottom one joined to the top by the edge link
    ``BRIDGE`` alone (its peak ``slide`` px along its ridge from the nominal step; half-ridge 4.5 px), kept across
    its ridge only as :func:`~linumpy.stitching.ridges.unmeasured_ridges` leaves a link departing along it beyond
    the stage's error; with ``loop`` a second link, (0, 1)-(1, 1) on the nominal step, closes a loop."""
    registrations = {BRIDGE: _edge((100, 0), (0, 1), slide)}
    edge = pair_offset(*BRIDGE, registrations[BRIDGE], True)  # kept alone between the rows: a search's link
    if across_only:
        edge = replace(edge, ridge_variance=float("inf"))
    links = ROWS + [edge] + ([PairOffset((0, 1), (1, 1), (100.0, 0.0), 1.0)] if loop else [])
    return solve_positions(TILES, links, STEP), registrations


def test_a_lone_edge_link_put_beyond_its_ridge_is_refused_and_its_side_goes_to_the_stage():
    """c185 466 slice 3's shape: the across-only edge link's peak 8 px along its ridge from where the stage puts its
    side (the real case: 27.7 px, its ridge 7.5 px long; its map read 0.0 at the truth): refused, the bottom row
    leaves the solve (on the stage model), the top row's pair kept."""
    solved, registrations = _bottom_row_on(8)
    assert len(solved[2]) == 3
    along = solved[0][(1, 0)] - solved[0][(0, 0)] - np.asarray(solved[2][2].offset)
    assert abs(along[1]) > 4.5  # the stage places the row along the ridge, 8 px from the link's peak
    (positions, model, kept), to_stage, refused = beyond_reach_edge_links_to_stage(TILES, solved, registrations, STEP)
    assert refused == {BRIDGE}
    assert to_stage == {(1, 0), (1, 1)}
    assert [(p.a, p.b) for p in kept] == [((0, 0), (0, 1))]


def test_a_lone_edge_link_within_its_ridge_a_measured_ridge_or_a_loop_stays():
    """The peak 2 px along the ridge (within its half-ridge); the link's evidence along its ridge kept (not across
    only); or a loop checking it: nothing changes."""
    for slide, across_only, loop in ((2, True, False), (8, False, False), (8, True, True)):
        solved, registrations = _bottom_row_on(slide, across_only, loop)
        result, to_stage, refused = beyond_reach_edge_links_to_stage(TILES, solved, registrations, STEP)
        assert result is solved and not to_stage and not refused, (slide, across_only, loop)


def test_the_flag_is_written_and_read_back():
    """The tile flag ``beyond_reach_edge_link_to_stage`` round-trips through the transform's JSON form."""
    transform = TileTransform(tile_shape=(120, 120), tile_step_px=STEP, positions={(0, 0): (0.0, 0.0)},
                              stage_model=solve_positions([(0, 0)], [], STEP)[1],
                              tiles={(0, 0): TileRecord(source="stage", n_pairs=0, sigma_px=1.0,
                                                        beyond_reach_edge_link_to_stage=True)})
    data = transform_to_dict(transform)
    assert data["tiles"][0]["beyond_reach_edge_link_to_stage"] is True
    assert transform_from_dict(data).tiles[(0, 0)].beyond_reach_edge_link_to_stage
