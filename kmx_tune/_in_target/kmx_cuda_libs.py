"""Which libraries the installed MXNet's libmxnet.so needs and where the dynamic loader
would find each one, in this interpreter's environment, without importing mxnet.

Runs INSIDE the target interpreter: stdlib only, Python 3.6+ syntax. kmx_env_facts.py
calls :func:`report` when an MXNet distribution is installed; run alone it prints the
same report as JSON::

    python kmx_cuda_libs.py

The resolution follows ld.so (kmx_ldso.py): RPATH ($ORIGIN), LD_LIBRARY_PATH,
RUNPATH, ld.so.cache and the system folders, plus what is already loaded: the
libraries of this Python process, and what kmx-tune's wiring (kmx-mxnet-cuda-libs)
would preload on ``import mxnet``. For the CUDA libraries it also says which pip
distribution ships the file and, where it can be read, its version.
"""

import json
import os
import re
import sys

try:  # run as a script in the target, beside its siblings
    import kmx_elf
    import kmx_ldso
except ImportError:  # imported by kmx-tune itself
    from kmx_tune._in_target import kmx_elf, kmx_ldso

WIRING_CONFIG = "kmx_mxnet_cuda_libs.json"
CUDA_LIB = re.compile(
    r"^lib(cuda|cudart|cublas|cublasLt|cufft|curand|cusolver|cusparse|nvrtc|cudnn|nccl"
    r"|nvToolsExt)\.so"
)


def find_mxnet():
    """(package folder, library path) of the mxnet that ``import mxnet`` would load,
    found without importing it (and without asking sys.meta_path, where kmx-tune's
    wiring waits for that very import)."""
    for entry in sys.path:
        folder = os.path.join(entry or ".", "mxnet")
        if os.path.isfile(os.path.join(folder, "__init__.py")):
            override = os.environ.get("MXNET_LIBRARY_PATH")
            if override and os.path.isfile(override):
                return folder, override  # mxnet/libinfo.py loads this one instead
            library = os.path.join(folder, "libmxnet.so")
            return folder, library if os.path.isfile(library) else None
    return None, None


def find_wiring():
    """(config path, config) of kmx-tune's wiring on sys.path, or (None, None)."""
    for entry in sys.path:
        path = os.path.join(entry or ".", WIRING_CONFIG)
        if os.path.isfile(path):
            try:
                with open(path, "r", encoding="utf-8") as handle:
                    data = json.load(handle)
            except (OSError, ValueError):
                return path, {}
            return path, data if isinstance(data, dict) else {}
    return None, None


def wiring_paths(config):
    """[(soname, path or None)] the wiring would load, searched as it searches."""
    found = []
    folders = [p for p in sys.path if p and os.path.isdir(p)]
    for item in config.get("libraries", []):
        if not isinstance(item, dict):
            continue
        folder, soname = item.get("folder"), item.get("soname")
        path = None
        for entry in folders:
            candidate = os.path.join(entry, "nvidia", str(folder), "lib", str(soname))
            if os.path.isfile(candidate):
                path = candidate
                break
        found.append((soname, path))
    return found


def loaded_objects():
    """Paths of the shared objects this process has mapped (libc, libm, ...)."""
    found = []
    try:
        with open("/proc/self/maps", "r") as handle:
            for line in handle:
                parts = line.split(None, 5)
                if len(parts) == 6 and ".so" in parts[5]:
                    path = parts[5].strip()
                    if path.startswith("/") and path not in found and os.path.isfile(path):
                        found.append(path)
    except OSError:
        pass
    return found


def interpreter_of(path):
    """The PT_INTERP of an executable (the dynamic loader it names), or None."""
    import struct

    try:
        with open(path, "rb") as handle:
            head = handle.read(64)
            if head[:4] != kmx_elf.ELF_MAGIC:
                return None
            order = "<" if head[5] == 1 else ">"
            if head[4] == 2:
                (phoff,) = struct.unpack_from(order + "Q", head, 32)
                phentsize, phnum = struct.unpack_from(order + "HH", head, 54)
                fmt, size = order + "IIQQQQQQ", 56
            else:
                (phoff,) = struct.unpack_from(order + "I", head, 28)
                phentsize, phnum = struct.unpack_from(order + "HH", head, 42)
                fmt, size = order + "IIIIIIII", 32
            for i in range(phnum):
                handle.seek(phoff + i * phentsize)
                fields = struct.unpack(fmt, handle.read(size))
                if fields[0] == 3:  # PT_INTERP
                    offset, filesz = (
                        (fields[2], fields[5]) if head[4] == 2 else (fields[1], fields[4])
                    )
                    handle.seek(offset)
                    return handle.read(filesz).split(b"\0", 1)[0].decode("utf-8", "replace")
    except (OSError, struct.error, IndexError):
        return None
    return None


_RECORDS = {}  # type: dict


def pip_owner(path):
    """(distribution name, version) of the installed distribution whose RECORD lists
    *path*, looked up in the site folder above ``nvidia/`` (or the file's own)."""
    real = os.path.abspath(path)
    parts = real.split(os.sep)
    if "nvidia" in parts:
        site = os.sep.join(parts[: len(parts) - parts[::-1].index("nvidia") - 1])
    else:
        site = os.path.dirname(real)
    relative = os.path.relpath(real, site).replace(os.sep, "/")
    if site not in _RECORDS:
        table = {}
        try:
            names = os.listdir(site)
        except OSError:
            names = []
        for name in names:
            if not name.endswith(".dist-info"):
                continue
            dist, _, version = name[: -len(".dist-info")].partition("-")
            try:
                with open(os.path.join(site, name, "RECORD"), "r", encoding="utf-8") as handle:
                    for line in handle:
                        table[line.split(",", 1)[0]] = (dist.replace("_", "-"), version)
            except OSError:
                continue
        _RECORDS[site] = table
    return _RECORDS[site].get(relative)


def version_of(path, soname):
    """A version for a found library: the file's own (libcudart.so.11.8.89), its pip
    distribution's, or cuDNN's header next to it. None when none can be read."""
    real = os.path.realpath(path)
    base = os.path.basename(real)
    stem = soname.split(".so", 1)[0] + ".so."
    if base.startswith(stem):
        tail = base[len(stem) :]
        if tail.count(".") >= 1 and base != soname:
            return tail
    owner = pip_owner(path)
    if owner:
        return owner[1]
    if soname.startswith("libcudnn"):
        for include in ("../include/cudnn_version.h", "../../include/cudnn_version.h"):
            header = os.path.normpath(os.path.join(os.path.dirname(real), include))
            found = _cudnn_header(header)
            if found:
                return found
    return None


def _cudnn_header(path):
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return None
    parts = [
        re.search(r"#define CUDNN_{}\s+(\d+)".format(k), text)
        for k in ("MAJOR", "MINOR", "PATCHLEVEL")
    ]
    found = [m.group(1) for m in parts if m is not None]
    return ".".join(found) if len(found) == 3 else None


def report(env=None):
    """The libraries of the installed MXNet and where each resolves; a dict."""
    env = os.environ if env is None else env
    folder, library = find_mxnet()
    out = {
        "schema": "kmx-tune/cuda-libs/1",
        "mxnet_folder": folder,
        "library": library,
        "error": None,
        "rpath": None,
        "runpath": None,
        "libraries": [],
        "wiring": None,
        "ld_library_path": env.get("LD_LIBRARY_PATH") or None,
        "mxnet_use_fusion": env.get("MXNET_USE_FUSION"),
    }
    if folder is None:
        out["error"] = "no mxnet package on sys.path"
        return out
    if library is None:
        out["error"] = "the mxnet package has no libmxnet.so"
        return out
    try:
        info = kmx_elf.read_dynamic(library)
    except (OSError, kmx_elf.ElfError) as exc:
        out["error"] = "cannot read {}: {}".format(library, exc)
        return out
    out["rpath"], out["runpath"] = info["rpath"], info["runpath"]
    preloaded = [(p, "already loaded in the Python process") for p in loaded_objects()]
    config_path, config = find_wiring()
    paths = []
    if config_path is not None:
        paths = wiring_paths(config or {})
        out["wiring"] = {
            "config": config_path,
            "flavor": (config or {}).get("flavor"),
            "environment": (config or {}).get("environment") or {},
            "disabled": env.get("KMX_MXNET_CUDA_LIBS", "").strip().lower()
            in ("0", "off", "no", "false"),
            "missing": [s for s, p in paths if p is None],
        }
        if not out["wiring"]["disabled"]:
            preloaded.extend((p, "kmx-tune's wiring (kmx-mxnet-cuda-libs)") for s, p in paths if p)
    exe = os.path.realpath(sys.executable)
    interp = interpreter_of(exe)
    search = kmx_ldso.loader_search(interp) if interp else None
    try:
        exe_info = kmx_elf.read_dynamic(exe)
    except (OSError, kmx_elf.ElfError):
        exe_info = {"rpath": None, "runpath": None}
    main_rpath = exe_info["rpath"] if exe_info.get("runpath") is None else None
    loader = kmx_ldso.Loader(
        info["machine"],
        info["bits"],
        library_path=env.get("LD_LIBRARY_PATH"),
        system_dirs=search[0] if search else None,
        hwcaps=search[1] if search else (),
        preloaded=preloaded,
        main_rpath=main_rpath,
        main_origin=os.path.dirname(exe),
    )
    direct = set(info["needed"])
    for item in loader.resolve(library):
        name, path = item["name"], item["path"]
        if item["needed_by"] != os.path.basename(library) and path is not None:
            continue  # transitive dependencies are listed only when they fail
        entry = {
            "soname": name,
            "needed_by": item["needed_by"],
            "direct": name in direct and item["needed_by"] == os.path.basename(library),
            "path": path,
            "how": item["how"],
            "cuda": bool(CUDA_LIB.match(name)),
        }
        if path is not None and entry["cuda"]:
            entry["version"] = version_of(path, name)
            owner = pip_owner(path)
            entry["package"] = owner[0] if owner else None
        out["libraries"].append(entry)
    wired = config_path is not None and not out["wiring"]["disabled"]
    for _soname, path in paths if wired else ():
        if path is None:
            continue
        for item in loader.resolve(path):  # what the wiring's own libraries need
            if item["path"] is None:
                out["libraries"].append({
                    "soname": item["name"], "needed_by": item["needed_by"], "direct": False,
                    "path": None, "how": item["how"], "cuda": bool(CUDA_LIB.match(item["name"])),
                })  # fmt: skip
    return out


def main(argv):
    sys.stdout.write(json.dumps(report()) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
