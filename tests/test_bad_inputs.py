"""Bad inputs to the command-line scripts, each run as a subprocess.

Every case must end with a non-zero exit and ONE line ``error: ...`` on
stderr naming the offending file (and what to do), with no output left behind;
or, where the input is legitimate (all-zero tiles, integer tiles, paths with
spaces and non-ASCII characters), with documented, checked behaviour.

Inputs are built here: a 2-slice TIFF acquisition of 2 x 2 tiles cut from a
smooth random field (so stitching has texture to register), and small
OME-Zarr slices written with ``save_omezarr``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from linumpy.io.tiff_tiles import write_tiff_tile
from linumpy.io.zarr import read_omezarr, save_omezarr

REPO = Path(__file__).resolve().parents[1]
TILE = (8, 32, 32)
STEP_PX = 24  # 25% overlap
LATERAL_UM = 3.0
SLICE_THICKNESS_UM = 12.0


def run_script(name: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "bin" / name), "-q", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit status 2, no traceback, and one ``error:`` line (the last) containing every needle.

    Log lines of libraries (``WARNING: ...``) may precede it.
    """
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, f"exit {result.returncode}; stderr:\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr[-3000:]
    for needle in needles:
        assert needle in errors[0], f"{needle!r} not in {errors[0]!r}"
    return errors[0]


def tile_name(row: int, col: int, slice_id: int) -> str:
    return f"tile_x{col:02d}_y{row:02d}_z{slice_id:02d}"


def slice_field(slice_id: int) -> np.ndarray:
    """The true (z, y, x) intensity of a slice: smooth random texture in [10, 110]."""
    rng = np.random.default_rng([7, slice_id])
    field = ndimage.gaussian_filter(rng.random((TILE[0], STEP_PX + TILE[1], STEP_PX + TILE[2])), (0, 2, 2))
    return (100 * (field - field.min()) / (field.max() - field.min()) + 10).astype(np.float32)


def make_acquisition(root: Path, slices=(0, 1)) -> Path:
    """Write a TIFF acquisition of 2 x 2 overlapping tiles per slice, with acquisition.json."""
    root.mkdir(parents=True)
    positions = {}
    for slice_id in slices:
        field = slice_field(slice_id)
        for row in range(2):
            for col in range(2):
                y, x = row * STEP_PX, col * STEP_PX
                write_tiff_tile(root / f"{tile_name(row, col, slice_id)}.tif",
                                field[:, y:y + TILE[1], x:x + TILE[2]])
                positions[tile_name(row, col, slice_id)] = {
                    "x": 5.0 + x * LATERAL_UM / 1000, "y": 7.0 + y * LATERAL_UM / 1000,
                    "z": 1.0 + slice_id * SLICE_THICKNESS_UM / 1000}
    write_sidecar_json(root, {
        "format_version": 1, "axial_resolution_um": 1.5, "lateral_resolution_um": [LATERAL_UM, LATERAL_UM],
        "slice_thickness_um": SLICE_THICKNESS_UM, "tile_overlap": [0.25, 0.25], "stage_positions_mm": positions})
    return root


def read_sidecar_json(root: Path) -> dict:
    return json.loads((root / "acquisition.json").read_text())


def write_sidecar_json(root: Path, document: dict) -> None:
    (root / "acquisition.json").write_text(json.dumps(document, indent=1))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    return make_acquisition(tmp_path_factory.mktemp("pristine") / "raw")


@pytest.fixture
def acquisition(pristine, tmp_path) -> Path:
    """A private, modifiable copy of the valid acquisition."""
    return Path(shutil.copytree(pristine, tmp_path / "raw"))


def mosaic(acquisition: Path, out_dir: Path, slice_id: int = 0) -> subprocess.CompletedProcess:
    return run_script("linum_create_mosaic_grid_3d.py", acquisition,
                      out_dir / f"mosaic_grid_3d_z{slice_id:02d}.ome.zarr", "--slice", slice_id, "--n_levels", 1)


def assert_nothing_written(out_dir: Path) -> None:
    leftovers = sorted(p.name for p in out_dir.iterdir()) if out_dir.exists() else []
    assert leftovers == [], f"a failed run left {leftovers}"


# ---------------------------------------------------------------- acquisition.json


def _drop_lateral(doc):
    doc.pop("lateral_resolution_um")


def _ill_typed_lateral(doc):
    doc["lateral_resolution_um"] = "three"


def _negative_axial(doc):
    doc["axial_resolution_um"] = -1.5


def _misspelled_field(doc):
    doc["lateral_resolution"] = doc.pop("lateral_resolution_um")


def _missing_stage_position(doc):
    doc["stage_positions_mm"].pop(tile_name(0, 1, 0))


def _ill_typed_stage_position(doc):
    doc["stage_positions_mm"][tile_name(1, 1, 0)]["x"] = "left"


def _overlap_out_of_range(doc):
    doc["tile_overlap"] = [1.5, 0.25]


def _future_version(doc):
    doc["format_version"] = 2


SIDECAR_CASES = {
    "missing lateral_resolution_um": (_drop_lateral, "lateral_resolution_um' is missing"),
    "ill-typed lateral_resolution_um": (_ill_typed_lateral, "lateral_resolution_um"),
    "negative axial_resolution_um": (_negative_axial, "axial_resolution_um"),
    "misspelled field": (_misspelled_field, "lateral_resolution"),
    "missing stage position": (_missing_stage_position, f"stage_positions_mm.{tile_name(0, 1, 0)}' is missing"),
    "ill-typed stage position": (_ill_typed_stage_position, f"stage_positions_mm.{tile_name(1, 1, 0)}.x"),
    "overlap out of [0, 1)": (_overlap_out_of_range, "tile_overlap"),
    "unknown format_version": (_future_version, "format_version"),
}


#: The mosaic grid script checks these two; the (lighter) motor table script the others:
#: both read the acquisition through linumpy.io.acquisition.
_CHECKED_BY_MOSAIC = ("missing lateral_resolution_um", "missing stage position")


@pytest.mark.parametrize("case", sorted(SIDECAR_CASES))
def test_bad_sidecar_field_is_named(acquisition, tmp_path, case):
    damage, needle = SIDECAR_CASES[case]
    document = read_sidecar_json(acquisition)
    damage(document)
    write_sidecar_json(acquisition, document)
    out = tmp_path / "out"
    if case in _CHECKED_BY_MOSAIC:
        result = mosaic(acquisition, out)
    else:
        result = run_script("linum_collect_motor_positions.py", acquisition, out / "motors.csv")
    assert_one_line_error(result, "acquisition.json", needle)
    assert_nothing_written(out)


def test_sidecar_that_is_not_json_is_named(acquisition, tmp_path):
    (acquisition / "acquisition.json").write_text('{"format_version": 1,')
    result = run_script("linum_collect_motor_positions.py", acquisition, tmp_path / "motors.csv")
    assert_one_line_error(result, "acquisition.json", "not a readable JSON file")
    assert not (tmp_path / "motors.csv").exists()


# ---------------------------------------------------------------- tiles


def test_tile_of_the_wrong_shape_is_named(acquisition, tmp_path):
    write_tiff_tile(acquisition / f"{tile_name(1, 0, 0)}.tif", np.ones((8, 32, 30), np.float32))
    assert_one_line_error(mosaic(acquisition, tmp_path / "out"), f"{tile_name(1, 0, 0)}.tif", "shape")
    assert_nothing_written(tmp_path / "out")


def test_2d_tile_is_named(acquisition, tmp_path):
    tifffile.imwrite(acquisition / f"{tile_name(0, 0, 0)}.tif", np.ones((32, 32), np.float32))
    result = run_script("linum_collect_motor_positions.py", acquisition, tmp_path / "motors.csv")
    assert_one_line_error(result, f"{tile_name(0, 0, 0)}.tif", "3D")


def test_unreadable_tile_is_named(acquisition, tmp_path):
    (acquisition / f"{tile_name(1, 1, 0)}.tif").write_bytes(b"II*\x00garbage")
    result = run_script("linum_collect_motor_positions.py", acquisition, tmp_path / "motors.csv")
    assert_one_line_error(result, f"{tile_name(1, 1, 0)}.tif", "not a readable TIFF")


def test_complex_tile_is_refused(acquisition, tmp_path):
    tifffile.imwrite(acquisition / f"{tile_name(0, 1, 0)}.tif", np.ones(TILE, np.complex64))
    assert_one_line_error(mosaic(acquisition, tmp_path / "out"), f"{tile_name(0, 1, 0)}.tif", "complex64")
    assert_nothing_written(tmp_path / "out")


def test_integer_tiles_are_read_as_float(acquisition, tmp_path):
    """Documented behaviour: any real dtype is read and converted to float32."""
    name = f"{tile_name(0, 0, 0)}.tif"
    values = tifffile.imread(acquisition / name).round().astype(np.uint16)
    tifffile.imwrite(acquisition / name, values)
    assert mosaic(acquisition, tmp_path / "out").returncode == 0
    grid, _ = read_omezarr(tmp_path / "out" / "mosaic_grid_3d_z00.ome.zarr")
    np.testing.assert_array_equal(grid[:, :TILE[1], :TILE[2]].compute(), values.astype(np.float32))


def test_non_finite_tile_values_are_zeroed_with_a_warning(acquisition, tmp_path):
    """Documented behaviour (docs/raw-formats.md): NaN/inf samples become 0, a warning names the tile
    and the count, and the run goes on with a finite mosaic grid and stitched slice."""
    name = f"{tile_name(1, 1, 0)}.tif"
    values = tifffile.imread(acquisition / name)
    values[2, 5:9, 5:9] = np.nan
    values[3, 0, 0] = np.inf
    values[3, 0, 1] = -np.inf
    write_tiff_tile(acquisition / name, values)
    out = tmp_path / "out"
    result = mosaic(acquisition, out)
    assert result.returncode == 0, result.stderr[-3000:]
    warnings = [line for line in result.stderr.splitlines() if name in line]
    assert len(warnings) == 1 and "18 of" in warnings[0] and "replaced by 0" in warnings[0], result.stderr
    grid, _ = read_omezarr(out / "mosaic_grid_3d_z00.ome.zarr")
    tile = grid[:, TILE[1]:, TILE[2]:].compute()
    bad = ~np.isfinite(values)
    np.testing.assert_array_equal(tile[bad], 0)
    np.testing.assert_array_equal(tile[~bad], values[~bad])
    stitched = out / "slice_z00_stitch_3d.ome.zarr"
    result = run_script("linum_stitch_3d.py", out / "mosaic_grid_3d_z00.ome.zarr", stitched, "--n_levels", 1)
    assert result.returncode == 0, result.stderr[-3000:]
    data, _ = read_omezarr(stitched)
    assert np.isfinite(data.compute()).all(), "NaN/inf from one tile reached the stitched slice"


def test_empty_tile_and_empty_slice_are_processed(acquisition, tmp_path):
    """All-zero tiles (agarose) and an all-zero slice are legitimate: finite outputs, no crash."""
    for row in range(2):
        for col in range(2):
            write_tiff_tile(acquisition / f"{tile_name(row, col, 1)}.tif", np.zeros(TILE, np.float32))
    write_tiff_tile(acquisition / f"{tile_name(0, 0, 0)}.tif", np.zeros(TILE, np.float32))
    out = tmp_path / "out"
    for slice_id in (0, 1):
        assert mosaic(acquisition, out, slice_id).returncode == 0
        stitched = out / f"slice_z{slice_id:02d}_stitch_3d.ome.zarr"
        result = run_script("linum_stitch_3d.py", out / f"mosaic_grid_3d_z{slice_id:02d}.ome.zarr", stitched,
                            "--n_levels", 1)
        assert result.returncode == 0, result.stderr[-3000:]
        data = read_omezarr(stitched)[0].compute()
        assert np.isfinite(data).all()
        if slice_id == 1:
            assert not data.any(), "an empty slice stays empty"
    for script, step in (("linum_axial_corr.py", "axial_corr"), ("linum_normalize.py", "normalize")):
        product = out / f"slice_z01_{step}.ome.zarr"
        result = run_script(script, out / "slice_z01_stitch_3d.ome.zarr", product, "--n_levels", 1)
        if result.returncode != 0:  # refusing an empty slice is fine if it says so
            assert_one_line_error(result, "slice_z01_stitch_3d")
        else:
            assert np.isfinite(read_omezarr(product)[0].compute()).all()


# ---------------------------------------------------------------- slices and motors


def test_duplicate_tile_of_a_slice_is_named(acquisition, tmp_path):
    (acquisition / "copy").mkdir()
    shutil.copy(acquisition / f"{tile_name(0, 0, 1)}.tif", acquisition / "copy")
    result = run_script("linum_collect_motor_positions.py", acquisition, tmp_path / "motors.csv")
    assert_one_line_error(result, f"{tile_name(0, 0, 1)}.tif", "twice")


def test_missing_slice_id_lists_the_available_ones(acquisition, tmp_path):
    assert_one_line_error(mosaic(acquisition, tmp_path / "out", slice_id=5), "slice 5", "0, 1")


def _slices(root: Path, ids, seed: int = 2) -> list[Path]:
    rng = np.random.default_rng(seed)
    paths = []
    for slice_id in ids:
        path = root / f"slice_z{slice_id:02d}_normalize.ome.zarr"
        if not path.exists():
            save_omezarr(rng.random((8, 24, 24)).astype(np.float32), path, (0.0015, 0.01, 0.01), n_levels=0)
        paths.append(path)
    return paths


def _motor_csv(path: Path, rows) -> Path:
    lines = ["slice_id,x_mm,y_mm,z_mm,n_tiles", *(f"{i},1.0,2.0,{z!r},4" for i, z in rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_duplicate_slice_ids_given_to_the_stack_are_refused(tmp_path):
    paths = _slices(tmp_path, [0, 1])
    copy = tmp_path / "again" / paths[1].name
    shutil.copytree(paths[1], copy)
    motors = _motor_csv(tmp_path / "motors.csv", [(0, 1.0), (1, 1.012)])
    result = run_script("linum_stack_slices_motor.py", *paths, copy, tmp_path / "brain.ome.zarr",
                        "--motor_positions", motors, "--slice_thickness_um", 12)
    assert_one_line_error(result, "more than once", "1")
    assert not (tmp_path / "brain.ome.zarr").exists()


def test_duplicate_slice_rows_in_the_motor_table_are_named(tmp_path):
    paths = _slices(tmp_path, [0, 1])
    motors = _motor_csv(tmp_path / "motors.csv", [(0, 1.0), (1, 1.012), (1, 1.013)])
    result = run_script("linum_stack_slices_motor.py", *paths, tmp_path / "brain.ome.zarr",
                        "--motor_positions", motors, "--slice_thickness_um", 12)
    assert_one_line_error(result, "motors.csv", "slice 1 appears twice")


def test_non_monotonic_motor_positions_are_reported_or_corrected(tmp_path):
    """Slice 2's motor z goes backwards: either a one-line error naming the table, or a stack
    in which slices stay in id order (encoder glitch corrected), as docs/stacking.md describes."""
    paths = _slices(tmp_path, [0, 1, 2, 3])
    motors = _motor_csv(tmp_path / "motors.csv", [(0, 1.0), (1, 1.012), (2, 0.95), (3, 1.036)])
    out = tmp_path / "brain.ome.zarr"
    result = run_script("linum_stack_slices_motor.py", *paths, out, "--motor_positions", motors,
                        "--slice_thickness_um", 12, "--resolution", 10, "--pyramid_resolutions", 10)
    if result.returncode != 0:
        assert_one_line_error(result, "motors.csv")
        return
    slices = json.loads((tmp_path / "brain_shifts.json").read_text())["slices"]
    depths = np.array([s["origin_um"][0] for s in slices])
    np.testing.assert_allclose(np.diff(depths), SLICE_THICKNESS_UM, atol=1.0)  # truth: one thickness apart
    assert slices[2]["glitch_corrected"], "the correction must be recorded for QC"


# ---------------------------------------------------------------- OME-Zarr inputs


@pytest.fixture(scope="module")
def grids(pristine, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("grids")
    assert mosaic(pristine, out).returncode == 0
    return out


@pytest.mark.parametrize("script", ["linum_stitch_3d.py", "linum_axial_corr.py", "linum_normalize.py"])
def test_2d_image_where_3d_is_needed_is_named(grids, tmp_path, script):
    aip = grids / "mosaic_grid_2d_z00.ome.zarr"
    result = run_script(script, aip, tmp_path / "slice_z00_out.ome.zarr")
    assert_one_line_error(result, "mosaic_grid_2d_z00.ome.zarr", "2D")
    assert_nothing_written(tmp_path)


@pytest.mark.parametrize("unit", ["furlong", ""])
def test_unknown_unit_is_named(grids, tmp_path, unit):
    grid = Path(shutil.copytree(grids / "mosaic_grid_3d_z00.ome.zarr", tmp_path / "in" / "mosaic_grid_3d_z00.ome.zarr"))
    attributes = json.loads((grid / ".zattrs").read_text())
    attributes["multiscales"][0]["axes"][1]["unit"] = unit
    (grid / ".zattrs").write_text(json.dumps(attributes))
    result = run_script("linum_stitch_3d.py", grid, tmp_path / "out" / "slice_z00_stitch_3d.ome.zarr")
    assert_one_line_error(result, "mosaic_grid_3d_z00.ome.zarr", "unit")
    assert_nothing_written(tmp_path / "out")


@pytest.mark.parametrize("script", ["linum_normalize.py", "linum_create_mosaic_grid_3d.py"])
def test_missing_input_is_named(tmp_path, script):
    missing = tmp_path / "nowhere" / "mosaic_grid_3d_z00.ome.zarr"
    extra = ["--slice", "0"] if script == "linum_create_mosaic_grid_3d.py" else []
    result = run_script(script, missing, tmp_path / "slice_z00_out.ome.zarr", *extra)
    assert_one_line_error(result, "nowhere")


def test_existing_output_is_refused_without_overwrite(grids, tmp_path):
    out = tmp_path / "slice_z00_stitch_3d.ome.zarr"
    out.mkdir()
    (out / "keep").write_text("mine")
    result = run_script("linum_stitch_3d.py", grids / "mosaic_grid_3d_z00.ome.zarr", out)
    assert_one_line_error(result, "slice_z00_stitch_3d.ome.zarr", "already exists")
    assert (out / "keep").read_text() == "mine"


# ---------------------------------------------------------------- paths


def test_paths_with_spaces_and_unicode_work(pristine, tmp_path):
    """Also the valid baseline: mosaic grid, stitch and motor table of the pristine acquisition."""
    raw = Path(shutil.copytree(pristine, tmp_path / "raw data é 脑"))
    out = tmp_path / "résultats 1" / "sous dossier"
    assert mosaic(raw, out).returncode == 0
    stitched = out / "slice_z00_stitch_3d.ome.zarr"
    result = run_script("linum_stitch_3d.py", out / "mosaic_grid_3d_z00.ome.zarr", stitched, "--n_levels", 1)
    assert result.returncode == 0, result.stderr[-3000:]
    np.testing.assert_allclose(read_omezarr(stitched)[0].compute(), slice_field(0), rtol=1e-5)
    motors = tmp_path / "motor table ü.csv"
    assert run_script("linum_collect_motor_positions.py", raw, motors).returncode == 0
    assert motors.read_text().splitlines()[0] == "slice_id,x_mm,y_mm,z_mm,n_tiles"
