"""Refuse up front a request that can never fit in memory.

A :class:`MemoryError` makes the scripts exit with status 137, on which
Nextflow retries the task with more memory. That is right for real memory
pressure, wrong for a request larger than any machine (a resolution typo):
steps estimate such sizes first and raise an :class:`~linumpy.errors.InputError`
naming the estimate and the fix.
"""

from __future__ import annotations

import os

from linumpy.errors import InputError

_GB = 1024**3


def physical_memory_bytes() -> int | None:
    """Total physical memory of this machine, None where the system does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits_in_memory(n_bytes: float, what: str, fix: str) -> None:
    """Raise InputError if ``n_bytes`` exceed this machine's physical memory.

    Parameters
    ----------
    n_bytes : float
        Estimated peak memory of the request.
    what : str
        What needs it, e.g. ``"one tile of 80 x 9000 x 9000 voxels"``.
    fix : str
        What to change, e.g. ``"use a coarser --resolution"``.

    Examples
    --------
    >>> check_fits_in_memory(1024, "a tiny array", "nothing")
    """
    total = physical_memory_bytes()
    if total is not None and n_bytes > total:
        raise InputError(f"{what} needs about {n_bytes / _GB:,.1f} GB of memory, more than this machine's "
                         f"{total / _GB:,.1f} GB: it can never fit; {fix}")
