"""QC metrics computed from plain arrays, with the names the report understands.

Each function returns values ready for :func:`linumpy.qc.records.write_qc_record`;
the metric names and their meaning are listed in ``docs/qc.md``. Functions that
take a volume accept dask arrays and reduce them chunk by chunk.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from linumpy.dask_arrays import is_dask_array

TileIndex = tuple[int, int]


def nonzero_fraction(volume) -> float:
    """Fraction of voxels that are non-zero and finite (0 for an empty slice).

    Examples
    --------
    >>> nonzero_fraction(np.array([0.0, 1.0, 2.0, np.nan]))
    0.5
    """
    kept = nonzero_mask(volume)
    return float(kept.mean().compute() if is_dask_array(kept) else kept.mean())


def nonzero_mask(volume):
    """Where ``volume`` is non-zero and finite: :func:`nonzero_fraction` before it is averaged (lazy for dask)."""
    data = volume if is_dask_array(volume) else np.asarray(volume)
    return (data != 0) & np.isfinite(data)


def depth_profile(volume) -> np.ndarray:
    """Mean intensity of each depth plane of a ``(z, y, x)`` volume (NaN ignored).

    Examples
    --------
    >>> depth_profile(np.arange(8.0).reshape(2, 2, 2)).tolist()
    [1.5, 5.5]
    """
    if is_dask_array(volume):
        import dask.array as da

        return np.asarray(da.nanmean(volume.astype(np.float64), axis=(1, 2)).compute())
    return np.nanmean(np.asarray(volume, dtype=np.float64), axis=(1, 2))


def pair_residuals(
    pairs: Sequence[tuple[TileIndex, TileIndex]],
    measured_offsets: Sequence[Sequence[float]],
    positions: Mapping[TileIndex, Sequence[float]],
) -> np.ndarray:
    """How far the solved tile positions are from each pair's measured offset.

    Residual ``= (positions[b] - positions[a]) - measured_offset``, ``(dy, dx)``
    pixels, one row per pair.

    Examples
    --------
    >>> pair_residuals([((0, 0), (0, 1))], [(0.0, 90.0)], {(0, 0): (0, 0), (0, 1): (1.0, 91.5)}).tolist()
    [[1.0, 1.5]]
    """
    solved = np.array([np.subtract(positions[b], positions[a]) for a, b in pairs], dtype=np.float64)
    return solved.reshape(-1, 2) - np.asarray(measured_offsets, dtype=np.float64).reshape(-1, 2)


def stitching_metrics(
    pairs: Sequence[tuple[TileIndex, TileIndex]],
    measured_offsets: Sequence[Sequence[float]],
    ncc: Sequence[float],
    accepted: Sequence[bool],
    positions: Mapping[TileIndex, Sequence[float]],
    free_directions: Sequence[Sequence[float] | None] | None = None,
) -> tuple[dict, np.ndarray]:
    """Summary metrics of a slice's stitching, and the per-pair residuals.

    Parameters
    ----------
    pairs : sequence of ((row, col), (row, col))
        Registered neighbour pairs.
    measured_offsets : sequence of (dy, dx)
        Offset of ``b`` relative to ``a`` measured by registration, pixels.
    ncc : sequence of float
        Registration score of each pair.
    accepted : sequence of bool
        Whether each pair was used by the global solve (False: the pair fell
        back to the stage model).
    positions : mapping
        Solved origin ``(y, x)`` of every tile.
    free_directions : sequence, optional
        Per pair, the unit ``(y, x)`` direction its offset does not constrain
        (an edge's ridge), or ``None``: its residual along it is not counted.

    Returns
    -------
    metrics : dict
        ``n_pairs``, ``n_fallback_pairs``, ``confidence`` (median NCC of the
        accepted pairs, 0 if none), ``max_residual_px`` (largest residual
        length of an accepted pair, 0 if none).
    residuals : ndarray, shape (n_pairs, 2)
        As :func:`pair_residuals` (across a free direction only), NaN for fallback pairs (they were not fitted).
    """
    accepted = np.asarray(accepted, dtype=bool)
    residuals = pair_residuals(pairs, measured_offsets, positions) if len(pairs) else np.empty((0, 2))
    for k, free in enumerate(free_directions or []):
        if free is not None:
            residuals[k] -= (residuals[k] @ np.asarray(free, float)) * np.asarray(free, float)
    residuals[~accepted] = np.nan
    lengths = np.hypot(residuals[accepted, 0], residuals[accepted, 1])
    scores = np.asarray(ncc, dtype=np.float64)[accepted]
    metrics = {
        "n_pairs": int(len(accepted)),
        "n_fallback_pairs": int((~accepted).sum()),
        "confidence": float(np.median(scores)) if scores.size else 0.0,
        "max_residual_px": float(lengths.max()) if lengths.size else 0.0,
    }
    return metrics, residuals
