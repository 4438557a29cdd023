"""Place clusters of tiles that lie next to each other, none of them placed, by one joint search.

A tile left on the stage model often owes it to its neighbours: its
informative overlaps are with other tiles left on the stage (a corner of
weak tissue, a column along an empty region), and the overlaps with placed
tiles are too weak alone (:mod:`linumpy.stitching.tile_search` then finds no
significant peak). Such a cluster is searched as a whole: the positions of
all its tiles, each within a window around its stage-model position, that
maximise the summed :func:`~linumpy.stitching.pairwise.evidence` of the
links to placed tiles and of the pairs inside the cluster (a spanning tree
of them, so the maximum is exact: max-sum message passing). Each tile's
max-marginal (the best total with that tile at a given position) divided by
``sqrt(k)`` for the ``k`` links to placed tiles is tested like a pair's peak
(:func:`~linumpy.stitching.pairwise.peak_significance`): a rival that moves
the whole cluster keeps the inner pairs' evidence, so the margin is made of
the links' alone (a rival that breaks an inner pair only loses more). Only
tiles whose peak is significant are placed, and the caller solves all
positions again with its outlier removal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from linumpy.stitching.global_solve import StageModel, TileIndex
from linumpy.stitching.pairwise import EvidenceMap, PairRegistration, local_maxima, peak_significance
from linumpy.stitching.tile_search import MIN_LINK_EVIDENCE, SNAP_RADIUS_PX, link_map

Pair = tuple[TileIndex, TileIndex]


@dataclass(frozen=True)
class ClusterPlacement:
    """Tiles of one cluster placed by the joint search.

    Attributes
    ----------
    significance : dict
        ``(row, col) -> significance`` of every tile placed (standard errors
        of its max-marginal peak above its best rival).
    speckle_px : float
        Speckle scale of the evidence maps that were combined.
    offsets : dict
        ``(a, b) -> (dy, dx)`` integer offset of each pair joining two placed
        tiles, or a placed tile and an anchor, whose own evidence there
        reaches :data:`~linumpy.stitching.tile_search.MIN_LINK_EVIDENCE`.
    """

    significance: dict
    speckle_px: float
    offsets: dict


def clusters(tiles: Sequence[TileIndex], pairs: Sequence[Pair]) -> list[list[TileIndex]]:
    """Connected groups of ``tiles`` linked by ``pairs`` (pairs with a tile outside are ignored)."""
    members = set(tiles)
    linked = {t: set() for t in members}
    for a, b in pairs:
        if a in members and b in members:
            linked[a].add(b)
            linked[b].add(a)
    groups, seen = [], set()
    for start in sorted(members):
        if start in seen:
            continue
        group, stack = [], [start]
        seen.add(start)
        while stack:
            tile = stack.pop()
            group.append(tile)
            for other in sorted(linked[tile] - seen):
                seen.add(other)
                stack.append(other)
        groups.append(sorted(group))
    return groups


def _spanning_tree(group: Sequence[TileIndex], pairs: Sequence[Pair]) -> dict[TileIndex, list[Pair]]:
    """Per tile, the pairs of a breadth-first spanning tree of ``group`` that touch it."""
    inner = sorted(p for p in pairs if p[0] in group and p[1] in group)
    edges = {t: [] for t in group}
    reached, frontier = {group[0]}, [group[0]]
    while frontier:
        tile = frontier.pop(0)
        for pair in inner:
            if tile in pair:
                other = pair[1] if pair[0] == tile else pair[0]
                if other not in reached:
                    reached.add(other)
                    frontier.append(other)
                    edges[tile].append(pair)
                    edges[other].append(pair)
    return edges


def _message(belief: np.ndarray, evidence_map: EvidenceMap, reverse: bool,
             centre_from: np.ndarray, centre_to: np.ndarray) -> np.ndarray:
    """``max over x_from of belief(x_from) + E(offset)`` as a map over ``x_to``.

    ``belief`` is over ``centre_from + d``, the result over ``centre_to + d``
    (``|d| <= R`` per axis); the pair's offset is ``x_from - x_to``, or
    ``x_to - x_from`` if ``reverse``. Positions the pair's map does not
    reach count as impossible (``-inf``).
    """
    values = evidence_map.values[::-1, ::-1] if reverse else evidence_map.values
    values = np.where(np.isfinite(values), values, -np.inf)
    map_centre = -np.asarray(evidence_map.centre) if reverse else np.asarray(evidence_map.centre)
    width, size = values.shape[0], belief.shape[0]
    # x_from - x_to = (centre_from - centre_to) + j - i = map_centre + e - radius: j = i + e + shift
    shift = map_centre - evidence_map.radius - (np.asarray(centre_from) - np.asarray(centre_to))
    margin = width + int(np.max(np.abs(shift)))
    windows = sliding_window_view(np.pad(belief, margin, constant_values=-np.inf), (width, width))
    start = shift + margin
    blocks = windows[start[0]:start[0] + size, start[1]:start[1] + size]
    return np.max(blocks + values, axis=(2, 3))


def _max_marginals(group: Sequence[TileIndex], edges: Mapping[TileIndex, list[Pair]],
                   unary: Mapping[TileIndex, np.ndarray], maps: Mapping[Pair, EvidenceMap],
                   centres: Mapping[TileIndex, np.ndarray]) -> dict[TileIndex, np.ndarray]:
    """Max-marginal of every tile of a tree: the best total evidence with the tile at each position."""
    memo: dict[tuple[TileIndex, TileIndex], np.ndarray] = {}

    def incoming(source: TileIndex, target: TileIndex) -> np.ndarray:
        key = (source, target)
        if key not in memo:
            belief = unary[source].copy()
            for pair in edges[source]:
                other = pair[1] if pair[0] == source else pair[0]
                if other != target:
                    belief += incoming(other, source)
            pair = next(p for p in edges[source] if target in p)
            memo[key] = _message(belief, maps[pair], pair[0] == source, centres[source], centres[target])
        return memo[key]

    marginals = {}
    for tile in group:
        total = unary[tile].copy()
        for pair in edges[tile]:
            total += incoming(pair[1] if pair[0] == tile else pair[0], tile)
        marginals[tile] = total
    return marginals


def _snapped(evidence_map: EvidenceMap, offset: np.ndarray) -> tuple[tuple[int, int], float]:
    """The pair's own evidence maximum within :data:`SNAP_RADIUS_PX` of ``offset``, and its value."""
    index = np.asarray(offset) - np.asarray(evidence_map.centre) + evidence_map.radius
    if np.any(index < 0) or np.any(index >= evidence_map.values.shape[0]):
        return tuple(int(v) for v in offset), -np.inf
    lows = np.maximum(0, index - SNAP_RADIUS_PX)
    window = evidence_map.values[lows[0]:index[0] + SNAP_RADIUS_PX + 1, lows[1]:index[1] + SNAP_RADIUS_PX + 1]
    if not np.any(np.isfinite(window)):
        return tuple(int(v) for v in offset), -np.inf
    local = np.unravel_index(np.nanargmax(window), window.shape)
    best = lows + np.asarray(local)
    return tuple(int(v) for v in best - evidence_map.radius + np.asarray(evidence_map.centre)), float(window[local])


def place_cluster(
    group: Sequence[TileIndex],
    registrations: Mapping[Pair, PairRegistration],
    anchors: Mapping[TileIndex, np.ndarray],
    stage_model: StageModel,
    radius: float,
    min_significance: float,
) -> ClusterPlacement | None:
    """Search the positions of a cluster of unplaced tiles jointly.

    Parameters
    ----------
    group : sequence of (row, col)
        Tiles none of which is placed, linked by pairs among themselves.
    registrations : mapping
        ``(a, b) -> PairRegistration`` of every neighbour pair (with its evidence maps).
    anchors : mapping
        ``(row, col) -> integer (y, x)`` positions of the placed tiles.
    stage_model : StageModel
        Each tile is searched around its stage-model position ...
    radius : float
        ... this far (pixels, per axis).
    min_significance : float
        Significance a tile's max-marginal peak needs for the tile to be placed.

    Returns
    -------
    ClusterPlacement or None
        The speckle scale placing the most significant tile; ``None`` if no
        tile of ``group`` is linked to a placed tile or none is significant.
    """
    members = set(group)
    external = [(pair, r) for pair, r in registrations.items() if r.scores
                and (pair[0] in members) != (pair[1] in members)
                and (pair[0] in anchors or pair[1] in anchors)]
    if not external:
        return None
    edges = _spanning_tree(list(group), [p for p, r in registrations.items() if r.scores])
    tree = sorted({p for pairs in edges.values() for p in pairs})
    size = int(np.ceil(radius))
    centres = {t: np.rint(stage_model.position(t)).astype(int) for t in group}
    best = None
    for speckle_px in sorted({m.speckle_px for _, r in external for m in r.scores}):
        scale = {pair: m for pair, r in registrations.items() for m in r.scores if m.speckle_px == speckle_px}
        links = [(pair, scale[pair]) for pair, _ in external if pair in scale]
        if not links or any(p not in scale for p in tree):
            continue
        unary = {t: np.zeros((2 * size + 1, 2 * size + 1)) for t in group}
        for (a, b), evidence_map in links:
            inside, other = (b, a) if b in members else (a, b)
            values = link_map(evidence_map, 1 if inside == b else -1, anchors[other], centres[inside], size)
            unary[inside] += np.where(np.isfinite(values), values, -np.inf)
        marginals = _max_marginals(list(group), edges, unary, scale, centres)
        norm = np.sqrt(len(links))
        found, positions = {}, {}
        for tile, total in marginals.items():
            score = np.where(np.isfinite(total), total / norm, np.nan)
            peaks = local_maxima(score)
            if peaks:
                found[tile] = peak_significance(score, peaks[0])
                positions[tile] = centres[tile] + np.asarray(peaks[0]) - size
        placed = {t for t, s in found.items() if s >= min_significance}
        if not placed:
            continue
        offsets = {}
        for (a, b), evidence_map in links + [(p, scale[p]) for p in tree]:
            ends = [anchors.get(t) if t in anchors else positions.get(t) if t in placed else None for t in (a, b)]
            if ends[0] is None or ends[1] is None:
                continue
            offset, value = _snapped(evidence_map, np.rint(np.asarray(ends[1]) - np.asarray(ends[0])).astype(int))
            if value >= MIN_LINK_EVIDENCE:
                offsets[(a, b)] = offset
        significance = {t: found[t] for t in placed}
        if offsets and (best is None or max(significance.values()) > max(best.significance.values())):
            best = ClusterPlacement(significance, speckle_px, offsets)
    return best
