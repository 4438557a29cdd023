#!/usr/bin/env python3
"""Lay one slice's raw tiles side by side on their nominal grid.

Tile (r, c) goes to [r * tile_y, c * tile_x] (not to its stage position), with
no blending; missing tiles are zeros. Writes the 3D mosaic grid (chunks: one
tile laterally) and its 2D average intensity projection
(mosaic_grid_2d_zNN.ome.zarr beside the output unless --aip is given), whose
attribute tile_least_plane_means, with its pixels, spares linum_stitch_3d.py --aip
a read of every tile.
"""

import argparse
from pathlib import Path

from linumpy.cli import add_omezarr_output_arguments, finite_float, make_parser, progress_enabled, run
from linumpy.io.naming import mosaic_grid_name
from linumpy.mosaic.options import DEFAULT_CONFIDENCE, DTYPES


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("input_dir", help="Raw acquisition folder (native tile folders or TIFF tiles).")
    parser.add_argument("out_zarr", help="Output 3D mosaic grid (.ome.zarr).")
    parser.add_argument("--slice", type=int, required=True, help="Slice id to lay out.")
    parser.add_argument("--aip", help="Output 2D AIP (default: mosaic_grid_2d_zNN.ome.zarr beside OUT_ZARR).")
    parser.add_argument("--resolution", type=finite_float, help="Lateral output resolution, um (default: the tiles').")
    parser.add_argument(
        "--axial_resolution", type=finite_float,
        help="Axial resolution of the raw tiles, um (default: acquisition.json's, else 1.5).",
    )
    parser.add_argument("--z_range", type=int, nargs=2, metavar=("Z0", "Z1"), help="Keep depth samples [Z0, Z1).")
    parser.add_argument("--dtype", choices=DTYPES, default="float32", help="Stored dtype [%(default)s].")
    parser.add_argument(
        "--no_fix_galvo_shift", action="store_true",
        help="Always crop the last n_extra A-lines (default: detect where the galvo-return band of "
        "native tiles really is and crop it there, see --galvo_confidence).",
    )
    curvature = parser.add_mutually_exclusive_group()
    curvature.add_argument(
        "--no_fix_field_curvature", action="store_true",
        help="Keep the depths as recorded (default: estimate the field curvature common to all tiles "
        "from this slice's tile overlaps and remove it when it reduces the held-out border depth mismatch).",
    )
    curvature.add_argument(
        "--field_curvature_json", metavar="JSON",
        help="Apply the acquisition's field curvature decision written by linum_estimate_field_curvature.py "
        "instead of deciding on this slice alone (the pipelines pass it).",
    )
    parser.add_argument(
        "--galvo_confidence", type=finite_float, default=DEFAULT_CONFIDENCE,
        help="Confidence in [0, 1] above which the detected band shift is applied [%(default)s].",
    )
    add_omezarr_output_arguments(parser)
    return parser


def main(args: argparse.Namespace) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from linumpy.io.acquisition import open_acquisition
    from linumpy.malloc import reuse_freed_memory_across_threads
    from linumpy.mosaic.galvo import detect_slice_band

    # every tile allocates the same arrays again, the reader thread the tiles and its file buffer, the workers
    # the encoded chunks: kept in one arena rather than mapped anew (and faulted in) when a thread's heap is full
    reuse_freed_memory_across_threads()
    section = open_acquisition(args.input_dir, args.axial_resolution).slice(args.slice)
    with ThreadPoolExecutor(1, thread_name_prefix="galvo") as detection:
        # the band is detected (reads of a few tiles, numpy) while zarr and the writers are imported
        galvo = None if args.no_fix_galvo_shift else detection.submit(detect_slice_band, section, args.galvo_confidence)
        from linumpy.mosaic.curvature_pool import load_acquisition_curvature
        from linumpy.mosaic.grid import write_mosaic_grid

        aip = args.aip or Path(args.out_zarr).parent / mosaic_grid_name(args.slice, dims=2)
        pooled = args.field_curvature_json
        curvature = load_acquisition_curvature(pooled).for_slice(section, pooled) if pooled else None
        write_mosaic_grid(
            section, args.out_zarr, aip, args.resolution, args.z_range, args.dtype,
            args.n_levels, args.compression, args.overwrite, progress_enabled(args),
            fix_galvo_shift=not args.no_fix_galvo_shift, galvo_confidence=args.galvo_confidence,
            fix_field_curvature=not args.no_fix_field_curvature, field_curvature=curvature,
            galvo=None if galvo is None else galvo.result(),
        )


if __name__ == "__main__":
    run(build_parser(), main)
