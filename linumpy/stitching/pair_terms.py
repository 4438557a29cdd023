"""The terms every step of :func:`~linumpy.stitching.estimate.estimate_transform` shares: its
thresholds, the neighbour pairs of a grid and their nominal offsets, a pair's standard error,
variance and status, the :class:`~linumpy.stitching.global_solve.PairOffset` the solve takes of it, and
which tiles a bridge link alone places."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from linumpy.stitching.global_solve import PairOffset, StageModel, TileIndex
from linumpy.stitching.link_conflicts import honest_variance
from linumpy.stitching.pairwise import PairRegistration, edge_ridge
from linumpy.stitching.reanchor import pieces
from linumpy.stitching.tile_search import PRIOR_MARGIN, PRIOR_SLACK_PX, largest_deviation, reference_gauge
from linumpy.stitching.transform import BORDER_PEAK_REFUSED, FAR_BRIDGE_REFUSED, UNFIT_PEAK_REFUSED, PairRecord
from linumpy.stitching.uncertainty import unlocated_variance


#: Neighbour directions registered: down and right.
DIRECTIONS: tuple[TileIndex, ...] = ((1, 0), (0, 1))
#: Significance (robust z-score of the NCC peak) a pair needs to be a candidate.
#: Low on purpose: with speckle drawn anew in every tile, right pairs often
#: score below 1; a candidate that is not strong is kept only where loops of
#: pairs check it, and candidates below :data:`CONFIDENT_SIGNIFICANCE` only if
#: they cost none of the pairs kept without them.
MIN_SIGNIFICANCE = 0.5
#: Significance a pair needs to be accepted as the only link between tiles.
STRONG_SIGNIFICANCE = 3.0
#: Pairs at least this significant are solved first; the reported confidence is 0.5 there.
CONFIDENT_SIGNIFICANCE = 2.0
#: Significance of the joint peak that places a tile left without pairs
#: (:mod:`linumpy.stitching.tile_search`).
JOINT_SIGNIFICANCE = 2.0
#: Significance of a joint peak that places a tile left out when its links
#: corroborate it (:func:`~linumpy.stitching.corroboration.place_corroborated`) ...
WEAK_JOINT_SIGNIFICANCE = 1.0
#: ... at least this many of them ...
MIN_CORROBORATING_LINKS = 2
#: ... and the peak is this sharp (pixels, largest of its two spreads) ...
MAX_WEAK_SPREAD_PX = 1.0
#: ... or, where the stage errs more, at most this fraction of the stage scatter of the axis.
WEAK_SPREAD_SCATTER_FRACTION = 1 / 3
#: A link's offset at a weak joint peak within this many pixels of its own peak (per axis; along its ridge
#: for an edge link) is on its own peak there (:func:`~linumpy.stitching.corroboration._corroboration_refused`).
OWN_PEAK_PX = 2.0
#: Fewest other kept pairs that measure the stage's error for
#: :func:`~linumpy.stitching.departures.implausible_departure`.
MIN_DEPARTURE_PAIRS = 3
#: Floor of a pair's standard error (pixels) when weighting it.
SIGMA_FLOOR_PX = 0.05
#: Error (pixels) of a pair's offset that its sub-pixel fit does not see, times its
#: significance (at least :data:`CONFIDENT_SIGNIFICANCE`): smooth regions, residual
#: vignetting, speckle drawn anew in each tile. Calibrated on seeds 0-2 of the
#: stitching matrix, where the fit's own standard error was right at significance
#: >= 8 but 3-4 times too small below 3 (rms error 0.45 px against 0.12 px claimed).
SIGNIFICANCE_ERROR_PX = 1.0
#: A piece that weak links alone join to the largest piece goes back to the stage model if
#: its farthest tile lies farther than this (pixels) from its stage-model position ...
WEAK_PIECE_DEVIATION_PX = 5.0
#: ... and its links' evidence for where it lies beats the stage placement's by less than
#: this (standard errors, :func:`~linumpy.stitching.reanchor.evidence_over_stage`); within that
#: bar, it goes back when its links prefer the stage placement by this much.
WEAK_PIECE_MARGIN = 0.6
#: ... or, beyond what the stage errs on the slice, by less than this: the margin of a joint peak
#: that places a tile (:data:`JOINT_SIGNIFICANCE`). The searches put a weak piece on the best of
#: many noisy offsets, which alone reads about one standard error over any other placement.
FAR_PIECE_MARGIN = JOINT_SIGNIFICANCE
#: ... or, whatever that evidence, if all those links are edge links whose ridges lie within this many degrees
#: of one another (:func:`~linumpy.stitching.ridges.held_along_parallel_ridges`).
PARALLEL_RIDGES_DEG = 30.0


def nominal_offset(direction: TileIndex, tile_step_px: Sequence[float]) -> tuple[float, float]:
    """Return the stage's ``(y, x)`` offset between tiles ``direction`` apart.

    Parameters
    ----------
    direction : TileIndex
        Grid step ``(rows, columns)`` from one tile to the other, e.g. ``(1, 0)`` (down) or ``(0, 1)`` (right).
    tile_step_px : Sequence[float]
        The stage's ``(y, x)`` step between neighbouring tiles, pixels.

    Returns
    -------
    tuple[float, float]
        The nominal ``(y, x)`` offset, pixels.
    """
    return (direction[0] * float(tile_step_px[0]), direction[1] * float(tile_step_px[1]))


def neighbour_pairs(tiles: Sequence[TileIndex]) -> list[tuple[TileIndex, TileIndex]]:
    """Return the (tile, right or down neighbour) pairs among ``tiles``, sorted.

    Parameters
    ----------
    tiles : Sequence[TileIndex]
        Grid indices ``(row, column)`` of the tiles present.

    Returns
    -------
    list[tuple[TileIndex, TileIndex]]
        Each ``(tile, neighbour)`` pair whose neighbour, one step down or right (:data:`DIRECTIONS`), is present.
    """
    present = set(tiles)
    return [
        (tile, (tile[0] + d[0], tile[1] + d[1]))
        for tile in sorted(present)
        for d in DIRECTIONS
        if (tile[0] + d[0], tile[1] + d[1]) in present
    ]


def pair_status(registration: PairRegistration, kept: bool, candidate: bool, bridge: bool,
                 implausible: bool = False, far: bool = False) -> str:
    """The status a pair's record states when no step of the estimate gave it its own (joint search, loop
    closure, edge link beyond the ridges, far bridge kept).

    Parameters
    ----------
    registration : PairRegistration
        The pair's registration (its NCC, whether its peak lies on the border of its scored window, whether its
        strong peak was refused unrefined).
    kept : bool
        Whether the solve kept the pair.
    candidate : bool
        Whether the pair was a candidate (significance at least :data:`MIN_SIGNIFICANCE`).
    bridge : bool
        Whether it was a candidate below :data:`STRONG_SIGNIFICANCE` (a weak link, kept only inside a loop)
        between tiles the kept pairs do not join (else the loop it closes contradicted it: ``inconsistent``).
    implausible : bool
        Whether :func:`~linumpy.stitching.departures.implausible_departure` refused it.
    far : bool
        Whether it departs from the step beyond the stage's error and was left unchecked.

    Returns
    -------
    str
        The status text of the pair's :class:`~linumpy.stitching.transform.PairRecord`.
    """
    if kept:
        return "kept"
    if implausible:
        return FAR_BRIDGE_REFUSED
    if far:
        return "unchecked, departs beyond the stage's error"
    if registration.ncc <= -1:
        return "no overlap"
    if registration.border_peak:
        return BORDER_PEAK_REFUSED
    if registration.unfit_peak:
        return UNFIT_PEAK_REFUSED
    if not candidate:
        return "not significant"
    return "weak outside any loop" if bridge else "inconsistent or outside the main group"


def edge_variance(max_shift_px: float) -> float:
    """Variance (pixels squared) of an edge link's offset along its ridge: a uniform law over
    the search window, ``(2 max_shift_px)**2 / 12``, what the stage allows (as the stage scatter
    of :func:`~linumpy.stitching.uncertainty.stage_scatter` with few registered tiles).

    Along an edge the overlap cannot tell one offset from another: the peak sits where the
    overlap is largest or on a bump of the ridge (harsh foreign seed 32, slice 0: 10.8 px from
    the truth along the edge, 0.1 px across). With this variance the link's peak places its tile
    along the ridge only where no other link does (a weak link outweighs it), and the link's
    residual there is not tested. Tuned on harsh foreign seeds 30 and 32 against the ridge's own
    extent (``length**2 / 12``: a weak right link then lost the solve's outlier test to the edge's
    pull) and against nothing at all along the ridge (a right lone edge link then left its tiles
    on the stage along it).

    Parameters
    ----------
    max_shift_px : float
        Half-width of the pair's search window, pixels.

    Returns
    -------
    float
        The variance along the ridge, pixels squared.
    """
    return max_shift_px**2 / 3


def link_variance(record: PairRecord, max_shift_px: float) -> np.ndarray:
    """``(y, x)`` honest variance of an accepted pair (:func:`honest_variance`), plus, along an
    edge's ridge, :func:`edge_variance` spread over the axes by the ridge's direction, and on both axes
    for a peak on the border of its scored window (``border_peak``): its optimum may lie anywhere beyond
    the border within the stage's window (foreign ``c185`` seed 209 slice 0, (0, 0)-(1, 0): its peak on
    the last scored row, a 2 px overlap, 4.5 px off between tiles that do not overlap; the five tiles it
    placed 3.2 px off with a stated error of 1.32 px, 1.92 with it; session edgepeak). Such a pair is
    refused as evidence of its own (:func:`~linumpy.stitching.estimate._refused_on_border`): this applies when a joint
    search accepts it at that same peak. A pair whose match leaves its offset unlocated toward the border adds
    :func:`~linumpy.stitching.uncertainty.unlocated_variance` on the step's axis.

    Parameters
    ----------
    record : PairRecord
        The accepted pair's record (standard error, spread, border peak, ridge direction, unlocated offset).
    max_shift_px : float
        Half-width of the pairs' search window, pixels.

    Returns
    -------
    np.ndarray
        The ``(y, x)`` variance of the pair's offset, pixels squared.
    """
    variance = honest_variance(record.sigma_px, record.spread_px) + unlocated_variance(record)
    if record.border_peak:
        variance = variance + edge_variance(max_shift_px)
    if record.free_direction is None:
        return variance
    return variance + np.asarray(record.free_direction) ** 2 * edge_variance(max_shift_px)


def pair_sigma(registration: PairRegistration) -> tuple[float, float]:
    """Standard error ``(y, x)`` of a pair's offset, pixels: the sub-pixel fit's, the
    error it does not see (:data:`SIGNIFICANCE_ERROR_PX` over the significance) and
    :data:`SIGMA_FLOOR_PX`, in quadrature.

    Parameters
    ----------
    registration : PairRegistration
        The pair's registration (its sub-pixel fit's ``sigma_px`` and its significance).

    Returns
    -------
    tuple[float, float]
        The ``(y, x)`` standard error, pixels.
    """
    unseen = SIGNIFICANCE_ERROR_PX / max(registration.significance, CONFIDENT_SIGNIFICANCE)
    return tuple(float(np.sqrt(s**2 + unseen**2 + SIGMA_FLOOR_PX**2)) for s in registration.sigma_px)


def pair_offset(a: TileIndex, b: TileIndex, registration: PairRegistration, strong: bool) -> PairOffset:
    """The measured offset of a pair, weighted by its inverse variance per axis.

    The outlier test of the solve scales residuals by the sub-pixel fit's
    own standard error (floored at :data:`SIGMA_FLOOR_PX`): with the
    calibrated one a weak pair 1.5-2 px off, wrong peak near the right one,
    passes it (seeds 0-2 of the stitching matrix, 6 x 6 with empty tiles).
    A peak on an edge's ridge (:func:`~linumpy.stitching.pairwise.edge_ridge`)
    makes the link anisotropic (:class:`~linumpy.stitching.global_solve.PairOffset`):
    along the ridge the pair knows the offset no better than the stage does,
    a uniform law over the search window (:func:`edge_variance`), and its
    residual there is not tested.

    Parameters
    ----------
    a, b : TileIndex
        The pair's tiles; the offset is ``b``'s position minus ``a``'s.
    registration : PairRegistration
        The pair's registration (offset, scores, sub-pixel standard error, significance).
    strong : bool
        Whether the pair may be the only link between its tiles (callers pass significance
        >= :data:`STRONG_SIGNIFICANCE`, or ``True`` for links a joint search placed).

    Returns
    -------
    PairOffset
        The pair as the global solve takes it: offset, weights, test weights, and, on an edge's ridge,
        its free direction and the variance along it.
    """
    edge = edge_ridge(registration.scores, registration.offset)
    anisotropic = {} if edge is None else {"free_direction": edge[0],
                                           "ridge_variance": edge_variance(registration.scores[0].radius)}
    return PairOffset(a, b, registration.offset, weight=tuple(1 / s**2 for s in pair_sigma(registration)),
                      strong=strong,
                      test_weight=tuple(1 / (s**2 + SIGMA_FLOOR_PX**2) for s in registration.sigma_px),
                      **anisotropic)


def bridged_side(bridge: tuple[TileIndex, TileIndex], links: Sequence[tuple[TileIndex, TileIndex]],
                 positions: Mapping[TileIndex, np.ndarray], model: StageModel
                 ) -> tuple[set[TileIndex], StageModel, float]:
    """The tiles ``bridge`` alone joins to the others (its smaller side among ``links``, the other pairs),
    the stage model in the other side's gauge and the stage's window (pixels, per axis) around it
    (:func:`~linumpy.stitching.departures._bridged_within_window`).

    Parameters
    ----------
    bridge : tuple[TileIndex, TileIndex]
        The pair ``(a, b)`` that bridges two pieces.
    links : Sequence[tuple[TileIndex, TileIndex]]
        The other kept pairs.
    positions : Mapping[TileIndex, np.ndarray]
        Each tile's solved ``(y, x)`` position, pixels.
    model : StageModel
        The stage model fitted to the solve.

    Returns
    -------
    side : set[TileIndex]
        The tiles of the smaller side, which the bridge alone places.
    aligned : StageModel
        The stage model in the gauge of the other side.
    window : float
        The stage's window around ``aligned``, pixels: :data:`~linumpy.stitching.tile_search.PRIOR_MARGIN`
        times twice the other side's largest deviation from it, plus
        :data:`~linumpy.stitching.tile_search.PRIOR_SLACK_PX`.
    """
    placed = {t for pair in [*links, bridge] for t in pair}
    groups = pieces(placed, links)
    near = next(g for g in groups if bridge[0] in g)
    far = next(g for g in groups if bridge[1] in g)
    side, reference = (set(near), set(far)) if len(near) < len(far) else (set(far), set(near))
    aligned = reference_gauge(positions, reference, model)
    window = PRIOR_MARGIN * 2 * largest_deviation(positions, reference, aligned) + PRIOR_SLACK_PX
    return side, aligned, window


def lone_side(link: tuple[TileIndex, TileIndex], links: Sequence[tuple[TileIndex, TileIndex]],
              positions: Mapping[TileIndex, np.ndarray], model: StageModel) -> set[TileIndex]:
    """The tiles the kept ``link`` alone joins to the others among the kept ``links`` (``link`` may be among them):
    :func:`bridged_side`'s side."""
    return bridged_side(link, [other for other in links if other != link], positions, model)[0]
