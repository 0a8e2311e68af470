"""Values of every kind the pure standard modules hand out (machine/stdlib/), made the way
programs make them: the closure tests (test_surface_closed.py) read every allowed attribute
of each and check that what comes back is a program value."""

from __future__ import annotations

import itertools
import types
from typing import Any

from flowmetal.machine.access import fm_getattr
from flowmetal.machine.stdlib.namedtuples import SAMPLE
from flowmetal.machine.stdmods import get_module


def stdlib_values() -> list[Any]:
    typing = get_module("typing")
    values: list[Any] = [typing.List, typing.Optional[int], typing.TypeVar("T"), typing.NewType("Id", int)]
    it = get_module("itertools")
    tee = it.tee([1, 2])
    values += [it.accumulate([1]), it.chain([1]), it.chain.from_iterable([[1]]), it.combinations("ab", 1),
               it.combinations_with_replacement("ab", 1), it.compress("a", [1]), it.count(), it.cycle("a"),
               it.dropwhile(None, []), it.filterfalse(None, []), it.groupby("aa"), next(it.groupby("aa"))[1],
               it.islice("a", 1), it.pairwise("ab"), it.permutations("ab"), it.product("ab"), it.repeat(1),
               it.starmap(pow, []), it.takewhile(None, []), it.zip_longest(), tee[0], tee[0].__reduce__()[2][0]]
    col = get_module("collections")
    od = col.OrderedDict(a=1)
    cm = col.ChainMap({"a": 1})
    dq = col.deque([1, 2])
    made = col.namedtuple("Made", "x count", defaults=[[1]])
    values += [SAMPLE(1, [2]), made(3), made]
    values += [dq, col.Counter("ab"), col.defaultdict(list), od, cm, fm_getattr(od, "keys")(),
               fm_getattr(od, "values")(), fm_getattr(od, "items")(), cm.keys(), cm.items(), cm.values(),
               iter(dq), reversed(dq), iter(od)]
    op = get_module("operator")
    values += [op.attrgetter("a"), op.itemgetter(1), op.methodcaller("upper")]
    ft = get_module("functools")
    cached = ft.lru_cache(maxsize=2)(abs)
    key = ft.cmp_to_key(lambda a, b: 0)
    values += [ft.partial(abs, 1), cached, cached.cache_info(), key, key(1), ft.update_wrapper(abs, len), ft.reduce]
    # CPython's own (a Flowmetal iterator may hold one: `accumulate(initial=)` chains inside)
    h = itertools
    values += [h.accumulate([1]), h.chain(), h.combinations("a", 1), h.combinations_with_replacement("a", 1),
               h.compress("", []), h.count(), h.cycle(""), h.dropwhile(None, []), h.filterfalse(None, []),
               h.groupby(""), h.islice("", 1), h.permutations(""), h.product(), h.repeat(1), h.starmap(pow, []),
               h.takewhile(None, []), h.zip_longest()]
    hq, string = get_module("heapq"), get_module("string")
    values += [hq.merge([1], [2]), string.Template("$a"), string.Formatter()]
    fr, st = get_module("fractions"), get_module("statistics")
    values += [fr.Fraction(1, 3), st.NormalDist(1, 2), st.linear_regression([1, 2], [3, 5])]
    dec = get_module("decimal")
    ctx = dec.Context(prec=5)
    values += [dec.Decimal("1.5"), ctx, dec.Decimal("1.5").as_tuple(), ctx.flags]
    tw, pp, qu = get_module("textwrap"), get_module("pprint"), get_module("queue")
    values += [tw.TextWrapper(width=10), pp.PrettyPrinter(), qu.Queue(), qu.LifoQueue(), qu.PriorityQueue(),
               qu.SimpleQueue()]
    dc, en = get_module("dataclasses"), get_module("enum")
    values += [dc.field(default=1), dc.InitVar[int], dc.MISSING, dc.KW_ONLY, dc.dataclass(frozen=True), en.auto(),
               types.MappingProxyType({"a": 1})]
    values += workflow_values()
    return values


def workflow_values() -> list[Any]:
    """hashlib, hmac, urllib.parse, random, datetime, time, calendar, uuid."""
    hashlib, hmac, parse = get_module("hashlib"), get_module("hmac"), get_module("urllib.parse")
    return [
        hashlib.sha256(b"x"), hashlib.shake_128(b"x"), hashlib.blake2b(b"x", key=b"k"),
        hmac.new(b"key", b"msg", "sha256"),
        parse.urlparse("http://u:p@h:1/p;x?q#f"), parse.urlsplit("http://h/p"), parse.urldefrag("http://h/p#f"),
        parse.urlparse(b"http://h/p"), parse.urlsplit(b"http://h/p"), parse.urldefrag(b"http://h/p#f"),
        *datetime_values(),
    ]


def datetime_values() -> list[Any]:
    dt, zi = get_module("datetime"), get_module("zoneinfo")
    paris = zi.ZoneInfo("Europe/Paris")
    moment = dt.datetime(2024, 3, 31, 2, 30, tzinfo=paris)
    return [dt.date(2024, 2, 29), moment, dt.datetime(2024, 1, 1), dt.time(12, 30, tzinfo=dt.UTC), dt.timedelta(1),
            dt.timezone(dt.timedelta(hours=2), "X"), dt.UTC, paris, moment.isocalendar(), moment.timetuple(),
            zi.ZoneInfoNotFoundError("k"), *clock_values()]


def clock_values() -> list[Any]:
    """time, random, uuid and calendar."""
    tm, rnd, uuid, cal = get_module("time"), get_module("random"), get_module("uuid"), get_module("calendar")
    text = cal.TextCalendar(6)
    return [tm.gmtime(0), tm.localtime(0), tm.sleep, rnd.Random(1), uuid.uuid5(uuid.NAMESPACE_DNS, "x"),
            cal.Calendar(), text, text.itermonthdays2(2024, 2), cal.IllegalMonthError(13),
            cal.IllegalWeekdayError(9)]
