"""``kmx-tune doctor --fix``: apply the fixes doctor printed that are safe to apply,
then check again.

A fix is applied only when it is a command of a known shape, aimed at the target
that was checked: the target's pip (``PY -m pip install|uninstall ...``), its
ensurepip, ``kmx-tune install-mxnet`` (run through the install workflow itself, with
its verification and rollback), ``kmx-tune set-format channels_first``, and
``export``/``unset`` of a variable. Exactly what was shown is what runs, as argument
lists, never through a shell. Anything else (making a new venv, moving a keras.json
folder away, ``set-format --force``) is listed as left to the user.

Environment variables cannot be set for the user's shell from a child process: they
go into a snippet file (``$XDG_CONFIG_HOME/kmx-tune/env.sh`` unless ``--env-file``)
that the user sources; the second check runs with them set.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from kmx_tune.doctor.envfile import write_env_file
from kmx_tune.doctor.model import Report
from kmx_tune.errors import KmxError
from kmx_tune.flavors import NUMPY_PIN

if TYPE_CHECKING:
    from kmx_tune.hardware import HardwareProfile

SCHEMA = "kmx-tune/doctor-fix/1"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# The order fixes run in: pip itself first (the rest needs it), keras-mxnet before MXNet
# (installing keras-mxnet can pull in a numpy that breaks mxnet; install-mxnet and the
# numpy pin come after it), keras.json, and the variables last.
# An interrupted install is put back first of all that touches packages: install-mxnet
# refuses to plan over its journal.
ORDER = (
    "ensurepip",
    "pip-itself",
    "restore",
    "pip",
    "install-mxnet",
    "numpy",
    "set-format",
    "env",
)


@dataclass(frozen=True)
class Action:
    """One fix to apply: *kind* (see ORDER), the command as doctor showed it, the
    findings it answers, and what to run (pip arguments; for env: ("export", NAME,
    VALUE) or ("unset", NAME))."""

    kind: str
    command: str
    findings: tuple[str, ...]
    args: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "command": self.command, "findings": list(self.findings)}


@dataclass(frozen=True)
class Skipped:
    finding: str
    command: str
    why: str

    def to_json(self) -> dict[str, Any]:
        return {"finding": self.finding, "command": self.command, "why": self.why}


@dataclass(frozen=True)
class FixPlan:
    python: str | None
    actions: tuple[Action, ...]
    skipped: tuple[Skipped, ...]
    env_file: Path

    @property
    def env_actions(self) -> tuple[Action, ...]:
        return tuple(a for a in self.actions if a.kind == "env")


@dataclass(frozen=True)
class Outcome:
    action: Action
    ok: bool
    message: str

    def to_json(self) -> dict[str, Any]:
        return {**self.action.to_json(), "ok": self.ok, "message": self.message}


@dataclass(frozen=True)
class FixReport:
    """doctor --fix from start to end: the first report, what was planned, what each
    fix did, and the report of the second check (None when nothing was applied)."""

    before: Report
    plan: FixPlan
    outcomes: tuple[Outcome, ...] = ()
    after: Report | None = None
    declined: bool = False
    env_written: bool = False
    env_applied: Mapping[str, str | None] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """1 when a fix failed; else the second check's status (the first one's when
        nothing was applied)."""
        if any(not o.ok for o in self.outcomes):
            return 1
        return (self.after or self.before).exit_code

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "exit_code": self.exit_code,
            "declined": self.declined,
            "planned": [a.to_json() for a in self.plan.actions],
            "skipped": [s.to_json() for s in self.plan.skipped],
            "applied": [o.to_json() for o in self.outcomes],
            "env_file": str(self.plan.env_file) if self.env_written else None,
            "before": self.before.to_json(),
            "after": None if self.after is None else self.after.to_json(),
        }


# ---------------------------------------------------------------------- planning


def _pip_kind(args: Sequence[str]) -> str | None:
    """The kind of a pip command doctor prints, or None for one it does not."""
    if len(args) >= 2 and args[0] == "install":
        wanted = [a for a in args[1:] if not a.startswith("-")]
        if wanted and all(w == "pip" or w.startswith("pip<") for w in wanted):
            return "pip-itself"
        if wanted == [NUMPY_PIN]:
            return "numpy"
        return "pip"
    if len(args) >= 3 and args[0] == "uninstall" and "-y" in args:
        return "pip"
    return None


# install-mxnet's options that a doctor fix may carry, and whether each takes a value
_INSTALL_OPTIONS = {"--hardware": True, "--flavor": True, "--version": True, "--cuda-libs": True,
                    "--cpu": False}  # fmt: skip


def _install_options(words: Sequence[str]) -> tuple[str, ...] | None:
    """The install-mxnet options after --python, checked against the ones known; None
    when there is one that is not (then the fix is left to the user)."""
    i = 0
    while i < len(words):
        takes_value = _INSTALL_OPTIONS.get(words[i])
        if takes_value is None or (takes_value and i + 1 >= len(words)):
            return None
        i += 2 if takes_value else 1
    return tuple(words)


def _parse(words: Sequence[str], python: str | None) -> Action | str:
    """An Action for one command (a list of words), or why it is not applied."""
    if python is not None and len(words) >= 3 and words[0] == python and words[1] == "-m":
        if words[2] == "pip":
            kind = _pip_kind(words[3:])
            if kind is not None:
                return Action(kind, shlex.join(words), (), tuple(words[3:]))
        if list(words[2:]) == ["ensurepip", "--upgrade"]:
            return Action("ensurepip", shlex.join(words), ())
    if list(words) == ["kmx-tune", "install-mxnet", "--python", python, "--restore"]:
        return Action("restore", shlex.join(words), ())
    if words[:2] == ["kmx-tune", "install-mxnet"] and list(words[2:4]) == ["--python", python]:
        options = _install_options(words[4:])
        if options is not None:
            return Action("install-mxnet", shlex.join(words), (), options)
    if list(words) == ["kmx-tune", "set-format", "channels_first"]:
        return Action("set-format", shlex.join(words), ())
    if len(words) == 2 and words[0] == "export":
        name, sep, value = words[1].partition("=")
        if sep and _NAME.fullmatch(name):
            return Action("env", shlex.join(words), (), ("export", name, value))
    if len(words) == 2 and words[0] == "unset" and _NAME.fullmatch(words[1]):
        return Action("env", shlex.join(words), (), ("unset", words[1]))
    if words[:2] == ["kmx-tune", "set-format"]:
        return "replaces keras.json content: run it yourself after a look at the file"
    if len(words) >= 3 and words[1:3] == ["-m", "venv"]:
        return "makes a new environment: run it yourself"
    return "not a fix kmx-tune applies: run it yourself"


def plan_fixes(report: Report, env_file: Path) -> FixPlan:
    """The fixes of *report* that can be applied, in the order they run (each once),
    and those left to the user."""
    python = report.target.python if report.target is not None else None
    actions: dict[str, Action] = {}
    skipped: list[Skipped] = []
    for finding in report.findings:
        if finding.status == "ok" or not finding.fix:
            continue
        try:
            parts = [shlex.split(part) for part in finding.fix.split(" && ")]
        except ValueError:
            parts = []
        parsed = [_parse(words, python) for words in parts if words]
        reasons = [p for p in parsed if isinstance(p, str)]
        if not parsed or reasons:
            why = reasons[0] if reasons else "not a command"
            skipped.append(Skipped(finding.id, finding.fix, why))
            continue
        steps = [p for p in parsed if isinstance(p, Action)]
        # `pip uninstall -y A B && kmx-tune install-mxnet`: install-mxnet removes every
        # other flavor itself, keeping a way back; an uninstall before it would not.
        if any(s.kind == "install-mxnet" for s in steps):
            steps = [s for s in steps if s.kind == "install-mxnet"]
        for step in steps:
            known = actions.get(step.command)
            ids = (known.findings if known else ()) + (finding.id,)
            actions[step.command] = Action(step.kind, step.command, ids, step.args)
    ordered = sorted(actions.values(), key=lambda a: ORDER.index(a.kind))
    if any(a.kind == "install-mxnet" for a in ordered):
        ordered = [a for a in ordered if a.kind != "numpy"]  # install-mxnet pins numpy too
    return FixPlan(python, tuple(ordered), tuple(skipped), env_file)


# ---------------------------------------------------------------------- applying


Log = Callable[[str], None]


@dataclass(frozen=True)
class _Run:
    """What every fix is applied with."""

    plan: FixPlan
    hw: HardwareProfile
    env: Mapping[str, str]
    out: IO[str] | None
    log: Log


def apply_fixes(
    plan: FixPlan,
    hardware: HardwareProfile,
    *,
    env: Mapping[str, str] | None = None,
    out: IO[str] | None = None,
    log: Log = lambda line: None,
) -> tuple[tuple[Outcome, ...], bool]:
    """Run the plan's fixes in order; the outcome of each, and whether the env
    snippet was written. A failed fix does not stop the others: each is independent
    of the one before, apart from pip itself (and then the next ones fail and say so)."""
    run = _Run(plan, hardware, os.environ if env is None else env, out, log)
    outcomes: list[Outcome] = []
    for action in plan.actions:
        if action.kind == "env":
            continue
        log(action.command)
        try:
            outcomes.append(_APPLY[action.kind](run, action))
        except KmxError as exc:
            outcomes.append(Outcome(action, False, str(exc)))
    written = False
    settings = [a.args for a in plan.env_actions]
    if settings:
        log(f"writing {plan.env_file}")
        try:
            write_env_file(plan.env_file, settings)
            written = True
            message = f"written to {plan.env_file}"
            outcomes += [Outcome(a, True, message) for a in plan.env_actions]
        except KmxError as exc:
            outcomes += [Outcome(a, False, str(exc)) for a in plan.env_actions]
    return tuple(outcomes), written


def _pip(run: _Run, action: Action) -> Outcome:
    from kmx_tune.install.pip import run_pip

    assert run.plan.python is not None
    pip = run_pip(run.plan.python, list(action.args), run.out)
    if pip.ok:
        return Outcome(action, True, "done")
    return Outcome(action, False, f"pip failed: {pip.error_line()}")


def _ensurepip(run: _Run, action: Action) -> Outcome:
    assert run.plan.python is not None
    try:
        proc = subprocess.run(
            [run.plan.python, "-m", "ensurepip", "--upgrade"],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError as exc:
        return Outcome(action, False, f"cannot run {run.plan.python} ({exc.strerror or exc})")
    if proc.returncode == 0:
        return Outcome(action, True, "done")
    lines = [line for line in (proc.stderr or proc.stdout).splitlines() if line.strip()]
    return Outcome(action, False, lines[-1] if lines else f"exit status {proc.returncode}")


def _install_mxnet(run: _Run, action: Action) -> Outcome:
    from kmx_tune.install.pip import PipOptions
    from kmx_tune.install.workflow import PlanResult, Request, install_mxnet
    from kmx_tune.target import Target

    assert run.plan.python is not None
    given: dict[str, str] = {}
    words = list(action.args)
    while words:
        name = words.pop(0)
        if _INSTALL_OPTIONS[name]:
            given[name] = words.pop(0)
    request = Request(
        flavor=given.get("--flavor"),
        version=given.get("--version"),
        cpu_only="--cpu" in action.args,
        cuda_libs=given.get("--cuda-libs", "auto"),
    )
    # --hardware names the profile doctor was given: run.hw is that profile
    target = Target(run.plan.python)
    result = install_mxnet(target, run.hw, request, PipOptions(), out=run.out, log=run.log)
    if isinstance(result, PlanResult):  # not a dry run: cannot happen
        return Outcome(action, False, "nothing was installed")
    if result.outcome == "installed":
        return Outcome(action, True, f"installed {result.plan.requirement}")
    why = result.failure or result.outcome
    if result.outcome == "rolled-back":
        return Outcome(action, False, f"{why}; rolled back: the environment is as it was")
    return Outcome(action, False, f"{why}; {result.rollback_problem or 'rollback incomplete'}")


def _restore(run: _Run, action: Action) -> Outcome:
    from kmx_tune.install.workflow import restore
    from kmx_tune.target import Target

    assert run.plan.python is not None
    result = restore(Target(run.plan.python), out=run.out, log=run.log)
    if result.exit_code == 0:
        return Outcome(action, True, "put back what the interrupted install had changed")
    left = f"; run {result.restore} again" if result.restore else ""
    return Outcome(action, False, f"the restore is not complete ({result.outcome}){left}")


def _set_format(run: _Run, action: Action) -> Outcome:
    from kmx_tune.keras_config import set_format

    result = set_format("channels_first", env=run.env)
    if not result.changed:
        return Outcome(action, True, f"{result.path} is already channels_first")
    backup = f" (previous version in {result.backup})" if result.backup else ""
    return Outcome(action, True, f"wrote {result.path}{backup}")


_APPLY: dict[str, Callable[[_Run, Action], Outcome]] = {
    "ensurepip": _ensurepip,
    "pip-itself": _pip,
    "pip": _pip,
    "numpy": _pip,
    "restore": _restore,
    "install-mxnet": _install_mxnet,
    "set-format": _set_format,
}
