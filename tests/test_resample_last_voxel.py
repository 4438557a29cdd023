"""The analysis pyramid's last voxel along each axis: where its metadata say it is, and what it holds.

The stacked volume is scored and looked at on its 10 um level. When the
volume's depth is not a multiple of 10 um, keeping every input voxel (ceil)
made a last 10 um voxel that held a part of it (e.g. the deepest 2 or 6 um of
a 4 um base: the last slice's least reliable planes, fewer of them) labelled
as the whole 10 um, its centre 2-4 um below them. A level's last voxel is now
written only when the level above fills it (the analysis pyramid's
``ANALYSIS_MIN_LAST_COVER``), so every voxel of every coarse level is the mean
over the extent its scale and translation give; level 0 keeps every voxel.
"""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import ome_zarr_models
import pytest
from ome_zarr.io import parse_url
from ome_zarr.reader import Reader

from linumpy.io.zarr import ANALYSIS_MIN_LAST_COVER, AnalysisOmeZarrWriter, read_omezarr, read_omezarr_info
from linumpy.resample import resample_to_resolution, resampled_last_weights, resampled_shape

#: 88 planes of 4 um: 352 um, 35.2 voxels of 10 um; 12 and 13 px: 48 and 52 um wide.
BASE_SHAPE = (88, 12, 13)
BASE_UM = 4.0
LEVELS_UM = (10, 25, 50, 100)


def write_analysis(path: Path, volume: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Write ``volume`` at 4 um with the analysis pyramid; each level's (data, scale um, centre of voxel 0 um)."""
    with AnalysisOmeZarrWriter(path, volume.shape, volume.shape, np.float32) as writer:
        writer[:] = volume
        writer.finalize((BASE_UM / 1000,) * 3, LEVELS_UM)
    info = read_omezarr_info(path)
    return [(read_omezarr(path, k)[0].compute().astype(np.float64), np.asarray(level.scale_mm) * 1000,
             np.asarray(level.translation_mm) * 1000) for k, level in enumerate(info.levels)]


def staircase_mean(values: np.ndarray, voxel_um: float, lo: float, hi: float) -> float:
    """Mean over [lo, hi) um of a 1D profile of ``voxel_um`` voxels (edge 0 at the first voxel's top)."""
    edges = np.arange(values.size + 1) * voxel_um
    overlap = np.clip(np.minimum(edges[1:], hi) - np.maximum(edges[:-1], lo), 0, None)
    return float((values * overlap).sum() / overlap.sum())


def resampled_by_hand(profile: np.ndarray, voxel_um: float, extent_um: float, r: float,
                      min_cover: float) -> tuple[np.ndarray, float]:
    """A 1D profile whose data reach ``extent_um`` resampled to ``r``: (profile, how far its data reach, um).

    Every whole voxel, a partial last one covered over at least ``min_cover`` of it, at least one voxel;
    voxel ``j`` is the mean of the input over ``[j r, (j + 1) r)`` clipped to the input's extent.
    """
    whole, rest = divmod(extent_um / r, 1.0)
    count = max(1, int(whole) + int(rest > 1e-9 and rest >= min_cover))
    means = [staircase_mean(profile, voxel_um, j * r, min((j + 1) * r, extent_um)) for j in range(count)]
    return np.array(means), min(extent_um, count * r)


def level_profiles(profile: np.ndarray) -> list[np.ndarray]:
    """A 1D base profile through the analysis pyramid by hand, level 0 first."""
    levels, voxel, extent = [profile], BASE_UM, profile.size * BASE_UM
    for r in LEVELS_UM:
        profile, extent = resampled_by_hand(profile, voxel, extent, r, ANALYSIS_MIN_LAST_COVER)
        voxel = r
        levels.append(profile)
    return levels


def test_every_coarse_voxel_of_a_depth_ramp_holds_the_depth_its_metadata_give(tmp_path):
    # The phantom is its own depth: each 4 um plane holds the depth of its centre. A coarse voxel's mean is then
    # the depth of what it averages, and the metadata (scale, translation) say which depth that should be.
    depth = BASE_UM * np.arange(BASE_SHAPE[0]) + BASE_UM / 2
    volume = np.broadcast_to(depth[:, None, None], BASE_SHAPE).astype(np.float32)
    levels = write_analysis(tmp_path / "ramp.ome.zarr", volume)
    assert [data.shape[0] for data, _, _ in levels] == [88, 35, 14, 7, 3]  # 352 um: 35.2, 14.08, 7.04, 3.52
    for data, scale, origin in levels[1:]:
        centres = origin[0] + BASE_UM / 2 + scale[0] * np.arange(data.shape[0])  # depth below the base's top edge
        # Every voxel, the last one too: its labelled centre, within the 4 um staircase's rounding.
        np.testing.assert_allclose(data[:, 0, 0], centres, atol=BASE_UM / 4)
    # 10 um: the deepest voxel is 340-350 um; the 2 um of 350-352 um are not labelled 350-360 um.
    assert levels[1][0][-1, 0, 0] == pytest.approx(staircase_mean(depth, BASE_UM, 340.0, 350.0), abs=1e-3)


def test_each_level_is_the_mean_of_the_level_above_over_what_it_covers(tmp_path):
    # Separable random phantom: each level is the outer product of its axes' profiles taken through the pyramid
    # by hand (laterally, 48 um give one 25 um voxel, then a 50 um and a 100 um voxel that 25 um of data fill
    # in part: a level keeps one voxel, the mean of what it covers).
    rng = np.random.default_rng(250)
    profiles = [rng.random(n) + 0.5 for n in BASE_SHAPE]
    volume = (profiles[0][:, None, None] * profiles[1][None, :, None] * profiles[2][None, None, :]).astype(np.float32)
    levels = write_analysis(tmp_path / "random.ome.zarr", volume)
    by_axis = [level_profiles(profile) for profile in profiles]
    for index, (data, _, _) in enumerate(levels[1:], start=1):
        z, y, x = (axis[index] for axis in by_axis)
        np.testing.assert_allclose(data, z[:, None, None] * y[None, :, None] * x[None, None, :], rtol=2e-5,
                                   err_msg=f"level {index}")


def test_levels_validate_and_stay_inside_level_0(tmp_path):
    path = tmp_path / "v.ome.zarr"
    levels = write_analysis(path, np.ones(BASE_SHAPE, np.float32))
    model = ome_zarr_models.open_ome_zarr(str(path))
    assert type(model).__module__.endswith("v04.image")
    node = next(iter(Reader(parse_url(str(path)))()))
    assert [tuple(d.shape) for d in node.data] == [d.shape for d, _, _ in levels]
    base_um = np.asarray(BASE_SHAPE) * BASE_UM
    for index, (data, scale, origin) in enumerate(levels):
        np.testing.assert_allclose(origin, (scale - BASE_UM) / 2)  # voxel centres aligned with level 0's
        assert list(data.shape) == [len(level_profiles(np.ones(n))[index]) for n in BASE_SHAPE]
        filled = np.asarray(data.shape) * scale <= base_um  # whole voxels inside level 0, or one partial voxel
        assert np.all(filled | (np.asarray(data.shape) == 1)), (index, data.shape)
        np.testing.assert_allclose(data, 1.0, rtol=3e-7)  # float32 means: within 2 roundings
    assert read_omezarr_info(path).downsampling == "area"


@pytest.mark.parametrize("in_um, factor", [(4.0, 2.5), (1.0, 2.0)])
def test_resampling_keeps_every_input_voxel_unless_asked(in_um, factor):
    rng = np.random.default_rng(251)
    values = rng.random(23) + 0.5
    x = da.from_array(values[:, None] * np.ones((1, 3)), chunks=(7, 3))
    axis = (in_um / 1000, 0.001)
    out = (in_um * factor / 1000, 0.001)
    kept = resample_to_resolution(x, axis, out).compute()
    assert kept.shape == resampled_shape(x.shape, axis, out) == (int(np.ceil(23 / factor)), 3)
    for cover in (0.0, 0.5, 1.0):
        for weight in (1.0, 0.3):  # the input's last voxel covering all or 30 % of itself
            result = resample_to_resolution(x, axis, out, last_weights=(weight, 1.0), min_last_cover=cover)
            expected, _ = resampled_by_hand(values, in_um, (22 + weight) * in_um, in_um * factor, cover)
            np.testing.assert_allclose(result[:, 0].compute(), expected, rtol=1e-12, err_msg=f"{cover} {weight}")
            assert result.shape == resampled_shape(x.shape, axis, out, (weight, 1.0), cover)
            last = (22 + weight) / factor - (result.shape[0] - 1)
            assert resampled_last_weights(x.shape, axis, out, (weight, 1.0), cover)[0] == pytest.approx(min(1, last))
    with pytest.raises(ValueError, match="min_last_cover"):
        resampled_shape((4,), (1.0,), (2.0,), min_last_cover=1.5)
