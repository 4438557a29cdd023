"""Blocks of a turned slice level kept from one phase of the stack for the later ones that read them again.

Turning a slice (:func:`linumpy.stack.rotation.rotate_slice`) costs a cubic
spline per plane of every block computed, and the stack's phases compute the
turned slice's blocks each through its own graph: on an averaged stack the
overlap measure turns the top planes the registration turned, and the
assembly the planes the measure turned (deep 469: the measure 532 plane
turns, the assembly 256 more, most of them the measure's; ``benchmarks/README.md``,
fast11c). A :class:`HeldBlocks` shared by the turned arrays of one level (its
``levels`` and its ``read_levels``: the same blocks, regions and values)
keeps the blocks computed while it collects, and a later computation of the
same region takes the kept block: the same values, not turned again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

Region = tuple[tuple[int, int], ...]

#: Largest bytes of blocks one level keeps (the turned top planes of a 183 x 184 px slice: 0.13 MB a plane).
HELD_BYTES = 8 * 2**20


class HeldBlocks:
    """Computed blocks of one lazy level, by region (``((z0, z1), (y0, y1), (x0, x1))``).

    Idle (the default) it keeps nothing. :meth:`collect` keeps every block
    computed from then on (within :data:`HELD_BYTES`) and hands it to every
    later computation of its region; :meth:`keep_only` then stops collecting
    and keeps the blocks of some planes only, each handed once more and then
    dropped (the last phase that reads them).

    Examples
    --------
    >>> held = HeldBlocks()
    >>> turn = held.wrap(lambda values, region, bounds: values * 2)
    >>> region = ((0, 2), (0, 1), (0, 1))
    >>> held.collect()
    >>> turn(np.ones((2, 1, 1)), region, region).ravel().tolist()
    [2.0, 2.0]
    >>> turn(np.zeros((2, 1, 1)), region, region).ravel().tolist()  # kept: not computed again
    [2.0, 2.0]
    >>> held.keep_only((0, 1))
    >>> [turn(np.zeros((2, 1, 1)), region, region).ravel().tolist() for _ in range(2)]
    [[2.0, 2.0], [0.0, 0.0]]
    """

    def __init__(self) -> None:
        self._blocks: dict[Region, np.ndarray] = {}
        self._bytes = 0
        self._collecting = False
        self._last = False  # the blocks kept are handed once more, then dropped
        self._lock = threading.Lock()

    def __reduce__(self) -> tuple:
        # what dask's tokenize of a block function holding it pickles: the blocks held change no value
        return HeldBlocks, ()

    def collect(self) -> None:
        """Keep the blocks computed from now on (within :data:`HELD_BYTES`)."""
        with self._lock:
            self._collecting, self._last = True, False

    def keep_only(self, planes: tuple[int, int]) -> None:
        """Stop collecting; keep the blocks overlapping planes ``[start, stop)``, each handed once more."""
        with self._lock:
            self._collecting, self._last = False, True
            for region in [r for r in self._blocks if not (r[0][0] < planes[1] and planes[0] < r[0][1])]:
                self._bytes -= self._blocks.pop(region).nbytes

    def wrap(self, compute: Callable[[np.ndarray, Region, Region], np.ndarray],
             ) -> Callable[[np.ndarray, Region, Region], np.ndarray]:
        """``compute`` (a :func:`~linumpy.stack.windows.windowed_blocks` block function) taking the kept block of
        its region when there is one, its result kept while collecting."""

        def block(values: np.ndarray, region: Region, bounds: Region) -> np.ndarray:
            kept = self._take(region)
            if kept is not None:
                return kept
            result = compute(values, region, bounds)
            self._keep(region, result)
            return result

        return block

    def _take(self, region: Region) -> np.ndarray | None:
        with self._lock:
            if not self._last:
                return self._blocks.get(region)
            kept = self._blocks.pop(region, None)
            self._bytes -= 0 if kept is None else kept.nbytes
            return kept

    def _keep(self, region: Region, block: np.ndarray) -> None:
        with self._lock:
            if self._collecting and region not in self._blocks and self._bytes + block.nbytes <= HELD_BYTES:
                self._blocks[region] = block
                self._bytes += block.nbytes
