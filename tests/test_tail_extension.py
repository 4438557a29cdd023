"""The compensation's end-of-range extension measured on the unclipped signal (linumpy.intensity.tail_extension)."""

from __future__ import annotations

import numpy as np
import pytest

from linumpy.intensity import attenuation
from linumpy.intensity.attenuation import BinGrid
from linumpy.intensity.axial import AxialSettings, correct_slice
from linumpy.intensity.tail_extension import unclipped_extension
from linumpy.io.zarr import read_omezarr, save_omezarr

DZ_MM = 0.003
CUT_PX = 18
#: (attenuation 1/mm, reflectivity) of the two tissues side by side: a slow grey and fast fibres.
SLOW, FAST = (2.0, 0.35), (11.0, 1.0)


def two_tissues(seed: int, shape=(150, 32, 64), floor=0.004) -> tuple[np.ndarray, np.ndarray]:
    """A slow and a fast tissue side by side below a flat cut, the focus 80 planes deep (Lorentzian, Rayleigh
    24 planes, as the independent generator's `deep` kind), speckle and an exponential noise floor.

    The light enters at the cut (the first tissue voxel unattenuated), so a right compensation gives each
    tissue its reflectivity. The fast tissue's light is under the noise long before the bottom, where the
    focus profile that divides the signal falls to 0.1. Returns the volume and the focus profile.
    """
    rng = np.random.default_rng(seed)
    n_z, n_y, n_x = shape
    fast = np.arange(n_x) >= n_x // 2
    mu = np.where(fast, FAST[0], SLOW[0])
    reflectivity = np.where(fast, FAST[1], SLOW[1])
    depth = np.arange(n_z)[:, None, None] - CUT_PX
    signal = np.where(depth >= 0, reflectivity * np.exp(-2 * mu * np.clip(depth, 0, None) * DZ_MM), 0.0)
    profile = 1.0 / (1.0 + ((np.arange(n_z) - 80.0) / 24.0) ** 2)
    volume = signal * profile[:, None, None] * rng.gamma(2.0, 0.5, shape) + floor * rng.standard_exponential(shape)
    return volume.astype(np.float32), profile


@pytest.mark.parametrize("seed", [0, 1])
def test_a_fast_tissue_keeps_its_level_against_a_slow_one_when_its_tail_is_noise(tmp_path, seed):
    """Each tissue's compensated level over its reflectivity, the fast over the slow, on the 24 planes below
    the cut (a slab) and on its deepest third: within 6 % and 10 % of 1 (the extension measured on the
    clipped noise read 0.73, and 0.55 on the deepest third)."""
    volume, profile = two_tissues(seed)
    source = tmp_path / "in.ome.zarr"
    save_omezarr(volume, source, (DZ_MM, 0.003, 0.003), n_levels=0)
    out = tmp_path / "out.ome.zarr"
    correct_slice(source, out, AxialSettings(focus_profile=profile), n_levels=0)
    corrected = read_omezarr(out)[0].compute()  # flattened: the cut at plane 0

    def ratio(planes: slice) -> float:
        slow = corrected[planes, 4:-4, 8:24].mean() / SLOW[1]
        fast = corrected[planes, 4:-4, 40:56].mean() / FAST[1]
        return float(fast / slow)

    assert ratio(slice(1, 25)) == pytest.approx(1.0, abs=0.06)
    assert ratio(slice(17, 25)) == pytest.approx(1.0, abs=0.10)


def test_the_extension_of_a_tail_of_pure_noise_is_the_true_one_not_the_clipped_noise():
    """Fibres (11 mm⁻¹) whose light is under the noise long before the end of 150 planes: their true tail
    beyond the range is nil (< 1e-4 of the sum). Measured on the clipped signal (the clipped noise's mean
    n / e a voxel), the extension is over 10 % of the whole sum; on the unclipped one, under 1 %."""
    rng = np.random.default_rng(4)
    n_z, side = 150, 24
    depth = np.arange(n_z)[:, None, None]
    light = np.exp(-2 * FAST[0] * depth * DZ_MM) * rng.gamma(2.0, 0.5, (n_z, side, side))
    unclipped = (light + 0.05 * (rng.standard_exponential((n_z, side, side)) - 1.0)).astype(np.float32)
    clipped = np.maximum(unclipped, 0)
    grid = BinGrid.of((side, side))
    inner = (slice(None), slice(None))
    guide = attenuation.level_guide(clipped)
    extension = unclipped_extension(clipped, attenuation.binned_tail_sums(unclipped, grid), grid, 2.0, None, inner,
                                    guide)
    sums = attenuation.edge_aware_tails(clipped, attenuation.binned_tail_sums(clipped, grid), grid, 2.0, guide=guide)
    true_tail = np.exp(-2 * FAST[0] * n_z * DZ_MM) / (1 - np.exp(-2 * FAST[0] * DZ_MM))
    assert true_tail / sums[0].mean() < 1e-4
    assert extension.shape == (side, side) and (extension >= 0).all()
    assert np.median(sums[-1] / sums[0]) > 0.10  # the clipped noise's extension
    assert np.median(extension / sums[0]) < 0.01
