"""Honest per-tile standard errors (linumpy.stitching.uncertainty), checked against the truth.

The variance model (the pairs' ``sigma_px`` and peak spread in quadrature,
through the solve) was chosen on seeds 45-47 of the stitching matrix
(session stitch27); the ground-truth test below uses seeds 3 and 4 on
smaller grids.
"""

from __future__ import annotations

import numpy as np
import pytest

from linumpy.simulate.stitch_matrix import aligned_errors, get_condition, simulate_mosaic
from linumpy.stitching.estimate import estimate_transform
from linumpy.stitching.link_conflicts import honest_variance
from linumpy.stitching.uncertainty import tile_sigmas

#: A per-axis standard error that is honest puts a normal 2D error within twice
#: itself 86 % of the time; allowed: at least this fraction over the drawn tiles.
MIN_COVERAGE = 0.75


def test_a_chain_of_links_accumulates_error_and_stage_tiles_get_the_scatter():
    tiles = [(0, c) for c in range(4)] + [(1, 0)]
    unit = np.ones(2)
    chain = [((0, 0), (0, 1), unit), ((0, 1), (0, 2), unit), ((0, 2), (0, 3), unit)]
    scatter = np.array([2.0, 1.0])
    sigmas = tile_sigmas(tiles, chain, scatter)
    # Laplacian of a 4-tile path, unit variances: the ends 0.875 from the group mean, the middle 0.375.
    frame = 4.0 * 1 / 25  # (N - n) / N**2 of the stage variance (larger axis)
    assert sigmas[(0, 0)] == pytest.approx(np.sqrt(0.875 + frame))
    assert sigmas[(0, 1)] == pytest.approx(np.sqrt(0.375 + frame))
    assert sigmas[(1, 0)] == pytest.approx(2.0)  # stage-placed: the stage scatter


def test_a_broad_peak_counts_in_the_honest_variance():
    assert honest_variance((0.3, 0.4), (1.0, float("nan"))) == pytest.approx([1.09, 0.16])


@pytest.mark.parametrize(("name", "seed"), [("overlap 10%", 4), ("6x6", 3), ("speckle per tile", 4)])
def test_tile_sigma_covers_the_true_error(name, seed):
    condition = get_condition(name, grid=(4, 4))
    mosaic = simulate_mosaic(condition, seed)
    transform = estimate_transform(mosaic.projections(), condition.tile_step_px)
    textured = [t for t in mosaic.truth if t not in mosaic.empty_tiles]
    errors = aligned_errors({t: transform.position(t) for t in mosaic.truth}, mosaic.truth, textured)
    covered = [errors[t] <= 2 * transform.tiles[t].sigma_px for t in mosaic.truth]
    assert np.mean(covered) >= MIN_COVERAGE, {t: (round(errors[t], 2), round(transform.tiles[t].sigma_px, 2))
                                              for t in mosaic.truth}
    for t, record in transform.tiles.items():
        assert np.isfinite(record.sigma_px) and record.sigma_px > 0
        assert not (record.weak and record.source == "stage")
