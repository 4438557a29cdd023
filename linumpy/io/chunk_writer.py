"""Store whole chunks of a freshly created Zarr array straight to files.

zarr-python spends more CPU per chunk than compressing it (event-loop hops,
codec pipeline, metadata checks). When a writer fills a new, unsharded array
chunk by chunk -- the pyramid levels, or level 0 of ``save_omezarr`` -- each
chunk can simply be encoded with numcodecs and written to its file. The bytes
are what zarr-python itself stores: C order, little endian, edge chunks padded
with the fill value (0), and chunks that hold only the fill value are not
written (zarr's ``write_empty_chunks=False``).
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import zarr

from linumpy.io import codecs
from linumpy.io.ngff import NgffFormat


class ChunkFileWriter:
    """A ``da.store`` target writing chunk-aligned blocks of one new array.

    Parameters
    ----------
    array : zarr.Array
        The freshly created (empty, unsharded) array.
    directory : Path
        Its directory on the local file system.
    fmt : NgffFormat
        Decides the chunk file names.
    compression : str
        One of :data:`linumpy.io.codecs.COMPRESSIONS`, as the array was created with.
    """

    def __init__(self, array: zarr.Array, directory: Path, fmt: NgffFormat, compression: str):
        if array.shards is not None:
            raise ValueError("ChunkFileWriter writes unsharded arrays only")
        self.shape, self.chunks = tuple(array.shape), tuple(array.chunks)
        self.dtype = np.dtype(array.dtype).newbyteorder("<")
        self.directory, self.format = Path(directory), fmt
        self.encoder = codecs.chunk_encoder(compression, fmt.zarr_format)

    def __setitem__(self, region: tuple[slice, ...], block: np.ndarray) -> None:
        """Write ``block`` into ``region``, which must start and end on chunk borders."""
        starts = [r.start or 0 for r in region]
        if any(s % c for s, c in zip(starts, self.chunks)):
            raise ValueError(f"region {region} does not start on a chunk border of {self.chunks}")
        counts = [-(-n // c) for n, c in zip(block.shape, self.chunks)]
        for offsets in itertools.product(*(range(n) for n in counts)):
            local = tuple(slice(o * c, (o + 1) * c) for o, c in zip(offsets, self.chunks))
            index = tuple(s // c + o for s, c, o in zip(starts, self.chunks, offsets))
            self._write_chunk(index, block[local])

    def _write_chunk(self, index: tuple[int, ...], values: np.ndarray) -> None:
        path = self.directory / self.format.chunk_key(index)
        if not values.any():
            path.unlink(missing_ok=True)
            return
        if values.shape != self.chunks:
            padded = np.zeros(self.chunks, self.dtype)
            padded[tuple(slice(0, n) for n in values.shape)] = values
            values = padded
        data = np.ascontiguousarray(values, dtype=self.dtype)
        encoded = data.tobytes() if self.encoder is None else self.encoder.encode(data)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as file:
                file.write(encoded)
        except OSError as error:
            if error.filename is not None:
                raise
            # A failed write (ENOSPC, EDQUOT) names no file: name the chunk.
            raise OSError(error.errno, error.strerror, str(path)) from error


def store_target(array: zarr.Array, directory: Path, fmt: NgffFormat, compression: str):
    """The fastest safe ``da.store`` target for a new array: direct chunk files unless sharded."""
    if array.shards is None and os.path.isdir(directory):
        return ChunkFileWriter(array, directory, fmt, compression)
    return array
