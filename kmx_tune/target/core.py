"""The :class:`Target` object every command taking ``--python`` works on, and how one
is chosen without ``--python`` (:func:`find_default`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from kmx_tune.dists import Distribution
from kmx_tune.errors import TargetError
from kmx_tune.install.pip import PipRun, pip_list, run_pip
from kmx_tune.target.choose import (
    OWN,
    NoTargetError,
    _env_python,
    _has_keras_or_mxnet,
    _own_has_keras_or_mxnet,
    _same_path,
    resolve_python,
)
from kmx_tune.target.facts import FACTS_SCHEMA, TargetInfo, facts_from_json
from kmx_tune.target.run import run_in_target, run_script


def find_default(env: Mapping[str, str] | None = None) -> Target:
    """The target a command means without --python, as pip-like tools choose: the
    active virtual environment ($VIRTUAL_ENV), else the active conda environment
    ($CONDA_PREFIX), else `python` (or `python3`) on PATH. kmx-tune's own environment
    is passed over unless it has Keras or MXNet in it. With none of them, a
    MissingTarget."""
    env = os.environ if env is None else env
    looked_at: list[str] = []
    own_is_training: bool | None = None

    def own(prefix: str | os.PathLike[str]) -> bool:
        nonlocal own_is_training
        if not _same_path(prefix, sys.prefix):
            return False
        if own_is_training is None:
            own_is_training = _own_has_keras_or_mxnet()
        return not own_is_training

    for var, what in (
        ("VIRTUAL_ENV", "the active virtual environment"),
        ("CONDA_PREFIX", "the active conda environment"),
    ):
        prefix = env.get(var)
        if not prefix:
            continue
        python = _env_python(prefix)
        if python is None:
            looked_at.append(f"{var}={prefix} has no bin/python")
        elif own(prefix):
            looked_at.append(f"{var}={prefix} is {OWN}")
        else:
            return Target(python, chosen_by=f"{what} (${var})", passed_over=looked_at)
    path = env.get("PATH", os.defpath)
    for name in ("python", "python3"):  # python3 where there is no `python` (Debian)
        found = shutil.which(name, path=path)
        if found is None:
            continue
        if own(Path(found).parent.parent):
            looked_at.append(f"`{name}` on PATH ({found}) is {OWN}")
            break
        return Target(found, chosen_by=f"the `{name}` on PATH", passed_over=looked_at)
    return MissingTarget(NoTargetError(looked_at))


class Target:
    """The Python environment a command works on: its interpreter, what it has
    installed (:meth:`facts`, read by a script run inside it), and its pip."""

    def __init__(
        self, python: str, *, chosen_by: str = "--python", passed_over: Sequence[str] = ()
    ) -> None:
        self._python = python
        self.chosen_by = chosen_by  # why this one: "--python", "the active virtual ...", ...
        self.passed_over = tuple(passed_over)  # defaults considered first, and why not
        self._facts: dict[bool, TargetInfo] = {}

    @property
    def python(self) -> str:
        """The interpreter, as a path that runs it."""
        return self._python

    @property
    def is_default(self) -> bool:
        """Chosen without --python (see :func:`find_default`)."""
        return self.chosen_by != "--python"

    @classmethod
    def find(
        cls, python: str | os.PathLike[str] | None, *, env: Mapping[str, str] | None = None
    ) -> Target:
        """The target a command means: *python* when given (a path, a venv folder or a
        name on PATH), else the active virtual or conda environment, else `python` on
        PATH, never kmx-tune's own environment unless it has Keras or MXNet
        (:func:`find_default`, which reads *env*). Raises TargetError with what to do
        when *python* is unusable; when there is no default, the :class:`MissingTarget`
        returned raises NoTargetError where it is first used, so that a command's
        other arguments are checked first."""
        if python is None:
            return find_default(env)
        return cls(resolve_python(python))

    def facts(self, *, deep: bool = False, env: Mapping[str, str] | None = None) -> TargetInfo:
        """What the target has installed; *deep* also imports mxnet and keras there.
        *env*: the environment to run it with (default: this process's). Read once.
        A default target that turns out to be kmx-tune's own environment (a pyenv shim
        for `python`, say) raises NoTargetError, as find_default would have."""
        if deep not in self._facts or env is not None:
            raw = self.run_json(
                "kmx_env_facts.py", ["--deep"] if deep else [], env=env, schema=FACTS_SCHEMA
            )
            info = facts_from_json(self.python, raw)
            if (
                self.is_default
                and _same_path(info.prefix, sys.prefix)
                and not _has_keras_or_mxnet([d.name for d in info.distributions.values()])
            ):
                raise NoTargetError(
                    [*self.passed_over, f"{self.chosen_by} ({self.python}) is {OWN}"]
                )
            self._facts[deep] = info
        return self._facts[deep]

    def run_script(
        self,
        script: str,
        args: Sequence[str] = (),
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 120,
        timeout_message: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``kmx_tune/_in_target/<script>`` in the target (see :func:`run_script`)."""
        return run_script(
            self.python, script, args, env=env, timeout=timeout, timeout_message=timeout_message
        )

    def run_json(
        self,
        script: str,
        args: Sequence[str] = (),
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 120,
        schema: str | None = None,
    ) -> dict[str, Any]:
        """Run an in-target script and return the JSON report it prints."""
        return run_in_target(self.python, script, args, env=env, timeout=timeout, schema=schema)

    def pip(self, args: Sequence[str], out: IO[str] | None = None) -> PipRun:
        """Run the target's own pip (``PY -m pip ARGS``)."""
        return run_pip(self.python, args, out)

    def pip_list(self) -> dict[str, Distribution]:
        """What the target's pip lists as installed, by normalized name."""
        return pip_list(self.python)


class MissingTarget(Target):
    """No --python and no default (see :func:`find_default`): using it in any way
    raises the NoTargetError that says why and what to do."""

    def __init__(self, error: NoTargetError) -> None:
        super().__init__("", chosen_by="nothing", passed_over=error.looked_at)
        self.error = error

    @property
    def python(self) -> str:
        raise self.error

    def facts(self, *, deep: bool = False, env: Mapping[str, str] | None = None) -> TargetInfo:
        raise self.error


class RecordedTarget(Target):
    """A target known from recorded facts (as ``kmx_env_facts.py`` reports them): the
    seam for tests. It answers :meth:`facts` from the record and runs nothing."""

    def __init__(self, info: TargetInfo, *, chosen_by: str = "--python") -> None:
        super().__init__(info.python, chosen_by=chosen_by)
        self._facts = {False: info, True: info}

    @classmethod
    def from_report(cls, python: str, raw: Mapping[str, Any]) -> RecordedTarget:
        return cls(facts_from_json(python, raw))

    def facts(self, *, deep: bool = False, env: Mapping[str, str] | None = None) -> TargetInfo:
        return self._facts[deep]

    def run_script(self, *args: Any, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        raise TargetError(f"{self.python}: only recorded facts are known; nothing runs there")

    def run_json(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        raise TargetError(f"{self.python}: only recorded facts are known; nothing runs there")

    def pip(self, args: Sequence[str], out: IO[str] | None = None) -> PipRun:
        raise TargetError(f"{self.python}: only recorded facts are known; pip cannot run there")

    def pip_list(self) -> dict[str, Distribution]:
        return dict(self.facts().distributions)
