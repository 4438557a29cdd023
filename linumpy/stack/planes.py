"""Read a few planes of a lazy slice level into one float32 array, one band of rows at a time.

The stack's registration, boundary ratios and rotation search read a few
planes of a slice (raw, re-flattened or turned: a dask array), whole
laterally: on 1792 px wide slices 58 + 12 planes, 0.9 GB. Computing them as
one dask array holds every computed block beside their concatenation, twice
the planes (and the threads' freed blocks stay in the process).
:func:`read_planes` computes one band of source chunk rows at a time into the
output, so what is in flight beside the planes is one band, whatever the width.

On the calling thread (the stack's pair workers, when the pairs run side
by side), the band's tasks run from the graph of the planes read, optimized
and converted once (:class:`~linumpy.stack.graph_reader.GraphWindowReader`),
instead of a dask computation per band, which sliced, optimized and ordered
a new graph every time and ran it through the scheduler. When the pairs run
one at a time (wide slices), each band is still a dask computation on
dask's threads: there the graph reader, one thread a band, was slower (1792
px wide slices, ``benchmarks/README.md``, session stack12).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import dask.array as da
import numpy as np

from linumpy.resample import block_mean, block_mean_of_block
from linumpy.stack.graph_reader import GraphWindowReader


def read_planes(data: da.Array, factor: int = 1, workers: int = 1) -> np.ndarray:
    """All of ``data`` ``(z, y, x)`` as float32, block-averaged laterally by ``factor``, read band by band.

    The same values as ``block_mean(data.astype(float32), (1, factor, factor)).compute()``
    (block means do not depend on the chunking); each band is a run of the
    array's row chunks, cut at multiples of ``factor``.

    Parameters
    ----------
    data : dask.array.Array
        The planes to read, any chunking.
    factor : int
        Lateral block-mean factor (1: the planes as they are).
    workers : int
        Threads sharing the read: 1, the band's tasks run on the calling thread from the planes' graph,
        built once; more, a dask computation per band (the active dask scheduler's threads).

    Returns
    -------
    numpy.ndarray
        ``(z, ceil(y / factor), ceil(x / factor))`` float32.

    Examples
    --------
    >>> x = da.from_array(np.arange(32, dtype=np.float32).reshape(2, 4, 4), chunks=(1, 2, 2))
    >>> read_planes(x, 2)[1].tolist()
    [[18.5, 20.5], [26.5, 28.5]]
    """
    depth, rows, columns = data.shape
    out = np.empty((depth, -(-rows // factor), -(-columns // factor)), np.float32)
    edges = band_edges(data.chunks[1], factor)
    if workers > 1:  # dask's threads share each band
        for start, stop in zip(edges[:-1], edges[1:], strict=True):
            band = block_mean(data[:, start:stop].astype(np.float32), (1, factor, factor))
            out[:, start // factor : -(-stop // factor)] = band.compute()
        return out
    _read_bands(GraphWindowReader(data), data.chunks[1], slice(0, depth), (slice(0, rows), slice(0, columns)), factor,
                out)
    return out


class PlaneReader:
    """Windows of a few planes of one lazy level ``(z, y, x)``, as :func:`read_planes` reads them (the same values).

    On the calling thread (``workers`` 1) every read runs from the level's
    graph, built once, and a block that several announced reads share
    (:meth:`announce`: the batches of one read, the reads of two pairs) is
    computed once, kept between them (within
    :data:`~linumpy.stack.graph_reader.CACHE_BYTES`, beyond it computed
    again). With more ``workers``, each batch is :func:`read_planes` of it.

    Examples
    --------
    >>> reader = PlaneReader(da.from_array(np.arange(48, dtype=np.float32).reshape(3, 4, 4), chunks=(2, 2, 2)))
    >>> [b.tolist() for b in reader.batches((1, 3), (slice(0, 4), slice(2, 4)), 2, 1)]
    [[[[20.5], [28.5]]], [[[36.5], [44.5]]]]
    """

    def __init__(self, data: da.Array, workers: int = 1) -> None:
        self.data = data
        self.workers = workers
        self._reader = GraphWindowReader(data) if workers == 1 else None

    def announce(self, planes: tuple[int, int], window: tuple[slice, slice], factor: int, batch: int) -> None:
        """Announce a later :meth:`batches` of the same arguments (no effect with more than one worker)."""
        if self._reader is None:
            return
        edges = band_edges(_cut_chunks(self.data.chunks[1], window[0]), factor)
        for start in range(*planes, batch):
            for low, high in zip(edges[:-1], edges[1:], strict=True):
                self._reader.expect((slice(start, min(start + batch, planes[1])),
                                     slice(window[0].start + low, window[0].start + high), window[1]))

    def batches(self, planes: tuple[int, int], window: tuple[slice, slice], factor: int, batch: int,
                ) -> Iterator[np.ndarray]:
        """``read_planes(data[(slice(j, j + batch), *window)], factor, workers)`` for ``j`` from ``planes[0]`` by
        ``batch`` to ``planes[1]`` (exclusive)."""
        rows, columns = (w.stop - w.start for w in window)
        for start in range(*planes, batch):
            part = slice(start, min(start + batch, planes[1]))
            if self._reader is None:
                yield read_planes(self.data[(part, *window)], factor, self.workers)
                continue
            out = np.empty((part.stop - part.start, -(-rows // factor), -(-columns // factor)), np.float32)
            _read_bands(self._reader, self.data.chunks[1], part, window, factor, out)
            yield out


def _read_bands(reader: GraphWindowReader, row_chunks: Sequence[int], planes: slice, window: tuple[slice, slice],
                factor: int, out: np.ndarray) -> None:
    """``reader``'s ``planes`` over its lateral ``window`` into ``out``, block-averaged by ``factor``, one band
    of the window's chunk rows (``row_chunks``: the array's) at a time."""
    rows, columns = window
    shape = (len(out), rows.stop - rows.start, columns.stop - columns.start)
    edges = band_edges(_cut_chunks(row_chunks, rows), factor)
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        part = (planes, slice(rows.start + low, rows.start + high), columns)
        if factor == 1:  # the band straight into its rows (no copy of it)
            reader.read(part, out=out[:, low:high])
            continue
        band = reader.read(part).astype(np.float32, copy=False)
        out[:, low // factor : -(-high // factor)] = block_mean_of_block(
            band, (1, factor, factor), (1.0, 1.0, 1.0), shape, [(0, len(out)), (low, high), (0, shape[2])])


def _cut_chunks(chunks: Sequence[int], part: slice) -> list[int]:
    """The chunks of ``part`` of an axis chunked by ``chunks``.

    Examples
    --------
    >>> _cut_chunks((4, 4, 4), slice(2, 9))
    [2, 4, 1]
    """
    borders = np.cumsum((0, *chunks))
    inner = [int(b) for b in borders if part.start < b < part.stop]
    return np.diff([part.start, *inner, part.stop]).tolist()


def band_edges(chunks: Sequence[int], factor: int) -> list[int]:
    """Row edges of the bands: the chunk borders, moved down to multiples of ``factor``.

    Examples
    --------
    >>> band_edges((122, 128, 128, 50), 1)
    [0, 122, 250, 378, 428]
    >>> band_edges((122, 128, 128, 50), 3)
    [0, 120, 249, 378, 428]
    """
    borders = np.cumsum((0, *chunks))
    edges = sorted({int(b) // factor * factor for b in borders[:-1]} | {int(borders[-1])})
    return edges
