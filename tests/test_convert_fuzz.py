"""Fuzz the .npy header parser and the .npy/.npz readers: 10,500 generated inputs in
all. Every one must either convert or raise a KmxError (one clear line)."""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kmx_tune.convert import convert_file
from kmx_tune.convert.npyio import NpyHeader, parse_header
from kmx_tune.errors import KmxError

pytestmark = pytest.mark.fuzz


def fuzz(n: int) -> settings:
    return settings(
        max_examples=n,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
    )


def npy(a: np.ndarray, version: tuple[int, int] | None = None) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a, version=version)
    return buf.getvalue()


SEEDS = [
    npy(np.arange(2 * 5 * 4 * 3, dtype=np.uint8).reshape(2, 5, 4, 3)),
    npy(np.asfortranarray(np.ones((3, 4, 5, 1), ">f4")), (2, 0)),
    npy(np.zeros((4, 6, 6), "<i2"), (3, 0)),
    npy(np.arange(7)),
]


def npz(compressed: bool) -> bytes:
    buf = io.BytesIO()
    x = np.arange(3 * 6 * 5 * 3, dtype=np.uint8).reshape(3, 6, 5, 3)
    (np.savez_compressed if compressed else np.savez)(buf, x=x, y=np.arange(3), g=x[..., 0])
    return buf.getvalue()


ZIPS = [npz(False), npz(True)]


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "set", "cut", "insert", "delete"]))
        # mutations concentrate on the headers, where the parsing happens
        pos = draw(st.integers(0, max(0, min(len(data), 200) - 1)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "cut":
            data = data[: draw(st.integers(0, len(data)))]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 8))]
    return bytes(data)


def header_text() -> st.SearchStrategy[bytes]:
    descr = st.one_of(
        st.sampled_from(["<f4", ">i8", "|u1", "|O", "<U5", "|V0", "|b1", "<M8[s]", "x", ""]),
        st.text(max_size=8),
        st.lists(st.tuples(st.text(max_size=3), st.sampled_from(["<i4", "|O", "zz"])), max_size=3),
    )
    shape = st.one_of(
        st.tuples(*[st.integers(-2, 70)] * 4),
        st.lists(st.integers(-1, 10), max_size=6).map(tuple),
        st.just("x"),
    )

    def render(d: tuple[object, object, object, bool]) -> bytes:
        descr_v, shape_v, order_v, extra = d
        body = f"{{'descr': {descr_v!r}, 'fortran_order': {order_v!r}, 'shape': {shape_v!r}, "
        body += "'x': 1, }" if extra else "}"
        body_b = body.encode("utf-8", "replace")
        return b"\x93NUMPY\x01\x00" + len(body_b).to_bytes(2, "little") + body_b

    return st.tuples(descr, shape, st.sampled_from([True, False, 0, None]), st.booleans()).map(
        render
    )


@fuzz(3000)
@given(st.one_of(mutated(SEEDS), st.binary(max_size=64), header_text()))
def test_parse_header_fuzz(data: bytes) -> None:
    try:
        h = parse_header(data, "fuzz")
    except KmxError as exc:
        assert "\n" not in str(exc)
        return
    assert isinstance(h, NpyHeader) and all(n >= 0 for n in h.shape)


_TMP = tempfile.TemporaryDirectory(prefix="kmx-fuzz-")  # removed when the test run ends
_DIR = Path(_TMP.name)


def _convert(data: bytes, suffix: str) -> None:
    src = _DIR / f"in{suffix}"
    src.write_bytes(data)
    try:
        convert_file(src, _DIR / f"out{suffix}", force=True, add_channel_axis=True)
    except KmxError as exc:
        assert "\n" not in str(exc)


@fuzz(2500)
@given(st.one_of(mutated(SEEDS), header_text()))
def test_convert_npy_fuzz(data: bytes) -> None:
    _convert(data, ".npy")


@fuzz(3000)
@given(mutated(ZIPS))
def test_convert_npz_fuzz(data: bytes) -> None:
    _convert(data, ".npz")


@st.composite
def zip_with_odd_members(draw: st.DrawFn) -> bytes:
    """Valid zips whose members are not what numpy writes."""
    buf = io.BytesIO()
    method = draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
    with zipfile.ZipFile(buf, "w", compression=method) as zf:
        for i in range(draw(st.integers(0, 3))):
            name = draw(st.sampled_from([f"a{i}.npy", f"b{i}", "dup.npy", "é.npy"]))
            content = draw(st.one_of(mutated(SEEDS), st.binary(max_size=40)))
            zf.writestr(name, content)
    return buf.getvalue()


@pytest.mark.filterwarnings("ignore:Duplicate name")
@fuzz(2000)
@given(zip_with_odd_members())
def test_convert_zip_members_fuzz(data: bytes) -> None:
    _convert(data, ".npz")
