"""What the safety of `kmx-tune migrate` costs, and what its size bound saves, measured
in one run against the way it worked before, alternating:

- **baseline**: the analysis as it ran before (0.1): each file read whole and analysed
  with libcst in the kmx-tune process itself, no bound, no child process, no CPython
  depth check;
- **now**: ``kmx-tune migrate --json DIR`` as a user runs it: bounded reads, the CPython
  depth check, each file analysed in a forked child, keras.json checked.

Each is a fresh process timed by wall clock, with its peak RSS (children included, from
wait4). Corpora: the real Keras examples in tests/data/migrate copied ``--copies``
times (many small files), and one file at the size bound of real Keras code. With
``--huge``, also a file 4x the bound (refused at once now, analysed by the baseline).

    python benchmarks/bench_migrate.py --rounds 5 --copies 4
    python benchmarks/bench_migrate.py --rounds 3 --huge
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "tests" / "data" / "migrate"

# The analysis as 0.1 ran it: read, parse and walk in one process.
_BASELINE = """
import sys
from pathlib import Path
from kmx_tune.migrate.source import migrate_source
from kmx_tune.migrate.files import iter_python_files
n = 0
for f in iter_python_files([Path(p) for p in sys.argv[1:]]):
    try:
        n += len(migrate_source(f.read_bytes(), "channels_first", str(f)).findings)
    except RecursionError:
        n += 1
print(n)
"""


def _run(args: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(seconds, peak RSS in MB of the process and its children, stdout)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    assert proc.stdout is not None
    out = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return seconds, usage.ru_maxrss / 1024, out


def baseline(paths: list[Path], env: dict[str, str]) -> tuple[float, float, int]:
    seconds, rss, out = _run([sys.executable, "-c", _BASELINE, *map(str, paths)], env)
    return seconds, rss, int(out.strip() or 0)


def now(paths: list[Path], env: dict[str, str]) -> tuple[float, float, int]:
    args = [sys.executable, "-m", "kmx_tune", "migrate", "--json", *map(str, paths)]
    seconds, rss, out = _run(args, env)
    return seconds, rss, len(json.loads(out)["findings"])


def corpus(work: Path, copies: int) -> Path:
    folder = work / "examples"
    for i in range(copies):
        shutil.copytree(EXAMPLES, folder / f"copy{i}", ignore=shutil.ignore_patterns("*.md"))
    return folder


def at_size(work: Path, name: str, size: int) -> Path:
    """A valid file of real Keras example code, *size* bytes or just under."""
    texts = [p.read_bytes() for p in sorted(EXAMPLES.rglob("*.py"))]
    out, total = [], 0
    while total < size:
        for text in texts:
            if total + len(text) > size:
                break
            out.append(text)
            total += len(text)
        else:
            continue
        break
    path = work / name
    path.write_bytes(b"".join(out))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--huge", action="store_true", help="also a file 4x the bound")
    args = parser.parse_args()
    from kmx_tune.migrate import MAX_SOURCE_BYTES

    with tempfile.TemporaryDirectory(prefix="kmx-bench-migrate-") as tmp:
        work = Path(tmp)
        home = work / "keras-home"
        home.mkdir()
        (home / "keras.json").write_text(
            '{"backend": "mxnet", "image_data_format": "channels_first"}'
        )
        env = dict(os.environ, KERAS_HOME=str(home))
        n_examples = len(list(EXAMPLES.rglob("*.py")))
        cases = {
            f"the Keras examples x {args.copies} ({args.copies * n_examples} files)": [
                corpus(work, args.copies)
            ],
            f"one file at the bound ({MAX_SOURCE_BYTES >> 10} KiB of real code)": [
                at_size(work, "at_bound.py", MAX_SOURCE_BYTES)
            ],
        }
        if args.huge:
            cases[f"one file 4x the bound ({4 * MAX_SOURCE_BYTES >> 10} KiB)"] = [
                at_size(work, "huge.py", 4 * MAX_SOURCE_BYTES)
            ]
        print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; {args.rounds} rounds")
        head = ["baseline", "now", "now/base", "RSS base", "RSS now"]
        print(f"{'case':<48} " + " ".join(f"{h:>9}" for h in head) + "  findings")
        for label, paths in cases.items():
            rows: dict[str, list[tuple[float, float, int]]] = {"base": [], "now": []}
            for r in range(args.rounds):
                order = [("base", baseline), ("now", now)]
                for name, method in order if r % 2 == 0 else order[::-1]:
                    rows[name].append(method(paths, env))
            ratio = statistics.median(n[0] / b[0] for b, n in zip(rows["base"], rows["now"]))
            med = {k: statistics.median(x[0] for x in v) for k, v in rows.items()}
            rss = {k: max(x[1] for x in v) for k, v in rows.items()}
            found = f"{rows['base'][0][2]} / {rows['now'][0][2]}"
            print(
                f"{label:<48} {med['base']:>8.2f}s {med['now']:>8.2f}s {ratio:>8.2f}x "
                f"{rss['base']:>7.0f}MB {rss['now']:>7.0f}MB  {found}"
            )


if __name__ == "__main__":
    main()
