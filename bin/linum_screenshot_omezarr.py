#!/usr/bin/env python3
"""Save a picture of an OME-Zarr image: orthogonal views (or one z plane) with scale bars in um.

The XY, XZ and YZ views cut through the middle of the tissue and are laid out
side by side at one physical pixel size. Reads the coarsest pyramid level
that is still >= 512 pixels on its long side, so it is fast on a terabyte
volume. Contrast comes from robust percentiles. The output's suffix picks
the format: .png, .jpg/.jpeg or .tif/.tiff.
"""

from __future__ import annotations

import argparse

from linumpy.cli import add_overwrite_argument, make_parser, run


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(__doc__)
    parser.add_argument("input", metavar="IN_ZARR", help="OME-Zarr image (3D or 2D).")
    parser.add_argument("output", metavar="OUT_IMAGE", help="Output image (.png, .jpg/.jpeg or .tif/.tiff).")
    parser.add_argument("--z", type=int, metavar="INDEX", help="Show only this level-0 z plane.")
    parser.add_argument("--level", type=int, help="Pyramid level to read [coarsest with >= 512 px].")
    add_overwrite_argument(parser)
    return parser


def main(args: argparse.Namespace) -> None:
    from linumpy.io.atomic import atomic_output
    from linumpy.viz.screenshot import render_screenshot, screenshot_format

    image_format = screenshot_format(args.output)
    image = render_screenshot(args.input, z=args.z, level=args.level)
    with atomic_output(args.output, args.overwrite) as temporary:
        image.save(temporary, format=image_format)


if __name__ == "__main__":
    run(build_parser(), main)
