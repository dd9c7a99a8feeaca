"""``kmx-tune probe``: show the CPU and NVIDIA GPUs, or save them as a JSON profile.

Only click is imported at module level; the probe and rich load inside the command."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from kmx_tune.options import hardware_option, json_option, python_option

if TYPE_CHECKING:
    from kmx_tune.flavors import Recommendation
    from kmx_tune.hardware import HardwareProfile


@dataclass(frozen=True)
class ProbeReport:
    """The hardware and the advice for it. Its JSON is the profile alone, which every
    command taking ``--hardware FILE`` reads back."""

    hardware: HardwareProfile
    recommendation: Recommendation
    python: tuple[int, int] | None = None  # the target Python the advice is for
    exit_code: int = 0

    def to_json(self) -> dict[str, Any]:
        return self.hardware.to_json()


@click.command("probe")
@json_option
@hardware_option
@python_option
@click.option("--no-cache", is_flag=True, help="Probe the CPU again instead of using the cache.")
def probe(as_json: bool, hardware_file: str | None, python: str | None, no_cache: bool) -> None:
    """Show the CPU (vendor, ISA flags, cores, cgroup quota), the NVIDIA driver and
    each GPU's compute capability, and the MXNet flavor that fits them (for the
    Python given with --python; without it, for any Python).

    `--json` writes a profile that every command taking `--hardware FILE` reads:
    probe the training box once, then get advice for it anywhere.

    \b
    Example:
      kmx-tune probe
      kmx-tune probe --json > gpu-box.json       # on the training box
      kmx-tune doctor --hardware gpu-box.json    # on your laptop
    """
    from kmx_tune.flavors import recommend
    from kmx_tune.hardware import load_profile
    from kmx_tune.hardware import probe as probe_hardware
    from kmx_tune.render import finish
    from kmx_tune.target import Target

    if hardware_file is not None:
        hw = load_profile(hardware_file)
    else:
        hw = probe_hardware(use_cache=not no_cache)
    py = None
    if python is not None:
        version = Target.find(python).facts().version
        py = (version[0], version[1])
    finish(ProbeReport(hw, recommend(hw, py), py), as_json, render_profile)


def render_profile(report: ProbeReport) -> None:
    from kmx_tune.render import console, plain

    out = console()
    hw, rec = report.hardware, report.recommendation
    cpu = hw.cpu
    rows: list[tuple[str, str]] = [
        ("system", f"{hw.os} {hw.arch}"),
        ("CPU", f"{cpu.vendor}, {cpu.brand}"),
    ]
    cores = [f"{cpu.logical_cores} logical"]
    cores.append(f"{cpu.physical_cores} physical" if cpu.physical_cores else "physical unknown")
    if cpu.usable_cores is not None and cpu.usable_cores != cpu.logical_cores:
        cores.append(f"{cpu.usable_cores} usable (affinity)")
    cores.append(
        f"cgroup quota {cpu.cgroup_cpu_limit:g} CPUs"
        if cpu.cgroup_cpu_limit
        else "no cgroup CPU quota"
    )
    rows.append(("cores", ", ".join(cores)))
    rows.append(("ISA", " ".join(cpu.isa) or "(none of AVX, AVX2, FMA, AVX-512, AMX)"))
    if hw.nvidia is not None:
        rows.append(
            (
                "NVIDIA",
                f"driver {hw.nvidia.driver_version}, supports CUDA {hw.nvidia.cuda_driver_version}",
            )
        )
    for gpu in hw.gpus:
        rows.append(
            (
                f"GPU {gpu.index}",
                f"{gpu.name}, compute capability {gpu.compute_capability}, "
                f"{gpu.memory_total_mib} MiB",
            )
        )
    if not hw.gpus:
        rows.append(("GPU", f"no NVIDIA GPU found: {hw.gpu_reason}"))
    rows.append(("source", hw.source))
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        out.print(f"[bold]{key:<{width}}[/bold]  {plain(value)}")
    out.print()
    kind = "CUDA" if rec.gpu else "CPU"
    which = (
        "any Python" if report.python is None else f"Python {report.python[0]}.{report.python[1]}"
    )
    if rec.installable:
        out.print(
            f"[bold]MXNet for this box[/bold] ({plain(which)}): {plain(rec.package)} "
            f"{plain(rec.version)} ({kind})"
        )
    else:
        out.print(f"[bold]MXNet for this box[/bold] ({plain(which)}): none")
    for reason in rec.reasons:
        out.print(f"  because {plain(reason)}")
    libs = rec.cuda_libs
    if libs is not None:
        if libs.mode == "pip":
            out.print(f"  CUDA libraries from pip: {plain(' '.join(libs.packages))}")
        else:
            for line in libs.system:
                out.print(f"  the system must provide: {plain(line)}")
    for name, value in rec.environment.items():
        out.print(f"  environment: {plain(name)}={plain(value)}")
    for warning in rec.warnings:
        out.print(f"  [yellow]![/yellow] {plain(warning)}")
    if rec.build_from_source:
        out.print(plain(rec.build_from_source))
