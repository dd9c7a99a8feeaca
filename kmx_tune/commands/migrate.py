"""``kmx-tune migrate``: the click command. The work is in kmx_tune.migrate."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from kmx_tune.migrate import MigrationResult


@click.command("migrate")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--to",
    "to",
    type=click.Choice(["channels_first", "channels_last"]),
    default="channels_first",
    show_default=True,
    help="The image layout to migrate the code to.",
)
@click.option("--diff", "show_diff", is_flag=True, help="Print a unified diff of the rewrites.")
@click.option("--write", is_flag=True, help="Apply the rewrites in place (atomically per file).")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def migrate(paths: tuple[Path, ...], to: str, show_diff: bool, write: bool, as_json: bool) -> None:
    """Find and rewrite channels_last assumptions in Keras model code.

    PATHS are .py files or folders of them. Each finding is printed as
    `file:line:col: CODE message`; "[not rewritten: ...]" marks one that needs a
    human. Code guarded by `if K.image_data_format() == ...` and shapes computed
    from data (`x_train.shape[1:]`) are left alone. Files that do not parse are
    reported as E999 and never rewritten.

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
    from kmx_tune.migrate import migrate_paths, write_file
    from kmx_tune.render import emit_json

    if as_json and show_diff:
        raise UsageError("--json and --diff cannot be combined; pick one.")
    result = migrate_paths(list(paths), to)
    written = [fr for fr in result.files if write and write_file(fr)]
    fixed = {id(f) for fr in written for f in fr.findings if f.fixable}
    if as_json:
        emit_json([f.to_json(fixed=id(f) in fixed) for f in result.findings])
    else:
        if show_diff:
            for fr in result.files:
                if fr.changed:
                    click.echo(fr.diff(), nl=False)
        if not show_diff or write:
            for finding in result.findings:
                if write and id(finding) in fixed:
                    continue
                click.echo(
                    f"{finding.path}:{finding.line}:{finding.col}: {finding.code} {finding.message}"
                )
        click.echo(_summary(result, len(written), len(fixed), write), err=True)
    remaining = result.unfixable_count if write else len(result.findings)
    click.get_current_context().exit(1 if remaining else 0)


def _summary(result: MigrationResult, files_written: int, fixed: int, write: bool) -> str:
    files = len(result.files)
    total = len(result.findings)
    if write:
        left = result.unfixable_count
        return (
            f"Fixed {fixed} finding(s) in {files_written} file(s) for {result.to}; "
            f"{left} left to fix by hand ({files} file(s) checked)."
        )
    if total == 0:
        return f"No findings: {files} file(s) ready for {result.to}."
    return (
        f"Found {total} finding(s) in {files} file(s) checked; {result.fixable_count} can be "
        f"rewritten for {result.to} with --write (see them first with --diff)."
    )
