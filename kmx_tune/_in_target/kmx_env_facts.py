"""Report facts about the interpreter running this script, as one JSON object.

Runs INSIDE the target interpreter: stdlib only, Python 3.6+ syntax (checked by
vermin in CI). It does not import mxnet or keras unless --deep is given, because
importing mxnet costs about 2 s.
"""

import json
import os
import platform
import re
import sys
import sysconfig

# Distribution names are compared normalized (PEP 503).
_NORMALIZE = re.compile(r"[-_.]+")


def normalize(name):
    return _NORMALIZE.sub("-", name).lower()


def _read_metadata(path):
    """Name and Version from a METADATA / PKG-INFO file (RFC 822 headers)."""
    name = version = None
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if not line.strip():
                    break  # end of the headers
                if line.startswith("Name:") and name is None:
                    name = line[5:].strip()
                elif line.startswith("Version:") and version is None:
                    version = line[8:].strip()
    except (OSError, UnicodeError):
        return None, None
    return name, version


def distributions():
    """{normalized name: {"name", "version", "location"}} for every installed
    distribution on sys.path; the first one found wins, as it does for imports."""
    found = {}
    for entry in sys.path:
        if not entry or not os.path.isdir(entry):
            continue
        try:
            names = sorted(os.listdir(entry))
        except OSError:
            continue
        for item in names:
            if item.startswith("~"):
                continue  # pip's stash of an uninstall it did not finish: pip ignores it too
            if item.endswith(".dist-info"):
                meta = os.path.join(entry, item, "METADATA")
            elif item.endswith(".egg-info"):
                meta = os.path.join(entry, item)
                if os.path.isdir(meta):
                    meta = os.path.join(meta, "PKG-INFO")
            else:
                continue
            name, version = _read_metadata(meta)
            if not name or not version:
                continue
            key = normalize(name)
            if key not in found:
                found[key] = {"name": name, "version": version, "location": entry}
    return found


def module_dir(name):
    """Folder of a top-level package, found without importing it."""
    try:
        import importlib.util

        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or spec.origin in ("built-in", "frozen"):
        return None
    return os.path.dirname(spec.origin)


def _loads_mxnet_backend(backend):
    """Whether Keras's backend loader knows the MXNet backend. `pip install keras`
    over keras-mxnet replaces backend/__init__.py but leaves mxnet_backend.py behind."""
    for name in ("__init__.py", "load_backend.py"):
        try:
            with open(os.path.join(backend, name), "r", encoding="utf-8", errors="replace") as f:
                if "mxnet_backend" in f.read():
                    return True
        except (OSError, UnicodeError):
            continue
    return False


def keras_facts():
    folder = module_dir("keras")
    facts = {"module_path": folder, "has_mxnet_backend": False, "mxnet_backend_file": False}
    if folder:
        backend = os.path.join(folder, "backend")
        has_file = os.path.isfile(os.path.join(backend, "mxnet_backend.py"))
        facts["mxnet_backend_file"] = has_file
        facts["has_mxnet_backend"] = has_file and _loads_mxnet_backend(backend)
    return facts


def _error_line(exc):
    return "{}: {}".format(type(exc).__name__, exc).splitlines()[0][:500]


def deep_facts():
    """Import mxnet (and keras) for real: build features, GPU count, import errors."""
    result = {  # type: dict
        "mxnet_import_error": None,
        "mxnet_version": None,
        "features": None,
        "num_gpus": None,
        "keras_import_error": None,
        "keras_version": None,
    }
    try:
        import mxnet as mx

        result["mxnet_version"] = getattr(mx, "__version__", None)
        try:
            features = mx.runtime.Features()
            result["features"] = dict((name, bool(features.is_enabled(name))) for name in features)
        except Exception as exc:  # old mxnet without runtime.Features
            result["features_error"] = _error_line(exc)
        try:
            result["num_gpus"] = int(mx.context.num_gpus())
        except Exception as exc:  # a CUDA build with no usable driver raises here
            result["num_gpus_error"] = _error_line(exc)
    except Exception as exc:
        result["mxnet_import_error"] = _error_line(exc)
    if module_dir("keras"):
        os.environ.setdefault("KERAS_BACKEND", "mxnet")
        try:
            import keras

            result["keras_version"] = getattr(keras, "__version__", None)
        except Exception as exc:
            result["keras_import_error"] = _error_line(exc)
    return result


def main(argv):
    if sys.version_info < (3, 6):  # Python 2 parses this file, then fails somewhere odd
        sys.stderr.write(
            "this is Python {}.{}; kmx-tune needs Python 3.6 or newer\n".format(
                sys.version_info[0], sys.version_info[1]
            )
        )
        return 3
    deep = "--deep" in argv
    info = sys.version_info
    facts = {
        "schema": "kmx-tune/target-facts/1",
        "executable": sys.executable,
        "version": [info[0], info[1], info[2]],
        "implementation": platform.python_implementation(),
        "platform": sys.platform,
        "machine": platform.machine(),
        # what pip's platform tags derive from: "linux-x86_64", "macosx-11.0-arm64", ...
        "sysconfig_platform": sysconfig.get_platform(),
        "libc": list(platform.libc_ver()),  # ["glibc", "2.36"]; ["", ""] elsewhere
        "prefix": sys.prefix,
        "base_prefix": getattr(sys, "base_prefix", sys.prefix),
        "distributions": distributions(),
        "pip_module": module_dir("pip") is not None,
        "keras": keras_facts(),
        "deep": None,
        "cuda_libs": None,
    }
    if any(normalize(d["name"]).startswith("mxnet") for d in facts["distributions"].values()):
        try:  # where each library libmxnet.so needs resolves (kmx_cuda_libs.py, beside this)
            import kmx_cuda_libs

            facts["cuda_libs"] = kmx_cuda_libs.report()
        except Exception as exc:  # a report, never a failure of the facts
            facts["cuda_libs"] = {"error": _error_line(exc)}
    if deep:
        # Imports may print (Python or C level); keep fd 1 clean for the JSON.
        sys.stdout.flush()
        saved = os.dup(1)
        os.dup2(2, 1)
        try:
            facts["deep"] = deep_facts()
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
    sys.stdout.write(json.dumps(facts))
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
