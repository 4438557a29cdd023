"""The speckle frames a slice averages and the compensation's lateral average narrowed by them
(linumpy.intensity.speckle)."""

from __future__ import annotations

import numpy as np
import pytest

from linumpy.intensity import speckle
from linumpy.intensity.axial import AxialSettings, correct_slice
from linumpy.io.zarr import read_omezarr, save_omezarr
from linumpy.qc.records import qc_record_path, read_qc_record

DZ_MM = 0.003
CUT_PX = 18
#: (attenuation 1/mm, reflectivity) of a slow grey and fast fibres.
SLOW, FAST = (3.0, 0.35), (11.0, 1.0)
PATCH = 8


def patches(seed: int, frames: int, shape=(100, 48, 48), floor=0.004) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Squares of :data:`PATCH` A-lines of the slow and the fast tissue in a checkerboard below a flat cut, the
    speckle of ``frames`` frames averaged, the focus 70 planes deep. Returns the volume, the focus profile and
    where the fast tissue is."""
    rng = np.random.default_rng(seed)
    n_z, n_y, n_x = shape
    fast = ((np.arange(n_y)[:, None] // PATCH + np.arange(n_x)[None] // PATCH) % 2).astype(bool)
    mu, reflectivity = np.where(fast, FAST[0], SLOW[0]), np.where(fast, FAST[1], SLOW[1])
    depth = np.arange(n_z)[:, None, None] - CUT_PX
    signal = np.where(depth >= 0, reflectivity * np.exp(-2 * mu * np.clip(depth, 0, None) * DZ_MM), 0.0)
    profile = 1.0 / (1.0 + ((np.arange(n_z) - 70.0) / 30.0) ** 2)
    volume = (signal * profile[:, None, None] * rng.gamma(frames, 1.0 / frames, shape)
              + floor * rng.standard_exponential(shape))
    return volume.astype(np.float32), profile, fast


@pytest.mark.parametrize("frames", [1, 2, 4])
def test_the_frames_are_read_from_the_tissues_contrast(frames):
    """Gamma speckle of 1, 2, 4 frames over two tissues: the estimate reads up to 15 % below the frames (the
    decay within a box and the tissues' edges add variance: never above; 0.98, 1.89, 3.48 here); one and two
    frames keep the one frame's average, four narrow it (by the square root of 3, the estimate rounded)."""
    volume, _, _ = patches(0, frames)
    estimate = speckle.speckle_frames(volume, np.array([CUT_PX, 0.0, 0.0]))
    assert 0.85 * frames - 0.1 < estimate <= frames + 0.05
    assert speckle.narrowed_sigma(2.0, estimate) == pytest.approx(2.0 if frames < 3 else 2.0 / np.sqrt(3))


def test_no_plane_or_no_signal_keeps_the_one_frame_average():
    assert speckle.speckle_frames(np.zeros((40, 16, 16)), np.array([5.0, 0.0, 0.0])) is None
    assert speckle.speckle_frames(np.ones((40, 16, 16)), None) is None
    assert speckle.narrowed_sigma(2.0, None) == 2.0


def test_four_frames_narrow_the_average_and_the_tissues_keep_their_levels(tmp_path):
    """Small squares of a fast and a slow tissue, four frames: the sums averaged for one frame (sigma 2) lend
    each square its neighbours' decay: the fast tissue over the slow one, each over its reflectivity, is 0.133
    off on the deepest third of a 24-plane slab; narrowed (the estimate 3.45-4.05) 0.069 off."""
    volume, profile, fast = patches(1, 4)
    source = tmp_path / "in.ome.zarr"
    save_omezarr(volume, source, (DZ_MM, 0.005, 0.005), n_levels=0)
    core = np.arange(fast.shape[0]) % PATCH
    core = (core >= 2) & (core < PATCH - 2)  # each square's centre, away from its edges
    inner = core[:, None] & core[None]

    def fast_over_slow(out) -> float:
        corrected = read_omezarr(out)[0].compute()[17:25]
        return float(corrected[:, fast & inner].mean() / FAST[1] / (corrected[:, ~fast & inner].mean() / SLOW[1]))

    errors = {}
    for label, sigma in (("narrowed", 2.0), ("one frame", 4.0)):
        out = tmp_path / f"{label}.ome.zarr"
        correct_slice(source, out, AxialSettings(focus_profile=profile, tail_edge_sigma_px=sigma), n_levels=0)
        metrics = read_qc_record(qc_record_path(out))["metrics"]
        assert metrics["speckle_frames_estimate"] == pytest.approx(3.75, abs=0.3)
        errors[label] = abs(fast_over_slow(out) - 1.0)
    assert errors["narrowed"] < 0.08
    assert errors["narrowed"] < 0.6 * errors["one frame"]
