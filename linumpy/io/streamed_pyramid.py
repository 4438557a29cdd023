"""Build an image's lateral pyramid from its level-0 chunks while they are written.

Level ``k + 1`` of the pyramid is the 2 x 2 lateral block mean of level
``k`` (:func:`linumpy.resample.block_mean`, border voxels weighted by
:func:`linumpy.resample.pyramid_edge_weights`). When every lateral chunk
size of every level is even (or the chunk is the whole axis), a chunk of
level ``k`` holds whole 2 x 2 blocks, so its block mean is a piece of level
``k + 1`` computed from that chunk alone, with the same arithmetic per voxel
as the block mean of the whole level: the values are identical.

:class:`StreamedPyramid` takes level-0 chunks as a writer stores them,
gathers their pieces in the level-1 chunks that hold them, writes each
level-1 chunk straight to its file once all of its voxels have arrived, and
feeds it in turn to level 2, and so on. Finalizing the image then reads
nothing back. Chunks are gathered by whichever thread completes them, and
every piece has its own place in its chunk, so the result does not depend on
the order or the threads of the writes.

Memory holds the chunks gathered in part: writers visit their chunks so that
2 x 2 groups complete soon (:func:`morton_order`). Past ``budget_bytes``, or
when a chunk of level 0 is written twice or in part, the builder gives up
(:attr:`StreamedPyramid.failure` says why) and the writer builds the pyramid
from the stored level 0 at finalize, as it did before.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

import numpy as np

from linumpy.io.chunk_writer import ChunkFileWriter
from linumpy.io.ngff import level_chunks
from linumpy.resample import block_mean_of_block, pyramid_edge_weights

logger = logging.getLogger(__name__)

#: Default bound on the bytes of chunks gathered in part.
DEFAULT_BUDGET_BYTES = 256 * 2**20

Index = tuple[int, ...]
Item = TypeVar("Item")


def pyramid_shapes(shape: Sequence[int]) -> list[tuple[int, ...]]:
    """Shapes of levels 1, 2, ... of the lateral pyramid of ``shape`` (stops when y or x is < 2 before halving).

    Examples
    --------
    >>> pyramid_shapes((3, 5, 9))
    [(3, 3, 5), (3, 2, 3), (3, 1, 2)]
    """
    shapes, current = [], tuple(int(n) for n in shape)
    while min(current[-2:]) >= 2:
        current = (*current[:-2], *(-(-n // 2) for n in current[-2:]))
        shapes.append(current)
    return shapes


def streamable(shape: Sequence[int], chunks: Sequence[int]) -> bool:
    """Whether every chunk of every level but the last holds whole 2 x 2 blocks (see the module notes)."""
    shapes = [tuple(shape), *pyramid_shapes(shape)]
    for level in shapes[:-1]:
        level_chunk = level_chunks(chunks, level)
        if any(c % 2 and c < n for c, n in zip(level_chunk[-2:], level[-2:])):
            return False
    return True


def morton_order(items: Iterable[Item], position: Callable[[Item], tuple[int, int]]) -> list[Item]:
    """``items`` sorted along the Z-order curve of their lateral ``position`` (stable).

    Consecutive items then fill 2 x 2, 4 x 4, ... groups one after another,
    which keeps the chunks a :class:`StreamedPyramid` gathers in part few.

    Examples
    --------
    >>> morton_order([(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)], lambda p: p)
    [(0, 0), (0, 1), (1, 0), (1, 1), (0, 2)]
    """

    def key(item: Item) -> int:
        row, col = (int(v) for v in position(item))
        code = 0
        for bit in range(max(row.bit_length(), col.bit_length())):
            code |= ((row >> bit) & 1) << (2 * bit + 1) | ((col >> bit) & 1) << (2 * bit)
        return code

    return sorted(items, key=key)


class _Gathering:
    """One chunk of a level being filled by pieces."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype):
        self.values = np.empty(shape, dtype)
        self.missing = self.values.size


class StreamedPyramid:
    """Levels 1..n of a lateral pyramid, built from level-0 chunks as they are written.

    Parameters
    ----------
    shape, chunks : tuple of int
        Level 0's shape and chunk shape (each level's chunks are ``chunks``
        capped by its shape). Check :func:`streamable` first.
    dtype : dtype
        Stored dtype of every level.
    targets : sequence of ChunkFileWriter
        Writers of levels 1..n (shapes :func:`pyramid_shapes`, fewer levels allowed).
    budget_bytes : int
        Give up when the chunks gathered in part would take more.
    """

    def __init__(
        self, shape: Sequence[int], chunks: Sequence[int], dtype: np.dtype,
        targets: Sequence[ChunkFileWriter], budget_bytes: int = DEFAULT_BUDGET_BYTES,
    ):
        self.shapes = [tuple(shape), *(tuple(t.shape) for t in targets)]
        self.chunks = [level_chunks(chunks, level) for level in self.shapes]
        self.dtype = np.dtype(dtype)
        self.targets = list(targets)
        self.factors = (1,) * (len(shape) - 2) + (2, 2)
        self.budget_bytes = budget_bytes
        self.failure: str | None = None
        #: Most bytes of chunks gathered in part at once (a measure of the visiting order).
        self.peak_bytes = 0
        spans = [(1,) * (len(shape) - 2) + (2**k, 2**k) for k in range(len(self.shapes))]
        self._weights = [pyramid_edge_weights(shape, level, span) for level, span in zip(self.shapes, spans)]
        self._gathering: list[dict[Index, _Gathering]] = [{} for _ in self.shapes]
        self._written: set[Index] = set()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def n_levels(self) -> int:
        """Levels above level 0 that this builder writes."""
        return len(self.targets)

    def give_up(self, reason: str) -> None:
        """Stop building (the writer then builds the pyramid at finalize); ``reason`` is kept in :attr:`failure`."""
        with self._lock:
            if self.failure is None:
                self.failure = reason
            for gathering in self._gathering:
                gathering.clear()
            self._bytes = 0

    def add(self, region: tuple[slice, ...], values: np.ndarray) -> None:
        """Take level-0 ``values`` of ``region``, which covers whole chunks (the last ones may end at the border)."""
        indices = list(self._chunk_indices(0, region))
        with self._lock:
            if self.failure is not None:
                return
            if self._written.intersection(indices):
                self.failure = "a level-0 chunk was written twice"
            self._written.update(indices)
        if self.failure is not None:
            self.give_up(self.failure)
            return
        self._add(0, region, values)

    def finish(self) -> bool:
        """Add the level-0 chunks never written (zeros); True when every level is complete."""
        grid = [range(-(-n // c)) for n, c in zip(self.shapes[0], self.chunks[0])]
        for index in itertools.product(*grid):
            if self.failure is not None:
                break
            if index not in self._written:
                region = self._chunk_region(0, index)
                self.add(region, np.zeros(tuple(r.stop - r.start for r in region), self.dtype))
        if self.failure is None and any(self._gathering):
            self.give_up("chunks left incomplete")
        return self.failure is None

    def _add(self, level: int, region: tuple[slice, ...], values: np.ndarray) -> None:
        """Pass the block mean of every ``level`` chunk in ``region`` on to level + 1."""
        if level >= self.n_levels:
            return
        for index in self._chunk_indices(level, region):
            chunk = self._chunk_region(level, index)
            local = tuple(slice(c.start - r.start, c.stop - r.start) for c, r in zip(chunk, region))
            location = [(c.start, c.stop) for c in chunk]
            piece = block_mean_of_block(values[local], self.factors, self._weights[level], self.shapes[level], location)
            starts = [c.start // f for c, f in zip(chunk, self.factors)]
            self._gather(level + 1, tuple(slice(s, s + n) for s, n in zip(starts, piece.shape)), piece)

    def _gather(self, level: int, region: tuple[slice, ...], piece: np.ndarray) -> None:
        """Copy ``piece`` into the chunks of ``level`` it falls in; write and pass on those it completes."""
        for index in self._chunk_indices(level, region):
            chunk = self._chunk_region(level, index)
            inside = tuple(slice(max(r.start, c.start), min(r.stop, c.stop)) for r, c in zip(region, chunk))
            with self._lock:
                if self.failure is not None:
                    return
                gathering = self._gathering[level].get(index)
                if gathering is None:
                    gathering = _Gathering(tuple(c.stop - c.start for c in chunk), self.dtype)
                    self._gathering[level][index] = gathering
                    self._bytes += gathering.values.nbytes
                    self.peak_bytes = max(self.peak_bytes, self._bytes)
                over_budget = self._bytes > self.budget_bytes
            if over_budget:
                self.give_up(f"more than {self.budget_bytes / 2**20:.0f} MB of pyramid chunks gathered in part")
                return
            gathering.values[tuple(slice(i.start - c.start, i.stop - c.start) for i, c in zip(inside, chunk))] = \
                piece[tuple(slice(i.start - r.start, i.stop - r.start) for i, r in zip(inside, region))]
            with self._lock:
                if self.failure is not None:
                    return
                gathering.missing -= int(np.prod([i.stop - i.start for i in inside]))
                complete = gathering.missing == 0
                if complete:
                    del self._gathering[level][index]
                    self._bytes -= gathering.values.nbytes
            if complete:
                self.targets[level - 1][chunk] = gathering.values
                self._add(level, chunk, gathering.values)

    def _chunk_indices(self, level: int, region: tuple[slice, ...]) -> Iterable[Index]:
        chunks = self.chunks[level]
        return itertools.product(*(range(r.start // c, -(-r.stop // c)) for r, c in zip(region, chunks)))

    def _chunk_region(self, level: int, index: Index) -> tuple[slice, ...]:
        return tuple(
            slice(i * c, min((i + 1) * c, n)) for i, c, n in zip(index, self.chunks[level], self.shapes[level])
        )
