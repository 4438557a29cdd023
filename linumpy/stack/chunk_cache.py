"""Keep the chunks of one slice that dask decoded, for the next pair's computation.

The stack's registration and boundary ratios read each slice in two pairs in
a row (slice ``k`` is the new slice of pair ``k`` and the previous slice of
pair ``k + 1``), and every read decodes whole 64-plane chunks to use a few
planes. :class:`ChunkCache` keeps the chunks of the arrays named by
:meth:`ChunkCache.keep` (the slice the next pair reads again) that one
computation produces, hands them to the next computation instead of
decoding them again (the same values), and drops them after it: at most
one slice's chunks are kept, up to a fixed number of bytes, whatever the
volume.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

import dask.array as da
import numpy as np
from dask.callbacks import Callback


class ChunkCache(Callback):
    """A dask callback that hands the chunks of some arrays to the next computation.

    The arrays' chunks must be tasks of the graphs computed: with dask's
    low-level task fusion off, as in the whole stack
    (:data:`linumpy.stack.files.UNFUSED`).

    Parameters
    ----------
    max_bytes : int
        Most bytes of chunks kept; beyond it, chunks are not kept.

    Examples
    --------
    >>> import dask
    >>> x = da.arange(8, chunks=4) * 2
    >>> cache = ChunkCache(1 << 20)
    >>> with dask.config.set({"optimization.fuse.active": False}), cache:
    ...     cache.keep([x])
    ...     first = x[:2].compute()
    ...     second = x[1:3].compute()
    >>> cache.clear()
    >>> second.tolist(), cache.hits
    ([2, 4], 1)
    """

    def __init__(self, max_bytes: int) -> None:
        super().__init__()
        self._max_bytes = max_bytes
        self._names: set[str] = set()
        self._chunks: dict[Hashable, np.ndarray] = {}
        self._bytes = 0
        self.hits = 0

    def keep(self, arrays: Iterable[da.Array]) -> None:
        """Keep the chunks of ``arrays`` that the following computations produce.

        Chunks of other arrays kept before are handed to the next
        computation, then dropped.
        """
        self._names = {array.name for array in arrays}

    def clear(self) -> None:
        """Drop every kept chunk."""
        self._chunks = {}
        self._bytes = 0

    def _start(self, dsk: dict) -> None:
        for key in self._chunks.keys() & dsk.keys():
            dsk[key] = self._chunks[key]
            self.hits += 1
        # handed over: the graph holds them now; only the chunks of the arrays kept stay kept
        self._chunks = {key: chunk for key, chunk in self._chunks.items() if key[0] in self._names}
        self._bytes = sum(chunk.nbytes for chunk in self._chunks.values())

    def _posttask(self, key: Hashable, result: object, dsk: dict, state: dict, worker_id: object) -> None:
        if not (isinstance(key, tuple) and key[0] in self._names and isinstance(result, np.ndarray)):
            return
        if key in self._chunks or self._bytes + result.nbytes > self._max_bytes:
            return
        result.flags.writeable = False  # shared with the next computation
        self._chunks[key] = result
        self._bytes += result.nbytes
