#!/usr/bin/env python3
"""Peak memory of the stack on slices as wide as the ``large`` preset's, without running the pipeline.

Writes ``--n_slices`` normalized-slice-like OME-Zarrs of ``--shape`` (default
145 x 1792 x 1794 float32, the ``large`` preset's normalized slices) with the
normalization's storage (64 x 128 x 128 chunks, blosc-lz4, a 2x lateral
pyramid), the axial correction's attributes (a surface plane per slice
tilted a little differently, so the stack re-flattens them to the common
tilt) and a motor table (100-plane steps, a few pixels of lateral shift).
The tissue is a disk of smooth texture whose planes repeat wherever a slice
images the same depth, so the registration finds the overlaps. Then runs
``linum_stack_slices_motor.py`` on them under ``/usr/bin/time -v`` with the
pipeline's defaults (rotation search on) and prints wall, CPU seconds and
peak RSS; ``--plan_only`` measures ``plan_stack`` alone (in a child
process). About 1.4 GB of disk for the four default slices, 0.85 GB for the volume.

Usage: python benchmarks/bench_stack_memory.py --workdir DIR [--shape 145 1792 1794] [--n_slices 4]
           [--repeats 1] [--plan_only] [--repo DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import dask.array as da
import numpy as np
from scipy import ndimage

from linumpy.io.motor_table import MotorPosition, write_motor_positions
from linumpy.io.zarr import save_omezarr
from linumpy.stack.windows import depth_chunks

REPO = Path(__file__).resolve().parents[1]
AXIAL_UM, LATERAL_UM = 1.5, 3.0
STEP_PX, SURFACE_PX = 100, 15
CHUNKS = (64, 128, 128)


def world_plane(z: int, shape: tuple[int, int]) -> np.ndarray:
    """Plane ``z`` of the synthetic tissue (float32, quantized to 1/64 so it compresses like real slices)."""
    rng = np.random.default_rng([11, z])
    texture = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), 2.0)
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    disk = (yy - shape[0] / 2) ** 2 + (xx - shape[1] / 2) ** 2 < (0.38 * min(shape)) ** 2
    return np.where(disk, np.round(np.clip(1.0 + 2.0 * texture, 0, None) * 64) / 64, 0).astype(np.float32)


def write_slices(directory: Path, shape: tuple[int, int, int], count: int) -> tuple[list[str], Path]:
    """Write ``count`` overlapping slices of ``shape`` and their motor table; existing slices are kept."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    paths, rows = [], []
    for k in range(count):
        dy, dx = (int(v) for v in rng.integers(-6, 7, 2))
        tilt = (0.004 + rng.uniform(-1e-3, 1e-3), -0.005 + rng.uniform(-1e-3, 1e-3))
        path = directory / f"slice_z{k:02d}_normalize.ome.zarr"
        paths.append(str(path))
        rows.append(MotorPosition(k, 12.5, 8.0, 3.0 + k * STEP_PX * AXIAL_UM / 1000, 64))
        if path.exists():
            continue
        lateral = (shape[1] + 16, shape[2] + 16)
        crop = (slice(8 + dy, 8 + dy + shape[1]), slice(8 + dx, 8 + dx + shape[2]))

        def planes(block_info=None, k=k, crop=crop):
            (z0, z1), _, _ = block_info[None]["array-location"]
            return np.stack([world_plane(k * STEP_PX + z, lateral)[crop] for z in range(z0, z1)])

        # built 64 full planes at a time (each plane's texture filtered whole)
        data = da.map_blocks(planes, chunks=(depth_chunks(shape[0], CHUNKS[0]), (shape[1],), (shape[2],)),
                             dtype=np.float32)
        attributes = {"slice_id": k, "surface_depth_px": 0, "useful_depth_px": shape[0],
                      "surface_plane_px": [SURFACE_PX + 0.3 * k, tilt[0], tilt[1]]}
        save_omezarr(data, path, (AXIAL_UM / 1000, LATERAL_UM / 1000, LATERAL_UM / 1000), chunks=CHUNKS,
                     attributes=attributes)
    motors = directory / "motor_positions.csv"
    write_motor_positions(rows, motors, overwrite=True)
    return paths, motors


def run_stack(paths: list[str], motors: Path, out: Path, repo: Path, plan_only: bool) -> dict:
    """Stack (or plan only) under ``/usr/bin/time -v``: wall s, CPU s, peak RSS MB."""
    if plan_only:
        command = [sys.executable, "-c", _PLAN_CODE, *paths, str(motors)]
    else:
        command = [sys.executable, str(repo / "bin" / "linum_stack_slices_motor.py"), *paths, str(out),
                   "--motor_positions", str(motors), "-f", "-q"]
    result = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(repo)})
    if result.returncode:
        raise SystemExit(result.stderr[-3000:])
    fields = dict(re.findall(r"^\s*(.+?): (.+)$", result.stderr, re.M))
    wall = fields["Elapsed (wall clock) time (h:mm:ss or m:ss)"].split(":")
    return {"wall_s": round(sum(float(v) * 60 ** i for i, v in enumerate(reversed(wall))), 2),
            "cpu_s": round(float(fields["User time (seconds)"]) + float(fields["System time (seconds)"]), 2),
            "peak_rss_mb": round(int(fields["Maximum resident set size (kbytes)"]) / 1024)}


#: The plan alone, as ``stack_slice_files`` makes it (same dask settings and defaults).
_PLAN_CODE = """
import sys, dask
from pathlib import Path
from linumpy.stack import files
from linumpy.stack.stacking import StackParameters, plan_stack
*names, motors = sys.argv[1:]
paths = files._ordered_slices(names, False)
rows = files._motor_rows(motors, list(paths))
thickness = files._slice_thickness(None, None, rows, list(paths))
with dask.config.set(files.UNFUSED):
    volumes = [files._slice_volume(i, p) for i, p in paths.items()]
    plan_stack(volumes, rows, thickness, files.finest_common_resolution_um(volumes), StackParameters())
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True, help="Slices are written (once) and stacked here.")
    parser.add_argument("--shape", type=int, nargs=3, default=[145, 1792, 1794], metavar=("Z", "Y", "X"))
    parser.add_argument("--n_slices", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--plan_only", action="store_true", help="Measure plan_stack alone.")
    parser.add_argument("--repo", type=Path, default=REPO, help="linumpy checkout to run [this one].")
    args = parser.parse_args()
    paths, motors = write_slices(args.workdir / "slices", tuple(args.shape), args.n_slices)
    for _ in range(args.repeats):
        result = run_stack(paths, motors, args.workdir / "volume.ome.zarr", args.repo.resolve(), args.plan_only)
        print(json.dumps({"repo": str(args.repo), "plan_only": args.plan_only, **result}), flush=True)


if __name__ == "__main__":
    main()
