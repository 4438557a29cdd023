"""The tiles' summaries the mosaic grid step saves in its AIP, and the stitcher's use of them (``--aip``)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from linumpy.io.zarr import open_omezarr_level, read_omezarr, read_omezarr_info
from linumpy.mosaic.summaries import LEAST_PLANE_MEANS_ATTRIBUTE
from linumpy.stitching.stitch import mosaic_grid_layout
from linumpy.stitching.summaries import checked_tile, read_tile_summaries, tile_summaries


@pytest.fixture(scope="module", params=["float32", "uint16"])
def grid(request, tiny_acquisition, tmp_path_factory):
    """Mosaic grid and AIP of the tiny slice 0 with one tile left out, in each stored dtype."""
    from linumpy.io.acquisition import open_acquisition
    from linumpy.mosaic.grid import write_mosaic_grid

    section = open_acquisition(tiny_acquisition).slice(0)
    del section.tiles[(2, 1)]  # a missing tile: no summary, None in the attribute
    folder = tmp_path_factory.mktemp(f"aip_{request.param}")
    grid_path, aip_path = folder / "mosaic_grid_3d_z00.ome.zarr", folder / "mosaic_grid_2d_z00.ome.zarr"
    write_mosaic_grid(section, grid_path, aip_path, dtype=request.param, n_levels=1)
    return grid_path, aip_path


def open_grid(grid_path):
    data, _ = open_omezarr_level(grid_path)
    return data, mosaic_grid_layout(read_omezarr_info(grid_path).attributes, data.shape, str(grid_path))


def assert_same_bits(summaries, expected):
    assert summaries.projections.keys() == expected.projections.keys()
    for tile, projection in expected.projections.items():
        assert summaries.projections[tile].dtype == np.float32
        assert np.array_equal(summaries.projections[tile].view(np.uint32), projection.view(np.uint32))
    assert summaries.least_plane_means == expected.least_plane_means


def test_aip_holds_the_summaries_the_stitcher_reads_from_the_tiles(grid):
    grid_path, aip_path = grid
    data, layout = open_grid(grid_path)
    from_tiles = tile_summaries(data, layout)
    # ground truth: the summary computed here from the stored tiles, plainly
    for tile in layout.tiles_present:
        stored = np.asarray(data[(slice(None), *layout.tile_slices(tile))])
        assert from_tiles.least_plane_means[tile] == min(float(p.mean(dtype=np.float64)) for p in stored)
    attribute = read_omezarr_info(aip_path).attributes[LEAST_PLANE_MEANS_ATTRIBUTE]
    assert len(attribute) == 3 and all(len(row) == 2 for row in attribute)
    assert attribute[2][1] is None and (2, 1) not in layout.tiles_present
    summaries, source = read_tile_summaries(data, layout, aip_path)
    assert checked_tile(layout) == (1, 0)  # of the 3 x 2 grid's two tiles nearest its centre, the first
    assert source.qc_fields() == {"source": "aip", "reason": "tile (1, 0) recomputed from the grid: identical"}
    assert_same_bits(summaries, from_tiles)


def corrupt(aip_path, folder, change):
    """A copy of the AIP with its linumpy attributes changed by ``change`` (in place on a dict)."""
    import zarr

    copy = folder / "corrupted.ome.zarr"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(aip_path, copy)
    group = zarr.open_group(str(copy), mode="r+")
    attributes = dict(group.attrs["linumpy"])
    change(attributes)
    group.attrs["linumpy"] = attributes
    return copy


def _perturb_checked(attributes, tile):
    row = attributes[LEAST_PLANE_MEANS_ATTRIBUTE][tile[0]]
    row[tile[1]] = float(np.nextafter(row[tile[1]], np.inf))  # one bit off


@pytest.mark.parametrize("change, reason", [
    (lambda a, t: a.pop(LEAST_PLANE_MEANS_ATTRIBUTE), "has no tile_least_plane_means"),
    (lambda a, t: a[LEAST_PLANE_MEANS_ATTRIBUTE].pop(), "is (2, 2), the grid (3, 2)"),
    (lambda a, t: a[LEAST_PLANE_MEANS_ATTRIBUTE][0].__setitem__(0, None), "not finite at every present tile"),
    (lambda a, t: a.__setitem__(LEAST_PLANE_MEANS_ATTRIBUTE, [["x", 1]] * 3), "is malformed"),
    (_perturb_checked, "differs from the one recomputed from the grid"),
])
def test_a_corrupted_or_mismatched_attribute_falls_back_to_the_tiles(grid, tmp_path, caplog, change, reason):
    grid_path, aip_path = grid
    data, layout = open_grid(grid_path)
    corrupted = corrupt(aip_path, tmp_path, lambda attributes: change(attributes, checked_tile(layout)))
    summaries, source = read_tile_summaries(data, layout, corrupted)
    assert source.source == "tiles" and reason in source.reason
    assert reason in caplog.text
    assert_same_bits(summaries, tile_summaries(data, layout))


def test_an_aip_of_another_grid_or_no_aip_falls_back_to_the_tiles(grid, tmp_path):
    grid_path, aip_path = grid
    data, layout = open_grid(grid_path)
    _, source = read_tile_summaries(data, layout, tmp_path / "missing.ome.zarr")
    assert source.source == "tiles" and "cannot read" in source.reason
    _, source = read_tile_summaries(data, layout, grid_path)  # the 3D grid is not its AIP
    assert source.source == "tiles" and "the grid's planes" in source.reason
    _, source = read_tile_summaries(data, layout, None)
    assert source.qc_fields() == {"source": "tiles", "reason": "no AIP given"}


def test_stitched_output_is_identical_with_and_without_aip(grid, tmp_path):
    from test_stitching import stitch_cli

    grid_path, aip_path = grid
    outputs = {}
    for name, extra in [("tiles", []), ("aip", ["--aip", aip_path])]:
        out = tmp_path / name / "slice_z00_stitch_3d.ome.zarr"
        out.parent.mkdir()
        assert stitch_cli(grid_path, out, "--n_levels", "1", "-q", *extra) == 0
        qc = json.loads((tmp_path / name / "slice_z00_stitch_3d_qc.json").read_text())
        assert qc["metrics"]["tile_summaries"]["source"] == name
        outputs[name] = (np.asarray(read_omezarr(out)[0]), qc["metrics"]["fusion_flatfield"],
                         (tmp_path / name / "slice_z00_stitch_3d_transform.json").read_text())
    assert np.array_equal(outputs["tiles"][0], outputs["aip"][0])
    assert outputs["tiles"][1:] == outputs["aip"][1:]
    least = tile_summaries(*open_grid(grid_path)).least_plane_means  # the floor: their median over the tiles
    assert outputs["aip"][1]["noise_floor"] == round(float(np.median(list(least.values()))), 6)


def test_both_orchestrators_give_the_stitch_the_mosaic_grids_aip(tmp_path):
    from linumpy.pipeline.layout import OutputLayout
    from linumpy.pipeline.params import PipelineParams
    from linumpy.pipeline.plan import plan_slice
    from test_nextflow_static import ROOT, nextflow_command

    params, layout = PipelineParams(simulate="tiny"), OutputLayout(tmp_path)
    mosaic, stitch = plan_slice(params, layout, layout.acquisition, 3)[:2]
    aip = layout.mosaic_grid(3, 2)
    assert aip in mosaic.outputs and stitch.argv[stitch.argv.index("--aip") + 1] == str(aip)
    staged = {name: Path(value).name if isinstance(value, Path) else value for name, value in stitch.inputs.items()}
    nextflow = nextflow_command("STITCH_3D", staged, params)
    assert nextflow[nextflow.index("--aip") + 1] == "mosaic_grid_2d_z03.ome.zarr"
    module = (ROOT / "modules" / "local" / "create_mosaic_grid.nf").read_text()
    assert 'path("mosaic_grid_3d_${meta.tag}.ome.zarr"), path("mosaic_grid_2d_${meta.tag}.ome.zarr"), emit: grid' \
        in module  # STITCH_3D takes CREATE_MOSAIC_GRID.out.grid: (meta, grid, aip)


def test_the_aip_check_runs_beside_the_estimate_and_a_failed_one_starts_again_from_the_tiles(grid, tmp_path,
                                                                                            monkeypatch):
    """The central tile's check of the AIP (a tile read, decoded and summarised) runs on the ``stitch-flat``
    thread, not serially before the estimate; an AIP whose only fault is that tile's least plane mean (one bit)
    is found out there, and the stitch starts again from the tiles: the same volume, transform and flat field
    as a stitch without an AIP, its QC record naming the reason."""
    import threading

    import linumpy.stitching.summaries as summaries_module
    from linumpy.stitching.stitch import stitch_mosaic_grid

    grid_path, aip_path = grid
    data, layout = open_grid(grid_path)
    corrupted = corrupt(aip_path, tmp_path, lambda attributes: _perturb_checked(attributes, checked_tile(layout)))
    threads = []
    tile_summary = summaries_module.tile_summary

    def on_thread(tile):
        threads.append(threading.current_thread().name)
        return tile_summary(tile)

    monkeypatch.setattr(summaries_module, "tile_summary", on_thread)
    outputs = {}
    for name, aip in [("tiles", None), ("corrupted", corrupted), ("aip", aip_path)]:
        threads.clear()
        out = tmp_path / name / "slice_z00_stitch_3d.ome.zarr"
        stitch_mosaic_grid(grid_path, out, aip_path=aip, n_levels=1, workers=2)
        qc = json.loads((tmp_path / name / "slice_z00_stitch_3d_qc.json").read_text())["metrics"]
        outputs[name] = (np.asarray(read_omezarr(out)[0]), qc["fusion_flatfield"],
                         (tmp_path / name / "slice_z00_stitch_3d_transform.json").read_text())
        first_thread = threads[0] if threads else None
        if name != "tiles":
            assert first_thread.startswith("stitch-flat")
        if name == "corrupted":
            assert qc["tile_summaries"]["source"] == "tiles"
            assert "differs from the one recomputed from the grid" in qc["tile_summaries"]["reason"]
    for name in ("corrupted", "aip"):
        assert np.array_equal(outputs[name][0], outputs["tiles"][0])
        assert outputs[name][1:] == outputs["tiles"][1:]
