"""The stitch's serial work between its phases overlapped with parallel work (issue #14): the fusion flat field
fitted beside the fusion's first reads, zarr-python imported beside the registration."""

import subprocess
import sys
import threading
from concurrent.futures import Future
from pathlib import Path

import numpy as np

from test_stitching import write_mosaic_grid

ROOT = Path(__file__).resolve().parents[1]


def test_the_fusion_flat_field_is_fitted_while_the_fusion_reads_its_first_tiles(tmp_path, monkeypatch):
    """The fit runs on the ``stitch-flat`` thread once a fusion job has started (it reads its tiles, then waits
    for the field): no serial fit between the estimate and the fusion. Same volume and QC record as the fit
    awaited first (the fusion's correction and the record read the same field)."""
    from linumpy.io.zarr import read_omezarr
    from linumpy.stitching import stitch

    grid_path = tmp_path / "grid.ome.zarr"
    write_mosaic_grid(grid_path, grid=(3, 3), depth=4)
    first = tmp_path / "first" / "slice.ome.zarr"
    fitted, fuse = stitch._fused_flat_field, stitch.fuse_block
    awaited = stitch.part_correction

    def resolved_first(flat):  # the fit awaited before any block is fused: the order before this change
        return awaited(flat.result() if isinstance(flat, Future) else flat)

    monkeypatch.setattr(stitch, "part_correction", resolved_first)
    stitch.stitch_mosaic_grid(grid_path, first, n_levels=1, workers=2)
    monkeypatch.setattr(stitch, "part_correction", awaited)

    fusing, seen = threading.Event(), []

    def fuse_seen(*args, **kwargs):
        fusing.set()
        return fuse(*args, **kwargs)

    def fit_seen(levels, positions):
        seen.append((threading.current_thread().name, fusing.wait(30)))
        return fitted(levels, positions)

    monkeypatch.setattr(stitch, "fuse_block", fuse_seen)
    monkeypatch.setattr(stitch, "_fused_flat_field", fit_seen)
    beside = tmp_path / "beside" / "slice.ome.zarr"
    stitch.stitch_mosaic_grid(grid_path, beside, n_levels=1, workers=2)
    assert len(seen) == 1 and seen[0][0].startswith("stitch-flat") and seen[0][1]
    assert np.array_equal(read_omezarr(beside)[0].compute(), read_omezarr(first)[0].compute())
    assert (beside.parent / "slice_qc.json").read_text() == (first.parent / "slice_qc.json").read_text()


def test_a_future_flat_field_corrects_as_the_field_it_holds():
    """:func:`~linumpy.stitching.stitch.part_correction` of a flat field's future: the field divided out when
    applied, the part copied as it is when not (as no correction)."""
    from linumpy.stitching.fusion_flatfield import FusionFlatField
    from linumpy.stitching.stitch import part_correction

    rng = np.random.default_rng(3)
    data = rng.random((2, 4, 5)).astype(np.float32)
    part = (slice(1, 5), slice(0, 5))
    applied = FusionFlatField("applied", (0.5 + rng.random((6, 5))).astype(np.float32), 0.1)
    for flat in (applied, FusionFlatField("not applied: test", None, 0.1)):
        future: Future = Future()
        future.set_result(flat)
        expected, out = np.empty_like(data), np.empty_like(data)
        direct = part_correction(flat)
        if direct is None:
            expected[...] = data
        else:
            direct(data, part, expected)
        part_correction(future)(data, part, out)
        assert np.array_equal(out.view(np.uint32), expected.view(np.uint32))


def test_reading_a_grid_loads_no_zarr_python(tmp_path):
    """The stitch's modules and its reads of the mosaic grid need no zarr-python (its import, a tenth of a
    second or more, runs on the background import thread beside the registration); the writer imports it."""
    grid_path = tmp_path / "grid.ome.zarr"
    write_mosaic_grid(grid_path, grid=(2, 2), depth=3)
    script = f"""
import sys
import linumpy.stitching.stitch as stitch
data, _ = stitch.open_omezarr_level({str(grid_path)!r})
stitch.read_omezarr_info({str(grid_path)!r})
assert data[0:3, 0:8, 0:8].shape == (3, 8, 8)
assert "zarr" not in sys.modules, "zarr imported"
"""
    subprocess.run([sys.executable, "-c", script], check=True, env={"PYTHONPATH": str(ROOT), "PATH": ""})


def test_the_fusion_s_first_reads_are_announced_while_the_positions_are_estimated(tmp_path, monkeypatch):
    """The chunk files the fusion announces before its first block, planned on the stage's nominal positions
    (:func:`~linumpy.stitching.stitch.stage_first_reads`), are announced once on a ``stitch-read-ahead`` thread
    started before the estimate (without an AIP to check: at once): the fusion's first announcements, the
    same files. The volume is the same without them."""
    import linumpy.io.prefetch as prefetch
    from linumpy.io.zarr import read_omezarr
    from linumpy.stitching import stitch

    grid_path = tmp_path / "grid.ome.zarr"
    write_mosaic_grid(grid_path, grid=(3, 2), depth=5)
    data, _ = stitch.open_omezarr_level(grid_path)
    layout = stitch.mosaic_grid_layout(stitch.read_omezarr_info(grid_path).attributes, data.shape, "grid")
    expected = stitch.stage_first_reads(data, layout)
    assert sorted(expected) == sorted(data.chunk_files((slice(None), slice(None), slice(None))))  # one block

    events, announce = [], prefetch.prefetch_files

    def announce_recorded(paths):
        paths = [Path(p) for p in paths]
        events.append((threading.current_thread().name, paths))
        announce(paths)

    monkeypatch.setattr(prefetch, "prefetch_files", announce_recorded)
    announced = tmp_path / "announced.ome.zarr"
    stitch.stitch_mosaic_grid(grid_path, announced, n_levels=0, workers=2)
    assert [paths for name, paths in events if name == "stitch-read-ahead"] == [expected]
    fusion = [path for name, paths in events if name != "stitch-read-ahead" for path in paths]
    assert fusion == expected
    monkeypatch.setattr(stitch, "stage_first_reads", lambda data, layout: [])
    plain = tmp_path / "plain.ome.zarr"
    stitch.stitch_mosaic_grid(grid_path, plain, n_levels=0, workers=2)
    assert np.array_equal(read_omezarr(announced)[0].compute(), read_omezarr(plain)[0].compute())
