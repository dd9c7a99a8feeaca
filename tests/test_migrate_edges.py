"""`kmx-tune migrate --write` keeps every byte it does not mean to change: BOM,
CRLF, CR-only and mixed line endings, tabs, declared encodings, symlinks."""

from __future__ import annotations

from pathlib import Path

import pytest

from kmx_tune.migrate import migrate_source
from tests.cli import kmx

BODY = b"x = Input(shape=(28, 28, 1))\ny = BatchNormalization(axis=-1)(x)\n"


def run(*args: str) -> tuple[int, str, str]:
    result = kmx("migrate", *args)
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(
    "raw",
    [
        BODY,
        b"\xef\xbb\xbf" + BODY,  # BOM
        BODY.replace(b"\n", b"\r\n"),  # CRLF
        b"x = Input(shape=(28, 28, 1))\r\ny = 1\nz = BatchNormalization(axis=-1)\r\n",  # mixed
        b"def f():\n\tx = Input(shape=(28, 28, 1))\n\treturn x\n",  # tabs
        b"# -*- coding: latin-1 -*-\n# caf\xe9\n" + BODY,
        BODY.rstrip(b"\n"),  # no newline at the end
    ],
    ids=["lf", "bom", "crlf", "mixed", "tabs", "latin1", "no-eol"],
)
def test_write_then_back_gives_the_original_bytes(tmp_path: Path, raw: bytes) -> None:
    p = tmp_path / "m.py"
    p.write_bytes(raw)
    code, _, _ = run("--write", str(p))
    assert code == 0
    new = p.read_bytes()
    assert new != raw and b"(1, 28, 28)" in new
    assert new.startswith(b"\xef\xbb\xbf") == raw.startswith(b"\xef\xbb\xbf")
    assert new.count(b"\r\n") == raw.count(b"\r\n")
    run("--to", "channels_last", "--write", str(p))
    assert p.read_bytes() == raw


def test_cr_only_line_endings_are_never_cut_short(tmp_path: Path) -> None:
    # libcst drops the last "\r" of a file with old-Mac line endings: such a file
    # must be reported, not rewritten with a byte missing
    raw = b"x = Input(shape=(28, 28, 1))\ry = 1\r"
    assert migrate_source(raw).new_source in (raw, raw.replace(b"(28, 28, 1)", b"(1, 28, 28)"))
    p = tmp_path / "mac.py"
    p.write_bytes(raw)
    code, out, _ = run("--write", str(p))
    after = p.read_bytes()
    if after != raw:  # rewritten: then every line ending survived
        assert after == raw.replace(b"(28, 28, 1)", b"(1, 28, 28)")
    else:
        assert code == 1 and "not rewritten" in out


def test_undeclared_non_utf8_file_says_how_to_fix_it(tmp_path: Path) -> None:
    p = tmp_path / "old.py"
    raw = b"# caf\xe9\n" + BODY
    p.write_bytes(raw)
    code, out, _ = run("--write", str(p))
    assert code == 1
    assert "E999" in out and "UTF-8" in out and "coding" in out
    assert p.read_bytes() == raw
