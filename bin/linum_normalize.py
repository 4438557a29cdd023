#!/usr/bin/env python3
"""Normalize the intensity of one slice by robust percentiles of its tissue.

The tissue mask is Otsu's threshold on the smoothed average intensity
projection; the LOW and HIGH percentiles of the tissue voxels map to 0 and 1
(clipped). With --flatfield, the lateral illumination profile shared by the
tiles is estimated from their tissue-masked projections and divided out
first. An empty slice (all zeros) gives zeros. See docs/intensity.md.
"""

from __future__ import annotations

import argparse

from linumpy.cli import add_omezarr_output_arguments, finite_float, make_parser, progress_enabled, run
from linumpy.intensity.options import DEFAULT_PERCENTILES, DEFAULT_SPECKLE_CAP, NORMALIZE_DTYPES


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("in_zarr", help="Input slice (z, y, x) OME-Zarr.")
    parser.add_argument("out_zarr", help="Output OME-Zarr.")
    parser.add_argument("--percentiles", type=finite_float, nargs=2, metavar=("LOW", "HIGH"),
                        default=DEFAULT_PERCENTILES,
                        help="Tissue percentiles mapped to 0 and 1 [%(default)s].")
    parser.add_argument("--flatfield", action="store_true",
                        help="Correct the lateral illumination estimated across the tiles.")
    parser.add_argument("--speckle_cap", type=finite_float, default=DEFAULT_SPECKLE_CAP,
                        help="Cap every voxel at this multiple of the mean of the 5 x 5 x 5 voxels around it before "
                             "the percentile map: the speckle's tail trimmed alike in every tissue (0: off) "
                             "[%(default)s].")
    parser.add_argument("--dtype", choices=NORMALIZE_DTYPES, default="float32",
                        help="float32 in [0, 1] or uint16 in 0..65535 [%(default)s].")
    add_omezarr_output_arguments(parser)
    return parser


def main(args: argparse.Namespace) -> None:
    from linumpy.malloc import reuse_freed_memory_across_threads

    # the arrays of every block (its voxels, the normalized and converted values: 11.5 MB each on the `large`
    # slice), allocated and freed by the worker threads block after block: reused in one arena instead of new
    # mappings the kernel faults in and zeroes
    reuse_freed_memory_across_threads()
    from linumpy.intensity.slice_normalization import NormalizeSettings, normalize_slice

    settings = NormalizeSettings(percentiles=tuple(args.percentiles), flatfield=args.flatfield, dtype=args.dtype,
                                 speckle_cap=args.speckle_cap)
    normalize_slice(args.in_zarr, args.out_zarr, settings, n_levels=args.n_levels,
                    compression=args.compression, overwrite=args.overwrite, progress=progress_enabled(args))


if __name__ == "__main__":
    run(build_parser(), main)
