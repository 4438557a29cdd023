"""The compiled kernels' on-disk cache: compiled ahead for an image, seeded from it at run time.

numba keeps a kernel's machine code in one writable directory: ``NUMBA_CACHE_DIR`` when set and writable,
else ``__pycache__`` beside the module, else ``~/.cache/numba``; a directory it cannot write is passed
over (none at all: numba refuses the module, ``RuntimeError: cannot cache function``). So a cache
prepared in a container's image, which the task's user cannot write, is never read, and every task of a
fresh container compiled the axial correction's kernels again (~14-20 CPU s a task).

The image compiles every signature the kernels are called with (:data:`SIGNATURES` of the kernel modules,
:func:`compile_kernels`) into a prepared cache at build time (``python -m linumpy.intensity.kernel_cache``
with ``NUMBA_CACHE_DIR`` set to it) and names it in ``LINUMPY_NUMBA_SEED``; importing this module (as
the kernel modules do, before numba looks for their cache) copies the prepared files missing from
``NUMBA_CACHE_DIR`` there (:func:`seed_cache`: ~1 MB, each file written aside and renamed, so tasks
seeding one directory at once do not see a half file), and numba loads them instead of compiling. A
file already there is kept (numba checks every index against the source it was compiled from and
recompiles a stale one). numba's cache is also keyed by the CPU: a host whose CPU differs from the build
machine's compiles once per cache directory, as without a prepared cache.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numba

logger = logging.getLogger(__name__)

#: The environment variable naming the prepared (read-only) cache to seed ``NUMBA_CACHE_DIR`` from.
SEED_VARIABLE = "LINUMPY_NUMBA_SEED"
#: The kernels' options: cached on disk, the GIL released, IEEE division (x / 0 is inf or NaN, as numpy's).
JIT_OPTIONS = {"cache": True, "nogil": True, "error_model": "numpy"}


def seed_cache(seed: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None) -> int:
    """Copy the prepared cache's files missing from numba's cache directory there; the number copied.

    ``seed``: the prepared cache (default: ``LINUMPY_NUMBA_SEED``); ``cache_dir``: default numba's
    ``NUMBA_CACHE_DIR``. Nothing is done (0) unless both are set and the seed is a directory; a cache
    directory that cannot be written is logged as a warning (numba then compiles, as without a seed).
    """
    seed = seed if seed is not None else os.environ.get(SEED_VARIABLE)
    cache_dir = cache_dir if cache_dir is not None else numba.config.CACHE_DIR
    if not seed or not cache_dir or not Path(seed).is_dir():
        return 0
    copied = 0
    try:
        for source in sorted(Path(seed).rglob("*")):
            target = Path(cache_dir) / source.relative_to(seed)
            if not source.is_file() or target.exists():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            aside = target.with_name(f".{target.name}.partial-{os.getpid()}")
            shutil.copyfile(source, aside)
            os.replace(aside, target)
            copied += 1
    except OSError as error:
        logger.warning("numba's cache %s not seeded from %s (%s): the kernels compile", cache_dir, seed, error)
    return copied


def compile_kernels() -> int:
    """Compile (or load from the cache) every declared signature of the kernels; the number of signatures."""
    from linumpy.intensity import attenuation_kernels, surface_kernels

    count = 0
    for module in (attenuation_kernels, surface_kernels):
        for kernel, signatures in module.SIGNATURES.items():
            for signature in signatures:
                kernel.compile(signature)
                count += 1
    return count


seed_cache()

if __name__ == "__main__":
    print(f"{compile_kernels()} kernel signatures compiled into {numba.config.CACHE_DIR or 'the default cache'}")
