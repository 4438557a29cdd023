"""Field curvature common to all tiles: estimated against the simulator's known map, removed, not invented."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from linumpy.io.acquisition import open_acquisition
from linumpy.io.zarr import read_omezarr
from linumpy.mosaic import curvature
from linumpy.mosaic.curvature import (
    Curvature, border_differences, estimate_curvature, estimate_slice_curvature, fit_candidate, overlap_ncc,
    quadratic_map, shift_alines,
)
from linumpy.mosaic.galvo import GalvoShift
from linumpy.mosaic.grid import write_mosaic_grid
from linumpy.simulate import get_preset, simulate_acquisition
from linumpy.simulate.conditions import condition_preset
from linumpy.simulate.imaging import field_curvature_map


@pytest.mark.parametrize("seed, condition, amplitude", [
    (100, "baseline", 0.0), (102, "tilted", 3.0), (103, "harsh", 0.0), (104, "dark", 4.0),
])
def test_curvature_within_one_voxel_and_never_invented(seed, condition, amplitude, tmp_path):
    """Seeds 100+ (tuning looked at seeds 0-2): after the decision, the curvature left over the
    tile (truth minus the applied correction, peak to peak: the depth step at tile borders) is
    <= 1 voxel; a flat slice is never corrected, a curved one is, also on steeply tilted and
    bumpy tissue and on dark tissue."""
    preset = replace(condition_preset(get_preset("tiny", 1), condition), field_curvature_px=amplitude)
    section = open_acquisition(simulate_acquisition(tmp_path / "acq", preset, seed=seed)).slice(0)
    estimate = estimate_slice_curvature(section, GalvoShift())
    truth = field_curvature_map(preset)
    residual = truth - (estimate.offset_map(truth.shape) if estimate.applied else 0.0)
    assert np.ptp(residual) <= 1.0, estimate.metrics()
    assert estimate.applied == (amplitude > 0), estimate.metrics()
    if estimate.applied:
        assert estimate.mismatch_after_px < estimate.mismatch_before_px


def _textured_tiles(offsets: np.ndarray, seed: int, empty: tuple = ()) -> dict:
    """A 3 x 3 grid of 40 x 48 x 48 tiles (step 38) of one tilted, textured slab, each A-line
    ``offsets`` deeper, each tile also up to 2 voxels deeper as a whole (stage height error);
    tiles in ``empty`` hold noise only."""
    rng = np.random.default_rng(seed)
    world = rng.random((40, 3 * 38 + 10, 3 * 38 + 10)).astype(np.float32) + 1.0
    yy, xx = np.mgrid[: world.shape[1], : world.shape[2]]
    surface = 8 + 0.04 * yy - 0.03 * xx
    world = np.where(np.arange(40)[:, None, None] >= surface[None], world, 0.0).astype(np.float32)
    tiles = {}
    for row in range(3):
        for col in range(3):
            tile = world[:, 38 * row : 38 * row + 48, 38 * col : 38 * col + 48]
            if (row, col) in empty:
                tile = np.zeros_like(tile)
            step = rng.uniform(0, 2)
            tiles[(row, col)] = shift_alines(tile, offsets + step) + 0.01 * rng.random(tile.shape, dtype=np.float32)
    return tiles


def test_estimate_on_synthetic_tiles_recovers_an_asymmetric_curvature():
    """A known asymmetric quadratic (with a cross term) under a tilted slab, tiles at random
    heights, two tiles empty: recovered within 0.5 voxel; the same slab without curvature is
    left alone."""
    truth = [1.5, 0.8, -0.6]
    estimate = estimate_curvature(_textured_tiles(quadratic_map(truth, (48, 48)), 0, empty={(0, 0), (2, 1)}), (38, 38))
    assert estimate.applied, estimate.metrics()
    assert np.ptp(estimate.offset_map((48, 48)) - quadratic_map(truth, (48, 48))) <= 0.5, estimate.metrics()
    flat = estimate_curvature(_textured_tiles(np.zeros((48, 48), np.float32), 1), (38, 38))
    assert not flat.applied and flat.status in ("flat", "no_gain"), flat.metrics()


def test_mosaic_grid_corrects_by_default_and_records_the_decision(tmp_path):
    preset = replace(get_preset("tiny", 1), field_curvature_px=4.0)
    section = open_acquisition(simulate_acquisition(tmp_path / "acq", preset, seed=105)).slice(0)
    grids = {}
    for name, fix in (("on", True), ("off", False)):
        write_mosaic_grid(section, tmp_path / f"{name}.ome.zarr", tmp_path / f"{name}_aip.ome.zarr", n_levels=0,
                          fix_field_curvature=fix)
        grids[name] = np.asarray(read_omezarr(tmp_path / f"{name}.ome.zarr")[0])
        metrics = json.loads((tmp_path / f"{name}_qc.json").read_text())["metrics"]
        assert metrics["curvature_applied"] is fix and metrics["curvature_status"] == ("applied" if fix else "disabled")
    assert metrics["curvature_border_mismatch_before_px"] is None
    on = json.loads((tmp_path / "on_qc.json").read_text())["metrics"]
    fitted = quadratic_map(on["curvature_coefficients_px"], preset.tile_shape[1:])
    assert np.ptp(field_curvature_map(preset) - fitted) <= 1.0, on
    # every tile of the grid is the uncorrected one with its A-lines moved up by the recorded map, less its
    # mean (the slice's mean depth stays where it was)
    for row, col in ((0, 0), (1, 1), (2, 0)):
        region = np.s_[:, 64 * row : 64 * row + 64, 64 * col : 64 * col + 64]
        moved = shift_alines(grids["off"][region], fitted.mean() - fitted)
        np.testing.assert_allclose(grids["on"][region][6:-6], moved[6:-6], atol=1e-3)  # coefficients rounded in the record


def test_shift_alines_round_trip():
    volume = np.random.default_rng(0).random((20, 4, 5)).astype(np.float32)
    shift = np.linspace(0, 2.0, 20, dtype=np.float32).reshape(4, 5)
    back = shift_alines(shift_alines(volume, shift), -shift)
    np.testing.assert_allclose(back[4:-4], volume[4:-4], atol=0.35)
    np.testing.assert_array_equal(shift_alines(volume, np.round(shift))[5:, 0, 0], volume[5:, 0, 0])


def test_shift_alines_slabs_and_corrected_overlaps_change_no_value(monkeypatch):
    """Shifting by slabs of A-lines, and correcting only the compared overlap strips on 1 or 3
    threads, give exactly the values of shifting and correcting whole tiles at once."""
    tiles = _textured_tiles(quadratic_map([1.5, 0.8, -0.6], (48, 48)), 2)
    candidate = Curvature([1.2, 0.7, -0.5], 2.0, applied=True, status="applied")
    whole = {rc: candidate.correct(tile) for rc, tile in tiles.items()}
    monkeypatch.setattr(curvature, "SLAB_ALINES", 250)  # slabs of 5 rows, the last one of 3
    for rc, tile in tiles.items():
        np.testing.assert_array_equal(candidate.correct(tile), whole[rc])
    expected = overlap_ncc(whole, (38, 38), workers=1)
    assert [overlap_ncc(tiles, (38, 38), candidate, workers) for workers in (1, 3)] == [expected, expected]


def _noisy_border_differences(coefficients: list[float], seed: int, outliers: float = 0.25) -> list:
    """Border differences of four 3 x 3 grids of 48 x 48 tiles (step 38) under a known ``q``: a random offset
    per pair, Gaussian interface noise (SD 0.6 voxel) and ``outliers`` of the blocks 2-8 voxels off (the
    heavy tail of interfaces found at the wrong depth: dark tissue, a cavity, a deep focus)."""
    rng = np.random.default_rng(seed)
    flat_tiles = _textured_tiles(np.zeros((48, 48), np.float32), 0)
    designs = [design for design, _ in border_differences(flat_tiles, (38, 38))]
    pairs = []
    for design in designs * 4:
        noise = rng.normal(0.0, 0.6, len(design))
        wrong = rng.random(len(design)) < outliers
        noise[wrong] = rng.choice([-1.0, 1.0], wrong.sum()) * rng.uniform(2.0, 8.0, wrong.sum())
        pairs.append((design, design @ np.asarray(coefficients) + rng.uniform(-2.0, 2.0) + noise))
    return pairs


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gain_gate_is_not_fooled_by_a_heavy_tail_of_wrong_interfaces(seed):
    """A 3-voxel curvature (the simulator's ``harsh``) under 25% of interfaces 2-8 voxels off: the held-out
    border mismatch is a robust SD, so the good fit passes the gain gate (an RMS of the same differences
    dropped by 1.5-4.7% on these seeds, under the 5% gate, as on ``harsh`` seed 6) and leaves <= 0.5 voxel;
    no curvature under the same noise is never corrected. (Seeds 0-5 looked at: residual <= 0.49 voxel,
    every flat one ``flat``.)"""
    truth = quadratic_map([1.5, 1.5, 0.0], (48, 48))
    curved = fit_candidate(_noisy_border_differences([1.5, 1.5, 0.0], seed), (48, 48))
    assert curved.applied, curved.metrics()
    assert np.ptp(curved.offset_map((48, 48)) - truth) <= 0.5, curved.metrics()
    flat = fit_candidate(_noisy_border_differences([0.0, 0.0, 0.0], seed), (48, 48))
    assert not flat.applied, flat.metrics()
