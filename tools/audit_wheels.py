"""Re-derive a row of kmx-tune's MXNet wheel table from the wheel itself.

For each wheel (a file, or NAME==VERSION fetched with ``pip download``) this opens
``mxnet/libmxnet.so`` (or ``libmxnet.dll``-less Linux builds only: the reader is for
ELF), and prints:

- the GPU code in its ``.nv_fatbin`` section: the compute capabilities with machine
  code (SASS) and with PTX, and how many kernel bundles carry PTX at all (a GPU newer
  than every SASS arch can run only the bundles that have PTX, through the driver's
  JIT compiler);
- its dynamic section: NEEDED libraries (the CUDA ones are those no wheel ships),
  RPATH/RUNPATH, SONAME;
- with ``--check``, every difference from kmx-tune's table row for that release
  (exit status 1 when there is one).

The fatbin and ELF readers are kmx-tune's own (kmx_tune/_in_target/kmx_elf.py); no
cuobjdump or readelf is needed. Examples:

    python tools/audit_wheels.py --check mxnet-cu112==1.9.1
    python tools/audit_wheels.py ~/Downloads/mxnet_cu110-1.9.1-py3-none-manylinux2014_x86_64.whl
    python tools/audit_wheels.py --json --out audit/ mxnet-cu114==1.9.1 mxnet-cu115==1.9.1

Downloads go to pip's cache as usual (``--keep DIR`` keeps the wheels too); a
libmxnet.so is unpacked to a temporary file (up to ~1.3 GB) and deleted afterwards.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from kmx_tune._in_target import kmx_elf

LIBRARY_NAMES = ("mxnet/libmxnet.so",)
# sonames no MXNet wheel ships: the CUDA toolkit, cuDNN, NCCL, NVTX and the driver
CUDA_LIB = re.compile(r"^lib(cuda|cudart|cublas|cublasLt|cufft|curand|cusolver|cusparse|nvrtc"
                      r"|cudnn|nccl|nvToolsExt)\.so")  # fmt: skip


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def audit_library(path: str) -> dict[str, Any]:
    """The fatbin summary and dynamic section of one shared library."""
    dynamic = kmx_elf.read_dynamic(path)
    fatbin = kmx_elf.summarize_fatbin(kmx_elf.fatbin_entries(path))
    return {
        "needed": dynamic["needed"],
        "cuda_needed": [n for n in dynamic["needed"] if CUDA_LIB.match(n)],
        "rpath": dynamic["rpath"],
        "runpath": dynamic["runpath"],
        "soname": dynamic["soname"],
        "sass": fatbin["sass"],
        "ptx": fatbin["ptx"],
        "sass_partial": fatbin["sass_partial"],
        "ptx_partial": fatbin["ptx_partial"],
        "bundles": fatbin["bundles"],
        "bundles_with_ptx": fatbin["bundles_with_ptx"],
        "entries_by_arch": fatbin["entries_by_arch"],
    }


def audit_wheel(wheel: Path) -> dict[str, Any]:
    """Open *wheel* (a zip), unpack its libmxnet.so to a temporary file and audit it."""
    name, version = wheel.name.split("-")[:2]
    report: dict[str, Any] = {
        "wheel": wheel.name,
        "name": name.replace("_", "-"),
        "version": version,
        "sha256": sha256(wheel),
        "size": wheel.stat().st_size,
    }
    with zipfile.ZipFile(wheel) as archive:
        members = {info.filename: info for info in archive.infolist()}
        report["shared_objects"] = {
            n: info.file_size for n, info in members.items() if re.search(r"\.so(\.|$)", n)
        }
        library = next((members[n] for n in LIBRARY_NAMES if n in members), None)
        if library is None:
            report["error"] = "no mxnet/libmxnet.so in the wheel (an empty placeholder?)"
            return report
        with tempfile.TemporaryDirectory(prefix="kmx-audit-") as tmp:
            target = Path(tmp) / "libmxnet.so"
            with archive.open(library) as source, open(target, "wb") as out:
                shutil.copyfileobj(source, out, 1 << 22)
            report.update(audit_library(str(target)))
    return report


def download(requirement: str, dest: Path) -> Path:
    """``pip download`` the Linux x86-64 wheel of *requirement* into *dest*."""
    before = set(dest.glob("*.whl"))
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
         "--only-binary=:all:", "--platform", "manylinux2014_x86_64",
         "--python-version", "3.8", "--dest", str(dest), requirement],
        check=True,
    )  # fmt: skip
    new = sorted(set(dest.glob("*.whl")) - before) or sorted(dest.glob("*.whl"))
    wanted = requirement.split("==")[0].replace("-", "_").lower()
    matches = [w for w in new if w.name.lower().startswith(wanted + "-")]
    if not matches:
        raise SystemExit(f"pip downloaded no wheel for {requirement}")
    return matches[-1]


def compare(report: dict[str, Any]) -> list[str]:
    """Differences between *report* and the table's row for that release."""
    from kmx_tune.flavors.table import find_wheel

    row = find_wheel(report["name"], report["version"], "linux-x86_64")
    if row is None:
        return [f"the table has no linux-x86_64 row for {report['name']} {report['version']}"]
    problems = []
    for field, found in (
        ("sass", tuple(report.get("sass", ()))),
        ("ptx", tuple(report.get("ptx", ()))),
        ("needs", tuple(sorted(report.get("cuda_needed", ())))),
    ):
        expected = getattr(row, field)
        if field == "needs":
            expected = tuple(sorted(expected))
        if tuple(expected) != found:
            problems.append(f"{field}: table {list(expected)}, wheel {list(found)}")
    bundles = (report.get("bundles_with_ptx"), report.get("bundles"))
    if row.ptx and row.ptx_bundles is not None and tuple(row.ptx_bundles) != bundles:
        problems.append(f"ptx_bundles: table {row.ptx_bundles}, wheel {bundles}")
    return problems


def render(report: dict[str, Any]) -> str:
    lines = [f"{report['wheel']}  sha256 {report['sha256']}  {report['size']} bytes"]
    if "error" in report:
        return "\n".join([*lines, f"  {report['error']}"])
    partial = " ".join(
        f"{kind} {arch}" for kind in ("sass", "ptx") for arch in report[f"{kind}_partial"]
    )
    lines.append(f"  SASS  {' '.join(report['sass']) or '-'}")
    lines.append(
        f"  PTX   {' '.join(report['ptx']) or '-'}  "
        f"({report['bundles_with_ptx']} of {report['bundles']} kernel bundles carry PTX)"
    )
    if partial:
        lines.append(f"  in under 5% of the bundles only: {partial}")
    lines.append(f"  CUDA libraries needed: {' '.join(report['cuda_needed']) or '-'}")
    lines.append(f"  RPATH {report['rpath']}  RUNPATH {report['runpath']}")
    lines.append(f"  NEEDED {' '.join(report['needed'])}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheels", nargs="+", help="wheel files, or NAME==VERSION to download")
    parser.add_argument("--check", action="store_true", help="compare with kmx-tune's table")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--out", type=Path, help="also write NAME-VERSION.json reports here")
    parser.add_argument("--keep", type=Path, help="keep downloaded wheels in this folder")
    args = parser.parse_args(argv)
    failed = False
    with tempfile.TemporaryDirectory(prefix="kmx-audit-dl-") as scratch:
        dest = args.keep or Path(scratch)
        dest.mkdir(parents=True, exist_ok=True)
        for item in args.wheels:
            wheel = Path(item) if os.path.isfile(item) else download(item, dest)
            report = audit_wheel(wheel)
            if args.check:
                report["differences"] = compare(report)
                failed = failed or bool(report["differences"])
            if args.out:
                args.out.mkdir(parents=True, exist_ok=True)
                name = f"{report['name']}-{report['version']}.json"
                (args.out / name).write_text(json.dumps(report, indent=2) + "\n")
            if args.json:
                print(json.dumps(report, indent=2))
            else:
                print(render(report))
                for problem in report.get("differences", ()):
                    print(f"  DIFFERS {problem}")
                if args.check and not report.get("differences"):
                    print("  matches the table")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
