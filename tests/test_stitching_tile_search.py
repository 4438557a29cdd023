"""Joint placement of a tile from its placed neighbours (linumpy.stitching.tile_search)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from linumpy.stitching.pairwise import EvidenceMap, PairRegistration, correlation_area, peak_significance
from linumpy.stitching.global_solve import StageModel
from linumpy.stitching.tile_search import corroborated_placements, joint_placement, place_by_neighbours

RADIUS = 10


def _evidence(true_index, height, rival_index, rival_height):
    """An evidence map with a true peak and one rival peak (indices into the map)."""
    values = np.zeros((2 * RADIUS + 1,) * 2)
    yy, xx = np.indices(values.shape)
    for (y, x), h in ((true_index, height), (rival_index, rival_height)):
        values += h * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 2.0)
    return values


def test_two_weak_pairs_place_a_tile_neither_places_alone():
    true_position = np.array([103, 98])  # tile (1, 1)
    anchors = {(0, 1): np.array([0, 100]), (1, 0): np.array([100, 0])}
    # (0, 1) -> (1, 1): offset (103, -2), map centred at the nominal (100, 0)
    top = _evidence((3 + RADIUS, -2 + RADIUS), 3.0, (RADIUS - 6, RADIUS + 7), 3.6)
    # (1, 0) -> (1, 1): offset (3, 98), map centred at (0, 100)
    left = _evidence((3 + RADIUS, -2 + RADIUS), 3.0, (RADIUS + 8, RADIUS - 5), 3.6)
    links = [(((0, 1), (1, 1)), PairRegistration((0.0, 0.0), 0.1, scores=(EvidenceMap(1.0, (100, 0), top),))),
             (((1, 0), (1, 1)), PairRegistration((0.0, 0.0), 0.1, scores=(EvidenceMap(1.0, (0, 100), left),)))]
    for values in (top, left):  # alone, each pair's best peak is the rival
        best = np.unravel_index(np.argmax(values), values.shape)
        assert np.hypot(best[0] - 3 - RADIUS, best[1] + 2 - RADIUS) > 5
    placement = joint_placement((1, 1), links, anchors)
    # (3 + 3) / sqrt(2) = 4.2 against rivals of 3.6 / sqrt(2) = 2.5
    assert placement is not None and placement.significance > 1.6
    assert placement.offsets[((0, 1), (1, 1))] == tuple(true_position - anchors[(0, 1)])
    assert placement.offsets[((1, 0), (1, 1))] == tuple(true_position - anchors[(1, 0)])


def test_a_group_of_tiles_is_placed_as_one_by_links_too_weak_alone():
    # Tiles (1, 1) and (1, 2), registered with each other (100 px apart) but to no placed tile: their
    # three links each prefer a rival peak; moved as one rigid group they agree on the truth.
    members = {(1, 1): np.array([0, 0]), (1, 2): np.array([0, 100])}
    anchors = {(0, 1): np.array([0, 100]), (0, 2): np.array([0, 200]), (1, 3): np.array([100, 300])}
    truth = {(1, 1): np.array([103, 98]), (1, 2): np.array([103, 198])}
    rivals = [(RADIUS - 6, RADIUS + 7), (RADIUS + 8, RADIUS - 5), (RADIUS - 7, RADIUS - 6)]
    nominal = {((0, 1), (1, 1)): (100, 0), ((0, 2), (1, 2)): (100, 0), ((1, 2), (1, 3)): (0, 100)}
    links = []
    for (pair, centre), rival in zip(nominal.items(), rivals):
        a, b = pair
        true_offset = (anchors[b] if b in anchors else truth[b]) - (anchors[a] if a in anchors else truth[a])
        values = _evidence(tuple(true_offset - centre + RADIUS), 3.0, rival, 3.6)
        links.append((pair, PairRegistration((0.0, 0.0), 0.1, scores=(EvidenceMap(1.0, centre, values),))))
    for (_, registration), rival in zip(links, rivals):  # alone, each link's best peak is its rival
        values = registration.scores[0].values
        assert np.unravel_index(np.argmax(values), values.shape) == rival
    placement = joint_placement((1, 1), links, anchors, members=members)
    # 3 x 3 / sqrt(3) = 5.2 against rivals of 3.6 / sqrt(3) = 2.1
    assert placement is not None and placement.significance > 2.5
    assert placement.offsets == {((0, 1), (1, 1)): (103, -2), ((0, 2), (1, 2)): (103, -2),
                                 ((1, 2), (1, 3)): (-3, 102)}


def test_reversed_pair_reads_its_map_flipped():
    # (1, 1) is the first tile of the pair (1, 1) -> (1, 2): position(1, 1) = position(1, 2) - offset
    values = np.zeros((2 * RADIUS + 1,) * 2)
    values[RADIUS + 2, RADIUS - 1] = 9.0  # offset (2, 99) for a map centred at (0, 100)
    registration = PairRegistration((0.0, 0.0), 0.1, scores=(EvidenceMap(1.0, (0, 100), values),))
    placements = place_by_neighbours({((1, 1), (1, 2)): registration}, {(1, 2): (100.0, 200.0)},
                                     {(1, 2)}, min_significance=1.0)
    assert [p.tile for p in placements] == [(1, 1)]
    assert placements[0].offsets == {((1, 1), (1, 2)): (2, 99)}


def test_stage_prior_window_keeps_out_far_rivals():
    values = np.zeros((2 * RADIUS + 1,) * 2)
    values[RADIUS, RADIUS] = 4.0
    values[RADIUS - 9, RADIUS + 9] = 5.0
    assert peak_significance(values, (RADIUS - 9, RADIUS + 9)) > 0
    links = [(((0, 0), (0, 1)), PairRegistration((0.0, 0.0), 0.1, scores=(EvidenceMap(1.0, (0, 100), values),)))]
    free = joint_placement((0, 1), links, {(0, 0): np.array([0, 0])})
    assert free.offsets[((0, 0), (0, 1))] == (-9, 109)
    near = joint_placement((0, 1), links, {(0, 0): np.array([0, 0])}, prior=(np.array([0, 100]), 4.0))
    assert near.offsets[((0, 0), (0, 1))] == (0, 100)


def test_correlation_area_of_white_and_smoothed_noise():
    rng = np.random.default_rng(0)
    white = rng.standard_normal((200, 200))
    assert correlation_area(white) < 1.3
    smoothed = ndimage.gaussian_filter(white, 1.0)
    # A Gaussian of sigma s correlates the noise over 4 pi s^2 (12.6 px for s = 1).
    assert 9 < correlation_area(smoothed) < 14



def test_tiles_placed_beyond_the_stage_uncertainty_go_back_to_the_stage_model():
    """A 3 x 4 grid, step 50 px: the two pairs of corner tile (2, 3) agree on a position 30 px right of
    the grid (as two wrong pairs in empty agarose can: the loop closes); with a stage uncertainty of
    20 px the tile loses its pairs and sits on the stage model fitted to the others."""
    from linumpy.stitching.refusals import drop_implausible
    from linumpy.stitching.global_solve import PairOffset, solve_positions

    tiles = [(r, c) for r in range(3) for c in range(4)]
    step = (50.0, 50.0)
    wrong = {((1, 3), (2, 3)): (50.0, 30.0), ((2, 2), (2, 3)): (0.0, 80.0)}
    pairs = [PairOffset(a, b, wrong.get((a, b), (50.0 * (b[0] - a[0]), 50.0 * (b[1] - a[1]))), 1.0)
             for a in tiles for b in ((a[0] + 1, a[1]), (a[0], a[1] + 1)) if b in tiles]
    positions, model, kept = solve_positions(tiles, pairs, step)
    assert positions[(2, 3)][1] - positions[(2, 0)][1] > 170  # the wrong pairs agree: the solve keeps them
    positions, model, kept = drop_implausible(tiles, positions, model, kept, step, max_shift_px=20.0)
    assert all((2, 3) not in (p.a, p.b) for p in kept) and len(kept) == len(pairs) - 2
    for tile in tiles:
        assert np.abs(positions[tile] - positions[(0, 0)] - np.multiply(tile, step)).max() < 0.5, (tile, positions)


def test_a_joint_placement_that_lost_a_pair_no_longer_links_a_group_alone():
    """A 3 x 5 grid, step 50 px, true positions on the grid. Tile (2, 3) was placed by the joint search
    from (2, 2) (offset 4 px off) and (1, 3); the solve dropped (1, 3)-(2, 3). The remaining pair is the
    only link of the group of columns 3-4: kept as strong, it puts the whole group 4 px off (8 x 8
    harsh seed 3); demoted to weak, it is dropped and the group keeps its stage-model positions."""
    from linumpy.stitching.refusals import drop_broken_placements
    from linumpy.stitching.global_solve import PairOffset, solve_positions

    tiles = [(r, c) for r in range(3) for c in range(5)]
    step = (50.0, 50.0)
    pairs = [PairOffset(a, b, (50.0 * (b[0] - a[0]), 50.0 * (b[1] - a[1])), 1.0)
             for a in tiles for b in ((a[0] + 1, a[1]), (a[0], a[1] + 1))
             if b in tiles and (a[1] < 3) == (b[1] < 3)]
    pairs.append(PairOffset((2, 2), (2, 3), (0.0, 54.0), 1.0))
    placed_by = {((2, 2), (2, 3)): (2, 3), ((1, 3), (2, 3)): (2, 3)}
    positions, model, kept = solve_positions(tiles, [p for p in pairs if (p.a, p.b) != ((1, 3), (2, 3))], step)
    assert positions[(0, 4)][1] - positions[(0, 0)][1] > 203  # the group follows the wrong pair
    registrations = {pair: PairRegistration((0.0, 0.0), 0.1) for pair in placed_by}  # no evidence maps
    unchanged, dropped, _ = drop_broken_placements(tiles, positions, model, kept, {((2, 2), (2, 3)): (2, 3)},
                                                    registrations, step)
    assert unchanged[2] == kept and not dropped  # a placement that kept all its pairs keeps them strong
    (positions, model, kept), _, held = drop_broken_placements(tiles, positions, model, kept, placed_by,
                                                                registrations, step)
    assert not held  # no evidence of its own: not strong on its own
    assert all((2, 3) not in (p.a, p.b) or (p.a[1] >= 3) for p in kept)
    for tile in tiles:
        assert np.abs(positions[tile] - positions[(0, 0)] - np.multiply(tile, step)).max() < 0.5, (tile, positions)


def test_corroborated_placements_need_several_links_on_one_sharp_peak():
    # Tile (1, 1), truth (103, 98), its neighbours (0, 1) and (1, 0) placed at their stage positions;
    # (0, 0), 3 px off its own, opens the search window to 1.5 * 3 + 2 px.
    anchors = {(0, 1): (0.0, 100.0), (1, 0): (100.0, 0.0), (0, 0): (3.0, 0.0)}
    truth_index = (3 + RADIUS, -2 + RADIUS)
    model = StageModel.nominal((100.0, 100.0))

    def links(top, left):
        return {((0, 1), (1, 1)): PairRegistration((0.0, 0.0), 0.1, scores=(EvidenceMap(1.0, (100, 0), top),)),
                ((1, 0), (1, 1)): PairRegistration((0.0, 0.0), 0.1, scores=(EvidenceMap(1.0, (0, 100), left),))}

    def search(registrations, max_spread_px=1.0):
        return corroborated_placements(registrations, anchors, set(anchors), model, min_significance=1.0,
                                       min_links=2, max_spread_px=max_spread_px)

    # Both links hold the truth (2.0) but each prefers its own rival (2.2): the joint peak at the truth
    # is weak (significance 1.9, below the joint search's 2) but both links support it and it is sharp
    # (spread 0.5 px).
    top = _evidence(truth_index, 2.0, (RADIUS - 6, RADIUS + 7), 2.2)
    left = _evidence(truth_index, 2.0, (RADIUS + 8, RADIUS - 5), 2.2)
    found = search(links(top, left))
    assert [p.tile for p in found] == [(1, 1)] and 1.0 <= found[0].significance < 2.0
    assert found[0].position == (103, 98) and len(found[0].offsets) == 2
    # One link alone carries the peak (3.0; the other's evidence there is ~0, joint significance 1.2):
    # not corroborated, however sharp the peak may be.
    assert search(links(_evidence(truth_index, 3.0, (RADIUS - 6, RADIUS + 7), 2.2),
                        _evidence((RADIUS + 8, RADIUS - 5), 0.4, (RADIUS - 7, RADIUS - 6), 0.4)),
                  max_spread_px=np.inf) == []
    # The same heights on a broad peak (3 px wide; spread 1.2 px): not sharp enough.
    yy, xx = np.indices(top.shape)
    broad = 2.0 * np.exp(-((yy - truth_index[0]) ** 2 + (xx - truth_index[1]) ** 2) / 18.0)
    assert search(links(broad + _evidence(truth_index, 0.0, (RADIUS - 6, RADIUS + 7), 2.2),
                        broad + _evidence(truth_index, 0.0, (RADIUS + 8, RADIUS - 5), 2.2))) == []


def _corroboration_case():
    """Tile (1, 1) (truth (103, 98)) with three placed neighbours; the links of (0, 1) and (1, 0) hold a
    broad peak at the truth (spread ~1.2 px), the link of (1, 2) a sharp one 3 px off in y."""
    anchors = {(0, 1): (0.0, 100.0), (1, 0): (100.0, 0.0), (1, 2): (100.0, 200.0), (0, 0): (3.0, 0.0)}
    truth_index = (3 + RADIUS, -2 + RADIUS)
    yy, xx = np.indices((2 * RADIUS + 1,) * 2)
    broad = 2.0 * np.exp(-((yy - truth_index[0]) ** 2 + (xx - truth_index[1]) ** 2) / 18.0)
    maps = {((0, 1), (1, 1)): ((100, 0), broad + _evidence(truth_index, 0.0, (RADIUS - 6, RADIUS + 7), 2.2)),
            ((1, 0), (1, 1)): ((0, 100), broad + _evidence(truth_index, 0.0, (RADIUS + 8, RADIUS - 5), 2.2)),
            # (1, 1) -> (1, 2): true offset (-3, 102); this link's peak at (0, 102), the tile 3 px off
            ((1, 1), (1, 2)): ((0, 100), _evidence((RADIUS, 2 + RADIUS), 3.0, (RADIUS - 6, RADIUS - 7), 0.5))}
    registrations = {pair: PairRegistration((0.0, 0.0), 0.1, scores=(EvidenceMap(1.0, centre, values),))
                     for pair, (centre, values) in maps.items()}
    return registrations, anchors, StageModel.nominal((100.0, 100.0))


def test_corroborated_spread_gate_is_per_axis():
    # The broad peak (spread ~1.2 px on both axes) passes a gate of 1.5 px per axis, not one that is
    # 1 px on either axis (the gate of an axis whose stage scatter is small).
    registrations, anchors, model = _corroboration_case()
    del registrations[((1, 1), (1, 2))]

    def search(max_spread_px):
        return corroborated_placements(registrations, anchors, set(anchors), model, min_significance=1.0,
                                       min_links=2, max_spread_px=max_spread_px)

    found = search((1.5, 1.5))
    assert [p.tile for p in found] == [(1, 1)] and found[0].position == (103, 98)
    assert 1.0 < max(found[0].spread_px) <= 1.5
    assert search((1.5, 1.0)) == [] and search((1.0, 1.5)) == [] and search(1.0) == []


def test_a_link_the_solve_dropped_lends_no_evidence_to_the_search_again():
    from linumpy.stitching.corroboration import _corroborated_without

    registrations, anchors, model = _corroboration_case()

    def search(links):
        return corroborated_placements(links, anchors, set(anchors), model, min_significance=1.0,
                                       min_links=2, max_spread_px=(1.5, 1.5))

    # With the third link, the joint peak is pulled 3 px off the truth, all three links on it.
    anchored = {t: np.rint(np.asarray(p)).astype(int) for t, p in anchors.items()}
    first = joint_placement((1, 1), list(registrations.items()), anchored)
    assert first.position == (100, 98) and len(first.offsets) == 3
    # The solve drops the third link: the two others, alone, corroborate the truth.
    again = _corroborated_without(first, {((1, 1), (1, 2))}, registrations, search)
    assert again is not None and again.position == (103, 98)
    assert set(again.offsets) == {((0, 1), (1, 1)), ((1, 0), (1, 1))}
    # Dropping one of those too leaves a single link: no corroboration.
    assert _corroborated_without(first, {((1, 1), (1, 2)), ((1, 0), (1, 1))}, registrations, search) is None
