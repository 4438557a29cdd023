"""A slice's pyramid levels transformed lazily: each level's graph built when it is first used.

Re-flattening a slice to the common tilt (:func:`linumpy.stack.tilt.retilt_slice`)
or turning it (:func:`linumpy.stack.rotation.rotate_slice`) wraps every
level of its pyramid, and of its run-read copy, in a windowed dask array
(:func:`linumpy.stack.windows.windowed_blocks`: a graph of per-block tasks
and a token of its closures). The stack reads two or three of a slice's
twelve: on the five ``small`` slices the re-tilt built 60 graphs on the
serial path for 15 used. :class:`MappedLevels` builds a level's graph on its
first use; the levels' shapes and voxel sizes (the transforms keep both) are
known without building any (:func:`level_layout`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import overload

import dask.array as da

Level = tuple[da.Array, tuple[float, ...]]


class MappedLevels(Sequence[Level]):
    """``[(function(index, data), resolution) for index, (data, resolution) in enumerate(levels)]``, lazily.

    ``function`` must keep each level's shape. A level is built once, on its
    first indexing (from any thread), and kept; ``levels`` may be mapped
    levels themselves (only the levels indexed are built, in both).

    Examples
    --------
    >>> levels = [(da.zeros((2, 4, 4)), (1.0, 1.0, 1.0)), (da.zeros((2, 2, 2)), (1.0, 2.0, 2.0))]
    >>> built = []
    >>> mapped = MappedLevels(levels, lambda index, data: built.append(index) or data + 1)
    >>> level_layout(mapped), built
    ([((2, 4, 4), (1.0, 1.0, 1.0)), ((2, 2, 2), (1.0, 2.0, 2.0))], [])
    >>> float(mapped[1][0].sum().compute()), built
    (8.0, [1])
    """

    def __init__(self, levels: Sequence[Level], function: Callable[[int, da.Array], da.Array]) -> None:
        self._levels = levels
        self._function = function
        self._built: dict[int, Level] = {}
        self._lock = threading.Lock()  # the pairs' threads index the levels

    def __len__(self) -> int:
        return len(self._levels)

    @overload
    def __getitem__(self, index: int) -> Level: ...

    @overload
    def __getitem__(self, index: slice) -> list[Level]: ...

    def __getitem__(self, index: int | slice) -> Level | list[Level]:
        if isinstance(index, slice):
            return [self[i] for i in range(len(self))[index]]
        index = range(len(self))[index]  # negative indices; IndexError past the end
        with self._lock:
            if index not in self._built:
                data, resolution = self._levels[index]
                self._built[index] = (self._function(index, data), resolution)
            return self._built[index]

    def layout(self) -> list[tuple[tuple[int, ...], tuple[float, ...]]]:
        """Each level's ``(shape, resolution)``, no level built."""
        return level_layout(self._levels)


def level_layout(levels: Sequence[Level]) -> list[tuple[tuple[int, ...], tuple[float, ...]]]:
    """Each level's ``(shape, resolution)``; of :class:`MappedLevels` without building them."""
    if isinstance(levels, MappedLevels):
        return levels.layout()
    return [(tuple(data.shape), resolution) for data, resolution in levels]
