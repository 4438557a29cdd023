"""What the local runner says at the end of a run: tasks, time, warnings, disk footprint."""

from __future__ import annotations

from pathlib import Path

from linumpy.pipeline.runner import RunSummary
from linumpy.pipeline.trace import format_duration, format_memory
from linumpy.qc.footprint import folder_sizes, footprint_lines
from linumpy.qc.report import RAW_FOLDER, logged_warnings_under


def end_of_run_lines(summary: RunSummary, outdir: str | Path, raw_dir: str | Path | None) -> list[str]:
    """Lines to print once a run succeeded.

    Parameters
    ----------
    summary : RunSummary
        What the runner did.
    outdir : path-like
        The run's output directory.
    raw_dir : path-like, optional
        The raw acquisition when it lies outside ``outdir`` (its size gives
        the "per raw GB" figures); ``None`` for a simulated acquisition.
    """
    outdir = Path(outdir)
    ran = [t for t in summary.trace if t.status == "COMPLETED"]
    lines = [f"done: {len(summary.ran)} tasks run, {len(summary.skipped)} skipped (already complete); "
             f"CPU time {format_duration(sum(t.cpu_s or 0.0 for t in ran))}, largest task peak memory "
             f"{format_memory(max((t.peak_rss or 0 for t in ran), default=0))} "
             f"(per task: {outdir / 'pipeline_info' / 'trace.txt'})"]
    warnings = logged_warnings_under(outdir)
    if warnings:
        lines.append(f"{len(warnings)} warning(s) logged by the steps (also in the report):")
        lines += [f"  {'run' if w.slice_id is None else f'slice z{w.slice_id:02d}'} {w.step}: {w.message}"
                  for w in warnings]
    sizes = folder_sizes(outdir, exclude_suffixes=(".html",))
    raw = sizes.get(RAW_FOLDER, 0) if raw_dir is None else sum(folder_sizes(raw_dir).values())
    lines.append("disk used per output folder:")
    lines += ["  " + line for line in footprint_lines(sizes, raw)]
    lines.append(f"volume: {outdir / 'stack' / 'volume.ome.zarr'}; report: {outdir / 'report.html'}")
    return lines
