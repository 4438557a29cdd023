"""A kept edge link on no loop places its side along its ridge only where the side's other overlaps agree
(issue #10, session foreign61; linumpy.stitching.lone_links.lone_edge_links_across_only).

Fresh harsh foreign seed 162, slice 1: the top row, right among itself, was joined to the rest by one kept
link, (0, 0)-(1, 0), whose peak lay on an outline's ridge: right across it, 14.6 px off along it (the true
overlap was under a pixel, so the truth was not even scored). Along the ridge nothing else placed the row,
and it lay 5.5-5.8 px off, two tiles farther from the truth than their stage positions; its other overlap
with the rows below, (0, 2)-(1, 2), preferred the stage along the ridge.
"""

from __future__ import annotations

import numpy as np
import pytest

import linumpy.stitching.estimate as estimate
from linumpy.simulate.stitch_matrix import aligned_errors
from linumpy.stitching.fusion_flatfield import FusionFlatField
from linumpy.stitching.pairwise import EvidenceMap, PairRegistration
from linumpy.stitching.stitch import MosaicGridLayout, stitch_qc
from linumpy.stitching.summaries import SummarySource
from test_stitching_stage_departure import STEP, TILES, _estimate

RADIUS = 20
#: Truth minus stage (pixels) of the rows the edge link does not place: within +-6 px (harsh).
BELOW = {(1, 0): (-5, 1), (1, 1): (4, -3), (1, 2): (-2, 5), (2, 0): (5, -1), (2, 1): (-4, 2), (2, 2): (3, -5)}
#: The row's own errors (its inner pairs right; along the ridge, y, the row errs as one).
ROW = {(0, 0): (0, 1), (0, 1): (0, -2), (0, 2): (0, 0)}
EDGE_LINK = ((0, 0), (1, 0))
#: The row's other overlaps with the rows below: too weak to be candidates, their evidence peaks at the truth.
OTHER_LINKS = (((0, 1), (1, 1)), ((0, 2), (1, 2)))
OTHER_SIGNIFICANCE = 0.3
#: One pair of the rows below with a loose sub-pixel fit: the stage prior's weight is a fraction of the loosest
#: pair's, so it no longer outweighs the edge link along its ridge (162 slice 1: the row on the link's peak).
LOOSE_PAIR = ((2, 1), (2, 2))
LOOSE_SIGMA_PX = (2.0, 2.0)
#: Evidence per pixel of departure along the ridge from its peak (a ridge of the edge's length, ~17 px).
RIDGE_SLOPE = 0.1


def _ridge(peak: tuple[int, int], height: float) -> tuple[np.ndarray, np.ndarray]:
    """An edge's evidence map (ridge along y through ``peak``, offsets ``nominal + d``) and its Fisher values
    (the evidence over 10 independent-pixel units: one standard error is 1 of evidence)."""
    yy, xx = np.indices((2 * RADIUS + 1,) * 2) - RADIUS
    values = (height - RIDGE_SLOPE * np.abs(yy - peak[0])) * np.exp(-((xx - peak[1]) ** 2) / 2.0)
    return values, values / 10


def _bump(peak: tuple[int, int], height: float) -> np.ndarray:
    """An overlap's evidence map with one broad bump at ``peak`` (smooth tissue, per-tile speckle)."""
    yy, xx = np.indices((2 * RADIUS + 1,) * 2) - RADIUS
    return height * np.exp(-((yy - peak[0]) ** 2 + (xx - peak[1]) ** 2) / 8.0)


def _registrations(errors: dict, along_px: float) -> dict:
    """Every pair at the truth but the edge link, whose peak lies ``along_px`` along its ridge (y) from it."""
    registrations = {}
    for a in TILES:
        for b in ((a[0] + 1, a[1]), (a[0], a[1] + 1)):
            if b not in errors:
                continue
            nominal = (int(STEP[0]) * (b[0] - a[0]), int(STEP[1]) * (b[1] - a[1]))
            true = tuple(int(v) for v in np.subtract(errors[b], errors[a]))
            if (a, b) == EDGE_LINK:
                best = (true[0] + int(along_px), true[1])
                values, fisher = _ridge(best, 6.0)
                scores, significance = (EvidenceMap(1.0, nominal, values, fisher),), 4.0
            else:
                best = true
                significance = OTHER_SIGNIFICANCE if (a, b) in OTHER_LINKS else 8.0
                scores = (EvidenceMap(1.0, nominal, _bump(best, 2.0 + significance)),)
            sigma = LOOSE_SIGMA_PX if (a, b) == LOOSE_PAIR else (0.1, 0.1)
            registrations[(a, b)] = PairRegistration((float(nominal[0] + best[0]), float(nominal[1] + best[1])),
                                                     0.5, significance, sigma, scores=scores)
    return registrations


@pytest.mark.parametrize("row_error, along_px", [(2, -6), (-3, 7), (6, 0)])
def test_a_lone_edge_link_places_its_side_along_its_ridge_only_where_its_other_overlaps_agree(
        monkeypatch, row_error, along_px):
    """The top row hangs on the edge link (0, 0)-(1, 0) alone (significance 4, ridge along y); its other
    overlaps with the rows below are weak (0.3) and peak at the truth. A peak 6-7 px along the ridge from the
    truth (cases 1 and 2; the stage errs 2-3 px there) lies within the search window and the pairs' departure
    bound along the ridge, so no earlier rule refuses it: main put the row 5.5-6.4 px off, its stage positions
    0.4-2.1 px. It must end no farther from the truth than its stage positions, the link kept across its
    ridge and the row named in the QC record. A right peak where the stage errs 4-5 px along the ridge (case
    3) is kept: every tile within half a pixel of the truth, nothing named."""
    errors = {**BELOW, **{t: (row_error + dy, dx) for t, (dy, dx) in ROW.items()}}
    transform = _estimate(monkeypatch, _registrations(errors, along_px))
    truth = {t: np.multiply(t, STEP) + errors[t] for t in TILES}
    positions = {t: transform.position(t) for t in TILES}
    stage = {t: np.multiply(t, STEP) for t in TILES}
    ours = aligned_errors(positions, truth, sorted(BELOW))
    on_stage = aligned_errors(stage, truth, sorted(BELOW), frame=positions)
    for tile in TILES:
        assert ours[tile] <= on_stage[tile] + 0.5, (tile, ours[tile], on_stage[tile])
    wrong = along_px != 0
    assert all(ours[t] < 0.1 for t in BELOW) if wrong else all(ours[t] < 0.5 for t in TILES)
    record = next(r for r in transform.pairs if (r.a, r.b) == EDGE_LINK)
    assert record.accepted and record.free_direction is not None
    named = [t for t, r in transform.tiles.items() if r.lone_edge_link_along_stage]
    assert named == (sorted(ROW) if wrong else [])
    layout = MosaicGridLayout((1, 4, 4), (3, 3), STEP, tuple(TILES))
    metrics, _, _ = stitch_qc(transform, layout, FusionFlatField("off"), SummarySource("none", "test"))
    assert metrics["n_lone_edge_link_along_stage_tiles"] == len(named)
    assert (record.status == "lone edge link, kept across its ridge only, its tiles on the stage along it") == wrong
