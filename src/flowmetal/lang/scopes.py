"""Name resolution for checked programs: which names are local, cell, free or global.

Python's rules, restated for the subset: a name bound anywhere in a function
(parameter, assignment, loop or `with` target, `except ... as`, import, `def`,
`del`) is local to it unless declared `global` or `nonlocal`; other names are
looked up in the enclosing functions (becoming *free* there, and *cells* in
the function that owns them) and finally in the module. Comprehensions and
generator expressions are scopes of their own, except that their first
iterable is evaluated in the enclosing scope.

The compiler needs this for code it lowers into resumable state machines
(whose variables it must store explicitly); plain functions keep CPython's
own scoping.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

FunctionNode = ast.FunctionDef | ast.Lambda | ast.Module | ast.GeneratorExp | ast.ListComp | ast.SetComp | ast.DictComp
COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


@dataclass(eq=False)
class Scope:
    node: ast.AST
    name: str
    qualname: str
    parent: Scope | None
    params: list[str] = field(default_factory=list)
    bound: dict[str, None] = field(default_factory=dict)  # ordered set of local bindings
    declared_global: set[str] = field(default_factory=set)
    declared_nonlocal: set[str] = field(default_factory=set)
    loads: set[str] = field(default_factory=set)
    children: list[Scope] = field(default_factory=list)
    # filled by resolve()
    locals: list[str] = field(default_factory=list)
    cells: list[str] = field(default_factory=list)
    frees: list[str] = field(default_factory=list)
    # bindings of a local name: how many times and whether only by `def`
    binding_count: dict[str, int] = field(default_factory=dict)
    def_nodes: dict[str, ast.FunctionDef] = field(default_factory=dict)
    class_nodes: dict[str, ast.ClassDef] = field(default_factory=dict)  # names bound by `class`

    @property
    def is_module(self) -> bool:
        return isinstance(self.node, ast.Module)

    @property
    def is_comprehension(self) -> bool:
        return isinstance(self.node, COMPREHENSIONS)

    @property
    def is_class(self) -> bool:
        """A class body: its names are the class's attributes, invisible to the functions in it."""
        return isinstance(self.node, ast.ClassDef)

    def method_of(self) -> Scope | None:
        """The class scope this function is defined directly in (None: not a method)."""
        if self.parent is not None and self.parent.is_class and isinstance(self.node, ast.FunctionDef):
            return self.parent
        return None

    def is_local(self, name: str) -> bool:
        return name in self.bound and name not in self.declared_global and name not in self.declared_nonlocal

    def kind_of(self, name: str) -> str:
        """'local', 'cell', 'free' or 'global' as seen from this scope."""
        if self.is_module:
            return "global"
        if name in self.cells:
            return "cell"
        if name in self.frees:
            return "free"
        if name in self.locals:
            return "local"
        return "global"

    def owner_of(self, name: str) -> Scope | None:
        """The function scope whose local `name` this scope's reference means (None: global)."""
        if self.is_module or name in self.declared_global:
            return None
        if self.is_local(name):
            return self
        scope = self.parent
        while scope is not None and not scope.is_module:
            if scope.is_class:  # class bodies are invisible to the functions nested in them
                scope = scope.parent
                continue
            if scope.is_local(name):
                return scope
            if name in scope.declared_global:
                return None
            scope = scope.parent
        return None


class _Collector(ast.NodeVisitor):
    def __init__(self) -> None:
        self.scopes: dict[ast.AST, Scope] = {}
        self.stack: list[Scope] = []

    @property
    def cur(self) -> Scope:
        return self.stack[-1]

    def new_scope(self, node: ast.AST, name: str) -> Scope:
        parent = self.stack[-1] if self.stack else None
        if parent is None or parent.is_module:
            qual = name
        elif parent.is_comprehension or parent.is_class:
            qual = f"{parent.qualname}.{name}"
        else:
            qual = f"{parent.qualname}.<locals>.{name}"
        scope = Scope(node, name, qual, parent)
        if parent is not None:
            parent.children.append(scope)
        self.scopes[node] = scope
        return scope

    def bind(self, name: str, by_def: ast.FunctionDef | None = None) -> None:
        cur = self.cur
        cur.bound.setdefault(name, None)
        cur.binding_count[name] = cur.binding_count.get(name, 0) + 1
        if by_def is not None:
            cur.def_nodes[name] = by_def

    def visit_Module(self, node: ast.Module) -> None:
        self.stack.append(self.new_scope(node, "<module>"))
        self.generic_visit(node)
        self.stack.pop()

    def _args(self, args: ast.arguments, scope: Scope) -> None:
        for a in [*args.posonlyargs, *args.args]:
            scope.params.append(a.arg)
        if args.vararg:
            scope.params.append(args.vararg.arg)
        for a in args.kwonlyargs:
            scope.params.append(a.arg)
        if args.kwarg:
            scope.params.append(args.kwarg.arg)
        for p in scope.params:
            scope.bound.setdefault(p, None)
            scope.binding_count[p] = scope.binding_count.get(p, 0) + 1

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        for d in node.decorator_list:
            self.visit(d)
        for d in [*node.args.defaults, *[k for k in node.args.kw_defaults if k is not None]]:
            self.visit(d)
        self.bind(node.name, by_def=node)
        scope = self.new_scope(node, node.name)
        self._args(node.args, scope)
        self.stack.append(scope)
        for stmt in node.body:
            self.visit(stmt)
        self.stack.pop()

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for d in [*node.decorator_list, *node.bases, *[k.value for k in node.keywords]]:
            self.visit(d)
        self.bind(node.name)
        self.cur.class_nodes[node.name] = node
        scope = self.new_scope(node, node.name)
        self.stack.append(scope)
        for stmt in node.body:
            self.visit(stmt)
        self.stack.pop()

    def visit_Call(self, node: ast.Call) -> None:
        # `super()` in a method means `super(TheClass, first_argument)`: the method reads the
        # class's name (the compiler writes it out, see translate.Translator.visit_Call)
        if isinstance(node.func, ast.Name) and node.func.id == "super" and not node.args and not node.keywords:
            cls = self.cur.method_of()
            if cls is not None:
                self.cur.loads.add(cls.name)
        self.generic_visit(node)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        for d in [*node.args.defaults, *[k for k in node.args.kw_defaults if k is not None]]:
            self.visit(d)
        scope = self.new_scope(node, "<lambda>")
        self._args(node.args, scope)
        self.stack.append(scope)
        self.visit(node.body)
        self.stack.pop()

    def _comprehension(self, node: ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp, name: str) -> None:
        gens = node.generators
        self.visit(gens[0].iter)
        scope = self.new_scope(node, name)
        self.stack.append(scope)
        for i, gen in enumerate(gens):
            if i:
                self.visit(gen.iter)
            self.visit(gen.target)
            for cond in gen.ifs:
                self.visit(cond)
        if isinstance(node, ast.DictComp):
            self.visit(node.key)
            self.visit(node.value)
        else:
            self.visit(node.elt)
        self.stack.pop()

    def visit_ListComp(self, node: ast.ListComp) -> None:
        self._comprehension(node, "<listcomp>")

    def visit_SetComp(self, node: ast.SetComp) -> None:
        self._comprehension(node, "<setcomp>")

    def visit_DictComp(self, node: ast.DictComp) -> None:
        self._comprehension(node, "<dictcomp>")

    def visit_GeneratorExp(self, node: ast.GeneratorExp) -> None:
        self._comprehension(node, "<genexpr>")

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self.cur.loads.add(node.id)
        else:
            self.bind(node.id)

    def visit_Global(self, node: ast.Global) -> None:
        self.cur.declared_global.update(node.names)

    def visit_Nonlocal(self, node: ast.Nonlocal) -> None:
        self.cur.declared_nonlocal.update(node.names)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.bind(alias.asname or alias.name.split(".")[0])

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            self.bind(alias.asname or alias.name)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.name:
            self.bind(node.name)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        if isinstance(node.target, ast.Name):
            self.cur.loads.add(node.target.id)
        self.generic_visit(node)

    # Annotations are ignored by Flowmetal: never evaluated, never bind.
    def visit_arg(self, node: ast.arg) -> None:
        return None

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)
            self.visit(node.target)
        elif isinstance(node.target, ast.Name):
            # `x: int` alone makes x local in a function, as in Python
            self.cur.bound.setdefault(node.target.id, None)


def _resolve(scope: Scope) -> None:
    for child in scope.children:
        _resolve(child)
    if scope.is_module:
        return
    if scope.is_class:
        _resolve_class(scope)
        return
    scope.locals = [n for n in scope.bound if scope.is_local(n)]
    # names used here (or needed by children) that belong to an enclosing function
    frees: dict[str, None] = {}
    wanted = set(scope.loads) | set(scope.declared_nonlocal) | {n for n in scope.bound if n in scope.declared_nonlocal}
    for child in scope.children:
        wanted.update(child.frees)
    for name in sorted(wanted):
        if scope.is_local(name):
            continue
        owner = scope.owner_of(name)
        if owner is not None and owner is not scope:
            frees[name] = None
    scope.frees = list(frees)
    cells = []
    for name in scope.locals:
        if any(name in c.frees for c in scope.children):
            cells.append(name)
    scope.cells = cells


def _resolve_class(scope: Scope) -> None:
    """A class body has no locals of its own to keep (its names go to the class): what its
    body and its methods read from enclosing functions passes through it as free names."""
    frees: dict[str, None] = {}
    for name in sorted(scope.loads | scope.declared_nonlocal):
        owner = scope.owner_of(name)
        if owner is not None and owner is not scope:
            frees[name] = None
    outer = scope.parent
    for child in scope.children:
        for name in child.frees:
            if outer is not None and outer.owner_of(name) is not None:
                frees[name] = None
    scope.frees = list(frees)


def analyze(tree: ast.Module) -> dict[ast.AST, Scope]:
    """Map every scope-creating node (module, def, lambda, comprehension) to its Scope."""
    collector = _Collector()
    collector.visit(tree)
    _resolve(collector.scopes[tree])
    return collector.scopes


def node_key(node: ast.AST) -> tuple[object, ...]:
    """Identify a node by kind and exact source span, so copies of it are found too
    (code generation copies subtrees before rewriting them)."""
    return (
        type(node).__name__,
        getattr(node, "lineno", None),
        getattr(node, "col_offset", None),
        getattr(node, "end_lineno", None),
        getattr(node, "end_col_offset", None),
    )


class NodeMap(dict[tuple[object, ...], Any]):
    """A read-only mapping from syntax nodes (or copies of them) to values."""

    def __init__(self, items: Mapping[ast.AST, object] | None = None) -> None:
        super().__init__({node_key(k): v for k, v in (items or {}).items()})

    def __getitem__(self, node: ast.AST) -> Any:  # type: ignore[override]
        return super().__getitem__(node_key(node))

    def __contains__(self, node: object) -> bool:
        return isinstance(node, ast.AST) and super().__contains__(node_key(node))

    def get(self, node: ast.AST, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(node_key(node), default)
