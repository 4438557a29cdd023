"""Choices and defaults of the OME-Zarr readers and writers that the scripts' parsers need.

Kept free of heavy imports (numpy included) so that ``linumpy.cli`` and a
script's parser load none.
"""

#: Default number of 2x lateral levels above level 0.
DEFAULT_N_LEVELS = 5
#: OME-NGFF versions read and written.
NGFF_VERSIONS = ("0.4", "0.5")
