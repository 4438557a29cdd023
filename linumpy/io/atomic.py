"""Outputs that appear complete or not at all.

Every output is first written under a hidden temporary sibling name and renamed
onto its final path once complete, so an interrupted task never leaves a file
or directory that a rerun (or Nextflow's ``-resume``) would trust.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from linumpy.errors import OutputExistsError

TEMP_MARKER = ".partial-"


def temporary_sibling(path: str | os.PathLike) -> Path:
    """Return the hidden temporary name used while ``path`` is being written.

    The name depends on the process id only, so two concurrent writers of the
    same output never share a temporary; it never appears in the final output.
    """
    path = Path(path)
    return path.with_name(f".{path.name}{TEMP_MARKER}{os.getpid()}")


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
            f"{path} already exists; pass overwrite=True (scripts: --overwrite) or remove it"
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
    it was.

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
    temporary = temporary_sibling(path)
    remove_path(temporary)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    try:
        yield temporary
    except BaseException:
        remove_path(temporary)
        raise
    commit(temporary, path)
