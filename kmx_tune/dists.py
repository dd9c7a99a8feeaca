"""Installed distributions, named the way pip names them."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Every MXNet flavor installs the same top-level `mxnet` module.
_MXNET_DIST = re.compile(r"^mxnet(-(mkl|native|cu\d+(mkl)?))?$")


def normalize(name: str) -> str:
    """PEP 503 normalized distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def is_mxnet_distribution(name: str) -> bool:
    """True for mxnet, mxnet-mkl, mxnet-native, mxnet-cu117, mxnet-cu90mkl, ..."""
    return bool(_MXNET_DIST.match(normalize(name)))


@dataclass(frozen=True)
class Distribution:
    name: str
    version: str
    location: str = ""

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"
