"""The benchmark-only ceiling of the foreign acquisitions (``benchmarks/foreign/ceiling.py``)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

FOREIGN = Path(__file__).resolve().parents[1] / "benchmarks" / "foreign"


@pytest.fixture
def ceiling(monkeypatch):
    monkeypatch.syspath_prepend(str(FOREIGN))
    for name in ("generate", "score", "ceiling"):
        sys.modules.pop(name, None)
    import ceiling as module

    yield module
    for name in ("generate", "score", "ceiling"):
        sys.modules.pop(name, None)


def test_the_exact_inverse_of_noise_free_tiles_is_the_speckled_truth(ceiling, tmp_path):
    """Without the noise floor, inverting the forward model gives reflectivity x speckle exactly.

    A tiny acquisition (2 slices of 2 x 2 tiles, vignetting, focus, attenuation and field curvature
    on) regenerated with the same draws: the inverse equals the speckled reflectivity voxel for voxel,
    its mean over the slices' voxels is the truth's (speckle of mean 1), each voxel's ``own`` slab is
    one slice's (at most its 4 tiles), the tissue below the second cut is imaged twice (``all``), and a
    phantom on disk that the seed does not generate is refused.
    """
    generate = ceiling.generate
    config = generate.Config(n_slices=2, grid=(2, 2), tile=(40, 24, 24), thickness=12.0, surface=6.0,
                             focus=15.0, rayleigh=8.0, stage_error=1.0, slice_shift=1.0, motor_glitch_um=0.0,
                             noise_floor=0.0)
    acquisition = tmp_path / "acq"
    generate.generate(acquisition, seed=3, cfg=config)
    ideal, _ = ceiling.ideal_volumes(acquisition, 0, tmp_path / "scratch")
    covered = ideal.counts["all"] > 0
    np.testing.assert_allclose(ideal.sums["inverse_all"], ideal.sums["speckle_all"], rtol=1e-4, atol=1e-6)
    truth = np.load(acquisition / "ground_truth" / "reflectivity.npy")
    mean = ideal.sums["speckle_all"][covered].sum() / ideal.counts["all"][covered].sum()
    assert mean == pytest.approx(truth[covered].mean(), rel=0.05)
    assert ideal.counts["own"].max() <= 4
    assert (ideal.counts["all"] > ideal.counts["own"]).sum() > 0.2 * covered.sum()
    np.save(acquisition / "ground_truth" / "reflectivity.npy", 2 * truth)  # not what this seed generates
    with pytest.raises(RuntimeError, match="differs"):
        ceiling.ideal_volumes(acquisition, 0, tmp_path / "scratch")
