"""Rotation about z between consecutive slices: estimate it on the overlap, undo it lazily.

Remounting the block and cutting it can turn it by a few degrees between
slices; the translation-only refinement cannot follow. Before the stack
registers each slice against the previous one, :func:`derotate_slices`
estimates the rotation of each slice relative to the (already de-rotated)
previous slice and rotates the slice back about its lateral centre, so the
usual z and lateral refinement then runs on de-rotated slices.

Estimation (:func:`estimate_rotation`): a thick average of the slice's top
planes is compared with the previous slice's planes around the motor depth
step (the overlap). Half-overlapping patches of the moving image are
registered by phase correlation, and a rigid motion (2D Kabsch) is fitted to
their displacements, outliers dropped; the image is turned back by the
angle found and the residual fitted again (:data:`ROUNDS`). The fit's
residuals give the angle's standard error. Gating (``mode``):

- ``"skipped"``: no rotation (identity, as without this feature) when the
  angle is below :data:`SIGNIFICANCE` standard errors or
  :data:`MIN_ANGLE_DEG`, when the two spatial halves of the overlap give
  angles that differ by more than :data:`MAX_HALF_DISAGREEMENT` standard
  errors (a local warp or a texture artefact, not a rigid turn), when it lies
  outside ``[-max, max]``, or when too few patches are textured; ``reason``
  says which. The previous gate (NCC gain over no rotation) accepted a false
  1.19 degree turn on the unrotated ``tiny`` preset: a gain in NCC is no
  evidence of a turn, a consistent displacement field is;
- ``"rotation_only"``: the angle is accepted but the aligned overlap is weak
  (NCC below the stack's ``min_confidence``): the rotation is applied; the
  translation is left to the stack's own gated refinement;
- ``"full"``: both are confident: rotation applied, translation refined.

An accepted angle is refined on the whole overlap (NCC over a 0.05 degree
grid of +-0.4 degree around it, a parabola at the peak): every pixel at once
is more precise about how much than the patches.
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
from linumpy.stack.refine import bandpass_planes, estimate_lateral_shift, normalized_cross_correlation

LOGGER = logging.getLogger(__name__)

#: Largest rotation searched by :func:`estimate_rotation` unless told otherwise, degrees.
DEFAULT_MAX_ROTATION_DEG = 5.0
#: Width of the images the rotation is estimated on (pixels, at most twice this).
ROTATION_SIZE = 256
#: Side of the patches whose displacements are fitted (pixels; smaller images use a quarter of their side).
PATCH_SIZE = 48
#: Patches with a smaller aligned NCC, or with less valid (non-zero) area, do not count.
MIN_PATCH_NCC, MIN_PATCH_VALID = 0.2, 0.9
#: Fewest patches for a fit, and in each of the two interleaved halves.
MIN_PATCHES = 6
#: A patch whose displacement misses the rigid fit by more than this (pixels) is an outlier.
MAX_RESIDUAL_PX = 1.0
#: A rotation is applied only when it exceeds :data:`SIGNIFICANCE` standard errors and
#: :data:`MIN_ANGLE_DEG`, and the estimates of the two spatial halves of the overlap agree within
#: :data:`MAX_HALF_DISAGREEMENT` standard errors of their difference (or :data:`MIN_ANGLE_DEG`).
SIGNIFICANCE = 4.0
MIN_ANGLE_DEG = 0.1
MAX_HALF_DISAGREEMENT = 4.0
#: Rounds of "fit, turn the moving image back, fit the residual".
ROUNDS = 3
#: An accepted angle is refined on the whole overlap over +-this (degrees) in steps of FINE_STEP_DEG.
REFINE_HALF_WIDTH_DEG, FINE_STEP_DEG = 0.4, 0.05
#: Gaussian smoothing (pixels) of the overlap images: speckle out, structure in.
SMOOTHING_PX = 1.5
#: Planes averaged from the top of a slice (and around the depth step of the previous one).
ROTATION_PLANES = 16
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
        Angle fitted, before gating.
    std_deg : float
        Standard error of ``measured_deg`` (from the patches' residuals; inf without a fit).
    halves_deg : tuple of float
        The angle fitted on each spatial half of the patches (independent checks).
    n_patches : int
        Patches that entered the fit.
    ncc, ncc_identity : float
        NCC of the aligned overlap with the rotation applied and without it.
    mode : str
        ``"full"``, ``"rotation_only"`` or ``"skipped"`` (see the module docstring).
    reason : str
        Why a rotation was skipped (empty otherwise).
    """

    angle_deg: float
    measured_deg: float
    std_deg: float
    halves_deg: tuple[float, float]
    n_patches: int
    ncc: float
    ncc_identity: float
    mode: str
    reason: str = ""

    def to_dict(self) -> dict:
        """JSON-ready dict, rounded (an infinite standard error is written as None)."""
        out = {}
        for key, value in asdict(self).items():
            if isinstance(value, float):
                value = round(value, 4) if math.isfinite(value) else None
            elif isinstance(value, tuple):
                value = [round(v, 4) if math.isfinite(v) else None for v in value]
            out[key] = value
        return out


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


@dataclass(frozen=True)
class _RigidFit:
    """Rigid fit of patch displacements: angle (degrees, to undo), its standard error, the halves' angles."""

    angle_deg: float
    std_deg: float
    halves_deg: tuple[float, float]
    halves_std_deg: tuple[float, float]
    n_patches: int


def estimate_rotation(reference: np.ndarray, moving: np.ndarray, max_deg: float = DEFAULT_MAX_ROTATION_DEG,
                      min_confidence: float = 0.3) -> RotationEstimate:
    """Estimate the rotation turning ``moving`` onto ``reference`` (2D, same shape, zeros = no data).

    The displacement of each patch (phase correlation) is measured and a
    rigid motion fitted to them; the moving image is turned back by the
    angle found and the residual fitted again (:data:`ROUNDS` times). The
    rotation is applied only when it is significant, the two halves agree
    and it lies inside ``[-max_deg, max_deg]`` (see the module docstring).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> image = ndimage.gaussian_filter(rng.standard_normal((128, 128)), 2)
    >>> turned = rotate_image(image, -2.0)
    >>> round(estimate_rotation(image, turned).angle_deg, 1)
    2.0
    >>> estimate_rotation(image, rotate_image(image, 0.0)).mode
    'skipped'
    """
    valid_ref = reference != 0
    valid_mov = (moving != 0).astype(np.float32)
    total, fit = 0.0, None
    for _ in range(ROUNDS):
        turned, valid = _turned(moving, valid_mov, total)
        fit = _fit_patches(reference, valid_ref, turned, valid)
        if fit is None:
            break
        total += fit.angle_deg
        if abs(fit.angle_deg) < MIN_ANGLE_DEG / 10:
            break
    identity = _aligned_ncc(reference, valid_ref, moving, valid_mov, 0.0)
    if fit is None:
        return RotationEstimate(0.0, 0.0, math.inf, (math.nan, math.nan), 0, identity, identity, "skipped",
                                f"fewer than {MIN_PATCHES} textured patches in the overlap")
    # the last round fitted the residual after turning by ``total``: the halves' full estimates
    halves = (total - fit.angle_deg + fit.halves_deg[0], total - fit.angle_deg + fit.halves_deg[1])
    reason = _skip_reason(total, fit, halves, max_deg)
    if reason:
        return RotationEstimate(0.0, total, fit.std_deg, halves, fit.n_patches, identity, identity, "skipped", reason)
    angle, ncc = _refine_angle(reference, valid_ref, moving, valid_mov, total, max_deg)
    mode = "full" if ncc >= min_confidence else "rotation_only"
    return RotationEstimate(angle, total, fit.std_deg, halves, fit.n_patches, ncc, identity, mode)


def _refine_angle(reference: np.ndarray, valid_ref: np.ndarray, moving: np.ndarray, valid_mov: np.ndarray,
                  angle_deg: float, max_deg: float) -> tuple[float, float]:
    """Refine an accepted angle on the whole overlap: NCC over a fine grid around it, parabola at the peak.

    The patches tell whether there is a rotation; the whole overlap, every
    pixel at once, is more precise about how much. Returns ``(angle, NCC)``.
    """
    grid = angle_deg + np.arange(-REFINE_HALF_WIDTH_DEG, REFINE_HALF_WIDTH_DEG + 1e-9, FINE_STEP_DEG)
    grid = grid[np.abs(grid) <= max_deg]
    scores = np.array([_aligned_ncc(reference, valid_ref, moving, valid_mov, float(a)) for a in grid])
    best = int(np.argmax(scores))
    angle = float(grid[best])
    if 0 < best < len(grid) - 1:
        left, peak, right = scores[best - 1 : best + 2]
        curvature = left - 2 * peak + right
        if curvature < 0:
            angle += FINE_STEP_DEG * 0.5 * (left - right) / curvature
    return float(angle), float(scores[best])


def _skip_reason(angle: float, fit: _RigidFit, halves: tuple[float, float], max_deg: float) -> str:
    """Why the fitted ``angle`` is not applied ('' when it is)."""
    if abs(angle) > max_deg:
        return f"{angle:.2f} degrees is outside the searched range of +-{max_deg:g}"
    if abs(angle) < max(SIGNIFICANCE * fit.std_deg, MIN_ANGLE_DEG):
        return f"not significant ({angle:.3f} +- {fit.std_deg:.3f} degrees)"
    disagreement = abs(halves[0] - halves[1])
    if not disagreement <= max(MAX_HALF_DISAGREEMENT * math.hypot(*fit.halves_std_deg), MIN_ANGLE_DEG):
        return f"halves disagree ({halves[0]:.2f} vs {halves[1]:.2f} degrees)"
    return ""


def _turned(image: np.ndarray, valid: np.ndarray, angle_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """``image`` turned by ``angle_deg`` (zero where it has no data) and its valid mask."""
    if angle_deg == 0:
        return image, valid > 0
    turned_valid = rotate_image(valid, angle_deg) > 0.99
    return np.where(turned_valid, rotate_image(image, angle_deg), 0.0), turned_valid


def _fit_patches(reference: np.ndarray, valid_ref: np.ndarray, moving: np.ndarray,
                 valid_mov: np.ndarray) -> _RigidFit | None:
    """Measure the displacement of half-overlapping patches of ``moving`` and fit a rigid motion.

    Returns None when fewer than :data:`MIN_PATCHES` patches (or per half)
    are textured, valid and consistent.
    """
    shift, _, _ = phase_cross_correlation(reference, moving, normalization=None)
    shift = np.rint(shift).astype(int)
    size = min(PATCH_SIZE, min(reference.shape) // 4)
    centres, targets = [], []
    for y in range(0, moving.shape[0] - size + 1, size // 2):
        for x in range(0, moving.shape[1] - size + 1, size // 2):
            ry, rx = y + shift[0], x + shift[1]
            if ry < 0 or rx < 0 or ry + size > reference.shape[0] or rx + size > reference.shape[1]:
                continue
            window_mov, window_ref = np.s_[y:y + size, x:x + size], np.s_[ry:ry + size, rx:rx + size]
            if min(valid_mov[window_mov].mean(), valid_ref[window_ref].mean()) < MIN_PATCH_VALID:
                continue
            residual, confidence = estimate_lateral_shift(reference[window_ref], moving[window_mov])
            if confidence < MIN_PATCH_NCC or max(abs(v) for v in residual) > size / 4:
                continue
            centre = np.array([y + (size - 1) / 2, x + (size - 1) / 2])
            centres.append(centre)
            targets.append(centre + shift + np.asarray(residual))
    centres, targets = np.asarray(centres), np.asarray(targets)
    keep = np.ones(len(centres), bool)
    for _ in range(2):  # fit, drop the outliers, fit again
        if keep.sum() < MIN_PATCHES:
            return None
        _, _, residuals = _rigid_fit(centres[keep], targets[keep])
        errors = np.zeros(len(centres))
        errors[keep] = residuals
        keep &= errors <= max(MAX_RESIDUAL_PX, 3 * float(np.median(residuals)))
    if keep.sum() < MIN_PATCHES:
        return None
    angle, std, _ = _rigid_fit(centres[keep], targets[keep])
    # two spatial halves (either side of the patches' centre along their longer extent): a rigid
    # turn gives the same angle on both, a local warp or a texture artefact does not
    axis = int(np.argmax(np.ptp(centres[keep], axis=0)))
    side = centres[:, axis] < np.median(centres[keep, axis])
    halves = []
    for half in (side, ~side):
        chosen = keep & half
        if chosen.sum() < MIN_PATCHES // 2:
            return None
        halves.append(_rigid_fit(centres[chosen], targets[chosen])[:2])
    return _RigidFit(angle, std, (halves[0][0], halves[1][0]), (halves[0][1], halves[1][1]), int(keep.sum()))


def _rigid_fit(source: np.ndarray, target: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Angle (degrees, to undo with :func:`rotate_image`) of the rigid motion ``source -> target``,
    its standard error (degrees) and the residuals (pixels).

    Least squares (Kabsch in 2D) on ``(y, x)`` points: ``target = R(phi) source + t``;
    the angle returned is ``-phi`` (:func:`rotate_image` by it turns the moving image back).
    Half-overlapping patches: about a quarter are independent, hence the factor 4 on the variance.
    """
    u = source - source.mean(axis=0)
    v = target - target.mean(axis=0)
    phi = math.atan2(float(np.sum(v[:, 1] * u[:, 0] - v[:, 0] * u[:, 1])), float(np.sum(v * u)))
    rotation = np.array([[math.cos(phi), -math.sin(phi)], [math.sin(phi), math.cos(phi)]])
    residuals = np.linalg.norm(v - u @ rotation.T, axis=1)
    variance = float(np.sum(residuals**2)) / max(1, 2 * len(u) - 3) * 4 / max(float(np.sum(u**2)), 1e-12)
    return -math.degrees(phi), math.degrees(math.sqrt(variance)), residuals


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
