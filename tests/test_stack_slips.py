"""The last slice's depth when neither whole z scan nor the overlap's blocks are confident, but the two scans
bracket the peak at the thickness between them (:func:`linumpy.stack.slips.climb_to_thickness`).

The curves are foreign odd2 292's (1 x 4 strip of 150-plane tiles, 3 um planes, focus 70 planes deep; the last
slice's motor reading 35 um short): its scan around the motor step (40 um, offsets 7-20) rose to its edge, the one
around the thickness (75 um, offsets 18-32) peaked at 25, 0.06 above its far edge six planes away (refused as not
distinct, z confidence 0), and 4 of the 9 blocks placed it at the thickness, none confident: main kept the motor
step, the slice 35 um too shallow (score.py). odd2 308 (opened as held out for the first form of the rule, which
compared the peak with the motor scan's best, five planes away: refused) is the same case.
"""

from __future__ import annotations

import pytest

from linumpy.stack.quality import placement_flags, stack_metrics
from linumpy.stack.refine import PairEstimate
from linumpy.stack.slips import climb_to_thickness

MOTOR_292 = [0.381345, 0.383753, 0.389115, 0.401253, 0.407186, 0.407967, 0.412262, 0.421492, 0.430173, 0.435131,
             0.4352, 0.442365, 0.464641, 0.477501]
THICKNESS_292 = [0.445068, 0.467088, 0.479148, 0.489906, 0.49823, 0.519038, 0.54331, 0.556739, 0.54827, 0.535542,
                 0.530152, 0.526925, 0.511471, 0.496803, 0.487306]

#: odd2 308's (the same geometry and glitch): the peak rises only 0.040 over the motor scan's edge five planes
#: away, 0.052 over everything six planes or more away.
MOTOR_308 = [0.3563, 0.3686, 0.3753, 0.3773, 0.3775, 0.3778, 0.3838, 0.3883, 0.3891, 0.3894, 0.3921, 0.3983, 0.4101,
             0.4218]
THICKNESS_308 = [0.3936, 0.4083, 0.4201, 0.423, 0.4192, 0.4268, 0.4498, 0.4617, 0.4519, 0.4223, 0.4018, 0.3984, 0.3904,
                 0.3781, 0.3578]


def scan(first: int, curve: list[float], noise: float = 0.009217, ceiling: float = 0.99) -> PairEstimate:
    return PairEstimate(float(first), 0.0, (0.0, 0.0), 0.5, z_ceiling=ceiling, z_noise=noise,
                        offsets_scanned=list(range(first, first + len(curve))), ncc_curve=list(curve))


def test_the_two_scans_of_odd2_292_bracket_the_peak_at_the_thickness():
    climb = climb_to_thickness(scan(7, MOTOR_292), scan(18, THICKNESS_292))
    assert climb == {"motor_edge_ncc": 0.4775, "thickness_peak_ncc": 0.5567, "near_rival_ncc": 0.4671,
                     "far_rival_ncc": 0.4968, "rise_needed": 0.0495}



def test_the_rivals_are_read_six_planes_from_the_peak_as_on_its_own_lobe():
    """odd2 308: the motor scan's edge, five planes from the peak, is on the peak's lobe, not a rival."""
    climb = climb_to_thickness(scan(7, MOTOR_308, noise=0.011576, ceiling=0.986),
                               scan(18, THICKNESS_308, noise=0.010272, ceiling=0.985))
    assert climb is not None and climb["near_rival_ncc"] == 0.4101 and climb["far_rival_ncc"] == 0.3781, climb


def test_a_slip_downward_is_read_the_same_way():
    """The motor step longer than the thickness: the motor scan rises to its first offset, the far edge is the
    thickness scan's first."""
    climb = climb_to_thickness(scan(30, MOTOR_292[::-1]), scan(18, THICKNESS_292[::-1]))
    assert climb is not None and climb["far_rival_ncc"] == 0.4968


@pytest.mark.parametrize("motor, thickness, why", [
    (MOTOR_292, THICKNESS_292[:8], "the thickness scan peaks on its far edge: the match improves beyond it "
                                   "(a lost section: the slice lies deeper still)"),
    (MOTOR_292[:5] + [0.49] + MOTOR_292[6:], THICKNESS_292, "the motor scan peaks inside its window"),
    (MOTOR_292[:-2] + [0.52, 0.53], THICKNESS_292, "the motor scan nearly as high six planes from the peak"),
    (MOTOR_292, THICKNESS_292[:-3] + [0.52, 0.52, 0.52], "the thickness scan does not fall on its far side"),
    (MOTOR_292, THICKNESS_292[:11], "no offset six planes beyond the peak was read"),
])
def test_no_bracketed_peak_keeps_the_motor_step(motor, thickness, why):
    assert climb_to_thickness(scan(7, motor), scan(18, thickness)) is None, why


def test_a_noisy_curve_needs_a_rise_above_its_noise():
    assert climb_to_thickness(scan(7, MOTOR_292, noise=0.03), scan(18, THICKNESS_292, noise=0.03)) is None


def test_a_slice_placed_by_its_bracketed_peak_is_a_red_flag():
    climb = climb_to_thickness(scan(7, MOTOR_292), scan(18, THICKNESS_292))
    slip = {"motor_step_um": 40.0, "motor_confidence": 0.0, "thickness_confidence": 0.0, "adopted": "thickness",
            "blocks": {"n_blocks": 9, "agreeing": {"motor": 0, "thickness": 0},
                       "placing": {"motor": 0, "thickness": 4}, "adopted": "motor"}, "climb": climb}
    metrics = {"slice_ids": [3, 4], "motor_fallback": [4], "motor_fallback_kept": ["depth"],
               "z_confidence": [None, 0.0], "rotation_mode": [None, None], "slice_thickness_um": 75.0,
               "z_tolerance_um": 18.75, "z_offsets_um": [0.0, 0.04],
               "motor_slip_blocks": [None, {**slip["blocks"], "motor_step_um": 40.0}],
               "motor_slip_climb": [None, {**climb, "motor_step_um": 40.0}]}
    said = [f for f in placement_flags(metrics) if "peaked inside" in f]
    assert said == ["slice 4: motor depth step 40.0 um for a slice thickness of 75.0 um, and neither scan nor the "
                    "overlap's blocks were confident; the scan around the motor step rose to its edge (0.477) and "
                    "the scan around the thickness peaked inside, higher (0.557): placed at the thickness by its "
                    "motor and surface depth (a motor jump, not a lost section); check its depth"]
    assert not [f for f in placement_flags(metrics) if "glitch tolerance" in f]


def test_a_lost_section_keeps_its_motor_step_when_its_blocks_say_nothing(monkeypatch):
    """A real step of two thicknesses (the motors right), its overlap torn so that neither whole scan is confident,
    and its blocks made to refuse both steps: the scan around the thickness does not peak inside its window, the
    motor step is kept and the slice placed within a plane of the truth."""
    from test_stack import AXIAL_UM, make_brain, relative_truth, volumes
    from test_stack_last_slice import torn_last_slice

    import linumpy.stack.stacking as stacking
    from linumpy.stack.blocks import BlockVote

    monkeypatch.setattr(stacking, "vote_blocks", lambda *args, **kwargs: BlockVote(
        "motor", 9, {"motor": 0, "thickness": 0}, {"motor": 0, "thickness": 0}))
    brain = make_brain(steps_px=(20, 21, 19, 20, 40))
    torn_last_slice(brain)
    brain.motors_mm[-1, 0] += brain.thickness_um / 1000
    last = stacking.plan_stack(volumes(brain), brain.motors_mm, brain.thickness_um, 10.0).record["slices"][-1]
    assert last["motor_slip"]["adopted"] == "motor" and last["motor_slip"]["climb"] is None, last["motor_slip"]
    assert abs(last["origin_um"][0] - relative_truth(brain)[-1, 0]) <= AXIAL_UM
