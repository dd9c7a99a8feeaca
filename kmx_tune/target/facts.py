"""What a target interpreter has: the facts report that ``kmx_env_facts.py`` prints
inside it, checked field by field before it is read (a wrapper that prints its own JSON
gets one line naming the field, not a traceback), as a frozen :class:`TargetInfo`."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kmx_tune.dists import Distribution, is_mxnet_distribution, normalize
from kmx_tune.errors import TargetError

FACTS_SCHEMA = "kmx-tune/target-facts/1"


@dataclass(frozen=True)
class KerasFacts:
    module_path: str | None  # folder of the `keras` package that `import keras` finds
    has_mxnet_backend: bool  # keras/backend/mxnet_backend.py exists and is loaded (keras-mxnet)
    # mxnet_backend.py is there, loaded or not (plain keras over keras-mxnet leaves it)
    mxnet_backend_file: bool = False


@dataclass(frozen=True)
class RuntimeFacts:
    """What importing mxnet (and keras) really did; only with ``deep=True``."""

    mxnet_version: str | None
    mxnet_import_error: str | None
    features: Mapping[str, bool] | None  # mx.runtime.Features(): CUDA, CUDNN, MKLDNN, ...
    num_gpus: int | None
    keras_version: str | None
    keras_import_error: str | None


@dataclass(frozen=True)
class TargetInfo:
    python: str  # the interpreter path as the user named it (or sys.executable)
    executable: str  # sys.executable inside the target
    version: tuple[int, int, int]
    implementation: str
    platform: str
    machine: str
    prefix: str
    in_venv: bool
    distributions: Mapping[str, Distribution] = field(repr=False)  # normalized name -> dist
    has_pip: bool
    keras: KerasFacts
    runtime: RuntimeFacts | None = None
    sysconfig_platform: str = ""  # "linux-x86_64": what pip's platform tags derive from
    libc: tuple[str, str] = ("", "")  # ("glibc", "2.36") on most Linux systems
    # where each library the installed libmxnet.so needs resolves (kmx_cuda_libs.py)
    cuda_libs: Mapping[str, Any] | None = None

    @property
    def version_str(self) -> str:
        return ".".join(str(part) for part in self.version)

    @property
    def mxnet_distributions(self) -> tuple[Distribution, ...]:
        return tuple(
            d for key, d in sorted(self.distributions.items()) if is_mxnet_distribution(key)
        )

    def dist(self, name: str) -> Distribution | None:
        return self.distributions.get(normalize(name))

    @property
    def pip_version(self) -> str | None:
        d = self.dist("pip")
        return d.version if d else None

    @property
    def numpy_version(self) -> str | None:
        d = self.dist("numpy")
        return d.version if d else None

    def to_json(self) -> dict[str, Any]:
        return {
            "python": self.python,
            "executable": self.executable,
            "version": self.version_str,
            "implementation": self.implementation,
            "platform": self.platform,
            "machine": self.machine,
            "prefix": self.prefix,
            "in_venv": self.in_venv,
            "has_pip": self.has_pip,
            "mxnet": [{"name": d.name, "version": d.version} for d in self.mxnet_distributions],
            "numpy": self.numpy_version,
            "keras": {
                "module_path": self.keras.module_path,
                "has_mxnet_backend": self.keras.has_mxnet_backend,
                "mxnet_backend_file": self.keras.mxnet_backend_file,
                "distributions": [
                    {"name": d.name, "version": d.version}
                    for key in ("keras", "keras-mxnet")
                    if (d := self.dist(key)) is not None
                ],
            },
            "runtime": None if self.runtime is None else dict(vars(self.runtime)),
        }


_STR, _OPT_STR, _BOOL = (str,), (str, type(None)), (bool,)

# The facts report, field by field: (name, types it may have, required). Checked before
# it is read, so a target that prints something else of the right schema gets one line.
_FACTS_FIELDS: tuple[tuple[str, tuple[type, ...], bool], ...] = (
    ("executable", _STR, True),
    ("version", (list,), True),
    ("implementation", _STR, True),
    ("platform", _STR, True),
    ("machine", _STR, True),
    ("prefix", _STR, True),
    ("base_prefix", _STR, True),
    ("distributions", (dict,), True),
    ("pip_module", _BOOL, True),
    ("keras", (dict,), True),
    ("deep", (dict, type(None)), False),
    ("sysconfig_platform", _OPT_STR, False),
)
_KERAS_FIELDS = (
    ("module_path", _OPT_STR, True),
    ("has_mxnet_backend", _BOOL, True),
    ("mxnet_backend_file", _BOOL, False),
)
_DEEP_FIELDS = (
    ("mxnet_version", _OPT_STR, False),
    ("mxnet_import_error", _OPT_STR, False),
    ("features", (dict, type(None)), False),
    ("num_gpus", (int, type(None)), False),
    ("keras_version", _OPT_STR, False),
    ("keras_import_error", _OPT_STR, False),
)


def _fields_problem(
    data: Mapping[str, Any], fields: Sequence[tuple[str, tuple[type, ...], bool]], prefix: str
) -> str | None:
    for name, kinds, required in fields:
        if name not in data:
            if required:
                return f"field '{prefix}{name}' is missing"
            continue
        value = data[name]
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            shown = json.dumps(value, default=str)[:40]
            kinds_text = " or ".join(_KIND_NAMES[k] for k in kinds)
            return f"field '{prefix}{name}' must be {kinds_text}, not {shown}"
    return None


_KIND_NAMES = {
    str: "a string",
    bool: "true or false",
    int: "a whole number",
    list: "a list",
    dict: "an object",
    type(None): "null",
}


def facts_problem(raw: Any) -> str | None:
    """What is wrong with a facts report (the first problem), or None."""
    if not isinstance(raw, Mapping):
        return "it is not a JSON object"
    problem = _fields_problem(raw, _FACTS_FIELDS, "")
    if problem:
        return problem
    version = raw["version"]
    if len(version) != 3 or not all(
        isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 1000 for n in version
    ):
        return f"field 'version' must be three whole numbers, not {json.dumps(version)[:40]}"
    for key, dist in raw["distributions"].items():
        where = f"distributions[{json.dumps(key)[:40]}]."
        if not isinstance(dist, Mapping):
            return f"field {where[:-1]!r} must be an object"
        problem = _fields_problem(
            dist, (("name", _STR, True), ("version", _STR, True), ("location", _STR, False)), where
        )
        if problem:
            return problem
    problem = _fields_problem(raw["keras"], _KERAS_FIELDS, "keras.")
    if problem:
        return problem
    deep = raw.get("deep")
    if deep:
        problem = _fields_problem(deep, _DEEP_FIELDS, "deep.")
        if problem:
            return problem
        features = deep.get("features") or {}
        if not all(isinstance(v, bool) for v in features.values()):
            return "field 'deep.features' must map names to true or false"
    return None


def facts_from_json(python: str, raw: Mapping[str, Any]) -> TargetInfo:
    """The facts report (as kmx_env_facts.py prints it) as a TargetInfo. Raises
    TargetError naming the first field that is missing or of the wrong kind."""
    problem = facts_problem(raw)
    if problem is not None:
        raise TargetError(
            f"{python}: printed a facts report kmx-tune cannot read ({problem}); check that "
            "it is a plain Python 3.6+ interpreter (not a wrapper that prints its own JSON), "
            "or give another with --python"
        )
    dists = {
        key: Distribution(d["name"], d["version"], d.get("location", ""))
        for key, d in raw["distributions"].items()
    }
    runtime = None
    deep = raw.get("deep")
    if deep:
        runtime = RuntimeFacts(
            mxnet_version=deep.get("mxnet_version"),
            mxnet_import_error=deep.get("mxnet_import_error"),
            features=deep.get("features"),
            num_gpus=deep.get("num_gpus"),
            keras_version=deep.get("keras_version"),
            keras_import_error=deep.get("keras_import_error"),
        )
    version = raw["version"]
    keras = raw["keras"]
    return TargetInfo(
        python=python,
        executable=raw["executable"],
        version=(version[0], version[1], version[2]),
        implementation=raw["implementation"],
        platform=raw["platform"],
        machine=raw["machine"],
        prefix=raw["prefix"],
        in_venv=raw["prefix"] != raw["base_prefix"],
        distributions=dists,
        has_pip=raw["pip_module"],
        keras=KerasFacts(
            keras["module_path"],
            keras["has_mxnet_backend"],
            keras.get("mxnet_backend_file", keras["has_mxnet_backend"]),
        ),
        runtime=runtime,
        sysconfig_platform=str(raw.get("sysconfig_platform") or ""),
        libc=_libc(raw.get("libc")),
        cuda_libs=raw.get("cuda_libs") if isinstance(raw.get("cuda_libs"), dict) else None,
    )


def _libc(raw: Any) -> tuple[str, str]:
    if isinstance(raw, list) and len(raw) == 2 and all(isinstance(x, str) for x in raw):
        return raw[0], raw[1]
    return "", ""
