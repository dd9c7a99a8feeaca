"""The installer's pure parts: the plan, judging a verify report, the rollback diff."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from kmx_tune.dists import Distribution
from kmx_tune.install.pip import PipOptions, PipRun
from kmx_tune.install.plan import InstallPlan, expects_mkldnn, make_plan
from kmx_tune.install.transaction import diff
from kmx_tune.install.verify import judge
from kmx_tune.target import KerasFacts, TargetInfo

SITE = "/venv/lib/python3.11/site-packages"


def target_with(*dists: tuple[str, str]) -> TargetInfo:
    return TargetInfo(
        python="/venv/bin/python",
        executable="/venv/bin/python",
        version=(3, 11, 7),
        implementation="CPython",
        platform="linux",
        machine="x86_64",
        prefix="/venv",
        in_venv=True,
        distributions={name.lower(): Distribution(name, version, SITE) for name, version in dists},
        has_pip=True,
        keras=KerasFacts(None, False),
    )


def plan_for(package: str = "mxnet", version: str = "1.9.1", **kw: Any) -> InstallPlan:
    return make_plan(
        target_with(*kw.pop("dists", ())),
        package=package,
        version=version,
        requirements=(f"{package}=={version}", "numpy<1.24"),
        **kw,
    )


def good_report(**over: Any) -> dict[str, Any]:
    report: dict[str, Any] = {
        "import_error": None,
        "mxnet_version": "1.9.1",
        "mxnet_file": f"{SITE}/mxnet/__init__.py",
        "numpy_version": "1.23.5",
        "features": {"CUDA": False, "MKLDNN": True},
        "cpu_op": 8.0,
        "num_gpus": None,
        "gpu_op": None,
    }
    report.update(over)
    return report


def installed(*dists: tuple[str, str]) -> dict[str, Distribution]:
    return {name.lower(): Distribution(name, version, SITE) for name, version in dists}


def test_every_other_mxnet_flavor_is_uninstalled_first() -> None:
    plan = plan_for(
        dists=[
            ("mxnet-native", "1.8.0.post0"),
            ("mxnet-cu117", "1.9.1"),
            ("numpy", "1.23.5"),
            ("mxnet-model-server", "1.0"),
        ]
    )
    assert sorted(d.name for d in plan.uninstall) == ["mxnet-cu117", "mxnet-native"]
    assert plan.to_json()["uninstall"] == [
        {"name": "mxnet-cu117", "version": "1.9.1"},
        {"name": "mxnet-native", "version": "1.8.0.post0"},
    ]


def test_the_same_package_at_another_version_is_upgraded_not_uninstalled() -> None:
    plan = plan_for(dists=[("mxnet", "1.8.0")])
    assert plan.uninstall == ()
    assert [d.requirement for d in plan.installed] == ["mxnet==1.8.0"]


def test_plan_json_has_the_documented_keys() -> None:
    data = plan_for(reasons=["r"], warnings=["w"]).to_json()
    assert {"package", "version", "requirements", "uninstall", "reasons", "warnings"} <= set(data)
    assert data["requirements"] == ["mxnet==1.9.1", "numpy<1.24"]


def test_pip_options_pass_through_in_pip_syntax() -> None:
    opts = PipOptions("https://idx/simple", ("https://a", "https://b"), ("/wheels",), True)
    assert opts.args() == [
        "--index-url", "https://idx/simple",
        "--extra-index-url", "https://a",
        "--extra-index-url", "https://b",
        "--find-links", "/wheels",
        "--no-index",
    ]  # fmt: skip
    assert PipOptions().args() == []


def test_pip_error_line_is_pips_last_error() -> None:
    run = PipRun((), 1, "Collecting x\nERROR: Could not find a version\nERROR: No matching x\n")
    assert run.error_line() == "No matching x"


def test_a_healthy_report_passes() -> None:
    v = judge(plan_for(expect_mkldnn=True), good_report(), installed(("mxnet", "1.9.1")))
    assert v.ok, v.problems


def test_wheel_post_release_matches_the_version_mxnet_reports() -> None:
    plan = plan_for("mxnet-native", "1.8.0.post0")
    report = good_report(mxnet_version="1.8.0", features={"CUDA": False, "MKLDNN": False})
    assert judge(plan, report, installed(("mxnet-native", "1.8.0.post0"))).ok


def test_a_failed_import_names_a_set_mxnet_library_path() -> None:
    report = good_report(import_error="OSError: file too short", library_path="/tmp/stale.so")
    v = judge(plan_for(), report, installed(("mxnet", "1.9.1")))
    assert any("MXNET_LIBRARY_PATH=/tmp/stale.so is set" in p for p in v.problems), v.problems


@pytest.mark.parametrize(
    ("over", "problem"),
    [
        ({"import_error": "OSError: bad ELF"}, "import mxnet failed: OSError: bad ELF"),
        ({"mxnet_version": "1.8.0"}, "import mxnet gave version 1.8.0"),
        ({"mxnet_file": "/elsewhere/mxnet/__init__.py"}, "check PYTHONPATH"),
        ({"features": {"CUDA": False, "MKLDNN": False}}, "no MKLDNN"),
        ({"features": None, "features_error": "AttributeError"}, "Features() failed"),
        ({"cpu_op": None, "cpu_op_error": "MXNetError: x"}, "operation on cpu failed"),
    ],
)
def test_each_failed_check_is_named(over: dict[str, Any], problem: str) -> None:
    v = judge(plan_for(expect_mkldnn=True), good_report(**over), installed(("mxnet", "1.9.1")))
    assert not v.ok
    assert any(problem in p for p in v.problems), v.problems


def test_two_mxnet_distributions_after_install_fail_verification() -> None:
    both = installed(("mxnet", "1.9.1"), ("mxnet-native", "1.8.0.post0"))
    v = judge(plan_for(), good_report(), both)
    assert not v.ok
    assert "expected mxnet==1.9.1 only" in v.problems[0]


@pytest.mark.parametrize(
    ("over", "problem"),
    [
        ({"features": {"CUDA": False, "MKLDNN": True}}, "no CUDA"),
        ({"num_gpus": 0}, "MXNet sees no GPU"),
        ({"num_gpus_error": "MXNetError: CUDA driver"}, "num_gpus() failed"),
        ({"gpu_op_error": "no kernel image is available"}, "gpu(0) failed: no kernel image"),
    ],
)
def test_a_gpu_flavor_must_see_and_use_a_gpu(over: dict[str, Any], problem: str) -> None:
    report = good_report(features={"CUDA": True, "MKLDNN": True}, num_gpus=1, gpu_op=8.0)
    plan = plan_for("mxnet-cu117", gpu=True)
    assert judge(plan, report, installed(("mxnet-cu117", "1.9.1"))).ok
    report.update(over)
    if "gpu_op_error" in over:
        report["gpu_op"] = None  # the script reports one or the other
    v = judge(plan, report, installed(("mxnet-cu117", "1.9.1")))
    assert any(problem in p for p in v.problems), v.problems


def test_diff_names_added_removed_and_changed() -> None:
    before = installed(("mxnet-native", "1.8.0.post0"), ("numpy", "1.23.5"), ("idna", "3.0"))
    after = installed(("mxnet", "1.9.1"), ("numpy", "1.23.4"), ("idna", "3.0"))
    assert [c.describe() for c in diff(before, after)] == [
        "+ mxnet 1.9.1",
        "- mxnet-native 1.8.0.post0",
        "~ numpy 1.23.5 -> 1.23.4",
    ]


@pytest.mark.parametrize(
    ("mkl", "onednn", "version", "expected"),
    [
        (False, True, "1.9.1", True),  # plain mxnet: MKL-DNN built in from 1.7.0
        (False, True, "1.6.0", False),
        (True, True, "1.6.0", True),  # mxnet-mkl, mxnet-cu101mkl
        (False, False, "1.8.0.post0", False),  # mxnet-native
    ],
)
def test_when_mkldnn_is_expected(mkl: bool, onednn: bool, version: str, expected: bool) -> None:
    assert expects_mkldnn(mkl, onednn, version) is expected


def test_verify_script_reports_a_missing_mxnet_as_json(tmp_path: Any) -> None:
    """The in-target script runs in this interpreter (no mxnet here) and still answers."""
    from kmx_tune.target import Target

    report = Target(sys.executable).run_json("kmx_verify_mxnet.py")
    assert report["import_error"].startswith(("ModuleNotFoundError", "ImportError"))
    assert report["mxnet_version"] is None


def test_with_another_flavor_present_the_chosen_one_is_reinstalled_too() -> None:
    """Uninstalling mxnet-native deletes the files it shares with mxnet (the same
    `mxnet` module): pip would call mxnet 1.9.1 "already satisfied" and leave a
    broken module, so the plan removes every MXNet distribution and installs afresh."""
    plan = plan_for(dists=[("mxnet", "1.9.1"), ("mxnet-native", "1.8.0.post0")])
    assert [d.name for d in plan.uninstall] == ["mxnet", "mxnet-native"]


def test_an_mxnet_folder_without_init_is_named_as_such() -> None:
    """A half-deleted mxnet folder imports as a namespace package: no version, no file."""
    report = good_report(mxnet_version=None, mxnet_file=None, features=None)
    report["features_error"] = "AttributeError: module 'mxnet' has no attribute 'runtime'"
    v = judge(plan_for(), report, installed(("mxnet", "1.9.1")))
    assert not v.ok
    assert v.problems[0].startswith("import mxnet found a folder without __init__.py")
    assert not any("found , not" in p or "version ?" in p for p in v.problems)


def test_a_short_version_matches_what_pip_installs_for_it() -> None:
    """--version 1.9 asks pip for mxnet==1.9, which PEP 440 matches to 1.9.0."""
    plan = plan_for(version="1.9")
    v = judge(plan, good_report(mxnet_version="1.9.0"), installed(("mxnet", "1.9.0")))
    assert v.ok, v.problems
