"""A candidate pair's peak, not strong, checked on independent depth ranges of its two overlap strips (issue #10).

The stitcher registers every pair on the tiles' depth-averaged projections. The tiles are 3D: the speckle and
noise of two depth ranges are independent while the tissue's texture runs on through depth, so a right offset
reappears when the two strips that can overlap are registered on each of :data:`DEPTH_RANGES` disjoint depth
ranges of the tissue below the cut (each its own projection, divided by the same flat field, same search
window), and a peak made by noise, or by a texture the average blurred, need not.

Measured on the 480 pairs of foreign ``c185`` 225, 226, 238 and 239 (4 x 4, overlap 0.10, stage +-8 px;
benchmarks/README.md, session depth10), pairs with texture: a range's peak lies more than
:data:`DEPTH_AGREEMENT_PX` from the pair's own for 12 of 17 wrong pairs of significance 2-3 and 51 of 57 below 2,
but also for 1 of 13 and 7 of 28 right ones; a peak that a depth-constant structure made (the sample's outline,
a gel tile's smooth content, the pull to the wider overlap along an edge's ridge) repeats in every range: 9 of 12
strong wrong pairs agree. So strong pairs are not checked; a candidate below
:data:`~linumpy.stitching.pair_terms.STRONG_SIGNIFICANCE` (at least
:data:`~linumpy.stitching.pair_terms.MIN_SIGNIFICANCE`) failing the check loses its evidence (significance 0),
as a border peak does, and unlike a border peak its maps too: no joint search reads it
(:func:`out_of_the_searches`). On the tuning seeds 225 and 226 the refusals
leave 1 tile worse than the stage of main's 9 (226 slice 4, 5.24 / 16.77 -> 0.59 / 1.65 px); checking only the
pairs of 2-3 left 226 slice 4 as it was.

A pair whose most significant range is confident and repeats its offset is not refused however far a weaker range
peaks (:func:`judged_disagreement`; session depth10b, one-frame data).

Reads: the two strips of each checked pair, every plane (the mosaic grid's chunks hold one tile laterally, so
the reader decodes the chunks of both tiles).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import NamedTuple

import numpy as np

from linumpy.stitching.options import TileIndex
from linumpy.stitching.pair_terms import CONFIDENT_SIGNIFICANCE, MIN_SIGNIFICANCE, STRONG_SIGNIFICANCE, nominal_offset
from linumpy.stitching.pairwise import PairRegistration, edge_ridge, register_pair

#: Disjoint depth ranges of the tissue below the cut on which a checked pair is registered again.
DEPTH_RANGES = 3
#: A checked pair fails when some range's offset lies farther than this (pixels) from the pair's own.
DEPTH_AGREEMENT_PX = 2.0
#: A pair refused in depth whose farthest range lies no farther than this (pixels) from its peak stays a candidate
#: that only a loop can keep (:func:`refused_by_a_margin`): right pairs' ranges were measured 2.0-2.8 px away
#: (benchmarks/README.md, sessions stitch10, worse10).
LOOP_CHECKED_DISAGREEMENT_PX = 3.0
#: Fewest planes of a depth range: a tile much thinner (the stitching matrix's six planes) is not checked, its
#: ranges' projections keeping little more than the speckle of a plane or two.
MIN_RANGE_PLANES = 10
#: The cut: the first plane whose mean over the two strips reaches this fraction of the largest plane mean.
CUT_FRACTION = 0.5

#: ``read(tile, (ys, xs))``: every plane of a part of a tile, ``(z, y, x)``.
StripReader = Callable[[TileIndex, tuple[slice, slice]], np.ndarray]


def search_strips(tile_shape: tuple[int, int], offset: tuple[int, int],
                  radius: int) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """The parts of tiles ``a`` and ``b`` that can overlap when ``b`` lies within ``radius`` of ``offset``.

    Examples
    --------
    >>> search_strips((96, 96), (0, 86), 20)
    ((slice(0, 96, None), slice(66, 96, None)), (slice(0, 96, None), slice(0, 30, None)))
    """
    part_a, part_b = [], []
    for size, shift in zip(tile_shape, offset):
        part_a.append(slice(max(0, shift - radius), min(size, shift + size + radius)))
        part_b.append(slice(max(0, -shift - radius), min(size, size - shift + radius)))
    return tuple(part_a), tuple(part_b)


def tissue_ranges(profile: np.ndarray, n_ranges: int = DEPTH_RANGES) -> list[slice]:
    """Split the planes from the cut (the first reaching :data:`CUT_FRACTION` of the profile's largest value) to
    the last into ``n_ranges`` equal, disjoint ranges.

    Examples
    --------
    >>> tissue_ranges(np.array([1, 1, 10, 9, 8, 7, 6, 5.0]), 3)
    [slice(2, 4, None), slice(4, 6, None), slice(6, 8, None)]
    """
    cut = int(np.argmax(profile >= CUT_FRACTION * np.max(profile)))
    edges = np.linspace(cut, len(profile), n_ranges + 1).round().astype(int)
    return [slice(int(start), int(stop)) for start, stop in zip(edges[:-1], edges[1:])]


class DepthCheck(NamedTuple):
    """A pair's check on the depth ranges of its strips (:func:`depth_check`).

    Attributes
    ----------
    disagreement : float
        The largest distance (pixels) between the pair's offset and a range's (``inf`` where a range finds
        nothing; NaN, not checked, where a range would hold fewer than :data:`MIN_RANGE_PLANES` planes).
    confirmed : bool
        Whether the range of the most significant peak is confident
        (:data:`~linumpy.stitching.pair_terms.CONFIDENT_SIGNIFICANCE`) and lies within :data:`DEPTH_AGREEMENT_PX`
        of the pair's offset (:func:`judged_disagreement`).
    strongest_significance : float
        The significance of that most significant range's peak (NaN where not checked).
    strongest : PairRegistration or None
        That range's registration without its maps, its offset in the pair's frame (:func:`depth_checks`; in the
        strips' frame as :func:`depth_check` returns it); None where not checked or where its peak lies on an
        edge's ridge (:func:`~linumpy.stitching.pairwise.edge_ridge`: not located along it).
    corroborated : bool
        Whether the two most significant ranges are both confident and lie within
        :data:`LOOP_CHECKED_DISAGREEMENT_PX` of the pair's offset (:func:`corroborated_in_depth`).
    """

    disagreement: float
    confirmed: bool
    strongest_significance: float = float("nan")
    strongest: PairRegistration | None = None
    corroborated: bool = False


def depth_check(strip_a: np.ndarray, strip_b: np.ndarray, flat_a: np.ndarray, flat_b: np.ndarray,
                offset: tuple[float, float], strip_offset: tuple[int, int], max_shift_px: float) -> DepthCheck:
    """A pair registered again on each depth range of its strips: the ranges' largest distance from the pair's
    offset, and whether its most significant range confirms it.

    Parameters
    ----------
    strip_a, strip_b : np.ndarray
        ``(z, y, x)`` strips of the two tiles (:func:`search_strips`).
    flat_a, flat_b : np.ndarray
        The flat field each strip's projections are divided by, ``(y, x)``.
    offset : tuple of float
        The pair's offset in the strips' frame.
    strip_offset : tuple of int
        The stage's offset in the strips' frame (the search's centre).
    max_shift_px : float
        The search window, as for the pair.

    Returns
    -------
    DepthCheck
    """
    profile = np.concatenate([strip_a.reshape(len(strip_a), -1), strip_b.reshape(len(strip_b), -1)], axis=1)
    distances, found = [], []
    for planes in tissue_ranges(profile.mean(axis=1, dtype=np.float64)):
        if planes.stop - planes.start < MIN_RANGE_PLANES:
            return DepthCheck(float("nan"), False)
        found.append(register_pair(strip_a[planes].mean(axis=0, dtype=np.float64) / flat_a,
                                   strip_b[planes].mean(axis=0, dtype=np.float64) / flat_b,
                                   strip_offset, max_shift_px))
        distances.append(np.inf if found[-1].ncc <= -1 else float(np.hypot(*np.subtract(found[-1].offset, offset))))
    significances = [range_found.significance for range_found in found]
    strongest = int(np.argmax(significances))
    best = found[strongest]
    located = None if edge_ridge(best.scores, best.offset) is not None else replace(best, scores=())
    return DepthCheck(max(distances), bool(best.significance >= CONFIDENT_SIGNIFICANCE
                                           and distances[strongest] <= DEPTH_AGREEMENT_PX),
                      float(best.significance), located, ranges_corroborate(significances, distances))


def ranges_corroborate(significances: Sequence[float], distances: Sequence[float]) -> bool:
    """Whether the two most significant depth ranges are both confident
    (:data:`~linumpy.stitching.pair_terms.CONFIDENT_SIGNIFICANCE`) and lie within
    :data:`LOOP_CHECKED_DISAGREEMENT_PX` of the pair's offset (``distances``, pixels; ties in significance to the
    earlier range).

    Examples
    --------
    >>> ranges_corroborate([2.07, 0.64, 2.05], [2.04, 12.79, 0.60]), ranges_corroborate([1.97, 1.29], [1.9, 0.8])
    (True, False)
    """
    order = np.argsort(np.negative(significances), kind="stable")[:2]
    return len(order) == 2 and all(significances[i] >= CONFIDENT_SIGNIFICANCE
                                   and distances[i] <= LOOP_CHECKED_DISAGREEMENT_PX for i in order)


def judged_disagreement(check: DepthCheck) -> float:
    """The disagreement a pair is judged by: :attr:`DepthCheck.disagreement`, at most :data:`DEPTH_AGREEMENT_PX`
    (not refused) where the pair's most significant range is confident and repeats its offset.

    On one-frame data the ranges hold little evidence each (foreign ``a205``: a focus 70 planes deep, ranges of
    ~17 planes of one speckle frame, their significance median ~1.1; session depth10), and a weak range's peak on
    speckle refused right pairs (20 of 45 checked) whose strongest range sat on their offset (17 of 20 within
    2 px of it, 16 of 20 within 1.3 px of the truth). A confident range that repeats the offset outweighs
    weaker ones that do not. Numbers: benchmarks/README.md, session depth10b.

    Examples
    --------
    >>> judged_disagreement(DepthCheck(9.0, True)), judged_disagreement(DepthCheck(9.0, False))
    (2.0, 9.0)
    """
    return min(check.disagreement, DEPTH_AGREEMENT_PX) if check.confirmed else check.disagreement


def confirmed_significance(check: DepthCheck) -> float:
    """The significance of the range that spared a pair the depth check would refuse (:func:`judged_disagreement`:
    its disagreement beyond :data:`DEPTH_AGREEMENT_PX`, its most significant range confirming it); NaN for
    every other pair (agreeing, refused, or not checked). The record's ``depth_confirmed_significance``.

    Examples
    --------
    >>> [confirmed_significance(DepthCheck(d, c, 2.6)) for d, c in ((9.0, True), (1.0, True), (9.0, False))]
    [2.6, nan, nan]
    """
    spared = check.confirmed and check.disagreement > DEPTH_AGREEMENT_PX
    return float(check.strongest_significance) if spared else float("nan")


def depth_checks(registrations: Mapping[tuple[TileIndex, TileIndex], PairRegistration],
                 read: StripReader, flat: np.ndarray, tile_step_px: Sequence[float],
                 max_shift_px: float) -> dict[tuple[TileIndex, TileIndex], DepthCheck]:
    """Each candidate, not strong pair's :func:`depth_check`, its strips read with ``read``.

    ``flat`` is the flat field the tiles' projections were divided by. Border peaks (already refused) are
    not checked.
    """
    checked = {}
    for (a, b), registration in registrations.items():
        if not MIN_SIGNIFICANCE <= registration.significance < STRONG_SIGNIFICANCE or registration.border_peak:
            continue
        nominal = tuple(int(round(v)) for v in nominal_offset((b[0] - a[0], b[1] - a[1]), tile_step_px))
        part_a, part_b = search_strips(flat.shape, nominal, int(np.floor(max_shift_px)))
        shift = np.array([part_b[i].start - part_a[i].start for i in range(2)])
        check = depth_check(
            read(a, part_a), read(b, part_b), flat[part_a], flat[part_b],
            tuple(np.add(registration.offset, shift)), tuple(int(v) for v in np.add(nominal, shift)), max_shift_px)
        strongest = check.strongest
        checked[(a, b)] = check if strongest is None else check._replace(strongest=replace(
            strongest, offset=tuple(float(v) for v in np.subtract(strongest.offset, shift))))
    return checked


def refused_in_depth(registration: PairRegistration, disagreement: float | None) -> PairRegistration:
    """``registration`` without evidence (significance 0) when its depth ranges place it farther than
    :data:`DEPTH_AGREEMENT_PX` from its own offset (``disagreement``; None: not checked)."""
    if disagreement is None or not disagreement > DEPTH_AGREEMENT_PX:
        return registration
    return replace(registration, significance=0.0)


def strong_range_peak(check: DepthCheck) -> PairRegistration | None:
    """The registration a pair refused in depth takes from its most significant depth range when that range is
    strong (:data:`~linumpy.stitching.pair_terms.STRONG_SIGNIFICANCE`) and located (not on an edge's ridge):
    its offset, significance and standard error, without maps (out of every search: the pair's own maps peak
    elsewhere); None otherwise.

    The projection a pair is registered on averages every plane, the planes above the cut (agarose, the surface's
    one-frame speckle) included; a third of the tissue below the cut can then match where the whole depth does not.
    Foreign ``ha`` 488 (one-frame speckle, dark tissue; benchmarks/README.md, session ha10): all 11 ranges of
    significance >= 3 over the five slices' 20 checked pairs lay within 1.2 px of the truth, two of them on pairs the
    check refused (slice 4's (1, 0)-(1, 1), own peak 0.52, 9.5 px off, its strongest range 4.92, 0.1 px off;
    (2, 1)-(2, 2), own 2.80, 3.6 px off, strongest range 3.50, 1.0 px off), whose refusal left the piece
    {(1, 0), (2, 0), (2, 1)} on the stage model tile by tile (3.4-6.1 px).

    Examples
    --------
    >>> strong_range_peak(DepthCheck(9.0, False, 4.9, PairRegistration((2.0, 90.0), 0.6, 4.9))).offset
    (2.0, 90.0)
    >>> strong_range_peak(DepthCheck(9.0, False, 2.9, PairRegistration((2.0, 90.0), 0.6, 2.9))) is None
    True
    """
    strongest = check.strongest
    if strongest is None or check.confirmed or not strongest.significance >= STRONG_SIGNIFICANCE:
        return None
    return strongest


def corroborated_in_depth(check: DepthCheck, registration: PairRegistration) -> bool:
    """Whether a pair refused in depth keeps its own peak: its two most significant depth ranges are both confident
    (:data:`~linumpy.stitching.pair_terms.CONFIDENT_SIGNIFICANCE`) and lie within
    :data:`LOOP_CHECKED_DISAGREEMENT_PX` of its offset (:attr:`DepthCheck.corroborated`), the strongest below
    :data:`~linumpy.stitching.pair_terms.STRONG_SIGNIFICANCE` (a strong one gives its own peak,
    :func:`strong_range_peak`), and the pair is not an edge link (along its ridge a range's peak lies anywhere).

    The confirmation (:func:`judged_disagreement`) asks the most significant range alone to repeat the offset
    within :data:`DEPTH_AGREEMENT_PX`; two confident ranges near the offset outweigh a third weak one far from it.
    Foreign ``ha`` 488 slice 0 (one-frame speckle; benchmarks/README.md, session ha10b): the right (1, 0)-(1, 1),
    own peak 1.82 and 0.57 px from the truth, ranges 2.07 (2.04 px from its peak), 2.05 (0.60 px) and 0.64
    (12.8 px), was refused and its tile (1, 0) left on the stage model 7.4 px off.

    Examples
    --------
    >>> r = PairRegistration((2.0, 90.0), 0.6, 1.8)
    >>> corroborated_in_depth(DepthCheck(12.8, False, 2.07, None, True), r)
    True
    >>> corroborated_in_depth(DepthCheck(12.8, False, 3.5, None, True), r)
    False
    """
    return (check.corroborated and not check.confirmed and check.strongest_significance < STRONG_SIGNIFICANCE
            and edge_ridge(registration.scores, registration.offset) is None)


def refused_by_a_margin(registrations: Mapping[tuple[TileIndex, TileIndex], PairRegistration],
                        disagreements: Mapping[tuple[TileIndex, TileIndex], float],
                        ) -> set[tuple[TileIndex, TileIndex]]:
    """The pairs refused in depth by a margin: a range farther than :data:`DEPTH_AGREEMENT_PX` from the pair's peak,
    none farther than :data:`LOOP_CHECKED_DISAGREEMENT_PX`, not an edge link (along its ridge a range's peak
    lies anywhere).

    The estimate keeps such a pair a candidate, not strong, out of every search (:func:`out_of_the_searches`):
    the global solve keeps it only on a loop of candidates that closes, which the depth ranges cannot contradict
    (a wrong offset that closes a loop is the right one). Refused outright, a right pair joining a piece to the
    others on such a loop left the piece at its tiles' stage-model mean (foreign ``a205`` 333 slice 1: the right
    (0, 3)-(1, 3) and (1, 2)-(1, 3), 0.16 and 0.75 px from the truth, ranges 2.48 and 2.08 px away; a piece of
    10 tiles 2.8 px off, one of them worse than the stage; benchmarks/README.md, session worse10b).

    Parameters
    ----------
    registrations : Mapping
        Each pair's registration (its own significance and maps, before the depth check's refusal).
    disagreements : Mapping
        Each checked pair's :attr:`DepthCheck.disagreement` (pixels).

    Returns
    -------
    set of tuple
        The pairs refused by a margin.

    Examples
    --------
    >>> r = PairRegistration((1.0, 86.0), 0.7, 1.5)
    >>> sorted(refused_by_a_margin({((0, 0), (0, 1)): r, ((0, 0), (1, 0)): r, ((1, 0), (1, 1)): r},
    ...                            {((0, 0), (0, 1)): 2.4, ((0, 0), (1, 0)): 5.0, ((1, 0), (1, 1)): 1.0}))
    [((0, 0), (0, 1))]
    """
    return {pair for pair, disagreement in disagreements.items()
            if DEPTH_AGREEMENT_PX < disagreement <= LOOP_CHECKED_DISAGREEMENT_PX
            and edge_ridge(registrations[pair].scores, registrations[pair].offset) is None}


def out_of_the_searches(registration: PairRegistration) -> PairRegistration:
    """A pair refused in depth (:func:`refused_in_depth`) without its evidence maps: no joint search (one tile,
    a group, a cluster, a piece re-anchored, a corroborated or late search) reads it, nor any test of a
    placement against the stage's.

    Its significance alone kept it out of the first solve, but the searches read every pair's maps, and its
    refused peak is its map's highest: a lone link's joint peak is that peak, and it adds to its neighbours'.
    Kept so, the refusal was undone (foreign ``odd`` 261 slice 0, 2 x 5 non-square tiles: the two vertical pairs
    read 7-9 px short of their ~5 px of true overlap, ranges 8.7 and 18.2 px away, were kept by the joint search at
    the same peaks, two tiles worse than the stage; session rejoin10). Dropped from every search, on the tuning
    slices (odd 261, c185 225 / 226) tiles worse than the stage 3 -> 1 and the tiles' mean 225 slices 1 and 3
    3.7 -> 1.7-1.8 px, but 226 slice 4 0.56 -> 1.66 px, where the check had refused a right pair a cluster search
    kept. Removing only the peak's neighbourhood (2-3 px) left its flank, where a search then placed the tile 3 px
    off (odd 261 slice 2); removing its hump above :data:`~linumpy.stitching.tile_search.MIN_LINK_EVIDENCE` left
    225 slice 1 at 3.85 px (1.62 with the maps dropped).

    Examples
    --------
    >>> out_of_the_searches(PairRegistration((1.0, 50.0), 0.5, 0.0, scores=("map",))).scores
    ()
    """
    return replace(registration, scores=())
