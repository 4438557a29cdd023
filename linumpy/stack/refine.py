"""Refine the motor placement of consecutive slices from their overlap.

Consecutive slices image the same tissue twice: the bottom of slice ``k``
(below the cut) is the top of slice ``k+1``. :func:`register_pair` finds

* the **z offset**: which plane of the previous slice the new slice's top
  matches, by scanning the normalised cross-correlation (NCC) of the new
  slice's top planes against the previous slice's planes around the expected
  slice thickness;
* the **lateral shift**: by phase correlation of the matching planes.

Each estimate carries a confidence: the NCC of the aligned overlap relative
to its speckle ceiling (:func:`speckle_ceiling`: speckle independent between
the two slices caps the raw NCC well below 1 however right the alignment),
zero when the z scan has no distinct interior peak. :func:`resolve_origins` keeps an
estimate only above a minimum confidence, otherwise the motor position
stands, and bounds how far the chained estimates may drift from the motor
model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np
from scipy import fft, ndimage
from skimage.registration import phase_cross_correlation

#: Smallest rise of the z-scan peak above the scan's minimum for a distinct peak.
MIN_PEAK_PROMINENCE = 0.05
#: Smallest rise of the z-scan peak above every offset at least ``RIVAL_DISTANCE_PX`` away (at least
#: ``LOBE_RIVAL_DISTANCE_PX`` away on the peak's own lobe): below it the scan is ambiguous (two peaks,
#: or a plateau) and the estimate is not trusted.
MIN_PEAK_DISTINCTNESS = 0.07
RIVAL_DISTANCE_PX = 3
#: Tissue that changes slowly with depth widens the true peak: its own lobe (the curve falling
#: monotonically to the first local minimum) may stay within ``MIN_PEAK_DISTINCTNESS`` this far out.
LOBE_RIVAL_DISTANCE_PX = 6
#: Lateral lags (registration pixels) of the autocorrelation extrapolated to lag 0 by :func:`speckle_ceiling`:
#: speckle finer than the first decorrelates at both, tissue structure mostly does not.
CEILING_LAGS_PX = (1, 2)
#: Smallest speckle ceiling a confidence is scaled by: below it the planes are nearly all speckle and the
#: scaled curve would be mostly noise (the estimate is then refused).
MIN_CEILING = 0.1
#: The z-scan peak must rise this many times the curve's noise (:func:`null_ncc_spread`) above every rival
#: (the offsets that :data:`MIN_PEAK_DISTINCTNESS` looks at) and above the scan's minimum.
MIN_PEAK_NOISE_RATIO = 3.0
#: Lateral shifts, in fractions of the overlap's sides, at which :func:`null_ncc_spread` reads the NCC of
#: unrelated tissue.
NULL_SHIFT_FRACTIONS = ((1 / 3, 0), (0, 1 / 3), (1 / 3, 1 / 3), (1 / 3, 2 / 3), (2 / 3, 0), (0, 2 / 3),
                        (2 / 3, 2 / 3), (2 / 3, 1 / 3))
#: A lateral shift leaving less than this fraction of the images overlapping is not trusted.
MIN_OVERLAP_FRACTION = 0.25
#: Taper fraction of the Tukey window applied before the phase correlation.
TAPER_FRACTION = 0.3
#: Lateral Gaussian (registration pixels) of both slices' planes where an accepted z scan locates its peak
#: (:func:`scan_z_offset`; the lateral shift, the scan's tests and its confidence use the unsmoothed
#: planes): independent speckle finer than a pixel or two changes as a sub-pixel shift samples it
#: differently, and the z peak then follows the shift as much as the depth (foreign acquisitions, steps
#: against the truth, benchmarks/README.md *z scan with the sub-pixel shift*). Smoothed planes also raise
#: the curve's chance noise: judged on them, small turned overlaps were refused.
Z_SCAN_LATERAL_SIGMA_PX = 1.0
#: Planes of the previous slice smoothed at a time in the z scan (bounds the smoothed copy).
Z_SCAN_SMOOTH_PLANES = 8
#: Offsets on each side of the accepted z-scan peak where the smoothed planes' curve is evaluated
#: (:func:`scan_z_offset`): its peak is taken when it lies within one offset of the accepted one, and the
#: parabola needs its two neighbours.
Z_SCAN_SMOOTH_REACH = 2
#: Rows smoothed along z, then planes filtered laterally, at a time by :func:`bandpass_planes` (bound its
#: temporaries).
BANDPASS_ROWS = 64
BANDPASS_BLOCK = 4


@dataclass(frozen=True)
class PairEstimate:
    """Registration of one slice against the previous one.

    Attributes
    ----------
    z_offset_px : float
        Plane of the previous slice's useful range (axial pixels, subpixel)
        that the new slice's first useful plane matches.
    z_confidence : float
        Peak NCC of the z scan relative to its speckle ceiling (at most 1),
        0 when the peak is on the scan's edge or not distinct.
    shift_yx_px : tuple of float
        Translation (registration pixels) that moves the new slice onto the
        previous one, on top of the motor offset.
    lateral_confidence : float
        NCC of the overlap once the shift is applied, relative to its speckle
        ceiling (at most 1).
    z_peak_ncc : float
        Raw NCC at the z scan's peak.
    z_ceiling : float
        Speckle ceiling the z scan was judged against (:func:`effective_ceiling`
        of the planes at the peak; 1 when the speckle is not independent).
    z_noise : float
        Noise of the z scan's NCCs (:func:`null_ncc_spread` at the peak).
    overlap_ncc : float
        Raw NCC of the aligned overlap.
    lateral_ceiling : float
        Speckle ceiling of the aligned overlap's mean planes (:func:`effective_ceiling`).
    offsets_scanned : list of int
        Candidate z offsets (axial pixels).
    ncc_curve : list of float
        NCC for each candidate offset.
    pixel_um : tuple of float or None
        Size ``(z, y, x)`` of the registration pixels, when known.
    """

    z_offset_px: float
    z_confidence: float
    shift_yx_px: tuple[float, float]
    lateral_confidence: float
    z_peak_ncc: float = 0.0
    z_ceiling: float = 1.0
    z_noise: float = 0.0
    overlap_ncc: float = 0.0
    lateral_ceiling: float = 1.0
    offsets_scanned: list[int] = field(default_factory=list)
    ncc_curve: list[float] = field(default_factory=list)
    pixel_um: tuple[float, float, float] | None = None

    def to_dict(self) -> dict:
        """Return a JSON-ready dict."""
        return asdict(self)


def normalized_cross_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Return the NCC of two arrays of the same shape (0 if either is constant).

    Examples
    --------
    >>> x = np.arange(10.0)
    >>> round(normalized_cross_correlation(x, 2 * x + 1), 6)
    1.0
    """
    a = np.asarray(a, dtype=np.float32).ravel()
    b = np.asarray(b, dtype=np.float32).ravel()
    a = a - np.float32(a.mean(dtype=np.float64))
    b = b - np.float32(b.mean(dtype=np.float64))
    denominator = math.sqrt(float(np.dot(a, a)) * float(np.dot(b, b)))
    if denominator == 0:
        return 0.0
    return float(np.dot(a, b)) / denominator


def speckle_ceiling(planes: np.ndarray) -> float:
    """Fraction of the planes' variance that is lateral structure: the NCC that speckle allows.

    Two images of the same tissue whose speckle is independent (two slices
    cut one after the other image the overlap through different tissue above
    it, at another depth in the beam) correlate at most ``sqrt(c1 * c2)``,
    ``c`` each image's structure fraction of its variance, however right the
    alignment. ``c`` is read from the lateral autocorrelation: speckle finer
    than :data:`CEILING_LAGS_PX` ``[0]`` pixel adds to the variance (lag 0)
    only, so the structure's autocorrelation ``r(1)``, ``r(2)`` (both axes,
    every plane) extrapolates to ``r(1)^2 / r(2)`` at lag 0 (exact for an
    exponential autocorrelation, above ``c`` for any smoother one), clipped
    to ``[r(1), 1]``; 1 (no scaling) when ``r(1)`` or ``r(2)`` is not
    positive. Speckle coarser than a pixel raises the estimate: the scaled
    confidences are then lower, never higher, than the truth's.

    Parameters
    ----------
    planes : numpy.ndarray
        ``(y, x)`` or ``(z, y, x)``; each plane is centred on its own.

    Returns
    -------
    float
        Structure fraction in ``(0, 1]``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> smooth = np.repeat(np.repeat(rng.standard_normal((64, 64)), 8, 0), 8, 1)
    >>> round(speckle_ceiling(smooth + rng.standard_normal(smooth.shape)), 1)
    0.5
    """
    planes = np.asarray(planes, dtype=np.float32)
    planes = planes.reshape(-1, *planes.shape[-2:])
    sums = np.zeros((len(CEILING_LAGS_PX), 3))
    for plane in planes:
        plane = plane - np.float32(plane.mean(dtype=np.float64))
        for i, lag in enumerate(CEILING_LAGS_PX):
            for a, b in ((plane[:-lag], plane[lag:]), (plane[:, :-lag], plane[:, lag:])):
                sums[i] += [np.vdot(a, b), np.vdot(a, a), np.vdot(b, b)]
    denominator = np.sqrt(sums[:, 1] * sums[:, 2])
    if np.any(denominator <= 0):
        return 1.0
    first, second = sums[:, 0] / denominator
    if first <= 0 or second <= 0:
        return 1.0
    return float(np.clip(first * first / second, first, 1.0))


def null_ncc_spread(reference: np.ndarray, moving: np.ndarray) -> float:
    """Noise of an NCC between two images of the same shape: its RMS over unrelated pairings.

    ``moving`` is rolled laterally by :data:`NULL_SHIFT_FRACTIONS` of its
    sides (the tissue no longer matches, the images' own structure and
    speckle grain stay) and correlated with ``reference`` each time: the
    root mean square of those NCCs is the scatter an NCC of these images has
    by chance, whatever the speckle, the overlap's size or the structure's
    grain.

    Both images are centred once (rolling changes neither ``moving``'s mean
    nor its norm): each NCC is then the dot product of the centred images,
    the rolled one read as four blocks instead of a rolled copy, over the
    same norms (:func:`normalized_cross_correlation`'s values, summed in
    another order).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> round(null_ncc_spread(rng.random((4, 64, 64)), rng.random((4, 64, 64))) * 128, 0)
    1.0
    """
    rows, cols = moving.shape[-2:]
    reference, moving = (_centred(image).reshape(-1, rows, cols) for image in (reference, moving))
    denominator = math.sqrt(float(np.vdot(reference, reference)) * float(np.vdot(moving, moving)))
    if denominator == 0:
        return 0.0
    values = [_rolled_dot(reference, moving, (round(fy * rows), round(fx * cols))) / denominator
              for fy, fx in NULL_SHIFT_FRACTIONS]
    return float(np.sqrt(np.mean(np.square(values))))


def _centred(image: np.ndarray) -> np.ndarray:
    """``image`` as float32 minus its mean (taken in float64), as :func:`normalized_cross_correlation` centres."""
    image = np.asarray(image, dtype=np.float32)
    return image - np.float32(image.mean(dtype=np.float64))


def _rolled_dot(reference: np.ndarray, moving: np.ndarray, shift_yx: tuple[int, int]) -> float:
    """``vdot(reference, np.roll(moving, shift_yx, (-2, -1)))`` without the rolled copy: four blocks.

    Examples
    --------
    >>> a, b = np.arange(24.0).reshape(2, 3, 4), np.arange(24.0)[::-1].reshape(2, 3, 4)
    >>> bool(_rolled_dot(a, b, (1, 3)) == np.vdot(a, np.roll(b, (1, 3), (-2, -1))))
    True
    """
    total = 0.0
    for rows in _roll_parts(moving.shape[-2], shift_yx[0]):
        for columns in _roll_parts(moving.shape[-1], shift_yx[1]):
            total += float(np.vdot(reference[:, rows[0], columns[0]], moving[:, rows[1], columns[1]]))
    return total


def _roll_parts(size: int, shift: int) -> list[tuple[slice, slice]]:
    """``(destination, source)`` slices of an axis of ``size`` rolled by ``shift``."""
    shift %= size
    parts = [(slice(shift, size), slice(0, size - shift))]
    return parts + [(slice(0, shift), slice(size - shift, size))] if shift else parts


def bandpass_planes(
    planes: np.ndarray, axial_sigma_px: float = 1.0, background_radius_px: int = 8, out: np.ndarray | None = None,
) -> np.ndarray:
    """Prepare planes ``(z, y, x)`` for registration.

    A Gaussian along z (``axial_sigma_px``) averages out speckle, which is
    independent from voxel to voxel and otherwise makes the z scan lock onto
    the most frequent A-line offset instead of the tissue's; subtracting a
    lateral background (box mean of ``2 * background_radius_px + 1`` pixels,
    cheap at any size) removes the sample's outline and slow intensity
    trends, which flatten the NCC curve. Each plane is then standardised, so
    a gain that changes with depth does not bias the z scan.

    Computed in place in ``out`` (float32, the planes' shape; may be
    ``planes`` itself, then overwritten): the z smoothing a band of
    :data:`BANDPASS_ROWS` rows at a time (each A-line on its own), the rest
    :data:`BANDPASS_BLOCK` planes at a time (each plane on its own), so the
    temporaries stay a few planes deep. The values do not depend on the
    bands and blocks.

    Examples
    --------
    >>> out = bandpass_planes(np.ones((4, 16, 16), np.float32))
    >>> float(abs(out).max()) < 1e-6
    True
    """
    planes = np.asarray(planes, dtype=np.float32)
    out = np.empty_like(planes) if out is None else out
    for start in range(0, planes.shape[1], BANDPASS_ROWS):
        band, target = planes[:, start : start + BANDPASS_ROWS], out[:, start : start + BANDPASS_ROWS]
        # as scipy's gaussian_filter with sigma (axial_sigma_px, 0, 0): no filtering at a zero sigma; written
        # straight into ``out`` (in place too: each A-line is read before its filtered values are written)
        if axial_sigma_px > 1e-15:
            ndimage.gaussian_filter1d(band, axial_sigma_px, axis=0, mode="nearest", output=target)
        else:
            target[...] = band
    width = 2 * background_radius_px + 1
    for start in range(0, len(out), BANDPASS_BLOCK):
        smoothed = out[start : start + BANDPASS_BLOCK]
        detail = np.subtract(smoothed, ndimage.uniform_filter(smoothed, (1, width, width), mode="nearest"))
        spread = detail.std(axis=(1, 2), keepdims=True)
        if np.all(spread > 0):
            np.divide(detail, spread, out=smoothed)
        else:  # a flat plane standardised to zeros
            smoothed[...] = 0
            np.divide(detail, spread, out=smoothed, where=spread > 0)
    return out


def overlap_views(
    reference: np.ndarray, moving: np.ndarray, shift_yx: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Return the parts of two arrays that overlap once ``moving`` is shifted.

    The shift is rounded to whole pixels and applies to the last two axes:
    ``moving[..., y, x]`` lands on ``reference[..., y + dy, x + dx]``.
    Empty arrays are returned when nothing overlaps.
    """
    views_ref, views_mov = overlap_windows(reference.shape[-2:], moving.shape[-2:], shift_yx)
    return reference[(..., *views_ref)], moving[(..., *views_mov)]


def overlap_windows(
    reference_yx: Sequence[int], moving_yx: Sequence[int], shift_yx: Sequence[float]
) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """The ``(y, x)`` windows of :func:`overlap_views` for images of these lateral shapes."""
    views_ref: list[slice] = []
    views_mov: list[slice] = []
    for size_ref, size_mov, shift in zip(reference_yx, moving_yx, shift_yx, strict=True):
        step = int(round(float(shift)))
        start = max(0, step)
        stop = min(size_ref, size_mov + step)
        stop = max(start, stop)
        views_ref.append(slice(start, stop))
        views_mov.append(slice(start - step, stop - step))
    return tuple(views_ref), tuple(views_mov)


def estimate_lateral_shift(
    reference: np.ndarray, moving: np.ndarray, upsample_factor: int = 20
) -> tuple[tuple[float, float], float]:
    """Cross-correlate two images of the same size; return (shift, confidence).

    Both images are centred and tapered by a Tukey window, then registered
    with :func:`skimage.registration.phase_cross_correlation` (plain cross
    power spectrum: robust on smooth, low-contrast tissue). The taper pulls
    the subpixel peak towards zero, so this first pass only gives the
    whole-pixel shift (the correlation's peak pixel: no upsampled DFT, about
    half of the registration's phase-correlation time), and a second pass
    measures the subpixel residual on the overlap once it is applied.

    Parameters
    ----------
    reference, moving : numpy.ndarray
        2D images (y, x) of the same shape.
    upsample_factor : int
        Subpixel precision: 1 / upsample_factor pixels.

    Returns
    -------
    shift_yx : tuple of float
        Translation that moves ``moving`` onto ``reference``.
    confidence : float
        NCC of the overlap once ``moving`` is shifted (whole pixels); 0 when
        less than :data:`MIN_OVERLAP_FRACTION` of the images overlap.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> image = rng.random((64, 64))
    >>> shift, confidence = estimate_lateral_shift(image[5:, 3:], image[:-5, :-3])
    >>> np.round(shift, 1).tolist(), confidence > 0.99
    ([-5.0, -3.0], True)
    """
    reference = np.nan_to_num(np.array(reference, dtype=np.float64), copy=False)
    moving = np.nan_to_num(np.array(moving, dtype=np.float64), copy=False)
    if reference.std() == 0 or moving.std() == 0:
        return (0.0, 0.0), 0.0
    coarse = _tapered_shift(reference, moving, 1)
    ref_view, mov_view = overlap_views(reference, moving, coarse)
    if min(ref_view.shape) < 4 or ref_view.size < MIN_OVERLAP_FRACTION * reference.size:
        return (float(coarse[0]), float(coarse[1])), 0.0
    shift = coarse + _tapered_shift(ref_view, mov_view, upsample_factor)
    return (float(shift[0]), float(shift[1])), normalized_cross_correlation(ref_view, mov_view)


def _tapered_shift(reference: np.ndarray, moving: np.ndarray, upsample_factor: int) -> np.ndarray:
    """Subpixel shift between two centred, Tukey-tapered images."""
    taper = radial_tukey(reference.shape)
    # zero-padded to sizes with fast FFTs (the taper already brings both to zero at the edges)
    padding = [(0, fft.next_fast_len(n, real=False) - n) for n in reference.shape]
    # each spectrum in turn (scipy's FFT, as phase_cross_correlation's own), its real temporaries freed first
    spectra = [fft.fftn(np.pad((image - image.mean()) * taper, padding)) for image in (reference, moving)]
    shift, _, _ = phase_cross_correlation(
        *spectra, space="fourier", upsample_factor=upsample_factor, normalization=None,
    )
    return np.asarray(shift, dtype=float)


def radial_tukey(shape: Sequence[int], alpha: float = TAPER_FRACTION) -> np.ndarray:
    """A radially symmetric Tukey window of ``shape`` (float64).

    The symmetric 1D Tukey window of ``max(shape)`` samples (flat middle,
    cosine tapers over ``alpha`` of its length), read by linear interpolation
    at each pixel's distance from the centre (zero beyond its ends), pixel
    coordinates scaled so every axis spans the window: the same window as
    ``skimage.filters.window(("tukey", alpha), shape)``, without importing
    ``scipy.signal`` (about a second).

    Examples
    --------
    >>> taper = radial_tukey((5, 7))
    >>> float(taper[2, 3]), float(taper[0, 0])
    (1.0, 0.0)
    """
    size = max(shape)
    n = np.arange(size, dtype=np.float64)
    profile = np.ones(size)
    if size > 1 and alpha > 0:
        width = int(np.floor(alpha * (size - 1) / 2.0))
        rising, falling = n[: width + 1], n[size - width - 1 :]
        profile[: width + 1] = 0.5 * (1 + np.cos(np.pi * (-1 + 2.0 * rising / alpha / (size - 1))))
        profile[size - width - 1 :] = 0.5 * (1 + np.cos(np.pi * (1 - 2.0 / alpha + 2.0 * falling / alpha / (size - 1))))
    centre = size / 2 - 0.5
    squared = np.float32(0)
    for axis, length in enumerate(shape):
        coordinate = np.arange(length, dtype=np.float32) * np.float32(size / length) - np.float32(centre)
        squared = squared + (coordinate * coordinate).reshape([-1 if a == axis else 1 for a in range(len(shape))])
    radius = (np.sqrt(squared) + np.float32(centre)).astype(np.float64)
    return np.interp(radius, n, profile, left=0.0, right=0.0)


@dataclass(frozen=True)
class ZScan:
    """Result of :func:`scan_z_offset`.

    Attributes
    ----------
    offset : float
        Best offset, refined to subpixel by a parabola through the peak.
    confidence : float
        Peak NCC relative to the speckle ceiling (at most 1); 0 when refused.
    curve : list of float
        Raw NCC for each candidate offset.
    peak_ncc : float
        Raw NCC at the peak.
    ceiling : float
        Speckle ceiling at the peak: ``sqrt`` of both planes' :func:`speckle_ceiling`,
        1 when the peak exceeds it (:func:`effective_ceiling`).
    noise : float
        The curve's noise: :func:`null_ncc_spread` of the planes at the peak.
    """

    offset: float
    confidence: float
    curve: list[float]
    peak_ncc: float
    ceiling: float
    noise: float


def scan_z_offset(
    previous: np.ndarray,
    current_top: np.ndarray,
    offsets: Sequence[int],
    shift_yx: Sequence[float] = (0.0, 0.0),
    lateral_sigma_px: float = 0.0,
) -> ZScan:
    """Find which planes of ``previous`` match the top planes of the new slice.

    The curve is judged relative to its speckle ceiling (the NCC that speckle
    independent between the slices allows at the peak, :func:`speckle_ceiling`
    of the new slice's planes and of the previous slice's planes at the
    peak): every test below applies to ``curve / ceiling``, so the same rule
    holds with one frame per B-scan (fully developed speckle, raw NCCs a
    third lower) or many.

    Parameters
    ----------
    previous : numpy.ndarray
        Planes ``(z, y, x)`` of the previous slice; ``previous[d]`` is its
        plane at offset ``d``.
    current_top : numpy.ndarray
        The new slice's first ``m`` useful planes ``(m, y, x)``.
    offsets : sequence of int
        Candidate offsets; ``previous[d:d + m]`` must exist for each.
    shift_yx : sequence of float
        Lateral translation of the new slice onto the previous one.
    lateral_sigma_px : float
        Lateral Gaussian of both slices' planes in the overlap (0: none;
        :data:`Z_SCAN_LATERAL_SIGMA_PX`), applied a few planes at a time
        (``previous`` is not modified): an accepted scan's offset is then
        located on the smoothed planes' curve, evaluated within
        :data:`Z_SCAN_SMOOTH_REACH` offsets of the accepted peak only (its
        peak there taken when within one offset of the accepted one); the
        curve, the tests above and the confidence are the unsmoothed planes'.

    Returns
    -------
    ZScan
        Its confidence is 0 when the ceiling is below :data:`MIN_CEILING`,
        when the peak is on the scan's edge, or when it rises less than
        :data:`MIN_PEAK_PROMINENCE` (relative to the ceiling) above the
        scan's minimum, or less than :data:`MIN_PEAK_DISTINCTNESS` above
        every offset :data:`RIVAL_DISTANCE_PX` or more away; each rise must
        also be at least :data:`MIN_PEAK_NOISE_RATIO` times the curve's noise
        (:func:`null_ncc_spread`: a small or speckle-dominated overlap gives
        a curve whose bumps are chance) (a second peak or a
        plateau: the cut face differs from the tissue below the previous
        cut, e.g. a cavity opens there). On the peak's own lobe (the curve
        falling monotonically to the first local minimum, :func:`peak_lobe`)
        the distance is :data:`LOBE_RIVAL_DISTANCE_PX`: tissue that changes
        slowly with depth gives a broad true peak, not an ambiguous scan.
    """
    previous, current_top = overlap_views(previous, current_top, shift_yx)
    curve = _ncc_along_depth(previous, current_top, offsets)
    raw = np.asarray(curve)
    best = int(np.argmax(raw))
    offset = float(offsets[best])
    ceiling, noise = 1.0, 0.0
    if previous.size and current_top.size:
        matched = previous[offsets[best] : offsets[best] + current_top.shape[0]]
        estimate = math.sqrt(speckle_ceiling(current_top) * speckle_ceiling(matched))
        ceiling = effective_ceiling(float(raw[best]), estimate)
        noise = null_ncc_spread(matched, current_top)
    values = raw / max(ceiling, MIN_CEILING)
    interior = 0 < best < len(values) - 1
    left, right = peak_lobe(values, best)
    index = np.arange(values.size)
    on_lobe = (index >= left) & (index <= right)
    distance = np.abs(index - best)
    rivals = raw[np.where(on_lobe, distance >= LOBE_RIVAL_DISTANCE_PX, distance >= RIVAL_DISTANCE_PX)]
    # the rise over the scan's minimum and over the best rival: relative to the ceiling, and to the noise
    rises = raw[best] - np.array([raw.min(), rivals.max() if rivals.size else -np.inf])
    distinct = rises[0] >= max(MIN_PEAK_PROMINENCE * ceiling, MIN_PEAK_NOISE_RATIO * noise)
    unique = rises[1] >= max(MIN_PEAK_DISTINCTNESS * ceiling, MIN_PEAK_NOISE_RATIO * noise)
    scan, scan_best = ZScan(offset, 0.0, curve, float(raw[best]), ceiling, noise), best
    if not (interior and distinct and unique and ceiling >= MIN_CEILING):
        return scan
    if lateral_sigma_px > 0:
        # located on the smoothed planes' curve near the accepted peak (its planes only smoothed), when its
        # peak there is the accepted one's or a neighbour's
        low, high = max(0, best - Z_SCAN_SMOOTH_REACH), min(len(raw) - 1, best + Z_SCAN_SMOOTH_REACH)
        smoothed = np.full(len(raw), -np.inf)
        smoothed[low : high + 1] = _ncc_along_depth(previous, _laterally_smoothed(current_top, lateral_sigma_px),
                                                    offsets[low : high + 1], lateral_sigma_px)
        if 0 < int(np.argmax(smoothed)) < len(smoothed) - 1 and abs(int(np.argmax(smoothed)) - best) <= 1:
            best = int(np.argmax(smoothed))
            offset, raw = float(offsets[best]), smoothed
    left, peak, right = raw[best - 1 : best + 2]
    curvature = left - 2 * peak + right
    if curvature < 0:
        offset += 0.5 * (left - right) / curvature
    return replace(scan, offset=float(offset), confidence=float(min(values[scan_best], 1.0)))


def peak_lobe(values: np.ndarray, best: int) -> tuple[int, int]:
    """First and last index of the lobe around ``values[best]``: the curve falls monotonically out to them.

    Each end is the first local minimum on that side, or the curve's edge.
    """
    left = best
    while left > 0 and values[left - 1] <= values[left]:
        left -= 1
    right = best
    while right < values.size - 1 and values[right + 1] <= values[right]:
        right += 1
    return left, right


def _laterally_smoothed(planes: np.ndarray, sigma_px: float) -> np.ndarray:
    """``planes`` ``(z, y, x)`` with a lateral Gaussian of ``sigma_px`` (a float32 copy), or themselves at 0."""
    if sigma_px <= 0 or planes.size == 0:
        return planes
    smoothed = planes.astype(np.float32)
    return ndimage.gaussian_filter(smoothed, (0.0, sigma_px, sigma_px), mode="nearest", output=smoothed)


def _ncc_along_depth(
    previous: np.ndarray, current: np.ndarray, offsets: Sequence[int], lateral_sigma_px: float = 0.0,
) -> list[float]:
    """NCC of ``current`` with ``previous[d:d + m]`` for each offset ``d``, from plane-by-plane products.

    ``cross[p, j]`` (plane ``p`` of ``previous`` against centred plane ``j``
    of ``current``) comes from matrix products over
    :data:`Z_SCAN_SMOOTH_PLANES` planes of ``previous`` at a time (each
    smoothed laterally by ``lateral_sigma_px`` first, in a copy of those
    planes only), for the groups of planes the ``offsets`` read only (the
    same groups whatever the offsets, so an offset's NCC does not depend
    on which others are asked for); each offset's NCC sums its diagonal, and
    per-plane sums give the window's variance.
    """
    depth = current.shape[0]
    if previous.size == 0 or current.size == 0 or not len(offsets):
        return [0.0] * len(offsets)
    centred = np.array(current, dtype=np.float64).reshape(depth, -1)
    centred -= centred.mean()
    centred_t = centred.T.astype(np.float32)
    current_norm = np.sqrt(np.sum(np.square(centred, out=centred)))
    del centred
    cross = np.empty((previous.shape[0], depth), np.float32)
    plane_sum = np.empty(previous.shape[0])
    plane_squares = np.empty(previous.shape[0])
    first = min(offsets) // Z_SCAN_SMOOTH_PLANES * Z_SCAN_SMOOTH_PLANES
    for start in range(first, min(previous.shape[0], max(offsets) + depth), Z_SCAN_SMOOTH_PLANES):
        block = _laterally_smoothed(previous[start : start + Z_SCAN_SMOOTH_PLANES], lateral_sigma_px)
        flat = block.reshape(block.shape[0], -1).astype(np.float32, copy=False)
        stop = start + flat.shape[0]
        cross[start:stop] = flat @ centred_t
        plane_sum[start:stop] = flat.sum(axis=1, dtype=np.float64)
        plane_squares[start:stop] = np.einsum("ij,ij->i", flat, flat, dtype=np.float64)
    count = centred_t.size
    curve = []
    for d in offsets:
        covariance = float(np.trace(cross[d : d + depth]))
        total = plane_sum[d : d + depth].sum()
        variance = plane_squares[d : d + depth].sum() - total * total / count
        denominator = np.sqrt(max(variance, 0.0)) * current_norm
        curve.append(covariance / denominator if denominator > 0 else 0.0)
    return curve


class _WindowedPlanes:
    """Planes ``(z, y, x)`` that can give a lateral window of every plane as one contiguous array, in place.

    :meth:`windowed` moves each plane's window to the front of the planes'
    own buffer, one after the other (each plane's window is copied out before
    it is written, and never lands beyond the plane's own start), after
    setting aside the pixels outside the window; :meth:`planes` gives whole
    planes back from both. The z scan's matrix product needs the window of
    every plane contiguous: a copy as large as the planes otherwise.
    """

    def __init__(self, planes: np.ndarray) -> None:
        self.buffer = np.ascontiguousarray(planes)
        self.shape = self.buffer.shape
        self.window: tuple[slice, slice] | None = None
        self.outside: list[tuple[tuple[slice, slice], np.ndarray]] = []

    def windowed(self, window: tuple[slice, slice]) -> np.ndarray:
        """``planes[:, window]`` as a contiguous array sharing the planes' buffer (once)."""
        (y0, y1), (x0, x1) = ((w.start, w.stop) for w in window)
        ny, nx = self.shape[1:]
        parts = [(slice(0, y0), slice(0, nx)), (slice(y1, ny), slice(0, nx)),
                 (slice(y0, y1), slice(0, x0)), (slice(y0, y1), slice(x1, nx))]
        self.outside = [(part, self.buffer[(slice(None), *part)].copy()) for part in parts]
        flat = self.buffer.reshape(-1)
        size = (y1 - y0) * (x1 - x0)
        for k in range(self.shape[0]):
            flat[k * size : (k + 1) * size] = self.buffer[k, y0:y1, x0:x1].ravel()
        self.window = window
        return flat[: self.shape[0] * size].reshape(self.shape[0], y1 - y0, x1 - x0)

    def planes(self, start: int, stop: int) -> np.ndarray:
        """Whole planes ``[start, stop)``: a view before :meth:`windowed`, a copy after."""
        if self.window is None:
            return self.buffer[start:stop]
        (y0, y1), (x0, x1) = ((w.start, w.stop) for w in self.window)
        out = np.empty((len(range(self.shape[0])[start:stop]), *self.shape[1:]), self.buffer.dtype)
        size = (y1 - y0) * (x1 - x0)
        window = self.buffer.reshape(-1)[: self.shape[0] * size].reshape(self.shape[0], y1 - y0, x1 - x0)
        out[:, y0:y1, x0:x1] = window[start:stop]
        for part, values in self.outside:
            out[(slice(None), *part)] = values[start:stop]
        return out


def subpixel_shifted(planes: np.ndarray, shift_yx: Sequence[float]) -> np.ndarray:
    """Planes ``(z, y, x)`` moved laterally by ``shift_yx`` (less than a pixel), by the Fourier shift theorem.

    Unlike an interpolation, the phase ramp keeps the speckle's spectrum
    (the z scan's speckle ceiling reads the same planes); the pixels it
    wraps around lie within a pixel of the edges. Returns ``planes`` itself
    when the shift is below a thousandth of a pixel.

    Examples
    --------
    >>> planes = np.zeros((1, 8, 8), np.float32); planes[0, 3, 3] = 1.0
    >>> moved = subpixel_shifted(planes, (0.5, 0.0))
    >>> [round(float(v), 2) for v in moved[0, 2:6, 3]]  # half on each of the two rows
    [-0.19, 0.63, 0.63, -0.19]
    """
    if np.all(np.abs(shift_yx) < 1e-3):
        return planes
    ny, nx = planes.shape[-2:]
    ramp = np.exp(-2j * np.pi * (fft.fftfreq(ny)[:, None] * shift_yx[0] + fft.rfftfreq(nx)[None, :] * shift_yx[1]))
    return fft.irfft2(fft.rfft2(planes, axes=(-2, -1)) * ramp, s=(ny, nx), axes=(-2, -1)).astype(np.float32)


def register_pair(
    previous: np.ndarray,
    previous_first_plane: int,
    current_top: np.ndarray,
    expected_offset: float,
    tolerance: float,
    upsample_factor: int = 20,
    overwrite_previous: bool = False,
    lateral_sigma_px: float = Z_SCAN_LATERAL_SIGMA_PX,
) -> PairEstimate:
    """Register a slice's top planes against the previous slice's planes.

    The lateral shift is first measured at the expected offset, then the z
    offset is scanned with that shift applied (to the pixel's fraction:
    :func:`subpixel_shifted`), then the shift is measured
    again at the offset found (when the z estimate is confident and the
    offset found reads other planes than the motor offset).

    Parameters
    ----------
    previous : numpy.ndarray
        Planes ``(z, y, x)`` of the previous slice's useful range, starting
        at useful plane ``previous_first_plane``; same lateral frame as
        ``current_top`` (the motor offset already removed).
    previous_first_plane : int
        Useful-range index of ``previous[0]``.
    current_top : numpy.ndarray
        The new slice's first useful planes ``(m, y, x)``.
    expected_offset : float
        Offset (axial pixels into the previous slice's useful range) the
        motors predict for the new slice's first plane.
    tolerance : float
        Half-width of the z scan, axial pixels.
    upsample_factor : int
        Subpixel precision of the lateral shift.
    overwrite_previous : bool
        Reuse ``previous``'s buffer (C-contiguous) for the z scan's
        contiguous copy of the overlap instead of a second copy of the planes
        (``previous`` is then garbage).
    lateral_sigma_px : float
        Lateral Gaussian (pixels) of the planes the z scan locates its peak on
        (:func:`scan_z_offset`).

    Returns
    -------
    PairEstimate
        Offsets in the previous slice's useful-range coordinates.
    """
    depth = current_top.shape[0]
    last_start = previous_first_plane + previous.shape[0] - depth
    low = max(previous_first_plane, int(np.floor(expected_offset - tolerance)))
    high = min(last_start, int(np.ceil(expected_offset + tolerance)))
    offsets = list(range(low, high + 1))
    current_mean = current_top.mean(axis=0)

    def first_plane(offset: float) -> int:
        return int(np.clip(round(offset), low, max(low, high))) - previous_first_plane

    def planes_at(offset: float) -> np.ndarray:
        start = first_plane(offset)
        return previous.planes(start, start + depth).mean(axis=0)

    if not offsets:
        return PairEstimate(float(expected_offset), 0.0, (0.0, 0.0), 0.0)
    previous = _WindowedPlanes(previous if overwrite_previous else previous.copy())
    shift, overlap_ncc = estimate_lateral_shift(planes_at(expected_offset), current_mean, upsample_factor)
    local = [d - previous_first_plane for d in offsets]
    # the scan's overlap at the whole-pixel shift (the previous planes' part rearranged in their own buffer,
    # the rest set aside), the new slice's planes moved by the pixel's fraction
    whole = np.round(shift)
    window, current_window = overlap_windows(previous.shape[1:], current_top.shape[1:], whole)
    moved = subpixel_shifted(current_top, np.subtract(shift, whole))
    scan = scan_z_offset(previous.windowed(window), moved[(..., *current_window)], local,
                         lateral_sigma_px=lateral_sigma_px)
    offset = scan.offset + previous_first_plane
    # measured again on the planes the scan found (the same planes as at the motor offset: the same result)
    if scan.confidence > 0 and first_plane(offset) != first_plane(expected_offset):
        shift, overlap_ncc = estimate_lateral_shift(planes_at(offset), current_mean, upsample_factor)
    lateral_ceiling = effective_ceiling(overlap_ncc, _overlap_ceiling(
        planes_at(offset if scan.confidence > 0 else expected_offset), current_mean, shift))
    return PairEstimate(
        z_offset_px=offset,
        z_confidence=scan.confidence,
        shift_yx_px=shift,
        lateral_confidence=_relative(overlap_ncc, lateral_ceiling),
        z_peak_ncc=round(scan.peak_ncc, 6),
        z_ceiling=round(scan.ceiling, 6),
        z_noise=round(scan.noise, 6),
        overlap_ncc=round(overlap_ncc, 6),
        lateral_ceiling=round(lateral_ceiling, 6),
        offsets_scanned=offsets,
        ncc_curve=[round(value, 6) for value in scan.curve],
    )


@dataclass(frozen=True)
class LateralFit:
    """Result of :func:`fit_lateral_shift`: the shift, its confidence, the raw NCC and the ceiling it is judged
    against (the :class:`PairEstimate` fields of the same names)."""

    shift_yx_px: tuple[float, float]
    lateral_confidence: float
    overlap_ncc: float
    lateral_ceiling: float


def fit_lateral_shift(reference: np.ndarray, moving: np.ndarray, upsample_factor: int = 20) -> LateralFit:
    """:func:`estimate_lateral_shift` of two images, its NCC relative to their overlap's speckle ceiling.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> image = rng.random((64, 64))
    >>> fit = fit_lateral_shift(image[5:, 3:], image[:-5, :-3])
    >>> np.round(fit.shift_yx_px, 1).tolist(), fit.lateral_confidence
    ([-5.0, -3.0], 1.0)
    """
    shift, ncc = estimate_lateral_shift(reference, moving, upsample_factor)
    ceiling = effective_ceiling(ncc, _overlap_ceiling(reference, moving, shift))
    return LateralFit(shift, _relative(ncc, ceiling), round(ncc, 6), round(ceiling, 6))


def _overlap_ceiling(reference: np.ndarray, moving: np.ndarray, shift_yx: Sequence[float]) -> float:
    """Speckle ceiling of two images' overlap at ``shift_yx``: ``sqrt`` of both :func:`speckle_ceiling`."""
    reference, moving = overlap_views(reference, moving, shift_yx)
    if min(reference.shape) < 3:
        return 1.0
    return math.sqrt(speckle_ceiling(reference) * speckle_ceiling(moving))


def _relative(ncc: float, ceiling: float) -> float:
    """An NCC relative to its (effective) speckle ceiling, at most 1; 0 below :data:`MIN_CEILING`."""
    return min(ncc / ceiling, 1.0) if ceiling >= MIN_CEILING else 0.0


def effective_ceiling(ncc: float, estimate: float) -> float:
    """The ceiling an NCC is judged against: the estimate, or 1 when the NCC exceeds it.

    An NCC above the speckle ceiling means the speckle is not independent
    between the two images (the same speckle imaged twice, as in the
    simulator's default model, or speckle coarser than the lags of
    :func:`speckle_ceiling`): nothing caps the NCC then, and it is taken as
    it is (the rule for raw NCCs).

    Examples
    --------
    >>> effective_ceiling(0.2, 0.3), effective_ceiling(0.8, 0.6)
    (0.3, 1.0)
    """
    return estimate if ncc <= estimate else 1.0


@dataclass(frozen=True)
class ResolvedOrigins:
    """Final slice origins and how each one was decided.

    Attributes
    ----------
    origins_um : numpy.ndarray
        ``(n, 3)`` origins ``(depth, y, x)``, micrometres, relative to the
        first slice.
    used_z, used_lateral : list of bool
        Whether the registration (rather than the motors) set slice ``k``'s
        step from slice ``k-1`` (always false for the first slice).
    drift_clamped : list of bool
        Whether slice ``k``'s deviation from the motor model hit the bound.
    """

    origins_um: np.ndarray
    used_z: list[bool]
    used_lateral: list[bool]
    drift_clamped: list[bool]


def resolve_origins(
    nominal_um: np.ndarray,
    steps_um: Sequence[np.ndarray | None],
    z_confidences: Sequence[float],
    lateral_confidences: Sequence[float],
    min_confidence: float,
    max_drift_um: Sequence[float],
    depths_um: np.ndarray | None = None,
) -> ResolvedOrigins:
    """Chain the registered steps, falling back to the motors, bounding drift.

    With ``depths_um`` (the slices' depths solved together,
    :func:`linumpy.stack.depths.place_depths`) the depths are taken from it
    instead of chained; the drift bound applies to them all the same, around
    ``nominal_um`` (the caller passes the slices' absolute depths there).

    Parameters
    ----------
    nominal_um : numpy.ndarray
        ``(n, 3)`` motor origins ``(depth, y, x)`` in micrometres.
    steps_um : sequence
        For slice ``k >= 1``, the registered step ``(depth, y, x)`` from
        slice ``k-1`` in micrometres, or None when the pair was not
        registered (first slice, gap). ``steps_um[0]`` is ignored.
    z_confidences, lateral_confidences : sequence of float
        Confidence of each step's depth and lateral parts.
    min_confidence : float
        Steps less confident than this are replaced by the motor step.
    max_drift_um : sequence of float
        Largest allowed ``|origin - nominal|`` per axis ``(depth, y, x)``;
        origins beyond it are clamped onto the bound.
    depths_um : numpy.ndarray, optional
        Depth of each slice relative to the first, replacing the chained depths.

    Returns
    -------
    ResolvedOrigins

    Examples
    --------
    >>> nominal = np.array([[0.0, 0, 0], [200, 0, 0]])
    >>> steps = [None, np.array([190.0, 5, -5])]
    >>> resolved = resolve_origins(nominal, steps, [0, 0.9], [0, 0.1], 0.5, (50, 50, 50))
    >>> resolved.origins_um.tolist(), resolved.used_z, resolved.used_lateral
    ([[0.0, 0.0, 0.0], [190.0, 0.0, 0.0]], [False, True], [False, False])
    """
    nominal = np.asarray(nominal_um, dtype=float)
    bound = np.asarray(max_drift_um, dtype=float)
    origins = nominal.copy()
    used_z = [False] * len(nominal)
    used_lateral = [False] * len(nominal)
    clamped = [False] * len(nominal)
    for k in range(1, len(nominal)):
        step = nominal[k] - nominal[k - 1]
        measured = steps_um[k]
        if measured is not None:
            used_z[k] = bool(z_confidences[k] >= min_confidence)
            used_lateral[k] = bool(lateral_confidences[k] >= min_confidence)
            if used_z[k]:
                step[0] = measured[0]
            if used_lateral[k]:
                step[1:] = measured[1:]
        origin = origins[k - 1] + step
        if depths_um is not None:
            origin[0] = nominal[0, 0] + depths_um[k]
        deviation = origin - nominal[k]
        limited = np.clip(deviation, -bound, bound)
        clamped[k] = bool(np.any(limited != deviation))
        origins[k] = nominal[k] + limited
    return ResolvedOrigins(origins, used_z, used_lateral, clamped)
