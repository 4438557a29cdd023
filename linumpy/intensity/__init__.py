"""Depth (axial) correction and intensity normalization of one slice.

Algorithms on arrays live in :mod:`~linumpy.intensity.surface`,
:mod:`~linumpy.intensity.focus`, :mod:`~linumpy.intensity.attenuation`,
:mod:`~linumpy.intensity.normalize` and :mod:`~linumpy.intensity.flatfield`;
:mod:`~linumpy.intensity.axial` and :mod:`~linumpy.intensity.slice_normalization`
stream them over an OME-Zarr slice block by block. ``docs/intensity.md``
gives the methods and formulas.
"""
