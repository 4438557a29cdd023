"""Fill the depth of missing or excluded slices from their registered neighbours.

Off by default (``--interpolate_missing``): a gap in the slice ids otherwise
stays zero. When on, the output planes between the last kept plane of the
slice above the gap and the first plane of the slice below it are fitted to
both neighbours at their registered places in the output grid: the
*deepest* useful planes of the slice above (below its
kept range when it imaged deeper than the thickness: the real tissue nearest
the gap; scaled by its bottom gain) and the first ones of the slice below
(:data:`EDGE_UM` of each, :func:`edge_planes` at the output voxel size),
each smoothed laterally by a Gaussian of :data:`SPECKLE_SIGMA_PX` output
voxels (speckle). Voxel by voxel, a polynomial in depth of degree
:data:`DEGREE` is fitted to those planes by least squares and evaluated at
each missing plane, clamped to the range of the planes it was fitted to.
Through a whole slice's gap the tissue's depth variations (regions, fibres
turning) are curved, which a line between the two nearest planes misses.
It is a guess, not data: the filled slice ids are listed in the volume's
attributes (``interpolated_slices``), in the stack record and in its QC
record (a red flag each).
"""

from __future__ import annotations

from collections.abc import Sequence

import dask.array as da
import numpy as np
from scipy import ndimage

from linumpy.stack.assemble import PlacedSlice

#: Depth (um) of each neighbour the gap is fitted to: the slice above's deepest, the slice below's first.
EDGE_UM = 60.0
#: Degree of the per-voxel polynomial in depth through those planes (at most).
DEGREE = 3
#: Lateral Gaussian (output voxels) on each of those planes, against their speckle.
SPECKLE_SIGMA_PX = 1.5


def _planes_in_box(piece: PlacedSlice, planes: slice, start: Sequence[int], stop: Sequence[int]) -> da.Array:
    """Some planes of a placed slice, smoothed laterally, zero-padded into the lateral box ``[start, stop)``."""
    data = piece.data[planes].astype(np.float32)
    radius = min(int(np.ceil(4 * SPECKLE_SIGMA_PX)), *data.shape[1:])
    data = data.map_overlap(ndimage.gaussian_filter, depth=(0, radius, radius), boundary="reflect",
                            sigma=(0, SPECKLE_SIGMA_PX, SPECKLE_SIGMA_PX), dtype=np.float32)
    padding = [(0, 0)] + [(piece.origin[a + 1] - start[a], stop[a] - piece.stop[a + 1]) for a in range(2)]
    return da.pad(data, padding, mode="constant")


def edge_planes(resolution_um: float) -> int:
    """Planes of :data:`EDGE_UM` at the output voxel size, at least 2.

    Examples
    --------
    >>> edge_planes(10.0), edge_planes(3.0), edge_planes(50.0)
    (6, 20, 2)
    """
    return max(2, round(EDGE_UM / resolution_um))


def depth_weights(known: np.ndarray, wanted: np.ndarray, degree: int = DEGREE) -> np.ndarray:
    """Weights ``(len(wanted), len(known))``: the least-squares polynomial through ``known`` depths, at ``wanted``.

    The fit is linear in the data, so each wanted plane is a weighted sum of
    the known planes; the degree is at most half the known planes less one
    (a line through 2 or 4 planes, a quadratic through 6, a cubic from 8).

    Examples
    --------
    >>> depth_weights(np.array([0.0, 4.0]), np.array([1.0, 2.0])).round(2).tolist()
    [[0.75, 0.25], [0.5, 0.5]]
    """
    centre, half = (known.max() + known.min()) / 2, max((known.max() - known.min()) / 2, 1.0)
    degree = min(degree, max(1, len(known) // 2 - 1), len(known) - 1)
    fit = np.vander((known - centre) / half, degree + 1)
    return np.vander((wanted - centre) / half, degree + 1) @ np.linalg.pinv(fit)


def gap_piece(above: PlacedSlice, below: PlacedSlice, deepest: PlacedSlice | None = None,
              n_planes: int = 6) -> PlacedSlice | None:
    """The interpolated planes between two placed slices, or None when they touch in depth.

    ``deepest``: the slice above's deepest useful planes at their place (default: its
    last kept planes, ``above``). Each missing plane is, voxel by voxel, the cubic in
    depth fitted to the last ``n_planes`` planes of ``deepest`` and the first ones of
    ``below`` (each smoothed laterally), clamped to the range of those planes.
    """
    z0, z1 = above.stop[0], below.origin[0]
    if z1 <= z0:
        return None
    deepest = above if deepest is None else deepest
    start = [min(above.origin[a], below.origin[a]) for a in (1, 2)]
    stop = [max(above.stop[a], below.stop[a]) for a in (1, 2)]
    # a first plane that only partly covers its voxel (padding) is darker: left out
    skip = int(below.first_coverage[0] < 1.0 and below.data.shape[0] > 1)
    n_above = min(n_planes, deepest.data.shape[0])
    n_below = min(n_planes, below.data.shape[0] - skip)
    known = np.concatenate([deepest.stop[0] - n_above + np.arange(n_above),
                            below.origin[0] + skip + np.arange(n_below)]).astype(np.float64)
    planes = da.concatenate([_planes_in_box(deepest, slice(-n_above, None), start, stop),
                             _planes_in_box(below, slice(skip, skip + n_below), start, stop)])
    weights = depth_weights(known, np.arange(z0, z1, dtype=np.float64)).astype(np.float32)
    planes = planes.rechunk({0: -1})
    data = da.tensordot(weights, planes, axes=(1, 0))
    data = da.clip(data, planes.min(axis=0)[None], planes.max(axis=0)[None])
    return PlacedSlice(data.astype(above.data.dtype), (z0, start[0], start[1]))


def interpolate_gaps(slice_ids: Sequence[int], placed: Sequence[PlacedSlice],
                     deepest: Sequence[PlacedSlice | None] | None = None,
                     resolution_um: float = 10.0) -> tuple[list[PlacedSlice], list[int]]:
    """Insert an interpolated piece into every gap of the slice ids.

    Parameters
    ----------
    slice_ids : sequence of int
        Ids of ``placed``, increasing.
    placed : sequence of PlacedSlice
        The slices in the output grid.
    deepest : sequence of PlacedSlice or None, optional
        Aligned with ``placed``: each slice's deepest useful planes at their
        place (the top anchor of a gap below it); None: its last kept planes.
    resolution_um : float
        Output voxel size: the fit reads :func:`edge_planes` planes of each neighbour.

    Returns
    -------
    (pieces, interpolated_ids)
        The slices with the gap pieces between them (still in depth order), and
        the missing ids whose depth was filled.

    Examples
    --------
    >>> a = PlacedSlice(da.ones((3, 3, 3)), (0, 0, 0))
    >>> b = PlacedSlice(da.zeros((3, 3, 3)), (6, 0, 0))
    >>> pieces, ids = interpolate_gaps([0, 2], [a, b])
    >>> ids, pieces[1].origin, pieces[1].data[:, 0, 0].compute().round(2).tolist()
    ([1], (3, 0, 0), [0.66, 0.5, 0.34])
    """
    out, filled = [placed[0]], []
    for k in range(1, len(placed)):
        if slice_ids[k] - slice_ids[k - 1] > 1:
            piece = gap_piece(placed[k - 1], placed[k], deepest[k - 1] if deepest else None,
                              edge_planes(resolution_um))
            if piece is not None:
                out.append(piece)
                filled.extend(range(slice_ids[k - 1] + 1, slice_ids[k]))
        out.append(placed[k])
    return out, filled
