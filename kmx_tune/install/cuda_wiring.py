"""Build ``kmx-mxnet-cuda-libs``, the small local distribution that makes ``import mxnet``
find NVIDIA's pip-installed CUDA libraries (see kmx_tune/_in_target/kmx_mxnet_cuda_libs.py
for what it does at run time).

Why a distribution: pip installs it with the flavor and its libraries, lists it,
rolls it back with them, and ``pip uninstall`` removes every file it put there
(RECORD). Files written into site-packages by hand would be in no RECORD.

The wheel is built byte for byte the same from the same plan (fixed timestamps),
into kmx-tune's cache folder; nothing of the target changes until pip installs it.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile
from pathlib import Path

from kmx_tune import fsio
from kmx_tune.flavors.cuda_libs import WIRING_DIST, CudaLibs
from kmx_tune.hardware.cpu import cache_dir
from kmx_tune.target import IN_TARGET_DIR

MODULE = "kmx_mxnet_cuda_libs"
_EPOCH = (2020, 1, 1, 0, 0, 0)  # zip timestamps: the same plan gives the same bytes


def wheel_name(libs: CudaLibs) -> str:
    version = libs.wiring_version.replace("-", "_")
    return f"{WIRING_DIST.replace('-', '_')}-{version}-py3-none-any.whl"


def config(libs: CudaLibs, flavor: str) -> dict[str, object]:
    return {
        "schema": "kmx-tune/cuda-wiring/1",
        "flavor": flavor,
        "libraries": [{"folder": folder, "soname": soname} for folder, soname in libs.preload],
        "environment": dict(libs.environment),
        "packages": list(libs.packages),
    }


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build(libs: CudaLibs, flavor: str, folder: Path | None = None) -> Path:
    """Write the wheel for *libs* (the wiring of *flavor*, e.g. "mxnet-cu112==1.9.1")
    into *folder* (default: kmx-tune's cache/wheels) and return its path."""
    out = (folder or cache_dir() / "wheels").resolve()
    out.mkdir(parents=True, exist_ok=True)
    version = libs.wiring_version
    dist_info = f"{WIRING_DIST.replace('-', '_')}-{version}.dist-info"
    requires = "".join(f"Requires-Dist: {p}\n" for p in (flavor, *libs.packages))
    files: dict[str, bytes] = {
        f"{MODULE}.py": (IN_TARGET_DIR / f"{MODULE}.py").read_bytes(),
        f"{MODULE}.json": (json.dumps(config(libs, flavor), indent=2) + "\n").encode(),
        # site runs "import" lines of .pth files at every start: this one only puts a
        # finder in sys.meta_path; the libraries load on the first `import mxnet`
        f"{MODULE}.pth": f"import {MODULE}; {MODULE}.install()\n".encode(),
        f"{dist_info}/METADATA": (
            "Metadata-Version: 2.1\n"
            f"Name: {WIRING_DIST}\n"
            f"Version: {version}\n"
            "Summary: Loads NVIDIA's pip-installed CUDA libraries for MXNet "
            "(written by kmx-tune install-mxnet)\n"
            f"{requires}"
        ).encode(),
        f"{dist_info}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: kmx-tune\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
        f"{dist_info}/top_level.txt": f"{MODULE}\n".encode(),
    }
    record = "".join(_record_line(n, d) + "\n" for n, d in files.items())
    record += f"{dist_info}/RECORD,,\n"
    files[f"{dist_info}/RECORD"] = record.encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, _EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    path = out / wheel_name(libs)
    fsio.atomic_write(path, buffer.getvalue(), mode=0o644)
    return path


def wheel_folder() -> Path:
    """Where the wiring wheels are built: kmx-tune's cache folder, wheels/."""
    return cache_dir() / "wheels"


def rebuild(version: str, folder: Path | None = None) -> Path | None:
    """The wheel of an installed ``kmx-mxnet-cuda-libs==VERSION``, built again from the
    table (the local version names the flavor and the choices made for the driver), so
    that a way back exists for it as for any wheel from the index. None when *version*
    is not one kmx-tune writes."""
    from kmx_tune.flavors.cuda_libs import plan_pip
    from kmx_tune.flavors.table import LINUX_X86_64, WHEELS

    _, _, local = version.partition("+")
    tag, *flags = local.split(".")
    rows = [
        w for w in WHEELS if w.platform == LINUX_X86_64 and w.cuda and w.tag == tag and not w.mkl
    ]
    if not rows:
        return None
    row = max(rows, key=lambda w: w.version)
    driver_cuda = "11.2" if "nofusion" in flags else "11.7" if "nvrtc117" in flags else "12.0"
    try:
        libs = plan_pip(row, driver_cuda)
    except ValueError:
        return None
    if libs.wiring_version != version:
        return None
    return build(libs, row.requirement, folder)
