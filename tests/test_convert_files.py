"""convert_file on real .npy and .npz files, checked by reading them back with numpy."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from kmx_tune.convert import convert_file
from kmx_tune.convert.common import CONVERTED, NOTHING_TO_DO, PLANNED
from kmx_tune.convert.core import convert_many, default_output
from kmx_tune.convert.npyio import build_header, parse_header
from kmx_tune.errors import KmxError, UsageError
from tests.fs_helpers import sha

RNG = np.random.default_rng(42)
SMALL_CHUNK = 4096  # forces many blocks, and the split-within-a-sample path


def images(shape: tuple[int, ...] = (37, 9, 7, 3), dtype: str = "uint8") -> np.ndarray:
    return (RNG.random(shape) * 200).astype(dtype)


def save_npy(path: Path, a: np.ndarray, version: tuple[int, int] | None = None) -> Path:
    with open(path, "wb") as fh:
        np.lib.format.write_array(fh, a, version=version, allow_pickle=False)
    return path


# -- .npy headers ------------------------------------------------------------------


@pytest.mark.parametrize(
    "a",
    [
        np.zeros((3, 4), "<f4"),
        np.zeros((2, 3, 4, 5), ">i2", order="F"),
        np.zeros((), "u1"),
        np.zeros((0, 4, 4, 3), "f8"),
        np.zeros((5,), [("a", "<i4"), ("b", ">f8")]),
        np.zeros((2, 2), "U3"),
        np.zeros((2, 2), "c16"),
    ],
)
def test_header_matches_numpy_byte_for_byte(a: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, a)
    raw = buf.getvalue()
    h = parse_header(raw, "x")
    assert (h.shape, h.dtype, h.fortran_order) == (a.shape, a.dtype, np.isfortran(a))
    assert build_header(a.dtype, a.shape, np.isfortran(a)) == raw[: h.data_offset]


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
def test_every_header_version_converts(tmp_path: Path, version: tuple[int, int]) -> None:
    a = images()
    src = save_npy(tmp_path / "x.npy", a, version)
    r = convert_file(src)
    assert r.status == CONVERTED and r.output == str(tmp_path / "x.channels_first.npy")
    assert np.array_equal(np.load(r.output), a.transpose(0, 3, 1, 2))


# -- .npy conversion ---------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["uint8", ">f4", "<f8", ">i2", "bool", "complex64"])
@pytest.mark.parametrize("chunk", [SMALL_CHUNK, 8 << 20])
def test_npy_keeps_dtype_and_byte_order(tmp_path: Path, dtype: str, chunk: int) -> None:
    a = images(dtype=dtype)
    src = save_npy(tmp_path / "x.npy", a)
    before = sha(src)
    r = convert_file(src, chunk_bytes=chunk, verify=True)
    out = np.load(r.output)
    assert out.dtype == a.dtype and out.dtype.byteorder == a.dtype.byteorder
    assert np.array_equal(out, a.transpose(0, 3, 1, 2))
    assert sha(src) == before
    assert r.verified == "full"


@pytest.mark.parametrize("chunk", [SMALL_CHUNK, 8 << 20])
def test_fortran_order_converts_correctly(tmp_path: Path, chunk: int) -> None:
    a = np.asfortranarray(images((23, 11, 13, 3), ">f4"))
    src = save_npy(tmp_path / "f.npy", a)
    r = convert_file(src, chunk_bytes=chunk, verify=True)
    out = np.load(r.output)
    assert np.array_equal(out, a.transpose(0, 3, 1, 2)) and out.dtype == a.dtype


def test_5d_and_reverse_direction_round_trip(tmp_path: Path) -> None:
    a = images((6, 5, 7, 8, 3))
    src = save_npy(tmp_path / "vol.npy", a)
    cf = convert_file(src, chunk_bytes=SMALL_CHUNK)
    assert np.load(cf.output).shape == (6, 3, 5, 7, 8)
    back = convert_file(cf.output, to="channels_last", chunk_bytes=SMALL_CHUNK)
    assert back.output == str(tmp_path / "vol.channels_last.npy")
    assert np.array_equal(np.load(back.output), a)


def test_already_converted_is_skipped_not_transposed_twice(tmp_path: Path) -> None:
    src = save_npy(tmp_path / "x.npy", images())
    first = convert_file(src)
    again = convert_file(first.output)
    assert again.status == NOTHING_TO_DO and again.output is None
    assert "already channels_first" in again.arrays[0].note
    assert not (tmp_path / "x.channels_first.channels_first.npy").exists()


def test_mnist_add_channel_axis(tmp_path: Path) -> None:
    a = images((50, 28, 28))
    src = save_npy(tmp_path / "mnist.npy", a)
    assert convert_file(src).status == NOTHING_TO_DO  # no flag: not touched
    r = convert_file(src, add_channel_axis=True)
    assert np.array_equal(np.load(r.output), a[:, None])


def test_ambiguous_is_refused_unless_named(tmp_path: Path) -> None:
    a = images((10, 3, 8, 3))
    src = save_npy(tmp_path / "amb.npy", a)
    with pytest.raises(KmxError, match=r"refused 1 array.*'amb'.*ambiguous.*--key amb"):
        convert_file(src)
    assert not default_output(src, "channels_first").exists()
    r = convert_file(src, keys=["amb"])
    assert np.array_equal(np.load(r.output), a.transpose(0, 3, 1, 2))


def test_object_arrays_are_refused_without_unpickling(tmp_path: Path) -> None:
    a = np.empty((4, 8, 8, 3), dtype=object)
    src = tmp_path / "obj.npy"
    np.save(src, a, allow_pickle=True)
    with pytest.raises(KmxError, match="'obj'.*object array.*pickle"):
        convert_file(src)


def test_existing_output_needs_force(tmp_path: Path) -> None:
    src = save_npy(tmp_path / "x.npy", images())
    out = tmp_path / "x.channels_first.npy"
    out.write_bytes(b"precious")
    with pytest.raises(KmxError, match="exists; pass --force"):
        convert_file(src)
    assert out.read_bytes() == b"precious"
    convert_file(src, force=True)
    assert np.load(out).shape == (37, 3, 9, 7)


def test_in_place_replaces_the_source_once_verified(tmp_path: Path) -> None:
    tmp_path = tmp_path / "w"
    tmp_path.mkdir()
    a = images()
    src = save_npy(tmp_path / "x.npy", a)
    r = convert_file(src, in_place=True)
    assert r.output == str(src) and r.verified == "full"
    assert np.array_equal(np.load(src), a.transpose(0, 3, 1, 2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]
    assert convert_file(src, in_place=True).status == NOTHING_TO_DO
    with pytest.raises(UsageError):
        convert_file(src, tmp_path / "o.npy", in_place=True)


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    tmp_path = tmp_path / "w"
    tmp_path.mkdir()
    src = save_npy(tmp_path / "x.npy", images())
    r = convert_file(src, dry_run=True)
    assert r.status == PLANNED and r.arrays[0].action == "transpose"
    assert [p.name for p in tmp_path.iterdir()] == ["x.npy"]


def test_progress_reports_bytes(tmp_path: Path) -> None:
    a = images((100, 16, 16, 3))
    src = save_npy(tmp_path / "x.npy", a)
    seen: list[tuple[int, int]] = []
    convert_file(src, chunk_bytes=SMALL_CHUNK, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (a.nbytes, a.nbytes) and len(seen) > 5


def test_buffered_fallback_on_tmpfs(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir():
        pytest.skip("no /dev/shm tmpfs here")
    a = images((64, 16, 16, 3))
    src = save_npy(tmp_path / "x.npy", a)
    out = shm / f"kmx-test-{os.getpid()}.npy"
    try:
        convert_file(src, out, chunk_bytes=SMALL_CHUNK, verify=True)
        assert np.array_equal(np.load(out), a.transpose(0, 3, 1, 2))
    finally:
        out.unlink(missing_ok=True)


# -- .npz --------------------------------------------------------------------------


def make_npz(path: Path, compressed: bool) -> dict[str, np.ndarray]:
    arrays = {
        "x_train": images((40, 10, 12, 3)),
        "y_train": np.arange(40),
        "x_fortran": np.asfortranarray(images((9, 6, 5, 4), ">f4")),
        "mnist": images((12, 7, 7)),
        "scalar": np.array(3.5),
    }
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    return arrays


@pytest.mark.parametrize("compressed", [False, True])
@pytest.mark.parametrize("chunk", [SMALL_CHUNK, 8 << 20])
def test_npz_round_trip(tmp_path: Path, compressed: bool, chunk: int) -> None:
    src = tmp_path / "d.npz"
    arrays = make_npz(src, compressed)
    before = sha(src)
    r = convert_file(src, add_channel_axis=True, chunk_bytes=chunk, verify=True)
    assert r.status == CONVERTED and r.output == str(tmp_path / "d.channels_first.npz")
    actions = {a.name: a.action for a in r.arrays}
    assert actions == {
        "x_train": "transpose",
        "y_train": "copy",
        "x_fortran": "transpose",
        "mnist": "add_channel_axis",
        "scalar": "copy",
    }
    with zipfile.ZipFile(r.output) as zf:  # testzip checks every CRC
        assert zf.testzip() is None
        methods = {i.compress_type for i in zf.infolist()}
        names = [i.filename for i in zf.infolist()]
    assert methods == {zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED}
    assert names == [f"{k}.npy" for k in arrays]
    with np.load(r.output) as out:
        assert np.array_equal(out["x_train"], arrays["x_train"].transpose(0, 3, 1, 2))
        assert np.array_equal(out["y_train"], arrays["y_train"])
        assert np.array_equal(out["x_fortran"], arrays["x_fortran"].transpose(0, 3, 1, 2))
        assert out["x_fortran"].dtype == np.dtype(">f4")
        assert np.array_equal(out["mnist"], arrays["mnist"][:, None])
        assert out["scalar"] == 3.5
    assert sha(src) == before
    assert convert_file(r.output, add_channel_axis=True).status == NOTHING_TO_DO


@pytest.mark.parametrize("prefer", ["zlib", "isal", "zlib-ng"])
def test_compressed_npz_with_each_deflate_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefer: str
) -> None:
    monkeypatch.setenv("KMX_TUNE_DEFLATE", prefer)
    src = tmp_path / "d.npz"
    x = np.zeros((300, 20, 20, 3), np.uint8)
    x[:, 5:15, 5:15, :] = RNG.integers(0, 255, (300, 10, 10, 3))
    np.savez_compressed(src, x=x)
    r = convert_file(src, chunk_bytes=64 << 10, verify=True)
    with np.load(r.output) as out:
        assert np.array_equal(out["x"], x.transpose(0, 3, 1, 2))
    assert r.bytes_out < x.nbytes / 2  # still compressed


def test_npz_key_selects_arrays(tmp_path: Path) -> None:
    src = tmp_path / "d.npz"
    a, b = images((5, 3, 6, 3)), images((5, 6, 6, 3))
    np.savez(src, amb=a, other=b)
    with pytest.raises(KmxError, match="'amb'"):
        convert_file(src)
    r = convert_file(src, keys=["amb"])
    with np.load(r.output) as out:
        assert np.array_equal(out["amb"], a.transpose(0, 3, 1, 2))
        assert np.array_equal(out["other"], b)  # not named: copied


def test_folder_and_output_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    save_npy(data / "a.npy", images())
    np.savez(data / "b.npz", x=images())
    save_npy(data / "labels.npy", np.arange(5))
    results = convert_many([data], tmp_path / "out").files
    assert [Path(r.path).name for r in results] == ["a.npy", "b.npz", "labels.npy"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "a.channels_first.npy",
        "b.channels_first.npz",
    ]
    # a second run over the folder beside its outputs converts nothing twice
    again = convert_many([data]).files
    assert all(r.status in (CONVERTED, NOTHING_TO_DO) for r in again)
    # and a third finds the outputs complete and verified: skipped, so a run resumes
    third = convert_many([data]).files
    assert {r.status for r in third} == {"skipped", NOTHING_TO_DO}


# -- reading the source: rows, regions, rows too big to read whole -------------------------


@pytest.mark.parametrize("seed", range(30))
@pytest.mark.parametrize("how", ["span", "runs"])
def test_read_source_regions_match_numpy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int, how: str
) -> None:
    """ReadSource.region(index) is raw[index], whether read in one span or in runs."""
    from kmx_tune.convert import kernel
    from kmx_tune.convert.kernel import ReadSource

    if how == "runs":
        monkeypatch.setattr(kernel, "_SPAN_SLACK", 0)
        monkeypatch.setattr(kernel, "_SPAN_MIN", 0)

    rng = np.random.default_rng(seed)
    shape = tuple(int(n) for n in rng.integers(1, 9, rng.integers(1, 6)))
    a = rng.integers(0, 1 << 30, shape).astype(rng.choice(["u1", ">i4", "<f8"]))
    path = tmp_path / "raw.bin"
    path.write_bytes(b"HEAD" + a.tobytes())
    index = []
    for n in shape:
        lo = int(rng.integers(0, n))
        hi = int(rng.integers(lo + 1, n + 1))
        index.append(rng.choice([slice(None), slice(lo, hi), slice(lo, lo + 1)]))
    fd = os.open(path, os.O_RDONLY)
    try:
        src = ReadSource(fd, 4, shape, a.dtype, "raw.bin")
        assert np.array_equal(src.region(tuple(index)), a[tuple(index)])
        assert np.array_equal(src.rows(0, shape[0]), a)
    finally:
        os.close(fd)


@pytest.mark.parametrize("kind", ["npy", "npy_fortran", "npz", "npz_compressed"])
def test_rows_too_big_to_read_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """Samples larger than the row limit are read a region at a time (here the limit is
    made small: a real one is 32 MB)."""
    from kmx_tune.convert import kernel

    monkeypatch.setattr(kernel, "ROW_LIMIT", 2048)
    a = images((5, 40, 30, 3), "<f4")  # 14 KB rows
    if kind == "npy_fortran":
        a = np.asfortranarray(a)
    if kind.startswith("npy"):
        src = save_npy(tmp_path / "x.npy", a)
    else:
        src = tmp_path / "x.npz"
        (np.savez_compressed if kind == "npz_compressed" else np.savez)(src, x=a)
    for verify in (False, True):
        r = convert_file(src, chunk_bytes=SMALL_CHUNK, verify=verify, force=True)
        out = np.load(r.output)
        got = out if kind.startswith("npy") else out["x"]
        assert np.array_equal(got, a.transpose(0, 3, 1, 2))
        back = convert_file(r.output, to="channels_last", chunk_bytes=SMALL_CHUNK, force=True)
        back_arr = np.load(back.output)
        assert np.array_equal(back_arr if kind.startswith("npy") else back_arr["x"], a)


# -- what an .npz holds around its members ---------------------------------------------------


def test_bytes_before_and_after_the_archive_are_kept(tmp_path: Path) -> None:
    inner = tmp_path / "inner.npz"
    np.savez(inner, x=images((4, 6, 5, 3)), y=np.arange(4))
    src = tmp_path / "d.npz"
    stub, tail = b"#!/bin/sh\necho self-extracting\nexit 0\n", b"appended notes\n"
    src.write_bytes(stub + inner.read_bytes() + tail)
    for in_place in (False, True):
        r = convert_file(src, in_place=in_place, force=True)
        out = Path(str(r.output)).read_bytes()
        assert out.startswith(stub) and out.endswith(tail)
        with zipfile.ZipFile(r.output) as zf:
            assert zf.testzip() is None
            got = np.load(io.BytesIO(zf.read("x.npy")))
        assert got.shape == (4, 3, 6, 5)


def test_zip64_extra_fields_in_the_source_are_rewritten_not_copied(tmp_path: Path) -> None:
    src = tmp_path / "z.npz"
    x = images((4, 6, 5, 3))
    with zipfile.ZipFile(src, "w") as zf:
        for name, arr in (("x.npy", x), ("y.npy", np.arange(4))):
            with zf.open(name, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, arr)
    with zipfile.ZipFile(src) as zf:
        assert all(i.extract_version >= 45 for i in zf.infolist())  # zip64 records there
    r = convert_file(src, verify=True)
    with zipfile.ZipFile(r.output) as zf:
        assert zf.testzip() is None
        assert np.array_equal(np.load(io.BytesIO(zf.read("x.npy"))), x.transpose(0, 3, 1, 2))
        assert np.array_equal(np.load(io.BytesIO(zf.read("y.npy"))), np.arange(4))
