"""A slice whose strong pairs form only groups smaller than a quarter of its tiles (10 % overlap):
the largest one anchors the searches, and everything goes back to the stage if they do not grow it
(linumpy.stitching.joint_placement.strong_seed, drop_small_group)."""

from __future__ import annotations

import numpy as np
import pytest

import linumpy.stitching.estimate as estimate
import linumpy.stitching.joint_placement as joint_placement
import linumpy.stitching.settle as settle
from linumpy.stitching.pair_terms import neighbour_pairs
from linumpy.stitching.pairwise import EvidenceMap, PairRegistration

RADIUS = 10
STEP = (100.0, 100.0)
TILES = [(r, c) for r in range(4) for c in range(4)]
#: True positions minus the stage's (the nominal grid), whole pixels.
ERRORS = {t: np.array([(3 * t[0] + 2 * t[1]) % 5 - 2, (2 * t[0] + 3 * t[1]) % 5 - 2]) for t in TILES}
STRONG = {((0, 0), (0, 1)), ((0, 1), (1, 1)), ((2, 2), (2, 3))}


def _map(peaks):
    """An evidence map over offsets ``nominal + d``: Gaussian bumps ``{d: height}``."""
    yy, xx = np.indices((2 * RADIUS + 1,) * 2) - RADIUS
    return sum(h * np.exp(-((yy - d[0]) ** 2 + (xx - d[1]) ** 2) / 2.0) for d, h in peaks.items())


def _registrations(informative: bool) -> dict:
    """Every neighbour pair: three strong ones (groups of 3 and 2 tiles); the others are below the bar of
    a candidate (significance 0.3: no loop of candidates places anything), their evidence peak (4.0) at
    the truth if ``informative`` (the searches, which sum the maps, can use them), else holding no
    information (two bumps of 0.8 and 0.7, one 7 px off the truth)."""
    registrations = {}
    for a, b in neighbour_pairs(TILES):
        nominal = (int(STEP[0]) * (b[0] - a[0]), int(STEP[1]) * (b[1] - a[1]))
        true = tuple(int(v) for v in ERRORS[b] - ERRORS[a])
        strong = (a, b) in STRONG
        best = true if strong or informative else (true[0] + 7, true[1] - 7)
        peaks = {best: 9.0 if strong else 4.0 if informative else 0.8, (-true[0] - 8, 8): 1.0 if informative else 0.7}
        registrations[(a, b)] = PairRegistration(
            (float(nominal[0] + best[0]), float(nominal[1] + best[1])), 0.5, 6.0 if strong else 0.3,
            (0.1, 0.1), scores=(EvidenceMap(1.0, nominal, _map(peaks)),))
    return registrations


@pytest.fixture
def stitched(monkeypatch):
    def run(informative: bool):
        registrations = _registrations(informative)
        monkeypatch.setattr(estimate, "register_neighbours",
                            lambda projections, *args, **kwargs: (dict.fromkeys(TILES), registrations))
        for module in (estimate, joint_placement):
            monkeypatch.setattr(module, "refine_subpixel", lambda a, b, offset: (tuple(map(float, offset)), (0.1, 0.1)))
        # the fit mocked exact: no whole pixel left by it to settle (session flat10b)
        monkeypatch.setattr(settle, "settled_search_offset", lambda a, b, registration: None)
        return estimate.estimate_transform(dict.fromkeys(TILES, np.zeros((4, 4))), STEP)
    return run


def test_a_small_strong_group_anchors_the_searches(stitched):
    transform = stitched(informative=True)
    assert all(record.source == "pairs" for record in transform.tiles.values())
    relative = {t: np.subtract(transform.position(t), transform.position((0, 0))) for t in TILES}
    for tile in TILES:
        expected = np.multiply(tile, STEP) + ERRORS[tile] - ERRORS[(0, 0)]
        assert np.abs(relative[tile] - expected).max() < 0.05, (tile, relative[tile])


def test_a_small_group_the_searches_do_not_grow_goes_back_to_the_stage(stitched):
    transform = stitched(informative=False)
    assert all(record.source == "stage" for record in transform.tiles.values())
    for tile in TILES:
        assert np.abs(np.subtract(transform.position(tile), transform.stage_model.position(tile))).max() < 1e-6
