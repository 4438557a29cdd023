"""Unchecked far confident pairs are refused; a clearly weaker searched link gives way (session stitch44);
a far weak peak is refused (session stitch45, issue #10)."""

from __future__ import annotations

import numpy as np
import pytest
from test_stitching_matrix import NEVER_WORSE_TOLERANCE_PX, stitch_errors

from linumpy.simulate.stitch_matrix import get_condition
from linumpy.stitching.global_solve import PairOffset, solve_positions
from linumpy.stitching.link_conflicts import swap_clearly_weaker

STEP = (100.0, 100.0)


def _square_grid_with_a_wrong_link(wrong_significance: float):
    """A 3 x 3 grid whose tiles sit 1 px off the nominal grid in a pattern; every pair right and kept
    but those of (0, 2): its kept link to (0, 1) 3 px off in x, its right link to (1, 2) dropped."""
    truth = {(r, c): np.array([100.0 * r + (r * c) % 2, 100.0 * c + (r + c) % 2]) for r in range(3) for c in range(3)}

    def pair(a, b, error=(0.0, 0.0)):
        return PairOffset(a, b, tuple(truth[b] - truth[a] + error), 1.0)

    main = [((0, 0), (0, 1)), ((0, 0), (1, 0)), ((0, 1), (1, 1)), ((1, 0), (1, 1)), ((1, 1), (1, 2)),
            ((1, 0), (2, 0)), ((1, 1), (2, 1)), ((1, 2), (2, 2)), ((2, 0), (2, 1)), ((2, 1), (2, 2))]
    kept = [pair(a, b) for a, b in main] + [pair((0, 1), (0, 2), (0.0, 3.0))]
    solved = solve_positions(sorted(truth), kept, STEP)
    assert len(solved[2]) == len(kept)  # the wrong link is the only link of (0, 2): nothing checks it
    dropped = [pair((0, 2), (1, 2))]
    significance = {(p.a, p.b): 5.0 for p in kept} | {((0, 1), (0, 2)): wrong_significance, ((0, 2), (1, 2)): 2.5}
    return truth, solved, dropped, significance


def test_a_dropped_link_clearly_more_significant_replaces_the_one_link_it_checks():
    """The right link (own significance 2.5) takes the place of the wrong one (0.5) it alone checks:
    (0, 2) moves from 3 px off to the truth; a wrong link of like significance (1.5) stays."""
    truth, solved, dropped, significance = _square_grid_with_a_wrong_link(0.5)
    before = solved[0][(0, 2)] - solved[0][(0, 0)] - (truth[(0, 2)] - truth[(0, 0)])
    assert np.max(np.abs(before)) > 2.5
    (positions, _, kept), swaps = swap_clearly_weaker(sorted(truth), solved, dropped, significance, STEP)
    assert swaps == [(((0, 2), (1, 2)), ((0, 1), (0, 2)))]
    assert ((0, 1), (0, 2)) not in {(p.a, p.b) for p in kept}
    after = positions[(0, 2)] - positions[(0, 0)] - (truth[(0, 2)] - truth[(0, 0)])
    assert np.max(np.abs(after)) < 0.01  # the stage prior pulls by ~5e-4 px

    truth, solved, dropped, significance = _square_grid_with_a_wrong_link(1.5)
    assert swap_clearly_weaker(sorted(truth), solved, dropped, significance, STEP) == (solved, [])


@pytest.mark.xfail(strict=True, reason=(
    "known stitcher failure on the redrawn mosaic (speckle without bright borders): the far pair (5, "
    "1)-(5, 2), 3.6 px off, kept by the corroborated search; the empty (5, 2) 2.63 px over its stage "
    "(benchmarks/README.md, session wrapspk, section 3)"))
def test_the_unchecked_far_pair_of_6x6_seed_110_is_refused():
    """``6x6`` seed 110 (stitch43's held-out, tuning here): the empty (5, 2) hung on (5, 1)-(5, 2),
    significance 2.4, 19 px from the stage model's step, 20.3 px off, kept on a loop of weak links
    that does not check its departure: 18.7 px farther from the truth than its stage position, and
    (5, 3) next to it 6.0 px. Refused: both on the stage model, no tile worse than the stage."""
    ours, excess, _, transform = stitch_errors(get_condition("6x6"), 110)
    status = {(p.a, p.b): p.status for p in transform.pairs}
    assert status[((5, 1), (5, 2))] == "unchecked, departs beyond the stage's error"
    assert transform.tiles[(5, 2)].far_link_refused and transform.tiles[(5, 1)].far_link_refused
    assert max(excess[t] for t in ((5, 2), (5, 3))) <= 1e-9, excess  # on the stage (0 to rounding); 18.71 and 6.00 before
    assert max(excess.values()) <= NEVER_WORSE_TOLERANCE_PX, excess
    assert ours[(5, 2)] <= 3.0  # its stage position: 1.45 px off (20.97 before)


def test_the_corner_of_6x6_seed_107_is_hung_on_its_significant_link():
    """``6x6`` seed 107: the corner {(4, 4), (4, 5), (5, 4), (5, 5)} hung on the joint-search edge link
    (3, 4)-(4, 4) (own significance 0.55, 3.5 px off across its ridge) while the right (3, 5)-(4, 5)
    (own 2.46) was dropped: (5, 4) 2.8 px, (4, 5) 1.4 px, (5, 5) 1.0 px farther than the stage; swapped,
    the corner came within 1 px of the truth. Since the speckle has no bright tile border (session wrapspk)
    (3, 4)-(4, 4) is not significant (0.31) and the joint search keeps (3, 5)-(4, 5) (2.64) from the start:
    no swap is needed, the corner within 0.6 px (measured 0.17-0.57). The swap itself:
    ``test_a_dropped_link_clearly_more_significant_replaces_the_one_link_it_checks``."""
    ours, excess, _, transform = stitch_errors(get_condition("6x6"), 107)
    status = {(p.a, p.b): p.status for p in transform.pairs}
    assert status[((3, 5), (4, 5))] == "kept (joint search)"
    assert not any(p.accepted for p in transform.pairs if (p.a, p.b) == ((3, 4), (4, 4)))
    assert max(ours[t] for t in ((4, 4), (4, 5), (5, 4), (5, 5))) <= 1.0  # measured 3.73 before the swap
    assert max(excess.values()) <= NEVER_WORSE_TOLERANCE_PX, excess


def test_the_far_weak_peak_of_6x6_seed_114_is_refused():
    """``6x6`` seed 114 (stitch44's held-out, tuning for stitch45): the corroborated search placed (1, 2) at
    joint significance 1.5 on two links each 11 px off in x, 10.0 px from its stage-model position while
    the placed tiles lie at most 5.7 px from theirs: 6.88 px farther from the truth than its stage
    position. Refused (beyond the placed tiles' deviation + 2 px): (1, 2) on the stage model, no tile
    worse than the stage."""
    ours, excess, _, transform = stitch_errors(get_condition("6x6"), 114)
    assert transform.tiles[(1, 2)].far_weak_peak_refused and transform.tiles[(1, 2)].source == "stage"
    assert excess[(1, 2)] <= 0.0, excess  # +6.88 before
    assert max(excess.values()) <= NEVER_WORSE_TOLERANCE_PX, excess
    assert ours[(1, 2)] <= 4.0  # its stage position: 3.71 px off (10.71 before)
