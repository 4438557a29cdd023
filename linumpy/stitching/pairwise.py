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
   overlap keeps less than :data:`MIN_OVERLAP_FRACTION` (15 %) of the nominal one
   are not scored).
2. **Evidence and significance.** Offsets are ranked by their NCC in
   standard errors (:func:`evidence`: Fisher transform times the square root
   of the independent pixels of the overlap), so a high NCC over a sliver of
   overlap does not win; the significance of the best peak is how far it
   stands above the best rival peak (farther than :data:`PEAK_RADIUS_PX`).
   Of the speckle scales the most significant wins, but a coarse peak on an
   edge's ridge gives way to a finer scale's round peak on that ridge
   (:func:`locating_scale`).
   Independent speckle lowers the NCC of a true match; what matters is
   whether a wrong offset could beat it.
   On a ridge the evidence peak slides to the larger overlap: a walk along
   the ridge one pixel at a time, two neighbouring offsets compared on the
   overlap they share (cropped and band-passed alike), ends on the member
   that replaces it if it beats it by more than :data:`RIDGE_MOVE_MARGIN`
   standard errors (:func:`match_on_common_overlap`). A confident peak split in two local maxima a few
   pixels apart (within :data:`PEAK_RADIUS_PX`, so no rival) whose other maximum beats it there by the same
   margin is flagged, not moved (:func:`split_peak`).
3. **Sub-pixel refinement.** The common region of the two tiles at the
   integer offset is cropped from both, band-passed identically (cropping
   first: filtering whole tiles treats the overlap differently in each, one
   tile's edge being the other's interior), and a symmetric Lucas-Kanade
   (Gauss-Newton) fit finds the remaining sub-pixel shift and its standard
   error.
4. **Edges.** An overlap holding one edge locates the offset across it only:
   the offsets whose match quality cannot be told from the peak's make a long
   thin ridge along the edge (:func:`ridge`, :func:`edge_ridge`); the solve
   then uses the pair across the ridge only.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

#: Speckle-reducing Gaussians (pixels) of the registration images, tried in turn:
#: the finer keeps speckle that repeats between tiles (a sharp signal), the
#: coarser averages speckle drawn anew in each tile (noise).
SPECKLE_SIGMAS_PX = (0.7, 1.5)
#: Speckle-reducing Gaussian (pixels) of the sub-pixel refinement, whatever scale
#: found the integer peak: finer keeps more of the gradient signal the fit uses
#: (tuned on seeds 0-2 of the stitching matrix).
REFINE_SPECKLE_PX = 0.5
#: Standard error (pixels, per axis) of an offset the sub-pixel fit did not refine: known to about a pixel.
PLACEHOLDER_SIGMA_PX = (1.0, 1.0)
#: Largest Gaussian (pixels) whose content is removed from the registration images;
#: narrow overlaps use a third of their width (see :func:`highpass_sigma`).
HIGHPASS_SIGMA_PX = 12.0
#: Smallest high-pass Gaussian, pixels.
MIN_HIGHPASS_SIGMA_PX = 3.0
#: Offsets are scored only if their overlap keeps this fraction of the nominal area:
#: low enough that the stage errors a pair must tolerate leave its truth scored
#: (harsh foreign acquisitions, +-6 px per tile on a 12 px overlap: true overlaps of
#: 2-3 px, 18-22 % of the nominal; at 30 % their best scored peak was a wrong one,
#: significance up to 5.3, 6 px off), high enough that a sliver of a pixel or two is
#: not scored (its evidence, ``sqrt`` of its area, is small anyway).
MIN_OVERLAP_FRACTION = 0.15
#: NCC values within this radius (pixels) of the best peak belong to it.
PEAK_RADIUS_PX = 5
#: A pair's offset leaves its evidence peak for a better match on the peak's ridge only if that match
#: beats the peak by more than this many standard errors on their common overlap
#: (:func:`match_on_common_overlap`). Without it the moves of weak pairs change what the later rules keep
#: (the `6x6` seed-4 empty-tile test fails); tuned on fresh harsh foreign seed 145 and three matrix tests.
RIDGE_MOVE_MARGIN = 2.0
#: Offsets whose Fisher-transformed NCC is within this many of its standard errors of
#: an offset's belong to its ridge (:func:`ridge`).
RIDGE_TOLERANCE = 1.0
#: A ridge at least this long (pixels) ...
EDGE_MIN_LENGTH_PX = 6.0
#: ... and this many times longer than wide is an edge's (:func:`edge_ridge`).
EDGE_MIN_ELONGATION = 3.0
#: Least significance of a finer scale's peak that replaces a coarser scale's peak on an edge's ridge
#: (:func:`locating_scale`): the pipeline's least significance of a candidate pair
#: (``estimate.MIN_SIGNIFICANCE``).
LOCATING_MIN_SIGNIFICANCE = 0.5
#: Least significance of a pair whose sub-pixel fit, having left its box, is run again from the best match
#: on its ridge (:func:`refit_on_ridge`): the pipeline's confident significance
#: (``estimate.CONFIDENT_SIGNIFICANCE``); a weak pair's moved peak changes what the later rules keep.
REFIT_MIN_SIGNIFICANCE = 2.0
#: Candidate peaks kept per pair (strongest first).
N_CANDIDATES = 3
#: A second local maximum of the finest speckle scale's NCC at least this far from a pair's offset (pixels; nearer:
#: the same peak between whole pixels), and within :data:`PEAK_RADIUS_PX`, is a twin of its peak
#: (:func:`single_peak`) ...
TWIN_MIN_PX = 2.0
#: ... when its NCC reaches this fraction of the peak's. The strong wrong peaks measured between tiles that do not
#: overlap (foreign ``c185`` 213 slice 4's (2, 0)-(3, 0), 215 slice 3's (2, 3)-(3, 3)) have a twin 3.2 px away at
#: 0.99-1.03 of their NCC; none of the 25 right strong pairs between the tiles left for rigid pieces has any
#: local maximum 2-5 px away (session wrongpk).
TWIN_FRACTION = 0.5
#: Largest sub-pixel correction (pixels) the refinement may apply.
MAX_REFINEMENT_PX = 1.5
#: Largest lag (pixels) of the residual autocorrelation summed by :func:`correlation_area`.
CORRELATION_LAG_PX = 3
#: Lucas-Kanade iterations and convergence step (pixels).
LK_ITERATIONS = 12
LK_TOLERANCE_PX = 0.005
#: Fewest pixels trimmed from each side of a common region too narrow for the
#: usual trim (``ceil(MAX_REFINEMENT_PX) + 1``): it keeps what it can.
MIN_TRIM_PX = 1
#: An overlap narrower than this (pixels, its narrower side) is narrow: the usual sub-pixel fit, trimmed on
#: every side, cannot run on it (``2 MIN_TRIM_PX + 4``), and one more pixel of width adds 9 % or more to
#: its :func:`evidence`, more than the match loses a pixel or two off its peak. A pair whose evidence peak
#: is narrow, or whose match quality climbed from its peak ends on a narrow overlap, is placed at that
#: local maximum of match quality (:func:`climb_match_quality`) and fitted there without a trim across the
#: strip (:func:`_fit_window`): foreign 185 (grid 4x4, 10 % overlap, stage error +-8 px) read its overlaps
#: under 5 px 2 px too wide, always that way (session narrow65); foreign 201's under 4 px 0.77 px wide at
#: the climbed whole pixel (session narrow66).
NARROW_OVERLAP_PX = 2 * MIN_TRIM_PX + 4
#: Unlocated width (pixels, :func:`unlocated_width`) from which the stitch QC record counts an accepted pair
#: (``n_unlocated_links``): a peak ``w`` px wide leaves at most ``w - 2`` px on a 10 % overlap (the narrowest
#: scored overlap ~2 px), so a right pair over 2-4 px whose peak sits by the border leaves 0-2 px; on foreign
#: ``c185`` 215 and 209, 12 of the 13 candidate pairs leaving 3 px or more were 4.8-15 px off (session narrow).
MIN_UNLOCATED_COUNT_PX = 3.0
#: Narrowest common region (pixels) the sub-pixel fit runs on: the gradient across the strip needs three
#: columns.
MIN_FIT_WIDTH_PX = 3


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
    scores : tuple of EvidenceMap
        The :func:`evidence` map of the search at each speckle scale (for a
        joint search over several pairs, :mod:`linumpy.stitching.tile_search`).
    border_peak : bool
        Whether the offset's whole pixel lies on the border of the scored
        window (:func:`on_scored_border`): no local maximum of the match,
        whose optimum may lie beyond what was scored. Whether or not the
        sub-pixel fit then ran: on the stitching matrix (12 conditions, seeds
        0-4, 110, 113, 157, 159) all 44 such peaks were 12-38 px off, their
        fits converged on the window's edge; on foreign ``c185`` the fit
        cannot run on the 2 px overlap of the last scored row (session
        edgepeak).
    split_peak : bool
        Whether a confident pair's evidence peak has another local maximum within :data:`PEAK_RADIUS_PX`
        that beats it on their common overlap (:func:`split_peak`): the peak may have slid toward the larger
        overlap. Flagged, not moved (see :func:`split_peak`).
    settled : bool
        Whether ``offset``, chosen by a search and kept by the estimate, was settled from the pair's evidence
        (:func:`settled_search_offset`: the fit at the search's whole pixel left its box).
    unfit_peak : bool
        Whether the estimate refused the pair's strong own peak because its sub-pixel fit did not refine it
        (:func:`~linumpy.stitching.estimate.refused_unfit`).
    """

    offset: tuple[float, float]
    ncc: float
    significance: float = 0.0
    sigma_px: tuple[float, float] = PLACEHOLDER_SIGMA_PX
    candidates: tuple = field(default=())
    scores: tuple = field(default=(), compare=False, repr=False)
    border_peak: bool = False
    split_peak: bool = False
    settled: bool = False
    unfit_peak: bool = False


@dataclass(frozen=True)
class EvidenceMap:
    """:func:`evidence` of every integer offset ``centre + (dy, dx)``, ``|dy|, |dx| <= radius``.

    ``values[dy + radius, dx + radius]``; NaN where not scored. ``fisher``
    (same layout, optional) is the Fisher-transformed NCC, the match quality
    whatever the overlap's area (:func:`ridge`). ``tile_shape`` (optional) is
    the ``(y, x)`` shape of the registered tiles, which sets each offset's
    overlap (:func:`narrow_joint_offset`).
    """

    speckle_px: float
    centre: tuple[int, int]
    values: np.ndarray = field(compare=False, repr=False)
    fisher: np.ndarray | None = field(default=None, compare=False, repr=False)
    tile_shape: tuple[int, int] | None = None

    @property
    def radius(self) -> int:
        """Half-width of the searched window, pixels."""
        return (self.values.shape[0] - 1) // 2


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


def band_pass(image: np.ndarray, highpass_px: float = HIGHPASS_SIGMA_PX,
              speckle_px: float = SPECKLE_SIGMAS_PX[-1], detrend: bool = False) -> np.ndarray:
    """Log of the speckle-smoothed image minus its own heavy blur.

    Smoothing by ``speckle_px`` averages speckle grains; the log
    makes multiplicative effects (vignetting, speckle, tissue brightness)
    additive; subtracting the ``highpass_px`` blur removes slow variations. Non-positive values are clipped to 0.1 % of the 99th
    percentile before the log. With ``detrend``, the log's least-squares
    plane is removed before the blur (:func:`remove_plane`).
    """
    smoothed = ndimage.gaussian_filter(np.asarray(image, np.float64), speckle_px)
    floor = max(1e-3 * float(np.percentile(smoothed, 99)), 1e-12)
    logged = np.log(np.maximum(smoothed, floor))
    if detrend:
        logged = remove_plane(logged)
    return logged - ndimage.gaussian_filter(logged, highpass_px)


def remove_plane(image: np.ndarray) -> np.ndarray:
    """``image`` minus its least-squares plane ``c + u y + v x``.

    The high-pass subtracts a blur whose borders reflect the image, and the
    reflected blur of a ramp is not the ramp within about its width of the
    border: a slope left in the log (the flat field's residual across a
    common region, which differs between the two tiles) would survive the
    band-pass there, on a narrow region over most of it. A plane removed
    first passes nothing.

    Examples
    --------
    >>> yy, xx = np.mgrid[:4, :5]
    >>> float(np.abs(remove_plane(1.0 + 0.3 * yy - 0.2 * xx)).max()) < 1e-12
    True
    """
    # On a full grid the centred coordinates are orthogonal to each other and to the constant.
    y = np.arange(image.shape[0]) - (image.shape[0] - 1) / 2
    x = np.arange(image.shape[1]) - (image.shape[1] - 1) / 2
    slope_y = (image.sum(axis=1) @ y) / max(float(y @ y) * image.shape[1], 1e-12)
    slope_x = (image.sum(axis=0) @ x) / max(float(x @ x) * image.shape[0], 1e-12)
    return image - image.mean() - slope_y * y[:, None] - slope_x * x[None, :]


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


def _correlate(spectrum_x: np.ndarray, spectrum_y: np.ndarray, fft_shape: tuple[int, int], local: tuple[int, int],
               radius: int) -> np.ndarray:
    """Circular cross-correlation of two spectra at the offsets ``local +- radius``."""
    full = np.fft.irfft2(spectrum_x * np.conj(spectrum_y), fft_shape)
    rows = np.arange(local[0] - radius, local[0] + radius + 1) % fft_shape[0]
    cols = np.arange(local[1] - radius, local[1] + radius + 1) % fft_shape[1]
    return full[np.ix_(rows, cols)]


@dataclass(frozen=True)
class _OverlapCounts:
    """Spectra of two crops' supports (all ones) and their overlap area at each searched offset."""

    spectrum_a: np.ndarray
    spectrum_b: np.ndarray
    area: np.ndarray


@functools.lru_cache(maxsize=16)
def _overlap_counts(shape_a: tuple[int, int], shape_b: tuple[int, int], dtype_a: str, dtype_b: str,
                    fft_shape: tuple[int, int], local: tuple[int, int], radius: int) -> _OverlapCounts:
    """:class:`_OverlapCounts` of crops of these shapes (read-only arrays).

    They depend on the geometry only: every pair of a grid with the same overlap and search radius (all
    horizontal pairs, all vertical ones) and both speckle scales share them, computed once.
    """
    spectrum_a = np.fft.rfft2(np.ones(shape_a, dtype_a), fft_shape)
    spectrum_b = np.fft.rfft2(np.ones(shape_b, dtype_b), fft_shape)
    area = np.rint(_correlate(spectrum_a, spectrum_b, fft_shape, local, radius))
    for values in (spectrum_a, spectrum_b, area):
        values.flags.writeable = False
    return _OverlapCounts(spectrum_a, spectrum_b, area)


def ncc_map(
    image_a: np.ndarray, image_b: np.ndarray, nominal: tuple[int, int], radius: int,
    prepare: Callable[[np.ndarray], np.ndarray] | None = None,
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
    prepare : callable, optional
        Applied to the parts of both images that can overlap before scoring
        (e.g. :func:`band_pass`).

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
    if prepare is not None:
        a, b = prepare(a), prepare(b)
    # offset between the crops: crop_b pixel q sits on crop_a pixel q + local
    local = tuple(n - sa.start + sb.start for n, sa, sb in zip(nominal, slices_a, slices_b))
    fft_shape = tuple(sa + sb + 2 * radius for sa, sb in zip(a.shape, b.shape))
    ones = _overlap_counts(a.shape, b.shape, a.dtype.str, b.dtype.str, fft_shape, local, radius)
    spectra = {name: np.fft.rfft2(x, fft_shape) for name, x in (("a", a), ("a2", a * a), ("b", b), ("b2", b * b))}
    spectra["1a"], spectra["1b"] = ones.spectrum_a, ones.spectrum_b

    def correlate(x: str, y: str) -> np.ndarray:
        return _correlate(spectra[x], spectra[y], fft_shape, local, radius)

    area = ones.area
    with np.errstate(invalid="ignore", divide="ignore"):
        sum_a, sum_b = correlate("a", "1b"), correlate("1a", "b")
        covariance = correlate("a", "b") - sum_a * sum_b / area
        variance_a = correlate("a2", "1b") - sum_a**2 / area
        variance_b = correlate("1a", "b2") - sum_b**2 / area
        ncc = covariance / np.sqrt(np.maximum(variance_a * variance_b, 0))
    ncc[(area < 1) | ~np.isfinite(ncc)] = np.nan
    return np.clip(ncc, -1, 1), np.maximum(area, 0)


def local_maxima(values: np.ndarray) -> list[tuple[int, int]]:
    """Indices of the 8-neighbourhood local maxima of ``values`` (NaN = -inf), strongest first."""
    filled = np.where(np.isfinite(values), values, -np.inf)
    is_peak = (filled == ndimage.maximum_filter(filled, size=3, mode="constant", cval=-np.inf))
    is_peak &= np.isfinite(filled)
    peaks = np.argwhere(is_peak)
    order = np.argsort(-filled[is_peak], kind="stable")
    return [tuple(int(v) for v in peaks[k]) for k in order]


def evidence(ncc: np.ndarray, area: np.ndarray, speckle_px: float) -> np.ndarray:
    """Fisher-transformed NCC times the square root of the independent pixels of each overlap.

    ``atanh(ncc)`` has standard error ``1 / sqrt(n)`` for ``n`` independent
    pixels; the pixels of images smoothed by ``speckle_px`` are correlated
    over about ``4 pi speckle_px ** 2``, so ``n`` is the overlap area divided
    by that. A high NCC over a sliver of overlap is weak evidence; this ranks
    offsets by how unlikely their NCC is by chance (NaN where ``ncc`` is).
    """
    n_independent = np.maximum(area, 0) / (4 * np.pi * speckle_px**2)
    return fisher_transform(ncc) * np.sqrt(n_independent)


def fisher_transform(ncc: np.ndarray) -> np.ndarray:
    """``atanh(ncc)``, clipped away from +-1 (NaN where ``ncc`` is)."""
    return np.arctanh(np.clip(ncc, -1 + 1e-6, 1 - 1e-6))


def on_scored_border(evidence_map: EvidenceMap, index: tuple[int, int]) -> bool:
    """Whether the offset at ``index`` lies on the border of what ``evidence_map`` scored.

    One of its 8 neighbours is outside the searched window or was not scored (its overlap below
    :data:`MIN_OVERLAP_FRACTION` of the nominal one). The best offset there is a maximum of the scored
    offsets but not a local maximum of the match: the match may keep rising beyond the border, where the
    truth lies when the tiles overlap by less than the scored sliver or not at all.

    Examples
    --------
    >>> values = np.zeros((5, 5))
    >>> values[:, 4] = np.nan
    >>> [on_scored_border(EvidenceMap(1.0, (0, 0), values), index) for index in [(2, 3), (2, 2), (0, 2)]]
    [True, False, True]
    """
    values = evidence_map.values
    if min(index) < 1 or any(i + 1 >= n for i, n in zip(index, values.shape)):
        return True
    return not bool(np.isfinite(values[index[0] - 1:index[0] + 2, index[1] - 1:index[1] + 2]).all())


def unlocated_width(evidence_map: EvidenceMap, index: tuple[int, int], axis: int) -> float:
    """How far (pixels along ``axis``, the step) the match leaves the offset at ``index`` unlocated toward the
    border of the scored window: 0 unless the offsets whose match cannot be told from the peak's reach it.

    The offsets connected to ``index`` (8-neighbours) whose Fisher NCC is at least the peak's minus
    :data:`RIDGE_TOLERANCE` of their own standard errors (``1 / sqrt(n)``, ``n`` the independent pixels
    of their overlap, as in :func:`evidence`; the narrower overlap's, larger, decides): where they reach
    the border of the scored window (:func:`on_scored_border`), the match may be as good there and beyond,
    and the peak owes its place along the step to the area term of :func:`evidence`, which grows with the
    overlap. The width is the largest distance along ``axis`` from ``index`` to such a border offset.
    Foreign ``c185`` seed 215 slice 3, (2, 3)-(3, 3): NCC 0.90 along an oblique structure from the peak
    (a 7.8 px overlap, significance 6.89) to the last scored row (0.90-0.93), the truth a 1.5 px overlap
    just beyond it: 6 px unlocated, the peak 6.7 px off; the right pairs over 2-4 px overlaps whose peak
    sits by the border leave 0-2 px (session narrow).

    Examples
    --------
    >>> fisher = np.full((7, 7), 0.2)
    >>> fisher[1:, 3] = 1.0                      # a ridge down to the last row, then unscored
    >>> evidence_map = EvidenceMap(1.0, (0, 0), fisher * 30, fisher)
    >>> unlocated_width(evidence_map, (2, 3), 0)
    4.0
    >>> fisher[5, 3] = 0.2                       # the match drops before the border
    >>> unlocated_width(EvidenceMap(1.0, (0, 0), fisher * 30, fisher), (2, 3), 0)
    0.0
    """
    fisher, values = evidence_map.fisher, evidence_map.values
    if fisher is None or not np.isfinite(fisher[index]):
        return 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        standard_error = np.abs(fisher / values)
    within = np.isfinite(values) & (fisher >= fisher[index] - RIDGE_TOLERANCE * np.nan_to_num(standard_error))
    labels, _ = ndimage.label(within, structure=np.ones((3, 3)))
    members = np.argwhere(labels == labels[index])
    widths = [abs(int(point[axis]) - index[axis]) for point in members
              if on_scored_border(evidence_map, (int(point[0]), int(point[1])))]
    return float(max(widths, default=0))


def peak_significance(score: np.ndarray, peak: tuple[int, int], radius: int = PEAK_RADIUS_PX) -> float:
    """How far ``score[peak]`` stands above the best local maximum farther than ``radius``.

    ``score`` is the :func:`evidence` map; rivals below 0 count as 0.
    """
    yy, xx = np.indices(score.shape)
    away = (yy - peak[0]) ** 2 + (xx - peak[1]) ** 2 > radius**2
    rivals = [score[p] for p in local_maxima(np.where(away, score, np.nan))[:1]]
    return float(score[peak] - max(rivals + [0.0]))


def peak_spread(score: np.ndarray, peak: tuple[int, int], radius: int = PEAK_RADIUS_PX) -> tuple[float, float]:
    """Width ``(y, x)`` (pixels) of the evidence peak at ``peak``: how well it localises the offset.

    The weighted standard deviation of the integer offsets within ``radius``
    of ``peak``, each weighted by ``exp(e * (score - e))`` with ``e`` the
    evidence at the peak (at least 1): the matched filter's likelihood of
    each offset relative to the peak's. A sharp peak gives ~0; a broad one
    (smooth content, a ridge along an edge) about its half-width. Over the
    kept pairs of the stitching matrix it predicts a pair's error where the
    sub-pixel fit's standard error does not (``docs/stitching.md``).
    """
    if not np.isfinite(score[peak]):
        return (float("nan"), float("nan"))
    yy, xx = np.indices(score.shape)
    near = ((yy - peak[0]) ** 2 + (xx - peak[1]) ** 2 <= radius**2) & np.isfinite(score)
    sharpness = max(float(score[peak]), 1.0)
    weights = np.exp(sharpness * (score[near] - score[peak]))
    weights /= weights.sum()
    return (float(np.sqrt(np.sum(weights * (yy[near] - peak[0]) ** 2))),
            float(np.sqrt(np.sum(weights * (xx[near] - peak[1]) ** 2))))


def _offset_index(evidence_map: EvidenceMap, offset: tuple[float, float]) -> tuple[int, int] | None:
    """The (rounded) ``offset``'s index in ``evidence_map``; ``None`` outside the map."""
    index = tuple(int(v) for v in np.rint(np.asarray(offset) - evidence_map.centre) + evidence_map.radius)
    return index if all(0 <= v < n for v, n in zip(index, evidence_map.values.shape)) else None


def _map_at(scores: tuple, offset: tuple[float, float]) -> tuple[EvidenceMap, tuple[int, int]] | None:
    """The pair's :class:`EvidenceMap` with the larger evidence at the (rounded) ``offset``, and
    the offset's index in it; ``None`` where no map scores it (no overlap)."""
    best = None
    for evidence_map in scores:
        index = _offset_index(evidence_map, offset)
        if index is not None and np.isfinite(evidence_map.values[index]) \
                and (best is None or evidence_map.values[index] > best[0].values[best[1]]):
            best = (evidence_map, index)
    return best


def offset_spread(scores: tuple, offset: tuple[float, float]) -> tuple[float, float]:
    """:func:`peak_spread` of a pair's evidence at its (rounded) ``offset``.

    ``scores`` are the pair's :class:`EvidenceMap` s; the speckle scale with
    the larger evidence at the offset is used. NaN where no map scores it
    (no overlap).
    """
    found = _map_at(scores, offset)
    return (float("nan"), float("nan")) if found is None else peak_spread(found[0].values, found[1])


def single_peak(scores: tuple, offset: tuple[float, float]) -> bool:
    """Whether a pair's match at its (rounded) ``offset`` is one peak at the finest speckle scale.

    A match between tiles that overlap is a speckle match: its NCC falls within a speckle of the true offset and
    rises nowhere else nearby. A second local maximum of the finest scale's NCC (the map of the smallest
    ``speckle_px`` with Fisher values), :data:`TWIN_MIN_PX` to :data:`PEAK_RADIUS_PX` from the offset, with at
    least :data:`TWIN_FRACTION` of its NCC, is a twin: the texture matches at two offsets a few pixels apart, the
    signature of a coincidence (the strong wrong peaks between tiles that do not overlap, session wrongpk).
    ``False`` where that map does not score the offset or its NCC there is not positive (nothing to tell).
    """
    maps = [m for m in scores if m.fisher is not None]
    if not maps:
        return False
    finest = min(maps, key=lambda m: m.speckle_px)
    index = _offset_index(finest, offset)
    if index is None or not finest.fisher[index] > 0:
        return False
    peak = np.tanh(finest.fisher[index])
    for other in local_maxima(finest.fisher):
        distance = float(np.hypot(*(np.asarray(other) - index)))
        if TWIN_MIN_PX <= distance <= PEAK_RADIUS_PX and np.tanh(finest.fisher[other]) >= TWIN_FRACTION * peak:
            return False
    return True


def offset_unlocated(scores: tuple, offset: tuple[float, float]) -> float:
    """:func:`unlocated_width` of a pair's evidence at its (rounded) ``offset``, along the step (the larger
    axis of the maps' centre, the stage's offset); the map with the larger evidence there (0 where none
    scores it)."""
    found = _map_at(scores, offset)
    if found is None:
        return 0.0
    return unlocated_width(found[0], found[1], int(np.argmax(np.abs(found[0].centre))))


def _ridge_members(evidence_map: EvidenceMap, index: tuple[int, int]) -> np.ndarray | None:
    """Boolean mask of the ridge through ``index`` (see :func:`ridge`); ``None`` where the
    map has no Fisher values or the offset no positive match."""
    fisher, score = evidence_map.fisher, evidence_map.values
    if fisher is None or not np.isfinite(fisher[index]) or fisher[index] <= 0 or score[index] <= 0:
        return None
    standard_error = fisher[index] / score[index]
    near = np.nan_to_num(fisher, nan=-np.inf) >= fisher[index] - RIDGE_TOLERANCE * standard_error
    labels, _ = ndimage.label(near, structure=np.ones((3, 3)))
    return labels == labels[index]


def _ridge_neighbours(members: np.ndarray, point: tuple[int, int]) -> list[tuple[int, int]]:
    """The members of a ridge mask (:func:`_ridge_members`) among the 8 neighbours of ``point``."""
    return [(point[0] + dy, point[1] + dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
            if (dy or dx) and 0 <= point[0] + dy < members.shape[0] and 0 <= point[1] + dx < members.shape[1]
            and members[point[0] + dy, point[1] + dx]]


def _common_gain(tile_a: np.ndarray, tile_b: np.ndarray, offset_1: tuple[int, int], offset_2: tuple[int, int],
                 speckle_px: float) -> float:
    """Standard errors by which ``offset_2`` matches better than ``offset_1`` on their common overlap.

    The difference of the Fisher NCC of ``b`` on ``a`` at the two integer offsets over the pixels of ``a``
    both overlaps cover, times the square root of their independent pixels (as in :func:`evidence`);
    ``-inf`` under 2 px a side. The region is cropped from both tiles first and the crops band-passed
    identically (as :func:`refine_subpixel`): its borders are filtered alike at both offsets, whereas in
    the search crops a smaller overlap lies on both tiles' edges and a larger one on one tile's interior.
    """
    first = overlap_slices(tile_a.shape, tile_b.shape, offset_1)
    second = overlap_slices(tile_a.shape, tile_b.shape, offset_2)
    if first is None or second is None:
        return -np.inf
    common = tuple(slice(max(s.start, t.start), min(s.stop, t.stop)) for s, t in zip(first[0], second[0]))
    sizes = [s.stop - s.start for s in common]
    if min(sizes) < 2:
        return -np.inf
    prepare = functools.partial(band_pass, highpass_px=highpass_sigma(min(sizes)), speckle_px=speckle_px)
    crop_a = prepare(tile_a[common])
    here, there = (float(fisher_transform(np.array(normalized_cross_correlation(
        crop_a, prepare(tile_b[tuple(slice(s.start - d, s.stop - d) for s, d in zip(common, offset))])))))
        for offset in (offset_1, offset_2))
    return (there - here) * float(np.sqrt(np.prod(sizes) / (4 * np.pi * speckle_px**2)))


def match_on_common_overlap(evidence_map: EvidenceMap, index: tuple[int, int], tile_a: np.ndarray,
                            tile_b: np.ndarray, confident: bool = False) -> tuple[int, int]:
    """The offset of the ridge through ``index`` that matches best, two offsets compared on the overlap they share.

    The evidence of :func:`evidence` grows with the square root of the overlap's area, so along a ridge
    (:func:`ridge`: offsets the match quality cannot tell apart, an edge or striations crossing the
    overlap) its peak slides to the end where the overlap is largest. Where the ridges of a slice's
    overlaps run the same way (diagonal edges, an oblique fibre bundle) every pair slides the same way, the
    loops close and nothing flags it (fresh harsh foreign seed 145: pairs 2.6-12 px off, tiles up to 4.6 px).
    Comparing two offsets on the pixels of ``tile_a`` that both overlaps cover (:func:`_common_gain`)
    gives both the same data and the same noise: starting from ``index``, the neighbouring ridge member
    (8-neighbours) that beats the current offset by the most standard errors there becomes the current
    one, while one beats it; the walk's end replaces ``index`` only if it beats it by more than
    :data:`RIDGE_MOVE_MARGIN`. Where the overlap at ``index`` is narrow (:data:`NARROW_OVERLAP_PX`) the
    offset is instead the local maximum of match quality climbed from it (:func:`climb_match_quality`):
    there the peak owes its place to the area term, which grows by a sixth from a 3 px strip to a 4 px
    one, and the common overlap cannot tell: band-passed alone, a strip that narrow loses its content
    across the strip to the 3 px high-pass (foreign 185 slice 3, (3, 0)-(3, 1), a 3 px true overlap: the
    search's Fisher NCC highest at the truth, the evidence 2 px wider, and the common overlap preferring
    the wider offset by 0.38 standard errors). The walk climbs one pixel at a time: two neighbours are compared on
    nearly the whole of both overlaps, whereas a jump along the ridge compares two offsets on the
    narrower one's overlap only, and the best of many such jumps overshoots (fresh harsh foreign seed
    146, slice 0, (0, 0)-(1, 0): from its peak 2.5 px short of the truth, a jump of 4.5 px to the ridge's
    narrow end, 1.9 px past the truth, beat the peak by 2.07 standard errors on a 7 px overlap while the
    truth's offset beat it by 0.86 only; the peak's neighbours lose to it, so the pair stays there).
    On a round peak its members are one or two pixels from it and the comparison is nearly that of
    their NCC; the sub-pixel fit follows. A ``confident`` pair (significance at least
    :data:`REFIT_MIN_SIGNIFICANCE`) whose peak is not narrow but whose match quality climbed from it ends
    on a narrow overlap is placed at that end too: the area term pulls a peak wider than the narrow
    strip's match by 2-3 px, out of the reach of the walk and of the sub-pixel fit's box (foreign 192
    slice 0 (3, 2)-(3, 3), a 5.6 px true overlap, peak 1.4 px wide; 201 slice 4 tiles 1.07 -> 0.96 px;
    session narrow66). Not a weak pair's: the climb of a noisy map moves it by a pixel or more the wrong
    way (185 slice 3 (0, 1)-(0, 2), significance 1.08: -0.29 -> +1.01 px).

    Parameters
    ----------
    evidence_map : EvidenceMap
        The winning speckle scale's map (with its Fisher values).
    index : tuple of int
        The evidence peak's index in the map.
    tile_a, tile_b : np.ndarray
        The registered projections.
    confident : bool
        Whether the pair is confident (see above).

    Returns
    -------
    tuple of int
        The chosen index (``index`` itself off a ridge).
    """
    members = _ridge_members(evidence_map, index)
    if members is None:
        return index

    def offset(point: tuple[int, int]) -> tuple[int, int]:
        return tuple(c + p - evidence_map.radius for c, p in zip(evidence_map.centre, point))

    if _overlap_width(tile_a.shape, tile_b.shape, offset(index)) < NARROW_OVERLAP_PX:
        return climb_match_quality(evidence_map, index)
    if confident:
        climbed = climb_match_quality(evidence_map, index)
        if 0 < _overlap_width(tile_a.shape, tile_b.shape, offset(climbed)) < NARROW_OVERLAP_PX:
            return climbed

    current, visited = index, {index}
    while True:
        gains = {point: _common_gain(tile_a, tile_b, offset(current), offset(point), evidence_map.speckle_px)
                 for point in _ridge_neighbours(members, current) if point not in visited}
        best = max(gains, key=gains.get, default=None)
        if best is None or gains[best] <= 0:
            break
        current = best
        visited.add(best)
    if current != index and _common_gain(tile_a, tile_b, offset(index), offset(current),
                                         evidence_map.speckle_px) <= RIDGE_MOVE_MARGIN:
        return index
    return current


def split_peak(evidence_map: EvidenceMap, index: tuple[int, int], tile_a: np.ndarray, tile_b: np.ndarray,
               ) -> tuple[int, int] | None:
    """The other local maximum of a split evidence peak that matches better than the peak at ``index``;
    ``None`` where none beats it by more than :data:`RIDGE_MOVE_MARGIN`.

    The evidence grows with the square root of the overlap's area, so of two local maxima a few pixels
    apart on one structure the one with the larger overlap wins, although the other may match better.
    Within :data:`PEAK_RADIUS_PX` the other maximum is no rival (:func:`peak_significance` does not see
    it) and, off the peak's own ridge, :func:`match_on_common_overlap` cannot reach it. Each local
    maximum of the map within :data:`PEAK_RADIUS_PX` of ``index`` is compared with it on their common
    overlap (:func:`_common_gain`); the best is returned when it beats it by more than
    :data:`RIDGE_MOVE_MARGIN` standard errors. Foreign ``ha`` 454 slice 1, (0, 0)-(1, 0): at the 0.7 px
    scale two maxima 4.4 px apart along the sample's outline, the chosen one 4.4 px off at significance
    4.7 (as a rival, the other would leave it 2.3), the truth's beating it by 2.35 standard errors on
    their common overlap (session nominal10's measurement; session slide10).

    :func:`register_pair` flags such a pair (``split_peak``) and does not move it: moved (its significance
    then no more than its gain, 2.35), that pair was refused by its depth ranges, which repeat the slid peak
    of a depth-constant outline, whereas kept at its peak the loop closure moves it to the truth (ha 454
    slice 1 tiles 0.34 / 0.54 px kept, 3.67 / 6.40 moved; session slide10).

    Parameters
    ----------
    evidence_map : EvidenceMap
        The winning speckle scale's map.
    index : tuple of int
        The evidence peak's index in the map.
    tile_a, tile_b : np.ndarray
        The registered projections.

    Returns
    -------
    tuple of int or None
        The better maximum's index.
    """
    def offset(point: tuple[int, int]) -> tuple[int, int]:
        return tuple(int(c + p - evidence_map.radius) for c, p in zip(evidence_map.centre, point))

    near = [point for point in local_maxima(evidence_map.values)
            if point != index and np.hypot(point[0] - index[0], point[1] - index[1]) <= PEAK_RADIUS_PX]
    gains = {point: _common_gain(tile_a, tile_b, offset(index), offset(point), evidence_map.speckle_px)
             for point in near}
    best = max(gains, key=gains.get, default=None)
    return None if best is None or gains[best] <= RIDGE_MOVE_MARGIN else best


def climb_match_quality(evidence_map: EvidenceMap, index: tuple[int, int]) -> tuple[int, int]:
    """The local maximum of match quality (the map's Fisher NCC) reached from ``index`` by steps to the
    best of its 8 neighbours while that one matches better.

    The match quality is per pixel: unlike the :func:`evidence` it does not grow with the overlap's area,
    so on a narrow overlap (:data:`NARROW_OVERLAP_PX`) the climb undoes the area term's pull from the
    match toward the larger overlap. Each step raises the Fisher NCC above the peak's, so every offset it
    reaches is on the peak's ridge (:func:`ridge`).
    """
    fisher = np.nan_to_num(evidence_map.fisher, nan=-np.inf)
    current = index
    while True:
        neighbours = [(current[0] + dy, current[1] + dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                      if 0 <= current[0] + dy < fisher.shape[0] and 0 <= current[1] + dx < fisher.shape[1]]
        best = max(neighbours, key=lambda point: fisher[point])
        if fisher[best] <= fisher[current]:
            return current
        current = best


def _overlap_width(shape_a: tuple[int, int], shape_b: tuple[int, int], offset: tuple[int, int]) -> int:
    """Width (pixels) of the overlap of two tiles at an integer offset: its narrower side (0 without one)."""
    slices = overlap_slices(shape_a, shape_b, offset)
    return 0 if slices is None else min(s.stop - s.start for s in slices[0])


def narrow_joint_offset(offset: tuple[int, int], scores: tuple) -> tuple[int, int]:
    """A pair's integer offset chosen by a joint search over several pairs, on a narrow overlap climbed to
    the local maximum of match quality (:func:`climb_match_quality`), before its sub-pixel fit.

    A joint search ranks offsets by the sum of its pairs' :func:`evidence`, whose area term pulls a narrow
    overlap wider as it pulls a pair's own peak (:data:`NARROW_OVERLAP_PX`). ``scores`` are the pair's
    :class:`EvidenceMap` s (the one with the larger evidence at ``offset``). ``offset`` itself where the
    overlap there is at least :data:`NARROW_OVERLAP_PX` wide or empty, where no map scores it or knows
    the tiles' shape, and where its match is not positive (as :func:`match_on_common_overlap`).
    """
    found = _map_at(scores, offset)
    if found is None or found[0].tile_shape is None:
        return offset
    evidence_map, index = found
    if not 0 < _overlap_width(evidence_map.tile_shape, evidence_map.tile_shape, offset) < NARROW_OVERLAP_PX \
            or _ridge_members(evidence_map, index) is None:
        return offset
    climbed = climb_match_quality(evidence_map, index)
    return tuple(int(c + p - evidence_map.radius) for c, p in zip(evidence_map.centre, climbed))


def best_match_on_ridge(evidence_map: EvidenceMap, index: tuple[int, int]) -> tuple[int, int]:
    """The member of the ridge through ``index`` (:func:`ridge`) whose match quality (Fisher NCC) is the best.

    The match quality does not grow with the overlap's area as the evidence does: along a short ridge
    the evidence peak sits toward the larger overlap, the best match where the tiles agree best per
    pixel. ``index`` itself off a ridge, and on an edge's ridge (:func:`edge_ridge`), along which no
    offset is located and the solve uses the pair across the ridge only.
    """
    members = _ridge_members(evidence_map, index)
    if members is None or _edge_shaped(*ridge(evidence_map, index)[:2]):
        return index
    quality = np.where(members, evidence_map.fisher, -np.inf)
    return tuple(int(v) for v in np.unravel_index(np.argmax(quality), quality.shape))


def refit_on_ridge(evidence_map: EvidenceMap, index: tuple[int, int], tile_a: np.ndarray, tile_b: np.ndarray,
                   ) -> tuple[tuple[int, int], tuple[float, float], tuple[float, float]] | None:
    """The sub-pixel fit from the ridge's best match (:func:`best_match_on_ridge`), for a pair whose fit
    from ``index`` left its box.

    A fit that leaves its box (more than :data:`MAX_REFINEMENT_PX`) says the match's optimum is not
    at ``index``; along a short ridge the evidence peak and the walk (:func:`match_on_common_overlap`,
    which moves only on a clear gain) stop toward the larger overlap, 1.5-2 px from the truth
    (foreign harsh A 161 slice 4, (1, 0)-(1, 1): 1.85 px off at its whole pixel, the fit heading
    for the truth but leaving its box; from the best match 0.40 px off). Returns the member's index,
    the refined offset and its standard error; ``None`` when the best match is ``index`` or its own
    fit fails too. Not where the fit could not run (a region too narrow or ill-conditioned, e.g.
    striations along one direction): that says nothing of where the optimum lies, and on
    ``tests/test_stitching_ridge_drift.py``'s diagonal texture the refit took pairs at the truth 1 px
    off.
    """
    member = best_match_on_ridge(evidence_map, index)
    if member == index:
        return None
    offset = tuple(c + p - evidence_map.radius for c, p in zip(evidence_map.centre, member))
    refined, sigma = refine_subpixel(tile_a, tile_b, offset)
    if refined == (float(offset[0]), float(offset[1])):
        return None
    return member, refined, sigma


def ridge(evidence_map: EvidenceMap, index: tuple[int, int]) -> tuple[float, float, np.ndarray]:
    """Length, width (pixels) and direction of the ridge of match quality through ``index``.

    The ridge is the connected set of offsets (8-neighbours) whose Fisher-transformed
    NCC is at least that of ``index`` minus :data:`RIDGE_TOLERANCE` of its standard
    errors (``1 / sqrt(n)``, ``n`` the independent pixels of the overlap, as in
    :func:`evidence`): the offsets whose match the data cannot tell from this one.
    Its length and width are those of a uniform bar with the same second moments
    (``sqrt(12)`` times the standard deviation along and across its principal axis);
    the direction is the unit ``(y, x)`` vector along it, with ``y >= 0``. An edge
    crossing the overlap makes a long thin ridge (the aperture problem); speckle or
    texture a short round one.
    """
    members = _ridge_members(evidence_map, index)
    if members is None:
        return 0.0, 0.0, np.array([1.0, 0.0])
    points = np.argwhere(members).astype(float)
    variances, axes = np.linalg.eigh(np.cov(points.T, bias=True) if len(points) > 1 else np.zeros((2, 2)))
    direction = axes[:, 1] if axes[0, 1] > 0 or (axes[0, 1] == 0 and axes[1, 1] > 0) else -axes[:, 1]
    length, width = (float(np.sqrt(12 * max(v, 0.0))) for v in variances[::-1])
    return length, width, direction


def edge_ridge(scores: tuple, offset: tuple[float, float]) -> tuple[tuple[float, float], float] | None:
    """Direction ``(y, x)`` and length (pixels) of the edge's ridge a pair's evidence at ``offset`` lies on,
    or ``None``.

    The :func:`ridge` through the offset (on the map of :func:`offset_spread`)
    is an edge's when it is at least :data:`EDGE_MIN_LENGTH_PX` long and
    :data:`EDGE_MIN_ELONGATION` times longer than wide (a width below 1 px
    counts as 1): along it the overlap does not tell one offset from another.
    """
    found = _map_at(scores, offset)
    if found is None:
        return None
    length, width, direction = ridge(*found)
    if not _edge_shaped(length, width):
        return None
    return (float(direction[0]), float(direction[1])), length


def _edge_shaped(length: float, width: float) -> bool:
    """Whether a :func:`ridge` of this length and width (pixels) is an edge's (see :func:`edge_ridge`)."""
    return length >= EDGE_MIN_LENGTH_PX and length >= EDGE_MIN_ELONGATION * max(width, 1.0)


def locating_scale(maps: list[EvidenceMap], peaks: list[tuple[int, int]], significances: list[float]) -> int:
    """The speckle scale whose peak locates the offset: the most significant one, unless its peak lies on
    an edge's ridge and a finer scale's significant peak lies on that ridge without being on one itself.

    An edge crossing the overlap (the sample's outline, a fibre bundle) makes a long thin ridge of the
    match quality at a coarse scale: the offsets along it differ only by the evidence's growth with the
    overlap's area, and both the peak and the ridge walk (:func:`match_on_common_overlap`) find a place
    along the ridge that the data do not tell (foreign harsh A 159, slice 2, (2, 0)-(2, 1): the coarse
    peak 3 px short of the truth along the outline, its walk 2 px past it, significance 0.85). A finer
    scale whose peak is a member of that ridge and round agrees across the edge and also locates the
    offset along it, by the texture the coarse smoothing averaged away (there: at the truth's whole
    pixel, significance 0.81). The finer peak then replaces the edge's: the two are one match, seen
    sharply and blurred. Only a finer scale: smoothing adds no detail, so a coarse peak that is round
    where the fine one is a ridge is the noise of the blur (159, slice 0, (0, 0)-(1, 0): 4.7 px off
    along the fine ridge), and only a significant one (at least :data:`LOCATING_MIN_SIGNIFICANCE`): a
    fine peak with an equal rival locates nothing.

    Parameters
    ----------
    maps : list of EvidenceMap
        The evidence map of each speckle scale (same centre and radius), with Fisher values.
    peaks : list of tuple of int
        Each map's best peak (index in the map).
    significances : list of float
        Each peak's :func:`peak_significance`.

    Returns
    -------
    int
        Index of the scale to take the peak from.
    """
    best = int(np.argmax(significances))
    members = _ridge_members(maps[best], peaks[best])
    if members is None or not _edge_shaped(*ridge(maps[best], peaks[best])[:2]):
        return best
    located = [k for k, (evidence_map, peak) in enumerate(zip(maps, peaks))
               if evidence_map.speckle_px < maps[best].speckle_px and members[peak]
               and significances[k] >= LOCATING_MIN_SIGNIFICANCE
               and not _edge_shaped(*ridge(evidence_map, peak)[:2])]
    return located[0] if located else best


def correlation_area(residual: np.ndarray, max_lag: int = CORRELATION_LAG_PX) -> float:
    """Area (pixels) over which the values of a 2D residual are correlated.

    The sum of its autocorrelation coefficients over lags up to ``max_lag``
    per axis (1 for white noise): ``n`` correlated pixels carry the
    information of ``n / area`` independent ones. Measured on the residual
    itself, so it holds whatever the speckle grain and the smoothing.
    """
    centred = residual - residual.mean()
    energy = float(np.sum(centred**2))
    if energy == 0:
        return 1.0
    size_y, size_x = centred.shape
    total = 0.0
    for dy in range(-max_lag, max_lag + 1):
        for dx in range(-max_lag, max_lag + 1):
            a = centred[max(0, dy):size_y + min(0, dy), max(0, dx):size_x + min(0, dx)]
            b = centred[max(0, -dy):size_y + min(0, -dy), max(0, -dx):size_x + min(0, -dx)]
            total += float(np.sum(a * b)) / energy
    return max(total, 1.0)


def _shifted(image: np.ndarray, shift: np.ndarray) -> np.ndarray:
    return ndimage.shift(image, shift, order=3, mode="nearest")


def _fit_subpixel(
    tile_a: np.ndarray, tile_b: np.ndarray, offset: tuple[int, int],
    speckle_px: float = REFINE_SPECKLE_PX,
) -> tuple[tuple[float, float], tuple[float, float], bool]:
    """Refine an integer offset by a symmetric Lucas-Kanade fit on the common region.

    Both crops are band-passed identically; ``b`` shifted by ``-d / 2`` is
    matched to ``a`` shifted by ``+d / 2`` (gain and mean free) by
    Gauss-Newton steps on ``d``. The warped regions are compared on
    :func:`_fit_window` (trimmed of what the warp pulls in from outside; a
    narrow region, under :data:`NARROW_OVERLAP_PX`, is not trimmed across the
    strip, down to :data:`MIN_FIT_WIDTH_PX`). A narrow region's fit keeps the
    unrefined standard error of 1 px: its residuals understate its error
    (foreign 185 slice 0: fitted 3-5 px overlaps at 0.06-0.13 px sent the joint
    search elsewhere, tiles 0.70 -> 1.87 px; session narrow66).

    Parameters
    ----------
    tile_a, tile_b : np.ndarray
        Flat-fielded (not band-passed) projections.
    offset : tuple of int
        Integer offset to refine.
    speckle_px : float
        Speckle smoothing of the band-pass.

    Returns
    -------
    offset : tuple of float
        Refined offset (the integer one if the fit fails or moves more than
        :data:`MAX_REFINEMENT_PX`).
    sigma : tuple of float
        Standard error of each coordinate (1 px when not refined).
    left_box : bool
        Whether the fit moved more than :data:`MAX_REFINEMENT_PX` (the integer offset returned): the
        match's optimum lies elsewhere, unlike a region too narrow or ill-conditioned to fit.
    """
    unrefined = ((float(offset[0]), float(offset[1])), PLACEHOLDER_SIGMA_PX, False)
    slices = overlap_slices(tile_a.shape, tile_b.shape, offset)
    if slices is None or min(tile_a[slices[0]].shape) < MIN_FIT_WIDTH_PX:
        return unrefined
    highpass_px = highpass_sigma(min(tile_a[slices[0]].shape))
    crop_a = band_pass(tile_a[slices[0]], highpass_px, speckle_px, detrend=True)
    crop_b = band_pass(tile_b[slices[1]], highpass_px, speckle_px, detrend=True)
    inner = _fit_window(crop_a.shape)
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
            return unrefined[0], unrefined[1], True
        if np.max(np.abs(step)) < LK_TOLERANCE_PX:
            break
    refined = (float(offset[0] + shift[0]), float(offset[1] + shift[1]))
    if min(crop_a.shape) < NARROW_OVERLAP_PX:
        return refined, unrefined[1], False
    # Neighbouring residuals are correlated (speckle grain, smoothing): fewer independent samples.
    area = correlation_area(residual.reshape(warped_a.shape))
    covariance = np.mean(residual**2) * area * np.linalg.inv(hessian)
    sigma = tuple(float(np.sqrt(max(v, 0.0))) for v in np.diag(covariance))
    return refined, sigma, False


def _fit_window(shape: tuple[int, int]) -> tuple[slice, slice]:
    """The part of a common region of this ``(y, x)`` shape that :func:`_fit_subpixel` compares.

    Each side loses what the warp may pull in from outside (``ceil(MAX_REFINEMENT_PX) + 1`` pixels), fewer
    (down to :data:`MIN_TRIM_PX`) where the region is narrower than 10 px. A narrow region
    (:data:`NARROW_OVERLAP_PX`) keeps its whole width across the strip: trimmed there it would lose what
    locates the offset along the step, and its whole pixel, read from a match biased toward the wider
    overlap, is no better (foreign 201: overlaps under 4 px 0.77 px wide at the whole pixel, 0.18 px
    fitted; session narrow66).
    """
    width = min(shape)
    margins = [min(int(np.ceil(MAX_REFINEMENT_PX)) + 1, max(MIN_TRIM_PX, (n - 4) // 2)) for n in shape]
    if width >= NARROW_OVERLAP_PX:
        return tuple(slice(min(margins), -min(margins)) for _ in shape)
    return tuple(slice(None) if n == width else slice(m, -m) for n, m in zip(shape, margins))


def _index_offset(evidence_map: EvidenceMap, index: tuple[int, int]) -> tuple[int, int]:
    """The integer offset of ``index`` in ``evidence_map``."""
    return tuple(int(c + p - evidence_map.radius) for c, p in zip(evidence_map.centre, index))


def settle_peak(evidence_map: EvidenceMap, index: tuple[int, int], tile_a: np.ndarray, tile_b: np.ndarray,
                significance: float) -> tuple[tuple[int, int], tuple[float, float], tuple[float, float]]:
    """A pair's evidence peak at ``index`` moved and fitted as :func:`register_pair` does.

    On a ridge the evidence peak slides to the larger overlap: the ridge's best match on common overlaps
    (:func:`match_on_common_overlap`, ``confident`` from :data:`REFIT_MIN_SIGNIFICANCE`), then the sub-pixel
    fit; a confident pair's fit that leaves its box runs again from the ridge's best match, if that one
    converges (:func:`refit_on_ridge`).

    Parameters
    ----------
    evidence_map : EvidenceMap
        The pair's evidence at one speckle scale.
    index : tuple of int
        The peak's index in ``evidence_map``.
    tile_a, tile_b : np.ndarray
        Flat-fielded projections of the pair's tiles.
    significance : float
        The peak's significance: :data:`REFIT_MIN_SIGNIFICANCE` or more walks as a confident pair and refits.

    Returns
    -------
    tuple
        ``(index, offset, sigma)``: the settled index in ``evidence_map``, the refined ``(y, x)`` offset and
        its standard error, pixels.
    """
    confident = significance >= REFIT_MIN_SIGNIFICANCE
    moved = match_on_common_overlap(evidence_map, index, tile_a, tile_b, confident)
    refined, sigma, left_box = _fit_subpixel(tile_a, tile_b, _index_offset(evidence_map, moved))
    if left_box and confident:
        refit = refit_on_ridge(evidence_map, moved, tile_a, tile_b)
        if refit is not None:
            moved, refined, sigma = refit
    return moved, refined, sigma


def settled_search_offset(tile_a: np.ndarray, tile_b: np.ndarray, registration: PairRegistration
                          ) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """A searched pair's offset settled from its evidence where a search left it at a whole pixel the fit leaves.

    A search (joint, piece, cluster, corroborated, or a loop's switch) ranks whole pixels by the summed evidence and
    refines its pairs' chosen whole pixels (:func:`narrow_joint_offset`, then :func:`refine_subpixel`); where the fit
    leaves its box (more than :data:`MAX_REFINEMENT_PX`: the match's optimum is not at the whole pixel) it keeps the
    whole pixel. The evidence's area term holds a flat top's maximum toward the larger overlap, out of the fit's box.
    That whole pixel is then settled as :func:`register_pair` settles its own peak (:func:`settle_peak`: the walk
    along the ridge, the fit, for a confident pair the refit from the ridge's best match). Foreign ``ha`` 394 slice 4,
    (2, 1)-(2, 2) alone placing (2, 2): its map flat along x within 5 % over 3 px, its whole-pixel maximum 2.2 px
    off, the fit leaving its box there; settled, 0.67 px off as its own registration (session flat10). Not where the
    fit stays in its box: there the walk may move a right offset off (``a205`` 349 slice 1, (4, 1)-(4, 2): fitted
    0.92 px off, walked 3.54). The significance is the search's (``registration.significance``): a border peak's
    or a pair refused in depth (0) is not confident and is not fitted again from its ridge's best match. Only the
    estimate's kept links are settled, once every search has run
    (:func:`~linumpy.stitching.settle.settle_kept_searches`): settling inside the searches changed what they ranked
    (session flat10b).

    Parameters
    ----------
    tile_a, tile_b : np.ndarray
        Flat-fielded projections of the pair's tiles.
    registration : PairRegistration
        The pair as a search refined it: its ``offset`` the search's (whole where the fit failed), its ``scores`` the
        pair's evidence maps, its ``significance`` the search's.

    Returns
    -------
    tuple or None
        ``(offset, sigma)``: the settled ``(y, x)`` offset and its standard error, pixels; ``None`` where the offset is
        not a whole pixel, the fit from it stays in its box, no map scores it or settling does not move it.
    """
    if not all(float(v).is_integer() for v in registration.offset):
        return None
    whole = tuple(int(v) for v in registration.offset)
    if not _fit_subpixel(tile_a, tile_b, whole)[2]:
        return None
    found = _map_at(registration.scores, whole)
    if found is None:
        return None
    _, settled, sigma = settle_peak(*found, tile_a, tile_b, registration.significance)
    return None if settled == tuple(registration.offset) else (settled, sigma)


def refine_subpixel(
    tile_a: np.ndarray, tile_b: np.ndarray, offset: tuple[int, int],
    speckle_px: float = REFINE_SPECKLE_PX,
) -> tuple[tuple[float, float], tuple[float, float]]:
    """Refine an integer offset by a symmetric Lucas-Kanade fit on the common region.

    :func:`_fit_subpixel` without its ``left_box`` flag: the refined offset (the integer one if the fit
    fails or moves more than :data:`MAX_REFINEMENT_PX`) and the standard error of each coordinate (1 px
    when not refined).
    """
    return _fit_subpixel(tile_a, tile_b, offset, speckle_px)[:2]


def register_pair(
    tile_a: np.ndarray,
    tile_b: np.ndarray,
    nominal_offset: tuple[float, float],
    max_shift_px: float,
    refine: bool = True,
) -> PairRegistration:
    """Estimate the offset of ``tile_b`` relative to ``tile_a``.

    The dense search runs once per speckle scale of :data:`SPECKLE_SIGMAS_PX`;
    the scale whose best peak is the most significant wins, unless that peak
    lies on an edge's ridge which a finer scale's significant, round peak
    lies on (:func:`locating_scale`): the finer peak is taken then, with the
    larger significance. A confident pair (significance at least
    :data:`REFIT_MIN_SIGNIFICANCE`) whose peak another local maximum within
    :data:`PEAK_RADIUS_PX` beats on their common overlap is flagged
    (:func:`split_peak`, ``split_peak``). A significant pair whose sub-pixel fit leaves its box
    is fitted again from the best match on its ridge (:func:`refit_on_ridge`).

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
    highpass_px = highpass_sigma(min(tile_a[nominal_slices[0]].shape))
    found, maps = [], []
    for speckle_px in SPECKLE_SIGMAS_PX:
        prepare = functools.partial(band_pass, highpass_px=highpass_px, speckle_px=speckle_px)
        ncc, area = ncc_map(tile_a, tile_b, nominal, radius, prepare)
        ncc[area < MIN_OVERLAP_FRACTION * nominal_area] = np.nan
        score = evidence(ncc, area, speckle_px)
        peaks = local_maxima(score)
        if peaks:
            found.append((peak_significance(score, peaks[0]), ncc, peaks))
            maps.append(EvidenceMap(speckle_px, nominal, score, fisher_transform(ncc), tile_a.shape))
    if not found:
        return fallback
    significance = max(f[0] for f in found)
    chosen = locating_scale(maps, [f[2][0] for f in found], [f[0] for f in found])
    # A split peak (confident pairs, as the ridge walk's clear moves): flagged, not moved.
    split = (split_peak(maps[chosen], found[chosen][2][0], tile_a, tile_b)
             if significance >= REFIT_MIN_SIGNIFICANCE else None)
    _, ncc, peaks = found[chosen]
    winner = maps[chosen]
    if refine:
        moved, refined, sigma = settle_peak(winner, peaks[0], tile_a, tile_b, significance)
    else:
        moved = match_on_common_overlap(winner, peaks[0], tile_a, tile_b, significance >= REFIT_MIN_SIGNIFICANCE)
        refined, sigma = tuple(float(v) for v in _index_offset(winner, moved)), PLACEHOLDER_SIGMA_PX
    peaks = [moved] + [p for p in peaks if p != moved]
    candidates = tuple(((nominal[0] + p[0] - radius, nominal[1] + p[1] - radius), float(ncc[p]))
                       for p in peaks[:N_CANDIDATES])
    return PairRegistration(offset=refined, ncc=float(ncc[peaks[0]]), significance=significance,
                            sigma_px=sigma, candidates=candidates, scores=tuple(maps),
                            border_peak=on_scored_border(winner, moved), split_peak=split is not None)
