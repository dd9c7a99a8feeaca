"""Let ``import mxnet`` find the CUDA libraries that NVIDIA's pip wheels put in this
environment (site-packages/nvidia/*/lib), without LD_LIBRARY_PATH.

kmx-tune installs this module, with a .pth file and a JSON list of libraries, as the
small distribution ``kmx-mxnet-cuda-libs`` next to a CUDA flavor of MXNet. The .pth
line (run by ``site`` at every interpreter start) only puts a finder at the front of
``sys.meta_path``; nothing is loaded then. The first ``import mxnet`` asks that finder,
which loads the listed libraries by absolute path (so that libmxnet.so's NEEDED
entries are already satisfied when mxnet loads it), applies the environment defaults
in the list (``MXNET_USE_FUSION=0`` when the installed NVRTC is newer than the
driver's CUDA), removes itself and lets the normal import go on. It never raises: a
library that fails to load is recorded in ``ERRORS`` and mxnet's own import error
then says what is missing.

Set ``KMX_MXNET_CUDA_LIBS=0`` to turn it off for a process. Under ``python -S`` (no
``site``) it does not run. ``pip uninstall kmx-mxnet-cuda-libs`` removes it.

Runs INSIDE the target interpreter: stdlib only, Python 3.6+ syntax.
"""

import os
import sys

# Only os and sys at import: site runs this at every interpreter start, so anything
# more (json, ctypes) is imported when the first `import mxnet` needs it.

CONFIG_NAME = "kmx_mxnet_cuda_libs.json"
LOADED = []  # type: list  # absolute paths loaded, in order
ERRORS = []  # type: list  # "path: error" for each library that failed to load


def _config_path():
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), CONFIG_NAME)


def read_config(path=None):
    """The library list this distribution was built with; {} when unreadable."""
    import json

    try:
        with open(path or _config_path(), "r", encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def library_paths(config, search=None):
    """[(soname, absolute path or None)] in load order: each ``nvidia/<folder>/lib/<soname>``
    of the config, looked up in the sys.path entries (or *search*)."""
    folders = [p for p in (search if search is not None else sys.path) if p and os.path.isdir(p)]
    found = []
    for item in config.get("libraries", []):
        try:
            folder, soname = item["folder"], item["soname"]
        except (KeyError, TypeError):
            continue
        path = None
        for entry in folders:
            candidate = os.path.join(entry, "nvidia", folder, "lib", soname)
            if os.path.isfile(candidate):
                path = candidate
                break
        found.append((soname, path))
    return found


def preload(config=None):
    """Load the configured libraries (once) and apply the environment defaults."""
    import ctypes

    config = read_config() if config is None else config
    for name, value in (config.get("environment") or {}).items():
        os.environ.setdefault(str(name), str(value))
    for soname, path in library_paths(config):
        if path is None:
            ERRORS.append("{}: not found under nvidia/*/lib on sys.path".format(soname))
            continue
        try:
            ctypes.CDLL(path, mode=getattr(os, "RTLD_LOCAL", 0) | getattr(os, "RTLD_NOW", 2))
            LOADED.append(path)
        except OSError as exc:
            ERRORS.append("{}: {}".format(path, exc))


class _Finder(object):
    """Finds nothing; on the first lookup of ``mxnet`` it preloads, then leaves."""

    def find_spec(self, name, path=None, target=None):
        if name == "mxnet" or name.startswith("mxnet."):
            remove()
            try:
                preload()
            except Exception as exc:  # never break the import of mxnet itself
                ERRORS.append("preload failed: {}: {}".format(type(exc).__name__, exc))
        return None


def install():
    """Put the finder first in sys.meta_path (once), unless KMX_MXNET_CUDA_LIBS=0."""
    if os.environ.get("KMX_MXNET_CUDA_LIBS", "").strip().lower() in ("0", "off", "no", "false"):
        return
    if "mxnet" in sys.modules or any(isinstance(f, _Finder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _Finder())


def remove():
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _Finder)]
