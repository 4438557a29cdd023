# Container for the linumpy pipeline (Nextflow -profile docker / apptainer).
#   docker build -t linumpy:0.1.0 .
#   apptainer build linumpy.sif docker-daemon://linumpy:0.1.0
FROM python:3.11-slim

# procps: `ps`, which Nextflow uses to collect task metrics.
RUN apt-get update \
    && apt-get install -y --no-install-recommends procps \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/linumpy
COPY pyproject.toml README.md ./
COPY linumpy ./linumpy
COPY bin ./bin
# The axial correction's kernels (numba) compiled ahead into a prepared cache, readable by any user: numba
# passes over a cache directory it cannot write, so each task seeds the writable NUMBA_CACHE_DIR from it
# (LINUMPY_NUMBA_SEED, linumpy.intensity.kernel_cache: ~1 MB copied) and loads the kernels instead of
# compiling them (~20 CPU s per axial task otherwise). numba keys the cache by CPU: on a host whose CPU
# differs from the build machine's, the kernels compile once per cache directory, as without it.
# -P: the installed package (the tasks' own; numba keys the cache by the source's path), not ./linumpy.
RUN pip install --no-cache-dir . \
    && chmod +x bin/*.py \
    && NUMBA_CACHE_DIR=/opt/linumpy/numba-cache python -P -m linumpy.intensity.kernel_cache \
    && chmod -R a+rX /opt/linumpy/numba-cache

# The scripts are not installed by pip: put them on PATH for Nextflow and users.
# NUMBA_CACHE_DIR: writable by any user (the task's user, -u $(id -u), cannot write the image; Apptainer
# binds the host's /tmp), seeded from the image's prepared cache at the first kernel import.
ENV PATH="/opt/linumpy/bin:${PATH}" \
    MPLBACKEND=Agg \
    PYTHONUNBUFFERED=1 \
    NUMBA_CACHE_DIR=/tmp/linumpy-numba-cache \
    LINUMPY_NUMBA_SEED=/opt/linumpy/numba-cache

CMD ["linum_run_local.py", "--help"]
