"""The allow-list's rows for the pure standard modules (itertools, collections, functools,
operator, string, heapq, bisect, copy, textwrap, statistics, fractions, decimal, typing):
each module's kinds of values and members. `surface.py` takes them into `KINDS` and
`MODULES`; read its docstring for what each field means.

Kept apart from `surface.py` so the table of the language's own values stays short, and so
each module's rows sit together. This module must not import `surface` at import time
(`surface` imports it): `Kind` and `ModuleSurface` are imported when the rows are built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flowmetal.lang.surface import Kind, ModuleSurface

__all__ = ["stdlib_kinds", "stdlib_modules"]


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


_CALLABLE_DATA = frozenset({"__name__", "__qualname__"})

TYPING_MEMBERS = _names(
    "AbstractSet Annotated Any AnyStr BinaryIO ByteString Callable ChainMap ClassVar Collection Concatenate "
    "Container ContextManager Coroutine Counter DefaultDict Deque Dict Final ForwardRef FrozenSet Generator "
    "Generic Hashable IO ItemsView Iterable Iterator KeysView List Literal LiteralString Mapping MappingView "
    "Match MutableMapping MutableSequence MutableSet NamedTuple Never NewType NoReturn Optional OrderedDict "
    "ParamSpec Pattern Protocol Required NotRequired Reversible Self Sequence Set Sized SupportsAbs "
    "SupportsBytes SupportsComplex SupportsFloat SupportsIndex SupportsInt SupportsRound Text TextIO Tuple "
    "Type TypeAlias TypeGuard TypeVar TypeVarTuple TypedDict Union Unpack ValuesView "
    "TYPE_CHECKING assert_never assert_type cast final no_type_check overload runtime_checkable"
)


COLLECTIONS_ABC_MEMBERS = _names(
    "AsyncGenerator AsyncIterable AsyncIterator Awaitable ByteString Callable Collection Container Coroutine "
    "Generator Hashable ItemsView Iterable Iterator KeysView Mapping MappingView MutableMapping MutableSequence "
    "MutableSet Reversible Sequence Set Sized ValuesView"
)


ITERTOOLS_TYPES = sorted(_names(
    "accumulate chain combinations combinations_with_replacement compress count cycle dropwhile filterfalse "
    "groupby islice pairwise permutations product repeat starmap takewhile zip_longest"
))


OPERATOR_MEMBERS = _names(
    "abs add and_ attrgetter call concat contains countOf delitem eq floordiv ge getitem gt iadd iand iconcat "
    "ifloordiv ilshift imatmul imod imul index indexOf inv invert ior ipow irshift is_ is_not isub itemgetter "
    "itruediv ixor le length_hint lshift lt matmul methodcaller mod mul ne neg not_ or_ pos pow rshift setitem "
    "sub truediv truth xor"
)
_DICT_METHODS = _names("clear copy fromkeys get items keys pop popitem setdefault update values")
_VIEWS = _names("items keys values")


_DATACLASS_FIELD = _names("compare default default_factory hash init kw_only metadata name repr type")


def stdlib_kinds() -> list[Kind]:
    from flowmetal.lang.surface import Kind

    return [
        # -- functools ------------------------------------------------------------------
        Kind("functools.partial", "A function with some arguments filled in (`functools.partial`).",
             data=_names("args func keywords"), type_reachable=True, group="modules"),
        Kind("functools._lru_cache_wrapper", "A function with a cache (`@lru_cache`, `@cache`).",
             methods=_names("cache_clear cache_info cache_parameters"), data=_CALLABLE_DATA, group="modules"),
        Kind("functools.CacheInfo", "What `cache_info()` returns: a named tuple.",
             methods=_names("count index"), data=_names("currsize hits maxsize misses"), group="modules"),
        Kind("functools.KeyWrapper", "A key made by `cmp_to_key(mycmp)`, or the function that makes them.",
             data=_names("obj"), routed=_names("obj"), group="modules"),  # (AttributeError has a host `obj`)
        # -- operator -------------------------------------------------------------------
        *[Kind(f"operator.{n}", f"The callable `operator.{n}(...)` returns.", type_reachable=True, group="modules")
          for n in ("attrgetter", "itemgetter", "methodcaller")],
        # -- collections ----------------------------------------------------------------
        Kind("collections.deque", "A double-ended queue (`collections.deque`).",
             methods=_names("append appendleft clear copy count extend extendleft index insert pop popleft remove "
                            "reverse rotate"), data=_names("maxlen"), type_reachable=True, group="modules"),
        Kind("collections.Counter", "A dict that counts (`collections.Counter`).",
             methods=_DICT_METHODS | _names("elements most_common subtract total"), routed=_VIEWS,
             type_reachable=True, group="modules"),
        Kind("collections.defaultdict", "A dict that makes missing values with its `default_factory`.",
             methods=_DICT_METHODS, data=_names("default_factory"), routed=_VIEWS, type_reachable=True,
             group="modules"),
        Kind("collections.OrderedDict", "A dict that remembers and can change its order (`move_to_end`).",
             methods=_DICT_METHODS | _names("move_to_end"), routed=_VIEWS, type_reachable=True, group="modules"),
        Kind("collections.ChainMap", "Several mappings searched in turn (`collections.ChainMap`).",
             methods=_DICT_METHODS | _names("new_child"), data=_names("maps parents"), routed=_VIEWS,
             type_reachable=True, group="modules"),
        Kind("collections.namedtuple", "An instance of a class made by `namedtuple(\"Point\", \"x y\")` (or "
             "`typing.NamedTuple`): a tuple whose fields are also its attributes (`p.x`); the class is called "
             "like a function (`Point(1, 2)`) and offers `_make()`, `_fields` and `_field_defaults`.",
             methods=_names("_asdict _make _replace count index"), data=_names("_field_defaults _fields"),
             type_reachable=True, group="modules"),  # (`_` names are always routed: READABLE_UNDERSCORED)
        *[Kind(f"odict_{n}", f"The {n} of an `OrderedDict`, as `od.{n}()` returns them.",
               methods=_names("isdisjoint") if n != "values" else frozenset(), group="modules")
          for n in ("keys", "values", "items")],
        *[Kind(f"collections.abc.{n}View", f"The {n.lower()} of a `ChainMap`, as `cm.{n.lower()}()` returns them.",
               methods=_names("isdisjoint") if n != "Values" else frozenset(), group="modules")
          for n in ("Keys", "Values", "Items")],
        *[Kind(n, "An iterator over a deque or an `OrderedDict`.", group="iterators")
          for n in ("_collections._deque_iterator", "_collections._deque_reverse_iterator", "odict_iterator")],
        # -- itertools ------------------------------------------------------------------
        *[Kind(f"itertools.{n}", f"The iterator `itertools.{n}()` returns (CPython's own; kept across waits).",
               methods=_names("from_iterable") if n == "chain" else frozenset(), type_reachable=True,
               group="iterators") for n in ITERTOOLS_TYPES],
        *[Kind(f"itertools.{n}", f"An iterator `itertools.{what}` makes inside.", group="iterators")
          for n, what in (("_tee", "tee()"), ("_tee_dataobject", "tee()"), ("_grouper", "groupby()"))],
        # -- heapq, string ---------------------------------------------------------------
        Kind("heapq.merge", "The iterator `heapq.merge()` returns (kept across waits).", group="iterators"),
        Kind("string.Template", "A `$`-substitution template (`string.Template`).",
             methods=_names("get_identifiers is_valid safe_substitute substitute"), data=_names("delimiter template"),
             refused=_names("braceidpattern flags idpattern pattern"), type_reachable=True, group="modules"),
        Kind("string.Formatter", "`str.format` as an object (`string.Formatter`).",
             methods=_names("check_unused_args convert_field format format_field get_field get_value parse vformat"),
             type_reachable=True, group="modules"),
        # -- fractions, statistics --------------------------------------------------------
        Kind("fractions.Fraction", "A rational number (`fractions.Fraction`).",
             methods=_names("as_integer_ratio conjugate from_decimal from_float limit_denominator"),
             data=_names("denominator imag numerator real"), type_reachable=True, group="modules"),
        Kind("statistics.NormalDist", "A normal distribution (`statistics.NormalDist`), without `samples`.",
             methods=_names("cdf from_samples inv_cdf overlap pdf quantiles zscore"),
             data=_names("mean median mode stdev variance"), refused=_names("samples"), type_reachable=True,
             group="modules"),
        Kind("statistics.LinearRegression", "What `linear_regression()` returns: a named tuple.",
             methods=_names("count index"), data=_names("intercept slope"), group="modules"),
        # -- decimal ----------------------------------------------------------------------
        Kind("decimal.Decimal", "A decimal floating-point number (`decimal.Decimal`).",
             methods=_names("adjusted as_integer_ratio as_tuple canonical compare compare_signal compare_total "
                            "compare_total_mag conjugate copy_abs copy_negate copy_sign exp fma from_float "
                            "is_canonical is_finite is_infinite is_nan is_normal is_qnan is_signed is_snan "
                            "is_subnormal is_zero ln log10 logb logical_and logical_invert logical_or logical_xor max "
                            "max_mag min min_mag next_minus next_plus next_toward normalize number_class quantize "
                            "radix remainder_near rotate same_quantum scaleb shift sqrt to_eng_string to_integral "
                            "to_integral_exact to_integral_value"),
             data=_names("imag real"), type_reachable=True, group="modules"),
        Kind("decimal.Context", "The precision, rounding and signals of decimal arithmetic (`decimal.Context`); "
             "`getcontext()` is the program's own.",
             methods=_names("Etiny Etop abs add canonical clear_flags clear_traps compare compare_signal "
                            "compare_total compare_total_mag copy copy_abs copy_decimal copy_negate copy_sign "
                            "create_decimal create_decimal_from_float divide divide_int divmod exp fma is_canonical "
                            "is_finite is_infinite is_nan is_normal is_qnan is_signed is_snan is_subnormal is_zero "
                            "ln log10 logb logical_and logical_invert logical_or logical_xor max max_mag min min_mag "
                            "minus multiply next_minus next_plus next_toward normalize number_class plus power "
                            "quantize radix remainder remainder_near rotate same_quantum scaleb shift sqrt subtract "
                            "to_eng_string to_integral to_integral_exact to_integral_value to_sci_string"),
             data=_names("Emax Emin capitals clamp flags prec rounding traps"), type_reachable=True,
             group="modules"),
        Kind("decimal.DecimalTuple", "What `Decimal.as_tuple()` returns: a named tuple.",
             methods=_names("count index"), data=_names("digits exponent sign"), group="modules"),
        Kind("decimal.SignalDict", "A context's `flags` or `traps`: a mapping from signals to booleans.",
             methods=_names("clear copy get items keys pop popitem setdefault update values"), group="modules"),
        # -- textwrap, pprint, queue --------------------------------------------------------
        Kind("textwrap.TextWrapper", "A text wrapper with its options (`textwrap.TextWrapper`).",
             methods=_names("fill wrap"),
             data=_names("break_long_words break_on_hyphens drop_whitespace expand_tabs fix_sentence_endings "
                         "initial_indent max_lines placeholder replace_whitespace subsequent_indent tabsize width"),
             refused=_names("sentence_end_re unicode_whitespace_trans wordsep_re wordsep_simple_re"),
             type_reachable=True, group="modules"),
        Kind("pprint.PrettyPrinter", "A pretty printer with its options (`pprint.PrettyPrinter`).",
             methods=_names("format isreadable isrecursive pformat pprint"), type_reachable=True, group="modules"),
        *[Kind(f"queue.{n}", f"A {what} queue (`queue.{n}`), for one thread.",
               methods=_names("empty full get get_nowait join put put_nowait qsize task_done"),
               data=_names("maxsize queue unfinished_tasks"), type_reachable=True, group="modules")
          for n, what in (("Queue", "first-in, first-out"), ("LifoQueue", "last-in, first-out"),
                          ("PriorityQueue", "lowest-first"))],
        Kind("queue.SimpleQueue", "An unbounded first-in, first-out queue (`queue.SimpleQueue`).",
             methods=_names("empty get get_nowait put put_nowait qsize"), type_reachable=True, group="modules"),
        # -- dataclasses ----------------------------------------------------------------
        Kind("dataclasses.Field", "A field of a dataclass, as `field()` makes it and `fields()` lists it (`type`: "
             "the built-in type written in the annotation, or the annotation's text).",
             data=_DATACLASS_FIELD, routed=_DATACLASS_FIELD, type_reachable=True, group="modules"),
        Kind("dataclasses._MISSING_TYPE", "`dataclasses.MISSING`: no default.", group="modules"),
        Kind("dataclasses._KW_ONLY_TYPE", "`dataclasses.KW_ONLY`: the fields after `_: KW_ONLY` are keyword-only.",
             group="modules"),
        Kind("dataclasses.InitVar", "`InitVar[T]`: an `__init__` argument passed to `__post_init__`, not a field.",
             data=_names("type"), routed=_names("type"), type_reachable=True, group="modules"),
        Kind("dataclasses.FrozenInstanceError", "Assigning to a field of a frozen dataclass.",
             methods=_names("add_note with_traceback"), data=_names("args name obj __cause__ __context__"),
             type_reachable=True, group="exceptions"),
        # -- enum -----------------------------------------------------------------------
        Kind("mappingproxy", "A read-only view of a mapping (an enum's `__members__`).",
             methods=_names("copy get items keys values"), group="modules"),
        Kind("enum.auto", "`auto()`: in an enum's body, the next value.", type_reachable=True, group="modules"),
        # -- typing ---------------------------------------------------------------------
        Kind("typing._SpecialForm", "A name from `typing` (`List`, `Optional[int]`, ...): for annotations "
             "only; it prints as in CPython, can be subscripted and compared, and creates nothing.",
             group="modules"),
        Kind("abc.ABCMeta", "A name from `collections.abc` (`Iterable`, `Mapping[str, int]`): prints as in "
             "CPython, works with `isinstance` (bare names), can be subscripted, and creates nothing.",
             data=_CALLABLE_DATA, group="modules"),
        Kind("typing.TypeVar", "A type variable (`T = TypeVar(\"T\")`), for annotations.", data=_names("__name__"),
             group="modules"),
    ]


def stdlib_modules() -> list[ModuleSurface]:
    from flowmetal.lang.surface import ModuleSurface

    return [
        ModuleSurface("functools", "`reduce`, `partial`, `lru_cache`, `cache`, `cmp_to_key`, `wraps`, "
                      "`update_wrapper`, `total_ordering`.",
                      _names("cache cmp_to_key lru_cache partial reduce total_ordering update_wrapper wraps")),
        ModuleSurface("operator", "The operators as functions; `attrgetter` and `methodcaller` through the "
                      "allow-list.", OPERATOR_MEMBERS),
        ModuleSurface("collections", "Container types: `Counter`, `defaultdict`, `deque`, `OrderedDict`, "
                      "`ChainMap`, `namedtuple`.", _names("ChainMap Counter OrderedDict abc defaultdict deque namedtuple")),
        ModuleSurface("collections.abc", "The abstract container types' names (`Iterable`, `Mapping`, ...), for "
                      "annotations and `isinstance`.", COLLECTIONS_ABC_MEMBERS),
        ModuleSurface("itertools", "Iterator building blocks, CPython's own.", frozenset(ITERTOOLS_TYPES) | {"tee"}),
        ModuleSurface("heapq", "Heaps (plain lists): `heappush`, `heappop`, `heapify`, `heapreplace`, "
                      "`heappushpop`, `nlargest`, `nsmallest`, `merge`.",
                      _names("heapify heappop heappush heappushpop heapreplace merge nlargest nsmallest")),
        ModuleSurface("bisect", "Binary search in sorted lists: `bisect`, `bisect_left`, `bisect_right`, `insort`, "
                      "`insort_left`, `insort_right` (with `key=`).",
                      _names("bisect bisect_left bisect_right insort insort_left insort_right")),
        ModuleSurface("copy", "`copy` and `deepcopy` of the values a program holds; `Error`.",
                      _names("Error copy deepcopy")),
        ModuleSurface("string", "The constants, `capwords`, `Template` and `Formatter`.",
                      _names("Formatter Template ascii_letters ascii_lowercase ascii_uppercase capwords digits "
                             "hexdigits octdigits printable punctuation whitespace")),
        ModuleSurface("fractions", "`Fraction`.", _names("Fraction")),
        ModuleSurface("statistics", "Every function of CPython 3.11's `statistics`, `NormalDist` (without "
                      "`samples`) and `StatisticsError`.",
                      _names("NormalDist StatisticsError correlation covariance fmean geometric_mean harmonic_mean "
                             "linear_regression mean median median_grouped median_high median_low mode multimode "
                             "pstdev pvariance quantiles stdev variance")),
        ModuleSurface("decimal", "`Decimal`, `Context`, `getcontext`/`setcontext` (the program's own "
                      "context), the signals, the rounding modes, `DecimalTuple`, `MAX_PREC` (100,000 here).",
                      _names("Clamped Context ConversionSyntax Decimal DecimalException DecimalTuple DivisionByZero "
                             "DivisionImpossible DivisionUndefined FloatOperation Inexact InvalidContext "
                             "InvalidOperation MAX_PREC Overflow ROUND_05UP ROUND_CEILING ROUND_DOWN ROUND_FLOOR "
                             "ROUND_HALF_DOWN ROUND_HALF_EVEN ROUND_HALF_UP ROUND_UP Rounded Subnormal Underflow "
                             "getcontext setcontext")),
        ModuleSurface("textwrap", "`wrap`, `fill`, `shorten`, `dedent`, `indent`, `TextWrapper`.",
                      _names("TextWrapper dedent fill indent shorten wrap")),
        ModuleSurface("pprint", "`pprint`, `pformat`, `pp`, `saferepr`, `isreadable`, `isrecursive`, "
                      "`PrettyPrinter` (no `stream=`).",
                      _names("PrettyPrinter isreadable isrecursive pformat pp pprint saferepr")),
        ModuleSurface("queue", "`Queue`, `LifoQueue`, `PriorityQueue`, `SimpleQueue`, `Empty`, `Full`, for one "
                      "thread.", _names("Empty Full LifoQueue PriorityQueue Queue SimpleQueue")),
        ModuleSurface("dataclasses", "`@dataclass` on the program's classes, `field`, `fields`, `asdict`, `astuple`, "
                      "`replace`, `is_dataclass`, `FrozenInstanceError`, `InitVar`, `KW_ONLY`, `MISSING`.",
                      _names("Field FrozenInstanceError InitVar KW_ONLY MISSING asdict astuple dataclass field fields "
                             "is_dataclass replace")),
        ModuleSurface("enum", "`Enum`, `IntEnum`, `StrEnum`, `Flag`, `IntFlag`, `auto`, `unique`: CPython's.",
                      _names("Enum EnumMeta EnumType Flag IntEnum IntFlag StrEnum auto unique")),
        ModuleSurface("typing", "Names for annotations (never evaluated), and `cast`, `TypeVar`, "
                      "`TYPE_CHECKING` (False).", TYPING_MEMBERS),
    ]
