"""Decode a run of items of a Blosc chunk file: only the Blosc blocks that hold them.

A Blosc (version 1 frame) chunk is compressed in blocks of ``blocksize``
bytes (512 KiB for linumpy's ``blosc-lz4`` and ``lz4``, 32 KiB for ``zstd``:
a few planes of a ``(64, 128, 128)`` float32 chunk), each on its own, and its
header lists where every block starts. A run of items (a few planes of a C
order chunk) is decoded from the blocks that hold it by c-blosc's
``blosc_getitem``, after reading from the file just the header, the block
starts and those blocks' bytes: the same values as decoding the whole chunk
and slicing it. The stack reads a few top planes of each slice several
times (rotation, registration, boundary ratios); whole chunks of 64 planes
decoded each time were about a quarter of its pair estimation's CPU time
(``benchmarks/README.md``, session stack47).

numcodecs (0.16) does not wrap ``blosc_getitem``, but its Blosc extension
exports the function of the c-blosc it is built with; it is called through :mod:`ctypes` (no GIL held, a context of
its own per call: threads decode side by side). :func:`available` is False
where the symbol is missing; callers then decode whole chunks (the same
values, more work).
"""

from __future__ import annotations

import ctypes
import functools
import os
from pathlib import Path

import numpy as np

#: Bytes of a Blosc version 1 header: version, version of the codec, flags, typesize, then
#: ``nbytes``, ``blocksize`` and ``cbytes`` as little-endian 32-bit integers.
HEADER_BYTES = 16
#: Header flag of a chunk stored without compression (a copy: no block starts follow the header).
MEMCPYED = 0x02


@functools.cache
def _getitem() -> ctypes._CFuncPtr | None:
    """c-blosc's ``int blosc_getitem(const void *src, int start, int nitems, void *dest)``, or None."""
    try:
        import numcodecs.blosc

        function = ctypes.CDLL(numcodecs.blosc.__file__).blosc_getitem
    except (ImportError, OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
    function.restype = ctypes.c_int
    return function


def available() -> bool:
    """Whether runs of items can be decoded on their own (c-blosc's ``blosc_getitem`` found)."""
    return _getitem() is not None


def block_bytes(path: str | os.PathLike) -> int | None:
    """``blocksize`` of the Blosc chunk file ``path`` (its header's), or None when it has no header."""
    with open(path, "rb") as file:
        header = file.read(HEADER_BYTES)
    if len(header) < HEADER_BYTES:
        return None
    return int.from_bytes(header[8:12], "little")


def decode_items(path: str | os.PathLike, start: int, out: np.ndarray, chunk_bytes: int) -> None:
    """Decode items ``[start, start + out.size)`` of the Blosc chunk file ``path`` into ``out``.

    Parameters
    ----------
    path : path-like
        A Blosc (version 1 frame) chunk file.
    start : int
        First item (not byte) decoded.
    out : numpy.ndarray
        C-contiguous destination; its size is the number of items.
    chunk_bytes : int
        The chunk's decoded size, which the frame must hold.

    Raises
    ------
    ValueError
        When the frame is damaged (the items lie beyond it, truncated, block
        starts out of place) or c-blosc refuses it.
    NotImplementedError
        When the items do not start and end on the frame's own items (its
        typesize): the caller decodes the whole chunk.
    """
    decode = _getitem()
    if decode is None:
        raise ValueError("c-blosc's blosc_getitem is not available")
    if not out.flags.c_contiguous:
        raise ValueError("the destination must be C-contiguous")
    with open(path, "rb", buffering=0) as file:
        header = file.read(HEADER_BYTES)
        if len(header) < HEADER_BYTES:
            raise ValueError("truncated Blosc header")
        typesize = header[3]
        nbytes, blocksize, cbytes = (int.from_bytes(header[i : i + 4], "little") for i in (4, 8, 12))
        first, stop = start * out.itemsize, (start + out.size) * out.itemsize
        if nbytes != chunk_bytes:
            raise ValueError(f"decoded size {nbytes} bytes, expected {chunk_bytes}")
        if cbytes != os.fstat(file.fileno()).st_size or blocksize <= 0 or stop > nbytes:
            raise ValueError(f"a frame of {cbytes} bytes in blocks of {blocksize} in a file of "
                             f"{os.fstat(file.fileno()).st_size} bytes")
        if typesize == 0 or first % typesize or stop % typesize:
            raise NotImplementedError(f"items of {out.itemsize} bytes in a frame of typesize {typesize}")
        encoded = np.empty(cbytes, np.uint8)  # only the parts c-blosc reads are filled
        encoded[:HEADER_BYTES] = np.frombuffer(header, np.uint8)
        if header[2] & MEMCPYED:
            _read_into(file, encoded, HEADER_BYTES + first, HEADER_BYTES + stop)
        else:
            blocks = -(-nbytes // blocksize)
            _read_into(file, encoded, HEADER_BYTES, HEADER_BYTES + 4 * blocks)
            starts = np.frombuffer(encoded, "<i4", blocks, HEADER_BYTES).astype(np.int64)
            last = (stop - 1) // blocksize
            end = int(starts[last + 1]) if last + 1 < blocks else cbytes
            begin = int(starts[first // blocksize])
            if not HEADER_BYTES + 4 * blocks <= begin <= end <= cbytes:
                raise ValueError("damaged Blosc block starts")
            _read_into(file, encoded, begin, end)
    done = decode(encoded.ctypes.data, first // typesize, (stop - first) // typesize, out.ctypes.data)
    if done != out.nbytes:
        raise ValueError(f"blosc_getitem returned {done}, expected {out.nbytes} bytes")


def _read_into(file, buffer: np.ndarray, begin: int, end: int) -> None:
    """Read bytes ``[begin, end)`` of ``file`` into the same bytes of ``buffer``."""
    file.seek(begin)
    view = memoryview(buffer)[begin:end]
    while view.nbytes:
        count = file.readinto(view)
        if not count:
            raise ValueError(f"{Path(file.name).name}: truncated chunk file")
        view = view[count:]
