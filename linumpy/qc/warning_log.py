"""Collect the warnings a step logs, so that its QC record (and the report) shows them.

:func:`linumpy.cli.run` installs :class:`WarningLog` on the root logger of
every script; :func:`linumpy.qc.records.write_qc_record` stores
:func:`logged_warnings` in the record it writes under ``"warnings"``.
"""

from __future__ import annotations

import logging

#: Longest warning kept in a record; longer ones are cut.
MAX_WARNING_CHARS = 500


class WarningLog(logging.Handler):
    """Keeps the text of every WARNING-or-worse record, each once, in order."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()[:MAX_WARNING_CHARS]
        except Exception:  # a malformed log call must not break the step
            message = str(record.msg)[:MAX_WARNING_CHARS]
        if message not in self.messages:
            self.messages.append(message)


_LOG = WarningLog()


def install() -> None:
    """Start collecting the warnings logged in this process (idempotent)."""
    root = logging.getLogger()
    if _LOG not in root.handlers:
        root.addHandler(_LOG)


def logged_warnings() -> list[str]:
    """Warnings logged since :func:`install` (empty if never installed)."""
    return list(_LOG.messages) if _LOG in logging.getLogger().handlers else []


def reset() -> None:
    """Forget the warnings collected so far (tests)."""
    _LOG.messages.clear()
