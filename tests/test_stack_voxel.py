"""A stack whose slices state a wrong axial voxel size (linumpy.stack.voxel).

The synthetic brain of ``test_stack`` (5 um planes, true steps 20, 21, 19, 20, 22 planes, the motors stepping
100 um) with the surface planes of its cuts, its slices written as 4 um planes: every registered step reads 0.8 of
the motor and surface step, as foreign ``odd`` (2.0 um planes read as the lab's 1.5 um) did. Placed against the
truth: within half a voxel, and never worse than the motor.
"""

from __future__ import annotations

import numpy as np
import pytest

from linumpy.stack import voxel
from linumpy.stack.depths import AT_ABSOLUTE_DEPTHS, AT_IMPLIED_VOXEL
from linumpy.stack.quality import placement_flags, stack_metrics
from linumpy.stack.refine import normalized_cross_correlation
from linumpy.stack.stacking import StackParameters, plan_stack
from linumpy.stack.voxel import (plan_checking_axial_voxel, record_implied_voxel_um, scans_at_one_end,
                                  with_axial_voxel)
from test_stack import AXIAL_UM, assembled, make_brain, relative_truth
from test_stack_depths import with_surfaces

WRONG_UM = 4.0  # the axial voxel the slices state; the truth is AXIAL_UM (5 um)


def wrong_voxel_brain():
    """The brain, its true and motor depths (um, relative to slice 0) and its slices stating 4 um planes."""
    brain = make_brain()
    truth = relative_truth(brain)[:, 0]
    motor = (brain.motors_mm[:, 0] - brain.motors_mm[0, 0]) * 1000
    slices = [with_axial_voxel(s, WRONG_UM) for s in with_surfaces(brain, (truth - motor) / AXIAL_UM)]
    return brain, truth, motor, slices


def placed_depths(plan) -> np.ndarray:
    return np.array([entry["origin_um"][0] for entry in plan.record["slices"]])


def test_a_wrong_axial_voxel_is_read_from_the_steps_and_the_stack_planned_at_it():
    brain, truth, motor, slices = wrong_voxel_brain()
    chained = plan_stack(slices, brain.motors_mm, brain.thickness_um, 10.0)
    motor_error = np.abs(motor - truth)
    assert np.abs(placed_depths(chained) - truth).max() > motor_error.max() + AXIAL_UM  # the chained steps drift
    plan = plan_checking_axial_voxel(slices, brain.motors_mm, brain.thickness_um, 10.0)
    check = plan.record["axial_voxel"]
    assert check["placement"] == AT_IMPLIED_VOXEL and check["assumed_um"] == WRONG_UM
    assert check["used_um"] == check["implied_um"] == pytest.approx(AXIAL_UM, rel=0.02)
    error = np.abs(placed_depths(plan) - truth)
    assert error.max() <= 0.5 * AXIAL_UM
    assert np.all(error <= np.maximum(motor_error, 0.5 * AXIAL_UM))
    metrics = stack_metrics(plan.record, 10.0)
    assert metrics["axial_voxel_um"] == check["used_um"] and metrics["depth_mode"] == "joint"
    named = [flag for flag in placement_flags(metrics) if "the assumed axial voxel size of 4.00 um" in flag]
    assert len(named) == 1 and f"read the slices' planes at {check['used_um']:.2f} um" in named[0]
    # the volume's z scale: the slabs at the implied voxel match the phantom better than the chained ones
    volume, reference, tissue = assembled(plan, brain)
    ncc = normalized_cross_correlation(volume[tissue], reference[tissue])
    before, reference, tissue = assembled(chained, brain)
    assert ncc >= 0.9 and ncc > normalized_cross_correlation(before[tissue], reference[tissue])


def test_scans_that_all_peak_at_one_end_of_their_window_are_registered_again_over_a_wider_one():
    """As foreign ``odd`` 343 (2.0 um planes read as 1.5: the true steps on the near end of every z scan's window,
    none confident): a window of +-15 um, 25 +- 3.75 planes of 4 um around the motor step, the true steps 19-22
    planes."""
    brain, truth, motor, slices = wrong_voxel_brain()
    narrow = StackParameters(z_tolerance_um=15.0)
    first = plan_stack(slices, brain.motors_mm, brain.thickness_um, 10.0, narrow)
    assert scans_at_one_end(first.record)
    assert record_implied_voxel_um(first.record, brain.thickness_um, WRONG_UM) is None
    assert np.abs(placed_depths(first) - truth).max() > 0.5 * AXIAL_UM
    plan = plan_checking_axial_voxel(slices, brain.motors_mm, brain.thickness_um, 10.0, narrow)
    check = plan.record["axial_voxel"]
    assert check["placement"] == AT_IMPLIED_VOXEL and check["probe_z_tolerance_um"] == 30.0
    assert check["used_um"] == pytest.approx(AXIAL_UM, rel=0.02)
    error = np.abs(placed_depths(plan) - truth)
    assert error.max() <= 0.5 * AXIAL_UM and np.all(error <= np.maximum(np.abs(motor - truth), 0.5 * AXIAL_UM))
    flags = placement_flags(stack_metrics(plan.record, 10.0))
    assert sum("every z scan peaked at the same end of its window" in flag for flag in flags) == 1


def test_the_probe_keeps_a_motor_glitch_the_first_plan_corrected():
    """As foreign ``odd`` 418 (a 20 um encoder glitch on slice 1): the probe's window of twice the z tolerance must
    not widen the glitch tolerance too, or the glitch reads as motion and the step beside it names no voxel."""
    brain, truth, motor, slices = wrong_voxel_brain()
    glitched = brain.motors_mm.copy()
    glitched[2, 0] += 0.02 * np.sign(glitched[1, 0] - glitched[0, 0])  # 20 um: over 15, under the probe's 30
    narrow = StackParameters(z_tolerance_um=15.0)
    first = plan_stack(slices, glitched, brain.thickness_um, 10.0, narrow)
    assert scans_at_one_end(first.record) and first.record["slices"][2]["glitch_corrected"] == ["z"]
    plan = plan_checking_axial_voxel(slices, glitched, brain.thickness_um, 10.0, narrow)
    check = plan.record["axial_voxel"]
    assert check["placement"] == AT_IMPLIED_VOXEL and check["used_um"] == pytest.approx(AXIAL_UM, rel=0.02)
    error = np.abs(placed_depths(plan) - truth)
    assert error.max() <= 0.5 * AXIAL_UM


def test_steps_that_disagree_at_the_implied_voxel_leave_the_slices_on_their_motor_and_surface_depths(monkeypatch):
    brain, truth, motor, slices = wrong_voxel_brain()
    monkeypatch.setattr(voxel, "steps_agree", lambda *args: False)
    plan = plan_checking_axial_voxel(slices, brain.motors_mm, brain.thickness_um, 10.0)
    check = plan.record["axial_voxel"]
    assert check["placement"] == AT_ABSOLUTE_DEPTHS and check["used_um"] == WRONG_UM
    # motor + surface depth at the assumed voxel: the surface offsets (0-2 planes) read 0.8 of their depth
    error = np.abs(placed_depths(plan) - truth)
    assert np.all(error <= np.abs(motor - truth) * (1 - WRONG_UM / AXIAL_UM) + 0.01)
    assert not any(entry["used_registration_z"] for entry in plan.record["slices"])
    flags = placement_flags(stack_metrics(plan.record, 10.0))
    assert sum("the registered depth steps left out" in flag for flag in flags) == 1
    confident = [entry["slice_id"] for entry in plan.record["slices"]
                 if (entry["registration"] or {}).get("z_confidence", 0) >= 0.3]
    assert confident and check["steps_left_out"] == confident
    assert not [flag for flag in flags if "unsure" in flag and int(flag.split()[1][:-1]) in confident]
    assert {int(flag.split()[1][:-1]) for flag in flags if "registered (z confidence" in flag} == set(confident)


def test_a_right_axial_voxel_plans_the_stack_once_and_as_before():
    brain, truth, motor, _ = wrong_voxel_brain()
    slices = with_surfaces(brain, (truth - motor) / AXIAL_UM)
    plan = plan_checking_axial_voxel(slices, brain.motors_mm, brain.thickness_um, 10.0)
    assert "axial_voxel" not in plan.record
    assert plan.record == plan_stack(slices, brain.motors_mm, brain.thickness_um, 10.0).record
    assert not scans_at_one_end(plan.record)
    assert np.abs(placed_depths(plan) - truth).max() <= 0.5 * AXIAL_UM


def test_the_overlap_attenuation_reads_the_files_planes_at_the_voxel_the_stack_used(tmp_path):
    """The axial step's uncompensated files state the assumed voxel (1.5 um for 2.0): placed by a record at the
    implied voxel (``axial_voxel.used_um``), the overlap is found at the true planes and the attenuation read per
    true millimetre (within 5%); read at the files' voxel, the same overlap is a third too steep per mm."""
    from linumpy.io.zarr import save_omezarr
    from linumpy.stack.attenuation import SOURCE_OVERLAP, slice_attenuations
    from test_overlap_attenuation import DEPTH, DZ_MM, SIZE, STEP, two_slices

    previous, following, true_mu = two_slices(seed=1)
    assumed_mm = DZ_MM * 0.75
    paths, slices = {}, []
    for slice_id, volume in ((0, previous), (1, following)):
        binned = volume.reshape(DEPTH, SIZE // 4, 4, SIZE // 4, 4).mean(axis=(2, 4)).astype(np.float32)
        paths[slice_id] = tmp_path / f"slice_z{slice_id:02d}_axial_corr_uncompensated.ome.zarr"
        save_omezarr(binned, paths[slice_id], (assumed_mm, 0.012, 0.012), n_levels=1,
                     attributes={"lateral_binning": 4, "surface_depth_px": 0})
        slices.append({"slice_id": slice_id, "origin_um": [slice_id * STEP * DZ_MM * 1000, 0.0, 0.0]})
    check = {"assumed_um": assumed_mm * 1000, "implied_um": DZ_MM * 1000, "used_um": DZ_MM * 1000,
             "placement": AT_IMPLIED_VOXEL}
    rows = slice_attenuations({"slices": slices, "axial_voxel": check}, paths)
    assert rows[0]["attenuation_source"] == SOURCE_OVERLAP
    assert rows[0]["tissue_attenuation_per_mm"] == pytest.approx(true_mu, rel=0.05)
    assert rows[0]["overlap_attenuation_path_um"] == pytest.approx(STEP * DZ_MM * 1000)
    stated = [{**entry, "origin_um": [entry["origin_um"][0] * 0.75, 0.0, 0.0]} for entry in slices]
    assert slice_attenuations({"slices": stated}, paths)[0]["tissue_attenuation_per_mm"] == pytest.approx(
        true_mu / 0.75, rel=0.05)
