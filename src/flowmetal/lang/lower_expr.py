"""Expression lowering for resumable units: variables, blocks and the pieces of
expressions that may wait (see `lower.py` for the overall scheme)."""

from __future__ import annotations

import ast
import copy
from collections.abc import Callable

from flowmetal.lang.classify import CONSUMING_BUILTINS, Unit
from flowmetal.lang.lowering import (
    _HOST_RESULT_BUILTINS,
    _HOST_RESULT_METHODS,
    LAZY_BUILTINS,
    Block,
    Exit,
    Loop,
    ProgramFacts,
    assign,
    goto,
    rethrow,
)
from flowmetal.lang.scopes import Scope
from flowmetal.lang.surface import is_routed
from flowmetal.lang.surface_classes import CLASS_DUNDERS
from flowmetal.lang.translate import (
    CHECKED_OPS,
    H_CALLATTR,
    H_DELATTR,
    H_MKGEN,
    H_SET,
    Translator,
    call,
    const,
    has_attribute_target,
    is_sequence_literal,
    name,
    routed_attribute,
    set_attribute,
    shown,
    split_attribute_target,
)


class ExprLowerer:
    """Lowers expressions into blocks; `UnitLowerer` adds statements."""

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
                          self.f.tick_units, self.f.extra_routed)

    def native(self, e: ast.expr) -> ast.expr:
        return self.translator().translate_expr(e)

    # -- blocks --------------------------------------------------------------
    def new_block(self, handler: int | str | None = "current") -> Block:
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
            self.terminate(goto(target.id))

    def branch(self, test: ast.expr, yes: Block, no: Block) -> None:
        self.terminate([assign("_fm_pc", ast.IfExp(test=test, body=const(yes.id), orelse=const(no.id))),
                        ast.Continue()])

    def start(self, block: Block) -> None:
        self.jump(block)
        self.cur = block

    def save_and_return(self, resume: Block, value: ast.expr) -> list[ast.stmt]:
        return [
            assign(ast.Attribute(value=name("_fm_fr"), attr="pc", ctx=ast.Store()), const(resume.id)),
            assign(ast.Attribute(value=name("_fm_fr"), attr="slots", ctx=ast.Store()), call("_fm_locals")),
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
        self.emit(assign(t, e))
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
        if isinstance(e.func, ast.Attribute) and e.func.attr in CLASS_DUNDERS:
            # `super().__init__(...)`: the method itself (which may wait), read through the checked getattr
            base = self.materialize(self.lower(e.func.value))
            func: ast.expr = self.materialize(routed_attribute(base, e.func.attr, e))
            return self._call_value(e, func)
        if isinstance(e.func, ast.Attribute) and (is_routed(e.func.attr) or e.func.attr in self.f.extra_routed):
            # a routed method is called through the checked helper (which never leaves a
            # bound method in a temporary across a wait)
            base = self.materialize(self.lower(e.func.value))
            shifted = ast.Call(func=name(H_CALLATTR), args=[base, const(e.func.attr), *e.args],
                               keywords=e.keywords)
            ast.copy_location(shifted, e)
            return self.lower_Call(shifted)
        if isinstance(e.func, ast.Attribute):
            base = self.materialize(self.lower(e.func.value))
            func = ast.Attribute(value=base, attr=e.func.attr, ctx=ast.Load())
        else:
            func = self.lower(e.func)
        return self._call_value(e, func)

    def _call_value(self, e: ast.Call, func: ast.expr) -> ast.expr:
        parts = [*e.args, *[k.value for k in e.keywords]]
        suspend = self.is_suspend_call(e)
        if suspend or any(self.needs_lowering(p) for p in parts):
            func = self.materialize(func)
        lowered = self.lower_seq(parts)
        args = self.translator().charged_args(e.func, lowered[: len(e.args)], e.args)
        kw_values = lowered[len(e.args):]
        keywords = [ast.keyword(arg=k.arg, value=v) for k, v in zip(e.keywords, kw_values)]
        if not suspend:
            return ast.Call(func=func, args=args, keywords=keywords)
        return self.emit_call(func, args, keywords)

    def emit_call(self, func: ast.expr, args: list[ast.expr], keywords: list[ast.keyword]) -> ast.expr:
        """A call that might wait: call plain CPython functions directly, else ask the machine."""
        t = self.temp()
        self.emit(assign("_fm_c", func), assign("_fm_a", ast.Tuple(elts=args, ctx=ast.Load())))
        if keywords:
            kw = ast.Dict(keys=[const(k.arg) if k.arg else None for k in keywords], values=[k.value for k in keywords])
            self.emit(assign("_fm_k", kw))
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
        self.emit(ast.If(test=is_plain, body=[assign(t, direct), *goto(after.id)], orelse=[]))
        # a bound method (of the program's classes, mostly): its function, with the instance first
        is_method = ast.Compare(left=ast.Attribute(value=name("_fm_c"), attr="__class__", ctx=ast.Load()),
                                ops=[ast.Is()], comparators=[name("_fm_MethodType")])
        self.emit(ast.If(test=is_method, body=[
            assign("_fm_a", ast.BinOp(left=ast.Tuple(elts=[ast.Attribute(value=name("_fm_c"), attr="__self__",
                                                                          ctx=ast.Load())], ctx=ast.Load()),
                                      op=ast.Add(), right=name("_fm_a"))),
            assign("_fm_c", ast.Attribute(value=name("_fm_c"), attr="__func__", ctx=ast.Load())),
            ast.If(test=copy.deepcopy(is_plain), body=[assign(t, copy.deepcopy(direct)), *goto(after.id)], orelse=[]),
        ], orelse=[]))
        # a resumable function runs right here, on the host stack, unless it has to wait:
        # then it hands back its (and its callees') frames for the machine to keep
        is_resumable = ast.BoolOp(op=ast.Or(), values=[
            ast.Compare(left=ast.Attribute(value=name("_fm_c"), attr="__class__", ctx=ast.Load()),
                        ops=[ast.Is()], comparators=[name("_fm_Function")]),
            # a generator's send/throw/close, and next(): the generator runs here too
            ast.Compare(left=ast.Attribute(value=name("_fm_c"), attr="__class__", ctx=ast.Load()),
                        ops=[ast.Is()], comparators=[name("_fm_GenMethod")]),
            ast.Compare(left=name("_fm_c"), ops=[ast.Is()], comparators=[name("_fm_next")])])
        got_value = ast.Compare(left=ast.Attribute(value=name("_fm_r"), attr="__class__", ctx=ast.Load()),
                                ops=[ast.IsNot()], comparators=[name("_fm_Suspension")])
        suspended = [
            assign(ast.Attribute(value=name("_fm_fr"), attr="pc", ctx=ast.Store()), const(resume.id)),
            assign(ast.Attribute(value=name("_fm_fr"), attr="slots", ctx=ast.Store()), call("_fm_locals")),
            ast.Expr(value=call(ast.Attribute(value=ast.Attribute(value=name("_fm_fr"), attr="slots",
                                                                  ctx=ast.Load()), attr="pop", ctx=ast.Load()),
                                const("_fm_r"))),
            ast.Return(value=ast.Tuple(elts=[const(5), name("_fm_r")], ctx=ast.Load())),
        ]
        self.emit(ast.If(test=is_resumable, body=[
            assign("_fm_r", call("_fm_invoke", name("_fm_c"), name("_fm_a"), kwexpr)),
            ast.If(test=got_value, body=[assign(t, name("_fm_r")), *goto(after.id)], orelse=[]),
            ast.If(test=ast.Attribute(value=name("_fm_r"), attr="frames", ctx=ast.Load()), body=suspended,
                   orelse=[]),
            assign("_fm_r", const(None)),
        ], orelse=[]))
        request = ast.Tuple(elts=[const(1), name("_fm_c"), name("_fm_a"), kwexpr], ctx=ast.Load())
        self.terminate(self.save_and_return(resume, request))
        self.cur = resume
        self.terminate([rethrow(), assign(t, name("_fm_rv")), *goto(after.id)])
        self.cur = after
        return name(t)

    def direct_step(self, step: ast.expr, target: str, fetched: Block, resume: Block,
                    request: ast.expr) -> list[ast.stmt]:
        """Statements that resume a resumable generator on the host stack (`step`, a call of
        `_fm_gen_next` or `_fm_gen_step`): its value goes to `target` and on to `fetched`; if its
        body has to wait, the machine adopts its frames above this one and hands the value to
        `resume`; if it cannot run here (too deep), `request` asks the machine to run it."""
        got_value = ast.Compare(left=ast.Attribute(value=name("_fm_r"), attr="__class__", ctx=ast.Load()),
                                ops=[ast.IsNot()], comparators=[name("_fm_Suspension")])
        suspended = [
            assign(ast.Attribute(value=name("_fm_fr"), attr="pc", ctx=ast.Store()), const(resume.id)),
            assign(ast.Attribute(value=name("_fm_fr"), attr="slots", ctx=ast.Store()), call("_fm_locals")),
            ast.Expr(value=call(ast.Attribute(value=ast.Attribute(value=name("_fm_fr"), attr="slots",
                                                                  ctx=ast.Load()), attr="pop", ctx=ast.Load()),
                                const("_fm_r"))),
            ast.Return(value=ast.Tuple(elts=[const(5), name("_fm_r")], ctx=ast.Load())),
        ]
        return [
            assign("_fm_r", step),
            ast.If(test=got_value, body=[assign(target, name("_fm_r")), *goto(fetched.id)], orelse=[]),
            ast.If(test=ast.Attribute(value=name("_fm_r"), attr="frames", ctx=ast.Load()), body=suspended,
                   orelse=[]),
            assign("_fm_r", const(None)),
            *self.save_and_return(resume, request),
        ]

    def lower_BoolOp(self, e: ast.BoolOp) -> ast.expr:
        t = self.temp()
        end = self.new_block()
        for i, v in enumerate(e.values):
            self.emit(assign(t, self.lower(v)))
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
        self.emit(assign(t, self.lower(e.body)))
        self.jump(end)
        self.cur = no
        self.emit(assign(t, self.lower(e.orelse)))
        self.start(end)
        return name(t)

    def lower_Compare(self, e: ast.Compare) -> ast.expr:
        t = self.temp()
        end = self.new_block()
        left = self.materialize(self.lower(e.left))
        for i, (op, comp) in enumerate(zip(e.ops, e.comparators)):
            right = self.materialize(self.lower(comp))
            self.emit(assign(t, ast.Compare(left=left, ops=[op], comparators=[right])))
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
        checked = CHECKED_OPS.get(type(e.op))
        if checked is not None:
            return checked(left, right, e)
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
        if is_routed(e.attr) or e.attr in self.f.extra_routed:
            return routed_attribute(base, e.attr, e)
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
                values.append(ast.FormattedValue(value=shown(inner, v), conversion=v.conversion, format_spec=spec))
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

    def yield_value(self, value: ast.expr, resume: Block) -> None:
        """A generator's unit is itself a CPython generator (see `Machine.unit_fn`): it yields
        (2, value) and goes on at `resume` with what it is sent, its variables kept in the live
        CPython frame (a snapshot reads them from there). When the host drops the live generator
        (its frame's state is saved elsewhere, or no longer needed) no program code runs."""
        self.terminate([
            assign(ast.Attribute(value=name("_fm_fr"), attr="pc", ctx=ast.Store()), const(resume.id)),
            ast.Try(body=[assign("_fm_rv", ast.Yield(value=ast.Tuple(elts=[const(2), value], ctx=ast.Load())))],
                    handlers=[ast.ExceptHandler(type=name("_fm_GeneratorExit"), name=None,
                                                body=[ast.Return(value=const(None))])],
                    orelse=[], finalbody=[]),
            *goto(resume.id),
        ])

    def lower_Yield(self, e: ast.Yield) -> ast.expr:
        value = self.lower(e.value) if e.value is not None else const(None)
        resume = self.new_block()
        self.yield_value(value, resume)
        self.cur = resume
        self.emit(rethrow())  # gen.throw() / gen.close() raise here
        return name("_fm_rv")

    def lower_YieldFrom(self, e: ast.YieldFrom) -> ast.expr:
        """`yield from it`: step the sub-iterator (a resumable generator through the machine,
        request 6, which also passes a thrown exception on), yield what it yields, send it
        what we are sent; the value is what the sub-generator returned."""
        it, snd, v, result, thrown = self.temp(), self.temp(), self.temp(), self.temp(), self.temp()
        self.emit(assign(it, call("_fm_iter", self.lower(e.value))), assign(snd, const(None)))
        head, stepped, resume_step, back, after = (self.new_block() for _ in range(5))
        done, yielding = self.new_block(), self.new_block()
        self.start(head)
        self.emit(ast.Expr(value=call("_fm_tick")))
        is_gen = ast.Compare(left=ast.Attribute(value=name(it), attr="__class__", ctx=ast.Load()),
                             ops=[ast.Is()], comparators=[name("_fm_Generator")])
        step = ast.Tuple(elts=[const(6), name(it), name(snd), const(None)], ctx=ast.Load())
        direct = call("_fm_gen_next", name(it), name(snd), const(None), name("_fm_DELEGATE"))
        self.emit(ast.If(test=is_gen, body=self.direct_step(direct, v, stepped, resume_step, step), orelse=[]))
        self.terminate([assign(v, call("_fm_yf_step", name(it), name(snd))), *goto(stepped.id)])
        self.cur = resume_step
        self.terminate([rethrow(), assign(v, name("_fm_rv")), *goto(stepped.id)])
        self.cur = stepped
        finished = ast.BoolOp(op=ast.Or(), values=[
            ast.Compare(left=name(v), ops=[ast.Is()], comparators=[name("_fm_END")]),
            ast.Compare(left=ast.Attribute(value=name(v), attr="__class__", ctx=ast.Load()), ops=[ast.Is()],
                        comparators=[name("_fm_Returned")])])
        self.branch(finished, done, yielding)
        self.cur = done
        self.emit(assign(result, call("_fm_yf_value", name(v))))
        self.jump(after)
        self.cur = yielding
        gen_yf = ast.Attribute(value=ast.Attribute(value=name("_fm_fr"), attr="gen", ctx=ast.Load()), attr="_yf",
                               ctx=ast.Store())
        # parked on a resumable sub-generator: the machine may step that one for us (`Machine.gen_direct`)
        self.emit(ast.If(test=is_gen, body=[assign(gen_yf, name(it))], orelse=[]))
        self.yield_value(name(v), back)
        self.cur = back
        self.emit(ast.If(test=is_gen, body=[assign(copy.deepcopy(gen_yf), const(None))], orelse=[]))
        # it did: what the sub-generator yielded, returned or raised comes in a `Stepped`
        stepped_in = ast.Compare(left=ast.Attribute(value=name("_fm_rv"), attr="__class__", ctx=ast.Load()),
                                 ops=[ast.Is()], comparators=[name("_fm_Stepped")])
        error = ast.Attribute(value=name("_fm_rv"), attr="error", ctx=ast.Load())
        self.emit(ast.If(test=stepped_in, body=[
            ast.If(test=ast.Compare(left=error, ops=[ast.IsNot()], comparators=[const(None)]),
                   body=[ast.Raise(exc=copy.deepcopy(error), cause=None)], orelse=[]),
            assign(v, ast.Attribute(value=name("_fm_rv"), attr="value", ctx=ast.Load())),
            *goto(stepped.id),
        ], orelse=[]))
        throw = ast.Attribute(value=name("_fm_fr"), attr="throw", ctx=ast.Load())
        pass_on = ast.Tuple(elts=[const(6), name(it), const(None), name(thrown)], ctx=ast.Load())
        self.emit(ast.If(test=ast.Compare(left=throw, ops=[ast.IsNot()], comparators=[const(None)]), body=[
            assign(thrown, call("_fm_take_throw", name("_fm_fr"))),
            ast.If(test=is_gen, body=self.direct_step(call("_fm_gen_step", name(it), const(None), name(thrown)),
                                                      v, stepped, resume_step, pass_on), orelse=[]),
            ast.Raise(exc=name(thrown), cause=None),  # a plain iterator cannot take it
        ], orelse=[]))
        self.terminate([assign(snd, name("_fm_rv")), *goto(head.id)])
        self.cur = after
        return name(result)

    # -- loops -----------------------------------------------------------------
    def loop(self, iterable: ast.expr, bind: Callable[[ast.expr], None], body: Callable[[], None],
             orelse: Callable[[], None] | None, tick: bool = True) -> None:
        it = self.temp()
        self.emit(assign(it, call("_fm_iter", iterable)))
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
        self.emit(ast.If(test=is_gen, body=self.direct_step(call("_fm_gen_next", name(it)), v, fetched, resume,
                                                            request), orelse=[]))
        self.terminate([assign(v, call("_fm_next", name(it), name("_fm_END"))), *goto(fetched.id)])
        self.cur = resume
        self.terminate([rethrow(), assign(v, name("_fm_rv")), *goto(fetched.id)])
        self.cur = fetched
        ended = ast.Compare(left=name(v), ops=[ast.Is()], comparators=[name("_fm_END")])
        self.branch(ended, else_block, body_block)
        self.cur = body_block
        bind(name(v))
        self.loops.append(Loop(head.id, after.id, len(self.exits)))
        body()
        self.loops.pop()
        self.jump(head)
        if orelse:
            self.cur = else_block
            orelse()
            self.jump(after)
        self.cur = after

    def comprehension_loops(self, generators: list[ast.comprehension], first: ast.expr,
                            element: Callable[[], None]) -> None:
        """The nested `for`/`if` loops of a comprehension, with `element()` innermost."""

        def level(i: int) -> None:
            gen = generators[i]
            src = first if i == 0 else self.lower(gen.iter)

            def body() -> None:
                for cond in gen.ifs:
                    ok = self.new_block()
                    self.branch(self.lower(cond), ok, self.blocks[self.loops[-1].continue_pc])
                    self.cur = ok
                if i + 1 < len(generators):
                    level(i + 1)
                else:
                    element()

            self.loop(src, lambda v: self.assign_to(gen.target, v), body, None)

        level(0)

    def inline_comprehension(self, e: ast.ListComp | ast.SetComp | ast.DictComp) -> ast.expr:
        scope = self.f.scopes[e]
        self.inlined[scope] = len(self.inlined) + 1
        self.explicit[scope] = self._explicit_cells(scope)
        result = self.temp()
        empty: ast.expr = ast.List(elts=[], ctx=ast.Load()) if isinstance(e, ast.ListComp) else (
            call(H_SET) if isinstance(e, ast.SetComp) else ast.Dict(keys=[], values=[]))
        self.emit(assign(result, empty))
        first = self.materialize(self.lower(e.generators[0].iter))
        self.scope_stack.append(scope)
        for cell in sorted(self.explicit[scope]):
            self.emit(assign(f"_fm_cell_{self.prefix(scope)}{cell}", call("_fm_Cell")))

        def element() -> None:
            if isinstance(e, ast.DictComp):
                k, v = self.lower_seq([e.key, e.value])
                self.emit(assign(ast.Subscript(value=name(result), slice=k, ctx=ast.Store()), v))
            else:
                method = "append" if isinstance(e, ast.ListComp) else "add"
                elt = self.lower(e.elt)
                self.emit(ast.Expr(value=call(ast.Attribute(value=name(result), attr=method, ctx=ast.Load()), elt)))

        self.comprehension_loops(e.generators, first, element)
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
        if isinstance(target, ast.Attribute):
            obj = self.lower(target.value)
            self.emit(set_attribute(obj, target.attr, value, target))
            return
        if has_attribute_target(target):
            # `self.a, self.b = ...`: unpack into temporaries, then set the attributes in order
            unpack, stores = split_attribute_target(target, self.temp)
            self.emit(assign(unpack, value))
            for tmp, leaf in stores:
                self.assign_to(leaf, name(tmp))
            return
        self.emit(assign(self.lower_target(target), value))

    def delete_attribute(self, t: ast.Attribute) -> None:
        self.emit(ast.Expr(value=call(H_DELATTR, self.lower(t.value), const(t.attr))))
