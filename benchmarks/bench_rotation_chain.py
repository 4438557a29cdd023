#!/usr/bin/env python3
"""Rotation search on slices that went through the whole chain (issue #15): false turns and errors.

Reads matrix cases written by ``bench_stack.py --matrix --workdir DIR``
(``DIR/<condition>_s<seed>/slice_zNN_normalize.ome.zarr`` and the motor
table). For every consecutive pair, as the stack sees it (re-flattened to
the common tilt): the rotation estimate of the unrotated pair (any applied
rotation is a false turn), then the same with the new slice turned by a
random angle in [-5, 5] degrees (seeded by the case) and the error of the
angle undone.

Usage: python benchmarks/bench_rotation_chain.py DIR/harsh_s0 DIR/harsh_s1 ...
"""

from __future__ import annotations

import argparse
import zlib
from pathlib import Path

import numpy as np

from linumpy.stack.files import _motor_rows, _slice_volume
from linumpy.stack.rotation import _slice_rotation, rotate_slice
from linumpy.stack.tilt import common_tilt, retilt_slice


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cases", nargs="+", type=Path)
    parser.add_argument("--max_deg", type=float, default=5.0)
    args = parser.parse_args()
    print("| case | pairs | false turns | rotated: applied | abs error median | max | skipped (true angle) |")
    print("|---|---|---|---|---|---|---|")
    for case in args.cases:
        paths = sorted(case.glob("slice_z*_normalize.ome.zarr"))
        volumes = [_slice_volume(k, p) for k, p in enumerate(paths)]
        tilt = common_tilt([v.surface_plane for v in volumes])
        volumes = [retilt_slice(v, v.surface_plane, tilt)[0] for v in volumes]
        steps = np.diff(_motor_rows(case / "motor_positions.csv", list(range(len(paths))))[:, 0], prepend=0) * 1000
        rng = np.random.default_rng(zlib.crc32(case.name.encode()))
        false_turns, errors, skipped = 0, [], []
        for k in range(1, len(volumes)):
            plain = _slice_rotation(volumes[k - 1], volumes[k], steps[k], args.max_deg, 0.3)
            false_turns += plain.mode != "skipped"
            angle = float(np.round(rng.uniform(-args.max_deg, args.max_deg), 2))
            turned = _slice_rotation(volumes[k - 1], rotate_slice(volumes[k], angle), steps[k], args.max_deg, 0.3)
            if turned.mode == "skipped":
                skipped.append(angle)
            else:
                errors.append(abs(turned.angle_deg + angle))
        errors = np.asarray(errors)
        print(f"| {case.name} | {len(volumes) - 1} | {false_turns} | {errors.size} | "
              f"{np.median(errors) if errors.size else float('nan'):.3f} | "
              f"{errors.max() if errors.size else float('nan'):.3f} | {skipped} |", flush=True)


if __name__ == "__main__":
    main()
