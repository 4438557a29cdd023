#!/usr/bin/env python3
"""Benchmark of 3D stitching: accuracy and time against m2stitch, throughput, memory.

1. Accuracy and time: for each seed, a simulated slice of ``--preset`` is laid
   out as a mosaic grid; linumpy's position estimation and
   ``m2stitch.stitch_images`` get the same tile projections (AIPs) and the
   same nominal positions; tile position errors are measured against the
   simulator's ground truth after removing the mean translation. Times are
   the best of ``--repeats`` runs of the estimation alone.
2. Throughput: ``bin/linum_stitch_3d.py`` runs on a mosaic grid of
   ``--throughput_preset`` in a subprocess under ``/usr/bin/time -v``;
   reported: wall time, MB/s of (uncompressed) input, peak RSS.

Example::

    python benchmarks/bench_stitching.py --workdir /tmp/bench_stitch
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from linumpy.io.acquisition import open_acquisition
from linumpy.io.zarr import read_omezarr, read_omezarr_info
from linumpy.mosaic.grid import write_mosaic_grid
from linumpy.simulate import get_preset, simulate_acquisition
from linumpy.stitching.estimate import estimate_transform
from linumpy.stitching.stitch import mosaic_grid_layout, tile_projections

REPOSITORY = Path(__file__).resolve().parents[1]


def prepare_slice(workdir: Path, preset: str, seed: int) -> tuple[Path, dict]:
    """Simulate one slice (if not done yet) and lay out its mosaic grid; returns (grid, truth)."""
    acquisition = workdir / f"{preset}_seed{seed}"
    if not (acquisition / "ground_truth" / "truth.json").exists():
        simulate_acquisition(acquisition, get_preset(preset, n_slices=1), seed=seed)
    truth = json.loads((acquisition / "ground_truth" / "truth.json").read_text())["slices"][0]
    grid = workdir / f"{preset}_seed{seed}_mosaic_grid_3d_z00.ome.zarr"
    if not grid.exists():
        section = open_acquisition(acquisition).slice(truth["slice_id"])
        write_mosaic_grid(section, grid, workdir / f"{preset}_seed{seed}_aip.ome.zarr", n_levels=0)
    return grid, truth


def position_errors(estimated: dict, truth: dict) -> np.ndarray:
    """Per-tile Euclidean error (pixels) after removing the mean translation."""
    tiles = sorted(truth)
    difference = np.array([np.asarray(estimated[t], float) - truth[t] for t in tiles])
    difference -= difference.mean(axis=0)
    return np.linalg.norm(difference, axis=1)


def best_time(function, repeats: int):
    """Return (result of the last call, best wall time in seconds)."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return result, min(times)


def run_m2stitch(projections: dict, tile_step_px) -> dict:
    """Tile positions from m2stitch, given the nominal positions as initial guess."""
    import m2stitch

    tiles = sorted(projections)
    images = np.stack([projections[t] for t in tiles])
    guess = np.array([[r * tile_step_px[0], c * tile_step_px[1]] for r, c in tiles], float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        grid, _ = m2stitch.stitch_images(
            images, rows=[t[0] for t in tiles], cols=[t[1] for t in tiles],
            position_initial_guess=guess, row_col_transpose=False,
        )
    return {t: (grid.loc[i, "y_pos"], grid.loc[i, "x_pos"]) for i, t in enumerate(tiles)}


def compare_with_m2stitch(workdir: Path, preset: str, seeds: list[int], repeats: int) -> None:
    print(f"== accuracy and time vs m2stitch, preset {preset} ==")
    print(f"{'seed':>4} {'empty':>5} | {'ours mean/max px':>17} {'time s':>7} | "
          f"{'m2stitch mean/max px':>21} {'time s':>7} | {'err ratio':>9} {'time ratio':>10}")
    ratios = []
    for seed in seeds:
        grid, truth_slice = prepare_slice(workdir, preset, seed)
        truth = {(r, c): np.array([y, x], float) for r, c, y, x in truth_slice["tile_positions_px"]}
        data, _ = read_omezarr(grid)
        layout = mosaic_grid_layout(read_omezarr_info(grid).attributes, data.shape, str(grid))
        projections = tile_projections(data, layout)
        transform, ours_time = best_time(
            lambda: estimate_transform(projections, layout.tile_step_px), repeats)
        ours = position_errors({t: transform.position(t) for t in truth}, truth)
        try:
            theirs_positions, theirs_time = best_time(
                lambda: run_m2stitch(projections, layout.tile_step_px), repeats)
            theirs = position_errors(theirs_positions, truth)
        except AssertionError as error:  # m2stitch gives up when no pair passes its NCC threshold
            print(f"{seed:>4} m2stitch failed: {error}")
            continue
        error_ratio = ours.mean() / max(theirs.mean(), 1e-9)
        time_ratio = ours_time / theirs_time
        ratios.append((error_ratio, time_ratio))
        print(f"{seed:>4} {len(truth_slice['empty_tiles']):>5} | {ours.mean():8.3f}/{ours.max():<8.3f}"
              f"{ours_time:7.3f} | {theirs.mean():12.3f}/{theirs.max():<8.3f}{theirs_time:7.3f} | "
              f"{error_ratio:9.4f} {time_ratio:10.3f}")
    if ratios:
        error_ratio, time_ratio = np.mean(ratios, axis=0)
        print(f"mean ratios (ours / m2stitch): error {error_ratio:.4f}, time {time_ratio:.3f}")


def measure_throughput(workdir: Path, preset: str) -> None:
    print(f"== whole script, preset {preset} ==")
    grid, _ = prepare_slice(workdir, preset, seed=0)
    info = read_omezarr_info(grid)
    input_mb = np.prod(info.shape) * info.dtype.itemsize / 1e6
    out = workdir / f"{preset}_slice_z00_stitch_3d.ome.zarr"
    command = ["/usr/bin/time", "-v", sys.executable, str(REPOSITORY / "bin" / "linum_stitch_3d.py"),
               str(grid), str(out), "--overwrite", "--quiet"]
    start = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", completed.stderr).group(1))
    print(f"input {info.shape} {info.dtype}: {input_mb:.0f} MB; wall {wall:.1f} s; "
          f"throughput {input_mb / wall:.1f} MB/s; peak RSS {peak_kb / 1024:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("bench_stitching_work"),
                        help="Where simulated data are kept between runs [%(default)s].")
    parser.add_argument("--preset", default="small", help="Preset of the accuracy comparison.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--repeats", type=int, default=3, help="Timing repeats (best kept).")
    parser.add_argument("--throughput_preset", default="large",
                        help="Preset of the whole-script run ('none' to skip).")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    compare_with_m2stitch(args.workdir, args.preset, args.seeds, args.repeats)
    if args.throughput_preset != "none":
        measure_throughput(args.workdir, args.throughput_preset)


if __name__ == "__main__":
    main()
