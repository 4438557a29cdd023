"""Stage model fitted to pair offsets: random stage errors of few pairs never move tiles without pairs."""

from __future__ import annotations

import numpy as np

from linumpy.simulate.stitch_matrix import aligned_errors, excess_over_stage, get_condition, simulate_mosaic
from linumpy.stitching.global_solve import PairOffset, StageModel, model_significance, solve_positions

STEP = (102.0, 102.0)
TILES = [(r, c) for r in range(4) for c in range(4)]
#: The tiles placed by pairs in the stitching matrix, depth change seed 2 (its other 6 tiles stay on the stage).
PLACED = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (3, 0), (3, 1)]


def _exact_pairs(truth: dict, placed: list) -> list[PairOffset]:
    """Every neighbour pair of ``placed`` tiles, measured without error."""
    return [PairOffset(a, b, tuple(truth[b] - truth[a]), 1.0)
            for a in placed for b in ((a[0] + 1, a[1]), (a[0], a[1] + 1)) if b in placed]


STAGE = {t: np.multiply(t, STEP) for t in TILES}


def _unsupported_excess(truth: dict, placed: list) -> tuple[dict, StageModel, float]:
    """Solved positions, fitted model and the largest excess over the stage (px) of the tiles without pairs."""
    positions, model, _ = solve_positions(TILES, _exact_pairs(truth, placed), STEP, warn_steps=False)
    excess = excess_over_stage(positions, STAGE, truth, TILES)
    return positions, model, max(excess[t] for t in TILES if t not in placed)


def test_significance_grows_as_pairs_get_few():
    assert model_significance(6) > 6.5 > model_significance(12) > 4.0 > model_significance(200) > 3.0


def test_significance_is_the_student_t_critical_value():
    """scipy.special's inverse Student-t CDF (no scipy.stats import) gives scipy.stats.t.ppf's value exactly."""
    from scipy import stats

    for n_pairs in range(2, 400):
        assert model_significance(n_pairs) == stats.t.ppf(1 - 1e-3 / 2, n_pairs - 1)


def test_random_stage_errors_of_few_pairs_keep_the_nominal_steps():
    """Stage errors uniform in +-4 px, no rotation, the 13 pairs of the matrix case: with a fixed
    3 standard errors, 32 of 1000 draws fitted a step that moved the 6 tiles without pairs up to
    6.8 px farther from the truth than the stage; 200 draws here, none may move them at all."""
    nominal = StageModel.nominal(STEP)
    for seed in range(200):
        rng = np.random.default_rng(seed)
        truth = {t: np.multiply(t, STEP) + rng.uniform(-4, 4, 2) for t in TILES}
        _, model, excess = _unsupported_excess(truth, PLACED)
        assert (model.row_step, model.col_step) == (nominal.row_step, nominal.col_step), seed
        assert excess <= 1e-6, (seed, excess)


def test_matrix_depth_change_seed_2_tiles_without_pairs_stay_within_the_stage_error():
    """The true positions of that case (rotation 0.2 degree, step error 0.4 %, stage +-4 px), its
    pairs measured exactly: the column step's y component was fitted at -1.84 px (true 0.36 px)
    and tile (1, 3) ended 4.5 px farther from the truth than the stage put it."""
    mosaic = simulate_mosaic(get_condition("tissue changing with depth"), 2)
    truth = {t: p - mosaic.truth[(0, 0)] for t, p in mosaic.truth.items()}
    _, _, excess = _unsupported_excess(truth, PLACED)
    assert excess <= 0.3, excess


def test_genuine_rotation_and_step_error_are_still_fitted():
    """Grid rotated 3 degrees with a 2 % step error, stage +-4 px, column 3 without pairs: the
    tiles without pairs are never farther from the truth than the stage (0.3 px), and on average
    over 10 draws much nearer (stage ~15 px, fitted ~7 px)."""
    angle = np.deg2rad(3.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    placed = [t for t in TILES if t[1] < 3]
    ours, theirs = [], []
    for seed in range(10):
        rng = np.random.default_rng(seed)
        truth = {t: rotation @ (np.multiply(t, STEP) * 1.02) + rng.uniform(-4, 4, 2) for t in TILES}
        positions, _, excess = _unsupported_excess(truth, placed)
        assert excess <= 0.3, (seed, excess)
        errors = aligned_errors(positions, truth, TILES)
        stage_errors = aligned_errors(STAGE, truth, TILES, frame=positions)
        ours += [errors[t] for t in TILES if t not in placed]
        theirs += [stage_errors[t] for t in TILES if t not in placed]
    assert np.mean(ours) <= 0.6 * np.mean(theirs), (np.mean(ours), np.mean(theirs))
