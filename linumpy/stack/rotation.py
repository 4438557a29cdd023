"""Rotation about z between consecutive slices: estimate it on the overlap, undo it lazily.

Remounting the block and cutting it can turn it by a few degrees between
slices; the translation-only refinement cannot follow. Before the stack
registers each slice against the previous one, :func:`derotate_slices`
estimates the rotation of each slice relative to the (already de-rotated)
previous slice and rotates the slice back about its lateral centre, so the
usual z and lateral refinement then runs on de-rotated slices.

Estimation (:func:`estimate_rotation`): a thick average of the slice's top
planes is compared with the previous slice's planes around the motor depth
step (the overlap), both lightly smoothed with their lateral background
removed (fine texture pins the angle). Coarse to fine: the NCC of the whole
overlap over a :data:`COARSE_STEP_DEG` grid of angles (the moving image turned
bilinearly, shifted by the whole pixels phase correlation finds; every other
angle, then the two beside the best of those: :func:`_grid_start`), then the
angle and sub-pixel shift maximising it (Gauss-Newton on the NCC, the moving
image resampled with a cubic spline, :meth:`_Overlap.refine`), from the best
grid point. The same fine
search on each spatial half of the overlap (split across y, and across x),
started from the whole overlap's optimum, gives two independent angles; half
their larger difference is the estimate's uncertainty. Gating (``mode``):

- ``"skipped"``: no rotation (identity, as without this feature) when the
  angle is below :data:`MIN_ANGLE_DEG` or :data:`SIGNIFICANCE` times its
  uncertainty, when the two halves differ by more than
  :data:`MAX_HALF_DISAGREEMENT_DEG` (a local warp or a texture artefact,
  not a rigid turn), when it lies outside ``[-max, max]`` or when the turn
  does not raise the overlap's NCC; ``reason`` says which;
- ``"rotation_only"``: the angle is accepted but the aligned overlap is weak
  (NCC below the stack's ``min_confidence``): the rotation is applied; the
  translation is left to the stack's own gated refinement;
- ``"full"``: both are confident: rotation applied, translation refined.

An earlier estimator fitted a rigid motion to the phase-correlation shifts
of small patches of more heavily smoothed images: on slices through the
whole chain (166 x 115 px) its angle erred by up to 0.9 degree.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace

import dask.array as da
import numpy as np
from scipy import fft, ndimage
from skimage.registration import phase_cross_correlation

from linumpy.parallel import default_workers
from linumpy.stack.held import HeldBlocks
from linumpy.stack.pairs import pair_map
from linumpy.stack.levels import MappedLevels
from linumpy.stack.planes import read_planes
from linumpy.stack.refine import bandpass_planes, normalized_cross_correlation, overlap_views
from linumpy.stack.windows import depth_chunks, windowed_blocks

LOGGER = logging.getLogger(__name__)

#: Largest rotation searched by :func:`estimate_rotation` unless told otherwise, degrees.
DEFAULT_MAX_ROTATION_DEG = 5.0
#: Largest width of the images the rotation is estimated on (pixels): the coarsest pyramid level at
#: least half this wide, block-averaged to at most this.
ROTATION_SIZE = 256
#: Angle step of the coarse search (degrees); the fine search starts from its best angle.
COARSE_STEP_DEG = 0.5
#: Gate: a turn is applied only when it is at least MIN_ANGLE_DEG, at least SIGNIFICANCE times its
#: uncertainty (half the difference of the two halves' angles), the halves agree within
#: MAX_HALF_DISAGREEMENT_DEG and it raises the overlap's NCC (tuned on the chain's ``harsh`` and
#: ``tilted`` seeds 0-2, benchmarks/bench_rotation_chain.py).
MIN_ANGLE_DEG = 0.15
SIGNIFICANCE = 2.5
MAX_HALF_DISAGREEMENT_DEG = 1.0
#: Smallest skipped turn reported by :func:`unapplied_turn` (degrees): below it the skip is a small
#: residual (unturned pairs measure within +-0.12); above it the slice may be left turned.
UNAPPLIED_TURN_DEG = 1.0
#: Preparation of the overlap images: a Gaussian of SMOOTHING_PX pixels (speckle out) and a lateral
#: background (box of 2 * BACKGROUND_RADIUS_PX + 1 pixels) removed. Fine texture is what pins the
#: angle: with 1.5 px and a 17 px box (the z registration's) the search erred by up to 0.8 degree on
#: turned chain slices (``harsh`` seed 0), with 0.7 px and a 9 px box by up to 0.18 (seeds 0-1).
SMOOTHING_PX = 0.7
BACKGROUND_RADIUS_PX = 4
#: Planes averaged from the top of a slice (and around the depth step of the previous one).
ROTATION_PLANES = 16
#: Spline order of the moving image in the fine search. Bilinear resampling blurs it the more the further
#: a pixel falls from the grid, which favours no turn: true turns of 0.16-0.48 degree measured 55-75% of
#: their size (0.25 skipped at 0.14) and unrotated pairs -0.12 to +0.11; cubic: 0.16-0.48 measured 0.16-0.44,
#: unrotated -0.09 to +0.07 (chain ``harsh``/``tilted`` seeds 0-2, benchmarks/bench_rotation_chain.py).
SEARCH_ORDER = 3
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
        Uncertainty of ``measured_deg``: half the difference of the halves' angles
        (NaN, written None, when ``measured_deg`` is below :data:`MIN_ANGLE_DEG`: the
        turn is skipped whatever the halves say, so they are not searched).
    halves_deg : tuple of float
        The angle fitted on each spatial half of the overlap (independent checks; NaN
        as ``std_deg``).
    ncc, ncc_identity : float
        NCC of the aligned overlap with the rotation applied and without it
        (NaN, written None, when ``measured_deg`` is below :data:`MIN_ANGLE_DEG`:
        the unturned overlap is then not searched either).
    mode : str
        ``"full"``, ``"rotation_only"`` or ``"skipped"`` (see the module docstring).
    reason : str
        Why a rotation was skipped (empty otherwise).
    overlap_ncc : float
        NCC of the aligned overlap at the fitted motion, whatever the gate
        decided (0 when the overlap holds no data): how well the two images
        match, used to choose between overlaps at different depth steps.
    depth_step_um : float or None
        The depth step whose overlap gave the estimate when more than one was
        searched (:func:`derotate_slices`); None when only the motor step was.
    """

    angle_deg: float
    measured_deg: float
    std_deg: float
    halves_deg: tuple[float, float]
    ncc: float
    ncc_identity: float
    mode: str
    reason: str = ""
    overlap_ncc: float = 0.0
    depth_step_um: float | None = None

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


def unapplied_turn(entry: dict | None) -> float | None:
    """The turn measured but not applied for a slice's rotation record (``RotationEstimate.to_dict``), or None.

    A skipped rotation whose fitted angle is at least :data:`UNAPPLIED_TURN_DEG` and
    matched the overlap better than no turn (``overlap_ncc > ncc_identity``) was
    refused by significance, the halves' disagreement or the searched range:
    the slice is left on the identity (as without the search) but may be turned.

    Examples
    --------
    >>> unapplied_turn({"mode": "skipped", "measured_deg": 5.2, "overlap_ncc": 0.42, "ncc_identity": 0.3})
    5.2
    >>> unapplied_turn({"mode": "full", "measured_deg": 2.0, "overlap_ncc": 0.9, "ncc_identity": 0.6}) is None
    True
    """
    if not entry or entry.get("mode") != "skipped" or entry.get("ncc_identity") is None:
        return None
    measured = entry.get("measured_deg") or 0.0
    if abs(measured) < UNAPPLIED_TURN_DEG or (entry.get("overlap_ncc") or 0.0) <= entry["ncc_identity"]:
        return None
    return float(measured)


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


def _motion(shape: Sequence[int], params: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """``(matrix, offset)`` for :func:`scipy.ndimage.affine_transform`: turn an image of ``shape`` by
    ``params[0]`` degrees about its centre, then shift it by ``params[1:]`` pixels."""
    theta = math.radians(params[0])
    matrix = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    centre = (np.asarray(shape, float) - 1) / 2
    return matrix, centre - matrix @ (centre + np.asarray(params[1:], float))


def _turned_params(image: np.ndarray, params: Sequence[float], box: tuple[slice, slice] | None = None,
                   order: int = 1, coefficients: np.ndarray | None = None, dtype: np.dtype | None = None,
                   ) -> np.ndarray:
    """``image`` turned by ``params[0]`` degrees about its centre, then shifted by ``params[1:]`` pixels
    (spline ``order``); only the output pixels in ``box`` (rows, columns; default all), as ``dtype``
    (default ``image``'s).

    ``coefficients``: ``image``'s spline coefficients (:func:`spline_coefficients`), when already
    computed: the same values, without filtering ``image`` again.
    """
    matrix, offset = _motion(image.shape, params)
    box = _whole(image.shape) if box is None else box
    origin = np.array([part.start for part in box], float)
    source = image if coefficients is None else coefficients
    offset = offset + matrix @ origin
    if params[0] == 0:  # a pure shift (the search without a turn): scipy's separable path, the same values faster
        matrix = np.diag(matrix)
    return ndimage.affine_transform(source, matrix, offset, order=order, mode="constant", cval=0.0,
                                    output_shape=tuple(part.stop - part.start for part in box),
                                    prefilter=coefficients is None, output=dtype or image.dtype)


def spline_coefficients(image: np.ndarray, order: int) -> np.ndarray:
    """The spline coefficients :func:`scipy.ndimage.affine_transform` (``mode="constant"``) computes from
    ``image`` on every call; computed once, they give the same output with ``prefilter=False``."""
    return ndimage.spline_filter(image, order, output=np.float64, mode="constant") if order > 1 else image


def _whole(shape: Sequence[int]) -> tuple[slice, slice]:
    return slice(0, shape[0]), slice(0, shape[1])


#: The fine search (Gauss-Newton on the NCC, :meth:`_Overlap.refine`): parameter steps (degrees, pixels) of
#: the finite differences giving the turned image's Jacobian (the cubic spline is smooth: its truncation error
#: is far below the stopping step), the step below which it stops (0.01, the Nelder-Mead simplex size it
#: replaced; 0.001 took 1181 instead of 775 resamplings on the chain pairs of ``baseline`` s0, ``speckle`` s3
#: and ``harsh`` s0 for the same errors) and its most iterations.
JACOBIAN_STEP = 1e-3
SEARCH_XTOL = 1e-2
MAX_ITERATIONS = 12
#: The fine search's pixels stay this far inside the moving image's footprint (a motion of 0.5 degree moves a
#: corner of a 256 px image by 1.6 px), and it starts again on a new set at most MAX_RESTARTS times.
SEARCH_MARGIN_PX = 3
MAX_RESTARTS = 2
#: Halvings of a step that lowers the NCC before the search stops at its best point.
MAX_HALVINGS = 4


class _Overlap:
    """Two overlap images and their valid masks: the NCC of any rigid motion of the moving one."""

    def __init__(self, reference: np.ndarray, moving: np.ndarray) -> None:
        self.reference, self.moving = reference, moving
        # filtered once here, not by every resampling of the search (the same values)
        self.coefficients = spline_coefficients(moving, SEARCH_ORDER)
        self.valid_ref = reference != 0
        # the reference's spectrum, computed once for the whole-pixel shift of every angle of the coarse search,
        # both images zero-padded to sizes with fast FFTs (the ``small`` slices' 229 px, a prime: 5.6 ms a
        # transform instead of 1.0)
        self.spectrum_shape = tuple(fft.next_fast_len(n, real=False) for n in reference.shape)
        self.reference_spectrum = fft.fftn(reference, self.spectrum_shape)
        self.valid_mov = (moving != 0).astype(np.float32)
        # data everywhere in the moving image (the usual case): its turned footprint is computed, not resampled
        self.whole = bool(self.valid_mov.all())
        self.rows = np.arange(moving.shape[0], dtype=float)[:, None]
        self.columns = np.arange(moving.shape[1], dtype=float)[None, :]

    def footprint(self, params: Sequence[float], box: tuple[slice, slice], margin: int = 0) -> np.ndarray:
        """Where the moving image, turned and shifted by ``params``, holds data (all four bilinear
        neighbours; at least ``margin`` pixels inside), over the output pixels in ``box``."""
        if not self.whole:
            inside = _turned_params(self.valid_mov, params, box) > 0.99
            return ndimage.binary_erosion(inside, iterations=margin) if margin else inside
        matrix, offset = _motion(self.moving.shape, params)
        rows, columns = self.rows[box[0]], self.columns[:, box[1]]
        inside = np.ones((rows.size, columns.size), bool)
        for axis, size in enumerate(self.moving.shape):
            source = matrix[axis, 0] * rows + matrix[axis, 1] * columns + offset[axis]
            inside &= (source >= margin) & (source <= size - 1 - margin)
        return inside

    def start(self, angle_deg: float) -> tuple[tuple[float, float, float], float]:
        """``((angle, dy, dx), NCC)``: the whole-pixel shift (phase correlation) of ``moving`` turned by
        ``angle_deg``, and the NCC of that motion, both on the bilinear turn (the coarse search's score: no
        cubic resampling per angle); NCC 0 when less than a tenth of the image is common."""
        inside = self.footprint((angle_deg, 0.0, 0.0), _whole(self.moving.shape))
        turned = np.where(inside, rotate_image(self.moving, angle_deg), 0.0)
        shift, _, _ = phase_cross_correlation(self.reference_spectrum, fft.fftn(turned, self.spectrum_shape),
                                              space="fourier", normalization=None)
        params = (float(angle_deg), float(shift[0]), float(shift[1]))
        reference, moved = overlap_views(self.reference, turned, shift)
        valid_ref, moved_inside = overlap_views(self.valid_ref, inside, shift)
        common = valid_ref & moved_inside
        if common.sum() < 0.1 * self.reference.size:
            return params, 0.0
        return params, normalized_cross_correlation(reference[common], moved[common])

    def turned(self, params: Sequence[float], box: tuple[slice, slice]) -> np.ndarray:
        """The moving image turned and shifted by ``params`` (cubic, float64: finite differences of it are
        the Jacobian) over ``box``."""
        return _turned_params(self.moving, params, box, SEARCH_ORDER, self.coefficients, np.float64)

    def refine(self, params: Sequence[float], box: tuple[slice, slice] | None = None,
               fixed_angle: bool = False) -> tuple[np.ndarray, float]:
        """Maximise the NCC (over ``box``) from ``params`` (the angle kept with ``fixed_angle``); ``(params, NCC)``.

        Gauss-Newton on the enhanced correlation coefficient (Evangelidis and Psarakis 2008, the update of
        OpenCV's ``findTransformECC``) over a fixed set of pixels: the common area at ``params``, at least
        :data:`SEARCH_MARGIN_PX` inside the moving image's footprint (a set that changed with the motion
        would make the NCC jump where pixels enter or leave it, and the linearised steps stall there).
        Each step maximises the NCC of the turned image linearised in the free parameters (Jacobian by
        finite differences of the cubic resampling), halved while it lowers the NCC; the search stops when
        a step is below :data:`SEARCH_XTOL` (degrees and pixels), and starts again from there, on that
        point's pixels, if the motion took some of the set outside the footprint. The NCC returned is
        over the whole common area at the motion found, as the coarse search's.
        """
        box = _whole(self.reference.shape) if box is None else box
        free = [1, 2] if fixed_angle else [0, 1, 2]
        current, turned = np.asarray(params, float), None
        for _ in range(MAX_RESTARTS + 1):
            pixels = self.footprint(current, box, SEARCH_MARGIN_PX) & self.valid_ref[box]
            if pixels.sum() < 0.1 * self.reference.size:
                break
            current, turned = self._gauss_newton(current, box, pixels, free, turned)
            if self.footprint(current, box)[pixels].all():
                break
        common = self.footprint(current, box) & self.valid_ref[box]
        if common.sum() < 0.1 * self.reference.size:
            return current, 0.0
        turned = self.turned(current, box) if turned is None else turned  # the search's last resampling
        return current, normalized_cross_correlation(self.reference[box][common], turned[common])

    def _gauss_newton(self, params: np.ndarray, box: tuple[slice, slice], pixels: np.ndarray,
                      free: Sequence[int], turned: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The motion maximising the NCC over ``pixels`` (of ``box``) from ``params`` (see :meth:`refine`) and the
        moving image turned by it over ``box`` (:meth:`turned`); ``turned``: the image turned by ``params``, when
        already resampled (the same values)."""
        reference = self.reference[box][pixels].astype(np.float64)
        reference -= reference.mean()
        current = params
        turned = self.turned(current, box) if turned is None else turned
        warped = turned[pixels]
        ncc = normalized_cross_correlation(reference, warped)
        for _ in range(MAX_ITERATIONS):
            step = self._ecc_step(current, box, pixels, reference, warped, free)
            if step is None:
                break
            for _ in range(MAX_HALVINGS + 1):
                trial = current.copy()
                trial[free] += step
                trial_turned = self.turned(trial, box)
                trial_warped = trial_turned[pixels]
                trial_ncc = normalized_cross_correlation(reference, trial_warped)
                if trial_ncc >= ncc:
                    break
                step = step / 2
            if trial_ncc < ncc:
                break
            current, turned, warped, ncc = trial, trial_turned, trial_warped, trial_ncc
            if np.abs(step).max() < SEARCH_XTOL:
                break
        return current, turned

    def _ecc_step(self, params: np.ndarray, box: tuple[slice, slice], pixels: np.ndarray, reference: np.ndarray,
                  warped: np.ndarray, free: Sequence[int]) -> np.ndarray | None:
        """The Gauss-Newton step of the free parameters maximising the NCC of the centred ``reference`` with
        the turned image linearised about ``params`` (``warped``: its values there), over ``pixels``; None
        when the linearisation gives no step."""
        jacobian = np.empty((warped.size, len(free)))
        for column, index in enumerate(free):
            moved = params.copy()
            moved[index] += JACOBIAN_STEP
            jacobian[:, column] = (self.turned(moved, box)[pixels] - warped) / JACOBIAN_STEP
        warped = warped - warped.mean()
        jacobian -= jacobian.mean(axis=0)
        hessian = jacobian.T @ jacobian
        if np.linalg.cond(hessian) > 1e12:
            return None
        warped_projection = jacobian.T @ warped
        reference_projection = jacobian.T @ reference
        solved = np.linalg.solve(hessian, np.stack([warped_projection, reference_projection], axis=1))
        numerator = warped @ warped - warped_projection @ solved[:, 0]
        denominator = reference @ warped - reference_projection @ solved[:, 0]
        if denominator <= 0:
            return None
        return numerator / denominator * solved[:, 1] - solved[:, 0]


def estimate_rotation(reference: np.ndarray, moving: np.ndarray, max_deg: float = DEFAULT_MAX_ROTATION_DEG,
                      min_confidence: float = 0.3) -> RotationEstimate:
    """Estimate the rotation turning ``moving`` onto ``reference`` (2D, same shape, zeros = no data).

    Coarse to fine: the NCC of the whole overlap on a :data:`COARSE_STEP_DEG`
    grid over ``[-max_deg, max_deg]`` (bilinear turn, whole-pixel shift by phase
    correlation at each; :func:`_grid_start`), then the rigid motion (angle and sub-pixel shift) maximising it
    from the best; the same on each spatial half of the overlap gives two
    independent angles, whose difference is the estimate's uncertainty. The
    rotation is applied only when it passes the gate (module docstring).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> image = ndimage.gaussian_filter(rng.standard_normal((128, 128)), 2)
    >>> turned = rotate_image(image, -2.0)
    >>> round(estimate_rotation(image, turned).angle_deg, 1)
    2.0
    >>> unturned = estimate_rotation(image, rotate_image(image, 0.0))  # below MIN_ANGLE_DEG: no more search
    >>> unturned.mode, math.isnan(unturned.ncc_identity)
    ('skipped', True)
    """
    overlap = _Overlap(reference, moving)
    if not (overlap.valid_ref.any() and overlap.valid_mov.any()):
        return RotationEstimate(0.0, 0.0, math.inf, (math.nan, math.nan), 0.0, 0.0, "skipped",
                                "the overlap holds no data")
    angles = np.arange(-max_deg - COARSE_STEP_DEG, max_deg + COARSE_STEP_DEG * 1.001, COARSE_STEP_DEG)
    # independent searches, run side by side on the step's threads (scipy's resampling and FFTs release the GIL)
    with ThreadPoolExecutor(max_workers=default_workers(), thread_name_prefix="rotation") as pool:
        params, ncc = overlap.refine(_grid_start(overlap, [float(a) for a in angles], pool))
        measured = float(params[0])
        if abs(measured) < MIN_ANGLE_DEG:
            # skipped whatever the halves and the unturned overlap say: neither is searched (most of the time)
            return RotationEstimate(0.0, measured, math.nan, (math.nan, math.nan), math.nan, math.nan, "skipped",
                                    f"below the smallest turn applied ({measured:.3f} < {MIN_ANGLE_DEG} degrees)",
                                    ncc)
        identity_job = pool.submit(lambda: overlap.refine(overlap.start(0.0)[0], fixed_angle=True)[1])
        halves = _half_angles(overlap, params, pool)
        identity = identity_job.result()
    std = abs(halves[0] - halves[1]) / 2  # each half holds half the pixels: var(h1 - h2) = 4 var(angle)
    reason = _skip_reason(measured, std, halves, ncc, identity, max_deg)
    if reason:
        return RotationEstimate(0.0, measured, std, halves, identity, identity, "skipped", reason, ncc)
    mode = "full" if ncc >= min_confidence else "rotation_only"
    return RotationEstimate(measured, measured, std, halves, ncc, identity, mode, overlap_ncc=ncc)


def _grid_start(overlap: _Overlap, angles: Sequence[float], pool: Executor) -> tuple[float, float, float]:
    """The start of the fine search: the best of the coarse grid ``angles`` (:meth:`_Overlap.start`), scored
    coarse to fine.

    Every other angle first, then the two beside the best of those (13-14
    starts instead of 23 over +-5 degrees): the whole grid's best whenever it
    lies beside the best of every other angle, i.e. when the NCC along the grid
    rises to its peak and falls after it. Ties go to the first angle, as in a
    serial scan of the whole grid.
    """
    scores = dict(zip(range(0, len(angles), 2), pool.map(overlap.start, angles[::2]), strict=True))
    best = max(sorted(scores), key=lambda i: scores[i][1])
    between = [i for i in (best - 1, best + 1) if 0 <= i < len(angles)]
    scores.update(zip(between, pool.map(overlap.start, [angles[i] for i in between]), strict=True))
    return scores[max(sorted(scores), key=lambda i: scores[i][1])][0]


def _half_angles(overlap: _Overlap, params: np.ndarray, pool: Executor) -> tuple[float, float]:
    """The angle refined on each half of the overlap, split across y and across x: the pair that differs most.

    A rigid turn gives the same angle on every half; a warp of one part does not. The four
    searches run on ``pool``.
    """
    index = np.indices(overlap.reference.shape)
    halves = []
    for axis in (0, 1):
        # the first pixel of the second half (each half at least one pixel)
        middle = math.ceil(float(np.median(index[axis][overlap.valid_ref])))
        middle = min(max(middle, 1), overlap.reference.shape[axis] - 1)
        split = [list(_whole(overlap.reference.shape)) for _ in range(2)]
        split[0][axis], split[1][axis] = slice(0, middle), slice(middle, overlap.reference.shape[axis])
        halves += [tuple(half) for half in split]
    angles = [float(found[0][0]) for found in pool.map(lambda half: overlap.refine(params, half), halves)]
    pairs = [(angles[0], angles[1]), (angles[2], angles[3])]
    return max(pairs, key=lambda pair: abs(pair[0] - pair[1]))


def _skip_reason(angle: float, std: float, halves: tuple[float, float], ncc: float, identity: float,
                 max_deg: float) -> str:
    """Why the fitted ``angle`` is not applied ('' when it is)."""
    if abs(angle) > max_deg:
        return f"{angle:.2f} degrees is outside the searched range of +-{max_deg:g}"
    if abs(angle) < SIGNIFICANCE * std:
        return f"not significant ({angle:.3f} degrees, halves {halves[0]:.2f} and {halves[1]:.2f})"
    if abs(halves[0] - halves[1]) > MAX_HALF_DISAGREEMENT_DEG:
        return f"halves disagree ({halves[0]:.2f} vs {halves[1]:.2f} degrees)"
    if ncc <= identity:
        return f"no better than no turn (NCC {ncc:.3f} vs {identity:.3f})"
    return ""


def rotate_lazily(data: da.Array, angle_deg: float, centre_yx: Sequence[float], held: HeldBlocks | None = None,
                  ) -> da.Array:
    """Turn every plane of a ``(z, y, x)`` dask array by ``angle_deg`` about ``centre_yx`` (pixels).

    Same shape and lateral chunks (depth blocks of :data:`~linumpy.stack.windows.DEPTH_BLOCK`
    planes); each output block reads only the source window its rotated footprint needs (plus a
    margin), so memory stays per chunk. ``held``: the turned blocks it keeps and hands back
    (:class:`~linumpy.stack.held.HeldBlocks`; a block's values depend on its region only).
    """
    if angle_deg == 0:
        return data
    _, ny, nx = data.shape
    matrix, _ = rotation_transform(angle_deg, centre_yx)

    def window(region: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
        zs, (y0, y1), (x0, x1) = region
        corners = np.array([[y, x] for y in (y0, y1 - 1) for x in (x0, x1 - 1)], float)
        source = (matrix @ (corners - np.asarray(centre_yx)).T).T + np.asarray(centre_yx)
        low = np.maximum(np.floor(source.min(axis=0)).astype(int) - WINDOW_MARGIN, 0)
        high = np.minimum(np.ceil(source.max(axis=0)).astype(int) + WINDOW_MARGIN + 1, (ny, nx))
        # a footprint outside the plane still reads one pixel (turned to zeros)
        low = np.minimum(low, (ny - 1, nx - 1))
        high = np.maximum(high, low + 1)
        return zs, (int(low[0]), int(high[0])), (int(low[1]), int(high[1]))

    def turn(values: np.ndarray, region: tuple[tuple[int, int], ...], bounds: tuple[tuple[int, int], ...],
             ) -> np.ndarray:
        _, (y0, y1), (x0, x1) = region
        _, offset = rotation_transform(angle_deg, centre_yx, (y0, x0), (bounds[1][0], bounds[2][0]))
        return _turn_planes(values, matrix, offset, (y1 - y0, x1 - x0))

    chunks = (depth_chunks(data.shape[0]), data.chunks[1], data.chunks[2])
    return windowed_blocks(data, chunks, window, turn if held is None else held.wrap(turn), "rotate")


def _turn_planes(window: np.ndarray, matrix: np.ndarray, offset: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Each plane of ``window`` turned in float32 into ``shape``: a float32 plane as it is (the spline prefilter
    copies it) and straight into its output plane (no copy of either; the same values)."""
    out = np.empty((window.shape[0], *shape), window.dtype)
    direct = out.dtype == np.float32
    for k, plane in enumerate(window):
        turned = ndimage.affine_transform(plane.astype(np.float32, copy=False), matrix, offset, output_shape=shape,
                                          output=out[k] if direct else None, order=RESAMPLING_ORDER,
                                          mode="constant", cval=0.0)
        if not direct:
            out[k] = turned
    return out


def _overlap_images(reads: Sequence[tuple[da.Array, tuple[int, int]]], factor: int,
                    band_workers: int = 1) -> list[np.ndarray]:
    """Band-passed average of planes ``[start, stop)`` of each ``(data, planes)``, block-averaged laterally by
    ``factor`` (:func:`linumpy.stack.planes.read_planes`, ``band_workers`` bands side by side)."""
    return [_overlap_image(read_planes(data[start:stop], factor, band_workers)) for data, (start, stop) in reads]


def _overlap_image(stack: np.ndarray) -> np.ndarray:
    """Band-passed average of the planes of ``stack``."""
    image = ndimage.gaussian_filter(stack.mean(axis=0), SMOOTHING_PX)
    return bandpass_planes(image[None], axial_sigma_px=0.0, background_radius_px=BACKGROUND_RADIUS_PX)[0]


def _common_shape(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both images cut to the shape they share (same first pixel): no zero padding, so the moving
    image's footprint is a rectangle (:meth:`_Overlap.footprint`)."""
    shape = tuple(min(m, n) for m, n in zip(a.shape, b.shape))
    return a[: shape[0], : shape[1]], b[: shape[0], : shape[1]]


def derotate_slices(slices: Sequence, steps_um: Sequence[Sequence[float]], max_deg: float, min_confidence: float,
                    workers: int | None = None, band_workers: int = 1) -> tuple[list, list[RotationEstimate | None]]:
    """Estimate and undo the rotation of every slice relative to the previous one (chained).

    Parameters
    ----------
    slices : sequence of linumpy.stack.stacking.SliceVolume
        In slice-id order; a slice after a gap is compared with the slice before the gap.
    steps_um : sequence of sequence of float
        Depth steps from the previous slice to each slice whose overlaps are
        searched (first slice: ignored): the motor step, then the slice
        thickness too where the motor step is in doubt (a motor slip puts the
        overlap elsewhere). With several, the estimate of the overlap that
        matches best is kept (highest ``overlap_ncc``; ties: the first step),
        whatever its gate decided: the wrong overlap can pass the gate with a
        false turn (0.3 degree seen on an unturned slice after a real thicker cut).
    max_deg : float
        Largest rotation searched; 0 disables the search.
    min_confidence : float
        Overlap NCC above which a rotation estimate is ``"full"``.
    workers : int, optional
        Slice pairs searched side by side (default: the step's threads); the
        estimates do not depend on it.
    band_workers : int
        Bands of each read read side by side (:func:`linumpy.stack.planes.read_planes`).

    Returns
    -------
    (slices, estimates)
        The de-rotated slices (lazy) and one estimate per slice (None for the first).
    """
    if max_deg <= 0:
        return list(slices), [None] * len(slices)
    # every slice against the previous one as read, side by side; redone against the previous one turned,
    # when it turned (most slices do not turn: the estimates are those of the chain, found in parallel)
    first = pair_map(lambda k: _best_rotation(slices[k - 1], slices[k], steps_um[k], max_deg, min_confidence,
                                              band_workers), range(1, len(slices)), workers)
    out, estimates = [slices[0]], [None]
    for k in range(1, len(slices)):
        current = slices[k]
        estimate = first[k - 1] if out[-1] is slices[k - 1] else _best_rotation(
            out[-1], current, steps_um[k], max_deg, min_confidence, band_workers)
        LOGGER.info("slice %d: rotation %s", current.slice_id, estimate)
        estimates.append(estimate)
        out.append(rotate_slice(current, estimate.angle_deg))
    return out, estimates


def _best_rotation(previous, current, steps_um: Sequence[float], max_deg: float, min_confidence: float,
                   band_workers: int = 1) -> RotationEstimate:
    """The rotation of ``current`` searched on the overlap of each depth step; the most trusted (derotate_slices)."""
    found = [_slice_rotation(previous, current, step, max_deg, min_confidence, band_workers) for step in steps_um]
    if len(found) == 1:
        return found[0]
    best = max(range(len(found)), key=lambda i: (found[i].overlap_ncc, -i))
    return replace(found[best], depth_step_um=float(steps_um[best]))


def _slice_rotation(previous, current, step_um: float, max_deg: float, min_confidence: float,
                    band_workers: int = 1) -> RotationEstimate:
    size = ROTATION_SIZE // 2
    level = max(set(previous.widest_levels(size)) & set(current.widest_levels(size)))
    previous_data, source_um = previous.planes_level(level)
    current_data, _ = current.planes_level(level)
    factor = max(1, math.ceil(max(previous_data.shape[1:]) / ROTATION_SIZE))
    expected = int(round(step_um / source_um[0]))
    p0, p1 = previous.useful_range
    c0, c1 = current.useful_range
    start = min(max(p0, p0 + expected), p1 - 1)
    n_planes = max(1, min(ROTATION_PLANES, p1 - start, c1 - c0))
    reference, moving = _common_shape(*_overlap_images(
        [(previous_data, (start, start + n_planes)), (current_data, (c0, c0 + n_planes))], factor, band_workers))
    return estimate_rotation(reference, moving, max_deg, min_confidence)


def rotate_slice(volume, angle_deg: float):
    """A SliceVolume with every level turned by ``angle_deg`` about the slice's lateral centre.

    A level and its run-read copy turn the same blocks (the same regions of
    the same values): they share one :class:`~linumpy.stack.held.HeldBlocks`
    (the slice's ``held_blocks``), which the stack makes keep the blocks one
    phase turned for the next.
    """
    if angle_deg == 0:
        return volume
    held = [HeldBlocks() for _ in range(len(volume.levels))]

    def turned(levels):  # each level's graph built when the stack first reads it (linumpy.stack.levels)
        return None if levels is None else MappedLevels(levels, lambda index, data: rotate_lazily(
            data, angle_deg, ((data.shape[1] - 1) / 2.0, (data.shape[2] - 1) / 2.0), held[index]))

    return replace(volume, levels=turned(volume.levels), read_levels=turned(volume.read_levels), held_blocks=held)
