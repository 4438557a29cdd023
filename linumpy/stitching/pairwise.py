"""Registration of two neighbouring tiles from their 2D projections.

Offsets follow one convention throughout :mod:`linumpy.stitching`: the offset
of tile ``b`` relative to tile ``a`` is ``position(b) - position(a)`` as
``(y, x)`` pixels, so pixel ``p`` of ``b`` shows the same point as pixel
``p + offset`` of ``a``.

The search starts from the nominal offset given by the stage. Phase
correlation of the two nominal overlap strips proposes corrections; each of
its strongest peaks is ambiguous modulo the strip size (a peak at ``d`` can
mean ``d`` or ``d - size``), so every interpretation within the allowed shift
is scored by the normalised cross-correlation (NCC) of the two tiles over
their actual overlap; the best one climbs to its NCC local maximum and is
refined to a tenth of a pixel.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.exposure import match_histograms
from skimage.registration import phase_cross_correlation

#: Subpixel precision of the refinement is 1 / UPSAMPLE_FACTOR pixel.
UPSAMPLE_FACTOR = 10
#: Strongest phase-correlation peaks examined per pair.
N_PEAKS = 5
#: An interpretation is scored only if its overlap keeps this fraction of the
#: nominal overlap area (tiny overlaps give meaningless, often high, NCCs).
MIN_OVERLAP_FRACTION = 0.25


@dataclass(frozen=True)
class PairRegistration:
    """Result of registering tile ``b`` against tile ``a``.

    Attributes
    ----------
    offset : tuple of float
        Estimated ``(y, x)`` position of ``b`` minus position of ``a``, pixels.
    ncc : float
        Normalised cross-correlation of the two tiles over their overlap at
        ``offset`` (rounded); ``-1`` when nothing could be scored.
    """

    offset: tuple[float, float]
    ncc: float


def overlap_slices(
    shape_a: tuple[int, int], shape_b: tuple[int, int], offset: tuple[int, int]
) -> tuple[tuple[slice, slice], tuple[slice, slice]] | None:
    """Return the slices of ``a`` and ``b`` that cover the same pixels.

    Parameters
    ----------
    shape_a, shape_b : tuple of int
        ``(y, x)`` shapes of the two tiles.
    offset : tuple of int
        Integer ``(y, x)`` position of ``b`` minus position of ``a``.

    Returns
    -------
    tuple or None
        ``(slices_a, slices_b)``, or ``None`` when the tiles do not overlap.

    Examples
    --------
    >>> overlap_slices((10, 10), (10, 10), (0, 8))
    ((slice(0, 10, None), slice(8, 10, None)), (slice(0, 10, None), slice(0, 2, None)))
    """
    slices_a, slices_b = [], []
    for size_a, size_b, shift in zip(shape_a, shape_b, offset):
        start, stop = max(0, shift), min(size_a, shift + size_b)
        if stop <= start:
            return None
        slices_a.append(slice(start, stop))
        slices_b.append(slice(start - shift, stop - shift))
    return tuple(slices_a), tuple(slices_b)


def normalized_cross_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Return the Pearson correlation of two same-shape arrays (0 if one is flat)."""
    # einsum, not np.dot: BLAS threads cost more than they bring on these small
    # vectors, and stall when the machine is busy.
    a = np.ravel(a).astype(np.float64)
    b = np.ravel(b).astype(np.float64)
    a -= a.sum() / a.size
    b -= b.sum() / b.size
    denominator = np.sqrt(np.einsum("i,i->", a, a) * np.einsum("i,i->", b, b))
    if denominator == 0:
        return 0.0
    return float(np.einsum("i,i->", a, b) / denominator)


def _tukey(n: int, alpha: float = 0.5) -> np.ndarray:
    """Tukey (tapered cosine) window of ``n`` points: flat centre, cosine tapers on
    ``alpha / 2`` of each side (what ``scipy.signal.windows.tukey`` computes,
    without importing ``scipy.signal``, which takes seconds)."""
    if n < 3:
        return np.ones(n)
    position = np.arange(n) / (n - 1)
    taper = alpha / 2
    window = np.ones(n)
    rising, falling = position < taper, position > 1 - taper
    window[rising] = 0.5 * (1 - np.cos(np.pi * position[rising] / taper))
    window[falling] = 0.5 * (1 - np.cos(np.pi * (1 - position[falling]) / taper))
    return window


@functools.lru_cache(maxsize=32)
def _tukey_window(shape: tuple[int, int]) -> np.ndarray:
    return np.outer(_tukey(shape[0]), _tukey(shape[1]))


def _windowed(image: np.ndarray) -> np.ndarray:
    """Subtract the mean and apply a separable Tukey window (suppresses edge effects)."""
    return (image - image.mean()) * _tukey_window(image.shape)


def phase_correlation_peaks(
    reference: np.ndarray, moving: np.ndarray, n_peaks: int = N_PEAKS
) -> list[tuple[int, int]]:
    """Return the strongest peaks of the phase correlation of two images.

    A peak at ``d`` means ``reference[p] ~ moving[p - d]``, modulo the image
    shape: ``d`` is returned in ``[0, shape)`` and the caller resolves the
    wrap-around.

    Parameters
    ----------
    reference, moving : np.ndarray
        Same-shape 2D images (already windowed if desired).
    n_peaks : int
        Maximum number of peaks, strongest first.

    Returns
    -------
    list of tuple of int
    """
    cross_power = np.fft.fft2(reference) * np.conj(np.fft.fft2(moving))
    magnitude = np.abs(cross_power)
    cross_power /= magnitude + 1e-12 * magnitude.max() + 1e-30  # guards empty frequencies
    correlation = np.fft.ifft2(cross_power).real
    is_peak = correlation == ndimage.maximum_filter(correlation, size=3, mode="wrap")
    candidates = np.flatnonzero(is_peak)
    strongest = candidates[np.argsort(correlation.flat[candidates], kind="stable")[::-1]]
    return [tuple(int(i) for i in np.unravel_index(k, correlation.shape)) for k in strongest[:n_peaks]]


def _wrap_readings(
    peaks: list[tuple[int, int]], size: tuple[int, int], max_shift_px: float
) -> list[tuple[int, int]]:
    """Return the integer corrections a list of circular peaks can mean, without repeats.

    A peak at ``d`` reads as ``d`` or ``d - size`` on each axis; readings larger
    than ``max_shift_px`` on either axis are dropped.
    """
    readings = []
    for peak in peaks:
        for y in (peak[0], peak[0] - size[0]):
            for x in (peak[1], peak[1] - size[1]):
                if max(abs(y), abs(x)) <= max_shift_px and (y, x) not in readings:
                    readings.append((y, x))
    return readings


def _hill_climb(
    score: Callable[[tuple[int, int]], float], starts: list[tuple[int, int]]
) -> tuple[tuple[int, int], float]:
    """Return the best-scoring start, moved to its local maximum over 8-neighbours.

    The peak of narrow windowed strips can be a pixel or two off, hence the climb.
    """
    scores = {start: score(start) for start in starts}
    best = max(scores, key=lambda c: (scores[c], c))
    while True:
        neighbours = [(best[0] + dy, best[1] + dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
        for candidate in neighbours:
            if candidate not in scores:
                scores[candidate] = score(candidate)
        climbed = max(neighbours, key=lambda c: (scores[c], c))
        if scores[climbed] <= scores[best]:
            return best, scores[best]
        best = climbed


def _overlap_ncc(a: np.ndarray, b: np.ndarray, offset: tuple[int, int], min_area: int) -> float:
    """NCC of ``a`` and ``b`` over their overlap at an integer offset (-1 if too small)."""
    slices = overlap_slices(a.shape, b.shape, offset)
    if slices is None:
        return -1.0
    region_a, region_b = a[slices[0]], b[slices[1]]
    if region_a.size < min_area:
        return -1.0
    return normalized_cross_correlation(region_a, region_b)


def _refine_subpixel(
    a: np.ndarray, b: np.ndarray, offset: tuple[int, int]
) -> tuple[float, float]:
    """Refine an integer offset to 1 / UPSAMPLE_FACTOR pixel on the exact overlap."""
    slices = overlap_slices(a.shape, b.shape, offset)
    region_a, region_b = _windowed(a[slices[0]]), _windowed(b[slices[1]])
    if min(region_a.shape) < 4 or not region_a.any() or not region_b.any():
        return float(offset[0]), float(offset[1])
    residual, _, _ = phase_cross_correlation(
        region_a, region_b, upsample_factor=UPSAMPLE_FACTOR, normalization=None
    )
    if np.max(np.abs(residual)) > 1.0:
        return float(offset[0]), float(offset[1])
    return float(offset[0] + residual[0]), float(offset[1] + residual[1])


def register_pair(
    tile_a: np.ndarray,
    tile_b: np.ndarray,
    nominal_offset: tuple[float, float],
    max_shift_px: float,
    n_peaks: int = N_PEAKS,
    refine: bool = True,
) -> PairRegistration:
    """Estimate the offset of ``tile_b`` relative to ``tile_a``.

    Parameters
    ----------
    tile_a, tile_b : np.ndarray
        2D projections (e.g. average intensity projections) of the two tiles.
    nominal_offset : tuple of float
        ``(y, x)`` offset expected from the stage, pixels.
    max_shift_px : float
        Largest accepted correction of each coordinate of the nominal offset.
    n_peaks : int
        Phase-correlation peaks examined.
    refine : bool
        Refine the offset to 1 / UPSAMPLE_FACTOR pixel (else integer).

    Returns
    -------
    PairRegistration
        The best offset and its NCC; the NCC is ``-1`` (and the offset the
        nominal one) when the nominal overlap is empty or no interpretation
        fits within ``max_shift_px``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> image = ndimage.gaussian_filter(rng.random((64, 120)), 2)
    >>> result = register_pair(image[:, :64], image[:, 50:114], (0, 48), 5)
    >>> [round(v, 1) for v in result.offset]
    [0.0, 50.0]
    """
    tile_a = np.asarray(tile_a, dtype=np.float64)
    tile_b = np.asarray(tile_b, dtype=np.float64)
    nominal = tuple(int(round(v)) for v in nominal_offset)
    fallback = PairRegistration(offset=(float(nominal_offset[0]), float(nominal_offset[1])), ncc=-1.0)
    slices = overlap_slices(tile_a.shape, tile_b.shape, nominal)
    if slices is None:
        return fallback
    strip_a, strip_b = tile_a[slices[0]], tile_b[slices[1]]
    if min(strip_a.shape) < 2:
        return fallback
    min_area = int(MIN_OVERLAP_FRACTION * strip_a.size)
    strip_b = match_histograms(strip_b, strip_a)
    peaks = phase_correlation_peaks(_windowed(strip_a), _windowed(strip_b), n_peaks)

    def score(correction: tuple[int, int]) -> float:
        if max(abs(correction[0]), abs(correction[1])) > max_shift_px:
            return -np.inf
        offset = (nominal[0] + correction[0], nominal[1] + correction[1])
        return _overlap_ncc(tile_a, tile_b, offset, min_area)

    readings = _wrap_readings(peaks, strip_a.shape, max_shift_px)
    if not readings:
        return fallback
    best, best_ncc = _hill_climb(score, readings)
    if best_ncc <= -1.0:
        return fallback
    best_offset = (nominal[0] + best[0], nominal[1] + best[1])
    if refine:
        best_offset = _refine_subpixel(tile_a, tile_b, best_offset)
    return PairRegistration(offset=(float(best_offset[0]), float(best_offset[1])), ncc=float(best_ncc))
