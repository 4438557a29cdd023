"""A significant pair whose sub-pixel fit leaves its box is fitted again from the best match on its short ridge
(session ridge63, issue #10; ``pairwise.best_match_on_ridge``, ``pairwise.refit_on_ridge``)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from linumpy.stitching.pairwise import (
    EvidenceMap,
    _fit_subpixel,
    best_match_on_ridge,
    edge_ridge,
    evidence,
    local_maxima,
    refine_subpixel,
    refit_on_ridge,
)

TILE_PX = 96
#: A vertical pair (12 % overlap, as foreign harsh A).
NOMINAL = (84, 0)
RADIUS = 8
#: The truth's whole pixel: a 9 px overlap.
TRUE_OFFSET = (87, 2)
SPECKLE_PX = 0.7


def _offsets() -> tuple[np.ndarray, np.ndarray]:
    """The ``(y, x)`` offsets of the searched window."""
    yy, xx = np.indices((2 * RADIUS + 1, 2 * RADIUS + 1))
    return yy - RADIUS + NOMINAL[0], xx - RADIUS + NOMINAL[1]


def _ridge_map(direction: np.ndarray, half_length: float) -> EvidenceMap:
    """Match quality (NCC) highest at the truth, falling off slowly along ``direction`` within ``half_length``
    and fast across it; the evidence grows with the overlap's area as :func:`evidence` has it."""
    dy, dx = _offsets()
    rel = np.stack([dy - TRUE_OFFSET[0], dx - TRUE_OFFSET[1]], axis=-1)
    along = rel @ direction
    across = np.linalg.norm(rel - along[..., None] * direction, axis=-1)
    quality = 0.6 - 0.004 * along**2 - 0.3 * np.clip(np.abs(along) - half_length, 0, None) - 0.25 * across**2
    area = np.clip(TILE_PX - dy, 0, None) * np.clip(TILE_PX - np.abs(dx), 0, None).astype(float)
    ncc = np.clip(quality, -0.99, 0.99)
    return EvidenceMap(SPECKLE_PX, NOMINAL, evidence(ncc, area, SPECKLE_PX), np.arctanh(ncc))


def _index(offset: tuple[int, int]) -> tuple[int, int]:
    return tuple(int(o - n + RADIUS) for o, n in zip(offset, NOMINAL))


def _offset(index: tuple[int, int]) -> tuple[int, int]:
    return tuple(int(i + n - RADIUS) for i, n in zip(index, NOMINAL))


#: A short ridge along the overlap's depth (y) and x: striations crossing it obliquely.
SHORT = _ridge_map(np.array([1.0, -1.0]) / np.sqrt(2.0), half_length=2.0)


def test_the_evidence_peak_of_a_short_ridge_slides_to_the_larger_overlap_and_the_best_match_does_not():
    peak = local_maxima(SHORT.values)[0]
    # premise: the evidence's sqrt(area) puts its peak off the truth, toward the larger overlap (smaller y)
    assert _offset(peak)[0] < TRUE_OFFSET[0]
    assert edge_ridge((SHORT,), _offset(peak)) is None
    assert _offset(best_match_on_ridge(SHORT, peak)) == TRUE_OFFSET


def test_an_edge_ridge_keeps_its_peak():
    edge = _ridge_map(np.array([0.0, 1.0]), half_length=6.0)
    peak = local_maxima(edge.values)[0]
    assert edge_ridge((edge,), _offset(peak)) is not None
    assert best_match_on_ridge(edge, peak) == peak


def _tiles(true_offset: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Two tiles of one textured field, ``b`` at ``true_offset`` from ``a``."""
    rng = np.random.default_rng(3)
    world = ndimage.gaussian_filter(rng.standard_normal((260, 160)), 1.5)
    world = np.exp(world / world.std() * 0.3)
    origin = np.array([20.0, 20.0])
    yy, xx = np.indices((TILE_PX, TILE_PX)).astype(float)

    def tile(at: np.ndarray) -> np.ndarray:
        return ndimage.map_coordinates(world, [yy + at[0], xx + at[1]], order=3)

    return tile(origin), tile(origin + np.asarray(true_offset))


def test_the_fit_restarts_from_the_best_match_when_it_leaves_its_box():
    truth = (TRUE_OFFSET[0] + 0.3, TRUE_OFFSET[1] - 0.2)
    tile_a, tile_b = _tiles(truth)
    peak = local_maxima(SHORT.values)[0]
    whole = _offset(peak)
    # premise: from the evidence peak, more than 1.5 px away, the fit leaves its box (the whole pixel back)
    assert np.hypot(*np.subtract(whole, truth)) > 1.5
    assert refine_subpixel(tile_a, tile_b, whole)[0] == tuple(float(v) for v in whole)
    assert _fit_subpixel(tile_a, tile_b, whole)[2]
    member, refined, sigma = refit_on_ridge(SHORT, peak, tile_a, tile_b)
    assert _offset(member) == TRUE_OFFSET
    assert np.hypot(*np.subtract(refined, truth)) < 0.1
    assert max(sigma) < 0.2


def test_no_refit_off_a_ridge():
    dy, dx = _offsets()
    quality = 0.6 - 0.25 * ((dy - TRUE_OFFSET[0]) ** 2 + (dx - TRUE_OFFSET[1]) ** 2)
    area = np.clip(TILE_PX - dy, 0, None) * np.clip(TILE_PX - np.abs(dx), 0, None).astype(float)
    ncc = np.clip(quality, -0.99, 0.99)
    round_map = EvidenceMap(SPECKLE_PX, NOMINAL, evidence(ncc, area, SPECKLE_PX), np.arctanh(ncc))
    tile_a, tile_b = _tiles(TRUE_OFFSET)
    assert refit_on_ridge(round_map, _index(TRUE_OFFSET), tile_a, tile_b) is None
