"""Per-task resource trace in Nextflow's ``trace.txt`` format.

The local runner writes ``pipeline_info/trace.txt`` with the columns of
Nextflow's default trace (tab-separated, human-readable values, ``-`` when
unknown), so one tool reads both orchestrators' traces;
:func:`read_trace` parses either (Nextflow's human or ``raw`` values).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from linumpy.io.atomic import atomic_output

#: Columns of Nextflow's default ``trace.txt``.
TRACE_COLUMNS = ("task_id", "hash", "native_id", "name", "status", "exit", "submit", "duration",
                 "realtime", "%cpu", "peak_rss", "peak_vmem", "rchar", "wchar")
_SUBMIT_FORMAT = "%Y-%m-%d %H:%M:%S.%f"
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_DURATION_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_MEMORY = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGTP]?B)$")
_MEMORY_BYTES = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4, "PB": 1024**5}


@dataclass
class TaskTrace:
    """Resources of one task (times in seconds, memory in bytes; None when unknown)."""

    task_id: int
    hash: str
    name: str
    status: str
    exit: int | None = None
    native_id: int | None = None
    submit: datetime | None = None
    realtime_s: float | None = None
    cpu_s: float | None = None
    peak_rss: int | None = None

    @property
    def step(self) -> str:
        """The process name without its tag: ``stitch_3d (z03)`` -> ``stitch_3d``."""
        return self.name.split(" (", 1)[0].rsplit(":", 1)[-1]

    def row(self) -> list[str]:
        """The task's values in :data:`TRACE_COLUMNS` order, formatted as Nextflow does."""
        cpu = "-" if not self.realtime_s or self.cpu_s is None else f"{100 * self.cpu_s / self.realtime_s:.1f}%"
        duration = format_duration(self.realtime_s)
        return [str(self.task_id), self.hash, _dash(self.native_id), self.name, self.status, _dash(self.exit),
                "-" if self.submit is None else self.submit.strftime(_SUBMIT_FORMAT)[:-3], duration, duration,
                cpu, format_memory(self.peak_rss), "-", "-", "-"]


def write_trace(path: str | os.PathLike, tasks: Iterable[TaskTrace]) -> None:
    """Write ``tasks`` as a Nextflow-style trace file (atomically, replacing it)."""
    lines = ["\t".join(TRACE_COLUMNS), *("\t".join(task.row()) for task in tasks)]
    with atomic_output(path, overwrite=True) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def read_trace(path: str | os.PathLike) -> list[TaskTrace]:
    """Parse a trace file of either orchestrator; rows that cannot be parsed are skipped."""
    lines = Path(path).read_text(errors="replace").splitlines()
    if not lines:
        return []
    header = lines[0].split("\t")
    tasks = []
    for line in lines[1:]:
        values = dict(zip(header, line.split("\t"), strict=False))
        try:
            realtime = parse_duration(values.get("realtime", "-"))
            cpu_percent = values.get("%cpu", "-").rstrip("%")
            cpu = None if realtime is None or cpu_percent in ("", "-") else realtime * float(cpu_percent) / 100
            tasks.append(TaskTrace(
                task_id=int(values["task_id"]), hash=values.get("hash", "-"), name=values.get("name", "-"),
                status=values.get("status", "-"), exit=_int_or_none(values.get("exit")),
                native_id=_int_or_none(values.get("native_id")), submit=_parse_submit(values.get("submit")),
                realtime_s=realtime, cpu_s=cpu, peak_rss=parse_memory(values.get("peak_rss", "-")),
            ))
        except (KeyError, ValueError):
            continue
    return tasks


def format_duration(seconds: float | None) -> str:
    """Nextflow's duration text: ``540ms``, ``3.5s``, ``1m 3s``, ``2h 1m 5s``.

    Examples
    --------
    >>> format_duration(63.4), format_duration(0.54), format_duration(7265)
    ('1m 3s', '540ms', '2h 1m 5s')
    """
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return " ".join(f"{v}{u}" for v, u in ((hours, "h"), (minutes, "m"), (secs, "s")) if v or u == "s"
                    )


def parse_duration(text: str | None) -> float | None:
    """Seconds of a Nextflow duration (``1m 3s``) or of raw milliseconds (``63000``)."""
    text = (text or "-").strip()
    if text in ("", "-"):
        return None
    if text.isdigit():
        return int(text) / 1000
    parts = _DURATION_PART.findall(text)
    if not parts:
        raise ValueError(f"duration {text!r}")
    return sum(float(value) * _DURATION_SECONDS[unit] for value, unit in parts)


def format_memory(n_bytes: int | None) -> str:
    """Nextflow's memory text (binary units): ``512 B``, ``12.5 MB``, ``1.2 GB``."""
    if n_bytes is None:
        return "-"
    value, unit = float(n_bytes), "B"
    for unit in _MEMORY_BYTES:
        if value < 1024 or unit == "PB":
            break
        value /= 1024
    return f"{value:.0f} B" if unit == "B" else f"{value:.1f} {unit}"


def parse_memory(text: str | None) -> int | None:
    """Bytes of a Nextflow memory value (``1.2 GB``) or of raw bytes."""
    text = (text or "-").strip()
    if text in ("", "-"):
        return None
    if text.isdigit():
        return int(text)
    match = _MEMORY.match(text)
    if not match:
        raise ValueError(f"memory {text!r}")
    return round(float(match.group(1)) * _MEMORY_BYTES[match.group(2)])


def _parse_submit(text: str | None) -> datetime | None:
    if not text or text == "-":
        return None
    if text.isdigit():
        return datetime.fromtimestamp(int(text) / 1000)
    return datetime.strptime(text + ("" if "." in text else ".0"), _SUBMIT_FORMAT)


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def _dash(value: object) -> str:
    return "-" if value is None else str(value)
