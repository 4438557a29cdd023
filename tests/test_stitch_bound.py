"""Position information of simulated tiles (linumpy.simulate.stitch_bound), on tiny mosaics."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy import special

from linumpy.simulate.stitch_bound import speckle_correlation_area, tile_bound
from linumpy.simulate.stitch_matrix import get_condition, sample_tile, simulate_mosaic


@pytest.fixture(scope="module")
def mosaic():
    return simulate_mosaic(get_condition("speckle per tile", grid=(2, 2)), seed=3)


def test_noise_model_matches_the_simulated_projections(mosaic):
    """Log of a projection over its noise-free intensity: variance trigamma(depth), the speckle's correlation area.

    The area is measured on each of the four tiles (standard deviation ~0.24 from tile to tile) and averaged:
    2.71 here, 2.73 over 24 tiles of seeds 3-8 (the exact area of the log of 6 looks is 2.81; the model's, of
    the intensity, 2.93). Before the speckle was filtered periodically (session wrapspk) its bright tile
    borders added 0.3 (3.04 over the same 24 tiles) and tile (0, 0) alone was measured.
    """
    areas = []
    for tile, truth in sorted(mosaic.truth.items()):
        origin = truth + mosaic.scene_offset_px
        intensity = (np.maximum(sample_tile(mosaic.scene, origin, mosaic.condition.tile_px), 1e-3)
                     * mosaic.illumination)
        residual = np.log(np.maximum(mosaic.projections()[tile], 1e-3)) - np.log(intensity)
        residual -= residual.mean()
        assert residual.var() == pytest.approx(special.polygamma(1, mosaic.condition.depth), rel=0.1)
        spectrum = np.abs(np.fft.fft2(residual)) ** 2
        autocorrelation = np.fft.ifft2(spectrum).real / np.fft.ifft2(spectrum).real[0, 0]
        areas.append(sum(autocorrelation[i, j] for i in range(-3, 4) for j in range(-3, 4)))
    assert np.mean(areas) == pytest.approx(speckle_correlation_area(), rel=0.15)
    assert speckle_correlation_area() == pytest.approx(2 * np.pi * 0.7 ** 2, rel=0.1)


def test_textured_tile_is_bounded_and_flat_content_holds_no_information(mosaic):
    bound = tile_bound(mosaic, (0, 0), search_px=8)
    assert bound.n_neighbours == 2
    assert 0 < bound.crb_px < 0.5
    assert bound.known_separation > 2
    assert bound.expected_evidence >= bound.expected_margin >= 2
    assert bound.placeable
    flat = replace(mosaic, scene=np.full_like(mosaic.scene, 0.5))
    empty = tile_bound(flat, (0, 0), search_px=8)
    assert empty.crb_px == np.inf
    assert empty.known_separation == pytest.approx(0, abs=1e-6)
    assert empty.expected_margin == pytest.approx(0, abs=1e-6)
    assert not empty.placeable


def test_bound_scales_with_the_noise(mosaic):
    """Without additive noise the Fisher information is inversely proportional to trigamma(depth)."""
    quiet = replace(mosaic, condition=replace(mosaic.condition, noise=0.0))
    deeper = replace(quiet, condition=replace(quiet.condition, depth=4 * quiet.condition.depth))
    ratio = np.sqrt(special.polygamma(1, deeper.condition.depth) / special.polygamma(1, quiet.condition.depth))
    shallow_bound, deep_bound = (tile_bound(m, (1, 1), search_px=4) for m in (quiet, deeper))
    assert deep_bound.crb_px == pytest.approx(ratio * shallow_bound.crb_px, rel=1e-6)
    assert deep_bound.known_separation == pytest.approx(shallow_bound.known_separation / ratio, rel=1e-6)
