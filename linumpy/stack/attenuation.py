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
        ``StackPlan.record`` (``slices``: ``slice_id`` and ``origin_um`` of each slice's plane 0).
    uncompensated : mapping of int to Path
        Each slice's uncompensated signal (:func:`linumpy.intensity.axial.uncompensated_path`).

    Returns
    -------
    list of dict
        Aligned with ``record["slices"]``: ``attenuation_source`` (:data:`SOURCE_OVERLAP` when the
        next slice id is present, else :data:`SOURCE_DECAY_FIT`), ``tissue_attenuation_per_mm``
        (the overlap's tissue mean, else the axial step's decay fit), the
        :meth:`~linumpy.intensity.transmission.OverlapAttenuation.qc` fields (None without an overlap;
        pixels are binned pixels) and ``attenuation_flags``.
    """
    slices = record["slices"]
    missing = [s["slice_id"] for s in slices if s["slice_id"] not in uncompensated]
    if missing:
        raise InputError(f"no uncompensated signal (--uncompensated) for slice(s) {missing}")
    out = []
    for entry, following in zip(slices, [*slices[1:], None], strict=True):
        path = uncompensated[entry["slice_id"]]
        if following is None or following["slice_id"] != entry["slice_id"] + 1:
            decay = read_omezarr_info(path).attributes.get("decay_fit_tissue_attenuation_per_mm")
            out.append({"attenuation_source": SOURCE_DECAY_FIT, "tissue_attenuation_per_mm": decay,
                        "overlap_attenuation_per_mm": None, "overlap_attenuation_pixels": None,
                        "overlap_attenuation_supported_fraction": None, "overlap_attenuation_path_um": None,
                        # the last slice always lacks one (its source says so); a gap below a slice is flagged
                        "attenuation_flags": [] if following is None else
                        ["no slice below: the axial step's decay fit kept"]})
            continue
        step_um = np.subtract(following["origin_um"], entry["origin_um"])
        estimate = _pair_estimate(path, uncompensated[following["slice_id"]], step_um)
        flags = list(estimate.flags)
        if estimate.tissue_mean_per_mm is not None and estimate.supported_fraction < MIN_SUPPORTED_FRACTION:
            flags.append(f"overlap attenuation weakly supported: {estimate.supported_fraction:.2f} of the "
                         f"overlap (< {MIN_SUPPORTED_FRACTION})")
        out.append({"attenuation_source": SOURCE_OVERLAP, "tissue_attenuation_per_mm": estimate.qc()[
            "overlap_attenuation_per_mm"], **estimate.qc(), "attenuation_flags": flags})
    return out


def _pair_estimate(previous_path: Path, following_path: Path, step_um: np.ndarray) -> OverlapAttenuation:
    """:func:`overlap_attenuation` of slice ``k`` (``previous_path``) over the next slice placed ``step_um`` below."""
    previous, scale_mm = read_omezarr(previous_path)
    following, _ = read_omezarr(following_path)
    attributes = read_omezarr_info(previous_path).attributes
    binning = int(attributes.get("lateral_binning", 1))
    voxel_um = np.asarray(scale_mm) * 1000
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
