"""Rotation about z between consecutive slices: estimate it on the overlap, undo it lazily.

Remounting the block and cutting it can turn it by a few degrees between
slices; the translation-only refinement cannot follow. Before the stack
registers each slice against the previous one, :func:`derotate_slices`
estimates the rotation of each slice relative to the (already de-rotated)
previous slice and rotates the slice back about its lateral centre, so the
usual z and lateral refinement then runs on de-rotated slices.

Estimation (:func:`estimate_rotation`): a thick average of the slice's top
planes is compared with the previous slice's planes around the motor depth
step (the overlap). For each candidate angle (a 0.5 degree grid over
``[-max, max]``, then a 0.05 degree grid around the best) the moving image is
rotated, aligned by phase correlation and scored by the NCC of the common
valid area. Gating (``mode``):

- ``"skipped"``: the best angle gains too little NCC over no rotation
  (less than 3% of the mismatch ``1 - NCC`` left without rotation; on the
  phantom with speckle, no rotation gains 0.0002 and 0.3 degree 0.0025), or
  lies on the edge of the search range, or scores below :data:`MIN_NCC`: no
  rotation (identity), as without this feature;
- ``"rotation_only"``: the angle is distinct but the aligned overlap is weak
  (NCC below the stack's ``min_confidence``): the rotation is applied; the
  translation is left to the stack's own gated refinement;
- ``"full"``: both are confident: rotation applied, translation refined.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import dask
import dask.array as da
import numpy as np
from scipy import ndimage
from skimage.registration import phase_cross_correlation

from linumpy.resample import block_mean
from linumpy.stack.options import STACK_MAX_ROTATION_DEG
from linumpy.stack.refine import bandpass_planes, normalized_cross_correlation

LOGGER = logging.getLogger(__name__)

#: Largest rotation searched by :func:`estimate_rotation` unless told otherwise, degrees.
DEFAULT_MAX_ROTATION_DEG = 5.0
#: Width of the images the rotation is estimated on (pixels, at most twice this).
ROTATION_SIZE = 256
#: Coarse and fine angle steps, degrees.
COARSE_STEP_DEG, FINE_STEP_DEG = 0.5, 0.05
#: A rotation is applied when its NCC gain over no rotation is at least this fraction of the
#: mismatch left without rotation (1 - NCC), and at least :data:`MIN_GAIN`.
MIN_GAIN_FRACTION = 0.03
MIN_GAIN = 0.001
#: Smallest NCC at the best angle for a rotation to be applied.
MIN_NCC = 0.1
#: Planes averaged from the top of a slice (and around the depth step of the previous one).
ROTATION_PLANES = 16
#: Gaussian smoothing (pixels) of the overlap images: speckle out, structure in.
SMOOTHING_PX = 1.5
#: Spline order of the de-rotation of the slices (cubic: less blur than bilinear).
RESAMPLING_ORDER = 3
#: Source pixels read around a block's rotated footprint (the cubic spline's reach decays as 0.27^n).
WINDOW_MARGIN = 8


@dataclass(frozen=True)
class RotationEstimate:
    """The rotation of one slice relative to the previous (de-rotated) slice.

    Attributes
    ----------
    angle_deg : float
        Rotation undone (0 when skipped), degrees, about the slice's lateral centre.
    measured_deg : float
        Best angle found, before gating.
    ncc, ncc_identity : float
        NCC of the aligned overlap at the best angle and without rotation.
    mode : str
        ``"full"``, ``"rotation_only"`` or ``"skipped"`` (see the module docstring).
    """

    angle_deg: float
    measured_deg: float
    ncc: float
    ncc_identity: float
    mode: str

    def to_dict(self) -> dict:
        """JSON-ready dict, rounded."""
        return {key: round(value, 4) if isinstance(value, float) else value for key, value in asdict(self).items()}


def rotation_transform(angle_deg: float, centre: Sequence[float], origin: Sequence[float] = (0.0, 0.0),
                       source_origin: Sequence[float] = (0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """``(matrix, offset)`` for :func:`scipy.ndimage.affine_transform` turning an image by ``angle_deg``.

    Output pixel ``o`` (local to a block at ``origin``) reads source pixel
    ``R (o + origin - centre) + centre - source_origin``.
    """
    theta = math.radians(angle_deg)
    matrix = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    centre = np.asarray(centre, float)
    offset = matrix @ (np.asarray(origin, float) - centre) + centre - np.asarray(source_origin, float)
    return matrix, offset


def rotate_image(image: np.ndarray, angle_deg: float, order: int = 1) -> np.ndarray:
    """Turn a 2D image by ``angle_deg`` about its centre (spline ``order``, zero outside)."""
    centre = [(n - 1) / 2.0 for n in image.shape]
    matrix, offset = rotation_transform(angle_deg, centre)
    return ndimage.affine_transform(image, matrix, offset, order=order, mode="constant", cval=0.0)


def _aligned_ncc(reference: np.ndarray, valid_ref: np.ndarray, moving: np.ndarray, valid_mov: np.ndarray,
                 angle_deg: float) -> float:
    """NCC of ``reference`` and the rotated, phase-correlation-aligned ``moving`` over their common valid area."""
    rotated = rotate_image(moving, angle_deg)
    valid = rotate_image(valid_mov, angle_deg) > 0.99
    rotated = np.where(valid, rotated, 0.0)
    shift, _, _ = phase_cross_correlation(reference, rotated, normalization=None)
    shift = np.rint(shift).astype(int)
    rotated = ndimage.shift(rotated, shift, order=0, cval=0.0)
    valid = ndimage.shift(valid.astype(np.float32), shift, order=0, cval=0.0) > 0.5
    common = valid & valid_ref
    if common.sum() < 0.1 * common.size:
        return 0.0
    return normalized_cross_correlation(reference[common], rotated[common])


def estimate_rotation(reference: np.ndarray, moving: np.ndarray, max_deg: float = DEFAULT_MAX_ROTATION_DEG,
                      min_confidence: float = 0.3) -> RotationEstimate:
    """Estimate the rotation turning ``moving`` onto ``reference`` (2D, same shape, zeros = no data).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> image = ndimage.gaussian_filter(rng.standard_normal((96, 96)), 2)
    >>> turned = rotate_image(image, -2.0)
    >>> round(estimate_rotation(image, turned).angle_deg, 1)
    2.0
    """
    valid_ref = reference != 0
    valid_mov = (moving != 0).astype(np.float32)

    def score(angle: float) -> float:
        return _aligned_ncc(reference, valid_ref, moving, valid_mov, angle)

    coarse = np.arange(-max_deg, max_deg + 1e-9, COARSE_STEP_DEG)
    coarse_scores = [score(a) for a in coarse]
    best = float(coarse[int(np.argmax(coarse_scores))])
    fine = best + np.arange(-COARSE_STEP_DEG, COARSE_STEP_DEG + 1e-9, FINE_STEP_DEG)
    fine = fine[np.abs(fine) <= max_deg + 1e-9]
    fine_scores = [score(a) for a in fine]
    index = int(np.argmax(fine_scores))
    angle, ncc = float(fine[index]), float(fine_scores[index])
    if 0 < index < len(fine) - 1:  # parabola through the peak and its neighbours
        left, right = fine_scores[index - 1], fine_scores[index + 1]
        curvature = left - 2 * ncc + right
        if curvature < 0:
            angle += FINE_STEP_DEG * 0.5 * (left - right) / curvature
    identity = coarse_scores[int(np.argmin(np.abs(coarse)))]
    on_edge = abs(angle) >= max_deg - FINE_STEP_DEG / 2
    if ncc - identity < max(MIN_GAIN, MIN_GAIN_FRACTION * (1.0 - identity)) or ncc < MIN_NCC or on_edge:
        mode = "skipped"
    else:
        mode = "full" if ncc >= min_confidence else "rotation_only"
    return RotationEstimate(angle if mode != "skipped" else 0.0, angle, ncc, float(identity), mode)


def rotate_lazily(data: da.Array, angle_deg: float, centre_yx: Sequence[float]) -> da.Array:
    """Turn every plane of a ``(z, y, x)`` dask array by ``angle_deg`` about ``centre_yx`` (pixels).

    Same shape and chunks; each output block reads only the source window
    its rotated footprint needs (plus a margin), so memory stays per chunk.
    """
    if angle_deg == 0:
        return data
    _, ny, nx = data.shape
    blocks = []
    z_edges, y_edges, x_edges = (np.cumsum((0, *c)) for c in data.chunks)
    for z0, z1 in zip(z_edges[:-1], z_edges[1:]):
        rows = []
        for y0, y1 in zip(y_edges[:-1], y_edges[1:]):
            row = []
            for x0, x1 in zip(x_edges[:-1], x_edges[1:]):
                row.append(_rotated_block(data, angle_deg, centre_yx, (z0, z1), (y0, y1), (x0, x1), (ny, nx)))
            rows.append(row)
        blocks.append(rows)
    return da.block(blocks)


def _rotated_block(data: da.Array, angle_deg: float, centre: Sequence[float], zs: tuple[int, int],
                   ys: tuple[int, int], xs: tuple[int, int], size: tuple[int, int]) -> da.Array:
    matrix, _ = rotation_transform(angle_deg, centre)
    corners = np.array([[y, x] for y in (ys[0], ys[1] - 1) for x in (xs[0], xs[1] - 1)], float)
    source = (matrix @ (corners - np.asarray(centre)).T).T + np.asarray(centre)
    low = np.maximum(np.floor(source.min(axis=0)).astype(int) - WINDOW_MARGIN, 0)
    high = np.minimum(np.ceil(source.max(axis=0)).astype(int) + WINDOW_MARGIN + 1, size)
    shape = (zs[1] - zs[0], ys[1] - ys[0], xs[1] - xs[0])
    if np.any(high <= low):
        return da.zeros(shape, dtype=data.dtype, chunks=shape)
    window = data[zs[0]:zs[1], low[0]:high[0], low[1]:high[1]]
    _, offset = rotation_transform(angle_deg, centre, (ys[0], xs[0]), low)
    block = dask.delayed(_turn_planes)(window, matrix, offset, shape[1:])
    return da.from_delayed(block, shape, dtype=data.dtype)


def _turn_planes(window: np.ndarray, matrix: np.ndarray, offset: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    out = np.empty((window.shape[0], *shape), window.dtype)
    for k, plane in enumerate(window):
        out[k] = ndimage.affine_transform(plane.astype(np.float32), matrix, offset, output_shape=shape,
                                          order=RESAMPLING_ORDER, mode="constant", cval=0.0)
    return out


def _overlap_image(data: da.Array, planes: tuple[int, int], factor: int) -> np.ndarray:
    """Band-passed average of planes ``[start, stop)``, block-averaged laterally by ``factor``."""
    stack = block_mean(data[planes[0]:planes[1]].astype(np.float32), (1, factor, factor)).compute()
    image = ndimage.gaussian_filter(stack.mean(axis=0), SMOOTHING_PX)
    return bandpass_planes(image[None], axial_sigma_px=0.0)[0]


def _common_shape(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    shape = tuple(max(m, n) for m, n in zip(a.shape, b.shape))
    return (np.pad(a, [(0, s - n) for s, n in zip(shape, a.shape)]),
            np.pad(b, [(0, s - n) for s, n in zip(shape, b.shape)]))


def derotate_slices(slices: Sequence, steps_um: Sequence[float], max_deg: float, min_confidence: float,
                    ) -> tuple[list, list[RotationEstimate | None]]:
    """Estimate and undo the rotation of every slice relative to the previous one (chained).

    Parameters
    ----------
    slices : sequence of linumpy.stack.stacking.SliceVolume
        In slice-id order; a slice after a gap is compared with the slice before the gap.
    steps_um : sequence of float
        Motor depth step from the previous slice to each slice (first: ignored).
    max_deg : float
        Largest rotation searched; 0 disables the search.
    min_confidence : float
        Overlap NCC above which a rotation estimate is ``"full"``.

    Returns
    -------
    (slices, estimates)
        The de-rotated slices (lazy) and one estimate per slice (None for the first).
    """
    out, estimates = [slices[0]], [None]
    for k in range(1, len(slices)):
        current = slices[k]
        if max_deg <= 0:
            out.append(current)
            estimates.append(None)
            continue
        estimate = _slice_rotation(out[-1], current, steps_um[k], max_deg, min_confidence)
        LOGGER.info("slice %d: rotation %s", current.slice_id, estimate)
        estimates.append(estimate)
        out.append(rotate_slice(current, estimate.angle_deg))
    return out, estimates


def _slice_rotation(previous, current, step_um: float, max_deg: float, min_confidence: float) -> RotationEstimate:
    level = max(set(previous.widest_levels(ROTATION_SIZE)) & set(current.widest_levels(ROTATION_SIZE)))
    previous_data, source_um = previous.levels[level]
    current_data, _ = current.levels[level]
    factor = max(1, max(previous_data.shape[1:]) // ROTATION_SIZE)
    expected = int(round(step_um / source_um[0]))
    p0, p1 = previous.useful_range
    c0, c1 = current.useful_range
    start = min(max(p0, p0 + expected), p1 - 1)
    n_planes = max(1, min(ROTATION_PLANES, p1 - start, c1 - c0))
    reference = _overlap_image(previous_data, (start, start + n_planes), factor)
    moving = _overlap_image(current_data, (c0, c0 + n_planes), factor)
    reference, moving = _common_shape(reference, moving)
    return estimate_rotation(reference, moving, max_deg, min_confidence)


def rotate_slice(volume, angle_deg: float):
    """A SliceVolume with every level turned by ``angle_deg`` about the slice's lateral centre."""
    if angle_deg == 0:
        return volume
    levels = []
    for data, resolution in volume.levels:
        centre = ((data.shape[1] - 1) / 2.0, (data.shape[2] - 1) / 2.0)
        levels.append((rotate_lazily(data, angle_deg, centre), resolution))
    return replace(volume, levels=levels)
