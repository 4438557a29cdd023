"""Place the tiles no single pair could place, by a joint search over their placed neighbours.

With speckle drawn anew in every tile, a narrow overlap or smooth tissue, the
true peak of one pair often does not stand out of the NCC at wrong offsets,
although it is there. The overlaps of a tile with its neighbours are
independent measurements of one unknown, the tile's position: once the
neighbours are placed, each pair's :func:`~linumpy.stitching.pairwise.evidence`
map becomes a map over that position. Their sum divided by ``sqrt(k)`` (still
in standard errors for ``k`` independent overlaps) grows as ``sqrt(k)`` at
the true position, where all overlaps agree, while the noise peaks of
different overlaps fall in different places and do not add up. The joint
peak is tested like a pair's (:func:`~linumpy.stitching.pairwise.peak_significance`).

Tiles are placed one at a time, the most significant first; a newly placed
tile becomes a neighbour of the next. :func:`corroborated_placements` lists
the weaker joint peaks that several links support and that are sharp, for
the caller to validate against the loops. The search gives integer offsets only;
the caller refines them and solves all positions again (with its outlier
removal), so a wrong placement still has to agree with the loops.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from linumpy.stitching.global_solve import StageModel, TileIndex
from linumpy.stitching.pairwise import EvidenceMap, PairRegistration, local_maxima, peak_significance, peak_spread

Pair = tuple[TileIndex, TileIndex]

#: The window searched around a tile's stage-model position is this many times
#: the largest deviation of a placed tile from its own ...
PRIOR_MARGIN = 1.5
#: ... plus this many pixels.
PRIOR_SLACK_PX = 2.0
#: Each link's offset is its own evidence peak within this many pixels of the joint one.
SNAP_RADIUS_PX = 1
#: A placed neighbour's pair contributes its offset only if its own evidence there reaches this.
MIN_LINK_EVIDENCE = 1.0


@dataclass(frozen=True)
class Placement:
    """A tile placed by the joint search.

    Attributes
    ----------
    tile : (row, col)
    significance : float
        Of the joint peak, in standard errors above its best rival.
    speckle_px : float
        Speckle scale of the evidence maps that were combined.
    offsets : dict
        ``(a, b) -> (dy, dx)`` integer offset ``position(b) - position(a)`` of
        each pair with a placed neighbour whose own evidence there reaches
        :data:`MIN_LINK_EVIDENCE`.
    position : tuple of int
        Integer ``(y, x)`` position of ``tile`` at the joint peak.
    spread_px : tuple of float
        Width ``(y, x)`` of the joint peak
        (:func:`~linumpy.stitching.pairwise.peak_spread`): how well the
        combined links localise the tile.
    """

    tile: TileIndex
    significance: float
    speckle_px: float
    offsets: dict
    position: tuple[int, int] = (0, 0)
    spread_px: tuple[float, float] = (0.0, 0.0)


def _window(values: np.ndarray, shift: Sequence[int], radius: int) -> np.ndarray:
    """``values[d + shift + centre]`` for ``|d| <= radius`` per axis, NaN outside ``values``."""
    centre = (values.shape[0] - 1) // 2
    margin = radius + int(np.max(np.abs(shift)))
    padded = np.pad(values, margin, constant_values=np.nan)
    starts = [margin + centre + s - radius for s in shift]
    return padded[starts[0]:starts[0] + 2 * radius + 1, starts[1]:starts[1] + 2 * radius + 1]


def position_maps(tile: TileIndex, links: Sequence[tuple[Pair, EvidenceMap]],
                  anchors: Mapping[TileIndex, np.ndarray],
                  members: Mapping[TileIndex, np.ndarray] | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
    """Evidence of each link as a map over the integer position of ``tile``.

    Parameters
    ----------
    tile : (row, col)
    links : sequence of ((a, b), EvidenceMap)
        Pairs of ``tile`` with the evidence map of each (one speckle scale).
    anchors : mapping
        ``(row, col) -> integer (y, x) position`` of the other tile of every link.
    members : mapping, optional
        A group of tiles moved as one: ``(row, col) -> integer (y, x)``
        position relative to ``tile``; ``links`` are then pairs of any
        member, and the maps are over the position of ``tile`` (default:
        ``tile`` alone).

    Returns
    -------
    centre : np.ndarray
        Integer ``(y, x)`` position at the centre of the common window.
    maps : list of np.ndarray
        One ``(2 r + 1, 2 r + 1)`` map per link, entry ``d + r`` for position
        ``centre + d`` (NaN where the link's map does not reach).
    """
    members = {tile: np.zeros(2, int)} if members is None else members
    predictions, oriented = [], []
    for (a, b), evidence_map in links:
        inside = b if b in members else a
        other = a if inside == b else b
        sign = 1 if inside == b else -1  # position(inside) = position(other) + sign * offset
        # position(tile) = position(inside) - members[inside]
        anchor = np.asarray(anchors[other]) - np.asarray(members[inside])
        predictions.append(anchor + sign * np.asarray(evidence_map.centre))
        oriented.append((anchor, sign, evidence_map))
    centre = np.rint(np.mean(predictions, axis=0)).astype(int)
    radius = min(m.radius for _, _, m in oriented)
    return centre, [link_map(evidence_map, sign, anchor, centre, radius) for anchor, sign, evidence_map in oriented]


def possibly_empty(values: np.ndarray) -> np.ndarray:
    """A pair's evidence map with its unscored offsets as no evidence (0) instead of impossible (NaN).

    Within the searched window an offset is left unscored when its overlap is under
    :data:`~linumpy.stitching.pairwise.MIN_OVERLAP_FRACTION` of the nominal one: the stage may have put the two
    tiles there, barely or not overlapping, and the pair then says nothing about it. Read as impossible, such a
    link forbids the truth to a joint or cluster search and its noise sums with the other links elsewhere
    (foreign 185 slice 2: (0, 0)-(1, 0) and (0, 1)-(0, 2), true overlaps -1.9 and -2.2 px, ruled out the right
    placement of the cluster {(0, 0), (0, 1)}; both tiles stayed on the stage 7.4 px off).
    """
    return np.where(np.isnan(values), 0.0, values)


def link_map(evidence_map: EvidenceMap, sign: int, anchor: np.ndarray, centre: np.ndarray,
             radius: int) -> np.ndarray:
    """A pair's evidence as a map over the integer position of one of its tiles.

    Parameters
    ----------
    evidence_map : EvidenceMap
        Of the pair's offset ``position(b) - position(a)``.
    sign : int
        1 if the tile is ``b`` (``position = anchor + offset``), -1 if it is
        ``a`` (``position = anchor - offset``).
    anchor : np.ndarray
        Integer ``(y, x)`` position of the other tile.
    centre : np.ndarray
        Integer ``(y, x)`` position of the tile at the centre of the map.
    radius : int
        Half-width of the map.

    Returns
    -------
    np.ndarray
        ``(2 radius + 1, 2 radius + 1)``, entry ``d + radius`` for position
        ``centre + d``; NaN where the pair's map does not reach, 0 where it does not score
        (:func:`possibly_empty`).
    """
    # offset = sign * (position - anchor); a reversed pair reads its map flipped
    values = possibly_empty(evidence_map.values)
    values = values if sign > 0 else values[::-1, ::-1]
    shift = np.asarray(centre) - np.asarray(anchor) - sign * np.asarray(evidence_map.centre)
    return _window(values, tuple(int(v) for v in shift), radius)


def _own_peak(values: np.ndarray, joint_peak: tuple[int, int]) -> tuple[int, int]:
    """The maximum of one link's map within :data:`SNAP_RADIUS_PX` of the joint peak.

    The anchors are rounded to whole pixels, so each link's own peak may sit
    a pixel away from the joint one.
    """
    lows = [max(0, v - SNAP_RADIUS_PX) for v in joint_peak]
    window = values[lows[0]:joint_peak[0] + SNAP_RADIUS_PX + 1, lows[1]:joint_peak[1] + SNAP_RADIUS_PX + 1]
    if not np.any(np.isfinite(window)):
        return joint_peak
    local = np.unravel_index(np.nanargmax(window), window.shape)
    return (lows[0] + int(local[0]), lows[1] + int(local[1]))


def joint_placement(tile: TileIndex, links: Sequence[tuple[Pair, PairRegistration]],
                    anchors: Mapping[TileIndex, np.ndarray],
                    prior: tuple[np.ndarray, float] | None = None,
                    members: Mapping[TileIndex, np.ndarray] | None = None) -> Placement | None:
    """Place ``tile`` (or a group of tiles) from the evidence maps of its pairs with placed neighbours.

    Parameters
    ----------
    tile : (row, col)
    links : sequence of ((a, b), PairRegistration)
        Pairs of ``tile`` whose other tile is in ``anchors``.
    anchors : mapping
        ``(row, col) -> integer (y, x) position`` of the placed tiles.
    prior : (position, radius), optional
        Where the stage model puts ``tile`` and how far (pixels, per axis)
        the placed tiles lie from their stage-model positions: positions
        farther are not searched (fewer rival peaks).
    members : mapping, optional
        Place a group of tiles registered among themselves as one (see
        :func:`position_maps`); ``links`` are the pairs of any member.

    Returns
    -------
    Placement or None
        The most significant joint peak over the speckle scales; ``None`` if
        no map could be combined or no link supports the peak.
    """
    best = None
    scales = sorted({m.speckle_px for _, r in links for m in r.scores})
    for speckle_px in scales:
        chosen = [(pair, m) for pair, r in links for m in r.scores if m.speckle_px == speckle_px]
        centre, maps = position_maps(tile, chosen, anchors, members)
        joint = np.sum(maps, axis=0) / np.sqrt(len(maps))
        if prior is not None:
            grid = np.indices(joint.shape).transpose(1, 2, 0) + centre - (joint.shape[0] - 1) // 2
            joint[np.max(np.abs(grid - prior[0]), axis=-1) > prior[1]] = np.nan
        peaks = local_maxima(joint)
        if not peaks:
            continue
        significance = peak_significance(joint, peaks[0])
        if best is not None and significance <= best[0]:
            continue
        radius = (joint.shape[0] - 1) // 2
        position = centre + np.asarray(peaks[0]) - radius
        offsets = {}
        for ((a, b), _), values in zip(chosen, maps):
            own = _own_peak(values, peaks[0])
            if values[own] >= MIN_LINK_EVIDENCE:
                inside = b if b in (members or {tile}) else a
                other = a if inside == b else b
                linked = position + np.asarray(own) - np.asarray(peaks[0])
                if members is not None:
                    linked = linked + np.asarray(members[inside])
                offset = linked - anchors[other] if inside == b else anchors[other] - linked
                offsets[(a, b)] = (int(offset[0]), int(offset[1]))
        if offsets:
            best = (significance, Placement(tile, significance, speckle_px, offsets,
                                            (int(position[0]), int(position[1])),
                                            peak_spread(joint, peaks[0])))
    return None if best is None else best[1]


def _placed_links(tile: TileIndex, registrations: Mapping[Pair, PairRegistration],
                  placed: Mapping | set) -> list[tuple[Pair, PairRegistration]]:
    """The scored pairs of ``tile`` whose other tile is in ``placed``."""
    return [(pair, r) for pair, r in registrations.items()
            if tile in pair and r.scores and (pair[0] if pair[1] == tile else pair[1]) in placed]


def search_radius(positions: Mapping[TileIndex, Sequence[float]], placed: set[TileIndex],
                  stage_model: StageModel) -> float:
    """Return how far (pixels, per axis) from its stage-model position a tile is searched.

    :data:`PRIOR_MARGIN` times the largest distance of a ``placed`` tile from
    its own stage-model position (:func:`largest_deviation`), plus :data:`PRIOR_SLACK_PX`.

    Measured in the frame of ``positions``: where ``placed`` are all the tiles the solve linked,
    their mean deviation from the stage model is nil (the solve pulls every tile towards it alike),
    and that frame is their own gauge. For a subset of them, other tiles' pull shifts it; see
    :func:`reference_gauge`.
    """
    return PRIOR_MARGIN * largest_deviation(positions, placed, stage_model) + PRIOR_SLACK_PX


def largest_deviation(positions: Mapping[TileIndex, Sequence[float]], tiles: Iterable[TileIndex],
                      stage_model: StageModel) -> float:
    """The largest distance (pixels, per axis) of one of ``tiles`` from its ``stage_model`` position."""
    return max(float(np.max(np.abs(np.asarray(positions[t], float) - stage_model.position(t)))) for t in tiles)


def reference_gauge(positions: Mapping[TileIndex, Sequence[float]], reference: Iterable[TileIndex],
                    stage_model: StageModel) -> StageModel:
    """The stage model moved by the ``reference`` tiles' mean deviation from it: their own gauge.

    The solve fits one translation to all the tiles it links, so tiles other than ``reference``
    (a group a far pair bridges) pull the reference off its stage positions by their own departure,
    and in the solve's frame a wrong far placement widens the window of the tiles that judge it.
    """
    gauge = np.mean([np.asarray(positions[t], float) - stage_model.position(t) for t in reference], axis=0)
    return replace(stage_model, origin=tuple(float(v) for v in np.add(stage_model.origin, gauge)))


def place_by_neighbours(
    registrations: Mapping[Pair, PairRegistration],
    positions: Mapping[TileIndex, Sequence[float]],
    placed: set[TileIndex],
    min_significance: float,
    stage_model: StageModel | None = None,
    accept: Callable[[Placement], bool] | None = None,
) -> list[Placement]:
    """Place, one at a time and strongest first, the tiles left out of ``placed``.

    Parameters
    ----------
    registrations : mapping
        ``(a, b) -> PairRegistration`` of every neighbour pair (with its evidence maps).
    positions : mapping
        ``(row, col) -> (y, x)`` solved positions; those of ``placed`` are trusted.
    placed : set of (row, col)
        Tiles placed by accepted pairs.
    min_significance : float
        Significance a joint peak needs.
    stage_model : StageModel, optional
        Frame of ``positions``; if given, a tile is searched only as far
        from its stage-model position as :data:`PRIOR_MARGIN` times the
        farthest placed tile from its own, plus :data:`PRIOR_SLACK_PX`.
    accept : callable, optional
        ``accept(placement)`` false: that joint peak is not taken (its tile
        stays out, and is no anchor for the next tiles).

    Returns
    -------
    list of Placement
        In the order the tiles were placed.
    """
    anchors = {t: np.rint(np.asarray(positions[t], float)).astype(int) for t in placed}
    tiles = sorted({t for pair in registrations for t in pair})
    radius = None if stage_model is None else search_radius(positions, placed, stage_model)
    placements: list[Placement] = []
    while True:
        found = []
        for tile in tiles:
            if tile in anchors:
                continue
            links = _placed_links(tile, registrations, anchors)
            if links:
                prior = None if radius is None else (stage_model.position(tile), radius)
                placement = joint_placement(tile, links, anchors, prior)
                if (placement is not None and placement.significance >= min_significance
                        and (accept is None or accept(placement))):
                    found.append(placement)
        if not found:
            return placements
        best = max(found, key=lambda p: (p.significance, [-v for v in p.tile]))
        placements.append(best)
        (a, b), offset = next(iter(best.offsets.items()))
        anchors[best.tile] = (anchors[a] + np.asarray(offset) if best.tile == b
                              else anchors[b] - np.asarray(offset))


def lone_departure(placement: Placement, stage_model: StageModel) -> float:
    """How far (pixels, larger axis) the offset of a placement held by one link departs from the stage
    model's step between the link's tiles; 0 for a placement that several links hold."""
    if len(placement.offsets) != 1:
        return 0.0
    ((a, b), offset), = placement.offsets.items()
    return float(np.max(np.abs(np.asarray(offset) - (stage_model.position(b) - stage_model.position(a)))))


def corroborated_placements(
    registrations: Mapping[Pair, PairRegistration],
    positions: Mapping[TileIndex, Sequence[float]],
    placed: set[TileIndex],
    stage_model: StageModel,
    min_significance: float,
    min_links: int,
    max_spread_px: float | Sequence[float],
) -> list[Placement]:
    """The joint peaks of the tiles left out that several links corroborate, most significant first.

    Each tile outside ``placed`` is searched as in :func:`place_by_neighbours`
    (the same window, the placed tiles as anchors, no tile placed in between)
    and kept as a candidate if its joint peak reaches ``min_significance``,
    at least ``min_links`` of its links have their own evidence >=
    :data:`MIN_LINK_EVIDENCE` there (independent overlaps agreeing on one
    position, rather than one overlap's noise peak) and the peak's spread
    (:func:`~linumpy.stitching.pairwise.peak_spread`) is at most
    ``max_spread_px`` on both axes (one value, or one per axis ``(y, x)``).

    Returns
    -------
    list of Placement
        Sorted by decreasing significance (ties: tile index).
    """
    anchors = {t: np.rint(np.asarray(positions[t], float)).astype(int) for t in placed}
    radius = search_radius(positions, placed, stage_model)
    found = []
    for tile in sorted({t for pair in registrations for t in pair} - set(placed)):
        links = _placed_links(tile, registrations, placed)
        if len(links) < min_links:
            continue
        placement = joint_placement(tile, links, anchors, (stage_model.position(tile), radius))
        if (placement is not None and placement.significance >= min_significance
                and len(placement.offsets) >= min_links
                and np.all(np.asarray(placement.spread_px) <= np.asarray(max_spread_px))):
            found.append(placement)
    return sorted(found, key=lambda p: (-p.significance, p.tile))
