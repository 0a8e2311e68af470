"""Attribute names a program gives its own values: the fields of the namedtuples it makes.

The checker refuses an attribute name that no Flowmetal value has (`surface.ALL_ATTRIBUTES`),
but a program's `namedtuple("Point", "x y")` makes values with attributes `x` and `y`. Those
names are found here, in the program's text: the field names written as literals in calls to
`namedtuple(...)` or `NamedTuple(...)` (under any module prefix). The compiler routes every such
name through the machine's checked getattr (`surface.is_routed`), where only the classes that
really have the field answer to it. Fields given by a computed value are not seen: reading them
as attributes is refused (index the tuple, or use `_asdict()`).
"""

from __future__ import annotations

import ast

__all__ = ["declared_attributes"]

_MAKERS = frozenset({"namedtuple", "NamedTuple"})


def _callee_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _strings(node: ast.expr) -> list[str]:
    """Field names written literally: `"x y"`, `"x, y"`, `["x", "y"]`, `[("x", int), ...]`."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value.replace(",", " ").split()
    if isinstance(node, ast.List | ast.Tuple):
        out: list[str] = []
        for elt in node.elts:
            if isinstance(elt, ast.Tuple | ast.List) and elt.elts:
                elt = elt.elts[0]
            if isinstance(elt, ast.Constant) and isinstance(elt.value, str):
                out.append(elt.value)
        return out
    return []


def declared_attributes(tree: ast.AST) -> frozenset[str]:
    """Every field name the program's namedtuple calls declare (see the module docstring)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or _callee_name(node.func) not in _MAKERS:
            continue
        if len(node.args) >= 2:
            names.update(_strings(node.args[1]))
        for kw in node.keywords:
            if kw.arg in ("field_names", "fields"):
                names.update(_strings(kw.value))
            elif kw.arg is not None and _callee_name(node.func) == "NamedTuple":
                names.add(kw.arg)  # NamedTuple("P", x=int, y=int)
    return frozenset(n for n in names if n.isidentifier() and not n.startswith("_"))
