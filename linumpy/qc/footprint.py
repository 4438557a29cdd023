"""Disk used by a run's outputs, per top-level folder, and human-readable sizes."""

from __future__ import annotations

import os
from pathlib import Path

_UNITS = ("B", "KB", "MB", "GB", "TB", "PB")


def folder_sizes(root: str | os.PathLike, exclude_suffixes: tuple[str, ...] = ()) -> dict[str, int]:
    """Bytes of the files under each top-level entry of ``root`` (symlinks not followed).

    Sizes are the files' lengths (not allocated blocks), so the same outputs
    give the same numbers on any file system. Top-level files are summed
    under ``"(files)"``, except those ending in one of ``exclude_suffixes``.
    """
    root = Path(root)
    sizes: dict[str, int] = {}
    for entry in sorted(root.iterdir()) if root.is_dir() else []:
        if entry.is_dir() and not entry.is_symlink():
            sizes[entry.name] = _tree_size(entry)
        elif entry.is_file() and not entry.is_symlink() and not entry.name.endswith(exclude_suffixes):
            sizes["(files)"] = sizes.get("(files)", 0) + entry.stat().st_size
    return sizes


def _tree_size(directory: Path) -> int:
    total = 0
    for parent, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(parent, name)
            if not os.path.islink(path):
                try:
                    total += os.stat(path).st_size
                except OSError:  # removed while we walk
                    pass
    return total


def human_bytes(n_bytes: float) -> str:
    """Format a byte count with a decimal unit, 3 significant digits.

    Examples
    --------
    >>> human_bytes(2_468_000_000)
    '2.47 GB'
    >>> human_bytes(512)
    '512 B'
    """
    value = float(n_bytes)
    for unit in _UNITS:
        if abs(value) < 1000 or unit == _UNITS[-1]:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.3g} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def footprint_lines(sizes: dict[str, int], raw_bytes: int = 0) -> list[str]:
    """One line per folder (largest first) and the total, each also per GB of raw data.

    ``raw_bytes`` is the size of the raw acquisition (0: unknown, no ratio).
    """
    raw = raw_bytes
    total = sum(sizes.values())
    lines = []
    for name, size in sorted(sizes.items(), key=lambda item: (-item[1], item[0])) + [("total", total)]:
        ratio = f" ({size / raw:.2f} GB per raw GB)" if raw else ""
        lines.append(f"{name:<16} {human_bytes(size):>9}{ratio}")
    return lines
