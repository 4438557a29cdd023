"""The stack diagnosis of ``bench_stack.py --matrix --diagnose``: each oracle removes the error it is built for.

Synthetic volumes with one known error each (ground truth by construction): a per-plane scale, a lateral
field that changes from slab to slab, independent speckle, one slab placed half a voxel off.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

from linumpy.simulate.scoring import ScoredVolume

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from stack_diagnosis import diagnose, slab_layout  # noqa: E402

STARTS = [0, 8, 16]


def _truth(shape: tuple[int, int, int] = (24, 32, 32)) -> np.ndarray:
    texture = ndimage.gaussian_filter(np.random.default_rng(1).standard_normal(shape), (1.0, 1.5, 1.5))
    return np.exp(0.6 * texture / texture.std())


def _diagnose(volume: np.ndarray, reference: np.ndarray) -> dict:
    return diagnose(ScoredVolume(volume, reference, reference, reference > 0.2, 10.0, STARTS))


def test_slab_layout_gives_each_plane_its_slab_and_depth():
    slab, t = slab_layout(STARTS, 24)
    assert slab.tolist() == [0] * 8 + [1] * 8 + [2] * 8
    assert t[[0, 4, 8, 23]].tolist() == [0.0, 0.5, 0.0, 0.875]


def test_each_oracle_removes_its_own_error():
    reference = _truth()
    slab, _ = slab_layout(STARTS, reference.shape[0])
    planes = reference * (1 + 0.3 * np.sin(np.arange(reference.shape[0])))[:, None, None]
    result = _diagnose(planes, reference)
    assert result["ncc"] < 0.97 and result["plane"] > 0.999, result

    fields = ndimage.gaussian_filter(np.random.default_rng(2).standard_normal((3, 32, 32)), (0, 5, 5))
    lateral = reference * np.exp(0.4 * fields / fields.std())[slab]
    result = _diagnose(lateral, reference)
    assert result["ncc"] < 0.95 and result["slab_map"] > 0.99 and result["volume_map"] < result["slab_map"], result
    assert result["lateral_s2"] > 0.99 and result["plane"] < 0.97, result

    speckled = reference * np.random.default_rng(3).gamma(4.0, 0.25, reference.shape)
    result = _diagnose(speckled, reference)
    assert result["lowpass_s1"] > result["ncc"] + 0.05 and result["slab_map"] < result["ncc"] + 0.01, result


def test_placement_finds_a_slab_half_a_voxel_off():
    reference = _truth()
    volume = reference.copy()
    volume[8:16] = ndimage.shift(reference, (0.0, 0.0, 0.5), order=1, mode="nearest")[8:16]
    result = _diagnose(volume, reference)
    assert result["placement_shift_vox"] == [[0.0, 0.0, 0.0], [0.0, 0.0, 0.5], [0.0, 0.0, 0.0]], result
    assert result["placement"] > 0.999 > result["ncc"], result
