"""The axial voxel refined from the residuals of a plan at a voxel named slightly off (linumpy.stack.voxel)."""

import numpy as np
import pytest

from linumpy.stack.voxel import refined_axial_voxel_um


def _record(absolute_um, true_um, read_um, noise_um):
    """A plan's record whose steps were registered at ``read_um`` planes of a ``true_um`` voxel (first step
    unconfident), the registered steps off by ``noise_um``."""
    depths = np.asarray(absolute_um, float)
    slices = [{"depth": {"absolute_um": float(depths[0]), "residual_um": None}},
              {"depth": {"absolute_um": float(depths[1]), "residual_um": None}}]
    for k in range(2, len(depths)):
        step = depths[k] - depths[k - 1]
        registered = step / true_um * read_um + noise_um[k]
        slices.append({"depth": {"absolute_um": float(depths[k]), "residual_um": registered - step}})
    return {"slices": slices}


@pytest.mark.parametrize("true_um, read_um", [(2.0, 1.93), (2.0, 2.08), (3.0, 2.9)])
def test_refined_voxel_recovers_the_true_one(true_um, read_um):
    rng = np.random.default_rng(3)
    absolute = np.cumsum([0.0, 57.5, 60.5, 58.0, 56.8, 61.2])
    record = _record(absolute, true_um, read_um, rng.normal(0.0, 0.2, absolute.size))
    assert refined_axial_voxel_um(record, read_um) == pytest.approx(true_um, abs=0.02)


def test_no_refinement_at_the_true_voxel():
    """At the true voxel the residuals straddle zero (odd 418: 1.55 to -0.20 um): nothing is refined."""
    absolute = np.cumsum([0.0, 57.5, 60.5, 58.0, 56.8])
    noise = np.array([0.0, 0.0, 1.55, 0.29, -0.20])
    assert refined_axial_voxel_um(_record(absolute, 2.0, 2.0, noise), 2.0) is None


def test_no_refinement_for_small_misses():
    """Residuals on one side but under half a voxel name nothing."""
    absolute = np.cumsum([0.0, 57.5, 60.5, 58.0, 56.8])
    assert refined_axial_voxel_um(_record(absolute, 2.0, 1.99, np.zeros(5)), 1.99) is None


def test_flag_names_the_refined_voxel():
    from linumpy.stack.quality import _axial_voxel_flags

    flag = _axial_voxel_flags({"assumed_um": 1.5, "implied_um": 1.93, "refined_um": 1.99, "used_um": 1.99,
                               "placement": "implied voxel", "probe_z_tolerance_um": None})[0]
    assert "likely 1.93 um, 1.99 um by the steps read at it" in flag and "planes at 1.99 um" in flag
