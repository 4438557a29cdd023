"""Lazy, seam-free resampling of dask arrays to a coarser voxel size.

Two operations, both intensity preserving (each output voxel is a weighted
mean of the input voxels it covers) and both lazy (they return dask arrays and
read the input chunk by chunk):

- :func:`block_mean` for integer factors: each output voxel is the mean of a
  ``f_z x f_y x f_x`` block. A block cut by the array border is the mean of the
  voxels that exist, so nothing is thrown away.
- :func:`resample_to_resolution` for any voxel size: area-weighted
  (box-filter) resampling, the anti-aliased way to go from 10 um to 25 um or
  from 1.5 um to 10 um axially. Integer ratios take the block-mean path.

Both give the same values whatever the chunking of the input: every output
voxel is computed from the same input voxels, in the same order, so there are
no seams at chunk borders. Integer dtypes keep their dtype (means are rounded
to the nearest integer and clipped to the dtype's range); float dtypes keep
theirs. Block means of float16/float32 over at most 16 voxels (the 2x2
pyramid levels) accumulate in float32, within 2 float32 rounding steps
(measured < 2.4e-7 relative) of a float64 accumulation rounded once to the
dtype; larger blocks and non-integer ratios accumulate in float64.

Output voxel ``j`` of an axis resampled by a factor ``s`` covers input voxels
``[j*s, (j+1)*s)``, so its centre sits ``0.5*(s-1)`` input voxels after the
centre of input voxel ``j*s`` (see :func:`centre_shift_mm`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from linumpy.dask_arrays import is_dask_array

if TYPE_CHECKING:  # dask is imported by the lazy functions that use it (linumpy.dask_arrays)
    import dask.array as da

#: Relative tolerance under which a ratio of voxel sizes counts as an integer.
_INTEGER_TOLERANCE = 1e-6
#: Largest block whose float16/float32 mean is accumulated in float32: with n
#: non-negative terms, float32 sums are within (n - 1) * 2**-24 of exact, so
#: blocks of 16 stay below 1e-6 relative.
_FLOAT32_BLOCK_SIZE = 16
#: Bytes of input planes :func:`_lateral_mean_float32` sums at a time (a group stays in the cache).
_LATERAL_GROUP_BYTES = 512 * 2**10
#: Fewest output voxels per block along a resampled axis (keeps tiny input chunks from exploding the graph).
_MIN_OUTPUT_BLOCK = 8


def resampled_shape(
    shape: Sequence[int], in_resolution_mm: Sequence[float], out_resolution_mm: Sequence[float],
    last_weights: Sequence[float] | None = None, min_last_cover: float = 0.0,
) -> tuple[int, ...]:
    """Return the shape of ``resample_to_resolution`` for an input of ``shape``.

    By default each axis keeps every input voxel: ``ceil(n * in / out)`` (the
    last output voxel may cover a partial block). With ``min_last_cover``, a
    last output voxel that the input covers over less than that fraction of
    its length is left out (0.5: the nearest whole number of output voxels).
    ``last_weights`` are the fractions of their length the input's last voxels
    cover (see :func:`resampled_last_weights`).

    Examples
    --------
    >>> resampled_shape((100, 101), (0.010, 0.010), (0.025, 0.020))
    (40, 51)
    >>> resampled_shape((88, 101), (0.004, 0.010), (0.010, 0.020), min_last_cover=0.5)  # 35.2 -> 35, 50.5 -> 51
    (35, 51)
    """
    return tuple(_axis_layout(shape, in_resolution_mm, out_resolution_mm, last_weights, min_last_cover)[0])


def resampled_last_weights(
    shape: Sequence[int], in_resolution_mm: Sequence[float], out_resolution_mm: Sequence[float],
    last_weights: Sequence[float] | None = None, min_last_cover: float = 0.0,
) -> tuple[float, ...]:
    """Fraction of its length the input covers of the last output voxel along each axis, in (0, 1].

    Pass it as ``last_weights`` when this output is resampled again, so
    that a coarser level weighs its partial last voxels by what they cover.

    Examples
    --------
    >>> resampled_last_weights((88, 101), (0.004, 0.010), (0.010, 0.020), min_last_cover=0.5)
    (1.0, 0.5)
    """
    return tuple(_axis_layout(shape, in_resolution_mm, out_resolution_mm, last_weights, min_last_cover)[1])


def centre_shift_mm(in_resolution_mm: Sequence[float], out_resolution_mm: Sequence[float]) -> tuple[float, ...]:
    """Return how far the first output voxel centre lies from the first input centre.

    Resampling by a factor ``s = out / in`` shifts voxel centres by
    ``0.5 * (s - 1) * in = 0.5 * (out - in)`` along each axis. Add it to the
    input's translation to keep the output aligned in physical space.

    Examples
    --------
    >>> centre_shift_mm((0.0015, 0.010), (0.0015, 0.020))
    (0.0, 0.005)
    """
    return tuple(0.5 * (o - i) for i, o in zip(in_resolution_mm, out_resolution_mm))


def block_mean(data: da.Array, factors: Sequence[int], last_weights: Sequence[float] | None = None) -> da.Array:
    """Downsample by integer factors, each output voxel the mean of one block.

    Parameters
    ----------
    data : dask.array.Array
        Input of any dimensionality, any chunking.
    factors : sequence of int
        One factor >= 1 per axis, e.g. ``(1, 2, 2)`` to halve y and x only.
    last_weights : sequence of float, optional
        Weight in (0, 1] of the last element along each axis, the others
        weighing 1: when ``data`` is itself a block mean whose border voxels
        cover only part of a block, their weight is that part, so that the
        result equals the block mean of the original data (see
        :func:`pyramid_edge_weights`).

    Returns
    -------
    dask.array.Array
        Shape ``ceil(n / f)`` per axis, same dtype as ``data`` (integer means
        are rounded to the nearest integer, halves up). Borders that do not fill a whole block are
        averaged over the voxels present.

    Examples
    --------
    >>> import dask.array as da, numpy as np
    >>> x = da.from_array(np.arange(16, dtype=np.uint16).reshape(4, 4), chunks=2)
    >>> block_mean(x, (2, 2)).compute()
    array([[ 3,  5],
           [11, 13]], dtype=uint16)
    """
    data = _as_dask(data)
    factors = tuple(int(f) for f in factors)
    if len(factors) != data.ndim or min(factors, default=1) < 1:
        raise ValueError(f"need one integer factor >= 1 per axis of a {data.ndim}D array, got {factors}")
    if all(f == 1 for f in factors):
        return data
    weights = _last_weights(last_weights, data.ndim)
    aligned = data.rechunk(tuple(_chunks_aligned_to(c, f) for c, f in zip(data.chunks, factors)))
    out_chunks = tuple(
        tuple(math.ceil(c / f) for c in axis_chunks) for axis_chunks, f in zip(aligned.chunks, factors)
    )
    return aligned.map_blocks(
        _block_mean_numpy, factors=factors, last_weights=weights, shape=data.shape, chunks=out_chunks,
        dtype=data.dtype, meta=np.empty((0,) * data.ndim, data.dtype)
    )


def block_mean_of_block(
    block: np.ndarray, factors: Sequence[int], last_weights: Sequence[float], shape: Sequence[int],
    location: Sequence[tuple[int, int]],
) -> np.ndarray:
    """:func:`block_mean` of one numpy block of a larger array, as it computes that block.

    ``block`` is ``array[location]`` of an array of ``shape``; its borders
    fall on multiples of ``factors`` (or on the array's end). Every output
    voxel gets the same arithmetic as in the block mean of the whole array,
    so blocks of any size give identical values.

    Examples
    --------
    >>> x = np.arange(16, dtype=np.uint16).reshape(4, 4)
    >>> block_mean_of_block(x[:, 2:], (2, 2), (1.0, 1.0), x.shape, [(0, 4), (2, 4)])
    array([[ 5],
           [13]], dtype=uint16)
    """
    return _block_mean_numpy(
        block, tuple(int(f) for f in factors), tuple(float(w) for w in last_weights), tuple(shape),
        {0: {"array-location": [tuple(extent) for extent in location]}},
    )


def pyramid_edge_weights(base_shape: Sequence[int], shape: Sequence[int], span: Sequence[int]) -> tuple[float, ...]:
    """Weights of the last voxel along each axis of a pyramid level, for :func:`block_mean`.

    A level of ``shape`` whose voxels each cover ``span`` voxels of the base
    (level 0, ``base_shape``) has full voxels except possibly the last one
    along each axis, which covers only what is left of the base.

    Examples
    --------
    >>> pyramid_edge_weights((1, 4, 7), (1, 2, 4), (1, 2, 2))  # x: the last voxel covers 1 of 2
    (1.0, 1.0, 0.5)
    """
    return tuple((n0 - (n - 1) * s) / s for n0, n, s in zip(base_shape, shape, span))


def resample_to_resolution(
    data: da.Array, in_resolution_mm: Sequence[float], out_resolution_mm: Sequence[float],
    last_weights: Sequence[float] | None = None, min_last_cover: float = 0.0,
) -> da.Array:
    """Resample to another voxel size with area weighting (anti-aliased).

    Every output voxel is the mean of the input it covers, each input voxel
    weighted by the length (area, volume) of its overlap. Integer ratios use
    :func:`block_mean`. Typical uses: 10 um -> 25 um laterally, or an
    anisotropic (1.5, 10, 10) um volume to isotropic 10 um.

    Parameters
    ----------
    data : dask.array.Array
        Input array (numpy arrays are wrapped).
    in_resolution_mm, out_resolution_mm : sequence of float
        Voxel size per axis, in millimetres, of the input and of the output.
        Output voxels may also be finer than the input's (each output voxel
        then takes the overlap-weighted mean of at most two input voxels).
    last_weights : sequence of float, optional
        Fraction in (0, 1] of its length the input's last voxel covers along
        each axis (a resampled level's :func:`resampled_last_weights`); it
        weighs that fraction. Default: whole voxels.
    min_last_cover : float
        A last output voxel the input covers over less than this fraction of
        its length is left out (its input with it); 0 keeps every input voxel.

    Returns
    -------
    dask.array.Array
        Shape :func:`resampled_shape`, dtype of ``data`` (integers rounded and
        clipped), chunks close to the input's divided by the factor.

    Examples
    --------
    >>> import dask.array as da, numpy as np
    >>> x = da.ones((20, 50, 50), dtype=np.float32, chunks=(10, 16, 16))
    >>> y = resample_to_resolution(x, (0.0015, 0.010, 0.010), (0.010, 0.025, 0.025))
    >>> y.shape, float(y.mean().compute())
    ((3, 20, 20), 1.0)
    """
    data = _as_dask(data)
    factors = _scale_factors(in_resolution_mm, out_resolution_mm, data.ndim)
    weights = _last_weights(last_weights, data.ndim)
    shape = resampled_shape(data.shape, in_resolution_mm, out_resolution_mm, weights, min_last_cover)
    if all(_is_integer(s) and s >= 1 for s in factors):
        integer = tuple(round(s) for s in factors)
        kept = tuple(min(n, m * f) for n, m, f in zip(data.shape, shape, integer))
        weights = tuple(w if k == n else 1.0 for w, k, n in zip(weights, kept, data.shape))
        return block_mean(data[tuple(slice(0, k) for k in kept)], integer, weights)
    result = data
    for axis, (scale, weight, m) in enumerate(zip(factors, weights, shape)):
        if not (_is_integer(scale) and round(scale) == 1 and weight == 1):
            result = _resample_axis(result, axis, scale, weight, m)
    return result.map_blocks(_cast_like, out_dtype=data.dtype, dtype=data.dtype, meta=np.empty((0,) * data.ndim, data.dtype))


def _as_dask(data) -> da.Array:
    import dask.array as da

    return data if is_dask_array(data) else da.from_array(np.asarray(data))


def _scale_factors(in_res: Sequence[float], out_res: Sequence[float], ndim: int) -> tuple[float, ...]:
    if len(in_res) != ndim or len(out_res) != ndim:
        raise ValueError(f"need {ndim} resolutions in and out, got {tuple(in_res)} and {tuple(out_res)}")
    if min(*in_res, *out_res) <= 0:
        raise ValueError(f"resolutions must be positive, got {tuple(in_res)} and {tuple(out_res)}")
    factors = [o / i for i, o in zip(in_res, out_res)]
    return tuple(float(round(s)) if _is_integer(s) else s for s in factors)


def _is_integer(value: float) -> bool:
    return round(value) >= 1 and abs(value - round(value)) <= _INTEGER_TOLERANCE * value


def _last_weights(last_weights: Sequence[float] | None, ndim: int) -> tuple[float, ...]:
    weights = (1.0,) * ndim if last_weights is None else tuple(float(w) for w in last_weights)
    if len(weights) != ndim or not all(0 < w <= 1 for w in weights):
        raise ValueError(f"need one last weight in (0, 1] per axis of a {ndim}D array, got {weights}")
    return weights


def _axis_layout(
    shape: Sequence[int], in_res: Sequence[float], out_res: Sequence[float], last_weights: Sequence[float] | None,
    min_last_cover: float,
) -> tuple[list[int], list[float]]:
    """Per axis, the number of output voxels and the fraction of the last one the input covers."""
    if not 0 <= min_last_cover <= 1:
        raise ValueError(f"min_last_cover must be in [0, 1], got {min_last_cover}")
    factors = _scale_factors(in_res, out_res, len(shape))
    weights = _last_weights(last_weights, len(shape))
    lengths = [_axis_length(n, s, w, min_last_cover) for n, s, w in zip(shape, factors, weights)]
    covers = [min(1.0, (n - 1 + w) / s - (m - 1)) for n, s, w, m in zip(shape, factors, weights, lengths)]
    return lengths, [1.0 if abs(c - 1) <= _INTEGER_TOLERANCE else c for c in covers]


def _axis_length(n: int, scale: float, last_weight: float = 1.0, min_last_cover: float = 0.0) -> int:
    """Output voxels along an axis of ``n`` input voxels (the last covering ``last_weight``), at least one.

    Every whole output voxel, plus a partial last one the input covers over
    at least ``min_last_cover`` of its length (any part when 0).
    """
    extent = (n - 1 + last_weight) / scale
    whole = math.floor(extent + _INTEGER_TOLERANCE)
    rest = extent - whole
    partial = rest > _INTEGER_TOLERANCE and rest >= min_last_cover - _INTEGER_TOLERANCE
    return max(1, whole + int(partial))


def _chunks_aligned_to(chunks: tuple[int, ...], factor: int) -> tuple[int, ...] | int:
    """Chunks along one axis whose borders fall on multiples of ``factor``."""
    if all(c % factor == 0 for c in chunks[:-1]):
        return chunks
    return max(factor, round(max(chunks) / factor) * factor)


def _cast_like(values: np.ndarray, out_dtype: np.dtype) -> np.ndarray:
    """Cast float means back to ``out_dtype``, rounding and clipping integers."""
    dtype = np.dtype(out_dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype, copy=False)


def _block_mean_numpy(
    block: np.ndarray, factors: tuple[int, ...], last_weights: tuple[float, ...] = (),
    shape: tuple[int, ...] = (), block_info: dict | None = None,
) -> np.ndarray:
    """Block mean of one numpy block whose borders fall on multiples of the factors.

    Sums are accumulated offset by offset (strided views, no copies of the
    input), exactly in integers for integer data, in float32 or float64
    otherwise (see :func:`_accumulator_dtype`). In a block holding the array's
    last element along an axis whose last weight is not 1, that axis is summed
    with weights (in float64 for integer data).
    """
    weighted = _weighted_axes(block, factors, last_weights, shape, block_info)
    accumulator = _accumulator_dtype(block.dtype, math.prod(factors))
    if not weighted and block.dtype == accumulator == np.float32 and _laterally_binned(block.shape, factors):
        return _lateral_mean_float32(block, factors[-2], factors[-1])
    if weighted and np.issubdtype(accumulator, np.integer):
        accumulator = np.dtype(np.float64)
    total = block
    counts = np.ones((1,) * block.ndim, accumulator if weighted else np.int64)
    for axis, factor in enumerate(factors):
        if factor > 1:
            total, axis_counts = _sum_strided(total, factor, axis, accumulator, weighted.get(axis))
            counts = counts * axis_counts
    if np.issubdtype(accumulator, np.integer):
        return _rounded_integer_mean(total, counts).astype(block.dtype)
    mean = total / counts.astype(accumulator)
    if np.issubdtype(block.dtype, np.integer):  # halves up, as the exact integer path: no seam at the border chunk
        mean = np.floor(mean + 0.5)
    return _cast_like(mean, block.dtype)


def _laterally_binned(shape: tuple[int, ...], factors: tuple[int, ...]) -> bool:
    """Whether ``factors`` bin only the last two axes of a 2D or 3D block, each by > 1 and into whole runs."""
    return (len(shape) in (2, 3) and all(f == 1 for f in factors[:-2])
            and all(f > 1 and n % f == 0 for f, n in zip(factors[-2:], shape[-2:])))


def _lateral_mean_float32(block: np.ndarray, factor_y: int, factor_x: int) -> np.ndarray:
    """:func:`_block_mean_numpy` of a float32 block binned along its last two axes only, into whole runs.

    The same sums in the same order (along y, then along x, offset by offset, in
    float32), divided by the run size: the same bits, computed a group of
    planes at a time (:data:`_LATERAL_GROUP_BYTES`) so that each group is summed
    along y and along x while it is in the cache, into preallocated arrays.
    """
    planes = block if block.ndim == 3 else block[None]
    n_z, n_y, n_x = planes.shape
    out = np.empty((n_z, n_y // factor_y, n_x // factor_x), np.float32)
    group = max(1, _LATERAL_GROUP_BYTES // (4 * n_y * n_x))
    rows = np.empty((min(group, n_z), n_y // factor_y, n_x), np.float32)
    for first in range(0, n_z, group):
        part, mean = planes[first : first + group], out[first : first + group]
        summed = rows[: part.shape[0]]
        np.add(part[:, 0::factor_y], part[:, 1::factor_y], out=summed)
        for offset in range(2, factor_y):
            summed += part[:, offset::factor_y]
        np.add(summed[:, :, 0::factor_x], summed[:, :, 1::factor_x], out=mean)
        for offset in range(2, factor_x):
            mean += summed[:, :, offset::factor_x]
        mean /= np.float32(factor_y * factor_x)
    return out if block.ndim == 3 else out[0]


def _weighted_axes(
    block: np.ndarray, factors: tuple[int, ...], last_weights: tuple[float, ...], shape: tuple[int, ...],
    block_info: dict | None,
) -> dict[int, float]:
    """``{axis: weight}`` of the axes along which this block holds a last element of weight < 1."""
    if block_info is None or not last_weights:
        return {}
    location = block_info[0]["array-location"]
    return {
        axis: weight for axis, (weight, factor, (_, stop), n) in enumerate(zip(last_weights, factors, location, shape))
        if weight != 1 and factor > 1 and stop == n
    }


def _rounded_integer_mean(total: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``total / counts`` rounded to the nearest integer (halves up), exactly."""
    count = int(counts.flat[0])
    if np.all(counts == count) and count & (count - 1) == 0:  # power of two: shift
        total += count // 2
        total >>= count.bit_length() - 1
        return total
    return (2 * total + counts) // (2 * counts)


def _accumulator_dtype(dtype: np.dtype, block_size: int) -> np.dtype:
    """Dtype in which to sum ``block_size`` values of ``dtype``.

    Integers sum exactly (with room for twice the sum); float16/float32 blocks
    of at most :data:`_FLOAT32_BLOCK_SIZE` values sum in float32 (< 1e-6
    relative for non-negative data); anything else in float64.
    """
    if np.issubdtype(dtype, np.integer) and dtype.itemsize <= 4:
        if dtype.itemsize <= 2 and block_size < 2**14:
            return np.dtype(np.uint32 if np.issubdtype(dtype, np.unsignedinteger) else np.int32)
        return np.dtype(np.int64)
    if dtype in (np.float16, np.float32) and block_size <= _FLOAT32_BLOCK_SIZE:
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def _sum_strided(
    values: np.ndarray, factor: int, axis: int, accumulator: np.dtype, last_weight: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Sum runs of ``factor`` along ``axis``; return the sums and the run lengths.

    With ``last_weight``, the last element along ``axis`` counts for that
    fraction of an element, in the sum and in the run length.
    """
    n = values.shape[axis]
    m = math.ceil(n / factor)
    if last_weight is not None:
        weights = np.ones(n, accumulator)
        weights[-1] = last_weight
        shape = [1] * values.ndim
        shape[axis] = n
        values = values * weights.reshape(shape)

    def offset(o: int) -> tuple[slice, ...]:
        index = [slice(None)] * values.ndim
        index[axis] = slice(o, None, factor)
        return tuple(index)

    if n % factor == 0 and factor > 1:  # whole runs: the first sum straight into a new array (no copy)
        total, first = np.add(values[offset(0)], values[offset(1)], dtype=accumulator), 2
    else:
        total, first = values[offset(0)].astype(accumulator), 1
    for o in range(first, min(factor, n)):
        part = values[offset(o)]
        index = [slice(None)] * values.ndim
        index[axis] = slice(0, part.shape[axis])
        total[tuple(index)] += part
    shape = [1] * values.ndim
    shape[axis] = m
    counts = np.full(m, factor, np.int64 if last_weight is None else accumulator)
    counts[-1] = n - factor * (m - 1) - (0 if last_weight is None else 1 - last_weight)
    return total, counts.reshape(shape)


def _area_weights(
    n_in: int, scale: float, last_weight: float = 1.0, m: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Overlap weights of an axis of ``n_in`` voxels resampled by ``scale`` into ``m`` voxels.

    The last input voxel covers ``last_weight`` of its length (it ends at
    ``n_in - 1 + last_weight``); ``m`` defaults to every input voxel kept
    (:func:`_axis_length`), and fewer leave the input past them out.

    Returns
    -------
    starts : ndarray of int, shape (m,)
        First input voxel touched by each output voxel.
    weights : ndarray of float, shape (m, k)
        Normalised overlap of output voxel ``j`` with input ``starts[j] + t``.
    """
    m = _axis_length(n_in, scale, last_weight) if m is None else m
    end = n_in - 1 + last_weight
    lower = np.arange(m) * scale
    upper = np.minimum(lower + scale, end)
    starts = np.floor(lower + 1e-9).astype(np.int64)
    k = int(math.ceil(scale)) + 1
    voxel = starts[:, None] + np.arange(k)[None, :]
    overlap = np.minimum(np.minimum(voxel + 1, end), upper[:, None]) - np.maximum(voxel, lower[:, None])
    overlap = np.where((voxel < n_in) & (overlap > 1e-12), overlap, 0.0)
    return starts, overlap / overlap.sum(axis=1, keepdims=True)


def _weighted_axis_numpy(
    block: np.ndarray, starts: np.ndarray, weights: np.ndarray, axis: int
) -> np.ndarray:
    """Apply per-output overlap weights along ``axis`` of one numpy block.

    Sums in float64 (the weights' dtype: a float32 block is promoted by the
    product, no float64 copy of it). An input voxel contributes only where its
    weight is positive (a non-finite voxel a zero weight reaches adds
    nothing); an offset no output voxel reaches is skipped, and the mask is
    applied only at an offset some output voxels do not reach.
    """
    shape = [1] * block.ndim
    shape[axis] = len(starts)
    result = np.zeros(block.shape[:axis] + (len(starts),) + block.shape[axis + 1 :], np.float64)
    last = block.shape[axis] - 1
    for t in range(weights.shape[1]):
        w = weights[:, t].reshape(shape)
        reached = w > 0
        if not reached.any():
            continue
        values = np.take(block, np.minimum(starts + t, last), axis=axis)
        result += values * w if reached.all() else np.where(reached, values * w, 0.0)
    return result


def _resample_axis(data: da.Array, axis: int, scale: float, last_weight: float, m: int) -> da.Array:
    """Area-weighted resampling of one axis into ``m`` voxels, as float64, lazily and seam-free."""
    import dask.array as da

    n_in = data.shape[axis]
    starts, weights = _area_weights(n_in, scale, last_weight, m)
    step = max(_MIN_OUTPUT_BLOCK, round(max(data.chunks[axis]) / scale))
    pieces = []
    for j0 in range(0, m, step):
        j1 = min(m, j0 + step)
        first = int(starts[j0])
        last = min(n_in, int(starts[j1 - 1]) + weights.shape[1])
        index = [slice(None)] * data.ndim
        index[axis] = slice(first, last)
        piece = data[tuple(index)].rechunk({axis: last - first})
        chunks = list(piece.chunks)
        chunks[axis] = (j1 - j0,)
        pieces.append(
            piece.map_blocks(
                _weighted_axis_numpy,
                starts=starts[j0:j1] - first,
                weights=weights[j0:j1],
                axis=axis,
                chunks=tuple(chunks),
                dtype=np.float64,
                meta=np.empty((0,) * data.ndim, np.float64),
            )
        )
    return da.concatenate(pieces, axis=axis)
