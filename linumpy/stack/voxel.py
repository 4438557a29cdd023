"""An axial voxel size assumed wrong, read from the registered depth steps: the stack planned again at the voxel
they imply, or placed by the motor and surface depths.

The native tiles (``info.txt``) cannot state the axial voxel size; the lab's
is assumed (with a warning) unless ``axial_resolution`` or an
``acquisition.json`` says otherwise. A registered depth step is a number of
planes times that voxel, the motor step is in micrometres: a wrong voxel
scales every registered step by the same factor, so every step misses the
slices' motor and surface depths by the same fraction
(:func:`linumpy.stack.depths.implied_axial_voxel_um`). The depths are then
chained (the motor and surface depths scatter against the steps beyond
:data:`~linumpy.stack.depths.MAX_PRIOR_SIGMA_UM`) and drift by that fraction
of the thickness per slice (foreign ``odd`` 341, 2.0 um read as 1.5: slices
1-3 placed 10.9-14.1 um off where the motor was within 2.8 um).

:func:`plan_checking_axial_voxel` plans the stack; when the steps name
another voxel it plans it again with the slices' planes read at that voxel
(the registration's window, the placement, the blending, the output's z
scale). A wrong voxel can also leave no confident step: every registered
step then lies at or beyond its z scan's window (a quarter of the thickness
around the motor step, in planes of the assumed voxel), and every scan
peaks at the same end of its window (foreign ``odd`` 343: all four); the
steps are then registered again over a wider window
(:func:`scans_at_one_end`, :data:`PROBE_TOLERANCES`), only to read the
voxel they name, on the motor depths with the glitches the first plan's
tolerance finds corrected (:func:`motors_without_depth_glitches`). When the
plan at the named voxel has its confident steps all missing the motor and
surface depths on one side (a voxel named from a few weak first steps, a few
percent off: :func:`refined_axial_voxel_um`), it is planned once more at the
voxel those steps name, kept when its steps agree and miss less. The plan
at the named voxel is kept when its own steps
agree with the motor and surface depths (the depths solved together, no
voxel named again); else the slices are placed by their motor and surface
depths at the assumed voxel, the registered depth steps left out (the motor
baseline): never worse than the motor. Either way the record says which
voxel was used and why (``axial_voxel``), and a red flag says the per-slice
steps before the stack (the attenuation in /mm) used the assumed one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from linumpy.stack.depths import (
    AT_ABSOLUTE_DEPTHS,
    AT_IMPLIED_VOXEL,
    MAX_PRIOR_SIGMA_UM,
    MIN_SCALE_STEPS,
    implied_axial_voxel_um,
)
from linumpy.stack.placement import correct_encoder_glitches, depth_direction
from linumpy.stack.stacking import SliceVolume, StackParameters, StackPlan, plan_stack

LOGGER = logging.getLogger(__name__)
#: A z scan's peak within this fraction of its window's width from one end counts as at that end
#: (:func:`scans_at_one_end`).
SCAN_END_FRACTION = 0.2
#: Fewest registered pairs whose scans all peak at the same end for the stack to probe the voxel.
MIN_END_PAIRS = 2
#: The probe's z scan half-width, in z tolerances (a quarter of the thickness by default): a registered step
#: ``M / t`` planes (motor step ``M``, true voxel ``t``) lies inside a window of half-width ``h`` um around
#: ``M / a`` (assumed voxel ``a``) when ``|1 - a / t| < h / M``: 0.25 of the step by default, the edge for 2.0 um
#: read as 1.5 (foreign ``odd`` 343: every scan peaked on its window's near end, none confident), 0.5 with two.
PROBE_TOLERANCES = 2.0
#: The residuals of a plan at the named voxel, all on one side, their median at least this many voxels from zero,
#: name a finer voxel (:func:`refined_axial_voxel_um`): foreign ``odd`` 395, 2.0 um read as 1.5, two first steps
#: named 1.93, whose plan's three steps then all fell short by 1.4-2.3 um (0.7-1.2 voxels; slices placed 1.5 um
#: off); at ``odd`` 418's 2.00 they straddle zero (1.55 to -0.20 um).
MIN_REFINE_VOXELS = 0.5


def plan_checking_axial_voxel(
    slices: Sequence[SliceVolume],
    motor_zyx_mm: np.ndarray,
    thickness_um: float,
    resolution_um: float,
    parameters: StackParameters = StackParameters(),
) -> StackPlan:
    """:func:`~linumpy.stack.stacking.plan_stack`, planned again when its registered depth steps name another
    axial voxel size (see the module's docstring); the record's ``axial_voxel`` says what was done (absent
    when no voxel was named: the plan is :func:`plan_stack`'s).

    Parameters
    ----------
    slices, motor_zyx_mm, thickness_um, resolution_um, parameters
        As :func:`~linumpy.stack.stacking.plan_stack`.

    Returns
    -------
    StackPlan
    """
    plan = plan_stack(slices, motor_zyx_mm, thickness_um, resolution_um, parameters)
    assumed = slices[0].resolution_um[0]
    implied, first, probed = _named_voxel(plan, slices, motor_zyx_mm, thickness_um, resolution_um, parameters)
    if implied is None:
        return plan
    LOGGER.warning("the registered depth steps name an axial voxel of %.2f um, not the %.2f um the slices state: "
                   "planned again at %.2f um", implied, assumed, implied)
    again = plan_stack([with_axial_voxel(s, implied) for s in slices], motor_zyx_mm, thickness_um, resolution_um,
                       parameters)
    agreeing = steps_agree(again.record, thickness_um, implied)
    refined = refined_axial_voxel_um(again.record, implied) if agreeing else None
    used = implied
    if refined is not None:
        again, used = _kept_refinement(again, implied, refined, slices, motor_zyx_mm, thickness_um,
                                          resolution_um, parameters)
    if not agreeing:
        LOGGER.warning("planned at %.2f um the steps still miss the motor and surface depths: the slices placed by "
                       "them at %.2f um", implied, assumed)
        again = plan_stack(slices, motor_zyx_mm, thickness_um, resolution_um,
                           replace(parameters, registered_depths=False))
    again.record["axial_voxel"] = {
        "assumed_um": assumed, "implied_um": implied, "used_um": used if agreeing else assumed,
        "placement": AT_IMPLIED_VOXEL if agreeing else AT_ABSOLUTE_DEPTHS,
        "refined_um": refined, "probe_z_tolerance_um": probed, "first_residuals_um": first,
        "implied_residuals_um": _residuals(again.record) if agreeing else None,
        "steps_left_out": [] if agreeing else _confident_steps(again.record, parameters.min_confidence)}
    return again


def _kept_refinement(
    plan: StackPlan,
    implied: float,
    refined: float,
    slices: Sequence[SliceVolume],
    motor_zyx_mm: np.ndarray,
    thickness_um: float,
    resolution_um: float,
    parameters: StackParameters,
) -> tuple[StackPlan, float]:
    """The plan at the refined voxel and that voxel when its steps agree with the motor and surface depths
    (:func:`steps_agree`) and miss them less (root mean square residual) than the plan at ``implied``; else the
    plan at ``implied`` and ``implied``."""
    LOGGER.info("planned at %.2f um the depth steps all miss on one side: planned again at %.2f um", implied, refined)
    again = plan_stack([with_axial_voxel(s, refined) for s in slices], motor_zyx_mm, thickness_um, resolution_um,
                       parameters)
    if steps_agree(again.record, thickness_um, refined) and _rms(again.record) < _rms(plan.record):
        return again, refined
    return plan, implied


def _rms(record: dict) -> float:
    """Root mean square of a plan's residuals (infinite without any)."""
    values = [r for r in _residuals(record) if r is not None]
    return float(np.sqrt(np.mean(np.square(values)))) if values else np.inf


def refined_axial_voxel_um(record: dict, axial_um: float) -> float | None:
    """The axial voxel a plan's residuals name when all its confident steps miss the motor and surface depths on
    the same side, their median at least :data:`MIN_REFINE_VOXELS` voxels from zero; else None.

    The voxel named from the first plan's few, weak steps can miss the true one by a few percent; every step of
    the plan at that voxel then misses alike. The refined voxel makes the steps' sum match the absolute depths'
    (each registered step is the step between the slices' absolute depths plus its residual).

    Parameters
    ----------
    record : dict
        A plan's record (``slices``: ``depth`` with ``absolute_um`` and ``residual_um``).
    axial_um : float
        The axial voxel size its steps were read with.

    Returns
    -------
    float or None

    Examples
    --------
    >>> entry = lambda depth, residual: {"depth": {"absolute_um": depth, "residual_um": residual}}
    >>> record = {"slices": [entry(0.0, None), entry(57.6, None), entry(118.1, -1.40), entry(176.1, -1.73),
    ...                      entry(233.1, -2.31)]}
    >>> refined_axial_voxel_um(record, 1.93)
    1.99
    >>> record["slices"][3] = entry(176.1, 0.9)  # both sides: none
    >>> refined_axial_voxel_um(record, 1.93) is None
    True
    """
    depths = [(entry.get("depth") or {}).get("absolute_um") for entry in record["slices"]]
    residuals = _residuals(record)
    steps = [(depths[k] - depths[k - 1], residuals[k]) for k in range(1, len(depths))
             if residuals[k] is not None and depths[k] is not None and depths[k - 1] is not None]
    if len(steps) < MIN_SCALE_STEPS:
        return None
    absolute, missed = np.array(steps, float).T
    if not (np.all(missed < 0) or np.all(missed > 0)) or abs(np.median(missed)) < MIN_REFINE_VOXELS * axial_um:
        return None
    registered = absolute.sum() + missed.sum()
    return round(float(axial_um * absolute.sum() / registered), 2) if registered > 0 else None


def _confident_steps(record: dict, min_confidence: float) -> list[int]:
    """The slices whose depth step was registered with confidence (at least ``min_confidence``)."""
    return [entry["slice_id"] for entry in record["slices"]
            if (entry.get("registration") or {}).get("z_confidence", 0.0) >= min_confidence]


def _named_voxel(
    plan: StackPlan,
    slices: Sequence[SliceVolume],
    motor_zyx_mm: np.ndarray,
    thickness_um: float,
    resolution_um: float,
    parameters: StackParameters,
) -> tuple[float | None, list[float | None], float | None]:
    """The axial voxel a plan's registered steps name (:func:`record_implied_voxel_um`), or, when none is named
    and every z scan peaked at the same end of its window (:func:`scans_at_one_end`), the one the steps
    registered over a window :data:`PROBE_TOLERANCES` times as wide name (that plan only measures); with the
    residuals it was read from and the probe's z tolerance (None: not probed)."""
    assumed = slices[0].resolution_um[0]
    implied = record_implied_voxel_um(plan.record, thickness_um, assumed)
    if implied is not None or not thickness_um or not scans_at_one_end(plan.record):
        return implied, _residuals(plan.record), None
    z_tolerance = parameters.z_tolerance_um or thickness_um / 4
    tolerance = PROBE_TOLERANCES * z_tolerance
    LOGGER.info("every z scan peaked at the same end of its window: registered again over +-%.1f um", tolerance)
    motors = motors_without_depth_glitches(motor_zyx_mm, [s.slice_id for s in slices], thickness_um, z_tolerance)
    probe = plan_stack(slices, motors, thickness_um, resolution_um, replace(parameters, z_tolerance_um=tolerance))
    return record_implied_voxel_um(probe.record, thickness_um, assumed), _residuals(probe.record), tolerance


def motors_without_depth_glitches(
    motor_zyx_mm: np.ndarray, slice_ids: Sequence[int], thickness_um: float, z_tolerance_um: float,
) -> np.ndarray:
    """The motor table with its depth encoder glitches replaced as a plan at ``z_tolerance_um`` replaces them.

    The probe widens the z tolerance, which is also the glitch tolerance: a glitch the first plan corrected (20 um
    under a 15 um tolerance, foreign ``odd`` 418) would read as motion under the probe's 30 um, and the steps
    beside it would miss the motor depths by the glitch, not by the voxel's scale.

    Parameters
    ----------
    motor_zyx_mm : numpy.ndarray
        ``(n, 3)`` motor positions ``(z, y, x)`` in millimetres, ordered by slice id.
    slice_ids : sequence of int
        The slice ids of the rows.
    thickness_um : float
        Nominal slice thickness.
    z_tolerance_um : float
        The first plan's z tolerance (its glitch tolerance).

    Returns
    -------
    numpy.ndarray
        A copy, its ``z`` column with the glitches interpolated between their neighbours.
    """
    motors = np.array(motor_zyx_mm, dtype=float)
    depth_um = motors[:, 0] * 1000.0
    step_um = depth_direction(depth_um) * thickness_um
    corrected, _ = correct_encoder_glitches(depth_um, slice_ids, step_um, z_tolerance_um)
    motors[:, 0] = corrected / 1000.0
    return motors


def scans_at_one_end(record: dict) -> bool:
    """Whether every registered pair's z scan (at least :data:`MIN_END_PAIRS`) peaked at the same end of its
    window (within :data:`SCAN_END_FRACTION` of its width): the registered steps may lie beyond it, as when
    every step is scaled by a wrong axial voxel.

    Examples
    --------
    >>> scan = lambda peak, first: {"registration": {"z_offset_px": peak, "offsets_scanned": [first, first + 20]}}
    >>> scans_at_one_end({"slices": [{"registration": None}, scan(32.0, 30), scan(30.0, 30), scan(44.0, 43)]})
    True
    >>> scans_at_one_end({"slices": [{"registration": None}, scan(32.0, 30), scan(40.0, 30)]})
    False
    """
    ends = []
    for entry in record["slices"]:
        scan = entry.get("registration") or {}
        offsets, peak = scan.get("offsets_scanned"), scan.get("z_offset_px")
        if not offsets or peak is None:
            continue
        margin = SCAN_END_FRACTION * (offsets[-1] - offsets[0])
        ends.append(-1 if peak <= offsets[0] + margin else 1 if peak >= offsets[-1] - margin else 0)
    return len(ends) >= MIN_END_PAIRS and ends[0] != 0 and len(set(ends)) == 1


def record_implied_voxel_um(record: dict, thickness_um: float, axial_um: float) -> float | None:
    """The axial voxel a plan's registered depth steps name (:func:`~linumpy.stack.depths.implied_axial_voxel_um`
    on the record's residuals), None when they name none or the depths were not solved against motor and
    surface depths."""
    if not thickness_um:
        return None
    return implied_axial_voxel_um(_residuals(record), thickness_um, axial_um)


def steps_agree(record: dict, thickness_um: float, axial_um: float) -> bool:
    """Whether a plan's registered depth steps agree with the slices' motor and surface depths: the depths
    solved together (their scatter at most :data:`~linumpy.stack.depths.MAX_PRIOR_SIGMA_UM`) and no voxel
    named (:func:`record_implied_voxel_um`)."""
    placement = record.get("depth_placement") or {}
    return (placement.get("mode") == "joint" and placement.get("prior_sigma_um", np.inf) <= MAX_PRIOR_SIGMA_UM
            and record_implied_voxel_um(record, thickness_um, axial_um) is None)


def with_axial_voxel(volume: SliceVolume, axial_um: float) -> SliceVolume:
    """The slice with every level's planes read at ``axial_um`` (the same data)."""
    def relabelled(levels):
        return None if levels is None else [(data, (axial_um, *voxel[1:])) for data, voxel in levels]

    return replace(volume, levels=relabelled(volume.levels), read_levels=relabelled(volume.read_levels))


def _residuals(record: dict) -> list[float | None]:
    """Per slice, its registered step minus the step between the motor and surface depths (None without)."""
    return [(entry.get("depth") or {}).get("residual_um") for entry in record["slices"]]
