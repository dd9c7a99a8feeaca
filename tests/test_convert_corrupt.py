"""Broken inputs give one clear line (a KmxError), never a traceback, and no output."""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from kmx_tune.convert import convert_file
from kmx_tune.convert.npyio import FormatError
from tests.cli import kmx


def npy_bytes(a: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


IMG = np.arange(20 * 8 * 8 * 3, dtype=np.uint8).reshape(20, 8, 8, 3)


def folder(tmp_path: Path) -> Path:
    d = tmp_path / "w"
    d.mkdir()
    return d


def assert_one_clear_line(path: Path, pattern: str) -> None:
    with pytest.raises(FormatError, match=pattern) as info:
        convert_file(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # nothing written
    result = kmx("convert", str(path))
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1
    assert "Traceback" not in result.output


def test_truncated_npy(tmp_path: Path) -> None:
    p = folder(tmp_path) / "t.npy"
    p.write_bytes(npy_bytes(IMG)[:-100])
    assert_one_clear_line(p, "claims .* bytes but there are only")


def test_header_claims_more_than_the_file_holds(tmp_path: Path) -> None:
    raw = npy_bytes(IMG).replace(b"(20, 8, 8, 3)", b"(99, 8, 8, 3)")
    p = folder(tmp_path) / "big.npy"
    p.write_bytes(raw)
    assert_one_clear_line(p, "truncated or corrupt")


def test_header_cut_short(tmp_path: Path) -> None:
    p = folder(tmp_path) / "h.npy"
    p.write_bytes(npy_bytes(IMG)[:40])
    assert_one_clear_line(p, "cut short")


def test_not_npy_content(tmp_path: Path) -> None:
    p = folder(tmp_path) / "text.npy"
    p.write_text("hello, this is a CSV file\n1,2,3\n")
    assert_one_clear_line(p, "not a .npy array")


def test_bad_header_literal(tmp_path: Path) -> None:
    raw = npy_bytes(IMG).replace(b"'descr'", b"__import__", 1)
    p = folder(tmp_path) / "evil.npy"
    p.write_bytes(raw)
    assert_one_clear_line(p, "not a valid dict literal|must hold exactly")


@pytest.mark.parametrize("dtype", ["V0", np.dtype([])])
def test_items_of_zero_bytes(tmp_path: Path, dtype: object) -> None:
    # numpy writes these (found by the fuzzer); they hold no data to transpose
    p = folder(tmp_path) / "empty.npy"
    p.write_bytes(npy_bytes(np.zeros((2, 4, 4, 3), dtype=dtype)))
    assert_one_clear_line(p, "items of zero bytes")


def test_not_a_zip(tmp_path: Path) -> None:
    p = folder(tmp_path) / "z.npz"
    p.write_bytes(b"PK\x03\x04 definitely not a zip file" * 10)
    assert_one_clear_line(p, "not a valid .npz")


def test_truncated_npz(tmp_path: Path) -> None:
    d = folder(tmp_path)
    np.savez(d / "full.npz", x=IMG)
    p = d / "cut.npz"
    p.write_bytes((d / "full.npz").read_bytes()[:-300])
    (d / "full.npz").unlink()
    assert_one_clear_line(p, "not a valid .npz")


@pytest.mark.parametrize("compressed", [False, True])
def test_corrupt_member_data(tmp_path: Path, compressed: bool) -> None:
    d = folder(tmp_path)
    p = d / "bad.npz"
    rng = np.random.default_rng(1)
    x = np.zeros((200, 16, 16, 3), np.uint8)
    x[:, 4:12] = rng.integers(0, 255, (200, 8, 16, 3))
    (np.savez_compressed if compressed else np.savez)(p, x=x)
    raw = bytearray(p.read_bytes())
    with zipfile.ZipFile(p) as zf:
        info = zf.getinfo("x.npy")
    start = info.header_offset + 30 + len(info.filename) + 200
    for i in range(start, start + 64):
        raw[i] ^= 0x5A
    p.write_bytes(bytes(raw))
    assert_one_clear_line(p, "corrupt")


def test_unsupported_compression_method(tmp_path: Path) -> None:
    d = folder(tmp_path)
    p = d / "bz.npz"
    with zipfile.ZipFile(p, "w", compression=zipfile.ZIP_BZIP2) as zf:
        zf.writestr("x.npy", npy_bytes(IMG))
    assert_one_clear_line(p, "compression method 12 is not supported")


def test_member_header_claims_more(tmp_path: Path) -> None:
    d = folder(tmp_path)
    p = d / "m.npz"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("x.npy", npy_bytes(IMG).replace(b"(20, 8,", b"(90, 8,"))
    assert_one_clear_line(p, "claims .* but the member holds")


def test_bad_local_header(tmp_path: Path) -> None:
    d = folder(tmp_path)
    p = d / "l.npz"
    np.savez(p, x=IMG)
    raw = bytearray(p.read_bytes())
    raw[0:4] = struct.pack("<I", 0xDEADBEEF)
    p.write_bytes(bytes(raw))
    assert_one_clear_line(p, "local zip header|not a valid .npz")
