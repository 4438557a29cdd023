#!/usr/bin/env python3
"""Stack normalised slices into one isotropic brain volume.

Each slice goes at the depth its motor z says (encoder glitches corrected),
refined by registering its top planes against the previous slice (rotation
about z up to --max_rotation_deg, undone first when confidently found; z
overlap by NCC, lateral shift by phase correlation; low-confidence estimates
leave the motor position). From each slice only its step to the next slice (at
least the thickness) plus --blend_overlap_um below its surface is kept (the
deeper, noisier planes are dropped); consecutive slices are blended with a
linear ramp over their overlap (a speckle-limited overlap, by default: over
60% of the thickness, equal weights but at its ends). Without --blend_overlap_um,
each slice is also averaged with the slices below it as deep as it images the
tissue about as well as they do, each plane weighted by the inverse of its
error measured on the overlaps. The output is built chunk by chunk at --resolution (default:
the slices' finest lateral pixel, i.e. full resolution) and gets an
analysis pyramid (--pyramid_resolutions at or above the base resolution).
Every placement estimate is saved to --shifts_out; a QC record
(<out stem>_qc.json and figures) sits beside the output. See docs/stacking.md.
"""

from __future__ import annotations

import argparse

from linumpy.cli import (
    add_overwrite_argument,
    add_workers_argument,
    finite_float,
    frozen_imports,
    make_parser,
    progress_enabled,
    run,
)
from linumpy.io.codecs import COMPRESSIONS, DEFAULT_COMPRESSION
from linumpy.stack.options import DEFAULT_PYRAMID_RESOLUTIONS_UM, STACK_MAX_ROTATION_DEG


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("slices", nargs="+", metavar="SLICE_ZARR",
                        help="slice_zNN_normalize.ome.zarr files, in any order.")
    parser.add_argument("output", metavar="OUT_ZARR", help="Stacked volume (.ome.zarr).")
    parser.add_argument("--motor_positions", required=True, metavar="CSV",
                        help="Motor table (linum_collect_motor_positions.py).")
    parser.add_argument("--slice_thickness_um", type=finite_float,
                        help="Vibratome slice thickness [from --acquisition_json, "
                             "else the motor z step most steps agree on].")
    parser.add_argument("--acquisition_json", metavar="JSON",
                        help="acquisition.json sidecar holding slice_thickness_um.")
    parser.add_argument("--blend_overlap_um", type=finite_float, metavar="UM",
                        help="Depth kept below each slice's surface beyond its step to the next "
                             "slice (at least the thickness), blended with the next slice; deeper "
                             "planes are dropped; the last slice keeps at most 10%% of the "
                             "thickness [10%% of the thickness; 60%% where the overlap's speckle "
                             "ceiling is below 0.6; and averaged deeper, each plane weighted by its "
                             "error measured on the overlaps, while it carries >= 20%% of the weight].")
    parser.add_argument("--resolution", type=finite_float, metavar="UM",
                        help="Isotropic output voxel size, micrometres [the slices' finest lateral pixel: "
                             "full resolution].")
    parser.add_argument("--pyramid_resolutions", type=finite_float, nargs="+", default=list(DEFAULT_PYRAMID_RESOLUTIONS_UM),
                        metavar="UM", help="Analysis pyramid resolutions, micrometres; only those "
                                           "at or above --resolution are written [%(default)s].")
    parser.add_argument("--max_rotation_deg", type=finite_float, default=STACK_MAX_ROTATION_DEG, metavar="DEG",
                        help="Largest rotation about z searched between consecutive slices, undone when "
                             "confidently found, e.g. 5 (0: translation only; opt-in) [%(default)s].")
    parser.add_argument("--allow_gaps", action="store_true",
                        help="Fill missing slice ids with zeros instead of failing.")
    parser.add_argument("--interpolate_missing", action="store_true",
                        help="With gaps: fill a missing slice's depth from its neighbours (a cubic in depth, "
                             "listed as interpolated_slices in the attributes and QC record) instead of zeros.")
    parser.add_argument("--shifts_out", metavar="JSON",
                        help="Placement estimates for QC [<out stem>_shifts.json].")
    parser.add_argument("--uncompensated", nargs="+", default=[], metavar="ZARR",
                        help="slice_zNN_axial_corr_uncompensated.ome.zarr files (linum_axial_corr.py): measure "
                             "each slice's tissue attenuation through its overlap with the next slice, in the "
                             "QC record [not measured].")
    parser.add_argument("--chunks", type=int, nargs=3, metavar=("Z", "Y", "X"),
                        help="Output chunk shape, voxels [64 256 256, capped by the volume].")
    parser.add_argument("--compression", choices=COMPRESSIONS, default=DEFAULT_COMPRESSION,
                        help="Output codec [%(default)s].")
    add_workers_argument(parser)
    add_overwrite_argument(parser)
    return parser


def main(args: argparse.Namespace) -> None:
    with frozen_imports():  # no garbage collections over the libraries' objects (linumpy.cli.frozen_imports)
        from linumpy.malloc import reuse_freed_memory_across_threads
        from linumpy.stack.files import stack_slice_files

    reuse_freed_memory_across_threads()  # freed planes and regions reused, not faulted in anew (linumpy.malloc)
    stack_slice_files(
        args.slices, args.output, args.motor_positions,
        resolution_um=args.resolution, pyramid_resolutions_um=args.pyramid_resolutions,
        slice_thickness_um=args.slice_thickness_um, acquisition_json=args.acquisition_json,
        blend_overlap_um=args.blend_overlap_um, max_rotation_deg=args.max_rotation_deg,
        interpolate_missing=args.interpolate_missing, allow_gaps=args.allow_gaps,
        shifts_out=args.shifts_out, uncompensated=args.uncompensated, chunks=args.chunks, compression=args.compression,
        overwrite=args.overwrite, progress=progress_enabled(args),
    )


if __name__ == "__main__":
    run(build_parser(), main)
