"""Field curvature: the depth offset common to every tile of a slice, found and removed.

The scan optics image a flat surface on a curved one: the same depth offset
``c(u, v)`` (tile pixel ``u, v``) applies to every tile, so neighbouring
tiles meet at different depths. Estimation (:func:`estimate_curvature`): in a
few tiles near the centre, the tissue interface depth is found per A-line
block (steepest rise of the depth profile, sub-voxel); all tiles' interface
maps are fitted at once by least squares with

    depth = a + g_y (Y_t + u) + g_x (X_t + v) + q(u, v),
    q(u, v) = q_uu u^2 + q_vv v^2 + q_uv u v + q_u u + q_v v

(the tissue's own plane over the whole mosaic, ``(Y_t, X_t)`` the tile's
nominal origin, plus the part common to all tiles in tile coordinates); one
pass drops interface points more than 3 robust SD off. The correction moves
every A-line up by ``q(u, v) - q(centre)`` (linear interpolation along depth).
It is applied only when its peak-to-peak amplitude reaches
:data:`MIN_AMPLITUDE_PX`, the fit is stable (leaving any one tile out moves
it by at most :data:`MAX_SPREAD` of its amplitude) and it raises the mean NCC
of the overlaps between the sampled neighbouring tiles (at their nominal
offsets); the QC record holds the fit, the spread, the NCC before and after
and the decision. (On the simulator the NCC rose for spurious fits too: the
amplitude and stability gates are what keep flat slices untouched.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from linumpy.io.acquisition import SliceAcquisition
from linumpy.mosaic.galvo import GalvoShift, central_tiles, read_tile
from linumpy.stack.refine import normalized_cross_correlation

#: Tiles sampled for the estimate, nearest to the grid centre first.
MAX_TILES = 16
#: Lateral block (pixels) of one interface sample.
BLOCK_PX = 4
#: Smallest peak-to-peak curvature (voxels) corrected: on flat simulated slices the fit
#: found up to 0.9 voxel (surface bumps the tiles do not average out).
MIN_AMPLITUDE_PX = 1.0
#: The fit is unstable (not applied) when leaving one tile out moves it by more than this
#: fraction of its amplitude (peak to peak).
MAX_SPREAD = 0.5


@dataclass(frozen=True)
class Curvature:
    """A slice's field-curvature estimate.

    Attributes
    ----------
    coefficients : list of float
        ``[q_uu, q_vv, q_uv, q_u, q_v]`` in voxels, ``u, v`` in [-1, 1] across the tile.
    amplitude_px : float
        Peak-to-peak of ``q`` over the tile.
    ncc_before, ncc_after : float
        Mean NCC of the sampled tile overlaps without and with the correction.
    applied : bool
    status : str
        ``"applied"``, ``"no_gain"`` (NCC not improved), ``"flat"`` (amplitude
        below :data:`MIN_AMPLITUDE_PX`), ``"unstable"`` (leave-one-tile-out
        spread above :data:`MAX_SPREAD` of the amplitude), ``"too_few_points"``
        or ``"disabled"``.
    spread_px : float
        Largest peak-to-peak change of the fit when one tile is left out.
    """

    coefficients: list[float] = field(default_factory=lambda: [0.0] * 5)
    amplitude_px: float = 0.0
    ncc_before: float | None = None
    ncc_after: float | None = None
    applied: bool = False
    status: str = "disabled"
    spread_px: float = 0.0

    def offset_map(self, shape_yx: tuple[int, int]) -> np.ndarray:
        """``q(u, v) - q(0, 0)`` on a tile of ``shape_yx`` pixels (voxels of depth)."""
        return quadratic_map(self.coefficients, shape_yx)

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
            "curvature_spread_px": round(self.spread_px, 3),
            "curvature_coefficients_px": [round(c, 4) for c in self.coefficients],
            "curvature_overlap_ncc_before": None if self.ncc_before is None else round(self.ncc_before, 4),
            "curvature_overlap_ncc_after": None if self.ncc_after is None else round(self.ncc_after, 4),
        }


def tile_axes(shape_yx: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``u`` (column vector) and ``v`` (row vector) in [-1, 1] across a tile."""
    return np.linspace(-1.0, 1.0, shape_yx[0])[:, None], np.linspace(-1.0, 1.0, shape_yx[1])[None, :]


def quadratic_map(coefficients, shape_yx: tuple[int, int]) -> np.ndarray:
    """``q(u, v)`` of :class:`Curvature` on a tile, zero at its centre.

    Examples
    --------
    >>> quadratic_map([1.0, 1.0, 0.0, 0.0, 0.0], (3, 3))
    array([[2., 1., 2.],
           [1., 0., 1.],
           [2., 1., 2.]], dtype=float32)
    """
    u, v = tile_axes(shape_yx)
    uu, vv, uv, lu, lv = coefficients
    return (uu * u**2 + vv * v**2 + uv * u * v + lu * u + lv * v).astype(np.float32)


def shift_alines(volume: np.ndarray, shift_px: np.ndarray) -> np.ndarray:
    """Move each A-line of a ``(z, y, x)`` volume ``shift_px[y, x]`` samples deeper (linear, zeros in).

    Examples
    --------
    >>> shift_alines(np.arange(4.0)[:, None, None], np.array([[0.5]]))[:, 0, 0].tolist()
    [0.0, 0.5, 1.5, 2.5]
    """
    nz = volume.shape[0]
    source = np.arange(nz, dtype=np.float32)[:, None, None] - shift_px[None].astype(np.float32)
    low = np.floor(source).astype(np.int64)
    weight = (source - low).astype(np.float32)
    padded = np.concatenate([np.zeros_like(volume[:1]), volume, np.zeros_like(volume[:1])])
    below = np.take_along_axis(padded, np.clip(low + 1, 0, nz + 1), axis=0)
    above = np.take_along_axis(padded, np.clip(low + 2, 0, nz + 1), axis=0)
    return ((1 - weight) * below + weight * above).astype(volume.dtype)


def interface_depth(tile: np.ndarray, block: int = BLOCK_PX) -> np.ndarray:
    """Tissue interface depth (sub-voxel) per ``block x block`` A-lines, NaN where there is no tissue.

    The depth profile of each block is smoothed (Gaussian, 1.5 samples); the
    interface is the steepest rise within 3 samples of where the profile first
    climbs a third of the way from its minimum to its maximum (deeper tissue
    edges are not the surface), refined by a parabola; blocks whose rise is
    under 5 robust SD of the rises are left out.
    """
    nz, ny, nx = tile.shape
    blocks = tile[:, : ny // block * block, : nx // block * block].reshape(nz, ny // block, block, nx // block, block)
    profiles = ndimage.gaussian_filter1d(blocks.mean(axis=(2, 4), dtype=np.float64), 1.5, axis=0)
    low, high = profiles.min(axis=0), profiles.max(axis=0)
    first = np.argmax(profiles > low + (high - low) / 3.0, axis=0)
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


def fit_curvature(maps: dict[tuple[int, int], np.ndarray], tile_step_px: tuple[float, float],
                  tile_shape_yx: tuple[int, int]) -> tuple[list[float], int]:
    """Least-squares fit of the model of the module docstring; returns coefficients and points used."""
    rows, targets = [], []
    for (row, col), depth in maps.items():
        by, bx = depth.shape
        centres_y = (np.arange(by) + 0.5) * tile_shape_yx[0] / by
        centres_x = (np.arange(bx) + 0.5) * tile_shape_yx[1] / bx
        u = np.broadcast_to((2 * centres_y / tile_shape_yx[0] - 1)[:, None], depth.shape)
        v = np.broadcast_to((2 * centres_x / tile_shape_yx[1] - 1)[None, :], depth.shape)
        big_y = row * tile_step_px[0] + centres_y[:, None] + 0 * v
        big_x = col * tile_step_px[1] + centres_x[None, :] + 0 * u
        ok = np.isfinite(depth)
        scale = max(tile_shape_yx)
        rows.append(np.stack([np.ones(ok.sum()), big_y[ok] / scale, big_x[ok] / scale,
                              u[ok] ** 2, v[ok] ** 2, u[ok] * v[ok], u[ok], v[ok]], axis=1))
        targets.append(depth[ok])
    design, target = np.concatenate(rows), np.concatenate(targets)
    if len(target) < 3 * design.shape[1]:
        return [0.0] * 5, len(target)
    solution = np.linalg.lstsq(design, target, rcond=None)[0]
    residual = target - design @ solution
    keep = np.abs(residual) <= 3 * 1.4826 * np.median(np.abs(residual)) + 1e-9
    solution = np.linalg.lstsq(design[keep], target[keep], rcond=None)[0]
    return [float(c) for c in solution[3:]], int(keep.sum())


def overlap_ncc(tiles: dict[tuple[int, int], np.ndarray], tile_step_px: tuple[float, float]) -> float | None:
    """Mean NCC of the overlaps of neighbouring tiles at their nominal offsets (None without pairs)."""
    scores = []
    for (row, col), tile in tiles.items():
        _, ny, nx = tile.shape
        step_y, step_x = (int(round(s)) for s in tile_step_px)
        if (row, col + 1) in tiles and 0 < step_x < nx:
            scores.append(normalized_cross_correlation(tile[:, :, step_x:], tiles[(row, col + 1)][:, :, : nx - step_x]))
        if (row + 1, col) in tiles and 0 < step_y < ny:
            scores.append(normalized_cross_correlation(tile[:, step_y:, :], tiles[(row + 1, col)][:, : ny - step_y, :]))
    return float(np.mean(scores)) if scores else None


def estimate_slice_curvature(section: SliceAcquisition, galvo: GalvoShift) -> Curvature:
    """Read up to :data:`MAX_TILES` central tiles of a slice (galvo band fixed) and estimate its curvature."""
    tiles = {(t.row, t.col): read_tile(t, galvo) for t in central_tiles(section, MAX_TILES)}
    return estimate_curvature(tiles, section.tile_step_px)


def estimate_curvature(tiles: dict[tuple[int, int], np.ndarray], tile_step_px: tuple[float, float]) -> Curvature:
    """Estimate and decide the field-curvature correction from some tiles of a slice.

    Parameters
    ----------
    tiles : dict
        ``{(row, col): (z, y, x) tile}``, a few neighbouring tiles.
    tile_step_px : (float, float)
        Nominal distance between neighbouring tiles, pixels.
    """
    shape_yx = next(iter(tiles.values())).shape[1:]
    maps = {rc: interface_depth(t) for rc, t in tiles.items()}
    coefficients, n_points = fit_curvature(maps, tile_step_px, shape_yx)
    if n_points == 0 or coefficients == [0.0] * 5:
        return Curvature(status="too_few_points")
    offsets = quadratic_map(coefficients, shape_yx)
    amplitude = float(offsets.max() - offsets.min())
    spread = 0.0  # leave-one-tile-out: how far the fit moves without each tile
    for left_out in maps:
        others = {rc: m for rc, m in maps.items() if rc != left_out}
        change = offsets - quadratic_map(fit_curvature(others, tile_step_px, shape_yx)[0], shape_yx)
        spread = max(spread, float(change.max() - change.min()))
    before = overlap_ncc(tiles, tile_step_px)
    candidate = Curvature(coefficients, amplitude, before, None, True, "applied")
    after = overlap_ncc({rc: candidate.correct(t) for rc, t in tiles.items()}, tile_step_px)
    if amplitude < MIN_AMPLITUDE_PX:
        status = "flat"
    elif spread > MAX_SPREAD * amplitude:
        status = "unstable"
    elif before is not None and after is not None and after <= before:
        status = "no_gain"
    else:
        status = "applied"
    return Curvature(coefficients, amplitude, before, after, status == "applied", status, spread)
