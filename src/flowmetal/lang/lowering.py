"""Data shared by the lowering passes: blocks, unit facts, and AST helpers."""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flowmetal.lang.classify import Unit
from flowmetal.lang.scopes import Scope
from flowmetal.lang.translate import call, const, name

LAZY_BUILTINS = frozenset({"enumerate", "zip", "map", "filter", "iter", "reversed"})
# Builtins that never touch a generator or callback and always return host values.
_HOST_RESULT_BUILTINS = frozenset(
    {"range", "len", "str", "repr", "int", "float", "bool", "abs", "round", "ord", "chr", "hex",
     "bin", "oct", "divmod", "pow", "isinstance", "type", "format", "bytes", "ascii", "callable"}
)
_HOST_RESULT_METHODS = frozenset(
    {"items", "keys", "values", "split", "rsplit", "splitlines", "copy", "lower", "upper", "strip",
     "findall", "encode", "decode", "groups", "partition", "rpartition", "replace"}
)


def store(id_: str) -> ast.Name:
    return ast.Name(id=id_, ctx=ast.Store())


def assign(target: str | ast.expr, value: ast.expr) -> ast.Assign:
    t = store(target) if isinstance(target, str) else target
    return ast.Assign(targets=[t], value=value)


def goto(pc: int) -> list[ast.stmt]:
    return [assign("_fm_pc", const(pc)), ast.Continue()]


@dataclass(eq=False)
class Block:
    id: int
    handler: int | None
    stmts: list[ast.stmt] = field(default_factory=list)
    done: bool = False


@dataclass
class UnitInfo:
    """What the machine needs to run one resumable unit."""

    uid: int
    kind: str  # resumable | generator
    name: str
    qualname: str
    filename: str
    lineno: int
    params: list[str]
    cellvars: list[str]  # explicit cells created with the frame (plain names)
    frees: list[str]  # closure cells taken from the function value
    handlers: dict[int, int] = field(default_factory=dict)
    local_names: dict[str, str] = field(default_factory=dict)  # slot name -> user name
    code: Any = None  # CPython code of the state machine
    binder: Any = None  # CPython code with the unit's signature, returning locals()
    lines: dict[int, int] = field(default_factory=dict)  # block number -> source line (for `inspect`)
    is_module: bool = False


@dataclass
class Exit:
    kind: str  # finally | with
    body: list[ast.stmt] | None = None
    manager: ast.expr | None = None
    handler: int | None = None  # handler active outside this exit


@dataclass
class Loop:
    continue_pc: int
    break_pc: int
    exits_depth: int


class ProgramFacts:
    """Shared, read-only facts about the whole program used while lowering."""

    def __init__(self, scopes: Any, units: Any, unit_ids: dict[Unit, int],
                 suspend_calls: Any, tick_units: frozenset[Unit], filename: str,
                 builtin_target: Callable[[Scope, str], bool]) -> None:
        self.scopes = scopes
        self.units = units
        self.unit_ids = unit_ids
        self.suspend_calls = suspend_calls
        self.tick_units = tick_units
        self.filename = filename
        self.is_builtin = builtin_target
        self.extra_routed: frozenset[str] = frozenset()  # see Translator.extra_routed



def rethrow() -> ast.stmt:
    """At a resume point: raise the exception the machine delivers instead of a result."""
    throw = ast.Attribute(value=name("_fm_fr"), attr="throw", ctx=ast.Load())
    return ast.If(test=ast.Compare(left=throw, ops=[ast.IsNot()], comparators=[const(None)]),
                  body=[ast.Raise(exc=call("_fm_take_throw", name("_fm_fr")), cause=None)], orelse=[])


def set_ctx(node: ast.expr, ctx: ast.expr_context) -> None:
    if isinstance(node, ast.Name | ast.Attribute | ast.Subscript | ast.Starred):
        node.ctx = ctx
    if isinstance(node, ast.Tuple | ast.List):
        node.ctx = ctx
        for e in node.elts:
            set_ctx(e, ctx)
