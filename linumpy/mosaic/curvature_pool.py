"""One field-curvature decision per acquisition, pooled over several slices.

The scan optics are the same for every slice, so the curvature
(:mod:`linumpy.mosaic.curvature`) is estimated once: the border differences
of the central tiles of up to :data:`MAX_SLICES` slices spread through the
acquisition are fitted together, with the same gates as a single slice
(:func:`linumpy.mosaic.curvature.fit_candidate`, then the overlap NCC of the
same tiles read a second time, only when the other gates pass). Deciding
each slice alone corrected some slices of the same acquisition and not
others (``harsh``: a held-out gain of 2.8% on one slice, 6% on the next),
which moved the stacked slices' depths against each other.

The decision is written as JSON (:func:`save_acquisition_curvature`) and
read by every mosaic-grid step (:func:`load_acquisition_curvature`), which
then applies it as it is. Memory: one slice's sampled tiles at a time
(:data:`linumpy.mosaic.curvature.TILE_MEMORY_BYTES`), plus the border
differences (a few numbers per 4 x 4 A-line block of the overlaps).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from linumpy.errors import InputError, LinumpyError
from linumpy.io.acquisition import Acquisition, SliceAcquisition
from linumpy.io.atomic import atomic_output
from linumpy.io.json_document import load_json_document
from linumpy.mosaic.curvature import (
    Curvature, border_differences, fit_candidate, ncc_gated, overlap_scores, read_central_tiles,
)
from linumpy.mosaic.galvo import GalvoShift, detect_slice_band
from linumpy.mosaic.options import CURVATURE_MAX_SLICES as MAX_SLICES
from linumpy.mosaic.options import DEFAULT_CONFIDENCE
from linumpy.qc.records import write_qc_record

logger = logging.getLogger(__name__)
#: ``schema`` of the JSON written by :func:`save_acquisition_curvature`.
SCHEMA = "linumpy-field-curvature/1"


@dataclass(frozen=True)
class AcquisitionCurvature:
    """The acquisition's field-curvature decision and what it was made from.

    Attributes
    ----------
    curvature : Curvature
        Fit, gates and decision (``source`` ``"acquisition"``; ``n_tiles``
        counts the tiles of every sampled slice).
    slice_ids : list of int
        Slices whose tiles were sampled.
    tile_shape : list of int
        ``[z, y, x]`` of the tiles (as read, galvo band cropped); every slice
        corrected with this decision must have the same lateral shape.
    skipped_slices : list of int
        Sampled slices left out because their tiles could not be read (each
        logged as a warning; a slice left out of the run may be damaged).
    """

    curvature: Curvature
    slice_ids: list[int]
    tile_shape: list[int]
    skipped_slices: list[int] = field(default_factory=list)

    def metrics(self) -> dict[str, Any]:
        """The QC record fields: the curvature's (``curvature_*``) and the sampled slices."""
        return self.curvature.metrics() | {"curvature_n_slices": len(self.slice_ids),
                                           "curvature_slice_ids": list(self.slice_ids),
                                           "curvature_skipped_slices": list(self.skipped_slices)}

    def flags(self) -> list[str]:
        """The curvature's flags, naming the decision for the whole acquisition; skipped slices."""
        flags = [f"{message} (decided once for the whole acquisition, from {len(self.slice_ids)} slices: "
                 "no slice is corrected)" for message in self.curvature.flags()]
        if self.skipped_slices:
            flags.append(f"field curvature estimated without slices {self.skipped_slices}: their tiles could "
                         "not be read (see the warnings)")
        return flags

    def for_slice(self, section: SliceAcquisition, source: str | os.PathLike = "the field curvature JSON"
                  ) -> Curvature:
        """The decision to apply to ``section``, refused when its tiles differ from the sampled ones."""
        if list(section.tile_shape[1:]) != list(self.tile_shape[1:]):
            raise InputError(f"{source}: estimated on tiles of {self.tile_shape[1]} x {self.tile_shape[2]} A-lines, "
                             f"slice {section.slice_id} has {section.tile_shape[1]} x {section.tile_shape[2]}; "
                             "rerun linum_estimate_field_curvature.py on this acquisition")
        return self.curvature


def sample_slice_ids(slice_ids: list[int], count: int = MAX_SLICES) -> list[int]:
    """Up to ``count`` of ``slice_ids`` spread evenly, first and last included.

    Examples
    --------
    >>> sample_slice_ids(list(range(20)), 5)
    [0, 5, 10, 14, 19]
    """
    ordered = sorted(slice_ids)
    if len(ordered) <= count:
        return ordered
    picks = np.unique(np.rint(np.linspace(0, len(ordered) - 1, count)).astype(int))
    return [ordered[i] for i in picks]


def estimate_acquisition_curvature(
    acquisition: Acquisition,
    fix_galvo_shift: bool = True,
    galvo_confidence: float = DEFAULT_CONFIDENCE,
    max_slices: int = MAX_SLICES,
    workers: int | None = None,
) -> AcquisitionCurvature:
    """Estimate one field curvature from the central tiles of several slices and decide once.

    Parameters
    ----------
    acquisition : Acquisition
        The raw acquisition.
    fix_galvo_shift, galvo_confidence
        Read the tiles as the mosaic-grid step will (its galvo-band options).
    max_slices : int
        Slices sampled (:func:`sample_slice_ids`).
    workers : int, optional
        Threads reading tiles and comparing overlaps (default:
        :func:`linumpy.parallel.default_workers`; the result does not depend on it).

    Returns
    -------
    AcquisitionCurvature
        Applied only when every gate passes on the pooled border differences;
        the status names the first gate that failed.
    """
    sampled: dict[int, tuple[SliceAcquisition, GalvoShift]] = {}
    pairs, n_tiles, tile_shape, skipped = [], 0, None, []
    for slice_id in sample_slice_ids(acquisition.slice_ids, max_slices):
        try:
            section = acquisition.slice(slice_id)
            band = detect_slice_band(section, galvo_confidence) if fix_galvo_shift else GalvoShift()
            tiles = read_central_tiles(section, band, workers)
        except LinumpyError as error:
            logger.warning("slice %d left out of the field curvature estimate: %s", slice_id, error)
            skipped.append(slice_id)
            continue
        sampled[slice_id] = section, band
        tile_shape = next(iter(tiles.values())).shape
        pairs += border_differences(tiles, section.tile_step_px)
        n_tiles += len(tiles)
        del tiles  # one slice's tiles in memory at a time
    if tile_shape is None:
        raise InputError(f"{acquisition.path}: no sampled slice could be read for the field curvature estimate "
                         f"(slices {skipped}); see the warnings, or pass --no_fix_field_curvature")
    candidate = fit_candidate(pairs, tile_shape[1:])
    if candidate.applied:  # the NCC gate: the same tiles again, one slice at a time
        before, after = [], []
        for section, band in sampled.values():
            tiles = read_central_tiles(section, band, workers)
            before += overlap_scores(tiles, section.tile_step_px, workers=workers)
            after += overlap_scores(tiles, section.tile_step_px, candidate, workers)
            del tiles
        candidate = ncc_gated(candidate, _mean(before), _mean(after))
    curvature = replace(candidate, n_tiles=n_tiles, source="acquisition")
    return AcquisitionCurvature(curvature, list(sampled), [int(n) for n in tile_shape], skipped)


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def disabled_curvature(acquisition: Acquisition) -> AcquisitionCurvature:
    """The decision "off" without any estimate (``--no_fix_field_curvature``): status ``"disabled"``."""
    first = acquisition.slice(acquisition.slice_ids[0])
    return AcquisitionCurvature(Curvature(source="acquisition"), [], [int(n) for n in first.tile_shape])


def save_acquisition_curvature(estimate: AcquisitionCurvature, path: str | os.PathLike,
                               overwrite: bool = False) -> Path:
    """Write the decision as JSON (atomically, sorted keys) and its QC record beside it.

    QC record (step ``field_curvature``): :meth:`AcquisitionCurvature.metrics`
    and :meth:`AcquisitionCurvature.flags`.
    """
    curvature = {k: _json_number(v) for k, v in asdict(estimate.curvature).items()}
    data = {"schema": SCHEMA, "slice_ids": estimate.slice_ids, "tile_shape": estimate.tile_shape,
            "skipped_slices": estimate.skipped_slices, "curvature": curvature}
    with atomic_output(path, overwrite) as temporary:
        Path(temporary).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    write_qc_record(path, "field_curvature", estimate.metrics(), flags=estimate.flags())
    return Path(path)


def _json_number(value: Any) -> Any:
    """Non-finite floats as None (JSON has no NaN or infinity)."""
    return None if isinstance(value, float) and not np.isfinite(value) else value


def load_acquisition_curvature(path: str | os.PathLike) -> AcquisitionCurvature:
    """Read a decision written by :func:`save_acquisition_curvature`.

    Raises
    ------
    InputError
        If the file is missing, not JSON, or not a field-curvature decision.
    """
    fix = "write it with linum_estimate_field_curvature.py"
    data = load_json_document(path, "field curvature file", fix)
    try:
        if data["schema"] != SCHEMA:
            raise ValueError(f"schema {data['schema']!r}, expected {SCHEMA!r}")
        known = {f.name for f in fields(Curvature)}
        values = {k: v for k, v in data["curvature"].items() if k in known}
        if values.get("spread_px") is None:
            values["spread_px"] = float("inf")
        curvature = Curvature(**values)
        if len(curvature.coefficients) != 3 or len(data["tile_shape"]) != 3:
            raise ValueError("3 coefficients and a 3D tile shape expected")
        return AcquisitionCurvature(curvature, [int(i) for i in data["slice_ids"]],
                                    [int(n) for n in data["tile_shape"]],
                                    [int(i) for i in data.get("skipped_slices", [])])
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(f"{path} is not a field curvature decision ({error!r}); {fix}") from error
