"""The analysis pyramid's last voxel along each axis: where its metadata say it is, and what it holds.

The stacked volume is scored and looked at on its 10 um level. When the
volume's depth is not a multiple of 10 um, keeping every input voxel (ceil)
made a last 10 um voxel that held a sliver of the deepest planes (e.g. 2 um of
a 4 um base) at a centre 4 um below them. A level's last voxel is now written
only when the level above covers at least half of it, and it is the mean of
what it covers, partial voxels of the level above weighed by what they cover.
"""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import ome_zarr_models
import pytest
from ome_zarr.io import parse_url
from ome_zarr.reader import Reader

from linumpy.io.zarr import AnalysisOmeZarrWriter, read_omezarr, read_omezarr_info
from linumpy.resample import resample_to_resolution, resampled_last_weights, resampled_shape

#: 88 planes of 4 um: 352 um, 35.2 voxels of 10 um (the 36th would hold 2 um of the deepest plane).
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


def level_profiles(profile: np.ndarray) -> list[tuple[np.ndarray, float]]:
    """A 1D base profile through the pyramid by hand: each level's (profile, how deep its data reach, um).

    A level has the nearest whole number of voxels to the extent of the level above (at least one);
    voxel ``j`` is the mean of the level above over ``[j r, (j + 1) r)`` clipped to that extent.
    """
    levels, voxel, extent = [(profile, profile.size * BASE_UM)], BASE_UM, profile.size * BASE_UM
    for r in LEVELS_UM:
        count = int(max(1, np.floor(extent / r + 0.5)))
        profile = np.array([staircase_mean(profile, voxel, j * r, min((j + 1) * r, extent)) for j in range(count)])
        voxel, extent = r, min(extent, count * r)
        levels.append((profile, extent))
    return levels


def test_every_coarse_voxel_of_a_depth_ramp_holds_the_depth_its_metadata_give(tmp_path):
    # The phantom is its own depth: each 4 um plane holds the depth of its centre. A coarse voxel's mean is then
    # the depth of what it averages, and the metadata (scale, translation) say which depth that should be.
    depth = BASE_UM * np.arange(BASE_SHAPE[0]) + BASE_UM / 2
    volume = np.broadcast_to(depth[:, None, None], BASE_SHAPE).astype(np.float32)
    levels = write_analysis(tmp_path / "ramp.ome.zarr", volume)
    assert [data.shape[0] for data, _, _ in levels] == [88, 35, 14, 7, 4]  # 352 um: 35.2, 14.08, 7.04, 3.52
    for data, scale, origin in levels[1:]:
        centres = origin[0] + BASE_UM / 2 + scale[0] * np.arange(data.shape[0])  # depth below the base's top edge
        profile = data[:, 0, 0]
        # Whole voxels: their labelled centre, within the staircases' rounding (each level from the one above).
        np.testing.assert_allclose(profile[:-1], centres[:-1], atol=BASE_UM / 4)
        # The last one covers at least half of itself: at most a quarter voxel off (3.52 -> 4 at 100 um: 25 um off).
        assert abs(profile[-1] - centres[-1]) <= scale[0] / 4 + BASE_UM / 4
    # 10 um: the deepest voxel is 340-350 um (no 2 um sliver of 348-352 um labelled 355 um).
    assert levels[1][0][-1, 0, 0] == pytest.approx(staircase_mean(depth, BASE_UM, 340.0, 350.0), abs=1e-3)


def test_each_level_is_the_mean_of_the_level_above_over_what_it_covers(tmp_path):
    # Separable random phantom, so each level is the outer product of its axes' profiles taken through the
    # pyramid by hand: the partial last voxels of the level above weigh what they cover (25 um from a 10 um
    # level whose last x voxel covers 8 of its 10 um; 100 um from a 50 um level ...).
    rng = np.random.default_rng(250)
    profiles = [rng.random(n) + 0.5 for n in BASE_SHAPE]
    volume = (profiles[0][:, None, None] * profiles[1][None, :, None] * profiles[2][None, None, :]).astype(np.float32)
    levels = write_analysis(tmp_path / "random.ome.zarr", volume)
    by_axis = [level_profiles(profile) for profile in profiles]
    for index, (data, _, _) in enumerate(levels[1:], start=1):
        z, y, x = (axis[index][0] for axis in by_axis)
        np.testing.assert_allclose(data, z[:, None, None] * y[None, :, None] * x[None, None, :], rtol=2e-5,
                                   err_msg=f"level {index}")


def test_levels_validate_and_their_shapes_are_the_nearest_to_the_base_extent(tmp_path):
    path = tmp_path / "v.ome.zarr"
    levels = write_analysis(path, np.ones(BASE_SHAPE, np.float32))
    model = ome_zarr_models.open_ome_zarr(str(path))
    assert type(model).__module__.endswith("v04.image")
    node = next(iter(Reader(parse_url(str(path)))()))
    assert [tuple(d.shape) for d in node.data] == [d.shape for d, _, _ in levels]
    base_um = np.asarray(BASE_SHAPE) * BASE_UM
    for data, scale, origin in levels:
        np.testing.assert_allclose(origin, (scale - BASE_UM) / 2)  # voxel centres aligned with level 0's
        whole = np.maximum(1, np.floor(base_um / scale + 0.5))
        assert tuple(data.shape) == tuple(whole.astype(int))  # within half a voxel of level 0's extent
        np.testing.assert_allclose(data, 1.0, rtol=3e-7)  # float32 means: within 2 roundings
    assert [len(level_profiles(np.ones(n))[-1][0]) for n in BASE_SHAPE] == list(levels[-1][0].shape)
    attributes = read_omezarr_info(path)
    assert attributes.downsampling == "area"


def test_resampling_keeps_every_input_voxel_unless_asked():
    x = da.from_array(np.arange(88, dtype=np.float32)[:, None] * np.ones((1, 5), np.float32), chunks=(20, 5))
    kept = resample_to_resolution(x, (0.004, 0.010), (0.010, 0.010)).compute()
    assert kept.shape == resampled_shape(x.shape, (0.004, 0.010), (0.010, 0.010)) == (36, 5)
    assert kept[-1, 0] == pytest.approx(87.0)  # the sliver: the deepest plane alone
    nearest = resample_to_resolution(x, (0.004, 0.010), (0.010, 0.010), min_last_cover=0.5).compute()
    assert nearest.shape == (35, 5)
    np.testing.assert_array_equal(nearest, kept[:35])
    assert resampled_last_weights(x.shape, (0.004, 0.010), (0.010, 0.010)) == pytest.approx((0.2, 1.0))
    # An integer factor whose input's last voxel covers 0.3 of it: weighed 0.3, or left out with the data past it.
    y = da.from_array(np.array([1.0, 1.0, 1.0, 4.0]), chunks=2)
    assert resample_to_resolution(y, (1.0,), (2.0,), last_weights=(0.3,)).compute()[-1] == pytest.approx(
        (1.0 + 0.3 * 4.0) / 1.3)
    left_out = resample_to_resolution(y, (1.0,), (2.0,), last_weights=(0.3,), min_last_cover=0.7)
    assert left_out.compute().tolist() == [1.0]
    with pytest.raises(ValueError, match="min_last_cover"):
        resampled_shape((4,), (1.0,), (2.0,), min_last_cover=1.5)
