"""Every tile's summary before registration: from the mosaic grid's AIP when it holds them, else from the tiles.

The summary (:mod:`linumpy.mosaic.summaries`) is each tile's average intensity
projection, for registration and the fusion flat field, and its least plane
mean, for the flat field's noise floor. Reading every tile of the grid for it
costs 2-3 CPU seconds on the ``large`` slice; the mosaic grid step computed the
same summaries as it wrote the tiles (the AIP's pixels and its
``tile_least_plane_means`` attribute). :func:`summaries_from_aip` takes them from
there after checking that they describe this grid (shapes, finite values, and the
central tile's summary recomputed from the grid bit for bit); when they do not,
:func:`read_tile_summaries` reads the tiles and says why, in a warning and in
the QC record (:attr:`SummarySource.qc_fields`).
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from linumpy.intensity.blocks import read_block
from linumpy.io.zarr import open_omezarr_level, read_omezarr_info
from linumpy.mosaic.summaries import LEAST_PLANE_MEANS_ATTRIBUTE, TileSummary, tile_summary
from linumpy.parallel import ordered_map
from linumpy.stitching.options import TileIndex

if TYPE_CHECKING:
    from linumpy.stitching.stitch import MosaicGridLayout

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TileSummaries:
    """Every present tile's ``(y, x)`` float32 projection and least plane mean."""

    projections: dict[TileIndex, np.ndarray]
    least_plane_means: dict[TileIndex, float]


@dataclass(frozen=True)
class SummarySource:
    """Where the tiles' summaries came from: ``"aip"``, ``"tiles"`` or ``"none"`` (not needed), and why."""

    source: str
    reason: str

    def qc_fields(self) -> dict[str, str]:
        """The stitch QC record's ``tile_summaries`` entry."""
        return {"source": self.source, "reason": self.reason}


def tile_summaries(data, layout: MosaicGridLayout, progress: bool = False,
                   workers: int | None = None) -> TileSummaries:
    """Read every present tile of the grid ``data`` and summarise it, ``workers`` tiles at a time.

    ``data`` is the mosaic grid as a :class:`~linumpy.io.zarr.StoredArray` or a dask array.
    """
    def summarise(tile: TileIndex) -> TileSummary:
        return tile_summary(read_block(data, (slice(None), *layout.tile_slices(tile))))

    summarised = dict(zip(layout.tiles_present, tqdm(ordered_map(summarise, layout.tiles_present, workers),
                                                     total=len(layout.tiles_present), desc="projections",
                                                     disable=not progress)))
    return TileSummaries({t: s.projection for t, s in summarised.items()},
                         {t: s.least_plane_mean for t, s in summarised.items()})


class UnusableAipError(ValueError):
    """The AIP does not hold this grid's summaries (the message says why)."""


def checked_tile(layout: MosaicGridLayout) -> TileIndex:
    """The present tile whose summary in the AIP is checked against the grid: the nearest the grid's centre
    (the first in row-major order among equals), the likeliest to hold tissue."""
    centre = [(n - 1) / 2 for n in layout.grid_shape]
    return min(layout.tiles_present, key=lambda t: ((t[0] - centre[0]) ** 2 + (t[1] - centre[1]) ** 2, t))


def summaries_from_aip(aip_path: str | os.PathLike, data, layout: MosaicGridLayout,
                       check: bool = True) -> TileSummaries:
    """The tiles' summaries as the mosaic grid step saved them in its AIP, checked against the grid ``data``.

    Raises
    ------
    UnusableAipError
        If the AIP cannot be read, its level 0 is not float32 of the grid's ``(y, x)`` shape, its
        ``tile_least_plane_means`` attribute is missing, not ``(rows, cols)`` or not finite at a present
        tile, or the central present tile's summary (:func:`checked_tile`) recomputed from ``data`` differs
        in any bit (``check``; without it, :func:`check_aip_summaries` makes that check).
    """
    try:
        attributes = read_omezarr_info(aip_path).attributes
        aip, _ = open_omezarr_level(aip_path)
    except Exception as error:  # a missing, partial or foreign file: any reader error means "not usable"
        raise UnusableAipError(f"cannot read {aip_path} ({type(error).__name__}: {error})") from error
    if tuple(aip.shape) != tuple(data.shape[1:]) or np.dtype(aip.dtype) != np.float32:
        raise UnusableAipError(f"{aip_path} is {tuple(aip.shape)} {np.dtype(aip.dtype)}, the grid's planes "
                               f"{tuple(data.shape[1:])} float32")
    if LEAST_PLANE_MEANS_ATTRIBUTE not in attributes:
        raise UnusableAipError(f"{aip_path} has no {LEAST_PLANE_MEANS_ATTRIBUTE} attribute (an older mosaic grid step)")
    try:
        least = np.array(attributes[LEAST_PLANE_MEANS_ATTRIBUTE], dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise UnusableAipError(f"{LEAST_PLANE_MEANS_ATTRIBUTE} of {aip_path} is malformed ({error})") from error
    if least.shape != layout.grid_shape:
        raise UnusableAipError(f"{LEAST_PLANE_MEANS_ATTRIBUTE} of {aip_path} is {least.shape}, "
                               f"the grid {layout.grid_shape}")
    if not all(np.isfinite(least[tile]) for tile in layout.tiles_present):
        raise UnusableAipError(f"{LEAST_PLANE_MEANS_ATTRIBUTE} of {aip_path} is not finite at every present tile")
    summaries = TileSummaries({t: np.asarray(aip[layout.tile_slices(t)]) for t in layout.tiles_present},
                              {t: float(least[t]) for t in layout.tiles_present})
    if check:
        check_aip_summaries(aip_path, data, layout, summaries)
    return summaries


def check_aip_summaries(aip_path: str | os.PathLike, data, layout: MosaicGridLayout,
                        summaries: TileSummaries) -> None:
    """Raise :class:`UnusableAipError` unless the central present tile's summary (:func:`checked_tile`)
    recomputed from the grid ``data`` equals the one taken from the AIP at ``aip_path``, bit for bit."""
    checked = checked_tile(layout)
    recomputed = tile_summary(read_block(data, (slice(None), *layout.tile_slices(checked))))
    if not (np.array_equal(recomputed.projection.view(np.uint32), summaries.projections[checked].view(np.uint32))
            and recomputed.least_plane_mean == summaries.least_plane_means[checked]):
        raise UnusableAipError(f"tile {checked}'s summary in {aip_path} differs from the one recomputed "
                               "from the grid")


def aip_summaries_checked_aside(data, layout: MosaicGridLayout, aip_path: str | os.PathLike | None,
                                aside: Executor, progress: bool = False, workers: int | None = None,
                                ) -> tuple[TileSummaries, SummarySource, Future | None]:
    """:func:`read_tile_summaries` with the AIP's check against the grid (:func:`check_aip_summaries`: a
    tile read and decoded) submitted to ``aside`` instead of awaited.

    Returns
    -------
    (TileSummaries, SummarySource, Future or None)
        The summaries, where they came from, and the check's future when they came from the AIP: its
        result is None when the check passed, else the :class:`UnusableAipError` (the caller then reads
        the tiles, :func:`unusable_aip_fallback`, and starts again from their summaries).
    """
    if aip_path is None:
        return (*read_tile_summaries(data, layout, aip_path, progress, workers), None)
    try:
        summaries = summaries_from_aip(aip_path, data, layout, check=False)
    except UnusableAipError as error:
        return (*unusable_aip_fallback(data, layout, error, progress, workers), None)

    def check() -> UnusableAipError | None:
        try:
            check_aip_summaries(aip_path, data, layout, summaries)
        except UnusableAipError as error:
            return error
        return None

    return summaries, _aip_source(layout), aside.submit(check)


def unusable_aip_fallback(data, layout: MosaicGridLayout, error: UnusableAipError, progress: bool = False,
                          workers: int | None = None) -> tuple[TileSummaries, SummarySource]:
    """The summaries read from the tiles because the AIP is not usable (``error``), with a warning."""
    logger.warning("tile summaries read from the tiles: %s", error)
    return tile_summaries(data, layout, progress, workers), SummarySource("tiles", str(error))


def _aip_source(layout: MosaicGridLayout) -> SummarySource:
    """Where summaries taken from the AIP and checked came from."""
    return SummarySource("aip", f"tile {checked_tile(layout)} recomputed from the grid: identical")


def read_tile_summaries(data, layout: MosaicGridLayout, aip_path: str | os.PathLike | None,
                        progress: bool = False, workers: int | None = None) -> tuple[TileSummaries, SummarySource]:
    """The tiles' summaries from the AIP at ``aip_path`` when it holds this grid's, else read from the tiles.

    Returns
    -------
    (TileSummaries, SummarySource)
        The summaries and where they came from; reading the tiles although an AIP was given is
        logged as a warning with the reason.
    """
    if aip_path is None:
        return tile_summaries(data, layout, progress, workers), SummarySource("tiles", "no AIP given")
    try:
        summaries = summaries_from_aip(aip_path, data, layout)
    except UnusableAipError as error:
        return unusable_aip_fallback(data, layout, error, progress, workers)
    return summaries, _aip_source(layout)
