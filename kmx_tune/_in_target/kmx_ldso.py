"""Find the file each DT_NEEDED entry of a shared library loads, the way glibc's dynamic
loader does (elf/dl-load.c, _dl_map_object), without loading anything.

Stdlib only, Python 3.6+ syntax (it runs INSIDE target interpreters).

For a NEEDED name without a slash, asked for by object L, ld.so tries in order:

1. an object already loaded under that name or SONAME (here: what kmx-tune's wiring
   preloads, and every object this resolution has already found);
2. unless L has DT_RUNPATH: the DT_RPATH of L, then of the object that loaded L, and
   so on up to the root, then of the main program (objects with DT_RUNPATH have
   their DT_RPATH ignored);
3. LD_LIBRARY_PATH;
4. L's DT_RUNPATH;
5. /etc/ld.so.cache, then the system folders, unless L has DF_1_NODEFLIB.

``$ORIGIN`` (and ``${ORIGIN}``) is the folder of the object whose path it is;
``$PLATFORM`` the machine name. Each folder is searched in its glibc-hwcaps
subfolders that the loader reports as searched, then itself. A candidate of another
ELF class or machine is skipped, as ld.so skips it. Not modelled: legacy hwcap
subfolders (tls/, x86_64/), ``$LIB``, LD_PRELOAD, and secure-mode rules.
"""

import os
import platform
import struct
import subprocess

try:  # run as a script in the target, beside kmx_elf.py
    import kmx_elf
except ImportError:  # imported by kmx-tune itself
    from kmx_tune._in_target import kmx_elf

CACHE = "/etc/ld.so.cache"
_NEW_MAGIC = b"glibc-ld.so.cache1.1"
_OLD_MAGIC = b"ld.so-1.7.0"
# ld.so.cache flags: FLAG_ELF_LIBC6 plus an architecture (sysdeps/generic/ldconfig.h)
_CACHE_FLAGS = {62: 0x0303, 183: 0x0A03, 3: 0x0003, 21: 0x0503}
_DEFAULT_DIRS = {
    62: ["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64"],
    183: ["/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/lib64", "/usr/lib64"],
}


def read_cache(path=CACHE):
    """{soname: [path, ...]} for each (flags, soname) entry of an ld.so.cache, keyed by
    the flags too: {(flags, soname): [paths]}. Empty when the file is missing or in a
    format this reader does not know."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError:
        return {}
    start = data.find(_NEW_MAGIC)
    if start < 0:
        return {}
    try:
        (nlibs,) = struct.unpack_from("<I", data, start + 20)
        entries = {}  # type: dict
        for i in range(nlibs):
            flags, key, value, _osversion, hwcap = struct.unpack_from(
                "<iIIIQ", data, start + 48 + i * 24
            )
            name = data[start + key : data.index(b"\0", start + key)].decode("utf-8", "replace")
            where = data[start + value : data.index(b"\0", start + value)].decode(
                "utf-8", "replace"
            )
            # entries with an hwcap need a CPU feature level: ld.so prefers them only
            # where supported; the plain entry (hwcap 0) is the one it always accepts
            entries.setdefault((flags & 0xFFFF, name), []).append((hwcap != 0, where))
    except (struct.error, ValueError):
        return {}
    return dict(
        (k, [w for _, w in sorted(v, key=lambda item: item[0])]) for k, v in entries.items()
    )


def loader_search(interpreter):
    """(system folders, glibc-hwcaps subfolders) as the dynamic loader *interpreter*
    reports them in ``--help`` (glibc 2.33 and newer); None when it cannot tell."""
    try:
        out = subprocess.run(
            [interpreter, "--help"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            timeout=10,
            check=False,
        ).stdout.decode("utf-8", "replace")
    except (OSError, subprocess.SubprocessError):
        return None
    dirs, hwcaps = [], []
    section = None
    for line in out.splitlines():
        text = line.strip()
        if line.startswith("Subdirectories of glibc-hwcaps"):
            section = "hwcaps"
        elif line and not line.startswith(" "):
            section = None
        if text.endswith("(system search path)"):
            dirs.append(text[: -len("(system search path)")].strip())
        elif section == "hwcaps" and "searched" in text:
            hwcaps.append(text.split(" ", 1)[0])
    return (dirs, hwcaps) if dirs else None


class Loader(object):
    """The resolution rules with one environment: LD_LIBRARY_PATH, ld.so.cache, the
    system folders, and the objects taken as already loaded."""

    def __init__(
        self,
        machine,
        bits,
        library_path=None,
        cache=None,
        system_dirs=None,
        hwcaps=(),
        preloaded=(),
        main_rpath=None,
        main_origin=None,
    ):
        self.machine = machine
        self.bits = bits
        self.library_path = _split_env(library_path)
        self.cache = read_cache() if cache is None else cache
        self.system_dirs = list(
            system_dirs
            if system_dirs is not None
            else _DEFAULT_DIRS.get(machine, []) + ["/lib", "/usr/lib"]
        )
        self.hwcaps = list(hwcaps)
        self.main_rpath = main_rpath  # the main program's DT_RPATH (None: none)
        self.main_origin = main_origin
        # soname or requested name -> (path, how): what counts as loaded already
        self.loaded = {}
        for path, how in preloaded:
            self._preload(path, how)

    def _preload(self, path, how):
        try:
            info = kmx_elf.read_dynamic(path)
        except (OSError, kmx_elf.ElfError):
            return
        entry = (os.path.realpath(path), how)
        self.loaded.setdefault(os.path.basename(path), entry)
        if info["soname"]:
            self.loaded.setdefault(info["soname"], entry)

    def _compatible(self, path):
        try:
            with open(path, "rb") as handle:
                ident = handle.read(20)
        except OSError:
            return False
        if len(ident) < 20 or ident[:4] != kmx_elf.ELF_MAGIC:
            return False
        bits = {1: 32, 2: 64}.get(ident[4])
        order = "<" if ident[5] == 1 else ">"
        (machine,) = struct.unpack(order + "H", ident[18:20])
        return bits == self.bits and machine == self.machine

    def _in_dirs(self, name, dirs):
        for folder in dirs:
            if not folder:
                folder = "."  # an empty entry is the current folder, as in ld.so
            for sub in ["glibc-hwcaps/" + h for h in self.hwcaps] + [""]:
                candidate = os.path.join(folder, sub, name) if sub else os.path.join(folder, name)
                if os.path.isfile(candidate) and self._compatible(candidate):
                    return candidate
        return None

    def _in_cache(self, name):
        flags = _CACHE_FLAGS.get(self.machine)
        for (entry_flags, soname), paths in self.cache.items():
            if soname != name or (flags is not None and entry_flags != flags):
                continue
            for path in paths:
                if os.path.isfile(path) and self._compatible(path):
                    return path
        return None

    def find(self, name, requester, chain):
        """(path or None, how) for NEEDED *name* of *requester* (a node from
        :meth:`resolve`); *chain*: the requester and the objects that loaded it."""
        if name in self.loaded:
            return self.loaded[name]
        if "/" in name:
            return (name if os.path.isfile(name) else None), "path in NEEDED"
        if requester["runpath"] is None:
            did_main = False
            for node in chain:
                if node["rpath"] is None:
                    continue
                found = self._in_dirs(name, _expand(node["rpath"], node["origin"]))
                if found:
                    return found, "RPATH of {}".format(node["name"])
                did_main = did_main or node.get("main", False)
            if not did_main and self.main_rpath:
                found = self._in_dirs(name, _expand(self.main_rpath, self.main_origin))
                if found:
                    return found, "RPATH of the main program"
        found = self._in_dirs(name, self.library_path)
        if found:
            return found, "LD_LIBRARY_PATH"
        if requester["runpath"] is not None:
            found = self._in_dirs(name, _expand(requester["runpath"], requester["origin"]))
            if found:
                return found, "RUNPATH of {}".format(requester["name"])
        if requester["nodeflib"]:
            return None, "not found (DF_1_NODEFLIB: no system folders)"
        found = self._in_cache(name)
        if found:
            return found, "ld.so.cache"
        found = self._in_dirs(name, self.system_dirs)
        if found:
            return found, "system folder"
        return None, "not found"

    def resolve(self, root, main=False):
        """Resolve every NEEDED entry of *root* and, breadth first as ld.so loads them,
        of what they load. Returns a list of dicts, one per (requester, name):
        {"name", "needed_by", "path" (None: not found), "how"}."""
        info = kmx_elf.read_dynamic(root)
        top = _node(root, info, None, main)
        queue = [top]
        results = []
        by_path = {os.path.realpath(root): top}
        while queue:
            node = queue.pop(0)
            for name in node["needed"]:
                path, how = self.find(name, node, _chain(node))
                results.append({"name": name, "needed_by": node["name"], "path": path, "how": how})
                if path is None:
                    continue
                real = os.path.realpath(path)
                if real in by_path:
                    continue
                try:
                    child_info = kmx_elf.read_dynamic(real)
                except (OSError, kmx_elf.ElfError):
                    continue
                child = _node(path, child_info, node, False)
                by_path[real] = child
                self.loaded.setdefault(name, (path, how))
                if child_info["soname"]:
                    self.loaded.setdefault(child_info["soname"], (path, how))
                queue.append(child)
        return results


def _node(path, info, loader, main):
    return {
        "name": os.path.basename(path),
        "origin": os.path.dirname(os.path.abspath(path)),
        "needed": info["needed"],
        "rpath": info["rpath"],
        "runpath": info["runpath"],
        "nodeflib": info["nodeflib"],
        "loader": loader,
        "main": main,
    }


def _chain(node):
    chain = []
    while node is not None:
        chain.append(node)
        node = node["loader"]
    return chain


def _expand(dirs, origin):
    machine = platform.machine()
    out = []
    for folder in dirs:
        folder = folder.replace("${ORIGIN}", origin).replace("$ORIGIN", origin)
        folder = folder.replace("${PLATFORM}", machine).replace("$PLATFORM", machine)
        if "$" in folder:
            continue  # $LIB and unknown tokens: ld.so drops what it cannot expand
        out.append(folder)
    return out


def _split_env(value):
    if not value:
        return []
    return [part for part in value.replace(";", ":").split(":")]
