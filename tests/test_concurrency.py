"""Several processes writing disjoint, chunk-aligned regions of one OME-Zarr output.

The writer is pickled to worker processes (the way a dask distributed or
multiprocessing step shares it); each worker writes its own regions into the
common temporary; the parent finalizes. The result must be byte-identical to
one writer writing everything.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from itertools import product
from pathlib import Path

import numpy as np
import pytest

from linumpy.io.zarr import OmeZarrWriter, read_omezarr

RESOLUTION = (0.0035, 0.01, 0.01)
SHAPE = (6, 50, 70)  # not a multiple of the chunks: edge chunks are partial
N_WORKERS = 3


def _volume() -> np.ndarray:
    return np.random.default_rng(21).normal(100, 20, SHAPE).astype(np.float32)


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _blocks(shape, block) -> list[tuple[slice, ...]]:
    """Every storage block of ``shape``, as regions."""
    starts = product(*(range(0, n, b) for n, b in zip(shape, block)))
    return [tuple(slice(s, min(s + b, n)) for s, b, n in zip(start, block, shape)) for start in starts]


def _write_regions(writer: OmeZarrWriter, regions: list[tuple[slice, ...]]) -> int:
    data = _volume()
    for region in regions:
        writer[region] = data[region]
    return len(regions)


@pytest.fixture(scope="module")
def pool():
    with ProcessPoolExecutor(N_WORKERS, mp_context=multiprocessing.get_context("spawn")) as executor:
        yield executor


def _write(out: Path, chunks, pool: ProcessPoolExecutor | None, ngff_version: str, shards=None) -> None:
    writer = OmeZarrWriter(out, SHAPE, chunks, np.float32, ngff_version=ngff_version, shards=shards)
    regions = _blocks(SHAPE, writer.write_block)
    if pool is None:
        _write_regions(writer, regions)
    else:
        order = np.random.default_rng(0).permutation(len(regions))  # interleave regions across workers
        shares = [[regions[i] for i in order[w::N_WORKERS]] for w in range(N_WORKERS)]
        written = list(pool.map(_write_regions, [writer] * N_WORKERS, shares))
        assert sum(written) == len(regions)
    writer.finalize(RESOLUTION, n_levels=2, attributes={"slice_id": 3})


@pytest.mark.parametrize(
    ("ngff_version", "chunks", "shards"),
    [("0.4", (2, 16, 16), None), ("0.5", (2, 8, 16), (2, 16, 32))],
    ids=["v0.4-chunks", "v0.5-shards"],
)
def test_parallel_region_writers_match_a_single_writer(tmp_path, pool, ngff_version, chunks, shards):
    name = "slice_z03_normalize.ome.zarr"
    parallel, single = tmp_path / "parallel" / name, tmp_path / "single" / name
    _write(parallel, chunks, pool, ngff_version, shards)
    _write(single, chunks, None, ngff_version, shards)
    assert _tree_bytes(parallel) == _tree_bytes(single)
    image, _ = read_omezarr(parallel)
    np.testing.assert_array_equal(image.compute(), _volume())
    assert sorted(p.name for p in parallel.parent.iterdir()) == [name], "no temporary left"
