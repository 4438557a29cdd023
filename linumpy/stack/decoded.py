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
px: there the kept reads rarely serve): :class:`DecodedChunks` keeps a copy
of the latest reads of a few planes (up to :data:`LARGEST_KEPT_BYTES`) in a
ring of :data:`DECODED_BYTES`, the oldest overwritten first, and hands a copy of a kept read (decoding is
deterministic: the same values, not decoded again).

The ring is its own memory map, not the allocator's: the reads kept among
the plan's arrays (an LRU of the decoded arrays themselves) left holes in
the malloc arena that the assembly's region buffers did not fit, and the
step's peak RSS rose ~10 MB (deep 490); every array a reader gets is still
its own, allocated and freed as without the ring. The assembly reads every
plane once, whole chunks: the stack drops the ring before it
(:meth:`DecodedChunks.close`).
"""

from __future__ import annotations

import math
import mmap
import threading
from typing import Any

import numpy as np

#: Bytes of the ring. One worker, the plan's reads decoded again without it: deep 490 865 of 1245 (16 MB keeps 560
#: of them from being decoded again). The ring is mapped during the plan only; the step's peak RSS is the
#: assembly's, after it (deep 490).
DECODED_BYTES = 16 * 2**20
#: Largest read kept (bytes): runs of a few planes, not whole chunks. A chunk read whole is read by a phase that is
#: then the step's peak: odd2 500's measure read its 3.2 MB chunks whole (before its runs of Blosc blocks, this
#: session), and keeping them raised the step's peak RSS 154-158 -> 160-166 MB.
LARGEST_KEPT_BYTES = 2**20
#: Alignment of a kept read in the ring (bytes).
ALIGN = 64


class DecodedChunks:
    """Copies of the latest chunk reads of several arrays in a ring of ``budget`` bytes (default
    :data:`DECODED_BYTES`; its own memory map), the oldest overwritten first.

    Examples
    --------
    >>> decoded = DecodedChunks(2**20)
    >>> stored = np.arange(12.0).reshape(3, 4)
    >>> reads = decoded.reads(stored)
    >>> first = reads[(slice(0, 2), slice(0, 4))]
    >>> again = reads[(slice(0, 2), slice(0, 4))]  # a copy of the kept read
    >>> again is first, bool((again == first).all())
    (False, True)
    >>> decoded.close()
    """

    def __init__(self, budget: int | None = None) -> None:
        self._size = DECODED_BYTES if budget is None else budget
        self._ring: np.ndarray | None = None  # bytes, mapped on the first read kept
        self._kept: dict[tuple, tuple[int, tuple[int, ...], np.dtype]] = {}  # read -> its place, oldest first
        self._head = 0
        self._lock = threading.Lock()  # the pairs' threads read

    def reads(self, array: Any) -> CachedReads:
        """``array`` (an array-like read by index) read through this cache."""
        return CachedReads(array, self)

    def close(self) -> None:
        """Drop the ring (unmapped: no view of it is handed out) and keep nothing from now on."""
        with self._lock:
            self._size, self._ring, self._kept = 0, None, {}

    def read(self, array: CachedReads, key: Any) -> np.ndarray:
        """``array.source[key]``: a copy of the kept read, else read and a copy kept."""
        index = (array, _hashable(key))
        with self._lock:  # copied under the lock: a read kept meanwhile may overwrite its bytes
            place = self._kept.get(index)
            if place is not None:
                return self._values(*place).copy()
        values = array.source[key]
        with self._lock:
            self._keep(index, values)
        return values

    def _values(self, offset: int, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """The kept read at ``offset`` of the ring (a view of it)."""
        size = math.prod(shape) * dtype.itemsize
        return self._ring[offset : offset + size].view(dtype).reshape(shape)

    def _keep(self, index: tuple, values: np.ndarray) -> None:
        """A copy of ``values`` at the ring's head (from its start when it does not fit before its end), the
        reads it overwrites dropped; none of a read larger than :data:`LARGEST_KEPT_BYTES` or the ring."""
        size = values.nbytes
        if not 0 < size <= min(self._size, LARGEST_KEPT_BYTES) or index in self._kept:
            return
        if self._ring is None:
            self._ring = np.frombuffer(mmap.mmap(-1, self._size), np.uint8)
        start = self._head if self._head + size <= self._size else 0
        for kept in [k for k, (o, shape, dtype) in self._kept.items()
                     if o < start + size and start < o + math.prod(shape) * dtype.itemsize]:
            del self._kept[kept]
        self._kept[index] = (start, values.shape, values.dtype)
        self._values(start, values.shape, values.dtype)[...] = values
        self._head = -(-(start + size) // ALIGN) * ALIGN


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
