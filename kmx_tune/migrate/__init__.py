"""Find and rewrite the channels_last assumptions in Keras model code.

The rules work on a concrete syntax tree (libcst), so a rewrite changes only the
tokens it must -- commas, spacing, comments and quotes stay exactly as they were.

Every rewrite is an involution: migrating to channels_first and then back with
``to="channels_last"`` gives the original text. A shape ``(H, W, C)`` is rotated to
``(C, H, W)`` only when the result can be rotated back without doubt; where it
could not (two channel-like numbers), the finding is reported and nothing is
rewritten. Code guarded by ``if K.image_data_format() == ...`` is correct for both
layouts and is never touched, nor are shapes computed from data.
"""

from __future__ import annotations

import ast
import difflib
import os
import re
import stat
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Union

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from kmx_tune.errors import KmxError, UsageError

CHANNELS_FIRST = "channels_first"
CHANNELS_LAST = "channels_last"
FORMATS = (CHANNELS_FIRST, CHANNELS_LAST)


@dataclass(frozen=True)
class Rule:
    code: str
    title: str


# The rule table. Codes are stable: tests, --json consumers and users' notes refer to them.
RULES: tuple[Rule, ...] = (
    Rule("KMX101", "hard-coded image shape in input_shape= (or a variable passed as it)"),
    Rule("KMX102", "hard-coded image shape in batch_input_shape=, Input(shape=) or batch_shape="),
    Rule("KMX103", "hard-coded image shape as a Reshape target"),
    Rule("KMX201", "BatchNormalization on the channels_last axis"),
    Rule("KMX202", "concatenation on the channels_last axis"),
    Rule("KMX301", "explicit data_format= on a layer"),
    Rule("KMX302", "K.set_image_data_format() call"),
    Rule("KMX401", "numpy reshape that adds a trailing channel axis"),
    Rule("KMX402", "np.expand_dims(x, -1) on image data"),
    Rule("KMX403", "numpy array created in an image layout (reported, never rewritten)"),
    Rule("E999", "file could not be parsed (reported, never rewritten)"),
)
RULE_CODES = frozenset(rule.code for rule in RULES)


@dataclass(frozen=True)
class Finding:
    """One place in one file. ``replacement`` is the suggested code for the span at
    ``line``/``col`` (1-based), or None where kmx-tune will not rewrite it."""

    path: str
    line: int
    col: int
    code: str
    message: str
    replacement: str | None
    fixable: bool

    def to_json(self, fixed: bool = False) -> dict[str, object]:
        return {
            "file": self.path,
            "line": self.line,
            "col": self.col,
            "code": self.code,
            "message": self.message,
            "replacement": self.replacement,
            "fixable": self.fixable,
            "fixed": fixed,
        }


@dataclass(frozen=True)
class FileResult:
    """The findings in one file, its text before and after the fixable rewrites.
    ``new_source`` is None when the file could not be parsed."""

    path: str
    findings: tuple[Finding, ...]
    source: bytes
    new_source: bytes | None
    encoding: str = "utf-8"

    @property
    def parse_error(self) -> bool:
        return self.new_source is None

    @property
    def changed(self) -> bool:
        return self.new_source is not None and self.new_source != self.source

    def diff(self) -> str:
        """A unified diff of the rewrite, empty when nothing changes."""
        if not self.changed or self.new_source is None:
            return ""
        old = self.source.decode(self.encoding).splitlines(keepends=True)
        new = self.new_source.decode(self.encoding).splitlines(keepends=True)
        # git's a/ b/ prefixes for relative paths; an absolute path is shown as it is
        before, after = (self.path, self.path)
        if not os.path.isabs(self.path):
            before, after = f"a/{self.path}", f"b/{self.path}"
        lines = difflib.unified_diff(old, new, fromfile=before, tofile=after)
        out = []
        for line in lines:
            out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
        return "".join(out)


@dataclass(frozen=True)
class MigrationResult:
    to: str
    files: tuple[FileResult, ...]

    @property
    def findings(self) -> tuple[Finding, ...]:
        return tuple(f for fr in self.files for f in fr.findings)

    @property
    def fixable_count(self) -> int:
        return sum(1 for f in self.findings if f.fixable)

    @property
    def unfixable_count(self) -> int:
        return sum(1 for f in self.findings if not f.fixable)


# ---------------------------------------------------------------------------------------
# Knowledge about Keras, as data.

# Layers whose output is an image tensor (channels on the data_format axis).
_IMAGE_LAYER = re.compile(
    r"^(Conv[123]D|Conv[23]DTranspose|Deconv(olution)?[23]D|Convolution[123]D"
    r"|SeparableConv(olution)?[12]D|DepthwiseConv2D|MaxPool(ing)?[123]D"
    r"|AveragePool(ing)?[123]D|AvgPool[123]D|UpSampling[123]D|ZeroPadding[123]D"
    r"|Cropping[123]D|ConvLSTM2D|LocallyConnected[12]D)$"
)
# Pretrained image models: a file that uses them is image code.
_IMAGE_MODEL = re.compile(
    r"^(VGG\d+|ResNet\d+\w*|InceptionV3|InceptionResNetV2|Xception|MobileNet\w*"
    r"|DenseNet\d+|NASNet\w+)$"
)
# Layers that keep the layout of their input: an image in, an image out.
_PRESERVING = frozenset(
    {
        "BatchNormalization",
        "Activation",
        "Dropout",
        "SpatialDropout1D",
        "SpatialDropout2D",
        "SpatialDropout3D",
        "LeakyReLU",
        "PReLU",
        "ELU",
        "ReLU",
        "ThresholdedReLU",
        "Softmax",
        "GaussianNoise",
        "GaussianDropout",
        "AlphaDropout",
    }
)
# Merge layers (class and functional spellings): an image when all inputs are.
_MERGE = frozenset(
    {
        "Add", "add", "Subtract", "subtract", "Multiply", "multiply", "Average", "average",
        "Maximum", "maximum", "Minimum", "minimum", "Concatenate", "concatenate",
    }
)  # fmt: skip
# Layers for which an input_shape= says nothing about image layout.
_LAYOUT_FREE = frozenset(
    {
        "Dense", "Embedding", "LSTM", "GRU", "SimpleRNN", "CuDNNLSTM", "CuDNNGRU", "RNN",
        "Bidirectional", "Masking", "LSTMCell", "GRUCell", "SimpleRNNCell",
    }
)  # fmt: skip
# Layers whose input has a time axis before the image: (T, H, W, C) -> (T, C, H, W).
_TIME_FIRST = frozenset({"ConvLSTM2D", "TimeDistributed"})
# Receivers whose .concatenate / .reshape / .expand_dims are not Keras calls or numpy data.
_NOT_KERAS = frozenset({"np", "numpy", "onp", "jnp", "tf", "torch", "scipy", "mx", "nd"})
_NUMPY = frozenset({"np", "numpy"})
_BACKEND = frozenset({"K", "backend"})
_NP_CREATORS = frozenset({"zeros", "ones", "empty", "full"})
_CHANNEL_COUNTS = frozenset({"1", "3", "4"})
_GUARD_CALLS = frozenset({"image_data_format", "image_dim_ordering"})


def _name(node: cst.BaseExpression) -> str | None:
    """The last name of ``a.b.c`` or ``c``."""
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        return node.attr.value
    return None


def _root(node: cst.BaseExpression) -> str | None:
    """The first name of ``a.b.c``; None for a bare name."""
    if not isinstance(node, cst.Attribute):
        return None
    value: cst.BaseExpression = node.value
    while isinstance(value, cst.Attribute):
        value = value.value
    return value.value if isinstance(value, cst.Name) else None


def _receiver(node: cst.BaseExpression) -> str | None:
    """``np`` for ``np.reshape``; ``x`` for ``x.reshape``; None when not a plain name."""
    if isinstance(node, cst.Attribute) and isinstance(node.value, cst.Name):
        return node.value.value
    return None


def _int_value(node: cst.BaseExpression) -> int | None:
    if isinstance(node, cst.Integer) and node.value.isdigit():
        return int(node.value)
    if (
        isinstance(node, cst.UnaryOperation)
        and isinstance(node.operator, cst.Minus)
        and isinstance(node.expression, cst.Integer)
        and node.expression.value.isdigit()
    ):
        return -int(node.expression.value)
    return None


def _int_node(value: int) -> cst.BaseExpression:
    if value < 0:
        return cst.UnaryOperation(operator=cst.Minus(), expression=cst.Integer(str(-value)))
    return cst.Integer(str(value))


def _is_channel(node: cst.BaseExpression) -> bool:
    return isinstance(node, cst.Integer) and node.value in _CHANNEL_COUNTS


def _kwarg(call: cst.Call, name: str) -> cst.Arg | None:
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == name:
            return arg
    return None


def _positional(call: cst.Call, index: int) -> cst.Arg | None:
    plain = [a for a in call.args if a.keyword is None and a.star == ""]
    return plain[index] if index < len(plain) else None


def _arg(call: cst.Call, name: str, index: int | None) -> cst.Arg | None:
    found = _kwarg(call, name)
    if found is None and index is not None:
        found = _positional(call, index)
    return found


def _paren_width(node: cst.CSTNode) -> int:
    """libcst positions a parenthesised expression after its "(": the width of the
    parentheses on the same line, so a finding points at the "(" as linters do."""
    width = 0
    for lpar in getattr(node, "lpar", ()):
        if not isinstance(lpar.whitespace_after, cst.SimpleWhitespace):
            return 0
        width += 1 + len(lpar.whitespace_after.value)
    return width


def _code(node: cst.CSTNode) -> str:
    return cst.Module(body=[]).code_for_node(node)


def _is_guard(test: cst.BaseExpression) -> bool:
    """True when an ``if`` test asks which image layout is in effect."""
    finder = _GuardFinder()
    test.visit(finder)
    return finder.found


class _GuardFinder(cst.CSTVisitor):
    def __init__(self) -> None:
        super().__init__()
        self.found = False

    def visit_Call(self, node: cst.Call) -> None:
        if _name(node.func) in _GUARD_CALLS:
            self.found = True


class _Prescan(cst.CSTVisitor):
    """What the whole file tells us before any rule runs: does it use image layers,
    and which variable names are passed as an input shape."""

    def __init__(self) -> None:
        super().__init__()
        self.has_image_layers = False
        self.shape_names: set[str] = set()

    def visit_Name(self, node: cst.Name) -> None:
        if _IMAGE_LAYER.match(node.value) or _IMAGE_MODEL.match(node.value):
            self.has_image_layers = True

    def visit_Call(self, node: cst.Call) -> None:
        for kw in ("input_shape", "batch_input_shape"):
            arg = _kwarg(node, kw)
            if arg is not None and isinstance(arg.value, cst.Name):
                self.shape_names.add(arg.value.value)
        if _name(node.func) == "Input":
            arg = _arg(node, "shape", 0)
            if arg is not None and isinstance(arg.value, cst.Name):
                self.shape_names.add(arg.value.value)


# ---------------------------------------------------------------------------------------
# Shapes: the one place that decides how a tuple is rotated.

_Items = Sequence[Union[cst.Element, cst.Arg]]
_NOT_REWRITTEN = "not rewritten"


def _rotate(
    values: list[cst.BaseExpression], to_first: bool
) -> tuple[bool, list[cst.BaseExpression] | None]:
    """(triggered, new values or None when ambiguous) for the spatial+channel part.

    To channels_first, ``(..., C)`` becomes ``(C, ...)``; back, ``(C, ...)`` becomes
    ``(..., C)``. Each is done only when the other can undo it: the element that ends
    up last (or first) must not itself look like a channel count."""
    if to_first:
        if not _is_channel(values[-1]):
            return False, None
        if _is_channel(values[0]) or _is_channel(values[-2]):
            return True, None
        return True, [values[-1], *values[:-1]]
    # back: a second channel-like number right after the first, as in (3, 3, 384),
    # is read as a channels_last shape and not reported; (3, 28, 3) is ambiguous
    if not _is_channel(values[0]) or _is_channel(values[1]):
        return False, None
    if _is_channel(values[-1]):
        return True, None
    return True, [*values[1:], values[0]]


def _items_of(node: cst.BaseExpression) -> list[cst.Element] | None:
    if isinstance(node, (cst.Tuple, cst.List)) and all(
        type(e) is cst.Element for e in node.elements
    ):
        return [e for e in node.elements if isinstance(e, cst.Element)]
    return None


def _with_values(
    items: _Items, values: Sequence[cst.BaseExpression]
) -> list[Any]:  # Element or Arg, as given
    # keep every comma and its whitespace where it was; move only the values
    return [item.with_changes(value=value) for item, value in zip(items, values)]


@dataclass(frozen=True)
class _ShapeEdit:
    triggered: bool
    new_node: cst.BaseExpression | None


def _shape_edit(
    node: cst.BaseExpression, lead: int, lengths: frozenset[int], to_first: bool
) -> _ShapeEdit:
    """Rotate the literal tuple/list ``node``, keeping its first ``lead`` elements
    (batch and time axes) in place. Non-literal shapes are left alone."""
    elements = _items_of(node)
    if elements is None:
        return _ShapeEdit(False, None)
    values = [e.value for e in elements]
    spatial = values[lead:]
    if len(spatial) not in lengths:
        return _ShapeEdit(False, None)
    triggered, rotated = _rotate(spatial, to_first)
    if not triggered or rotated is None:
        return _ShapeEdit(triggered, None)
    assert isinstance(node, (cst.Tuple, cst.List))
    new_elements = _with_values(elements, [*values[:lead], *rotated])
    return _ShapeEdit(True, node.with_changes(elements=new_elements))


_IMAGE_LENGTHS = frozenset({3, 4})  # (H, W, C) and (D, H, W, C)
_IMAGE_OR_1D_LENGTHS = frozenset({2, 3, 4})  # plus (steps, C) for 1-D layers


# ---------------------------------------------------------------------------------------
# The transformer.


class _Migrator(cst.CSTTransformer):
    METADATA_DEPENDENCIES = (PositionProvider,)

    def __init__(self, path: str, to: str, prescan: _Prescan) -> None:
        super().__init__()
        self.path = path
        self.to_first = to == CHANNELS_FIRST
        self.target = to
        self.source_format = CHANNELS_LAST if self.to_first else CHANNELS_FIRST
        self.prescan = prescan
        self.findings: list[Finding] = []
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
        col = pos.start.column + 1 - _paren_width(node)
        if replacement is None:
            message = f"{message} [{_NOT_REWRITTEN}: {reason}]"
        self.findings.append(
            Finding(
                path=self.path,
                line=pos.start.line,
                col=col,
                code=code,
                message=message,
                replacement=None if replacement is None else _code(replacement),
                fixable=replacement is not None,
            )
        )

    @property
    def _guarded(self) -> bool:
        return self._guard_depth > 0

    def visit_If(self, node: cst.If) -> None:
        if _is_guard(node.test):
            self._guards.add(id(node))
            self._guard_depth += 1

    def leave_If(self, original_node: cst.If, updated_node: cst.If) -> cst.BaseStatement:
        if id(original_node) in self._guards:
            self._guard_depth -= 1
        return updated_node

    def visit_IfExp(self, node: cst.IfExp) -> None:
        if _is_guard(node.test):
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
            layer = _name(node.func.func)
            inputs = node.args[0].value if node.args else None
        else:  # functional merge, or Input(...)
            layer = _name(node.func)
            inputs = node.args[0].value if node.args else None
            if layer == "Input":
                shape = _arg(node, "shape", 0)
                elements = _items_of(shape.value) if shape is not None else None
                return (
                    elements is not None
                    and len(elements) in _IMAGE_LENGTHS
                    and (_is_channel(elements[-1].value) or _is_channel(elements[0].value))
                )
            if layer not in _MERGE or _root(node.func) in _NOT_KERAS:
                return False
        if layer is None or inputs is None:
            return False
        if _IMAGE_LAYER.match(layer):
            return True
        if layer in _PRESERVING:
            return self._is_image(inputs)
        if layer in _MERGE:
            elements = _items_of(inputs)
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
            edit = _shape_edit(original_node.value, 0, _IMAGE_LENGTHS, self.to_first)
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
        name = _name(original_node.func)
        # a layer applied to its inputs: Concatenate(axis=-1)([a, b])
        if isinstance(original_node.func, cst.Call) and isinstance(updated_node.func, cst.Call):
            inner = original_node.func
            if _name(inner.func) == "Concatenate":
                inputs = original_node.args[0].value if original_node.args else None
                new_inner = self._concat(inner, updated_node.func, 0, inputs)
                if new_inner is not None:
                    return updated_node.with_changes(func=new_inner)
            return updated_node
        result: cst.Call | None = None
        if name == "Concatenate" and id(original_node) not in self._applied_layers:
            result = self._concat(original_node, updated_node, 0, None)
        elif name == "concatenate" and _root(original_node.func) not in _NOT_KERAS:
            first = _positional(original_node, 0)
            result = self._concat(
                original_node, updated_node, 1, first.value if first is not None else None
            )
        elif name == "BatchNormalization":
            result = self._batchnorm(original_node, updated_node)
        elif name == "set_image_data_format":
            result = self._set_format(original_node, updated_node)
        elif name == "expand_dims" and _receiver(original_node.func) in _NUMPY:
            result = self._expand_dims(original_node, updated_node)
        elif name in _NP_CREATORS and _receiver(original_node.func) in _NUMPY:
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

    def _replace_arg(
        self,
        updated: cst.Call,
        original_arg: cst.Arg,
        original: cst.Call,
        new_value: cst.BaseExpression,
    ) -> cst.Call:
        index = list(original.args).index(original_arg)
        args = list(updated.args)
        args[index] = args[index].with_changes(value=new_value)
        return updated.with_changes(args=args)

    def _shape_finding(
        self, node: cst.BaseExpression, code: str, label: str, new: cst.BaseExpression | None
    ) -> None:
        old = _code(node)
        if new is None:
            self._report(
                node,
                code,
                f"{label}{old} may be a {self.source_format} shape",
                None,
                "more than one element looks like a channel count (1, 3 or 4)",
            )
        else:
            self._report(node, code, f"{label}{old} is {self.source_format} -> {_code(new)}", new)

    def _shapes(self, original: cst.Call, updated: cst.Call, name: str | None) -> cst.Call | None:
        """KMX101/102/103: shape literals passed to layers, Input and Reshape."""
        jobs: list[tuple[cst.Arg, str, str, int, frozenset[int]]] = []
        time_lead = 1 if name in _TIME_FIRST else 0
        one_d = name is not None and name.endswith("1D")
        lengths = _IMAGE_OR_1D_LENGTHS if one_d else _IMAGE_LENGTHS
        if name not in _LAYOUT_FREE:
            arg = _kwarg(original, "input_shape")
            if arg is not None:
                jobs.append((arg, "KMX101", "input_shape=", time_lead, lengths))
            arg = _kwarg(original, "batch_input_shape")
            if arg is not None:
                jobs.append((arg, "KMX102", "batch_input_shape=", 1 + time_lead, lengths))
        if name == "Input":
            arg = _arg(original, "shape", 0)
            if arg is not None:
                jobs.append((arg, "KMX102", "Input shape ", 0, _IMAGE_LENGTHS))
            arg = _kwarg(original, "batch_shape")
            if arg is not None:
                jobs.append((arg, "KMX102", "Input batch_shape ", 1, _IMAGE_LENGTHS))
        if name == "Reshape":
            arg = _arg(original, "target_shape", 0)
            if arg is not None:
                jobs.append((arg, "KMX103", "Reshape target ", 0, _IMAGE_LENGTHS))
        current = updated
        for arg, code, label, lead, lens in jobs:
            edit = _shape_edit(arg.value, lead, lens, self.to_first)
            if not edit.triggered:
                continue
            self._shape_finding(arg.value, code, label, edit.new_node)
            if edit.new_node is not None:
                current = self._replace_arg(current, arg, original, edit.new_node)
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
        arg = _arg(original, "axis", index)
        if arg is None:
            return None
        value = _int_value(arg.value)
        if self.to_first and value in (-1, 3):
            new_value = 1
        elif not self.to_first and value == 1:
            new_value = -1
        else:
            return None
        new_node = _int_node(new_value)
        label = f"{what} axis={_code(arg.value)}"
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
        return self._replace_arg(updated, arg, original, new_node)

    def _batchnorm(self, original: cst.Call, updated: cst.Call) -> cst.Call | None:
        return self._axis_edit(original, updated, 0, "KMX201", "BatchNormalization", None)

    def _concat(
        self,
        original: cst.Call,
        updated: cst.Call,
        index: int,
        inputs: cst.BaseExpression | None,
    ) -> cst.Call | None:
        elements = _items_of(inputs) if inputs is not None else None
        images = bool(elements) and all(self._is_image(e.value) for e in elements or [])
        reason = None if images else "cannot tell the tensors are images"
        what = _code(original.func)
        return self._axis_edit(original, updated, index, "KMX202", what, reason)

    def _set_format(self, original: cst.Call, updated: cst.Call) -> cst.Call | None:
        arg = _arg(original, "data_format", 0)
        if arg is None:
            return None
        new = self._format_string(arg.value)
        if new is None:
            return None
        self._report(
            arg.value, "KMX302", f"{_code(original.func)}({_code(arg.value)}) -> {_code(new)}", new
        )
        return self._replace_arg(updated, arg, original, new)

    def _format_string(self, node: cst.BaseExpression) -> cst.SimpleString | None:
        if not isinstance(node, cst.SimpleString) or node.evaluated_value != self.source_format:
            return None
        # the literal's own quotes and prefix are kept: only the word changes
        return node.with_changes(value=node.value.replace(self.source_format, self.target))

    def _data_format(self, original: cst.Call, updated: cst.Call) -> cst.Call | None:
        arg = _kwarg(original, "data_format")
        if arg is None or _name(original.func) == "set_image_data_format":
            return None
        new = self._format_string(arg.value)
        if new is None:
            return None
        self._report(arg.value, "KMX301", f"data_format={_code(arg.value)} -> {_code(new)}", new)
        return self._replace_arg(updated, arg, original, new)

    def _data_reason(self) -> str | None:
        if self.prescan.has_image_layers:
            return None
        return "no convolution or pooling layers in this file, so the data may not be images"

    def _expand_dims(self, original: cst.Call, updated: cst.Call) -> cst.Call | None:
        return self._axis_edit(
            original, updated, 1, "KMX402", _code(original.func), self._data_reason()
        )

    def _np_create(self, original: cst.Call) -> None:
        """KMX403: ``np.zeros((n, 28, 28, 1))``. Never rewritten: such arrays are often
        filled from data in the old layout, so the fix belongs to a human."""
        if not self.prescan.has_image_layers:
            return
        arg = _arg(original, "shape", 0)
        elements = _items_of(arg.value) if arg is not None else None
        if arg is None or elements is None or len(elements) - 1 not in _IMAGE_LENGTHS:
            return
        triggered, _ = _rotate([e.value for e in elements[1:]], self.to_first)
        if triggered:
            self._report(
                arg.value,
                "KMX403",
                f"{_code(original.func)}({_code(arg.value)}) builds {self.source_format} data",
                None,
                f"make the array in the {self.target} layout by hand",
            )

    def _np_reshape(self, original: cst.Call, updated: cst.Call) -> cst.Call | None:
        """KMX401: ``x.reshape(n, 28, 28, 1)``, ``x.reshape((n, 28, 28, 1))`` and
        ``np.reshape(x, [-1, 28, 28, 1])``: a batch of images with a trailing channel."""
        receiver = _receiver(original.func)
        if receiver in _BACKEND or (receiver in _NOT_KERAS and receiver not in _NUMPY):
            return None
        if any(a.keyword is not None or a.star != "" for a in original.args):
            return None
        positional = list(original.args)
        if receiver in _NUMPY:
            positional = positional[1:]  # np.reshape(x, shape)
        items: _Items
        container: cst.BaseExpression | None = None
        if len(positional) == 1:
            container = positional[0].value
            elements = _items_of(container)
            if elements is None:
                return None
            items = elements
        else:
            items = positional
        values = [item.value for item in items]
        if len(values) - 1 not in _IMAGE_LENGTHS:
            return None
        triggered, rotated = _rotate(values[1:], self.to_first)
        if not triggered:
            return None
        span: cst.CSTNode = container if container is not None else original
        shown = _code(container) if container is not None else _code(original)
        reason = self._data_reason()
        if rotated is None or reason is not None:
            self._report(
                span,
                "KMX401",
                f"{shown} gives {self.source_format} image data",
                None,
                reason or "more than one element looks like a channel count (1, 3 or 4)",
            )
            return None
        new_values = [values[0], *rotated]
        if container is not None:
            assert isinstance(container, (cst.Tuple, cst.List))
            new_container = container.with_changes(elements=_with_values(items, new_values))
            self._report(
                span,
                "KMX401",
                f"{shown} gives {self.source_format} image data -> {_code(new_container)}",
                new_container,
            )
            index = list(original.args).index(positional[0])
            args = list(updated.args)
            args[index] = args[index].with_changes(value=new_container)
            return updated.with_changes(args=args)
        start = len(original.args) - len(positional)
        new_args = [*updated.args[:start], *_with_values(updated.args[start:], new_values)]
        new_call = updated.with_changes(args=new_args)
        self._report(
            span,
            "KMX401",
            f"{shown} gives {self.source_format} image data -> {_code(new_call)}",
            new_call,
        )
        return new_call


# ---------------------------------------------------------------------------------------
# Entry points.


def _check_to(to: str) -> None:
    if to not in FORMATS:
        raise UsageError(f"--to must be channels_first or channels_last, not {to!r}.")


def migrate_source(
    source: str | bytes, to: str = CHANNELS_FIRST, path: str = "<string>"
) -> FileResult:
    """Find the findings in one file's text and compute the rewritten text. Pure."""
    _check_to(to)
    raw = source.encode("utf-8") if isinstance(source, str) else source
    try:
        module = cst.parse_module(raw)
    except cst.ParserSyntaxError as exc:
        line, col, why = _syntax_error(raw, exc)
        error = Finding(path, line, col, "E999", f"could not parse: {why}", None, False)
        return FileResult(path, (error,), raw, None)
    except (UnicodeDecodeError, SyntaxError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, UnicodeDecodeError) or "encoding" in first:
            first += "; save the file as UTF-8, or declare its encoding (# -*- coding: latin-1 -*-)"
        error = Finding(path, 1, 1, "E999", f"could not parse: {first}", None, False)
        return FileResult(path, (error,), raw, None)
    prescan = _Prescan()
    module.visit(prescan)
    migrator = _Migrator(path, to, prescan)
    new_module = MetadataWrapper(module, unsafe_skip_copy=True).visit(migrator)
    findings = tuple(sorted(migrator.findings, key=lambda f: (f.line, f.col, f.code)))
    if module.bytes != raw:
        # libcst would not give this file back byte for byte (it drops the last "\r"
        # of old-Mac line endings): report, never rewrite
        why = (
            "libcst cannot reproduce this file byte for byte (CR-only line endings?); edit by hand"
        )
        findings = tuple(
            replace(
                f,
                message=f"{f.message} [{_NOT_REWRITTEN}: {why}]",
                replacement=None,
                fixable=False,
            )
            if f.fixable
            else f
            for f in findings
        )
        return FileResult(path, findings, raw, raw, module.encoding)
    return FileResult(path, findings, raw, new_module.bytes, module.encoding)


def _syntax_error(raw: bytes, exc: cst.ParserSyntaxError) -> tuple[int, int, str]:
    """Where and why, in Python's words: libcst's message lists every token it
    expected, and its position can be a line late."""
    try:
        ast.parse(raw)
    except SyntaxError as py_exc:
        return py_exc.lineno or 1, py_exc.offset or 1, py_exc.msg
    except ValueError:  # e.g. null bytes
        pass
    return exc.raw_line, exc.raw_column + 1, "syntax this version of libcst does not know"


def iter_python_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Files given by name, and the .py files under given folders (hidden folders,
    __pycache__ and site-packages skipped), each once, folders in sorted order."""
    seen: set[Path] = set()
    for path in paths:
        if not path.exists():
            raise UsageError(f"{path} does not exist. Pass a .py file or a folder of them.")
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*.py")
                if p.is_file()
                and not any(
                    part.startswith(".") or part in ("__pycache__", "site-packages")
                    for part in p.relative_to(path).parts[:-1]
                )
            )
        else:
            found = [path]
        for file in found:
            key = file.resolve()
            if key not in seen:
                seen.add(key)
                yield file


def migrate_paths(paths: Sequence[Path], to: str = CHANNELS_FIRST) -> MigrationResult:
    _check_to(to)
    results = []
    for file in iter_python_files(paths):
        try:
            data = file.read_bytes()
        except OSError as exc:
            error = Finding(str(file), 1, 1, "E902", f"could not read: {exc.strerror}", None, False)
            results.append(FileResult(str(file), (error,), b"", None))
            continue
        results.append(migrate_source(data, to, str(file)))
    return MigrationResult(to, tuple(results))


def write_file(result: FileResult) -> bool:
    """Write the rewritten text in place, atomically (a temporary file in the same
    folder, then os.replace), keeping the file's mode. Returns True if written."""
    if not result.changed or result.new_source is None:
        return False
    target = Path(os.path.realpath(result.path))
    try:
        _replace_atomically(target, result.new_source)
    except OSError as exc:
        raise KmxError(
            f"could not write {result.path}: {exc.strerror or exc}. Check that the file and its "
            "folder are writable; files before it in the list were already rewritten."
        ) from exc
    return True


def _replace_atomically(target: Path, data: bytes) -> None:
    mode = stat.S_IMODE(target.stat().st_mode)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".kmx-tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
