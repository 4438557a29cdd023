#!/usr/bin/env python3
"""Stack normalised slices into one isotropic brain volume.

Each slice goes at the depth its motor z says (encoder glitches corrected),
refined by registering its top planes against the previous slice (z overlap
by NCC, lateral shift by phase correlation; low-confidence estimates leave
the motor position). From each slice only its step to the next slice (at
least the thickness) plus --blend_overlap_um below its surface is kept (the
deeper, noisier planes are dropped); consecutive slices are blended with a
linear ramp over their overlap. The output is built chunk by chunk at --resolution and gets an
analysis pyramid (--pyramid_resolutions at or above the base resolution).
Every placement estimate is saved to --shifts_out; a QC record
(<out stem>_qc.json and figures) sits beside the output. See docs/stacking.md.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from linumpy.cli import add_overwrite_argument, make_parser, progress_enabled, run
from linumpy.errors import InputError
from linumpy.io.atomic import atomic_output, check_can_write
from linumpy.io.codecs import COMPRESSIONS, DEFAULT_COMPRESSION
from linumpy.io.motor_table import read_motor_positions
from linumpy.io.naming import parse_slice_id
from linumpy.io.sidecar import read_sidecar
from linumpy.io.zarr import AnalysisOmeZarrWriter, read_omezarr, read_omezarr_info
from linumpy.stack.placement import check_slice_sequence
from linumpy.stack.quality import write_stack_qc
from linumpy.stack.stacking import SliceVolume, StackParameters, plan_stack, write_stack

LOGGER = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("slices", nargs="+", metavar="SLICE_ZARR",
                        help="slice_zNN_normalize.ome.zarr files, in any order.")
    parser.add_argument("output", metavar="OUT_ZARR", help="Stacked volume (.ome.zarr).")
    parser.add_argument("--motor_positions", required=True, metavar="CSV",
                        help="Motor table (linum_collect_motor_positions.py).")
    parser.add_argument("--slice_thickness_um", type=float,
                        help="Vibratome slice thickness [from --acquisition_json, "
                             "else the median motor z step].")
    parser.add_argument("--acquisition_json", metavar="JSON",
                        help="acquisition.json sidecar holding slice_thickness_um.")
    parser.add_argument("--blend_overlap_um", type=float, metavar="UM",
                        help="Depth kept below each slice's surface beyond its step to the next "
                             "slice (at least the thickness), blended with the next slice; deeper "
                             "planes are dropped [10%% of the thickness].")
    parser.add_argument("--resolution", type=float, default=10.0, metavar="UM",
                        help="Isotropic output voxel size, micrometres [%(default)s].")
    parser.add_argument("--pyramid_resolutions", type=float, nargs="+", default=[10, 25, 50, 100],
                        metavar="UM", help="Analysis pyramid resolutions, micrometres; only those "
                                           "at or above --resolution are written [%(default)s].")
    parser.add_argument("--allow_gaps", action="store_true",
                        help="Fill missing slice ids with zeros instead of failing.")
    parser.add_argument("--shifts_out", metavar="JSON",
                        help="Placement estimates for QC [<out stem>_shifts.json].")
    parser.add_argument("--chunks", type=int, nargs=3, metavar=("Z", "Y", "X"),
                        help="Output chunk shape [(64, 256, 256) capped by the volume].")
    parser.add_argument("--compression", choices=COMPRESSIONS, default=DEFAULT_COMPRESSION,
                        help="Output codec [%(default)s].")
    add_overwrite_argument(parser)
    return parser


def main(args: argparse.Namespace) -> None:
    _check_positive(resolution=args.resolution, slice_thickness_um=args.slice_thickness_um or 1.0,
                    pyramid_resolutions=min(args.pyramid_resolutions))
    if args.blend_overlap_um is not None and args.blend_overlap_um < 0:
        raise InputError(f"--blend_overlap_um must be >= 0, got {args.blend_overlap_um}")
    output = Path(args.output)
    shifts_out = Path(args.shifts_out) if args.shifts_out else _stem_path(output, "_shifts.json")
    check_can_write(output, args.overwrite)
    check_can_write(shifts_out, args.overwrite)
    paths = _ordered_slices(args.slices, args.allow_gaps)
    motors = _motor_rows(args.motor_positions, list(paths))
    thickness = _slice_thickness(args, motors)
    volumes = [_slice_volume(i, p) for i, p in paths.items()]
    parameters = StackParameters(blend_overlap_um=args.blend_overlap_um)
    plan = plan_stack(volumes, motors, thickness, args.resolution, parameters)
    dtype = _common_dtype(volumes)
    with AnalysisOmeZarrWriter(output, plan.shape, args.chunks, dtype, args.compression,
                               args.overwrite) as writer:
        write_stack(plan, writer, writer.write_block, dtype, progress_enabled(args))
        attributes = {"slice_ids": list(paths), "slice_thickness_um": thickness,
                      "stack_shifts": shifts_out.name}
        writer.finalize((args.resolution / 1000,) * 3, args.pyramid_resolutions, attributes)
    with atomic_output(shifts_out, args.overwrite) as tmp:
        tmp.write_text(json.dumps(plan.record, indent=1, sort_keys=True) + "\n")
    write_stack_qc(output, plan.record, args.resolution)


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if value <= 0:
            raise InputError(f"--{name} must be > 0, got {value}")


def _stem_path(output: Path, suffix: str) -> Path:
    name = output.name.removesuffix(".ome.zarr")
    return output.with_name(name + suffix)


def _ordered_slices(names: list[str], allow_gaps: bool) -> dict[int, Path]:
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


def _motor_rows(csv_path: str, slice_ids: list[int]) -> np.ndarray:
    """``(n, 3)`` motor (z, y, x) in mm of the given slices."""
    table = read_motor_positions(csv_path)
    missing = [i for i in slice_ids if i not in table]
    if missing:
        raise InputError(f"{csv_path}: no motor position for slice(s) {missing}; recollect the table")
    return np.array([[table[i].z_mm, table[i].y_mm, table[i].x_mm] for i in slice_ids])


def _slice_thickness(args: argparse.Namespace, motors: np.ndarray) -> float:
    if args.slice_thickness_um:
        return args.slice_thickness_um
    if args.acquisition_json:
        thickness = read_sidecar(args.acquisition_json).slice_thickness_um
        if thickness is None:
            raise InputError(f"{args.acquisition_json}: no slice_thickness_um; add it or pass --slice_thickness_um")
        return thickness
    if len(motors) < 2:
        return 0.0  # a single slice has nothing to place it against
    thickness = float(np.median(np.abs(np.diff(motors[:, 0])))) * 1000
    LOGGER.info("slice thickness %.2f um taken from the motor z steps", thickness)
    return thickness


def _slice_volume(slice_id: int, path: Path) -> SliceVolume:
    """Open every pyramid level of a slice, lazily."""
    info = read_omezarr_info(path)
    if info.ndim != 3:
        raise InputError(f"{path}: expected a 3D (z, y, x) slice, got {info.ndim}D")
    levels = []
    for index in range(len(info.levels)):
        data, scale_mm = read_omezarr(path, index)
        levels.append((data, tuple(s * 1000 for s in scale_mm)))
    return SliceVolume(slice_id, levels, _useful_range(path, info, info.shape[0]))


def _useful_range(path: Path, info, depth: int) -> tuple[int, int]:
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


if __name__ == "__main__":
    run(build_parser(), main)
