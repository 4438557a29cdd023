"""slice_config.csv: metrics from the QC records, suggestions, the user's use column, both orchestrators."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from linumpy.errors import InputError
from linumpy.pipeline.layout import OutputLayout
from linumpy.pipeline.params import PipelineParams
from linumpy.pipeline.plan import plan_slice_config
from linumpy.pipeline.slice_config import apply_slice_config, build_slice_config, read_slice_config, write_slice_config
from linumpy.qc.records import read_qc_record, write_qc_record
from test_nextflow_static import nextflow_command, planned_tasks

ROOT = Path(__file__).resolve().parents[1]


def fake_results(root: Path) -> Path:
    """QC records of three slices: slice 1 nearly empty, slice 2 badly stitched."""
    coverage = {0: 0.8, 1: 0.01, 2: 0.7}
    confidence = {0: 0.9, 1: 0.8, 2: 0.3}
    for i in range(3):
        write_qc_record(root / "mosaic_grids" / f"mosaic_grid_3d_z{i:02d}.ome.zarr", "mosaic_grid_3d",
                        {"n_tiles": 6, "galvo_shift_px": 0, "galvo_confidence": 0.9})
        write_qc_record(root / "stitch_3d" / f"slice_z{i:02d}_stitch_3d.ome.zarr", "stitch_3d",
                        {"confidence": confidence[i], "max_residual_px": 0.4, "n_fallback_pairs": 0})
        write_qc_record(root / "axial_corr" / f"slice_z{i:02d}_axial_corr.ome.zarr", "axial_corr",
                        {"surface_detected_fraction": coverage[i], "median_surface_depth_um": 15.0,
                         "focus_mode": "background"})
    write_qc_record(root / "stack" / "volume.ome.zarr", "stack",
                    {"slice_ids": [0, 1, 2], "overlap_ncc": [None, 0.1, 0.8]})
    return root


def rows_by_id(path: Path) -> dict[int, dict[str, str]]:
    with open(path, newline="") as handle:
        return {int(row["slice_id"]): row for row in csv.DictReader(handle)}


def test_table_has_metrics_and_suggestions_but_excludes_nothing(tmp_path):
    results = fake_results(tmp_path / "results")
    out = write_slice_config(build_slice_config(results), results / "slice_config.csv")
    rows = rows_by_id(results / "slice_config.csv")
    assert sorted(rows) == [0, 1, 2]
    assert all(row["use"] == "1" for row in rows.values())  # suggestions only
    assert rows[0]["suggestion"] == "" and rows[0]["stitch_confidence"] == "0.9"
    assert "little tissue" in rows[1]["suggestion"] and "overlap NCC 0.10" in rows[1]["suggestion"]
    assert "poor stitching" in rows[2]["suggestion"]
    record = read_qc_record(out)
    assert record["metrics"]["excluded_slices"] == [] and len(record["flags"]) == 2


def test_user_use_column_is_kept_and_reported(tmp_path):
    results = fake_results(tmp_path / "results")
    table = results / "slice_config.csv"
    write_slice_config(build_slice_config(results), table)
    text = table.read_text().replace("\n1,1,,", "\n1,0,torn slice,", 1)
    table.write_text(text + "7,0,lost at the vibratome,,,,,,,,,,\n")
    assert rows_by_id(table)[1]["use"] == "0"

    params = apply_slice_config(PipelineParams(input="/data", outdir=str(results), exclude_slices=[2]))
    assert params.exclude_slices == [1, 2, 7] and params.selected([0, 1, 2, 7]) == [0]

    record = read_qc_record(write_slice_config(build_slice_config(results, table), table, overwrite=True))
    rows = rows_by_id(table)
    assert rows[1]["use"] == "0" and rows[1]["reason"] == "torn slice"
    assert rows[7]["reason"] == "lost at the vibratome"  # not in this run: row kept as it was
    assert record["metrics"]["excluded_slices"] == [
        {"slice_id": 1, "reason": "torn slice"}, {"slice_id": 7, "reason": "lost at the vibratome"}]


def test_bad_use_value_is_one_line_error(tmp_path):
    table = tmp_path / "slice_config.csv"
    table.write_text("slice_id,use,reason\n3,maybe,\n")
    with pytest.raises(InputError, match="line 2"):
        read_slice_config(table)


def test_orchestrators_pass_the_previous_table_alike(tmp_path):
    results = fake_results(tmp_path / "results")
    write_slice_config(build_slice_config(results), tmp_path / "edited.csv")
    params = PipelineParams(input="/data", slice_config=str(tmp_path / "edited.csv"))
    task = plan_slice_config(params, OutputLayout(results), planned_tasks(params, results, [0])[-4])
    assert "--previous" in task.argv
    nextflow = nextflow_command(task.step.process, task.inputs, params)
    assert [Path(w).name for w in nextflow] == [Path(w).name for w in task.argv]


def test_script_writes_the_table_and_keeps_its_own_use_column(tmp_path):
    results = fake_results(tmp_path / "results")
    out = tmp_path / "config.csv"
    command = [sys.executable, str(ROOT / "bin" / "linum_slice_config.py"), str(results), str(out)]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert sorted(rows_by_id(out)) == [0, 1, 2]
    out.write_text(out.read_text().replace("\n2,1,,", "\n2,0,out of focus,", 1))
    again = subprocess.run([*command, "-f"], capture_output=True, text=True)  # a rerun, as the runner does
    assert again.returncode == 0, again.stderr
    assert rows_by_id(out)[2]["use"] == "0" and rows_by_id(out)[2]["reason"] == "out of focus"
