"""The focus profile where the gel's signal is under the noise floor (session atten90, issue #11).

With the focus far below the cut (the independent generator's harsh B with the focus 90 planes deep), the
gel at the top of the tissue is a third of the noise floor: the measured agarose profile there is a small
difference that a little light other than the gel's bends by a large fraction, and a relative error of
the profile at the top of the tissue is read as attenuation over the attenuation map's whole window.
"""

import numpy as np

from linumpy.intensity import focus

DZ_UM = 1.5
DEPTH = 100
FOCUS_PX, RAYLEIGH_PX = 90.0, 14.0
NOISE_FLOOR = 20.0
CUT_PX = 15
GEL_AT_FOCUS = 150.0  # the generator's gel (reflectivity 0.06) at the focus, detector units
NOISE_GAIN = 0.02  # the focus gain under which the tissue sinks under the noise (the pipeline's floor)


def _true_focus() -> np.ndarray:
    z = np.arange(DEPTH, dtype=np.float64)
    return 1.0 / (1.0 + ((z - FOCUS_PX) / RAYLEIGH_PX) ** 2)


def _measured_gel(extra: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The agarose's mean signal per depth below a cut at ``CUT_PX`` (0.4 mm^-1), plus ``extra`` light."""
    z = np.arange(DEPTH, dtype=np.float64)
    gel = GEL_AT_FOCUS * _true_focus() * np.exp(-2 * 0.4 * DZ_UM / 1000 * (z - CUT_PX)) + extra
    support = np.where(z >= CUT_PX, 5000, 0)
    return np.where(support > 0, gel, np.nan), support


def _estimate(measured: np.ndarray, support: np.ndarray, noise_floor: float | None) -> focus.FocusEstimate:
    return focus.estimate_focus(measured, support, CUT_PX, DZ_UM, fit_decay=True, noise_gain=NOISE_GAIN,
                                noise_floor=noise_floor)


def _attenuation_error(profile: np.ndarray, first: int, planes: int = 40) -> float:
    """mm^-1 a tissue divided by ``profile`` gains over ``planes`` from ``first``: the log ratio's slope."""
    z = np.arange(first, first + planes)
    slope = np.polyfit(z, np.log(profile[z] / _true_focus()[z]), 1)[0]
    return float(slope / (2 * DZ_UM / 1000))


def test_where_the_gel_is_under_the_noise_floor_the_profile_is_the_trusted_model():
    z = np.arange(DEPTH, dtype=np.float64)
    bump = 0.18 * GEL_AT_FOCUS * _true_focus() * np.exp(-(((z - 24) / 4.0) ** 2))  # light other than the gel's
    measured, support = _measured_gel(bump)
    kept = _estimate(measured, support, None)  # measured wherever well sampled
    estimate = _estimate(measured, support, NOISE_FLOOR)
    first = CUT_PX + 3
    assert abs(_attenuation_error(kept.profile, first)) > 0.4  # the bump read as attenuation (-0.94)
    assert abs(_attenuation_error(estimate.profile, first)) < 0.15  # the true focus's (-0.01)
    faint = GEL_AT_FOCUS * _true_focus()[CUT_PX:] * np.exp(-2 * 0.4 * DZ_UM / 1000 * (z[CUT_PX:] - CUT_PX))
    assert estimate.qc["focus_faint_depths"] == int((faint + bump[CUT_PX:] < NOISE_FLOOR).sum())


def test_a_gel_above_the_noise_floor_keeps_its_measured_profile():
    z = np.arange(DEPTH, dtype=np.float64)
    ripple = 0.05 * GEL_AT_FOCUS * _true_focus() * np.sin(z / 6.0)  # a departure from the model the gel measures
    measured, support = _measured_gel(ripple)
    kept = _estimate(measured, support, None)
    estimate = _estimate(measured, support, 1.0)
    np.testing.assert_array_equal(estimate.profile, kept.profile)
    assert estimate.qc["focus_faint_depths"] == 0
