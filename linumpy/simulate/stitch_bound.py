"""How well can a tile of a simulated mosaic be placed at all? Bounds independent of the stitcher.

For a tile of a :class:`~linumpy.simulate.stitch_matrix.SimulatedMosaic`,
from the simulator's noise-free content and its noise model, with every
neighbour at its true position (the most favourable case):

- the **Cramer-Rao bound** of the tile's translation: the inverse of the
  Fisher information of its overlaps, ``sum (g - <g>)(g - <g>)^T / (A v)``,
  ``g`` the gradient of the log scene at the pixel, ``<g>`` its weighted
  mean (an unknown gain per overlap carries no position information), ``v``
  the variance of the difference of the two tiles' log intensities there and
  ``A`` the noise's correlation area. It is the high-signal-to-noise bound:
  with speckle drawn anew in each tile, a few percent of log contrast under
  a noise of ~0.4 per pixel, it is far from reachable;
- the **known-content separation** of the truth from an integer shift ``d``:
  ``sqrt(sum (c(p) - c(p + d) - b)^2 / (A v))`` (``c`` the log scene, ``b``
  the gain) over the pixels that overlap a neighbour both at the truth and
  at ``d``: what an observer holding a noise-free copy of one tile could do;
- the **expected evidence of two noisy tiles** (it decides
  :attr:`TileBound.placeable`): both tiles are noisy and the content is
  unknown. For every integer shift, the NCC of the two tiles' log
  intensities over their overlap has the expectation of the noise-free
  contents' correlation with each side's noise variance added to its
  variance; Fisher-transformed, times the square root of the independent
  pixels, summed over the overlaps and divided by ``sqrt(k)``, it is the
  evidence the stitcher's joint search would see without noise peaks. The
  **expected margin** is its value at the truth minus the best value
  farther than 5 px (second order in the contrast where the known-content
  separation is first order: low contrast under speckle drawn anew in each
  tile costs far more than the Cramer-Rao bound suggests). Noise adds
  rival peaks of about 3 standard errors over a 41 x 41 window, so a
  realised margin is lower than the expected one.

Shifts whose overlaps keep less than 30 % of their true area are not
hypotheses (the stitcher does not score them either). Noise model (per
pixel, log intensity of the depth average of ``depth`` planes): fully
developed speckle drawn anew in each plane and each tile (variance
``trigamma(depth)``, correlated over the speckle's correlation area) plus
the additive noise (``noise**2 / (depth * f**2)``, ``f`` the noise-free
intensity, vignetting included). The flat field is taken as known. Speckle
shared between tiles is counted as noise, so for ``speckle_shared > 0``
the bounds understate the information. Used by
``benchmarks/bench_stitching.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, special

from linumpy.simulate.stitch_matrix import SPECKLE_GRAIN_PX, SimulatedMosaic, sample_tile

#: Known-content separations are reported for the shifts farther than this (px).
PLACED_PX = 1.5
#: A tile counts as placeable within ``PLACED_PX`` when its Cramer-Rao bound is at most
#: a third of it and the expected evidence of two noisy tiles at the truth beats every
#: rival shift (farther than :data:`RIVAL_PX`) by ``MIN_MARGIN`` standard errors: the
#: stitcher's own bar for a confident peak (significance 2).
MIN_MARGIN = 2.0
#: Shifts farther than this (px) are rival peaks (the stitcher's ``PEAK_RADIUS_PX``).
RIVAL_PX = 5
#: Half-width (px) of the window of shifts searched (the stitcher's default ``max_shift_px``).
SEARCH_PX = 20
#: Shifts comparing less than this fraction of the true overlap area are not hypotheses
#: (as in the stitcher, whose pairs score no offset keeping less than 30 % of the overlap).
MIN_AREA_FRACTION = 0.3


@dataclass(frozen=True)
class TileBound:
    """Position information of one tile's overlaps with its neighbours at their true positions.

    Attributes
    ----------
    crb_px : float
        Cramer-Rao bound of the translation along its worst direction (px,
        standard deviation); ``inf`` without information.
    known_separation : float
        Least known-content separation of a shift farther than :data:`PLACED_PX`.
    expected_evidence : float
        Expected joint evidence (standard errors) of two noisy tiles at the truth.
    expected_margin : float
        That minus the best expected evidence of a shift farther than
        :data:`RIVAL_PX` (rivals below 0 count as 0, as in the stitcher).
    n_neighbours : int
        Overlapping neighbours used.
    """

    crb_px: float
    known_separation: float
    expected_evidence: float
    expected_margin: float
    n_neighbours: int

    @property
    def placeable(self) -> bool:
        """Whether two noisy tiles' overlaps can single out the true position (see module)."""
        return self.expected_margin >= MIN_MARGIN and self.crb_px <= PLACED_PX / 3

    def describe(self) -> str:
        """One-line summary."""
        return (f"Cramer-Rao {self.crb_px:.2f} px, known-content separation beyond {PLACED_PX:g} px "
                f"{self.known_separation:.1f}, two noisy tiles: expected evidence {self.expected_evidence:.1f}, "
                f"margin {self.expected_margin:+.1f} ({self.n_neighbours} neighbours"
                f"{', placeable' if self.placeable else ''})")


def speckle_correlation_area(grain_px: float = SPECKLE_GRAIN_PX) -> float:
    """Sum over lags (px^2) of the squared correlation of the simulator's speckle amplitude.

    The intensity of fully developed speckle is correlated as ``|gamma|^2``,
    ``gamma`` the normalised autocorrelation of the complex field (white
    noise filtered by a Gaussian of ``grain_px``).
    """
    delta = np.zeros(33)
    delta[16] = 1.0
    kernel = ndimage.gaussian_filter1d(delta, grain_px)
    gamma = np.correlate(kernel, kernel, mode="full")
    gamma /= gamma.max()
    return float(np.sum(gamma ** 2) ** 2)


def _log_variance(mosaic: SimulatedMosaic, intensity: np.ndarray) -> np.ndarray:
    """Per-pixel variance of a tile's log depth-averaged intensity (each pixel alone)."""
    condition = mosaic.condition
    variance = condition.noise ** 2 / (condition.depth * intensity ** 2)
    if condition.speckle:
        variance = variance + special.polygamma(1, condition.depth)
    return variance


def _correlation_area(mosaic: SimulatedMosaic) -> float:
    """Area (px^2) over which the noise of a projection is correlated (1: white noise)."""
    return speckle_correlation_area() if mosaic.condition.speckle else 1.0


def _patch(mosaic: SimulatedMosaic, tile, margin: int) -> tuple[np.ndarray, np.ndarray]:
    """Log scene and noise-free intensity seen by ``tile``, extended by ``margin`` px on each side."""
    size = mosaic.condition.tile_px
    origin = np.asarray(mosaic.truth[tile], float) + mosaic.scene_offset_px - margin
    scene = np.maximum(sample_tile(mosaic.scene, origin, size + 2 * margin), 1e-3)
    return np.log(scene), scene[margin:margin + size, margin:margin + size] * mosaic.illumination


def _overlaps(mosaic: SimulatedMosaic, tile) -> list[tuple[tuple[slice, slice], np.ndarray, np.ndarray]]:
    """``(region of tile, its noise variance, the neighbour's)`` for each 4-neighbour overlapping ``tile``."""
    size = mosaic.condition.tile_px
    _, intensity = _patch(mosaic, tile, 0)
    variance = _log_variance(mosaic, intensity)
    overlaps = []
    for step in ((0, 1), (1, 0), (0, -1), (-1, 0)):
        other = (tile[0] + step[0], tile[1] + step[1])
        if other not in mosaic.truth:
            continue
        shift = np.rint(np.asarray(mosaic.truth[other]) - mosaic.truth[tile]).astype(int)
        low, high = np.maximum(shift, 0), np.minimum(shift + size, size)
        if np.any(high - low < 2):
            continue
        region = (slice(low[0], high[0]), slice(low[1], high[1]))
        _, other_intensity = _patch(mosaic, other, 0)
        other_region = (slice(low[0] - shift[0], high[0] - shift[0]),
                        slice(low[1] - shift[1], high[1] - shift[1]))
        overlaps.append((region, variance[region], _log_variance(mosaic, other_intensity[other_region])))
    return overlaps


def _fisher(log_scene: np.ndarray, overlaps: list, margin: int, area: float) -> np.ndarray:
    """2 x 2 Fisher information of the tile's translation over its overlaps (gain free per overlap)."""
    size = log_scene.shape[0] - 2 * margin
    gradients = np.stack(np.gradient(log_scene))[:, margin:margin + size, margin:margin + size]
    fisher = np.zeros((2, 2))
    for region, own, other in overlaps:
        g = gradients[(slice(None), *region)].reshape(2, -1)
        w = 1.0 / (area * (own + other).ravel())
        g = g - (g @ w / w.sum())[:, None]
        fisher += (g * w) @ g.T
    return fisher


def _known_separations(log_scene: np.ndarray, overlaps: list, margin: int, area: float) -> np.ndarray:
    """Known-content separation of every integer shift within ``margin`` px (see module).

    Over the pixels overlapping a neighbour both at the truth and at the
    shift ``d``: ``sqrt(sum (c(p) - c(p + d) - b)^2 / (A (a + b)))``. Shifts
    comparing less than :data:`MIN_AREA_FRACTION` of the true overlap area are ``inf``.
    """
    size = log_scene.shape[0] - 2 * margin
    centre = log_scene[margin:margin + size, margin:margin + size]
    shifts = np.arange(-margin, margin + 1)
    known, n_pixels = np.zeros((shifts.size, shifts.size)), np.zeros((shifts.size, shifts.size))
    for i, dy in enumerate(shifts):
        for j, dx in enumerate(shifts):
            moved = log_scene[margin + dy:margin + dy + size, margin + dx:margin + dx + size]
            for region, own, other in overlaps:
                rows = slice(max(region[0].start, region[0].start - dy), min(region[0].stop, region[0].stop - dy))
                cols = slice(max(region[1].start, region[1].start - dx), min(region[1].stop, region[1].stop - dx))
                if rows.stop - rows.start < 1 or cols.stop - cols.start < 1:
                    continue
                inner = (slice(rows.start - region[0].start, rows.stop - region[0].start),
                         slice(cols.start - region[1].start, cols.stop - region[1].start))
                difference = centre[rows, cols] - moved[rows, cols]
                difference = difference - difference.mean()
                known[i, j] += np.sum(difference ** 2 / (area * (own[inner] + other[inner])))
                n_pixels[i, j] += difference.size
    return np.where(n_pixels >= MIN_AREA_FRACTION * n_pixels[margin, margin], np.sqrt(known), np.inf)


def _expected_evidence(log_scene: np.ndarray, overlaps: list, margin: int, area: float) -> np.ndarray:
    """Expected joint NCC evidence of two noisy tiles at every integer shift within ``margin`` px.

    For each overlap and shift ``d``, over the pixels where the shifted
    tile meets the neighbour: the correlation of the noise-free log
    contents with each side's noise variance added to its variance,
    Fisher-transformed, times ``sqrt(n / A)``; summed over the overlaps and
    divided by ``sqrt(k)``. NaN where an overlap keeps less than
    :data:`MIN_AREA_FRACTION` of its true area.
    """
    size = log_scene.shape[0] - 2 * margin
    centre = log_scene[margin:margin + size, margin:margin + size]
    shifts = np.arange(-margin, margin + 1)
    joint = np.zeros((shifts.size, shifts.size))
    for region, own, other in overlaps:
        noise_own, noise_other = float(own.mean()), float(other.mean())
        true_area = own.size
        for i, dy in enumerate(shifts):
            for j, dx in enumerate(shifts):
                # Tile pixels p whose point p + d lies in the neighbour (its footprint at the truth).
                rows = slice(max(region[0].start - dy, 0), min(region[0].stop - dy, size))
                cols = slice(max(region[1].start - dx, 0), min(region[1].stop - dx, size))
                n = max(rows.stop - rows.start, 0) * max(cols.stop - cols.start, 0)
                if n < MIN_AREA_FRACTION * true_area:
                    joint[i, j] = np.nan
                    continue
                mine = centre[rows, cols] - centre[rows, cols].mean()
                theirs = log_scene[margin + dy + rows.start:margin + dy + rows.stop,
                                   margin + dx + cols.start:margin + dx + cols.stop]
                theirs = theirs - theirs.mean()
                correlation = np.mean(mine * theirs) / np.sqrt(
                    (np.mean(mine ** 2) + noise_own) * (np.mean(theirs ** 2) + noise_other))
                joint[i, j] += np.arctanh(np.clip(correlation, -1 + 1e-6, 1 - 1e-6)) * np.sqrt(n / area)
    return joint / np.sqrt(len(overlaps))


def tile_bound(mosaic: SimulatedMosaic, tile, search_px: int = SEARCH_PX) -> TileBound:
    """Position information of ``tile``'s overlaps (see module).

    Parameters
    ----------
    mosaic : SimulatedMosaic
        A drawn mosaic (with its noise-free ``scene``).
    tile : (row, col)
    search_px : int
        Half-width of the window of integer shifts tested.

    Returns
    -------
    TileBound
    """
    overlaps = _overlaps(mosaic, tile)
    if not overlaps:
        return TileBound(np.inf, 0.0, 0.0, 0.0, 0)
    log_scene, _ = _patch(mosaic, tile, search_px)
    area = _correlation_area(mosaic)
    eigenvalues = np.linalg.eigvalsh(_fisher(log_scene, overlaps, search_px, area))
    crb = float(1 / np.sqrt(eigenvalues[0])) if eigenvalues[0] > 0 else np.inf
    known = _known_separations(log_scene, overlaps, search_px, area)
    evidence = _expected_evidence(log_scene, overlaps, search_px, area)
    shifts = np.arange(-search_px, search_px + 1)
    distance = np.hypot(*np.meshgrid(shifts, shifts, indexing="ij"))
    rivals = evidence[(distance > RIVAL_PX) & np.isfinite(evidence)]
    margin = evidence[search_px, search_px] - max(rivals.max() if rivals.size else 0.0, 0.0)
    return TileBound(crb, float(known[distance > PLACED_PX].min()), float(evidence[search_px, search_px]),
                     float(margin), len(overlaps))
