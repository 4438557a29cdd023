"""A joint placement whose link makes the solve drop a clearly more significant pair kept before it is
refused (session stitch52, issue #10)."""

from __future__ import annotations

from test_stitching_matrix import NEVER_WORSE_TOLERANCE_PX, stitch_errors

from linumpy.simulate.stitch_matrix import get_condition


def test_the_searched_link_costing_the_right_pairs_of_tissue_seed_133_is_refused():
    """``tissue changing with depth`` seed 133: (1, 0), placed 0.5 px off by its weak pairs to (0, 0) and
    (1, 1), was linked by the joint placement of (2, 0) through (1, 0)-(2, 0), own significance 0.68, 4.3 px
    off; as a strong pair it made the solve drop the two right pairs, and (1, 0) ended 3.81 px off, 1.52 px
    farther than its stage position. The placement of (2, 0) is refused, flagged, and (1, 0) is back on its
    right pairs."""
    errors, excess, textured, transform = stitch_errors(get_condition("tissue changing with depth"), 133)
    status = {(p.a, p.b): p.status for p in transform.pairs}
    assert status[((1, 0), (2, 0))] == "joint search, costs pairs kept before"
    assert transform.tiles[(1, 0)].costly_link_refused and transform.tiles[(2, 0)].costly_link_refused
    kept = {(p.a, p.b) for p in transform.pairs if p.accepted}
    assert {((0, 0), (1, 0)), ((1, 0), (1, 1))} <= kept
    assert errors[(1, 0)] <= 1.0, errors[(1, 0)]  # 3.81 before
    assert max(excess.values()) <= NEVER_WORSE_TOLERANCE_PX, excess  # +1.52 ((1, 0)) before
    assert max(errors[t] for t in textured) <= 1.5  # 3.81 before


def test_the_one_costly_link_of_overlap_10_seed_113_is_refused_alone():
    """``overlap 10 %`` seed 113: the joint placement of (2, 3) by (1, 3)-(2, 3) (own significance 0.06, 5 px
    off as searched) and (2, 2)-(2, 3) (own 1.84, right) made the solve drop three right pairs kept before
    ((0, 2)-(0, 3), (0, 3)-(1, 3), (1, 1)-(1, 2)); without that one link it keeps them all, and no other link
    of the placement gives them back. Refusing the whole placement left (1, 1)-(1, 2) lost, and then the
    right placement of (2, 2) was refused too: (2, 2) stayed on the stage, 4.43 px off (the slice's
    maximum). Refused alone, the link goes and (2, 2) is placed by pairs near the truth."""
    errors, excess, textured, transform = stitch_errors(get_condition("overlap 10%"), 113)
    assert transform.tiles[(2, 3)].costly_link_refused
    assert transform.tiles[(2, 2)].source == "pairs" and not transform.tiles[(2, 2)].costly_link_refused
    assert errors[(2, 2)] <= 1.5, errors[(2, 2)]  # 4.43 (its stage error) before
    assert max(errors[t] for t in textured) < 4.0  # 4.43 before
    assert max(excess.values()) <= NEVER_WORSE_TOLERANCE_PX, excess
