"""What the wait analysis (`classify.py`) knows about the program's own classes.

A call `Point(1, 2)` runs the `__init__` methods of Point and its ancestors; a call
`x.area()` runs whichever method named `area` the receiver's class has — or a built-in
method of that name, or whatever callable was stored as an attribute of that name. Both are
effect-free (so their caller can stay plain CPython code) when every candidate is:

* for a class bound once by an undecorated `class` statement whose ancestors are all such
  classes or `object`/the exception types: the `__init__` defs among them;
* for a method name: every def of that name directly in a class body, when none of them is
  decorated (other than `staticmethod`/`classmethod`), no class body binds the name otherwise,
  no attribute of that name is assigned a value that could be a function, and no durable
  object has a method of that name (`task.result()`, `cb.wait()`, ...).

Anything else might wait, as before.
"""

from __future__ import annotations

import ast

from flowmetal.lang.surface import FLOWMETAL_MEMBERS, HTTP_MEMBERS, KINDS

# Method names some durable value (or the generators' machine operations) has: a call of
# one of these might wait whatever the program defines.
WAITING_METHOD_NAMES: frozenset[str] = frozenset(
    FLOWMETAL_MEMBERS | HTTP_MEMBERS | {"send", "throw", "close"}
    | {m for k in KINDS.values() if k.group == "flowmetal" for m in k.methods}
)

_SIMPLE_DECORATORS = frozenset({"staticmethod", "classmethod"})
# values that cannot be functions (an attribute holding one is plain data)
_DATA_NODES = (ast.Constant, ast.List, ast.Tuple, ast.Dict, ast.Set, ast.ListComp, ast.SetComp, ast.DictComp,
               ast.JoinedStr, ast.BinOp, ast.UnaryOp, ast.Compare, ast.BoolOp)
_DATA_CALLS = frozenset({"list", "dict", "set", "tuple", "int", "float", "str", "bool", "len", "sum", "min",
                         "max", "abs", "round", "sorted", "frozenset", "bytes", "range"})


def _is_data(value: ast.expr | None) -> bool:
    if value is None or isinstance(value, _DATA_NODES):
        return True
    return isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id in _DATA_CALLS


class ProgramClasses:
    """The methods the program's class bodies define, and the names it also uses otherwise."""

    def __init__(self, tree: ast.Module) -> None:
        self.methods: dict[str, list[ast.FunctionDef]] = {}
        self.unclean: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                for stmt in node.body:
                    self._member(stmt)
            elif isinstance(node, ast.Assign):
                for t in node.targets:
                    self._stored(t, node.value)
            elif isinstance(node, ast.AnnAssign | ast.AugAssign):
                self._stored(node.target, node.value)
            elif isinstance(node, ast.Delete):
                for t in node.targets:
                    self._stored(t, None)
            elif isinstance(node, ast.For | ast.comprehension | ast.withitem):
                target = node.optional_vars if isinstance(node, ast.withitem) else node.target
                if target is not None:
                    self._stored(target, ast.Name(id="_", ctx=ast.Load()))

    def _member(self, stmt: ast.stmt) -> None:
        if isinstance(stmt, ast.FunctionDef):
            simple = all(isinstance(d, ast.Name) and d.id in _SIMPLE_DECORATORS for d in stmt.decorator_list)
            if simple:
                self.methods.setdefault(stmt.name, []).append(stmt)
            else:
                self.unclean.add(stmt.name)
            return
        if isinstance(stmt, ast.ClassDef):
            self.unclean.add(stmt.name)
            return
        for node in ast.walk(stmt):  # class attributes: `area = property(...)`, `__radd__ = __add__`
            if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
                self.unclean.add(node.id)

    def _stored(self, target: ast.expr, value: ast.expr | None) -> None:
        for node in ast.walk(target):
            if isinstance(node, ast.Attribute) and not isinstance(node.ctx, ast.Load):
                if value is None or not _is_data(value) or node is not target:
                    self.unclean.add(node.attr)

    def knows(self, name: str) -> bool:
        """Whether the program gives anything this method name."""
        return name in self.methods or name in self.unclean

    def method_defs(self, name: str) -> list[ast.FunctionDef] | None:
        """The defs a call `x.name(...)` may run among the program's, or None if it might run
        something unknown (see the module docstring)."""
        if name in self.unclean or name in WAITING_METHOD_NAMES:
            return None
        return self.methods.get(name, [])


# What else a call of a class may run besides `__init__`: a dataclass's `__init__` calls
# `__post_init__`, an enum's lookup calls `_missing_`.
_ALSO_CALLED = frozenset({"__init__", "__post_init__", "_missing_"})


def init_defs(cls: ast.ClassDef, base_class: object, decorator_ok: object = None) -> list[ast.FunctionDef] | None:
    """The `__init__` defs a call of the class may run: its own and its ancestors'. `base_class`
    maps a base expression to its ClassDef, to "builtin" (object, exception types, the standard
    library's bases that run none of the program's code) or None; `decorator_ok(decorator, class)`
    says whether a class decorator leaves that true (`@dataclass`, `@total_ordering`)."""
    out: list[ast.FunctionDef] = []
    seen: set[int] = set()
    todo = [cls]
    while todo:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if node.keywords or (node.decorator_list and not (
                decorator_ok is not None and all(decorator_ok(d, node) for d in node.decorator_list))):  # type: ignore[operator]
            return None
        for stmt in node.body:
            if isinstance(stmt, ast.FunctionDef) and stmt.name in _ALSO_CALLED:
                if stmt.decorator_list:
                    return None
                out.append(stmt)
            elif not isinstance(stmt, ast.FunctionDef) and any(
                    isinstance(n, ast.Name) and n.id == "__init__" and not isinstance(n.ctx, ast.Load)
                    for n in ast.walk(stmt)):
                return None
        for base in node.bases:
            found = base_class(base, node)  # type: ignore[operator]
            if found is None:
                return None
            if isinstance(found, ast.ClassDef):
                todo.append(found)
    return out
