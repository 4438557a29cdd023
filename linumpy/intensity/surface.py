"""Tissue surface detection per A-line and surface flattening.

Volumes are ``(z, y, x)`` with ``z`` the depth: every ``volume[:, y, x]`` is
one A-line. Depths are in voxels from the top of the volume; the surface of
an A-line is the (fractional) index of its first tissue voxel.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from linumpy.intensity.attenuation import box_width

#: Smallest intensity used before taking logarithms (zeros are padding).
LOG_FLOOR = float(np.finfo(np.float32).tiny)
#: Shift ranges below this many voxels are flattened by copies instead of one gather
#: (a surface plane gives a few distinct shifts per block).
MAX_COPIED_SHIFTS = 8
#: Runs of A-lines of one shift per row above which :func:`flatten_surface` copies by masks instead.
MAX_RUNS_PER_ROW = 4


def log_intensity(volume: np.ndarray) -> np.ndarray:
    """Natural logarithm of ``volume`` as float32, zeros and negatives clamped."""
    clamped = np.full(np.shape(volume), LOG_FLOOR, np.float32)
    # against an array: numpy's loop for two float32 arrays, ~4 times faster than against a scalar (same bits)
    np.maximum(volume, clamped, out=clamped, dtype=np.float32)
    return np.log(clamped, out=clamped)


def detect_surface(
    volume: np.ndarray,
    *,
    lateral_sigma_px: float = 2.0,
    axial_sigma_px: float = 1.0,
    min_contrast: float = 2.0,
    window_px: int = 4,
) -> np.ndarray:
    """Detect the tissue surface of every A-line.

    The intensity is smoothed laterally (a box with standard deviation about
    ``lateral_sigma_px``, see :func:`~linumpy.intensity.attenuation.box_width`),
    its logarithm smoothed along z (binomial passes, standard deviation
    ``axial_sigma_px``, see :func:`binomial_smooth`) and differentiated along
    z (a rise in log intensity is a ratio: independent of the signal scale,
    and the steepest at the tissue surface); the surface is the
    steepest rise, refined to sub-voxel precision by a parabola through the
    peak and its neighbours; the steepest rise of a step lies half-way
    between the last dark voxel and the first bright one, so the surface is
    that position plus half a voxel. An A-line has no surface (NaN) unless
    the mean of the laterally smoothed intensity over the
    ``window_px`` voxels just below the rise is at least ``min_contrast``
    times that over the voxels just above it; noise-only A-lines therefore
    come out as NaN instead of a random depth.

    Parameters
    ----------
    volume : ndarray, shape (z, y, x)
        Linear OCT intensity (any positive scale).
    lateral_sigma_px, axial_sigma_px : float
        Smoothing before differentiation.
    min_contrast : float
        Required intensity ratio across the surface.
    window_px : int
        Number of voxels compared on each side of the surface.

    Returns
    -------
    ndarray, shape (y, x), float32
        Surface depth in voxels, NaN where no surface was found.

    Examples
    --------
    >>> vol = np.full((40, 3, 3), 1e-3, np.float32); vol[12:] = 1.0
    >>> detect_surface(vol)[1, 1].round(1)
    np.float32(12.0)
    """
    if volume.ndim != 3:
        raise ValueError(f"expected a (z, y, x) volume, got shape {volume.shape}")
    n_z = volume.shape[0]
    if lateral_sigma_px > 0:  # the first pass writes a new array (no copy of the input first), the second in place
        width = box_width(lateral_sigma_px)
        linear = ndimage.uniform_filter1d(volume, width, axis=1, mode="nearest", output=np.float32)
        ndimage.uniform_filter1d(linear, width, axis=2, mode="nearest", output=linear)
    else:
        linear = np.array(volume, np.float32)
    smoothed = binomial_smooth(log_intensity(linear), int(round(2 * axial_sigma_px**2)))
    rise = np.diff(smoothed, axis=0)  # rise[k] = smoothed[k + 1] - smoothed[k]
    del smoothed
    peak = np.argmax(rise, axis=0)
    surface = peak.astype(np.float32) + 1.0 + _parabolic_offset(rise, peak)
    del rise

    reach = axial_reach(axial_sigma_px)
    offsets = np.arange(window_px)[:, None, None]
    below = _window_mean(linear, peak[None] + 1 + reach + offsets)
    above = _window_mean(linear, peak[None] - reach - offsets)
    found = (
        np.isfinite(below) & np.isfinite(above) & (below > 0)
        & (below >= min_contrast * above) & (peak < n_z - 1)
    )
    return np.where(found, surface, np.nan).astype(np.float32)


def binomial_smooth(values: np.ndarray, passes: int) -> np.ndarray:
    """Smooth along axis 0 by ``passes`` passes of the kernel ``[1, 2, 1] / 4`` (edges repeated).

    Each pass adds a variance of 1/2 voxel^2 (two passes: the 5-tap binomial,
    standard deviation 1 voxel); cheaper than a Gaussian filter along the
    non-contiguous depth axis. Works in place on ``values`` (float) and returns it.

    Examples
    --------
    >>> binomial_smooth(np.array([0.0, 0.0, 4.0, 0.0, 0.0]), 1).tolist()
    [0.0, 1.0, 2.0, 1.0, 0.0]
    """
    if values.shape[0] < 2:
        return values
    result, previous = values, np.empty_like(values) if passes else values
    for _ in range(passes):  # previous: the last pass's values; result: this pass's (no padded copy)
        result, previous = previous, result
        np.multiply(previous, 2, out=result)
        result[1:] += previous[:-1]
        result[0] += previous[0]
        result[:-1] += previous[1:]
        result[-1] += previous[-1]
        result *= 0.25
    if result is not values:
        values[...] = result
    return values


def axial_reach(axial_sigma_px: float) -> int:
    """Voxels skipped on each side of the surface before comparing intensities."""
    return int(np.ceil(2 * axial_sigma_px))


def _parabolic_offset(values: np.ndarray, peak: np.ndarray) -> np.ndarray:
    """Sub-voxel offset of the maximum of a parabola through peak-1, peak, peak+1."""
    n = values.shape[0]
    lo = np.clip(peak - 1, 0, n - 1)[None]
    hi = np.clip(peak + 1, 0, n - 1)[None]
    left = np.take_along_axis(values, lo, 0)[0]
    mid = np.take_along_axis(values, peak[None], 0)[0]
    right = np.take_along_axis(values, hi, 0)[0]
    curvature = left - 2 * mid + right
    offset = np.divide(0.5 * (left - right), curvature, out=np.zeros_like(mid), where=curvature < 0)
    return np.clip(offset, -0.5, 0.5)


def _window_mean(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Mean of ``values`` along z at ``index`` (k, y, x), ignoring out-of-range rows.

    A-lines whose whole window falls outside the volume get NaN.
    """
    inside = (index >= 0) & (index < values.shape[0])
    picked = np.take_along_axis(values, np.clip(index, 0, values.shape[0] - 1), 0)
    count = inside.sum(axis=0)
    total = np.where(inside, picked, 0).sum(axis=0)
    return np.divide(total, count, out=np.full(count.shape, np.nan, np.float32), where=count > 0)


def flatten_surface(
    volume: np.ndarray, shift_px: np.ndarray, output_depth_px: int, fill: float = 0.0
) -> np.ndarray:
    """Shift every A-line up by ``shift_px`` voxels and crop ``output_depth_px``.

    ``out[k, y, x] = volume[k + shift_px[y, x], y, x]`` where that index lies
    inside the volume, ``fill`` elsewhere (no wrap-around, no interpolation).

    Parameters
    ----------
    volume : ndarray, shape (z, y, x)
    shift_px : ndarray of int, shape (y, x)
        Usually ``surface - surface_depth_px`` (rounded).
    output_depth_px : int
    fill : float

    Returns
    -------
    ndarray, shape (output_depth_px, y, x), same dtype as ``volume``

    Examples
    --------
    >>> vol = np.arange(5, dtype=np.float32)[:, None, None] * np.ones((1, 1, 2), np.float32)
    >>> flatten_surface(vol, np.array([[1, -1]]), 3)[:, 0, :].T
    array([[1., 2., 3.],
           [0., 0., 1.]], dtype=float32)
    """
    shift = np.asarray(shift_px, np.intp)
    if shift.size and int(shift.max()) - int(shift.min()) < MAX_COPIED_SHIFTS:
        return _flatten_by_copies(volume, shift, output_depth_px, fill)
    # One gather from the flattened volume: source index (k + shift) * plane + (y * nx + x).
    n_z, plane = volume.shape[0], int(np.prod(volume.shape[1:]))
    index = np.arange(output_depth_px, dtype=np.intp)[:, None, None] + shift
    outside = (index < 0) | (index >= n_z)
    np.clip(index, 0, n_z - 1, out=index)
    index *= plane
    index += np.arange(plane, dtype=np.intp).reshape(volume.shape[1:])
    out = np.take(np.ascontiguousarray(volume).reshape(-1), index)
    out[outside] = fill
    return out


def _flatten_by_copies(volume: np.ndarray, shift: np.ndarray, output_depth_px: int, fill: float) -> np.ndarray:
    """:func:`flatten_surface` for few distinct shifts: copies of whole depth ranges.

    The most common shift is copied for the whole block; the A-lines of each other shift are copied
    over it by runs along x (a plane's shifts: a run or two a row). When the runs are many (more
    than :data:`MAX_RUNS_PER_ROW` a row on average), one masked copy per shift instead.
    """
    values, counts = np.unique(shift, return_counts=True)
    common = int(values[np.argmax(counts)])
    other = shift != common
    starts = other.copy()  # first A-line of each run of one shift other than the common one
    starts[:, 1:] &= shift[:, 1:] != shift[:, :-1]
    rows, first = np.nonzero(starts)
    if rows.size > MAX_RUNS_PER_ROW * shift.shape[0]:
        return _flatten_by_masks(volume, shift, output_depth_px, fill)
    out = np.empty((output_depth_px, *volume.shape[1:]), volume.dtype)
    _copy_shifted(volume, out, common, (slice(None), slice(None)), fill)
    ends = other.copy()  # last A-line of each run
    ends[:, :-1] &= shift[:, :-1] != shift[:, 1:]
    for y, x0, x1 in zip(rows.tolist(), first.tolist(), (np.nonzero(ends)[1] + 1).tolist(), strict=True):
        _copy_shifted(volume, out, int(shift[y, x0]), (y, slice(x0, x1)), fill)
    return out


def _copy_shifted(volume: np.ndarray, out: np.ndarray, value: int, where: tuple, fill: float) -> None:
    """``out[k, where] = volume[k + value, where]`` where that depth exists, else ``fill`` (``where``: lateral)."""
    n_z, depth = volume.shape[0], out.shape[0]
    first = max(0, -value)
    stop = max(first, min(depth, n_z - value))
    if first:
        out[(slice(0, first), *where)] = fill
    out[(slice(first, stop), *where)] = volume[(slice(first + value, stop + value), *where)]
    if stop < depth:
        out[(slice(stop, None), *where)] = fill


def _flatten_by_masks(volume: np.ndarray, shift: np.ndarray, output_depth_px: int, fill: float) -> np.ndarray:
    """:func:`flatten_surface` by one masked copy of whole depth ranges per shift."""
    n_z = volume.shape[0]
    out = np.full((output_depth_px, *volume.shape[1:]), fill, volume.dtype)
    for value in range(int(shift.min()), int(shift.max()) + 1):
        first, stop = max(0, -value), min(output_depth_px, n_z - value)  # output depths with a source voxel
        if stop <= first:
            continue
        where = shift == value
        if where.any():
            np.copyto(out[first:stop], volume[first + value : stop + value], where=where)
    return out


def plane_moments(
    surface: np.ndarray, y0: int = 0, x0: int = 0, inliers_of: tuple[np.ndarray, float] | None = None
) -> np.ndarray:
    """Moments of a plane fit ``z = a + b*y + c*x`` to the finite values of one block.

    Returns ``M = [A | z]^T [A | z]`` (4x4) with ``A = [1, y, x]`` for the
    block's finite values (rows and columns offset by ``y0``, ``x0``). Sum ``M``
    over blocks and solve once with :func:`solve_plane`. With ``inliers_of =
    (coefficients, max_residual)`` only the values within ``max_residual`` of
    that plane count (for a robust refit).
    """
    rows, cols = np.nonzero(np.isfinite(surface))
    values = surface[rows, cols].astype(np.float64)
    columns = [np.ones(rows.size), rows + float(y0), cols + float(x0)]
    if inliers_of is not None:
        coefficients, max_residual = inliers_of
        keep = np.abs(values - np.stack(columns, axis=1) @ coefficients) <= max_residual
        columns, values = [c[keep] for c in columns], values[keep]
    augmented = np.stack([*columns, values], axis=1)
    return augmented.T @ augmented


def solve_plane(moments: np.ndarray) -> tuple[np.ndarray, float] | None:
    """Plane coefficients ``(a, b, c)`` and RMS residual from summed :func:`plane_moments`.

    Returns None when there are no points; degenerate point sets (a line, a
    single point) get the least-norm solution.

    Examples
    --------
    >>> yy, xx = np.mgrid[0:4, 0:5]
    >>> coefficients, rms = solve_plane(plane_moments(3.0 + 0.5 * yy - 0.25 * xx))
    >>> coefficients.round(6).tolist(), round(rms, 6)
    ([3.0, 0.5, -0.25], 0.0)
    """
    count = moments[0, 0]
    if count == 0:
        return None
    normal, rhs = moments[:3, :3], moments[:3, 3]
    coefficients = np.linalg.lstsq(normal, rhs, rcond=None)[0]
    residual = moments[3, 3] - 2 * coefficients @ rhs + coefficients @ normal @ coefficients
    return coefficients, float(np.sqrt(max(residual, 0.0) / count))


def plane_values(coefficients: np.ndarray, shape: tuple[int, int], y0: int = 0, x0: int = 0) -> np.ndarray:
    """Evaluate the plane ``a + b*y + c*x`` on a block of ``shape`` at offset (y0, x0)."""
    a, b, c = coefficients
    yy = np.arange(shape[0])[:, None] + y0
    xx = np.arange(shape[1])[None, :] + x0
    return (a + b * yy + c * xx).astype(np.float32)
