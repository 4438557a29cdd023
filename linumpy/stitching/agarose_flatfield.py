"""The fusion flat field read on agarose tiles, where the overlaps cannot measure it.

:func:`~linumpy.stitching.fusion_flatfield.fusion_flat_field` fits the
vignetting to the log ratios of overlapping tiles: rows of pairs constrain
its ``x`` terms, columns its ``y`` terms. A one-row strip has no column pair,
so its ``y`` terms are not measured and the fit is refused. A tile that
holds agarose and no tissue records the field directly: agarose is a uniform
reflector, so its projection above the noise floor is ``V(y, x)`` times one
level. Such a tile is recognised by two properties of its (smoothed)
projection above the floor:

- **signal clearly above the noise**: its median at least
  :data:`MIN_SIGNAL_TO_FLOOR` times the floor, and positive everywhere (an
  empty tile records the noise only, whose level above the floor is ~0);
- **smooth**: its log departs from its own log-polynomial fit (the overlap
  fit's model, :func:`~linumpy.stitching.flatfield.fit_log_polynomial`) by a
  robust standard deviation of at most :data:`MAX_ROUGHNESS`; tissue's
  regions and edges differ by tens of per cent (odd2: agarose 0.006-0.011,
  tissue tiles 0.22-0.24).

With at least :data:`MIN_AGAROSE_TILES` such tiles, the field is the
log-polynomial fit of their median (each tile's projection divided by its
mean first), provided every tile's own field stays within
:data:`MAX_DISAGREEMENT` of it (RMS of the log ratio): tiles that disagree
record something other than the one vignetting.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from linumpy.stitching.flatfield import fit_log_polynomial
from linumpy.stitching.global_solve import TileIndex

#: An agarose tile's median projection above the floor is at least this multiple of the noise floor.
MIN_SIGNAL_TO_FLOOR = 1.0
#: An agarose tile's log projection departs from its own smooth fit by at most this robust standard deviation.
MAX_ROUGHNESS = 0.05
#: Agarose tiles needed for the field.
MIN_AGAROSE_TILES = 2
#: Each agarose tile's own field stays within this RMS log ratio of the fields' median.
MAX_DISAGREEMENT = 0.05


@dataclass(frozen=True)
class AgaroseField:
    """The flat field read on agarose tiles, or why not.

    Attributes
    ----------
    field : np.ndarray or None
        ``(y, x)`` field of a tile, mean 1; None when not measured.
    reason : str
        Why no field was measured ('' when it was).
    support : dict
        The QC record's entries: the tiles used and how far their fields disagree.
    """

    field: np.ndarray | None
    reason: str
    support: dict


def agarose_tile_fields(smoothed: Mapping[TileIndex, np.ndarray],
                        floor: float) -> dict[TileIndex, np.ndarray]:
    """``tile -> `` its projection's own field (mean 1) for every tile that holds agarose and no tissue.

    Parameters
    ----------
    smoothed : mapping
        ``tile -> (y, x)`` smoothed projection above the noise floor.
    floor : float
        The noise floor.
    """
    fields = {}
    for tile, level in smoothed.items():
        if not (np.min(level) > 0 and np.median(level) >= MIN_SIGNAL_TO_FLOOR * floor):
            continue
        field, roughness = fit_log_polynomial(level / np.mean(level))
        if roughness <= MAX_ROUGHNESS:
            fields[tile] = field
    return fields


def agarose_flat_field(smoothed: Mapping[TileIndex, np.ndarray], floor: float) -> AgaroseField:
    """The field of the tiles' median over the agarose tiles (:func:`agarose_tile_fields`), or why not.

    Parameters
    ----------
    smoothed, floor
        As :func:`agarose_tile_fields`.

    Returns
    -------
    AgaroseField
        The field (None when refused), the reason for a refusal and the support recorded in the QC.
    """
    fields = agarose_tile_fields(smoothed, floor)
    support: dict = {"agarose_tiles": [list(tile) for tile in sorted(fields)]}
    if len(fields) < MIN_AGAROSE_TILES:
        return AgaroseField(None, f"{len(fields)} agarose tile(s), {MIN_AGAROSE_TILES} needed", support)
    median = np.median([smoothed[tile] / np.mean(smoothed[tile]) for tile in fields], axis=0)
    field, _ = fit_log_polynomial(median)
    disagreement = max(float(np.sqrt(np.mean(np.log(own / field) ** 2))) for own in fields.values())
    support["agarose_disagreement"] = round(disagreement, 4)
    if disagreement > MAX_DISAGREEMENT:
        return AgaroseField(None, f"agarose tiles disagree (RMS log ratio {disagreement:.3f} to their median's "
                                  f"field, limit {MAX_DISAGREEMENT})", support)
    return AgaroseField(field, "", support)
