"""The map's window stop is not chosen on the texture of the signal it fits (issue #11, session window63).

The tissue's texture (the foreign generator's grey classes: 18 % band-passed between 8 and 40 um, correlated
over 5-27 planes along depth) explains part of every log signal. When the split that stops each A-line's window
was tested (and its ramp placed) on boxes holding the A-line's own box, the stop landed where that signal dips
ahead of a rise, and the window ending in the dip read high: homogeneous textured tissue 5 /mm read 5.39 over
the windows the texture stopped (17-22 % of the A-lines), 5 /mm over a brighter grey 7 read 5.37 over the
stopped windows (session atten62's synthetic block; the foreign default seed 176's grey 3 over its full range
+22 %). The split is now found on the neighbours' box without the A-line's own. Noise-free textured blocks
through the axial step's own path (:func:`linumpy.intensity.axial.correct_block`), four seeds each.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from linumpy.intensity.axial import AxialSettings, SliceStatistics, correct_block

DZ_MM = 0.0015
SAMPLING_UM = (1.5, 4.0, 4.0)
N_Z, SIZE, HALO = 100, 72, 12
BOUNDARY = 50
SEEDS = range(4)


def texture(rng: np.random.Generator) -> np.ndarray:
    """The foreign generator's grey texture: 1 + 0.18 x white noise band-passed between 8 and 40 um."""
    noise = rng.standard_normal((N_Z, SIZE, SIZE)).astype(np.float32)
    band = (ndimage.gaussian_filter(noise, [8.0 / s for s in SAMPLING_UM])
            - ndimage.gaussian_filter(noise, [40.0 / s for s in SAMPLING_UM]))
    return np.clip(1.0 + 0.18 * (band - band.mean()) / band.std(), 0.2, None)


def textured(seed: int, mu_top: float, mu_bottom: float, brightness: float) -> np.ndarray:
    """Textured tissue from the cut (plane 0): ``mu_top`` down to :data:`BOUNDARY`, then a region ``brightness``
    times as reflective attenuating ``mu_bottom`` (round-trip decay, no speckle, no noise)."""
    k = np.arange(N_Z, dtype=float)
    mu = np.where(k < BOUNDARY, mu_top, mu_bottom)
    transmission = np.exp(-2 * DZ_MM * np.concatenate([[0.0], np.cumsum(mu)[:-1]]))
    line = np.where(k < BOUNDARY, 1.0, brightness) * transmission
    return (texture(np.random.default_rng(seed)) * line[:, None, None]).astype(np.float32)


def mapped(data: np.ndarray):
    """The map of the block's inner A-lines (a halo of :data:`HALO` for the boxes), surface at plane 0."""
    stats = SliceStatistics(noise_floor=0.0, focus_profile=None, focus_mode="none", focus_qc={}, focus_flags=[],
                            plane=None, mean_surface_px=0.0, surface_fraction=1.0, tissue_level=None)
    inner = (slice(HALO, SIZE - HALO),) * 2
    return correct_block(data, np.zeros((SIZE, SIZE)), stats, AxialSettings(), DZ_MM, 0, N_Z,
                         origin=(HALO, HALO), inner=inner)[1]


@pytest.mark.parametrize(("mu_bottom", "brightness"), [(5.0, 1.0), (7.0, 0.75 / 0.55)],
                         ids=["homogeneous", "over_grey_7"])
def test_windows_stopped_in_textured_tissue_read_its_attenuation(mu_bottom, brightness):
    """5 /mm, homogeneous or over a brighter, more attenuating grey 7 at plane 50: the mean over the A-lines
    whose window was stopped is within 4 % of 5 /mm (before: 5.39 / 5.37, +8 / +7 %), and the whole map's
    median within 5 %. Stated tolerance: the texture's realization over 4 x 48 x 48 A-lines moves the mean of
    the unstopped homogeneous A-lines by 0.3 %; the rest is the stop's."""
    stopped, medians = [], []
    for seed in SEEDS:
        result = mapped(textured(seed, 5.0, mu_bottom, brightness))
        stopped.append(result.mu[result.shortened])
        medians.append(np.nanmedian(result.mu))
    stopped = np.concatenate(stopped)
    assert stopped.size > 0.1 * len(SEEDS) * (SIZE - 2 * HALO) ** 2
    assert abs(np.mean(stopped) / 5.0 - 1) < 0.04, np.mean(stopped)
    assert abs(np.mean(medians) / 5.0 - 1) < 0.05, medians
