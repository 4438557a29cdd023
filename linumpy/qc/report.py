"""One self-contained HTML page summarising every QC record of a run.

:func:`collect_qc` gathers the ``*_qc.json`` records and PNG images under a
results directory; :func:`render_report` turns them into HTML with the images
embedded as base64 data URIs, inline CSS and no external resource, so the file
can be mailed or archived alone. The page holds the red flags, a table with one
row per slice and one column per scalar metric of each step, then the figures.
Same inputs give the same bytes.
"""

from __future__ import annotations

import base64
import html
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from linumpy.errors import InputError
from linumpy.io.atomic import TEMP_MARKER, atomic_output
from linumpy.io.naming import SLICE_STEPS, parse_slice_id
from linumpy.qc.flags import RedFlag, record_flags, slice_reasons
from linumpy.qc.records import QC_SUFFIX, read_qc_record

#: Order of the steps in the table; other steps follow alphabetically.
STEP_ORDER = ("mosaic_grid_3d", *SLICE_STEPS, "stack")
#: Longest JSON text shown for the non-scalar metrics of one record.
MAX_DETAILS_CHARS = 20_000


@dataclass
class QcEntry:
    """One record as found on disk, with its figures' PNG bytes."""

    path: str
    record: dict[str, Any]
    figures: dict[str, bytes] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def step(self) -> str:
        return str(self.record["step"])

    @property
    def slice_id(self) -> int | None:
        return self.record.get("slice_id")


@dataclass
class QcCollection:
    """Everything the report shows, gathered from one results directory."""

    entries: list[QcEntry]
    other_images: dict[str, bytes]
    flags: list[RedFlag]

    @property
    def slice_ids(self) -> list[int]:
        ids = {entry.slice_id for entry in self.entries} | {flag.slice_id for flag in self.flags}
        ids |= {_slice_id_of(name) for name in self.other_images}
        return sorted(i for i in ids if i is not None)

    def slice_images(self, slice_id: int | None) -> dict[str, bytes]:
        """Images no record names (e.g. screenshots) whose file name carries ``slice_id``."""
        return {name: png for name, png in self.other_images.items() if _slice_id_of(name) == slice_id}


def collect_qc(results_dir: str | os.PathLike) -> QcCollection:
    """Read every QC record and PNG under ``results_dir`` (hidden and temporary files skipped).

    A record that cannot be read, a figure it names that is missing, or no
    record at all, becomes a red flag rather than an error, so one broken
    step does not hide the report of the others.

    Raises
    ------
    InputError
        If ``results_dir`` is not a directory.
    """
    root = Path(results_dir)
    if not root.is_dir():
        raise InputError(f"{root} is not a directory; pass the pipeline's results directory")
    files = _visible_files(root)
    record_paths = [p for p in files if p.name.endswith(QC_SUFFIX)]
    entries, flags, used_images = [], [], set()
    if not record_paths:
        flags.append(RedFlag(None, "report", f"no *{QC_SUFFIX} record found; did the steps run?"))
    for path in record_paths:
        relative = path.relative_to(root).as_posix()
        try:
            record = read_qc_record(path)
        except InputError as error:
            flags.append(RedFlag(None, "report", str(error).replace(str(root) + os.sep, "")))
            continue
        entry = QcEntry(relative, record)
        for name, file_name in sorted(record["figures"].items()):
            image_path = path.parent / file_name
            if image_path.is_file():
                entry.figures[name] = image_path.read_bytes()
                used_images.add(image_path)
            else:
                entry.problems.append(f"figure {file_name} is missing")
        entries.append(entry)
        try:
            flags += record_flags(record)
        except (TypeError, ValueError, KeyError) as error:  # ill-typed metric values
            flags.append(RedFlag(entry.slice_id, entry.step, f"{relative}: metrics not understood ({error!r})"))
        flags += [RedFlag(entry.slice_id, entry.step, problem) for problem in entry.problems]
    other_images = {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in files
        if p.suffix.lower() == ".png" and p not in used_images
    }
    return QcCollection(entries, other_images, sorted(set(flags), key=_flag_order))


def render_report(collection: QcCollection, title: str = "linumpy QC report") -> str:
    """Return the HTML page of a :class:`QcCollection`."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'\">",
        f"<title>{_text(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_text(title)}</h1>",
        _summary(collection),
        _flags_section(collection.flags),
        _slice_table(collection),
        _figures_sections(collection),
        _other_images_section(collection.slice_images(None)),
        '<p id="render-check" data-images-total="" data-images-decoded="">'
        "figure check needs JavaScript</p>",
        f"<script>{_RENDER_CHECK_JS}</script>",
        "</body></html>",
    ]
    return "\n".join(part for part in parts if part) + "\n"


def write_report(
    results_dir: str | os.PathLike,
    out_html: str | os.PathLike,
    title: str = "linumpy QC report",
    overwrite: bool = False,
) -> QcCollection:
    """Collect the QC of ``results_dir`` and write the HTML report atomically.

    Returns
    -------
    QcCollection
        What the report shows (e.g. to count the red flags).
    """
    collection = collect_qc(results_dir)
    page = render_report(collection, title)
    with atomic_output(out_html, overwrite) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return collection


def _visible_files(root: Path) -> list[Path]:
    files = []
    for directory, subdirs, names in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if not _hidden(d) and not d.endswith(".zarr"))
        files += [Path(directory, n) for n in sorted(names) if not _hidden(n)]
    return sorted(files)


def _slice_id_of(name: str) -> int | None:
    try:
        return parse_slice_id(Path(name).name)
    except ValueError:
        return None


def _hidden(name: str) -> bool:
    return name.startswith(".") or TEMP_MARKER in name


def _flag_order(flag: RedFlag) -> tuple:
    return (flag.slice_id is not None, flag.slice_id or 0, _step_rank(flag.step), flag.message)


def _step_rank(step: str) -> tuple[int, str]:
    return (STEP_ORDER.index(step), "") if step in STEP_ORDER else (len(STEP_ORDER), step)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _summary(collection: QcCollection) -> str:
    failed = {sid for entry in collection.entries
              for key in ("failed_slices", "excluded_slices")
              for sid, _ in slice_reasons(entry.record["metrics"].get(key))}
    return (
        '<p class="summary">'
        f'<span id="n-slices">{len(collection.slice_ids)}</span> slices, '
        f'<span id="n-records">{len(collection.entries)}</span> QC records, '
        f'<span id="n-flags">{len(collection.flags)}</span> red flags, '
        f'<span id="n-failed">{len(failed)}</span> failed or excluded slices.</p>'
    )


def _flags_section(flags: list[RedFlag]) -> str:
    if not flags:
        return '<h2>Red flags</h2><p class="ok">None.</p>'
    items = "".join(
        f'<li class="flag" data-slice-id="{"" if f.slice_id is None else f.slice_id}">'
        f"<b>{_slice_label(f.slice_id)}</b> [{_text(f.step)}] {_text(f.message)}</li>"
        for f in flags
    )
    return f'<h2>Red flags</h2><ul id="red-flags">{items}</ul>'


def _slice_table(collection: QcCollection) -> str:
    columns = _table_columns(collection.entries)
    cells: dict[tuple[int, str], dict[str, Any]] = {}
    for entry in collection.entries:
        for slice_id, metrics in _per_slice_metrics(entry).items():
            cells.setdefault((slice_id, entry.step), {}).update(metrics)
    flagged: dict[int, list[RedFlag]] = {}
    for flag in collection.flags:
        if flag.slice_id is not None:
            flagged.setdefault(flag.slice_id, []).append(flag)
    step_header = "".join(
        f'<th colspan="{len(names)}">{_text(step)}</th>' for step, names in columns
    )
    metric_header = "".join(f"<th>{_text(n)}</th>" for _, names in columns for n in names)
    rows = []
    for slice_id in collection.slice_ids:
        values = "".join(
            f"<td>{_format(cells.get((slice_id, step), {}).get(name))}</td>"
            for step, names in columns for name in names
        )
        messages = "<br>".join(f"[{_text(f.step)}] {_text(f.message)}" for f in flagged.get(slice_id, []))
        css = ' class="flagged"' if slice_id in flagged else ""
        rows.append(
            f'<tr data-slice-id="{slice_id}"{css}><th><a href="#slice-{slice_id}">'
            f"{_slice_label(slice_id)}</a></th>{values}<td>{messages}</td></tr>"
        )
    return (
        '<h2>Slices</h2><table id="slice-table"><thead>'
        f'<tr><th rowspan="2">slice</th>{step_header}<th rowspan="2">flags</th></tr>'
        f"<tr>{metric_header}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _per_slice_metrics(entry: QcEntry) -> dict[int, dict[str, Any]]:
    """Scalar metrics of a slice's record, or the per-slice lists of a whole-brain record.

    A whole-brain record (e.g. the stack's) gives per-slice values as lists
    aligned with its ``slice_ids`` metric.
    """
    metrics = entry.record["metrics"]
    if entry.slice_id is not None:
        return {entry.slice_id: {k: v for k, v in metrics.items() if _is_scalar(v)}}
    ids = metrics.get("slice_ids")
    if not isinstance(ids, list):
        return {}
    aligned = {k: v for k, v in metrics.items()
               if k != "slice_ids" and isinstance(v, list) and len(v) == len(ids)}
    return {int(sid): {k: v[i] for k, v in aligned.items()} for i, sid in enumerate(ids)}


def _table_columns(entries: Iterable[QcEntry]) -> list[tuple[str, list[str]]]:
    names: dict[str, set[str]] = {}
    for entry in entries:
        for metrics in _per_slice_metrics(entry).values():
            names.setdefault(entry.step, set()).update(metrics)
    return [(step, sorted(names[step])) for step in sorted(names, key=_step_rank) if names[step]]


def _figures_sections(collection: QcCollection) -> str:
    by_slice: dict[int | None, list[QcEntry]] = {}
    for entry in collection.entries:
        by_slice.setdefault(entry.slice_id, []).append(entry)
    sections = []
    for slice_id in [None, *collection.slice_ids]:
        entries = sorted(by_slice.get(slice_id, []), key=lambda e: (_step_rank(e.step), e.path))
        images = collection.slice_images(slice_id) if slice_id is not None else {}
        if not entries and not images:
            continue
        anchor = "whole-brain" if slice_id is None else f"slice-{slice_id}"
        heading = "Whole brain" if slice_id is None else f"Slice {_slice_label(slice_id)}"
        body = "".join(_entry_html(entry) for entry in entries)
        if images:
            figures = "".join(_figure_html(name, png) for name, png in images.items())
            body += f'<div class="record"><h3>images</h3><div class="figures">{figures}</div></div>'
        sections.append(f'<section id="{anchor}"><h2>{heading}</h2>{body}</section>')
    return "\n".join(sections)


def _entry_html(entry: QcEntry) -> str:
    metrics = entry.record["metrics"]
    images = "".join(_figure_html(f"{entry.step}: {name}", png) for name, png in entry.figures.items())
    scalars = "".join(
        f"<tr><th>{_text(k)}</th><td>{_format(v)}</td></tr>"
        for k, v in sorted(metrics.items()) if _is_scalar(v)
    )
    details = {k: v for k, v in sorted(metrics.items()) if not _is_scalar(v)}
    details_html = ""
    if details:
        text = json.dumps(details, sort_keys=True, indent=1)
        if len(text) > MAX_DETAILS_CHARS:
            text = text[:MAX_DETAILS_CHARS] + f"\n... ({len(text) - MAX_DETAILS_CHARS} more characters in the record)"
        details_html = f"<details><summary>per-item metrics</summary><pre>{_text(text)}</pre></details>"
    return (
        f'<div class="record"><h3>{_text(entry.step)} <small>{_text(entry.path)}</small></h3>'
        f'<table class="metrics">{scalars}</table>{details_html}<div class="figures">{images}</div></div>'
    )


def _other_images_section(images: Mapping[str, bytes]) -> str:
    if not images:
        return ""
    body = "".join(_figure_html(name, png) for name, png in images.items())
    return f'<section id="other-images"><h2>Other images</h2><div class="figures">{body}</div></section>'


def _figure_html(caption: str, png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{_text(caption)}">'
        f"<figcaption>{_text(caption)}</figcaption></figure>"
    )


def _format(value: Any) -> str:
    if value is None:
        return "&ndash;"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list) and all(isinstance(v, (int, float)) for v in value):
        return "(" + ", ".join(_format(v) for v in value) + ")"
    return _text(str(value))


def _slice_label(slice_id: int | None) -> str:
    return "all" if slice_id is None else f"z{slice_id:02d}"


def _text(value: str) -> str:
    return html.escape(value, quote=True)


_CSS = """
body{font-family:sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:0.5em 0}
th,td{border:1px solid #bbb;padding:2px 6px;font-size:0.9em;text-align:right}
thead th{background:#eee;text-align:center}
tr.flagged{background:#fde2e2}
#slice-table td:last-child{text-align:left}
#red-flags li{color:#a00}
.ok{color:#070}
.figures{display:flex;flex-wrap:wrap;gap:1em}
figure{margin:0}
figure img{max-width:600px;border:1px solid #ccc}
figcaption{font-size:0.85em;color:#555}
.record{border-top:1px solid #ddd;margin-top:1em}
pre{max-height:20em;overflow:auto;background:#f6f6f6;font-size:0.8em}
""".strip()

_RENDER_CHECK_JS = """
window.addEventListener("load", function () {
  var images = document.images, decoded = 0;
  for (var i = 0; i < images.length; i++) {
    if (images[i].complete && images[i].naturalWidth > 0) { decoded++; }
  }
  var check = document.getElementById("render-check");
  check.setAttribute("data-images-total", String(images.length));
  check.setAttribute("data-images-decoded", String(decoded));
  check.textContent = decoded + " of " + images.length + " figures rendered";
});
""".strip()
