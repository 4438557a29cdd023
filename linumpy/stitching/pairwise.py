"""Registration of two neighbouring tiles from their 2D projections.

Offsets follow one convention throughout :mod:`linumpy.stitching`: the offset
of tile ``b`` relative to tile ``a`` is ``position(b) - position(a)`` as
``(y, x)`` pixels, so pixel ``p`` of ``b`` shows the same point as pixel
``p + offset`` of ``a``.

Registration compares band-passed images (:func:`band_pass`: speckle
smoothed, log intensity, slow variations such as residual vignetting
removed), never raw intensities: on smooth, vignetted content the raw NCC
rises as the overlap narrows and peaks at the edge of the search.

1. **Dense search.** The normalised cross-correlation (NCC) of the two images
   over their actual overlap is computed for every integer offset within
   ``max_shift_px`` of the nominal one (all at once by FFT; offsets whose
   overlap keeps less than :data:`MIN_OVERLAP_FRACTION` of the nominal one
   are not scored).
2. **Significance.** How far the best peak's NCC stands above the best rival
   peak (farther than :data:`PEAK_RADIUS_PX`), in standard errors of the NCC
   over that overlap (:func:`peak_significance`). Independent speckle lowers
   the NCC of a true match, but what matters is whether a wrong offset could
   beat it.
3. **Sub-pixel refinement.** The common region of the two tiles at the
   integer offset is cropped from both, band-passed identically (cropping
   first: filtering whole tiles treats the overlap differently in each, one
   tile's edge being the other's interior), and a symmetric Lucas-Kanade
   (Gauss-Newton) fit finds the remaining sub-pixel shift and its standard
   error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

#: Speckle-reducing Gaussian (pixels) of the registration images.
SPECKLE_SIGMA_PX = 1.5
#: Largest Gaussian (pixels) whose content is removed from the registration images;
#: narrow overlaps use a third of their width (see :func:`highpass_sigma`).
HIGHPASS_SIGMA_PX = 12.0
#: Smallest high-pass Gaussian, pixels.
MIN_HIGHPASS_SIGMA_PX = 3.0
#: Offsets are scored only if their overlap keeps this fraction of the nominal area.
MIN_OVERLAP_FRACTION = 0.3
#: NCC values within this radius (pixels) of the best peak belong to it.
PEAK_RADIUS_PX = 5
#: Candidate peaks kept per pair (strongest first).
N_CANDIDATES = 3
#: Largest sub-pixel correction (pixels) the refinement may apply.
MAX_REFINEMENT_PX = 1.5
#: Lucas-Kanade iterations and convergence step (pixels).
LK_ITERATIONS = 12
LK_TOLERANCE_PX = 0.005


@dataclass(frozen=True)
class PairRegistration:
    """Result of registering tile ``b`` against tile ``a``.

    Attributes
    ----------
    offset : tuple of float
        Estimated ``(y, x)`` position of ``b`` minus position of ``a``, pixels.
    ncc : float
        NCC of the band-passed images at the integer offset; ``-1`` when
        nothing could be scored.
    significance : float
        Standard errors by which the peak beats its best rival (0 when
        nothing could be scored).
    sigma_px : tuple of float
        Standard error of each coordinate of ``offset`` (sub-pixel fit).
    candidates : tuple
        Integer offsets of the strongest peaks with their NCC, best first.
    """

    offset: tuple[float, float]
    ncc: float
    significance: float = 0.0
    sigma_px: tuple[float, float] = (1.0, 1.0)
    candidates: tuple = field(default=())


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
    a = np.ravel(a).astype(np.float64)
    b = np.ravel(b).astype(np.float64)
    a -= a.sum() / a.size
    b -= b.sum() / b.size
    denominator = np.sqrt(np.einsum("i,i->", a, a) * np.einsum("i,i->", b, b))
    if denominator == 0:
        return 0.0
    return float(np.einsum("i,i->", a, b) / denominator)


def highpass_sigma(overlap_px: float) -> float:
    """High-pass scale for an overlap ``overlap_px`` wide: a third of it, within
    [:data:`MIN_HIGHPASS_SIGMA_PX`, :data:`HIGHPASS_SIGMA_PX`]. Each tile is
    filtered alone, so near its edge the filter sees only its own side; a scale
    small against the overlap keeps that difference out of most of the overlap.
    """
    return float(np.clip(overlap_px / 3, MIN_HIGHPASS_SIGMA_PX, HIGHPASS_SIGMA_PX))


def band_pass(image: np.ndarray, highpass_px: float = HIGHPASS_SIGMA_PX) -> np.ndarray:
    """Log of the speckle-smoothed image minus its own heavy blur.

    Smoothing by :data:`SPECKLE_SIGMA_PX` averages speckle grains; the log
    makes multiplicative effects (vignetting, speckle, tissue brightness)
    additive; subtracting the ``highpass_px`` blur removes slow variations. Non-positive values are clipped to 0.1 % of the 99th
    percentile before the log.
    """
    smoothed = ndimage.gaussian_filter(np.asarray(image, np.float64), SPECKLE_SIGMA_PX)
    floor = max(1e-3 * float(np.percentile(smoothed, 99)), 1e-12)
    logged = np.log(np.maximum(smoothed, floor))
    return logged - ndimage.gaussian_filter(logged, highpass_px)


def _search_crops(shape: tuple[int, int], nominal: tuple[int, int], radius: int):
    """Parts of ``a`` and ``b`` that can overlap within ``radius`` of ``nominal``.

    Returns ``(slices_a, slices_b)``, or ``None`` if they cannot overlap.
    """
    slices_a, slices_b = [], []
    for size, shift in zip(shape, nominal):
        slices_a.append(slice(max(0, shift - radius), min(size, shift + size + radius)))
        slices_b.append(slice(max(0, -shift - radius), min(size, size - shift + radius)))
        if slices_a[-1].stop <= slices_a[-1].start or slices_b[-1].stop <= slices_b[-1].start:
            return None
    return tuple(slices_a), tuple(slices_b)


def ncc_map(
    image_a: np.ndarray, image_b: np.ndarray, nominal: tuple[int, int], radius: int
) -> tuple[np.ndarray, np.ndarray]:
    """NCC of ``a`` and ``b`` over their overlap, for every integer offset near ``nominal``.

    Parameters
    ----------
    image_a, image_b : np.ndarray
        Same-shape 2D images.
    nominal : tuple of int
        Centre ``(y, x)`` offset ``position(b) - position(a)``.
    radius : int
        Offsets ``nominal + (dy, dx)`` with ``|dy|, |dx| <= radius`` are scored.

    Returns
    -------
    ncc : np.ndarray
        ``(2 radius + 1, 2 radius + 1)``; entry ``[dy + radius, dx + radius]``.
        NaN where the tiles do not overlap.
    area : np.ndarray
        Overlap area (pixels) of each offset.
    """
    shape = image_a.shape
    size = 2 * radius + 1
    crops = _search_crops(shape, nominal, radius)
    if crops is None:
        return np.full((size, size), np.nan), np.zeros((size, size))
    slices_a, slices_b = crops
    a = np.asarray(image_a, np.float64)[slices_a]
    b = np.asarray(image_b, np.float64)[slices_b]
    # offset between the crops: crop_b pixel q sits on crop_a pixel q + local
    local = [n - sa.start + sb.start for n, sa, sb in zip(nominal, slices_a, slices_b)]
    fft_shape = [sa + sb + 2 * radius for sa, sb in zip(a.shape, b.shape)]
    ones_a, ones_b = np.ones_like(a), np.ones_like(b)
    spectra = {name: np.fft.rfft2(x, fft_shape) for name, x in
               (("a", a), ("a2", a * a), ("1a", ones_a), ("b", b), ("b2", b * b), ("1b", ones_b))}

    def correlate(x: str, y: str) -> np.ndarray:
        full = np.fft.irfft2(spectra[x] * np.conj(spectra[y]), fft_shape)
        rows = np.arange(local[0] - radius, local[0] + radius + 1) % fft_shape[0]
        cols = np.arange(local[1] - radius, local[1] + radius + 1) % fft_shape[1]
        return full[np.ix_(rows, cols)]

    area = np.rint(correlate("1a", "1b"))
    with np.errstate(invalid="ignore", divide="ignore"):
        sum_a, sum_b = correlate("a", "1b"), correlate("1a", "b")
        covariance = correlate("a", "b") - sum_a * sum_b / area
        variance_a = correlate("a2", "1b") - sum_a**2 / area
        variance_b = correlate("1a", "b2") - sum_b**2 / area
        ncc = covariance / np.sqrt(np.maximum(variance_a * variance_b, 0))
    ncc[(area < 1) | ~np.isfinite(ncc)] = np.nan
    return np.clip(ncc, -1, 1), np.maximum(area, 0)


def _local_maxima(values: np.ndarray) -> list[tuple[int, int]]:
    """Indices of the 8-neighbourhood local maxima of ``values`` (NaN = -inf), strongest first."""
    filled = np.where(np.isfinite(values), values, -np.inf)
    is_peak = (filled == ndimage.maximum_filter(filled, size=3, mode="constant", cval=-np.inf))
    is_peak &= np.isfinite(filled)
    peaks = np.argwhere(is_peak)
    order = np.argsort(-filled[is_peak], kind="stable")
    return [tuple(int(v) for v in peaks[k]) for k in order]


def peak_significance(ncc: np.ndarray, area: np.ndarray, peak: tuple[int, int],
                      radius: int = PEAK_RADIUS_PX) -> float:
    """How clearly ``ncc[peak]`` beats every other peak, in standard errors.

    The NCC of the best peak and of the strongest local maximum farther than
    ``radius`` (0 if lower or absent) are compared after Fisher's transform,
    whose standard error is ``1 / sqrt(n)`` for ``n`` independent pixels; the
    pixels of the band-passed images are correlated over ``4 pi
    SPECKLE_SIGMA_PX ** 2``, so ``n`` is the overlap area divided by that.
    """
    yy, xx = np.indices(ncc.shape)
    away = (yy - peak[0]) ** 2 + (xx - peak[1]) ** 2 > radius**2
    rivals = [ncc[p] for p in _local_maxima(np.where(away, ncc, np.nan))[:1]]
    second = max(rivals + [0.0])
    n_independent = area[peak] / (4 * np.pi * SPECKLE_SIGMA_PX**2)
    clip = 1 - 1e-6
    return float((np.arctanh(min(ncc[peak], clip)) - np.arctanh(min(second, clip)))
                 * np.sqrt(max(n_independent, 0.0)))


def _shifted(image: np.ndarray, shift: np.ndarray) -> np.ndarray:
    return ndimage.shift(image, shift, order=3, mode="nearest")


def refine_subpixel(
    tile_a: np.ndarray, tile_b: np.ndarray, offset: tuple[int, int]
) -> tuple[tuple[float, float], tuple[float, float]]:
    """Refine an integer offset by a symmetric Lucas-Kanade fit on the common region.

    Both crops are band-passed identically; ``b`` shifted by ``-d / 2`` is
    matched to ``a`` shifted by ``+d / 2`` (gain and mean free) by
    Gauss-Newton steps on ``d``.

    Parameters
    ----------
    tile_a, tile_b : np.ndarray
        Flat-fielded (not band-passed) projections.
    offset : tuple of int
        Integer offset to refine.

    Returns
    -------
    offset : tuple of float
        Refined offset (the integer one if the fit fails or moves more than
        :data:`MAX_REFINEMENT_PX`).
    sigma : tuple of float
        Standard error of each coordinate (1 px when not refined).
    """
    unrefined = ((float(offset[0]), float(offset[1])), (1.0, 1.0))
    slices = overlap_slices(tile_a.shape, tile_b.shape, offset)
    if slices is None or min(tile_a[slices[0]].shape) < 12:
        return unrefined
    highpass_px = highpass_sigma(min(tile_a[slices[0]].shape))
    crop_a = band_pass(tile_a[slices[0]], highpass_px)
    crop_b = band_pass(tile_b[slices[1]], highpass_px)
    margin = int(np.ceil(MAX_REFINEMENT_PX)) + 3
    inner = (slice(margin, -margin), slice(margin, -margin))
    shift = np.zeros(2)
    for _ in range(LK_ITERATIONS):
        warped_a, warped_b = _shifted(crop_a, -shift / 2)[inner], _shifted(crop_b, shift / 2)[inner]
        warped_a = (warped_a - warped_a.mean()) / (warped_a.std() + 1e-12)
        warped_b = (warped_b - warped_b.mean()) / (warped_b.std() + 1e-12)
        residual = (warped_a - warped_b).ravel()
        jacobian = 0.5 * np.stack([np.ravel(g1 + g2) for g1, g2 in
                                   zip(np.gradient(warped_a), np.gradient(warped_b))], axis=1)
        hessian = jacobian.T @ jacobian
        if np.linalg.cond(hessian) > 1e6:
            return unrefined
        step = -np.linalg.solve(hessian, jacobian.T @ residual)
        shift += step
        if np.max(np.abs(shift)) > MAX_REFINEMENT_PX:
            return unrefined
        if np.max(np.abs(step)) < LK_TOLERANCE_PX:
            break
    # Pixels of the smoothed images are correlated over ~4 pi sigma^2: fewer independent samples.
    correlation_area = 4 * np.pi * SPECKLE_SIGMA_PX**2
    covariance = np.mean(residual**2) * correlation_area * np.linalg.inv(hessian)
    sigma = tuple(float(np.sqrt(max(v, 0.0))) for v in np.diag(covariance))
    return (float(offset[0] + shift[0]), float(offset[1] + shift[1])), sigma


def register_pair(
    tile_a: np.ndarray,
    tile_b: np.ndarray,
    nominal_offset: tuple[float, float],
    max_shift_px: float,
    refine: bool = True,
    prepared: tuple[np.ndarray, np.ndarray] | None = None,
) -> PairRegistration:
    """Estimate the offset of ``tile_b`` relative to ``tile_a``.

    Parameters
    ----------
    tile_a, tile_b : np.ndarray
        2D projections of the two tiles, flat-fielded if a flat field is known.
    nominal_offset : tuple of float
        ``(y, x)`` offset expected from the stage, pixels.
    max_shift_px : float
        Largest correction of each coordinate of the nominal offset searched.
    refine : bool
        Refine the offset below one pixel (else integer).
    prepared : tuple of np.ndarray, optional
        :func:`band_pass` of the two tiles at ``highpass_sigma`` of the nominal
        overlap width, if already computed.

    Returns
    -------
    PairRegistration
        The best offset with its NCC, significance and standard error; the
        nominal offset with NCC ``-1`` and significance 0 when no offset
        within ``max_shift_px`` keeps enough overlap.

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
    radius = int(np.floor(max_shift_px))
    fallback = PairRegistration(offset=(float(nominal_offset[0]), float(nominal_offset[1])), ncc=-1.0)
    nominal_slices = overlap_slices(tile_a.shape, tile_b.shape, nominal)
    if nominal_slices is None:
        return fallback
    nominal_area = tile_a[nominal_slices[0]].size
    if prepared is None:
        highpass_px = highpass_sigma(min(tile_a[nominal_slices[0]].shape))
        prepared = (band_pass(tile_a, highpass_px), band_pass(tile_b, highpass_px))
    image_a, image_b = prepared
    ncc, area = ncc_map(image_a, image_b, nominal, radius)
    ncc[area < MIN_OVERLAP_FRACTION * nominal_area] = np.nan
    peaks = _local_maxima(ncc)
    if not peaks:
        return fallback
    best = peaks[0]
    candidates = tuple(((nominal[0] + p[0] - radius, nominal[1] + p[1] - radius), float(ncc[p]))
                       for p in peaks[:N_CANDIDATES])
    offset = candidates[0][0]
    refined, sigma = (refine_subpixel(tile_a, tile_b, offset) if refine
                      else ((float(offset[0]), float(offset[1])), (1.0, 1.0)))
    return PairRegistration(offset=refined, ncc=float(ncc[best]),
                            significance=peak_significance(ncc, area, best), sigma_px=sigma,
                            candidates=candidates)
