"""Honest per-tile standard errors: the global solve's covariance under the pairs' honest errors.

A tile's position error is not that of its own pairs alone: it inherits the
errors of every pair on its paths to the other tiles (a chain of weak links
accumulates them), and the frame of the slice (its mean translation) is set
by every tile, the stage-placed ones with their stage error. Per axis, the
covariance of the weighted least-squares positions is the pseudo-inverse of
the weighted graph Laplacian of the accepted pairs (weights: the inverse of
each pair's **honest variance**, ``sigma_px**2 + spread_px**2``: the
calibrated standard error plus the width of its evidence peak, as
:mod:`linumpy.stitching.link_conflicts` defines it; a broad peak errs 2-3
times more than ``sigma_px`` says). The pseudo-inverse measures each tile
relative to the mean of its linked group; the group's own mean is known
only as well as the tiles outside it, on the stage model, place the frame:
``(N - n) / N**2`` of the **stage scatter** (the registered tiles' mean
squared departure from the stage model, per axis) is added, and a group
that is not the largest, placed by the stage prior, adds ``1 / n`` of it.
A stage-placed tile's standard error is the stage scatter itself.

The result is a per-axis standard error (the larger axis is reported): a
tile's Euclidean error is within twice it for about 86 % of tiles if it
is honest (a two-dimensional normal law).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from linumpy.stitching.cluster_search import clusters
from linumpy.stitching.global_solve import StageModel, TileIndex
from linumpy.stitching.transform import PairRecord

#: Registered tiles needed to measure the stage scatter on the slice; with
#: fewer, the stage is taken to err uniformly within the search window.
MIN_SCATTER_TILES = 3


def stage_scatter(positions: Mapping[TileIndex, Sequence[float]], model: StageModel,
                  registered: Sequence[TileIndex], max_shift_px: float) -> np.ndarray:
    """``(y, x)`` root-mean-square departure of the ``registered`` tiles from the stage model, pixels.

    With fewer than :data:`MIN_SCATTER_TILES` registered tiles, the standard
    deviation of a uniform error within ``max_shift_px``.
    """
    if len(registered) < MIN_SCATTER_TILES:
        return np.full(2, max_shift_px / np.sqrt(3))
    departures = np.array([np.asarray(positions[t], float) - model.position(t) for t in registered])
    return np.sqrt(np.mean(departures**2, axis=0))


def tile_sigmas(
    tiles: Sequence[TileIndex],
    pairs: Sequence[tuple[TileIndex, TileIndex, np.ndarray]],
    scatter: np.ndarray,
) -> dict[TileIndex, float]:
    """Per tile, the larger of its two per-axis standard errors in the slice's frame, pixels.

    Parameters
    ----------
    tiles : sequence of (row, col)
        Every tile of the slice.
    pairs : sequence of (a, b, variance)
        The accepted pairs, each with its ``(y, x)`` honest variance
        (:func:`linumpy.stitching.link_conflicts.honest_variance`).
    scatter : array
        ``(y, x)`` stage scatter (:func:`stage_scatter`).

    Returns
    -------
    dict
        ``tile -> sigma``; a tile no pair links gets the stage scatter.
    """
    registered = sorted({t for a, b, _ in pairs for t in (a, b)})
    index = {t: i for i, t in enumerate(registered)}
    groups = sorted(clusters(registered, [(a, b) for a, b, _ in pairs]), key=lambda g: (-len(g), g))
    variance = np.zeros((len(registered), 2))
    for axis in range(2):
        laplacian = np.zeros((len(registered),) * 2)
        for a, b, pair_variance in pairs:
            i, j, weight = index[a], index[b], 1.0 / pair_variance[axis]
            laplacian[[i, j], [i, j]] += weight
            laplacian[[i, j], [j, i]] -= weight
        if registered:
            variance[:, axis] = np.diag(np.linalg.pinv(laplacian, hermitian=True))
    n_tiles = len(tiles)
    for rank, group in enumerate(groups):
        frame = scatter**2 * (n_tiles - len(group)) / n_tiles**2
        if rank:
            frame = frame + scatter**2 / len(group)
        for t in group:
            variance[index[t]] += frame
    sigmas = {t: float(np.sqrt(variance[index[t]].max())) for t in registered}
    return {t: sigmas.get(t, float(np.max(scatter))) for t in tiles}


def unlocated_variance(record: PairRecord) -> np.ndarray:
    """``(y, x)`` variance a pair's offset adds where its match leaves it unlocated toward the border of the
    scored window (``unlocated_px``, :func:`linumpy.stitching.pairwise.unlocated_width`): on the step's
    axis, a uniform law over that width, ``unlocated_px**2 / 3`` about the peak (the truth anywhere from
    the peak to the border, or beyond it).

    Examples
    --------
    >>> unlocated_variance(PairRecord((0, 0), (1, 0), (80.0, 0.0), 0.9, True, unlocated_px=6.0)).tolist()
    [12.0, 0.0]
    """
    variance = np.zeros(2)
    variance[0 if record.b[0] != record.a[0] else 1] = record.unlocated_px**2 / 3
    return variance
