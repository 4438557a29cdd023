"""Fixed-bin histograms of positive intensities on a log scale, summed block by block.

A global statistic of a slice (a percentile, an Otsu threshold) is computed
in one streaming pass by adding each block's counts to a histogram whose bins
are fixed in advance: ``bins_per_decade`` bins per factor of ten between
``10**low`` and ``10**high``. Non-positive values are counted apart (as
zeros); values outside the range are clamped into the end bins.
"""

from __future__ import annotations

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
