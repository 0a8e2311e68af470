"""The allow-list's rows for the workflow modules (issue 11): hashlib, hmac, base64, binascii,
urllib.parse, random, datetime, zoneinfo, time, calendar and uuid — each module's kinds of values
and members. `surface.py` takes them into `KINDS` and `MODULES`; read its docstring for what each
field means. (The pure modules' rows are `surface_stdlib.py`.)

This module must not import `surface` at import time (`surface` imports it): `Kind` and
`ModuleSurface` are imported when the rows are built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flowmetal.lang.surface import Kind, ModuleSurface

__all__ = ["workflow_kinds", "workflow_modules"]


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


_EXCEPTION_METHODS = _names("add_note with_traceback")
_EXCEPTION_DATA = frozenset({"args", "__cause__", "__context__"})
_URL_FIELDS = "fragment hostname netloc password path port query scheme username"
_CLASS_VALUES = "max min resolution"  # class attributes holding values (`date.max`), listed as methods
_DATE_METHODS = ("ctime fromisocalendar fromisoformat fromordinal fromtimestamp isocalendar isoformat isoweekday "
                 "replace strftime timetuple today toordinal weekday " + _CLASS_VALUES)
_TIME_DATA = "fold hour microsecond minute second tzinfo"
_TZ_METHODS = "dst fromutc tzname utcoffset"
_RANDOM_METHODS = ("betavariate choice choices expovariate gammavariate gauss getrandbits getstate lognormvariate "
                   "normalvariate paretovariate randbytes randint random randrange sample seed setstate shuffle "
                   "triangular uniform vonmisesvariate weibullvariate")
_CALENDAR_METHODS = ("getfirstweekday itermonthdates itermonthdays itermonthdays2 itermonthdays3 itermonthdays4 "
                     "iterweekdays monthdatescalendar monthdays2calendar monthdayscalendar setfirstweekday "
                     "yeardatescalendar yeardays2calendar yeardayscalendar")
_STRUCT_TIME = ("n_fields n_sequence_fields n_unnamed_fields tm_gmtoff tm_hour tm_isdst tm_mday tm_min tm_mon "
                "tm_sec tm_wday tm_yday tm_year tm_zone")


def workflow_kinds() -> list[Kind]:
    from flowmetal.lang.surface import Kind

    def exception(name: str, doc: str) -> Kind:
        return Kind(name, doc, methods=_EXCEPTION_METHODS, data=_EXCEPTION_DATA, type_reachable=True,
                    group="exceptions")

    return [
        # -- hashlib, hmac, binascii ---------------------------------------------------------
        Kind("_hashlib.HASH", "A hash object (`hashlib.sha256()`); kept across waits mid-update.",
             methods=_names("copy digest hexdigest update"), data=_names("block_size digest_size name"),
             group="modules"),
        Kind("hmac.HMAC", "An HMAC object (`hmac.new(key, msg, 'sha256')`); kept across waits mid-update.",
             methods=_names("copy digest hexdigest update"), data=_names("block_size digest_size name"),
             group="modules"),
        exception("binascii.Error", "Malformed input to `base64`/`binascii` (a `ValueError`)."),
        exception("binascii.Incomplete", "Incomplete input to `binascii`."),
        # -- urllib.parse ----------------------------------------------------------------------
        *[Kind(name, f"The result of `urllib.parse.{fn}()`: a named tuple.",
               methods=_names("count geturl index " + ("decode" if name.endswith("Bytes") else "encode")),
               data=_names(fields), type_reachable=True, group="modules") for name, fn, fields in (
            ("ParseResult", "urlparse", _URL_FIELDS + " params"), ("SplitResult", "urlsplit", _URL_FIELDS),
            ("DefragResult", "urldefrag", "fragment url"),
            ("ParseResultBytes", "urlparse", _URL_FIELDS + " params"),
            ("SplitResultBytes", "urlsplit", _URL_FIELDS), ("DefragResultBytes", "urldefrag", "fragment url"))],
        # -- datetime, zoneinfo, time ----------------------------------------------------------
        Kind("datetime.date", "A date (`date(2024, 2, 29)`); `date.today()` is a durable read of the clock.",
             methods=_names(_DATE_METHODS), data=_names("day month year"),
             routed=_names("fromtimestamp strftime today"), type_reachable=True, group="modules"),
        Kind("datetime.datetime", "A date and time, naive or aware; `now()`, `utcnow()`, `today()` are durable "
             "reads of the clock, and UTC stands for the host's local zone.",
             methods=_names(_DATE_METHODS + " astimezone combine date dst now strptime time timestamp timetz "
                            "tzname utcfromtimestamp utcnow utcoffset utctimetuple"),
             data=_names("day month year " + _TIME_DATA),
             routed=_names("astimezone fromtimestamp now strftime strptime timestamp today utcnow"),
             type_reachable=True, group="modules"),
        Kind("datetime.time", "A time of day (`time(12, 30)`).",
             methods=_names("dst fromisoformat isoformat replace strftime tzname utcoffset " + _CLASS_VALUES),
             data=_names(_TIME_DATA), routed=_names("strftime"), type_reachable=True, group="modules"),
        Kind("datetime.timedelta", "A duration (`timedelta(days=1, hours=2)`).",
             methods=_names("total_seconds " + _CLASS_VALUES), data=_names("days microseconds seconds"),
             type_reachable=True, group="modules"),
        Kind("datetime.timezone", "A fixed offset from UTC (`timezone.utc`, `timezone(timedelta(hours=2))`).",
             methods=_names(_TZ_METHODS + " max min utc"), type_reachable=True, group="modules"),
        Kind("datetime.tzinfo", "The base of time zones, for `isinstance` only.", methods=_names(_TZ_METHODS),
             group="modules"),
        Kind("datetime.IsoCalendarDate", "What `isocalendar()` returns: a named tuple.",
             methods=_names("count index"), data=_names("week weekday year"), group="modules"),
        Kind("zoneinfo.ZoneInfo", "An IANA time zone (`ZoneInfo(\"Europe/Paris\")`), from the `tzdata` shipped "
             "with Flowmetal, never the host's files.", methods=_names(_TZ_METHODS), data=_names("key"),
             type_reachable=True, group="modules"),
        exception("zoneinfo.ZoneInfoNotFoundError", "No time zone has that key (a `KeyError`)."),
        # -- random, uuid, calendar ------------------------------------------------------------
        Kind("random.Random", "A random generator (`random.Random(seed)`): CPython's Mersenne Twister, the same "
             "numbers for the same seed; kept across waits mid-sequence.",
             methods=_names(_RANDOM_METHODS), data=_names("VERSION gauss_next"), type_reachable=True,
             group="modules"),
        Kind("uuid.UUID", "A UUID (`uuid.UUID(hex)`, `uuid5(namespace, name)`, `uuid4()`).",
             data=_names("bytes bytes_le clock_seq clock_seq_hi_variant clock_seq_low fields hex int node time "
                         "time_hi_version time_low time_mid urn variant version"),
             type_reachable=True, group="modules"),
        Kind("calendar.Calendar", "A calendar's arithmetic (`calendar.Calendar(firstweekday)`); its iterators are "
             "kept across waits.", methods=_names(_CALENDAR_METHODS), data=_names("firstweekday"),
             type_reachable=True, group="modules"),
        Kind("calendar.TextCalendar", "A calendar as text (`calendar.TextCalendar(firstweekday)`); `pr...` print "
             "to the program's output.",
             methods=_names(_CALENDAR_METHODS + " formatday formatmonth formatmonthname formatweek formatweekday "
                            "formatweekheader formatyear prmonth prweek pryear"),
             data=_names("firstweekday"), type_reachable=True, group="modules"),
        exception("calendar.IllegalMonthError", "A month number outside 1-12 (a `ValueError`)."),
        exception("calendar.IllegalWeekdayError", "A weekday number outside 0-6 (a `ValueError`)."),
        Kind("time.struct_time", "A broken-down time (`time.gmtime()`, `timetuple()`): a named tuple.",
             methods=_names("count index"), data=_names(_STRUCT_TIME), type_reachable=True, group="modules"),
    ]


def workflow_modules() -> list[ModuleSurface]:
    from flowmetal.lang.surface import ModuleSurface

    return [
        ModuleSurface("base64", "Base16/32/64/85 encodings of bytes (not `encode`/`decode`, which use files).",
                      _names("b64encode b64decode standard_b64encode standard_b64decode urlsafe_b64encode "
                             "urlsafe_b64decode b32encode b32decode b32hexencode b32hexdecode b16encode b16decode "
                             "b85encode b85decode a85encode a85decode encodebytes decodebytes")),
        ModuleSurface("binascii", "Conversions between bytes and ASCII encodings, CRCs.",
                      _names("a2b_base64 b2a_base64 a2b_hex b2a_hex hexlify unhexlify crc32 crc_hqx a2b_qp b2a_qp "
                             "a2b_uu b2a_uu Error Incomplete")),
        ModuleSurface("hashlib", "The guaranteed hash algorithms (`algorithms_available` is the guaranteed set).",
                      _names("md5 sha1 sha224 sha256 sha384 sha512 blake2b blake2s sha3_224 sha3_256 sha3_384 "
                             "sha3_512 shake_128 shake_256 new pbkdf2_hmac algorithms_guaranteed "
                             "algorithms_available")),
        ModuleSurface("hmac", "Keyed hashes for message signatures; `compare_digest` in constant time.",
                      _names("new digest compare_digest")),
        ModuleSurface("datetime", "Dates, times, durations and fixed offsets, CPython's own types; the clock "
                      "is a durable read.", _names("date datetime time timedelta timezone tzinfo MINYEAR MAXYEAR UTC")),
        ModuleSurface("zoneinfo", "IANA time zones from the `tzdata` package shipped with Flowmetal.",
                      _names("ZoneInfo ZoneInfoNotFoundError available_timezones")),
        ModuleSurface("time", "Formatting and conversions in UTC; the clock as durable reads; `sleep` is the "
                      "durable action.",
                      _names("time time_ns monotonic monotonic_ns perf_counter perf_counter_ns sleep gmtime localtime "
                             "mktime asctime ctime strftime strptime struct_time timezone altzone daylight tzname")),
        ModuleSurface("random", "CPython's generator: seeded, pure and deterministic; unseeded, seeded once from "
                      "the durable runtime.", _names(_RANDOM_METHODS + " Random")),
        ModuleSurface("uuid", "UUIDs: `uuid3`/`uuid5` by name, `uuid4` from the durable runtime's randomness.",
                      _names("UUID uuid3 uuid4 uuid5 NAMESPACE_DNS NAMESPACE_URL NAMESPACE_OID NAMESPACE_X500 "
                             "RESERVED_NCS RFC_4122 RESERVED_MICROSOFT RESERVED_FUTURE")),
        ModuleSurface("calendar", "Calendars as numbers and text (English names); the first weekday is the "
                      "program's own.",
                      _names("Calendar TextCalendar IllegalMonthError IllegalWeekdayError error isleap leapdays weekday "
                             "monthrange timegm monthcalendar firstweekday setfirstweekday prweek week weekheader month "
                             "prmonth calendar prcal day_name day_abbr month_name month_abbr MONDAY TUESDAY "
                             "WEDNESDAY THURSDAY FRIDAY SATURDAY SUNDAY January February")),
        ModuleSurface("urllib", "Only `urllib.parse` (there is no `urllib.request`: use `flowmetal.http`).",
                      _names("parse")),
        ModuleSurface("urllib.parse", "Parsing, joining and quoting URLs, query strings.",
                      _names("urlparse urlunparse urljoin urldefrag urlsplit urlunsplit urlencode parse_qs parse_qsl "
                             "quote quote_plus quote_from_bytes unquote unquote_plus unquote_to_bytes DefragResult "
                             "ParseResult SplitResult DefragResultBytes ParseResultBytes SplitResultBytes")),
    ]
