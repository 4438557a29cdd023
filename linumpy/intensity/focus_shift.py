"""Where the mosaic step moved each A-line, and whether the focus moved with it.

The mosaic step removes the field curvature by moving every A-line of a tile
up by ``a(u, v) = q(u, v) - mean q`` voxels (:mod:`linumpy.mosaic.curvature`).
The tissue then lies flat, but the focus may not: when the optics image a
curved surface at one optical path length (the focal surface follows the path
length) the focus moved with the content and sits at one depth of the
stitched slice; when the focal surface is flat and only the path length is
curved, the focus stayed at one depth of the *tile* and after the shift sits
at ``z_f - a(y, x)``: one focus profile per slice is then wrong by up to the
curvature's amplitude, A-line by A-line.

:class:`AppliedShift` rebuilds ``a`` at every A-line of a stitched slice (or
mosaic grid) from the attributes the steps write (the curvature's
coefficients, the tile positions, the blend), block by block;
:func:`focus_displacement` measures, on the agarose cells of the axial step's
statistics, how far the focus moved with the shift (the slope ``beta``: 0 =
the focus stayed in place in the slice, 1 = it stayed in place in the tile);
:func:`decide` keeps one profile unless the data clearly say ``beta`` is 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from linumpy.mosaic.options import APPLIED_CURVATURE_ATTRIBUTE
from linumpy.stitching.blend import Box, feather_weights, placement_origins, tiles_in_box

#: The focus is read at each A-line's applied shift when the fitted slope is at least this ...
MIN_SLOPE = 0.5
#: ... and at least this many standard errors from 0 (the one-profile hypothesis); otherwise one profile.
MIN_SLOPE_Z = 3.0
#: Fewest agarose cells for the slope.
MIN_CELLS = 10


@dataclass(frozen=True)
class AppliedShift:
    """The up-shift the mosaic step applied to every A-line of a slice (voxels), blend-weighted.

    Attributes
    ----------
    offsets : ndarray, shape (ty, tx)
        ``q - mean q`` of :class:`linumpy.mosaic.curvature.Curvature` on a tile: an A-line at tile
        pixel ``(i, j)`` was moved up by ``offsets[i, j]`` voxels.
    weights : ndarray, shape (ty, tx)
        The blend weight of each tile pixel (feather ramps; ones for the other blends and for a mosaic grid).
    origins : dict
        ``(row, col) -> (y, x)`` integer origin of each tile in the slice.
    """

    offsets: np.ndarray
    weights: np.ndarray
    origins: Mapping[tuple[int, int], tuple[int, int]]

    @classmethod
    def of(cls, attributes: Mapping[str, Any]) -> AppliedShift | None:
        """The shift of a stitched slice or mosaic grid from its ``linumpy`` attributes (None: none applied).

        A stitched slice (``tile_positions_px``) places its tiles as the fusion did
        (:func:`linumpy.stitching.blend.placement_origins`) with its blend's weights (``tile_blend``,
        feather when not recorded); a mosaic grid lays its tiles side by side.
        """
        coefficients = attributes.get(APPLIED_CURVATURE_ATTRIBUTE)
        if not coefficients or "tile_shape" not in attributes:
            return None
        from linumpy.mosaic.curvature import quadratic_map  # only with a curvature: it imports the tile readers

        tile_yx = tuple(int(v) for v in attributes["tile_shape"][1:])
        offsets = quadratic_map(coefficients, tile_yx)
        offsets -= offsets.mean(dtype=np.float64).astype(np.float32)
        if "tile_positions_px" in attributes:
            positions = {(int(r), int(c)): (float(y), float(x)) for r, c, y, x in attributes["tile_positions_px"]}
            origins, _ = placement_origins(positions)
            overlap = [t - float(s) for t, s in zip(tile_yx, attributes.get("tile_step_px", tile_yx))]
            feather = attributes.get("tile_blend", "feather") == "feather"
            weights = feather_weights(tile_yx, overlap) if feather else np.ones(tile_yx, np.float32)
        else:
            tiles = attributes.get("tiles_present") or [[r, c] for r in range(attributes["grid_shape"][0])
                                                         for c in range(attributes["grid_shape"][1])]
            origins = {(int(r), int(c)): (int(r) * tile_yx[0], int(c) * tile_yx[1]) for r, c in tiles}
            weights = np.ones(tile_yx, np.float32)
        return cls(offsets, weights, origins)

    def region(self, rows: slice, cols: slice) -> np.ndarray:
        """The blend-weighted shift of the A-lines ``[rows, cols]`` of the slice, float32 ``(h, w)``.

        0 where no tile lies. An A-line of an overlap mixes its tiles' A-lines with their blend weights:
        its shift is their weighted mean.
        """
        box = Box(rows.start, rows.stop, cols.start, cols.stop)
        total = np.zeros(box.shape, np.float64)
        weight = np.zeros(box.shape, np.float64)
        for tile, part in tiles_in_box(box, self.origins, self.offsets.shape):
            oy, ox = self.origins[tile]
            out = (slice(part.y0 + oy - box.y0, part.y1 + oy - box.y0),
                   slice(part.x0 + ox - box.x0, part.x1 + ox - box.x0))
            within = (slice(part.y0, part.y1), slice(part.x0, part.x1))
            total[out] += self.weights[within] * self.offsets[within]
            weight[out] += self.weights[within]
        return np.divide(total, weight, out=np.zeros(box.shape), where=weight > 0).astype(np.float32)


def divide_by_focus(signal: np.ndarray, profile: np.ndarray, shift: np.ndarray, first: int = 0) -> np.ndarray:
    """Divide each A-line of ``signal`` (in place) by the focus profile read at its own shift; return it.

    ``profile`` is the focus in the tiles' frame (one value per depth); an A-line moved up by ``shift[y, x]``
    voxels sees at its depth ``z`` the focus of tile depth ``z + shift`` (linear interpolation, the end values
    beyond the range). Plane by plane: no temporary larger than a plane. ``first``: the depth of
    ``signal``'s first plane (a group of planes of a deeper block).

    Examples
    --------
    >>> divide_by_focus(np.ones((3, 1, 2), np.float32), np.array([1.0, 0.5, 0.25]), np.array([[0.0, 1.0]]))[:, 0]
    array([[1., 2.],
           [2., 4.],
           [4., 4.]], dtype=float32)
    """
    depths = np.arange(profile.size)
    for z in range(signal.shape[0]):
        signal[z] /= np.interp(first + z + shift, depths, profile).astype(np.float32)
    return signal


@dataclass(frozen=True)
class Displacement:
    """How far the agarose cells' focus moved with their applied shift (:func:`focus_displacement`)."""

    slope: float | None  # beta: 0 = one focus depth in the slice, 1 = one focus depth in the tile
    slope_sd: float | None  # jackknife standard error (over the cells)
    cells: int  # agarose cells in the fit
    shift_sd_px: float  # spread (SD) of the cells' mean applied shift


def focus_displacement(signal: np.ndarray, lines: np.ndarray, gains: np.ndarray, shifts: np.ndarray,
                       depths: np.ndarray) -> Displacement:
    """Regress each agarose cell's displacement of the common profile on its mean applied shift.

    Model: a cell moved up by ``x_c`` (its mean shift less the cells' mean) sees the profile at
    ``P(z + beta x_c) ~ P(z) + beta x_c P'(z)``, so ``signal[c, z] - gain_c lines P(z) ~ beta gain_c
    lines x_c P'(z)``. ``P`` is the cells' rank-1 profile (:func:`linumpy.intensity.focus.cell_gains`'s
    model), ``P'`` its centred difference; the regressor is made orthogonal to each cell's ``lines P``
    (its gain takes what a level change explains) and every sample is weighted by ``1 / lines`` (a sum
    of ``lines`` A-lines), as the gains are fitted. Only ``depths`` (the well-sampled ones) enter.
    The standard error is the jackknife's, leaving one cell out.

    Parameters
    ----------
    signal, lines : ndarray, shape (cells, depth)
        The cells' sums (noise floor removed, 0 where a cell does not contribute) and A-line counts.
    gains : ndarray, shape (cells,)
    shifts : ndarray, shape (cells,)
        Each cell's mean applied up-shift (voxels).
    depths : ndarray of bool, shape (depth,)

    Returns
    -------
    Displacement

    Examples
    --------
    >>> z = np.arange(60.0); focus = lambda s: 1 / (1 + ((z + s - 30) / 8) ** 2)
    >>> shifts = np.linspace(-1.5, 1.5, 12)
    >>> signal = np.array([focus(s) for s in shifts]); lines = np.ones_like(signal)
    >>> round(focus_displacement(signal, lines, np.ones(12), shifts, np.ones(60, bool)).slope, 1)
    1.0
    """
    x = shifts - np.average(shifts, weights=lines.sum(axis=1))
    n = lines * depths[None]
    weight = (gains[:, None] * n).sum(axis=0)
    profile = np.divide((signal * depths[None]).sum(axis=0), weight, out=np.zeros(weight.shape), where=weight > 0)
    slope_of = gradient_within(profile, depths)
    inverse = np.divide(1.0, n, out=np.zeros(n.shape), where=n > 0)
    level = n * profile  # each cell's own level term
    regressor = gains[:, None] * n * x[:, None] * slope_of
    residual = (signal - gains[:, None] * level) * (n > 0)
    scale = np.divide((regressor * level * inverse).sum(axis=1), (level**2 * inverse).sum(axis=1),
                      out=np.zeros(len(x)), where=(level**2).sum(axis=1) > 0)
    regressor = regressor - scale[:, None] * level
    numerator = (residual * regressor * inverse).sum(axis=1)
    denominator = (regressor**2 * inverse).sum(axis=1)
    cells = int(np.count_nonzero(denominator > 0))
    shift_sd = float(np.sqrt(np.average(x**2, weights=lines.sum(axis=1)))) if lines.sum() > 0 else 0.0
    if cells < MIN_CELLS or denominator.sum() <= 0:
        return Displacement(None, None, cells, shift_sd)
    slope = float(numerator.sum() / denominator.sum())
    kept = denominator > 0
    left_out = (numerator.sum() - numerator[kept]) / (denominator.sum() - denominator[kept])
    sd = float(np.sqrt((cells - 1) / cells * np.sum((left_out - left_out.mean()) ** 2)))
    return Displacement(slope, sd, cells, shift_sd)


def gradient_within(profile: np.ndarray, depths: np.ndarray) -> np.ndarray:
    """The centred difference of ``profile`` inside each run of consecutive ``depths``, 0 elsewhere.

    One-sided at a run's ends and 0 on a run of one depth: the profile outside ``depths`` (0 where no cell
    is well sampled) never enters. Across a run's end the profile's step to 0 would read as a slope as
    large as the profile itself, where no cell's signal moves with its shift: the fitted slope shrank
    towards 0 (0.78 / 0.55 where the truth is 1, ``benchmarks/README.md`` session shift11).

    Examples
    --------
    >>> gradient_within(np.array([0.0, 4.0, 6.0, 7.0, 0.0, 3.0]), np.array([False, True, True, True, False, True]))
    array([0. , 2. , 1.5, 1. , 0. , 0. ])
    """
    slope = np.zeros(profile.shape)
    inside = np.flatnonzero(depths)
    for run in np.split(inside, np.flatnonzero(np.diff(inside) > 1) + 1):
        if run.size > 1:
            slope[run] = np.gradient(profile[run])
    return slope


def decide(displacement: Displacement) -> tuple[bool, str]:
    """Read the focus at each A-line's shift? ``(per A-line, why)``.

    Per A-line only when the slope is at least :data:`MIN_SLOPE` and :data:`MIN_SLOPE_Z` standard
    errors above 0; one profile otherwise: the focus followed the content (the slope is
    :data:`MIN_SLOPE_Z` standard errors below 1), or the data cannot tell ("unsure").
    """
    slope, sd = displacement.slope, displacement.slope_sd
    if slope is None:
        return False, f"one profile: too few agarose cells ({displacement.cells}) to tell"
    text = f"slope {slope:.2f} +- {sd:.2f} over {displacement.cells} agarose cells"
    if slope >= MIN_SLOPE and slope >= MIN_SLOPE_Z * sd:
        return True, f"per A-line: the focus stayed in the tiles' frame ({text})"
    if 1.0 - slope >= MIN_SLOPE_Z * sd:
        return False, f"one profile: the focus followed the content ({text})"
    return False, f"one profile: unsure ({text})"
