"""Reading and writing files: OME-Zarr volumes, raw tiles, tables and sidecars."""
