"""Small questions and edits on libcst nodes, shared by the rules: the name a call is
made on, its arguments, integer literals, and the source text of a node."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Union

import libcst as cst

# the items of a literal tuple/list, or the positional arguments of a call
Items = Sequence[Union[cst.Element, cst.Arg]]


def last_name(node: cst.BaseExpression) -> str | None:
    """The last name of ``a.b.c`` or ``c``."""
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        return node.attr.value
    return None


def root_name(node: cst.BaseExpression) -> str | None:
    """The first name of ``a.b.c``; None for a bare name."""
    if not isinstance(node, cst.Attribute):
        return None
    value: cst.BaseExpression = node.value
    while isinstance(value, cst.Attribute):
        value = value.value
    return value.value if isinstance(value, cst.Name) else None


def receiver_name(node: cst.BaseExpression) -> str | None:
    """``np`` for ``np.reshape``; ``x`` for ``x.reshape``; None when not a plain name."""
    if isinstance(node, cst.Attribute) and isinstance(node.value, cst.Name):
        return node.value.value
    return None


def int_value(node: cst.BaseExpression) -> int | None:
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


def int_node(value: int) -> cst.BaseExpression:
    if value < 0:
        return cst.UnaryOperation(operator=cst.Minus(), expression=cst.Integer(str(-value)))
    return cst.Integer(str(value))


def keyword_arg(call: cst.Call, name: str) -> cst.Arg | None:
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == name:
            return arg
    return None


def positional_arg(call: cst.Call, index: int) -> cst.Arg | None:
    plain = [a for a in call.args if a.keyword is None and a.star == ""]
    return plain[index] if index < len(plain) else None


def find_arg(call: cst.Call, name: str, index: int | None) -> cst.Arg | None:
    """The argument *name*, given by keyword or (with *index*) by position."""
    found = keyword_arg(call, name)
    if found is None and index is not None:
        found = positional_arg(call, index)
    return found


def replace_arg(
    updated: cst.Call,
    original_arg: cst.Arg,
    original: cst.Call,
    new_value: cst.BaseExpression,
) -> cst.Call:
    """*updated* with a new value for the argument that is *original_arg* in *original*."""
    index = list(original.args).index(original_arg)
    args = list(updated.args)
    args[index] = args[index].with_changes(value=new_value)
    return updated.with_changes(args=args)


def items_of(node: cst.BaseExpression) -> list[cst.Element] | None:
    """The elements of a literal tuple or list without ``*x``; None for anything else."""
    if isinstance(node, (cst.Tuple, cst.List)) and all(
        type(e) is cst.Element for e in node.elements
    ):
        return [e for e in node.elements if isinstance(e, cst.Element)]
    return None


def with_values(items: Items, values: Sequence[cst.BaseExpression]) -> list[Any]:
    """*items* (Element or Arg, as given) holding *values* instead."""
    # keep every comma and its whitespace where it was; move only the values
    return [item.with_changes(value=value) for item, value in zip(items, values)]


def paren_width(node: cst.CSTNode) -> int:
    """libcst positions a parenthesised expression after its "(": the width of the
    parentheses on the same line, so a finding points at the "(" as linters do."""
    width = 0
    for lpar in getattr(node, "lpar", ()):
        if not isinstance(lpar.whitespace_after, cst.SimpleWhitespace):
            return 0
        width += 1 + len(lpar.whitespace_after.value)
    return width


def code_of(node: cst.CSTNode) -> str:
    """The source text of *node*, as it is written."""
    return cst.Module(body=[]).code_for_node(node)
