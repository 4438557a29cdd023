"""Tests of linumpy.resample: block means and area-weighted resampling of dask arrays."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from linumpy.resample import (
    _area_weights,
    _lateral_mean_float32,
    _sum_strided,
    _weighted_axis_numpy,
    block_mean,
    centre_shift_mm,
    resample_to_resolution,
    resampled_shape,
)


def dense_area_matrix(n_in: int, scale: float) -> np.ndarray:
    """Reference weights: overlap of output interval [j*s, (j+1)*s) with input voxel i, by brute force."""
    m = int(np.ceil(n_in / scale - 1e-6))
    weights = np.zeros((m, n_in))
    for j in range(m):
        lo, hi = j * scale, min((j + 1) * scale, n_in)
        for i in range(n_in):
            weights[j, i] = max(0.0, min(i + 1, hi) - max(i, lo))
    return weights / weights.sum(axis=1, keepdims=True)


def reference_resample(volume: np.ndarray, scales: tuple[float, ...]) -> np.ndarray:
    result = volume.astype(np.float64)
    for axis, scale in enumerate(scales):
        result = np.moveaxis(np.tensordot(dense_area_matrix(result.shape[axis], scale), np.moveaxis(result, axis, 0), 1), 0, axis)
    return result


def test_block_mean_known_values_with_partial_border_blocks():
    x = np.arange(5 * 7, dtype=np.float64).reshape(5, 7)
    result = block_mean(da.from_array(x, chunks=(2, 3)), (2, 3)).compute()
    expected = np.array(
        [
            [x[0:2, 0:3].mean(), x[0:2, 3:6].mean(), x[0:2, 6:].mean()],
            [x[2:4, 0:3].mean(), x[2:4, 3:6].mean(), x[2:4, 6:].mean()],
            [x[4:, 0:3].mean(), x[4:, 3:6].mean(), x[4:, 6:].mean()],
        ]
    )
    np.testing.assert_allclose(result, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32, np.float64])
def test_block_mean_keeps_dtype_and_rounds_integers(dtype):
    rng = np.random.default_rng(1)
    x = (rng.random((6, 10, 9)) * 200).astype(dtype)
    result = block_mean(da.from_array(x, chunks=(4, 4, 4)), (1, 2, 2)).compute()
    assert result.dtype == dtype and result.shape == (6, 5, 5)
    exact = block_mean(da.from_array(x.astype(np.float64)), (1, 2, 2)).compute()
    tolerance = 0.5 if np.issubdtype(dtype, np.integer) else 1e-5 * np.abs(exact).max()
    assert np.abs(result.astype(np.float64) - exact).max() <= tolerance


def test_block_mean_is_lazy_and_rejects_bad_factors():
    x = da.ones((8, 8), chunks=4)
    assert isinstance(block_mean(x, (2, 2)), da.Array)
    with pytest.raises(ValueError):
        block_mean(x, (2,))
    with pytest.raises(ValueError):
        block_mean(x, (0, 2))


def test_resample_matches_area_weighted_reference_for_fractional_factor():
    rng = np.random.default_rng(2)
    x = rng.random((7, 23, 31))
    scales = (1.0, 2.5, 2.5)
    result = resample_to_resolution(da.from_array(x, chunks=(3, 8, 8)), (0.010,) * 3, (0.010, 0.025, 0.025)).compute()
    np.testing.assert_allclose(result, reference_resample(x, scales), rtol=0, atol=1e-12)


def test_anisotropic_axial_resampling_to_isotropic():
    rng = np.random.default_rng(3)
    x = rng.random((40, 6, 6)).astype(np.float32)
    result = resample_to_resolution(da.from_array(x, chunks=(16, 6, 6)), (0.0015, 0.010, 0.010), (0.010,) * 3)
    assert result.shape == resampled_shape(x.shape, (0.0015, 0.010, 0.010), (0.010,) * 3) == (6, 6, 6)
    np.testing.assert_allclose(result.compute(), reference_resample(x, (10 / 1.5, 1, 1)), atol=1e-6)


def test_integer_resampling_rounds_and_clips():
    x = np.full((5, 5), 65535, np.uint16)
    x[0, 0] = 0
    result = resample_to_resolution(da.from_array(x), (0.01, 0.01), (0.025, 0.025)).compute()
    assert result.dtype == np.uint16
    expected = np.clip(np.rint(reference_resample(x, (2.5, 2.5))), 0, 65535)
    assert np.array_equal(result, expected)


def test_upsampling_preserves_piecewise_values():
    x = np.array([1.0, 3.0])
    result = resample_to_resolution(da.from_array(x), (0.010,), (0.004,)).compute()
    np.testing.assert_allclose(result, [1.0, 1.0, 2.0, 3.0, 3.0])


def test_centre_shift():
    assert centre_shift_mm((0.01, 0.01), (0.02, 0.025)) == pytest.approx((0.005, 0.0075))


# --- properties ---------------------------------------------------------------

shapes = st.tuples(st.integers(1, 17), st.integers(1, 23), st.integers(1, 19))
chunkings = st.tuples(st.integers(1, 9), st.integers(1, 9), st.integers(1, 9))


@settings(max_examples=25, deadline=None)
@given(shape=shapes, chunks_a=chunkings, chunks_b=chunkings, factors=st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4)))
def test_block_mean_identical_whatever_the_chunking(shape, chunks_a, chunks_b, factors):
    x = np.random.default_rng(sum(shape)).random(shape).astype(np.float32)
    a = block_mean(da.from_array(x, chunks=chunks_a), factors).compute()
    b = block_mean(da.from_array(x, chunks=chunks_b), factors).compute()
    assert a.shape == tuple(-(-n // f) for n, f in zip(shape, factors))
    assert np.array_equal(a, b)


@settings(max_examples=25, deadline=None)
@given(
    shape=shapes,
    chunks_a=chunkings,
    chunks_b=chunkings,
    out_um=st.tuples(st.sampled_from([10, 15, 25, 37]), st.sampled_from([10, 15, 25, 37]), st.sampled_from([10, 25, 40])),
)
def test_resample_shape_and_seams(shape, chunks_a, chunks_b, out_um):
    x = (np.random.default_rng(sum(shape)).random(shape) * 1000).astype(np.uint16)
    in_mm, out_mm = (0.010, 0.010, 0.010), tuple(u / 1000 for u in out_um)
    a = resample_to_resolution(da.from_array(x, chunks=chunks_a), in_mm, out_mm)
    b = resample_to_resolution(da.from_array(x, chunks=chunks_b), in_mm, out_mm)
    assert a.shape == resampled_shape(shape, in_mm, out_mm)
    assert np.array_equal(a.compute(), b.compute())


@settings(max_examples=20, deadline=None)
@given(
    multiples=st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4)),
    level=st.floats(0.5, 1000.0),
    factor_tenths=st.sampled_from([15, 20, 25, 30, 40]),
)
def test_resample_preserves_intensity(multiples, level, factor_tenths):
    """Whole output voxels: the mean is preserved exactly (to float rounding)."""
    factor = factor_tenths / 10
    blocks = tuple(m * 2 for m in multiples)  # factor * blocks is an integer for every sampled factor
    shape = tuple(int(round(b * factor)) for b in blocks)
    rng = np.random.default_rng(7)
    x = level * (1 + rng.random(shape))
    result = resample_to_resolution(da.from_array(x, chunks=5), (1.0,) * 3, (factor,) * 3).compute()
    assert result.shape == blocks
    assert result.mean() == pytest.approx(x.mean(), rel=1e-9)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_float_pyramid_mean_within_1e6_of_float64(dtype):
    """float16/float32 2x2 means accumulate in float32: within 1e-6 relative of float64, borders included."""
    rng = np.random.default_rng(3)
    volume = rng.gamma(2.0, 0.25, size=(3, 37, 41)).astype(dtype)
    weights = (1.0, 1.0, 0.5)
    fast = block_mean(da.from_array(volume, chunks=(3, 16, 16)), (1, 2, 2), weights).compute()
    exact = block_mean(da.from_array(volume.astype(np.float64), chunks=(3, 16, 16)), (1, 2, 2), weights)
    exact = exact.compute().astype(dtype).astype(np.float64)
    assert fast.dtype == np.dtype(dtype)
    np.testing.assert_allclose(fast.astype(np.float64), exact, rtol=1e-6 if dtype == "float32" else 0)


def test_integer_means_round_halves_up_in_the_weighted_border_chunk():
    """The border chunk (weighted) rounds halves up like the exact integer path: no seam between chunks."""
    volume = np.zeros((1, 2, 20), np.uint16)
    volume[0, :, ::2] = 1  # every 2x2 block sums to 2: a mean of exactly 0.5
    chunked = block_mean(da.from_array(volume, chunks=(1, 2, 8)), (1, 2, 2), (1.0, 1.0, 1.0 - 1e-12)).compute()
    assert np.all(chunked[0, 0, :-1] == 1)


@pytest.mark.parametrize("dtype", ["float32", "uint16", "float64"])
def test_weighted_axis_is_the_overlap_weighted_float64_sum(dtype):
    """Each output voxel sums its positive-weight inputs in float64, in order; zero weights add nothing."""
    rng = np.random.default_rng(5)
    block = (rng.random((23, 4, 3)) * 1000).astype(dtype)
    if dtype != "uint16":
        block[-1, 0, 0] = np.inf  # the last plane: read by the tail's zero-weight taps too
    starts, weights = _area_weights(len(block), 10 / 3)
    expected = np.zeros((len(starts), 4, 3))
    for j, (start, row) in enumerate(zip(starts, weights, strict=True)):
        for t, weight in enumerate(row):
            if weight > 0:
                expected[j] += block[start + t].astype(np.float64) * weight
    with np.errstate(invalid="ignore"):  # inf times a zero weight, masked
        result = _weighted_axis_numpy(block, starts, weights, 0)
    np.testing.assert_array_equal(result, expected)
    assert np.isinf(result[:, 0, 0]).sum() == (0 if dtype == "uint16" else 1)


@pytest.mark.parametrize("shape, factors", [((64, 128, 128), (2, 2)), ((5, 12, 18), (2, 3)), ((3, 8, 12), (4, 4)),
                                            ((12, 18), (2, 2)), ((40, 6, 4), (3, 2))])
def test_lateral_float32_mean_is_the_offset_by_offset_mean_bytes(shape, factors):
    """The float32 lateral fast path (plane groups) gives the bits of the generic offset-by-offset block mean."""
    block = (np.random.default_rng(5).random(shape, dtype=np.float32) * 1e3).astype(np.float32)
    total, _ = _sum_strided(block, factors[0], block.ndim - 2, np.dtype(np.float32))
    total, _ = _sum_strided(total, factors[1], block.ndim - 1, np.dtype(np.float32))
    expected = total / np.float32(factors[0] * factors[1])
    fast = _lateral_mean_float32(block, *factors)
    assert fast.dtype == np.float32
    np.testing.assert_array_equal(fast.view(np.uint32), expected.view(np.uint32))

