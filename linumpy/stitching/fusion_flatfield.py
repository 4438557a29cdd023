"""The flat field divided out of the tiles as they are fused (``--flatfield auto``).

Registration divides its own flat field out of the projections only
(:mod:`linumpy.stitching.flatfield`). At fusion the volume is corrected
tile by tile, every depth alike, with a field fitted for that purpose:

- on the tiles' projections **minus the noise floor**: the OCT records
  ``V(y, x) * signal + noise``, and the noise is not vignetted. Dividing the
  whole recording by ``V`` would lift the noise at the tile corners by up to
  ``1 / V``, which the axial step (one noise floor per slice, subtracted
  before its attenuation compensation) would then amplify with depth. Here
  ``out = floor + (in - floor) / V``: the signal is flattened, the noise keeps
  its level;
- at the **placed** tile offsets (the rounded positions the fusion uses), so
  that the overlaps compare the same tissue, not tissue shifted by the stage
  error;
- on the overlap samples where both tiles hold signal (smoothed projection
  above the floor by :data:`MIN_SIGNAL_FRACTION` of the mosaic's 90th
  percentile): agarose and empty overlaps, where the log ratio is noise,
  would pull the fit towards no vignetting.

The noise floor is the median over the tiles of each tile's least plane
mean (the planes above the cut record noise only). The field is applied only
when it is supported, plausible and not flat within its noise
(:func:`fusion_flat_field`). Where the overlaps leave a direction unmeasured
(a one-row strip has no column pair), the field is read on the tiles that
hold agarose and no tissue instead (:mod:`linumpy.stitching.agarose_flatfield`;
the QC record's ``source`` says which); otherwise the fusion leaves the tiles as they
are and says why in the QC record.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
import dataclasses
from dataclasses import dataclass

import numpy as np

from linumpy.stitching.agarose_flatfield import agarose_flat_field
from linumpy.stitching.blend import placement_origins
from linumpy.stitching.pair_terms import DIRECTIONS, neighbour_pairs
from linumpy.stitching.flatfield import OverlapLevels, fit_flat_field, overlap_levels
from linumpy.stitching.global_solve import TileIndex

logger = logging.getLogger(__name__)

#: Overlap samples used: smoothed projection above the floor by this fraction of the mosaic's 90th percentile.
MIN_SIGNAL_FRACTION = 0.1
#: A pair supports the fit with at least this many samples (every 2nd pixel per axis).
MIN_PAIR_SAMPLES = 50
#: The fit needs this many supported pairs in each direction (rows constrain ``x``, columns ``y``).
MIN_PAIRS_PER_DIRECTION = 2
#: The start of the status of a fit refused for want of pairs in a direction (the agarose tiles are tried then).
WEAKLY_SUPPORTED = "not applied: weakly supported"
#: A field outside ``[1 / MAX_GAIN, MAX_GAIN]`` of its mean is refused (not vignetting).
MAX_GAIN = 3.0
#: A field whose max / min is below ``1 + MIN_VIGNETTING`` is not applied: no vignetting to remove, only the
#: fit's noise to add (a mosaic without vignetting fits 0.999-1.001).
MIN_VIGNETTING = 0.02


@dataclass(frozen=True)
class FusionFlatField:
    """What the fusion divides out of every tile, and why.

    Attributes
    ----------
    status : str
        ``"applied"``, ``"off"`` (not asked for) or ``"not applied: <reason>"``.
    field : np.ndarray or None
        ``(y, x)`` flat field of a tile, mean 1, when applied.
    noise_floor : float or None
        Level left in place (the unvignetted noise); None when not estimated.
    support : dict
        What the estimate rests on (see :meth:`qc_fields`).
    """

    status: str
    field: np.ndarray | None = None
    noise_floor: float | None = None
    support: dict = dataclasses.field(default_factory=dict)

    @property
    def applied(self) -> bool:
        """Whether a field is divided out."""
        return self.field is not None

    def correct_into(self, data: np.ndarray, part: tuple[slice, slice], out: np.ndarray) -> None:
        """Write ``floor + (data - floor) / field`` for the ``(y, x)`` ``part`` of a tile into ``out``.

        ``data`` is ``(z, h, w)``; ``out`` is a float32 array of its shape, or ``data`` itself (corrected in
        place). Without a field, ``data`` is copied into ``out`` (cast to float32).
        """
        if self.field is None:
            if out is not data:
                out[...] = data
            return
        floor = np.float32(self.noise_floor)
        np.subtract(data, floor, out=out, dtype=np.float32)  # data cast to float32 first: no copy of it needed
        out /= self.field[part]
        out += floor

    def qc_fields(self) -> dict:
        """The stitch QC record's ``fusion_flatfield`` entry: status, floor, support, applied field's range."""
        fields = {"status": self.status, **self.support}
        if self.noise_floor is not None:
            fields["noise_floor"] = round(self.noise_floor, 6)
        if self.field is not None:
            fields["field_min"] = round(float(self.field.min()), 4)
            fields["field_max"] = round(float(self.field.max()), 4)
        return fields


def noise_floor(least_plane_means: Mapping[TileIndex, float]) -> float:
    """Median over the tiles of each tile's least plane mean (``tile -> least plane mean``)."""
    return float(np.median(list(least_plane_means.values())))


@dataclass(frozen=True)
class SignalLevels:
    """What the fusion flat field's fit needs of the tiles' projections, whatever their positions.

    Attributes
    ----------
    above : dict
        ``tile -> `` float64 projection minus the noise floor.
    floor : float
        The noise floor (:func:`noise_floor`).
    min_level : float
        The signal level an overlap sample must exceed (:data:`MIN_SIGNAL_FRACTION` of the 90th percentile).
    overlaps : OverlapLevels
        ``above`` smoothed, and its logs (:func:`~linumpy.stitching.flatfield.overlap_levels`).
    """

    above: dict[TileIndex, np.ndarray]
    floor: float
    min_level: float
    overlaps: OverlapLevels


def signal_levels(projections: Mapping[TileIndex, np.ndarray],
                  least_plane_means: Mapping[TileIndex, float]) -> SignalLevels:
    """The part of :func:`fusion_flat_field`'s work that does not depend on the tiles' positions, which the
    stitch computes on a thread of its own while the positions are estimated.

    Parameters
    ----------
    projections : mapping
        ``tile -> (y, x)`` average intensity projection of every present tile.
    least_plane_means : mapping
        Each tile's smallest mean of one depth plane (for the noise floor).
    """
    floor = noise_floor(least_plane_means)
    above = {tile: np.asarray(p, np.float64) - floor for tile, p in projections.items()}
    levels = np.concatenate([np.ravel(p) for p in above.values()])
    min_level = MIN_SIGNAL_FRACTION * max(float(np.percentile(levels, 90)), 0.0)
    return SignalLevels(above, floor, min_level, overlap_levels(above))


def fusion_flat_field(levels: SignalLevels, positions: Mapping[TileIndex, Sequence[float]]) -> FusionFlatField:
    """Fit the flat field the fusion divides out, or say why not.

    Parameters
    ----------
    levels : SignalLevels
        The tiles' projections above the noise floor (:func:`signal_levels`).
    positions : mapping
        ``tile -> (y, x)`` estimated positions (rounded as the fusion rounds them).

    Returns
    -------
    FusionFlatField
        Applied when at least :data:`MIN_PAIRS_PER_DIRECTION` pairs of each
        direction hold :data:`MIN_PAIR_SAMPLES` signal samples, the field
        stays within :data:`MAX_GAIN` and varies by more than
        :data:`MIN_VIGNETTING` (``source`` ``"overlaps"``). When a direction
        lacks pairs (a one-row strip), the field read on the agarose tiles
        instead (:func:`_agarose_fallback`, the same plausibility checks).
        Otherwise not applied, with the reason.
    """
    floor, min_level = levels.floor, levels.min_level
    origins, _ = placement_origins(positions)
    pairs = [(a, b, (origins[b][0] - origins[a][0], origins[b][1] - origins[a][1]))
             for a, b in neighbour_pairs(sorted(levels.above))]
    fit = fit_flat_field(levels.above, pairs, min_level=max(min_level, np.finfo(float).tiny), levels=levels.overlaps)
    supported = {pair: n for pair, n in fit.pair_samples.items() if n >= MIN_PAIR_SAMPLES}
    per_direction = [sum((b[0] - a[0], b[1] - a[1]) == d for a, b in supported) for d in DIRECTIONS]
    support = {
        "n_pairs": len(pairs),
        "n_supported_pairs": len(supported),
        "supported_pairs_per_direction": per_direction,
        "n_supported_tiles": len({t for pair in supported for t in pair}),
        "n_samples": int(sum(fit.pair_samples.values())),
        "inlier_fraction": round(fit.inlier_fraction, 3),
        "min_signal_level": round(min_level, 6),
    }
    status = _refusal(fit.field)
    if min(per_direction) < MIN_PAIRS_PER_DIRECTION:
        status = (f"{WEAKLY_SUPPORTED} ({per_direction} pairs per direction with >= "
                  f"{MIN_PAIR_SAMPLES} signal samples, {MIN_PAIRS_PER_DIRECTION} needed in each)")
    if fit.inlier_fraction > 0 and status != "applied":  # a field was fitted
        support |= {"refused_field_min": round(float(fit.field.min()), 4),
                    "refused_field_max": round(float(fit.field.max()), 4)}
    if status.startswith(WEAKLY_SUPPORTED):
        return _agarose_fallback(levels, status, support)
    if status == "applied":
        return FusionFlatField(status, fit.field.astype(np.float32), floor, support | {"source": "overlaps"})
    return _refused(status, floor, support)


def _refusal(field: np.ndarray) -> str:
    """``"applied"`` for a plausible field that varies, else ``"not applied: <reason>"`` (:data:`MAX_GAIN`,
    :data:`MIN_VIGNETTING`)."""
    low, high = float(field.min()), float(field.max())
    if not 1 / MAX_GAIN <= low <= high <= MAX_GAIN:
        return f"not applied: implausible field ({low:.2f} to {high:.2f} of its mean, limit {MAX_GAIN})"
    if high / low < 1 + MIN_VIGNETTING:
        return f"not applied: no vignetting measured (field {low:.4f} to {high:.4f} of its mean)"
    return "applied"


def _refused(status: str, floor: float, support: dict) -> FusionFlatField:
    """A field not applied, logged (a warning unless no vignetting was measured)."""
    logger.log(logging.INFO if "no vignetting" in status else logging.WARNING, "flat field at fusion %s", status)
    return FusionFlatField(status, None, floor, support)


def _agarose_fallback(levels: SignalLevels, overlap_status: str, support: dict) -> FusionFlatField:
    """The field read on the agarose tiles (:func:`~linumpy.stitching.agarose_flatfield.agarose_flat_field`)
    when the overlaps leave a direction unmeasured: applied (``source`` ``"agarose tiles"``, the overlap fit's
    refusal kept as ``overlap_status``) when measured and plausible, else the overlap fit's refusal, with the
    agarose estimate's reason as ``agarose_status``."""
    agarose = agarose_flat_field(levels.overlaps.smoothed, levels.floor)
    support = support | agarose.support
    status = _refusal(agarose.field) if agarose.field is not None else f"not applied: {agarose.reason}"
    if status == "applied":
        logger.info("flat field at fusion read on %d agarose tiles (%s)", len(agarose.support["agarose_tiles"]),
                    overlap_status)
        return FusionFlatField(status, agarose.field.astype(np.float32), levels.floor,
                               support | {"source": "agarose tiles", "overlap_status": overlap_status})
    return _refused(overlap_status, levels.floor, support | {"agarose_status": status})
