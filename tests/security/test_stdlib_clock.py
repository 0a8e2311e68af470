"""Attacks through datetime and zoneinfo: the host's files (zones by path), the host's clock and
local time zone, the internals of time zones and datetimes, C code's imports, and work beyond a
program's limits."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowmetal.machine.api import Limits
from security.attack import attempt, no_host_effect, stopped

ATTACKS = {
    # the host's zone files: by path, relative or absolute, or through CPython's own loaders
    "zone_by_path": "from zoneinfo import ZoneInfo\nprint(ZoneInfo('../../../../../etc/passwd'))\n",
    "zone_absolute": "from zoneinfo import ZoneInfo\nprint(ZoneInfo('/etc/localtime'))\n",
    "zone_localtime": "from zoneinfo import ZoneInfo\nprint(ZoneInfo('localtime'))\n",
    "zone_bytes_key": "from zoneinfo import ZoneInfo\nprint(ZoneInfo(b'UTC'))\n",
    "zone_from_file": "from zoneinfo import ZoneInfo\nprint(ZoneInfo.from_file)\n",
    "zone_no_cache": "from zoneinfo import ZoneInfo\nprint(ZoneInfo.no_cache('UTC'))\n",
    "zone_clear_cache": "from zoneinfo import ZoneInfo\nZoneInfo.clear_cache()\n",
    "zone_unpickle": "from zoneinfo import ZoneInfo\nprint(ZoneInfo._unpickle)\n",
    "zone_reduce_format": 'from zoneinfo import ZoneInfo\nprint("{0.__reduce__}".format(ZoneInfo("UTC")))\n',
    "zone_dict_format": 'from zoneinfo import ZoneInfo\nprint("{0.__dict__}".format(ZoneInfo("UTC")))\n',
    "zone_class_mro": 'from zoneinfo import ZoneInfo\nprint("{0.__class__.__mro__}".format(ZoneInfo("UTC")))\n',
    "zone_tzpath": "import zoneinfo\nprint(zoneinfo.TZPATH)\n",
    "zone_reset_tzpath": "import zoneinfo\nzoneinfo.reset_tzpath(['/'])\n",
    # time zone classes cannot be made or subclassed into something that runs host code
    "tzinfo_instance": "import datetime\nprint(datetime.tzinfo())\n",
    "tzinfo_subclasses": "import datetime\nprint(datetime.tzinfo.__subclasses__())\n",
    "tzinfo_format_class": 'from datetime import datetime, UTC\nprint("{0.tzinfo.__class__.__base__}".format(datetime(2020, 1, 1, tzinfo=UTC)))\n',
    "datetime_reduce": "from datetime import datetime\nprint(datetime(2020, 1, 1).__reduce__())\n",
    "datetime_module_time": "import datetime\nprint(datetime.time.sleep)\n",
    "datetime_capi": "import datetime\nprint(datetime.datetime_CAPI)\n",
    # what C code imports is handed to C only: programs cannot name it
    "import_function": "print(__import__('os'))\n",
    "builtins_dict": "print(__builtins__)\n",
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_is_stopped(name: str, tmp_path: Path) -> None:
    with no_host_effect(tmp_path):
        outcome = attempt(ATTACKS[name])
    stopped(outcome, "AttributeError", "TypeError", "ValueError", "ImportError", "KeyError",
            "zoneinfo._common.ZoneInfoNotFoundError", "NameError")
    assert "0x" not in outcome.output


@pytest.fixture
def host_in_tokyo() -> Iterator[None]:
    """The host's local zone is Asia/Tokyo while the test runs."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Tokyo"
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()


def test_the_hosts_local_zone_never_shows(host_in_tokyo: None) -> None:
    # where CPython uses the host's local zone, programs get UTC, whatever the host's zone
    outcome = attempt("from datetime import date, datetime\n"
                      "print(datetime.fromtimestamp(0), date.fromtimestamp(86399))\n"
                      "print(datetime(2000, 1, 1).timestamp(), datetime(2000, 1, 1).astimezone())\n"
                      "print(datetime(2000, 1, 1, 9).astimezone().tzname())\n")
    assert outcome.error_line is None, outcome.error_line
    assert outcome.output == ("1970-01-01 00:00:00 1970-01-01\n946684800.0 2000-01-01 00:00:00+00:00\nUTC\n")


@pytest.mark.parametrize("call", ["datetime.now()", "datetime.utcnow()", "datetime.today()", "date.today()",
                                  "datetime(2020, 1, 1).now()", "type(datetime(2020, 1, 1)).now()",
                                  "date(2020, 1, 1).today()"])
def test_the_hosts_clock_is_never_read(call: str) -> None:
    # outside the durable runtime (no one records the answer) the clock cannot be read at all
    outcome = attempt(f"from datetime import date, datetime\nprint({call})\n")
    assert outcome.error_line is not None
    assert outcome.error_line.startswith("RuntimeError: ") and "reads the clock" in outcome.error_line


def test_a_huge_strftime_format_is_refused_before_it_runs() -> None:
    outcome = attempt("from datetime import date\nfmt = '%A' * 3_000_000\nprint(len(date(2020, 1, 1).strftime(fmt)))\n",
                      limits=Limits(max_sequence=10_000_000))
    assert outcome.error_line is not None and outcome.error_line.startswith("MemoryLimitExceeded"), outcome.error_line


def test_a_zone_is_the_same_object_in_every_program_and_cannot_be_changed() -> None:
    outcome = attempt("from zoneinfo import ZoneInfo\nz = ZoneInfo('Europe/Paris')\nz.key = 'UTC'\n")
    stopped(outcome, "AttributeError")


RANDOM_AND_FRIENDS = {
    # the host's randomness and clocks are not there at all
    "system_random": "import random\nprint(random.SystemRandom().random())\n",
    "random_inst": "import random\nprint(random._inst)\n",
    "random_urandom": "import random\nprint(random._urandom(4))\n",
    "random_os": "import random\nprint(random._os)\n",
    "random_reduce": "import random\nprint(random.Random(1).__reduce__())\n",
    "random_randbelow": "import random\nprint(random.Random(1)._randbelow(5))\n",
    "random_class_format": 'import random\nprint("{0.__class__.__mro__}".format(random.Random(1)))\n',
    "random_seed_object": "import random\nrandom.seed(object())\n",
    "random_seed_tuple": "import random\nrandom.Random((1, 2))\n",
    "uuid1": "import uuid\nprint(uuid.uuid1())\n",
    "uuid_getnode": "import uuid\nprint(uuid.getnode())\n",
    "uuid_os": "import uuid\nprint(uuid.os)\n",
    "uuid_is_safe": "import uuid\nprint(uuid.uuid5(uuid.NAMESPACE_DNS, 'x').is_safe)\n",
    "uuid_setattr": "import uuid\nu = uuid.UUID(int=1)\nu.int = 2\n",
    "time_clock_gettime": "import time\nprint(time.clock_gettime(0))\n",
    "time_process_time": "import time\nprint(time.process_time())\n",
    "time_tzset": "import time\ntime.tzset()\n",
    "time_thread_time": "import time\nprint(time.thread_time())\n",
    "calendar_html": "import calendar\nprint(calendar.HTMLCalendar().formatmonth(2024, 1))\n",
    "calendar_locale": "import calendar\nprint(calendar.LocaleTextCalendar(locale='C'))\n",
    "calendar_different_locale": "import calendar\nprint(calendar.different_locale('C'))\n",
    "calendar_main": "import calendar\ncalendar.main(['x'])\n",
    "calendar_sys": "import calendar\nprint(calendar.sys)\n",
    "calendar_global": "import calendar\nprint(calendar.c)\n",
}


@pytest.mark.parametrize("name", sorted(RANDOM_AND_FRIENDS))
def test_random_uuid_time_calendar_attack_is_stopped(name: str, tmp_path: Path) -> None:
    with no_host_effect(tmp_path):
        outcome = attempt(RANDOM_AND_FRIENDS[name])
    stopped(outcome, "AttributeError", "TypeError", "ValueError", "ImportError")
    assert "0x" not in outcome.output


@pytest.mark.parametrize("call", ["random.random()", "random.Random().random()", "random.seed()", "uuid.uuid4()",
                                  "time.time()", "time.monotonic()", "time.localtime()", "time.strftime('%H')",
                                  "time.ctime()", "time.perf_counter_ns()"])
def test_fresh_randomness_and_the_clock_need_the_durable_runtime(call: str) -> None:
    outcome = attempt(f"import random, time, uuid\nprint({call})\n")
    assert outcome.error_line is not None and outcome.error_line.startswith("RuntimeError: "), outcome.error_line
    assert "only the durable runtime can answer" in outcome.error_line


@pytest.mark.parametrize("call", ["random.choices([1], k=10**10)", "random.Random(1).randbytes(10**10)",
                                  "random.getrandbits(10**11)", "random.sample(range(10**12), 10**10)",
                                  "calendar.month(2024, 1, w=10**8)", "calendar.calendar(2024, c=10**7)",
                                  "calendar.calendar(2024, m=10**7)", "calendar.TextCalendar().formatyear(2024, l=10**8)",
                                  "calendar.weekheader(10**9)", "calendar.TextCalendar().formatmonthname(2024, 1, 10**10)"])
def test_huge_results_are_refused_before_allocating(call: str) -> None:
    outcome = attempt(f"import random, calendar\nrandom.seed(1)\nprint(len({call}))\n")
    assert outcome.error_line is not None and outcome.error_line.startswith("MemoryLimitExceeded"), outcome.error_line


def test_shuffling_is_fuel() -> None:
    outcome = attempt("import random\nrandom.seed(1)\nxs = list(range(200_000))\nfor _ in range(100):\n"
                      "    random.shuffle(xs)\n", limits=Limits(fuel=2_000_000))
    assert outcome.error_line is not None and outcome.error_line.startswith("FuelExhausted"), outcome.error_line


def test_each_program_has_its_own_module_state() -> None:
    # random.seed and calendar.setfirstweekday in one program change nothing in another
    first = attempt("import random, calendar\nrandom.seed(1)\ncalendar.setfirstweekday(6)\n"
                    "print(random.random(), calendar.firstweekday())\n")
    second = attempt("import random, calendar\nrandom.seed(2)\nprint(calendar.firstweekday())\n"
                     "random.seed(1)\nprint(random.random())\n")
    assert first.error_line is None and second.error_line is None
    value = first.output.split()[0]
    assert first.output == f"{value} 6\n" and second.output == f"0\n{value}\n"


def test_calendar_prints_to_the_program_not_the_host() -> None:
    outcome = attempt("import calendar\ncalendar.prmonth(2024, 2)\ncalendar.TextCalendar().prweek([(1, 0)] * 7, 2)\n")
    assert outcome.error_line is None and outcome.output.startswith("   February 2024\n")


def test_a_subclass_type_object_offers_flowmetals_routed_methods_not_the_hosts() -> None:
    # (for when programs define classes: `class Stamp(datetime)` must not reach the host's
    # `datetime.now`, which reads the host's clock and local zone)
    import datetime

    from flowmetal.machine.access import UnboundBuiltin, fm_getattr

    class Stamp(datetime.datetime):
        pass

    for name in ("now", "today", "utcnow", "fromtimestamp", "timestamp", "astimezone", "strftime"):
        assert isinstance(fm_getattr(Stamp, name), UnboundBuiltin), name
    assert fm_getattr(Stamp, "fromtimestamp")(0) == datetime.datetime(1970, 1, 1)


def test_a_struct_time_holding_program_values_shows_no_address() -> None:
    outcome = attempt("import time\ndef f():\n    pass\nt = time.struct_time([f] * 9)\nprint(t)\nprint([t], str(t))\n")
    assert outcome.error_line is None and "0x" not in outcome.output
    assert outcome.output.startswith("time.struct_time(tm_year=<function f>, tm_mon=<function f>")
