"""One cut tilt for every slice: a slice flattened with a stray tilt is re-flattened and placed right."""

from __future__ import annotations

import dask.array as da
import numpy as np
from test_stack import AXIAL_UM, LATERAL_UM, SURFACE_PX, USEFUL_PX, make_brain, relative_truth

from linumpy.stack.stacking import SliceVolume, StackParameters, plan_stack
from linumpy.resample import block_mean
from linumpy.stack import tilt
from linumpy.stack.rotation import rotate_lazily, rotate_slice
from linumpy.stack.tilt import FEW_MOVES, plane_shift, retilt_slice, shift_alines

STRAY = 2  # the slice whose surface fit went astray
OWN_PLANE = (20.0, 0.09, -0.07)  # its fitted plane; the others fitted the true (flat) cut within 0.002


def test_a_line_shift_matches_numpy_whatever_the_chunks():
    rng = np.random.default_rng(0)
    data = rng.random((20, 30, 40)).astype(np.float32)
    for spread in (0, 3, FEW_MOVES):  # one move; a copy per move; one gather
        shift = rng.integers(-spread, spread + 1, (30, 40))
        expected = np.take_along_axis(data, np.clip(np.arange(20)[:, None, None] + shift, 0, 19), axis=0)
        for chunks in ((7, 16, 16), (20, 30, 40)):
            np.testing.assert_array_equal(shift_alines(da.from_array(data, chunks=chunks), shift).compute(), expected)


def test_each_block_reads_the_source_planes_its_own_moves_reach():
    """A tilt's moves: 0 in one half of the plane, 0 and 1 in the other. Every block of 8 planes reads the
    source chunks (8 planes) its window of planes ``[z0 + min, z1 + max)`` of its own A-lines' moves overlaps:
    one chunk where none of its A-lines moves, and the values are numpy's."""
    rng = np.random.default_rng(1)
    data = rng.random((32, 16, 32)).astype(np.float32)
    shift = np.zeros((16, 32), np.int64)
    shift[:, 16:] = rng.integers(0, 2, (16, 16))
    source = da.from_array(data, chunks=(8, 16, 16))
    shifted = shift_alines(source, shift)
    expected = np.take_along_axis(data, np.clip(np.arange(32)[:, None, None] + shift, 0, 31), axis=0)
    np.testing.assert_array_equal(shifted.compute(), expected)
    graph = dict(shifted.__dask_graph__())
    for z in range(4):
        for x, (low, high) in enumerate(((0, 0), (0, 1))):
            first, stop = max(0, 8 * z + low), min(32, 8 * z + 8 + high)
            wanted = {(source.name, k, 0, x) for k in range(first // 8, -(-stop // 8))}
            assert set(graph[(shifted.name, z, 0, x)].dependencies) == wanted


def test_retilted_and_turned_levels_are_built_when_read(monkeypatch):
    """A slice's six levels re-tilted and then turned: the levels the stack reads are built (once, in both
    transforms), the others not; every level's shape and voxel size are known before any is built; a level's
    values are numpy's re-tilt of it (turned: within float32 rounding of the turned numpy re-tilt)."""
    rng = np.random.default_rng(2)
    finest = da.from_array(rng.random((16, 64, 64)).astype(np.float32), chunks=(8, 32, 32))
    levels = [(finest, (1.0, 1.0, 1.0))]
    for k in range(1, 6):
        levels.append((block_mean(levels[-1][0], (1, 2, 2)), (1.0, 2.0**k, 2.0**k)))
    volume = SliceVolume(0, levels, (0, 16), (8.0, 0.2, -0.1))
    built = []
    monkeypatch.setattr(tilt, "shift_alines", lambda data, shift: built.append(data.shape) or shift_alines(data, shift))
    retilted, largest = retilt_slice(volume, volume.surface_plane, (0.0, 0.0))
    turned = rotate_slice(retilted, 3.0)
    assert largest > 0 and turned.widest_levels(8) == [0, 1, 2, 3] and built == []
    data, resolution = turned.planes_level(1)
    assert turned.planes_level(1)[0] is data and built == [(16, 32, 32)] and resolution == (1.0, 2.0, 2.0)
    assert turned.level_for_resolution(4.5)[1] == (1.0, 4.0, 4.0) and built == [(16, 32, 32), (16, 16, 16)]
    level = levels[1][0].compute()
    shift = plane_shift(volume.surface_plane, (0.0, 0.0), (32, 32), (2.0, 2.0))
    expected = np.take_along_axis(level, np.clip(np.arange(16)[:, None, None] + shift, 0, 15), axis=0)
    np.testing.assert_array_equal(retilted.planes_level(1)[0].compute(), expected)
    np.testing.assert_allclose(data.compute(), rotate_lazily(da.from_array(expected), 3.0, (15.5, 15.5)).compute(),
                               atol=1e-5)  # the turn's spline sums depend on its windows' offsets by float32 rounding


def stray_brain():
    """The synthetic brain with slice ``STRAY`` flattened by its own, wrongly tilted plane."""
    brain = make_brain()
    ny, nx = brain.slices[STRAY].shape[1:]
    delta = plane_shift(OWN_PLANE, (0.0, 0.0), (ny, nx))
    brain.slices[STRAY] = shift_alines(da.from_array(brain.slices[STRAY]), -delta).compute()
    rng = np.random.default_rng(1)
    planes = [(20.0, *rng.uniform(-0.002, 0.002, 2)) for _ in brain.slices]
    planes[STRAY] = OWN_PLANE
    volumes = [SliceVolume(i, [(da.from_array(s, chunks=(16, 32, 32)), (AXIAL_UM, LATERAL_UM, LATERAL_UM))],
                           (SURFACE_PX, SURFACE_PX + USEFUL_PX), planes[i]) for i, s in enumerate(brain.slices)]
    return brain, volumes, int(np.abs(delta).max())


def test_stray_tilt_is_undone_and_the_slice_placed_within_half_a_plane():
    brain, volumes, largest = stray_brain()
    assert largest >= 3  # the stray tilt moves the slice's edges by several planes
    plan = plan_stack(volumes, brain.motors_mm, brain.thickness_um, 10.0)
    record = plan.record["slices"]
    assert [s["retilt_max_planes"] > 0 for s in record] == [k == STRAY for k in range(len(record))]
    assert np.allclose(plan.record["common_tilt"], 0.0, atol=0.002)
    origins = np.array([s["origin_um"] for s in record])
    error_px = np.abs(origins - relative_truth(brain))[:, 0] / AXIAL_UM
    assert error_px.max() <= 0.5, error_px
    # the stray slice, re-flattened, matches the previous slice again
    ncc = [s["registration"]["z_confidence"] for s in record[1:]]
    unfixed = plan_stack(volumes, brain.motors_mm, brain.thickness_um, 10.0, StackParameters(common_tilt=False))
    ncc_unfixed = [s["registration"]["z_confidence"] for s in unfixed.record["slices"][1:]]
    assert ncc[STRAY - 1] > ncc_unfixed[STRAY - 1] + 0.05, (ncc, ncc_unfixed)


def test_windowed_blocks_read_as_numpy_by_a_graph_reader_and_by_dask():
    """A windowed array (each block from a window of the source: the rows two further down, twice) against
    numpy: its task objects run by dask's scheduler and by :class:`GraphWindowReader` give the same values."""
    from linumpy.stack.graph_reader import GraphWindowReader
    from linumpy.stack.windows import windowed_blocks

    values = np.random.default_rng(0).random((20, 32, 26)).astype(np.float32)
    source = da.from_array(values, chunks=(7, 11, 9))
    shifted = windowed_blocks(source, [(8, 8, 4), (10, 10, 10), (13, 13)],
                              lambda r: (r[0], (r[1][0] + 2, r[1][1] + 2), r[2]), lambda v, r, w: v * 2, "shifted")
    expected = values[:, 2:] * 2
    np.testing.assert_array_equal(shifted.compute(scheduler="threads"), expected)
    reader = GraphWindowReader(shifted[3:17, 5:25])
    np.testing.assert_array_equal(reader.read((slice(0, 14), slice(0, 20), slice(0, 26))), expected[3:17, 5:25])
