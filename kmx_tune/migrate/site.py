"""What a rule may ask of the transformer walking a file (:class:`Site`), and the shapes
of the rules themselves."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Optional, Protocol

import libcst as cst

from kmx_tune.migrate.prescan import Prescan


class Site(Protocol):
    """What a rule may ask of the transformer walking the file."""

    to_first: bool
    target: str  # the layout migrated to
    source_format: str  # the layout migrated from
    prescan: Prescan
    folder: Path | None  # the file's folder, where the data it names is looked for

    def report(
        self,
        node: cst.CSTNode,
        code: str,
        message: str,
        replacement: cst.CSTNode | None,
        reason: str | None = None,
    ) -> None:
        """Record a finding at *node*; *replacement* None: not rewritten, for *reason*."""
        ...

    def is_image(self, node: cst.BaseExpression) -> bool:
        """Whether *node* is known to be an image tensor (a conv output, say)."""
        ...

    def is_applied(self, call: cst.Call) -> bool:
        """Whether *call* makes a layer that is applied on the spot: ``Layer(...)(x)``."""
        ...


CallRule = Callable[[Site, cst.Call, cst.Call], Optional[cst.Call]]
SubscriptRule = Callable[[Site, cst.Subscript, cst.Subscript], Optional[cst.Subscript]]


def data_reason(site: Site) -> str | None:
    """Why numpy data in this file may not be images, or None when it uses image layers."""
    if site.prescan.has_image_layers:
        return None
    return "no convolution or pooling layers in this file, so the data may not be images"
