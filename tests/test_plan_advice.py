"""install-mxnet's plan from the advice: the candidates in order, the CUDA libraries in
the requirements, the environment MXNet must run with; every profile gets the same
answer from probe, doctor and install-mxnet --dry-run --json; and (network tier) the
complete install resolved with the target's own pip, keeping the first candidate that
resolves."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from kmx_tune.errors import KmxError, UsageError
from kmx_tune.hardware import load_profile
from kmx_tune.install.availability import check_available
from kmx_tune.install.pip import NotServedError, PipOptions
from kmx_tune.install.plan import plan_install
from kmx_tune.target import Target
from tests.cli import kmx, kmx_json
from tests.hwfakes import profile_path
from tests.test_cuda_libs import target_with
from tests.venvs import pyenv_python

PY = sys.executable
SYNTHETIC = sorted(
    p.stem for p in (Path(__file__).parent / "fixtures/hardware/synthetic").glob("*.json")
)


def hw(name: str):  # noqa: ANN201 -- a HardwareProfile
    return load_profile(profile_path(name))


# ------------------------------------------------------------------ the plan (pure)


def test_a_cuda_plan_lists_the_nvidia_wheels_and_the_wiring_and_its_fallbacks() -> None:
    plan = plan_install(target_with(("numpy", "1.23.5")), hw("rtx3090-driver-535"))
    assert plan.requirements[:2] == ("mxnet-cu117==1.9.1", "numpy<1.24")
    assert "nvidia-cudnn-cu11==8.9.6.50" in plan.requirements
    assert plan.requirements[-1] == "kmx-mxnet-cuda-libs==1.0+cu117"
    assert plan.cuda_libs is not None and plan.cuda_libs.mode == "pip"
    assert [p.package for p in plan.alternatives][:2] == ["mxnet-cu116", "mxnet-cu115"]
    assert plan.alternatives[0].reasons[0].startswith("fallback: mxnet-cu116 1.9.1")
    data = plan.to_json()
    assert data["cuda_libs"]["packages"] == list(plan.cuda_libs.packages)
    assert data["fallbacks"][0] == "mxnet-cu116==1.9.1" and data["environment"] == {}


def test_a_system_libraries_plan_says_what_the_system_must_provide() -> None:
    plan = plan_install(target_with(), hw("a100-driver-450.80"))
    assert plan.requirements == ("mxnet-cu110==1.9.1", "numpy<1.24")
    assert any(
        r.startswith("the system must provide: CUDA 11.0 runtime libraries") for r in plan.reasons
    )
    assert any("libnvrtc.so.11.0" in r for r in plan.reasons)
    with pytest.raises(
        UsageError,
        match=r"no pip wheel with libcusolver.so.10, libnvrtc.so.11.0, which mxnet-cu110",
    ):
        plan_install(target_with(), hw("a100-driver-450.80"), cuda_libs="pip")


def test_a_flavor_forced_past_the_drivers_cuda_turns_fusion_off() -> None:
    plan = plan_install(target_with(), hw("a100-driver-450.80"), flavor="mxnet-cu117")
    assert plan.environment == {"MXNET_USE_FUSION": "0"}
    assert any("minor-version compatibility" in w for w in plan.warnings)
    assert plan.cuda_libs is not None and plan.cuda_libs.wiring_version.endswith(".nofusion")


def test_nothing_installable_is_an_error_before_anything_changes() -> None:
    with pytest.raises(KmxError, match="nothing installable: no MXNet wheel runs on macOS arm64"):
        plan_install(target_with(), hw("mac-arm64"))


def test_an_old_wiring_goes_with_the_flavor() -> None:
    there = target_with(("mxnet-cu112", "1.9.1"), ("kmx-mxnet-cuda-libs", "1.0+cu112"))
    plan = plan_install(there, hw("epyc-no-gpu"))
    assert {d.name for d in plan.uninstall} == {"mxnet-cu112", "kmx-mxnet-cuda-libs"}
    kept = plan_install(
        target_with(("kmx-mxnet-cuda-libs", "1.0+cu112")),
        hw("rtx3090-driver-535"),
        flavor="mxnet-cu112",
    )
    assert "kmx-mxnet-cuda-libs" not in {d.name for d in kept.uninstall}


# -------------------------------------- one answer per profile: probe, doctor, install


@pytest.mark.parametrize("profile", SYNTHETIC)
def test_probe_and_doctor_give_the_same_answer(profile: str) -> None:
    file = str(profile_path(profile))
    code, doctor = kmx_json("doctor", "--python", PY, "--hardware", file)
    assert code in (0, 1)
    rec = doctor["recommendation"]
    probe = kmx("probe", "--python", PY, "--hardware", file).stdout
    py = f"Python {sys.version_info[0]}.{sys.version_info[1]}"
    if rec["installable"]:
        assert f"MXNet for this box ({py}): {rec['package']} {rec['version']}" in probe
    else:
        assert f"MXNet for this box ({py}): none" in probe
    for reason in rec["reasons"]:
        assert reason in probe


LINUX_PROFILES = [
    p
    for p in SYNTHETIC
    if load_profile(profile_path(p)).os == "linux"
    and load_profile(profile_path(p)).arch == "x86_64"
]


@pytest.mark.network
@pytest.mark.parametrize("profile", LINUX_PROFILES)
def test_install_dry_run_gives_the_same_answer_as_doctor(profile: str) -> None:
    """The libraries come from the system here so that pip resolves only MXNet and numpy
    (the package chosen does not depend on where the libraries come from)."""
    file = str(profile_path(profile))
    _, doctor = kmx_json("doctor", "--python", PY, "--hardware", file)
    result = kmx(
        "install-mxnet",
        "--python",
        PY,
        "--hardware",
        file,
        "--dry-run",
        "--json",
        "--cuda-libs",
        "system",
    )
    assert result.exit_code == 0, result.stderr
    plan = json.loads(result.stdout)
    rec = doctor["recommendation"]
    assert (plan["package"], plan["version"]) == (rec["package"], rec["version"])
    assert plan["resolution"]["ok"] and plan["resolution"]["installs"]


# --------------------------------------------------- the whole install, resolved by pip


@pytest.mark.network
def test_a_release_whose_numpy_pin_has_no_wheel_for_this_python_is_refused() -> None:
    """Issue 11.2: mxnet-cu91 1.2.1.post1 requires numpy<1.15, which has no wheel for
    Python 3.8+; checking numpy<1.24 alone passed, the install then built numpy."""
    err = kmx(
        "install-mxnet",
        "--python",
        PY,
        "--hardware",
        str(profile_path("gtx1080-driver-390")),
        "--flavor",
        "mxnet-cu91",
        "--dry-run",
        "--cuda-libs",
        "system",
    ).stderr
    assert err.startswith("Error: ") and err.count("\n") == 1
    assert "mxnet-cu91==1.2.1.post1" in err and "numpy" in err


@pytest.mark.network
def test_on_python_37_the_cuda_75_box_gets_cu75_resolved_by_its_own_pip() -> None:
    python = pyenv_python("3.7")
    result = kmx(
        "install-mxnet",
        "--python",
        str(python),
        "--hardware",
        str(profile_path("gtx980-driver-352")),
        "--dry-run",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    plan = json.loads(result.stdout)
    assert (plan["package"], plan["version"]) == ("mxnet-cu75", "1.2.1.post1")
    assert plan["resolution"]["ok"]
    numpy = [i["version"] for i in plan["resolution"]["installs"] if i["name"] == "numpy"]
    assert numpy and tuple(int(x) for x in numpy[0].split(".")[:2]) < (1, 15)


def _fake_wheel(folder: Path, name: str, version: str) -> Path:
    """A wheel that only declares mxnet's own requirement: what the resolver sees."""
    dist = name.replace("-", "_")
    path = folder / f"{dist}-{version}-py3-none-manylinux2014_x86_64.whl"
    info = f"{dist}-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(
            f"{info}/METADATA",
            f"Metadata-Version: 2.1\nName: {name}\nVersion: "
            f"{version}\nRequires-Dist: numpy<2.0.0,>1.16.0\n",
        )
        archive.writestr(
            f"{info}/WHEEL",
            "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-manylinux2014_x86_64\n",
        )
        archive.writestr(f"{info}/RECORD", "")
    return path


@pytest.mark.network
def test_the_first_candidate_that_resolves_is_kept_and_the_skipped_ones_are_named(
    tmp_path: Path,
) -> None:
    """A folder of wheels that has mxnet-cu116 but not cu117: the plan is cu116, and it
    says why cu117 was skipped (pip's own reason)."""
    subprocess.run(
        [PY, "-m", "pip", "download", "-q", "--no-deps", "numpy==1.23.5", "-d", str(tmp_path)],
        check=True,
    )
    _fake_wheel(tmp_path, "mxnet-cu116", "1.9.1")
    facts = Target.find(PY).facts()
    plan = plan_install(facts, hw("rtx3090-driver-535"), cuda_libs="system")
    chosen = check_available(plan, PipOptions(find_links=(str(tmp_path),), no_index=True))
    assert chosen.requirement == "mxnet-cu116==1.9.1"
    assert any(
        r.startswith("mxnet-cu117==1.9.1 was skipped: no mxnet-cu117 wheel") for r in chosen.reasons
    )
    assert any(
        "does not install here; mxnet-cu116==1.9.1 is the next" in w for w in chosen.warnings
    )
    assert chosen.resolution is not None and chosen.resolution.version_of("mxnet-cu116") == "1.9.1"
    with pytest.raises(NotServedError, match="no mxnet-cu117 wheel"):
        check_available(
            plan_install(facts, hw("rtx3090-driver-535"), flavor="mxnet-cu117", cuda_libs="system"),
            PipOptions(find_links=(str(tmp_path),), no_index=True),
        )


@pytest.mark.parametrize(
    ("field", "value", "refused"),
    [
        ("cuda_driver_version", "twelve", True),
        ("driver_version", "x.y", True),
        ("compute_capability", "99.9", False),
        ("compute_capability", "-1.5", True),
    ],
)
def test_a_hand_edited_profile_gets_advice_or_one_line_not_a_traceback(
    tmp_path: Path, field: str, value: str, refused: bool
) -> None:
    """A value that is a number, even an unknown one, gets advice; one that is not (or a
    negative compute capability) is refused in one line naming the field (review C4)."""
    data = json.loads(profile_path("rtx3090-driver-535").read_text())
    if field == "compute_capability":
        data["gpus"][0][field] = value
    else:
        data["nvidia"][field] = value
    box = tmp_path / "box.json"
    box.write_text(json.dumps(data))
    probe = kmx("probe", "--hardware", str(box))  # kmx() fails on a traceback
    code, report = kmx_json("doctor", "--python", PY, "--hardware", str(box))
    if refused:
        assert probe.exit_code == code == 2
        assert field in probe.stderr and probe.stderr.count("\n") == 1
    else:
        assert probe.exit_code == 0
        assert code in (0, 1) and report["recommendation"]["package"]
