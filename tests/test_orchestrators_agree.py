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
from linumpy.pipeline.layout import OutputLayout
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
    for task in (t for t in tasks if t.step.script is not None):  # a publication runs no command
        nextflow = nextflow_command(task.step.process, task.inputs, params)
        assert _names(nextflow) == _names(task.argv), f"{task.id}:\n nextflow: {nextflow}\n local: {task.argv}"


def test_changed_parameter_changes_only_the_affected_tasks(tmp_path):
    """The runner's resume keys follow params the way Nextflow's task hashes do (via the command)."""
    before = {t.id: t.key for t in planned_tasks(PipelineParams(simulate="tiny"), tmp_path, [0, 1])}
    after = {t.id: t.key for t in planned_tasks(PipelineParams(simulate="tiny", blend="max"), tmp_path, [0, 1])}
    changed = sorted(i for i in before if before[i] != after[i])
    assert changed == sorted([
        "stitch_3d_z00", "axial_corr_z00", "publish_axial_corr_z00", "normalize_z00", "screenshot_z00",
        "stitch_3d_z01", "axial_corr_z01", "publish_axial_corr_z01", "axial_corr_borrowed_z01", "normalize_z01",
        "screenshot_z01",
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
    # the first pass is published once decided: the final product (normalized) or a borrower's refused attempt
    assert "PUBLISH_AXIAL_CORR(slicesAmong(AXIAL_CORR.out.products, borrowers, false))" in workflow
    assert "PUBLISH_AXIAL_CORR_REFUSED(slicesAmong(AXIAL_CORR.out.products, borrowers, true))" in workflow
    assert "NORMALIZE(PUBLISH_AXIAL_CORR.out.zarr.mix(AXIAL_CORR_BORROWED.out.zarr))" in workflow
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


def _published_folder(process: str) -> str | None:
    """The folder under ``params.outdir`` the withName block of ``process`` publishes into (None: disabled)."""
    text = (ROOT / "conf" / "modules.config").read_text()
    found = []
    for match in re.finditer(r"withName:\s*'([^']+)'\s*\{", text):
        body = text[match.end():text.index("\n    }", match.end())]
        publish = re.search(r"publishDir = \[(.*?)\]$", body, re.MULTILINE)
        if publish and re.fullmatch(match.group(1), process):
            folder = re.search(r'"\$\{params\.outdir\}/(\w+)"', publish.group(1))
            found.append(None if "enabled: false" in publish.group(1) else folder.group(1))
    assert len(found) == 1, f"{process}: {len(found)} publishDir settings"
    return found[0]


def test_each_axial_product_name_has_one_publisher_and_the_runners_folders(tmp_path):
    """axial_corr/ holds the final correction: the first pass publishes nothing until COMBINE_FOCUS decides."""
    layout = OutputLayout(tmp_path)
    final, refused = layout.slice_product(3, "axial_corr").parent.name, layout.refused_axial(3).parent.name
    assert _published_folder("AXIAL_CORR") is None
    assert _published_folder("PUBLISH_AXIAL_CORR") == final == "axial_corr"
    assert _published_folder("AXIAL_CORR_BORROWED") == final
    assert _published_folder("PUBLISH_AXIAL_CORR_REFUSED") == refused == "axial_corr_refused"
    tasks = {t.id: t for t in planned_tasks(PipelineParams(simulate="tiny"), tmp_path, [0, 1])}  # 1 borrows
    assert tasks["publish_axial_corr_z00"].outputs[0] == layout.slice_product(0, "axial_corr")
    assert tasks["publish_axial_corr_z01"].outputs[0] == layout.refused_axial(1)
    assert tasks["axial_corr_borrowed_z01"].outputs[0] == layout.slice_product(1, "axial_corr")
    assert tasks["axial_corr_z01"].outputs[0].parent == layout.staging / "axial_corr"
