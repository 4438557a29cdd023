"""QC record of a stack: metrics from its placement record, figures from a pyramid level.

The metric names follow ``docs/qc.md``: per-slice lists aligned with
``slice_ids`` (the report puts them in the slices' rows), the slices absent
from the stack under ``excluded_slices`` (one red flag each), and a few
whole-brain counts.

The figures are drawn with Pillow (:mod:`linumpy.viz.chart`,
:func:`linumpy.viz.screenshot.views_image`), not matplotlib, whose import
and layout passes cost about as much CPU as writing the volume: the stack
draws the ``shifts`` figure (:func:`shifts_png`, from the placement record
alone) on a thread of its own while the volume is written, and the
``views`` once it is.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any

import dask
import numpy as np

from linumpy.io.zarr import ANALYSIS_MIN_LAST_COVER, RESOLUTION_TOLERANCE, read_omezarr, read_omezarr_info
from linumpy.qc.flags import outlier_indices
from linumpy.qc.metrics import nonzero_mask
from linumpy.qc.records import render_png, write_qc_record
from linumpy.resample import resampled_shape
from linumpy.stack.anchors import MOTOR_MARGIN
from linumpy.stack.depths import AT_IMPLIED_VOXEL, MAX_PRIOR_SIGMA_UM, implied_axial_voxel_um
from linumpy.stack.gains import NO_SLICE_BELOW, UNMEASURED_FLAG_SPREAD
from linumpy.stack.rotation import unapplied_turn
from linumpy.viz.chart import BLUE, GREEN, ORANGE, Panel, Series, line_chart
from linumpy.viz.planes import centre_index, orthogonal_planes, tissue_counts
from linumpy.viz.screenshot import views_image

#: Reason given in the report for a slice id absent from the stack.
ABSENT_REASON = "absent from the stack (excluded, or missing with --allow_gaps); its depth is left at zero"
INTERPOLATED_REASON = ("absent from the stack (excluded, or missing with --allow_gaps); its depth is "
                       "interpolated from the neighbouring slices (--interpolate_missing), not measured")
#: The QC views use the coarsest pyramid level at least this many voxels wide.
QC_VIEW_PX = 256
#: Per-slice metric -> registration field: the raw NCCs behind the confidences and the speckle ceilings and
#: noise they are judged against (``linumpy.stack.refine.PairEstimate``; None in records made before them).
SPECKLE_FIELDS = {"overlap_ncc_raw": "overlap_ncc", "overlap_ceiling": "lateral_ceiling",
                  "z_peak_ncc": "z_peak_ncc", "z_ceiling": "z_ceiling", "z_noise": "z_noise"}
#: Per-slice attenuation fields (:func:`linumpy.stack.attenuation.slice_attenuations`; None without
#: ``--uncompensated``).
ATTENUATION_FIELDS = ("tissue_attenuation_per_mm", "attenuation_source", "overlap_attenuation_per_mm",
                      "overlap_attenuation_pixels", "overlap_attenuation_supported_fraction",
                      "overlap_attenuation_path_um", "attenuation_next_slab_weight")
#: A boundary ratio further than this from 1 after the gains is flagged.
MAX_BOUNDARY_STEP = 0.05
#: Largest standard deviation of a slice's depth (``z_sigma_um``), in axial voxels, left unflagged
#: (:func:`placement_flags`): issue #11's bar for a slice's placement.
Z_SIGMA_BAR_VOXEL = 0.5
#: Fewest registered depth steps whose median judges the slice thickness (:func:`placement_flags`).
MIN_THICKNESS_PAIRS = 3


class WrittenStatistics:
    """The QC's statistics of a volume gathered from its blocks as they are written (a region sink).

    ``sink[region] = block`` counts the block's non-zero finite voxels and
    its tissue voxels (``> 0``) per plane of each axis, then passes it on to
    ``sink``: when the QC reads level 0 (:func:`qc_reads_finest`), it then
    needs no pass over the written volume. The same numbers as
    :func:`linumpy.qc.metrics.nonzero_mask` and
    :func:`linumpy.viz.planes.tissue_counts` over the whole volume.

    Examples
    --------
    >>> volume = np.zeros((2, 2, 3))
    >>> sink = WrittenStatistics(volume, volume.shape)
    >>> sink[0:2, 0:2, 0:3] = np.array([[[0, 1, 2], [0, 0, -1]], [[np.nan, 0, 0], [3, 0, 0]]])
    >>> sink.nonzero_fraction, [p.tolist() for p in sink.tissue_counts], float(volume[1, 1, 0])
    (0.3333333333333333, [[2, 1], [2, 1], [1, 1, 1]], 3.0)
    """

    def __init__(self, sink: Any, shape: Sequence[int]):
        self.sink, self.shape = sink, tuple(int(n) for n in shape)
        self._nonzero = 0
        self.tissue_counts = [np.zeros(n, np.int64) for n in self.shape]
        self._lock = threading.Lock()  # blocks are written by several threads (integer counts: any order)

    def __setitem__(self, region: tuple[slice, ...], block: np.ndarray) -> None:
        nonzero = int(np.count_nonzero(nonzero_mask(block)))
        tissue = block > 0
        counted = [np.count_nonzero(tissue, axis=tuple(a for a in range(tissue.ndim) if a != axis))
                   for axis in range(tissue.ndim)]
        with self._lock:
            self._nonzero += nonzero
            for part, counts, added in zip(region, self.tissue_counts, counted, strict=True):
                counts[part] += added
        self.sink[region] = block

    @property
    def centre(self) -> tuple[int, ...]:
        """The views' tissue centre (:func:`linumpy.viz.planes.centre_index` of each axis' counts)."""
        return tuple(centre_index(counts) for counts in self.tissue_counts)

    @property
    def nonzero_fraction(self) -> float:
        """Fraction of the volume's voxels that are non-zero and finite (unwritten voxels are zero)."""
        return self._nonzero / math.prod(self.shape)


def qc_reads_finest(shape: Sequence[int], resolution_um: float, pyramid_resolutions_um: Sequence[float]) -> bool:
    """Whether :func:`write_stack_qc` should read level 0 of a volume of ``shape``: no level of its analysis
    pyramid (resolutions coarser than ``resolution_um``) ``QC_VIEW_PX`` voxels wide.

    A prediction from the levels' shapes resampled straight from level 0 (the
    pyramid resamples each level from the one before, which may differ by a
    voxel): :func:`write_stack_qc` checks the level it reads, so a wrong guess
    only costs the statistics counted in vain or a pass over level 0.

    Examples
    --------
    >>> qc_reads_finest((127, 466, 465), 3.0, (10, 25, 50, 100)), qc_reads_finest((127, 900, 900), 3.0, (10, 25))
    (True, False)
    """
    coarser = [r for r in pyramid_resolutions_um if r > resolution_um * (1 + RESOLUTION_TOLERANCE)]
    widths = [max(resampled_shape(shape, (resolution_um,) * len(shape), (r,) * len(shape),
                                  min_last_cover=ANALYSIS_MIN_LAST_COVER)[1:]) for r in coarser]
    return all(width < QC_VIEW_PX for width in widths)


def write_stack_qc(output: str | os.PathLike, record: Mapping[str, Any], resolution_um: float,
                   shifts: bytes | None = None, written: WrittenStatistics | None = None,
                   views: bytes | None = None) -> Path:
    """Write the stack's QC record beside ``output`` (an existing stacked volume).

    Metrics are :func:`stack_metrics` plus ``nonzero_fraction``; figures are
    ``shifts`` (slice-to-slice shifts and overlap NCC, outliers circled;
    ``shifts``: that figure already rendered by :func:`shifts_png`) and
    ``views`` (orthogonal planes). Pixels come from the coarsest pyramid
    level still ``QC_VIEW_PX`` voxels wide (the finest if none is): the
    non-zero fraction and the views' tissue centre
    (:func:`linumpy.viz.planes.tissue_centre`) stream over it in one pass,
    the views read three planes. When that level is level 0 and ``written``
    counted it as it was written, its numbers are used instead, and
    ``views``, the views already rendered from it (:func:`start_views`).
    """
    metrics = stack_metrics(record, resolution_um)
    levels = read_omezarr_info(output).levels
    level = max((i for i, lv in enumerate(levels) if max(lv.shape[1:]) >= QC_VIEW_PX), default=0)
    volume, scale_mm = read_omezarr(output, level)
    if level == 0 and written is not None and written.shape == volume.shape:
        fraction, centre = written.nonzero_fraction, written.centre
    else:
        fraction, *profiles = dask.compute(nonzero_mask(volume).mean(), *tissue_counts(volume))
        centre, views = tuple(centre_index(profile) for profile in profiles), None
    metrics["nonzero_fraction"] = float(fraction)
    figures = {
        "shifts": shifts_png(record, resolution_um) if shifts is None else shifts,
        "views": views_png(orthogonal_planes(volume, centre), scale_mm) if views is None else views,
    }
    return write_qc_record(output, "stack", metrics, figures,
                           focus_flags(metrics) + boundary_flags(metrics) + placement_flags(metrics)
                           + attenuation_flags(record))


def start_views(level0: Any, written: WrittenStatistics, resolution_um: float, pool: Executor) -> Future:
    """Read level 0's three planes through ``written``'s tissue centre now; render the ``views`` on ``pool``.

    ``level0``: the volume's level 0 as written, numpy-indexable (read here, before the writer moves it).
    The future's result is :func:`write_stack_qc`'s ``views``.
    """
    planes = orthogonal_planes(level0, written.centre)
    return pool.submit(views_png, planes, (resolution_um / 1000,) * 3)  # the level-0 voxel finalize stores


def views_png(planes: tuple[np.ndarray, np.ndarray, np.ndarray], scale_mm: Sequence[float]) -> bytes:
    """The QC record's ``views`` figure, rendered: orthogonal ``planes`` of a level of voxel ``scale_mm``.

    Laid out as :func:`linumpy.viz.screenshot.views_image` (XY, XZ below, YZ
    beside, scale bars in um) at the level's own pixels (XY upsampled to at
    least :data:`QC_VIEW_PX`).
    """
    xy, xz, yz = planes
    z_mm, y_mm, x_mm = scale_mm
    return render_png(views_image([xy, xz, yz.T], [(y_mm, x_mm), (z_mm, x_mm), (y_mm, z_mm)], QC_VIEW_PX))


def shifts_png(record: Mapping[str, Any], resolution_um: float) -> bytes:
    """The QC record's ``shifts`` figure, rendered: slice-to-slice shifts and overlap NCC, outliers circled.

    Drawn from the placement record alone (:func:`stack_metrics`), so it can
    be drawn while the volume is written.
    """
    metrics = stack_metrics(record, resolution_um)
    ids, shifts = metrics["slice_ids"], np.asarray(metrics["shifts_px"], dtype=np.float64).reshape(-1, 2)
    ncc = np.array([np.nan if v is None else v for v in metrics["overlap_ncc"]], dtype=np.float64)
    lengths = np.hypot(shifts[:, 0], shifts[:, 1])
    outliers = [(ids[i], lengths[i]) for i in outlier_indices(lengths)]
    panels = [Panel("shift (px)", [Series("dy", shifts[:, 0], BLUE), Series("dx", shifts[:, 1], ORANGE, "s")],
                    circled=outliers, circled_label="outlier |shift|"),
              Panel("overlap NCC", [Series("", ncc, GREEN)], ylim=(min(-0.05, float(np.nanmin(ncc, initial=0.0))), 1.05))]
    return render_png(line_chart(ids, panels, "slice id", "slice-to-slice shifts"))


def attenuation_flags(record: Mapping[str, Any]) -> list[str]:
    """A flag per slice whose attenuation is not measured through an overlap, or weakly supported.

    Examples
    --------
    >>> attenuation_flags({"slices": [{"slice_id": 3, "attenuation": {"attenuation_flags": ["no slice below"]}}]})
    ['slice 3: no slice below']
    """
    return [f"slice {s['slice_id']}: {flag}" for s in record["slices"]
            for flag in (s.get("attenuation") or {}).get("attenuation_flags", [])]


def focus_flags(metrics: Mapping[str, Any]) -> list[str]:
    """A flag per slice the axial correction divided no focus profile out of (``focus_skipped``).

    Its values keep the focus (dim at the top far above it, rising with
    depth): off the compensated scale, its boundary ratios and depth trend
    are the focus's, not a gain's. The slab gains' fit starts from the
    normalised levels and leaves its level and trend to its overlaps (untied
    from its neighbours'); the focus's shape within it stays.

    Examples
    --------
    >>> focus_flags({"slice_ids": [0, 1], "focus_skipped": [None, "none (no background A-lines)"]})[0][:60]
    'slice 1: no focus correction (none (no background A-lines)):'
    >>> focus_flags({"slice_ids": [0]})
    []
    """
    skipped = metrics.get("focus_skipped") or [None] * len(metrics["slice_ids"])
    return [f"slice {slice_id}: no focus correction ({why}): its intensity keeps the focus, off the compensated "
            f"scale the others share: the slab levels start normalised and its gain is left to its overlaps; "
            f"expect the focus's depth profile within its slab"
            for slice_id, why in zip(metrics["slice_ids"], skipped, strict=True) if why]


def boundary_flags(metrics: Mapping[str, Any]) -> list[str]:
    """A flag per slice whose top still differs from the previous slice's overlap by more than 5% (or unmeasured).

    And one per slice left without its lateral gain map although a next slice
    exists. A slice with no slice right below it (the last, one before a gap:
    :data:`~linumpy.stack.gains.NO_SLICE_BELOW`) is flagged only when the
    stack's measured maps spread by :data:`~linumpy.stack.gains.UNMEASURED_FLAG_SPREAD`
    or more (median ``p95 / p5``): the slabs above needed a lateral correction
    at their bottom that nothing measures for it.

    Examples
    --------
    >>> metrics = {"slice_ids": [0, 1, 2], "boundary_ratio_raw": [None, 1.0, 1.0], "boundary_ratio": [None, 1.0, 1.0],
    ...            "lateral_gain_range": [[0.8, 1.3], [0.78, 1.35], None],
    ...            "lateral_gain_fallback": [None, None, NO_SLICE_BELOW]}
    >>> boundary_flags(metrics)[0].startswith("slice 2: no slice right below it")
    True
    >>> metrics["lateral_gain_range"] = [[0.95, 1.05], [0.94, 1.06], None]  # nothing much to correct above
    >>> boundary_flags(metrics)
    []
    """
    flags = []
    for slice_id, raw, ratio in zip(metrics["slice_ids"][1:], metrics["boundary_ratio_raw"][1:],
                                    metrics["boundary_ratio"][1:], strict=True):
        if raw is not None and (ratio is None or abs(ratio - 1) > MAX_BOUNDARY_STEP):
            flags.append(f"slice {slice_id}: intensity step {ratio} at its top boundary after gain matching "
                         f"(before: {raw})")
    ranges = [r for r in metrics.get("lateral_gain_range", []) if r is not None and r[0] > 0]
    spread = float(np.median([high / low for low, high in ranges])) if ranges else None
    for slice_id, reason in zip(metrics["slice_ids"], metrics.get("lateral_gain_fallback", []), strict=False):
        if reason == NO_SLICE_BELOW:
            if spread is not None and spread >= UNMEASURED_FLAG_SPREAD:
                low, high = np.median(ranges, axis=0)
                flags.append(f"slice {slice_id}: {reason}; the slabs above needed lateral gains {low:.2f}-{high:.2f} "
                             f"(median p5-p95) at their bottom: expect a lateral field as large in its deep planes")
        elif reason:
            flags.append(f"slice {slice_id}: {reason}")
    return flags + faded_map_flags(metrics)


def faded_map_flags(metrics: Mapping[str, Any]) -> list[str]:
    """A flag per slice whose lateral gain map was applied at part strength (its overlap confidence within the
    fade band, :func:`~linumpy.stack.gains.map_strength`).

    Examples
    --------
    >>> flags = faded_map_flags({"slice_ids": [0, 1, 2], "lateral_gain_strength": [1.0, 0.42, 0.0],
    ...                          "lateral_gain_confidence": [0.71, 0.487, 0.3]})
    >>> len(flags), flags[0][:60]
    (1, 'slice 1: lateral gain map applied at 42.0% strength (overlap')
    """
    return [f"slice {slice_id}: lateral gain map applied at {strength:.1%} strength (overlap NCC {confidence:.3f} "
            "of its speckle ceiling with the next slice)"
            for slice_id, strength, confidence in zip(metrics["slice_ids"], metrics.get("lateral_gain_strength", []),
                                                       metrics.get("lateral_gain_confidence", []), strict=False)
            if strength is not None and 0 < strength < 1]


def _motor_part_kept(placed: Mapping[str, Any]) -> str:
    """What a registered slice kept of its motor placement: its ``depth``, ``lateral position`` or ``position``."""
    if placed["used_registration_lateral"]:
        return "depth"
    return "lateral position" if placed["used_registration_z"] else "position"


def _fallback_said(part: str, metrics: Mapping[str, Any], index: int) -> str:
    """The flag's text for a registered slice that kept ``part`` of its motor placement."""
    z_confidence = metrics["z_confidence"][index]
    depth = ("motor and surface depth, with the other slices" if metrics.get("depth_mode") == "joint"
             else "motor depth")
    if part == "depth" and metrics["slice_ids"][index] in (metrics.get("axial_voxel") or {}).get("steps_left_out", []):
        return (f"depth step registered (z confidence {z_confidence}) but left out, as every step (see the axial "
                "voxel flag): depth from its motor and surface depth; lateral shift registered")
    if part == "depth":
        return (f"depth registration unsure (z confidence {z_confidence}): depth from its {depth}; "
                "lateral shift registered")
    if part == "lateral position":
        return (f"lateral registration unsure (overlap NCC {metrics['overlap_ncc'][index]}): motor lateral "
                f"position kept; depth registered (z confidence {z_confidence})")
    return f"registration unsure (z confidence {z_confidence}): motor position kept (depth: {depth})"


def placement_flags(metrics: Mapping[str, Any]) -> list[str]:
    """A flag per slice placed by the motors although registered, re-flattening refused, rotation-only,
    or left on the identity although a turn was measured (``rotation_unapplied_deg``).

    And one per slice whose depth step from the previous slice still misses the
    slice thickness by more than the encoder-glitch tolerance (``z_tolerance_um``):
    a motor jump that no later step cancels (at the first or the last slice,
    which :func:`~linumpy.stack.placement.find_encoder_glitches` cannot
    recognise), left in when registering at the slice thickness did not
    support that step better either (``motor_slip`` in the record), with what
    the overlap's blocks said (``motor_slip_blocks``, :mod:`linumpy.stack.blocks`);
    and one per slice the blocks placed at the thickness although the overlap
    matched poorly as a whole at both steps.

    And one when the depth steps of the slices placed by their registration
    (at least :data:`MIN_THICKNESS_PAIRS`) miss the thickness by more than
    half that tolerance at their median: the thickness itself (the sidecar's,
    or the motor step most steps agree on) is off, and so is every scan and
    tolerance built on it. And one listing the slices clamped onto the drift
    bound around their motor position, or motor + surface depth when the
    depths are solved together (``drift_clamped``). And one when the
    slices' motor and surface depths scatter against the registered steps by
    more than :data:`~linumpy.stack.depths.MAX_PRIOR_SIGMA_UM` (``depth_prior_sigma_um``,
    :mod:`linumpy.stack.depths`): the steps are then chained. And one when every registered step misses them
    by the same fraction, naming the axial voxel size that would make them agree
    (:func:`~linumpy.stack.depths.implied_axial_voxel_um`).
    And one per slice whose registered depth step was doubted (``z_step_doubted``,
    :func:`~linumpy.stack.depths.doubted_step`: the one step its own sigma and the
    absolute depths' cannot explain; placed by its motor and surface depth), and one
    per slice whose depth's standard deviation (``z_sigma_um``) exceeds
    :data:`Z_SIGMA_BAR_VOXEL` axial voxel.

    Examples
    --------
    >>> placement_flags({"slice_ids": [0, 1, 2], "motor_fallback": [2], "z_confidence": [None, 0.8, 0.0],
    ...                  "retilt_max_planes": [0, -20, 0], "rotation_mode": [None, "skipped", "rotation_only"],
    ...                  "slice_thickness_um": 66.0, "z_tolerance_um": 16.5, "z_offsets_um": [0.0, 0.4, 30.0]})
    ... # doctest: +NORMALIZE_WHITESPACE
    ['slice 2: registration unsure (z confidence 0.0): motor position kept (depth: motor depth)',
     'slice 2: depth step 96.0 um for a slice thickness of 66.0 um (off by more than the glitch tolerance,
     16.5 um): a motor jump that no later step cancels, not confirmed by registering at the thickness; check its
     depth',
     'slice 1: surface plane 20 planes from the common tilt at its edge: left as flattened',
     'slice 2: rotation applied on a weak overlap (rotation only)']
    """
    ids = metrics["slice_ids"]
    kept_parts = metrics.get("motor_fallback_kept") or ["position"] * len(metrics["motor_fallback"])
    flags = [f"slice {i}: {_fallback_said(part, metrics, ids.index(i))}"
             for i, part in zip(metrics["motor_fallback"], kept_parts, strict=True)]
    flags += [f"slice {i}: its registered depth step disagrees with the motor and surface depths by "
              f"{residual:+.2f} um ({ratio:.1f} standard deviations; the other steps agree): placed by its motor "
              "and surface depth; the overlap with the previous slice may be misregistered laterally (along "
              "oblique structure the z peak follows a lateral error)"
              for i, residual, ratio in zip(ids, metrics.get("z_residual_um", [None] * len(ids)),
                                            metrics.get("z_step_doubted", [None] * len(ids)), strict=True) if ratio]
    bar = None if metrics.get("axial_voxel_um") is None else Z_SIGMA_BAR_VOXEL * metrics["axial_voxel_um"]
    sigmas = metrics.get("z_sigma_um", [None] * len(ids))
    flags += [f"slice {i}: depth uncertain, standard deviation {sigma:.2f} um (more than {Z_SIGMA_BAR_VOXEL} axial "
              f"voxel, {bar:.2f} um): its registered steps and its motor and surface depth disagree, or its "
              "registration is weak"
              for i, sigma in zip(ids, sigmas, strict=True) if bar and sigma is not None and sigma > bar]
    prior_sigma = metrics.get("depth_prior_sigma_um")
    if prior_sigma is not None and prior_sigma > MAX_PRIOR_SIGMA_UM:
        flags.append(f"the slices' motor and surface depths scatter by {prior_sigma:.2f} um (standard deviation) "
                     "against the registered depth steps: the stage or the image's depth frame moves between "
                     "slices; the registered steps are chained instead")
    tolerance, thickness = metrics.get("z_tolerance_um"), metrics.get("slice_thickness_um")
    implied = None if not thickness or metrics.get("axial_voxel_um") is None else implied_axial_voxel_um(
        metrics.get("z_residual_um", []), thickness, metrics["axial_voxel_um"])
    flags += _axial_voxel_flags(metrics.get("axial_voxel"))
    if implied is not None:
        flags.append(f"every registered depth step misses the motor and surface depths by the same fraction: the "
                     f"axial voxel size is likely {implied:.2f} um, not {metrics['axial_voxel_um']:.2f} um (the "
                     "native tiles cannot state it); pass the true one (axial_resolution, or acquisition.json's "
                     "axial_resolution_um)")
    if tolerance is not None and thickness:
        id_steps = np.diff(ids, prepend=ids[0])
        blocks = metrics.get("motor_slip_blocks", [None] * len(ids))
        flags += [f"slice {i}: depth step {offset + thickness * n:.1f} um for a slice thickness of {thickness:.1f} um "
                  f"(off by more than the glitch tolerance, {tolerance:.1f} um): a motor jump that no later step "
                  f"cancels, not confirmed by registering at the thickness{_blocks_said(vote)}; check its depth"
                  for i, n, offset, vote in zip(ids, id_steps, metrics["z_offsets_um"], blocks, strict=True)
                  if abs(offset) > tolerance]
        flags += [f"slice {i}: motor depth step {vote['motor_step_um']:.1f} um for a slice thickness of "
                  f"{thickness:.1f} um, and its overlap matched poorly as a whole at both steps{_blocks_said(vote)}: "
                  "placed at the thickness (a motor jump, not a lost section); the two slices' mosaics may be "
                  "misregistered against each other: check its depth and lateral placement"
                  for i, vote in zip(ids, blocks, strict=True) if vote and vote["adopted"] == "thickness"]
        flags += [f"slice {i}: motor depth step {climb['motor_step_um']:.1f} um for a slice thickness of "
                  f"{thickness:.1f} um, and neither scan nor the overlap's blocks were confident; the scan around "
                  f"the motor step rose to its edge ({climb['motor_edge_ncc']:.3f}) and the scan around the "
                  f"thickness peaked inside, higher ({climb['thickness_peak_ncc']:.3f}): placed at the thickness by "
                  "its motor and surface depth (a motor jump, not a lost section); check its depth"
                  for i, climb in zip(ids, metrics.get("motor_slip_climb", [None] * len(ids)), strict=True) if climb]
        fallback = set(metrics["motor_fallback"])
        registered = [offset for i, confidence, offset in zip(ids, metrics["z_confidence"], metrics["z_offsets_um"],
                                                             strict=True) if confidence is not None and i not in fallback]
        if len(registered) >= MIN_THICKNESS_PAIRS and abs(np.median(registered)) > tolerance / 2:
            flags.append(f"the {len(registered)} registered depth steps miss the slice thickness of {thickness:.1f} um "
                         f"by {np.median(registered):+.1f} um at their median (more than half the glitch tolerance): "
                         "the thickness is likely off; pass the true one (--slice_thickness_um)")
    if metrics.get("drift_clamped"):
        flags.append(f"slices {metrics['drift_clamped']}: placed on the drift bound around their motor (or motor + "
                     "surface) depth, the registered steps put them farther: the motors or the registration are off; "
                     "check their depth")
    flags += [f"slice {i}: surface plane {-move} planes from the common tilt at its edge: left as flattened"
              for i, move in zip(ids, metrics.get("retilt_max_planes", [0] * len(ids)), strict=True) if move < 0]
    flags += [f"slice {i}: its overlap's lateral peak (NCC {support['peak_ncc']:.3f}) does not beat where the motors "
              f"put it (NCC {support['motor_ncc']:.3f}) by {MOTOR_MARGIN:g} chance scatters ({support['noise']:.3f}): "
              "placed laterally by the motors"
              for i, support in zip(ids, metrics.get("lateral_support", [None] * len(ids)), strict=True)
              if support and not support["beats_motor"]]
    flags += [_anchor_flag(i, anchor) for i, anchor in zip(ids, metrics.get("lateral_anchor", [None] * len(ids)),
                                                            strict=True) if _anchor_split(anchor)]
    flags += [f"slice {i}: rotation applied on a weak overlap (rotation only)"
              for i, mode in zip(ids, metrics["rotation_mode"], strict=True) if mode == "rotation_only"]
    flags += [f"slice {i}: a turn of {turn:.2f} degrees matched its overlap better than none but was not applied "
              "(see its rotation reason): the slice may be left turned; check its orientation"
              for i, turn in zip(ids, metrics.get("rotation_unapplied_deg", [None] * len(ids)), strict=True)
              if turn is not None]
    return flags


def _axial_voxel_flags(check: Mapping[str, Any] | None) -> list[str]:
    """The flag of a stack planned again because its registered depth steps named another axial voxel size
    (``axial_voxel``, :func:`linumpy.stack.voxel.plan_checking_axial_voxel`); none without.

    Examples
    --------
    >>> _axial_voxel_flags({"assumed_um": 1.5, "implied_um": 1.96, "used_um": 1.96,
    ...                     "placement": "implied voxel"})[0][:64]
    'every registered depth step missed the motor and surface depths '
    """
    if not check:
        return []
    refined = (f", {check['used_um']:.2f} um by the steps read at it, which all still missed on one side"
               if check.get("refined_um") and check["used_um"] == check["refined_um"] else "")
    probed = ("every z scan peaked at the same end of its window; registered again over +-"
              f"{check['probe_z_tolerance_um']:.1f} um, " if check.get("probe_z_tolerance_um") else "")
    said = (f"{probed}every registered depth step missed the motor and surface depths by the same fraction at the "
            f"assumed axial voxel size of {check['assumed_um']:.2f} um (the native tiles cannot state it): it is "
            f"likely {check['implied_um']:.2f} um{refined}. ")
    if check["placement"] == AT_IMPLIED_VOXEL:
        said += (f"The stack read the slices' planes at {check['used_um']:.2f} um (placement, blending, the "
                 "volume's z scale), and its steps then agreed with the motor and surface depths")
    else:
        said += (f"Read at {check['implied_um']:.2f} um the steps still disagreed: the slices are placed by their "
                 f"motor and surface depths at {check['used_um']:.2f} um, the registered depth steps left out, and "
                 "each slab's depth scale is the assumed one")
    return [said + "; the steps before the stack (axial correction: attenuation in /mm, depths) used "
            f"{check['assumed_um']:.2f} um: pass the true voxel (axial_resolution, or acquisition.json's "
            "axial_resolution_um) and run again"]


def _anchor_split(anchor: Mapping[str, Any] | None) -> bool:
    """Whether a step's overlap blocks (``lateral_anchor``, :mod:`linumpy.stack.anchors`) split: the step was
    anchored, or fewer than half its confident blocks agree with its peak."""
    return bool(anchor) and (anchor["anchored"] or 2 * anchor["agreeing"] < anchor["blocks"])


def _anchor_flag(slice_id: int, anchor: Mapping[str, Any]) -> str:
    """The flag of a step whose overlap blocks split (:func:`_anchor_split`).

    Examples
    --------
    >>> print(_anchor_flag(3, {"blocks": 6, "agreeing": 4, "anchored": True, "peak_step_yx_um": [-10.0, 28.75]}))
    ... # doctest: +NORMALIZE_WHITESPACE
    slice 3: only 4 of the 6 confident blocks of its overlap with slice 2 agree with the overlap's peak (a
    mosaic broken by its stitch, tiles misplaced): its lateral step read where the step above placed slice 2, not
    at the peak (-10.0, 28.8) um; check both slices' tiles
    """
    said = (f"its lateral step read where the step above placed slice {slice_id - 1}, not at the peak "
            f"({anchor['peak_step_yx_um'][0]:.1f}, {anchor['peak_step_yx_um'][1]:.1f}) um" if anchor["anchored"]
            else f"its lateral step kept at the peak ({anchor['reason']}): it may sit off laterally")
    return (f"slice {slice_id}: only {anchor['agreeing']} of the {anchor['blocks']} confident blocks of its overlap "
            f"with slice {slice_id - 1} agree with the overlap's peak (a mosaic broken by its stitch, tiles "
            f"misplaced): {said}; check both slices' tiles")


def _blocks_said(vote: Mapping[str, Any] | None) -> str:
    """What a pair's overlap blocks said of its depth step (``motor_slip_blocks``), for a flag; empty without."""
    if not vote:
        return ""
    agreeing, placing = vote["agreeing"], vote.get("placing", vote["agreeing"])
    return (f" (of its {vote['n_blocks']} overlap blocks, each registered at its own lateral shift, "
            f"{placing['thickness']} agree on a step near the thickness, {agreeing['thickness']} of them confident, "
            f"and {placing['motor']} near the motor step, {agreeing['motor']} confident)")


def stack_metrics(record: Mapping[str, Any], resolution_um: float) -> dict[str, Any]:
    """Summarise a :class:`~linumpy.stack.stacking.StackPlan` record for QC.

    Parameters
    ----------
    record : mapping
        ``StackPlan.record``.
    resolution_um : float
        Output voxel size; shifts are reported in output voxels.

    Returns
    -------
    dict
        ``slice_ids``; per slice: ``shifts_px`` (lateral correction of the
        step from the previous slice over the motor step, ``[dy, dx]`` output
        voxels, 0 for the first slice), ``z_offsets_um`` (depth step from the
        previous slice minus the thickness), ``overlap_ncc`` (NCC of the
        aligned overlap with the previous slice relative to its speckle
        ceiling, None without registration), ``z_confidence`` (the z scan's
        peak relative to its ceiling), the raw quantities behind both
        (:data:`SPECKLE_FIELDS`: ``overlap_ncc_raw``, ``overlap_ceiling``,
        ``z_peak_ncc``, ``z_ceiling``, ``z_noise``), ``kept_depth_um``, ``blend_speckle_limited``,
        ``blend_averaged_below_um`` and ``blend_share_last`` (:mod:`linumpy.stack.averaging`),
        ``rotation_deg`` and ``rotation_mode``
        (:mod:`linumpy.stack.rotation`; None for the first slice), ``boundary_ratio_raw`` / ``boundary_ratio``
        (mean intensity of the previous slice over this slice's top on their
        overlap, before / after the gains; None for the first slice or a gap),
        ``boundary_ratio_tissue`` (how that ratio's tissue was chosen, e.g. ``"otsu (14.1x)"`` or
        ``"half median (2.8x)"``: the rule and the separation of the two classes of A-line levels,
        :class:`~linumpy.stack.gains.OverlapRatio`; None without a ratio),
        ``gain_top_bottom`` (gain applied at the slice's top and bottom),
        ``gain_trend_measured`` (whether a boundary with the slice below measured
        the depth trend of that gain; False: taken from the slice above, e.g. the last slice),
        ``gain_trend_map_level`` (for such a slice, what its trend borrows beyond the slice above's: the trend
        of the level that slice's lateral map gives its tissue, :func:`~linumpy.stack.gains.borrowed_trends`;
        None elsewhere or when the slice above has no map),
        ``gain_compensated_level`` (the factor putting the normalised slice back on the compensated scale
        the slices share, :func:`~linumpy.stack.gains.compensated_levels`; 1 when unknown) and
        ``gain_level_source`` (``"compensated"``, or ``"normalised"`` when a slice's normalisation scale is
        unknown and every slice stays at its own normalised level),
        ``lateral_gain_range`` (5th and 95th percentiles, at the overlap depth,
        of the lateral gain map fitted on the overlap with the next slice,
        :class:`~linumpy.stack.gains.LateralGain`; None without one),
        ``lateral_gain_fallback`` (why a slice with a next slice has no map,
        else None), ``lateral_gain_partial_fraction`` (fraction of that overlap's A-lines
        with a plane left out of the map's depth means, :func:`~linumpy.intensity.transmission.held_signal`;
        None without a map),
        ``rotation_std_deg`` (uncertainty of the fitted rotation), ``rotation_unapplied_deg`` (a turn
        measured but refused, :func:`~linumpy.stack.rotation.unapplied_turn`; else None), ``surface_tilt``
        (the slice's own surface plane tilt ``[y, x]``, voxels per pixel), ``retilt_max_planes``
        (largest A-line move re-flattening it to ``common_tilt``, :mod:`linumpy.stack.tilt`;
        :data:`ATTENUATION_FIELDS`: the slice's tissue attenuation, measured through the overlap with the next
        slice or the axial step's decay fit, :mod:`linumpy.stack.attenuation`;
        negative: refused, the plane too far off); lists of slice ids ``glitch_corrected``,
        ``motor_slip_corrected`` (a motor depth step off the slice thickness that the
        registration at the thickness replaced, ``motor_slip`` in the record),
        per slice ``motor_slip_blocks`` (when neither whole scan placed a pair in doubt, its
        overlap blocks' vote, :mod:`linumpy.stack.blocks`: ``n_blocks``, ``agreeing`` per step,
        ``adopted``, and the ``motor_step_um``; else None), per slice ``motor_slip_climb`` (when
        neither the whole scans nor the blocks placed it, the two whole scans bracketing its peak at
        the thickness, :func:`~linumpy.stack.slips.climb_to_thickness`: their NCCs, the rise needed
        and the ``motor_step_um``; else None),
        ``motor_fallback`` (a registered slice that kept its motor depth or
        lateral position), ``motor_fallback_kept`` (for each, what it kept: ``depth``,
        ``lateral position`` or ``position``) and ``drift_clamped``; ``depth_mode`` (``joint``: the
        depths solved from the slices' motor and surface depths and the
        registered steps together, :mod:`linumpy.stack.depths`; ``chain``: the
        steps chained), ``depth_prior_sigma_um`` (the standard deviation given
        to the motor and surface depths), per slice ``z_sigma_um`` (standard
        deviation of its depth relative to the first slice under that model)
        and ``z_residual_um`` (registered step minus the step between the
        motor and surface depths), ``z_step_doubted`` (per slice, its
        residual in standard deviations when its registered step was doubted,
        :func:`~linumpy.stack.depths.doubted_step`, else None), ``axial_voxel_um``
        (the registration's axial voxel, None without one); ``excluded_slices`` (ids
        missing between the first and the last); counts ``n_slices``,
        ``n_motor_fallback``, ``n_gaps``; ``max_shift_px``; ``interpolated_slices``
        (absent ids whose depth :mod:`linumpy.stack.interpolate` filled).

    Examples
    --------
    >>> record = {"slice_thickness_um": 100.0, "slices": [
    ...     {"slice_id": 0, "motor_origin_um": [0, 0, 0], "origin_um": [0, 0, 0], "registration": None,
    ...      "glitch_corrected": [], "used_registration_z": False, "used_registration_lateral": False,
    ...      "drift_clamped": False},
    ...     {"slice_id": 2, "motor_origin_um": [200, 0, 0], "origin_um": [200, 0, 0], "registration": None,
    ...      "glitch_corrected": [], "used_registration_z": False, "used_registration_lateral": False,
    ...      "drift_clamped": False}]}
    >>> metrics = stack_metrics(record, 10.0)
    >>> metrics["excluded_slices"], metrics["z_offsets_um"]
    ({'1': 'absent from the stack (excluded, or missing with --allow_gaps); its depth is left at zero'}, [0.0, 0.0])
    """
    slices = record["slices"]
    ids = [int(s["slice_id"]) for s in slices]
    thickness = float(record.get("slice_thickness_um") or 0.0)
    motor = np.array([s["motor_origin_um"] for s in slices], dtype=np.float64).reshape(-1, 3)
    origin = np.array([s["origin_um"] for s in slices], dtype=np.float64).reshape(-1, 3)
    correction = np.diff(origin - motor, axis=0, prepend=(origin - motor)[:1])
    shifts = np.round(correction[:, 1:] / resolution_um, 3)
    depth_steps = np.diff(origin[:, 0], prepend=origin[0, 0])
    id_steps = np.diff(ids, prepend=ids[0])
    z_offsets = np.where(id_steps > 0, depth_steps - thickness * id_steps, 0.0)
    registrations = [s.get("registration") for s in slices]
    fallback = [
        (i, _motor_part_kept(s)) for i, s, r in zip(ids, slices, registrations, strict=True)
        if r is not None and not (s["used_registration_z"] and s["used_registration_lateral"])
    ]
    absent = sorted(set(range(ids[0], ids[-1] + 1)) - set(ids)) if ids else []
    interpolated = list(record.get("interpolated_slices", []))
    return {
        "slice_ids": ids,
        "n_slices": len(ids),
        "shifts_px": shifts.tolist(),
        "max_shift_px": float(np.hypot(shifts[:, 0], shifts[:, 1]).max()) if ids else 0.0,
        "z_offsets_um": np.round(z_offsets, 3).tolist(),
        "overlap_ncc": [r["lateral_confidence"] if r else None for r in registrations],
        "z_confidence": [r["z_confidence"] if r else None for r in registrations],
        **{name: [r.get(key) if r else None for r in registrations] for name, key in SPECKLE_FIELDS.items()},
        "glitch_corrected": [i for i, s in zip(ids, slices, strict=True) if s["glitch_corrected"]],
        "motor_slip_corrected": [i for i, s in zip(ids, slices, strict=True)
                                 if (s.get("motor_slip") or {}).get("adopted") == "thickness"],
        "motor_slip_blocks": [None if not (s.get("motor_slip") or {}).get("blocks") else
                              {**s["motor_slip"]["blocks"], "motor_step_um": s["motor_slip"]["motor_step_um"]}
                              for s in slices],
        "motor_slip_climb": [None if not (s.get("motor_slip") or {}).get("climb") else
                             {**s["motor_slip"]["climb"], "motor_step_um": s["motor_slip"]["motor_step_um"]}
                             for s in slices],
        "lateral_anchor": [s.get("lateral_anchor") for s in slices],
        "lateral_support": [s.get("lateral_support") for s in slices],
        "motor_fallback": [i for i, _ in fallback],
        "motor_fallback_kept": [part for _, part in fallback],
        "n_motor_fallback": len(fallback),
        "drift_clamped": [i for i, s in zip(ids, slices, strict=True) if s["drift_clamped"]],
        "depth_mode": (record.get("depth_placement") or {}).get("mode"),
        "depth_prior_sigma_um": (record.get("depth_placement") or {}).get("prior_sigma_um"),
        "z_sigma_um": [(s.get("depth") or {}).get("sigma_um") for s in slices],
        "z_residual_um": [(s.get("depth") or {}).get("residual_um") for s in slices],
        "z_step_doubted": [(s.get("depth") or {}).get("step_doubted") for s in slices],
        "axial_voxel": record.get("axial_voxel"),
        "axial_voxel_um": next((r["pixel_um"][0] for r in registrations if r and r.get("pixel_um")), None),
        "excluded_slices": {str(i): INTERPOLATED_REASON if i in interpolated else ABSENT_REASON for i in absent},
        "interpolated_slices": interpolated,
        "n_gaps": len(absent),
        "slice_thickness_um": thickness,
        "z_tolerance_um": record.get("z_tolerance_um"),
        "kept_depth_um": [s.get("kept_depth_um") for s in slices],
        "blend_speckle_limited": [bool(s.get("blend_speckle_limited")) for s in slices],
        "blend_averaged_below_um": [(s.get("blend_averaging") or {}).get("below_kept_um") for s in slices],
        "blend_share_last": [(s.get("blend_averaging") or {}).get("share_last") for s in slices],
        "rotation_deg": [(s.get("rotation") or {}).get("angle_deg", 0.0) for s in slices],
        "rotation_mode": [(s.get("rotation") or {}).get("mode") for s in slices],
        "rotation_std_deg": [(s.get("rotation") or {}).get("std_deg") for s in slices],
        "rotation_unapplied_deg": [unapplied_turn(s.get("rotation")) for s in slices],
        "common_tilt": record.get("common_tilt"),
        "surface_tilt": [(s.get("surface_plane") or [None, None, None])[1:] for s in slices],
        "retilt_max_planes": [s.get("retilt_max_planes", 0) for s in slices],
        "boundary_ratio_raw": [s.get("boundary_ratio_raw") for s in slices],
        "boundary_ratio": [s.get("boundary_ratio") for s in slices],
        "boundary_ratio_tissue": [_ratio_tissue(s.get("boundary_ratio_tissue")) for s in slices],
        "gain_top_bottom": [s.get("gain_top_bottom") for s in slices],
        "gain_trend_measured": [s.get("gain_trend_measured") for s in slices],
        "gain_trend_map_level": [s.get("gain_trend_map_level") for s in slices],
        "gain_compensated_level": [s.get("gain_compensated_level") for s in slices],
        "gain_level_source": record.get("gain_level_source"),
        "focus_skipped": [s.get("focus_skipped") for s in slices],
        "lateral_gain_range": [None if s.get("lateral_gain") is None else
                               [s["lateral_gain"]["p5"], s["lateral_gain"]["p95"]] for s in slices],
        "lateral_gain_fallback": [s.get("lateral_gain_fallback") for s in slices],
        "lateral_gain_strength": [s.get("lateral_gain_strength") for s in slices],
        "lateral_gain_confidence": [s.get("lateral_gain_confidence") for s in slices],
        "lateral_gain_partial_fraction": [None if s.get("lateral_gain") is None else
                                          s["lateral_gain"].get("partial_fraction") for s in slices],
        **{name: [(s.get("attenuation") or {}).get(name) for s in slices] for name in ATTENUATION_FIELDS},
    }


def _ratio_tissue(entry: dict | None) -> str | None:
    """``"otsu (14.1x)"``: a slice's ``boundary_ratio_tissue`` record as one QC value (None without a ratio)."""
    if entry is None:
        return None
    separation = entry.get("separation")
    return entry["tissue"] if separation is None else f"{entry['tissue']} ({separation:.1f}x)"
