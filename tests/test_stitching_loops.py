"""A loop that does not close moves its cheapest pair to another peak (linumpy.stitching.loops)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from linumpy.stitching.global_solve import PairOffset, leave_one_out_offsets, solve_positions
from linumpy.stitching.loops import MAX_SOLE_SWITCH_COST, MAX_SWITCH_COST, switch_conflicting_peaks
from linumpy.stitching.pair_terms import SIGMA_FLOOR_PX, pair_offset
from linumpy.stitching.pairwise import EvidenceMap, PairRegistration

RADIUS = 8
STEP = (50.0, 50.0)
TILES = [(0, 0), (0, 1), (1, 0), (1, 1)]
NOMINAL = {((0, 0), (0, 1)): (0, 50), ((0, 0), (1, 0)): (50, 0),
           ((0, 1), (1, 1)): (50, 0), ((1, 0), (1, 1)): (0, 50)}
TRUTH = {(0, 0): (0, 0), (0, 1): (0, 46), (1, 0): (56, -4), (1, 1): (56, 52)}


def _registration(pair, peaks, sigma):
    """A registration whose evidence map holds ``peaks`` ``{offset: height}``; the highest is measured."""
    values = np.zeros((2 * RADIUS + 1,) * 2)
    yy, xx = np.indices(values.shape)
    for offset, height in peaks.items():
        y, x = np.subtract(offset, NOMINAL[pair]) + RADIUS
        values = np.maximum(values, height * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 2.0))
    best = max(peaks, key=peaks.get)
    return PairRegistration((float(best[0]), float(best[1])), 0.9, significance=3.0, sigma_px=(sigma, sigma),
                            scores=(EvidenceMap(1.0, NOMINAL[pair], values),))


def _true_offset(pair):
    return tuple(int(v) for v in np.subtract(TRUTH[pair[1]], TRUTH[pair[0]]))


def _offsets(registrations):
    return [PairOffset(a, b, r.offset, tuple(1 / s**2 for s in r.sigma_px))
            for (a, b), r in registrations.items()]


def test_leave_one_out_predicts_each_pair_from_the_others():
    pairs = [PairOffset(a, b, _true_offset((a, b)), 1.0) for a, b in NOMINAL]
    pairs[1] = PairOffset((0, 0), (1, 0), (52.0, -1.0), 1.0)
    predicted, covariance = leave_one_out_offsets(TILES, pairs, STEP)
    np.testing.assert_allclose(predicted[1], (56, -4), atol=0.05)  # the prior pulls a little
    np.testing.assert_allclose(predicted[0], np.add(pairs[0].offset, (-4, 3)), atol=0.05)
    # each predicted through the three others of the square, variance 1 each
    np.testing.assert_allclose(covariance, np.broadcast_to(3 * np.eye(2), (4, 2, 2)), atol=0.01)


def test_wrong_precise_pair_moves_to_its_rival_peak_not_the_right_imprecise_one():
    # (0, 0)-(1, 0): best peak wrong (52, -1), the true (56, -4) 0.3 below; precise (sigma 0.2 px).
    # (0, 1)-(1, 1): right but imprecise (sigma 1 px), a rival 2 below; the others right and strong.
    registrations = {
        ((0, 0), (0, 1)): _registration(((0, 0), (0, 1)), {(0, 46): 20.0}, 0.05),
        ((0, 0), (1, 0)): _registration(((0, 0), (1, 0)), {(52, -1): 10.3, (56, -4): 10.0}, 0.2),
        ((0, 1), (1, 1)): _registration(((0, 1), (1, 1)), {(56, 6): 6.0, (49, 2): 4.0}, 1.0),
        ((1, 0), (1, 1)): _registration(((1, 0), (1, 1)), {(0, 56): 12.0}, 1.0),
    }
    pairs = _offsets(registrations)
    # the weighted solve alone keeps the precise wrong pair and drops a right one
    _, _, kept = solve_positions(TILES, pairs, STEP)
    assert len(kept) == 3 and ((0, 0), (1, 0)) in {(p.a, p.b) for p in kept}

    def move(switch):
        return PairOffset(*switch.pair, tuple(float(v) for v in switch.offset), 1.0, strong=False)

    fixed, switches = switch_conflicting_peaks(TILES, pairs, registrations, STEP, move)
    assert list(switches) == [((0, 0), (1, 0))]
    assert switches[((0, 0), (1, 0))].offset == (56, -4)
    assert abs(switches[((0, 0), (1, 0))].cost - 0.3) < 1e-6
    positions, _, kept = solve_positions(TILES, fixed, STEP)
    assert len(kept) == 4
    for tile in TILES:
        np.testing.assert_allclose(positions[tile] - positions[(0, 0)], TRUTH[tile], atol=0.01)


def test_conflict_without_a_cheap_rival_is_left_to_the_solve():
    registrations = {
        ((0, 0), (0, 1)): _registration(((0, 0), (0, 1)), {(0, 46): 20.0}, 0.05),
        ((0, 0), (1, 0)): _registration(((0, 0), (1, 0)), {(52, -1): 10.3, (56, -4): 7.0}, 0.2),
        ((0, 1), (1, 1)): _registration(((0, 1), (1, 1)), {(56, 6): 6.0}, 1.0),
        ((1, 0), (1, 1)): _registration(((1, 0), (1, 1)), {(0, 56): 12.0}, 1.0),
    }
    pairs = _offsets(registrations)
    fixed, switches = switch_conflicting_peaks(TILES, pairs, registrations, STEP, lambda s: None)
    assert switches == {} and fixed == pairs


SOLE_PEAKS = {(52, -1): 10.3, (56, -4): 7.8}  # the wrong best peak; the true one 2.5 below (cost > MAX_SWITCH_COST)
#: the right pairs' measured offsets, each a few tenths of a pixel off: the loop misses closing by 0.8 px
SLIGHTLY_OFF = {((0, 0), (0, 1)): (0.3, 46.2), ((0, 1), (1, 1)): (56.3, 6.2), ((1, 0), (1, 1)): (-0.2, 56.2)}


def _sole_rival_loop(rival_ncc):
    """The square with one wrong pair whose only rival is at the truth, its NCC ``rival_ncc`` (best peak 0.81)."""
    wrong = ((0, 0), (1, 0))
    registrations = {pair: replace(_registration(pair, {_true_offset(pair): 20.0}, 0.05), offset=offset,
                                   significance=8.0)
                     for pair, offset in SLIGHTLY_OFF.items()}
    registrations[wrong] = replace(_registration(wrong, SOLE_PEAKS, 0.06), ncc=0.81,
                                   candidates=(((52, -1), 0.81), ((56, -4), rival_ncc)))
    return registrations


def _refined(registrations):
    """The caller's refinement: the new peak exact, its fit's error 0.06 px, weighted as a pair of its significance."""
    def move(switch):
        moved = replace(registrations[switch.pair], offset=tuple(float(v) for v in switch.offset),
                        sigma_px=(0.06, 0.06), significance=switch.significance)
        return pair_offset(*switch.pair, moved, False)
    return move


def test_sole_rival_at_least_as_good_a_match_moves_and_its_loop_keeps_it():
    registrations = _sole_rival_loop(0.83)
    pairs = [pair_offset(a, b, r, r.significance >= 3) for (a, b), r in registrations.items()]
    fixed, switches = switch_conflicting_peaks(TILES, pairs, registrations, STEP, _refined(registrations))
    assert list(switches) == [((0, 0), (1, 0))] and switches[((0, 0), (1, 0))].offset == (56, -4)
    assert MAX_SWITCH_COST < switches[((0, 0), (1, 0))].cost <= MAX_SOLE_SWITCH_COST
    # the right pairs' errors leave the moved pair a residual far beyond its fit's error, within its honest one
    positions, _, kept = solve_positions(TILES, fixed, STEP)
    assert len(kept) == 4
    for tile in TILES:
        np.testing.assert_allclose(positions[tile] - positions[(0, 0)], TRUTH[tile], atol=0.7)
    # tested on its fit's error the same pair was dropped: the loop broken again
    as_fitted = [replace(p, test_weight=tuple(1 / (0.06**2 + SIGMA_FLOOR_PX**2) for _ in range(2)))
                 if (p.a, p.b) in switches else p for p in fixed]
    assert len(solve_positions(TILES, as_fitted, STEP)[2]) == 3


def test_sole_rival_worse_matched_than_the_best_peak_stays():
    registrations = _sole_rival_loop(0.79)
    pairs = [pair_offset(a, b, r, r.significance >= 3) for (a, b), r in registrations.items()]
    fixed, switches = switch_conflicting_peaks(TILES, pairs, registrations, STEP, _refined(registrations))
    assert switches == {} and fixed == pairs


def _with_rival_of_right_pair(registrations, height):
    """``registrations`` with a rival peak of ``height`` in (1, 0)-(1, 1)'s map where the wrong pair predicts it.

    Its best peak is 20 at the truth (0, 56); the wrong (0, 0)-(1, 0) carried round the square predicts (4, 53):
    the pair is in conflict too, and its rival costs ``20 - height``.
    """
    pair = ((1, 0), (1, 1))
    moved = _registration(pair, {_true_offset(pair): 20.0, (4, 53): height}, 0.05)
    return {**registrations, pair: replace(moved, offset=registrations[pair].offset, significance=8.0)}


def test_sole_rival_is_not_blocked_by_a_dearer_rival_of_a_right_pair():
    # foreign c185 505 slice 0: the wrong pair's rival at the truth cost 2.45, a right pair's at its (wrong)
    # prediction 8.89; counted as two rivals, neither moved and the wrong pair was kept
    registrations = _with_rival_of_right_pair(_sole_rival_loop(0.83), 11.0)
    pairs = [pair_offset(a, b, r, r.significance >= 3) for (a, b), r in registrations.items()]
    fixed, switches = switch_conflicting_peaks(TILES, pairs, registrations, STEP, _refined(registrations))
    assert list(switches) == [((0, 0), (1, 0))] and switches[((0, 0), (1, 0))].offset == (56, -4)
    positions, _, kept = solve_positions(TILES, fixed, STEP)
    assert len(kept) == 4
    for tile in TILES:
        np.testing.assert_allclose(positions[tile] - positions[(0, 0)], TRUTH[tile], atol=0.7)


def test_two_affordable_rivals_leave_the_conflict_to_the_solve():
    registrations = _with_rival_of_right_pair(_sole_rival_loop(0.83), 17.5)
    pairs = [pair_offset(a, b, r, r.significance >= 3) for (a, b), r in registrations.items()]
    fixed, switches = switch_conflicting_peaks(TILES, pairs, registrations, STEP, _refined(registrations))
    assert switches == {} and fixed == pairs
