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
ENV PATH="/opt/linumpy/bin:${PATH}" \
    MPLBACKEND=Agg \
    PYTHONUNBUFFERED=1

CMD ["linum_run_local.py", "--help"]
