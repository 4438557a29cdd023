#!/usr/bin/env python3
"""Write slice_config.csv: one row per slice, its quality metrics and a suggestion.

Reads the QC records under RESULTS_DIR (mosaic grids, stitching, axial
correction, stack). The use and reason columns of --previous (the table you
edited) are kept; new slices get use=1. Suggestions never exclude a slice:
set use=0 by hand, and the next run leaves that slice out. See docs/pipeline.md.
"""

import argparse
from pathlib import Path

from linumpy.cli import add_overwrite_argument, make_parser, run


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("results_dir", help="Results directory of a pipeline run.")
    parser.add_argument("out_csv", help="Slice configuration table to write (.csv).")
    parser.add_argument("--previous", help="Existing table whose use and reason columns are kept "
                                           "[OUT_CSV itself when it exists].")
    add_overwrite_argument(parser)
    return parser


def main(args: argparse.Namespace) -> None:
    from linumpy.pipeline.slice_config import build_slice_config, write_slice_config

    previous = args.previous or (args.out_csv if Path(args.out_csv).is_file() else None)
    write_slice_config(build_slice_config(args.results_dir, previous), args.out_csv, args.overwrite)


if __name__ == "__main__":
    run(build_parser(), main)
