"""The attenuation map of the gel beside the sample, against truth (issue #11).

A slice of gel (0.4 mm^-1) with a tissue disc (3 mm^-1, 8x brighter at the cut) in it, a Lorentzian
focus, speckle and a noise floor; the A-lines the disc's edge crosses hold both lights in proportion
(as the mosaic's resampling of the tiles leaves them). Before session atten45 the gel within 4 A-lines
of the disc read +30% through the map's lateral box; the bins at a change of tissue/agarose class are
now left unmapped (``attenuation_map.class_boundary``) and it reads +17%: issue #11's 15% is not
reached next to the sample (``docs/intensity.md``, *The map of the tissue below the cut*).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from linumpy.intensity.axial import AxialSettings, correct_slice, output_paths
from linumpy.io.zarr import read_omezarr, save_omezarr

DZ_MM = 0.0015
SHAPE = (90, 120, 120)
GEL_MU, TISSUE_MU = 0.4, 3.0
#: Relative error allowed on the median attenuation (issue #11's 15%).
TOLERANCE = 0.15
#: Relative error allowed on the gel within 4 A-lines of the disc (measured +17%; +30% before atten45).
NEAR_TOLERANCE = 0.25


def slice_volume(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The slice ``(z, y, x)`` and each A-line's share of tissue (the disc antialiased over 4 x 4 sub-pixels)."""
    rng = np.random.default_rng(seed)
    n_z, n_y, n_x = SHAPE
    sub = (np.arange(4 * n_y) + 0.5) / 4 - n_y / 2 - 0.3
    share = (np.hypot(sub[:, None], sub[None, :] + 0.2) < 34).reshape(n_y, 4, n_x, 4).mean(axis=(1, 3))
    yy, xx = np.mgrid[0:n_y, 0:n_x]
    depth_mm = (np.arange(n_z)[:, None, None] - np.ceil(14.0 + 0.02 * yy - 0.015 * xx)[None]) * DZ_MM
    below = np.clip(depth_mm, 0, None)
    signal = share * 0.5 * np.exp(-2 * TISSUE_MU * below) + (1 - share) * 0.06 * np.exp(-2 * GEL_MU * below)
    signal[depth_mm < 0] = 0.0
    gain = 1.0 / (1.0 + ((np.arange(n_z)[:, None, None] - 55.0) / 16.0) ** 2)
    volume = signal * gain * rng.standard_exponential((8, *signal.shape)).mean(axis=0)
    volume += 0.002 * rng.standard_exponential(signal.shape)
    return volume.astype(np.float32), share


def test_the_gel_beside_the_sample_reads_its_own_attenuation(tmp_path):
    volume, share = slice_volume()
    source, out = tmp_path / "in.ome.zarr", tmp_path / "out.ome.zarr"
    save_omezarr(volume, source, (DZ_MM, 0.004, 0.004), chunks=(SHAPE[0], 64, 64), n_levels=0,
                 attributes={"slice_id": 0})
    correct_slice(source, out, AxialSettings(agarose_attenuation_per_mm=GEL_MU), workers=1)
    mapped = read_omezarr(output_paths(out)[1])[0].compute()
    distance = ndimage.distance_transform_edt(share == 0)  # A-lines from the nearest one holding tissue
    inside = ndimage.distance_transform_edt(share == 1)
    near = (distance > 0) & (distance <= 4)
    assert np.isfinite(mapped[near]).mean() > 0.2  # the gel beside the sample is still mapped in part
    assert np.nanmedian(mapped[near]) == pytest.approx(GEL_MU, rel=NEAR_TOLERANCE)
    assert not np.isfinite(mapped[(share > 0) & (share < 1)]).any()  # the A-lines holding both: not mapped
    assert np.nanmedian(mapped[distance > 4]) == pytest.approx(GEL_MU, rel=TOLERANCE)
    edge = (inside > 0) & (inside <= 4)
    assert np.nanmedian(mapped[edge]) == pytest.approx(TISSUE_MU, rel=TOLERANCE)
    assert np.nanmedian(mapped[inside > 4]) == pytest.approx(TISSUE_MU, rel=TOLERANCE)
    assert np.isfinite(mapped[inside > 4]).mean() > 0.9  # no change of class inside the disc: all mapped
