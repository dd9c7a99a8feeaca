"""The installer for real: real venvs, the target's own pip, real MXNet wheels.

The verification failure is a real one, not a test hook: MXNET_LIBRARY_PATH naming an
existing file that is not a shared library makes mxnet's libinfo hand that file to
ctypes, and ``import mxnet`` fails with "OSError: ...: file too short". pip does not
import mxnet, so only the verify step sees it -- as a user with a stale
MXNET_LIBRARY_PATH in their shell would.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kmx_tune.installer import (
    NotServedError,
    OfflineError,
    PipOptions,
    check_available,
    execute,
    make_plan,
)
from kmx_tune.target import inspect_target
from tests.venvs import make_venv, pip_freeze

pytestmark = pytest.mark.integration

NATIVE = ["mxnet-native==1.8.0.post0", "numpy==1.23.5"]


def plan_191(python: Path):  # type: ignore[no-untyped-def]
    return make_plan(
        inspect_target(python),
        package="mxnet",
        version="1.9.1",
        requirements=("mxnet==1.9.1", "numpy<1.24"),
        expect_mkldnn=True,
    )


def test_fresh_venv_gets_a_working_mxnet_191(tmp_path: Path) -> None:
    python = make_venv(tmp_path / "v")
    plan = plan_191(python)
    check_available(plan, PipOptions())
    result = execute(plan, PipOptions())
    assert result.outcome == "installed", result.failure
    assert result.verification is not None and result.verification.features is not None
    assert result.verification.features["MKLDNN"] is True
    out = subprocess.run(
        [str(python), "-c", "import mxnet, numpy; print(mxnet.__version__, numpy.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out[0] == "1.9.1"
    assert tuple(int(p) for p in out[1].split(".")[:2]) < (1, 24)


def test_switch_from_native_leaves_exactly_one_mxnet(tmp_path: Path) -> None:
    python = make_venv(tmp_path / "v", NATIVE)
    plan = plan_191(python)
    assert [d.name for d in plan.uninstall] == ["mxnet-native"]
    result = execute(plan, PipOptions())
    assert result.outcome == "installed", result.failure
    mx = {k: v for k, v in pip_freeze(python).items() if k.startswith("mxnet")}
    assert mx == {"mxnet": "1.9.1"}
    assert {c.describe() for c in result.changes} == {"- mxnet-native 1.8.0.post0", "+ mxnet 1.9.1"}


def test_failed_verification_rolls_back_to_the_previous_flavor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    python = make_venv(tmp_path / "v", NATIVE)
    before = pip_freeze(python)
    not_a_library = tmp_path / "libmxnet.so"
    not_a_library.write_text("not a shared library\n")
    monkeypatch.setenv("MXNET_LIBRARY_PATH", str(not_a_library))

    result = execute(plan_191(python), PipOptions())

    assert result.outcome == "rolled-back"
    assert result.failure is not None and "import mxnet failed" in result.failure
    assert result.changes == ()  # nothing differs from before
    after = pip_freeze(python)
    assert after == before
    assert after["mxnet-native"] == "1.8.0.post0"
    assert "mxnet" not in after


def test_a_version_not_served_is_refused_with_the_served_ones() -> None:
    plan = make_plan(
        inspect_target(sys.executable),
        package="mxnet",
        version="1.9.2",
        requirements=("mxnet==1.9.2", "numpy<1.24"),
    )
    with pytest.raises(
        NotServedError, match=r"mxnet==1.9.2 is not served for Python 3\.\d+.*1\.9\.1"
    ):
        check_available(plan, PipOptions())


def test_no_index_is_reported_as_offline_with_the_find_links_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PIP_RETRIES", "0")  # the user's pip configuration applies
    plan = plan_191(Path(sys.executable))
    # nothing listens on port 9 (discard): pip cannot connect
    with pytest.raises(OfflineError, match=r"offline.*--no-index --find-links DIR"):
        check_available(plan, PipOptions(index_url="http://127.0.0.1:9/simple"))


def test_an_empty_wheel_folder_serves_nothing(tmp_path: Path) -> None:
    plan = plan_191(Path(sys.executable))
    with pytest.raises(NotServedError, match="mxnet has no release for Python"):
        check_available(plan, PipOptions(find_links=(str(tmp_path),), no_index=True))
