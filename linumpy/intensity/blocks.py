"""Lateral blocks of a ``(z, y, x)`` volume that hold whole A-lines.

Per-A-line work needs the full depth in every block; the lateral block size
is chosen so that one block stays within a fixed memory budget whatever the
slice size, and blocks are visited one at a time or by a small thread pool
(optionally with a halo for lateral filters).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

import dask.array as da
import numpy as np
from tqdm.auto import tqdm

#: Bytes of float32 input per block (the working set is a few times this).
BLOCK_BUDGET_BYTES = 16 * 2**20
#: Candidate lateral block sizes, largest first (powers of two keep chunk grids aligned).
BLOCK_SIZES = (256, 128, 64, 32, 16)


def lateral_block_size(depth: int, budget_bytes: int = BLOCK_BUDGET_BYTES) -> int:
    """Largest size ``b`` in :data:`BLOCK_SIZES` with ``depth * b * b`` float32 within budget.

    Examples
    --------
    >>> lateral_block_size(100), lateral_block_size(1000)
    (128, 64)
    """
    for size in BLOCK_SIZES:
        if depth * size * size * 4 <= budget_bytes:
            return size
    return BLOCK_SIZES[-1]


@dataclass(frozen=True)
class LateralBlock:
    """One block: ``inner`` is what it owns, ``outer`` adds the halo (clipped to the volume)."""

    inner: tuple[slice, slice]
    outer: tuple[slice, slice]

    @property
    def inner_in_outer(self) -> tuple[slice, slice]:
        """``inner`` relative to the start of ``outer``."""
        return tuple(
            slice(i.start - o.start, i.stop - o.start) for i, o in zip(self.inner, self.outer)
        )

    @property
    def origin(self) -> tuple[int, int]:
        """(y, x) of the first A-line of ``inner``."""
        return self.inner[0].start, self.inner[1].start


def lateral_blocks(shape_yx: tuple[int, int], size: int, halo: int = 0) -> Iterator[LateralBlock]:
    """Visit a ``(y, x)`` extent in row-major blocks of ``size`` with a ``halo``.

    Examples
    --------
    >>> [b.inner for b in lateral_blocks((3, 5), 4)]
    [(slice(0, 3, None), slice(0, 4, None)), (slice(0, 3, None), slice(4, 5, None))]
    """
    n_y, n_x = shape_yx
    for y0 in range(0, n_y, size):
        for x0 in range(0, n_x, size):
            y1, x1 = min(y0 + size, n_y), min(x0 + size, n_x)
            yield LateralBlock(
                inner=(slice(y0, y1), slice(x0, x1)),
                outer=(slice(max(0, y0 - halo), min(n_y, y1 + halo)), slice(max(0, x0 - halo), min(n_x, x1 + halo))),
            )


def count_blocks(shape_yx: tuple[int, int], size: int) -> int:
    """Number of blocks :func:`lateral_blocks` visits."""
    return -(-shape_yx[0] // size) * -(-shape_yx[1] // size)


def read_block(volume: da.Array, region: tuple[slice, ...]) -> np.ndarray:
    """Load one region of a lazy array, one storage chunk at a time (bounded memory)."""
    return np.asarray(volume[region].compute(scheduler="synchronous"))


def run_blocks(
    work: Callable[[LateralBlock], None],
    parts: Iterable[LateralBlock],
    workers: int = 2,
    progress: bool = False,
    description: str = "blocks",
    total: int | None = None,
) -> None:
    """Run ``work(part)`` for every block in a thread pool, at most ``workers`` at a time.

    Blocks must write disjoint outputs. The first exception is raised once
    the blocks in flight have finished.
    """
    bar = tqdm(total=total, desc=description, disable=not progress, leave=False)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending: set[Future] = set()
        try:
            for part in parts:
                if len(pending) >= max(1, workers):
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        future.result()
                        bar.update(1)
                pending.add(pool.submit(work, part))
            for future in pending:
                future.result()
                bar.update(1)
        finally:
            for future in pending:
                future.cancel()
            bar.close()
