"""Red flags derived from QC records.

The report raises a flag when a record's metrics cross one of the thresholds
below (names and meanings in ``docs/qc.md``), in addition to the flags the
steps wrote themselves. Every rule reads plain metric values; no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Stitching confidence (0-1) below which a slice is flagged.
MIN_STITCH_CONFIDENCE = 0.5
#: Fraction of tile pairs on the stage model above which a slice is flagged.
MAX_FALLBACK_FRACTION = 0.25
#: Fraction of non-zero voxels below which a slice counts as (nearly) empty.
MIN_NONZERO_FRACTION = 0.01
#: Robust z-score (median/MAD) above which a stack shift is an outlier ...
OUTLIER_Z = 4.0
#: ... provided it also departs from the median by at least this many pixels.
OUTLIER_MIN_PX = 2.0
#: Overlap NCC below which two neighbouring slices are flagged as poorly matched.
MIN_OVERLAP_NCC = 0.2
#: Relative departure of a slice's focus width (the axial correction's fitted model) from the median of the
#: acquisition's slices above which the slice is flagged, besides the robust z-score of :data:`OUTLIER_Z`. The
#: focus belongs to the objective, the same for every slice: widths spread by <= 4% over 30 simulated 8-slice
#: cases and 3 foreign acquisitions; an estimate taken over by tissue in the agarose cells read 10% narrow.
MAX_FOCUS_WIDTH_DEVIATION = 0.06
#: A tile's stated standard error (stitch record, per tile ``sigma_px``, the larger axis) above which a tile placed
#: by overlaps is named in a red flag: issue #10's bar for a textured tile's error. Tiles on the stage model (their
#: sigma is the stage's scatter) and weak tiles (hung on weak links only, mostly empty agarose) are left out: the
#: stitch step's own flag counts them when they make up more than a quarter of the slice.
MAX_TILE_SIGMA_PX = 1.5
#: Own significance of an overlap (stitch record, ``pairs``) from which a tile left on the stage model counts as
#: textured: the estimate's bar of a confident pair (``linumpy.stitching.pair_terms.CONFIDENT_SIGNIFICANCE``).
TEXTURED_SIGNIFICANCE = 2.0
#: Most tiles a flag names (c185 201 slice 2 had 14 such tiles); it counts them all.
MAX_NAMED_TILES = 6
#: Raw frames averaged per B-scan (``n_frames_averaged``, native tiles' ``n_repeat``) below which the report
#: warns: one frame leaves the speckle unaveraged. Foreign acquisitions with one frame: volume NCC .940-.951
#: (audit66's 205 .9405, audit63's 187 .9429, harsh A's ceiling ~.951) against .950-.957 with two frames and
#: well-placed tiles; its speckle moved a pair's peak by 1-2 px along oblique structure at 5-10 of its stated
#: standard errors (audit66).
MIN_FRAMES_AVERAGED = 2


@dataclass(frozen=True, order=True)
class RedFlag:
    """One problem to show at the top of the report.

    ``slice_id`` is None for problems of the whole brain.
    """

    slice_id: int | None
    step: str
    message: str


def record_flags(record: Mapping[str, Any]) -> list[RedFlag]:
    """Return the red flags of one QC record (its own flags plus threshold rules)."""
    step = record["step"]
    slice_id = record.get("slice_id")
    metrics = record.get("metrics", {})
    messages = [str(flag) for flag in record.get("flags", [])]
    messages += _threshold_messages(metrics)
    flags = [RedFlag(slice_id, step, message) for message in messages]
    flags += _stack_flags(step, metrics)
    flags += [RedFlag(sid, step, f"failed: {why}") for sid, why in slice_reasons(metrics.get("failed_slices"))]
    flags += [RedFlag(sid, step, f"excluded: {why}") for sid, why in slice_reasons(metrics.get("excluded_slices"))]
    return flags


def acquisition_flags(records: Sequence[Mapping[str, Any]]) -> list[RedFlag]:
    """Red flags only a comparison across slices shows: a focus estimate unlike the other slices'.

    Among the axial correction's records that fitted the same focus model
    (at least three), a slice whose ``focus_model_width_um`` departs from
    their median by more than :data:`MAX_FOCUS_WIDTH_DEVIATION` of it and by
    more than :data:`OUTLIER_Z` robust standard deviations is flagged: the
    focus belongs to the objective, so one slice's odd width says its
    agarose profile was not the agarose's alone.

    Examples
    --------
    >>> records = [{"step": "axial_corr", "slice_id": i,
    ...             "metrics": {"focus_model": "gaussian", "focus_model_width_um": w}}
    ...            for i, w in enumerate([45.0, 45.2, 44.8, 40.0, 45.1])]
    >>> [(flag.slice_id, flag.message[:30]) for flag in acquisition_flags(records)]
    [(3, 'focus width 40.0 µm, 11% below')]
    """
    widths: dict[str, list[tuple[int, float]]] = {}
    for record in records:
        metrics = record.get("metrics", {})
        width, model = _number(metrics.get("focus_model_width_um")), metrics.get("focus_model")
        if record.get("step") == "axial_corr" and width is not None and isinstance(model, str):
            widths.setdefault(model, []).append((_slice_id(record.get("slice_id")), width))
    flags = []
    for model, found in sorted(widths.items()):
        values = np.array([width for _, width in found])
        median = float(np.median(values))
        for index in outlier_indices(values, min_departure=MAX_FOCUS_WIDTH_DEVIATION * median):
            slice_id, width = found[index]
            flags.append(RedFlag(slice_id, "axial_corr", (
                f"focus width {width:.1f} µm, {100 * abs(width / median - 1):.0f}% "
                f"{'below' if width < median else 'above'} the acquisition's {model} median {median:.1f} µm "
                "(the focus is the objective's, the same for every slice): this slice's agarose profile was not "
                "the agarose's alone")))
    return flags


def acquisition_warnings(records: Sequence[Mapping[str, Any]]) -> list[RedFlag]:
    """Warnings about the whole acquisition, one each for all the slices concerned (the acquisition's settings,
    not a failure of a step): slices imaged with fewer than :data:`MIN_FRAMES_AVERAGED` frames
    (``n_frames_averaged``), and slices whose axial voxel size was assumed (``axial_resolution_source``
    ``"default"``), read from the mosaic grid's records.

    Examples
    --------
    >>> records = [{"step": "mosaic_grid_3d", "slice_id": i, "metrics": {"n_frames_averaged": 1}} for i in (0, 1)]
    >>> [(flag.slice_id, flag.message[:40]) for flag in acquisition_warnings(records)]
    [(None, 'one raw frame per B-scan on slices 0, 1 ')]
    >>> records = [{"step": "mosaic_grid_3d", "slice_id": 3,
    ...             "metrics": {"axial_resolution_source": "default", "axial_resolution_um": 1.5}}]
    >>> [flag.message[:55] for flag in acquisition_warnings(records)]
    ['axial voxel size not given for slices 3: 1.5 um assumed']
    """
    grids = [record for record in records if record.get("step") == "mosaic_grid_3d"]
    single = sorted(_slice_id(record.get("slice_id")) for record in grids
                    if (frames := _number(record.get("metrics", {}).get("n_frames_averaged"))) is not None
                    and frames < MIN_FRAMES_AVERAGED)
    assumed = {_slice_id(record.get("slice_id")): record["metrics"].get("axial_resolution_um") for record in grids
               if record.get("metrics", {}).get("axial_resolution_source") == "default"}
    warnings = []
    if single:
        warnings.append(RedFlag(None, "mosaic_grid_3d", (
            f"one raw frame per B-scan on slices {', '.join(map(str, single))} (n_repeat 1 in the tiles' info.txt): "
            "the speckle is not averaged, so the volume matches the tissue less closely (volume NCC near .94-.95 "
            "on the foreign phantoms against .95-.96 with two frames) and a tile pair along oblique structure can "
            "register 1-2 px off with a confident peak; acquire two frames or more per B-scan where time allows")))
    if assumed:
        warnings.append(RedFlag(None, "mosaic_grid_3d", (
            f"axial voxel size not given for slices {', '.join(map(str, sorted(assumed)))}: "
            f"{'/'.join(sorted({str(v) for v in assumed.values()}))} um assumed (the lab system's; the tiles' "
            "info.txt does not say it): depths, slice thicknesses and attenuation (per mm) scale with it; set the "
            "axial_resolution param (or acquisition.json's axial_resolution_um) if this system differs")))
    return warnings


def open_loop_warnings(records: Sequence[Mapping[str, Any]]) -> list[RedFlag]:
    """Warnings, one per slice, naming the tiles its stitch placed through a loop of pairs that does not close
    (:func:`open_loop_tiles`).

    A warning, not a red flag: such a loop says that one of its pairs erred, not which, and the tiles behind it
    were off in 7 of the 13 slices it named on the foreign ``c185`` runs and the stitching matrix (session
    link209: seed 209 slice 0, 5 tiles 3.2-3.3 px off, silent before; held-out seed 213, two slices named with
    every tile within 0.93 px).

    Examples
    --------
    >>> records = [{"step": "stitch_3d", "slice_id": 0, "metrics": {"tiles": {"(1, 0)": {"open_loop_px": 3.53}}}}]
    >>> [(flag.slice_id, flag.message[:50]) for flag in open_loop_warnings(records)]
    [(0, '1 tile(s) placed through a loop of pairs that miss')]
    """
    warnings = []
    for record in records:
        looped = open_loop_tiles(record.get("metrics", {}).get("tiles")) if record.get("step") == "stitch_3d" else []
        if not looped:
            continue
        named = _named_tiles([tile for tile, _ in looped])
        warnings.append(RedFlag(record.get("slice_id"), "stitch_3d", (
            f"{len(looped)} tile(s) placed through a loop of pairs that misses by "
            f"{max(miss for _, miss in looped):.1f} px ({named}): a pair of the loop erred and which is not "
            "known, so they may lie off by up to that; check the seams around them in the slice's image")))
    return warnings


def _threshold_messages(metrics: Mapping[str, Any]) -> list[str]:
    messages = []
    confidence = _number(metrics.get("confidence"))
    if confidence is not None and confidence < MIN_STITCH_CONFIDENCE:
        messages.append(f"low stitching confidence {confidence:.2f} (< {MIN_STITCH_CONFIDENCE})")
    n_pairs = _number(metrics.get("n_pairs"))
    n_fallback = _number(metrics.get("n_fallback_pairs"))
    if n_pairs and n_fallback is not None and n_fallback / n_pairs > MAX_FALLBACK_FRACTION:
        messages.append(f"{n_fallback:.0f}/{n_pairs:.0f} tile pairs fell back to the stage model")
    uncertain = uncertain_tiles(metrics.get("tiles"))
    if uncertain:
        named = _named_tiles([f"{tile} {sigma:.2f} px" for tile, sigma in uncertain])
        messages.append(f"{len(uncertain)} tile(s) placed by overlaps with a standard error above the "
                        f"{MAX_TILE_SIGMA_PX} px tile bar ({named}): their overlaps do not pin them down")
    staged = textured_stage_tiles(metrics.get("tiles"), metrics.get("pairs"))
    if staged:
        named = _named_tiles([f"{tile} {sigma:.1f} px" for tile, sigma in staged])
        messages.append(f"{len(staged)} textured tile(s) left on the stage model, its scatter above the "
                        f"{MAX_TILE_SIGMA_PX} px tile bar ({named}): an overlap of significance "
                        f">= {TEXTURED_SIGNIFICANCE:g} was measured but no placement by overlaps was accepted")
    nonzero = _number(metrics.get("nonzero_fraction"))
    if nonzero is not None and nonzero == 0:
        messages.append("empty: every voxel is zero")
    elif nonzero is not None and nonzero < MIN_NONZERO_FRACTION:
        messages.append(f"nearly empty: {100 * nonzero:.2f}% non-zero voxels")
    return messages


def _named_tiles(names: Sequence[str]) -> str:
    """The first :data:`MAX_NAMED_TILES` of ``names``, comma-separated, and how many more there are."""
    shown = ", ".join(names[:MAX_NAMED_TILES])
    return shown + (f" and {len(names) - MAX_NAMED_TILES} more" if len(names) > MAX_NAMED_TILES else "")


def uncertain_tiles(tiles: Any) -> list[tuple[str, float]]:
    """The tiles of a stitch record's ``tiles`` placed by overlaps, not weak, whose ``sigma_px`` exceeds
    :data:`MAX_TILE_SIGMA_PX`, as ``(tile, sigma)`` in the record's order; ``[]`` when there is no such field.

    Examples
    --------
    >>> uncertain_tiles({"(2, 2)": {"source": "pairs", "weak": False, "sigma_px": 7.16},
    ...                  "(0, 4)": {"source": "stage", "weak": False, "sigma_px": 4.1},
    ...                  "(4, 4)": {"source": "pairs", "weak": True, "sigma_px": 2.3},
    ...                  "(1, 1)": {"source": "pairs", "weak": False, "sigma_px": 0.4}})
    [('(2, 2)', 7.16)]
    """
    if not isinstance(tiles, Mapping):
        return []
    found = []
    for tile, record in tiles.items():
        sigma = _number(record.get("sigma_px")) if isinstance(record, Mapping) else None
        if sigma is not None and sigma > MAX_TILE_SIGMA_PX and record.get("source") == "pairs" \
                and not record.get("weak"):
            found.append((str(tile), sigma))
    return found


def textured_stage_tiles(tiles: Any, pairs: Any) -> list[tuple[str, float]]:
    """The tiles of a stitch record's ``tiles`` left on the stage model (``source`` ``stage``) whose ``sigma_px``
    (the stage's scatter on the slice) exceeds :data:`MAX_TILE_SIGMA_PX` and of which an overlap in ``pairs``
    reached :data:`TEXTURED_SIGNIFICANCE`, as ``(tile, sigma)`` in the record's order; ``[]`` without those fields.

    Such a tile is not empty agarose (its overlap was measured with confidence) yet lies where the stage put
    it: foreign ``c185`` seed 209 slice 2, (0, 3), 8.5 px off, its overlap with (1, 3) of significance 2.74
    refused as weak outside any loop; seed 207 slice 3, (0, 0) and (1, 0) (a pair of significance 20.9 between
    them), put on the stage as a weakly attached piece (``weak_piece_to_stage``), 6.4 and 9.1 px off. Both were
    silent while the stage tiles made up less than a quarter of the slice (session link209).

    Examples
    --------
    >>> tiles = {"(0, 3)": {"source": "stage", "sigma_px": 4.67}, "(3, 3)": {"source": "stage", "sigma_px": 4.67},
    ...          "(1, 3)": {"source": "pairs", "sigma_px": 0.37}}
    >>> pairs = {"(0, 3)-(1, 3)": {"significance": 2.74}, "(2, 3)-(3, 3)": {"significance": 0.4}}
    >>> textured_stage_tiles(tiles, pairs)
    [('(0, 3)', 4.67)]
    """
    if not isinstance(tiles, Mapping) or not isinstance(pairs, Mapping):
        return []
    textured = {tile for key, pair in pairs.items() if isinstance(pair, Mapping)
                and (significance := _number(pair.get("significance"))) is not None
                and significance >= TEXTURED_SIGNIFICANCE for tile in _pair_tiles(str(key))}
    return [(str(tile), sigma) for tile, record in tiles.items() if isinstance(record, Mapping)
            and record.get("source") == "stage" and str(tile) in textured
            and (sigma := _number(record.get("sigma_px"))) is not None and sigma > MAX_TILE_SIGMA_PX]


def _pair_tiles(key: str) -> tuple[str, ...]:
    """The two tiles ``"(r, c)"`` of a stitch record's pair key ``"(r, c)-(r, c)"``."""
    first, _, second = key.partition(")-(")
    return (first + ")", "(" + second) if second else ()


def open_loop_tiles(tiles: Any) -> list[tuple[str, float]]:
    """The tiles of a stitch record's ``tiles`` placed through a loop of kept pairs that does not close, as
    ``(tile, miss)`` in the record's order (``open_loop_px``, pixels); ``[]`` when there is no such field.

    The estimate leaves such a loop when no pair of it is clearly the one that erred (session link209:
    foreign ``c185`` seed 209, slice 0, a piece of 5 tiles 3.2-3.3 px off behind a loop missing by 3.5 px,
    with no other sign; the stitching matrix's ``stage error`` seed 110, a tile 7.8 px off behind one
    missing by 2.5 px).

    Examples
    --------
    >>> open_loop_tiles({"(1, 0)": {"source": "pairs", "open_loop_px": 3.53},
    ...                  "(1, 1)": {"source": "pairs", "open_loop_px": None}})
    [('(1, 0)', 3.53)]
    """
    if not isinstance(tiles, Mapping):
        return []
    return [(str(tile), miss) for tile, record in tiles.items()
            if isinstance(record, Mapping) and (miss := _number(record.get("open_loop_px"))) is not None]


def _stack_flags(step: str, metrics: Mapping[str, Any]) -> list[RedFlag]:
    ids = metrics.get("slice_ids")
    if not isinstance(ids, list):
        return []
    flags = []
    shifts = metrics.get("shifts_px")
    if isinstance(shifts, list) and len(shifts) == len(ids):
        magnitudes = np.hypot(*np.asarray(shifts, dtype=np.float64).reshape(-1, 2).T)
        for index in outlier_indices(magnitudes):
            flags.append(RedFlag(_slice_id(ids[index]), step, f"outlier slice shift {magnitudes[index]:.1f} px"))
    ncc = metrics.get("overlap_ncc")
    if isinstance(ncc, list) and len(ncc) == len(ids):
        for slice_id, value in zip(ids, ncc, strict=True):
            if value is not None and value < MIN_OVERLAP_NCC:
                flags.append(RedFlag(_slice_id(slice_id), step, f"poor overlap with previous slice (NCC {value:.2f})"))
    return flags


def outlier_indices(values: Sequence[float], min_departure: float = OUTLIER_MIN_PX) -> list[int]:
    """Indices of values far from the median (robust z-score above :data:`OUTLIER_Z` and ``min_departure``).

    NaN values are ignored.

    Examples
    --------
    >>> outlier_indices([1.0, 1.2, 0.9, 1.1, 9.0])
    [4]
    """
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    if finite.sum() < 3:
        return []
    median = np.median(values[finite])
    deviation = np.abs(values - median)
    sigma = 1.4826 * np.median(deviation[finite])
    with np.errstate(divide="ignore", invalid="ignore"):
        robust_z = np.where(sigma > 0, deviation / sigma, np.inf)
    outlying = finite & (deviation >= min_departure) & (robust_z > OUTLIER_Z)
    return [int(index) for index in np.flatnonzero(outlying)]


def slice_reasons(entries: Any) -> list[tuple[int, str]]:
    """Normalise a ``failed_slices``/``excluded_slices`` metric to ``[(slice_id, reason)]``.

    Accepts a dict ``{slice_id: reason}``, a list of ids, or a list of
    ``{"slice_id": ..., "reason": ...}`` dicts.

    Raises
    ------
    ValueError
        If an entry is not one of these spellings (e.g. a slice id that is not
        a whole number), naming the entry.

    Examples
    --------
    >>> slice_reasons({"3": "no tiles"})
    [(3, 'no tiles')]
    >>> slice_reasons([5])
    [(5, 'no reason given')]
    """
    if not entries:
        return []
    if isinstance(entries, Mapping):
        pairs = [(_slice_id(key), str(value)) for key, value in entries.items()]
    elif isinstance(entries, list):
        pairs = []
        for entry in entries:
            if isinstance(entry, Mapping):
                pairs.append((_slice_id(entry.get("slice_id")), str(entry.get("reason", "no reason given"))))
            else:
                pairs.append((_slice_id(entry), "no reason given"))
    else:
        raise ValueError(f"expected a list or a mapping of slice ids, got {entries!r}")
    return sorted(pairs)


def _slice_id(value: Any) -> int:
    """A slice id from an int or a string of digits; ValueError otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise ValueError(f"{value!r} is not a slice id (a whole number)")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)
