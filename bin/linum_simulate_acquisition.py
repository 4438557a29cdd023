#!/usr/bin/env python3
"""Simulate a serial-section OCT acquisition with known ground truth.

Writes the raw tiles of every slice (the lab's native tile folders, or 3D
TIFF tiles + acquisition.json), and OUTDIR/ground_truth/ (truth.json,
phantom.ome.zarr, attenuation.ome.zarr, surface_zNN.ome.zarr). Same seed,
same bytes. See docs/simulator.md.
"""

import argparse

from linumpy.cli import add_overwrite_argument, make_parser, progress_enabled, run
from linumpy.simulate import LAYOUTS, PRESETS, get_preset


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("outdir", help="Output acquisition folder.")
    parser.add_argument("--preset", choices=list(PRESETS), default="tiny", help="Size of the acquisition [%(default)s].")
    parser.add_argument("--seed", type=int, default=0, help="Random seed [%(default)s].")
    parser.add_argument("--layout", choices=LAYOUTS, default="native", help="Raw tile layout [%(default)s].")
    parser.add_argument("--n_slices", type=int, help="Number of slices (default: the preset's).")
    parser.add_argument(
        "--galvo_shift", type=int, default=0, metavar="MAX_PX",
        help="Move each slice's galvo-return band by a random U{-MAX..MAX} A-lines (0: never) [%(default)s].",
    )
    parser.add_argument(
        "--slice_rotation", type=float, default=0.0, metavar="MAX_DEG",
        help="Turn the sample of each slice after the first about z by a random U(-MAX, MAX) degrees "
             "(truth.json: rotation_deg per slice; 0: never) [%(default)s].",
    )
    add_overwrite_argument(parser)
    return parser


def main(args: argparse.Namespace) -> None:
    from linumpy.simulate.writer import simulate_acquisition

    preset = get_preset(args.preset, args.n_slices, args.galvo_shift, args.slice_rotation)
    simulate_acquisition(args.outdir, preset, args.seed, args.layout, args.overwrite, progress_enabled(args))


if __name__ == "__main__":
    run(build_parser(), main)
