"""Lateral blocks of a ``(z, y, x)`` volume that hold whole A-lines.

Per-A-line work needs the full depth in every block; the lateral block size
is chosen so that one block stays within a fixed memory budget whatever the
slice size, and blocks are visited one at a time or by a small thread pool
(optionally with a halo for lateral filters).

Blocks are smaller than the storage chunks and carry a halo, so they are
visited chunk by chunk (``group``) and read through a :class:`ChunkColumnCache`
that decodes each storage chunk column once while it stays in a bounded cache.
Volumes are read straight from storage (a :class:`linumpy.io.zarr.StoredArray`)
or, for computed inputs, from a lazy dask array.
"""

from __future__ import annotations

import bisect
import contextlib
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np

from linumpy.dask_arrays import is_dask_array
from linumpy.parallel import ordered_map as map_ordered  # noqa: F401  (the blocks' pipeline)
from linumpy.resample import block_mean_of_block

#: A lateral window ``(y0, y1, x0, x1)`` of one chunk column, in the column's A-lines.
Window = tuple[int, int, int, int]

#: Bytes of float32 input per block (the working set is a few times this).
BLOCK_BUDGET_BYTES = 16 * 2**20
#: Candidate lateral block sizes, largest first (powers of two keep chunk grids aligned).
BLOCK_SIZES = (256, 128, 64, 32, 16)
#: Bytes of decoded float32 chunk columns kept by :class:`ChunkColumnCache`.
CACHE_BUDGET_BYTES = 512 * 2**20
#: Reads after the next one whose columns :meth:`ChunkColumnCache.prefetching` decodes already (further
#: ahead once the reads have begun, as far as the cache holds the columns, see there).
PREFETCH_READS = 2
#: Reads started last whose columns announced reads still count as in use (the worker threads may be copying them).
IN_FLIGHT_READS = 2
#: Seconds between the checks of a prefetch waiting for its ``after`` event that its ``with`` has not ended.
AFTER_POLL_S = 0.05
#: An evicted column's part that announced reads still need is kept when it is at most this fraction of the column
#: (and all kept parts at most this fraction of the cache's columns): e.g. the halo rows the next group reads again.
KEPT_PART_FRACTION = 0.25


def lateral_block_size(depth: int, budget_bytes: int = BLOCK_BUDGET_BYTES) -> int:
    """Largest size ``b`` in :data:`BLOCK_SIZES` with ``depth * b * b`` float32 within budget.

    Examples
    --------
    >>> lateral_block_size(100), lateral_block_size(1000)
    (128, 64)
    """
    for size in BLOCK_SIZES:
        if depth * size * size * 4 <= budget_bytes:
            return size
    return BLOCK_SIZES[-1]


@dataclass(frozen=True)
class LateralBlock:
    """One block: ``inner`` is what it owns, ``outer`` adds the halo (clipped to the volume)."""

    inner: tuple[slice, slice]
    outer: tuple[slice, slice]

    @property
    def inner_in_outer(self) -> tuple[slice, slice]:
        """``inner`` relative to the start of ``outer``."""
        return tuple(
            slice(i.start - o.start, i.stop - o.start) for i, o in zip(self.inner, self.outer)
        )

    @property
    def origin(self) -> tuple[int, int]:
        """(y, x) of the first A-line of ``inner``."""
        return self.inner[0].start, self.inner[1].start


def lateral_blocks(
    shape_yx: tuple[int, int], size: int, halo: int = 0, group: tuple[int, int] | None = None
) -> Iterator[LateralBlock]:
    """Visit a ``(y, x)`` extent in blocks of ``size`` with a ``halo``.

    Blocks are visited row-major; with ``group`` (e.g. the storage chunk
    shape), group by group (row-major), and inside each group column by
    column, so that consecutive blocks read the same chunks. Blocks never
    straddle a group boundary.

    Examples
    --------
    >>> [b.inner for b in lateral_blocks((3, 5), 4)]
    [(slice(0, 3, None), slice(0, 4, None)), (slice(0, 3, None), slice(4, 5, None))]
    >>> [b.origin for b in lateral_blocks((4, 4), 2, group=(4, 4))]
    [(0, 0), (2, 0), (0, 2), (2, 2)]
    """
    n_y, n_x = shape_yx
    group_y, group_x = group or (size, size)
    for gy in range(0, n_y, group_y):
        for gx in range(0, n_x, group_x):
            gy1, gx1 = min(gy + group_y, n_y), min(gx + group_x, n_x)
            for x0 in range(gx, gx1, size):
                for y0 in range(gy, gy1, size):
                    y1, x1 = min(y0 + size, gy1), min(x0 + size, gx1)
                    yield LateralBlock(
                        inner=(slice(y0, y1), slice(x0, x1)),
                        outer=(slice(max(0, y0 - halo), min(n_y, y1 + halo)),
                               slice(max(0, x0 - halo), min(n_x, x1 + halo))),
                    )


def count_blocks(shape_yx: tuple[int, int], size: int) -> int:
    """Number of blocks :func:`lateral_blocks` visits (without ``group``)."""
    return -(-shape_yx[0] // size) * -(-shape_yx[1] // size)


def bin_laterally(volume: np.ndarray, factor: int) -> np.ndarray:
    """Mean of every ``factor`` x ``factor`` group of A-lines, as float32.

    The lateral extent is first padded (edge values repeated) to a multiple of
    ``factor``; ``factor`` 1 returns the volume (as float32). The arithmetic is
    the pyramid's (:func:`linumpy.resample.block_mean_of_block`), so binning a
    float32 volume by 2 gives exactly level 1 of the pyramid linumpy stores
    with it (see :func:`stored_binned_level`).

    Examples
    --------
    >>> bin_laterally(np.arange(12.0).reshape(1, 3, 4), 2)[0].tolist()
    [[2.5, 4.5], [8.5, 10.5]]
    """
    volume = np.asarray(volume, np.float32)
    if factor == 1:
        return volume
    pad_y, pad_x = (-volume.shape[1]) % factor, (-volume.shape[2]) % factor
    if pad_y or pad_x:
        volume = np.pad(volume, ((0, 0), (0, pad_y), (0, pad_x)), mode="edge")
    return block_mean_of_block(volume, (1, factor, factor), (1.0, 1.0, 1.0), volume.shape,
                               [(0, n) for n in volume.shape])


def stored_binned_level(path: str | os.PathLike, volume: Any, factor: int) -> Any | None:
    """Level 1 of a stored image when it holds ``bin_laterally(level 0, factor)`` exactly, else None.

    That is when linumpy's block mean made the pyramid (``type`` mean,
    method ``linumpy.resample.block_mean``, factors ``(1, 2, 2)``),
    ``factor`` is 2 and both levels are float32 of the expected shapes:
    reading it instead of binning level 0 decodes a quarter of the bytes.
    """
    if factor != 2 or is_dask_array(volume) or np.dtype(volume.dtype) != np.float32:
        return None
    from linumpy.io import ngff
    from linumpy.io.zarr import open_omezarr_level

    image = ngff.parse_image(path)
    metadata = image.method_metadata or {}
    if (image.method != "mean" or metadata.get("method") != "linumpy.resample.block_mean"
            or list(metadata.get("factors", ())) != [1, 2, 2] or len(image.levels) < 2):
        return None
    level, _ = open_omezarr_level(path, 1)
    expected = (volume.shape[0], -(-volume.shape[1] // 2), -(-volume.shape[2] // 2))
    if tuple(level.shape) != expected or np.dtype(level.dtype) != np.float32:
        return None
    return level


def expand_laterally(image: np.ndarray, factor: int, shape: tuple[int, int]) -> np.ndarray:
    """Undo :func:`bin_laterally` for a 2D map: repeat every pixel ``factor`` x ``factor`` times, crop to ``shape``.

    Examples
    --------
    >>> expand_laterally(np.array([[1, 2]]), 2, (2, 3)).tolist()
    [[1, 1, 2], [1, 1, 2]]
    """
    if factor == 1:
        return image
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)[: shape[0], : shape[1]]


class ChunkColumnCache:
    """Read lateral regions of whole A-lines from a lazy ``(z, y, x)`` array as float32.

    Every storage chunk column (all depths of one lateral chunk) is decoded
    once (and binned, see below) and kept in a least-recently-used cache of at
    most ``max(2, budget_bytes / column bytes)`` columns, so overlapping reads
    (halos, blocks smaller than a chunk) do not decode the same chunks again.
    Memory is bounded by the cache, whatever the slice size. Thread-safe: a
    column another thread is decoding is waited for, not decoded twice. Visit the blocks in the
    order of :meth:`block_group` to make the most of the cache, and announce that order with
    :meth:`prefetching` so that the columns are decoded before the reads ask for them.

    Parameters
    ----------
    volume : StoredArray or dask.array.Array, shape (z, y, x)
        As :func:`linumpy.io.zarr.open_omezarr_level` gives it (or a dask
        array chunked like the storage).
    budget_bytes : int
    binning : int
        Serve the volume binned ``binning`` x ``binning`` laterally
        (:func:`bin_laterally`); regions are then in binned A-lines. Use
        :func:`binning_fits` to check that the chunks allow it.
    binned : StoredArray, optional
        The volume already binned (:func:`stored_binned_level`): columns are
        read from it instead of binning the volume's.
    """

    def __init__(
        self, volume: Any, budget_bytes: int = CACHE_BUDGET_BYTES, binning: int = 1, binned: Any | None = None
    ) -> None:
        if not binning_fits(volume, binning):
            raise ValueError(f"chunks {chunk_shape(volume)} cannot be binned by {binning}")
        self.volume = volume
        self.binning = binning
        self.binned = binned
        if binned is None:
            self.source_chunk_yx = tuple(int(c) for c in chunk_shape(volume)[1:3])
            self.chunk_yx = tuple(-(-c // binning) for c in self.source_chunk_yx)
        else:
            self.chunk_yx = tuple(int(c) for c in chunk_shape(binned)[1:3])
            self.source_chunk_yx = tuple(c * binning for c in self.chunk_yx)
        column_bytes = 4 * volume.shape[0] * self.chunk_yx[0] * self.chunk_yx[1]
        self.capacity = max(2, budget_bytes // max(1, column_bytes))
        self.column_bytes = column_bytes
        self._columns: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        # the announced reads' windows of every column, and the parts of evicted columns they still need
        self._plan: dict[tuple[int, int], list[tuple[int, Window]]] = {}
        self._plan_reads: dict[tuple[int, int], list[int]] = {}  # the reads of each column in _plan, in order
        self._kept: dict[tuple[int, int], tuple[Window, np.ndarray]] = {}
        self._lock = threading.Lock()
        self._decoding: dict[tuple[int, int], Future] = {}  # columns being decoded, by key
        self._reads = threading.Condition()  # counts the reads started (see prefetching)
        self._started = 0

    def read(self, region_yx: tuple[slice, slice]) -> np.ndarray:
        """The float32 ``(z, y, x)`` block of ``volume[:, region_yx]`` (slices with explicit bounds), a new array."""
        with self._reads:
            self._started += 1
            self._reads.notify_all()
        (y0, y1), (x0, x1) = ((s.start, s.stop) for s in region_yx)
        (c_y, c_x) = self.chunk_yx
        out = np.empty((self.volume.shape[0], y1 - y0, x1 - x0), np.float32)
        for (cy, cx), (a, b, c, d) in self._windows(region_yx):
            piece = self._kept_part(cy, cx, (a, b, c, d))
            if piece is None:
                piece = self._column(cy, cx)[:, a:b, c:d]
            out[:, cy * c_y + a - y0 : cy * c_y + b - y0, cx * c_x + c - x0 : cx * c_x + d - x0] = piece
        return out

    def _windows(self, region_yx: Sequence[slice]) -> list[tuple[tuple[int, int], Window]]:
        """The chunk columns ``(cy, cx)`` a read of ``region_yx`` touches, in the order it reads them, each with
        the window it reads of that column (``(y0, y1, x0, x1)`` in the column)."""
        (y0, y1), (x0, x1) = ((s.start, s.stop) for s in region_yx)
        (c_y, c_x) = self.chunk_yx
        return [((cy, cx), (max(y0, cy * c_y) - cy * c_y, min(y1, (cy + 1) * c_y) - cy * c_y,
                            max(x0, cx * c_x) - cx * c_x, min(x1, (cx + 1) * c_x) - cx * c_x))
                for cy in range(y0 // c_y, -(-y1 // c_y)) for cx in range(x0 // c_x, -(-x1 // c_x))]

    def _kept_part(self, cy: int, cx: int, window: Window) -> np.ndarray | None:
        """``window`` of column ``(cy, cx)`` from its kept part, if the column is not cached and the part holds it."""
        a, b, c, d = window
        with self._lock:
            if (cy, cx) in self._columns or (cy, cx) not in self._kept:
                return None
            (ka, kb, kc, kd), part = self._kept[(cy, cx)]
        if ka <= a and b <= kb and kc <= c and d <= kd:
            return part[:, a - ka : b - ka, c - kc : d - kc]
        return None

    def _victim(self, new: tuple[int, int]) -> tuple[int, int]:
        """The cached column to evict (the lock held): the least recently used one, or, while reads are
        announced, the one whose next read is the furthest (none: the furthest of all; ties: the least
        recently used), so that a column decoded ahead never pushes out one that an earlier read needs."""
        if not self._plan:
            return next(iter(self._columns))
        return max((key for key in self._columns if key != new), key=self._next_read)

    def _next_read(self, key: tuple[int, int]) -> float:
        """The first announced read of column ``key`` not yet started (or in flight), inf if none (the lock held)."""
        reads = self._plan_reads.get(key, ())
        position = bisect.bisect_left(reads, max(0, self._started - IN_FLIGHT_READS))
        return reads[position] if position < len(reads) else math.inf

    def _has_room(self) -> bool:
        """Whether a column can be decoded without evicting one that an announced read still needs."""
        with self._lock:
            return (len(self._columns) + len(self._decoding) < self.capacity
                    or any(self._next_read(key) == math.inf for key in self._columns))

    def _keep_part(self, key: tuple[int, int], column: np.ndarray) -> None:
        """On eviction (the lock held): keep the part of ``column`` that the reads not yet started need, if small."""
        later = [window for index, window in self._plan.get(key, ()) if index >= self._started]
        if not later:
            return
        a, b = min(w[0] for w in later), max(w[1] for w in later)
        c, d = min(w[2] for w in later), max(w[3] for w in later)
        size = column[:, a:b, c:d].nbytes
        kept = sum(part.nbytes for _, part in self._kept.values())
        if (size <= KEPT_PART_FRACTION * column.nbytes
                and kept + size <= KEPT_PART_FRACTION * self.capacity * self.column_bytes):
            self._kept[key] = ((a, b, c, d), column[:, a:b, c:d].copy())

    @contextlib.contextmanager
    def prefetching(
        self, regions: Iterable[Sequence[slice]], ahead: int = PREFETCH_READS, *,
        after: threading.Event | None = None, done: threading.Event | None = None,
    ) -> Iterator[None]:
        """Decode the chunk columns of the coming reads in a background thread (inside the ``with``).

        ``regions``: the regions that :meth:`read` will be asked for, in that
        order; the columns of the next read to start and of the ``ahead`` reads
        after it are decoded (in the order the reads touch them). Further
        ahead, a column is decoded when the columns of the reads up to its own
        (from those in flight) fit the cache and the cache has a free place or
        a column that no announced read needs any more (while reads are
        announced, the column evicted is the one read again the latest,
        :meth:`_victim`): a column decoded early never pushes out one that an
        earlier read needs, and the decodes of a new chunk column of blocks are
        spread over the blocks before it instead of being waited for (session
        perf33). A prefetch that waits for another (``after``, whose pass may
        still hold its cache) goes only ``ahead`` reads ahead until its reads
        begin. When the cache holds every column the reads touch (with those
        it already holds), nothing decoded early can be evicted before its
        read: all of them are then decoded as fast as the thread goes, whatever ``ahead``.
        The workers then seldom wait for a decode another worker started, nor
        for the chunk files to be read: the decodes overlap their computation.
        The values read are the same; a column that fails to decode is left to
        the read that needs it (which raises the error). While the ``with``
        lasts, a column evicted from the cache leaves behind the part that the
        reads not yet started need when it is small (:data:`KEPT_PART_FRACTION`:
        the halo rows the next group of blocks reads again), which serves them
        instead of a second decode. ``after``: the thread
        starts decoding once this event is set (another prefetch's ``done``:
        one pass's columns are decoded, then the next pass's first ones);
        ``done`` is set when the thread has gone through its columns or stopped.
        """
        needs = [(index, key, window) for index, region in enumerate(regions)
                 for key, window in self._windows(region)]
        with self._lock:
            held = set(self._columns)
            self._plan = {}
            for index, key, window in needs:
                self._plan.setdefault(key, []).append((index, window))
            self._plan_reads = {key: [index for index, _ in reads] for key, reads in self._plan.items()}
        if len(held | {key for _, key, _ in needs}) <= self.capacity:
            ahead = len(needs)
        need_reads = [index for index, _, _ in needs]
        stop = threading.Event()

        def cache_holds(position: int) -> bool:
            """Whether the columns of the reads from those in flight to the one of ``needs[position]`` fit the cache."""
            start = bisect.bisect_left(need_reads, max(0, self._started - IN_FLIGHT_READS))
            return len({key for _, key, _ in needs[start : position + 1]}) <= self.capacity

        def may_decode(position: int) -> bool:
            index = needs[position][0]
            return (stop.is_set() or self._started + ahead >= index
                    or ((after is None or self._started > 0) and cache_holds(position) and self._has_room()))

        def run() -> None:
            try:
                while after is not None and not after.wait(AFTER_POLL_S):
                    if stop.is_set():
                        return
                for position, (_, key, window) in enumerate(needs):
                    with self._reads:
                        self._reads.wait_for(lambda position=position: may_decode(position))
                    if stop.is_set():
                        return
                    if self._kept_part(*key, window) is not None:
                        continue
                    try:
                        self._column(*key)
                    except Exception:  # the read that needs this column raises it
                        return
            finally:
                if done is not None:
                    done.set()

        with self._reads:
            self._started = 0
        thread = threading.Thread(target=run, name="linumpy-prefetch", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            with self._reads:
                self._reads.notify_all()
            thread.join()
            with self._lock:
                self._plan, self._plan_reads, self._kept = {}, {}, {}

    def block_group(self, size: int) -> tuple[int, int]:
        """The ``group`` of :func:`lateral_blocks` (blocks of ``size``, in volume A-lines) that suits the cache.

        A group is ``rows`` storage chunks tall and one wide, its blocks
        visited column by column: with halos of less than a chunk, one column
        of blocks touches ``rows + 2`` chunk rows of two chunk columns, which
        the cache holds for ``rows = capacity // 2 - 2``; every chunk is then
        decoded about ``1 + 1 / rows`` times: the row below a group is decoded
        for the group's halo and again for the next group, while the halo rows
        the next group reads of the row above come from the part of it kept when
        it was evicted (reads announced with :meth:`prefetching`).
        """
        rows = max(1, self.capacity // 2 - 2)
        chunk_y, chunk_x = self.source_chunk_yx
        return (-(-rows * chunk_y // size) * size, -(-chunk_x // size) * size)

    def _column(self, cy: int, cx: int) -> np.ndarray:
        key = (cy, cx)
        with self._lock:
            if key in self._columns:
                self._columns.move_to_end(key)
                return self._columns[key]
            decoding = self._decoding.get(key)
            if decoding is None:
                decoding = self._decoding[key] = Future()
                owner = True
            else:
                owner = False
        if not owner:  # another thread is decoding it: wait for its result instead of decoding it again
            return decoding.result()
        try:
            column = self._decode(cy, cx)
        except BaseException as error:
            with self._lock:
                del self._decoding[key]
            decoding.set_exception(error)
            raise
        with self._lock:
            self._columns[key] = column
            del self._decoding[key]
            while len(self._columns) > self.capacity:
                victim = self._victim(key)
                self._keep_part(victim, self._columns.pop(victim))
        decoding.set_result(column)
        return column

    def _decode(self, cy: int, cx: int) -> np.ndarray:
        """Chunk column ``(cy, cx)``, binned."""
        if self.binned is None:
            (c_y, c_x) = self.source_chunk_yx
            region = (slice(None), slice(cy * c_y, (cy + 1) * c_y), slice(cx * c_x, (cx + 1) * c_x))
            return bin_laterally(read_block(self.volume, region), self.binning)
        (c_y, c_x) = self.chunk_yx
        region = (slice(None), slice(cy * c_y, (cy + 1) * c_y), slice(cx * c_x, (cx + 1) * c_x))
        return read_block(self.binned, region)


def count_nonzero(values: np.ndarray) -> int:
    """Number of nonzero values of a numeric array, counted with the GIL released.

    ``np.count_nonzero`` of a float array tests value by value while holding
    the GIL (about 7 ms for a 150 x 128 x 128 float32 block, during which the
    other worker threads cannot run Python); comparing first (a ufunc, which
    releases it) and counting the booleans takes about 1 ms.

    Examples
    --------
    >>> count_nonzero(np.array([0.0, 1.5, -2.0, 0.0], np.float32))
    2
    """
    return int(np.count_nonzero(np.not_equal(values, 0)))


def read_block(volume: Any, region: tuple[slice, ...]) -> np.ndarray:
    """Load one region of a stored (:class:`~linumpy.io.zarr.StoredArray`) or lazy (dask) array.

    A stored array decodes the chunks the region touches in this thread; a
    dask array is computed one storage chunk at a time (bounded memory).
    """
    if is_dask_array(volume):
        return np.asarray(volume[region].compute(scheduler="synchronous"))
    return np.asarray(volume[region])


def chunk_shape(volume: Any) -> tuple[int, ...]:
    """Storage chunk shape of a stored or dask array (dask: its largest block)."""
    return tuple(volume.chunksize) if is_dask_array(volume) else tuple(volume.chunks)


def binning_fits(volume: Any, binning: int) -> bool:
    """Whether binning every storage chunk column alone equals binning the whole volume.

    True when every lateral chunk size is a multiple of ``binning`` (or the
    axis is a single chunk).
    """
    if is_dask_array(volume):
        return all(len(chunks) == 1 or chunks[0] % binning == 0 for chunks in volume.chunks[1:3])
    return all(c >= n or c % binning == 0 for c, n in zip(volume.chunks[1:3], volume.shape[1:3]))
