#!/usr/bin/env python3
"""Benchmark: writing a uint16 volume and its 5-level lateral pyramid.

Writers compared on the same in-memory volume (chunks (64, 256, 256),
Blosc lz4 clevel 5 + shuffle, NGFF 0.4 / Zarr v2):

(a) ``zarr-raw``      raw level-0 write with zarr-python (the reference time)
(b) ``linumpy``       ``save_omezarr``: level 0 + 5 lateral levels, one pass
(c) ``ome-zarr-py``   ``ome_zarr.writer.write_image`` with a 5-level pyramid
(d) ``tensorstore``   raw level-0 write with tensorstore
(e) ``linumpy-stream`` ``save_omezarr`` from a lazily generated dask volume of
    ``--stream_size_mib`` (default 4x larger): peak memory must stay < 1 GiB.

Each writer runs in its own subprocess so that its peak RSS
(``VmHWM``, or ``resource.getrusage`` off Linux) is its own; (a)-(d) include the in-memory input.

Usage::

    python benchmarks/bench_io_pyramid.py [--size_mib 512] [--stream_size_mib 2048]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHUNKS = (64, 256, 256)
N_LEVELS = 5
RESOLUTION_MM = (0.0015, 0.010, 0.010)
METHODS = ("zarr-raw", "linumpy", "ome-zarr-py", "tensorstore")


def volume_shape(size_mib: int) -> tuple[int, int, int]:
    """A (z, y, x) uint16 shape of about ``size_mib`` MiB, lateral side a power of 2."""
    voxels = size_mib * 2**20 // 2
    side = 2 ** math.ceil(math.log2(math.sqrt(voxels / 256)))
    return (max(1, voxels // (side * side)), side, side)


def realistic_block(z0: int, y0: int, x0: int, shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """An OCT-like uint16 block: tissue that decays with depth, smooth structure, speckle.

    Deterministic from the block's global origin, so blocks tile seamlessly.
    """
    z = np.arange(z0, z0 + shape[0], dtype=np.float32)[:, None, None]
    y = np.arange(y0, y0 + shape[1], dtype=np.float32)[None, :, None]
    x = np.arange(x0, x0 + shape[2], dtype=np.float32)[None, None, :]
    structure = 1.0 + 0.4 * np.sin(y / 37.0) * np.cos(x / 53.0) + 0.3 * np.sin((x + y) / 211.0)
    attenuation = np.exp(-z / 180.0) * (z > 8)
    signal = 12000.0 * attenuation * structure + 400.0
    rng = np.random.default_rng([seed, z0, y0, x0])
    speckle = rng.standard_exponential(shape, dtype=np.float32) * 0.5 + 0.5
    return np.clip(signal * speckle, 0, 65535).astype(np.uint16)


def make_volume(shape: tuple[int, int, int]) -> np.ndarray:
    volume = np.empty(shape, np.uint16)
    for z0 in range(0, shape[0], CHUNKS[0]):
        sub = volume[z0 : z0 + CHUNKS[0]]
        sub[...] = realistic_block(z0, 0, 0, sub.shape)
    return volume


def lazy_volume(shape: tuple[int, int, int]):
    import dask.array as da

    def block(block_info=None):
        info = block_info[None]
        (z0, _), (y0, _), (x0, _) = info["array-location"]
        return realistic_block(z0, y0, x0, info["chunk-shape"])

    return da.map_blocks(block, chunks=da.core.normalize_chunks(CHUNKS, shape), dtype=np.uint16)


def write_zarr_raw(volume: np.ndarray, path: Path) -> None:
    import zarr

    from linumpy.io.codecs import v2_compressor

    array = zarr.create_array(
        str(path), shape=volume.shape, chunks=CHUNKS, dtype=volume.dtype, zarr_format=2,
        compressors=v2_compressor("blosc-lz4"), chunk_key_encoding={"name": "v2", "separator": "/"},
    )
    array[...] = volume


def write_linumpy(volume, path: Path) -> None:
    from linumpy.io.zarr import save_omezarr

    save_omezarr(volume, path, RESOLUTION_MM, chunks=CHUNKS, n_levels=N_LEVELS)


def write_ome_zarr_py(volume: np.ndarray, path: Path) -> None:
    import zarr
    from ome_zarr.format import FormatV04
    from ome_zarr.writer import write_image

    from linumpy.io.codecs import v2_compressor

    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    write_image(
        volume, group, scale_factors=tuple(2**k for k in range(1, N_LEVELS + 1)), axes="zyx",
        fmt=FormatV04(), storage_options={"chunks": CHUNKS, "compressor": v2_compressor("blosc-lz4")},
    )


def write_tensorstore(volume: np.ndarray, path: Path) -> None:
    import tensorstore as ts

    spec = {
        "driver": "zarr",
        "kvstore": {"driver": "file", "path": str(path)},
        "metadata": {
            "shape": list(volume.shape), "chunks": list(CHUNKS), "dtype": "<u2",
            "compressor": {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1},
            "dimension_separator": "/",
        },
    }
    store = ts.open(spec, create=True, delete_existing=True).result()
    store.write(volume).result()


WRITERS = {
    "zarr-raw": write_zarr_raw,
    "linumpy": write_linumpy,
    "ome-zarr-py": write_ome_zarr_py,
    "tensorstore": write_tensorstore,
}


def _import_writer_modules(method: str) -> None:
    """Import what a writer needs before its clock starts."""
    import dask.array  # noqa: F401
    import zarr  # noqa: F401

    import linumpy.io.zarr  # noqa: F401

    if method == "ome-zarr-py":
        import ome_zarr.writer  # noqa: F401
    if method == "tensorstore":
        import tensorstore  # noqa: F401


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM; ru_maxrss survives exec on Linux)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child(method: str, source: str, out: Path) -> dict:
    """Run one writer in this process; return its timing and peak memory."""
    _import_writer_modules(method)
    if method == "linumpy-stream":
        volume = lazy_volume(tuple(int(n) for n in source.split("x")))
        nbytes = volume.nbytes
        start, cpu = time.perf_counter(), cpu_seconds()
        write_linumpy(volume, out)
    else:
        volume = np.load(source)
        nbytes = volume.nbytes
        start, cpu = time.perf_counter(), cpu_seconds()
        WRITERS[method](volume, out)
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    peak_mib = peak_rss_mib()
    disk = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    return {"method": method, "seconds": seconds, "cpu_seconds": cpu, "mb_per_s": nbytes / 1e6 / seconds,
            "peak_rss_mib": peak_mib, "input_mib": nbytes / 2**20, "disk_mib": disk / 2**20}


def run_child(method: str, source: str, workdir: Path) -> dict:
    out = workdir / f"{method}.ome.zarr"
    command = [sys.executable, __file__, "--child", method, "--source", source, "--out", str(out)]
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size_mib", type=int, default=512, help="In-memory volume size for (a)-(d).")
    parser.add_argument("--stream_size_mib", type=int, default=2048, help="Lazily generated volume size for (e); 0 skips it.")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--source", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.source, args.out)))
        return

    shape = volume_shape(args.size_mib)
    print(f"bench_io_pyramid: uint16 volume {shape} ({args.size_mib} MiB), chunks {CHUNKS}, blosc-lz4")
    with tempfile.TemporaryDirectory(prefix="bench_io_") as tmp:
        workdir = Path(tmp)
        source = workdir / "volume.npy"
        np.save(source, make_volume(shape))
        results = {m: run_child(m, str(source), workdir) for m in METHODS}
        if args.stream_size_mib:
            stream_shape = volume_shape(args.stream_size_mib)
            results["linumpy-stream"] = run_child("linumpy-stream", "x".join(map(str, stream_shape)), workdir)
    print(f"{'method':<16}{'seconds':>9}{'CPU s':>8}{'MB/s':>9}{'peak RSS MiB':>14}{'input MiB':>11}{'disk MiB':>10}")
    for r in results.values():
        print(f"{r['method']:<16}{r['seconds']:>9.2f}{r['cpu_seconds']:>8.2f}{r['mb_per_s']:>9.0f}{r['peak_rss_mib']:>14.0f}"
              f"{r['input_mib']:>11.0f}{r['disk_mib']:>10.0f}")
    ours = results["linumpy"]["seconds"]
    raw = results["zarr-raw"]["seconds"]
    print(f"linumpy (level 0 + {N_LEVELS} levels) / zarr-python raw level 0: {ours / raw:.2f}x (target <= 1.3x)")
    print(f"ome-zarr-py / linumpy: {results['ome-zarr-py']['seconds'] / ours:.2f}x faster (target >= 2x)")
    print(f"linumpy / tensorstore raw level 0: {ours / results['tensorstore']['seconds']:.2f}x")
    if "linumpy-stream" in results:
        r = results["linumpy-stream"]
        print(f"streaming {r['input_mib']:.0f} MiB: peak RSS {r['peak_rss_mib']:.0f} MiB (target < 1024)")


if __name__ == "__main__":
    main()
