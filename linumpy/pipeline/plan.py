"""The tasks of a run: which script runs on which files, with which arguments.

A :class:`Task` is one script invocation, laid out like the Nextflow process
that runs the same step (same positional arguments, then the fixed flags the
pipeline sets, then the options from the parameters). Its :attr:`Task.key`
fingerprints the command line (with paths inside the output directory made
relative, so a moved output directory still resumes) and the keys of the
tasks it reads from, so a change of parameters reruns the step and everything
downstream of it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import linumpy
from linumpy.io.naming import slice_step_name, slice_tag
from linumpy.pipeline import steps
from linumpy.pipeline.layout import VOLUME_NAME, OutputLayout
from linumpy.pipeline.params import PipelineParams
from linumpy.pipeline.slice_config import slice_config_path
from linumpy.qc.records import qc_record_path


@dataclass(frozen=True)
class Task:
    """One invocation of a ``bin/`` script.

    ``inputs`` uses the input names of the step's Nextflow process; ``argv``
    starts with the script's file name; ``signature`` is ``argv`` with the
    paths inside the output directory relative to it; ``watched`` are files
    the script reads beyond its arguments, whose content is part of the key.
    """

    id: str
    step: steps.Step
    slice_id: int | None
    argv: tuple[str, ...]
    signature: tuple[str, ...]
    outputs: tuple[Path, ...]
    inputs: dict[str, Any] = field(default_factory=dict)
    upstream: tuple[Task, ...] = ()
    watched: tuple[Path, ...] = ()

    @property
    def key(self) -> str:
        """Fingerprint of the command line, the linumpy version, the upstream tasks and the watched files."""
        payload = json.dumps([linumpy.__version__, list(self.signature), [t.key for t in self.upstream],
                              [_content_digest(path) for path in self.watched]])
        return hashlib.sha256(payload.encode()).hexdigest()


def _content_digest(path: Path) -> str | None:
    """SHA-256 of a file's bytes, None when it does not exist."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def _relative_to(root: Path, word: str) -> str:
    path = Path(word)
    return f"OUTDIR/{path.relative_to(root).as_posix()}" if path.is_relative_to(root) else word


def _task(step: steps.Step, params: PipelineParams, layout: OutputLayout, *, slice_id: int | None = None,
          positional: list, fixed: list = (), outputs: list[Path], inputs: dict[str, Any],
          upstream: tuple[Task, ...] = (), name: str | None = None, watched: tuple[Path, ...] = ()) -> Task:
    """Build a task; ``name`` defaults to ``<step>[_zNN]``."""
    argv = step.command([str(p) for p in positional], [str(f) for f in fixed], params)
    signature = tuple(_relative_to(layout.root, word) if word.startswith("/") else word for word in argv)
    if name is None:
        name = step.name if slice_id is None else f"{step.name}_{slice_tag(slice_id)}"
    return Task(name, step, slice_id, tuple(argv), signature, tuple(outputs), inputs, upstream, watched)


def plan_simulation(params: PipelineParams, layout: OutputLayout) -> Task:
    """The task simulating the acquisition into ``OUTDIR/acquisition``."""
    return _task(steps.SIMULATE, params, layout, positional=[layout.acquisition],
                 fixed=["--preset", params.simulate], outputs=[layout.acquisition],
                 inputs={"preset": params.simulate})


def plan_motor_positions(params: PipelineParams, layout: OutputLayout, acquisition: Path,
                         upstream: tuple[Task, ...] = ()) -> Task:
    """The task writing the motor positions table (restricted to ``params.slices`` if set)."""
    return _task(steps.COLLECT_MOTOR_POSITIONS, params, layout,
                 positional=[acquisition, layout.motor_positions],
                 fixed=["--slices", *params.slices] if params.slices else [],
                 outputs=[layout.motor_positions],
                 inputs={"acquisition": acquisition, "slices": params.slices or []}, upstream=upstream)


def plan_field_curvature(params: PipelineParams, layout: OutputLayout, acquisition: Path,
                         upstream: tuple[Task, ...] = ()) -> Task:
    """The task deciding the field curvature once for the acquisition (read by every mosaic grid)."""
    return _task(steps.ESTIMATE_FIELD_CURVATURE, params, layout, positional=[acquisition, layout.field_curvature],
                 outputs=[layout.field_curvature], inputs={"acquisition": acquisition}, upstream=upstream)


def plan_slice(params: PipelineParams, layout: OutputLayout, acquisition: Path, slice_id: int,
               upstream: tuple[Task, ...] = (), curvature: Task | None = None) -> list[Task]:
    """The chain of one slice up to its first axial correction: mosaic grid, stitch, axial correction (staged).

    The rest of the chain waits for the acquisition's focus (:func:`plan_focus_combine`): then
    :func:`plan_slice_end` (the slice keeps its own focus) or :func:`plan_borrowed_slice` (it borrows).

    ``upstream`` is the task producing the acquisition, if any: like the Nextflow
    processes, a slice's chain does not depend on the motor positions table.
    ``curvature`` is the :func:`plan_field_curvature` task whose decision the
    mosaic grid applies (both orchestrators); without it the mosaic grid
    decides on the slice alone (as the script run by hand).
    """
    meta = _meta(slice_id)
    grid, aip = layout.mosaic_grid(slice_id), layout.mosaic_grid(slice_id, 2)
    stitched = layout.slice_product(slice_id, "stitch_3d")
    staged = layout.staged_axial(slice_id)  # published by plan_publish_axial once the focus has been decided

    decision = [] if curvature is None else layout.field_curvature
    mosaic = _task(steps.CREATE_MOSAIC_GRID, params, layout, slice_id=slice_id,
                   positional=[acquisition, grid],
                   fixed=["--slice", slice_id, *(["--field_curvature_json", decision] if decision else [])],
                   outputs=[grid, aip],
                   inputs={"meta": meta, "acquisition": acquisition, "field_curvature": decision},
                   upstream=(*upstream, *([curvature] if curvature else [])))
    stitch = _task(steps.STITCH_3D, params, layout, slice_id=slice_id, positional=[grid, stitched],
                   fixed=["--aip", aip], outputs=[stitched, layout.beside(stitched, "_transform.json")],
                   inputs={"meta": meta, "grid": grid, "aip": aip}, upstream=(mosaic,))
    return [mosaic, stitch, _axial_task(params, layout, slice_id, stitch, staged)]


def _axial_task(params: PipelineParams, layout: OutputLayout, slice_id: int, stitch: Task, corrected: Path,
                combined: Task | None = None) -> Task:
    """The axial correction of a stitched slice; with ``combined`` (:func:`plan_focus_combine`), again with the
    acquisition's focus profile (``axial_corr_borrowed_zNN``)."""
    stitched = stitch.outputs[0]
    focus = [] if combined is None else layout.acquisition_focus
    return _task(steps.AXIAL_CORR, params, layout, slice_id=slice_id, positional=[stitched, corrected],
                 fixed=["--acquisition_focus", focus] if focus else [],
                 outputs=[corrected, layout.beside(corrected, "_surface.ome.zarr"),
                          layout.beside(corrected, "_attenuation.ome.zarr"),
                          layout.beside(corrected, "_uncompensated.ome.zarr")],
                 inputs={"meta": _meta(slice_id), "zarr": stitched, "acquisition_focus": focus},
                 upstream=(stitch, *([combined] if combined else [])),
                 name=None if combined is None else f"{steps.AXIAL_CORR.name}_borrowed_{slice_tag(slice_id)}")


def _meta(slice_id: int) -> dict[str, Any]:
    return {"id": slice_id, "tag": slice_tag(slice_id)}


def plan_publish_axial(params: PipelineParams, layout: OutputLayout, slice_id: int, first: Task, combined: Task,
                       borrows: bool) -> Task:
    """Publish a slice's first axial correction (``first``, staged) once ``combined`` has decided: into
    ``axial_corr/``, its final product, or, when the slice borrows the acquisition's focus, into
    ``axial_corr_refused/`` (kept for audit; :func:`plan_borrowed_slice` writes its final product).

    The staged files (the products, their QC record and figures) are moved, not copied
    (:mod:`linumpy.pipeline.publish`); the slice's files of the other folder, left by an earlier
    decision, are removed.
    """
    final = layout.slice_product(slice_id, "axial_corr")
    destination, stale = (layout.refused_axial(slice_id), final) if borrows else (final, layout.refused_axial(slice_id))
    staged = first.outputs[0]
    return _task(steps.PUBLISH_AXIAL_CORR, params, layout, slice_id=slice_id,
                 positional=[staged, destination.parent], fixed=["--stale", stale.parent],
                 outputs=[destination.parent / output.name for output in first.outputs],
                 inputs={"meta": _meta(slice_id), "products": staged}, upstream=(first, combined))


def plan_slice_end(params: PipelineParams, layout: OutputLayout, slice_id: int, axial: Task) -> list[Task]:
    """Normalize the slice's final axial correction (``axial``'s first output), then its screenshot."""
    corrected = axial.outputs[0]
    normalized = layout.slice_product(slice_id, "normalize")
    shot_name = slice_step_name(slice_id, "normalize").removesuffix(".ome.zarr")
    shot = layout.screenshot(shot_name)
    normalize = _task(steps.NORMALIZE, params, layout, slice_id=slice_id, positional=[corrected, normalized],
                      outputs=[normalized], inputs={"meta": _meta(slice_id), "zarr": corrected}, upstream=(axial,))
    screenshot = _task(steps.SCREENSHOT, params, layout, slice_id=slice_id, positional=[normalized, shot],
                       outputs=[shot], inputs={"name": shot_name, "zarr": normalized}, upstream=(normalize,))
    return [normalize, screenshot]


def plan_focus_combine(params: PipelineParams, layout: OutputLayout, corrected: dict[int, Task]) -> Task:
    """The acquisition's focus profile from every slice's axial QC record (by slice id), and its borrowers."""
    ordered = sorted(corrected)
    records = [qc_record_path(corrected[i].outputs[0]) for i in ordered]
    return _task(steps.COMBINE_FOCUS, params, layout, positional=[*records, layout.acquisition_focus],
                 fixed=["--borrowers_csv", layout.focus_borrowers],
                 outputs=[layout.acquisition_focus, layout.focus_borrowers], inputs={"qc_records": records},
                 upstream=tuple(corrected[i] for i in ordered))


def plan_borrowed_slice(params: PipelineParams, layout: OutputLayout, slice_id: int, stitch: Task,
                        combined: Task) -> list[Task]:
    """The end of a chain whose own focus estimate was refused: the axial correction again with the
    acquisition's focus profile (into ``axial_corr/``, the slice's final product), normalize, screenshot."""
    axial = _axial_task(params, layout, slice_id, stitch, layout.slice_product(slice_id, "axial_corr"), combined)
    return [axial, *plan_slice_end(params, layout, slice_id, axial)]


def plan_after_focus(params: PipelineParams, layout: OutputLayout, chain: list[Task], combined: Task,
                     borrows: bool) -> list[Task]:
    """The rest of a slice's chain (:func:`plan_slice`) once ``combined`` has decided whether it ``borrows``:
    the first correction published, the borrowed correction if it borrows, normalize, screenshot."""
    stitch, first = chain[-2], chain[-1]
    publish = plan_publish_axial(params, layout, first.slice_id, first, combined, borrows)
    if borrows:
        return [publish, *plan_borrowed_slice(params, layout, first.slice_id, stitch, combined)]
    return [publish, *plan_slice_end(params, layout, first.slice_id, publish)]


def plan_volume(params: PipelineParams, layout: OutputLayout, slice_ids: list[int],
                motor_positions: Task, normalized: dict[int, Task],
                acquisition_json: Path | None = None) -> list[Task]:
    """Stack the normalized slices (by id), screenshot the volume, write the report.

    ``acquisition_json`` is the acquisition's sidecar when it exists: the
    stack then takes the slice thickness from it (as the Nextflow workflow does).
    Each slice's signal before attenuation compensation is its final axial correction's (``axial_corr/``).
    """
    ordered = sorted(slice_ids)
    slices = [layout.slice_product(i, "normalize") for i in ordered]
    uncompensated = [layout.beside(layout.slice_product(i, "axial_corr"), "_uncompensated.ome.zarr") for i in ordered]
    gaps = ["--allow_gaps"] if params.stack_allows_gaps else []
    sidecar = ["--acquisition_json", acquisition_json] if acquisition_json is not None else []
    shot = layout.screenshot(VOLUME_NAME)
    stack = _task(steps.STACK_SLICES, params, layout, positional=[*slices, layout.volume],
                  fixed=["--uncompensated", *uncompensated, "--motor_positions", layout.motor_positions,
                         "--shifts_out", layout.volume_shifts, *gaps, *sidecar],
                  outputs=[layout.volume, layout.volume_shifts],
                  inputs={"slices": slices, "uncompensated": uncompensated, "motor_positions": layout.motor_positions,
                          "allow_gaps": params.stack_allows_gaps, "acquisition_json": acquisition_json},
                  upstream=(motor_positions, *(normalized[i] for i in ordered)))
    screenshot = _task(steps.SCREENSHOT, params, layout, positional=[layout.volume, shot], outputs=[shot],
                       inputs={"name": VOLUME_NAME, "zarr": layout.volume}, upstream=(stack,),
                       name=f"screenshot_{VOLUME_NAME}")
    config = plan_slice_config(params, layout, stack)
    # The report also shows the run's own record (failed slices): a change there reruns it.
    report = _task(steps.REPORT, params, layout, positional=[layout.root, layout.report], outputs=[layout.report],
                   inputs={}, upstream=(stack, screenshot, config), watched=(qc_record_path(layout.run_qc_output),))
    return [stack, screenshot, config, report]


def plan_slice_config(params: PipelineParams, layout: OutputLayout, stack: Task) -> Task:
    """Write ``OUTDIR/slice_config.csv`` from the QC records, keeping the ``use`` column of the
    table the run read: ``params.slice_config`` (passed as ``--previous``), else the output
    itself when it exists (the script's default, so that a finished run resumes unchanged)."""
    previous = slice_config_path(layout.root, params.slice_config)
    fixed = ["--previous", previous] if params.slice_config and previous.is_file() else []
    return _task(steps.SLICE_CONFIG, params, layout, positional=[layout.root, layout.slice_config], fixed=fixed,
                 outputs=[layout.slice_config], inputs={"previous": previous if fixed else []}, upstream=(stack,))
