"""Choices of the simulator's parameters, free of heavy imports (parsers load it)."""

#: Raw tile layouts the simulator writes: the lab's native tile folders or 3D TIFF tiles.
LAYOUTS = ("native", "tiff")
