"""The ELF reader, the ld.so resolution rules and the fatbin reader, on shared objects
built here with gcc: each resolution is checked against what ``ldd`` says for the same
files and environment. The audit tool runs on a wheel made of such a library (and, in
the network tier, on a real MXNet wheel)."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from kmx_tune._in_target import kmx_elf, kmx_ldso

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc to build ELF files")

ROOT = Path(__file__).parent.parent


def build(
    path: Path,
    source: str = "int f(void) { return 1; }\n",
    *,
    soname: str | None = None,
    needs: tuple[Path, ...] = (),
    rpath: str | None = None,
    runpath: str | None = None,
) -> Path:
    """gcc -shared: *path* with SONAME, NEEDED entries (the libraries in *needs*, by
    their sonames) and RPATH or RUNPATH exactly as given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    src = path.with_suffix(".c")
    src.write_text(source)
    cmd = ["gcc", "-shared", "-fPIC", "-o", str(path), str(src)]
    if soname:
        cmd.append(f"-Wl,-soname,{soname}")
    cmd.append("-Wl,--no-as-needed")  # keep a NEEDED entry even when no symbol is used
    for lib in needs:
        cmd += [f"-L{lib.parent}", f"-l:{lib.name}"]
    if rpath is not None:
        cmd += [f"-Wl,-rpath,{rpath}", "-Wl,--disable-new-dtags"]
    if runpath is not None:
        cmd += [f"-Wl,-rpath,{runpath}", "-Wl,--enable-new-dtags"]
    subprocess.run(cmd, check=True)
    src.unlink()
    return path


def ldd(path: Path, env: dict[str, str] | None = None) -> dict[str, str | None]:
    """{needed name: resolved real path or None} as ldd prints it."""
    run_env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    run_env.update(env or {})
    out = subprocess.run(["ldd", str(path)], capture_output=True, text=True, env=run_env).stdout
    found: dict[str, str | None] = {}
    for line in out.splitlines():
        m = re.match(r"\s*(\S+) => (not found|(\S+) \(0x)", line)
        if m:
            found[m.group(1)] = None if m.group(3) is None else os.path.realpath(m.group(3))
    return found


def ours(path: Path, env: dict[str, str] | None = None) -> dict[str, str | None]:
    """The same, from kmx-tune's resolver (the library as the main object, as ldd does)."""
    info = kmx_elf.read_dynamic(str(path))
    search = kmx_ldso.loader_search("/lib64/ld-linux-x86-64.so.2") or ([], [])
    loader = kmx_ldso.Loader(
        info["machine"],
        info["bits"],
        library_path=(env or {}).get("LD_LIBRARY_PATH"),
        system_dirs=search[0] or None,
        hwcaps=search[1],
    )
    found: dict[str, str | None] = {}
    for item in loader.resolve(str(path), main=True):
        resolved = item["path"]
        found.setdefault(item["name"], None if resolved is None else os.path.realpath(resolved))
    return found


def same_as_ldd(path: Path, env: dict[str, str] | None = None) -> dict[str, str | None]:
    expected, got = ldd(path, env), ours(path, env)
    assert {k: got.get(k) for k in expected} == expected
    return got


# ------------------------------------------------------------------ the reader


def test_needed_soname_rpath_and_runpath_are_read_as_written(tmp_path: Path) -> None:
    leaf = build(tmp_path / "a" / "libleaf.so.1", soname="libleaf.so.1")
    top = build(tmp_path / "libtop.so", soname="libtop.so", needs=(leaf,), rpath="$ORIGIN/a:/x")
    info = kmx_elf.read_dynamic(str(top))
    assert info["soname"] == "libtop.so" and "libleaf.so.1" in info["needed"]
    assert info["rpath"] == ["$ORIGIN/a", "/x"] and info["runpath"] is None
    assert (info["bits"], kmx_elf.MACHINES.get(info["machine"])) == (64, "x86_64")
    other = build(tmp_path / "libother.so", needs=(leaf,), runpath="$ORIGIN/a")
    assert kmx_elf.read_dynamic(str(other))["runpath"] == ["$ORIGIN/a"]
    assert kmx_elf.read_dynamic(str(other))["rpath"] is None


@pytest.mark.parametrize("content", [b"", b"\x7fELF", b"not an elf at all" * 10])
def test_what_is_not_an_elf_file_is_an_elf_error(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "libbad.so"
    bad.write_bytes(content)
    with pytest.raises(kmx_elf.ElfError):
        kmx_elf.read_dynamic(str(bad))


# ------------------------------------------------------- resolution, against ldd


def test_rpath_with_origin(tmp_path: Path) -> None:
    leaf = build(tmp_path / "lib" / "libleaf.so.1", soname="libleaf.so.1")
    top = build(tmp_path / "libtop.so", needs=(leaf,), rpath="$ORIGIN/lib")
    assert same_as_ldd(top)["libleaf.so.1"] == str(leaf)


def test_rpath_comes_before_ld_library_path_and_runpath_after(tmp_path: Path) -> None:
    first = build(tmp_path / "r" / "libleaf.so.1", soname="libleaf.so.1")
    second = build(tmp_path / "env" / "libleaf.so.1", soname="libleaf.so.1")
    env = {"LD_LIBRARY_PATH": str(second.parent)}
    with_rpath = build(tmp_path / "librp.so", needs=(first,), rpath=str(first.parent))
    assert same_as_ldd(with_rpath, env)["libleaf.so.1"] == str(first)
    with_runpath = build(tmp_path / "librun.so", needs=(first,), runpath=str(first.parent))
    assert same_as_ldd(with_runpath, env)["libleaf.so.1"] == str(second)
    assert same_as_ldd(with_runpath)["libleaf.so.1"] == str(first)


def test_a_loaders_rpath_is_inherited_but_its_runpath_is_not(tmp_path: Path) -> None:
    leaf = build(tmp_path / "deps" / "libleaf.so.1", soname="libleaf.so.1")
    mid = build(tmp_path / "mid" / "libmid.so.1", soname="libmid.so.1", needs=(leaf,))
    dirs = f"{mid.parent}:{leaf.parent}"
    by_rpath = build(tmp_path / "librp.so", needs=(mid,), rpath=dirs)
    assert same_as_ldd(by_rpath)["libleaf.so.1"] == str(leaf)  # mid has no path of its own
    by_runpath = build(tmp_path / "librun.so", needs=(mid,), runpath=dirs)
    assert same_as_ldd(by_runpath)["libleaf.so.1"] is None  # RUNPATH applies to direct needs


def test_a_library_of_another_machine_is_skipped(tmp_path: Path) -> None:
    good = build(tmp_path / "good" / "libleaf.so.1", soname="libleaf.so.1")
    wrong = tmp_path / "wrong" / "libleaf.so.1"
    wrong.parent.mkdir()
    data = bytearray(good.read_bytes())
    data[18:20] = struct.pack("<H", 183)  # e_machine: aarch64
    wrong.write_bytes(bytes(data))
    top = build(tmp_path / "libtop.so", needs=(good,), rpath=f"{wrong.parent}:{good.parent}")
    assert same_as_ldd(top)["libleaf.so.1"] == str(good)


def test_what_is_nowhere_is_not_found_and_system_libraries_come_from_the_cache(
    tmp_path: Path,
) -> None:
    leaf = build(tmp_path / "gone" / "libleaf.so.1", soname="libleaf.so.1")
    top = build(tmp_path / "libtop.so", needs=(leaf,))
    shutil.rmtree(leaf.parent)
    found = same_as_ldd(top)
    assert found["libleaf.so.1"] is None
    assert found["libc.so.6"] is not None
    how = {i["name"]: i["how"] for i in kmx_ldso.Loader(62, 64).resolve(str(top), main=True)}
    assert how["libc.so.6"] == "ld.so.cache" and how["libleaf.so.1"] == "not found"


def test_preloaded_libraries_satisfy_needed_entries(tmp_path: Path) -> None:
    """What kmx-tune's wiring loads by path counts as loaded, as ld.so matches SONAMEs."""
    leaf = build(tmp_path / "nvidia" / "x" / "lib" / "libleaf.so.1", soname="libleaf.so.1")
    top = build(tmp_path / "libtop.so", needs=(leaf,))
    loader = kmx_ldso.Loader(62, 64, preloaded=[(str(leaf), "wiring")])
    (entry,) = [i for i in loader.resolve(str(top)) if i["name"] == "libleaf.so.1"]
    assert (entry["path"], entry["how"]) == (str(leaf), "wiring")


def test_the_ld_so_cache_is_read() -> None:
    cache = kmx_ldso.read_cache()
    if not cache:
        pytest.skip("no /etc/ld.so.cache in the new format here")
    libc = [paths for (flags, name), paths in cache.items() if name == "libc.so.6"]
    assert libc and all(os.path.isfile(p) for p in libc[0])


# ------------------------------------------------------------------ the fatbin


def fatbin(*bundles: list[tuple[int, int]]) -> bytes:
    """A .nv_fatbin section: one fatbin per bundle, entries (kind, arch) with payloads."""
    out = b""
    for entries in bundles:
        body = b""
        for kind, arch in entries:
            payload = bytes(24)
            header = struct.pack("<HHIQ", kind, 0x101, 64, len(payload))
            header += bytes(12) + struct.pack("<I", arch) + bytes(8) + struct.pack("<Q", 0x2000)
            header += bytes(64 - len(header))
            body += header + payload
        out += struct.pack("<IHHQ", kmx_elf.FATBIN_MAGIC, 1, 16, len(body)) + body
        out += bytes(-len(out) % 8)
    return out


def library_with_fatbin(path: Path, section: bytes, needs: tuple[Path, ...] = ()) -> Path:
    array = ", ".join(str(b) for b in section)
    source = (
        '__attribute__((section(".nv_fatbin"), aligned(8), used)) '
        f"static const unsigned char fatbins[{len(section)}] = {{{array}}};\n"
        "int f(void) { return 1; }\n"
    )
    return build(path, source, soname="libmxnet.so", needs=needs, rpath="$ORIGIN")


def test_fatbin_entries_are_read_per_bundle(tmp_path: Path) -> None:
    section = fatbin([(2, 50), (2, 86), (1, 86)], [(2, 50)], [(2, 60)])
    lib = library_with_fatbin(tmp_path / "libmxnet.so", section)
    entries = kmx_elf.fatbin_entries(str(lib))
    assert [(e["bundle"], e["kind"], e["arch"]) for e in entries] == [
        (1, "sass", "5.0"),
        (1, "sass", "8.6"),
        (1, "ptx", "8.6"),
        (2, "sass", "5.0"),
        (3, "sass", "6.0"),
    ]
    assert all(e["compressed"] for e in entries)
    summary = kmx_elf.summarize_fatbin(entries, partial=0.5)
    assert summary["sass"] == ["5.0"] and summary["sass_partial"] == ["6.0", "8.6"]
    assert (summary["bundles"], summary["bundles_with_ptx"]) == (3, 1)
    assert kmx_elf.fatbin_entries(str(build(tmp_path / "libplain.so"))) == []


def test_the_audit_tool_reads_a_wheel_and_reports_differences_from_the_table(
    tmp_path: Path,
) -> None:
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import audit_wheels
    finally:
        sys.path.pop(0)
    cudart = build(tmp_path / "cuda" / "libcudart.so.11.0", soname="libcudart.so.11.0")
    lib = library_with_fatbin(
        tmp_path / "mxnet" / "libmxnet.so", fatbin([(2, 50), (2, 86)]), needs=(cudart,)
    )
    wheel = tmp_path / "mxnet_cu112-1.9.1-py3-none-manylinux2014_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.write(lib, "mxnet/libmxnet.so")
    report = audit_wheels.audit_wheel(wheel)
    assert (report["name"], report["version"]) == ("mxnet-cu112", "1.9.1")
    assert report["sass"] == ["5.0", "8.6"] and report["ptx"] == []
    assert report["cuda_needed"] == ["libcudart.so.11.0"] and report["rpath"] == ["$ORIGIN"]
    differences = audit_wheels.compare(report)
    assert any(d.startswith("sass: table ['5.0', '6.0', '7.0', '8.0', '8.6']") for d in differences)
    assert any(d.startswith("needs: ") for d in differences)


@pytest.mark.network
def test_the_audit_tool_rederives_a_real_wheels_row(tmp_path: Path) -> None:
    """mxnet-cu75 1.2.1.post1: the smallest CUDA wheel (158 MB, a 275 MB libmxnet.so)."""
    out = tmp_path / "out"
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "audit_wheels.py"),
            "--check",
            "--out",
            str(out),
            "mxnet-cu75==1.2.1.post1",
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "matches the table" in run.stdout
    report = json.loads((out / "mxnet-cu75-1.2.1.post1.json").read_text())
    assert report["sass_partial"] == ["2.0"]  # sm_20 in 7 of 225 bundles: not counted
    assert report["sha256"] == "880517a3ececb09a49c640e78240b20b3d29b68ca6de806d638fb17adbfce230"
