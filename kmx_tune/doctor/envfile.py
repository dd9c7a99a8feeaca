"""The environment snippet ``doctor --fix`` writes: variables a child process cannot set
in the user's shell go into a file the user sources (``. FILE``), merged with what the
file says already, written atomically."""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path

from kmx_tune.errors import KmxError


def default_env_file(env: Mapping[str, str] | None = None) -> Path:
    """$XDG_CONFIG_HOME/kmx-tune/env.sh, else ~/.config/kmx-tune/env.sh."""
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME") or os.path.join(
        env.get("HOME") or os.path.expanduser("~"), ".config"
    )
    return Path(base) / "kmx-tune" / "env.sh"


def snippet_text(old: str, settings: Sequence[tuple[str, ...]], path: Path) -> str:
    """The env snippet with *settings* (("export", NAME, VALUE) / ("unset", NAME)) merged
    into what the file says already: a variable set before keeps its line, updated;
    new ones are added; lines kmx-tune did not write are kept as they are."""
    header = [
        "# Environment variables recommended by `kmx-tune doctor --fix` for this machine.",
        "# Load them in your shell or job script:  . " + shlex.quote(str(path)),
    ]
    lines = old.splitlines() if old.strip() else header
    wanted = {s[1]: s for s in settings}
    out: list[str] = []
    for line in lines:
        words = line.split(maxsplit=1)
        name = ""
        if len(words) == 2 and words[0] == "export":
            name = words[1].partition("=")[0]
        elif len(words) == 2 and words[0] == "unset":
            name = words[1].strip()
        if name in wanted:
            out.append(_line(wanted.pop(name)))
        else:
            out.append(line)
    out += [_line(s) for s in wanted.values()]
    return "\n".join(out) + "\n"


def _line(setting: tuple[str, ...]) -> str:
    if setting[0] == "export":
        return f"export {setting[1]}={shlex.quote(setting[2])}"
    return f"unset {setting[1]}"


def write_env_file(path: Path, settings: Sequence[tuple[str, ...]]) -> None:
    """Merge *settings* into the snippet at *path*, atomically."""
    from kmx_tune.fsio import atomic_write

    try:
        old = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        old = ""
    except (OSError, UnicodeError) as exc:
        raise KmxError(f"cannot read {path} ({exc}); give another file with --env-file") from None
    text = snippet_text(old, settings, path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, text.encode("utf-8"))
    except OSError as exc:
        raise KmxError(
            f"cannot write {path} ({exc.strerror or exc}); give another file with --env-file"
        ) from None


def env_with(env: Mapping[str, str], settings: Sequence[tuple[str, ...]]) -> dict[str, str]:
    """*env* as it is once the snippet is sourced."""
    result = dict(env)
    for setting in settings:
        if setting[0] == "export":
            result[setting[1]] = setting[2]
        else:
            result.pop(setting[1], None)
    return result
