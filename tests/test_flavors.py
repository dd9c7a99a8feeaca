"""The wheel table and the advisor. Most cases are generated from the table itself (for
every CUDA wheel and every compute capability it carries machine code for, a box with
that GPU and a driver that just meets the wheel's CUDA gets a wheel that runs there);
each numbered point of issue 11 has its own hardware profile in
tests/fixtures/hardware/synthetic/; every audited row is checked against the report
tools/audit_wheels.py wrote from the wheel."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from kmx_tune import versions
from kmx_tune.errors import UsageError
from kmx_tune.flavors import FLAVORS, get_flavor, recommend, requirements_for
from kmx_tune.flavors import gpu as rules
from kmx_tune.flavors.table import (
    LINUX_AARCH64,
    LINUX_X86_64,
    MIN_DRIVER,
    NUMPY_PIN,
    PLATFORM_NAMES,
    WHEELS,
    WINDOWS_X86_64,
    Wheel,
    find_wheel,
)
from kmx_tune.hardware import GpuInfo, HardwareProfile, NvidiaInfo, load_profile
from tests.hwfakes import probe_capture, profile_path

ROOT = Path(__file__).parent.parent
LINUX_GPU = [w for w in WHEELS if w.cuda and w.platform == LINUX_X86_64]
ALL_CAPS = sorted({c for w in LINUX_GPU for c in w.sass}, key=rules.cap)


@pytest.fixture(scope="module")
def base() -> HardwareProfile:
    return load_profile(profile_path("epyc-no-gpu"))


def box(base: HardwareProfile, driver: str, cuda: str, *caps: str, **over: str) -> HardwareProfile:
    gpus = tuple(GpuInfo(i, f"GPU sm_{c}", c, 16384) for i, c in enumerate(caps))
    return replace(base, nvidia=NvidiaInfo(driver, cuda), gpus=gpus, gpu_reason=None, **over)


def synthetic(name: str) -> HardwareProfile:
    return load_profile(profile_path(name))


def row_id(w: Wheel) -> str:
    return f"{w.platform}:{w.name}=={w.version}"


# ------------------------------------------------------------------- the table


@pytest.mark.parametrize("wheel", WHEELS, ids=row_id)
def test_every_row_says_where_it_comes_from(wheel: Wheel) -> None:
    assert "per-platform.txt" in wheel.source
    assert wheel.platform in PLATFORM_NAMES
    assert wheel.python[0] <= wheel.python[1]
    if wheel.cuda:
        assert wheel.sass
        assert wheel.cuda in MIN_DRIVER["linux"] and wheel.cuda in MIN_DRIVER["windows"]
    if wheel.platform == LINUX_X86_64 and wheel.cuda:
        assert wheel.audited and (ROOT / wheel.audited).is_file(), "every Linux GPU row is read"


@pytest.mark.parametrize("wheel", [w for w in WHEELS if w.audited], ids=row_id)
def test_every_read_row_matches_what_the_audit_read_from_the_wheel(wheel: Wheel) -> None:
    report = json.loads((ROOT / wheel.audited).read_text())
    assert (report["name"], report["version"]) == (wheel.name, wheel.version)
    assert list(wheel.sass) == report["sass"]
    assert list(wheel.ptx) == report["ptx"]
    assert sorted(wheel.needs) == sorted(report["cuda_needed"])
    if wheel.ptx:
        assert wheel.ptx_bundles == (report["bundles_with_ptx"], report["bundles"])
    else:
        assert report["bundles_with_ptx"] == 0
    assert report["rpath"] == ["${ORIGIN}"] and report["runpath"] is None


def test_the_whole_family_is_covered() -> None:
    names = {w.name for w in LINUX_GPU}
    assert {f"mxnet-cu{v}" for v in (75, 80, 90, 91, 92, 100, 101, 102)} <= names
    assert {f"mxnet-cu11{m}" for m in range(8)} <= names
    assert {f"mxnet-cu{v}mkl" for v in (75, 80, 90, 91, 92, 100, 101, 102)} <= names
    assert "mxnet-cu110mkl" not in FLAVORS  # not on the index
    assert {"mxnet", "mxnet-mkl", "mxnet-native"} <= set(FLAVORS)


def test_the_guides_flavors_and_its_misspelling() -> None:
    for name in ("mxnet", "mxnet-mkl", "mxnet-cu90", "mxnet-cu90mkl"):
        assert get_flavor(name).name == name
    with pytest.raises(UsageError, match="mxnet-cu90mkl, without the second dash"):
        get_flavor("mxnet-cu90-mkl")
    with pytest.raises(UsageError, match="valid names: mxnet, mxnet-mkl"):
        get_flavor("mxnet-cu999")
    assert get_flavor("MXNet_CU117").name == "mxnet-cu117"


def test_requirements_pin_numpy() -> None:
    assert requirements_for("mxnet", "1.9.1") == ("mxnet==1.9.1", NUMPY_PIN)


def test_the_makefile_builds_carry_their_real_archs_and_ptx() -> None:
    """Issue 11.3: up to 1.7.0 the wheels carry the Makefile's archs (3.5, 5.2, 6.1, no
    phantom 6.2/7.2) plus PTX; the cmake lists hold for 1.8+ only."""
    cu90 = find_wheel("mxnet-cu90", "1.6.0.post0", LINUX_X86_64)
    assert cu90 is not None
    assert cu90.sass == ("3.0", "3.5", "5.0", "5.2", "6.0", "6.1", "7.0") and cu90.ptx == ("7.0",)
    for w in LINUX_GPU:
        assert "6.2" not in w.sass and "7.2" not in w.sass
        assert bool(w.ptx) == (versions.release(w.version) < (1, 8)), w.name
    assert rules.code_for(cu90, "7.5") == rules.SASS  # sm_70 code runs on 7.5
    assert rules.code_for(cu90, "8.0") == rules.PTX  # compute_70 PTX, JIT-compiled
    cu117 = find_wheel("mxnet-cu117", "1.9.1", LINUX_X86_64)
    assert cu117 is not None and rules.code_for(cu117, "9.0") is None


# ---------------------------------------------------------- generated from it


@pytest.mark.parametrize(
    ("wheel", "cap"),
    [(w, c) for w in LINUX_GPU for c in w.sass],
    ids=lambda v: v if isinstance(v, str) else row_id(v),
)
def test_a_gpu_the_wheel_was_built_for_on_a_driver_that_just_runs_it(
    base: HardwareProfile, wheel: Wheel, cap: str
) -> None:
    assert wheel.cuda is not None
    driver = MIN_DRIVER["linux"][wheel.cuda]
    hw = box(base, driver, wheel.cuda, cap, file="gen.json")
    rec = recommend(hw)
    assert rec.gpu, rec.reasons
    chosen = rec.wheel
    assert chosen is not None
    assert rules.code_for(chosen, cap) == rules.SASS
    assert rules.driver_route(chosen, driver, wheel.cuda) == rules.NATIVE
    assert rules.cap(chosen.cuda or "0") <= rules.cap(wheel.cuda)  # no newer than the driver's
    assert versions.key(chosen.version) >= versions.key(wheel.version)  # the release counts
    assert rec.requirements == (f"{rec.package}=={rec.version}", NUMPY_PIN)


@pytest.mark.parametrize("wheel", [w for w in LINUX_GPU if w.python[1] < (3, 8)], ids=row_id)
def test_a_wheel_is_never_advised_for_a_python_it_does_not_install_on(
    base: HardwareProfile, wheel: Wheel
) -> None:
    assert wheel.cuda is not None
    for cap in wheel.sass:
        hw = box(base, MIN_DRIVER["linux"][wheel.cuda], wheel.cuda, cap)
        for py in ((3, 8), (3, 11)):
            assert all(c.wheel != wheel for c in recommend(hw, py).candidates)


@pytest.mark.parametrize("cap", ALL_CAPS)
def test_a_new_driver_gets_the_newest_release_with_machine_code(
    base: HardwareProfile, cap: str
) -> None:
    rec = recommend(box(base, "580.159.04", "13.0", cap))
    fits = [w for w in LINUX_GPU if rules.code_for(w, cap) == rules.SASS]
    newest = max(versions.key(w.version) for w in fits)
    assert rec.wheel is not None and versions.key(rec.wheel.version) == newest
    assert rules.cap(rec.wheel.cuda or "0") == max(
        rules.cap(w.cuda or "0") for w in fits if versions.key(w.version) == newest
    )


@pytest.mark.parametrize(
    ("cap", "package"),
    [
        ("8.6", "mxnet-cu117"),  # RTX 3090, A10
        ("8.9", "mxnet-cu117"),  # RTX 4090, L4: sm_86 code runs on 8.9
        ("8.0", "mxnet-cu117"),  # A100
        ("7.5", "mxnet-cu117"),  # T4: sm_70 code
        ("7.0", "mxnet-cu117"),  # V100
        ("6.1", "mxnet-cu117"),  # GTX 1080: sm_60 code
        ("3.7", "mxnet-cu102"),  # K80: sm_30 code, dropped after CUDA 10.2
        ("3.5", "mxnet-cu102"),
    ],
)
def test_known_gpus_on_a_new_driver(base: HardwareProfile, cap: str, package: str) -> None:
    rec = recommend(box(base, "535.104.05", "12.2", cap))
    assert (rec.package, rec.version) == (package, "1.9.1")


# ------------------------------------------- issue 11, one profile per numbered point


def test_1_a_390_driver_gets_cu90_160_not_the_windows_only_cu91_130() -> None:
    rec = recommend(synthetic("gtx1080-driver-390"))
    assert (rec.package, rec.version, rec.gpu) == ("mxnet-cu90", "1.6.0.post0", True)
    assert find_wheel("mxnet-cu91", "1.3.0", LINUX_X86_64) is None
    assert find_wheel("mxnet-cu91", "1.3.0", WINDOWS_X86_64) is not None
    # cu91 (CUDA 9.1, what the driver reports) exists on Linux only as 1.2.1.post1: older
    assert "mxnet-cu91==1.2.1.post1" in [c.wheel.requirement for c in rec.candidates]
    assert rec.candidates[0].wheel.requirement == "mxnet-cu90==1.6.0.post0"


def test_2_a_release_whose_numpy_has_no_wheel_is_not_advised_for_that_python() -> None:
    hw = synthetic("gtx980-driver-352")  # CUDA 7.5: only mxnet-cu75 runs
    old = recommend(hw, (3, 7))
    assert (old.package, old.version) == ("mxnet-cu75", "1.2.1.post1")
    new = recommend(hw, (3, 11))
    assert (new.package, new.gpu) == ("mxnet", False)
    assert any(
        "the driver runs mxnet-cu75, but mxnet-cu75 1.2.1.post1 installs only on Python "
        "3.6-3.7 (its own requirement numpy<1.15" in r
        for r in new.reasons
    )
    assert any("upgrade the NVIDIA driver to 375.26" in w for w in new.warnings)


@pytest.mark.parametrize("profile", ["h100", "rtx5090-driver-575"])
def test_3_a_gpu_newer_than_every_sass_hears_of_ptx_but_gets_cpu(
    profile: str, tmp_path: Path
) -> None:
    hw = probe_capture("h100-intel-xeon", tmp_path) if profile == "h100" else synthetic(profile)
    rec = recommend(hw)
    assert (rec.package, rec.gpu) == ("mxnet", False)
    text = " ".join((*rec.reasons, *rec.warnings))
    assert "no MXNet wheel has kernels" not in text and "no wheel has kernels" not in text
    assert "no MXNet wheel has machine code (SASS)" in rec.reasons[0]
    (ptx,) = [w for w in rec.warnings if "PTX" in w and "JIT" in w]
    assert ptx.startswith("mxnet-cu102mkl 1.6.0.post0") and "PTX in 318 of 373" in ptx
    assert "not recommended, only mentioned" in ptx
    assert rec.build_from_source is not None


def test_3_the_build_route_for_hopper_and_blackwell(tmp_path: Path) -> None:
    h100 = recommend(probe_capture("h100-intel-xeon", tmp_path))
    assert h100.build_from_source and "CUDA 11.8 or newer" in h100.build_from_source
    blackwell = recommend(synthetic("rtx5090-driver-575"))
    assert blackwell.build_from_source and "CUDA 12.8 or newer" in blackwell.build_from_source
    assert "expect to patch" in blackwell.build_from_source


def test_4_cuda_110_needs_the_ga_driver_not_the_release_candidates() -> None:
    assert MIN_DRIVER["linux"]["11.0"] == "450.51.05"
    a100 = recommend(synthetic("a100-driver-450.36"))  # the 11.0 RC driver
    assert (a100.package, a100.gpu) == ("mxnet", False)
    assert "needs driver 450.51.05 or newer for CUDA 11.0" in a100.reasons[0]
    v100 = recommend(synthetic("v100-driver-450.36"))  # CUDA 10.2 runs there
    assert (v100.package, v100.version) == ("mxnet-cu102", "1.9.1")


def test_5_the_drivers_own_cuda_first() -> None:
    a100 = recommend(synthetic("a100-driver-450.80"))
    assert a100.package == "mxnet-cu110" and not a100.environment
    rtx = recommend(synthetic("rtx3090-driver-455"))
    assert rtx.package == "mxnet-cu111" and not rtx.environment
    # minor-version compatibility only as a fallback, with fusion off and a warning
    compat = [c for c in a100.candidates if rules.cap(c.wheel.cuda or "0") > (11, 0)]
    assert compat and all(dict(c.environment) == {"MXNET_USE_FUSION": "0"} for c in compat)
    assert all(any("minor-version compatibility" in w for w in c.warnings) for c in compat)
    assert a100.candidates[0].wheel.name == "mxnet-cu110"


def test_6_a_cpu_without_avx_gets_mxnet_native() -> None:
    rec = recommend(synthetic("nehalem-no-avx"))
    assert (rec.package, rec.version) == ("mxnet-native", "1.8.0.post0")
    assert any("dies in dot with SIGILL" in r for r in rec.reasons)


def test_6_a_gpu_box_without_avx_is_warned(base: HardwareProfile) -> None:
    no_avx = replace(base.cpu, flags=tuple(f for f in base.cpu.flags if not f.startswith("avx")))
    rec = recommend(replace(box(base, "535.104.05", "12.2", "8.6"), cpu=no_avx))
    assert rec.gpu and any("this CPU has no AVX" in w for w in rec.warnings)


def test_7_linux_aarch64_gets_the_cpu_build_and_never_a_cuda_placeholder() -> None:
    rec = recommend(synthetic("graviton-aarch64-t4g"))
    assert (rec.package, rec.version, rec.gpu) == ("mxnet", "1.9.1", False)
    assert rec.reasons[0].startswith("no CUDA build of MXNet exists for Linux aarch64")
    assert {w.name for w in WHEELS if w.platform == LINUX_AARCH64} == {"mxnet"}
    assert not [w for w in WHEELS if w.version == "1.0.0"]  # the empty placeholders


def test_7_macos() -> None:
    intel = recommend(synthetic("mac-x86_64"))
    assert (intel.package, intel.version, intel.platform) == ("mxnet", "1.9.1", "macos-x86_64")
    apple = recommend(synthetic("mac-arm64"))
    assert not apple.installable and apple.requirements == ()
    assert apple.reasons[0].startswith("nothing installable: no MXNet wheel runs on macOS arm64")


def test_7_windows_has_its_own_releases_and_driver_minimums() -> None:
    hw = synthetic("windows-rtx2080-driver-441")
    rec = recommend(hw)
    assert (rec.package, rec.version, rec.platform) == ("mxnet-cu101", "1.5.0", WINDOWS_X86_64)
    assert any("not read from the wheel" in w for w in rec.warnings)
    # 418.40 runs CUDA 10.1 on Linux (418.39) but not on Windows (418.96): cu100 then
    assert hw.nvidia is not None
    older = replace(hw, nvidia=NvidiaInfo("418.40", "10.1"))
    assert recommend(older).package == "mxnet-cu100"
    assert recommend(replace(hw, gpus=(), nvidia=None)).version == "1.7.0.post2"


def test_8_fermi_has_no_build_route() -> None:
    rec = recommend(synthetic("gtx480-fermi"))
    assert (rec.package, rec.gpu, rec.build_from_source) == ("mxnet", False, None)
    assert any("no build route for compute capability 2.0 (Fermi)" in w for w in rec.warnings)


def test_8_a_k80_in_a_mix_needs_cuda_11x_not_118_or_newer() -> None:
    rec = recommend(synthetic("k80-a100-driver-470"))
    assert (rec.package, rec.gpu) == ("mxnet", False)
    assert "no single MXNet wheel has machine code for every GPU" in rec.reasons[0]
    assert rec.build_from_source is not None
    assert "with CUDA 11.0 to 11.8 (CUDA 12.0 dropped sm_37)" in rec.build_from_source
    assert "or newer" not in rec.build_from_source
    assert rules.build_route(["3.7", "12.0"]) is None  # no CUDA targets both


# ----------------------------------------------------------- real captures, misc


def test_h100_capture_on_python_312(tmp_path: Path) -> None:
    rec = recommend(probe_capture("h100-intel-xeon", tmp_path), (3, 12))
    assert rec.package == "mxnet" and not rec.gpu
    assert "driver 580.159.04 (CUDA 13.0), compute capability 9.0" in rec.reasons[0]
    assert any("numpy<1.24 has no wheel for Python 3.12" in w for w in rec.warnings)


def test_no_gpu_capture(tmp_path: Path) -> None:
    rec = recommend(probe_capture("epyc-no-gpu", tmp_path), (3, 8))
    assert (rec.package, rec.version, rec.gpu) == ("mxnet", "1.9.1", False)
    assert "no NVIDIA GPU found (detected: no NVIDIA driver" in rec.reasons[0]
    assert rec.build_from_source is None and rec.warnings == ()


def test_cpu_only(base: HardwareProfile) -> None:
    rec = recommend(box(base, "535.104.05", "12.2", "8.6"), cpu_only=True)
    assert rec.package == "mxnet" and "(--cpu)" in rec.reasons[0]


def test_recommendation_json(tmp_path: Path) -> None:
    data = recommend(synthetic("rtx3090-driver-535")).to_json()
    assert data["schema"] == "kmx-tune/recommendation/1"
    assert (data["package"], data["platform"], data["gpu"]) == ("mxnet-cu117", LINUX_X86_64, True)
    assert data["cuda_libs"]["mode"] == "pip" and data["fallbacks"][0] == "mxnet-cu116==1.9.1"
