"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from linumpy.qc import warning_log
from linumpy.simulate import get_preset, simulate_acquisition


@pytest.fixture(autouse=True)
def _warnings_of_this_test_only():
    """Forget warnings collected in-process by earlier tests.

    ``linumpy.cli.run`` installs a process-wide warning log (one process per
    step in real runs); tests that call scripts in-process would otherwise
    leak their warnings into the QC records written by later tests.
    """
    warning_log.reset()


@pytest.fixture(scope="session")
def tiny_acquisition(tmp_path_factory) -> Path:
    """A simulated ``tiny`` acquisition (native layout, seed 0), made once per session.

    Ground truth in ``<path>/ground_truth/`` (see docs/simulator.md). Treat
    it as read-only: other tests share it.
    """
    return simulate_acquisition(tmp_path_factory.mktemp("acquisitions") / "tiny", get_preset("tiny"), seed=0)


@pytest.fixture(scope="session")
def small_acquisition(tmp_path_factory) -> Path:
    """A simulated ``small`` acquisition (native layout, seed 0), made once per session (~30 s).

    Read-only, like :func:`tiny_acquisition`.
    """
    return simulate_acquisition(tmp_path_factory.mktemp("acquisitions") / "small", get_preset("small"), seed=0)
