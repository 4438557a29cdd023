"""Compression codecs of the OME-Zarr files linumpy writes.

Five names are accepted wherever a ``compression=`` argument exists:

============  ==============================================  ==========
name          Zarr v2 (NGFF 0.4)                              use
============  ==============================================  ==========
blosc-lz4     Blosc lz4, clevel 5, byte shuffle (default)     general
              (bit shuffle for 16-bit data)
zstd          Blosc zstd, clevel 1, byte shuffle              archival
lz4           Blosc lz4, clevel 5, no shuffle                 real time
gzip          GZip level 1                                    exchange
none          no compression                                  scratch
============  ==============================================  ==========

``lz4`` is plain LZ4 inside a Blosc frame (no shuffle), not the bare
``numcodecs.LZ4`` codec: Zarr v3 (NGFF 0.5) only standardises the ``blosc``,
``gzip`` and ``zstd`` codecs, and Zarr v2 readers other than numcodecs (e.g.
tensorstore) do not know bare ``lz4``, while every reader opens Blosc. It is
as fast as plain LZ4. The Zarr v3 mapping is the same as v2's. Zstd keeps a low level on
purpose: zstd at level 5 with byte shuffle is about ten times slower for a few
percent of size.

16-bit data (the compact intermediates: float16, uint16) is bit-shuffled by
``blosc-lz4``: byte shuffle leaves speckle's noisy low bytes in every block and
lz4 stores 16-bit speckle at 0.98-1.00 of its size; bit shuffle groups the
few busy bits apart and stores it at 0.84-0.88, encoded as fast; decoded at ~2.4 GB/s of
CPU where the incompressible byte-shuffled chunks were stored copies (``benchmarks/README.md``,
session stack60). The values are the same: Blosc frames record their shuffle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from linumpy.errors import InputError

if TYPE_CHECKING:  # numcodecs and zarr are imported when a codec is built: scripts start fast
    import numcodecs
    import zarr

#: Accepted values of ``compression=``; the first one is the default.
COMPRESSIONS = ("blosc-lz4", "zstd", "lz4", "gzip", "none")
DEFAULT_COMPRESSION = COMPRESSIONS[0]

_BLOSC_LEVEL = 5
#: Item size (bytes) that ``blosc-lz4`` bit-shuffles instead of byte-shuffling.
BITSHUFFLED_ITEMSIZE = 2
_ZSTD_LEVEL = 1
_GZIP_LEVEL = 1


def check_compression(name: str) -> str:
    """Return ``name`` if it is one of :data:`COMPRESSIONS`, else raise InputError."""
    if name not in COMPRESSIONS:
        raise InputError(
            f"unknown compression {name!r}; choose one of {', '.join(COMPRESSIONS)}"
        )
    return name


def v2_compressor(name: str, itemsize: int = 4) -> numcodecs.abc.Codec | None:
    """Return the numcodecs compressor of a Zarr v2 array for ``name``.

    Parameters
    ----------
    name : str
        One of :data:`COMPRESSIONS`.
    itemsize : int
        Bytes per value of the array (:data:`BITSHUFFLED_ITEMSIZE`: ``blosc-lz4`` bit-shuffles).

    Returns
    -------
    numcodecs.abc.Codec or None
        ``None`` for ``"none"``.
    """
    import numcodecs

    check_compression(name)
    if name == "blosc-lz4":
        bits = itemsize == BITSHUFFLED_ITEMSIZE
        return numcodecs.Blosc(cname="lz4", clevel=_BLOSC_LEVEL,
                               shuffle=numcodecs.Blosc.BITSHUFFLE if bits else numcodecs.Blosc.SHUFFLE)
    if name == "zstd":
        return numcodecs.Blosc(cname="zstd", clevel=_ZSTD_LEVEL, shuffle=numcodecs.Blosc.SHUFFLE)
    if name == "lz4":
        return numcodecs.Blosc(cname="lz4", clevel=_BLOSC_LEVEL, shuffle=numcodecs.Blosc.NOSHUFFLE)
    if name == "gzip":
        return numcodecs.GZip(level=_GZIP_LEVEL)
    return None


def v3_compressors(name: str, itemsize: int = 4) -> tuple[zarr.abc.codec.BytesBytesCodec, ...]:
    """Return the Zarr v3 bytes-to-bytes codecs for ``name`` (empty for ``"none"``; ``itemsize``: as
    :func:`v2_compressor`)."""
    import zarr.codecs

    check_compression(name)
    if name == "blosc-lz4":
        shuffle = "bitshuffle" if itemsize == BITSHUFFLED_ITEMSIZE else "shuffle"
        return (zarr.codecs.BloscCodec(cname="lz4", clevel=_BLOSC_LEVEL, shuffle=shuffle),)
    if name == "zstd":
        return (zarr.codecs.BloscCodec(cname="zstd", clevel=_ZSTD_LEVEL, shuffle="shuffle"),)
    if name == "lz4":
        return (zarr.codecs.BloscCodec(cname="lz4", clevel=_BLOSC_LEVEL, shuffle="noshuffle"),)
    if name == "gzip":
        return (zarr.codecs.GzipCodec(level=_GZIP_LEVEL),)
    return ()


def chunk_encoder(name: str, zarr_format: int, itemsize: int = 4) -> numcodecs.abc.Codec | None:
    """The numcodecs codec that turns a chunk's bytes into what is stored.

    Zarr v3's ``blosc`` and ``gzip`` codecs wrap the same numcodecs
    implementations, so these encoders serve both versions (``zarr_format``
    is accepted for callers that pass it, and changes nothing; ``itemsize``: as
    :func:`v2_compressor`).
    """
    return v2_compressor(name, itemsize)


def identify_codec(codec_config: dict[str, Any] | None) -> str:
    """Name the compression described by a stored codec configuration.

    Parameters
    ----------
    codec_config : dict or None
        A Zarr v2 ``compressor`` entry, or the configuration of the first
        Zarr v3 bytes-to-bytes codec, as stored in the array metadata.
        ``None`` means no compression.

    Returns
    -------
    str
        One of :data:`COMPRESSIONS`, or a description such as
        ``"blosc-zstd (clevel 9)"`` for codecs linumpy does not write.
    """
    if codec_config is None:
        return "none"
    codec_id = codec_config.get("id") or codec_config.get("name")
    options = codec_config.get("configuration", codec_config)
    if codec_id == "blosc":
        cname, shuffle = options.get("cname"), options.get("shuffle")
        unshuffled = shuffle in (0, "noshuffle")
        if cname == "lz4":
            return "lz4" if unshuffled else "blosc-lz4"
        if cname == "zstd" and not unshuffled:
            return "zstd"
        return f"blosc-{cname} (shuffle {shuffle}, clevel {options.get('clevel')})"
    if codec_id in ("lz4", "gzip"):
        return codec_id
    return str(codec_id)
