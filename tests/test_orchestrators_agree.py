"""Nextflow and the local runner run the same scripts with the same flags.

For each task the local runner plans, the command line of the Nextflow
process of the same step is rebuilt from modules/local/*.nf and
conf/modules.config (see tests/test_nextflow_static.py) and compared word by
word; paths compare by file name, since Nextflow stages inputs under their
names in the task directory. The wiring of the workflow (which output feeds
which process) is checked against the chain of steps.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from linumpy.pipeline import steps
from linumpy.pipeline.params import PipelineParams
from test_nextflow_static import ROOT, SAMPLE_PARAMS, nextflow_command, planned_tasks

SCENARIOS = {
    "defaults, simulated": PipelineParams(simulate="tiny"),
    "every option set": SAMPLE_PARAMS,
    "raw input, subset": PipelineParams(input="/data/brain", slices="0,2", percentiles=[1, 99], flatfield=True),
    "excluded slice": PipelineParams(input="/data/brain", exclude_slices=[1], blend="max"),
}


def _names(argv: list[str] | tuple[str, ...]) -> list[str]:
    return [Path(word).name if "/" in word else word for word in argv]


@pytest.mark.parametrize("params", list(SCENARIOS.values()), ids=list(SCENARIOS))
def test_same_command_for_every_task(params, tmp_path):
    tasks = planned_tasks(params, tmp_path / "results", [0, 2, 11])
    assert {task.step for task in tasks} >= set(steps.STEPS) - ({steps.SIMULATE} if params.input else set())
    for task in tasks:
        nextflow = nextflow_command(task.step.process, task.inputs, params)
        assert _names(nextflow) == _names(task.argv), f"{task.id}:\n nextflow: {nextflow}\n local: {task.argv}"


def test_changed_parameter_changes_only_the_affected_tasks(tmp_path):
    """The runner's resume keys follow params the way Nextflow's task hashes do (via the command)."""
    before = {t.id: t.key for t in planned_tasks(PipelineParams(simulate="tiny"), tmp_path, [0, 1])}
    after = {t.id: t.key for t in planned_tasks(PipelineParams(simulate="tiny", blend="max"), tmp_path, [0, 1])}
    changed = sorted(i for i in before if before[i] != after[i])
    assert changed == sorted([
        "stitch_3d_z00", "axial_corr_z00", "normalize_z00", "screenshot_z00",
        "stitch_3d_z01", "axial_corr_z01", "axial_corr_borrowed_z01", "normalize_z01", "screenshot_z01",
        "combine_focus", "stack_slices", "screenshot_volume", "slice_config", "report",
    ])


def test_changing_the_subset_only_reruns_what_reads_the_table(tmp_path):
    """Like Nextflow, where only the stack reads motor_positions.csv, a slice's chain ignores the subset."""
    def keys(subset: list[int]) -> dict[str, str]:
        return {t.id: t.key for t in planned_tasks(PipelineParams(simulate="tiny", slices=subset), tmp_path, [0, 1])}

    before, after = keys([0, 1]), keys([0, 1, 2])
    changed = sorted(i for i in before if before[i] != after[i])
    assert changed == ["collect_motor_positions", "report", "screenshot_volume", "slice_config", "stack_slices"]


def test_workflow_wires_the_slice_chain_in_order():
    workflow = (ROOT / "workflows" / "linumpy.nf").read_text()
    chain = [step.process for step in steps.SLICE_CHAIN]
    for previous, following in zip(chain[:-1], chain[1:-1]):
        assert re.search(rf"\b{following}\({previous}\.out\.(grid|zarr)\b", workflow), (previous, following)
    # a slice whose own focus estimate was refused is corrected again with the acquisition's focus, then normalized
    assert "COMBINE_FOCUS(AXIAL_CORR.out.qc" in workflow
    assert "AXIAL_CORR_BORROWED(slicesAmong(STITCH_3D.out.zarr, borrowers, true), COMBINE_FOCUS.out.json)" in workflow
    assert ("def corrected = slicesAmong(AXIAL_CORR.out.zarr, borrowers, false).mix(AXIAL_CORR_BORROWED.out.zarr)"
            in workflow)
    assert "NORMALIZE(corrected)" in workflow
    last = chain[-1]
    assert re.search(rf"def ordered_slices = {last}\.out\.zarr\s*\n\s*\.toSortedList", workflow)
    assert ("STACK_SLICES(ordered_slices, uncompensated, COLLECT_MOTOR_POSITIONS.out.csv, allow_gaps, sidecar)"
            in workflow)
    assert f"SCREENSHOT_SLICE({last}.out.zarr" in workflow
    # one field curvature decision for the acquisition, read by every mosaic grid (as the local runner plans it)
    assert "ESTIMATE_FIELD_CURVATURE(acquisition)" in workflow
    assert "CREATE_MOSAIC_GRID(per_slice, ESTIMATE_FIELD_CURVATURE.out.json)" in workflow
    assert "SCREENSHOT_VOLUME(STACK_SLICES.out.volume" in workflow


def test_entry_workflow_resolves_slices_like_the_runner():
    """main.nf passes allow_gaps = allow_gaps || excluded slices, as PipelineParams.stack_allows_gaps."""
    main = (ROOT / "main.nf").read_text()
    assert "params.allow_gaps || !exclude_slices.isEmpty()" in main
    assert PipelineParams(exclude_slices="3").stack_allows_gaps
    assert not PipelineParams().stack_allows_gaps
