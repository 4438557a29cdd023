"""The registration's planes: read band by band, band-passed in place, scanned without a second copy.

Memory on wide slices must stay a few planes of the registration level plus
one band of chunks; the values must be those of the whole-array path.
"""

from __future__ import annotations

import tracemalloc

import dask
import dask.array as da
import numpy as np
import zarr
from scipy import ndimage
from test_stack import SURFACE_PX, USEFUL_PX, make_brain

from linumpy.resample import block_mean
from linumpy.stack.files import UNFUSED
from linumpy.stack.planes import PlaneReader, read_planes
from linumpy.stack.stacking import _crop_planes
from linumpy.stack.refine import BANDPASS_BLOCK, BANDPASS_ROWS, _WindowedPlanes, bandpass_planes, register_pair


def stored(tmp_path, shape=(64, 2048, 128), chunks=(64, 128, 128)) -> tuple[np.ndarray, da.Array]:
    """A float32 array stored as zarr in 64-plane chunks (as the normalized slices), and its lazy view."""
    values = np.random.default_rng(0).random(shape, dtype=np.float32)
    array = zarr.open(str(tmp_path / "planes.zarr"), mode="w", shape=shape, chunks=chunks, dtype=np.float32)
    array[:] = values
    return values, da.from_zarr(array)


def test_planes_read_by_bands_equal_the_whole_block_mean(tmp_path):
    values, data = stored(tmp_path, shape=(20, 300, 200), chunks=(8, 64, 64))
    for factor, window in ((1, (slice(0, 300), slice(0, 200))), (2, (slice(6, 290), slice(4, 200))),
                           (3, (slice(3, 291), slice(0, 198)))):
        part = data[(slice(5, 17), *window)]
        expected = block_mean(part.astype(np.float32), (1, factor, factor)).compute()
        np.testing.assert_array_equal(read_planes(part, factor), expected)
        np.testing.assert_array_equal(read_planes(part, factor, workers=2), expected)  # bands side by side
    np.testing.assert_array_equal(read_planes(data[5:17]), values[5:17])
    counts = da.from_array((values * 4000).astype(np.uint16), chunks=(8, 64, 64))  # cast as the band is read
    np.testing.assert_array_equal(read_planes(counts[5:17, 3:250]), (values[5:17, 3:250] * 4000).astype(np.uint16)
                                  .astype(np.float32))


def test_plane_reader_batches_equal_each_batch_read_and_compute_each_shared_block_once(tmp_path):
    """The averaging's measure reads a slice's overlaps with both its neighbours a few planes at a time from one
    graph (PlaneReader): the values of each batch read alone, at any block-mean factor; every block the announced
    reads share (two overlapping plane ranges in two windows, batches straddling blocks) computed once."""
    _, data = stored(tmp_path, shape=(30, 300, 200), chunks=(8, 64, 64))
    computed = []

    def counted(block: np.ndarray, block_info: dict | None = None) -> np.ndarray:
        computed.append(tuple(block_info[0]["chunk-location"]))
        return block

    level = data.map_blocks(counted, dtype=np.float32)
    for factor, windows in ((1, ((slice(5, 300), slice(0, 197)), (slice(0, 290), slice(3, 200)))),
                            (3, ((slice(3, 291), slice(0, 198)), (slice(0, 297), slice(6, 195))))):
        reads = (((3, 25), windows[0]), ((10, 30), windows[1]))
        expected = [[read_planes(level[(slice(start, min(start + 6, stop)), *window)], factor)
                     for start in range(start, stop, 6)] for (start, stop), window in reads]
        for workers in (2, 1):
            reader = PlaneReader(level, workers)
            for planes, window in reads:
                reader.announce(planes, window, factor, 6)
            computed.clear()
            for (planes, window), values in zip(reads, expected, strict=True):
                batches = list(reader.batches(planes, window, factor, 6))
                assert len(batches) == len(values)
                for batch, value in zip(batches, values, strict=True):
                    np.testing.assert_array_equal(batch, value)
        assert len(computed) == len(set(computed)) == level.npartitions  # 1 worker: every block once


def test_planes_read_whole_and_cropped_equal_the_window_read(tmp_path):
    """The registration reads its planes whole laterally and takes its window in place (stacking._crop_planes):
    the values of the window read alone, at any block-mean factor, the planes' memory reused."""
    _, data = stored(tmp_path, shape=(12, 300, 200), chunks=(8, 64, 64))
    for factor, window in ((1, (slice(5, 300), slice(0, 197))), (2, (slice(6, 290), slice(4, 200))),
                           (3, (slice(3, 291), slice(0, 198)))):
        whole = read_planes(data, factor)
        cropped = _crop_planes(whole, window, factor)
        np.testing.assert_array_equal(cropped, read_planes(data[(slice(None), *window)], factor))
        assert cropped.flags.c_contiguous and np.shares_memory(cropped, whole)


def test_reading_planes_holds_them_once_plus_one_band(tmp_path):
    # one dask computation of the planes holds every computed block beside their concatenation (twice the
    # planes: 101-118 MB here, fused or not); the band reader the planes plus one row of chunks (62-66 MB)
    _, data = stored(tmp_path)
    tracemalloc.start()
    try:
        with dask.config.set(UNFUSED):
            planes = read_planes(data[8:56])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1.5 * planes.nbytes


def old_bandpass(planes: np.ndarray, axial_sigma_px: float = 1.0, background_radius_px: int = 8) -> np.ndarray:
    """The whole-stack band-pass the blocked one must reproduce bit for bit."""
    smoothed = ndimage.gaussian_filter(planes, (axial_sigma_px, 0, 0), mode="nearest")
    width = 2 * background_radius_px + 1
    detail = smoothed - ndimage.uniform_filter(smoothed, (1, width, width), mode="nearest")
    spread = detail.std(axis=(1, 2), keepdims=True)
    return np.divide(detail, spread, out=np.zeros_like(detail), where=spread > 0)


def test_bandpass_by_blocks_in_place_is_the_whole_stack_bandpass():
    rng = np.random.default_rng(1)
    depth, rows = 3 * BANDPASS_BLOCK - 1, BANDPASS_ROWS + 9
    planes = (ndimage.gaussian_filter(rng.standard_normal((depth, rows, 40)), 1) + 3).astype(np.float32)
    planes[4] = 2.0  # a flat plane: zeros
    for sigma in (1.0, 2.5, 0.0):
        expected = old_bandpass(planes, sigma)
        np.testing.assert_array_equal(bandpass_planes(planes, sigma), expected)
        in_place = planes.copy()
        assert bandpass_planes(in_place, sigma, out=in_place) is in_place
        np.testing.assert_array_equal(in_place, expected)


def test_scan_on_the_reused_buffer_gives_the_same_estimate():
    brain = make_brain()
    for k in (1, 3):
        previous = bandpass_planes(brain.slices[k - 1][SURFACE_PX + 10 : SURFACE_PX + USEFUL_PX])
        current = bandpass_planes(brain.slices[k][SURFACE_PX : SURFACE_PX + 8])
        expected = register_pair(previous, 10, current, expected_offset=20, tolerance=5)
        assert expected.z_confidence > 0.5 and expected.shift_yx_px != (0.0, 0.0)
        buffer = previous.copy()
        assert register_pair(buffer, 10, current, expected_offset=20, tolerance=5, overwrite_previous=True) == expected


def test_windowed_planes_share_the_buffer_and_give_whole_planes_back():
    planes = np.random.default_rng(2).random((7, 30, 25), dtype=np.float32)
    for window in ((slice(0, 30), slice(0, 25)), (slice(3, 30), slice(0, 25)), (slice(5, 9), slice(4, 20)),
                   (slice(5, 5), slice(0, 25))):
        held = _WindowedPlanes(planes.copy())
        view = held.windowed(window)
        np.testing.assert_array_equal(view, planes[(slice(None), *window)])
        assert view.flags.c_contiguous and (view.size == 0 or np.shares_memory(view, held.buffer))
        for start, stop in ((0, 7), (2, 5), (6, 7)):
            np.testing.assert_array_equal(held.planes(start, stop), planes[start:stop])
