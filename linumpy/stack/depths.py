"""Slice depths from the registered steps and each slice's own absolute depth, solved together.

Two measurements say where a slice's first useful plane lies in depth:

* **relative**: the registered depth step from the previous slice (the z scan
  of :func:`linumpy.stack.refine.register_pair`), tissue matched against
  tissue. Chained, slice ``k`` = slice ``k-1`` + step, so independent errors
  of the steps add up as a random walk;
* **absolute**: the motor depth plus the slice's own surface depth in its
  image. The OCT images in the stage's frame: image depth ``d`` of slice
  ``k`` lies at stage depth ``z_k + d`` (``z_k`` the motor reading), so the
  plane the axial correction flattened the slice by (``surface_plane_px``,
  the plane its first useful plane follows) lies at ``z_k + F_k`` whatever
  the fit's accuracy. In the lab the cut stays at one height and the stage
  steps by the thickness, so ``F_k`` is nearly constant; a cut that removes
  more or less than the step moves ``F_k`` by as much. Its errors are the
  motor's and the image's depth frame's (stage repeatability, reference-arm
  drift), one per slice: they do not add up along the stack.

:func:`place_depths` solves both in one least-squares problem: every slice's
absolute depth with the standard deviation ``prior_sigma_um``, every
confident registered step with :func:`link_sigma_um`. ``prior_sigma_um`` is
read from the data (:func:`prior_sigma_um`: the scatter of the steps against
the absolute depths that the steps' own errors do not explain), at least
:data:`PRIOR_SIGMA_FLOOR_UM`: an instrument whose depth frame drifts from
slice to slice hands the placement back to the registration, one that holds
still keeps the steps' errors from adding up. Above
:data:`MAX_PRIOR_SIGMA_UM` the absolute depths are left out and the steps
chained, as without them. Pairs without a confident step keep the motor step
as a weak link, so every slice stays tied to the others.

A registered step errs more than its confidence says when the two slices'
overlap is misregistered laterally along oblique structure (fibres crossing
the cut obliquely: on the foreign acquisitions the z-scan peak moves 0.2-0.8
plane per pixel of lateral shift, and a mosaic whose tiles sit 1-2 px off
moved one step 1.33 planes, three times its sigma; ``benchmarks/README.md``,
session zconf65). Inside the chain such a step shows as the one residual
against the absolute depths that its own sigma and the absolute depths'
cannot explain (:func:`doubted_step`): its sigma is raised to its residual,
so the absolute depths place the slice, and the step is named in the record
(``DepthPlacement.doubted``) and flagged. At the ends of the chain a step and
the end slice's absolute depth cannot be told apart; there each slice's
sigma is at least the distance between its placed and its absolute depth.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Smallest standard deviation (um) of a slice's absolute depth (motor reading plus surface depth): the stage's
#: repeatability and the drift of the image's depth frame between two slices. The benchmarks' generators have
#: none (the data cannot bound it from below), so it is stated, not measured.
PRIOR_SIGMA_FLOOR_UM = 0.3
#: Standard deviation of a registered depth step at z confidence 1, axial voxels; a step of confidence ``c``
#: gets this over ``c`` (foreign acquisitions: steps of confidence 0.69-0.76 erred by 0.35 voxel RMS).
LINK_SIGMA_VOXEL = 0.25
#: Standard deviation (um) of the motor step standing in for a pair without a confident registered step.
MOTOR_LINK_SIGMA_UM = 10.0
#: Standard deviation (um) of the absolute depths above which they are not used: the steps are chained (the
#: depth frame moves between slices, maybe drifting, which independent errors per slice do not describe).
MAX_PRIOR_SIGMA_UM = 2.0
#: Fewest registered steps between slices with an absolute depth for :func:`prior_sigma_um` to read the data.
MIN_RESIDUALS = 2
#: A registered step whose residual against the absolute depths exceeds this many standard deviations (its own
#: and twice the absolute depths' variance, the latter read from the other steps' residuals) is doubted
#: (:func:`doubted_step`) when it is the only one: foreign acquisitions, 12 steps of 3 acquisitions, 11 of them
#: 0.0-1.1 standard deviations off, the one 1.33 planes off 2.6 (a first step: not doubted, its slice's sigma
#: says it; ``benchmarks/README.md``, session zconf65).
DOUBTED_STEP_RATIO = 2.5
#: Fewest residuals for :func:`implied_axial_voxel_um` to read a voxel size from them: two, as when the steps
#: without a confident registration leave no more (foreign ``odd`` 341, axial 2.0 um read as 1.5: slices 2 and 4
#: placed by their motor, residuals -14.0 and -14.3 um of a 60 um step; with three needed the flag was silent while
#: the chained steps put slices 1-3 11-14 um off). The residuals of 12 other foreign runs lie within 2 um of zero,
#: under :data:`MIN_SCALE_VOXELS` (``benchmarks/README.md``, stop 68's coordinator section).
MIN_SCALE_STEPS = 2
#: Each residual within this fraction of their median for them to miss alike (:func:`implied_axial_voxel_um`).
SCALE_AGREEMENT = 0.25
#: The residuals' median at least this many axial voxels from zero (:func:`implied_axial_voxel_um`).
MIN_SCALE_VOXELS = 2.0
#: How a stack whose registered steps named another axial voxel was placed (``axial_voxel.placement``,
#: :mod:`linumpy.stack.voxel`): planned again with the planes read at the implied voxel ...
AT_IMPLIED_VOXEL = "implied voxel"
#: ... or by the slices' motor and surface depths at the assumed voxel, the registered depth steps left out.
AT_ABSOLUTE_DEPTHS = "motor and surface depths"


@dataclass(frozen=True)
class DepthPlacement:
    """Depths of the slices' first useful planes and how they were decided.

    Attributes
    ----------
    depths_um : numpy.ndarray
        Depth of each slice relative to the first slice.
    sigma_um : numpy.ndarray
        Standard deviation of each depth relative to the first slice's, under the model's variances, at
        least the distance between the depth placed and the slice's own absolute depth (when one exists):
        where the two disagree beyond the model (a step off at an end of the chain, which
        :func:`doubted_step` cannot tell from a wrong absolute depth there), so does the placement.
    prior_sigma_um : float
        Standard deviation given to the absolute depths.
    absolute_um : list of float or None
        Per slice, its absolute depth relative to the first slice (None without one).
    residuals_um : list of float or None
        Per slice, its registered step minus the step between the absolute depths (None without both).
    doubted : int or None
        The slice whose registered step was doubted (:func:`doubted_step`; its sigma raised to its
        residual), None when no step was.
    doubted_ratio : float or None
        That step's residual over its expected standard deviation.
    """

    depths_um: np.ndarray
    sigma_um: np.ndarray
    prior_sigma_um: float
    absolute_um: list[float | None]
    residuals_um: list[float | None]
    doubted: int | None = None
    doubted_ratio: float | None = None

    @property
    def joint(self) -> bool:
        """Whether the depths are used: the absolute depths scatter by at most :data:`MAX_PRIOR_SIGMA_UM`
        (else the steps are chained)."""
        return self.prior_sigma_um <= MAX_PRIOR_SIGMA_UM


def absolute_depths_um(
    motor_depth_um: Sequence[float],
    flatten_planes: Sequence[Sequence[float] | None],
    lateral_origins_um: np.ndarray,
    centres_px: Sequence[Sequence[float]],
    pixel_um: Sequence[float],
) -> np.ndarray:
    """Each slice's absolute depth: its motor depth plus its flattening plane's depth, relative to the first slice.

    Compared at one lateral point, slice ``k``'s centre ``c_k``: its plane
    lies there at ``F_k(c_k)``, the first slice's at ``F_0(c_k + o_k)``
    (``o_k``: slice ``k``'s lateral origin in the first slice's pixels), so a
    slice shifted under a tilted cut is not moved by the tilt times its shift.

    Parameters
    ----------
    motor_depth_um : sequence of float
        Motor depth of each slice relative to the first (glitches corrected).
    flatten_planes : sequence
        ``(a, b, c)``: the plane ``a + b y + c x`` (axial voxels, level-0
        pixels) each slice's first useful plane follows; None if unknown.
    lateral_origins_um : numpy.ndarray
        ``(n, 2)`` lateral origins ``(y, x)``, micrometres.
    centres_px : sequence
        ``(y, x)`` centre of each slice, level-0 pixels.
    pixel_um : sequence of float
        ``(z, y, x)`` level-0 voxel size.

    Returns
    -------
    numpy.ndarray
        NaN where the slice or the first slice has no plane.

    Examples
    --------
    >>> absolute_depths_um([0.0, 66.0], [(17.0, 0.0, 0.0), (16.0, 0.0, 0.0)], np.zeros((2, 2)),
    ...                    [(10, 10), (10, 10)], (1.5, 4.0, 4.0)).tolist()
    [0.0, 64.5]
    """
    first = flatten_planes[0]
    depths = np.full(len(motor_depth_um), np.nan)
    if first is None:
        return depths
    origins_px = (np.asarray(lateral_origins_um, float) - lateral_origins_um[0]) / np.asarray(pixel_um[1:])
    for k, (motor, plane, centre) in enumerate(zip(motor_depth_um, flatten_planes, centres_px, strict=True)):
        if plane is not None:
            here = plane[0] + plane[1] * centre[0] + plane[2] * centre[1]
            there_y, there_x = np.asarray(centre) + origins_px[k]
            there = first[0] + first[1] * there_y + first[2] * there_x
            depths[k] = motor - motor_depth_um[0] + (here - there) * pixel_um[0]
    return depths


def link_sigma_um(confidence: float, axial_um: float) -> float:
    """Standard deviation of a registered depth step of z confidence ``confidence`` (> 0).

    Examples
    --------
    >>> link_sigma_um(0.5, 1.5)
    0.75
    """
    return LINK_SIGMA_VOXEL * axial_um / confidence


def prior_sigma_um(residuals_um: Sequence[float], link_sigmas_um: Sequence[float]) -> float:
    """Standard deviation of the absolute depths that the steps' scatter against them calls for.

    A residual (registered step minus the step between the two absolute
    depths) has the variance ``link_sigma**2 + 2 prior_sigma**2``: the mean
    of the squares less the steps' variances, over 2, at least
    :data:`PRIOR_SIGMA_FLOOR_UM` (the floor alone with fewer than
    :data:`MIN_RESIDUALS` residuals). The mean, not a robust statistic: one
    large residual (a wrong step, or a wrong absolute depth, which one is
    not known at the ends of the stack) raises it, and the placement leans
    on the steps, as without absolute depths.

    Examples
    --------
    >>> prior_sigma_um([0.4, -0.5, 0.3], [0.6, 0.6, 0.6])
    0.3
    >>> round(prior_sigma_um([4.0, -5.0, 3.0], [0.6, 0.6, 0.6]), 2)
    2.86
    """
    if len(residuals_um) < MIN_RESIDUALS:
        return PRIOR_SIGMA_FLOOR_UM
    excess = np.mean(np.square(residuals_um)) - np.mean(np.square(link_sigmas_um))
    return float(max(PRIOR_SIGMA_FLOOR_UM, np.sqrt(max(excess, 0.0) / 2)))


def implied_axial_voxel_um(residuals_um: Sequence[float | None], step_um: float, axial_um: float) -> float | None:
    """The axial voxel size under which the registered depth steps would match the absolute depths, when they all
    miss them alike; else ``None``.

    A registered step is a number of planes times the axial voxel size; the
    absolute depths come from the motor, in micrometres. A voxel size assumed
    wrong (the native tiles' ``info.txt`` cannot state it, and the lab's
    1.5 um is assumed) scales every registered step by the same factor, so
    every residual is the same fraction of the step, which no drift of the
    depth frame does: at least :data:`MIN_SCALE_STEPS` residuals, each
    within :data:`SCALE_AGREEMENT` of their median, the median at least
    :data:`MIN_SCALE_VOXELS` voxels from zero (foreign ``odd`` 293, axial 2.0
    um read as 1.5: residuals -15.3 to -14.7 um for a 60 um step, implied
    2.00 um).

    Parameters
    ----------
    residuals_um : sequence of float or None
        Per slice, its registered step minus the step between the absolute depths (None without both).
    step_um : float
        The step between the slices' absolute depths (the slice thickness).
    axial_um : float
        The axial voxel size the steps were read with.

    Returns
    -------
    float or None
        ``axial_um`` times the step over the median registered step (``step_um`` plus the median residual).

    Examples
    --------
    >>> implied_axial_voxel_um([None, -15.3, -14.7, -14.8, -15.1], 60.0, 1.5)
    2.0
    >>> implied_axial_voxel_um([None, -15.3, 0.2, -14.8, -15.1], 60.0, 1.5) is None  # not alike
    True
    >>> implied_axial_voxel_um([None, -13.99, None, -14.31, None], 60.0, 1.5)  # odd 341: two steps registered
    1.96
    """
    values = np.array([r for r in residuals_um if r is not None], float)
    if len(values) < MIN_SCALE_STEPS or step_um <= 0:
        return None
    median = float(np.median(values))
    registered = step_um + median
    if abs(median) < MIN_SCALE_VOXELS * axial_um or registered <= 0 \
            or np.max(np.abs(values - median)) > SCALE_AGREEMENT * abs(median):
        return None
    return round(axial_um * step_um / registered, 2)


def doubted_step(
    residuals_um: Sequence[float | None], link_sigmas_um: Sequence[float | None],
) -> tuple[int | None, float]:
    """The one registered step whose residual its own sigma and the absolute depths' cannot explain, if any.

    Each residual is compared with its expected standard deviation,
    ``sqrt(link_sigma**2 + 2 prior**2)``, the prior read from the *other*
    residuals (:func:`prior_sigma_um`; with the step itself, a wrong step
    raises the prior that would judge it). A step is doubted when its ratio
    exceeds :data:`DOUBTED_STEP_RATIO` and no other step's does: two or
    more disagreeing steps point at the absolute depths (a depth frame that
    moves), which the prior then absorbs as before. Only a step with a
    residual on both sides is judged: a wrong absolute depth shows in the
    two residuals around its slice, so a lone residual beyond the ratio is
    the step's own, except at the ends of the chain (the first slice's or
    the last slice's absolute depth enters one residual only: the step and
    that depth cannot be told apart, see :func:`place_depths`' sigma).
    At least :data:`MIN_RESIDUALS` other residuals must read a prior the
    absolute depths are used with (at most :data:`MAX_PRIOR_SIGMA_UM`).

    Parameters
    ----------
    residuals_um, link_sigmas_um : sequence of float or None
        Per slice, its step's residual and sigma (None without a residual).

    Returns
    -------
    tuple
        The slice whose step is doubted, or None; the largest ratio found
        among the steps judged (0 when none is).

    Examples
    --------
    >>> doubted_step([None, 0.1, 2.0, -0.03, -0.47], [None, 0.6, 0.65, 0.76, 0.64])[0]
    2
    >>> doubted_step([None, 2.0, 0.1, -0.03, -0.47], [None, 0.65, 0.6, 0.76, 0.64])[0] is None  # an end
    True
    >>> doubted_step([None, 0.1, 2.0, -2.1, 0.2], [None] + [0.6] * 4)[0] is None  # two: the absolute depth's
    True
    """
    known = [k for k, residual in enumerate(residuals_um) if residual is not None]
    ratios = {}
    for k in known:
        others = [i for i in known if i != k]
        prior = prior_sigma_um([residuals_um[i] for i in others], [link_sigmas_um[i] for i in others])
        if len(others) >= MIN_RESIDUALS and prior <= MAX_PRIOR_SIGMA_UM:
            ratios[k] = abs(residuals_um[k]) / np.sqrt(link_sigmas_um[k] ** 2 + 2 * prior**2)
    beyond = [k for k, ratio in ratios.items() if ratio > DOUBTED_STEP_RATIO]
    inner = len(beyond) == 1 and beyond[0] - 1 in known and beyond[0] + 1 in known
    return (beyond[0] if inner else None), float(max(ratios.values(), default=0.0))


def place_depths(
    motor_depth_um: Sequence[float],
    absolute_um: Sequence[float],
    steps_um: Sequence[float | None],
    step_sigmas_um: Sequence[float | None],
) -> DepthPlacement:
    """Depths of the slices that best agree with their absolute depths and registered steps (least squares).

    Parameters
    ----------
    motor_depth_um : sequence of float
        Motor depth of each slice (glitches corrected): the weak link
        (:data:`MOTOR_LINK_SIGMA_UM`) of a pair without a registered step.
    absolute_um : sequence of float
        :func:`absolute_depths_um` (NaN: none for that slice); at least one
        finite (it anchors the solution).
    steps_um : sequence of float or None
        Per slice ``k >= 1``, its registered depth step from slice ``k-1``,
        None when not registered or not confident (the first entry is
        ignored). A slice id gap is a pair without a step.
    step_sigmas_um : sequence of float or None
        Standard deviation of each step (:func:`link_sigma_um`).

    Returns
    -------
    DepthPlacement

    Examples
    --------
    >>> placed = place_depths([0.0, 66.0, 132.0], [0.0, 65.0, 131.0], [None, 65.4, 65.8], [None, 0.5, 0.5])
    >>> placed.depths_um.round(2).tolist(), placed.prior_sigma_um
    ([0.0, 65.18, 131.05], 0.3)
    """
    n = len(motor_depth_um)
    absolute = np.asarray(absolute_um, float)
    residuals: list[float | None] = [None] * n
    for k in range(1, n):
        if steps_um[k] is not None and np.isfinite(absolute[k - 1 : k + 1]).all():
            residuals[k] = float(steps_um[k] - (absolute[k] - absolute[k - 1]))
    known = [k for k in range(n) if residuals[k] is not None]
    step_sigmas_um = list(step_sigmas_um)
    doubted, ratio = doubted_step(residuals, [step_sigmas_um[k] if residuals[k] is not None else None
                                              for k in range(n)])
    if doubted is not None:
        step_sigmas_um[doubted] = max(step_sigmas_um[doubted], abs(residuals[doubted]))
    prior = prior_sigma_um([residuals[k] for k in known], [step_sigmas_um[k] for k in known])
    rows, values, weights = [], [], []
    for k in np.flatnonzero(np.isfinite(absolute)):
        rows.append(np.eye(n)[k])
        values.append(absolute[k])
        weights.append(1 / prior)
    for k in range(1, n):
        row = np.zeros(n)
        row[k], row[k - 1] = 1.0, -1.0
        rows.append(row)
        registered = steps_um[k] is not None
        values.append(steps_um[k] if registered else motor_depth_um[k] - motor_depth_um[k - 1])
        weights.append(1 / (step_sigmas_um[k] if registered else MOTOR_LINK_SIGMA_UM))
    weighted = np.asarray(rows) * np.asarray(weights)[:, None]
    normal = weighted.T @ weighted
    depths = np.linalg.solve(normal, weighted.T @ (np.asarray(values) * weights))
    covariance = np.linalg.inv(normal)
    variance = np.diag(covariance) + covariance[0, 0] - 2 * covariance[0]
    depths = depths - depths[0]
    # two measurements of a slice's depth that disagree beyond the model bound its uncertainty from below
    apart = np.abs(depths - (absolute - absolute[np.flatnonzero(np.isfinite(absolute))[0]]))
    sigma = np.fmax(np.sqrt(np.maximum(variance, 0.0)), np.where(np.isfinite(apart), apart, 0.0))
    return DepthPlacement(depths, sigma, prior,
                          [float(a) if np.isfinite(a) else None for a in absolute], residuals, doubted,
                          None if doubted is None else round(ratio, 3))
