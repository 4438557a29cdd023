"""On a ridge of match quality a pair's offset is the member that matches best on the overlap it shares
with the evidence peak, not the peak at the larger overlap (session fstitch54, issue #10)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from linumpy.stitching.pairwise import (
    RIDGE_MOVE_MARGIN,
    _common_gain,
    evidence,
    match_on_common_overlap,
    register_pair,
)

TILE_PX = 96
NOMINAL = (0, 84)


def _diagonal_texture_pair(seed: int, true_offset: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Two tiles of a texture elongated along the (1, 1) diagonal (striations, an oblique fibre bundle,
    Gaussian 1.2 x 15 px), tile ``b`` at ``true_offset`` from tile ``a`` (no speckle)."""
    rng = np.random.default_rng(seed)
    size = 2 * TILE_PX + 60
    rotated = ndimage.rotate(rng.standard_normal((size, size)), 45, reshape=False, order=1)
    world = ndimage.rotate(ndimage.gaussian_filter(rotated, (1.2, 15.0)), -45, reshape=False, order=1)[30:, 30:]
    world = np.exp(0.8 * world / world.std())
    dy, dx = true_offset
    return world[:TILE_PX, :TILE_PX], world[dy:dy + TILE_PX, dx:dx + TILE_PX]


@pytest.mark.parametrize("seed", [0, 1, 4])
def test_the_match_on_common_overlaps_walks_back_from_the_larger_overlap(seed):
    """Started 3 px along the ridge toward the larger overlap, where the evidence is higher than at the
    truth (its ``sqrt(area)`` term), the walk on common overlaps ends on the truth."""
    true = (3, 91)  # a 5 px overlap on a nominal 12 px one (harsh stage errors)
    a, b = _diagonal_texture_pair(seed, true)
    fine = next(m for m in register_pair(a, b, NOMINAL, 10).scores if m.speckle_px == 0.7)
    truth = (true[0] - NOMINAL[0] + fine.radius, true[1] - NOMINAL[1] + fine.radius)
    slid = (truth[0] - 3, truth[1] - 3)
    assert fine.values[slid] > fine.values[truth] + 3  # measured 4.1-4.6 standard errors
    assert match_on_common_overlap(fine, slid, a, b) == truth


def test_diagonal_texture_on_a_narrow_overlap_does_not_drift_to_the_larger_overlap():
    """Fresh harsh foreign seed 145 (slices 2-3): pairs through the centre tile, on edges and striations
    running along the same diagonal, were 2.6-12 px off, all toward the larger overlap, and the loops
    could not see it (tiles up to 4.6 px off). The same drift on this texture without speckle, 10 seeds:
    3.14 px mean off on a 5 px true overlap and 1.07 px on an 8 px one before; measured 0.62 and 0.09."""
    for true, bound in (((3, 91), 1.0), ((2, 88), 0.3)):
        errors = [np.linalg.norm(np.subtract(register_pair(*_diagonal_texture_pair(seed, true), NOMINAL, 10).offset,
                                             true)) for seed in range(10)]
        assert np.mean(errors) <= bound, (true, errors)


def test_the_evidence_prefers_the_larger_overlap_along_a_ridge():
    """The premise: equal match quality, the larger overlap has the larger evidence."""
    ncc = np.full((1, 2), 0.5)
    assert np.diff(evidence(ncc, np.array([[300.0, 900.0]]), 0.7)[0])[0] > 0


def test_the_walk_does_not_jump_to_a_far_member_that_wins_only_on_its_own_narrow_overlap():
    """Fresh harsh foreign seed 146 (slice 0, (0, 0)-(1, 0)): compared on the narrow end's 7 px overlap
    only, the ridge's far member beat the truth's offset by 1.24 standard errors and the peak by 2.07, and
    a walk that jumped to the best of all members ended 1.9 px past the truth. Here a faint copy of tile
    a's content (half the intensity) in the band only a member 3 px farther along the ridge covers makes
    that member beat the truth by 3.7-7.2 standard errors there; the truth's neighbours lose to it. Started
    on the truth (speckle drawn per tile), the walk stays on it for 7 of 12 seeds (2 when it jumped)."""
    true, far = (2, 88), (5, 91)
    stays = 0
    for seed in range(12):
        a, b = _diagonal_texture_pair(seed, true)
        rng = np.random.default_rng(1000 + seed)
        a, b = (tile * ndimage.gaussian_filter(rng.exponential(1, tile.shape), 0.8) ** 0.5 for tile in (a, b))
        band = (slice(0, TILE_PX - far[0]), slice(0, TILE_PX - far[1]))
        b[band] = 0.5 * b[band] + 0.5 * a[far[0]:, far[1]:]
        fine = next(m for m in register_pair(a, b, NOMINAL, 10).scores if m.speckle_px == 0.7)
        truth = (true[0] - NOMINAL[0] + fine.radius, true[1] - NOMINAL[1] + fine.radius)
        assert _common_gain(a, b, true, far, 0.7) > RIDGE_MOVE_MARGIN  # the premise
        stays += match_on_common_overlap(fine, truth, a, b) == truth
    assert stays >= 6, stays
