#!/usr/bin/env python3
"""Convert TIFF <-> OME-Zarr, or re-encode an OME-Zarr image.

The direction follows the file names: IN.tif -> OUT.ome.zarr writes the image
and its 2x lateral pyramid; IN.ome.zarr -> OUT.tif writes level 0 as a TIFF
stack; IN.ome.zarr -> OUT.ome.zarr copies every level with new chunks, codec,
NGFF version or shards (or rebuilds the pyramid when --n_levels is given).
"""

from __future__ import annotations

import argparse

from linumpy.cli import add_overwrite_argument, finite_float, make_parser, run
from linumpy.io.codecs import COMPRESSIONS, DEFAULT_COMPRESSION
from linumpy.io.options import NGFF_VERSIONS


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("input", metavar="IN", help="Input .tif/.tiff or .ome.zarr.")
    parser.add_argument("output", metavar="OUT", help="Output .ome.zarr or .tif/.tiff.")
    parser.add_argument("--voxel_size_um", type=finite_float, nargs="+", metavar="UM",
                        help="Voxel size of a TIFF input, micrometres (declared, not resampled): one "
                             "value (isotropic) or Z Y X [the input's metadata].")
    parser.add_argument("--chunks", type=int, nargs="+", metavar="N",
                        help="Chunk shape (z y x or y x). Default: 64 256 256 / 1024 1024, or the input's.")
    parser.add_argument("--compression", choices=COMPRESSIONS, default=DEFAULT_COMPRESSION,
                        help="Compression codec [%(default)s].")
    parser.add_argument("--n_levels", type=int,
                        help="Number of 2x lateral pyramid levels above level 0 "
                             "[5 for TIFF input; OME-Zarr input keeps its levels].")
    parser.add_argument("--ngff_version", choices=NGFF_VERSIONS, default="0.4",
                        help="0.4 (Zarr v2) or 0.5 (Zarr v3) [%(default)s].")
    parser.add_argument("--shards", type=int, nargs="+", metavar="N",
                        help="Shard shape, a multiple of the chunks (needs --ngff_version 0.5).")
    add_overwrite_argument(parser)
    return parser


def main(args: argparse.Namespace) -> None:
    from linumpy.io.convert import convert

    convert(
        args.input, args.output, resolution_um=args.voxel_size_um, chunks=args.chunks,
        compression=args.compression, n_levels=args.n_levels, ngff_version=args.ngff_version,
        shards=args.shards, overwrite=args.overwrite,
    )


if __name__ == "__main__":
    run(build_parser(), main)
