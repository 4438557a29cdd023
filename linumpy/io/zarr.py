"""Read and write linumpy's OME-Zarr images (see ``docs/omezarr.md``).

The Python API speaks millimetres; files store micrometres. Images are 3D
``(z, y, x)`` or 2D ``(y, x)``. Every writer builds its output under a hidden
temporary sibling and renames it onto the final path once the pyramid and the
metadata are complete, so an interrupted write leaves nothing that looks
finished.

Examples
--------
>>> import dask.array as da
>>> data = da.random.random((100, 512, 512), chunks=(10, 128, 128))
>>> save_omezarr(data, "out.ome.zarr", (0.0015, 0.010, 0.010), chunks=data.chunks)  # doctest: +SKIP
>>> image, resolution = read_omezarr("out.ome.zarr", level=1)  # doctest: +SKIP
>>> image.shape, resolution  # doctest: +SKIP
((100, 256, 256), (0.0015, 0.02, 0.02))
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from linumpy.dask_arrays import is_dask_array
from linumpy.errors import InputError
from linumpy.io import atomic, chunk_writer, codecs, ngff, page_cache, streamed_pyramid
from linumpy.io.options import DEFAULT_N_LEVELS
from linumpy.parallel import default_workers
from linumpy.resample import block_mean, pyramid_edge_weights, resample_to_resolution, resampled_last_weights

if TYPE_CHECKING:  # dask is imported where it is used (linumpy.dask_arrays); zarr-python where it is used
    # (:data:`ZARR_MODULE`: a reader of chunk files never needs it)
    import dask.array as da
    import zarr

logger = logging.getLogger(__name__)

#: zarr-python, imported by the functions that create arrays or open them through it (a tenth of a second or
#: more of imports a step may start on a thread of its own, :func:`linumpy.parallel.import_in_background`,
#: while it does its reading and computing).
ZARR_MODULE = "zarr"

#: Default chunk shapes by number of dimensions (capped by the level shape).
DEFAULT_CHUNKS = {3: (64, 256, 256), 2: (1024, 1024)}
#: Default resolutions (um) of the analysis pyramid.
DEFAULT_ANALYSIS_RESOLUTIONS_UM = (10, 25, 50, 100)
#: An analysis level's last voxel along an axis is written only if the level above covers at least this
#: fraction of its length; 1: only whole voxels, each the mean over the extent its scale and translation give
#: (a partial one, e.g. the volume's deepest 6 um in a 10 um voxel, would be labelled with a centre 2 um below
#: its data and hold fewer of them). Level 0 keeps every voxel; a level keeps at least one.
ANALYSIS_MIN_LAST_COVER = 1.0
#: Relative tolerance under which two resolutions are the same.
RESOLUTION_TOLERANCE = 0.01
#: At most this many voxels of the coarsest level feed the omero window.
_OMERO_SAMPLE = 1_000_000


# --- reading -----------------------------------------------------------------


@dataclass(frozen=True)
class LevelInfo:
    """One pyramid level of an OME-Zarr image (resolutions in millimetres)."""

    path: str
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    shards: tuple[int, ...] | None
    scale_mm: tuple[float, ...]
    translation_mm: tuple[float, ...]


@dataclass(frozen=True)
class OmeZarrInfo:
    """What an OME-Zarr image holds, read from its metadata only.

    Attributes
    ----------
    path : Path
    name : str
        The multiscales name (the file stem for files linumpy writes).
    ngff_version : str
        ``"0.4"`` or ``"0.5"``.
    zarr_format : int
        2 or 3.
    dtype : numpy.dtype
    codec : str
        One of :data:`linumpy.io.codecs.COMPRESSIONS` or a description.
    levels : tuple of LevelInfo
        Level 0 first, squeezed to the spatial axes.
    downsampling : str or None
        The multiscales ``type`` (``"mean"``, ``"area"``).
    attributes : dict
        The ``linumpy`` pipeline attributes (empty if none).
    omero : dict or None
        The display window, if stored.
    """

    path: Path
    name: str
    ngff_version: str
    zarr_format: int
    dtype: np.dtype
    codec: str
    levels: tuple[LevelInfo, ...]
    downsampling: str | None
    attributes: dict[str, Any] = field(default_factory=dict)
    omero: dict[str, Any] | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of level 0."""
        return self.levels[0].shape

    @property
    def chunks(self) -> tuple[int, ...]:
        """Chunk shape of level 0."""
        return self.levels[0].chunks

    @property
    def resolution(self) -> tuple[float, ...]:
        """Voxel size of level 0, millimetres."""
        return self.levels[0].scale_mm

    @property
    def ndim(self) -> int:
        return len(self.shape)


def _array_metadata(path: Path) -> dict[str, Any]:
    for name in ("zarr.json", ".zarray"):
        if (path / name).is_file():
            return ngff.read_json_object(path / name)
    raise InputError(f"{path} is missing (no .zarray or zarr.json); the image is incomplete, rewrite it")


def _codec_of(metadata: dict[str, Any]) -> tuple[str, tuple[int, ...] | None, tuple[int, ...]]:
    """Codec name, shard shape and chunk shape from one array's stored metadata."""
    if metadata.get("zarr_format") == 2:
        return codecs.identify_codec(metadata.get("compressor")), None, tuple(metadata["chunks"])
    chunks = tuple(metadata["chunk_grid"]["configuration"]["chunk_shape"])
    shards = None
    pipeline = metadata.get("codecs", [])
    for codec in pipeline:
        if codec.get("name") == "sharding_indexed":
            shards, chunks = chunks, tuple(codec["configuration"]["chunk_shape"])
            pipeline = codec["configuration"]["codecs"]
    compressors = [c for c in pipeline if c.get("name") not in ("bytes", "transpose", "crc32c")]
    return codecs.identify_codec(compressors[0] if compressors else None), shards, chunks


class StoredArray:
    """One stored level, indexed like numpy (``array[region] -> ndarray``), without dask.

    Chunks are decoded straight from their files in the calling thread
    (:class:`linumpy.io.chunk_writer.ChunkFileReader`; zarr-python for
    layouts it does not read), so several threads read in parallel. A chunk
    that fails to decode raises an :class:`InputError` naming its file.

    The shape, dtype and chunks come from the stored metadata the direct
    reader parsed: zarr-python opens the array (a round trip through its
    event-loop thread, which waits for the GIL whenever another thread holds
    it) only for what the direct reader does not do, on first use.

    Parameters
    ----------
    directory : Path
        The array's directory.
    fmt : ngff.NgffFormat
        The image's format (chunk keys).
    metadata : dict
        The array's stored metadata (``.zarray`` or ``zarr.json``).
    array : zarr.Array, optional
        The array already opened by zarr-python, if it is.

    Attributes
    ----------
    shape, dtype, ndim
        As numpy's.
    chunks : tuple of int
        The storage chunk shape.

    Raises
    ------
    InputError
        Metadata that neither the direct reader nor zarr-python accepts.
    """

    def __init__(self, directory: Path, fmt: ngff.NgffFormat, metadata: dict[str, Any],
                 array: zarr.Array | None = None):
        self.directory, self.format, self._array = directory, fmt, array
        try:  # sharded arrays are an unsupported layout
            self._reader = chunk_writer.ChunkFileReader(directory, metadata)
        except (chunk_writer.UnsupportedLayout, KeyError, TypeError, ValueError):
            self._reader = None
        if self._reader is None:
            source = self.array
            self.shape, self.dtype, self.chunks = source.shape, source.dtype, source.chunks
        else:
            self.shape, self.chunks = self._reader.shape, self._reader.chunks
            self.dtype = self._reader.dtype.newbyteorder("=")  # the reader's arrays are native-endian
        self.ndim = len(self.shape)

    @property
    def array(self) -> zarr.Array:
        """The level opened by zarr-python (on first use)."""
        if self._array is None:
            import zarr

            try:
                self._array = zarr.open_array(str(self.directory), mode="r")
            except (KeyError, TypeError, ValueError) as error:
                raise InputError(f"{self.directory}: malformed array metadata ({type(error).__name__}: {error}); "
                                 "rewrite the image") from None
        return self._array

    def chunk_files(self, key: Any) -> list[Path]:
        """The chunk files ``self[key]`` reads, to announce them ahead (:mod:`linumpy.io.prefetch`); none
        for the layouts zarr-python reads."""
        return [] if self._reader is None else self._reader.chunk_files(key)

    def __getitem__(self, key: Any) -> np.ndarray:
        if self._reader is not None:
            try:
                return self._reader[key]
            except chunk_writer.ChunkDecodeError as error:
                raise InputError(f"{error.path}: corrupted chunk ({error}); rewrite the image") from error.error
            except TypeError:
                pass  # an index the direct reader does not take: zarr-python does
        return self._read_with_zarr(key)

    def _read_with_zarr(self, key: Any) -> np.ndarray:
        """zarr-python's read; a decode failure is traced to the chunk file and named."""
        try:
            return self.array[key]
        except MemoryError:
            raise
        except Exception as error:
            if isinstance(error, OSError) and error.filename:
                raise  # e.g. a permission problem: the message names the file already
            damaged = self._damaged_chunk(key)
            if damaged is None:
                raise
            raise InputError(
                f"{damaged}: corrupted chunk ({type(error).__name__}: {error}); rewrite the image"
            ) from error

    def _damaged_chunk(self, key: Any) -> Path | None:
        """The file of the first chunk in region ``key`` that fails to read alone."""
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (self.ndim - len(key))
        ranges = []
        for k, n, c in zip(key, self.shape, self.chunks):
            if isinstance(k, (int, np.integer)):
                k = slice(int(k) % n, int(k) % n + 1)
            if not isinstance(k, slice):
                return None
            start, stop, _ = k.indices(n)
            ranges.append(range(start // c, -(-max(start + 1, stop) // c)))
        file_block = self.array.shards or self.chunks
        for index in itertools.product(*ranges):
            try:
                self.array[tuple(slice(i * c, (i + 1) * c) for i, c in zip(index, self.chunks))]
            except Exception:
                file_index = tuple(i * c // b for i, c, b in zip(index, self.chunks, file_block))
                return self.directory / self.format.chunk_key(file_index)
        return None

    def to_dask(self, first_axis_block: int | None = None, reads: Callable[[StoredArray], Any] | None = None,
                ) -> da.Array:
        """The level as a lazy dask array chunked like the storage.

        ``first_axis_block``: each chunk split into runs of that many planes
        along the first axis when the chunk files decode planes in part (Blosc
        blocks, :meth:`linumpy.io.chunk_writer.ChunkFileReader.planes_per_block`),
        of a Blosc block's planes where a block holds more: a computation that
        needs a few planes then decodes only the blocks holding them (a chunk
        of ``odd2``'s 98-pixel rows holds 11 planes a block: read whole before
        session fast11d, every run of a few planes decoded its 64). Else (and
        by default) chunked like the storage. ``reads``: what the chunks
        are read through (``reads(self)``: an array-like with this array's
        ``shape``, ``dtype``, ``ndim`` and values, e.g. a cache in front of
        it); default this array.
        """
        import dask.array as da

        chunks: tuple = self.chunks
        per_block = None if first_axis_block is None or self._reader is None else self._reader.planes_per_block()
        run = None if per_block is None else max(first_axis_block, per_block)
        if run is not None and run < self.chunks[0]:
            runs = []
            for start in range(0, self.shape[0], self.chunks[0]):
                size = min(self.chunks[0], self.shape[0] - start)
                runs += [min(run, size - offset) for offset in range(0, size, run)]
            chunks = (tuple(runs), *self.chunks[1:])
        return da.from_array(self if reads is None else reads(self), chunks=chunks, name=False, lock=False,
                             fancy=False, asarray=False)


def _describe_level(image: ngff.ParsedImage, level: ngff.LevelTransform) -> tuple[LevelInfo, np.dtype, str]:
    """One level's LevelInfo, dtype and codec, from its stored array metadata."""
    array_path = image.path / level.path
    metadata = _array_metadata(array_path)
    spatial = image.spatial_axes
    try:
        codec, shards, chunks = _codec_of(metadata)
        dtype = np.dtype(metadata["dtype"] if metadata.get("zarr_format") == 2 else metadata["data_type"])
        info = LevelInfo(
            path=level.path,
            shape=tuple(int(metadata["shape"][i]) for i in spatial),
            chunks=tuple(int(chunks[i]) for i in spatial),
            shards=None if shards is None else tuple(int(shards[i]) for i in spatial),
            scale_mm=level.scale_mm,
            translation_mm=level.translation_mm,
        )
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as error:
        raise InputError(
            f"{array_path}: malformed array metadata ({type(error).__name__}: {error}); rewrite the image"
        ) from None
    return info, dtype, codec


def read_omezarr_info(path: str | os.PathLike) -> OmeZarrInfo:
    """Describe an OME-Zarr image without reading its pixels.

    Parameters
    ----------
    path : path-like
        The ``.ome.zarr`` directory (NGFF 0.4 or 0.5).

    Returns
    -------
    OmeZarrInfo

    Raises
    ------
    InputError
        Missing metadata, not an OME-Zarr, unsupported axes or unit, missing level.
    """
    image = ngff.parse_image(path)
    described = [_describe_level(image, level) for level in image.levels]
    levels = tuple(level for level, _, _ in described)
    _, dtype, codec = described[0]
    return OmeZarrInfo(
        path=image.path,
        name=image.name,
        ngff_version=image.version,
        zarr_format=image.format.zarr_format,
        dtype=dtype,
        codec=codec,
        levels=levels,
        downsampling=image.method,
        attributes=image.linumpy_attrs,
        omero=image.omero,
    )


def _open_level(path: str | os.PathLike, level: int, image: ngff.ParsedImage | None = None,
                ) -> tuple[ngff.ParsedImage, StoredArray]:
    """Parse an image (unless ``image`` is its parsed metadata) and open one level of it."""
    image = ngff.parse_image(path) if image is None else image
    if not 0 <= level < len(image.levels):
        raise InputError(
            f"{image.path} has no level {level} (levels 0-{len(image.levels) - 1}); pass one of those"
        )
    transform = image.levels[level]
    array_path = image.path / transform.path
    stored = StoredArray(array_path, image.format, _array_metadata(array_path))
    if stored.ndim != len(image.axes):
        raise InputError(
            f"{array_path} has {stored.ndim} dimensions but the metadata lists {len(image.axes)} axes; rewrite the file"
        )
    return image, stored


def open_omezarr_level(path: str | os.PathLike, level: int = 0) -> tuple[StoredArray, tuple[float, ...]]:
    """Open one level of a linumpy OME-Zarr image for direct, chunk-wise reading (no dask).

    The streaming steps read whole chunk columns this way: each read decodes
    the chunk files it touches in the calling thread, which is several times
    cheaper than a dask graph per block.

    Parameters
    ----------
    path : path-like
        The ``.ome.zarr`` directory; its axes must be spatial only (as linumpy writes them).
    level : int
        Pyramid level, 0 = full resolution.

    Returns
    -------
    array : StoredArray
        ``array[region]`` gives a numpy array.
    resolution : tuple of float
        Voxel size of that level, millimetres per voxel.

    Raises
    ------
    InputError
        As :func:`read_omezarr`, and for images with a channel or time axis.
    """
    image, stored = _open_level(path, level)
    if stored.ndim != len(image.spatial_axes):
        raise InputError(f"{image.path} has non-spatial axes; convert it with linum_convert_omezarr.py first")
    return stored, image.levels[level].scale_mm


def read_omezarr(path: str | os.PathLike, level: int = 0) -> tuple[da.Array, tuple[float, ...]]:
    """Open one level of an OME-Zarr image lazily.

    Parameters
    ----------
    path : path-like
        The ``.ome.zarr`` directory (NGFF 0.4 or 0.5, any spatial unit; a
        leading channel or time axis of size 1 is squeezed away).
    level : int
        Pyramid level, 0 = full resolution.

    Returns
    -------
    image : dask.array.Array
        ``(z, y, x)`` or ``(y, x)``, chunked like the stored array.
    resolution : tuple of float
        Voxel size of that level, millimetres per voxel.

    Raises
    ------
    InputError
        Missing metadata, not an OME-Zarr, unsupported axes or unit, missing level.

    Examples
    --------
    >>> image, resolution = read_omezarr("mosaic_grid_3d_z00.ome.zarr")  # doctest: +SKIP
    >>> subset = image[0:10, 100:200, 100:200].compute()  # doctest: +SKIP
    """
    return _lazy_level(*_open_level(path, level), level)


def read_omezarr_levels(path: str | os.PathLike, first_axis_block: int | None = None,
                        reads: Callable[[StoredArray], Any] | None = None,
                        ) -> list[tuple[da.Array, tuple[float, ...]]]:
    """Every level of an OME-Zarr image, lazily: :func:`read_omezarr` of each, its metadata parsed once.

    ``first_axis_block``, ``reads``: see :meth:`StoredArray.to_dask` (reads of a few planes decode only those;
    what the chunks are read through).

    Raises
    ------
    InputError
        As :func:`read_omezarr`.
    """
    image = ngff.parse_image(path)
    return [_lazy_level(*_open_level(path, level, image), level, first_axis_block, reads)
            for level in range(len(image.levels))]


def _lazy_level(image: ngff.ParsedImage, stored: StoredArray, level: int, first_axis_block: int | None = None,
                reads: Callable[[StoredArray], Any] | None = None) -> tuple[da.Array, tuple[float, ...]]:
    """One opened level as :func:`read_omezarr` gives it (``first_axis_block``, ``reads``:
    :meth:`StoredArray.to_dask`)."""
    data = stored.to_dask(first_axis_block, reads)
    extra = [i for i in range(stored.ndim) if i not in image.spatial_axes]
    if any(stored.shape[i] != 1 for i in extra):
        names = [image.axes[i].get("name") for i in extra]
        raise InputError(
            f"{image.path}: non-spatial axes {names} have shape {[stored.shape[i] for i in extra]}; "
            "linumpy reads single-channel 3D zyx or 2D yx images only (split the channels first)"
        )
    if extra:
        data = data[tuple(0 if i in extra else slice(None) for i in range(stored.ndim))]
    return data, image.levels[level].scale_mm


# --- writing -----------------------------------------------------------------


def default_chunks(shape: Sequence[int]) -> tuple[int, ...]:
    """The default chunk shape for an image of ``shape``, capped by the shape."""
    return ngff.level_chunks(DEFAULT_CHUNKS[len(shape)], shape)


def _normalize_chunks(chunks: Any, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Accept ``None``, an int, a tuple of ints or dask's tuple of tuples."""
    if chunks is None:
        return default_chunks(shape)
    if isinstance(chunks, int):
        chunks = (chunks,) * len(shape)
    chunks = tuple(c[0] if isinstance(c, (tuple, list)) else c for c in chunks)
    if len(chunks) != len(shape) or any(int(c) < 1 for c in chunks):
        raise InputError(f"chunks {chunks} do not fit shape {shape}: give one positive size per axis")
    return ngff.level_chunks(chunks, shape)


def _check_shape(shape: Sequence[int], path: Path) -> tuple[int, ...]:
    shape = tuple(int(n) for n in shape)
    if len(shape) not in ngff.SPATIAL_AXES or min(shape) < 1:
        raise InputError(
            f"{path}: cannot write shape {shape}; linumpy writes 3D (z, y, x) or 2D (y, x) images with no empty axis"
        )
    return shape


def _check_resolution(resolution: Sequence[float], ndim: int, path: Path) -> tuple[float, ...]:
    resolution = tuple(float(r) for r in resolution)
    if len(resolution) != ndim or not all(math.isfinite(r) and r > 0 for r in resolution):
        raise InputError(
            f"{path}: resolution {resolution} must give {ndim} positive voxel sizes in millimetres"
        )
    return resolution


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"attribute value {value!r} is not JSON-serialisable")


def image_name(path: str | os.PathLike) -> str:
    """The multiscales name of an output: its file name without ``.ome.zarr``."""
    name = Path(path).name
    for suffix in (".ome.zarr", ".zarr"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _aligned_chunks(start: int, stop: int, step: int) -> tuple[int, ...]:
    """Split ``[start, stop)`` at the multiples of ``step`` (storage chunk borders)."""
    borders = [start, *range((start // step + 1) * step, stop, step), stop]
    return tuple(b - a for a, b in zip(borders[:-1], borders[1:]))


def _aligned_to(data: da.Array, region: tuple[slice, ...], block: tuple[int, ...]) -> da.Array:
    """Rechunk ``data`` so each dask block fills whole storage blocks of its region."""
    return data.rechunk(tuple(_aligned_chunks(r.start, r.stop, b) for r, b in zip(region, block)))


def strided_sample(stored: StoredArray, stride: int) -> np.ndarray:
    """``stored[::stride, ::stride, ...]``, read chunk by chunk (one chunk and the sample in memory), without dask."""
    out = np.empty(tuple(-(-n // stride) for n in stored.shape), stored.dtype)
    for index in itertools.product(*(range(-(-n // c)) for n, c in zip(stored.shape, stored.chunks))):
        region, target = [], []
        for i, n, c in zip(index, stored.shape, stored.chunks):
            first, stop = -(-i * c // stride) * stride, min((i + 1) * c, n)  # first sampled index in the chunk
            region.append(slice(first, stop))
            target.append(slice(first // stride, -(-stop // stride)))
        if all(r.start < r.stop for r in region):
            out[tuple(target)] = stored[tuple(region)][(slice(None, None, stride),) * stored.ndim]
    return out


def _computed_with(
    sources: list[da.Array], targets: list, coarsest: StoredArray | da.Array, stride: int, name: str
) -> np.ndarray:
    """Store the dask ``sources`` into ``targets`` and return ``coarsest[::stride, ...]``, in one dask computation."""
    import dask
    import dask.array as da

    from linumpy.io._progress import DaskProgress

    if isinstance(coarsest, StoredArray):
        coarsest = coarsest.to_dask()
    sample = coarsest[(slice(None, None, stride),) * coarsest.ndim]
    stored = da.store(sources, targets, lock=False, compute=False)
    with DaskProgress(f"writing {name}", logger), _thread_pool() as pool:
        _, sample = dask.compute(stored, sample, scheduler="threads", pool=pool)
    return sample


@contextlib.contextmanager
def _thread_pool() -> Iterator[ThreadPoolExecutor]:
    """A dask thread pool that is drained on exit.

    dask's own pool lets ``compute`` return on the first failed task while
    other chunk writes are still running; writes that outlive an abort would
    recreate the temporary it removed. This pool is shut down, and every
    write in flight has returned, before the caller cleans up.
    """
    pool = ThreadPoolExecutor(default_workers())
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def _naming_os_errors(path: Path) -> Iterator[None]:
    """Name ``path`` in an OSError that names no file (zarr's metadata writes on a full disk)."""
    try:
        yield
    except OSError as error:
        if error.filename is not None or error.errno is None:
            raise
        raise OSError(error.errno, error.strerror, str(path)) from error


async def _other_tasks_settled() -> None:
    """Wait for every other task of the running event loop (zarr-python's, which imports asyncio); retrieve
    their errors."""
    import asyncio

    current = asyncio.current_task()
    pending = [task for task in asyncio.all_tasks() if task is not current]
    if not pending:
        return
    done, _ = await asyncio.wait(pending)
    for task in done:
        if not task.cancelled():
            task.exception()  # a failure of a sibling write: the first one is the error reported


def _wait_for_zarr_io() -> None:
    """Block until zarr has no read or write in flight.

    zarr runs the writes of one call concurrently on its own event loop and
    returns on the first failure while the others still run (a full disk
    fails them all); a temporary removed before they end is recreated or
    breaks the removal. Their errors are retrieved here, so asyncio does not
    print them again at exit.
    """
    from zarr.core import sync as zarr_sync

    zarr_sync.sync(_other_tasks_settled())


class _Sliceable:
    """Hide an in-memory array from dask, which would otherwise copy it whole."""

    def __init__(self, array: Any):
        self.array = array
        self.shape, self.dtype, self.ndim = array.shape, array.dtype, array.ndim

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.asarray(self.array[key])


@dataclass(frozen=True)
class _Level:
    """A level to store: its lazy data (None: already stored) and placement (millimetres)."""

    data: da.Array | None
    scale_mm: tuple[float, ...]


class _PyramidWriter:
    """Shared machinery of :class:`OmeZarrWriter` and :class:`AnalysisOmeZarrWriter`."""

    def __init__(
        self,
        path: str | os.PathLike,
        shape: Sequence[int],
        chunks: Any = None,
        dtype: Any = np.float32,
        compression: str = codecs.DEFAULT_COMPRESSION,
        overwrite: bool = False,
        *,
        ngff_version: str = "0.4",
        shards: Sequence[int] | None = None,
        n_levels: int | None = None,
    ):
        self.path = Path(path)
        self.shape = _check_shape(shape, self.path)
        self._n_levels = None if n_levels is None else max(0, int(n_levels))
        self.chunks = _normalize_chunks(chunks, self.shape)
        self.dtype = ngff.check_dtype(dtype)
        self.compression = codecs.check_compression(compression)
        self.overwrite = overwrite
        self.format = ngff.format_for_version(ngff_version)
        self.shards = None if shards is None else tuple(int(s) for s in shards)
        self.format.array_options(self.shape, self.chunks, self.compression, self.shards,  # validate early
                                  self.dtype.itemsize)
        atomic.check_can_write(self.path, overwrite)
        atomic.remove_stale_temporaries(self.path)
        self.temporary = atomic.temporary_sibling(self.path)
        atomic.remove_path(self.temporary)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._finalized = False
        self._published = False
        self._owner_pid = os.getpid()
        try:
            with _naming_os_errors(self.temporary):
                group = self.format.create_group(self.temporary)
            self._level0 = self._create_level(group, "0", self.shape)
            self._pyramid = self._streamed_pyramid(group)
            # The group's metadata documents are written again at finalize. Replaced or removed then, once the
            # kernel has begun to write them back behind the output's gigabytes, they wait for that writeback
            # (0.2-1.3 s at the end of a step); removed now, while they are new, they cost nothing.
            for name in self.format.group_documents:
                (self.temporary / name).unlink(missing_ok=True)
        except BaseException:
            self.abort()
            raise

    def _streamed_pyramid(self, group: zarr.Group) -> streamed_pyramid.StreamedPyramid | None:
        """The builder of the levels while level 0 is written (none: they are built at finalize)."""
        return None

    def _lateral_streamed_pyramid(self, group: zarr.Group) -> streamed_pyramid.StreamedPyramid | None:
        """The builder of the 2x lateral pyramid from the level-0 chunks as written, if the layout allows it."""
        if self.shards is not None or len(self.shape) < 2 or not streamed_pyramid.streamable(self.shape, self.chunks):
            return None
        targets = []
        shapes = streamed_pyramid.pyramid_shapes(self.shape)[: self._n_levels]  # as many as finalize will ask for
        for index, shape in enumerate(shapes, start=1):
            target = self._direct_target(self._create_level_like_level0(str(index), shape), str(index))
            if not isinstance(target, chunk_writer.ChunkFileWriter):
                return None
            targets.append(target)
        return streamed_pyramid.StreamedPyramid(self.shape, self.chunks, self.dtype, targets)

    def _create_level_like_level0(self, name: str, shape: tuple[int, ...]) -> zarr.Array:
        """A new level with level 0's metadata but ``shape``, written in this thread.

        zarr-python writes an array's metadata files from several threads: after
        a failed write (a full disk) others may still land, after the cleanup.
        """
        import zarr

        chunks = ngff.level_chunks(self.chunks, shape)
        source, target = self.temporary / "0", self.temporary / name
        target.mkdir()
        for entry in sorted(p for p in source.iterdir() if p.is_file()):
            content = entry.read_bytes()
            if entry.name in (".zarray", "zarr.json"):
                metadata = json.loads(content)
                metadata["shape"] = list(shape)
                if "chunks" in metadata:
                    metadata["chunks"] = list(chunks)
                else:
                    metadata["chunk_grid"]["configuration"]["chunk_shape"] = list(chunks)
                content = json.dumps(metadata, indent=2).encode()
            with _naming_os_errors(target / entry.name):  # a full disk fails the write at close, unnamed
                (target / entry.name).write_bytes(content)
        return zarr.open_array(str(target), mode="r+")

    def _stop_pyramid(self, reason: str) -> None:
        """Build the pyramid at finalize from the stored level 0 instead of from the writes."""
        if self._pyramid is not None:
            self._pyramid.give_up(reason)

    # Pickling lets worker processes write regions into the same temporary.
    def __getstate__(self) -> dict[str, Any]:
        self._stop_pyramid("the writer was pickled (another process may write)")
        state = self.__dict__.copy()
        state.pop("_level0")
        state["_pyramid"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        import zarr

        self.__dict__.update(state)
        self._level0 = zarr.open_array(str(self.temporary / "0"), mode="r+")

    @property
    def write_block(self) -> tuple[int, ...]:
        """The smallest region parallel writers may own: a chunk, or a shard if sharded."""
        return tuple(self._level0.shards or self._level0.chunks)

    def _direct_target(self, array: zarr.Array, name: str) -> Any:
        """A store target that writes whole chunks straight to their files (see chunk_writer)."""
        return chunk_writer.store_target(array, self.temporary / name, self.format, self.compression)

    def _create_level(self, group: zarr.Group, name: str, shape: tuple[int, ...]) -> zarr.Array:
        chunks = ngff.level_chunks(self.chunks, shape)
        with _naming_os_errors(self.temporary / name):
            return self.format.create_array(group, name, shape, chunks, self.dtype, self.compression, self.shards)

    def _castable(self, block: Any) -> Any:
        """Refuse data whose values the image dtype cannot hold meaningfully (floats into integers)."""
        dtype = np.asarray(block).dtype if not hasattr(block, "dtype") else np.dtype(block.dtype)
        allowed = {"b": "buif", "u": "uif", "i": "uif", "f": "f"}.get(dtype.kind, "")
        if self.dtype.kind not in allowed:
            raise InputError(
                f"{self.path}: cannot store {dtype} data in a {self.dtype} image; "
                f"convert it first (e.g. block.astype(np.{self.dtype}) after rounding/clipping)"
            )
        return block

    def __setitem__(self, key: Any, block: Any) -> None:
        """Write ``block`` into a region of level 0 (numpy, dask or a scalar).

        Regions written by different threads or processes must not share a
        storage chunk (or shard, when sharded): align them to :attr:`write_block`.
        """
        if self._finalized:
            raise RuntimeError(f"{self.path} is already finalized")
        region, integer_axes = chunk_writer.normalize_region(key, self.shape)
        block = self._castable(block)
        region_shape = tuple(r.stop - r.start for r in region)
        target = self._level0
        if self._covers_whole_chunks(region):  # whole chunks are replaced: write their files directly
            target = self._direct_target(self._level0, "0")
        if not is_dask_array(block) and isinstance(target, chunk_writer.ChunkFileWriter):
            values = np.asarray(block)
            if integer_axes and 0 < values.ndim < len(region):
                values = np.expand_dims(values, integer_axes)
            values = np.broadcast_to(values.astype(self.dtype, copy=False), region_shape)
            target[region] = values
            if self._pyramid is not None:
                self._pyramid.add(region, values)
            return
        self._stop_pyramid("a write of part of a chunk, or of a dask array")
        if not is_dask_array(block):
            block = np.asarray(block)
            if integer_axes and 0 < block.ndim < len(region):
                block = np.expand_dims(block, integer_axes)
            target[region] = np.broadcast_to(block.astype(self.dtype, copy=False), region_shape)
            return
        import dask.array as da

        if integer_axes and block.ndim < len(region):
            block = da.expand_dims(block, integer_axes)
        block = da.broadcast_to(block.astype(self.dtype), region_shape)
        block = _aligned_to(block, region, self.write_block)
        # A worker process (this writer was pickled into it) may be a fork whose
        # dask thread pool is gone: it is the unit of parallelism, so go serial.
        if os.getpid() != self._owner_pid:
            da.store(block, target, regions=region, lock=False, scheduler="synchronous")
            return
        with _thread_pool() as pool:
            da.store(block, target, regions=region, lock=False, scheduler="threads", pool=pool)

    def _covers_whole_chunks(self, region: tuple[slice, ...]) -> bool:
        return all(
            r.start % c == 0 and (r.stop % c == 0 or r.stop == n)
            for r, c, n in zip(region, self._level0.chunks, self.shape)
        )

    def read(self) -> da.Array:
        """Level 0 as written so far, lazily (e.g. to blend overlapping writes)."""
        return self.stored_level0().to_dask()

    def stored_level0(self) -> StoredArray:
        """Level 0 as written so far, for direct chunk-wise reading (see :class:`StoredArray`)."""
        return self._stored_level("0")

    def _stored_level(self, name: str) -> StoredArray:
        directory = self.temporary / name
        return StoredArray(directory, self.format, _array_metadata(directory), self._level0 if name == "0" else None)

    def _streamed_levels(self, resolution: tuple[float, ...], n_levels: int | None) -> list[_Level] | None:
        """Levels 1..n_levels as the streamed pyramid stored them (None: build them from level 0).

        Levels it stored beyond ``n_levels`` (all of them if ``n_levels`` is
        None or it gave up) are removed.
        """
        pyramid, self._pyramid = self._pyramid, None
        if pyramid is None:
            return None
        complete = n_levels is not None and pyramid.finish()
        if complete and pyramid.n_levels < min(n_levels, len(streamed_pyramid.pyramid_shapes(self.shape))):
            complete, pyramid.failure = False, f"finalize asked for {n_levels} levels, {pyramid.n_levels} were built"
        if n_levels is not None and not complete:
            logger.debug("%s: pyramid built from the stored level 0 (%s)", self.path, pyramid.failure)
        keep = min(n_levels, pyramid.n_levels) if complete else 0
        for index in range(keep + 1, pyramid.n_levels + 1):
            atomic.remove_path(self.temporary / str(index))
        if not complete:
            return None
        logger.debug("%s: pyramid built while level 0 was written (at most %.0f MB of chunks gathered in part)",
                     self.path, pyramid.peak_bytes / 2**20)
        if n_levels > keep:
            logger.info("%s: stopping the pyramid at level %d: level %d would be < 1 pixel", self.path, keep, keep + 1)
        factors = (1,) * (len(self.shape) - 2) + (2, 2)
        return [
            _Level(None, tuple(r * f**k for r, f in zip(resolution, factors))) for k in range(1, keep + 1)
        ]

    def abort(self) -> None:
        """Delete everything written; the final path is left untouched.

        A temporary that cannot be removed is logged, not raised, so that the
        error that caused the abort is the one reported; the next write of
        the same output removes it (see :func:`linumpy.io.atomic.remove_stale_temporaries`).
        """
        self._finalized = self._published = True  # nothing more to write, nothing to publish
        try:
            _wait_for_zarr_io()
            page_cache.forget_written()  # no descriptor may keep the deleted chunk files' space
            atomic.remove_path(self.temporary)
        except OSError as error:
            logger.warning("%s: could not remove the temporary of an aborted write (%s)", self.temporary, error)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is not None:
            self.abort()
        elif not self._published:
            self.abort()
            raise RuntimeError(f"{self.path}: the writer was closed without finalize() or publish(); "
                               "nothing was written")

    def _store_levels(
        self,
        resolution: tuple[float, ...],
        levels: list[_Level],
        method: str,
        method_metadata: dict[str, Any],
        attributes: dict[str, Any] | None,
        origin: Sequence[float] | None,
        level0: da.Array | None = None,
        publish: bool = True,
    ) -> None:
        """Store ``levels`` (and optionally level 0) in one pass, write metadata, commit unless not ``publish``."""
        if self._finalized:
            raise RuntimeError(f"{self.path} is already finalized")
        try:
            self._streamed_levels(resolution, None)  # levels built otherwise: drop what it stored
            origin = tuple(float(v) for v in (origin or (0.0,) * len(self.shape)))
            linumpy_attrs = json.loads(json.dumps(attributes or {}, default=_jsonable))
            # The group's documents were removed when it was made (__init__): written here as new files.
            import zarr

            with _naming_os_errors(self.temporary):
                group = zarr.open_group(str(self.temporary), mode="a", zarr_format=self.format.zarr_format)
            sources, targets = [], []
            if level0 is not None:  # a fresh level 0: nothing was written into it yet
                sources.append(level0)
                targets.append(self._direct_target(self._level0, "0"))
            for index, level in enumerate(levels, start=1):
                if level.data is None:  # stored while level 0 was written
                    continue
                target = self._create_level(group, str(index), level.data.shape)
                block = tuple(target.shards or target.chunks)
                sources.append(level.data.rechunk(block))
                targets.append(self._direct_target(target, str(index)))
            if levels and levels[-1].data is None:
                coarsest = self._stored_level(str(len(levels)))
            else:
                coarsest = sources[-1] if sources else self.stored_level0()
            stride = max(1, math.ceil((math.prod(coarsest.shape) / _OMERO_SAMPLE) ** (1 / coarsest.ndim)))
            if sources:
                sample = _computed_with(sources, targets, coarsest, stride, self.path.name)
            else:  # every level is stored already (streamed pyramid): no dask
                sample = strided_sample(coarsest, stride)
            transforms = [
                ngff.LevelTransform(
                    path=str(i),
                    scale_mm=scale,
                    translation_mm=tuple(o + 0.5 * (s - s0) for o, s, s0 in zip(origin, scale, resolution)),
                )
                for i, scale in enumerate([resolution, *(level.scale_mm for level in levels)])
            ]
            name = image_name(self.path)
            multiscale = ngff.multiscale(name, transforms, method, method_metadata)
            omero = ngff.omero_window(sample, self.dtype, name)
            with _naming_os_errors(self.temporary):
                group.attrs.put(self.format.root_attributes(multiscale, omero, linumpy_attrs))
        except BaseException:
            self.abort()
            raise
        self._finalized = True
        if publish:
            self.publish()

    @property
    def stored(self) -> Path:
        """Where the image is until it is published: a complete OME-Zarr once finalized with ``publish=False``."""
        return self.temporary

    def publish(self) -> None:
        """Rename the finalized image to its final path (what ``finalize`` does unless told ``publish=False``)."""
        if not self._finalized or self._published:
            raise RuntimeError(f"{self.path}: publish() needs a finalize(..., publish=False) not yet published")
        try:
            page_cache.release_written()  # the image's last chunk files leave the page cache too
            atomic.check_can_write(self.path, self.overwrite)
            atomic.commit(self.temporary, self.path)
        except BaseException:
            self.abort()
            raise
        self._published = True


class OmeZarrWriter(_PyramidWriter):
    """Write a 3D ``(z, y, x)`` or 2D ``(y, x)`` image region by region, then its pyramid.

    Parameters
    ----------
    path : path-like
        Final ``.ome.zarr`` path; data goes to a hidden temporary sibling
        until :meth:`finalize` renames it.
    shape : tuple of int
        Shape of level 0.
    chunks : tuple of int, optional
        Storage chunks, default (64, 256, 256) / (1024, 1024), capped by the
        shape. Every level uses the same chunk shape.
    dtype : dtype
        Stored dtype (integers or floats). Data of another kind (float into
        an integer image) is refused: cast it explicitly.
    compression : str
        One of :data:`linumpy.io.codecs.COMPRESSIONS`.
    overwrite : bool
        Replace an existing output at finalize instead of refusing it.
    ngff_version : {"0.4", "0.5"}
        0.4 = Zarr v2 (default); 0.5 = Zarr v3.
    shards : tuple of int, optional
        Shard shape (a multiple of ``chunks``; NGFF 0.5 only).
    n_levels : int, optional
        The ``n_levels`` that :meth:`finalize` will be given, when known: the
        levels built while level 0 is written stop there instead of going
        down to one pixel (those beyond are otherwise built, then removed at
        ``finalize``). A ``finalize`` asking for more builds them from level 0.

    Examples
    --------
    >>> with OmeZarrWriter("out.ome.zarr", (100, 512, 512), (10, 128, 128), np.float32) as writer:  # doctest: +SKIP
    ...     writer[:] = data
    ...     writer.finalize((0.0015, 0.010, 0.010), n_levels=5)  # levels 0-5
    """

    def _streamed_pyramid(self, group: zarr.Group) -> streamed_pyramid.StreamedPyramid | None:
        return self._lateral_streamed_pyramid(group)

    def finalize(
        self,
        resolution: Sequence[float],
        n_levels: int = DEFAULT_N_LEVELS,
        attributes: dict[str, Any] | None = None,
        *,
        origin: Sequence[float] | None = None,
        publish: bool = True,
    ) -> None:
        """Build levels 1..n_levels (2x lateral block means), write metadata, publish.

        Parameters
        ----------
        resolution : sequence of float
            Level-0 voxel size in millimetres, one per axis.
        n_levels : int
            Levels above level 0; each halves y and x (z is kept). Stops
            early, with a logged note, when y or x would drop below one voxel.
        attributes : dict, optional
            JSON-able pipeline metadata stored under the root key ``linumpy``.
        origin : sequence of float, optional
            Physical position (mm) of the first voxel centre; level 0's translation.
        publish : bool
            False: leave the complete image at :attr:`stored` (e.g. to read it
            while another output is still being written) until :meth:`publish`;
            closing the writer without publishing removes it.
        """
        self._finalize_pyramid(resolution, n_levels, attributes, origin, None, publish)

    def _finalize_pyramid(self, resolution, n_levels, attributes, origin, level0, publish=True) -> None:
        try:
            resolution = _check_resolution(resolution, len(self.shape), self.path)
            if int(n_levels) < 0:
                raise InputError(f"{self.path}: n_levels must be >= 0, got {n_levels}")
            levels = self._streamed_levels(resolution, int(n_levels)) if level0 is None else None
            if levels is None:
                levels = lateral_pyramid(
                    level0 if level0 is not None else self.read(), resolution, int(n_levels), self.path
                )
        except BaseException:
            self.abort()
            raise
        metadata = {"method": "linumpy.resample.block_mean", "factors": [1] * (len(self.shape) - 2) + [2, 2]}
        self._store_levels(resolution, levels, "mean", metadata, attributes, origin, level0, publish)


class AnalysisOmeZarrWriter(_PyramidWriter):
    """Like :class:`OmeZarrWriter`, with isotropic levels at chosen resolutions.

    Used for the final stacked volume: level 0 is the data as written, then
    one isotropic level per resolution of ``resolutions_um`` that is coarser
    than every axis of level 0 (see :meth:`finalize`).
    """

    def finalize(
        self,
        resolution: Sequence[float],
        resolutions_um: Sequence[float] = DEFAULT_ANALYSIS_RESOLUTIONS_UM,
        attributes: dict[str, Any] | None = None,
        *,
        origin: Sequence[float] | None = None,
    ) -> None:
        """Build the analysis pyramid, write metadata, publish.

        Each ``r`` in ``resolutions_um`` becomes an isotropic level ``[r, r, r]``
        if it is at least as coarse as every axis of level 0; ``r`` equal
        (within 1%) to an isotropic level 0 is level 0 itself; ``r`` finer than
        level 0's coarsest axis is skipped with a logged note. A 25 um base
        gives 25, 50 and 100 um.

        Parameters
        ----------
        resolution : sequence of float
            Level-0 voxel size in millimetres.
        resolutions_um : sequence of float
            Wanted resolutions in micrometres.
        attributes, origin
            As in :meth:`OmeZarrWriter.finalize`.
        """
        self._finalize_analysis(resolution, resolutions_um, attributes, origin, None)

    def _finalize_analysis(self, resolution, resolutions_um, attributes, origin, level0) -> None:
        try:
            resolution = _check_resolution(resolution, len(self.shape), self.path)
            levels = analysis_pyramid(level0 if level0 is not None else self.read(), resolution, resolutions_um, self.path)
        except BaseException:
            self.abort()
            raise
        metadata = {
            "method": "linumpy.resample.resample_to_resolution",
            "resolutions_um": [float(r) for r in resolutions_um],
            "min_last_cover": ANALYSIS_MIN_LAST_COVER,
        }
        self._store_levels(resolution, levels, "area", metadata, attributes, origin, level0)


def lateral_pyramid(
    base: da.Array, resolution: tuple[float, ...], n_levels: int, path: Path | str = "image"
) -> list[_Level]:
    """Levels 1..n_levels of ``base``, each a 2x block mean in y and x of the previous one.

    A border pixel that covers only part of a block of level 0 weighs that
    part in the next level, so every level is the block mean of level 0.
    """
    factors = (1,) * (base.ndim - 2) + (2, 2)
    levels: list[_Level] = []
    data, scale, span = base, resolution, (1,) * base.ndim
    for index in range(1, n_levels + 1):
        if min(data.shape[-2:]) < 2:
            logger.info("%s: stopping the pyramid at level %d: level %d would be < 1 pixel", path, index - 1, index)
            break
        data = block_mean(data, factors, pyramid_edge_weights(base.shape, data.shape, span))
        span = tuple(s * f for s, f in zip(span, factors))
        scale = tuple(s * f for s, f in zip(scale, factors))
        levels.append(_Level(data, scale))
    return levels


def analysis_pyramid(
    base: da.Array, resolution: tuple[float, ...], resolutions_um: Sequence[float], path: Path | str = "image"
) -> list[_Level]:
    """Isotropic levels of ``base`` at the listed resolutions (see AnalysisOmeZarrWriter).

    Each level is resampled from the previous one, whose partial last voxels
    weigh what they cover; a last voxel the level above covers over less than
    :data:`ANALYSIS_MIN_LAST_COVER` of its length is left out.
    """
    levels: list[_Level] = []
    data, scale, cover = base, resolution, (1.0,) * base.ndim
    coarsest = max(resolution)
    isotropic = max(resolution) <= min(resolution) * (1 + RESOLUTION_TOLERANCE)
    for r_um in sorted(float(r) for r in resolutions_um):
        r = r_um / 1000.0
        if isotropic and abs(r - coarsest) <= RESOLUTION_TOLERANCE * coarsest:
            continue  # level 0 already is this resolution
        if r < coarsest * (1 - RESOLUTION_TOLERANCE):
            logger.info("%s: skipping %g um: finer than the data's %g um", path, r_um, coarsest * 1000)
            continue
        target = (r,) * base.ndim
        resampled = resample_to_resolution(data, scale, target, cover, ANALYSIS_MIN_LAST_COVER)
        cover = resampled_last_weights(data.shape, scale, target, cover, ANALYSIS_MIN_LAST_COVER)
        data, scale = resampled, target
        levels.append(_Level(data, scale))
    return levels


def save_omezarr(
    data: Any,
    path: str | os.PathLike,
    resolution: Sequence[float],
    chunks: Any = None,
    n_levels: int = DEFAULT_N_LEVELS,
    compression: str = codecs.DEFAULT_COMPRESSION,
    overwrite: bool = False,
    *,
    attributes: dict[str, Any] | None = None,
    ngff_version: str = "0.4",
    shards: Sequence[int] | None = None,
    origin: Sequence[float] | None = None,
) -> None:
    """Write an image and its 2x lateral pyramid in one streaming pass.

    Parameters
    ----------
    data : numpy.ndarray or dask.array.Array
        3D ``(z, y, x)`` or 2D ``(y, x)``; dask input is never loaded whole.
    path : path-like
        Output ``.ome.zarr`` directory (appears atomically).
    resolution : sequence of float
        Voxel size, millimetres per voxel.
    chunks : tuple, optional
        Storage chunks (a dask ``chunks`` tuple works too); default
        (64, 256, 256) / (1024, 1024).
    n_levels, compression, overwrite, ngff_version, shards
        As in :class:`OmeZarrWriter`.
    attributes : dict, optional
        JSON-able pipeline metadata stored under the root key ``linumpy``.
    origin : sequence of float, optional
        Physical position (mm) of the first voxel centre.

    Examples
    --------
    >>> data = da.from_array(np.random.rand(100, 512, 512), chunks=(10, 128, 128))  # doctest: +SKIP
    >>> save_omezarr(data, "output.ome.zarr", (0.0015, 0.010, 0.010), chunks=data.chunks)  # doctest: +SKIP
    """
    path = Path(path)
    if not hasattr(data, "dtype") or not hasattr(data, "shape"):
        data = np.asarray(data)
    writer = OmeZarrWriter(
        path, _check_shape(data.shape, path), chunks, data.dtype, compression, overwrite,
        ngff_version=ngff_version, shards=shards,
    )
    try:
        import dask.array as da

        block = writer.write_block
        source = data.rechunk(block) if is_dask_array(data) else da.from_array(_Sliceable(data), chunks=block, name=False)
    except BaseException:
        writer.abort()
        raise
    writer._finalize_pyramid(resolution, n_levels, attributes, origin, source)


def reencode_omezarr(
    source: str | os.PathLike,
    path: str | os.PathLike,
    chunks: Any = None,
    compression: str = codecs.DEFAULT_COMPRESSION,
    overwrite: bool = False,
    *,
    ngff_version: str = "0.4",
    shards: Sequence[int] | None = None,
    resolution: Sequence[float] | None = None,
) -> None:
    """Copy every level of an OME-Zarr image with new chunks, codec, version or shards.

    Each level is read once and rewritten with its scale; translations are
    recomputed from the scales and level 0's origin, and the ``linumpy``
    attributes and downsampling description are kept.

    Parameters
    ----------
    source, path : path-like
        Input and output ``.ome.zarr`` (must differ).
    chunks : tuple of int, optional
        New chunk shape; default: the input's.
    compression, overwrite, ngff_version, shards
        As in :class:`OmeZarrWriter`.
    resolution : sequence of float, optional
        Replace level 0's voxel size (mm); other levels are scaled alike.
    """
    source, path = Path(source), Path(path)
    if source.resolve() == path.resolve():
        raise InputError(f"{path}: input and output are the same; write to another path")
    info = read_omezarr_info(source)
    image = ngff.parse_image(source)
    stored = info.resolution
    resolution = _check_resolution(resolution or stored, info.ndim, path)
    ratio = [r / s for r, s in zip(resolution, stored)]
    writer = OmeZarrWriter(
        path, info.shape, chunks or info.chunks, info.dtype, compression, overwrite,
        ngff_version=ngff_version, shards=shards,
    )
    try:
        base = read_omezarr(source, 0)[0].rechunk(writer.write_block)
        levels = [
            _Level(read_omezarr(source, k)[0], tuple(s * q for s, q in zip(level.scale_mm, ratio)))
            for k, level in enumerate(info.levels[1:], start=1)
        ]
        origin = tuple(t * q for t, q in zip(info.levels[0].translation_mm, ratio))
    except BaseException:
        writer.abort()
        raise
    writer._store_levels(
        resolution, levels, image.method or "mean", image.method_metadata, info.attributes, origin, base
    )


__all__ = [
    "reencode_omezarr",
    "AnalysisOmeZarrWriter",
    "LevelInfo",
    "OmeZarrInfo",
    "OmeZarrWriter",
    "StoredArray",
    "open_omezarr_level",
    "read_omezarr",
    "read_omezarr_info",
    "read_omezarr_levels",
    "save_omezarr",
]
