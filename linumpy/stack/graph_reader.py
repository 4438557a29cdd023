"""Read windows of a lazy array from its task graph, built once.

Slicing a dask array and computing the slice rebuilds, optimizes and orders a
graph on every call; the stack's assembly does that for every output chunk
of every slice, so the scheduler's bookkeeping took about a quarter of the
assembly's time. :class:`GraphWindowReader` materializes the array's
culled graph once (its tasks converted once, by the first read), and a
window then runs only the tasks it needs, depth first on the calling
thread, each value freed once its last dependent ran: no per-window graph
conversion, ordering or scheduler state (which took about half of the
assembly's time on the five ``small`` slices). The values are those of
``array[window].compute()``: the same functions run on the same blocks.

The graph is culled, not optimized: dask's blockwise fusion merges a
block's layers (cast, block mean, gain, ...) into one task that runs them as
a subgraph, ordered by dask at every call; run as separate tasks they took
about a fifth less CPU in the assembly of the five ``small`` slices (1.19-1.25
-> 0.93-0.99 s, session perf26).

The windows of consecutive output chunks share the blocks that straddle
their borders (on the five ``small`` slices half the blocks were computed
twice or more). The windows announced with :meth:`GraphWindowReader.expect`
keep such a block in memory from its first read to its last (up to
:data:`CACHE_BYTES` per reader; beyond it a block is computed again).
"""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from collections.abc import Hashable, Sequence
from concurrent.futures import Future

import dask.array as da
import numpy as np
from dask._task_spec import convert_legacy_graph  # dask >= 2024.12 (pyproject.toml): tasks run without a scheduler
from dask.core import flatten

#: Bytes of blocks a reader keeps between the windows that share them.
CACHE_BYTES = 32 * 2**20


class GraphWindowReader:
    """Compute windows of ``array`` without rebuilding its graph.

    Parameters
    ----------
    array : dask.array.Array
        The lazy array; its graph is culled and materialized here, once.

    Examples
    --------
    >>> import dask.array as da
    >>> reader = GraphWindowReader(da.arange(10, chunks=3) * 2)
    >>> reader.read((slice(2, 7),)).tolist()
    [4, 6, 8, 10, 12]
    """

    def __init__(self, array: da.Array) -> None:
        self.shape = array.shape
        self.dtype = array.dtype
        self._array: da.Array | None = array  # its graph materialized by the first read (:meth:`_graph`)
        self._tasks: dict | None = None
        self._graph_lock = threading.Lock()
        self._name = array.name
        self._starts = [np.cumsum((0,) + c) for c in array.chunks]
        self._uses: Counter[tuple[int, ...]] = Counter()  # announced reads not yet done, per block
        self._kept: dict[tuple[int, ...], np.ndarray] = {}
        self._kept_bytes = 0
        self._computing: dict[tuple[int, ...], Future] = {}  # blocks a read is computing, for the reads that need them
        self._lock = threading.Lock()  # windows are read by several threads

    def expect(self, window: Sequence[slice]) -> None:
        """Announce a later :meth:`read` of ``window``: blocks it shares with other announced windows are kept."""
        self._uses.update(self._blocks(window))

    def read(self, window: Sequence[slice], out: np.ndarray | None = None) -> np.ndarray:
        """The values of ``array[window]`` (slices with start and stop, no step).

        ``out``: where to put them (the window's shape, any dtype the values cast to), returned; default a new
        array of the array's dtype.
        """
        blocks = self._blocks(window)
        with self._lock:
            values = {index: self._kept[index] for index in blocks if index in self._kept}
            waiting = {index: self._computing[index] for index in blocks
                       if index not in values and index in self._computing}
            computing = {index: Future() for index in blocks if index not in values and index not in waiting}
            self._computing.update(computing)
        try:
            values.update(zip(computing, self._run([(self._name, *index) for index in computing]), strict=True))
        except BaseException as error:
            self._settle(computing, error)
            raise
        self._settle(computing, values, [index for index in blocks if index not in waiting])
        if waiting:  # the blocks other reads were computing: their values, once computed (no read waits for
            # another before it has computed its own blocks, so no two reads wait for each other)
            values.update((index, future.result()) for index, future in waiting.items())
            with self._lock:
                for index in waiting:
                    self._release(index, values[index])
        shape = tuple(p.stop - p.start for p in window)
        if out is None:
            out = np.empty(shape, self.dtype)
        elif out.shape != shape:
            raise ValueError(f"out has shape {out.shape}, the window {shape}")
        for index, block in values.items():
            source, target = [], []
            for axis, (i, part) in enumerate(zip(index, window, strict=True)):
                begin = int(self._starts[axis][i])
                lo, hi = max(begin, part.start), min(begin + block.shape[axis], part.stop)
                source.append(slice(lo - begin, hi - begin))
                target.append(slice(lo - part.start, hi - part.start))
            out[tuple(target)] = block[tuple(source)]
        return out

    def _settle(self, computing: dict[tuple[int, ...], Future], values: dict | BaseException,
                released: Sequence[tuple[int, ...]] = ()) -> None:
        """Hand the blocks this read computed (or its error) to the reads waiting for them, and release
        ``released``, in one step: a block is either being computed, kept, or freed."""
        with self._lock:
            for index, future in computing.items():
                del self._computing[index]
                if isinstance(values, BaseException):
                    future.set_exception(values)
                else:
                    future.set_result(values[index])
            for index in released:
                self._release(index, values[index])

    def _blocks(self, window: Sequence[slice]) -> list[tuple[int, ...]]:
        """Indices of the blocks ``window`` overlaps."""
        ranges = []
        for axis, part in enumerate(window):
            starts = self._starts[axis]
            first = int(np.searchsorted(starts, part.start, side="right")) - 1
            last = int(np.searchsorted(starts, part.stop, side="left"))
            ranges.append(range(first, last))
        return [tuple(index) for index in itertools.product(*ranges)]

    def _release(self, index: tuple[int, ...], block: np.ndarray) -> None:
        """One announced read of a block done: keep it while more are announced (within the budget), else free it."""
        if self._uses[index] <= 0:
            return
        self._uses[index] -= 1
        if not self._uses[index]:
            del self._uses[index]
            kept = self._kept.pop(index, None)
            self._kept_bytes -= 0 if kept is None else kept.nbytes
        elif index not in self._kept and self._kept_bytes + block.nbytes <= CACHE_BYTES:
            self._kept[index] = block if block.base is None else block.copy()  # a view would keep its base
            self._kept_bytes += block.nbytes

    def _graph(self) -> dict:
        """The array's culled graph, its tasks converted: on the first read, in the reading thread.

        The stack's assembly makes a reader per slice before its threads read
        them: converted there, the five ``small`` slices' graphs took about
        0.08 CPU s of the calling thread before the first region was blended.
        """
        with self._graph_lock:
            if self._tasks is None:
                array, self._array = self._array, None
                # culled only: dask's blockwise fusion would run each block's layers as a subgraph, ordered at
                # every call
                graph = array.__dask_graph__().cull(set(flatten(array.__dask_keys__())))  # a HighLevelGraph
                self._tasks = convert_legacy_graph(dict(graph))
            return self._tasks

    def _run(self, keys: list[Hashable]) -> list[object]:
        """The values of ``keys``: their tasks and those they depend on, run depth first."""
        tasks = self._graph()
        order, seen = [], set()
        for key in keys:
            pending = [(key, False)]
            while pending:
                node, ready = pending.pop()
                if ready:
                    order.append(node)
                elif node not in seen:
                    seen.add(node)
                    pending.append((node, True))
                    pending.extend((d, False) for d in tasks[node].dependencies if d not in seen)
        dependents = Counter(d for node in order for d in tasks[node].dependencies)
        wanted = set(keys)
        cache: dict[Hashable, object] = {}
        for node in order:
            task = tasks[node]
            cache[node] = task(cache)
            for d in task.dependencies:
                dependents[d] -= 1
                if not dependents[d] and d not in wanted:
                    del cache[d]
        return [cache[key] for key in keys]
