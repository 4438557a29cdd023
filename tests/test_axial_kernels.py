"""The axial correction's kernels made cheaper (numpy rearranged, or compiled loops) keep the bits of what they
replace (issue #14)."""

import dataclasses

import numpy as np
import pytest

from linumpy.intensity import attenuation, attenuation_kernels, attenuation_map, surface
from linumpy.intensity.axial import SliceStatistics, _focus_corrected


def special_values(shape: tuple[int, ...] = (5, 7, 9)) -> np.ndarray:
    """float32 of every sign and kind: normal, subnormal, signed zeros and infinities, NaNs of both signs."""
    rng = np.random.default_rng(4)
    values = (rng.normal(0.0, 1.0, shape) * 10.0 ** rng.integers(-40, 38, shape)).astype(np.float32)
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45], np.float32)
    flat = values.reshape(-1)
    flat[: specials.size] = specials
    flat[specials.size] = np.array([0xFFC00000], np.uint32).view(np.float32)[0]  # x86's NaN, sign bit set
    return values


def test_clip_against_arrays_keeps_the_bits_of_the_scalar_clip():
    """``log_intensity``'s floor compares against an array (a faster loop): the bits of ``np.maximum``
    against the scalar, NaNs and signed zeros included."""
    values = special_values()
    floor = np.float32(surface.LOG_FLOOR)
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(surface.log_intensity(values).view(np.uint32),
                                      np.log(np.maximum(values, floor)).view(np.uint32))


def decaying_block(n_z: int = 40, size: int = 20, seed: int = 0) -> np.ndarray:
    """Speckled exponential decay (two levels side by side), float32, non-negative."""
    rng = np.random.default_rng(seed)
    depth = np.exp(-0.05 * np.arange(n_z))[:, None, None]
    level = np.where(np.arange(size) < size // 2, 1.0, 8.0)[None, None, :]
    return (depth * level * rng.exponential(1.0, (n_z, size, size))).astype(np.float32)


def bits(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, np.float32).view(np.uint32)


@pytest.mark.parametrize("phase", [(0, 0), (1, 1), (0, 1)])
def test_block_pass_kernel_keeps_numpys_bits_on_special_values(phase):
    """The compiled ``BlockPass.add``: numpy's clip (``np.maximum(x, 0)``: NaNs kept, -0 to +0), binned means
    and level sum, bit for bit, on NaNs, infinities, signed zeros and subnormals, in groups of planes."""
    signal = special_values((21, 9, 11))
    signal[:, 3, 4] = -0.0  # an A-line of negative zeros: not imaged
    grid = attenuation.BinGrid.of(signal.shape[1:], phase)
    taken = attenuation.BlockPass(signal.shape, grid)
    fed = signal.copy()
    with np.errstate(all="ignore"):
        for first in range(0, 21, 8):
            taken.add(first, fed[first : first + 8])
        clipped = np.maximum(signal, 0)
        expected = (clipped, grid.binned(signal), grid.binned(clipped),
                    np.sum(clipped[: attenuation._guide_planes(21)], axis=0, dtype=np.float32))
    planes = slice(0, 21)
    for found, wanted in zip((fed, taken.unclipped[planes], taken.clipped[planes], taken.level), expected):
        np.testing.assert_array_equal(bits(found), bits(wanted))
    np.testing.assert_array_equal(taken.imaged, np.any(signal != 0, axis=0))
    assert not taken.imaged[3, 4]


@pytest.mark.parametrize("profile_dtype", [None, np.float32, np.float64])
def test_focus_correction_fused_into_the_block_pass_keeps_numpys_bits(profile_dtype):
    """The focus correction made in the block pass's compiled loop (in place: ``add_corrected``) gives the
    signal and the pass's sums that numpy's subtraction, division and padding then ``add`` give, bit for
    bit: a float32 or float64 profile (a zero in it), NaN, infinities, subnormals, A-lines of +-0 (padding)."""
    rng = np.random.default_rng(7)
    shape = (37, 21, 19)
    data = (rng.exponential(5.0, shape) * 10.0 ** rng.integers(-3, 3, shape)).astype(np.float32)
    data[:, 2, 3], data[:, 5, :], data[:, 7, 8] = 0.0, 0.0, -0.0  # padding, a row of it, negative zeros
    data[0, 9, 9], data[30, 10, 10], data[3, 4, 4], data[4, 4, 5] = np.nan, np.nan, np.inf, 1e-45
    data[:30, 10, 10] = 0.0  # zeros above a NaN: not padding
    profile = None if profile_dtype is None else rng.uniform(0.2, 2.0, shape[0]).astype(profile_dtype)
    if profile is not None:
        profile[5] = 0.0
    stats = SliceStatistics(noise_floor=3.7, focus_profile=profile, focus_mode="background", focus_qc={},
                            focus_flags=[], plane=None, mean_surface_px=None, surface_fraction=1.0,
                            tissue_level=None)
    taken = []
    with np.errstate(all="ignore"):
        for in_place in (True, False):  # the fused pass; numpy's passes into a new array, then add
            taken.append(attenuation.BlockPass(shape, attenuation.BinGrid.of(shape[1:], (1, 0))))
            signal = _focus_corrected(data.copy(), stats, in_place, taken=taken[-1])
            taken[-1].signal = signal
    fused, numpy_made = taken
    for field in ("signal", "unclipped", "clipped", "level"):
        np.testing.assert_array_equal(bits(getattr(fused, field)), bits(getattr(numpy_made, field)))
    np.testing.assert_array_equal(fused.imaged, numpy_made.imaged)
    assert not fused.imaged[2, 3] and fused.imaged[10, 10] and np.all(fused.signal[:, 5] == 0)


def numpy_guided_sums(fitted, planes: np.ndarray, grid: attenuation.BinGrid) -> np.ndarray:
    """The guided filter's sums as numpy evaluated them before the compiled loop: the coefficients
    interpolated, repeated to the A-lines, ``a * guide + b`` clipped at 0, the extension added."""
    below = np.minimum(np.searchsorted(fitted.planes, planes, side="right") - 1, fitted.planes.size - 2)
    weight = ((planes - fitted.planes[below]) / (fitted.planes[below + 1] - fitted.planes[below])).astype(
        np.float32)[:, None, None]
    slope, mean = (values[below] + weight * step[below] for values, step in zip(fitted.coefficients, fitted.steps))
    out = np.multiply(grid.fine(slope), fitted.guide)
    out += grid.fine(mean)
    return np.maximum(out, 0) + fitted.extension


@pytest.mark.parametrize("special", [False, True])
def test_guided_sums_kernel_is_numpys_formula(special):
    """The compiled evaluation of the guided filter's sums: numpy's float32 arithmetic in numpy's order (no
    fused multiply-add), bit for bit, at fitted planes and between them, with huge, infinite and NaN
    coefficients (``special``) and narrow edge bins."""
    signal = decaying_block(n_z=30, size=21)
    grid = attenuation.BinGrid.of(signal.shape[1:], (1, 0))
    sums = attenuation.binned_tail_sums(signal, grid)
    inner = (slice(0, 21), slice(0, 21))
    fitted = attenuation._guided_filter(signal, sums, grid, 2.0, None, attenuation.EDGE_EPSILON, inner, None)
    if special:
        values = special_values(fitted.coefficients.shape) * np.float32(1e-30)
        values.reshape(-1)[:40:5] = special_values((8,))[:8]
        coefficients = np.where(np.arange(values.shape[2])[:, None] % 3 == 0, values, fitted.coefficients)
        fitted = dataclasses.replace(fitted, coefficients=coefficients,
                                     steps=coefficients[:, 1:] - coefficients[:, :-1])
    planes = np.arange(31)
    with np.errstate(all="ignore"):
        expected = numpy_guided_sums(fitted, planes, grid.covering(inner)[0])
    found = fitted.evaluate(planes, np.empty(expected.shape, np.float32))
    np.testing.assert_array_equal(bits(found), bits(expected))
    if special:
        assert np.isnan(found).any() and np.nanmax(found) > 1e6  # the special values reached the sums


@pytest.mark.parametrize("zeros", [False, True])
def test_compensation_kernel_keeps_the_bits_of_the_sums_then_the_division(zeros):
    """The compiled compensation (sums evaluated and divided in one pass) against numpy's division of the
    same sums (``compensate_attenuation`` by ``edge_aware_tails``): the same bits; A-lines of zeros beside
    the tissue (zero sums: left at 0)."""
    signal = decaying_block()
    if zeros:
        signal[:, :, -5:] = 0  # padding beside the tissue: zero sums there
    grid = attenuation.BinGrid.of(signal.shape[1:])
    sums = attenuation.binned_tail_sums(signal, grid)
    inner = (slice(2, 18), slice(3, 20))
    for planes in (None, (5, 33), (0, 1), (12, 12)):
        tails = attenuation.edge_aware_tails(signal, sums, grid, 2.0, inner=inner, planes=planes)
        expected = signal[(slice(None), *inner)].copy()
        attenuation.compensate_attenuation(expected, tails, out=expected, planes=planes)
        result = attenuation.compensate_edge_aware(signal.copy(), sums, grid, 2.0, inner=inner, planes=planes)
        np.testing.assert_array_equal(bits(result), bits(expected))
        if zeros:
            assert (result[:, :, -5:] == 0).all()


@pytest.mark.parametrize("width", [3, 5, 11])
def test_box_mean_kernel_keeps_the_order_of_numpys_shifted_sums(width):
    """The compiled ``box_mean``: each box summed along y from its top row, then along x from its left
    column, in float32, then divided by ``width ** 2`` (the sums of numpy's shifted views, in their order),
    edges repeated; bit for bit, planes narrower than the box and special values included."""
    values = special_values((4, 7, 9)) * np.float32(1e-30)
    values[1] = decaying_block(n_z=1, size=9)[0, :7]
    values[2, :, :2] = special_values((7, 2))
    radius = width // 2
    padded = np.pad(values, ((0, 0), (radius, radius), (radius, radius)), mode="edge")
    with np.errstate(all="ignore"):
        columns = padded[:, :7].copy()
        for d in range(1, width):
            columns += padded[:, d : d + 7]
        expected = columns[..., :9].copy()
        for d in range(1, width):
            expected += columns[..., d : d + 9]
        expected /= np.float32(width * width)
        found = attenuation.box_mean(values, width)
    np.testing.assert_array_equal(bits(found), bits(expected))


def surface_cases(seed: int = 5):
    """Small volumes a surface detection meets and some it should not: a step at a random depth on speckle of
    any scale, padding (A-lines of zeros), negative samples, two depths only, fewer A-lines than the box."""
    rng = np.random.default_rng(seed)
    for case in range(24):
        n_z, n_y, n_x = (2, 3, 4) if case == 0 else (int(rng.integers(3, 36)), *rng.integers(1, 24, 2))
        volume = rng.lognormal(0.0, 1.5, (n_z, n_y, n_x)) * rng.choice([1e-30, 1e-3, 1.0, 1e30])
        volume[rng.integers(0, n_z):] *= rng.choice([1.0, 5.0, 30.0])
        if case % 4 == 1:
            volume[:, : n_y // 2] = 0.0
        if case % 5 == 2:
            volume[rng.random(volume.shape) < 0.2] *= -1.0
        yield volume.astype(np.float32), {"lateral_sigma_px": float(rng.choice([0.0, 0.7, 1.0, 2.0, 4.0])),
                                          "axial_sigma_px": float(rng.choice([0.5, 1.0, 1.5])),
                                          "min_contrast": float(rng.choice([1.5, 2.0, 2.7])),
                                          "window_px": int(rng.choice([1, 4, 6]))}


def test_surface_kernels_keep_the_bits_of_numpys_surface_detection():
    """The compiled detection (scipy's float64 running boxes replayed, numpy's log, the binomial passes, the
    first steepest rise, its parabola and the contrast windows in numpy's order) gives numpy's surface to the
    bit, NaN where numpy finds none."""
    from linumpy.intensity import surface_kernels

    for volume, options in surface_cases():
        expected = surface.detect_surface(volume, **options)
        found = surface_kernels.detect_surface(volume, **options)
        assert found.dtype == np.float32 and found.shape == volume.shape[1:]
        np.testing.assert_array_equal(found.view(np.uint32), expected.view(np.uint32), err_msg=str(options))


@pytest.mark.parametrize("width", [1, 5, 31])
def test_lateral_box_kernel_is_scipys_running_box(width):
    """The lateral box of the detection: scipy's ``uniform_filter1d`` along y then x (edges repeated), bit for
    bit, boxes wider than the block included; beside it the same clamped at the log's floor."""
    from scipy import ndimage

    from linumpy.intensity import surface_kernels

    volume = special_values((3, 9, 17))
    volume[~np.isfinite(volume)] = 1.0  # scipy's running sums spread an inf or NaN along the line; so do these
    expected = ndimage.uniform_filter1d(volume, width, axis=1, mode="nearest", output=np.float32)
    ndimage.uniform_filter1d(expected, width, axis=2, mode="nearest", output=expected)
    found, clamped = np.empty_like(volume), np.empty_like(volume)
    surface_kernels.lateral_box_means(volume, width, found, clamped)
    np.testing.assert_array_equal(found.view(np.uint32), expected.view(np.uint32))
    np.testing.assert_array_equal(clamped.view(np.uint32),
                                  np.maximum(expected, np.float32(surface.LOG_FLOOR)).view(np.uint32))


def numpy_split_statistic(sums: attenuation_map.SplitSums, lines: np.ndarray, min_above: int, min_below: int,
                          stop: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``SplitSums.statistic`` as numpy computed it before the compiled search (session axial14c)."""
    columns = slice(None) if lines.size == sums.lines.size else np.searchsorted(sums.lines, lines)
    boundaries = sums.sums.boundaries
    total = (attenuation.LineSums(*(values[columns] for values in sums.sums.total.fields())) if stop is None
             else attenuation.LineSums(*np.take_along_axis(sums.sums.above[:, :, columns],
                                                           np.searchsorted(boundaries, stop)[None, None], axis=0)[0]))
    rows = slice(np.searchsorted(boundaries, sums.first[columns].min(initial=np.inf) + min_above),
                 np.searchsorted(boundaries, (sums.stop[columns] if stop is None else stop).max(initial=0)
                                 - min_below, side="right"))
    boundaries = boundaries[rows]
    above = attenuation.LineSums(*sums.sums.above[rows, :, columns].swapaxes(0, 1))
    below = total.minus(above)
    residual = above.residual() + below.residual()
    residual[(above.n < min_above) | (below.n < min_below)] = np.inf
    if residual.shape[0] == 0:
        return np.zeros(total.n.shape), np.zeros(total.n.shape), np.full(total.n.shape, np.inf)
    index = np.argmin(residual, axis=0)
    best = np.take_along_axis(residual, index[None], axis=0)[0]
    whole = total.residual()
    found = np.isfinite(best)
    statistic = np.divide((whole - best) * np.maximum(total.n - 4, 1), best, out=np.zeros_like(whole),
                          where=found & (best > 0))
    explained = np.divide(whole - best, total.n, out=np.zeros_like(whole), where=found & (total.n > 0))
    return statistic, explained, np.where(found, boundaries[index].astype(float), np.inf)


@pytest.mark.parametrize("seed", range(6))
def test_split_search_kernel_is_numpys_statistic(seed):
    """The compiled split search (``best_splits``) gives ``SplitSums.statistic``'s numpy results bit for bit:
    windows whole or stopped at a boundary, a subset of the A-lines, ranges too short for any split, flat
    A-lines (ties: the first least residual), signals with NaN or infinite logs (a NaN residual wins)."""
    rng = np.random.default_rng(seed)
    n_z, n_lines = 70, 40
    depth = np.arange(n_z)[:, None]
    step = np.where(depth > rng.integers(20, 50, n_lines), rng.uniform(0.2, 4.0, n_lines), 1.0)
    signal = np.exp(-0.03 * depth) * step * rng.exponential(1.0, (n_z, n_lines)) ** (seed % 3 / 2)
    signal[:, 3] = 1.0  # flat: every candidate ties
    if seed % 2:
        signal[30, 5], signal[40, 6], signal[10:, 7] = np.nan, np.inf, 0.0
    tails = np.concatenate([np.cumsum(signal[::-1], axis=0)[::-1], np.zeros((1, n_lines))]).astype(np.float32)
    first = rng.integers(0, 15, n_lines).astype(np.float32)
    stop = np.minimum(first + rng.integers(5, 60, n_lines), n_z).astype(np.float32)
    lines, kinds = np.arange(n_lines), set()
    with np.errstate(all="ignore"):
        sums = attenuation_map.SplitSums(lines, first, stop, attenuation.cumulated_sums(tails, first, stop, 3))
        for subset in (lines, lines[::3]):
            boundary = np.searchsorted(sums.sums.boundaries, (first[subset] + stop[subset]) / 2)
            window_stop = sums.sums.boundaries[np.minimum(boundary, sums.sums.boundaries.size - 1)]
            for window in (None, window_stop):
                for minimum in ((8, 4), (3, 3), (60, 60)):
                    found = sums.statistic(subset, *minimum, window)
                    wanted = numpy_split_statistic(sums, subset, *minimum, window)
                    for a, b in zip(found, wanted):
                        np.testing.assert_array_equal(a.view(np.uint64), b.view(np.uint64))
                    kinds.update(("split", "none")[int(v)] for v in np.isinf(found[2]))
    assert kinds == {"split", "none"}  # the cases hold A-lines split and A-lines that no split fits


def numpy_bent_equations(window: np.ndarray, parts: tuple[np.ndarray, ...],
                         knees: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The bent line's normal equations as numpy built them before the compiled pass (session axial14c)."""
    n, sz, szz, sl, szl, _ = window
    size = 2 + len(knees)
    gram, moments = np.empty((*n.shape, size, size)), np.empty((*n.shape, size))
    gram[..., 0, 0], gram[..., 0, 1], gram[..., 1, 1] = n, sz, szz
    moments[..., 0], moments[..., 1] = sl, szl
    for j, (part, knee) in enumerate(zip(parts, knees, strict=True), start=2):
        gram[..., 0, j] = part[1] - knee * part[0]
        gram[..., 1, j] = part[2] - knee * part[1]
        moments[..., j] = part[4] - knee * part[3]
        for i, other_knee in enumerate(knees[: j - 2], start=2):
            gram[..., i, j] = part[2] - (knee + other_knee) * part[1] + knee * other_knee * part[0]
        gram[..., j, j] = part[2] - 2 * knee * part[1] + knee**2 * part[0]
    lower = np.tril_indices(size, -1)
    gram[..., lower[0], lower[1]] = gram[..., lower[1], lower[0]]
    return gram, moments


def test_bent_line_equations_kernel_is_numpys_formula():
    """The compiled normal equations of the line bent at two knees equal numpy's, bit for bit (random sums of
    every scale, NaN and infinite ones), and the residual they give is that of numpy's equations."""
    rng = np.random.default_rng(3)
    lines, candidates = 50, 9
    window = rng.normal(0, 1, (6, lines)) * 10.0 ** rng.integers(-3, 7, (6, lines))
    parts = rng.normal(0, 1, (6, candidates, lines)) * 10.0 ** rng.integers(-3, 7, (6, candidates, lines))
    parts[0, 2, 4], parts[3, 1, 5], window[1, 6] = np.nan, np.inf, -np.inf
    knees = rng.integers(0, 200, (candidates, lines)).astype(float)
    first, second = np.array([4, 4, 3, 2, 0]), np.array([5, 8, 4, 6, 8])
    pairs, fitted = np.nonzero(rng.random((first.size, lines)) < 0.7)  # some pairs of some A-lines
    gram = np.empty((fitted.size, 4, 4))
    moments = np.empty(gram.shape[:2])
    with np.errstate(all="ignore"):
        attenuation_kernels.bent_normal_equations(window, parts, knees, (fitted, first[pairs], second[pairs]),
                                                  gram, moments)
        wanted = numpy_bent_equations(np.broadcast_to(window[:, None], parts[:, first].shape),
                                      (parts[:, first], parts[:, second]), (knees[first], knees[second]))
    for found, expected in zip((gram, moments), wanted):
        np.testing.assert_array_equal(found.view(np.uint64), expected[pairs, fitted].view(np.uint64))


def test_ramp_fits_only_the_pairs_it_may_keep_and_solves_without_determinants_when_none_is_singular():
    """The bent lines are fitted only where the ramp may be kept; a batch with a singular Gram matrix among
    them (integers: ``det`` 0 exactly at a zero pivot) falls back to the determinants and leaves it out (inf),
    the others keeping the residual a batch without it gives."""
    window = np.array([[40.0, 40.0], [780.0, 780.0], [20540.0, 20540.0], [-20.0, -21.0], [-500.0, -530.0],
                       [30.0, 31.0]])
    k = np.arange(40.0)
    below = [k >= h for h in (9.0, 12.0, 15.0)]
    parts = np.stack([[m.sum(), k[m].sum(), (k[m] ** 2).sum(), -0.5 * m.sum(), -12.0 * m.sum(), 5.0]
                      for m in below], axis=1)[:, :, None].repeat(2, axis=2)
    knees = np.array([[9.0, 9.0], [12.0, 12.0], [15.0, 15.0]])
    good = (np.array([0, 1]), np.array([0, 0]), np.array([1, 2]))
    alone = attenuation_map._bent_residual(window, parts, knees, good)
    with_singular = attenuation_map._bent_residual(window, parts, knees, tuple(
        np.append(values, extra) for values, extra in zip(good, (0, 1, 1))))  # h1 = h2: a singular matrix
    assert np.all(np.isfinite(alone))
    np.testing.assert_array_equal(with_singular[:2].view(np.uint64), alone.view(np.uint64))
    assert with_singular[2] == np.inf
