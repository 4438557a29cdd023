#!/usr/bin/env python3
"""Estimate the field (focal) curvature of an acquisition once, from several slices.

Reads the central tiles of up to --max_slices slices spread through the
acquisition, fits one depth offset q(u, v) common to every tile from the
depth differences of the tissue interface across their overlaps, and decides
once whether removing it helps (the gates of docs/lab-parity.md). Writes the
decision as JSON (OUT_JSON) and its QC record (<out stem>_qc.json); every
mosaic grid then applies it (linum_create_mosaic_grid_3d.py --field_curvature_json).
"""

import argparse

from linumpy.cli import add_overwrite_argument, add_workers_argument, finite_float, make_parser, positive_int, run
from linumpy.mosaic.options import CURVATURE_MAX_SLICES, DEFAULT_CONFIDENCE


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("input_dir", help="Raw acquisition folder (native tile folders or TIFF tiles).")
    parser.add_argument("out_json", help="Output decision (.json).")
    parser.add_argument(
        "--max_slices", type=positive_int, default=CURVATURE_MAX_SLICES,
        help="Slices sampled, spread evenly through the acquisition [%(default)s].",
    )
    parser.add_argument(
        "--axial_resolution", type=finite_float,
        help="Axial resolution of the raw tiles, um (default: acquisition.json's, else 1.5).",
    )
    parser.add_argument(
        "--no_fix_field_curvature", action="store_true",
        help="Write the decision 'off' without estimating (status disabled).",
    )
    parser.add_argument(
        "--no_fix_galvo_shift", action="store_true",
        help="Read the tiles with the nominal galvo-band crop (as linum_create_mosaic_grid_3d.py does with it).",
    )
    parser.add_argument(
        "--galvo_confidence", type=finite_float, default=DEFAULT_CONFIDENCE,
        help="Confidence in [0, 1] above which a detected band shift is applied [%(default)s].",
    )
    add_workers_argument(parser)
    add_overwrite_argument(parser)
    return parser


def main(args: argparse.Namespace) -> None:
    from linumpy.io.acquisition import open_acquisition
    from linumpy.mosaic.curvature_pool import (
        disabled_curvature, estimate_acquisition_curvature, save_acquisition_curvature,
    )

    acquisition = open_acquisition(args.input_dir, args.axial_resolution)
    if args.no_fix_field_curvature:
        estimate = disabled_curvature(acquisition)
    else:
        estimate = estimate_acquisition_curvature(
            acquisition, not args.no_fix_galvo_shift, args.galvo_confidence, args.max_slices,
        )
    save_acquisition_curvature(estimate, args.out_json, args.overwrite)


if __name__ == "__main__":
    run(build_parser(), main)
