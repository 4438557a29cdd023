"""Where each slice goes according to the motors.

The stage records one ``(x, y, z)`` position per slice. Between two slices the
vibratome removes one slice thickness, so the motor ``z`` advances by that
thickness; ``x`` and ``y`` normally stay put. This module turns the table into
nominal slice origins (micrometres, relative to the first slice) after fixing
encoder glitches: a single slice whose recorded position jumps away from the
model and back again at the next slice.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from linumpy.errors import InputError


def check_slice_sequence(slice_ids: Sequence[int], allow_gaps: bool) -> list[int]:
    """Return the slice ids sorted, refusing duplicates and (unless allowed) gaps.

    Parameters
    ----------
    slice_ids : sequence of int
        Ids of the slices given, in any order.
    allow_gaps : bool
        Accept missing ids between the first and the last slice.

    Returns
    -------
    list of int
        The sorted ids.

    Raises
    ------
    InputError
        On a duplicated id, or a missing id when ``allow_gaps`` is false.

    Examples
    --------
    >>> check_slice_sequence([3, 1, 2], allow_gaps=False)
    [1, 2, 3]
    """
    ordered = sorted(slice_ids)
    duplicated = sorted({i for i in ordered if ordered.count(i) > 1})
    if duplicated:
        raise InputError(f"slice ids given more than once: {duplicated}; pass each slice once")
    if not ordered:
        raise InputError("no slices to stack; pass at least one slice_zNN_normalize.ome.zarr")
    missing = sorted(set(range(ordered[0], ordered[-1] + 1)) - set(ordered))
    if missing and not allow_gaps:
        raise InputError(
            f"slice ids {missing} are missing between {ordered[0]} and {ordered[-1]}; "
            "provide them or pass --allow_gaps to fill them with zeros"
        )
    return ordered


#: Motor depth steps within this fraction of a step count as the same cut (:func:`thickness_from_steps`).
STEP_AGREEMENT = 0.05


def thickness_from_steps(steps_um: Sequence[float]) -> float:
    """The slice thickness most motor depth steps agree on.

    The median of the largest group of steps within :data:`STEP_AGREEMENT`
    of one step; the median of all the steps when no two agree or when two
    groups of that size disagree. A plain median is pulled by off steps that
    no glitch correction removes (a jump at the first or the last slice, a
    lasting slip): with two of four steps off in the same direction it is the
    mean of a true and an off step, and every tolerance built on it is off too
    (five slices of 66 um with jumps of -45 um at the first and +30 um at the
    last gave 81 um, and the last slice was placed 21.8 um deep).

    Parameters
    ----------
    steps_um : sequence of float
        Motor depth steps per slice id (at least one).

    Returns
    -------
    float

    Examples
    --------
    >>> thickness_from_steps([111.0, 66.0, 66.0, 96.0])
    66.0
    >>> thickness_from_steps([66.0, 66.0, 96.0, 96.0])  # two groups of two: no majority
    81.0
    """
    steps = np.asarray(steps_um, dtype=float)
    groups = [frozenset(np.flatnonzero(np.abs(steps - s) <= STEP_AGREEMENT * abs(s)).tolist()) for s in steps]
    largest = max(len(g) for g in groups)
    candidates = {g for g in groups if len(g) == largest}
    if largest < 2 or len(candidates) > 1:
        return float(np.median(steps))
    return float(np.median(steps[sorted(candidates.pop())]))


def find_encoder_glitches(
    positions: Sequence[float],
    slice_ids: Sequence[int],
    expected_step: float,
    tolerance: float,
) -> list[int]:
    """Return the indices of positions that jump off the model and back.

    Slice ``k`` is a glitch when its step from slice ``k-1`` and its step to
    slice ``k+1`` both miss the expected step by more than ``tolerance`` but
    their sum matches two expected steps (the jump cancels). The first and the
    last slice cannot be recognised: their jumps never cancel.

    Parameters
    ----------
    positions : sequence of float
        One motor coordinate per slice, ordered by slice id.
    slice_ids : sequence of int
        The slice ids (so that a gap counts as several steps).
    expected_step : float
        Expected change of the coordinate from one slice id to the next.
    tolerance : float
        Largest departure from the model that is not a glitch (same unit).

    Returns
    -------
    list of int
        Indices into ``positions``.

    Examples
    --------
    >>> find_encoder_glitches([0, 200, 450, 600], [0, 1, 2, 3], 200, 20)
    [2]
    """
    p = np.asarray(positions, dtype=float)
    ids = np.asarray(slice_ids, dtype=float)
    residual = np.diff(p) - expected_step * np.diff(ids)
    glitches = []
    for k in range(1, len(p) - 1):
        before, after = residual[k - 1], residual[k]
        jumps = abs(before) > tolerance and abs(after) > tolerance
        if jumps and abs(before + after) <= tolerance:
            glitches.append(k)
    return glitches


def correct_encoder_glitches(
    positions: Sequence[float],
    slice_ids: Sequence[int],
    expected_step: float,
    tolerance: float,
) -> tuple[np.ndarray, list[int]]:
    """Replace glitched positions by the model between their neighbours.

    See :func:`find_encoder_glitches` for what counts as a glitch.

    Returns
    -------
    corrected : numpy.ndarray
        The positions, glitches replaced by interpolation between the
        neighbouring slices (by slice id).
    glitches : list of int
        Indices that were replaced.

    Examples
    --------
    >>> corrected, where = correct_encoder_glitches([0, 200, 450, 600], [0, 1, 2, 3], 200, 20)
    >>> corrected.tolist(), where
    ([0.0, 200.0, 400.0, 600.0], [2])
    """
    corrected = np.asarray(positions, dtype=float).copy()
    ids = np.asarray(slice_ids, dtype=float)
    glitches = find_encoder_glitches(corrected, ids, expected_step, tolerance)
    for k in glitches:
        fraction = (ids[k] - ids[k - 1]) / (ids[k + 1] - ids[k - 1])
        corrected[k] = corrected[k - 1] + fraction * (corrected[k + 1] - corrected[k - 1])
    return corrected, glitches


def depth_direction(motor_z_um: Sequence[float]) -> float:
    """Return +1 if the motor ``z`` grows with depth into the brain, -1 otherwise.

    Stages count either way; the sign of the median step decides, so a
    single glitch cannot flip it. One slice gives +1.
    """
    steps = np.diff(np.asarray(motor_z_um, dtype=float))
    return -1.0 if steps.size and np.median(steps) < 0 else 1.0


def nominal_origins_um(
    motor_zyx_mm: np.ndarray,
    slice_ids: Sequence[int],
    thickness_um: float,
    z_tolerance_um: float,
    lateral_tolerance_um: float,
) -> tuple[np.ndarray, dict[str, list[int]]]:
    """Slice origins from the motor table, glitches corrected.

    Parameters
    ----------
    motor_zyx_mm : numpy.ndarray
        ``(n, 3)`` motor positions ``(z, y, x)`` in millimetres, one row per
        slice, ordered by slice id.
    slice_ids : sequence of int
        The slice ids of the rows.
    thickness_um : float
        Nominal slice thickness: the expected ``z`` step per slice id.
    z_tolerance_um, lateral_tolerance_um : float
        Largest departure from the model that is not an encoder glitch.

    Returns
    -------
    origins : numpy.ndarray
        ``(n, 3)`` origins ``(depth, y, x)`` in micrometres relative to the
        first slice; depth grows into the brain whatever the stage's sign.
    glitches : dict
        Indices of the corrected slices per axis (``"z"``, ``"y"``, ``"x"``).

    Examples
    --------
    >>> motors = np.array([[1.0, 0, 0], [1.2, 0, 0], [1.45, 0, 0], [1.6, 0, 0]])
    >>> origins, glitches = nominal_origins_um(motors, [0, 1, 2, 3], 200, 25, 20)
    >>> origins[:, 0].round(6).tolist(), glitches["z"]
    ([0.0, 200.0, 400.0, 600.0], [2])
    """
    motor_um = np.asarray(motor_zyx_mm, dtype=float) * 1000.0
    ids = np.asarray(slice_ids, dtype=float)
    direction = depth_direction(motor_um[:, 0])
    origins = np.empty_like(motor_um)
    glitches: dict[str, list[int]] = {}
    depth = direction * (motor_um[:, 0] - motor_um[0, 0])
    origins[:, 0], glitches["z"] = correct_encoder_glitches(
        depth, ids, thickness_um, z_tolerance_um
    )
    for axis, name in ((1, "y"), (2, "x")):
        lateral = motor_um[:, axis] - motor_um[0, axis]
        step = _median_step(lateral, ids)
        origins[:, axis], glitches[name] = correct_encoder_glitches(
            lateral, ids, step, lateral_tolerance_um
        )
    return origins, glitches


def _median_step(positions: np.ndarray, ids: np.ndarray) -> float:
    """Median change per slice id (0 for a single slice)."""
    if positions.size < 2:
        return 0.0
    return float(np.median(np.diff(positions) / np.diff(ids)))
