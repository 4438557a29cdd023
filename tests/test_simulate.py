"""The acquisition simulator: ground truth is consistent with the pixels it wrote."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from linumpy.errors import InputError
from linumpy.io.acquisition import open_acquisition
from linumpy.io.zarr import read_omezarr
from linumpy.simulate import get_preset, simulate_acquisition
from linumpy.simulate.geometry import AcquisitionGeometry
from linumpy.simulate.imaging import speckle, tile_signal, transmission
from linumpy.simulate.phantom import Phantom
from linumpy.simulate.truth import build_truth

BIN = Path(__file__).resolve().parents[1] / "bin"


@pytest.fixture(scope="module")
def truth(tiny_acquisition) -> dict:
    return json.loads((tiny_acquisition / "ground_truth" / "truth.json").read_text())


@pytest.fixture(scope="module")
def phantom_volumes(tiny_acquisition) -> tuple[np.ndarray, np.ndarray]:
    folder = tiny_acquisition / "ground_truth"
    return read_omezarr(folder / "phantom.ome.zarr")[0].compute(), read_omezarr(folder / "attenuation.ome.zarr")[0].compute()


def expected_tile(truth, phantom_volumes, tiny_acquisition, entry, y, x) -> np.ndarray:
    """The documented image model applied to the ground truth, for a tile at mosaic (y, x)."""
    reflectivity, attenuation = phantom_volumes
    nz, ny, nx = truth["tile_shape"]
    oz, oy, ox = truth["phantom"]["world_origin_px"]
    imaging = truth["imaging"]
    dy, dx = entry["sample_shift_px"]
    z0 = entry["world_z_offset_px"]
    world_y, world_x = y - dy, x - dx
    box = (slice(z0 - oz, z0 - oz + nz), slice(world_y - oy, world_y - oy + ny), slice(world_x - ox, world_x - ox + nx))
    surface = read_omezarr(tiny_acquisition / "ground_truth" / entry["surface"]["path"])[0].compute()
    sy, sx = entry["surface"]["origin_px"]
    surface = surface[y - sy : y - sy + ny, x - sx : x - sx + nx]
    z = np.arange(nz)[:, None, None]
    present = z >= surface[None]
    focus = np.exp(-((z - imaging["focus_px"]) ** 2) / (2 * imaging["focus_sigma_px"] ** 2))
    u, v = np.linspace(-1, 1, ny)[:, None], np.linspace(-1, 1, nx)[None, :]
    vignetting = 1 - imaging["vignetting"] * (u**2 + v**2) / 2
    optical_depth = np.cumsum(attenuation[box] * present, axis=0)
    optical_depth = np.concatenate([np.zeros_like(optical_depth[:1]), optical_depth[:-1]])
    dz_mm = truth["resolution_um"][0] / 1000.0
    trans = np.exp(-imaging["round_trip_factor"] * dz_mm * optical_depth)
    speckles = speckle(truth["seed"], z0 + np.arange(nz), world_y + np.arange(ny), world_x + np.arange(nx))
    return vignetting * focus * reflectivity[box] * speckles * trans * present + imaging["noise_floor"]


def test_tiles_are_the_documented_model_of_the_ground_truth(tiny_acquisition, truth, phantom_volumes):
    """Cut the phantom at the recorded tile positions: the tiles differ from it by noise only."""
    acq = open_acquisition(tiny_acquisition)
    noise_std = truth["imaging"]["noise_floor"] / np.sqrt(truth["raw"]["n_repeat"])  # exponential: std = mean
    for entry in truth["slices"]:
        section = acq.slice(entry["slice_id"])
        for row, col, y, x in entry["tile_positions_px"]:
            tile = section.tiles[(row, col)].read()
            residual = tile - expected_tile(truth, phantom_volumes, tiny_acquisition, entry, y, x)
            assert abs(residual.mean()) < 0.05 * noise_std
            assert residual.std() == pytest.approx(noise_std, rel=0.03)
            # one pixel off is far worse: the recorded positions are the true ones
            inward = 1 if row == 0 else -1  # stay inside the ground-truth maps
            wrong = tile - expected_tile(truth, phantom_volumes, tiny_acquisition, entry, y + inward, x)
            assert wrong.std() > 5 * noise_std


def test_grid_overlap_and_stage_errors_as_requested(tiny_acquisition, truth):
    preset = get_preset("tiny")
    _, ny, nx = truth["tile_shape"]
    assert truth["tile_step_px"] == [round(ny * (1 - preset.overlap)), round(nx * (1 - preset.overlap))]
    step_y, step_x = truth["tile_step_px"]
    errors = []
    for entry in truth["slices"]:
        for row, col, y, x in entry["tile_positions_px"]:
            errors += [y - row * step_y, x - col * step_x]
    assert max(abs(e) for e in errors) <= truth["stage_error_max_px"]
    assert np.std(errors) > 1  # the stage errors are not all zero
    # neighbours share their overlap: same content once vignetting is divided out
    acq = open_acquisition(tiny_acquisition)
    entry = truth["slices"][0]
    positions = {(r, c): (y, x) for r, c, y, x in entry["tile_positions_px"]}
    section = acq.slice(entry["slice_id"])
    u, v = np.linspace(-1, 1, ny)[:, None], np.linspace(-1, 1, nx)[None, :]
    flat = 1 - truth["imaging"]["vignetting"] * (u**2 + v**2) / 2
    (ya, xa), (yb, xb) = positions[(1, 0)], positions[(1, 1)]
    a, b = section.tiles[(1, 0)].read() / flat, section.tiles[(1, 1)].read() / flat
    top, bottom = max(ya, yb), min(ya, yb) + ny
    left, right = xb, xa + nx
    assert (right - left) == pytest.approx(preset.overlap * nx, abs=2 * truth["stage_error_max_px"] + 1)
    part_a = a[:, top - ya : bottom - ya, left - xa : right - xa]
    part_b = b[:, top - yb : bottom - yb, left - xb : right - xb]
    assert np.corrcoef(part_a.ravel(), part_b.ravel())[0, 1] > 0.99


def test_consecutive_slices_overlap_in_depth_at_the_true_shift(tiny_acquisition, truth):
    nz, ny, nx = truth["tile_shape"]
    thickness = truth["slice_thickness_px"]
    for entry in truth["slices"]:
        assert nz - entry["surface"]["max_px"] - thickness > 15  # at least 15 samples imaged twice
    acq = open_acquisition(tiny_acquisition)
    first, second = truth["slices"][0], truth["slices"][1]
    depth0 = thickness + int(np.ceil(second["surface"]["max_px"])) + 2
    pos0 = {(r, c): (y, x) for r, c, y, x in first["tile_positions_px"]}[(1, 0)]
    pos1 = {(r, c): (y, x) for r, c, y, x in second["tile_positions_px"]}[(1, 0)]
    deep0 = acq.slice(0).tiles[(1, 0)].read()[depth0:].mean(axis=0)
    deep1 = acq.slice(1).tiles[(1, 0)].read()[depth0 - thickness :].mean(axis=0)

    def correlation(shift) -> float:
        # world point W is at mosaic W + d_k, tile pixel = mosaic - tile origin
        offset = [pos1[i] - pos0[i] - (second["sample_shift_px"][i] - first["sample_shift_px"][i]) - shift[i] for i in (0, 1)]
        ys = slice(max(0, offset[0]), min(ny, ny + offset[0]))
        xs = slice(max(0, offset[1]), min(nx, nx + offset[1]))
        a = deep0[ys, xs]
        b = deep1[ys.start - offset[0] : ys.stop - offset[0], xs.start - offset[1] : xs.stop - offset[1]]
        return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])

    best = correlation((0, 0))
    assert best > 0.8
    for wrong in ((1, 0), (0, 1), (-1, 0), (0, -1), (2, 2)):
        assert best > correlation(wrong) + 0.05


def test_transmission_is_beer_lambert_round_trip():
    mu = np.full((50, 1, 1), 4.0, np.float32)  # 1/mm
    present = (np.arange(50) >= 7)[:, None, None]
    result = transmission(mu, present, axial_um=1.5)[:, 0, 0]
    expected = np.exp(-2 * 4.0 * 0.0015 * np.maximum(0, np.arange(50) - 7))
    np.testing.assert_allclose(result, expected, rtol=1e-6)


def test_attenuation_along_alines_of_homogeneous_regions(tiny_acquisition, truth):
    """Fit the attenuation back from the raw A-lines of the homogeneous regions."""
    acq = open_acquisition(tiny_acquisition)
    imaging = truth["imaging"]
    nz = truth["tile_shape"][0]
    z = np.arange(nz)
    focus = np.exp(-((z - imaging["focus_px"]) ** 2) / (2 * imaging["focus_sigma_px"] ** 2))
    dz_mm = truth["resolution_um"][0] / 1000.0
    checked = 0
    for entry in truth["slices"]:
        for region in entry["homogeneous_regions"]:
            for row, col, y0, y1, x0, x1 in region["tiles"]:
                tile = acq.slice(entry["slice_id"]).tiles[(row, col)].read()
                top, bottom = region["depth_px"]
                profile = tile[top:bottom, y0:y1, x0:x1].mean(axis=(1, 2)) - imaging["noise_floor"]
                slope = np.polyfit(z[top:bottom], np.log(profile / focus[top:bottom]), 1)[0]
                assert -slope / (2 * dz_mm) == pytest.approx(region["attenuation_per_mm"], rel=0.15)
                checked += 1
    assert checked >= 4


def test_small_preset_has_nearly_empty_tiles():
    preset = get_preset("small")
    geometry = AcquisitionGeometry(preset, 0)
    phantom = Phantom(0, preset, geometry.mosaic_shape)
    truth = build_truth(phantom, geometry, 0, "native")
    n_tiles = preset.grid_shape[0] * preset.grid_shape[1]
    for entry in truth["slices"]:
        assert 0.1 <= len(entry["empty_tiles"]) / n_tiles <= 0.3
    (row, col), full = truth["slices"][0]["empty_tiles"][0], (1, 1)
    depth = slice(int(preset.surface_offset_px) + 10, None)
    empty_signal = tile_signal(phantom, geometry, 0, 0, row, col)[depth].mean()
    full_signal = tile_signal(phantom, geometry, 0, 0, *full)[depth].mean()
    assert empty_signal < 0.2 * full_signal


def test_native_layout_exercises_the_format(tiny_acquisition, truth):
    tile_dir = tiny_acquisition / "tile_x01_y02_z01"
    info = dict(line.split(": ") for line in (tile_dir / "info.txt").read_text().splitlines())
    assert int(info["n_extra"]) > 0 and int(info["n_repeat"]) >= 2
    assert len(list(tile_dir.glob("image_*.bin"))) >= 2
    assert int(info["bottom_z"]) - int(info["top_z"]) + 1 == truth["tile_shape"][0]
    assert int(info["focus_z"]) - int(info["top_z"]) == truth["imaging"]["focus_px"]


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_same_seed_same_bytes(tmp_path):
    preset = get_preset("tiny", n_slices=1)
    first, second = (_digest(simulate_acquisition(tmp_path / name, preset, seed=4)) for name in "ab")
    assert first == second
    assert len(first) > 20
    geometry = AcquisitionGeometry(preset, 4)
    other_seed = tile_signal(Phantom(5, preset, geometry.mosaic_shape), geometry, 5, 0, 0, 0)
    assert not np.array_equal(other_seed, tile_signal(Phantom(4, preset, geometry.mosaic_shape), geometry, 4, 0, 0, 0))


def test_cli_writes_and_refuses_existing_output(tmp_path):
    script = str(BIN / "linum_simulate_acquisition.py")
    command = [sys.executable, script, str(tmp_path / "raw"), "--n_slices", "1", "--layout", "tiff", "-q"]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert open_acquisition(tmp_path / "raw").layout == "tiff"
    refused = subprocess.run(command, capture_output=True, text=True)
    assert refused.returncode == 2 and "already exists" in refused.stderr


def test_unknown_preset_is_an_input_error():
    with pytest.raises(InputError, match="unknown preset"):
        get_preset("huge")
    with pytest.raises(InputError, match="n_slices"):
        get_preset("tiny", n_slices=0)


def test_the_scored_reference_is_sheared_by_the_cut_plane(tiny_acquisition, truth):
    """The stack's reference follows the simulator's cut tilt (not slice 0's bumpy surface) through its mean."""
    from linumpy.simulate.scoring import cut_tilt

    entry = truth["slices"][0]
    surface = read_omezarr(tiny_acquisition / "ground_truth" / entry["surface"]["path"])[0].compute()
    y, x = np.indices(surface.shape, dtype=np.float64)
    y += entry["surface"]["origin_px"][0] - entry["sample_shift_px"][0]
    x += entry["surface"]["origin_px"][1] - entry["sample_shift_px"][1]
    shear = cut_tilt(truth, y, x)
    tilt_y, tilt_x = truth["imaging"]["surface_tilt_px_per_px"]
    assert np.allclose(np.diff(shear, axis=0), tilt_y) and np.allclose(np.diff(shear, axis=1), tilt_x)
    assert abs(shear.mean()) < 1e-9  # the reference's first plane stays at slice 0's mean true surface
    # the surface's own least-squares tilt is not the cut's: its bumps tilt it
    design = np.stack([np.ones(surface.size), y.ravel(), x.ravel()], axis=1)
    fitted = np.linalg.lstsq(design, surface.ravel().astype(np.float64), rcond=None)[0][1:]
    assert not np.allclose(fitted, (tilt_y, tilt_x), atol=1e-4)
