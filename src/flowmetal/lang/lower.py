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

import ast
import copy
from collections.abc import Callable

from flowmetal.lang.classify import Unit
from flowmetal.lang.lower_expr import ExprLowerer
from flowmetal.lang.lowering import (
    Block,
    Exit,
    Loop,
    ProgramFacts,
    UnitInfo,
    assign,
    goto,
    set_ctx,
    store,
)
from flowmetal.lang.scopes import COMPREHENSIONS, Scope
from flowmetal.lang.translate import (
    CHECKED_OPS,
    attribute_load,
    call,
    const,
    is_number_literal,
    name,
    set_attribute,
)


class UnitLowerer(ExprLowerer):
    """Lowers statements, including the control flow that spans waits."""

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
        if isinstance(s.target, ast.Attribute):
            self._update_attribute(s)
            return
        if type(s.op) in CHECKED_OPS and not is_number_literal(s.value):
            self._checked_assign(s, CHECKED_OPS[type(s.op)])
            return
        if isinstance(s.target, ast.Name) or not self.needs_lowering(s.value):
            target = self.lower_target(s.target)
            assert isinstance(target, ast.Name | ast.Attribute | ast.Subscript)
            self.emit(ast.AugAssign(target=target, op=s.op, value=self.lower(s.value)))
            return
        def update(cur: str, v: ast.expr) -> ast.expr:
            self.emit(ast.AugAssign(target=store(cur), op=s.op, value=v))
            return name(cur)

        self._update_subscript(s, update)

    def _update_attribute(self, s: ast.AugAssign) -> None:
        """`obj.attr op= v`: obj once, the in-place operator on a temporary, then set through the machine."""
        assert isinstance(s.target, ast.Attribute)
        obj = self.materialize(self.lower(s.target.value))
        cur = self.temp()
        self.emit(assign(cur, attribute_load(obj, s.target.attr, s, self.f.extra_routed)))
        v = self.lower(s.value)
        checked = CHECKED_OPS.get(type(s.op))
        if checked is not None and not is_number_literal(s.value):
            self.emit(assign(cur, checked(name(cur), v, s)))
        else:
            self.emit(ast.AugAssign(target=store(cur), op=s.op, value=v))
        self.emit(set_attribute(obj, s.target.attr, name(cur), s))

    def _update_subscript(self, s: ast.AugAssign, new_value: Callable[[str, ast.expr], ast.expr]) -> None:
        """`a[i] op= v` where v may wait: `a` and `i` are evaluated once, then the item is read,
        `new_value(temp holding it, lowered v)` computed, and stored back."""
        assert isinstance(s.target, ast.Subscript)  # attribute targets are rejected by the checker
        obj = self.materialize(self.lower(s.target.value))
        idx = self.materialize(self.lower(s.target.slice))
        cur = self.temp()
        self.emit(assign(cur, ast.Subscript(value=obj, slice=idx, ctx=ast.Load())))
        value = new_value(cur, self.lower(s.value))
        self.emit(assign(ast.Subscript(value=obj, slice=idx, ctx=ast.Store()), value))

    def _checked_assign(self, s: ast.AugAssign, checked: Callable[[ast.expr, ast.expr, ast.AST], ast.expr]) -> None:
        """`x %= v` (may format) or `x **= v` (may be huge): `x = x % v` through the machine."""
        if isinstance(s.target, ast.Name):
            current = self.materialize(self.lower(ast.Name(id=s.target.id, ctx=ast.Load())))
            v = self.lower(s.value)
            self.assign_to(s.target, checked(current, v, s))
            return
        self._update_subscript(s, lambda cur, v: checked(name(cur), v, s))

    def stmt_Delete(self, s: ast.Delete) -> None:
        for t in s.targets:
            if isinstance(t, ast.Attribute):
                self.delete_attribute(t)
                continue
            target = self.lower_target(t)
            set_ctx(target, ast.Del())
            self.emit(ast.Delete(targets=[target]))

    def stmt_ClassDef(self, s: ast.ClassDef) -> None:
        # the class body runs natively (see Translator.visit_ClassDef); its methods that may
        # wait are resumable function values like any other
        self.emit(*self.translator().translate_stmts([s]))

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
        self.terminate(goto(loop.break_pc))

    def stmt_Continue(self, s: ast.Continue) -> None:
        loop = self.loops[-1]
        self.run_exits(loop.exits_depth)
        self.terminate(goto(loop.continue_pc))

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
            self.emit(assign(exc, name("_fm_caught")))
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
                    set_ctx(target, ast.Del())
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
            self.emit(assign(pending, name("_fm_caught")))
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
        self.emit(assign(exc, name("_fm_caught")))
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
                self.emit(assign(target, value))
        else:
            self.emit(assign(target, tr.make_function_value(node)))
        for d in reversed(decorators):
            current = self.resolve(self.scope_stack[-1], s.name, ast.Load())
            result = self.emit_call(d, [current], [])
            self.emit(assign(self.resolve(self.scope_stack[-1], s.name, ast.Store()), result))



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
    if isinstance(node, ast.Module) or isinstance(node, ast.FunctionDef):
        low.lower_body(node.body)
    elif isinstance(node, ast.Lambda):
        low.loc = node
        low.emit(ast.Return(value=ast.Tuple(elts=[const(0), low.lower(node.body)], ctx=ast.Load())))
        low.cur.done = True
    elif isinstance(node, ast.GeneratorExp):
        _lower_genexp(low, node)
    scope = unit.scope
    info.cellvars = sorted(low.explicit[scope])
    info.frees = list(scope.frees) if not scope.is_module else []
    info.handlers = {b.id: b.handler for b in low.blocks if b.handler is not None}
    info.lines = {b.id: b.stmts[0].lineno for b in low.blocks if b.stmts and hasattr(b.stmts[0], "lineno")}
    for local in scope.locals:
        info.local_names[f"_fm_cell_{local}" if local in low.explicit[scope] else local] = local
    for free in info.frees:
        info.local_names[f"_fm_cell_{free}"] = free
    return _assemble(low, info)


def _lower_genexp(low: UnitLowerer, node: ast.GeneratorExp) -> None:
    low.loc = node

    def element() -> None:
        low.lower_Yield(ast.Yield(value=node.elt))

    low.comprehension_loops(node.generators, name("_fm_arg0"), element)


def _assemble(low: UnitLowerer, info: UnitInfo) -> list[ast.stmt]:
    node = low.unit.node
    fr = name("_fm_fr")
    assigned = {n for b in low.blocks for s in b.stmts for n in _assigned_names(s)}
    slots = sorted((assigned | set(info.local_names) | set(info.params) | {"_fm_arg0"})
                   - {"_fm_pc", "_fm_e", "_fm_s", "_fm_fr", "_fm_rv", "_fm_h"})
    prologue: list[ast.stmt] = []
    if low.globals_stored:
        prologue.append(ast.Global(names=sorted(low.globals_stored)))
    prologue.append(assign("_fm_pc", ast.Attribute(value=fr, attr="pc", ctx=ast.Load())))
    prologue.append(assign("_fm_s", ast.Attribute(value=name("_fm_fr"), attr="slots", ctx=ast.Load())))
    for slot in slots:
        if slot in low.globals_stored:
            continue
        load = assign(slot, ast.Subscript(value=name("_fm_s"), slice=const(slot), ctx=ast.Load()))
        prologue.append(ast.If(test=ast.Compare(left=const(slot), ops=[ast.In()], comparators=[name("_fm_s")]),
                               body=[load], orelse=[]))
    prologue.append(assign("_fm_s", const(None)))
    inner = ast.While(test=const(True), body=_dispatch_tree(low.blocks, 0, len(low.blocks)), orelse=[])
    handlers_lookup = ast.Call(func=ast.Attribute(value=ast.Attribute(value=ast.Attribute(
        value=name("_fm_fr"), attr="unit", ctx=ast.Load()), attr="handlers", ctx=ast.Load()), attr="get",
        ctx=ast.Load()), args=[name("_fm_pc")], keywords=[])
    catch = ast.ExceptHandler(
        type=name("_fm_BaseException"),
        name="_fm_e",
        body=[
            assign("_fm_h", handlers_lookup),
            ast.If(test=ast.Compare(left=name("_fm_h"), ops=[ast.Is()], comparators=[const(None)]),
                   body=[ast.Raise(exc=None, cause=None)], orelse=[]),
            ast.Expr(value=call("_fm_guard", name("_fm_e"))),  # the machine's own stops pass through
            assign("_fm_caught", name("_fm_e")),
            assign("_fm_pc", name("_fm_h")),
        ],
    )
    outer = ast.While(test=const(True), body=[ast.Try(body=[inner], handlers=[catch], orelse=[],
                                                       finalbody=[])], orelse=[])
    fn_name = f"_fm_u{info.uid}"
    machine = ast.FunctionDef(
        name=fn_name,
        args=ast.arguments(posonlyargs=[], args=[ast.arg(arg="_fm_fr"), ast.arg(arg="_fm_rv")], vararg=None,
                           kwonlyargs=[], kw_defaults=[], kwarg=None, defaults=[]),
        body=[*prologue, outer], decorator_list=[], returns=None,
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
        params = [a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]]
        params += [a.arg for a in (args.vararg, args.kwarg) if a is not None]
        # the bound arguments, by name (an explicit dict: the binder needs no helper)
        bound = ast.Dict(keys=[const(p) for p in params], values=[name(p) for p in params])
        binder = ast.FunctionDef(name=f"_fm_b{info.uid}", args=args, body=[ast.Return(value=bound)],
                                 decorator_list=[], returns=None)
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
        if isinstance(n, ast.ClassDef):  # the class body's names are the class's
            found.add(n.name)
            stack.extend([*n.decorator_list, *n.bases])
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


__all__ = ["ProgramFacts", "UnitInfo", "default_facts_builtin", "lower_unit"]
