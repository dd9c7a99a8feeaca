"""The transformer: walks one file's tree, keeps track of guarded code and of which
names hold image tensors, and applies the rules."""

from __future__ import annotations

from pathlib import Path

import libcst as cst
from libcst.metadata import PositionProvider

from kmx_tune.formats import CHANNELS_FIRST, other
from kmx_tune.migrate.knowledge import IMAGE_LAYER, MERGE, NOT_KERAS, PRESERVING
from kmx_tune.migrate.loads import environ_assign
from kmx_tune.migrate.model import NOT_REWRITTEN, CodeFinding
from kmx_tune.migrate.nodes import code_of, find_arg, items_of, last_name, paren_width, root_name
from kmx_tune.migrate.prescan import Prescan, is_guard
from kmx_tune.migrate.rules import (
    APPLIED_RULES,
    CALL_RULES,
    EVERY_CALL,
    SUBSCRIPT_RULES,
    assigned_shape,
)
from kmx_tune.migrate.shapes import IMAGE_LENGTHS, is_channel


class Migrator(cst.CSTTransformer):
    """Walks one file, migrating it to the layout *to*; the rules (kmx_tune.migrate.rules)
    see it as their :class:`~kmx_tune.migrate.rules.Site`. Its findings are in
    ``findings``, in the order they were met."""

    METADATA_DEPENDENCIES = (PositionProvider,)

    def __init__(self, path: str, to: str, prescan: Prescan, folder: Path | None = None) -> None:
        super().__init__()
        self.path = path
        self.folder = folder
        self.to_first = to == CHANNELS_FIRST
        self.target = to
        self.source_format = other(to)
        self.prescan = prescan
        self.findings: list[CodeFinding] = []
        self._guard_depth = 0
        self._guards: set[int] = set()
        self._applied_layers: set[int] = set()
        self._scopes: list[dict[str, bool]] = [{}]

    # -- bookkeeping ---------------------------------------------------------------------

    def report(
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

    def is_image(self, node: cst.BaseExpression) -> bool:
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
            return self.is_image(inputs)
        if layer in MERGE:
            elements = items_of(inputs)
            return bool(elements) and all(self.is_image(e.value) for e in elements or [])
        return False

    def leave_Assign(
        self, original_node: cst.Assign, updated_node: cst.Assign
    ) -> cst.BaseSmallStatement:
        if not self._guarded:
            environ_assign(self, original_node)  # KMX602, reported only
        if len(original_node.targets) != 1:
            return updated_node
        target = original_node.targets[0].target
        if not isinstance(target, cst.Name):
            return updated_node
        # remembered for KMX202 (is `x` an image?), guarded or not
        self._scopes[-1][target.value] = self.is_image(original_node.value)
        if self._guarded:
            return updated_node
        new = assigned_shape(self, target.value, original_node, updated_node)
        return updated_node if new is None else new

    # -- subscripts and calls --------------------------------------------------------------

    def leave_Subscript(
        self, original_node: cst.Subscript, updated_node: cst.Subscript
    ) -> cst.BaseExpression:
        if self._guarded:
            return updated_node
        current = updated_node
        for rule in SUBSCRIPT_RULES:
            new = rule(self, original_node, current)
            if new is not None:
                current = new
        return current

    def is_applied(self, call: cst.Call) -> bool:
        return id(call) in self._applied_layers

    def visit_Call(self, node: cst.Call) -> None:
        if isinstance(node.func, cst.Call):
            self._applied_layers.add(id(node.func))

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.BaseExpression:
        """Dispatch through the rule tables: the call's own rule, then the rules for
        arguments that any call may carry."""
        if self._guarded:
            return updated_node
        if isinstance(original_node.func, cst.Call) and isinstance(updated_node.func, cst.Call):
            applied = APPLIED_RULES.get(last_name(original_node.func.func) or "")
            new = applied(self, original_node, updated_node) if applied is not None else None
            return updated_node if new is None else new
        own = CALL_RULES.get(last_name(original_node.func) or "")
        rules = EVERY_CALL if own is None else (own, *EVERY_CALL)
        current = updated_node
        for rule in rules:
            new = rule(self, original_node, current)
            if new is not None:
                current = new
        return current
