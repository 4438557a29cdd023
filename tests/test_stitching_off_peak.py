"""A kept link on no loop that a search placed off its own peak: its side on the stage model (session stage10,
foreign a205 349 slice 4)."""

import numpy as np

from linumpy.simulate.stitch_matrix import aligned_errors, get_condition, simulate_mosaic
from linumpy.stitching.estimate import estimate_transform
from linumpy.stitching.global_solve import PairOffset, solve_positions
from linumpy.stitching.off_peak import off_peak_lone_links_to_stage
from linumpy.stitching.pairwise import PairRegistration

STEP = (86.0, 86.0)
TILES = [(r, c) for r in range(2) for c in range(3)]
BRIDGE = ((0, 1), (0, 2))


def _truth() -> dict:
    """Tile positions: the stage's step plus a pixel of stage error (fixed draw)."""
    rng = np.random.default_rng(3)
    return {t: np.array(t, float) * STEP + rng.uniform(-1, 1, 2) for t in TILES}


def _mosaic(bridge_error, own_error, free_direction=None) -> tuple[dict, list[PairOffset], dict]:
    """Right strong pairs within columns 0-1 (a loop) and within column 2; the bridge (0, 1)-(0, 2) kept
    ``bridge_error`` px off the truth, its own registration's peak ``own_error`` px off."""
    truth = _truth()

    def pair(a, b, error=(0.0, 0.0)) -> PairOffset:
        return PairOffset(a, b, tuple(truth[b] - truth[a] + np.asarray(error)), 100.0,
                          free_direction=free_direction if (a, b) == BRIDGE else None)

    pairs = [pair((0, 0), (0, 1)), pair((1, 0), (1, 1)), pair((0, 0), (1, 0)), pair((0, 1), (1, 1)),
             pair((0, 2), (1, 2)), pair(*BRIDGE, bridge_error)]
    own = {(p.a, p.b): PairRegistration(tuple(p.offset), 0.8) for p in pairs}
    own[BRIDGE] = PairRegistration(tuple(truth[(0, 2)] - truth[(0, 1)] + np.asarray(own_error)), 0.8)
    return truth, pairs, own


def _errors(positions: dict, truth: dict) -> np.ndarray:
    """Each tile's distance to the truth once the mean translation is removed, pixels."""
    difference = np.array([positions[t] - truth[t] for t in TILES])
    return np.linalg.norm(difference - difference.mean(axis=0), axis=1)


def test_a_lone_link_placed_off_its_own_peak_puts_its_side_on_the_stage():
    # a205 349 slice 4: (2, 0)-(3, 0), true overlap 0.6 px, own peak on its window's border 2.6 px off, placed by a
    # search 4 px from it, 6.6 px off the truth: both peaks wrong
    truth, pairs, own = _mosaic((5.0, -1.0), (-2.0, 1.0))
    solved = solve_positions(TILES, pairs, STEP)
    assert _errors(solved[0], truth).max() > 2.5  # the premise: the link places its side far off
    (positions, _, kept), to_stage, refused = off_peak_lone_links_to_stage(TILES, solved, own, STEP)
    assert refused == {BRIDGE}
    assert to_stage == {(0, 2), (1, 2)}
    assert BRIDGE not in {(p.a, p.b) for p in kept}
    assert _errors(positions, truth).max() < 2.0


def _searched(pairs: list[PairOffset], significance: float) -> dict:
    """The bridge's registration as the search that placed it left it: its kept offset, ``significance``."""
    bridge = next(p for p in pairs if (p.a, p.b) == BRIDGE)
    return {BRIDGE: PairRegistration(tuple(bridge.offset), 0.8, significance)}


def test_a_lone_link_a_strong_search_placed_off_its_weak_own_peak_stays():
    # ha 465 slice 2: (2, 0)-(2, 1), own peak on its window's border (significance 0) 25.8 px off, placed by the joint
    # search at a peak of significance 7.15, 0.7 px off the truth; its side's stage positions 5.2-5.4 px off
    truth, pairs, own = _mosaic((0.5, -0.5), (-9.0, -23.0))
    solved = solve_positions(TILES, pairs, STEP)
    (positions, _, kept), to_stage, refused = off_peak_lone_links_to_stage(TILES, solved, own, STEP,
                                                                           _searched(pairs, 7.15))
    assert refused == set() and to_stage == set()
    assert _errors(positions, truth).max() < 1.0


def test_a_lone_link_that_shared_a_strong_search_peak_is_refused():
    # c185 507 slice 3 (session joint507): (1, 1)-(1, 2) placed with (0, 2)-(1, 2) and (1, 2)-(1, 3) at one peak of
    # significance 13.31, its own map 1.1 there (own peak 11.6); left alone holding its side 6.8 px off its own peak
    truth, pairs, own = _mosaic((5.0, -1.0), (-2.0, 1.0))
    solved = solve_positions(TILES, pairs, STEP)
    searched = _searched(pairs, 13.31)
    searched[((0, 2), (1, 2))] = PairRegistration(tuple(truth[(1, 2)] - truth[(0, 2)]), 0.8, 13.31)
    (positions, _, kept), to_stage, refused = off_peak_lone_links_to_stage(TILES, solved, own, STEP, searched)
    assert refused == {BRIDGE} and to_stage == {(0, 2), (1, 2)}
    assert _errors(positions, truth).max() < 2.0


def test_a_lone_link_a_weak_search_placed_off_its_own_peak_is_refused():
    # a205 349 slice 4: the search that put (2, 0)-(3, 0) back off its own peak scored 4.4, below a strong link's 6
    truth, pairs, own = _mosaic((5.0, -1.0), (-2.0, 1.0))
    solved = solve_positions(TILES, pairs, STEP)
    assert off_peak_lone_links_to_stage(TILES, solved, own, STEP, _searched(pairs, 4.4))[2] == {BRIDGE}


def test_a_lone_link_on_its_own_peak_stays():
    truth, pairs, own = _mosaic((0.5, 0.3), (-0.8, 0.9))
    solved = solve_positions(TILES, pairs, STEP)
    (positions, _, kept), to_stage, refused = off_peak_lone_links_to_stage(TILES, solved, own, STEP)
    assert refused == set() and to_stage == set()
    assert _errors(positions, truth).max() < 1.0


def test_an_edge_link_off_its_own_peak_is_left_to_the_across_only_rule():
    # c185 350 slice 2: an edge link kept across its ridge only held a piece nearer the truth than its stage positions
    truth, pairs, own = _mosaic((0.0, 6.0), (0.0, -3.0), free_direction=(0.0, 1.0))
    solved = solve_positions(TILES, pairs, STEP)
    assert off_peak_lone_links_to_stage(TILES, solved, own, STEP)[2] == set()


def test_a_link_the_sides_other_overlaps_prefer_stays():
    # matrix "overlap 10%" seed 166: (2, 0), placed by three links, is held at the end by (2, 0)-(2, 1) alone,
    # 12.8 px off its own peak and 1.3 px off the truth; its other overlaps prefer that placement to the stage's
    mosaic = simulate_mosaic(get_condition("overlap 10%"), 166)
    transform = estimate_transform(mosaic.projections(), mosaic.condition.tile_step_px)
    errors = aligned_errors({t: transform.position(t) for t in mosaic.truth}, mosaic.truth)
    stage = aligned_errors(mosaic.stage, mosaic.truth)
    assert not any(record.off_peak_link_to_stage for record in transform.tiles.values())
    assert transform.tiles[(2, 0)].source == "pairs"
    assert errors[(2, 0)] < 1.5 < stage[(2, 0)]
