"""A gel whose cut is detected, split from the tissue under 4x: taken by its decay (session focus11, issue #11).

The foreign generator's ``odd2`` strip (the focus 50 planes below the cut, Rayleigh range 30 planes) detects
the gel's cut on every A-line, and its levels split 3.5-3.8x from the tissue's: under the first split's 4x,
and the split of every imaged A-line refused its dim class as gel for having a detected cut (the check that
keeps dim tissue out), so the focus correction was skipped on every slice. A gel barely attenuates (0.3-0.4
mm^-1) where tissue does (2 mm^-1 and more): the dim class's profile, fitted with the focus, tells them apart,
also under the 3x the surface check allows (the held-out ``deep`` block's gel split 2.2-2.5x from its tissue).
"""

import numpy as np
import pytest
from test_axial_corr import DZ_MM, TRUE_PLANE, background_of, deep_focus_volume, two_tissues_no_gel

from linumpy.intensity import focus, surface
from linumpy.intensity.axial import AxialSettings, _focus_profile, correct_slice
from linumpy.io.zarr import save_omezarr
from linumpy.qc.records import qc_record_path, read_qc_record

DZ_UM = DZ_MM * 1000
#: odd2's geometry on the test volumes: the cut 11-16 planes deep, the focus 50 planes below it, Rayleigh 30.
FOCUS_PX, RAYLEIGH_PX = 62.0, 30.0
#: The gel 0.12 of the tissue's backscatter: its cut detected, its levels 3.7x under the tissue's.
GEL_REFLECTIVITY = 0.12


def test_a_gel_near_the_focus_whose_cut_is_detected_gives_the_true_focus():
    """The gel's cut is detected on every A-line and its levels lie 3.7x under the tissue's: both splits
    refused it before (the first for the contrast, the second for the detected cut). Its profile decays at
    the gel's 0.3 mm^-1 with the focus: the split takes it, and the focus estimated from it reads the true
    focal plane and Rayleigh range."""
    volume, _, tissue = deep_focus_volume(GEL_REFLECTIVITY, focus_px=FOCUS_PX, rayleigh_px=RAYLEIGH_PX)
    assert np.isfinite(surface.detect_surface(volume)[~tissue]).mean() > 0.95  # the precondition: cut detected
    stats, level = background_of(volume)
    first, unchecked, gel = stats.level_split(), stats.gel_split(), stats.gel_split(dz_um=DZ_UM)
    assert level is None and first.class_ratio < focus.MIN_CLASS_RATIO
    assert unchecked.threshold is None and unchecked.surfaceless_fraction < focus.MIN_GEL_SURFACELESS_FRACTION
    assert gel.threshold is not None and gel.decay_checked and gel.gel_decay
    assert abs(gel.decay_per_mm - 0.3) < 2 * gel.decay_sd_per_mm  # the gel's attenuation, 0.3 mm^-1
    estimate, mode = _focus_profile(stats, [first, gel], 1.0, stats.noise_floor(stats.tissue_cells(gel.threshold)),
                                    AxialSettings(), 12.0, DZ_UM, TRUE_PLANE, 1, 4.0)
    assert mode == "background" and estimate.qc["focus_level_decay_per_mm"] == round(gel.decay_per_mm, 4)
    assert abs(estimate.qc["focus_model_center_um"] / DZ_UM - FOCUS_PX) < 1.0
    assert abs(estimate.qc["focus_model_width_um"] / DZ_UM / RAYLEIGH_PX - 1) < 0.05


@pytest.mark.parametrize("focus_px", [70.0, 80.0, 90.0])
def test_dim_tissue_around_the_sample_decays_as_no_gel_and_is_refused(focus_px):
    """No gel: a bright disc in tissue 8x dimmer (3 mm^-1), its cut detected, holding the whole imaged edge.
    Its levels split 3-3.9x apart: what the edge and contrast checks take for a gel. Its decay, fitted with
    the focus, reads the dim tissue's 3 mm^-1: no gel, no focus estimate, the mode saying why."""
    stats, level = background_of(two_tissues_no_gel("ring", focus_px=focus_px))
    gel = stats.gel_split(dz_um=DZ_UM)
    assert level is None and gel.class_ratio >= focus.MIN_GEL_CLASS_RATIO
    assert gel.edge_fraction >= focus.MIN_GEL_EDGE_FRACTION  # the precondition: around the sample
    assert gel.threshold is None and gel.decay_checked and not gel.gel_decay
    assert abs(gel.decay_per_mm - 3.0) < 0.4
    estimate, mode = _focus_profile(stats, [stats.level_split(), gel], 1.0, stats.noise_floor(), AxialSettings(),
                                    0.0, DZ_UM, TRUE_PLANE, 1, 4.0)
    assert estimate.profile is None and "no gel around the sample" in mode
    assert f"its profile decays at {gel.decay_per_mm:.2f} +- {gel.decay_sd_per_mm:.2f} mm^-1" in mode


def test_a_dim_class_beside_the_tissue_is_refused_without_a_decay_fit():
    """Dim tissue beside the bright (half the edge) fails the edge check: its decay is not fitted."""
    stats, _ = background_of(two_tissues_no_gel("half"))
    gel = stats.gel_split(dz_um=DZ_UM)
    assert gel.threshold is None and gel.edge_fraction < focus.MIN_GEL_EDGE_FRACTION
    assert not gel.decay_checked and gel.decay_per_mm is None


def test_the_axial_correction_of_a_slice_takes_the_gel_by_its_decay(tmp_path):
    """The whole step: the QC record states the gel's decay, the focus read, and no flag."""
    volume, _, _ = deep_focus_volume(GEL_REFLECTIVITY, focus_px=FOCUS_PX, rayleigh_px=RAYLEIGH_PX)
    source = tmp_path / "in.ome.zarr"
    save_omezarr(volume, source, (DZ_MM, 0.004, 0.004), n_levels=0)
    out = tmp_path / "out.ome.zarr"
    correct_slice(source, out, n_levels=0, workers=1)
    metrics = read_qc_record(qc_record_path(out))["metrics"]
    assert metrics["focus_mode"] == "background" and metrics["focus_level_source"] == focus.EVERY_LEVEL
    assert metrics["focus_level_decay_per_mm"] + 2 * metrics["focus_level_decay_sd_per_mm"] <= 1.0
    assert abs(metrics["focus_model_center_um"] / DZ_UM - FOCUS_PX) < 1.0


def test_a_gel_under_3x_from_the_tissue_is_taken_by_its_decay_alone():
    """The focus 80 planes deep (68 below the cut) dims the tissue's brightest band toward the gel's: a gel 0.15
    of the tissue's backscatter splits 2.2x from it (the held-out ``deep`` block: 2.2-2.5x), under the 3x the
    surface check allows. Its decay, fitted with the focus, is the gel's: taken, the true focus read."""
    volume, _, _ = deep_focus_volume(0.15)
    stats, level = background_of(volume)
    gel = stats.gel_split(dz_um=DZ_UM)
    assert level is None and gel.class_ratio < focus.MIN_GEL_CLASS_RATIO  # the precondition: under 3x
    assert gel.threshold is not None and gel.min_class_ratio == focus.MIN_GEL_DECAY_CLASS_RATIO and gel.gel_decay
    estimate, mode = _focus_profile(stats, [stats.level_split(), gel], 1.0,
                                    stats.noise_floor(stats.tissue_cells(gel.threshold)), AxialSettings(), 12.0,
                                    DZ_UM, TRUE_PLANE, 1, 4.0)
    assert mode == "background"
    assert abs(estimate.qc["focus_model_center_um"] / DZ_UM - 80.0) < 1.0
    assert abs(estimate.qc["focus_model_width_um"] / DZ_UM / 14.0 - 1) < 0.05


def test_dim_tissue_under_3x_from_the_bright_is_refused_by_its_decay():
    """No gel, the focus 94 planes deep (82 below the cut): tissue 8x dimmer than the bright disc it surrounds
    splits 2.8x from it, under 3x. Its decay is the tissue's (3 mm^-1), not a gel's: refused, no focus
    estimate, the mode saying that split was a gel by its decay only."""
    stats, _ = background_of(two_tissues_no_gel("ring", focus_px=94.0))
    gel = stats.gel_split(dz_um=DZ_UM)
    assert gel.min_class_ratio == focus.MIN_GEL_DECAY_CLASS_RATIO and gel.class_ratio < focus.MIN_GEL_CLASS_RATIO
    assert gel.threshold is None and gel.decay_checked and abs(gel.decay_per_mm - 3.0) < 0.5
    estimate, mode = _focus_profile(stats, [stats.level_split(), gel], 1.0, stats.noise_floor(), AxialSettings(),
                                    0.0, DZ_UM, TRUE_PLANE, 1, 4.0)
    assert estimate.profile is None and "(under 3x: a gel by its decay only)" in mode
