"""Weakly linked tiles re-solved with their links' honest errors (linumpy.stitching.weak_prior).

Hand-made pairs on a 3 x 4 grid against its ground truth: the stage reports
the nominal grid, the truth departs from it by a drawn stage error. Eleven
tiles are joined by exact, precise pairs (the trusted piece); tile (2, 3)
hangs on two weak links with the same ``sigma_px``: (1, 3)-(2, 3) is exact
with a sharp evidence peak, (2, 2)-(2, 3) is 2 px off in x with a broad one
(spread 2.5 px). Their loop misses by 2 px, under the solve's 1.5 px
pruning bar once spread over the loop, so the plain solve puts the tile
half way.
"""

import numpy as np

from linumpy.stitching.global_solve import PairOffset, StageModel, solve_positions
from linumpy.stitching.transform import TileRecord, TileTransform, transform_from_dict, transform_to_dict
from linumpy.stitching.weak_prior import place_weak_tiles

STEP = (100.0, 100.0)
TILES = [(r, c) for r in range(3) for c in range(4)]
WEAK = (2, 3)
LINKS = [((1, 3), WEAK), ((2, 2), WEAK)]


def _truth() -> dict:
    rng = np.random.default_rng(7)
    model = StageModel.nominal(STEP)
    return {t: model.position(t) + rng.uniform(-3, 3, 2) for t in TILES}


def _pairs(truth: dict, link_error: float) -> list[PairOffset]:
    pairs = []
    for a in TILES:
        for b in ((a[0] + 1, a[1]), (a[0], a[1] + 1)):
            if b not in truth:
                continue
            offset = truth[b] - truth[a]
            if (a, b) == LINKS[1]:
                pairs.append(PairOffset(a, b, tuple(offset + (0.0, link_error)), weight=1 / 0.3**2, strong=False))
            elif (a, b) in LINKS:
                pairs.append(PairOffset(a, b, tuple(offset), weight=1 / 0.3**2, strong=False))
            else:
                pairs.append(PairOffset(a, b, tuple(offset), weight=1 / 0.1**2))
    return pairs


def _errors(positions: dict, truth: dict) -> dict:
    """Distance to the truth after removing the mean translation over all tiles."""
    shift = np.mean([positions[t] - truth[t] for t in TILES], axis=0)
    return {t: float(np.linalg.norm(positions[t] - truth[t] - shift)) for t in TILES}


def _solve(link_error: float, spread: float):
    truth = _truth()
    positions, model, kept = solve_positions(TILES, _pairs(truth, link_error), STEP)
    assert len(kept) == len(_pairs(truth, link_error))  # the solve keeps both links
    anchoring = {(p.a, p.b) for p in kept if p.strong}
    spreads = {(p.a, p.b): (spread, spread) if (p.a, p.b) == LINKS[1] else (0.1, 0.1) for p in kept}
    placed, prior = place_weak_tiles(TILES, positions, model, kept, anchoring, spreads)
    return truth, positions, placed, prior


def test_a_broad_link_gives_way_to_a_sharp_one():
    truth, before, after, prior = _solve(link_error=2.0, spread=2.5)
    error_before, error_after = _errors(before, truth), _errors(after, truth)
    # the plain solve splits the loop's 2 px miss between the two links
    assert error_before[WEAK] > 0.9, error_before[WEAK]
    # honest variances 0.3**2 + 0.1**2 against 0.3**2 + 2.5**2: the sharp link places the tile
    assert error_after[WEAK] < 0.15, error_after[WEAK]
    assert set(prior.shifts) == {WEAK}
    assert np.allclose(prior.shifts[WEAK], after[WEAK] - before[WEAK])
    # the stage prior's error is the trusted tiles' scatter (+-3 px uniform: ~1.7 px rms)
    assert all(1.0 < s < 2.5 for s in prior.sigma_px), prior.sigma_px
    # the trusted tiles keep their place (their pairs are precise; the broad link no longer
    # pulls (2, 2) and (1, 3), measured 0.07 px) and no tile ends farther from the truth
    for tile in TILES:
        if tile != WEAK:
            assert np.allclose(after[tile], before[tile], atol=0.1), tile
        assert error_after[tile] <= error_before[tile] + 0.01, tile


def test_sharp_links_keep_their_placement():
    truth, before, after, prior = _solve(link_error=0.0, spread=0.1)
    assert _errors(after, truth)[WEAK] < 0.05
    assert np.allclose(after[WEAK], before[WEAK], atol=0.05)


def test_too_few_trusted_tiles_change_nothing():
    truth = _truth()
    tiles = [(0, 0), (0, 1), (1, 0), (1, 1)]
    pairs = [PairOffset((0, 0), (0, 1), tuple(truth[(0, 1)] - truth[(0, 0)]), 100.0),
             PairOffset((0, 0), (1, 0), tuple(truth[(1, 0)] - truth[(0, 0)]), 100.0),
             PairOffset((0, 1), (1, 1), tuple(truth[(1, 1)] - truth[(0, 1)] + 2), 10.0, strong=False),
             PairOffset((1, 0), (1, 1), tuple(truth[(1, 1)] - truth[(1, 0)] + 2), 10.0, strong=False)]
    positions, model, kept = solve_positions(tiles, pairs, STEP)
    placed, prior = place_weak_tiles(tiles, positions, model, kept, {(p.a, p.b) for p in pairs[:2]},
                                     {(p.a, p.b): (2.0, 2.0) for p in pairs})
    assert not prior.shifts and np.all(np.isnan(prior.sigma_px))
    assert all(np.array_equal(placed[t], positions[t]) for t in tiles)


def test_share_in_the_transform_json():
    transform = TileTransform(
        tile_shape=(128, 128), tile_step_px=STEP, positions={(0, 0): (0.0, 0.0), (0, 1): (0.0, 100.0)},
        stage_model=StageModel.nominal(STEP),
        tiles={(0, 0): TileRecord("pairs", 1, 0.2), (0, 1): TileRecord("pairs", 1, 0.9, reweighted_shift_px=(0.4, -0.3))},
        stage_prior_sigma_px=(1.7, 1.6))
    data = transform_to_dict(transform)
    assert data["n_reweighted_tiles"] == 1
    assert data["stage_prior_sigma_px"] == {"y": 1.7, "x": 1.6}
    back = transform_from_dict(data)
    assert back.tiles[(0, 1)].reweighted_shift_px == (0.4, -0.3)
    assert back.tiles[(0, 0)].reweighted_shift_px is None
    assert back.stage_prior_sigma_px == (1.7, 1.6)
    # transforms written before the field existed read as no prior
    del data["stage_prior_sigma_px"]
    assert np.all(np.isnan(transform_from_dict(data).stage_prior_sigma_px))
