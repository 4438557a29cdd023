"""The lab microscope's native tiles: ``info.txt`` plus raw ``image_*.bin`` files.

One folder per tile holds an ``info.txt`` of ``key: value`` lines and the
volume as raw little-endian float32 in Fortran order, shape
``(depth, n_alines, n_frames)`` with ``depth = bottom_z - top_z + 1``,
``n_alines = nx + n_extra`` and ``n_frames = ny * n_repeat``, the frames split
over several ``image_*.bin`` files taken in natural name order
(``image_2.bin`` before ``image_10.bin``).

Axes: the raw A-line axis (fast galvo) becomes ``x``, the frame (B-scan)
axis becomes ``y``. The ``n_extra`` A-lines acquired while the galvo flies
back are the **last** ``n_extra`` of each B-scan; they are cropped away. The
``n_repeat`` consecutive frames of one B-scan are averaged. See
``docs/raw-formats.md``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from linumpy.errors import InputError
from linumpy.io import page_cache
from linumpy.io.atomic import naming_file
from linumpy.io.sidecar import first_error

INFO_NAME = "info.txt"
BIN_PATTERN = "image_*.bin"
RAW_DTYPE = np.dtype("<f4")
#: Bytes of B-scans read from a ``.bin`` file at a time (at least one B-scan): a buffer that stays in a core's
#: cache while its B-scans are transposed, and that is not new memory for every tile.
READ_BYTES = 512 << 10


class NativeTileInfo(BaseModel):
    """The fields of a native tile's ``info.txt`` that linumpy uses.

    Attributes
    ----------
    nx, ny : int
        A-lines per B-scan and B-scans per tile (after cropping).
    n_repeat : int
        Frames acquired per B-scan (averaged on read).
    width, height : float
        Field of view along x and y, micrometres.
    n_extra : int
        A-lines acquired during the galvo return, at the end of each B-scan.
    top_z, bottom_z : int
        First and last A-line sample kept (inclusive).
    focus_z : int
        A-line sample at the focal plane (same numbering as ``top_z``).
    stage_x_pos_mm, stage_y_pos_mm, stage_z_pos_mm : float
        Motor position of the tile.
    """

    model_config = ConfigDict(extra="ignore")

    nx: int = Field(gt=0)
    ny: int = Field(gt=0)
    n_repeat: int = Field(gt=0)
    width: float = Field(gt=0)
    height: float = Field(gt=0)
    n_extra: int = Field(ge=0)
    top_z: int = Field(ge=0)
    bottom_z: int = Field(ge=0)
    focus_z: int
    stage_x_pos_mm: float
    stage_y_pos_mm: float
    stage_z_pos_mm: float

    @property
    def depth(self) -> int:
        """Samples kept per A-line."""
        return self.bottom_z - self.top_z + 1

    @property
    def raw_shape(self) -> tuple[int, int, int]:
        """Fortran-order shape ``(depth, nx + n_extra, ny * n_repeat)`` of the raw volume."""
        return (self.depth, self.nx + self.n_extra, self.ny * self.n_repeat)


def parse_info_text(text: str) -> dict[str, str]:
    """Return the ``key: value`` pairs of an ``info.txt`` (other lines ignored).

    Examples
    --------
    >>> parse_info_text("nx: 64\\nwidth: 192.0\\n")
    {'nx': '64', 'width': '192.0'}
    """
    pairs = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip():
            pairs[key.strip()] = value.strip()
    return pairs


def format_info_text(info: NativeTileInfo) -> str:
    """Return the ``info.txt`` text of ``info`` (one ``key: value`` per line)."""
    return "".join(f"{key}: {value}\n" for key, value in info.model_dump().items())


def read_info(tile_dir: str | Path) -> NativeTileInfo:
    """Read and validate a tile folder's ``info.txt``.

    Raises
    ------
    InputError
        If the file is missing, or a field is missing or ill-typed (the
        message names the file and the field), or ``bottom_z < top_z``.
    """
    path = Path(tile_dir) / INFO_NAME
    try:
        pairs = parse_info_text(path.read_text())
    except OSError:
        raise InputError(f"{path}: missing; every tile folder needs an info.txt") from None
    try:
        info = NativeTileInfo.model_validate(pairs)
    except ValidationError as error:
        raise first_error(path, error) from None
    if info.bottom_z < info.top_z:
        raise InputError(f"{path}: field 'bottom_z' ({info.bottom_z}) is above 'top_z' ({info.top_z}); fix it")
    return info


def natural_key(name: str) -> list:
    """Sort key that orders embedded numbers numerically (``image_2`` < ``image_10``).

    Examples
    --------
    >>> sorted(["image_10.bin", "image_2.bin"], key=natural_key)
    ['image_2.bin', 'image_10.bin']
    """
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def bin_files(tile_dir: str | Path) -> list[Path]:
    """Return the tile's ``image_*.bin`` files in natural order."""
    files = sorted(Path(tile_dir).glob(BIN_PATTERN), key=lambda p: natural_key(p.name))
    if not files:
        raise InputError(f"{tile_dir}: no {BIN_PATTERN} files; is this a tile folder?")
    return files


def _frame_counts(files: list[Path], info: NativeTileInfo) -> list[int]:
    """Frames held by each file; raise InputError naming a file whose size is wrong."""
    frame_bytes = info.raw_shape[0] * info.raw_shape[1] * RAW_DTYPE.itemsize
    expected_total = info.raw_shape[2]
    counts = []
    for path in files:
        size = path.stat().st_size
        if size % frame_bytes:
            raise InputError(
                f"{path}: {size} bytes is not a whole number of {frame_bytes}-byte frames "
                f"(depth {info.raw_shape[0]} x {info.raw_shape[1]} A-lines); the file is truncated or info.txt is wrong"
            )
        counts.append(size // frame_bytes)
    if sum(counts) != expected_total:
        raise InputError(
            f"{files[-1]}: the tile's .bin files hold {sum(counts)} frames, info.txt says "
            f"ny * n_repeat = {expected_total}; a file is truncated or missing"
        )
    return counts


def read_native_tile(
    tile_dir: str | Path, info: NativeTileInfo | None = None, aline_shift: int = 0, out: np.ndarray | None = None
) -> np.ndarray:
    """Read one native tile as float32 ``(z, y, x)``.

    Files are read a few B-scans at a time (:data:`READ_BYTES`) into one
    small buffer; each B-scan (one contiguous ``(x, z)`` frame on disk) is
    transposed into its ``(z, x)`` plane of the output by a 2D copy, which
    numpy does cache-blocked (a 3D transposing copy of the whole tile is
    several times slower), while the buffer is still in the core's cache (a
    buffer of a whole file, 11 MB on the ``large`` preset, was new memory for
    every tile and left the cache before its first B-scans were transposed).
    Peak memory is the output volume.

    Parameters
    ----------
    tile_dir : path-like
        Tile folder (``tile_x00_y00_z00``).
    info : NativeTileInfo, optional
        Its parsed ``info.txt`` (read if not given).
    aline_shift : int
        Where the galvo-return band really is: it starts at A-line
        ``nx + aline_shift`` (circularly); the kept A-lines are the ``nx``
        that follow it (:mod:`linumpy.mosaic.galvo`). 0: the last ``n_extra``.
    out : numpy.ndarray, optional
        A C-contiguous float32 array of the output's shape to read into
        (e.g. the previous tile's, reused: a fresh 40 MB array costs its
        page faults on every tile); every value is overwritten.

    Returns
    -------
    numpy.ndarray
        Shape ``(bottom_z - top_z + 1, ny, nx)``, repeats averaged, the
        ``n_extra`` trailing A-lines of each B-scan cropped (``out`` when given).

    Raises
    ------
    InputError
        If a file is shorter than its size said (it changed while being read).
    ValueError
        If ``out`` has another shape or dtype, or is not C-contiguous.
    """
    info = info or read_info(tile_dir)
    files = bin_files(tile_dir)
    counts = _frame_counts(files, info)
    depth, n_alines, _ = info.raw_shape
    shape = (depth, info.ny, info.nx)
    if out is None:
        out = np.empty(shape, np.float32)
    elif out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"out is {out.dtype} {out.shape}, expected a C-contiguous float32 {shape}")
    kept = slice(0, info.nx) if aline_shift == 0 else (aline_shift + np.arange(info.nx)) % n_alines
    frame_items = n_alines * depth
    per_read = max(1, READ_BYTES // (frame_items * RAW_DTYPE.itemsize))
    buffer = np.empty(min(per_read, max(counts)) * frame_items, RAW_DTYPE)
    first_frame = 0
    for path, n_frames in zip(files, counts):
        with open(path, "rb") as file:
            for begin in range(0, n_frames, per_read):
                # Fortran (depth, alines, frames) is C (frames, alines, depth).
                frames = buffer[: min(per_read, n_frames - begin) * frame_items].reshape(-1, n_alines, depth)
                size = file.readinto(memoryview(frames).cast("B"))
                if size != frames.nbytes:
                    raise InputError(f"{path}: read {size} of the {frames.nbytes} bytes of its frames {begin} on; "
                                     "was it changed while being read?")
                _transpose_frames(frames, first_frame + begin, info.n_repeat, kept, out)
            page_cache.read(file)
        first_frame += n_frames
    if info.n_repeat > 1:
        out /= np.float32(info.n_repeat)
    return out


def _transpose_frames(frames: np.ndarray, first_frame: int, n_repeat: int, kept: slice | np.ndarray,
                      out: np.ndarray) -> None:
    """Put raw frames ``(n, alines, depth)``, the tile's from ``first_frame`` on, into their planes of ``out``
    ``(depth, y, x)``: the ``kept`` A-lines, a B-scan's ``n_repeat`` frames summed."""
    for local, frame in enumerate(frames):
        row, repeat = divmod(first_frame + local, n_repeat)
        if repeat:
            out[:, row, :] += frame[kept].T
        else:
            out[:, row, :] = frame[kept].T


def write_native_frames(tile_dir: Path, frames: np.ndarray, n_files: int) -> None:
    """Write raw frames ``(n_frames, n_alines, depth)`` over ``n_files`` .bin files.

    The C-order ``(frames, alines, depth)`` array is the Fortran-order
    ``(depth, alines, frames)`` volume of the format. Frames are split as
    evenly as possible, earlier files taking the extra frames; files are
    named ``image_1.bin`` ... ``image_N.bin``.
    """
    frames = np.ascontiguousarray(frames, dtype=RAW_DTYPE)
    bounds = np.linspace(0, frames.shape[0], n_files + 1)
    bounds = np.ceil(bounds).astype(int)
    for index in range(n_files):
        path = tile_dir / f"image_{index + 1}.bin"
        with naming_file(path), open(path, "wb") as handle:  # not ndarray.tofile: no errno on a full disk
            handle.write(frames[bounds[index] : bounds[index + 1]].data)
