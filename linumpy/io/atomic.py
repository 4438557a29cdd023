"""Outputs that appear complete or not at all.

Every output is first written under a hidden temporary sibling name and renamed
onto its final path once complete, so an interrupted task never leaves a file
or directory that a rerun (or Nextflow's ``-resume``) would trust.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import logging
import os
import re
import shutil
from collections.abc import Iterator
from concurrent.futures import Executor
from pathlib import Path

from linumpy.errors import OutputExistsError

TEMP_MARKER = ".partial-"
#: Infix of the scratch directory a step uses while writing an output (see :func:`scratch_directory`).
SCRATCH_INFIX = ".scratch"

logger = logging.getLogger(__name__)


def temporary_sibling(path: str | os.PathLike) -> Path:
    """Return the hidden temporary name used while ``path`` is being written.

    The name depends on the process id only, so two concurrent writers of the
    same output never share a temporary; it never appears in the final output.
    """
    path = Path(path)
    return path.with_name(f".{path.name}{TEMP_MARKER}{os.getpid()}")


def process_is_running(pid: int) -> bool:
    """Whether a process with this id exists on this machine and has not exited.

    A killed writer whose parent died with it stays a zombie until the
    system's init reaps it, which a container's init may do late: it still
    answers ``kill(pid, 0)`` but writes nothing more, so it counts as gone
    (its temporaries are stale).
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    """Whether ``/proc`` says the process has exited but was not reaped (False where ``/proc`` is absent)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]  # the state follows the command name in brackets


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete temporaries of ``path`` left by writers that were killed.

    A temporary ``.NAME.partial-PID`` (or scratch directory
    ``.NAME.scratch.partial-PID``) is stale when no process ``PID`` is
    running; temporaries of running processes (a concurrent writer) and of
    other outputs are left alone.

    Returns
    -------
    list of Path
        The temporaries removed.
    """
    path = Path(path)
    owned = re.compile(
        re.escape(f".{path.name}") + f"(?:{re.escape(SCRATCH_INFIX)})?" + re.escape(TEMP_MARKER) + r"(\d+)"
    )
    removed = []
    for candidate in sorted(path.parent.glob(glob.escape(f".{path.name}") + "*")):
        match = owned.fullmatch(candidate.name)
        if match is None:
            continue
        pid = int(match.group(1))
        if pid == os.getpid() or process_is_running(pid):
            continue
        logger.warning("%s: removing the temporary of an interrupted write (process %s is gone)", candidate, pid)
        with contextlib.suppress(FileNotFoundError):  # another writer of path removed it first
            remove_path(candidate)
        removed.append(candidate)
    return removed


@contextlib.contextmanager
def scratch_directory(path: str | os.PathLike, remover: Executor | None = None) -> Iterator[Path]:
    """Yield a private scratch directory beside the output ``path``; delete it afterwards.

    It is named ``.NAME.scratch.partial-PID``, like the atomic temporaries, so
    that a killed writer's scratch is removed by the next writer of ``path``
    (or the local runner) through :func:`remove_stale_temporaries`.

    ``remover``: an executor the deletion is handed to when the block ends (the
    caller's next work then runs beside it: deleting hundreds of chunk files
    waits for the disk, which a step's own writes keep busy); the deletion is
    done when the executor is shut down. Without one, it is deleted before the
    block's exit returns.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    scratch = path.with_name(f".{path.name}{SCRATCH_INFIX}{TEMP_MARKER}{os.getpid()}")
    remove_path(scratch)
    scratch.mkdir()
    try:
        yield scratch
    finally:
        if remover is None:
            remove_path(scratch)
        else:
            remover.submit(remove_path, scratch).add_done_callback(
                lambda removal: removal.exception() is None or logger.warning(
                    "%s: scratch directory not removed (%s)", scratch, removal.exception()))


@contextlib.contextmanager
def naming_file(path: str | os.PathLike) -> Iterator[None]:
    """Re-raise a file-system error of the block with ``path`` as its file name.

    Writers that report a full disk without naming the file (tifffile, a
    bare ``write``) then give the scripts' one-line message naming it.
    """
    try:
        yield
    except OSError as error:
        if error.filename is not None:
            raise
        raise OSError(error.errno or errno.EIO, error.strerror or str(error), str(path)) from None


#: Passes of :func:`remove_path` over a tree whose entries another writer may still rename or delete.
_REMOVAL_PASSES = 3


def remove_path(path: str | os.PathLike) -> None:
    """Delete a file or a directory tree if it exists.

    An entry that disappears while the tree is removed (a writer still
    renaming its own temporary file, as zarr does for every file it writes)
    is not an error: the tree is walked again until it is gone.
    """
    path = Path(path)
    if not (path.is_dir() and not path.is_symlink()):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    for remaining in range(_REMOVAL_PASSES, 0, -1):
        try:
            shutil.rmtree(path)
            return
        except FileNotFoundError:
            if not path.exists():
                return
            if remaining == 1:
                raise


def check_can_write(path: str | os.PathLike, overwrite: bool) -> None:
    """Refuse an existing output unless ``overwrite`` is set.

    Raises
    ------
    OutputExistsError
        If ``path`` exists and ``overwrite`` is false.
    """
    if Path(path).exists() and not overwrite:
        raise OutputExistsError(
            f"{path} already exists; add -f/--overwrite to replace it, or remove it first"
        )


def commit(temporary: str | os.PathLike, path: str | os.PathLike) -> None:
    """Move a completed temporary output onto its final path.

    An existing output at ``path`` is replaced; the caller has checked
    that replacing it was allowed.
    """
    path = Path(path)
    if path.exists() or path.is_symlink():
        remove_path(path)
    os.replace(temporary, path)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write into; rename it onto ``path`` on success.

    On any exception the temporary output is removed and ``path`` is left as
    it was. Temporaries of ``path`` left by killed writers are removed first
    (see :func:`remove_stale_temporaries`).

    Parameters
    ----------
    path : path-like
        Final location of the output (a file or a directory).
    overwrite : bool
        Replace an existing output instead of refusing it.

    Examples
    --------
    >>> with atomic_output("table.csv", overwrite=True) as tmp:  # doctest: +SKIP
    ...     tmp.write_text("a,b\\n")
    """
    check_can_write(path, overwrite)
    remove_stale_temporaries(path)
    temporary = temporary_sibling(path)
    remove_path(temporary)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    try:
        yield temporary
    except BaseException:
        remove_path(temporary)
        raise
    commit(temporary, path)
