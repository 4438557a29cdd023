"""The mosaic grid: a slice's tiles side by side, tile ``(r, c)`` at ``(r * ty, c * tx)``.

Tiles are not placed at their stage positions and nothing is blended: the
grid keeps every raw pixel, tile by tile, so that stitching can later read a
tile as one lateral chunk. Missing tiles are zeros.

Examples
--------
>>> from linumpy.io.acquisition import open_acquisition  # doctest: +SKIP
>>> section = open_acquisition("raw/").slice(0)  # doctest: +SKIP
>>> write_mosaic_grid(section, "mosaic_grid_3d_z00.ome.zarr", "mosaic_grid_2d_z00.ome.zarr")  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import logging
import math
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from linumpy.errors import InputError
from linumpy.io.acquisition import SliceAcquisition
from linumpy.io.prefetch import prefetched, tile_files
from linumpy.io.streamed_pyramid import morton_order
from linumpy.io.zarr import DEFAULT_N_LEVELS, OmeZarrWriter, open_omezarr_level, read_omezarr_info
from linumpy.memory import check_fits_in_memory
from linumpy.mosaic.curvature import Curvature, estimate_slice_curvature
from linumpy.mosaic.galvo import GalvoShift, detect_slice_band, read_tile
from linumpy.mosaic.options import APPLIED_CURVATURE_ATTRIBUTE, DEFAULT_CONFIDENCE, DTYPES
from linumpy.mosaic.summaries import LEAST_PLANE_MEANS_ATTRIBUTE, least_plane_means_attribute, tile_summary
from linumpy.parallel import import_in_background, run_jobs
from linumpy.qc.metrics import nonzero_fraction
from linumpy.qc.records import FIGURES_MODULE, render_png, write_qc_record
from linumpy.resample import block_mean, resample_to_resolution, resampled_shape

logger = logging.getLogger(__name__)

#: Largest number of voxels of one storage chunk (16 MB of float32): bounds the pyramid step's memory.
_MAX_CHUNK_VOXELS = 2**22
#: The files of a tile are announced to the kernel this many tiles before the reader thread reads it.
ANNOUNCE_AHEAD_TILES = 2
#: The reader thread reads tiles this many tiles ahead of the one whose preparation is queued.
READ_AHEAD_TILES = 1


@dataclass(frozen=True)
class GridGeometry:
    """Shape and placement of a mosaic grid at its output resolution.

    Attributes
    ----------
    tile_shape : (int, int, int)
        ``(z, y, x)`` of one tile in the output.
    grid_shape : (int, int)
        ``(rows, cols)``.
    z_range : (int, int)
        Depth samples ``[z0, z1)`` of the raw tiles that are kept.
    resolution_um : (float, float, float)
        Output voxel size ``(z, y, x)``.
    tile_step_px : (float, float)
        Nominal ``(y, x)`` step between tiles at the output resolution.
    """

    tile_shape: tuple[int, int, int]
    grid_shape: tuple[int, int]
    z_range: tuple[int, int]
    input_resolution_um: tuple[float, float, float]
    resolution_um: tuple[float, float, float]
    tile_step_px: tuple[float, float]

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(z, rows * ty, cols * tx)`` of the mosaic grid."""
        return (self.tile_shape[0], self.grid_shape[0] * self.tile_shape[1], self.grid_shape[1] * self.tile_shape[2])

    @property
    def chunks(self) -> tuple[int, int, int]:
        """Storage chunks: one tile laterally, as many depth samples as fit in 16 MB."""
        z, y, x = self.tile_shape
        return (max(1, min(z, _MAX_CHUNK_VOXELS // (y * x))), y, x)

    def region(self, row: int, col: int) -> tuple[slice, slice, slice]:
        """Where tile ``(row, col)`` goes in the grid."""
        _, ty, tx = self.tile_shape
        return (slice(None), slice(row * ty, (row + 1) * ty), slice(col * tx, (col + 1) * tx))


def grid_geometry(
    section: SliceAcquisition,
    resolution_um: float | None = None,
    z_range: Sequence[int] | None = None,
) -> GridGeometry:
    """Return the output geometry of a slice's mosaic grid.

    Parameters
    ----------
    section : SliceAcquisition
        The slice's tiles and metadata.
    resolution_um : float, optional
        Lateral output voxel size (default: the tiles' own).
    z_range : (int, int), optional
        Depth samples ``[z0, z1)`` to keep (default: all).

    Raises
    ------
    InputError
        If ``z_range`` is empty or outside the tiles, or the resolution is not positive.
    """
    nz, ny, nx = section.tile_shape
    z0, z1 = (0, nz) if z_range is None else (int(z_range[0]), int(z_range[1]))
    if not 0 <= z0 < z1 <= nz:
        raise InputError(f"--z_range {z0} {z1} is not a non-empty range inside the tiles' depth 0-{nz}")
    res_z, res_y, res_x = section.resolution_um
    if resolution_um is not None and not (math.isfinite(resolution_um) and resolution_um > 0):
        raise InputError(f"--resolution must be a positive number, got {resolution_um} um")
    out_y, out_x = (res_y, res_x) if resolution_um is None else (resolution_um, resolution_um)
    _, ty, tx = resampled_shape((1, ny, nx), (res_z, res_y, res_x), (res_z, out_y, out_x))
    # A resampled tile is held in float64 with one intermediate of the same size.
    check_fits_in_memory(2 * 8 * (z1 - z0) * ty * tx, f"one tile of {z1 - z0} x {ty} x {tx} voxels "
                         f"at --resolution {resolution_um} um", f"use a coarser --resolution (the tiles' own is "
                         f"{res_y:g} x {res_x:g} um)")
    step_y, step_x = section.tile_step_px
    return GridGeometry(
        tile_shape=(z1 - z0, ty, tx),
        grid_shape=section.grid_shape,
        z_range=(z0, z1),
        input_resolution_um=(res_z, res_y, res_x),
        resolution_um=(res_z, out_y, out_x),
        tile_step_px=(round(step_y * res_y / out_y, 3), round(step_x * res_x / out_x, 3)),
    )


def zero_non_finite(tile: np.ndarray, name: str | Path) -> np.ndarray:
    """Replace NaN and infinite values of a raw tile by 0 (in place if writable), with a logged warning.

    A few bad samples in one tile of a days-long acquisition must not stop
    the run, nor spread through resampling and blending into the slice; the
    warning names the tile and the count so they can be checked. A tile
    whose sum is finite has no NaN nor infinity (either makes the sum
    non-finite): it is returned after that one pass, without a mask.

    Examples
    --------
    >>> zero_non_finite(np.array([1.0, np.nan, np.inf], np.float32), "tile_x00_y00_z00")
    array([1., 0., 0.], dtype=float32)
    """
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow or inf - inf sends it to the full check
        if np.isfinite(np.add.reduce(tile, axis=None)):
            return tile
    bad = ~np.isfinite(tile)
    count = int(np.count_nonzero(bad))
    if count:
        logger.warning(
            "%s: %d of %d values are NaN or infinite; replaced by 0 and the run goes on "
            "(check the tile if it is more than a few pixels)", name, count, tile.size,
        )
        tile = tile if tile.flags.writeable else tile.copy()
        tile[bad] = 0
    return tile


def prepare_tile(tile: np.ndarray, geometry: GridGeometry, dtype: str = "float32") -> np.ndarray:
    """Crop a raw ``(z, y, x)`` tile in depth, resample it laterally, cast it.

    Integer dtypes are rounded and clipped to their range (no rescaling).

    Examples
    --------
    >>> g = GridGeometry((2, 2, 2), (1, 1), (1, 3), (1.5, 3.0, 3.0), (1.5, 6.0, 6.0), (1.0, 1.0))
    >>> prepare_tile(np.ones((4, 4, 4), np.float32), g).shape
    (2, 2, 2)
    """
    cropped = tile[geometry.z_range[0] : geometry.z_range[1]]
    if geometry.resolution_um != geometry.input_resolution_um:
        in_mm = tuple(r / 1000.0 for r in geometry.input_resolution_um)
        out_mm = tuple(r / 1000.0 for r in geometry.resolution_um)
        cropped = resample_to_resolution(cropped, in_mm, out_mm).compute(scheduler="synchronous")
    target = np.dtype(dtype)
    if np.issubdtype(target, np.integer):
        info = np.iinfo(target)
        return np.clip(np.rint(cropped), info.min, info.max).astype(target)
    return cropped.astype(target, copy=False)


def mosaic_grid_attributes(section: SliceAcquisition, geometry: GridGeometry) -> dict[str, Any]:
    """The ``linumpy`` attributes of a mosaic grid (see ``docs/architecture.md``)."""
    return {
        "slice_id": section.slice_id,
        "tile_shape": list(geometry.tile_shape),
        "grid_shape": list(geometry.grid_shape),
        "tile_step_px": list(geometry.tile_step_px),
        "stage_position_mm": dict(section.stage_position_mm),
        "tiles_present": [[r, c] for r, c in sorted(section.tiles)],
    }


def write_mosaic_grid(
    section: SliceAcquisition,
    path: str | Path,
    aip_path: str | Path,
    resolution_um: float | None = None,
    z_range: Sequence[int] | None = None,
    dtype: str = "float32",
    n_levels: int = DEFAULT_N_LEVELS,
    compression: str = "blosc-lz4",
    overwrite: bool = False,
    progress: bool = False,
    workers: int | None = None,
    fix_galvo_shift: bool = True,
    galvo_confidence: float = DEFAULT_CONFIDENCE,
    fix_field_curvature: bool = True,
    field_curvature: Curvature | None = None,
    galvo: GalvoShift | None = None,
) -> GridGeometry:
    """Write a slice's 3D mosaic grid and its 2D average intensity projection.

    Tiles are read in order on a reader thread, a few tiles
    (:data:`READ_AHEAD_TILES`) ahead of the ``workers`` threads that clean
    them of NaN/inf (:func:`zero_non_finite`), prepare them
    (:func:`prepare_tile`) and write them, z-chunk slab by slab: memory holds
    at most about ``READ_AHEAD_TILES + 2 * workers`` tiles.

    Parameters
    ----------
    section : SliceAcquisition
        The slice to lay out.
    path : path-like
        Output 3D ``.ome.zarr`` (chunks: one tile laterally).
    aip_path : path-like
        Output 2D ``.ome.zarr``: mean along depth of the 3D grid, with each tile's least plane mean as
        attribute (:mod:`linumpy.mosaic.summaries`: what the stitcher would compute from the grid).
    resolution_um, z_range
        As in :func:`grid_geometry`.
    dtype : {"float32", "float16", "uint16"}
        Stored dtype of the 3D grid (the AIP stays float32).
    n_levels, compression, overwrite
        As in :class:`linumpy.io.zarr.OmeZarrWriter`.
    progress : bool
        Show a progress bar over the tiles.
    workers : int, optional
        Threads writing slabs at once (default: :func:`linumpy.parallel.default_workers`), beside the
        reader thread (also used, with the galvo band's detection and the curvature's estimate, to read tiles).
    fix_galvo_shift : bool
        Detect the galvo-return band of native tiles and, above
        ``galvo_confidence``, crop it where it is (:mod:`linumpy.mosaic.galvo`).
    galvo_confidence : float
        Confidence threshold in [0, 1] of the band fix.
    fix_field_curvature : bool
        Estimate the depth offset common to all tiles from the overlaps of a
        few central tiles and, when it demonstrably reduces their border
        depth mismatch, remove it from every tile (:mod:`linumpy.mosaic.curvature`).
    field_curvature : Curvature, optional
        The acquisition's decision (:mod:`linumpy.mosaic.curvature_pool`),
        applied as it is instead of deciding on this slice alone (when
        ``fix_field_curvature``).
    galvo : GalvoShift, optional
        The band already detected and decided (:func:`~linumpy.mosaic.galvo.detect_slice_band`
        with ``galvo_confidence``), used as it is instead of detecting it (when ``fix_galvo_shift``).

    Returns
    -------
    GridGeometry
    """
    if dtype not in DTYPES:
        raise InputError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    geometry = grid_geometry(section, resolution_um, z_range)
    attributes = mosaic_grid_attributes(section, geometry)
    resolution_mm = tuple(r / 1000.0 for r in geometry.resolution_um)
    if not fix_galvo_shift:
        galvo = GalvoShift()
    elif galvo is None:
        galvo = detect_slice_band(section, galvo_confidence, workers)
    attributes["galvo_shift_px"] = galvo.shift if galvo.applied else 0
    if not fix_field_curvature:
        curvature = Curvature()
    elif field_curvature is not None:
        curvature = field_curvature
    else:
        curvature = estimate_slice_curvature(section, galvo, workers)
    if curvature.applied:
        attributes[APPLIED_CURVATURE_ATTRIBUTE] = [float(c) for c in curvature.coefficients]
    with (
        OmeZarrWriter(path, geometry.shape, geometry.chunks, dtype, compression, overwrite, n_levels=n_levels) as grid,
        OmeZarrWriter(
            aip_path, geometry.shape[1:], geometry.chunks[1:], np.float32, compression, overwrite, n_levels=n_levels
        ) as aip,
        ThreadPoolExecutor(1, thread_name_prefix="mosaic-qc") as qc_thread,
        ThreadPoolExecutor(1, thread_name_prefix="mosaic-read") as reader,
    ):
        spare: queue.SimpleQueue[np.ndarray] = queue.SimpleQueue()  # tile arrays whose tile is written
        aip_parts = _Countdown(len(section.tiles))
        least_plane_means: dict[tuple[int, int], float] = {}  # written by the reader thread only
        depth, z_chunk = geometry.shape[0], geometry.chunks[0]
        slabs = [slice(z0, min(z0 + z_chunk, depth)) for z0 in range(0, depth, z_chunk)]

        def read(tile: Any) -> np.ndarray:
            """Read a tile (into a spare array: a fresh 40 MB array costs its page faults)."""
            try:
                out = spare.get_nowait()
            except queue.Empty:
                out = None
            return read_tile(tile, galvo, out)

        def prepare(position: tuple[int, int], tile: Any, reading: Future, ready: Future) -> None:
            """Clean and prepare a tile once read, write its AIP part (its summary's projection) and keep its
            least plane mean; ``ready`` gets it (or the failure, so that its slabs' jobs fail instead of waiting)."""
            try:
                raw = zero_non_finite(reading.result(), tile.path)
                prepared = prepare_tile(curvature.correct(raw), geometry, dtype)
                summary = tile_summary(prepared)
                aip[geometry.region(*position)[1:]] = summary.projection
                least_plane_means[position] = summary.least_plane_mean
                aip_parts.done()
            except BaseException as error:
                ready.set_exception(error)
                raise
            ready.set_result(_PreparedTile(raw, prepared, _Countdown(len(slabs))))

        def lay_out(position: tuple[int, int], planes: slice, ready: Future) -> None:
            """Write one z-chunk slab of a prepared tile with its pyramid chunks."""
            tile = ready.result()
            grid[(planes, *geometry.region(*position)[1:])] = tile.prepared[planes]
            if tile.slabs_left.done():
                spare.put(tile.raw)

        def jobs() -> Iterator[Callable[[], None]]:
            """Each tile's preparation, then the slabs of the tile before it (prepared one tile ahead)."""
            previous: list[Callable[[], None]] = []
            for (position, tile), raw in read_ahead(reader, read, tiles, READ_AHEAD_TILES):
                ready: Future = Future()
                yield functools.partial(prepare, position, tile, raw, ready)
                yield from previous
                previous = [functools.partial(lay_out, position, planes, ready) for planes in slabs]
            yield from previous

        def aip_qc() -> tuple[dict[str, Any], dict[str, bytes]] | None:
            """Finalize the AIP and make the QC figure from it while the last tiles' grid slabs are written."""
            if not aip_parts.wait():
                return None  # a tile failed: the writers are aborted
            summaries = {LEAST_PLANE_MEANS_ATTRIBUTE: least_plane_means_attribute(least_plane_means,
                                                                                  geometry.grid_shape)}
            aip.finalize(resolution_mm[1:], n_levels, attributes | summaries, publish=False)
            return mosaic_grid_qc(aip.stored, geometry.grid_shape, sorted(section.tiles))

        # The reader thread only reads the tiles (its files read into a tile array, each B-scan transposed
        # into its plane), in order, READ_AHEAD_TILES tiles ahead of the tile whose preparation is queued
        # (each tile's files announced to the kernel ANNOUNCE_AHEAD_TILES tiles before it reads them, so
        # that the disk reads them meanwhile). The ``workers`` threads take the jobs in order: a tile's
        # preparation (cleaned, prepared, summarised, its AIP part written), then each z-chunk slab of the
        # tile before it, written with its pyramid chunks: the reader's share of the CPU is small enough
        # that it stays ahead of the workers on a busy core, and a slab's tile is prepared when its job is
        # taken (its preparation was queued a tile's jobs earlier). Slabs fill whole chunks, so threads
        # never write the same chunk, and the order in which jobs finish does not matter (a thread takes
        # the next job as soon as it is done); the last tile's slabs are written by every worker at once.
        # Z-order: the pyramid levels are built from 2 x 2 groups of tiles as soon as they are written.
        # The QC thread finalizes the AIP once the last tile's part is written, and draws its figure (with
        # Pillow, milliseconds) while the last tiles' grid chunks are written.
        ordered = morton_order(section.tiles.items(), lambda item: item[0])
        tiles = prefetched(ordered, lambda item: tile_files(item[1].path), ahead=ANNOUNCE_AHEAD_TILES)
        import_in_background(FIGURES_MODULE)
        qc = qc_thread.submit(aip_qc)
        try:
            done = run_jobs(lambda job: job(), jobs(), workers)
            total = len(section.tiles) * (1 + len(slabs))
            for _ in tqdm(done, total=total, desc="mosaic grid", unit="job", disable=not progress):
                pass
        finally:
            aip_parts.release()
            reader.shutdown(cancel_futures=True)  # a failed tile: the tiles not read yet are not read
        grid.finalize(resolution_mm, n_levels, attributes)
        metrics, figures = qc.result()
        aip.publish()
    # An acquisition-wide decision is flagged once, in its own record (field_curvature_qc.json).
    write_qc_record(
        path, "mosaic_grid_3d", metrics | galvo.metrics() | curvature.metrics()
        | {"n_frames_averaged": section.frames_averaged, "axial_resolution_um": section.resolution_um[0],
           "axial_resolution_source": section.axial_resolution_source}, figures,
        galvo.flags(galvo_confidence) + (curvature.flags() if curvature.source == "slice" else []),
    )
    return geometry


def read_ahead(
    reader: ThreadPoolExecutor, read: Callable[[Any], Any], items: Iterable[tuple[Any, Any]], ahead: int
) -> Iterator[tuple[tuple[Any, Any], Future]]:
    """Yield each ``(key, item)`` with the future of ``read(item)`` on ``reader``, submitted ``ahead`` items early.

    Examples
    --------
    >>> with ThreadPoolExecutor(1) as pool:
    ...     [(key, future.result()) for (key, _), future in read_ahead(pool, abs, [("a", -1), ("b", 2)], 1)]
    [('a', 1), ('b', 2)]
    """
    submitted: deque[tuple[tuple[Any, Any], Future]] = deque()
    for key, item in items:
        submitted.append(((key, item), reader.submit(read, item)))
        if len(submitted) > ahead:
            yield submitted.popleft()
    yield from submitted


@dataclass(frozen=True)
class _PreparedTile:
    """A tile as read (``raw``, reused for a later tile once written), as stored, and its slabs not yet written."""

    raw: np.ndarray
    prepared: np.ndarray
    slabs_left: _Countdown


class _Countdown:
    """Counts jobs down to zero; :meth:`wait` says whether all were done (False once released early)."""

    def __init__(self, count: int):
        self._remaining = count
        self._lock = threading.Lock()
        self._event = threading.Event()
        if count <= 0:
            self._event.set()

    def done(self) -> bool:
        """One job done (the last one wakes the waiter); True for the last one."""
        with self._lock:
            self._remaining -= 1
            if self._remaining == 0:
                self._event.set()
                return True
            return False

    def release(self) -> None:
        """Wake the waiter whatever the count (the jobs stopped)."""
        self._event.set()

    def wait(self) -> bool:
        """Block until every job is done or :meth:`release`; True when every job was done."""
        self._event.wait()
        with self._lock:
            return self._remaining <= 0


#: The QC figure reads the AIP's coarsest level at least this many pixels wide.
QC_AIP_PX = 1024


def mosaic_grid_qc(
    aip_path: str | Path, grid_shape: tuple[int, int], tiles: Sequence[tuple[int, int]]
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The QC record's metrics and figure (rendered) of a mosaic grid, from its finalized AIP.

    Metrics: ``n_tiles`` and the AIP's ``nonzero_fraction`` (the galvo band's
    and the field curvature's are added by :func:`write_mosaic_grid`); figure
    ``aip`` (the tile grid drawn over the AIP, missing tiles crossed out). The
    AIP is read at its coarsest level still ``QC_AIP_PX`` pixels wide,
    block-averaged down to at most twice that size, so the cost does not grow
    with the slice.
    """
    levels = read_omezarr_info(aip_path).levels
    level = max((i for i, lv in enumerate(levels) if max(lv.shape) >= QC_AIP_PX), default=0)
    data, scale_mm = open_omezarr_level(aip_path, level)
    factor = max(1, max(data.shape) // QC_AIP_PX)
    # The level read directly (no dask) when it needs no further averaging (a pyramid with enough levels).
    aip = data[...] if factor == 1 else np.asarray(block_mean(data.to_dask(), (factor, factor)).compute())
    from linumpy.qc.figures import mosaic_grid_figure

    metrics = {"n_tiles": len(tiles), "nonzero_fraction": nonzero_fraction(aip)}
    figure = mosaic_grid_figure(aip, grid_shape, tiles, pixel_um=scale_mm[-1] * 1000 * factor)
    return metrics, {"aip": render_png(figure)}
