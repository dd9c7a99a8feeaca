"""``kmx-tune migrate``: the click command. The work is in kmx_tune.migrate."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from kmx_tune.formats import CHANNELS_FIRST, FORMATS
from kmx_tune.options import json_option

if TYPE_CHECKING:
    from kmx_tune.migrate import FileReport, MigrationResult


@click.command("migrate")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--to",
    "to",
    type=click.Choice(FORMATS),
    default=CHANNELS_FIRST,
    show_default=True,
    help="The image layout to migrate the code to.",
)
@click.option("--diff", "show_diff", is_flag=True, help="Print a unified diff of the rewrites.")
@click.option("--write", is_flag=True, help="Apply the rewrites in place (atomically per file).")
@json_option
def migrate(paths: tuple[Path, ...], to: str, show_diff: bool, write: bool, as_json: bool) -> None:
    """Find and rewrite channels_last assumptions in Keras model code.

    PATHS are .py files or folders of them. Each finding is printed as
    `file:line:col: CODE message`; "[not rewritten: ...]" marks one that needs a
    human. Code guarded by `if K.image_data_format() == ...` and shapes computed
    from data (`x_train.shape[1:]`) are left alone. Files that do not parse are
    reported as E999 and never rewritten. Data files the code loads (np.load,
    HDF5Matrix) and the keras.json in effect are checked against the layout too;
    `# noqa: CODE` on a line silences a finding that is reported only.

    Exit status: 0 no findings; 1 findings (with --write: findings that could not
    be rewritten, or files that did not parse); 2 usage error.

    \b
    Example:
      kmx-tune migrate model.py                  # report
      kmx-tune migrate --diff src/               # show the rewrite
      kmx-tune migrate --write src/              # apply it
      kmx-tune migrate --to channels_last --write src/   # and back again
    """
    from kmx_tune.errors import UsageError
    from kmx_tune.migrate import migrate_paths
    from kmx_tune.render import finish

    if as_json and show_diff:
        raise UsageError("--json and --diff cannot be combined; pick one.")
    from kmx_tune import keras_config

    result = migrate_paths(list(paths), to, write=write, keras_json=keras_config.read())
    finish(result, as_json, lambda r: render_text(r, show_diff))


def diff_text(report: FileReport, *, terminal: bool) -> str:
    """The unified diff of *report*: exact when it goes to a file or a pipe (a patch
    that applies), with control characters escaped when it goes to a terminal."""
    from kmx_tune.render import safe

    text = report.diff()
    return safe(text) if terminal else text


def render_text(result: MigrationResult, show_diff: bool) -> None:
    """The diff (with --diff), one line per finding not fixed on disk (without --diff,
    or with --write), and on stderr the files skipped or not written and a summary."""
    import sys

    from kmx_tune.render import safe

    if show_diff:
        terminal = sys.stdout.isatty()
        for report in result.files:
            if report.changed:
                click.echo(diff_text(report, terminal=terminal), nl=False)
    if not show_diff or result.write:
        for f in result.findings:
            if not any(fr.is_fixed(f) for fr in result.files if fr.path == f.path):
                click.echo(f"{safe(f.path)}:{f.line}:{f.col}: {f.code} {safe(f.message)}")
    for skipped in result.skipped:
        click.echo(f"Skipped {safe(skipped.path)}: {safe(skipped.reason)}", err=True)
    for report in result.not_written:
        click.echo(f"Not written: {safe(report.path)} {safe(report.not_written)}", err=True)
    click.echo(_summary(result), err=True)


def _summary(result: MigrationResult) -> str:
    files = len(result.files)
    total = len(result.findings)
    if result.write:
        summary = (
            f"Fixed {result.fixed_count} finding(s) in {result.files_written} file(s) for "
            f"{result.to}; {result.remaining_count} left to fix by hand ({files} file(s) checked)."
        )
        if result.not_written:
            summary += f" {len(result.not_written)} file(s) changed meanwhile were not written."
        return summary
    if total == 0:
        return f"No findings: {files} file(s) ready for {result.to}."
    return (
        f"Found {total} finding(s) in {files} file(s) checked; {result.fixable_count} can be "
        f"rewritten for {result.to} with --write (see them first with --diff)."
    )
