"""`kmx-tune convert` on HDF5 datasets written by h5py: compressed and not, chunked
and contiguous; layout rules, what is kept, round trips, and broken inputs."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from kmx_tune.convert import convert_file
from kmx_tune.convert.h5 import CHUNK_TARGET
from kmx_tune.errors import KmxError, UsageError
from tests.cli import kmx, kmx_json
from tests.fs_helpers import sha

RNG = np.random.default_rng(5)
X = RNG.integers(0, 255, (300, 20, 24, 3), np.uint8)  # (N, H, W, C), H != W
XF = RNG.standard_normal((40, 6, 7, 8, 4)).astype(">f4")  # 5-D, big-endian floats

STORAGE = {
    "contiguous": {},
    "chunked": {"chunks": (16, 20, 24, 3)},
    "gzip": {"chunks": (50, 5, 6, 3), "compression": "gzip", "compression_opts": 6},
    "lzf_shuffle_fletcher": {
        "chunks": True,
        "compression": "lzf",
        "shuffle": True,
        "fletcher32": True,
    },
}


def write_dataset_file(path: Path, storage: dict[str, object]) -> None:
    with h5py.File(path, "w") as f:
        f.attrs["source"] = "camera"
        f.attrs["classes"] = np.array([b"cat", b"dog"])
        d = f.create_dataset("x_train", data=X, **storage)  # type: ignore[arg-type]
        d.attrs["mean"] = np.float32(0.5)
        f.create_dataset("y_train", data=np.arange(300) % 10, compression="gzip")
        g = f.create_group("test")
        g.attrs["split"] = "test"
        g.create_dataset("x", data=XF, **({"chunks": True} if storage else {}))
        g.create_dataset("names", data=["a", "bb", "ccc"], dtype=h5py.string_dtype())
        f["latest"] = h5py.SoftLink("/x_train")
        f["labels"] = f["y_train"]  # a second hard link to the same dataset
        f.create_group("empty_group").attrs["note"] = "kept"


@pytest.mark.parametrize("kind", sorted(STORAGE))
def test_converts_and_keeps_everything_else(tmp_path: Path, kind: str) -> None:
    src = tmp_path / "data.h5"
    write_dataset_file(src, STORAGE[kind])
    before = sha(src)
    out = convert_file(src, verify=True)
    assert out.status == "converted" and out.verified == "full"
    assert sha(src) == before
    actions = {a.name: a.action for a in out.arrays}
    assert actions["x_train"] == actions["test/x"] == "transpose"
    final = tmp_path / "data.channels_first.h5"
    with h5py.File(src) as a, h5py.File(final) as b:
        np.testing.assert_array_equal(b["x_train"][:], X.transpose(0, 3, 1, 2))
        np.testing.assert_array_equal(b["test/x"][:], XF.transpose(0, 4, 1, 2, 3))
        assert b["test/x"].dtype == np.dtype(">f4")
        np.testing.assert_array_equal(b["y_train"][:], a["y_train"][:])
        assert list(b["test/names"].asstr()[:]) == ["a", "bb", "ccc"]
        assert b.attrs["source"] == "camera" and list(b.attrs["classes"]) == [b"cat", b"dog"]
        assert b["x_train"].attrs["mean"] == np.float32(0.5)
        assert b["test"].attrs["split"] == "test" and b["empty_group"].attrs["note"] == "kept"
        assert b.get("latest", getlink=True).path == "/x_train"
        assert b["labels"].id == b["y_train"].id  # still one dataset, two names
        src_x, out_x = a["x_train"], b["x_train"]
        # filters kept; chunks of whole channels_first samples where the source was chunked
        assert out_x.compression == src_x.compression
        assert out_x.compression_opts == src_x.compression_opts  # the gzip level too
        assert out_x.shuffle == src_x.shuffle and out_x.fletcher32 == src_x.fletcher32
        if src_x.chunks is None:
            assert out_x.chunks is None
        else:
            rows = out_x.chunks[0]
            assert out_x.chunks[1:] == (3, 20, 24)
            assert rows * 3 * 20 * 24 <= CHUNK_TARGET and rows > 1
        assert b["y_train"].compression == "gzip"


def test_round_trip_and_never_twice(tmp_path: Path) -> None:
    src = tmp_path / "d.h5"
    write_dataset_file(src, STORAGE["gzip"])
    convert_file(src)
    first = tmp_path / "d.channels_first.h5"
    again = convert_file(first)
    assert again.status == "nothing_to_do" and again.output is None
    back = convert_file(first, tmp_path / "back.h5", to="channels_last")
    assert back.status == "converted"
    with h5py.File(src) as a, h5py.File(tmp_path / "back.h5") as b:
        np.testing.assert_array_equal(a["x_train"][:], b["x_train"][:])
        np.testing.assert_array_equal(a["test/x"][:], b["test/x"][:])
        assert b["x_train"].compression == "gzip"


def test_resizable_dataset_keeps_its_unlimited_axis(tmp_path: Path) -> None:
    src = tmp_path / "grow.h5"
    with h5py.File(src, "w") as f:
        f.create_dataset("x", data=X[:10], maxshape=(None, 20, 24, 3), chunks=(5, 20, 24, 3))
    convert_file(src)
    with h5py.File(tmp_path / "grow.channels_first.h5", "a") as f:
        assert f["x"].maxshape == (None, 3, 20, 24)
        f["x"].resize(12, axis=0)  # HDF5Matrix users append to such datasets


def test_key_names_nested_dataset_and_ambiguous_shapes(tmp_path: Path) -> None:
    src = tmp_path / "amb.h5"
    with h5py.File(src, "w") as f:
        f.create_dataset("grp/a", data=np.zeros((4, 3, 5, 3), np.uint8))
        f.create_dataset("b", data=np.zeros((4, 3, 5, 3), np.uint8))
    r = kmx("convert", str(src))
    assert r.exit_code == 1 and r.stderr.count("\n") == 1
    assert "'grp/a'" in r.stderr and "'b'" in r.stderr and "--key" in r.stderr
    assert not (tmp_path / "amb.channels_first.h5").exists()
    out = convert_file(src, keys=["grp/a"])
    assert {a.name: a.action for a in out.arrays} == {"b": "copy", "grp/a": "transpose"}
    with pytest.raises(UsageError, match="--key nope: .* its arrays: b, grp/a"):
        convert_file(src, keys=["nope"])


def test_add_channel_axis(tmp_path: Path) -> None:
    src = tmp_path / "mnist.h5"
    with h5py.File(src, "w") as f:
        f.create_dataset("x", data=X[..., 0], compression="gzip")
    assert convert_file(src).status == "nothing_to_do"
    convert_file(src, add_channel_axis=True)
    with h5py.File(tmp_path / "mnist.channels_first.h5") as f:
        np.testing.assert_array_equal(f["x"][:], X[:, None, :, :, 0])
        assert f["x"].compression == "gzip"


def test_dry_run_and_json(tmp_path: Path) -> None:
    src = tmp_path / "d.hdf5"
    write_dataset_file(src, STORAGE["chunked"])
    r = kmx("convert", str(src), "--dry-run")
    assert r.exit_code == 0 and "dry run: nothing written" in r.stdout
    assert "test/x" in r.stdout and "(40, 4, 6, 7, 8)" in r.stdout
    assert not (tmp_path / "d.channels_first.hdf5").exists()
    code, data = kmx_json("convert", str(src))
    assert code == 0
    (entry,) = data["files"]
    assert entry["status"] == "converted" and entry["output"].endswith("d.channels_first.hdf5")
    assert entry["bytes_out"] == (tmp_path / "d.channels_first.hdf5").stat().st_size


def test_names_are_printed_as_data(tmp_path: Path) -> None:
    src = tmp_path / "n.h5"
    with h5py.File(src, "w") as f:
        f.create_dataset("[bold red]x\x1b[2J", data=X[:4])
    r = kmx("convert", str(src), "--dry-run")
    assert r.exit_code == 0
    assert "[bold red]x\\x1b[2J" in r.stdout and "\x1b" not in r.stdout


def test_external_raw_storage_is_refused(tmp_path: Path) -> None:
    """Copying the creation properties would point the output at the source's raw file
    and overwrite it: refused by name, the raw file untouched."""
    raw = tmp_path / "raw.bin"
    raw.write_bytes(X[:4].tobytes())
    src = tmp_path / "ext.h5"
    with h5py.File(src, "w") as f:
        external = [(str(raw), 0, h5py.h5f.UNLIMITED)]
        f.create_dataset("x", shape=(4, 20, 24, 3), dtype=np.uint8, external=external)
    before = sha(raw)
    with pytest.raises(KmxError, match="'x' .* external raw files"):
        convert_file(src)
    assert sha(raw) == before and not (tmp_path / "ext.channels_first.h5").exists()


@pytest.mark.parametrize(
    ("make", "pattern"),
    [
        (lambda p, good: p.write_bytes(b"not hdf5 at all" * 10), "file signature not found"),
        (lambda p, good: p.write_bytes(good.read_bytes()[:5000]), "truncated"),
        (lambda p, good: p.write_bytes(b""), "empty"),
    ],
    ids=["junk", "truncated", "empty"],
)
def test_broken_files_give_one_line(tmp_path: Path, make: object, pattern: str) -> None:
    good = tmp_path / "good.h5"
    write_dataset_file(good, STORAGE["gzip"])
    bad = tmp_path / "w" / "bad.h5"
    bad.parent.mkdir()
    make(bad, good)  # type: ignore[operator]
    r = kmx("convert", str(bad))
    assert r.exit_code == 1 and r.stdout == ""
    assert r.stderr.startswith("Error: ") and r.stderr.count("\n") == 1 and pattern in r.stderr
    assert sorted(p.name for p in bad.parent.iterdir()) == ["bad.h5"]


def test_corrupt_chunk_mid_way(tmp_path: Path) -> None:
    """A damaged compressed chunk in the middle of the data: found while streaming;
    one line, nothing published, no temporary file left."""
    (tmp_path / "w").mkdir()
    src = tmp_path / "w" / "c.h5"
    with h5py.File(src, "w") as f:
        f.create_dataset("x", data=X, chunks=(30, 20, 24, 3), compression="gzip")
    with h5py.File(src) as f:
        info = f["x"].id.get_chunk_info(5)
    raw = bytearray(src.read_bytes())
    raw[info.byte_offset + 10 : info.byte_offset + 60] = b"\xff" * 50
    src.write_bytes(bytes(raw))
    with pytest.raises(KmxError, match="cannot read it as HDF5") as err:
        convert_file(src)
    assert "\n" not in str(err.value)
    assert sorted(p.name for p in src.parent.iterdir()) == ["c.h5"]


def test_existing_output_needs_force(tmp_path: Path) -> None:
    src = tmp_path / "d.h5"
    write_dataset_file(src, {})
    convert_file(src)
    with pytest.raises(KmxError, match="exists; pass --force"):
        convert_file(src)
    assert convert_file(src, force=True).status == "converted"


def test_in_place_keeps_the_mode(tmp_path: Path) -> None:
    src = tmp_path / "d.h5"
    write_dataset_file(src, STORAGE["chunked"])
    os.chmod(src, 0o600)
    out = convert_file(src, in_place=True)
    assert out.verified == "full" and oct(src.stat().st_mode & 0o777) == "0o600"
    with h5py.File(src) as f:
        assert f["x_train"].shape == (300, 3, 20, 24)
