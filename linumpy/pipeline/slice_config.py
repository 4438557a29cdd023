"""The slice configuration table ``slice_config.csv``: which slices to use, and why.

After the slices are processed, one row per slice gathers its quality
metrics from the steps' QC records (tissue coverage, stitching confidence and
residual, surface depth and focus mode, overlap correlation with the slice
above in the stack, galvo band) and an automatic ``suggestion``. The ``use``
column is the user's: a new slice gets ``use=1``; a row already in the
previous table keeps its ``use`` and ``reason`` whatever the metrics say.
Suggestions never exclude a slice: only ``use=0``, set by hand, does.

Both orchestrators read the table at the start of a run (``slice_config``
param, default ``OUTDIR/slice_config.csv`` when present) and leave the
``use=0`` slices out as if they were in ``exclude_slices``; the table's own
QC record lists them with their reason so that the report shows why.

Examples
--------
>>> rows = build_slice_config("results")  # doctest: +SKIP
>>> write_slice_config(rows, "results/slice_config.csv", overwrite=True)  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from linumpy.errors import InputError
from linumpy.io.atomic import atomic_output
from linumpy.pipeline.params import PipelineParams
from linumpy.qc.records import read_qc_record, write_qc_record

logger = logging.getLogger(__name__)

FILE_NAME = "slice_config.csv"
#: Metric columns, in order: ``(column, step, QC metric)``.
METRICS = (
    ("tissue_coverage", "axial_corr", "surface_detected_fraction"),
    ("stitch_confidence", "stitch_3d", "confidence"),
    ("stitch_max_residual_px", "stitch_3d", "max_residual_px"),
    ("stitch_fallback_pairs", "stitch_3d", "n_fallback_pairs"),
    ("surface_depth_um", "axial_corr", "median_surface_depth_um"),
    ("focus_mode", "axial_corr", "focus_mode"),
    ("galvo_shift_px", "mosaic_grid_3d", "galvo_shift_px"),
    ("galvo_confidence", "mosaic_grid_3d", "galvo_confidence"),
)
COLUMNS = ("slice_id", "use", "reason", "suggestion", *(m[0] for m in METRICS), "overlap_ncc")
#: Where each step's records are under the results directory (a later folder's record of a slice wins;
#: ``axial_corr/`` holds each slice's final axial correction, a borrower's first one is in ``axial_corr_refused/``).
_RECORD_GLOBS = {
    "mosaic_grid_3d": ("mosaic_grids/*_qc.json",),
    "stitch_3d": ("stitch_3d/*_qc.json",),
    "axial_corr": ("axial_corr/*_qc.json",),
    "stack": ("stack/*_qc.json",),
}
#: Suggestion thresholds: ``(column, below, message)``.
SUGGEST_BELOW = (
    ("tissue_coverage", 0.05, "little tissue (surface found in {value:.0%} of the A-lines)"),
    ("stitch_confidence", 0.5, "poor stitching (confidence {value:.2f})"),
    ("overlap_ncc", 0.2, "poor match with the slice above (overlap NCC {value:.2f})"),
)


def slice_config_path(outdir: str | Path, configured: str | Path | None = None) -> Path:
    """The table a run reads: ``configured`` if given, else ``OUTDIR/slice_config.csv``."""
    return Path(configured) if configured else Path(outdir) / FILE_NAME


def read_slice_config(path: str | Path) -> dict[int, dict[str, str]]:
    """Read a table into ``{slice_id: row}`` (values as text); ``{}`` when the file does not exist.

    Raises
    ------
    InputError
        If a row lacks ``slice_id`` or ``use``, or ``use`` is not 0 or 1 (names the file and line).
    """
    path = Path(path)
    if not path.is_file():
        return {}
    rows = {}
    with open(path, newline="") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            try:
                slice_id, use = int(row["slice_id"]), int(row["use"])
            except (KeyError, TypeError, ValueError):
                raise InputError(f"{path}: line {line}: needs an integer slice_id and use (0 or 1)") from None
            if use not in (0, 1):
                raise InputError(f"{path}: line {line}: use must be 0 or 1, got {use}")
            rows[slice_id] = {key: (value or "").strip() for key, value in row.items() if key}
    return rows


def excluded_slices(path: str | Path) -> dict[int, str]:
    """``{slice_id: reason}`` of the ``use=0`` rows of a table (``{}`` without a table)."""
    return {
        slice_id: row.get("reason") or "use=0 in slice_config.csv"
        for slice_id, row in read_slice_config(path).items()
        if row["use"] == "0"
    }


def apply_slice_config(params: PipelineParams) -> PipelineParams:
    """``params`` with the ``use=0`` slices of the run's table added to ``exclude_slices``."""
    excluded = excluded_slices(slice_config_path(params.outdir, params.slice_config))
    if not excluded:
        return params
    for slice_id, reason in sorted(excluded.items()):
        logger.info("slice %d left out: use=0 in %s (%s)", slice_id, FILE_NAME, reason)
    return params.model_copy(update={"exclude_slices": sorted(set(params.exclude_slices or ()) | set(excluded))})


def _records(results_dir: Path, step: str) -> list[dict[str, Any]]:
    records = []
    for path in (path for pattern in _RECORD_GLOBS[step] for path in sorted(results_dir.glob(pattern))):
        try:
            records.append(read_qc_record(path))
        except InputError as error:
            logger.warning("%s", error)
    return records


def collect_metrics(results_dir: str | Path) -> dict[int, dict[str, Any]]:
    """``{slice_id: {column: value}}`` from the QC records under ``results_dir``."""
    results_dir = Path(results_dir)
    table: dict[int, dict[str, Any]] = {}
    for step in ("mosaic_grid_3d", "stitch_3d", "axial_corr"):
        for record in _records(results_dir, step):
            if record["slice_id"] is None:
                continue
            row = table.setdefault(record["slice_id"], {})
            for column, source, metric in METRICS:
                if source == step and metric in record["metrics"]:
                    row[column] = record["metrics"][metric]
    for record in _records(results_dir, "stack"):
        metrics = record["metrics"]
        for slice_id, ncc in zip(metrics.get("slice_ids") or [], metrics.get("overlap_ncc") or []):
            table.setdefault(int(slice_id), {})["overlap_ncc"] = ncc
    return table


def suggestion(metrics: Mapping[str, Any]) -> str:
    """The automatic advice for one slice: ``""`` or ``"use=0? <reasons>"``.

    Examples
    --------
    >>> suggestion({"tissue_coverage": 0.01, "stitch_confidence": 0.9})
    'use=0? little tissue (surface found in 1% of the A-lines)'
    """
    reasons = [
        message.format(value=float(metrics[column]))
        for column, below, message in SUGGEST_BELOW
        if isinstance(metrics.get(column), (int, float)) and float(metrics[column]) < below
    ]
    return f"use=0? {'; '.join(reasons)}" if reasons else ""


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def build_slice_config(results_dir: str | Path, previous: str | Path | None = None) -> list[dict[str, str]]:
    """The rows of the new table: metrics from ``results_dir``, ``use``/``reason`` kept from ``previous``.

    A slice only in ``previous`` (left out of this run) keeps its whole row.
    """
    metrics = collect_metrics(results_dir)
    old = read_slice_config(previous) if previous is not None else {}
    rows = []
    for slice_id in sorted(set(metrics) | set(old)):
        if slice_id not in metrics:
            rows.append({column: old[slice_id].get(column, "") for column in COLUMNS})
            continue
        kept = old.get(slice_id, {})
        row = {"slice_id": str(slice_id), "use": kept.get("use", "1"), "reason": kept.get("reason", "")}
        row["suggestion"] = suggestion(metrics[slice_id])
        row.update({column: _text(metrics[slice_id].get(column)) for column in COLUMNS[4:]})
        rows.append(row)
    return rows


def write_slice_config(rows: list[dict[str, str]], path: str | Path, overwrite: bool = False) -> Path:
    """Write the table atomically, and its QC record (excluded slices with their reason, suggestions)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_output(path, overwrite) as tmp:
        Path(tmp).write_text(buffer.getvalue())
    excluded = [{"slice_id": int(r["slice_id"]), "reason": r["reason"] or "use=0"} for r in rows if r["use"] == "0"]
    suggested = [f"slice {r['slice_id']}: {r['suggestion']} (set use=0 in {FILE_NAME} to leave it out)"
                 for r in rows if r["use"] == "1" and r["suggestion"]]
    metrics = {"n_slices": len(rows), "excluded_slices": excluded, "n_suggested_exclusions": len(suggested)}
    return write_qc_record(path, "slice_config", metrics, flags=suggested)
