"""Axial correction: surface detection, focus, Vermeer attenuation, the script.

Unit tests use synthetic A-lines/volumes with a known surface, attenuation,
Gaussian focus and noise floor; integration tests run on the simulator's
``tiny`` acquisition (mosaic grids of its three slices) and compare with its
ground truth (surface maps, homogeneous reference columns).
"""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import zarr
from scipy import ndimage
from ome_zarr_models.v04.image import Image

from linumpy.errors import InputError
from linumpy.intensity import attenuation, axial, blocks, focus, statistics_reads, surface
from linumpy.intensity.axial import (
    UNCOMPENSATED_BINNING, AxialSettings, SliceStatistics, _flattened_binned, _focus_profile, correct_block,
    correct_slice, output_paths, uncompensated_path,
)
from linumpy.intensity.blocks import ChunkColumnCache, bin_laterally, lateral_blocks, stored_binned_level
from linumpy.io.acquisition import open_acquisition
from linumpy.io.zarr import open_omezarr_level, read_omezarr, read_omezarr_info, save_omezarr
from linumpy.mosaic.grid import write_mosaic_grid
from linumpy.parallel import ordered_map
from linumpy.qc.records import qc_record_path, read_qc_record

SCRIPT = Path(__file__).resolve().parents[1] / "bin" / "linum_axial_corr.py"
DZ_MM = 0.0015


def synthetic_volume(shape=(100, 48, 48), mu=4.0, focus_px=(35.0, 30.0), floor=0.01, seed=0,
                     agarose_border=12):
    """Tissue disc in agarose under a tilted surface, Gaussian focus, speckle and noise floor."""
    rng = np.random.default_rng(seed)
    n_z, n_y, n_x = shape
    yy, xx = np.mgrid[0:n_y, 0:n_x]
    true_surface = 12.0 + 0.06 * yy - 0.04 * xx
    tissue = (yy - n_y / 2) ** 2 + (xx - n_x / 2) ** 2 < (n_y / 2 - agarose_border) ** 2
    depth_mm = (np.arange(n_z)[:, None, None] - np.ceil(true_surface)[None]) * DZ_MM
    reflectivity = np.where(tissue, 1.0, 0.03)[None]
    mus = np.where(tissue, mu, 0.3)[None]
    signal = np.where(depth_mm >= 0, reflectivity * np.exp(-2 * mus * np.clip(depth_mm, 0, None)), 0.0)
    gain = focus.focus_model("gaussian", np.arange(n_z), 1.0, *focus_px)[:, None, None]
    volume = signal * gain * rng.gamma(2.0, 0.5, shape) + floor * rng.standard_exponential(shape)
    return volume.astype(np.float32), true_surface, tissue


# --- streaming ----------------------------------------------------------------------------


@pytest.mark.parametrize("binning", [1, 2])
def test_chunk_cache_serves_every_block_exactly(binning):
    data = np.random.default_rng(0).random((5, 37, 29), dtype=np.float32)
    volume = da.from_array(data, chunks=(2, 8, 10))
    cache = ChunkColumnCache(volume, budget_bytes=0, binning=binning)  # 2 columns: constant eviction
    expected = bin_laterally(data, binning)
    covered = np.zeros((37, 29), int)
    for part in lateral_blocks((37, 29), 4, 2, cache.block_group(4)):
        covered[part.inner] += 1
        region = tuple(slice(s.start // binning, -(-s.stop // binning)) for s in part.outer)
        assert np.array_equal(cache.read(region), expected[(slice(None), *region)])
    assert (covered == 1).all()


@pytest.mark.parametrize("budget", [0, 10**6])  # 2 columns (constant eviction), every column
def test_prefetched_reads_serve_every_block_exactly(budget):
    """Reads while a prefetch thread decodes the coming columns: the same values, on 3 worker threads;
    the first columns are decoded before any read asks for them."""
    data = np.random.default_rng(0).random((5, 37, 29), dtype=np.float32)
    cache = ChunkColumnCache(da.from_array(data, chunks=(2, 8, 10)), budget_bytes=budget)
    parts = list(lateral_blocks((37, 29), 4, 2, cache.block_group(4)))
    prefetched = []
    decode = cache._decode

    def counted(cy: int, cx: int) -> np.ndarray:
        if threading.current_thread().name == "linumpy-prefetch":
            prefetched.append((cy, cx))
        return decode(cy, cx)

    cache._decode = counted
    with cache.prefetching(part.outer for part in parts):
        deadline = time.monotonic() + 10
        while not prefetched and time.monotonic() < deadline:
            time.sleep(0.01)
        assert prefetched[:1] == [(0, 0)]
        blocks = list(ordered_map(lambda part: cache.read(part.outer), parts, workers=3))
    for part, block in zip(parts, blocks, strict=True):
        assert np.array_equal(block, data[(slice(None), *part.outer)])


def test_prefetch_decodes_every_column_before_the_reads_when_the_cache_holds_them_all():
    """A cache that holds every column the reads touch: the prefetch thread decodes them all without
    waiting for reads (none evicted); one that holds 2 stops at the columns of the first reads."""
    data = np.random.default_rng(0).random((5, 37, 29), dtype=np.float32)
    columns = {}
    for budget in (10**6, 0):
        cache = ChunkColumnCache(da.from_array(data, chunks=(2, 8, 10)), budget_bytes=budget)
        parts = list(lateral_blocks((37, 29), 4, 2, cache.block_group(4)))
        with cache.prefetching(part.outer for part in parts):
            deadline = time.monotonic() + 10
            while len(cache._columns) < 15 and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.05)
            columns[budget] = len(cache._columns) + len(cache._decoding)
        assert cache._started == 0
    assert columns == {10**6: 15, 0: 2}  # 5 x 3 chunk columns; the 2 of the first reads


def test_a_prefetch_after_another_starts_when_the_other_is_done():
    """``after``: nothing decoded until the event is set (a ``with`` that ends first does not hang);
    the first prefetch's ``done`` starts the second (the axial correction's pass 2 after pass 1)."""
    data = np.random.default_rng(0).random((5, 37, 29), dtype=np.float32)

    def cache_and_regions() -> tuple[ChunkColumnCache, list]:
        cache = ChunkColumnCache(da.from_array(data, chunks=(2, 8, 10)), budget_bytes=10**6)
        return cache, [part.outer for part in lateral_blocks((37, 29), 4, 2, cache.block_group(4))]

    def wait_for(condition) -> None:
        deadline = time.monotonic() + 10
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.01)

    second, regions = cache_and_regions()
    with second.prefetching(regions, after=threading.Event()):
        time.sleep(0.2)
    assert not second._columns
    first, first_regions = cache_and_regions()
    first_done = threading.Event()
    with second.prefetching(regions, after=first_done):
        time.sleep(0.2)
        assert not second._columns
        with first.prefetching(first_regions, done=first_done):
            wait_for(first_done.is_set)
            wait_for(lambda: len(second._columns) == 15)
        assert len(first._columns) == 15 and len(second._columns) == 15


def test_the_halo_of_an_evicted_column_is_kept_for_the_reads_announced():
    """Reads announced with ``prefetching`` (its thread held back: the reads decode, in order): the rows of an
    evicted column that the next group of blocks reads again come from the part kept at its eviction, not
    from a second decode; the same values as without the announcement."""
    data = np.random.default_rng(0).random((5, 64, 40), dtype=np.float32)

    def cache_rows(capacity: int) -> int:
        return max(1, capacity // 2 - 2)

    def read_all(announced: bool) -> list:
        cache = ChunkColumnCache(da.from_array(data, chunks=(2, 16, 10)), budget_bytes=6 * 5 * 16 * 10 * 4)
        decoded = []
        decode = cache._decode

        def counted(cy: int, cx: int) -> np.ndarray:
            decoded.append((cy, cx))
            return decode(cy, cx)

        cache._decode = counted
        parts = list(lateral_blocks((64, 40), 4, 2, cache.block_group(4)))
        held_back = cache.prefetching((part.outer for part in parts), after=threading.Event())
        with held_back if announced else contextlib.nullcontext():
            for part in parts:
                assert np.array_equal(cache.read(part.outer), data[(slice(None), *part.outer)])
        assert not cache._kept
        return decoded

    plain, announced = read_all(False), read_all(True)
    assert len(set(plain)) == len(set(announced)) == 16  # 4 x 4 chunk columns
    assert len(announced) < len(plain)
    # groups of one chunk row (a cache of 6 columns): without the kept parts the rows on both sides of each
    # of the 3 group boundaries are decoded twice; with them at most the row below (its first rows are the
    # group's halo, the next group reads it whole)
    assert cache_rows(6) == 1
    assert len(plain) == 16 + 3 * 2 * 4
    assert len(announced) <= 16 + 3 * 4


def test_once_the_reads_begin_the_prefetch_decodes_as_far_ahead_as_the_cache_holds():
    """Reads announced, one at a time with pauses: once they have begun, columns are decoded further ahead
    than ``PREFETCH_READS`` reads (as far as the columns of the reads up to theirs fit the cache), never
    pushing out one that an earlier read needs: no more decodes than the reads alone make, the same values."""
    data = np.random.default_rng(0).random((5, 64, 40), dtype=np.float32)

    def read_all(prefetched: bool) -> list[tuple[tuple[int, int], int]]:
        cache = ChunkColumnCache(da.from_array(data, chunks=(2, 16, 10)), budget_bytes=8 * 5 * 16 * 10 * 4)
        decoded = []
        decode = cache._decode

        def counted(cy: int, cx: int) -> np.ndarray:
            decoded.append(((cy, cx), cache._started))
            return decode(cy, cx)

        cache._decode = counted
        parts = list(lateral_blocks((64, 40), 4, 2, cache.block_group(4)))
        announced = cache.prefetching((part.outer for part in parts), after=None if prefetched else threading.Event())
        with announced:
            for part in parts:
                assert np.array_equal(cache.read(part.outer), data[(slice(None), *part.outer)])
                if prefetched:
                    time.sleep(0.005)
        return decoded, [cache._windows(part.outer) for part in parts]

    alone, _ = read_all(False)
    ahead, windows = read_all(True)
    first_read = {}
    for index, touched in enumerate(windows):
        for key, _ in touched:
            first_read.setdefault(key, index)
    # 4 x 4 chunk columns, each decoded once by the reads alone; the prefetch of 2 reads ahead with the least
    # recently used column evicted (before, session perf33) decoded 18
    assert len(alone) == 16 and len(ahead) <= 17
    assert max(first_read[key] - started for key, started in ahead) > 1 + blocks.PREFETCH_READS


def test_a_prefetched_column_that_fails_is_raised_by_its_read():
    data = np.zeros((5, 37, 29), np.float32)
    cache = ChunkColumnCache(da.from_array(data, chunks=(2, 8, 10)))
    decode = cache._decode

    def failing(cy: int, cx: int) -> np.ndarray:
        if (cy, cx) == (1, 0):
            raise OSError("damaged chunk")
        return decode(cy, cx)

    cache._decode = failing
    parts = list(lateral_blocks((37, 29), 4, 2, cache.block_group(4)))
    with pytest.raises(OSError, match="damaged chunk"), cache.prefetching(part.outer for part in parts):
        for part in parts:
            cache.read(part.outer)


def test_compensation_of_a_range_of_planes_equals_the_whole():
    """``planes``: the tail sums evaluated on planes 0 and [start, stop) only (NaN elsewhere) and the
    compensation of those planes are bit-identical to the whole block's on them."""
    signal, _ = two_tissues(n_z=50, size=24)
    grid = attenuation.BinGrid.of(signal.shape[1:])
    sums = attenuation.binned_tail_sums(signal, grid)
    whole = attenuation.edge_aware_tails(signal, sums, grid, 2.0)
    for start, stop in ((7, 41), (0, 50), (1, 20), (30, 30)):
        part = attenuation.edge_aware_tails(signal, sums, grid, 2.0, planes=(start, stop))
        kept = np.zeros(51, bool)
        kept[[0, *range(start, stop)]] = True
        np.testing.assert_array_equal(part[kept], whole[kept])
        assert np.isnan(part[~kept]).all()
        compensated = attenuation.compensate_attenuation(signal, part, planes=(start, stop))
        np.testing.assert_array_equal(compensated[start:stop],
                                      attenuation.compensate_attenuation(signal, whole)[start:stop])


@pytest.mark.parametrize("phase", [(0, 0), (1, 1)])
def test_fused_compensation_equals_the_sums_then_the_compensation(phase):
    """``compensate_edge_aware``: the bits of ``compensate_attenuation`` of the inner A-lines by their
    ``edge_aware_tails``, on the whole depth and on a range of planes (the others left as they were)."""
    signal, _ = two_tissues(n_z=50, size=28)
    grid = attenuation.BinGrid.of(signal.shape[1:], phase)
    sums = attenuation.binned_tail_sums(signal, grid)
    inner = (slice(3, 25), slice(5, 22))
    for planes in (None, (7, 41), (0, 50), (30, 30)):
        tails = attenuation.edge_aware_tails(signal, sums, grid, 2.0, inner=inner, planes=planes)
        expected = signal[(slice(None), *inner)].copy()
        attenuation.compensate_attenuation(expected, tails, out=expected, planes=planes)
        fused = signal.copy()
        result = attenuation.compensate_edge_aware(fused, sums, grid, 2.0, inner=inner, planes=planes)
        np.testing.assert_array_equal(result.view(np.uint32), expected.view(np.uint32))
        outside = np.ones(signal.shape, bool)
        outside[(slice(None), *inner)] = False
        np.testing.assert_array_equal(fused[outside], signal[outside])


@pytest.mark.parametrize("phase", [(0, 0), (1, 0)])
def test_block_pass_takes_the_bits_of_the_whole_block_functions(phase):
    """``BlockPass`` fed group after group: the binned tail sums of the signal and of it clipped, its imaged
    A-lines and the guide, bit for bit those of the whole-block functions (an odd depth, negative samples,
    A-lines of zeros)."""
    rng = np.random.default_rng(5)
    signal = rng.standard_normal((37, 15, 13)).astype(np.float32) + np.float32(0.3)
    signal[:, 4, 6] = 0
    signal[:, 9, :] = 0
    grid = attenuation.BinGrid.of(signal.shape[1:], phase)
    clipped = np.maximum(signal, 0)
    taken = attenuation.BlockPass(signal.shape, grid)
    fed = signal.copy()
    for first in range(0, 37, 16):
        taken.add(first, fed[first : first + 16])
    unclipped_sums, clipped_sums = taken.tail_sums()
    for found, expected in ((fed, clipped), (unclipped_sums, attenuation.binned_tail_sums(signal, grid)),
                            (clipped_sums, attenuation.binned_tail_sums(clipped, grid)),
                            (taken.guide(), attenuation.level_guide(clipped))):
        np.testing.assert_array_equal(found.view(np.uint32), expected.view(np.uint32))
    np.testing.assert_array_equal(taken.imaged, np.any(signal != 0, axis=0))


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_statistics_read_the_stored_binned_level_when_it_is_exact(tmp_path, dtype):
    """Level 1 of linumpy's pyramid is bin_laterally(level 0, 2) exactly (odd borders too); float16 is not used."""
    data = np.random.default_rng(1).gamma(2.0, size=(6, 37, 29)).astype(dtype)
    save_omezarr(data, tmp_path / "v.ome.zarr", (0.0015, 0.003, 0.003), chunks=(4, 8, 10), n_levels=3)
    volume, _ = open_omezarr_level(tmp_path / "v.ome.zarr")
    level = stored_binned_level(tmp_path / "v.ome.zarr", volume, 2)
    if dtype == np.float16:
        assert level is None
        return
    assert stored_binned_level(tmp_path / "v.ome.zarr", volume, 3) is None
    np.testing.assert_array_equal(level[:], bin_laterally(data, 2))
    cache = ChunkColumnCache(volume, budget_bytes=0, binning=2, binned=level)
    for part in lateral_blocks((37, 29), 4, 2, cache.block_group(4)):
        region = tuple(slice(s.start // 2, -(-s.stop // 2)) for s in part.outer)
        np.testing.assert_array_equal(cache.read(region), bin_laterally(data, 2)[(slice(None), *region)])
# --- surface -------------------------------------------------------------------------------


def test_surface_of_a_tilted_step_is_found_within_half_a_voxel():
    volume, true_surface, tissue = synthetic_volume()
    found = surface.detect_surface(volume)
    error = found - np.ceil(true_surface)  # first tissue voxel
    assert np.isfinite(found).all()
    assert np.median(np.abs(error)) <= 0.5
    assert np.abs(error).max() <= 2.0


def test_noise_only_a_lines_have_no_surface():
    rng = np.random.default_rng(3)
    volume = rng.standard_exponential((60, 20, 20)).astype(np.float32) * 0.01
    volume[:, :, 10:][25:] += 1.0  # tissue in the right half only
    found = surface.detect_surface(volume, lateral_sigma_px=1.0)
    assert np.isnan(found[:, :8]).all()
    assert np.allclose(found[:, 12:], 25, atol=0.5)


def test_flatten_puts_every_surface_at_the_same_depth():
    volume, true_surface, _ = synthetic_volume(floor=0.0)
    first = np.ceil(true_surface).astype(int)
    flat = surface.flatten_surface(volume, first - 3, 40)
    assert flat.shape == (40, 48, 48)
    assert (flat[:3] == 0).all() and (flat[3] > 0).all()


@pytest.mark.parametrize("shape", [(30, 16, 12), (30, 14, 11), (30, 13, 9)])
def test_binning_before_flattening_gives_the_same_bits(shape):
    """The uncompensated copy bins the A-lines that share a shift before flattening them (the bins a shift
    edge crosses from their own A-lines): the bits of binning the flattened block, odd edges included."""
    rng = np.random.default_rng(5)
    n_z, n_y, n_x = shape
    volume = rng.random((n_z, n_y + 2, n_x + 2), dtype=np.float32)[:, 1:-1, 1:-1]  # a strided view
    yy, xx = np.mgrid[:n_y, :n_x]
    for shift in (np.full((n_y, n_x), 2), 1 + (0.3 * yy - 0.2 * xx).round().astype(int),
                  rng.integers(-8, 12, (n_y, n_x))):
        for depth in (20, 36):
            expected = bin_laterally(surface.flatten_surface(volume, shift, depth), UNCOMPENSATED_BINNING)
            binned = _flattened_binned(volume, shift, depth, UNCOMPENSATED_BINNING)
            assert binned.dtype == expected.dtype and binned.tobytes() == expected.tobytes()


def test_compensation_keeps_the_signal_where_the_sums_are_zero():
    """A group of planes with a zero sum takes the masked division (a new output keeps 0 there, the signal
    compensated in place keeps its value times ``T[0]``); the other groups divide all their voxels."""
    rng = np.random.default_rng(6)
    signal = rng.random((40, 6, 7), dtype=np.float32)
    tails = rng.random((41, 6, 7), dtype=np.float32) + np.float32(0.5)
    tails[20, 2, 3] = 0.0
    positive = tails[:-1] > 0
    quotient = signal / np.where(positive, tails[:-1], 1)
    np.testing.assert_array_equal(attenuation.compensate_attenuation(signal, tails),
                                  np.where(positive, quotient, 0) * tails[0])
    in_place = signal.copy()
    attenuation.compensate_attenuation(in_place, tails, out=in_place)
    np.testing.assert_array_equal(in_place, np.where(positive, quotient, signal) * tails[0])


@pytest.mark.parametrize("offset", [-5, 0, 3])
def test_flatten_by_copies_equals_the_gather(offset):
    """A few distinct shifts (a surface plane) take whole-range copies; the values are the gather's."""
    rng = np.random.default_rng(4)
    volume = rng.random((30, 14, 12), dtype=np.float32)[:, 1:-1, 1:-1]  # a strided view, as in correct_block
    yy, xx = np.mgrid[:12, :10]
    plane = offset + (yy // 5 + xx // 4)  # 6 distinct shifts: copies
    scattered = offset + rng.integers(-12, 12, (12, 10))  # many distinct shifts: one gather
    for depth in (20, 36):
        by_copies = surface.flatten_surface(volume, plane, depth, fill=-1.0)
        k = np.arange(depth)[:, None, None] + plane
        expected = np.where((k >= 0) & (k < 30), np.take_along_axis(volume, np.clip(k, 0, 29), 0), -1.0)
        np.testing.assert_array_equal(by_copies, expected)
        gathered = surface.flatten_surface(volume, scattered, depth, fill=-1.0)
        k = np.arange(depth)[:, None, None] + scattered
        expected = np.where((k >= 0) & (k < 30), np.take_along_axis(volume, np.clip(k, 0, 29), 0), -1.0)
        np.testing.assert_array_equal(gathered, expected)


# --- attenuation (Vermeer) -----------------------------------------------------------------


@pytest.mark.parametrize("mu", [1.0, 4.0, 8.0])
def test_vermeer_recovers_homogeneous_attenuation_exactly(mu):
    line = np.exp(-2 * mu * DZ_MM * np.arange(150))
    estimate = attenuation.attenuation_coefficient(attenuation.tail_sums(line), DZ_MM)
    assert np.allclose(estimate, mu, rtol=1e-3)  # the end-of-range extension is exact here
    compensated = attenuation.compensate_attenuation(line, attenuation.tail_sums(line))
    assert np.ptp(compensated) / compensated.mean() < 1e-3


def test_vermeer_resolves_two_layers():
    depth = np.arange(200)
    mu = np.where(depth < 80, 2.0, 10.0)
    transmission = np.exp(-2 * DZ_MM * np.concatenate([[0.0], np.cumsum(mu)[:-1]]))
    line = mu * transmission  # backscatter proportional to attenuation
    estimate = attenuation.attenuation_coefficient(attenuation.tail_sums(line), DZ_MM)
    assert np.allclose(estimate[5:75], 2.0, rtol=0.02)
    assert np.allclose(estimate[85:195], 10.0, rtol=0.02)


def test_slope_attenuation_with_speckle_and_noise_floor():
    """Stated tolerance: 10% for speckled A-lines after noise-floor subtraction."""
    rng = np.random.default_rng(5)
    for mu in (3.0, 6.0, 9.0):
        clean = np.exp(-2 * mu * DZ_MM * np.arange(100))[:, None, None] * np.ones((1, 30, 30))
        noisy = clean * rng.gamma(2.0, 0.5, clean.shape) + 0.01 * rng.standard_exponential(clean.shape)
        signal = np.maximum(noisy - 0.01, 0)
        tails = attenuation.tail_sums(signal, lateral_sigma_px=2.0)
        mean_mu = attenuation.slope_attenuation(tails, np.zeros((30, 30)), 100, DZ_MM)
        assert abs(np.median(mean_mu) / mu - 1) < 0.10


@pytest.mark.parametrize("mu", [2.0, 4.0, 8.0])
def test_slope_attenuation_per_a_line_on_a_short_range(mu):
    """70 samples (~100 um, the tiny preset's tissue range): 90% of the speckled A-lines within 25%.

    The telescoped Vermeer mean, decided by the end-of-range extension on so short a range, spread
    0.53-1.45x (mu 2) and 0.75-1.21x (mu 4) on the same lines (5th-95th percentiles).
    """
    rng = np.random.default_rng(5)
    clean = np.exp(-2 * mu * DZ_MM * np.arange(70))[:, None, None] * np.ones((1, 30, 30))
    noisy = clean * rng.gamma(2.0, 0.5, clean.shape) + 0.01 * rng.standard_exponential(clean.shape)
    tails = attenuation.tail_sums(np.maximum(noisy - 0.01, 0), lateral_sigma_px=2.0)
    ratio = attenuation.slope_attenuation(tails, np.zeros((30, 30)), 70, DZ_MM) / mu
    low, median, high = np.percentile(ratio, [5, 50, 95])
    assert abs(median - 1) < 0.05 and low > 0.75 and high < 1.25, (low, median, high)


def two_tissues(n_z=80, size=40, seed=3):
    """Speckled block: left half dim tissue (mu 2 /mm), right half bright (mu 8 /mm, 4x the backscatter)."""
    rng = np.random.default_rng(seed)
    right = np.arange(size) >= size // 2
    mu = np.where(right, 8.0, 2.0)[None, None, :] * np.ones((1, size, 1))
    clean = np.where(right, 4.0, 1.0)[None, None, :] * np.exp(-2 * mu * DZ_MM * np.arange(n_z)[:, None, None])
    return (clean * rng.gamma(4.0, 0.25, clean.shape)).astype(np.float32), right


def edge_tails(signal: np.ndarray, sigma_px: float, phase: tuple[int, int] = (0, 0)) -> np.ndarray:
    grid = attenuation.BinGrid.of(signal.shape[1:], phase)
    return attenuation.edge_aware_tails(signal, attenuation.binned_tail_sums(signal, grid), grid, sigma_px)


@pytest.mark.parametrize("phase", [(0, 0), (1, 1), (0, 1)])
def test_bin_grid_binned_is_the_reduceat_sum_bytes(phase):
    """Binned means (a whole first bin summed with the middle ones, narrower edge bins apart): ``reduceat``'s bits."""
    rng = np.random.default_rng(4)
    values = rng.standard_normal((3, 11, 9)).astype(np.float32)
    grid = attenuation.BinGrid.of((11, 9), phase)
    sums = np.add.reduceat(np.add.reduceat(values, grid.starts[0], axis=1), grid.starts[1], axis=2)
    expected = sums / np.float32(grid.counts[0][:, None] * grid.counts[1][None, :])
    np.testing.assert_array_equal(grid.binned(values).view(np.uint32), expected.view(np.uint32))


@pytest.mark.parametrize(("shape", "width"), [((6, 13, 11), 3), ((4, 9, 12), 5), ((7, 5), 5), ((2, 1, 3), 3),
                                              ((3, 4, 4), 1)])
def test_box_mean_is_scipys_uniform_filter_to_float32_rounding(shape, width):
    """The lateral box mean: scipy's ``uniform_filter`` (edges repeated) within a few float32 ulp."""
    values = (np.random.default_rng(5).random(shape) * 1e3).astype(np.float32)
    expected = ndimage.uniform_filter(values, (1,) * (len(shape) - 2) + (width, width), mode="nearest")
    result = attenuation.box_mean(values, width)
    assert result.dtype == np.float32 and result.shape == values.shape
    np.testing.assert_allclose(result, expected, rtol=5e-7, atol=0)


def test_edge_aware_tail_sums_keep_each_tissue_its_own_decay():
    """Beside an edge the box-averaged sums lend each tissue the other's decay; the guided average does not.

    After compensation each column (averaged along y) should be flat with depth: its last 20 planes
    over its first 20. Stated: within 12% on the 6 A-lines either side of the edge with the edge-aware
    average, where the box of the same sigma is off by > 25% (and the chain's former box, sigma 2, too).
    """
    signal, _ = two_tissues()
    near = slice(signal.shape[2] // 2 - 6, signal.shape[2] // 2 + 6)

    def flatness(tails: np.ndarray) -> np.ndarray:
        compensated = attenuation.compensate_attenuation(signal, tails).mean(axis=1)[:, near]
        return compensated[-20:].mean(axis=0) / compensated[:20].mean(axis=0)

    for phase in ((0, 0), (1, 1)):
        edge = flatness(edge_tails(signal, 4.0, phase))
        assert np.abs(edge - 1).max() < 0.12, edge.round(3)
    for sigma in (2.0, 4.0):
        box = flatness(attenuation.tail_sums(signal, lateral_sigma_px=sigma))
        assert np.abs(box - 1).max() > 0.25, box.round(3)


def test_edge_aware_coefficients_fitted_every_few_planes(monkeypatch):
    """The guided filter's coefficients fitted on every ``EDGE_STEP``-th plane (and the last), linear in between:
    the sums equal the fit on every plane on the fitted planes and stay within 1% in between (measured 0.64%,
    median 0.02%, on the two-tissue edge)."""
    signal, _ = two_tissues()
    step = attenuation.EDGE_STEP
    assert step > 1
    sparse = edge_tails(signal, 4.0)
    monkeypatch.setattr(attenuation, "EDGE_STEP", 1)
    every = edge_tails(signal, 4.0)
    assert np.allclose(sparse[::step], every[::step], rtol=1e-5)
    assert np.abs(sparse / every - 1).max() < 0.01


def test_edge_aware_tail_sums_on_one_tissue_linear_and_seamless():
    """One tissue: the compensation is flat (within 5%) and its gain no noisier than the box's (the guide's
    speckle cancels in ``T[0] / T[k]``: lateral CV of the gain over the last 20 planes, measured 0.041 vs
    0.067). Scaling the signal scales the sums. A block cut out of a larger one (its halo included, its
    parity given) gives the same sums inside: no seams between blocks."""
    rng = np.random.default_rng(0)
    clean = np.exp(-2 * 4.0 * DZ_MM * np.arange(60))[:, None, None] * np.ones((1, 36, 36), np.float32)
    signal = (clean * rng.gamma(4.0, 0.25, clean.shape)).astype(np.float32)
    edge, box = edge_tails(signal, 3.0), attenuation.tail_sums(signal, lateral_sigma_px=3.0)
    inside = (slice(None), slice(8, -8), slice(8, -8))
    compensated = attenuation.compensate_attenuation(signal, edge)[inside]
    assert abs(compensated[-15:].mean() / compensated[:15].mean() - 1) < 0.05
    spread = [float(np.mean(np.std(g, axis=(1, 2)) / np.mean(g, axis=(1, 2))))
              for g in (t[0][None] / t[40:60] for t in (edge[inside], box[inside]))]
    assert spread[0] <= spread[1], spread
    assert np.allclose(edge_tails(signal * 7.5, 3.0), 7.5 * edge, rtol=1e-4)
    two, _ = two_tissues(n_z=40, size=48)
    whole = edge_tails(two, 3.0)
    part = edge_tails(two[:, 3:, 5:], 3.0, (3, 5))
    assert np.allclose(part[:, 14:-14, 14:-14], whole[:, 17:-14, 19:-14], rtol=1e-4)


# --- focus ---------------------------------------------------------------------------------


def background_of(volume: np.ndarray) -> tuple[focus.BackgroundStatistics, float | None]:
    found = surface.detect_surface(volume)
    stats = focus.BackgroundStatistics(volume.shape[0], volume.shape[1:], max_cells=16)
    stats.add(volume, found, focus.line_levels(volume, found, neighbourhood_px=4))
    return stats, stats.level_split().threshold


def test_background_profile_and_model_fit_recover_the_focus():
    volume, _, _ = synthetic_volume(shape=(100, 64, 64), mu=4.0, focus_px=(40.0, 25.0), agarose_border=18)
    stats, level = background_of(volume)
    assert level is not None
    measured, support = stats.background_profile(stats.agarose_cells(level), stats.noise_floor(stats.tissue_cells(level)),
                                                 np.ceil(stats.cell_surfaces()) + 3)
    estimate = focus.estimate_focus(measured, support, 12.0, 1.5)
    truth = focus.focus_model("gaussian", np.arange(100), 1.0, 40.0, 25.0)
    # agarose attenuation (0.3/mm) bends the profile by < 6% over the range
    reference = int(round(estimate.qc["focus_reference_depth_um"] / 1.5))
    assert np.allclose(estimate.profile[20:90], truth[20:90] / truth[reference], rtol=0.08)
    forced = focus.estimate_focus(measured, support, 12.0, 1.5, model="gaussian")
    assert abs(forced.qc["focus_model_center_um"] / 1.5 - 40.0) < 2.0
    assert abs(forced.qc["focus_model_width_um"] / 1.5 - 25.0) < 2.5


def test_known_agarose_attenuation_is_removed_from_the_focus_profile():
    """The agarose (0.3/mm) bends its profile by 6% over 70 voxels (log slope -2 mu dz); given, it is removed."""
    volume, _, _ = synthetic_volume(shape=(100, 64, 64), mu=4.0, focus_px=(40.0, 25.0), agarose_border=18)
    stats, level = background_of(volume)
    cells, floor = stats.agarose_cells(level), stats.noise_floor(stats.tissue_cells(level))
    first = np.ceil(stats.cell_surfaces()) + 3
    truth = focus.focus_model("gaussian", np.arange(100), 1.0, 40.0, 25.0)[20:90]
    slopes = []
    for decay in (0.0, 2 * 0.3 * DZ_MM):
        measured, _ = stats.background_profile(cells, floor, first, decay)
        slopes.append(np.polyfit(np.arange(70), np.log(measured[20:90] / truth), 1)[0] / (2 * DZ_MM))
    assert abs(slopes[0] + 0.3) < 0.1 and abs(slopes[1]) < 0.1, slopes  # mm^-1


def test_a_few_bright_a_lines_cannot_take_over_the_focus_profile():
    """The issue's failure: 8 shallow A-lines at 4.7x the agarose decided the maximum (every tissue depth clipped)."""
    z = np.arange(120.0)
    truth = focus.focus_model("lorentzian", z, 1.0, 55.0, 20.0)
    support = np.where(z < 40, 8, 4000)
    measured = truth * np.where(z < 40, 4.7, 1.0)
    estimate = focus.estimate_focus(measured, support, 10.0, 1.5)
    assert estimate.qc["focus_model"] == "lorentzian" and estimate.qc["focus_clipped_depths"] == 0
    scaled = estimate.profile / estimate.profile[55]
    assert np.allclose(scaled, truth / truth[55], rtol=0.02)
    assert estimate.qc["focus_support_min_tissue"] == 8 and estimate.qc["focus_measured_fraction"] < 0.75
    assert any("weakly supported" in flag for flag in estimate.flags)


def test_dark_tissue_inside_the_sample_is_not_agarose():
    volume, _, tissue = synthetic_volume(shape=(100, 64, 64), agarose_border=14)
    dark = np.zeros(tissue.shape, bool)
    dark[24:40, 24:40] = True  # a dark region inside the sample, as dim as agarose
    volume[:, dark] *= 0.03
    stats, level = background_of(volume)
    cells = stats.agarose_cells(level).reshape(stats.grid)
    rows, cols = np.nonzero(cells)
    centres_y, centres_x = (rows + 0.5) * stats.cell_px, (cols + 0.5) * stats.cell_px
    assert cells.any() and not ((abs(centres_y - 32) < 12) & (abs(centres_x - 32) < 12)).any()


def test_tissue_cut_above_the_scan_is_not_agarose():
    """Tissue whose surface lies in the first planes has no surface found (nothing above it to contrast): its
    A-lines are measured from the top, so its cells stay out of the agarose profile (the matrix's thickness
    seed 4 slice 4: such cells in the agarose read the focus 10% narrow)."""
    volume, _, tissue = synthetic_volume(shape=(100, 64, 64), agarose_border=14)
    patch = (slice(0, 12), slice(24, 40))  # in the agarose band along the top edge
    assert not tissue[patch].any()
    depth_mm = np.arange(100)[:, None, None] * DZ_MM
    gain = focus.focus_model("gaussian", np.arange(100), 1.0, 35.0, 30.0)[:, None, None]
    rng = np.random.default_rng(1)
    volume[(slice(None), *patch)] = (np.exp(-2 * 4.0 * depth_mm) * gain * rng.gamma(2.0, 0.5, (100, 12, 16))
                                     + 0.01 * rng.standard_exponential((100, 12, 16)))
    assert np.isnan(surface.detect_surface(volume)[patch]).mean() > 0.5  # the precondition: mostly no surface
    stats, level = background_of(volume)
    cells = stats.agarose_cells(level).reshape(stats.grid)
    rows, cols = np.nonzero(cells)
    centres_y, centres_x = (rows + 0.5) * stats.cell_px, (cols + 0.5) * stats.cell_px
    assert cells.any() and not ((centres_y < 12) & (centres_x > 24) & (centres_x < 40)).any()


def test_no_background_means_no_focus_profile():
    volume, _, _ = synthetic_volume(agarose_border=-40)  # tissue everywhere
    assert background_of(volume)[1] is None


def deep_focus_volume(gel_reflectivity: float, shape=(100, 64, 64), focus_px: float = 80.0,
                      rayleigh_px: float = 14.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tissue disc (6 mm^-1) in agarose, the focus (Lorentzian, Rayleigh range ``rayleigh_px``) ``focus_px``
    planes deep (68 below the cut by default), speckle, noise floor; also the levels of the speckle- and
    noise-free signal at the true surface (the truth), and the tissue mask."""
    rng = np.random.default_rng(0)
    n_z, n_y, n_x = shape
    yy, xx = np.mgrid[0:n_y, 0:n_x]
    true_surface = 12.0 + 0.06 * yy - 0.04 * xx
    tissue = (yy - n_y / 2) ** 2 + (xx - n_x / 2) ** 2 < (n_y / 2 - 18) ** 2
    depth_mm = (np.arange(n_z)[:, None, None] - np.ceil(true_surface)[None]) * DZ_MM
    reflectivity, mus = np.where(tissue, 1.0, gel_reflectivity)[None], np.where(tissue, 6.0, 0.3)[None]
    gain = focus.focus_model("lorentzian", np.arange(n_z), 1.0, focus_px, rayleigh_px)[:, None, None]
    clean = np.where(depth_mm >= 0, reflectivity * np.exp(-2 * mus * np.clip(depth_mm, 0, None)), 0.0) * gain
    volume = clean * rng.gamma(2.0, 0.5, shape) + 0.003 * rng.standard_exponential(shape)
    return volume.astype(np.float32), focus.line_levels(clean, true_surface), tissue


@pytest.mark.parametrize("gel_reflectivity", [0.05, 0.12])
def test_the_agarose_tissue_level_contrast_is_stated(gel_reflectivity):
    """A focus far below the cut dims the tissue's brightest band (attenuated on its way to the focus) toward
    the agarose's (at the focus): foreign harsh B with the focus 20 planes deeper split its levels at most
    1.5-1.75x apart, the focus correction was skipped and the record said "no background A-lines" although
    half the A-lines were agarose. The split's contrast is stated (QC ``focus_level_class_ratio``) and reads
    the true contrast of the two classes' levels (geometric means of the noise-free signal's levels) within
    15%: 6.8x accepted, 2.8x refused, the refusal saying so in the focus mode."""
    volume, true_levels, tissue = deep_focus_volume(gel_reflectivity)
    stats, level = background_of(volume)
    split = stats.level_split()
    truth = float(np.exp(np.log(true_levels[tissue]).mean() - np.log(true_levels[~tissue]).mean()))
    assert split.threshold == level and abs(split.class_ratio / truth - 1) < 0.15, (split, truth)
    assert (level is None) == (truth < split.min_class_ratio)
    estimate, mode = _focus_profile(stats, [split], 0.6, stats.noise_floor(), AxialSettings(), 0.0, 1.5, None, 1, 4.0)
    assert estimate.qc["focus_level_class_ratio"] == round(split.class_ratio, 3)
    if level is None:
        assert estimate.profile is None and f"at most {split.class_ratio:.2f}x apart (4x needed)" in mode
        assert "40% of the A-lines have no detected surface" in mode
    else:
        assert estimate.profile is not None and mode == "background"


TRUE_PLANE = np.array([12.0, 0.06, -0.04])  # deep_focus_volume's cut, z = a + b y + c x (voxels)


@pytest.mark.parametrize("focus_px", [55.0, 60.0])
def test_a_short_rayleigh_range_is_divided_out_below_the_old_gain_floor(focus_px):
    """A Rayleigh range of 6 planes with the focus 43-48 planes below the cut: the gain at the tissue's top is
    0.016-0.02 of the focus's (foreign harsh B with a Rayleigh range of 8: 0.035), under the fixed 0.05 floor
    that clipped 10-20 tissue depths there although the fit read the true width. The Lorentzian fitted to the
    agarose (its centre measured) supports the profile down to the noise's gain: the profile reads the true
    focus within 10% at every tissue depth down to the focus, with nothing clipped and the model's share
    stated."""
    volume, _, _ = deep_focus_volume(0.05, focus_px=focus_px, rayleigh_px=6.0)
    stats, level = background_of(volume)
    split, cells = stats.level_split(), stats.tissue_cells(level)
    noise_gain = focus.noise_gain(stats.noise_variance(cells), split)
    estimate, mode = _focus_profile(stats, [split], 0.6, stats.noise_floor(cells), AxialSettings(), 13.0, 1.5,
                                    TRUE_PLANE, 1, 4.0, noise_gain)
    truth = focus.focus_model("lorentzian", np.arange(100), 1.0, focus_px, 6.0)
    assert mode == "background" and noise_gain < 0.01
    depths = slice(14, int(focus_px) + 1)  # the tissue (cut at 11-16 planes) down to the focus
    reference = int(round(estimate.qc["focus_reference_depth_um"] / 1.5))
    assert truth[depths].min() / truth[reference] < 0.025  # the precondition: 0.05 would clip
    assert np.allclose(estimate.profile[depths], truth[depths] / truth[reference], rtol=0.1)
    assert estimate.qc["focus_clipped_depths"] == 0 and estimate.qc["focus_deep_model_depths"] > 0
    assert any("from the lorentzian model" in flag for flag in estimate.flags)


def test_a_gel_whose_surface_is_not_detected_gives_the_focus():
    """Far above the focus a faint gel's cut is rarely detected (here 9% of its A-lines; foreign harsh B with the
    focus 80 planes deep: the focus correction was skipped on every slice). The levels of the A-lines with a
    surface do not split; those of every imaged A-line do, the dim class without a surface and around the
    tissue: the focus estimated from it reads the true focal plane (80 planes) and Rayleigh range (14), and
    the record names the levels used."""
    volume, _, tissue = deep_focus_volume(0.03)
    assert np.isfinite(surface.detect_surface(volume)[~tissue]).mean() < 0.2  # the precondition
    stats, level = background_of(volume)
    first, gel = stats.level_split(), stats.gel_split()
    assert level is None and gel.threshold is not None
    estimate, mode = _focus_profile(stats, [first, gel], 0.6, stats.noise_floor(stats.tissue_cells(gel.threshold)),
                                    AxialSettings(), 0.0, 1.5, TRUE_PLANE, 1, 4.0)
    assert mode == "background" and estimate.qc["focus_level_source"] == focus.EVERY_LEVEL
    assert abs(estimate.qc["focus_model_center_um"] / 1.5 - 80.0) < 2.0
    assert abs(estimate.qc["focus_model_width_um"] / 1.5 - 14.0) < 1.4


def two_tissues_no_gel(layout: str, focus_px: float = 80.0, shape=(100, 64, 64)) -> np.ndarray:
    """Tissue everywhere, no gel: a bright tissue (7 mm^-1) and one 8x dimmer in backscatter (3 mm^-1), the
    bright one over the right half ("half") or a disc inside the dim one ("ring"); the Lorentzian focus
    (Rayleigh 14) ``focus_px`` planes deep, speckle and noise floor."""
    rng = np.random.default_rng(0)
    n_z, n_y, n_x = shape
    yy, xx = np.mgrid[0:n_y, 0:n_x]
    true_surface = 12.0 + 0.06 * yy - 0.04 * xx
    bright = xx >= n_x // 2 if layout == "half" else (yy - n_y / 2) ** 2 + (xx - n_x / 2) ** 2 < (n_y / 2 - 18) ** 2
    depth_mm = np.clip(np.arange(n_z)[:, None, None] - np.ceil(true_surface)[None], 0, None) * DZ_MM
    clean = np.where(bright, 1.0, 0.125) * np.exp(-2 * np.where(bright, 7.0, 3.0) * depth_mm)
    clean *= (depth_mm > 0) * focus.focus_model("lorentzian", np.arange(n_z), 1.0, focus_px, 14.0)[:, None, None]
    return (clean * rng.gamma(2.0, 0.5, shape) + 0.003 * rng.standard_exponential(shape)).astype(np.float32)


@pytest.mark.parametrize("layout", ["half", "ring"])
def test_dim_tissue_is_not_taken_for_a_gel_it_would_pass_for_by_contrast(layout):
    """The bound the levels of every imaged A-line need (3x) is below the first split's 4x: two tissues 8x apart
    in backscatter, no gel, read 3.5x apart with the focus 80 planes deep (the brighter attenuates faster on
    its way to the focus), above 3x. The dim tissue's cut is detected (it was among the first split's levels,
    refused there) and, beside the bright tissue, it does not surround it: no gel, no focus estimate."""
    stats, level = background_of(two_tissues_no_gel(layout))
    gel = stats.gel_split()
    assert level is None and gel.class_ratio >= focus.MIN_GEL_CLASS_RATIO  # contrast alone would take it
    assert gel.threshold is None and gel.surfaceless_fraction < focus.MIN_GEL_SURFACELESS_FRACTION
    if layout == "half":
        assert gel.edge_fraction < focus.MIN_GEL_EDGE_FRACTION
    estimate, mode = _focus_profile(stats, [stats.level_split(), gel], 1.0, stats.noise_floor(), AxialSettings(),
                                    0.0, 1.5, TRUE_PLANE, 1, 4.0)
    assert estimate.profile is None and "no gel around the sample" in mode


@pytest.mark.parametrize("layout", ["half", "ring"])
def test_dim_tissue_the_first_split_takes_for_agarose_gives_the_true_focus(layout):
    """With the focus 48 planes below the cut, two tissues 8x apart in backscatter and no gel split 4.3-4.5x
    apart: the first split (4x) takes the dim tissue for agarose (nothing guards it: beside or around the
    bright tissue, it holds a detected cut like a gel). Its profile carries its own decay (3 mm^-1, read
    as 2 by the old fit's bound and replaced by the gel's prior: the focus profile bent 1.32 -> 0.85 over
    the range). The decay fit reads it, far above any gel's: the fit alone is divided out, the profile is the
    true focus within 5%, and a flag says why."""
    stats, level = background_of(two_tissues_no_gel(layout, focus_px=60.0))
    split = stats.level_split()
    assert level is not None and split.class_ratio >= focus.MIN_CLASS_RATIO  # the precondition: taken for agarose
    estimate, mode = _focus_profile(stats, [split], 1.0, stats.noise_floor(stats.tissue_cells(level)),
                                    AxialSettings(), 12.0, 1.5, TRUE_PLANE, 1, 4.0)
    truth = focus.focus_model("lorentzian", np.arange(100), 1.0, 60.0, 14.0)
    reference = int(round(estimate.qc["focus_reference_depth_um"] / 1.5))
    depths = slice(18, 90)
    assert mode == "background"
    assert np.allclose(estimate.profile[depths], truth[depths] / truth[reference], rtol=0.05)
    assert abs(estimate.qc["focus_agarose_attenuation_per_mm"] - 3.0) < 0.3  # the dim tissue's, not a gel's
    assert any(focus.TISSUE_DECAY in flag for flag in estimate.flags)


# --- whole slices --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_grids(tiny_acquisition, tmp_path_factory) -> dict[int, Path]:
    """Mosaic grids of the tiny acquisition's slices."""
    folder = tmp_path_factory.mktemp("axial_grids")
    acquisition = open_acquisition(tiny_acquisition)
    grids = {}
    for slice_id in acquisition.slice_ids:
        grids[slice_id] = folder / f"mosaic_grid_3d_z{slice_id:02d}.ome.zarr"
        write_mosaic_grid(acquisition.slice(slice_id), grids[slice_id],
                          folder / f"mosaic_grid_2d_z{slice_id:02d}.ome.zarr", n_levels=1)
    return grids


@pytest.fixture(scope="module")
def tiny_corrected(tiny_grids, tmp_path_factory) -> dict[int, Path]:
    folder = tmp_path_factory.mktemp("axial_out")
    out = {}
    for slice_id, grid in tiny_grids.items():
        out[slice_id] = folder / f"slice_z{slice_id:02d}_axial_corr.ome.zarr"
        correct_slice(grid, out[slice_id], n_levels=1)
    return out


def truth_of(acquisition: Path) -> dict:
    return json.loads((acquisition / "ground_truth" / "truth.json").read_text())


def test_surface_matches_the_simulator_truth(tiny_acquisition, tiny_corrected):
    truth = truth_of(tiny_acquisition)
    tile_y, tile_x = truth["tile_shape"][1:]
    for record in truth["slices"]:
        slice_id = record["slice_id"]
        true_map = read_omezarr(tiny_acquisition / "ground_truth" / f"surface_z{slice_id:02d}.ome.zarr")[0].compute()
        found_um = read_omezarr(output_paths(tiny_corrected[slice_id])[0])[0].compute()
        found = found_um / (truth["resolution_um"][0])
        errors = []
        for row, col, y, x in record["tile_positions_px"]:
            expected = np.full((tile_y, tile_x), np.nan)
            ys = slice(max(y, 0), min(y + tile_y, true_map.shape[0]))
            xs = slice(max(x, 0), min(x + tile_x, true_map.shape[1]))
            expected[ys.start - y : ys.stop - y, xs.start - x : xs.stop - x] = true_map[ys, xs]
            errors.append(found[row * tile_y : (row + 1) * tile_y, col * tile_x : (col + 1) * tile_x] - expected)
        errors = np.concatenate([e.ravel() for e in errors])
        errors = errors[np.isfinite(errors)]
        assert errors.size > 0.9 * tile_y * tile_x * len(record["tile_positions_px"])
        assert np.median(np.abs(errors)) < 2.0  # contract: within 2 voxels (measured: ~0.4)
        assert np.percentile(np.abs(errors), 95) < 2.0


def region_profile(volume: np.ndarray, ys: slice, xs: slice, start: int, stop: int, bin_px: int = 8) -> np.ndarray:
    """Mean intensity of a region in depth bins of ``bin_px`` voxels."""
    return np.array([volume[k : k + bin_px, ys, xs].mean() for k in range(start, stop - bin_px + 1, bin_px)])


def test_homogeneous_tissue_is_flat_after_correction(tiny_acquisition, tiny_grids, tiny_corrected):
    truth = truth_of(tiny_acquisition)
    tile_y, tile_x = truth["tile_shape"][1:]
    dz_um = truth["resolution_um"][0]
    checked = 0
    for record in truth["slices"]:
        slice_id = record["slice_id"]
        before = read_omezarr(tiny_grids[slice_id])[0].compute()
        after = read_omezarr(tiny_corrected[slice_id])[0].compute()
        found = np.rint(read_omezarr(output_paths(tiny_corrected[slice_id])[0])[0].compute() / dz_um)
        for region in record["homogeneous_regions"]:
            for row, col, y0, y1, x0, x1 in region["tiles"]:
                ys = slice(row * tile_y + y0, row * tile_y + y1)
                xs = slice(col * tile_x + x0, col * tile_x + x1)
                top, bottom = region["depth_px"]
                surfaces = found[ys, xs]
                start, stop = int(top - surfaces.min()), int(min(bottom - surfaces.max(), after.shape[0]))
                corrected = region_profile(after, ys, xs, start, stop)
                raw = region_profile(before, ys, xs, start + int(surfaces.min()), stop + int(surfaces.min()))
                assert np.abs(corrected / corrected.mean() - 1).max() < 0.10, (region["name"], corrected)
                assert 1 - raw[-1] / raw[0] > 0.5  # before: the signal decays by 60-90%
                checked += 1
    assert checked >= 4


def test_outputs_validate_and_carry_attributes(tiny_grids, tiny_corrected):
    out = tiny_corrected[0]
    for path in (out, *output_paths(out), uncompensated_path(out)):
        Image.from_zarr(zarr.open_group(str(path), mode="r"))
    info = read_omezarr_info(out)
    source = read_omezarr_info(tiny_grids[0]).attributes
    assert info.attributes["slice_id"] == source["slice_id"] == 0
    assert info.attributes["grid_shape"] == source["grid_shape"]
    assert info.attributes["surface_depth_px"] == 0
    assert info.attributes["useful_depth_px"] == info.shape[0] == info.attributes["tile_shape"][0]
    assert info.attributes["focus_mode"] == "background"
    assert info.attributes["attenuation_mode"] == "vermeer"
    assert read_omezarr_info(output_paths(out)[1]).shape == info.shape[1:]


def test_uncompensated_signal_is_the_binned_output_without_compensation(tiny_grids, tiny_corrected, tmp_path):
    """Without compensation the output is the uncompensated signal: the file is its 4 x 4 bin mean, 0 above the
    tissue top of each bin (and nowhere below it), and says the decay fit's tissue mean."""
    plain = tmp_path / "slice_z00_axial_corr.ome.zarr"
    correct_slice(tiny_grids[0], plain, AxialSettings(attenuation="none"), n_levels=1)
    output = read_omezarr(plain)[0].compute()
    binned, scale = read_omezarr(uncompensated_path(tiny_corrected[0]))
    binned = binned.compute()
    b = UNCOMPENSATED_BINNING
    n_z, n_y, n_x = output.shape
    assert binned.shape == (n_z, -(-n_y // b), -(-n_x // b))
    assert np.allclose(scale[1:], np.asarray(read_omezarr(plain)[1][1:]) * b)
    expected = output[:, : n_y // b * b, : n_x // b * b].reshape(n_z, n_y // b, b, n_x // b, b).mean(axis=(2, 4))
    inner = binned[:, : n_y // b, : n_x // b]
    kept = inner > 0
    assert np.allclose(inner[kept], expected[kept], rtol=1e-5)
    zeroed = ~kept & (expected > 0)  # removed above the tissue top only: from the first kept plane down, nothing
    assert (~zeroed | (np.arange(n_z)[:, None, None] < kept.argmax(axis=0))).all()
    assert zeroed.any() and kept.any()
    attributes = read_omezarr_info(uncompensated_path(tiny_corrected[0])).attributes
    record = read_qc_record(qc_record_path(tiny_corrected[0]))["metrics"]
    assert attributes["decay_fit_tissue_attenuation_per_mm"] == record["mean_attenuation_tissue_per_mm"]
    assert attributes["lateral_binning"] == b and attributes["slice_id"] == 0


def test_attenuation_map_of_reference_columns(tiny_acquisition, tiny_corrected):
    """Attenuation of the white-matter columns (8/mm) within 15%; grey (2/mm, ~30% decay over the range) within 30%.

    Measured (decay-rate map): white 7.7-7.8, grey 1.6-1.8 /mm; the Vermeer mean read grey 1.3-2.2.
    """
    truth = truth_of(tiny_acquisition)
    tile_y, tile_x = truth["tile_shape"][1:]
    for record in truth["slices"]:
        mu_map = read_omezarr(output_paths(tiny_corrected[record["slice_id"]])[1])[0].compute()
        for region in record["homogeneous_regions"]:
            for row, col, y0, y1, x0, x1 in region["tiles"]:
                measured = np.nanmedian(mu_map[row * tile_y + y0 : row * tile_y + y1,
                                               col * tile_x + x0 : col * tile_x + x1])
                expected = region["attenuation_per_mm"]
                tolerance = 0.15 if expected >= 8 else 0.3
                assert abs(measured / expected - 1) < tolerance, (region["name"], measured)


def test_qc_records_summarize_every_slice(tiny_acquisition, tiny_corrected):
    dz_um = truth_of(tiny_acquisition)["resolution_um"][0]
    for slice_id, out in tiny_corrected.items():
        record = read_qc_record(qc_record_path(out))
        assert record["step"] == "axial_corr" and record["slice_id"] == slice_id and record["flags"] == []
        metrics, attributes = record["metrics"], read_omezarr_info(out).attributes
        assert metrics["surface_detected_fraction"] == attributes["surface_detected_fraction"] > 0.5
        surface_um = read_omezarr(output_paths(out)[0])[0].compute()
        # histogram of surface depths in bins of 0.1 voxel
        assert metrics["median_surface_depth_um"] == pytest.approx(np.nanmedian(surface_um), abs=0.1 * dz_um)
        mu_map = read_omezarr(output_paths(out)[1])[0].compute()
        # the simulator's tissue attenuates 2-8/mm, its agarose much less
        assert np.nanmean(mu_map) < metrics["mean_attenuation_tissue_per_mm"] < 8.0
        assert metrics["useful_depth_um"] == pytest.approx(attributes["useful_depth_px"] * dz_um)
        assert metrics["noise_floor"] == attributes["noise_floor"] > 0
        assert (metrics["focus_mode"], metrics["attenuation_mode"]) == ("background", "vermeer")
        assert metrics["attenuation_tail_average"] == "edge-aware, sigma 2 px"
        assert metrics["attenuation_step_log"] == 0.0 and 0 <= metrics["attenuation_step_fraction"] <= 1
        corrected = read_omezarr(out)[0].compute()
        assert metrics["nonzero_fraction"] == pytest.approx(np.count_nonzero(corrected) / corrected.size, abs=1e-6)
        assert (out.parent / record["figures"]["depth_profiles"]).stat().st_size > 1000


# --- options and bad input -----------------------------------------------------------------


def save_volume(volume: np.ndarray, path: Path, attributes=None) -> Path:
    save_omezarr(volume, path, (DZ_MM, 0.003, 0.003), n_levels=0, attributes=attributes)
    return path


def test_options_crop_flatten_and_use_a_given_profile(tmp_path):
    volume, true_surface, tissue = synthetic_volume(focus_px=(35.0, 30.0))
    source = save_volume(volume, tmp_path / "in.ome.zarr")
    out = tmp_path / "out.ome.zarr"
    profile = focus.focus_model("gaussian", np.arange(volume.shape[0]), 1.0, 35.0, 30.0)
    settings = AxialSettings(surface_depth_um=6 * 1.5, useful_depth_um=60 * 1.5, focus_profile=profile)
    attributes = correct_slice(source, out, settings, n_levels=0)
    corrected = read_omezarr(out)[0].compute()
    assert corrected.shape == (60, 48, 48)
    assert attributes["surface_depth_px"] == 6 and attributes["focus_mode"] == "profile"
    assert (corrected[:5, tissue] < 0.05).mean() > 0.95  # above the flattened surface: noise only
    tissue_profile = corrected[6:58, tissue].mean(axis=1).reshape(13, 4).mean(axis=1)
    assert np.abs(tissue_profile / tissue_profile.mean() - 1).max() < 0.10


def test_pass_one_maps_stay_in_memory_across_blocks(tmp_path, monkeypatch):
    """Pass 1's surface and A-line levels reach pass 2's blocks (16 A-lines, with halos) from memory: no
    scratch map is written; the published surface lies on the truth and the QC's tissue attenuation (its
    A-lines chosen by their levels) reads the tissue's."""
    volume, true_surface, tissue = synthetic_volume()
    source = save_volume(volume, tmp_path / "in.ome.zarr")
    out = tmp_path / "out.ome.zarr"
    monkeypatch.setattr(axial, "lateral_block_size", lambda depth: 16)
    monkeypatch.setattr(statistics_reads, "lateral_block_size", lambda depth: 16)
    monkeypatch.setattr(axial.atomic, "scratch_directory", lambda *args: pytest.fail("a scratch map was written"))
    correct_slice(source, out, n_levels=0, workers=2)
    found = read_omezarr(output_paths(out)[0])[0].compute() / (DZ_MM * 1000)
    assert (np.abs(found - true_surface)[tissue] < 1.0).mean() > 0.95
    record = read_qc_record(qc_record_path(out))
    assert record["metrics"]["mean_attenuation_tissue_per_mm"] == pytest.approx(4.0, rel=0.15)


def test_pass_one_maps_on_disk_above_the_memory_budget_give_the_same_outputs(tmp_path, monkeypatch):
    """A slice whose maps exceed :data:`MAPS_MEMORY_BYTES` keeps them on disk (a scratch levels map): every
    output, bit for bit, and the QC record's metrics are those of the maps kept in memory."""
    volume, _, _ = synthetic_volume()
    source = save_volume(volume, tmp_path / "in.ome.zarr")
    monkeypatch.setattr(axial, "lateral_block_size", lambda depth: 16)
    monkeypatch.setattr(statistics_reads, "lateral_block_size", lambda depth: 16)
    outputs = {}
    for budget in (axial.MAPS_MEMORY_BYTES, 0):
        monkeypatch.setattr(axial, "MAPS_MEMORY_BYTES", budget)
        out = tmp_path / f"out{budget}.ome.zarr"
        correct_slice(source, out, n_levels=0, workers=2)
        paths = (out, *output_paths(out), uncompensated_path(out))
        outputs[budget] = [read_omezarr(path)[0].compute() for path in paths]
        outputs[budget].append(read_qc_record(qc_record_path(out))["metrics"])
    kept, stored = outputs.values()
    for a, b in zip(kept[:-1], stored[:-1], strict=True):
        assert np.array_equal(a, b, equal_nan=True)
    assert kept[-1] == stored[-1]


def test_edge_aware_mode_through_the_step(tmp_path):
    """``tail_edge_sigma_px`` (off by default): the corrected tissue stays flat with depth (10%), the
    attenuation map (fitted on 2 x 2 bins) agrees with the box's within 5% (median) and is NaN where the
    box's is and at the changes of tissue/agarose class (since atten45, the binned mode only), and the QC
    record names the average."""
    volume, _, tissue = synthetic_volume(shape=(80, 40, 40))
    source = save_volume(volume, tmp_path / "in.ome.zarr")
    maps = []
    for name, sigma in (("box", 0.0), ("edge", 4.0)):
        out = tmp_path / f"{name}.ome.zarr"
        correct_slice(source, out, AxialSettings(tail_edge_sigma_px=sigma), n_levels=0)
        maps.append(read_omezarr(output_paths(out)[1])[0].compute())
    corrected = read_omezarr(out)[0].compute()
    profile = corrected[4:60, tissue].mean(axis=1).reshape(7, 8).mean(axis=1)
    assert np.abs(profile / profile.mean() - 1).max() < 0.10
    assert not (np.isnan(maps[0]) & np.isfinite(maps[1])).any()
    assert np.isfinite(maps[1][tissue]).mean() > 0.5  # 0.58: the 12-A-line disc less its ring of boundary bins
    assert abs(np.nanmedian(maps[1][tissue]) / np.nanmedian(maps[0][tissue]) - 1) < 0.05
    assert read_qc_record(qc_record_path(out))["metrics"]["attenuation_tail_average"] == "edge-aware, sigma 4 px"


def test_gaussian_and_none_modes(tmp_path):
    volume, _, tissue = synthetic_volume()
    source = save_volume(volume, tmp_path / "in.ome.zarr")
    gaussian = correct_slice(source, tmp_path / "g.ome.zarr", AxialSettings(focus="gaussian"), n_levels=0)
    plain = correct_slice(source, tmp_path / "n.ome.zarr", AxialSettings(focus="none", attenuation="none"),
                          n_levels=0)
    assert gaussian["focus_mode"] == "gaussian" and plain["focus_mode"] == "none"
    raw = read_omezarr(tmp_path / "n.ome.zarr")[0].compute()[:, tissue].mean(axis=1)
    assert raw[60] < 0.6 * raw[5]  # uncorrected: attenuation and focus decay
    flat = read_omezarr(tmp_path / "g.ome.zarr")[0].compute()[:, tissue].mean(axis=1)
    assert np.abs(flat[2:70] / flat[2:70].mean() - 1).max() < 0.15


def test_deterministic(tmp_path):
    volume, _, _ = synthetic_volume(shape=(60, 32, 32))
    source = save_volume(volume, tmp_path / "in.ome.zarr")
    runs = [correct_slice(source, tmp_path / f"o{i}.ome.zarr", n_levels=0) for i in range(2)]
    assert runs[0] == runs[1]
    first, second = (read_omezarr(tmp_path / f"o{i}.ome.zarr")[0].compute() for i in range(2))
    assert np.array_equal(first, second)
    qc_files = [qc_record_path(tmp_path / "o0.ome.zarr"), tmp_path / "o0_qc_depth_profiles.png"]
    before = [path.read_bytes() for path in qc_files]
    correct_slice(source, tmp_path / "o0.ome.zarr", n_levels=0, overwrite=True)
    assert [path.read_bytes() for path in qc_files] == before


def test_statistics_reads_started_before_the_correction_give_the_same_files(tmp_path):
    """Pass 1's reads started early (as the script does before its imports), of other settings (closed and
    made again) or not at all: the same output files; an input that cannot be read starts none."""
    volume, _, _ = synthetic_volume(shape=(60, 32, 32))
    source = save_volume(volume, tmp_path / "in.ome.zarr")
    with statistics_reads.started(source) as early:
        assert early is not None and early.serves(source, 2, 2.0)
        correct_slice(source, tmp_path / "early.ome.zarr", n_levels=0, statistics_reads=early)
        assert early.cache is None  # closed at the end of pass 1: its columns let go
    with statistics_reads.started(source, binning=1) as other:
        correct_slice(source, tmp_path / "other.ome.zarr", n_levels=0, statistics_reads=other)
        assert other.cache is None
    correct_slice(source, tmp_path / "plain.ome.zarr", n_levels=0)
    for name in ("early", "other"):
        for suffix in ("", "_surface", "_attenuation", "_uncompensated"):
            mine, plain = (tmp_path / f"{stem}{suffix}.ome.zarr" for stem in (name, "plain"))
            files = sorted(p.relative_to(plain) for p in plain.rglob("*") if p.is_file() and p.name != "zarr.json"
                           and p.name != ".zattrs")
            assert files and all((mine / f).read_bytes() == (plain / f).read_bytes() for f in files)
    with statistics_reads.started(tmp_path / "missing.ome.zarr") as missing:
        assert missing is None


def test_empty_slice_gives_zeros_and_a_nan_surface(tmp_path, caplog):
    source = save_volume(np.zeros((40, 24, 24), np.float32), tmp_path / "in.ome.zarr")
    out = tmp_path / "out.ome.zarr"
    with caplog.at_level(logging.WARNING):
        attributes = correct_slice(source, out, n_levels=0)
    assert "focus correction is skipped" in caplog.text
    assert attributes["surface_plane_px"] is None and attributes["surface_detected_fraction"] == 0
    assert not read_omezarr(out)[0].compute().any()
    assert np.isnan(read_omezarr(output_paths(out)[0])[0].compute()).all()
    record = read_qc_record(qc_record_path(out))
    assert record["metrics"]["nonzero_fraction"] == 0 and record["metrics"]["median_surface_depth_um"] is None
    assert any("surface detected in only 0.0%" in flag for flag in record["flags"])


def test_bad_inputs_raise_input_errors(tmp_path):
    flat = tmp_path / "flat.ome.zarr"
    save_omezarr(np.ones((16, 16), np.float32), flat, (0.003, 0.003), n_levels=0)
    with pytest.raises(InputError, match="needs a \\(z, y, x\\) volume"):
        correct_slice(flat, tmp_path / "o.ome.zarr")
    volume, _, _ = synthetic_volume(shape=(40, 24, 24))
    volume[10, 5, 5] = np.nan
    with pytest.raises(InputError, match="NaN"):
        correct_slice(save_volume(volume, tmp_path / "nan.ome.zarr"), tmp_path / "o.ome.zarr")
    assert not list(tmp_path.glob("o*")) and not list(tmp_path.glob(".o*"))  # nothing left behind
    good = save_volume(np.nan_to_num(volume), tmp_path / "good.ome.zarr")
    with pytest.raises(InputError, match="one value per depth"):
        correct_slice(good, tmp_path / "o.ome.zarr", AxialSettings(focus_profile=np.ones(7)))
    with pytest.raises(InputError, match="focus mode"):
        correct_slice(good, tmp_path / "o.ome.zarr", AxialSettings(focus="confocal"))


def test_script_refuses_existing_output_and_overwrites_with_f(tmp_path):
    volume, _, _ = synthetic_volume(shape=(40, 24, 24))
    source = save_volume(volume, tmp_path / "in.ome.zarr")
    out = tmp_path / "out.ome.zarr"
    np.save(tmp_path / "profile.npy", np.ones(40))
    command = [sys.executable, str(SCRIPT), str(source), str(out), "-q", "--n_levels", "0",
               "--focus_profile", str(tmp_path / "profile.npy")]
    assert subprocess.run(command, capture_output=True).returncode == 0
    assert all(p.exists() for p in (out, *output_paths(out)))
    refused = subprocess.run(command, capture_output=True, text=True)
    assert refused.returncode == 2 and "already exists" in refused.stderr
    assert subprocess.run([*command, "-f", "--attenuation_edge_sigma_px", "4"], capture_output=True).returncode == 0
    assert read_qc_record(qc_record_path(out))["metrics"]["attenuation_tail_average"] == "edge-aware, sigma 4 px"


def test_flattening_follows_the_surface_plane_not_its_bumps():
    """A bump of the cut does not move the tissue below it: the shift is the plane's, not the A-line's."""
    depth = np.arange(40, dtype=np.float32)[:, None, None]
    data = np.broadcast_to(1.0 + depth, (40, 6, 8)).copy()  # the voxel's value is its input depth + 1
    found = np.full((6, 8), 10.0, np.float32)
    found[2:4, 3:5] = 13.0  # a bump of the cut surface, 3 voxels deep
    found[0, 0] = np.nan  # no surface detected there
    stats = SliceStatistics(noise_floor=0.0, focus_profile=None, focus_mode="none", focus_qc={}, focus_flags=[],
                            plane=np.array([10.0, 0.0, 0.0]), mean_surface_px=10.0, surface_fraction=1.0,
                            tissue_level=None)
    flat, _, _ = correct_block(data, found, stats, AxialSettings(attenuation="none"), 0.0015, 0, 20)
    assert np.all(flat[0] == 11.0)  # every A-line, the bump and the undetected one too, starts at input depth 10
