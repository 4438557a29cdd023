"""Chunk reads of the slices kept a short while for the stack's plan, which reads the same chunks again soon.

The stack's plan reads a few planes of each slice many times, each read
through its own graph: the rotation search, the registration and the
boundary ratios the top planes, the averaging's overlap measure a slice's
overlaps with both its neighbours, batch by batch. A re-flattened or turned
block reads its source one plane beyond its own on each side and its lateral
margin, so the source chunks at a block's edges are decoded again by the
block next to it, and by the next phase (deep 490: 1245 chunk reads in the
plan for 380 distinct ones; ``benchmarks/README.md``, fast11d). Most repeats
come within a few MB of reads of each other (not on wide slices, c185's 372
px: there the kept reads rarely serve): :class:`DecodedChunks` keeps
the latest reads, least recently used out first, within
:data:`DECODED_BYTES`. A read is the stored values (decoding is
deterministic), handed read-only: the same values, not decoded again.
The assembly reads every plane once, whole chunks: the stack stops keeping
reads before it (:meth:`DecodedChunks.close`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import numpy as np

#: Bytes of chunk reads kept. One worker, the plan's reads decoded again without: deep 490 865 of 1245 (16 MB
#: keeps 595 of them), odd2 500 208 of 307 (16 MB: 150; its measure reads 3.2 MB chunks whole). The step's peak
#: RSS is the assembly's, after the plan: 16 MB left it within the runs' spread, 32 MB raised it 10-20 MB.
DECODED_BYTES = 16 * 2**20


class DecodedChunks:
    """The latest chunk reads of several arrays, least recently used out first, within ``budget`` bytes
    (default :data:`DECODED_BYTES`).

    Examples
    --------
    >>> decoded = DecodedChunks(2**20)
    >>> stored = np.arange(12.0).reshape(3, 4)
    >>> reads = decoded.reads(stored)
    >>> first = reads[(slice(0, 2), slice(0, 4))]
    >>> reads[(slice(0, 2), slice(0, 4))] is first, first.flags.writeable
    (True, False)
    >>> decoded.close()
    >>> reads[(slice(0, 2), slice(0, 4))] is first
    False
    """

    def __init__(self, budget: int | None = None) -> None:
        self._budget = DECODED_BYTES if budget is None else budget
        self._kept: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()  # the pairs' threads read

    def reads(self, array: Any) -> CachedReads:
        """``array`` (an array-like read by index) read through this cache."""
        return CachedReads(array, self)

    def close(self) -> None:
        """Drop every read kept and keep none from now on."""
        with self._lock:
            self._budget = 0
            self._kept.clear()
            self._bytes = 0

    def read(self, array: CachedReads, key: Any) -> np.ndarray:
        """``array.source[key]``, kept (read-only) or taken from the reads kept."""
        index = (array, _hashable(key))
        with self._lock:
            values = self._kept.get(index)
            if values is not None:
                self._kept.move_to_end(index)
                return values
        values = array.source[key]
        if isinstance(values.base, np.ndarray) and values.base.nbytes > values.nbytes:
            values = values.copy()  # a few planes of a chunk decoded whole (the last, padded): not kept whole
        with self._lock:
            if values.nbytes > self._budget or index in self._kept:
                return values
            values.flags.writeable = False
            self._kept[index] = values
            self._bytes += values.nbytes
            while self._bytes > self._budget:
                self._bytes -= self._kept.popitem(last=False)[1].nbytes
        return values


class CachedReads:
    """An array-like whose reads go through a :class:`DecodedChunks` (its ``shape``, ``dtype`` and ``ndim``
    those of ``source``)."""

    def __init__(self, source: Any, cache: DecodedChunks) -> None:
        self.source, self._cache = source, cache
        self.shape, self.dtype, self.ndim = source.shape, source.dtype, source.ndim

    def __getitem__(self, key: Any) -> np.ndarray:
        return self._cache.read(self, key)


def _hashable(key: Any) -> tuple:
    """An index of slices and integers as a hashable tuple (slices are not hashable before Python 3.12)."""
    key = key if isinstance(key, tuple) else (key,)
    return tuple((k.start, k.stop, k.step) if isinstance(k, slice) else k for k in key)
