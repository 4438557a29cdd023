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
    _read_bands(GraphWindowReader(data), 0, edges, factor, out)
    return out


def read_plane_batches(data: da.Array, batch: int, factor: int = 1, workers: int = 1) -> Iterator[np.ndarray]:
    """``read_planes(data[j : j + batch], factor, workers)`` for ``j`` in ``range(0, len(data), batch)``: the same
    values, a batch at a time.

    On the calling thread (``workers`` 1) every batch runs from the graph of
    the whole of ``data``, built once, whose blocks straddling two batches are
    computed once (announced: :meth:`~linumpy.stack.graph_reader.GraphWindowReader.expect`).

    Examples
    --------
    >>> x = da.from_array(np.arange(48, dtype=np.float32).reshape(3, 4, 4), chunks=(2, 2, 2))
    >>> [b.shape for b in read_plane_batches(x, 2, 2)]
    [(2, 2, 2), (1, 2, 2)]
    """
    starts = range(0, len(data), batch)
    if workers > 1:
        for start in starts:
            yield read_planes(data[start : start + batch], factor, workers)
        return
    reader = GraphWindowReader(data)
    edges = band_edges(data.chunks[1], factor)
    for start in starts:
        for low, high in zip(edges[:-1], edges[1:], strict=True):
            reader.expect((slice(start, min(start + batch, len(data))), slice(low, high), slice(0, data.shape[2])))
    for start in starts:
        out = np.empty((min(batch, len(data) - start), -(-data.shape[1] // factor), -(-data.shape[2] // factor)),
                       np.float32)
        _read_bands(reader, start, edges, factor, out)
        yield out


def _read_bands(reader: GraphWindowReader, first: int, edges: Sequence[int], factor: int, out: np.ndarray) -> None:
    """Planes ``first..first + len(out) - 1`` of ``reader``'s array into ``out``, block-averaged by ``factor``,
    one band of rows (between consecutive ``edges``) at a time."""
    depth, columns = len(out), reader.shape[2]
    for start, stop in zip(edges[:-1], edges[1:], strict=True):
        window = (slice(first, first + depth), slice(start, stop), slice(0, columns))
        if factor == 1:  # the band straight into its rows (no copy of it)
            reader.read(window, out=out[:, start:stop])
            continue
        band = reader.read(window).astype(np.float32, copy=False)
        out[:, start // factor : -(-stop // factor)] = block_mean_of_block(
            band, (1, factor, factor), (1.0, 1.0, 1.0), reader.shape,
            [(first, first + depth), (start, stop), (0, columns)])


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
