"""Resolving the complete install: the tags told to pip for another interpreter, and
real resolutions against the package index (the target's own pip, and kmx-tune's pip
standing in for a pip too old to dry-run)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from kmx_tune.install.pip import PipOptions
from kmx_tune.install.resolve import Resolution, TargetTags, platform_tags, resolve
from kmx_tune.target import Target
from tests.venvs import pyenv_python


def test_linux_tags_reach_down_from_the_glibc_version() -> None:
    tags = platform_tags("linux-x86_64", ("glibc", "2.31"))
    assert tags[0] == "manylinux_2_31_x86_64" and tags[-1] == "linux_x86_64"
    assert "manylinux2014_x86_64" in tags and "manylinux1_x86_64" in tags
    assert "manylinux_2_32_x86_64" not in tags


def test_unknown_libc_assumes_manylinux2014_only() -> None:
    tags = platform_tags("linux-aarch64")
    assert tags[0] == "manylinux_2_17_aarch64" and "manylinux2014_aarch64" in tags


def test_other_platforms_are_passed_as_they_are() -> None:
    assert platform_tags("win-amd64") == ["win_amd64"]
    assert platform_tags("macosx-10.9-x86_64") == ["macosx_10_9_x86_64"]


@pytest.mark.parametrize(
    ("version", "abi"), [((3, 6), "cp36m"), ((3, 7), "cp37m"), ((3, 8), "cp38")]
)
def test_cpython_abi_tags(version: tuple[int, int], abi: str) -> None:
    args = TargetTags(version, "CPython", "linux-x86_64").pip_args()
    assert args[:4] == ["--python-version", f"{version[0]}.{version[1]}", "--implementation", "cp"]
    assert args[args.index("--abi") + 1] == abi


def _resolve(python: str | Path, *requirements: str) -> Resolution:
    target = Target.find(python)
    facts = target.facts()
    py = (facts.version[0], facts.version[1])
    tags = TargetTags(py, facts.implementation, facts.sysconfig_platform, facts.libc)
    return resolve(
        target.python, requirements, PipOptions(), pip_version=facts.pip_version, tags=tags
    )


@pytest.mark.network
def test_the_targets_own_pip_resolves_mxnet_and_what_it_pulls_in() -> None:
    res = _resolve(sys.executable, "mxnet==1.9.1", "numpy<1.24")
    assert res.ok, res.error
    assert res.version_of("mxnet") == "1.9.1"
    assert res.version_of("graphviz") == "0.8.4"  # mxnet 1.9.1 pins graphviz<0.9
    assert "target's pip" in res.method


@pytest.mark.network
def test_a_release_whose_own_numpy_pin_has_no_wheel_here_does_not_resolve() -> None:
    # mxnet-cu75 requires numpy<1.15, which has no wheel for Python 3.11
    res = _resolve(sys.executable, "mxnet-cu75==1.2.1.post1", "numpy<1.24")
    assert not res.ok and "mxnet-cu75" in (res.error or "")


@pytest.mark.network
def test_an_old_pip_gets_kmx_tunes_pip_with_the_targets_tags() -> None:
    python = pyenv_python("3.6")
    res = _resolve(python, "mxnet==1.9.1", "numpy<1.24")
    assert res.ok, res.error
    assert res.version_of("numpy") == "1.19.5"  # the newest numpy with a cp36 wheel
    assert "kmx-tune's pip" in res.method and "Python 3.6" in res.method
