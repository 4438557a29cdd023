"""Resolve a loop of pairs that does not close by moving one pair to another of its peaks.

A pair's best peak can be wrong while the true offset is a rival peak of
nearly the same evidence (narrow overlap, smooth tissue, speckle drawn anew
in each tile). Around a loop of pairs the offsets must add up to zero; when
they do not, the global solve's outlier removal drops the pair with the
largest residual, which depends on the pairs' weights: a wrong pair with an
underestimated standard error keeps its place and a right pair whose
sub-pixel fit failed (weight ~1) is dropped.

Here the choice is made by each pair's own evidence instead. Every pair's
offset is predicted from all the others (:func:`leave_one_out_offsets`); a
pair is in conflict when the prediction departs from its measured offset by
more than :data:`~linumpy.stitching.global_solve.MAX_RESIDUAL_PX`, in the
metric of the prediction's covariance
(:func:`~linumpy.stitching.global_solve.departs_from_prediction`: along an
edge link's ridge a loop predicts nothing). Its
**cost** of agreeing is how far the evidence of its map at the predicted
offset (a local maximum within :data:`SNAP_RADIUS_PX`) falls below its best
peak, in standard errors, at the speckle scale where that is least. The pair
in conflict with the smallest cost, if below :data:`MAX_SWITCH_COST`, moves
to that peak (refined below a pixel by the caller); repeat. A pair moves at
most once and only to a different peak (more than a pixel away); a conflict
no pair can resolve this way is left to the solve's outlier removal.

When no switch is that cheap but exactly one pair in conflict has a peak
near its prediction that costs at most :data:`MAX_SOLE_SWITCH_COST`, that
pair is the loops' only explanation: it moves if its NCC is at least that
of the pair's best peak (:func:`sole_rival`; dearer peaks of other pairs,
the wrong pair's error carried round the loops, do not count against it). Otherwise the solve drops
the pair of largest residual, which is the weakest pair of the loop, not the
wrong one (foreign ``ha`` 454 slice 1: a single loop of eight pairs, the wrong
one significance 4.74 and 4.4 px off, its rival at the truth NCC 0.834 against
0.810, cost 2.33; the solve dropped a right pair of significance 3.02 and six
tiles ended on the stage).

A moved pair's residual is tested in the solve's outlier removal against its
honest standard error (its weight's, :func:`~linumpy.stitching.pair_terms.pair_sigma`), not its sub-pixel
fit's (:func:`honestly_tested`): the fit measured the shape of a peak its map did not rank first, and the
solve spreads the loop's misclosure (the other pairs' sub-pixel errors, adding up around a long loop) over
the pairs by their honest variances, most onto the moved pair. On ``ha`` 454 slice 1 the switched pair
lay 0.05 px from the truth, its fit's error 0.065 px, and the seven right pairs of its loop left it a
residual of 0.65 px (7.9 of the fit's errors, 1.3 honest ones): tested on its fit it was dropped and
the loop broken again. :data:`~linumpy.stitching.global_solve.MAX_RESIDUAL_PX` still bounds it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from linumpy.stitching.global_solve import (
    PairOffset,
    TileIndex,
    bridges,
    departs_from_prediction,
    leave_one_out_offsets,
)
from linumpy.stitching.pairwise import PairRegistration, local_maxima, peak_significance

Pair = tuple[TileIndex, TileIndex]

#: A peak within this many pixels (per axis) of the predicted offset is the loop's.
SNAP_RADIUS_PX = 2
#: Largest cost (standard errors of evidence below the pair's best peak) of a switch.
MAX_SWITCH_COST = 2.0
#: A switch must move the pair's integer offset by more than this (pixels, per axis).
MIN_SWITCH_PX = 1
#: Largest cost of a switch that is the only one any pair in conflict offers (:func:`sole_rival`).
MAX_SOLE_SWITCH_COST = 3.0


@dataclass(frozen=True)
class Switch:
    """A pair moved to the rival peak its loops predict.

    Attributes
    ----------
    pair : (a, b)
    offset : tuple of int
        New integer offset ``position(b) - position(a)``.
    cost : float
        Evidence of the old peak minus that of the new one, standard errors.
    significance : float
        Of the new peak in its own map, against its best rival (the old peak
        when that is farther than the peak radius).
    """

    pair: Pair
    offset: tuple[int, int]
    cost: float
    significance: float


def rival_peak(pair: Pair, registration: PairRegistration, predicted: Sequence[float]) -> Switch | None:
    """The cheapest peak of the evidence maps of ``pair`` near its ``predicted`` offset.

    Returns ``None`` when no map has a local maximum within
    :data:`SNAP_RADIUS_PX` of ``predicted`` that differs from the pair's
    current integer offset by more than :data:`MIN_SWITCH_PX`.
    """
    current = np.rint(np.asarray(registration.offset, float)).astype(int)
    best = None
    for evidence_map in registration.scores:
        values, radius = evidence_map.values, evidence_map.radius
        target = np.rint(np.asarray(predicted, float)).astype(int) - np.asarray(evidence_map.centre) + radius
        near = [p for p in local_maxima(values)
                if np.max(np.abs(np.asarray(p) - target)) <= SNAP_RADIUS_PX]
        if not near:
            continue
        peak = max(near, key=lambda p: values[p])
        offset = np.asarray(peak) - radius + np.asarray(evidence_map.centre)
        if np.max(np.abs(offset - current)) <= MIN_SWITCH_PX:
            continue
        cost = float(np.nanmax(values) - values[peak])
        if best is None or cost < best.cost:
            best = Switch(pair=pair, offset=(int(offset[0]), int(offset[1])), cost=cost,
                          significance=peak_significance(values, peak))
    return best


def switch_conflicting_peaks(
    tiles: Sequence[TileIndex],
    pairs: Sequence[PairOffset],
    registrations: Mapping[Pair, PairRegistration],
    tile_step_px: Sequence[float],
    refine: Callable[[Switch], PairOffset],
) -> tuple[list[PairOffset], dict[Pair, Switch]]:
    """Move pairs whose loops do not close to the peak the loops predict, cheapest first.

    Parameters
    ----------
    tiles : sequence of (row, col)
    pairs : sequence of PairOffset
        Pairs to check (their offsets are those of ``registrations``).
    registrations : mapping
        ``(a, b) -> PairRegistration`` with the evidence maps.
    tile_step_px : sequence of float
        Nominal ``(y, x)`` step.
    refine : callable
        ``refine(switch) -> PairOffset``: the pair at its new peak (sub-pixel
        refinement and weight; not strong: it stands on its loops).

    Returns
    -------
    pairs : list of PairOffset
        With the moved pairs replaced.
    switches : dict
        ``(a, b) -> Switch`` of every moved pair.
    """
    pairs = list(pairs)
    switches: dict[Pair, Switch] = {}
    for _ in range(len(pairs)):
        predicted, covariance = leave_one_out_offsets(tiles, pairs, tile_step_px)
        on_no_loop = set(bridges(pairs))
        rivals = []
        for k, pair in enumerate(pairs):
            key = (pair.a, pair.b)
            if k in on_no_loop or key in switches:
                continue
            if not departs_from_prediction(pair, predicted[k], covariance[k]):
                continue
            switch = rival_peak(key, registrations[key], predicted[k])
            if switch is not None:
                rivals.append((switch.cost, k, switch))
        options = [rival for rival in rivals if rival[0] <= MAX_SWITCH_COST]
        if not options:
            options = [rival for rival in rivals if sole_rival(rivals, registrations[rival[2].pair])]
        if not options:
            break
        _, k, switch = min(options, key=lambda o: (o[0], o[1]))
        switches[switch.pair] = switch
        pairs[k] = honestly_tested(refine(switch))
    return pairs, switches


def honestly_tested(pair: PairOffset) -> PairOffset:
    """``pair`` with its residual tested against its weight's standard error, not its sub-pixel fit's.

    Examples
    --------
    >>> pair = honestly_tested(PairOffset((0, 0), (0, 1), (0.0, 90.0), (4.0, 4.0), test_weight=(200.0, 200.0)))
    >>> pair.test_weights().tolist()
    [4.0, 4.0]
    """
    return replace(pair, test_weight=pair.weight)


def sole_rival(rivals: Sequence[tuple[float, int, Switch]], registration: PairRegistration) -> bool:
    """Whether the only switch the pairs in conflict offer at a cost of at most :data:`MAX_SOLE_SWITCH_COST`
    (``rivals``: ``(cost, index, switch)``, none cheaper than :data:`MAX_SWITCH_COST`) may be taken: the pair's
    ``registration`` scored the new offset, among its candidates, an NCC at least that of its best peak (the
    evidence at the finest speckle scale preferred the old peak; the match itself does not).

    Dearer rivals do not count against it: a pair offering one would not be moved anyway, and a wrong pair's
    error carried round its loops puts the right pairs in conflict too, each with a peak near its (wrong)
    prediction at a high cost (foreign ``c185`` 505 slice 0: the wrong link's rival at the truth cost 2.45, a right
    pair's at 8.89).

    Examples
    --------
    >>> r = PairRegistration((85.0, -2.0), 0.81, 4.7, candidates=(((85, -2), 0.81), ((89, -4), 0.83)))
    >>> switch = Switch(((0, 0), (1, 0)), (89, -4), 2.33, 1.0)
    >>> sole_rival([(2.33, 0, switch)], r), sole_rival([(2.33, 0, switch), (2.5, 1, switch)], r)
    (True, False)
    >>> sole_rival([(2.33, 0, switch), (8.89, 1, switch)], r), sole_rival([(3.5, 0, switch)], r)
    (True, False)
    """
    affordable = [rival for rival in rivals if rival[0] <= MAX_SOLE_SWITCH_COST]
    if len(affordable) != 1:
        return False
    offset = affordable[0][2].offset
    scored = [ncc for candidate, ncc in registration.candidates if tuple(candidate) == offset]
    return bool(scored) and scored[0] >= registration.ncc
