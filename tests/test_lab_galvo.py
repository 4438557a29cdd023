"""Galvo-return band: detection against known shifts, and the mosaic grid it fixes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from linumpy.io.acquisition import open_acquisition
from linumpy.io.zarr import read_omezarr
from linumpy.mosaic.galvo import DEFAULT_CONFIDENCE, decide, detect_band
from linumpy.mosaic.grid import write_mosaic_grid
from linumpy.simulate import get_preset, simulate_acquisition

NX, N_EXTRA = 64, 8


def synthetic_profiles(seed: int, shift: int, noise: float, darkness: float, soft: bool) -> dict:
    """Profiles of 6 tiles: textured tissue (some tiles empty or half empty), a band
    that keeps ``1 - darkness`` of the signal, soft (ramped) edges, multiplicative noise."""
    rng = np.random.default_rng(seed)
    profiles = {}
    for k in range(6):
        x = np.arange(NX)
        tissue = 1.0 + 0.3 * np.sin(2 * np.pi * x / rng.uniform(10, 40) + rng.uniform(0, 6))
        if k == 0:
            tissue[:] = 0.0  # empty tile
        elif k == 1:
            tissue[rng.integers(10, 50):] = 0.0  # tissue border inside the tile
        vignette = 1.0 - 0.3 * np.linspace(-1, 1, NX) ** 2
        raw = np.concatenate([tissue * vignette, (1 - darkness) * tissue.mean() * np.ones(N_EXTRA)])
        if soft:
            raw = np.convolve(np.concatenate([raw[-1:], raw, raw[:1]]), [0.25, 0.5, 0.25], "valid")
        raw = 0.2 + raw  # noise floor
        raw = raw * (1 + noise * rng.standard_normal(raw.size))
        profiles[(k // 3, k % 3)] = np.roll(raw, shift)
    return profiles


CONDITIONS = [
    (noise, darkness, soft)
    for noise in (0.0, 0.02, 0.05)
    for darkness in (0.5, 0.8, 1.0)
    for soft in (False, True)
]


def detection_outcomes(seeds: range, noise: float, darkness: float, soft: bool) -> tuple[list[bool], int]:
    """Per seed: was a random shift (1-29 A-lines, either sign) fixed within 1 A-line;
    and how many unshifted twins were (falsely) fixed."""
    found, false_fix = [], 0
    for seed in seeds:
        shift = int(np.random.default_rng(seed).integers(1, 30)) * (1 if seed % 2 else -1)
        estimate = decide(detect_band(synthetic_profiles(seed, shift, noise, darkness, soft), NX, N_EXTRA), DEFAULT_CONFIDENCE)
        found.append(abs(estimate.shift * estimate.applied - shift) <= 1)
        unshifted = decide(detect_band(synthetic_profiles(seed, 0, noise, darkness, soft), NX, N_EXTRA), DEFAULT_CONFIDENCE)
        false_fix += unshifted.applied
    return found, false_fix


def test_detection_matrix():
    """Seeds 100-109 (tuning looked at 0-9 only): over the whole matrix (harsher than the
    simulator: a band keeping half the signal, soft edges, 5% profile noise) the crop is within
    1 A-line of the band on >= 90% of shifted cases (measured 93.9%), >= 60% at the harshest
    corner, and there is never a fix without a shift."""
    found, false_fix = [], 0
    for condition in CONDITIONS:
        ok, false = detection_outcomes(range(100, 110), *condition)
        assert np.mean(ok) >= 0.6, condition
        found += ok
        false_fix += false
    assert np.mean(found) >= 0.9
    assert false_fix == 0


def test_no_tissue_keeps_nominal_crop():
    profiles = {(0, 0): 0.2 + 0.001 * np.random.default_rng(0).standard_normal(NX + N_EXTRA)}
    estimate = decide(detect_band(profiles, NX, N_EXTRA), DEFAULT_CONFIDENCE)
    assert not estimate.applied and estimate.status == "no_tissue" and estimate.flags(0.5)


@pytest.fixture(scope="module")
def shifted_pair(tmp_path_factory):
    """The same tiny slice simulated with and without a galvo shift (same signal, same noise)."""
    root = tmp_path_factory.mktemp("galvo")
    plain = simulate_acquisition(root / "plain", get_preset("tiny", 1), seed=4)
    shifted = simulate_acquisition(root / "shifted", get_preset("tiny", 1, galvo_shift_px=20), seed=4)
    return plain, shifted


def test_fixed_mosaic_grid_equals_unshifted(shifted_pair, tmp_path):
    """With the band fixed, the mosaic grid is the one of the unshifted acquisition, bit for bit."""
    plain, shifted = shifted_pair
    truth = json.loads((shifted / "ground_truth" / "truth.json").read_text())["slices"][0]
    assert truth["galvo_shift_px"] != 0
    outputs = {}
    for name, acq, fix in (("plain", plain, True), ("fixed", shifted, True), ("raw", shifted, False)):
        out = tmp_path / f"{name}.ome.zarr"
        write_mosaic_grid(open_acquisition(acq).slice(0), out, tmp_path / f"{name}_aip.ome.zarr", fix_galvo_shift=fix)
        outputs[name] = np.asarray(read_omezarr(out)[0])
        record = json.loads((tmp_path / f"{name}_qc.json").read_text())
        if name == "plain":
            assert record["metrics"]["galvo_shift_px"] == 0 and record["metrics"]["galvo_status"] == "nominal"
        if name == "fixed":
            assert record["metrics"]["galvo_shift_px"] == truth["galvo_shift_px"]
            assert record["metrics"]["galvo_confidence"] >= DEFAULT_CONFIDENCE
    np.testing.assert_array_equal(outputs["fixed"], outputs["plain"])
    assert not np.array_equal(outputs["raw"], outputs["plain"])


def test_aline_profile_reads_only_the_sampled_frames(tmp_path, monkeypatch):
    """The A-line profile is the mean over depth and every ``stride``-th frame of the tile (counted across its
    files), from those frames' bytes only: 6 of 18 frames over 4 files, stride 3."""
    import os

    from linumpy.io.native_tiles import INFO_NAME, NativeTileInfo, format_info_text, write_native_frames
    from linumpy.mosaic import galvo

    depth, n_alines, n_frames = 5, 12, 18
    frames = np.random.default_rng(3).random((n_frames, n_alines, depth), dtype=np.float32)
    tile = tmp_path / "tile_x00_y00_z00"
    tile.mkdir()
    info = NativeTileInfo(nx=8, ny=n_frames, n_repeat=1, width=8.0, height=18.0, n_extra=4, top_z=0,
                          bottom_z=depth - 1, focus_z=2, stage_x_pos_mm=0.0, stage_y_pos_mm=0.0, stage_z_pos_mm=0.0)
    (tile / INFO_NAME).write_text(format_info_text(info))
    write_native_frames(tile, frames, 4)  # 5, 5, 4, 4 frames
    monkeypatch.setattr(galvo, "MAX_FRAMES", 6)
    read, preadv = [], os.preadv

    def preadv_counted(descriptor, buffers, offset):
        count = preadv(descriptor, buffers, offset)
        read.append(count)
        return count

    monkeypatch.setattr(os, "preadv", preadv_counted)
    profile = galvo.aline_profile(tile)
    expected, first = np.zeros(n_alines), 0
    for size in (5, 5, 4, 4):  # each file's frames sampled and summed as the tile's frames 0, 3, 6, ...
        part = frames[first:first + size]
        expected += part[(-first) % 3::3].sum(axis=(0, 2), dtype=np.float64)
        first += size
    np.testing.assert_array_equal(profile, expected / (6 * depth))
    np.testing.assert_allclose(profile, frames[::3].mean(axis=(0, 2), dtype=np.float64), rtol=1e-12)
    assert read == [n_alines * depth * 4] * 6
