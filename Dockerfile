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
RUN pip install --no-cache-dir . \
    && chmod +x bin/*.py

# The scripts are not installed by pip: put them on PATH for Nextflow and users.
# NUMBA_CACHE_DIR: the axial correction's compiled kernels (numba) are cached on disk; the image's
# site-packages is not writable by the task's user (-u $(id -u)), and numba refuses to import cached
# kernels without a writable cache directory (RuntimeError). /tmp: writable by any user (Apptainer binds
# the host's /tmp: compiled once per node; Docker: once per container, ~14 CPU s per axial task).
ENV PATH="/opt/linumpy/bin:${PATH}" \
    MPLBACKEND=Agg \
    PYTHONUNBUFFERED=1 \
    NUMBA_CACHE_DIR=/tmp/linumpy-numba-cache

CMD ["linum_run_local.py", "--help"]
