#!/usr/bin/env python3
"""Rotation search on slices that went through the whole chain (issue #15): false turns and errors.

Reads matrix cases written by ``bench_stack.py --matrix --workdir DIR``
(``DIR/<condition>_s<seed>/slice_zNN_normalize.ome.zarr`` and the motor
table). For every consecutive pair, as the stack sees it (re-flattened to
the common tilt): the rotation estimate of the unrotated pair, the new slice
shifted by half a pixel along y and x (both slices of a simulated pair share
one pixel grid, which favours exactly no turn; real slices rarely do; any
applied rotation is a false turn), then the same with the new slice turned by a
random angle in [-5, 5] degrees (seeded by the case) and the error of the
angle undone (a skipped pair errs by its whole angle).

Usage: python benchmarks/bench_rotation_chain.py DIR/harsh_s0 DIR/harsh_s1 ... [--pairs]
"""

from __future__ import annotations

import argparse
import zlib
from dataclasses import replace
from pathlib import Path

import dask.array as da
import numpy as np
from scipy import ndimage

from linumpy.stack.files import _motor_rows, _slice_volume
from linumpy.stack.rotation import _slice_rotation, rotate_slice
from linumpy.stack.tilt import common_tilt, retilt_slice


def half_pixel_shift(volume):
    """The slice's levels shifted by half a pixel along y and x (cubic spline, lazily)."""
    levels = [(data.map_overlap(ndimage.shift, depth=(0, 8, 8), boundary="reflect", shift=(0, 0.5, 0.5),
                                order=3, mode="nearest", dtype=data.dtype), resolution)
              for data, resolution in volume.levels]
    return replace(volume, levels=levels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cases", nargs="+", type=Path)
    parser.add_argument("--max_deg", type=float, default=5.0)
    parser.add_argument("--pairs", action="store_true", help="Also print every pair's estimates.")
    args = parser.parse_args()
    print("| case | pairs | false turns (deg) | rotated: applied | error median | max (skipped included) | "
          "within 0.2 deg | skipped (true angle) |")
    print("|---|---|---|---|---|---|---|---|")
    for case in args.cases:
        paths = sorted(case.glob("slice_z*_normalize.ome.zarr"))
        volumes = [_slice_volume(k, p) for k, p in enumerate(paths)]
        tilt = common_tilt([v.surface_plane for v in volumes])
        volumes = [retilt_slice(v, v.surface_plane, tilt)[0] for v in volumes]
        steps = np.diff(_motor_rows(case / "motor_positions.csv", list(range(len(paths))))[:, 0], prepend=0) * 1000
        rng = np.random.default_rng(zlib.crc32(case.name.encode()))
        false_turns, errors, skipped = [], [], []
        for k in range(1, len(volumes)):
            plain = _slice_rotation(volumes[k - 1], half_pixel_shift(volumes[k]), steps[k], args.max_deg, 0.3)
            if plain.mode != "skipped":
                false_turns.append(round(plain.angle_deg, 2))
            angle = float(np.round(rng.uniform(-args.max_deg, args.max_deg), 2))
            turned = _slice_rotation(volumes[k - 1], rotate_slice(volumes[k], angle), steps[k], args.max_deg, 0.3)
            errors.append(abs(turned.angle_deg + angle))
            if turned.mode == "skipped":
                skipped.append(angle)
            if args.pairs:
                for label, truth, estimate in (("plain", 0.0, plain), ("turned", angle, turned)):
                    print(f"  {case.name} {k} {label} true {truth:+.2f} measured {estimate.measured_deg:+.3f} "
                          f"halves {np.round(estimate.halves_deg, 2).tolist()} std {estimate.std_deg:.3f} "
                          f"ncc {estimate.ncc:.3f}/{estimate.ncc_identity:.3f} {estimate.mode} {estimate.reason}",
                          flush=True)
        errors = np.asarray(errors)
        print(f"| {case.name} | {len(volumes) - 1} | {len(false_turns)} {false_turns or ''} | "
              f"{errors.size - len(skipped)} | {np.median(errors):.3f} | {errors.max():.3f} | "
              f"{int(np.sum(errors <= 0.2))}/{errors.size} | {skipped} |", flush=True)


if __name__ == "__main__":
    main()
