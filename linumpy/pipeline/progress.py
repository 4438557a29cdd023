"""One honest progress display for a run of the local runner.

On a terminal, one status line redrawn in place (at most once a second):
tasks done / total, the tasks running now, elapsed time and an ETA from the
mean duration of the tasks that really ran (tasks found complete count as
done but not in the ETA). Anywhere else (nohup, SLURM, a pipe), plain
timestamped lines, one when a task starts and one when it ends, with no
carriage return or escape sequence.
"""

from __future__ import annotations

import sys
import threading
import time
from datetime import datetime
from typing import TextIO

from linumpy.pipeline.trace import format_duration

#: Seconds between two redraws of the terminal line.
REDRAW_SECONDS = 1.0
#: Longest status line on a terminal (cut with an ellipsis).
MAX_LINE = 160


class Progress:
    """Counts tasks and shows where the run is.

    Parameters
    ----------
    workers : int
        Tasks that can run at the same time (for the ETA).
    enabled : bool
        Show anything at all.
    stream : text stream
        Where to write (default ``sys.stderr``).
    interactive : bool, optional
        Redraw one line in place; default: whether ``stream`` is a terminal.
    """

    def __init__(self, workers: int = 1, enabled: bool = True, stream: TextIO | None = None,
                 interactive: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self.workers = max(1, workers)
        self.total = 0
        self.done = 0
        self.durations: list[float] = []
        self.running: dict[str, float] = {}
        self.start = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        if self.enabled and self.interactive:
            self._ticker = threading.Thread(target=self._tick, name="progress", daemon=True)
            self._ticker.start()

    def add(self, n_tasks: int) -> None:
        """Announce ``n_tasks`` more tasks to run."""
        with self._lock:
            self.total += n_tasks

    def started(self, label: str) -> None:
        """A task started running."""
        with self._lock:
            self.running[label] = time.monotonic()
            self._show(f"started {label}")

    def finished(self, label: str, skipped: bool = False, failed: bool = False) -> None:
        """A task ended (or was found complete: ``skipped``)."""
        with self._lock:
            began = self.running.pop(label, None)
            self.done += 1
            if skipped:
                self._show(f"{label} already complete")
                return
            seconds = time.monotonic() - began if began is not None else 0.0
            if not failed:
                self.durations.append(seconds)
            self._show(f"{label} {'FAILED' if failed else 'done'} in {format_duration(seconds)}")

    def close(self) -> None:
        """Stop redrawing and end the terminal line (once; later calls do nothing)."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
            with self._lock:
                self._write(self.status() + "\n")

    def eta_seconds(self) -> float | None:
        """Remaining time from the mean duration of the tasks that ran (None before the first)."""
        if not self.durations:
            return None
        remaining = max(0, self.total - self.done)
        in_flight = max(1, min(self.workers, remaining))
        return remaining * (sum(self.durations) / len(self.durations)) / in_flight

    def status(self) -> str:
        """``[done/total] running: ... | elapsed ... | ETA ...``."""
        eta = self.eta_seconds()
        running = ", ".join(sorted(self.running)) or "nothing"
        return (f"[{self.done}/{self.total} tasks] running: {running} | elapsed "
                f"{format_duration(time.monotonic() - self.start)} | ETA "
                f"{'unknown' if eta is None else '~' + format_duration(eta)}")

    def _show(self, event: str) -> None:
        if not self.enabled:
            return
        if self.interactive:
            self._write(self._fit(self.status()))
        else:
            stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
            self._write(f"{stamp} {event}; {self.status()}\n")

    def _fit(self, line: str) -> str:
        line = line if len(line) <= MAX_LINE else line[: MAX_LINE - 3] + "..."
        return "\r\x1b[K" + line

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def _tick(self) -> None:
        while not self._stop.wait(REDRAW_SECONDS):
            with self._lock:
                self._write(self._fit(self.status()))
