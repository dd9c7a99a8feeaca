"""The hardware probe, on the real captures (fake NVML built from them) and for real
on this machine, which has no NVIDIA driver."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from kmx_tune import hardware
from kmx_tune.errors import UsageError
from kmx_tune.hardware import (
    SCHEMA,
    HardwareProfile,
    cgroup_cpu_limit,
    get_hardware,
    load_profile,
    parse_proc_cpuinfo,
    probe,
    probe_nvidia,
)
from tests.hwfakes import CAPTURES, HARDWARE, FakeNvml, capture, probe_capture, profile_path

# ------------------------------------------------------------------ captures


def test_h100_capture_reports_driver_cuda_and_compute_capability(tmp_path: Path) -> None:
    hw = probe_capture("h100-intel-xeon", tmp_path)
    assert hw.nvidia is not None
    assert hw.nvidia.driver_version == "580.159.04"
    assert hw.nvidia.cuda_driver_version == "13.0"
    assert [(g.index, g.name, g.compute_capability) for g in hw.gpus] == [
        (0, "NVIDIA H100 80GB HBM3", "9.0")
    ]
    # nvidia-smi in the same capture says 81559 MiB
    assert hw.gpus[0].memory_total_mib == 81559
    assert hw.gpu_reason is None


def test_h100_capture_cpu(tmp_path: Path) -> None:
    cpu = probe_capture("h100-intel-xeon", tmp_path).cpu
    assert cpu.vendor == "GenuineIntel"
    assert cpu.brand == "Intel(R) Xeon(R) Processor"
    assert cpu.logical_cores == 16
    assert cpu.physical_cores == 16  # lscpu: 1 socket x 16 cores x 1 thread
    for flag in ("avx", "avx2", "fma", "avx512f", "avx512_vnni", "amx_tile", "amx_bf16"):
        assert flag in cpu.isa


def test_epyc_capture_has_no_gpu_and_says_why(tmp_path: Path) -> None:
    hw = probe_capture("epyc-no-gpu", tmp_path)
    assert hw.nvidia is None and hw.gpus == ()
    assert hw.gpu_reason == "no NVIDIA driver: libnvidia-ml.so.1 not found"
    assert "no NVIDIA GPU found" in hw.gpu_summary
    assert hw.cpu.vendor == "AuthenticAMD"
    assert hw.cpu.physical_cores == 2
    assert "amx_tile" not in hw.cpu.isa and "avx512f" in hw.cpu.isa


@pytest.mark.parametrize("name", CAPTURES)
def test_committed_profiles_are_what_the_probe_reports(name: str, tmp_path: Path) -> None:
    """The --hardware profiles used by the CLI tests come from the captures."""
    probed = probe_capture(name, tmp_path).to_json()
    committed = json.loads(profile_path(name).read_text())
    for data in (probed, committed):
        data["cpu"].pop("usable_cores")  # this machine's affinity, not the capture's
    assert probed == committed


# ----------------------------------------------------------------- NVML seam


def _device(name: str, cap: tuple[int, int], mib: int) -> dict[str, Any]:
    return {"name": name, "cuda_compute_capability": list(cap), "memory_total": mib << 20}


def test_synthetic_multi_gpu_box_lists_every_gpu() -> None:
    nvml = FakeNvml(
        {
            "driver_version": "535.104.05",
            "cuda_driver_version": 12020,
            "devices": [
                _device("NVIDIA A100-SXM4-80GB", (8, 0), 81920),
                _device("NVIDIA GeForce RTX 3090", (8, 6), 24576),
            ],
        }
    )
    nvidia, gpus, reason = probe_nvidia(nvml)
    assert nvidia is not None and nvidia.cuda_driver_version == "12.2"
    assert [(g.index, g.compute_capability, g.memory_total_mib) for g in gpus] == [
        (0, "8.0", 81920),
        (1, "8.6", 24576),
    ]
    assert reason is None
    assert nvml.shutdowns == 1  # NVML is released after probing


def test_driver_without_gpus_says_so() -> None:
    nvml = FakeNvml({"driver_version": "535.104.05", "cuda_driver_version": 12020, "devices": []})
    nvidia, gpus, reason = probe_nvidia(nvml)
    assert nvidia is not None and gpus == ()
    assert reason == "driver 535.104.05 sees no GPU"


def test_a_broken_gpu_does_not_hide_the_others() -> None:
    nvml = FakeNvml(
        {
            "driver_version": "535.104.05",
            "cuda_driver_version": 12020,
            "devices": [{"error": "GPU is lost"}, _device("Tesla T4", (7, 5), 15360)],
        }
    )
    _, gpus, _ = probe_nvidia(nvml)
    assert [(g.index, g.name) for g in gpus] == [(1, "Tesla T4")]


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        ("NVMLError_LibraryNotFound(12)", "no NVIDIA driver: libnvidia-ml.so.1 not found"),
        ("NVMLError_DriverNotLoaded(9)", "the NVIDIA kernel driver is not loaded"),
        ("NVMLError_Unknown(999)", "NVML error: NVMLError: NVMLError_Unknown(999)"),
    ],
)
def test_nvml_init_errors_become_reasons(error: str, reason: str) -> None:
    nvidia, gpus, got = probe_nvidia(FakeNvml({"error": error}))
    assert (nvidia, gpus, got) == (None, (), reason)


def test_missing_pynvml_module_is_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_module() -> Any:
        raise ModuleNotFoundError("No module named 'pynvml'")

    monkeypatch.setattr(hardware.nvidia, "_missing_nvml_library", lambda: None)  # a driver is there
    monkeypatch.setattr(hardware.nvidia, "_import_pynvml", no_module)
    _, gpus, reason = probe_nvidia()
    assert gpus == ()
    assert reason is not None and "pynvml module is not installed" in reason


def test_probe_runs_for_real_on_this_machine() -> None:
    """This machine has no NVIDIA driver (like the epyc capture)."""
    hw = probe(use_cache=False)
    assert hw.os == "linux" and hw.arch == "x86_64"
    assert hw.cpu.logical_cores >= 1 and hw.cpu.flags
    assert hw.gpus == () and hw.gpu_reason
    assert hw.source == "probed"


# ------------------------------------------------------------- no /proc, cgroups


def test_no_proc_still_answers(tmp_path: Path) -> None:
    def broken_cpuinfo() -> dict[str, Any]:
        raise RuntimeError("cpuid unavailable")

    hw = probe(
        nvml=FakeNvml({"error": "NVMLError_LibraryNotFound(12)"}),
        cpuinfo=broken_cpuinfo,
        root=tmp_path,  # an empty folder: no /proc, no /sys
    )
    assert hw.cpu.physical_cores is None
    assert hw.cpu.logical_cores >= 1
    assert hw.cpu.vendor == "unknown"
    assert hw.source == "probed"  # no boot id: nothing cached


def test_proc_cpuinfo_counts_physical_cores_not_threads() -> None:
    one = (HARDWARE / "epyc-no-gpu" / "proc-cpuinfo.txt").read_text()
    # the same two cores seen twice, as with hyper-threading
    threaded = one.rstrip("\n") + "\n\n" + one
    assert parse_proc_cpuinfo(one)["physical_cores"] == 2
    assert parse_proc_cpuinfo(threaded)["physical_cores"] == 2
    assert parse_proc_cpuinfo(threaded)["logical_cores"] == 4


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_quota(tmp_path: Path) -> None:
    _write(tmp_path / "proc/self/cgroup", "0::/box\n")
    _write(tmp_path / "sys/fs/cgroup/cpu.max", "max 100000\n")
    _write(tmp_path / "sys/fs/cgroup/box/cpu.max", "250000 100000\n")
    assert cgroup_cpu_limit(tmp_path) == 2.5


def test_cgroup_v2_unlimited(tmp_path: Path) -> None:
    _write(tmp_path / "proc/self/cgroup", "0::/\n")
    _write(tmp_path / "sys/fs/cgroup/cpu.max", "max 100000\n")
    assert cgroup_cpu_limit(tmp_path) is None


def test_cgroup_v1_quota(tmp_path: Path) -> None:
    _write(tmp_path / "proc/self/cgroup", "4:cpu,cpuacct:/docker/abc\n")
    _write(tmp_path / "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "400000\n")
    _write(tmp_path / "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us", "100000\n")
    _write(tmp_path / "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "-1\n")
    _write(tmp_path / "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_limit(tmp_path) == 4.0


def test_effective_cores_respects_the_quota(tmp_path: Path) -> None:
    cpu = probe_capture("h100-intel-xeon", tmp_path).cpu
    assert replace(cpu, usable_cores=None).effective_cores == 16
    assert replace(cpu, usable_cores=None, cgroup_cpu_limit=4.0).effective_cores == 4


# --------------------------------------------------------------------- cache


def _counting_cpuinfo(calls: list[int]) -> Any:
    data = capture("epyc-no-gpu")["cpuinfo"]

    def get() -> dict[str, Any]:
        calls.append(1)
        return dict(data)

    return get


def _boot_root(tmp_path: Path, boot_id: str) -> Path:
    root = tmp_path / "root"
    _write(root / "proc/sys/kernel/random/boot_id", boot_id + "\n")
    _write(root / "etc/machine-id", "0123456789abcdef\n")
    return root


def test_cpu_facts_are_cached_until_reboot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KMX_TUNE_CACHE_DIR", str(tmp_path / "cache"))
    calls: list[int] = []
    nvml = FakeNvml({"error": "NVMLError_LibraryNotFound(12)"})
    root = _boot_root(tmp_path, "boot-1")
    first = probe(nvml=nvml, cpuinfo=_counting_cpuinfo(calls), root=root)
    second = probe(nvml=nvml, cpuinfo=_counting_cpuinfo(calls), root=root)
    assert (first.source, second.source) == ("probed", "cached")
    assert len(calls) == 1
    assert first.cpu == second.cpu
    assert (tmp_path / "cache" / "cpu.json").is_file()

    _boot_root(tmp_path, "boot-2")  # a reboot
    third = probe(nvml=nvml, cpuinfo=_counting_cpuinfo(calls), root=root)
    assert third.source == "probed" and len(calls) == 2


def test_another_machine_does_not_use_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KMX_TUNE_CACHE_DIR", str(tmp_path / "cache"))
    calls: list[int] = []
    nvml = FakeNvml({"error": "NVMLError_LibraryNotFound(12)"})
    root = _boot_root(tmp_path, "boot-1")
    probe(nvml=nvml, cpuinfo=_counting_cpuinfo(calls), root=root)
    _write(root / "etc/machine-id", "fedcba9876543210\n")
    assert probe(nvml=nvml, cpuinfo=_counting_cpuinfo(calls), root=root).source == "probed"
    assert len(calls) == 2


def test_a_corrupt_cache_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KMX_TUNE_CACHE_DIR", str(tmp_path / "cache"))
    _write(tmp_path / "cache" / "cpu.json", "{not json")
    hw = probe(
        nvml=FakeNvml({"error": "x"}), cpuinfo=_counting_cpuinfo([]), root=_boot_root(tmp_path, "b")
    )
    assert hw.source == "probed" and hw.cpu.vendor == "AuthenticAMD"


@pytest.mark.parametrize(
    "cpu",
    [
        {"vendor": "x", "brand": "y", "flags": [], "logical_cores": "x"},
        {"vendor": "x", "brand": "y", "flags": 5, "logical_cores": 2},
        {"vendor": "x", "brand": "y", "flags": [1, 2], "logical_cores": 2},
        {"vendor": 3, "brand": "y", "flags": [], "logical_cores": 2},
        {"vendor": "x", "brand": "y", "flags": [], "logical_cores": True},
        {"vendor": "x", "brand": "y", "flags": []},
        [],
    ],
)
def test_a_cache_with_the_right_key_and_wrong_types_is_probed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cpu: Any
) -> None:
    """Review C10: `logical_cores: "x"` or `flags: 5` under the right key gave a
    ValueError/TypeError traceback on every run until the cache was deleted."""
    from kmx_tune.hardware.cpu import CACHE_SCHEMA, machine_key

    monkeypatch.setenv("KMX_TUNE_CACHE_DIR", str(tmp_path / "cache"))
    root = _boot_root(tmp_path, "b")
    key = machine_key(root)
    cache = tmp_path / "cache" / "cpu.json"
    _write(cache, json.dumps({"schema": CACHE_SCHEMA, "key": key, "cpu": cpu}))
    calls: list[int] = []
    hw = probe(nvml=FakeNvml({"error": "x"}), cpuinfo=_counting_cpuinfo(calls), root=root)
    assert hw.source == "probed" and len(calls) == 1
    assert hw.cpu.vendor == "AuthenticAMD"
    assert json.loads(cache.read_text())["cpu"]["vendor"] == "AuthenticAMD"  # written over
    again = probe(nvml=FakeNvml({"error": "x"}), cpuinfo=_counting_cpuinfo(calls), root=root)
    assert again.source == "cached" and len(calls) == 1


def test_a_bad_cache_on_this_machine_is_no_traceback_in_probe_or_doctor(tmp_path: Path) -> None:
    """Review C10 through the command line, with this machine's own cache key."""
    from kmx_tune.hardware.cpu import CACHE_SCHEMA, machine_key
    from tests.cli import kmx

    cache_dir = tmp_path / "cache"
    bad = {"vendor": "v", "brand": "b", "flags": 5, "logical_cores": "x"}
    text = json.dumps({"schema": CACHE_SCHEMA, "key": machine_key(), "cpu": bad})
    env = {"KMX_TUNE_CACHE_DIR": str(cache_dir)}
    _write(cache_dir / "cpu.json", text)
    result = kmx("doctor", "--python", sys.executable, env=env)
    assert result.exit_code in (0, 1) and "hardware (probed)" in result.output
    _write(cache_dir / "cpu.json", text)
    result = kmx("probe", env=env)
    assert result.exit_code == 0 and "source  probed" in result.output


def test_warm_probe_is_fast_on_this_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KMX_TUNE_CACHE_DIR", str(tmp_path / "cache"))
    probe()  # cold: runs py-cpuinfo once
    start = time.perf_counter()
    hw = probe()
    assert hw.source == "cached"
    assert time.perf_counter() - start < 0.2


# ------------------------------------------------------------------ profiles


def test_profile_json_has_the_documented_fields(tmp_path: Path) -> None:
    data = probe_capture("h100-intel-xeon", tmp_path).to_json()
    assert data["schema"] == SCHEMA == "kmx-tune/hardware/1"
    assert (data["os"], data["arch"]) == ("linux", "x86_64")
    assert {"vendor", "brand", "flags", "logical_cores", "physical_cores"} <= set(data["cpu"])
    assert data["nvidia"] == {"driver_version": "580.159.04", "cuda_driver_version": "13.0"}
    assert data["gpus"] == [
        {
            "index": 0,
            "name": "NVIDIA H100 80GB HBM3",
            "compute_capability": "9.0",
            "memory_total_mib": 81559,
        }
    ]
    assert probe_capture("epyc-no-gpu", tmp_path).to_json()["nvidia"] is None


@pytest.mark.parametrize("name", [*CAPTURES, "a100x4-driver-535", "rtx3090-driver-418"])
def test_profiles_round_trip(name: str) -> None:
    hw = load_profile(profile_path(name))
    assert hw.source == f"file: {profile_path(name)}"
    assert HardwareProfile.from_json(hw.to_json(), file=hw.file) == hw


def test_get_hardware_prefers_the_file() -> None:
    hw = get_hardware(profile_path("h100-intel-xeon"))
    assert hw.gpus[0].compute_capability == "9.0"
    assert get_hardware(None).source in ("probed", "cached")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ("{oops", "not JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"schema": "something/else"}', "expected 'kmx-tune/hardware/1'"),
        ('{"schema": "kmx-tune/hardware/1", "os": "linux"}', "field 'cpu' is missing"),
    ],
)
def test_bad_profiles_are_one_line_usage_errors(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "box.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UsageError, match=message) as info:
        load_profile(path)
    assert "\n" not in str(info.value)
    assert str(path) in str(info.value)


def _profile(**over: Any) -> str:
    data = load_profile(profile_path("h100-intel-xeon")).to_json()
    for dotted, value in over.items():
        where = data
        *parents, last = dotted.split("__")
        for key in parents:
            where = where[key] if not key.isdigit() else where[int(key)]
        if value is _DROP:
            del where[last]
        else:
            where[last] = value
    return json.dumps(data)


_DROP = object()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (_profile(cpu__logical_cores="many"), "field 'cpu.logical_cores' must be a whole number"),
        (_profile(cpu__flags="avx"), "field 'cpu.flags' must be a list"),
        (_profile(cpu__logical_cores=0), "field 'cpu.logical_cores' must be at least 1"),
        (_profile(gpus=[{"index": 0}]), "field 'gpus[0].name' is missing"),
        (
            _profile(gpus__0__compute_capability="abc"),
            "field 'gpus[0].compute_capability' must look like 8.6",
        ),
        (_profile(nvidia=None), "lists GPUs but no 'nvidia' driver"),
        (_profile(cpu=_DROP), "field 'cpu' is missing"),
    ],
)
def test_wrong_fields_are_named_and_say_what_to_do(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "box.json"
    path.write_text(content)
    with pytest.raises(UsageError) as info:
        load_profile(path)
    text = str(info.value)
    assert message in text and "\n" not in text
    assert "kmx-tune probe --json" in text  # what to do


def test_a_folder_is_refused_in_one_line_by_every_command(tmp_path: Path) -> None:
    from tests.cli import kmx

    install = ["install-mxnet", "--dry-run", "--python", sys.executable]
    for command in (["probe"], ["doctor"], install):
        result = kmx(*command, "--hardware", str(tmp_path))
        assert result.exit_code == 2
        assert result.output.count("Error:") == 1 and "Usage:" not in result.output
        assert f"--hardware {tmp_path}: is a folder" in result.output
        assert "kmx-tune probe --json > FILE" in result.output


# ------------------------------------------- hostile profiles (review C4) and raw captures


def _hostile(**over: Any) -> str:
    """The H100 profile with fields replaced, as JSON text (NaN and Infinity allowed,
    as Python's json writes and reads them)."""
    data = load_profile(profile_path("h100-intel-xeon")).to_json()
    for dotted, value in over.items():
        where = data
        *parents, last = dotted.split("__")
        for key in parents:
            where = where[key] if not key.isdigit() else where[int(key)]
        where[last] = value
    return json.dumps(data)


HOSTILE: list[tuple[str, str, str]] = [
    ("cgroup-infinity", _hostile(cpu__cgroup_cpu_limit=float("inf")), "cpu.cgroup_cpu_limit"),
    ("cgroup-nan", _hostile(cpu__cgroup_cpu_limit=float("nan")), "cpu.cgroup_cpu_limit"),
    ("cgroup-negative", _hostile(cpu__cgroup_cpu_limit=-2), "cpu.cgroup_cpu_limit"),
    ("driver-empty", _hostile(nvidia__driver_version=""), "nvidia.driver_version"),
    ("driver-abc", _hostile(nvidia__driver_version="abc"), "nvidia.driver_version"),
    ("driver-xyz", _hostile(nvidia__driver_version="x.y.z"), "nvidia.driver_version"),
    ("cuda-abc", _hostile(nvidia__cuda_driver_version="abc"), "nvidia.cuda_driver_version"),
    ("cuda-5000", _hostile(nvidia__cuda_driver_version="1" * 5000), "nvidia.cuda_driver_version"),
    ("cc-negative", _hostile(gpus__0__compute_capability="-8.-6"), "compute_capability"),
    ("cc-negative-list", _hostile(gpus__0__compute_capability=[-8, 6]), "compute_capability"),
    ("cc-huge", _hostile(gpus__0__compute_capability="12345.6"), "compute_capability"),
    ("cores-huge", _hostile(cpu__logical_cores=10**100), "cpu.logical_cores"),
    ("memory-negative", _hostile(gpus__0__memory_total_mib=-1), "gpus[0].memory_total_mib"),
    ("flags-not-strings", _hostile(cpu__flags=[{"a": 1}]), "cpu.flags"),
    ("deep-nesting", "[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ("5000-digit-number", _hostile(cpu__logical_cores=0).replace(
        '"logical_cores": 0', '"logical_cores": ' + "9" * 5000), "not JSON"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("content", "where"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE]
)
def test_hostile_profiles_are_one_error_line_in_every_command(
    tmp_path: Path, content: str, where: str
) -> None:
    """Review C4: Infinity/NaN quotas (OverflowError, ValueError), garbage driver and
    CUDA versions (ValueError from the advice), deep nesting (RecursionError), a
    5000-digit version, and a negative compute capability shown as is."""
    from tests.cli import kmx

    box = tmp_path / "box.json"
    box.write_text(content)
    install = ["install-mxnet", "--dry-run", "--python", sys.executable]
    for command in (["probe"], ["doctor", "--python", sys.executable], install):
        result = kmx(*command, "--hardware", str(box))
        assert result.exit_code == 2, (command, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"Error: --hardware {box}: "), lines
        assert where in lines[0] and "kmx-tune probe --json" in lines[0]


@pytest.mark.parametrize("name", CAPTURES)
def test_a_raw_capture_says_what_it_is_and_what_to_do(name: str) -> None:
    """Issue 15 item 7: a raw capture (hw-profile.json: py-cpuinfo, NVML, lscpu output)
    was refused with "schema is None"."""
    from tests.cli import kmx

    raw = HARDWARE / name / "hw-profile.json"
    result = kmx("probe", "--hardware", str(raw))
    assert result.exit_code == 2
    line = result.output.strip()
    assert "None" not in line
    assert line == (
        f"Error: --hardware {raw}: is a raw hardware capture (py-cpuinfo, NVML, lscpu, "
        "nvidia-smi output), not a kmx-tune profile; on the machine it describes, run "
        "`kmx-tune probe --json > FILE` and pass that file"
    )


def test_other_json_says_it_is_not_a_profile(tmp_path: Path) -> None:
    plain_json = tmp_path / "other.json"
    plain_json.write_text('{"hello": 1}')
    with pytest.raises(UsageError, match='is not a kmx-tune hardware profile .it has no "schema"'):
        load_profile(plain_json)
    doctor_json = tmp_path / "doctor.json"
    doctor_json.write_text('{"schema": "kmx-tune/doctor/1"}')
    with pytest.raises(UsageError, match='is a "kmx-tune/doctor/1" document, not a hardware'):
        load_profile(doctor_json)


def test_a_fifo_or_a_device_is_refused_without_reading_it(tmp_path: Path) -> None:
    """A FIFO blocked the read forever; /dev/zero was read without end."""
    import os

    fifo = tmp_path / "box.json"
    os.mkfifo(fifo)
    for path in (str(fifo), "/dev/zero"):
        with pytest.raises(UsageError, match="is not a regular file"):
            load_profile(path)


def test_a_huge_file_is_refused_by_its_size(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    big.write_text(" " * (hardware.PROFILE_MAX_BYTES + 1))
    with pytest.raises(UsageError, match="is larger than 1024 KiB"):
        load_profile(big)
