"""Hand the page cache pages of the chunk files a step writes and reads back to the kernel.

On a virtual machine whose kernel reports free pages to the host (free page
reporting, ``/sys/module/page_reporting``), a page the host has taken back
costs a fault on the host when the guest uses it again: 4-8 ms of system CPU
a MB on the benchmarks' VM, against ~0.2 ms for a page freed a moment before
(``benchmarks/README.md``, sessions axial61 and steps62). A step writes GBs
of chunk files; left in the page cache, every one of their pages is a new
page. Released as soon as they are on disk, they are the pages the next
chunks are written into.

- :func:`written`: after a chunk file is written. Its writeback is started at
  once (``POSIX_FADV_DONTNEED`` on dirty pages starts it without waiting);
  once :data:`LAG_BYTES` (or :data:`LAG_FILES` files) more have been written,
  its data is waited for (``sync_file_range``; usually written back by then)
  and its pages dropped, in the writing thread.
  An aborted write closes the files still waiting (:func:`forget_written`).
- :func:`read`: after a file is read whole, its (clean) pages are dropped at
  once, so that reading the next file reuses them. A file read again is read
  from disk (a GB a second on that VM) into pages freed a moment before.

:func:`enabled` decides, once per process: the environment variable
``LINUMPY_RELEASE_PAGES`` (``on``, ``off``; ``auto``, the default: on where
the kernel has reported free pages to a host). Elsewhere the pages stay
cached, as the kernel does by default: a freed page costs no more later than
now, and a file read again comes from memory.
"""

from __future__ import annotations

import collections
import ctypes
import functools
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

#: The environment variable: ``on``, ``off`` or ``auto`` (default: on where free pages are reported to a host).
ENV = "LINUMPY_RELEASE_PAGES"
#: KiB of free pages the kernel has reported to the host so far (a VM's free page reporting); absent elsewhere.
REPORTED_KIB = Path("/sys/module/page_reporting/parameters/reported_kib")
#: Bytes written after a file before its pages are dropped (its writeback has finished by then) ...
LAG_BYTES = 64 << 20
#: ... or files (each one holds a descriptor meanwhile).
LAG_FILES = 16
#: ``sync_file_range`` flags: wait for any writeback of the range, start it, wait for it.
_WAIT_WRITTEN = 1 | 2 | 4


def pages_reported() -> bool:
    """Whether the kernel reports free pages to a host: it has reported some."""
    try:
        return int(REPORTED_KIB.read_text()) > 0
    except (OSError, ValueError):
        return False


@functools.cache
def enabled() -> bool:
    """Whether written and read files' pages are released (:data:`ENV`; read once per process).

    Raises
    ------
    ValueError
        For a value of :data:`ENV` other than ``on``, ``off``, ``auto`` (or empty).
    """
    setting = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if setting not in ("on", "off", "auto"):
        raise ValueError(f"{ENV} must be on, off or auto, got {setting!r}")
    return setting == "on" or (setting == "auto" and hasattr(os, "posix_fadvise") and pages_reported())


class _WrittenFiles:
    """Files written lately whose pages are dropped once :data:`LAG_BYTES` or :data:`LAG_FILES` more follow."""

    def __init__(self) -> None:
        self._pending: collections.deque[tuple[int, int]] = collections.deque()  # (descriptor, bytes)
        self._bytes = 0
        self._lock = threading.Lock()

    def add(self, file: BinaryIO) -> None:
        """Start the writeback of ``file`` (open, written whole) and release the files it puts beyond the lag."""
        file.flush()
        descriptor = os.dup(file.fileno())
        size = os.fstat(descriptor).st_size
        os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)  # dirty pages: starts their writeback
        due = []
        with self._lock:
            self._pending.append((descriptor, size))
            self._bytes += size
            while len(self._pending) > 1 and (self._bytes > LAG_BYTES or len(self._pending) > LAG_FILES):
                due.append(self._pending.popleft())
                self._bytes -= due[-1][1]
        for descriptor, _ in due:
            _release(descriptor)

    def release_all(self) -> None:
        """Release every file still waiting."""
        for descriptor in self._take_all():
            _release(descriptor)

    def forget_all(self) -> None:
        """Close every file still waiting without waiting for its data (files about to be deleted)."""
        for descriptor in self._take_all():
            os.close(descriptor)

    def _take_all(self) -> list[int]:
        """The descriptors of every file still waiting, no longer waiting."""
        with self._lock:
            due, self._bytes = [descriptor for descriptor, _ in self._pending], 0
            self._pending.clear()
        return due


@functools.cache
def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """Linux's ``sync_file_range`` (C library), None elsewhere."""
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    return function


def _release(descriptor: int) -> None:
    """Wait for the file's data to be written back, drop its pages, close the descriptor.

    ``sync_file_range`` waits for the data alone (usually written back during the lag already);
    ``os.fdatasync`` (elsewhere) also commits the file system's journal and flushes the disk's cache.
    """
    try:
        wait = _sync_file_range()
        if wait is None:
            os.fdatasync(descriptor)
        else:
            wait(descriptor, 0, 0, _WAIT_WRITTEN)
        os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(descriptor)


_WRITTEN = _WrittenFiles()


def written(file: BinaryIO) -> None:
    """``file`` (still open) was written whole: its pages are released after the lag (when :func:`enabled`)."""
    if enabled():
        _WRITTEN.add(file)


def release_written() -> None:
    """Release the pages of every written file still within the lag (when :func:`enabled`)."""
    if enabled():
        _WRITTEN.release_all()


def forget_written() -> None:
    """Close the files still within the lag without releasing them: an aborted write deletes them, and an open
    descriptor would keep a deleted file's space (and its file system busy)."""
    _WRITTEN.forget_all()


def read(file: BinaryIO) -> None:
    """``file`` (still open) was read whole: its pages are dropped now (when :func:`enabled`)."""
    if enabled():
        os.posix_fadvise(file.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
