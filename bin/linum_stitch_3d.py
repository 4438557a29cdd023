#!/usr/bin/env python3
"""Stitch one slice's 3D mosaic grid into a single volume.

Neighbouring tiles are registered on their average intensity projections
(flat field fitted to the overlaps and divided out; band-passed NCC searched
within --max_shift_px of the stage offset; sub-pixel Lucas-Kanade fit); a pair
is kept when its peak clearly beats every rival and it agrees with the others
(loop residuals of a weighted least-squares solve). A tile left without pairs
is placed by the joint evidence of all its pairs with placed neighbours when
that is significant; otherwise it keeps its position on the fitted stage
model: never worse than the stage. The same lateral
positions, rounded to whole pixels, are used at every depth; with --flatfield
auto (default) the tiles' vignetting is divided out of the signal above the
noise floor as they are fused, when the overlaps support it (QC record). The estimated
transform is saved as JSON so it can be applied to another channel or slice.

Example:
    linum_stitch_3d.py mosaic_grid_3d_z00.ome.zarr slice_z00_stitch_3d.ome.zarr \
        --aip mosaic_grid_2d_z00.ome.zarr
"""

import argparse

from linumpy.cli import add_omezarr_output_arguments, finite_float, make_parser, progress_enabled, run
from linumpy.stitching.options import BLEND_MODES, DEFAULT_FLATFIELD, DEFAULT_MAX_SHIFT_PX, FLATFIELD_MODES


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("in_zarr", help="Mosaic grid OME-Zarr (mosaic_grid_3d_zNN.ome.zarr).")
    parser.add_argument("out_zarr", help="Stitched OME-Zarr to write (slice_zNN_stitch_3d.ome.zarr).")
    parser.add_argument("--transform_out", metavar="JSON",
                        help="Where to save the transform [<out stem>_transform.json].")
    parser.add_argument("--transform", metavar="JSON",
                        help="Apply this saved transform instead of estimating one.")
    parser.add_argument("--aip", metavar="ZARR",
                        help="The mosaic grid's AIP (mosaic_grid_2d_zNN.ome.zarr): take the tiles' projections "
                             "and least plane means from it instead of reading every tile, when it holds this "
                             "grid's (checked; otherwise the tiles are read and the QC record says why).")
    parser.add_argument("--blend", choices=BLEND_MODES, default="feather",
                        help="Fusion of overlapping tiles [%(default)s].")
    parser.add_argument("--max_shift_px", type=finite_float, default=DEFAULT_MAX_SHIFT_PX,
                        help="Stage uncertainty: largest correction of the nominal offset of two "
                             "neighbouring tiles searched, pixels [%(default)s].")
    parser.add_argument("--flatfield", choices=FLATFIELD_MODES, default=DEFAULT_FLATFIELD,
                        help="Divide the tiles' flat field (vignetting) out at fusion: 'auto' fits it to "
                             "the overlaps above the noise floor and applies it when well supported "
                             "(the QC record says which) [%(default)s].")
    add_omezarr_output_arguments(parser)
    return parser


def main(args: argparse.Namespace) -> None:
    from linumpy.malloc import reuse_freed_memory_across_threads

    # the fused blocks (16 MB on the `large` slice), the decoded tile slabs and the encoded chunks one thread frees,
    # another allocates again: kept in one arena instead of new mappings the kernel faults in and zeroes
    reuse_freed_memory_across_threads(largest_block_mb=128)
    from linumpy.stitching.stitch import stitch_mosaic_grid

    stitch_mosaic_grid(
        args.in_zarr,
        args.out_zarr,
        transform_path=args.transform,
        transform_out=args.transform_out,
        aip_path=args.aip,
        blend=args.blend,
        max_shift_px=args.max_shift_px,
        flatfield=args.flatfield,
        n_levels=args.n_levels,
        compression=args.compression,
        overwrite=args.overwrite,
        progress=progress_enabled(args),
    )


if __name__ == "__main__":
    run(build_parser(), main)
