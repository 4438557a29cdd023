#!/usr/bin/env python3
"""Benchmark the axial correction and the normalization of one slice.

For each size in ``--sizes_mib`` a synthetic float32 slice is written to an
OME-Zarr (block by block: a tissue disc in agarose under a tilted surface,
Gaussian focus, attenuation, speckle and a noise floor; chunks
(64, 256, 256)). Then ``linum_axial_corr.py`` runs on it, and
``linum_normalize.py --flatfield`` on its output, each in a child process.
Reported per run: wall time, throughput in MB/s of input, the child's CPU
time (user + system: on a shared, loaded machine the wall time mostly
measures the other users) and its peak resident memory (``ru_maxrss``). Peak memory should stay flat as the
slice grows (the steps stream lateral blocks of whole A-lines).

With ``--matrix``, instead: the depth-correction test matrix
(``benchmarks/matrix_chain.py``): each condition of
``linumpy.simulate.conditions`` and seed is simulated (``tiny``, 8 slices),
run through mosaic grid, stitch and axial correction, and scored against the
truth: the focus profile's largest relative error below the cut, the
attenuation (tissue mean and the homogeneous reference columns) and the
number of QC flags; one Markdown row per case.

Usage::

    python benchmarks/bench_intensity.py [--sizes_mib 512 1536] [--workdir DIR] [--keep]
    python benchmarks/bench_intensity.py --matrix [--conditions harsh ...] [--seeds 0 1 ...] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from linumpy.io.zarr import OmeZarrWriter

BIN = Path(__file__).resolve().parents[1] / "bin"
DEPTH = 160
TILE = 256
RESOLUTION_MM = (0.0015, 0.003, 0.003)
_MEASURE = (
    "import resource, subprocess, sys; "
    "code = subprocess.run(sys.argv[1:]).returncode; "
    "usage = resource.getrusage(resource.RUSAGE_CHILDREN); "
    "print(usage.ru_utime + usage.ru_stime, usage.ru_maxrss); sys.exit(code)"
)


def slice_shape(size_mib: int) -> tuple[int, int, int]:
    """(DEPTH, y, x) float32 of about ``size_mib`` MiB, y and x multiples of the tile."""
    a_lines = size_mib * 2**20 / (4 * DEPTH)
    tiles_x = max(1, math.ceil(math.sqrt(a_lines) / TILE))
    tiles_y = max(1, round(a_lines / (tiles_x * TILE * TILE)))
    return DEPTH, tiles_y * TILE, tiles_x * TILE


def synthetic_block(y0: int, x0: int, shape_yx: tuple[int, int], slice_yx: tuple[int, int]) -> np.ndarray:
    """One (DEPTH, ny, nx) block of the synthetic slice (deterministic per block)."""
    rng = np.random.default_rng([y0, x0])
    yy, xx = np.mgrid[y0 : y0 + shape_yx[0], x0 : x0 + shape_yx[1]].astype(np.float32)
    cy, cx = slice_yx[0] / 2, slice_yx[1] / 2
    tissue = ((yy - cy) / (0.42 * slice_yx[0])) ** 2 + ((xx - cx) / (0.42 * slice_yx[1])) ** 2 < 1
    surface = 20 + 10 * (yy / slice_yx[0]) - 8 * (xx / slice_yx[1])
    z = np.arange(DEPTH, dtype=np.float32)[:, None, None]
    depth_mm = np.clip(z - np.ceil(surface), 0, None) * RESOLUTION_MM[0]
    mu = np.where(tissue, 5.0 + 3.0 * np.sin(xx / 97.0) * np.cos(yy / 131.0), 0.3)
    reflectivity = np.where(tissue, 1.0, 0.03)
    signal = np.where(z >= np.ceil(surface), reflectivity * np.exp(-2 * mu * depth_mm), 0.0)
    focus = np.exp(-((z - 60.0) ** 2) / (2 * 50.0**2))
    block = signal * focus * rng.gamma(2.0, 0.5, signal.shape) + 0.01 * rng.standard_exponential(signal.shape)
    return block.astype(np.float32)


def write_slice(path: Path, shape: tuple[int, int, int]) -> None:
    attributes = {"slice_id": 0, "tile_shape": [DEPTH, TILE, TILE],
                  "grid_shape": [shape[1] // TILE, shape[2] // TILE]}
    with OmeZarrWriter(path, shape, chunks=(64, TILE, TILE), dtype=np.float32, overwrite=True) as writer:
        for y0 in range(0, shape[1], TILE):
            for x0 in range(0, shape[2], TILE):
                writer[:, y0 : y0 + TILE, x0 : x0 + TILE] = synthetic_block(y0, x0, (TILE, TILE), shape[1:])
        writer.finalize(RESOLUTION_MM, n_levels=1, attributes=attributes)


def measure(command: list[str]) -> tuple[float, float, float]:
    """Run a command in a child process: (wall seconds, CPU seconds, peak RSS in MiB)."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", _MEASURE, *command], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode:
        raise RuntimeError(f"{command[1]} failed:\n{result.stderr}")
    cpu, peak = result.stdout.split()[-2:]
    return seconds, float(cpu), int(peak) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes_mib", type=int, nargs="+", default=[512, 1536])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="Keep the synthetic slices and outputs.")
    parser.add_argument("--matrix", action="store_true", help="Run the depth-correction test matrix instead.")
    parser.add_argument("--conditions", nargs="+", default=None, help="Matrix conditions [all].")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="Matrix seeds [tune + check seeds].")
    parser.add_argument("--n_slices", type=int, default=8, help="Matrix slices per case [%(default)s].")
    args = parser.parse_args()
    if args.matrix:
        run_matrix(args)
        return
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_intensity_"))
    workdir.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        for size in args.sizes_mib:
            shape = slice_shape(size)
            source = workdir / f"slice_{size}.ome.zarr"
            start = time.perf_counter()
            write_slice(source, shape)
            print(f"wrote {shape} ({np.prod(shape) * 4 / 1e6:.0f} MB) in {time.perf_counter() - start:.0f} s",
                  flush=True)
            axial = workdir / f"slice_{size}_axial_corr.ome.zarr"
            normalized = workdir / f"slice_{size}_normalize.ome.zarr"
            steps = {
                "linum_axial_corr.py": [str(BIN / "linum_axial_corr.py"), str(source), str(axial), "-f", "-q"],
                "linum_normalize.py": [str(BIN / "linum_normalize.py"), str(axial), str(normalized), "--flatfield",
                                       "-f", "-q"],
            }
            inputs = {"linum_axial_corr.py": source, "linum_normalize.py": axial}
            for name, command in steps.items():
                from linumpy.io.zarr import read_omezarr_info

                info = read_omezarr_info(inputs[name])
                megabytes = np.prod(info.shape) * info.dtype.itemsize / 1e6
                seconds, cpu, peak = measure([sys.executable, *command])
                row = {"step": name, "input_shape": list(info.shape), "input_MB": round(megabytes),
                       "seconds": round(seconds, 1), "MB_per_s": round(megabytes / seconds, 1),
                       "cpu_s": round(cpu, 1), "MB_per_cpu_s": round(megabytes / cpu, 1),
                       "peak_rss_MiB": round(peak)}
                results.append(row)
                print(json.dumps(row), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print("\n| step | input shape | input MB | s | MB/s | CPU s | MB/CPU s | peak RSS MiB |\n"
          "|---|---|---|---|---|---|---|---|")
    for row in results:
        print(f"| {row['step']} | {row['input_shape']} | {row['input_MB']} | {row['seconds']} | "
              f"{row['MB_per_s']} | {row['cpu_s']} | {row['MB_per_cpu_s']} | {row['peak_rss_MiB']} |")


def run_matrix(args: argparse.Namespace) -> None:
    """The depth-correction matrix: one row of worst per-slice errors per condition and seed."""
    from matrix_chain import CHECK_SEEDS, TUNE_SEEDS, intensity_row, print_table, run_case

    from linumpy.simulate.conditions import CONDITIONS

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_matrix_"))
    rows = []
    for condition in args.conditions or list(CONDITIONS):
        for seed in args.seeds or [*TUNE_SEEDS, *CHECK_SEEDS]:
            rows.append(intensity_row(run_case(workdir, condition, seed, args.n_slices, stack=False)))
            print(json.dumps(rows[-1]), flush=True)
    print_table(rows)


if __name__ == "__main__":
    main()
