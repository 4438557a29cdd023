"""Field curvature: the depth offset common to every tile of a slice, found and removed.

The scan optics image a flat surface on a curved one: the same depth offset
``q(u, v)`` (tile coordinates ``u, v`` in [-1, 1]) applies to every A-line of
every tile, so neighbouring tiles disagree on the depth of the same tissue.
Estimation (:func:`estimate_curvature`), on a few neighbouring tiles near the
centre of the grid: in the overlap of each pair of neighbours (nominal
offsets), the tissue interface depth is found per ``4 x 4`` A-line block in
both tiles (steepest rise of the depth profile, sub-voxel). At the same world
block the tissue is the same, so the difference of the two depths is
``q(u1, v1) - q(u2, v2)`` whatever the tissue's tilt, bumps or edges, plus
one offset per pair (a stage error on tilted tissue, a stage height step);
all differences are fitted at once by least squares with

    q(u, v) = q_uu u^2 + q_vv v^2 + q_uv u v

and a free offset per pair (a second pass drops points more than 3 robust
SD off). A linear term of ``q`` (optics centred off the tile) would only add
a constant to each pair's difference, so it cannot be told from the pair
offsets and is not estimated. The correction moves every
A-line up by ``q(u, v)`` minus its mean over the tile (Lanczos interpolation
along depth, :func:`shift_alines`): the slice's mean depth does not move, so slices corrected and
slices left as they are stay at the same depth for the stack.

Improve or skip: the correction is applied only when its peak-to-peak
amplitude reaches :data:`MIN_AMPLITUDE_PX`; when the border mismatch it
predicts on held-out pairs (each pair corrected by the fit of the others) is
at least :data:`MIN_GAIN` below the uncorrected mismatch (robust SD of the
interface depth difference); when leaving one pair out moves the fit by at most
:data:`MAX_SPREAD` of its amplitude; and when the mean NCC of the sampled
overlaps does not drop. The QC record holds the fit, both mismatches, the
spread, the NCC before and after and the decision (the first failed gate).
The pipelines decide once for the whole acquisition from several slices
(:mod:`linumpy.mosaic.curvature_pool`, the same fit and gates); a slice
decides alone only when the mosaic-grid step is run without that decision.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from linumpy.io.acquisition import SliceAcquisition
from linumpy.mosaic.galvo import GalvoShift, central_tiles, read_tile
from linumpy.parallel import ordered_map

#: Tiles sampled for the estimate, nearest to the grid centre first ...
MAX_TILES = 16
#: ... fewer when they would take more memory than this (bytes, float32 tiles held whole) ...
TILE_MEMORY_BYTES = 512 * 2**20
#: ... but never fewer than a 2 x 2 block.
MIN_TILES = 4
#: Lateral block (pixels) of one interface sample.
BLOCK_PX = 4
#: Smallest peak-to-peak curvature (voxels) corrected.
MIN_AMPLITUDE_PX = 1.0
#: The fit is unstable (not applied) when leaving one overlap pair out moves it by more than
#: this fraction of its amplitude (peak to peak).
MAX_SPREAD = 0.5
#: Smallest relative drop of the held-out border mismatch (robust SD) for the correction to apply
#: (0.02 corrected more 1-1.5 voxel curvatures on seeds 10-12 but one more slice of the ``harsh``
#: chain test, whose stack boundary step then rose from 0.082 to 0.108).
MIN_GAIN = 0.05
#: The interface is looked for near where a block's smoothed depth profile first climbs this
#: fraction of its range (1/3 locked onto a deep focal peak under the tissue of the simulated
#: ``harsh`` condition: fit errors up to 15 voxels, against 0.7 at 0.15).
ONSET_FRACTION = 0.15
#: A-lines shifted at once by :func:`shift_alines` (bounds its temporaries to a few MB).
SLAB_ALINES = 1024
#: Half-width (samples) of the Lanczos kernel of :func:`shift_alines`. Linear interpolation averaged
#: neighbouring samples by up to half and half, a depth smoothing that varies across the tile; the stack's
#: z registration then placed every slice ~0.03 voxel deeper than the last (``harsh`` seed 4, 8 slices:
#: 0.46 voxel cumulative against 0.27 uncorrected; 0.23 with this kernel).
LANCZOS_A = 3
#: Fewest interface points (blocks in overlaps) for a fit.
MIN_POINTS = 40
#: Fitted terms of ``q``: ``u^2, v^2, u v`` (a linear term is indistinguishable from an
#: offset between two tiles, e.g. a stage error on tilted tissue, so it is not estimated).
N_TERMS = 3


@dataclass(frozen=True)
class Curvature:
    """A slice's field-curvature estimate.

    Attributes
    ----------
    coefficients : list of float
        ``[q_uu, q_vv, q_uv]`` in voxels, ``u, v`` in [-1, 1] across the tile.
    amplitude_px : float
        Peak-to-peak of ``q`` over the tile.
    ncc_before, ncc_after : float
        Mean NCC of the sampled tile overlaps without and with the correction.
    applied : bool
    status : str
        ``"applied"``, ``"flat"`` (amplitude below :data:`MIN_AMPLITUDE_PX`),
        ``"no_gain"`` (held-out border mismatch not reduced by :data:`MIN_GAIN`),
        ``"unstable"`` (leave-one-pair-out spread above :data:`MAX_SPREAD` of
        the amplitude), ``"ncc_worse"`` (overlap NCC lowered),
        ``"too_few_points"`` or ``"disabled"``.
    spread_px : float
        Largest peak-to-peak change of the fit over a tile when one overlap pair is left out.
    mismatch_before_px, mismatch_after_px : float
        Robust SD of the interface depth difference across the sampled tile borders without
        correction and with the held-out correction (voxels).
    n_points : int
        Interface blocks in the fit.
    n_tiles : int
        Tiles the estimate was made from (0 when not estimated from a slice).
    source : str
        ``"slice"`` (estimated and decided on the slice's own tiles) or
        ``"acquisition"`` (one estimate and decision pooled over several
        slices, :mod:`linumpy.mosaic.curvature_pool`).
    """

    coefficients: list[float] = field(default_factory=lambda: [0.0] * N_TERMS)
    amplitude_px: float = 0.0
    ncc_before: float | None = None
    ncc_after: float | None = None
    applied: bool = False
    status: str = "disabled"
    spread_px: float = 0.0
    mismatch_before_px: float | None = None
    mismatch_after_px: float | None = None
    n_points: int = 0
    n_tiles: int = 0
    source: str = "slice"

    def offset_map(self, shape_yx: tuple[int, int]) -> np.ndarray:
        """``q(u, v)`` minus its mean over a tile of ``shape_yx`` pixels (voxels of depth)."""
        offsets = quadratic_map(self.coefficients, shape_yx)
        return offsets - offsets.mean(dtype=np.float64).astype(np.float32)

    def correct(self, tile: np.ndarray) -> np.ndarray:
        """The tile with every A-line moved up by its offset (unchanged when not applied)."""
        if not self.applied:
            return tile
        return shift_alines(tile, -self.offset_map(tile.shape[1:]))

    def metrics(self) -> dict[str, Any]:
        """The QC record fields (``curvature_*``)."""
        return {
            "curvature_applied": self.applied,
            "curvature_status": self.status,
            "curvature_amplitude_px": round(self.amplitude_px, 3),
            "curvature_spread_px": _rounded(self.spread_px, 3),
            "curvature_coefficients_px": [round(c, 4) for c in self.coefficients],
            "curvature_overlap_ncc_before": _rounded(self.ncc_before),
            "curvature_overlap_ncc_after": _rounded(self.ncc_after),
            "curvature_border_mismatch_before_px": _rounded(self.mismatch_before_px),
            "curvature_border_mismatch_after_px": _rounded(self.mismatch_after_px),
            "curvature_n_points": self.n_points,
            "curvature_n_tiles": self.n_tiles,
            "curvature_source": self.source,
        }

    def flags(self) -> list[str]:
        """Messages for the QC record when a curvature was found but left in, or could not be estimated."""
        where = "in the sampled slices" if self.source == "acquisition" else "in the sampled tile overlaps"
        if self.status in ("no_gain", "unstable", "ncc_worse"):
            return [f"field curvature of {self.amplitude_px:.1f} voxels found but not removed ({self.status}): "
                    "tiles may meet at different depths"]
        if self.status == "too_few_points":
            return [f"field curvature not estimated: {self.n_points} interface points {where}"]
        return []


def _rounded(value: float | None, digits: int = 4) -> float | None:
    """``value`` rounded, None for None or non-finite (JSON has no NaN)."""
    return None if value is None or not np.isfinite(value) else round(float(value), digits)


def tile_axes(shape_yx: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``u`` (column vector) and ``v`` (row vector) in [-1, 1] across a tile."""
    return np.linspace(-1.0, 1.0, shape_yx[0])[:, None], np.linspace(-1.0, 1.0, shape_yx[1])[None, :]


def quadratic_map(coefficients, shape_yx: tuple[int, int]) -> np.ndarray:
    """``q(u, v)`` of :class:`Curvature` on a tile, zero at its centre.

    Examples
    --------
    >>> quadratic_map([1.0, 1.0, 0.0], (3, 3))
    array([[2., 1., 2.],
           [1., 0., 1.],
           [2., 1., 2.]], dtype=float32)
    """
    u, v = tile_axes(shape_yx)
    uu, vv, uv = coefficients
    return (uu * u**2 + vv * v**2 + uv * u * v).astype(np.float32)


def shift_alines(volume: np.ndarray, shift_px: np.ndarray) -> np.ndarray:
    """Move each A-line of a ``(z, y, x)`` volume ``shift_px[y, x]`` samples deeper (Lanczos interpolation).

    Each output sample is the Lanczos-windowed sinc (:data:`LANCZOS_A`
    samples each side, weights normalised to sum 1) of the A-line at the
    source depth, clamped to the range of the samples it weighs (no
    ringing beyond them); a whole-sample shift moves the samples unchanged.
    Where no data come in (the top or bottom few samples), the end sample
    is repeated: zeros there would drag the agarose depth profile of the
    focus estimate to zero at the moved end and clip it.

    Works on slabs of :data:`SLAB_ALINES` A-lines so that the weight
    temporaries stay in cache and small; each A-line is computed alone,
    so the result does not depend on the slabs.

    Examples
    --------
    >>> shift_alines(np.arange(6.0)[:, None, None], np.array([[-1.0]]))[:, 0, 0].tolist()
    [1.0, 2.0, 3.0, 4.0, 5.0, 5.0]
    >>> round(float(shift_alines(np.arange(8.0)[:, None, None], np.array([[-0.5]]))[3, 0, 0]), 4)
    3.5
    """
    out = np.empty_like(volume)
    rows = max(1, SLAB_ALINES // max(1, volume.shape[2]))
    for y0 in range(0, volume.shape[1], rows):
        part = slice(y0, y0 + rows)
        out[:, part] = _shift_slab(volume[:, part], shift_px[part])
    return out


def _shift_slab(volume: np.ndarray, shift_px: np.ndarray) -> np.ndarray:
    """:func:`shift_alines` of one slab of A-lines.

    The A-lines moved by the same whole number of samples are done together,
    their taps read as plain rows (the shift map is smooth: a few groups).
    """
    nz = volume.shape[0]
    source = -np.asarray(shift_px, dtype=np.float32)  # sample z reads the A-line at z + source
    whole = np.floor(source).astype(np.int64)
    fraction = source - whole
    taps = np.arange(1 - LANCZOS_A, LANCZOS_A + 1)
    weights = [np.sinc(fraction - k) * np.sinc((fraction - k) / LANCZOS_A) for k in taps]
    total_weight = np.sum(weights, axis=0)
    weights = [(weight / total_weight).astype(np.float32) for weight in weights]
    out = np.empty_like(volume)
    for move in np.unique(whole):
        group = whole == move
        alines = volume[:, group]
        rows = np.clip(np.arange(nz)[:, None] + move + taps[None, :], 0, nz - 1)
        result = low = high = None
        for tap, weight in enumerate(weights):
            sample = alines[rows[:, tap]]
            term = weight[group][None] * sample
            if result is None:
                result, low, high = term, sample, sample
            else:
                result += term
                low, high = np.minimum(low, sample), np.maximum(high, sample)
        out[:, group] = np.clip(result, low, high)
    return out


def interface_depth(tile: np.ndarray, block: int = BLOCK_PX) -> np.ndarray:
    """Tissue interface depth (sub-voxel) per ``block x block`` A-lines, NaN where there is no tissue.

    The depth profile of each block is smoothed (Gaussian, 1.5 samples); the
    interface is the steepest rise within 3 samples of where the profile first
    climbs :data:`ONSET_FRACTION` of the way from its minimum to its maximum
    (deeper tissue edges and a deep focus are not the surface), refined by a parabola; blocks whose rise is
    under 5 robust SD of the rises are left out.
    """
    from scipy import ndimage  # here, not at module level: applying a pooled decision needs no scipy

    nz, ny, nx = tile.shape
    blocks = tile[:, : ny // block * block, : nx // block * block].reshape(nz, ny // block, block, nx // block, block)
    profiles = ndimage.gaussian_filter1d(blocks.mean(axis=(2, 4), dtype=np.float64), 1.5, axis=0)
    low, high = profiles.min(axis=0), profiles.max(axis=0)
    first = np.argmax(profiles > low + (high - low) * ONSET_FRACTION, axis=0)
    rise = np.diff(profiles, axis=0)
    near = np.abs(np.arange(nz - 1)[:, None, None] - first[None]) <= 3
    peak = np.argmax(np.where(near, rise, -np.inf), axis=0)
    strength = np.take_along_axis(rise, peak[None], axis=0)[0]
    inner = np.clip(peak, 1, nz - 3)
    left = np.take_along_axis(rise, (inner - 1)[None], axis=0)[0]
    centre = np.take_along_axis(rise, inner[None], axis=0)[0]
    right = np.take_along_axis(rise, (inner + 1)[None], axis=0)[0]
    curvature = left - 2 * centre + right
    offset = np.divide(0.5 * (left - right), curvature, out=np.zeros_like(centre), where=curvature < 0)
    depth = inner + np.clip(offset, -0.5, 0.5) + 0.5  # the rise d[k] sits between samples k and k + 1
    spread = 1.4826 * np.median(np.abs(rise - np.median(rise))) + 1e-12
    return np.where(strength > 5 * spread, depth, np.nan)


def _terms(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The fitted terms of ``q`` (``u^2, v^2, u v``) at tile coordinates ``u, v`` (last axis)."""
    return np.stack([u**2, v**2, u * v], axis=-1)


def neighbour_strips(tiles: dict[tuple[int, int], np.ndarray], tile_step_px: tuple[float, float]
                     ) -> Iterator[tuple[np.ndarray, np.ndarray, tuple[int, int]]]:
    """The overlapping strips of neighbouring tiles at their nominal offsets.

    Yields ``(strip of the first tile, same world pixels in the second tile,
    (y, x) origin of the strip in the first tile)``; the strip starts at
    ``(0, 0)`` of the second tile. Right then lower neighbours, tiles in order.
    """
    step_y, step_x = (int(round(s)) for s in tile_step_px)
    for row, col in sorted(tiles):
        tile = tiles[(row, col)]
        _, ny, nx = tile.shape
        if (row, col + 1) in tiles and 0 < step_x < nx:
            yield tile[:, :, step_x:], tiles[(row, col + 1)][:, :, : nx - step_x], (0, step_x)
        if (row + 1, col) in tiles and 0 < step_y < ny:
            yield tile[:, step_y:, :], tiles[(row + 1, col)][:, : ny - step_y, :], (step_y, 0)


def border_differences(tiles: dict[tuple[int, int], np.ndarray], tile_step_px: tuple[float, float]
                       ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per overlapping pair: the interface depth difference (first - second) and its model terms.

    Each element is ``(design, difference)``: ``difference`` the depth of the
    interface in the first tile minus the second at the same world block
    (blocks where both found it; pairs with fewer than 2 such blocks are
    left out), ``design`` the ``q`` terms at the block in
    the first tile minus those in the second (so ``difference ~ design @ q``:
    the tissue itself cancels).
    """
    shape_yx = next(iter(tiles.values())).shape[1:]
    pairs = []
    for first, second, (y0, x0) in neighbour_strips(tiles, tile_step_px):
        depth = interface_depth(first) - interface_depth(second)
        by, bx = depth.shape
        rows = (np.arange(by) + 0.5) * BLOCK_PX - 0.5
        cols = (np.arange(bx) + 0.5) * BLOCK_PX - 0.5
        to_u = 2.0 / max(shape_yx[0] - 1, 1)
        to_v = 2.0 / max(shape_yx[1] - 1, 1)
        u2, v2 = np.meshgrid(rows * to_u - 1, cols * to_v - 1, indexing="ij")
        design = _terms(u2 + y0 * to_u, v2 + x0 * to_v) - _terms(u2, v2)
        ok = np.isfinite(depth)
        if ok.sum() >= 2:
            pairs.append((design[ok], depth[ok]))
    return pairs


def _centred(pairs: list[tuple[np.ndarray, np.ndarray]], masks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Design and differences of the pairs' kept points, each pair's mean removed (its own offset)."""
    designs, targets = [], []
    for (design, difference), keep in zip(pairs, masks, strict=True):
        if keep.sum() >= 2:
            designs.append(design[keep] - design[keep].mean(axis=0))
            targets.append(difference[keep] - difference[keep].mean())
    if not designs:
        return np.zeros((0, N_TERMS)), np.zeros(0)
    return np.concatenate(designs), np.concatenate(targets)


def fit_curvature(pairs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray | None, int]:
    """Least squares ``difference ~ design @ q + pair offset``, a second pass without points > 3 robust SD off.

    Returns the ``[q_uu, q_vv, q_uv]`` coefficients (None with fewer than
    :data:`MIN_POINTS` points) and the number of points kept.
    """
    masks = [np.ones(len(t), bool) for _, t in pairs]
    design, target = _centred(pairs, masks)
    if len(target) < MIN_POINTS:
        return None, len(target)
    solution = np.linalg.lstsq(design, target, rcond=None)[0]
    residual = target - design @ solution
    limit = 3 * 1.4826 * np.median(np.abs(residual)) + 1e-9
    masks = []
    for d, t in pairs:
        off = t - d @ solution
        masks.append(np.abs(off - np.median(off)) <= limit)
    design, target = _centred(pairs, masks)
    return np.linalg.lstsq(design, target, rcond=None)[0], len(target)


def held_out_mismatch(pairs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[float, float, float]:
    """Border mismatch without and with a correction fitted on the other pairs (leave one pair out).

    Returns the robust SD (1.4826 x median absolute value) of the interface
    depth difference over all pairs' blocks, each pair's median difference
    removed, without correction and with each pair corrected by the fit of
    the others; and the largest peak-to-peak change of ``q`` over a tile
    between the full fit and a leave-one-out fit (voxels). Robust, not RMS:
    blocks whose interface was found at the wrong depth (dark tissue, a
    cavity, a deep focus) give a heavy tail that dominated an RMS; on
    ``harsh`` seed 6 (8 slices) a fit within 0.1 voxel of the 3-voxel truth
    lowered the RMS by 3.5% (left in, ``no_gain``) and the robust SD by 50%.
    """
    full, _ = fit_curvature(pairs)
    grid = _terms(*np.meshgrid(np.linspace(-1, 1, 9), np.linspace(-1, 1, 9), indexing="ij")).reshape(-1, N_TERMS)
    before, after, spread = [], [], 0.0
    for index, (design, difference) in enumerate(pairs):
        others, _ = fit_curvature(pairs[:index] + pairs[index + 1 :])
        if others is None:
            continue
        corrected = difference - design @ others
        before.append(difference - np.median(difference))
        after.append(corrected - np.median(corrected))
        change = grid @ (full - others)
        spread = max(spread, float(change.max() - change.min()))
    if not before:
        return float("nan"), float("nan"), float("inf")
    return _robust_sd(before), _robust_sd(after), spread


def _robust_sd(parts: list[np.ndarray]) -> float:
    return float(1.4826 * np.median(np.abs(np.concatenate(parts))))


def overlap_ncc(
    tiles: dict[tuple[int, int], np.ndarray],
    tile_step_px: tuple[float, float],
    correction: Curvature | None = None,
    workers: int | None = None,
) -> float | None:
    """Mean of :func:`overlap_scores` (None without pairs)."""
    scores = overlap_scores(tiles, tile_step_px, correction, workers)
    return float(np.mean(scores)) if scores else None


def overlap_scores(
    tiles: dict[tuple[int, int], np.ndarray],
    tile_step_px: tuple[float, float],
    correction: Curvature | None = None,
    workers: int | None = None,
) -> list[float]:
    """NCC of each overlap of neighbouring tiles at their nominal offsets.

    With ``correction`` (applied or not), the overlaps of the corrected tiles:
    each strip is corrected alone (an A-line's shift does not depend on the
    others), by ``workers`` threads (default: :func:`linumpy.parallel.default_workers`).
    """
    from linumpy.stack.refine import normalized_cross_correlation  # scipy and skimage: only when estimating

    shift = None if correction is None else -correction.offset_map(next(iter(tiles.values())).shape[1:])

    def score(strips: tuple[np.ndarray, np.ndarray, tuple[int, int]]) -> float:
        first, second, (y0, x0) = strips
        if shift is not None:
            h, w = first.shape[1:]
            first = shift_alines(first, shift[y0 : y0 + h, x0 : x0 + w])
            second = shift_alines(second, shift[:h, :w])
        return normalized_cross_correlation(first, second)

    return list(ordered_map(score, neighbour_strips(tiles, tile_step_px), workers))


def read_central_tiles(section: SliceAcquisition, galvo: GalvoShift, workers: int | None = None
                       ) -> dict[tuple[int, int], np.ndarray]:
    """Read up to :data:`MAX_TILES` central tiles of a slice (galvo band fixed), ``{(row, col): tile}``.

    Fewer tiles are read when :data:`MAX_TILES` of them would take more than
    :data:`TILE_MEMORY_BYTES` (at least :data:`MIN_TILES`): the estimate holds
    its tiles whole, and real tiles reach hundreds of MB. The tiles are read by
    ``workers`` threads (default: :func:`linumpy.parallel.default_workers`).
    """
    n_tiles = int(np.clip(TILE_MEMORY_BYTES // (4 * np.prod(section.tile_shape)), MIN_TILES, MAX_TILES))
    return dict(ordered_map(lambda t: ((t.row, t.col), read_tile(t, galvo)), central_tiles(section, n_tiles), workers))


def estimate_slice_curvature(section: SliceAcquisition, galvo: GalvoShift, workers: int | None = None) -> Curvature:
    """Estimate a slice's curvature from its central tiles (:func:`read_central_tiles`), decided alone.

    The overlaps are compared by ``workers`` threads (default:
    :func:`linumpy.parallel.default_workers`).
    """
    tiles = read_central_tiles(section, galvo, workers)
    return replace(estimate_curvature(tiles, section.tile_step_px, workers), n_tiles=len(tiles))


def fit_candidate(pairs: list[tuple[np.ndarray, np.ndarray]], shape_yx: tuple[int, int]) -> Curvature:
    """Fit ``q`` on the border differences and apply every gate but the overlap NCC.

    Parameters
    ----------
    pairs : list
        :func:`border_differences` of one slice's tiles, or of several slices' together.
    shape_yx : (int, int)
        Lateral tile shape (pixels), for the amplitude of ``q`` over a tile.

    Returns
    -------
    Curvature
        Status ``"too_few_points"``, ``"flat"``, ``"no_gain"``, ``"unstable"``
        (the first gate that failed), or ``"applied"`` with ``applied`` True:
        then only :func:`ncc_gated` is left to decide.
    """
    coefficients, n_points = fit_curvature(pairs)
    if coefficients is None:
        return Curvature(status="too_few_points", n_points=n_points)
    offsets = quadratic_map(coefficients, shape_yx)
    amplitude = float(offsets.max() - offsets.min())
    mismatch_before, mismatch_after, spread = held_out_mismatch(pairs)
    if amplitude < MIN_AMPLITUDE_PX:
        status = "flat"
    elif not mismatch_after <= (1.0 - MIN_GAIN) * mismatch_before:
        status = "no_gain"
    elif spread > MAX_SPREAD * amplitude:
        status = "unstable"
    else:
        status = "applied"
    return Curvature([float(c) for c in coefficients], amplitude, applied=status == "applied", status=status,
                     spread_px=spread, mismatch_before_px=mismatch_before, mismatch_after_px=mismatch_after,
                     n_points=n_points)


def ncc_gated(candidate: Curvature, ncc_before: float | None, ncc_after: float | None) -> Curvature:
    """The last gate: an applied candidate whose correction lowers the mean overlap NCC is not applied."""
    worse = candidate.applied and ncc_before is not None and ncc_after is not None and ncc_after < ncc_before
    return replace(candidate, ncc_before=ncc_before, ncc_after=ncc_after, applied=candidate.applied and not worse,
                   status="ncc_worse" if worse else candidate.status)


def estimate_curvature(
    tiles: dict[tuple[int, int], np.ndarray], tile_step_px: tuple[float, float], workers: int | None = None
) -> Curvature:
    """Estimate the field curvature from some neighbouring tiles of a slice and decide whether to remove it.

    Parameters
    ----------
    tiles : dict
        ``{(row, col): (z, y, x) tile}``, a few neighbouring tiles.
    tile_step_px : (float, float)
        Nominal distance between neighbouring tiles, pixels.
    workers : int, optional
        Threads comparing the overlaps for the NCC gate (default:
        :func:`linumpy.parallel.default_workers`; the result does not depend on it).

    Returns
    -------
    Curvature
        Applied only when every gate of the module docstring passes; the
        status names the first gate that failed.
    """
    candidate = fit_candidate(border_differences(tiles, tile_step_px), next(iter(tiles.values())).shape[1:])
    if candidate.status == "too_few_points":
        return candidate
    ncc_before = overlap_ncc(tiles, tile_step_px, workers=workers)
    ncc_after = overlap_ncc(tiles, tile_step_px, candidate, workers)
    return ncc_gated(candidate, ncc_before, ncc_after)
