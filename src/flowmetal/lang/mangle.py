"""Private names in class bodies (`self.__count`), mangled as CPython does (`_Counter__count`).

CPython mangles while compiling a class body, but a method that may wait is compiled outside
its class (as a resumable unit, see `lower.py`): so the compiler mangles the whole tree first,
the same way for both kinds of method. A name is mangled when it starts with two underscores,
does not end with two, and appears (as an attribute or a variable) anywhere inside a class
body; the class name loses its leading underscores, and a class named only `_` mangles nothing.
"""

from __future__ import annotations

import ast


def mangled(name: str, class_name: str) -> str:
    if not name.startswith("__") or name.endswith("__") or "." in name:
        return name
    owner = class_name.lstrip("_")
    if not owner:
        return name
    return f"_{owner}{name}"


class _Mangler(ast.NodeTransformer):
    def __init__(self) -> None:
        self.classes: list[str] = []

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        # decorators and bases belong to the enclosing scope
        node.decorator_list = [self.visit(d) for d in node.decorator_list]
        node.bases = [self.visit(b) for b in node.bases]
        self.classes.append(node.name)
        try:
            node.body = [self.visit(s) for s in node.body]
        finally:
            self.classes.pop()
        return node

    def _name(self, name: str) -> str:
        return mangled(name, self.classes[-1]) if self.classes else name

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        self.generic_visit(node)
        node.attr = self._name(node.attr)
        return node

    def visit_Name(self, node: ast.Name) -> ast.AST:
        node.id = self._name(node.id)
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        node.name = self._name(node.name)
        self.generic_visit(node)
        return node

    def visit_arg(self, node: ast.arg) -> ast.AST:
        node.arg = self._name(node.arg)
        return node


def mangle_private_names(tree: ast.Module) -> None:
    """Rewrite `tree` in place (only when it has a class with a private name in it)."""
    if any(isinstance(n, ast.ClassDef) for n in ast.walk(tree)):
        _Mangler().visit(tree)
