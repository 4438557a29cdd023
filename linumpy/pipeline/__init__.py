"""Orchestration shared by Nextflow and the local runner.

- :mod:`linumpy.pipeline.params`: the parameters (same keys as ``nextflow.config``).
- :mod:`linumpy.pipeline.steps`: the chain of scripts and the flags each takes from the parameters.
- :mod:`linumpy.pipeline.layout`: the output directory tree.
- :mod:`linumpy.pipeline.plan`: the tasks of a run.
- :mod:`linumpy.pipeline.runner`: the local runner (``bin/linum_run_local.py``).
- :mod:`linumpy.pipeline.publish`: the local runner's publication of a staged product once decided.
"""
