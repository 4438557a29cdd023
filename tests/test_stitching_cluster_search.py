"""Joint placement of a cluster of unplaced tiles (linumpy.stitching.cluster_search)."""

from __future__ import annotations

import numpy as np

from linumpy.stitching.cluster_search import clusters, place_cluster
from linumpy.stitching.global_solve import StageModel
from linumpy.stitching.pairwise import EvidenceMap, PairRegistration
from linumpy.stitching.tile_search import place_by_neighbours

RADIUS = 10
STEP = (100.0, 100.0)


def _evidence(peaks):
    """An evidence map (offsets ``nominal + index - RADIUS``) with Gaussian peaks ``(index, height)``."""
    values = np.zeros((2 * RADIUS + 1,) * 2)
    yy, xx = np.indices(values.shape)
    for (y, x), height in peaks:
        values += height * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 2.0)
    return values


def _registration(nominal, peaks):
    return PairRegistration((0.0, 0.0), 0.1, scores=(EvidenceMap(1.0, nominal, _evidence(peaks)),))


def _row_of_four():
    """Tiles (0, 0) and (0, 3) placed on the nominal grid; (0, 1), (0, 2) not, 2-3 px off it.

    Each link to a placed tile has its true peak (3.5) beaten by a rival (3.6); the inner pair is
    strong (8.0). Returns the registrations, the anchors and the true positions.
    """
    anchors = {(0, 0): np.array([0, 0]), (0, 3): np.array([0, 300])}
    truth = {(0, 1): np.array([3, 102]), (0, 2): np.array([1, 203])}
    position = {**anchors, **truth}
    rivals = {((0, 0), (0, 1)): (RADIUS - 6, RADIUS + 7), ((0, 2), (0, 3)): (RADIUS + 7, RADIUS - 6)}
    registrations = {}
    for a, b in (((0, 0), (0, 1)), ((0, 1), (0, 2)), ((0, 2), (0, 3))):
        nominal = (0, 100)
        true_index = tuple(int(v) for v in position[b] - position[a] - nominal + RADIUS)
        peaks = [(true_index, 8.0)] if (a, b) not in rivals else [(true_index, 3.5), (rivals[(a, b)], 3.6)]
        registrations[(a, b)] = _registration(nominal, peaks)
    return registrations, anchors, truth


def test_clusters_are_the_connected_unplaced_tiles():
    pairs = [((0, 0), (0, 1)), ((0, 1), (0, 2)), ((1, 0), (1, 1)), ((0, 2), (0, 3))]
    assert clusters([(0, 1), (0, 2), (1, 0), (1, 1), (2, 2)], pairs) == [[(0, 1), (0, 2)], [(1, 0), (1, 1)], [(2, 2)]]


def test_a_cluster_is_placed_by_links_that_each_prefer_a_rival():
    registrations, anchors, truth = _row_of_four()
    # one tile at a time, neither unplaced tile has a significant joint peak
    positions = {t: np.asarray(p, float) for t, p in anchors.items()}
    assert place_by_neighbours(registrations, positions, set(anchors), min_significance=2.0) == []
    placement = place_cluster([(0, 1), (0, 2)], registrations, anchors, StageModel.nominal(STEP),
                              radius=8.0, min_significance=2.0)
    # the inner pair (8) counts at both: (3.5 + 3.5 - 3.6) / sqrt(2) = 2.4 above the rival
    assert placement is not None and set(placement.significance) == {(0, 1), (0, 2)}
    assert min(placement.significance.values()) > 2.0
    assert placement.offsets == {((0, 0), (0, 1)): tuple(truth[(0, 1)] - anchors[(0, 0)]),
                                 ((0, 1), (0, 2)): tuple(truth[(0, 2)] - truth[(0, 1)]),
                                 ((0, 2), (0, 3)): tuple(anchors[(0, 3)] - truth[(0, 2)])}


def test_a_cluster_whose_links_do_not_single_out_a_position_stays_unplaced():
    registrations, anchors, _ = _row_of_four()
    weak = {pair: (_registration((0, 100), [((RADIUS, RADIUS), 1.0), ((RADIUS - 6, RADIUS + 7), 1.1)])
                   if pair != ((0, 1), (0, 2)) else r) for pair, r in registrations.items()}
    assert place_cluster([(0, 1), (0, 2)], weak, anchors, StageModel.nominal(STEP),
                         radius=8.0, min_significance=2.0) is None


def test_a_link_whose_tiles_may_not_overlap_does_not_rule_out_the_truth():
    # (1, 1) lies 6 px lower than the grid: at the truth (0, 1)-(1, 1) overlaps by less than the
    # scored floor (offsets from 102 px down are unscored, NaN) and its noise peaks 8 px off (2.5)
    registrations, anchors, truth = _row_of_four()
    anchors = {**anchors, (1, 1): np.array([106, 100])}
    true_index = tuple(int(v) for v in anchors[(1, 1)] - truth[(0, 1)] - (100, 0) + RADIUS)
    noise = (true_index[0] - 8, true_index[1])
    values = _evidence([(noise, 2.5)])
    values[RADIUS + 2:] = np.nan
    assert np.isnan(values[true_index])
    registrations[((0, 1), (1, 1))] = PairRegistration((0.0, 0.0), 0.1, scores=(EvidenceMap(1.0, (100, 0), values),))
    placement = place_cluster([(0, 1), (0, 2)], registrations, anchors, StageModel.nominal(STEP),
                              radius=10.0, min_significance=2.0)
    # main read the unscored offsets as impossible: the truth was never a candidate (no placement)
    assert placement is not None and set(placement.significance) == {(0, 1), (0, 2)}
    assert placement.offsets[((0, 0), (0, 1))] == tuple(truth[(0, 1)] - anchors[(0, 0)])
    assert placement.offsets[((0, 2), (0, 3))] == tuple(anchors[(0, 3)] - truth[(0, 2)])
    assert ((0, 1), (1, 1)) not in placement.offsets
