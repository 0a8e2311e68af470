"""Validation of a Flowmetal program: source text -> syntax tree + Diagnostics.

A Flowmetal program is Python 3.11 syntax, restricted. `check_source` runs
these passes and reports every problem it finds, not just the first:

1. Parse with the standard `ast` module. A `SyntaxError` (or a program too
   deeply nested for the host parser) ends checking with one error at the
   position and with the message CPython gives.
2. Construct pass: every node is visited once (iteratively, via `ast.walk`)
   and constructs Flowmetal does not support are rejected: classes,
   async, `match`, `except*`, `:=`, attribute assignment and
   deletion, attribute names no Flowmetal value has (the allow-list in
   `surface.py`; every `_` name but a few documented dunders), reserved and
   dunder names in every form that binds a name, programs nested deeper than
   the compiler handles, and imports other than the modules the host makes
   available (and only names those modules export).
3. Name pass (`check_scopes`): scope analysis resolves every name the program
   reads. Reading a host built-in that Flowmetal lacks on purpose (`open`,
   `eval`, ...) is an error unless the program defines that name itself; a
   name bound nowhere visible is a warning (it would raise NameError).
4. Compile pass: only when no error was found so far, the tree is compiled
   (never executed) with `compile()` so CPython's compile-time SyntaxErrors
   (`'return' outside function`, `'break' outside loop`, `nonlocal` without a
   binding, ...) surface as positioned errors too.

Warnings alone do not make a program invalid; see `has_errors`.
"""

from __future__ import annotations

import ast
import contextlib
import sys
import warnings
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from flowmetal.lang.check_scopes import check_names
from flowmetal.lang.declared import declared_attributes
from flowmetal.lang.diagnostics import Diagnostic
from flowmetal.lang.mangle import mangled
from flowmetal.lang.names import FORBIDDEN_BUILTINS, IO_MODULES
from flowmetal.lang.surface import ALL_ATTRIBUTES, is_readable_name
from flowmetal.lang.surface_classes import USER_DUNDERS

# Deeper syntax trees are refused: the compiler's passes (and CPython's) recurse per level
# (`program.compile_program` gives them the stack this needs).
MAX_DEPTH = 500

_ASYNC_WHY = "every Flowmetal program is already asynchronous — waits suspend the program durably"
_CLASS_DUNDERS_DOC = "a class may define only the dunder methods listed in docs/language.md (Classes)"
_TOO_DEEP = "the program is nested too deeply to check"


def check_source(
    source: str, filename: str, *, modules: Mapping[str, frozenset[str] | None]
) -> tuple[ast.Module | None, list[Diagnostic]]:
    """Parse and validate `source`.

    `modules` maps each importable module name to the names it exports
    (None: accept any name). Returns the tree (None if the source does not
    parse) and all diagnostics, errors and warnings, sorted by position.
    """
    if source.startswith("\ufeff"):
        source = source[1:]  # a byte-order mark is invisible to editors
    try:
        with warnings.catch_warnings(), stack_for_compiling():
            warnings.simplefilter("ignore")  # e.g. invalid escape sequences
            tree = ast.parse(source, filename)
    except SyntaxError as exc:
        return None, [_syntax_error(filename, exc)]
    except ValueError as exc:  # e.g. null bytes, on some Python versions
        return None, [Diagnostic(filename, 1, 1, "error", str(exc))]
    except (RecursionError, MemoryError):
        return None, [Diagnostic(filename, 1, 1, "error", _TOO_DEEP)]

    deep = _too_deep(tree)
    if deep is not None:
        return tree, [Diagnostic.at(filename, deep, f"{_TOO_DEEP} (more than {MAX_DEPTH} levels of nesting)")]
    diagnostics = _ConstructChecker(filename, modules).check(tree)
    diagnostics.extend(check_names(tree, filename))
    if not has_errors(diagnostics):
        compile_error = _compile_error(tree, filename)
        if compile_error is not None:
            diagnostics.append(compile_error)
    diagnostics.sort(key=lambda d: (d.line, d.col))
    return tree, diagnostics


@contextlib.contextmanager
def stack_for_compiling() -> Iterator[None]:
    """The same recursion budget above the caller for parsing and every compiler pass, however
    deep the caller's own stack is, so `check` and `run` accept and refuse the same programs.
    (The passes recurse once per level of nesting; MAX_DEPTH levels need far less than this.)"""
    old = sys.getrecursionlimit()
    depth = 0
    frame: Any = sys._getframe()
    while frame is not None:
        depth += 1
        frame = frame.f_back
    sys.setrecursionlimit(depth + 12 * MAX_DEPTH)
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def has_errors(diagnostics: Iterable[Diagnostic]) -> bool:
    """Whether any diagnostic is an error (warnings do not make a program invalid)."""
    return any(d.severity == "error" for d in diagnostics)


def _syntax_error(filename: str, exc: SyntaxError) -> Diagnostic:
    line = exc.lineno if exc.lineno and exc.lineno > 0 else 1
    col = exc.offset if exc.offset and exc.offset > 0 else 1
    return Diagnostic(filename, line, col, "error", exc.msg or "invalid syntax")


def _compile_error(tree: ast.Module, filename: str) -> Diagnostic | None:
    """CPython's compile-time SyntaxError for the tree, if any. Nothing is executed."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SyntaxWarnings must not become errors
            compile(tree, filename, "exec", dont_inherit=True)
    except SyntaxError as exc:
        return _syntax_error(filename, exc)
    except (RecursionError, MemoryError):
        return Diagnostic(filename, 1, 1, "error", _TOO_DEEP)
    return None


def _is_dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


def reserved_binding(name: str) -> str | None:
    """Why a program may not bind `name` (None: it may)."""
    if name.startswith("_fm_"):
        return f"the name '{name}' is reserved for Flowmetal's own use"
    if _is_dunder(name):
        return f"the name '{name}' cannot be bound: names of the form __name__ are reserved"
    return None


def program_attributes(tree: ast.Module) -> frozenset[str]:
    """Attribute names the program defines itself: what its class bodies bind, what it
    assigns as `obj.name = ...`, and the words of strings it passes to calls (field names,
    as in `namedtuple("Point", "x y")`)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for inner in ast.walk(node):  # private names, as mangled in this class (lang/mangle.py)
                if isinstance(inner, ast.Attribute) and not isinstance(inner.ctx, ast.Load):
                    found.add(mangled(inner.attr, node.name))
                elif isinstance(inner, ast.FunctionDef):
                    found.add(mangled(inner.name, node.name))
                elif isinstance(inner, ast.Name) and not isinstance(inner.ctx, ast.Load):
                    found.add(mangled(inner.id, node.name))
            for stmt in node.body:
                if isinstance(stmt, ast.FunctionDef | ast.ClassDef):
                    found.add(stmt.name)
                elif isinstance(stmt, ast.Assign | ast.AnnAssign | ast.AugAssign):
                    for target in stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]:
                        found.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
        elif isinstance(node, ast.Attribute) and not isinstance(node.ctx, ast.Load):
            found.add(node.attr)
        elif isinstance(node, ast.Call):
            for arg in [*node.args, *(k.value for k in node.keywords)]:
                for c in ast.walk(arg):
                    if isinstance(c, ast.Constant) and isinstance(c.value, str) and len(c.value) < 1000:
                        found.update(w for w in c.value.replace(",", " ").split() if w.isidentifier())
    return frozenset(found)


def _too_deep(tree: ast.Module) -> ast.AST | None:
    """The first node nested deeper than MAX_DEPTH, if any (iterative, so it cannot overflow)."""
    stack: list[tuple[ast.AST, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            return node
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return None


class _ConstructChecker:
    """Rejects unsupported constructs. Each node is looked at exactly once."""

    def __init__(self, filename: str, modules: Mapping[str, frozenset[str] | None]) -> None:
        self.filename = filename
        self.modules = modules
        self.diagnostics: list[Diagnostic] = []
        self.class_members: set[int] = set()  # ids of nodes that define a dunder method in a class body

    def check(self, tree: ast.Module) -> list[Diagnostic]:
        self.declared = declared_attributes(tree)  # the fields of the program's namedtuples
        self.program_attributes = program_attributes(tree)
        for node in ast.walk(tree):
            visit = getattr(self, "visit_" + type(node).__name__, None)
            if visit is not None:
                visit(node)
        return self.diagnostics

    def error(self, node: ast.AST, message: str) -> None:
        self.diagnostics.append(Diagnostic.at(self.filename, node, message))

    # -- definitions and control flow -------------------------------------

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._binding(node, node.name)
        for kw in node.keywords:
            what = f"'{kw.arg}='" if kw.arg is not None else "'**'"
            self.error(kw, f"class keyword {what} is not supported: metaclasses and class arguments "
                           "could reach host internals")
        for stmt in node.body:
            if isinstance(stmt, ast.FunctionDef) and _is_dunder(stmt.name):
                if stmt.name in USER_DUNDERS:
                    self.class_members.add(id(stmt))
                else:
                    self.error(stmt, f"defining '{stmt.name}' is not supported: {_CLASS_DUNDERS_DOC}")
                    self.class_members.add(id(stmt))  # reported once
            targets: list[ast.expr] = []
            if isinstance(stmt, ast.Assign):
                targets = stmt.targets
            elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
                targets = [stmt.target]
            for t in targets:
                if isinstance(t, ast.Name) and _is_dunder(t.id):
                    if t.id in USER_DUNDERS:
                        self.class_members.add(id(t))  # `__hash__ = None`, `__radd__ = __add__`
                    else:
                        self.error(t, f"defining '{t.id}' is not supported: {_CLASS_DUNDERS_DOC}")
                        self.class_members.add(id(t))

    def visit_Lambda(self, node: ast.Lambda) -> None:
        if any(isinstance(n, ast.Yield | ast.YieldFrom) for n in ast.walk(node.body)):
            self.error(node, "'yield' inside a lambda is not supported; write a generator function with def")

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self.error(node, f"async functions are not supported: {_ASYNC_WHY}")

    def visit_Await(self, node: ast.Await) -> None:
        self.error(node, f"'await' is not supported: {_ASYNC_WHY}")

    def visit_AsyncFor(self, node: ast.AsyncFor) -> None:
        self.error(node, f"'async for' is not supported: {_ASYNC_WHY}")

    def visit_AsyncWith(self, node: ast.AsyncWith) -> None:
        self.error(node, f"'async with' is not supported: {_ASYNC_WHY}")

    def _comprehension(
        self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp
    ) -> None:
        # `comprehension` nodes carry no position; report at the expression.
        if any(gen.is_async for gen in node.generators):
            self.error(node, f"async comprehensions are not supported: {_ASYNC_WHY}")
        for gen in node.generators:
            self._no_attribute_target(gen.target)

    def _no_attribute_target(self, target: ast.expr | None) -> None:
        for n in ast.walk(target) if target is not None else ():
            if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store):
                self.error(n, "an attribute cannot be the target of a loop or 'with': assign it in the body")

    def visit_For(self, node: ast.For) -> None:
        self._no_attribute_target(node.target)

    def visit_With(self, node: ast.With) -> None:
        for item in node.items:
            self._no_attribute_target(item.optional_vars)

    visit_ListComp = _comprehension
    visit_SetComp = _comprehension
    visit_GeneratorExp = _comprehension
    visit_DictComp = _comprehension

    def visit_Match(self, node: ast.Match) -> None:
        self.error(node, "match statements are not supported; use if/elif/else")

    def visit_TryStar(self, node: ast.TryStar) -> None:
        at: ast.AST = node.handlers[0] if node.handlers else node
        self.error(at, "'except*' is not supported: there are no exception groups; use 'except'")

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.error(
            node,
            "assignment expressions (:=) are not supported; assign in a separate statement",
        )

    # -- attributes --------------------------------------------------------

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if not isinstance(node.ctx, ast.Load) and (_is_dunder(node.attr) or node.attr.startswith("_fm_")):
            verb = "assigning" if isinstance(node.ctx, ast.Store) else "deleting"
            self._attribute_error(node, f"{verb} attribute '{node.attr}' is not supported: only the program's "
                                        "own attributes can be set")
        elif isinstance(node.ctx, ast.Load) and not (
                is_readable_name(node.attr) and (_is_dunder(node.attr) or node.attr in ALL_ATTRIBUTES
                                                 or node.attr in self.program_attributes or node.attr in self.declared)):
            # Point at the attribute name (the node ends with it), not at the
            # start of `a.b.__class__`, so chained accesses get distinct positions.
            if _is_dunder(node.attr):
                message = f"access to dunder attribute '{node.attr}' is not supported"
            elif node.attr.startswith("_"):
                message = f"attribute '{node.attr}' is not available: names starting with '_' are internal " \
                          "(unless the program's own classes define them)"
            else:
                message = f"no Flowmetal value has an attribute '{node.attr}'"
            self._attribute_error(node, message)

    def _attribute_error(self, node: ast.Attribute, message: str) -> None:
        if node.end_lineno is not None and node.end_col_offset is not None:
            col = node.end_col_offset - len(node.attr) + 1
            self.diagnostics.append(Diagnostic(self.filename, node.end_lineno, col, "error", message))
        else:
            self.error(node, message)

    # -- names that bind ------------------------------------------------------
    # Every form that binds a name is checked, so no program can shadow or replace what
    # Flowmetal's generated code relies on (`_fm_*`) or CPython's own dunders.

    def _binding(self, node: ast.AST, name: str | None) -> None:
        if name is not None:
            why = reserved_binding(name)
            if why is not None:
                self.error(node, why)

    def visit_Name(self, node: ast.Name) -> None:
        if node.id.startswith("_fm_") or node.id == "__builtins__":
            self.error(node, f"the name '{node.id}' is reserved for Flowmetal's own use")
        elif isinstance(node.ctx, ast.Load) and _is_dunder(node.id) and node.id != "__name__" \
                and node.id not in USER_DUNDERS and node.id not in FORBIDDEN_BUILTINS:
            self.error(node, f"the name '{node.id}' is not available: names of the form __name__ are reserved")
        elif not isinstance(node.ctx, ast.Load) and id(node) not in self.class_members:
            self._binding(node, node.id)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        if id(node) not in self.class_members:
            self._binding(node, node.name)

    def visit_arg(self, node: ast.arg) -> None:
        self._binding(node, node.arg)

    def visit_alias(self, node: ast.alias) -> None:
        self._binding(node, node.asname if node.asname is not None else node.name.partition(".")[0])

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        self._binding(node, node.name)

    def visit_Global(self, node: ast.Global) -> None:
        for name in node.names:
            self._binding(node, name)

    def visit_Nonlocal(self, node: ast.Nonlocal) -> None:
        for name in node.names:
            self._binding(node, name)

    def visit_keyword(self, node: ast.keyword) -> None:
        if node.arg is not None and node.arg.startswith("_fm_"):
            self.error(node, f"the name '{node.arg}' is reserved for Flowmetal's own use")

    # -- imports -----------------------------------------------------------

    def _unavailable(self, node: ast.AST, module: str) -> None:
        if self.modules:
            available = "provided modules are: " + ", ".join(sorted(self.modules))
        else:
            available = "no modules are provided"
        if module.partition(".")[0] in IO_MODULES:
            why = ": programs reach the outside world only through connectors (the `flowmetal` module)"
        else:
            why = ""
        self.error(node, f"module '{module}' is not provided{why}; {available}")

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name not in self.modules:
                self._unavailable(alias, alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            self.error(
                node,
                "relative imports are not supported: a Flowmetal program is a single file",
            )
            return
        module = node.module or ""
        if module == "__future__":
            return  # CPython's compiler (the compile pass) refuses unknown features
        if module not in self.modules:
            self._unavailable(node, module)
            return
        exports = self.modules[module]
        for alias in node.names:
            if alias.name.startswith("_"):
                self.error(alias, f"cannot import name '{alias.name}' from module '{module}': names starting "
                                  "with '_' are internal")
            elif alias.name == "*":
                self.error(
                    alias,
                    f"'from {module} import *' is not supported: import the names you use",
                )
            elif exports is not None and alias.name not in exports:
                self.error(alias, f"cannot import name '{alias.name}' from module '{module}'")
