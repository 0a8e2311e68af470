"""Scope analysis for the checker: where each loaded name can come from.

The model follows CPython's symbol table closely enough to tell whether a
name read by the program can resolve at run time:

* scopes are the module, each function and lambda, each class body and each
  comprehension / generator expression;
* a name is *bound* in a scope by assignment (plain, annotated with a value,
  starred, tuple targets), `for` / `with ... as` / `except ... as` targets,
  parameters (positional-only, regular, `*args`, keyword-only, `**kwargs`),
  `def` / `class` names, imports, `:=` and match captures;
* `x += 1` and `del x` make x local as well, but they read x first, so they
  count as uses that need one of the bindings above;
* `global x` sends bindings of `x` in that scope to the module, `nonlocal x`
  sends them to the nearest enclosing function;
* a lookup tries the current scope, then enclosing function and comprehension
  scopes (class bodies are skipped unless they are the current scope), then
  the module, then the built-ins.

Decorators, default values, class bases and the first iterable of a
comprehension are evaluated in the *enclosing* scope, as in CPython. Type
annotations are never evaluated by Flowmetal, so names used in them are not
looked at.

There is no flow analysis: a name bound anywhere in a visible scope counts as
defined (using it too early is a run-time error, not a check-time one).

The walk uses an explicit work list rather than recursion, so deeply nested
expressions that `ast.parse` accepts cannot overflow the Python stack here.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from flowmetal.lang.diagnostics import Diagnostic
from flowmetal.lang.names import BUILTIN_NAMES, FORBIDDEN_BUILTINS, MODULE_GLOBALS

ScopeKind = Literal["module", "function", "class", "comprehension"]

_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)


@dataclass(eq=False)
class Scope:
    kind: ScopeKind
    parent: Scope | None
    bindings: set[str] = field(default_factory=set)
    # Names made local only by `x += ...` or `del x`: those read the name first,
    # so they need a real binding too.
    reading_bindings: set[str] = field(default_factory=set)
    globals: set[str] = field(default_factory=set)
    nonlocals: set[str] = field(default_factory=set)


class ScopeCollector:
    """Builds the scope tree of a module and records every name load with its scope."""

    def __init__(self) -> None:
        self.module = Scope("module", None)
        self.scopes: list[Scope] = [self.module]
        self.loads: list[tuple[ast.Name, Scope]] = []
        self._work: list[tuple[ast.AST, Scope]] = []

    def collect(self, tree: ast.Module) -> None:
        self._work.append((tree, self.module))
        while self._work:
            node, scope = self._work.pop()
            handler = getattr(self, "_visit_" + type(node).__name__, None)
            if handler is None:
                self._children(node, scope)
            else:
                handler(node, scope)

    # -- helpers ---------------------------------------------------------

    def _push(self, nodes: Iterable[ast.AST], scope: Scope) -> None:
        self._work.extend((n, scope) for n in nodes)

    def _children(self, node: ast.AST, scope: Scope) -> None:
        self._work.extend((child, scope) for child in ast.iter_child_nodes(node))

    def _new_scope(self, kind: ScopeKind, parent: Scope) -> Scope:
        scope = Scope(kind, parent)
        self.scopes.append(scope)
        return scope

    def _defaults(self, args: ast.arguments, scope: Scope) -> None:
        self._push(args.defaults, scope)
        self._push([d for d in args.kw_defaults if d is not None], scope)

    @staticmethod
    def _bind_params(args: ast.arguments, scope: Scope) -> None:
        for a in (*args.posonlyargs, *args.args, *args.kwonlyargs):
            scope.bindings.add(a.arg)
        if args.vararg is not None:
            scope.bindings.add(args.vararg.arg)
        if args.kwarg is not None:
            scope.bindings.add(args.kwarg.arg)

    # -- names and declarations -----------------------------------------

    def _visit_Name(self, node: ast.Name, scope: Scope) -> None:
        if isinstance(node.ctx, ast.Load):
            self.loads.append((node, scope))
        elif isinstance(node.ctx, ast.Del):  # makes the name local, and needs a value
            scope.reading_bindings.add(node.id)
            self.loads.append((node, scope))
        else:
            scope.bindings.add(node.id)

    def _visit_AugAssign(self, node: ast.AugAssign, scope: Scope) -> None:
        if isinstance(node.target, ast.Name):  # `x += 1` reads x, then binds it locally
            scope.reading_bindings.add(node.target.id)
            self.loads.append((node.target, scope))
        else:
            self._work.append((node.target, scope))
        self._work.append((node.value, scope))

    def _visit_Global(self, node: ast.Global, scope: Scope) -> None:
        scope.globals.update(node.names)

    def _visit_Nonlocal(self, node: ast.Nonlocal, scope: Scope) -> None:
        scope.nonlocals.update(node.names)

    def _visit_NamedExpr(self, node: ast.NamedExpr, scope: Scope) -> None:
        # `:=` binds in the nearest enclosing non-comprehension scope.
        target = scope
        while target.kind == "comprehension" and target.parent is not None:
            target = target.parent
        target.bindings.add(node.target.id)
        self._work.append((node.value, scope))

    def _visit_AnnAssign(self, node: ast.AnnAssign, scope: Scope) -> None:
        # The annotation itself is ignored. `x: int` without a value binds
        # nothing at run time, but inside a function it still makes x local.
        if isinstance(node.target, ast.Name):
            if node.value is not None or scope.kind == "function":
                scope.bindings.add(node.target.id)
        else:
            self._work.append((node.target, scope))
        if node.value is not None:
            self._work.append((node.value, scope))

    def _visit_Import(self, node: ast.Import, scope: Scope) -> None:
        for alias in node.names:
            scope.bindings.add(alias.asname or alias.name.split(".")[0])

    def _visit_ImportFrom(self, node: ast.ImportFrom, scope: Scope) -> None:
        for alias in node.names:
            if alias.name != "*":
                scope.bindings.add(alias.asname or alias.name)

    def _visit_ExceptHandler(self, node: ast.ExceptHandler, scope: Scope) -> None:
        if node.name is not None:
            scope.bindings.add(node.name)
        self._children(node, scope)

    def _visit_MatchAs(self, node: ast.MatchAs, scope: Scope) -> None:
        if node.name is not None:
            scope.bindings.add(node.name)
        self._children(node, scope)

    def _visit_MatchStar(self, node: ast.MatchStar, scope: Scope) -> None:
        if node.name is not None:
            scope.bindings.add(node.name)

    def _visit_MatchMapping(self, node: ast.MatchMapping, scope: Scope) -> None:
        if node.rest is not None:
            scope.bindings.add(node.rest)
        self._children(node, scope)

    # -- scope-creating nodes --------------------------------------------

    def _visit_FunctionDef(
        self, node: ast.FunctionDef | ast.AsyncFunctionDef, scope: Scope
    ) -> None:
        self._push(node.decorator_list, scope)
        self._defaults(node.args, scope)
        scope.bindings.add(node.name)
        inner = self._new_scope("function", scope)
        self._bind_params(node.args, inner)
        self._push(node.body, inner)

    _visit_AsyncFunctionDef = _visit_FunctionDef

    def _visit_Lambda(self, node: ast.Lambda, scope: Scope) -> None:
        self._defaults(node.args, scope)
        inner = self._new_scope("function", scope)
        self._bind_params(node.args, inner)
        self._work.append((node.body, inner))

    def _visit_ClassDef(self, node: ast.ClassDef, scope: Scope) -> None:
        self._push(node.decorator_list, scope)
        self._push(node.bases, scope)
        self._push([kw.value for kw in node.keywords], scope)
        scope.bindings.add(node.name)
        self._push(node.body, self._new_scope("class", scope))

    def _comprehension(
        self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp, scope: Scope
    ) -> None:
        generators = node.generators
        # The outermost iterable is evaluated in the enclosing scope.
        self._work.append((generators[0].iter, scope))
        inner = self._new_scope("comprehension", scope)
        for i, gen in enumerate(generators):
            if i:
                self._work.append((gen.iter, inner))
            self._work.append((gen.target, inner))
            self._push(gen.ifs, inner)
        if isinstance(node, ast.DictComp):
            self._push([node.key, node.value], inner)
        else:
            self._work.append((node.elt, inner))

    _visit_ListComp = _comprehension
    _visit_SetComp = _comprehension
    _visit_GeneratorExp = _comprehension
    _visit_DictComp = _comprehension


def _lookup(name: str, scope: Scope, module_names: set[str]) -> tuple[bool, Scope | None]:
    """Whether a load of `name` in `scope` finds a program binding (built-ins aside).

    The second item is the scope where the lookup stopped without one because
    the name is local there (only `+=` / `del` make it so), if that happened.
    """
    current: Scope | None = scope
    while current is not None:
        if current.kind == "module":
            return name in module_names, None
        if current.kind == "class" and current is not scope:
            current = current.parent  # class bodies are invisible to nested scopes
            continue
        if name in current.globals:
            return name in module_names, None
        if name not in current.nonlocals:
            if name in current.bindings:
                return True, None
            if name in current.reading_bindings:
                return False, current
        current = current.parent
    return False, None


def _undefined_message(name: str, stopped_at: Scope | None, module_names: set[str]) -> str:
    if stopped_at is not None and stopped_at.parent is not None:
        outer_found, _ = _lookup(name, stopped_at.parent, module_names)
        if outer_found or name in BUILTIN_NAMES:
            return (
                f"local variable '{name}' is never assigned in this scope, so the outer "
                f"'{name}' is not used; declare it 'global' or 'nonlocal' to change that one"
            )
    return f"name '{name}' is not defined"


def check_names(tree: ast.Module, filename: str) -> list[Diagnostic]:
    """Errors for forbidden host built-ins and warnings for names never bound."""
    collector = ScopeCollector()
    collector.collect(tree)

    module_names = set(collector.module.bindings) | MODULE_GLOBALS
    bound_anywhere: set[str] = set()
    for scope in collector.scopes:
        bound_anywhere |= scope.bindings
        if scope is not collector.module:
            module_names |= scope.bindings & scope.globals

    diagnostics: list[Diagnostic] = []
    for node, scope in collector.loads:
        name = node.id
        found, stopped_at = _lookup(name, scope, module_names)
        if found or (name in BUILTIN_NAMES and stopped_at is None):
            continue
        if name in FORBIDDEN_BUILTINS and name not in bound_anywhere:
            diagnostics.append(Diagnostic.at(filename, node, FORBIDDEN_BUILTINS[name]))
        else:
            message = _undefined_message(name, stopped_at, module_names)
            diagnostics.append(Diagnostic.at(filename, node, message, "warning"))
    return diagnostics
