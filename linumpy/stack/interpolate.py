"""Fill the depth of missing or excluded slices from their registered neighbours.

Off by default (``--interpolate_missing``): a gap in the slice ids otherwise
stays zero. When on, the output planes between the last kept plane of the
slice above the gap and the first plane of the slice below it are the
distance weighted mean of two anchors, both at their registered places in
the output grid: ``above``, the mean of the *deepest* :data:`EDGE_PLANES`
useful planes of the slice above (below its kept range when it imaged
deeper than the thickness: the real tissue nearest the gap), and ``below``,
the mean of the first ones of the slice below, each smoothed laterally by a
Gaussian of :data:`SPECKLE_SIGMA_PX` output voxels (speckle averaged out).
Plane ``z`` is ``(1 - t) * above + t * below`` with ``t`` its relative
depth between the two anchors' centres (clipped to ``[0, 1]``). It is a
guess, not data: the filled slice ids are listed in the volume's attributes
(``interpolated_slices``), in the stack record and in its QC record (a red
flag each).
"""

from __future__ import annotations

from collections.abc import Sequence

import dask.array as da
import numpy as np
from scipy import ndimage

from linumpy.stack.assemble import PlacedSlice

#: Planes averaged at the bottom of the slice above and the top of the slice below (speckle out).
EDGE_PLANES = 3
#: Lateral Gaussian (output voxels) on those means, against the speckle left in them (on the
#: phantom with speckle, seeds 10-13: NCC with the true slice 0.62-0.69 -> 0.71-0.78 at 10 um).
SPECKLE_SIGMA_PX = 1.0


def _plane_in_box(piece: PlacedSlice, planes: slice, start: Sequence[int], stop: Sequence[int]) -> da.Array:
    """The mean of some planes of a placed slice, smoothed laterally, zero-padded into the box ``[start, stop)``."""
    plane = piece.data[planes].astype(np.float32).mean(axis=0)
    radius = min(int(np.ceil(4 * SPECKLE_SIGMA_PX)), *plane.shape)
    plane = plane.map_overlap(ndimage.gaussian_filter, depth=radius, boundary="reflect", sigma=SPECKLE_SIGMA_PX,
                              dtype=np.float32)
    padding = [(piece.origin[a + 1] - start[a], stop[a] - piece.stop[a + 1]) for a in range(2)]
    return da.pad(plane, padding, mode="constant")


def gap_piece(above: PlacedSlice, below: PlacedSlice, deepest: PlacedSlice | None = None) -> PlacedSlice | None:
    """The interpolated planes between two placed slices, or None when they touch in depth.

    ``deepest``: the slice above's deepest useful planes at their place (default: its
    last kept planes, ``above``); the top anchor is its last :data:`EDGE_PLANES` planes.
    """
    z0, z1 = above.stop[0], below.origin[0]
    if z1 <= z0:
        return None
    deepest = above if deepest is None else deepest
    start = [min(above.origin[a], below.origin[a]) for a in (1, 2)]
    stop = [max(above.stop[a], below.stop[a]) for a in (1, 2)]
    edge_above = min(EDGE_PLANES, deepest.data.shape[0])
    edge_below = min(EDGE_PLANES, below.data.shape[0])
    top = _plane_in_box(deepest, slice(-edge_above, None), start, stop)
    bottom = _plane_in_box(below, slice(0, edge_below), start, stop)
    # anchors at the centres of the averaged planes
    z_top = deepest.stop[0] - (edge_above + 1) / 2
    z_bottom = below.origin[0] + (edge_below - 1) / 2
    t = np.clip((np.arange(z0, z1, dtype=np.float32) - z_top) / np.float32(z_bottom - z_top), 0, 1)
    data = (1 - t)[:, None, None] * top[None] + t[:, None, None] * bottom[None]
    return PlacedSlice(data.astype(above.data.dtype), (z0, start[0], start[1]))


def interpolate_gaps(slice_ids: Sequence[int], placed: Sequence[PlacedSlice],
                     deepest: Sequence[PlacedSlice | None] | None = None) -> tuple[list[PlacedSlice], list[int]]:
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
    ([1], (3, 0, 0), [0.67, 0.5, 0.33])
    """
    out, filled = [placed[0]], []
    for k in range(1, len(placed)):
        if slice_ids[k] - slice_ids[k - 1] > 1:
            piece = gap_piece(placed[k - 1], placed[k], deepest[k - 1] if deepest else None)
            if piece is not None:
                out.append(piece)
                filled.extend(range(slice_ids[k - 1] + 1, slice_ids[k]))
        out.append(placed[k])
    return out, filled
