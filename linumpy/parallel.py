"""How many threads a step uses, and the bounded pipeline of chunk jobs they run.

Every streaming step is a sequence of independent jobs (read a chunk column,
compute, compress and write the result). numpy, numcodecs (Blosc, LZ4, Zstd)
and file I/O release the GIL, so a few threads overlap the reading, the
computing and the writing of consecutive jobs. :func:`ordered_map` runs the
jobs on ``workers`` threads with a bounded number in flight (memory does not
grow with the slice) and yields the results in job order (sums reduced in
that order stay deterministic).

The number of threads is, in order of precedence: the ``--workers`` flag of a
script (Nextflow passes ``task.cpus``), the ``LINUMPY_WORKERS`` environment
variable (set by the local runner, which shares the cores among the slices it
runs at once), the cores this process may run on.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

logger = logging.getLogger(__name__)

#: Environment variable holding the default number of worker threads.
WORKERS_ENV = "LINUMPY_WORKERS"

Item = TypeVar("Item")
Result = TypeVar("Result")


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, else the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_workers() -> int:
    """Worker threads of a step: ``$LINUMPY_WORKERS`` if set to a positive integer, else the cores.

    Examples
    --------
    >>> default_workers() >= 1
    True
    """
    value = os.environ.get(WORKERS_ENV, "").strip()
    if value:
        try:
            workers = int(value)
        except ValueError:
            workers = 0
        if workers >= 1:
            return workers
        logger.warning("%s=%r is not a positive integer: using %d cores", WORKERS_ENV, value, available_cores())
    return available_cores()


def set_default_workers(workers: int) -> None:
    """Make ``workers`` the default of :func:`default_workers` in this process (and its children)."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    os.environ[WORKERS_ENV] = str(int(workers))


def ordered_map(
    function: Callable[[Item], Result], items: Iterable[Item], workers: int | None = None, ahead: int | None = None
) -> Iterator[Result]:
    """Yield ``function(item)`` for every item, in item order, computed by ``workers`` threads.

    At most ``ahead`` (default ``2 * workers``) jobs are submitted and not yet
    yielded, so memory is bounded by a few jobs whatever the number of items.
    With one worker the jobs run in the calling thread. When the consumer
    stops early or a job fails, queued jobs are cancelled and running ones
    are waited for before this generator returns.

    Examples
    --------
    >>> list(ordered_map(lambda v: v * v, range(5), workers=2))
    [0, 1, 4, 9, 16]
    """
    workers = default_workers() if workers is None else max(1, int(workers))
    if workers == 1:
        yield from map(function, items)
        return
    limit = max(1, ahead if ahead is not None else 2 * workers)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="linumpy") as pool:
        pending: deque[Future] = deque()
        try:
            for item in items:
                if len(pending) >= limit:
                    yield pending.popleft().result()
                pending.append(pool.submit(function, item))
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
