"""The transformer: walks one file's tree, keeps track of guarded code and of which
names hold image tensors, and applies the rules."""

from __future__ import annotations

import libcst as cst
from libcst.metadata import PositionProvider

from kmx_tune.formats import CHANNELS_FIRST, CHANNELS_LAST
from kmx_tune.migrate.knowledge import (
    BACKEND,
    IMAGE_LAYER,
    LAYOUT_FREE,
    MERGE,
    NOT_KERAS,
    NP_CREATORS,
    NUMPY,
    PRESERVING,
    TIME_FIRST,
)
from kmx_tune.migrate.model import (
    NOT_REWRITTEN,
    CodeFinding,
)
from kmx_tune.migrate.nodes import (
    Items,
    code_of,
    find_arg,
    int_node,
    int_value,
    items_of,
    keyword_arg,
    last_name,
    paren_width,
    positional_arg,
    receiver_name,
    replace_arg,
    root_name,
    with_values,
)
from kmx_tune.migrate.prescan import Prescan, is_guard
from kmx_tune.migrate.shapes import (
    AMBIGUOUS,
    IMAGE_LENGTHS,
    IMAGE_OR_1D_LENGTHS,
    is_channel,
    rotate,
    shape_edit,
)


class Migrator(cst.CSTTransformer):
    METADATA_DEPENDENCIES = (PositionProvider,)

    def __init__(self, path: str, to: str, prescan: Prescan) -> None:
        super().__init__()
        self.path = path
        self.to_first = to == CHANNELS_FIRST
        self.target = to
        self.source_format = CHANNELS_LAST if self.to_first else CHANNELS_FIRST
        self.prescan = prescan
        self.findings: list[CodeFinding] = []
        self._guard_depth = 0
        self._guards: set[int] = set()
        self._applied_layers: set[int] = set()
        self._scopes: list[dict[str, bool]] = [{}]

    # -- bookkeeping ---------------------------------------------------------------------

    def _report(
        self,
        node: cst.CSTNode,
        code: str,
        message: str,
        replacement: cst.CSTNode | None,
        reason: str | None = None,
    ) -> None:
        pos = self.get_metadata(PositionProvider, node)
        col = pos.start.column + 1 - paren_width(node)
        if replacement is None:
            message = f"{message} [{NOT_REWRITTEN}: {reason}]"
        self.findings.append(
            CodeFinding(
                path=self.path,
                line=pos.start.line,
                col=col,
                code=code,
                message=message,
                replacement=None if replacement is None else code_of(replacement),
                fixable=replacement is not None,
            )
        )

    @property
    def _guarded(self) -> bool:
        return self._guard_depth > 0

    def visit_If(self, node: cst.If) -> None:
        if is_guard(node.test):
            self._guards.add(id(node))
            self._guard_depth += 1

    def leave_If(self, original_node: cst.If, updated_node: cst.If) -> cst.BaseStatement:
        if id(original_node) in self._guards:
            self._guard_depth -= 1
        return updated_node

    def visit_IfExp(self, node: cst.IfExp) -> None:
        if is_guard(node.test):
            self._guards.add(id(node))
            self._guard_depth += 1

    def leave_IfExp(self, original_node: cst.IfExp, updated_node: cst.IfExp) -> cst.BaseExpression:
        if id(original_node) in self._guards:
            self._guard_depth -= 1
        return updated_node

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self._scopes.append({})

    def leave_FunctionDef(
        self, original_node: cst.FunctionDef, updated_node: cst.FunctionDef
    ) -> cst.BaseStatement:
        self._scopes.pop()
        return updated_node

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self._scopes.append({})

    def leave_ClassDef(
        self, original_node: cst.ClassDef, updated_node: cst.ClassDef
    ) -> cst.BaseStatement:
        self._scopes.pop()
        return updated_node

    # -- image tensors (for KMX202) -----------------------------------------------------

    def _is_image(self, node: cst.BaseExpression) -> bool:
        if isinstance(node, cst.Name):
            return self._scopes[-1].get(node.value, False)
        if not isinstance(node, cst.Call):
            return False
        if isinstance(node.func, cst.Call):  # Layer(...)(inputs)
            layer = last_name(node.func.func)
            inputs = node.args[0].value if node.args else None
        else:  # functional merge, or Input(...)
            layer = last_name(node.func)
            inputs = node.args[0].value if node.args else None
            if layer == "Input":
                shape = find_arg(node, "shape", 0)
                elements = items_of(shape.value) if shape is not None else None
                return (
                    elements is not None
                    and len(elements) in IMAGE_LENGTHS
                    and (is_channel(elements[-1].value) or is_channel(elements[0].value))
                )
            if layer not in MERGE or root_name(node.func) in NOT_KERAS:
                return False
        if layer is None or inputs is None:
            return False
        if IMAGE_LAYER.match(layer):
            return True
        if layer in PRESERVING:
            return self._is_image(inputs)
        if layer in MERGE:
            elements = items_of(inputs)
            return bool(elements) and all(self._is_image(e.value) for e in elements or [])
        return False

    def leave_Assign(
        self, original_node: cst.Assign, updated_node: cst.Assign
    ) -> cst.BaseSmallStatement:
        if len(original_node.targets) != 1:
            return updated_node
        target = original_node.targets[0].target
        if not isinstance(target, cst.Name):
            return updated_node
        self._scopes[-1][target.value] = self._is_image(original_node.value)
        # KMX101: `input_shape = (28, 28, 1)` where the name is later passed as a shape
        if target.value in self.prescan.shape_names and not self._guarded:
            edit = shape_edit(original_node.value, 0, IMAGE_LENGTHS, self.to_first)
            if edit.triggered:
                self._shape_finding(
                    original_node.value, "KMX101", f"{target.value} = ", edit.new_node
                )
                if edit.new_node is not None:
                    return updated_node.with_changes(value=edit.new_node)
        return updated_node

    # -- calls -----------------------------------------------------------------------------

    def visit_Call(self, node: cst.Call) -> None:
        if isinstance(node.func, cst.Call):
            self._applied_layers.add(id(node.func))

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.BaseExpression:
        if self._guarded:
            return updated_node
        name = last_name(original_node.func)
        # a layer applied to its inputs: Concatenate(axis=-1)([a, b])
        if isinstance(original_node.func, cst.Call) and isinstance(updated_node.func, cst.Call):
            inner = original_node.func
            if last_name(inner.func) == "Concatenate":
                inputs = original_node.args[0].value if original_node.args else None
                new_inner = self._concat(inner, updated_node.func, 0, inputs)
                if new_inner is not None:
                    return updated_node.with_changes(func=new_inner)
            return updated_node
        result: cst.Call | None = None
        if name == "Concatenate" and id(original_node) not in self._applied_layers:
            result = self._concat(original_node, updated_node, 0, None)
        elif name == "concatenate" and root_name(original_node.func) not in NOT_KERAS:
            first = positional_arg(original_node, 0)
            result = self._concat(
                original_node, updated_node, 1, first.value if first is not None else None
            )
        elif name == "BatchNormalization":
            result = self._batchnorm(original_node, updated_node)
        elif name == "set_image_data_format":
            result = self._set_format(original_node, updated_node)
        elif name == "expand_dims" and receiver_name(original_node.func) in NUMPY:
            result = self._expand_dims(original_node, updated_node)
        elif name in NP_CREATORS and receiver_name(original_node.func) in NUMPY:
            self._np_create(original_node)
        elif name == "reshape":
            result = self._np_reshape(original_node, updated_node)
        # shape arguments and data_format on any call
        current = result if result is not None else updated_node
        shaped = self._shapes(original_node, current, name)
        if shaped is not None:
            current = shaped
        formatted = self._data_format(original_node, current)
        if formatted is not None:
            current = formatted
        return current

    def _shape_finding(
        self, node: cst.BaseExpression, code: str, label: str, new: cst.BaseExpression | None
    ) -> None:
        old = code_of(node)
        if new is None:
            self._report(
                node,
                code,
                f"{label}{old} may be a {self.source_format} shape",
                None,
                AMBIGUOUS,
            )
        else:
            self._report(node, code, f"{label}{old} is {self.source_format} -> {code_of(new)}", new)

    def _shapes(self, original: cst.Call, updated: cst.Call, name: str | None) -> cst.Call | None:
        """KMX101/102/103: shape literals passed to layers, Input and Reshape."""
        jobs: list[tuple[cst.Arg, str, str, int, frozenset[int]]] = []
        time_lead = 1 if name in TIME_FIRST else 0
        one_d = name is not None and name.endswith("1D")
        lengths = IMAGE_OR_1D_LENGTHS if one_d else IMAGE_LENGTHS
        if name not in LAYOUT_FREE:
            arg = keyword_arg(original, "input_shape")
            if arg is not None:
                jobs.append((arg, "KMX101", "input_shape=", time_lead, lengths))
            arg = keyword_arg(original, "batch_input_shape")
            if arg is not None:
                jobs.append((arg, "KMX102", "batch_input_shape=", 1 + time_lead, lengths))
        if name == "Input":
            arg = find_arg(original, "shape", 0)
            if arg is not None:
                jobs.append((arg, "KMX102", "Input shape ", 0, IMAGE_LENGTHS))
            arg = keyword_arg(original, "batch_shape")
            if arg is not None:
                jobs.append((arg, "KMX102", "Input batch_shape ", 1, IMAGE_LENGTHS))
        if name == "Reshape":
            arg = find_arg(original, "target_shape", 0)
            if arg is not None:
                jobs.append((arg, "KMX103", "Reshape target ", 0, IMAGE_LENGTHS))
        current = updated
        for arg, code, label, lead, lens in jobs:
            edit = shape_edit(arg.value, lead, lens, self.to_first)
            if not edit.triggered:
                continue
            self._shape_finding(arg.value, code, label, edit.new_node)
            if edit.new_node is not None:
                current = replace_arg(current, arg, original, edit.new_node)
        return current if current is not updated else None

    def _axis_edit(
        self,
        original: cst.Call,
        updated: cst.Call,
        index: int | None,
        code: str,
        what: str,
        reason: str | None,
    ) -> cst.Call | None:
        """Axis -1 (or 3) <-> 1. ``reason`` not None: report without rewriting."""
        arg = find_arg(original, "axis", index)
        if arg is None:
            return None
        value = int_value(arg.value)
        if self.to_first and value in (-1, 3):
            new_value = 1
        elif not self.to_first and value == 1:
            new_value = -1
        else:
            return None
        new_node = int_node(new_value)
        label = f"{what} axis={code_of(arg.value)}"
        if reason is not None:
            self._report(
                arg.value, code, f"{label} is the {self.source_format} channel axis", None, reason
            )
            return None
        self._report(
            arg.value,
            code,
            f"{label} is the {self.source_format} channel axis -> axis={new_value}",
            new_node,
        )
        return replace_arg(updated, arg, original, new_node)

    def _batchnorm(self, original: cst.Call, updated: cst.Call) -> cst.Call | None:
        return self._axis_edit(original, updated, 0, "KMX201", "BatchNormalization", None)

    def _concat(
        self,
        original: cst.Call,
        updated: cst.Call,
        index: int,
        inputs: cst.BaseExpression | None,
    ) -> cst.Call | None:
        elements = items_of(inputs) if inputs is not None else None
        images = bool(elements) and all(self._is_image(e.value) for e in elements or [])
        reason = None if images else "cannot tell the tensors are images"
        what = code_of(original.func)
        return self._axis_edit(original, updated, index, "KMX202", what, reason)

    def _set_format(self, original: cst.Call, updated: cst.Call) -> cst.Call | None:
        arg = find_arg(original, "data_format", 0)
        if arg is None:
            return None
        new = self._format_string(arg.value)
        if new is None:
            return None
        self._report(
            arg.value,
            "KMX302",
            f"{code_of(original.func)}({code_of(arg.value)}) -> {code_of(new)}",
            new,
        )
        return replace_arg(updated, arg, original, new)

    def _format_string(self, node: cst.BaseExpression) -> cst.SimpleString | None:
        if not isinstance(node, cst.SimpleString) or node.evaluated_value != self.source_format:
            return None
        # the literal's own quotes and prefix are kept: only the word changes
        return node.with_changes(value=node.value.replace(self.source_format, self.target))

    def _data_format(self, original: cst.Call, updated: cst.Call) -> cst.Call | None:
        arg = keyword_arg(original, "data_format")
        if arg is None or last_name(original.func) == "set_image_data_format":
            return None
        new = self._format_string(arg.value)
        if new is None:
            return None
        self._report(
            arg.value, "KMX301", f"data_format={code_of(arg.value)} -> {code_of(new)}", new
        )
        return replace_arg(updated, arg, original, new)

    def _data_reason(self) -> str | None:
        if self.prescan.has_image_layers:
            return None
        return "no convolution or pooling layers in this file, so the data may not be images"

    def _expand_dims(self, original: cst.Call, updated: cst.Call) -> cst.Call | None:
        return self._axis_edit(
            original, updated, 1, "KMX402", code_of(original.func), self._data_reason()
        )

    def _np_create(self, original: cst.Call) -> None:
        """KMX403: ``np.zeros((n, 28, 28, 1))``. Never rewritten: such arrays are often
        filled from data in the old layout, so the fix belongs to a human."""
        if not self.prescan.has_image_layers:
            return
        arg = find_arg(original, "shape", 0)
        elements = items_of(arg.value) if arg is not None else None
        if arg is None or elements is None or len(elements) - 1 not in IMAGE_LENGTHS:
            return
        triggered, _ = rotate([e.value for e in elements[1:]], self.to_first)
        if triggered:
            self._report(
                arg.value,
                "KMX403",
                f"{code_of(original.func)}({code_of(arg.value)}) builds {self.source_format} data",
                None,
                f"make the array in the {self.target} layout by hand",
            )

    def _np_reshape(self, original: cst.Call, updated: cst.Call) -> cst.Call | None:
        """KMX401: ``x.reshape(n, 28, 28, 1)``, ``x.reshape((n, 28, 28, 1))`` and
        ``np.reshape(x, [-1, 28, 28, 1])``: a batch of images with a trailing channel."""
        receiver = receiver_name(original.func)
        if receiver in BACKEND or (receiver in NOT_KERAS and receiver not in NUMPY):
            return None
        if any(a.keyword is not None or a.star != "" for a in original.args):
            return None
        positional = list(original.args)
        if receiver in NUMPY:
            positional = positional[1:]  # np.reshape(x, shape)
        items: Items
        container: cst.BaseExpression | None = None
        if len(positional) == 1:
            container = positional[0].value
            elements = items_of(container)
            if elements is None:
                return None
            items = elements
        else:
            items = positional
        values = [item.value for item in items]
        if len(values) - 1 not in IMAGE_LENGTHS:
            return None
        triggered, rotated = rotate(values[1:], self.to_first)
        if not triggered:
            return None
        span: cst.CSTNode = container if container is not None else original
        shown = code_of(container) if container is not None else code_of(original)
        reason = self._data_reason()
        if rotated is None or reason is not None:
            self._report(
                span,
                "KMX401",
                f"{shown} gives {self.source_format} image data",
                None,
                reason or AMBIGUOUS,
            )
            return None
        new_values = [values[0], *rotated]
        if container is not None:
            assert isinstance(container, (cst.Tuple, cst.List))
            new_container = container.with_changes(elements=with_values(items, new_values))
            self._report(
                span,
                "KMX401",
                f"{shown} gives {self.source_format} image data -> {code_of(new_container)}",
                new_container,
            )
            index = list(original.args).index(positional[0])
            args = list(updated.args)
            args[index] = args[index].with_changes(value=new_container)
            return updated.with_changes(args=args)
        start = len(original.args) - len(positional)
        new_args = [*updated.args[:start], *with_values(updated.args[start:], new_values)]
        new_call = updated.with_changes(args=new_args)
        self._report(
            span,
            "KMX401",
            f"{shown} gives {self.source_format} image data -> {code_of(new_call)}",
            new_call,
        )
        return new_call
