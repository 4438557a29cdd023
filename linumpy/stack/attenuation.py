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

Each file was divided by its own slice's focus estimate; the ratio assumes
one system gain for both slices, so each estimate's error at the two
overlap depths (deep in slice ``k``, shallow in slice ``k + 1``) went
straight into it. The instrument's focus is the same for every slice (one
profile per input depth): both overlaps are put back on the acquisition's
common profile, the median of the slices' own (:func:`common_focus`).
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
#: Fewest slices with a focus profile for a common one (the median of two is their mean).
MIN_FOCUS_SLICES = 3


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
    common, focus_source = common_focus([read_omezarr_info(uncompensated[s["slice_id"]]).attributes for s in slices])
    out = []
    for entry, following in zip(slices, [*slices[1:], None], strict=True):
        path = uncompensated[entry["slice_id"]]
        if following is None or following["slice_id"] != entry["slice_id"] + 1:
            decay = read_omezarr_info(path).attributes.get("decay_fit_tissue_attenuation_per_mm")
            out.append({"attenuation_source": SOURCE_DECAY_FIT, "tissue_attenuation_per_mm": decay,
                        "overlap_attenuation_per_mm": None, "overlap_attenuation_pixels": None,
                        "overlap_attenuation_supported_fraction": None, "overlap_attenuation_path_um": None,
                        "overlap_attenuation_tissue": None, "overlap_attenuation_focus": None,
                        # the last slice always lacks one (its source says so); a gap below a slice is flagged
                        "attenuation_flags": [] if following is None else
                        ["no slice below: the axial step's decay fit kept"]})
            continue
        step_um = np.subtract(following["origin_um"], entry["origin_um"])
        estimate = _pair_estimate(path, uncompensated[following["slice_id"]], step_um, common)
        flags = list(estimate.flags)
        if common is None:
            flags.append(f"overlap attenuation on each slice's own focus profile: {focus_source}")
        if estimate.tissue_mean_per_mm is not None and estimate.supported_fraction < MIN_SUPPORTED_FRACTION:
            flags.append(f"overlap attenuation weakly supported: {estimate.supported_fraction:.2f} of the "
                         f"overlap (< {MIN_SUPPORTED_FRACTION})")
        out.append({"attenuation_source": SOURCE_OVERLAP, "tissue_attenuation_per_mm": estimate.qc()[
            "overlap_attenuation_per_mm"], **estimate.qc(), "overlap_attenuation_focus": focus_source,
            "attenuation_flags": flags})
    return out


def common_focus(attributes: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray | None, str]:
    """The acquisition's focus profile, from the slices' own, and what was used (a QC field).

    Parameters
    ----------
    attributes : sequence of mapping
        Each slice's uncompensated file attributes: ``focus_profile`` (what the
        axial step divided its signal by, one value per input depth) and
        ``surface_plane_px`` (how its A-lines were shifted).

    Returns
    -------
    profile : ndarray or None
        Per input depth, the median over the slices of their profiles, each
        scaled to its own median (a profile's scale cancels in the overlap
        ratio). None when fewer than :data:`MIN_FOCUS_SLICES` slices have a
        profile and a surface plane, or when the profiles' lengths differ (the
        slices do not share one input depth range): each slice's own is then kept.
    source : str
        ``"common: median of N slices"``, or ``"own: ..."`` saying why.

    Examples
    --------
    >>> z = np.arange(60.0)
    >>> own = [{"focus_profile": list(1 / (1 + ((z - 30) / w) ** 2)), "surface_plane_px": [10.0, 0.0, 0.0]}
    ...        for w in (16, 18, 20)]
    >>> profile, source = common_focus(own)
    >>> source, bool(np.allclose(profile / np.median(profile), np.array(own[1]["focus_profile"]) /
    ...                          np.median(own[1]["focus_profile"]), rtol=0.05))
    ('common: median of 3 slices', True)
    >>> common_focus(own[:2])[1]
    'own: 2 slices with a focus profile and a surface plane (< 3)'
    """
    profiles = [np.asarray(a["focus_profile"], np.float64) for a in attributes
                if a.get("focus_profile") is not None and a.get("surface_plane_px") is not None]
    if len(profiles) < MIN_FOCUS_SLICES:
        return None, (f"own: {len(profiles)} slices with a focus profile and a surface plane "
                      f"(< {MIN_FOCUS_SLICES})")
    if len({p.size for p in profiles}) > 1:
        return None, f"own: focus profiles of different lengths {sorted({p.size for p in profiles})}"
    scaled = np.stack([p / np.median(p) for p in profiles])
    return np.median(scaled, axis=0), f"common: median of {len(profiles)} slices"


def _pair_estimate(previous_path: Path, following_path: Path, step_um: np.ndarray,
                   common: np.ndarray | None = None) -> OverlapAttenuation:
    """:func:`overlap_attenuation` of slice ``k`` (``previous_path``) over the next slice placed ``step_um`` below,
    both on the ``common`` focus profile when given (:func:`common_focus`)."""
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
    if common is not None:
        upper = refocused(upper, start, window, attributes, common)
        lower = refocused(lower, SKIP, shifted, read_omezarr_info(following_path).attributes, common)
    top = _tissue_top(np.asarray(previous[(slice(0, start), *window)])) - int(attributes.get("surface_depth_px", 0))
    return overlap_attenuation(upper, lower, step_px, voxel_um[0] / 1000, top, sigma_px=SIGMA_PX / binning)


def _tissue_top(planes: np.ndarray) -> np.ndarray:
    """First plane holding signal per A-line (the file is 0 above the tissue top), NaN where none."""
    holds = planes > 0
    return np.where(holds.any(axis=0), holds.argmax(axis=0), np.nan)


def refocused(planes: np.ndarray, first: int, window: tuple[slice, slice], attributes: Mapping[str, Any],
               common: np.ndarray) -> np.ndarray:
    """``planes`` (output planes ``first...`` of a binned file on its bins ``window``) divided by ``common``
    instead of the slice's own focus profile.

    Output plane ``d`` of an A-line at ``(y, x)`` is input depth ``d + rint(P(y, x)) - surface_depth_px``
    (``P`` the slice's surface plane, as the axial step shifted it), taken at each bin's centre.
    """
    own = np.asarray(attributes["focus_profile"], np.float64)
    binning = int(attributes.get("lateral_binning", 1))
    a, b, c = attributes["surface_plane_px"]
    y = (np.arange(window[0].start, window[0].stop) + 0.5) * binning - 0.5
    x = (np.arange(window[1].start, window[1].stop) + 0.5) * binning - 0.5
    shift = np.rint(a + b * y[:, None] + c * x[None, :]) - int(attributes.get("surface_depth_px", 0))
    depth = np.arange(first, first + planes.shape[0])[:, None, None] + shift[None]
    return planes * (own / common)[np.clip(depth, 0, own.size - 1).astype(np.int64)]
