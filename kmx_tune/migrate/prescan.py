"""What a whole file tells the rules before any of them runs, and the test for code
that is already right for both layouts (``if K.image_data_format() == ...``)."""

from __future__ import annotations

import libcst as cst

from kmx_tune.migrate.knowledge import GUARD_CALLS, IMAGE_LAYER, IMAGE_MODEL
from kmx_tune.migrate.nodes import find_arg, keyword_arg, last_name


def is_guard(test: cst.BaseExpression) -> bool:
    """True when an ``if`` test asks which image layout is in effect."""
    finder = _GuardFinder()
    test.visit(finder)
    return finder.found


class _GuardFinder(cst.CSTVisitor):
    def __init__(self) -> None:
        super().__init__()
        self.found = False

    def visit_Call(self, node: cst.Call) -> None:
        if last_name(node.func) in GUARD_CALLS:
            self.found = True


class Prescan(cst.CSTVisitor):
    """What the whole file tells us before any rule runs: does it use image layers,
    and which variable names are passed as an input shape."""

    def __init__(self) -> None:
        super().__init__()
        self.has_image_layers = False
        self.shape_names: set[str] = set()

    def visit_Name(self, node: cst.Name) -> None:
        if IMAGE_LAYER.match(node.value) or IMAGE_MODEL.match(node.value):
            self.has_image_layers = True

    def visit_Call(self, node: cst.Call) -> None:
        for kw in ("input_shape", "batch_input_shape"):
            arg = keyword_arg(node, kw)
            if arg is not None and isinstance(arg.value, cst.Name):
                self.shape_names.add(arg.value.value)
        if last_name(node.func) == "Input":
            arg = find_arg(node, "shape", 0)
            if arg is not None and isinstance(arg.value, cst.Name):
                self.shape_names.add(arg.value.value)
