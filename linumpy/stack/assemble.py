"""Assemble placed slices into one volume, chunk by chunk.

Each slice, already resampled to the output voxel size and cut to its useful
depth, sits at an integer voxel origin of the output grid (its first voxel
along each axis may be partly covered, see :class:`PlacedSlice`). Consecutive slices
overlap in depth; inside an overlap each slice's weight ramps linearly from
the previous slice to the next (over the overlap's first and last
:data:`FLAT_RAMP_FRACTION` only, equal weights in between, where the upper
slice's ``flat_below`` says so), and the output is the weighted mean of the
slices that cover a voxel (so a slice narrower than its neighbour leaves the
neighbour at full weight). Voxels no slice covers are zero.

Each output chunk reads only the parts of the slices it overlaps, so peak
memory depends on the chunk size, not on the number of slices.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import dask.array as da
import numpy as np
from tqdm import tqdm

from linumpy.parallel import default_workers, run_jobs
from linumpy.stack.graph_reader import GraphWindowReader

#: Fraction of a ``flat_below`` overlap over which the weights ramp at each end: both slices'
#: images weigh the same in between (speckle-limited overlaps: harsh A +0.001-0.002 NCC over the
#: linear ramp across the whole overlap, session ncc50).
FLAT_RAMP_FRACTION = 0.25
#: Summed planes of a region (:func:`assemble_region`) whose products and weights are computed at a time: their
#: float64 temporaries are this many planes, not the region's (an averaged stack sums most of its planes).
SUM_BATCH_PLANES = 8


class RegionSink(Protocol):
    """Anything that accepts ``sink[z0:z1, y0:y1, x0:x1] = block``, from several threads at once (disjoint regions)."""

    def __setitem__(self, region: tuple[slice, ...], block: np.ndarray) -> None: ...


@dataclass(frozen=True)
class PlacedSlice:
    """One slice at its place in the output grid.

    Attributes
    ----------
    data : dask.array.Array
        ``(z, y, x)`` useful range of the slice at the output voxel size.
    origin : tuple of int
        Output voxel of ``data[0, 0, 0]``.
    first_coverage : tuple of float
        Per axis, the fraction of the first voxel the slice really covers
        (the rest was zero padding that aligned it on the output grid); that
        voxel holds ``coverage * mean`` and is weighted accordingly.
    flat_below : bool
        Its overlap with the next slice weighs both equally but at its ends
        (:data:`FLAT_RAMP_FRACTION`), instead of a ramp across the whole overlap.
    depth_weight : tuple of float, optional
        Per plane of ``data``, a weight multiplying its ramps (the inverse of
        its error, :mod:`linumpy.stack.averaging`); None: 1.
    ramp_below : int, optional
        Planes over which its overlap with the next slice ramps at each end,
        weights equal in between (an averaged overlap, however deep, ramps
        over its blend overlap's ramp); None: ``flat_below`` decides.
    """

    data: da.Array
    origin: tuple[int, int, int]
    first_coverage: tuple[float, float, float] = (1.0, 1.0, 1.0)
    flat_below: bool = False
    depth_weight: tuple[float, ...] | None = None
    ramp_below: int | None = None

    @property
    def stop(self) -> tuple[int, int, int]:
        """Output voxel one past the slice's last voxel, per axis."""
        return tuple(o + n for o, n in zip(self.origin, self.data.shape, strict=True))


def union_box(placed: Sequence[PlacedSlice]) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Return ``(start, shape)`` of the smallest box holding every slice.

    Examples
    --------
    >>> a = PlacedSlice(da.zeros((4, 5, 5)), (0, 2, 0))
    >>> b = PlacedSlice(da.zeros((4, 6, 5)), (3, 0, 1))
    >>> union_box([a, b])
    ((0, 0, 0), (7, 7, 6))
    """
    start = tuple(int(min(p.origin[a] for p in placed)) for a in range(3))
    stop = tuple(int(max(p.stop[a] for p in placed)) for a in range(3))
    return start, tuple(e - s for s, e in zip(start, stop, strict=True))


def depth_ramps(placed: Sequence[PlacedSlice]) -> list[tuple[int, int]]:
    """Return, per slice, its depth overlap with the previous and the next slice.

    Slices are taken in the given order (by slice id); an overlap is the
    number of output planes both slices cover (0 when they do not touch),
    its ramp that many planes, or the overlap's :data:`FLAT_RAMP_FRACTION`
    (at least one plane) below a slice marked ``flat_below``, or the upper
    slice's ``ramp_below`` planes (at most the overlap) when it gives them.

    Examples
    --------
    >>> upper = PlacedSlice(da.zeros((12, 2, 2)), (0, 0, 0), flat_below=True)
    >>> depth_ramps([upper, PlacedSlice(da.zeros((12, 2, 2)), (4, 0, 0))])
    [(0, 2), (2, 0)]
    >>> depth_ramps([PlacedSlice(da.zeros((12, 2, 2)), (0, 0, 0), ramp_below=1),
    ...              PlacedSlice(da.zeros((12, 2, 2)), (4, 0, 0))])
    [(0, 1), (1, 0)]
    """
    overlaps = [max(0, upper.stop[0] - lower.origin[0]) for upper, lower in itertools.pairwise(placed)]
    ramps = [_ramp(n, upper) for n, upper in zip(overlaps, placed, strict=False)]
    return [(ramps[k - 1] if k > 0 else 0, ramps[k] if k < len(ramps) else 0) for k in range(len(placed))]


def _ramp(overlap: int, upper: PlacedSlice) -> int:
    """Planes over which an overlap of ``overlap`` planes below ``upper`` ramps (:func:`depth_ramps`)."""
    if upper.ramp_below is not None:
        return min(overlap, upper.ramp_below)
    return min(overlap, math.ceil(overlap * FLAT_RAMP_FRACTION)) if upper.flat_below else overlap


def slice_weights(piece: PlacedSlice, ramps: tuple[int, int], z0: int, z1: int) -> np.ndarray:
    """Weights of ``piece``'s planes ``z0..z1-1``: its :func:`depth_weights` times its ``depth_weight``.

    Examples
    --------
    >>> piece = PlacedSlice(da.zeros((3, 1, 1)), (0, 0, 0), depth_weight=(2.0, 1.0, 0.5))
    >>> slice_weights(piece, (0, 3), 0, 3).round(3).tolist()
    [1.667, 0.5, 0.083]
    """
    weights = depth_weights(piece.data.shape[0], *ramps, z0, z1)
    if piece.depth_weight is None:
        return weights
    return weights * np.asarray(piece.depth_weight, np.float64)[z0:z1]


def depth_weights(depth: int, ramp_in: int, ramp_out: int, z0: int, z1: int) -> np.ndarray:
    """Linear blending weights of a slice's planes ``z0..z1-1``.

    The weight rises over the first ``ramp_in`` planes and falls over the
    last ``ramp_out`` planes of a slice ``depth`` planes deep; two slices
    overlapping by ``n`` planes get weights summing to 1 on each plane.

    Examples
    --------
    >>> depth_weights(6, 0, 3, 0, 6).round(3).tolist()
    [1.0, 1.0, 1.0, 0.833, 0.5, 0.167]
    >>> depth_weights(6, 3, 0, 0, 3).round(3).tolist()
    [0.167, 0.5, 0.833]
    """
    z = np.arange(z0, z1, dtype=np.float64)
    rising = (z + 0.5) / ramp_in if ramp_in > 0 else np.ones_like(z)
    falling = (depth - z - 0.5) / ramp_out if ramp_out > 0 else np.ones_like(z)
    return np.clip(np.minimum(rising, falling), 0.0, 1.0)


def iter_chunk_regions(
    shape: Sequence[int], chunks: Sequence[int]
) -> Iterator[tuple[slice, slice, slice]]:
    """Yield the regions of a chunk grid, z slowest.

    Examples
    --------
    >>> [r[0] for r in iter_chunk_regions((5, 2, 2), (3, 2, 2))]
    [slice(0, 3, None), slice(3, 5, None)]
    """
    starts = [range(0, n, c) for n, c in zip(shape, chunks, strict=True)]
    for corner in itertools.product(*starts):
        yield tuple(
            slice(s, min(s + c, n)) for s, c, n in zip(corner, chunks, shape, strict=True)
        )


def assemble_region(
    placed: Sequence[PlacedSlice],
    readers: Sequence[GraphWindowReader],
    ramps: Sequence[tuple[int, int]],
    region: tuple[slice, slice, slice],
    dtype: np.dtype,
) -> np.ndarray:
    """Blend the slices that overlap one output region.

    The weighted mean is summed in float64 on the planes where slices blend;
    the products and the weight sums are made :data:`SUM_BATCH_PLANES` planes
    at a time (the same additions in the same order: the same bits as over the
    whole region), so only the sums are float64 arrays of the region's size.
    A plane of the region that one slice alone covers, at full depth weight
    and not its partly covered first plane (:func:`alone_planes`), is that
    slice's plane as it is, its partly covered lateral first voxels divided
    by their coverage in float64: the values the float64 sum
    ``(0 + 1 * v) / (0 + 1 * c)`` gives, without its passes over the region
    (most planes of a stack: slices overlap by their blend depth only).

    Parameters
    ----------
    placed : sequence of PlacedSlice
        All slices, in slice-id order, origins in output voxels.
    readers : sequence of GraphWindowReader
        One per slice, over its ``data`` (its graph built once for all regions).
    ramps : sequence of (int, int)
        :func:`depth_ramps` of ``placed``.
    region : tuple of slice
        Output region (start/stop, no step).
    dtype : numpy dtype
        Output dtype; integers are rounded and clipped.

    Returns
    -------
    numpy.ndarray
        The blended region.
    """
    dtype = np.dtype(dtype)
    shape = tuple(r.stop - r.start for r in region)
    parts = []
    for k, local in local_windows(placed, region):
        piece = placed[k]
        out = tuple(
            slice(s.start + o - r.start, s.stop + o - r.start)
            for s, o, r in zip(local, piece.origin, region, strict=True)
        )
        parts.append((k, local, out, slice_weights(piece, ramps[k], local[0].start, local[0].stop)))
    alone = alone_planes(placed, parts, shape[0], dtype)
    result = np.zeros(shape, dtype)
    summed = np.ones(shape[0], bool)
    for (_, _, out, _), rows in zip(parts, alone, strict=True):
        summed[out[0]][rows] = False
    planes = np.flatnonzero(summed)  # the output planes summed in float64
    position = np.cumsum(summed) - 1
    total = np.zeros((planes.size, *shape[1:]), np.float64)
    weighed = []  # per part summed: its summed planes' positions, lateral target, weights and coverage
    # one region per thread of assemble_volume: its reads computed in that thread
    for (k, local, out, w), rows in zip(parts, alone, strict=True):
        piece = placed[k]
        block = readers[k].read(local)
        if rows.any():
            alone_rows = as_run(np.flatnonzero(rows))
            result[(as_run(np.arange(out[0].start, out[0].stop)[alone_rows]), *out[1:])] = _as_alone(
                block[alone_rows], piece.first_coverage, local)
        if rows.all():
            continue
        rest = np.flatnonzero(~rows)
        targets = position[out[0]][rest]
        for first in range(0, rest.size, SUM_BATCH_PLANES):
            part = slice(first, first + SUM_BATCH_PLANES)
            total[(as_run(targets[part]), *out[1:])] += w[rest[part], None, None] * block[as_run(rest[part])]
        coverage = _coverage(piece.first_coverage, local)
        weighed.append((targets, out[1:], w[rest], coverage[rest] if coverage.shape[0] > 1 else coverage))
    for first in range(0, planes.size, SUM_BATCH_PLANES):
        batch = slice(first, first + SUM_BATCH_PLANES)
        values = total[batch]
        weight = _summed_weights(weighed, batch, values.shape)
        np.divide(values, weight, out=values, where=weight > 0)
        result[as_run(planes[batch])] = _cast(values, dtype)
    return result


def _summed_weights(weighed: Sequence[tuple[np.ndarray, tuple[slice, slice], np.ndarray, np.ndarray]],
                    batch: slice, shape: tuple[int, ...]) -> np.ndarray:
    """The float64 weight sums of a region's summed planes ``batch`` (:func:`assemble_region`), ``shape`` theirs:
    each part's weight times its coverage added in the parts' order, as over the whole region (the same bits)."""
    weight = np.zeros(shape, np.float64)
    for targets, lateral, w, coverage in weighed:
        first, stop = np.searchsorted(targets, (batch.start, batch.stop))
        if first == stop:
            continue
        part = slice(int(first), int(stop))
        weight[(as_run(targets[part] - batch.start), *lateral)] += w[part, None, None] * (
            coverage[part] if coverage.shape[0] > 1 else coverage)
    return weight


def as_run(indices: np.ndarray) -> slice | np.ndarray:
    """Increasing ``indices`` as a slice when they are consecutive, else as they are.

    Indexing with the slice gives views: :func:`assemble_region`'s sums add
    in place where fancy indexing gathered, added and scattered a copy (the
    same additions on the same values).

    Examples
    --------
    >>> as_run(np.array([3, 4, 5]))
    slice(3, 6, None)
    >>> as_run(np.array([3, 5])).tolist()
    [3, 5]
    """
    if indices.size and int(indices[-1]) - int(indices[0]) + 1 == indices.size:
        return slice(int(indices[0]), int(indices[-1]) + 1)
    return indices


def alone_planes(placed: Sequence[PlacedSlice], parts: Sequence[tuple], depth: int, dtype: np.dtype,
                 ) -> list[np.ndarray]:
    """Per part ``(k, local, out, weights)`` of a region ``depth`` planes deep, its planes taken as they are.

    Those that no other slice covers, at depth weight 1 (any positive weight
    for a slice with a ``depth_weight``: alone, its mean is its value), other
    than a partly covered first plane; none when the output ``dtype`` is not
    the slice's floating type (the sum's cast then rounds, clips or widens).
    """
    covering = np.zeros(depth, np.int64)
    for _, _, out, _ in parts:
        covering[out[0]] += 1
    alone = []
    for k, local, out, w in parts:
        rows = (covering[out[0]] == 1) & ((w > 0) if placed[k].depth_weight is not None else (w == 1.0))
        if local[0].start == 0 and placed[k].first_coverage[0] != 1.0:
            rows[0] = False
        if not np.issubdtype(dtype, np.floating) or placed[k].data.dtype != dtype:
            rows[:] = False
        alone.append(rows)
    return alone


def _as_alone(block: np.ndarray, first_coverage: Sequence[float], local: tuple[slice, slice, slice]) -> np.ndarray:
    """Planes of one slice alone at full weight: ``(0 + v) / c`` (``c``: the lateral coverage, 1 but on a partly
    covered first row or column; adding 0 turns -0 into 0 as the sum does). On whole voxels this is the value the
    float64 sum gives; on a partly covered first row or column it may differ from the sum's ``w v / (w c)`` by one
    float32 rounding step."""
    summed = block + block.dtype.type(0)
    partial = [part.start == 0 and fraction != 1.0 for fraction, part in zip(first_coverage, local, strict=True)]
    if not (partial[1] or partial[2]):
        return summed
    coverage = _coverage((1.0, *first_coverage[1:]), local)
    values = summed.copy()
    if partial[1]:
        values[:, :1] = summed[:, :1] / coverage[:, :1]
    if partial[2]:
        values[:, :, :1] = summed[:, :, :1] / coverage[:, :, :1]
    return values


def local_windows(placed: Sequence[PlacedSlice], region: tuple[slice, slice, slice],
                  ) -> list[tuple[int, tuple[slice, slice, slice]]]:
    """``(k, window)`` of every slice ``placed[k]`` overlapping ``region``: its part there, in its own voxels.

    Examples
    --------
    >>> local_windows([PlacedSlice(da.zeros((4, 5, 5)), (2, 0, 0))], (slice(0, 3), slice(0, 8), slice(1, 2)))
    [(0, (slice(0, 1, None), slice(0, 5, None), slice(1, 2, None)))]
    """
    windows = []
    for k, piece in enumerate(placed):
        local = []
        for axis, r in enumerate(region):
            start = max(r.start, piece.origin[axis]) - piece.origin[axis]
            stop = min(r.stop, piece.stop[axis]) - piece.origin[axis]
            if stop <= start:
                break
            local.append(slice(start, stop))
        else:
            windows.append((k, tuple(local)))
    return windows


def _coverage(first_coverage: Sequence[float], local: tuple[slice, slice, slice]) -> np.ndarray:
    """Covered fraction of each voxel of a slice region (only first voxels are partial).

    Broadcastable to the region: axes without a partial first voxel are left
    at size 1 (a product by ones, exact, is not computed).

    Examples
    --------
    >>> _coverage((0.5, 1.0, 0.25), (slice(0, 2), slice(0, 3), slice(1, 3))).tolist()
    [[[0.5]], [[1.0]]]
    """
    coverage = np.ones((1, 1, 1))
    for axis, (fraction, part) in enumerate(zip(first_coverage, local, strict=True)):
        if part.start == 0 and fraction != 1.0:
            values = np.ones(part.stop - part.start)
            values[0] = fraction
            shape = [1, 1, 1]
            shape[axis] = values.size
            coverage = coverage * values.reshape(shape)
    return coverage


def assemble_volume(
    placed: Sequence[PlacedSlice],
    shape: Sequence[int],
    chunks: Sequence[int],
    sink: RegionSink,
    dtype: np.dtype,
    progress: bool = True,
    workers: int | None = None,
) -> None:
    """Write the blended volume into ``sink`` one chunk at a time.

    Parameters
    ----------
    placed : sequence of PlacedSlice
        Slices in slice-id order, origins relative to the output's corner.
    shape : sequence of int
        Output shape ``(z, y, x)``.
    chunks : sequence of int
        Output chunk shape; each region written is one chunk.
    sink : RegionSink
        Receives ``sink[region] = block`` for every chunk region, from the
        worker threads (disjoint regions, in any order).
    dtype : numpy dtype
        Output dtype.
    progress : bool
        Show a progress bar.
    workers : int, optional
        Threads blending and writing regions side by side (:func:`linumpy.parallel.default_workers`);
        at most one region per thread is held.
    """
    workers = default_workers() if workers is None else max(1, int(workers))
    ramps = depth_ramps(placed)
    readers = [GraphWindowReader(piece.data) for piece in placed]
    regions = list(iter_chunk_regions(shape, chunks))
    for region in regions:  # blocks shared by neighbouring regions are computed once
        for k, local in local_windows(placed, region):
            readers[k].expect(local)

    def blend_and_write(region: tuple[slice, slice, slice]) -> None:
        sink[region] = assemble_region(placed, readers, ramps, region, dtype)

    # each thread blends a region and writes it (its compression too): one region in flight per thread
    for _ in tqdm(run_jobs(blend_and_write, regions, workers, ahead=workers), total=len(regions), desc="stack",
                  unit="chunk", disable=not progress):
        pass


def _cast(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype)
