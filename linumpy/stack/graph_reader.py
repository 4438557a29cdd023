"""Read windows of a lazy array from its task graph, built and optimized once.

Slicing a dask array and computing the slice rebuilds, optimizes and orders a
graph on every call; the stack's assembly does that for every output chunk
of every slice, so the scheduler's bookkeeping took about a quarter of the
assembly's time. :class:`GraphWindowReader` materializes the array's
optimized graph once, and a window then runs only the tasks it needs (the
graph culled to the blocks it overlaps) on the calling thread. The values
are those of ``array[window].compute()``: the same tasks run.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import dask
import dask.array as da
import numpy as np
from dask.local import get_sync
from dask.optimization import cull


class GraphWindowReader:
    """Compute windows of ``array`` without rebuilding its graph.

    Parameters
    ----------
    array : dask.array.Array
        The lazy array; its graph is optimized and materialized here, once.

    Examples
    --------
    >>> import dask.array as da
    >>> reader = GraphWindowReader(da.arange(10, chunks=3) * 2)
    >>> reader.read((slice(2, 7),)).tolist()
    [4, 6, 8, 10, 12]
    """

    def __init__(self, array: da.Array) -> None:
        (optimized,) = dask.optimize(array)
        self.shape = optimized.shape
        self.dtype = optimized.dtype
        self._graph = dict(optimized.__dask_graph__())
        self._name = optimized.name
        self._starts = [np.cumsum((0,) + c) for c in optimized.chunks]

    def read(self, window: Sequence[slice]) -> np.ndarray:
        """The values of ``array[window]`` (slices with start and stop, no step)."""
        ranges = []
        for axis, part in enumerate(window):
            starts = self._starts[axis]
            first = int(np.searchsorted(starts, part.start, side="right")) - 1
            last = int(np.searchsorted(starts, part.stop, side="left"))
            ranges.append(range(first, last))
        blocks = [tuple(index) for index in itertools.product(*ranges)]
        keys = [(self._name, *index) for index in blocks]
        needed, _ = cull(self._graph, keys)
        values = dict(zip(blocks, get_sync(needed, keys), strict=True))
        out = np.empty(tuple(p.stop - p.start for p in window), self.dtype)
        for index, block in values.items():
            source, target = [], []
            for axis, (i, part) in enumerate(zip(index, window, strict=True)):
                begin = int(self._starts[axis][i])
                lo, hi = max(begin, part.start), min(begin + block.shape[axis], part.stop)
                source.append(slice(lo - begin, hi - begin))
                target.append(slice(lo - part.start, hi - part.start))
            out[tuple(target)] = block[tuple(source)]
        return out
