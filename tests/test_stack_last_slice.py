"""The last slice's depth when its motor reading jumped and its overlap matches poorly as a whole.

A motor reading of the last slice off by about half a thickness is a jump no
later step cancels (:func:`linumpy.stack.placement.find_encoder_glitches`
cannot see it). When the new slice's mosaic sits off the previous one by a few
pixels that differ from part to part (tiles left on their stage positions),
no single lateral shift aligns the overlap and the z scan is refused around
both the motor step and the thickness (session lastslice: foreign c185 215,
slice 4, 30 um deep). The overlap's blocks, each registered at its own shift
(:mod:`linumpy.stack.blocks`), still read its depth; a lost section (a real
step of two thicknesses) gives them nothing to agree on at the thickness.
"""

from __future__ import annotations

import numpy as np
import pytest

from test_stack import BELOW_PX, MARGIN, SURFACE_PX, USEFUL_PX, AXIAL_UM, make_brain, relative_truth, volumes
from linumpy.stack.quality import placement_flags, stack_metrics
from linumpy.stack.stacking import plan_stack

QUADRANT_SHIFTS_PX = ((4, -4), (-4, 4), (-4, -4), (4, 4))


def torn_last_slice(brain, seed: int = 1) -> None:
    """The last slice rebuilt from quadrants each 4 px off its place in its own direction (a mosaic whose tiles
    sit off), so that no single lateral shift aligns its overlap with the previous slice."""
    k = len(brain.slices) - 1
    depth, (sy, sx) = brain.depths_px[k], brain.shifts_px[k]
    half = brain.slices[k].shape[1] // 2
    rng = np.random.default_rng(seed)
    for q, (dy, dx) in enumerate(QUADRANT_SHIFTS_PX):
        r, c = divmod(q, 2)
        y0, x0 = MARGIN + sy + r * half + dy, MARGIN + sx + c * half + dx
        block = brain.phantom[depth : depth + USEFUL_PX + BELOW_PX, y0 : y0 + half, x0 : x0 + half]
        brain.slices[k][SURFACE_PX:, r * half : (r + 1) * half, c * half : (c + 1) * half] = (
            block + 0.045 * rng.standard_normal(block.shape))


def _planned(brain):
    plan = plan_stack(volumes(brain), brain.motors_mm, brain.thickness_um, 10.0)
    return plan, plan.record["slices"][-1], placement_flags(stack_metrics(plan.record, 10.0))


@pytest.mark.parametrize("jump_mm, seed", [(0.05, 0), (-0.045, 1)])
def test_a_last_slice_off_by_half_a_thickness_is_placed_by_its_overlap_blocks(jump_mm, seed):
    brain = make_brain(seed=seed)
    torn_last_slice(brain)
    brain.motors_mm[-1, 0] += jump_mm
    plan, last, flags = _planned(brain)
    slip = last["motor_slip"]
    assert slip["motor_confidence"] < 0.3 and slip["thickness_confidence"] < 0.3, slip  # neither whole scan
    assert slip["adopted"] == "thickness" and slip["blocks"]["agreeing"]["thickness"] >= 3, slip
    error_um = last["origin_um"][0] - relative_truth(brain)[-1, 0]
    assert abs(error_um) <= 0.5 * AXIAL_UM, error_um
    assert stack_metrics(plan.record, 10.0)["motor_slip_corrected"] == [last["slice_id"]]
    said = [f for f in flags if "overlap blocks" in f]
    assert len(said) == 1 and said[0].startswith(f"slice {last['slice_id']}: motor depth step") and "placed at the " \
        "thickness" in said[0], flags
    assert not [f for f in flags if "glitch tolerance" in f]


def test_a_lost_section_keeps_its_motor_step_and_is_flagged():
    """A real step of two thicknesses (a section lost, the motors right): at the thickness the tissue is not the
    new slice's top, no blocks agree there, and the motor step is kept and flagged."""
    brain = make_brain(steps_px=(20, 21, 19, 20, 40))
    torn_last_slice(brain)
    brain.motors_mm[-1, 0] += brain.thickness_um / 1000
    plan, last, flags = _planned(brain)
    slip = last["motor_slip"]
    assert slip["adopted"] == "motor" and slip["blocks"]["agreeing"]["thickness"] < 3, slip
    assert slip["blocks"]["placing"]["thickness"] < 6, slip
    assert abs(last["origin_um"][0] - relative_truth(brain)[-1, 0]) <= AXIAL_UM
    said = [f for f in flags if "glitch tolerance" in f]
    assert len(said) == 1 and said[0].startswith(f"slice {last['slice_id']}: depth step 200.0 um") and \
        "overlap blocks" in said[0], flags
