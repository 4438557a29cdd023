"""Scripts start fast: building a parser imports none of the heavy libraries.

``--help`` and argument errors must not pay for scipy, matplotlib, dask, zarr
or scikit-image (about 1-2 s of imports on a loaded machine); the library
code a script runs is imported inside its ``main``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BIN = Path(__file__).resolve().parents[1] / "bin"
HEAVY = ("matplotlib", "scipy", "dask", "zarr", "numcodecs", "skimage")
#: Scripts whose parser choices come from a module of the step's library, which
#: still imports the heavy libraries at module level (stack, stitching, intensity,
#: mosaic and simulate packages): not covered yet.
LIBRARY_CONSTANT_SCRIPTS = {
    "linum_axial_corr.py",
    "linum_create_mosaic_grid_3d.py",
    "linum_normalize.py",
    "linum_simulate_acquisition.py",
    "linum_stack_slices_motor.py",
    "linum_stitch_3d.py",
}

_PROBE = """
import importlib.util, json, sys
import linumpy.cli
for path in sys.argv[1:]:
    spec = importlib.util.spec_from_file_location("script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.build_parser()
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def _imported_after(paths: list[Path]) -> set[str]:
    """Top-level packages in ``sys.modules`` of a fresh interpreter after loading ``paths``."""
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, *map(str, paths)], capture_output=True, text=True, check=True
    )
    return set(json.loads(result.stdout))


def test_cli_and_script_parsers_import_no_heavy_library():
    scripts = sorted(p for p in BIN.glob("linum_*.py") if p.name not in LIBRARY_CONSTANT_SCRIPTS)
    assert len(scripts) >= 7
    assert _imported_after(scripts) & set(HEAVY) == set()


def test_probe_sees_a_heavy_import():
    """The probe is not blind: a script whose parser needs the library does import it."""
    assert "dask" in _imported_after([BIN / "linum_normalize.py"])
