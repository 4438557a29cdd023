"""The flat field divided out at fusion (``linum_stitch_3d.py --flatfield auto``), against ground truth.

A 3 x 3 mosaic of a smooth, positive scene whose tiles are dimmed by the
simulator's vignetting (30 % at the corners) over an unvignetted exponential
noise floor, with noise-only planes above the cut (as the OCT records them).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from linumpy.io.zarr import open_omezarr_level, read_omezarr_info, save_omezarr
from linumpy.qc.records import qc_record_path, read_qc_record
from linumpy.simulate.imaging import vignetting
from linumpy.stitching.fusion_flatfield import FusionFlatField, noise_floor
from linumpy.stitching.stitch import stitch_mosaic_grid

TILE, STEP, DEPTH, CUT, FLOOR, MARGIN = (64, 64), (52, 52), 16, 4, 0.01, 8
PROFILE = np.where(np.arange(DEPTH) >= CUT, np.exp(-0.05 * np.arange(DEPTH)), 0.0)


def write_vignetted_grid(path, strength=0.3, blank=(), seed=0):
    """Write the mosaic grid; return the noise-free scene and the true tile positions in it."""
    rng = np.random.default_rng(seed)
    size = tuple(2 * MARGIN + 2 * s + t for s, t in zip(STEP, TILE))
    scene = ndimage.gaussian_filter(rng.random(size), 3)
    scene = 0.1 + 0.9 * (scene - scene.min()) / (scene.max() - scene.min())
    gain = vignetting(TILE, strength)
    mosaic = np.zeros((DEPTH, 3 * TILE[0], 3 * TILE[1]), np.float32)
    truth = {}
    for r in range(3):
        for c in range(3):
            y, x = np.array([r * STEP[0], c * STEP[1]]) + MARGIN + rng.integers(-3, 4, 2)
            truth[(r, c)] = (y, x)
            signal = 0.0 if (r, c) in blank else PROFILE[:, None, None] * scene[y:y + TILE[0], x:x + TILE[1]] * gain
            mosaic[:, r * TILE[0]:(r + 1) * TILE[0], c * TILE[1]:(c + 1) * TILE[1]] = (
                signal + FLOOR * rng.standard_exponential((DEPTH, *TILE)))
    attributes = {"slice_id": 0, "tile_shape": [DEPTH, *TILE], "grid_shape": [3, 3], "tile_step_px": list(STEP),
                  "tiles_present": [[r, c] for r, c in sorted(truth)],
                  "stage_position_mm": {"x": 0.0, "y": 0.0, "z": 0.0}}
    save_omezarr(mosaic, path, (0.0015, 0.003, 0.003), chunks=(DEPTH, *TILE), n_levels=1, attributes=attributes)
    return scene, truth


def stitched(tmp_path, grid, mode):
    """Stitch ``grid`` with ``--flatfield mode``; return the volume, its tile origins and the QC entry."""
    out = tmp_path / f"slice_{mode}.ome.zarr"
    stitch_mosaic_grid(grid, out, flatfield=mode, n_levels=1, overwrite=True, workers=1)
    data, _ = open_omezarr_level(out)
    origins = {(r, c): (int(round(y)), int(round(x)))
               for r, c, y, x in read_omezarr_info(out).attributes["tile_positions_px"]}
    return np.asarray(data[:]), origins, read_qc_record(qc_record_path(out))["metrics"]["fusion_flatfield"]


def signal_ratio(volume, origins, scene, truth):
    """Fused signal above the floor over the true signal, below the cut, on the tiles' common interior."""
    oy, ox = origins[(0, 0)]
    ty, tx = truth[(0, 0)]
    shape = volume.shape[1:]
    true_plane = scene[ty - oy:ty - oy + shape[0], tx - ox:tx - ox + shape[1]]
    ratio = (volume[CUT:] - FLOOR).mean(axis=0) / (PROFILE[CUT:].mean() * true_plane)
    return ratio[12:-12, 12:-12]


@pytest.fixture(scope="module")
def vignetted(tmp_path_factory):
    path = tmp_path_factory.mktemp("vignetted") / "mosaic_grid_3d_z00.ome.zarr"
    return path, *write_vignetted_grid(path)


def test_auto_flattens_the_fused_slice_and_keeps_the_noise_floor(tmp_path, vignetted):
    grid, scene, truth = vignetted
    plain, origins, off = stitched(tmp_path, grid, "none")
    flat, flat_origins, applied = stitched(tmp_path, grid, "auto")
    assert off == {"status": "off"}
    assert applied["status"] == "applied"
    assert applied["noise_floor"] == pytest.approx(FLOOR, rel=0.1)
    assert applied["supported_pairs_per_direction"] == [6, 6]
    # the simulator's 30 % vignetting over its mean: 0.78 at the corners, 1.11 at the centre
    assert applied["field_min"] == pytest.approx(0.7 / 0.9, abs=0.03)
    assert applied["field_max"] == pytest.approx(1 / 0.9, abs=0.02)
    assert flat_origins == origins  # registration does not change
    before = signal_ratio(plain, origins, scene, truth)
    after = signal_ratio(flat, origins, scene, truth)
    cv_before, cv_after = before.std() / before.mean(), after.std() / after.mean()
    # measured: lateral CV of the signal's ratio to the truth 0.050 -> 0.010
    assert cv_before > 0.04
    assert cv_after < 0.3 * cv_before and cv_after < 0.015
    # the noise is not vignetted: above the cut, a tile's corner keeps the level of its centre
    oy, ox = origins[(1, 1)]
    corner = flat[:CUT, oy:oy + 6, ox:ox + 6].mean()
    centre = flat[:CUT, oy + 29:oy + 35, ox + 29:ox + 35].mean()
    assert corner == pytest.approx(FLOOR, rel=0.15) and centre == pytest.approx(FLOOR, rel=0.15)


@pytest.mark.parametrize("strength, blank, reason", [
    # tissue in one row only: no column pair holds signal on both sides
    (0.3, {(0, 0), (0, 1), (0, 2), (2, 0), (2, 1), (2, 2)}, "weakly supported"),
    # no vignetting: the fitted field is flat within its noise (0.999-1.001 here)
    (0.0, (), "no vignetting measured"),
])
def test_field_is_not_applied_when_weak_or_flat_and_says_so(tmp_path, strength, blank, reason):
    grid = tmp_path / "mosaic_grid_3d_z00.ome.zarr"
    write_vignetted_grid(grid, strength=strength, blank=blank)
    plain, _, _ = stitched(tmp_path, grid, "none")
    kept, _, record = stitched(tmp_path, grid, "auto")
    assert record["status"].startswith(f"not applied: {reason}")
    assert "field_min" not in record
    if blank:
        assert record["supported_pairs_per_direction"][0] == 0
    else:
        assert 1 <= record["refused_field_max"] / record["refused_field_min"] < 1.02
    assert np.array_equal(kept, plain)


def test_correct_divides_the_signal_above_the_floor():
    field = np.array([[0.5, 1.0], [1.0, 2.0]], np.float32)
    flat = FusionFlatField("applied", field, 0.1)
    data = np.full((2, 2, 2), 1.1, np.float32)
    out = np.empty_like(data)
    flat.correct_into(data, (slice(0, 2), slice(0, 2)), out)
    assert np.allclose(out[0], [[2.1, 1.1], [1.1, 0.6]])
    assert np.all(data == np.float32(1.1))  # the input is left as it is
    flat.correct_into(data, (slice(0, 2), slice(0, 2)), data)  # in place: the same values
    assert np.array_equal(data, out)
    FusionFlatField("off").correct_into(np.full((2, 2, 2), 0.5, np.float16), (slice(0, 2), slice(0, 2)), out)
    assert np.all(out == 0.5)
    assert noise_floor({(0, 0): 0.01, (0, 1): 0.02, (1, 0): 0.03}) == pytest.approx(0.02)


def test_script_accepts_flatfield_with_a_saved_transform(tmp_path, vignetted):
    from test_stitching import stitch_cli

    grid = vignetted[0]
    first = tmp_path / "first.ome.zarr"
    assert stitch_cli(grid, first, "--n_levels", "1", "-q") == 0
    again = tmp_path / "again.ome.zarr"
    assert stitch_cli(grid, again, "--transform", tmp_path / "first_transform.json", "--flatfield", "auto",
                      "--n_levels", "1", "-q") == 0
    assert read_qc_record(qc_record_path(again))["metrics"]["fusion_flatfield"]["status"] == "applied"
    assert stitch_cli(grid, tmp_path / "bad.ome.zarr", "--flatfield", "always", "-q") != 0
