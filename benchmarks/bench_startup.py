#!/usr/bin/env python3
"""Benchmark: start-up of every ``bin/*.py`` script.

For each script: wall time of ``--help`` (best of 3, a fresh interpreter each
time) and, in one fresh interpreter, the time to load the script and build its
parser with the heavy libraries that this imported.

Usage::

    python benchmarks/bench_startup.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(__file__).resolve().parents[1] / "bin"
HEAVY = ("numpy", "matplotlib", "scipy", "dask", "zarr", "numcodecs", "skimage", "tifffile", "pydantic", "PIL", "tqdm")
_PROBE = """
import importlib.util, json, sys, time
start = time.perf_counter()
spec = importlib.util.spec_from_file_location("script", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
module.build_parser()
print(json.dumps([time.perf_counter() - start, sorted({name.split(".")[0] for name in sys.modules})]))
"""


def main() -> None:
    print(f"{'script':36s} {'--help s':>9s} {'parser s':>9s}  heavy imports")
    for script in sorted(BIN.glob("linum_*.py")):
        help_s = []
        for _ in range(3):
            start = time.perf_counter()
            subprocess.run([sys.executable, str(script), "--help"], capture_output=True, check=True)
            help_s.append(time.perf_counter() - start)
        probe = subprocess.run([sys.executable, "-c", _PROBE, str(script)], capture_output=True, text=True, check=True)
        parser_s, modules = json.loads(probe.stdout)
        heavy = sorted(set(modules) & set(HEAVY))
        print(f"{script.name:36s} {min(help_s):9.2f} {parser_s:9.2f}  {', '.join(heavy) or '-'}")


if __name__ == "__main__":
    main()
