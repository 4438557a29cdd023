"""Mosaic grid: raw tiles laid side by side on the nominal grid."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr
from ome_zarr_models.v04.image import Image

from linumpy.errors import InputError
from linumpy.io.acquisition import open_acquisition, tile_name
from linumpy.io.zarr import read_omezarr, read_omezarr_info
from linumpy.mosaic import grid_geometry, write_mosaic_grid
from linumpy.qc.records import qc_record_path, read_qc_record

BIN = Path(__file__).resolve().parents[1] / "bin"
SCRIPT = str(BIN / "linum_create_mosaic_grid_3d.py")


@pytest.fixture(scope="module")
def grid_dir(tiny_acquisition, tmp_path_factory) -> Path:
    """The CLI's mosaic grid of slice 1 of the tiny acquisition."""
    out = tmp_path_factory.mktemp("grid")
    done = subprocess.run(
        [sys.executable, SCRIPT, str(tiny_acquisition), str(out / "mosaic_grid_3d_z01.ome.zarr"), "--slice", "1", "-q"],
        capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr
    return out


def test_grid_equals_raw_tiles_on_the_nominal_grid(tiny_acquisition, grid_dir):
    section = open_acquisition(tiny_acquisition).slice(1)
    grid, resolution = read_omezarr(grid_dir / "mosaic_grid_3d_z01.ome.zarr")
    nz, ty, tx = section.tile_shape
    rows, cols = section.grid_shape
    assert grid.shape == (nz, rows * ty, cols * tx)
    assert grid.chunks[1][0] == ty and grid.chunks[2][0] == tx  # one tile per lateral chunk
    assert resolution == pytest.approx(tuple(r / 1000 for r in section.resolution_um))
    values = grid.compute()
    for (row, col), tile in section.tiles.items():
        np.testing.assert_array_equal(values[:, row * ty : (row + 1) * ty, col * tx : (col + 1) * tx], tile.read())
    aip, aip_resolution = read_omezarr(grid_dir / "mosaic_grid_2d_z01.ome.zarr")
    np.testing.assert_allclose(aip.compute(), values.mean(axis=0), rtol=1e-5)
    assert aip_resolution == pytest.approx(resolution[1:])


def test_grid_metadata(tiny_acquisition, grid_dir):
    truth = json.loads((tiny_acquisition / "ground_truth" / "truth.json").read_text())
    entry = truth["slices"][1]
    for name in ("mosaic_grid_3d_z01.ome.zarr", "mosaic_grid_2d_z01.ome.zarr"):
        attributes = read_omezarr_info(grid_dir / name).attributes
        assert attributes["slice_id"] == 1
        assert attributes["tile_shape"] == truth["tile_shape"]
        assert attributes["grid_shape"] == truth["grid_shape"]
        assert attributes["tile_step_px"] == truth["tile_step_px"]
        assert attributes["stage_position_mm"] == entry["motor_position_mm"]
        assert attributes["tiles_present"] == [[r, c] for r, c, _, _ in entry["tile_positions_px"]]
        Image.from_zarr(zarr.open_group(grid_dir / name, mode="r"))  # raises if not valid OME-Zarr 0.4


def test_missing_tile_is_zeros_and_not_listed(tiny_acquisition, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    for tile_dir in tiny_acquisition.glob("tile_*_z00"):
        if tile_dir.name != tile_name(1, 0, 0):
            (raw / tile_dir.name).symlink_to(tile_dir)
    section = open_acquisition(raw, axial_resolution_um=1.5).slice(0)
    write_mosaic_grid(section, tmp_path / "g.ome.zarr", tmp_path / "a.ome.zarr", n_levels=1)
    grid = read_omezarr(tmp_path / "g.ome.zarr")[0].compute()
    _, ty, tx = section.tile_shape
    assert not grid[:, :ty, tx : 2 * tx].any()
    assert grid[:, :ty, :tx].mean() > 0.01
    assert [0, 1] not in read_omezarr_info(tmp_path / "g.ome.zarr").attributes["tiles_present"]
    metrics = read_qc_record(qc_record_path(tmp_path / "g.ome.zarr"))["metrics"]
    assert (metrics["n_tiles"], metrics["n_frames_averaged"]) == (5, 2), "the tiny preset averages two frames"
    assert (metrics["axial_resolution_um"], metrics["axial_resolution_source"]) == (1.5, "argument")


def test_a_failing_grid_write_publishes_neither_output(tiny_acquisition, tmp_path, monkeypatch):
    """The AIP is finalized beside the last grid writes, but published only with the grid."""
    import threading

    import linumpy.mosaic.grid as grid_module

    section = open_acquisition(tiny_acquisition, axial_resolution_um=1.5).slice(0)
    lock, grid_writes = threading.Lock(), []

    class FailingLastGridWrite(grid_module.OmeZarrWriter):
        def __setitem__(self, key, block):
            if len(self.shape) == 3:
                with lock:
                    grid_writes.append(key)
                    last = len(grid_writes) == len(section.tiles)
                if last:  # every AIP part is written: the AIP may be finalized already
                    raise OSError("disk full")
            super().__setitem__(key, block)

    monkeypatch.setattr(grid_module, "OmeZarrWriter", FailingLastGridWrite)
    with pytest.raises(OSError, match="disk full"):
        write_mosaic_grid(section, tmp_path / "g.ome.zarr", tmp_path / "a.ome.zarr", n_levels=1, workers=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def _assert_grid_holds_the_raw_tiles(section, folder):
    """The grid at ``folder/g.ome.zarr`` is each raw tile side by side, its AIP ``folder/a.ome.zarr`` each tile's mean."""
    _, ty, tx = section.tile_shape
    grid = read_omezarr(folder / "g.ome.zarr")[0].compute()
    aip = read_omezarr(folder / "a.ome.zarr")[0].compute()
    for (row, col), tile in section.tiles.items():
        values = tile.read()
        part = (slice(row * ty, (row + 1) * ty), slice(col * tx, (col + 1) * tx))
        np.testing.assert_array_equal(grid[(slice(None), *part)], values)
        np.testing.assert_array_equal(aip[part], values.mean(axis=0, dtype=np.float64).astype(np.float32))


def test_tiles_written_slab_by_slab_equal_the_raw_tiles(tiny_acquisition, tmp_path, monkeypatch):
    """Chunks of 3 planes: every tile is written as several z-chunk slabs by two workers, read ahead on the
    reader thread and prepared by the workers; the grid is each raw tile, its AIP the tile's mean."""
    import linumpy.mosaic.grid as grid_module

    section = open_acquisition(tiny_acquisition, axial_resolution_um=1.5).slice(0)
    nz, ty, tx = section.tile_shape
    monkeypatch.setattr(grid_module, "_MAX_CHUNK_VOXELS", 3 * ty * tx)
    geometry = write_mosaic_grid(section, tmp_path / "g.ome.zarr", tmp_path / "a.ome.zarr", n_levels=1, workers=2)
    assert geometry.chunks[0] == 3 < nz
    _assert_grid_holds_the_raw_tiles(section, tmp_path)


def test_the_reader_thread_only_reads_and_the_workers_prepare(tiny_acquisition, tmp_path, monkeypatch):
    """The tiles are read on the reader thread and cleaned, summarised and written by the two workers (the
    reader's share of the CPU must not set the step's pace); the grid is each raw tile, its AIP the tile's
    mean."""
    import threading

    import linumpy.mosaic.grid as grid_module

    section = open_acquisition(tiny_acquisition, axial_resolution_um=1.5).slice(0)
    threads: dict[str, set[str]] = {"read": set(), "summary": set()}

    def on_thread(name, function):
        def recorded(*args, **kwargs):
            threads[name].add(threading.current_thread().name.rsplit("_", 1)[0])
            return function(*args, **kwargs)
        return recorded

    monkeypatch.setattr(grid_module, "read_tile", on_thread("read", grid_module.read_tile))
    monkeypatch.setattr(grid_module, "tile_summary", on_thread("summary", grid_module.tile_summary))
    write_mosaic_grid(section, tmp_path / "g.ome.zarr", tmp_path / "a.ome.zarr", n_levels=1, workers=2)
    assert threads == {"read": {"mosaic-read"}, "summary": {"linumpy"}}
    _assert_grid_holds_the_raw_tiles(section, tmp_path)


def test_a_tile_that_fails_to_read_stops_the_grid(tiny_acquisition, tmp_path):
    """A truncated tile read on the reader thread: the error names it, nothing is published."""
    raw = tmp_path / "raw"
    raw.mkdir()
    for tile_dir in tiny_acquisition.glob("tile_*_z00"):
        (raw / tile_dir.name).symlink_to(tile_dir)
    broken = raw / tile_name(1, 1, 0)
    broken.unlink()
    broken.mkdir()
    for path in (tiny_acquisition / tile_name(1, 1, 0)).iterdir():
        (broken / path.name).write_bytes(path.read_bytes())
    last = sorted(broken.glob("image_*.bin"))[-1]
    last.write_bytes(last.read_bytes()[:-4])
    out = tmp_path / "out"
    out.mkdir()
    section = open_acquisition(raw, axial_resolution_um=1.5).slice(0)
    with pytest.raises(InputError, match="image_"):
        write_mosaic_grid(section, out / "g.ome.zarr", out / "a.ome.zarr", n_levels=1, workers=2)
    assert list(out.iterdir()) == []


def test_non_finite_values_are_zeroed_whatever_the_sum():
    from linumpy.mosaic.grid import zero_non_finite

    finite = np.full((2, 3, 4), 3e38, np.float32)  # its float32 sum overflows: the full check runs
    assert np.array_equal(zero_non_finite(finite.copy(), "t"), finite)
    for bad in (np.nan, np.inf, -np.inf):
        tile = np.ones((2, 3, 4), np.float32)
        tile[1, 2, 3] = bad
        expected = np.ones_like(tile)
        expected[1, 2, 3] = 0
        assert np.array_equal(zero_non_finite(tile, "t"), expected)
    mixed = np.ones((2, 3, 4), np.float32)
    mixed[0, 0, 0], mixed[1, 1, 1] = np.inf, -np.inf  # their sum is NaN
    assert np.count_nonzero(zero_non_finite(mixed, "t")) == mixed.size - 2


def test_resolution_depth_range_and_dtype(tiny_acquisition, tmp_path):
    section = open_acquisition(tiny_acquisition).slice(2)
    geometry = write_mosaic_grid(
        section, tmp_path / "g.ome.zarr", tmp_path / "a.ome.zarr", resolution_um=6.0, z_range=(10, 50), dtype="float16"
    )
    grid, resolution = read_omezarr(tmp_path / "g.ome.zarr")
    assert geometry.tile_shape == (40, 32, 32)
    assert grid.shape == (40, 3 * 32, 2 * 32) and grid.dtype == np.float16
    assert resolution == pytest.approx((0.0015, 0.006, 0.006))
    raw = section.tiles[(2, 1)].read()[10:50]
    expected = raw.reshape(40, 32, 2, 32, 2).mean(axis=(2, 4))  # 3 um -> 6 um block mean
    np.testing.assert_allclose(grid[:, 64:96, 32:64].compute(), expected, rtol=2e-3, atol=1e-3)
    attributes = read_omezarr_info(tmp_path / "g.ome.zarr").attributes
    assert attributes["tile_step_px"] == [s / 2 for s in section.tile_step_px]
    assert attributes["tile_shape"] == [40, 32, 32]


def test_uint16_output_is_rounded_and_clipped(tiny_acquisition, tmp_path):
    section = open_acquisition(tiny_acquisition).slice(0)
    write_mosaic_grid(section, tmp_path / "g.ome.zarr", tmp_path / "a.ome.zarr", dtype="uint16", n_levels=0)
    grid = read_omezarr(tmp_path / "g.ome.zarr")[0]
    assert grid.dtype == np.uint16
    raw = section.tiles[(0, 0)].read()
    np.testing.assert_array_equal(grid[:, :64, :64].compute(), np.clip(np.rint(raw), 0, 65535))


def test_bad_arguments(tiny_acquisition, tmp_path):
    section = open_acquisition(tiny_acquisition).slice(0)
    with pytest.raises(InputError, match="z_range"):
        grid_geometry(section, z_range=(70, 90))
    with pytest.raises(InputError, match="dtype"):
        write_mosaic_grid(section, tmp_path / "g.ome.zarr", tmp_path / "a.ome.zarr", dtype="int8")
    done = subprocess.run(
        [sys.executable, SCRIPT, str(tiny_acquisition), str(tmp_path / "x.ome.zarr"), "--slice", "9"],
        capture_output=True, text=True,
    )
    assert done.returncode == 2
    assert done.stderr.strip().endswith("available slice ids: 0, 1, 2") and done.stderr.count("\n") == 1
    assert not (tmp_path / "x.ome.zarr").exists()


def test_laying_out_a_slice_imports_no_scipy_nor_tifffile():
    """The modules of the mosaic grid with the acquisition's curvature decision load neither scipy (only the
    curvature's estimation needs it) nor tifffile (only TIFF tiles): seconds of serial start-up otherwise."""
    script = """
import sys
import linumpy.io.acquisition, linumpy.mosaic.curvature_pool, linumpy.mosaic.grid
loaded = [name for name in ("scipy", "skimage", "tifffile") if name in sys.modules]
assert not loaded, loaded
"""
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", script], check=True, env={"PYTHONPATH": str(root), "PATH": ""})
