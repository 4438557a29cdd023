"""Stack slice files into the brain volume: the file-level entry point.

Reads the normalized slices, the motor table and the slice thickness, plans
the placement (:func:`linumpy.stack.stacking.plan_stack`), writes the volume
with the analysis pyramid, the placement estimates (JSON) and the QC record.
The QC's serial work runs beside the rest (:mod:`linumpy.stack.quality`,
figures drawn with Pillow, no matplotlib): the ``shifts`` figure drawn while
the volume is written, and, when the QC reads level 0, its statistics
counted from the blocks written and its ``views`` drawn while the pyramid is
built.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dask
import numpy as np
from threadpoolctl import threadpool_limits

from linumpy.errors import InputError
from linumpy.io.atomic import atomic_output, check_can_write
from linumpy.io.codecs import DEFAULT_COMPRESSION
from linumpy.io.motor_table import read_motor_positions
from linumpy.io.naming import parse_slice_id
from linumpy.io.zarr import AnalysisOmeZarrWriter, OmeZarrInfo, read_omezarr_info, read_omezarr_levels
from linumpy.stack.attenuation import slice_attenuations, uncompensated_by_id
from linumpy.stack.decoded import DecodedChunks
from linumpy.stack.options import DEFAULT_PYRAMID_RESOLUTIONS_UM, STACK_MAX_ROTATION_DEG
from linumpy.stack.placement import check_slice_sequence, thickness_from_steps
from linumpy.stack.quality import WrittenStatistics, qc_reads_finest, shifts_png, start_views, write_stack_qc
from linumpy.stack.stacking import FOCUS_SKIPPED_PREFIX, SliceVolume, StackParameters, write_stack
from linumpy.stack.voxel import plan_checking_axial_voxel
from linumpy.stack.windows import DEPTH_BLOCK

LOGGER = logging.getLogger(__name__)
#: dask settings of the whole stack: no low-level task fusion. The stack computes many small graphs
#: (a few planes for each registration, one output chunk per assembly job) whose fused tasks dask
#: re-orders on every call: about a quarter of the assembly's CPU time on the five ``small`` slices
#: (2.4 instead of 3.1-3.4 s, the same bytes).
UNFUSED = {"optimization.fuse.active": False}
#: BLAS threads of the whole stack. Its matrix products are small (the rotation search's Gauss-Newton
#: normal equations, the registration's upsampled DFT) and run on the step's own threads already:
#: OpenBLAS's threads only waited for each other (the upsampled DFT of a 480 px plane took 47 CPU ms
#: instead of 4 on the shared machine), and the split of its dot products moved the z offsets by up to 4e-7 px
#: with the number of BLAS threads (cores).
BLAS_THREADS = 1


def stack_slice_files(
    slice_paths: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    motor_positions: str | os.PathLike,
    *,
    resolution_um: float | None = None,
    pyramid_resolutions_um: Sequence[float] = DEFAULT_PYRAMID_RESOLUTIONS_UM,
    slice_thickness_um: float | None = None,
    acquisition_json: str | os.PathLike | None = None,
    blend_overlap_um: float | None = None,
    max_rotation_deg: float = STACK_MAX_ROTATION_DEG,
    interpolate_missing: bool = False,
    allow_gaps: bool = False,
    shifts_out: str | os.PathLike | None = None,
    uncompensated: Sequence[str | os.PathLike] = (),
    chunks: Sequence[int] | None = None,
    compression: str = DEFAULT_COMPRESSION,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Stack normalized slice files into one OME-Zarr volume.

    Parameters
    ----------
    slice_paths : sequence of path-like
        ``slice_zNN_normalize.ome.zarr`` files in any order; ordered by the
        slice id in their names.
    output : path-like
        The stacked volume (``.ome.zarr``).
    motor_positions : path-like
        Motor table written by ``linum_collect_motor_positions.py``.
    resolution_um : float, optional
        Isotropic output voxel size, micrometres; default
        :func:`finest_common_resolution_um` (full lateral resolution).
    pyramid_resolutions_um : sequence of float
        Analysis pyramid; only resolutions at or above ``resolution_um`` exist.
    slice_thickness_um : float, optional
        Vibratome slice thickness; else ``acquisition_json``'s, else the motor
        z step most steps agree on (:func:`linumpy.stack.placement.thickness_from_steps`).
    acquisition_json : path-like, optional
        ``acquisition.json`` sidecar holding ``slice_thickness_um``.
    blend_overlap_um : float, optional
        Depth kept below each slice beyond its step to the next slice, blended
        with the next slice (default: see :class:`StackParameters`).
    max_rotation_deg : float
        Largest rotation about z searched between consecutive slices
        (:mod:`linumpy.stack.rotation`); 0: translation only.
    interpolate_missing : bool
        Fill the depth of missing slice ids from their neighbours
        (:mod:`linumpy.stack.interpolate`); listed in the attributes as
        ``interpolated_slices``.
    allow_gaps : bool
        Fill missing slice ids with zeros instead of refusing them.
    shifts_out : path-like, optional
        Placement estimates (JSON); default ``<out stem>_shifts.json``.
    uncompensated : sequence of path-like
        Each slice's signal before attenuation compensation
        (``slice_zNN_axial_corr_uncompensated.ome.zarr``): with them, the
        record gets each slice's tissue attenuation measured through its overlap
        with the next slice (:mod:`linumpy.stack.attenuation`); without, none.
    chunks : sequence of int, optional
        Output chunk shape (z, y, x).
    compression : str
        Output codec name.
    overwrite : bool
        Replace existing outputs.
    progress : bool
        Show a progress bar.

    Returns
    -------
    Path
        The shifts JSON written beside the volume.
    """
    _check_positive(resolution=1.0 if resolution_um is None else resolution_um, slice_thickness_um=slice_thickness_um or 1.0,
                    pyramid_resolutions=min(pyramid_resolutions_um))
    if blend_overlap_um is not None and blend_overlap_um < 0:
        raise InputError(f"--blend_overlap_um must be >= 0, got {blend_overlap_um}")
    output = Path(output)
    shifts_out = Path(shifts_out) if shifts_out else _stem_path(output, "_shifts.json")
    check_can_write(output, overwrite)
    check_can_write(shifts_out, overwrite)
    paths = _ordered_slices(slice_paths, allow_gaps)
    motors = _motor_rows(motor_positions, list(paths))
    thickness = _slice_thickness(slice_thickness_um, acquisition_json, motors, list(paths))
    with (dask.config.set(UNFUSED), threadpool_limits(limits=BLAS_THREADS, user_api="blas"),
          ThreadPoolExecutor(1, thread_name_prefix="stack-qc") as qc_thread):
        decoded = DecodedChunks()  # the plan's repeated chunk reads decoded once (linumpy.stack.decoded)
        volumes = [_slice_volume(i, p, decoded) for i, p in paths.items()]
        if resolution_um is None:
            resolution_um = finest_common_resolution_um(volumes)
            LOGGER.info("output voxel size %g um: the slices' finest lateral pixel", resolution_um)
        parameters = StackParameters(blend_overlap_um=blend_overlap_um, max_rotation_deg=max_rotation_deg,
                                     interpolate_missing=interpolate_missing)
        plan = plan_checking_axial_voxel(volumes, motors, thickness, resolution_um, parameters)
        decoded.close()  # the assembly reads each chunk once
        if uncompensated:
            measured = slice_attenuations(plan.record, uncompensated_by_id(uncompensated))
            for entry, attenuation in zip(plan.record["slices"], measured, strict=True):
                entry["attenuation"] = attenuation
        shifts_figure = qc_thread.submit(shifts_png, plan.record, resolution_um)  # drawn while the volume is written
        dtype = _common_dtype(volumes)
        with AnalysisOmeZarrWriter(output, plan.shape, chunks, dtype, compression, overwrite) as writer:
            # the QC's statistics counted as the volume is written when the QC reads level 0 (no pass over it)
            written = (WrittenStatistics(writer, plan.shape)
                       if qc_reads_finest(plan.shape, resolution_um, pyramid_resolutions_um) else None)
            write_stack(plan, written or writer, writer.write_block, dtype, progress)
            views = None if written is None else start_views(writer.stored_level0(), written, resolution_um, qc_thread)
            attributes = {"slice_ids": list(paths), "slice_thickness_um": round(thickness, 6),  # no float noise
                          "stack_shifts": shifts_out.name}
            if interpolate_missing:
                attributes["interpolated_slices"] = plan.record["interpolated_slices"]
            writer.finalize((resolution_um / 1000,) * 3, list(pyramid_resolutions_um), attributes)
        with atomic_output(shifts_out, overwrite) as tmp:
            tmp.write_text(json.dumps(plan.record, indent=1, sort_keys=True) + "\n")
        write_stack_qc(output, plan.record, resolution_um, shifts_figure.result(), written,
                       None if views is None else views.result())
    return shifts_out


def finest_common_resolution_um(volumes: Sequence[SliceVolume]) -> float:
    """The finest isotropic voxel size every slice supports, micrometres.

    That is the coarsest of the slices' level-0 lateral pixel sizes (rounded
    to 1e-6 um), so no slice is upsampled laterally.
    """
    return round(max(max(volume.levels[0][1][1:]) for volume in volumes), 6)


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if not (math.isfinite(value) and value > 0):
            raise InputError(f"--{name} must be a positive number, got {value}")


def _stem_path(output: Path, suffix: str) -> Path:
    name = output.name.removesuffix(".ome.zarr")
    return output.with_name(name + suffix)


def _ordered_slices(names: Sequence[str | os.PathLike], allow_gaps: bool) -> dict[int, Path]:
    """Map slice id -> path, sorted by id, gaps refused unless allowed."""
    paths: dict[int, Path] = {}
    ids = []
    for name in names:
        try:
            slice_id = parse_slice_id(Path(name).name)
        except ValueError:
            raise InputError(f"{name}: no slice id in the name; expected slice_zNN_normalize.ome.zarr") from None
        ids.append(slice_id)
        paths[slice_id] = Path(name)
    return {i: paths[i] for i in check_slice_sequence(ids, allow_gaps)}


def _motor_rows(csv_path: str | os.PathLike, slice_ids: list[int]) -> np.ndarray:
    """``(n, 3)`` motor (z, y, x) in mm of the given slices."""
    table = read_motor_positions(csv_path)
    missing = [i for i in slice_ids if i not in table]
    if missing:
        raise InputError(f"{csv_path}: no motor position for slice(s) {missing}; recollect the table")
    return np.array([[table[i].z_mm, table[i].y_mm, table[i].x_mm] for i in slice_ids])


def _slice_thickness(
    thickness_um: float | None, acquisition_json: str | os.PathLike | None, motors: np.ndarray,
    slice_ids: list[int],
) -> float:
    """The vibratome cut: given, else the sidecar's, else the motor z step per slice id most steps agree on.

    A sidecar without ``slice_thickness_um`` (one written for the axial resolution alone) leaves the
    thickness to the motor steps, as without a sidecar. Slices left out (excluded, or a subset) make the
    motor steps span several cuts, so each step is divided by the slice-id gap it covers.
    """
    if thickness_um:
        return thickness_um
    if acquisition_json:
        from linumpy.io.sidecar import read_sidecar  # pydantic: imported only for a sidecar (about 0.15 s)

        thickness = read_sidecar(acquisition_json).slice_thickness_um
        if thickness is not None:
            return thickness
        LOGGER.info("%s gives no slice_thickness_um: the thickness from the motor z steps", acquisition_json)
    if len(motors) < 2:
        return 0.0  # a single slice has nothing to place it against
    steps = np.abs(np.diff(motors[:, 0])) / np.diff(np.asarray(slice_ids, dtype=float))
    thickness = thickness_from_steps(steps * 1000)
    LOGGER.info("slice thickness %.2f um taken from the motor z steps", thickness)
    return thickness


def _slice_volume(slice_id: int, path: Path, decoded: DecodedChunks | None = None) -> SliceVolume:
    """Open every pyramid level of a slice, lazily (its chunks read through ``decoded`` when given)."""
    info = read_omezarr_info(path)
    if info.ndim != 3:
        raise InputError(f"{path}: expected a 3D (z, y, x) slice, got {info.ndim}D")
    reads = None if decoded is None else decoded.reads
    levels = [(data, tuple(s * 1000 for s in scale_mm)) for data, scale_mm in read_omezarr_levels(path, reads=reads)]
    # the pairs read a few planes of each slice several times: in runs of DEPTH_BLOCK planes (of a Blosc block's
    # where deeper), each read decodes only the Blosc blocks holding its planes (the assembly reads every plane:
    # whole chunks, once each)
    runs = [(data, scale) for (data, _), (_, scale) in zip(read_omezarr_levels(path, DEPTH_BLOCK, reads), levels)]
    plane = info.attributes.get("surface_plane_px")
    values = info.attributes.get("normalize_values")
    focus_mode = str(info.attributes.get("focus_mode", ""))
    return SliceVolume(slice_id, levels, _useful_range(path, info, info.shape[0]),
                       None if plane is None else tuple(float(v) for v in plane),
                       None if values is None else float(values[1] - values[0]),
                       None if all(r.chunks == d.chunks for (r, _), (d, _) in zip(runs, levels)) else runs,
                       focus_mode if focus_mode.startswith(FOCUS_SKIPPED_PREFIX) else None)


def _useful_range(path: Path, info: OmeZarrInfo, depth: int) -> tuple[int, int]:
    """Planes below the flattened surface, from the axial correction's attributes.

    ``surface_depth_px`` is the plane the surface was flattened to and
    ``useful_depth_px`` the depth kept (both at level 0); without them the
    whole depth is used.
    """
    start = int(info.attributes.get("surface_depth_px", 0))
    stop = min(depth, int(info.attributes.get("useful_depth_px", depth)))
    if stop <= start:
        raise InputError(f"{path}: no useful planes (surface at plane {start} of {depth}); "
                         "rerun the axial correction with a larger --useful_depth_um")
    return start, stop


def _common_dtype(volumes: list[SliceVolume]) -> np.dtype:
    dtypes = {np.dtype(v.levels[0][0].dtype) for v in volumes}
    return dtypes.pop() if len(dtypes) == 1 else np.dtype(np.float32)
