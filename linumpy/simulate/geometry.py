"""Where each simulated tile and slice truly is, and where the cut surface lies.

Frames (all in voxels of the raw tiles):

- *world*: the phantom's frame (:mod:`linumpy.simulate.phantom`);
- *mosaic frame* of a slice: nominal grid frame of that slice, tile ``(r, c)``
  nominally at ``(r * step_y, c * step_x)``; its true origin adds an integer
  stage error. A world point ``(Y, X)`` appears at mosaic pixel
  ``(Y + dy, X + dx)`` of slice ``k``, ``(dy, dx)`` the sample shift of that
  slice (slice 0: ``(0, 0)``);
- *tile depth*: tile sample ``zt`` of slice ``k`` images world depth
  ``Z = k * slice_thickness_px + zt``.

The cut surface of slice ``k`` sits at tile depth
``surface_offset + cut_offset_k + tilt . (Y - cy, X - cx) + bumps_k(Y, X)``, in world lateral
coordinates: the tissue is rigid, only the cut changes. ``cut_offset_k`` is 0
unless the cut thickness varies (``thickness_jitter``): the stage still moves
by the nominal thickness, the cut removes ``T (1 + U(-j, j))``.

With ``slice_rotation_deg`` the sample of slice ``k >= 1`` is also turned
about z by ``rotation_deg_k`` about the sample centre ``c`` (slice 0's
mosaic centre, world frame): the tissue seen at the unturned world point
``p`` (mosaic minus sample shift) is the phantom's ``R(rotation_deg_k) (p - c) + c``,
the rotation of :func:`linumpy.stack.rotation.rotate_image`. The speckle
turns with the tissue; the cut stays on the unturned frame (the vibratome's).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from linumpy.simulate.fields import SmoothField
from linumpy.simulate.presets import Preset

#: Stage position of tile (0, 0) of slice 0, millimetres (arbitrary).
STAGE_ORIGIN_MM = (12.5, 8.0, 3.0)  # x, y, z


@dataclass(frozen=True)
class SliceGeometry:
    """Ground truth placement of one simulated slice.

    Attributes
    ----------
    slice_id : int
    world_z_offset_px : int
        World depth of the slice's tile sample 0.
    sample_shift_px : (int, int)
        ``(dy, dx)``: world ``(Y, X)`` appears at mosaic ``(Y + dy, X + dx)``.
    tile_origins_px : dict
        ``{(row, col): (y, x)}`` true tile origins in the mosaic frame.
    """

    slice_id: int
    world_z_offset_px: int
    sample_shift_px: tuple[int, int]
    tile_origins_px: dict[tuple[int, int], tuple[int, int]]
    bumps: SmoothField
    cut_offset_px: float = 0.0  # true cut depth minus the nominal one (thickness_jitter)
    galvo_shift_px: int = 0
    rotation_deg: float = 0.0  # the sample turned about z (slice_rotation_deg), see the module docstring


class AcquisitionGeometry:
    """Tile and slice placement of a simulated acquisition, drawn from the seed.

    Parameters
    ----------
    preset : Preset
    seed : int

    Examples
    --------
    >>> from linumpy.simulate.presets import get_preset
    >>> geometry = AcquisitionGeometry(get_preset("tiny"), 0)
    >>> geometry.mosaic_shape
    (166, 115)
    """

    def __init__(self, preset: Preset, seed: int):
        self.preset = preset
        rows, cols = preset.grid_shape
        step_y, step_x = preset.tile_step_px
        _, ny, nx = preset.tile_shape
        self.mosaic_shape = ((rows - 1) * step_y + ny, (cols - 1) * step_x + nx)
        self.center_px = (self.mosaic_shape[0] / 2.0, self.mosaic_shape[1] / 2.0)
        rng = np.random.default_rng([seed, 3])
        galvo = preset.galvo_shift_px
        galvo_shifts = np.random.default_rng([seed, 5]).integers(-galvo, galvo + 1, preset.n_slices) if galvo else None
        shift = np.zeros(2, np.int64)
        # bumps: 2D fields (evaluated at z = 0), 300-900 um wavelengths
        bump_waves = (300.0 / preset.lateral_resolution_um, 900.0 / preset.lateral_resolution_um)
        self.slices = []
        jitter = np.random.default_rng([seed, 6]).uniform(-1.0, 1.0, preset.n_slices) * preset.thickness_jitter
        cut_offsets = np.concatenate([[0.0], np.cumsum(jitter[:-1])]) * preset.slice_thickness_px
        turn = preset.slice_rotation_deg
        rotations = np.random.default_rng([seed, 8]).uniform(-turn, turn, preset.n_slices) if turn else None
        for k in range(preset.n_slices):
            if k > 0:
                shift = shift + rng.integers(-preset.slice_shift_px, preset.slice_shift_px + 1, 2)
            errors = rng.integers(-preset.stage_error_px, preset.stage_error_px + 1, (rows, cols, 2))
            origins = {
                (r, c): (int(r * step_y + errors[r, c, 0]), int(c * step_x + errors[r, c, 1]))
                for r in range(rows)
                for c in range(cols)
            }
            bumps = SmoothField(np.random.default_rng([seed, 4, k]), 6, [(1.0, 2.0), bump_waves, bump_waves])
            self.slices.append(
                SliceGeometry(k, k * preset.slice_thickness_px, (int(shift[0]), int(shift[1])), origins, bumps,
                              float(cut_offsets[k]), 0 if galvo_shifts is None else int(galvo_shifts[k]),
                              0.0 if rotations is None or k == 0 else round(float(rotations[k]), 3))
            )

    def surface_depth(self, index: int, world_y: np.ndarray, world_x: np.ndarray) -> np.ndarray:
        """Tile depth (float, samples) of slice ``index``'s cut surface on a world box ``(ny, nx)``."""
        preset = self.preset
        y = np.asarray(world_y, np.float64)[:, None] - self.center_px[0]
        x = np.asarray(world_x, np.float64)[None, :] - self.center_px[1]
        bumps = self.slices[index].bumps.evaluate_2d(world_y, world_x)
        tilt_y, tilt_x = preset.surface_tilt
        offset = preset.surface_offset_px + self.slices[index].cut_offset_px
        return (offset + tilt_y * y + tilt_x * x + preset.surface_bump_px * bumps).astype(np.float32)

    @property
    def surface_origin_px(self) -> tuple[int, int]:
        """Mosaic-frame ``(y, x)`` of pixel (0, 0) of the surface maps: the frame
        is widened by the largest stage error so that every tile lies inside."""
        margin = self.preset.stage_error_px
        return (-margin, -margin)

    def surface_in_mosaic(self, index: int) -> np.ndarray:
        """The cut surface depth of slice ``index`` on its (widened) mosaic frame."""
        dy, dx = self.slices[index].sample_shift_px
        oy, ox = self.surface_origin_px
        margin = self.preset.stage_error_px
        y = np.arange(oy, self.mosaic_shape[0] + margin) - dy
        x = np.arange(ox, self.mosaic_shape[1] + margin) - dx
        return self.surface_depth(index, y, x)

    def tile_world_axes(self, index: int, row: int, col: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World coordinates ``(Z, Y, X)`` of the voxels of tile ``(row, col)`` of slice ``index``."""
        geometry = self.slices[index]
        nz, ny, nx = self.preset.tile_shape
        y0, x0 = geometry.tile_origins_px[(row, col)]
        dy, dx = geometry.sample_shift_px
        return (
            geometry.world_z_offset_px + np.arange(nz),
            y0 - dy + np.arange(ny),
            x0 - dx + np.arange(nx),
        )

    def turned_world(self, index: int, world_y: np.ndarray, world_x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Phantom ``(Y, X)`` of the tissue slice ``index`` shows at the unturned world box ``(ny, nx)`` (float64).

        The identity (broadcast) when the slice is not turned.
        """
        y = np.asarray(world_y, np.float64)[:, None] - self.center_px[0]
        x = np.asarray(world_x, np.float64)[None, :] - self.center_px[1]
        theta = np.radians(self.slices[index].rotation_deg)
        return (np.cos(theta) * y - np.sin(theta) * x + self.center_px[0],
                np.sin(theta) * y + np.cos(theta) * x + self.center_px[1])

    def unturned_world(self, index: int, point: tuple[float, float]) -> tuple[float, float]:
        """The unturned world ``(Y, X)`` where slice ``index`` shows the phantom point ``point`` (inverse of
        :meth:`turned_world`)."""
        if not self.slices[index].rotation_deg:
            return point
        y, x = point[0] - self.center_px[0], point[1] - self.center_px[1]
        theta = np.radians(self.slices[index].rotation_deg)
        return (float(np.cos(theta) * y + np.sin(theta) * x + self.center_px[0]),
                float(-np.sin(theta) * y + np.cos(theta) * x + self.center_px[1]))

    def motor_position_mm(self, index: int, row: int, col: int) -> dict[str, float]:
        """Recorded (nominal) stage position of a tile: the grid step, no error."""
        preset = self.preset
        step_y, step_x = preset.tile_step_px
        res_mm = preset.lateral_resolution_um / 1000.0
        x0, y0, z0 = STAGE_ORIGIN_MM
        return {
            "x": round(x0 + col * step_x * res_mm, 6),
            "y": round(y0 + row * step_y * res_mm, 6),
            "z": round(z0 + index * preset.slice_thickness_px * preset.axial_resolution_um / 1000.0, 6),
        }

    def world_extent(self) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
        """``((z0, z1), (y0, y1), (x0, x1))`` world box covered by all tiles of all slices."""
        nz, ny, nx = self.preset.tile_shape
        boxes = []
        for index, geometry in enumerate(self.slices):
            dy, dx = geometry.sample_shift_px
            ys = [y for y, _ in geometry.tile_origins_px.values()]
            xs = [x for _, x in geometry.tile_origins_px.values()]
            boxes.append((min(ys) - dy, max(ys) + ny - dy, min(xs) - dx, max(xs) + nx - dx))
        z1 = self.slices[-1].world_z_offset_px + nz
        return (
            (0, z1),
            (min(b[0] for b in boxes), max(b[1] for b in boxes)),
            (min(b[2] for b in boxes), max(b[3] for b in boxes)),
        )
