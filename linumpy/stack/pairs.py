"""Jobs over consecutive slice pairs, run side by side.

The stack estimates each pair of consecutive slices on its own (rotation,
registration, boundary ratio): :func:`pair_map` runs those jobs on the
step's threads (:func:`linumpy.parallel.ordered_map`). With several threads
each job computes its dask reads on its own thread (dask's synchronous
scheduler): a dask thread pool per job thread held about 0.2 GB more at the
peak on the five ``small`` slices (their buffers and malloc arenas). The
results do not depend on the threads.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import TypeVar

import dask

from linumpy.parallel import default_workers, ordered_map

Result = TypeVar("Result")


def pair_map(job: Callable[[int], Result], pairs: Sequence[int], workers: int | None = None) -> list[Result]:
    """``[job(k) for k in pairs]``, computed by ``workers`` threads (default: the step's).

    Examples
    --------
    >>> pair_map(lambda k: k * k, [1, 2, 3], workers=2)
    [1, 4, 9]
    """
    workers = default_workers() if workers is None else max(1, int(workers))
    quiet = dask.config.set(scheduler="synchronous") if workers > 1 else contextlib.nullcontext()
    with quiet:
        return list(ordered_map(job, pairs, workers))
