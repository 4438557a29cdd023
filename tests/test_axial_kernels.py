"""The axial correction's kernels made cheaper keep the bits of what they replace (issue #14)."""

import numpy as np
import pytest

from linumpy.intensity import attenuation, surface


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
    """``clip_at_zero``, ``log_intensity``'s floor and ``noise_bias``'s cap compare against arrays (a faster
    loop): the bits of ``np.maximum`` / ``np.minimum`` against the scalar, NaNs and signed zeros included."""
    values = special_values()
    expected = np.maximum(values, 0)
    zeros = np.zeros((8, *values.shape[1:]), np.float32)  # longer along the first axis
    clipped = attenuation.clip_at_zero(values.copy(), zeros)
    np.testing.assert_array_equal(clipped.view(np.uint32), expected.view(np.uint32))
    floor = np.float32(surface.LOG_FLOOR)
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(surface.log_intensity(values).view(np.uint32),
                                      np.log(np.maximum(values, floor)).view(np.uint32))
    signal = np.abs(values)
    variance = np.linspace(0.0, 4.0, values.shape[0])
    with np.errstate(all="ignore"):
        bias = attenuation.noise_bias(signal, variance)
        by_scalar = np.minimum(variance.astype(np.float32)[:, None, None] / (signal * signal) * np.float32(0.5),
                               np.float32(attenuation.MAX_NOISE_BIAS))
    np.testing.assert_array_equal(bias.view(np.uint32), by_scalar.view(np.uint32))


def decaying_block(n_z: int = 40, size: int = 20, seed: int = 0) -> np.ndarray:
    """Speckled exponential decay (two levels side by side), float32, non-negative."""
    rng = np.random.default_rng(seed)
    depth = np.exp(-0.05 * np.arange(n_z))[:, None, None]
    level = np.where(np.arange(size) < size // 2, 1.0, 8.0)[None, None, :]
    return (depth * level * rng.exponential(1.0, (n_z, size, size))).astype(np.float32)


@pytest.mark.parametrize("zeros", [False, True])
def test_compensation_without_the_positivity_test_has_the_same_bits(zeros):
    """Only the A-lines whose sums may be <= 0 (no extension) are tested; A-lines of zeros among them make
    the whole group tested. Either way: the bits of ``compensate_attenuation`` by ``edge_aware_tails``."""
    signal = decaying_block()
    if zeros:
        signal[:, :, -5:] = 0  # padding beside the tissue: zero sums there
    grid = attenuation.BinGrid.of(signal.shape[1:])
    sums = attenuation.binned_tail_sums(signal, grid)
    inner = (slice(2, 18), slice(3, 20))
    *_, doubtful = attenuation._guided_planes(signal, sums, grid, 2.0, None, attenuation.EDGE_EPSILON, inner, None)
    marked = np.zeros((16, 17), bool)
    marked[doubtful] = True
    # a few A-lines tested, not the whole plane; beside the zeros (columns 15-19 of the block, 12-16 of inner)
    # some are, whose sums the filter clips to 0 there
    assert marked[:, 12:].any() if zeros else marked.sum() < 16 * 17 / 10
    for planes in (None, (5, 33)):
        tails = attenuation.edge_aware_tails(signal, sums, grid, 2.0, inner=inner, planes=planes)
        expected = signal[(slice(None), *inner)].copy()
        attenuation.compensate_attenuation(expected, tails, out=expected, planes=planes)
        result = attenuation.compensate_edge_aware(signal.copy(), sums, grid, 2.0, inner=inner, planes=planes)
        np.testing.assert_array_equal(result.view(np.uint32), expected.view(np.uint32))
        if zeros:
            assert (result[:, :, -5:] == 0).all()


def test_doubtful_lines_are_those_without_extension_unless_the_coefficients_are_huge():
    extension = np.ones((3, 4), np.float32)
    extension[0, 0], extension[1, 2] = 0.0, np.nan
    coefficients = np.ones((2, 5, 2, 2), np.float32)
    rows, columns = attenuation._doubtful_lines(extension, coefficients)
    assert list(zip(rows.tolist(), columns.tolist())) == [(0, 0), (1, 2)]
    for value in (np.inf, np.nan, 1e31):
        changed = coefficients.copy()
        changed[1, 3, 0, 1] = value
        assert attenuation._doubtful_lines(extension, changed) is None  # every A-line tested
