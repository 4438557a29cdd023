"""Decoded tile slabs kept between the fused blocks that read them.

A fused block reads every tile that overlaps it, and a tile overlaps up to
four blocks: without a cache each tile slab (one input z-chunk of a whole
tile) is decoded about 2.2 times on the ``large`` slice. The blocks are fused
in a known order, so the cache keeps, among the slabs decoded, those whose
next read comes soonest (Belady's rule): with eight slabs (128 MB on the
``large`` slice) each slab is decoded about 1.3 times. What a slab holds does
not depend on the cache: the fusion reads the same values either way.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from concurrent.futures import Future

import numpy as np


def slab_uses(needs: Iterable[Iterable[Hashable]]) -> dict[Hashable, list[int]]:
    """``slab -> [indices of the jobs that read it]`` (ascending) from each job's slabs, in job order.

    Examples
    --------
    >>> slab_uses([["a", "b"], ["b"], ["a"]])
    {'a': [0, 2], 'b': [0, 1]}
    """
    uses: dict[Hashable, list[int]] = {}
    for index, slabs in enumerate(needs):
        for slab in slabs:
            uses.setdefault(slab, []).append(index)
    return uses


class SlabCache:
    """Read slabs through ``read``, keeping up to ``capacity`` of them for the jobs that read them again.

    Parameters
    ----------
    read : callable
        ``read(key) -> np.ndarray``, the decoded slab (a new array; the callers must not modify what
        :meth:`get` returns, which other jobs may share).
    uses : mapping
        ``key -> ascending job indices`` that read the slab (:func:`slab_uses`).
    capacity : int
        Most slabs kept at once (0: none, every read decodes).

    Notes
    -----
    Thread-safe: a slab another thread is decoding for the cache is waited for,
    not decoded twice. A slab leaves the cache at its last read; a slab whose
    next read is later than those of a full cache's slabs is returned without
    being kept; otherwise the kept slab read again the latest makes room for it.
    """

    def __init__(self, read: Callable[[Hashable], np.ndarray], uses: Mapping[Hashable, Sequence[int]],
                 capacity: int) -> None:
        self._read = read
        self.uses = uses
        self.capacity = max(0, int(capacity))
        self._slabs: dict[Hashable, Future] = {}
        self._left = {key: len(jobs) for key, jobs in uses.items()}  # reads of each slab not yet asked for
        self._lock = threading.Lock()
        #: Slabs decoded (a measure of the cache's use).
        self.decoded = 0

    def get(self, key: Hashable, job: int) -> np.ndarray:
        """The slab ``key``, read by job ``job`` (its index in the order of ``uses``)."""
        with self._lock:
            self._left[key] = self._left.get(key, 1) - 1
            slab = self._slabs.get(key)
            owner = slab is None
            if owner:
                slab = Future()
                self.decoded += 1
                if self._left[key] > 0 and self._make_room(key, job):
                    self._slabs[key] = slab
            elif self._left[key] <= 0:  # its last read: no job needs it any more
                del self._slabs[key]
        if owner:
            try:
                slab.set_result(self._read(key))
            except BaseException as error:
                with self._lock:
                    if self._slabs.get(key) is slab:
                        del self._slabs[key]
                slab.set_exception(error)
                raise
        return slab.result()

    def _next_use(self, key: Hashable, job: int) -> float:
        """The first job after ``job`` that reads ``key``; ``job`` itself if only earlier jobs (still running)
        have yet to read it."""
        uses = self.uses.get(key, ())
        position = bisect.bisect_right(uses, job)
        return uses[position] if position < len(uses) else job

    def _make_room(self, key: Hashable, job: int) -> bool:
        """Whether ``key``, decoded for ``job``, is kept: a free place, or the kept slab read again the latest
        (evicted) is read after it (the lock held)."""
        if len(self._slabs) < self.capacity:
            return True
        if not self._slabs:
            return False
        upcoming = self._next_use(key, job)
        victim = max(self._slabs, key=lambda k: self._next_use(k, job))
        if self._next_use(victim, job) <= upcoming:
            return False
        del self._slabs[victim]
        return True
