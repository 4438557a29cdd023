#!/usr/bin/env python3
"""Benchmark the mosaic-grid step: throughput (MB/s of raw input) and peak memory.

Simulates one slice of the ``large`` preset (tile by tile; reused if the
work folder already holds it), then runs ``linum_create_mosaic_grid_3d.py``
on it in a child process and reports wall time, MB/s of raw .bin input read,
and the child's peak resident memory.

    python benchmarks/bench_mosaic_grid.py --workdir /tmp/bench_mosaic [--preset large]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from linumpy.simulate import PRESETS, get_preset, simulate_acquisition

SCRIPT = Path(__file__).resolve().parents[1] / "bin" / "linum_create_mosaic_grid_3d.py"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("bench_mosaic_grid"), help="Scratch folder [%(default)s].")
    parser.add_argument("--preset", choices=list(PRESETS), default="large", help="[%(default)s]")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clean", action="store_true", help="Delete the work folder afterwards.")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    raw = args.workdir / f"raw_{args.preset}_seed{args.seed}"
    if not raw.exists():
        start = time.perf_counter()
        simulate_acquisition(raw, get_preset(args.preset, n_slices=1), args.seed, progress=True)
        print(f"simulated {raw} in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    input_bytes = sum(p.stat().st_size for p in raw.glob("tile_*_z00/image_*.bin"))
    out = args.workdir / "mosaic_grid_3d_z00.ome.zarr"
    command = [sys.executable, str(SCRIPT), str(raw), str(out), "--slice", "0", "-f", "-q"]
    start = time.perf_counter()
    subprocess.run(command, check=True)
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    preset = get_preset(args.preset)
    report = {
        "preset": args.preset,
        "tiles": preset.grid_shape[0] * preset.grid_shape[1],
        "tile_shape": list(preset.tile_shape),
        "raw_input_mb": round(input_bytes / 1e6, 1),
        "seconds": round(seconds, 2),
        "throughput_mb_per_s": round(input_bytes / 1e6 / seconds, 1),
        "peak_rss_mb": round(peak_mb, 1),
        "one_raw_tile_mb": round(input_bytes / 1e6 / (preset.grid_shape[0] * preset.grid_shape[1]), 1),
    }
    print(json.dumps(report, indent=2))
    if args.clean:
        shutil.rmtree(args.workdir)


if __name__ == "__main__":
    main()
