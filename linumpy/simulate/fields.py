"""Procedural random fields evaluable on any box of the world grid.

Everything the simulator draws is a function of integer (or real) world
coordinates and of the seed, never a stored volume, so any tile or chunk can be
computed alone and overlapping boxes agree voxel for voxel.

- :class:`SmoothField`: a sum of separable cosine products, cheap on a box
  (one matrix product) and smooth at the scales it is drawn at.
- :func:`hash_uniform`: counter-based random numbers in [0, 1) per integer
  world voxel (splitmix64 finaliser), for speckle and cell placement.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def mix64(values: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a bijective scramble of uint64 values."""
    values = np.asarray(values, np.uint64)
    values = (values ^ (values >> np.uint64(30))) * _MIX1
    values = (values ^ (values >> np.uint64(27))) * _MIX2
    return values ^ (values >> np.uint64(31))


def hash_coordinates(seed: int, z: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Return a uint64 hash of every ``(z, y, x)`` of three 1D integer axes.

    The result has shape ``(len(z), len(y), len(x))`` and depends only on the
    seed and the coordinates, not on the box they were evaluated in.
    """
    def axis(values: np.ndarray) -> np.ndarray:
        return np.asarray(values, np.int64).astype(np.uint64)

    hz = mix64(axis(z) + mix64(np.array([seed], np.uint64) * _GOLDEN))
    hzy = mix64(hz[:, None] ^ (axis(y)[None, :] * _GOLDEN))
    return mix64(hzy[:, :, None] ^ (axis(x)[None, None, :] * _MIX1))


def uniform_from_hash(hashes: np.ndarray, part: int) -> np.ndarray:
    """Return float32 uniforms in (0, 1) from 21-bit field ``part`` (0, 1 or 2) of hashes."""
    bits = (hashes >> np.uint64(21 * part)) & np.uint64((1 << 21) - 1)
    return ((bits.astype(np.float32) + np.float32(0.5)) / np.float32(1 << 21)).astype(np.float32)


class SmoothField:
    """A smooth random field: ``sqrt(8/n) * sum_i cos(kz z + a) cos(ky y + b) cos(kx x + c)``.

    It has zero mean and unit variance over space (for random phases), and
    is evaluated on a box given by its three 1D coordinate axes.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of the wave numbers and phases.
    n_terms : int
        Number of separable products.
    wavelengths_px : sequence of (float, float) pairs
        ``(shortest, longest)`` wavelength, in voxels, along z, y and x.

    Examples
    --------
    >>> field = SmoothField(np.random.default_rng(0), 4, [(20, 40)] * 3)
    >>> field.evaluate(np.arange(2), np.arange(3), np.arange(4)).shape
    (2, 3, 4)
    """

    def __init__(self, rng: np.random.Generator, n_terms: int, wavelengths_px: Sequence[tuple[float, float]]):
        self.wave_numbers = np.stack(
            [2 * np.pi / rng.uniform(lo, hi, n_terms) for lo, hi in wavelengths_px]
        )  # (3, n)
        self.wave_numbers *= rng.choice([-1.0, 1.0], size=self.wave_numbers.shape)
        self.phases = rng.uniform(0, 2 * np.pi, size=(3, n_terms))
        self.scale = np.sqrt(8.0 / n_terms)

    def _axis(self, axis: int, coords: np.ndarray) -> np.ndarray:
        coords = np.asarray(coords, np.float64)
        return np.cos(self.wave_numbers[axis][:, None] * coords[None, :] + self.phases[axis][:, None])

    def evaluate(self, z: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Return the field on the box ``z x y x x`` as float32 ``(nz, ny, nx)``."""
        cz, cy, cx = (self._axis(a, c).astype(np.float32) for a, c in enumerate((z, y, x)))
        lateral = (cy[:, :, None] * cx[:, None, :]).reshape(len(cy), -1)
        values = (cz.T * np.float32(self.scale)) @ lateral
        return values.reshape(len(z), len(y), len(x))

    def evaluate_2d(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Return the field at ``z = 0`` on the lateral box ``y x x``, float32 ``(ny, nx)``."""
        return self.evaluate(np.zeros(1), y, x)[0]
