"""A confident pair's peak checked on depth ranges of its overlap strips (linumpy.stitching.depth_check)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage

from linumpy.stitching.depth_check import (DEPTH_AGREEMENT_PX, DepthCheck, depth_checks, refused_in_depth,
                                           search_strips, tissue_ranges)
from linumpy.stitching.pairwise import register_pair
from linumpy.stitching import estimate
from linumpy.stitching.transform import DEPTH_PEAK_REFUSED, transform_from_dict, transform_to_dict

TILE, STEP, DEPTH, CUT = 64, 54, 60, 12


def _pair_volume(seed: int) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Two ``(z, y, x)`` tiles of one sample, ``b`` right of ``a`` at a true offset off the stage's by (3, -4) px:
    gel above the cut, below it a texture that changes through depth, speckle drawn anew per plane and tile."""
    rng = np.random.default_rng(seed)
    true = (3, STEP - 4)
    world = ndimage.gaussian_filter(rng.standard_normal((DEPTH, TILE + 10, TILE + true[1] + 10)), (6, 2, 2))
    world = np.exp(0.8 * world / world.std())
    world[:CUT] = 0.02

    def tile(y0: int, x0: int) -> np.ndarray:
        return (world[:, y0:y0 + TILE, x0:x0 + TILE] * rng.exponential(1.0, (DEPTH, TILE, TILE))
                * np.sqrt(2)).astype(np.float32)

    return tile(5, 5), tile(5 + true[0], 5 + true[1]), true


def _disagreements(registrations, read, flat, tile_step_px, max_shift_px):
    """Each checked pair's largest distance over the depth ranges (pixels)."""
    return {pair: check.disagreement
            for pair, check in depth_checks(registrations, read, flat, tile_step_px, max_shift_px).items()}


def _registration(a: np.ndarray, b: np.ndarray, significance: float, offset=None):
    """The pair registered on its projections, its significance (and offset) set as a case needs."""
    found = register_pair(a.mean(0), b.mean(0), (0, STEP), 12)
    return replace(found, significance=significance, offset=found.offset if offset is None else offset)


def _reader(a: np.ndarray, b: np.ndarray):
    tiles = {(0, 0): a, (0, 1): b}
    return lambda tile, part: tiles[tile][(slice(None), *part)]


def test_search_strips_cover_every_overlap_of_the_window():
    part_a, part_b = search_strips((TILE, TILE), (0, STEP), 12)
    assert part_a == (slice(0, TILE), slice(STEP - 12, TILE)) and part_b == (slice(0, TILE), slice(0, TILE - STEP + 12))


def test_tissue_ranges_start_at_the_cut_and_are_disjoint():
    profile = np.r_[np.full(CUT, 0.02), np.linspace(1.0, 0.3, DEPTH - CUT)]
    ranges = tissue_ranges(profile, 3)
    assert ranges[0].start == CUT and ranges[-1].stop == DEPTH
    assert all(r.stop == s.start for r, s in zip(ranges, ranges[1:]))


@pytest.mark.parametrize(("seed", "significance"), [(0, 2.5), (1, 1.0)])
def test_a_right_pair_agrees_in_depth_and_a_wrong_one_does_not(seed, significance):
    a, b, true = _pair_volume(seed)
    right = _registration(a, b, significance)
    assert np.hypot(*np.subtract(right.offset, true)) < 1.0
    wrong = _registration(a, b, significance, (true[0] - 5.0, true[1] + 4.0))
    flat = np.ones((TILE, TILE))
    checked = _disagreements({((0, 0), (0, 1)): right}, _reader(a, b), flat, (STEP, STEP), 12)
    assert checked[((0, 0), (0, 1))] <= DEPTH_AGREEMENT_PX
    assert refused_in_depth(right, checked[((0, 0), (0, 1))]) is right
    checked = _disagreements({((0, 0), (0, 1)): wrong}, _reader(a, b), flat, (STEP, STEP), 12)
    assert checked[((0, 0), (0, 1))] > DEPTH_AGREEMENT_PX
    assert refused_in_depth(wrong, checked[((0, 0), (0, 1))]).significance == 0


def test_strong_not_candidate_and_thin_pairs_are_not_checked():
    a, b, _ = _pair_volume(2)
    flat = np.ones((TILE, TILE))
    for significance in (0.4, 3.5):
        assert _disagreements({((0, 0), (0, 1)): _registration(a, b, significance)}, _reader(a, b), flat,
                                (STEP, STEP), 12) == {}
    thin = _disagreements({((0, 0), (0, 1)): _registration(a, b, 2.5)}, _reader(a[-12:], b[-12:]), flat,
                            (STEP, STEP), 12)
    assert np.isnan(thin[((0, 0), (0, 1))])
    assert refused_in_depth(_registration(a, b, 2.5), thin[((0, 0), (0, 1))]).significance == 2.5


@pytest.mark.parametrize("unrelated", [False, True])
def test_the_estimate_refuses_a_pair_its_depth_ranges_do_not_repeat(monkeypatch, unrelated):
    a, b, true = _pair_volume(0)
    projections = {(0, 0): a.mean(0), (0, 1): b.mean(0)}
    register = estimate.register_neighbours

    def confident(*args, **kwargs):  # the pair made a candidate, not strong: the band the check reads
        flattened, registrations = register(*args, **kwargs)
        return flattened, {pair: replace(r, significance=2.5) for pair, r in registrations.items()}

    monkeypatch.setattr(estimate, "register_neighbours", confident)
    # the strips of another sample where the grid's would be: no range finds the pair's peak
    other, _, _ = _pair_volume(5)
    reader = _reader(a, other if unrelated else b)
    transform = estimate.estimate_transform(projections, (STEP, STEP), 12, depth_reader=reader)
    record = transform.pairs[0]
    assert (record.depth_disagreement_px > DEPTH_AGREEMENT_PX) == unrelated
    assert (record.status == DEPTH_PEAK_REFUSED) == unrelated
    assert not (record.accepted and unrelated)
    loaded = transform_from_dict(transform_to_dict(transform))
    assert loaded.pairs[0].depth_disagreement_px == pytest.approx(record.depth_disagreement_px, abs=1e-3)
    assert loaded.pairs[0].status == record.status


def test_a_range_without_a_peak_survives_the_json_as_refused_not_unchecked():
    """A pair whose depth range found no peak (disagreement inf) reads back refused, one never checked (NaN) as
    unchecked: JSON has neither, so inf is written ``"inf"`` and NaN null."""
    a, b, _ = _pair_volume(0)
    transform = estimate.estimate_transform({(0, 0): a.mean(0), (0, 1): b.mean(0)}, (STEP, STEP), 12)
    for value in (float("inf"), float("nan"), 3.25):
        marked = replace(transform, pairs=(replace(transform.pairs[0], depth_disagreement_px=value),))
        written = json.loads(json.dumps(transform_to_dict(marked)))
        read = transform_from_dict(written).pairs[0].depth_disagreement_px
        assert read == value or (np.isnan(read) and np.isnan(value))


#: Five tiles of one sample (a 2 x 2 block and (0, 2) right of it), true positions off the stage's 54 px steps.
BLOCK = {(0, 0): (0, 0), (0, 1): (2, 52), (0, 2): (0, 106), (1, 0): (53, -2), (1, 1): (57, 49)}


def _block(seed: int, drawn_off: tuple[int, int]) -> tuple[dict, dict]:
    """The block's ``(z, y, x)`` tiles (texture changing through depth, speckle per plane and tile) and their
    projections, (0, 2)'s drawn ``drawn_off`` px from its volume: its one link's projection peak lies there."""
    rng = np.random.default_rng(seed)
    world = ndimage.gaussian_filter(rng.standard_normal((DEPTH, 2 * TILE + 20, 3 * TILE + 20)), (6, 2, 2))
    world = np.exp(0.8 * world / world.std())
    world[:CUT] = 0.02

    def tile(y0: int, x0: int) -> np.ndarray:
        return (world[:, y0:y0 + TILE, x0:x0 + TILE] * rng.exponential(1.0, (DEPTH, TILE, TILE))).astype(np.float32)

    volumes = {t: tile(10 + y, 10 + x) for t, (y, x) in BLOCK.items()}
    projections = {t: v.mean(0) for t, v in volumes.items()}
    projections[(0, 2)] = tile(10 + BLOCK[(0, 2)][0] + drawn_off[0], 10 + BLOCK[(0, 2)][1] + drawn_off[1]).mean(0)
    return volumes, projections


def block_with_a_confident_link(monkeypatch, drawn_off: tuple[int, int]):
    """The block's estimate (:func:`_block`), checked in depth, with (0, 1)-(0, 2) made a confident candidate
    (significance 2.5)."""
    volumes, projections = _block(0, drawn_off)
    register = estimate.register_neighbours

    def confident(*args, **kwargs):
        flattened, registrations = register(*args, **kwargs)
        return flattened, {pair: replace(r, significance=2.5) if pair == ((0, 1), (0, 2)) else r
                           for pair, r in registrations.items()}

    monkeypatch.setattr(estimate, "register_neighbours", confident)
    return estimate.estimate_transform(projections, (STEP, STEP), 12,
                                       depth_reader=lambda tile, part: volumes[tile][(slice(None), *part)])


@pytest.mark.parametrize("drawn_off", [(3, 3), (0, 0)])
def test_a_pair_refused_in_depth_is_not_kept_again_by_a_search(monkeypatch, drawn_off):
    """(0, 1)-(0, 2), made a confident candidate, is (0, 2)'s one link. Drawn off, its projection peak lies 4.2 px
    from the truth, its depth ranges on the truth: refused, and no search may keep it again at that peak (the
    joint search did, a lone link's joint peak being its own); (0, 2) stays on the stage model, nearer the truth.
    Not drawn off, its ranges agree and it places (0, 2). Its strongest range is held below strong here (that
    range's peak taken instead: tests/test_stitching_depth_range_peak.py)."""
    monkeypatch.setattr(estimate, "strong_range_peak", lambda check: None)
    transform = block_with_a_confident_link(monkeypatch, drawn_off)
    record = next(p for p in transform.pairs if (p.a, p.b) == ((0, 1), (0, 2)))
    placed = np.subtract(transform.positions[(0, 2)], transform.positions[(0, 1)])
    error = np.hypot(*(placed - np.subtract(BLOCK[(0, 2)], BLOCK[(0, 1)])))
    if drawn_off == (0, 0):
        assert record.accepted and record.depth_disagreement_px <= DEPTH_AGREEMENT_PX and error < 1.0
        assert not any(r.depth_refused_on_stage for r in transform.tiles.values())
        return
    assert np.hypot(*np.subtract(record.offset, np.add(np.subtract(BLOCK[(0, 2)], BLOCK[(0, 1)]), drawn_off))) < 1.0
    assert record.depth_disagreement_px > DEPTH_AGREEMENT_PX
    assert not record.accepted and record.status == DEPTH_PEAK_REFUSED
    assert transform.tiles[(0, 2)].source == "stage" and transform.tiles[(0, 2)].depth_refused_on_stage
    assert transform_from_dict(transform_to_dict(transform)).tiles[(0, 2)].depth_refused_on_stage
    assert not any(transform.tiles[t].depth_refused_on_stage for t in BLOCK if t != (0, 2))
    assert error < 2.0 < np.hypot(*drawn_off)



def test_a_pair_refused_in_depth_by_a_margin_is_kept_only_on_a_loop(monkeypatch):
    """Two right pairs made confident candidates whose depth ranges read 2.5 px away (refused by a margin,
    :func:`~linumpy.stitching.depth_check.refused_by_a_margin`): (0, 1)-(1, 1) closes the block's loop and is kept,
    its record its own; (0, 1)-(0, 2), (0, 2)'s one link, on no loop, stays refused and (0, 2) on the stage model.
    Refused outright (main before session worse10b) the first was not kept either."""
    volumes, projections = _block(0, (0, 0))
    register, check = estimate.register_neighbours, estimate.depth_checks
    margined = {((0, 1), (1, 1)), ((0, 1), (0, 2))}

    def confident(*args, **kwargs):
        flattened, registrations = register(*args, **kwargs)
        return flattened, {pair: replace(r, significance=2.5) if pair in margined else r
                           for pair, r in registrations.items()}

    def by_a_margin(registrations, *args, **kwargs):
        return {**check(registrations, *args, **kwargs), **{pair: DepthCheck(2.5, False) for pair in margined}}

    monkeypatch.setattr(estimate, "register_neighbours", confident)
    monkeypatch.setattr(estimate, "depth_checks", by_a_margin)
    transform = estimate.estimate_transform(projections, (STEP, STEP), 12,
                                            depth_reader=lambda tile, part: volumes[tile][(slice(None), *part)])
    records = {(p.a, p.b): p for p in transform.pairs}
    on_loop, lone = records[((0, 1), (1, 1))], records[((0, 1), (0, 2))]
    assert on_loop.accepted and on_loop.status == "kept" and on_loop.significance == 2.5
    assert on_loop.depth_disagreement_px == 2.5 and on_loop.spread_px[0] is not None
    truth = np.subtract(BLOCK[(1, 1)], BLOCK[(0, 1)])
    assert np.hypot(*(np.subtract(transform.positions[(1, 1)], transform.positions[(0, 1)]) - truth)) < 1.0
    assert not lone.accepted and lone.status == DEPTH_PEAK_REFUSED
    assert transform.tiles[(0, 2)].source == "stage" and transform.tiles[(0, 2)].depth_refused_on_stage
    assert not any(transform.tiles[t].depth_refused_on_stage for t in BLOCK if t != (0, 2))


@pytest.mark.parametrize("seed", [0, 1])
def test_a_joint_link_never_checked_in_depth_is_checked_at_its_joint_peak(seed):
    """A pair that was no candidate (not checked in depth) still feeds the joint search with its maps, which can
    hang a tile on it alone (foreign odd2 287 slice 3: a gel tile 7 px off on such a link, significance 2.3 at its
    joint peak; 262 slice 4 likewise). Checked at the joint peak: a peak 4 px off the truth is refused and its maps
    dropped; the right one is kept, its disagreement recorded."""
    a, b, _ = _pair_volume(seed)
    right = _registration(a, b, 2.5)
    wrong = replace(right, offset=(right.offset[0] + 4.0, right.offset[1]))
    pair = ((0, 0), (0, 1))
    for registration, refused in ((right, False), (wrong, True)):
        in_depth: dict = {}
        joint, registrations, out = estimate._joint_links_in_depth(
            {pair: registration}, {pair: replace(registration, significance=0.3)}, in_depth, _reader(a, b),
            np.ones((TILE, TILE)),
            (STEP, STEP), 12)
        assert (pair in out) == refused and (pair in joint) != refused
        assert (in_depth[pair] > DEPTH_AGREEMENT_PX) == refused
        assert (registrations[pair].scores == ()) == refused
    candidate = {pair: wrong}, {pair: wrong}, {}, _reader(a, b), np.ones((TILE, TILE)), (STEP, STEP), 12
    assert estimate._joint_links_in_depth(*candidate)[2] == set()  # a candidate was checked (or not) as such
