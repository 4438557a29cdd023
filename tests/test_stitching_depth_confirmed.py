"""A pair whose most significant depth range is confident and repeats its offset is not refused in depth
(linumpy.stitching.depth_check.judged_disagreement)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from linumpy.stitching import estimate
from linumpy.stitching.depth_check import (DEPTH_AGREEMENT_PX, DepthCheck, depth_check, judged_disagreement,
                                           search_strips, tissue_ranges)
from linumpy.stitching.transform import DEPTH_PEAK_REFUSED
from test_stitching_depth_check import BLOCK, STEP, TILE, _block, _pair_volume, _registration


def _check(a: np.ndarray, b: np.ndarray, offset: tuple[float, float]) -> DepthCheck:
    part_a, part_b = search_strips((TILE, TILE), (0, STEP), 12)
    shift = np.array([part_b[i].start - part_a[i].start for i in range(2)])
    flat = np.ones((TILE, TILE))
    return depth_check(a[(slice(None), *part_a)], b[(slice(None), *part_b)], flat[part_a], flat[part_b],
                       tuple(np.add(offset, shift)), tuple(np.add((0, STEP), shift)), 12)


def _pair_with_a_foreign_range(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, DepthCheck]:
    """A pair whose ``b`` has its deepest tissue range replaced by another sample's planes, the truth and the
    depth check of the pair's own (right, within 1 px) registration."""
    a, b, true = _pair_volume(seed)
    other, _, _ = _pair_volume(seed + 10)
    deepest = tissue_ranges(np.r_[a, b].reshape(2, *a.shape).mean(axis=(0, 2, 3)))[-1]
    b = b.copy()
    b[deepest] = other[deepest]
    right = _registration(a, b, 2.5)
    assert np.hypot(*np.subtract(right.offset, true)) < 1.0
    return a, b, true, _check(a, b, right.offset)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_right_pair_with_one_range_of_speckle_only_is_confirmed_and_a_wrong_one_is_not(seed):
    """``b``'s deepest range replaced by another sample's planes: that range holds nothing of the pair and peaks
    elsewhere (the pair's largest disagreement beyond the bar), while the others repeat the true offset
    confidently: the right pair is judged in agreement; the same strips judge an offset 6.4 px off the truth
    refused."""
    a, b, true, confirmed = _pair_with_a_foreign_range(seed)
    assert confirmed.disagreement > DEPTH_AGREEMENT_PX and confirmed.confirmed
    assert judged_disagreement(confirmed) <= DEPTH_AGREEMENT_PX
    wrong = _check(a, b, (true[0] - 5.0, true[1] + 4.0))
    assert not wrong.confirmed and judged_disagreement(wrong) > DEPTH_AGREEMENT_PX


@pytest.mark.parametrize("confirmed", [True, False])
def test_a_confirmed_pair_is_not_refused_and_places_its_tile(monkeypatch, confirmed):
    """(0, 1)-(0, 2), (0, 2)'s one link, right, made a confident candidate whose ranges' largest disagreement is
    9 px. Confirmed by its most significant range, it places (0, 2) within 1 px of the truth, its record keeping
    the 9 px; not confirmed (every pair before session depth10b), it is refused and (0, 2) left on the stage."""
    volumes, projections = _block(0, (0, 0))
    register, check = estimate.register_neighbours, estimate.depth_checks
    pair = ((0, 1), (0, 2))

    def candidate(*args, **kwargs):
        flattened, registrations = register(*args, **kwargs)
        return flattened, {p: replace(r, significance=2.5) if p == pair else r for p, r in registrations.items()}

    def far_range(registrations, *args, **kwargs):
        return {**check(registrations, *args, **kwargs), pair: DepthCheck(9.0, confirmed)}

    monkeypatch.setattr(estimate, "register_neighbours", candidate)
    monkeypatch.setattr(estimate, "depth_checks", far_range)
    transform = estimate.estimate_transform(projections, (STEP, STEP), 12,
                                            depth_reader=lambda tile, part: volumes[tile][(slice(None), *part)])
    record = next(p for p in transform.pairs if (p.a, p.b) == pair)
    assert record.depth_disagreement_px == 9.0
    placed = np.subtract(transform.positions[(0, 2)], transform.positions[(0, 1)])
    error = np.hypot(*(placed - np.subtract(BLOCK[(0, 2)], BLOCK[(0, 1)])))
    if confirmed:
        assert record.accepted and error < 1.0
        assert not transform.tiles[(0, 2)].depth_refused_on_stage
    else:
        assert not record.accepted and record.status == DEPTH_PEAK_REFUSED
        assert transform.tiles[(0, 2)].source == "stage" and transform.tiles[(0, 2)].depth_refused_on_stage
