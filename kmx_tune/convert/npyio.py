"""The .npy format, read and written by hand so nothing is ever unpickled.

Format (numpy.lib.format): the magic ``\\x93NUMPY``, a major and minor version,
the header length (2 bytes little-endian in 1.0, 4 bytes in 2.0 and 3.0), then a
Python dict literal with ``descr``, ``fortran_order`` and ``shape`` (latin-1 in
1.0 and 2.0, UTF-8 in 3.0), padded with spaces and a newline so the data starts
on a 64-byte boundary. The dict is read with ``ast.literal_eval``, which builds
literals only and runs no code.
"""

from __future__ import annotations

import ast
import math
import struct
import warnings
from dataclasses import dataclass

import numpy as np
from numpy.lib import format as npformat

from kmx_tune.errors import KmxError

MAGIC = b"\x93NUMPY"
PREFIX_LEN = 12  # enough bytes to read the magic, version and header length of any version
MAX_HEADER = 1 << 20  # numpy itself refuses headers over 10,000 bytes unless told otherwise
_ALIGN = 64
_GROWTH_DIGITS = 21  # numpy leaves room to grow axis 0 in place; so do we


class FormatError(KmxError):
    """A file that is not a valid .npy / .npz, or is cut short."""


@dataclass(frozen=True)
class NpyHeader:
    version: tuple[int, int]
    data_offset: int  # header length in bytes: where the array data starts
    dtype: np.dtype
    shape: tuple[int, ...]
    fortran_order: bool

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize

    @property
    def raw_shape(self) -> tuple[int, ...]:
        """The shape of the data as a C-ordered array: a Fortran array is its reverse."""
        return tuple(reversed(self.shape)) if self.fortran_order else self.shape

    @property
    def dtype_str(self) -> str:
        """``uint8``, ``float32``; the byte-order code only where it is not native (``>f4``);
        strings and raw bytes as numpy writes them (``<U3``, ``S2``, ``V8``)."""
        if self.dtype.fields is not None:
            return str(self.dtype)
        if self.dtype.kind in "USV":
            return repr(self.dtype)[len("dtype('") : -len("')")]
        return self.dtype.name if self.dtype.isnative else self.dtype.str


def header_length(prefix: bytes, where: str) -> tuple[tuple[int, int], int]:
    """From the first :data:`PREFIX_LEN` bytes: the version and the data offset."""
    if len(prefix) < 10 or not prefix.startswith(MAGIC):
        raise FormatError(f"{where}: not a .npy array (no \\x93NUMPY magic at the start)")
    major, minor = prefix[6], prefix[7]
    if major == 1:
        (hlen,) = struct.unpack("<H", prefix[8:10])
        return (major, minor), 10 + hlen
    if major in (2, 3):
        if len(prefix) < 12:
            raise FormatError(f"{where}: .npy header is cut short; the file is truncated")
        (hlen,) = struct.unpack("<I", prefix[8:12])
        if hlen > MAX_HEADER:
            raise FormatError(f"{where}: .npy header claims {hlen} bytes; the file is corrupt")
        return (major, minor), 12 + hlen
    raise FormatError(f"{where}: unsupported .npy version {major}.{minor} (known: 1.0, 2.0, 3.0)")


_PARSED: dict[bytes, NpyHeader] = {}  # headers seen: an .npz's members often share one
_PARSED_MAX = 256


def parse_header(data: bytes, where: str) -> NpyHeader:
    """Parse a complete .npy header (``data`` may run on into the array data)."""
    version, offset = header_length(data[:PREFIX_LEN], where)
    if len(data) < offset:
        raise FormatError(f"{where}: .npy header is cut short; the file is truncated")
    raw = bytes(data[:offset])
    header = _PARSED.get(raw)
    if header is None:
        header = _parse(raw, version, offset, where)
        if len(_PARSED) < _PARSED_MAX:
            _PARSED[raw] = header
    return header


def _parse(data: bytes, version: tuple[int, int], offset: int, where: str) -> NpyHeader:
    start = 10 if version[0] == 1 else 12
    try:
        text = data[start:offset].decode("utf-8" if version[0] == 3 else "latin-1")
        with warnings.catch_warnings():  # odd escapes in a corrupt header warn; we refuse it
            warnings.simplefilter("ignore")
            d = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError, UnicodeDecodeError):
        raise FormatError(f"{where}: .npy header is not a valid dict literal") from None
    if not isinstance(d, dict) or set(d) != {"descr", "fortran_order", "shape"}:
        raise FormatError(f"{where}: .npy header must hold exactly descr, fortran_order and shape")
    shape, fortran = d["shape"], d["fortran_order"]
    if not isinstance(fortran, bool):
        raise FormatError(f"{where}: .npy header has a non-boolean fortran_order")
    if not isinstance(shape, tuple) or not all(type(n) is int and n >= 0 for n in shape):
        raise FormatError(f"{where}: .npy header has an invalid shape {shape!r}")
    try:
        dtype = npformat.descr_to_dtype(d["descr"])
    except (
        Exception
    ):  # numpy's dtype parser raises many kinds (TypeError, ValueError, KeyError, ...)
        raise FormatError(f"{where}: .npy header has an invalid dtype {d['descr']!r}") from None
    if dtype.itemsize == 0:
        # numpy writes such arrays ('V0', a record of no fields), but they hold no data
        raise FormatError(
            f"{where}: dtype {d['descr']!r} has items of zero bytes: there is no image data "
            "to convert"
        )
    if dtype.subdtype is not None:
        # np.save never writes one: an array's subarray dtype becomes more axes
        raise FormatError(
            f"{where}: dtype {d['descr']!r} is a subarray type, which numpy itself cannot "
            "load; save the array again with that axis in its shape"
        )
    if math.prod(shape) == 0:
        # no data to bound the axes by: numpy must still be able to make the array
        try:
            np.empty(shape, dtype)
        except (ValueError, MemoryError, OverflowError):
            raise FormatError(
                f"{where}: shape {shape!r} has an axis too large for numpy (the array is "
                "empty, but no array can have that shape); the header is corrupt"
            ) from None
    return NpyHeader(version, offset, dtype, shape, fortran)


def check_size(header: NpyHeader, available: int, where: str) -> None:
    """Refuse a header that claims more data than there is."""
    need = header.data_offset + header.nbytes
    if need > available:
        raise FormatError(
            f"{where}: the header claims {need} bytes but there are only {available}; "
            "the file is truncated or corrupt"
        )


def build_header(dtype: np.dtype, shape: tuple[int, ...], fortran_order: bool) -> bytes:
    """A .npy header byte-for-byte as ``numpy.save`` writes it (smallest version that fits)."""
    d = {
        "descr": npformat.dtype_to_descr(dtype),
        "fortran_order": fortran_order,
        "shape": tuple(int(n) for n in shape),
    }
    text = "{" + "".join(f"'{k}': {v!r}, " for k, v in sorted(d.items())) + "}"
    if shape:
        growth_axis = shape[-1] if fortran_order else shape[0]
        text += " " * (_GROWTH_DIGITS - len(repr(int(growth_axis))))
    for version, fmt, encoding in (
        ((1, 0), "<H", "latin-1"),
        ((2, 0), "<I", "latin-1"),
        ((3, 0), "<I", "utf-8"),
    ):
        try:
            body = text.encode(encoding)
        except UnicodeEncodeError:
            continue
        hlen = len(body) + 1
        pad = _ALIGN - ((len(MAGIC) + 2 + struct.calcsize(fmt) + hlen) % _ALIGN)
        if fmt == "<H" and hlen + pad >= 1 << 16:
            continue
        return MAGIC + bytes(version) + struct.pack(fmt, hlen + pad) + body + b" " * pad + b"\n"
    raise FormatError("cannot encode the .npy header")  # unreachable: utf-8 encodes any str
