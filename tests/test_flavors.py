"""The flavor table and the advisor. Most cases are generated from the table itself:
for every CUDA flavor and every compute capability it was built for, a box with that
GPU and a driver that just meets the flavor gets a flavor that runs there."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from kmx_tune.errors import UsageError
from kmx_tune.flavors import (
    FLAVORS,
    MIN_DRIVER,
    NUMPY_PIN,
    Flavor,
    driver_runs,
    get_flavor,
    gpu_has_kernels,
    recommend,
    requirements_for,
)
from kmx_tune.hardware import GpuInfo, HardwareProfile, NvidiaInfo, load_profile
from tests.hwfakes import probe_capture, profile_path

CUDA_FLAVORS = [f for f in FLAVORS.values() if f.cuda]
ALL_CAPS = sorted({c for f in CUDA_FLAVORS for c in f.compute_capabilities})


@pytest.fixture(scope="module")
def base() -> HardwareProfile:
    return load_profile(profile_path("epyc-no-gpu"))


def cuda_key(flavor: Flavor) -> tuple[int, ...]:
    return tuple(int(p) for p in (flavor.cuda or "0.0").split("."))


def box(base: HardwareProfile, driver: str, cuda: str, *caps: str) -> HardwareProfile:
    gpus = tuple(GpuInfo(i, f"GPU sm_{c}", c, 16384) for i, c in enumerate(caps))
    return replace(base, nvidia=NvidiaInfo(driver, cuda), gpus=gpus, gpu_reason=None)


# ------------------------------------------------------------------- the table


# The Keras-MXNet performance guide names these four; its "mxnet-cu90-mkl" does not
# exist on the index, the package is "mxnet-cu90mkl".
GUIDE_FLAVORS = ("mxnet", "mxnet-mkl", "mxnet-cu90", "mxnet-cu90mkl")


def test_the_guides_four_flavors_exist() -> None:
    for name in GUIDE_FLAVORS:
        assert get_flavor(name).name == name
    assert get_flavor("mxnet-cu90mkl").mkl and get_flavor("mxnet-cu90mkl").cuda == "9.0"


def test_the_guides_misspelling_gets_a_hint() -> None:
    with pytest.raises(UsageError, match="mxnet-cu90mkl, without the second dash"):
        get_flavor("mxnet-cu90-mkl")


def test_unknown_flavor_lists_valid_names() -> None:
    with pytest.raises(UsageError, match="valid names: mxnet, mxnet-mkl"):
        get_flavor("mxnet-cu999")


def test_the_whole_family_is_covered() -> None:
    tags = {f.name for f in CUDA_FLAVORS}
    expected = {f"mxnet-cu{v}" for v in (75, 80, 90, 91, 92, 100, 101, 102)} | {
        f"mxnet-cu11{m}" for m in range(8)
    }
    assert expected <= tags
    assert {f"mxnet-cu{v}mkl" for v in (75, 80, 90, 91, 92, 100, 101, 102)} <= tags
    assert "mxnet-cu110mkl" not in FLAVORS  # not on the index
    assert {"mxnet", "mxnet-mkl", "mxnet-native"} <= set(FLAVORS)


@pytest.mark.parametrize("flavor", FLAVORS.values(), ids=list(FLAVORS))
def test_every_row_cites_a_source_and_has_a_driver_minimum(flavor: Flavor) -> None:
    assert "package index" in flavor.source
    if flavor.cuda:
        assert flavor.cuda in MIN_DRIVER
        assert flavor.compute_capabilities
        assert "linux_cu" in flavor.source
    else:
        assert flavor.compute_capabilities == ()


def test_names_are_normalized() -> None:
    assert get_flavor("MXNet_CU117").name == "mxnet-cu117"


def test_requirements_pin_numpy() -> None:
    assert requirements_for("mxnet", "1.9.1") == ("mxnet==1.9.1", "numpy<1.24")


# ---------------------------------------------------------- generated from it


@pytest.mark.parametrize(
    ("flavor", "cap"),
    [(f, c) for f in CUDA_FLAVORS for c in f.compute_capabilities],
    ids=lambda v: v.name if isinstance(v, Flavor) else v,
)
def test_a_built_gpu_with_a_matching_driver_gets_a_runnable_flavor(
    base: HardwareProfile, flavor: Flavor, cap: str
) -> None:
    assert flavor.cuda is not None
    hw = box(base, MIN_DRIVER[flavor.cuda], flavor.cuda, cap)
    rec = recommend(hw)
    assert rec.gpu, rec.reasons
    chosen = FLAVORS[rec.package]
    assert gpu_has_kernels(chosen, cap)
    assert driver_runs(chosen, MIN_DRIVER[flavor.cuda], flavor.cuda)
    assert cuda_key(chosen) >= cuda_key(flavor)  # never older than one known to work
    assert rec.requirements == (f"{rec.package}=={rec.version}", NUMPY_PIN)
    assert "profile " in rec.reasons[0]  # the facts came from a --hardware file


@pytest.mark.parametrize("cap", ALL_CAPS)
def test_a_new_driver_gets_the_newest_flavor_with_kernels(base: HardwareProfile, cap: str) -> None:
    rec = recommend(box(base, "580.159.04", "13.0", cap))
    with_kernels = [f for f in CUDA_FLAVORS if gpu_has_kernels(f, cap)]
    assert cuda_key(FLAVORS[rec.package]) == max(cuda_key(f) for f in with_kernels)


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
    assert rec.package == package
    assert rec.version == "1.9.1"


@pytest.mark.parametrize("cap", ["9.0", "10.0", "12.0"])
def test_hopper_and_blackwell_get_cpu_and_the_source_route(base: HardwareProfile, cap: str) -> None:
    rec = recommend(box(base, "580.159.04", "13.0", cap))
    assert (rec.package, rec.version, rec.gpu) == ("mxnet", "1.9.1", False)
    assert any(f"no MXNet wheel has kernels for compute capability {cap}" in r for r in rec.reasons)
    assert rec.build_from_source is not None
    assert f'MXNET_CUDA_ARCH="{cap}"' in rec.build_from_source
    assert "git clone" in rec.build_from_source


# ----------------------------------------------------------- real captures


def test_h100_capture(tmp_path: Path) -> None:
    rec = recommend(probe_capture("h100-intel-xeon", tmp_path), (3, 12))
    assert rec.package == "mxnet" and rec.version == "1.9.1" and not rec.gpu
    assert rec.requirements == ("mxnet==1.9.1", "numpy<1.24")
    assert "detected: driver 580.159.04 (CUDA 13.0), compute capability 9.0" in rec.reasons[0]
    assert any("no kernel image is available" in w for w in rec.warnings)
    assert rec.build_from_source is not None and "CUDA 11.8" in rec.build_from_source
    # on 3.12 mxnet itself cannot be installed (numpy<1.24 has no wheel), let alone keras-mxnet
    assert any("numpy<1.24 has no wheel for Python 3.12" in w for w in rec.warnings)


def test_no_gpu_capture(tmp_path: Path) -> None:
    rec = recommend(probe_capture("epyc-no-gpu", tmp_path), (3, 8))
    assert (rec.package, rec.version, rec.gpu) == ("mxnet", "1.9.1", False)
    assert (
        "no NVIDIA GPU found (detected: no NVIDIA driver: libnvidia-ml.so.1 not found)"
        in rec.reasons[0]
    )
    assert rec.build_from_source is None
    assert rec.warnings == ()  # Python 3.8: keras-mxnet imports


# ----------------------------------------------------------- synthetic boxes


def test_synthetic_multi_gpu_box() -> None:
    rec = recommend(load_profile(profile_path("a100x4-driver-535")))
    assert (rec.package, rec.version, rec.gpu) == ("mxnet-cu117", "1.9.1", True)
    assert (
        "a100x4-driver-535.json: driver 535.104.05 (CUDA 12.2), compute capability 8.0"
        in (rec.reasons[0])
    )


def test_synthetic_old_driver_is_too_old_for_ampere() -> None:
    rec = recommend(load_profile(profile_path("rtx3090-driver-418")))
    assert rec.package == "mxnet" and not rec.gpu
    assert "driver is too old" in rec.reasons[0]
    # sm_80 code in mxnet-cu110 runs on 8.6, and CUDA 11.0 needs 450.36.06
    assert "mxnet-cu110" in rec.reasons[0] and "450.36.06" in rec.reasons[0]
    assert any("upgrade the NVIDIA driver to 450.36.06" in w for w in rec.warnings)


def test_old_driver_gets_the_cuda_it_can_run(base: HardwareProfile) -> None:
    assert recommend(box(base, "418.39", "10.1", "7.0")).package == "mxnet-cu101"
    rec = recommend(box(base, "410.48", "10.0", "7.5"))
    assert (rec.package, rec.version) == ("mxnet-cu100", "1.9.0")
    assert any("stops at 1.9.0" in w for w in rec.warnings)
    assert recommend(box(base, "396.26", "9.2", "7.0")).package == "mxnet-cu92"


def test_minor_version_compatibility_allows_cuda_11x(base: HardwareProfile) -> None:
    # driver 450.80.02 reports CUDA 11.0 but runs 11.1 ... 11.8 runtimes
    assert recommend(box(base, "450.80.02", "11.0", "8.6")).package == "mxnet-cu117"
    assert recommend(box(base, "450.36.06", "11.0", "8.0")).package == "mxnet-cu110"


def test_every_gpu_must_have_kernels(base: HardwareProfile) -> None:
    # V100 + A100: cu110+ has both
    assert recommend(box(base, "535.104.05", "12.2", "7.0", "8.0")).package == "mxnet-cu117"
    # A100 + H100: the H100 has no wheel
    mixed = recommend(box(base, "535.104.05", "12.2", "8.0", "9.0"))
    assert mixed.package == "mxnet" and mixed.build_from_source
    # K80 + A100: each has a wheel, no single wheel has both
    split = recommend(box(base, "535.104.05", "12.2", "3.7", "8.0"))
    assert split.package == "mxnet"
    assert "no single MXNet wheel" in split.reasons[0]


def test_cpu_only(base: HardwareProfile) -> None:
    rec = recommend(box(base, "535.104.05", "12.2", "8.6"), cpu_only=True)
    assert rec.package == "mxnet" and "(--cpu)" in rec.reasons[0]


def test_non_linux_warns(base: HardwareProfile) -> None:
    rec = recommend(replace(base, os="darwin", arch="aarch64"))
    assert any("Linux x86-64" in w for w in rec.warnings)


def test_recommendation_json(tmp_path: Path) -> None:
    data = recommend(probe_capture("h100-intel-xeon", tmp_path)).to_json()
    assert data["schema"] == "kmx-tune/recommendation/1"
    assert data["package"] == "mxnet" and data["requirements"] == ["mxnet==1.9.1", "numpy<1.24"]
    assert data["gpu"] is False and data["build_from_source"]


def test_python_312_warns_that_the_numpy_pin_has_no_wheel(base: HardwareProfile) -> None:
    (new,) = [w for w in recommend(base, (3, 12)).warnings if "numpy" in w]
    assert "numpy<1.24 has no wheel for Python 3.12" in new
    assert "itself installs and imports there" not in " ".join(recommend(base, (3, 12)).warnings)
    # 3.10 and 3.11: keras-mxnet fails, mxnet itself is fine
    assert "itself installs and imports there" in " ".join(recommend(base, (3, 11)).warnings)
    assert not [w for w in recommend(base, (3, 11)).warnings if "no wheel" in w]
