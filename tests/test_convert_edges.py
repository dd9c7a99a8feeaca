"""`kmx-tune convert` at the edges a user meets: odd paths, -o forms, --key typos,
--in-place on links and private files, files with the wrong suffix."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import numpy as np

from tests.cli import kmx, kmx_json

IMG = np.arange(2 * 5 * 6 * 3, dtype=np.uint8).reshape(2, 5, 6, 3)


def test_in_place_keeps_a_private_files_mode(tmp_path: Path) -> None:
    src = tmp_path / "x.npy"
    np.save(src, IMG)
    src.chmod(0o600)
    r = kmx("convert", str(src), "--in-place")
    assert r.exit_code == 0
    assert stat.S_IMODE(src.stat().st_mode) == 0o600
    assert np.array_equal(np.load(src), IMG.transpose(0, 3, 1, 2))


def test_in_place_on_a_symlink_converts_its_target_and_keeps_the_link(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    target = data / "x.npz"
    np.savez(target, x=IMG)
    link = tmp_path / "x.npz"
    link.symlink_to(target)
    r = kmx("convert", str(link), "--in-place")
    assert r.exit_code == 0, r.output
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert np.load(target)["x"].shape == (2, 3, 5, 6)
    assert sorted(p.name for p in data.iterdir()) == ["x.npz"]


def test_output_folder_with_a_trailing_slash_for_one_file(tmp_path: Path) -> None:
    src = tmp_path / "x.npy"
    np.save(src, IMG)
    r = kmx("convert", str(src), "-o", str(tmp_path / "converted") + "/")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "converted").is_dir()
    assert np.load(tmp_path / "converted" / "x.channels_first.npy").shape == (2, 3, 5, 6)


def test_output_with_the_other_suffix_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "x.npy"
    np.save(src, IMG)
    r = kmx("convert", str(src), "-o", str(tmp_path / "out.npz"))
    assert r.exit_code == 2
    assert "Error:" in r.output and ".npy" in r.output
    assert not (tmp_path / "out.npz").exists()


def test_several_inputs_to_a_file_name_is_refused(tmp_path: Path) -> None:
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(a, IMG)
    np.save(b, IMG)
    r = kmx("convert", str(a), str(b), "-o", str(tmp_path / "out.npy"))
    assert r.exit_code == 2 and "folder" in r.output
    assert not (tmp_path / "out.npy").exists()


def test_key_naming_no_array_is_an_error(tmp_path: Path) -> None:
    src = tmp_path / "d.npz"
    np.savez(src, x_train=IMG, y_train=np.arange(2))
    r = kmx("convert", str(src), "--key", "x_trian")
    assert r.exit_code == 2
    assert "x_trian" in r.output and "x_train" in r.output  # what is there, to fix the typo
    assert not (tmp_path / "d.channels_first.npz").exists()
    code, data = kmx_json("convert", str(src), "--key", "x_trian")
    assert code == 2
    (entry,) = data["files"]
    assert entry["status"] == "failed" and "x_trian" in entry["message"]


def test_key_must_name_an_array_in_some_input_of_several(tmp_path: Path) -> None:
    a, b = tmp_path / "x_train.npy", tmp_path / "x_test.npy"
    np.save(a, IMG)
    np.save(b, IMG)
    r = kmx("convert", str(a), str(b), "--key", "x_train")
    assert r.exit_code == 0, r.output  # named in one of them: the other is copied, not an error
    assert (tmp_path / "x_train.channels_first.npy").exists()
    assert not (tmp_path / "x_test.channels_first.npy").exists()
    r = kmx("convert", str(a), str(b), "--key", "nope", "--force")
    assert r.exit_code == 2 and "nope" in r.output


def test_missing_path_without_a_suffix_says_no_such_file(tmp_path: Path) -> None:
    r = kmx("convert", str(tmp_path / "data"))
    assert r.exit_code == 2 and "no such file or folder" in r.output


def test_empty_file_says_it_is_empty(tmp_path: Path) -> None:
    for name in ("e.npy", "e.npz"):
        (tmp_path / name).write_bytes(b"")
        r = kmx("convert", str(tmp_path / name))
        assert r.exit_code == 1 and "is empty" in r.output, r.output


def test_npy_named_npz_and_npz_named_npy_say_what_to_rename(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", IMG)
    np.savez(tmp_path / "z.npz", x=IMG)
    shutil.copy(tmp_path / "x.npy", tmp_path / "a.npz")
    shutil.copy(tmp_path / "z.npz", tmp_path / "b.npy")
    r = kmx("convert", str(tmp_path / "a.npz"))
    assert r.exit_code == 1 and "rename it to .npy" in r.output, r.output
    r = kmx("convert", str(tmp_path / "b.npy"))
    assert r.exit_code == 1 and "rename it to .npz" in r.output, r.output


def test_structured_pixels_move_as_whole_records(tmp_path: Path) -> None:
    # decision: a structured dtype is one value per pixel (say RGB fields of an (N, H, W, 3)
    # batch of records): the transpose moves whole records and keeps the dtype
    a = np.zeros((2, 5, 6, 3), dtype=[("v", "<i4"), ("m", "u1")])
    a["v"] = np.arange(a.size).reshape(a.shape)
    src = tmp_path / "s.npz"
    np.savez_compressed(src, x=a, big=np.arange(4, dtype=">i8"))
    r = kmx("convert", str(src))
    assert r.exit_code == 0, r.output
    got = np.load(tmp_path / "s.channels_first.npz")
    assert got["x"].dtype == a.dtype and np.array_equal(got["x"], a.transpose(0, 3, 1, 2))
    assert got["big"].dtype == np.dtype(">i8")


def test_pickled_member_is_refused_even_when_not_named(tmp_path: Path) -> None:
    tmp_path = tmp_path / "w"
    tmp_path.mkdir()
    src = tmp_path / "o.npz"
    np.savez(src, x=IMG, o=np.array([{"a": 1}], dtype=object))
    before = src.read_bytes()
    r = kmx("convert", str(src), "--key", "x")
    assert r.exit_code == 1 and "pickle" in r.output
    assert src.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["o.npz"]
