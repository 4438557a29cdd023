"""Outputs that appear complete or not at all.

Every output is first written under a hidden temporary sibling name and renamed
onto its final path once complete, so an interrupted task never leaves a file
or directory that a rerun (or Nextflow's ``-resume``) would trust.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from linumpy.errors import OutputExistsError

TEMP_MARKER = ".partial-"

logger = logging.getLogger(__name__)


def temporary_sibling(path: str | os.PathLike) -> Path:
    """Return the hidden temporary name used while ``path`` is being written.

    The name depends on the process id only, so two concurrent writers of the
    same output never share a temporary; it never appears in the final output.
    """
    path = Path(path)
    return path.with_name(f".{path.name}{TEMP_MARKER}{os.getpid()}")


def _process_is_running(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete temporaries of ``path`` left by writers that were killed.

    A temporary ``.NAME.partial-PID`` is stale when no process ``PID`` is
    running; temporaries of running processes (a concurrent writer) and of
    other outputs are left alone.

    Returns
    -------
    list of Path
        The temporaries removed.
    """
    path = Path(path)
    removed = []
    for candidate in path.parent.glob(glob.escape(f".{path.name}{TEMP_MARKER}") + "*"):
        pid = candidate.name[len(f".{path.name}{TEMP_MARKER}") :]
        if not pid.isdigit() or int(pid) == os.getpid() or _process_is_running(int(pid)):
            continue
        logger.warning("%s: removing the temporary of an interrupted write (process %s is gone)", candidate, pid)
        with contextlib.suppress(FileNotFoundError):  # another writer of path removed it first
            remove_path(candidate)
        removed.append(candidate)
    return removed


def remove_path(path: str | os.PathLike) -> None:
    """Delete a file or a directory tree if it exists."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


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
