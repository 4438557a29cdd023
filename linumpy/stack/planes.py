"""Read a few planes of a lazy slice level into one float32 array, one band of rows at a time.

The stack's registration, boundary ratios and rotation search read a few
planes of a slice (raw, re-flattened or turned: a dask array), whole
laterally: on 1792 px wide slices 58 + 12 planes, 0.9 GB. Computing them as
one dask array holds every computed block beside their concatenation, twice
the planes (and the threads' freed blocks stay in the process).
:func:`read_planes` computes one band of source chunk rows at a time into the
output, so what is in flight beside the planes is one band, whatever the width.

The band's tasks run on the calling thread from the array's graph, built
once (:class:`~linumpy.stack.graph_reader.GraphWindowReader`): a re-flattened
slice's blocks are :data:`~linumpy.stack.windows.DEPTH_BLOCK` planes deep and
each reads a window of the 64-plane source chunks, so a dask computation per
band decoded a source chunk once for every such block (and re-ordered its
graph per band); one run of the band's tasks decodes it once. The calling
threads are the stack's pair workers.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import dask.array as da
import numpy as np

from linumpy.parallel import ordered_map
from linumpy.resample import block_mean_of_block
from linumpy.stack.graph_reader import GraphWindowReader


def read_planes(data: da.Array | GraphWindowReader, factor: int = 1,
                window: Sequence[slice] | None = None, workers: int = 1) -> np.ndarray:
    """``data[window]`` ``(z, y, x)`` as float32, block-averaged laterally by ``factor``, read band by band.

    The same values as ``block_mean(data[window].astype(float32), (1, factor, factor)).compute()``
    (block means do not depend on the chunking); each band is a run of the
    array's row chunks, cut at multiples of ``factor`` from the window's first row.

    Parameters
    ----------
    data : dask.array.Array or GraphWindowReader
        The array (any chunking), or a reader of it (:class:`PlaneReaders`: its graph built once for
        every window read).
    factor : int
        Lateral block-mean factor (1: the planes as they are).
    window : sequence of slice, optional
        ``(z, y, x)`` slices with start and stop (default: the whole array).
    workers : int
        Bands read side by side (at most this many in flight; 1: on the calling thread).

    Returns
    -------
    numpy.ndarray
        ``(z, ceil(y / factor), ceil(x / factor))`` float32 for the window's ``(z, y, x)``.

    Examples
    --------
    >>> x = da.from_array(np.arange(32, dtype=np.float32).reshape(2, 4, 4), chunks=(1, 2, 2))
    >>> read_planes(x, 2)[1].tolist()
    [[18.5, 20.5], [26.5, 28.5]]
    >>> read_planes(x, 1, (slice(1, 2), slice(1, 3), slice(0, 2))).tolist()
    [[[20.0, 21.0], [24.0, 25.0]]]
    """
    reader = data if isinstance(data, GraphWindowReader) else GraphWindowReader(data)
    window = tuple(slice(0, n) for n in reader.shape) if window is None else tuple(window)
    (z0, z1), (y0, y1), (x0, x1) = ((part.start, part.stop) for part in window)
    shape = (z1 - z0, y1 - y0, x1 - x0)
    out = np.empty((shape[0], -(-shape[1] // factor), -(-shape[2] // factor)), np.float32)
    borders = [y0, *(int(b) for b in np.cumsum(reader.chunks[1]) if y0 < b < y1), y1]
    edges = band_edges(np.diff(borders), factor)

    def read_band(rows: tuple[int, int]) -> np.ndarray:
        start, stop = rows
        band = reader.read((window[0], slice(y0 + start, y0 + stop), window[2])).astype(np.float32, copy=False)
        if factor > 1:
            band = block_mean_of_block(band, (1, factor, factor), (1.0, 1.0, 1.0), shape,
                                       [(0, shape[0]), (start, stop), (0, shape[2])])
        return band

    bands = list(zip(edges[:-1], edges[1:], strict=True))
    for (start, stop), band in zip(bands, ordered_map(read_band, bands, workers, ahead=workers), strict=True):
        out[:, start // factor : -(-stop // factor)] = band
    return out


class PlaneReaders:
    """One :class:`~linumpy.stack.graph_reader.GraphWindowReader` per lazy array, built at its first read.

    The stack reads windows of the same slice levels for the rotation search,
    the registration and the boundary ratios; each array's graph is then
    optimized and converted once (about 40 ms a slice level), not for every
    window. Safe to share between threads. :meth:`read` reads ``workers``
    bands side by side (more than one when the stack estimates its slice
    pairs one at a time).

    Examples
    --------
    >>> x = da.arange(8, chunks=3)
    >>> readers = PlaneReaders()
    >>> readers(x) is readers(x)
    True
    """

    def __init__(self, workers: int = 1) -> None:
        self.workers = workers
        self._readers: dict[str, GraphWindowReader] = {}
        self._lock = threading.Lock()

    def __call__(self, data: da.Array) -> GraphWindowReader:
        """The reader of ``data`` (by its dask name)."""
        with self._lock:
            if data.name not in self._readers:
                self._readers[data.name] = GraphWindowReader(data)
            return self._readers[data.name]

    def read(self, data: da.Array, factor: int, window: Sequence[slice]) -> np.ndarray:
        """:func:`read_planes` of ``data[window]`` through its reader, ``workers`` bands side by side."""
        return read_planes(self(data), factor, window, self.workers)


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
