"""linumpy: reconstruct serial-section OCT acquisitions into OME-Zarr volumes."""

__version__ = "0.1.0"
