"""Compile checked source into a `Program`: CPython code objects plus the facts the
machine needs to run, suspend and snapshot it.

Pipeline: check (all diagnostics at once) -> scopes -> classify (plain or
resumable, per function) -> lower resumable units -> one CPython module
compiled with the .flow file name, so tracebacks and error positions are the
program's own. Compilation is deterministic: the same source always yields the
same unit numbers and code keys, which snapshots refer to.
"""

from __future__ import annotations

import ast
import hashlib
import types
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

from flowmetal.errors import CheckFailed
from flowmetal.lang.check import check_source, has_errors, stack_for_compiling
from flowmetal.lang.classify import classify
from flowmetal.lang.declared import declared_attributes
from flowmetal.lang.diagnostics import Diagnostic
from flowmetal.lang.lower import ProgramFacts, UnitInfo, default_facts_builtin, lower_unit
from flowmetal.lang.mangle import mangle_private_names
from flowmetal.lang.names import has_main_guard
from flowmetal.lang.scopes import NodeMap, analyze
from flowmetal.lang.translate import HELPERS

ENV = "_fm_env"  # the function enclosing all generated code (its parameters are the helpers)

COMPILER_VERSION = 2  # 2: helpers are closure cells; attributes go through the allow-list


@dataclass
class Program:
    filename: str
    source: str
    source_hash: str
    units: dict[int, UnitInfo]
    codes: dict[str, types.CodeType]  # stable key -> code (every code object, nested included)
    code_keys: dict[types.CodeType, str]
    defines_main: bool
    diagnostics: list[Diagnostic] = field(default_factory=list)  # warnings

    @property
    def module_unit(self) -> UnitInfo:
        return self.units[0]


def source_hash(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


def compile_program(
    source: str,
    filename: str = "<program>",
    *,
    modules: Mapping[str, frozenset[str] | None] | None = None,
    effect_modules: frozenset[str] = frozenset({"flowmetal"}),
    checked: bool = True,
    all_resumable: bool = False,
) -> Program:
    """Check and compile a program; raises `CheckFailed` listing every error."""
    try:
        with stack_for_compiling():
            return _compile_program(source, filename, modules, effect_modules, checked, all_resumable)
    except (RecursionError, MemoryError):
        raise CheckFailed([Diagnostic(filename, 1, 1, "error", "the program is nested too deeply to compile")]) from None


def _compile_program(source: str, filename: str, modules: Mapping[str, frozenset[str] | None] | None,
                     effect_modules: frozenset[str], checked: bool, all_resumable: bool) -> Program:
    if modules is None:
        modules = default_modules()
    if checked:
        tree, diags = check_source(source, filename, modules=modules)
        if tree is None or has_errors(diags):
            raise CheckFailed([d for d in diags if d.severity == "error"])
    else:
        tree, diags = ast.parse(source, filename), []
    found = [d for d in diags if d.severity == "warning"]
    mangle_private_names(tree)
    return _compile_tree(tree, source, filename, effect_modules, found, all_resumable)


_CACHE: OrderedDict[tuple[str, str, bool], Program] = OrderedDict()
_CACHE_SIZE = 64


def compile_cached(source: str, filename: str, *, all_resumable: bool = False) -> Program:
    """`compile_program`, remembering recent results: compiling is deterministic, and
    restoring a snapshot or resuming a program needs the same program again and again."""
    key = (source_hash(source), filename, all_resumable)
    program = _CACHE.get(key)
    if program is None:
        program = compile_program(source, filename, all_resumable=all_resumable)
        _CACHE[key] = program
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    else:
        _CACHE.move_to_end(key)
    return program


def default_modules() -> dict[str, frozenset[str] | None]:
    from flowmetal.machine.stdmods import STD_MODULE_EXPORTS

    mods: dict[str, frozenset[str] | None] = dict(STD_MODULE_EXPORTS)
    mods["flowmetal"] = None
    return mods


def _compile_tree(tree: ast.Module, source: str, filename: str, effect_modules: frozenset[str],
                  warning_diags: list[Diagnostic], all_resumable: bool) -> Program:
    scopes = analyze(tree)
    cls = classify(tree, scopes, effect_modules, all_resumable)
    order = [n for n in ast.walk(tree) if n in cls.units]
    unit_ids = {cls.units[n]: i for i, n in enumerate(order)}
    module_scope = scopes[tree]
    suspend = NodeMap({c: True for c in cls.suspend_calls})
    facts = ProgramFacts(NodeMap(scopes), NodeMap(cls.units), unit_ids, suspend, frozenset(cls.tick_units), filename,
                         default_facts_builtin(scopes, module_scope))
    facts.extra_routed = declared_attributes(tree)
    infos: dict[int, UnitInfo] = {}
    body: list[ast.stmt] = []
    for node in order:
        unit = cls.units[node]
        if unit.kind == "plain":
            continue
        uid = unit_ids[unit]
        scope = unit.scope
        info = UnitInfo(uid=uid, kind=unit.kind, name=scope.name, qualname=scope.qualname, filename=filename,
                        lineno=getattr(node, "lineno", 1), params=list(scope.params), cellvars=[], frees=[],
                        is_module=scope.is_module)
        body.extend(lower_unit(facts, unit, info))
        infos[uid] = info
    # All generated code is nested in one function whose parameters are the helpers it calls:
    # the helpers are closure cells of every unit, never globals a program could shadow.
    env = ast.FunctionDef(
        name=ENV, args=ast.arguments(posonlyargs=[], args=[ast.arg(arg=h) for h in HELPERS], vararg=None,
                                     kwonlyargs=[], kw_defaults=[], kwarg=None, defaults=[]),
        body=body or [ast.Pass()], decorator_list=[], returns=None)
    module = ast.Module(body=[env], type_ignores=[])
    ast.fix_missing_locations(module)
    with warnings.catch_warnings():  # the checker already reported what matters
        warnings.simplefilter("ignore")
        code = compile(module, filename, "exec", dont_inherit=True, optimize=0)
    env_code = next(c for c in code.co_consts if isinstance(c, types.CodeType))
    prefixes = {f"_fm_u{i.uid}": i for i in infos.values()}
    codes: dict[str, types.CodeType] = {}
    for const in env_code.co_consts:
        if not isinstance(const, types.CodeType):
            continue
        if const.co_name.startswith("_fm_u"):
            info = prefixes[const.co_name]
            info.code = _rename(const, info, codes)
        elif const.co_name.startswith("_fm_b"):
            info = infos[int(const.co_name[5:])]
            info.binder = const.replace(co_name=info.name, co_qualname=info.qualname)
    return Program(
        filename=filename,
        source=source,
        source_hash=source_hash(source),
        units=infos,
        codes=codes,
        code_keys={c: k for k, c in codes.items()},
        defines_main="main" in module_scope.bound and not has_main_guard(tree),
        diagnostics=warning_diags,
    )


def _rename(code: types.CodeType, info: UnitInfo, registry: dict[str, types.CodeType]) -> types.CodeType:
    """Give generated code the program's names, and register every nested code object."""
    old_prefix = f"{ENV}.<locals>.{code.co_name}.<locals>."
    new_prefix = "" if info.is_module else f"{info.qualname}.<locals>."

    def fix(c: types.CodeType) -> types.CodeType:
        consts = tuple(fix(x) if isinstance(x, types.CodeType) else x for x in c.co_consts)
        qual = c.co_qualname
        if qual.startswith(old_prefix):
            qual = new_prefix + qual[len(old_prefix):]
        fixed = c.replace(co_consts=consts, co_qualname=qual)
        key = f"{qual}@{c.co_firstlineno}"
        n = 0
        while f"{key}#{n}" in registry:
            n += 1
        registry[f"{key}#{n}"] = fixed
        return fixed

    consts = tuple(fix(x) if isinstance(x, types.CodeType) else x for x in code.co_consts)
    renamed = code.replace(co_consts=consts, co_name=info.name, co_qualname=info.qualname)
    registry[f"unit:{info.uid}"] = renamed
    return renamed
