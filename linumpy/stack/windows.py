"""Lazy arrays whose every block is computed from one window of a source dask array.

The stack re-flattens (:mod:`linumpy.stack.tilt`) and turns
(:mod:`linumpy.stack.rotation`) slices lazily: each output block reads a
window of the source around it. :func:`windowed_blocks` builds such an array
straight from the source's chunk keys (one task per block, no nested graphs;
a source chunk read by several blocks of one computation is decoded once),
with its own depth blocking: the stack reads a few top planes of each slice
many times (rotation, registration, boundary ratios), and a block only
computes the planes it holds, however deep the source's chunks are.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Sequence

import dask.array as da
import numpy as np
from dask._task_spec import Task, TaskRef  # dask >= 2024.12 (pyproject.toml)
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

Region = tuple[tuple[int, int], ...]
#: Planes per block of the re-flattened and turned slices (whatever the source's depth chunks).
DEPTH_BLOCK = 8


def depth_chunks(depth: int, block: int = DEPTH_BLOCK) -> tuple[int, ...]:
    """Blocks of ``block`` planes over ``depth`` planes (the last one shorter).

    Examples
    --------
    >>> depth_chunks(20, 8)
    (8, 8, 4)
    """
    return tuple(min(block, depth - start) for start in range(0, depth, block))


def windowed_blocks(
    source: da.Array,
    chunks: Sequence[Sequence[int]],
    window: Callable[[Region], Region],
    compute: Callable[[np.ndarray, Region, Region], np.ndarray],
    name: str,
) -> da.Array:
    """A lazy array of ``chunks`` whose block at ``region`` is ``compute(source[window(region)], region, window(region))``.

    Parameters
    ----------
    source : dask.array.Array
        The array read.
    chunks : sequence of sequence of int
        Block sizes of the output along each axis (its shape is their sums).
    window : callable
        ``region -> source region`` (``(start, stop)`` per axis, inside the source) a block reads.
    compute : callable
        ``(window values, region, source region) -> block`` of the region's shape and the source's dtype.
    name : str
        Prefix of the task names.

    Examples
    --------
    >>> x = da.arange(12, chunks=5)
    >>> y = windowed_blocks(x, [(4, 4, 4)], lambda r: ((r[0][0], r[0][1]),), lambda v, r, w: v * 2, "twice")
    >>> y.compute().tolist()
    [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22]
    """
    chunks = tuple(tuple(int(c) for c in axis) for axis in chunks)
    out_name = f"{name}-{tokenize(source, chunks, window, compute)}"
    # block edges as lists of ints, searched with bisect: numpy's searchsorted on these few edges cost ~5 us a
    # call, a third of building the re-tilted levels of the five small slices (60 arrays, on the step's serial path)
    source_edges = [list(itertools.accumulate(map(int, axis), initial=0)) for axis in source.chunks]
    out_edges = [list(itertools.accumulate(axis, initial=0)) for axis in chunks]
    graph = {}
    for index in itertools.product(*(range(len(axis)) for axis in chunks)):
        region = tuple((e[i], e[i + 1]) for e, i in zip(out_edges, index, strict=True))
        bounds = window(region)
        ranges = [range(bisect.bisect_right(e, lo) - 1, bisect.bisect_left(e, hi))
                  for e, (lo, hi) in zip(source_edges, bounds, strict=True)]
        keys = [(source.name, *k) for k in itertools.product(*ranges)]
        corners = [tuple(e[i] for e, i in zip(source_edges, k, strict=True)) for k in itertools.product(*ranges)]
        # a task object, not a legacy tuple: its literal arguments are not searched for keys when a reader or a
        # scheduler converts the graph (about half of a graph reader's set-up, linumpy.stack.graph_reader)
        key = (out_name, *index)
        graph[key] = Task(key, _block, compute, region, bounds, corners, *map(TaskRef, keys))
    layer = HighLevelGraph.from_collections(out_name, graph, dependencies=[source])
    return da.Array(layer, out_name, chunks, dtype=source.dtype, meta=np.empty((0,) * source.ndim, source.dtype))


def _block(compute: Callable, region: Region, bounds: Region, corners: list[tuple[int, ...]],
           *pieces: np.ndarray) -> np.ndarray:
    """Assemble the window ``bounds`` from the source chunks (at ``corners``) and compute the block.

    A window inside one source chunk is a view of it (no copy: ``compute`` only reads its window).
    """
    parts = []
    for corner, piece in zip(corners, pieces, strict=True):
        target, part = [], []
        for (lo, hi), start, size in zip(bounds, corner, piece.shape, strict=True):
            a, b = max(lo, start), min(hi, start + size)
            target.append(slice(a - lo, b - lo))
            part.append(slice(a - start, b - start))
        parts.append((tuple(target), piece[tuple(part)]))
    if len(parts) == 1:
        return compute(parts[0][1], region, bounds)
    values = np.empty(tuple(hi - lo for lo, hi in bounds), pieces[0].dtype)
    for target, part in parts:
        values[target] = part
    return compute(values, region, bounds)
