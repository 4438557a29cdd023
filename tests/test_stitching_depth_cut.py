"""The depth check's cut under a deep focus (linumpy.stitching.depth_check.tissue_cut)."""

from __future__ import annotations

import numpy as np
import pytest

from linumpy.stitching.depth_check import tissue_cut, tissue_ranges

DEPTH, FLOOR = 100, 15.0


def _profile(cut: int, focus: float, rayleigh: float, attenuation: float = 0.01) -> np.ndarray:
    """Plane means of a tile: the noise floor above ``cut``, below it the tissue's level times a Lorentzian focus
    ``focus`` planes deep and the attenuation through the planes below the cut, over the floor."""
    z = np.arange(DEPTH, dtype=float)
    tissue = 300.0 * np.exp(-attenuation * (z - cut)) / (1 + ((z - focus) / rayleigh) ** 2)
    return FLOOR + np.where(z >= cut, tissue, 0.0)


@pytest.mark.parametrize(("cut", "focus", "rayleigh"), [(20, 70, 16), (24, 70, 16), (18, 45, 20), (12, 30, 20)])
def test_the_cut_is_the_tissue_surface_however_deep_the_focus(cut, focus, rayleigh):
    profile = _profile(cut, focus, rayleigh)
    assert tissue_cut(profile) == cut
    ranges = tissue_ranges(profile, 3)
    assert ranges[0].start == cut and ranges[-1].stop == DEPTH


def test_a_deep_focus_leaves_the_planes_above_it_in_the_first_range():
    """The ranges split the whole tissue: the first holds the planes between the surface and the focus's
    shoulder, where half the largest plane mean would have started it."""
    profile = _profile(20, 70, 16)
    half_height = int(np.argmax(profile >= 0.5 * profile.max()))
    assert half_height > 45
    assert tissue_ranges(profile, 3)[0].start < half_height - 20
