#!/usr/bin/env python3
"""Benchmark: CPU seconds of the block means that build a 5-level lateral pyramid.

Isolates the arithmetic of a pyramid finalize (no I/O): each level is the
:func:`linumpy.resample.block_mean` of the previous one, with the border
weighting by real extent (:func:`linumpy.resample.pyramid_edge_weights`), as
``OmeZarrWriter`` does. The lateral shape is odd so the weighted border path
runs. Reports CPU seconds (``time.process_time``, all threads: the machine may
be loaded, wall time is not comparable) per dtype, and the largest error of
every level against the same cascade accumulated in float64 and rounded once
per level to the stored dtype (relative for floats, in counts for uint16).

Usage::

    python benchmarks/bench_pyramid_mean.py [--shape 64 1000 1001] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import time

import dask
import dask.array as da
import numpy as np

from linumpy.resample import block_mean, pyramid_edge_weights

N_LEVELS = 5


def pyramid(base: np.ndarray, accumulate_float64: bool = False) -> list[np.ndarray]:
    """Levels 1..N_LEVELS of ``base``, each from the previous one (stored in ``base.dtype``).

    With ``accumulate_float64``, each level's block means are computed from a
    float64 copy and rounded once to the stored dtype: the reference.
    """
    levels, data = [], base
    for level in range(1, N_LEVELS + 1):
        span = (1, 2 ** (level - 1), 2 ** (level - 1))
        source = da.from_array(data.astype(np.float64) if accumulate_float64 else data, chunks=(64, 256, 256))
        mean = block_mean(source, (1, 2, 2), pyramid_edge_weights(base.shape, data.shape, span)).compute()
        if np.issubdtype(base.dtype, np.integer):
            mean = np.floor(mean + 0.5)  # halves up, as block_mean rounds integers
        data = mean.astype(base.dtype)
        levels.append(data)
    return levels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=3, default=(64, 1000, 1001))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    results = {}
    for dtype in ("float32", "float16", "uint16"):
        scale = 60000 if dtype == "uint16" else 1.0
        base = (rng.gamma(2.0, 0.25, size=args.shape) * scale / 4).astype(dtype)
        with dask.config.set(scheduler="synchronous"):
            cpu = []
            for _ in range(args.repeats):
                start = time.process_time()
                levels = pyramid(base)
                cpu.append(time.process_time() - start)
        exact = pyramid(base, accumulate_float64=True)
        difference = [np.abs(lv.astype(np.float64) - ref.astype(np.float64)) for lv, ref in zip(levels, exact)]
        if dtype == "uint16":  # in counts
            error = max(float(d.max()) for d in difference)
        else:  # relative
            error = max(float((d / np.abs(ref.astype(np.float64))).max()) for d, ref in zip(difference, exact))
        results[dtype] = {"cpu_s_median": float(np.median(cpu)), "cpu_s": cpu, "max_error": error}
    print(json.dumps({"shape": list(args.shape), "results": results}, indent=2))


if __name__ == "__main__":
    main()
