#!/usr/bin/env python3
"""Describe an OME-Zarr image: shape, dtype, chunks, levels (um), codec, size on disk, validity.

Validation uses ome-zarr-models when installed.
"""

from __future__ import annotations

import argparse
import json

from linumpy.cli import make_parser, run


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("input", metavar="IN_ZARR", help="OME-Zarr image.")
    parser.add_argument("--json", action="store_true", help="Print a JSON document instead of text.")
    return parser


def main(args: argparse.Namespace) -> None:
    from linumpy.io.validate import describe_omezarr, format_summary

    summary = describe_omezarr(args.input)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))


if __name__ == "__main__":
    run(build_parser(), main)
