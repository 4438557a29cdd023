"""The normalisation's speckle cap (``NormalizeSettings.speckle_cap``, docs/intensity.md, *A speckle cap
relative to the local level*): against the true reflectivity of a speckled phantom, and block by block."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from scipy import ndimage

from linumpy.intensity import normalize, slice_normalization
from linumpy.intensity.slice_normalization import NormalizeSettings, normalize_slice
from linumpy.io.zarr import read_omezarr, save_omezarr
from linumpy.qc.records import qc_record_path, read_qc_record

RESOLUTION = (3.0, 4.0, 4.0)
#: Levels of the phantom's tissues (a dim, a mid and a bright one, the bright one the smallest) and its gel.
LEVELS = (0.35, 0.55, 1.0)
GEL = 0.02


def _phantom(seed: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(true reflectivity, speckled volume, tissue label 0-3) of a (48, 72, 72) slice: three tissues in lateral
    bands (the bright one a quarter of the tissue) with a weak texture, gel around; gamma speckle of two frames."""
    rng = np.random.default_rng(seed)
    shape = (48, 72, 72)
    labels = np.zeros(shape, np.uint8)
    labels[:, 8:64, 8:30], labels[:, 8:64, 30:50], labels[:, 8:64, 50:64] = 1, 2, 3
    texture = 1.0 + 0.15 * ndimage.gaussian_filter(rng.standard_normal(shape), 3.0) / 0.035
    truth = np.where(labels > 0, np.asarray((GEL, *LEVELS), np.float32)[labels] * np.clip(texture, 0.5, 1.5), GEL)
    speckle = rng.gamma(2.0, 0.5, shape)
    return truth.astype(np.float32), (truth * speckle).astype(np.float32), labels


def _normalized(tmp_path, volume: np.ndarray, cap: float) -> tuple[np.ndarray, dict]:
    source, out = tmp_path / f"in_{cap}.ome.zarr", tmp_path / f"out_{cap}.ome.zarr"
    if not source.exists():
        save_omezarr(volume, source, RESOLUTION, n_levels=0)
    attributes = normalize_slice(source, out, NormalizeSettings(speckle_cap=cap), n_levels=1)
    return np.asarray(read_omezarr(out)[0], np.float64), attributes


def _level_ratios(values: np.ndarray, truth: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each tissue's mean over its truth's, relative to the dim tissue's (interior voxels)."""
    interior = [ndimage.binary_erosion(labels == k, iterations=3) for k in (1, 2, 3)]
    ratios = np.array([values[m].mean() / truth[m].mean() for m in interior])
    return ratios / ratios[0]


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def test_speckle_cap_keeps_each_tissue_level_and_gains_ncc(tmp_path):
    """The percentile clip alone takes the bright tissue's speckle tail: its level falls against the dim one's;
    capped at twice the local mean first, every tissue loses the same share of its tail and the clip that
    follows takes less from the bright one; the volume averaged over 3 x 3 x 3 voxels (the scale the volume is
    scored on) matches the truth better."""
    truth, volume, labels = _phantom()
    tissue = labels > 0
    results = {}
    for cap in (0.0, 2.0):
        out, attributes = _normalized(tmp_path, volume, cap)
        low, high = attributes["normalize_values"]
        signal = out * (high - low) + low  # the percentile map undone (its clip stays)
        coarse = ndimage.uniform_filter(signal, 3)
        results[cap] = (_level_ratios(signal, truth, labels),
                        _ncc(coarse[tissue], ndimage.uniform_filter(truth, 3)[tissue]))
    (plain_levels, plain_ncc), (capped_levels, capped_ncc) = results[0.0], results[2.0]
    # measured: bright / dim level 0.873 plain, 0.905 capped with its local mean restored (0.922 capped alone: the
    # restored tail meets the p95 clip, tissue voxels at 1 3.9 -> 4.9 %); NCC +0.008 (0.9466 -> 0.9546)
    assert plain_levels[2] < 0.90  # the bright tissue's tail clipped: its level 10 %+ below the truth's
    assert abs(capped_levels[2] - 1) < 0.8 * abs(plain_levels[2] - 1)
    assert abs(capped_levels[1] - 1) < 0.01 < abs(plain_levels[1] - 1)
    assert capped_ncc > plain_ncc + 0.005


def test_speckle_cap_block_by_block(tmp_path, monkeypatch):
    """Small blocks (no halo read) give the whole volume's cap away from their edges (4 A-lines: the cap's box
    reaches 2, the restoring box 2 more); the QC record counts the capped voxels."""
    _, volume, _ = _phantom(seed=5)
    monkeypatch.setattr(slice_normalization, "lateral_block_size", lambda depth: 16)
    out, attributes = _normalized(tmp_path, volume, 2.0)
    low, high = attributes["normalize_values"]
    whole, n_whole = normalize.speckle_capped(volume, 2.0, (slice(0, 72), slice(0, 72)))
    inside = np.isin(np.arange(72) % 16, np.arange(4, 12)) & (np.arange(72) < 64)  # 4+ A-lines from a block edge
    away = np.ix_(np.ones(volume.shape[0], bool), inside, inside)
    np.testing.assert_allclose(out[away], normalize.normalize_values(whole, low, high)[away], atol=1e-6)
    n_blocks = sum(normalize.speckle_capped(volume[:, y:y + 16, x:x + 16], 2.0, (slice(None), slice(None)))[1]
                   for y in range(0, 72, 16) for x in range(0, 72, 16))
    metrics = read_qc_record(qc_record_path(tmp_path / "out_2.0.ome.zarr"))["metrics"]
    assert metrics["speckle_cap"] == 2.0
    assert metrics["speckle_capped_fraction"] == pytest.approx(n_blocks / volume.size, abs=1e-6)
    assert abs(n_blocks - n_whole) < 0.05 * n_whole  # 44 % of the voxels of 16-A-line blocks near an edge: 3 %
    assert 0.05 < n_blocks / volume.size < 0.15  # gamma(2) above twice its mean: 9 %


def _fused_tiles(seed: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(truth, fused slice, overlap A-lines) of two 40 x 40 A-line tiles of one exponential speckle frame each over
    a textured tissue, fused 10 A-lines apart in x (the overlap the average of both tiles' draws, as the fusion's
    ``average`` blend)."""
    rng = np.random.default_rng(seed)
    shape = (40, 40, 70)
    texture = 1.0 + 0.15 * ndimage.gaussian_filter(rng.standard_normal(shape), 3.0) / 0.035
    truth = np.clip(texture, 0.5, 1.5).astype(np.float32)
    left, right = rng.exponential(1.0, shape), rng.exponential(1.0, shape)
    overlap = np.zeros(shape[2], bool)
    overlap[30:40] = True
    speckle = np.where(np.arange(shape[2]) < 30, left, right)
    speckle[:, :, overlap] = (left[:, :, overlap] + right[:, :, overlap]) / 2
    return truth, (truth * speckle).astype(np.float32), overlap


def test_speckle_cap_leaves_no_seam_at_a_tile_overlap(tmp_path):
    """One speckle frame per tile (``ha``): the cap takes 14 % of a tile's mean but 5 % of the overlap's
    two-draw average, an overlap 1.09 x brighter than the tiles (ha 483: 1.04-1.07 x against 0.98-0.99 x the
    truth). Restored to its local mean, the overlap reads as the tiles as read, within 2 %; the NCC with the
    truth is not lower."""
    truth, volume, overlap = _fused_tiles()
    raw = volume / truth
    ratios, nccs = {"raw": raw[:, 4:-4, overlap].mean() / raw[:, 4:-4, ~overlap].mean()}, {}
    for restore in (False, True):
        with mock.patch.object(normalize, "mean_restored", normalize.mean_restored if restore else lambda c, v: c):
            out, attributes = _normalized(tmp_path / str(restore), volume, 2.0)
        low, high = attributes["normalize_values"]
        signal = out * (high - low) + low
        level = signal / truth
        ratios[restore] = level[:, 4:-4, overlap].mean() / level[:, 4:-4, ~overlap].mean()
        nccs[restore] = _ncc(ndimage.uniform_filter(signal, 3).ravel(), ndimage.uniform_filter(truth, 3).ravel())
    # measured: overlap / tile level 1.012 as read (this draw), 1.105 capped alone, 1.027 restored; NCC 0.623 -> 0.634
    assert ratios[False] > ratios["raw"] + 0.05
    assert abs(ratios[True] - ratios["raw"]) < 0.02
    assert nccs[True] > nccs[False] - 0.001


def test_negative_speckle_cap_is_refused(tmp_path):
    _, volume, _ = _phantom()
    save_omezarr(volume, tmp_path / "in.ome.zarr", RESOLUTION, n_levels=0)
    with pytest.raises(Exception, match="speckle_cap"):
        normalize_slice(tmp_path / "in.ome.zarr", tmp_path / "out.ome.zarr", NormalizeSettings(speckle_cap=-1.0))


@pytest.mark.parametrize("depth", [1, 7, 21, 48])
def test_restoring_box_sums_are_the_cumulative_sums_bits(depth):
    """The restoring box's sums taken plane by plane are those of numpy's float64 cumulative sum of the padded
    planes along z, of the shifted sums along y and scipy's 1D filter along x (float32), to the bit, deeper and
    shallower than the box."""
    shape = (depth, 9, 11)
    values = np.random.default_rng(depth).gamma(2.0, 0.5, shape).astype(np.float32)
    width, half = normalize.RESTORE_BOX[0], normalize.RESTORE_BOX[0] // 2
    padded = np.concatenate([np.repeat(values[:1], half, 0), values, np.repeat(values[-1:], half, 0)])
    running = np.concatenate([np.zeros((1, *values.shape[1:])), np.cumsum(padded, axis=0, dtype=np.float64)])
    along_z = running[width:] - running[:-width]
    assert normalize._running_box_sums(values, width).tobytes() == along_z.tobytes()
    expected = normalize._edge_box_sum(along_z, normalize.RESTORE_BOX[1], 1)
    expected = ndimage.uniform_filter1d(expected, normalize.RESTORE_BOX[2], axis=2, mode="nearest") * 5
    assert normalize._box_sums(values, normalize.RESTORE_BOX).tobytes() == expected.tobytes()


def test_mean_restored_row_batches_are_the_whole_blocks_bits(monkeypatch):
    """Restored :data:`~linumpy.intensity.normalize.RESTORE_ROWS` rows at a time (the box's rows around each
    batch read as capped, before the batch above is scaled), a block gets the bits of the whole block at once."""
    values = np.random.default_rng(2).gamma(2.0, 0.5, (30, 2 * normalize.RESTORE_ROWS + 7, 13)).astype(np.float32)
    capped = np.minimum(values, np.float32(1.2))
    batched = normalize.mean_restored(capped.copy(), values)
    monkeypatch.setattr(normalize, "RESTORE_ROWS", values.shape[1])
    assert batched.tobytes() == normalize.mean_restored(capped.copy(), values).tobytes()
    assert not np.array_equal(batched, capped)
