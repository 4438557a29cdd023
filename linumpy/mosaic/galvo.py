"""Find where the galvo-return band really is in a slice's raw B-scans, and move it back.

Each raw B-scan holds ``nx + n_extra`` A-lines; the ``n_extra`` acquired
while the galvo flies back carry no image. The reader crops the **last**
``n_extra``, but on the real system the band drifts: it starts at A-line
``nx + shift`` (circularly), and with ``shift != 0`` the crop keeps a dark
stripe inside every tile and drops tissue.

Detection (per slice): for a few tiles near the centre of the grid that
hold tissue, the A-line profile (mean over depth and B-scans) is median
filtered and differentiated, ``d(a) = p(a + 1) - p(a)`` (circular). The
band starts after the A-line ``a`` that maximises
``max(-d(a), 0) * max(d(a + n_extra), 0)`` (a fall, then a rise
``n_extra`` later), on the mean of the tiles' profiles (each divided by its
median; tiles with no dark band left out), so that tissue texture averages
out and the common band stands. A detected shift within one A-line of
nominal is treated as nominal. Confidence is
the product of three terms in [0, 1]: *darkness* ((1 - band mean / median
of the rest) / 0.25, capped at 1), *consistency* (fraction of tiles whose own scores within
one A-line reach half of their own best score, weighted by tile darkness) and *distinctness* (how far the
summed score peak stands above the best one more than 2 A-lines away,
:func:`distinctness`). A shift is applied only above the
confidence threshold; otherwise the nominal crop is kept and the QC record
says why.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from linumpy.errors import InputError
from linumpy.io.acquisition import SliceAcquisition, Tile
from linumpy.io.native_tiles import RAW_DTYPE, INFO_NAME, bin_files, read_info, read_native_tile
from linumpy.mosaic.options import DEFAULT_CONFIDENCE
from linumpy.parallel import ordered_map

#: Tiles sampled for detection, nearest to the grid centre first.
MAX_TILES = 16
#: B-scan frames read per tile for its profile (evenly spaced).
MAX_FRAMES = 64
#: A tile takes part when its own best band is at least this dark (1 - band / rest).
MIN_TILE_DARKNESS = 0.05
#: A band this dark (1 - band / rest) or darker gets full darkness credit.
FULL_DARKNESS = 0.25
#: The nominal position (within 1 A-line) is kept when its score is at least this fraction
#: of the best; a tile supports a position where its own score reaches this fraction of its best.
NOMINAL_TIE = 0.5


@dataclass(frozen=True)
class GalvoShift:
    """The galvo-return band of one slice.

    Attributes
    ----------
    shift : int
        Detected A-line offset of the band start from ``nx`` (0: nominal).
    confidence : float
        In [0, 1] (see the module docstring).
    applied : bool
        Whether the tiles are read with ``shift`` (confident and non-zero).
    status : str
        ``"fixed"``, ``"nominal"`` (detected at the nominal place),
        ``"low_confidence"``, ``"no_tissue"``, ``"disabled"`` or ``"not_native"``.
    tile_shifts : list
        ``[[row, col, shift], ...]`` of the tiles used.
    """

    shift: int = 0
    confidence: float = 0.0
    applied: bool = False
    status: str = "disabled"
    darkness: float = 0.0
    consistency: float = 0.0
    distinctness: float = 0.0
    tile_shifts: list[list[int]] = field(default_factory=list)

    def metrics(self) -> dict[str, Any]:
        """The QC record fields (``galvo_*``)."""
        return {
            "galvo_shift_px": self.shift if self.applied else 0,
            "galvo_detected_shift_px": self.shift,
            "galvo_confidence": round(self.confidence, 4),
            "galvo_status": self.status,
            "galvo_darkness": round(self.darkness, 4),
            "galvo_consistency": round(self.consistency, 4),
            "galvo_distinctness": round(self.distinctness, 4),
            "galvo_tile_shifts": self.tile_shifts,
        }

    def flags(self, threshold: float) -> list[str]:
        """Messages for the QC record when a band could not be placed with confidence."""
        if self.status == "low_confidence":
            return [
                f"galvo band detected {self.shift:+d} A-lines from nominal with confidence "
                f"{self.confidence:.2f} < {threshold:.2f}: kept the nominal crop"
            ]
        if self.status == "no_tissue":
            return ["galvo band not detectable (no tile with tissue among those sampled): kept the nominal crop"]
        return []


def aline_profile(tile_dir: str | Path) -> np.ndarray:
    """Mean of a native tile's raw A-lines over depth and frames, all ``nx + n_extra`` of them.

    Reads about :data:`MAX_FRAMES` evenly spaced frames, not the whole tile.
    """
    info = read_info(tile_dir)
    depth, n_alines, n_total = info.raw_shape
    stride = max(1, n_total // MAX_FRAMES)
    total = np.zeros(n_alines, np.float64)
    count, first = 0, 0
    for path in bin_files(tile_dir):
        n_frames = path.stat().st_size // (depth * n_alines * RAW_DTYPE.itemsize)
        sampled = sampled_frames(path, range((-first) % stride, n_frames, stride), (n_alines, depth))
        total += sampled.sum(axis=(0, 2), dtype=np.float64)
        count += len(sampled) * depth
        first += n_frames
    return total / max(count, 1)


def sampled_frames(path: Path, frames: range, frame_shape: tuple[int, int]) -> np.ndarray:
    """The raw ``frames`` (``(alines, depth)`` each, ``frame_shape``) of a ``.bin`` file, each read on its own.

    Only their bytes are read: a memory map's page faults made the kernel read the whole file around them (the
    16 central tiles of the ``large`` preset: 713 MB from disk for 225, before the mosaic grid's first tile).

    Raises
    ------
    InputError
        If the file ends before a frame (it changed while being read).
    """
    out = np.empty((len(frames), *frame_shape), RAW_DTYPE)
    frame_bytes = math.prod(frame_shape) * RAW_DTYPE.itemsize
    with open(path, "rb", buffering=0) as file:
        for k, frame in enumerate(frames):
            if os.preadv(file.fileno(), [memoryview(out[k]).cast("B")], frame * frame_bytes) != frame_bytes:
                raise InputError(f"{path}: ended before its frame {frame}; was it changed while being read?")
    return out


def band_scores(profile: np.ndarray, n_extra: int) -> np.ndarray:
    """Score of a band starting at each A-line: ``max(-d(a-1), 0) * max(d(a-1+n_extra), 0)``.

    Examples
    --------
    >>> p = np.ones(20); p[5:9] = 0.1
    >>> int(np.argmax(band_scores(p, 4)))
    5
    """
    values = np.asarray(profile, np.float64)
    # The median of each A-line and its two circular neighbours (scipy's median_filter(size=3, mode="wrap"),
    # without importing scipy for a 1D median of three).
    smooth = np.median(np.stack([np.roll(values, 1), values, np.roll(values, -1)]), axis=0)
    d = np.roll(smooth, -1) - smooth
    return np.roll(np.maximum(-d, 0.0) * np.maximum(np.roll(d, -n_extra), 0.0), 1)


def band_darkness(profile: np.ndarray, start: int, n_extra: int) -> float:
    """``1 - mean(band) / median(rest)`` in [0, 1] of a band starting at ``start``."""
    n = len(profile)
    band = (start + np.arange(n_extra)) % n
    outside = float(np.median(np.delete(profile, band)))
    return float(np.clip(1.0 - profile[band].mean() / outside, 0.0, 1.0)) if outside > 0 else 0.0


def distinctness(scores: np.ndarray, start: int) -> float:
    """``2 * (1 - second / best)`` in [0, 1]: how far the best band score stands above
    the best one more than 2 A-lines away (a runner-up at half the best or less: 1)."""
    n = len(scores)
    away = np.abs((np.arange(n) - start + n // 2) % n - n // 2) > 2
    second = float(scores[away].max()) if away.any() else 0.0
    return float(np.clip(2.0 * (1.0 - second / scores[start]), 0.0, 1.0)) if scores[start] > 0 else 0.0


def _signed(shift: int, n: int) -> int:
    """``shift`` modulo ``n`` in ``[-n // 2, n // 2)``."""
    return (shift + n // 2) % n - n // 2


def detect_band(profiles: dict[tuple[int, int], np.ndarray], nx: int, n_extra: int) -> GalvoShift:
    """Detect the band of one slice from the raw A-line profiles of some of its tiles.

    Parameters
    ----------
    profiles : dict
        ``{(row, col): profile}``, each of length ``nx + n_extra``.
    nx, n_extra : int
        Kept and galvo-return A-lines per B-scan.

    Returns
    -------
    GalvoShift
        ``applied`` is left False; :func:`decide` sets it from the threshold.
    """
    n = nx + n_extra
    tiles = []
    for (row, col), profile in sorted(profiles.items()):
        scores = band_scores(profile, n_extra)
        start = int(np.argmax(scores))
        darkness = band_darkness(profile, start, n_extra)
        if darkness >= MIN_TILE_DARKNESS and scores[start] > 0:
            tiles.append((row, col, start, darkness, profile / np.median(profile), scores / scores[start]))
    if not tiles:
        return GalvoShift(status="no_tissue")
    mean_profile = np.mean([t[4] for t in tiles], axis=0)
    total = band_scores(mean_profile, n_extra)
    start = int(np.argmax(total))
    nominal = (nx + np.arange(-1, 2)) % n
    if total[nominal].max() >= NOMINAL_TIE * total[start]:
        start = nx % n
    weights = np.array([t[3] for t in tiles])
    near = (start + np.arange(-1, 2)) % n
    agree = np.array([t[5][near].max() >= NOMINAL_TIE for t in tiles])
    consistency = float(np.sum(weights * agree) / np.sum(weights))
    darkness = band_darkness(mean_profile, start, n_extra)
    distinct = distinctness(total, start)
    return GalvoShift(
        shift=_signed(start - nx, n),
        confidence=min(1.0, darkness / FULL_DARKNESS) * consistency * distinct,
        status="detected",
        darkness=darkness,
        consistency=consistency,
        distinctness=distinct,
        tile_shifts=[[t[0], t[1], _signed(t[2] - nx, n)] for t in tiles],
    )


def decide(estimate: GalvoShift, threshold: float) -> GalvoShift:
    """Set ``applied`` and ``status`` from the confidence threshold."""
    if estimate.status != "detected":
        return estimate
    if estimate.shift == 0:
        status = "nominal"
    elif estimate.confidence >= threshold:
        status = "fixed"
    else:
        status = "low_confidence"
    return GalvoShift(**{**estimate.__dict__, "status": status, "applied": status == "fixed"})


def central_tiles(section: SliceAcquisition, count: int = MAX_TILES) -> list[Tile]:
    """The ``count`` tiles nearest to the centre of the grid (ties broken by position)."""
    rows, cols = section.grid_shape
    centre = ((rows - 1) / 2.0, (cols - 1) / 2.0)
    order = sorted(section.tiles, key=lambda rc: ((rc[0] - centre[0]) ** 2 + (rc[1] - centre[1]) ** 2, rc))
    return [section.tiles[rc] for rc in order[:count]]


def detect_slice_band(
    section: SliceAcquisition, threshold: float = DEFAULT_CONFIDENCE, workers: int | None = None
) -> GalvoShift:
    """Detect and decide the galvo-band shift of one slice (native tiles only).

    Reads the raw A-line profiles of up to :data:`MAX_TILES` central tiles,
    ``workers`` tiles at once (default :func:`linumpy.parallel.default_workers`).
    TIFF tiles are already cropped: status ``"not_native"``, nothing moved.
    """
    tiles = central_tiles(section)
    if not tiles or not (tiles[0].path / INFO_NAME).is_file():
        return GalvoShift(status="not_native")
    info = read_info(tiles[0].path)
    profiles = dict(zip([(t.row, t.col) for t in tiles], ordered_map(lambda t: aline_profile(t.path), tiles, workers)))
    return decide(detect_band(profiles, info.nx, info.n_extra), threshold)


def read_tile(tile: Tile, galvo: GalvoShift, out: np.ndarray | None = None) -> np.ndarray:
    """Read a tile, with its A-lines moved past the band when ``galvo.applied`` (into ``out``, see ``Tile.read``)."""
    if not galvo.applied:
        return tile.read(out)
    return read_native_tile(tile.path, aline_shift=galvo.shift, out=out)
