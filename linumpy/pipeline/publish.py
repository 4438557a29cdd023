"""Publish staged products once a later step has decided where they belong (the local runner).

A slice's first axial correction is written into ``pipeline_info/staging/``:
whether it is the slice's final product (``axial_corr/``) or a refused first
attempt (``axial_corr_refused/``) is known only once the acquisition's focus
has been combined from every slice. :func:`publish` then moves the staged
product and everything beside it that bears its stem (the surface,
attenuation and uncompensated maps, the QC record and figures) into the
folder decided, each entry by one rename. Nextflow does the same with
``PUBLISH_AXIAL_CORR``, which passes the task's files to ``publishDir``.

A move interrupted halfway leaves some entries staged and some published:
the runner then counts the staged task as incomplete and runs it again
(same input, same bytes), and the publication replaces what it had moved.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from linumpy.io.atomic import remove_path, remove_stale_temporaries
from linumpy.qc.records import output_stem


def entries(product: Path, folder: Path | None = None) -> list[Path]:
    """The files and folders of ``folder`` (``product``'s own by default) that belong to ``product``.

    They are the entries whose name starts with ``product``'s stem (``slice_z01_axial_corr``:
    the product, its ``_surface`` / ``_attenuation`` / ``_uncompensated`` maps, its ``_qc.json``
    and ``_qc_*.png``); temporaries (``.``-prefixed) are not.

    Examples
    --------
    >>> entries(Path("/no/such/slice_z01_axial_corr.ome.zarr"))
    []
    """
    folder = product.parent if folder is None else folder
    stem = output_stem(product).name
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return []
    return [folder / name for name in names if name.startswith(stem) and not name.startswith(".")]


def publish(staged: Path, destination: Path, stale: Path) -> list[Path]:
    """Move ``staged`` and its entries (:func:`entries`) into the folder ``destination``.

    An entry of the same name already in ``destination`` is replaced. The product's entries in
    the folder ``stale`` (published there by an earlier decision) are removed first, and the
    staging folder too once empty.

    Returns
    -------
    list of Path
        The published paths.
    """
    for output in (staged, *entries(staged)):
        remove_stale_temporaries(output)
    for old in entries(staged, stale):
        remove_path(old)
    destination.mkdir(parents=True, exist_ok=True)
    published = []
    for entry in entries(staged):
        target = destination / entry.name
        remove_path(target)
        entry.rename(target)
        published.append(target)
    _remove_empty(staged.parent)
    return published


def _remove_empty(folder: Path) -> None:
    """Remove ``folder`` and its parent when empty (the staging area after its last publication)."""
    for directory in (folder, folder.parent):
        with contextlib.suppress(OSError):
            directory.rmdir()
