"""Flat field (vignetting) of a mosaic's tiles, and the images registration compares.

Vignetting dims every tile the same way, so two tiles that overlap see the
same tissue through different parts of the illumination: in log intensity,
``log a(p + o) - log b(p) = f(p + o) - f(p)`` where ``f`` is the log flat
field and ``o`` the offset of the pair. :func:`estimate_flat_field` fits a
low-order polynomial ``f`` to these differences over all neighbour overlaps
(at the nominal offsets; ``f`` is smooth, so stage errors of a few pixels
only add noise), robustly (tissue edges and wrong offsets are outliers).
This needs no tissue-free tile and works with 4 tiles or more.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from linumpy.stitching.global_solve import TileIndex
from linumpy.stitching.pairwise import overlap_slices

logger = logging.getLogger(__name__)

#: Degree of the log flat-field polynomial.
DEGREE = 2
#: Gaussian smoothing (pixels) of the projections before the flat-field fit.
FIT_SMOOTHING_PX = 2.0
#: Overlap pixels used by the fit, one every this many per axis.
FIT_SUBSAMPLE = 2
#: Tukey biweight constant (in robust standard deviations) of the fit.
BIWEIGHT_C = 4.685


def _monomials(y: np.ndarray, x: np.ndarray, degree: int) -> np.ndarray:
    """``y^i x^j`` for ``1 <= i + j <= degree`` as columns (no constant term)."""
    return np.stack([y**i * x**j for total in range(1, degree + 1)
                     for i in range(total + 1) for j in (total - i,)], axis=-1)


@dataclass(frozen=True)
class FlatFieldFit:
    """A fitted flat field and what supports it.

    Attributes
    ----------
    field : np.ndarray
        Multiplicative flat field of the tile shape, mean 1 (all ones when nothing constrains it).
    pair_samples : dict
        ``(a, b) -> number of overlap samples`` of each pair the fit used.
    inlier_fraction : float
        Fraction of the samples the final biweight kept (weight > 0); 0 when no fit was made.
    """

    field: np.ndarray
    pair_samples: dict[tuple[TileIndex, TileIndex], int]
    inlier_fraction: float


@dataclass(frozen=True)
class OverlapLevels:
    """The projections as :func:`fit_flat_field` samples them, whatever the pairs' offsets.

    Attributes
    ----------
    smoothed : dict
        ``tile -> `` float64 projection smoothed by :data:`FIT_SMOOTHING_PX`.
    logs : dict
        ``tile -> `` log of the smoothed projection, levels floored at 1e-3 of the projections' 99th percentile.
    """

    smoothed: dict[TileIndex, np.ndarray]
    logs: dict[TileIndex, np.ndarray]


def overlap_levels(projections: Mapping[TileIndex, np.ndarray]) -> OverlapLevels:
    """Smooth the projections and take their logs (:class:`OverlapLevels`): the part of the fit that does not
    depend on the pairs, which a caller may compute before the offsets are known (e.g. on another thread)."""
    levels = np.concatenate([np.ravel(p) for p in projections.values()])
    floor = max(1e-3 * float(np.percentile(levels, 99)), 1e-12)
    smoothed = {tile: ndimage.gaussian_filter(np.asarray(p, np.float64), FIT_SMOOTHING_PX)
                for tile, p in projections.items()}
    return OverlapLevels(smoothed, {tile: np.log(np.maximum(image, floor)) for tile, image in smoothed.items()})


def fit_flat_field(
    projections: Mapping[TileIndex, np.ndarray],
    pairs: Sequence[tuple[TileIndex, TileIndex, tuple[int, int]]],
    degree: int = DEGREE,
    min_level: float | None = None,
    levels: OverlapLevels | None = None,
) -> FlatFieldFit:
    """Fit the multiplicative flat field shared by all tiles to their overlaps.

    Parameters
    ----------
    projections : mapping
        ``(row, col) -> 2D projection``, all of one shape.
    pairs : sequence of (a, b, offset)
        Neighbour pairs with their integer ``(y, x)`` offset
        ``position(b) - position(a)``.
    degree : int
        Degree of the log-polynomial.
    min_level : float, optional
        Use only the overlap samples where both smoothed projections exceed
        this level (None: every sample, levels floored at 1e-3 of the 99th
        percentile).
    levels : OverlapLevels, optional
        ``overlap_levels(projections)`` if already computed.

    Returns
    -------
    FlatFieldFit
        The field (all ones when fewer than 2 pairs have samples) and its support.
    """
    shape = next(iter(projections.values())).shape
    unfitted = FlatFieldFit(np.ones(shape), {}, 0.0)
    if len(pairs) < 2:
        return unfitted
    scale = np.array(shape, float) / 2
    if levels is None:
        levels = overlap_levels(projections)
    smoothed, logs = levels.smoothed, levels.logs
    rows, differences, pair_samples = [], [], {}
    for a, b, offset in pairs:
        slices = overlap_slices(shape, shape, offset)
        if slices is None:
            continue
        (ya, xa), (yb, xb) = [
            np.meshgrid(np.arange(s[0].start, s[0].stop, FIT_SUBSAMPLE),
                        np.arange(s[1].start, s[1].stop, FIT_SUBSAMPLE), indexing="ij")
            for s in slices
        ]
        if min_level is not None:
            keep = (smoothed[a][ya, xa] > min_level) & (smoothed[b][yb, xb] > min_level)
            ya, xa, yb, xb = ya[keep], xa[keep], yb[keep], xb[keep]
            if not ya.size:
                continue
        pair_samples[(a, b)] = int(ya.size)
        rows.append(_monomials(ya.ravel() / scale[0] - 1, xa.ravel() / scale[1] - 1, degree)
                    - _monomials(yb.ravel() / scale[0] - 1, xb.ravel() / scale[1] - 1, degree))
        differences.append(logs[a][ya, xa].ravel() - logs[b][yb, xb].ravel())
    if len(rows) < 2:
        return FlatFieldFit(unfitted.field, pair_samples, 0.0)
    design, target = np.concatenate(rows), np.concatenate(differences)
    coefficients, weights = _robust_lstsq(design, target)
    yy, xx = np.meshgrid(np.arange(shape[0]) / scale[0] - 1, np.arange(shape[1]) / scale[1] - 1,
                         indexing="ij")
    log_flat = _monomials(yy, xx, degree) @ coefficients
    flat = np.exp(log_flat - log_flat.mean())
    logger.info("flat field: %.0f%% to %.0f%% of its mean", 100 * flat.min(), 100 * flat.max())
    return FlatFieldFit(flat / flat.mean(), pair_samples, float(np.mean(weights > 0)))


def estimate_flat_field(
    projections: Mapping[TileIndex, np.ndarray],
    pairs: Sequence[tuple[TileIndex, TileIndex, tuple[int, int]]],
    degree: int = DEGREE,
) -> np.ndarray:
    """Estimate the multiplicative flat field shared by all tiles (:func:`fit_flat_field`, every sample).

    Returns
    -------
    np.ndarray
        Flat field of the tile shape, mean 1; all ones when the overlaps
        cannot constrain it (fewer than 2 pairs).
    """
    return fit_flat_field(projections, pairs, degree).field


def _robust_lstsq(design: np.ndarray, target: np.ndarray, iterations: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Least squares reweighted by Tukey's biweight (scale from the MAD of the residuals); coefficients, weights."""
    weights = np.ones(len(target))
    ridge = 1e-6 * np.eye(design.shape[1]) * len(target)
    coefficients = np.zeros(design.shape[1])
    for _ in range(iterations):
        weighted = design * weights[:, None]
        coefficients = np.linalg.solve(weighted.T @ design + ridge, weighted.T @ target)
        residuals = target - design @ coefficients
        scale = 1.4826 * np.median(np.abs(residuals - np.median(residuals))) + 1e-12
        u = residuals / (BIWEIGHT_C * scale)
        weights = np.where(np.abs(u) < 1, (1 - u**2) ** 2, 0.0)
    return coefficients, weights


def fit_log_polynomial(image: np.ndarray, degree: int = DEGREE,
                       step: int = FIT_SUBSAMPLE) -> tuple[np.ndarray, float]:
    """Fit a polynomial of ``degree`` (constant included) to ``log(image)`` of a positive image.

    The tile's own counterpart of :func:`fit_flat_field`'s model (the same monomials, the same coordinates),
    for an image that records the field directly (a uniform reflector seen through the vignetting).

    Parameters
    ----------
    image : np.ndarray
        ``(y, x)`` positive levels (e.g. a smoothed projection above the noise floor).
    degree : int
        Degree of the log-polynomial.
    step : int
        Pixels used by the fit, one every ``step`` per axis.

    Returns
    -------
    field : np.ndarray
        The fitted field ``exp(polynomial)`` at every pixel, mean 1.
    roughness : float
        Robust standard deviation (1.4826 x MAD) of ``log(image)`` about the fit: how far the image departs
        from a smooth field.
    """
    scale = np.array(image.shape, float) / 2
    yy, xx = np.meshgrid(np.arange(image.shape[0]) / scale[0] - 1, np.arange(image.shape[1]) / scale[1] - 1,
                         indexing="ij")
    design = np.concatenate([np.ones((*image.shape, 1)), _monomials(yy, xx, degree)], axis=-1)
    sampled, target = design[::step, ::step].reshape(-1, design.shape[-1]), np.log(image[::step, ::step]).ravel()
    coefficients, *_ = np.linalg.lstsq(sampled, target, rcond=None)
    residuals = target - sampled @ coefficients
    roughness = 1.4826 * float(np.median(np.abs(residuals - np.median(residuals))))
    log_field = design @ coefficients
    field = np.exp(log_field - log_field.mean())
    return field / field.mean(), roughness
