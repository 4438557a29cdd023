#!/usr/bin/env python3
"""Collect the stage (motor) position of every slice of a raw acquisition.

Writes a CSV with one row per slice: slice_id, x_mm, y_mm, z_mm, n_tiles. The
position is that of the slice's tile (0, 0), extrapolated from the first
acquired tile with the nominal tile step when tile (0, 0) was skipped.
"""

import argparse

from linumpy.cli import add_overwrite_argument, make_parser, run


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("input_dir", help="Raw acquisition folder.")
    parser.add_argument("out_csv", help="Output CSV table.")
    parser.add_argument("--slices", type=int, nargs="+", help="Slice ids to include (default: all).")
    add_overwrite_argument(parser)
    return parser


def main(args: argparse.Namespace) -> None:
    from linumpy.io.acquisition import open_acquisition
    from linumpy.io.motor_table import collect_motor_positions, write_motor_positions

    acquisition = open_acquisition(args.input_dir)
    write_motor_positions(collect_motor_positions(acquisition, args.slices), args.out_csv, args.overwrite)


if __name__ == "__main__":
    run(build_parser(), main)
