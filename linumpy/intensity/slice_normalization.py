"""Intensity normalization of one slice, streamed over an OME-Zarr volume.

Passes over the input (each one lateral block of whole A-lines at a time):

1. the AIP (mean over depth) into a temporary 2D array beside the output;
   its smoothed version gives the tissue mask (Otsu, see
   :mod:`linumpy.intensity.normalize`), and, with ``flatfield``, the tiles'
   masked AIPs give the flat-field (:mod:`linumpy.intensity.flatfield`);
2. a histogram of the (flat-fielded) voxel values of tissue A-lines gives
   the ``low``/``high`` percentiles;
3. the normalized volume is written, each voxel first capped at a multiple of
   its local mean (``speckle_cap``, :func:`linumpy.intensity.normalize.speckle_capped`,
   within its block: no halo is read, so a voxel within two A-lines of its
   block's edge sees the block's edge values repeated); meanwhile the temporary 2D arrays
   (a scratch directory) are deleted on a thread of their own (deleting
   their files waits for the disk, which the writing keeps busy).

Without a flat field, passes 1 and 2 are one read of the input and write no
scratch map (:func:`_one_read_statistics`): every voxel is counted in its
histogram bin apart for each rank of its A-line's smoothed AIP among the
thresholds Otsu's method can return, and the threshold's rank then picks the
tissue voxels' counts (the same counts as pass 2).

Every pass reads whole chunk columns straight from storage
(:func:`linumpy.io.zarr.open_omezarr_level`), their files announced to the
kernel :data:`READ_AHEAD_BLOCKS` blocks ahead (:mod:`linumpy.io.prefetch`: the
previous step released their pages, so they come from disk while the threads
compute), and runs its blocks on a bounded pipeline of worker threads
(:func:`linumpy.parallel.ordered_map`), merged in block order (deterministic
sums). The AIP's smoothing and its histogram run on the same threads.

An empty slice (no positive AIP value, e.g. all zeros) is written as zeros
with a warning.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from linumpy.errors import InputError
from linumpy.intensity import normalize
from linumpy.intensity.blocks import LateralBlock, count_blocks, count_nonzero, lateral_block_size, lateral_blocks
from linumpy.intensity.flatfield import FlatFieldEstimator, flatfield_map
from linumpy.intensity.histogram import KeyedLogHistogram, LogHistogram
from linumpy.intensity.options import DEFAULT_PERCENTILES, DEFAULT_SPECKLE_CAP, NORMALIZE_DTYPES
from linumpy.intensity.qc_summary import write_normalize_qc
from linumpy.io import atomic
from linumpy.io.prefetch import prefetched
from linumpy.io.streamed_pyramid import morton_order
from linumpy.io.zarr import DEFAULT_N_LEVELS, OmeZarrWriter, StoredArray, open_omezarr_level, read_omezarr_info
from linumpy.parallel import import_in_background, ordered_map
from linumpy.qc.records import FIGURES_MODULE

logger = logging.getLogger(__name__)

#: Blocks whose chunk files are announced to the kernel before a worker takes them (beyond those the pipeline
#: holds already), so that their reads from disk overlap the running blocks' computation.
READ_AHEAD_BLOCKS = 2


@dataclass(frozen=True)
class NormalizeSettings:
    """Parameters of :func:`normalize_slice`.

    Attributes
    ----------
    percentiles : (float, float)
        Percentiles of the tissue voxels mapped to 0 and 1.
    flatfield : bool
        Estimate and divide by the lateral illumination profile of the tiles.
    dtype : {"float32", "uint16"}
        Output type: [0, 1] floats or 0..65535.
    mask_sigma_px : float
        Smoothing of the AIP before thresholding it.
    speckle_cap : float
        Cap every voxel at this multiple of its local mean before the percentile map (0: off); the
        percentiles are those of the voxels as read.
    """

    percentiles: tuple[float, float] = DEFAULT_PERCENTILES
    flatfield: bool = False
    dtype: str = "float32"
    mask_sigma_px: float = 2.0
    speckle_cap: float = DEFAULT_SPECKLE_CAP


def normalize_slice(
    in_path: str | os.PathLike,
    out_path: str | os.PathLike,
    settings: NormalizeSettings = NormalizeSettings(),
    *,
    n_levels: int = DEFAULT_N_LEVELS,
    compression: str = "blosc-lz4",
    overwrite: bool = False,
    progress: bool = False,
    workers: int | None = None,
) -> dict[str, Any]:
    """Normalize one slice by the percentiles of its tissue voxels.

    Parameters
    ----------
    in_path, out_path : path-like
        Input ``(z, y, x)`` OME-Zarr; output OME-Zarr.
    settings : NormalizeSettings
    n_levels, compression, overwrite
        As in :class:`~linumpy.io.zarr.OmeZarrWriter`.
    progress : bool
        Show progress bars.
    workers : int, optional
        Threads per pass (default: :func:`linumpy.parallel.default_workers`).

    Returns
    -------
    dict
        The ``linumpy`` attributes written to the output.

    Raises
    ------
    InputError
        Not a 3D image, NaN/inf voxels, bad percentiles, ``flatfield`` without
        the tile layout attributes.
    """
    _check_settings(settings)
    volume, resolution = open_omezarr_level(in_path)
    info = read_omezarr_info(in_path)
    if volume.ndim != 3:
        raise InputError(f"{in_path} is {volume.ndim}D; normalization needs a (z, y, x) volume")
    atomic.check_can_write(out_path, overwrite)
    origins = _tile_origins(info.attributes, volume.shape, in_path) if settings.flatfield else None
    block = lateral_block_size(volume.shape[0])

    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    # scipy's image filters (the smoothing of the AIP, after the first pass) and the QC figure's module, imported
    # while the first pass's threads read and decode (serial start-up time otherwise)
    import_in_background("scipy.ndimage", FIGURES_MODULE)
    # The scratch maps (the AIP and its smoothed version) are deleted on `cleanup` while the output is written:
    # deleting their files waits for the disk, which the writing keeps busy (serial time at the end otherwise).
    with ThreadPoolExecutor(1, thread_name_prefix="normalize-cleanup") as cleanup:
        if origins is None:
            threshold, values, n_tissue = _one_read_statistics(volume, settings, in_path, progress, workers)
            field = None
        else:
            with atomic.scratch_directory(out_path, cleanup) as scratch:
                threshold, field, values, n_tissue = _tissue_statistics(volume, Path(scratch), settings, origins,
                                                                        info.attributes, in_path, progress, workers)
        attributes = dict(info.attributes)
        chunks = tuple(min(c, n) for c, n in zip((64, block, block), volume.shape))
        with OmeZarrWriter(out_path, volume.shape, chunks=chunks, dtype=settings.dtype,
                           compression=compression, overwrite=overwrite) as writer:
            low_high, nonzero, capped = None, 0, 0
            if threshold is None:
                logger.warning("%s has no positive intensity (empty slice): writing zeros", in_path)
                writer[:] = 0
                attributes.update(_attributes(settings, threshold, None, None, 0.0))
            else:
                low, high = (values.percentile(q) for q in settings.percentiles)
                fraction = n_tissue / int(np.prod(volume.shape[1:]))

                def apply(part: LateralBlock) -> tuple[int, int]:
                    data, n_capped = _speckle_capped(volume, part, settings.speckle_cap)
                    data = _flat_fielded(data, field, origins, part)
                    converted = normalize.to_dtype(normalize.normalize_values(data, low, high), settings.dtype)
                    writer[(slice(None), *part.inner)] = converted
                    return count_nonzero(converted), n_capped

                shape = volume.shape[1:]
                # Z-order: the output's pyramid is built from 2 x 2 groups of blocks as soon as they are written.
                parts = morton_order(lateral_blocks(shape, block), lambda part: part.origin)
                for n_nonzero, n_capped in tqdm(
                        ordered_map(apply, prefetched(parts, _column_files(volume), READ_AHEAD_BLOCKS), workers),
                        total=count_blocks(shape, block), desc="normalize", disable=not progress, leave=False):
                    nonzero, capped = nonzero + n_nonzero, capped + n_capped
                low_high = (low, high)
                attributes.update(_attributes(settings, threshold, low_high, field, fraction))
            writer.finalize(resolution, n_levels, attributes)
        write_normalize_qc(out_path, values, low_high, attributes, nonzero, int(np.prod(volume.shape)),
                           capped_voxels=capped)
    return attributes


def _tissue_statistics(
    volume: StoredArray, scratch: Path, settings: NormalizeSettings, origins: list[tuple[int, int]] | None,
    attributes: dict[str, Any], in_path: Any, progress: bool, workers: int | None,
) -> tuple[float | None, np.ndarray | None, LogHistogram | None, int]:
    """Passes 1 and 2: the tissue threshold, the flat field (None without ``origins``), the histogram of the
    tissue voxels and the number of tissue A-lines (None, None, None, 0 for an empty slice).

    The AIP and its smoothed version are scratch maps in ``scratch``.
    """
    block = lateral_block_size(volume.shape[0])
    aip = _store_aip(volume, scratch / "aip.ome.zarr", block, in_path, progress, workers)
    smoothed, aip_histogram = _store_smoothed(aip, scratch / "smoothed.ome.zarr", settings.mask_sigma_px, workers)
    threshold = normalize.tissue_threshold(aip_histogram)
    if threshold is None:
        return None, None, None, 0
    field = None if origins is None else _estimate_flatfield(aip, smoothed, threshold, origins, attributes)
    values, n_tissue = _tissue_histogram(volume, smoothed, threshold, field, origins, block, progress, workers)
    return threshold, field, values, n_tissue


def _check_settings(settings: NormalizeSettings) -> None:
    low, high = settings.percentiles
    if not 0 <= low < high <= 100:
        raise InputError(f"--percentiles must satisfy 0 <= LOW < HIGH <= 100, got {low} {high}")
    if not (np.isfinite(settings.speckle_cap) and settings.speckle_cap >= 0):
        raise InputError(f"--speckle_cap must be a finite number >= 0, got {settings.speckle_cap}")
    if settings.dtype not in NORMALIZE_DTYPES:
        raise InputError(f"unknown output dtype {settings.dtype!r}; choose one of {', '.join(NORMALIZE_DTYPES)}")


def _attributes(
    settings: NormalizeSettings, threshold: float | None, values: tuple[float, float] | None,
    field: np.ndarray | None, fraction: float,
) -> dict[str, Any]:
    return {
        "normalize_percentiles": list(settings.percentiles),
        "normalize_values": None if values is None else [float(v) for v in values],
        "tissue_threshold": threshold,
        "tissue_fraction": round(fraction, 6),
        "flatfield": field is not None,
        "speckle_cap": settings.speckle_cap,
    }


def _scratch_map(path: Path, shape: tuple[int, ...], chunks: tuple[int, ...]) -> OmeZarrWriter:
    """A float32 2D scratch map, written and read straight from its chunk files.

    It is never finalized: the scratch directory holding it is removed with it.
    """
    return OmeZarrWriter(path, shape, chunks=chunks, dtype=np.float32)


def _store_aip(
    volume: StoredArray, path: Path, block: int, in_path: Any, progress: bool, workers: int | None
) -> StoredArray:
    """Compute the AIP block by block into a scratch map; refuse NaN/inf."""
    shape = volume.shape[1:]
    target = _scratch_map(path, shape, (block, block))

    def project(part: LateralBlock) -> None:
        target[part.inner] = _checked_aip(volume[(slice(None), *part.inner)], part, in_path)

    parts = prefetched(lateral_blocks(shape, block), _column_files(volume), READ_AHEAD_BLOCKS)
    for _ in tqdm(ordered_map(project, parts, workers), total=count_blocks(shape, block),
                  desc="AIP", disable=not progress, leave=False):
        pass
    return target.stored_level0()


def _checked_aip(data: np.ndarray, part: LateralBlock, in_path: Any) -> np.ndarray:
    """The AIP (float32) of a block's voxels ``(z, y, x)``; refuse NaN/inf."""
    aip = data.mean(axis=0, dtype=np.float64)
    if not np.isfinite(aip).all():
        raise InputError(
            f"{in_path} has NaN or infinite voxels (near y={part.origin[0]}, x={part.origin[1]}); "
            "replace them (e.g. by 0) first"
        )
    return aip.astype(np.float32)


def _column_files(volume: StoredArray) -> Callable[[LateralBlock], list[Path]]:
    """The chunk files of a block's whole-depth column of ``volume`` (to announce them ahead)."""
    return lambda part: volume.chunk_files((slice(None), *part.inner))


def _speckle_capped(volume: StoredArray, part: LateralBlock, cap: float) -> tuple[np.ndarray, int]:
    """A block's voxels, capped at ``cap`` times their local mean within the block (as read with ``cap`` 0), and
    the number of voxels capped (:func:`linumpy.intensity.normalize.speckle_capped`).

    No halo is read: a halo of two A-lines reaches the neighbouring chunk columns, whose whole chunks would be
    decoded for them (the write pass's CPU time 2x on the ``large`` slice)."""
    data = volume[(slice(None), *part.inner)]
    if cap <= 0:
        return data, 0
    return normalize.speckle_capped(data, cap, (slice(None), slice(None)))


def _store_smoothed(
    aip: StoredArray, path: Path, sigma_px: float, workers: int | None
) -> tuple[StoredArray, LogHistogram]:
    """The smoothed AIP (:func:`linumpy.intensity.normalize.smooth_aip`), stored beside it, and its histogram.

    Chunk by chunk on the worker threads, each smoothed with a halo that covers the Gaussian's reach
    (``ceil(4 sigma)``; its edge values repeated at the map's borders, as the
    filter's ``nearest`` mode does): the values of the whole map smoothed at once. The histogram's
    counts are the chunks' summed (integers: the same whatever the order).
    """
    target = _scratch_map(path, aip.shape, aip.chunks)

    def smooth(part: LateralBlock) -> LogHistogram:
        values, partial = _smoothed_block(aip[part.outer], part, sigma_px)
        target[part.inner] = values
        return partial

    histogram = LogHistogram()
    # blocks of the larger chunk side: a side capped by the map's is its only chunk, so the blocks are whole chunks
    # (blocks sharing a chunk are read-modified-written by two threads at once: lost writes)
    for partial in ordered_map(smooth, lateral_blocks(aip.shape, max(aip.chunks), halo=_halo(sigma_px)), workers):
        histogram.merge(partial)
    return target.stored_level0(), histogram


def _halo(sigma_px: float) -> int:
    """A-lines around a block that its smoothed AIP depends on (the Gaussian's reach)."""
    return int(np.ceil(4 * sigma_px))


def _smoothed_block(outer: np.ndarray, part: LateralBlock, sigma_px: float) -> tuple[np.ndarray, LogHistogram]:
    """The smoothed AIP of a block's ``inner`` A-lines from the AIP of its ``outer`` ones, and its histogram."""
    values = normalize.smooth_aip(outer, sigma_px)[part.inner_in_outer]
    histogram = LogHistogram()
    histogram.add(values)
    return values, histogram


def _tile_origins(attributes: dict[str, Any], shape: tuple[int, ...], in_path: Any) -> list[tuple[int, int]]:
    """(y, x) of every tile: stitched positions if present, else the mosaic grid layout."""
    if "tile_shape" not in attributes or "grid_shape" not in attributes:
        raise InputError(
            f"{in_path} has no tile_shape/grid_shape linumpy attributes, so --flatfield cannot find "
            "its tiles; run without --flatfield or on a mosaic grid / stitched slice"
        )
    if "tile_positions_px" in attributes:
        return [(int(round(y)), int(round(x))) for _, _, y, x in attributes["tile_positions_px"]]
    tile_y, tile_x = (int(v) for v in attributes["tile_shape"][1:])
    rows, cols = (int(v) for v in attributes["grid_shape"])
    present = attributes.get("tiles_present") or [(r, c) for r in range(rows) for c in range(cols)]
    return [(int(r) * tile_y, int(c) * tile_x) for r, c in present]


def _estimate_flatfield(
    aip: StoredArray, smoothed: StoredArray, threshold: float, origins: list[tuple[int, int]],
    attributes: dict[str, Any],
) -> np.ndarray | None:
    """The flat-field of one tile from the tiles' AIPs masked where ``smoothed > threshold`` (tissue)
    (None with a warning if impossible)."""
    tile_yx = tuple(int(v) for v in attributes["tile_shape"][1:])
    estimator = FlatFieldEstimator(tile_yx)
    n_y, n_x = aip.shape
    for ty, tx in origins:
        y0, x0 = max(ty, 0), max(tx, 0)
        y1, x1 = min(ty + tile_yx[0], n_y), min(tx + tile_yx[1], n_x)
        if y0 >= y1 or x0 >= x1:
            continue
        region = (slice(y0, y1), slice(x0, x1))
        estimator.add(aip[region], smoothed[region] > threshold, offset=(y0 - ty, x0 - tx))
    field = estimator.estimate()
    if field is None:
        logger.warning("too little tissue in the tiles to estimate a flat-field: none applied")
    else:
        logger.info("flat-field from %d tiles: gain %.3f..%.3f", estimator.n_tiles, field.min(), field.max())
    return field


def _flat_fielded(
    data: np.ndarray, field: np.ndarray | None, origins: list[tuple[int, int]] | None, part: LateralBlock
) -> np.ndarray:
    """A block of voxels (float32) divided by the flat-field gain of its A-lines, if any."""
    data = data.astype(np.float32, copy=False)
    if field is None:
        return data
    shape = tuple(s.stop - s.start for s in part.inner)
    return data / flatfield_map(field, origins, part.origin, shape)


def _tissue_histogram(
    volume: StoredArray, smoothed: StoredArray, threshold: float, field: np.ndarray | None,
    origins: list[tuple[int, int]] | None, block: int, progress: bool, workers: int | None,
) -> tuple[LogHistogram, int]:
    """Histogram of the flat-fielded voxel values of the tissue A-lines, and the number of those A-lines."""

    def count(item: tuple[LateralBlock, np.ndarray]) -> tuple[LogHistogram, int]:
        part, mask = item
        partial = LogHistogram()
        n_tissue = int(np.count_nonzero(mask))
        if n_tissue:
            data = _flat_fielded(volume[(slice(None), *part.inner)], field, origins, part)
            # the tissue A-lines' voxels, gathered contiguous (cheaper than data[:, mask], same values)
            partial.add(np.compress(mask.ravel(), data.reshape(data.shape[0], -1), axis=1))
        return partial, n_tissue

    def tissue_files(item: tuple[LateralBlock, np.ndarray]) -> list[Path]:
        return column_files(item[0]) if item[1].any() else []  # a block without tissue is not read

    histogram, n_tissue = LogHistogram(), 0
    shape, column_files = volume.shape[1:], _column_files(volume)
    items = ((part, smoothed[part.inner] > threshold) for part in lateral_blocks(shape, block))
    for partial, n in tqdm(ordered_map(count, prefetched(items, tissue_files, READ_AHEAD_BLOCKS), workers),
                           total=count_blocks(shape, block), desc="percentiles", disable=not progress, leave=False):
        histogram.merge(partial)
        n_tissue += n
    return histogram, n_tissue


def _one_read_statistics(
    volume: StoredArray, settings: NormalizeSettings, in_path: Any, progress: bool, workers: int | None,
) -> tuple[float | None, LogHistogram | None, int]:
    """Passes 1 and 2 in one read of the input (no flat field): the tissue threshold, the histogram of the tissue
    voxels and the number of tissue A-lines (None, None, 0 for an empty slice).

    The tissue mask (the smoothed AIP above Otsu's threshold) is known only once every AIP is, so each block's
    voxels are counted apart for every rank of their A-line's smoothed AIP among the thresholds possible
    (:func:`linumpy.intensity.normalize.tissue_threshold_keys`,
    :class:`~linumpy.intensity.histogram.KeyedLogHistogram`);
    the threshold's rank then picks the tissue voxels' counts: the histogram of passes 1 and 2, the same counts.
    The smoothed AIP of a block's A-lines farther than the halo from its neighbours is its own AIP's (counted as
    it is read); that of its ring near them needs their AIPs: the ring's voxel bins wait, in memory, until they
    are read (about a row of blocks' rings, :func:`_with_neighbours`), the AIPs kept while a ring needs them.
    """
    block, shape = lateral_block_size(volume.shape[0]), volume.shape[1:]
    sigma_px, halo = settings.mask_sigma_px, _halo(settings.mask_sigma_px)
    bins = LogHistogram()
    keys = normalize.tissue_threshold_keys(bins)
    aip_histogram, voxels = LogHistogram(), KeyedLogHistogram(bins)

    def counted(smoothed: np.ndarray, voxel_bins: np.ndarray) -> tuple[LogHistogram, KeyedLogHistogram]:
        """The smoothed AIP's histogram and the voxels' counts by the A-lines' ranks among the thresholds."""
        histogram = LogHistogram()
        histogram.add(smoothed)
        ranks = np.searchsorted(keys, smoothed, side="left")  # the thresholds below each A-line's value
        return histogram, KeyedLogHistogram.of_block(ranks, voxel_bins, bins)

    def read(part: LateralBlock) -> tuple[LateralBlock, np.ndarray, np.ndarray, tuple]:
        data = volume[(slice(None), *part.inner)]
        aip, voxel_bins = _checked_aip(data, part, in_path), bins.value_bins(data)
        del data  # before the counting's arrays (peak memory)
        inside = _inside(part, shape, halo)
        own = counted(normalize.smooth_aip(aip, sigma_px)[inside], voxel_bins[(slice(None), *inside)])
        return part, aip, _ring(voxel_bins, inside), own

    def merged_as_read(items: Iterable[tuple]) -> Iterator[tuple[LateralBlock, np.ndarray, np.ndarray]]:
        for part, aip, ring_bins, (histogram, counts) in items:
            aip_histogram.merge(histogram)
            voxels.merge(counts)
            yield part, aip, ring_bins

    def count_ring(item: tuple[LateralBlock, np.ndarray, np.ndarray]) -> tuple[LogHistogram, KeyedLogHistogram]:
        part, outer, ring_bins = item
        smoothed, _ = _smoothed_block(outer, part, sigma_px)
        return counted(_ring(smoothed, _inside(part, shape, halo)), ring_bins)

    parts = prefetched(lateral_blocks(shape, block, halo=halo), _column_files(volume), READ_AHEAD_BLOCKS)
    rings = _with_neighbours(merged_as_read(ordered_map(read, parts, workers)), shape, block, halo)
    for histogram, counts in tqdm(ordered_map(count_ring, rings, workers), total=count_blocks(shape, block),
                                  desc="statistics", disable=not progress, leave=False):
        aip_histogram.merge(histogram)
        voxels.merge(counts)
    threshold = normalize.tissue_threshold(aip_histogram)
    if threshold is None:
        return None, None, 0
    rank = int(np.searchsorted(keys, np.float32(threshold)))
    if rank == keys.size or keys[rank] != np.float32(threshold):
        raise RuntimeError(f"tissue threshold {threshold!r} is not one of tissue_threshold_keys")
    values, n_tissue = voxels.above(rank)
    return threshold, values, n_tissue


def _inside(part: LateralBlock, shape: tuple[int, int], halo: int) -> tuple[slice, slice]:
    """The A-lines of a block (relative to it) whose smoothed AIP its own AIP decides: farther than ``halo`` from
    every other block (the volume's edges are no block's)."""
    starts = [halo if s.start > 0 else 0 for s in part.inner]
    stops = [s.stop - s.start - (halo if s.stop < n else 0) for s, n in zip(part.inner, shape)]
    return tuple(slice(start, max(start, stop)) for start, stop in zip(starts, stops))


def _ring(values: np.ndarray, inside: tuple[slice, slice]) -> np.ndarray:
    """The A-lines of a block (the last two axes of ``values``) outside ``inside``, flattened in one order
    whatever the leading axes: the rows above it, the columns left of it, right of it, the rows below it."""
    (y0, y1), (x0, x1) = ((s.start, s.stop) for s in inside)
    strips = (values[..., :y0, :], values[..., y0:y1, :x0], values[..., y0:y1, x1:], values[..., y1:, :])
    return np.concatenate([strip.reshape(*values.shape[:-2], -1) for strip in strips], axis=-1)


def _with_neighbours(
    blocks: Iterable[tuple[LateralBlock, np.ndarray, np.ndarray]], shape: tuple[int, int], block: int, halo: int,
) -> Iterator[tuple[LateralBlock, np.ndarray, np.ndarray]]:
    """``(part, AIP of its outer A-lines, payload)`` for every ``(part, AIP, payload)`` of ``blocks``
    (row-major, ``outer`` with the halo), each as soon as the blocks its halo reaches have come."""
    n_rows, n_columns = -(-shape[0] // block), -(-shape[1] // block)
    reach = -(-halo // block)  # blocks of halo
    aips: dict[tuple[int, int], np.ndarray] = {}
    waiting: deque[tuple[LateralBlock, Any]] = deque()

    def needs(part: LateralBlock) -> int:
        """The last block (row-major index) that part's halo reaches."""
        row, column = part.origin[0] // block, part.origin[1] // block
        return min(row + reach, n_rows - 1) * n_columns + min(column + reach, n_columns - 1)

    def gathered(part: LateralBlock) -> np.ndarray:
        outer = np.empty([s.stop - s.start for s in part.outer], np.float32)
        (y0, y1), (x0, x1) = ((s.start, s.stop) for s in part.outer)
        for row in range(y0 // block, -(-y1 // block)):
            for column in range(x0 // block, -(-x1 // block)):
                oy, ox = row * block, column * block
                aip = aips[(row, column)]
                ys, xs = slice(max(y0, oy), min(y1, oy + aip.shape[0])), slice(max(x0, ox), min(x1, ox + aip.shape[1]))
                outer[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0] = aip[ys.start - oy:ys.stop - oy,
                                                                                   xs.start - ox:xs.stop - ox]
        return outer

    for index, (part, aip, payload) in enumerate(blocks):
        aips[(part.origin[0] // block, part.origin[1] // block)] = aip
        waiting.append((part, payload))
        while waiting and needs(waiting[0][0]) <= index:
            ready, ready_payload = waiting.popleft()
            yield ready, gathered(ready), ready_payload
        first_row = (waiting[0][0] if waiting else part).origin[0] // block - reach  # the AIPs still needed
        for key in [key for key in aips if key[0] < first_row]:
            del aips[key]
    for ready, ready_payload in waiting:
        yield ready, gathered(ready), ready_payload
