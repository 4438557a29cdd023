"""How many threads a step uses, and the bounded pipeline of chunk jobs they run.

Every streaming step is a sequence of independent jobs (read a chunk column,
compute, compress and write the result). numpy, numcodecs (Blosc, LZ4, Zstd)
and file I/O release the GIL, so a few threads overlap the reading, the
computing and the writing of consecutive jobs. :func:`ordered_map` runs the
jobs on ``workers`` threads with a bounded number in flight (memory does not
grow with the slice) and yields the results in job order (sums reduced in
that order stay deterministic). :func:`run_jobs` is for jobs whose product is
what they write (each its own chunks): it yields the results as the jobs
finish and submits a new job as soon as any finishes, so no thread waits for
a slow job ahead of it in the order.

The number of threads is, in order of precedence: the ``--workers`` flag of a
script (Nextflow passes ``task.cpus``), the ``LINUMPY_WORKERS`` environment
variable (set by the local runner, which shares the cores among the slices it
runs at once), the cores this process may run on.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
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
    return _windowed(function, items, workers, ahead, _oldest)


def run_jobs(
    function: Callable[[Item], Result], items: Iterable[Item], workers: int | None = None, ahead: int | None = None
) -> Iterator[Result]:
    """Yield ``function(item)`` for every item as the jobs finish, computed by ``workers`` threads.

    For jobs whose product is what they write (output chunks no other job
    writes), where the order in which they finish does not change the
    output. At most ``ahead`` (default ``2 * workers``) jobs are submitted
    and not yet yielded; a new one is submitted as soon as any finishes
    (:func:`ordered_map` waits for the oldest instead, which leaves a thread
    idle behind a slow job). Items are taken from ``items`` in order. With
    one worker the jobs run in the calling thread, in order. When the
    consumer stops early or a job fails, queued jobs are cancelled and
    running ones are waited for before this generator returns; a failure is
    raised as soon as it is seen.

    Examples
    --------
    >>> sorted(run_jobs(lambda v: v * v, range(5), workers=2))
    [0, 1, 4, 9, 16]
    """
    return _windowed(function, items, workers, ahead, _first_finished)


def _windowed(
    function: Callable[[Item], Result], items: Iterable[Item], workers: int | None, ahead: int | None,
    take: Callable[[deque[Future]], Iterator[Result]],
) -> Iterator[Result]:
    """Run the jobs on a pool with at most ``ahead`` not yet yielded; ``take`` waits for and yields some."""
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
                    yield from take(pending)
                pending.append(pool.submit(function, item))
            while pending:
                yield from take(pending)
        finally:
            for future in pending:
                future.cancel()


def _oldest(pending: deque[Future]) -> Iterator[Result]:
    """Wait for the oldest job; yield its result."""
    yield pending.popleft().result()


def _first_finished(pending: deque[Future]) -> Iterator[Result]:
    """Wait until any job finishes; remove the finished ones and yield their results (a failure is raised)."""
    done, _ = wait(pending, return_when=FIRST_COMPLETED)
    for future in done:
        pending.remove(future)
    for future in done:
        yield future.result()


def import_in_background(*modules: str) -> threading.Thread:
    """Start importing ``modules`` on a thread of their own; return it.

    A step calls it before its parallel pass for the libraries it needs
    only afterwards (e.g. the axial correction's focus fits): the import, seconds of
    serial work at the step's end otherwise, runs while the worker threads
    spend most of their time outside the GIL. A later ``import`` of the same
    module waits for this one (Python's per-module import lock) and finds it
    loaded. A failure is left for that later import to raise.
    """

    def load() -> None:
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception as error:  # noqa: BLE001 -- the step's own import reports it
                logger.debug("background import of %s failed: %s", name, error)
                return

    thread = threading.Thread(target=load, name="linumpy-import")
    thread.start()
    return thread
