"""One cut tilt for every slice: re-flatten the slices whose own surface plane tilts otherwise.

The axial correction flattens each slice on its own, shifting every A-line
by the plane fitted to that slice's surface (``surface_plane_px`` in its
attributes). The vibratome cuts every slice in the same plane relative to
the stage, so the planes' tilts should agree; a slice whose fit went astray
(the first slice's uncut, dome-shaped top, a cavity, dark tissue at the cut)
is flattened with a different tilt and then meets its neighbours at a depth
that varies across the field: no single depth offset places it, and the z
registration averages a mismatch of several voxels. On the simulator's
``harsh`` seed 0 the first slice's fit read ``(0.080, -0.134)`` voxel per
pixel for a true ``(0.05, -0.06)``; the other slices ``0.03-0.06, -0.05 to -0.08``.

:func:`common_tilt` takes the median tilt over the slices (robust to a few
astray); :func:`retilt_slice` moves each A-line of a slice by the whole
planes between its own plane and the common-tilt plane through the same
point at the slice's lateral centre (``rint`` of each, as the axial
correction rounded its shifts), lazily, chunk by chunk. Planes read beyond
the slice's first or last plane repeat that plane.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import dask.array as da
import numpy as np

from linumpy.stack.levels import MappedLevels, level_layout
from linumpy.stack.windows import depth_chunks, windowed_blocks

#: Fewest slices with a fitted plane for a common tilt (the median needs a majority).
MIN_SLICES = 3
#: Largest A-line move (planes) a re-flattening may make; beyond it the slice is left as it is.
MAX_SHIFT_PLANES = 16


#: Span of a block's A-line moves (largest minus smallest, planes) below which :func:`_gather` copies a plane
#: range per move instead of one gather.
FEW_MOVES = 8


def common_tilt(planes: Sequence[Sequence[float] | None]) -> tuple[float, float] | None:
    """Median ``(tilt_y, tilt_x)`` (voxels per level-0 pixel) of the slices' surface planes ``(a, b, c)``.

    None when fewer than :data:`MIN_SLICES` slices have a plane.

    Examples
    --------
    >>> common_tilt([(3.0, 0.05, -0.06), None, (2.0, 0.04, -0.07), (9.0, 0.08, -0.13), (1.0, 0.05, -0.05)])
    (0.05, -0.065)
    >>> common_tilt([(3.0, 0.05, -0.06)]) is None
    True
    """
    known = np.array([p[1:3] for p in planes if p is not None], dtype=float)
    if len(known) < MIN_SLICES:
        return None
    median = np.median(known, axis=0)
    return float(median[0]), float(median[1])


def plane_shift(plane: Sequence[float], tilt: tuple[float, float], shape_yx: Sequence[int],
                factor: Sequence[float] = (1.0, 1.0)) -> np.ndarray:
    """Whole planes each A-line moves: ``rint(common) - rint(own)`` on a level of ``shape_yx`` pixels.

    ``factor``: level-0 pixels per level pixel (pixel centres map as
    ``(i + 0.5) * factor - 0.5``). The common-tilt plane meets the slice's
    own plane at the slice's lateral centre.

    Examples
    --------
    >>> plane_shift((10.0, 0.1, 0.0), (0.0, 0.0), (5, 1))[:, 0].tolist()
    [0, 0, 0, 0, 0]
    >>> plane_shift((10.0, 0.5, 0.0), (0.0, 0.0), (5, 1))[:, 0].tolist()
    [1, 1, 0, -1, -1]
    """
    a, b, c = (float(v) for v in plane)
    y = (np.arange(shape_yx[0]) + 0.5) * factor[0] - 0.5
    x = (np.arange(shape_yx[1]) + 0.5) * factor[1] - 0.5
    centre_y, centre_x = (shape_yx[0] * factor[0] - 1) / 2, (shape_yx[1] * factor[1] - 1) / 2
    own = a + b * y[:, None] + c * x[None, :]
    common = a + (b - tilt[0]) * centre_y + (c - tilt[1]) * centre_x + tilt[0] * y[:, None] + tilt[1] * x[None, :]
    return (np.rint(common) - np.rint(own)).astype(np.int64)


def retilt_slice(volume, plane: Sequence[float] | None, tilt: tuple[float, float] | None) -> tuple[object, int]:
    """A SliceVolume re-flattened to the common tilt (lazily), and the largest A-line move (planes).

    The slice is returned unchanged (move 0) without a plane or a common tilt,
    and when a move would exceed :data:`MAX_SHIFT_PLANES` (its plane is then
    too far from the others to trust either; the move is returned negated).
    """
    if plane is None or tilt is None:
        return volume, 0
    layout = level_layout(volume.levels)
    full = layout[0][0][1:]
    shifts = [plane_shift(plane, tilt, shape[1:], (full[0] / shape[1], full[1] / shape[2])) for shape, _ in layout]
    largest = int(max(np.abs(s).max() for s in shifts))
    if largest > MAX_SHIFT_PLANES:
        return volume, -largest
    if largest == 0:
        return volume, 0
    # kept as int8 (|move| <= MAX_SHIFT_PLANES): a byte per A-line held by every block of the lazy levels
    moves = [shift.astype(np.int8) for shift in shifts]

    def shifted(levels):  # each level's graph built when the stack first reads it (linumpy.stack.levels)
        return None if levels is None else MappedLevels(levels, lambda index, data: shift_alines(data, moves[index]))

    return replace(volume, levels=shifted(volume.levels), read_levels=shifted(volume.read_levels)), largest


def shift_alines(data: da.Array, shift: np.ndarray) -> da.Array:
    """``out[j, y, x] = data[clip(j + shift[y, x]), y, x]`` for a ``(z, y, x)`` dask array, block by block.

    Blocks of :data:`~linumpy.stack.windows.DEPTH_BLOCK` planes, the source's lateral chunks. A block
    reads the source planes its own A-lines' moves reach (a tilt moves most lateral chunks' A-lines by
    one or two distinct planes, the slice's by a few more): on the five ``small`` slices (moves of at
    most one plane, none in most chunks) a block of 8 planes then reads one run of 8 source planes
    instead of two.
    """
    nz = data.shape[0]
    moves: dict[tuple[tuple[int, int], tuple[int, int]], tuple[int, int]] = {}  # per lateral chunk

    def window(region: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
        (z0, z1), ys, xs = region
        if (ys, xs) not in moves:
            local = shift[ys[0] : ys[1], xs[0] : xs[1]]
            moves[ys, xs] = int(local.min()), int(local.max())
        low, high = moves[ys, xs]
        return (max(0, min(z0 + low, nz - 1)), min(nz, max(z1 + high, 1))), ys, xs

    def gather(values: np.ndarray, region: tuple[tuple[int, int], ...], bounds: tuple[tuple[int, int], ...],
               ) -> np.ndarray:
        (z0, z1), (y0, y1), (x0, x1) = region
        return _gather(values, shift[y0:y1, x0:x1], z0, z1, bounds[0][0])

    chunks = (depth_chunks(nz), data.chunks[1], data.chunks[2])
    return windowed_blocks(data, chunks, window, gather, "retilt")


def _gather(window: np.ndarray, shift: np.ndarray, z0: int, z1: int, start: int) -> np.ndarray:
    """Planes ``z0..z1-1`` of the shifted block from ``window`` (planes ``start..`` of the source).

    The window lies inside the source's planes, so clipping the source plane
    to the source and then to the window is one clip to the window. A block
    whose A-line moves span fewer than :data:`FEW_MOVES` planes (a surface
    plane crosses few whole planes over a block) is copied once per move, a
    plane range taken whole and then only where the A-lines move by it (on
    8 x 128 x 128 blocks half the time of one gather with three moves, a
    tenth with one); others are one flat :func:`numpy.take` (a third of the
    time of :func:`numpy.take_along_axis`). A block whose A-lines all move
    alike (most blocks of a slice whose tilt is near the common one) is a
    view of the window's planes, not a copy. The same values either way.
    """
    lowest, highest = int(shift.min()), int(shift.max())
    if highest - lowest >= FEW_MOVES:
        plane = shift.size
        index = np.arange(z0 - start, z1 - start, dtype=np.intp)[:, None, None] + shift[None]
        np.clip(index, 0, window.shape[0] - 1, out=index)
        index *= plane
        index += np.arange(plane, dtype=np.intp).reshape(shift.shape)
        return np.take(window.reshape(-1), index)
    out = None
    for move in range(lowest, highest + 1):
        first, stop = z0 - start + move, z1 - start + move
        planes = (window[first:stop] if first >= 0 and stop <= len(window)
                  else window[np.clip(np.arange(first, stop), 0, len(window) - 1)])
        if move == lowest == highest:  # every A-line moves alike: the planes as they are (a view of the window)
            return planes
        if move == lowest:
            out = planes.copy()
        else:
            np.copyto(out, planes, where=(shift == move)[None])
    return out
