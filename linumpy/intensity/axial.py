"""Axial correction of one slice, streamed over an OME-Zarr volume.

Two passes over the input, one lateral block of whole A-lines at a time
(blocks run in a few threads, their results are merged in block order;
blocks are read through a :class:`~linumpy.intensity.blocks.ChunkColumnCache`
so that halos do not decode the same storage chunks again):

1. *Statistics*, on the slice binned laterally
   (``statistics_binning_px``): detect the surface of every A-line (with a
   halo for the lateral smoothing), store it in the surface map (kept in
   memory too for pass 2 when small enough, with the A-line levels: each A-line's own, which
   selects the tissue A-lines of the QC's mean attenuation), and accumulate the noise floor, the
   background (agarose) depth profile and the moments of a plane fitted to
   the surface.
2. *Correction* (each block with a small lateral halo): subtract the noise floor, divide by
   the focus profile, compensate the attenuation (Vermeer), shift every
   A-line so the plane fitted to the surface sits at ``surface_depth_px``
   (the vibratome cuts a plane; the detected surface's bumps, e.g. tissue
   swelling or chatter, do not move the tissue below them, so following
   them A-line by A-line would shift that tissue in depth differently in
   every slice and bias the slices' depth registration; without any
   detected surface, A-lines are not shifted), crop
   ``useful_depth_px`` voxels; the attenuation (decay rate) of every A-line goes to
   the attenuation map in the same pass.

The three outputs (corrected volume, surface map, attenuation map) are
written with :class:`~linumpy.io.zarr.OmeZarrWriter` and published together
at the end; on any error none of them appears. The QC record
(:mod:`linumpy.intensity.qc_summary`) is written from sums both passes
accumulate.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from linumpy.errors import InputError
from linumpy.intensity import (
    attenuation, attenuation_kernels, attenuation_map, focus, focus_shift, surface, surface_kernels,
)
from linumpy.intensity.acquisition_focus import AcquisitionFocus, is_refused, refusal
from linumpy.intensity.blocks import (
    ChunkColumnCache, LateralBlock, bin_laterally, count_nonzero, expand_laterally, lateral_block_size,
    lateral_blocks, map_ordered, read_block,
)
from linumpy.intensity.options import ATTENUATION_MODES, AXIAL_DTYPES, DEFAULT_STEP_LOG, FOCUS_MODES
from linumpy.intensity.qc_summary import AxialQc, ClassSupport
from linumpy.intensity.statistics_reads import STATISTICS_BINNING_PX, SURFACE_SIGMA_PX, StatisticsReads
from linumpy.intensity.tail_extension import unclipped_extension
from linumpy.io import atomic
from linumpy.io.zarr import DEFAULT_N_LEVELS, OmeZarrWriter, open_omezarr_level, read_omezarr_info
from linumpy.parallel import import_in_background
from linumpy.qc.records import FIGURES_MODULE, write_qc_record

logger = logging.getLogger(__name__)

#: Residual (voxels) below which surface values always count as plane inliers.
MIN_PLANE_TOLERANCE_PX = 2.0
#: With the edge-aware sums, each A-line's range ends where its signal falls for good to this many times the
#: clipped noise's mean (:func:`linumpy.intensity.attenuation.noise_ends`): below, its sums are the decay
#: measured above continued, not the noise's (0: off).
NOISE_END_FACTOR = 4.0
#: What the compensation's least tail sums are (the ``attenuation_sum_floor`` attribute and QC field).
SUM_FLOOR_NOTE = ("each tail sum raised to at least that of the clipped noise alone below it (noise sd / sqrt(2 pi) "
                  f"per plane over the focus profile); edge-aware sums: each A-line's range ended where its signal "
                  f"falls to {NOISE_END_FACTOR:g} x that noise mean, the decay above continued below")
#: Agarose used for the focus lies this far from the tissue mask (um) if half of the agarose A-lines remain.
AGAROSE_GUARD_UM = 50.0
#: The attenuation map of some tail sums: ``(tails, start, split_tails, split_stride) -> WindowedAttenuation``.
MapFit = Callable[[np.ndarray, np.ndarray, np.ndarray, int], "attenuation_map.WindowedAttenuation"]
#: A-lines between those the attenuation map's split is tested on (its box is 21 A-lines wide).
SPLIT_STRIDE_PX = 6
#: Lateral binning of the uncompensated signal written for the stack (:func:`uncompensated_path`): 1/16 of the
#: output's voxels; the overlap attenuation smooths over 4 pixels (sigma) anyway.
UNCOMPENSATED_BINNING = 4
#: Pyramid levels of the uncompensated signal above its level 0.
UNCOMPENSATED_N_LEVELS = 1
#: Bytes of pass 1's two maps (:class:`SliceMaps`) kept in memory for pass 2; a larger slice (above ~5,800 x 5,800
#: A-lines) keeps them on disk, so that the step's memory stays bounded whatever the slice's size.
MAPS_MEMORY_BYTES = 256 * 2**20


@dataclass(frozen=True)
class AxialSettings:
    """Parameters of :func:`correct_slice`.

    Attributes
    ----------
    surface_depth_um : float
        Depth at which the flattened surface sits in the output.
    useful_depth_um : float or None
        Output depth; None = from the mean surface to the bottom of the input.
    focus : {"background", "gaussian", "none"}
        Focus correction (ignored when ``focus_profile`` is given).
    focus_profile : ndarray or None
        A focus profile (one value per input depth) to divide by instead.
    acquisition_focus : AcquisitionFocus or None
        The acquisition's focus (:mod:`linumpy.intensity.acquisition_focus`), divided by only when the
        slice's own estimate is refused (``focus_mode`` ``none (<why>)``); the mode then reads
        ``borrowed (<why>; from slices ...)``. A slice whose own estimate is accepted is not changed.
    attenuation : {"vermeer", "none"}
        Attenuation compensation (the attenuation map is written either way).
    lateral_sigma_px, min_contrast
        Surface detection (see :func:`linumpy.intensity.surface.detect_surface`).
    min_focus_gain : float
        Focus profiles are clipped below at this fraction of their maximum.
    agarose_attenuation_per_mm : float or None
        The embedding gel's own attenuation (mm^-1, measured on the gel):
        the agarose profile decays with it below the cut, which the
        ``background`` focus estimate removes (otherwise it enters the focus
        profile and every attenuation reads that much low). None (default):
        estimated with the Lorentzian focus fit when identifiable
        (:func:`linumpy.intensity.focus.estimate_focus`, ``fit_decay``), else 0.
    tail_window_px : int or None
        Window of the end-of-range extension of the Vermeer estimate
        (default: a quarter of the input depth).
    tail_sigma_px : float
        Lateral smoothing of the end-of-range decay ratio (voxels).
    tail_edge_sigma_px : float
        2 by default (``--attenuation_edge_sigma_px``; 0: the box of ``tail_sigma_px``;
        4 measured too, but with it a white-matter column's flatness check fails;
        ~5% more CPU in this step, ``docs/intensity.md``).
        When > 0, the tail sums of the compensation are averaged laterally
        by an edge-aware (guided) filter of this standard deviation
        (:func:`linumpy.intensity.attenuation.edge_aware_tails`) instead of
        the box of ``tail_sigma_px``; the attenuation map is then fitted on
        2 x 2 bins with a box (not on the guided sums, whose planes are not a
        smooth signal along depth: fitted decay rates read up to 2x off on the
        homogeneous columns).
    statistics_binning_px : int
        The statistics pass (surface, levels, background profile, noise
        floor) works on the slice binned ``n`` x ``n`` laterally (mean); the
        surface map is expanded back to every A-line (nearest).
    attenuation_step_log : float
        With the edge-aware tail sums (``tail_edge_sigma_px`` > 0): a change
        of the laterally averaged signal by more than this (log) across a
        depth is a step of reflectivity (dark tissue), divided out of the
        signal before its tail sums are taken
        (:func:`linumpy.intensity.attenuation.reflectivity_steps`). Off (0,
        plain Vermeer) by default
        (:data:`linumpy.intensity.options.DEFAULT_STEP_LOG`); 0.5 is the
        measured value when asked for. The box tail sums never read steps.
        On the simulator's matrix the steps help where dark tissue breaks
        Vermeer's premise (``harsh``: +0.006 to +0.027 volume NCC), but on
        the independent generator's acquisitions they lower it on every
        seed tried (-0.004 to -0.006: oblique fibres read as steps;
        ``docs/intensity.md``, *Reflectivity steps*).
    """

    surface_depth_um: float = 0.0
    useful_depth_um: float | None = None
    focus: str = "background"
    focus_profile: np.ndarray | None = None
    acquisition_focus: AcquisitionFocus | None = None
    attenuation: str = "vermeer"
    lateral_sigma_px: float = SURFACE_SIGMA_PX
    min_contrast: float = 2.0
    min_focus_gain: float = 0.05
    agarose_attenuation_per_mm: float | None = None
    tail_window_px: int | None = None
    tail_sigma_px: float = 2.0
    tail_edge_sigma_px: float = 2.0
    statistics_binning_px: int = STATISTICS_BINNING_PX
    attenuation_step_log: float = DEFAULT_STEP_LOG


def output_paths(out_path: str | os.PathLike) -> tuple[Path, Path]:
    """``(<out stem>_surface.ome.zarr, <out stem>_attenuation.ome.zarr)`` beside ``out_path``."""
    return _beside(out_path, "_surface"), _beside(out_path, "_attenuation")


def uncompensated_path(out_path: str | os.PathLike) -> Path:
    """``<out stem>_uncompensated.ome.zarr`` beside ``out_path``: the signal before attenuation compensation,
    flattened as the output and binned :data:`UNCOMPENSATED_BINNING` x :data:`UNCOMPENSATED_BINNING` laterally
    (the stack measures the attenuation through each overlap on it, :mod:`linumpy.stack.attenuation`)."""
    return _beside(out_path, "_uncompensated")


def _beside(out_path: str | os.PathLike, suffix: str) -> Path:
    out_path = Path(out_path)
    stem = out_path.name[: -len(".ome.zarr")] if out_path.name.endswith(".ome.zarr") else out_path.name
    return out_path.with_name(f"{stem}{suffix}.ome.zarr")


@dataclass(frozen=True)
class SliceMaps:
    """Pass 1's per-A-line maps of a slice for pass 2 (float32, shape ``(y, x)``), in memory when they fit
    :data:`MAPS_MEMORY_BYTES` (pass 2's blocks then slice them instead of decoding parts of 2D chunks), else
    stored: pass 1 writes them (the surface map's writer, a scratch map's) and pass 2 reads them back.

    Attributes
    ----------
    surface_um : ndarray or OmeZarrWriter
        The detected surface (um, NaN where none): the values the surface map stores.
    levels : ndarray or OmeZarrWriter
        Each A-line's own level (:func:`linumpy.intensity.focus.line_levels`), which selects the tissue A-lines.
    """

    surface_um: Any
    levels: Any

    def read(self) -> SliceMaps:
        """The maps to read (once pass 1 has written them): the arrays, or the stored level 0 of each."""
        if isinstance(self.surface_um, np.ndarray):
            return self
        return SliceMaps(self.surface_um.stored_level0(), self.levels.stored_level0())


@dataclass(frozen=True)
class SliceStatistics:
    """What pass 1 learns about a slice."""

    noise_floor: float
    focus_profile: np.ndarray | None  # normalized, one value per input depth
    focus_mode: str  # what was applied, e.g. "background" or "none (no distinct background: ...)"
    focus_qc: dict  # support of the focus estimate (focus.estimate_focus), empty without one
    focus_flags: list  # QC messages: weakly supported focus estimate, fallbacks
    plane: np.ndarray | None  # surface plane coefficients (voxels), None if no surface anywhere
    mean_surface_px: float | None
    surface_fraction: float  # fraction of A-lines with a detected surface
    tissue_level: float | None  # A-line level above which an A-line is tissue (None: no distinct background)
    # the mosaic step's applied shifts when the focus is read at each A-line's own (focus_shift), else None
    focus_shift: focus_shift.AppliedShift | None = None
    # variance of one voxel's noise (the binned statistics' times the A-lines a bin averages), 0 when not
    # estimable (no voxel above a surface: no noise bias correction of the map's fits, flagged)
    noise_variance: float = 0.0
    # how far below the plane the cut lies at most where detected (the plane fit's inlier tolerance, voxels)
    plane_tolerance_px: float = MIN_PLANE_TOLERANCE_PX


def correct_slice(
    in_path: str | os.PathLike,
    out_path: str | os.PathLike,
    settings: AxialSettings = AxialSettings(),
    *,
    n_levels: int = DEFAULT_N_LEVELS,
    compression: str = "blosc-lz4",
    overwrite: bool = False,
    progress: bool = False,
    workers: int | None = None,
    dtype: str = "float32",
    statistics_reads: StatisticsReads | None = None,
) -> dict[str, Any]:
    """Detect the surface, correct focus and attenuation, flatten and crop one slice.

    Parameters
    ----------
    in_path, out_path : path-like
        Input ``(z, y, x)`` OME-Zarr; output OME-Zarr. The surface and
        attenuation maps go beside the output (see :func:`output_paths`).
    settings : AxialSettings
    n_levels, compression, overwrite
        As in :class:`~linumpy.io.zarr.OmeZarrWriter`.
    progress : bool
        Show progress bars.
    workers : int, optional
        Blocks processed in parallel (threads) in each pass (default:
        :func:`linumpy.parallel.default_workers`).
    dtype : {"float32", "float16"}
        Stored dtype of the corrected volume (the maps stay float32).
    statistics_reads : StatisticsReads, optional
        The statistics pass's reads of ``in_path``, started by the caller
        (:func:`linumpy.intensity.statistics_reads.started`, before this
        module's imports); used when they match the settings, closed at the end of the pass.

    Returns
    -------
    dict
        The ``linumpy`` attributes written to the output.

    Raises
    ------
    InputError
        Not a 3D image, NaN/inf voxels, a focus profile of the wrong length.
    """
    _check_settings(settings)
    if dtype not in AXIAL_DTYPES:
        raise InputError(f"unknown output dtype {dtype!r}; choose one of {', '.join(AXIAL_DTYPES)}")
    volume, resolution = open_omezarr_level(in_path)
    info = read_omezarr_info(in_path)
    if volume.ndim != 3:
        raise InputError(f"{in_path} is {volume.ndim}D; the axial correction needs a (z, y, x) volume")
    n_z, n_y, n_x = volume.shape
    if settings.focus_profile is not None and np.shape(settings.focus_profile) != (n_z,):
        raise InputError(
            f"the focus profile has shape {np.shape(settings.focus_profile)} but {in_path} has {n_z} "
            "depth samples; give one value per depth"
        )
    borrowed = settings.acquisition_focus
    if borrowed is not None and borrowed.profile is not None and borrowed.profile.shape != (n_z,):
        raise InputError(f"the acquisition's focus profile has {borrowed.profile.size} depths but {in_path} has "
                         f"{n_z}: not a slice of the acquisition it was combined from")
    surface_path, attenuation_path = output_paths(out_path)
    plain_path = uncompensated_path(out_path)
    for path in (out_path, surface_path, attenuation_path, plain_path):
        atomic.check_can_write(path, overwrite)
    dz_mm = resolution[0]
    block = lateral_block_size(n_z)
    surface_depth_px = int(round(settings.surface_depth_um / (dz_mm * 1000)))
    map_options = {"chunks": (block, block), "dtype": np.float32, "compression": compression,
                   "overwrite": overwrite, "n_levels": n_levels}  # the levels finalize keeps: no more are built

    qc = AxialQc(n_z)
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    # the focus fits' libraries and the QC figure's module, while the passes' threads run
    import_in_background(*focus.FIT_MODULES, FIGURES_MODULE)
    # the QC figure (drawing and PNG rendering) is made on its own thread while the outputs are finalized
    with ThreadPoolExecutor(1, thread_name_prefix="axial-qc") as qc_thread, contextlib.ExitStack() as stack:
        surface_writer = stack.enter_context(OmeZarrWriter(surface_path, (n_y, n_x), **map_options))
        if 2 * 4 * n_y * n_x <= MAPS_MEMORY_BYTES:  # pass 1's maps in memory for pass 2: 1 / n_z of the volume each
            maps = SliceMaps(np.empty((n_y, n_x), np.float32), np.empty((n_y, n_x), np.float32))
        else:  # the surface read back from its map; the levels from a scratch map (never published)
            scratch = stack.enter_context(atomic.scratch_directory(out_path))
            maps = SliceMaps(surface_writer, OmeZarrWriter(scratch / "levels.ome.zarr", (n_y, n_x),
                                                           **{**map_options, "n_levels": 0}))
        reads = statistics_reads
        if reads is not None and not reads.serves(in_path, settings.statistics_binning_px, settings.lateral_sigma_px):
            reads.close()  # another slice's or other settings' reads: their columns let go
            reads = None
        if reads is None:
            reads = StatisticsReads(in_path, volume, settings.statistics_binning_px, settings.lateral_sigma_px)
        stack.callback(reads.close)
        cache = ChunkColumnCache(volume)
        parts = list(lateral_blocks((n_y, n_x), block, _tail_halo(settings), cache.block_group(block)))
        # pass 2's reads are known already: its first columns are decoded as soon as pass 1's are, while
        # pass 1 and the estimates between the passes run
        stack.enter_context(cache.prefetching((part.outer for part in parts), after=reads.decoded))
        applied = (focus_shift.AppliedShift.of(info.attributes)
                   if settings.focus_profile is None and settings.focus != "none" else None)
        stats = _gather_statistics(reads, in_path, (dz_mm * 1000, resolution[1] * 1000), surface_writer,
                                   maps, settings, progress, workers, qc, applied)
        maps = maps.read()
        depth_px = _output_depth(settings, stats, n_z, surface_depth_px, dz_mm)
        out_writer = stack.enter_context(OmeZarrWriter(
            out_path, (depth_px, n_y, n_x), chunks=(min(64, depth_px), block, block),
            dtype=dtype, compression=compression, overwrite=overwrite, n_levels=n_levels))
        attenuation_writer = stack.enter_context(OmeZarrWriter(attenuation_path, (n_y, n_x), **map_options))
        binned_shape = tuple(-(-n // UNCOMPENSATED_BINNING) for n in (n_y, n_x, block))
        plain_writer = stack.enter_context(OmeZarrWriter(
            plain_path, (depth_px, *binned_shape[:2]), chunks=(min(64, depth_px), binned_shape[2], binned_shape[2]),
            dtype=np.float32, compression=compression, overwrite=overwrite, n_levels=UNCOMPENSATED_N_LEVELS))

        def correct_part(
            part: LateralBlock,
        ) -> tuple[np.ndarray, attenuation_map.WindowedAttenuation, int, int, ClassSupport, np.ndarray]:
            data = cache.read(part.outer)
            floored = np.zeros(3, np.int64)
            found = read_block(maps.surface_um, part.outer) / np.float32(dz_mm * 1000)
            tissue_lines = (None if stats.tissue_level is None
                            else read_block(maps.levels, part.outer) > stats.tissue_level)
            flat, mapped, plain = correct_block(data, found, stats, settings, dz_mm, surface_depth_px, depth_px,
                                                origin=part.origin, inner=part.inner_in_outer, uncompensated=True,
                                                overwrite_data=True, tissue=tissue_lines,  # data: the cache's copy
                                                floored=floored)
            clipped = _clip_to_dtype(flat, dtype)
            out_writer[(slice(None), *part.inner)] = flat
            plain_writer[(slice(None), *(slice(s.start // UNCOMPENSATED_BINNING, -(-s.stop // UNCOMPENSATED_BINNING))
                                         for s in part.inner))] = plain
            attenuation_writer[part.inner] = mapped.mu
            tissue = np.isfinite(mapped.whole) & ~mapped.planed  # the QC's tissue mean: their own or borrowed cuts
            level = maps.levels[part.inner]
            if stats.tissue_level is not None:
                tissue &= level > stats.tissue_level
            return (flat.sum(axis=(1, 2), dtype=np.float64), mapped.apply(lambda values: values[tissue]),
                    count_nonzero(flat), clipped, ClassSupport.of(mapped, level, stats.tissue_level), floored)

        n_clipped = 0
        for profile, tissue_map, nonzero, clipped, support, floored in tqdm(
                map_ordered(correct_part, parts, workers), total=len(parts), desc="axial correction",
                disable=not progress, leave=False):
            qc.add_corrected(profile, tissue_map, nonzero, support)
            qc.add_floored(*floored)
            n_clipped += clipped
        if n_clipped:
            logger.warning("%d corrected voxels exceed the %s range and were clipped to it", n_clipped, dtype)

        attributes = dict(info.attributes)
        attributes.update({
            "surface_depth_px": surface_depth_px,
            "useful_depth_px": depth_px,
            "focus_mode": stats.focus_mode,
            "attenuation_mode": settings.attenuation,
            "attenuation_tail_average": (f"edge-aware, sigma {settings.tail_edge_sigma_px:g} px"
                                         if settings.tail_edge_sigma_px > 0 else
                                         f"box, sigma {settings.tail_sigma_px:g} px"),
            "attenuation_step_log": (settings.attenuation_step_log if settings.attenuation == "vermeer"
                                     and settings.tail_edge_sigma_px > 0 else 0.0),
            "attenuation_sum_floor": (SUM_FLOOR_NOTE if settings.attenuation == "vermeer"
                                      and stats.noise_variance > 0 else None),
            "noise_floor": stats.noise_floor,
            "noise_variance": stats.noise_variance,
            "surface_plane_px": None if stats.plane is None else [float(v) for v in stats.plane],
            "surface_detected_fraction": round(stats.surface_fraction, 6),
            "stored_dtype": dtype,
            "clipped_to_dtype_voxels": n_clipped,
        })
        if "tile_shape" in attributes:
            attributes["tile_shape"] = [depth_px, *list(attributes["tile_shape"])[1:]]
        record = qc_thread.submit(qc.record, attributes, dz_mm * 1000, stats.focus_qc, stats.focus_flags,
                                  stats.focus_profile)
        lateral = resolution[1:]
        surface_writer.finalize(lateral, n_levels, _map_attributes(info.attributes, "surface_depth_um"))
        attenuation_writer.finalize(lateral, n_levels, _map_attributes(info.attributes, "attenuation_per_mm"))
        plain_attributes = {key: attributes[key] for key in ("slice_id", "surface_depth_px", "useful_depth_px")
                            if key in attributes}
        plain_attributes.update({
            "quantity": "focus-corrected signal before attenuation compensation, flattened as the output",
            "lateral_binning": UNCOMPENSATED_BINNING,
            "missing": "0 above each bin's tissue top (its mean detected surface below the flattened cut)",
            "decay_fit_tissue_attenuation_per_mm": qc.tissue_attenuation_per_mm(),
        })
        plain_writer.finalize((resolution[0], *(r * UNCOMPENSATED_BINNING for r in lateral)), UNCOMPENSATED_N_LEVELS,
                             plain_attributes)
        out_writer.finalize(resolution, n_levels, attributes)
    write_qc_record(out_path, "axial_corr", *record.result())
    return attributes


def _check_settings(settings: AxialSettings) -> None:
    if settings.focus not in FOCUS_MODES:
        raise InputError(f"unknown focus mode {settings.focus!r}; choose one of {', '.join(FOCUS_MODES)}")
    if settings.attenuation not in ATTENUATION_MODES:
        raise InputError(
            f"unknown attenuation mode {settings.attenuation!r}; choose one of {', '.join(ATTENUATION_MODES)}"
        )
    if settings.surface_depth_um < 0:
        raise InputError(f"--surface_depth_um must be >= 0, got {settings.surface_depth_um}")
    if settings.agarose_attenuation_per_mm is not None and settings.agarose_attenuation_per_mm < 0:
        raise InputError(f"--agarose_attenuation_per_mm must be >= 0, got {settings.agarose_attenuation_per_mm}")
    if settings.useful_depth_um is not None and settings.useful_depth_um <= 0:
        raise InputError(f"--useful_depth_um must be > 0, got {settings.useful_depth_um}")
    if settings.statistics_binning_px < 1:
        raise InputError(f"statistics_binning_px must be >= 1, got {settings.statistics_binning_px}")


def _map_attributes(source: dict[str, Any], quantity: str) -> dict[str, Any]:
    """Attributes of a 2D map: the slice id (if any) and what the values are."""
    attributes = {key: source[key] for key in ("slice_id",) if key in source}
    attributes["quantity"] = quantity
    attributes["missing"] = "NaN where no tissue surface was detected"
    return attributes


def _gather_statistics(
    reads: StatisticsReads, in_path: str | os.PathLike, voxel_um: tuple[float, float], surface_writer: OmeZarrWriter,
    maps: SliceMaps, settings: AxialSettings, progress: bool, workers: int, qc: AxialQc,
    applied: focus_shift.AppliedShift | None = None,
) -> SliceStatistics:
    """Pass 1: surface map (stored, in um), both maps into ``maps``, noise floor, background profile, plane.

    Blocks are measured in ``workers`` threads and merged in block order.
    ``voxel_um``: axial and lateral voxel size. ``reads``: the pass's blocks
    and their cache, its prefetch running; closed once the blocks are measured.
    ``applied``: the mosaic step's applied shifts (the background cells also sum
    the A-lines moved back by them, for :func:`_focus_profile`'s decision).
    """
    dz_um, lateral_um = voxel_um
    n_z, n_y, n_x = reads.cache.volume.shape
    factor, halo, cache = reads.factor, reads.halo, reads.cache
    background = focus.BackgroundStatistics(n_z, (-(-n_y // factor), -(-n_x // factor)))

    def measure(part: LateralBlock) -> tuple[np.ndarray, np.ndarray, focus.BlockBackground | None, np.ndarray]:
        outer_shape = tuple(s.stop - s.start for s in part.outer)
        binned = cache.read(reads.region(part))
        if not np.isfinite(binned).all():  # a NaN or inf voxel makes its bin NaN or inf
            y0, x0 = part.origin
            raise InputError(
                f"{in_path} has NaN or infinite voxels (near y={y0}, x={x0}); replace them (e.g. by 0) first"
            )
        found_binned = surface_kernels.detect_surface(binned, lateral_sigma_px=settings.lateral_sigma_px / factor,
                                                      min_contrast=settings.min_contrast)
        own_levels = focus.line_levels(binned, found_binned)
        # the background class keeps away from tissue: an A-line takes its neighbours' highest level
        levels_binned = focus.neighbourhood_max(own_levels, halo // factor)
        inner = tuple(slice(s.start // factor, -(-s.stop // factor)) for s in part.inner_in_outer)
        counted = focus.whole_bins(binned)[inner] if factor > 1 else None  # bins at the mosaic's edge average padding
        shift = None
        if applied is not None:
            rows, cols = (slice(s.start * factor, min(s.stop * factor, n))
                          for s, n in zip(reads.region(part), (n_y, n_x)))
            shift = bin_laterally(applied.region(rows, cols)[None], factor)[0][inner]
        measured = background.measure(binned[(slice(None), *inner)], found_binned[inner], levels_binned[inner],
                                      (part.origin[0] // factor, part.origin[1] // factor), weight=factor**2,
                                      counted=counted, shift=shift)
        profile = binned[(slice(None), *inner)].sum(axis=(1, 2), dtype=np.float64) * factor**2
        found = expand_laterally(found_binned, factor, outer_shape)[part.inner_in_outer]
        levels = expand_laterally(own_levels, factor, outer_shape)[part.inner_in_outer]  # tissue A-lines for the QC
        maps.levels[part.inner] = levels.astype(np.float32)
        found_um = found * dz_um
        surface_writer[part.inner] = found_um
        if maps.surface_um is not surface_writer:
            maps.surface_um[part.inner] = found_um
        return found, surface.plane_moments(found, *part.origin), measured, profile

    moments = np.zeros((4, 4))
    for found, block_moments, measured, profile in tqdm(map_ordered(measure, reads.parts, workers),
                                                        total=len(reads.parts), desc="surface",
                                                        disable=not progress, leave=False):
        background.merge(measured)  # merged in block order: the sums do not depend on the threads
        moments += block_moments
        qc.add_raw(profile, found)
    reads.close()

    plane, mean_surface, tolerance = _robust_plane(maps.read().surface_um, dz_um, moments, workers)
    splits = [background.level_split()]
    if splits[0].threshold is None or not background.agarose_cells(splits[0].threshold).any():
        # far above the focus the gel's surface is rarely detected: the surface A-lines' dim class is tissue
        splits.append(background.gel_split(dz_um=dz_um, first_depth=_cell_first_depth(background, plane, factor)))
    tissue_level = splits[-1].threshold
    tissue_cells = None if tissue_level is None else background.tissue_cells(tissue_level)
    noise_cells = tissue_cells if tissue_cells is not None and tissue_cells.any() else None
    noise_floor = background.noise_floor(noise_cells)
    binned_variance = background.noise_variance(noise_cells)
    noise_variance = None if binned_variance is None else binned_variance * factor**2  # of one voxel
    first_tissue = qc.surface_percentile_px(1.0)
    estimate, mode = _focus_profile(background, splits, qc.surface_fraction, noise_floor, settings,
                                    0.0 if first_tissue is None else first_tissue, dz_um, plane, factor,
                                    lateral_um, focus.noise_gain(noise_variance, splits[-1]))
    estimate, mode = _borrowed_focus(estimate, mode, settings.acquisition_focus, applied is not None)
    per_line = estimate.qc.get("focus_shift_per_aline", False) and estimate.profile is not None
    flags = list(estimate.flags)
    if binned_variance is None:
        flags.append("noise variance not estimable (no voxel above a detected surface): 0, the attenuation "
                     "map's decay fits are not corrected for the noise bias")
        logger.warning("%s", flags[-1])
    return SliceStatistics(
        noise_floor=noise_floor, focus_profile=estimate.profile, focus_mode=mode,
        focus_qc=estimate.qc, focus_flags=flags, plane=plane,
        mean_surface_px=mean_surface, surface_fraction=qc.surface_fraction, tissue_level=tissue_level,
        focus_shift=applied if per_line else None,
        noise_variance=0.0 if noise_variance is None else noise_variance, plane_tolerance_px=tolerance,
    )


def _robust_plane(
    surface_um: Any, dz_um: float, moments: np.ndarray, workers: int | None = None
) -> tuple[np.ndarray | None, float | None, float]:
    """Plane through the detected surface, refitted once without its outliers.

    Inliers lie within ``max(3 * RMS, MIN_PLANE_TOLERANCE_PX)`` of the first
    least-squares plane. ``surface_um``: the surface map (um), read
    in blocks on ``workers`` threads (their moments summed in block order).
    Returns ``(coefficients, mean detected surface, tolerance)``, the first two None when no
    A-line has a surface; the tolerance (voxels) is the refitted plane's, the same rule on its inliers' RMS
    (:data:`MIN_PLANE_TOLERANCE_PX` without a refit).
    """
    first = surface.solve_plane(moments)
    if first is None:
        return None, None, MIN_PLANE_TOLERANCE_PX
    coefficients, rms = first
    tolerance = _inlier_tolerance(rms)

    def block_moments(part: LateralBlock) -> np.ndarray:
        values = read_block(surface_um, part.inner) / dz_um
        return surface.plane_moments(values, *part.origin, inliers_of=(coefficients, tolerance))

    refit = np.zeros((4, 4))
    for block in map_ordered(block_moments, lateral_blocks(surface_um.shape, 1024), workers):
        refit += block
    solved = surface.solve_plane(refit)
    plane, tolerance = (coefficients, MIN_PLANE_TOLERANCE_PX) if solved is None else \
        (solved[0], _inlier_tolerance(solved[1]))
    return plane, float(moments[0, 3] / moments[0, 0]), float(tolerance)


def _inlier_tolerance(rms: float) -> float:
    """How far from a fitted plane of residual ``rms`` a detected surface is an inlier (voxels):
    ``max(3 * rms, MIN_PLANE_TOLERANCE_PX)``."""
    return max(3.0 * rms, MIN_PLANE_TOLERANCE_PX)


def _focus_profile(
    background: focus.BackgroundStatistics, splits: list[focus.LevelSplit], surface_fraction: float,
    noise_floor: float, settings: AxialSettings, first_tissue_px: float, dz_um: float, plane: np.ndarray | None,
    factor: int, lateral_um: float, noise_gain: float | None = None,
) -> tuple[focus.FocusEstimate, str]:
    """The focus estimate to divide by and a description of where it came from.

    ``splits``: the A-line levels' splits into agarose and tissue tried, the last one used
    (:meth:`~linumpy.intensity.focus.BackgroundStatistics.level_split`, then
    :meth:`~linumpy.intensity.focus.BackgroundStatistics.gel_split` if it found none); ``surface_fraction``: the
    share of the A-lines with a detected surface, named when there is no split; ``noise_gain``: the gain at
    which the tissue's signal sinks under the noise (:func:`~linumpy.intensity.focus.estimate_focus`).
    """
    if settings.focus_profile is not None:
        given = np.asarray(settings.focus_profile, np.float64)
        if not np.isfinite(given).all() or given.max() <= 0:
            raise InputError("the focus profile must be finite with a positive maximum")
        return focus.FocusEstimate(focus.normalized_profile(given, settings.min_focus_gain, smooth_px=0), {}, []), \
            "profile"
    if settings.focus == "none":
        return focus.FocusEstimate(None, {}, []), "none"
    tissue_level = splits[-1].threshold
    level_qc = _level_qc(splits[-1])
    if tissue_level is None:
        why = (f"no distinct background: {'; '.join(split.describe() for split in splits)}; "
               f"{100 * (1 - surface_fraction):.0f}% of the A-lines have no detected surface")
        logger.warning("%s: the focus correction is skipped", why)
        return focus.FocusEstimate(None, level_qc, []), f"none ({why})"
    first_depth = _cell_first_depth(background, plane, factor)
    cell_um = background.cell_px * factor * lateral_um
    guard = max(1, int(np.ceil(AGAROSE_GUARD_UM / cell_um)))
    decay_per_px = 2.0 * (settings.agarose_attenuation_per_mm or 0.0) * dz_um / 1000.0
    closest = background.background_profile(background.agarose_cells(tissue_level, 1), noise_floor, first_depth)
    while True:  # the widest guard band that keeps half of the agarose A-lines
        cells = background.agarose_cells(tissue_level, guard)
        measured, support = background.background_profile(cells, noise_floor, first_depth, decay_per_px)
        if guard == 1 or support.max(initial=0) >= 0.5 * closest[1].max(initial=0):
            break
        guard -= 1
    if not cells.any():
        logger.warning("no background (agarose) A-lines outside the tissue: the focus correction is skipped")
        return focus.FocusEstimate(None, level_qc, []), "none (no background A-lines)"
    bright = background.bright_cells(cells, noise_floor, first_depth, decay_per_px)  # dim tissue at the edge
    if bright.any():
        measured, support = background.background_profile(cells & ~bright, noise_floor, first_depth, decay_per_px)
    shift_qc, shift_flags = {}, []
    if background.cell_shifted_sums is not None:
        shift_qc, shift_flags = _shift_decision(background, cells & ~bright, noise_floor, first_depth, decay_per_px)
        if shift_qc["focus_shift_per_aline"]:  # the profile in the tiles' frame: the cells' content moved down
            moved_first = np.ceil(first_depth + background.cell_shifts())
            measured, support = background.in_tile_frame().background_profile(cells & ~bright, noise_floor,
                                                                               moved_first, decay_per_px)
    given = settings.agarose_attenuation_per_mm is not None
    estimate = focus.estimate_focus(measured, support, first_tissue_px, dz_um, settings.min_focus_gain,
                                    model="gaussian" if settings.focus == "gaussian" else None,
                                    fit_decay=not given, noise_gain=noise_gain, noise_floor=noise_floor)
    estimate.qc["focus_agarose_guard_um"] = round(guard * cell_um, 3)
    estimate.qc.update(level_qc)
    estimate.qc.update(shift_qc)
    estimate.flags.extend(shift_flags)
    lines = background.cell_lines
    estimate.qc.update(focus_agarose_bright_cells=int(bright.sum()),
                       focus_agarose_bright_fraction=round(float(lines[bright].sum() / lines[cells].sum()), 4))
    if given:
        estimate.qc.update(focus_agarose_attenuation_per_mm=settings.agarose_attenuation_per_mm,
                           focus_agarose_attenuation_sd_per_mm=None, focus_agarose_attenuation_source="given")
    for flag in estimate.flags:
        logger.warning("%s", flag)
    if estimate.profile is None:
        return estimate, "none (too few background A-lines)"
    return estimate, settings.focus


def _borrowed_focus(
    estimate: focus.FocusEstimate, mode: str, acquisition: AcquisitionFocus | None, shifted: bool,
) -> tuple[focus.FocusEstimate, str]:
    """The acquisition's focus profile in place of a refused own estimate (``mode`` ``none (<why>)``), stated.

    ``shifted``: the input records the field curvature's applied shifts; the profile is then read at each
    A-line's own shift when the donors read theirs so (``acquisition.per_aline``). Otherwise unchanged.
    """
    if acquisition is None or acquisition.profile is None or not is_refused(mode):
        return estimate, mode
    borrowed = acquisition.mode(mode)
    qc = {**estimate.qc, "focus_borrowed_from": list(acquisition.donors),
          "focus_shift_per_aline": acquisition.per_aline and shifted}
    flag = (f"focus profile borrowed from the acquisition (the median of the profiles of slices "
            f"{', '.join(str(i) for i in acquisition.donors)}): this slice's own estimate was refused "
            f"({refusal(mode)})")
    logger.warning("%s", flag)
    return focus.FocusEstimate(acquisition.profile, qc, [*estimate.flags, flag]), borrowed


def _level_qc(split: focus.LevelSplit) -> dict[str, Any]:
    """QC fields of the level split used (or the last tried): its contrast, the contrast needed, whose levels
    and, for a split of every imaged A-line, the share of its dim class without a surface and of the edge, and
    the decay of a dim class whose cut is detected."""
    return {"focus_level_class_ratio": None if split.class_ratio is None else round(split.class_ratio, 3),
            "focus_level_min_class_ratio": split.min_class_ratio, "focus_level_source": split.source,
            "focus_level_surfaceless_fraction": None if split.surfaceless_fraction is None
            else round(split.surfaceless_fraction, 4),
            "focus_level_edge_fraction": None if split.edge_fraction is None else round(split.edge_fraction, 4),
            "focus_level_decay_per_mm": None if split.decay_per_mm is None else round(split.decay_per_mm, 4),
            "focus_level_decay_sd_per_mm": None if split.decay_sd_per_mm is None else round(split.decay_sd_per_mm, 4)}


def _shift_decision(
    background: focus.BackgroundStatistics, cells: np.ndarray, noise_floor: float, first_depth: np.ndarray,
    decay_per_px: float,
) -> tuple[dict[str, Any], list[str]]:
    """Did the focus follow the mosaic step's applied shifts? The QC fields and flags of the decision.

    The agarose ``cells``' signal (as :meth:`~linumpy.intensity.focus.BackgroundStatistics.background_profile`
    takes it) at the well-sampled depths, regressed on the cells' mean shifts
    (:func:`linumpy.intensity.focus_shift.focus_displacement`, :func:`~linumpy.intensity.focus_shift.decide`).
    """
    use, signal, lines = background.cell_signal(cells, noise_floor, first_depth, decay_per_px)
    support = lines.sum(axis=0)
    depths = support >= max(focus.MIN_SUPPORT_LINES, focus.MIN_SUPPORT_FRACTION * support.max(initial=0))
    found = focus_shift.focus_displacement(signal, lines, focus.cell_gains(signal, lines),
                                           background.cell_shifts()[use], depths)
    per_line, why = focus_shift.decide(found)
    qc = {
        "focus_shift_per_aline": per_line,
        "focus_shift_decision": why,
        "focus_shift_slope": None if found.slope is None else round(found.slope, 4),
        "focus_shift_slope_sd": None if found.slope_sd is None else round(found.slope_sd, 4),
        "focus_shift_cells": found.cells,
        "focus_shift_spread_px": round(found.shift_sd_px, 4),
    }
    logger.info("focus and the applied field curvature: %s", why)
    flags = [f"focus read as one profile although the field curvature was applied: {why}"] \
        if why.startswith("one profile: unsure") or why.startswith("one profile: too few") else []
    return qc, flags


def _cell_first_depth(background: focus.BackgroundStatistics, plane: np.ndarray | None, factor: int) -> np.ndarray:
    """First depth of each statistics cell below its cut: the deeper of its mean detected surface
    and the surface plane's deepest point over the cell, plus the margin (voxels)."""
    first = background.cell_surfaces()
    if plane is not None:
        rows, cols = np.divmod(np.arange(first.size), background.grid[1])
        size = background.cell_px * factor
        corners = [plane[0] + plane[1] * (rows + dy) * size + plane[2] * (cols + dx) * size
                   for dy in (0, 1) for dx in (0, 1)]
        first = np.fmax(first, np.max(corners, axis=0))
    return np.ceil(first) + background.margin_px


def _output_depth(
    settings: AxialSettings, stats: SliceStatistics, n_z: int, surface_depth_px: int, dz_mm: float
) -> int:
    """Output depth in voxels: the useful depth, or from the mean surface to the bottom."""
    if settings.useful_depth_um is not None:
        return max(1, int(round(settings.useful_depth_um / (dz_mm * 1000))))
    if stats.mean_surface_px is None:
        return n_z
    return max(1, n_z - int(round(stats.mean_surface_px)) + surface_depth_px)


def _clip_to_dtype(values: np.ndarray, dtype: str) -> int:
    """Clip float32 ``values`` in place to the finite range of ``dtype``; return how many were clipped."""
    limit = np.float32(np.finfo(dtype).max)
    if limit >= np.finfo(np.float32).max:
        return 0
    outside = int(np.count_nonzero(np.abs(values) > limit))
    if outside:
        np.clip(values, -limit, limit, out=values)
    return outside


def _map_box_lines(settings: AxialSettings) -> int:
    """A-lines averaged in each value of the attenuation map's signal: its box (of bins with the edge-aware sums)."""
    if settings.tail_edge_sigma_px > 0:
        return (attenuation.EDGE_BIN * (attenuation.box_width(settings.tail_sigma_px) // attenuation.EDGE_BIN | 1)) ** 2
    return attenuation.box_width(settings.tail_sigma_px) ** 2


def _tail_halo(settings: AxialSettings) -> int:
    """A-lines of lateral halo the block's sums need: their lateral average and the map's split box."""
    split = attenuation.box_width(attenuation_map.SPLIT_SIGMA_PX) // 2
    if settings.tail_edge_sigma_px > 0:  # two boxes on the coefficient bins, + a bin for their phase
        bin_px = attenuation.EDGE_BIN
        return max(split, bin_px * (2 * (attenuation.box_width(settings.tail_edge_sigma_px / bin_px) // 2) + 1))
    return max(split, attenuation.box_width(settings.tail_sigma_px) // 2 if settings.tail_sigma_px > 0 else 0)


def _edge_aware_tails(
    block: np.ndarray, taken: attenuation.BlockPass, found_px: np.ndarray, settings: AxialSettings, map_of: MapFit,
    inner: tuple[slice, slice], planes: tuple[int, int] | None = None,
    noise: np.ndarray | None = None, tissue: np.ndarray | None = None, cut_px: np.ndarray | None = None,
    floor: np.ndarray | None = None, floored: np.ndarray | None = None,
) -> tuple[np.ndarray, Callable[[], None] | None, attenuation_map.WindowedAttenuation]:
    """The inner signal clipped at 0, its compensation by its edge-aware tail sums, and the attenuation map.

    See :func:`correct_block`. The compensation, a call that compensates the inner signal in place
    (:func:`linumpy.intensity.attenuation.compensate_edge_aware`), is None unless the attenuation mode is
    ``vermeer``.

    ``block`` is the noise-floor-subtracted signal, clipped at 0 by ``taken``, which holds what the
    pass over it took (:class:`linumpy.intensity.attenuation.BlockPass`, on the block's bins).
    Both come from binned passes (:class:`linumpy.intensity.attenuation.BinGrid`):
    the map is fitted on the bins' box-averaged sums of the unclipped signal and repeated
    to their A-lines (NaN where an A-line has no surface, detected or borrowed from a detected one
    within ``BORROW_SURFACE_PX``: :func:`linumpy.intensity.attenuation_map.borrowed_surface`), the
    compensation's sums are the guided average of the clipped signal (``planes``: only its planes 0 and
    ``[start, stop)`` are evaluated and compensated, see :func:`linumpy.intensity.attenuation.edge_aware_tails`).
    With ``settings.attenuation_step_log`` > 0 the compensation's sums are those of the signal with its
    reflectivity steps divided out (:func:`linumpy.intensity.attenuation.reflectivity_steps`; ``noise``:
    the noise floor over the focus per plane), and the map records the A-lines that had one (``stepped``).
    ``floor``: the compensation's least sums per plane (:func:`_sum_floor`), and the noise the A-lines' ranges
    end in (:data:`NOISE_END_FACTOR`); ``floored`` (shape (2,)): the voxels the floor raised are added to its
    element 0, the A-lines whose range ended to element 1.
    ``tissue``: the A-lines' class (:func:`correct_block`); a bin is tissue when at least half its A-lines
    are, and the bins at a change of class are ``mixed``
    (:func:`linumpy.intensity.attenuation_map.class_boundary`). ``cut_px``: the slice's cut plane under the
    block, lowered by its tolerance (:func:`_cut_below`), which the A-lines without support and without a
    surface are fitted from (:func:`linumpy.intensity.attenuation_map.planed_surface`); None: left unmapped.
    """
    grid = taken.grid
    sparse = _sparse_support(found_px, taken.imaged, tissue)
    # the map's fit starts at a neighbour's surface where none was detected (dim tissue far above the focus)
    found_px, borrowed = attenuation_map.borrowed_surface(found_px, taken.imaged)
    planed = np.zeros(sparse.shape, bool)
    if cut_px is not None:  # further from any detected cut, where the class's cut is rarely seen: the cut plane
        found_px, planed = attenuation_map.planed_surface(found_px, sparse, cut_px)
    sparse = sparse[inner]
    found = np.isfinite(found_px)
    count = grid.binned(found.astype(np.float32))
    start = np.divide(grid.binned(np.where(found, found_px, 0).astype(np.float32)), count,
                      out=np.full(count.shape, np.nan, np.float32), where=count > 0)
    map_sums, sums = taken.tail_sums()
    covering, bins, _, within = grid.covering(inner)  # the fit is per bin: only the bins of inner A-lines
    map_tails = attenuation.binned_box_tails(map_sums, settings.tail_sigma_px, settings.tail_window_px)
    # the compensation's extension from the unclipped sums (the clipped noise is no tail; docs/intensity.md)
    extension = None if settings.attenuation != "vermeer" or settings.attenuation_step_log > 0 else \
        unclipped_extension(block, map_sums, grid, settings.tail_edge_sigma_px, settings.tail_window_px, inner,
                            taken.guide())
    del map_sums
    stride = max(1, SPLIT_STRIDE_PX // attenuation.EDGE_BIN)
    widths = (attenuation.box_width(sigma) // attenuation.EDGE_BIN | 1
              for sigma in (settings.tail_sigma_px, attenuation_map.SPLIT_SIGMA_PX))
    offsets = attenuation_map.neighbour_offsets(*widths)
    split_tails = attenuation_map.neighbour_box_sums(map_tails, offsets, bins, stride)
    mapped = map_of(map_tails[(slice(None), *bins)], start[bins], split_tails, stride)
    del map_tails, split_tails
    guide = taken.guide()  # the A-lines' levels (clipped signal): the map's mixing, the guide
    mixed = attenuation_map.mixed_lines(np.exp(guide), attenuation.box_width(settings.tail_sigma_px))
    if tissue is not None:  # the bins whose box holds tissue and agarose: their own signal may hold both
        mixed |= grid.fine(attenuation_map.class_boundary(grid.binned(tissue.astype(np.float32)) >= 0.5))
    mixed = mixed[inner]
    mapped = mapped.apply(lambda values: covering.fine(values)[within]).unsupported(found[inner]).without(mixed)
    mapped = mapped.with_borrowed(borrowed[inner], planed[inner]).with_sparse(sparse)
    if settings.attenuation != "vermeer":
        return block[(slice(None), *inner)], None, mapped
    if settings.attenuation_step_log > 0:
        steps = attenuation.reflectivity_steps(
            sums, start, np.zeros(block.shape[0]) if noise is None else noise,
            attenuation.box_width(settings.tail_sigma_px) // attenuation.EDGE_BIN | 1, settings.attenuation_step_log)
        sums = attenuation.divide_steps(sums, steps)
        mapped = mapped.with_steps(covering.fine(np.any(steps != 0, axis=0)[bins])[within])

    def compensate() -> None:
        attenuation.compensate_edge_aware(block, sums, grid, settings.tail_edge_sigma_px, settings.tail_window_px,
                                          inner=inner, planes=planes, guide=guide, floor=floor, floored=floored,
                                          noise_end=NOISE_END_FACTOR, extension=extension)

    return block[(slice(None), *inner)], compensate, mapped


def _cut_below(stats: SliceStatistics, shape: tuple[int, int], corner: tuple[int, int]) -> np.ndarray | None:
    """The slice's cut plane over a block of ``shape`` at ``corner``, lowered by the plane's inlier tolerance.

    None without a plane (no detected surface).
    """
    if stats.plane is None:
        return None
    return surface.plane_values(stats.plane, shape, *corner) + np.float32(stats.plane_tolerance_px)


def _sparse_support(found_px: np.ndarray, imaged: np.ndarray, tissue: np.ndarray | None) -> np.ndarray:
    """The imaged A-lines whose class's detected surfaces around them are too sparse to support their map.

    :func:`linumpy.intensity.attenuation_map.surface_support` below
    :data:`~linumpy.intensity.attenuation_map.MIN_SURFACE_SUPPORT`.
    """
    share = attenuation_map.surface_support(np.isfinite(found_px), imaged, tissue)
    return imaged & (share < attenuation_map.MIN_SURFACE_SUPPORT)


def _box_tails(
    signal: np.ndarray, found_px: np.ndarray, settings: AxialSettings, map_of: MapFit, inner: tuple[slice, slice],
    tissue: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None, attenuation_map.WindowedAttenuation]:
    """:func:`_edge_aware_tails` with plain box-averaged tail sums (``tail_edge_sigma_px`` 0)."""
    sparse = _sparse_support(found_px, np.any(signal != 0, axis=0), tissue)[inner]
    tails = attenuation.tail_sums(signal, settings.tail_window_px, settings.tail_sigma_px)
    offsets = attenuation_map.neighbour_offsets(attenuation.box_width(settings.tail_sigma_px),
                                                attenuation.box_width(attenuation_map.SPLIT_SIGMA_PX))
    split_tails = attenuation_map.neighbour_box_sums(tails, offsets, inner, SPLIT_STRIDE_PX)
    mapped = map_of(tails[(slice(None), *inner)], found_px[inner], split_tails, SPLIT_STRIDE_PX)
    del tails, split_tails
    np.maximum(signal, 0, out=signal)
    mixed = attenuation_map.mixed_lines(np.exp(attenuation.level_guide(signal)),
                                        attenuation.box_width(settings.tail_sigma_px))[inner]
    mapped = mapped.without(mixed).with_sparse(sparse)
    tails = None
    if settings.attenuation == "vermeer":
        tails = attenuation.tail_sums(signal, settings.tail_window_px, settings.tail_sigma_px)[(slice(None), *inner)]
    return signal[(slice(None), *inner)], tails, mapped


def correct_block(
    data: np.ndarray,
    found_px: np.ndarray,
    stats: SliceStatistics,
    settings: AxialSettings,
    dz_mm: float,
    surface_depth_px: int,
    depth_px: int,
    origin: tuple[int, int] = (0, 0),
    inner: tuple[slice, slice] | None = None,
    uncompensated: bool = False,
    overwrite_data: bool = False,
    tissue: np.ndarray | None = None,
    floored: np.ndarray | None = None,
) -> tuple[np.ndarray, attenuation_map.WindowedAttenuation, np.ndarray | None]:
    """Correct one block of whole A-lines (pass 2).

    Parameters
    ----------
    data : ndarray, shape (z, y, x)
    found_px : ndarray, shape (y, x)
        Detected surface (voxels), NaN where none (it sets the attenuation range; the
        shift follows the surface plane when there is one).
    stats : SliceStatistics
    settings : AxialSettings
    dz_mm : float
    surface_depth_px, depth_px : int
        Where the surface lands in the output, and the output depth.
    origin : (int, int)
        (y, x) of the block in the slice without its halo (to evaluate the surface plane).
    inner : (slice, slice), optional
        The block inside ``data`` and ``found_px`` when they carry a lateral
        halo (used only to smooth the end-of-range sums); the result covers
        ``inner`` only.
    uncompensated : bool
        Also return the signal before compensation, binned (:func:`_binned_uncompensated`).
    overwrite_data : bool
        ``data`` (float32) may be overwritten: the correction works in it instead of a copy.
    tissue : ndarray of bool, shape (y, x), optional
        The A-lines of ``data`` that are tissue (pass 1's level above ``stats.tissue_level``), the
        others agarose (or tissue as dim): with the edge-aware sums, the map leaves the bins at a change
        of class unmapped (``mixed``; :func:`linumpy.intensity.attenuation_map.class_boundary`). None:
        one class.
    floored : ndarray of int64, shape (3,), optional
        With the compensation: the voxels whose tail sums were raised to the noise's (:func:`_sum_floor`;
        signal other than 0) are added to element 0, the voxels compensated to element 1, the A-lines whose
        range ended in the noise (edge-aware sums only, :data:`NOISE_END_FACTOR`) to element 2.

    Returns
    -------
    flat : ndarray, shape (depth_px, y', x'), float32
        The corrected, flattened A-lines.
    mapped : WindowedAttenuation
        The attenuation (mm^-1) of each A-line, fitted from its surface down to the
        first change of the A-line or the bottom of the output
        (:func:`linumpy.intensity.attenuation_map.window_attenuation`), shape (y', x').
    plain : ndarray or None
        The block's signal before compensation (:func:`_binned_uncompensated`) when ``uncompensated``.
    """
    # the map is fitted on lateral means of the signal before negatives are clipped: clipping
    # first lifts every mean where the signal is near the noise floor (deep, dark tissue), and
    # a lifted deep signal reads as less attenuation (docs/intensity.md, *Noise floor bias*)
    inner = inner or (slice(None), slice(None))
    corner = (origin[0] - (inner[0].start or 0), origin[1] - (inner[1].start or 0))
    taken = attenuation.BlockPass(data.shape, attenuation.BinGrid.of(data.shape[1:], corner)) \
        if settings.tail_edge_sigma_px > 0 else None
    signal = _focus_corrected(data, stats, overwrite_data, corner, taken)
    fit_depth_px = depth_px - surface_depth_px
    shift = _flatten_shift(found_px[inner], stats, surface_depth_px, origin)
    # the input depths the flattening reads: the compensation (and its tail sums) is needed there only
    planes = (max(0, int(shift.min())), max(0, min(signal.shape[0], int(shift.max()) + depth_px)))
    noise = np.full(signal.shape[0], stats.noise_floor, np.float32)
    # the noise variance of the map's signal: a mean over its box's A-lines (independent noise), over the focus
    variance = np.full(signal.shape[0], stats.noise_variance / _map_box_lines(settings), np.float32)
    if stats.focus_profile is not None:
        noise /= stats.focus_profile
        variance /= np.square(stats.focus_profile, dtype=np.float32)

    def map_of(tails: np.ndarray, start: np.ndarray, split_tails: np.ndarray,
               stride: int) -> attenuation_map.WindowedAttenuation:
        return attenuation_map.window_attenuation(tails, start, fit_depth_px, dz_mm, split_tails=split_tails,
                                                  split_stride=stride, noise=noise,
                                                  noise_variance=variance if stats.noise_variance > 0 else None)

    floor = _sum_floor(stats, signal.shape[0])
    floored = np.zeros(3, np.int64) if floored is None else floored
    if taken is not None:
        signal, compensate, mapped = _edge_aware_tails(signal, taken, found_px, settings, map_of, inner, planes, noise,
                                                  tissue, _cut_below(stats, found_px.shape, corner), floor,
                                                  floored[::2])
    else:
        signal, tails, mapped = _box_tails(signal, found_px, settings, map_of, inner, tissue)
        compensate = None if tails is None else functools.partial(attenuation.compensate_attenuation, signal, tails,
                                                                  out=signal, planes=planes, floor=floor)
        if tails is not None and floor is not None:
            floored[0] += _count_below(signal, tails, floor, planes)
    if compensate is not None:
        floored[1] += (planes[1] - planes[0]) * signal[0].size
    found_px = found_px[inner]
    plain = _binned_uncompensated(signal, found_px, shift, depth_px) if uncompensated else None
    if compensate is not None:  # in place: ``plain`` is a flattened copy
        compensate()
    return surface.flatten_surface(signal, shift, depth_px), mapped, plain


def _sum_floor(stats: SliceStatistics, n_z: int) -> np.ndarray | None:
    """The compensation's least tail sums (:func:`linumpy.intensity.attenuation.noise_sum_floor`), None without
    a noise estimate.

    The noise of each plane's signal: the slice's (``noise_variance``) divided by the focus profile (the
    profile as measured: with a focus shift, each A-line's is read at its own shift, which moves its floor
    by the shift's few planes).
    """
    if stats.noise_variance <= 0:
        return None
    sd = np.full(n_z, np.sqrt(stats.noise_variance))
    if stats.focus_profile is not None:
        sd /= stats.focus_profile
    return attenuation.noise_sum_floor(sd)


def _count_below(signal: np.ndarray, tails: np.ndarray, floor: np.ndarray, planes: tuple[int, int]) -> int:
    """The voxels of the planes ``[start, stop)`` the floor changes: sums (shape ``(z + 1, y, x)``) below
    ``floor``, signal other than 0."""
    start, stop = planes
    return int(np.count_nonzero((tails[start:stop] < floor[start:stop, None, None]) & (signal[start:stop] != 0)))


def _binned_uncompensated(signal: np.ndarray, found: np.ndarray, shift: np.ndarray, depth_px: int) -> np.ndarray:
    """The block's signal before attenuation compensation, flattened, binned laterally (see :func:`uncompensated_path`).

    ``signal``: focus corrected, noise floor subtracted and clipped at 0 (the compensation's
    input); flattened by ``shift`` as the output, averaged over :data:`UNCOMPENSATED_BINNING`
    x :data:`UNCOMPENSATED_BINNING` A-lines (:func:`~linumpy.intensity.blocks.bin_laterally`:
    edge A-lines repeated at the slice's far edges; the block's origin must be a multiple of
    the binning), and set to 0 above each bin's tissue top (its A-lines' mean detected
    surface ``found`` in the flattened frame, rounded; none: nothing removed).
    Returns shape ``(depth_px, ceil(y / b), ceil(x / b))``, float32.
    """
    binned = _flattened_binned(signal, shift, depth_px, UNCOMPENSATED_BINNING)
    top = found - shift
    has_top = np.isfinite(top)
    count = bin_laterally(has_top[None], UNCOMPENSATED_BINNING)[0]
    top_sum = bin_laterally(np.where(has_top, top, 0)[None], UNCOMPENSATED_BINNING)[0]
    mean_top = np.divide(top_sum, count, out=np.zeros_like(count), where=count > 0)
    binned[np.arange(depth_px)[:, None, None] < np.rint(mean_top)[None]] = 0
    return binned


def _flattened_binned(signal: np.ndarray, shift: np.ndarray, depth_px: int, factor: int) -> np.ndarray:
    """``bin_laterally(flatten_surface(signal, shift, depth_px), factor)``, the same bits, flattening fewer A-lines.

    A bin whose A-lines share one shift (all but those a shift edge crosses) is binned first, on the input
    depths the flattening reads, and then flattened by that shift (the bin's values are the same voxels summed
    in the same order); the others are flattened and binned from their own A-lines (gathered bin by bin, the
    far edge's A-lines repeated as :func:`~linumpy.intensity.blocks.bin_laterally` pads).
    """
    n_z, n_y, n_x = signal.shape
    rows, cols = (np.minimum(np.arange(-(-n // factor) * factor), n - 1) for n in (n_y, n_x))  # edge repeated
    padded = shift[np.ix_(rows, cols)].reshape(rows.size // factor, factor, cols.size // factor, factor)
    low, high = padded.min(axis=(1, 3)), padded.max(axis=(1, 3))
    first = max(0, int(low.min()))
    stop = max(first + 1, min(n_z, int(high.max()) + depth_px))
    binned = surface.flatten_surface(bin_laterally(signal[first:stop], factor), low - first, depth_px)
    mixed_y, mixed_x = np.nonzero(low != high)
    if mixed_y.size:
        within = np.arange(factor)
        lines = (rows[mixed_y[:, None, None] * factor + within[None, :, None]],
                 cols[mixed_x[:, None, None] * factor + within[None, None, :]])  # (bin, y in bin, x in bin)
        # the bins side by side along x: (y in bin, bin, x in bin)
        patches = signal[:, lines[0], lines[1]].transpose(0, 2, 1, 3).reshape(n_z, factor, -1)
        shifts = shift[lines].transpose(1, 0, 2).reshape(factor, -1)
        binned[:, mixed_y, mixed_x] = bin_laterally(surface.flatten_surface(patches, shifts, depth_px), factor)[:, 0]
    return binned


def _focus_corrected(data: np.ndarray, stats: SliceStatistics, overwrite: bool = False,
                     corner: tuple[int, int] = (0, 0), taken: attenuation.BlockPass | None = None) -> np.ndarray:
    """The signal above the noise floor, divided by the focus profile (float32, not clipped).

    ``overwrite``: computed in ``data`` when it is float32. With ``stats.focus_shift``, each
    A-line is divided by the profile read at its own applied shift
    (:func:`linumpy.intensity.focus_shift.divide_by_focus`); ``corner``: ``data``'s (y, x) in the slice.
    Padding (A-lines of zeros: outside the tiles) stays 0: less the noise floor it would be negative,
    and the map's box means, taken before the clipping, of the A-lines beside it would sink towards
    the depths where the focus is weak (the gel at the mosaic's edge reading a faster decay).
    Computed :data:`~linumpy.intensity.attenuation.GROUP_PLANES` planes at a time; ``taken`` takes each
    group once it is done, while it is in the cache (:meth:`~linumpy.intensity.attenuation.BlockPass.add`,
    which clips it at 0 in place). Computed in place without a focus shift, ``taken`` makes each group
    in its own compiled pass (:meth:`~linumpy.intensity.attenuation.BlockPass.add_corrected`: the same bits).
    """
    shift = None
    if stats.focus_profile is not None and stats.focus_shift is not None:
        rows, cols = (slice(c, c + n) for c, n in zip(corner, data.shape[1:]))
        shift = stats.focus_shift.region(rows, cols)
    in_place = overwrite and data.dtype == np.float32
    if taken is not None and in_place and shift is None:
        padding = attenuation_kernels.zero_lines(data)
        for first in range(0, data.shape[0], attenuation.GROUP_PLANES):
            taken.add_corrected(first, data[first : first + attenuation.GROUP_PLANES], stats.noise_floor,
                                stats.focus_profile, padding)
        return data
    padding = ~data.any(axis=0)
    padded = bool(padding.any())
    signal = data if in_place else np.empty(data.shape, np.float32)
    for first in range(0, data.shape[0], attenuation.GROUP_PLANES):
        stop = min(data.shape[0], first + attenuation.GROUP_PLANES)
        part = np.subtract(data[first:stop], np.float32(stats.noise_floor), out=signal[first:stop], dtype=np.float32)
        if shift is not None:
            focus_shift.divide_by_focus(part, stats.focus_profile, shift, first)
        elif stats.focus_profile is not None:
            part /= stats.focus_profile[first:stop, None, None]
        if padded:
            part[:, padding] = 0
        if taken is not None:
            taken.add(first, part)
    return signal


def _flatten_shift(
    found_px: np.ndarray, stats: SliceStatistics, surface_depth_px: int, origin: tuple[int, int]
) -> np.ndarray:
    """Per A-line shift bringing the cut to ``surface_depth_px`` (the surface plane when there is one)."""
    if stats.plane is None:
        used = np.where(np.isfinite(found_px), found_px, surface_depth_px)
    else:  # the cut is a plane: its bumps do not move the tissue below them (see the module docstring)
        used = surface.plane_values(stats.plane, found_px.shape, *origin)
    return np.rint(used).astype(np.int64) - surface_depth_px

