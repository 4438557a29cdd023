"""Ask the kernel to start reading files that will be needed soon.

A streaming step that reads its input file by file (the raw tiles of the
mosaic grid) waits for the disk whenever the files are not in the page
cache, which is the rule for a fresh acquisition. Announcing the next files
(``posix_fadvise(..., POSIX_FADV_WILLNEED)``) lets the kernel read them in the
background while the threads compute and write; the call returns at once,
and files already cached cost nothing. Where the call does not exist (not
Linux / POSIX) nothing happens.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

logger = logging.getLogger(__name__)

Item = TypeVar("Item")


def prefetch_files(paths: Iterable[str | os.PathLike]) -> None:
    """Start reading ``paths`` into the page cache in the background (best effort, never raises)."""
    if not hasattr(os, "posix_fadvise"):
        return
    for path in paths:
        try:
            descriptor = os.open(path, os.O_RDONLY)
        except OSError:
            continue  # a missing file is reported by the reader that needs it
        try:
            os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_WILLNEED)
        except OSError as error:
            logger.debug("%s: no read-ahead (%s)", path, error)
        finally:
            os.close(descriptor)


def prefetch_in_background(paths: Iterable[str | os.PathLike], name: str = "linumpy-read-ahead") -> threading.Thread:
    """Announce ``paths`` (:func:`prefetch_files`) on a thread of its own, started and returned.

    For files a step reads after a phase that leaves the disk idle (the stitch's estimate): the kernel reads
    them meanwhile. The calls can wait while the kernel queues the reads, so they are kept off the thread
    that does the step's work.
    """
    thread = threading.Thread(target=prefetch_files, args=(list(paths),), name=name)
    thread.start()
    return thread


def tile_files(path: str | os.PathLike) -> list[Path]:
    """The files of a raw tile: the ``.bin`` files of a native tile folder, or the file itself."""
    path = Path(path)
    return sorted(path.glob("*.bin")) if path.is_dir() else [path]


def prefetched(
    items: Iterable[Item], files: Callable[[Item], Iterable[str | os.PathLike]], ahead: int = 0
) -> Iterator[Item]:
    """Yield ``items``, announcing the ``files(item)`` of each ``ahead`` items before it is taken.

    Pass the result to :func:`linumpy.parallel.ordered_map` or
    :func:`linumpy.parallel.run_jobs`, which take items a few jobs ahead of
    the running ones: their files are read while the current jobs run. A
    consumer that reads an item's files as soon as it takes it (a reader
    thread) gives the kernel a head start of ``ahead`` items.

    Examples
    --------
    >>> list(prefetched([1, 2, 3], lambda item: [], ahead=2))
    [1, 2, 3]
    """
    announced: deque[Item] = deque()
    for item in items:
        prefetch_files(files(item))
        announced.append(item)
        if len(announced) > ahead:
            yield announced.popleft()
    yield from announced
