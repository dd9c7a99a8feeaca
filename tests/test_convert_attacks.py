"""Regression tests for the `convert` findings of the adversarial review of 2026-11-30
(../shared/reports/adversarial-review-2026-11-30.md): each test names its finding, and
each failed before its fix."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest

from kmx_tune import fsio
from kmx_tune.convert import convert_file
from kmx_tune.convert.npyio import MAGIC
from kmx_tune.errors import KmxError
from tests.cli import kmx, kmx_json
from tests.fs_helpers import tiny_disk, unwritable_dir

IMG = np.arange(2 * 5 * 6 * 3, dtype=np.uint8).reshape(2, 5, 6, 3)


def npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def npy_with_header(descr: object, shape: tuple[int, ...], data: bytes = b"") -> bytes:
    """A .npy file with a hand-written header (what numpy would never write)."""
    text = f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': {shape!r}, }}".encode()
    pad = 64 - (10 + len(text) + 1) % 64
    body = text + b" " * pad + b"\n"
    return MAGIC + b"\x01\x00" + struct.pack("<H", len(body)) + body + data


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    """An empty folder of the test's own (``tmp_path`` also holds the test's HOME)."""
    folder = tmp_path / "w"
    folder.mkdir()
    return folder


def names_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def one_error_line(r: object, exit_code: int = 1) -> str:
    """The run failed with ``exit_code`` and said why in one ``Error:`` line."""
    assert r.exit_code == exit_code, r.output  # type: ignore[attr-defined]
    err: str = r.stderr  # type: ignore[attr-defined]
    assert err.startswith("Error: ") and err.count("\n") == 1, err
    assert "Traceback" not in r.output  # type: ignore[attr-defined]
    return err


# -- D1: never drop bytes it cannot account for ------------------------------------------


def test_d1_npy_with_two_np_save_calls_is_refused_and_never_cut(tmp: Path) -> None:
    src = tmp / "m.npy"
    with open(src, "wb") as f:
        np.save(f, np.zeros((10, 8, 9, 3), "u1"))
        np.save(f, np.arange(10))
    before = src.read_bytes()
    for args in ([], ["--in-place", "--verify"], ["--dry-run"]):
        err = one_error_line(kmx("convert", str(src), *args))
        assert "1 more array after the first" in err and "np.save" in err, err
        assert "np.load" in err  # what to do: load each and save them apart
        assert src.read_bytes() == before and names_in(tmp) == ["m.npy"]


def test_d1_npy_with_trailing_bytes_is_refused(tmp: Path) -> None:
    src = tmp / "t.npy"
    src.write_bytes(npy_bytes(IMG) + b"labels: cat, dog, cat\n")
    before = src.read_bytes()
    err = one_error_line(kmx("convert", str(src), "--in-place"))
    assert "22 bytes after the array" in err and "nothing was written" in err
    assert src.read_bytes() == before and names_in(tmp) == ["t.npy"]


def test_d1_trailing_bytes_in_an_npz_member_are_refused_when_it_is_rewritten(
    tmp: Path,
) -> None:
    src = tmp / "d.npz"
    with zipfile.ZipFile(src, "w") as zf:
        zf.writestr("x.npy", npy_bytes(IMG) + b"\x93NUMPY and more")
        zf.writestr("y.npy", npy_bytes(np.arange(2)) + b"tail")  # copied as it is: kept
    before = src.read_bytes()
    err = one_error_line(kmx("convert", str(src), "--in-place"))
    assert "'x'" in err and "bytes after the array" in err and "'y'" not in err
    assert src.read_bytes() == before and names_in(tmp) == ["d.npz"]
    # only y (copied byte for byte) has extra bytes: that converts, keeping them
    with zipfile.ZipFile(src, "w") as zf:
        zf.writestr("x.npy", npy_bytes(IMG))
        zf.writestr("y.npy", npy_bytes(np.arange(2)) + b"tail")
    assert kmx("convert", str(src)).exit_code == 0
    with zipfile.ZipFile(tmp / "d.channels_first.npz") as zf:
        assert zf.read("y.npy").endswith(b"tail")


# -- D5: two inputs, one output --------------------------------------------------------


def test_d5_two_inputs_with_one_output_are_refused_before_anything_is_written(
    tmp: Path,
) -> None:
    (tmp / "a").mkdir()
    (tmp / "b").mkdir()
    np.save(tmp / "a" / "x.npy", IMG)
    np.save(tmp / "b" / "x.npy", np.ones((7, 5, 6, 3), "u1"))
    out = tmp / "out"
    r = kmx("convert", str(tmp / "a/x.npy"), str(tmp / "b/x.npy"), "-o", f"{out}/")
    err = one_error_line(r, 2)
    assert "a/x.npy" in err and "b/x.npy" in err and "x.channels_first.npy" in err
    assert not out.exists()
    r = kmx("convert", str(tmp / "a/x.npy"), str(tmp / "b/x.npy"), "-o", f"{out}/", "--force")
    one_error_line(r, 2)
    assert not out.exists()


def test_d5_other_collisions_in_one_run(tmp: Path) -> None:
    np.save(tmp / "x.npy", IMG)
    np.save(tmp / "x.channels_last.npy", IMG)  # both give x.channels_first.npy
    err = one_error_line(kmx("convert", str(tmp / "x.npy"), str(tmp / "x.channels_last.npy")), 2)
    assert "x.channels_first.npy" in err
    # the same file twice (here once through a link): its output twice, or in place twice
    (tmp / "link.npy").symlink_to(tmp / "x.npy")
    err = one_error_line(kmx("convert", str(tmp / "x.npy"), str(tmp / "link.npy"), "--in-place"), 2)
    assert "twice" in err
    assert names_in(tmp) == ["link.npy", "x.channels_last.npy", "x.npy"]
    assert np.array_equal(np.load(tmp / "x.npy"), IMG)


# -- C8: an output folder that cannot be made ------------------------------------------


def test_c8_output_folder_under_a_file(tmp: Path) -> None:
    np.save(tmp / "a.npy", IMG)
    err = one_error_line(kmx("convert", str(tmp / "a.npy"), "-o", f"{tmp}/a.npy/sub/"))
    assert "cannot create the folder" in err and "not a folder" in err


def test_c8_output_folder_on_a_read_only_file_system(tmp: Path) -> None:
    np.save(tmp / "a.npy", IMG)
    ro = tmp / "ro"
    ro.mkdir()
    with unwritable_dir(ro):
        err = one_error_line(kmx("convert", str(tmp / "a.npy"), "-o", f"{ro}/new/"))
    assert "cannot create the folder" in err


def test_c8_dry_run_makes_no_folder(tmp: Path) -> None:
    np.save(tmp / "a.npy", IMG)
    r = kmx("convert", str(tmp / "a.npy"), "-o", f"{tmp}/new/", "--dry-run")
    assert r.exit_code == 0, r.output
    assert not (tmp / "new").exists()


# -- D8 and B12: zip metadata and odd member names are kept ------------------------------


def local_extra(path: Path, name: str) -> bytes:
    """The extra field of a member's local header, as stored."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(name)
    raw = path.read_bytes()[info.header_offset :]
    n, e = struct.unpack("<HH", raw[26:30])
    return raw[30 + n : 30 + n + e]


@pytest.mark.parametrize("compressed", [False, True])
@pytest.mark.parametrize("in_place", [False, True])
def test_d8_zip_comment_member_comments_and_extra_fields_are_kept(
    tmp: Path, compressed: bool, in_place: bool
) -> None:
    src = tmp / "d.npz"
    method = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
    # an Info-ZIP extended timestamp (0x5455) and a private block (0xCAFE)
    extra = struct.pack("<HHBI", 0x5455, 5, 1, 1700000000) + struct.pack("<HH3s", 0xCAFE, 3, b"kmx")
    with zipfile.ZipFile(src, "w", compression=method) as zf:
        zf.comment = b"dataset v3, from the lab"
        for name, arr, comment in (
            ("x.npy", IMG, b"images, NHWC"),  # converted
            ("y.npy", np.arange(2), b"labels"),  # copied byte for byte
        ):
            info = zipfile.ZipInfo(name, (2020, 5, 17, 10, 30, 0))
            info.compress_type, info.comment, info.extra = method, comment, extra
            zf.writestr(info, npy_bytes(arr))
    r = kmx("convert", str(src), *(["--in-place"] if in_place else []))
    assert r.exit_code == 0, r.output
    out = src if in_place else tmp / "d.channels_first.npz"
    with zipfile.ZipFile(out) as zf:
        assert zf.testzip() is None
        assert zf.comment == b"dataset v3, from the lab"
        got = {i.filename: i for i in zf.infolist()}
    assert got["x.npy"].comment == b"images, NHWC" and got["y.npy"].comment == b"labels"
    for name in ("x.npy", "y.npy"):
        assert got[name].extra == extra and local_extra(out, name) == extra
        assert got[name].date_time == (2020, 5, 17, 10, 30, 0)
    assert np.load(out)["x"].shape == (2, 3, 5, 6)


def test_b12_member_names_with_a_nul_byte_are_kept_whole(tmp: Path) -> None:
    src = tmp / "n.npz"
    with zipfile.ZipFile(src, "w") as zf:
        zf.writestr("aZb.npy", npy_bytes(IMG))
        zf.writestr("y.npy", npy_bytes(np.arange(2)))
    src.write_bytes(src.read_bytes().replace(b"aZb.npy", b"a\x00b.npy"))
    with zipfile.ZipFile(src) as zf:
        assert [i.orig_filename for i in zf.infolist()] == ["a\x00b.npy", "y.npy"]
    r = kmx("convert", str(src))
    assert r.exit_code == 0, r.output
    assert "a\\x00b" in r.stdout and "\x00" not in r.output
    with zipfile.ZipFile(tmp / "n.channels_first.npz") as zf:
        assert [i.orig_filename for i in zf.infolist()] == ["a\x00b.npy", "y.npy"]
        assert np.load(io.BytesIO(zf.read(zf.infolist()[0]))).shape == (2, 3, 5, 6)


# -- C6 and B4: odd dtypes and shapes --------------------------------------------------


def test_c6_subarray_dtype_is_one_error_line(tmp: Path) -> None:
    src = tmp / "sub.npy"
    src.write_bytes(npy_with_header(("<i4", (3,)), (2, 5, 6, 3), bytes(2 * 5 * 6 * 3 * 12)))
    err = one_error_line(kmx("convert", str(src)))
    assert "subarray" in err and "('<i4', (3,))" in err
    with zipfile.ZipFile(tmp / "sub.npz", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("x.npy", src.read_bytes())
    err = one_error_line(kmx("convert", str(tmp / "sub.npz")))
    assert "subarray" in err
    assert names_in(tmp) == ["sub.npy", "sub.npz"]


@pytest.mark.parametrize("shape", [(10**30, 0, 6, 3), (2**62, 0, 2**62, 2**62, 3)])
def test_c6_huge_axes_of_an_empty_array_are_one_error_line(
    tmp: Path, shape: tuple[int, ...]
) -> None:
    src = tmp / "huge.npy"
    src.write_bytes(npy_with_header("|u1", shape))
    err = one_error_line(kmx("convert", str(src)))
    assert "too large" in err and str(shape) in err


@pytest.mark.parametrize(
    "descr",
    [
        [("", "<i4", (3,))],  # the review's: a field numpy reads as padding only
        [("a", "u1"), ("", "|V3"), ("b", "<i4")],  # a field, padding, a field
    ],
)
def test_b4_records_with_padding_move_whole_with_every_byte(tmp: Path, descr: object) -> None:
    """A structured dtype is one value per pixel: each record moves whole, padding and
    all (numpy's own copies skip padding bytes, which is what made the check fail)."""
    from numpy.lib import format as npformat

    dtype = npformat.descr_to_dtype(descr)
    raw = np.random.default_rng(4).integers(0, 256, 2 * 5 * 6 * 3 * dtype.itemsize, np.uint8)
    src = tmp / "rec.npy"
    src.write_bytes(npy_with_header(descr, (2, 5, 6, 3), raw.tobytes()))
    r = kmx("convert", str(src), "--verify")
    assert r.exit_code == 0, r.output
    out = tmp / "rec.channels_first.npy"
    records = raw.view(f"V{dtype.itemsize}").reshape(2, 5, 6, 3)
    got = out.read_bytes()
    want = records.transpose(0, 3, 1, 2).tobytes()
    assert got.endswith(want) and len(got) % 64 == len(want) % 64
    assert np.load(out).dtype == dtype


# -- C9: the source cut short while it is being read --------------------------------------

TRUNCATE_MID_WAY = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    from kmx_tune.convert import convert_file
    from kmx_tune.errors import KmxError
    src, verify = sys.argv[1], sys.argv[2] == "verify"
    calls = []
    def cut(done, total):
        calls.append(done)
        if len(calls) == 2:  # another program truncates the file
            os.truncate(src, 4096)
    try:
        convert_file(src, chunk_bytes=64 << 10, progress=cut, verify=verify)
    except KmxError as exc:
        print("KmxError:", exc)
    else:
        print("converted")
    """
)


@pytest.mark.parametrize("kind", ["npy", "npy_fortran", "npz_stored"])
def test_c9_source_truncated_during_the_conversion(tmp: Path, kind: str) -> None:
    x = np.random.default_rng(1).integers(0, 255, (300, 32, 32, 3), np.uint8)
    if kind == "npz_stored":
        src = tmp / "x.npz"
        np.savez(src, x=x)
    else:
        src = tmp / "x.npy"
        np.save(src, np.asfortranarray(x) if kind == "npy_fortran" else x)
    done = subprocess.run(
        [sys.executable, "-c", TRUNCATE_MID_WAY, str(src), "sampled"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"rc {done.returncode} (SIGBUS is -7): {done.stderr[-500:]}"
    assert done.stdout.startswith("KmxError:"), done.stdout
    assert "changed while it was being read" in done.stdout or "corrupt" in done.stdout
    assert "nothing was written" in done.stdout or "nothing was replaced" in done.stdout
    assert names_in(tmp) == [src.name]  # nothing published, no temporary file left


# -- B1: FIFOs and other files that are not regular ----------------------------------------


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kmx_tune", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def test_b1_a_fifo_as_input_does_not_hang(tmp: Path) -> None:
    os.mkfifo(tmp / "f.npy")
    os.mkfifo(tmp / "f.npz")
    np.save(tmp / "x.npy", IMG)
    done = run_cli("convert", str(tmp / "f.npy"))
    assert done.returncode == 2 and "not a regular file" in done.stderr, done.stderr
    # several inputs with --key look into every .npz for the name first
    done = run_cli("convert", str(tmp / "f.npz"), str(tmp / "x.npy"), "--key", "x")
    assert done.returncode == 1 and "not a regular file" in done.stdout, done.stdout
    os.mkfifo(tmp / "f.h5")  # and HDF5 files too
    done = run_cli("convert", str(tmp / "f.h5"), str(tmp / "x.npy"), "--key", "x", "--force")
    assert done.returncode == 1 and "not a regular file" in done.stdout, done.stdout
    assert (tmp / "x.channels_first.npy").exists()
    (tmp / "zero.npy").symlink_to("/dev/zero")
    done = run_cli("convert", str(tmp / "zero.npy"))
    assert done.returncode == 2 and "not a regular file" in done.stderr, done.stderr


# -- B2: the free-space check --------------------------------------------------------------


def test_b2_a_tiny_file_that_fits_is_not_refused(tmp: Path) -> None:
    np.save(tmp / "a.npy", IMG)
    with tiny_disk(tmp / "disk", 1024) as disk:
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        (disk / "filler").write_bytes(bytes(free - (300 << 10)))  # leave 300 KB
        r = kmx("convert", str(tmp / "a.npy"), "-o", str(disk / "a.npy"))
        assert r.exit_code == 0, r.output
        big = tmp / "big.npy"
        np.save(big, np.zeros((10, 100, 100, 3), "u1"))  # 300 KB: does not fit with room
        err = one_error_line(kmx("convert", str(big), "-o", str(disk / "big.npy")))
        assert "needs 300.1 KB" in err and "kept free" in err and "KB is free" in err, err


def test_b2_a_read_only_file_system_says_read_only(tmp: Path) -> None:
    np.save(tmp / "a.npy", IMG)
    with tiny_disk(tmp / "disk", 1024) as disk:
        (disk / "filler").write_bytes(bytes(600 << 10))
        with unwritable_dir(disk):
            err = one_error_line(kmx("convert", str(tmp / "a.npy"), "-o", str(disk / "a.npy")))
    assert "read-only" in err and "MB" not in err


# -- B3: many refused arrays -----------------------------------------------------------------


def test_b3_thousands_of_refused_arrays_make_one_short_line(tmp: Path) -> None:
    src = tmp / "many.npz"
    amb = npy_bytes(np.zeros((1, 3, 2, 3), "u1"))
    with zipfile.ZipFile(src, "w") as zf:
        for i in range(3000):
            zf.writestr(f"amb{i}.npy", amb)
    err = one_error_line(kmx("convert", str(src)))
    assert len(err) < 600, len(err)
    assert "refused 3000 array(s)" in err and "'amb0'" in err and "and 2997 more" in err
    code, data = kmx_json("convert", str(src), "--dry-run")  # every name, as data
    assert code == 1 and len(data["files"][0]["arrays"]) == 3000
    err = one_error_line(kmx("convert", str(src), "--key", "nope"), 2)
    assert len(err) < 600 and "and 2990 more" in err


# -- B12: hard links, dtype names --------------------------------------------------------


def test_b12_in_place_refuses_a_file_with_other_hard_links(tmp: Path) -> None:
    src = tmp / "x.npy"
    np.save(src, IMG)
    os.link(src, tmp / "alias.npy")
    before = src.read_bytes()
    err = one_error_line(kmx("convert", str(src), "--in-place"))
    assert "2 hard links" in err and "-o" in err
    assert src.read_bytes() == before == (tmp / "alias.npy").read_bytes()
    assert os.stat(src).st_ino == os.stat(tmp / "alias.npy").st_ino


def test_b12_string_dtypes_are_shown_as_numpy_writes_them(tmp: Path) -> None:
    src = tmp / "s.npz"
    np.savez(src, u=np.zeros((2, 5, 6, 3), "<U3"), b=np.zeros((2, 5, 6, 3), "S2"))
    r = kmx("convert", str(src), "--dry-run")
    assert r.exit_code == 0 and "<U3" in r.stdout and "S2" in r.stdout
    assert "str96" not in r.stdout and "bytes16" not in r.stdout


# -- B13: temporary files of runs in other PID namespaces ------------------------------------

HOLD_A_TEMP = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from kmx_tune import fsio
    os.getpid = lambda: int(sys.argv[2])  # a PID that does not exist in the test's namespace
    final = Path(sys.argv[1])
    with fsio.temp_output(final) as tmp:
        os.write(tmp.fd, b"converted data")
        print(tmp.path, flush=True)
        sys.stdin.readline()  # the test cleans meanwhile
        fsio.publish(tmp.path, final)
    print("published", flush=True)
    """
)


def test_b13_a_temp_file_in_use_by_another_pid_namespace_is_not_removed(tmp: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()  # its PID is now free: that is how a run in another namespace looks
    final = tmp / "x.channels_first.npy"
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD_A_TEMP, str(final), str(dead.pid)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        tmp = Path(child.stdout.readline().strip())
        assert tmp.exists() and f"{fsio.TEMP_MARK}{dead.pid}-" in tmp.name
        assert fsio.clean_stale_temps(final) == []
        assert tmp.exists()
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "published"
    finally:
        child.kill()
        child.wait()
    assert final.read_bytes() == b"converted data"


def test_b13_a_temp_file_whose_run_is_gone_is_removed(tmp: Path) -> None:
    final = tmp / "x.channels_first.npy"
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, sys; from pathlib import Path; from kmx_tune import fsio\n"
            "with fsio.temp_output(Path(sys.argv[1])) as t: print(t.path); os._exit(9)",
            str(final),
        ],
        capture_output=True,
        text=True,
    )
    tmp = Path(child.stdout.strip())
    assert tmp.exists()
    assert fsio.clean_stale_temps(final) == [tmp] and not tmp.exists()


# -- issue 15: what the dry run and the real run say ------------------------------------------


def test_dry_run_says_when_the_output_exists(tmp: Path) -> None:
    src = tmp / "x.npy"
    np.save(src, IMG)
    (tmp / "x.channels_first.npy").write_bytes(b"old")
    r = kmx("convert", str(src), "--dry-run")
    assert r.exit_code == 0
    assert "x.channels_first.npy exists: the real run refuses it without --force" in r.stdout
    r = kmx("convert", str(src), "--dry-run", "--force")
    assert "x.channels_first.npy exists: --force replaces it" in r.stdout
    code, data = kmx_json("convert", str(src), "--dry-run")
    assert "exists" in data["files"][0]["message"]


def test_dry_run_of_an_hdf5_file_says_when_the_output_exists(tmp: Path) -> None:
    import h5py

    with h5py.File(tmp / "d.h5", "w") as f:
        f["x"] = IMG
        f["amb"] = np.zeros((1, 3, 2, 3), "u1")
    (tmp / "d.channels_first.h5").write_bytes(b"old")
    r = kmx("convert", str(tmp / "d.h5"), "--dry-run", "--key", "x")
    assert r.exit_code == 0 and "d.channels_first.h5 exists: the real run refuses" in r.stdout
    code, data = kmx_json("convert", str(tmp / "d.h5"))  # refused: every dataset listed
    assert code == 1 and {a["name"] for a in data["files"][0]["arrays"]} == {"x", "amb"}


def test_after_converting_it_says_what_to_load_next(tmp: Path) -> None:
    src = tmp / "data.npz"
    np.savez(src, x=IMG)
    r = kmx("convert", str(src))
    assert r.exit_code == 0
    assert "Next: load data.channels_first.npz in your script (instead of data.npz)" in r.stdout
    assert "--in-place" in r.stdout
    r = kmx("convert", str(tmp / "data.channels_first.npz"))
    assert "Next:" not in r.stdout  # nothing was written
    np.savez(src, x=IMG)
    r = kmx("convert", str(src), "--in-place")
    assert r.exit_code == 0 and "Next:" in r.stdout and "same name" in r.stdout


# -- S2, S4, C7: names are data ---------------------------------------------------------------


def test_s2_s4_c7_markup_and_escapes_in_every_line(tmp: Path) -> None:
    folder = tmp / "a["
    folder.mkdir()
    src = folder / "b].npy"  # the path reads 'a[/b].npy': a closing tag to rich
    np.save(src, IMG)
    stale = folder / f".b].channels_first.npy{fsio.TEMP_MARK}999999999-abcd1234"
    stale.write_bytes(b"left by a killed run")
    r = kmx("convert", str(src))
    assert r.exit_code == 0, r.output
    assert "a[/b].npy ->" in r.stdout and "b].channels_first.npy" in r.stdout
    assert f"removed a temporary file left by an interrupted run: {stale}" in r.stdout
    bad = tmp / "[red]\x1b]0;PWNED\x07.npy"
    bad.write_bytes(b"not npy")
    r = kmx("convert", str(src), str(bad), "--force")
    assert r.exit_code == 1
    assert "\x1b" not in r.output and "\x07" not in r.output
    assert "✗ " + str(tmp / "[red]\\x1b]0;PWNED\\x07.npy") in r.stdout
    r = kmx("convert", str(bad))
    err = one_error_line(r)
    assert "[red]\\x1b]0;PWNED\\x07.npy" in err


def test_errors_never_carry_control_characters_from_names(tmp: Path) -> None:
    src = tmp / "e.npz"
    np.savez(src, **{"\x1b]0;PWNED\x07": np.zeros((1, 3, 2, 3), "u1")})
    r = kmx("convert", str(src))
    err = one_error_line(r)
    assert "\x1b" not in err and "\\x1b]0;PWNED\\x07" in err


def test_library_errors_are_one_line(tmp: Path) -> None:
    src = tmp / "m.npy"
    with open(src, "wb") as f:
        np.save(f, IMG)
        np.save(f, IMG)
    with pytest.raises(KmxError) as info:
        convert_file(src)
    assert "\n" not in str(info.value)


def test_d5_a_glob_over_a_converted_folder_is_not_a_collision(tmp: Path) -> None:
    """`convert data/*.npy` after a first run names the outputs too: that is not two
    inputs with one output, and --force behaves as it always did."""
    np.save(tmp / "x.npy", IMG)
    assert kmx("convert", str(tmp / "x.npy")).exit_code == 0
    r = kmx("convert", str(tmp / "x.npy"), str(tmp / "x.channels_first.npy"), "--force")
    assert r.exit_code == 0, r.output
    assert np.array_equal(np.load(tmp / "x.channels_first.npy"), IMG.transpose(0, 3, 1, 2))
