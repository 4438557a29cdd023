"""The reads of the axial correction's statistics pass, which can begin before its kernels are imported.

The statistics pass (pass 1 of :mod:`linumpy.intensity.axial`) reads the slice
binned laterally (its stored level 1 when that is level 0 binned, see
:func:`~linumpy.intensity.blocks.stored_binned_level`), block by block, through
a :class:`~linumpy.intensity.blocks.ChunkColumnCache` whose prefetch thread
decodes the chunk columns ahead of the blocks. Nothing here imports scipy:
``linum_axial_corr.py`` starts these reads (:func:`started`) before it imports
the correction (scipy.ndimage, the QC's modules: about 0.3-0.5 s of one core
holding the GIL), so that the first columns are decoded on the other core
meanwhile (file reads and Blosc release the GIL) instead of after them, while
the pass's first blocks wait (session perf33).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from linumpy.intensity.blocks import (
    ChunkColumnCache, LateralBlock, binning_fits, chunk_shape, lateral_block_size, lateral_blocks,
    stored_binned_level,
)
from linumpy.io.zarr import open_omezarr_level

logger = logging.getLogger(__name__)

#: Lateral binning of the statistics pass (the default of ``AxialSettings.statistics_binning_px``).
STATISTICS_BINNING_PX = 2
#: Lateral smoothing of the surface detection, A-lines (the default of ``AxialSettings.lateral_sigma_px``).
SURFACE_SIGMA_PX = 2.0


class StatisticsReads:
    """The blocks of the statistics pass and the cache that serves them, binned, its prefetch running.

    Parameters
    ----------
    in_path : path-like
        The slice.
    volume : StoredArray
        Its level 0 (:func:`linumpy.io.zarr.open_omezarr_level`), a ``(z, y, x)`` volume.
    binning : int
        Lateral binning asked for; 1 is used when the storage chunks do not allow it (:attr:`factor`).
    lateral_sigma_px : float
        The surface detection's lateral smoothing: the blocks' halo covers ``3 sigma`` (whole bins).

    Attributes
    ----------
    factor, halo : int
        The binning used and the halo of the blocks (A-lines).
    parts : list of LateralBlock
        The blocks, in the order the pass visits them.
    decoded : threading.Event
        Set once the prefetch has gone through the pass's columns (or stopped).
    """

    def __init__(self, in_path: str | os.PathLike, volume: Any, binning: int, lateral_sigma_px: float) -> None:
        self.key = (os.fspath(in_path), binning, lateral_sigma_px)
        n_z, n_y, n_x = volume.shape
        factor = binning
        if not binning_fits(volume, factor):
            logger.info("chunks %s are not a multiple of %d A-lines: statistics without binning", chunk_shape(volume),
                        factor)
            factor = 1
        self.factor = factor
        self.halo = factor * int(np.ceil(np.ceil(3 * lateral_sigma_px) / factor))  # whole binned A-lines
        self.cache: ChunkColumnCache | None = ChunkColumnCache(
            volume, binning=factor, binned=stored_binned_level(in_path, volume, factor))
        block = lateral_block_size(n_z)
        self.parts = list(lateral_blocks((n_y, n_x), block, self.halo, self.cache.block_group(block)))
        self.decoded = threading.Event()
        self._prefetch = contextlib.ExitStack()
        self._prefetch.enter_context(self.cache.prefetching((self.region(part) for part in self.parts),
                                                            done=self.decoded))

    def region(self, part: LateralBlock) -> tuple[slice, slice]:
        """The binned A-lines that ``part`` reads (its halo included)."""
        return tuple(slice(s.start // self.factor, -(-s.stop // self.factor)) for s in part.outer)

    def serves(self, in_path: str | os.PathLike, binning: int, lateral_sigma_px: float) -> bool:
        """Whether these are the reads of that slice with these settings."""
        return self.cache is not None and self.key == (os.fspath(in_path), binning, lateral_sigma_px)

    def close(self) -> None:
        """Stop the prefetch and let the cache's columns go (the end of the pass)."""
        self._prefetch.close()
        self.cache = None


@contextlib.contextmanager
def started(
    in_path: str | os.PathLike, binning: int = STATISTICS_BINNING_PX, lateral_sigma_px: float = SURFACE_SIGMA_PX
) -> Iterator[StatisticsReads | None]:
    """The statistics pass's reads of ``in_path``, started now; None when they cannot be (closed at the end).

    Best effort: whatever fails here (a missing or damaged input, not 3D) is left for the correction
    itself to report, which then starts its own reads.
    """
    try:
        volume, _ = open_omezarr_level(in_path)
        reads = StatisticsReads(in_path, volume, binning, lateral_sigma_px) if volume.ndim == 3 else None
    except Exception as error:  # noqa: BLE001 -- reported by the correction, which reads again
        logger.debug("statistics reads of %s not started early: %s", in_path, error)
        reads = None
    try:
        yield reads
    finally:
        if reads is not None:
            reads.close()
