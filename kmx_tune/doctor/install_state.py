"""Check for an ``install-mxnet`` that was interrupted after it changed the target (a
kill -9, a power cut): its journal says what was there before, and ``install-mxnet
--restore`` puts it back. Silent when there is none."""

from __future__ import annotations

from collections.abc import Iterator

from kmx_tune.doctor.model import FAIL, WARN, Context, Finding
from kmx_tune.errors import KmxError
from kmx_tune.install import journal


def check_interrupted_install(ctx: Context) -> Iterator[Finding]:
    try:
        found = journal.find(ctx.target.prefix)
    except KmxError as exc:  # a damaged journal: say so, with what it says to do
        yield Finding("install", FAIL, "an install-mxnet journal cannot be read", str(exc))
        return
    if found is None:
        return
    j = found.journal
    if found.running:
        yield Finding(
            "install",
            WARN,
            "kmx-tune install-mxnet is changing this environment now",
            f"detected: {j.describe()}; the other findings may change when it ends",
        )
        return
    yield Finding(
        "install",
        FAIL,
        "an interrupted kmx-tune install-mxnet left this environment half-changed",
        f"detected: its journal {j.folder / journal.JOURNAL}: {j.describe()}; the way back "
        f"(a wheel of everything it changes) is kept in {j.kit}",
        journal.restore_command(ctx.python),
    )
