"""A container's task starts with the axial correction's kernels compiled: a prepared read-only cache (the
image's) seeds numba's cache directory, and the signatures compiled ahead are those the step calls (issue #14)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from numba.core.caching import UserProvidedCacheLocator

import linumpy
from linumpy.intensity import attenuation_kernels, kernel_cache, surface_kernels

ROOT = Path(__file__).resolve().parents[1]
#: Where this process imports linumpy from: the fresh interpreter must import the same files (numba names a
#: module's cache directory from its path).
PACKAGE_PARENT = Path(linumpy.__file__).resolve().parents[1]

#: Run in a fresh interpreter: the axial correction of a small synthetic slice, then what numba did.
STEP = """
import json, sys
sys.path.insert(0, {tests!r})
from test_axial_corr import DZ_MM, synthetic_volume
from linumpy.intensity import attenuation_kernels, surface_kernels
from linumpy.intensity.axial import correct_slice
from linumpy.io.zarr import save_omezarr

volume, _, _ = synthetic_volume((100, 80, 80))
save_omezarr(volume, {source!r}, (DZ_MM, 0.003, 0.003), n_levels=0)
correct_slice({source!r}, {output!r}, n_levels=1)
kernels = [(kernel, set(signatures)) for module in (attenuation_kernels, surface_kernels)
           for kernel, signatures in module.SIGNATURES.items()]
print(json.dumps({{
    "compiled": sum(sum(kernel.stats.cache_misses.values()) for kernel, _ in kernels),
    "loaded": sum(sum(kernel.stats.cache_hits.values()) for kernel, _ in kernels),
    "undeclared": [f"{{kernel.__name__}}{{signature}}" for kernel, declared in kernels
                   for signature in kernel.signatures if signature not in declared],
}}))
"""


def prepared_cache(seed: Path) -> None:
    """A prepared cache as an image holds it: every declared signature compiled (here: loaded from this
    checkout's cache, compiled there once), its files laid out as under ``NUMBA_CACHE_DIR``."""
    kernel_cache.compile_kernels()
    for module in (attenuation_kernels, surface_kernels):
        source = Path(next(iter(module.SIGNATURES))._cache._cache_path)
        target = seed / UserProvidedCacheLocator.get_suitable_cache_subpath(module.__file__)
        target.mkdir(parents=True, exist_ok=True)
        for name in source.glob(f"{Path(module.__file__).stem}.*.nb[ic]"):
            shutil.copyfile(name, target / name.name)


def read_only(tree: Path) -> dict[str, float]:
    """Make ``tree`` read-only for everyone; its files' modification times."""
    times = {}
    for path in sorted(tree.rglob("*"), reverse=True):
        times[str(path)] = path.stat().st_mtime
        path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH | (0 if path.is_file() else 0o555))
    return times


def test_a_fresh_process_seeded_from_a_read_only_prepared_cache_compiles_nothing(tmp_path):
    """numba passes a read-only cache directory over, so the image's cache is copied into the writable
    ``NUMBA_CACHE_DIR`` when the kernels are imported: a fresh interpreter then loads every kernel the step
    calls and compiles none, the prepared cache is left as it was, and every signature the step called is
    one compiled ahead (a new one would make each container's task compile it: declare it in SIGNATURES)."""
    seed = tmp_path / "seed"
    prepared_cache(seed)
    before = read_only(seed)
    environment = {**os.environ, "PYTHONPATH": str(PACKAGE_PARENT), "NUMBA_CACHE_DIR": str(tmp_path / "cache"),
                   kernel_cache.SEED_VARIABLE: str(seed)}
    script = STEP.format(tests=str(ROOT / "tests"), source=str(tmp_path / "in.ome.zarr"),
                         output=str(tmp_path / "out.ome.zarr"))
    done = subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True, text=True,
                          check=True)
    numba_did = json.loads(done.stdout.strip().splitlines()[-1])
    assert numba_did["undeclared"] == []
    assert numba_did["compiled"] == 0
    assert numba_did["loaded"] > 0
    assert {str(path): path.stat().st_mtime for path in sorted(seed.rglob("*"), reverse=True)} == before
    assert sorted(p.name for p in (tmp_path / "cache").rglob("*.nbi")) == sorted(p.name for p in seed.rglob("*.nbi"))


def test_seeding_copies_only_the_missing_files_and_says_when_it_cannot(tmp_path, caplog):
    """Files already in the cache directory are kept (numba checks them against their source); an unwritable
    cache directory is a warning, not an error (the kernels then compile)."""
    seed, cache = tmp_path / "seed", tmp_path / "cache"
    (seed / "module_abc").mkdir(parents=True)
    (seed / "module_abc" / "k.nbi").write_text("seed index")
    (seed / "module_abc" / "k.1.nbc").write_text("seed code")
    (cache / "module_abc").mkdir(parents=True)
    (cache / "module_abc" / "k.nbi").write_text("own index")
    assert kernel_cache.seed_cache(seed, cache) == 1
    assert (cache / "module_abc" / "k.nbi").read_text() == "own index"
    assert (cache / "module_abc" / "k.1.nbc").read_text() == "seed code"
    assert not list(cache.rglob(".*partial*"))
    assert kernel_cache.seed_cache(seed, cache) == 0
    assert kernel_cache.seed_cache(tmp_path / "none", cache) == 0
    (tmp_path / "file").write_text("")
    assert kernel_cache.seed_cache(seed, tmp_path / "file" / "cache") == 0
    assert "not seeded" in caplog.text
