"""What a whole file tells the rules before any of them runs, and the test for code
that is already right for both layouts (``if K.image_data_format() == ...``)."""

from __future__ import annotations

import libcst as cst

from kmx_tune.migrate.knowledge import (
    GUARD_CALLS,
    IMAGE_LAYER,
    IMAGE_MODEL,
    KERAS_IMAGE_DATASETS,
)
from kmx_tune.migrate.nodes import find_arg, keyword_arg, last_name, receiver_name


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
    which variable names are passed as an input shape, does it load a Keras image
    dataset (whose layout follows keras.json), and which formats it sets itself."""

    def __init__(self) -> None:
        super().__init__()
        self.has_image_layers = False
        self.shape_names: set[str] = set()
        self.keras_image_data = False
        self.formats_set: list[str] = []

    @property
    def image_code(self) -> bool:
        """Whether the file works with images in the layout keras.json says."""
        return self.has_image_layers or self.keras_image_data

    def visit_Name(self, node: cst.Name) -> None:
        if IMAGE_LAYER.match(node.value) or IMAGE_MODEL.match(node.value):
            self.has_image_layers = True

    def visit_Call(self, node: cst.Call) -> None:
        for kw in ("input_shape", "batch_input_shape"):
            arg = keyword_arg(node, kw)
            if arg is not None and isinstance(arg.value, cst.Name):
                self.shape_names.add(arg.value.value)
        name = last_name(node.func)
        if name == "Input":
            arg = find_arg(node, "shape", 0)
            if arg is not None and isinstance(arg.value, cst.Name):
                self.shape_names.add(arg.value.value)
        elif name == "load_data" and receiver_name(node.func) in KERAS_IMAGE_DATASETS:
            self.keras_image_data = True
        elif name == "set_image_data_format":
            arg = find_arg(node, "data_format", 0)
            if arg is not None and isinstance(arg.value, cst.SimpleString):
                value = arg.value.evaluated_value
                if isinstance(value, str):
                    self.formats_set.append(value)
