"""Rewrite checked Flowmetal syntax into CPython syntax that runs natively.

Plain functions (see `classify`) are translated whole; resumable functions use
this for the pieces of their code that cannot wait. The rewrite keeps Python
semantics and source positions (so CPython's own error messages and line
numbers are Flowmetal's), and changes only what must differ:

- set displays and set comprehensions build insertion-ordered sets;
- `x.format` / `x.format_map` go through a guard that forbids dunder fields;
- `seq * n` with a literal sequence is checked against the memory limit;
- loops (and functions on a recursion cycle) tick the fuel counter;
- bare `except:` catches `Exception`, so the machine's own aborts pass through;
- imports become lookups of Flowmetal modules;
- nested functions that may wait become resumable function values, and
  generator expressions that may escape become resumable generators;
- names owned by a resumable function are read from its explicit cells.
"""

from __future__ import annotations

import ast
import copy
from collections.abc import Callable
from typing import Any

from flowmetal.lang.classify import Unit
from flowmetal.lang.names import BUILTIN_EXCEPTIONS
from flowmetal.lang.scopes import COMPREHENSIONS, Scope

# Names of the machine helpers that generated code calls (found in the
# program's builtins; user names may not start with `_fm_`).
H_SET = "_fm_set"
H_FMT = "_fm_fmt"
H_REP = "_fm_rep"
H_TICK = "_fm_tick"
H_IMPORT = "_fm_import"
H_MKFN = "_fm_mkfn"
H_MKGEN = "_fm_mkgen"

_SEQ_LITERALS = (ast.List, ast.Tuple)


def name(id_: str, ctx: ast.expr_context | None = None) -> ast.Name:
    return ast.Name(id=id_, ctx=ctx or ast.Load())


def call(func: str | ast.expr, *args: ast.expr, keywords: list[ast.keyword] | None = None) -> ast.Call:
    f = name(func) if isinstance(func, str) else func
    return ast.Call(func=f, args=list(args), keywords=keywords or [])


def const(value: Any) -> ast.Constant:
    return ast.Constant(value=value)


def tick_stmt() -> ast.stmt:
    return ast.Expr(value=call(H_TICK))


def is_sequence_literal(node: ast.expr) -> bool:
    if isinstance(node, (*_SEQ_LITERALS, ast.ListComp)):
        return True
    return isinstance(node, ast.Constant) and isinstance(node.value, str | bytes)


class Translator(ast.NodeTransformer):
    """Translate one native region. `resolve(scope, name, ctx)` maps a variable
    reference to the expression that reaches it; `scope_stack` tracks where we are."""

    def __init__(
        self,
        scopes: dict[ast.AST, Scope],
        units: dict[ast.AST, Unit],
        unit_ids: dict[Unit, int],
        scope: Scope,
        resolve: Callable[[Scope, str, ast.expr_context], ast.expr] | None = None,
        tick_units: frozenset[Unit] = frozenset(),
    ) -> None:
        self.scopes = scopes
        self.units = units
        self.unit_ids = unit_ids
        self.scope_stack = [scope]
        self.resolve = resolve
        self.tick_units = tick_units

    @property
    def scope(self) -> Scope:
        return self.scope_stack[-1]

    def translate_expr(self, node: ast.expr) -> ast.expr:
        result = self.visit(copy.deepcopy(node))
        assert isinstance(result, ast.expr)
        return result

    def translate_stmts(self, stmts: list[ast.stmt]) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        for s in copy.deepcopy(stmts):
            r = self.visit(s)
            if isinstance(r, list):
                out.extend(r)
            elif r is not None:
                out.append(r)
        return out

    # -- names -------------------------------------------------------------
    def visit_Name(self, node: ast.Name) -> ast.expr:
        if self.resolve is None:
            return node
        return ast.copy_location(self.resolve(self.scope, node.id, node.ctx), node)

    # -- values ------------------------------------------------------------
    def visit_Set(self, node: ast.Set) -> ast.expr:
        elts = [self.visit(e) for e in node.elts]
        return ast.copy_location(call(H_SET, ast.Tuple(elts=elts, ctx=ast.Load())), node)

    def visit_Attribute(self, node: ast.Attribute) -> ast.expr:
        node.value = self.visit(node.value)
        if isinstance(node.ctx, ast.Load) and node.attr in ("format", "format_map"):
            return ast.copy_location(call(H_FMT, node.value, const(node.attr)), node)
        return node

    def visit_BinOp(self, node: ast.BinOp) -> ast.expr:
        self.generic_visit(node)
        if isinstance(node.op, ast.Mult) and (is_sequence_literal(node.left) or is_sequence_literal(node.right)):
            return ast.copy_location(call(H_REP, node.left, node.right), node)
        return node

    # -- scopes ------------------------------------------------------------
    def _in_scope(self, node: ast.AST, fn: Callable[[], ast.AST]) -> ast.AST:
        self.scope_stack.append(self.scopes[node])
        try:
            return fn()
        finally:
            self.scope_stack.pop()

    def _comprehension(self, node: ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp) -> ast.AST:
        # the first iterable is evaluated in the enclosing scope
        node.generators[0].iter = self.visit(node.generators[0].iter)

        def inner() -> ast.AST:
            for i, gen in enumerate(node.generators):
                if i:
                    gen.iter = self.visit(gen.iter)
                gen.target = self.visit(gen.target)
                gen.ifs = [self.visit(c) for c in gen.ifs]
            if isinstance(node, ast.DictComp):
                node.key = self.visit(node.key)
                node.value = self.visit(node.value)
            else:
                node.elt = self.visit(node.elt)
            return node

        return self._in_scope(node, inner)

    def visit_ListComp(self, node: ast.ListComp) -> ast.AST:
        return self._comprehension(node)

    def visit_DictComp(self, node: ast.DictComp) -> ast.AST:
        return self._comprehension(node)

    def visit_SetComp(self, node: ast.SetComp) -> ast.AST:
        result = self._comprehension(node)
        assert isinstance(result, ast.SetComp)
        gen = ast.GeneratorExp(elt=result.elt, generators=result.generators)
        ast.copy_location(gen, node)
        return ast.copy_location(call(H_SET, gen), node)

    def visit_GeneratorExp(self, node: ast.GeneratorExp) -> ast.AST:
        unit = self.units.get(node)
        if unit is None:
            return self._comprehension(node)
        first = self.visit(node.generators[0].iter)
        return ast.copy_location(
            call(H_MKGEN, const(self.unit_ids[unit]), call("iter", first), self.cells_for(unit)), node
        )

    def cells_for(self, unit: Unit) -> ast.expr:
        """The explicit cells a nested resumable unit closes over, in `scope.frees` order."""
        elts: list[ast.expr] = []
        for free in unit.scope.frees:
            ref = self.resolve(self.scope, free, ast.Load()) if self.resolve else None
            if isinstance(ref, ast.Attribute) and ref.attr == "cell_contents":
                elts.append(ref.value)
            else:  # pragma: no cover - classify guarantees explicit cells here
                raise AssertionError(f"no explicit cell for {free!r}")
        return ast.Tuple(elts=elts, ctx=ast.Load())

    def _defaults(self, args: ast.arguments) -> tuple[ast.expr, ast.expr]:
        defaults = ast.Tuple(elts=[self.visit(d) for d in args.defaults], ctx=ast.Load())
        keys: list[ast.expr | None] = []
        values: list[ast.expr] = []
        for a, d in zip(args.kwonlyargs, args.kw_defaults):
            if d is not None:
                keys.append(const(a.arg))
                values.append(self.visit(d))
        return defaults, ast.Dict(keys=keys, values=values)

    def make_function_value(self, node: ast.FunctionDef | ast.Lambda) -> ast.expr:
        unit = self.units[node]
        defaults, kwdefaults = self._defaults(node.args)
        return ast.copy_location(
            call(H_MKFN, const(self.unit_ids[unit]), defaults, kwdefaults, self.cells_for(unit)), node
        )

    def visit_Lambda(self, node: ast.Lambda) -> ast.AST:
        unit = self.units[node]
        if unit.kind != "plain":
            return self.make_function_value(node)
        node.args = self._visit_arguments(node.args)

        def inner() -> ast.AST:
            node.body = self.visit(node.body)
            return node

        return self._in_scope(node, inner)

    def _visit_arguments(self, args: ast.arguments) -> ast.arguments:
        args.defaults = [self.visit(d) for d in args.defaults]
        args.kw_defaults = [self.visit(d) if d is not None else None for d in args.kw_defaults]
        for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]:
            a.annotation = None
        if args.vararg:
            args.vararg.annotation = None
        if args.kwarg:
            args.kwarg.annotation = None
        return args

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST | list[ast.stmt]:
        unit = self.units[node]
        if unit.kind != "plain":
            decorators = [self.visit(d) for d in node.decorator_list]
            value: ast.expr = self.make_function_value(node)
            for d in reversed(decorators):
                value = call(d, value)
            target = self.visit(ast.Name(id=node.name, ctx=ast.Store()))
            return ast.copy_location(ast.Assign(targets=[target], value=value), node)
        node.decorator_list = [self.visit(d) for d in node.decorator_list]
        node.args = self._visit_arguments(node.args)
        node.returns = None

        def inner() -> ast.AST:
            body = self.translate_body(node.body)
            if unit in self.tick_units:
                body.insert(0, ast.copy_location(tick_stmt(), node))
            node.body = body
            return node

        return self._in_scope(node, inner)

    def translate_body(self, stmts: list[ast.stmt]) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        for s in stmts:
            r = self.visit(s)
            if isinstance(r, list):
                out.extend(r)
            elif r is not None:
                out.append(r)
        return out or [ast.Pass()]

    # -- statements ----------------------------------------------------------
    def _loop(self, node: ast.For | ast.While) -> ast.AST:
        self.generic_visit(node)
        node.body.insert(0, ast.copy_location(tick_stmt(), node))
        return node

    def visit_For(self, node: ast.For) -> ast.AST:
        return self._loop(node)

    def visit_While(self, node: ast.While) -> ast.AST:
        return self._loop(node)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> ast.AST:
        self.generic_visit(node)
        if node.type is None:
            node.type = name("Exception")
        elif not _surely_exception(node.type):
            # `except BaseException` (or a computed type) could catch the machine's own
            # aborts (fuel, memory): let those pass straight through
            if node.name is None:
                node.name = "_fm_x"
            guard = ast.If(test=call("_fm_isinstance", name(node.name), name("_fm_NOCATCH")),
                           body=[ast.Raise(exc=None, cause=None)], orelse=[])
            ast.copy_location(guard, node)
            node.body.insert(0, guard)
        return node

    def visit_Nonlocal(self, node: ast.Nonlocal) -> ast.AST | None:
        # a variable of a resumable function lives in an explicit cell that the rewritten
        # code reaches as `cell.cell_contents`: it needs no (and may have no) nonlocal binding
        if self.resolve is None:
            return node
        keep = [n for n in node.names if not isinstance(self.resolve(self.scope, n, ast.Load()), ast.Attribute)]
        if not keep:
            return None
        node.names = keep
        return node

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST | None:
        if node.value is None:
            return None
        assign = ast.Assign(targets=[node.target], value=node.value)
        ast.copy_location(assign, node)
        return self.visit(assign)

    def visit_Import(self, node: ast.Import) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        for alias in node.names:
            target = self.visit(ast.Name(id=alias.asname or alias.name, ctx=ast.Store()))
            out.append(ast.copy_location(ast.Assign(targets=[target], value=call(H_IMPORT, const(alias.name))), node))
        return out

    def visit_ImportFrom(self, node: ast.ImportFrom) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        for alias in node.names:
            target = self.visit(ast.Name(id=alias.asname or alias.name, ctx=ast.Store()))
            value = call(H_IMPORT, const(node.module or ""), const(alias.name))
            out.append(ast.copy_location(ast.Assign(targets=[target], value=value), node))
        return out


_EXCEPTION_NAMES = frozenset(BUILTIN_EXCEPTIONS - {"BaseException"}) | {"Timeout", "Cancelled", "ChildFailed"}


def _surely_exception(node: ast.expr) -> bool:
    """True when an `except` type cannot match BaseException-only classes."""
    if isinstance(node, ast.Name):
        return node.id in _EXCEPTION_NAMES
    if isinstance(node, ast.Tuple):
        return all(_surely_exception(e) for e in node.elts)
    return False


def is_comprehension(node: ast.AST) -> bool:
    return isinstance(node, COMPREHENSIONS)
