"""The pyramid built while level 0 is written (linumpy.io.streamed_pyramid) equals the one built at finalize."""

from __future__ import annotations

import filecmp
import itertools
import pickle
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from linumpy.io import streamed_pyramid
from linumpy.io.zarr import OmeZarrWriter, read_omezarr, save_omezarr

RESOLUTION = (0.0015, 0.010, 0.010)


def stored_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def assert_same_files(a: Path, b: Path) -> None:
    """Every file of the two images (same name in different folders) is byte-identical."""
    names = stored_files(a)
    assert names == stored_files(b)
    assert [n for n in names if not filecmp.cmp(a / n, b / n, shallow=False)] == []


def speckle(shape: tuple[int, ...], dtype: np.dtype, seed: int = 0) -> np.ndarray:
    """Gamma speckle with empty (zero) A-lines at one border, in ``dtype``."""
    values = np.random.default_rng(seed).gamma(2.0, 1.0, shape) * (3000 if np.dtype(dtype).kind == "u" else 1)
    values[..., :3] = 0
    return values.astype(dtype)


def chunk_regions(shape: tuple[int, ...], chunks: tuple[int, ...]) -> list[tuple[slice, ...]]:
    grid = itertools.product(*(range(0, n, c) for n, c in zip(shape, chunks)))
    return [tuple(slice(s, min(s + c, n)) for s, c, n in zip(start, chunks, shape)) for start in grid]


def write_by_chunks(path: Path, data: np.ndarray, chunks: tuple[int, ...], order: str, n_levels: int,
                    version: str = "0.4") -> streamed_pyramid.StreamedPyramid | None:
    """Write ``data`` chunk by chunk (in ``order``, on 3 threads) and finalize; return the builder used."""
    regions = chunk_regions(data.shape, chunks)
    if order == "shuffled":
        regions = [regions[i] for i in np.random.default_rng(1).permutation(len(regions))]
    resolution = RESOLUTION[-data.ndim:]
    with OmeZarrWriter(path, data.shape, chunks, data.dtype, ngff_version=version) as writer:
        builder = writer._pyramid

        def write(region: tuple[slice, ...]) -> None:
            writer[region] = data[region]

        with ThreadPoolExecutor(3) as pool:
            list(pool.map(write, regions))
        writer.finalize(resolution, n_levels)
    return builder


@pytest.mark.parametrize(
    ("shape", "chunks", "dtype", "order", "n_levels", "version"),
    [
        ((5, 37, 53), (2, 8, 8), np.float32, "shuffled", 5, "0.4"),  # odd borders: weighted last voxels
        ((5, 37, 53), (2, 8, 16), np.float16, "raster", 3, "0.4"),
        ((5, 37, 53), (2, 8, 8), np.uint16, "shuffled", 9, "0.5"),  # more levels than the image holds
        ((37, 53), (8, 8), np.float32, "shuffled", 4, "0.4"),  # a 2D map
    ],
)
def test_streamed_pyramid_is_byte_identical_to_the_finalize_pyramid(tmp_path, shape, chunks, dtype, order,
                                                                    n_levels, version):
    data = speckle(shape, dtype)
    reference = tmp_path / "reference" / "image.ome.zarr"
    save_omezarr(data, reference, RESOLUTION[-len(shape):], chunks=chunks, n_levels=n_levels, ngff_version=version)
    streamed = tmp_path / "streamed" / "image.ome.zarr"
    builder = write_by_chunks(streamed, data, chunks, order, n_levels, version)
    assert builder is not None and builder.failure is None
    assert_same_files(reference, streamed)


def test_unwritten_chunks_count_as_zeros(tmp_path):
    data = speckle((4, 40, 40), np.float32)
    data[:, 8:24, 16:32] = 0  # two missing tiles
    regions = [r for r in chunk_regions(data.shape, (4, 8, 8)) if data[r].any()]
    streamed = tmp_path / "streamed" / "image.ome.zarr"
    with OmeZarrWriter(streamed, data.shape, (4, 8, 8)) as writer:
        for region in regions:
            writer[region] = data[region]
        builder = writer._pyramid
        writer.finalize(RESOLUTION, 3)
    assert builder.failure is None
    reference = tmp_path / "reference" / "image.ome.zarr"
    save_omezarr(data, reference, RESOLUTION, chunks=(4, 8, 8), n_levels=3)
    assert_same_files(reference, streamed)


@pytest.mark.parametrize("case", ["part_of_a_chunk", "chunk_twice", "over_budget", "pickled"])
def test_the_writer_falls_back_to_the_stored_level0(tmp_path, case):
    data = speckle((4, 40, 40), np.float32)
    reference = tmp_path / "reference" / "image.ome.zarr"
    save_omezarr(data, reference, RESOLUTION, chunks=(4, 8, 8), n_levels=3)
    streamed = tmp_path / "streamed" / "image.ome.zarr"
    with OmeZarrWriter(streamed, data.shape, (4, 8, 8)) as writer:
        builder = writer._pyramid
        if case == "over_budget":
            builder.budget_bytes = 1000
        if case == "chunk_twice":
            writer[:, :8, :8] = 0
        if case == "pickled":
            pickle.dumps(writer)
        if case == "part_of_a_chunk":
            writer[:, :4, :] = data[:, :4]
            writer[:, 4:, :] = data[:, 4:]
        else:
            writer[:] = data
        writer.finalize(RESOLUTION, 3)
    assert builder.failure is not None
    assert_same_files(reference, streamed)


@pytest.mark.parametrize(("built", "asked"), [(2, 2), (3, 2), (9, 9), (2, 4), (0, 0)])
def test_a_writer_told_its_levels_builds_only_those(tmp_path, built, asked):
    data = speckle((4, 40, 40), np.float32)
    reference = tmp_path / "reference" / "image.ome.zarr"
    save_omezarr(data, reference, RESOLUTION, chunks=(4, 8, 8), n_levels=asked)
    streamed = tmp_path / "streamed" / "image.ome.zarr"
    with OmeZarrWriter(streamed, data.shape, (4, 8, 8), n_levels=built) as writer:
        builder = writer._pyramid
        assert builder.n_levels == min(built, len(streamed_pyramid.pyramid_shapes(data.shape)))
        for region in chunk_regions(data.shape, (4, 8, 8)):
            writer[region] = data[region]
        writer.finalize(RESOLUTION, asked)
    assert (builder.failure is None) == (built >= asked)  # asked for more: built from level 0 at finalize
    assert_same_files(reference, streamed)


def test_morton_order_completes_groups_early(tmp_path):
    data = speckle((2, 64, 64), np.float32)
    peaks = {}
    for order in ("raster", "morton"):
        with OmeZarrWriter(tmp_path / f"{order}.ome.zarr", data.shape, (2, 8, 8)) as writer:
            regions = chunk_regions(data.shape, (2, 8, 8))
            if order == "morton":
                regions = streamed_pyramid.morton_order(regions, lambda r: (r[1].start // 8, r[2].start // 8))
            for region in regions:
                writer[region] = data[region]
            peaks[order] = writer._pyramid.peak_bytes
            writer.finalize(RESOLUTION[-3:], 3)
        assert np.array_equal(read_omezarr(tmp_path / f"{order}.ome.zarr", 3)[0].compute(),
                              read_omezarr(tmp_path / "raster.ome.zarr", 3)[0].compute())
    assert peaks["morton"] < peaks["raster"] / 2


def test_layouts_that_cannot_stream():
    assert streamed_pyramid.streamable((4, 40, 40), (4, 8, 8))
    assert streamed_pyramid.streamable((4, 7, 9), (4, 8, 8))  # one chunk per axis
    assert not streamed_pyramid.streamable((4, 40, 40), (4, 9, 8))  # odd chunks split 2 x 2 blocks


_NO_DASK_PROBE = """
import sys
import numpy as np
import linumpy.cli, linumpy.intensity.statistics_reads  # what the script imports before it starts pass 1's reads
assert "scipy" not in sys.modules
import linumpy.intensity.axial  # the axial correction's whole import chain
from linumpy.io.zarr import OmeZarrWriter
data = np.arange(4 * 40 * 40, dtype=np.float32).reshape(4, 40, 40)
with OmeZarrWriter(sys.argv[1], data.shape, (4, 8, 8), n_levels=2) as writer:
    for y in range(0, 40, 8):
        for x in range(0, 40, 8):
            writer[:, y:y + 8, x:x + 8] = data[:, y:y + 8, x:x + 8]
    writer.finalize((0.0015, 0.010, 0.010), 2)
print(sorted(m for m in ("dask", "dask.array", "matplotlib", "scipy.optimize", "skimage") if m in sys.modules))
"""


def test_a_streamed_write_imports_neither_dask_nor_matplotlib(tmp_path):
    """The axial correction's imports and a streamed write with its finalize need no dask (0.3-0.6 CPU s to import),
    no matplotlib (imported for the QC figure only) and neither scipy.optimize nor scikit-image (the focus fits
    after the first pass, ~0.4 CPU s: imported while it runs); the same files as the dask-built pyramid."""
    import subprocess
    import sys

    streamed = tmp_path / "streamed" / "image.ome.zarr"
    done = subprocess.run([sys.executable, "-c", _NO_DASK_PROBE, str(streamed)], capture_output=True, text=True,
                          check=True)
    assert done.stdout.split("\n")[-2] == "[]"
    reference = tmp_path / "reference" / "image.ome.zarr"
    data = np.arange(4 * 40 * 40, dtype=np.float32).reshape(4, 40, 40)
    save_omezarr(data, reference, RESOLUTION, chunks=(4, 8, 8), n_levels=2)
    assert_same_files(reference, streamed)

