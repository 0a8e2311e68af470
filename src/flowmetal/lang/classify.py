"""Decide, per function, whether it can ever wait — and so how to compile it.

A Flowmetal program can only be suspended inside a call that reaches an
effect (a durable action from the `flowmetal` module). A function whose every
call provably reaches no effect is *plain*: it compiles to an ordinary CPython
function and runs at native speed, because its state never needs to be saved
(it always finishes before any wait). Every other function is *resumable*:
it is lowered into a state machine whose variables live in an explicit frame.

A call is provably effect-free when its target is statically known and
effect-free: a built-in that is not shadowed, a function of `json`/`math`/`re`,
a method of a built-in type whose name no durable object uses, or a `def`
bound exactly once whose body is itself effect-free (a greatest fixpoint, so
recursion stays plain). Built-ins that call back (`sorted(key=...)`, `map`,
...) are effect-free only when the callback is. Anything else — calling a
parameter, a subscript, a `with` block — might wait.

Generator expressions that may outlive their function (anything but the sole
argument of a consuming built-in, or a loop's iterable) become resumable
generators, since a host generator cannot be snapshotted.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass, field

from flowmetal.lang.classify_classes import ProgramClasses, init_defs
from flowmetal.lang.names import BUILTIN_EXCEPTIONS, BUILTIN_NAMES
from flowmetal.lang.scopes import COMPREHENSIONS, Scope

# Methods of built-in types (and of our re/json values) that never wait.
PURE_METHODS: frozenset[str] = frozenset(
    {
        # str / bytes
        "capitalize", "casefold", "center", "count", "decode", "encode", "endswith", "expandtabs",
        "find", "format", "format_map", "hex", "index", "isalnum", "isalpha", "isascii",
        "isdecimal", "isdigit", "isidentifier", "islower", "isnumeric", "isprintable",
        "isspace", "istitle", "isupper", "join", "ljust", "lower", "lstrip", "maketrans",
        "partition", "removeprefix", "removesuffix", "replace", "rfind", "rindex", "rjust",
        "rpartition", "rsplit", "rstrip", "split", "splitlines", "startswith", "strip",
        "swapcase", "title", "translate", "upper", "zfill", "fromhex",
        # list / tuple / dict / set
        "append", "clear", "copy", "extend", "insert", "pop", "remove", "reverse", "sort",
        "fromkeys", "get", "items", "keys", "popitem", "setdefault", "update", "values",
        "add", "difference", "difference_update", "discard", "intersection",
        "intersection_update", "isdisjoint", "issubset", "issuperset",
        "symmetric_difference", "symmetric_difference_update", "union",
        # int / float
        "bit_length", "bit_count", "to_bytes", "from_bytes", "is_integer", "as_integer_ratio",
        "conjugate",
        # re patterns and matches
        "match", "search", "fullmatch", "findall", "finditer", "sub", "subn", "group",
        "groups", "groupdict", "start", "end", "span", "expand", "escape", "compile",
        "purge",
        # json and math functions reached as module attributes
        "dumps", "loads",
        # exceptions
        "with_traceback", "add_note",
        # namedtuples (CPython's own methods of the class)
        "_asdict", "_make", "_replace",
        # random.Random (not `random` and `randint`, which are also durable actions of `flowmetal`)
        "betavariate", "choice", "choices", "expovariate", "gammavariate", "gauss", "getrandbits",
        "getstate", "lognormvariate", "normalvariate", "paretovariate", "randbytes", "randrange",
        "sample", "seed", "setstate", "shuffle", "triangular", "uniform", "vonmisesvariate",
        "weibullvariate",
        # datetime values and time zones (not `now`, also a durable action; reading the clock
        # in `today()` or `utcnow()` does not wait)
        "astimezone", "combine", "ctime", "date", "dst", "fromisocalendar", "fromisoformat",
        "fromordinal", "fromtimestamp", "fromutc", "isocalendar", "isoformat", "isoweekday",
        "strftime", "strptime", "time", "timestamp", "timetuple", "timetz", "today", "toordinal",
        "total_seconds", "tzname", "utcfromtimestamp", "utcnow", "utcoffset", "utctimetuple",
        "weekday",
        # calendar.Calendar and TextCalendar (`pr...` print: they do not wait)
        "getfirstweekday", "setfirstweekday", "itermonthdates", "itermonthdays", "itermonthdays2",
        "itermonthdays3", "itermonthdays4", "iterweekdays", "monthdatescalendar",
        "monthdays2calendar", "monthdayscalendar", "yeardatescalendar", "yeardays2calendar",
        "yeardayscalendar", "formatday", "formatmonth", "formatmonthname", "formatweek",
        "formatweekday", "formatweekheader", "formatyear", "prmonth", "prweek", "pryear",
    }
)

# Methods of standard values named like durable actions of the `flowmetal` module (a random
# generator's `random()` and `randint()`, a datetime's `now()`): they never wait unless the
# program holds the `flowmetal` module itself (`import flowmetal`), which could be the receiver.
EFFECT_NAMED_METHODS: frozenset[str] = frozenset({"random", "randint", "now"})

# Members of standard modules that are durable actions (they may wait): `time.sleep` is `sleep`.
WAITING_STD: frozenset[tuple[str, str]] = frozenset({("time", "sleep")})

# Decorators after which a def's name still calls the def itself (behind a cache lookup).
TRANSPARENT_DECORATORS: frozenset[tuple[str, str]] = frozenset({("functools", "cache"), ("functools", "lru_cache")})

# Built-ins whose listed arguments are called back.
_CALLBACK_BUILTINS: dict[str, tuple[int | None, tuple[str, ...]]] = {
    # name: (positional index of a callback or None, keyword names of callbacks)
    "sorted": (None, ("key",)),
    "min": (None, ("key",)),
    "max": (None, ("key",)),
    "map": (0, ()),
    "filter": (0, ()),
    "iter": (0, ()),
}
_CALLBACK_METHODS: dict[str, tuple[int | None, tuple[str, ...]]] = {
    "sort": (None, ("key",)),
    "sub": (None, ("repl",)),  # positional repl index differs between re.sub and Pattern.sub
    "subn": (None, ("repl",)),
    "dumps": (None, ("default",)),
    "loads": (None, ("object_hook", "object_pairs_hook", "parse_float", "parse_int", "parse_constant")),
    "reduce": (0, ()),
}
# Functions of standard modules whose callbacks the machine can run resumably (a prelude
# version), imported by name: `from functools import reduce`.
_CALLBACK_STD: dict[tuple[str, str | None], tuple[int | None, tuple[str, ...]]] = {
    ("functools", "reduce"): (0, ()),
}

# Built-ins that consume an iterable completely (or until they have their answer)
# before returning: a generator expression passed to them cannot escape.
CONSUMING_BUILTINS: frozenset[str] = frozenset(
    {"sum", "any", "all", "min", "max", "sorted", "list", "tuple", "set", "frozenset", "dict", "next"}
)
_CONSUMING_METHODS: frozenset[str] = frozenset({"join", "extend", "update", "union", "intersection"})


@dataclass(eq=False)
class Unit:
    """A function-like piece of code compiled on its own: module, def, lambda or generator."""

    scope: Scope
    kind: str = "plain"  # plain | resumable | generator
    calls: list[ast.Call] = field(default_factory=list)
    waits_directly: bool = False  # contains `with` or a call of an unknown target (a generator: its body may wait)
    callee_units: set[Unit] = field(default_factory=set)
    parent: Unit | None = None
    children: list[Unit] = field(default_factory=list)

    @property
    def node(self) -> ast.AST:
        return self.scope.node


@dataclass
class Classification:
    units: dict[ast.AST, Unit]
    plain_genexps: set[ast.GeneratorExp]  # generator expressions left to CPython
    module_imports: dict[str, tuple[str, str | None]]  # name -> (module, attribute or None)
    tick_units: set[Unit]  # plain units that may recurse, needing a fuel tick on entry
    suspend_calls: set[ast.Call]  # calls that might wait


# Bases of the standard library whose classes a call runs none of the program's code for, but the
# methods init_defs collects (an enum's `_missing_`), or none at all (a NamedTuple's)
LIBRARY_BASES: frozenset[tuple[str, str]] = frozenset(
    {("enum", n) for n in ("Enum", "IntEnum", "StrEnum", "Flag", "IntFlag")} | {("typing", "NamedTuple")}
)
# standard functions that make classes whose calls run none of the program's code
_CLASS_MAKERS = frozenset({("collections", "namedtuple"), ("typing", "NamedTuple")})
# `field(default_factory=...)` values a dataclass's `__init__` may call without waiting
_PLAIN_FACTORIES = frozenset({"list", "dict", "set", "tuple", "frozenset", "int", "float", "str", "bytes", "bool"})


def _plain_factories(cls: ast.ClassDef) -> bool:
    """Whether every `default_factory=` of the class body is a built-in type (others may wait)."""
    for node in ast.walk(cls):
        if isinstance(node, ast.keyword) and node.arg == "default_factory":
            if not (isinstance(node.value, ast.Name) and node.value.id in _PLAIN_FACTORIES):
                return False
    return True


class _Classifier:
    def __init__(self, tree: ast.Module, scopes: dict[ast.AST, Scope], effect_modules: frozenset[str]):
        self.tree = tree
        self.scopes = scopes
        self.effect_modules = effect_modules
        self.units: dict[ast.AST, Unit] = {}
        self.plain_genexps: set[ast.GeneratorExp] = set()
        self.module_scope = scopes[tree]
        self.imports: dict[str, tuple[str, str | None]] = {}
        self.rebound_globals: set[str] = set()
        self.classes = ProgramClasses(tree)
        # `Point = namedtuple(...)` at module level: calling Point runs none of the program's code
        self.made_classes: dict[str, ast.Call] = {
            stmt.targets[0].id: stmt.value for stmt in tree.body
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)
            and isinstance(stmt.value, ast.Call)}
        self.parents: dict[ast.AST, ast.AST] = {}
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                self.parents[child] = node

    # -- facts about names -------------------------------------------------
    @property
    def holds_effect_module(self) -> bool:
        """Whether the program binds a durable-action module itself (`import flowmetal`)."""
        found = getattr(self, "_holds_effect_module", None)
        if found is None:
            found = self._holds_effect_module = any(
                isinstance(node, ast.Import) and any(a.name.split(".")[0] in self.effect_modules for a in node.names)
                for node in ast.walk(self.tree))
        return found

    def collect_imports(self) -> None:
        for stmt in self.tree.body:
            if isinstance(stmt, ast.Import):
                for a in stmt.names:
                    self.imports[a.asname or a.name] = (a.name, None)
            elif isinstance(stmt, ast.ImportFrom) and stmt.module:
                for a in stmt.names:
                    self.imports[a.asname or a.name] = (stmt.module, a.name)
        for scope in self.scopes.values():
            if not scope.is_module:
                self.rebound_globals.update(n for n in scope.declared_global if n in scope.bound)

    def global_target(self, name: str) -> object:
        mod = self.module_scope
        if name in self.rebound_globals:
            return None
        count = mod.binding_count.get(name, 0)
        if count == 0:
            return ("builtin", name) if name in BUILTIN_NAMES else ("undefined", name)
        if count != 1:
            return None
        if name in mod.def_nodes:
            node = mod.def_nodes[name]
            # a decorated name holds whatever the decorator returned, not this def (except
            # functools' caches, which call this def)
            return self.units.get(node) if self.transparent(node) else None
        if name in mod.class_nodes:
            return ("class", mod.class_nodes[name])
        made = self.made_classes.get(name)
        if made is not None and self.std_name(mod, made.func) in _CLASS_MAKERS:
            return ("made_class", name)
        if name in self.imports:
            module, attr = self.imports[name]
            if module in self.effect_modules or (module, attr) in WAITING_STD:
                return None
            return ("std", module, attr)
        return None

    def name_target(self, scope: Scope, name: str) -> object:
        owner = scope.owner_of(name)
        if owner is None:
            if scope.is_module or name not in scope.bound or name in scope.declared_global:
                return self.global_target(name)
            return None
        if owner.binding_count.get(name, 0) == 1 and name in owner.def_nodes:
            node = owner.def_nodes[name]
            return self.units.get(node) if self.transparent(node) else None
        if owner.binding_count.get(name, 0) == 1 and name in owner.class_nodes:
            return ("class", owner.class_nodes[name])
        return None

    def class_call_deps(self, cls: ast.ClassDef) -> list[Unit] | None:
        """The units a call of the program's class runs (its `__init__`s), or None if unknown."""

        def base_class(base: ast.expr, owner: ast.ClassDef) -> object:
            if not isinstance(base, ast.Name):
                return None
            target = self.name_target(self.scope_of(owner), base.id)
            if isinstance(target, tuple) and target[0] == "class":
                return target[1]
            if target == ("builtin", base.id) and (base.id == "object" or base.id in BUILTIN_EXCEPTIONS):
                return "builtin"
            if self.std_name(self.scope_of(owner), base) in LIBRARY_BASES:
                return "builtin"
            return None

        def decorator_ok(dec: ast.expr, owner: ast.ClassDef) -> bool:
            target = dec.func if isinstance(dec, ast.Call) else dec
            if isinstance(dec, ast.Call) and not all(
                    isinstance(a, ast.Constant) for a in [*dec.args, *(k.value for k in dec.keywords)]):
                return False
            name = self.std_name(self.scope_of(owner), target)
            if name == ("functools", "total_ordering"):
                return True
            return name == ("dataclasses", "dataclass") and _plain_factories(owner)

        defs = init_defs(cls, base_class, decorator_ok)
        return None if defs is None else [self.units[d] for d in defs]

    def transparent(self, node: ast.FunctionDef) -> bool:
        """Whether calling the decorated name still calls this def, and nothing else that could
        wait: true without decorators, and for `functools.cache` / `lru_cache(...)` with constant
        arguments (the cached function is the def, behind a lookup)."""
        for dec in node.decorator_list:
            target = dec
            if isinstance(dec, ast.Call):
                if not all(isinstance(a, ast.Constant) for a in [*dec.args, *(k.value for k in dec.keywords)]):
                    return False
                target = dec.func
            if self.std_name(self.scope_of(node), target) not in TRANSPARENT_DECORATORS:
                return False
        return True

    def std_name(self, scope: Scope, node: ast.expr) -> tuple[str, str] | None:
        """(module, name) when `node` names a member of a standard module (`cache`, `functools.cache`)."""
        if isinstance(node, ast.Name):
            target = self.name_target(scope, node.id)
            if isinstance(target, tuple) and target[0] == "std" and target[2] is not None:
                return target[1], target[2]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            target = self.name_target(scope, node.value.id)
            if isinstance(target, tuple) and target[0] == "std" and target[2] is None:
                return target[1], node.attr
        return None

    # -- building units ----------------------------------------------------
    def build_units(self) -> None:
        for node, scope in self.scopes.items():
            if isinstance(node, ast.Module | ast.FunctionDef | ast.Lambda):
                is_gen = isinstance(node, ast.FunctionDef) and _has_yield(node)
                self.units[node] = Unit(scope, kind="generator" if is_gen else "plain")
            elif isinstance(node, ast.GeneratorExp) and not self._genexp_is_contained(node):
                self.units[node] = Unit(scope, kind="generator")
            elif isinstance(node, ast.GeneratorExp):
                self.plain_genexps.add(node)
        for node, unit in self.units.items():
            parent_unit = self.enclosing_unit(node)
            unit.parent = parent_unit
            if parent_unit is not None:
                parent_unit.children.append(unit)

    def _genexp_is_contained(self, node: ast.GeneratorExp) -> bool:
        parent = self.parents.get(node)
        if self._consumed_here(node):
            return True
        # `g = (...)` in a function, where every use of the local `g` consumes it on the spot
        if isinstance(parent, ast.Assign) and len(parent.targets) == 1 and isinstance(parent.targets[0], ast.Name):
            scope = self.scope_of(parent)
            var = parent.targets[0].id
            if scope.is_module or not scope.is_local(var) or var in scope.cells:
                return False
            uses = [n for n in _own_nodes(scope.node) if isinstance(n, ast.Name) and n.id == var
                     and isinstance(n.ctx, ast.Load)]
            return all(self._consumed_here(u) for u in uses)
        return False

    def _consumed_here(self, node: ast.expr) -> bool:
        """`node` is iterated to completion (or for one item) where it stands: it cannot escape."""
        parent = self.parents.get(node)
        if isinstance(parent, ast.comprehension | ast.For) and parent.iter is node:
            return True
        if isinstance(parent, ast.Call) and parent.args and parent.args[0] is node and not parent.keywords:
            func = parent.func
            if len(parent.args) == 1 or (isinstance(func, ast.Name) and func.id == "next" and len(parent.args) == 2):
                if isinstance(func, ast.Name) and func.id in CONSUMING_BUILTINS:
                    scope = self.scope_of(parent)
                    return self.name_target(scope, func.id) == ("builtin", func.id)
                if isinstance(func, ast.Attribute) and func.attr in _CONSUMING_METHODS and len(parent.args) == 1:
                    return True
        return False

    def scope_of(self, node: ast.AST) -> Scope:
        """The innermost scope in which `node` is evaluated."""
        child = node
        cur = self.parents.get(node)
        while cur is not None:
            if cur in self.scopes:
                scope = self.scopes[cur]
                # a comprehension's first iterable belongs to the enclosing scope
                if isinstance(cur, COMPREHENSIONS) and child is cur.generators[0]:
                    pass
                elif isinstance(cur, ast.FunctionDef | ast.Lambda) and child not in _body_nodes(cur):
                    pass  # decorators and defaults are evaluated outside
                elif isinstance(cur, ast.ClassDef) and child not in cur.body:
                    pass  # so are a class's decorators and bases
                else:
                    return scope
            elif isinstance(cur, ast.comprehension):
                gp = self.parents.get(cur)
                if isinstance(gp, COMPREHENSIONS) and gp.generators[0] is cur and child is cur.iter:
                    child, cur = gp, self.parents.get(gp)
                    continue
            child, cur = cur, self.parents.get(cur)
        return self.module_scope

    def enclosing_unit(self, node: ast.AST) -> Unit | None:
        cur = self.parents.get(node)
        child = node
        while cur is not None:
            unit = self.units.get(cur)
            if unit is not None:
                if (isinstance(cur, ast.FunctionDef | ast.Lambda) and child not in _body_nodes(cur)) or (isinstance(cur, ast.GeneratorExp) and child is cur.generators[0]):
                    pass
                else:
                    return unit
            child, cur = cur, self.parents.get(cur)
        return None

    def assign_calls(self) -> None:
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Call):
                unit = self.enclosing_unit(node)
                if unit is not None:
                    unit.calls.append(node)
            elif isinstance(node, ast.With):
                unit = self.enclosing_unit(node)
                if unit is not None:
                    unit.waits_directly = True

    # -- purity ------------------------------------------------------------
    def callback_ok(self, scope: Scope, arg: ast.expr) -> Iterable[Unit] | None:
        """Units the callback depends on, or None when it might wait."""
        if isinstance(arg, ast.Constant) and arg.value is None:
            return ()
        if isinstance(arg, ast.Lambda):
            return (self.units[arg],)
        if isinstance(arg, ast.Name):
            target = self.name_target(scope, arg.id)
            if isinstance(target, Unit):
                return (target,)
            if isinstance(target, tuple) and target[0] in ("builtin", "std"):
                return ()
            return None
        if isinstance(arg, ast.Attribute) and isinstance(arg.value, ast.Name):
            target = self.name_target(scope, arg.value.id)
            if isinstance(target, tuple) and target[0] == "std" and not _waits(target, arg.attr):
                return ()
        return None

    def call_deps(self, call: ast.Call) -> Iterable[Unit] | None:
        """The units a call's effect-freedom depends on, or None when it might wait."""
        scope = self.scope_of(call)
        func = call.func
        deps: list[Unit] = []
        spec: tuple[int | None, tuple[str, ...]] | None = None
        if isinstance(func, ast.Name):
            target = self.name_target(scope, func.id)
            if isinstance(target, Unit):
                return (target,)
            if not isinstance(target, tuple):
                return None
            if target[0] == "class":
                return self.class_call_deps(target[1])
            if target[0] == "builtin":
                spec = _CALLBACK_BUILTINS.get(func.id)
            elif target[0] == "std":
                spec = _CALLBACK_STD.get((target[1], target[2]))
            elif target[0] in ("undefined", "made_class"):
                return ()
        elif isinstance(func, ast.Attribute):
            base = func.value
            module_target = self.name_target(scope, base.id) if isinstance(base, ast.Name) else None
            if isinstance(module_target, tuple) and module_target[0] == "std":
                if _waits(module_target, func.attr):
                    return None
                spec = _CALLBACK_METHODS.get(func.attr)
            elif isinstance(base, ast.Name) and base.id in self.imports and self.imports[base.id][0] in self.effect_modules:
                return None
            elif self.classes.knows(func.attr):
                # a method of the program's classes (or a name it stores): see classify_classes
                defs = self.classes.method_defs(func.attr)
                if defs is None:
                    return None
                deps.extend(self.units[d] for d in defs)
                spec = _CALLBACK_METHODS.get(func.attr) if func.attr in PURE_METHODS else None
            elif func.attr in PURE_METHODS:
                spec = _CALLBACK_METHODS.get(func.attr)
            elif func.attr in EFFECT_NAMED_METHODS and not self.holds_effect_module:
                pass
            else:
                return None
        elif isinstance(func, ast.Lambda):
            return (self.units[func],)
        else:
            return None
        if spec is not None:
            index, names = spec
            candidates: list[ast.expr] = []
            if index is not None and len(call.args) > index:
                candidates.append(call.args[index])
            if func_name(func) in ("sub", "subn"):
                candidates.extend(call.args[:2])  # re.sub(pattern, repl, ...) / p.sub(repl, ...)
            candidates.extend(k.value for k in call.keywords if k.arg in names)
            for arg in candidates:
                if isinstance(arg, ast.Constant | ast.JoinedStr):
                    continue
                got = self.callback_ok(scope, arg)
                if got is None:
                    if func_name(func) in ("sub", "subn") and not isinstance(arg, ast.Lambda):
                        # the pattern argument may be any expression; only a callable repl matters
                        if isinstance(arg, ast.Name | ast.Attribute | ast.Subscript | ast.Call):
                            return None
                        continue
                    return None
                deps.extend(got)
        if any(isinstance(a, ast.Starred) for a in call.args) or any(k.arg is None for k in call.keywords):
            if spec is not None:
                return None  # a callback might hide in the unpacked arguments
        return deps

    def solve(self) -> None:
        for unit in self.units.values():
            if unit.kind == "generator":
                # a generator that may wait makes its creator wait too (it may be iterated there)
                for call in unit.calls:
                    deps = self.call_deps(call)
                    if deps is None:
                        unit.waits_directly = True
                        break
                    unit.callee_units.update(deps)
                continue
            if unit.scope.is_module:
                unit.kind = "resumable"
                continue
            if unit.waits_directly:
                unit.kind = "resumable"
                continue
            for call in unit.calls:
                deps = self.call_deps(call)
                if deps is None:
                    unit.kind = "resumable"
                    break
                unit.callee_units.update(deps)
        changed = True
        while changed:
            changed = False
            for unit in self.units.values():
                # a generator whose body never waits is made (and may be iterated) by plain code
                if unit.kind == "generator" and not unit.waits_directly and any(
                        _may_wait(d) for d in unit.callee_units):
                    unit.waits_directly = True
                    changed = True
                if unit.kind == "plain" and any(_may_wait(d) for d in unit.callee_units):
                    unit.kind = "resumable"
                    changed = True
                # a plain function cannot hand out explicit cells, so a function
                # whose nested resumable code closes over its variables is resumable too
                if unit.kind == "plain" and any(c.kind != "plain" and c.scope.frees for c in unit.children):
                    unit.kind = "resumable"
                    changed = True
                if unit.kind == "plain" and any(_generator_may_wait(c) for c in unit.children):
                    unit.kind = "resumable"
                    changed = True

    def promote_genexps(self) -> None:
        """Inside resumable code every generator expression is a resumable generator:
        its body may wait, and its source may be one."""
        for genexp in list(self.plain_genexps):
            parent = self.enclosing_unit(genexp)
            if parent is None or parent.kind == "plain":
                continue
            self.plain_genexps.discard(genexp)
            self.units[genexp] = Unit(self.scopes[genexp], kind="generator", parent=parent)
        for unit in self.units.values():
            unit.children.clear()
        for node, unit in self.units.items():
            unit.parent = self.enclosing_unit(node)
            if unit.parent is not None:
                unit.parent.children.append(unit)

    def recursive_units(self) -> set[Unit]:
        """Plain units on a call cycle: they tick fuel on entry (loops tick on their own)."""
        result: set[Unit] = set()
        for unit in self.units.values():
            if unit.kind != "plain":
                continue
            seen: set[Unit] = set()
            stack = list(unit.callee_units)
            while stack:
                u = stack.pop()
                if u is unit:
                    result.add(unit)
                    break
                if u in seen:
                    continue
                seen.add(u)
                stack.extend(u.callee_units)
        return result


def _body_nodes(node: ast.FunctionDef | ast.Lambda) -> list[ast.AST]:
    if isinstance(node, ast.Lambda):
        return [node.body]
    return list(node.body)


def _own_nodes(fn: ast.AST) -> list[ast.AST]:
    """The nodes of a function's body, not descending into nested functions or comprehensions
    (except a comprehension's first iterable, which belongs to the function)."""
    out: list[ast.AST] = []
    stack: list[ast.AST] = list(fn.body) if isinstance(fn, ast.FunctionDef) else [getattr(fn, "body", fn)]
    while stack:
        n = stack.pop()
        out.append(n)
        if isinstance(n, ast.FunctionDef | ast.Lambda):
            stack.extend(getattr(n, "decorator_list", []))
            stack.extend(n.args.defaults)
            continue
        if isinstance(n, COMPREHENSIONS):
            stack.append(n.generators[0].iter)
            continue
        stack.extend(ast.iter_child_nodes(n))
    return out


def _generator_may_wait(unit: Unit) -> bool:
    return unit.kind == "generator" and unit.waits_directly


def _may_wait(unit: Unit) -> bool:
    """Calling `unit` may wait: a resumable function, or a generator function whose body may wait
    (calling one that never waits just makes the generator; plain code may iterate it)."""
    return unit.kind == "resumable" or (unit.kind == "generator" and unit.waits_directly)


def _has_yield(node: ast.FunctionDef) -> bool:
    stack: list[ast.AST] = list(node.body)
    while stack:
        n = stack.pop()
        if isinstance(n, ast.Yield | ast.YieldFrom):
            return True
        if not isinstance(n, (ast.FunctionDef, ast.Lambda, *COMPREHENSIONS)):
            stack.extend(ast.iter_child_nodes(n))
    return False


def func_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _waits(target: tuple[object, ...], attr: str) -> bool:
    """Whether `attr` of the standard module `target` (("std", module, None)) is a durable action."""
    return target[2] is None and (str(target[1]), attr) in WAITING_STD


def classify(tree: ast.Module, scopes: dict[ast.AST, Scope], effect_modules: frozenset[str],
             all_resumable: bool = False) -> Classification:
    c = _Classifier(tree, scopes, effect_modules)
    c.collect_imports()
    c.build_units()
    c.assign_calls()
    if all_resumable:  # the prelude: its functions drive generators through the machine
        for unit in c.units.values():
            unit.waits_directly = True
    c.solve()
    c.promote_genexps()
    suspend: set[ast.Call] = set()
    for unit in c.units.values():
        for node in unit.calls:
            deps = c.call_deps(node)
            if deps is None or any(d.kind != "plain" for d in deps):
                suspend.add(node)
    return Classification(c.units, c.plain_genexps, c.imports, c.recursive_units(), suspend)
