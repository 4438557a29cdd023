"""A procedural brain-like phantom: reflectivity and attenuation anywhere.

The phantom lives in the *world* frame: integer voxel coordinates ``(Z, Y, X)``
at the tiles' resolution, ``Z`` along depth (0 is the top of slice 0's tiles),
``Y``/``X`` laterally (0 is the origin of slice 0's mosaic frame). It is never
stored whole: :meth:`Phantom.evaluate` computes any box on demand, so tiles of
any size can be simulated one at a time.

Content (see ``docs/simulator.md``):

- a sample (elliptical cross-section with a lumpy border, slowly changing
  with depth) in agarose;
- inside, three tissue classes from thresholding a smooth random field, each
  with its own reflectivity and attenuation, modulated by a fine texture;
- thin bright fibres (where two smooth fields are both near zero);
- small bright blobs (cells), at most one per cell of a hashed lattice;
- reference columns: vertical cylinders of one class with no texture,
  fibres or blobs, where the tissue is homogeneous (for attenuation tests);
- optional test-matrix conditions (:class:`Conditions`): dark tissue
  regions, attenuation that varies by region, an agarose-filled cavity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from linumpy.simulate.fields import SmoothField, hash_coordinates, mix64, uniform_from_hash
from linumpy.simulate.presets import Preset


@dataclass(frozen=True)
class TissueClass:
    """Optical properties of one label of the phantom."""

    label: int
    name: str
    reflectivity: float
    attenuation_per_mm: float


#: Label 0 is the agarose around the sample; 1-3 are tissue.
TISSUE_CLASSES = (
    TissueClass(0, "agarose", 0.03, 0.3),
    TissueClass(1, "grey_matter", 0.35, 2.0),
    TissueClass(2, "mixed", 0.6, 4.0),
    TissueClass(3, "white_matter", 1.0, 8.0),
)
_REFLECTIVITY = np.array([c.reflectivity for c in TISSUE_CLASSES], np.float32)
_ATTENUATION = np.array([c.attenuation_per_mm for c in TISSUE_CLASSES], np.float32)

_TEXTURE_AMPLITUDE = 0.25
_FIBRE_WIDTH = 0.12  # in units of the fibre fields' standard deviation
_FIBRE_REFLECTIVITY = 1.5
_BLOB_REFLECTIVITY = 0.8
_BLOB_DENSITY = 0.3
_BLOB_CELL_UM = (12.0, 18.0, 18.0)
_BLOB_RADIUS_UM = (3.0, 5.0)
_REGION_THRESHOLDS = (-0.4, 0.5)


@dataclass(frozen=True)
class ReferenceColumn:
    """A vertical cylinder of homogeneous tissue, in world pixels."""

    center_px: tuple[float, float]
    radius_px: float
    label: int


@dataclass(frozen=True)
class Cavity:
    """An agarose-filled ellipsoid inside the sample, in world pixels."""

    center_px: tuple[float, float, float]
    semi_axes_px: tuple[float, float, float]

    def mask(self, z: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Boolean ``(nz, ny, nx)``: inside the cavity."""
        r2 = [((np.asarray(a, np.float64) - c) / s) ** 2
              for a, c, s in zip((z, y, x), self.center_px, self.semi_axes_px)]
        return r2[0][:, None, None] + r2[1][None, :, None] + r2[2][None, None, :] < 1.0


class Conditions:
    """The phantom's optional test-matrix conditions, drawn from their own random stream.

    The standard presets use none of them, so their phantom is unchanged.

    - *dark tissue*: where a smooth field exceeds its ``1 - dark_fraction``
      quantile, the structured tissue's reflectivity is multiplied by ``dark_gain``;
    - *regional attenuation*: the attenuation of the structured tissue is
      multiplied by ``exp(attenuation_variation * g)``, ``g`` a smooth
      lateral field of unit variance (300-900 um wavelengths);
    - *cavity*: an agarose-filled ellipsoid centred on slice 1's mean cut
      depth, so it opens at that cut face.
    """

    def __init__(self, seed: int, preset: Preset, center_px: tuple[float, float], semi_axes_px: tuple[float, float]):
        rng = np.random.default_rng([seed, 5])
        lateral, axial = preset.lateral_resolution_um, preset.axial_resolution_um
        self.dark_fraction = preset.dark_fraction
        self.dark_gain = preset.dark_gain
        self.attenuation_variation = preset.attenuation_variation
        self.dark = SmoothField(rng, 10, [(300.0 / axial, 800.0 / axial)] + [(150.0 / lateral, 400.0 / lateral)] * 2)
        self.dark_threshold = float(stats.norm.ppf(1.0 - preset.dark_fraction)) if preset.dark_fraction > 0 else np.inf
        self.attenuation = SmoothField(rng, 8, [(1.0, 2.0)] + [(300.0 / lateral, 900.0 / lateral)] * 2)
        self.cavity = None
        if preset.cavity_radius_um > 0:
            radius = preset.cavity_radius_um / lateral
            cz = preset.slice_thickness_px + preset.surface_offset_px
            cy = center_px[0] + 0.1 * semi_axes_px[0]
            cx = center_px[1] - 0.35 * semi_axes_px[1]
            self.cavity = Cavity((cz, cy, cx), (preset.cavity_radius_um / axial, radius, radius))

    def apply(self, z: np.ndarray, y: np.ndarray, x: np.ndarray, structured: np.ndarray,
              reflectivity: np.ndarray, attenuation: np.ndarray, label: np.ndarray) -> None:
        """Apply the conditions in place to a box of the phantom."""
        if self.dark_fraction > 0:
            dark = structured & (self.dark.evaluate(z, y, x) > self.dark_threshold)
            reflectivity[dark] *= np.float32(self.dark_gain)
        if self.attenuation_variation > 0:
            gain = np.exp(self.attenuation_variation * self.attenuation.evaluate_2d(y, x)).astype(np.float32)
            attenuation *= np.where(structured, gain[None], np.float32(1.0))
        if self.cavity is not None:
            hole = self.cavity.mask(z, y, x) & (label > 0)
            reflectivity[hole] = _REFLECTIVITY[0]
            attenuation[hole] = _ATTENUATION[0]
            label[hole] = 0


@dataclass(frozen=True)
class PhantomBox:
    """The phantom evaluated on a box: three ``(nz, ny, nx)`` arrays."""

    reflectivity: np.ndarray  # float32
    attenuation_per_mm: np.ndarray  # float32
    label: np.ndarray  # uint8


class Phantom:
    """The procedural phantom of a simulated acquisition.

    Parameters
    ----------
    seed : int
        Random seed; the same seed gives the same phantom.
    preset : Preset
        Resolutions and sample size.
    extent_px : (int, int)
        ``(height, width)`` of slice 0's mosaic frame; the sample is centred
        in it with semi-axes ``preset.sample_radius`` times this extent.

    Examples
    --------
    >>> from linumpy.simulate.presets import get_preset
    >>> phantom = Phantom(0, get_preset("tiny"), (166, 115))
    >>> box = phantom.evaluate(np.arange(4), np.arange(80, 84), np.arange(50, 53))
    >>> box.reflectivity.shape
    (4, 4, 3)
    """

    def __init__(self, seed: int, preset: Preset, extent_px: tuple[int, int]):
        rng = np.random.default_rng([seed, 1])
        lateral, axial = preset.lateral_resolution_um, preset.axial_resolution_um

        def waves(z_um: tuple[float, float], yx_um: tuple[float, float]) -> list[tuple[float, float]]:
            return [(z_um[0] / axial, z_um[1] / axial)] + [(yx_um[0] / lateral, yx_um[1] / lateral)] * 2

        self.seed = seed
        self.center_px = (extent_px[0] / 2.0, extent_px[1] / 2.0)
        self.semi_axes_px = (preset.sample_radius * extent_px[0], preset.sample_radius * extent_px[1])
        self.border = SmoothField(rng, 6, waves((1.0, 2.0), (150.0, 400.0)))  # 2D: used at z = 0
        self.regions = SmoothField(rng, 10, waves((200.0, 600.0), (150.0, 450.0)))
        self.texture = SmoothField(rng, 12, waves((15.0, 40.0), (20.0, 60.0)))
        self.fibre_a = SmoothField(rng, 10, waves((100.0, 300.0), (80.0, 250.0)))
        self.fibre_b = SmoothField(rng, 10, waves((100.0, 300.0), (80.0, 250.0)))
        self.depth_wave = (2 * np.pi / rng.uniform(400.0, 800.0) * axial, rng.uniform(0, 2 * np.pi))
        self.blob_cell_px = tuple(
            max(2, round(size / res)) for size, res in zip(_BLOB_CELL_UM, (axial, lateral, lateral))
        )
        self.blob_radius_um = _BLOB_RADIUS_UM
        self.resolution_um = (axial, lateral, lateral)
        cy, cx = self.center_px
        ay, ax = self.semi_axes_px
        radius = 0.2 * min(ay, ax)
        self.columns = (
            ReferenceColumn((cy - 0.35 * ay, cx - 0.3 * ax), radius, 1),
            ReferenceColumn((cy + 0.35 * ay, cx + 0.3 * ax), radius, 3),
        )
        self.conditions = Conditions(seed, preset, self.center_px, self.semi_axes_px) if preset.conditions() else None

    def sample_mask(self, z: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Boolean ``(nz, ny, nx)``: inside the sample (tissue) rather than agarose."""
        z, y, x = (np.asarray(a, np.float64) for a in (z, y, x))
        omega, phase = self.depth_wave
        swell = 1.0 + 0.05 * np.sin(omega * z + phase)  # (nz,)
        ry = ((y - self.center_px[0]) / self.semi_axes_px[0])[None, :, None] / swell[:, None, None]
        rx = ((x - self.center_px[1]) / self.semi_axes_px[1])[None, None, :] / swell[:, None, None]
        border = 1.0 + 0.08 * self.border.evaluate_2d(y, x)
        return ry**2 + rx**2 < border[None] ** 2

    def column_masks(self, y: np.ndarray, x: np.ndarray) -> list[np.ndarray]:
        """Boolean ``(ny, nx)`` footprint of each reference column."""
        y, x = np.asarray(y, np.float64), np.asarray(x, np.float64)
        return [
            (y[:, None] - c.center_px[0]) ** 2 + (x[None, :] - c.center_px[1]) ** 2 <= c.radius_px**2
            for c in self.columns
        ]

    def evaluate(self, z: np.ndarray, y: np.ndarray, x: np.ndarray) -> PhantomBox:
        """Evaluate the phantom on the box spanned by three 1D world axes.

        Parameters
        ----------
        z, y, x : array_like
            World coordinates (voxels) along each axis; integers for speckle-
            and cell-exact results, any values otherwise.

        Returns
        -------
        PhantomBox
        """
        inside = self.sample_mask(z, y, x)
        region = self.regions.evaluate(z, y, x)
        label = 1 + (region >= _REGION_THRESHOLDS[0]).view(np.uint8) + (region >= _REGION_THRESHOLDS[1]).view(np.uint8)
        homogeneous = np.zeros(inside.shape[1:], bool)
        for column, footprint in zip(self.columns, self.column_masks(y, x)):
            label[:, footprint] = column.label
            homogeneous |= footprint
        label *= inside.view(np.uint8)
        structured = inside & ~homogeneous[None]

        reflectivity = _REFLECTIVITY[label]
        texture = 1.0 + _TEXTURE_AMPLITUDE * self.texture.evaluate(z, y, x)
        reflectivity = np.where(structured, reflectivity * np.maximum(texture, 0.0), reflectivity)
        fibres = np.exp(
            -(self.fibre_a.evaluate(z, y, x) ** 2 + self.fibre_b.evaluate(z, y, x) ** 2) / (2 * _FIBRE_WIDTH**2)
        )
        blobs = self.blobs(z, y, x)
        extra = _FIBRE_REFLECTIVITY * fibres + _BLOB_REFLECTIVITY * blobs
        reflectivity = np.where(structured, reflectivity + extra, reflectivity).astype(np.float32)
        attenuation = _ATTENUATION[label]
        if self.conditions is not None:
            self.conditions.apply(z, y, x, structured, reflectivity, attenuation, label)
        return PhantomBox(reflectivity, attenuation, label)

    def blobs(self, z: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Cell-like blobs in [0, 1]: at most one ellipsoid per lattice cell.

        Each cell of a regular lattice holds a blob with probability
        ``_BLOB_DENSITY``, its centre and radius drawn from a hash of the
        cell index and placed so that it stays inside its cell. Profile
        ``(1 - d^2)^2`` inside the ellipsoid (``d`` its normalised radius),
        zero outside.
        """
        axes = [np.asarray(a, np.float64) for a in (z, y, x)]
        cells, inverse = zip(
            *(np.unique(np.floor(a / s).astype(np.int64), return_inverse=True) for a, s in zip(axes, self.blob_cell_px))
        )
        first = hash_coordinates(self.seed + 7, *cells)  # one hash per cell
        second = mix64(first)
        span = self.blob_radius_um[1] - self.blob_radius_um[0]
        radius_um = self.blob_radius_um[0] + span * uniform_from_hash(second, 1)
        radius_um = np.where(uniform_from_hash(second, 0) < _BLOB_DENSITY, radius_um, 0.0).ravel()
        n_y, n_x = len(cells[1]), len(cells[2])
        cell_of_voxel = (inverse[0][:, None, None] * n_y + inverse[1][None, :, None]) * n_x + inverse[2][None, None, :]
        radius_of_voxel = radius_um[cell_of_voxel]
        distance2 = np.zeros(cell_of_voxel.shape, np.float32)
        for axis, (coords, cell, size, res) in enumerate(zip(axes, cells, self.blob_cell_px, self.resolution_um)):
            shape = [1, 1, 1]
            shape[axis] = -1
            radius_px = np.maximum(radius_um / res, 1e-6)
            margin = np.minimum(radius_px, size / 2.0)
            centre = (margin + uniform_from_hash(first, axis).ravel() * (size - 2 * margin)).astype(np.float32)
            cell_start = (cell * size)[inverse[axis]].reshape(shape)
            within = (coords.reshape(shape) - cell_start).astype(np.float32)
            distance2 += ((within - centre[cell_of_voxel]) / radius_px.astype(np.float32)[cell_of_voxel]) ** 2
        inside = (radius_of_voxel > 0) & (distance2 < 1.0)
        return np.where(inside, (1.0 - distance2) ** 2, 0.0).astype(np.float32)
