"""Stitch one slice's mosaic grid OME-Zarr into a single 3D volume.

The mosaic grid holds the tiles side by side, ``(z, rows * tile_y, cols *
tile_x)``, overlaps not removed. Stitching:

1. reads the grid layout from the ``linumpy`` attributes;
2. computes each tile's average intensity projection and least plane mean, tile by tile,
   or takes them from the mosaic grid's AIP (:mod:`linumpy.stitching.summaries`);
3. estimates the tile positions (:mod:`linumpy.stitching.estimate`), or
   reuses a saved transform;
4. writes the output block by block: each lateral block, at all depths, is
   fused from the parts of the tiles covering it, at integer positions (the
   subpixel estimates rounded to the nearest pixel), with ``flatfield="auto"``
   each tile part divided by the tiles' flat field as it is read
   (:mod:`linumpy.stitching.fusion_flatfield`);
5. saves the transform as JSON, then the QC record (per-pair and per-tile
   confidence, pair residuals after the global fit, tiles placed by the
   stage model, a flag when they exceed a quarter) beside the output.

Memory is bounded by one tile (projections) and one output block with its
tile parts (fusion), whatever the slice size.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from linumpy.errors import InputError
from linumpy.io.atomic import check_can_write
from linumpy.io.prefetch import prefetch_in_background, prefetched
from linumpy.io.streamed_pyramid import morton_order
from linumpy.intensity.blocks import read_block
from linumpy.io.zarr import ZARR_MODULE, OmeZarrWriter, open_omezarr_level, read_omezarr_info
from linumpy.parallel import import_in_background, ordered_map, run_jobs
from linumpy.qc.flags import TEXTURED_SIGNIFICANCE
from linumpy.qc.metrics import stitching_metrics
from linumpy.qc.records import render_png, write_qc_record
from linumpy.stitching.blend import (
    BLEND_MODES,
    Box,
    PartCorrection,
    feather_weights,
    fuse_block,
    output_extent,
    placement_origins,
    tiles_in_box,
)
from linumpy.stitching.options import DEFAULT_FLATFIELD, DEFAULT_MAX_SHIFT_PX, FLATFIELD_MODES, TileIndex
from linumpy.stitching.slab_cache import SlabCache, slab_uses
from linumpy.stitching.summaries import (SummarySource, TileSummaries, aip_summaries_checked_aside,
                                         tile_summaries, unusable_aip_fallback)

if TYPE_CHECKING:
    from linumpy.io.zarr import StoredArray
    from linumpy.stitching.depth_check import StripReader
    from linumpy.stitching.lone_links import LoneLink
    from linumpy.stitching.fusion_flatfield import FusionFlatField, SignalLevels
    from linumpy.stitching.transform import PairRecord, TileTransform

logger = logging.getLogger(__name__)

#: The registration's and the fusion flat field's modules (scipy, about a second of serial imports): imported
#: on a thread of their own while the workers read the tiles for their projections; then zarr-python, which
#: only the writer needs (:data:`~linumpy.io.zarr.ZARR_MODULE`), while the pairs are registered.
REGISTRATION_MODULES = ("linumpy.stitching.estimate", "linumpy.stitching.fusion_flatfield",
                        "linumpy.stitching.transform")

#: Lateral size of the output chunks, pixels.
CHUNK_PX = 256
#: Lateral size of the fused blocks, pixels: one output chunk, which the writer encodes as it is (no copy of
#: it), so that a worker holds one chunk's planes. Blocks of 2 x 2 chunks (64 MB on the `large` slice) held four
#: times more, with their chunks' copies; the tile slabs they read are kept for the next blocks that read them
#: (:data:`SLAB_CACHE_BYTES`) and decoded about as often (``benchmarks/README.md``, session rss10).
BLOCK_PX = CHUNK_PX
#: Blocks span one input z-chunk, or fewer planes if that would exceed this (the planes of the output chunks).
MAX_BLOCK_BYTES = 16 * 2**20
#: Most bytes of decoded tile slabs kept for the blocks that read them again (:func:`tile_slabs`).
SLAB_CACHE_BYTES = 128 * 2**20
#: The chunk files a fused block reads are announced to the kernel this many blocks before it is queued.
READ_AHEAD_BLOCKS = 2
_REQUIRED_KEYS = ("tile_shape", "grid_shape", "tile_step_px", "tiles_present")


@dataclass(frozen=True)
class MosaicGridLayout:
    """Where the tiles are in a mosaic grid array.

    Attributes
    ----------
    tile_shape : tuple of int
        ``(z, y, x)`` of one tile.
    grid_shape : tuple of int
        ``(rows, cols)``.
    tile_step_px : tuple of float
        Nominal ``(y, x)`` step between neighbouring tiles.
    tiles_present : tuple of (row, col)
        Tiles that were acquired.
    """

    tile_shape: tuple[int, int, int]
    grid_shape: tuple[int, int]
    tile_step_px: tuple[float, float]
    tiles_present: tuple[TileIndex, ...]

    def tile_slices(self, tile: TileIndex) -> tuple[slice, slice]:
        """Return the ``(y, x)`` slices of ``tile`` in the mosaic grid array."""
        ty, tx = self.tile_shape[1:]
        return (slice(tile[0] * ty, (tile[0] + 1) * ty), slice(tile[1] * tx, (tile[1] + 1) * tx))

    def part_slices(self, tile: TileIndex, part: tuple[slice, slice]) -> tuple[slice, slice]:
        """Return the ``(y, x)`` slices in the mosaic grid array of ``part`` (``(y, x)`` slices in tile pixels)
        of ``tile``."""
        ys, xs = self.tile_slices(tile)
        return (slice(ys.start + part[0].start, ys.start + part[0].stop),
                slice(xs.start + part[1].start, xs.start + part[1].stop))


def mosaic_grid_layout(attributes: dict, shape: Sequence[int], source: str) -> MosaicGridLayout:
    """Read and check the grid layout of a mosaic grid from its attributes.

    Parameters
    ----------
    attributes : dict
        The file's ``linumpy`` attributes.
    shape : sequence of int
        Shape of the level-0 array.
    source : str
        Name of the file, for error messages.

    Raises
    ------
    InputError
        If the array is not 3D or the attributes do not describe it.
    """
    if len(shape) != 3:
        raise InputError(f"{source} is {len(shape)}D; stitching needs the 3D mosaic grid "
                         "(mosaic_grid_3d_zNN.ome.zarr from linum_create_mosaic_grid_3d.py)")
    missing = [key for key in _REQUIRED_KEYS if key not in (attributes or {})]
    if missing:
        raise InputError(f"{source} is not a mosaic grid: linumpy attributes lack "
                         f"{', '.join(missing)}; create it with linum_create_mosaic_grid_3d.py")
    try:
        layout = MosaicGridLayout(
            tile_shape=tuple(int(v) for v in attributes["tile_shape"]),
            grid_shape=tuple(int(v) for v in attributes["grid_shape"]),
            tile_step_px=tuple(float(v) for v in attributes["tile_step_px"]),
            tiles_present=tuple(sorted((int(r), int(c)) for r, c in attributes["tiles_present"])),
        )
    except (TypeError, ValueError) as error:
        raise InputError(f"{source} has malformed mosaic grid attributes ({error}); "
                         "recreate it with linum_create_mosaic_grid_3d.py") from error
    expected = (layout.tile_shape[0], layout.grid_shape[0] * layout.tile_shape[1],
                layout.grid_shape[1] * layout.tile_shape[2])
    if len(layout.tile_shape) != 3 or len(layout.grid_shape) != 2 or tuple(shape) != expected:
        raise InputError(f"{source} has shape {tuple(shape)} but its attributes describe "
                         f"{layout.grid_shape} tiles of {layout.tile_shape}; "
                         "recreate it with linum_create_mosaic_grid_3d.py")
    if not layout.tiles_present:
        raise InputError(f"{source} has no tiles (tiles_present is empty); nothing to stitch")
    outside = [t for t in layout.tiles_present
               if not (0 <= t[0] < layout.grid_shape[0] and 0 <= t[1] < layout.grid_shape[1])]
    if outside:
        raise InputError(f"{source}: tiles_present lists {outside[0]} outside the "
                         f"{layout.grid_shape} grid; recreate it with linum_create_mosaic_grid_3d.py")
    return layout


def tile_projections(data, layout: MosaicGridLayout, progress: bool = False,
                     workers: int | None = None) -> dict[TileIndex, np.ndarray]:
    """Return the average intensity projection of every present tile, read from the grid (:func:`tile_summaries`)."""
    return tile_summaries(data, layout, progress, workers).projections


def default_transform_path(out_path: str | os.PathLike) -> Path:
    """Return ``<out stem>_transform.json`` for an output ``<out stem>.ome.zarr``."""
    out_path = Path(out_path)
    name = out_path.name
    stem = name[: -len(".ome.zarr")] if name.endswith(".ome.zarr") else out_path.stem
    return out_path.with_name(f"{stem}_transform.json")


def _blocks(extent: tuple[int, int], block: int) -> Iterator[Box]:
    for y0 in range(0, extent[0], block):
        for x0 in range(0, extent[1], block):
            yield Box(y0, min(y0 + block, extent[0]), x0, min(x0 + block, extent[1]))


def _to_dtype(block: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Cast a float block to the output dtype (rounded and clipped for integers)."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(block), info.min, info.max).astype(dtype)
    return block.astype(dtype, copy=False)


def stitch_mosaic_grid(
    in_path: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    transform_path: str | os.PathLike | None = None,
    transform_out: str | os.PathLike | None = None,
    aip_path: str | os.PathLike | None = None,
    blend: str = "feather",
    max_shift_px: float = DEFAULT_MAX_SHIFT_PX,
    flatfield: str = DEFAULT_FLATFIELD,
    n_levels: int | None = None,
    compression: str = "blosc-lz4",
    overwrite: bool = False,
    progress: bool = False,
    workers: int | None = None,
) -> TileTransform:
    """Stitch a mosaic grid OME-Zarr into ``out_path`` and save its transform.

    Parameters
    ----------
    in_path : path-like
        Mosaic grid OME-Zarr ``(z, rows * tile_y, cols * tile_x)``.
    out_path : path-like
        Stitched OME-Zarr to write.
    transform_path : path-like, optional
        Reuse this transform JSON instead of estimating one.
    transform_out : path-like, optional
        Where to save the transform (default ``<out stem>_transform.json``).
    aip_path : path-like, optional
        The mosaic grid step's AIP of this grid: the tiles' summaries are taken from it when it holds them
        (:func:`~linumpy.stitching.summaries.summaries_from_aip`) instead of reading every tile.
    blend : {"feather", "average", "max"}
        Fusion of overlapping tiles.
    max_shift_px : float
        Largest correction of the nominal tile offsets accepted by registration.
    flatfield : {"none", "auto"}
        ``"auto"``: divide the tiles' flat field out at fusion when it is well
        supported (:func:`~linumpy.stitching.fusion_flatfield.fusion_flat_field`).
    n_levels : int, optional
        Pyramid levels (writer default if ``None``).
    compression : str
        Codec name (see :mod:`linumpy.io.codecs`).
    overwrite : bool
        Replace existing outputs.
    progress : bool
        Show progress bars.
    workers : int, optional
        Threads reading, fusing and writing blocks (default: :func:`linumpy.parallel.default_workers`).

    Returns
    -------
    TileTransform
        The transform applied.
    """
    if blend not in BLEND_MODES:
        raise InputError(f"unknown blend mode {blend!r}; choose one of {', '.join(BLEND_MODES)}")
    if not max_shift_px > 0:
        raise InputError(f"--max_shift_px must be > 0, got {max_shift_px}")
    if flatfield not in FLATFIELD_MODES:
        raise InputError(f"unknown flat field mode {flatfield!r}; choose one of {', '.join(FLATFIELD_MODES)}")
    import_in_background(*REGISTRATION_MODULES, ZARR_MODULE)
    transform_out = Path(transform_out) if transform_out else default_transform_path(out_path)
    check_can_write(out_path, overwrite)
    check_can_write(transform_out, overwrite)
    info = read_omezarr_info(in_path)
    data, resolution = open_omezarr_level(in_path)
    layout = mosaic_grid_layout(info.attributes, data.shape, str(in_path))
    summaries, source, check = None, SummarySource("none", "not needed: transform given and flat field off"), None
    with ThreadPoolExecutor(1, thread_name_prefix="stitch-flat") as aside:
        # Beside the estimate (serial work otherwise): the AIP's check against the grid (a tile read, decoded and
        # summarised), then the fusion flat field's smoothed projections and levels (independent of the
        # positions). A failed check (an AIP that is not this grid's) reads the tiles and starts again.
        if transform_path is None or flatfield != "none":
            summaries, source, check = aip_summaries_checked_aside(data, layout, aip_path, aside, progress, workers)
        # The fusion's first reads are announced once the AIP's check has read its tile (the check first: its
        # thread computes the fusion flat field's levels next), while the disk is idle for the estimate.
        read_ahead: list[threading.Thread] = []

        def announce(_: Any = None) -> None:
            read_ahead.append(prefetch_in_background(stage_first_reads(data, layout), "stitch-read-ahead"))

        if check is None:
            announce()
        else:
            check.add_done_callback(announce)

        def estimate(summaries: TileSummaries | None) -> tuple[TileTransform, Future | None]:
            levels = aside.submit(_signal_levels, summaries) if flatfield == "auto" else None
            return obtain_transform(layout, str(in_path), transform_path, summaries, max_shift_px, progress,
                                    workers, functools.partial(read_strip, data, layout)), levels

        transform, levels = estimate(summaries)
        if check is not None and (error := check.result()) is not None:
            summaries, source = unusable_aip_fallback(data, layout, error, progress, workers)
            transform, levels = estimate(summaries)
        from linumpy.stitching.fusion_flatfield import FusionFlatField
        from linumpy.stitching.transform import save_transform

        positions = {tile: transform.position(tile) for tile in layout.tiles_present}
        # The fusion flat field's fit (serial work between the estimate and the fusion otherwise) runs here,
        # beside the fusion's start: its jobs read and decode their first tiles, then wait for it
        # (:func:`write_fused`). Queued behind the levels it fits on.
        flat: FusionFlatField | Future[FusionFlatField] = (
            FusionFlatField("off") if levels is None else aside.submit(_fused_flat_field, levels, positions))
        del summaries, levels
        # The QC record depends on the transform and the flat field: its figure (matplotlib's import, the drawing
        # and the PNG rendering, about a second of serial work after the fusion otherwise) is made beside the
        # fusion.
        with ThreadPoolExecutor(1, thread_name_prefix="stitch-qc") as qc_thread:
            qc = qc_thread.submit(_stitch_qc_once_fitted, transform, layout, flat, source, max_shift_px)
            write_fused(data, layout, positions, out_path, resolution, info.attributes, blend=blend, flat=flat,
                        n_levels=n_levels, compression=compression, overwrite=overwrite,
                        progress=progress, workers=workers)
    save_transform(transform, transform_out, overwrite=overwrite)
    metrics, figures, flags = qc.result()
    write_qc_record(out_path, "stitch_3d", metrics, figures, flags=flags)
    for thread in read_ahead:
        thread.join()
    return transform


def _fused_flat_field(levels: Future[SignalLevels], positions: Mapping[TileIndex, Sequence[float]]) -> FusionFlatField:
    """:func:`~linumpy.stitching.fusion_flatfield.fusion_flat_field` on the ``levels`` once computed."""
    from linumpy.stitching.fusion_flatfield import fusion_flat_field

    return fusion_flat_field(levels.result(), positions)


def _stitch_qc_once_fitted(transform: TileTransform, layout: MosaicGridLayout,
                           flat: FusionFlatField | Future[FusionFlatField], summary_source: SummarySource,
                           max_shift_px: float) -> tuple[dict[str, Any], dict[str, bytes], list[str]]:
    """:func:`stitch_qc`, once the flat field ``flat`` (or its future) is fitted."""
    return stitch_qc(transform, layout, flat.result() if isinstance(flat, Future) else flat, summary_source,
                     max_shift_px)


def _signal_levels(summaries: TileSummaries) -> SignalLevels:
    """The fusion flat field's inputs that do not depend on the positions
    (:func:`~linumpy.stitching.fusion_flatfield.signal_levels`)."""
    from linumpy.stitching.fusion_flatfield import signal_levels

    return signal_levels(summaries.projections, summaries.least_plane_means)


def far_bridge_flag(pair: tuple[TileIndex, TileIndex], transform: TileTransform) -> str:
    """The red flag of a kept far bridge: a pair on no loop, departing from the stage model's step beyond the
    other kept pairs, that alone decides where the tiles on its side lie (``far_bridge_kept``)."""
    a, b = pair
    step = transform.stage_model.position(b) - transform.stage_model.position(a)
    departure = float(np.max(np.abs(np.subtract(transform.position(b), transform.position(a)) - step)))
    side = sorted(t for t, record in transform.tiles.items() if record.far_bridge_kept)
    return (f"far bridge {a}-{b} kept: one pair on no loop, {departure:.1f} px from the stage's step (beyond the "
            f"other pairs), alone places {len(side)} tile(s) {', '.join(map(str, side))}: check the stitched slice")


def far_lone_links(transform: TileTransform) -> list[LoneLink]:
    """The accepted pairs on no loop of ``transform`` that place tiles beyond the search window
    (:func:`~linumpy.stitching.lone_links.far_lone_links`): those the estimate kept
    (:func:`~linumpy.stitching.lone_links.far_lone_links_to_stage`: their side's other overlaps prefer the
    link's placement, or the solve without the link drops other pairs), or any in a transform written before
    session lone60.

    Returns ``[(pair, tiles, deviation, window)]``, pixels (per axis), the tiles beyond the window only.
    """
    from linumpy.stitching.lone_links import far_lone_links as beyond_window

    links = [(r.a, r.b) for r in transform.pairs if r.accepted]
    positions = {t: np.asarray(transform.position(t), float) for pair in links for t in pair}
    return beyond_window(links, positions, transform.stage_model)


def far_lone_link_flag(link: LoneLink) -> str:
    """The red flag of a lone link placing tiles beyond the search window (:func:`far_lone_links`)."""
    (a, b), tiles, deviation, window = link
    return (f"lone link {a}-{b} places {len(tiles)} tile(s) {', '.join(map(str, tiles))} up to {deviation:.1f} px "
            f"from their stage positions, beyond the search window ({window:.1f} px): check the stitched slice")


def weak_along_ridge(transform: TileTransform) -> list[TileIndex]:
    """The registered tiles, not ``weak``, that the accepted pairs of confident significance measuring every
    direction (no edge link, ``free_direction`` None) do not join to the largest piece of such pairs: an
    edge link joins them to it, and along its ridge (where its evidence does not tell one offset from
    another) only weak links, or edge links, place them. Fresh harsh foreign seed 159, slice 2: the column
    {(1, 0), (2, 0)}, joined by the edge link (0, 0)-(1, 0) (significance 3.57, right across its ridge,
    3.9 px off along it) and the weak (2, 0)-(2, 1) (0.85, 2.9 px off), lay 2.3 and 2.4 px from the truth
    (their stage positions 4.8 px), not ``weak``. A QC field only (no position changes, no red flag): such
    tiles are often right (the weak links right), measured in ``benchmarks/README.md``, session lone60.
    """
    from linumpy.stitching.pair_terms import CONFIDENT_SIGNIFICANCE
    from linumpy.stitching.reanchor import pieces

    kept = [r for r in transform.pairs if r.accepted]
    registered = {t for r in kept for t in (r.a, r.b)}
    isotropic = [(r.a, r.b) for r in kept if r.significance >= CONFIDENT_SIGNIFICANCE and r.free_direction is None]
    largest = set((pieces(registered, isotropic) or [[]])[0])
    return sorted(t for t in registered - largest if not transform.tiles[t].weak)


#: A weak lone link: ``(pair, significance, tiles)``, the tiles on its side (:func:`weak_lone_links`).
WeakLoneLink = tuple[tuple[TileIndex, TileIndex], float, list[TileIndex]]


def weak_lone_links(transform: TileTransform) -> list[WeakLoneLink]:
    """The accepted pairs below confident significance, measuring every direction (no edge link), that lie on no
    loop of such accepted pairs: each alone places the tiles on its smaller side (those the other such pairs
    join to it), since a loop through an edge link closes along its ridge whatever the link says. ``8x8 harsh``
    seed 110 of the stitching matrix: {(0, 5), (0, 6), (1, 5), (1, 6), (2, 5), (2, 6)}, right among itself
    (significance 3.4-7.5), hung on (2, 5)-(3, 5) (0.80, 13.3 px off); its loops closed only through the edge
    links (1, 6)-(1, 7) and (1, 7)-(2, 7), 9.9 and 7.6 px off along their ridges: its tiles 11.8-12.1 px from the
    truth (stage 6-8 px), not ``weak``, no flag. A QC field only (no flag): on the simulator's ``8x8 harsh``
    tuning seeds a quarter of the tiles it names are off by more than 1.5 px (``benchmarks/README.md``,
    session harsh8).

    Returns ``[(pair, significance, tiles)]``, in the order of ``transform.pairs``.
    """
    from linumpy.stitching.pair_terms import CONFIDENT_SIGNIFICANCE
    from linumpy.stitching.global_solve import PairOffset, bridges
    from linumpy.stitching.reanchor import pieces

    kept = [r for r in transform.pairs if r.accepted]
    registered = {t for r in kept for t in (r.a, r.b)}
    isotropic = [r for r in kept if r.free_direction is None]
    found = []
    for k in bridges([PairOffset(r.a, r.b, (0.0, 0.0), 1.0) for r in isotropic]):
        link = isotropic[k]
        if link.significance >= CONFIDENT_SIGNIFICANCE:
            continue
        parts = pieces(registered, [(r.a, r.b) for j, r in enumerate(isotropic) if j != k])
        side = min((next(p for p in parts if t in p) for t in (link.a, link.b)), key=lambda p: (len(p), p))
        found.append(((link.a, link.b), link.significance, sorted(side)))
    return found


def lone_links_refused_flag(transform: TileTransform) -> str | None:
    """The red flag of the lone links the estimate refused for placing tiles beyond the search window, their
    tiles put on the stage model (:func:`~linumpy.stitching.lone_links.far_lone_links_to_stage`) or, refused by
    the first solve (:func:`~linumpy.stitching.lone_links.far_side_unsupported`), placed by their other
    overlaps, if any."""
    from linumpy.stitching.transform import FAR_LONE_LINK_REFUSED, FAR_LONE_LINK_REFUSED_FIRST

    refusals = (FAR_LONE_LINK_REFUSED, FAR_LONE_LINK_REFUSED_FIRST)
    links = [f"{r.a}-{r.b}" for r in transform.pairs if r.status in refusals]
    if not links:
        return None
    tiles = sorted(t for t, record in transform.tiles.items() if record.far_lone_link_to_stage)
    searched = sorted(t for t, record in transform.tiles.items() if record.far_lone_link_searched)
    return (f"lone link(s) {', '.join(links)} refused: they placed tiles beyond the search window; "
            f"{len(tiles)} tile(s) {', '.join(map(str, tiles))} on the stage model"
            + (f", {len(searched)} tile(s) {', '.join(map(str, searched))} placed by their other overlaps"
               if searched else "") + ": check the stitched slice")


#: A slice is flagged when more than this fraction of its tiles fall back to the stage model.
MAX_STAGE_FALLBACK_FRACTION = 0.25


def untextured_tiles(tiles: Sequence[TileIndex], pairs: Sequence[PairRecord]) -> list[TileIndex]:
    """The tiles of ``tiles`` none of whose overlaps in ``pairs`` reached the significance of a confident pair
    (:data:`~linumpy.qc.flags.TEXTURED_SIGNIFICANCE`): nothing in them to register, gel or tissue too faint.

    Examples
    --------
    >>> from linumpy.stitching.transform import PairRecord
    >>> pairs = [PairRecord((0, 0), (0, 1), (0.0, 90.0), 0.1, False, significance=0.4),
    ...          PairRecord((0, 1), (1, 1), (90.0, 0.0), 0.6, False, significance=2.7)]
    >>> untextured_tiles([(0, 0), (0, 1)], pairs)
    [(0, 0)]
    """
    textured = {tile for pair in pairs if pair.significance >= TEXTURED_SIGNIFICANCE for tile in (pair.a, pair.b)}
    return [tile for tile in tiles if tile not in textured]


def stage_fallback_flag(n_fallback: int, n_untextured: int, n_tiles: int) -> str:
    """The stitch record's flag for a slice with ``n_fallback`` of its ``n_tiles`` tiles on the stage model,
    ``n_untextured`` of them without texture in any overlap (:func:`untextured_tiles`).

    Examples
    --------
    >>> stage_fallback_flag(12, 12, 36)
    '12/36 tiles placed by the stage model (no validated registration; 12 of them without an overlap of \
significance >= 2: gel or tissue too faint to register): check the stitched slice'
    >>> stage_fallback_flag(5, 0, 16)
    '5/16 tiles placed by the stage model (no validated registration): check the stitched slice'
    """
    untextured = (f"; {n_untextured} of them without an overlap of significance >= {TEXTURED_SIGNIFICANCE:g}: "
                  "gel or tissue too faint to register") if n_untextured else ""
    return f"{n_fallback}/{n_tiles} tiles placed by the stage model (no validated registration{untextured}): " \
        "check the stitched slice"


def stitch_qc(transform: TileTransform, layout: MosaicGridLayout, flat: FusionFlatField,
              summary_source: SummarySource, max_shift_px: float = DEFAULT_MAX_SHIFT_PX,
              ) -> tuple[dict[str, Any], dict[str, bytes], list[str]]:
    """The stitching QC record's metrics, figure (rendered) and flags, from the transform's diagnostics.

    Returns ``(metrics, figures, flags)`` for :func:`linumpy.qc.records.write_qc_record`.

    Metrics are those of :func:`linumpy.qc.metrics.stitching_metrics` (its
    ``confidence`` is the median confidence of the accepted pairs, 0.5 at the
    acceptance threshold) plus ``n_tiles``, ``n_stage_fallback_tiles`` (``n_stage_fallback_untextured_tiles`` of them
    without texture in any overlap, :func:`untextured_tiles`),
    ``stage_fallback_fraction``, ``min_significance``, ``pair_residuals_px``,
    the stage residual model and its leave-one-out validation
    (:func:`~linumpy.stitching.transform.stage_residual_fields`), the
    per-pair and per-tile details ``pairs`` and ``tiles``, and ``fusion_flatfield``
    (:meth:`~linumpy.stitching.fusion_flatfield.FusionFlatField.qc_fields`: whether the
    fusion divided a flat field out, its support and range, or why not), and ``tile_summaries``
    (``summary_source``: whether the tiles' projections came from the mosaic grid's AIP or were
    read from the tiles, and why). The record's
    ``flags`` name the slice when more than :data:`MAX_STAGE_FALLBACK_FRACTION`
    of its tiles were placed by the stage model, or by the stage model and weak
    links only (``n_weak_tiles``; ``n_weak_along_ridge_tiles`` counts those placed along an edge link's
    ridge by weak links only, :func:`weak_along_ridge`, no flag; ``n_weak_lone_link_tiles`` those one weak link
    measuring every direction alone places, ``weak_lone_links`` those links and their significance,
    :func:`weak_lone_links`, no flag; ``max_tile_sigma_px`` is the largest honest standard error of a tile;
    ``n_lone_link_refused_tiles`` counts the tiles whose lone far link the joint search refused,
    ``n_far_link_refused_tiles`` those with a confident pair refused as unchecked and beyond the stage's error,
    ``n_weak_link_swapped_tiles`` those with a searched link swapped for a clearly more
    significant one, ``n_far_bridge_kept_tiles`` those placed by a pair departing beyond the
    other pairs, kept because it puts them within the stage's window (``n_far_bridges_kept`` counts such
    pairs, each also a flag, :func:`far_bridge_flag`; ``n_far_bridges_refused`` those refused),
    ``n_far_lone_link_tiles`` those an accepted pair on no loop places beyond the search window (each such
    pair a flag, :func:`far_lone_links`), ``n_far_lone_link_to_stage_tiles`` those put on the stage model
    because such a link was refused (one flag, :func:`lone_links_refused_flag`),
    ``n_far_lone_link_searched_tiles`` those placed by their other overlaps once the first solve refused such a
    link,
    ``n_lone_edge_link_along_stage_tiles`` those on the stage model along the ridge of their lone edge link,
    kept across it only (no flag),
    ``n_far_weak_peak_refused_tiles``
    those refused a corroborated weak peak beyond the stage's error, ``n_weak_piece_to_stage_tiles``
    those of weakly attached pieces put on the stage model, ``n_unsupported_placement_dropped_tiles`` those
    whose joint placement lost a pair and whose other pairs held no significant peak without it,
    ``n_beyond_edge_ridges_tiles`` those whose links were dropped because the first solve put them beyond the
    ridges of all their edge links, ``n_costly_link_refused_tiles`` those of a joint placement refused because
    a link of it made the solve drop pairs kept before, ``n_corroboration_refused_tiles`` those refused a
    corroborated weak peak that an edge link held off its own peak along its ridge, no link on its own peak,
    ``n_tied_to_left_out_tiles`` those refused a corroborated weak peak for a stronger overlap with a tile left
    out, ``n_rigid_piece_tiles`` those placed as a rigid piece at their stage-model mean
    (:func:`linumpy.stitching.stage_pieces.place_rigid_pieces`), ``n_rigid_join_links`` the weak pairs kept because
    they joined pieces of strong pairs on a loop, placed as one (status
    :data:`~linumpy.stitching.transform.RIGID_PIECES_JOINED`), ``n_main_join_links`` the pairs kept because they
    placed a piece of strong pairs by two or more links on a loop to the main group
    (:func:`linumpy.stitching.stage_pieces.pieces_joined_to_main`, status
    :data:`~linumpy.stitching.transform.PIECE_JOINED_TO_MAIN`), ``n_main_join_check_links`` the pairs refused in
    depth whose own peak checked a piece's one such link as its second (status
    :data:`~linumpy.stitching.transform.REFUSED_JOIN_CHECK`), ``n_open_loop_tiles`` those placed through a loop
    of kept pairs that does not close, whose largest miss
    is ``open_loop_miss_px``, per tile ``open_loop_px``; a warning of the report,
    :func:`linumpy.qc.flags.open_loop_warnings`), ``n_open_loop_to_stage_tiles`` those of them whose piece,
    beyond the stage's error, was put on the stage model (per tile ``open_loop_to_stage``,
    :func:`linumpy.stitching.tile_records.far_open_loop_pieces_to_stage`). ``n_border_peak_links`` counts the pairs whose own peak lies on
    the border of the scored window (per pair ``border_peak``: no local maximum), refused as evidence (their
    maps still serve the joint searches; one accepted there at that peak widens its tiles' ``sigma_px`` by the
    search window's variance, which the tile-bar flag reads). ``n_depth_checked_links`` counts the candidate, not
    strong pairs registered again on depth ranges of their overlap strips (per pair ``depth_disagreement_px``,
    :mod:`linumpy.stitching.depth_check`), ``n_depth_refused_links`` those refused as evidence of their own because
    a range placed them more than :data:`~linumpy.stitching.depth_check.DEPTH_AGREEMENT_PX` away and no loop kept
    them (:func:`~linumpy.stitching.depth_check.refused_by_a_margin`; status ``refused,
    its peak not repeated ...``; no search reads them either,
    :func:`~linumpy.stitching.depth_check.out_of_the_searches`), ``n_depth_refused_on_stage_tiles`` the tiles of
    such pairs left on the stage model (per tile ``depth_refused_on_stage``). ``n_depth_confirmed_links`` counts the
    checked pairs a range placed beyond that bar but their most significant range confirmed, not refused (per pair
    ``depth_confirmed_significance``, that range's significance;
    :func:`~linumpy.stitching.depth_check.judged_disagreement`).
    ``n_unlocated_links`` counts the accepted pairs
    whose match leaves their offset unlocated toward that border by
    :data:`~linumpy.stitching.pairwise.MIN_UNLOCATED_COUNT_PX` or more (per pair ``unlocated_px``,
    :func:`~linumpy.stitching.pairwise.unlocated_width`): each adds ``unlocated_px**2 / 3`` on its step's axis to
    its tiles' ``sigma_px``, which the tile-bar flag reads. ``n_split_peak_links`` counts the pairs at their own
    registration whose evidence peak has a better match beside it (per pair ``split_peak``,
    :func:`~linumpy.stitching.pairwise.split_peak`).
    ``n_settled_links`` counts the accepted pairs a search placed at a whole pixel where their sub-pixel fit left
    its box, whose offset was settled from their evidence as their own registration's peak (per pair ``settled``,
    :func:`~linumpy.stitching.pairwise.settled_search_offset`).
    ``n_absorbed_votes`` counts the candidates not kept that the solve contradicted across a kept link on no loop
    but the kept pairs absorbed when solved with them: no vote against that link (per pair ``absorbed_vote``,
    :func:`~linumpy.stitching.outvoted.absorbed`).
    ``n_loose_loop_links`` counts the candidates kept because they close the loop of a loose kept link on no loop
    (its sub-pixel fit's 1 px placeholder error), the solve with them keeping every kept pair (status
    :data:`~linumpy.stitching.transform.LOOSE_LOOP_CLOSED`, :func:`~linumpy.stitching.loose_loops.closed_loose_loops`).
    ``n_edge_loop_links`` counts the candidates kept because they close the loop of a kept edge link on no loop, the
    unweighted solve with them, the link free along its ridge, keeping every kept pair (status
    :data:`~linumpy.stitching.transform.EDGE_LOOP_CLOSED`).
    ``n_depth_range_peak_links`` counts the pairs refused in depth that took the offset of their most significant
    depth range, strong and located (per pair ``depth_range_peak``,
    :func:`~linumpy.stitching.depth_check.strong_range_peak`).
    ``n_depth_corroborated_links`` counts the pairs refused in depth that kept their own peak, their two most
    significant depth ranges confident and near it (per pair ``depth_corroborated``,
    :func:`~linumpy.stitching.depth_check.corroborated_in_depth`).
    ``n_hinge_links``, ``hinge_links`` and
    ``tile_off_probability`` (per tile ``hinge_links`` and ``off_probability``) come from
    :func:`linumpy.qc.tile_risk.tile_risk` (``max_shift_px``, the estimate's search window, weighs the edge links
    as the solve did); a flag (:func:`hinge_flag`) when the slice's probability reaches
    :data:`~linumpy.qc.tile_risk.FLAG_PROBABILITY`. The figure shows each pair's residual after the global fit,
    pairs that fell back to the stage model dashed. Pair offsets and tile positions share one convention
    (``position(b) - position(a)``).
    """
    from linumpy.qc.tile_risk import hinge_flag, risk_fields, tile_risk, tile_risk_fields
    from linumpy.stitching.depth_check import DEPTH_AGREEMENT_PX
    from linumpy.stitching.transform import (EDGE_LOOP_CLOSED, FAR_BRIDGE_KEPT, FAR_BRIDGE_REFUSED,
                                             LOOSE_LOOP_CLOSED, PIECE_JOINED_TO_MAIN, REFUSED_JOIN_CHECK,
                                             RIGID_PIECES_JOINED, STRONG_SURVIVOR_KEPT,
                                             depth_disagreement_field, stage_residual_fields)

    pairs = [(record.a, record.b) for record in transform.pairs]
    positions = {tile: transform.position(tile) for tile in layout.tiles_present}
    for a, b in pairs:
        positions.setdefault(a, transform.position(a))
        positions.setdefault(b, transform.position(b))
    accepted = [record.accepted for record in transform.pairs]
    metrics, residuals = stitching_metrics(
        pairs, [record.offset for record in transform.pairs],
        [record.confidence for record in transform.pairs], accepted, positions,
        [record.free_direction for record in transform.pairs],
    )
    n_tiles = len(layout.tiles_present)
    fallback = transform.stage_fallback_tiles()
    metrics["n_tiles"] = n_tiles
    metrics["n_stage_fallback_tiles"] = len(fallback)
    metrics["stage_fallback_fraction"] = len(fallback) / n_tiles
    untextured = untextured_tiles(fallback, transform.pairs)
    metrics["n_stage_fallback_untextured_tiles"] = len(untextured)
    metrics["n_corroborated_tiles"] = sum(record.corroborated for record in transform.tiles.values())
    weak = [t for t, record in transform.tiles.items() if record.weak]
    metrics["n_weak_tiles"] = len(weak)
    along_ridge = weak_along_ridge(transform)
    metrics["n_weak_along_ridge_tiles"] = len(along_ridge)
    weak_lone = weak_lone_links(transform)
    on_weak_lone = {t for _, _, side in weak_lone for t in side}
    metrics["n_weak_lone_link_tiles"] = len(on_weak_lone)
    metrics["weak_lone_links"] = {f"{a}-{b}": round(significance, 2) for (a, b), significance, _ in weak_lone}
    metrics["n_lone_link_refused_tiles"] = sum(record.lone_link_refused for record in transform.tiles.values())
    metrics["n_far_link_refused_tiles"] = sum(record.far_link_refused for record in transform.tiles.values())
    metrics["n_weak_link_swapped_tiles"] = sum(record.weak_link_swapped for record in transform.tiles.values())
    metrics["n_far_bridge_kept_tiles"] = sum(record.far_bridge_kept for record in transform.tiles.values())
    far_bridges = transform.far_bridges(FAR_BRIDGE_KEPT)
    metrics["n_far_bridges_kept"] = len(far_bridges)
    metrics["n_far_bridges_refused"] = len(transform.far_bridges(FAR_BRIDGE_REFUSED))
    metrics["n_strong_survivor_links"] = sum(r.status == STRONG_SURVIVOR_KEPT for r in transform.pairs)
    metrics["n_loose_loop_links"] = sum(r.status == LOOSE_LOOP_CLOSED for r in transform.pairs)
    metrics["n_edge_loop_links"] = sum(r.status == EDGE_LOOP_CLOSED for r in transform.pairs)
    lone = far_lone_links(transform)
    metrics["n_far_lone_link_tiles"] = sum(len(tiles) for _, tiles, _, _ in lone)
    metrics["n_far_lone_link_to_stage_tiles"] = sum(record.far_lone_link_to_stage
                                                    for record in transform.tiles.values())
    metrics["n_far_lone_link_searched_tiles"] = sum(record.far_lone_link_searched
                                                    for record in transform.tiles.values())
    metrics["n_lone_edge_link_along_stage_tiles"] = sum(record.lone_edge_link_along_stage
                                                        for record in transform.tiles.values())
    metrics["n_far_weak_peak_refused_tiles"] = sum(record.far_weak_peak_refused
                                                   for record in transform.tiles.values())
    metrics["n_weak_piece_to_stage_tiles"] = sum(record.weak_piece_to_stage for record in transform.tiles.values())
    metrics["n_unsupported_placement_dropped_tiles"] = sum(record.unsupported_placement_dropped
                                                           for record in transform.tiles.values())
    metrics["n_beyond_edge_ridges_tiles"] = sum(record.beyond_edge_ridges for record in transform.tiles.values())
    metrics["n_costly_link_refused_tiles"] = sum(record.costly_link_refused for record in transform.tiles.values())
    metrics["n_corroboration_refused_tiles"] = sum(record.corroboration_refused
                                                   for record in transform.tiles.values())
    metrics["n_tied_to_left_out_tiles"] = sum(record.tied_to_left_out for record in transform.tiles.values())
    metrics["n_rigid_piece_tiles"] = sum(record.rigid_piece for record in transform.tiles.values())
    metrics["n_rigid_join_links"] = sum(r.status == RIGID_PIECES_JOINED for r in transform.pairs)
    metrics["n_main_join_links"] = sum(r.status == PIECE_JOINED_TO_MAIN for r in transform.pairs)
    metrics["n_main_join_check_links"] = sum(r.status == REFUSED_JOIN_CHECK for r in transform.pairs)
    open_loop = [record.open_loop_px for record in transform.tiles.values() if np.isfinite(record.open_loop_px)]
    metrics["n_open_loop_tiles"] = len(open_loop)
    metrics["open_loop_miss_px"] = round(max(open_loop), 3) if open_loop else None
    metrics["n_open_loop_to_stage_tiles"] = sum(record.open_loop_to_stage for record in transform.tiles.values())
    metrics["n_depth_refused_on_stage_tiles"] = sum(record.depth_refused_on_stage
                                                    for record in transform.tiles.values())
    risk = tile_risk(transform, max_shift_px)
    metrics.update(risk_fields(risk))
    sigmas = [record.sigma_px for record in transform.tiles.values() if np.isfinite(record.sigma_px)]
    metrics["max_tile_sigma_px"] = round(max(sigmas), 3) if sigmas else None
    metrics["min_significance"] = transform.min_significance
    metrics["pair_residuals_px"] = {f"{a}-{b}": r for (a, b), r in zip(pairs, residuals.round(3), strict=True)}
    metrics["pairs"] = {
        f"{r.a}-{r.b}": {"status": r.status, "confidence": round(r.confidence, 3),
                         "significance": round(r.significance, 2), "ncc": round(r.ncc, 3),
                         "sigma_px": [round(v, 3) for v in r.sigma_px],
                         "spread_px": [round(v, 3) if np.isfinite(v) else None for v in r.spread_px],
                         "free_direction": None if r.free_direction is None
                         else [round(v, 3) for v in r.free_direction],
                         "ridge_px": round(r.ridge_px, 2) if np.isfinite(r.ridge_px) else None,
                         "border_peak": r.border_peak, "unlocated_px": round(r.unlocated_px, 2),
                         "split_peak": r.split_peak,
                         "depth_disagreement_px": depth_disagreement_field(r.depth_disagreement_px, 2),
                         "depth_confirmed_significance": depth_disagreement_field(r.depth_confirmed_significance, 2),
                         "settled": r.settled, "unfit_peak": r.unfit_peak, "absorbed_vote": r.absorbed_vote,
                         "depth_range_peak": r.depth_range_peak, "depth_corroborated": r.depth_corroborated}
        for r in transform.pairs
    }
    metrics["n_border_peak_links"] = sum(r.border_peak for r in transform.pairs)
    metrics["n_split_peak_links"] = sum(r.split_peak for r in transform.pairs)
    metrics["n_settled_links"] = sum(r.accepted and r.settled for r in transform.pairs)
    metrics["n_unfit_peak_links"] = sum(r.unfit_peak for r in transform.pairs)
    metrics["n_absorbed_votes"] = sum(r.absorbed_vote for r in transform.pairs)
    metrics["n_depth_range_peak_links"] = sum(r.depth_range_peak for r in transform.pairs)
    metrics["n_depth_corroborated_links"] = sum(r.depth_corroborated for r in transform.pairs)
    # checked: not NaN (a range that found no peak reads inf, refused and checked alike)
    metrics["n_depth_checked_links"] = int(sum(not np.isnan(r.depth_disagreement_px) for r in transform.pairs))
    metrics["n_depth_refused_links"] = int(sum(r.depth_disagreement_px > DEPTH_AGREEMENT_PX and not r.accepted
                                               for r in transform.pairs))
    metrics["n_depth_confirmed_links"] = int(sum(np.isfinite(r.depth_confirmed_significance) for r in transform.pairs))
    from linumpy.stitching.pairwise import MIN_UNLOCATED_COUNT_PX  # scipy: imported aside while tiles are read

    metrics["n_unlocated_links"] = sum(r.accepted and r.unlocated_px >= MIN_UNLOCATED_COUNT_PX for r in transform.pairs)
    corrections = transform.stage_residuals.corrections
    metrics["tiles"] = {
        str(tile): {"source": record.source, "n_pairs": record.n_pairs,
                    "sigma_px": round(record.sigma_px, 3) if np.isfinite(record.sigma_px) else None,
                    "corroborated": record.corroborated, "weak": record.weak,
                    "weak_along_ridge": tile in along_ridge,
                    "weak_lone_link": tile in on_weak_lone,
                    "lone_link_refused": record.lone_link_refused,
                    "far_link_refused": record.far_link_refused,
                    "weak_link_swapped": record.weak_link_swapped,
                    "far_bridge_kept": record.far_bridge_kept,
                    "far_weak_peak_refused": record.far_weak_peak_refused,
                    "weak_piece_to_stage": record.weak_piece_to_stage,
                    "unsupported_placement_dropped": record.unsupported_placement_dropped,
                    "beyond_edge_ridges": record.beyond_edge_ridges,
                    "costly_link_refused": record.costly_link_refused,
                    "corroboration_refused": record.corroboration_refused,
                    "far_lone_link_to_stage": record.far_lone_link_to_stage,
                    "far_lone_link_searched": record.far_lone_link_searched,
                    "lone_edge_link_along_stage": record.lone_edge_link_along_stage,
                    "broad_lone_link_to_stage": record.broad_lone_link_to_stage,
                    "ridge_contradicted_link_refused": record.ridge_contradicted_link_refused,

                    "outvoted_link_refused": record.outvoted_link_refused,
                    "off_peak_link_to_stage": record.off_peak_link_to_stage,
                    "beyond_reach_edge_link_to_stage": record.beyond_reach_edge_link_to_stage,
                    "tied_to_left_out": record.tied_to_left_out,
                    "rigid_piece": record.rigid_piece,
                    "open_loop_px": round(record.open_loop_px, 3) if np.isfinite(record.open_loop_px) else None,
                    "open_loop_to_stage": record.open_loop_to_stage,
                    "depth_refused_on_stage": record.depth_refused_on_stage,
                    **tile_risk_fields(risk, tile),
                    "stage_residual_px": [round(v, 3) for v in corrections[tile]] if tile in corrections else None}
        for tile, record in sorted(transform.tiles.items())
    }
    metrics.update(stage_residual_fields(transform.stage_residuals))
    metrics["fusion_flatfield"] = flat.qc_fields()
    metrics["tile_summaries"] = summary_source.qc_fields()
    flags = []
    if transform.tiles and len(fallback) > MAX_STAGE_FALLBACK_FRACTION * n_tiles:
        flags.append(stage_fallback_flag(len(fallback), len(untextured), n_tiles))
    elif transform.tiles and len(fallback) + len(weak) > MAX_STAGE_FALLBACK_FRACTION * n_tiles:
        flags.append(f"{len(weak)}/{n_tiles} tiles placed by weak links only, {len(fallback)} more on the stage: "
                     "their positions are uncertain (tiles' sigma_px), check the stitched slice")
    flags += [far_bridge_flag(pair, transform) for pair in far_bridges]
    flags += [far_lone_link_flag(link) for link in lone]
    refused_flag = lone_links_refused_flag(transform)
    flags += [refused_flag] if refused_flag else []
    flags += [hinge_flag(risk)] if risk.flagged() else []
    from linumpy.qc.figures import stitching_residuals_figure

    figure = stitching_residuals_figure(pairs, residuals, [not a for a in accepted], layout.grid_shape)
    return metrics, {"residuals": render_png(figure)}, flags


def read_strip(data, layout: MosaicGridLayout, tile: TileIndex, part: tuple[slice, slice]) -> np.ndarray:
    """Every plane of ``part`` (``(y, x)`` slices in tile pixels) of ``tile`` of the mosaic grid ``data``."""
    return read_block(data, (slice(None), *layout.part_slices(tile, part)))


def obtain_transform(
    layout: MosaicGridLayout,
    source: str,
    transform_path: str | os.PathLike | None,
    summaries: TileSummaries | None,
    max_shift_px: float,
    progress: bool,
    workers: int | None = None,
    depth_reader: StripReader | None = None,
) -> TileTransform:
    """Load the transform at ``transform_path``, or estimate it from the tiles' projections (``summaries``),
    the candidate pairs below strong checked on depth ranges of their strips read with ``depth_reader``
    (:mod:`linumpy.stitching.depth_check`)."""
    from linumpy.stitching.estimate import estimate_transform
    from linumpy.stitching.transform import load_transform

    if transform_path is None:
        return estimate_transform(summaries.projections, layout.tile_step_px, max_shift_px, progress=progress,
                                  workers=workers, depth_reader=depth_reader)
    transform = load_transform(transform_path)
    if tuple(transform.tile_shape) != layout.tile_shape[1:]:
        raise InputError(f"{transform_path} was estimated on tiles of {transform.tile_shape} "
                         f"but {source} has tiles of {layout.tile_shape[1:]}; "
                         "estimate a new transform (omit --transform)")
    return transform


def write_fused(
    data,
    layout: MosaicGridLayout,
    positions: dict[TileIndex, np.ndarray],
    out_path: str | os.PathLike,
    resolution: Sequence[float],
    attributes: dict,
    *,
    blend: str,
    flat: FusionFlatField | Future[FusionFlatField],
    n_levels: int | None,
    compression: str,
    overwrite: bool,
    progress: bool,
    workers: int | None,
) -> None:
    """Fuse the tiles of a mosaic grid at ``positions`` and write the volume block by block.

    Positions are rounded to whole pixels for placement. A block is
    ``BLOCK_PX`` x ``BLOCK_PX`` laterally (one output chunk) by one input
    z-chunk (at most ``MAX_BLOCK_BYTES``); it reads only the tiles that cover it, straight from
    their chunk files (``data`` is a :class:`~linumpy.io.zarr.StoredArray`), each tile part
    corrected by ``flat`` as it is fused (:func:`~linumpy.stitching.blend.fuse_block`); a tile stored one
    chunk laterally is decoded whole, and kept for the next blocks that read it while
    :data:`SLAB_CACHE_BYTES` allows (:func:`tile_slabs`). ``workers`` threads read, fuse and write blocks, with
    at most two blocks per thread in flight, so memory does not depend on the size of the slice. The chunk
    files a block reads (:func:`block_reads`) are announced to the kernel :data:`READ_AHEAD_BLOCKS` blocks
    before it is queued (:func:`~linumpy.io.prefetch.prefetched`): the threads find them read instead of
    waiting for the disk. ``flat`` may be the future of the flat field, still being fitted: each job reads
    and decodes its first tile part before it waits for it (:func:`part_correction`).
    """
    origins, translation = placement_origins(positions)
    tile_yx = layout.tile_shape[1:]
    depth = layout.tile_shape[0]
    plan = fusion_plan(data, layout, origins)
    tasks, slabs, z_slab, whole_tiles, extent = plan.tasks, plan.slabs, plan.z_slab, plan.whole_tiles, plan.extent
    overlap = [t - s for t, s in zip(tile_yx, layout.tile_step_px)]
    weights = feather_weights(tile_yx, overlap)
    correct = part_correction(flat)

    def fuse_and_write(job: int) -> None:
        z0, box = tasks[job]
        z1 = min(z0 + z_slab, depth)

        def read_tile(tile: TileIndex, part: tuple[slice, slice]) -> np.ndarray:
            if whole_tiles:
                return slabs.get((tile, z0), job)[(slice(None), *part)]
            return data[(slice(z0, z1), *layout.part_slices(tile, part))]

        block = fuse_block(box, z1 - z0, origins, tile_yx, read_tile, weights, blend, correct)
        writer[z0:z1, box.y0:box.y1, box.x0:box.x1] = _to_dtype(block, data.dtype)

    attributes = dict(attributes)
    attributes["tile_blend"] = blend
    attributes["tile_positions_px"] = [
        [r, c, round(float(positions[(r, c)][0] - translation[0]), 3),
         round(float(positions[(r, c)][1] - translation[1]), 3)]
        for r, c in sorted(positions)
    ]
    chunks = (z_slab, min(CHUNK_PX, extent[0]), min(CHUNK_PX, extent[1]))
    finalize_options = {} if n_levels is None else {"n_levels": n_levels}
    # Each block's chunk files are announced to the kernel READ_AHEAD_BLOCKS blocks before it is queued,
    # so that the disk reads them while the blocks before it are fused; the first blocks' before the writer's
    # arrays are made (a tenth of a second), so that the disk starts on them at once.
    jobs = prefetched(range(len(tasks)), plan.reads.__getitem__, READ_AHEAD_BLOCKS)
    first = next(jobs)
    with OmeZarrWriter(out_path, (depth, *extent), chunks=chunks, dtype=data.dtype,
                       compression=compression, overwrite=overwrite, **finalize_options) as writer:
        # Blocks are chunk-aligned, so threads never write the same chunk, and the order in which they
        # finish does not matter: a thread takes the next block as soon as it is done.
        done = run_jobs(fuse_and_write, itertools.chain([first], jobs), workers)
        for _ in tqdm(done, total=len(tasks), desc="fuse", disable=not progress):
            pass
        writer.finalize(resolution, attributes=attributes, **finalize_options)
    if whole_tiles:
        logger.debug("fusion: %d tile slabs decoded for %d read", slabs.decoded,
                     sum(map(len, slabs.uses.values())))


@dataclass(frozen=True)
class FusionPlan:
    """What the fusion reads, in its order (:func:`fusion_plan`): ``extent``, the ``(y, x)`` size of the output,
    and ``z_slab``, the planes of a fused block, decide its jobs.

    Attributes
    ----------
    whole_tiles : bool
        Whether the tiles are read as whole slabs (one chunk laterally), kept in ``slabs``.
    tasks : list of (int, Box)
        The jobs: first plane and output box, slab by slab, blocks in Z-order.
    slabs : SlabCache
        The tile slabs the jobs share (none kept unless ``whole_tiles``).
    reads : list of list of Path
        The chunk files each job announces (:func:`block_reads`).
    """

    extent: tuple[int, int]
    z_slab: int
    whole_tiles: bool
    tasks: list[tuple[int, Box]]
    slabs: SlabCache
    reads: list[list[Path]]


def fusion_plan(data: StoredArray, layout: MosaicGridLayout,
                origins: dict[TileIndex, tuple[int, int]]) -> FusionPlan:
    """The fusion's jobs over the mosaic grid ``data`` with the tiles at ``origins`` (``placement_origins``),
    the tile slabs they share and the chunk files each reads first (:class:`FusionPlan`)."""
    tile_yx = layout.tile_shape[1:]
    depth = layout.tile_shape[0]
    extent = output_extent(origins, tile_yx)
    z_slab = min(data.chunks[0], max(1, MAX_BLOCK_BYTES // (4 * BLOCK_PX * BLOCK_PX)))
    # A tile that is one chunk laterally (as the mosaic grid stores it) is read whole: its chunk is decoded
    # straight into the result and the part is a view of it (no copy of the part).
    whole_tiles = tuple(data.chunks[1:]) == tuple(tile_yx) and z_slab == data.chunks[0]
    # Slab by slab, blocks in Z-order: each pyramid level's chunks are built from 2 x 2 groups of the level
    # below as soon as they are written, and only one slab's chunks wait.
    boxes = morton_order(_blocks(extent, BLOCK_PX), lambda box: (box.y0 // BLOCK_PX, box.x0 // BLOCK_PX))
    tasks = [(z0, box) for z0 in range(0, depth, z_slab) for box in boxes]
    slabs = tile_slabs(data, layout, tasks, origins, z_slab if whole_tiles else 0)
    reads = block_reads(data, layout, tasks, origins, z_slab, slabs.uses if whole_tiles else None)
    return FusionPlan(extent, z_slab, whole_tiles, tasks, slabs, reads)


def stage_first_reads(data: StoredArray, layout: MosaicGridLayout) -> list[Path]:
    """The chunk files the fusion announces before its first block is fused (those of its first
    ``READ_AHEAD_BLOCKS + 1`` blocks), planned with the tiles at the stage's nominal positions: what the stitch
    announces before it estimates the positions, which move the tiles by a few pixels only. The same files as
    the fusion's first ones, read earlier: no more page cache is taken for them than the fusion takes."""
    step = layout.tile_step_px
    origins, _ = placement_origins({tile: (tile[0] * step[0], tile[1] * step[1]) for tile in layout.tiles_present})
    return [path for job in fusion_plan(data, layout, origins).reads[:READ_AHEAD_BLOCKS + 1] for path in job]


def part_correction(flat: FusionFlatField | Future[FusionFlatField]) -> PartCorrection | None:
    """The correction :func:`~linumpy.stitching.blend.fuse_block` applies to every tile part: ``flat``'s
    (None when no field is applied), or, for the future of a flat field, one that waits for it at its first
    call, then divides its field out or copies the part as it is (the same values either way)."""
    if not isinstance(flat, Future):
        return flat.correct_into if flat.applied else None

    def correct(data: np.ndarray, part: tuple[slice, slice], out: np.ndarray) -> None:
        flat.result().correct_into(data, part, out)

    return correct


def block_reads(data: StoredArray, layout: MosaicGridLayout, tasks: Sequence[tuple[int, Box]],
                origins: dict[TileIndex, tuple[int, int]], z_slab: int,
                uses: Mapping[tuple[TileIndex, int], Sequence[int]] | None) -> list[list[Path]]:
    """The chunk files of the mosaic grid each fusion job reads from disk, by job.

    With whole tile slabs kept for the jobs that read them again (``uses``: ``(tile, z0) -> jobs``, the
    :class:`~linumpy.stitching.slab_cache.SlabCache`'s), the files of the slabs the job is the first to read:
    a slab read again after it left the cache is not counted (announcing every read would read again from disk
    the slabs the cache still holds). Without (``uses`` None), the files of every tile part the job reads.
    Other arguments as in :func:`tile_slabs`.
    """
    tile_yx, depth = layout.tile_shape[1:], layout.tile_shape[0]
    files: list[list[Path]] = [[] for _ in tasks]
    if uses is not None:
        for (tile, z0), jobs in uses.items():
            files[jobs[0]] += data.chunk_files((slice(z0, min(z0 + z_slab, depth)), *layout.tile_slices(tile)))
        return files
    for job, (z0, box) in enumerate(tasks):
        for tile, part in tiles_in_box(box, origins, tile_yx):
            region = layout.part_slices(tile, (slice(part.y0, part.y1), slice(part.x0, part.x1)))
            files[job] += data.chunk_files((slice(z0, min(z0 + z_slab, depth)), *region))
    return files


def tile_slabs(data: StoredArray, layout: MosaicGridLayout, tasks: Sequence[tuple[int, Box]],
               origins: dict[TileIndex, tuple[int, int]], z_slab: int) -> SlabCache:
    """The cache of whole tile slabs ``data[z0:z0 + z_slab]`` that the fusion ``tasks`` read.

    Parameters
    ----------
    data : StoredArray
        The mosaic grid, level 0.
    layout : MosaicGridLayout
        Where each tile lies in ``data``.
    tasks : sequence of (int, Box)
        The fusion's jobs in their order: first plane and output box.
    origins : dict
        Each tile's placed origin in the output (``placement_origins``).
    z_slab : int
        Planes of a slab (one input z-chunk); 0: no slab is kept (the tiles are read part by part).

    Returns
    -------
    SlabCache
        Keyed by ``(tile, z0)``, holding at most :data:`SLAB_CACHE_BYTES` of decoded slabs.
    """
    tile_yx = layout.tile_shape[1:]
    depth = layout.tile_shape[0]

    def read(key: tuple[TileIndex, int]) -> np.ndarray:
        tile, z0 = key
        ys, xs = layout.tile_slices(tile)
        return data[z0:min(z0 + z_slab, depth), ys, xs]

    uses = slab_uses([(tile, z0) for tile, _ in tiles_in_box(box, origins, tile_yx)] for z0, box in tasks)
    slab_bytes = max(1, z_slab * tile_yx[0] * tile_yx[1] * np.dtype(data.dtype).itemsize)
    return SlabCache(read, uses, SLAB_CACHE_BYTES // slab_bytes if z_slab else 0)
