"""Small wheels built by the tests, for where a broken or tiny wheel is the point: an
MXNet flavor whose import fails with a given message, a wheel pip cannot install, a
stand-in flavor that installs in a fraction of a second so that signal tests can
interrupt real pip runs many times, offline (``--no-index --find-links DIR``).

They are real wheels (zip, METADATA, WHEEL, RECORD with hashes): pip installs,
lists, uninstalls and downloads them like any other."""

from __future__ import annotations

import base64
import hashlib
import os
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode()


def make_wheel(
    folder: Path,
    name: str,
    version: str,
    files: Mapping[str, str | bytes],
    *,
    requires: Sequence[str] = (),
    tag: str = "py3-none-any",
    raw_entries: Mapping[str, bytes] | None = None,
) -> Path:
    """Write ``{name}-{version}-{tag}.whl`` into *folder* with *files* (paths inside
    the wheel) and ``Requires-Dist`` lines for *requires*; *raw_entries* are added
    as they are, without a RECORD line (to make a wheel pip refuses)."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = name.replace("-", "_")
    dist_info = f"{stem}-{version}.dist-info"
    metadata = "\n".join(
        [
            "Metadata-Version: 2.1",
            f"Name: {name}",
            f"Version: {version}",
            *(f"Requires-Dist: {r}" for r in requires),
            "",
        ]
    )
    wheel_meta = (
        f"Wheel-Version: 1.0\nGenerator: kmx-tune-tests\nRoot-Is-Purelib: true\nTag: {tag}\n"
    )
    entries: dict[str, bytes] = {
        path: data.encode() if isinstance(data, str) else data for path, data in files.items()
    }
    entries[f"{dist_info}/METADATA"] = metadata.encode()
    entries[f"{dist_info}/WHEEL"] = wheel_meta.encode()
    record_lines = [f"{path},{_record_hash(data)},{len(data)}" for path, data in entries.items()]
    record_lines.append(f"{dist_info}/RECORD,,")
    entries[f"{dist_info}/RECORD"] = ("\n".join(record_lines) + "\n").encode()
    target = folder / f"{stem}-{version}-{tag}.whl"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, data in entries.items():
            zf.writestr(path, data)
        for path, data in (raw_entries or {}).items():
            zf.writestr(path, data)
    return target


def fake_flavor(
    folder: Path,
    name: str,
    version: str,
    *,
    module_version: str | None = None,
    import_error: str | None = None,
    requires: Sequence[str] = (),
    modules: int = 40,
    payload: int = 0,
) -> Path:
    """A stand-in MXNet flavor: the ``mxnet`` package with *modules* small modules
    (so that pip's uninstall has files to move) and *payload* bytes of data, whose
    import raises ImportError(*import_error*) when that is given."""
    init = (
        f"raise ImportError({import_error!r})\n"
        if import_error is not None
        else f"__version__ = {module_version or version!r}\n"
    )
    files: dict[str, str | bytes] = {"mxnet/__init__.py": init}
    for i in range(modules):
        files[f"mxnet/part_{i:03d}.py"] = f"VALUE = {i}\n"
    if payload:
        files["mxnet/libmxnet.so"] = os.urandom(payload)
    return make_wheel(folder, name, version, files, requires=requires)


def fake_package(folder: Path, name: str, version: str, *, requires: Sequence[str] = ()) -> Path:
    """A plain pure-Python distribution with one module named after it."""
    module = name.replace("-", "_").lower()
    return make_wheel(
        folder, name, version, {f"{module}/__init__.py": f"__version__ = {version!r}\n"},
        requires=requires,
    )  # fmt: skip
