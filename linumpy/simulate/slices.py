"""Normalised slices cut from the phantom, each turned by a known angle about z.

For the stack's rotation refinement and slice interpolation, which work on
processed slices: slice ``k`` holds world planes ``[k * thickness, k *
thickness + depth)`` of the phantom's reflectivity, turned by ``angles_deg[k]``
about the lateral centre (:func:`linumpy.stack.rotation.rotate_image`; the
corners that leave the field are zero, like agarose). A quick ground truth
for the steps after normalisation; the raw-tile simulator turns slices too
(``slice_rotation_deg``), through the whole chain.

Examples
--------
>>> cut = phantom_slices(0, [0.0, 2.0], (64, 64), thickness_px=10, depth_px=14)
>>> len(cut.slices), cut.slices[0].shape, cut.world.shape
(2, (14, 64, 64), (24, 64, 64))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from linumpy.simulate.phantom import Phantom
from linumpy.simulate.presets import get_preset
from linumpy.stack.rotation import rotate_image


@dataclass(frozen=True)
class PhantomSlices:
    """Slices and their truth: ``world`` is the unrotated phantom on the same voxels."""

    slices: list[np.ndarray]
    world: np.ndarray
    angles_deg: list[float]
    thickness_px: int


def phantom_slices(
    seed: int,
    angles_deg: Sequence[float],
    shape_yx: tuple[int, int],
    thickness_px: int,
    depth_px: int,
    voxel_um: float = 10.0,
    speckle: bool = False,
) -> PhantomSlices:
    """Cut ``len(angles_deg)`` slices of ``depth_px`` planes every ``thickness_px`` from the phantom.

    The phantom (``tiny`` preset textures, ``seed``) is sampled at
    ``voxel_um`` isotropic voxels over a ``shape_yx`` field. With ``speckle``
    each slice is multiplied by its own speckle (mean of two unit
    exponentials, drawn after the rotation, as the OCT records it).
    """
    preset = get_preset("tiny")
    scale = voxel_um / preset.lateral_resolution_um
    phantom = Phantom(seed, preset, (shape_yx[0] * scale, shape_yx[1] * scale))
    n = len(angles_deg)
    z = np.arange((n - 1) * thickness_px + depth_px) * voxel_um / preset.axial_resolution_um
    y = np.arange(shape_yx[0]) * scale
    x = np.arange(shape_yx[1]) * scale
    world = phantom.evaluate(z, y, x).reflectivity.astype(np.float32)
    slices = []
    for k, angle in enumerate(angles_deg):
        planes = world[k * thickness_px : k * thickness_px + depth_px]
        turned = np.stack([rotate_image(p, float(angle), order=3) for p in planes])
        if speckle:
            turned *= np.random.default_rng([seed, 7, k]).gamma(2.0, 0.5, turned.shape)
        slices.append(turned.astype(np.float32))
    return PhantomSlices(slices, world, [float(a) for a in angles_deg], thickness_px)
