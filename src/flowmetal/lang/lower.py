"""Lower a function that may wait into a resumable state machine (CPython code).

The function becomes `def f(_fm_fr, _fm_rv)`: its body is cut into basic
blocks at every call that might wait, and a loop dispatches on a block number
`_fm_pc` (a binary `if` tree). Variables stay CPython locals for speed; when
the function must wait it stores `locals()` and the number of the block to
resume at in its frame `_fm_fr`, then returns a request to the machine:

    (0, value)                     returned
    (1, callee, args, kwargs)      call something that may wait; its result
                                   comes back as `_fm_rv` at the resume block
    (2, value)                     yielded (generators)
    (3, generator)                 advance a resumable generator (for loops)

On re-entry the prologue reloads the variables and jumps to `_fm_fr.pc`.
Exceptions are handled by a table from block number to handler block, so a
`try` may span waits. `finally` bodies are duplicated on each exit path (as
CPython does) and `with` blocks are lowered to calls of `_fm_enter`/`_fm_exit`.

Only the pieces that need it are lowered: an expression containing no waiting
call is emitted as one native CPython expression (see `translate`).

Variables that nested functions close over are explicit `cell` objects
(`_fm_cell_NAME`) so a closure made before a wait still shares the variable
with the frame after it. Comprehensions that may wait are inlined as loops
with their variables renamed (`_fm_qN_NAME`), keeping them out of the
enclosing scope as in Python 3.
"""

from __future__ import annotations

import ast
import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flowmetal.lang.classify import CONSUMING_BUILTINS, PURE_METHODS, Unit
from flowmetal.lang.scopes import COMPREHENSIONS, Scope
from flowmetal.lang.translate import H_MKFN, H_MKGEN, H_SET, Translator, call, const, is_sequence_literal, name

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


def _store(id_: str) -> ast.Name:
    return ast.Name(id=id_, ctx=ast.Store())


def _assign(target: str | ast.expr, value: ast.expr) -> ast.Assign:
    t = _store(target) if isinstance(target, str) else target
    return ast.Assign(targets=[t], value=value)


def _goto(pc: int) -> list[ast.stmt]:
    return [_assign("_fm_pc", const(pc)), ast.Continue()]


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


class UnitLowerer:
    def __init__(self, facts: ProgramFacts, unit: Unit) -> None:
        self.f = facts
        self.unit = unit
        self.scope = unit.scope
        self.blocks: list[Block] = []
        self.handler_stack: list[int | None] = [None]
        self.exits: list[Exit] = []
        self.loops: list[Loop] = []
        self.handled: list[str] = []  # locals holding the exceptions being handled
        self.temps = 0
        self.globals_stored: set[str] = set()
        self.inlined: dict[Scope, int] = {}
        self.explicit: dict[Scope, set[str]] = {}
        self.scope_stack: list[Scope] = [self.scope]
        self.loc: ast.AST = unit.node
        self.explicit[self.scope] = self._explicit_cells(self.scope)
        self.cur = self.new_block()

    # -- variables -----------------------------------------------------------
    def _explicit_cells(self, scope: Scope) -> set[str]:
        """Locals of `scope` that some nested function or generator closes over."""
        result: set[str] = set()
        stack = list(scope.children)
        while stack:
            child = stack.pop()
            if child.node in self.f.units:
                result.update(n for n in child.frees if scope.is_local(n))
            stack.extend(child.children)
        return result

    def prefix(self, scope: Scope) -> str:
        q = self.inlined.get(scope)
        return "" if q is None else f"_fm_q{q}_"

    def resolve(self, scope: Scope, var: str, ctx: ast.expr_context) -> ast.expr:
        owner = scope.owner_of(var)
        if owner is None:
            if not isinstance(ctx, ast.Load):
                self.globals_stored.add(var)
            return ast.Name(id=var, ctx=ctx)
        if owner is self.scope or owner in self.inlined:
            local = self.prefix(owner) + var
            if var in self.explicit.get(owner, ()):
                return ast.Attribute(value=name(f"_fm_cell_{local}"), attr="cell_contents", ctx=ctx)
            return ast.Name(id=local, ctx=ctx)
        if self._is_native_inside(owner):
            return ast.Name(id=var, ctx=ctx)
        # owned by an enclosing function: one of this unit's closure cells
        return ast.Attribute(value=name(f"_fm_cell_{var}"), attr="cell_contents", ctx=ctx)

    def _is_native_inside(self, owner: Scope) -> bool:
        s: Scope | None = owner
        while s is not None:
            if s is self.scope:
                return True
            s = s.parent
        return False

    def temp(self) -> str:
        self.temps += 1
        return f"_fm_t{self.temps}"

    def translator(self) -> Translator:
        return Translator(self.f.scopes, self.f.units, self.f.unit_ids, self.scope_stack[-1], self.resolve,
                          self.f.tick_units)

    def native(self, e: ast.expr) -> ast.expr:
        return self.translator().translate_expr(e)

    # -- blocks --------------------------------------------------------------
    def new_block(self, handler: int | None | str = "current") -> Block:
        h = self.handler_stack[-1] if handler == "current" else handler
        assert h is None or isinstance(h, int)
        b = Block(len(self.blocks), h)
        self.blocks.append(b)
        return b

    def emit(self, *stmts: ast.stmt) -> None:
        if self.cur.done:
            self.cur = self.new_block()  # unreachable code still gets compiled
        for s in stmts:
            ast.copy_location(s, self.loc)
            self.cur.stmts.append(s)

    def terminate(self, stmts: list[ast.stmt]) -> None:
        self.emit(*stmts)
        self.cur.done = True

    def jump(self, target: Block) -> None:
        if not self.cur.done:
            self.terminate(_goto(target.id))

    def branch(self, test: ast.expr, yes: Block, no: Block) -> None:
        self.terminate([_assign("_fm_pc", ast.IfExp(test=test, body=const(yes.id), orelse=const(no.id))),
                        ast.Continue()])

    def start(self, block: Block) -> None:
        self.jump(block)
        self.cur = block

    def save_and_return(self, resume: Block, value: ast.expr) -> list[ast.stmt]:
        return [
            _assign(ast.Attribute(value=name("_fm_fr"), attr="pc", ctx=ast.Store()), const(resume.id)),
            _assign(ast.Attribute(value=name("_fm_fr"), attr="slots", ctx=ast.Store()), call("_fm_locals")),
            ast.Return(value=value),
        ]

    # -- deciding what must be lowered ----------------------------------------
    def is_suspend_call(self, node: ast.Call) -> bool:
        if node in self.f.suspend_calls:
            return True
        func = node.func
        scope = self.scope_of_node()
        if isinstance(func, ast.Name) and self.f.is_builtin(scope, func.id):
            if func.id in CONSUMING_BUILTINS or func.id in LAZY_BUILTINS:
                return not all(self.obviously_host(a) for a in node.args) or any(
                    not self.obviously_host(k.value) for k in node.keywords)
        if isinstance(func, ast.Attribute) and func.attr in ("join", "extend", "update", "union",
                                                             "intersection", "difference", "sort"):
            return not all(self.obviously_host(a) for a in node.args) or any(
                k.arg == "key" and not isinstance(k.value, ast.Lambda) for k in node.keywords)
        return False

    def scope_of_node(self) -> Scope:
        return self.scope_stack[-1]

    def obviously_host(self, e: ast.expr) -> bool:
        if isinstance(e, ast.Constant | ast.List | ast.Tuple | ast.Dict | ast.Set | ast.ListComp | ast.DictComp
                      | ast.SetComp | ast.JoinedStr | ast.BinOp):
            return not self.needs_lowering(e)
        if isinstance(e, ast.Call) and not self.needs_lowering(e):
            f = e.func
            if isinstance(f, ast.Name) and f.id in _HOST_RESULT_BUILTINS | {"sorted", "list", "tuple", "set", "dict"}:
                return self.f.is_builtin(self.scope_of_node(), f.id)
            if isinstance(f, ast.Attribute) and f.attr in _HOST_RESULT_METHODS:
                return True
        return False

    def needs_lowering(self, e: ast.AST) -> bool:
        stack: list[ast.AST] = [e]
        while stack:
            n = stack.pop()
            if isinstance(n, ast.Call) and self.is_suspend_call(n):
                return True
            if isinstance(n, ast.Yield | ast.YieldFrom):
                return True
            if isinstance(n, ast.Lambda):
                stack.extend(n.args.defaults)
                stack.extend(d for d in n.args.kw_defaults if d is not None)
                continue
            if isinstance(n, ast.GeneratorExp) and n in self.f.units:
                stack.append(n.generators[0].iter)
                continue
            if isinstance(n, ast.ListComp | ast.SetComp | ast.DictComp) and self.comp_must_inline(n):
                return True
            stack.extend(ast.iter_child_nodes(n))
        return False

    def comp_must_inline(self, node: ast.ListComp | ast.SetComp | ast.DictComp) -> bool:
        if not self.obviously_host(node.generators[0].iter) and not isinstance(
                node.generators[0].iter, ast.Call | ast.Constant | ast.List | ast.Tuple):
            return True
        first = node.generators[0].iter
        if isinstance(first, ast.Call) and not self.obviously_host(first):
            return True
        for n in ast.walk(node):
            if n is node:
                continue
            if n in self.f.units:
                return True
            if isinstance(n, ast.Call) and self.is_suspend_call(n):
                return True
        return False

    # -- expressions -----------------------------------------------------------
    def materialize(self, e: ast.expr) -> ast.expr:
        if isinstance(e, ast.Constant) or (isinstance(e, ast.Name) and e.id.startswith("_fm_t")):
            return e
        t = self.temp()
        self.emit(_assign(t, e))
        return name(t)

    def lower_seq(self, exprs: list[ast.expr]) -> list[ast.expr]:
        """Lower expressions left to right, fixing earlier values before a later one waits."""
        last = -1
        for i, e in enumerate(exprs):
            inner = e.value if isinstance(e, ast.Starred) else e
            if self.needs_lowering(inner):
                last = i
        out: list[ast.expr] = []
        for i, e in enumerate(exprs):
            if isinstance(e, ast.Starred):
                v = self.lower(e.value)
                if i < last:
                    v = self.materialize(v)
                out.append(ast.Starred(value=v, ctx=ast.Load()))
            else:
                v = self.lower(e)
                if i < last:
                    v = self.materialize(v)
                out.append(v)
        return out

    def lower(self, e: ast.expr) -> ast.expr:
        if not self.needs_lowering(e):
            return self.native(e)
        saved = self.loc
        if hasattr(e, "lineno"):
            self.loc = e
        try:
            method = getattr(self, f"lower_{type(e).__name__}", None)
            if method is None:
                raise NotImplementedError(f"cannot lower {type(e).__name__}")
            result: ast.expr = method(e)
            return result
        finally:
            self.loc = saved

    def lower_Call(self, e: ast.Call) -> ast.expr:
        if isinstance(e.func, ast.Attribute):
            base = self.materialize(self.lower(e.func.value))
            attr = ast.Attribute(value=base, attr=e.func.attr, ctx=ast.Load())
            func: ast.expr = call("_fm_fmt", base, const(e.func.attr)) if e.func.attr in ("format", "format_map") else attr
        else:
            func = self.lower(e.func)
        parts = [*e.args, *[k.value for k in e.keywords]]
        suspend = self.is_suspend_call(e)
        if suspend or any(self.needs_lowering(p) for p in parts):
            func = self.materialize(func)
        lowered = self.lower_seq(parts)
        args = lowered[: len(e.args)]
        kw_values = lowered[len(e.args):]
        keywords = [ast.keyword(arg=k.arg, value=v) for k, v in zip(e.keywords, kw_values)]
        if not suspend:
            return ast.Call(func=func, args=args, keywords=keywords)
        return self.emit_call(func, args, keywords)

    def emit_call(self, func: ast.expr, args: list[ast.expr], keywords: list[ast.keyword]) -> ast.expr:
        """A call that might wait: call plain CPython functions directly, else ask the machine."""
        t = self.temp()
        self.emit(_assign("_fm_c", func), _assign("_fm_a", ast.Tuple(elts=args, ctx=ast.Load())))
        if keywords:
            kw = ast.Dict(keys=[const(k.arg) if k.arg else None for k in keywords], values=[k.value for k in keywords])
            self.emit(_assign("_fm_k", kw))
            kwexpr: ast.expr = name("_fm_k")
            direct = ast.Call(func=name("_fm_c"), args=[ast.Starred(value=name("_fm_a"), ctx=ast.Load())],
                              keywords=[ast.keyword(arg=None, value=name("_fm_k"))])
        else:
            kwexpr = const(None)
            direct = ast.Call(func=name("_fm_c"), args=[ast.Starred(value=name("_fm_a"), ctx=ast.Load())], keywords=[])
        after = self.new_block()
        resume = self.new_block()
        is_plain = ast.Compare(left=ast.Attribute(value=name("_fm_c"), attr="__class__", ctx=ast.Load()),
                               ops=[ast.Is()], comparators=[name("_fm_FunctionType")])
        self.emit(ast.If(test=is_plain, body=[_assign(t, direct), *_goto(after.id)], orelse=[]))
        request = ast.Tuple(elts=[const(1), name("_fm_c"), name("_fm_a"), kwexpr], ctx=ast.Load())
        self.terminate(self.save_and_return(resume, request))
        self.cur = resume
        self.terminate([_rethrow(), _assign(t, name("_fm_rv")), *_goto(after.id)])
        self.cur = after
        return name(t)

    def lower_BoolOp(self, e: ast.BoolOp) -> ast.expr:
        t = self.temp()
        end = self.new_block()
        for i, v in enumerate(e.values):
            self.emit(_assign(t, self.lower(v)))
            if i < len(e.values) - 1:
                nxt = self.new_block()
                test: ast.expr = name(t) if isinstance(e.op, ast.And) else ast.UnaryOp(op=ast.Not(), operand=name(t))
                self.branch(test, nxt, end)
                self.cur = nxt
        self.start(end)
        return name(t)

    def lower_IfExp(self, e: ast.IfExp) -> ast.expr:
        t = self.temp()
        yes, no, end = self.new_block(), self.new_block(), self.new_block()
        self.branch(self.lower(e.test), yes, no)
        self.cur = yes
        self.emit(_assign(t, self.lower(e.body)))
        self.jump(end)
        self.cur = no
        self.emit(_assign(t, self.lower(e.orelse)))
        self.start(end)
        return name(t)

    def lower_Compare(self, e: ast.Compare) -> ast.expr:
        t = self.temp()
        end = self.new_block()
        left = self.materialize(self.lower(e.left))
        for i, (op, comp) in enumerate(zip(e.ops, e.comparators)):
            right = self.materialize(self.lower(comp))
            self.emit(_assign(t, ast.Compare(left=left, ops=[op], comparators=[right])))
            if i < len(e.ops) - 1:
                nxt = self.new_block()
                self.branch(name(t), nxt, end)
                self.cur = nxt
            left = right
        self.start(end)
        return name(t)

    def lower_BinOp(self, e: ast.BinOp) -> ast.expr:
        left, right = self.lower_seq([e.left, e.right])
        if isinstance(e.op, ast.Mult) and (is_sequence_literal(e.left) or is_sequence_literal(e.right)):
            return call("_fm_rep", left, right)
        return ast.BinOp(left=left, op=e.op, right=right)

    def lower_UnaryOp(self, e: ast.UnaryOp) -> ast.expr:
        return ast.UnaryOp(op=e.op, operand=self.lower(e.operand))

    def lower_Subscript(self, e: ast.Subscript) -> ast.expr:
        value, index = self.lower_seq([e.value, e.slice])
        return ast.Subscript(value=value, slice=index, ctx=ast.Load())

    def lower_Slice(self, e: ast.Slice) -> ast.expr:
        parts = [p if p is not None else const(None) for p in (e.lower, e.upper, e.step)]
        lo, hi, st = self.lower_seq(parts)
        return ast.Slice(lower=lo, upper=hi, step=st)

    def lower_Attribute(self, e: ast.Attribute) -> ast.expr:
        base = self.lower(e.value)
        if e.attr in ("format", "format_map"):
            return call("_fm_fmt", base, const(e.attr))
        return ast.Attribute(value=base, attr=e.attr, ctx=ast.Load())

    def lower_Tuple(self, e: ast.Tuple) -> ast.expr:
        return ast.Tuple(elts=self.lower_seq(e.elts), ctx=ast.Load())

    def lower_List(self, e: ast.List) -> ast.expr:
        return ast.List(elts=self.lower_seq(e.elts), ctx=ast.Load())

    def lower_Set(self, e: ast.Set) -> ast.expr:
        return call(H_SET, ast.Tuple(elts=self.lower_seq(e.elts), ctx=ast.Load()))

    def lower_Dict(self, e: ast.Dict) -> ast.expr:
        flat: list[ast.expr] = []
        for k, v in zip(e.keys, e.values):
            flat.append(k if k is not None else const(None))
            flat.append(v)
        low = self.lower_seq(flat)
        keys: list[ast.expr | None] = []
        for i, k in enumerate(e.keys):
            keys.append(None if k is None else low[2 * i])
        return ast.Dict(keys=keys, values=low[1::2])

    def lower_JoinedStr(self, e: ast.JoinedStr) -> ast.expr:
        values: list[ast.expr] = []
        for v in e.values:
            if isinstance(v, ast.FormattedValue):
                inner = self.materialize(self.lower(v.value))
                spec = self.lower(v.format_spec) if v.format_spec is not None else None
                values.append(ast.FormattedValue(value=inner, conversion=v.conversion, format_spec=spec))
            else:
                values.append(v)
        return ast.JoinedStr(values=values)

    def lower_Starred(self, e: ast.Starred) -> ast.expr:
        return ast.Starred(value=self.lower(e.value), ctx=ast.Load())

    def lower_Lambda(self, e: ast.Lambda) -> ast.expr:
        node = copy.copy(e)
        node.args = copy.copy(e.args)
        lowered = self.lower_seq([*e.args.defaults, *[d for d in e.args.kw_defaults if d is not None]])
        n = len(e.args.defaults)
        node.args.defaults = lowered[:n]
        it = iter(lowered[n:])
        node.args.kw_defaults = [next(it) if d is not None else None for d in e.args.kw_defaults]
        return self._function_value(node)

    def _function_value(self, node: ast.Lambda) -> ast.expr:
        # defaults are already lowered (temps or constants): translate the rest natively
        return self.native(node)

    def lower_GeneratorExp(self, e: ast.GeneratorExp) -> ast.expr:
        first = self.lower(e.generators[0].iter)
        unit = self.f.units[e]
        tr = self.translator()
        return call(H_MKGEN, const(self.f.unit_ids[unit]), call("_fm_iter", first), tr.cells_for(unit))

    def lower_ListComp(self, e: ast.ListComp) -> ast.expr:
        return self.inline_comprehension(e)

    def lower_SetComp(self, e: ast.SetComp) -> ast.expr:
        return self.inline_comprehension(e)

    def lower_DictComp(self, e: ast.DictComp) -> ast.expr:
        return self.inline_comprehension(e)

    def lower_Yield(self, e: ast.Yield) -> ast.expr:
        value = self.lower(e.value) if e.value is not None else const(None)
        resume = self.new_block()
        self.terminate(self.save_and_return(resume, ast.Tuple(elts=[const(2), value], ctx=ast.Load())))
        self.cur = resume
        return name("_fm_rv")

    # -- loops -----------------------------------------------------------------
    def loop(self, iterable: ast.expr, assign: Callable[[ast.expr], None], body: Callable[[], None],
             orelse: Callable[[], None] | None, tick: bool = True) -> None:
        it = self.temp()
        self.emit(_assign(it, call("_fm_iter", iterable)))
        head, fetched, resume = self.new_block(), self.new_block(), self.new_block()
        body_block, after = self.new_block(), self.new_block()
        else_block = self.new_block() if orelse else after
        self.start(head)
        v = self.temp()
        if tick:
            self.emit(ast.Expr(value=call("_fm_tick")))
        is_gen = ast.Compare(left=ast.Attribute(value=name(it), attr="__class__", ctx=ast.Load()),
                             ops=[ast.Is()], comparators=[name("_fm_Generator")])
        request = ast.Tuple(elts=[const(3), name(it)], ctx=ast.Load())
        self.emit(ast.If(test=is_gen, body=self.save_and_return(resume, request), orelse=[]))
        self.terminate([_assign(v, call("_fm_next", name(it), name("_fm_END"))), *_goto(fetched.id)])
        self.cur = resume
        self.terminate([_rethrow(), _assign(v, name("_fm_rv")), *_goto(fetched.id)])
        self.cur = fetched
        ended = ast.Compare(left=name(v), ops=[ast.Is()], comparators=[name("_fm_END")])
        self.branch(ended, else_block, body_block)
        self.cur = body_block
        assign(name(v))
        self.loops.append(Loop(head.id, after.id, len(self.exits)))
        body()
        self.loops.pop()
        self.jump(head)
        if orelse:
            self.cur = else_block
            orelse()
            self.jump(after)
        self.cur = after

    def inline_comprehension(self, e: ast.ListComp | ast.SetComp | ast.DictComp) -> ast.expr:
        scope = self.f.scopes[e]
        self.inlined[scope] = len(self.inlined) + 1
        self.explicit[scope] = self._explicit_cells(scope)
        result = self.temp()
        empty: ast.expr = ast.List(elts=[], ctx=ast.Load()) if isinstance(e, ast.ListComp) else (
            call(H_SET) if isinstance(e, ast.SetComp) else ast.Dict(keys=[], values=[]))
        self.emit(_assign(result, empty))
        first = self.materialize(self.lower(e.generators[0].iter))
        self.scope_stack.append(scope)
        for cell in sorted(self.explicit[scope]):
            self.emit(_assign(f"_fm_cell_{self.prefix(scope)}{cell}", call("_fm_Cell")))

        def level(i: int) -> None:
            gen = e.generators[i]
            src = first if i == 0 else self.lower(gen.iter)

            def assign(v: ast.expr) -> None:
                self.assign_to(gen.target, v)

            def body() -> None:
                for cond in gen.ifs:
                    ok = self.new_block()
                    self.branch(self.lower(cond), ok, self.blocks[self.loops[-1].continue_pc])
                    self.cur = ok
                if i + 1 < len(e.generators):
                    level(i + 1)
                elif isinstance(e, ast.DictComp):
                    k, v = self.lower_seq([e.key, e.value])
                    self.emit(_assign(ast.Subscript(value=name(result), slice=k, ctx=ast.Store()), v))
                else:
                    method = "append" if isinstance(e, ast.ListComp) else "add"
                    elt = self.lower(e.elt)
                    self.emit(ast.Expr(value=call(ast.Attribute(value=name(result), attr=method, ctx=ast.Load()), elt)))

            self.loop(src, assign, body, None, tick=False)

        level(0)
        self.scope_stack.pop()
        return name(result)

    # -- assignment -------------------------------------------------------------
    def lower_target(self, t: ast.expr) -> ast.expr:
        if isinstance(t, ast.Name):
            return self.resolve(self.scope_stack[-1], t.id, ast.Store())
        if isinstance(t, ast.Subscript):
            value, index = self.lower_seq([t.value, t.slice])
            return ast.Subscript(value=value, slice=index, ctx=ast.Store())
        if isinstance(t, ast.Tuple | ast.List):
            elts = [self.lower_target(x) for x in t.elts]
            return ast.Tuple(elts=elts, ctx=ast.Store())
        if isinstance(t, ast.Starred):
            return ast.Starred(value=self.lower_target(t.value), ctx=ast.Store())
        return self.native(t)  # attribute targets are rejected by the checker

    def assign_to(self, target: ast.expr, value: ast.expr) -> None:
        self.emit(_assign(self.lower_target(target), value))

    # -- statements ------------------------------------------------------------
    def lower_body(self, stmts: list[ast.stmt]) -> None:
        for s in stmts:
            self.loc = s
            method = getattr(self, f"stmt_{type(s).__name__}", None)
            if method is None:
                raise NotImplementedError(f"cannot lower {type(s).__name__}")
            method(s)

    def stmt_Expr(self, s: ast.Expr) -> None:
        if isinstance(s.value, ast.Constant):
            return
        v = self.lower(s.value)
        if not (isinstance(v, ast.Name) and v.id.startswith("_fm_")):
            self.emit(ast.Expr(value=v))

    def stmt_Pass(self, s: ast.Pass) -> None:
        return None

    def stmt_Global(self, s: ast.Global) -> None:
        return None

    def stmt_Nonlocal(self, s: ast.Nonlocal) -> None:
        return None

    def stmt_Assign(self, s: ast.Assign) -> None:
        v = self.lower(s.value)
        if len(s.targets) > 1:
            v = self.materialize(v)
        for t in s.targets:
            self.assign_to(t, v)

    def stmt_AnnAssign(self, s: ast.AnnAssign) -> None:
        if s.value is not None:
            self.assign_to(s.target, self.lower(s.value))

    def stmt_AugAssign(self, s: ast.AugAssign) -> None:
        if isinstance(s.target, ast.Name) or not self.needs_lowering(s.value):
            target = self.lower_target(s.target)
            self.emit(ast.AugAssign(target=target, op=s.op, value=self.lower(s.value)))
            return
        assert isinstance(s.target, ast.Subscript)
        obj = self.materialize(self.lower(s.target.value))
        idx = self.materialize(self.lower(s.target.slice))
        cur = self.temp()
        self.emit(_assign(cur, ast.Subscript(value=obj, slice=idx, ctx=ast.Load())))
        v = self.lower(s.value)
        self.emit(ast.AugAssign(target=_store(cur), op=s.op, value=v))
        self.emit(_assign(ast.Subscript(value=obj, slice=idx, ctx=ast.Store()), name(cur)))

    def stmt_Delete(self, s: ast.Delete) -> None:
        for t in s.targets:
            target = self.lower_target(t)
            _set_ctx(target, ast.Del())
            self.emit(ast.Delete(targets=[target]))

    def stmt_Import(self, s: ast.Import) -> None:
        self.emit(*self.translator().translate_stmts([s]))

    def stmt_ImportFrom(self, s: ast.ImportFrom) -> None:
        self.emit(*self.translator().translate_stmts([s]))

    def stmt_Raise(self, s: ast.Raise) -> None:
        if s.exc is None:
            if self.handled:
                self.terminate([ast.Raise(exc=name(self.handled[-1]), cause=None)])
            else:
                self.terminate([ast.Raise(exc=None, cause=None)])
            return
        parts = [s.exc] + ([s.cause] if s.cause is not None else [])
        low = self.lower_seq(parts)
        exc = low[0]
        if self.handled:
            exc = call("_fm_in_handler", exc, name(self.handled[-1]))
        self.terminate([ast.Raise(exc=exc, cause=low[1] if s.cause is not None else None)])

    def stmt_Assert(self, s: ast.Assert) -> None:
        fail, ok = self.new_block(), self.new_block()
        self.branch(self.lower(s.test), ok, fail)
        self.cur = fail
        args = [self.lower(s.msg)] if s.msg is not None else []
        self.terminate([ast.Raise(exc=call("_fm_AssertionError", *args), cause=None)])
        self.cur = ok

    def stmt_If(self, s: ast.If) -> None:
        yes, no, end = self.new_block(), self.new_block(), self.new_block()
        self.branch(self.lower(s.test), yes, no if s.orelse else end)
        self.cur = yes
        self.lower_body(s.body)
        self.jump(end)
        if s.orelse:
            self.cur = no
            self.lower_body(s.orelse)
            self.jump(end)
        self.cur = end

    def stmt_While(self, s: ast.While) -> None:
        head, body, after = self.new_block(), self.new_block(), self.new_block()
        else_block = self.new_block() if s.orelse else after
        self.start(head)
        self.loc = s
        self.emit(ast.Expr(value=call("_fm_tick")))
        self.branch(self.lower(s.test), body, else_block)
        self.cur = body
        self.loops.append(Loop(head.id, after.id, len(self.exits)))
        self.lower_body(s.body)
        self.loops.pop()
        self.jump(head)
        if s.orelse:
            self.cur = else_block
            self.lower_body(s.orelse)
            self.jump(after)
        self.cur = after

    def stmt_For(self, s: ast.For) -> None:
        self.loop(
            self.lower(s.iter),
            lambda v: self.assign_to(s.target, v),
            lambda: self.lower_body(s.body),
            (lambda: self.lower_body(s.orelse)) if s.orelse else None,
        )

    def run_exits(self, down_to: int) -> None:
        """Run the `finally` bodies and `with` exits between here and an outer level."""
        saved_exits, saved_handlers = self.exits, self.handler_stack
        for i in range(len(self.exits) - 1, down_to - 1, -1):
            ex = saved_exits[i]
            self.exits = saved_exits[:i]
            self.handler_stack = [*saved_handlers, ex.handler]
            nxt = self.new_block()
            self.start(nxt)
            if ex.kind == "finally":
                assert ex.body is not None
                self.lower_body(ex.body)
            else:
                assert ex.manager is not None
                self.emit_call(name("_fm_exit"), [ex.manager, const(None)], [])
        self.exits, self.handler_stack = saved_exits, saved_handlers
        if not self.cur.done:
            nxt = self.new_block()
            self.start(nxt)

    def stmt_Return(self, s: ast.Return) -> None:
        v = self.lower(s.value) if s.value is not None else const(None)
        if self.exits:
            v = self.materialize(v)
            self.run_exits(0)
        self.terminate([ast.Return(value=ast.Tuple(elts=[const(0), v], ctx=ast.Load()))])

    def stmt_Break(self, s: ast.Break) -> None:
        loop = self.loops[-1]
        self.run_exits(loop.exits_depth)
        self.terminate(_goto(loop.break_pc))

    def stmt_Continue(self, s: ast.Continue) -> None:
        loop = self.loops[-1]
        self.run_exits(loop.exits_depth)
        self.terminate(_goto(loop.continue_pc))

    def stmt_Try(self, s: ast.Try) -> None:
        outer = self.handler_stack[-1]
        after = self.new_block(handler=outer)
        fin_normal = self.new_block(handler=outer) if s.finalbody else after
        fin_exc = self.new_block(handler=outer) if s.finalbody else None
        fin_handler = fin_exc.id if fin_exc else outer
        dispatch = self.new_block(handler=fin_handler) if s.handlers else None
        body_handler = dispatch.id if dispatch else fin_handler
        if s.finalbody:
            self.exits.append(Exit("finally", body=s.finalbody, handler=outer))
        self.handler_stack.append(body_handler)
        self.start(self.new_block())
        self.lower_body(s.body)
        self.handler_stack.pop()
        self.handler_stack.append(fin_handler)
        if s.orelse:
            self.start(self.new_block())
            self.lower_body(s.orelse)
        self.jump(fin_normal)
        if dispatch is not None:
            self.cur = dispatch
            exc = self.temp()
            self.emit(_assign(exc, name("_fm_caught")))
            for h in s.handlers:
                self.loc = h
                body = self.new_block()
                nxt = self.new_block()
                if h.type is not None:
                    match = call("_fm_isinstance", name(exc), self.lower(h.type))
                    self.branch(match, body, nxt)
                else:
                    self.jump(body)
                self.cur = body
                if h.name:
                    self.assign_to(ast.Name(id=h.name, ctx=ast.Store()), name(exc))
                self.handled.append(exc)
                self.lower_body(h.body)
                self.handled.pop()
                if h.name and not self.cur.done:
                    self.assign_to(ast.Name(id=h.name, ctx=ast.Store()), const(None))
                    target = self.lower_target(ast.Name(id=h.name, ctx=ast.Store()))
                    _set_ctx(target, ast.Del())
                    self.emit(ast.Delete(targets=[target]))
                self.jump(fin_normal)
                self.cur = nxt
            self.terminate([ast.Raise(exc=name(exc), cause=None)])
        self.handler_stack.pop()
        if s.finalbody:
            self.exits.pop()
            assert fin_exc is not None
            self.cur = fin_normal
            self.lower_body(s.finalbody)
            self.jump(after)
            self.cur = fin_exc
            pending = self.temp()
            self.emit(_assign(pending, name("_fm_caught")))
            self.handled.append(pending)
            self.lower_body(s.finalbody)
            self.handled.pop()
            self.terminate([ast.Raise(exc=name(pending), cause=None)])
        self.cur = after

    def stmt_With(self, s: ast.With) -> None:
        self._with_items(s, 0)

    def _with_items(self, s: ast.With, i: int) -> None:
        if i == len(s.items):
            self.lower_body(s.body)
            return
        item = s.items[i]
        self.loc = s
        mgr = self.materialize(self.lower(item.context_expr))
        value = self.emit_call(name("_fm_enter"), [mgr], [])
        outer = self.handler_stack[-1]
        on_error = self.new_block(handler=outer)
        after = self.new_block(handler=outer)
        self.handler_stack.append(on_error.id)
        self.exits.append(Exit("with", manager=mgr, handler=outer))
        self.start(self.new_block())
        if item.optional_vars is not None:
            self.assign_to(item.optional_vars, value)
        self._with_items(s, i + 1)
        self.exits.pop()
        self.handler_stack.pop()
        if not self.cur.done:
            self.loc = s
            self.emit_call(name("_fm_exit"), [mgr, const(None)], [])
            self.jump(after)
        self.cur = on_error
        self.loc = s
        exc = self.temp()
        self.emit(_assign(exc, name("_fm_caught")))
        suppressed = self.emit_call(name("_fm_exit"), [mgr, name(exc)], [])
        reraise = self.new_block()
        self.branch(suppressed, after, reraise)
        self.cur = reraise
        self.terminate([ast.Raise(exc=name(exc), cause=None)])
        self.cur = after

    def stmt_FunctionDef(self, s: ast.FunctionDef) -> None:
        decorators = [self.materialize(self.lower(d)) for d in s.decorator_list]
        defaults = self.lower_seq([*s.args.defaults, *[d for d in s.args.kw_defaults if d is not None]])
        node = copy.copy(s)
        node.decorator_list = []
        node.args = copy.copy(s.args)
        n = len(s.args.defaults)
        node.args.defaults = defaults[:n]
        it = iter(defaults[n:])
        node.args.kw_defaults = [next(it) if d is not None else None for d in s.args.kw_defaults]
        unit = self.f.units[s]
        target = self.resolve(self.scope_stack[-1], s.name, ast.Store())
        tr = self.translator()
        if unit.kind == "plain":
            produced = tr.visit(node)
            assert isinstance(produced, ast.FunctionDef)
            self.emit(produced)
            value: ast.expr = name(s.name)
            if not (isinstance(target, ast.Name) and target.id == s.name):
                self.emit(_assign(target, value))
        else:
            self.emit(_assign(target, tr.make_function_value(node)))
        for d in reversed(decorators):
            current = self.resolve(self.scope_stack[-1], s.name, ast.Load())
            result = self.emit_call(d, [current], [])
            self.emit(_assign(self.resolve(self.scope_stack[-1], s.name, ast.Store()), result))


def _rethrow() -> ast.stmt:
    """At a resume point: raise the exception the machine delivers instead of a result."""
    throw = ast.Attribute(value=name("_fm_fr"), attr="throw", ctx=ast.Load())
    return ast.If(test=ast.Compare(left=throw, ops=[ast.IsNot()], comparators=[const(None)]),
                  body=[ast.Raise(exc=call("_fm_take_throw", name("_fm_fr")), cause=None)], orelse=[])


def _set_ctx(node: ast.expr, ctx: ast.expr_context) -> None:
    if isinstance(node, ast.Name | ast.Attribute | ast.Subscript | ast.Starred):
        node.ctx = ctx
    if isinstance(node, ast.Tuple | ast.List):
        node.ctx = ctx
        for e in node.elts:
            _set_ctx(e, ctx)


def _dispatch_tree(blocks: list[Block], lo: int, hi: int) -> list[ast.stmt]:
    if hi - lo == 1:
        b = blocks[lo]
        stmts = list(b.stmts)
        if not b.done:  # falls off the end: an implicit `return None`
            stmts.append(ast.Return(value=ast.Tuple(elts=[const(0), const(None)], ctx=ast.Load())))
        return stmts
    mid = (lo + hi) // 2
    test = ast.Compare(left=name("_fm_pc"), ops=[ast.Lt()], comparators=[const(mid)])
    return [ast.If(test=test, body=_dispatch_tree(blocks, lo, mid), orelse=_dispatch_tree(blocks, mid, hi))]


def lower_unit(facts: ProgramFacts, unit: Unit, info: UnitInfo) -> list[ast.stmt]:
    """Lower one resumable unit; returns the module-level defs (state machine and binder)."""
    low = UnitLowerer(facts, unit)
    node = unit.node
    if isinstance(node, ast.Module):
        low.lower_body(node.body)
    elif isinstance(node, ast.FunctionDef):
        low.lower_body(node.body)
    elif isinstance(node, ast.Lambda):
        low.loc = node
        low.emit(ast.Return(value=ast.Tuple(elts=[const(0), low.lower(node.body)], ctx=ast.Load())))
        low.cur.done = True
    elif isinstance(node, ast.GeneratorExp):
        _lower_genexp(low, node)
    if isinstance(node, ast.FunctionDef | ast.Lambda | ast.GeneratorExp) and unit.kind != "plain":
        pass
    scope = unit.scope
    info.cellvars = sorted(low.explicit[scope])
    info.frees = list(scope.frees) if not scope.is_module else []
    info.handlers = {b.id: b.handler for b in low.blocks if b.handler is not None}
    for local in scope.locals:
        info.local_names[f"_fm_cell_{local}" if local in low.explicit[scope] else local] = local
    for free in info.frees:
        info.local_names[f"_fm_cell_{free}"] = free
    return _assemble(low, info)


def _lower_genexp(low: UnitLowerer, node: ast.GeneratorExp) -> None:
    low.loc = node
    first = name("_fm_arg0")

    def level(i: int) -> None:
        gen = node.generators[i]
        src: ast.expr = first if i == 0 else low.lower(gen.iter)

        def body() -> None:
            for cond in gen.ifs:
                ok = low.new_block()
                low.branch(low.lower(cond), ok, low.blocks[low.loops[-1].continue_pc])
                low.cur = ok
            if i + 1 < len(node.generators):
                level(i + 1)
            else:
                low.lower_Yield(ast.Yield(value=node.elt))

        low.loop(src, lambda v: low.assign_to(gen.target, v), body, None, tick=False)

    level(0)


def _assemble(low: UnitLowerer, info: UnitInfo) -> list[ast.stmt]:
    node = low.unit.node
    fr = name("_fm_fr")
    assigned = {n for b in low.blocks for s in b.stmts for n in _assigned_names(s)}
    slots = sorted((assigned | set(info.local_names) | set(info.params) | {"_fm_arg0"})
                   - {"_fm_pc", "_fm_e", "_fm_s", "_fm_fr", "_fm_rv", "_fm_h"})
    prologue: list[ast.stmt] = []
    if low.globals_stored and not info.is_module:
        prologue.append(ast.Global(names=sorted(low.globals_stored)))
    elif low.globals_stored:
        prologue.append(ast.Global(names=sorted(low.globals_stored)))
    prologue.append(_assign("_fm_pc", ast.Attribute(value=fr, attr="pc", ctx=ast.Load())))
    prologue.append(_assign("_fm_s", ast.Attribute(value=name("_fm_fr"), attr="slots", ctx=ast.Load())))
    for slot in slots:
        if slot in low.globals_stored:
            continue
        load = _assign(slot, ast.Subscript(value=name("_fm_s"), slice=const(slot), ctx=ast.Load()))
        prologue.append(ast.If(test=ast.Compare(left=const(slot), ops=[ast.In()], comparators=[name("_fm_s")]),
                               body=[load], orelse=[]))
    prologue.append(_assign("_fm_s", const(None)))
    inner = ast.While(test=const(True), body=_dispatch_tree(low.blocks, 0, len(low.blocks)), orelse=[])
    handlers_lookup = ast.Call(func=ast.Attribute(value=ast.Attribute(value=ast.Attribute(
        value=name("_fm_fr"), attr="unit", ctx=ast.Load()), attr="handlers", ctx=ast.Load()), attr="get",
        ctx=ast.Load()), args=[name("_fm_pc")], keywords=[])
    catch = ast.ExceptHandler(
        type=name("BaseException"),
        name="_fm_e",
        body=[
            _assign("_fm_h", handlers_lookup),
            ast.If(test=ast.BoolOp(op=ast.Or(), values=[
                ast.Compare(left=name("_fm_h"), ops=[ast.Is()], comparators=[const(None)]),
                call("_fm_isinstance", name("_fm_e"), name("_fm_NOCATCH"))]),
                body=[ast.Raise(exc=None, cause=None)], orelse=[]),
            _assign("_fm_caught", name("_fm_e")),
            _assign("_fm_pc", name("_fm_h")),
        ],
    )
    outer = ast.While(test=const(True), body=[ast.Try(body=[inner], handlers=[catch], orelse=[],
                                                       finalbody=[])], orelse=[])
    fn_name = f"_fm_u{info.uid}"
    machine = ast.FunctionDef(
        name=fn_name,
        args=ast.arguments(posonlyargs=[], args=[ast.arg(arg="_fm_fr"), ast.arg(arg="_fm_rv")], vararg=None,
                           kwonlyargs=[], kw_defaults=[], kwarg=None, defaults=[]),
        body=[*prologue, outer], decorator_list=[], returns=None, type_params=[],
    )
    for st in machine.body:
        if not hasattr(st, "lineno"):
            ast.copy_location(st, node)
    ast.copy_location(machine, node)
    out: list[ast.stmt] = [machine]
    if isinstance(node, ast.FunctionDef | ast.Lambda):
        args = copy.deepcopy(node.args)
        for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]:
            a.annotation = None
        if args.vararg:
            args.vararg.annotation = None
        if args.kwarg:
            args.kwarg.annotation = None
        # defaults are attached to the binder when a function value is made
        args.defaults = []
        args.kw_defaults = [None] * len(args.kwonlyargs)
        binder = ast.FunctionDef(name=f"_fm_b{info.uid}", args=args,
                                 body=[ast.Return(value=call("_fm_locals"))], decorator_list=[], returns=None,
                                 type_params=[])
        ast.copy_location(binder, node)
        out.append(binder)
    return out


def _assigned_names(node: ast.AST) -> set[str]:
    """Names this unit's own code binds (not those of nested native scopes)."""
    found: set[str] = set()
    stack: list[ast.AST] = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store | ast.Del):
            found.add(n.id)
        if isinstance(n, ast.FunctionDef):
            found.add(n.name)
            stack.extend(n.decorator_list)
            stack.extend(n.args.defaults)
            stack.extend(d for d in n.args.kw_defaults if d is not None)
            continue
        if isinstance(n, ast.Lambda):
            stack.extend(n.args.defaults)
            stack.extend(d for d in n.args.kw_defaults if d is not None)
            continue
        if isinstance(n, COMPREHENSIONS):
            stack.append(n.generators[0].iter)
            continue
        stack.extend(ast.iter_child_nodes(n))
    return found


def default_facts_builtin(scopes: dict[ast.AST, Scope], module_scope: Scope) -> Callable[[Scope, str], bool]:
    from flowmetal.lang.names import BUILTIN_NAMES

    def is_builtin(scope: Scope, var: str) -> bool:
        if var not in BUILTIN_NAMES:
            return False
        if scope.owner_of(var) is not None:
            return False
        return var not in module_scope.bound

    return is_builtin


__all__ = ["PURE_METHODS", "ProgramFacts", "UnitInfo", "default_facts_builtin", "lower_unit"]
