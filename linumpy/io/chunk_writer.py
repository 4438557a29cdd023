"""Store and load whole chunks of unsharded Zarr arrays straight from their files.

zarr-python spends more CPU per chunk than compressing it (event-loop hops,
codec pipeline, metadata checks). When a writer fills a new, unsharded array
chunk by chunk -- the pyramid levels, or level 0 of ``save_omezarr`` -- each
chunk can simply be encoded with numcodecs and written to its file. The bytes
are what zarr-python itself stores: C order, little endian, edge chunks padded
with the fill value (0), and chunks that hold only the fill value are not
written (zarr's ``write_empty_chunks=False``).

Reading is the mirror image (:class:`ChunkFileReader`): the chunks a region
touches are read from their files, decoded with numcodecs and copied into
the result, in the calling thread (numcodecs releases the GIL, so several
threads read in parallel). A Blosc chunk the region holds whole (e.g. reads
of whole chunk columns) is decoded straight into the result, without the copy; of a Blosc
chunk the region holds a few planes of (first axis), only the Blosc blocks
holding those planes are read and decoded (:mod:`linumpy.io.blosc_items`). Arrays this
reader does not understand (sharded, filters, transposed, Fortran order) are read through zarr-python.
"""

from __future__ import annotations

import itertools
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numcodecs
import numpy as np

from linumpy.io import blosc_items, codecs, page_cache
from linumpy.io.ngff import NgffFormat

if TYPE_CHECKING:
    import zarr


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
        self.encoder = codecs.chunk_encoder(compression, fmt.zarr_format, self.dtype.itemsize)
        self._made: set[Path] = set()  # chunk directories already created (one mkdir each, not one per chunk)

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
        if not (values.flat[0] or values.flat[-1] or values.any()):  # corners first: a full scan only if they are 0
            path.unlink(missing_ok=True)
            return
        if values.shape != self.chunks:
            padded = np.zeros(self.chunks, self.dtype)
            padded[tuple(slice(0, n) for n in values.shape)] = values
            values = padded
        data = np.ascontiguousarray(values, dtype=self.dtype)
        encoded = data.tobytes() if self.encoder is None else self.encoder.encode(data)
        try:
            if path.parent not in self._made:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._made.add(path.parent)
            with open(path, "wb") as file:
                file.write(encoded)
                page_cache.written(file)
        except OSError as error:
            if error.filename is not None:
                raise
            # A failed write (ENOSPC, EDQUOT) names no file: name the chunk.
            raise OSError(error.errno, error.strerror, str(path)) from error


#: Zarr v3 bytes-to-bytes codecs the reader decodes, by name (decoding needs no parameters).
_V3_DECODERS = {"blosc": numcodecs.Blosc, "gzip": numcodecs.GZip, "zstd": numcodecs.Zstd}


class UnsupportedLayout(ValueError):
    """The array's storage layout is one :class:`ChunkFileReader` does not decode."""


class ChunkFileReader:
    """Read regions of an unsharded Zarr array by decoding its chunk files directly.

    Parameters
    ----------
    directory : Path
        The array's directory on the local file system.
    metadata : dict
        Its stored metadata (``.zarray`` or ``zarr.json``).

    Raises
    ------
    UnsupportedLayout
        For layouts read through zarr-python instead (sharding, filters,
        non-default chunk keys, transposes, checksums, Fortran order).

    Notes
    -----
    A chunk that fails to decode raises :class:`ChunkDecodeError` naming its file.
    """

    def __init__(self, directory: Path, metadata: dict):
        self.directory = Path(directory)
        if metadata.get("zarr_format") == 2:
            self._init_v2(metadata)
        else:
            self._init_v3(metadata)
        self.shape = tuple(int(n) for n in metadata["shape"])
        self.ndim = len(self.shape)
        fill = metadata.get("fill_value")
        self.fill_value = 0 if fill is None else fill
        self._decodes_in_place = isinstance(self.decoder, numcodecs.Blosc) and self.dtype.isnative
        self._decodes_planes = self._decodes_in_place and blosc_items.available()

    def _init_v2(self, metadata: dict) -> None:
        if metadata.get("filters") or metadata.get("order", "C") != "C":
            raise UnsupportedLayout("filters or Fortran order")
        if metadata.get("dimension_separator", ".") != "/":
            raise UnsupportedLayout("dot-separated chunk keys")
        compressor = metadata.get("compressor")
        self.decoder = None if compressor is None else numcodecs.get_codec(dict(compressor))
        self.dtype = np.dtype(metadata["dtype"])
        self.chunks = tuple(int(c) for c in metadata["chunks"])
        self._prefix: tuple[str, ...] = ()

    def _init_v3(self, metadata: dict) -> None:
        encoding = metadata.get("chunk_key_encoding", {})
        if encoding.get("name") != "default" or encoding.get("configuration", {}).get("separator", "/") != "/":
            raise UnsupportedLayout("non-default chunk keys")
        pipeline = list(metadata.get("codecs", []))
        if not pipeline or pipeline[0].get("name") != "bytes" or len(pipeline) > 2:
            raise UnsupportedLayout("codec pipeline")
        endian = pipeline[0].get("configuration", {}).get("endian", "little")
        self.decoder = None
        if len(pipeline) == 2:
            if pipeline[1].get("name") not in _V3_DECODERS:
                raise UnsupportedLayout(f"codec {pipeline[1].get('name')}")
            self.decoder = _V3_DECODERS[pipeline[1]["name"]]()
        dtype = np.dtype(metadata["data_type"])
        self.dtype = dtype.newbyteorder("<" if endian == "little" else ">")
        self.chunks = tuple(int(c) for c in metadata["chunk_grid"]["configuration"]["chunk_shape"])
        self._prefix = ("c",)

    def chunk_path(self, index: tuple[int, ...]) -> Path:
        """File of chunk ``index``."""
        return self.directory.joinpath(*self._prefix, *(str(i) for i in index))

    def chunk_files(self, key: Any) -> list[Path]:
        """The files of the chunks ``array[key]`` touches (slices of step 1 and integers), stored or not."""
        region, _ = normalize_region(key, self.shape)
        ranges = [range(r.start // c, -(-r.stop // c)) for r, c in zip(region, self.chunks)]
        return [self.chunk_path(index) for index in itertools.product(*ranges)]

    def __getitem__(self, key) -> np.ndarray:
        """``array[key]`` for slices (step 1) and integers, as a new native-endian array.

        A read that reaches the end of the first axis, where the last chunk is
        stored padded, returns a view of a result with the padding's planes
        after its own: such a chunk held whole along the other axes is then
        decoded in place too (reads of whole chunk columns) instead of into a
        new array copied in part. Of any other Blosc chunk the region holds some
        planes of (first axis), only the Blosc blocks holding those planes are
        decoded (:meth:`_decode_planes`; whole chunks without c-blosc's
        ``blosc_getitem``, :func:`linumpy.io.blosc_items.available`).
        """
        region, integer_axes = normalize_region(key, self.shape)
        shape = tuple(r.stop - r.start for r in region)
        padding = -self.shape[0] % self.chunks[0] if self._decodes_in_place and region[0].stop == self.shape[0] else 0
        out = np.empty((shape[0] + padding, *shape[1:]), self.dtype.newbyteorder("="))
        ranges = [range(r.start // c, -(-r.stop // c)) for r, c in zip(region, self.chunks)]
        for index in itertools.product(*ranges):
            origin = [i * c for i, c in zip(index, self.chunks)]
            inside = tuple(slice(max(r.start, o), min(r.stop, o + c)) for r, o, c in zip(region, origin, self.chunks))
            target = tuple(slice(s.start - r.start, s.stop - r.start) for s, r in zip(inside, region))
            whole = [s.stop - s.start == c for s, c in zip(inside, self.chunks)]
            padded = padding and inside[0] == slice(origin[0], self.shape[0])  # the stored padded last chunk
            if self._decodes_in_place and all(whole[1:]) and (whole[0] or padded):
                destination = out[(slice(target[0].start, target[0].start + self.chunks[0]), *target[1:])]
                if destination.flags.c_contiguous:
                    self._decode_into(index, destination)
                    continue
            if self._decodes_planes and not whole[0]:
                self._decode_planes(index, inside[0].start - origin[0], inside[0].stop - origin[0],
                                    tuple(slice(s.start - o, s.stop - o) for s, o in zip(inside[1:], origin[1:])),
                                    out[target])
                continue
            chunk = self._chunk(index)
            if chunk is None:
                out[target] = self.fill_value
            else:
                out[target] = chunk[tuple(slice(s.start - o, s.stop - o) for s, o in zip(inside, origin))]
        return out[tuple(0 if axis in integer_axes else slice(0, n) for axis, n in enumerate(shape))]

    def _decode_into(self, index: tuple[int, ...], destination: np.ndarray) -> None:
        """Decode Blosc chunk ``index`` into the C-contiguous chunk-sized ``destination`` (fill if not stored)."""
        path = self.chunk_path(index)
        encoded = _stored_bytes(path)
        if encoded is None:
            destination[...] = self.fill_value
            return
        try:
            # Blosc frame header: bytes 4-7 hold the decoded size (a shorter chunk would leave stale values).
            size = int.from_bytes(encoded[4:8], "little")
            if len(encoded) < 16 or size != destination.nbytes:
                raise ValueError(f"decoded size {size} bytes, expected {destination.nbytes}")
            self.decoder.decode(encoded, out=destination)
        except Exception as error:  # numcodecs raises RuntimeError/ValueError for damaged data
            raise ChunkDecodeError(path, error) from error

    def planes_per_block(self) -> int | None:
        """Planes (first axis) a Blosc block of the array's first chunk spans, when reads decode planes in part
        (:meth:`_decode_planes`); else, or without that chunk file, None."""
        if not self._decodes_planes:
            return None
        try:
            block = blosc_items.block_bytes(self.chunk_path((0,) * self.ndim))
        except FileNotFoundError:
            return None
        plane = math.prod(self.chunks[1:]) * self.dtype.itemsize
        return None if not block else -(-block // plane)

    def _decode_planes(self, index: tuple[int, ...], first: int, stop: int, part: tuple[slice, ...],
                       destination: np.ndarray) -> None:
        """Planes ``[first, stop)`` (first axis) of Blosc chunk ``index``, cut to ``part`` along the other axes,
        into ``destination``: only the Blosc blocks holding them decoded (fill if not stored)."""
        path = self.chunk_path(index)
        whole = all(p.stop - p.start == c for p, c in zip(part, self.chunks[1:]))
        planes = destination if whole and destination.flags.c_contiguous else np.empty(
            (stop - first, *self.chunks[1:]), destination.dtype)
        try:
            blosc_items.decode_items(path, first * math.prod(self.chunks[1:]), planes,
                                     math.prod(self.chunks) * planes.itemsize)
        except FileNotFoundError:
            destination[...] = self.fill_value
            return
        except NotImplementedError:  # a frame of another typesize: the whole chunk decoded (the same values)
            planes[...] = self._chunk(index)[first:stop]
        except ValueError as error:  # a damaged frame
            raise ChunkDecodeError(path, error) from error
        if planes is not destination:
            destination[...] = planes[(slice(None), *part)]

    def _chunk(self, index: tuple[int, ...]) -> np.ndarray | None:
        path = self.chunk_path(index)
        encoded = _stored_bytes(path)
        if encoded is None:
            return None
        try:
            raw = encoded if self.decoder is None else self.decoder.decode(encoded)
            return np.frombuffer(raw, self.dtype).reshape(self.chunks)
        except Exception as error:  # numcodecs raises RuntimeError/ValueError for damaged data
            raise ChunkDecodeError(path, error) from error


def _stored_bytes(path: Path) -> bytes | None:
    """The encoded bytes of chunk file ``path`` (its pages dropped when :func:`page_cache.enabled`), None if not stored."""
    try:
        with open(path, "rb") as file:
            encoded = file.read()
            page_cache.read(file)
    except FileNotFoundError:
        return None
    return encoded


class ChunkDecodeError(Exception):
    """A chunk file that does not decode; ``path`` names it."""

    def __init__(self, path: Path, error: Exception):
        super().__init__(f"{path}: {type(error).__name__}: {error}")
        self.path, self.error = path, error


class UnsupportedIndex(IndexError, TypeError):
    """An index that is not an integer or a step-1 slice.

    An ``IndexError`` for the writers; a ``TypeError`` too, so that the direct
    reader's caller hands such an index to zarr-python instead.
    """


def normalize_region(key: Any, shape: tuple[int, ...]) -> tuple[tuple[slice, ...], tuple[int, ...]]:
    """Slices (step 1, within ``shape``) of an index, and the axes it gave as integers.

    Examples
    --------
    >>> normalize_region((1, ..., slice(2, None)), (3, 4, 5))
    ((slice(1, 2, None), slice(0, 4, None), slice(2, 5, None)), (0,))
    """
    key = key if isinstance(key, tuple) else (key,)
    if key.count(Ellipsis) > 1:
        raise IndexError("at most one ... in a region")
    if Ellipsis in key:
        i = key.index(Ellipsis)
        key = key[:i] + (slice(None),) * (len(shape) - len(key) + 1) + key[i + 1 :]
    if len(key) > len(shape):
        raise IndexError(f"region {key} has too many axes for shape {shape}")
    key = key + (slice(None),) * (len(shape) - len(key))
    region, integer_axes = [], []
    for axis, (k, n) in enumerate(zip(key, shape)):
        if isinstance(k, (int, np.integer)):
            if not -n <= k < n:
                raise IndexError(f"index {k} is out of bounds for an axis of size {n}")
            k, integer_axes = slice(int(k) % n, int(k) % n + 1), [*integer_axes, axis]
        if not isinstance(k, slice):
            raise UnsupportedIndex(f"regions take slices or integers, got {k!r}")
        start, stop, step = k.indices(n)
        if step != 1:
            raise UnsupportedIndex("regions must be contiguous (no slice step)")
        region.append(slice(start, max(start, stop)))
    return tuple(region), tuple(integer_axes)


def store_target(array: zarr.Array, directory: Path, fmt: NgffFormat, compression: str):
    """The fastest safe ``da.store`` target for a new array: direct chunk files unless sharded."""
    if array.shards is None and os.path.isdir(directory):
        return ChunkFileWriter(array, directory, fmt, compression)
    return array
