"""A piece of tiles that strong pairs on closed loops join, but no trusted link ties to the others, is placed as one
at its tiles' stage-model mean instead of tile by tile on the stage (session rigid, issue #10)."""

from __future__ import annotations

import numpy as np

from linumpy.stitching.stage_pieces import pieces_joined_to_main, place_rigid_pieces
from linumpy.stitching.global_solve import PairOffset, StageModel
from linumpy.stitching.pairwise import EvidenceMap, PairRegistration, single_peak
from linumpy.stitching.transform import TileRecord, TileTransform, transform_from_dict, transform_to_dict
from linumpy.stitching.uncertainty import tile_sigmas

STEP = (86.0, 86.0)
TILES = [(r, c) for r in range(4) for c in range(4)]
#: Foreign ``c185`` seed 215 slice 3's piece: four tiles, pairs of significance 7-23, right to 0.5 px, no trusted
#: link to the others (4 x 4, 10 % overlap, the stage erring by up to 8 px).
PIECE = [(2, 0), (2, 1), (3, 0), (3, 1)]
LOOP = [((2, 0), (2, 1)), ((2, 0), (3, 0)), ((2, 1), (3, 1)), ((3, 0), (3, 1))]
#: Errors of the piece's pairs (pixels, ``(y, x)``): within the 0.5 px they were measured at.
RIGHT = {((2, 0), (2, 1)): (0.3, -0.2), ((2, 0), (3, 0)): (-0.1, 0.4), ((2, 1), (3, 1)): (0.2, 0.1),
         ((3, 0), (3, 1)): (-0.4, -0.3)}
SIGNIFICANCE = {pair: 10.0 for pair in LOOP}


def _slice(errors: dict, seed: int = 215) -> tuple[dict, dict, list[PairOffset]]:
    """Truth, stage positions (the nominal grid: the stage errs by up to 8 px on each axis) and the piece's pairs
    (significance :data:`SIGNIFICANCE`: standard error 0.1 px) with ``errors``."""
    rng = np.random.default_rng(seed)
    stage = {t: np.array([t[0] * STEP[0], t[1] * STEP[1]]) for t in TILES}
    truth = {t: stage[t] + rng.uniform(-8, 8, 2) for t in TILES}
    links = [PairOffset(a, b, tuple(truth[b] - truth[a] + np.asarray(errors[(a, b)])), weight=100.0)
             for a, b in LOOP]
    return truth, stage, links


def _off(positions: dict, truth: dict, tiles: list) -> np.ndarray:
    """Each tile's distance to the truth, the slice's mean translation over ``TILES`` removed."""
    translation = np.mean([np.asarray(positions[t]) - truth[t] for t in TILES], axis=0)
    return np.array([np.linalg.norm(np.asarray(positions[t]) - translation - truth[t]) for t in tiles])


def test_a_piece_on_closed_loops_is_placed_as_one_at_its_stage_mean():
    """The piece keeps its pairs' shape (its tiles within 0.5 px of one another's truth), its mean on the mean of
    its stage positions, the other tiles untouched; its tiles' total squared error is below the stage's (the
    mean minimises it), over several draws of the stage errors. Main: the four tiles on their stage positions."""
    for seed in range(5):
        truth, stage, links = _slice(RIGHT, seed)
        positions, placed, _ = place_rigid_pieces(stage, links, SIGNIFICANCE, set(), STEP)
        assert sorted((p.a, p.b) for p in placed) == LOOP
        assert all(np.array_equal(positions[t], stage[t]) for t in TILES if t not in PIECE)
        assert np.allclose(np.mean([positions[t] for t in PIECE], axis=0), np.mean([stage[t] for t in PIECE], axis=0))
        relative = np.array([positions[t] - truth[t] for t in PIECE])
        assert np.max(np.linalg.norm(relative - relative.mean(axis=0), axis=1)) < 0.5
        stage_errors = np.array([stage[t] - truth[t] for t in PIECE])
        assert np.sum(relative**2) < np.sum(stage_errors**2)
        assert np.sum(_off(positions, truth, PIECE) ** 2) < np.sum(_off(stage, truth, PIECE) ** 2)


def test_a_piece_whose_loop_does_not_close_stays_on_the_stage_tile_by_tile():
    """One pair of the loop 4 px off (a wrong peak, as between tiles that do not overlap): the loop misses by
    4 px, no pair is known to be the culprit, the piece stays on the stage tile by tile, no pair accepted."""
    truth, stage, links = _slice({**RIGHT, ((2, 1), (3, 1)): (4.0, 0.5)})
    positions, placed, _ = place_rigid_pieces(stage, links, SIGNIFICANCE, set(), STEP)
    assert placed == []
    assert all(np.array_equal(positions[t], stage[t]) for t in TILES)


def test_pieces_of_fewer_tiles_than_a_loop_stay_on_the_stage():
    """Three tiles cannot close a loop of neighbour pairs: nothing checks them, nothing moves."""
    _, stage, links = _slice(RIGHT)
    corner = [p for p in links if (3, 1) not in (p.a, p.b)]
    positions, placed, _ = place_rigid_pieces(stage, corner, SIGNIFICANCE, set(), STEP)
    assert placed == [] and all(np.array_equal(positions[t], stage[t]) for t in TILES)


def test_the_piece_states_the_stage_mean_error_and_its_qc_field():
    """The piece's tiles, a group apart from the largest, state at least the stage scatter over the square root
    of the piece's size (the error of the mean translation), above what their pairs alone say; the tile record's
    ``rigid_piece`` survives the transform's JSON."""
    truth, stage, links = _slice(RIGHT)
    main = [(a, b) for a in TILES for b in TILES if a[0] < 2 and b[0] < 2
            and ((b[0] - a[0], b[1] - a[1]) in ((0, 1), (1, 0)))]
    accepted = [(a, b, np.full(2, 0.01)) for a, b in main] + [(p.a, p.b, np.full(2, 0.01)) for p in links]
    scatter = np.full(2, 8 / np.sqrt(3))
    sigmas = tile_sigmas(TILES, accepted, scatter)
    assert all(sigmas[t] >= scatter[0] / np.sqrt(len(PIECE)) for t in PIECE)
    assert all(sigmas[t] < scatter[0] / np.sqrt(len(PIECE)) + 0.5 for t in PIECE)
    assert all(sigmas[t] < sigmas[PIECE[0]] for t in TILES if t[0] < 2)
    records = {t: TileRecord(source="pairs", n_pairs=2, sigma_px=sigmas[t], rigid_piece=t in PIECE) for t in TILES}
    transform = TileTransform(tile_shape=(96, 96), tile_step_px=STEP,
                              positions={t: tuple(map(float, stage[t])) for t in TILES},
                              stage_model=StageModel.nominal(STEP), tiles=records)
    read = transform_from_dict(transform_to_dict(transform))
    assert sorted(t for t, record in read.tiles.items() if record.rigid_piece) == PIECE


def _tree() -> tuple[dict, dict, dict, list[PairOffset]]:
    """Foreign ``c185`` 209 slice 0's tree of strong right pairs, the weak (2, 1)-(3, 1) closing its loop 13.9 px
    off: truth, stage, significance, links."""
    rng = np.random.default_rng(209)
    stage = {t: np.array([t[0] * STEP[0], t[1] * STEP[1]]) for t in TILES}
    truth = {t: stage[t] + rng.uniform(-8, 8, 2) for t in TILES}
    significance = {((1, 0), (2, 0)): 19.8, ((2, 0), (3, 0)): 18.7, ((3, 0), (3, 1)): 20.7, ((2, 0), (2, 1)): 5.8,
                    ((2, 1), (3, 1)): 1.8}
    errors = {((2, 1), (3, 1)): (-13.9, -2.0)}
    links = [PairOffset(a, b, tuple(truth[b] - truth[a] + np.asarray(errors.get((a, b), (0.1, -0.1)))),
                        weight=s**2, strong=s >= 3) for (a, b), s in significance.items()]
    return truth, stage, significance, links


def test_a_tree_of_strong_pairs_is_placed_where_its_unchecked_pairs_are_very_significant():
    """Foreign ``c185`` 209 slice 0's piece: strong right pairs in a tree ((1, 0)-(2, 0) 19.8, (2, 0)-(3, 0)
    18.7, (3, 0)-(3, 1) 20.7, (2, 0)-(2, 1) 5.8) and the weak (2, 1)-(3, 1) (1.8) closing their one loop 13.9 px
    off: the solve drops the weak pair and keeps the strong ones, all on no loop; (2, 0)-(2, 1), below 8 and not
    known to be one peak, cuts (2, 1) off (on the stage), the other four are placed by their pairs (within 0.5 px of one another's truth)
    at their stage mean; the weak pair is not accepted."""
    truth, stage, significance, links = _tree()
    positions, placed, _ = place_rigid_pieces(stage, links, significance, set(), STEP)
    piece = [(1, 0), (2, 0), (3, 0), (3, 1)]
    assert sorted((p.a, p.b) for p in placed) == sorted(pair for pair, s in significance.items() if s >= 8)
    relative = np.array([positions[t] - truth[t] for t in piece])
    assert np.max(np.linalg.norm(relative - relative.mean(axis=0), axis=1)) < 0.5
    assert np.allclose(np.mean([positions[t] for t in piece], axis=0), np.mean([stage[t] for t in piece], axis=0))
    assert np.array_equal(positions[(2, 1)], stage[(2, 1)])
    # The tree's strong bridges read 6.7 instead (the wrong peaks measured between tiles that do not overlap
    # read up to 6.9), their matches not known to be one peak: nothing checks them, nothing moves.
    positions, placed, _ = place_rigid_pieces(stage, links, {pair: min(s, 6.7) for pair, s in significance.items()},
                                            set(), STEP)
    assert placed == [] and all(np.array_equal(positions[t], stage[t]) for t in TILES)


def test_an_unchecked_strong_pair_whose_match_is_one_peak_holds_the_piece():
    """209 slice 0's tree, its bridge (2, 0)-(2, 1) at 5.8 but its match one peak (no twin, as every right strong
    pair left for pieces measured): it holds (2, 1), all five tiles placed by their pairs at their stage mean,
    within 0.5 px of one another's truth, closer than the stage in total; the same bridge with a twin peak (as
    the wrong 213 slice 4 (2, 0)-(3, 0), 6.67, 9.6 px off) or at 5.0, one peak (as the wrong strong pairs that
    are one peak all the same, up to 4.98), cuts (2, 1) off, on the stage."""
    truth, stage, significance, links = _tree()
    strong = {pair for pair, s in significance.items() if s >= 3}
    positions, placed, _ = place_rigid_pieces(stage, links, significance, strong, STEP)
    piece = [(1, 0), (2, 0), (2, 1), (3, 0), (3, 1)]
    assert sorted((p.a, p.b) for p in placed) == sorted(strong)
    relative = np.array([positions[t] - truth[t] for t in piece])
    assert np.max(np.linalg.norm(relative - relative.mean(axis=0), axis=1)) < 0.5
    assert np.allclose(np.mean([positions[t] for t in piece], axis=0), np.mean([stage[t] for t in piece], axis=0))
    assert np.sum(_off(positions, truth, piece) ** 2) < np.sum(_off(stage, truth, piece) ** 2)
    twinned = strong - {((2, 0), (2, 1))}
    for single, weaker in ((twinned, significance), (strong, {**significance, ((2, 0), (2, 1)): 5.0})):
        positions, placed, _ = place_rigid_pieces(stage, links, weaker, single, STEP)
        assert sorted((p.a, p.b) for p in placed) == sorted(twinned)
        assert np.array_equal(positions[(2, 1)], stage[(2, 1)])


def _fisher_map(peaks: list[tuple[tuple[int, int], float]], radius: int = 8) -> EvidenceMap:
    """An evidence map over ``|dy|, |dx| <= radius`` around the offset (0, 86) whose NCC is a sum of
    speckle-sized bumps (``((dy, dx), ncc)``) over a floor of 0.05."""
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    ncc = 0.05 + sum(v * np.exp(-((yy - dy) ** 2 + (xx - dx) ** 2) / (2 * 0.8**2)) for (dy, dx), v in peaks)
    fisher = np.arctanh(np.clip(ncc, -0.99, 0.99))
    return EvidenceMap(0.7, (0, 86), fisher * 10, fisher, (96, 96))


def test_a_match_with_a_twin_peak_a_few_pixels_away_is_not_one_peak():
    """One speckle-sized peak of NCC 0.9 at the offset: one peak. A second one 3 px along the step at 0.89 (213
    slice 4's wrong (2, 0)-(3, 0): 0.902 and 0.894, 3.2 px apart): not one peak; a weak bump there (0.25, below
    half the peak) or a second peak beyond the peak radius (8 px): one peak; an offset the map does not score
    or a match below zero: nothing to tell, not one peak."""
    assert single_peak((_fisher_map([((0, 0), 0.85)]),), (0.2, 86.3))
    assert not single_peak((_fisher_map([((0, 0), 0.85), ((3, 1), 0.84)]),), (0.0, 86.0))
    assert single_peak((_fisher_map([((0, 0), 0.85), ((3, 1), 0.2)]),), (0.0, 86.0))
    assert single_peak((_fisher_map([((0, 0), 0.85), ((8, 0), 0.85)]),), (0.0, 86.0))
    assert not single_peak((_fisher_map([((0, 0), 0.85)]),), (20.0, 86.0))
    assert not single_peak((_fisher_map([((0, 0), -0.5)]),), (0.0, 86.0))


#: Foreign ``c185`` 496 slice 3 (session group10): the nine tiles left on the stage model (main group
#: {(1, 0), (2, 0), (2, 1), (2, 2), (3, 0), (3, 1), (3, 2)} placed by pairs, right within 0.7 px), their recorded
#: links ``(a, b): (offset, weight, test weight, own significance, one peak)`` and each tile's truth in the estimate's
#: frame (the placed main group's), pixels. Every link is right within 0.3 px.
PIECES_496 = {
    ((0, 0), (0, 1)): ((-4.63, 77.85), (90.74, 109.61), (157.86, 225.34), 14.61, True),
    ((0, 1), (0, 2)): ((2.97, 92.46), (0.98, 0.98), (1.0, 1.0), 6.89, True),
    ((0, 1), (1, 1)): ((89.97, 11.83), (35.07, 32.83), (230.89, 159.33), 6.43, True),
    ((0, 2), (0, 3)): ((-2.23, 77.32), (96.74, 95.70), (172.42, 169.15), 14.85, True),
    ((0, 3), (1, 3)): ((92.27, -1.01), (0.80, 0.80), (1.0, 1.0), 1.09, False),
    ((1, 1), (1, 2)): ((4.26, 72.22), (32.28, 29.37), (226.93, 133.85), 6.13, False),
    ((1, 2), (1, 3)): ((-1.20, 85.13), (6.69, 6.50), (164.86, 96.43), 2.64, False),
    ((1, 3), (2, 3)): ((90.08, 2.84), (33.02, 26.56), (196.34, 80.30), 6.30, True),
    ((2, 3), (3, 3)): ((77.07, -2.66), (85.55, 121.83), (125.24, 222.03), 16.43, True),
}
TRUTH_496 = {(0, 0): (-0.29, 6.01), (0, 1): (-4.97, 83.89), (0, 2): (-2.04, 176.63), (0, 3): (-4.32, 254.01),
             (1, 1): (84.80, 95.83), (1, 2): (89.12, 167.92), (1, 3): (87.90, 252.80), (2, 3): (178.26, 255.48),
             (3, 3): (255.47, 252.77)}
JOINING_496 = [((0, 3), (1, 3)), ((1, 2), (1, 3))]


def _pieces_496(errors: dict | None = None) -> tuple[dict, list[PairOffset], dict, set]:
    """496 slice 3's stage positions (the nominal grid), links (``errors`` added to their offsets), own
    significances and one-peak links."""
    stage = {t: np.array([t[0] * STEP[0], t[1] * STEP[1]]) for t in TRUTH_496}
    links = [PairOffset(a, b, tuple(np.add(offset, (errors or {}).get((a, b), (0.0, 0.0)))), weight=weight,
                        strong=significance >= 3, test_weight=test)
             for (a, b), (offset, weight, test, significance, _) in PIECES_496.items()]
    return (stage, links, {pair: record[3] for pair, record in PIECES_496.items()},
            {pair for pair, record in PIECES_496.items() if record[4]})


def _errors_496(positions: dict) -> dict:
    """Each of 496 slice 3's nine tiles' distance to its truth (the main group's frame), pixels."""
    return {t: float(np.linalg.norm(np.asarray(positions[t]) - truth)) for t, truth in TRUTH_496.items()}


def test_pieces_joined_by_weak_pairs_on_a_loop_are_placed_as_one():
    """496 slice 3: the piece of five {(0, 0)-(0, 3), (1, 1)}, the strong (1, 1)-(1, 2) (6.13, two peaks: on no loop
    it cuts (1, 2) off) and the strong {(1, 3), (2, 3), (3, 3)} (three tiles, no piece alone) are joined by the weak
    right (1, 2)-(1, 3) 2.64 and (0, 3)-(1, 3) 1.09, whose loop closes: the nine tiles are placed as one at their
    stage-model mean, every tile within 0.8 px of its truth (main: the five 3.6-4.0 px off as one piece, the four
    others on the stage 5.1-6.8 px off), the two weak pairs named as joining."""
    stage, links, significance, single = _pieces_496()
    positions, placed, joining = place_rigid_pieces(stage, links, significance, single, STEP)
    assert sorted((p.a, p.b) for p in placed) == sorted(PIECES_496)
    assert sorted(joining) == JOINING_496
    assert max(_errors_496(positions).values()) < 0.8
    assert np.allclose(np.mean([positions[t] for t in TRUTH_496], axis=0),
                       np.mean([stage[t] for t in TRUTH_496], axis=0))
    assert min(_errors_496(stage).values()) > 4.0


def test_pieces_a_lone_or_contradicted_weak_pair_joins_are_judged_alone():
    """496 slice 3 with one joining weak pair only (on no loop: nothing checks it), or with (1, 2)-(1, 3) 4 px off
    (the loop misses): each piece is judged alone as before: the five tiles placed as one at their own stage-model
    mean (3.6-4.0 px off), (1, 2) cut off at its two-peak bridge and the three-tile piece on the stage."""
    stage, links, significance, single = _pieces_496()
    five = [(0, 0), (0, 1), (0, 2), (0, 3), (1, 1)]
    lone = [p for p in links if (p.a, p.b) != JOINING_496[0]]
    contradicted = _pieces_496({JOINING_496[1]: (4.0, 0.0)})[1]
    for case in (lone, contradicted):
        positions, placed, joining = place_rigid_pieces(stage, case, significance, single, STEP)
        assert joining == set()
        assert sorted({t for p in placed for t in (p.a, p.b)}) == five
        errors = _errors_496(positions)
        assert all(3.5 < errors[t] < 4.1 for t in five)
        assert all(np.array_equal(positions[t], stage[t]) for t in TRUTH_496 if t not in five)


#: Foreign ``c185`` 497 slice 3 (session join10): the tiles left on the stage model with their recorded registrations
#: ``(a, b): (offset, sigma_px, own significance)`` (the edge link (0, 2)-(1, 2) 0.96, 12 px off, left out, as
#: :func:`rigid_piece_links` leaves it), the main group's two tiles they link to at their placed positions, and each
#: tile's truth in the estimate's frame, pixels. The strong (1, 1)-(1, 2) 4.11 is joined to the main group by the
#: weak right (1, 1)-(2, 1) 1.90 and (1, 2)-(2, 2) 1.53; (1, 3) hangs on (1, 2) by the strong 3.85, on no loop.
LINKS_497 = {
    ((0, 2), (0, 3)): ((9.63, 78.76), (0.063, 0.047), 11.25),
    ((0, 3), (1, 3)): ((79.54, 0.12), (0.080, 0.102), 5.11),
    ((1, 1), (1, 2)): ((-1.61, 77.97), (0.052, 0.076), 4.11),
    ((1, 1), (2, 1)): ((79.17, -5.73), (0.078, 0.102), 1.90),
    ((1, 2), (1, 3)): ((-9.66, 84.60), (0.076, 0.089), 3.85),
    ((1, 2), (2, 2)): ((84.25, 4.79), (0.097, 0.106), 1.53),
}
MAIN_497 = {(2, 1): (168.22, 88.61), (2, 2): (172.55, 173.98)}
TRUTH_497 = {(1, 1): (89.35, 92.37), (1, 2): (87.87, 170.58)}
JOINED_497 = [((1, 1), (1, 2)), ((1, 1), (2, 1)), ((1, 2), (2, 2))]


def _slice_497(errors: dict | None = None) -> tuple[dict, list[PairOffset], dict]:
    """497 slice 3's positions (the tiles left out on the nominal grid), the main group's kept pairs (one, between
    its two tiles) and the registrations (``errors`` added to their offsets)."""
    left = [(0, 2), (0, 3), (1, 1), (1, 2), (1, 3)]
    positions = {**{t: np.array([t[0] * 86.0, t[1] * 86.0]) for t in left},
                 **{t: np.array(p) for t, p in MAIN_497.items()}}
    main = PairOffset((2, 1), (2, 2), tuple(np.subtract(MAIN_497[(2, 2)], MAIN_497[(2, 1)])), 1.0)
    registrations = {pair: PairRegistration(tuple(np.add(offset, (errors or {}).get(pair, (0.0, 0.0)))), 0.5,
                                            significance, sigma)
                     for pair, (offset, sigma, significance) in LINKS_497.items()}
    return positions, [main], registrations


def test_a_piece_two_weak_links_on_a_loop_join_to_the_main_group_is_placed_by_them():
    """497 slice 3: (1, 1) and (1, 2) placed by their links, the main group held, within 0.7 px of their truth
    (main: on the stage, 7.1 and 2.3 px off in that frame); (1, 3), (0, 3), (0, 2), beyond the
    strong pairs on no loop below the bridge bars, and the main group's tiles unchanged; the three links named."""
    positions, kept, registrations = _slice_497()
    placed, joined, checks = pieces_joined_to_main(positions, kept, registrations)
    assert sorted((p.a, p.b) for p in joined) == JOINED_497 and checks == []
    assert all(np.linalg.norm(placed[t] - truth) < 0.7 for t, truth in TRUTH_497.items())
    assert all(np.linalg.norm(positions[t] - truth) > 2.0 for t, truth in TRUTH_497.items())
    assert all(np.array_equal(placed[t], positions[t]) for t in positions if t not in TRUTH_497)


def test_a_piece_one_or_disagreeing_links_join_to_the_main_group_stays():
    """497 slice 3 with one link to the main group only (no loop through it checks it), or with (1, 2)-(2, 2) 4 px
    off (the two disagree): nothing moves, no link kept."""
    positions, kept, registrations = _slice_497()
    lone = {pair: r for pair, r in registrations.items() if pair != ((1, 2), (2, 2))}
    disagreeing = _slice_497({((1, 2), (2, 2)): (4.0, 0.0)})[2]
    for case in (lone, disagreeing):
        placed, joined, checks = pieces_joined_to_main(positions, kept, case)
        assert joined == [] and checks == []
        assert all(np.array_equal(placed[t], positions[t]) for t in positions)


#: Foreign ``c185`` 501 slice 2 (session join501): the tiles left out (the top row's rigid piece at its stage-model
#: mean, (1, 2) on the stage) with their recorded candidate links ``(a, b): (offset, sigma_px, own significance)``,
#: the main group's (1, 3) and (2, 3) at their placed positions, and each tile's truth in the main group's frame,
#: pixels. One candidate links the piece to the main group, the weak right (1, 2)-(1, 3) 1.41; the right
#: (0, 3)-(1, 3) (own 2.43, 0.9 px off, its sub-pixel fit unrefined) was refused in depth (its ranges 1.96 at
#: 0.2 px, 1.65 at 2.7 px, 0.82 at 1.3 px from its peak).
LINKS_501 = {
    ((0, 1), (0, 2)): ((0.32, 83.97), (0.030, 0.021), 20.76),
    ((0, 1), (1, 1)): ((81.37, -7.73), (0.066, 0.084), 5.90),
    ((0, 2), (0, 3)): ((-5.77, 83.92), (0.105, 0.077), 8.95),
    ((0, 2), (1, 2)): ((80.11, -5.07), (0.093, 0.069), 5.30),
    ((1, 1), (1, 2)): ((-1.48, 85.83), (0.067, 0.065), 0.74),
    ((1, 2), (1, 3)): ((6.38, 89.22), (0.082, 0.100), 1.41),
}
REFUSED_501 = {((0, 3), (1, 3)): ((91.27, -0.08), (1.0, 1.0), 2.43)}
LEFT_501 = {(0, 1): (2.44, 89.47), (0, 2): (2.76, 173.44), (0, 3): (-3.01, 257.35), (1, 1): (83.81, 81.74),
            (1, 2): (86.0, 172.0)}
MAIN_501 = {(1, 3): (85.49, 255.53), (2, 3): (166.47, 252.19)}
TRUTH_501 = {(0, 1): (-0.94, 88.32), (0, 2): (-0.54, 172.22), (0, 3): (-6.36, 256.04), (1, 1): (80.63, 80.92),
             (1, 2): (79.50, 167.12)}


def _slice_501(errors: dict | None = None) -> tuple[dict, list[PairOffset], dict, dict]:
    """501 slice 2's positions, the main group's kept pair, the registrations and the pair refused in depth (its own
    registration), ``errors`` added to their offsets."""
    positions = {t: np.array(p) for t, p in {**LEFT_501, **MAIN_501}.items()}
    main = PairOffset((1, 3), (2, 3), tuple(np.subtract(MAIN_501[(2, 3)], MAIN_501[(1, 3)])), 1.0)
    registrations, refused = ({pair: PairRegistration(tuple(np.add(offset, (errors or {}).get(pair, (0.0, 0.0)))), 0.5,
                                                      significance, sigma)
                               for pair, (offset, sigma, significance) in links.items()}
                              for links in (LINKS_501, REFUSED_501))
    return positions, [main], registrations, refused


def test_a_pair_refused_in_depth_checks_a_pieces_one_link_to_the_main_group():
    """501 slice 2: the refused (0, 3)-(1, 3) lies 0.9 px from the offset the one link (1, 2)-(1, 3) predicts for it:
    the piece's five tiles are placed by that link, the main group held, each within 1.2 px of its truth (main: at
    the rigid piece's stage-model mean or on the stage, 3.3-8.1 px off); the refused pair checks, it places nothing
    (its peak moved 0.6 px, still agreeing, the
    same positions)."""
    positions, kept, registrations, refused = _slice_501()
    placed, joined, checks = pieces_joined_to_main(positions, kept, registrations, refused)
    assert [(p.a, p.b) for p in checks] == list(REFUSED_501)
    assert sorted((p.a, p.b) for p in joined) == sorted(LINKS_501)
    assert all(np.linalg.norm(placed[t] - truth) < 1.2 for t, truth in TRUTH_501.items())
    assert all(np.linalg.norm(positions[t] - truth) > 3.0 for t, truth in TRUTH_501.items())
    assert all(np.array_equal(placed[t], positions[t]) for t in MAIN_501)
    nearby = _slice_501({((0, 3), (1, 3)): (0.5, -0.3)})[3]
    moved = pieces_joined_to_main(positions, kept, registrations, nearby)[0]
    assert all(np.array_equal(moved[t], placed[t]) for t in placed)


def test_a_refused_pair_that_disagrees_or_is_alone_places_no_piece():
    """501 slice 2 without the refused pair (main), with its peak 4 px off (it disagrees with the one link), with
    no link but the refused one (a refused pair alone places nothing), or with two refused pairs that agree and no
    other link: nothing moves, no link kept, none checks."""
    positions, kept, registrations, refused = _slice_501()
    wrong = _slice_501({((0, 3), (1, 3)): (4.0, 0.0)})[3]
    without_link = {pair: r for pair, r in registrations.items() if pair != ((1, 2), (1, 3))}
    cases = [(registrations, {}), (registrations, wrong), (without_link, refused),
             (without_link, {**refused, ((1, 2), (1, 3)): registrations[((1, 2), (1, 3))]})]
    for case, refused_case in cases:
        placed, joined, checks = pieces_joined_to_main(positions, kept, case, refused_case)
        assert joined == [] and checks == []
        assert all(np.array_equal(placed[t], positions[t]) for t in positions)
