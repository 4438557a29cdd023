"""A slice whose mosaic is broken (its two halves a few pixels apart) does not move the slices below it.

The middle slice of three has its right half displaced by :data:`BREAK_PX`
(a tile its stitch misplaced), and its texture is strong in its right half
at its top and in its left half at its bottom: the step from the slice above
peaks on the right half, the step to the slice below on the left half, and
that peak alone would put the slice below :data:`BREAK_PX` off the slice
above (odd2 359's slices 3 and 4). Read where the step above placed the
middle slice (:mod:`linumpy.stack.anchors`), the slice below lands where the
truth puts it; true shifts with clear, whole overlaps stay as the peaks say.
And a lateral peak that matches the overlap no better than where the motors
put the slice (a ghost of the tissue as strong as the tissue) is not used: the
motors place the slice, flagged.
"""

from __future__ import annotations

import numpy as np

from linumpy.stack.quality import placement_flags, stack_metrics
from linumpy.stack.stacking import StackParameters, plan_stack
from test_stack import LATERAL_UM, MARGIN, SURFACE_PX, USEFUL_PX, make_brain, relative_truth
from test_stack_coarse import PlaneCounter, two_level_volumes

#: The middle slice's right half is read this far (y, x pixels) from where its left half says.
BREAK_PX = (3, -4)
#: Texture kept in a half where the other half dominates the overlap's peak.
WEAK = 0.35
SIZE = 256


def broken_middle(brain) -> None:
    """Slice 1's right half cut from the phantom :data:`BREAK_PX` away, its halves' texture swapped with depth."""
    middle = brain.slices[1]
    depth, (dy, dx) = brain.depths_px[1], brain.shifts_px[1]
    half = SIZE // 2
    rows = slice(MARGIN + dy + BREAK_PX[0], MARGIN + dy + BREAK_PX[0] + SIZE)
    columns = slice(MARGIN + dx + BREAK_PX[1] + half, MARGIN + dx + BREAK_PX[1] + SIZE)
    right = brain.phantom[depth : depth + middle.shape[0] - SURFACE_PX, rows, columns]
    middle[SURFACE_PX:, :, half:] = right
    top = slice(SURFACE_PX, SURFACE_PX + USEFUL_PX // 2)
    bottom = slice(SURFACE_PX + USEFUL_PX // 2, None)
    for planes, weak in ((top, slice(0, half)), (bottom, slice(half, None))):
        middle[planes, :, weak] = 1 + WEAK * (middle[planes, :, weak] - 1)


def placed_errors_px(plan, brain) -> np.ndarray:
    origins = np.array([s["origin_um"] for s in plan.record["slices"]])
    return (origins - origins[0] - relative_truth(brain))[:, 1:] / LATERAL_UM


def test_a_broken_middle_slice_does_not_move_the_slice_below():
    brain = make_brain(steps_px=(20, 20), shifts_px=((0, 0), (3, -2), (5, 1)), size=SIZE)
    broken_middle(brain)
    plan = plan_stack(two_level_volumes(brain.slices, PlaneCounter()), brain.motors_mm, brain.thickness_um,
                      LATERAL_UM)
    errors = placed_errors_px(plan, brain)
    below = plan.record["slices"][2]
    anchor = below["lateral_anchor"]
    assert below["used_registration_lateral"]
    assert anchor["anchored"] and anchor["agreeing"] < anchor["blocks"]
    # the middle slice is placed on its right half (its step's peak), the slice below on the same part of it
    assert np.abs(errors[1] - BREAK_PX).max() <= 0.5
    assert np.abs(errors[2]).max() <= 0.5
    # the whole overlap's peak alone would have put it more than half the break off (toward it)
    peak_error = ((np.asarray(anchor["peak_step_yx_um"]) - np.subtract(*np.array(
        [s["origin_um"][1:] for s in plan.record["slices"][2:0:-1]]))) / LATERAL_UM)
    assert np.dot(peak_error, BREAK_PX) > 0.5 * np.dot(BREAK_PX, BREAK_PX)
    assert [f for f in anchor_flags(plan) if f.startswith("slice 2: ") and "read where the step above" in f]


def anchor_flags(plan) -> list[str]:
    return [f for f in placement_flags(stack_metrics(plan.record, LATERAL_UM)) if "confident blocks" in f]


def test_true_shifts_with_whole_overlaps_stay_as_their_peaks_say():
    brain = make_brain(steps_px=(20, 21, 19), shifts_px=((0, 0), (3, -2), (5, 1), (-2, 4)), size=SIZE)
    plan = plan_stack(two_level_volumes(brain.slices, PlaneCounter()), brain.motors_mm, brain.thickness_um,
                      LATERAL_UM)
    assert np.abs(placed_errors_px(plan, brain)).max() <= 0.1
    anchors = [s["lateral_anchor"] for s in plan.record["slices"][2:]]
    assert all(a is not None and not a["anchored"] and a["agreeing"] == a["blocks"] > 0 for a in anchors)
    assert not anchor_flags(plan)



#: Where the second slice's ghost sits (y, x pixels) from its true content.
GHOST_PX = (0, 5)


def ghosted_brain(ghost: float = 1.0):
    """Two slices, no lateral shift; the second one's tissue also holds, ``ghost`` times as strong, the same
    tissue :data:`GHOST_PX` away: its overlap peaks at the ghost about as well as at the truth."""
    brain = make_brain(steps_px=(20,), shifts_px=((0, 0), (0, 0)), size=SIZE)
    second, depth = brain.slices[1], brain.depths_px[1]
    planes = slice(depth, depth + second.shape[0] - SURFACE_PX)
    ghosted = brain.phantom[planes, MARGIN + GHOST_PX[0] : MARGIN + GHOST_PX[0] + SIZE,
                            MARGIN + GHOST_PX[1] : MARGIN + GHOST_PX[1] + SIZE]
    second[SURFACE_PX:] = 1 + (second[SURFACE_PX:] - 1 + ghost * (ghosted - 1)) / (1 + ghost)
    return brain


def test_a_lateral_peak_no_better_than_the_motors_leaves_the_motors_position():
    brain = ghosted_brain()
    plan = plan_stack(two_level_volumes(brain.slices, PlaneCounter()), brain.motors_mm, brain.thickness_um,
                      LATERAL_UM)
    entry = plan.record["slices"][1]
    registration, support = entry["registration"], entry["lateral_support"]
    # the overlap matched well (not refused for confidence) at a peak on the ghost, the motors as well
    assert registration["lateral_confidence"] >= StackParameters().min_confidence
    assert np.abs(registration["shift_yx_px"]).max() >= 2
    assert not support["beats_motor"] and not entry["used_registration_lateral"]
    assert np.abs(placed_errors_px(plan, brain)).max() <= 0.1  # the motors' position: the truth
    assert [f for f in placement_flags(stack_metrics(plan.record, LATERAL_UM))
            if f.startswith("slice 1: ") and "placed laterally by the motors" in f]
