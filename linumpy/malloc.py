"""Tune glibc's allocator for steps whose threads allocate and free arrays of megabytes.

Three settings, made with ``mallopt`` (elsewhere than glibc they do nothing):

- :func:`limit_malloc_arenas`: glibc gives each thread that finds the
  allocator busy its own arena (up to eight per core) and keeps the memory
  freed in an arena for that arena. The stack runs several pools of threads
  one after the other (rotation, registration and boundary jobs, then the
  assembly), each allocating and freeing arrays of megabytes: on the five
  ``small`` slices the peak RSS went from about 0.39 GB (arenas bounded to
  the two workers) to 0.45-0.6 GB (the default; it varies with the threads'
  timing).
- :func:`reuse_freed_memory`: by default an array of more than a few
  megabytes is its own ``mmap``, returned to the system when freed, and the
  top of an arena is trimmed as soon as it is free: the next array of the
  same size is new memory again, whose every page the kernel faults in and
  zeroes. A step that allocates the same few arrays for every tile keeps
  them in its arenas instead (the mosaic grid of the ``large`` slice: 250
  to 150 thousand page faults, the kernel's page zeroing 3.5-4.4 % -> 1.7-2.3 %
  of its CPU samples).
- :func:`reuse_freed_memory_across_threads`: both, with a single arena, for
  a step whose threads free arrays that other threads allocate again (the
  axial correction: a chunk column is decoded on the prefetch thread and
  freed by whichever thread evicts it; a block is read on one worker and
  the next one on another). glibc's arenas other than the main one grow by
  heaps of at most 64 MB, which a 42 MB chunk column does not share: it was
  mapped and faulted in anew for every column even with the first two
  settings (session perf36). The main arena alone keeps them (the ``large``
  slice: 219-317 to 123-133 thousand page faults, 10-17 to 5-8 s of system
  time, session axperf37). The stitch too: its fused blocks (64 MB until session rss10, 16 MB since; hence
  ``largest_block_mb=128``) and decoded tile slabs (the ``large`` slice:
  274-863 to 70-100 thousand page faults, session stitchperf42). And the
  mosaic grid since its tiles are read on a reader thread (its file buffer,
  the tiles' arrays) and written by the workers: 156-248 (the reader's own
  arena) to 71-75 thousand page faults (session perf45).
"""

from __future__ import annotations

import ctypes
import functools
import logging
from collections.abc import Callable

LOGGER = logging.getLogger(__name__)
#: ``mallopt`` parameters of glibc.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8


@functools.cache
def _libc_mallopt() -> Callable[[int, int], int] | None:
    """glibc's ``mallopt``, looked up among the process's own symbols (the C library it runs on; no
    ``ctypes.util.find_library``, which runs ``ldconfig``: ~10 ms), None elsewhere."""
    try:
        return ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):
        return None


def _mallopt(parameter: int, value: int) -> bool:
    """glibc's ``mallopt(parameter, value)``; False where there is none or it refused."""
    mallopt = _libc_mallopt()
    return mallopt is not None and bool(mallopt(parameter, int(value)))


def limit_malloc_arenas(arenas: int) -> bool:
    """Let the process's threads share at most ``arenas`` malloc arenas; True when glibc took it.

    Arenas already made stay; call it before the threads start.

    Examples
    --------
    >>> limit_malloc_arenas(2) in (True, False)
    True
    """
    done = _mallopt(_M_ARENA_MAX, max(1, int(arenas)))
    LOGGER.debug("malloc arenas limited to %d: %s", arenas, done)
    return done


def reuse_freed_memory(largest_block_mb: int = 64, kept_mb: int = 256) -> bool:
    """Keep freed blocks of up to ``largest_block_mb`` in the arenas (up to ``kept_mb`` free at their top).

    Blocks larger than ``largest_block_mb`` are still mapped and unmapped on
    their own. The peak RSS does not grow (freed memory is reused, not
    added to), but the RSS no longer falls back after a peak. True when
    glibc took both settings.

    Examples
    --------
    >>> reuse_freed_memory() in (True, False)
    True
    """
    done = _mallopt(_M_MMAP_THRESHOLD, largest_block_mb * 2**20) and _mallopt(_M_TRIM_THRESHOLD, kept_mb * 2**20)
    LOGGER.debug("freed blocks up to %d MB kept in the arenas: %s", largest_block_mb, done)
    return done


def reuse_freed_memory_across_threads(largest_block_mb: int = 64, kept_mb: int = 256) -> bool:
    """:func:`reuse_freed_memory` in one arena shared by every thread (:func:`limit_malloc_arenas` ``(1)``).

    Call it before the threads start (arenas already made stay). Every
    ``malloc`` and ``free`` that glibc's per-thread cache (``tcache``:
    blocks up to about 1 kB) does not serve then takes the one arena's lock.

    Returns
    -------
    bool
        True when glibc took every setting.
    """
    return limit_malloc_arenas(1) and reuse_freed_memory(largest_block_mb, kept_mb)
