"""The gel far above the focus: mapped from the cut plane away from the sample, and flagged (issue #11).

A slice of gel (0.4 mm^-1, reflectivity 0.06) around a tissue disc (3 mm^-1, 10x brighter) holding a dark
disc (2 mm^-1, 2x the gel) at its edge, under a Lorentzian focus (Rayleigh range 14 planes), speckle and a
noise floor. With the focus 57 or 72 planes below the cut (the independent generator's harsh B focused 90
planes deep) the gel's signal at the cut is under the noise floor and its cut is detected on a few % of its
A-lines, mostly where the disc's light lifts it; the gel A-lines fitted from those surfaces read the disc's
light. The record counts the A-lines without support (too few detected surfaces of their class around them,
``attenuation_map.surface_support``, rim67) and flags the slice. Since gelrim those without a surface of
their own or a neighbour's are fitted from the slice's cut plane (``attenuation_map.planed_surface``): the gel
away from the disc, unmapped before, is mapped from its own signal (within 15 % of the truth 57 planes above
the focus; 72 planes above, most of it too faint, the rest +40 %, against 3.2x before). With the focus 27
planes below the cut the gel is seen everywhere: mapped within 15 %, nothing planed, nothing flagged.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from linumpy.intensity.axial import AxialSettings, correct_slice, output_paths
from linumpy.io.zarr import read_omezarr, save_omezarr

DZ_MM = 0.0015
SHAPE = (100, 120, 120)
CUT = 18.0
GEL_MU, TISSUE_MU, DARK_MU = 0.4, 3.0, 2.0
#: Relative error allowed (issue #11's 15 %).
TOLERANCE = 0.15


def far_focus_slice(focus: float, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The slice ``(z, y, x)`` and each region's share of every A-line (discs antialiased over 4 x 4)."""
    rng = np.random.default_rng(seed)
    n_z, n_y, n_x = SHAPE
    sub = (np.arange(4 * n_y) + 0.5) / 4 - n_y / 2 - 0.3
    inside = np.hypot(sub[:, None], sub[None, :] + 0.2) < 35
    dark_disc = np.hypot(sub[:, None] + 22, sub[None, :] + 22) < 12
    shares = {name: mask.reshape(n_y, 4, n_x, 4).mean(axis=(1, 3))
              for name, mask in (("tissue", inside & ~dark_disc), ("dark", inside & dark_disc), ("gel", ~inside))}
    yy, xx = np.mgrid[0:n_y, 0:n_x]
    depth_mm = (np.arange(n_z)[:, None, None] - np.ceil(CUT + 0.06 * (yy - n_y / 2) - 0.05 * (xx - n_x / 2))) * DZ_MM
    below = np.clip(depth_mm, 0, None)
    signal = (shares["tissue"] * 0.6 * np.exp(-2 * TISSUE_MU * below) + shares["dark"] * 0.12
              * np.exp(-2 * DARK_MU * below) + shares["gel"] * 0.06 * np.exp(-2 * GEL_MU * below))
    signal[depth_mm < 0] = 0.0
    gain = 1.0 / (1.0 + ((np.arange(n_z)[:, None, None] - focus) / 14.0) ** 2)
    volume = signal * gain * rng.standard_exponential((2, *signal.shape)).mean(axis=0)
    volume += 0.008 * rng.standard_exponential(signal.shape)
    return volume.astype(np.float32), shares


def corrected_map(tmp_path, focus: float) -> tuple[np.ndarray, dict[str, np.ndarray], dict]:
    """The attenuation map of :func:`far_focus_slice`, the shares and the QC record."""
    volume, shares = far_focus_slice(focus)
    source, out = tmp_path / "in.ome.zarr", tmp_path / "out.ome.zarr"
    save_omezarr(volume, source, (DZ_MM, 0.004, 0.004), chunks=(SHAPE[0], 64, 64), n_levels=1,
                 attributes={"slice_id": 0}, overwrite=True)
    correct_slice(source, out, AxialSettings(), workers=1, overwrite=True)
    record = json.loads((tmp_path / "out_qc.json").read_text())
    return read_omezarr(output_paths(out)[1])[0].compute(), shares, record


def test_the_gel_far_above_the_focus_is_flagged_as_not_measured(tmp_path):
    mapped, shares, record = corrected_map(tmp_path, focus=90.0)
    gel, tissue = shares["gel"] == 1, shares["tissue"] == 1
    metrics, flags = record["metrics"], record["flags"]
    assert np.nanmedian(mapped[tissue]) == pytest.approx(TISSUE_MU, rel=TOLERANCE)
    assert np.isfinite(mapped[tissue]).mean() > 0.8  # the tissue keeps its map
    assert np.isfinite(mapped[gel]).mean() < 0.25  # the gel: mostly too faint to map (main: 93 of 10 448 mapped)
    assert metrics["attenuation_map_cut_plane_lines"] > 0.1 * gel.sum()  # from the cut plane, away from the disc
    assert abs(np.nanmedian(mapped[gel]) / GEL_MU - 1) < 0.5  # +38 % (main: 3.2x), outside 15 %: flagged
    assert metrics["attenuation_map_dim_sparse_fraction"] > 0.8
    assert metrics["attenuation_map_sparse_fraction"] > 0.5
    assert any(flag.startswith("attenuation not measured") for flag in flags)


def test_the_gel_away_from_the_sample_is_mapped_from_the_cut_plane(tmp_path):
    mapped, shares, record = corrected_map(tmp_path, focus=75.0)
    gel = shares["gel"] == 1
    away = gel & (ndimage.distance_transform_edt(gel) > 16)  # beyond the surfaces the disc's light lifts
    assert np.isfinite(mapped[away]).mean() > 0.8  # main: none (no surface within 8 A-lines)
    assert np.nanmedian(mapped[away]) == pytest.approx(GEL_MU, rel=TOLERANCE)
    assert np.nanmedian(mapped[gel]) == pytest.approx(GEL_MU, rel=TOLERANCE)
    assert np.nanmedian(mapped[shares["tissue"] == 1]) == pytest.approx(TISSUE_MU, rel=TOLERANCE)
    assert record["metrics"]["attenuation_map_cut_plane_lines"] > 0.5 * gel.sum()
    assert any(flag.startswith("attenuation not measured") for flag in record["flags"])


def test_the_gel_seen_near_the_focus_is_mapped_and_not_flagged(tmp_path):
    mapped, shares, record = corrected_map(tmp_path, focus=45.0)
    gel = shares["gel"] == 1
    assert np.isfinite(mapped[gel]).mean() > 0.9
    assert np.nanmedian(mapped[gel]) == pytest.approx(GEL_MU, rel=TOLERANCE)
    assert np.nanmedian(mapped[shares["tissue"] == 1]) == pytest.approx(TISSUE_MU, rel=TOLERANCE)
    assert record["metrics"]["attenuation_map_sparse_fraction"] == 0
    assert record["metrics"]["attenuation_map_cut_plane_lines"] == 0
    assert not any(flag.startswith("attenuation not measured") for flag in record["flags"])
