"""The ``kmx-tune`` command group.

Commands are loaded lazily: ``kmx-tune --help`` lists them from the table below
without importing any command module, so it never pays for numpy, rich or py-cpuinfo.
A command module holds the click command; the work happens in the core modules.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, NoReturn

import click

from kmx_tune import __version__
from kmx_tune.errors import KmxError
from kmx_tune.options import json_wanted

# name -> (module, attribute, one-line help shown by `kmx-tune --help`)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "doctor": (
        "kmx_tune.commands.doctor",
        "doctor",
        "Check this Keras-MXNet set-up and print the command that fixes each problem.",
    ),
    "probe": (
        "kmx_tune.commands.probe",
        "probe",
        "Show the CPU and NVIDIA GPUs, or save them as JSON.",
    ),
    "install-mxnet": (
        "kmx_tune.commands.install",
        "install_mxnet",
        "Install the right MXNet flavor into a Python, verify it, roll back on failure.",
    ),
    "set-format": (
        "kmx_tune.commands.keras",
        "set_format",
        "Set image_data_format (and backend) in keras.json, safely.",
    ),
    "config": (
        "kmx_tune.commands.keras",
        "config",
        "Show the keras.json in effect and where each value comes from.",
    ),
    "convert": (
        "kmx_tune.commands.convert",
        "convert",
        "Transpose .npy/.npz image datasets between channels_last and channels_first.",
    ),
    "profile": (
        "kmx_tune.commands.profile",
        "profile",
        "Run a script under the MXNet profiler and show where the time goes.",
    ),
    "bench": (
        "kmx_tune.commands.bench",
        "bench",
        "Measure channels_first against channels_last with the installed MXNet.",
    ),
    "migrate": (
        "kmx_tune.commands.migrate",
        "migrate",
        "Find and rewrite channels_last assumptions in Keras model code.",
    ),
}


class LazyGroup(click.Group):
    """A group that imports a command's module only when that command runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module = importlib.import_module(entry[0])
        command: click.Command = getattr(module, entry[1])
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_) for name, (_, _, help_) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KmxError as exc:
            fail(str(exc), exc.exit_code, json_wanted(ctx), details=exc.details)
        except KeyboardInterrupt:
            fail("Interrupted.", 130, json_wanted(ctx), prefix="")


def fail(
    message: str,
    exit_code: int,
    as_json: bool,
    prefix: str = "Error: ",
    details: dict[str, Any] | None = None,
) -> NoReturn:
    """The error edge: one line on stderr (never a traceback, never raw control
    characters), the same error as JSON on stdout under --json, and the exit status."""
    from kmx_tune.render import safe

    if as_json:
        from kmx_tune.render import emit_json
        from kmx_tune.result import error_json

        emit_json(error_json(message, exit_code, details))
    click.echo(prefix + safe(message, one_line=True), err=True)
    sys.exit(exit_code)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="kmx-tune")
def cli() -> None:
    """Tune a Keras-MXNet training box: the right MXNet wheel, channels_first data
    and config, and an eye on where the time goes.

    \b
    Example:
      kmx-tune doctor                      # what is wrong here, and how to fix it
      kmx-tune doctor --python ~/venvs/old/bin/python
    """


def main(args: list[str] | None = None) -> None:
    """The console script. Click's own usage errors (a missing argument, a bad option
    value) become one line, like every other error, instead of click's usage block."""
    argv = sys.argv[1:] if args is None else args
    try:
        status = cli.main(argv, prog_name="kmx-tune", standalone_mode=False)
    except click.UsageError as exc:
        if exc.ctx is not None and type(exc).__name__ == "NoArgsIsHelpError":
            click.echo(exc.ctx.get_help())  # plain `kmx-tune`: the help, as before click 8.2
            sys.exit(0)
        where = exc.ctx.command_path if exc.ctx is not None else "kmx-tune"
        # --json may not have been parsed yet when the usage error came
        options = argv[: argv.index("--")] if "--" in argv else argv
        fail(
            f"{exc.format_message()} (see '{where} --help')",
            exc.exit_code,
            json_wanted(exc.ctx) or "--json" in options,
        )
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    sys.exit(status if isinstance(status, int) else 0)


if __name__ == "__main__":
    main()
