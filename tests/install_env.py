"""Environments and a harness for install transactions: real venvs with real pip,
cloned from a template (a venv is ~7 s to make, a copy ~0.2 s), and kmx-tune run as
a real process that a test can signal at the moment that matters -- right after pip
removed the old flavor's dist-info, as the adversarial review's harness did."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import HARDWARE
from tests.fakewheels import fake_flavor, fake_package

EPYC = HARDWARE / "epyc-no-gpu" / "kmx-profile.json"
NATIVE_DIST_INFO = "mxnet_native-1.8.0.post0.dist-info"


def site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python3*/site-packages"))
    assert found, f"no site-packages in {venv}"
    return found[0]


def clone_venv(template: Path, dest: Path) -> Path:
    """A copy of the venv *template* at *dest*; returns its python. (A venv finds its
    prefix from where its python is, so ``python -m pip`` works in the copy.)"""
    shutil.copytree(template, dest, symlinks=True)
    return dest / "bin" / "python"


def fake_wheel_folder(folder: Path) -> Path:
    """Stand-ins for the MXNet family, small enough to install in a fraction of a
    second: mxnet-native 1.8.0.post0 and mxnet 1.9.1 (both pin graphviz<0.9, as the
    real ones do; mxnet 1.9.1's import fails, so verification fails), graphviz
    0.8.4 and 0.20.1, numpy 1.23.5."""
    fake_flavor(
        folder, "mxnet-native", "1.8.0.post0", module_version="1.8.0",
        requires=["graphviz<0.9.0,>=0.8.1"], modules=150, payload=300_000,
    )  # fmt: skip
    fake_flavor(
        folder, "mxnet", "1.9.1", import_error="libmxnet.so: cannot open shared object file",
        requires=["graphviz<0.9.0,>=0.8.1", "numpy<2.0.0,>1.16.0"], modules=150, payload=300_000,
    )  # fmt: skip
    fake_package(folder, "graphviz", "0.8.4")
    fake_package(folder, "graphviz", "0.20.1")
    fake_package(folder, "numpy", "1.23.5")
    return folder


def template_venv(folder: Path, wheels: Path) -> Path:
    """A venv in *folder* with the stand-in mxnet-native 1.8.0.post0 and numpy 1.23.5
    from the *wheels* folder (offline): copy it per test with :func:`clone_venv`."""
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    run = pip(
        venv / "bin" / "python", "install", "-q", "--no-index", "--find-links", str(wheels),
        "mxnet-native==1.8.0.post0", "numpy==1.23.5",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    return venv


def pip(python: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
    return subprocess.run(
        [str(python), "-m", "pip", *args], capture_output=True, text=True, env=env, check=False
    )


def installed(python: Path) -> dict[str, str]:
    """{normalized name: version} as pip lists them."""
    run = pip(python, "list", "--format=freeze")
    assert run.returncode == 0, run.stderr
    out = {}
    for line in run.stdout.splitlines():
        if "==" in line:
            name, version = line.split("==", 1)
            out[name.lower().replace("_", "-")] = version
    return out


def disk_tree(site: Path) -> dict[str, int]:
    """{relative path: size} of every file in site-packages: "what was there" for the
    disk. (pip's own files are left out: pip compiles its modules as it runs; a .pyc
    counts by name: it holds the path it was compiled at, and venvs here are copies.)"""
    tree = {}
    for folder, _dirs, files in os.walk(site):
        rel = os.path.relpath(folder, site)
        if rel.split(os.sep)[0] in ("pip", "_distutils_hack", "setuptools", "pkg_resources"):
            continue
        for name in files:
            path = os.path.join(folder, name)
            size = 0 if name.endswith(".pyc") else os.lstat(path).st_size
            tree[os.path.join(rel, name)] = size
    return tree


def kmx_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "kmx_tune", *args]


@dataclass
class Running:
    """kmx-tune running as its own process (and process group), its stderr read as
    it comes so that a test can wait for a line."""

    proc: subprocess.Popen[str]
    stderr: list[str] = field(default_factory=list)
    stdout: str = ""
    _reader: threading.Thread | None = None

    @classmethod
    def start(cls, args: list[str], env: dict[str, str] | None = None) -> Running:
        proc = subprocess.Popen(
            kmx_command(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
            start_new_session=True,  # its own group: a signal to it does not reach pytest
        )
        running = cls(proc)

        def read() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                running.stderr.append(line)

        running._reader = threading.Thread(target=read, daemon=True)
        running._reader.start()
        return running

    @property
    def err(self) -> str:
        return "".join(self.stderr)

    def wait_for(self, done: Callable[[], bool], timeout: float = 120.0) -> bool:
        """Poll *done* every half millisecond until it holds; False if the process
        ended (or the time ran out) first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if done():
                return True
            if self.proc.poll() is not None:
                return done()
            time.sleep(0.0005)
        return False

    def signal(self, signum: int, *, group: bool) -> None:
        if group:
            os.killpg(self.proc.pid, signum)
        else:
            os.kill(self.proc.pid, signum)

    def finish(self, timeout: float = 180.0) -> int:
        assert self.proc.stdout is not None
        self.stdout = self.proc.stdout.read()
        code = self.proc.wait(timeout=timeout)
        if self._reader is not None:
            self._reader.join(timeout=10)
        return code


def wait_until_gone(pid: int, timeout: float = 60.0) -> None:
    """Wait until process *pid* (an orphaned pip after a kill -9) has ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} still runs after {timeout} s")


SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM, "SIGHUP": signal.SIGHUP}
