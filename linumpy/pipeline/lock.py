"""One run at a time per output directory: a lock file naming its owner.

The local runner takes ``OUTDIR/pipeline_info/run.lock`` before it touches
anything in the output directory and removes it when it ends. The file holds
the owner's process id, host name and start time. A second run on the same
directory stops with a message naming the owner; a lock left by a run that
was killed (its process is gone, on this host) is taken over with a warning.
A lock written on another host cannot be checked from here: the message then
says to remove the file by hand once that run is known to be over.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from linumpy.errors import LinumpyError
from linumpy.io.atomic import process_is_running

LOGGER = logging.getLogger(__name__)
#: Seconds a lock file may stay unreadable (its owner is writing it) before it counts as stale.
_UNREADABLE_GRACE_S = 10.0


class OutdirLockedError(LinumpyError):
    """Another run owns the output directory."""


def _owner_record() -> dict[str, object]:
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def _read_owner(lock: Path) -> dict[str, object] | None:
    """The lock's owner record, or None when the file is unreadable or half written."""
    try:
        owner = json.loads(lock.read_text())
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) and isinstance(owner.get("pid"), int) else None


def _is_stale(lock: Path, owner: dict[str, object] | None) -> bool:
    if owner is None:  # garbage, or being written right now
        try:
            return time.time() - lock.stat().st_mtime > _UNREADABLE_GRACE_S
        except FileNotFoundError:
            return True
    return owner.get("host") == socket.gethostname() and not process_is_running(int(owner["pid"]))


def _create(lock: Path) -> bool:
    """Create the lock file with this process's record; False if it exists."""
    try:
        descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(descriptor, "w") as handle:
        json.dump(_owner_record(), handle)
    return True


def acquire(lock: Path) -> None:
    """Take ``lock`` for this process.

    Raises
    ------
    OutdirLockedError
        If a live run (or a run on another host) holds it.
    """
    lock.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(3):
        if _create(lock):
            return
        owner = _read_owner(lock)
        if not _is_stale(lock, owner):
            raise OutdirLockedError(_locked_message(lock, owner))
        LOGGER.warning("%s: taking over the lock of a run that is gone (%s)", lock, owner or "unreadable lock")
        # Rename before deleting so that two runs taking over at once cannot delete each other's new lock.
        with contextlib.suppress(FileNotFoundError):
            os.replace(lock, lock.with_name(f"{lock.name}.stale-{os.getpid()}"))
            os.unlink(lock.with_name(f"{lock.name}.stale-{os.getpid()}"))
    raise OutdirLockedError(_locked_message(lock, _read_owner(lock)))


def release(lock: Path) -> None:
    """Remove ``lock`` if this process owns it."""
    owner = _read_owner(lock)
    if owner is not None and owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname():
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()


@contextlib.contextmanager
def outdir_lock(lock: Path) -> Iterator[None]:
    """Hold ``lock`` for the duration of the block (see :func:`acquire`)."""
    acquire(lock)
    try:
        yield
    finally:
        release(lock)


def _locked_message(lock: Path, owner: dict[str, object] | None) -> str:
    outdir = lock.parent.parent
    if owner is None:
        who = "another run"
    else:
        who = f"process {owner.get('pid')} on host {owner.get('host')}, started {owner.get('started')}"
    return (f"{outdir}: already running ({who} holds {lock}); wait for it to finish or use another "
            f"--outdir; if that run is known to be over, delete {lock}")
