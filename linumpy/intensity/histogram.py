"""Fixed-bin histograms of positive intensities on a log scale, summed block by block.

A global statistic of a slice (a percentile, an Otsu threshold) is computed
in one streaming pass by adding each block's counts to a histogram whose bins
are fixed in advance: ``bins_per_decade`` bins per factor of ten between
``10**low`` and ``10**high``. Non-positive values are counted apart (as
zeros); values outside the range are clamped into the end bins.
"""

from __future__ import annotations

import copy

import numpy as np


class LogHistogram:
    """Histogram of log10 intensities with fixed bins.

    Parameters
    ----------
    low, high : float
        log10 of the range covered.
    bins_per_decade : int
        Resolution: a percentile read from the histogram is exact to
        ``10**(1 / bins_per_decade)`` (0.5% for 200), interpolated within the bin.

    Examples
    --------
    >>> h = LogHistogram()
    >>> h.add(np.concatenate([[0.0], np.logspace(0, 2, 1001)]))
    >>> h.zeros, h.percentile(0.05), round(h.percentile(50), 2)
    (1, 0.0, 10.0)
    """

    def __init__(self, low: float = -12.0, high: float = 12.0, bins_per_decade: int = 200) -> None:
        self.edges = np.linspace(low, high, int(round((high - low) * bins_per_decade)) + 1)
        self.counts = np.zeros(self.edges.size - 1, np.int64)
        self.zeros = 0
        self._low, self._per_decade = np.float32(low), np.float32(bins_per_decade)

    @property
    def centers(self) -> np.ndarray:
        """Bin centres (log10)."""
        return 0.5 * (self.edges[:-1] + self.edges[1:])

    @property
    def total(self) -> int:
        """Number of values added, zeros included."""
        return int(self.counts.sum()) + self.zeros

    def bin_index(self, values: np.ndarray) -> np.ndarray:
        """Bin of each value; -1 for non-positive values.

        The bin is ``floor((log10(v) - low) * bins_per_decade)`` computed in
        float32 (clamped to the end bins); a value within float32 rounding of
        an edge (a relative 1e-6) may fall in the neighbouring bin.
        """
        values = np.asarray(values, np.float32)
        positive = values > 0
        index = np.full(values.shape, -1, np.int64)
        index[positive] = self._bins(values[positive])
        return index

    def _bins(self, positive: np.ndarray) -> np.ndarray:
        """Bins of positive float32 values (a 1D array, modified in place)."""
        logs = np.log10(positive, out=positive)
        logs -= self._low
        logs *= self._per_decade
        np.clip(logs, 0, self.counts.size - 1, out=logs)
        return logs.astype(np.intp)

    def value_bins(self, values: np.ndarray) -> np.ndarray:
        """Bin of every value (same shape, the smallest unsigned type holding them), ``counts.size`` for the
        non-positive values: the bins :meth:`add` counts the values in (the same float32 arithmetic).

        Raises
        ------
        ValueError
            If the range starts below the smallest normal float32 (``low`` < -37.9), whose bin, 0, this
            arithmetic gives every value below it.

        Examples
        --------
        >>> LogHistogram(0, 2, 1).value_bins(np.array([[0.0, 5.0], [50.0, -1.0]]))
        array([[2, 0],
               [1, 2]], dtype=uint8)
        """
        tiny = np.finfo(np.float32).tiny
        if self._low < np.log10(tiny):
            raise ValueError(f"value_bins needs a range starting at or above log10({tiny}), not {self._low}")
        values = np.asarray(values, np.float32)
        # the non-positive values as the smallest normal float32 (bin 0, clamped), then moved to the last bin:
        # no log10 of 0 or of a negative (~10x slower than of a normal number), no masked assignment
        logs = np.maximum(values, tiny)
        np.log10(logs, out=logs)
        logs -= self._low
        logs *= self._per_decade
        np.clip(logs, 0, self.counts.size - 1, out=logs)
        bins = logs.astype(np.min_scalar_type(self.counts.size))
        bins += (values <= 0) * bins.dtype.type(self.counts.size)
        return bins

    def add(self, values: np.ndarray) -> None:
        """Count ``values`` (any shape; NaNs are not allowed)."""
        values = np.ravel(np.asarray(values, np.float32), order="K")  # the counts do not depend on the order
        positive = values[values > 0]  # a copy: binned in place
        self.zeros += values.size - positive.size
        self.counts += np.bincount(self._bins(positive), minlength=self.counts.size)

    def merge(self, other: LogHistogram) -> None:
        """Add the counts of another histogram with the same bins."""
        self.counts += other.counts
        self.zeros += other.zeros

    def percentile(self, q: float) -> float:
        """Value below which ``q`` percent of the counted values lie (0 for the zeros).

        Raises
        ------
        ValueError
            If the histogram is empty.
        """
        total = self.total
        if total == 0:
            raise ValueError("percentile of an empty histogram")
        rank = q / 100.0 * total
        if rank <= self.zeros:
            return 0.0
        cumulative = self.zeros + np.cumsum(self.counts)
        b = int(np.searchsorted(cumulative, rank, side="left"))
        b = min(b, self.counts.size - 1)
        below = cumulative[b] - self.counts[b]
        fraction = (rank - below) / self.counts[b] if self.counts[b] else 0.0
        return float(10 ** (self.edges[b] + fraction * (self.edges[b + 1] - self.edges[b])))

    def otsu(self) -> float | None:
        """Otsu threshold of the positive values (a value, not a log), None if < 2 distinct bins."""
        if np.count_nonzero(self.counts) < 2:
            return None
        from skimage.filters import threshold_otsu  # once the histogram is complete: off the steps' start

        return float(10 ** threshold_otsu(hist=(self.counts, self.centers)))


class KeyedLogHistogram:
    """Counts of a :class:`LogHistogram`'s bins apart for every key of a column of values.

    One pass over columns of values (e.g. the A-lines of a slice) whose keys
    order them (e.g. the rank of each A-line's smoothed AIP among the tissue
    thresholds possible) gives, once a key is chosen, the histogram of the
    values of the columns above it (:meth:`above`) without reading them again.
    Blocks are counted apart (:meth:`of_block`, on any thread) and merged
    (integer sums: the same whatever the order). Only the keys present and the
    range of bins counted are stored.

    Parameters
    ----------
    template : LogHistogram
        The bins (its counts are not used).

    Examples
    --------
    >>> bins = LogHistogram(0, 2, 1)
    >>> counts = KeyedLogHistogram(bins)
    >>> counts.merge(KeyedLogHistogram.of_block(
    ...     np.array([0, 2]), bins.value_bins(np.array([[5.0, 50.0], [0.0, 5.0]])), bins))
    >>> above, columns = counts.above(0)
    >>> above.counts.tolist(), above.zeros, columns
    ([1, 1], 0, 1)
    """

    def __init__(self, template: LogHistogram) -> None:
        self.template = template
        self.keys = np.zeros(0, np.intp)  # the key of each row
        self.bin_range = (0, 0)  # the bins of the counts' columns: [start, stop)
        # (rows, bins), int32 until a count could exceed it (half the memory); rows beyond len(keys): room to grow
        self.counts = np.zeros((0, 0), np.int32)
        self._total = 0  # values counted in ``counts``: no cell holds more
        self.zeros = np.zeros(0, np.int64)  # non-positive values per row
        self.columns = np.zeros(0, np.int64)  # columns per row
        self._rows: dict[int, int] = {}  # key -> row

    @classmethod
    def of_block(cls, keys: np.ndarray, bins: np.ndarray, template: LogHistogram) -> KeyedLogHistogram:
        """The counts of one block: ``keys`` (integers, one per column, any shape) and ``bins`` (``(depth, *columns)``,
        from ``template``'s :meth:`LogHistogram.value_bins`)."""
        block = cls(template)
        keys = np.asarray(keys, np.intp)
        if keys.size == 0:
            return block
        present, rows, columns = np.unique(keys.ravel(), return_inverse=True, return_counts=True)  # one row a key
        # the bins counted, low .. high - 1 (the non-positive values' bin, the largest, apart): the minimum, and the
        # maximum once that bin is wrapped to 0 (unsigned: one pass each, no mask)
        nonpositive = template.counts.size
        low = int(bins.min())
        wrapped = int(np.subtract(bins, nonpositive, dtype=bins.dtype).max())
        high = wrapped + nonpositive - (np.iinfo(bins.dtype).max + 1) + 1 if wrapped else low
        width = high - low + 1  # the last column counts the non-positive values
        # each value's cell (its column's row, its bin), the non-positive ones (above high) in their row's last cell;
        # counted over halves of the depth (half the cells of intp in memory at once)
        offsets = (rows.reshape(keys.shape) * width - low)[None]
        counts = np.zeros(present.size * width, np.intp)
        half = -(-bins.shape[0] // 2)
        for part in (bins[:half], bins[half:]):
            cells = np.add(np.minimum(part, bins.dtype.type(high)), offsets, dtype=np.intp)
            counts += np.bincount(cells.ravel(), minlength=counts.size)
            del cells
        counts = counts.reshape(present.size, width)
        block.keys, block.bin_range = present, ((low, high) if high > low else (0, 0))
        block.counts, block.zeros = counts[:, :-1], counts[:, -1].copy()
        block.columns = columns.astype(np.int64)
        block._rows = {key: row for row, key in enumerate(present.tolist())}
        return block

    def merge(self, other: KeyedLogHistogram) -> None:
        """Add the counts of another (e.g. one block's) over the same bins."""
        if not other.keys.size:
            return
        new = [key for key in other.keys.tolist() if key not in self._rows]
        if new:
            self._add_rows(new)
        if other.bin_range[1] > other.bin_range[0]:
            if self.bin_range[1] <= self.bin_range[0]:
                self._widen(other.bin_range)
            elif other.bin_range[0] < self.bin_range[0] or other.bin_range[1] > self.bin_range[1]:
                self._widen((min(self.bin_range[0], other.bin_range[0]), max(self.bin_range[1], other.bin_range[1])))
        self._total += int(other.counts.sum())
        if self._total > np.iinfo(self.counts.dtype).max:
            self.counts = self.counts.astype(np.int64)
        rows = np.fromiter((self._rows[key] for key in other.keys.tolist()), np.intp, other.keys.size)  # distinct
        start = other.bin_range[0] - self.bin_range[0]
        self.counts[rows, start:start + other.counts.shape[1]] += other.counts
        self.zeros[rows] += other.zeros
        self.columns[rows] += other.columns

    def _add_rows(self, keys: list[int]) -> None:
        """Rows for new keys (the storage doubled when full)."""
        used = self.keys.size
        if used + len(keys) > self.counts.shape[0]:
            room = max(self.counts.shape[0] * 3 // 2, used + len(keys), 64)
            self.counts = _grown(self.counts, (room, self.counts.shape[1]), (0, 0))
            self.zeros, self.columns = _grown(self.zeros, (room,), (0,)), _grown(self.columns, (room,), (0,))
        self._rows.update((key, used + i) for i, key in enumerate(keys))
        self.keys = np.concatenate([self.keys, np.asarray(keys, np.intp)])

    def _widen(self, bins: tuple[int, int]) -> None:
        """Columns for the bins ``[bins[0], bins[1])`` (holding the current ones)."""
        offset = self.bin_range[0] - bins[0] if self.bin_range[1] > self.bin_range[0] else 0
        self.counts = _grown(self.counts, (self.counts.shape[0], bins[1] - bins[0]), (0, offset))
        self.bin_range = bins

    def above(self, key: int) -> tuple[LogHistogram, int]:
        """The histogram of the values of the columns whose key is above ``key``, and the number of those columns."""
        histogram = copy.copy(self.template)
        histogram.counts = np.zeros_like(self.template.counts)
        rows = np.flatnonzero(self.keys > key)
        histogram.counts[self.bin_range[0]:self.bin_range[1]] = self.counts[rows].sum(axis=0, dtype=np.int64)
        histogram.zeros = int(self.zeros[rows].sum())
        return histogram, int(self.columns[rows].sum())


def _grown(array: np.ndarray, shape: tuple[int, ...], offset: tuple[int, ...]) -> np.ndarray:
    """A zero array of ``shape`` holding ``array`` at ``offset``."""
    grown = np.zeros(shape, array.dtype)
    grown[tuple(slice(o, o + n) for o, n in zip(offset, array.shape))] = array
    return grown
