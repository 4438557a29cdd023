"""A kept link on no loop outvoted by the candidates joining its two blocks (session sliver10c, foreign a205 335 s4)."""

import numpy as np

from linumpy.stitching.global_solve import PairOffset, solve_positions
from linumpy.stitching.outvoted import outvoted_lone_links

STEP = (83.0, 83.0)
TILES = [(r, c) for r in range(3) for c in range(4)]


def _truth() -> dict:
    """Tile positions: the stage's step plus a few pixels of stage error (fixed draw)."""
    rng = np.random.default_rng(7)
    return {t: np.array(t, float) * STEP + rng.uniform(-4, 4, 2) for t in TILES}


def _pair(truth: dict, a, b, error=(0.0, 0.0), significance=12.0) -> PairOffset:
    """A pair measured ``error`` px off the truth, weighted like a registration of that significance."""
    sigma = 1 / significance + 0.05
    return PairOffset(a, b, tuple(truth[b] - truth[a] + np.asarray(error)), 1 / sigma**2,
                      strong=significance >= 3)


def _mosaic(crossing_errors: dict) -> tuple[dict, list[PairOffset], dict]:
    """Two blocks (columns 0-1 and 2-3) of right strong pairs, joined by the row pairs (r, 1)-(r, 2):
    ``crossing_errors`` maps a row to ``(error, significance)`` of its crossing pair."""
    truth = _truth()
    pairs = [_pair(truth, (r, c), (r, c + 1)) for r in range(3) for c in (0, 2)]
    pairs += [_pair(truth, (r, c), (r + 1, c)) for r in range(2) for c in range(4)]
    pairs += [_pair(truth, (r, 1), (r, 2), error, significance) for r, (error, significance) in crossing_errors.items()]
    significance = {(p.a, p.b): 12.0 for p in pairs}
    significance.update({((r, 1), (r, 2)): s for r, (_, s) in crossing_errors.items()})
    return truth, pairs, significance


def _errors(positions: dict, truth: dict) -> np.ndarray:
    """Each tile's distance to the truth once the mean translation is removed, pixels."""
    difference = np.array([positions[t] - truth[t] for t in TILES])
    return np.linalg.norm(difference - difference.mean(axis=0), axis=1)


def test_a_strong_wrong_link_outvoted_by_two_agreeing_weak_ones_is_refused():
    # a205 335 slice 4: the strong (4, 3)-(4, 4) 4.9 px off alone joined two blocks; weak pairs near the truth that
    # join the same blocks were dropped one after the other by the solve's largest-residual pruning
    truth, pairs, significance = _mosaic({0: ((3.0, -4.0), 6.3), 1: ((0.3, -0.2), 2.6), 2: ((-0.2, 0.3), 2.4)})
    solved = solve_positions(TILES, pairs, STEP)
    assert ((0, 1), (0, 2)) in {(p.a, p.b) for p in solved[2]}
    assert _errors(solved[0], truth).max() > 2.0  # the premise: the solve keeps the wrong link
    (positions, _, kept), refused = outvoted_lone_links(TILES, solved, pairs, significance, STEP)
    assert list(refused) == [((0, 1), (0, 2))]
    assert sorted(refused[((0, 1), (0, 2))]) == [((1, 1), (1, 2)), ((2, 1), (2, 2))]
    assert ((0, 1), (0, 2)) not in {(p.a, p.b) for p in kept}
    assert _errors(positions, truth).max() < 0.5


def test_a_right_strong_link_stands_against_weak_ones_that_disagree_with_each_other():
    truth, pairs, significance = _mosaic({0: ((0.1, 0.0), 6.3), 1: ((4.0, 3.0), 2.6), 2: ((-3.0, -4.0), 2.4)})
    solved = solve_positions(TILES, pairs, STEP)
    (positions, _, kept), refused = outvoted_lone_links(TILES, solved, pairs, significance, STEP)
    assert refused == {}
    assert _errors(positions, truth).max() < 0.5


def test_one_weak_link_is_no_vote():
    truth, pairs, significance = _mosaic({0: ((3.0, -4.0), 6.3), 1: ((0.3, -0.2), 2.6)})
    solved = solve_positions(TILES, pairs, STEP)
    assert outvoted_lone_links(TILES, solved, pairs, significance, STEP)[1] == {}
