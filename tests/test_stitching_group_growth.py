"""Tiles left on the stage although their pairs were right (session stitch40, issue #10).

Both cases are tuning seeds of stitch40 (``benchmarks/README.md``); the held-out seeds are in
the benchmark record, not here.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_stitching_matrix import stitch_errors

from linumpy.simulate.stitch_matrix import get_condition


def _stitched(name: str, seed: int):
    return stitch_errors(get_condition(name), seed)


@pytest.mark.xfail(strict=True, reason=(
    "known stitcher miss on the redrawn mosaic (speckle without bright borders): the group's three right "
    "links leave it on the stage (slice 0.40 -> 1.34 px, none worse) (benchmarks/README.md, session "
    "wrapspk, section 3)"))
def test_a_weak_right_pair_grows_the_group_of_tiles_left_out():
    """``speckle per tile`` seed 94: tiles (2, 3), (3, 2), (3, 3) are joined by (2, 3)-(3, 3)
    (significance 5.7) and (3, 2)-(3, 3) (1.5, a weak pair on no loop), both right, and to the
    placed tiles by weak links only. Solved alone the weak pair was dropped, the group of two
    reached a joint significance of 0.4 and all three stayed on the stage, 1.4-4.6 px off (slice
    mean 1.30 px). Grown by the weak pair, the group of three is placed (joint significance 2.2):
    each within 1 px (measured 0.48-0.93), none farther from the truth than its stage position."""
    ours, excess, textured, transform = _stitched("speckle per tile", 94)
    group = [(2, 3), (3, 2), (3, 3)]
    assert all(transform.tiles[t].source == "pairs" for t in group)
    assert max(ours[t] for t in group) <= 1.0, ours
    assert np.mean([ours[t] for t in textured]) <= 0.5  # measured 0.40 (1.30 before)
    assert max(excess.values()) <= 0.0, excess
    status = {(p.a, p.b): p.status for p in transform.pairs}
    assert status[((2, 3), (3, 3))] == status[((3, 2), (3, 3))] == "kept"


@pytest.mark.xfail(strict=True, reason=(
    "known stitcher failure on the redrawn mosaic (speckle without bright borders): (2, 3)'s right "
    "placement refused (far weak peak, tied tile), slice 4.16 px, (2, 1) 1.23 px over its stage "
    "(benchmarks/README.md, session wrapspk, section 3)"))
def test_a_tile_whose_neighbour_was_placed_by_a_corroborated_peak_is_searched():
    """``stage error +-8 px + drift`` seed 66: (3, 3)'s one usable link, to (2, 3), is right to
    0.5 px at significance 3.0 (on no loop, it needed 3); (2, 3) itself was placed only by the
    corroborated search, after the joint search, so (3, 3) stayed on the stage 11.3 px off and
    pulled the slice's frame (every registered tile 1.5-1.9 px off, mean 2.96 px). Searched once
    (2, 3) is placed (joint significance 3.3), it is within 1.5 px (measured 1.11), the registered
    tiles within 1.1 px, none farther than the stage."""
    ours, excess, textured, transform = _stitched("stage error", 66)
    assert transform.tiles[(3, 3)].source == "pairs" and ours[(3, 3)] <= 1.5, ours
    status = {(p.a, p.b): p.status for p in transform.pairs}
    assert status[((2, 3), (3, 3))] == "kept (joint search)"
    assert max(ours[t] for t in textured if t != (3, 2)) <= 1.2  # (3, 2): no link holds its truth
    assert max(excess.values()) <= 0.0, excess
