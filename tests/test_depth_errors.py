"""The oracles of ``bench_depth_errors.py --oracles``: each truth it substitutes is the truth.

Synthetic A-lines with known attenuation and reflectivity (ground truth by construction): where the
backscatter is proportional to the attenuation (Vermeer's premise) and the tail is continued by the
truth, Vermeer's gain is the inverse round-trip transmission; where it is not, it is not.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from linumpy.simulate.imaging import transmission

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_depth_errors import LONG_PX, label_averaged, oracle_corrections, tissue_labels  # noqa: E402

N_Z = 60
DZ_UM = 1.5
CLASSES = [{"attenuation_per_mm": 2.0, "reflectivity": 0.35}, {"attenuation_per_mm": 8.0, "reflectivity": 1.0}]


def _layers(albedo_lower: float) -> tuple[np.ndarray, ...]:
    """Two layers (4 then 8 mm^-1 from depth 20) below a cut at depth 5, imaged to ``N_Z`` and continued."""
    depth = np.arange(N_Z + LONG_PX)[:, None, None] * np.ones((1, 12, 12))
    present = depth >= 5
    mu = np.where(depth < 20, 4.0, 8.0)
    reflectivity = mu * np.where(depth < 20, 1.0, albedo_lower)
    true_t = transmission(mu, present, DZ_UM)
    noise_free = (reflectivity * true_t * present).astype(np.float32)
    return noise_free, present, mu, reflectivity, true_t


def _deviation(corrected: np.ndarray, reflectivity: np.ndarray) -> float:
    ratio = corrected[5:N_Z] / reflectivity[5:N_Z]
    return float(np.abs(ratio / ratio[0] - 1).max())


def test_true_tail_and_long_model_exact_where_backscatter_follows_attenuation():
    noise_free, present, mu, reflectivity, true_t = _layers(1.0)
    labels = tissue_labels(reflectivity[:N_Z], mu[:N_Z], CLASSES)
    out = oracle_corrections(noise_free[:N_Z], noise_free, present, labels, true_t)
    # within the discretisation of Vermeer's sum against the Beer-Lambert product (measured: up to 1.7%)
    for name in ("true_tail", "label_tail", "model_line_long", "true_surface", "label_avg", "no_lateral"):
        assert _deviation(out[name], reflectivity) < 0.02, name
    assert _deviation(out["true_atten"], reflectivity) < 1e-4


def test_long_model_errs_where_backscatter_does_not_follow_attenuation():
    noise_free, present, mu, reflectivity, true_t = _layers(0.12)  # dark tissue below: 0.12x the backscatter
    labels = tissue_labels(reflectivity[:N_Z], mu[:N_Z], CLASSES)
    out = oracle_corrections(noise_free[:N_Z], noise_free, present, labels, true_t)
    assert _deviation(out["true_atten"], reflectivity) < 1e-4
    # Vermeer's premise broken: every substitution of the tail or of the average still errs (measured: > 100%)
    for name in ("chain", "true_tail", "label_tail", "model_line_long"):
        assert _deviation(out[name], reflectivity) > 0.5, name


def test_tissue_labels_nearest_class_and_dark_apart():
    mu = np.array([1.5, 2.5, 7.0, 9.0])
    reflectivity = np.array([0.35, 0.05, 1.0, 0.1])
    assert tissue_labels(reflectivity, mu, CLASSES).tolist() == [0, 1, 2, 3]


def test_label_average_stays_within_each_label():
    sums = np.ones((3, 10, 10), np.float32)
    sums[:, :, 5:] = 3.0
    sums[0, 0, 0] = 2.0  # averaged with its own label only
    labels = np.zeros((2, 10, 10), int)
    labels[:, :, 5:] = 1
    out = label_averaged(sums, labels)
    assert np.allclose(out[:, :, 5:], 3.0)
    assert np.allclose(out[1:, :, :5], 1.0) and out[0, :, :5].max() < 2.0 and out[0, :, :5].min() >= 1.0
