"""Write a machine's complete state to bytes, and rebuild a machine from them.

The state is plain data: the program's source (so a snapshot is
self-contained and pins the code the program started with), its globals, each
task's frames (unit number, resume point, saved variables), pending effect
requests and undelivered output. Functions are written as (program, code or
unit key, defaults, closure cells); built-in functions and module members by
name. Everything goes through the versioned `codec` — never pickle.
"""

from __future__ import annotations

import contextlib
import types
from functools import cache
from typing import TYPE_CHECKING, Any

from flowmetal.errors import SnapshotError
from flowmetal.lang.program import COMPILER_VERSION, Program, compile_cached
from flowmetal.lang.program import source_hash as _hash
from flowmetal.lang.translate import HELPERS
from flowmetal.machine import access, classes, stdmods
from flowmetal.machine.codec import Codec
from flowmetal.machine.limits import Limits
from flowmetal.machine.objects import (
    END,
    LOOP,
    EffectFunction,
    EffectRequest,
    Frame,
    Function,
    Generator,
    GeneratorMethod,
    Returned,
    Stepped,
    Task,
)
from flowmetal.machine.stdlib import register_codecs as register_stdlib_codecs
from flowmetal.machine.tasks import (
    Cancelled,
    MachineOp,
    TaskHandle,
    Timeout,
    TimeoutScope,
    make_ops,
    op_enter,
    op_exit,
)
from flowmetal.machine.values import VALUE_DECODERS
from flowmetal.machine.views import VIEW_DECODERS

if TYPE_CHECKING:
    from flowmetal.machine.machine import Machine

SNAPSHOT_VERSION = 1
_HELPER_NAMES = frozenset(HELPERS)
_BUILTIN_METHOD: type = type([].append)


@cache
def _base_codec() -> Codec:
    """Registrations that are the same for every machine in this process."""
    from flowmetal.machine.builtins_table import make_builtins
    from flowmetal.machine.prelude import prelude_builtins

    codec = Codec()
    codec.register_values(VALUE_DECODERS)
    codec.register_values(VIEW_DECODERS)
    codec.register_constant(END, "fm:end")
    for key, table in (("main", make_builtins(print)), ("prelude", prelude_builtins())):
        for name, value in table.items():
            if name == "print" or isinstance(value, int | str | tuple | types.NoneType):
                continue
            with contextlib.suppress(ValueError):  # the same object under another name: the first wins
                codec.register_constant(value, f"{key}:{name}")
    from flowmetal.machine import runtime_builtins

    for helper in ("fm_callattr", "fm_getattr", "_in_handler"):  # may sit in a temporary across a wait
        codec.register_constant(getattr(runtime_builtins, helper), f"fm:{helper}")
    for flow_type in access.flow_types():
        codec.register_constant(flow_type, f"type:{flow_type._fm_name}")
    codec.register(access.BoundBuiltin, "fm.bound_builtin", state=lambda b: [b._fm_obj, b._fm_name],
                   build=lambda s: access.fm_getattr(s[0], s[1]))
    codec.register(access.UnboundBuiltin, "fm.unbound_builtin",
                   state=lambda u: [access.owner_of(u), u._fm_name], build=lambda s: access.fm_getattr(s[0], s[1]))
    for mod_name in stdmods.STD_MODULE_EXPORTS:
        module = stdmods.get_module(mod_name)
        codec.register_constant(module, f"module:{mod_name}")
        for member, value in vars(module).items():
            if callable(value) and not member.startswith("__"):
                with contextlib.suppress(ValueError):
                    codec.register_constant(value, f"{mod_name}:{member}")

    def method_state(m: Any) -> list[Any]:
        owner = getattr(m, "__self__", None)
        if owner is None or isinstance(owner, types.ModuleType):
            raise SnapshotError(f"cannot snapshot the built-in function {m.__name__!r}")
        return [owner, m.__name__]

    codec.register(_BUILTIN_METHOD, "fm.builtin_method", state=method_state, build=lambda s: getattr(s[0], s[1]))
    codec.register(types.MethodType, "fm.method", state=lambda m: [m.__self__, m.__func__.__name__],
                   build=lambda s: getattr(s[0], s[1]))
    codec.register(EffectFunction, "fm.effect", state=lambda e: [e._effect, e._bound],
                   build=lambda s: EffectFunction(s[0], tuple(s[1])))
    codec.register(TaskHandle, "fm.task", state=lambda t: t._task_id, build=TaskHandle)
    codec.register(TimeoutScope, "fm.timeout", state=lambda t: t._seconds, build=TimeoutScope)
    ops = {**make_ops(), "enter": MachineOp("enter", op_enter), "exit": MachineOp("exit", op_exit)}

    def op_build(s: list[Any]) -> MachineOp:
        if s[0] == "result":
            return TaskHandle(s[1]).result
        if s[0] == "cancel":
            return TaskHandle(s[1]).cancel
        return ops[s[0]]

    codec.register(MachineOp, "fm.op", state=lambda o: [o._name, o._bound._task_id if o._bound else None],
                   build=op_build)
    codec.register_exception(Timeout, "flowmetal.Timeout")
    codec.register_exception(Cancelled, "flowmetal.Cancelled")
    register_stdlib_codecs(codec)
    classes.register_codec(codec)
    return codec


def make_codec(machine: Machine) -> Codec:
    codec = _base_codec().copy()
    for key in ("main", "prelude"):
        for name, value in machine.globals[key]["__builtins__"].items():
            if isinstance(value, int | str | tuple | types.NoneType):
                continue
            if id(value) not in codec._const_names:
                codec.register_constant(value, f"{key}:{name}")
        # plain functions close over the helpers' cells: a restored machine gives them its own
        for name, cell in machine.helper_cells[key].items():
            codec.register_constant(cell, f"helper:{key}:{name}")
    codec.register_constant(machine.host_module, "module:flowmetal")
    # the fuel counter that iterators of the standard modules tick through (`Ticker.counted`)
    codec.register_constant(machine.ticks.chain, "fm:ticks")
    for member, value in machine.host_module_members.items():
        if not isinstance(value, EffectFunction):
            codec.register_constant(value, f"flowmetal:{member}")

    def fn_state(f: Function) -> list[Any]:
        b = f._binder
        return [f._program_key, f._unit.uid, tuple(b.__defaults__ or ()), dict(b.__kwdefaults__ or {}), f._closure]

    codec.register(Function, "fm.function", state=fn_state,
                   build=lambda s: machine.make_function(s[0], s[1], s[2], s[3], tuple(s[4])))

    def host_fn_state(f: types.FunctionType) -> list[Any]:
        for key, prog in machine.programs.items():
            code_key = prog.code_keys.get(f.__code__)
            if code_key is not None:
                return [key, code_key, f.__name__, tuple(f.__defaults__ or ()), dict(f.__kwdefaults__ or {}),
                        tuple(f.__closure__ or ())]
        raise SnapshotError(f"cannot snapshot the function {f.__qualname__!r}: it is not part of the program")

    def host_fn_build(s: list[Any]) -> types.FunctionType:
        code = machine.programs[s[0]].codes[s[1]]
        fn = types.FunctionType(code, machine.globals[s[0]], s[2], tuple(s[3]) or None, tuple(s[5]) or None)
        if s[4]:
            fn.__kwdefaults__ = s[4]
        return fn

    codec.register(types.FunctionType, "fm.pyfunction", state=host_fn_state, build=host_fn_build)

    def frame_state(fr: Frame) -> list[Any]:
        # a waiting frame's slots were taken with locals(), which also lists the helpers it uses
        slots = {k: v for k, v in fr.variables().items() if k not in _HELPER_NAMES}
        return [fr.program_key, fr.unit.uid, fr.pc, slots, fr.throw, fr.gen]

    def frame_new() -> Frame:
        return Frame.__new__(Frame)

    def frame_fill(fr: Frame, s: list[Any]) -> None:
        fr.program_key = s[0]
        fr.unit = machine.unit(s[0], s[1])
        fr.fn = machine.unit_fn(s[0], s[1])
        fr.pc, fr.slots, fr.throw, fr.gen = s[2], s[3], s[4], s[5]
        fr.live = None

    codec.register(Frame, "fm.frame", state=frame_state, new=frame_new, fill=frame_fill)

    def gen_new() -> Generator:
        g = Generator.__new__(Generator)
        g._machine = machine
        g._yf = None
        return g

    def gen_fill(g: Generator, s: list[Any]) -> None:
        g._frame, g._name, g._finished, g._running = s[:4]
        g._mode = s[4] if len(s) > 4 else LOOP  # (snapshots before generator functions had 4 fields)

    codec.register(Generator, "fm.generator",
                   state=lambda g: [g._frame, g._name, g._finished, g._running, g._mode],
                   new=gen_new, fill=gen_fill)
    # what `yield from` got back from its sub-generator (in the delegating frame's variables)
    codec.register(Returned, "fm.returned", state=lambda r: [r.value], build=lambda s: Returned(s[0]))
    codec.register(Stepped, "fm.stepped", state=lambda r: [r.value, r.error], build=lambda s: Stepped(s[0], s[1]))

    def genmethod_fill(m: GeneratorMethod, s: list[Any]) -> None:
        m._name, m._gen = s

    codec.register(GeneratorMethod, "fm.genmethod", state=lambda m: [m._name, m._gen],
                   new=lambda: GeneratorMethod.__new__(GeneratorMethod), fill=genmethod_fill)
    if machine.codec_extensions is not None:
        machine.codec_extensions(codec)
    return codec


def snapshot(machine: Machine) -> bytes:
    program = machine.program
    tasks = [[t.id, t.stack, t.rv, t.status, t.phase, t.result, t.error, t.waiting, t.start_call, t.awaiting,
              t.await_mode, t.timer_request, t.deadlines, t.entering] for t in machine.tasks.values()]
    pending = [[r.id, r.task, r.name, r.args, r.kwargs, r.deadline] for r in machine.pending.values()]
    state = [
        SNAPSHOT_VERSION,
        COMPILER_VERSION,
        program.filename,
        program.source,
        program.source_hash,
        machine.args,
        {k: v for k, v in machine.user_globals.items() if k != "__builtins__"},
        tasks,
        pending,
        machine.next_request,
        machine.next_task,
        list(machine.output),
        machine.module_state,
    ]
    return machine.codec.encode(state)


def restore(data: bytes, *, host_module: dict[str, Any] | None = None, limits: Limits | None = None,
            program: Program | None = None, codec_extensions: Any = None) -> Machine:
    from flowmetal.machine.machine import Machine

    # The program must be compiled before the graph can be decoded (frames refer to its units),
    # so the source is read with a codec that treats every extension as opaque.
    source_info = _peek_program(data)
    version, compiler, filename, source, source_hash = source_info
    if version != SNAPSHOT_VERSION:
        raise SnapshotError(f"unsupported snapshot version {version} (this Flowmetal reads {SNAPSHOT_VERSION})")
    if compiler != COMPILER_VERSION:
        raise SnapshotError(f"the snapshot was made by compiler version {compiler}; this is {COMPILER_VERSION}")
    if not isinstance(source, str) or not isinstance(filename, str) or _hash(source) != source_hash:
        raise SnapshotError("corrupt snapshot: the pinned source does not match its hash")
    if program is None or program.source_hash != source_hash or program.filename != filename:
        program = compile_cached(source, filename)
    machine = Machine(program, limits=limits, host_module=host_module, codec_extensions=codec_extensions,
                      _empty=True)
    # the globals are decoded into the machine's own dict first: code the decoding runs
    # (the `__hash__` and `__eq__` of the program's objects used as keys) reads them
    state = machine.codec.decode(data, adopt=(6, machine.user_globals))
    (_, _, _, _, _, args, globs, tasks, pending, next_request, next_task, output) = state[:12]
    if len(state) > 12:  # (snapshots made before the standard modules kept state have 12 fields)
        if not isinstance(state[12], dict):
            raise SnapshotError("corrupt snapshot: the standard modules' state is not a mapping")
        machine.module_state = state[12]
    machine.args = args
    if globs is not machine.user_globals:  # pragma: no cover - adopted while decoding
        machine.user_globals.update(globs)
    for (tid, stack, rv, status, phase, result, error, waiting, start_call, awaiting, await_mode, timer_request,
         deadlines, entering) in tasks:
        machine.tasks[tid] = Task(tid, list(stack), rv, status, phase, result, error, waiting,
                                  tuple(start_call) if start_call else None, awaiting, await_mode, timer_request,
                                  list(deadlines), entering)
    for rid, tid, name, rargs, kwargs, deadline in pending:
        machine.pending[rid] = EffectRequest(rid, tid, name, tuple(rargs), dict(kwargs), deadline)
    machine.next_request, machine.next_task = next_request, next_task
    machine.output = list(output)
    return machine


def _peek_program(data: bytes) -> tuple[Any, ...]:
    """Read the leading scalar fields (version, compiler, file, source, hash) of a snapshot."""
    import msgspec

    if not data.startswith(b"FMSNAP") or len(data) < 8:
        raise SnapshotError("not a Flowmetal snapshot")
    try:
        records, root_vals, _ = msgspec.msgpack.decode(data[8:], type=list)
        root = records[root_vals[0]]
        # root is a LIST record: [kind, vals, refs]; its first five values are scalars
        vals = root[1]
        return tuple(vals[:5])
    except Exception as e:  # corrupt or foreign data
        raise SnapshotError(f"corrupt snapshot: {e}") from e


__all__ = ["SNAPSHOT_VERSION", "restore", "snapshot"]
