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

from collections.abc import Sequence

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
    reader = GraphWindowReader(data)
    for start, stop in zip(edges[:-1], edges[1:], strict=True):
        window = (slice(0, depth), slice(start, stop), slice(0, columns))
        if factor == 1:  # the band straight into its rows (no copy of it)
            reader.read(window, out=out[:, start:stop])
            continue
        band = reader.read(window).astype(np.float32, copy=False)
        out[:, start // factor : -(-stop // factor)] = block_mean_of_block(
            band, (1, factor, factor), (1.0, 1.0, 1.0), data.shape, [(0, depth), (start, stop), (0, columns)])
    return out


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
