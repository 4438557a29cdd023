"""Tissue attenuation of each slice, measured through its overlap with the next slice.

The stack knows where slice ``k + 1`` lies in slice ``k`` (the placement
record's origins); the axial correction wrote, beside each slice, its signal
before attenuation compensation (flattened as the slice, binned laterally:
:func:`linumpy.intensity.axial.uncompensated_path`). The ratio of the two on
their overlap is the light lost through the slab between the cuts
(:func:`linumpy.intensity.transmission.overlap_attenuation`), whatever the
reflectivity does with depth, where the axial step's per-A-line decay fit
reads a reflectivity change as attenuation. The last slice (or one followed
by a gap) has no slice below: it keeps the decay fit (flagged before a gap).

A slice images tissue below the next cut too (its useful depth is longer
than the step): its tissue attenuation is taken over the whole depth it
images, its own slab's overlap estimate and, below the next cut, the next
slab's, each weighted by the depth it covers (:func:`imaged_range_attenuation`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from linumpy.errors import InputError
from linumpy.intensity.transmission import SIGMA_PX, OverlapAttenuation, overlap_attenuation
from linumpy.io.naming import parse_slice_id
from linumpy.io.zarr import read_omezarr, read_omezarr_info

#: Planes of the next slice used (below its top ``SKIP``, the cut face), as the stack's gains.
SKIP, PLANES = 2, 8
#: Sources of a slice's attenuation.
SOURCE_OVERLAP = "overlap"
SOURCE_DECAY_FIT = "decay fit (no slice below)"
#: An estimate over less than this fraction of the overlap's pixels is flagged as weakly supported.
MIN_SUPPORTED_FRACTION = 0.2


def uncompensated_by_id(paths: Sequence[str | os.PathLike]) -> dict[int, Path]:
    """Map slice id -> ``slice_zNN_axial_corr_uncompensated.ome.zarr`` path."""
    found: dict[int, Path] = {}
    for name in paths:
        try:
            found[parse_slice_id(Path(name).name)] = Path(name)
        except ValueError:
            raise InputError(f"{name}: no slice id in the name; expected "
                             "slice_zNN_axial_corr_uncompensated.ome.zarr") from None
    return found


def slice_attenuations(record: Mapping[str, Any], uncompensated: Mapping[int, Path]) -> list[dict[str, Any]]:
    """Per slice of the placement record: its tissue attenuation and where it comes from.

    Parameters
    ----------
    record : mapping
        ``StackPlan.record`` (``slices``: ``slice_id`` and ``origin_um`` of each slice's plane 0; with
        ``axial_voxel``, the files' planes are read at its ``used_um``, :mod:`linumpy.stack.voxel`).
    uncompensated : mapping of int to Path
        Each slice's uncompensated signal (:func:`linumpy.intensity.axial.uncompensated_path`).

    Returns
    -------
    list of dict
        Aligned with ``record["slices"]``: ``attenuation_source`` (:data:`SOURCE_OVERLAP` when the
        next slice id is present, else :data:`SOURCE_DECAY_FIT`), ``tissue_attenuation_per_mm``
        (over the depth the slice images, :func:`imaged_range_attenuation`, else the axial step's decay
        fit), ``attenuation_next_slab_weight`` (the weight the next slab's overlap estimate got in it: 0 when
        the next slice has none, None for a decay fit), the
        :meth:`~linumpy.intensity.transmission.OverlapAttenuation.qc` fields (None without an overlap;
        ``overlap_attenuation_per_mm`` is the slice's own slab; pixels are binned pixels) and ``attenuation_flags``.
    """
    slices = record["slices"]
    axial_um = (record.get("axial_voxel") or {}).get("used_um")  # the stack's planes read at another voxel
    missing = [s["slice_id"] for s in slices if s["slice_id"] not in uncompensated]
    if missing:
        raise InputError(f"no uncompensated signal (--uncompensated) for slice(s) {missing}")
    out: list[dict[str, Any]] = []
    below_um: dict[int, float] = {}  # per slice with an overlap: the depth it images below the next cut
    for entry, following in zip(slices, [*slices[1:], None], strict=True):
        path = uncompensated[entry["slice_id"]]
        if following is None or following["slice_id"] != entry["slice_id"] + 1:
            decay = read_omezarr_info(path).attributes.get("decay_fit_tissue_attenuation_per_mm")
            out.append({"attenuation_source": SOURCE_DECAY_FIT, "tissue_attenuation_per_mm": decay,
                        "overlap_attenuation_per_mm": None, "overlap_attenuation_pixels": None,
                        "overlap_attenuation_supported_fraction": None, "overlap_attenuation_path_um": None,
                        "attenuation_next_slab_weight": None,
                        # the last slice always lacks one (its source says so); a gap below a slice is flagged
                        "attenuation_flags": [] if following is None else
                        ["no slice below: the axial step's decay fit kept"]})
            continue
        step_um = np.subtract(following["origin_um"], entry["origin_um"])
        estimate = _pair_estimate(path, uncompensated[following["slice_id"]], step_um, axial_um)
        flags = list(estimate.flags)
        if estimate.tissue_mean_per_mm is not None and estimate.supported_fraction < MIN_SUPPORTED_FRACTION:
            flags.append(f"overlap attenuation weakly supported: {estimate.supported_fraction:.2f} of the "
                         f"overlap (< {MIN_SUPPORTED_FRACTION})")
        below_um[len(out)] = _depth_um(path, axial_um) - float(step_um[0])
        out.append({"attenuation_source": SOURCE_OVERLAP, **estimate.qc(), "attenuation_flags": flags})
    for index, below in below_um.items():
        entry = out[index]
        deeper = out[index + 1]["overlap_attenuation_per_mm"] if index + 1 < len(out) else None
        value, weight = imaged_range_attenuation(entry["overlap_attenuation_per_mm"],
                                                 entry["overlap_attenuation_path_um"], below, deeper)
        entry["tissue_attenuation_per_mm"] = None if value is None else round(value, 4)
        entry["attenuation_next_slab_weight"] = round(weight, 4)
    return out


def imaged_range_attenuation(own: float | None, own_path_um: float, below_um: float,
                             deeper: float | None) -> tuple[float | None, float]:
    """A slice's tissue attenuation over the depth it images, from its own slab's estimate and the next slab's.

    Slice ``k``'s overlap estimate is the mean attenuation of its slab, from its
    tissue top to the next cut (``own_path_um`` deep on average); the slice
    images ``below_um`` more below that cut, tissue of slab ``k + 1``, which the
    next slice's overlap estimate measures (``deeper``). The mean over the
    imaged depth weights each by the depth it covers. On the simulator's
    matrix the slab alone missed the truth of the imaged depth by up to 9%
    (``harsh`` 0-2, with the true attenuations: docs/intensity.md, *Where the
    overlap attenuation errs*).

    Parameters
    ----------
    own : float or None
        The slice's own slab (mm^-1); None: no estimate (returned as is).
    own_path_um : float
        Mean tissue path of that slab.
    below_um : float
        Depth the slice images below the next cut (<= 0: none).
    deeper : float or None
        The next slab's estimate; None (the next slice has none, e.g. the last
        slice's decay fit, which is not mixed in): the own slab alone.

    Returns
    -------
    value : float or None
        The depth-weighted mean.
    weight : float
        The weight of ``deeper`` in it (0 without one).

    Examples
    --------
    >>> imaged_range_attenuation(4.0, 60.0, 30.0, 7.0)
    (5.0, 0.3333333333333333)
    >>> imaged_range_attenuation(4.0, 60.0, 30.0, None)
    (4.0, 0.0)
    """
    if own is None or deeper is None or below_um <= 0 or own_path_um <= 0:
        return own, 0.0
    weight = below_um / (below_um + own_path_um)
    return (1 - weight) * own + weight * deeper, weight


def _depth_um(path: Path, axial_um: float | None = None) -> float:
    """Depth a file images below its (flattened) cut, um (its planes at ``axial_um`` when given)."""
    info = read_omezarr_info(path)
    return float(info.shape[0] * (info.resolution[0] * 1000 if axial_um is None else axial_um))


def _pair_estimate(previous_path: Path, following_path: Path, step_um: np.ndarray,
                   axial_um: float | None = None) -> OverlapAttenuation:
    """:func:`overlap_attenuation` of slice ``k`` (``previous_path``) over the next slice placed ``step_um`` below
    (the files' planes read at ``axial_um`` when given: the stack's, :mod:`linumpy.stack.voxel`)."""
    previous, scale_mm = read_omezarr(previous_path)
    following, _ = read_omezarr(following_path)
    attributes = read_omezarr_info(previous_path).attributes
    binning = int(attributes.get("lateral_binning", 1))
    voxel_um = np.asarray(scale_mm) * 1000
    if axial_um is not None:
        voxel_um[0] = axial_um
    step_px = float(step_um[0] / voxel_um[0])
    offset = np.rint(step_um[1:] / voxel_um[1:]).astype(int)
    start = int(round(step_px)) + SKIP
    depth = max(0, min(PLANES, previous.shape[0] - start, following.shape[0] - SKIP))
    lo = np.maximum(0, offset)
    hi = np.minimum(previous.shape[1:], offset + np.asarray(following.shape[1:]))
    window = tuple(slice(a, max(a, b)) for a, b in zip(lo, hi, strict=True))
    shifted = tuple(slice(w.start - o, w.stop - o) for w, o in zip(window, offset, strict=True))
    upper = np.asarray(previous[(slice(start, start + depth), *window)], np.float64)
    lower = np.asarray(following[(slice(SKIP, SKIP + depth), *shifted)], np.float64)
    top = _tissue_top(np.asarray(previous[(slice(0, start), *window)])) - int(attributes.get("surface_depth_px", 0))
    return overlap_attenuation(upper, lower, step_px, voxel_um[0] / 1000, top, sigma_px=SIGMA_PX / binning)


def _tissue_top(planes: np.ndarray) -> np.ndarray:
    """First plane holding signal per A-line (the file is 0 above the tissue top), NaN where none."""
    holds = planes > 0
    return np.where(holds.any(axis=0), holds.argmax(axis=0), np.nan)
