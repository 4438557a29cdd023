"""Bound the malloc arenas of the process to its worker threads.

glibc gives each thread that finds the allocator busy its own arena (up to
eight per core) and keeps the memory freed in an arena for that arena. The
stack runs several pools of threads one after the other (rotation,
registration and boundary jobs, then the assembly), each allocating and
freeing arrays of megabytes: on the five ``small`` slices the peak RSS went
from about 0.39 GB (arenas bounded to the two workers) to 0.45-0.6 GB (the
default; it varies with the threads' timing). :func:`limit_malloc_arenas`
bounds them; elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

LOGGER = logging.getLogger(__name__)
#: ``M_ARENA_MAX`` of glibc's ``mallopt``.
_M_ARENA_MAX = -8


def limit_malloc_arenas(arenas: int) -> bool:
    """Let the process's threads share at most ``arenas`` malloc arenas; True when glibc took it.

    Arenas already made stay; call it before the threads start.

    Examples
    --------
    >>> limit_malloc_arenas(2) in (True, False)
    True
    """
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    done = bool(mallopt(_M_ARENA_MAX, max(1, int(arenas))))
    LOGGER.debug("malloc arenas limited to %d: %s", arenas, done)
    return done
