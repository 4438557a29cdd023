"""Image formation: from the phantom to what the OCT records in a tile.

For tile voxel ``(zt, i, j)`` of a slice whose cut surface lies at depth
``s(i, j)`` (tile samples)::

    present   = zt >= s(i, j)
    T(zt)     = exp(-2 * dz_mm * sum_{z' < zt} mu(z') * present(z'))
    signal    = V(i, j) * F(zt) * R * S * T(zt) * present
    frame     = signal + noise_floor * E,  E ~ Exponential(1), per repeat

``R``/``mu`` are the phantom's reflectivity and attenuation (1/mm), ``dz_mm``
the axial voxel size, the factor 2 the round trip of the light, ``F`` the
focus profile (Gaussian, or Lorentzian for ``focus_model="lorentzian"``),
``V`` the vignetting, ``S`` multiplicative speckle
anchored to world voxels (so it is the same in overlapping tiles and
slices; with ``speckle_per_slice`` each slice draws its own, shared by its
tiles only). A turned slice (``slice_rotation_deg``) sees the phantom evaluated
on the world grid around the tile and resampled bilinearly at the turned
points, and the speckle of the nearest world voxel (it turns with the
tissue); its cut stays on the unturned grid. See ``docs/simulator.md``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from linumpy.mosaic.curvature import quadratic_map, shift_alines
from linumpy.simulate.fields import hash_coordinates, uniform_from_hash
from linumpy.simulate.geometry import AcquisitionGeometry
from linumpy.simulate.phantom import Phantom, PhantomBox
from linumpy.simulate.presets import Preset

#: Independent hash streams of the seed.
_SPECKLE_STREAM = 11
_PER_SLICE_STREAM = 101


def vignetting(shape: tuple[int, int], strength: float) -> np.ndarray:
    """Lateral gain ``1 - strength * (u^2 + v^2) / 2``, ``u, v`` in [-1, 1] across the tile.

    Examples
    --------
    >>> round(float(vignetting((5, 5), 0.3)[0, 0]), 6)
    0.7
    """
    return (1.0 - strength * _half_radius2(shape)).astype(np.float32)


def focus_profile(n_z: int, focus_px: float, sigma_px: float, model: str = "gaussian") -> np.ndarray:
    """Axial gain, shape ``(n_z,)``.

    ``"gaussian"``: ``exp(-(zt - focus)^2 / (2 sigma^2))``; ``"lorentzian"``
    (the confocal gate of a Gaussian beam, ``sigma`` the Rayleigh range):
    ``1 / (1 + ((zt - focus) / sigma)^2)``.

    Examples
    --------
    >>> focus_profile(3, 1.0, 1.0, "lorentzian").tolist()
    [0.5, 1.0, 0.5]
    """
    z = np.arange(n_z, dtype=np.float64)
    if model == "lorentzian":
        return (1.0 / (1.0 + ((z - focus_px) / sigma_px) ** 2)).astype(np.float32)
    if model != "gaussian":
        raise ValueError(f"unknown focus model {model!r}")
    return np.exp(-((z - focus_px) ** 2) / (2.0 * sigma_px**2)).astype(np.float32)


def _half_radius2(shape: tuple[int, int]) -> np.ndarray:
    """``(u^2 + v^2) / 2`` across a tile, ``u, v`` in [-1, 1] (float64)."""
    u = np.linspace(-1.0, 1.0, shape[0])[:, None]
    v = np.linspace(-1.0, 1.0, shape[1])[None, :]
    return (u**2 + v**2) / 2.0


def speckle(seed: int, z: np.ndarray, y: np.ndarray, x: np.ndarray, looks: int = 2,
            slice_index: int | None = None) -> np.ndarray:
    """Multiplicative speckle of mean 1: the mean of ``looks`` (1 to 3) unit exponentials per world voxel.

    ``slice_index`` None: one speckle per world voxel, whichever slice images
    it; otherwise the speckle that slice draws (independent between slices).

    Examples
    --------
    >>> axis = np.arange(4)
    >>> a, b = (speckle(0, axis, axis, axis, 1, k) for k in (0, 1))
    >>> bool(np.all(a > 0)), bool(np.array_equal(a, b))
    (True, False)
    """
    if not 1 <= looks <= 3:
        raise ValueError(f"speckle looks must be 1 to 3, not {looks}")
    stream = seed * 1009 + _SPECKLE_STREAM
    if slice_index is not None:
        stream = stream * 7919 + _PER_SLICE_STREAM + slice_index
    hashes = hash_coordinates(stream, z, y, x)
    total = -np.log(uniform_from_hash(hashes, 0))
    for part in range(1, looks):
        total += -np.log(uniform_from_hash(hashes, part))
    return (total / np.float32(looks)).astype(np.float32)


def transmission(attenuation_per_mm: np.ndarray, present: np.ndarray, axial_um: float) -> np.ndarray:
    """Round-trip Beer-Lambert transmission ``exp(-2 dz sum_{z'<z} mu present)`` along axis 0."""
    optical_depth = np.cumsum(attenuation_per_mm * present, axis=0, dtype=np.float64)
    optical_depth = np.concatenate([np.zeros_like(optical_depth[:1]), optical_depth[:-1]], axis=0)
    return np.exp(-2.0 * (axial_um / 1000.0) * optical_depth).astype(np.float32)


def tile_signal(
    phantom: Phantom, geometry: AcquisitionGeometry, seed: int, index: int, row: int, col: int
) -> np.ndarray:
    """The noise-free recorded intensity of one tile, float32 ``(z, y, x)``."""
    preset = geometry.preset
    z, y, x = geometry.tile_world_axes(index, row, col)
    box = slice_phantom(phantom, geometry, index, z, y, x)
    depth = np.arange(preset.tile_shape[0], dtype=np.float32)[:, None, None]
    cut = geometry.surface_depth(index, y, x)
    present = depth >= cut[None]
    gain = vignetting(preset.tile_shape[1:], preset.vignetting)[None] * focus_profile(
        preset.tile_shape[0], preset.focus_px, preset.focus_sigma_px, preset.focus_model
    )[:, None, None]
    signal = box.reflectivity * slice_speckle(seed, geometry, index, z, y, x)
    signal *= transmission(box.attenuation_per_mm, present, preset.axial_resolution_um)
    signal *= gain
    signal = np.where(present, signal, 0.0).astype(np.float32)
    if preset.field_curvature_px:
        signal = shift_alines(signal, field_curvature_map(preset))
    return signal


def _covering_box(turned: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integer world axes around some turned points, and the points in that box's pixels ``(2, ny, nx)``."""
    axes = [np.arange(np.floor(a.min()) - 1, np.ceil(a.max()) + 2) for a in turned]
    return axes[0], axes[1], np.stack([a - axis[0] for a, axis in zip(turned, axes)])


def _resample(volume: np.ndarray, points: np.ndarray, order: int) -> np.ndarray:
    """Every plane of ``volume`` at ``points`` ``(2, ny, nx)`` (spline ``order``)."""
    return np.stack([ndimage.map_coordinates(plane, points, order=order, mode="nearest") for plane in volume])


def slice_phantom(phantom: Phantom, geometry: AcquisitionGeometry, index: int,
                  z: np.ndarray, y: np.ndarray, x: np.ndarray) -> PhantomBox:
    """The phantom as slice ``index`` shows it on the unturned world box ``(z, y, x)``.

    Unturned slices: :meth:`Phantom.evaluate`. A turned slice: the phantom
    on the integer world box around the turned points
    (:meth:`AcquisitionGeometry.turned_world`), resampled there (bilinear;
    labels nearest).
    """
    if not geometry.slices[index].rotation_deg:
        return phantom.evaluate(z, y, x)
    box_y, box_x, points = _covering_box(geometry.turned_world(index, y, x))
    box = phantom.evaluate(z, box_y, box_x)
    return PhantomBox(_resample(box.reflectivity, points, 1), _resample(box.attenuation_per_mm, points, 1),
                      _resample(box.label, points, 0))


def slice_speckle(seed: int, geometry: AcquisitionGeometry, index: int,
                  z: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The speckle slice ``index`` shows on the unturned world box: that of the nearest turned world voxel.

    Anchored to the tissue, so a turned slice's speckle turns with it (not the
    unturned grid's, which would pin the next slice's overlap to no turn at all).
    """
    preset = geometry.preset
    options = {"looks": preset.speckle_looks, "slice_index": index if preset.speckle_per_slice else None}
    if not geometry.slices[index].rotation_deg:
        return speckle(seed, z, y, x, **options)
    box_y, box_x, points = _covering_box(geometry.turned_world(index, y, x))
    return _resample(speckle(seed, z, box_y, box_x, **options), points, 0)


def field_curvature_map(preset: Preset) -> np.ndarray:
    """Depth offset of each A-line of every tile, ``c (u^2 + v^2) / 2`` (0 at the centre, ``c`` at the corners)."""
    half = preset.field_curvature_px / 2.0
    return quadratic_map([half, half, 0.0], preset.tile_shape[1:])


def raw_frames(signal: np.ndarray, preset: Preset, rng: np.random.Generator, galvo_shift: int = 0) -> np.ndarray:
    """The frames the microscope writes for a tile, C-order ``(ny * n_repeat, nx + n_extra, nz)``.

    Frame ``y * n_repeat + r`` is repeat ``r`` of B-scan ``y``; its last
    ``n_extra`` A-lines (the galvo return) hold noise only, or, with
    ``galvo_shift``, the ``n_extra`` from ``nx + galvo_shift`` on (circularly:
    the A-lines are rolled by ``galvo_shift``).
    """
    nz, ny, nx = signal.shape
    frames = preset.noise_floor * rng.standard_exponential(
        (ny, preset.n_repeat, nx + preset.n_extra, nz), dtype=np.float32
    )
    frames[:, :, :nx, :] += signal.transpose(1, 2, 0)[:, None]
    if galvo_shift:
        frames = np.roll(frames, galvo_shift, axis=2)
    return frames.reshape(ny * preset.n_repeat, nx + preset.n_extra, nz)


def tile_noise_rng(seed: int, index: int, row: int, col: int) -> np.random.Generator:
    """The random generator of one tile's noise (independent of generation order)."""
    return np.random.default_rng([seed, 2, index, row, col])


def tissue_fraction(phantom: Phantom, geometry: AcquisitionGeometry, index: int, row: int, col: int) -> float:
    """Fraction of a tile's footprint inside the sample, 20 samples below the surface offset."""
    z, y, x = geometry.tile_world_axes(index, row, col)
    depth = np.array([z[0] + min(len(z) - 1, int(geometry.preset.surface_offset_px) + 20)])
    if not geometry.slices[index].rotation_deg:
        return float(phantom.sample_mask(depth, y, x).mean())
    box_y, box_x, points = _covering_box(geometry.turned_world(index, y, x))
    return float(_resample(phantom.sample_mask(depth, box_y, box_x).view(np.uint8), points, 0).mean())
