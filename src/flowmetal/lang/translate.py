"""Rewrite checked Flowmetal syntax into CPython syntax that runs natively.

Plain functions (see `classify`) are translated whole; resumable functions use
this for the pieces of their code that cannot wait. The rewrite keeps Python
semantics and source positions (so CPython's own error messages and line
numbers are Flowmetal's), and changes only what must differ:

- set displays and set comprehensions build insertion-ordered sets;
- attributes whose name the allow-list routes (`lang/surface.py`) are read through
  the machine's checked getattr; the others natively;
- f-strings, `%`-formatting and `str(...)` write values through the machine's
  `show` functions, which leave out memory addresses;
- `seq * n` with a literal sequence is checked against the memory limit;
- loops, comprehension iterations (and functions on a recursion cycle) tick the
  fuel counter;
- every `except` lets the machine's own aborts (fuel, memory) pass through;
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
from flowmetal.lang.names import BUILTIN_NAMES
from flowmetal.lang.scopes import COMPREHENSIONS, Scope
from flowmetal.lang.surface import is_routed
from flowmetal.lang.surface_classes import is_dunder

# Names of the machine helpers that generated code calls. They are closure cells of the
# generated code (see `HELPERS`), so no name a program binds can shadow them; the checker
# refuses `_fm_` names anyway.
H_SET = "_fm_set"
H_REP = "_fm_rep"
H_TICK = "_fm_tick"
H_IMPORT = "_fm_import"
H_MKFN = "_fm_mkfn"
H_MKGEN = "_fm_mkgen"
H_GETATTR = "_fm_getattr"
H_CALLATTR = "_fm_callattr"
H_PERCENT = "_fm_percent"
H_MOD = "_fm_mod"
H_STR = "_fm_str"
H_HOSTSTR = "_fm_hoststr"
H_ITER = "_fm_iter"
H_GUARD = "_fm_guard"
H_BASE_EXC = "_fm_BaseException"
H_CHARGE = "_fm_charge"
H_ZIP = "_fm_zip"
H_TICKS = "_fm_ticks"
H_TYPE = "_fm_type"
H_SAFE = "_fm_SAFE"
H_SHOWN = "_fm_shown"
H_STR1 = "_fm_str1"
H_MATERIALIZE = "_fm_materialize"
H_POW = "_fm_pow"
H_LSHIFT = "_fm_lshift"
H_SETATTR = "_fm_setattr"
H_DELATTR = "_fm_delattr"
H_BASES = "_fm_bases"
H_CLASS = "_fm_class"
H_SUPER = "_fm_super"
H_FLOWOBJECT = "_fm_FlowObject"
SELF_OK = "_fm_self_ok"  # in a method: its first argument is an instance of the program's classes

# Every helper generated code may use: the parameters of the function that encloses all
# generated code (`program._compile_tree`), whose cells each machine fills (`runtime_builtins`).
HELPERS: tuple[str, ...] = (
    H_SET, H_REP, H_TICK, H_IMPORT, H_MKFN, H_MKGEN, H_GETATTR, H_CALLATTR, H_PERCENT, H_MOD, H_STR,
    H_HOSTSTR, H_ITER, H_GUARD, H_BASE_EXC, H_CHARGE, H_MATERIALIZE, H_POW, H_LSHIFT, H_ZIP, H_TICKS, H_TYPE, H_SAFE, H_SHOWN, H_STR1, "_fm_locals", "_fm_next", "_fm_isinstance", "_fm_Cell",
    "_fm_FunctionType", "_fm_Generator", "_fm_Function", "_fm_Suspension", "_fm_invoke", "_fm_END",
    "_fm_AssertionError", "_fm_in_handler", "_fm_take_throw", "_fm_enter", "_fm_exit",
    "_fm_yf_step", "_fm_Returned", "_fm_DELEGATE", "_fm_yf_value", "_fm_gen_next", "_fm_gen_step", "_fm_GenMethod",
    "_fm_GeneratorExit", "_fm_Stepped",
    H_SETATTR, H_DELATTR, H_BASES, H_CLASS, H_SUPER, H_FLOWOBJECT, "_fm_MethodType",
)

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


def ticking(iterable: ast.expr, target: ast.expr, at: ast.AST) -> tuple[ast.expr, ast.expr]:
    """A `for` loop's (or comprehension clause's) iterable and target, so that each iteration
    also takes one tick: `for x in xs` becomes `for x, _fm_k in zip(xs, ticks)`, all in C."""
    zipped = ast.copy_location(call(H_ZIP, iterable, name(H_TICKS)), at)
    pair = ast.copy_location(ast.Tuple(elts=[target, name("_fm_k", ast.Store())], ctx=ast.Store()), at)
    return zipped, pair


def is_simple(node: ast.expr) -> bool:
    """Evaluating it twice is the same as once (a name of a local, or a constant)."""
    return isinstance(node, ast.Name | ast.Constant)


def shown(value: ast.expr, at: ast.AST) -> ast.expr:
    """`value` as CPython's own formatting may see it: itself when its text cannot contain
    an address (ints, strs, ...), else a stand-in that writes itself through `show.py`."""
    if is_simple(value):
        safe = ast.Compare(left=call(H_TYPE, value), ops=[ast.In()], comparators=[name(H_SAFE)])
        return ast.copy_location(ast.IfExp(test=safe, body=value, orelse=call(H_SHOWN, value)), at)
    return ast.copy_location(call(H_SHOWN, value), at)


def is_format_literal(node: ast.expr) -> bool:
    """A string (or bytes) written in the source: `%` on it formats."""
    if isinstance(node, ast.JoinedStr):
        return True
    return isinstance(node, ast.Constant) and isinstance(node.value, str | bytes)


def is_number_literal(node: ast.expr) -> bool:
    """`x % 7`: whatever x is, no value's text is involved."""
    return isinstance(node, ast.Constant) and type(node.value) in (int, float)


def modulo(left: ast.expr, right: ast.expr, at: ast.AST) -> ast.expr:
    """`left % right`, formatting through the machine when `left` may be a template."""
    if is_format_literal(left):
        return ast.copy_location(call(H_PERCENT, left, right), at)
    if is_number_literal(right) or isinstance(left, ast.Constant):
        return ast.copy_location(ast.BinOp(left=left, op=ast.Mod(), right=right), at)
    return ast.copy_location(call(H_MOD, left, right), at)


def _small_int(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) is int and node.value <= 64


def power(left: ast.expr, right: ast.expr, at: ast.AST) -> ast.expr:
    """`left ** right`, checking first that the result can be held (unless the exponent is a
    small literal, or a float, as in `x ** 2` or `x ** 0.5`)."""
    if _small_int(right) or (isinstance(right, ast.Constant) and type(right.value) is float):
        return ast.copy_location(ast.BinOp(left=left, op=ast.Pow(), right=right), at)
    return ast.copy_location(call(H_POW, left, right), at)


def lshift(left: ast.expr, right: ast.expr, at: ast.AST) -> ast.expr:
    """`left << right`, checking first that the result can be held (unless right is a small literal)."""
    if _small_int(right):
        return ast.copy_location(ast.BinOp(left=left, op=ast.LShift(), right=right), at)
    return ast.copy_location(call(H_LSHIFT, left, right), at)


# operators the machine carries out itself when they may format text or build huge integers
CHECKED_OPS: dict[type, Callable[[ast.expr, ast.expr, ast.AST], ast.expr]] = {
    ast.Mod: modulo, ast.Pow: power, ast.LShift: lshift,
}

# Built-ins that consume an iterable in C: direct calls charge fuel for it first
# (`_fm_charge`), and those that store every element also check the size (`_fm_materialize`).
CONSUMERS: dict[str, str] = {
    "sum": H_CHARGE, "min": H_CHARGE, "max": H_CHARGE, "any": H_CHARGE, "all": H_CHARGE,
    "sorted": H_MATERIALIZE, "list": H_MATERIALIZE, "tuple": H_MATERIALIZE, "set": H_MATERIALIZE,
    "frozenset": H_MATERIALIZE, "dict": H_MATERIALIZE, "bytes": H_MATERIALIZE,
}
_COUNTS_ITSELF = (ast.GeneratorExp, ast.ListComp, ast.SetComp, ast.DictComp, ast.List, ast.Tuple, ast.Set,
                  ast.Dict, ast.Constant, ast.JoinedStr)


def routed_attribute(value: ast.expr, attr: str, at: ast.AST) -> ast.expr:
    return ast.copy_location(call(H_GETATTR, value, const(attr)), at)


def attribute_load(value: ast.expr, attr: str, at: ast.AST, extra_routed: frozenset[str] = frozenset()) -> ast.expr:
    """`value.attr` as the allow-list reads it (natively, or through the checked getattr)."""
    if is_routed(attr) or attr in extra_routed:
        return routed_attribute(value, attr, at)
    return ast.copy_location(ast.Attribute(value=value, attr=attr, ctx=ast.Load()), at)


def set_attribute(obj: ast.expr, attr: str, value: ast.expr, at: ast.AST) -> ast.stmt:
    """`obj.attr = value`: through the machine, which allows it only on the program's own objects."""
    return ast.copy_location(ast.Expr(value=call(H_SETATTR, obj, const(attr), value)), at)


def has_attribute_target(target: ast.expr) -> bool:
    if isinstance(target, ast.Attribute):
        return True
    if isinstance(target, ast.Tuple | ast.List):
        return any(has_attribute_target(e) for e in target.elts)
    if isinstance(target, ast.Starred):
        return has_attribute_target(target.value)
    return False


def split_attribute_target(target: ast.expr, fresh: Callable[[], str]) -> tuple[ast.expr, list[tuple[str, ast.expr]]]:
    """An unpacking target with attributes in it (`node.next, prev, node = ...`): the same
    target with every name, item and attribute replaced by a fresh temporary, and the
    (temporary, original target) pairs to assign afterwards, left to right as CPython does
    (so `node.next` is set before `node` is rebound)."""
    stores: list[tuple[str, ast.expr]] = []

    def walk(t: ast.expr) -> ast.expr:
        if isinstance(t, ast.Tuple | ast.List):
            return ast.copy_location(type(t)(elts=[walk(e) for e in t.elts], ctx=ast.Store()), t)
        if isinstance(t, ast.Starred):
            return ast.copy_location(ast.Starred(value=walk(t.value), ctx=ast.Store()), t)
        tmp = fresh()
        stores.append((tmp, t))
        return ast.copy_location(ast.Name(id=tmp, ctx=ast.Store()), t)

    return walk(target), stores


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
        extra_routed: frozenset[str] = frozenset(),
    ) -> None:
        self.scopes = scopes
        self.units = units
        self.unit_ids = unit_ids
        self.scope_stack = [scope]
        self.resolve = resolve
        self.tick_units = tick_units
        # names this program gives values that are host classes underneath (its namedtuples'
        # fields, `lang/declared.py`): always read through the checked getattr
        self.extra_routed = extra_routed
        root = scope
        while root.parent is not None:
            root = root.parent
        self.module_scope = root

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

    def is_builtin(self, node: ast.expr, builtin: str) -> bool:
        """Whether `node` is the name `builtin`, meaning the built-in (not shadowed anywhere)."""
        if not (isinstance(node, ast.Name) and node.id == builtin and builtin in BUILTIN_NAMES):
            return False
        return self.scope.owner_of(builtin) is None and builtin not in self.module_scope.bound

    def routed(self, attr: str) -> bool:
        return is_routed(attr) or attr in self.extra_routed

    def visit_Attribute(self, node: ast.Attribute) -> ast.expr:
        if isinstance(node.ctx, ast.Load) and self.is_builtin(node.value, "str") and not self.routed(node.attr):
            # `str.lower`: the host type's own method (Flowmetal's `str` object would forward it)
            return ast.copy_location(ast.Attribute(value=name(H_HOSTSTR), attr=node.attr, ctx=ast.Load()), node)
        frame = self.self_stack[-1] if getattr(self, "self_stack", None) else None
        own = frame is not None and isinstance(node.value, ast.Name) and node.value.id == frame[0]
        node.value = self.visit(node.value)
        if isinstance(node.ctx, ast.Load) and self.routed(node.attr):
            if own and not is_dunder(node.attr):
                # `self.name` in a method: natively when self is the program's own instance
                assert frame is not None
                frame[1] = True
                native = ast.Attribute(value=copy.deepcopy(node.value), attr=node.attr, ctx=ast.Load())
                return ast.copy_location(ast.IfExp(test=name(SELF_OK), body=native,
                                                   orelse=routed_attribute(node.value, node.attr, node)), node)
            if isinstance(node.value, ast.Name) and not is_dunder(node.attr):
                # `node.key`: natively on an instance of the program's classes (whose attributes
                # without a dunder name are all its own, see machine/classes.py), else checked
                is_own = call("_fm_isinstance", name(node.value.id), name(H_FLOWOBJECT))
                native = ast.Attribute(value=name(node.value.id), attr=node.attr, ctx=ast.Load())
                return ast.copy_location(ast.IfExp(test=is_own, body=native,
                                                   orelse=routed_attribute(node.value, node.attr, node)), node)
            return routed_attribute(node.value, node.attr, node)
        return node

    def super_call(self, node: ast.Call) -> ast.expr | None:
        """`super()` in a method: `super(TheClass, first_argument)`, checked by the machine
        (the zero-argument form needs a frame CPython's way, which resumable methods lack)."""
        if node.args or node.keywords or not self.is_builtin(node.func, "super"):
            return None
        scope = self.scope
        cls = scope.method_of()
        if cls is None or not scope.params:
            return None
        owner = self.visit(ast.copy_location(ast.Name(id=cls.name, ctx=ast.Load()), node))
        first = self.visit(ast.copy_location(ast.Name(id=scope.params[0], ctx=ast.Load()), node))
        return ast.copy_location(call(H_SUPER, owner, first), node)

    def visit_Call(self, node: ast.Call) -> ast.expr:
        func = node.func
        if isinstance(func, ast.Name) and func.id == "super":
            rewritten = self.super_call(node)
            if rewritten is not None:
                return rewritten
        if isinstance(func, ast.Attribute) and self.routed(func.attr):
            receiver = self.visit(func.value)
            args = [self.visit(a) for a in node.args]
            keywords = [ast.keyword(arg=k.arg, value=self.visit(k.value)) for k in node.keywords]
            return ast.copy_location(call(H_CALLATTR, receiver, const(func.attr), *args, keywords=keywords), node)
        if self.is_builtin(func, "str"):
            if len(node.args) == 1 and not node.keywords and not isinstance(node.args[0], ast.Starred):
                # `str(x)`: CPython's own str when x's text cannot contain an address
                arg = self.visit(node.args[0])
                if is_simple(arg):
                    safe = ast.Compare(left=call(H_TYPE, arg), ops=[ast.In()], comparators=[name(H_SAFE)])
                    return ast.copy_location(ast.IfExp(test=safe, body=call(H_HOSTSTR, arg),
                                                       orelse=call(H_STR1, arg)), node)
                return ast.copy_location(call(H_STR1, arg), node)
            node.func = name(H_STR)
        elif self.is_builtin(func, "isinstance") and len(node.args) == 2 and not node.keywords:
            node.args[1] = self._host_types(node.args[1])
        else:
            node.args = self.charged_args(func, node.args)
        self.generic_visit(node)
        return node

    def charged_args(self, func: ast.expr, args: list[ast.expr], source: list[ast.expr] | None = None
                     ) -> list[ast.expr]:
        """The arguments of a call, with the iterable a consuming built-in will run through in C
        wrapped so that it is charged for (see CONSUMERS). `source`: the arguments as written,
        when `args` are their lowered forms."""
        written = source if source is not None else args
        if not args or isinstance(written[0], (ast.Starred, *_COUNTS_ITSELF)):
            return args
        if isinstance(func, ast.Name) and func.id in CONSUMERS and self.is_builtin(func, func.id) and (
                func.id not in ("min", "max") or len(args) == 1):
            helper = CONSUMERS[func.id]
        elif isinstance(func, ast.Attribute) and func.attr == "join" and is_format_literal(func.value):
            helper = H_CHARGE  # `", ".join(xs)`
        else:
            return args
        return [ast.copy_location(call(helper, args[0]), args[0]), *args[1:]]

    def _host_types(self, node: ast.expr) -> ast.expr:
        """`isinstance(x, str)`: test against the host type directly (no Python-level check)."""
        if self.is_builtin(node, "str"):
            return ast.copy_location(name(H_HOSTSTR), node)
        if isinstance(node, ast.Tuple):
            node.elts = [self._host_types(e) for e in node.elts]
        return node

    def visit_FormattedValue(self, node: ast.FormattedValue) -> ast.expr:
        node.value = shown(self.visit(node.value), node)
        if node.format_spec is not None:
            node.format_spec = self.visit(node.format_spec)
        return node

    def visit_BinOp(self, node: ast.BinOp) -> ast.expr:
        self.generic_visit(node)
        if isinstance(node.op, ast.Mult) and (is_sequence_literal(node.left) or is_sequence_literal(node.right)):
            return ast.copy_location(call(H_REP, node.left, node.right), node)
        checked = CHECKED_OPS.get(type(node.op))
        if checked is not None:
            return checked(node.left, node.right, node)
        return node

    def store_attr(self, obj: ast.expr, attr: str, value: ast.expr, at: ast.AST) -> ast.stmt:
        """`obj.attr = value`: natively when obj is the method's own instance (checked once on
        entry, see `visit_FunctionDef`), else through the machine."""
        frame = self.self_stack[-1] if getattr(self, "self_stack", None) else None
        if frame is not None and isinstance(obj, ast.Name) and obj.id == frame[0]:
            frame[1] = True
            native = ast.Assign(targets=[ast.Attribute(value=self.visit(copy.deepcopy(obj)), attr=attr,
                                                       ctx=ast.Store())], value=value)
            slow = set_attribute(self.visit(obj), attr, copy.deepcopy(value), at)
            return ast.copy_location(ast.If(test=name(SELF_OK), body=[ast.copy_location(native, at)],
                                            orelse=[slow]), at)
        target = self.visit(obj)
        if isinstance(target, ast.Name):
            # `node.left = ...`: natively on an instance of the program's classes, else checked
            is_own = call("_fm_isinstance", name(target.id), name(H_FLOWOBJECT))
            native = ast.Assign(targets=[ast.Attribute(value=name(target.id), attr=attr, ctx=ast.Store())],
                                value=value)
            slow = set_attribute(name(target.id), attr, copy.deepcopy(value), at)
            return ast.copy_location(ast.If(test=is_own, body=[ast.copy_location(native, at)], orelse=[slow]), at)
        return set_attribute(target, attr, value, at)

    def fresh(self) -> str:
        self.aug_temps = getattr(self, "aug_temps", 0) + 1
        return f"_fm_ao{self.aug_temps}"

    def visit_Assign(self, node: ast.Assign) -> ast.AST | list[ast.stmt]:
        if not any(has_attribute_target(t) for t in node.targets):
            self.generic_visit(node)
            return node
        # attributes are set through the machine: the value first, then each target in order
        value = self.visit(node.value)
        out: list[ast.stmt] = []
        if len(node.targets) > 1 or not isinstance(node.targets[0], ast.Attribute):
            tmp = self.fresh()
            out.append(ast.copy_location(ast.Assign(targets=[name(tmp, ast.Store())], value=value), node))
            value = name(tmp)
        for target in node.targets:
            if isinstance(target, ast.Attribute):
                out.append(self.store_attr(target.value, target.attr, value, node))
                continue
            if not has_attribute_target(target):
                out.append(ast.copy_location(ast.Assign(targets=[self.visit(target)], value=value), node))
                continue
            unpack, stores = split_attribute_target(target, self.fresh)
            out.append(ast.copy_location(ast.Assign(targets=[unpack], value=value), node))
            for tmp, leaf in stores:
                if isinstance(leaf, ast.Attribute):
                    out.append(self.store_attr(leaf.value, leaf.attr, name(tmp), node))
                else:
                    out.append(ast.copy_location(ast.Assign(targets=[self.visit(leaf)], value=name(tmp)), node))
        return out

    def visit_Delete(self, node: ast.Delete) -> ast.AST | list[ast.stmt]:
        if not any(isinstance(t, ast.Attribute) for t in node.targets):
            self.generic_visit(node)
            return node
        out: list[ast.stmt] = []
        for t in node.targets:
            if isinstance(t, ast.Attribute):
                out.append(ast.copy_location(ast.Expr(value=call(H_DELATTR, self.visit(t.value), const(t.attr))), node))
            else:
                out.append(ast.copy_location(ast.Delete(targets=[self.visit(t)]), node))
        return out

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.AST | list[ast.stmt]:
        if isinstance(node.target, ast.Attribute):
            frame = self.self_stack[-1] if getattr(self, "self_stack", None) else None
            target_obj = node.target.value
            if frame is not None and isinstance(target_obj, ast.Name) and target_obj.id == frame[0] and (
                    CHECKED_OPS.get(type(node.op)) is None or is_number_literal(node.value)):
                # `self.count += 1` in a method: natively when self is the program's own instance
                frame[1] = True
                native = ast.AugAssign(target=ast.Attribute(value=self.visit(copy.deepcopy(target_obj)),
                                                            attr=node.target.attr, ctx=ast.Store()),
                                       op=node.op, value=self.visit(copy.deepcopy(node.value)))
                self.self_stack.append(None)  # the slow branch: as for any other object
                try:
                    slow = self.visit_AugAssign(node)
                finally:
                    self.self_stack.pop()
                slow_body: list[ast.stmt] = [x for x in (slow if isinstance(slow, list) else [slow])
                                             if isinstance(x, ast.stmt)]
                return ast.copy_location(ast.If(test=name(SELF_OK), body=[ast.copy_location(native, node)],
                                                orelse=slow_body), node)
            # `obj.attr op= v`: the object once, the in-place operator on a temporary, then set
            obj, cur = self.fresh(), self.fresh()
            checked_op = CHECKED_OPS.get(type(node.op))
            steps: list[ast.stmt] = [
                ast.Assign(targets=[name(obj, ast.Store())], value=self.visit(node.target.value)),
                ast.Assign(targets=[name(cur, ast.Store())],
                           value=attribute_load(name(obj), node.target.attr, node, self.extra_routed))]
            value = self.visit(node.value)
            if checked_op is not None and not is_number_literal(node.value):
                steps.append(ast.Assign(targets=[name(cur, ast.Store())], value=checked_op(name(cur), value, node)))
            else:
                steps.append(ast.AugAssign(target=name(cur, ast.Store()), op=node.op, value=value))
            steps.append(set_attribute(name(obj), node.target.attr, name(cur), node))
            return [ast.copy_location(s, node) for s in steps]
        checked = CHECKED_OPS.get(type(node.op))
        if checked is None or is_number_literal(node.value):
            self.generic_visit(node)
            return node
        # `x %= v` may format, `x **= v` may be huge: `x = _fm_mod(x, v)`, evaluating a
        # subscript's parts once
        value = self.visit(node.value)
        target = node.target
        if isinstance(target, ast.Name):
            load = self.visit(ast.Name(id=target.id, ctx=ast.Load()))
            store = self.visit(ast.Name(id=target.id, ctx=ast.Store()))
            return ast.copy_location(ast.Assign(targets=[store], value=checked(load, value, node)), node)
        assert isinstance(target, ast.Subscript)  # attribute targets are handled above
        self.aug_temps = getattr(self, "aug_temps", 0) + 1
        obj, idx = f"_fm_ao{self.aug_temps}", f"_fm_ai{self.aug_temps}"
        out: list[ast.stmt] = [
            ast.Assign(targets=[name(obj, ast.Store())], value=self.visit(target.value)),
            ast.Assign(targets=[name(idx, ast.Store())], value=self.visit(target.slice)),
            ast.Assign(targets=[ast.Subscript(value=name(obj), slice=name(idx), ctx=ast.Store())],
                       value=checked(ast.Subscript(value=name(obj), slice=name(idx), ctx=ast.Load()), value, node)),
        ]
        return [ast.copy_location(s, node) for s in out]

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
                if i:  # every iteration ticks the fuel counter, as a loop does
                    gen.iter, gen.target = ticking(gen.iter, gen.target, node)
            first = node.generators[0]
            first.iter, first.target = ticking(first.iter, first.target, node)
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
            call(H_MKGEN, const(self.unit_ids[unit]), call(H_ITER, first), self.cells_for(unit)), node
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
            own = self.own_instance_param(node)
            if not hasattr(self, "self_stack"):
                self.self_stack: list[list[Any] | None] = []
            self.self_stack.append([own, False] if own is not None else None)
            try:
                body = self.translate_body(node.body)
            finally:
                frame = self.self_stack.pop()
            if frame is not None and frame[1]:
                check = ast.Assign(targets=[name(SELF_OK, ast.Store())],
                                   value=call("_fm_isinstance", name(str(own)), name(H_FLOWOBJECT)))
                body.insert(0, ast.copy_location(check, node))
            if unit in self.tick_units:
                body.insert(0, ast.copy_location(tick_stmt(), node))
            node.body = body
            return node

        return self._in_scope(node, inner)

    def own_instance_param(self, node: ast.FunctionDef) -> str | None:
        """The first parameter of a method (a def directly in a class body) that its body never
        rebinds: `self`, whose attributes the method may then set natively."""
        scope = self.scopes[node]
        params = [*node.args.posonlyargs, *node.args.args]
        if scope.method_of() is None or not params:
            return None
        first = params[0].arg
        if scope.binding_count.get(first, 0) != 1 or first in scope.declared_global or any(
                first in s.declared_nonlocal for s in _descendants(scope)):
            return None
        return first

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
    def visit_For(self, node: ast.For) -> ast.AST:
        self.generic_visit(node)
        node.iter, node.target = ticking(node.iter, node.target, node)
        return node

    def visit_While(self, node: ast.While) -> ast.AST:
        self.generic_visit(node)
        node.body.insert(0, ast.copy_location(tick_stmt(), node))
        return node

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> ast.AST:
        self.generic_visit(node)
        if node.type is None:
            node.type = ast.copy_location(name(H_BASE_EXC), node)
        # Whatever the handler's type turns out to be at run time, the machine's own aborts
        # (fuel, memory, a slice's end) pass straight through it.
        # (Handlers are translated whole only in plain functions, where the name is a plain local.)
        if node.name is None:
            node.name = "_fm_x"
        guard = ast.Expr(value=call(H_GUARD, name(node.name)))
        node.body.insert(0, ast.copy_location(guard, node))
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
        if self.scope.is_class and isinstance(node.target, ast.Name) and node.simple:
            # a class body keeps its annotations as text (`__annotations__`, as under `from __future__
            # import annotations`): `@dataclass` and `NamedTuple` read fields from them; nothing is evaluated
            text = ast.copy_location(ast.Constant(ast.unparse(node.annotation)), node.annotation)
            value = None if node.value is None else self.visit(node.value)
            return ast.copy_location(ast.AnnAssign(target=node.target, annotation=text, value=value, simple=1), node)
        if node.value is None:
            return None
        assign = ast.Assign(targets=[node.target], value=node.value)
        ast.copy_location(assign, node)
        return self.visit(assign)

    def visit_ClassDef(self, node: ast.ClassDef) -> list[ast.stmt]:
        """A class statement stays a class statement (its body runs natively, and cannot wait):
        the machine checks its bases (`_fm_bases`) and finishes the class (`_fm_class`)."""
        decorators = [self.visit(d) for d in node.decorator_list]
        bases = [self.visit(b) for b in node.bases]
        scope = self.scopes[node]
        self.scope_stack.append(scope)
        try:
            body = self.translate_body(node.body)
        finally:
            self.scope_stack.pop()
        finish = ast.copy_location(call(H_CLASS, const(scope.qualname)), node)
        checked_bases = ast.copy_location(call(H_BASES, *bases), node)
        cls = ast.ClassDef(name=node.name, bases=[ast.Starred(value=checked_bases, ctx=ast.Load())], keywords=[],
                           body=body, decorator_list=[*decorators, finish])
        out: list[ast.stmt] = [ast.copy_location(cls, node)]
        target = self.visit(ast.copy_location(ast.Name(id=node.name, ctx=ast.Store()), node))
        if not (isinstance(target, ast.Name) and target.id == node.name):
            out.append(ast.copy_location(ast.Assign(targets=[target], value=name(node.name)), node))
        return out

    def visit_Import(self, node: ast.Import) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        for alias in node.names:
            # `import a.b` binds `a` (whose member `b` is the submodule); `import a.b as c` binds a.b
            module = alias.name if alias.asname else alias.name.split(".")[0]
            target = self.visit(ast.Name(id=alias.asname or module, ctx=ast.Store()))
            out.append(ast.copy_location(ast.Assign(targets=[target], value=call(H_IMPORT, const(module))), node))
        return out

    def visit_ImportFrom(self, node: ast.ImportFrom) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        if node.module == "__future__":
            return out  # `from __future__ import annotations`: annotations are never evaluated anyway
        for alias in node.names:
            target = self.visit(ast.Name(id=alias.asname or alias.name, ctx=ast.Store()))
            value = call(H_IMPORT, const(node.module or ""), const(alias.name))
            out.append(ast.copy_location(ast.Assign(targets=[target], value=value), node))
        return out


def _descendants(scope: Scope) -> list[Scope]:
    out: list[Scope] = []
    todo = list(scope.children)
    while todo:
        s = todo.pop()
        out.append(s)
        todo.extend(s.children)
    return out


def is_comprehension(node: ast.AST) -> bool:
    return isinstance(node, COMPREHENSIONS)
