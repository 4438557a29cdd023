"""Scripts start fast: building a parser imports none of the heavy libraries.

``--help`` and argument errors must not pay for numpy, scipy, matplotlib, dask,
zarr or scikit-image (about 1-2 s of imports on a loaded machine; numpy alone
0.1 s of the 0.17 CPU s a ``--help`` took); the library code a script runs is
imported inside its ``main``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BIN = Path(__file__).resolve().parents[1] / "bin"
HEAVY = ("numpy", "matplotlib", "scipy", "dask", "zarr", "numcodecs", "skimage")

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

_TIMED_PROBE = """
import importlib.util, json, sys, time
import linumpy.cli
seconds = {}
for path in sys.argv[1:]:
    start = time.perf_counter()
    spec = importlib.util.spec_from_file_location("script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.build_parser()
    seconds[path] = time.perf_counter() - start
print(json.dumps(seconds))
"""


def _imported_after(paths: list[Path]) -> set[str]:
    """Top-level packages in ``sys.modules`` of a fresh interpreter after loading ``paths``."""
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, *map(str, paths)], capture_output=True, text=True, check=True
    )
    return set(json.loads(result.stdout))


def test_cli_and_script_parsers_import_no_heavy_library():
    scripts = sorted(BIN.glob("linum_*.py"))
    assert len(scripts) >= 13
    assert _imported_after(scripts) & set(HEAVY) == set()


def test_probe_sees_a_heavy_import(tmp_path):
    """The probe is not blind: a script whose parser needs a heavy library does import it."""
    script = tmp_path / "linum_heavy.py"
    script.write_text("import argparse\nimport dask.array\n\n\ndef build_parser():\n    return argparse.ArgumentParser()\n")
    assert "dask" in _imported_after([script])


def test_every_parser_builds_fast():
    """Loading every script and building its parser takes well under 0.5 s a script."""
    scripts = sorted(BIN.glob("linum_*.py"))
    result = subprocess.run(
        [sys.executable, "-c", _TIMED_PROBE, *map(str, scripts)], capture_output=True, text=True, check=True
    )
    seconds = json.loads(result.stdout)
    assert max(seconds.values()) < 0.5, seconds
