"""Stack normalised slices into one volume: place, refine, assemble.

:func:`plan_stack` decides where every slice goes (motor positions, encoder
glitches corrected, refined by registering each slice against the previous
one on laterally downsampled planes); :func:`write_stack` then assembles the
volume chunk by chunk into any region sink (an OME-Zarr writer).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import dask.array as da
import numpy as np

from linumpy.errors import InputError
from linumpy.resample import block_mean, resample_to_resolution
from linumpy.stack.assemble import PlacedSlice, RegionSink, assemble_volume, union_box
from linumpy.stack.placement import nominal_origins_um
from linumpy.stack.refine import PairEstimate, bandpass_planes, register_pair, resolve_origins

LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class SliceVolume:
    """One normalised slice as the stacker sees it.

    Attributes
    ----------
    slice_id : int
        The slice id.
    data : dask.array.Array
        ``(z, y, x)`` volume (any pyramid level; lateral resolution should be
        at least as fine as the output's).
    resolution_um : tuple of float
        Voxel size ``(z, y, x)`` of ``data`` in micrometres.
    useful_range : tuple of int
        Planes ``[start, stop)`` of ``data`` holding tissue below the
        flattened surface (the axial-correction step's useful depth).
    """

    slice_id: int
    data: da.Array
    resolution_um: tuple[float, float, float]
    useful_range: tuple[int, int]

    @property
    def useful_depth(self) -> int:
        """Number of useful planes."""
        return self.useful_range[1] - self.useful_range[0]


@dataclass(frozen=True)
class StackParameters:
    """Tuning of the placement refinement.

    Attributes
    ----------
    z_tolerance_um : float or None
        Half-width of the z scan around the motor offset and the encoder
        glitch tolerance in depth; None: a quarter of the slice thickness.
    lateral_tolerance_um : float
        Encoder glitch tolerance laterally.
    min_confidence : float
        Registration estimates below this NCC leave the motor position.
    max_z_drift_um : float or None
        Bound on ``|depth - motor depth|``; None: a quarter of the thickness.
    max_lateral_drift_um : float
        Bound on the lateral deviation from the motor positions.
    n_planes : int
        Top planes of a slice matched against the previous slice.
    registration_size : int
        Planes are block-averaged laterally to at most this many pixels on
        their longer side before registration.
    register : bool
        Refine the motor placement at all.
    """

    z_tolerance_um: float | None = None
    lateral_tolerance_um: float = 20.0
    min_confidence: float = 0.3
    max_z_drift_um: float | None = None
    max_lateral_drift_um: float = 250.0
    n_planes: int = 8
    registration_size: int = 1024
    register: bool = True


@dataclass
class StackPlan:
    """Where every slice goes, and the record of how it was decided.

    Attributes
    ----------
    placed : list of PlacedSlice
        Slices at the output voxel size, origins relative to the output's
        corner.
    shape : tuple of int
        Output shape ``(z, y, x)``.
    resolution_um : float
        Isotropic output voxel size.
    record : dict
        JSON-ready estimates and decisions for QC.
    """

    placed: list[PlacedSlice]
    shape: tuple[int, int, int]
    resolution_um: float
    record: dict = field(default_factory=dict)


def plan_stack(
    slices: Sequence[SliceVolume],
    motor_zyx_mm: np.ndarray,
    thickness_um: float,
    resolution_um: float,
    parameters: StackParameters = StackParameters(),
) -> StackPlan:
    """Place every slice of a brain in one isotropic output grid.

    Parameters
    ----------
    slices : sequence of SliceVolume
        The slices, ordered by slice id (gaps allowed).
    motor_zyx_mm : numpy.ndarray
        ``(n, 3)`` motor positions ``(z, y, x)`` in mm of the same slices.
    thickness_um : float
        Nominal slice thickness.
    resolution_um : float
        Isotropic output voxel size.
    parameters : StackParameters
        Refinement tuning.

    Returns
    -------
    StackPlan
    """
    _check_lateral_resolutions(slices)
    ids = [s.slice_id for s in slices]
    z_tolerance = parameters.z_tolerance_um or thickness_um / 4
    nominal, glitches = nominal_origins_um(
        motor_zyx_mm, ids, thickness_um, z_tolerance, parameters.lateral_tolerance_um
    )
    for axis, indices in glitches.items():
        for k in indices:
            LOGGER.info("encoder glitch in %s at slice %d corrected", axis, ids[k])
    estimates: list[PairEstimate | None] = [None] * len(slices)
    steps: list[np.ndarray | None] = [None] * len(slices)
    if parameters.register:
        for k in range(1, len(slices)):
            if ids[k] - ids[k - 1] == 1:
                estimates[k], steps[k] = _register_consecutive(
                    slices[k - 1], slices[k], nominal[k] - nominal[k - 1], z_tolerance, parameters
                )
    max_z_drift = parameters.max_z_drift_um or thickness_um / 4
    lateral = parameters.max_lateral_drift_um
    resolved = resolve_origins(
        nominal,
        steps,
        [e.z_confidence if e else 0.0 for e in estimates],
        [e.lateral_confidence if e else 0.0 for e in estimates],
        parameters.min_confidence,
        (max_z_drift, lateral, lateral),
    )
    voxels = np.rint(resolved.origins_um / resolution_um).astype(int)
    placed = [
        PlacedSlice(_at_output_resolution(s, resolution_um), tuple(int(v) for v in origin))
        for s, origin in zip(slices, voxels, strict=True)
    ]
    start, shape = union_box(placed)
    placed = [
        PlacedSlice(p.data, tuple(o - s for o, s in zip(p.origin, start, strict=True)))
        for p in placed
    ]
    record = _record(slices, nominal, glitches, estimates, resolved, placed, thickness_um)
    record["output"] = {"shape": list(shape), "resolution_um": resolution_um}
    return StackPlan(placed, shape, resolution_um, record)


def write_stack(
    plan: StackPlan,
    sink: RegionSink,
    chunks: Sequence[int],
    dtype: np.dtype,
    progress: bool = True,
) -> None:
    """Assemble the planned volume into ``sink`` chunk by chunk.

    See :func:`linumpy.stack.assemble.assemble_volume`.
    """
    assemble_volume(plan.placed, plan.shape, chunks, sink, dtype, progress)


def _check_lateral_resolutions(slices: Sequence[SliceVolume]) -> None:
    first = slices[0].resolution_um
    for s in slices[1:]:
        if not np.allclose(s.resolution_um, first, rtol=0.01):
            raise InputError(
                f"slice {s.slice_id} has voxel size {s.resolution_um} um but slice "
                f"{slices[0].slice_id} has {first} um; process all slices with the same resolution"
            )


def _at_output_resolution(volume: SliceVolume, resolution_um: float) -> da.Array:
    """The slice's useful planes resampled to the isotropic output voxel size."""
    useful = volume.data[volume.useful_range[0] : volume.useful_range[1]]
    source_mm = tuple(r / 1000 for r in volume.resolution_um)
    return resample_to_resolution(useful, source_mm, (resolution_um / 1000,) * 3)


def _registration_factor(volume: SliceVolume, size: int) -> int:
    """Lateral block-averaging factor bringing a plane to at most ``size`` pixels."""
    return max(1, math.ceil(max(volume.data.shape[1:]) / size))


def _register_consecutive(
    previous: SliceVolume,
    current: SliceVolume,
    nominal_step_um: np.ndarray,
    z_tolerance_um: float,
    parameters: StackParameters,
) -> tuple[PairEstimate | None, np.ndarray | None]:
    """Register ``current`` against ``previous``; return the estimate and step (um)."""
    axial_um = previous.resolution_um[0]
    factor = _registration_factor(previous, parameters.registration_size)
    lateral_um = np.asarray(previous.resolution_um[1:]) * factor
    expected = nominal_step_um[0] / axial_um
    tolerance = z_tolerance_um / axial_um
    first = max(0, int(math.floor(expected - tolerance)))
    depth = min(
        parameters.n_planes,
        current.useful_depth,
        previous.useful_depth - int(math.ceil(expected + tolerance)),
    )
    offset = np.rint(nominal_step_um[1:] / lateral_um).astype(int)
    previous_window, current_window = _common_window(previous, current, offset, factor)
    if depth < 1 or previous_window is None:
        LOGGER.info("slices %d and %d do not overlap: motor placement kept",
                    previous.slice_id, current.slice_id)
        return None, None
    p0 = previous.useful_range[0]
    c0 = current.useful_range[0]
    last = min(previous.useful_depth, int(math.ceil(expected + tolerance)) + depth)
    previous_planes = _planes(previous.data[p0 + first : p0 + last], previous_window, factor)
    current_planes = _planes(current.data[c0 : c0 + depth], current_window, factor)
    estimate = register_pair(previous_planes, first, current_planes, expected, tolerance)
    step = np.concatenate(
        [[estimate.z_offset_px * axial_um], (offset + np.asarray(estimate.shift_yx_px)) * lateral_um]
    )
    LOGGER.debug("slice %d: %s", current.slice_id, estimate)
    return estimate, step


def _common_window(
    previous: SliceVolume, current: SliceVolume, offset: np.ndarray, factor: int
) -> tuple[tuple[slice, slice] | None, tuple[slice, slice] | None]:
    """Lateral windows (full-resolution pixels) of both slices over their common area.

    ``offset`` is the current slice's origin in the previous slice's frame,
    in registration pixels.
    """
    prev_shape = np.asarray(previous.data.shape[1:]) // factor
    curr_shape = np.asarray(current.data.shape[1:]) // factor
    start = np.maximum(0, offset)
    stop = np.minimum(prev_shape, offset + curr_shape)
    if np.any(stop - start < 8):
        return None, None
    prev_window = tuple(slice(int(a) * factor, int(b) * factor) for a, b in zip(start, stop))
    curr_window = tuple(
        slice(int(a - o) * factor, int(b - o) * factor) for a, b, o in zip(start, stop, offset)
    )
    return prev_window, curr_window


def _planes(data: da.Array, window: tuple[slice, slice], factor: int) -> np.ndarray:
    """Read planes over a lateral window, block-averaged by ``factor``, band-passed."""
    cropped = data[(slice(None), *window)].astype(np.float32)
    return bandpass_planes(block_mean(cropped, (1, factor, factor)).compute())


def _record(
    slices: Sequence[SliceVolume],
    nominal: np.ndarray,
    glitches: dict[str, list[int]],
    estimates: Sequence[PairEstimate | None],
    resolved,
    placed: Sequence[PlacedSlice],
    thickness_um: float,
) -> dict:
    """JSON-ready account of every placement decision."""
    per_slice = []
    for k, s in enumerate(slices):
        per_slice.append(
            {
                "slice_id": s.slice_id,
                "motor_origin_um": _rounded(nominal[k]),
                "origin_um": _rounded(resolved.origins_um[k]),
                "origin_voxel": list(placed[k].origin),
                "shape_voxel": list(placed[k].data.shape),
                "glitch_corrected": [a for a, idx in glitches.items() if k in idx],
                "registration": estimates[k].to_dict() if estimates[k] else None,
                "used_registration_z": resolved.used_z[k],
                "used_registration_lateral": resolved.used_lateral[k],
                "drift_clamped": resolved.drift_clamped[k],
            }
        )
    return {
        "slice_thickness_um": thickness_um,
        "axes": ["depth", "y", "x"],
        "slices": per_slice,
    }


def _rounded(values: np.ndarray) -> list[float]:
    return [round(float(v), 4) for v in values]
