"""What ``kmx-tune bench`` sweeps: the variables the MXNet performance guide and
``kmx-tune doctor`` name, with the values worth trying on this machine.

- ``OMP_NUM_THREADS``: 1, the physical cores, the logical cores (and the value in the
  environment, if another); read by OpenMP when the process starts.
- ``KMP_AFFINITY=granularity=fine,compact,1,0`` (the guide's value): only where the
  MXNet build uses Intel OpenMP (libiomp5 beside libmxnet.so, as in the -mkl wheels);
  GNU OpenMP ignores it. Read when the process starts.
- ``MXNET_EXEC_BULK_EXEC_TRAIN`` (``..._INFERENCE`` with ``--inference``): 1 (MXNet's
  default) and 0; MXNet reads it when a graph is bound, so one process holds both.
- ``MXNET_CUDNN_AUTOTUNE_DEFAULT`` on a GPU: 0, 1 (MXNet's default) and 2. Read when a
  convolution is created; kmx-tune gives each value its own process.

A process-level setting is one worker process; the bulk variable and the format are
cells inside a worker.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

OMP = "OMP_NUM_THREADS"
KMP = "KMP_AFFINITY"
KMP_GUIDE = "granularity=fine,compact,1,0"  # MXNet performance guide
AUTOTUNE = "MXNET_CUDNN_AUTOTUNE_DEFAULT"
BULK = {"train": "MXNET_EXEC_BULK_EXEC_TRAIN", "inference": "MXNET_EXEC_BULK_EXEC_INFERENCE"}


@dataclass(frozen=True)
class ProcessSetting:
    """The environment of one worker process: each swept variable's value (None:
    unset), and whether it is the environment kmx-tune itself runs in."""

    values: tuple[tuple[str, str | None], ...]
    current: bool

    def env(self, base: Mapping[str, str]) -> dict[str, str]:
        out = dict(base)
        for name, value in self.values:
            if value is None:
                out.pop(name, None)
            else:
                out[name] = value
        return out


def _distinct(values: Sequence[str | None]) -> list[str | None]:
    out: list[str | None] = []
    for value in values:
        if value not in out:
            out.append(value)
    return out


def process_settings(
    env: Mapping[str, str],
    *,
    ctx: str,
    physical: int,
    logical: int,
    intel_openmp: bool,
    quick: bool,
) -> list[ProcessSetting]:
    """The worker processes to start; the first is the current environment."""
    if ctx == "gpu":
        names = [AUTOTUNE]
        choices: list[list[str | None]] = [_distinct([env.get(AUTOTUNE), "0", "1", "2"])]
    else:
        names = [OMP]
        choices = [_distinct([env.get(OMP), "1", str(physical), str(logical)])]
        if intel_openmp:
            names.append(KMP)
            choices.append(_distinct([env.get(KMP), KMP_GUIDE]))
    current = tuple((name, env.get(name)) for name in names)
    settings = [ProcessSetting(current, True)]
    if quick:
        return settings
    combos: list[tuple[tuple[str, str | None], ...]] = [()]
    for name, values in zip(names, choices):
        combos = [combo + ((name, value),) for combo in combos for value in values]
    settings.extend(ProcessSetting(combo, False) for combo in combos if combo != current)
    return settings


def bulk_values(env: Mapping[str, str], mode: str, quick: bool) -> list[str | None]:
    """Bulk-execution values to bind each format with: None (as the environment has
    it) first, then the other of 1 and 0."""
    if quick:
        return [None]
    value = env.get(BULK[mode])
    return [None, "1" if value == "0" else "0"]


def bulk_effective(value: str | None) -> str:
    """What MXNet does with the bulk variable's value: unset means 1."""
    return "1" if value is None else value


def describe(values: Mapping[str, str | None]) -> str:
    """``OMP_NUM_THREADS=2, MXNET_EXEC_BULK_EXEC_TRAIN=0`` (unset variables say so)."""
    return ", ".join(f"{k}={v}" if v is not None else f"{k} unset" for k, v in values.items())
