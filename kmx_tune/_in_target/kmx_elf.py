"""Read what a shared library asks of the dynamic loader, and which GPU code it carries.

Stdlib only, Python 3.6+ syntax (it runs INSIDE target interpreters and is checked by
vermin in CI); kmx-tune itself and tools/audit_wheels.py import it too.

- :func:`read_dynamic`: the ELF header and the dynamic section (DT_NEEDED, DT_SONAME,
  DT_RPATH, DT_RUNPATH, DF_1_NODEFLIB), found through the program headers, so that a
  library whose section headers were stripped is read too.
- :func:`fatbin_entries`: the CUDA fatbin entries (SASS or PTX, for which compute
  capability) in the ``.nv_fatbin`` section, read from their headers only: a 900 MB
  libmxnet.so is walked in well under a second without reading the GPU code itself.

The formats: the ELF specification (System V gABI, "Dynamic Section"), and the fatbin
container as nvcc writes it (a header with magic 0xBA55ED50, then one header per entry
giving its kind, 1 PTX or 2 SASS, its size and its ``sm_XY`` arch).
"""

import os
import struct

ELF_MAGIC = b"\x7fELF"
PT_LOAD, PT_DYNAMIC = 1, 2
DT_NULL, DT_NEEDED, DT_STRTAB, DT_STRSZ = 0, 1, 5, 10
DT_SONAME, DT_RPATH, DT_RUNPATH, DT_FLAGS_1 = 14, 15, 29, 0x6FFFFFFB
DF_1_NODEFLIB = 0x800
# e_machine values worth a name in messages
MACHINES = {3: "i386", 40: "arm", 62: "x86_64", 183: "aarch64", 20: "ppc", 21: "ppc64"}

FATBIN_MAGIC = 0xBA55ED50
FATBIN_KINDS = {1: "ptx", 2: "sass"}


class ElfError(ValueError):
    """The file is not an ELF shared object this reader understands."""


class _Reader(object):
    def __init__(self, handle, size):
        self.handle = handle
        self.size = size

    def read(self, offset, length):
        if offset < 0 or length < 0 or offset + length > self.size:
            raise ElfError(
                "truncated: wants bytes {}..{} of {}".format(offset, offset + length, self.size)
            )
        self.handle.seek(offset)
        data = self.handle.read(length)
        if len(data) != length:
            raise ElfError("truncated read at {}".format(offset))
        return data


def _header(reader):
    ident = reader.read(0, 16)
    if ident[:4] != ELF_MAGIC:
        raise ElfError("not an ELF file")
    bits = {1: 32, 2: 64}.get(ident[4])
    order = {1: "<", 2: ">"}.get(ident[5])
    if bits is None or order is None:
        raise ElfError("unknown ELF class or byte order")
    if bits == 64:
        fields = struct.unpack(order + "HHIQQQIHHHHHH", reader.read(16, 48))
    else:
        fields = struct.unpack(order + "HHIIIIIHHHHHH", reader.read(16, 36))
    (e_type, machine, _version, _entry, phoff, shoff, _flags, _ehsize,
     phentsize, phnum, shentsize, shnum, shstrndx) = fields  # fmt: skip
    return {
        "bits": bits,
        "order": order,
        "type": e_type,
        "machine": machine,
        "phoff": phoff,
        "phentsize": phentsize,
        "phnum": phnum,
        "shoff": shoff,
        "shentsize": shentsize,
        "shnum": shnum,
        "shstrndx": shstrndx,
    }


def _program_headers(reader, hdr):
    """[(p_type, offset, vaddr, filesz)] of every program header."""
    found = []
    for i in range(hdr["phnum"]):
        at = hdr["phoff"] + i * hdr["phentsize"]
        if hdr["bits"] == 64:
            p_type, _flags, offset, vaddr, _paddr, filesz, _memsz, _align = struct.unpack(
                hdr["order"] + "IIQQQQQQ", reader.read(at, 56)
            )
        else:
            p_type, offset, vaddr, _paddr, filesz, _memsz, _flags, _align = struct.unpack(
                hdr["order"] + "IIIIIIII", reader.read(at, 32)
            )
        found.append((p_type, offset, vaddr, filesz))
    return found


def _vaddr_to_offset(segments, vaddr):
    for p_type, offset, start, filesz in segments:
        if p_type == PT_LOAD and start <= vaddr < start + filesz:
            return offset + (vaddr - start)
    raise ElfError("address {:#x} is in no loaded segment".format(vaddr))


def _string(reader, table, size, index):
    if index >= size:
        raise ElfError("string index {} outside the string table".format(index))
    end = min(size, index + 4096)
    raw = reader.read(table + index, end - index)
    return raw.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _split_path(value):
    return [part for part in value.split(":")] if value is not None else None


def read_dynamic(path):
    """What the dynamic loader reads from *path*: a dict with ``bits``, ``machine``
    (e_machine), ``soname``, ``needed`` (in order), ``rpath`` and ``runpath`` (lists
    of folders as written, ``$ORIGIN`` unexpanded, or None when absent) and
    ``nodeflib``. Raises ElfError (or OSError) for files it cannot read."""
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        reader = _Reader(handle, size)
        hdr = _header(reader)
        segments = _program_headers(reader, hdr)
        dynamic = [s for s in segments if s[0] == PT_DYNAMIC]
        info = {
            "bits": hdr["bits"],
            "machine": hdr["machine"],
            "soname": None,
            "needed": [],
            "rpath": None,
            "runpath": None,
            "nodeflib": False,
        }
        if not dynamic:
            return info  # a static executable
        _type, offset, _vaddr, filesz = dynamic[0]
        entry = 16 if hdr["bits"] == 64 else 8
        fmt = hdr["order"] + ("qQ" if hdr["bits"] == 64 else "iI")
        raw = reader.read(offset, filesz)
        tags = []
        for at in range(0, filesz - entry + 1, entry):
            tag, value = struct.unpack_from(fmt, raw, at)
            if tag == DT_NULL:
                break
            tags.append((tag, value))
        strtab = [v for t, v in tags if t == DT_STRTAB]
        strsz = [v for t, v in tags if t == DT_STRSZ]
        if not strtab or not strsz:
            raise ElfError("dynamic section without a string table")
        table = _vaddr_to_offset(segments, strtab[0])
        for tag, value in tags:
            if tag == DT_NEEDED:
                info["needed"].append(_string(reader, table, strsz[0], value))
            elif tag == DT_SONAME:
                info["soname"] = _string(reader, table, strsz[0], value)
            elif tag == DT_RPATH:
                info["rpath"] = _split_path(_string(reader, table, strsz[0], value))
            elif tag == DT_RUNPATH:
                info["runpath"] = _split_path(_string(reader, table, strsz[0], value))
            elif tag == DT_FLAGS_1:
                info["nodeflib"] = bool(value & DF_1_NODEFLIB)
        return info


def find_section(path, name):
    """(offset, size) of the section called *name* in *path*, or None."""
    with open(path, "rb") as handle:
        reader = _Reader(handle, os.fstat(handle.fileno()).st_size)
        return _find_section(reader, _header(reader), name)


def _section_headers(reader, hdr):
    """[(name_index, offset, size)] of every section header."""
    found = []
    for i in range(hdr["shnum"]):
        at = hdr["shoff"] + i * hdr["shentsize"]
        if hdr["bits"] == 64:
            fields = struct.unpack(hdr["order"] + "IIQQQQIIQQ", reader.read(at, 64))
        else:
            fields = struct.unpack(hdr["order"] + "IIIIIIIIII", reader.read(at, 40))
        found.append((fields[0], fields[4], fields[5]))
    return found


def _find_section(reader, hdr, name):
    if not hdr["shnum"] or hdr["shstrndx"] >= hdr["shnum"]:
        return None
    sections = _section_headers(reader, hdr)
    _n, names_at, names_size = sections[hdr["shstrndx"]]
    for name_index, offset, size in sections:
        if _string(reader, names_at, names_size, name_index) == name:
            return offset, size
    return None


def fatbin_entries(path):
    """Every fatbin entry in *path*'s ``.nv_fatbin`` section, as dicts with ``bundle``
    (the number of the fatbin it belongs to: one per compiled CUDA source, 1-based),
    ``kind`` ("sass" or "ptx"), ``arch`` (``"8.6"`` for sm_86) and ``compressed``.
    An empty list for a library without GPU code; ElfError for a corrupt section."""
    with open(path, "rb") as handle:
        reader = _Reader(handle, os.fstat(handle.fileno()).st_size)
        hdr = _header(reader)
        where = _find_section(reader, hdr, ".nv_fatbin")
        if where is None:
            return []
        return list(_walk_fatbins(reader, where[0], where[0] + where[1]))


def _walk_fatbins(reader, pos, end):
    bundle = 0
    while pos + 16 <= end:
        magic, _version, header_size, body_size = struct.unpack("<IHHQ", reader.read(pos, 16))
        if magic != FATBIN_MAGIC:
            pos += 8  # fatbins are 8-byte aligned; what lies between is padding
            continue
        bundle += 1
        entry = pos + header_size
        stop = min(end, entry + body_size)
        following = entry + body_size
        while entry + 48 <= stop:
            kind, _unknown, entry_header, payload = struct.unpack("<HHIQ", reader.read(entry, 16))
            (arch,) = struct.unpack("<I", reader.read(entry + 28, 4))
            (flags,) = struct.unpack("<Q", reader.read(entry + 40, 8))
            if entry_header < 48:
                raise ElfError("fatbin entry header of {} bytes at {}".format(entry_header, entry))
            yield {
                "bundle": bundle,
                "kind": FATBIN_KINDS.get(kind, "kind{}".format(kind)),
                "arch": "{}.{}".format(arch // 10, arch % 10),
                "compressed": bool(flags & 0x2000),
            }
            entry += entry_header + payload
        pos = max(following, pos + 8)


def summarize_fatbin(entries, partial=0.05):
    """What :func:`fatbin_entries` found, summed up: {"sass": [archs], "ptx": [archs],
    "sass_partial": [...], "ptx_partial": [...], "bundles": N, "bundles_with_ptx": M,
    "entries_by_arch": {"sass 8.6": n, ...}}. An arch present in fewer than *partial*
    of the bundles (mxnet-cu75's sm_20 code: 7 of 225) is listed as partial: a GPU of
    that arch finds no code for nearly every kernel."""
    by_arch = {}  # type: dict
    bundles = {}  # type: dict
    for item in entries:
        bundles.setdefault(item["bundle"], set()).add(item["kind"])
        key = (item["kind"], item["arch"])
        by_arch[key] = by_arch.get(key, 0) + 1

    def order(arch):
        major, minor = arch.split(".")
        return int(major), int(minor)

    def archs(kind, main):
        threshold = partial * len(bundles)
        return sorted(
            (arch for (k, arch), n in by_arch.items() if k == kind and (n >= threshold) == main),
            key=order,
        )

    return {
        "sass": archs("sass", True),
        "ptx": archs("ptx", True),
        "sass_partial": archs("sass", False),
        "ptx_partial": archs("ptx", False),
        "bundles": len(bundles),
        "bundles_with_ptx": len([kinds for kinds in bundles.values() if "ptx" in kinds]),
        "entries_by_arch": dict(
            ("{} {}".format(kind, arch), n) for (kind, arch), n in sorted(by_arch.items())
        ),
    }
