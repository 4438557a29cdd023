"""Raw acquisition readers: native tiles (info.txt + .bin), TIFF tiles, sidecar, motor table."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from linumpy.errors import InputError, OutputExistsError
from linumpy.io.acquisition import DEFAULT_AXIAL_RESOLUTION_UM, open_acquisition, parse_tile_name, tile_name
from linumpy.io.motor_table import (
    MotorPosition,
    collect_motor_positions,
    read_motor_positions,
    write_motor_positions,
)
from linumpy.io import native_tiles
from linumpy.io.native_tiles import (
    INFO_NAME,
    NativeTileInfo,
    format_info_text,
    read_native_tile,
    write_native_frames,
)
from linumpy.io.sidecar import SIDECAR_NAME, read_sidecar
from linumpy.simulate import get_preset, simulate_acquisition

BIN = Path(__file__).resolve().parents[1] / "bin"


def make_native_tile(tile_dir: Path, volume: np.ndarray, n_repeat: int, n_extra: int, n_files: int, **stage) -> None:
    """Write ``volume`` (z, y, x) as a native tile whose repeats average back to it."""
    nz, ny, nx = volume.shape
    info = NativeTileInfo(
        nx=nx, ny=ny, n_repeat=n_repeat, width=nx * 2.0, height=ny * 4.0, n_extra=n_extra,
        top_z=5, bottom_z=5 + nz - 1, focus_z=12,
        stage_x_pos_mm=stage.get("x", 1.0), stage_y_pos_mm=stage.get("y", 2.0), stage_z_pos_mm=stage.get("z", 3.0),
    )
    frames = np.full((ny, n_repeat, nx + n_extra, nz), 1e6, np.float32)  # galvo-return sentinel
    offsets = np.arange(n_repeat, dtype=np.float32) - (n_repeat - 1) / 2  # zero-mean per B-scan
    frames[:, :, :nx, :] = volume.transpose(1, 2, 0)[:, None] + offsets[None, :, None, None]
    tile_dir.mkdir(parents=True)
    (tile_dir / INFO_NAME).write_text(format_info_text(info))
    write_native_frames(tile_dir, frames.reshape(ny * n_repeat, nx + n_extra, nz), n_files)


@pytest.fixture(scope="module")
def tiny_tiff(tmp_path_factory) -> Path:
    """Slice 0 of the tiny preset, seed 0, in the TIFF layout."""
    folder = tmp_path_factory.mktemp("tiff") / "raw"
    return simulate_acquisition(folder, get_preset("tiny", n_slices=1), seed=0, layout="tiff")


@pytest.fixture
def volume() -> np.ndarray:
    return np.random.default_rng(5).random((7, 6, 5), dtype=np.float32) * 100


def test_native_tile_round_trip_crops_extra_alines_and_averages_repeats(tmp_path, volume):
    # 18 frames over 11 files: image_10/11 must come after image_9 (natural sort),
    # and files split repeat groups in the middle.
    make_native_tile(tmp_path / "t", volume, n_repeat=3, n_extra=4, n_files=11)
    assert sorted(p.name for p in (tmp_path / "t").glob("image_*.bin"))[:3] == ["image_1.bin", "image_10.bin", "image_11.bin"]
    tile = read_native_tile(tmp_path / "t")
    assert tile.dtype == np.float32 and tile.shape == (7, 6, 5)
    np.testing.assert_allclose(tile, volume, rtol=0, atol=1e-4)


def test_native_tile_read_into_a_reused_array(tmp_path, volume):
    make_native_tile(tmp_path / "a", volume, n_repeat=3, n_extra=4, n_files=5)
    make_native_tile(tmp_path / "b", volume[::-1].copy(), n_repeat=1, n_extra=2, n_files=2)
    out = np.full(volume.shape, np.nan, np.float32)
    assert read_native_tile(tmp_path / "a", out=out) is out
    np.testing.assert_array_equal(out, read_native_tile(tmp_path / "a"))  # the same bits as a fresh array
    assert read_native_tile(tmp_path / "b", out=out) is out  # every value overwritten by the next tile
    np.testing.assert_array_equal(out, read_native_tile(tmp_path / "b"))
    with pytest.raises(ValueError, match="expected a C-contiguous float32"):
        read_native_tile(tmp_path / "a", out=np.empty((7, 6, 6), np.float32))
    with pytest.raises(ValueError, match="expected a C-contiguous float32"):
        read_native_tile(tmp_path / "a", out=np.empty(volume.shape, np.float64))


@pytest.mark.parametrize("frames_per_read", [1, 2, 4])
def test_native_tile_read_a_few_frames_at_a_time_is_the_tile(tmp_path, volume, monkeypatch, frames_per_read):
    # 18 frames of 3 repeats over 4 files (5, 5, 4, 4 frames): reads of 1, 2 or 4 frames split both the files
    # and the repeat groups; with and without the galvo band moved.
    make_native_tile(tmp_path / "t", volume, n_repeat=3, n_extra=4, n_files=4)
    whole = {shift: read_native_tile(tmp_path / "t", aline_shift=shift) for shift in (0, 2)}
    frame_bytes = 7 * (5 + 4) * 4
    monkeypatch.setattr(native_tiles, "READ_BYTES", frames_per_read * frame_bytes + frame_bytes // 2)
    tile = read_native_tile(tmp_path / "t")
    np.testing.assert_allclose(tile, volume, rtol=0, atol=1e-4)
    np.testing.assert_array_equal(tile, whole[0])
    np.testing.assert_array_equal(read_native_tile(tmp_path / "t", aline_shift=2), whole[2])


def test_truncated_bin_names_the_file(tmp_path, volume):
    make_native_tile(tmp_path / "t", volume, n_repeat=1, n_extra=2, n_files=2)
    target = tmp_path / "t" / "image_2.bin"
    target.write_bytes(target.read_bytes()[:-4])
    with pytest.raises(InputError, match=r"image_2\.bin.*truncated"):
        read_native_tile(tmp_path / "t")
    frame = target.read_bytes()
    target.write_bytes(frame[: len(frame) - 7 * 7 * 4])  # one whole frame missing
    with pytest.raises(InputError, match=r"image_2\.bin.*frames"):
        read_native_tile(tmp_path / "t")


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (lambda text: text.replace("ny: 6\n", ""), r"info\.txt: field 'ny' is missing"),
        (lambda text: text.replace("nx: 5", "nx: five"), r"info\.txt: field 'nx' is invalid"),
        (lambda text: text.replace("width: 10.0", "width: -1"), r"info\.txt: field 'width' is invalid"),
        (lambda text: text.replace("bottom_z: 11", "bottom_z: 2"), r"info\.txt: field 'bottom_z'"),
    ],
)
def test_info_validation_is_one_line_naming_file_and_field(tmp_path, volume, edit, pattern):
    make_native_tile(tmp_path / "tile_x00_y00_z00", volume, n_repeat=1, n_extra=0, n_files=1)
    info = tmp_path / "tile_x00_y00_z00" / INFO_NAME
    info.write_text(edit(info.read_text()))
    with pytest.raises(InputError, match=pattern) as caught:
        open_acquisition(tmp_path).slice(0)
    assert "\n" not in str(caught.value) and str(info) in str(caught.value)


def test_sidecar_validation_names_field(tmp_path):
    path = tmp_path / SIDECAR_NAME
    path.write_text(json.dumps({"axial_resolution_um": "thin"}))
    with pytest.raises(InputError, match=r"acquisition\.json: field 'axial_resolution_um' is invalid"):
        read_sidecar(path)
    path.write_text(json.dumps({"tile_overlap": [0.2, 1.5]}))
    with pytest.raises(InputError, match=r"field 'tile_overlap\.1'"):
        read_sidecar(path)
    path.write_text("{not json")
    with pytest.raises(InputError, match="not a readable JSON"):
        read_sidecar(path)


def test_tile_names_with_three_digit_ids_do_not_collide(tmp_path, volume):
    assert parse_tile_name(tile_name(3, 2, 100)) == (2, 3, 100)
    for slice_id, value in ((10, 1.0), (100, 2.0), (1, 3.0)):
        make_native_tile(tmp_path / tile_name(0, 0, slice_id), volume * 0 + value, 1, 0, 1)
    acq = open_acquisition(tmp_path)
    assert acq.slice_ids == [1, 10, 100]
    assert float(acq.slice(100).tiles[(0, 0)].read().mean()) == pytest.approx(2.0)
    assert float(acq.slice(10).tiles[(0, 0)].read().mean()) == pytest.approx(1.0)
    with pytest.raises(InputError, match="no tiles for slice 5; available slice ids: 1, 10, 100"):
        acq.slice(5)


def test_geometry_from_stage_positions_and_missing_origin_tile(tmp_path, volume):
    # 2 x 3 grid, tile (0, 0) missing; stage x decreases with the column.
    for row in range(2):
        for col in range(3):
            if (row, col) != (0, 0):
                stage = {"x": 5.0 - col * 0.008, "y": 7.0 + row * 0.016, "z": 1.25}
                make_native_tile(tmp_path / tile_name(col, row, 4), volume, 1, 1, 1, **stage)
    section = open_acquisition(tmp_path).slice(4)
    assert section.grid_shape == (2, 3)
    assert section.tile_shape == (7, 6, 5)
    assert section.resolution_um == (DEFAULT_AXIAL_RESOLUTION_UM, 4.0, 2.0)
    assert section.tile_step_px == (4.0, 4.0)  # 16 um / 4 um, 8 um / 2 um
    assert section.stage_position_mm == {"x": 5.0, "y": 7.0, "z": 1.25}
    assert sorted(section.tiles) == [(0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert section.focus_z_px == 7
    assert section.frames_averaged == 1


def test_open_tiny_native_matches_truth(tiny_acquisition):
    truth = json.loads((tiny_acquisition / "ground_truth" / "truth.json").read_text())
    acq = open_acquisition(tiny_acquisition)
    assert acq.layout == "native"
    assert acq.slice_ids == truth["slice_ids"]
    assert acq.slice_thickness_um == truth["slice_thickness_um"]
    for entry in truth["slices"]:
        section = acq.slice(entry["slice_id"])
        assert section.grid_shape == tuple(truth["grid_shape"])
        assert section.tile_shape == tuple(truth["tile_shape"])
        assert section.resolution_um == tuple(truth["resolution_um"])
        assert section.tile_step_px == tuple(float(s) for s in truth["tile_step_px"])
        assert section.stage_position_mm == entry["motor_position_mm"]
        assert len(section.tiles) == 6
        assert section.frames_averaged == truth["raw"]["n_repeat"] == 2


def test_axial_resolution_precedence_and_its_source(tiny_acquisition, tmp_path, caplog):
    sidecar = open_acquisition(tiny_acquisition).slice(0)
    assert (sidecar.resolution_um[0], sidecar.axial_resolution_source) == (1.5, "acquisition.json")
    given = open_acquisition(tiny_acquisition, axial_resolution_um=3.5).slice(0)
    assert (given.resolution_um[0], given.axial_resolution_source) == (3.5, "argument")
    assert "axial resolution not given" not in caplog.text
    copy = tmp_path / "raw"
    shutil.copytree(tiny_acquisition / tile_name(0, 0, 0), copy / tile_name(0, 0, 0))
    assumed = open_acquisition(copy)
    assert assumed.axial_resolution_um == DEFAULT_AXIAL_RESOLUTION_UM
    assert assumed.slice(0).axial_resolution_source == "default"
    assert f"{copy}: axial resolution not given" in caplog.text, "an assumed voxel size is never silent"


def test_one_subfolder_per_slice_is_accepted(tiny_acquisition, tmp_path):
    for tile_dir in tiny_acquisition.glob("tile_*"):
        slice_dir = tmp_path / f"slice_{tile_dir.name.split('_z')[1]}"
        slice_dir.mkdir(exist_ok=True)
        (slice_dir / tile_dir.name).symlink_to(tile_dir)
    flat, nested = open_acquisition(tiny_acquisition), open_acquisition(tmp_path, axial_resolution_um=1.5)
    assert nested.slice_ids == flat.slice_ids
    np.testing.assert_array_equal(nested.slice(2).tiles[(2, 1)].read(), flat.slice(2).tiles[(2, 1)].read())


def test_tiff_layout_reads_same_tiles_as_native(tiny_acquisition, tiny_tiff):
    native, tiff = open_acquisition(tiny_acquisition).slice(0), open_acquisition(tiny_tiff).slice(0)
    assert open_acquisition(tiny_tiff).layout == "tiff"
    for field in ("grid_shape", "tile_shape", "resolution_um", "tile_step_px", "stage_position_mm"):
        assert getattr(tiff, field) == getattr(native, field)
    for key, tile in native.tiles.items():
        np.testing.assert_allclose(tiff.tiles[key].read(), tile.read(), rtol=1e-6, atol=1e-7)
        assert tiff.tiles[key].stage_position_mm == tile.stage_position_mm
    assert tiff.frames_averaged is None, "TIFF tiles do not say how many frames they average"


def test_tiff_layout_requires_sidecar_fields(tiny_tiff, tmp_path):
    tiff_dir = tmp_path / "tiff"
    tiff_dir.mkdir()
    for tile in tiny_tiff.glob("tile_*.tif"):
        (tiff_dir / tile.name).symlink_to(tile)
    shutil.copy(tiny_tiff / SIDECAR_NAME, tiff_dir / SIDECAR_NAME)
    sidecar = json.loads((tiff_dir / SIDECAR_NAME).read_text())
    del sidecar["stage_positions_mm"]["tile_x01_y02_z00"]
    (tiff_dir / SIDECAR_NAME).write_text(json.dumps(sidecar))
    with pytest.raises(InputError, match=r"field 'stage_positions_mm\.tile_x01_y02_z00' is missing"):
        open_acquisition(tiff_dir).slice(0)
    (tiff_dir / SIDECAR_NAME).unlink()
    with pytest.raises(InputError, match=r"acquisition\.json: missing"):
        open_acquisition(tiff_dir)


def test_empty_folder_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no tile_x"):
        open_acquisition(tmp_path)


def test_motor_positions_table(tiny_acquisition, tmp_path):
    truth = json.loads((tiny_acquisition / "ground_truth" / "truth.json").read_text())
    rows = collect_motor_positions(open_acquisition(tiny_acquisition))
    write_motor_positions(rows, tmp_path / "motors.csv")
    table = read_motor_positions(tmp_path / "motors.csv")
    assert sorted(table) == truth["slice_ids"]
    for entry in truth["slices"]:
        row = table[entry["slice_id"]]
        assert (row.x_mm, row.y_mm, row.z_mm) == tuple(entry["motor_position_mm"][k] for k in "xyz")
        assert row.n_tiles == 6
    z = [table[i].z_mm for i in sorted(table)]
    np.testing.assert_allclose(np.diff(z), truth["slice_thickness_um"] / 1000.0)
    with pytest.raises(OutputExistsError, match="already exists"):
        write_motor_positions([MotorPosition(0, 0.0, 0.0, 0.0, 1)], tmp_path / "motors.csv")
    (tmp_path / "bad.csv").write_text("slice_id,x_mm\n0,1\n")
    with pytest.raises(InputError, match="column"):
        read_motor_positions(tmp_path / "bad.csv")


def test_collect_motor_positions_script(tiny_acquisition, tmp_path):
    out = tmp_path / "m.csv"
    script = str(BIN / "linum_collect_motor_positions.py")
    done = subprocess.run([sys.executable, script, str(tiny_acquisition), str(out), "--slices", "2", "0"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert out.read_text().splitlines()[0] == "slice_id,x_mm,y_mm,z_mm,n_tiles"
    assert sorted(read_motor_positions(out)) == [0, 2]
    again = subprocess.run([sys.executable, script, str(tiny_acquisition), str(out)], capture_output=True, text=True)
    assert again.returncode == 2 and again.stderr.startswith("error:") and again.stderr.count("\n") == 1
