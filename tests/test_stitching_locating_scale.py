"""A coarse scale's peak on an edge's ridge gives way to a finer scale's round peak on that ridge
(session scale62, issue #10; ``pairwise.locating_scale``)."""

from __future__ import annotations

import numpy as np

from linumpy.stitching.pairwise import (
    EvidenceMap,
    edge_ridge,
    evidence,
    local_maxima,
    locating_scale,
    peak_significance,
)

TILE_PX = 96
NOMINAL = (0, 84)
RADIUS = 10
#: The truth: (2, 0)-(2, 1) of fresh foreign harsh A 159, slice 2, at its whole pixel (an 8 px overlap).
TRUE_OFFSET = (6, 88)
#: The outline crossing the overlap: the coarse scale's ridge runs along this direction through the truth.
RIDGE_DIRECTION = np.array([1.0, 1.0]) / np.sqrt(2.0)


def _offsets() -> tuple[np.ndarray, np.ndarray]:
    """The ``(y, x)`` offsets of the searched window."""
    yy, xx = np.indices((2 * RADIUS + 1, 2 * RADIUS + 1))
    return yy - RADIUS + NOMINAL[0], xx - RADIUS + NOMINAL[1]


def _map(speckle_px: float, quality: np.ndarray) -> EvidenceMap:
    """An evidence map of a horizontal pair whose match quality (NCC) is ``quality``: the evidence grows with
    the overlap's area as :func:`evidence` has it."""
    dy, dx = _offsets()
    area = np.clip(TILE_PX - np.abs(dy), 0, None) * np.clip(TILE_PX - dx, 0, None).astype(float)
    ncc = np.clip(quality, -0.99, 0.99)
    return EvidenceMap(speckle_px, NOMINAL, evidence(ncc, area, speckle_px), np.arctanh(ncc))


def _along_across(point: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Distances (pixels) of every offset from ``point`` along and across the ridge's direction."""
    dy, dx = _offsets()
    rel = np.stack([dy - point[0], dx - point[1]], axis=-1)
    along = rel @ RIDGE_DIRECTION
    return along, np.linalg.norm(rel - along[..., None] * RIDGE_DIRECTION, axis=-1)


def _edge_map(speckle_px: float, centre: tuple[int, int], half_length: float = 6.0) -> EvidenceMap:
    """The blurred outline: equal match quality along a 12 px ridge through ``centre``, falling off across it."""
    along, across = _along_across(centre)
    quality = 0.6 * np.exp(-across**2 / (2 * 1.2**2)) * np.exp(-np.clip(np.abs(along) - half_length, 0, None) ** 2)
    return _map(speckle_px, quality)


def _round_map(speckle_px: float, centre: tuple[int, int], rival: tuple[int, int], rival_drop: float) -> EvidenceMap:
    """Texture locating ``centre`` (a round peak, 1 px wide) and a rival peak ``rival_drop`` weaker in NCC."""
    dy, dx = _offsets()
    quality = 0.4 * np.exp(-((dy - centre[0]) ** 2 + (dx - centre[1]) ** 2) / 2.0)
    quality += (0.4 - rival_drop) * np.exp(-((dy - rival[0]) ** 2 + (dx - rival[1]) ** 2) / 2.0)
    return _map(speckle_px, quality)


def _peaks(maps: list[EvidenceMap]) -> tuple[list[tuple[int, int]], list[float]]:
    peaks = [local_maxima(m.values)[0] for m in maps]
    return peaks, [peak_significance(m.values, p) for m, p in zip(maps, peaks)]


def _offset(evidence_map: EvidenceMap, index: tuple[int, int]) -> tuple[int, int]:
    return tuple(int(c + i - evidence_map.radius) for c, i in zip(evidence_map.centre, index))


def test_a_coarse_edge_peak_gives_way_to_the_fine_round_peak_on_its_ridge():
    """Foreign harsh A 159, slice 2, (2, 0)-(2, 1): the fine scale's peak at the truth (significance 0.81),
    the coarse scale's on the outline's ridge 3 px short of it toward the larger overlap, more significant
    (0.85). The coarse peak was taken and the ridge walk carried it 2 px past the truth (2.89 px off)."""
    fine = _round_map(0.7, TRUE_OFFSET, rival=(-6, 89), rival_drop=0.025)
    coarse = _edge_map(1.5, TRUE_OFFSET)
    maps = [fine, coarse]
    peaks, significances = _peaks(maps)
    # The premise: the coarse scale is the more significant, its peak an edge's and off the truth along it.
    assert significances[1] > significances[0] >= 0.5
    assert edge_ridge((coarse,), _offset(coarse, peaks[1])) is not None
    assert np.linalg.norm(np.subtract(_offset(coarse, peaks[1]), TRUE_OFFSET)) >= 3
    chosen = locating_scale(maps, peaks, significances)
    assert _offset(maps[chosen], peaks[chosen]) == TRUE_OFFSET


def test_a_coarse_round_peak_does_not_replace_a_fine_edge_peak():
    """Foreign harsh A 159, slice 0, (0, 0)-(1, 0): the fine scale's peak on an edge's ridge, the coarse
    scale's round and on it, 4.7 px off along it; taken, the pair lost its edge status and the slice went
    0.49 / 2.06 -> 1.00 / 4.47 px. The fine, most significant scale stays: an edge link, used across its
    ridge only, where it is right."""
    fine = _edge_map(0.7, TRUE_OFFSET)
    off_truth = tuple(int(v) for v in np.rint(np.asarray(TRUE_OFFSET) - 3 * RIDGE_DIRECTION))
    coarse = _round_map(1.5, off_truth, rival=(-6, 89), rival_drop=0.03)
    maps = [fine, coarse]
    peaks, significances = _peaks(maps)
    assert significances[0] > significances[1] >= 0.5
    chosen = locating_scale(maps, peaks, significances)
    assert chosen == 0
    direction, _ = edge_ridge((fine,), _offset(fine, peaks[0]))
    # The chosen peak is right across the ridge: the truth lies on it.
    across = np.subtract(TRUE_OFFSET, _offset(fine, peaks[0]))
    assert abs(across @ np.array([-direction[1], direction[0]])) <= 0.5


def test_a_fine_peak_with_an_equal_rival_locates_nothing():
    """A fine peak on the coarse ridge whose rival ties with it (significance below 0.5) is no location:
    the coarse edge peak is kept (and the pair stays an edge link)."""
    fine = _round_map(0.7, TRUE_OFFSET, rival=(-6, 89), rival_drop=0.0)
    coarse = _edge_map(1.5, TRUE_OFFSET)
    maps = [fine, coarse]
    peaks, significances = _peaks(maps)
    assert significances[0] < 0.5
    assert locating_scale(maps, peaks, significances) == 1
