#!/usr/bin/env python3
"""Open an OME-Zarr image (all pyramid levels) in napari.

Needs napari: pip install 'linumpy[viewer]'.
"""

from __future__ import annotations

import argparse

from linumpy.cli import make_parser, run


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("input", metavar="IN_ZARR", help="OME-Zarr image.")
    return parser


def main(args: argparse.Namespace) -> None:
    from linumpy.viz.viewer import view_omezarr

    view_omezarr(args.input)


if __name__ == "__main__":
    run(build_parser(), main)
