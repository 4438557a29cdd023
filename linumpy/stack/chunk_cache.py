"""Keep the chunks of a few arrays that dask decoded, for the next computations.

The stack's registration and boundary ratios read the same slice twice in a
row (slice ``k`` is the new slice of pair ``k`` and the previous slice of
pair ``k + 1``), each read decoding whole 64-plane chunks to use a few
planes. :class:`ChunkCache` keeps the most recently computed chunks of the
given dask arrays, up to a fixed number of bytes (least recently used
first out), and hands them to the next computation instead of decoding
them again: the same values, and a memory bound that does not grow with the
volume.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterable

import dask.array as da
import numpy as np
from dask.callbacks import Callback


class ChunkCache(Callback):
    """A dask callback that reuses the computed chunks of some arrays.

    The arrays' chunks must be tasks of the graphs computed: with dask's
    low-level task fusion off, as in the whole stack
    (:data:`linumpy.stack.files.UNFUSED`).

    Parameters
    ----------
    arrays : iterable of dask.array.Array
        Arrays whose chunks are kept (their dask keys).
    max_bytes : int
        Most bytes of chunks kept; older chunks are dropped first.

    Examples
    --------
    >>> import dask
    >>> x = da.arange(8, chunks=4) * 2
    >>> with dask.config.set({"optimization.fuse.active": False}), ChunkCache([x], 1 << 20) as cache:
    ...     first = x[:2].compute()
    ...     second = x[1:3].compute()
    >>> cache.clear()
    >>> second.tolist(), cache.hits
    ([2, 4], 1)
    """

    def __init__(self, arrays: Iterable[da.Array], max_bytes: int) -> None:
        super().__init__()
        self._names = {array.name for array in arrays}
        self._max_bytes = max_bytes
        self._chunks: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._bytes = 0
        self.hits = 0

    def _start(self, dsk: dict) -> None:
        for key in self._chunks.keys() & dsk.keys():
            dsk[key] = self._chunks[key]
            self._chunks.move_to_end(key)
            self.hits += 1

    def _posttask(self, key: Hashable, result: object, dsk: dict, state: dict, worker_id: object) -> None:
        if not (isinstance(key, tuple) and key[0] in self._names and isinstance(result, np.ndarray)):
            return
        if key in self._chunks or result.nbytes > self._max_bytes:
            return
        result.flags.writeable = False  # shared with later computations
        self._chunks[key] = result
        self._bytes += result.nbytes
        while self._bytes > self._max_bytes:
            _, dropped = self._chunks.popitem(last=False)
            self._bytes -= dropped.nbytes

    def clear(self) -> None:
        """Drop every kept chunk (they stay kept between ``with`` blocks until then)."""
        self._chunks.clear()
        self._bytes = 0
