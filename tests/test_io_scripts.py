"""Tests of the OME-Zarr scripts: convert, screenshot, info, view."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from linumpy.cli import run
from linumpy.io.zarr import AnalysisOmeZarrWriter, read_omezarr, read_omezarr_info, save_omezarr
from linumpy.viz.screenshot import choose_level, nice_length_um

BIN = Path(__file__).resolve().parents[1] / "bin"
RESOLUTION = (0.0015, 0.010, 0.010)


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, BIN / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def call(name: str, *argv: str) -> None:
    script = load_script(name)
    run(script.build_parser(), script.main, [str(a) for a in argv])


def volume(shape=(12, 96, 80), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    return (1000 + 800 * np.sin(x / 9.0) * np.cos(y / 13.0) * np.exp(-z / 20) + 50 * rng.random(shape)).astype(np.uint16)


@pytest.fixture
def image(tmp_path) -> Path:
    path = tmp_path / "mosaic_grid_3d_z00.ome.zarr"
    save_omezarr(volume(), path, RESOLUTION, chunks=(4, 32, 32), n_levels=2)
    return path


def test_scripts_have_the_contract_shape():
    for name in ("linum_convert_omezarr", "linum_screenshot_omezarr", "linum_info_omezarr", "linum_view_omezarr"):
        path = BIN / f"{name}.py"
        assert path.read_text().startswith("#!/usr/bin/env python3") and path.stat().st_mode & 0o111
        parser = load_script(name).build_parser()
        options = {option for action in parser._actions for option in action.option_strings}
        assert {"--verbose", "--quiet"} <= options
    convert = {o for a in load_script("linum_convert_omezarr").build_parser()._actions for o in a.option_strings}
    assert {"--voxel_size_um", "--chunks", "--compression", "--n_levels", "--ngff_version", "--shards", "--overwrite"} <= convert


def test_tiff_round_trip(tmp_path, image):
    tiff = tmp_path / "stack.tif"
    call("linum_convert_omezarr", image, tiff, "-q")
    assert np.array_equal(tifffile.imread(tiff), volume())
    back = tmp_path / "back.ome.zarr"
    call("linum_convert_omezarr", tiff, back, "--chunks", "4", "48", "48", "--n_levels", "1", "-q")
    data, resolution = read_omezarr(back)
    assert np.array_equal(data.compute(), volume()) and resolution == pytest.approx(RESOLUTION)
    assert read_omezarr_info(back).chunks == (4, 48, 48) and len(read_omezarr_info(back).levels) == 2

    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, volume()[0])
    with pytest.raises(SystemExit) as exit_info:
        call("linum_convert_omezarr", plain, tmp_path / "p.ome.zarr")
    assert exit_info.value.code == 2
    call("linum_convert_omezarr", plain, tmp_path / "p.ome.zarr", "--voxel_size_um", "10", "-q")
    assert read_omezarr(tmp_path / "p.ome.zarr")[1] == pytest.approx((0.010, 0.010))


def test_reencode(tmp_path, image):
    out = tmp_path / "v5.ome.zarr"
    call("linum_convert_omezarr", image, out, "--compression", "zstd", "--ngff_version", "0.5",
         "--shards", "8", "64", "64", "-q")
    info = read_omezarr_info(out)
    assert (info.ngff_version, info.codec, info.levels[0].shards) == ("0.5", "zstd", (8, 64, 64))
    assert len(info.levels) == 3
    assert np.array_equal(read_omezarr(out)[0].compute(), volume())


def test_existing_output_refused_with_exit_2(tmp_path, image, capsys):
    out = tmp_path / "shot.png"
    out.write_bytes(b"keep")
    with pytest.raises(SystemExit) as exit_info:
        call("linum_screenshot_omezarr", image, out)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "already exists" in error and "\n" not in error
    assert out.read_bytes() == b"keep"


def test_screenshot_orthogonal_planes_and_single_plane(tmp_path, image):
    out = tmp_path / "shot.png"
    call("linum_screenshot_omezarr", image, out, "-q")
    picture = np.asarray(Image.open(out))
    # XY (96 x 80 px of 10 um) drawn at 512 px, XZ below and YZ beside it (12 planes: kept >= 12 px)
    assert picture.ndim == 2 and picture.shape == (512 + 6 + 12, 427 + 6 + 12)
    assert picture.std() > 20  # contrast stretched, not a flat image
    assert picture[520:, 440:].max() == 0 and picture[:512, :427].std() > 20
    single = tmp_path / "z3.png"
    call("linum_screenshot_omezarr", image, single, "--z", "3", "--level", "0", "-q")
    assert np.asarray(Image.open(single)).shape == (512, 427)
    with pytest.raises(SystemExit):
        call("linum_screenshot_omezarr", image, tmp_path / "bad.png", "--z", "99")
    assert not (tmp_path / "bad.png").exists()


def test_screenshot_of_2d_image_and_level_choice(tmp_path):
    path = tmp_path / "aip.ome.zarr"
    save_omezarr(volume((1, 1200, 600))[0], path, (0.010, 0.010), n_levels=3)
    out = tmp_path / "aip.png"
    call("linum_screenshot_omezarr", path, out, "-q")
    assert np.asarray(Image.open(out)).shape == (600, 300)  # level 1: still >= 512 px on its long side
    assert choose_level(read_omezarr_info(path)) == 1
    assert nice_length_um(730) == 500 and nice_length_um(0.3) == pytest.approx(0.2)


def test_info_json_and_text(tmp_path, image, capsys):
    with AnalysisOmeZarrWriter(tmp_path / "a.ome.zarr", (10, 20, 20), (5, 10, 10), np.float32) as writer:
        writer[:] = 1.0
        writer.finalize((0.010,) * 3, attributes={"slice_id": 2})
    call("linum_info_omezarr", tmp_path / "a.ome.zarr", "--json")
    summary = json.loads(capsys.readouterr().out)
    assert summary["valid"] is True and summary["dtype"] == "float32" and summary["codec"] == "blosc-lz4"
    assert [level["resolution_um"] for level in summary["levels"]] == [[10, 10, 10], [25, 25, 25], [50, 50, 50], [100, 100, 100]]
    assert summary["attributes"] == {"slice_id": 2} and summary["size_bytes"] > 0
    call("linum_info_omezarr", image)
    text = capsys.readouterr().out
    assert "NGFF 0.4" in text and "1.5 x 20 x 20 um" in text and "valid v04 Image" in text


def test_info_of_missing_file_exits_2():
    result = subprocess.run(
        [sys.executable, str(BIN / "linum_info_omezarr.py"), "does_not_exist.ome.zarr"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "error: does_not_exist.ome.zarr does not exist; check the path"


def test_view_without_napari_tells_how_to_install(image, capsys):
    try:
        import napari  # noqa: F401
    except ImportError:
        with pytest.raises(SystemExit) as exit_info:
            call("linum_view_omezarr", image)
        assert exit_info.value.code != 0
        assert "pip install 'linumpy[viewer]'" in capsys.readouterr().err
    else:
        pytest.skip("napari is installed: the viewer would open a window")
