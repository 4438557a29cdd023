"""Sizes and imaging parameters of the simulated acquisitions.

``tiny`` is for unit tests (seconds), ``small`` is the README demo (a minute
of pipeline on two cores), ``large`` is for benchmarks (about 2.6 GB of raw
tiles per slice, generated tile by tile).
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields, replace

from linumpy.errors import InputError


@dataclass(frozen=True)
class Preset:
    """Everything that shapes a simulated acquisition (besides the seed).

    Lengths are in voxels of the raw tiles (lateral pixels, axial samples)
    unless the name says ``_um``; see ``docs/simulator.md`` for the model.
    """

    name: str
    n_slices: int
    grid_shape: tuple[int, int]  # rows, cols
    tile_shape: tuple[int, int, int]  # z, y, x
    lateral_resolution_um: float
    axial_resolution_um: float
    overlap: float  # nominal fraction shared by neighbouring tiles
    slice_thickness_px: int  # vibratome cut, axial samples
    surface_offset_px: float  # mean depth of the cut surface in the tiles
    surface_tilt: tuple[float, float]  # axial samples per lateral pixel, (y, x)
    surface_bump_px: float  # amplitude (std) of the surface bumps
    stage_error_px: int  # true tile origin = nominal + U{-e..e}
    slice_shift_px: int  # per-slice random-walk step of the sample, U{-s..s}
    sample_radius: float  # sample semi-axes as a fraction of the mosaic size
    n_repeat: int
    n_extra: int
    n_bin_files: int
    top_z: int  # first A-line sample kept
    focus_px: float  # focal plane, tile depth index
    focus_sigma_px: float
    vignetting: float  # relative loss at the tile corners
    noise_floor: float  # mean of the exponential noise, per frame
    truth_step: int  # lateral sampling step of the ground-truth volumes
    # conditions of the test matrix (linumpy.simulate.conditions); the defaults are the original model
    focus_model: str = "gaussian"  # or "lorentzian" (Gaussian-beam confocal gate, focus_sigma_px = Rayleigh range)
    thickness_jitter: float = 0.0  # each cut removes slice_thickness_px * (1 + U(-j, j))
    attenuation_variation: float = 0.0  # std of the log of a smooth lateral gain on the tissue attenuation
    dark_fraction: float = 0.0  # fraction of the structured tissue that is dark
    dark_gain: float = 0.15  # reflectivity factor of the dark tissue
    cavity_radius_um: float = 0.0  # a cavity (agarose-filled) opening at slice 1's cut face
    galvo_shift_px: int = 0  # galvo-return band start = nx + U{-g..g} per slice (0: always nominal)
    field_curvature_px: float = 0.0  # A-lines sit c * (u^2 + v^2) / 2 deeper, u, v in [-1, 1] across the tile
    slice_rotation_deg: float = 0.0  # slice k >= 1 shows the sample turned about z by U(-r, r) degrees
    speckle_looks: int = 2  # unit exponentials averaged per world voxel (1: fully developed speckle)
    speckle_per_slice: bool = False  # each slice draws its own speckle (else one speckle per world voxel)

    def conditions(self) -> dict[str, object]:
        """The test-matrix conditions that differ from their defaults (empty for the standard presets)."""
        defaults = {f.name: f.default for f in fields(self) if f.default is not MISSING}
        return {name: getattr(self, name) for name, value in defaults.items() if getattr(self, name) != value}

    @property
    def tile_step_px(self) -> tuple[int, int]:
        """Nominal ``(y, x)`` distance between neighbouring tile origins."""
        return tuple(round(n * (1 - self.overlap)) for n in self.tile_shape[1:])


PRESETS = {
    "tiny": Preset(
        name="tiny", n_slices=3, grid_shape=(3, 2), tile_shape=(80, 64, 64),
        lateral_resolution_um=3.0, axial_resolution_um=1.5, overlap=0.2,
        slice_thickness_px=45, surface_offset_px=10.0, surface_tilt=(0.01, -0.015),
        surface_bump_px=1.0, stage_error_px=3, slice_shift_px=3, sample_radius=0.42,
        n_repeat=2, n_extra=8, n_bin_files=3, top_z=20, focus_px=30.0, focus_sigma_px=30.0,
        vignetting=0.3, noise_floor=0.01, truth_step=1,
    ),
    "small": Preset(
        name="small", n_slices=5, grid_shape=(4, 4), tile_shape=(96, 128, 128),
        lateral_resolution_um=3.0, axial_resolution_um=1.5, overlap=0.15,
        slice_thickness_px=50, surface_offset_px=12.0, surface_tilt=(0.008, -0.01),
        surface_bump_px=1.5, stage_error_px=4, slice_shift_px=4, sample_radius=0.32,
        n_repeat=1, n_extra=12, n_bin_files=12, top_z=20, focus_px=36.0, focus_sigma_px=35.0,
        vignetting=0.3, noise_floor=0.01, truth_step=1,
    ),
    "large": Preset(
        name="large", n_slices=4, grid_shape=(8, 8), tile_shape=(160, 256, 256),
        lateral_resolution_um=3.0, axial_resolution_um=1.5, overlap=0.15,
        slice_thickness_px=100, surface_offset_px=15.0, surface_tilt=(0.004, -0.005),
        surface_bump_px=2.0, stage_error_px=6, slice_shift_px=6, sample_radius=0.38,
        n_repeat=1, n_extra=16, n_bin_files=4, top_z=20, focus_px=50.0, focus_sigma_px=50.0,
        vignetting=0.3, noise_floor=0.01, truth_step=4,
    ),
}


#: Largest slice rotation the simulator accepts (degrees).
MAX_SLICE_ROTATION_DEG = 45.0


def get_preset(name: str, n_slices: int | None = None, galvo_shift_px: int = 0,
               slice_rotation_deg: float = 0.0) -> Preset:
    """Return a preset by name, optionally with another number of slices, a drifting galvo band or turned slices.

    Raises
    ------
    InputError
        For an unknown name, a number of slices below 1, a band shift outside ``[0, nx / 2)``
        or a slice rotation outside ``[0, MAX_SLICE_ROTATION_DEG]``.
    """
    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    preset = PRESETS[name]
    if n_slices is not None:
        if n_slices < 1:
            raise InputError(f"--n_slices must be >= 1, got {n_slices}")
        preset = replace(preset, n_slices=n_slices)
    if galvo_shift_px:
        if not 0 < galvo_shift_px < preset.tile_shape[2] // 2:
            raise InputError(f"--galvo_shift must be in [0, {preset.tile_shape[2] // 2}), got {galvo_shift_px}")
        preset = replace(preset, galvo_shift_px=galvo_shift_px)
    if slice_rotation_deg:
        if not 0 < slice_rotation_deg <= MAX_SLICE_ROTATION_DEG:
            raise InputError(f"--slice_rotation must be in [0, {MAX_SLICE_ROTATION_DEG:g}] degrees, "
                             f"got {slice_rotation_deg:g}")
        preset = replace(preset, slice_rotation_deg=float(slice_rotation_deg))
    return preset
