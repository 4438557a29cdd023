"""Stack normalised slices into one volume: place, refine, assemble.

:func:`plan_stack` decides where every slice goes (motor positions, encoder
glitches corrected, refined by registering each slice against the previous
one on laterally downsampled planes); :func:`write_stack` then assembles the
volume chunk by chunk into any region sink (an OME-Zarr writer).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import dask.array as da
import numpy as np
from scipy import ndimage

from linumpy.errors import InputError
from linumpy.intensity.transmission import held_signal
from linumpy.parallel import default_workers
from linumpy.resample import resample_to_resolution
from linumpy.stack.anchors import LateralEvidence, anchor_lateral_steps, lateral_blocks, lateral_evidence
from linumpy.stack.assemble import FLAT_RAMP_FRACTION, PlacedSlice, RegionSink, assemble_volume, union_box
from linumpy.stack.averaging import (
    MAX_AGREEMENT,
    LEVEL_TOLERANCE,
    MEASURE_BATCH_PLANES,
    MEASURE_SIZE_PX,
    MIN_SHARE,
    OverlapErrors,
    averaged_stop,
    error_profiles,
    owner_levels,
    plane_measures,
)
from linumpy.stack.blocks import block_estimates, vote_blocks
from linumpy.stack.depths import DepthPlacement, absolute_depths_um, link_sigma_um, place_depths
from linumpy.stack.gains import (
    NO_SLICE_BELOW,
    LateralGain,
    OverlapRatio,
    borrowed_trends,
    coarse_map,
    compensated_levels,
    compensated_ratios,
    confidence_faded,
    corrected_ratios,
    fit_gains,
    log_ratio_map,
    map_level_log,
    overlap_ratio,
    partial_fraction,
    trend_measured,
)
from linumpy.stack.interpolate import edge_planes, interpolate_gaps
from linumpy.stack.levels import level_layout
from linumpy.stack.placement import nominal_origins_um
from linumpy.stack.pairs import pair_map
from linumpy.stack.held import HeldBlocks
from linumpy.stack.planes import PlaneReader, read_planes
from linumpy.stack.options import STACK_MAX_ROTATION_DEG
from linumpy.stack.rotation import derotate_slices
from linumpy.stack.slips import climb_to_thickness
from linumpy.stack.tilt import common_tilt, retilt_slice
from linumpy.stack.refine import (
    Z_SCAN_LATERAL_SIGMA_PX,
    PairEstimate,
    ResolvedOrigins,
    bandpass_planes,
    fit_lateral_shift,
    register_pair,
    resolve_origins,
)

LOGGER = logging.getLogger(__name__)

#: Fewest top planes matched against the previous slice.
MIN_PLANES = 2
#: Planes below a slice's surface left out of its z registration. The z smoothing
#: (:func:`linumpy.stack.refine.bandpass_planes`) has no planes above the surface to
#: average, so the top planes' content looked ~0.3 plane deeper than it is and every step
#: came out ~0.05 plane too deep (harsh seeds 0-1: +0.3 to +0.5 plane over 8 slices);
#: the cut face itself (rough, partly cut voxels) is also the least reliable plane. Not
#: skipped in a thin overlap (fewer than ``n_planes`` planes left below the skipped ones).
TOP_SKIP_PLANES = 2
#: Relative tolerance when comparing voxel sizes.
RESOLUTION_TOLERANCE = 0.01
#: Default blend overlap of consecutive slices, as a fraction of the thickness.
DEFAULT_BLEND_OVERLAP = 0.1
#: An overlap whose speckle ceiling (the registration's ``lateral_ceiling``: the NCC that two images of
#: the same tissue with independent speckle reach) is below this is speckle-limited: averaging its two
#: images gains more than their deep planes cost. Foreign ``harsh A`` (one frame per B-scan) 0.47-0.56,
#: two frames 0.67-0.77, the simulator's matrix 0.76-1 (session ncc50).
SPECKLE_LIMITED_CEILING = 0.6
#: Blend overlap, as a fraction of the thickness, of a speckle-limited pair when ``--blend_overlap_um``
#: is not given (harsh A +0.006 NCC against the default's 0.1; the simulator's matrix, where no overlap
#: is speckle-limited, loses 0.001-0.006 with it: session ncc50).
SPECKLE_BLEND_OVERLAP = 0.6
#: Largest float32 planes (bytes) one pair's registration may read for pairs to run side by side
#: (:func:`_pair_workers`): the five ``small`` slices' pairs read up to 0.15 GB each, a pair of
#: 1792 px wide ``large`` slices about 0.9 GB (one at a time).
PARALLEL_PAIR_BYTES = 256 * 2**20
#: Planes beside the nominal step's where a registration keeps its raw planes for the boundary ratio
#: (:func:`_boundary_spare`): a placed step up to 2 planes off the motor step (4% of the five ``small`` slices'
#: 50-plane step, placed 49.97-50.12; the tests' phantom, 19-22 for 20) reads no plane again.
BOUNDARY_SPARE_PLANES = 2
#: Largest raw planes (bytes) a registration keeps for the boundary ratio (12 + 8 planes of 460 px: 17 MB; of
#: 1792 px: 260 MB, beyond it: those pairs read their boundary planes again).
BOUNDARY_SPARE_BYTES = 64 * 2**20
#: The z scan reads the pyramid level above the registration level (half its lateral sampling: a quarter of the
#: pixels read, band-passed and correlated) when both slices have it at least this many pixels wide
#: (:func:`_coarse_scan_level`); the lateral shift is then measured again on the registration level.
COARSE_SCAN_MIN_PX = 128
#: The coarse scan's z Gaussian (planes): its 2 x 2 block means already average the speckle that the
#: registration level's sigma of 1 plane averages (benchmarks/README.md, sessions stack61 and stack65).
COARSE_AXIAL_SIGMA_PX = 0.5
#: Planes read on either side of the boundary ratio's for the lateral refinement's z smoothing.
REFINE_HALO_PLANES = 2
#: How the axial correction's ``focus_mode`` attribute begins when it divided no focus profile out of a slice for
#: want of data (``"none (<why>)"``; ``"none"`` alone: skipped on request, for every slice alike).
FOCUS_SKIPPED_PREFIX = "none ("


@dataclass(frozen=True)
class SliceVolume:
    """One normalised slice as the stacker sees it.

    Attributes
    ----------
    slice_id : int
        The slice id.
    levels : sequence of (dask.array.Array, tuple of float)
        Pyramid levels ``(z, y, x)``, finest first, each with its voxel size
        ``(z, y, x)`` in micrometres. Levels may be coarser laterally only:
        every level has the same planes.
    useful_range : tuple of int
        Planes ``[start, stop)`` holding tissue below the flattened surface
        (the axial correction's useful depth).
    surface_plane : tuple of float, optional
        ``(a, b, c)``: the plane ``a + b y + c x`` (planes, level-0 pixels)
        the axial correction flattened the slice by; None if unknown.
    intensity_scale : float, optional
        The normalisation's divisor (``high - low`` of its ``normalize_values``):
        the slice's values times it are in the axial correction's compensated
        units, which every slice shares; None if unknown.
    read_levels : sequence of (dask.array.Array, tuple of float), optional
        The same levels (the same values and transforms) in smaller blocks
        along depth, for the pairs' reads of a few planes
        (:meth:`planes_level`): opened in runs of a few planes, they decode
        only the planes read (:meth:`linumpy.io.zarr.StoredArray.to_dask`),
        while the assembly, which reads every plane, reads ``levels`` a
        whole chunk at a time. None: ``levels``.
    focus_skipped : str, optional
        Why the axial correction divided no focus profile out of the slice
        (its ``focus_mode``, e.g. ``"none (no background A-lines)"``); None
        when it did. Such a slice is off the compensated scale the others
        share (its values keep the focus), so no slice's compensated level is
        trusted: the gains start from the normalised levels
        (:func:`~linumpy.stack.gains.compensated_levels`), and its own level
        and depth trend are left to its overlaps, untied from its neighbours'
        (:func:`~linumpy.stack.gains.fit_gains`, ``untied``).
    held_blocks : sequence of HeldBlocks, optional
        Per level, the blocks of the turned slice kept from one phase of the
        stack for the next (:func:`~linumpy.stack.rotation.rotate_slice`);
        None: not turned.
    """

    slice_id: int
    levels: Sequence[tuple[da.Array, tuple[float, float, float]]]
    useful_range: tuple[int, int]
    surface_plane: tuple[float, float, float] | None = None
    intensity_scale: float | None = None
    read_levels: Sequence[tuple[da.Array, tuple[float, float, float]]] | None = None
    focus_skipped: str | None = None
    held_blocks: Sequence[HeldBlocks] | None = None

    @property
    def useful_depth(self) -> int:
        """Number of useful planes."""
        return self.useful_range[1] - self.useful_range[0]

    @property
    def resolution_um(self) -> tuple[float, float, float]:
        """Voxel size of the finest level."""
        return tuple(self.levels[0][1])

    def level_for_resolution(self, resolution_um: float) -> tuple[da.Array, tuple[float, ...]]:
        """The coarsest level still at least as fine as ``resolution_um`` laterally."""
        return self.levels[self.level_index(resolution_um)]

    def level_index(self, resolution_um: float) -> int:
        """Index of :meth:`level_for_resolution`'s level."""
        chosen = 0
        for index, (_, resolution) in enumerate(level_layout(self.levels)):
            if max(resolution[1:]) <= resolution_um * (1 + RESOLUTION_TOLERANCE):
                chosen = index
        return chosen

    def planes_level(self, level: int) -> tuple[da.Array, tuple[float, ...]]:
        """Level ``level`` as the pairs read a few of its planes (``read_levels``' when given)."""
        return (self.levels if self.read_levels is None else self.read_levels)[level]

    def widest_levels(self, size: int) -> list[int]:
        """Indices of the levels at least ``size`` pixels wide (the finest always counts)."""
        return [0] + [i for i, (shape, _) in enumerate(level_layout(self.levels)) if i and max(shape[1:]) >= size]


@dataclass(frozen=True)
class StackParameters:
    """Tuning of the placement refinement and of the depth kept from each slice.

    Attributes
    ----------
    z_tolerance_um : float or None
        Half-width of the z scan around the motor offset and the encoder
        glitch tolerance in depth; None: a quarter of the slice thickness.
    lateral_tolerance_um : float
        Encoder glitch tolerance laterally.
    min_confidence : float
        Registration estimates below this NCC leave the motor position.
    max_z_drift_um : float or None
        Bound on ``|depth - motor depth|``; None: a quarter of the thickness.
    max_lateral_drift_um : float
        Bound on the lateral deviation from the motor positions.
    n_planes : int
        Top planes of a slice matched against the previous slice.
    registration_size : int
        Registration reads the coarsest level (common to both slices) at
        least this many pixels wide and block-averages it to between one
        and two times this size.
    register : bool
        Refine the motor placement at all.
    match_intensity : bool
        Fit per-slice gains on the overlaps so consecutive slabs agree
        (:mod:`linumpy.stack.gains`); the boundary ratios are recorded either way.
    common_tilt : bool
        Re-flatten every slice to the median tilt of the slices' surface
        planes (:mod:`linumpy.stack.tilt`) before registering them.
    coarse_scan : bool
        Scan z on the pyramid level above the registration level when both
        slices have it wide enough, the lateral shift measured again on the
        registration level (:func:`_register_consecutive`).
    blend_overlap_um : float or None
        Depth kept below each slice's surface beyond its step to the next
        slice (at least the thickness), so consecutive slices overlap by this
        much to blend; deeper planes (noisier, dimmer) are dropped. None:
        :data:`DEFAULT_BLEND_OVERLAP` times the thickness. Registration still
        reads the whole useful range.
    max_rotation_deg : float
        Largest rotation about z searched between consecutive slices before
        registering them (:mod:`linumpy.stack.rotation`); 0: translation only.
    interpolate_missing : bool
        Fill the depth of missing slice ids from their neighbours
        (:mod:`linumpy.stack.interpolate`) instead of leaving zeros.
    registered_depths : bool
        Use the registered depth steps; False: the slices' depths are their
        motor and surface depths (:mod:`linumpy.stack.depths`; the motor
        depths without surface planes), the lateral steps still used
        (:mod:`linumpy.stack.voxel`: steps scaled by a wrong axial voxel).
    """

    z_tolerance_um: float | None = None
    lateral_tolerance_um: float = 20.0
    min_confidence: float = 0.3
    max_z_drift_um: float | None = None
    max_lateral_drift_um: float = 250.0
    n_planes: int = 8
    registration_size: int = 1024
    register: bool = True
    blend_overlap_um: float | None = None
    max_rotation_deg: float = STACK_MAX_ROTATION_DEG
    interpolate_missing: bool = False
    match_intensity: bool = True
    common_tilt: bool = True
    coarse_scan: bool = True
    registered_depths: bool = True


@dataclass
class StackPlan:
    """Where every slice goes, and the record of how it was decided.

    Attributes
    ----------
    placed : list of PlacedSlice
        Slices at the output voxel size, origins relative to the output's
        corner.
    shape : tuple of int
        Output shape ``(z, y, x)``.
    resolution_um : float
        Isotropic output voxel size.
    record : dict
        JSON-ready estimates and decisions for QC.
    """

    placed: list[PlacedSlice]
    shape: tuple[int, int, int]
    resolution_um: float
    record: dict = field(default_factory=dict)


def plan_stack(
    slices: Sequence[SliceVolume],
    motor_zyx_mm: np.ndarray,
    thickness_um: float,
    resolution_um: float,
    parameters: StackParameters = StackParameters(),
) -> StackPlan:
    """Place every slice of a brain in one isotropic output grid.

    Parameters
    ----------
    slices : sequence of SliceVolume
        The slices, ordered by slice id (gaps allowed).
    motor_zyx_mm : numpy.ndarray
        ``(n, 3)`` motor positions ``(z, y, x)`` in mm of the same slices.
    thickness_um : float
        Nominal slice thickness (unused for a single slice).
    resolution_um : float
        Isotropic output voxel size.
    parameters : StackParameters
        Refinement tuning.

    Returns
    -------
    StackPlan
    """
    _check_slices(slices)
    ids = [s.slice_id for s in slices]
    z_tolerance = parameters.z_tolerance_um or thickness_um / 4
    nominal, glitches = nominal_origins_um(
        motor_zyx_mm, ids, thickness_um, z_tolerance, parameters.lateral_tolerance_um
    )
    for axis, indices in glitches.items():
        for k in indices:
            LOGGER.info("encoder glitch in %s at slice %d corrected", axis, ids[k])
    estimates: list[PairEstimate | None] = [None] * len(slices)
    steps: list[np.ndarray | None] = [None] * len(slices)
    guesses: list[_BoundaryGuess | None] = [None] * len(slices)  # boundaries measured at the registered steps
    evidence: list[LateralEvidence | None] = [None] * len(slices)  # what supports each lateral step
    tilt = common_tilt([s.surface_plane for s in slices]) if parameters.common_tilt else None
    slices, moves = zip(*(retilt_slice(s, s.surface_plane, tilt) for s in slices))
    for s, move in zip(slices, moves, strict=True):
        if move < 0:
            LOGGER.warning("slice %d: its surface plane is %d planes from the common tilt at its edge; "
                           "left as flattened", s.slice_id, -move)
    rotation_deg = parameters.max_rotation_deg if parameters.register else 0.0
    pairs = [k for k in range(1, len(slices)) if ids[k] - ids[k - 1] == 1]
    # a pair whose motor step is in doubt may hide a motor slip (_check_motor_slips): searched at both steps
    in_doubt = {k for k in pairs if _step_in_doubt(nominal[k, 0] - nominal[k - 1, 0], thickness_um, z_tolerance)}
    depth_steps = [[step, thickness_um] if k in in_doubt else [step]
                   for k, step in enumerate(np.diff(nominal[:, 0], prepend=nominal[0, 0]))]
    workers = _pair_workers(slices, range(1, len(slices)), parameters.registration_size)
    band_workers = 1 if workers > 1 else default_workers()  # a read's bands side by side, or the pairs
    slices, rotations = derotate_slices(slices, depth_steps, rotation_deg, parameters.min_confidence, workers,
                                        band_workers)
    held = [None if s.held_blocks is None else s.held_blocks[s.level_index(resolution_um)] for s in slices]
    for blocks in held:  # the turned blocks of the level the assembly reads, kept for the later phases
        if blocks is not None:
            blocks.collect()
    if parameters.register:
        registered = pair_map(lambda k: _register_consecutive(
            slices[k - 1], slices[k], nominal[k] - nominal[k - 1], z_tolerance, parameters, band_workers),
            pairs, workers)
        for k, (estimate, step, guess, found) in zip(pairs, registered, strict=True):
            estimates[k], steps[k], guesses[k], evidence[k] = estimate, step, guess, found
        slips = _check_motor_slips(slices, nominal, pairs, thickness_um, z_tolerance, parameters, band_workers,
                                   estimates, steps, guesses, evidence)
    else:
        slips = [None] * len(slices)
    # a lateral step whose peak does not beat the motors' position on its own overlap is not used
    lateral_confidences = [e.lateral_confidence if e and (v is None or v.beats_motor()) else 0.0
                           for e, v in zip(estimates, evidence, strict=True)]
    anchors = anchor_lateral_steps(steps, [None if v is None else v.blocks for v in evidence], lateral_confidences,
                                   [e.pixel_um[1:] if e else None for e in estimates], parameters.min_confidence)
    max_z_drift = parameters.max_z_drift_um or thickness_um / 4
    lateral = parameters.max_lateral_drift_um
    z_confidences = [e.z_confidence if e and parameters.registered_depths else 0.0 for e in estimates]
    resolved = resolve_origins(
        nominal,
        steps,
        z_confidences,
        lateral_confidences,
        parameters.min_confidence,
        (max_z_drift, lateral, lateral),
    )
    flatten_planes = [_flatten_plane(s, tilt if move > 0 else None) for s, move in zip(slices, moves, strict=True)]
    joint = _joint_depths(slices, nominal, estimates, steps, resolved.origins_um[:, 1:], flatten_planes,
                          [e is not None and c >= parameters.min_confidence
                           for e, c in zip(estimates, z_confidences, strict=True)])
    if joint is not None and joint.joint:  # the same lateral origins
        resolved = resolve_origins(_measured_origins(nominal, joint), steps,
                                   z_confidences,
                                   lateral_confidences,
                                   parameters.min_confidence, (max_z_drift, lateral, lateral), joint.depths_um)
    speckle_limited = [parameters.blend_overlap_um is None and k + 1 < len(ids) and ids[k + 1] == ids[k] + 1
                       and estimates[k + 1] is not None
                       and estimates[k + 1].lateral_ceiling < SPECKLE_LIMITED_CEILING for k in range(len(ids))]
    kept_um = kept_depths_um(ids, resolved.origins_um[:, 0], thickness_um, parameters.blend_overlap_um,
                             speckle_limited)
    kept = [_kept_range(s, depth) for s, depth in zip(slices, kept_um, strict=True)]
    kept = _below_cut_faces(slices, kept, resolved.origins_um[:, 0])
    ratios: list[float | None] = [None] * len(slices)
    ratio_tissue: list[dict | None] = [None] * len(slices)
    depths: list[tuple[float, float] | None] = [None] * len(slices)
    lateral: list[LateralGain | None] = [None] * len(slices)
    lateral_fallback: list[str | None] = [None] * len(slices)
    lateral_confidence: list[float | None] = [None] * len(slices)
    boundaries = pair_map(lambda k: _boundary_ratio(slices[k - 1], slices[k], kept[k - 1], kept[k],
                                                    resolved.origins_um[k] - resolved.origins_um[k - 1], parameters,
                                                    band_workers, guesses[k]),
                          pairs, workers)
    for k, boundary in zip(pairs, boundaries, strict=True):
        measured_ratio, depths[k], lateral[k - 1] = boundary
        if measured_ratio is not None:
            ratios[k], ratio_tissue[k] = measured_ratio.value, measured_ratio.summary()
        if lateral[k - 1] is None:
            lateral_fallback[k - 1] = "overlap with the next slice too small: no lateral gain"
        elif not resolved.used_lateral[k]:  # on the motors alone the overlap may not be the same tissue
            lateral[k - 1] = None
            lateral_fallback[k - 1] = "next slice placed laterally by the motors: no lateral gain"
        else:  # aligned, but the tissue may differ: the map fades with the overlap's confidence
            lateral_confidence[k - 1] = estimates[k].lateral_confidence
            lateral[k - 1], lateral_fallback[k - 1] = confidence_faded(lateral[k - 1], lateral_confidence[k - 1])
    for k in range(len(slices)):
        if k + 1 == len(slices) or ids[k + 1] - ids[k] > 1:
            lateral_fallback[k] = NO_SLICE_BELOW
    if not parameters.match_intensity:
        lateral, lateral_fallback = [None] * len(slices), [None] * len(slices)
    measured = trend_measured(ratios, depths)
    if parameters.match_intensity:  # the levels start on the compensated scale the slices share
        levels, level_source = compensated_levels([None if s.focus_skipped else s.intensity_scale for s in slices])
        borrowed = borrowed_trends(measured, lateral)  # the level of the map above, for a trend nothing measures
        a, b = fit_gains(compensated_ratios(ratios, levels), depths, [s.focus_skipped is not None for s in slices],
                         trend_offsets=[0.0 if t is None else t for t in borrowed])
        a = a + levels
    else:
        levels, level_source = np.zeros(len(slices)), "not matched"
        a, b = np.zeros(len(slices)), np.zeros(len(slices))
        borrowed = [None] * len(slices)
    shortest = [_kept_range(s, depth)[1] for s, depth in
                zip(slices, kept_depths_um(ids, resolved.origins_um[:, 0], thickness_um), strict=True)]
    averaged, averaging = _averaging(slices, kept, shortest, resolved.origins_um, (a, b), resolution_um, parameters,
                                     pairs, (workers, band_workers))
    for blocks, mean in zip(held, averaged, strict=True):  # the assembly reads these planes, each block once more
        if blocks is not None:
            blocks.keep_only(mean.planes)
    placed = [
        _placed_averaged(
            replace(_place_on_grid(s, mean.planes,
                                   origin + [(mean.planes[0] - s.useful_range[0]) * s.resolution_um[0], 0.0, 0.0],
                                   resolution_um, (a[k], b[k]), lateral[k], gain_stop=planes[1]),
                    flat_below=speckle_limited[k], ramp_below=mean.ramp_below),
            s, mean, resolution_um)
        for k, (s, planes, origin, mean) in enumerate(zip(slices, kept, resolved.origins_um, averaged, strict=True))
    ]
    start, shape = union_box(placed)
    placed = [
        replace(p, origin=tuple(o - s for o, s in zip(p.origin, start, strict=True)))
        for p in placed
    ]
    record = _record(slices, nominal, glitches, estimates, resolved, placed, thickness_um)
    record["depth_placement"] = _depth_record(joint)
    for entry, slip, anchor, support in zip(record["slices"], slips, anchors, evidence, strict=True):
        entry["motor_slip"] = slip
        entry["lateral_anchor"] = anchor
        entry["lateral_support"] = None if support is None else support.summary()
    record["z_tolerance_um"] = round(float(z_tolerance), 6)
    after = corrected_ratios(ratios, depths, a, b)
    record["common_tilt"] = None if tilt is None else [round(t, 5) for t in tilt]
    record["gain_level_source"] = level_source
    for k, (entry, depth, planes) in enumerate(zip(record["slices"], kept_um, kept, strict=True)):
        entry["surface_plane"] = None if slices[k].surface_plane is None else _rounded(slices[k].surface_plane)
        entry["retilt_max_planes"] = moves[k]
        entry["flatten_plane"] = flatten_planes[k]
        entry["depth"] = None if joint is None else {
            "absolute_um": None if joint.absolute_um[k] is None else round(joint.absolute_um[k], 4),
            "sigma_um": round(float(joint.sigma_um[k]), 4) if joint.joint else None,
            "residual_um": None if joint.residuals_um[k] is None else round(joint.residuals_um[k], 4),
            "step_doubted": joint.doubted_ratio if k == joint.doubted else None}
        entry["kept_depth_um"] = None if depth is None else round(depth, 4)
        entry["blend_speckle_limited"] = speckle_limited[k]
        entry["blend_averaging"] = averaged[k].record
        entry["kept_planes"] = list(planes)
        entry["rotation"] = rotations[k].to_dict() if rotations[k] else None
        entry["boundary_ratio_raw"] = None if ratios[k] is None else round(ratios[k], 4)
        entry["boundary_ratio"] = None if after[k] is None else round(after[k], 4)
        entry["boundary_ratio_tissue"] = ratio_tissue[k]
        entry["gain_top_bottom"] = [round(float(np.exp(a[k])), 4), round(float(np.exp(a[k] + b[k])), 4)]
        entry["gain_compensated_level"] = round(float(np.exp(levels[k])), 4)
        entry["focus_skipped"] = slices[k].focus_skipped
        entry["gain_trend_measured"] = bool(parameters.match_intensity and measured[k])
        entry["gain_trend_map_level"] = None if borrowed[k] is None else round(borrowed[k], 4)
        entry["lateral_gain"] = None if lateral[k] is None else lateral[k].summary()
        entry["lateral_gain_fallback"] = lateral_fallback[k]
        entry["lateral_gain_strength"] = 0.0 if lateral[k] is None else round(lateral[k].strength, 4)
        entry["lateral_gain_confidence"] = None if lateral_confidence[k] is None else round(lateral_confidence[k], 4)
    record["output"] = {"shape": list(shape), "resolution_um": resolution_um}
    record["blend_averaging"] = averaging
    if parameters.interpolate_missing:
        deepest = [_deepest_planes(s, resolved.origins_um[k], resolution_um, a[k] + b[k], start)
                   if k + 1 < len(ids) and ids[k + 1] - ids[k] > 1 else None for k, s in enumerate(slices)]
        placed, record["interpolated_slices"] = interpolate_gaps(ids, placed, deepest, resolution_um)
    return StackPlan(placed, shape, resolution_um, record)


def write_stack(
    plan: StackPlan,
    sink: RegionSink,
    chunks: Sequence[int],
    dtype: np.dtype,
    progress: bool = True,
) -> None:
    """Assemble the planned volume into ``sink`` chunk by chunk.

    See :func:`linumpy.stack.assemble.assemble_volume`.
    """
    assemble_volume(plan.placed, plan.shape, chunks, sink, dtype, progress)


@dataclass(frozen=True)
class _Averaged:
    """How a slice is averaged with the slices below it (:func:`_averaging`): its assembled ``planes``
    (``[start, stop)``, kept planes and those averaged below them), its inverse-error weight per useful plane
    (None: 1), the ramp of its overlap with the next slice (:attr:`~linumpy.stack.assemble.PlacedSlice.ramp_below`)
    and its QC record."""

    planes: tuple[int, int]
    weights: np.ndarray | None
    ramp_below: int | None
    record: dict


def _averaging(slices: Sequence[SliceVolume], kept: Sequence[tuple[int, int]], shortest: Sequence[int],
               origins_um: np.ndarray, gains: tuple[np.ndarray, np.ndarray], resolution_um: float,
               parameters: StackParameters, pairs: Sequence[int], workers: tuple[int, int],
               ) -> tuple[list[_Averaged], dict]:
    """Per slice, how deep it is averaged with the slices below and with what weight (:mod:`linumpy.stack.averaging`).

    Every pair's overlap is measured on its placed, gained images
    (:func:`_overlap_errors`); each slice's planes weigh the inverse of its
    error profile (scaled by the median error of all, so that a slice no
    pair measures weighs about as much as the others), and a slice is kept
    below its default blend overlap (``shortest``: the useful plane where
    :data:`DEFAULT_BLEND_OVERLAP` ends) as deep as it carries
    :data:`~linumpy.stack.averaging.MIN_SHARE` of the weight against the
    next slice; its gains stay those of its ``kept`` planes. ``--blend_overlap_um``
    given, a pair not measured, or overlaps whose median agreement is at
    least :data:`~linumpy.stack.averaging.MAX_AGREEMENT` (not
    speckle-dominated): every slice keeps its kept planes at weight 1 (the
    reason in the record).
    """
    plain = [_Averaged(tuple(planes), None, None, {"weighted": False}) for planes in kept]
    if parameters.blend_overlap_um is not None:
        return plain, {"rule": "blend overlap given (--blend_overlap_um): not averaged"}
    if not pairs:
        return plain, {"rule": "no consecutive slices: not averaged"}
    overlaps: list[OverlapErrors | None] = [None] * len(slices)
    where = {k: _overlap_planes(slices[k - 1], slices[k], origins_um[k] - origins_um[k - 1]) for k in pairs}
    readers = _overlap_readers(slices, where, workers[1])
    measured = pair_map(lambda k: None if where[k] is None else _overlap_errors(
        slices[k - 1], slices[k], where[k], (readers[k - 1, where[k].level], readers[k, where[k].level]),
        (kept[k - 1], kept[k]), gains, k, resolution_um), pairs, workers[0])
    for k, found in zip(pairs, measured, strict=True):
        overlaps[k] = found
    missing = [slices[k].slice_id for k in pairs if overlaps[k] is None]
    if missing:
        return plain, {"rule": f"not averaged: the overlaps above slices {missing} not measured"}
    agreement = float(np.median([np.nanmean(overlaps[k].agreement) for k in pairs]))
    if not agreement < MAX_AGREEMENT:
        return plain, {"rule": f"not averaged: the overlaps' median agreement {agreement:.3f} >= {MAX_AGREEMENT} "
                               "(not speckle-dominated)", "median_agreement": round(agreement, 4)}
    profiles = error_profiles([s.useful_depth for s in slices], overlaps)
    scale = float(np.median(np.concatenate([p for p in profiles if p is not None])))
    averaged: list[_Averaged] = []
    for k in reversed(range(len(slices))):  # from the bottom: a slice is averaged no deeper than the next reaches
        s, planes, profile = slices[k], kept[k], profiles[k]
        if profile is None:
            averaged.insert(0, plain[k])
            continue
        start = s.useful_range[0]
        stop = planes[1] - start
        share, ramp, levels = None, None, None
        if k + 1 in pairs:
            step = int(round((origins_um[k + 1][0] - origins_um[k][0]) / s.resolution_um[0]))
            # however deep it is averaged, its overlap ramps over its kept overlap's ramp (the next slice's top
            # planes, its best, at full weight right below the cut)
            blend = max(0, planes[1] - start - step) * s.resolution_um[0] / resolution_um
            ramp = max(1, math.ceil(blend * FLAT_RAMP_FRACTION))
            below = _averaged_below(slices, origins_um, profiles, averaged, k, pairs)
            levels = _levels_below(slices, origins_um, profiles, overlaps, k, pairs)
            # the kept planes (a speckle-limited overlap's too) are not level-checked: main's blend keeps them
            checked = np.where(np.arange(len(levels)) < stop, 0.0, levels)
            stop = averaged_stop(profile, below, min(stop, shortest[k] - start), checked)
            others = sum(1 / errors[stop - 1 - offset] for offset, errors in below
                         if 0 <= stop - 1 - offset < len(errors))
            share = 1 / (1 + profile[stop - 1] * others)
        weights = scale / profile
        averaged.insert(0, _Averaged((planes[0], start + stop), weights, ramp, {
            "weighted": True,
            "averaged_planes": [int(planes[0]), int(start + stop)],
            "below_kept_um": round(float((start + stop - planes[1]) * s.resolution_um[0]), 4),
            "weight_first_last": [round(float(weights[planes[0] - start]), 4), round(float(weights[stop - 1]), 4)],
            "share_last": None if share is None else round(float(share), 4),
            "level_last": None if levels is None else round(float(levels[stop - 1]), 4),
            "level_next": (None if levels is None or stop >= len(levels) or not np.isfinite(levels[stop])
                           else round(float(levels[stop]), 4)),
            "agreement_below": (None if k + 1 >= len(overlaps) or overlaps[k + 1] is None
                                else round(float(np.nanmean(overlaps[k + 1].agreement)), 4)),
        }))
    return averaged, {"rule": "inverse error weights", "median_error": round(scale, 6),
                      "median_agreement": round(agreement, 4), "min_share": MIN_SHARE,
                      "level_tolerance": LEVEL_TOLERANCE}


def _averaged_below(slices: Sequence[SliceVolume], origins_um: np.ndarray, profiles: Sequence[np.ndarray | None],
                    averaged: Sequence[_Averaged], k: int, pairs: Sequence[int]) -> list[tuple[int, np.ndarray]]:
    """``(offset, errors)`` of each consecutive slice below slice ``k``
    (:func:`~linumpy.stack.averaging.averaged_stop`): its useful plane 0 at slice ``k``'s useful plane ``offset``,
    its error profile down to its last assembled plane (``averaged``: the slices from ``k + 1`` down, decided)."""
    below = []
    j = k + 1
    while j in pairs and profiles[j] is not None:
        offset = int(round((origins_um[j][0] - origins_um[k][0]) / slices[k].resolution_um[0]))
        below.append((offset, profiles[j][: averaged[j - k - 1].planes[1] - slices[j].useful_range[0]]))
        j += 1
    return below


def _levels_below(slices: Sequence[SliceVolume], origins_um: np.ndarray, profiles: Sequence[np.ndarray | None],
                  overlaps: Sequence[OverlapErrors | None], k: int, pairs: Sequence[int]) -> np.ndarray:
    """Slice ``k``'s level offset per useful plane from the slice owning each depth
    (:func:`~linumpy.stack.averaging.owner_levels`), over the consecutive slices below it that
    :func:`_averaged_below` reads."""
    below = []
    j = k + 1
    while j in pairs and profiles[j] is not None:
        offset = int(round((origins_um[j][0] - origins_um[k][0]) / slices[k].resolution_um[0]))
        below.append((offset, overlaps[j].upper_first, overlaps[j].level))
        j += 1
    return owner_levels(slices[k].useful_depth, below)


def _overlap_planes(previous: SliceVolume, current: SliceVolume, step_um: np.ndarray) -> _BoundaryPlanes | None:
    """Where the overlap of two slices ``step_um`` apart is measured (:func:`_overlap_errors`): from below the
    current slice's cut face (:data:`TOP_SKIP_PLANES`) down to the previous slice's last useful plane, over their
    common lateral window at the coarsest level :data:`~linumpy.stack.averaging.MEASURE_SIZE_PX` wide; None when
    they do not overlap."""
    level, factor = _registration_level(previous, current, MEASURE_SIZE_PX)
    previous_data, source_um = previous.planes_level(level)
    current_data, _ = current.planes_level(level)
    skip = TOP_SKIP_PLANES
    first = int(round(step_um[0] / source_um[0])) + skip
    depth = min(previous.useful_depth - first, current.useful_depth - skip)
    offset = np.rint(step_um[1:] / (np.asarray(source_um[1:]) * factor)).astype(int)
    previous_window, current_window = _common_window(previous_data.shape[1:], current_data.shape[1:], offset, factor)
    if depth < 1 or first < 0 or previous_window is None:
        return None
    return _BoundaryPlanes(level, factor, first, skip, depth, previous_window, current_window)


def _overlap_readers(slices: Sequence[SliceVolume], where: dict[int, _BoundaryPlanes | None],
                     workers: int) -> dict[tuple[int, int], PlaneReader]:
    """One reader per slice and level the pairs ``where`` measure, every read announced: a slice's blocks that
    both its pairs read (its planes below the step to the next slice, above the previous slice's bottom) are
    computed once (:class:`linumpy.stack.planes.PlaneReader`, ``workers`` its read's)."""
    readers: dict[tuple[int, int], PlaneReader] = {}
    for k, planes in where.items():
        if planes is None:
            continue
        for index, (first, window) in zip((k - 1, k), _overlap_reads(slices[k - 1], slices[k], planes), strict=True):
            key = (index, planes.level)
            if key not in readers:
                readers[key] = PlaneReader(slices[index].planes_level(planes.level)[0], workers)
            readers[key].announce((first, first + planes.depth), window, planes.factor, MEASURE_BATCH_PLANES)
    return readers


def _overlap_reads(previous: SliceVolume, current: SliceVolume, where: _BoundaryPlanes,
                   ) -> tuple[tuple[int, tuple[slice, slice]], tuple[int, tuple[slice, slice]]]:
    """The previous and the current slice's first level plane (absolute) and lateral window that ``where`` reads."""
    return ((previous.useful_range[0] + where.start, where.previous_window),
            (current.useful_range[0] + where.skip, where.current_window))


def _overlap_errors(previous: SliceVolume, current: SliceVolume, where: _BoundaryPlanes,
                    readers: tuple[PlaneReader, PlaneReader], kept: tuple[tuple[int, int], tuple[int, int]],
                    gains: tuple[np.ndarray, np.ndarray], k: int, resolution_um: float) -> OverlapErrors:
    """The pair's overlap (slices ``k - 1`` and ``k``, their ``kept`` planes) measured plane by plane on both
    gained images (:func:`linumpy.stack.averaging.plane_measures`) where ``where`` says, a few planes at a time,
    each slice's planes from its reader (:func:`_overlap_readers`)."""
    reads = _overlap_reads(previous, current, where)
    gain_previous, gain_current = (_plane_gains(gains, index, planes, first, where.depth)
                                   for index, planes, (first, _) in zip((k - 1, k), kept, reads, strict=True))
    source_um = previous.planes_level(where.level)[1]
    # white noise: the variance of an output voxel is the measured voxel's times their volumes' ratio
    noise_scale = float(np.prod(source_um) * where.factor**2 / resolution_um**3)
    batches = [reader.batches((first, first + where.depth), window, where.factor, MEASURE_BATCH_PLANES)
               for reader, (first, window) in zip(readers, reads, strict=True)]
    parts = []
    for j, upper, lower in zip(range(0, where.depth, MEASURE_BATCH_PLANES), *batches, strict=True):
        upper *= gain_previous[j : j + len(upper), None, None]
        lower *= gain_current[j : j + len(lower), None, None]
        parts.append(plane_measures(upper, lower, noise_scale))
    upper_error, lower_error, agreement, level = (np.concatenate(values) for values in zip(*parts, strict=True))
    return OverlapErrors(where.start, where.skip, upper_error, lower_error, agreement, level)


def _plane_gains(gains: tuple[np.ndarray, np.ndarray], k: int, kept: tuple[int, int], first: int,
                 depth: int) -> np.ndarray:
    """Slice ``k``'s depth gain ``exp(a + b t)`` at its planes ``first..first + depth - 1`` (``t`` from 0 at its
    first kept plane to 1 at its last, held beyond, as :func:`_place_on_grid` applies it)."""
    t = np.clip((np.arange(first, first + depth) - kept[0]) / max(1, kept[1] - kept[0] - 1), 0.0, 1.0)
    return np.exp(gains[0][k] + gains[1][k] * t).astype(np.float32)


def _placed_averaged(piece: PlacedSlice, volume: SliceVolume, averaged: _Averaged,
                     resolution_um: float) -> PlacedSlice:
    """``piece`` with its inverse-error weight per output plane (at the plane's centre, in its useful planes)."""
    if averaged.weights is None:
        return piece
    source = volume.resolution_um[0]
    padding = int(round((1.0 - piece.first_coverage[0]) * resolution_um / source))
    centres = (np.arange(piece.data.shape[0]) + 0.5) * (resolution_um / source) - 0.5 - padding
    planes = averaged.planes[0] - volume.useful_range[0] + centres
    weights = np.interp(planes, np.arange(len(averaged.weights)), averaged.weights)
    return replace(piece, depth_weight=tuple(float(w) for w in weights))


def _check_slices(slices: Sequence[SliceVolume]) -> None:
    """Refuse slices with different voxel sizes or levels that resample depth."""
    first = slices[0].resolution_um
    for s in slices:
        if not np.allclose(s.resolution_um, first, rtol=RESOLUTION_TOLERANCE):
            raise InputError(
                f"slice {s.slice_id} has voxel size {s.resolution_um} um but slice "
                f"{slices[0].slice_id} has {first} um; process all slices with the same resolution"
            )
        if any(shape[0] != s.levels[0][0].shape[0] for shape, _ in level_layout(s.levels)):
            raise InputError(f"slice {s.slice_id}: its pyramid levels differ in depth; "
                             "rewrite it with lateral-only levels (OmeZarrWriter)")


def kept_depths_um(
    slice_ids: Sequence[int],
    depths_um: Sequence[float],
    thickness_um: float,
    blend_overlap_um: float | None = None,
    speckle_limited: Sequence[bool] | None = None,
) -> list[float | None]:
    """Depth kept below each slice's surface: its step to the next slice plus the blend overlap.

    The step is the distance to the next slice id's placed depth, at least
    the thickness (the last slice, and a slice before a gap, use the
    thickness), so a slice found deeper than the motors say leaves no hole.
    ``blend_overlap_um`` defaults to :data:`DEFAULT_BLEND_OVERLAP` times the
    thickness, :data:`SPECKLE_BLEND_OVERLAP` times the thickness for a slice
    whose overlap with the next is ``speckle_limited`` (per slice; none by
    default); the last slice, which no slice below blends with, keeps its
    thickness and no overlap: below it its planes are the deepest and the
    worst compensated, with nothing to average them (sessions ncc49, dark11).
    None (keep every useful plane) when the thickness is unknown (0) or
    there is one slice.

    Examples
    --------
    >>> kept_depths_um([0, 1, 2, 4], [0.0, 212.0, 400.0, 800.0], 200.0)
    [232.0, 220.0, 220.0, 200.0]
    >>> kept_depths_um([0, 1], [0.0, 200.0], 200.0, 0.0), kept_depths_um([3], [0.0], 200.0)
    ([200.0, 200.0], [None])
    >>> kept_depths_um([0, 1], [0.0, 200.0], 200.0, 60.0)
    [260.0, 200.0]
    >>> kept_depths_um([0, 1, 2], [0.0, 200.0, 400.0], 200.0, speckle_limited=[True, False, True])
    [320.0, 220.0, 200.0]
    """
    if thickness_um <= 0 or len(slice_ids) < 2:
        return [None] * len(slice_ids)
    if blend_overlap_um is not None and blend_overlap_um < 0:
        raise InputError(f"the blend overlap must be >= 0 um, got {blend_overlap_um}")
    limited = speckle_limited or [False] * len(slice_ids)
    kept = []
    for k, slice_id in enumerate(slice_ids):
        step = thickness_um
        if k + 1 < len(slice_ids) and slice_ids[k + 1] == slice_id + 1:
            step = max(step, float(depths_um[k + 1] - depths_um[k]))
        default = thickness_um * (SPECKLE_BLEND_OVERLAP if limited[k] else DEFAULT_BLEND_OVERLAP)
        overlap = default if blend_overlap_um is None else blend_overlap_um
        below = overlap if k + 1 < len(slice_ids) else 0.0
        kept.append(step + below)
    return kept


def _kept_range(volume: SliceVolume, kept_um: float | None) -> tuple[int, int]:
    """Planes ``[start, stop)`` assembled: the useful range cut at ``kept_um`` below the surface."""
    start, stop = volume.useful_range
    if kept_um is None:
        return start, stop
    return start, min(stop, start + int(math.ceil(kept_um / volume.resolution_um[0] - 1e-6)))


def _below_cut_faces(slices: Sequence[SliceVolume], kept: Sequence[tuple[int, int]],
                     depths_um: np.ndarray) -> list[tuple[int, int]]:
    """Kept planes without the cut face of the first slice and of every slice whose previous slice covers it.

    A slice's first :data:`TOP_SKIP_PLANES` planes hold partly cut voxels and
    the empty voxels the flattening leaves where the cut dips below its plane
    (on the simulator's ``harsh`` matrix the first three planes' tissue mean
    is 58%, 79% and 95% of the planes below, with 26%, 16% and 9% empty
    voxels): blended into the boundary's output plane, they darkened it by
    3-6%. The previous slice images that tissue whole; its kept planes reach
    ``blend overlap`` below the cut, so these planes are left to it when the
    overlap is deeper than they are. The first slice's cut face is the top of
    the sample, which nothing images whole: it is left out too, so the volume
    starts ``TOP_SKIP_PLANES`` planes below the first cut (its output plane 0
    scored NCC 0.45-0.79 with the cut face, against 0.92-0.95 for the planes
    below it). A slice after a gap, a thinner overlap, and a slice keeping
    at most ``2 * TOP_SKIP_PLANES`` planes keep theirs.
    """
    out = list(kept)
    if slices and kept[0][1] - kept[0][0] > 2 * TOP_SKIP_PLANES:
        out[0] = (kept[0][0] + TOP_SKIP_PLANES, kept[0][1])
    for k in range(1, len(slices)):
        previous, current = slices[k - 1], slices[k]
        if previous.slice_id + 1 != current.slice_id or kept[k][1] - kept[k][0] <= 2 * TOP_SKIP_PLANES:
            continue
        previous_bottom_um = depths_um[k - 1] + (kept[k - 1][1] - previous.useful_range[0]) * previous.resolution_um[0]
        if previous_bottom_um > depths_um[k] + TOP_SKIP_PLANES * current.resolution_um[0]:
            out[k] = (kept[k][0] + TOP_SKIP_PLANES, kept[k][1])
    return out


def _place_on_grid(
    volume: SliceVolume, planes: tuple[int, int], origin_um: np.ndarray, resolution_um: float,
    gain: tuple[float, float] = (0.0, 0.0), lateral: LateralGain | None = None, gain_stop: int | None = None,
) -> PlacedSlice:
    """The slice's planes ``[start, stop)`` resampled onto the output grid, times its gain.

    ``gain = (a, b)``: ``exp(a + b t)`` (:mod:`linumpy.stack.gains`), ``t`` from 0
    at the first kept plane to 1 at the last (``gain_stop - 1`` when given:
    the planes averaged below it take the gain of that plane), applied per
    output plane (at its centre) after resampling. ``lateral``: the slice's
    lateral gain map, ``exp(map * t / depth)``, evaluated chunk by chunk.

    The origin rarely falls on an output voxel border. Zero planes/rows are
    prepended at the slice's own resolution so that its first voxel starts
    on the border before the origin (to within half a source voxel); the
    first output voxel then only partly holds the slice, which its coverage
    (the fraction that is not padding) records for the blending.
    """
    data, source_um = volume.level_for_resolution(resolution_um)
    useful = data[planes[0] : planes[1]]
    first, padding, coverage = [], [], []
    for position_um, source in zip(origin_um, source_um, strict=True):
        voxel, pad = _grid_start(position_um, source, resolution_um)
        first.append(voxel)
        padding.append((pad, 0))
        coverage.append(1.0 - pad * source / resolution_um)
    if any(pad for pad, _ in padding):
        useful = da.pad(useful, padding, mode="constant")
    source_mm = tuple(r / 1000 for r in source_um)
    resampled = resample_to_resolution(useful, source_mm, (resolution_um / 1000,) * 3)
    t = _relative_depths(resampled.shape[0], (planes[0], planes[1] if gain_stop is None else gain_stop),
                         resolution_um / source_um[0], padding[0][0])
    depth_gain = np.exp(gain[0] + gain[1] * t).astype(np.float32) if gain != (0.0, 0.0) else None
    if lateral is None:
        return PlacedSlice(_gained(resampled, depth_gain), tuple(first), tuple(coverage))
    # the log gain grows linearly from 0 at the top to the map at the overlap's depth
    offset = [pad * s for (pad, _), s in zip(padding[1:], source_um[1:], strict=True)]
    sample = lateral.sampler(resampled.shape[1:], resolution_um, offset)
    scale = (t / lateral.depth).astype(np.float32)
    return PlacedSlice(_gained(resampled, depth_gain, (scale, sample)), tuple(first), tuple(coverage))


def _gained(data: da.Array, depth_gain: np.ndarray | None,
            lateral: tuple[np.ndarray, Callable[[tuple[int, int], tuple[int, int]], np.ndarray]] | None = None,
            ) -> da.Array:
    """``data`` times its gains, one task per block: ``data * depth_gain[:, None, None]`` (None: no depth gain),
    then times ``exp(scale[:, None, None] * sample(rows, columns))`` for ``lateral = (scale, sample)``.

    The products of :func:`_place_on_grid` in one block function, not as dask
    operations (a layer per product, the lateral factor rechunked to the
    blocks: 961 -> 545 tasks a slice of the five ``small`` slices, each
    materialized by the assembly's :class:`~linumpy.stack.graph_reader.GraphWindowReader`);
    the same numpy operations on the same values, so the same bits.
    """
    if depth_gain is None and lateral is None:
        return data

    def block(values: np.ndarray, block_info: dict | None = None) -> np.ndarray:
        (z0, z1), rows, columns = block_info[0]["array-location"]
        if depth_gain is not None:
            values = values * depth_gain[z0:z1, None, None]
        if lateral is not None:
            scale, sample = lateral
            values = values * np.exp(scale[z0:z1, None, None] * sample(rows, columns)[None])
        return values

    dtype = block(np.zeros((1, 1, 1), data.dtype), {0: {"array-location": [(0, 1), (0, 1), (0, 1)]}}).dtype
    return data.map_blocks(block, dtype=dtype, meta=np.empty((0, 0, 0), dtype))


def _relative_depths(n_out: int, planes: tuple[int, int], scale: float, padding: int) -> np.ndarray:
    """Relative depth (0 first, 1 last kept plane) of each output plane's centre; ``scale`` output / source voxel."""
    centres = (np.arange(n_out) + 0.5) * scale - 0.5 - padding
    return np.clip(centres / max(1, planes[1] - planes[0] - 1), 0.0, 1.0)


def _deepest_planes(volume: SliceVolume, origin_um: np.ndarray, resolution_um: float, log_gain: float,
                    grid_start: Sequence[int]) -> PlacedSlice:
    """The slice's deepest useful planes (about ``edge_planes + 1`` output voxels) at their place in the output grid.

    The top anchor of the interpolation of a gap below the slice
    (:mod:`linumpy.stack.interpolate`): real tissue nearer the gap than the
    last kept plane when the slice imaged deeper than the thickness. Scaled
    by the gain of the slice's bottom (``exp(log_gain)``); ``grid_start`` is
    the union box's first voxel.
    """
    _, source_um = volume.level_for_resolution(resolution_um)
    start, stop = volume.useful_range
    first = max(start, stop - int(math.ceil((edge_planes(resolution_um) + 1) * resolution_um / source_um[0])))
    origin = np.asarray(origin_um, float) + [(first - start) * source_um[0], 0.0, 0.0]
    piece = _place_on_grid(volume, (first, stop), origin, resolution_um, (log_gain, 0.0))
    return replace(piece, origin=tuple(o - s for o, s in zip(piece.origin, grid_start, strict=True)))


def _grid_start(position_um: float, source_um: float, resolution_um: float) -> tuple[int, int]:
    """Output voxel where a slice axis starts, and the source voxels to prepend.

    Examples
    --------
    >>> _grid_start(26.0, 3.0, 10.0)  # 6 um into voxel 2: prepend 2 voxels of 3 um
    (2, 2)
    >>> _grid_start(26.0, 20.0, 10.0)  # coarser source: nearest voxel, no padding
    (3, 0)
    """
    position = position_um / resolution_um
    if source_um > resolution_um:
        return int(np.rint(position)), 0
    voxel = int(np.floor(position))
    pad = int(np.rint((position - voxel) * resolution_um / source_um))
    if pad * source_um >= resolution_um * (1 - RESOLUTION_TOLERANCE):
        return voxel + 1, 0
    return voxel, pad


def _register_consecutive(
    previous: SliceVolume,
    current: SliceVolume,
    nominal_step_um: np.ndarray,
    z_tolerance_um: float,
    parameters: StackParameters,
    band_workers: int = 1,
) -> tuple[PairEstimate | None, np.ndarray | None, _BoundaryGuess | None, LateralEvidence | None]:
    """Register ``current`` against ``previous``; return the estimate, the step (um), the boundary ratio's
    measure at that step (``band_workers``: :func:`linumpy.stack.planes.read_planes`' workers) and the
    lateral step's evidence (:func:`linumpy.stack.anchors.lateral_evidence`, on the refined lateral shift's
    images; None without the refinement).

    On the registration level (:func:`_registration_level`) the planes are
    read whole laterally, once: the registration takes its common window of
    them, and the raw planes where the boundary ratio will read
    (:func:`_boundary_spare`) are kept to measure it at the registered step
    (:func:`_boundary_guess`), so that the boundary phase does not read them
    again when the placed step reads the same planes. When both slices have
    the next pyramid level wide enough (:func:`_coarse_scan_level`), the z
    scan and a first lateral shift read that level instead (a quarter of the
    pixels), and the lateral shift is measured again on the registration
    level, on the planes the boundary ratio reads (:func:`_refined_laterally`).
    """
    level, factor = _registration_level(previous, current, parameters.registration_size)
    coarse = _coarse_scan_level(previous, current, level, factor) if parameters.coarse_scan else None
    if coarse is None:
        found = _scan_pair(previous, current, nominal_step_um, z_tolerance_um, parameters, band_workers,
                           _ScanLevel(level, factor))
        if found is None:
            return None, None, None, None
        estimate, step, spare = found
        guess = None if spare is None else _boundary_guess(previous, current, step, parameters, spare)
        return estimate, step, guess, None
    found = _scan_pair(previous, current, nominal_step_um, z_tolerance_um, parameters, band_workers, coarse)
    if found is None:
        return None, None, None, None
    estimate, step, _ = found
    return _refined_laterally(previous, current, nominal_step_um, estimate, step, parameters, band_workers)


@dataclass(frozen=True)
class _ScanLevel:
    """Where a pair's z scan reads: pyramid ``level`` block-averaged by ``factor``, band-passed with a z Gaussian
    of ``axial_sigma_px`` planes and a lateral background of ``background_radius_px`` pixels (of the block means),
    its peak located on planes smoothed laterally by ``lateral_sigma_px`` pixels (:func:`register_pair`);
    ``boundary``: the level the boundary ratio reads (its planes are kept for it, :func:`_boundary_spare`)."""

    level: int
    factor: int
    boundary: bool = True
    axial_sigma_px: float = 1.0
    background_radius_px: int = 8
    lateral_sigma_px: float = Z_SCAN_LATERAL_SIGMA_PX


def _coarse_scan_level(previous: SliceVolume, current: SliceVolume, level: int, factor: int) -> _ScanLevel | None:
    """The level above registration ``level`` (read whole: ``factor`` 1) when both slices have it at least
    :data:`COARSE_SCAN_MIN_PX` pixels wide, with its band-pass (:data:`COARSE_AXIAL_SIGMA_PX`, the background box
    and the peak's lateral smoothing of the same micrometres as on ``level``); None otherwise."""
    coarse = level + 1
    if factor != 1 or coarse not in set(previous.widest_levels(COARSE_SCAN_MIN_PX)) & set(
            current.widest_levels(COARSE_SCAN_MIN_PX)):
        return None
    layout = level_layout(previous.levels)
    ratio = layout[coarse][1][1] / layout[level][1][1]
    return _ScanLevel(coarse, 1, False, COARSE_AXIAL_SIGMA_PX, max(1, round(_ScanLevel.background_radius_px / ratio)),
                      Z_SCAN_LATERAL_SIGMA_PX / ratio)


@dataclass(frozen=True)
class _ScanRead:
    """The band-passed planes a pair's z scan reads (:func:`_read_scan`): the previous slice's from its useful
    plane ``first`` and the new slice's top below ``skip`` planes, over their common lateral window; the scan's
    ``expected`` offset and ``tolerance`` (planes, :func:`linumpy.stack.refine.register_pair`'s), the windows'
    whole-pixel lateral ``offset``, the pixel sizes, and the raw planes kept for the boundary ratio."""

    previous: np.ndarray
    first: int
    current: np.ndarray
    expected: float
    tolerance: float
    skip: int
    offset: np.ndarray
    axial_um: float
    lateral_um: np.ndarray
    spare: _SparePlanes | None

    def placed(self, estimate: PairEstimate) -> tuple[PairEstimate, np.ndarray]:
        """An estimate on these planes relative to the new slice's first useful plane, and its step (um)."""
        estimate = replace(estimate, z_offset_px=estimate.z_offset_px - self.skip,
                           offsets_scanned=[d - self.skip for d in estimate.offsets_scanned],
                           pixel_um=(self.axial_um, *(float(v) for v in self.lateral_um)))
        step = np.concatenate([[estimate.z_offset_px * self.axial_um],
                               (self.offset + np.asarray(estimate.shift_yx_px)) * self.lateral_um])
        return estimate, step


def _read_scan(
    previous: SliceVolume, current: SliceVolume, nominal_step_um: np.ndarray, z_tolerance_um: float,
    parameters: StackParameters, band_workers: int, where: _ScanLevel,
) -> _ScanRead | None:
    """The planes of level ``where`` a z scan around ``nominal_step_um`` reads, band-passed; None when the
    slices do not overlap."""
    previous_data, source_um = previous.planes_level(where.level)
    current_data, _ = current.planes_level(where.level)
    factor = where.factor
    axial_um = source_um[0]
    lateral_um = np.asarray(source_um[1:]) * factor
    tolerance = z_tolerance_um / axial_um
    # the new slice's planes matched start TOP_SKIP_PLANES below its surface (see TOP_SKIP_PLANES)
    # when the previous slice still holds n_planes below the skipped planes' expected offset
    expected = nominal_step_um[0] / axial_um
    fits = previous.useful_depth - math.ceil(expected + TOP_SKIP_PLANES) >= parameters.n_planes
    skip = TOP_SKIP_PLANES if fits and current.useful_depth >= TOP_SKIP_PLANES + 2 * MIN_PLANES else 0
    expected += skip
    first = max(0, int(math.floor(expected - tolerance)))
    # the scan stops where the previous slice ends: a thin overlap narrows it
    room = previous.useful_depth - int(math.ceil(expected))
    depth = min(parameters.n_planes, current.useful_depth - skip, max(MIN_PLANES, room - int(tolerance)))
    offset = np.rint(nominal_step_um[1:] / lateral_um).astype(int)
    previous_window, current_window = _common_window(
        previous_data.shape[1:], current_data.shape[1:], offset, factor
    )
    if room < MIN_PLANES or depth < 1 or previous_window is None:
        LOGGER.info("slices %d and %d do not overlap: motor placement kept",
                    previous.slice_id, current.slice_id)
        return None
    p0 = previous.useful_range[0]
    c0 = current.useful_range[0]
    last = min(previous.useful_depth, int(math.ceil(expected + tolerance)) + depth)
    # with the top skipped, smoothed with true neighbours below too; else both ends are edges, whose
    # opposite biases (the z smoothing's) roughly cancel
    halo = min(current.useful_depth, skip + depth + skip)
    previous_read, current_read = _mean_planes((previous_data[p0 + first : p0 + last], _whole(previous_data)),
                                               (current_data[c0 : c0 + halo], _whole(current_data)),
                                               factor=factor, workers=band_workers)
    spare = (_boundary_spare(previous_read, first, current_read, round(nominal_step_um[0] / axial_um), parameters)
             if where.boundary else None)
    previous_planes, current_planes = (
        bandpass_planes(planes, where.axial_sigma_px, where.background_radius_px, out=planes) for planes in (
            _crop_planes(previous_read, previous_window, factor), _crop_planes(current_read, current_window, factor)))
    del previous_read, current_read
    current_planes = current_planes[skip : skip + depth].copy()  # the halo planes freed (51 MB on 1792 px planes)
    return _ScanRead(previous_planes, first, current_planes, expected, tolerance, skip, offset, axial_um, lateral_um,
                     spare)


def _scan_pair(
    previous: SliceVolume,
    current: SliceVolume,
    nominal_step_um: np.ndarray,
    z_tolerance_um: float,
    parameters: StackParameters,
    band_workers: int,
    where: _ScanLevel,
) -> tuple[PairEstimate, np.ndarray, _SparePlanes | None] | None:
    """:func:`register_pair` on the planes of level ``where``: the estimate, the step (um) and the raw planes
    the boundary ratio may take (:func:`_boundary_spare`); None when the slices do not overlap."""
    read = _read_scan(previous, current, nominal_step_um, z_tolerance_um, parameters, band_workers, where)
    if read is None:
        return None
    estimate, step = read.placed(register_pair(read.previous, read.first, read.current, read.expected,
                                               read.tolerance, overwrite_previous=True,
                                               lateral_sigma_px=where.lateral_sigma_px))
    LOGGER.debug("slice %d: %s", current.slice_id, estimate)
    return estimate, step, read.spare


def _block_scan(
    previous: SliceVolume, current: SliceVolume, nominal_step_um: np.ndarray, z_tolerance_um: float,
    parameters: StackParameters, band_workers: int,
) -> list[PairEstimate]:
    """The overlap around ``nominal_step_um`` registered block by block (:func:`linumpy.stack.blocks.block_estimates`)
    on the level the pair's z scan reads (:func:`_register_consecutive`); empty when the slices do not overlap."""
    level, factor = _registration_level(previous, current, parameters.registration_size)
    coarse = _coarse_scan_level(previous, current, level, factor) if parameters.coarse_scan else None
    where = replace(coarse or _ScanLevel(level, factor), boundary=False)
    read = _read_scan(previous, current, nominal_step_um, z_tolerance_um, parameters, band_workers, where)
    if read is None:
        return []
    return [read.placed(estimate)[0] for estimate in block_estimates(
        read.previous, read.first, read.current, read.expected, read.tolerance,
        lateral_sigma_px=where.lateral_sigma_px)]


def _refined_laterally(
    previous: SliceVolume, current: SliceVolume, nominal_step_um: np.ndarray, estimate: PairEstimate,
    step: np.ndarray, parameters: StackParameters, band_workers: int,
) -> tuple[PairEstimate, np.ndarray, _BoundaryGuess | None, LateralEvidence | None]:
    """The coarse scan's ``estimate`` and ``step`` with the lateral shift measured again on the registration
    level (:func:`linumpy.stack.refine.fit_lateral_shift`), the boundary ratio's measure at the refined step,
    and the lateral step's evidence (:func:`linumpy.stack.anchors.lateral_evidence`: the overlap's NCC at its
    peak and at the motors' position, its blocks at their own peaks).

    Reads, whole laterally, the planes the boundary ratio reads at ``step``
    (:func:`_boundary_planes`: the new slice's ``n_planes`` below its top
    :data:`TOP_SKIP_PLANES`, the previous slice's at the step); the shift is
    fitted between their band-passed means over the common window, and the
    planes are kept for the boundary measure (:func:`_boundary_guess`). A
    refused scan's shift is measured at the motor's depth step instead, as
    :func:`linumpy.stack.refine.register_pair` measures it.
    """
    at = step if estimate.z_confidence > 0 else np.concatenate([nominal_step_um[:1], step[1:]])
    where = _boundary_planes(previous, current, at, parameters)
    if where is None:
        return estimate, step, None, None
    previous_data, source_um = previous.planes_level(where.level)
    current_data, _ = current.planes_level(where.level)
    p0, c0 = previous.useful_range[0], current.useful_range[0]
    # with REFINE_HALO_PLANES on either side (when the slices have them), averaged as z-smoothed planes
    previous_first = max(0, where.start - REFINE_HALO_PLANES)
    current_first = max(0, where.skip - REFINE_HALO_PLANES)
    previous_stop = min(previous.useful_depth, where.start + where.depth + REFINE_HALO_PLANES)
    current_stop = min(current.useful_depth, where.skip + where.depth + REFINE_HALO_PLANES)
    upper, lower = _mean_planes((previous_data[p0 + previous_first : p0 + previous_stop], _whole(previous_data)),
                                (current_data[c0 + current_first : c0 + current_stop], _whole(current_data)),
                                factor=where.factor, workers=band_workers)
    reference, moving = (
        bandpass_planes(_window_planes(_smoothed_mean(planes, first, where.depth), window, where.factor),
                        axial_sigma_px=0.0)[0]
        for planes, first, window in ((upper, where.start - previous_first, where.previous_window),
                                      (lower, where.skip - current_first, where.current_window)))
    fit = fit_lateral_shift(reference, moving)
    lateral_um = np.asarray(source_um[1:]) * where.factor
    windows_offset = np.rint(step[1:] / lateral_um)  # the windows' offset (:func:`_boundary_planes`)
    blocks = lateral_blocks(reference, moving, windows_offset, [w.start // where.factor for w in where.previous_window],
                            [w.start // where.factor for w in where.current_window], lateral_um)
    nominal = np.rint(nominal_step_um[1:] / lateral_um)
    found = lateral_evidence(reference, moving, fit.shift_yx_px, nominal - windows_offset, blocks)
    step = np.concatenate([step[:1], (windows_offset + np.asarray(fit.shift_yx_px)) * lateral_um])
    estimate = replace(estimate, shift_yx_px=tuple(float(v) for v in step[1:] / lateral_um - nominal),
                       lateral_confidence=fit.lateral_confidence, overlap_ncc=fit.overlap_ncc,
                       lateral_ceiling=fit.lateral_ceiling,
                       pixel_um=(estimate.pixel_um[0], *(float(v) for v in lateral_um)))
    if upper.nbytes + lower.nbytes > BOUNDARY_SPARE_BYTES:
        return estimate, step, None, found
    spare = _SparePlanes(previous_first, upper, current_first, lower)
    return estimate, step, _boundary_guess(previous, current, step, parameters, spare), found


def _smoothed_mean(planes: np.ndarray, first: int, depth: int) -> np.ndarray:
    """The mean of ``planes[first : first + depth]`` smoothed along z as the registration level's scan smooths
    them (a Gaussian of 1 plane, the nearest plane repeated beyond the ends): a weighted mean of every plane,
    ``(1, y, x)``.

    Examples
    --------
    >>> _smoothed_mean(np.arange(5.0)[:, None, None] * np.ones((5, 1, 2)), 2, 1).round(3).tolist()
    [[[2.0, 2.0]]]
    """
    rows = ndimage.gaussian_filter1d(np.eye(len(planes)), 1.0, axis=0, mode="nearest")[first : first + depth]
    return np.tensordot(rows.mean(axis=0).astype(np.float32), planes, axes=1)[None]


def _joint_depths(
    slices: Sequence[SliceVolume],
    nominal: np.ndarray,
    estimates: Sequence[PairEstimate | None],
    steps: Sequence[np.ndarray | None],
    lateral_origins_um: np.ndarray,
    flatten_planes: Sequence[list[float] | None],
    confident: Sequence[bool],
) -> DepthPlacement | None:
    """The slices' depths from their absolute depths and confident registered steps (``confident``, per slice)
    together (:mod:`linumpy.stack.depths`); None when fewer than two slices have a flattening plane (the steps are
    then chained, :func:`linumpy.stack.refine.resolve_origins`).

    The motor depths are ``nominal``'s: an encoder glitch's interpolation and
    a motor slip's step moved onto the thickness stand for the commanded
    position (the stage moved, its reading jumped), like any other reading.
    """
    centres = [tuple((n - 1) / 2 for n in s.levels[0][0].shape[1:]) for s in slices]
    absolute = absolute_depths_um(nominal[:, 0], flatten_planes, lateral_origins_um, centres,
                                  slices[0].resolution_um)
    if np.isfinite(absolute).sum() < 2:
        return None
    return place_depths(nominal[:, 0], absolute,
                        [step[0] if sure else None for step, sure in zip(steps, confident, strict=True)],
                        [link_sigma_um(e.z_confidence, e.pixel_um[0]) if sure else None
                         for e, sure in zip(estimates, confident, strict=True)])


def _measured_origins(nominal: np.ndarray, depth: DepthPlacement) -> np.ndarray:
    """The motor origins with each slice's depth replaced by its absolute depth (motor + surface) where known.

    The drift bound of depths solved together is centred there: the depth
    where the slice's own flattening plane and its motor reading put it. A
    cut that removes more or less than the stage's step moves the surface,
    and over many slices those moves add up (a quarter of the thickness
    after 8 slices of +-12% cuts), which a bound around the motor alone
    would clamp although the steps and the surfaces agree.
    """
    measured = nominal.copy()
    for k, absolute in enumerate(depth.absolute_um):
        if absolute is not None:
            measured[k, 0] = nominal[0, 0] + absolute
    return measured


def _depth_record(depth: DepthPlacement | None) -> dict:
    """How the depths were decided: ``joint`` (:mod:`linumpy.stack.depths`) or ``chain`` (steps chained: no
    absolute depths, or absolute depths scattering too much, :attr:`~linumpy.stack.depths.DepthPlacement.joint`)."""
    if depth is None:
        return {"mode": "chain"}
    return {"mode": "joint" if depth.joint else "chain",
            "prior_sigma_um": round(depth.prior_sigma_um, 4)}


def _step_in_doubt(motor_step_um: float, thickness_um: float, z_tolerance_um: float) -> bool:
    """Whether a motor depth step misses the slice thickness by more than the z tolerance (a possible slip)."""
    return abs(motor_step_um - thickness_um) > z_tolerance_um


def _check_motor_slips(
    slices: Sequence[SliceVolume],
    nominal: np.ndarray,
    pairs: Sequence[int],
    thickness_um: float,
    z_tolerance_um: float,
    parameters: StackParameters,
    band_workers: int,
    estimates: list[PairEstimate | None],
    steps: list[np.ndarray | None],
    guesses: list[_BoundaryGuess | None],
    evidence: list[LateralEvidence | None],
) -> list[dict | None]:
    """Test the slice thickness as the depth step of pairs whose motor step misses it; adopt it when better supported.

    A motor jump that no later step cancels (at the first or the last slice,
    where :func:`linumpy.stack.placement.find_encoder_glitches` cannot see it,
    or an encoder slip that persists) leaves a motor depth step off the slice
    thickness by more than ``z_tolerance_um``; the z scan around that step
    may then miss the true overlap. Such a pair is registered a second time
    around the nominal step (the thickness, the same lateral motor step).
    When that registration is confident (``min_confidence``) and more so than
    the one around the motor step, the motor is taken to have slipped: the
    nominal origins of the slice and every later one move by the difference
    (``nominal``, ``estimates``, ``steps``, ``guesses`` and ``evidence`` are updated in place).
    When neither registration is confident, the overlap's blocks, each at its
    own lateral shift, are registered around both steps and vote
    (:mod:`linumpy.stack.blocks`): the thickness is adopted, at the agreeing
    blocks' median step, when they clearly prefer it. When they do not
    either, the thickness is adopted when the two whole scans bracket its
    peak between them (:func:`linumpy.stack.slips.climb_to_thickness`: the
    scan around the motor step rises to its edge toward the thickness, the
    one around the thickness peaks inside, higher; its z confidence stays 0:
    the slice is placed by its motor depth moved onto the thickness, with
    its surface depth). Otherwise the motor step is kept (the flag of
    :func:`linumpy.stack.quality.placement_flags` then reports it).

    Returns
    -------
    list of dict or None
        Per slice, None when its step was not in doubt; else the motor step,
        the confidences of both hypotheses, ``adopted`` (``"motor"`` or
        ``"thickness"``), ``blocks`` (the blocks' vote,
        :meth:`linumpy.stack.blocks.BlockVote.to_dict`; None when not asked)
        and ``climb`` (:func:`linumpy.stack.slips.climb_to_thickness`'s
        evidence when it adopted the thickness; else None).
    """
    slips: list[dict | None] = [None] * len(slices)
    for k in pairs:
        motor_step = nominal[k] - nominal[k - 1]
        if not _step_in_doubt(motor_step[0], thickness_um, z_tolerance_um):
            continue
        estimate, step, guess, found = _register_consecutive(
            slices[k - 1], slices[k], np.array([thickness_um, *motor_step[1:]]), z_tolerance_um, parameters,
            band_workers)
        motor_confidence = estimates[k].z_confidence if estimates[k] else 0.0
        thickness_confidence = estimate.z_confidence if estimate else 0.0
        adopted = ("thickness" if thickness_confidence >= parameters.min_confidence
                   and thickness_confidence > motor_confidence else "motor")
        slips[k] = {"motor_step_um": round(float(motor_step[0]), 4),
                    "motor_confidence": round(float(motor_confidence), 4),
                    "thickness_confidence": round(float(thickness_confidence), 4), "adopted": adopted,
                    "blocks": None, "climb": None}
        voted = False
        if estimate is not None and max(motor_confidence, thickness_confidence) < parameters.min_confidence:
            # neither whole overlap places the slice: its blocks, each at its own lateral shift, vote
            vote = vote_blocks(
                _block_scan(slices[k - 1], slices[k], motor_step, z_tolerance_um, parameters, band_workers),
                _block_scan(slices[k - 1], slices[k], np.array([thickness_um, *motor_step[1:]]), z_tolerance_um,
                            parameters, band_workers), estimate, parameters.min_confidence)
            slips[k]["blocks"] = vote.to_dict()
            voted = vote.estimate is not None
            if voted:
                adopted = slips[k]["adopted"] = "thickness"
                estimate, step = vote.estimate, np.concatenate([[vote.estimate.z_offset_px * estimate.pixel_um[0]],
                                                                step[1:]])
        if adopted == "motor":  # the two whole scans may still bracket the peak at the thickness between them
            slips[k]["climb"] = climb_to_thickness(estimates[k], estimate)
            if slips[k]["climb"] is not None:
                adopted = slips[k]["adopted"] = "thickness"
        if adopted == "thickness":
            nominal[k:, 0] -= motor_step[0] - thickness_um
            estimates[k], steps[k], guesses[k] = estimate, step, guess
            evidence[k] = None if voted else found  # a vote's step is no whole overlap's peak
        votes = slips[k]["blocks"]
        LOGGER.warning("slice %d: motor depth step %.1f um for a slice thickness of %.1f um; z confidence %.2f "
                       "around the motor step, %.2f around the thickness%s: %s step kept", slices[k].slice_id,
                       motor_step[0], thickness_um, motor_confidence, thickness_confidence,
                       "" if votes is None else f"; overlap blocks agreeing {votes['agreeing']}", adopted)
    return slips


def _pair_workers(slices: Sequence[SliceVolume], pairs: Sequence[int], size: int) -> int:
    """Threads estimating consecutive pairs (rotation, registration, boundaries) side by side.

    One pair per worker (:func:`linumpy.parallel.default_workers`) when the
    planes a pair can read at its registration level (both slices' useful
    depth) take at most :data:`PARALLEL_PAIR_BYTES`; else one pair at a
    time, so the peak memory stays that of one pair. The estimates do not
    depend on it.
    """
    largest = 0
    for k in pairs:
        level, factor = _registration_level(slices[k - 1], slices[k], size)
        plane = max(math.prod(s.levels[level][0].shape[1:]) for s in slices[k - 1 : k + 1]) // factor**2
        largest = max(largest, plane * (slices[k - 1].useful_depth + slices[k].useful_depth) * 4)
    return default_workers() if largest <= PARALLEL_PAIR_BYTES else 1


def _registration_level(previous: SliceVolume, current: SliceVolume, size: int) -> tuple[int, int]:
    """Coarsest pyramid level both slices have at least ``size`` pixels wide, and the block-mean factor to ~size."""
    level = max(set(previous.widest_levels(size)) & set(current.widest_levels(size)))
    return level, max(1, max(previous.levels[level][0].shape[1:]) // size)


@dataclass(frozen=True)
class _BoundaryPlanes:
    """Where a pair's boundary ratio (:func:`_boundary_planes`) or overlap measure (:func:`_overlap_planes`) reads:
    at pyramid ``level`` block-averaged by ``factor``, the previous slice's planes ``start..start + depth`` and the
    current slice's ``skip..skip + depth`` (relative to their useful ranges), over their common lateral windows
    (level pixels)."""

    level: int
    factor: int
    start: int
    skip: int
    depth: int
    previous_window: tuple[slice, slice]
    current_window: tuple[slice, slice]


@dataclass(frozen=True)
class _BoundaryMeasure:
    """A pair's boundary ratio, its lateral log-gain map (coarse, :func:`linumpy.stack.gains.coarse_map`; all zero:
    nothing supported) with its pixel size, the fraction of partly empty A-lines of the overlap and the map's log
    gain on the overlap's tissue level (:func:`linumpy.stack.gains.map_level_log`)."""

    ratio: OverlapRatio
    log_map: np.ndarray
    pixel_um: tuple[float, float]
    partial_fraction: float
    level_log: float = 0.0


@dataclass(frozen=True)
class _BoundaryGuess:
    """The boundary measured where the registered step reads (:func:`_boundary_guess`), reused when the placed
    step reads the same planes and windows."""

    planes: _BoundaryPlanes
    measure: _BoundaryMeasure


@dataclass(frozen=True)
class _SparePlanes:
    """Raw (block-averaged, not band-passed) planes a registration read, whole laterally, kept for the boundary:
    the previous slice's from its useful plane ``previous_first``, the current slice's from ``current_first``."""

    previous_first: int
    previous: np.ndarray
    current_first: int
    current: np.ndarray


def _boundary_ratio(
    previous: SliceVolume, current: SliceVolume, previous_kept: tuple[int, int], current_kept: tuple[int, int],
    step_um: np.ndarray, parameters: StackParameters, band_workers: int = 1, guess: _BoundaryGuess | None = None,
) -> tuple[OverlapRatio | None, tuple[float, float] | None, LateralGain | None]:
    """Boundary ratio of two consecutive placed slices, the overlap's relative depth in each, the lateral map.

    Reads the current slice's ``n_planes`` planes below its top
    :data:`TOP_SKIP_PLANES` (its top planes in a thin overlap) and the
    previous slice's planes at the same depth (its placed step), over their
    common lateral window, at the registration level (:func:`_boundary_planes`);
    ``guess``, the measure at the registered step, is taken instead when it
    read the same planes and windows (the same values). The previous slice's
    lateral gain map (:func:`linumpy.stack.gains.log_ratio_map`, None where
    nothing is supported) is applied before the ratio is taken.
    ``(None, None, None)`` when they do not overlap.
    """
    where = _boundary_planes(previous, current, step_um, parameters)
    if where is None:
        return None, None, None
    if guess is not None and guess.planes == where:
        measure = guess.measure
    else:
        previous_data, source_um = previous.planes_level(where.level)
        current_data, _ = current.planes_level(where.level)
        p0, c0 = previous.useful_range[0], current.useful_range[0]
        upper, lower = _mean_planes(
            (previous_data[p0 + where.start : p0 + where.start + where.depth], where.previous_window),
            (current_data[c0 + where.skip : c0 + where.skip + where.depth], where.current_window),
            factor=where.factor, workers=band_workers)
        measure = _boundary_measure(upper, lower, where, previous_data.shape[1:], source_um)
    centre = (where.depth - 1) / 2
    p0, c0 = previous.useful_range[0], current.useful_range[0]
    # relative to the first kept plane (below the cut face, :func:`_below_cut_faces`)
    relative = ((where.start + centre - previous_kept[0] + p0) / max(1, previous_kept[1] - previous_kept[0] - 1),
                max(0.0, where.skip + centre - current_kept[0] + c0) / max(1, current_kept[1] - current_kept[0] - 1))
    lateral = (LateralGain(measure.log_map, measure.pixel_um, max(relative[0], 1e-3), measure.partial_fraction,
                           measure.level_log) if measure.log_map.any() else None)
    return measure.ratio, relative, lateral


def _boundary_planes(previous: SliceVolume, current: SliceVolume, step_um: np.ndarray,
                     parameters: StackParameters) -> _BoundaryPlanes | None:
    """Where the boundary ratio of two slices ``step_um`` apart reads (:func:`_boundary_ratio`); None when they
    do not overlap."""
    level, factor = _registration_level(previous, current, parameters.registration_size)
    previous_data, source_um = previous.planes_level(level)
    current_data, _ = current.planes_level(level)
    start = int(round(step_um[0] / source_um[0]))
    # the current slice's cut face (partly cut voxels, the surface's bumps) is left out, as in the registration
    room = min(current.useful_depth, previous.useful_depth - start)
    skip = TOP_SKIP_PLANES if room >= TOP_SKIP_PLANES + MIN_PLANES else 0
    start += skip
    depth = min(parameters.n_planes, current.useful_depth - skip, previous.useful_depth - start)
    offset = np.rint(step_um[1:] / (np.asarray(source_um[1:]) * factor)).astype(int)
    previous_window, current_window = _common_window(previous_data.shape[1:], current_data.shape[1:], offset, factor)
    if depth < 1 or start < 0 or previous_window is None:
        return None
    return _BoundaryPlanes(level, factor, start, skip, depth, previous_window, current_window)


def _boundary_measure(upper: np.ndarray, lower: np.ndarray, where: _BoundaryPlanes, previous_shape: Sequence[int],
                      source_um: Sequence[float]) -> _BoundaryMeasure:
    """The boundary's ratio and lateral map from the previous slice's planes ``upper`` and the current's ``lower``
    (read where ``where`` says, block-averaged)."""
    factor = where.factor
    held = held_signal(lower, upper)
    overlap_map = log_ratio_map(lower, upper, held=held)
    ratio = overlap_ratio(upper * np.exp(overlap_map), lower)
    log_map = np.zeros(tuple(n // factor for n in previous_shape), np.float32)
    log_map[tuple(slice(w.start // factor, w.stop // factor) for w in where.previous_window)] = overlap_map
    log_map, pixel_um = coarse_map(log_map, (float(source_um[1]) * factor, float(source_um[2]) * factor))
    return _BoundaryMeasure(ratio, log_map, pixel_um, partial_fraction(held),
                            map_level_log(ratio, overlap_ratio(upper, lower)))


def _boundary_spare(previous_read: np.ndarray, first: int, current_read: np.ndarray, nominal_planes: int,
                    parameters: StackParameters) -> _SparePlanes | None:
    """Copies of the raw planes a registration read (``previous_read`` from the previous slice's useful plane
    ``first``, ``current_read`` from the current slice's first) where its boundary ratio reads below the
    current slice's cut face (:data:`TOP_SKIP_PLANES`) at a step within :data:`BOUNDARY_SPARE_PLANES` planes
    of ``nominal_planes``; None beyond :data:`BOUNDARY_SPARE_BYTES`."""
    top = nominal_planes + TOP_SKIP_PLANES
    low = max(first, top - BOUNDARY_SPARE_PLANES)
    high = min(first + len(previous_read), top + parameters.n_planes + BOUNDARY_SPARE_PLANES)
    previous = previous_read[low - first : high - first]
    current = current_read[TOP_SKIP_PLANES : TOP_SKIP_PLANES + parameters.n_planes]
    if previous.nbytes + current.nbytes > BOUNDARY_SPARE_BYTES or not len(previous) or not len(current):
        return None
    return _SparePlanes(low, previous.copy(), TOP_SKIP_PLANES, current.copy())


def _boundary_guess(previous: SliceVolume, current: SliceVolume, step_um: np.ndarray, parameters: StackParameters,
                    spare: _SparePlanes) -> _BoundaryGuess | None:
    """The boundary measured at ``step_um`` on the ``spare`` planes; None when it reads planes they lack."""
    where = _boundary_planes(previous, current, step_um, parameters)
    if where is None:
        return None
    start, skip = where.start - spare.previous_first, where.skip - spare.current_first
    if min(start, skip) < 0 or start + where.depth > len(spare.previous) or skip + where.depth > len(spare.current):
        return None
    upper = _window_planes(spare.previous[start : start + where.depth], where.previous_window, where.factor)
    lower = _window_planes(spare.current[skip : skip + where.depth], where.current_window, where.factor)
    previous_data, source_um = previous.planes_level(where.level)
    return _BoundaryGuess(where, _boundary_measure(upper, lower, where, previous_data.shape[1:], source_um))


def _window_planes(planes: np.ndarray, window: tuple[slice, slice], factor: int) -> np.ndarray:
    """A C-contiguous copy of ``planes[:, window]`` (``window`` in level pixels, multiples of ``factor``, of
    planes block-averaged by ``factor``)."""
    return np.ascontiguousarray(planes[(slice(None), *(slice(w.start // factor, w.stop // factor) for w in window))])


def _whole(data: da.Array) -> tuple[slice, slice]:
    """The whole lateral window of ``(z, y, x)`` data."""
    return slice(0, data.shape[1]), slice(0, data.shape[2])


def _crop_planes(planes: np.ndarray, window: tuple[slice, slice], factor: int) -> np.ndarray:
    """``planes[:, window]`` (``window`` in level pixels, multiples of ``factor``, of planes block-averaged by
    ``factor``) as a C-contiguous array, moved to the front of ``planes``' own memory plane by plane (no second
    copy of the planes; ``planes`` is overwritten).

    Examples
    --------
    >>> planes = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    >>> _crop_planes(planes, (slice(1, 3), slice(0, 2)), 1).tolist()
    [[[4, 5], [8, 9]], [[16, 17], [20, 21]]]
    """
    rows, columns = (slice(w.start // factor, w.stop // factor) for w in window)
    if (rows.start, columns.start, rows.stop, columns.stop) == (0, 0, *planes.shape[1:]):
        return planes
    height, width = rows.stop - rows.start, columns.stop - columns.start
    out = planes.reshape(-1)[: len(planes) * height * width].reshape(len(planes), height, width)
    for k, plane in enumerate(planes):  # plane k's window lands before plane k + 1 starts: none is overwritten unread
        out[k] = plane[rows, columns]
    return out


def _common_window(
    previous_shape: Sequence[int], current_shape: Sequence[int], offset: np.ndarray, factor: int
) -> tuple[tuple[slice, slice] | None, tuple[slice, slice] | None]:
    """Lateral windows (level pixels) of both slices over their common area.

    ``offset`` is the current slice's origin in the previous slice's frame,
    in registration pixels (level pixels times ``factor``).
    """
    prev_shape = np.asarray(previous_shape) // factor
    curr_shape = np.asarray(current_shape) // factor
    start = np.maximum(0, offset)
    stop = np.minimum(prev_shape, offset + curr_shape)
    if np.any(stop - start < 8):
        return None, None
    prev_window = tuple(slice(int(a) * factor, int(b) * factor) for a, b in zip(start, stop))
    curr_window = tuple(
        slice(int(a - o) * factor, int(b - o) * factor) for a, b, o in zip(start, stop, offset)
    )
    return prev_window, curr_window


def _mean_planes(*reads: tuple[da.Array, tuple[slice, slice]], factor: int, workers: int = 1) -> tuple[np.ndarray, ...]:
    """Read planes ``(data, lateral window)`` block-averaged by ``factor``, each band by band
    (:func:`linumpy.stack.planes.read_planes`: ``workers`` bands of chunk rows in memory at a time)."""
    return tuple(read_planes(data[(slice(None), *window)], factor, workers) for data, window in reads)


def _record(
    slices: Sequence[SliceVolume],
    nominal: np.ndarray,
    glitches: dict[str, list[int]],
    estimates: Sequence[PairEstimate | None],
    resolved: ResolvedOrigins,
    placed: Sequence[PlacedSlice],
    thickness_um: float,
) -> dict:
    """JSON-ready account of every placement decision."""
    per_slice = []
    for k, s in enumerate(slices):
        per_slice.append(
            {
                "slice_id": s.slice_id,
                "motor_origin_um": _rounded(nominal[k]),
                "origin_um": _rounded(resolved.origins_um[k]),
                "origin_voxel": list(placed[k].origin),
                "first_voxel_coverage": [round(c, 4) for c in placed[k].first_coverage],
                "shape_voxel": list(placed[k].data.shape),
                "glitch_corrected": [a for a, idx in glitches.items() if k in idx],
                "registration": estimates[k].to_dict() if estimates[k] else None,
                "used_registration_z": resolved.used_z[k],
                "used_registration_lateral": resolved.used_lateral[k],
                "drift_clamped": resolved.drift_clamped[k],
            }
        )
    return {
        "slice_thickness_um": thickness_um,
        "axes": ["depth", "y", "x"],
        "slices": per_slice,
    }


def _flatten_plane(volume: SliceVolume, tilt: tuple[float, float] | None) -> list[float] | None:
    """The plane ``(a, b, c)`` the slice's useful plane 0 now follows (its own, or the common tilt's)."""
    if volume.surface_plane is None:
        return None
    if tilt is None:
        return _rounded(volume.surface_plane)
    a, b, c = volume.surface_plane
    ny, nx = volume.levels[0][0].shape[1:]
    centre_y, centre_x = (ny - 1) / 2, (nx - 1) / 2
    return _rounded([a + (b - tilt[0]) * centre_y + (c - tilt[1]) * centre_x, tilt[0], tilt[1]])


def _rounded(values: np.ndarray) -> list[float]:
    return [round(float(v), 4) for v in values]
